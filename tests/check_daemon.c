/*
 * walmmapd tests - the daemon end to end: a real walmmapd on a temporary
 * directory and socket, driven through libwalmmap, walctl and raw frames.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_proto.h"
#include "wal_reader.h"
#include "walmmap.h"

static char		*base;
static struct ts_daemon	 d;

static void
setup(void)
{
	base = ts_mkdtemp("daemon");
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

/* Start with small segments so tests rotate; fail the test if it cannot. */
static void
start(void)
{
	int rc = ts_daemon_start(&d, "--segment-size", "256K", "-o",
	    "prefault=no", NULL);

	if (rc != 0) {
		char *log = ts_daemon_log(&d);

		ck_abort_msg("walmmapd did not start (%d): %s", rc, log);
	}
}

static struct walmmap *
connect_ok(enum walmmap_ack ack)
{
	struct walmmap *w;
	int rc = walmmap_connect(&w, d.sock, ack, 0);

	ck_assert_msg(rc == 0, "connect: %s", walmmap_errmsg(w));
	return (w);
}

/* Read the whole log; check seqs contiguous from 0. Returns records. */
static long
log_records(const char *dir, void (*fn)(void *, const struct wal_record *),
    void *arg)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	long n = 0;
	int rc;

	ck_assert_msg(wal_reader_open(dir, &r, &err) == 0, "%s", err.msg);
	while ((rc = wal_reader_next(r, &rec, &err)) == 1) {
		TS_CHECK(rec.seq == n, "seq %" PRId64 " where %ld was due",
		    rec.seq, n);
		if (fn != NULL)
			fn(arg, &rec);
		n++;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(wal_reader_stopped(r)->status == WAL_REC_END,
	    "log damaged at %s offset %" PRIu64 ": %s",
	    wal_reader_stopped(r)->file, wal_reader_stopped(r)->offset,
	    wal_rec_strstatus(wal_reader_stopped(r)->status));
	wal_reader_close(r);
	return (n);
}

START_TEST(test_start_stop)
{
	struct walmmap *w;
	struct walmmap_status st;
	struct stat sb;
	int64_t seq;
	char *log;

	start();
	w = connect_ok(WALMMAP_ACK_WRITTEN);
	ck_assert_int_eq(walmmap_append(w, "hello", 5, WALMMAP_ACK_DEFAULT,
	    &seq), 0);
	ck_assert_int_eq(seq, 0);
	ck_assert_int_eq(walmmap_status(w, &st), 0);
	ck_assert_int_eq(st.next_seq, 1);
	ck_assert_int_eq(st.written_seq, 0);
	ck_assert_int_eq(st.first_seq, 0);
	ck_assert_str_eq(st.dir, d.data);
	ck_assert_int_eq((pid_t)st.pid, d.pid);
	/* After a sync both helpers (segments, syncs) have run. */
	ck_assert_int_eq(walmmap_sync(w, NULL), 0);
	ck_assert_int_ge(ts_helper_threads_block_signals(d.pid), 2);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	/* Its socket is gone; the log says how it stopped. */
	ck_assert_int_eq(stat(d.sock, &sb), -1);
	log = ts_daemon_log(&d);
	ck_assert_msg(strstr(log, "<6>walmmapd: SIGTERM: stopping") != NULL,
	    "%s", log);
	free(log);
	/* A restart continues the sequence. */
	start();
	w = connect_ok(WALMMAP_ACK_WRITTEN);
	ck_assert_int_eq(walmmap_append(w, "again", 5, WALMMAP_ACK_DEFAULT,
	    &seq), 0);
	ck_assert_int_eq(seq, 1);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(log_records(d.data, NULL, NULL), 2);
}
END_TEST

struct producer_check {
	int64_t		last[8];	/* last n seen per producer */
	long		count[8];
};

static void
check_producer_order(void *arg, const struct wal_record *rec)
{
	struct producer_check *pc = arg;
	uint8_t want[300];
	unsigned p;
	uint64_t n;
	size_t len;

	char text[32];

	/* sscanf needs a string; the payload is not NUL-terminated. */
	memcpy(text, rec->payload, rec->size < 31 ? rec->size : 31);
	text[rec->size < 31 ? rec->size : 31] = '\0';
	TS_CHECK(sscanf(text, "%u:%" SCNu64 ":", &p, &n) == 2 && p < 8,
	    "seq %" PRId64 ": not a producer's record", rec->seq);
	/* Exactly once and in each producer's order. */
	TS_CHECK((int64_t)n == pc->last[p] + 1, "seq %" PRId64 ": producer "
	    "%u record %" PRIu64 " after %" PRId64, rec->seq, p, n,
	    pc->last[p]);
	pc->last[p] = (int64_t)n;
	pc->count[p]++;
	len = ts_key_payload(want, p, n);
	TS_CHECK(rec->size == len && memcmp(rec->payload, want, len) == 0,
	    "seq %" PRId64 ": payload of %u:%" PRIu64 " damaged", rec->seq, p,
	    n);
}

/* 8 producers x 12,500 records: all there once, seqs contiguous, order. */
/*
 * Version negotiation: a client that offers only version 1 gets version 1
 * and a clear refusal of the version-2 requests; a client offering 1..2
 * gets 2.
 */
static uint32_t
hello_version(int s, uint32_t vmin, uint32_t vmax)
{
	struct wal_msg_hello h;
	struct wal_msg_welcome w;

	memset(&h, 0, sizeof h);
	h.hdr.type = WAL_MSG_HELLO;
	h.hdr.len = sizeof h;
	h.version_min = vmin;
	h.version_max = vmax;
	h.ack = WAL_ACK_WRITTEN;
	ck_assert_int_eq(send(s, &h, sizeof h, 0), sizeof h);
	ck_assert_int_eq(recv(s, &w, sizeof w, 0), sizeof w);
	ck_assert_int_eq(w.hdr.type, WAL_MSG_WELCOME);
	return (w.version);
}

