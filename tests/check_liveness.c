/*
 * walmmapd tests - liveness against clients that take more than their
 * share or hold on to what they have: floods, fatal errors nobody reads,
 * connections that never say HELLO or go idle, one uid opening many
 * connections, records larger than a frame on a subscription, and
 * subscribers that stop reading while retention runs. Each drives a real
 * walmmapd with raw frames.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "faultinject.h"
#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_proto.h"
#include "walmmap.h"

static char		*base;
static struct ts_daemon	 d;

static void
setup(void)
{
	base = ts_mkdtemp("liveness");
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

/* Start with extra arguments (NULL-terminated); fail the test if it cannot. */
#define START(...) do {							\
	int rc_ = ts_daemon_start(&d, "-o", "prefault=no", __VA_ARGS__);	\
									\
	if (rc_ != 0) {							\
		char *log_ = ts_daemon_log(&d);				\
									\
		ck_abort_msg("walmmapd did not start (%d): %s", rc_, log_);	\
	}								\
} while (0)

/* Wait until pid is stopped (SIGSTOP took effect). */
static void
wait_stopped(pid_t pid)
{
	char path[64], buf[512], *p;
	int fd, i;
	ssize_t n;

	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	for (i = 0; i < 1000; i++) {
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			break;
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n > 0) {
			buf[n] = '\0';
			if ((p = strrchr(buf, ')')) != NULL && p[1] == ' ' &&
			    (p[2] == 'T' || p[2] == 't'))
				return;
		}
		usleep(10000);
	}
	ck_abort_msg("walmmapd did not stop on SIGSTOP");
}

/*
 * Nanoseconds the daemon's main thread (its event loop) spent running or
 * waiting to run: a thread blocked in epoll_wait accrues neither, one that
 * spins accrues both, however loaded the machine is.
 */
static uint64_t
loop_busy_ns(pid_t pid)
{
	char path[96];
	unsigned long long run = 0, wait = 0;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%ld/task/%ld/schedstat", (long)pid,
	    (long)pid);
	ck_assert_msg((f = fopen(path, "re")) != NULL, "%s: %s", path,
	    strerror(errno));
	ck_assert_int_eq(fscanf(f, "%llu %llu", &run, &wait), 2);
	fclose(f);
	return ((uint64_t)(run + wait));
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

/*
 * Read frames until one of the given type arrives (within timeout_ms in
 * all); copy it to buf. Returns its length; fails on EOF or timeout.
 */
static size_t
recv_until(int s, uint16_t type, void *buf, size_t len, int timeout_ms)
{
	static uint8_t frame[WAL_PROTO_MAX_FRAME];
	struct wal_msg hdr;
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000u;
	ssize_t n;
	int left;

	for (;;) {
		left = (int)((end - now_ns()) / 1000000u);
		ck_assert_msg(now_ns() < end, "no %s within %d ms",
		    wal_proto_type_name(type), timeout_ms);
		n = ts_raw_recv(s, frame, sizeof frame, left);
		ck_assert_msg(n != 0, "connection closed before %s",
		    wal_proto_type_name(type));
		ck_assert_msg(n > 0, "no %s within %d ms",
		    wal_proto_type_name(type), timeout_ms);
		ck_assert_int_ge(n, (ssize_t)sizeof hdr);
		memcpy(&hdr, frame, sizeof hdr);
		if (hdr.type == type) {
			ck_assert_uint_le((size_t)n, len);
			memcpy(buf, frame, (size_t)n);
			return ((size_t)n);
		}
		ck_assert_msg(hdr.type != WAL_MSG_ERROR, "ERROR while waiting "
		    "for %s: %.*s", wal_proto_type_name(type),
		    (int)((size_t)n - sizeof(struct wal_msg_error)),
		    (char *)frame + sizeof(struct wal_msg_error));
	}
}

/*
 * Read frames until an ERROR (RECORDS and acks before it are skipped);
 * check its code, fatality and text, and for a fatal one that the
 * connection then ends.
 */
