/*
 * walbench - scenarios without clients: the core writer in-process, and
 * recovery (daemon start and walctl verify on a large log).
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "walbench.h"
#include "wal_format.h"
#include "wal_ring.h"
#include "walmmap.h"

/*
 * Records/s of wal_ring_append() (stamp, copy, CRC) for n records with
 * the daemon's ring settings, or with batch > 0 of the daemon's own path
 * for a frame of batch records (reserve, copy, deferred commit, one clock
 * reading and one flush of the CRCs per batch): the first standby segments were pre-faulted
 * before the timer starts, the rest are zero-filled by the background
 * thread while the writer runs (steady state). *cap_b: the bytes the
 * standby segments held at the start; *pre_rps and *steady_rps: the rates
 * before and after the writer went past them; *waited_n: rotations that
 * found no standby segment ready and created one inline. step > 0: the
 * paced settings, prefault_step=step and writeback_step=1M.
 */
static double
core_ring(const struct wb *wb, uint32_t size, long n, int batch,
    uint64_t step, uint64_t *cap_b, double *pre_rps, double *steady_rps,
    uint64_t *waited_n)
{
	struct wal_ring_config cfg;
	struct wal_ring_stats st;
	struct wal_ring *r;
	struct wal_error err;
	char dir[PATH_MAX];
	static uint8_t payload[4096];
	uint8_t *dst;
	double t0, tm = 0, t1;
	int64_t ts = 0;
	long i, nm = 0, fit;
	int waited;

	snprintf(dir, sizeof dir, "%s/core", wb->tmp);
	if (mkdir(dir, 0755) == -1)
		return (-1);
	memset(&cfg, 0, sizeof cfg);
	cfg.dir = dir;
	cfg.segment_size = wb->quick ? 4u << 20 : WAL_SEGMENT_DEFAULT;
	cfg.ring_segments = WAL_RING_DEFAULT;
	cfg.prefault_step = step;
	cfg.writeback_step = step > 0 ? 1u << 20 : 0;
	wb_fill(payload, sizeof payload, 0);
	if (wal_ring_open(&cfg, &r, NULL, &err) != 0) {
		fprintf(stderr, "walbench: %s\n", err.msg);
		return (-1);
	}
	for (waited = 0; waited < 600; waited++) {
		wal_ring_stats(r, &st);
		if (st.standby + 1 >= cfg.ring_segments)
			break;
		usleep(50000);
	}
	*cap_b = st.standby * st.segment_size;
	fit = (long)(*cap_b / wal_record_span(size));
	t0 = wb_now();
	for (i = 0; i < n; i++) {
		if (i == fit) {
			tm = wb_now();
			nm = i;
		}
		if (batch > 0) {
			/* The daemon's path for a frame of batch records. */
			if (i % batch == 0)
				ts = wal_now_ns();
			if (wal_ring_reserve(r, size, &dst, &err) != 0) {
				fprintf(stderr, "walbench: %s\n", err.msg);
				break;
			}
			memcpy(dst, payload, size);
			(void)wal_ring_commit_deferred(r, ts);
			if (i % batch == batch - 1)
				wal_ring_flush(r);
			continue;
		}
		if (wal_ring_append(r, payload, size, -1, NULL, &err) != 0) {
			fprintf(stderr, "walbench: %s\n", err.msg);
			break;
		}
	}
	wal_ring_flush(r);
	t1 = wb_now();
	wal_ring_stats(r, &st);
	*waited_n = st.rotations_waited;
	wal_ring_close(r);
	wb_rmtree(dir);
	if (i != n)
		return (-1);
	*pre_rps = nm > 0 ? (double)nm / (tm - t0) : -1;
	*steady_rps = nm > 0 ? (double)(n - nm) / (t1 - tm) : -1;
	return ((double)n / (t1 - t0));
}

/*
 * A plain appender: encode each record (stamp, CRC), write() it to a file
 * that grows. buffered: gather records in 64 KiB and write() that, with
 * one clock reading per buffer (the records of a buffer share it): the
 * appender a user would write instead of walmmapd.
 */
