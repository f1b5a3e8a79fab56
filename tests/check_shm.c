/*
 * walmmapd tests - shared-memory rings against a real walmmapd: producers
 * through libwalmmap, and hostile producers that map the ring themselves.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_proto.h"
#include "wal_reader.h"
#include "wal_shm.h"
#include "walmmap.h"

#define RING_SIZE	"256K"		/* ring max record: 64K - 16 */

static char		*base;
static struct ts_daemon	 d;

static void
setup(void)
{
	base = ts_mkdtemp("shm");
	ts_daemon_init(&d, base);
	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "16M", "-o",
	    "prefault=no", "-o", "shm_size=" RING_SIZE, NULL), 0);
}

static void
teardown(void)
{
	ts_daemon_kill(&d);
	if (d.notify_fd != -1)
		close(d.notify_fd);
	ts_rmtree(base);
}

static struct walmmap *
connect_shm(void)
{
	struct walmmap *w;
	const char *why;
	int rc = walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, WALMMAP_SHM);

	ck_assert_msg(rc == 0, "connect: %s", walmmap_errmsg(w));
	ck_assert_msg(walmmap_shm_active(w, &why), "no ring: %s", why);
	return (w);
}

/*
 * Read the whole log: seqs contiguous from 0, every record a key payload,
 * each producer's keys 0, 1, 2, ... in order. counts[p] gets producer p's
 * records (producers 0..np-1; others are counted in *other).
 */
static long
check_log(unsigned np, int exact, uint64_t *counts, uint64_t *other)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	uint64_t key;
	unsigned p;
	long n = 0;
	int rc;

	memset(counts, 0, np * sizeof *counts);
	*other = 0;
	ck_assert_msg(wal_reader_open(d.data, &r, &err) == 0, "%s", err.msg);
	while ((rc = wal_reader_next(r, &rec, &err)) == 1) {
		TS_CHECK(rec.seq == n, "seq %" PRId64 " where %ld was due",
		    rec.seq, n);
		n++;
		if (!ts_key_parse(rec.payload, rec.size, exact, &p, &key) ||
		    p >= np) {
			(*other)++;
			continue;
		}
		TS_CHECK(key == counts[p], "producer %u: record %" PRIu64
		    " at seq %" PRId64 ", expected %" PRIu64, p, key, rec.seq,
		    counts[p]);
		counts[p]++;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(wal_reader_stopped(r)->status == WAL_REC_END,
	    "log damaged: %s", wal_rec_strstatus(wal_reader_stopped(r)->status));
	wal_reader_close(r);
	return (n);
}

/* Producer p appends keys 0..n-1 through a ring; exits 0 when all acked. */
static pid_t
spawn_producer(unsigned p, uint64_t n)
{
	uint8_t buf[TS_KEY_PAYLOAD_MAX];
	struct walmmap_progress pr;
	struct walmmap *w;
	uint64_t k;
	pid_t pid;

	if ((pid = fork()) != 0)
		return (pid);
	if (walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, WALMMAP_SHM) != 0
	    || !walmmap_shm_active(w, NULL))
		_exit(10);
	for (k = 0; k < n; k++)
		if (walmmap_append(w, buf, ts_key_payload(buf, p, k),
		    WALMMAP_ACK_DEFAULT, NULL) != 0)
			_exit(11);
	if (walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1) != 0)
		_exit(12);
	walmmap_progress(w, &pr);
	walmmap_close(w);
	_exit(pr.acked == n && pr.pending == 0 ? 0 : 13);
}

static void
reap_ok(pid_t pid, const char *what)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "%s: status %#x", what, status);
}

/* The daemon has dropped every connection but ours (clients == 1). */
static void
wait_clients(struct walmmap *w, uint64_t want)
{
	struct walmmap_status st;
	int i;

	for (i = 0; i < 3000; i++) {
		ck_assert_int_eq(walmmap_status(w, &st), 0);
		if (st.clients == want)
			return;
		usleep(10000);
	}
	ck_abort_msg("daemon still has %" PRIu64 " clients", st.clients);
}

/* Seqs through the ring: single, batch, oversized (socket), durable. */
START_TEST(test_shm_seqs_and_order)
{
	uint8_t buf[TS_KEY_PAYLOAD_MAX], *big;
	struct walmmap_status st;
	struct iovec iov[3];
	int64_t seq, seqs[3];
	uint64_t counts[1], other, k;
	struct walmmap *w = connect_shm();

	for (k = 0; k < 1000; k++) {
		ck_assert_int_eq(walmmap_append(w, buf, ts_key_payload(buf, 0,
		    k), WALMMAP_ACK_DEFAULT, &seq), 0);
		ck_assert_int_eq(seq, (int64_t)k);
	}
	/* A record above the ring's limit travels over the socket, in order. */
	big = malloc(200000);
	memset(big, 'B', 200000);
	iov[0].iov_base = buf;
	iov[0].iov_len = ts_key_payload(buf, 0, 1000);
	iov[1].iov_base = big;
	iov[1].iov_len = 200000;
	iov[2].iov_base = buf + 100;
	iov[2].iov_len = ts_key_payload(buf + 100, 0, 1001);
	ck_assert_int_eq(walmmap_append_batch(w, iov, 3, WALMMAP_ACK_DEFAULT,
	    seqs), 3);
	ck_assert_int_eq(seqs[0], 1000);
	ck_assert_int_eq(seqs[1], 1001);
	ck_assert_int_eq(seqs[2], 1002);
	/* Durable through the ring. */
	ck_assert_int_eq(walmmap_append(w, buf, ts_key_payload(buf, 0, 1002),
	    WALMMAP_ACK_DURABLE, &seq), 0);
	ck_assert_int_eq(seq, 1003);
	ck_assert_int_eq(walmmap_status(w, &st), 0);
	ck_assert_int_ge(st.durable_seq, 1003);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(check_log(1, 1, counts, &other), 1004);
	ck_assert_int_eq(counts[0], 1003);
	ck_assert_int_eq(other, 1);		/* the big one */
	free(big);
}
END_TEST

