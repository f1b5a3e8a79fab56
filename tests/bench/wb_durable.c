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
#define MAXREPS		99

/*
 * Clients run until a deadline (>= 2 s, 0.2 s quick) and count what they
 * got acknowledged; a run is timed from the start signal to the last
 * client's last acknowledgement (not the clients' exit).
 */
struct dur {
	const char	*sock;
	int		 inflight;	/* records per durable wait */
	int		 redis;		/* speak RESP to Redis instead */
	volatile double	*deadline;	/* wb_now(), set at the go */
	long		*count;		/* [client]: records acknowledged */
	double		*end_s;		/* [client]: when the last came */
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
	for (k = 0; wb_now() < *a->deadline; k += a->inflight)
		if (walmmap_append_batch(w, iov, (size_t)a->inflight,
		    WALMMAP_ACK_DEFAULT, seqs) != a->inflight)
			return (11);
	a->end_s[i] = wb_now();
	a->count[i] = k;
	walmmap_close(w);
	return (0);
}

/*
 * A Redis client: inflight pipelined RPUSHes sent with one write(), as
 * walmmapd's client sends its batch with one sendmsg(), then their
 * replies.
 */
static int
dur_redis(const struct dur *a, int i)
{
	struct sockaddr_un sun;
	char cmd[INFLIGHT_MAX * 160], rx[4096];
	uint8_t payload[64];
	size_t clen, one, want, got;
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
	one = (size_t)snprintf(cmd, 160, "*3\r\n$5\r\nRPUSH\r\n$3\r\n"
	    "wal\r\n$64\r\n");
	memcpy(cmd + one, payload, 64);
	memcpy(cmd + one + 64, "\r\n", 2);
	one += 66;
	for (j = 1; j < a->inflight; j++)
		memcpy(cmd + (size_t)j * one, cmd, one);
	clen = one * (size_t)a->inflight;
	wb_child_sync();
	for (k = 0; wb_now() < *a->deadline; k += a->inflight) {
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
	a->end_s[i] = wb_now();
	a->count[i] = k;
	close(s);
	return (0);
}

/* Client i: walmmapd or Redis. */
static int
dur_child(int i, void *arg)
{
	const struct dur *a = arg;

	return (a->redis ? dur_redis(a, i) : dur_walmmap(a, i));
}

/* Seconds each durable run lasts. */
static double
dur_secs(const struct wb *wb)
{
	return (wb->quick ? 0.2 : 2.0);
}

/* Records/s of n clients, each waiting for durability per inflight. */
static double
run_dur(const struct wb *wb, const char *sock, int redis, int n, int inflight)
{
	const size_t len = (2 * (size_t)n + 1) * sizeof(double);
	struct wb_group g;
	struct dur a;
	double t0, t1 = 0, *sh;
	long total = 0;
	int i;

	a.sock = sock;
	a.inflight = inflight;
	a.redis = redis;
	if ((sh = wb_shared(len)) == NULL)
		return (-1);
	a.end_s = sh;
	a.count = (long *)(sh + n);
	a.deadline = sh + 2 * n;
	if (wb_start_children(&g, n, dur_child, &a) != 0) {
		munmap(sh, len);
		return (-1);
	}
	t0 = wb_now();
	*a.deadline = t0 + dur_secs(wb);
	wb_go(&g);
	if (wb_wait_children(&g) != 0) {
		munmap(sh, len);
		return (-1);
	}
	for (i = 0; i < n; i++) {
		total += a.count[i];
		if (a.end_s[i] > t1)
			t1 = a.end_s[i];
	}
	munmap(sh, len);
	return ((double)total / (t1 - t0));
}

/*
 * One process: write a record, fdatasync, repeat, for dur_secs(). The
 * file is pre-allocated and written (zeros, synced) before the timer, as
 * walmmapd's segments are, so a sync writes the record's block and no
 * size or extent change; records wrap at its end.
 */
static double
fdatasync_rps(const struct wb *wb)
{
	static uint8_t zero[1 << 20];
	const off_t size = 64 << 20;
	char path[PATH_MAX];
	uint8_t buf[92];	/* a 64-byte record with its header and CRC */
	double t0, t1, end;
	off_t off;
	long n = 0;
	int fd;

	snprintf(path, sizeof path, "%s/fdatasync.wal", wb->tmp);
	if ((fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644)) == -1)
		return (-1);
	for (off = 0; off < size; off += (off_t)sizeof zero)
		if (write(fd, zero, sizeof zero) != (ssize_t)sizeof zero)
			goto fail;
	if (fsync(fd) != 0)
		goto fail;
	wb_fill(buf, sizeof buf, 0);
	t0 = wb_now();
	end = t0 + dur_secs(wb);
	for (off = 0; (t1 = wb_now()) < end; n++) {
		if (pwrite(fd, buf, sizeof buf, off) != (ssize_t)sizeof buf ||
		    fdatasync(fd) != 0)
			goto fail;
		off += (off_t)sizeof buf;
		if (off + (off_t)sizeof buf > size)
			off = 0;
	}
	close(fd);
	unlink(path);
	return ((double)n / (t1 - t0));
fail:
	close(fd);
	unlink(path);
	return (-1);
}