static double
core_write(const struct wb *wb, uint32_t size, long n, int buffered)
{
	static uint8_t buf[64 << 10];
	uint8_t payload[4096];
	char path[PATH_MAX];
	double t0, t1;
	size_t len = 0, span = wal_record_span(size);
	int64_t ts = 0;
	long i;
	int fd;

	snprintf(path, sizeof path, "%s/write.wal", wb->tmp);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644)) == -1)
		return (-1);
	wb_fill(payload, sizeof payload, 0);
	t0 = wb_now();
	for (i = 0; i < n; i++) {
		if (!buffered) {
			len = wal_record_encode(buf, i, wal_now_ns(), payload,
			    size);
			if (write(fd, buf, len) != (ssize_t)len)
				break;
			continue;
		}
		if (len + span > sizeof buf) {
			if (write(fd, buf, len) != (ssize_t)len)
				break;
			len = 0;
		}
		if (len == 0)
			ts = wal_now_ns();
		len += wal_record_encode(buf + len, i, ts, payload, size);
	}
	if (i == n && buffered && len > 0 && write(fd, buf, len) !=
	    (ssize_t)len)
		i = 0;
	t1 = wb_now();
	close(fd);
	unlink(path);
	return (i == n ? (double)n / (t1 - t0) : -1);
}

/* The physical limit: memcpy of each record into a pre-faulted mapping. */
static double
core_memcpy(const struct wb *wb, uint32_t size, long n)
{
	char path[PATH_MAX];
	uint8_t payload[4096], *map, *p;
	size_t len = (size_t)n * (size_t)wal_record_span(size);
	double t0, t1;
	long i;
	int fd;

	snprintf(path, sizeof path, "%s/memcpy.wal", wb->tmp);
	if ((fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644)) == -1 || ftruncate(fd, (off_t)len) == -1)
		return (-1);
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	unlink(path);
	if (map == MAP_FAILED)
		return (-1);
#ifdef MADV_POPULATE_WRITE
	(void)madvise(map, len, MADV_POPULATE_WRITE);
#endif
	wb_fill(payload, sizeof payload, 0);
	p = map;
	t0 = wb_now();
	for (i = 0; i < n; i++) {
		memcpy(p, &size, sizeof size);
		memcpy(p + WAL_RECORD_HEADER_SIZE, payload, size);
		p += wal_record_span(size);
	}
	t1 = wb_now();
	munmap(map, len);
	return ((double)n / (t1 - t0));
}

/*
 * Every side writes the same bytes: three times what the ring's standby
 * segments hold (576 MiB with the daemon's defaults; --quick: 24 MiB with
 * 4 MiB segments), so the ring's figure includes its steady state,
 * zero-filling segments while it writes.
 */
