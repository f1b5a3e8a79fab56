/*
 * walmmapd tests - attacks on the promise that nothing acknowledged is
 * ever lost or duplicated: a record acknowledged written survives kill -9,
 * one acknowledged durable survives a power cut, no record appears twice,
 * seqs never go back, and after a failed sync nothing it covered is called
 * durable and walmmapd stops with status 1. Each test reproduces one way
 * that was broken (issue #13 review).
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "faultinject.h"
#include "powercut.h"
#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_proto.h"
#include "wal_dir.h"
#include "wal_reader.h"
#include "wal_ring.h"
#include "wal_segment.h"
#include "wal_shm.h"
#include "walmmap.h"

#define NPROD		5
#define KEY_CYCLE	100000000ull
#define MAXREC		3000

static char		*base;
static char		 ctlpath[PATH_MAX];
static struct wf_ctl	*ctl;
static struct ts_daemon	 d;

static const struct {
	enum walmmap_ack	 ack;
	unsigned		 flags;
	const char		*name;
} prods[NPROD] = {
	{ WALMMAP_ACK_NONE, 0, "socket, ack none" },
	{ WALMMAP_ACK_WRITTEN, 0, "socket, written" },
	{ WALMMAP_ACK_DURABLE, 0, "socket, durable" },
	{ WALMMAP_ACK_WRITTEN, WALMMAP_SHM, "ring, written" },
	{ WALMMAP_ACK_DURABLE, WALMMAP_SHM, "ring, durable" },
};

/* Producer p's record with key k: "p:k:" then filler, 4..MAXREC bytes. */
static size_t
payload(uint8_t *buf, unsigned p, uint64_t k)
{
	size_t len = (size_t)snprintf((char *)buf, 64, "%u:%" PRIu64 ":", p,
	    k);
	uint64_t x = k * 0x9e3779b97f4a7c15ull + p;
	size_t extra = (size_t)((x >> 33) % (MAXREC - 40));

	memset(buf + len, 'a' + (int)(x % 26), extra);
	return (len + extra);
}

/*
 * Producer p streams keys from key0 until the daemon goes away, logging
 * "seq key" to path for each record acknowledged at its level.
 */
static pid_t
spawn(unsigned p, uint64_t key0, const char *path)
{
	uint8_t buf[MAXREC];
	struct walmmap *w;
	uint64_t k;
	int64_t seq, *want;
	FILE *out;
	pid_t pid;

	if ((pid = fork()) != 0)
		return (pid);
	if ((out = fopen(path, "a")) == NULL || walmmap_connect(&w, d.sock,
	    prods[p].ack, prods[p].flags) != 0)
		_exit(0);
	setvbuf(out, NULL, _IOLBF, 0);
	for (k = key0;; k++) {
		want = prods[p].ack == WALMMAP_ACK_NONE ? NULL : &seq;
		if (walmmap_append(w, buf, payload(buf, p, k),
		    WALMMAP_ACK_DEFAULT, want) != 0)
			break;
		if (want != NULL)
			fprintf(out, "%" PRId64 " %" PRIu64 "\n", seq, k);
	}
	fclose(out);
	_exit(0);
}

/* The records a producer was told about (in ack order). */
struct acked {
	int64_t		*seq;
	uint64_t	*key;
	size_t		 n;
};

/* What a producer was told, from its log. */
static void
load_acked(const char *path, struct acked *a)
{
	FILE *f = fopen(path, "r");
	int64_t s;
	uint64_t k;

	a->n = 0;
	if (f == NULL)
		return;
	while (fscanf(f, "%" SCNd64 " %" SCNu64, &s, &k) == 2) {
		a->seq = realloc(a->seq, (a->n + 1) * sizeof *a->seq);
		a->key = realloc(a->key, (a->n + 1) * sizeof *a->key);
		a->seq[a->n] = s;
		a->key[a->n++] = k;
	}
	fclose(f);
}