START_TEST(test_version_negotiation)
{
	int s;

	start();
	s = ts_raw_connect(&d);
	ck_assert_uint_eq(hello_version(s, 1, 1), 1);
	ts_raw_frame(s, WAL_MSG_METRICS, 7);
	ts_raw_expect_error(s, WAL_PERR_VERSION, 0, "needs protocol version 2",
	    5000);
	/* The connection still works for version-1 requests. */
	ts_raw_frame(s, WAL_MSG_PING, 8);
	close(s);
	s = ts_raw_connect(&d);
	ck_assert_uint_eq(hello_version(s, 1, 2), 2);
	close(s);
	s = ts_raw_connect(&d);
	ck_assert_uint_eq(hello_version(s, 2, 9), 2);
	close(s);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

START_TEST(test_many_clients)
{
	enum { PRODUCERS = 8, EACH = 12500 };
	struct producer_check pc;
	pid_t pids[PRODUCERS];
	int i, status;

	start();
	for (i = 0; i < PRODUCERS; i++) {
		if ((pids[i] = fork()) == 0) {
			struct walmmap *w;
			struct iovec iov[10];
			uint8_t buf[10][300];
			uint64_t n = 0;
			int k;

			if (walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN,
			    0) != 0)
				_exit(10);
			while (n < EACH) {
				/* Mix single appends and batches. */
				int batch = (n / 100) % 2 ? 10 : 1;

				for (k = 0; k < batch; k++) {
					iov[k].iov_base = buf[k];
					iov[k].iov_len = ts_key_payload(buf[k],
					    (unsigned)i, n + (uint64_t)k);
				}
				if (walmmap_append_batch(w, iov, (size_t)batch,
				    WALMMAP_ACK_DEFAULT, NULL) != batch)
					_exit(11);
				n += (uint64_t)batch;
			}
			if (walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1) != 0)
				_exit(12);
			walmmap_close(w);
			_exit(0);
		}
	}
	for (i = 0; i < PRODUCERS; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "producer %d failed: status %#x", i, status);
	}
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	memset(&pc, 0, sizeof pc);
	for (i = 0; i < PRODUCERS; i++)
		pc.last[i] = -1;
	ck_assert_int_eq(log_records(d.data, check_producer_order, &pc),
	    PRODUCERS * EACH);
	for (i = 0; i < PRODUCERS; i++)
		ck_assert_int_eq(pc.count[i], EACH);
}
END_TEST

struct acked {
	int64_t		*seq;
	uint64_t	*key;
	size_t		 n;
	size_t		 next;		/* merge position */
};

static void
check_acked(void *arg, const struct wal_record *rec)
{
	struct acked *a = arg;
	uint8_t want[300];
	size_t len;

	if (a->next < a->n && a->seq[a->next] == rec->seq) {
		len = ts_key_payload(want, 0, a->key[a->next]);
		TS_CHECK(rec->size == len && memcmp(rec->payload, want,
		    len) == 0, "acked seq %" PRId64 " holds the wrong record",
		    rec->seq);
		a->next++;
	}
}

/*
 * Fork a producer appending ts_key_payload(0, key), key+1, ... with written
 * acks and logging "seq key" for each acknowledged record to path (fopen
 * mode). It exits 0 once its connection ends with every append that
 * returned acknowledged.
 */
static pid_t
spawn_logged_producer(const char *path, const char *mode, uint64_t key,
    unsigned flags)
{
	struct walmmap *w;
	struct walmmap_progress p;
	uint8_t buf[300];
	uint64_t key0 = key;
	int64_t seq;
	struct pollfd pfd;
	FILE *out;
	pid_t pid;
	int ready[2];
	char c;

	/*
	 * The caller kills the daemon at a random moment of the appends, so
	 * it waits until the producer is connected (a loaded machine can
	 * take longer than the shortest delay to get there).
	 */
	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	if ((pid = fork()) != 0) {
		close(ready[1]);
		pfd.fd = ready[0];
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 30000) == 1)
			(void)read(ready[0], &c, 1);	/* 0: it failed */
		close(ready[0]);
		return (pid);
	}
	close(ready[0]);
	if ((out = fopen(path, mode)) == NULL || walmmap_connect(&w, d.sock,
	    WALMMAP_ACK_WRITTEN, flags) != 0)
		_exit(10);
	if ((flags & WALMMAP_SHM) && !walmmap_shm_active(w, NULL))
		_exit(11);
	if (write(ready[1], "r", 1) != 1)
		_exit(13);
	close(ready[1]);
	setvbuf(out, NULL, _IONBF, 0);
	for (;;) {
		size_t len = ts_key_payload(buf, 0, key);

		if (walmmap_append(w, buf, len, WALMMAP_ACK_DEFAULT, &seq) != 0)
			break;		/* the daemon went away */
		fprintf(out, "%" PRId64 " %" PRIu64 "\n", seq, key);
		key++;
	}
	/*
	 * Everything reported acked is counted; a ring may also have
	 * written the record whose append saw the daemon die.
	 */
	walmmap_progress(w, &p);
	_exit(p.acked == key - key0 || ((flags & WALMMAP_SHM) &&
	    p.acked == key - key0 + 1) ? 0 : 12);
}

/* Load what a logged producer wrote (replacing what a held). */
static void
read_acked(const char *path, struct acked *a, size_t *cap)
{
	int64_t s;
	uint64_t k;
	FILE *f = fopen(path, "r");

	ck_assert_ptr_nonnull(f);
	a->n = 0;
	while (fscanf(f, "%" SCNd64 " %" SCNu64, &s, &k) == 2) {
		if (a->n == *cap) {
			*cap = *cap ? *cap * 2 : 4096;
			a->seq = realloc(a->seq, *cap * sizeof *a->seq);
			a->key = realloc(a->key, *cap * sizeof *a->key);
		}
		a->seq[a->n] = s;
		a->key[a->n++] = k;
	}
	fclose(f);
}