/* A daemon with shm = no: the connection falls back, saying why. */
START_TEST(test_shm_fallback)
{
	struct walmmap *w;
	const char *why;
	int64_t seq;

	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "shm=no", NULL), 0);
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN,
	    WALMMAP_SHM), 0);
	ck_assert_int_eq(walmmap_shm_active(w, &why), 0);
	ck_assert_msg(strstr(why, "shm = no") != NULL, "%s", why);
	ck_assert_int_eq(walmmap_append(w, "x", 1, WALMMAP_ACK_DEFAULT, &seq),
	    0);
	ck_assert_int_eq(seq, 0);
	walmmap_close(w);
	/* And WALMMAP_SHM with WALMMAP_NONBLOCK is refused up front. */
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN,
	    WALMMAP_SHM | WALMMAP_NONBLOCK), -WALMMAP_EINVAL);
	walmmap_close(w);
}
END_TEST

/* 4 producers x 250,000 records: each once, in order, seqs contiguous. */
START_TEST(test_shm_four_producers)
{
	enum { NP = 4, EACH = 250000 };
	uint64_t counts[NP], other;
	pid_t pids[NP];
	unsigned p;

	for (p = 0; p < NP; p++)
		pids[p] = spawn_producer(p, EACH);
	for (p = 0; p < NP; p++)
		reap_ok(pids[p], "producer");
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(check_log(NP, 1, counts, &other), NP * EACH);
	for (p = 0; p < NP; p++)
		ck_assert_int_eq(counts[p], EACH);
	ck_assert_int_eq(other, 0);
}
END_TEST

/*
 * A full ring blocks the producer (the daemon is stopped); once the
 * daemon runs again the producer continues and nothing is lost.
 */
START_TEST(test_shm_ring_full_blocks)
{
	enum { N = 1000, LEN = 1000 };	/* 1 MB through a 256 KiB ring */
	int go[2], prog[2], status;
	uint64_t counts[1], other;
	unsigned got = 0;
	char c;
	pid_t pid;

	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(prog), 0);
	if ((pid = fork()) == 0) {
		uint8_t buf[LEN];
		struct walmmap *w;
		uint64_t k;

		close(go[1]);
		close(prog[0]);
		if (walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN,
		    WALMMAP_SHM) != 0 || !walmmap_shm_active(w, NULL))
			_exit(10);
		if (write(prog[1], "c", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(11);
		for (k = 0; k < N; k++) {
			size_t len = ts_key_payload(buf, 0, k);

			memset(buf + len, '.', LEN - len);
			if (walmmap_append(w, buf, LEN, WALMMAP_ACK_DEFAULT,
			    NULL) != 0 || write(prog[1], "a", 1) != 1)
				_exit(12);
		}
		_exit(walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1) == 0 ? 0 : 13);
	}
	close(go[0]);
	close(prog[1]);
	ck_assert_int_eq(read(prog[0], &c, 1), 1);	/* connected */
	ts_daemon_signal(&d, SIGSTOP);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	/* While the daemon is stopped at most a ring's worth gets in. */
	while (got < 20 && read(prog[0], &c, 1) == 1)
		got++;
	usleep(300000);
	ck_assert_int_eq(waitpid(pid, &status, WNOHANG), 0);	/* blocked */
	{
		struct pollfd pfd = { prog[0], POLLIN, 0 };

		while (poll(&pfd, 1, 0) == 1 && read(prog[0], &c, 1) == 1)
			got++;
	}
	ck_assert_uint_lt(got, N);
	ts_daemon_signal(&d, SIGCONT);
	while (read(prog[0], &c, 1) == 1)
		got++;
	ck_assert_int_eq(got, N);
	reap_ok(pid, "blocked producer");
	close(prog[0]);
	close(go[1]);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(check_log(1, 0, counts, &other), N);
	ck_assert_int_eq(counts[0], N);
}
END_TEST

/*
 * A producer SIGKILLed with a record half-written: the records it
 * published are in the log, the half one is not, and the daemon goes on.
 */
START_TEST(test_shm_killed_mid_record)
{
	uint8_t buf[TS_KEY_PAYLOAD_MAX];
	uint64_t counts[2], other;
	struct walmmap *w;
	int ready[2], status;
	char c;
	pid_t pid;

	ck_assert_int_eq(pipe(ready), 0);
	if ((pid = fork()) == 0) {
		struct ts_ring r;
		size_t len;

		ts_ring_open(&d, &r, 0);
		len = ts_key_payload(buf, 1, 0);
		ts_ring_put(&r, buf, (uint32_t)len, (uint32_t)len, 0);
		len = ts_key_payload(buf, 1, 1);
		ts_ring_put(&r, buf, (uint32_t)len, (uint32_t)len, 0);
		ts_ring_publish(&r, r.tail);
		/* Half of the third, never published. */
		len = ts_key_payload(buf, 1, 2);
		ts_ring_put(&r, buf, (uint32_t)len, (uint32_t)len / 2, 0);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	w = connect_shm();
	/* The killed producer's published records arrive before our own. */
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	wait_clients(w, 1);
	ck_assert_int_eq(walmmap_append(w, buf, ts_key_payload(buf, 0, 0),
	    WALMMAP_ACK_DEFAULT, NULL), 0);
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1), 0);
	walmmap_close(w);
	close(ready[0]);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(check_log(2, 1, counts, &other), 3);
	ck_assert_int_eq(counts[0], 1);
	ck_assert_int_eq(counts[1], 2);
	ck_assert_int_eq(other, 0);
}
END_TEST

