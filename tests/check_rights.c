/*
 * walmmapd tests - read, write and admin rights: for each right a uid that
 * holds it and one that does not (each client runs in a child that
 * switched to that uid with setresuid, so the suite needs root and skips
 * with a message without it), the defaults, supplementary groups, the
 * lists of earlier versions, a reload that takes rights away from
 * connected clients, the per-uid caps, and a daemon in a user namespace
 * (what systemd's PrivateUsers=yes does to it).
 */
#include "config.h"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "testsupport.h"
#include "tsdaemon.h"
#include "walmmap.h"
#include "wal_proto.h"
#include "wal_shm.h"

#define NOBODY	65534

#define PATHF(buf, ...)							\
	ck_assert_int_lt(snprintf(buf, sizeof buf, __VA_ARGS__),	\
	    (int)sizeof buf)

static char		*base;
static struct ts_daemon	 d;
static char		 conf[PATH_MAX];

/* What a client tries. */
enum op {
	OP_CONNECT,	/* connect and HELLO */
	OP_APPEND,	/* one record, written */
	OP_TAIL,	/* subscribe from 0, read one record */
	OP_ROTATE,
};

static const char *const op_names[] = { "connect", "append", "tail",
    "rotate" };

struct try {
	const char	*sock;
	enum op		 op;
	int		 expect;	/* 0, or the -WALMMAP_E* expected */
	const char	*text;		/* in the error's message, or NULL */
};

static void
setup(void)
{
	signal(SIGPIPE, SIG_IGN);	/* a child that is done already */
	base = ts_mkdtemp("rights");
	ck_assert_int_eq(chmod(base, 0755), 0);
	ts_daemon_init(&d, base);
	PATHF(conf, "%s/walmmapd.conf", base);
}

static void
teardown(void)
{
	char *log;

	if (getenv("TS_SHOW_LOG") != NULL && (log = ts_daemon_log(&d)) !=
	    NULL) {
		fprintf(stderr, "---- walmmapd log ----\n%s", log);
		free(log);
	}
	ts_daemon_kill(&d);
	if (d.notify_fd != -1)
		close(d.notify_fd);
	ts_rmtree(base);
}

static int
is_root(const char *test)
{
	if (geteuid() == 0)
		return (1);
	fprintf(stderr, "%s: skipped (needs root to act as other users)\n",
	    test);
	return (0);
}

static void
write_conf(const char *text)
{
	ck_assert_int_eq(ts_write_file(conf, text, strlen(text)), 0);
}

/* Start with conf: 0 when ready, else the exit status. */
static int
start(void)
{
	return (ts_daemon_start(&d, "--segment-size", "64K", "-o",
	    "prefault=no", "-c", conf, NULL));
}

/* The outcome of one try: 0 when it went as expected, else 1 (says why). */
static int
try_cb(void *arg)
{
	const struct try *t = arg;
	struct walmmap *w = NULL;
	struct walmmap_reader *r = NULL;
	struct walmmap_record rec;
	const char *msg = "";
	int64_t seq;
	int rc;

	if (t->op == OP_TAIL) {
		rc = walmmap_subscribe(&r, t->sock, 0, -1, 0);
		if (rc == 0) {
			rc = walmmap_reader_next(r, &rec, 10000);
			rc = rc == 1 ? 0 : rc == 0 ? -WALMMAP_ETIMEDOUT : rc;
		}
		if (r != NULL)
			msg = walmmap_reader_errmsg(r);
	} else {
		rc = walmmap_connect(&w, t->sock, WALMMAP_ACK_WRITTEN, 0);
		if (rc == 0 && t->op == OP_APPEND)
			rc = walmmap_append(w, "x", 1, WALMMAP_ACK_WRITTEN, &seq);
		else if (rc == 0 && t->op == OP_ROTATE)
			rc = walmmap_rotate(w);
		if (w != NULL)
			msg = walmmap_errmsg(w);
	}
	if (rc > 0)
		rc = -rc;
	if (rc != t->expect || (t->expect != 0 && t->text != NULL &&
	    (msg == NULL || strstr(msg, t->text) == NULL))) {
		fprintf(stderr, "uid %ld %s: rc %d (%s), expected %d \"%s\"\n",
		    (long)getuid(), op_names[t->op], rc, msg, t->expect,
		    t->text != NULL ? t->text : "");
		rc = 1;
	} else
		rc = 0;
	if (r != NULL)
		walmmap_reader_close(r);
	if (w != NULL)
		walmmap_close(w);
	return (rc);
}

/* uid (gid, groups) tries op; asserts the outcome. */
static void
expect_as(uid_t uid, gid_t gid, size_t ng, const gid_t *groups, enum op op,
    int expect, const char *text)
{
	struct try t = { d.sock, op, expect, text };

	ck_assert_msg(ts_as_user_groups(uid, gid, ng, groups, try_cb, &t) == 0,
	    "uid %ld gid %ld: %s: not as expected (see above)", (long)uid,
	    (long)gid, op_names[op]);
}

static void
expect(uid_t uid, enum op op, int expect, const char *text)
{
	expect_as(uid, uid, 0, NULL, op, expect, text);
}

/* Root appends one record (so a tail has something to read). */
static void
root_append(void)
{
	char *out;
	int rc;

	rc = ts_run_prog("client/walctl", "r\n", 2, &out, "-s", d.sock,
	    "append", NULL);
	ck_assert_msg(rc == 0, "walctl append: %d: %s", rc, out);
	free(out);
}

