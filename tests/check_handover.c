/*
 * walmmapd tests - restarts that keep connections (daemon/handover.c).
 *
 * Producers (socket and shared memory, written and durable) append at full
 * speed and a subscriber (walctl tail -f) follows while walmmapd restarts
 * again and again, by SIGUSR2, by "walctl restart", and through systemd's
 * file-descriptor store (the test plays systemd: a NOTIFY_SOCKET that
 * takes FDSTORE=1 with the descriptors, then the next start with
 * LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID). Afterwards no producer saw an
 * error, every record is in the log exactly once and in each producer's
 * order, and the subscriber saw every seq once, without a gap. Also: a
 * failed exec keeps the daemon serving, and a state the new process
 * cannot read is refused while the listening socket still serves.
 *
 * WALMMAP_HANDOVER_RESTARTS sets the number of restarts of the first test
 * (default 100; the pause of each is printed, not asserted).
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "testsupport.h"
#include "faultinject.h"
#include "tsdaemon.h"
#include "wal_proto.h"
#include "walmmap.h"

#define NPROD		8
#define MAXREC		600
#define BIGREC		(1536u * 1024)	/* over CONN_READ_BUDGET: parked */
#define MAXFDS		512

static char		*base;
static struct ts_daemon	 d;
static char		*daemon_args[] = { "--segment-size", "4M", "-o",
			    "prefault=no", "-o", "shm_size=64K", NULL };

/* Producer p: how it appends. */
static const struct {
	enum walmmap_ack	 ack;
	unsigned		 flags;
} prods[NPROD] = {
	{ WALMMAP_ACK_WRITTEN, 0 },
	{ WALMMAP_ACK_DURABLE, 0 },
	{ WALMMAP_ACK_WRITTEN, 0 },
	{ WALMMAP_ACK_DURABLE, 0 },
	{ WALMMAP_ACK_WRITTEN, WALMMAP_SHM },
	{ WALMMAP_ACK_DURABLE, WALMMAP_SHM },
	{ WALMMAP_ACK_WRITTEN, WALMMAP_SHM },
	{ WALMMAP_ACK_WRITTEN, WALMMAP_SHM },
};

static volatile sig_atomic_t	producer_stop;

static void
producer_stop_cb(int sig)
{
	(void)sig;
	producer_stop = 1;
}

static void
setup(void)
{
	base = ts_mkdtemp("handover");
	ts_daemon_init(&d, base);
}

static void
teardown(void)
{
	ts_daemon_kill(&d);
	ts_daemon_notify_close(&d);
	ts_rmtree(base);
	base = NULL;
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6);
}

/*
 * Producer p: appends records (ts_rec_payload, keys 0, 1, ...) until
 * SIGUSR1, then waits for all of them at its level and writes the count
 * to base/prod<p>. Any error: a message on stderr and exit status 1.
 * Producer 2 sends every 300th record as a 1.5 MiB one (a memfd the
 * daemon parks until its turn; subscribers get it in a memfd too).
 */
static pid_t
spawn_producer(unsigned p)
{
	struct walmmap *w;
	uint8_t *buf;
	char path[PATH_MAX], num[32];
	uint64_t k, rng = p + 1;
	const char *why;
	size_t len;
	int64_t seq;
	pid_t pid;
	int rc;

	if ((pid = fork()) != 0)
		return (pid);
	prctl(PR_SET_PDEATHSIG, SIGKILL);	/* ends with the test */
	signal(SIGUSR1, producer_stop_cb);
	if ((buf = malloc(BIGREC)) == NULL)
		_exit(1);
	if ((rc = walmmap_connect(&w, d.sock, prods[p].ack,
	    prods[p].flags)) != 0) {
		fprintf(stderr, "producer %u: connect: %s\n", p,
		    walmmap_strerror(rc));
		_exit(1);
	}
	if ((prods[p].flags & WALMMAP_SHM) && !walmmap_shm_active(w, &why)) {
		fprintf(stderr, "producer %u: no ring: %s\n", p, why);
		_exit(1);
	}
	for (k = 0; !producer_stop; k++) {
		len = ts_rec_payload(buf, BIGREC, p, k, p == 2 && k % 300 ==
		    299 ? BIGREC : 32 + ts_rand(&rng) % (MAXREC - 32));
		/* Now and then wait for the ack (and its seq). */
		rc = walmmap_append(w, buf, len, WALMMAP_ACK_DEFAULT,
		    k % 64 == 63 ? &seq : NULL);
		if (rc != 0) {
			fprintf(stderr, "producer %u: record %" PRIu64 ": %s\n",
			    p, k, walmmap_errmsg(w));
			_exit(1);
		}
	}
	if ((rc = walmmap_wait(w, prods[p].ack, -1)) != 0) {
		fprintf(stderr, "producer %u: final wait: %s\n", p,
		    walmmap_errmsg(w));
		_exit(1);
	}
	walmmap_close(w);
	snprintf(path, sizeof path, "%s/prod%u", base, p);
	snprintf(num, sizeof num, "%" PRIu64 "\n", k);
	if (ts_write_file(path, num, strlen(num)) != 0)
		_exit(1);
	_exit(0);
}

/* Stop the producers: each must exit 0; their counts in count[]. */
static void
stop_producers(const pid_t *pids, unsigned n, uint64_t *count)
{
	char path[PATH_MAX];
	uint8_t *buf;
	size_t len;
	unsigned p;
	int status;

	for (p = 0; p < n; p++)
		kill(pids[p], SIGUSR1);
	for (p = 0; p < n; p++) {
		ck_assert_int_eq(waitpid(pids[p], &status, 0), pids[p]);
		TS_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "producer %u failed (status %d): see its message above",
		    p, status);
		snprintf(path, sizeof path, "%s/prod%u", base, p);
		buf = ts_read_file(path, &len);
		ck_assert_ptr_nonnull(buf);
		count[p] = strtoull((char *)buf, NULL, 10);
		free(buf);
	}
}

/* No producer may have ended (with an error) while restarts went on. */
static void
producers_alive(const pid_t *pids, unsigned n)
{
	unsigned p;
	int status;

	for (p = 0; p < n; p++)
		TS_CHECK(waitpid(pids[p], &status, WNOHANG) == 0, "producer %u "
		    "ended during the restarts (status %d)", p, status);
}