/*
 * kill -9 of the daemon under load, cycles times: every record
 * acknowledged as written is in the log after each restart, once, at its
 * seq. flags: the producer's connection flags (socket or ring).
 */
static void
kill9_cycles(int cycles, unsigned flags)
{
	char ackfile[PATH_MAX];
	struct acked a;
	uint64_t key = 0;
	int cycle, status;
	size_t cap = 0, i;

	snprintf(ackfile, sizeof ackfile, "%s/acked", base);
	memset(&a, 0, sizeof a);
	srandom(42);
	for (cycle = 0; cycle < cycles; cycle++) {
		pid_t pid;

		start();
		pid = spawn_logged_producer(ackfile, "a", key, flags);
		usleep((useconds_t)(20000 + random() % 150000));
		ts_daemon_kill(&d);
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "producer status %#x", status);
		read_acked(ackfile, &a, &cap);
		for (i = 1; i < a.n; i++)
			ck_assert_msg(a.seq[i] > a.seq[i - 1],
			    "acked seqs not increasing: seq %" PRId64
			    " after %" PRId64, a.seq[i], a.seq[i - 1]);
		/* Keys of the next cycle continue after the last acked one. */
		if (a.n > 0)
			key = a.key[a.n - 1] + 1;
	}
	/* One more start recovers the last crash; then read it all. */
	start();
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_uint_gt(a.n, 20);
	a.next = 0;
	log_records(d.data, check_acked, &a);
	ck_assert_msg(a.next == a.n, "%zu of %zu acknowledged records found",
	    a.next, a.n);
	free(a.seq);
	free(a.key);
}

START_TEST(test_kill9_loop)
{
	kill9_cycles(20, 0);
}
END_TEST

/* The same through shared-memory rings: written means in the segment. */
START_TEST(test_kill9_shm)
{
	kill9_cycles(10, WALMMAP_SHM);
}
END_TEST

/*
 * Group commit. 32 durable appends that reach the daemon together (it is
 * stopped while they are sent) share one sync, not 32. Then 32 clients
 * each waiting for 50 durable acks all get them (how many syncs that
 * takes depends on the machine's speed; it is printed, not judged).
 */
START_TEST(test_group_commit)
{
	enum { CLIENTS = 32, EACH = 50 };
	struct walmmap *w;
	struct walmmap_status before, after;
	pid_t pids[CLIENTS];
	int i, status, ready[2], go[2];
	uint64_t syncs;
	char c;

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "256K", "-o",
	    "prefault=no", "-o", "sync_interval=0", NULL), 0);
	w = connect_ok(WALMMAP_ACK_WRITTEN);
	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(go), 0);
	for (i = 0; i < CLIENTS; i++) {
		if ((pids[i] = fork()) == 0) {
			struct walmmap *cl;
			int64_t seq;

			close(go[1]);
			if (walmmap_connect(&cl, d.sock, WALMMAP_ACK_DURABLE,
			    0) != 0 || write(ready[1], "r", 1) != 1)
				_exit(10);
			(void)read(go[0], &c, 1);
			if (walmmap_append(cl, "together", 8,
			    WALMMAP_ACK_DEFAULT, &seq) != 0)
				_exit(11);
			walmmap_close(cl);
			_exit(0);
		}
	}
	close(ready[1]);
	close(go[0]);
	for (i = 0; i < CLIENTS; i++)
		ck_assert_int_eq(read(ready[0], &c, 1), 1);
	ck_assert_int_eq(walmmap_status(w, &before), 0);
	ts_daemon_signal(&d, SIGSTOP);
	close(go[1]);			/* all 32 send while it is stopped */
	usleep(300000);
	ts_daemon_signal(&d, SIGCONT);
	for (i = 0; i < CLIENTS; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "client %d status %#x", i, status);
	}
	close(ready[0]);
	ck_assert_int_eq(walmmap_status(w, &after), 0);
	syncs = after.syncs - before.syncs;
	ck_assert_int_eq(after.durable_seq, CLIENTS - 1);
	fprintf(stderr, "group commit: %d durable records sent together, %"
	    PRIu64 " sync%s\n", CLIENTS, syncs, syncs == 1 ? "" : "s");
	ck_assert_msg(syncs <= 3, "%" PRIu64 " syncs for %d durable records "
	    "that arrived together", syncs, CLIENTS);

	before = after;
	for (i = 0; i < CLIENTS; i++) {
		if ((pids[i] = fork()) == 0) {
			struct walmmap *cl;
			int64_t seq;
			int k;

			if (walmmap_connect(&cl, d.sock, WALMMAP_ACK_DURABLE,
			    0) != 0)
				_exit(10);
			for (k = 0; k < EACH; k++)
				if (walmmap_append(cl, "durable", 7,
				    WALMMAP_ACK_DEFAULT, &seq) != 0)
					_exit(11);
			walmmap_close(cl);
			_exit(0);
		}
	}
	for (i = 0; i < CLIENTS; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "client %d status %#x", i, status);
	}
	ck_assert_int_eq(walmmap_status(w, &after), 0);
	ck_assert_int_eq(after.durable_seq, CLIENTS + CLIENTS * EACH - 1);
	fprintf(stderr, "group commit: %d durable records from %d clients, %"
	    PRIu64 " syncs\n", CLIENTS * EACH, CLIENTS, after.syncs -
	    before.syncs);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* Send APPEND_FD (written ack) passing mfd. */
