/*
 * walmmapd tests - attacks by a local user, found by review after issue
 * #13's fixes. Two sides:
 *
 * - The daemon (run as root by the suite): the data directory's path is
 *   used again after start-up, a second start removes a live daemon's
 *   socket, the umask for the socket reaches the other threads. The
 *   attacker's steps run in a child as uid 65534 (ts_as_user); those
 *   tests skip with a message when not run as root.
 * - The client: a fake daemon (a child process with a listening socket of
 *   the test's) answers HELLO and then misbehaves, and every blocking call
 *   of the library and walctl must still return within its time limit.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_format.h"
#include "wal_proto.h"
#include "wal_ring.h"
#include "wal_shm.h"
#include "walmmap.h"

#define NOBODY	65534

/* Format into an array; the test fails if it does not fit. */
#define PATHF(buf, ...)							\
	ck_assert_int_lt(snprintf(buf, sizeof buf, __VA_ARGS__),	\
	    (int)sizeof buf)

static char		*base;
static struct ts_daemon	 d;
static pid_t		 fake_pid;

static void
setup(void)
{
	base = ts_mkdtemp("attack");
	ts_daemon_init(&d, base);
	fake_pid = 0;
}

static void
teardown(void)
{
	int status;

	ts_daemon_kill(&d);
	if (fake_pid > 0) {
		kill(fake_pid, SIGKILL);
		waitpid(fake_pid, &status, 0);
	}
	if (d.notify_fd != -1)
		close(d.notify_fd);
	ts_rmtree(base);
}

static int
is_root(const char *test)
{
	if (geteuid() == 0)
		return (1);
	fprintf(stderr, "%s: skipped (needs root to act as another user)\n",
	    test);
	return (0);
}

/* ------------------------------------------------------------------ */
/* The daemon.                                                         */
/* ------------------------------------------------------------------ */

/*
 * A log of root's that the attacker must neither read nor shorten: n
 * records "secret N" of 1000 bytes in 64 KiB segments.
 */
static void
make_victim_log(const char *dir, int n)
{
	struct wal_ring_config rc;
	struct wal_recovery rec;
	struct wal_error err;
	struct wal_ring *r;
	char buf[1000];
	int64_t seq;
	int i;

	ck_assert_int_eq(mkdir(dir, 0700), 0);
	memset(&rc, 0, sizeof rc);
	rc.dir = dir;
	rc.segment_size = 64 * 1024;
	rc.ring_segments = 2;
	rc.no_prefault = 1;
	ck_assert_msg(wal_ring_open(&rc, &r, &rec, &err) == 0, "%s", err.msg);
	for (i = 0; i < n; i++) {
		memset(buf, 'v', sizeof buf);
		snprintf(buf, sizeof buf, "secret %d", i);
		ck_assert_msg(wal_ring_append(r, buf, sizeof buf, -1, &seq,
		    &err) == 0, "%s", err.msg);
	}
	ck_assert_msg(wal_ring_sync(r, &seq, &err) == 0, "%s", err.msg);
	wal_ring_close(r);
}

struct swap {
	const char	*data;		/* the daemon's data directory */
	const char	*moved;		/* where the attacker moves it */
	const char	*target;	/* what the attacker puts there */
};

/* The attacker owns the data directory's parent: swap the directory. */
static int
swap_dir(void *arg)
{
	const struct swap *sw = arg;

	if (rename(sw->data, sw->moved) == -1)
		return (1);
	return (symlink(sw->target, sw->data) == -1 ? 2 : 0);
}

/* The name of dir's oldest segment (ids are zero-padded): 1, or 0. */
static int
lowest_segment(const char *dir, char *name, size_t len)
{
	struct dirent *de;
	DIR *dp;

	name[0] = '\0';
	if ((dp = opendir(dir)) == NULL)
		return (0);
	while ((de = readdir(dp)) != NULL)
		if (strncmp(de->d_name, "wal_mmap_", 9) == 0 &&
		    (name[0] == '\0' || strcmp(de->d_name, name) < 0))
			snprintf(name, len, "%s", de->d_name);
	closedir(dp);
	return (name[0] != '\0');
}

/* Subscribe as the attacker and read to the end: 0 when no secret came. */
static int
read_as_attacker(void *arg)
{
	struct walmmap_reader *r;
	struct walmmap_record rec;
	int rc, n = 0;

	if ((rc = walmmap_subscribe(&r, arg, 0, -1, 0)) != 0) {
		fprintf(stderr, "subscribe: %d: %s\n", rc,
		    walmmap_reader_errmsg(r));
		return (10);
	}
	while ((rc = walmmap_reader_next(r, &rec, 10000)) == 1) {
		n++;
		if (rec.size >= 6 && memcmp(rec.data, "secret", 6) == 0) {
			fprintf(stderr, "read %.*s through the daemon\n",
			    (int)(rec.size < 16 ? rec.size : 16),
			    (const char *)rec.data);
			walmmap_reader_close(r);
			return (1);
		}
	}
	walmmap_reader_close(r);
	return (rc < 0 && rc != -WALMMAP_ELOST ? 11 : 0);
}

