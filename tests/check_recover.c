/*
 * walmmapd tests - recovery of a directory (src/wal_recover.c via the ring).
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faultinject.h"
#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_checkpoint.h"
#include "wal_format.h"
#include "wal_reader.h"
#include "wal_ring.h"
#include "wal_segment.h"

#define SEG64K	(64 * 1024)

static char *dir;
static struct wf_ctl *ctl;	/* fails and counts this process's calls */

static void
setup(void)
{
	char path[4200];

	dir = ts_mkdtemp("recover");
	snprintf(path, sizeof path, "%s.faultctl", dir);
	ck_assert_ptr_nonnull(ctl = wf_ctl_open(path));
	wf_ctl_use(ctl);
}

static void
teardown(void)
{
	char path[4200];

	wf_ctl_use(NULL);
	wf_ctl_close(ctl);
	snprintf(path, sizeof path, "%s.faultctl", dir);
	unlink(path);
	ts_rmtree(dir);
}

/* Path of a file in a directory, in a static buffer. */
static const char *
file_in(const char *d, const char *name)
{
	static char buf[4200];

	snprintf(buf, sizeof buf, "%s/%s", d, name);
	return (buf);
}

/* Open a ring on d with a segment size; abort on failure. */
static struct wal_ring *
open_ring_at(const char *d, uint64_t segsize, unsigned n,
    struct wal_recovery *info)
{
	struct wal_ring_config cfg = { .dir = d, .segment_size = segsize,
	    .ring_segments = n, .no_prefault = 1 };
	struct wal_ring *r;
	struct wal_error err;

	if (wal_ring_open(&cfg, &r, info, &err) != 0)
		ck_abort_msg("wal_ring_open %s: %s", d, err.msg);
	return (r);
}

static struct wal_ring *
open_ring(struct wal_recovery *info)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K,
	    .ring_segments = 3 };
	struct wal_ring *r;
	struct wal_error err;

	if (wal_ring_open(&cfg, &r, info, &err) != 0)
		ck_abort_msg("wal_ring_open: %s", err.msg);
	return (r);
}

static void
append_n(struct wal_ring *r, int64_t from, int64_t n)
{
	uint8_t buf[512];
	struct wal_error err;
	int64_t s, seq;

	for (s = from; s < from + n; s++) {
		ts_fill_payload(buf, ts_size_of(s), s);
		if (wal_ring_append(r, buf, (uint32_t)ts_size_of(s), -1, &seq,
		    &err) != 0)
			ck_abort_msg("append %lld: %s", (long long)s, err.msg);
		ck_assert_int_eq(seq, s);
	}
}

/* Offset just after the last record of segment id (by scanning it). */
static uint64_t
tail_offset(uint64_t id, int64_t *last)
{
	struct wal_scan sc;
	uint8_t *img;
	size_t len;

	img = ts_read_file(ts_seg_path(dir, id), &len);
	ck_assert_ptr_nonnull(img);
	wal_scan(img, len, WAL_FILE_HEADER_SIZE, -1, &sc);
	free(img);
	if (last != NULL)
		*last = sc.last_seq;
	return (sc.end);
}

START_TEST(test_restart_continues_seq_and_ids)
{
	struct wal_recovery info;
	struct wal_ring *r;
	struct wal_ring_stats st;
	uint8_t *before, *after;
	size_t lb, la;

	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 0);
	append_n(r, 0, 2000);
	wal_ring_close(r);
	before = ts_read_file(ts_seg_path(dir, 0), &lb);

	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 2000);
	ck_assert_uint_eq(info.torn_bytes, 0);
	ck_assert_int_eq(wal_ring_next_seq(r), 2000);
	append_n(r, 2000, 2000);
	wal_ring_stats(r, &st);
	wal_ring_close(r);

	/* Segment 0 (full, sealed) is untouched by the second run. */
	after = ts_read_file(ts_seg_path(dir, 0), &la);
	ck_assert_uint_eq(la, lb);
	ck_assert(memcmp(before, after, la) == 0);
	free(before);
	free(after);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 4000);

	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 4000);
	ck_assert_uint_ge(info.tail_id, st.active_id);
	wal_ring_close(r);
}
END_TEST

START_TEST(test_adopts_empty_standby)
{
	struct wal_recovery info;
	struct wal_ring *r;
	int files;

	r = open_ring(&info);
	append_n(r, 0, 10);
	/* Wait for the background thread to prepare its standbys. */
	for (int i = 0; i < 500; i++) {
		struct wal_ring_stats st;

		wal_ring_stats(r, &st);
		if (st.standby == 2)
			break;
		usleep(10000);
	}
	wal_ring_close(r);
	files = ts_count_files(dir, "wal_mmap_");
	ck_assert_int_eq(files, 3);
	r = open_ring(&info);
	ck_assert_uint_eq(info.adopted, 2);
	ck_assert_uint_eq(info.tail_id, 0);
	append_n(r, 10, 10);
	wal_ring_close(r);
	/* No new files for standby: the old ones were reused. */
	ck_assert_int_eq(ts_count_files(dir, "wal_mmap_"), 3);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 20);
}
END_TEST

START_TEST(test_torn_last_record)
{
	struct wal_recovery info;
	struct wal_ring *r;
	uint8_t rec[128];
	uint64_t end;
	int64_t last;

	r = open_ring(NULL);
	append_n(r, 0, 50);
	wal_ring_close(r);
	end = tail_offset(0, &last);
	ck_assert_int_eq(last, 49);
	/* Seq 50 cut by a crash: header and half the payload, no CRC. */
	wal_record_encode(rec, 50, 1, "0123456789abcdef0123456789abcdef", 32);
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 0), rec, 24 + 16,
	    (off_t)end), 0);

	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 50);
	ck_assert_uint_eq(info.torn_bytes, 40);
	ck_assert_uint_eq(info.tail_offset, end);
	append_n(r, 50, 10);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 60);
	/* Nothing was worth saving: no .discarded file. */
	ck_assert_int_eq(ts_count_files(dir, "wal_mmap_0000000000.wal."), 0);
}
END_TEST