/* Check the log (it may start after 0: retention). Returns next seq. */
static int64_t
check_log(struct acked *acked, int64_t prev_next, const char *ctx)
{
	uint8_t want[MAXREC];
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	uint64_t last[NPROD], k;
	int64_t n = -1, first = -1;
	size_t next[NPROD], len;
	int seen[NPROD], rc;
	unsigned p;
	char tmp[64];

	memset(seen, 0, sizeof seen);
	memset(next, 0, sizeof next);
	ck_assert_msg(wal_reader_open(d.data, &r, &err) == 0, "%s", err.msg);
	while ((rc = wal_reader_next(r, &rec, &err)) == 1) {
		if (first < 0)
			first = n = rec.seq;
		TS_CHECK(rec.seq == n, "%s: seq %" PRId64 " where %" PRId64
		    " was due", ctx, rec.seq, n);
		n++;
		len = rec.size < sizeof tmp - 1 ? rec.size : sizeof tmp - 1;
		memcpy(tmp, rec.payload, len);
		tmp[len] = '\0';
		TS_CHECK(sscanf(tmp, "%u:%" SCNu64 ":", &p, &k) == 2 &&
		    p < NPROD, "%s: seq %" PRId64 ": not a producer's record",
		    ctx, rec.seq);
		TS_CHECK(rec.size == payload(want, p, k) &&
		    memcmp(want, rec.payload, rec.size) == 0, "%s: seq %"
		    PRId64 ": payload of %u:%" PRIu64 " damaged", ctx,
		    rec.seq, p, k);
		TS_CHECK(!seen[p] || k > last[p], "%s: producer %u (%s): key %"
		    PRIu64 " after %" PRIu64 " at seq %" PRId64, ctx, p,
		    prods[p].name, k, last[p], rec.seq);
		seen[p] = 1;
		last[p] = k;
		/* Acked records before the log's start went by retention. */
		while (next[p] < acked[p].n && acked[p].seq[next[p]] < first)
			next[p]++;
		while (next[p] < acked[p].n && acked[p].seq[next[p]] < rec.seq)
			ck_abort_msg("%s: producer %u (%s): acked seq %" PRId64
			    " (key %" PRIu64 ") missing", ctx, p,
			    prods[p].name, acked[p].seq[next[p]],
			    acked[p].key[next[p]]);
		if (next[p] < acked[p].n && acked[p].seq[next[p]] == rec.seq) {
			TS_CHECK(acked[p].key[next[p]] == k, "%s: seq %" PRId64
			    " holds key %" PRIu64 ", acked as %" PRIu64, ctx,
			    rec.seq, k, acked[p].key[next[p]]);
			next[p]++;
		}
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(wal_reader_stopped(r)->status == WAL_REC_END,
	    "%s: log damaged: %s", ctx,
	    wal_rec_strstatus(wal_reader_stopped(r)->status));
	wal_reader_close(r);
	for (p = 0; p < NPROD; p++) {
		while (next[p] < acked[p].n && acked[p].seq[next[p]] < first)
			next[p]++;
		ck_assert_msg(next[p] == acked[p].n, "%s: producer %u (%s): %zu "
		    "of %zu acked records found (first missing seq %" PRId64
		    ")", ctx, p, prods[p].name, next[p], acked[p].n,
		    acked[p].seq[next[p]]);
	}
	ck_assert_msg(n < 0 || n >= prev_next, "%s: log ends at %" PRId64
	    ", an earlier run went up to %" PRId64, ctx, n, prev_next);
	return (n);
}

/* "records from seq X on may not be on storage": X, or -1. */
static int64_t
failed_from(void)
{
	char *log = ts_daemon_log(&d), *p, *q = NULL;
	long long x = -1;

	for (p = log; (p = strstr(p, "records from seq ")) != NULL; p++)
		q = p;
	if (q != NULL)
		sscanf(q, "records from seq %lld", &x);
	free(log);
	return (x);
}

/* Wait (at most 10 s) until the shim failed call at least n times. */
static void
wait_injected(enum wf_call call, uint64_t n)
{
	int i;

	for (i = 0; i < 1000; i++) {
		if (atomic_load(&ctl->op[call].injected) >= n)
			return;
		usleep(10000);
	}
	ck_abort_msg("the shim failed %s %llu times in 10 s, not %llu",
	    wf_call_names[call], (unsigned long long)atomic_load(
	    &ctl->op[call].injected), (unsigned long long)n);
}

/* The sync-failure marker is in the data directory. */
static int
marker_present(void)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof path, "%s/walmmapd.sync-failed", d.data);
	return (access(path, F_OK) == 0);
}

/*
 * The daemon stopped with status 1 within 10 s (it did not need a signal
 * when bysignal is 0), logged the failed sync once and left the marker.
 */