/*
 * The data directory is checked once, at start-up, and then used through
 * its descriptor. Retention, status and subscriptions used its path
 * again: whoever owns a parent could then swap the directory for a link
 * to another log of root's, whose records the daemon sent to them and
 * whose segments retention removed.
 */
START_TEST(test_data_dir_path_swapped)
{
	char home[PATH_MAX], moved[PATH_MAX], victim[PATH_MAX];
	char path[PATH_MAX], oldest[NAME_MAX + 1];
	struct swap sw;
	char *out;
	int i, before;

	if (!is_root("test_data_dir_path_swapped"))
		return;
	ck_assert_int_eq(chmod(base, 0755), 0);
	PATHF(home, "%s/home", base);
	ck_assert_int_eq(mkdir(home, 0755), 0);
	ck_assert_int_eq(chown(home, NOBODY, NOBODY), 0);
	PATHF(d.data, "%s/wal", home);
	PATHF(moved, "%s/moved", home);
	PATHF(victim, "%s/victim", base);
	make_victim_log(victim, 300);
	before = ts_count_files(victim, "wal_mmap_");
	ck_assert_int_ge(before, 4);

	/* The attacker may read (allow_readers): what does it get? */
	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K", "-o",
	    "prefault=no", "-o", "retain_segments=1", "-o",
	    "allow_readers=65534", NULL), 0);
	ck_assert_int_eq(chmod(d.sock, 0666), 0);
	sw.data = d.data;
	sw.moved = moved;
	sw.target = victim;
	ck_assert_int_eq(ts_as_user(NOBODY, NOBODY, swap_dir, &sw), 0);
	ck_assert(lowest_segment(moved, oldest, sizeof oldest));

	/* What a subscriber gets is the daemon's own log. */
	ck_assert_int_eq(ts_as_user(NOBODY, NOBODY, read_as_attacker, d.sock),
	    0);

	/* Retention runs on the daemon's own segments, and only on them. */
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(ts_run_prog("client/walctl", "r\n", 2, &out,
		    "-s", d.sock, "append", "--ack", "durable", NULL), 0);
		free(out);
		ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out,
		    "-s", d.sock, "rotate", NULL), 0);
		free(out);
	}
	ck_assert(ts_daemon_log_wait(&d, "retention: removed"));
	ck_assert_int_eq(ts_count_files(victim, "wal_mmap_"), before);
	/*
	 * What it removed is the daemon's oldest segment, from the moved
	 * directory. (This used to count the moved directory's segments
	 * against a bound, which once failed under distcheck's load: how
	 * many are there at a moment depends on when the checkpoint and
	 * the standby segments catch up.)
	 */
	PATHF(path, "%s/%s", moved, oldest);
	ck_assert_msg(access(path, F_OK) == -1 && errno == ENOENT, "%s is "
	    "still there after \"retention: removed\"", path);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(ts_count_files(victim, "wal_mmap_"), before);
}
END_TEST

/*
 * Whoever owns a directory above the data directory can put a symbolic
 * link in place of the next one down and aim walmmapd, started as root,
 * at another directory of root's of the same name: the parents were
 * followed whatever their links. A link among the parents is now
 * followed on the terms of a link in place of the directory itself (made
 * by root or walmmapd's user, in a directory only they can write to).
 */
START_TEST(test_data_dir_parent_link)
{
	char home[PATH_MAX], a[PATH_MAX], real[PATH_MAX], victim[PATH_MAX];
	char vwal[PATH_MAX], moved[PATH_MAX], text[PATH_MAX + 64], *log;
	struct swap sw;
	int before, rc;

	if (!is_root("test_data_dir_parent_link"))
		return;
	ck_assert_int_eq(chmod(base, 0755), 0);
	PATHF(home, "%s/home", base);
	ck_assert_int_eq(mkdir(home, 0755), 0);
	PATHF(a, "%s/a", home);
	ck_assert_int_eq(mkdir(a, 0755), 0);
	ck_assert_int_eq(chown(home, NOBODY, NOBODY), 0);
	PATHF(d.data, "%s/wal", a);
	PATHF(victim, "%s/victim", base);
	ck_assert_int_eq(mkdir(victim, 0700), 0);
	PATHF(vwal, "%s/wal", victim);
	make_victim_log(vwal, 100);
	before = ts_count_files(vwal, "wal_mmap_");

	/* The attacker swaps home/a for a link to root's victim. */
	PATHF(moved, "%s/a.old", home);
	sw.data = a;
	sw.moved = moved;
	sw.target = victim;
	ck_assert_int_eq(ts_as_user(NOBODY, NOBODY, swap_dir, &sw), 0);
	rc = ts_daemon_start(&d, "--segment-size", "64K", "-o", "prefault=no",
	    NULL);
	log = ts_daemon_log(&d);
	ck_assert_msg(rc == 1, "walmmapd: exit %d, expected 1: %s", rc, log);
	PATHF(text, "its parent %s is a symbolic link owned by uid %u", a,
	    NOBODY);
	ck_assert_msg(strstr(log, text) != NULL, "\"%s\" not in: %s", text,
	    log);
	free(log);
	ck_assert_int_eq(ts_count_files(vwal, "wal_mmap_"), before);
	ck_assert_int_eq(ts_verify_log(vwal, 0, NULL, NULL), 100);

	/* A link root made in root's directory is followed. */
	PATHF(real, "%s/real", base);
	ck_assert_int_eq(mkdir(real, 0755), 0);
	PATHF(a, "%s/link", base);
	ck_assert_int_eq(symlink(real, a), 0);
	PATHF(d.data, "%s/link/wal", base);
	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K", "-o",
	    "prefault=no", NULL), 0);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	PATHF(text, "%s/wal", real);
	ck_assert_int_gt(ts_count_files(text, "wal_mmap_"), 0);
}
END_TEST

