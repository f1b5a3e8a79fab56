/*
 * walmmapd tests - hostile clients against a real walmmapd: what they pass
 * with their frames, what their requests make the daemon do, and what
 * they leave it holding. Each test does what an attacker would with raw
 * frames, then checks that every other client is still served (a PING
 * answered, walctl status within 2 s, SIGTERM within the stop bound).
 */
#include "config.h"

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <linux/sockios.h>
#include <netinet/in.h>

#include <dirent.h>
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
#include "wal_reader.h"
#include "wal_shm.h"

static char		*base;
static struct ts_daemon	 d;

static void
setup(void)
{
	base = ts_mkdtemp("attack");
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

/* A PING on s is answered within 2 s (a hang detector). */
static void
ping_answers(int s, uint64_t id)
{
	uint8_t buf[256];

	ts_raw_frame(s, WAL_MSG_PING, id);
	ts_raw_recv_until(s, WAL_MSG_OK, buf, sizeof buf, 2000);
}

/* No frame and no end of connection on s within ms. */
static void
expect_quiet_ms(int s, int ms)
{
	struct pollfd pfd = { s, POLLIN, 0 };

	ck_assert_int_eq(poll(&pfd, 1, ms), 0);
}

/*
 * A TCP socket on the loopback whose close blocks for linger seconds: its
 * send buffer is full, its peer (*peer, kept open by the test) never
 * reads, and SO_LINGER is on. Whoever closes its last reference waits.
 */
static int
lingering_socket(int *peer, int *lsn, int linger)
{
	struct sockaddr_in sin;
	struct linger lg = { 1, linger };
	socklen_t len = sizeof sin;
	char junk[65536];
	int t, small = 4096;

	memset(junk, 'x', sizeof junk);
	ck_assert_int_ge(*lsn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0),
	    0);
	ck_assert_int_eq(setsockopt(*lsn, SOL_SOCKET, SO_RCVBUF, &small,
	    sizeof small), 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(*lsn, (struct sockaddr *)&sin, sizeof sin), 0);
	ck_assert_int_eq(listen(*lsn, 1), 0);
	ck_assert_int_eq(getsockname(*lsn, (struct sockaddr *)&sin, &len), 0);
	ck_assert_int_ge(t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0),
	    0);
	ck_assert_int_eq(setsockopt(t, SOL_SOCKET, SO_SNDBUF, &small,
	    sizeof small), 0);
	ck_assert_int_eq(connect(t, (struct sockaddr *)&sin, sizeof sin), 0);
	ck_assert_int_ge(*peer = accept(*lsn, NULL, NULL), 0);
	while (send(t, junk, sizeof junk, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
		;
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(setsockopt(t, SOL_SOCKET, SO_LINGER, &lg, sizeof lg),
	    0);
	return (t);
}

/*
 * A descriptor whose close blocks (a lingering TCP socket), passed every
 * way a client can pass one and then let go by the client, so that the
 * daemon's close is the last: with an APPEND_FD, with a PING, as the last
 * of many with one frame, with a ring on the doorbell (which refuses
 * descriptors where the kernel can, Linux 6.16 and later), and in flight
 * behind a fatal frame on a connection the daemon then closes unread.
 * Each time, another client's PING and walctl status are answered within
 * 2 s, and at the end SIGTERM stops the daemon within its bound. (The
 * daemon used to close them on its event loop: it hung for the linger
 * time, as long as the attacker liked.)
 */
START_TEST(test_passed_descriptor_blocks_close)
{
	enum { LINGER = 60, MANY = 12 };
	struct linger nolinger = { 0, 0 };
	struct wal_msg_append_fd af;
	struct wal_msg ping;
	struct ts_ring ring;
	uint64_t one = 1;
	uint8_t bad[17];
	int v, s, t, peer[5], lsn[5], fds[MANY], i, way;

	START("-o", "hello_timeout=0", NULL);
	v = ts_raw_connect(&d);
	ts_raw_hello(v);
	memset(&ping, 0, sizeof ping);
	ping.type = WAL_MSG_PING;
	ping.len = sizeof ping;
	for (way = 0; way < 5; way++) {
		t = lingering_socket(&peer[way], &lsn[way], LINGER);
		if (way == 3) {
			ts_ring_open(&d, &ring, 0);
			s = ring.sock;
		} else {
			s = ts_raw_connect(&d);
			ts_raw_hello(s);
		}
		/* Sent and let go before the daemon reads any of it. */
		ts_daemon_pause(&d);
		switch (way) {
		case 0:		/* as the record of an APPEND_FD */
			memset(&af, 0, sizeof af);
			af.hdr.type = WAL_MSG_APPEND_FD;
			af.hdr.len = sizeof af;
			af.hdr.id = 1;
			af.size = 10;
			af.ack = WAL_ACK_WRITTEN;
			ck_assert_int_eq(ts_raw_send_fds(s, &af, sizeof af, &t,
			    1), 0);
			break;
		case 1:		/* with a frame that takes none */
			ck_assert_int_eq(ts_raw_send_fds(s, &ping, sizeof ping,
			    &t, 1), 0);
			break;
		case 2:		/* the last of more than a frame may carry */
			for (i = 0; i < MANY - 1; i++)
				ck_assert_int_ge(fds[i] = dup(0), 0);
			fds[MANY - 1] = t;
			ck_assert_int_eq(ts_raw_send_fds(s, &ping, sizeof ping,
			    fds, MANY), 0);
			for (i = 0; i < MANY - 1; i++)
				close(fds[i]);
			break;
		case 3:		/* with a ring on the doorbell */
			if (ts_raw_send_fds(ring.efd_in, &one, sizeof one, &t,
			    1) == 0)
				break;
			/* Refused (SO_PASSRIGHTS, Linux 6.16): ours to close. */
			ck_assert_int_eq(errno, EPERM);
			ck_assert_int_eq(setsockopt(t, SOL_SOCKET, SO_LINGER,
			    &nolinger, sizeof nolinger), 0);
			break;
		case 4:		/* in flight behind a fatal frame */
			memset(bad, 0, sizeof bad);
			memcpy(bad, &ping, sizeof ping);
			ck_assert_int_eq(send(s, bad, sizeof bad, 0),
			    (ssize_t)sizeof bad);
			ck_assert_int_eq(ts_raw_send_fds(s, &ping, sizeof ping,
			    &t, 1), 0);
			break;
		}
		close(t);	/* the daemon's copy is the last one now */
		ts_daemon_signal(&d, SIGCONT);
		if (way == 0)
			ts_raw_expect_error(s, WAL_PERR_BADFD, 0, "sealed",
			    10000);
		if (way == 4)
			ts_raw_expect_error(s, WAL_PERR_PROTO, 1, "17 arrived",
			    10000);
		if (way == 3) {
			munmap(ring.hdr, ring.maplen);
			close(ring.efd_in);
			close(ring.efd_out);
		}
		close(s);
		ping_answers(v, (uint64_t)way + 10);
		ts_status_within(&d, 2);
	}
	ping_answers(v, 99);
	ck_assert_int_eq(ts_daemon_stop_within(&d, 5), 0);
	close(v);
	for (way = 0; way < 5; way++) {
		close(peer[way]);
		close(lsn[way]);
	}
}
END_TEST

/*
 * In a process the test forked: connect and HELLO without the test
 * framework's assertions (a failure there would be reported as the
 * test's); exits 10 on failure.
 */
static int
child_connect(void)
{
	struct sockaddr_un sun;
	struct wal_msg_hello h;
	uint8_t buf[256];
	int s;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(d.sock) >= sizeof sun.sun_path)
		_exit(10);
	memcpy(sun.sun_path, d.sock, strlen(d.sock) + 1);
	if ((s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(s, (struct sockaddr *)&sun, sizeof sun) == -1) {
		fprintf(stderr, "flooder: cannot connect to %s: %s\n", d.sock,
		    strerror(errno));
		_exit(10);
	}
	memset(&h, 0, sizeof h);
	h.hdr.type = WAL_MSG_HELLO;
	h.hdr.len = sizeof h;
	h.version_min = h.version_max = WAL_PROTO_VERSION;
	h.ack = WAL_ACK_WRITTEN;
	if (send(s, &h, sizeof h, 0) != sizeof h || recv(s, buf, sizeof buf,
	    0) != sizeof(struct wal_msg_welcome))
		_exit(10);
	return (s);
}

/*
 * Fork n flooders, each on its own connection sending the frame of type
 * (header only) as fast as the daemon answers, keeping up to 32
 * outstanding. They die with the test (PR_SET_PDEATHSIG); stop_flooders()
 * ends them.
 */
static void
start_flooders(pid_t *pids, int n, uint16_t type)
{
	uint8_t buf[WAL_PROTO_MAX_FRAME];
	struct wal_msg m;
	int i, s, out;

	for (i = 0; i < n; i++) {
		if ((pids[i] = fork()) != 0) {
			ck_assert_int_gt(pids[i], 0);
			continue;
		}
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		s = child_connect();
		memset(&m, 0, sizeof m);
		m.type = type;
		m.len = sizeof m;
		for (out = 0;;) {
			while (out < 32 && send(s, &m, sizeof m,
			    MSG_DONTWAIT | MSG_NOSIGNAL) == sizeof m)
				out++;
			if (recv(s, buf, sizeof buf, 0) <= 0)
				_exit(0);
			out--;
		}
	}
}

static void
stop_flooders(pid_t *pids, int n)
{
	int i, status;

	for (i = 0; i < n; i++) {
		kill(pids[i], SIGKILL);
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
	}
}

/*
 * Append records until the log has n segment files (64 KiB segments: one
 * 60,000-byte record each).
 */
static void
grow_segments(unsigned n)
{
	static uint8_t rec[60000];
	uint8_t buf[256];
	unsigned i;
	int s;

	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	for (i = 0; i < n; i++) {
		ts_raw_append(s, i, rec, sizeof rec, WAL_ACK_WRITTEN);
		ts_raw_recv_until(s, WAL_MSG_ACK, buf, sizeof buf, 10000);
	}
	close(s);
}

/*
 * Many clients sending STATUS without pause on a log of 3,000 segments:
 * each STATUS used to scan the directory (a stat per segment), 64 of them
 * per read pass, so the others waited seconds for a PING and walctl
 * status went unanswered. Now one scan serves them until the directory
 * changes: other clients are answered within 2 s.
 */
START_TEST(test_status_flood)
{
	enum { SEGS = 3000, FLOODERS = 8 };
	struct wal_status st;
	pid_t pids[FLOODERS];
	int v, i;

	START("--segment-size", "64K", NULL);
	grow_segments(SEGS);
	start_flooders(pids, FLOODERS, WAL_MSG_STATUS);
	v = ts_raw_connect(&d);
	ts_raw_hello(v);
	usleep(500000);		/* they are under way */
	for (i = 0; i < 5; i++) {
		ping_answers(v, (uint64_t)i);
		ts_status_within(&d, 2);
	}
	/* What STATUS says is still right. */
	ts_raw_frame(v, WAL_MSG_STATUS, 9);
	ts_raw_recv_until(v, WAL_MSG_STATUS_REPLY, &st, sizeof st, 10000);
	ck_assert_uint_ge(st.segments, SEGS);
	ck_assert_int_eq(st.first_seq, 0);
	stop_flooders(pids, FLOODERS);
	close(v);
	ck_assert_int_eq(ts_daemon_stop_within(&d, 5), 0);
}
END_TEST

/* Segment files in the data directory. */
static unsigned
count_segments(void)
{
	struct dirent *de;
	unsigned n = 0;
	DIR *dir;

	ck_assert_ptr_nonnull(dir = opendir(d.data));
	while ((de = readdir(dir)) != NULL)
		if (strncmp(de->d_name, "wal_mmap_", 9) == 0 &&
		    strstr(de->d_name, ".wal") != NULL &&
		    strstr(de->d_name, ".discarded") == NULL)
			n++;
	closedir(dir);
	return (n);
}

/*
 * Clients that send one record and a ROTATE, again and again, for three
 * seconds: each rotation abandons the rest of a segment (preallocated
 * disk) and may create the next one on the event loop. They used to get a
 * segment per request (thousands here); now requests rotate at most once
 * a second, a ROTATE that comes sooner waits for that rotation (and its
 * connection's next frames behind it, so replies keep their order), and
 * the directory holds a handful of segments. Other clients are served
 * meanwhile, and a ROTATE waiting at SIGTERM is answered.
 */
START_TEST(test_rotate_flood)
{
	enum { FLOODERS = 4, SECONDS = 3 };
	uint8_t buf[256], rec[sizeof(struct wal_msg_append) + 5];
	struct wal_msg_append a;
	uint32_t one = 1;
	struct wal_msg rot;
	pid_t pids[FLOODERS];
	int v, i, s, status, n;
	unsigned segs;
	time_t end;

	START("--segment-size", "64K", NULL);
	v = ts_raw_connect(&d);
	ts_raw_hello(v);
	for (i = 0; i < FLOODERS; i++) {
		if ((pids[i] = fork()) != 0) {
			ck_assert_int_gt(pids[i], 0);
			continue;
		}
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		s = child_connect();
		memset(&rot, 0, sizeof rot);
		rot.type = WAL_MSG_ROTATE;
		rot.len = sizeof rot;
		end = time(NULL) + SECONDS;
		memset(&a, 0, sizeof a);
		a.hdr.type = WAL_MSG_APPEND;
		a.hdr.len = sizeof rec;
		a.count = 1;
		a.ack = WAL_ACK_NONE;
		memcpy(rec, &a, sizeof a);
		memcpy(rec + sizeof a, &one, 4);
		rec[sizeof a + 4] = 'r';
		for (n = 0; time(NULL) < end; n++) {
			if (send(s, rec, sizeof rec, 0) != sizeof rec)
				_exit(2);
			rot.id = (uint64_t)n;
			if (send(s, &rot, sizeof rot, 0) != sizeof rot)
				_exit(2);
			/* Its answer, and none of the next request's before. */
			if (ts_raw_recv(s, buf, sizeof buf, 20000) !=
			    (ssize_t)sizeof rot)
				_exit(3);
			memcpy(&rot, buf, sizeof rot);
			if (rot.type != WAL_MSG_OK || rot.id != (uint64_t)n)
				_exit(4);
			rot.type = WAL_MSG_ROTATE;
		}
		_exit(0);
	}
	for (i = 0; i < 3; i++) {
		ping_answers(v, (uint64_t)i);
		ts_status_within(&d, 2);
	}
	for (i = 0; i < FLOODERS; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "flooder %d: status %#x", i, status);
	}
	segs = count_segments();
	ck_assert_msg(segs < 20, "%u segment files after %d s of ROTATE "
	    "requests", segs, SECONDS);

	/* A ROTATE waiting for its turn at SIGTERM is answered. */
	ts_raw_append(v, 100, "r", 1, WAL_ACK_NONE);
	ts_raw_frame(v, WAL_MSG_ROTATE, 101);
	ts_raw_recv_until(v, WAL_MSG_OK, buf, sizeof buf, 10000);
	ts_raw_append(v, 102, "r", 1, WAL_ACK_NONE);
	ts_raw_frame(v, WAL_MSG_ROTATE, 103);
	ts_raw_frame(v, WAL_MSG_PING, 104);
	expect_quiet_ms(v, 200);	/* waiting, the PING behind it */
	ts_daemon_signal(&d, SIGTERM);
	ck_assert_int_eq(ts_raw_recv_until(v, WAL_MSG_OK, buf, sizeof buf,
	    10000), sizeof rot);
	memcpy(&rot, buf, sizeof rot);
	ck_assert_int_eq(rot.id, 103);
	ck_assert_int_eq(ts_daemon_wait_exit(&d, 5000), 0);
	close(v);
}
END_TEST