START_TEST(test_random_bytes_after_last_record)
{
	struct wal_recovery info;
	struct wal_ring *r;
	uint8_t junk[777];
	uint64_t end;
	int stop;

	r = open_ring(NULL);
	append_n(r, 0, 30);
	wal_ring_close(r);
	end = tail_offset(0, NULL);
	ts_fill_payload(junk, sizeof junk, 999);
	junk[0] = 0x5a;		/* not a zero magic, not the record magic */
	junk[sizeof junk - 1] = 0x7f;
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 0), junk,
	    sizeof junk, (off_t)end + 100), 0);
	junk[0] = 0x11;
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 0), junk, 1,
	    (off_t)end), 0);

	/*
	 * Before recovery a strict reader (ts_verify_log: the log is not
	 * being written) stops at the garbage and names it.
	 */
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, &stop), 30);
	ck_assert_int_eq(stop, WAL_REC_BAD_MAGIC);

	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 30);
	ck_assert_uint_eq(info.torn_bytes, 100 + sizeof junk);
	append_n(r, 30, 5);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, &stop), 35);
	ck_assert_int_eq(stop, WAL_REC_END);
}
END_TEST

/*
 * A record with a good CRC and a negative seq (found by fuzz_recover) is
 * no record of the log: seqs start at 0. It used to be read as the first
 * record of a segment, and since the seq after it was negative too, every
 * later record passed whatever its seq: recovery continued after seq 1000
 * here, and a second recovery after appends disagreed with the first.
 */
START_TEST(test_negative_seq_is_a_break)
{
	struct wal_recovery info;
	struct wal_ring *r;
	uint8_t img[3 * 64];
	size_t off = 0;
	int stop;

	r = open_ring(NULL);
	wal_ring_close(r);
	off += wal_record_encode(img + off, -1, 1, "neg", 3);
	off += wal_record_encode(img + off, 7, 2, "sev", 3);
	off += wal_record_encode(img + off, 1000, 3, "big", 3);
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 0), img, off,
	    WAL_FILE_HEADER_SIZE), 0);

	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 0);
	ck_assert_uint_eq(info.torn_bytes, off);
	append_n(r, 0, 2);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, &stop), 2);
	ck_assert_int_eq(stop, WAL_REC_END);
	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 2);
	wal_ring_close(r);
}
END_TEST

START_TEST(test_corruption_saved_before_zeroing)
{
	struct wal_recovery info;
	struct wal_ring *r;
	uint64_t off;
	uint8_t b;
	int64_t n;

	r = open_ring(NULL);
	append_n(r, 0, 40);
	wal_ring_close(r);
	/* Flip a payload bit of seq 20: 21..39 still look valid after it. */
	off = WAL_FILE_HEADER_SIZE;
	for (n = 0; n < 20; n++)
		off += wal_record_span(ts_size_of(n));
	{
		size_t len;
		uint8_t *img = ts_read_file(ts_seg_path(dir, 0), &len);

		b = img[off + 24] ^ 0x04;
		free(img);
	}
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 0), &b, 1,
	    (off_t)off + 24), 0);
	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 20);
	ck_assert_uint_gt(info.torn_bytes, 0);
	wal_ring_close(r);
	/* The bytes holding seq 20..39 were kept beside the segment. */
	ck_assert_int_eq(ts_count_files(dir,
	    "wal_mmap_0000000000.wal.discarded-"), 1);
}
END_TEST

START_TEST(test_second_writer_refused)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K,
	    .ring_segments = 2 };
	struct wal_ring *r, *r2;
	struct wal_error err;

	r = open_ring(NULL);
	append_n(r, 0, 5);
	ck_assert_int_eq(wal_ring_open(&cfg, &r2, NULL, &err), -EWOULDBLOCK);
	ck_assert_ptr_nonnull(strstr(err.msg, "in use by another writer"));
	ck_assert_ptr_nonnull(strstr(err.msg, dir));
	append_n(r, 5, 5);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 10);
}
END_TEST

START_TEST(test_missing_directory)
{
	struct wal_ring_config cfg = { .segment_size = SEG64K };
	struct wal_ring *r;
	struct wal_error err;
	char path[4200];

	snprintf(path, sizeof path, "%s/missing", dir);
	cfg.dir = path;
	ck_assert_int_eq(wal_ring_open(&cfg, &r, NULL, &err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err.msg, path));
	ck_assert_ptr_nonnull(strstr(err.msg, "No such file or directory"));
}
END_TEST

START_TEST(test_foreign_segment_refused)
{
	struct wal_ring *r;
	struct wal_error err;
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K };
	char junk[64] = "this is not a segment";
	int fd;

	fd = open(ts_seg_path(dir, 3), O_CREAT | O_WRONLY, 0600);
	ck_assert_int_eq(write(fd, junk, sizeof junk), sizeof junk);
	close(fd);
	ck_assert_int_eq(wal_ring_open(&cfg, &r, NULL, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "SIGNETWAL1"));
	ck_assert_ptr_nonnull(strstr(err.msg, "wal_mmap_0000000003.wal"));
}
END_TEST

START_TEST(test_stale_temp_removed)
{
	struct wal_recovery info;
	struct wal_ring *r;
	int fd;

	fd = open(ts_seg_path(dir, 0), O_CREAT | O_WRONLY, 0600);
	close(fd);
	unlink(ts_seg_path(dir, 0));
	{
		char p[4200];

		snprintf(p, sizeof p, "%s/.tmp.wal_mmap_0000000000.wal", dir);
		fd = open(p, O_CREAT | O_WRONLY, 0600);
		close(fd);
	}
	r = open_ring(&info);
	append_n(r, 0, 3);
	wal_ring_close(r);
	ck_assert_int_eq(ts_count_files(dir, ".tmp."), 0);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 3);
}
END_TEST

/*
 * A child appends and reports each seq whose append returned through a
 * pipe; the parent SIGKILLs it at a random point and checks that recovery
 * keeps every reported record and continues the sequence.
 */
static void
kill_cycle(unsigned seed, int64_t *total)
{
	int64_t acked = -1, seq;
	struct wal_recovery info;
	struct wal_ring *r;
	int pfd[2], status;
	long target;
	pid_t pid;
	long n;

	srandom(seed);
	target = 200 + random() % 5000;
	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct wal_ring_config cfg = { .dir = dir,
		    .segment_size = SEG64K, .ring_segments = 2 };
		uint8_t buf[512];

		close(pfd[0]);
		if (wal_ring_open(&cfg, &r, NULL, NULL) != 0)
			_exit(3);
		for (seq = wal_ring_next_seq(r);; seq++) {
			ts_fill_payload(buf, ts_size_of(seq), seq);
			if (wal_ring_append(r, buf, (uint32_t)ts_size_of(seq),
			    -1, NULL, NULL) != 0)
				_exit(4);
			if (write(pfd[1], &seq, sizeof seq) != sizeof seq)
				_exit(5);
		}
	}
	close(pfd[1]);
	for (n = 0; n < target; n++)
		if (read(pfd[0], &acked, sizeof acked) != sizeof acked)
			break;
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	close(pfd[0]);
	ck_assert(WIFSIGNALED(status));

	r = open_ring(&info);
	ck_assert_int_gt(info.next_seq, acked);
	wal_ring_close(r);
	n = ts_verify_log(dir, 0, ts_size_of, NULL);
	ck_assert_int_eq(n, info.next_seq);
	*total = n;
}