static void
check_failed_stop(int rc)
{
	char *log = ts_daemon_log(&d), *p;
	int n = 0;

	for (p = log; (p = strstr(p, "<3>walmmapd: sync failed: ")) != NULL;
	    p++)
		n++;
	ck_assert_msg(rc == 1, "exit status %d after a failed sync:\n%s", rc,
	    log);
	ck_assert_msg(n == 1, "%d error lines for the failed sync:\n%s", n,
	    log);
	ck_assert_msg(marker_present(), "no walmmapd.sync-failed:\n%s", log);
	free(log);
}

/*
 * The background thread's fdatasync of a sealed segment fails while no
 * client waits for durability (written acks only, no periodic sync): the
 * failure is as final as any other, so the daemon stops by itself with
 * status 1 (walmmapd(8), I/O ERRORS) instead of running on with a log that
 * can never be synced again.
 */
START_TEST(test_bg_sync_failure_stops)
{
	static uint8_t rec[30000];
	struct walmmap *w;
	int64_t seq;
	int i;

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K",
	    "--ring", "2", "-o", "prefault=no", "-o", "sync_interval=0",
	    NULL), 0);
	/* The first fdatasync of the run: the sealed segment's. */
	wf_arm(ctl, WF_FDATASYNC, 1, EIO, 0);
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	memset(rec, 'b', sizeof rec);
	for (i = 0; i < 5; i++)		/* two rotations */
		ck_assert_msg(walmmap_append(w, rec, sizeof rec,
		    WALMMAP_ACK_WRITTEN, &seq) == 0, "%s", walmmap_errmsg(w));
	wait_injected(WF_FDATASYNC, 1);
	check_failed_stop(ts_daemon_wait_exit(&d, 10000));
	walmmap_close(w);
}
END_TEST

/*
 * A sync that fails after the last client left, at the end of the run
 * (here the checkpoint's fsync, which a full disk had held back until
 * then): the daemon still exits with status 1 and says so, not 0 with the
 * marker silently left behind.
 */
START_TEST(test_final_sync_failure_exit_status)
{
	static uint8_t rec[20000];
	struct walmmap *w;
	int64_t seq;
	int i;

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K",
	    "--ring", "4", "-o", "prefault=no", "-o", "sync_interval=0",
	    NULL), 0);
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_DURABLE, 0),
	    0);
	memset(rec, 'c', sizeof rec);
	ck_assert_msg(walmmap_append(w, rec, sizeof rec, WALMMAP_ACK_DURABLE,
	    &seq) == 0, "%s", walmmap_errmsg(w));
	/* The three standbys are there: the rotation renames nothing. */
	for (i = 0; i < 1000 && ts_count_files(d.data, "wal_mmap_") < 4; i++)
		usleep(10000);
	ck_assert_int_eq(ts_count_files(d.data, "wal_mmap_"), 4);
	/*
	 * Renames fail: after the rotation the background thread syncs the
	 * sealed segment but cannot replace the checkpoint (nor create a
	 * standby); it retries a second later.
	 */
	wf_arm(ctl, WF_RENAME, 1, EIO, 1);
	ck_assert_msg(walmmap_rotate(w) == 0, "%s", walmmap_errmsg(w));
	wait_injected(WF_RENAME, 2);
	walmmap_close(w);
	/* From now on the storage fails every fsync; then SIGTERM. */
	wf_arm(ctl, WF_FSYNC, 1, EIO, 1);
	wf_disarm(ctl, WF_RENAME);
	check_failed_stop(ts_daemon_stop(&d));
}
END_TEST

/*
 * A client pipelines a durable append, then appends at level written that
 * rotate segments, all read in one pass: a sync of the sealed segments
 * that is not a group commit (the writer's at the bound of sealed
 * segments, or the background thread's) covers the durable record before
 * the pass ends. The DURABLE the client is owed must still come, and soon:
 * not only at the next group commit somebody else asks for (there is none
 * here, no periodic sync), which left the client waiting for good.
 */