int
wb_durable(const struct wb *wb)
{
	static const int clients[] = { 1, 8, 32, 128 };
	struct walmmap_status before, after;
	struct walmmap *w;
	struct wb_result r;
	struct wb_daemon d;
	double rps[MAXREPS], base[MAXREPS], ratio[MAXREPS], rb[MAXREPS];
	double sync_us = 0, per_sync = 0, round_us = 0;
	uint64_t syncs;
	size_t i;
	int k;

	for (i = 0; i < sizeof clients / sizeof clients[0]; i++) {
		for (k = 0; k < wb->reps; k++) {
			rb[k] = wb_cpu_rtt_ns();
			if ((base[k] = fdatasync_rps(wb)) < 0)
				return (-1);
			if (wb_daemon_start(wb, &d, "durable", 0, NULL) != 0)
				return (-1);
			if (walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN,
			    0) != 0 || walmmap_status(w, &before) != 0) {
				wb_daemon_stop(&d, 1);
				return (-1);
			}
			rps[k] = run_dur(wb, d.sock, 0, clients[i], 1);
			if (walmmap_status(w, &after) != 0)
				rps[k] = -1;
			walmmap_close(w);
			wb_daemon_stop(&d, 1);
			if (rps[k] < 0)
				return (-1);
			ratio[k] = rps[k] / base[k];
			/* The last run's sync figures for the note. */
			syncs = after.syncs - before.syncs;
			syncs += !syncs;
			per_sync = (double)(after.records - before.records) /
			    (double)syncs;
			sync_us = (double)(after.sync_ns_total -
			    before.sync_ns_total) / 1e3 / (double)syncs;
			round_us = per_sync / rps[k] * 1e6;
		}
		wb_result_init(&r, "durable", "fdatasync per record");
		snprintf(r.variant, sizeof r.variant, "%d client%s", clients[i],
		    clients[i] > 1 ? "s" : "");
		r.clients = clients[i];
		r.ratio = wb_median(ratio, wb->reps);
		r.rps = wb_median(rps, wb->reps);
		r.rec_bytes = 64;
		r.base_rps = wb_median(base, wb->reps);
		r.rtt_before = wb_median(rb, wb->reps);
		/* Sync time against the round: what is left is turnaround. */
		snprintf(r.note, sizeof r.note, "pre-allocated file; %.1f s "
		    "each, alternating, median of %d per-run ratios; last run "
		    "%.1f records/sync, %.0f us/sync, %.0f us/round",
		    dur_secs(wb), wb->reps, per_sync, sync_us, round_us);
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

/* Start redis-server with appendfsync always on sock; its pid or -1. */
static pid_t
redis_start(const char *server, const char *dir, const char *sock)
{
	pid_t pid;
	int k;

	wb_rmtree(dir);
	unlink(sock);
	mkdir(dir, 0755);
	if ((pid = fork()) == 0) {
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(126);
		execl(server, "redis-server", "--port", "0", "--unixsocket",
		    sock, "--dir", dir, "--appendonly", "yes", "--appendfsync",
		    "always", "--save", "", (char *)NULL);
		_exit(127);
	}
	for (k = 0; pid > 0 && k < 1000 && access(sock, F_OK) != 0; k++)
		usleep(10000);
	return (pid);
}

/* Stop redis-server and remove its files. */
static void
redis_stop(pid_t pid, const char *dir, const char *sock)
{
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
	unlink(sock);
	wb_rmtree(dir);
}

/*
 * What redis-benchmark makes of the same load (50 clients, RPUSH of 64
 * bytes, -P inflight): a check on our own Redis client. Requests/s, or < 0
 * when redis-benchmark is not there.
 */
static double
redis_benchmark(const char *server, const char *sock, int clients,
    int inflight, long requests)
{
	char cmd[2 * PATH_MAX + 128], line[512], bin[PATH_MAX], *slash;
	double rps = -1;
	FILE *f;

	snprintf(bin, sizeof bin, "%s", server);
	if ((slash = strrchr(bin, '/')) == NULL)
		return (-1);
	snprintf(slash + 1, sizeof bin - (size_t)(slash + 1 - bin),
	    "redis-benchmark");
	if (access(bin, X_OK) != 0)
		return (-1);
	snprintf(cmd, sizeof cmd, "'%s' -s '%s' -c %d -n %ld -P %d -d 64 "
	    "-t rpush --csv 2>/dev/null", bin, sock, clients, requests,
	    inflight);
	if ((f = popen(cmd, "r")) == NULL)
		return (-1);
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, "\"RPUSH\",\"", 9) == 0)
			rps = atof(line + 9);
	pclose(f);
	return (rps);
}

