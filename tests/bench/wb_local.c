/*
 * walbench - scenarios without clients: the core writer in-process, and
 * recovery (daemon start and walctl verify on a large log).
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "walbench.h"
#include "wal_format.h"
#include "wal_ring.h"

/*
 * Records/s of wal_ring_append() (stamp, copy, CRC) into segments the
 * background thread has pre-faulted: the append path itself. n is capped
 * to what the ready segments hold.
 */
static double
core_ring(const struct wb *wb, uint32_t size, long n)
{
	struct wal_ring_config cfg;
	struct wal_ring_stats st;
	struct wal_ring *r;
	struct wal_error err;
	char dir[PATH_MAX];
	static uint8_t payload[4096];
	double t0, t1;
	long i, fit;
	int waited;

	snprintf(dir, sizeof dir, "%s/core", wb->tmp);
	if (mkdir(dir, 0755) == -1)
		return (-1);
	memset(&cfg, 0, sizeof cfg);
	cfg.dir = dir;
	cfg.segment_size = wb->quick ? 16u << 20 : 64u << 20;
	cfg.ring_segments = wb->quick ? 4 : WAL_RING_MAX;
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
	fit = (long)((st.standby * st.segment_size) / wal_record_span(size));
	if (fit < n)
		n = fit;
	t0 = wb_now();
	for (i = 0; i < n; i++)
		if (wal_ring_append(r, payload, size, -1, NULL, &err) != 0) {
			fprintf(stderr, "walbench: %s\n", err.msg);
			break;
		}
	t1 = wb_now();
	wal_ring_close(r);
	wb_rmtree(dir);
	return (i == n ? (double)n / (t1 - t0) : -1);
}

/* A plain appender: encode each record, write() it to a file. */
static double
core_write(const struct wb *wb, uint32_t size, long n)
{
	uint8_t buf[4096 + WAL_RECORD_OVERHEAD], payload[4096];
	char path[PATH_MAX];
	double t0, t1;
	size_t len;
	long i;
	int fd;

	snprintf(path, sizeof path, "%s/write.wal", wb->tmp);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644)) == -1)
		return (-1);
	wb_fill(payload, sizeof payload, 0);
	t0 = wb_now();
	for (i = 0; i < n; i++) {
		len = wal_record_encode(buf, i, (int64_t)wb_now_ns(), payload,
		    size);
		if (write(fd, buf, len) != (ssize_t)len) {
			close(fd);
			return (-1);
		}
	}
	t1 = wb_now();
	close(fd);
	unlink(path);
	return ((double)n / (t1 - t0));
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

int
wb_core(const struct wb *wb)
{
	static const uint32_t sizes[] = { 32, 256, 4096 };
	struct wb_result r;
	double ring, wr, mc;
	long n, nw;
	size_t i;

	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		/* About 900 MiB of log (150 MiB quick), 1M write() calls. */
		n = (long)((wb->quick ? 40ull : 900ull) << 20) /
		    (long)wal_record_span(sizes[i]);
		nw = wb->quick ? 100000 : 1000000;
		if ((ring = core_ring(wb, sizes[i], n)) < 0 ||
		    (wr = core_write(wb, sizes[i], nw)) < 0 ||
		    (mc = core_memcpy(wb, sizes[i], n)) < 0)
			return (-1);
		wb_result_init(&r, "core", "write() appender");
		snprintf(r.variant, sizeof r.variant, "%uB", sizes[i]);
		r.rps = ring;
		r.rec_bytes = sizes[i];
		r.base_rps = wr;
		wb_report(wb, &r);
		wb_result_init(&r, "core", "memcpy limit");
		snprintf(r.variant, sizeof r.variant, "%uB", sizes[i]);
		r.rps = ring;
		r.rec_bytes = sizes[i];
		r.base_rps = mc;
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

int
wb_recovery(const struct wb *wb)
{
	const uint64_t target = (wb->quick ? 64ull : 1024ull) << 20;
	const uint32_t size = 256;
	struct wal_ring_config cfg;
	struct wal_ring *r;
	struct wal_error err;
	struct wb_daemon d, e;
	struct wb_result res;
	uint8_t payload[256];
	uint64_t n, i, bytes;
	double full_s, empty_s, ver_s, rd_s;

	/* A log of target bytes of 256-byte records, segments of 64 MiB. */
	memset(&d, 0, sizeof d);
	snprintf(d.dir, sizeof d.dir, "%s/recovery", wb->tmp);
	if (mkdir(d.dir, 0755) == -1)
		return (-1);
	memset(&cfg, 0, sizeof cfg);
	cfg.dir = d.dir;
	cfg.no_prefault = 1;
	if (wal_ring_open(&cfg, &r, NULL, &err) != 0) {
		fprintf(stderr, "walbench: %s\n", err.msg);
		return (-1);
	}
	wb_fill(payload, sizeof payload, 0);
	n = target / wal_record_span(size);
	for (i = 0; i < n; i++)
		if (wal_ring_append(r, payload, size, -1, NULL, &err) != 0) {
			fprintf(stderr, "walbench: %s\n", err.msg);
			wal_ring_close(r);
			return (-1);
		}
	wal_ring_close(r);
	bytes = dir_bytes(d.dir);

	/* Daemon start: on the full log, then on an empty directory. */
	if (wb_daemon_start(wb, &d, "recovery", 1, NULL) != 0)
		return (-1);
	full_s = wb_daemon_ready_s(&d);
	wb_daemon_stop(&d, 0);
	memset(&e, 0, sizeof e);
	if (wb_daemon_start(wb, &e, "empty", 0, NULL) != 0)
		return (-1);
	empty_s = wb_daemon_ready_s(&e);
	wb_daemon_stop(&e, 1);
	wb_result_init(&res, "recovery", "start on empty dir");
	snprintf(res.variant, sizeof res.variant, "start on %" PRIu64 " MiB",
	    bytes >> 20);
	res.rps = (double)n / full_s;
	res.rec_bytes = size;
	res.base_rps = (double)n / empty_s;
	snprintf(res.note, sizeof res.note, "ready in %.0f ms (empty: %.0f "
	    "ms)", full_s * 1e3, empty_s * 1e3);
	wb_report(wb, &res);

	/* walctl verify against reading the same files (warm cache). */
	(void)read_all_s(d.dir);
	if ((ver_s = verify_s(wb, d.dir)) < 0 || (rd_s = read_all_s(d.dir)) <
	    0)
		return (-1);
	wb_result_init(&res, "recovery", "read() of the files");
	snprintf(res.variant, sizeof res.variant, "walctl verify");
	res.rps = (double)n / ver_s;
	res.rec_bytes = size;
	res.base_rps = (double)n / rd_s;
	snprintf(res.note, sizeof res.note, "verify %.2f GB/s, read() %.2f "
	    "GB/s", (double)bytes / ver_s / 1e9, (double)bytes / rd_s / 1e9);
	wb_report(wb, &res);
	wb_rmtree(d.dir);
	return (0);
}