START_TEST(test_durable_report_after_sealed_sync)
{
	struct wal_msg_durable dm;
	struct wal_msg hdr;
	uint8_t buf[4096], rec[100];
	ssize_t n;
	int s, i, mfd, acked = 0;

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K",
	    "--ring", "2", "-o", "prefault=no", "-o", "sync_interval=0",
	    NULL), 0);
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	/* Everything below is read in one pass once the daemon runs again. */
	ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
	memset(rec, 'd', sizeof rec);
	ts_raw_append(s, 1, rec, sizeof rec, WAL_ACK_DURABLE);	/* seq 0 */
	for (i = 0; i < 20; i++) {		/* a segment each */
		mfd = ts_sealed_memfd(50000);
		ck_assert_int_eq(ts_raw_append_fd(s, 2 + (uint64_t)i, 50000,
		    mfd, WAL_ACK_WRITTEN, 0), 0);
		close(mfd);
	}
	ck_assert_int_eq(kill(d.pid, SIGCONT), 0);
	for (;;) {
		n = ts_raw_recv(s, buf, sizeof buf, 10000);
		ck_assert_msg(n > 0, "no DURABLE for seq 0 within 10 s (%d "
		    "ACK frames came)", acked);
		memcpy(&hdr, buf, sizeof hdr);
		ck_assert_msg(hdr.type == WAL_MSG_ACK || hdr.type ==
		    WAL_MSG_DURABLE, "frame type %u", hdr.type);
		if (hdr.type == WAL_MSG_ACK) {
			acked++;
			continue;
		}
		ck_assert_uint_ge(n, sizeof dm);
		memcpy(&dm, buf, sizeof dm);
		ck_assert_int_ge(dm.durable_seq, 0);
		break;
	}
	ck_assert_int_gt(acked, 0);
	close(s);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* The same through a shared-memory ring: its durable count must come. */
START_TEST(test_ring_durable_after_sealed_sync)
{
	static uint8_t rec[50000];
	struct ts_ring ring;
	int i;

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K",
	    "--ring", "2", "-o", "prefault=no", "-o", "sync_interval=0",
	    NULL), 0);
	ts_ring_open(&d, &ring, 1024 * 1024);
	memset(rec, 'r', sizeof rec);
	/* One durable record, then a segment's worth each, one publish. */
	ts_ring_put(&ring, rec, 100, 100, WAL_SHM_F_DURABLE);
	for (i = 0; i < 15; i++)
		ts_ring_put(&ring, rec, sizeof rec, sizeof rec, 0);
	ts_ring_publish(&ring, ring.tail);
	for (i = 0; i < 1000 && atomic_load(&ring.hdr->durable) < 1; i++)
		usleep(10000);
	ck_assert_msg(atomic_load(&ring.hdr->durable) >= 1, "the ring's "
	    "durable count is %llu after 10 s (%llu written)",
	    (unsigned long long)atomic_load(&ring.hdr->durable),
	    (unsigned long long)atomic_load(&ring.hdr->written));
	ck_assert_uint_eq(atomic_load(&ring.hdr->written), 16);
	ts_ring_close(&ring);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* Payload size of seq in the power-cut runs: small, every 97th large. */
static size_t
cut_size(int64_t seq)
{
	return (seq % 97 == 0 ? 3000 + (size_t)(seq % 5000) : ts_size_of(seq));
}

/* A second thread asking for group commits, as walmmapd's sync thread. */
struct cut_syncer {
	struct wal_ring	*r;
	atomic_int	 stop;
	unsigned	 seed;
};

static void *
cut_syncer_main(void *arg)
{
	struct cut_syncer *cs = arg;

	while (!atomic_load(&cs->stop)) {
		usleep((useconds_t)(rand_r(&cs->seed) % 2000));
		(void)wal_ring_sync(cs->r, NULL, NULL);
	}
	return (NULL);
}

/*
 * Retention as walmmapd's srv_retention() does it, keeping keep sealed
 * segments: only below the active segment, below the checkpoint on disk
 * and the newest segment holding records (retain_below), never the newest
 * sealed one, oldest first; then the directory is synced.
 */
static void
cut_retention(struct wal_ring *r, const char *dir, size_t keep)
{
	char name[WAL_SEGMENT_NAME_MAX], path[PATH_MAX + 64];
	struct wal_ring_stats st;
	struct wal_seglist list;
	struct wal_error err;
	uint64_t limit;
	size_t i, nsealed;
	int dfd;

	wal_ring_stats(r, &st);
	limit = st.retain_below < st.active_id ? st.retain_below :
	    st.active_id;
	ck_assert_int_ge(dfd = open(dir, O_RDONLY | O_DIRECTORY), 0);
	ck_assert_int_eq(wal_dir_list(dfd, dir, &list, &err), 0);
	for (nsealed = 0; nsealed < list.count && list.ids[nsealed] <
	    st.active_id; nsealed++)
		;
	for (i = 0; i + 1 < nsealed && list.ids[i] < limit && nsealed - i >
	    keep; i++) {
		wal_seg_name(name, sizeof name, list.ids[i]);
		snprintf(path, sizeof path, "%s/%s", dir, name);
		ck_assert_int_eq(unlink(path), 0);
	}
	ck_assert_int_eq(fsync(dfd), 0);
	close(dfd);
	wal_seglist_free(&list);
}