static void
raw_append_fd(int s, uint64_t id, uint64_t size, int mfd)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct wal_msg_append_fd af;
	struct msghdr msg;
	struct iovec iov;

	memset(&af, 0, sizeof af);
	af.hdr.type = WAL_MSG_APPEND_FD;
	af.hdr.len = sizeof af;
	af.hdr.id = id;
	af.size = size;
	af.ack = WAL_ACK_WRITTEN;
	memset(&msg, 0, sizeof msg);
	memset(&cm, 0, sizeof cm);
	iov.iov_base = &af;
	iov.iov_len = sizeof af;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.buf;
	msg.msg_controllen = sizeof cm.buf;
	cm.hdr.cmsg_level = SOL_SOCKET;
	cm.hdr.cmsg_type = SCM_RIGHTS;
	cm.hdr.cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(&cm.hdr), &mfd, sizeof mfd);
	ck_assert_int_eq(sendmsg(s, &msg, 0), sizeof af);
}

/* Receive a frame that must be an ERROR; its text NUL-terminated. */
static void
recv_error(int s, struct wal_msg_error *e, char *text, size_t len)
{
	uint8_t buf[1024];
	ssize_t n = recv(s, buf, sizeof buf - 1, 0);

	ck_assert_int_ge(n, (ssize_t)sizeof *e);
	memcpy(e, buf, sizeof *e);
	buf[n] = '\0';
	ck_assert_int_eq(e->hdr.type, WAL_MSG_ERROR);
	snprintf(text, len, "%s", (char *)buf + sizeof *e);
}

/* Send a frame; expect an ERROR with code (and then EOF when fatal). */
static void
expect_error(int s, const void *frame, size_t len, unsigned code, int fatal,
    const char *text)
{
	struct wal_msg_error e;
	char buf[1024];

	ck_assert_int_eq(send(s, frame, len, 0), (ssize_t)len);
	recv_error(s, &e, buf, sizeof buf);
	ck_assert_msg(e.code == code, "code %u, want %u: %s", e.code, code,
	    buf);
	ck_assert_int_eq(e.fatal, fatal);
	ck_assert_msg(strstr(buf, text) != NULL,
	    "error text \"%s\" lacks \"%s\"", buf, text);
	if (fatal)
		ck_assert_int_eq(recv(s, buf, sizeof buf, 0), 0);
}

START_TEST(test_malformed)
{
	struct wal_msg m;
	struct wal_msg_hello h;
	uint8_t frame[256], *big;
	struct walmmap *w;
	int s, mfd;
	uint32_t sz;
	int64_t seq;

	start();
	/* Shorter than a header. */
	s = ts_raw_connect(&d);
	expect_error(s, "abc", 3, WAL_PERR_PROTO, 1, "shorter than");
	close(s);
	/* Length field lies. */
	s = ts_raw_connect(&d);
	memset(&m, 0, sizeof m);
	m.type = WAL_MSG_HELLO;
	m.len = 999;
	expect_error(s, &m, sizeof m, WAL_PERR_PROTO, 1, "999");
	close(s);
	/* Unknown type. */
	s = ts_raw_connect(&d);
	m.type = 77;
	m.len = sizeof m;
	expect_error(s, &m, sizeof m, WAL_PERR_PROTO, 1, "type 77");
	close(s);
	/* A daemon's message sent by a client. */
	s = ts_raw_connect(&d);
	m.type = WAL_MSG_OK;
	expect_error(s, &m, sizeof m, WAL_PERR_PROTO, 1, "type 106");
	close(s);
	/* Appending before HELLO. */
	s = ts_raw_connect(&d);
	m.type = WAL_MSG_STATUS;
	expect_error(s, &m, sizeof m, WAL_PERR_PROTO, 1, "before HELLO");
	close(s);
	/* No common version. */
	s = ts_raw_connect(&d);
	memset(&h, 0, sizeof h);
	h.hdr.type = WAL_MSG_HELLO;
	h.hdr.len = sizeof h;
	h.version_min = 90;
	h.version_max = 99;
	expect_error(s, &h, sizeof h, WAL_PERR_VERSION, 1, "90..99");
	close(s);
	/* A record whose size runs past the frame. */
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	{
		struct wal_msg_append a;

		memset(&a, 0, sizeof a);
		a.hdr.type = WAL_MSG_APPEND;
		a.hdr.len = sizeof a + 4 + 8;
		a.count = 1;
		a.ack = WAL_ACK_WRITTEN;
		memcpy(frame, &a, sizeof a);
		sz = 1000;
		memcpy(frame + sizeof a, &sz, 4);
		memset(frame + sizeof a + 4, 'x', 8);
		expect_error(s, frame, a.hdr.len, WAL_PERR_PROTO, 1,
		    "claims 1000 bytes");
	}
	close(s);
	/* A frame larger than the limit. */
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	big = calloc(1, WAL_PROTO_MAX_FRAME + 4096);
	memset(&m, 0, sizeof m);
	m.type = WAL_MSG_APPEND;
	m.len = WAL_PROTO_MAX_FRAME + 4096;
	memcpy(big, &m, sizeof m);
	expect_error(s, big, WAL_PROTO_MAX_FRAME + 4096, WAL_PERR_PROTO, 1,
	    "larger than");
	free(big);
	close(s);
	/* An unsealed memfd: refused, the connection stays usable. */
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	mfd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_eq(write(mfd, "unsealed", 8), 8);
	raw_append_fd(s, 7, 8, mfd);
	{
		struct wal_msg_error e;
		char text[1024];

		recv_error(s, &e, text, sizeof text);
		ck_assert_int_eq(e.code, WAL_PERR_BADFD);
		ck_assert_int_eq(e.fatal, 0);
		ck_assert_int_eq(e.hdr.id, 7);
	}
	close(mfd);
	/* Still served: PING answers OK. */
	memset(&m, 0, sizeof m);
	m.type = WAL_MSG_PING;
	m.len = sizeof m;
	m.id = 8;
	ck_assert_int_eq(send(s, &m, sizeof m, 0), sizeof m);
	ck_assert_int_eq(recv(s, frame, sizeof frame, 0), sizeof m);
	memcpy(&m, frame, sizeof m);
	ck_assert_int_eq(m.type, WAL_MSG_OK);
	ck_assert_int_eq(m.id, 8);
	close(s);

	/* Nothing of that reached the log; the daemon serves others. */
	w = connect_ok(WALMMAP_ACK_WRITTEN);
	ck_assert_int_eq(walmmap_append(w, "ok", 2, WALMMAP_ACK_DEFAULT, &seq),
	    0);
	ck_assert_int_eq(seq, 0);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(log_records(d.data, NULL, NULL), 1);
}
END_TEST