/*
 * Send header-only frames of type on s until the daemon stops reading
 * them (the socket stays full for 300 ms); how many were sent.
 */
static uint64_t
send_until_paused(int s, uint16_t type)
{
	struct pollfd pfd = { s, POLLOUT, 0 };
	struct wal_msg m;
	uint64_t n = 0;

	memset(&m, 0, sizeof m);
	m.type = type;
	m.len = sizeof m;
	for (;;) {
		if (send(s, &m, sizeof m, MSG_DONTWAIT | MSG_NOSIGNAL) ==
		    sizeof m) {
			n++;
			continue;
		}
		ck_assert_int_eq(errno, EAGAIN);
		if (poll(&pfd, 1, 300) == 0)
			return (n);
	}
}

/*
 * Clients that send STATUS and never read the replies: each was read
 * until its replies reached max_inflight (4 MiB, 8,000 replies), so 48 of
 * them made the daemon hold 192 MiB (400,000 replies read), and the
 * queues kept their memory after the clients read. Now all queues
 * together stop at max_inflight_total (16 MiB here): four clients fill
 * theirs, the others are read only while their replies can be sent.
 * (Counted in requests the daemon took: what a sanitizer adds to its
 * memory would blur a measure of that.) A client whose replies are sent
 * is still read, and the flooders get every reply once they read.
 */