/*
 * walctl dump of a directory someone else prepared: a FIFO under a
 * segment name. Seeking read each segment's first record with a blocking
 * open(2), which waits for a writer that never comes.
 */
START_TEST(test_dump_fifo_segment)
{
	char dir[PATH_MAX], fifo[PATH_MAX], *out;
	const char *froms[] = { "0", "50", "99", "1000" };
	uint8_t *b;
	uint64_t id, empty = 0, last = 0;
	size_t i, len;
	int rc;

	PATHF(dir, "%s/log", base);
	make_victim_log(dir, 100);
	/*
	 * The FIFO follows the last segment holding records, in place of a
	 * standby (removed, if the ring's thread had made one).
	 */
	for (id = 0; id < 16; id++) {
		if ((b = ts_read_file(ts_seg_path(dir, id), &len)) == NULL)
			continue;
		if (empty == 0 && len > WAL_FILE_HEADER_SIZE + 4 &&
		    b[WAL_FILE_HEADER_SIZE] == 0)
			empty = id;
		else if (empty == 0)
			last = id;
		free(b);
		if (empty != 0)
			ck_assert_int_eq(unlink(ts_seg_path(dir, id)), 0);
	}
	ck_assert_uint_gt(last, 0);
	empty = last + 1;
	PATHF(fifo, "%s", ts_seg_path(dir, empty));
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	for (i = 0; i < sizeof froms / sizeof froms[0]; i++) {
		rc = ts_run_prog_within(20, "client/walctl", NULL, 0, &out,
		    "dump", "--from", froms[i], dir, NULL);
		ck_assert_msg(rc != 142, "walctl dump --from %s: still running "
		    "after 20 s", froms[i]);
		ck_assert_msg(rc == 2 && strstr(out, "not a regular file") !=
		    NULL, "walctl dump --from %s: exit %d: %.300s", froms[i],
		    rc, out);
		free(out);
	}
}
END_TEST

/*
 * A socket a live daemon listens on is never removed. A second start on
 * the same socket (another data directory) decided "stale" whenever its
 * probe could not connect, for whatever reason: with few descriptors
 * left, socket(2) failed and it removed the live daemon's socket.
 */
START_TEST(test_second_start_keeps_live_socket)
{
	char data2[PATH_MAX], nofile[16], *out;
	struct stat st;
	unsigned long n;
	int rc;

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K", "-o",
	    "prefault=no", NULL), 0);
	for (n = 8; n <= 64; n++) {
		PATHF(data2, "%s/data-%lu", base, n);
		PATHF(nofile, "%lu", n);
		rc = ts_run_prog_nofile("daemon/walmmapd", n, &out, "-f", "-d",
		    data2, "-s", d.sock, "--segment-size", "64K", "-o",
		    "prefault=no", NULL);
		ck_assert_msg(rc != 0, "second start with %lu descriptors: "
		    "exit 0: %s", n, out);
		ck_assert_msg(lstat(d.sock, &st) == 0 && S_ISSOCK(st.st_mode),
		    "a second start with %lu descriptors removed the live "
		    "daemon's socket: %s", n, out);
		free(out);
	}
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "-s",
	    d.sock, "status", NULL), 0);
	free(out);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * Fill the listen queue of the socket at path: connections nobody accepts,
 * made in a child (it raises its descriptor limit for them) that keeps
 * them until killed. Returns its pid once the queue is full.
 */
static pid_t
fill_backlog(const char *path)
{
	struct sockaddr_un sun;
	struct rlimit rl;
	int p[2], s;
	char c;
	pid_t pid;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	ck_assert_uint_lt(strlen(path), sizeof sun.sun_path);
	memcpy(sun.sun_path, path, strlen(path));
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
			rl.rlim_cur = rl.rlim_max;
			(void)setrlimit(RLIMIT_NOFILE, &rl);
		}
		for (;;) {
			s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK |
			    SOCK_CLOEXEC, 0);
			if (s == -1)
				_exit(2);
			if (connect(s, (struct sockaddr *)&sun, sizeof sun) ==
			    -1)
				break;
		}
		/* EAGAIN: the queue is full. */
		if (errno != EAGAIN || write(p[1], "x", 1) != 1)
			_exit(3);
		pause();
		_exit(0);
	}
	close(p[1]);
	ck_assert_msg(read(p[0], &c, 1) == 1, "could not fill the listen "
	    "queue of %s", path);
	close(p[0]);
	return (pid);
}