/*
 * Hostile clients while a well-behaved one streams: a 70 MiB memfd
 * record, 1,000 connections opened and dropped, a client that never reads
 * its acks. The good client loses nothing; the daemon stays up.
 */
START_TEST(test_hostile_clients)
{
	struct walmmap *good;
	uint8_t frame[512];
	pid_t pid;
	int s, mfd, i, status;
	long n;

	start();
	if ((pid = fork()) == 0) {
		uint8_t buf[300];
		uint64_t k;

		if (walmmap_connect(&good, d.sock, WALMMAP_ACK_WRITTEN, 0) != 0)
			_exit(10);
		for (k = 0; k < 20000; k++)
			if (walmmap_append(good, buf, ts_key_payload(buf, 0, k),
			    WALMMAP_ACK_DEFAULT, NULL) != 0)
				_exit(11);
		_exit(walmmap_wait(good, WALMMAP_ACK_WRITTEN, -1) == 0 ? 0 :
		    12);
	}
	/* 70 MiB in a sealed memfd: above the 64 MiB format limit. */
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	mfd = memfd_create("big", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_eq(ftruncate(mfd, 70 << 20), 0);
	ck_assert_int_eq(fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
	    F_SEAL_WRITE), 0);
	raw_append_fd(s, 0, 70 << 20, mfd);
	{
		struct wal_msg_error e;
		char text[1024];

		recv_error(s, &e, text, sizeof text);
		ck_assert_msg(strstr(text, "64 MiB") != NULL, "%s", text);
	}
	close(mfd);
	close(s);
	/* 1,000 connections opened and dropped, half after a HELLO. */
	for (i = 0; i < 1000; i++) {
		s = ts_raw_connect(&d);
		if (i % 2)
			ts_raw_hello(s);
		close(s);
	}
	/* A client that streams appends and never reads its acks. */
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	{
		struct wal_msg_append a;
		uint32_t sz = 8;

		memset(&a, 0, sizeof a);
		a.hdr.type = WAL_MSG_APPEND;
		a.hdr.len = sizeof a + 4 + sz;
		a.count = 1;
		a.ack = WAL_ACK_WRITTEN;
		memcpy(frame, &a, sizeof a);
		memcpy(frame + sizeof a, &sz, 4);
		memcpy(frame + sizeof a + 4, "stubborn", 8);
		/* Until the socket is full: the daemon stopped reading it. */
		for (i = 0; i < 1000000; i++)
			if (send(s, frame, a.hdr.len, MSG_DONTWAIT) == -1)
				break;
		ck_assert_msg(errno == EAGAIN, "send: %s", strerror(errno));
	}
	/* The good client finishes regardless. */
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "good client status %#x", status);
	good = connect_ok(WALMMAP_ACK_WRITTEN);
	walmmap_close(good);
	close(s);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	/* Every record of the good client, in order, among the others. */
	{
		struct wal_reader *r;
		struct wal_record rec;
		struct wal_error err;
		uint8_t want[300];
		uint64_t k = 0;
		size_t len;

		ck_assert_int_eq(wal_reader_open(d.data, &r, &err), 0);
		n = 0;
		while (wal_reader_next(r, &rec, &err) == 1) {
			n++;
			if (rec.size == 8 && memcmp(rec.payload, "stubborn", 8)
			    == 0)
				continue;
			len = ts_key_payload(want, 0, k);
			ck_assert_msg(rec.size == len && memcmp(rec.payload,
			    want, len) == 0, "record %" PRIu64 " of the good "
			    "client wrong at seq %" PRId64, k, rec.seq);
			k++;
		}
		ck_assert_uint_eq(k, 20000);
		wal_reader_close(r);
	}
}
END_TEST

/* Oversized records are refused; large ones travel as a memfd. */
START_TEST(test_record_sizes)
{
	struct walmmap *w;
	uint8_t *big;
	int64_t seq;
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	size_t n = 200 * 1024;

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "1M",
	    "-o", "prefault=no", "-o", "max_record=300K", NULL), 0);
	w = connect_ok(WALMMAP_ACK_WRITTEN);
	big = malloc(400 * 1024);
	ts_fill_payload(big, 400 * 1024, 5);
	ck_assert_int_eq(walmmap_append(w, big, 400 * 1024,
	    WALMMAP_ACK_DEFAULT, &seq), -WALMMAP_ETOOLARGE);
	ck_assert_msg(strstr(walmmap_errmsg(w), "max_record") != NULL, "%s",
	    walmmap_errmsg(w));
	/* 200 KiB: more than a frame, so through a sealed memfd. */
	ck_assert_int_eq(walmmap_append(w, big, n, WALMMAP_ACK_DEFAULT, &seq),
	    0);
	ck_assert_int_eq(seq, 0);
	ck_assert_int_eq(walmmap_append(w, "", 0, WALMMAP_ACK_DEFAULT, &seq),
	    0);
	ck_assert_int_eq(seq, 1);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(wal_reader_open(d.data, &r, &err), 0);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
	ck_assert_uint_eq(rec.size, n);
	ck_assert(memcmp(rec.payload, big, n) == 0);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
	ck_assert_uint_eq(rec.size, 0);
	wal_reader_close(r);
	free(big);
}
END_TEST