/*
 * The log holds exactly the records the producers counted, each once and
 * in its producer's order, with seqs from 0 without a gap.
 */
static void
check_log(const uint64_t *count, unsigned n)
{
	struct walmmap_reader *r;
	struct walmmap_record rec;
	uint64_t next[NPROD] = { 0 }, k, total = 0, want = 0;
	unsigned p;
	int rc;

	ck_assert_int_eq(walmmap_reader_open(&r, d.data), 0);
	while ((rc = walmmap_reader_next(r, &rec, 0)) == 1) {
		TS_CHECK(rec.seq == (int64_t)total, "seq %" PRId64 " where %"
		    PRIu64 " was next", rec.seq, total);
		TS_CHECK(ts_rec_parse(rec.data, rec.size, &p, &k) == 1 &&
		    p < n, "record %" PRId64 " is not a producer's", rec.seq);
		TS_CHECK(k == next[p], "record %" PRId64 ": producer %u key %"
		    PRIu64 " where key %" PRIu64 " was next (lost or "
		    "duplicated)", rec.seq, p, k, next[p]);
		next[p]++;
		total++;
	}
	ck_assert_int_eq(rc, 0);
	walmmap_reader_close(r);
	for (p = 0; p < n; p++) {
		TS_CHECK(next[p] == count[p], "producer %u appended %" PRIu64
		    " records; the log holds %" PRIu64, p, count[p], next[p]);
		want += count[p];
	}
	ck_assert_uint_eq(total, want);
}

/* walctl tail -f --from 0, read by a thread: every seq once, in order. */
struct tailer {
	pid_t		 pid;
	int		 out;
	int		 err;
	pthread_t	 thread;
	uint64_t	 seen;		/* next seq expected */
	int		 bad;
	char		 why[256];
	pthread_mutex_t	 lock;
};

/* One line's seq, in order? */
static void
tail_seq(struct tailer *t, long long seq)
{
	pthread_mutex_lock(&t->lock);
	if (!t->bad && (uint64_t)seq != t->seen) {
		t->bad = 1;
		snprintf(t->why, sizeof t->why, "subscriber got seq %lld where "
		    "%" PRIu64 " was next", seq, t->seen);
	}
	t->seen++;
	pthread_mutex_unlock(&t->lock);
}

/* Read walctl tail's lines ("SEQ TIME PAYLOAD"), long ones included. */
static void *
tail_reader(void *arg)
{
	struct tailer *t = arg;
	char buf[65536], *nl, *line;
	size_t have = 0;
	ssize_t n;
	int skipping = 0;	/* in a line longer than buf, seq taken */

	for (;;) {
		n = read(t->out, buf + have, sizeof buf - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = '\0';
		line = buf;
		while ((nl = memchr(line, '\n', have - (size_t)(line - buf))) !=
		    NULL) {
			*nl = '\0';
			if (!skipping)
				tail_seq(t, strtoll(line, NULL, 10));
			skipping = 0;
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		if (have == sizeof buf - 1) {
			/* A long record: its seq now, the rest skipped. */
			if (!skipping)
				tail_seq(t, strtoll(buf, NULL, 10));
			skipping = 1;
			have = 0;
		}
	}
	return (NULL);
}

static void
tail_start(struct tailer *t)
{
	memset(t, 0, sizeof *t);
	pthread_mutex_init(&t->lock, NULL);
	t->pid = ts_spawn_prog("client/walctl", &t->out, &t->err, "-s",
	    d.sock, "-t", "0", "tail", "-f", "--from", "0", NULL);
	ck_assert_int_gt(t->pid, 0);
	ck_assert_int_eq(pthread_create(&t->thread, NULL, tail_reader, t), 0);
}

/* Wait until the subscriber saw total records; stop it. */
static void
tail_finish(struct tailer *t, uint64_t total)
{
	char err[4096];
	uint64_t seen = 0;
	ssize_t n;
	int i, status;

	for (i = 0; i < 3000; i++) {
		pthread_mutex_lock(&t->lock);
		seen = t->seen;
		pthread_mutex_unlock(&t->lock);
		if (seen >= total || waitpid(t->pid, &status, WNOHANG) != 0)
			break;
		usleep(10000);
	}
	kill(t->pid, SIGTERM);
	ts_prog_wait(t->pid);
	pthread_join(t->thread, NULL);
	n = read(t->err, err, sizeof err - 1);
	err[n > 0 ? n : 0] = '\0';
	close(t->out);
	close(t->err);
	TS_CHECK(!t->bad, "%s", t->why);
	TS_CHECK(t->seen == total, "the subscriber saw %" PRIu64 " of %"
	    PRIu64 " records (%s)", t->seen, total, err);
}

/* Wait (30 s at most) until n clients besides us are connected. */
static void
wait_clients(unsigned n)
{
	struct walmmap_status st;
	struct walmmap *w;
	int i;

	for (i = 0; i < 3000; i++) {
		ck_assert_int_eq(walmmap_connect(&w, d.sock,
		    WALMMAP_ACK_WRITTEN, 0), 0);
		ck_assert_int_eq(walmmap_status(w, &st), 0);
		walmmap_close(w);
		if (st.clients >= n + 1)
			return;
		usleep(10000);
	}
	ck_abort_msg("%u clients did not connect in 30 s", n);
}

/* The last "the hand-over took X ms" of the daemon's log, or -1. */
static double
last_handover_ms(void)
{
	char *log = ts_daemon_log(&d), *p, *last = NULL;
	double ms = -1;

	for (p = log; (p = strstr(p, "the hand-over took ")) != NULL; p++)
		last = p;
	if (last != NULL)
		ms = strtod(last + strlen("the hand-over took "), NULL);
	free(log);
	return (ms);
}

static unsigned
count_in_log(const char *text)
{
	char *log = ts_daemon_log(&d), *p;
	unsigned n = 0;

	for (p = log; (p = strstr(p, text)) != NULL; p++)
		n++;
	free(log);
	return (n);
}

/*
 * Test 2 of issue 16: restarts by SIGUSR2 and by walctl restart while 8
 * producers (4 socket, 4 shared memory) append at full speed.
 */
START_TEST(test_restarts_under_load)
{
	const char *env = getenv("WALMMAP_HANDOVER_RESTARTS");
	unsigned restarts = env != NULL ? (unsigned)atoi(env) : 100, i, p;
	pid_t pids[NPROD];
	uint64_t count[NPROD], total = 0;
	struct tailer t;
	double t0, ready_ms, sum = 0, max = 0, ho;
	char *out;
	int rc;

	rc = ts_daemon_startv(&d, daemon_args);
	ck_assert_int_eq(rc, 0);
	tail_start(&t);
	for (p = 0; p < NPROD; p++)
		pids[p] = spawn_producer(p);
	wait_clients(NPROD + 1);
	usleep(200000);
	for (i = 0; i < restarts; i++) {
		producers_alive(pids, NPROD);
		ck_assert_int_eq(ts_daemon_notify_open(&d), 0);
		t0 = now_ms();
		if (i % 2 == 0)
			ts_daemon_signal(&d, SIGUSR2);
		else {
			rc = ts_run_prog("client/walctl", NULL, 0, &out, "-s",
			    d.sock, "restart", NULL);
			TS_CHECK(rc == 0, "walctl restart: %d: %s", rc, out);
			free(out);
		}
		if ((rc = ts_daemon_wait_ready(&d)) != 0) {
			out = ts_daemon_log(&d);
			ck_abort_msg("restart %u: walmmapd did not come back "
			    "(%d): %s", i + 1, rc, out);
		}
		ready_ms = now_ms() - t0;
		ho = last_handover_ms();
		sum += ho;
		if (ho > max)
			max = ho;
		printf("restart %u (%s): hand-over %.1f ms (stop of the old "
		    "process to the new one serving), %.1f ms from the request "
		    "to READY=1\n", i + 1, i % 2 == 0 ? "SIGUSR2" :
		    "walctl restart", ho, ready_ms);
		usleep(20000);
	}
	ck_assert_uint_eq(count_in_log("restart: took over "), restarts);
	usleep(100000);
	stop_producers(pids, NPROD, count);
	for (p = 0; p < NPROD; p++)
		total += count[p];
	printf("%u restarts: %" PRIu64 " records from %d producers, "
	    "hand-over mean %.1f ms, max %.1f ms\n", restarts, total, NPROD,
	    restarts > 0 ? sum / restarts : 0, max);
	tail_finish(&t, total);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	check_log(count, NPROD);
}
END_TEST

/* A listening socket as systemd's walmmapd.socket makes it. */
static int
systemd_socket(void)
{
	struct sockaddr_un sun;
	int s;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	ck_assert_uint_lt(strlen(d.sock), sizeof sun.sun_path);
	memcpy(sun.sun_path, d.sock, strlen(d.sock));
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sun, sizeof sun), 0);
	ck_assert_int_eq(listen(s, 128), 0);
	return (s);
}