START_TEST(test_kill9_mid_stream)
{
	int64_t total = 0, prev = 0;
	unsigned i;

	for (i = 0; i < 8; i++) {
		kill_cycle(1234 + i, &total);
		ck_assert_int_ge(total, prev);
		prev = total;
	}
}
END_TEST

/* The segment files of a directory, as bytes. */
struct image {
	size_t		 n;
	char		 name[16][WAL_SEGMENT_NAME_MAX];
	uint8_t		*data[16];
	size_t		 len[16];
};

static void
snapshot(const char *from, struct image *im)
{
	char path[PATH_MAX];
	uint64_t id;

	memset(im, 0, sizeof *im);
	for (id = 0; id < 64 && im->n < 16; id++) {
		snprintf(path, sizeof path, "%s", ts_seg_path(from, id));
		if (access(path, F_OK) != 0)
			continue;
		snprintf(im->name[im->n], sizeof im->name[0], "%s",
		    strrchr(path, '/') + 1);
		im->data[im->n] = ts_read_file(path, &im->len[im->n]);
		ck_assert_ptr_nonnull(im->data[im->n]);
		im->n++;
	}
}

static void
image_free(struct image *im)
{
	size_t i;

	for (i = 0; i < im->n; i++)
		free(im->data[i]);
}

/*
 * What a power cut may leave (ts_cut_image() modes 0-3): each 4 KiB page
 * written after the last completed sync is on disk or not. A segment
 * created after the sync is on disk with its file header (creation syncs
 * the header before the rename and the directory after it), and its later
 * pages as above. Segments below synced_below were synced in full since:
 * all their pages are on disk. The checkpoint, written atomically, is as
 * it was (ckpt, NULL if none).
 */
static void
make_state(const struct image *synced, const struct image *now, int mode,
    uint64_t synced_below, const uint8_t *ckpt, size_t ckpt_len,
    const char *to, uint64_t *rng)
{
	char path[PATH_MAX];
	uint8_t *img, *old;
	uint64_t id;
	size_t i, j;
	int fd;

	ck_assert_int_eq(mkdir(to, 0755), 0);
	if (ckpt != NULL) {
		fd = open(file_in(to, WAL_CHECKPOINT_NAME), O_WRONLY | O_CREAT,
		    0644);
		ck_assert_int_ne(fd, -1);
		ck_assert_int_eq(write(fd, ckpt, ckpt_len), (ssize_t)ckpt_len);
		close(fd);
	}
	for (i = 0; i < now->n; i++) {
		old = calloc(1, now->len[i]);
		img = malloc(now->len[i]);
		ck_assert(old != NULL && img != NULL);
		memcpy(old, WAL_FILE_MAGIC, WAL_FILE_HEADER_SIZE);
		for (j = 0; j < synced->n; j++)
			if (strcmp(synced->name[j], now->name[i]) == 0)
				memcpy(old, synced->data[j], now->len[i]);
		/* Synced in full since: every page is on disk. */
		if (wal_seg_parse_name(now->name[i], &id) == 0 &&
		    id < synced_below)
			memcpy(old, now->data[i], now->len[i]);
		(void)ts_cut_image(img, old, now->data[i], now->len[i], mode,
		    rng);
		ck_assert_int_lt(snprintf(path, sizeof path, "%s/%s", to,
		    now->name[i]), (int)sizeof path);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		ck_assert_int_ne(fd, -1);
		ck_assert_int_eq(write(fd, img, now->len[i]), (ssize_t)
		    now->len[i]);
		close(fd);
		free(img);
		free(old);
	}
}

/*
 * Power loss: after a sync and more unsynced writes (across a rotation),
 * every state a power cut could leave recovers to a log that holds every
 * durable record and only records that were written, in seq order.
 */
START_TEST(test_power_loss_states)
{
	struct image synced, now;
	struct wal_ring *r;
	struct wal_error err;
	struct wal_recovery info;
	char state[PATH_MAX];
	int64_t durable;
	long n, lo = 800, hi = 0;
	int trial, mode, stop;

	uint64_t rng = 11;

	r = open_ring(NULL);
	append_n(r, 0, 300);
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), 0);
	ck_assert_int_eq(durable, 299);
	snapshot(dir, &synced);
	append_n(r, 300, 500);		/* unsynced, into the next segment */
	snapshot(dir, &now);		/* what the page cache holds */
	wal_ring_close(r);
	for (trial = 0; trial < 40; trial++) {
		mode = trial % 4;
		snprintf(state, sizeof state, "%s/state-%d", dir, trial);
		make_state(&synced, &now, mode, 0, NULL, 0, state, &rng);
		{
			struct wal_ring_config cfg = { .dir = state,
			    .segment_size = SEG64K, .ring_segments = 3,
			    .no_prefault = 1 };

			if (wal_ring_open(&cfg, &r, &info, &err) != 0)
				ck_abort_msg("state %d (mode %d): %s", trial,
				    mode, err.msg);
			/* The log goes on where it ends, with no hole. */
			append_n(r, info.next_seq, 10);
			wal_ring_close(r);
		}
		/* Payloads checked: nothing that was not written comes back. */
		n = ts_verify_log(state, 0, ts_size_of, &stop);
		ck_assert_msg(n == info.next_seq + 10, "state %d (mode %d): "
		    "%ld records readable, the writer continued at %lld",
		    trial, mode, n, (long long)info.next_seq);
		n -= 10;
		ck_assert_msg(n > durable, "state %d (mode %d): %ld records, "
		    "durable up to %lld", trial, mode, n, (long long)durable);
		ck_assert_int_le(n, 800);
		lo = n < lo ? n : lo;
		hi = n > hi ? n : hi;
	}
	fprintf(stderr, "power loss: 40 states, %ld..%ld of 800 records "
	    "recovered, all 300 durable ones in each\n", lo, hi);
	image_free(&synced);
	image_free(&now);
}
END_TEST