/* Seq of the first record of the log in dir, -1 if none. */
static int64_t
first_seq(const char *dir)
{
	struct wal_reader *rd;
	struct wal_record rec;
	struct wal_error err;
	int64_t seq = -1;

	ck_assert_msg(wal_reader_open(dir, &rd, &err) == 0, "%s", err.msg);
	if (wal_reader_next(rd, &rec, &err) == 1)
		seq = rec.seq;
	wal_reader_close(rd);
	return (seq);
}

/*
 * Power cuts at random moments of a ring that appends across rotations
 * while a sync thread (group commits), the writer (explicit syncs, and its
 * own at the bound of sealed segments) and the background thread (sealed
 * segments, the checkpoint) sync concurrently. The disk at each cut is
 * built from what each msync/fdatasync/fsync that returned really covered
 * (tests/powercut.c), each unsynced page there or not; retention removes
 * old segments as walmmapd's does, and the restart may change the segment
 * size. Every state must recover to a gap-free log holding every record
 * that was durable at the cut (or removed by retention), nothing that was
 * not written, and go on from there. ATTACK_CUTS (default 40) and
 * ATTACK_SEED run it longer.
 */
START_TEST(test_power_cuts)
{
	struct wal_ring_config cfg = { .segment_size = 64 * 1024,
	    .ring_segments = 3, .no_prefault = 1 };
	struct wal_ring_config scfg = { .segment_size = 64 * 1024,
	    .ring_segments = 3, .no_prefault = 1 };
	const char *env = getenv("ATTACK_CUTS");
	int cuts = env != NULL ? atoi(env) : 40, done = 0, mode, files;
	struct cut_syncer cs;
	struct wal_recovery info;
	struct wal_error err;
	struct wal_ring *r, *sr;
	char data[PATH_MAX], state[PATH_MAX + 32];
	uint8_t *buf;
	pthread_t th;
	int64_t seq = 0, s, durable, written, first, lo = INT64_MAX;
	const char *seedenv = getenv("ATTACK_SEED");
	unsigned seed = seedenv != NULL ? (unsigned)atoi(seedenv) : 99;
	long n, k;

	ck_assert_ptr_nonnull(buf = malloc(9000));
	snprintf(data, sizeof data, "%s/pc-data", base);
	ck_assert_int_eq(mkdir(data, 0750), 0);
	pc_watch(data);
	cfg.dir = data;
	ck_assert_msg(wal_ring_open(&cfg, &r, NULL, &err) == 0, "%s", err.msg);
	cs.r = r;
	cs.seed = seed + 7;
	atomic_init(&cs.stop, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, cut_syncer_main, &cs), 0);
	while (done < cuts) {
		/* Write for a while: records, sometimes a sync or rotation. */
		for (k = 1 + rand_r(&seed) % 300; k > 0; k--) {
			ts_fill_payload(buf, cut_size(seq), seq);
			ck_assert_msg(wal_ring_append(r, buf, (uint32_t)
			    cut_size(seq), -1, &s, &err) == 0, "%s", err.msg);
			ck_assert_int_eq(s, seq);
			seq++;
			if (rand_r(&seed) % 500 == 0)
				ck_assert_int_eq(wal_ring_rotate(r, &err), 0);
			if (rand_r(&seed) % 300 == 0)
				ck_assert_int_eq(wal_ring_sync(r, NULL, &err), 0);
		}
		if (rand_r(&seed) % 4 == 0)
			cut_retention(r, data, 2 + rand_r(&seed) % 3);
		/* The cut. */
		mode = done % PC_NMODES;
		snprintf(state, sizeof state, "%s/pc-state-%d", base, done);
		pc_hold();
		durable = wal_ring_durable_seq(r);
		written = wal_ring_written_seq(r);
		files = pc_cut(state, (enum pc_mode)mode, seed + (unsigned)done);
		pc_release();
		ck_assert_int_gt(files, 0);
		/* Recover (maybe with another segment size), go on, read. */
		scfg.dir = state;
		scfg.segment_size = (1 + rand_r(&seed) % 2) * 64 * 1024;
		ck_assert_msg(wal_ring_open(&scfg, &sr, &info, &err) == 0,
		    "cut %d (mode %d): %s", done, mode, err.msg);
		for (s = info.next_seq; s < info.next_seq + 5; s++) {
			ts_fill_payload(buf, cut_size(s), s);
			ck_assert_int_eq(wal_ring_append(sr, buf, (uint32_t)
			    cut_size(s), -1, NULL, &err), 0);
		}
		wal_ring_close(sr);
		first = first_seq(state);
		n = ts_verify_log(state, first, cut_size, NULL);
		ck_assert_msg(first >= 0 && first + n == info.next_seq + 5,
		    "cut %d (mode %d): %ld records readable from %lld, the "
		    "ring went on at %lld", done, mode, n, (long long)first,
		    (long long)info.next_seq);
		ck_assert_msg(info.next_seq > durable, "cut %d (mode %d): "
		    "durable up to %lld at the cut, recovered up to %lld", done,
		    mode, (long long)durable, (long long)info.next_seq - 1);
		ck_assert_msg(info.next_seq <= written + 1, "cut %d (mode %d): "
		    "recovered up to %lld, written up to %lld", done, mode,
		    (long long)info.next_seq - 1, (long long)written);
		if (info.next_seq - 1 - durable < lo)
			lo = info.next_seq - 1 - durable;
		ts_rmtree(strdup(state));
		done++;
	}
	atomic_store(&cs.stop, 1);
	pthread_join(th, NULL);
	wal_ring_close(r);
	fprintf(stderr, "power cuts: %d, %lld records, %llu syncs recorded, "
	    "at least %lld records past the durable seq recovered\n", cuts,
	    (long long)seq, (unsigned long long)pc_syncs(), (long long)lo);
	pc_unwatch();
	free(buf);
}
END_TEST