/* What systemd's store holds. */
struct fdstore {
	int		 fd[MAXFDS];
	char		 name[MAXFDS][64];
	int		 n;
	unsigned	 removed;	/* FDSTOREREMOVE=1 seen */
	int		 ready;
};

/* Take one notification as systemd does: FDSTORE=1 keeps its fds. */
static int
notify_take(struct fdstore *st, int timeout_ms)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 64)];
	} cm;
	struct msghdr msg;
	struct cmsghdr *ch;
	struct pollfd pfd = { d.notify_fd, POLLIN, 0 };
	struct iovec iov;
	char buf[4096], *name;
	int fds[64], nfds = 0, i;
	ssize_t n;

	if (poll(&pfd, 1, timeout_ms) != 1)
		return (0);
	memset(&msg, 0, sizeof msg);
	iov.iov_base = buf;
	iov.iov_len = sizeof buf - 1;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.buf;
	msg.msg_controllen = sizeof cm.buf;
	if ((n = recvmsg(d.notify_fd, &msg, MSG_CMSG_CLOEXEC)) <= 0)
		return (0);
	buf[n] = '\0';
	for (ch = CMSG_FIRSTHDR(&msg); ch != NULL; ch = CMSG_NXTHDR(&msg, ch))
		if (ch->cmsg_level == SOL_SOCKET && ch->cmsg_type ==
		    SCM_RIGHTS) {
			nfds = (int)((ch->cmsg_len - CMSG_LEN(0)) /
			    sizeof(int));
			memcpy(fds, CMSG_DATA(ch), sizeof(int) * (size_t)nfds);
		}
	name = strstr(buf, "FDNAME=");
	if (strstr(buf, "FDSTORE=1") != NULL) {
		for (i = 0; i < nfds; i++) {
			ck_assert_int_lt(st->n, MAXFDS);
			ck_assert_ptr_nonnull(name);
			snprintf(st->name[st->n], sizeof st->name[0], "%.*s",
			    (int)strcspn(name + 7, "\n"), name + 7);
			st->fd[st->n++] = fds[i];
		}
	} else
		for (i = 0; i < nfds; i++)
			close(fds[i]);
	if (strstr(buf, "FDSTOREREMOVE=1") != NULL)
		st->removed++;
	if (strstr(buf, "READY=1") != NULL)
		st->ready = 1;
	return (1);
}

/*
 * One systemd restart: SIGTERM, collect the store while the daemon exits,
 * start the next one with the socket unit's socket (lsock, -1: none) and
 * the store.
 */