/* Wait (at most 10 s) until the ring's counters satisfy ok(). */
static void
wait_stats(struct wal_ring *r, int (*ok)(const struct wal_ring_stats *),
    const char *what)
{
	struct wal_ring_stats st;
	int i;

	for (i = 0; i < 10000; i++) {
		wal_ring_stats(r, &st);
		if (ok(&st))
			return;
		usleep(1000);
	}
	ck_abort_msg("waited 10 s for %s", what);
}

static int
three_standbys(const struct wal_ring_stats *st)
{
	return (st->standby == 3);
}

static int
checkpoint_caught_up(const struct wal_ring_stats *st)
{
	return (st->checkpoint_id == st->synced_below);
}

static int
sealed_synced_and_recorded(const struct wal_ring_stats *st)
{
	return (st->sealed_unsynced == 0 && st->checkpoint_id ==
	    st->synced_below);
}

/* Files in d whose name contains ".discarded". */
static int
count_discarded(const char *d)
{
	struct dirent *de;
	DIR *dp;
	int n = 0;

	ck_assert_ptr_nonnull(dp = opendir(d));
	while ((de = readdir(dp)) != NULL)
		if (strstr(de->d_name, ".discarded") != NULL)
			n++;
	closedir(dp);
	return (n);
}

/* The checkpoint of d: 1 read, 0 none. */
static int
read_checkpoint(const char *d, struct wal_checkpoint *ck)
{
	struct wal_error err;
	int fd, rc;

	ck_assert_int_ge(fd = open(d, O_RDONLY | O_DIRECTORY), 0);
	rc = wal_checkpoint_read(fd, d, ck, &err);
	close(fd);
	ck_assert_msg(rc >= 0, "%s", err.msg);
	return (rc);
}

/*
 * Issue #13, defect 1: three clean runs with 64 KiB, 128 KiB and 128 KiB
 * segments. The 64 KiB standbys of the first run are removed by the
 * second, not left below its tail where the third would take them for a
 * hole: no record lost, no seq reused, nothing discarded.
 */
START_TEST(test_segment_size_change)
{
	struct wal_recovery info;
	struct wal_ring *r;
	struct wal_error err;
	int64_t durable;

	r = open_ring_at(dir, SEG64K, 4, &info);
	append_n(r, 0, 100);
	wait_stats(r, three_standbys, "three standby segments");
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), 0);
	wal_ring_close(r);
	ck_assert_int_eq(ts_count_files(dir, "wal_mmap_"), 4);

	r = open_ring_at(dir, 2 * SEG64K, 4, &info);
	ck_assert_uint_eq(info.removed, 3);
	ck_assert_uint_eq(info.adopted, 0);
	ck_assert_int_eq(info.next_seq, 100);
	append_n(r, 100, 300);
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), 0);
	ck_assert_int_eq(durable, 399);
	wal_ring_close(r);

	r = open_ring_at(dir, 2 * SEG64K, 4, &info);
	ck_assert_uint_eq(info.discarded, 0);
	ck_assert_uint_eq(info.torn_bytes, 0);
	ck_assert_int_eq(info.next_seq, 400);
	append_n(r, 400, 10);
	wal_ring_close(r);
	ck_assert_int_eq(count_discarded(dir), 0);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 410);
}
END_TEST

/*
 * Issue #13, defect 2: after a crash the reopen syncs every segment at or
 * after the checkpoint (not only the tail) before it calls the records
 * durable.
 */
START_TEST(test_reopen_syncs_after_checkpoint)
{
	struct wal_checkpoint ck = { 0, -1, 0 };
	struct wal_recovery info;
	struct wal_ring *r;
	struct wal_scan sc;
	uint64_t id, with_records = 0, calls;
	uint8_t *img;
	size_t len;
	int status;
	pid_t pid;

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct wal_ring_config cfg = { .dir = dir,
		    .segment_size = SEG64K, .ring_segments = 2 };
		uint8_t buf[1000];
		int64_t s;

		if (wal_ring_open(&cfg, &r, NULL, NULL) != 0)
			_exit(3);
		for (s = 0; s < 200; s++) {
			ts_fill_payload(buf, sizeof buf, s);
			if (wal_ring_append(r, buf, sizeof buf, -1, NULL,
			    NULL) != 0)
				_exit(4);
		}
		raise(SIGKILL);
		_exit(5);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status));

	(void)read_checkpoint(dir, &ck);
	for (id = ck.synced_below; id < 64; id++) {
		if ((img = ts_read_file(ts_seg_path(dir, id), &len)) == NULL)
			continue;
		wal_scan(img, len, WAL_FILE_HEADER_SIZE, -1, &sc);
		if (sc.records > 0)
			with_records++;
		free(img);
	}
	ck_assert_uint_ge(with_records, 1);
	calls = atomic_load(&ctl->op[WF_FDATASYNC].calls);
	r = open_ring(&info);
	calls = atomic_load(&ctl->op[WF_FDATASYNC].calls) - calls;
	ck_assert_uint_eq(info.scan_from_id, ck.synced_below);
	ck_assert_uint_eq(info.synced, with_records);
	ck_assert_msg(calls >= with_records, "%llu fdatasyncs for %llu "
	    "segments holding records after the checkpoint",
	    (unsigned long long)calls, (unsigned long long)with_records);
	ck_assert_int_eq(info.next_seq, 200);
	ck_assert_int_eq(wal_ring_durable_seq(r), 199);
	wal_ring_close(r);
}
END_TEST

/*
 * A power cut at any moment after the checkpoint: sealed segments synced
 * by the background thread are whole, the checkpoint is as it was, every
 * other page written since the last sync is there or not. Each state
 * recovers to a gap-free prefix holding every record that was durable.
 */