int
wb_core(const struct wb *wb)
{
	static const uint32_t sizes[] = { 32, 256, 4096 };
	static const char *const base[] = { "buffered appender+CRC",
		"write() per record", "memcpy limit" };
	struct wb_result r;
	double ring, pre, steady, b[3], rtt, bring, bpre, bsteady;
	uint64_t cap, waited, bwaited, bytes = wb->quick ? 24ull << 20 :
	    576ull << 20;
	long n;
	size_t i, j;

	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		n = (long)(bytes / wal_record_span(sizes[i]));
		rtt = wb_cpu_rtt_ns();
		if ((ring = core_ring(wb, sizes[i], n, 0, 0, &cap, &pre,
		    &steady, &waited)) < 0 || (bring = core_ring(wb, sizes[i],
		    n, WAL_RING_CRC_BATCH, 0, &cap, &bpre, &bsteady,
		    &bwaited)) < 0 ||
		    (b[0] = core_write(wb, sizes[i], n, 1)) < 0 ||
		    (b[1] = core_write(wb, sizes[i], n, 0)) < 0 ||
		    (b[2] = core_memcpy(wb, sizes[i], n)) < 0)
			return (-1);
		for (j = 0; j < 3; j++) {
			wb_result_init(&r, "core", base[j]);
			snprintf(r.variant, sizeof r.variant, "%uB", sizes[i]);
			r.rps = ring;
			r.rec_bytes = sizes[i];
			r.base_rps = b[j];
			r.rtt_before = rtt;
			snprintf(r.note, sizeof r.note, "%" PRIu64 " MiB each "
			    "side; ring %.2f M/s in the first %" PRIu64 " MiB "
			    "(pre-faulted), %.2f M/s after (steady state, %"
			    PRIu64 " rotations found no standby ready)",
			    bytes >> 20, pre / 1e6, cap >> 20, steady / 1e6,
			    waited);
			wb_report(wb, &r);
		}
		/* The daemon's path: a frame of 32 records, one clock read. */
		wb_result_init(&r, "core", base[0]);
		snprintf(r.variant, sizeof r.variant, "%uB batch %d", sizes[i],
		    WAL_RING_CRC_BATCH);
		r.rps = bring;
		r.rec_bytes = sizes[i];
		r.base_rps = b[0];
		r.rtt_before = rtt;
		snprintf(r.note, sizeof r.note, "reserve+copy+deferred commit, "
		    "%d a batch sharing one timestamp (an APPEND frame's path "
		    "in walmmapd): %.1f ns/record pre-faulted (%.2f M/s), %.1f "
		    "ns/record steady (%.2f M/s, %" PRIu64 " rotations found "
		    "no standby ready)", WAL_RING_CRC_BATCH, 1e9 / bpre,
		    bpre / 1e6, 1e9 / bsteady, bsteady / 1e6, bwaited);
		wb_report(wb, &r);
		if (i != 0)
			continue;
		/* What the paced settings cost a writer. */
		if ((ring = core_ring(wb, sizes[i], n, 0, 64 << 10, &cap, &pre,
		    &steady, &waited)) < 0)
			return (-1);
		wb_result_init(&r, "core", base[0]);
		snprintf(r.variant, sizeof r.variant, "%uB, paced 64K/1M",
		    sizes[i]);
		r.rps = ring;
		r.rec_bytes = sizes[i];
		r.base_rps = b[0];
		r.rtt_before = rtt;
		snprintf(r.note, sizeof r.note, "ring with prefault_step=64K, "
		    "writeback_step=1M: "
		    "%.2f M/s pre-faulted, %.2f M/s steady (%" PRIu64
		    " rotations found no standby ready)", pre / 1e6,
		    steady / 1e6, waited);
		wb_report(wb, &r);
	}
	return (0);
}

/* Bytes of the segment files in dir. */
static uint64_t
dir_bytes(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *e;
	struct stat st;
	uint64_t total = 0;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return (0);
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, WAL_SEGMENT_PREFIX,
		    strlen(WAL_SEGMENT_PREFIX)) != 0)
			continue;
		if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >=
		    (int)sizeof path)
			continue;
		if (stat(path, &st) == 0)
			total += (uint64_t)st.st_size;
	}
	closedir(d);
	return (total);
}

/*
 * Write back and drop from the page cache every file in dir (a cold
 * cache for this directory only: the machine's other caches stay).
 */
static void
drop_dir_cache(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d;
	int fd;

	if ((d = opendir(dir)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || snprintf(path, sizeof path,
		    "%s/%s", dir, e->d_name) >= (int)sizeof path)
			continue;
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			continue;
		(void)fdatasync(fd);
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	closedir(d);
}

/* Read every segment file with read(): the baseline for verify. */
static double
read_all_s(const char *dir)
{
	static uint8_t buf[1 << 20];
	char path[PATH_MAX];
	struct dirent *e;
	double t0 = wb_now();
	DIR *d;
	int fd;

	if ((d = opendir(dir)) == NULL)
		return (-1);
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, WAL_SEGMENT_PREFIX,
		    strlen(WAL_SEGMENT_PREFIX)) != 0)
			continue;
		if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >=
		    (int)sizeof path)
			continue;
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			continue;
		while (read(fd, buf, sizeof buf) > 0)
			;
		close(fd);
	}
	closedir(d);
	return (wb_now() - t0);
}

/* Seconds walctl verify takes on dir, or < 0. */
static double
verify_s(const struct wb *wb, const char *dir)
{
	double t0 = wb_now();
	int status;
	pid_t pid;

	if ((pid = fork()) == 0) {
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(126);
		execl(wb->walctl, "walctl", "verify", "-q", dir, (char *)NULL);
		_exit(127);
	}
	if (pid == -1 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)
	    || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "walbench: walctl verify %s failed\n", dir);
		return (-1);
	}
	return (wb_now() - t0);
}

/* The writer whose daemon is killed mid-append. */
struct crash {
	const char		*sock;
	long			 want;		/* records before *reached */
	volatile int		*reached;
};