/*
 * No configuration: anyone the socket lets in may append; reading takes
 * root, walmmapd's user or who could read the segment files (the data
 * directory's group, supplementary groups included); admin takes root.
 */
START_TEST(test_defaults)
{
	const gid_t g4242[] = { 4242 };

	if (!is_root("test_defaults"))
		return;
	/* The set-up: mode 0700, socket 0666 (the default). */
	ck_assert_int_eq(mkdir(d.data, 0700), 0);
	write_conf("# nothing\n");
	ck_assert_int_eq(start(), 0);
	root_append();

	expect(NOBODY, OP_APPEND, 0, NULL);
	expect(NOBODY, OP_TAIL, -WALMMAP_EPERM, "needs the read right");
	expect(NOBODY, OP_ROTATE, -WALMMAP_EPERM, "needs the admin right");
	expect(0, OP_TAIL, 0, NULL);
	expect(0, OP_ROTATE, 0, NULL);
	ck_assert(ts_daemon_log_wait(&d, "refused SUBSCRIBE from pid "));
	ck_assert(ts_daemon_log_wait(&d, "uid 65534: no read right"));
	ck_assert(ts_daemon_log_wait(&d, "refused ROTATE from pid "));

	/* The directory's group may read it: its members may read. */
	ck_assert_int_eq(chown(d.data, 0, 4242), 0);
	ck_assert_int_eq(chmod(d.data, 0750), 0);
	expect_as(1001, 1001, 1, g4242, OP_TAIL, 0, NULL);
	expect_as(1001, 4242, 0, NULL, OP_TAIL, 0, NULL);
	expect(1001, OP_TAIL, -WALMMAP_EPERM, "read right");
	expect_as(1001, 1001, 1, g4242, OP_ROTATE, -WALMMAP_EPERM, "admin");
	/* A group that may not list the directory gives nothing. */
	ck_assert_int_eq(chmod(d.data, 0710), 0);
	expect_as(1001, 1001, 1, g4242, OP_TAIL, -WALMMAP_EPERM, "read");
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* allow_readers, allow_writers, allow_admins: each admits its own. */
START_TEST(test_lists)
{
	const gid_t g4343[] = { 4343 };

	if (!is_root("test_lists"))
		return;
	write_conf("allow_readers = 1001, @4343\n"
	    "allow_writers = 1002\n"
	    "allow_admins = 1003 @4444\n");
	ck_assert_int_eq(start(), 0);
	root_append();

	expect(1001, OP_TAIL, 0, NULL);
	expect(1001, OP_APPEND, -WALMMAP_EPERM, "needs the write right");
	expect(1001, OP_ROTATE, -WALMMAP_EPERM, "needs the admin right");
	expect(1002, OP_APPEND, 0, NULL);
	expect(1002, OP_TAIL, -WALMMAP_EPERM, "allow_readers");
	expect(1002, OP_ROTATE, -WALMMAP_EPERM, "allow_admins");
	expect(1003, OP_ROTATE, 0, NULL);
	expect(1003, OP_APPEND, -WALMMAP_EPERM, "allow_writers");
	expect(1003, OP_TAIL, -WALMMAP_EPERM, "read right");
	expect_as(1005, 1005, 1, g4343, OP_TAIL, 0, NULL);
	expect_as(1006, 4444, 0, NULL, OP_ROTATE, 0, NULL);
	/* No right at all: refused when it connects. */
	expect(1004, OP_CONNECT, -WALMMAP_EPERM, "holds no right");
	expect(0, OP_APPEND, 0, NULL);
	expect(0, OP_TAIL, 0, NULL);
	ck_assert(ts_daemon_log_wait(&d, "refused pid "));
	ck_assert(ts_daemon_log_wait(&d, "uid 1004 gid 1004: uid 1004 holds "
	    "no right"));
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * allow_users/allow_groups of earlier versions still work (read and write,
 * not admin); an empty list, which once admitted everyone, is refused.
 */
START_TEST(test_legacy)
{
	const gid_t g4545[] = { 4545 };
	char *log;

	if (!is_root("test_legacy"))
		return;
	write_conf("allow_users = 1001\nallow_groups = 4545\n");
	ck_assert_int_eq(start(), 0);
	root_append();
	expect(1001, OP_APPEND, 0, NULL);
	expect(1001, OP_TAIL, 0, NULL);
	expect(1001, OP_ROTATE, -WALMMAP_EPERM, "admin");
	/* Supplementary groups count, not only the primary one. */
	expect_as(1007, 1007, 1, g4545, OP_APPEND, 0, NULL);
	expect(1002, OP_CONNECT, -WALMMAP_EPERM, "allow_users");
	ck_assert_int_eq(ts_daemon_stop(&d), 0);

	write_conf("allow_users =\n");
	ck_assert_int_eq(start(), 1);
	log = ts_daemon_log(&d);
	ck_assert_msg(strstr(log, "allow_users: empty") != NULL, "%s", log);
	free(log);
	/* Separators alone name nobody either: not the defaults, silently. */
	write_conf("allow_users = ,\n");
	ck_assert_int_eq(start(), 1);
	log = ts_daemon_log(&d);
	ck_assert_msg(strstr(log, "allow_users: \",\" names nobody") != NULL,
	    "%s", log);
	free(log);
	write_conf("allow_groups = , ,\n");
	ck_assert_int_eq(start(), 1);
	log = ts_daemon_log(&d);
	ck_assert_msg(strstr(log, "allow_groups: \", ,\" names nobody") !=
	    NULL, "%s", log);
	free(log);
	write_conf("allow_readers =\n");
	ck_assert_int_eq(start(), 1);
	log = ts_daemon_log(&d);
	ck_assert_msg(strstr(log, "allow_readers: empty; write \"none\"") !=
	    NULL, "%s", log);
	free(log);
	write_conf("allow_writers = all, 1001\n");
	ck_assert_int_eq(start(), 1);
	write_conf("allow_admins = nosuchuser\n");
	ck_assert_int_eq(start(), 1);
	log = ts_daemon_log(&d);
	ck_assert_msg(strstr(log, "no user \"nosuchuser\"") != NULL, "%s",
	    log);
	free(log);
}
END_TEST

/* A child as uid that keeps a subscription or a ring across a reload. */
struct held {
	int		 ready[2];	/* child -> test: "it runs" */
	int		 go[2];		/* test -> child: "reloaded" */
	int		 shm;		/* a ring producer, else a subscriber */
	const char	*sock;
};

static int
held_cb(void *arg)
{
	struct held *h = arg;
	struct walmmap_reader *r;
	struct walmmap_record rec;
	struct walmmap *w;
	int64_t seq;
	int rc;
	char c;

	if (h->shm) {
		/*
		 * Rings of connections just closed hold their memory until
		 * drained and freed: ask again (10 s at most).
		 */
		for (rc = 0; rc < 100; rc++) {
			if (walmmap_connect(&w, h->sock, WALMMAP_ACK_WRITTEN,
			    WALMMAP_SHM) != 0)
				return (2);
			if (walmmap_shm_active(w, NULL) == 1)
				break;
			walmmap_close(w);
			usleep(100000);
		}
		if (rc == 100 || walmmap_append(w, "p", 1,
		    WALMMAP_ACK_WRITTEN, &seq) != 0)
			return (2);
		(void)write(h->ready[1], "r", 1);
		(void)read(h->go[0], &c, 1);
		/* The daemon closed us: this append is not written. */
		rc = walmmap_append(w, "q", 1, WALMMAP_ACK_WRITTEN, &seq);
		if (rc == 0) {
			fprintf(stderr, "ring append after the reload: seq %lld\n",
			    (long long)seq);
			return (3);
		}
		fprintf(stderr, "ring after the reload: %s\n",
		    walmmap_errmsg(w));
		return (strstr(walmmap_errmsg(w), "write right") != NULL ?
		    0 : 4);
	}
	if (walmmap_subscribe(&r, h->sock, 0, -1, WALMMAP_FOLLOW) != 0 ||
	    walmmap_reader_next(r, &rec, 10000) != 1)
		return (2);
	(void)write(h->ready[1], "r", 1);
	/* Records (the ring's) until the end the reload brings. */
	while ((rc = walmmap_reader_next(r, &rec, 30000)) == 1)
		continue;
	fprintf(stderr, "subscription after the reload: %d: %s\n", rc,
	    walmmap_reader_errmsg(r));
	if (rc == -WALMMAP_EPERM && strstr(walmmap_reader_errmsg(r),
	    "no longer holds the read right") != NULL)
		return (0);
	return (3);
}

/* Fork held_cb as uid; returns its pid once it is ready. */
static pid_t
held_start(struct held *h, uid_t uid)
{
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(h->ready), 0);
	ck_assert_int_eq(pipe(h->go), 0);
	h->sock = d.sock;
	if ((pid = fork()) == 0) {
		alarm(60);
		_exit(ts_as_user(uid, uid, held_cb, h));
	}
	ck_assert_int_gt(pid, 0);
	close(h->ready[1]);
	close(h->go[0]);
	ck_assert_msg(read(h->ready[0], &c, 1) == 1, "uid %ld's client did "
	    "not start", (long)uid);
	return (pid);
}

static int
held_end(struct held *h, pid_t pid)
{
	int status;

	(void)write(h->go[1], "g", 1);
	close(h->go[1]);
	close(h->ready[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return (WIFEXITED(status) ? WEXITSTATUS(status) : 128 +
	    WTERMSIG(status));
}

/*
 * A reload that takes a right away stops what connected clients do with
 * it: the subscription ends, the ring producer is closed.
 */
START_TEST(test_reload_revokes)
{
	struct held sub, ring;
	pid_t sp, rp;

	if (!is_root("test_reload_revokes"))
		return;
	write_conf("allow_readers = 1001\nallow_writers = all\n");
	ck_assert_int_eq(start(), 0);
	root_append();
	sub.shm = 0;
	sp = held_start(&sub, 1001);
	ring.shm = 1;
	rp = held_start(&ring, 1002);

	write_conf("allow_readers = none\nallow_writers = 1003\n");
	ts_daemon_signal(&d, SIGHUP);
	ck_assert(ts_daemon_log_wait(&d, "configuration reloaded"));
	ck_assert(ts_daemon_log_wait(&d, "subscriber pid "));
	ck_assert(ts_daemon_log_wait(&d, "lost the read right; ending its "
	    "subscription"));
	ck_assert(ts_daemon_log_wait(&d, "lost the write right; closing it"));
	ck_assert_int_eq(held_end(&sub, sp), 0);
	ck_assert_int_eq(held_end(&ring, rp), 0);
	/* New clients meet the new lists too. */
	expect(1001, OP_TAIL, -WALMMAP_EPERM, "holds no right");
	expect(1003, OP_APPEND, 0, NULL);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* Three connections of one uid with rings: what each got. */
static int
caps_cb(void *arg)
{
	struct walmmap *w[4] = { NULL, NULL, NULL, NULL };
	const char *why = "";
	int i, rc, bad = 0;

	for (i = 0; i < 4; i++) {
		rc = walmmap_connect(&w[i], arg, WALMMAP_ACK_WRITTEN,
		    WALMMAP_SHM);
		if (i < 3 && rc != 0) {
			fprintf(stderr, "connection %d: %s\n", i,
			    walmmap_errmsg(w[i]));
			bad = 1;
		} else if (i < 2 && walmmap_shm_active(w[i], &why) != 1) {
			fprintf(stderr, "ring %d: %s\n", i, why);
			bad = 1;
		} else if (i == 2 && (walmmap_shm_active(w[i], &why) != 0 ||
		    strstr(why, "shm_total_per_uid") == NULL)) {
			fprintf(stderr, "third ring: \"%s\"\n", why);
			bad = 1;
		} else if (i == 3 && (rc != -WALMMAP_EBUSY || strstr(
		    walmmap_errmsg(w[i]), "max_connections_per_uid") == NULL)) {
			fprintf(stderr, "fourth connection: %d: %s\n", rc,
			    walmmap_errmsg(w[i]));
			bad = 1;
		}
	}
	for (i = 0; i < 4; i++)
		if (w[i] != NULL)
			walmmap_close(w[i]);
	return (bad);
}

/* One ring of another uid, while uid 1001 holds its share. */
static int
one_ring_cb(void *arg)
{
	struct walmmap *w;
	const char *why = "";
	int ok;

	if (walmmap_connect(&w, arg, WALMMAP_ACK_WRITTEN, WALMMAP_SHM) != 0)
		return (1);
	ok = walmmap_shm_active(w, &why) == 1;
	if (!ok)
		fprintf(stderr, "uid 1002's ring: %s\n", why);
	walmmap_close(w);
	return (ok ? 0 : 1);
}

/*
 * One uid may hold max_connections_per_uid connections and
 * shm_total_per_uid of ring memory; another uid still gets its own.
 */
START_TEST(test_per_uid_caps)
{
	struct held h;
	pid_t pid;

	if (!is_root("test_per_uid_caps"))
		return;
	write_conf("max_connections_per_uid = 3\nshm_size = 64K\n"
	    "shm_total_per_uid = 136K\n");
	ck_assert_int_eq(start(), 0);
	ck_assert_int_eq(ts_as_user(1001, 1001, caps_cb, d.sock), 0);
	ck_assert(ts_daemon_log_wait(&d, "uid 1001: no shared-memory ring: "
	    "its uid holds shm_total_per_uid"));
	/* While uid 1001 holds a ring, uid 1002 gets one. */
	h.shm = 1;
	pid = held_start(&h, 1001);
	ck_assert_int_eq(ts_as_user(1002, 1002, one_ring_cb, d.sock), 0);
	kill(pid, SIGKILL);
	close(h.go[1]);
	close(h.ready[0]);
	waitpid(pid, NULL, 0);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * A daemon in a user namespace that maps only root (what PrivateUsers=yes
 * does) sees every other client as uid 65534: it says so when it starts,
 * and such a client holds only what "all" grants, whatever the lists name
 * (allow_readers = 1001 must not admit everyone). In a namespace that maps
 * the clients' uids, the rights work.
 */
START_TEST(test_user_namespace)
{
	char prog[PATH_MAX], one[] = "1", many[] = "65536", *out;
	char *const only_root[] = { prog, one, NULL };
	char *const mapped[] = { prog, many, NULL };
	int rc;

	if (!is_root("test_user_namespace"))
		return;
	PATHF(prog, "%s", ts_prog("tests/usernsmap"));
	rc = ts_run_prog("tests/usernsmap", NULL, 0, &out, "1", "true", NULL);
	free(out);
	if (rc != 0) {
		fprintf(stderr, "test_user_namespace: skipped (no user "
		    "namespaces here)\n");
		return;
	}
	write_conf("allow_readers = 1001, 65534\n");
	d.prefix = only_root;
	ck_assert_int_eq(start(), 0);
	ck_assert(ts_daemon_log_wait(&d, "walmmapd runs in a user namespace "
	    "that maps 1 uid"));
	root_append();
	expect(1001, OP_TAIL, -WALMMAP_EPERM, "user namespace");
	expect(NOBODY, OP_TAIL, -WALMMAP_EPERM, "user namespace");
	expect(1001, OP_APPEND, 0, NULL);	/* writers: all by default */
	ck_assert_int_eq(ts_daemon_stop(&d), 0);

	d.prefix = mapped;
	ck_assert_int_eq(truncate(d.log, 0), 0);
	ck_assert_int_eq(start(), 0);
	rc = ts_run_prog("client/walctl", NULL, 0, &out, "-s", d.sock,
	    "status", NULL);
	ck_assert_msg(rc == 0, "%s", out);
	free(out);
	expect(1001, OP_TAIL, 0, NULL);
	expect(1002, OP_TAIL, -WALMMAP_EPERM, "read right");
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	d.prefix = NULL;
}
END_TEST

/* Run a shell command; its output on stderr (the test log). */
static int
shell(const char *fmt, ...)
{
	char cmd[4 * PATH_MAX];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	ck_assert_int_lt(vsnprintf(cmd, sizeof cmd, fmt, ap), (int)sizeof cmd);
	va_end(ap);
	fprintf(stderr, "$ %s\n", cmd);
	fflush(stderr);
	rc = system(cmd);
	return (WIFEXITED(rc) ? WEXITSTATUS(rc) : 128);
}

/* The "Overall exposure level" systemd-analyze printed for unit. */
static double
exposure(const char *dir, const char *unit)
{
	char cmd[2 * PATH_MAX], line[512], *p;
	double level = 99;
	FILE *f;

	PATHF(cmd, "cd %s && SYSTEMD_UNIT_PATH=%s: systemd-analyze security "
	    "--offline=true --no-pager %s 2>&1", dir, dir, unit);
	ck_assert_ptr_nonnull(f = popen(cmd, "r"));
	while (fgets(line, sizeof line, f) != NULL)
		if ((p = strstr(line, "Overall exposure level for ")) != NULL) {
			fprintf(stderr, "%s", p);
			if ((p = strchr(p, ':')) != NULL)
				level = strtod(p + 1, NULL);
		}
	pclose(f);
	return (level);
}

/*
 * The shipped units: systemd-analyze verify passes (the plain ones and an
 * instance of the templates), the exposure of each service stays at most
 * 2.0 (printed in the test log), the socket is 0660 for the walmmap group
 * that the sysusers.d file creates, and no unit puts walmmapd in a user
 * namespace.
 */
START_TEST(test_units)
{
	static const char *const units[] = { "walmmapd.service",
	    "walmmapd.socket", "walmmapd@.service", "walmmapd@.socket" };
	char dir[PATH_MAX], root[PATH_MAX], prog[PATH_MAX], src[PATH_MAX];
	char *text;
	size_t i, len;
	double e;

	if (shell("command -v systemd-analyze >/dev/null") != 0) {
		fprintf(stderr, "test_units: skipped (no systemd-analyze)\n");
		return;
	}
	PATHF(dir, "%s/units", base);
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	/* As installed, but walmmapd from the build tree (verify runs it). */
	PATHF(prog, "%s", ts_prog("daemon/walmmapd"));
	for (i = 0; i < sizeof units / sizeof units[0]; i++) {
		PATHF(root, "systemd/%s", units[i]);
		PATHF(src, "%s", ts_prog(root));
		ck_assert_int_eq(shell("sed 's|^ExecStart=[^ ]*walmmapd|"
		    "ExecStart=%s|' %s > '%s/%s'", prog, src, dir, units[i]), 0);
		PATHF(root, "%s/%s", dir, units[i]);
		text = (char *)ts_read_file(root, &len);
		ck_assert_ptr_nonnull(text);
		/* Not NUL-terminated. */
		ck_assert_ptr_nonnull(text = realloc(text, len + 1));
		text[len] = '\0';
		ck_assert_msg(strstr(text, "\nPrivateUsers=yes") == NULL,
		    "%s puts walmmapd in a user namespace", units[i]);
		if (strstr(units[i], ".socket") != NULL)
			ck_assert_msg(strstr(text, "\nSocketMode=0660\n") !=
			    NULL && strstr(text, "\nSocketGroup=walmmap\n") !=
			    NULL, "%s: %s", units[i], text);
		free(text);
	}
	ck_assert_int_eq(shell("cd %s && SYSTEMD_UNIT_PATH=%s: systemd-analyze "
	    "verify --man=no walmmapd.socket walmmapd.service "
	    "walmmapd@audit.socket walmmapd@audit.service 2>&1 >&2", dir, dir),
	    0);
	e = exposure(dir, "walmmapd.service");
	ck_assert_msg(e <= 2.0, "walmmapd.service: exposure %.1f", e);
	e = exposure(dir, "walmmapd@audit.service");
	ck_assert_msg(e <= 2.0, "walmmapd@audit.service: exposure %.1f", e);

	/* The sysusers.d file makes the user and the group. */
	PATHF(root, "%s/root", base);
	ck_assert_int_eq(mkdir(root, 0755), 0);
	PATHF(src, "%s/etc", root);
	ck_assert_int_eq(mkdir(src, 0755), 0);
	if (shell("command -v systemd-sysusers >/dev/null") == 0) {
		ck_assert_int_eq(shell("systemd-sysusers --root=%s %s >&2 2>&1",
		    root, ts_prog("systemd/walmmapd.sysusers")), 0);
		ck_assert_int_eq(shell("grep -q '^walmmapd:' %s/etc/passwd && "
		    "grep -q '^walmmap:x:[0-9]*:walmmapd$' %s/etc/group", root,
		    root), 0);
	}
}
END_TEST

/* As uid 1001 with XDG_RUNTIME_DIR: walctl through namespaces. */
struct ns_try {
	const char	*xdg;
	const char	*ns;		/* -n, or NULL */
	const char	*env_ns;	/* WALMMAP_NAMESPACE, or NULL */
	const char	*cmd;		/* "append", "tail" */
	const char	*input;
	const char	*want;		/* in the output, or NULL */
	const char	*not;		/* not in it, or NULL */
	int		 status;	/* walctl's exit status */
};

static int
ns_cb(void *arg)
{
	const struct ns_try *t = arg;
	char *out;
	int rc;

	setenv("XDG_RUNTIME_DIR", t->xdg, 1);
	unsetenv("WALMMAP_SOCKET");
	if (t->env_ns != NULL)
		setenv("WALMMAP_NAMESPACE", t->env_ns, 1);
	else
		unsetenv("WALMMAP_NAMESPACE");
	if (t->ns != NULL)
		rc = ts_run_prog("client/walctl", t->input, t->input != NULL ?
		    strlen(t->input) : 0, &out, "-n", t->ns, t->cmd, NULL);
	else
		rc = ts_run_prog("client/walctl", t->input, t->input != NULL ?
		    strlen(t->input) : 0, &out, t->cmd, NULL);
	if (rc != t->status || (t->want != NULL && strstr(out, t->want) ==
	    NULL) || (t->not != NULL && strstr(out, t->not) != NULL)) {
		fprintf(stderr, "walctl %s%s %s (WALMMAP_NAMESPACE=%s): exit %d, "
		    "expected %d with \"%s\", without \"%s\":\n%s\n",
		    t->ns != NULL ? "-n " : "", t->ns != NULL ? t->ns : "",
		    t->cmd, t->env_ns != NULL ? t->env_ns : "", rc, t->status,
		    t->want != NULL ? t->want : "", t->not != NULL ? t->not : "",
		    out);
		free(out);
		return (1);
	}
	free(out);
	return (0);
}

/* The environment systemd gives walmmapd@NAME.service. */
struct ns_env {
	char	 state[PATH_MAX + 32];
	char	 run[PATH_MAX + 32];
	char	 conf[PATH_MAX + 32];
	char	*env[4];
};

/* Start namespace ns as the template unit would (environment, -n). */
static void
ns_start(struct ts_daemon *nd, const char *ns, struct ns_env *e,
    const char *xdg)
{
	char sub[PATH_MAX];

	PATHF(sub, "%s/%s", base, ns);
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	ts_daemon_init(nd, sub);
	nd->no_paths = 1;
	/* StateDirectory=walmmapd/%i, RuntimeDirectory=walmmapd */
	PATHF(e->state, "STATE_DIRECTORY=%s/state", sub);
	PATHF(e->run, "RUNTIME_DIRECTORY=%s/walmmapd", xdg);
	PATHF(e->conf, "CONFIGURATION_DIRECTORY=%s/etc", base);
	e->env[0] = e->state;
	e->env[1] = e->run;
	e->env[2] = e->conf;
	e->env[3] = NULL;
	nd->env = e->env;
	ck_assert_int_eq(ts_daemon_start(nd, "-n", ns, NULL), 0);
}

/*
 * Two namespaces side by side, each started as walmmapd@NAME would be:
 * each reads its own walmmapd@NAME.conf, keeps its own directory and
 * socket, and neither sees the other's records, whether the client names
 * the namespace with walctl -n or WALMMAP_NAMESPACE.
 */
START_TEST(test_namespaces)
{
	struct ts_daemon a, b;
	char xdg[PATH_MAX], etc[PATH_MAX], path[PATH_MAX + 32], *log;
	struct ns_env ea, eb;
	const char *text;
	struct ns_try t;

	if (!is_root("test_namespaces"))
		return;
	PATHF(xdg, "%s/xdg", base);
	PATHF(etc, "%s/etc", base);
	ck_assert_int_eq(mkdir(xdg, 0755), 0);
	ck_assert_int_eq(mkdir(etc, 0755), 0);
	PATHF(path, "%s/walmmapd@audit.conf", etc);
	text = "segment_size = 64K\nprefault = no\nallow_readers = all\n";
	ck_assert_int_eq(ts_write_file(path, text, strlen(text)), 0);
	PATHF(path, "%s/walmmapd@market.conf", etc);
	text = "segment_size = 128K\nprefault = no\nallow_readers = all\n";
	ck_assert_int_eq(ts_write_file(path, text, strlen(text)), 0);
	ns_start(&a, "audit", &ea, xdg);
	ns_start(&b, "market", &eb, xdg);
	log = ts_daemon_log(&a);
	ck_assert_msg(strstr(log, "/xdg/walmmapd/audit.sock, segments of "
	    "65536 bytes") != NULL, "%s", log);
	free(log);
	log = ts_daemon_log(&b);
	ck_assert_msg(strstr(log, "/xdg/walmmapd/market.sock, segments of "
	    "131072 bytes") != NULL, "%s", log);
	free(log);

	memset(&t, 0, sizeof t);
	t.xdg = xdg;
	t.ns = "audit";
	t.cmd = "append";
	t.input = "for-audit\n";
	ck_assert_int_eq(ts_as_user(1001, 1001, ns_cb, &t), 0);
	t.ns = NULL;
	t.env_ns = "market";
	t.input = "for-market\n";
	ck_assert_int_eq(ts_as_user(1001, 1001, ns_cb, &t), 0);

	t.input = NULL;
	t.cmd = "tail";
	t.ns = "audit";
	t.env_ns = "market";	/* -n wins */
	t.want = "for-audit";
	t.not = "for-market";
	ck_assert_int_eq(ts_as_user(1001, 1001, ns_cb, &t), 0);
	t.ns = NULL;
	t.want = "for-market";
	t.not = "for-audit";
	ck_assert_int_eq(ts_as_user(1001, 1001, ns_cb, &t), 0);
	/* A name that is not one reaches no log. */
	t.env_ns = "../audit";
	t.want = "not a namespace name";
	t.not = NULL;
	t.status = 2;
	if (ts_as_user(1001, 1001, ns_cb, &t) != 0) {
		t.status = 1;
		ck_assert_int_eq(ts_as_user(1001, 1001, ns_cb, &t), 0);
	}
	/* Each log lives in its own directory. */
	PATHF(path, "%s/audit/state/wal_mmap_0000000000.wal", base);
	ck_assert_int_eq(access(path, F_OK), 0);
	PATHF(path, "%s/market/state/wal_mmap_0000000000.wal", base);
	ck_assert_int_eq(access(path, F_OK), 0);
	ck_assert_int_eq(ts_daemon_stop(&a), 0);
	ck_assert_int_eq(ts_daemon_stop(&b), 0);
	if (a.notify_fd != -1)
		close(a.notify_fd);
	if (b.notify_fd != -1)
		close(b.notify_fd);
}
END_TEST

/*
 * Under socket activation socket_mode and socket_group do not apply (the
 * socket unit's SocketMode= and SocketGroup= do): walmmapd says so when
 * they are set, and not otherwise.
 */
START_TEST(test_activation_ignores_socket_mode)
{
	char path[PATH_MAX], script[256], *log;
	char *prefix[] = { (char *)"/bin/sh", (char *)"-c", script, NULL };
	struct sockaddr_un sun;
	int l, round;

	PATHF(path, "%s/activated.sock", base);
	for (round = 0; round < 2; round++) {
		/* What systemd does: a listening socket as descriptor 3. */
		l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
		ck_assert_int_ge(l, 0);
		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		ck_assert_uint_lt(strlen(path), sizeof sun.sun_path);
		memcpy(sun.sun_path, path, strlen(path) + 1);
		unlink(path);
		ck_assert_int_eq(bind(l, (struct sockaddr *)&sun, sizeof sun),
		    0);
		ck_assert_int_eq(listen(l, 16), 0);
		snprintf(script, sizeof script, "exec 3<&%d %d<&-; "
		    "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"", l, l);
		d.prefix = prefix;
		ck_assert_int_eq(truncate(d.log, 0) == 0 || errno == ENOENT, 1);
		if (round == 0)
			ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no",
			    "--segment-size", "64K", "-o", "socket_mode=0600",
			    "-o", "socket_group=0", NULL), 0);
		else
			ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no",
			    "--segment-size", "64K", NULL), 0);
		close(l);
		ck_assert(ts_daemon_log_wait(&d, "listening on the socket "
		    "passed by systemd"));
		ck_assert_int_eq(ts_daemon_stop(&d), 0);
		log = ts_daemon_log(&d);
		ck_assert_msg((strstr(log, "<4>walmmapd: socket_mode and "
		    "socket_group are ignored: the socket comes from systemd") !=
		    NULL) == (round == 0), "round %d: %s", round, log);
		free(log);
	}
	d.prefix = NULL;
}
END_TEST

/* 0 when no segment file in dir can be opened for reading, else 1 or 2. */
static int
segs_unreadable_cb(void *arg)
{
	const char *dir = arg;
	char path[PATH_MAX];
	struct dirent *de;
	DIR *dp;
	int fd, seen = 0, bad = 0;

	if ((dp = opendir(dir)) == NULL) {
		fprintf(stderr, "opendir %s: %s\n", dir, strerror(errno));
		return (2);
	}
	while ((de = readdir(dp)) != NULL) {
		if (strstr(de->d_name, ".wal") == NULL)
			continue;
		seen++;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) != -1) {
			fprintf(stderr, "uid %ld reads %s itself\n",
			    (long)getuid(), path);
			close(fd);
			bad = 1;
		}
	}
	closedir(dp);
	return (seen == 0 ? 2 : bad);
}

