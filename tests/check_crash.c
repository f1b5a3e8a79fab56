/*
 * walmmapd tests - the crash harness. Producers at every ack level (socket
 * none / written / durable, shared-memory ring written) stream records of
 * random sizes while walmmapd is SIGKILLed at random moments and
 * restarted. After every cycle: seqs are gap-free from 0, no record
 * appears twice, each producer's records keep their order, every record
 * acknowledged as written or durable is at its seq with its payload, and
 * walctl verify is clean.
 *
 * Then the same for idempotent producers that reconnect (libwalmmap's
 * walmmap_producer): they append through the kill and the restart
 * without an error, and every record is in the log exactly once.
 *
 * WALMMAP_CRASH_CYCLES sets the number of cycles (default 25; make
 * check-long runs 500).
 */
#include "config.h"

#include <sys/uio.h>
#include <sys/wait.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_reader.h"
#include "walmmap.h"

#define NPROD		4
#define KEY_CYCLE	100000000ull	/* keys of cycle c: c * KEY_CYCLE + n */
#define MAXREC		3000

static char		*base;
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

static void
start(void)
{
	int rc = ts_daemon_start(&d, "--segment-size", "256K", "-o",
	    "prefault=no", "-o", "shm_size=64K", NULL);

	if (rc != 0) {
		char *log = ts_daemon_log(&d);

		ck_abort_msg("walmmapd did not start (%d): %s", rc, log);
	}
}

/*
 * Producer p streams keys from key0 until the daemon dies, logging
 * "seq key" for each record acknowledged (written or durable) to path.
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
		_exit(0);		/* the daemon died already */
	setvbuf(out, NULL, _IOFBF, 1 << 16);
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

struct acked {
	int64_t		*seq;
	uint64_t	*key;
	size_t		 n;
	size_t		 cap;
};

static void
load_acked(const char *path, unsigned p, struct acked *a)
{
	FILE *f = fopen(path, "r");
	int64_t s;
	uint64_t k;

	a->n = 0;
	if (f == NULL)
		return;
	while (fscanf(f, "%" SCNd64 " %" SCNu64, &s, &k) == 2) {
		if (a->n == a->cap) {
			/* Doubling: the files grow to 10^5 lines and more. */
			a->cap = a->cap == 0 ? 1024 : a->cap * 2;
			a->seq = realloc(a->seq, a->cap * sizeof *a->seq);
			a->key = realloc(a->key, a->cap * sizeof *a->key);
			if (a->seq == NULL || a->key == NULL)
				ck_abort_msg("out of memory");
		}
		a->seq[a->n] = s;
		a->key[a->n++] = k;
	}
	fclose(f);
	(void)p;
}