START_TEST(test_power_loss_after_checkpoint)
{
	struct image synced, now;
	struct wal_ring_stats st;
	struct wal_recovery info;
	struct wal_ring *r;
	struct wal_error err;
	struct wal_checkpoint ck;
	char state[PATH_MAX];
	uint8_t *ckpt;
	size_t ckpt_len;
	int64_t durable;
	long n, lo = 3000, hi = 0;
	int trial, mode;

	uint64_t rng = 13;

	r = open_ring(NULL);
	append_n(r, 0, 1000);
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), 0);
	wait_stats(r, checkpoint_caught_up, "the checkpoint");
	snapshot(dir, &synced);
	/*
	 * Unsynced, across rotations; the background thread syncs the sealed
	 * segments of the first part (and moves the checkpoint on) meanwhile.
	 */
	append_n(r, 1000, 800);
	wait_stats(r, sealed_synced_and_recorded, "the checkpoint");
	append_n(r, 1800, 700);
	/*
	 * The moment of the power cut. The background thread may still sync
	 * and replace the checkpoint meanwhile, so read in the order that
	 * keeps the picture possible: the checkpoint's bytes (and ck parsed
	 * from the same file, read again until both agree), then the
	 * counters (synced_below only grows, and before the checkpoint that
	 * records it), then the pages.
	 */
	durable = wal_ring_durable_seq(r);
	ckpt = NULL;
	for (trial = 0; trial < 100; trial++) {
		uint8_t *again;
		size_t again_len;

		free(ckpt);
		ckpt = ts_read_file(file_in(dir, WAL_CHECKPOINT_NAME),
		    &ckpt_len);
		ck_assert_ptr_nonnull(ckpt);
		ck_assert_int_eq(read_checkpoint(dir, &ck), 1);
		again = ts_read_file(file_in(dir, WAL_CHECKPOINT_NAME),
		    &again_len);
		ck_assert_ptr_nonnull(again);
		mode = again_len == ckpt_len && memcmp(again, ckpt,
		    ckpt_len) == 0;
		free(again);
		if (mode)
			break;
	}
	ck_assert_msg(trial < 100, "the checkpoint kept changing");
	wal_ring_stats(r, &st);
	ck_assert_uint_ge(st.synced_below, ck.synced_below);
	ck_assert_uint_ge(ck.synced_below, 1);
	snapshot(dir, &now);
	wal_ring_close(r);
	for (trial = 0; trial < 40; trial++) {
		mode = trial % 4;
		snprintf(state, sizeof state, "%s/state-%d", dir, trial);
		make_state(&synced, &now, mode, st.synced_below, ckpt,
		    ckpt_len, state, &rng);
		r = open_ring_at(state, SEG64K, 3, &info);
		ck_assert_int_eq(info.checkpoint, WAL_CKPT_USED);
		ck_assert_uint_ge(info.scan_from_id, ck.synced_below);
		append_n(r, info.next_seq, 10);
		wal_ring_close(r);
		n = ts_verify_log(state, 0, ts_size_of, NULL);
		ck_assert_msg(n == info.next_seq + 10, "state %d (mode %d): "
		    "%ld records readable, the writer continued at %lld",
		    trial, mode, n, (long long)info.next_seq);
		n -= 10;
		ck_assert_msg(n > durable, "state %d (mode %d): %ld records, "
		    "durable up to %lld", trial, mode, n, (long long)durable);
		ck_assert_int_le(n, 2500);
		lo = n < lo ? n : lo;
		hi = n > hi ? n : hi;
	}
	fprintf(stderr, "power loss after a checkpoint at segment %llu: 40 "
	    "states, %ld..%ld of 2500 records recovered, all %lld durable "
	    "ones in each\n", (unsigned long long)ck.synced_below, lo, hi,
	    (long long)durable + 1);
	free(ckpt);
	image_free(&synced);
	image_free(&now);
}
END_TEST

/*
 * Issue #13, defects 7 and 24: segments after a break are moved aside
 * under a new name (an earlier .discarded file, or a symbolic link
 * planted under the name, is left alone), and their ids are never used
 * again, even once the segments that held them are gone.
 */
START_TEST(test_discard_never_overwrites_nor_reuses)
{
	struct wal_recovery info;
	struct wal_ring_stats st;
	struct wal_ring *r;
	struct stat sb;
	char target[PATH_MAX], link3[PATH_MAX], link4[PATH_MAX];
	uint8_t zero[4096] = { 0 }, *got;
	int64_t last2;
	size_t len;
	uint64_t id;

	r = open_ring(NULL);
	append_n(r, 0, 2000);
	wal_ring_stats(r, &st);
	ck_assert_uint_ge(st.active_id, 5);
	wal_ring_close(r);
	/* A hole in segment 3 (its first page lost), read in full. */
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 3), zero + 16,
	    sizeof zero - 16, 16), 0);
	ck_assert_int_eq(unlink(file_in(dir, WAL_CHECKPOINT_NAME)), 0);
	(void)tail_offset(2, &last2);
	/* An earlier discard's copy, and a link planted by someone. */
	snprintf(link3, sizeof link3, "%s.discarded", ts_seg_path(dir, 3));
	ck_assert_int_eq(ts_write_file(link3, "earlier", 7), 0);
	snprintf(target, sizeof target, "%s.target", dir);
	ck_assert_int_eq(ts_write_file(target, "not yours", 9), 0);
	snprintf(link4, sizeof link4, "%s.discarded", ts_seg_path(dir, 4));
	ck_assert_int_eq(symlink(target, link4), 0);

	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, last2 + 1);
	ck_assert_uint_eq(info.discarded, st.active_id - 2);
	wal_ring_close(r);
	got = ts_read_file(link3, &len);
	ck_assert(got != NULL && len == 7 && memcmp(got, "earlier", 7) == 0);
	free(got);
	ck_assert_int_eq(lstat(link4, &sb), 0);
	ck_assert(S_ISLNK(sb.st_mode));
	got = ts_read_file(target, &len);
	ck_assert(got != NULL && len == 9 && memcmp(got, "not yours", 9) == 0);
	free(got);
	unlink(target);
	snprintf(link3, sizeof link3, "%s.discarded.1", ts_seg_path(dir, 3));
	ck_assert_int_eq(access(link3, F_OK), 0);
	snprintf(link4, sizeof link4, "%s.discarded.1", ts_seg_path(dir, 4));
	ck_assert_int_eq(access(link4, F_OK), 0);

	/*
	 * Remove every segment above 2 and the checkpoint: only the
	 * .discarded names still say ids 3.. were used.
	 */
	for (id = 3; id < 64; id++)
		(void)unlink(ts_seg_path(dir, id));
	ck_assert_int_eq(unlink(file_in(dir, WAL_CHECKPOINT_NAME)), 0);
	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, last2 + 1);
	append_n(r, last2 + 1, 1500);
	wal_ring_close(r);
	for (id = 3; id <= st.active_id; id++)
		ck_assert_msg(access(ts_seg_path(dir, id), F_OK) == -1,
		    "segment id %llu was used again", (unsigned long long)id);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL),
	    last2 + 1 + 1500);
}
END_TEST