/*
 * A live daemon that is stopped (kill -STOP) with its listen queue full
 * makes a blocking connect wait for ever: a second start on its socket
 * hung in its probe instead of saying another walmmapd is listening.
 */
START_TEST(test_second_start_daemon_stopped)
{
	char data2[PATH_MAX], *out;
	pid_t filler;
	int rc;

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K", "-o",
	    "prefault=no", NULL), 0);
	ts_daemon_signal(&d, SIGSTOP);
	filler = fill_backlog(d.sock);
	PATHF(data2, "%s/data2", base);
	rc = ts_run_prog_within(20, "daemon/walmmapd", NULL, 0, &out, "-f",
	    "-d", data2, "-s", d.sock, "--segment-size", "64K", "-o", "prefault=no",
	    NULL);
	kill(filler, SIGKILL);
	waitpid(filler, NULL, 0);
	ts_daemon_signal(&d, SIGCONT);
	ck_assert_msg(rc != 142, "a second start still waited after 20 s: %s",
	    out);
	ck_assert_msg(rc == 1, "second start: exit %d: %s", rc, out);
	ck_assert_msg(strstr(out, "another walmmapd is listening") != NULL,
	    "%s", out);
	free(out);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * The socket is bound under a umask matching socket_mode; that umask is
 * the main thread's alone. The ring's and the syncer's threads create
 * segments, the checkpoint and the sync-failure marker meanwhile, and
 * must keep the umask walmmapd was started with (tests/bindswap.c
 * records every other thread's umask right after bind).
 */
START_TEST(test_bind_umask_stays_in_main_thread)
{
	char preload[PATH_MAX + 16], rec[PATH_MAX], recenv[PATH_MAX + 32];
	char asan[1100], *env[4], *log, *p;
	const char *old = getenv("ASAN_OPTIONS");
	uint8_t *b;
	size_t len;
	mode_t um;
	int rc, n = 0;

	PATHF(rec, "%s/umasks", base);
	PATHF(preload, "LD_PRELOAD=%s",
	    ts_prog("tests/.libs/libbindswap.so"));
	PATHF(recenv, "WALTEST_BIND_UMASKS=%s", rec);
	PATHF(asan, "ASAN_OPTIONS=%s%sverify_asan_link_order=0",
	    old != NULL ? old : "", old != NULL && *old != '\0' ? ":" : "");
	env[0] = preload;
	env[1] = recenv;
	env[2] = asan;
	env[3] = NULL;
	d.env = env;
	um = umask(077);
	rc = ts_daemon_start(&d, "--segment-size", "64K", "-o", "prefault=no",
	    "-o", "socket_mode=0666", NULL);
	umask(um);
	log = ts_daemon_log(&d);
	ck_assert_msg(rc == 0, "exit %d: %s", rc, log);
	free(log);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_ptr_nonnull(b = ts_read_file(rec, &len));
	b = realloc(b, len + 1);
	b[len] = '\0';
	for (p = (char *)b; (p = strstr(p, "umask ")) != NULL; p++, n++)
		ck_assert_msg(strncmp(p, "umask 0077", 10) == 0, "another "
		    "thread's umask while the socket was bound: %.10s (all: "
		    "%s)", p, (char *)b);
	ck_assert_msg(n >= 2, "%d other threads seen: %s", n, (char *)b);
	free(b);
}
END_TEST

/* ------------------------------------------------------------------ */
/* A fake daemon that misbehaves after the handshake.                  */
/* ------------------------------------------------------------------ */

enum fake_mode {
	FAKE_SILENT,		/* reads everything, answers nothing */
	FAKE_FLOOD,		/* DURABLE frames without end, reads nothing */
	FAKE_ACK_FLOOD,		/* ACKs the first APPEND, then FAKE_FLOOD */
	FAKE_SUB_FLOOD,		/* empty RECORDS frames without end */
	FAKE_SHM_FLOOD,		/* a ring, then FAKE_FLOOD */
	FAKE_SHM_BELLS,		/* a ring, then its doorbell without end */
	FAKE_SHM_SHRINK,	/* an unsealed ring, cut at the first bell */
};

static ssize_t
fake_recv(int s, uint8_t *buf, struct wal_msg *hdr)
{
	ssize_t n;

	memset(hdr, 0, sizeof *hdr);
	n = recv(s, buf, WAL_PROTO_MAX_FRAME, 0);
	if (n >= (ssize_t)sizeof *hdr)
		memcpy(hdr, buf, sizeof *hdr);
	return (n);
}

/*
 * Let s queue as many frames as the system allows (root may go past
 * wmem_max): a client that takes a frame whenever one is queued then
 * never finds the queue empty.
 */
static void
fake_deep(int s)
{
	int size = 64 * 1024 * 1024;

	if (setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) ==
	    -1)
		(void)setsockopt(s, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

/*
 * Send frames of len bytes from buf, 64 per call so that we are always
 * ahead of a client that takes one per call, until the client goes (or,
 * with flags MSG_DONTWAIT, until the queue is full).
 */
static int
fake_burst(int s, const void *buf, size_t len, int flags)
{
	struct mmsghdr mm[64];
	struct iovec iov;
	int i;

	iov.iov_base = (void *)(uintptr_t)buf;
	iov.iov_len = len;
	memset(mm, 0, sizeof mm);
	for (i = 0; i < 64; i++) {
		mm[i].msg_hdr.msg_iov = &iov;
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	return (sendmmsg(s, mm, 64, MSG_NOSIGNAL | flags));
}

static void
fake_flood(int s, const void *buf, size_t len)
{
	fake_deep(s);
	while (fake_burst(s, buf, len, 0) > 0)
		;
}

/*
 * Answer SHM_OPEN with a ring, sealed against shrinking as walmmapd's are
 * unless *memfd is not NULL (it gets the ring's descriptor then). Returns
 * our end of its doorbells.
 */
static int
fake_shm(int s, const struct wal_msg *open_hdr, int *memfd)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(3 * sizeof(int))];
	} cm;
	const uint64_t size = WAL_SHM_MIN_SIZE;
	struct wal_msg_shm_ready rd;
	struct msghdr m;
	struct iovec iov;
	int fds[3], bell[2];
	void *base_;

	if ((fds[0] = memfd_create("fake-ring", MFD_CLOEXEC |
	    MFD_ALLOW_SEALING)) == -1 ||
	    ftruncate(fds[0], (off_t)(WAL_SHM_HEADER_SIZE + size)) == -1 ||
	    socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, bell) == -1)
		_exit(3);
	base_ = mmap(NULL, WAL_SHM_HEADER_SIZE + size, PROT_READ | PROT_WRITE,
	    MAP_SHARED, fds[0], 0);
	if (base_ == MAP_FAILED)
		_exit(3);
	wal_shm_format(base_, size, wal_shm_max_record(size, 1024));
	if (memfd == NULL && fcntl(fds[0], F_ADD_SEALS, F_SEAL_SHRINK |
	    F_SEAL_GROW | F_SEAL_SEAL) == -1)
		_exit(3);
	/* The client rings the bell when it publishes. */
	((struct wal_shm_header *)base_)->daemon_sleeping = 1;
	fds[1] = fds[2] = bell[1];
	memset(&rd, 0, sizeof rd);
	rd.hdr.type = WAL_MSG_SHM_READY;
	rd.hdr.len = sizeof rd;
	rd.hdr.id = open_hdr->id;
	rd.size = size;
	rd.header_size = WAL_SHM_HEADER_SIZE;
	rd.max_record = wal_shm_max_record(size, 1024);
	memset(&m, 0, sizeof m);
	memset(&cm, 0, sizeof cm);
	iov.iov_base = &rd;
	iov.iov_len = sizeof rd;
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = cm.buf;
	m.msg_controllen = sizeof cm.buf;
	cm.hdr.cmsg_level = SOL_SOCKET;
	cm.hdr.cmsg_type = SCM_RIGHTS;
	cm.hdr.cmsg_len = CMSG_LEN(3 * sizeof(int));
	memcpy(CMSG_DATA(&cm.hdr), fds, sizeof fds);
	if (sendmsg(s, &m, MSG_NOSIGNAL) != (ssize_t)sizeof rd)
		_exit(3);
	if (memfd != NULL)
		*memfd = fds[0];
	else
		close(fds[0]);
	close(bell[1]);
	return (bell[0]);
}