START_TEST(test_reply_memory)
{
	enum { CLIENTS = 48 };
	uint8_t buf[WAL_PROTO_MAX_FRAME];
	uint64_t taken = 0;
	int v, s[CLIENTS], i;
	ssize_t n;

	START("-o", "max_inflight_total=16M", NULL);
	v = ts_raw_connect(&d);
	ts_raw_hello(v);
	for (i = 0; i < CLIENTS; i++) {
		s[i] = ts_raw_connect(&d);
		ts_raw_hello(s[i]);
	}
	ping_answers(v, 1);
	for (i = 0; i < CLIENTS; i++)
		taken += send_until_paused(s[i], WAL_MSG_STATUS);
	ck_assert_msg(taken < 200000, "%d clients that do not read got %"
	    PRIu64 " STATUS requests read", CLIENTS, taken);
	/* Others are served meanwhile. */
	ping_answers(v, 2);
	ts_status_within(&d, 2);
	/* Once they read, they get every reply, and are read again. */
	for (i = 0; i < CLIENTS; i++) {
		while ((n = ts_raw_recv(s[i], buf, sizeof buf, 200)) > 0)
			ck_assert_int_eq(((struct wal_msg *)(void *)buf)->type,
			    WAL_MSG_STATUS_REPLY);
		ck_assert_int_eq(n, -1);
		ping_answers(s[i], 3);
		close(s[i]);
	}
	close(v);
	ck_assert_int_eq(ts_daemon_stop_within(&d, 5), 0);
}
END_TEST