static void
systemd_restart(int lsock)
{
	struct fdstore st;
	char names[MAXFDS * 64 + 64];
	int fds[MAXFDS + 1], i, status = -1, exited = 0, tries, nfds = 0;
	unsigned stored;
	size_t off = 0;

	memset(&st, 0, sizeof st);
	ck_assert_int_eq(ts_daemon_notify_open(&d), 0);
	ts_daemon_signal(&d, SIGTERM);
	for (tries = 0; tries < 6000 && !exited; tries++) {
		while (notify_take(&st, 0))
			;
		if (waitpid(d.pid, &status, WNOHANG) == d.pid)
			exited = 1;
		else
			(void)notify_take(&st, 10);
	}
	ck_assert_msg(exited, "walmmapd did not exit after SIGTERM");
	d.pid = 0;
	while (notify_take(&st, 0))
		;
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "walmmapd exited with status %d", status);
	ck_assert_int_gt(st.n, 0);
	ck_assert_str_eq(st.name[st.n - 1], "wh-state");

	/* As systemd: the socket unit's socket first, then the store. */
	names[0] = '\0';
	if (lsock != -1) {
		fds[nfds++] = lsock;
		off = (size_t)snprintf(names, sizeof names, "walmmapd.socket");
	}
	for (i = 0; i < st.n; i++) {
		fds[nfds++] = st.fd[i];
		off += (size_t)snprintf(names + off, sizeof names - off, "%s%s",
		    off > 0 ? ":" : "", st.name[i]);
	}
	stored = (unsigned)st.n;
	ck_assert_int_gt(ts_daemon_spawn_fds(&d, NULL, fds, names, nfds,
	    daemon_args), 0);
	for (i = 0; i < st.n; i++)
		close(st.fd[i]);	/* systemd's copies: removed below */
	memset(&st, 0, sizeof st);
	for (tries = 0; tries < 6000 && !st.ready; tries++)
		(void)notify_take(&st, 10);
	ck_assert_msg(st.ready, "the next walmmapd did not become ready");
	/* It took every one out of the store (names are unique). */
	ck_assert_int_eq(st.n, 0);
	ck_assert_uint_eq(st.removed, stored);
	ts_daemon_notify_close(&d);
}

/*
 * Test 3 of issue 16: the same through systemd's descriptor store, told
 * as systemd 254 and later tell it ($FDSTORE) and as walmmapd.service
 * tells older ones (WALMMAPD_FDSTORE=1), in turn.
 */
START_TEST(test_systemd_fdstore)
{
	static char *env[] = { "FDSTORE=4096", NULL };
	static char *env_old[] = { "WALMMAPD_FDSTORE=1", NULL };
	pid_t pids[NPROD];
	uint64_t count[NPROD], total = 0;
	struct tailer t;
	unsigned p, i;
	int lsock, tries;
	struct fdstore st;

	d.env = env;
	lsock = systemd_socket();
	ck_assert_int_gt(ts_daemon_spawn_fds(&d, NULL, &lsock,
	    "walmmapd.socket", 1, daemon_args), 0);
	ck_assert_int_eq(ts_daemon_wait_ready(&d), 0);
	tail_start(&t);
	for (p = 0; p < NPROD; p++)
		pids[p] = spawn_producer(p);
	wait_clients(NPROD + 1);
	usleep(200000);
	for (i = 0; i < 5; i++) {
		producers_alive(pids, NPROD);
		/* The environment of the process started next. */
		d.env = i % 2 == 0 ? env_old : env;
		systemd_restart(lsock);
		printf("systemd restart %u: hand-over %.1f ms\n", i + 1,
		    last_handover_ms());
		usleep(50000);
	}
	ck_assert_uint_eq(count_in_log("restart: took over 9 connections"),
	    5);
	ck_assert_uint_eq(count_in_log("listening on the socket passed by "
	    "systemd"), 6);
	stop_producers(pids, NPROD, count);
	for (p = 0; p < NPROD; p++)
		total += count[p];
	tail_finish(&t, total);
	/* The last stop hands over to the store too: systemd closes it. */
	memset(&st, 0, sizeof st);
	ck_assert_int_eq(ts_daemon_notify_open(&d), 0);
	ts_daemon_signal(&d, SIGTERM);
	for (tries = 0; tries < 6000 && d.pid != 0; tries++) {
		(void)notify_take(&st, 10);
		if (waitpid(d.pid, NULL, WNOHANG) == d.pid)
			d.pid = 0;
	}
	while (notify_take(&st, 0))
		;
	for (i = 0; i < (unsigned)st.n; i++)
		close(st.fd[i]);
	ts_daemon_notify_close(&d);
	close(lsock);
	check_log(count, NPROD);
}
END_TEST

/*
 * The store without a socket unit: walmmapd's own socket (and its
 * directory) go through the store too, and the socket file is still
 * removed at a plain stop afterwards.
 */
START_TEST(test_systemd_fdstore_own_socket)
{
	static char *env[] = { "FDSTORE=64", NULL };
	struct walmmap *w;
	struct stat sb;
	int64_t seq, seq2;
	int i;

	d.env = env;
	ck_assert_int_gt(ts_daemon_spawn_fds(&d, NULL, NULL, NULL, 0,
	    daemon_args), 0);
	ck_assert_int_eq(ts_daemon_wait_ready(&d), 0);
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_DURABLE,
	    WALMMAP_SHM), 0);
	ck_assert_int_eq(walmmap_append(w, "a", 1, WALMMAP_ACK_DEFAULT,
	    &seq), 0);
	for (i = 0; i < 3; i++) {
		systemd_restart(-1);
		ck_assert_int_eq(walmmap_append(w, "b", 1,
		    WALMMAP_ACK_DEFAULT, &seq2), 0);
		ck_assert_int_eq(seq2, seq + 1 + i);
	}
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_DURABLE, -1), 0);
	walmmap_close(w);
	ck_assert_uint_eq(count_in_log("restart: took over 1 connection "),
	    3);
	/* A plain stop (no store now) removes the socket it inherited. */
	d.env = NULL;
	systemd_restart(-1);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(stat(d.sock, &sb), -1);
}
END_TEST

/* Copy the build tree's walmmapd to path. */
static void
copy_daemon(const char *path)
{
	uint8_t *buf;
	size_t len;

	buf = ts_read_file(ts_prog("daemon/walmmapd"), &len);
	ck_assert_ptr_nonnull(buf);
	unlink(path);
	ck_assert_int_eq(ts_write_file(path, buf, len), 0);
	ck_assert_int_eq(chmod(path, 0755), 0);
	free(buf);
}

/*
 * Replace bin with a script exec refuses and ask the daemon to restart:
 * walctl must fail (exit 1). Returns walctl's output (the caller frees).
 */
static char *
restart_exec_refused(const char *bin)
{
	static const char script[] = "#!/nonexistent/interpreter\n";
	char *out;

	unlink(bin);
	ck_assert_int_eq(ts_write_file(bin, script, strlen(script)), 0);
	ck_assert_int_eq(chmod(bin, 0755), 0);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "-s",
	    d.sock, "restart", NULL), 1);
	return (out);
}

/*
 * A restart whose exec fails: walctl says so, and the daemon reopened its
 * log and serves on (logged once).
 */