static void
expect_error(int s, unsigned code, int fatal, const char *text,
    int timeout_ms)
{
	static uint8_t frame[WAL_PROTO_MAX_FRAME];
	struct wal_msg_error e;
	char msg[1024];
	size_t n;

	n = recv_until(s, WAL_MSG_ERROR, frame, sizeof frame, timeout_ms);
	memcpy(&e, frame, sizeof e);
	snprintf(msg, sizeof msg, "%.*s", (int)(n - sizeof e),
	    (char *)frame + sizeof e);
	ck_assert_msg(e.code == code, "error code %u, want %u: %s", e.code,
	    code, msg);
	ck_assert_msg((int)e.fatal == fatal, "fatal %u: %s", e.fatal, msg);
	ck_assert_msg(strstr(msg, text) != NULL, "error \"%s\" lacks \"%s\"",
	    msg, text);
	if (fatal)
		ck_assert_int_eq(ts_raw_recv(s, frame, sizeof frame,
		    timeout_ms), 0);
}

/* No frame and no end of connection within ms. */
static void
expect_quiet(int s, int ms)
{
	struct pollfd pfd = { s, POLLIN, 0 };

	ck_assert_int_eq(poll(&pfd, 1, ms), 0);
}

/*
 * Defect 12: a read pass is budgeted in bytes. A client has 64 APPEND_FD
 * frames queued, each making the daemon write a 2 MiB memfd; once the
 * daemon is reading them (its first pread of a memfd), another client
 * sends PING and STATUS: they are answered after a pass of the first
 * client's frames, not after all 64.
 */
START_TEST(test_read_pass_budget)
{
	enum { FLOOD = 64 };
	const uint64_t size = 2u << 20;
	char ctl[PATH_MAX];
	struct wf_ctl *fc;
	struct wal_status st;
	uint8_t buf[256];
	uint64_t preads;
	int flood, other, mfd, i;

	snprintf(ctl, sizeof ctl, "%s/faults", base);
	ck_assert_ptr_nonnull(fc = wf_ctl_open(ctl));
	d.fault_ctl = ctl;		/* to count the daemon's preads */
	START("--segment-size", "4M", "--ring", "2", "-o",
	    "retain_segments=2", NULL);
	flood = ts_raw_connect(&d);
	ts_raw_hello(flood);
	other = ts_raw_connect(&d);
	ts_raw_hello(other);
	mfd = ts_sealed_memfd(size);

	/* Everything is queued before the daemon reads any of it. */
	kill(d.pid, SIGSTOP);
	wait_stopped(d.pid);
	for (i = 0; i < FLOOD; i++)
		ck_assert_int_eq(ts_raw_append_fd(flood, (uint64_t)i, size, mfd,
		    WAL_ACK_NONE, 0), 0);
	preads = atomic_load(&fc->op[WF_PREAD].calls);
	kill(d.pid, SIGCONT);
	while (atomic_load(&fc->op[WF_PREAD].calls) == preads)
		usleep(100);
	ts_raw_frame(other, WAL_MSG_PING, 1);
	ts_raw_frame(other, WAL_MSG_STATUS, 2);

	ck_assert_msg(ts_raw_recv(other, buf, sizeof buf, 2000) ==
	    (ssize_t)sizeof(struct wal_msg), "PING not answered within 2 s "
	    "of a flood of memfd records");
	recv_until(other, WAL_MSG_STATUS_REPLY, &st, sizeof st, 10000);
	ck_assert_msg(st.records < 8, "the other client waited for %" PRIu64
	    " records of 2 MiB", st.records);

	/* The flood is still written in full. */
	ts_raw_frame(flood, WAL_MSG_PING, 99);
	recv_until(flood, WAL_MSG_OK, buf, sizeof buf, 60000);
	ts_raw_frame(other, WAL_MSG_STATUS, 3);
	recv_until(other, WAL_MSG_STATUS_REPLY, &st, sizeof st, 10000);
	ck_assert_uint_eq(st.records, FLOOD);
	close(mfd);
	close(flood);
	close(other);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	wf_ctl_close(fc);
}
END_TEST

/*
 * Defect 12: SIGTERM while a client keeps sending memfd records as fast
 * as it can: the daemon exits within its stop bound (5 s; 15 s here, as a
 * hang detector), and leaves a log that reads cleanly.
 */