/*
 * Found by fuzz_recover: a directory (or a symbolic link) under a
 * segment's name below a usable checkpoint was not looked at by
 * recovery, which reads only the segments after the checkpoint: the
 * daemon started, and then every reader of the log (walctl dump and
 * tail, subscriptions) failed on it. Recovery now refuses to start on
 * it with the same message a read gives.
 */
START_TEST(test_odd_entry_below_checkpoint_refused)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K,
	    .ring_segments = 3 };
	struct wal_ring_stats st;
	struct wal_recovery info;
	struct wal_error err;
	struct wal_ring *r;

	r = open_ring(NULL);
	append_n(r, 0, 2000);
	wal_ring_stats(r, &st);
	wal_ring_close(r);
	ck_assert_uint_ge(st.active_id, 2);
	/* Segment 0 is below the checkpoint; make it a directory. */
	ck_assert_int_eq(unlink(ts_seg_path(dir, 0)), 0);
	ck_assert_int_eq(mkdir(ts_seg_path(dir, 0), 0755), 0);
	ck_assert_int_ne(wal_ring_open(&cfg, &r, &info, &err), 0);
	ck_assert_msg(strstr(err.msg, "is not a regular file") != NULL, "%s",
	    err.msg);
	ck_assert_int_eq(rmdir(ts_seg_path(dir, 0)), 0);
	ck_assert_int_eq(symlink("/dev/null", ts_seg_path(dir, 0)), 0);
	ck_assert_int_ne(wal_ring_open(&cfg, &r, &info, &err), 0);
	ck_assert_msg(strstr(err.msg, "symbolic link") != NULL, "%s",
	    err.msg);
	/* Out of the way, the log opens where it stopped. */
	ck_assert_int_eq(unlink(ts_seg_path(dir, 0)), 0);
	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 2000);
	wal_ring_close(r);
}
END_TEST

/*
 * Issue #13, defect 24: recovery never writes through a symbolic link
 * planted as a ".discarded-<offset>" name, nor opens one planted as a
 * segment or as the checkpoint.
 */
START_TEST(test_symlinks_never_followed)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K,
	    .ring_segments = 3 };
	struct wal_recovery info;
	struct wal_ring *r;
	struct wal_error err;
	struct stat sb;
	char target[PATH_MAX], name[PATH_MAX];
	uint8_t *img, *got, b;
	uint64_t off;
	size_t len, tlen;
	int64_t n;

	snprintf(target, sizeof target, "%s.target", dir);
	ck_assert_int_eq(ts_write_file(target, "root's file", 11), 0);

	/* 1. Bytes recovery saves, under a planted link's name. */
	r = open_ring(NULL);
	append_n(r, 0, 40);
	wal_ring_close(r);
	off = WAL_FILE_HEADER_SIZE;
	for (n = 0; n < 20; n++)
		off += wal_record_span(ts_size_of(n));
	img = ts_read_file(ts_seg_path(dir, 0), &len);
	b = img[off + 24] ^ 0x04;
	free(img);
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 0), &b, 1,
	    (off_t)off + 24), 0);
	snprintf(name, sizeof name, "%s.discarded-%llu", ts_seg_path(dir, 0),
	    (unsigned long long)off);
	ck_assert_int_eq(symlink(target, name), 0);
	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 20);
	wal_ring_close(r);
	got = ts_read_file(target, &tlen);
	ck_assert(got != NULL && tlen == 11 && memcmp(got, "root's file",
	    11) == 0);
	free(got);
	ck_assert_int_eq(lstat(name, &sb), 0);
	ck_assert(S_ISLNK(sb.st_mode));
	strcat(name, ".1");
	ck_assert_int_eq(stat(name, &sb), 0);
	ck_assert(S_ISREG(sb.st_mode) && sb.st_size > 0);

	/* 2. A link planted as a segment: refused, never followed. */
	img = ts_read_file(ts_seg_path(dir, 0), &len);
	memset(img + len - 100, 0x77, 100);	/* "torn" bytes to zero */
	ck_assert_int_eq(ts_write_file(target, img, len), 0);
	free(img);
	ck_assert_int_eq(symlink(target, ts_seg_path(dir, 9)), 0);
	ck_assert_int_eq(wal_ring_open(&cfg, &r, &info, &err), -ELOOP);
	ck_assert_ptr_nonnull(strstr(err.msg, "symbolic link"));
	ck_assert_ptr_nonnull(strstr(err.msg, "wal_mmap_0000000009.wal"));
	got = ts_read_file(target, &tlen);
	ck_assert(got != NULL && tlen == len && got[len - 1] == 0x77);
	free(got);
	ck_assert_int_eq(unlink(ts_seg_path(dir, 9)), 0);

	/* 3. A link planted as the checkpoint: not read, replaced. */
	ck_assert_int_eq(unlink(file_in(dir, WAL_CHECKPOINT_NAME)), 0);
	ck_assert_int_eq(symlink(target, file_in(dir, WAL_CHECKPOINT_NAME)),
	    0);
	r = open_ring(&info);
	ck_assert_int_eq(info.checkpoint, WAL_CKPT_BAD);
	ck_assert_ptr_nonnull(strstr(info.checkpoint_why, "symbolic link"));
	ck_assert_int_eq(info.next_seq, 20);
	wal_ring_close(r);
	ck_assert_int_eq(lstat(file_in(dir, WAL_CHECKPOINT_NAME), &sb), 0);
	ck_assert(S_ISREG(sb.st_mode));
	got = ts_read_file(target, &tlen);
	ck_assert(got != NULL && tlen == len && got[len - 1] == 0x77);
	free(got);
	unlink(target);
}
END_TEST

/*
 * A file whose name has more leading zeros than a segment's (found by
 * fuzz_recover: "wal_mmap_00000000001.wal" beside segment 1) is no
 * segment: it once parsed as the same id, so recovery and readers listed
 * segment 0 twice; recovery saw its records "again" after the last one,
 * called that a break and zeroed the whole log, and readers read it twice.
 */
