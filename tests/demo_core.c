/*
 * walmmapd - demo of the core library until the daemon exists: append
 * records to a directory, then read them back and report.
 *
 *	demo_core [DIR] [COUNT]
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wal_crc.h"
#include "wal_reader.h"
#include "wal_ring.h"

int
main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/tmp/walmmapd-demo";
	long i, count = argc > 2 ? strtol(argv[2], NULL, 10) : 100000;
	struct wal_ring_config cfg = { .dir = dir };
	struct wal_recovery info;
	struct wal_reader *rd;
	struct wal_ring *r;
	struct wal_record rec;
	struct wal_error err;
	int64_t first = -1, last = -1, n = 0;
	char buf[64];

	if (mkdir(dir, 0750) == -1 && errno != EEXIST) {
		fprintf(stderr, "demo_core: cannot create %s: %s\n", dir,
		    strerror(errno));
		return (1);
	}
	if (wal_ring_open(&cfg, &r, &info, &err) != 0) {
		fprintf(stderr, "demo_core: %s\n", err.msg);
		return (1);
	}
	printf("opened %s: continuing at seq %" PRId64 " (CRC-32 by %s)\n",
	    dir, info.next_seq, wal_crc32_impl());
	for (i = 0; i < count; i++) {
		int len = snprintf(buf, sizeof buf, "demo record %ld", i);

		if (wal_ring_append(r, buf, (uint32_t)len, -1, NULL, &err)
		    != 0) {
			fprintf(stderr, "demo_core: %s\n", err.msg);
			wal_ring_close(r);
			return (1);
		}
	}
	if (wal_ring_sync(r, &last, &err) != 0) {
		fprintf(stderr, "demo_core: %s\n", err.msg);
		return (1);
	}
	wal_ring_close(r);
	printf("appended %ld records, durable up to seq %" PRId64 "\n", count,
	    last);

	if (wal_reader_open(dir, &rd, &err) != 0) {
		fprintf(stderr, "demo_core: %s\n", err.msg);
		return (1);
	}
	while (wal_reader_next(rd, &rec, &err) == 1) {
		if (first < 0)
			first = rec.seq;
		last = rec.seq;
		n++;
	}
	printf("read back %" PRId64 " records, seq %" PRId64 "..%" PRId64
	    ", stopped at: %s\n", n, first, last,
	    wal_rec_strstatus(wal_reader_stopped(rd)->status));
	wal_reader_close(rd);
	return (0);
}
