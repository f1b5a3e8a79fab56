/*
 * walbench - durability: clients waiting for durable acks (group commit)
 * against one fdatasync per record, and against Redis with appendfsync
 * always when redis-server is installed.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "walbench.h"
#include "walmmap.h"

#define INFLIGHT_MAX	64

struct dur {
	const char	*sock;
	long		 each;		/* records per client */
	int		 inflight;	/* records per durable wait */
	int		 redis;		/* speak RESP to Redis instead */
};

/* A walmmapd client: inflight records, wait until all are durable. */
static int
dur_walmmap(const struct dur *a, int i)
{
	struct iovec iov[INFLIGHT_MAX];
	int64_t seqs[INFLIGHT_MAX];
	struct walmmap *w;
	uint8_t buf[64];
	long k;
	int j;

	if (walmmap_connect(&w, a->sock, WALMMAP_ACK_DURABLE, 0) != 0)
		return (10);
	wb_fill(buf, sizeof buf, (uint64_t)i);
	for (j = 0; j < a->inflight; j++) {
		iov[j].iov_base = buf;
		iov[j].iov_len = sizeof buf;
	}
	wb_child_sync();
	for (k = 0; k < a->each; k += a->inflight)
		if (walmmap_append_batch(w, iov, (size_t)a->inflight,
		    WALMMAP_ACK_DEFAULT, seqs) != a->inflight)
			return (11);
	walmmap_close(w);
	return (0);
}

/* A Redis client: inflight pipelined RPUSHes, then their replies. */
static int
dur_redis(const struct dur *a, int i)
{
	struct sockaddr_un sun;
	char cmd[160], rx[4096];
	uint8_t payload[64];
	size_t clen, want, got;
	ssize_t n;
	long k;
	int s, j;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(a->sock) >= sizeof sun.sun_path)
		return (9);
	memcpy(sun.sun_path, a->sock, strlen(a->sock) + 1);
	if ((s = socket(AF_UNIX, SOCK_STREAM, 0)) == -1 || connect(s,
	    (struct sockaddr *)&sun, sizeof sun) == -1)
		return (10);
	wb_fill(payload, sizeof payload, (uint64_t)i);
	clen = (size_t)snprintf(cmd, sizeof cmd, "*3\r\n$5\r\nRPUSH\r\n$3\r\n"
	    "wal\r\n$64\r\n");
	memcpy(cmd + clen, payload, 64);
	memcpy(cmd + clen + 64, "\r\n", 2);
	clen += 66;
	wb_child_sync();
	for (k = 0; k < a->each; k += a->inflight) {
		for (j = 0; j < a->inflight; j++)
			if (write(s, cmd, clen) != (ssize_t)clen)
				return (11);
		/* One ":<n>\r\n" per command; count line ends. */
		for (want = (size_t)a->inflight, got = 0; got < want;) {
			if ((n = read(s, rx, sizeof rx)) <= 0)
				return (12);
			for (j = 0; j < n; j++)
				if (rx[j] == '\n')
					got++;
		}
	}
	close(s);
	return (0);
}

static int
dur_child(int i, void *arg)
{
	const struct dur *a = arg;

	return (a->redis ? dur_redis(a, i) : dur_walmmap(a, i));
}

/* Records/s of n clients, each waiting for durability per inflight. */
static double
run_dur(const char *sock, int redis, int n, long each, int inflight)
{
	struct wb_group g;
	struct dur a;
	double t0;

	a.sock = sock;
	a.each = each / inflight * inflight;
	a.inflight = inflight;
	a.redis = redis;
	if (wb_start_children(&g, n, dur_child, &a) != 0)
		return (-1);
	t0 = wb_now();
	wb_go(&g);
	if (wb_wait_children(&g) != 0)
		return (-1);
	return ((double)(a.each * n) / (wb_now() - t0));
}

/* One process: write a record, fdatasync, repeat. */
static double
fdatasync_rps(const struct wb *wb, long n)
{
	char path[PATH_MAX];
	uint8_t buf[92];
	double t0;
	long i;
	int fd;

	snprintf(path, sizeof path, "%s/fdatasync.wal", wb->tmp);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644)) == -1)
		return (-1);
	wb_fill(buf, sizeof buf, 0);
	t0 = wb_now();
	for (i = 0; i < n; i++)
		if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf ||
		    fdatasync(fd) != 0) {
			close(fd);
			return (-1);
		}
	t0 = wb_now() - t0;
	close(fd);
	unlink(path);
	return ((double)n / t0);
}