/*
 * walmmapd against Redis with appendfsync always, 50 clients: runs of
 * each alternate (the first side changes every repetition), and the
 * median of the per-run ratios is reported.
 */
int
wb_redis(const struct wb *wb)
{
	static const int inflight[] = { 1, 32 };
	const int clients = 50;
	char server[PATH_MAX], dir[PATH_MAX], sock[PATH_MAX];
	double rps[MAXREPS], redis[MAXREPS], ratio[MAXREPS], rb[MAXREPS];
	double bench;
	struct wb_result r;
	struct wb_daemon d;
	size_t i;
	pid_t pid;
	int k, side;

	if (!have_redis(server, sizeof server)) {
		wb_skip(wb, "redis", "redis-server is not installed "
		    "(apt-get install redis-server)");
		return (0);
	}
	snprintf(dir, sizeof dir, "%s/redis", wb->tmp);
	snprintf(sock, sizeof sock, "%s/redis.sock", wb->tmp);
	for (i = 0; i < sizeof inflight / sizeof inflight[0]; i++) {
		bench = -1;
		for (k = 0; k < wb->reps; k++) {
			rb[k] = wb_cpu_rtt_ns();
			for (side = 0; side < 2; side++) {
				if ((side ^ (k & 1)) == 0) {
					pid = redis_start(server, dir, sock);
					redis[k] = run_dur(wb, sock, 1,
					    clients, inflight[i]);
					if (k == 0)
						bench = redis_benchmark(server,
						    sock, clients, inflight[i],
						    (long)(redis[k] *
						    dur_secs(wb)) + 1000);
					redis_stop(pid, dir, sock);
					continue;
				}
				if (wb_daemon_start(wb, &d, "redis-walmmapd",
				    0, NULL) != 0)
					return (-1);
				rps[k] = run_dur(wb, d.sock, 0, clients,
				    inflight[i]);
				wb_daemon_stop(&d, 1);
			}
			if (rps[k] < 0 || redis[k] < 0)
				return (-1);
			ratio[k] = rps[k] / redis[k];
		}
		wb_result_init(&r, "redis", "redis appendfsync always");
		snprintf(r.variant, sizeof r.variant, "50 clients x %d in "
		    "flight", inflight[i]);
		r.clients = clients;
		r.ratio = wb_median(ratio, wb->reps);
		r.rps = wb_median(rps, wb->reps);
		r.rec_bytes = 64;
		r.base_rps = wb_median(redis, wb->reps);
		r.rtt_before = wb_median(rb, wb->reps);
		snprintf(r.note, sizeof r.note, "durable acks vs RPUSH replies, "
		    "one write per pipeline, alternating, median of %d per-run "
		    "ratios; redis-benchmark -P %d on the same server: %.0f/s",
		    wb->reps, inflight[i], bench);
		wb_report(wb, &r);
	}
	return (0);
}