/* One connection, as mode says. */
static void
fake_serve(int s, enum fake_mode mode, uint8_t *buf)
{
	struct wal_msg_welcome w;
	struct wal_msg_durable du;
	struct wal_msg_records rs;
	struct wal_msg hdr;
	uint64_t one = 1;
	int bell;

	if (fake_recv(s, buf, &hdr) <= 0 || hdr.type != WAL_MSG_HELLO)
		return;
	memset(&w, 0, sizeof w);
	w.hdr.type = WAL_MSG_WELCOME;
	w.hdr.len = sizeof w;
	w.hdr.id = hdr.id;
	w.version = WAL_PROTO_VERSION;
	w.max_frame = WAL_PROTO_MAX_FRAME;
	w.max_record = 1024;
	w.max_inflight = 4 * 1024 * 1024;
	if (send(s, &w, sizeof w, MSG_NOSIGNAL) != (ssize_t)sizeof w)
		return;

	memset(&du, 0, sizeof du);
	du.hdr.type = WAL_MSG_DURABLE;
	du.hdr.len = sizeof du;
	du.durable_seq = -1;
	switch (mode) {
	case FAKE_SILENT:
		while (fake_recv(s, buf, &hdr) > 0)
			;
		break;
	case FAKE_ACK_FLOOD: {
		struct {
			struct wal_msg_ack	a;
			struct wal_ack_entry	e;
		} ack;

		if (fake_recv(s, buf, &hdr) <= 0 || hdr.type != WAL_MSG_APPEND)
			return;
		memset(&ack, 0, sizeof ack);
		ack.a.hdr.type = WAL_MSG_ACK;
		ack.a.hdr.len = sizeof ack;
		ack.a.count = 1;
		ack.e.id = hdr.id;
		ack.e.first_seq = 0;
		ack.e.count = 1;
		if (send(s, &ack, sizeof ack, MSG_NOSIGNAL) !=
		    (ssize_t)sizeof ack)
			return;
		usleep(200000);		/* the client takes the ACK alone */
	}
		/* FALLTHROUGH */
	case FAKE_FLOOD:
		fake_flood(s, &du, sizeof du);
		break;
	case FAKE_SUB_FLOOD:
		memset(&rs, 0, sizeof rs);
		rs.hdr.type = WAL_MSG_RECORDS;
		rs.hdr.len = sizeof rs;
		fake_flood(s, &rs, sizeof rs);
		break;
	case FAKE_SHM_SHRINK: {
		uint64_t rung;
		int mfd;

		if (fake_recv(s, buf, &hdr) <= 0 ||
		    hdr.type != WAL_MSG_SHM_OPEN)
			return;
		bell = fake_shm(s, &hdr, &mfd);
		/* The client published a record: take the memory away. */
		if (recv(bell, &rung, sizeof rung, 0) > 0)
			(void)ftruncate(mfd, 0);
		while (fake_recv(s, buf, &hdr) > 0)
			;
		break;
	}
	case FAKE_SHM_FLOOD:
	case FAKE_SHM_BELLS:
		if (fake_recv(s, buf, &hdr) <= 0 ||
		    hdr.type != WAL_MSG_SHM_OPEN)
			return;
		bell = fake_shm(s, &hdr, NULL);
		if (mode == FAKE_SHM_FLOOD) {
			fake_flood(s, &du, sizeof du);
			break;
		}
		/* Ring while the client is there (it reads the bell). */
		fake_deep(bell);
		for (;;) {
			struct pollfd pfd = { s, POLLIN, 0 };

			(void)fake_burst(bell, &one, sizeof one, MSG_DONTWAIT);
			if (poll(&pfd, 1, 0) == 1 && fake_recv(s, buf, &hdr) <=
			    0)
				break;
		}
		break;
	}
}