/* The daemon's resident memory in KiB (VmRSS), from /proc. */
static long
daemon_rss_kib(void)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%ld/status", (long)d.pid);
	ck_assert_ptr_nonnull(f = fopen(path, "r"));
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	ck_assert_int_ge(kib, 0);
	return (kib);
}

/*
 * Found by fuzz_conn: a SUBSCRIBE after the connection's earlier
 * subscription ended made a new retry timer and lost the old one, so a
 * client that subscribes over and over (walctl-style readers of a range,
 * one connection) grew the daemon by 128 bytes each time, without bound:
 * 2.5 MiB over the 18000 subscriptions measured here. Now one timer
 * serves every subscription of a connection.
 */
START_TEST(test_resubscribe_memory)
{
	enum { WARM = 2000, ROUNDS = 20000 };
	uint8_t buf[4096];
	long before = 0, after;
	const char *asan = getenv("ASAN_OPTIONS");
	char opts[512];
	int s, i;

	/*
	 * In an ASan build freed memory waits in a quarantine (256 MiB by
	 * default), which the RSS would count as growth: no quarantine for
	 * this walmmapd. Other builds ignore the variable.
	 */
	snprintf(opts, sizeof opts, "%s%squarantine_size_mb=0",
	    asan != NULL ? asan : "", asan != NULL && *asan != '\0' ? ":" :
	    "");
	ck_assert_int_eq(setenv("ASAN_OPTIONS", opts, 1), 0);
	START(NULL);
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	ts_raw_append(s, 1, "x", 1, WAL_ACK_WRITTEN);
	ts_raw_recv_until(s, WAL_MSG_ACK, buf, sizeof buf, 2000);
	for (i = 0; i < ROUNDS; i++) {
		if (i == WARM)
			before = daemon_rss_kib();
		ts_raw_subscribe(s, 2 + (uint64_t)i, 0, 0, 0);
		ts_raw_recv_until(s, WAL_MSG_SUB_END, buf, sizeof buf, 5000);
	}
	after = daemon_rss_kib();
	ck_assert_msg(after - before < 1024, "%d SUBSCRIBEs on one "
	    "connection grew walmmapd from %ld to %ld KiB", ROUNDS - WARM,
	    before, after);
	ping_answers(s, 1);
	close(s);
	ck_assert_int_eq(ts_daemon_stop_within(&d, 5), 0);
}
END_TEST