static void
restart_exec_reopens(const char *bin)
{
	char *out = restart_exec_refused(bin);

	TS_CHECK(strstr(out, "restart failed: cannot execute") != NULL,
	    "walctl restart said: %s", out);
	free(out);
	ck_assert_uint_eq(count_in_log("restart failed: log open again"), 1);
}

/* A failed exec leaves the daemon serving, its connections untouched. */
START_TEST(test_failed_exec)
{
	char bin[PATH_MAX], *out;
	struct walmmap *w;
	int64_t seq, seq2;
	pid_t pid;

	snprintf(bin, sizeof bin, "%s/walmmapd-copy", base);
	copy_daemon(bin);
	ck_assert_int_gt((pid = ts_daemon_spawn_fds(&d, bin, NULL, NULL, 0,
	    daemon_args)), 0);
	ck_assert_int_eq(ts_daemon_wait_ready(&d), 0);
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_DURABLE,
	    WALMMAP_SHM), 0);
	ck_assert_int_eq(walmmap_append(w, "one", 3, WALMMAP_ACK_DEFAULT,
	    &seq), 0);

	/* The binary became something exec refuses (after the checks). */
	out = restart_exec_refused(bin);
	TS_CHECK(strstr(out, "restart failed: cannot execute") != NULL &&
	    strstr(out, "serves on") != NULL, "walctl restart said: %s", out);
	free(out);
	ck_assert_int_eq(kill(pid, 0), 0);
	ck_assert_int_eq(walmmap_append(w, "two", 3, WALMMAP_ACK_DEFAULT,
	    &seq2), 0);
	ck_assert_int_eq(seq2, seq + 1);

	/* The binary is gone: refused before anything stops. */
	unlink(bin);
	ts_daemon_signal(&d, SIGUSR2);
	ck_assert_int_eq(ts_daemon_log_wait(&d, "No such file or directory; "
	    "this walmmapd serves on"), 1);
	ck_assert_int_eq(walmmap_append(w, "three", 5, WALMMAP_ACK_DEFAULT,
	    &seq2), 0);
	ck_assert_int_eq(seq2, seq + 2);
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_DURABLE, -1), 0);
	walmmap_close(w);
	ck_assert_uint_eq(count_in_log("restart failed: log open again"), 1);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * After a failed exec the log is opened again
 * (handover_reopen_ring), but the new ring gets no companion: group
 * commits publish durable seqs without ever syncing the producer table
 * again. A producer's records acknowledged durable then have journal
 * entries (and a slot position) only in the page cache; a power cut
 * loses them, and the producer's resend is not recognised with its
 * original seq (here the slot page survives, as the shim's one-prefix
 * ledger allows, so it gets DUP with seq -1; had the slot page been lost
 * too, a second copy would be written).
 *
 * The power cut: the table is cut to what the daemon's msyncs covered
 * (the shim's sync ledger, as tsfault.c's m_power_cut does for segments);
 * the segments are kept whole (they were synced: the acks were durable).
 */