/* Check the whole log against what producers were told. */
static uint64_t
check_log(struct acked *acked)
{
	uint8_t want[MAXREC];
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	uint64_t last[NPROD], n = 0, k;
	size_t next[NPROD], len;
	int seen[NPROD], rc;
	unsigned p;
	char tmp[64];

	memset(seen, 0, sizeof seen);
	memset(next, 0, sizeof next);
	ck_assert_msg(wal_reader_open(d.data, &r, &err) == 0, "%s", err.msg);
	while ((rc = wal_reader_next(r, &rec, &err)) == 1) {
		TS_CHECK(rec.seq == (int64_t)n, "seq %" PRId64 " where %"
		    PRIu64 " was due", rec.seq, n);
		n++;
		len = rec.size < sizeof tmp - 1 ? rec.size : sizeof tmp - 1;
		memcpy(tmp, rec.payload, len);
		tmp[len] = '\0';
		TS_CHECK(sscanf(tmp, "%u:%" SCNu64 ":", &p, &k) == 2 &&
		    p < NPROD, "seq %" PRId64 ": not a producer's record",
		    rec.seq);
		TS_CHECK(rec.size == payload(want, p, k) &&
		    memcmp(want, rec.payload, rec.size) == 0, "seq %" PRId64
		    ": payload of %u:%" PRIu64 " damaged", rec.seq, p, k);
		/* Order kept, nothing twice. */
		TS_CHECK(!seen[p] || k > last[p], "producer %u (%s): key %"
		    PRIu64 " after %" PRIu64 " at seq %" PRId64, p,
		    prods[p].name, k, last[p], rec.seq);
		seen[p] = 1;
		last[p] = k;
		/* Acknowledged records: at the seq they were told. */
		while (next[p] < acked[p].n && acked[p].seq[next[p]] < rec.seq)
			ck_abort_msg("producer %u (%s): acked seq %" PRId64
			    " (key %" PRIu64 ") missing", p, prods[p].name,
			    acked[p].seq[next[p]], acked[p].key[next[p]]);
		if (next[p] < acked[p].n && acked[p].seq[next[p]] == rec.seq) {
			TS_CHECK(acked[p].key[next[p]] == k, "seq %" PRId64
			    " holds key %" PRIu64 ", acked as %" PRIu64,
			    rec.seq, k, acked[p].key[next[p]]);
			next[p]++;
		}
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(wal_reader_stopped(r)->status == WAL_REC_END,
	    "log damaged: %s", wal_rec_strstatus(wal_reader_stopped(r)->status));
	wal_reader_close(r);
	for (p = 0; p < NPROD; p++)
		ck_assert_msg(next[p] == acked[p].n, "producer %u (%s): %zu of "
		    "%zu acked records found", p, prods[p].name, next[p],
		    acked[p].n);
	return (n);
}

START_TEST(test_crash_cycles)
{
	struct acked acked[NPROD];
	char path[NPROD][PATH_MAX], *out;
	const char *env = getenv("WALMMAP_CRASH_CYCLES");
	int cycles = env != NULL ? atoi(env) : 25, c, status;
	uint64_t records = 0, total_acked = 0;
	pid_t pids[NPROD];
	unsigned p;

	memset(acked, 0, sizeof acked);
	for (p = 0; p < NPROD; p++)
		snprintf(path[p], sizeof path[p], "%s/acked-%u", base, p);
	srandom(7);
	for (c = 0; c < cycles; c++) {
		start();
		for (p = 0; p < NPROD; p++)
			pids[p] = spawn(p, (uint64_t)c * KEY_CYCLE, path[p]);
		usleep((useconds_t)(10000 + random() % 120000));
		ts_daemon_kill(&d);
		for (p = 0; p < NPROD; p++) {
			ck_assert_int_eq(waitpid(pids[p], &status, 0),
			    pids[p]);
			ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status)
			    == 0, "producer %u status %#x", p, status);
		}
		/* Recovery, then everything checked. */
		start();
		ck_assert_int_eq(ts_daemon_stop(&d), 0);
		total_acked = 0;
		for (p = 0; p < NPROD; p++) {
			load_acked(path[p], p, &acked[p]);
			total_acked += acked[p].n;
		}
		records = check_log(acked);
		ck_assert_msg(ts_run_prog("client/walctl", NULL, 0, &out,
		    "verify", "-q", d.data, NULL) == 0, "walctl verify: %s",
		    out);
		free(out);
	}
	fprintf(stderr, "crash harness: %d kill -9 cycles, %" PRIu64 " records "
	    "in the log, %" PRIu64 " of them acknowledged, all checked after "
	    "every cycle\n", cycles, records, total_acked);
	ck_assert_uint_gt(total_acked, 0);
	for (p = 0; p < NPROD; p++) {
		free(acked[p].seq);
		free(acked[p].key);
	}
}
END_TEST

/*
 * Reconnecting producers (libwalmmap's idempotent producers): index 10 +
 * r of rprods, keys from key0 on, each append one record or a batch.
 */
#define NRPROD		6
#define RPROD0		10

static const struct {
	enum walmmap_ack	 ack;
	unsigned		 batch;
	int			 shm;	/* walmmap_producer_set_shm */
	const char		*name;
} rprods[NRPROD] = {
	{ WALMMAP_ACK_WRITTEN, 1, 0, "producer, written" },
	{ WALMMAP_ACK_DURABLE, 1, 0, "producer, durable" },
	{ WALMMAP_ACK_WRITTEN, 7, 0, "producer, written, batches" },
	{ WALMMAP_ACK_WRITTEN, 1, 1, "ring producer, written" },
	{ WALMMAP_ACK_DURABLE, 1, 1, "ring producer, durable" },
	{ WALMMAP_ACK_WRITTEN, 7, 1, "ring producer, written, batches" },
};

static volatile sig_atomic_t rstop;

static void
rstop_handler(int sig)
{
	(void)sig;
	rstop = 1;
}

/*
 * Reconnecting producer r: resumes the id in idpath (0: new), appends
 * keys from key0 until SIGUSR1, finishing the append in progress, and
 * logs "seq key" for each record acknowledged. Exits 0, or 1 with the
 * error when an append failed.
 */