/*
 * Records a sync of sealed segments made durable were answered as durable
 * (a SYNC reply); then a group commit fails. The failure must say that
 * what is not durable starts after them, as the clients were told, not at
 * the last seq the sync thread itself happened to cover (here: none).
 */
START_TEST(test_failed_sync_names_first_not_durable)
{
	static uint8_t rec[30000];
	struct walmmap_status st;
	struct walmmap *w;
	int64_t seq, durable = -1;
	char *log, want[128];
	int i;

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K",
	    "--ring", "2", "-o", "prefault=no", "-o", "sync_interval=0",
	    NULL), 0);
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	memset(rec, 'k', sizeof rec);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(walmmap_append(w, rec, sizeof rec,
		    WALMMAP_ACK_WRITTEN, &seq), 0);
	ck_assert_int_eq(walmmap_rotate(w), 0);
	/*
	 * The background thread syncs what was sealed: all of it. Then a
	 * SYNC is answered at once, without a group commit.
	 */
	for (i = 0; i < 1000; i++) {
		ck_assert_int_eq(walmmap_status(w, &st), 0);
		if (st.durable_seq >= seq)
			break;
		usleep(10000);
	}
	ck_assert_int_eq(walmmap_sync(w, &durable), 0);
	ck_assert_int_eq(durable, seq);
	/* The next group commit fails. */
	wf_arm(ctl, WF_MSYNC, 1, EIO, 0);
	ck_assert_int_lt(walmmap_append(w, "x", 1, WALMMAP_ACK_DURABLE, &seq),
	    0);
	ck_assert_int_eq(ts_daemon_wait_exit(&d, 10000), 1);
	log = ts_daemon_log(&d);
	snprintf(want, sizeof want, "records from seq %lld on may not be on "
	    "storage", (long long)durable + 1);
	ck_assert_msg(strstr(log, want) != NULL, "no \"%s\" after seqs up to "
	    "%lld were answered durable:\n%s", want, (long long)durable, log);
	free(log);
	walmmap_close(w);
}
END_TEST

/*
 * A clean restart with another segment size removes the unused standbys
 * of the old size, which leaves a gap in the segment ids (ids are never
 * used twice). walctl verify must not call that healthy log damaged.
 */