/* SIGTERM while a client streams: what was acked is there, exit 0. */
START_TEST(test_sigterm_drain)
{
	char ackfile[PATH_MAX];
	struct acked a;
	size_t cap = 0;
	pid_t pid;
	int status;

	snprintf(ackfile, sizeof ackfile, "%s/acked", base);
	start();
	pid = spawn_logged_producer(ackfile, "w", 0, 0);
	usleep(200000);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "producer status %#x", status);
	memset(&a, 0, sizeof a);
	read_acked(ackfile, &a, &cap);
	ck_assert_uint_gt(a.n, 0);
	log_records(d.data, check_acked, &a);
	ck_assert_uint_eq(a.next, a.n);
	free(a.seq);
	free(a.key);
}
END_TEST

/* A connection lost mid-stream says what is known to be acknowledged. */
START_TEST(test_connection_lost)
{
	struct walmmap *w;
	struct walmmap_progress p;
	int64_t seq;
	int rc, i;

	start();
	w = connect_ok(WALMMAP_ACK_WRITTEN);
	for (i = 0; i < 10; i++)
		ck_assert_int_eq(walmmap_append(w, "x", 1, WALMMAP_ACK_DEFAULT,
		    &seq), 0);
	ts_daemon_kill(&d);
	rc = walmmap_append(w, "y", 1, WALMMAP_ACK_DEFAULT, &seq);
	ck_assert_int_eq(rc, -WALMMAP_ELOST);
	ck_assert_msg(strstr(walmmap_errmsg(w), "10 records acknowledged "
	    "written (up to seq 9)") != NULL, "%s", walmmap_errmsg(w));
	walmmap_progress(w, &p);
	ck_assert_uint_eq(p.acked, 10);
	ck_assert_int_eq(p.last_seq, 9);
	walmmap_close(w);
	/* And with no daemon at all. */
	rc = walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0);
	ck_assert_int_eq(rc, -WALMMAP_ENODAEMON);
	ck_assert_msg(strstr(walmmap_errmsg(w), "not running") != NULL, "%s",
	    walmmap_errmsg(w));
	walmmap_close(w);
}
END_TEST

/* Stale socket replaced; a live daemon's socket and lock respected. */
/*
 * Out of descriptors (EMFILE): the daemon backs off instead of dying and
 * accepts again once clients go away.
 */
START_TEST(test_out_of_descriptors)
{
	enum { N = 48 };
	struct walmmap *w;
	int fds[N], i;
	int64_t seq;

	setenv("TS_DAEMON_WRAPPER", "prlimit --nofile=32:32", 1);
	start();
	unsetenv("TS_DAEMON_WRAPPER");
	for (i = 0; i < N; i++)
		fds[i] = ts_raw_connect(&d);
	ck_assert(ts_daemon_log_wait(&d, "out of file descriptors"));
	for (i = 0; i < N; i++)
		close(fds[i]);
	/* Within the back-off second (and a few more), service resumes. */
	for (i = 0; i < 100; i++) {
		if (walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0) == 0)
			break;
		walmmap_close(w);
		usleep(100000);
	}
	ck_assert_int_lt(i, 100);
	ck_assert_int_eq(walmmap_append(w, "x", 1, WALMMAP_ACK_DEFAULT, &seq),
	    0);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * The data directory vanishes under a running daemon: appends that need a
 * new segment fail with the reason, and the daemon keeps answering.
 */
START_TEST(test_data_dir_vanishes)
{
	struct walmmap_status st;
	struct walmmap *w;
	uint8_t buf[1000];
	int64_t seq;
	int rc = 0, i;

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K", "--ring",
	    "2", "-o", "prefault=no", NULL), 0);
	w = connect_ok(WALMMAP_ACK_WRITTEN);
	/*
	 * Wait for the standby segment first: created while the tree is
	 * being removed, it would keep the directory from going away.
	 */
	for (i = 0; i < 1000; i++) {
		ck_assert_int_eq(walmmap_status(w, &st), 0);
		if (st.segments >= 2)
			break;
		usleep(10000);
	}
	ck_assert_uint_ge(st.segments, 2);
	ts_rmtree(strdup(d.data));	/* ts_rmtree frees its argument */
	ck_assert_msg(access(d.data, F_OK) == -1, "%s still there", d.data);
	memset(buf, 'v', sizeof buf);
	for (i = 0; i < 1000; i++)
		if ((rc = walmmap_append(w, buf, sizeof buf,
		    WALMMAP_ACK_DEFAULT, &seq)) != 0)
			break;
	ck_assert_int_eq(rc, -WALMMAP_EIO);
	ck_assert_msg(strstr(walmmap_errmsg(w), "No such file or directory")
	    != NULL, "%s", walmmap_errmsg(w));
	ck_assert_int_eq(walmmap_status(w, &st), 0);
	walmmap_close(w);
}
END_TEST

START_TEST(test_second_daemon)
{
	struct ts_daemon d2;
	struct sockaddr_un sun;
	char base2[PATH_MAX], *log;
	int s;

	/* A stale socket file: bound, then its owner went away. */
	s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (snprintf(sun.sun_path, sizeof sun.sun_path, "%s", d.sock) >=
	    (int)sizeof sun.sun_path)
		ck_abort_msg("socket path too long");
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sun, sizeof sun), 0);
	close(s);
	start();
	log = ts_daemon_log(&d);
	ck_assert_msg(strstr(log, "removing stale socket") != NULL, "%s", log);
	free(log);

	/* Same socket, other directory: refused, the first keeps running. */
	snprintf(base2, sizeof base2, "%s/two", base);
	mkdir(base2, 0700);
	ts_daemon_init(&d2, base2);
	snprintf(d2.sock, sizeof d2.sock, "%s", d.sock);
	ck_assert_int_eq(ts_daemon_start(&d2, NULL), 1);
	log = ts_daemon_log(&d2);
	ck_assert_msg(strstr(log, "another walmmapd is listening") != NULL,
	    "%s", log);
	free(log);

	/* Same directory, other socket: the lock refuses it. */
	snprintf(d2.data, sizeof d2.data, "%s", d.data);
	ck_assert_int_lt(snprintf(d2.sock, sizeof d2.sock, "%s/sock2", base2),
	    (int)sizeof d2.sock);
	ck_assert_int_eq(ts_daemon_start(&d2, NULL), 1);
	log = ts_daemon_log(&d2);
	ck_assert_msg(strstr(log, "in use by another writer") != NULL, "%s",
	    log);
	free(log);
	close(d2.notify_fd);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);

	/* A data directory whose parent does not exist. */
	ck_assert_int_lt(snprintf(d2.data, sizeof d2.data, "%s/no/such/dir",
	    base2), (int)sizeof d2.data);
	d2.notify_fd = -1;
	ck_assert_int_eq(ts_daemon_start(&d2, NULL), 1);
	log = ts_daemon_log(&d2);
	ck_assert_msg(strstr(log, "cannot create data directory") != NULL,
	    "%s", log);
	free(log);
	close(d2.notify_fd);
}
END_TEST