/*
 * A producer that never finishes its record (stalled, alive, nothing
 * published) and one that scribbles random bytes over its whole ring:
 * a good producer beside them loses nothing, the scribbler is cut off with
 * an error, and the daemon keeps running.
 */
START_TEST(test_shm_hostile_rings)
{
	enum { GOOD = 50000 };
	uint8_t buf[TS_KEY_PAYLOAD_MAX];
	struct walmmap_status st;
	uint64_t counts[1], other;
	struct ts_ring stalled;
	struct walmmap *w;
	pid_t good, bad;
	int status;

	ts_ring_open(&d, &stalled, 0);
	ts_ring_put(&stalled, buf, 100, 10, 0);	/* never published */

	if ((bad = fork()) == 0) {
		struct wal_msg_error e;
		struct pollfd pfd;
		struct ts_ring r;
		uint64_t i, x = 0x9e3779b97f4a7c15ull, one = 1;
		uint8_t rx[1024];
		ssize_t n;

		ts_ring_open(&d, &r, 0);
		for (i = 0; i < 100000000; i++) {
			uint64_t *p = (uint64_t *)(void *)r.hdr;
			size_t j;

			/* Random bytes over header and data... */
			for (j = 0; j < 64; j++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				p[x % (r.maplen / 8)] = x;
			}
			/* ...and now and then a plausible tail and length. */
			if (i % 3 == 0) {
				uint32_t *len = (uint32_t *)(void *)(r.data +
				    ((x >> 8) & (r.size - 1) & ~15ull));

				*len = (uint32_t)(x >> 40);
				atomic_store(&r.hdr->tail, (x >> 20) & 0xfff0);
			}
			/* A full doorbell is no error (nor a closed one). */
			if (send(r.efd_in, &one, sizeof one, MSG_DONTWAIT |
			    MSG_NOSIGNAL) == -1 && errno == ENOTSOCK)
				(void)write(r.efd_in, &one, sizeof one);
			pfd.fd = r.sock;
			pfd.events = POLLIN;
			if (poll(&pfd, 1, 0) == 1)
				break;
		}
		n = recv(r.sock, rx, sizeof rx, 0);
		if (n < (ssize_t)sizeof e)
			_exit(3);
		memcpy(&e, rx, sizeof e);
		_exit(e.hdr.type == WAL_MSG_ERROR && e.code == WAL_PERR_PROTO &&
		    e.fatal ? 0 : 4);
	}
	good = spawn_producer(0, GOOD);
	reap_ok(good, "good producer");
	reap_ok(bad, "scribbler");
	ck_assert(ts_daemon_log_wait(&d, "shared-memory ring corrupt"));
	/* Still serving, the stalled ring still attached. */
	w = connect_shm();
	wait_clients(w, 2);
	ck_assert_int_eq(walmmap_status(w, &st), 0);
	ck_assert_uint_ge(st.records, GOOD);
	walmmap_close(w);
	ts_ring_close(&stalled);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_ge(check_log(1, 1, counts, &other), GOOD);
	ck_assert_int_eq(counts[0], GOOD);
	(void)status;
}
END_TEST

/* walctl status answers within 2 s (a hang detector, not a timing). */
static void
status_answers(void)
{
	char *out;
	int rc = ts_run_prog_within(2, "client/walctl", NULL, 0, &out, "-s",
	    d.sock, "status", NULL);

	if (rc != 0)
		ts_daemon_dump(&d);
	ck_assert_msg(rc == 0, "walctl status: %d: %s", rc, out);
	free(out);
}

/* Reap pid within 30 s (0 and its status), or kill it (-1). */
static int
reap_within(pid_t pid, int *status)
{
	int i;

	for (i = 0; i < 3000; i++) {
		if (waitpid(pid, status, WNOHANG) == pid)
			return (0);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, status, 0);
	return (-1);
}

/*
 * shm_spin at its maximum (100 ms): a durable append through a ring is
 * answered, status is answered while a producer publishes without pause,
 * and SIGTERM stops the daemon. (The drainer used to re-queue itself with
 * event_active() and reset its idle clock every slice: it never let the
 * loop poll, so the sync's answer, status and SIGTERM never came.)
 */