START_TEST(test_noncanonical_segment_name_ignored)
{
	struct wal_recovery info;
	struct wal_ring *r;
	uint8_t *img;
	size_t len;
	int stop;

	r = open_ring(NULL);
	append_n(r, 0, 30);
	wal_ring_close(r);
	img = ts_read_file(ts_seg_path(dir, 0), &len);
	ck_assert_ptr_nonnull(img);
	ck_assert_int_eq(ts_write_file(file_in(dir,
	    "wal_mmap_00000000000.wal"), img, len), 0);
	free(img);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, &stop), 30);
	ck_assert_int_eq(stop, WAL_REC_END);
	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 30);
	ck_assert_uint_eq(info.discarded, 0);
	ck_assert_uint_eq(info.torn_bytes, 0);
	append_n(r, 30, 5);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, &stop), 35);
	ck_assert_int_eq(stop, WAL_REC_END);
	/* The stray file is left as it was. */
	img = ts_read_file(file_in(dir, "wal_mmap_00000000000.wal"), &len);
	ck_assert_ptr_nonnull(img);
	free(img);
}
END_TEST

/*
 * A missing, corrupt or mismatched checkpoint never stops the log from
 * opening: the directory is read and synced in full, and recovery says so.
 */
START_TEST(test_bad_checkpoint_full_scan)
{
	struct wal_checkpoint ck;
	struct wal_ring_stats st;
	struct wal_recovery info;
	struct wal_ring *r;
	struct wal_error err;
	int fd, sync_failed;

	r = open_ring(NULL);
	append_n(r, 0, 2000);
	wal_ring_close(r);
	ck_assert_int_eq(read_checkpoint(dir, &ck), 1);
	ck_assert_uint_ge(ck.synced_below, 3);

	r = open_ring(&info);
	ck_assert_int_eq(info.checkpoint, WAL_CKPT_USED);
	ck_assert_uint_eq(info.scan_from_id, ck.synced_below);
	ck_assert_uint_eq(info.synced, 1);
	wal_ring_close(r);

	ck_assert_int_eq(ts_write_file(file_in(dir, WAL_CHECKPOINT_NAME),
	    "walmmapd checkpoint 1\nsynced-below 2\n", 37), 0);
	r = open_ring(&info);
	ck_assert_int_eq(info.checkpoint, WAL_CKPT_BAD);
	ck_assert_ptr_nonnull(strstr(info.checkpoint_why, "corrupt"));
	ck_assert_uint_eq(info.scan_from_id, 0);
	ck_assert_uint_eq(info.synced, ck.synced_below + 1);
	ck_assert_int_eq(info.next_seq, 2000);
	wal_ring_close(r);

	/* Valid, but not this directory's: segment 1 ends elsewhere. */
	ck.synced_below = 2;
	ck.last_seq = 5;
	ck_assert_int_ge(fd = open(dir, O_RDONLY | O_DIRECTORY), 0);
	ck_assert_int_eq(wal_checkpoint_write(fd, dir, &ck, &sync_failed,
	    &err), 0);
	close(fd);
	r = open_ring(&info);
	ck_assert_int_eq(info.checkpoint, WAL_CKPT_BAD);
	ck_assert_ptr_nonnull(strstr(info.checkpoint_why, "ends at seq"));
	ck_assert_uint_eq(info.scan_from_id, 0);
	ck_assert_int_eq(info.next_seq, 2000);
	wal_ring_close(r);

	ck_assert_int_eq(unlink(file_in(dir, WAL_CHECKPOINT_NAME)), 0);
	r = open_ring(&info);
	ck_assert_int_eq(info.checkpoint, WAL_CKPT_NONE);
	ck_assert_uint_eq(info.scan_from_id, 0);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 2000);

	/*
	 * One that says later records and ids existed (their segments are
	 * gone): their seqs and ids are never handed out again.
	 */
	ck.synced_below = 2;
	ck.last_seq = 4999;
	ck.next_id = 100;
	ck_assert_int_ge(fd = open(dir, O_RDONLY | O_DIRECTORY), 0);
	ck_assert_int_eq(wal_checkpoint_write(fd, dir, &ck, &sync_failed,
	    &err), 0);
	close(fd);
	r = open_ring(&info);
	ck_assert_int_eq(info.checkpoint, WAL_CKPT_BAD);
	ck_assert_int_eq(info.next_seq, 5000);
	append_n(r, 5000, 3);
	wal_ring_stats(r, &st);
	wal_ring_close(r);
	ck_assert_uint_gt(st.active_id, info.tail_id);
	ck_assert_int_eq(ts_verify_log(ts_seg_path(dir, st.active_id), 5000,
	    ts_size_of, NULL), 3);
}
END_TEST

/*
 * Found by fuzz_recover: after a checkpoint that says later records
 * existed (their segments gone), the log goes on after them, past a gap
 * in the seqs, and the checkpoint recovery writes says so. Yet the next
 * start found that checkpoint unusable (the newest segment below it
 * still ends before its last seq), read every segment, took the gap for
 * a break and moved every segment written since aside: a clean restart
 * lost every record of the run before.
 */
START_TEST(test_gap_after_checkpoint_survives_restart)
{
	struct wal_checkpoint ck = { 2, 4999, 100 };
	struct wal_recovery info;
	struct wal_ring_stats st;
	struct wal_error err;
	struct wal_ring *r;
	int fd, sync_failed = 0;

	r = open_ring(NULL);
	append_n(r, 0, 2000);
	wal_ring_close(r);
	ck_assert_int_ge(fd = open(dir, O_RDONLY | O_DIRECTORY), 0);
	ck_assert_int_eq(wal_checkpoint_write(fd, dir, &ck, &sync_failed,
	    &err), 0);
	close(fd);
	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 5000);
	append_n(r, 5000, 3);
	wal_ring_stats(r, &st);
	ck_assert_int_eq(wal_ring_shutdown(r, &err), 0);
	wal_ring_close(r);

	r = open_ring(&info);
	ck_assert_uint_eq(info.discarded, 0);
	ck_assert_int_eq(info.next_seq, 5003);
	append_n(r, 5003, 2);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(ts_seg_path(dir, st.active_id), 5000,
	    ts_size_of, NULL), 5);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 2000);
}
END_TEST

/*
 * Issue #13, defect 19: retention can never take the newest records, and
 * a restart never begins again at seq 0, even with the active segment
 * empty and every segment retention may remove gone, or every one gone.
 */