static pid_t
rspawn(unsigned r, uint64_t key0, const char *path, const char *idpath)
{
	uint8_t bufs[8][MAXREC];
	struct iovec iov[8];
	struct walmmap_producer *p;
	struct sigaction sa;
	uint64_t id = 0, k = key0;
	int64_t seqs[8];
	unsigned i, n;
	FILE *out, *f;
	pid_t pid;

	if ((pid = fork()) != 0)
		return (pid);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = rstop_handler;
	sigaction(SIGUSR1, &sa, NULL);
	if ((f = fopen(idpath, "r")) != NULL) {
		if (fscanf(f, "%" SCNu64, &id) != 1)
			id = 0;
		fclose(f);
	}
	if ((out = fopen(path, "a")) == NULL)
		_exit(2);
	if (walmmap_producer_open(&p, d.sock, rprods[r].ack, id) != 0) {
		fprintf(stderr, "producer %u: %s\n", r,
		    walmmap_producer_errmsg(p));
		_exit(1);
	}
	walmmap_producer_set_reconnect(p, 1, 60000);
	if (rprods[r].shm && walmmap_producer_set_shm(p, 1) != 0) {
		fprintf(stderr, "producer %u: no ring: %s\n", r,
		    walmmap_producer_errmsg(p));
		_exit(1);
	}
	if ((f = fopen(idpath, "w")) == NULL)
		_exit(2);
	fprintf(f, "%" PRIu64 "\n", walmmap_producer_id(p));
	fclose(f);
	while (!rstop) {
		n = rprods[r].batch == 1 ? 1 : 1 + (unsigned)(k % rprods[r].batch);
		for (i = 0; i < n; i++) {
			iov[i].iov_base = bufs[i];
			iov[i].iov_len = payload(bufs[i], RPROD0 + r, k + i);
		}
		if (walmmap_producer_append_batch(p, iov, n, seqs) != 0) {
			fprintf(stderr, "producer %u (%s): %s\n", r,
			    rprods[r].name, walmmap_producer_errmsg(p));
			fclose(out);
			_exit(1);
		}
		for (i = 0; i < n; i++)
			fprintf(out, "%" PRId64 " %" PRIu64 "\n", seqs[i], k + i);
		k += n;
	}
	fclose(out);
	/* Connected after its last append: a ring producer has its ring. */
	if (rprods[r].shm && !walmmap_producer_shm_active(p)) {
		fprintf(stderr, "producer %u (%s): no ring\n", r,
		    rprods[r].name);
		_exit(1);
	}
	walmmap_producer_close(p);
	_exit(0);
}

/*
 * Every key of every reconnecting producer is in the log exactly once,
 * in order, at the seq it was acknowledged with; nothing else is lost:
 * the keys are key0 .. key0 + acked - 1 (each append returned before the
 * next began, and the last one returned before the producer exited).
 */