/*
 * A client that sends durable appends without reading while a sync takes
 * long (held here): the acks of durable appends wait for the sync that
 * covers them, outside the reply queue, so the daemon never stopped
 * reading and kept 24 bytes per frame for as long as the sync lasted (all
 * 1.5 million frames here: 36 MiB). Now held acks count as queued
 * replies: the client is paused at max_inflight. Once the sync ends every
 * record is acknowledged, once, and durable.
 */
START_TEST(test_held_acks_bounded)
{
	enum { FRAMES = 1500000 };
	static uint8_t buf[WAL_PROTO_MAX_FRAME];
	struct pollfd pfd;
	struct wal_msg_append a;
	struct wal_msg_ack ack;
	struct wal_ack_entry e;
	struct wal_msg_durable dur;
	struct wal_msg m;
	char ctl[PATH_MAX];
	struct wf_ctl *fc;
	uint8_t frame[sizeof a + 4];
	uint64_t calls, sent = 0, acked = 0;
	int64_t durable = -1, next = 0;
	uint32_t zero = 0, k;
	int s;
	ssize_t n;

	snprintf(ctl, sizeof ctl, "%s/faults", base);
	ck_assert_ptr_nonnull(fc = wf_ctl_open(ctl));
	d.fault_ctl = ctl;
	START("-o", "sync_interval=0", "-o", "commit_delay=0", NULL);
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	memset(&a, 0, sizeof a);
	a.hdr.type = WAL_MSG_APPEND;
	a.hdr.len = sizeof frame;
	a.count = 1;
	a.ack = WAL_ACK_DURABLE;
	memcpy(frame, &a, sizeof a);
	memcpy(frame + sizeof a, &zero, 4);

	/* A sync in flight that does not end. */
	calls = atomic_load(&fc->op[WF_MSYNC].calls) +
	    atomic_load(&fc->op[WF_FDATASYNC].calls);
	wf_hold(fc, WF_MSYNC, 1);
	wf_hold(fc, WF_FDATASYNC, 1);
	ck_assert_int_eq(send(s, frame, sizeof frame, 0), sizeof frame);
	sent++;
	while (atomic_load(&fc->op[WF_MSYNC].calls) +
	    atomic_load(&fc->op[WF_FDATASYNC].calls) == calls)
		usleep(1000);
	pfd.fd = s;
	pfd.events = POLLOUT;
	while (sent < FRAMES) {
		if (send(s, frame, sizeof frame, MSG_DONTWAIT) ==
		    sizeof frame) {
			sent++;
			continue;
		}
		ck_assert_int_eq(errno, EAGAIN);
		if (poll(&pfd, 1, 300) == 0)
			break;		/* paused */
	}
	/* 4 MiB of held acks is 174,763 frames; the sockets hold a few more. */
	ck_assert_msg(sent < FRAMES / 3, "%" PRIu64 " durable appends read "
	    "during one sync", sent);
	ts_status_within(&d, 2);

	/* The sync ends: every record acknowledged once, then durable. */
	wf_hold(fc, WF_MSYNC, 0);
	wf_hold(fc, WF_FDATASYNC, 0);
	while (acked < sent || durable < next - 1) {
		n = ts_raw_recv(s, buf, sizeof buf, 20000);
		ck_assert_msg(n >= (ssize_t)sizeof m, "%" PRIu64 " of %" PRIu64
		    " acknowledged, durable %" PRId64, acked, sent, durable);
		memcpy(&m, buf, sizeof m);
		if (m.type == WAL_MSG_DURABLE) {
			memcpy(&dur, buf, sizeof dur);
			durable = dur.durable_seq;
			continue;
		}
		ck_assert_int_eq(m.type, WAL_MSG_ACK);
		memcpy(&ack, buf, sizeof ack);
		for (k = 0; k < ack.count; k++) {
			memcpy(&e, buf + sizeof ack + k * sizeof e, sizeof e);
			ck_assert_int_eq(e.first_seq, next);
			next += e.count;
			acked += e.count;
		}
	}
	ck_assert_uint_eq(acked, sent);
	close(s);
	ck_assert_int_eq(ts_daemon_stop_within(&d, 5), 0);
	wf_ctl_close(fc);
}
END_TEST