START_TEST(test_verify_after_segment_size_change)
{
	struct wal_ring_config cfg = { .segment_size = 128 * 1024,
	    .ring_segments = 4, .no_prefault = 1 };
	struct wal_ring_stats st;
	struct wal_recovery info;
	struct wal_error err;
	struct wal_ring *r;
	uint8_t buf[100];
	char *out;
	int i, rc;

	cfg.dir = d.data;
	ck_assert_int_eq(mkdir(d.data, 0750), 0);
	ck_assert_msg(wal_ring_open(&cfg, &r, &info, &err) == 0, "%s",
	    err.msg);
	for (i = 0; i < 1000; i++) {
		wal_ring_stats(r, &st);
		if (st.standby == 3)
			break;
		usleep(10000);
	}
	ck_assert_uint_eq(st.standby, 3);
	memset(buf, 'v', sizeof buf);
	for (i = 0; i < 10; i++)
		ck_assert_int_eq(wal_ring_append(r, buf, sizeof buf, -1, NULL,
		    &err), 0);
	wal_ring_close(r);

	cfg.segment_size = 64 * 1024;
	cfg.ring_segments = 2;
	ck_assert_msg(wal_ring_open(&cfg, &r, &info, &err) == 0, "%s",
	    err.msg);
	ck_assert_uint_eq(info.removed, 3);
	for (i = 0; i < 3000; i++)	/* fills the tail, then 64K ones */
		ck_assert_int_eq(wal_ring_append(r, buf, sizeof buf, -1, NULL,
		    &err), 0);
	wal_ring_stats(r, &st);
	ck_assert_uint_ge(st.active_id, 5);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(d.data, 0, NULL, NULL), 3010);
	rc = ts_run_prog("client/walctl", NULL, 0, &out, "verify", d.data,
	    NULL);
	ck_assert_msg(rc == 0, "walctl verify exit %d: %s", rc, out);
	free(out);
}
END_TEST

/*
 * Restart cycles with everything the promise names at once: producers at
 * every level on the socket and through rings stream while walmmapd is
 * killed (-9), stopped, or made to fail its Nth msync, fdatasync or fsync,
 * and each run has another configuration (segment size, ring, prefault,
 * retention, ring size). After every cycle, recovery and then: seqs
 * gap-free from the oldest kept, nothing twice, each producer's order
 * kept, every acknowledged record at its seq with its payload, the log
 * never shorter than before, walctl verify clean; after a failed sync
 * nothing it covered was acknowledged durable and the daemon exited 1.
 * ATTACK_CYCLES (default 3) and ATTACK_SEED (default 1) run it longer.
 */