START_TEST(test_shm_spin_yields)
{
	uint8_t buf[TS_KEY_PAYLOAD_MAX];
	int status, i;
	pid_t pid, busy;

	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no", "-o",
	    "shm_size=" RING_SIZE, "-o", "shm_spin=100ms", NULL), 0);
	if ((pid = fork()) == 0) {
		struct walmmap *w;
		int64_t seq;

		if (walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN,
		    WALMMAP_SHM) != 0 || !walmmap_shm_active(w, NULL))
			_exit(10);
		if (walmmap_append(w, buf, ts_key_payload(buf, 0, 0),
		    WALMMAP_ACK_DURABLE, &seq) != 0 || seq != 0)
			_exit(11);
		walmmap_close(w);
		_exit(0);
	}
	ck_assert_msg(reap_within(pid, &status) == 0, "the durable append "
	    "through the ring was not answered in 30 s");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "durable producer: status %#x", status);
	status_answers();

	/* A producer that never pauses. */
	if ((busy = fork()) == 0) {
		struct walmmap *w;
		uint64_t k;

		if (walmmap_connect(&w, d.sock, WALMMAP_ACK_NONE,
		    WALMMAP_SHM) != 0 || !walmmap_shm_active(w, NULL))
			_exit(10);
		for (k = 1;; k++)
			if (walmmap_append(w, buf, ts_key_payload(buf, 0, k),
			    WALMMAP_ACK_DEFAULT, NULL) != 0)
				_exit(0);
	}
	for (i = 0; i < 5; i++) {
		usleep(100000);
		status_answers();
	}
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	if (reap_within(busy, &status) != 0)
		ck_abort_msg("the busy producer did not stop with the daemon");
}
END_TEST

/* A client asking for a ring larger than shm_size gets shm_size. */
START_TEST(test_shm_size_capped)
{
	struct ts_ring r;

	ts_ring_open(&d, &r, WAL_SHM_MAX_SIZE);
	ck_assert_uint_eq(r.size, 256 * 1024);
	ts_ring_close(&r);
	ts_ring_open(&d, &r, 64 * 1024);	/* less is fine */
	ck_assert_uint_eq(r.size, 64 * 1024);
	ts_ring_close(&r);
	status_answers();
}
END_TEST

/*
 * shm_total bounds the memory of all rings: a connection beyond it stays
 * on the socket with a clear reason, and gets a ring once one is freed.
 */
START_TEST(test_shm_total)
{
	struct walmmap *w[4], *x;
	const char *why;
	int64_t seq;
	int i;

	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	/*
	 * Three rings of 64K + the 4K header fit in 256K, a fourth not (all
	 * of one uid here: shm_total_per_uid lets it have them all).
	 */
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no", "-o",
	    "shm_size=64K", "-o", "shm_total=256K", "-o",
	    "shm_total_per_uid=256K", NULL), 0);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(walmmap_connect(&w[i], d.sock,
		    WALMMAP_ACK_WRITTEN, WALMMAP_SHM), 0);
	for (i = 0; i < 3; i++)
		ck_assert(walmmap_shm_active(w[i], NULL));
	ck_assert(!walmmap_shm_active(w[3], &why));
	ck_assert_msg(strstr(why, "shm_total") != NULL, "%s", why);
	/* It still appends, over the socket. */
	ck_assert_int_eq(walmmap_append(w[3], "s", 1, WALMMAP_ACK_DEFAULT,
	    &seq), 0);
	walmmap_close(w[0]);
	wait_clients(w[3], 3);
	ck_assert_int_eq(walmmap_connect(&x, d.sock, WALMMAP_ACK_WRITTEN,
	    WALMMAP_SHM), 0);
	ck_assert_msg(walmmap_shm_active(x, &why), "%s", why);
	walmmap_close(x);
	for (i = 1; i < 4; i++)
		walmmap_close(w[i]);
	/* A configuration that cannot give even one ring is refused. */
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "shm_size=256K", "-o",
	    "shm_total=128K", NULL), 1);
	ck_assert(ts_daemon_log_wait(&d, "shm_total"));
}
END_TEST

/*
 * Fill a raw ring with short key records (32-byte slots) up to its end or
 * its free space, from key *k on; returns how many.
 */
static uint64_t
fill_ring(struct ts_ring *r, uint64_t *k)
{
	char key[32];
	uint64_t n = 0;
	uint32_t len;

	for (;; (*k)++, n++) {
		len = (uint32_t)snprintf(key, sizeof key, "0:%" PRIu64 ":", *k);
		if ((r->tail & (r->size - 1)) + wal_shm_slot_bytes(len) >
		    r->size || r->tail + wal_shm_slot_bytes(len) -
		    atomic_load(&r->hdr->head) > r->size)
			break;
		ts_ring_put(r, key, len, len, 0);
	}
	return (n);
}

/*
 * Ring records published before a socket frame are written before it is
 * answered, however many there are (the catch-up goes in steps of 4096
 * records, the loop serving others in between), and those of a
 * connection that closes are all written (in steps too).
 */