/*
 * Many connections with a memfd record larger than a read pass's budget
 * each: a pass ends after its frame, but the frame was written in the
 * pass, so one loop pass wrote one such record per connection, and
 * another client waited for all of them (16 here; with 64 MiB records and
 * a few dozen connections, seconds). Now such records are written one per
 * loop pass, in the order they came: the client behind them is answered
 * after at most a few. All are then written and acknowledged, each
 * connection's in order.
 */
START_TEST(test_large_records_take_turns)
{
	enum { CONNS = 16, SIZE = 2 << 20 };
	uint8_t buf[1024];
	struct wal_status st;
	struct wal_msg_ack ack;
	struct wal_ack_entry e;
	int v, s[CONNS], mfd, i;

	START("--segment-size", "8M", NULL);
	v = ts_raw_connect(&d);
	ts_raw_hello(v);
	for (i = 0; i < CONNS; i++) {
		s[i] = ts_raw_connect(&d);
		ts_raw_hello(s[i]);
	}
	mfd = ts_sealed_memfd(SIZE);
	/* All queued before the daemon reads any; the PING last. */
	ts_daemon_pause(&d);
	for (i = 0; i < CONNS; i++)
		ck_assert_int_eq(ts_raw_append_fd(s[i], (uint64_t)i + 1, SIZE,
		    mfd, WAL_ACK_WRITTEN, 0), 0);
	ts_raw_frame(v, WAL_MSG_PING, 1);
	ts_daemon_signal(&d, SIGCONT);
	ts_raw_recv_until(v, WAL_MSG_OK, buf, sizeof buf, 10000);
	ts_raw_frame(v, WAL_MSG_STATUS, 2);
	ts_raw_recv_until(v, WAL_MSG_STATUS_REPLY, &st, sizeof st, 10000);
	ck_assert_msg(st.records <= CONNS / 4, "%" PRIu64 " records of %d MiB "
	    "were written before another client's PING was answered",
	    st.records, SIZE >> 20);
	for (i = 0; i < CONNS; i++) {
		ts_raw_recv_until(s[i], WAL_MSG_ACK, buf, sizeof buf, 10000);
		memcpy(&ack, buf, sizeof ack);
		ck_assert_int_eq(ack.count, 1);
		memcpy(&e, buf + sizeof ack, sizeof e);
		ck_assert_int_eq(e.id, (uint64_t)i + 1);
		ck_assert_int_eq(e.count, 1);
		close(s[i]);
	}
	close(mfd);
	close(v);
	ck_assert_int_eq(ts_daemon_stop_within(&d, 5), 0);
}
END_TEST

/*
 * A subscriber that never reads, on a log of records too large for a
 * frame: each such record goes out in a memfd the daemon fills (shmem,
 * its memory), and the daemon sent one after another, as many as the
 * socket took: the subscriber pinned every large record of the log (40 x
 * 2 MiB here; 320 MiB with 8 MiB records). Now at most one is unread per
 * subscriber; once it reads, the rest follows, every record in order.
 */