START_TEST(test_restart_never_goes_back)
{
	struct wal_recovery info;
	struct wal_ring_stats st;
	struct wal_ring *r;
	struct wal_error err;
	int64_t durable;
	uint64_t id;

	r = open_ring(NULL);
	append_n(r, 0, 2000);
	ck_assert_int_eq(wal_ring_rotate(r, &err), 0);	/* active: empty */
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), 0);
	wait_stats(r, checkpoint_caught_up, "the checkpoint");
	wal_ring_stats(r, &st);
	ck_assert_uint_lt(st.retain_below, st.active_id);
	wal_ring_close(r);
	for (id = 0; id < st.retain_below; id++)
		ck_assert_int_eq(unlink(ts_seg_path(dir, id)), 0);
	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 2000);
	wal_ring_close(r);

	for (id = 0; id < 64; id++)
		(void)unlink(ts_seg_path(dir, id));
	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 2000);
	append_n(r, 2000, 5);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 2000, ts_size_of, NULL), 5);
}
END_TEST

/* Last seq of a walctl status output ("next seq N"), -1 if not found. */
static long long
status_next_seq(struct ts_daemon *d)
{
	char *out = NULL, *p;
	long long v = -1;
	int rc;

	rc = ts_run_prog("client/walctl", NULL, 0, &out, "-s", d->sock,
	    "status", NULL);
	ck_assert_msg(rc == 0, "walctl status: %s", out ? out : "");
	if ((p = strstr(out, "next seq")) != NULL)
		v = strtoll(p + strlen("next seq"), NULL, 10);
	free(out);
	return (v);
}

/*
 * Issue #13, defect 19 with the daemon: the segment size changes, the
 * active segment is rotated away empty and retention keeps one sealed
 * segment. The next start goes on at seq 100, not 0.
 */
START_TEST(test_retention_keeps_newest_records)
{
	static const char lines[] = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
	struct ts_daemon d;
	char *out = NULL;
	int i;

	ts_daemon_init(&d, dir);
	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K", "--ring",
	    "4", "-o", "prefault=no", NULL), 0);
	for (i = 0; i < 10; i++)
		ck_assert_int_eq(ts_run_prog("client/walctl", lines,
		    sizeof lines - 1, NULL, "-s", d.sock, "append", "--ack",
		    "durable", NULL), 0);
	ck_assert_int_eq(status_next_seq(&d), 100);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "128K",
	    "--ring", "4", "-o", "prefault=no", "-o", "retain_segments=1",
	    NULL), 0);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "-s",
	    d.sock, "rotate", NULL), 0);
	free(out);
	/*
	 * Retention runs once a second: give it two passes. Nothing below
	 * depends on when they ran.
	 */
	usleep(2200 * 1000);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "128K",
	    "--ring", "4", "-o", "prefault=no", NULL), 0);
	ck_assert_int_eq(status_next_seq(&d), 100);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(ts_verify_log(d.data, 0, NULL, NULL), 100);
}
END_TEST

/*
 * Retention removes only segments the checkpoint on disk covers: recovery
 * reads from the checkpoint's segment on and needs every segment after it.
 * Here the checkpoint cannot be written (every write to a file fails, the
 * standbys were made before), segments are sealed and synced, retention
 * keeps one, walmmapd is killed: the restart finds every record.
 */
START_TEST(test_retention_waits_for_checkpoint)
{
	struct ts_daemon d;
	struct wf_ctl *dctl;
	char ctlpath[PATH_MAX], *in;
	size_t i, len = 300 * 901;
	int k;

	ts_daemon_init(&d, dir);
	snprintf(ctlpath, sizeof ctlpath, "%s/daemon.faultctl", dir);
	ck_assert_ptr_nonnull(dctl = wf_ctl_open(ctlpath));
	d.fault_ctl = ctlpath;
	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K", "--ring",
	    "16", "-o", "prefault=no", "-o", "retain_segments=1", NULL), 0);
	for (k = 0; k < 10000 && ts_count_files(d.data, "wal_mmap_") < 16; k++)
		usleep(1000);
	ck_assert_int_eq(ts_count_files(d.data, "wal_mmap_"), 16);
	wf_arm(dctl, WF_WRITE, 1, ENOSPC, 1);
	ck_assert_ptr_nonnull(in = malloc(len));
	for (i = 0; i < len; i++)
		in[i] = i % 901 == 900 ? '\n' : 'a' + (char)(i / 901 % 26);
	ck_assert_int_eq(ts_run_prog("client/walctl", in, len, NULL, "-s",
	    d.sock, "append", "--ack", "written", NULL), 0);
	free(in);
	/* Retention runs once a second: give it two passes. */
	usleep(2200 * 1000);
	ts_daemon_kill(&d);
	wf_disarm(dctl, WF_WRITE);
	d.fault_ctl = NULL;
	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K", "-o",
	    "prefault=no", NULL), 0);
	ck_assert_int_eq(status_next_seq(&d), 300);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(count_discarded(d.data), 0);
	ck_assert_int_eq(ts_verify_log(d.data, 0, NULL, NULL), 300);
	wf_ctl_close(dctl);
}
END_TEST

static Suite *
recover_suite(void)
{
	Suite *s = suite_create("recover");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_restart_continues_seq_and_ids);
	tcase_add_test(tc, test_power_loss_states);
	tcase_add_test(tc, test_adopts_empty_standby);
	tcase_add_test(tc, test_torn_last_record);
	tcase_add_test(tc, test_random_bytes_after_last_record);
	tcase_add_test(tc, test_negative_seq_is_a_break);
	tcase_add_test(tc, test_gap_after_checkpoint_survives_restart);
	tcase_add_test(tc, test_odd_entry_below_checkpoint_refused);
	tcase_add_test(tc, test_corruption_saved_before_zeroing);
	tcase_add_test(tc, test_second_writer_refused);
	tcase_add_test(tc, test_missing_directory);
	tcase_add_test(tc, test_foreign_segment_refused);
	tcase_add_test(tc, test_stale_temp_removed);
	tcase_add_test(tc, test_kill9_mid_stream);
	tcase_add_test(tc, test_segment_size_change);
	tcase_add_test(tc, test_reopen_syncs_after_checkpoint);
	tcase_add_test(tc, test_power_loss_after_checkpoint);
	tcase_add_test(tc, test_discard_never_overwrites_nor_reuses);
	tcase_add_test(tc, test_symlinks_never_followed);
	tcase_add_test(tc, test_noncanonical_segment_name_ignored);
	tcase_add_test(tc, test_bad_checkpoint_full_scan);
	tcase_add_test(tc, test_restart_never_goes_back);
	tcase_add_test(tc, test_retention_keeps_newest_records);
	tcase_add_test(tc, test_retention_waits_for_checkpoint);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(recover_suite()));
}