START_TEST(test_table_synced_after_failed_exec)
{
	char bin[PATH_MAX], ctlpath[PATH_MAX], tab[PATH_MAX + 32], *out;
	struct wal_msg_producer_ok ok, ok2;
	struct wal_msg_ack am;
	struct wal_ack_entry e;
	struct wf_ctl *ctl;
	struct wf_synced *le;
	struct stat st;
	uint8_t buf[4096], *now;
	uint64_t end;
	size_t len, last;
	int64_t first;
	int s;

	snprintf(ctlpath, sizeof ctlpath, "%s/fault.ctl", base);
	ck_assert_ptr_nonnull(ctl = wf_ctl_open(ctlpath));
	atomic_store(&ctl->ledger_on, 1);
	d.fault_ctl = ctlpath;	/* the shim, also under a sanitizer */
	snprintf(bin, sizeof bin, "%s/walmmapd-copy", base);
	copy_daemon(bin);
	ck_assert_int_gt(ts_daemon_spawn_fds(&d, bin, NULL, NULL, 0,
	    daemon_args), 0);
	ck_assert_int_eq(ts_daemon_wait_ready(&d), 0);
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	ck_assert_uint_eq(ts_raw_producer(s, 0, &ok), 0);
	/*
	 * One record before: its durable ack syncs the whole table (the
	 * ledger keeps one prefix per file, so the slot's own msync at
	 * PRODUCER does not show there).
	 */
	ts_raw_append_p(s, 1, 1, 1, WAL_ACK_DURABLE);
	ts_raw_recv_until(s, WAL_MSG_ACK, buf, sizeof buf, 10000);
	memcpy(&am, buf, sizeof am);
	memcpy(&e, buf + sizeof am, sizeof e);
	ck_assert_uint_eq(e.flags, 0);
	ck_assert_int_eq(e.first_seq, 0);

	/* A restart whose exec fails: this walmmapd serves on. */
	out = restart_exec_refused(bin);
	TS_CHECK(strstr(out, "serves on") != NULL, "walctl restart said: %s",
	    out);
	free(out);

	/* Three records of the producer, acknowledged durable. */
	ts_raw_append_p(s, 2, 2, 3, WAL_ACK_DURABLE);
	ts_raw_recv_until(s, WAL_MSG_ACK, buf, sizeof buf, 10000);
	memcpy(&am, buf, sizeof am);
	ck_assert_uint_eq(am.count, 1);
	memcpy(&e, buf + sizeof am, sizeof e);
	ck_assert_uint_eq(e.flags, 0);
	ck_assert_uint_eq(e.count, 3);
	first = e.first_seq;
	close(s);

	/* Power cut: the table keeps what its syncs covered. */
	ts_daemon_kill(&d);
	snprintf(tab, sizeof tab, "%s/walmmapd.producers", d.data);
	ck_assert_int_eq(stat(tab, &st), 0);
	ck_assert_ptr_nonnull(now = ts_read_file(tab, &len));
	le = wf_ledger_find(ctl, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
	end = le != NULL ? atomic_load(&le->end) : 0;
	for (last = len; last > 0 && now[last - 1] == 0; last--)
		;
	if (end < len) {
		memset(now + end, 0, len - end);
		ck_assert_int_eq(ts_pwrite_file(tab, now, len, 0), 0);
	}
	free(now);
	d.env = NULL;
	wf_ctl_close(ctl);

	/* The producer resends what was acknowledged durable: DUPs. */
	ck_assert_int_eq(ts_daemon_startv(&d, daemon_args), 0);
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	ck_assert_uint_eq(ts_raw_producer(s, ok.producer_id, &ok2), 0);
	ts_raw_append_p(s, 3, 2, 3, WAL_ACK_DURABLE);
	ts_raw_recv_until(s, WAL_MSG_ACK, buf, sizeof buf, 10000);
	memcpy(&am, buf, sizeof am);
	memcpy(&e, buf + sizeof am, sizeof e);
	close(s);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_msg(e.flags == WAL_ACK_F_DUP && e.first_seq == first,
	    "a resend of 3 records acknowledged durable at seq %" PRId64
	    " after a power cut: ack flags 0x%x, seq %" PRId64 " (the "
	    "table's synced end is %" PRIu64 " of %zu bytes of data: its "
	    "journal entries were never synced)", first, (unsigned)e.flags,
	    (int64_t)e.first_seq, end, last);
}
END_TEST

/* A sealed memfd holding len bytes of buf. */
static int
state_memfd(const void *buf, size_t len)
{
	int fd = memfd_create("bad-state", MFD_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
	return (fd);
}

/*
 * A state the new process cannot read: refused with a clear message, the
 * other descriptors closed, the listening socket serves.
 */
START_TEST(test_bad_state)
{
	struct {
		uint32_t	magic;
		uint32_t	version;
		uint64_t	length;
		uint32_t	crc;
		uint32_t	pad;
		uint64_t	started_ns;
	} h;
	static const char junk[] = "this is not a walmmapd state at all";
	char *out;
	int fds[3], pfd[2], lsock, rc;

	/* Junk, with walmmapd.socket from "systemd". */
	lsock = systemd_socket();
	fds[0] = lsock;
	fds[1] = state_memfd(junk, sizeof junk);
	ck_assert_int_gt(ts_daemon_spawn_fds(&d, NULL, fds,
	    "walmmapd.socket:wh-state", 2, daemon_args), 0);
	ck_assert_int_eq(ts_daemon_wait_ready(&d), 0);
	close(fds[1]);
	ck_assert_int_eq(ts_daemon_log_wait(&d, "cannot take over the "
	    "previous walmmapd's connections: the state is not a walmmapd "
	    "hand-over (magic"), 1);
	rc = ts_run_prog("client/walctl", NULL, 0, &out, "-s", d.sock,
	    "status", NULL);
	ck_assert_msg(rc == 0, "walctl status: %s", out);
	free(out);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	close(lsock);
	unlink(d.sock);

	/* A newer version, the daemon's own socket and a connection. */
	memset(&h, 0, sizeof h);
	h.magic = 0x4f48574du;
	h.version = 99;
	h.length = sizeof h;
	lsock = systemd_socket();
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0,
	    pfd), 0);
	fds[0] = lsock;
	fds[1] = state_memfd(&h, sizeof h);
	fds[2] = pfd[1];
	ck_assert_int_gt(ts_daemon_spawn_fds(&d, NULL, fds,
	    "wh-listen:wh-state:wh-f0", 3, daemon_args), 0);
	ck_assert_int_eq(ts_daemon_wait_ready(&d), 0);
	close(fds[1]);
	close(pfd[1]);
	ck_assert_int_eq(ts_daemon_log_wait(&d, "the state is version 99; "
	    "this walmmapd reads versions 1 to 1"), 1);
	ck_assert_int_eq(ts_daemon_log_wait(&d, "serving the listening "
	    "socket alone (clients reconnect)"), 1);
	/* The connection it could not take over was closed. */
	{
		char b;
		struct pollfd p = { pfd[0], POLLIN, 0 };

		ck_assert_int_eq(poll(&p, 1, 10000), 1);
		ck_assert_int_eq(read(pfd[0], &b, 1), 0);
	}
	close(pfd[0]);
	rc = ts_run_prog("client/walctl", NULL, 0, &out, "-s", d.sock,
	    "status", NULL);
	ck_assert_msg(rc == 0, "walctl status: %s", out);
	free(out);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	close(lsock);
}
END_TEST

/*
 * What a connection agreed on survives a restart: a version-1 connection
 * stays version 1, one without HELLO yet can still send it, and a
 * subscriber waiting for the next new record (none came yet) gets it,
 * not the records before.
 */
START_TEST(test_state_kept)
{
	struct wal_msg_hello h;
	struct walmmap_reader *ra, *rb;
	struct walmmap_record rec;
	uint8_t buf[WAL_PROTO_MAX_FRAME];
	int v1, nohello;
	char *out;

	ck_assert_int_eq(ts_daemon_startv(&d, daemon_args), 0);
	/* A waits at the end of an empty log. */
	ck_assert_int_eq(walmmap_subscribe(&ra, d.sock, -1, -1,
	    WALMMAP_FOLLOW), 0);
	v1 = ts_raw_connect(&d);
	memset(&h, 0, sizeof h);
	h.hdr.type = WAL_MSG_HELLO;
	h.hdr.len = sizeof h;
	h.hdr.id = 1;
	h.version_min = 1;
	h.version_max = 1;
	h.ack = WAL_ACK_WRITTEN;
	ck_assert_int_eq(send(v1, &h, sizeof h, 0), (ssize_t)sizeof h);
	ts_raw_recv_until(v1, WAL_MSG_WELCOME, buf, sizeof buf, 10000);
	nohello = ts_raw_connect(&d);
	wait_clients(3);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "-s",
	    d.sock, "restart", NULL), 0);
	free(out);
	ck_assert_int_eq(ts_daemon_log_wait(&d, "restart: took over 4 "
	    "connections"), 1);
	ck_assert_int_eq(ts_run_prog("client/walctl", "zero\n", 5, &out,
	    "-s", d.sock, "append", NULL), 0);
	free(out);
	ck_assert_int_eq(walmmap_reader_next(ra, &rec, 10000), 1);
	ck_assert_int_eq(rec.seq, 0);

	/* B waits for the next new record of a log that has one. */
	ck_assert_int_eq(walmmap_subscribe(&rb, d.sock, -1, -1,
	    WALMMAP_FOLLOW), 0);
	wait_clients(4);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "-s",
	    d.sock, "restart", NULL), 0);
	free(out);
	ck_assert_int_eq(ts_daemon_log_wait(&d, "restart: took over 5 "
	    "connections"), 1);

	/* Still version 1: RESTART (version 2) is refused, not fatal. */
	ts_raw_frame(v1, WAL_MSG_RESTART, 7);
	ts_raw_expect_error(v1, WAL_PERR_VERSION, 0, "agreed on 1", 10000);
	ts_raw_frame(v1, WAL_MSG_PING, 8);
	ts_raw_recv_until(v1, WAL_MSG_OK, buf, sizeof buf, 10000);
	/* HELLO after two restarts. */
	ts_raw_hello(nohello);
	/* The next record reaches both subscribers, nothing before it. */
	ck_assert_int_eq(ts_run_prog("client/walctl", "first\n", 6, &out,
	    "-s", d.sock, "append", NULL), 0);
	free(out);
	ck_assert_int_eq(walmmap_reader_next(ra, &rec, 10000), 1);
	ck_assert_int_eq(rec.seq, 1);
	ck_assert_int_eq(walmmap_reader_next(rb, &rec, 10000), 1);
	ck_assert_int_eq(rec.seq, 1);
	ck_assert_uint_eq(rec.size, 5);
	walmmap_reader_close(ra);
	walmmap_reader_close(rb);
	close(v1);
	close(nohello);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* As another user: RESTART must be refused (PERM), nothing else. */