/* Bad options and config lines: refused at start with file:line: why. */
START_TEST(test_bad_config)
{
	char conf[PATH_MAX], *out;
	FILE *f;

	ck_assert_int_eq(ts_run_prog("daemon/walmmapd", NULL, 0, &out, "-f",
	    "-o", "segment_size=12345", NULL), 1);
	ck_assert_msg(strstr(out, "command line: segment_size: \"12345\" is "
	    "not a multiple of 64K") != NULL, "%s", out);
	free(out);
	snprintf(conf, sizeof conf, "%s/walmmapd.conf", base);
	f = fopen(conf, "w");
	fprintf(f, "# comment\nring = 4\nmax_connections = lots\n");
	fclose(f);
	ck_assert_int_eq(ts_run_prog("daemon/walmmapd", NULL, 0, &out, "-f",
	    "-c", conf, NULL), 1);
	ck_assert_msg(strstr(out, "walmmapd.conf:3: max_connections: \"lots\"")
	    != NULL, "%s", out);
	free(out);
	ck_assert_int_eq(ts_run_prog("daemon/walmmapd", NULL, 0, &out, "-f",
	    "-c", "/nonexistent/walmmapd.conf", NULL), 1);
	ck_assert_msg(strstr(out, "cannot read config file") != NULL, "%s",
	    out);
	free(out);
	ck_assert_int_eq(ts_run_prog("daemon/walmmapd", NULL, 0, &out,
	    "--bogus", NULL), 1);
	ck_assert_msg(strstr(out, "usage:") != NULL, "%s", out);
	free(out);
	ck_assert_int_eq(ts_run_prog("daemon/walmmapd", NULL, 0, &out, "-V",
	    NULL), 0);
	ck_assert_msg(strstr(out, PACKAGE_VERSION) != NULL, "%s", out);
	free(out);
}
END_TEST

/* SIGHUP re-reads the file: a lower max_record applies at once. */
START_TEST(test_reload)
{
	char conf[PATH_MAX];
	struct walmmap *w;
	uint8_t buf[2048];
	int64_t seq;
	FILE *f;

	snprintf(conf, sizeof conf, "%s/walmmapd.conf", base);
	f = fopen(conf, "w");
	fprintf(f, "max_record = 64K\nprefault = no\nsegment_size = 256K\n");
	fclose(f);
	ck_assert_int_eq(ts_daemon_start(&d, "-c", conf, NULL), 0);
	w = connect_ok(WALMMAP_ACK_WRITTEN);
	memset(buf, 'r', sizeof buf);
	ck_assert_int_eq(walmmap_append(w, buf, sizeof buf,
	    WALMMAP_ACK_DEFAULT, &seq), 0);
	walmmap_close(w);
	f = fopen(conf, "w");
	fprintf(f, "max_record = 1K\nprefault = no\nsegment_size = 512K\n");
	fclose(f);
	ts_daemon_signal(&d, SIGHUP);
	ck_assert(ts_daemon_log_wait(&d, "configuration reloaded"));
	ck_assert(ts_daemon_log_wait(&d, "reload: max_record 65536 -> 1024"));
	ck_assert(ts_daemon_log_wait(&d, "segment_size changed; it takes "
	    "effect after a restart"));
	w = connect_ok(WALMMAP_ACK_WRITTEN);
	ck_assert_int_eq(walmmap_append(w, buf, sizeof buf,
	    WALMMAP_ACK_DEFAULT, &seq), -WALMMAP_ETOOLARGE);
	ck_assert_int_eq(walmmap_append(w, buf, 1000, WALMMAP_ACK_DEFAULT,
	    &seq), 0);
	ck_assert_int_eq(seq, 1);
	walmmap_close(w);
	/* A broken file on reload keeps the running configuration. */
	f = fopen(conf, "w");
	fprintf(f, "max_record = huge\n");
	fclose(f);
	ts_daemon_signal(&d, SIGHUP);
	ck_assert(ts_daemon_log_wait(&d, "keeping the running configuration"));
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* allow_users: a client with another uid is refused (needs root). */
START_TEST(test_allow_list)
{
	pid_t pid;
	int status;

	if (geteuid() != 0) {
		fprintf(stderr, "test_allow_list: skipped (needs root to run "
		    "a client as another user)\n");
		return;
	}
	ck_assert_int_eq(chmod(base, 0755), 0);
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "allow_users=0", "-o",
	    "prefault=no", "--segment-size", "256K", NULL), 0);
	if ((pid = fork()) == 0) {
		struct walmmap *w;
		int rc;

		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(10);
		rc = walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0);
		if (rc != -WALMMAP_EPERM) {
			fprintf(stderr, "rc %d: %s\n", rc, walmmap_errmsg(w));
			_exit(11);
		}
		if (strstr(walmmap_errmsg(w), "allow") == NULL) {
			fprintf(stderr, "%s\n", walmmap_errmsg(w));
			_exit(12);
		}
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "status %#x", status);
	/* Root itself is on the list. */
	walmmap_close(connect_ok(WALMMAP_ACK_WRITTEN));
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* Retention keeps the newest sealed segments within the limit. */
START_TEST(test_retention)
{
	struct walmmap *w;
	struct walmmap_status st;
	uint8_t buf[1000];
	int i, tries;

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K", "--ring",
	    "2", "-o", "prefault=no", "-o", "retain_segments=2", NULL), 0);
	w = connect_ok(WALMMAP_ACK_WRITTEN);
	memset(buf, 'k', sizeof buf);
	for (i = 0; i < 1000; i++)
		ck_assert_int_eq(walmmap_append(w, buf, sizeof buf,
		    WALMMAP_ACK_DEFAULT, NULL), 0);
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1), 0);
	/* Retention runs once a second; wait for it, without a deadline
	 * that matters for correctness. */
	for (tries = 0; tries < 300; tries++) {
		ck_assert_int_eq(walmmap_status(w, &st), 0);
		if (st.first_seq > 0 && st.segments <= 2 + 2 + 1)
			break;
		usleep(100000);
	}
	ck_assert_msg(st.first_seq > 0, "nothing was removed");
	ck_assert_msg(st.segments <= 5, "%" PRIu64 " segments kept",
	    st.segments);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	/* What is left is one contiguous log from first_seq. */
	ck_assert_int_eq(ts_verify_log(d.data, st.first_seq, NULL, NULL),
	    1000 - st.first_seq);
}
END_TEST