int
wb_durable(const struct wb *wb)
{
	static const int clients[] = { 1, 8, 32, 128 };
	struct walmmap_status before, after;
	struct walmmap *w;
	struct wb_result r;
	struct wb_daemon d;
	double rps, base;
	uint64_t syncs;
	long each;
	size_t i;

	if ((base = fdatasync_rps(wb, wb->quick ? 50 : 500)) < 0)
		return (-1);
	for (i = 0; i < sizeof clients / sizeof clients[0]; i++) {
		each = (wb->quick ? 600 : 4000) / clients[i];
		if (each < 10)
			each = 10;
		if (wb_daemon_start(wb, &d, "durable", 0, NULL) != 0)
			return (-1);
		if (walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0) != 0 ||
		    walmmap_status(w, &before) != 0) {
			wb_daemon_stop(&d, 1);
			return (-1);
		}
		rps = run_dur(d.sock, 0, clients[i], each, 1);
		if (walmmap_status(w, &after) != 0)
			rps = -1;
		walmmap_close(w);
		wb_daemon_stop(&d, 1);
		if (rps < 0)
			return (-1);
		wb_result_init(&r, "durable", "fdatasync per record");
		snprintf(r.variant, sizeof r.variant, "%d client%s", clients[i],
		    clients[i] > 1 ? "s" : "");
		r.rps = rps;
		r.rec_bytes = 64;
		r.base_rps = base;
		syncs = after.syncs - before.syncs;
		/* Sync time against the round: what is left is turnaround. */
		snprintf(r.note, sizeof r.note, "%" PRIu64 " syncs, %.1f "
		    "records/sync, %.0f us/sync, %.0f us/round", syncs,
		    (double)(each * clients[i]) / (double)(syncs + !syncs),
		    (double)(after.sync_ns_total - before.sync_ns_total) /
		    1e3 / (double)(syncs + !syncs), (double)(each *
		    clients[i]) / rps * 1e6 / (double)(syncs + !syncs));
		wb_report(wb, &r);
	}
	return (0);
}

/* redis-server in PATH? */
static int
have_redis(char *path, size_t len)
{
	const char *p = getenv("PATH");
	char dir[1024];
	const char *c;
	size_t n;

	for (; p != NULL && *p != '\0'; p = c + (*c != '\0')) {
		c = strchr(p, ':');
		if (c == NULL)
			c = p + strlen(p);
		n = (size_t)(c - p);
		if (n == 0 || n >= sizeof dir)
			continue;
		memcpy(dir, p, n);
		dir[n] = '\0';
		if (snprintf(path, len, "%s/redis-server", dir) >= (int)len)
			continue;
		if (access(path, X_OK) == 0)
			return (1);
	}
	return (0);
}

int
wb_redis(const struct wb *wb)
{
	static const int inflight[] = { 1, 32 };
	const int clients = 50;
	char server[PATH_MAX], dir[PATH_MAX], sock[PATH_MAX];
	struct wb_result r;
	struct wb_daemon d;
	double rps, redis;
	long each;
	size_t i;
	pid_t pid;
	int k;

	if (!have_redis(server, sizeof server)) {
		wb_skip(wb, "redis", "redis-server is not installed "
		    "(apt-get install redis-server)");
		return (0);
	}
	snprintf(dir, sizeof dir, "%s/redis", wb->tmp);
	snprintf(sock, sizeof sock, "%s/redis.sock", wb->tmp);
	for (i = 0; i < sizeof inflight / sizeof inflight[0]; i++) {
		each = (wb->quick ? 64 : 640) * inflight[i];
		if (each > (wb->quick ? 2048 : 20480))
			each = wb->quick ? 2048 : 20480;
		/* Redis: append-only file, fsync before every reply. */
		mkdir(dir, 0755);
		if ((pid = fork()) == 0) {
			if (freopen("/dev/null", "w", stdout) == NULL)
				_exit(126);
			execl(server, "redis-server", "--port", "0",
			    "--unixsocket", sock, "--dir", dir, "--appendonly",
			    "yes", "--appendfsync", "always", "--save", "",
			    (char *)NULL);
			_exit(127);
		}
		for (k = 0; k < 1000 && access(sock, F_OK) != 0; k++)
			usleep(10000);
		redis = run_dur(sock, 1, clients, each, inflight[i]);
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		unlink(sock);
		wb_rmtree(dir);
		if (wb_daemon_start(wb, &d, "redis-walmmapd", 0, NULL) != 0)
			return (-1);
		rps = run_dur(d.sock, 0, clients, each, inflight[i]);
		wb_daemon_stop(&d, 1);
		if (rps < 0 || redis < 0)
			return (-1);
		wb_result_init(&r, "redis", "redis appendfsync always");
		snprintf(r.variant, sizeof r.variant, "50 clients x %d in "
		    "flight", inflight[i]);
		r.rps = rps;
		r.rec_bytes = 64;
		r.base_rps = redis;
		snprintf(r.note, sizeof r.note, "durable acks vs RPUSH replies");
		wb_report(wb, &r);
	}
	return (0);
}