static int
restart_as_other(void *arg)
{
	struct walmmap *w;
	int rc;

	if ((rc = walmmap_connect(&w, arg, WALMMAP_ACK_WRITTEN, 0)) != 0) {
		fprintf(stderr, "connect: %s\n", walmmap_strerror(rc));
		return (10);
	}
	rc = walmmap_restart(w);
	if (rc != -WALMMAP_EPERM || strstr(walmmap_errmsg(w),
	    "needs the admin right") == NULL) {
		fprintf(stderr, "restart as another user: %d: %s\n", rc,
		    walmmap_errmsg(w));
		walmmap_close(w);
		return (1);
	}
	/* The connection goes on. */
	rc = walmmap_append(w, "x", 1, WALMMAP_ACK_DEFAULT, NULL);
	rc = rc == 0 ? walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1) : rc;
	walmmap_close(w);
	return (rc == 0 ? 0 : 2);
}

/* RESTART needs the admin right (rights.c): root or the daemon's user. */
START_TEST(test_restart_admin_only)
{
	if (geteuid() != 0)
		return;		/* needs another user to be one */
	ck_assert_int_eq(chmod(base, 0755), 0);
	ck_assert_int_eq(ts_daemon_startv(&d, daemon_args), 0);
	ck_assert_int_eq(chmod(d.sock, 0666), 0);
	ck_assert_int_eq(ts_as_user(65534, 65534, restart_as_other, d.sock),
	    0);
	ck_assert_uint_eq(count_in_log("restart: handing"), 0);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * A hand-over while more connections wait in the
 * backlog than one accept pass takes (seen: "took over 65 connections",
 * 64 + adm; 86 left in the backlog): the new daemon, which restores the
 * listening socket, accepts and welcomes the rest.
 */
START_TEST(test_restart_with_backlog)
{
	enum { N = 150 };
	int fds[N], adm, i;

	ck_assert_int_eq(ts_daemon_startv(&d, daemon_args), 0);
	adm = ts_raw_connect(&d);
	ts_raw_hello(adm);
	ts_daemon_pause(&d);
	for (i = 0; i < N; i++)
		fds[i] = ts_raw_connect(&d);
	ts_raw_frame(adm, WAL_MSG_RESTART, 5);
	ts_daemon_signal(&d, SIGCONT);
	ck_assert_int_eq(ts_daemon_log_wait(&d, "restart: took over"), 1);
	for (i = 0; i < N; i++)
		ts_raw_hello(fds[i]);
	for (i = 0; i < N; i++)
		close(fds[i]);
	close(adm);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * A failed exec opens the ring again with the running configuration:
 * prefault_step too (handover_reopen_ring once left it out, so segments
 * created after a failed restart were pre-faulted at once, with
 * readahead). Every segment the reopened ring creates is MADV_RANDOM
 * ("rr" in smaps).
 */
START_TEST(test_failed_exec_keeps_prefault_step)
{
	static char *args[] = { "--segment-size", "64K", "--ring", "4",
	    "-o", "prefault_step=4K", "-o", "use_large_pages=yes",
	    "-o", "shm_size=64K", NULL };
	char bin[PATH_MAX], path[64], *line = NULL, rec[200];
	const char *name;
	struct walmmap *w;
	unsigned long id, before = 0, seen = 0, random = 0;
	size_t cap = 0;
	int64_t seq;
	FILE *f;
	pid_t pid;
	int huge = 0, i;

	snprintf(bin, sizeof bin, "%s/walmmapd-copy", base);
	copy_daemon(bin);
	ck_assert_int_gt((pid = ts_daemon_spawn_fds(&d, bin, NULL, NULL, 0,
	    args)), 0);
	ck_assert_int_eq(ts_daemon_wait_ready(&d), 0);
	/* The ids there are; the reopened ring's own come after them. */
	snprintf(path, sizeof path, "/proc/%d/smaps", (int)pid);
	ck_assert_ptr_nonnull(f = fopen(path, "r"));
	while (getline(&line, &cap, f) > 0) {
		/* MADV_HUGEPAGE took (the kernel has THP): "hg" too. */
		if (strncmp(line, "VmFlags:", 8) == 0 &&
		    strstr(line, " hg") != NULL)
			huge = 1;
		if ((name = strstr(line, "wal_mmap_")) != NULL &&
		    sscanf(name, "wal_mmap_%lu", &id) == 1 && id + 1 > before)
			before = id + 1;
	}
	fclose(f);

	restart_exec_reopens(bin);

	/* Rotate several times: ring 4, 64K segments. */
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_DURABLE,
	    WALMMAP_SHM), 0);
	memset(rec, 'p', sizeof rec);
	for (i = 0; i < 3000; i++)
		ck_assert_int_eq(walmmap_append(w, rec, sizeof rec,
		    WALMMAP_ACK_DEFAULT, &seq), 0);
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_DURABLE, -1), 0);

	ck_assert_ptr_nonnull(f = fopen(path, "r"));
	id = 0;
	name = NULL;
	while (getline(&line, &cap, f) > 0) {
		if (strchr(line, '/') != NULL) {
			name = strstr(line, "wal_mmap_");
			if (name == NULL || sscanf(name, "wal_mmap_%lu",
			    &id) != 1)
				name = NULL;
		} else if (strncmp(line, "VmFlags:", 8) == 0) {
			if (name != NULL && id >= before) {
				seen++;
				if (strstr(line, " rr") != NULL &&
				    (!huge || strstr(line, " hg") != NULL))
					random++;
				else
					TS_CHECK(0, "segment %lu created after "
					    "the failed exec has no "
					    "MADV_RANDOM%s: %s", id, huge ?
					    " or MADV_HUGEPAGE" : "", line);
			}
			name = NULL;
		}
	}
	fclose(f);
	free(line);
	ck_assert_uint_gt(seen, 0);
	ck_assert_uint_eq(random, seen);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * start_seq=1000 on an empty directory, a restart whose exec fails before
 * any record, then appends: the reopened ring (handover_reopen_ring) goes
 * on at 1000, as a new process would. With ckpt_full the first open's
 * checkpoint (the one saying seqs below 1000 were handed out) cannot be
 * written (its rename fails with ENOSPC, a full disk); the ring writes
 * one only after a sealed segment is synced, so the directory the reopen
 * finds holds an empty segment and no checkpoint: only start_seq says
 * where the log begins (before the fix it began at 0, and the next start with the
 * same configuration was refused: start_seq above the records).
 */