/*
 * Start a fake daemon in a child process on base/fake.sock: it serves
 * one connection after another (walctl tail makes two) as mode says.
 */
static const char *
fake_start(enum fake_mode mode)
{
	static char path[PATH_MAX];
	struct sockaddr_un sun;
	uint8_t *buf;
	int lfd, s;

	PATHF(path, "%s/fake.sock", base);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	ck_assert_uint_lt(strlen(path), sizeof sun.sun_path);
	memcpy(sun.sun_path, path, strlen(path));
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sun, sizeof sun), 0);
	ck_assert_int_eq(listen(lfd, 8), 0);
	fake_pid = fork();
	ck_assert_int_ge(fake_pid, 0);
	if (fake_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if ((buf = malloc(WAL_PROTO_MAX_FRAME)) == NULL)
			_exit(2);
		while ((s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) != -1) {
			fake_serve(s, mode, buf);
			close(s);
		}
		_exit(0);
	}
	close(lfd);
	return (path);
}

/* Stop the fake daemon and remove its socket. */
static void
fake_stop(void)
{
	char path[PATH_MAX];

	kill(fake_pid, SIGKILL);
	waitpid(fake_pid, NULL, 0);
	fake_pid = 0;
	PATHF(path, "%s/fake.sock", base);
	unlink(path);
}

/*
 * Run fn(arg) in a child: its exit status, or -1 when it had not
 * returned after secs (a hang; it is killed).
 */
static int
bounded(int (*fn)(const char *), const char *arg, int secs)
{
	int status, i;
	pid_t pid;

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(fn(arg));
	}
	for (i = 0; i < secs * 100; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return (WIFEXITED(status) ? WEXITSTATUS(status) :
			    128 + WTERMSIG(status));
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return (-1);
}

/*
 * Connect, give the fake daemon time to queue frames, then limit every
 * wait to 20 ms: far less than the client needs to take what is queued.
 * Exits 10 on failure.
 */
static struct walmmap *
connect_short(const char *path, unsigned flags)
{
	struct walmmap *w;
	int rc;

	if ((rc = walmmap_connect(&w, path, WALMMAP_ACK_WRITTEN, flags)) !=
	    0) {
		fprintf(stderr, "connect: %d: %s\n", rc, walmmap_errmsg(w));
		_exit(10);
	}
	usleep(300000);
	walmmap_set_timeout(w, 20);
	return (w);
}

/* Exit 0 when rc is a time-out, else say what it was. */
static int
timed_out(struct walmmap *w, const char *call, int rc)
{
	if (rc == -WALMMAP_ETIMEDOUT)
		return (0);
	fprintf(stderr, "%s: %d: %s\n", call, rc, walmmap_errmsg(w));
	return (1);
}

