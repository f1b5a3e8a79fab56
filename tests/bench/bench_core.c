/*
 * walmmapd - microbenchmark of the core ring writer (not run by make check).
 *
 *	bench_core [-n RECORDS] [-d DIR] [SIZE...]
 *
 * For each SIZE (default 32 and 256 bytes) appends records through
 * wal_ring_append() with 64 MiB segments, CLOCK_REALTIME stamping and CRC
 * included, and prints ns per append and records/s twice:
 *   append     into segments the background thread has already
 *              pre-faulted (the append path itself);
 *   sustained  RECORDS records with the default ring of 4, so the cost of
 *              creating and pre-faulting segments shows when the writer
 *              outruns the background thread.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wal_ring.h"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

/*
 * Append n records of size bytes. With ready_only, open a ring of 16 and
 * wait until its 15 standby segments are pre-faulted, and time only as many
 * records as fit in them: the cost of the append path itself. Otherwise
 * time n records with the default ring, segment creation included.
 */
static int
run(const char *dir, uint32_t size, long n, int ready_only)
{
	struct wal_ring_config cfg = { .dir = dir };
	struct wal_ring *r;
	struct wal_ring_stats st;
	struct wal_error err;
	static uint8_t payload[65536];
	double t0, t1;
	long i, fit;
	int waited;

	memset(payload, 'x', sizeof payload);
	if (ready_only)
		cfg.ring_segments = WAL_RING_MAX;
	if (wal_ring_open(&cfg, &r, NULL, &err) != 0) {
		fprintf(stderr, "bench_core: %s\n", err.msg);
		return (-1);
	}
	for (waited = 0; waited < 600; waited++) {
		wal_ring_stats(r, &st);
		if (st.standby + 1 >= (ready_only ? WAL_RING_MAX :
		    WAL_RING_DEFAULT))
			break;
		usleep(100000);
	}
	if (ready_only) {
		fit = (long)((st.standby * st.segment_size) /
		    wal_record_span(size));
		if (fit < n)
			n = fit;
	}
	t0 = now_s();
	for (i = 0; i < n; i++)
		if (wal_ring_append(r, payload, size, -1, NULL, &err) != 0) {
			fprintf(stderr, "bench_core: %s\n", err.msg);
			wal_ring_close(r);
			return (-1);
		}
	t1 = now_s();
	wal_ring_stats(r, &st);
	printf("%-9s %5" PRIu32 " B: %8.1f ns/append %12.0f records/s  "
	    "(%ld records, %" PRIu64 " rotations, %" PRIu64 " waited for a "
	    "standby)\n", ready_only ? "append" : "sustained", size,
	    (t1 - t0) * 1e9 / (double)n, (double)n / (t1 - t0), n,
	    st.rotations, st.rotations_waited);
	wal_ring_close(r);
	return (0);
}

int
main(int argc, char **argv)
{
	uint32_t sizes[16] = { 32, 256 };
	char tmpl[64], cmd[128];
	const char *dir = NULL;
	long n = 1000000;
	int c, i, nsizes = 2, rc = 0;

	while ((c = getopt(argc, argv, "n:d:")) != -1) {
		switch (c) {
		case 'n':
			n = strtol(optarg, NULL, 10);
			break;
		case 'd':
			dir = optarg;
			break;
		default:
			fprintf(stderr, "usage: bench_core [-n RECORDS] "
			    "[-d DIR] [SIZE...]\n");
			return (2);
		}
	}
	if (optind < argc) {
		for (nsizes = 0; optind < argc && nsizes < 16; optind++)
			sizes[nsizes++] = (uint32_t)strtoul(argv[optind], NULL,
			    10);
	}
	for (i = 0; i < nsizes; i++) {
		char *d = (char *)dir;

		if (dir == NULL) {
			snprintf(tmpl, sizeof tmpl, "/tmp/walbench-XXXXXX");
			if ((d = mkdtemp(tmpl)) == NULL) {
				perror("bench_core: mkdtemp");
				return (1);
			}
		}
		if (run(d, sizes[i], n, 1) != 0 || run(d, sizes[i], n, 0) != 0)
			rc = 1;
		if (dir == NULL) {
			snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
			if (system(cmd) != 0)
				rc = 1;
		}
	}
	return (rc);
}