START_TEST(test_subscriber_memfds_bounded)
{
	enum { RECS = 40, SIZE = 2 << 20 };
	static uint8_t buf[WAL_PROTO_MAX_FRAME];
	struct wal_msg m;
	struct wal_rec_out ro;
	int w, s, mfd, i, queued;
	int64_t next = 0;

	START("--segment-size", "16M", NULL);
	w = ts_raw_connect(&d);
	ts_raw_hello(w);
	mfd = ts_sealed_memfd(SIZE);
	for (i = 0; i < RECS; i++) {
		ck_assert_int_eq(ts_raw_append_fd(w, (uint64_t)i, SIZE, mfd,
		    WAL_ACK_WRITTEN, 0), 0);
		ts_raw_recv_until(w, WAL_MSG_ACK, buf, sizeof buf, 10000);
	}
	close(mfd);
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	ts_raw_subscribe(s, 1, 0, -1, 0);
	/* What the daemon sends while the subscriber does not read. */
	ping_answers(w, 1);
	usleep(500000);
	ping_answers(w, 2);
	ck_assert_int_eq(ioctl(s, SIOCINQ, &queued), 0);
	ck_assert_msg(queued <= 2 * (int)(sizeof m + sizeof ro), "%d bytes "
	    "of RECORD_FD frames (%zu each) sent to a subscriber that does "
	    "not read", queued, sizeof m + sizeof ro);
	/* It reads: every record, in order, then the end. */
	for (;;) {
		ck_assert_int_ge(ts_raw_recv(s, buf, sizeof buf, 10000),
		    (ssize_t)sizeof m);
		memcpy(&m, buf, sizeof m);
		if (m.type == WAL_MSG_SUB_END)
			break;
		ck_assert_int_eq(m.type, WAL_MSG_RECORD_FD);
		memcpy(&ro, buf + sizeof m, sizeof ro);
		ck_assert_int_eq(ro.seq, next);
		ck_assert_int_eq(ro.size, SIZE);
		next++;
	}
	ck_assert_int_eq(next, RECS);
	close(s);
	close(w);
	ck_assert_int_eq(ts_daemon_stop_within(&d, 5), 0);
}
END_TEST

/* Lines of the daemon's log that contain text. */
static unsigned
log_lines(const char *text)
{
	char *log = ts_daemon_log(&d), *p;
	unsigned n = 0;

	for (p = log; (p = strstr(p, text)) != NULL; p++)
		n++;
	free(log);
	return (n);
}

/*
 * Clients that each break their ring (a tail outside it) at once: each
 * made a warning, so clients could fill the log's disk, or journald's
 * rate limit and have the daemon's own messages dropped. Now at most 20
 * lines about clients a second are logged, and how many were not is said.
 */
START_TEST(test_client_log_flood)
{
	enum { RINGS = 150 };
	struct ts_ring r[RINGS];
	unsigned n;
	int i;

	START("-o", "shm_size=64K", "-o", "max_connections_per_uid=1000",
	    NULL);
	for (i = 0; i < RINGS; i++)
		ts_ring_open(&d, &r[i], 0);
	ts_daemon_pause(&d);
	for (i = 0; i < RINGS; i++)
		ts_ring_publish(&r[i], r[i].size + 16);	/* past the ring */
	ts_daemon_signal(&d, SIGCONT);
	ck_assert(ts_daemon_log_wait(&d, "about clients not logged"));
	for (i = 0; i < RINGS; i++)
		ts_ring_close(&r[i]);
	n = log_lines("shared-memory ring corrupt");
	ck_assert_msg(n <= 40, "%u warnings for %d broken rings", n, RINGS);
	ts_status_within(&d, 2);
	ck_assert_int_eq(ts_daemon_stop_within(&d, 5), 0);
}
END_TEST

/*
 * A descriptor whose close blocks (a lingering socket), then more than
 * the daemon's descriptor limit of cheap ones, then another lingering
 * socket, all queued at once. The closer thread was busy with the first
 * for a second while the loop took the others until it ran out of
 * descriptors; then the kernel dropped the rest of a message inside
 * recvmsg, on the loop's thread, and its last reference to the second
 * lingering socket blocked the loop after all. Now the loop receives
 * nothing while the descriptors waiting to be closed are near a quarter
 * of the limit, and a slow close is interrupted after a tenth of a
 * second: other clients are answered within 2 s, and every frame of the
 * attacker too.
 */