static int
call_status(const char *path)
{
	struct walmmap *w = connect_short(path, 0);
	struct walmmap_status st;

	return (timed_out(w, "walmmap_status", walmmap_status(w, &st)));
}

static int
call_sync(const char *path)
{
	struct walmmap *w = connect_short(path, 0);

	return (timed_out(w, "walmmap_sync", walmmap_sync(w, NULL)));
}

/* walmmap_wait(WRITTEN) after an untracked append: its PING. */
static int
call_wait_ping(const char *path)
{
	struct walmmap *w = connect_short(path, 0);

	if (walmmap_append(w, "x", 1, WALMMAP_ACK_NONE, NULL) != 0)
		return (11);
	return (timed_out(w, "walmmap_wait", walmmap_wait(w,
	    WALMMAP_ACK_WRITTEN, -1)));
}

/* walmmap_wait(WRITTEN) for a tracked append (no PING). */
static int
call_wait_acks(const char *path)
{
	struct walmmap *w = connect_short(path, 0);

	if (walmmap_append(w, "x", 1, WALMMAP_ACK_WRITTEN, NULL) != 0)
		return (11);
	return (timed_out(w, "walmmap_wait", walmmap_wait(w,
	    WALMMAP_ACK_WRITTEN, 20)));
}

/* An append that wants its seq waits for the ACK. */
static int
call_append_seq(const char *path)
{
	struct walmmap *w = connect_short(path, 0);
	int64_t seq;

	return (timed_out(w, "walmmap_append", walmmap_append(w, "x", 1,
	    WALMMAP_ACK_WRITTEN, &seq)));
}

/*
 * A durable append: its ACK comes, its DURABLE never does, and the wait
 * for it (the daemon owes it, so nothing is asked) meets other frames.
 */
static int
call_wait_durable(const char *path)
{
	struct walmmap *w = connect_short(path, 0);
	int rc;

	if (walmmap_append(w, "x", 1, WALMMAP_ACK_DURABLE, NULL) != 0)
		return (11);
	if ((rc = walmmap_wait(w, WALMMAP_ACK_WRITTEN, 150)) != 0) {
		fprintf(stderr, "walmmap_wait: %d: %s\n", rc,
		    walmmap_errmsg(w));
		return (12);
	}
	usleep(300000);		/* frames queue up */
	return (timed_out(w, "walmmap_wait_durable", walmmap_wait_durable(w,
	    0, -1)));
}

/* Untracked appends until the socket is full: the wait to send. */
static int
call_append_full(const char *path)
{
	struct walmmap *w = connect_short(path, 0);
	static char rec[1024];
	int i, rc = 0;

	for (i = 0; i < 1000000 && rc == 0; i++)
		rc = walmmap_append(w, rec, sizeof rec, WALMMAP_ACK_NONE, NULL);
	return (timed_out(w, "walmmap_append", rc));
}

/* walmmap_process() handles what came without waiting for more. */
static int
call_process(const char *path)
{
	struct walmmap *w = connect_short(path, 0);
	int rc;

	if ((rc = walmmap_process(w)) < 0) {
		fprintf(stderr, "walmmap_process: %d: %s\n", rc,
		    walmmap_errmsg(w));
		return (1);
	}
	return (0);
}

/* A ring append waits for written; the socket or the bell keeps busy. */
static int
call_shm_append(const char *path)
{
	struct walmmap *w = connect_short(path, WALMMAP_SHM);
	const char *why;
	int64_t seq;

	if (!walmmap_shm_active(w, &why)) {
		fprintf(stderr, "no ring: %s\n", why);
		return (12);
	}
	return (timed_out(w, "walmmap_append (ring)", walmmap_append(w, "x",
	    1, WALMMAP_ACK_WRITTEN, &seq)));
}

/*
 * A ring that the daemon can shrink under the client: refused, the
 * connection stays on the socket (an append through it would take
 * SIGBUS once the memfd is cut).
 */
static int
call_shm_unsealed(const char *path)
{
	struct walmmap *w;
	const char *why;
	int64_t seq;
	int rc;

	if ((rc = walmmap_connect(&w, path, WALMMAP_ACK_WRITTEN,
	    WALMMAP_SHM)) != 0) {
		fprintf(stderr, "connect: %d: %s\n", rc, walmmap_errmsg(w));
		return (10);
	}
	walmmap_set_timeout(w, 200);
	if (!walmmap_shm_active(w, &why))
		return (strstr(why, "not sealed") != NULL ? 0 : 13);
	rc = walmmap_append(w, "x", 1, WALMMAP_ACK_WRITTEN, &seq);
	fprintf(stderr, "ring append on a ring that can shrink: %d: %s\n", rc,
	    walmmap_errmsg(w));
	return (1);
}

