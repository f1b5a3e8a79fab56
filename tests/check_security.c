/*
 * walmmapd tests - local security of a daemon that runs as root: the data
 * and socket directories it accepts, the socket file it binds, a reload
 * that cannot read its file, and the detached start's error reporting.
 * The attacker's steps run in a child as uid 65534 (ts_as_user), so the
 * tests that need one skip with a message when not run as root.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_ring.h"
#include "walmmap.h"

#define NOBODY	65534

/* Format into an array; the test fails if it does not fit. */
#define PATHF(buf, ...)							\
	ck_assert_int_lt(snprintf(buf, sizeof buf, __VA_ARGS__),	\
	    (int)sizeof buf)

static char		*base;
static struct ts_daemon	 d;
static pid_t		 detached;	/* a detached daemon to stop */

static void	kill_detached(void);

static void
setup(void)
{
	base = ts_mkdtemp("security");
	ts_daemon_init(&d, base);
	detached = 0;
}

static void
kill_detached(void)
{
	if (detached > 0)
		kill(detached, SIGKILL);
}

/* Wait (30 s at most) until pid is gone or a zombie nobody reaps yet. */
static int
gone(pid_t pid)
{
	char path[64], buf[256], *p;
	int i, fd;
	ssize_t n;

	for (i = 0; i < 300; i++) {
		if (kill(pid, 0) == -1 && errno == ESRCH)
			return (1);
		snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			return (1);
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
		buf[n > 0 ? n : 0] = '\0';
		if ((p = strrchr(buf, ')')) != NULL && p[1] == ' ' &&
		    p[2] == 'Z')
			return (1);
		usleep(100000);
	}
	return (0);
}