/*
 * A data directory others may list (0755, what mkdir gives under the usual
 * umask) does not let them read the segment files, which walmmapd creates
 * 0640: the socket must not give them what the files do not.
 */
START_TEST(test_default_others_listing)
{
	if (!is_root("test_default_others_listing"))
		return;
	ck_assert_int_eq(mkdir(d.data, 0755), 0);
	write_conf("# nothing\n");
	ck_assert_int_eq(start(), 0);
	root_append();
	ck_assert_int_eq(ts_as_user(NOBODY, NOBODY, segs_unreadable_cb,
	    d.data), 0);
	expect(NOBODY, OP_TAIL, -WALMMAP_EPERM, "needs the read right");
	expect(NOBODY, OP_APPEND, 0, NULL);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* Does a segment file in dir hold the bytes text? */
static int
log_holds(const char *dir, const char *text)
{
	char path[PATH_MAX];
	struct dirent *de;
	uint8_t *buf;
	size_t len;
	DIR *dp;
	int found = 0;

	ck_assert_ptr_nonnull(dp = opendir(dir));
	while (!found && (de = readdir(dp)) != NULL) {
		if (strstr(de->d_name, ".wal") == NULL)
			continue;
		PATHF(path, "%s/%s", dir, de->d_name);
		if ((buf = ts_read_file(path, &len)) == NULL)
			continue;
		found = memmem(buf, len, text, strlen(text)) != NULL;
		free(buf);
	}
	closedir(dp);
	return (found);
}

/*
 * One connection of uid 1002 with a ring, a subscription, and answers it
 * does not read: after a fatal error it lingers, its queue not sent.
 */
struct both {
	int		 ready[2];
	int		 go[2];
};

static int
both_cb(void *arg)
{
	struct both *b = arg;
	struct ts_ring r;
	struct wal_msg m;
	struct timeval tv = { 10, 0 };
	uint64_t one = 1;
	int i, inq, last;
	char c;

	ts_ring_open(&d, &r, 0);
	ts_raw_subscribe(r.sock, 7, -1, -1, WAL_SUB_FOLLOW);
	ts_ring_put(&r, "RING-BEFORE", 11, 11, 0);
	ts_ring_publish(&r, r.tail);
	/*
	 * PINGs whose OKs, never read, fill the socket and then the daemon's
	 * queue (far below max_inflight: it reads every one).
	 */
	memset(&m, 0, sizeof m);
	m.type = WAL_MSG_PING;
	m.len = sizeof m;
	if (setsockopt(r.sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == -1)
		return (2);
	for (i = 0; i < 4000; i++) {
		m.id = 100 + (uint64_t)i;
		if (send(r.sock, &m, sizeof m, 0) != sizeof m) {
			fprintf(stderr, "PING %d: %s\n", i, strerror(errno));
			return (2);
		}
	}
	/* Until the answers stop coming in (10 s at most). */
	for (i = 0, last = -1; i < 200; i++) {
		if (ioctl(r.sock, SIOCINQ, &inq) == -1)
			return (2);
		if (inq > 0 && inq == last)
			break;
		last = inq;
		usleep(50000);
	}
	if (i == 200)
		return (2);
	(void)write(b->ready[1], "r", 1);
	/* Until the test has taken the rights away. */
	if (read(b->go[0], &c, 1) != 1)
		return (2);
	ts_ring_put(&r, "RING-AFTER-REVOKE", 17, 17, 0);
	/* The doorbell may be gone already: publishing is what counts. */
	atomic_store(&r.hdr->tail, r.tail);
	(void)send(r.efd_in, &one, sizeof one, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)write(b->ready[1], "p", 1);
	return (0);
}

/*
 * A connection that has both a subscription and a ring loses both rights
 * on a reload (_i 0), or the read right on one reload, which leaves it
 * lingering over a full socket, then the write right on the next (_i 1):
 * in both cases its ring is closed at the reload that takes the write
 * right, and what the client publishes after it is never written.
 */
START_TEST(test_reload_revokes_ring_of_subscriber)
{
	struct both b;
	pid_t pid;
	int status;
	char c;

	if (!is_root("test_reload_revokes_ring_of_subscriber"))
		return;
	write_conf("allow_readers = 1002\nallow_writers = 1002\n");
	ck_assert_int_eq(start(), 0);
	ck_assert_int_eq(pipe(b.ready), 0);
	ck_assert_int_eq(pipe(b.go), 0);
	if ((pid = fork()) == 0) {
		alarm(90);
		_exit(ts_as_user(1002, 1002, both_cb, &b));
	}
	ck_assert_int_gt(pid, 0);
	close(b.ready[1]);
	close(b.go[0]);
	ck_assert_msg(read(b.ready[0], &c, 1) == 1, "uid 1002's client did "
	    "not start");

	if (_i == 1) {
		/* The read right first: the connection lingers, closing. */
		write_conf("allow_readers = none\nallow_writers = 1002\n");
		ts_daemon_signal(&d, SIGHUP);
		ck_assert(ts_daemon_log_wait(&d, "lost the read right; ending "
		    "its subscription"));
		ck_assert(ts_daemon_log_wait(&d, "configuration reloaded"));
	}
	write_conf("allow_readers = none\nallow_writers = none\n");
	ts_daemon_signal(&d, SIGHUP);
	ck_assert(ts_daemon_log_wait(&d, "lost the write right; closing it"));

	/* The client publishes, then lets go of its connection. */
	ck_assert_int_eq(write(b.go[1], "g", 1), 1);
	ck_assert_int_eq(read(b.ready[0], &c, 1), 1);
	close(b.go[1]);
	close(b.ready[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "client status %d", status);
	/* Stopping writes what every ring still open holds. */
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert(log_holds(d.data, "RING-BEFORE"));
	ck_assert_msg(!log_holds(d.data, "RING-AFTER-REVOKE"), "a record "
	    "published after the write right was taken away was written");
}
END_TEST

static Suite *
rights_suite(void)
{
	Suite *s = suite_create("rights");
	TCase *tc = tcase_create("rights");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_lists);
	tcase_add_test(tc, test_legacy);
	tcase_add_test(tc, test_reload_revokes);
	tcase_add_test(tc, test_per_uid_caps);
	tcase_add_test(tc, test_user_namespace);
	tcase_add_test(tc, test_units);
	tcase_add_test(tc, test_namespaces);
	tcase_add_test(tc, test_activation_ignores_socket_mode);
	tcase_add_test(tc, test_default_others_listing);
	tcase_add_loop_test(tc, test_reload_revokes_ring_of_subscriber, 0, 2);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(rights_suite()));
}