START_TEST(test_restart_cycles)
{
	static const char *sizes[] = { "64K", "128K", "256K" };
	static const char *rings[] = { "2", "3", "4" };
	static const enum wf_call calls[] = { WF_MSYNC, WF_FDATASYNC,
	    WF_FSYNC };
	struct acked acked[NPROD];
	char path[NPROD][PATH_MAX], ctx[256], *out, *args[32];
	char retain[64], shm[64], marker[PATH_MAX + 64], *log;
	const char *env = getenv("ATTACK_CYCLES");
	const char *seedenv = getenv("ATTACK_SEED");
	int cycles = env != NULL ? atoi(env) : 3, c, status, a, rc, act, i;
	unsigned seed = seedenv != NULL ? (unsigned)atoi(seedenv) : 1;
	int64_t next = 0, from, faults = 0, stopped = 0;
	pid_t pids[NPROD];
	unsigned p;

	memset(acked, 0, sizeof acked);
	for (p = 0; p < NPROD; p++)
		snprintf(path[p], sizeof path[p], "%s/acked-%u", base, p);
	srandom(seed);
	for (c = 0; c < cycles; c++) {
		a = 0;
		args[a++] = "--segment-size";
		args[a++] = (char *)sizes[random() % 3];
		args[a++] = "--ring";
		args[a++] = (char *)rings[random() % 3];
		args[a++] = "-o";
		args[a++] = random() % 2 ? "prefault=no" : "prefault=yes";
		args[a++] = "-o";
		snprintf(retain, sizeof retain, "retain_segments=%ld",
		    random() % 3 == 0 ? 3 + random() % 3 : 0);
		args[a++] = retain;
		args[a++] = "-o";
		snprintf(shm, sizeof shm, "shm_size=%s", random() % 2 ? "64K" :
		    "128K");
		args[a++] = shm;
		args[a++] = "-o";
		args[a++] = "sync_interval=50ms";
		args[a] = NULL;
		snprintf(ctx, sizeof ctx, "cycle %d (seed %u, %s %s %s %s %s)",
		    c, seed, args[1], args[3], args[5], retain, shm);
		rc = ts_daemon_startv(&d, args);
		if (rc != 0) {
			log = ts_daemon_log(&d);
			ck_abort_msg("%s: walmmapd did not start (%d): %s", ctx,
			    rc, log);
		}
		for (p = 0; p < NPROD; p++)
			pids[p] = spawn(p, (uint64_t)c * KEY_CYCLE, path[p]);
		usleep((useconds_t)(20000 + random() % 150000));
		act = (int)(random() % 10);
		from = -1;
		if (act < 5)
			ts_daemon_kill(&d);
		else if (act < 7)
			ck_assert_int_eq(ts_daemon_stop(&d), 0);
		else {
			enum wf_call call = calls[random() % 3];

			wf_arm(ctl, call, 1 + random() % 3, EIO, 0);
			faults++;
			rc = ts_daemon_wait_exit(&d, 5000);
			if (rc == -1)
				rc = ts_daemon_stop(&d);
			wf_disarm(ctl, call);
			snprintf(marker, sizeof marker, "%s/walmmapd.sync-failed",
			    d.data);
			log = ts_daemon_log(&d);
			/* A sync failed for good: the daemon must say so. */
			ck_assert_msg(access(marker, F_OK) != 0 || rc == 1,
			    "%s: %s failed, marker left, exit %d: %s", ctx,
			    wf_call_names[call], rc, log);
			ck_assert_msg(rc == 0 || rc == 1, "%s: exit %d: %s",
			    ctx, rc, log);
			free(log);
			if (rc == 1) {
				from = failed_from();
				stopped++;
			}
			atomic_store(&ctl->op[call].injected, 0);
		}
		for (p = 0; p < NPROD; p++) {
			ck_assert_int_eq(waitpid(pids[p], &status, 0), pids[p]);
			ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status)
			    == 0, "producer %u status %#x", p, status);
		}
		for (p = 0; p < NPROD; p++)
			load_acked(path[p], &acked[p]);
		if (from >= 0)
			for (p = 0; p < NPROD; p++) {
				if (prods[p].ack != WALMMAP_ACK_DURABLE)
					continue;
				for (i = 0; i < (int)acked[p].n; i++)
					TS_CHECK(acked[p].seq[i] < from ||
					    acked[p].key[i] < (uint64_t)c *
					    KEY_CYCLE, "%s: producer %u told "
					    "seq %" PRId64 " durable, the failed "
					    "sync covered from %" PRId64, ctx, p,
					    acked[p].seq[i], from);
			}
		/* Recovery with the plain configuration, then check. */
		rc = ts_daemon_start(&d, "--segment-size", "128K", "-o",
		    "prefault=no", NULL);
		if (rc != 0) {
			log = ts_daemon_log(&d);
			ck_abort_msg("%s: restart failed (%d): %s", ctx, rc, log);
		}
		ck_assert_int_eq(ts_daemon_stop(&d), 0);
		next = check_log(acked, next, ctx);
		ck_assert_msg(ts_run_prog("client/walctl", NULL, 0, &out,
		    "verify", "-q", d.data, NULL) == 0, "%s: walctl verify: %s",
		    ctx, out);
		free(out);
	}
	fprintf(stderr, "restart cycles: %d (seed %u), %lld faults armed, %lld "
	    "stops on a failed sync, log at seq %lld\n", cycles, seed,
	    (long long)faults, (long long)stopped, (long long)next);
	for (p = 0; p < NPROD; p++) {
		free(acked[p].seq);
		free(acked[p].key);
	}
}
END_TEST

static void
setup(void)
{
	base = ts_mkdtemp("attack");
	ts_daemon_init(&d, base);
	snprintf(ctlpath, sizeof ctlpath, "%s/faults", base);
	ck_assert_ptr_nonnull(ctl = wf_ctl_open(ctlpath));
	d.fault_ctl = ctlpath;
}

static void
teardown(void)
{
	ts_daemon_kill(&d);
	if (d.notify_fd != -1)
		close(d.notify_fd);
	wf_ctl_close(ctl);
	ts_rmtree(base);
}

static Suite *
attack_suite(void)
{
	Suite *s = suite_create("attack_durability");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 3600);
	tcase_add_test(tc, test_bg_sync_failure_stops);
	tcase_add_test(tc, test_final_sync_failure_exit_status);
	tcase_add_test(tc, test_durable_report_after_sealed_sync);
	tcase_add_test(tc, test_ring_durable_after_sealed_sync);
	tcase_add_test(tc, test_failed_sync_names_first_not_durable);
	tcase_add_test(tc, test_power_cuts);
	tcase_add_test(tc, test_verify_after_segment_size_change);
	tcase_add_test(tc, test_restart_cycles);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(attack_suite()));
}