static void
teardown(void)
{
	ts_daemon_kill(&d);
	if (detached > 0) {
		kill_detached();
		gone(detached);
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

/* Start on d's paths: 0 when ready, else the exit status. */
static int
start(void)
{
	if (truncate(d.log, 0) == -1 && errno != ENOENT)
		ck_abort_msg("truncate %s: %s", d.log, strerror(errno));
	return (ts_daemon_start(&d, "--segment-size", "64K", "-o",
	    "prefault=no", NULL));
}

/* The daemon refused to start and its log says each of the texts. */
static void
refused(const char *text, ...)
{
	va_list ap;
	char *log;
	int rc = start();

	log = ts_daemon_log(&d);
	ck_assert_msg(rc == 1, "walmmapd: exit %d, expected 1: %s", rc, log);
	va_start(ap, text);
	for (; text != NULL; text = va_arg(ap, const char *))
		ck_assert_msg(strstr(log, text) != NULL, "\"%s\" not in: %s",
		    text, log);
	va_end(ap);
	free(log);
}

static void
make_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	ck_assert_msg(fd != -1, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

/* A file the attack aims at is as it was: content, mode, owner, group. */
static void
untouched(const char *path, const char *text, mode_t mode)
{
	struct stat st;
	uint8_t *b;
	size_t len;

	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert_msg((st.st_mode & 07777) == mode, "%s: mode %04o, was %04o",
	    path, (unsigned)(st.st_mode & 07777), (unsigned)mode);
	ck_assert_uint_eq(st.st_uid, geteuid());
	ck_assert_uint_eq(st.st_gid, getegid());
	b = ts_read_file(path, &len);
	ck_assert_ptr_nonnull(b);
	ck_assert_msg(len == strlen(text) && memcmp(b, text, len) == 0,
	    "%s was written to (%zu bytes)", path, len);
	free(b);
}

/* A data directory its group or others can write to is refused. */
START_TEST(test_data_dir_writable)
{
	char text[PATH_MAX + 64];

	ck_assert_int_eq(mkdir(d.data, 0700), 0);
	ck_assert_int_eq(chmod(d.data, 0770), 0);
	PATHF(text, "data directory %s (owner uid %u, mode "
	    "0770) can be written by its group or by others", d.data,
	    (unsigned)geteuid());
	refused(text, "chmod go-w", NULL);
	/* Sticky like /tmp is no better: anyone can still plant files. */
	ck_assert_int_eq(chmod(d.data, 01777), 0);
	refused("mode 1777) can be written by its group or by others",
	    "it is a shared directory", NULL);
	ck_assert_int_eq(ts_count_files(d.data, "wal_mmap_"), 0);
	ck_assert_int_eq(chmod(d.data, 0755), 0);
	ck_assert_int_eq(start(), 0);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

static int
make_link(void *arg)
{
	char **p = arg;

	return (symlink(p[0], p[1]) == 0 ? 0 : 1);
}

/*
 * A data directory another user owns is refused, and so is a symbolic
 * link another user made; a link only root could have made is followed
 * (systemd's StateDirectory= with DynamicUser= is one).
 */
START_TEST(test_data_dir_foreign)
{
	char pub[PATH_MAX], real[PATH_MAX], text[PATH_MAX + 64], *args[2];

	if (!is_root("test_data_dir_foreign"))
		return;
	ck_assert_int_eq(chmod(base, 0755), 0);
	ck_assert_int_eq(mkdir(d.data, 0755), 0);
	ck_assert_int_eq(chown(d.data, NOBODY, NOBODY), 0);
	PATHF(text, "data directory %s is owned by uid %u "
	    "(mode 0755), not by uid 0", d.data, NOBODY);
	refused(text, NULL);
	ck_assert_int_eq(ts_count_files(d.data, "wal_mmap_"), 0);
	ts_rmtree(strdup(d.data));

	/* A link in a world-writable directory, made by someone else. */
	PATHF(real, "%s/real", base);
	PATHF(pub, "%s/pub", base);
	ck_assert_int_eq(mkdir(real, 0750), 0);
	ck_assert_int_eq(mkdir(pub, 0755), 0);
	ck_assert_int_eq(chmod(pub, 01777), 0);
	PATHF(d.data, "%s/wal", pub);
	args[0] = real;
	args[1] = d.data;
	ck_assert_int_eq(ts_as_user(NOBODY, NOBODY, make_link, args), 0);
	refused("is a symbolic link owned by uid 65534", NULL);
	ck_assert_int_eq(ts_count_files(real, "wal_mmap_"), 0);

	/* The same link made by root in root's own directory is followed. */
	PATHF(d.data, "%s/link", base);
	ck_assert_int_eq(symlink(real, d.data), 0);
	ck_assert_int_eq(start(), 0);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_gt(ts_count_files(real, "wal_mmap_"), 0);
}
END_TEST

struct plant {
	const char	*dir;		/* the attacker's data directory */
	const char	*target;	/* the file it aims root's writes at */
	mode_t		 mode;		/* of dir */
};

/*
 * The attacker (issue #13, defect 24): a data directory with a segment
 * whose valid record is followed by garbage and a copy of a valid record
 * (a "torn tail" recovery saves before zeroing), and a symbolic link where
 * recovery saves those bytes, pointing at a file of root's.
 */
static int
plant(void *arg)
{
	const struct plant *p = arg;
	struct wal_ring_config rc;
	struct wal_recovery rec;
	struct wal_error err;
	struct wal_ring *r;
	char link[PATH_MAX];
	uint8_t *seg, junk = 0xff;
	size_t len;
	int64_t seq;

	if (mkdir(p->dir, 0700) == -1 || chmod(p->dir, p->mode) == -1)
		return (1);
	memset(&rc, 0, sizeof rc);
	rc.dir = p->dir;
	rc.segment_size = 64 * 1024;
	rc.ring_segments = 2;
	rc.no_prefault = 1;
	if (wal_ring_open(&rc, &r, &rec, &err) != 0)
		return (2);
	if (wal_ring_append(r, "hello", 5, -1, &seq, &err) != 0 || seq != 0)
		return (3);
	wal_ring_close(r);
	/* The record is bytes 16..49; garbage at 49, a copy of it at 50. */
	if ((seg = ts_read_file(ts_seg_path(p->dir, 0), &len)) == NULL ||
	    len < 100)
		return (4);
	if (ts_pwrite_file(ts_seg_path(p->dir, 0), &junk, 1, 49) != 0 ||
	    ts_pwrite_file(ts_seg_path(p->dir, 0), seg + 16, 33, 50) != 0)
		return (5);
	free(seg);
	if (snprintf(link, sizeof link, "%s.discarded-49",
	    ts_seg_path(p->dir, 0)) >= (int)sizeof link ||
	    symlink(p->target, link) == -1)
		return (6);
	return (0);
}

/*
 * Issue #13's attack under a world-writable parent (like -d /tmp/wal): the
 * daemon refuses the planted directory before recovery runs, so root's
 * file is not written through the link, whether the attacker owns the
 * directory or root made it world-writable.
 */
START_TEST(test_discarded_symlink_attack)
{
	const char *secret_text = "root's secret\n";
	char pub[PATH_MAX], secret[PATH_MAX], text[PATH_MAX + 64];
	struct plant p;
	struct stat st;

	if (!is_root("test_discarded_symlink_attack"))
		return;
	ck_assert_int_eq(chmod(base, 0755), 0);
	PATHF(pub, "%s/tmp", base);
	ck_assert_int_eq(mkdir(pub, 0755), 0);
	ck_assert_int_eq(chmod(pub, 01777), 0);
	PATHF(secret, "%s/secret", base);
	make_file(secret, secret_text, 0600);

	/* The attacker's own directory. */
	PATHF(d.data, "%s/wal", pub);
	p.dir = d.data;
	p.target = secret;
	p.mode = 0755;
	ck_assert_int_eq(ts_as_user(NOBODY, NOBODY, plant, &p), 0);
	ck_assert_int_eq(stat(ts_seg_path(d.data, 0), &st), 0);
	ck_assert_uint_eq(st.st_uid, NOBODY);
	PATHF(text, "data directory %s is owned by uid %u",
	    d.data, NOBODY);
	refused(text, NULL);
	untouched(secret, secret_text, 0600);
	ck_assert_int_eq(ts_count_files(d.data, "wal_mmap_0000000000.wal."),
	    1);

	/* A directory of root's that anyone may write to. */
	PATHF(d.data, "%s/wal2", pub);
	p.dir = d.data;
	p.mode = 0777;
	ck_assert_int_eq(ts_as_user(NOBODY, NOBODY, plant, &p), 0);
	ck_assert_int_eq(chown(d.data, 0, 0), 0);
	refused("mode 0777) can be written by its group or by others", NULL);
	untouched(secret, secret_text, 0600);
}
END_TEST

/*
 * The directories walmmapd creates get exact modes whatever the umask:
 * root's umask 077 must not shut clients out of the socket's directory.
 */
START_TEST(test_created_modes)
{
	struct stat st;
	mode_t old;
	char dir[PATH_MAX];
	int rc;

	ck_assert_int_lt(snprintf(d.sock, sizeof d.sock, "%s/run/a/sock",
	    base), (int)sizeof d.sock);
	old = umask(077);
	rc = start();
	umask(old);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(stat(d.data, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0750);
	PATHF(dir, "%s/run", base);
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0755);
	PATHF(dir, "%s/run/a", base);
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0755);
	ck_assert_int_eq(lstat(d.sock, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0666);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(lstat(d.sock, &st), -1);
}
END_TEST

/* A socket directory another user owns or can write to is refused. */
START_TEST(test_socket_dir)
{
	char dir[PATH_MAX], text[PATH_MAX + 64];

	PATHF(dir, "%s/run", base);
	ck_assert_int_lt(snprintf(d.sock, sizeof d.sock, "%s/sock", dir),
	    (int)sizeof d.sock);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	ck_assert_int_eq(chmod(dir, 0777), 0);
	PATHF(text, "socket directory %s (owner uid %u, mode "
	    "0777) can be written by its group or by others", dir,
	    (unsigned)geteuid());
	refused(text, NULL);
	ck_assert_int_eq(access(d.sock, F_OK), -1);
	if (!is_root("test_socket_dir (another user's directory)"))
		return;
	ck_assert_int_eq(chmod(dir, 0755), 0);
	ck_assert_int_eq(chown(dir, NOBODY, NOBODY), 0);
	PATHF(text, "socket directory %s is owned by uid %u",
	    dir, NOBODY);
	refused(text, NULL);
	ck_assert_int_eq(access(d.sock, F_OK), -1);
}
END_TEST

/* A symbolic link where the socket goes is neither followed nor removed. */
START_TEST(test_socket_symlink)
{
	char target[PATH_MAX], buf[PATH_MAX];
	ssize_t n;

	PATHF(target, "%s/target", base);
	make_file(target, "keep\n", 0600);
	ck_assert_int_eq(symlink(target, d.sock), 0);
	refused("not a socket; not touching it", NULL);
	untouched(target, "keep\n", 0600);
	n = readlink(d.sock, buf, sizeof buf - 1);
	ck_assert_int_eq(n, (ssize_t)strlen(target));
}
END_TEST

/*
 * The race of defect 25, won by the attacker every time: right after bind
 * the socket is replaced by a link to another file (tests/bindswap.c).
 * walmmapd sets the mode through the umask and the group without
 * following links, sees the socket is gone and stops; the file the link
 * points at keeps its mode and group.
 */
START_TEST(test_socket_swapped_after_bind)
{
	char target[PATH_MAX], preload[PATH_MAX + 16], swap[PATH_MAX + 32];
	char asan[1100], *env[4], *log;
	const char *old = getenv("ASAN_OPTIONS");
	int rc;

	PATHF(target, "%s/target", base);
	make_file(target, "keep\n", 0600);
	PATHF(preload, "LD_PRELOAD=%s",
	    ts_prog("tests/.libs/libbindswap.so"));
	PATHF(swap, "WALTEST_SWAP_TARGET=%s", target);
	/* A sanitizer runtime must otherwise be the first library. */
	PATHF(asan, "ASAN_OPTIONS=%s%sverify_asan_link_order=0",
	    old != NULL ? old : "", old != NULL && *old != '\0' ? ":" : "");
	env[0] = preload;
	env[1] = swap;
	env[2] = asan;
	env[3] = NULL;
	d.env = env;
	rc = ts_daemon_start(&d, "--segment-size", "64K", "-o",
	    "prefault=no", "-o", "socket_mode=0666", "-o",
	    "socket_group=65534", NULL);
	untouched(target, "keep\n", 0600);
	log = ts_daemon_log(&d);
	ck_assert_msg(rc == 1, "exit %d: %s", rc, log);
	ck_assert_msg(strstr(log, "changed right after walmmapd bound it") !=
	    NULL, "%s", log);
	free(log);
}
END_TEST

/* Connect as uid 65534: exit 0 when refused by the allow-list. */
static int
connect_refused(void *arg)
{
	struct walmmap *w;
	int rc;

	rc = walmmap_connect(&w, arg, WALMMAP_ACK_WRITTEN, 0);
	if (rc == 0) {
		walmmap_close(w);
		return (1);
	}
	if (rc != -WALMMAP_EPERM || strstr(walmmap_errmsg(w), "allow") ==
	    NULL) {
		fprintf(stderr, "connect: %d: %s\n", rc, walmmap_errmsg(w));
		walmmap_close(w);
		return (2);
	}
	walmmap_close(w);
	return (0);
}

/*
 * A reload that cannot read the default configuration file (missing while
 * it is being replaced) keeps the running allow-list and says so as a
 * warning; it does not fall back to the defaults, which admit everyone.
 */
START_TEST(test_reload_missing_config)
{
	char etc[PATH_MAX], conf[PATH_MAX + 16];
	FILE *f;
	int rc;

	if (!is_root("test_reload_missing_config"))
		return;
	ck_assert_int_eq(chmod(base, 0755), 0);
	PATHF(etc, "%s/etc", base);
	ck_assert_int_eq(mkdir(etc, 0755), 0);
	PATHF(conf, "%s/walmmapd.conf", etc);
	ck_assert_ptr_nonnull(f = fopen(conf, "w"));
	fprintf(f, "allow_users = 0\n");
	fclose(f);
	/* No -c: the default file, here systemd's ConfigurationDirectory=. */
	setenv("CONFIGURATION_DIRECTORY", etc, 1);
	rc = start();
	unsetenv("CONFIGURATION_DIRECTORY");
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(ts_as_user(NOBODY, NOBODY, connect_refused, d.sock),
	    0);

	ck_assert_int_eq(unlink(conf), 0);
	ts_daemon_signal(&d, SIGHUP);
	ck_assert(ts_daemon_log_wait(&d, "walmmapd: reload: "));
	ck_assert_int_eq(ts_as_user(NOBODY, NOBODY, connect_refused, d.sock),
	    0);
	ck_assert(ts_daemon_log_wait(&d, "<4>walmmapd: reload: cannot read "
	    "config file"));
	ck_assert(ts_daemon_log_wait(&d, "keeping the running configuration"));
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* The pid `walctl status` reports, or 0. */
static pid_t
status_pid(void)
{
	char *out, *p;
	long pid = 0;

	if (ts_run_prog("client/walctl", NULL, 0, &out, "-s", d.sock,
	    "status", NULL) == 0 && (p = strstr(out, "walmmapd pid ")) != NULL)
		pid = strtol(p + strlen("walmmapd pid "), NULL, 10);
	free(out);
	return ((pid_t)pid);
}

/*
 * The README's run command (detached): a start that fails prints why on
 * standard error and exits non-zero, and one that succeeds exits 0 once
 * the daemon answers. A failed assertion ends the test without teardown,
 * so nothing is asserted while the detached daemon runs: the outcomes are
 * kept and checked once it is stopped.
 */
START_TEST(test_detached_start)
{
	char bad[PATH_MAX], *out, *second, *baddir, *nofile;
	int rc, rc2, rc3, rc4;
	pid_t first, again;

	/* What would keep it in the foreground. */
	unsetenv("NOTIFY_SOCKET");
	unsetenv("LISTEN_FDS");
	unsetenv("INVOCATION_ID");
	rc = ts_run_prog("daemon/walmmapd", NULL, 0, &out, "-d", d.data, "-s",
	    d.sock, "--segment-size", "64K", "-o", "prefault=no", NULL);
	detached = status_pid();
	if (rc != 0 || detached <= 0) {
		kill_detached();
		ck_abort_msg("first start: exit %d, pid %ld: %s", rc,
		    (long)detached, out);
	}
	free(out);

	/* Twice on one directory: the second says why it cannot. */
	rc2 = ts_run_prog("daemon/walmmapd", NULL, 0, &second, "-d", d.data,
	    "-s", d.sock, "--segment-size", "64K", "-o", "prefault=no", NULL);
	again = status_pid();
	/* A directory that cannot be made. */
	PATHF(bad, "%s/no/such/dir", base);
	rc3 = ts_run_prog("daemon/walmmapd", NULL, 0, &baddir, "-d", bad, "-s",
	    d.sock, NULL);
	/* Too few descriptors, wherever that stops it. */
	PATHF(bad, "%s/data2", base);
	rc4 = ts_run_prog_nofile("daemon/walmmapd", 8, &nofile, "-d", bad, "-s",
	    d.sock, NULL);

	first = detached;
	kill(detached, SIGTERM);
	if (!gone(detached)) {
		kill_detached();
		ck_abort_msg("walmmapd ignored SIGTERM for 30 s");
	}
	detached = 0;
	ck_assert_int_eq(access(d.sock, F_OK), -1);

	ck_assert_msg(rc2 != 0, "second start: exit 0: %s", second);
	ck_assert_msg(strstr(second, "in use by another writer") != NULL, "%s",
	    second);
	ck_assert_int_eq(again, first);
	free(second);
	ck_assert_msg(rc3 != 0, "bad directory: exit 0: %s", baddir);
	ck_assert_msg(strstr(baddir, "cannot create data directory") != NULL,
	    "%s", baddir);
	free(baddir);
	ck_assert_msg(rc4 != 0, "8 descriptors: exit 0: %s", nofile);
	ck_assert_msg(strstr(nofile, "Too many open files") != NULL, "%s",
	    nofile);
	free(nofile);
}
END_TEST

static Suite *
security_suite(void)
{
	Suite *s = suite_create("security");
	TCase *tc = tcase_create("local");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_data_dir_writable);
	tcase_add_test(tc, test_data_dir_foreign);
	tcase_add_test(tc, test_discarded_symlink_attack);
	tcase_add_test(tc, test_created_modes);
	tcase_add_test(tc, test_socket_dir);
	tcase_add_test(tc, test_socket_symlink);
	tcase_add_test(tc, test_socket_swapped_after_bind);
	tcase_add_test(tc, test_reload_missing_config);
	tcase_add_test(tc, test_detached_start);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(security_suite()));
}