START_TEST(test_shm_catch_up_in_steps)
{
	struct walmmap_status st;
	struct walmmap *w;
	struct wal_msg ping, hdr;
	struct ts_ring r;
	struct wal_reader *rd;
	struct wal_record rec;
	struct wal_error err;
	uint64_t k = 0, n;
	char key[32];
	size_t len;
	int i, rc;

	ts_ring_open(&d, &r, 0);
	/* A full ring, published without ringing: the drainer sleeps on. */
	n = fill_ring(&r, &k);
	ck_assert_uint_gt(n, 4096);
	atomic_store(&r.hdr->tail, r.tail);
	memset(&ping, 0, sizeof ping);
	ping.type = WAL_MSG_PING;
	ping.len = sizeof ping;
	ping.id = 9;
	ck_assert_int_eq(send(r.sock, &ping, sizeof ping, 0), sizeof ping);
	ck_assert_int_eq(recv(r.sock, &hdr, sizeof hdr, 0), sizeof hdr);
	ck_assert_int_eq(hdr.type, WAL_MSG_OK);
	ck_assert_uint_eq(atomic_load(&r.hdr->written), n);

	/* Another full ring, and the connection closes. */
	n += fill_ring(&r, &k);
	ck_assert_uint_gt(n, 2 * 4096);
	atomic_store(&r.hdr->tail, r.tail);
	ts_ring_close(&r);
	w = connect_shm();
	for (i = 0; i < 3000; i++) {
		ck_assert_int_eq(walmmap_status(w, &st), 0);
		if (st.records == n && st.clients == 1)
			break;
		usleep(10000);
	}
	ck_assert_uint_eq(st.records, n);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	/* Every record once, in order. */
	ck_assert_msg(wal_reader_open(d.data, &rd, &err) == 0, "%s", err.msg);
	for (k = 0; (rc = wal_reader_next(rd, &rec, &err)) == 1; k++) {
		len = (size_t)snprintf(key, sizeof key, "0:%" PRIu64 ":", k);
		TS_CHECK(rec.seq == (int64_t)k && rec.size == len &&
		    memcmp(rec.payload, key, len) == 0, "seq %" PRId64 ": "
		    "not key %" PRIu64, rec.seq, k);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(k, n);
	wal_reader_close(rd);
}
END_TEST

/*
 * A producer that clears O_NONBLOCK on its doorbell and rings: the daemon
 * reads its own end only, never blocking. (With the eventfd shared with
 * the client, its read blocked the daemon for good.)
 */
START_TEST(test_shm_bell_blocking)
{
	uint8_t buf[TS_KEY_PAYLOAD_MAX];
	struct ts_ring r;
	size_t len;
	int i;

	ts_ring_open(&d, &r, 0);
	ck_assert_int_eq(fcntl(r.efd_in, F_SETFL, fcntl(r.efd_in, F_GETFL) &
	    ~O_NONBLOCK), 0);
	ck_assert_int_eq(fcntl(r.efd_out, F_SETFL, fcntl(r.efd_out, F_GETFL) &
	    ~O_NONBLOCK), 0);
	for (i = 0; i < 3; i++) {
		len = ts_key_payload(buf, 1, (uint64_t)i);
		ts_ring_put(&r, buf, (uint32_t)len, (uint32_t)len, 0);
		ts_ring_publish(&r, r.tail);
	}
	status_answers();
	status_answers();
	ts_ring_close(&r);
	status_answers();
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * A producer that fills the daemon's doorbell to it (never reading it,
 * after pushing an eventfd's counter to its maximum): the daemon's rings
 * fail without blocking and it goes on serving.
 */
START_TEST(test_shm_bell_saturated)
{
	uint8_t buf[TS_KEY_PAYLOAD_MAX];
	uint64_t max = UINT64_MAX - 1, want;
	struct ts_ring r;
	size_t len;
	int i, j;

	ts_ring_open(&d, &r, 0);
	ck_assert_int_eq(fcntl(r.efd_out, F_SETFL, fcntl(r.efd_out, F_GETFL) &
	    ~O_NONBLOCK), 0);
	ck_assert_int_eq(write(r.efd_out, &max, sizeof max), sizeof max);
	for (i = 0; i < 2000; i++) {
		if (r.tail - atomic_load(&r.hdr->head) + 64 > r.size)
			break;
		len = ts_key_payload(buf, 1, (uint64_t)i);
		ts_ring_put(&r, buf, (uint32_t)len, (uint32_t)len, 0);
		/* Asleep: the daemon must ring us after this record. */
		atomic_store(&r.hdr->producer_waiting, 1);
		want = atomic_load(&r.hdr->written) + 1;
		atomic_store(&r.hdr->tail, r.tail);
		if (send(r.efd_in, &want, sizeof want, MSG_DONTWAIT |
		    MSG_NOSIGNAL) == -1 && errno == ENOTSOCK)
			(void)write(r.efd_in, &want, sizeof want);
		for (j = 0; j < 2000 && atomic_load(&r.hdr->written) < want;
		    j++)
			usleep(1000);
		if (atomic_load(&r.hdr->written) < want)
			break;		/* the daemon is stuck: see below */
	}
	status_answers();
	ts_ring_close(&r);
	status_answers();
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * A producer whose store of tail the daemon missed while falling asleep
 * (a store still in its store buffer: no membarrier(2), or not registered
 * for it), simulated by one that publishes and never rings: the sleeping
 * drainer's re-checks (WAL_SHM_RECHECK_*) still write its records, each
 * time, so no producer waits without bound for a sleeping daemon.
 */
START_TEST(test_shm_unrung_publish)
{
	uint8_t buf[TS_KEY_PAYLOAD_MAX];
	uint64_t counts[1], other;
	struct ts_ring r;
	size_t len;
	int k, j;

	ts_ring_open(&d, &r, 0);
	/* Offered wherever the daemon can fence (test_shm_no_membarrier). */
	ck_assert_int_eq((r.hdr->features & WAL_SHM_FEAT_ASYM) != 0,
	    wal_shm_membarrier_ok());
	for (k = 0; k < 5; k++) {
		/* The drainer is asleep (a new ring starts so). */
		for (j = 0; j < 10000 && !atomic_load(&r.hdr->daemon_sleeping);
		    j++)
			usleep(1000);
		ck_assert_uint_eq(atomic_load(&r.hdr->daemon_sleeping), 1);
		len = ts_key_payload(buf, 0, (uint64_t)k);
		ts_ring_put(&r, buf, (uint32_t)len, (uint32_t)len, 0);
		/* Published, never rung. */
		atomic_store(&r.hdr->tail, r.tail);
		/* A hang detector, not a timing assertion. */
		for (j = 0; j < 10000 && atomic_load(&r.hdr->written) <
		    (uint64_t)k + 1; j++)
			usleep(1000);
		ck_assert_msg(atomic_load(&r.hdr->written) == (uint64_t)k + 1,
		    "record %d published without a ring is not written after "
		    "10 s", k);
	}
	ts_ring_close(&r);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(check_log(1, 0, counts, &other), 5);
	ck_assert_int_eq(counts[0], 5);
}
END_TEST

/*
 * The timestamp rule (walmmapd(8), README "On-disk format"): one clock
 * reading per batch written together. 40 records published at once in a
 * ring are one drainer pass, 40 records in one APPEND frame are one frame:
 * each batch shares one timestamp, and the later batch's is not earlier.
 */
START_TEST(test_shm_batch_timestamp)
{
	uint8_t buf[TS_KEY_PAYLOAD_MAX];
	struct iovec iov[40];
	struct wal_reader *rd;
	struct wal_record rec;
	struct wal_error err;
	struct walmmap *w;
	struct ts_ring r;
	int64_t ts[80];
	size_t len;
	int k, n = 0, rc;

	ts_ring_open(&d, &r, 0);
	for (k = 0; k < 40; k++) {
		len = ts_key_payload(buf, 0, (uint64_t)k);
		ts_ring_put(&r, buf, (uint32_t)len, (uint32_t)len, 0);
	}
	ts_ring_publish(&r, r.tail);
	for (k = 0; k < 10000 && atomic_load(&r.hdr->written) < 40; k++)
		usleep(1000);
	ck_assert_uint_eq(atomic_load(&r.hdr->written), 40);
	ts_ring_close(&r);
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	len = ts_key_payload(buf, 1, 0);
	for (k = 0; k < 40; k++) {
		iov[k].iov_base = buf;
		iov[k].iov_len = len;
	}
	ck_assert_int_eq(walmmap_append_batch(w, iov, 40, WALMMAP_ACK_WRITTEN,
	    NULL), 40);
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1), 0);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_msg(wal_reader_open(d.data, &rd, &err) == 0, "%s", err.msg);
	while ((rc = wal_reader_next(rd, &rec, &err)) == 1 && n < 80)
		ts[n++] = rec.timestamp_ns;
	ck_assert_int_eq(rc, 0);
	wal_reader_close(rd);
	ck_assert_int_eq(n, 80);
	for (k = 1; k < 80; k++) {
		if (k == 40)
			ck_assert_int_ge(ts[k], ts[k - 1]);
		else
			ck_assert_msg(ts[k] == ts[k - 1], "record %d: timestamp "
			    "%" PRId64 ", record %d: %" PRId64, k - 1,
			    ts[k - 1], k, ts[k]);
	}
}
END_TEST

/*
 * membarrier(2) denied with EPERM to this test process and everything it
 * starts, as a unit's SystemCallFilter with SystemCallErrorNumber=EPERM
 * would (seccomp filters pass to children and survive exec).
 */
static void
deny_membarrier(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof f / sizeof f[0], f };

	ck_assert_int_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	ck_assert_int_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
	errno = 0;
	ck_assert(syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) == -1 &&
	    errno == EPERM);
}