START_TEST(test_stop_during_flood)
{
	const uint64_t size = 8u << 20;
	struct walmmap *w;
	struct walmmap_status st;
	pid_t flooder;
	int i, status;

	START("--segment-size", "16M", "--ring", "2", "-o",
	    "retain_segments=2", NULL);
	if ((flooder = fork()) == 0) {
		int s = ts_raw_connect(&d), mfd = ts_sealed_memfd(size);
		time_t end = time(NULL) + 60;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		ts_raw_hello(s);
		/* Until the daemon is gone (EPIPE), at most a minute. */
		while (time(NULL) < end)
			if (ts_raw_append_fd(s, 0, size, mfd, WAL_ACK_NONE, 0)
			    != 0)
				break;
		_exit(0);
	}
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	for (i = 0; i < 600; i++) {
		ck_assert_int_eq(walmmap_status(w, &st), 0);
		if (st.records >= 16)
			break;
		usleep(50000);
	}
	ck_assert_msg(st.records >= 16, "the flood did not get going");
	/* Other clients are still served meanwhile. */
	ck_assert_int_eq(walmmap_append(w, "mine", 4, WALMMAP_ACK_WRITTEN,
	    NULL), 0);
	ck_assert_int_eq(ts_daemon_stop_within(&d, 15), 0);
	walmmap_close(w);
	kill(flooder, SIGKILL);
	ck_assert_int_eq(waitpid(flooder, &status, 0), flooder);
	/* Retention kept the newest; what is there reads cleanly. */
	{
		char *out = NULL;

		ck_assert_msg(ts_run_prog("client/walctl", NULL, 0, &out,
		    "verify", "-q", d.data, NULL) == 0, "%s", out);
		free(out);
	}
}
END_TEST

/*
 * Defect 14: a connection closed after a fatal error while replies are
 * still queued for it (its peer does not read) and more frames wait in
 * its socket is not read any more: the event loop sleeps instead of
 * spinning. Once the peer reads, it gets every reply, the error, then
 * the end of the connection.
 */