static void
failed_exec_start_seq(int ckpt_full)
{
	static char *args[] = { "--segment-size", "64K", "-o", "prefault=no",
	    "-o", "start_seq=1000", "-o", "shm_size=64K", NULL };
	char bin[PATH_MAX], ctlpath[PATH_MAX], ckpt[PATH_MAX + 32], *out;
	struct wf_ctl *ctl = NULL;
	struct walmmap *w;
	struct stat st;
	int64_t seq, seq2;
	int rc;

	if (ckpt_full) {
		snprintf(ctlpath, sizeof ctlpath, "%s/fault.ctl", base);
		ck_assert_ptr_nonnull(ctl = wf_ctl_open(ctlpath));
		/* The first rename is the first open's checkpoint. */
		wf_arm(ctl, WF_RENAME, 1, ENOSPC, 0);
		d.fault_ctl = ctlpath;
	}
	snprintf(bin, sizeof bin, "%s/walmmapd-copy", base);
	copy_daemon(bin);
	ck_assert_int_gt(ts_daemon_spawn_fds(&d, bin, NULL, NULL, 0, args), 0);
	ck_assert_int_eq(ts_daemon_wait_ready(&d), 0);
	snprintf(ckpt, sizeof ckpt, "%s/walmmapd.checkpoint", d.data);
	if (ckpt_full) {
		ck_assert_uint_eq(atomic_load(&ctl->op[WF_RENAME].injected), 1);
		TS_CHECK(stat(ckpt, &st) == -1 && errno == ENOENT,
		    "%s exists: the injected failure missed it", ckpt);
		/* Said, not silent. */
		ck_assert_uint_eq(count_in_log("walmmapd.checkpoint not "
		    "written at start ("), 1);
	} else
		ck_assert_int_eq(stat(ckpt, &st), 0);

	restart_exec_reopens(bin);

	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_DURABLE,
	    WALMMAP_SHM), 0);
	ck_assert_int_eq(walmmap_append(w, "one", 3, WALMMAP_ACK_DEFAULT,
	    &seq), 0);
	ck_assert_int_eq(walmmap_append(w, "two", 3, WALMMAP_ACK_DEFAULT,
	    &seq2), 0);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	d.fault_ctl = NULL;
	wf_ctl_close(ctl);
	TS_CHECK(seq == 1000 && seq2 == 1001, "start_seq=1000, after a "
	    "failed exec the first records got seqs %" PRId64 " and %" PRId64,
	    seq, seq2);

	/* The next start, same configuration, goes on (not refused). */
	ck_assert_int_eq(ts_daemon_startv(&d, args), 0);
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_DURABLE,
	    0), 0);
	ck_assert_int_eq(walmmap_append(w, "three", 5, WALMMAP_ACK_DEFAULT,
	    &seq), 0);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(seq, 1002);

	rc = ts_run_prog("client/walctl", NULL, 0, &out, "verify", d.data,
	    NULL);
	TS_CHECK(rc == 0 && strstr(out, "3 records (seq 1000 .. 1002), "
	    "0 problems") != NULL, "walctl verify: %d: %s", rc, out);
	free(out);
}

/* start_seq holds after a failed exec (checkpoint written). */
START_TEST(test_failed_exec_keeps_start_seq)
{
	failed_exec_start_seq(0);
}
END_TEST

/* start_seq holds after a failed exec, the first checkpoint lost. */
START_TEST(test_failed_exec_keeps_start_seq_no_checkpoint)
{
	failed_exec_start_seq(1);
}
END_TEST

static Suite *
handover_suite(void)
{
	Suite *s = suite_create("handover");
	TCase *tc;

	tc = tcase_create("restarts");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_restarts_under_load);
	tcase_add_test(tc, test_systemd_fdstore);
	tcase_add_test(tc, test_systemd_fdstore_own_socket);
	tcase_add_test(tc, test_failed_exec);
	tcase_add_test(tc, test_bad_state);
	tcase_add_test(tc, test_restart_admin_only);
	tcase_add_test(tc, test_state_kept);
	tcase_add_test(tc, test_restart_with_backlog);
	tcase_add_test(tc, test_table_synced_after_failed_exec);
	suite_add_tcase(s, tc);

	tc = tcase_create("prefault");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_failed_exec_keeps_prefault_step);
	suite_add_tcase(s, tc);

	tc = tcase_create("start_seq");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_failed_exec_keeps_start_seq);
	tcase_add_test(tc, test_failed_exec_keeps_start_seq_no_checkpoint);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(handover_suite()));
}