static uint64_t
check_exact(struct acked *acked, const uint64_t *key0)
{
	uint8_t want[MAXREC];
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	size_t next[NRPROD], len;
	uint64_t n = 0, k;
	unsigned p;
	char tmp[64];
	int rc;

	memset(next, 0, sizeof next);
	ck_assert_msg(wal_reader_open(d.data, &r, &err) == 0, "%s", err.msg);
	while ((rc = wal_reader_next(r, &rec, &err)) == 1) {
		TS_CHECK(rec.seq == (int64_t)n, "seq %" PRId64 " where %"
		    PRIu64 " was due", rec.seq, n);
		n++;
		len = rec.size < sizeof tmp - 1 ? rec.size : sizeof tmp - 1;
		memcpy(tmp, rec.payload, len);
		tmp[len] = '\0';
		TS_CHECK(sscanf(tmp, "%u:%" SCNu64 ":", &p, &k) == 2 &&
		    p >= RPROD0 && p < RPROD0 + NRPROD, "seq %" PRId64
		    ": not a producer's record", rec.seq);
		TS_CHECK(rec.size == payload(want, p, k) &&
		    memcmp(want, rec.payload, rec.size) == 0, "seq %" PRId64
		    ": payload of %u:%" PRIu64 " damaged", rec.seq, p, k);
		p -= RPROD0;
		ck_assert_msg(k == key0[p] + next[p], "%s: key %" PRIu64 " at "
		    "seq %" PRId64 " where key %" PRIu64 " was due (a record "
		    "twice, lost or out of order)", rprods[p].name, k, rec.seq,
		    key0[p] + next[p]);
		ck_assert_msg(next[p] < acked[p].n, "%s: key %" PRIu64 " at seq "
		    "%" PRId64 " was never acknowledged", rprods[p].name, k,
		    rec.seq);
		ck_assert_msg(acked[p].seq[next[p]] == rec.seq &&
		    acked[p].key[next[p]] == k, "%s: key %" PRIu64 " at seq %"
		    PRId64 ", acknowledged as key %" PRIu64 " at seq %" PRId64,
		    rprods[p].name, k, rec.seq, acked[p].key[next[p]],
		    acked[p].seq[next[p]]);
		next[p]++;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(wal_reader_stopped(r)->status == WAL_REC_END,
	    "log damaged: %s", wal_rec_strstatus(wal_reader_stopped(r)->status));
	wal_reader_close(r);
	for (p = 0; p < NRPROD; p++)
		ck_assert_msg(next[p] == acked[p].n, "%s: %zu of %zu "
		    "acknowledged records in the log", rprods[p].name, next[p],
		    acked[p].n);
	return (n);
}

/*
 * Reconnecting producers through kill -9 and restart: they see no error,
 * and every record is in the log exactly once, those in flight at the
 * kill included.
 */
START_TEST(test_reconnect_cycles)
{
	struct acked acked[NRPROD];
	char path[NRPROD][PATH_MAX], idpath[NRPROD][PATH_MAX], *out;
	const char *env = getenv("WALMMAP_CRASH_CYCLES");
	int cycles = env != NULL ? atoi(env) : 25, c, status;
	uint64_t records = 0, key0[NRPROD], total;
	pid_t pids[NRPROD];
	unsigned p;

	memset(acked, 0, sizeof acked);
	for (p = 0; p < NRPROD; p++) {
		snprintf(path[p], sizeof path[p], "%s/racked-%u", base, p);
		snprintf(idpath[p], sizeof idpath[p], "%s/rid-%u", base, p);
		key0[p] = 0;
	}
	srandom(11);
	for (c = 0; c < cycles; c++) {
		start();
		for (p = 0; p < NRPROD; p++) {
			load_acked(path[p], p, &acked[p]);
			pids[p] = rspawn(p, key0[p] + acked[p].n, path[p],
			    idpath[p]);
		}
		/*
		 * A new producer (no id yet) must meet a daemon: only a
		 * producer resumed by id waits for one that is not there.
		 */
		for (p = 0; p < NRPROD; p++)
			ck_assert_msg(ts_wait_file(idpath[p], 30000),
			    "%s never connected", rprods[p].name);
		usleep((useconds_t)(10000 + random() % 120000));
		ts_daemon_kill(&d);
		usleep((useconds_t)(random() % 50000));
		start();
		usleep((useconds_t)(20000 + random() % 80000));
		for (p = 0; p < NRPROD; p++)
			kill(pids[p], SIGUSR1);
		for (p = 0; p < NRPROD; p++) {
			ck_assert_int_eq(waitpid(pids[p], &status, 0),
			    pids[p]);
			ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status)
			    == 0, "%s: status %#x", rprods[p].name, status);
		}
		ck_assert_int_eq(ts_daemon_stop(&d), 0);
		for (p = 0; p < NRPROD; p++)
			load_acked(path[p], p, &acked[p]);
		records = check_exact(acked, key0);
		ck_assert_msg(ts_run_prog("client/walctl", NULL, 0, &out,
		    "verify", "-q", d.data, NULL) == 0, "walctl verify: %s",
		    out);
		free(out);
	}
	for (total = 0, p = 0; p < NRPROD; p++) {
		total += acked[p].n;
		free(acked[p].seq);
		free(acked[p].key);
	}
	fprintf(stderr, "reconnect harness: %d kill -9 cycles, %" PRIu64
	    " records in the log, all %" PRIu64 " appended by reconnecting "
	    "producers, each exactly once\n", cycles, records, total);
	ck_assert_uint_gt(total, 0);
}
END_TEST

static void
setup(void)
{
	base = ts_mkdtemp("crash");
	ts_daemon_init(&d, base);
}

static void
teardown(void)
{
	ts_daemon_kill(&d);
	if (d.notify_fd != -1)
		close(d.notify_fd);
	ts_rmtree(base);
}

static Suite *
crash_suite(void)
{
	Suite *s = suite_create("crash");
	TCase *tc = tcase_create("kill -9");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 3600);
	tcase_add_test(tc, test_crash_cycles);
	tcase_add_test(tc, test_reconnect_cycles);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(crash_suite()));
}