/* Socket activation through systemd-socket-activate, when installed. */
START_TEST(test_socket_activation)
{
	const char *sa = "/usr/bin/systemd-socket-activate";
	struct walmmap *w;
	int64_t seq;
	char *argv[20];
	pid_t pid;
	int i, rc = -1;

	if (access(sa, X_OK) != 0) {
		fprintf(stderr, "test_socket_activation: skipped (%s not "
		    "installed; Debian package systemd)\n", sa);
		return;
	}
	mkdir(d.data, 0700);
	ck_assert_int_eq(ts_daemon_notify_open(&d), 0);
	argv[0] = (char *)sa;
	argv[1] = (char *)"--seqpacket";
	argv[2] = (char *)"-l";
	argv[3] = d.sock;
	argv[4] = (char *)"-E";		/* it passes only what it is told */
	argv[5] = (char *)"NOTIFY_SOCKET";
	argv[6] = (char *)ts_prog("daemon/walmmapd");
	argv[7] = (char *)"-f";
	argv[8] = (char *)"-d";
	argv[9] = d.data;
	argv[10] = (char *)"-o";
	argv[11] = (char *)"prefault=no";
	argv[12] = (char *)"--segment-size";
	argv[13] = (char *)"256K";
	argv[14] = NULL;
	if ((pid = fork()) == 0) {
		int fd = open(d.log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		dup2(fd, 2);
		setenv("NOTIFY_SOCKET", d.notify_path, 1);
		execv(sa, argv);
		_exit(127);
	}
	/* The socket exists before walmmapd runs; the first connect starts
	 * it. */
	for (i = 0; i < 300 && access(d.sock, F_OK) != 0; i++)
		usleep(100000);
	for (i = 0; i < 100; i++) {
		rc = walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0);
		if (rc == 0)
			break;
		walmmap_close(w);
		usleep(100000);
	}
	ck_assert_msg(rc == 0, "connect through socket activation failed");
	/* walmmapd replaced systemd-socket-activate: same pid, READY=1. */
	d.pid = pid;
	ck_assert_int_eq(ts_daemon_wait_ready(&d), 0);
	ck_assert_int_eq(walmmap_append(w, "activated", 9,
	    WALMMAP_ACK_DEFAULT, &seq), 0);
	ck_assert_int_eq(seq, 0);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	{
		char *log = ts_daemon_log(&d);

		ck_assert_msg(strstr(log, "socket passed by systemd") != NULL,
		    "%s", log);
		free(log);
	}
}
END_TEST

/*
 * More connections in the backlog than one loop pass
 * accepts (SRV_ACCEPT_BATCH, 64) are all accepted: the level-triggered
 * listening event comes back for the rest.
 */
START_TEST(test_accept_backlog_over_batch)
{
	enum { N = 200 };
	int fds[N], i;

	start();
	ts_daemon_pause(&d);
	for (i = 0; i < N; i++)
		fds[i] = ts_raw_connect(&d);
	ts_daemon_signal(&d, SIGCONT);
	for (i = 0; i < N; i++)
		ts_raw_hello(fds[i]);
	for (i = 0; i < N; i++)
		close(fds[i]);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

static Suite *
daemon_suite(void)
{
	Suite *s = suite_create("daemon");
	TCase *tc = tcase_create("end-to-end");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_start_stop);
	tcase_add_test(tc, test_version_negotiation);
	tcase_add_test(tc, test_many_clients);
	tcase_add_test(tc, test_kill9_loop);
	tcase_add_test(tc, test_group_commit);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_hostile_clients);
	tcase_add_test(tc, test_record_sizes);
	tcase_add_test(tc, test_sigterm_drain);
	tcase_add_test(tc, test_connection_lost);
	tcase_add_test(tc, test_second_daemon);
	tcase_add_test(tc, test_out_of_descriptors);
	tcase_add_test(tc, test_data_dir_vanishes);
	tcase_add_test(tc, test_bad_config);
	tcase_add_test(tc, test_reload);
	tcase_add_test(tc, test_kill9_shm);
	tcase_add_test(tc, test_allow_list);
	tcase_add_test(tc, test_retention);
	tcase_add_test(tc, test_socket_activation);
	tcase_add_test(tc, test_accept_backlog_over_batch);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	return (ts_run(daemon_suite()));
}