START_TEST(test_passed_descriptor_flood)
{
	enum { LINGER = 60, MSGS = 4, PER = 253 };
	struct wal_msg ping;
	uint8_t buf[256];
	int v, s, l1, l2, peer[2], lsn[2], dummy, fds[PER], i, j;

	setenv("TS_DAEMON_WRAPPER", "prlimit --nofile=1024:1024", 1);
	START("-o", "hello_timeout=0", NULL);
	unsetenv("TS_DAEMON_WRAPPER");
	v = ts_raw_connect(&d);
	ts_raw_hello(v);
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	l1 = lingering_socket(&peer[0], &lsn[0], LINGER);
	l2 = lingering_socket(&peer[1], &lsn[1], LINGER);
	ck_assert_int_ge(dummy = open("/dev/null", O_RDONLY | O_CLOEXEC), 0);
	memset(&ping, 0, sizeof ping);
	ping.type = WAL_MSG_PING;
	ping.len = sizeof ping;

	ts_daemon_pause(&d);
	ping.id = 1;
	ck_assert_int_eq(ts_raw_send_fds(s, &ping, sizeof ping, &l1, 1), 0);
	for (i = 0; i < MSGS; i++) {
		for (j = 0; j < PER; j++)
			fds[j] = dummy;
		if (i == MSGS - 1)
			fds[PER - 1] = l2;	/* the last of the last */
		ping.id = (uint64_t)i + 2;
		ck_assert_msg(ts_raw_send_fds(s, &ping, sizeof ping, fds, PER)
		    == 0, "cannot pass %d descriptors: %s", PER,
		    strerror(errno));
	}
	close(l1);
	close(l2);
	ts_daemon_signal(&d, SIGCONT);

	ping_answers(v, 10);
	ts_status_within(&d, 2);
	for (i = 0; i < MSGS + 1; i++) {
		ts_raw_recv_until(s, WAL_MSG_OK, buf, sizeof buf, 10000);
		ck_assert_int_eq(((struct wal_msg *)(void *)buf)->id,
		    (uint64_t)i + 1);
	}
	ping_answers(v, 11);
	ck_assert_int_eq(ts_daemon_stop_within(&d, 5), 0);
	close(s);
	close(v);
	close(dummy);
	for (i = 0; i < 2; i++) {
		close(peer[i]);
		close(lsn[i]);
	}
}
END_TEST

/* Wait until the ring counts n records written. */
static void
ring_written(struct ts_ring *r, uint64_t n)
{
	int i;

	for (i = 0; i < 3000 && atomic_load(&r->hdr->written) < n; i++)
		usleep(10000);
	ck_assert_uint_eq(atomic_load(&r->hdr->written), n);
}

/*
 * A producer with a ring: A through the ring, ROTATE, B through the ring,
 * another ROTATE (it waits for its turn: the last was less than a second
 * ago), then C through the ring. C was sent after the second ROTATE, so it
 * starts the new segment; the drainer used to write it at once, while the
 * ROTATE waited, into B's segment.
 */
START_TEST(test_parked_rotate_keeps_ring_order)
{
	static const char *const want[] = { "A", "B", "C" };
	struct wal_reader *rd;
	struct wal_record rec;
	struct wal_error err;
	struct ts_ring r;
	uint8_t buf[256];
	uint64_t seg[3];
	int i;

	START("-D", "--segment-size", "1M", NULL);
	ts_ring_open(&d, &r, 0);
	ts_ring_put(&r, "A", 1, 1, 0);
	ts_ring_publish(&r, r.tail);
	ring_written(&r, 1);
	ts_raw_frame(r.sock, WAL_MSG_ROTATE, 1);
	ts_raw_recv_until(r.sock, WAL_MSG_OK, buf, sizeof buf, 10000);
	ts_ring_put(&r, "B", 1, 1, 0);
	ts_ring_publish(&r, r.tail);
	ring_written(&r, 2);
	ts_raw_frame(r.sock, WAL_MSG_ROTATE, 2);
	ck_assert(ts_daemon_log_wait(&d, "ROTATE waits for its turn"));
	ts_ring_put(&r, "C", 1, 1, 0);
	ts_ring_publish(&r, r.tail);
	ts_raw_recv_until(r.sock, WAL_MSG_OK, buf, sizeof buf, 10000);
	ring_written(&r, 3);
	ts_ring_close(&r);
	ck_assert_int_eq(ts_daemon_stop_within(&d, 5), 0);

	ck_assert_int_eq(wal_reader_open(d.data, &rd, &err), 0);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(wal_reader_next(rd, &rec, &err), 1);
		ck_assert_int_eq(rec.size, 1);
		ck_assert_int_eq(rec.payload[0], want[i][0]);
		seg[i] = wal_reader_current_id(rd);
	}
	wal_reader_close(rd);
	ck_assert_msg(seg[0] < seg[1] && seg[1] < seg[2], "A, B and C in "
	    "segments %" PRIu64 ", %" PRIu64 ", %" PRIu64 ": two rotations "
	    "between them", seg[0], seg[1], seg[2]);
}
END_TEST

static Suite *
attack_suite(void)
{
	Suite *s = suite_create("attack_clients");
	TCase *tc = tcase_create("attack_clients");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_passed_descriptor_blocks_close);
	tcase_add_test(tc, test_passed_descriptor_flood);
	tcase_add_test(tc, test_status_flood);
	tcase_add_test(tc, test_rotate_flood);
	tcase_add_test(tc, test_reply_memory);
	tcase_add_test(tc, test_resubscribe_memory);
	tcase_add_test(tc, test_held_acks_bounded);
	tcase_add_test(tc, test_large_records_take_turns);
	tcase_add_test(tc, test_parked_rotate_keeps_ring_order);
	tcase_add_test(tc, test_subscriber_memfds_bounded);
	tcase_add_test(tc, test_client_log_flood);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	return (ts_run(attack_suite()));
}