/* Append batches of 64 until the daemon dies; *reached at c->want. */
static int
crash_writer(int i, void *arg)
{
	struct crash *c = arg;
	struct iovec iov[64];
	struct walmmap *w;
	uint8_t buf[256];
	long k;
	int j;

	(void)i;
	if (walmmap_connect(&w, c->sock, WALMMAP_ACK_WRITTEN, 0) != 0)
		return (10);
	wb_fill(buf, sizeof buf, 0);
	for (j = 0; j < 64; j++) {
		iov[j].iov_base = buf;
		iov[j].iov_len = sizeof buf;
	}
	wb_child_sync();
	for (k = 0;; k += 64) {
		if (walmmap_append_batch(w, iov, 64, WALMMAP_ACK_DEFAULT,
		    NULL) != 64)
			return (0);	/* the daemon was killed */
		if (k >= c->want && !*c->reached &&
		    walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1) == 0)
			*c->reached = 1;
	}
}

/*
 * Recovery after a crash: walmmapd is killed (SIGKILL) while a client
 * appends, the directory's page cache is dropped, and a new walmmapd is
 * timed from exec to its first accepted connection, against the same on
 * an empty directory; then walctl verify against read() of the same
 * files, both from a cold cache. Milliseconds.
 */
int
wb_recovery(const struct wb *wb)
{
	const uint64_t target = (wb->quick ? 32ull : 512ull) << 20;
	struct wb_daemon d, e;
	struct wb_result res;
	struct wb_group g;
	struct crash c;
	uint64_t bytes;
	double full_s, empty_s, ver_s, rd_s, rtt = wb_cpu_rtt_ns();
	int k;

	memset(&d, 0, sizeof d);
	if (wb_daemon_start(wb, &d, "recovery", 0, NULL) != 0)
		return (-1);
	c.sock = d.sock;
	c.want = (long)(target / wal_record_span(256));
	if ((c.reached = wb_shared(sizeof(int))) == NULL ||
	    wb_start_children(&g, 1, crash_writer, &c) != 0) {
		wb_daemon_stop(&d, 1);
		return (-1);
	}
	wb_go(&g);
	for (k = 0; k < 120000 && !*c.reached; k++)
		usleep(1000);
	kill(d.pid, SIGKILL);		/* mid-append: the writer still runs */
	waitpid(d.pid, NULL, 0);
	d.pid = 0;
	(void)wb_wait_children(&g);
	if (!*c.reached) {
		fprintf(stderr, "walbench: recovery: the writer did not reach "
		    "%" PRIu64 " MiB\n", target >> 20);
		return (-1);
	}
	munmap((void *)c.reached, sizeof(int));
	bytes = dir_bytes(d.dir);

	drop_dir_cache(d.dir);
	if (wb_daemon_start(wb, &d, "recovery", 1, NULL) != 0)
		return (-1);
	full_s = wb_daemon_ready_s(&d);
	wb_daemon_stop(&d, 0);
	memset(&e, 0, sizeof e);
	if (wb_daemon_start(wb, &e, "empty", 0, NULL) != 0)
		return (-1);
	empty_s = wb_daemon_ready_s(&e);
	wb_daemon_stop(&e, 1);
	wb_result_init(&res, "recovery", "start on an empty dir");
	snprintf(res.variant, sizeof res.variant, "start after kill -9");
	res.ms = full_s * 1e3;
	res.base_ms = empty_s * 1e3;
	res.rtt_before = rtt;
	snprintf(res.note, sizeof res.note, "%" PRIu64 " MiB of segments, "
	    "cold cache; exec to first accepted connection", bytes >> 20);
	wb_report(wb, &res);

	drop_dir_cache(d.dir);
	if ((ver_s = verify_s(wb, d.dir)) < 0)
		return (-1);
	drop_dir_cache(d.dir);
	if ((rd_s = read_all_s(d.dir)) < 0)
		return (-1);
	wb_result_init(&res, "recovery", "read() of the files");
	snprintf(res.variant, sizeof res.variant, "walctl verify");
	res.ms = ver_s * 1e3;
	res.base_ms = rd_s * 1e3;
	res.rtt_before = rtt;
	snprintf(res.note, sizeof res.note, "cold cache each; verify %.2f "
	    "GB/s, read() %.2f GB/s", (double)bytes / ver_s / 1e9,
	    (double)bytes / rd_s / 1e9);
	wb_report(wb, &res);
	wb_rmtree(d.dir);
	return (0);
}