/*
 * A daemon that cannot call membarrier(2) cannot fence for its producers
 * when it falls asleep, so it must not tell them to skip their own fence
 * (WAL_SHM_FEAT_ASYM): with the flag their wake-ups could be lost at every
 * sleep, found only by the re-checks up to a second later. Without the
 * flag they publish with the sequentially consistent store, which pairs
 * with the daemon's fence. And the daemon keeps working: records appended
 * through libwalmmap (itself refused membarrier) with the daemon falling
 * asleep before each are all written, once, in order.
 */
START_TEST(test_shm_no_membarrier)
{
	uint8_t buf[TS_KEY_PAYLOAD_MAX];
	uint64_t counts[1], other;
	struct ts_ring r;
	struct walmmap *w;
	int64_t seq;
	size_t len;
	char *log;
	int k, n = 100;

	ts_daemon_kill(&d);
	deny_membarrier();
	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "16M", "-o",
	    "prefault=no", "-o", "shm_size=" RING_SIZE, NULL), 0);
	ts_ring_open(&d, &r, 0);
	ck_assert_msg((r.hdr->features & WAL_SHM_FEAT_ASYM) == 0, "a daemon "
	    "without membarrier(2) offers rings with WAL_SHM_FEAT_ASYM (%#"
	    PRIx32 ")", r.hdr->features);
	log = ts_daemon_log(&d);
	ck_assert_msg(strstr(log, "producers fence each publish themselves") !=
	    NULL, "the daemon did not say it cannot fence:\n%s", log);
	free(log);
	ts_ring_close(&r);
	w = connect_shm();
	walmmap_set_timeout(w, 10000);	/* a hang shows as a timeout */
	for (k = 0; k < n; k++) {
		usleep(300);		/* past shm_spin: the drainer sleeps */
		len = ts_key_payload(buf, 0, (uint64_t)k);
		ck_assert_msg(walmmap_append(w, buf, len, WALMMAP_ACK_WRITTEN,
		    &seq) == 0, "record %d: %s", k, walmmap_errmsg(w));
	}
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(check_log(1, 0, counts, &other), n);
	ck_assert_int_eq(counts[0], n);
}
END_TEST