/* A subscription's next record within its timeout. */
static int
call_sub_next(const char *path)
{
	struct walmmap_reader *r;
	struct walmmap_record rec;
	int rc;

	if ((rc = walmmap_subscribe(&r, path, 0, -1, 0)) != 0) {
		fprintf(stderr, "subscribe: %d: %s\n", rc,
		    walmmap_reader_errmsg(r));
		return (10);
	}
	usleep(300000);		/* frames queue up */
	rc = walmmap_reader_next(r, &rec, 20);
	if (rc == 0)
		return (0);
	fprintf(stderr, "walmmap_reader_next: %d: %s\n", rc,
	    walmmap_reader_errmsg(r));
	return (1);
}

/* Each call against a fake daemon in mode: it returns, as asked. */
static void
each_returns(enum fake_mode mode, int (*const *calls)(const char *),
    const char *const *names)
{
	const char *path = fake_start(mode);
	int i, rc;

	for (i = 0; calls[i] != NULL; i++) {
		rc = bounded(calls[i], path, 20);
		ck_assert_msg(rc != -1, "%s: still waiting after 20 s "
		    "(fake daemon mode %d)", names[i], (int)mode);
		ck_assert_msg(rc == 0, "%s: exit %d (fake daemon mode %d)",
		    names[i], rc, (int)mode);
	}
}

/*
 * A daemon that sends frames without end, none of them the answer: every
 * wait still ends at its limit. The waits used to return only when
 * nothing was left to read.
 */
START_TEST(test_client_flood)
{
	int (*const calls[])(const char *) = { call_status, call_sync,
	    call_wait_ping, call_wait_acks, call_append_seq, call_append_full,
	    call_process, NULL };
	const char *const names[] = { "status", "sync", "wait (PING)",
	    "wait (ACKs)", "append with seq", "append to a full socket",
	    "process" };

	each_returns(FAKE_FLOOD, calls, names);
}
END_TEST

/* The ACK comes, then anything but DURABLE: a durable append ends. */
START_TEST(test_client_flood_durable)
{
	int (*const calls[])(const char *) = { call_wait_durable, NULL };
	const char *const names[] = { "wait for an owed DURABLE" };

	each_returns(FAKE_ACK_FLOOD, calls, names);
}
END_TEST

/* A ring append: socket frames or doorbells without end. */
START_TEST(test_client_flood_shm)
{
	int (*const calls[])(const char *) = { call_shm_append, NULL };
	const char *const names[] = { "ring append" };

	each_returns(FAKE_SHM_FLOOD, calls, names);
	fake_stop();
	each_returns(FAKE_SHM_BELLS, calls, names);
}
END_TEST

/* A ring the daemon can cut under the client is not used. */
START_TEST(test_client_shm_unsealed)
{
	int (*const calls[])(const char *) = { call_shm_unsealed, NULL };
	const char *const names[] = { "ring of an unsealed memfd" };

	each_returns(FAKE_SHM_SHRINK, calls, names);
}
END_TEST

/* A subscription sent empty RECORDS frames without end. */
START_TEST(test_client_flood_subscription)
{
	int (*const calls[])(const char *) = { call_sub_next, NULL };
	const char *const names[] = { "walmmap_reader_next" };

	each_returns(FAKE_SUB_FLOOD, calls, names);
}
END_TEST

/*
 * walctl tail (not following) against a daemon that stops sending, and
 * against one that sends nothing useful: it ends within --timeout.
 */
START_TEST(test_walctl_tail_stalled)
{
	enum fake_mode modes[] = { FAKE_SILENT, FAKE_SUB_FLOOD };
	const char *path;
	char *out;
	size_t i;
	int rc;

	for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		path = fake_start(modes[i]);
		rc = ts_run_prog_within(20, "client/walctl", NULL, 0, &out,
		    "-s", path, "-t", "1", "tail", "--from", "0", NULL);
		ck_assert_msg(rc != 142, "walctl -t 1 tail --from 0: still "
		    "running after 20 s (fake daemon mode %d): %s",
		    (int)modes[i], out);
		ck_assert_msg(rc == 1, "walctl tail: exit %d (fake daemon "
		    "mode %d): %s", rc, (int)modes[i], out);
		ck_assert_msg(strstr(out, "timed out") != NULL ||
		    strstr(out, "within") != NULL, "%s", out);
		free(out);
		fake_stop();
	}
}
END_TEST

static Suite *
attack_suite(void)
{
	Suite *s = suite_create("attack_local");
	TCase *tc;

	tc = tcase_create("daemon");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_data_dir_path_swapped);
	tcase_add_test(tc, test_data_dir_parent_link);
	tcase_add_test(tc, test_dump_fifo_segment);
	tcase_add_test(tc, test_second_start_keeps_live_socket);
	tcase_add_test(tc, test_second_start_daemon_stopped);
	tcase_add_test(tc, test_bind_umask_stays_in_main_thread);
	suite_add_tcase(s, tc);

	tc = tcase_create("client");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_client_flood);
	tcase_add_test(tc, test_client_flood_durable);
	tcase_add_test(tc, test_client_flood_shm);
	tcase_add_test(tc, test_client_shm_unsealed);
	tcase_add_test(tc, test_client_flood_subscription);
	tcase_add_test(tc, test_walctl_tail_stalled);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(attack_suite()));
}