START_TEST(test_closing_stops_reading)
{
	enum { PINGS = 20000 };
	static uint8_t buf[WAL_PROTO_MAX_FRAME];
	struct wal_msg_error e;
	struct wal_msg m;
	uint64_t t0, b0, wall, busy;
	int s, i, oks = 0, sndbuf = 1 << 20;
	ssize_t n;

	START("-D", NULL);
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	/* Replies pile up in the daemon: we do not read them. */
	for (i = 0; i < PINGS; i++)
		ts_raw_frame(s, WAL_MSG_PING, (uint64_t)i + 1);
	ck_assert_int_eq(send(s, "bad", 3, 0), 3);
	ck_assert(ts_daemon_log_wait(&d, "(closing)"));
	for (i = 0; i < 10; i++)
		ts_raw_frame(s, WAL_MSG_PING, 1000000 + (uint64_t)i);

	t0 = now_ns();
	b0 = loop_busy_ns(d.pid);
	usleep(1000000);
	busy = loop_busy_ns(d.pid) - b0;
	wall = now_ns() - t0;
	ck_assert_msg(busy < wall / 4, "the event loop ran or waited to run "
	    "%" PRIu64 " ms of %" PRIu64 " ms with a closing connection",
	    busy / 1000000, wall / 1000000);

	/* Every PING before the bad frame answered, then the error, then
	 * the end; nothing after it was handled. */
	for (;;) {
		n = ts_raw_recv(s, buf, sizeof buf, 10000);
		ck_assert_int_ge(n, (ssize_t)sizeof m);
		memcpy(&m, buf, sizeof m);
		if (m.type != WAL_MSG_OK)
			break;
		ck_assert_uint_eq(m.id, (uint64_t)oks + 1);
		oks++;
	}
	ck_assert_int_eq(oks, PINGS);
	ck_assert_int_eq(m.type, WAL_MSG_ERROR);
	memcpy(&e, buf, sizeof e);
	ck_assert_int_eq(e.code, WAL_PERR_PROTO);
	ck_assert_int_eq(e.fatal, 1);
	ck_assert_int_eq(ts_raw_recv(s, buf, sizeof buf, 10000), 0);
	close(s);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * Defect 14: connections that never send HELLO are dropped after
 * hello_timeout, so they cannot hold every slot of max_connections.
 */
START_TEST(test_hello_timeout)
{
	enum { N = 4 };
	struct walmmap *w;
	int s[N], i, rc;

	START("-o", "hello_timeout=1s", "-o", "max_connections=4", "-o",
	    "max_connections_per_uid=4", NULL);
	for (i = 0; i < N; i++)
		s[i] = ts_raw_connect(&d);
	/* Full now. */
	rc = walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0);
	ck_assert_int_eq(rc, -WALMMAP_EBUSY);
	walmmap_close(w);
	for (i = 0; i < N; i++) {
		expect_error(s[i], WAL_PERR_TIMEOUT, 1, "no HELLO", 10000);
		close(s[i]);
	}
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	ck_assert_int_eq(walmmap_append(w, "in", 2, WALMMAP_ACK_WRITTEN,
	    NULL), 0);
	walmmap_close(w);
	ck_assert(ts_daemon_log_wait(&d, "sent no HELLO within 1s"));
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * Defect 14: idle_timeout drops a client that sends nothing and is owed
 * nothing; never a subscriber waiting for records, nor a client waiting
 * for a durable ack (its sync held in flight here, longer than the
 * limit).
 */
START_TEST(test_idle_timeout)
{
	char ctl[PATH_MAX];
	struct wf_ctl *fc;
	uint8_t buf[1024];
	struct wal_msg_records r;
	struct walmmap *w;
	int sub, waiter, idle;
	uint64_t calls;

	snprintf(ctl, sizeof ctl, "%s/faults", base);
	ck_assert_ptr_nonnull(fc = wf_ctl_open(ctl));
	d.fault_ctl = ctl;
	START("-o", "idle_timeout=1s", "-o", "sync_interval=0", NULL);

	waiter = ts_raw_connect(&d);
	ts_raw_hello(waiter);
	calls = atomic_load(&fc->op[WF_MSYNC].calls) +
	    atomic_load(&fc->op[WF_FDATASYNC].calls);
	wf_hold(fc, WF_MSYNC, 1);
	wf_hold(fc, WF_FDATASYNC, 1);
	ts_raw_append(waiter, 7, "wait", 4, WAL_ACK_DURABLE);
	while (atomic_load(&fc->op[WF_MSYNC].calls) +
	    atomic_load(&fc->op[WF_FDATASYNC].calls) == calls)
		usleep(1000);
	/* From the next new record: nothing to send it for now. */
	sub = ts_raw_connect(&d);
	ts_raw_hello(sub);
	ts_raw_subscribe(sub, 1, -1, -1, WAL_SUB_FOLLOW);

	/* Connected after the others, so dropped no earlier than they
	 * would be. */
	idle = ts_raw_connect(&d);
	ts_raw_hello(idle);
	expect_error(idle, WAL_PERR_TIMEOUT, 1, "idle", 10000);
	close(idle);
	sleep(2);			/* two more checks */
	expect_quiet(sub, 0);
	expect_quiet(waiter, 0);

	/* The waiter gets its ack once the sync completes. */
	wf_hold(fc, WF_MSYNC, 0);
	wf_hold(fc, WF_FDATASYNC, 0);
	recv_until(waiter, WAL_MSG_DURABLE, buf, sizeof buf, 10000);
	/* The subscriber gets the new record. */
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	ck_assert_int_eq(walmmap_append(w, "new", 3, WALMMAP_ACK_WRITTEN,
	    NULL), 0);
	walmmap_close(w);
	recv_until(sub, WAL_MSG_RECORDS, buf, sizeof buf, 10000);
	memcpy(&r, buf, sizeof r);
	ck_assert_uint_ge(r.count, 1);
	close(sub);
	close(waiter);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	wf_ctl_close(fc);
}
END_TEST

/*
 * Defect 14: one uid may hold max_connections_per_uid connections (by
 * default a quarter of max_connections, root included); other users can
 * still connect.
 */
START_TEST(test_uid_cap)
{
	int s[3], i, status;
	pid_t pid;

	START("-o", "max_connections=8", NULL);
	for (i = 0; i < 2; i++) {
		s[i] = ts_raw_connect(&d);
		ts_raw_hello(s[i]);
	}
	s[2] = ts_raw_connect(&d);
	expect_error(s[2], WAL_PERR_BUSY, 1, "max_connections_per_uid", 10000);
	close(s[2]);
	ck_assert(ts_daemon_log_wait(&d, "max_connections_per_uid (2)"));

	if (geteuid() != 0) {
		fprintf(stderr, "test_uid_cap: other uids not tried (not "
		    "root)\n");
	} else {
		/* Another user is not affected. */
		ck_assert_int_eq(chmod(base, 0755), 0);
		if ((pid = fork()) == 0) {
			uint8_t buf[256];
			struct wal_msg_hello h;
			struct sockaddr_un sun;
			int c;

			if (setgid(65534) != 0 || setuid(65534) != 0)
				_exit(10);
			c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
			memset(&sun, 0, sizeof sun);
			sun.sun_family = AF_UNIX;
			if (strlen(d.sock) >= sizeof sun.sun_path)
				_exit(14);
			memcpy(sun.sun_path, d.sock, strlen(d.sock));
			if (connect(c, (struct sockaddr *)&sun, sizeof sun)
			    != 0)
				_exit(11);
			memset(&h, 0, sizeof h);
			h.hdr.type = WAL_MSG_HELLO;
			h.hdr.len = sizeof h;
			h.version_min = h.version_max = WAL_PROTO_VERSION;
			if (send(c, &h, sizeof h, 0) != (ssize_t)sizeof h)
				_exit(12);
			if (ts_raw_recv(c, buf, sizeof buf, 10000) !=
			    (ssize_t)sizeof(struct wal_msg_welcome))
				_exit(13);
			_exit(0);
		}
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "another uid could not connect: status %#x", status);
	}
	/* A slot of our uid frees up when one of ours goes. */
	close(s[0]);
	for (i = 0; i < 100; i++) {
		uint8_t buf[256];
		ssize_t n;

		s[0] = ts_raw_connect(&d);
		ts_raw_frame(s[0], WAL_MSG_PING, 1);	/* before HELLO */
		n = ts_raw_recv(s[0], buf, sizeof buf, 10000);
		ck_assert_int_gt(n, (ssize_t)sizeof(struct wal_msg_error));
		if (strstr((char *)buf + sizeof(struct wal_msg_error),
		    "before HELLO") != NULL)
			break;
		close(s[0]);
		usleep(10000);
	}
	ck_assert_int_lt(i, 100);
	close(s[0]);
	close(s[1]);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * Defect 14: when the commit delay runs out, the clients it stopped
 * waiting for are forgotten one by one, not only in the count, so one of
 * them coming back later does not take the count below zero (which made
 * every later sync wait for the delay). Two clients get durability from
 * one sync; one comes back, the delay runs out and a sync starts (held in
 * flight), then the other comes back.
 */
START_TEST(test_commit_delay_forgets)
{
	char ctl[PATH_MAX], *log, *p;
	uint8_t buf[1024];
	struct wf_ctl *fc;
	uint64_t calls;
	unsigned long n;
	int a, b, lines = 0;

	snprintf(ctl, sizeof ctl, "%s/faults", base);
	ck_assert_ptr_nonnull(fc = wf_ctl_open(ctl));
	d.fault_ctl = ctl;
	START("-D", "-o", "commit_delay=1s", "-o", "sync_interval=0", NULL);
	a = ts_raw_connect(&d);
	ts_raw_hello(a);
	b = ts_raw_connect(&d);
	ts_raw_hello(b);
	ts_raw_append(a, 1, "a", 1, WAL_ACK_WRITTEN);
	recv_until(a, WAL_MSG_ACK, buf, sizeof buf, 10000);
	ts_raw_append(b, 1, "b", 1, WAL_ACK_WRITTEN);
	recv_until(b, WAL_MSG_ACK, buf, sizeof buf, 10000);

	/* One sync answers both SYNCs: both are expected back. */
	kill(d.pid, SIGSTOP);
	wait_stopped(d.pid);
	ts_raw_frame(a, WAL_MSG_SYNC, 2);
	ts_raw_frame(b, WAL_MSG_SYNC, 2);
	kill(d.pid, SIGCONT);
	recv_until(a, WAL_MSG_DURABLE, buf, sizeof buf, 10000);
	recv_until(b, WAL_MSG_DURABLE, buf, sizeof buf, 10000);

	/* a is back; b is not: the delay runs out, the sync starts. */
	calls = atomic_load(&fc->op[WF_MSYNC].calls) +
	    atomic_load(&fc->op[WF_FDATASYNC].calls);
	wf_hold(fc, WF_MSYNC, 1);
	wf_hold(fc, WF_FDATASYNC, 1);
	ts_raw_append(a, 3, "a2", 2, WAL_ACK_DURABLE);
	while (atomic_load(&fc->op[WF_MSYNC].calls) +
	    atomic_load(&fc->op[WF_FDATASYNC].calls) == calls)
		usleep(1000);
	/* Now b is back, while that sync is in flight. */
	ts_raw_append(b, 3, "b2", 2, WAL_ACK_DURABLE);
	ts_raw_frame(b, WAL_MSG_PING, 4);
	recv_until(b, WAL_MSG_OK, buf, sizeof buf, 10000);
	wf_hold(fc, WF_MSYNC, 0);
	wf_hold(fc, WF_FDATASYNC, 0);
	recv_until(a, WAL_MSG_DURABLE, buf, sizeof buf, 10000);
	recv_until(b, WAL_MSG_DURABLE, buf, sizeof buf, 10000);

	/* Never more clients expected than there are. */
	log = ts_daemon_log(&d);
	for (p = log; (p = strstr(p, "sync deferred up to")) != NULL; p++) {
		ck_assert_msg(sscanf(p, "sync deferred up to %*ums: %lu", &n)
		    == 1, "%.80s", p);
		ck_assert_msg(n <= 2, "the daemon waited for %lu clients of "
		    "the last sync (there are 2)", n);
		lines++;
	}
	free(log);
	ck_assert_int_ge(lines, 1);
	close(a);
	close(b);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	wf_ctl_close(fc);
}
END_TEST

/*
 * Defect 14: a descriptor the kernel drops because the daemon has none
 * left (MSG_CTRUNC) is reported as exactly that, the frame is refused
 * without closing the connection.
 */
START_TEST(test_descriptor_dropped)
{
	enum { N = 48 };
	uint8_t buf[256];
	int s, fds[N], mfd, i;

	setenv("TS_DAEMON_WRAPPER", "prlimit --nofile=32:32", 1);
	START("-o", "hello_timeout=0", NULL);
	unsetenv("TS_DAEMON_WRAPPER");
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	for (i = 0; i < N; i++)
		fds[i] = ts_raw_connect(&d);
	ck_assert(ts_daemon_log_wait(&d, "out of file descriptors"));
	mfd = ts_sealed_memfd(64);
	ck_assert_int_eq(ts_raw_append_fd(s, 5, 64, mfd, WAL_ACK_WRITTEN, 0),
	    0);
	expect_error(s, WAL_PERR_BADFD, 0, "out of file descriptors", 10000);
	for (i = 0; i < N; i++)
		close(fds[i]);
	/* Still served. */
	ts_raw_frame(s, WAL_MSG_PING, 6);
	recv_until(s, WAL_MSG_OK, buf, sizeof buf, 10000);
	close(mfd);
	close(s);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * Defect 15: a subscription goes on after a record larger than a frame
 * (passed as a memfd): the scenario, through libwalmmap and
 * walctl tail.
 */
START_TEST(test_subscription_big_record)
{
	enum { BIG = 200 * 1000 };
	static const char *small[] = { "p-0-a", NULL, "p-2-b", "p-3-c",
	    "p-4-d" };
	struct walmmap_reader *r;
	struct walmmap_record rec;
	char *input, *out = NULL, *p;
	size_t len = 0;
	int i, rc;

	START("--segment-size", "1M", NULL);
	ck_assert_int_eq(walmmap_subscribe(&r, d.sock, 0, -1, WALMMAP_FOLLOW),
	    0);
	input = malloc(BIG + 64);
	len += (size_t)sprintf(input, "p-0-a\n");
	memset(input + len, 'x', BIG);
	len += BIG;
	len += (size_t)sprintf(input + len, "\np-2-b\np-3-c\np-4-d\n");
	rc = ts_run_prog("client/walctl", input, len, &out, "-s", d.sock,
	    "append", NULL);
	ck_assert_msg(rc == 0, "walctl append: %s", out);
	free(out);
	free(input);

	for (i = 0; i < 5; i++) {
		rc = walmmap_reader_next(r, &rec, 10000);
		ck_assert_msg(rc == 1, "record %d not received (%d: %s)", i,
		    rc, walmmap_reader_errmsg(r));
		ck_assert_int_eq(rec.seq, i);
		if (small[i] == NULL)
			ck_assert_uint_eq(rec.size, BIG);
		else
			ck_assert(rec.size == strlen(small[i]) &&
			    memcmp(rec.data, small[i], rec.size) == 0);
	}
	walmmap_reader_close(r);

	rc = ts_run_prog_within(20, "client/walctl", NULL, 0, &out, "-s",
	    d.sock, "tail", "--from", "0", NULL);
	ck_assert_msg(rc == 0, "walctl tail --from 0: exit %d: %.300s", rc,
	    out);
	for (i = 0, p = out; (p = strchr(p, '\n')) != NULL; p++)
		i++;
	ck_assert_msg(i == 5 && strstr(out, "p-4-d") != NULL, "walctl tail "
	    "printed %d lines", i);
	free(out);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * Defect 16: subscribers that never read cannot switch retention off.
 * Eight of them (seven raw, one libwalmmap reader) stall at the start of
 * the log while many small records go through small segments: the segment
 * count stays bounded, and each gets a LAGGING error after the records it
 * was sent, logged at warning level with its pid and uid.
 */
START_TEST(test_stalled_subscribers)
{
	enum { SUBS = 7, RECORDS = 20000 };
	struct walmmap *w;
	struct walmmap_reader *r;
	struct walmmap_record rr;
	struct walmmap_status st;
	uint8_t rec[1000];
	char want[128], *log;
	int s[SUBS], i, tries, rc;
	int64_t next = 0;

	START("--segment-size", "64K", "--ring", "2", "-o",
	    "retain_segments=2", "-o", "max_subscriber_hold=512K", NULL);
	for (i = 0; i < SUBS; i++) {
		s[i] = ts_raw_connect(&d);
		ts_raw_hello(s[i]);
		ts_raw_subscribe(s[i], 1, 0, -1, WAL_SUB_FOLLOW);
	}
	ck_assert_int_eq(walmmap_subscribe(&r, d.sock, 0, -1, WALMMAP_FOLLOW),
	    0);
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	memset(rec, 'r', sizeof rec);
	for (i = 0; i < RECORDS; i++)
		ck_assert_int_eq(walmmap_append(w, rec, sizeof rec,
		    WALMMAP_ACK_DEFAULT, NULL), 0);
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1), 0);
	/* Retention runs once a second. */
	for (tries = 0; tries < 300; tries++) {
		ck_assert_int_eq(walmmap_status(w, &st), 0);
		if (st.segments <= 6)
			break;
		usleep(100000);
	}
	ck_assert_msg(st.segments <= 6, "%" PRIu64 " segments kept with "
	    "retain_segments=2", st.segments);
	walmmap_close(w);
	for (i = 0; i < SUBS; i++) {
		expect_error(s[i], WAL_PERR_LAGGING, 1, "max_subscriber_hold",
		    10000);
		close(s[i]);
	}
	/* The library reader: the records it was sent, in order, then the
	 * end of the connection with the daemon's reason. */
	while ((rc = walmmap_reader_next(r, &rr, 10000)) == 1)
		ck_assert_int_eq(rr.seq, next++);
	ck_assert_msg(rc == -WALMMAP_ELOST && strstr(walmmap_reader_errmsg(r),
	    "max_subscriber_hold") != NULL, "reader: %d: %s", rc,
	    walmmap_reader_errmsg(r));
	ck_assert_int_gt(next, 0);
	walmmap_reader_close(r);
	snprintf(want, sizeof want, "<4>walmmapd: subscriber pid %ld uid %ld "
	    "dropped", (long)getpid(), (long)geteuid());
	log = ts_daemon_log(&d);
	ck_assert_msg(strstr(log, want) != NULL, "no \"%s\" in the log", want);
	free(log);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

static Suite *
liveness_suite(void)
{
	Suite *s = suite_create("liveness");
	TCase *tc = tcase_create("liveness");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_read_pass_budget);
	tcase_add_test(tc, test_stop_during_flood);
	tcase_add_test(tc, test_closing_stops_reading);
	tcase_add_test(tc, test_hello_timeout);
	tcase_add_test(tc, test_idle_timeout);
	tcase_add_test(tc, test_uid_cap);
	tcase_add_test(tc, test_commit_delay_forgets);
	tcase_add_test(tc, test_descriptor_dropped);
	tcase_add_test(tc, test_subscription_big_record);
	tcase_add_test(tc, test_stalled_subscribers);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	return (ts_run(liveness_suite()));
}