/*
 * Padding is consumed and its head published, whether it comes after
 * records drained in the same pass or alone (promise: a producer waiting
 * for space is not stuck behind a padding slot). A producer that
 * publishes padding to the ring's end, then waits for room for a record
 * larger than what is left before the padding, waits for the head to pass
 * the padding: before the fix the drainer stopped its run at the padding
 * (records + trailing padding) and, when a pass found nothing but
 * padding, moved its head without publishing it.
 */
START_TEST(test_shm_trailing_padding)
{
	static uint8_t buf[16384];
	struct ts_ring r;
	uint64_t want, off;
	int j, k, pass;

	ts_ring_open(&d, &r, 65536);
	ck_assert_uint_eq(r.size, 65536);
	memset(buf, 'p', sizeof buf);
	for (pass = 0; pass < 2; pass++) {
		/* Records up to a little before the ring's end. */
		for (k = 0; (off = r.tail & (r.size - 1)) + 2 *
		    wal_shm_slot_bytes(8000) <= r.size || k == 0; k++)
			ts_ring_put(&r, buf, 8000, 8000, 0);
		want = atomic_load(&r.hdr->written) + (uint64_t)k;
		if (pass == 1) {
			/* The records first, drained; then the padding. */
			ts_ring_publish(&r, r.tail);
			for (j = 0; j < 10000 && atomic_load(&r.hdr->written) <
			    want; j++)
				usleep(1000);
			ck_assert_uint_eq(atomic_load(&r.hdr->written), want);
		}
		off = r.tail & (r.size - 1);
		memset(r.data + off, 0xff, 4);	/* WAL_SHM_PAD */
		memset(r.data + off + 4, 0, 4);
		r.tail += r.size - off;
		ts_ring_publish(&r, r.tail);
		/* A hang detector, not a timing assertion. */
		for (j = 0; j < 10000 && (atomic_load(&r.hdr->written) < want ||
		    atomic_load(&r.hdr->head) != r.tail); j++)
			usleep(1000);
		ck_assert_uint_eq(atomic_load(&r.hdr->written), want);
		ck_assert_msg(atomic_load(&r.hdr->head) == r.tail, "pass %d: "
		    "head %" PRIu64 " stays before the padding (tail %" PRIu64
		    ")", pass, (uint64_t)atomic_load(&r.hdr->head), r.tail);
	}
	ts_ring_close(&r);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* A slot of len bytes at the producer's *tail (white-box tests below). */
static void
put_slot(uint8_t *rb, uint64_t size, uint64_t *tail, uint32_t len,
    uint32_t flags)
{
	uint8_t *p = rb + WAL_SHM_HEADER_SIZE + (*tail & (size - 1));
	struct wal_shm_slot sl = { .len = len, .flags = flags, .seq = -1 };

	memcpy(p, &sl, sizeof sl);
	memset(p + sizeof sl, 'r', len <= 1024 ? len : 0);
	*tail += wal_shm_slot_bytes(len <= 1024 ? len : 0);
}

/* Padding to the end of the data area. */
static void
put_pad(uint8_t *rb, uint64_t size, uint64_t *tail)
{
	uint64_t off = *tail & (size - 1);
	uint32_t pad = WAL_SHM_PAD;

	memcpy(rb + WAL_SHM_HEADER_SIZE + off, &pad, sizeof pad);
	*tail += size - off;
}

static int64_t
slot_seq(const uint8_t *rb, uint64_t size, uint64_t pos)
{
	struct wal_shm_slot sl;

	memcpy(&sl, rb + WAL_SHM_HEADER_SIZE + (pos & (size - 1)),
	    sizeof sl);
	return (sl.seq);
}

static void
publish_tail(uint8_t *rb, uint64_t tail)
{
	atomic_store(&((struct wal_shm_header *)(void *)rb)->tail, tail);
}

/* Publish tail and find every record up to it: want of them. */
static unsigned
publish_and_peek(uint8_t *rb, uint64_t tail, struct wal_shm_consumer *c,
    struct wal_shm_rec *recs, unsigned want)
{
	char why[256];
	unsigned n;

	publish_tail(rb, tail);
	ck_assert_int_eq(wal_shm_load_tail(c, why, sizeof why), 1);
	ck_assert_int_eq(wal_shm_peek_run(c, recs, 32, &n, why, sizeof why),
	    0);
	ck_assert_uint_eq(n, want);
	return (n);
}

/* 100-byte records up to where the last 256 bytes of the area begin. */
static void
fill_to_pad(uint8_t *rb, uint64_t size, uint64_t *tail)
{
	while (*tail % size != size - 256)
		put_slot(rb, size, tail, 100, 0);
}

/*
 * The drainer's reading of a ring, white box: a run stops at its max, at
 * the loaded tail and before a corrupt slot (the records before that one
 * are found); padding before a run, inside one and after its last record
 * is skipped and consumed; a run
 * consumed in part leaves the rest for the next, and a slot that asked
 * for its seq gets it.
 */
START_TEST(test_shm_consumer_runs)
{
	const uint64_t size = 4096;	/* 100-byte records: 128-byte slots */
	uint8_t *rb = aligned_alloc(4096, WAL_SHM_HEADER_SIZE + size);
	struct wal_shm_consumer c;
	struct wal_shm_rec recs[32];
	uint64_t tail = 0;
	char why[256];
	unsigned n, i;

	ck_assert_ptr_nonnull(rb);
	wal_shm_format(rb, size, 1024);
	wal_shm_consumer_init(&c, rb, size, 1024);
	for (i = 0; i < 5; i++)
		put_slot(rb, size, &tail, 100, i == 1 ? WAL_SHM_F_SEQ : 0);
	publish_tail(rb, tail);
	ck_assert_int_eq(wal_shm_load_tail(&c, why, sizeof why), 1);

	/* At its max; two of three consumed, the second asked for its seq. */
	ck_assert_int_eq(wal_shm_peek_run(&c, recs, 3, &n, why, sizeof why),
	    1);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(recs[0].len, 100);
	ck_assert_uint_eq(recs[2].slot_pos, 256);
	wal_shm_consume_run(&c, recs, 2, 10);
	ck_assert_int_eq(slot_seq(rb, size, 128), 11);
	ck_assert_int_eq(slot_seq(rb, size, 0), -1);
	ck_assert_uint_eq(c.head, 256);

	/* At the tail: the third again, and the two after it. */
	ck_assert_int_eq(wal_shm_peek_run(&c, recs, 32, &n, why, sizeof why),
	    0);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(recs[0].slot_pos, 256);
	wal_shm_consume_run(&c, recs, n, 12);
	ck_assert_uint_eq(c.written, 5);
	ck_assert_int_eq(c.written_seq, 14);
	(void)wal_shm_publish(&c);

	/* Up to the end of the data area, consumed; then padding first. */
	fill_to_pad(rb, size, &tail);
	n = publish_and_peek(rb, tail, &c, recs, 25);
	wal_shm_consume_run(&c, recs, n, 15);
	(void)wal_shm_publish(&c);
	put_pad(rb, size, &tail);
	put_slot(rb, size, &tail, 100, 0);
	put_slot(rb, size, &tail, 100, 0);
	n = publish_and_peek(rb, tail, &c, recs, 2);
	ck_assert_uint_eq(recs[0].slot_pos, 4096);
	ck_assert_uint_eq(c.head, 4096);	/* the padding is consumed */
	wal_shm_consume_run(&c, recs, n, 40);
	(void)wal_shm_publish(&c);

	/* Padding inside a run. */
	fill_to_pad(rb, size, &tail);
	put_pad(rb, size, &tail);
	put_slot(rb, size, &tail, 100, WAL_SHM_F_SEQ);
	n = publish_and_peek(rb, tail, &c, recs, 29);
	ck_assert_uint_eq(recs[27].slot_pos, 8192 - 384);
	ck_assert_uint_eq(recs[27].next, 8192);	/* past the padding */
	ck_assert_uint_eq(recs[28].slot_pos, 8192);
	wal_shm_consume_run(&c, recs, n, 42);
	ck_assert_int_eq(slot_seq(rb, size, 8192), 70);
	ck_assert_uint_eq(c.head, 8192 + 128);
	(void)wal_shm_publish(&c);

	/* Padding after a run's last record, published with it. */
	fill_to_pad(rb, size, &tail);
	put_pad(rb, size, &tail);
	n = publish_and_peek(rb, tail, &c, recs, 29);
	wal_shm_consume_run(&c, recs, n, 71);
	ck_assert_uint_eq(c.head, tail);

	/* Two good records, then one larger than the ring takes. */
	put_slot(rb, size, &tail, 100, 0);
	put_slot(rb, size, &tail, 100, 0);
	put_slot(rb, size, &tail, 2000, 0);
	publish_tail(rb, tail);
	ck_assert_int_eq(wal_shm_load_tail(&c, why, sizeof why), 1);
	ck_assert_int_eq(wal_shm_peek_run(&c, recs, 32, &n, why, sizeof why),
	    -1);
	ck_assert_uint_eq(n, 2);
	ck_assert_msg(strstr(why, "2000 bytes") != NULL, "%s", why);
	free(rb);
}
END_TEST

static Suite *
shm_suite(void)
{
	Suite *s = suite_create("shm");
	TCase *tc = tcase_create("rings");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_shm_seqs_and_order);
	tcase_add_test(tc, test_shm_fallback);
	tcase_add_test(tc, test_shm_four_producers);
	tcase_add_test(tc, test_shm_ring_full_blocks);
	tcase_add_test(tc, test_shm_killed_mid_record);
	tcase_add_test(tc, test_shm_hostile_rings);
	tcase_add_test(tc, test_shm_spin_yields);
	tcase_add_test(tc, test_shm_size_capped);
	tcase_add_test(tc, test_shm_total);
	tcase_add_test(tc, test_shm_catch_up_in_steps);
	tcase_add_test(tc, test_shm_bell_blocking);
	tcase_add_test(tc, test_shm_bell_saturated);
	tcase_add_test(tc, test_shm_unrung_publish);
	tcase_add_test(tc, test_shm_batch_timestamp);
	tcase_add_test(tc, test_shm_no_membarrier);
	suite_add_tcase(s, tc);
	tc = tcase_create("padding");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_shm_trailing_padding);
	suite_add_tcase(s, tc);
	tc = tcase_create("consumer");
	tcase_add_test(tc, test_shm_consumer_runs);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(shm_suite()));
}
