/*
 * walmmapd tests - the segment ring writer (src/wal_ring.c).
 */
#include "config.h"

#include <sys/stat.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "faultinject.h"
#include "testsupport.h"
#include "wal_checkpoint.h"
#include "wal_format.h"
#include "wal_reader.h"
#include "wal_ring.h"

#define SEG64K	(64 * 1024)

static char *dir;
static struct wf_ctl *ctl;	/* fails this process's own calls */

static void
setup(void)
{
	char path[4200];

	dir = ts_mkdtemp("ring");
	snprintf(path, sizeof path, "%s.faultctl", dir);
	ck_assert_ptr_nonnull(ctl = wf_ctl_open(path));
	wf_ctl_use(ctl);
}

static void
teardown(void)
{
	char path[4200];

	wf_ctl_use(NULL);
	wf_ctl_close(ctl);
	snprintf(path, sizeof path, "%s.faultctl", dir);
	unlink(path);
	ts_rmtree(dir);
}

/* Path of a file in the test directory, in a static buffer. */
static const char *
dir_file(const char *name)
{
	static char buf[4200];

	snprintf(buf, sizeof buf, "%s/%s", dir, name);
	return (buf);
}

static struct wal_ring *
open_ring(uint64_t segsize, unsigned n)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = segsize,
	    .ring_segments = n };
	struct wal_ring *r;
	struct wal_error err;

	if (wal_ring_open(&cfg, &r, NULL, &err) != 0)
		ck_abort_msg("wal_ring_open: %s", err.msg);
	return (r);
}

static void
append_n(struct wal_ring *r, int64_t from, int64_t n)
{
	uint8_t buf[512];
	struct wal_error err;
	int64_t s, seq;

	for (s = from; s < from + n; s++) {
		ts_fill_payload(buf, ts_size_of(s), s);
		if (wal_ring_append(r, buf, (uint32_t)ts_size_of(s), -1, &seq,
		    &err) != 0)
			ck_abort_msg("append %lld: %s", (long long)s, err.msg);
		ck_assert_int_eq(seq, s);
	}
}

START_TEST(test_file_is_byte_exact)
{
	struct wal_ring *r = open_ring(SEG64K, 2);
	uint8_t *want = calloc(1, SEG64K), *got, payload[100];
	uint64_t off = WAL_FILE_HEADER_SIZE;
	size_t len;
	int64_t s;

	memcpy(want, "SIGNETWAL1\0\0\0\0\0\0", 16);
	for (s = 0; s < 20; s++) {
		ts_fill_payload(payload, (size_t)s * 5, s);
		ck_assert_int_eq(wal_ring_append(r, payload, (uint32_t)s * 5,
		    1700000000000000000ll + s, NULL, NULL), 0);
		/* Expected bytes built field by field, not with the encoder. */
		want[off] = 0x31; want[off + 1] = 0x4c;
		want[off + 2] = 0x41; want[off + 3] = 0x57;
		for (int i = 0; i < 8; i++) {
			want[off + 4 + i] = (uint8_t)((uint64_t)s >> (8 * i));
			want[off + 12 + i] = (uint8_t)((uint64_t)
			    (1700000000000000000ll + s) >> (8 * i));
		}
		for (int i = 0; i < 4; i++)
			want[off + 20 + i] = (uint8_t)((uint32_t)(s * 5) >>
			    (8 * i));
		memcpy(want + off + 24, payload, (size_t)s * 5);
		{
			uint32_t crc = (uint32_t)crc32(0, want + off,
			    (uInt)(24 + s * 5));

			for (int i = 0; i < 4; i++)
				want[off + 24 + (size_t)s * 5 + (size_t)i] =
				    (uint8_t)(crc >> (8 * i));
		}
		off += 28 + (uint64_t)s * 5;
	}
	wal_ring_close(r);
	got = ts_read_file(ts_seg_path(dir, 0), &len);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(len, SEG64K);
	ck_assert(memcmp(got, want, SEG64K) == 0);
	free(got);
	free(want);
}
END_TEST

START_TEST(test_append_and_read_back)
{
	struct wal_ring *r = open_ring(SEG64K, 2);

	append_n(r, 0, 1000);
	ck_assert_int_eq(wal_ring_next_seq(r), 1000);
	ck_assert_int_eq(wal_ring_written_seq(r), 999);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 1000);
}
END_TEST

START_TEST(test_fifty_rotations_ring_of_two)
{
	struct wal_ring *r = open_ring(SEG64K, 2);
	struct wal_ring_stats st;
	uint8_t buf[1000];
	struct wal_error err;
	int64_t s;

	/* ~3.5 MiB through 64 KiB segments: more than 50 rotations. */
	for (s = 0; s < 3500; s++) {
		ts_fill_payload(buf, 1000, s);
		if (wal_ring_append(r, buf, 1000, -1, NULL, &err) != 0)
			ck_abort_msg("append %lld: %s", (long long)s, err.msg);
	}
	wal_ring_stats(r, &st);
	ck_assert_uint_ge(st.rotations, 50);
	ck_assert_uint_eq(st.create_failures, 0);
	wal_ring_close(r);
	ck_assert_int_ge(ts_count_files(dir, "wal_mmap_"), 51);
	{
		struct wal_reader *rd;
		struct wal_record rec;
		int64_t n = 0;

		ck_assert_int_eq(wal_reader_open(dir, &rd, &err), 0);
		while (wal_reader_next(rd, &rec, &err) == 1) {
			ck_assert_int_eq(rec.seq, n);
			ck_assert_uint_eq(rec.size, 1000);
			ts_fill_payload(buf, 1000, n);
			ck_assert(memcmp(buf, rec.payload, 1000) == 0);
			n++;
		}
		ck_assert_int_eq(n, 3500);
		ck_assert_int_eq(wal_reader_stopped(rd)->status, WAL_REC_END);
		wal_reader_close(rd);
	}
}
END_TEST

START_TEST(test_record_too_large_for_segment)
{
	struct wal_ring *r = open_ring(SEG64K, 2);
	static uint8_t big[SEG64K];
	struct wal_error err;

	append_n(r, 0, 3);
	ck_assert_uint_eq(wal_ring_max_record(r), SEG64K - 16 - 28);
	ck_assert_int_eq(wal_ring_append(r, big, SEG64K - 16 - 27, -1, NULL,
	    &err), -EMSGSIZE);
	ck_assert_ptr_nonnull(strstr(err.msg, "exceeds the largest record"));
	/* The largest record does fit, in a segment of its own. */
	ck_assert_int_eq(wal_ring_append(r, big, SEG64K - 16 - 28, -1, NULL,
	    &err), 0);
	append_n(r, 4, 3);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, NULL, NULL), 7);
}
END_TEST

START_TEST(test_record_over_64mib)
{
	struct wal_ring *r = open_ring(SEG64K, 2);
	struct wal_error err;
	struct iovec iov[2];
	static uint8_t dummy[16];

	iov[0].iov_base = dummy;
	iov[0].iov_len = 64u * 1024 * 1024;
	iov[1].iov_base = dummy;
	iov[1].iov_len = 1;
	/* Checked before any byte is touched. */
	ck_assert_int_eq(wal_ring_appendv(r, iov, 2, -1, NULL, &err),
	    -EMSGSIZE);
	ck_assert_ptr_nonnull(strstr(err.msg, "64 MiB"));
	ck_assert_int_eq(wal_ring_next_seq(r), 0);
	wal_ring_close(r);
}
END_TEST

START_TEST(test_appendv_gathers)
{
	struct wal_ring *r = open_ring(SEG64K, 2);
	struct wal_reader *rd;
	struct wal_record rec;
	struct wal_error err;
	struct iovec iov[3] = {
		{ "abc", 3 }, { "", 0 }, { "defgh", 5 },
	};
	int64_t seq;

	ck_assert_int_eq(wal_ring_appendv(r, iov, 3, 5, &seq, &err), 0);
	ck_assert_int_eq(seq, 0);
	wal_ring_close(r);
	ck_assert_int_eq(wal_reader_open(dir, &rd, &err), 0);
	ck_assert_int_eq(wal_reader_next(rd, &rec, &err), 1);
	ck_assert_uint_eq(rec.size, 8);
	ck_assert_mem_eq(rec.payload, "abcdefgh", 8);
	ck_assert_int_eq(rec.timestamp_ns, 5);
	wal_reader_close(rd);
}
END_TEST

START_TEST(test_timestamp_is_realtime)
{
	struct wal_ring *r = open_ring(SEG64K, 2);
	struct wal_reader *rd;
	struct wal_record rec;
	struct wal_error err;
	int64_t before, after;

	before = wal_now_ns();
	ck_assert_int_eq(wal_ring_append(r, "x", 1, -1, NULL, &err), 0);
	after = wal_now_ns();
	wal_ring_close(r);
	ck_assert_int_eq(wal_reader_open(dir, &rd, &err), 0);
	ck_assert_int_eq(wal_reader_next(rd, &rec, &err), 1);
	ck_assert_int_ge(rec.timestamp_ns, before);
	ck_assert_int_le(rec.timestamp_ns, after);
	wal_reader_close(rd);
}
END_TEST

/* The clock jumps back: timestamps follow it, seqs never do. */
START_TEST(test_clock_jumps_back)
{
	static const int64_t ts[] = { 5000, 9000, 1000, 1000, 7000, 2 };
	struct wal_ring *r = open_ring(SEG64K, 2);
	struct wal_reader *rd;
	struct wal_record rec;
	struct wal_error err;
	int64_t seq;
	size_t i;

	for (i = 0; i < sizeof ts / sizeof ts[0]; i++) {
		ck_assert_int_eq(wal_ring_append(r, "t", 1, ts[i], &seq, &err),
		    0);
		ck_assert_int_eq(seq, (int64_t)i);
	}
	wal_ring_close(r);
	ck_assert_int_eq(wal_reader_open(dir, &rd, &err), 0);
	for (i = 0; i < sizeof ts / sizeof ts[0]; i++) {
		ck_assert_int_eq(wal_reader_next(rd, &rec, &err), 1);
		ck_assert_int_eq(rec.seq, (int64_t)i);
		ck_assert_int_eq(rec.timestamp_ns, ts[i]);
	}
	ck_assert_int_eq(wal_reader_next(rd, &rec, &err), 0);
	wal_reader_close(rd);
}
END_TEST

START_TEST(test_explicit_rotate)
{
	struct wal_ring *r = open_ring(SEG64K, 3);
	struct wal_ring_stats st;
	struct wal_error err;

	ck_assert_int_eq(wal_ring_rotate(r, &err), 0);	/* empty: no-op */
	wal_ring_stats(r, &st);
	ck_assert_uint_eq(st.rotations, 0);
	ck_assert_uint_eq(st.active_id, 0);
	append_n(r, 0, 5);
	ck_assert_int_eq(wal_ring_rotate(r, &err), 0);
	append_n(r, 5, 5);
	wal_ring_stats(r, &st);
	ck_assert_uint_eq(st.rotations, 1);
	ck_assert_uint_eq(st.active_id, 1);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 10);
}
END_TEST

START_TEST(test_sync_advances_durable)
{
	struct wal_ring *r = open_ring(SEG64K, 2);
	struct wal_ring_stats st;
	struct wal_error err;
	int64_t durable;

	ck_assert_int_eq(wal_ring_durable_seq(r), -1);
	append_n(r, 0, 300);
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), 0);
	ck_assert_int_eq(durable, 299);
	ck_assert_int_eq(wal_ring_durable_seq(r), 299);
	/* Nothing new: no second fdatasync. */
	wal_ring_stats(r, &st);
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), 0);
	{
		struct wal_ring_stats st2;

		wal_ring_stats(r, &st2);
		ck_assert_uint_eq(st2.syncs, st.syncs);
	}
	wal_ring_close(r);
}
END_TEST

struct sync_arg {
	struct wal_ring		*r;
	atomic_int		 stop;
	int64_t			 last;
	int			 failed;
	char			 why[600];
};

static void *
syncer(void *p)
{
	struct sync_arg *a = p;
	struct wal_error err;
	int64_t d;

	while (!atomic_load(&a->stop) && !a->failed) {
		if (wal_ring_sync(a->r, &d, &err) != 0) {
			snprintf(a->why, sizeof a->why, "%s", err.msg);
			a->failed = 1;
		} else if (d < a->last) {
			snprintf(a->why, sizeof a->why, "durable went back "
			    "from %lld to %lld", (long long)a->last,
			    (long long)d);
			a->failed = 1;
		}
		a->last = d;
	}
	return (NULL);
}

START_TEST(test_sync_concurrent_with_rotation)
{
	struct sync_arg a = { .r = open_ring(SEG64K, 2), .last = -1 };
	struct wal_ring_stats st;
	pthread_t t;

	pthread_create(&t, NULL, syncer, &a);
	append_n(a.r, 0, 20000);
	atomic_store(&a.stop, 1);
	pthread_join(t, NULL);
	ck_assert_msg(a.failed == 0, "concurrent sync: %s", a.why);
	wal_ring_stats(a.r, &st);
	ck_assert_uint_ge(st.rotations, 20);
	ck_assert_int_eq(wal_ring_sync(a.r, &a.last, NULL), 0);
	ck_assert_int_eq(a.last, 19999);
	wal_ring_close(a.r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 20000);
}
END_TEST

START_TEST(test_bad_config)
{
	struct wal_ring_config cfg = { .dir = dir };
	struct wal_ring *r;
	struct wal_error err;

	cfg.ring_segments = 1;
	ck_assert_int_eq(wal_ring_open(&cfg, &r, NULL, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "outside 2..16"));
	cfg.ring_segments = 17;
	ck_assert_int_eq(wal_ring_open(&cfg, &r, NULL, &err), -EINVAL);
	cfg.ring_segments = 2;
	cfg.segment_size = 100000;
	ck_assert_int_eq(wal_ring_open(&cfg, &r, NULL, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "64 KiB"));
	/* Unmapped a step at a time: whole pages only. */
	cfg.segment_size = 0;
	cfg.writeback_step = 6144;
	ck_assert_int_eq(wal_ring_open(&cfg, &r, NULL, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "writeback_step 6144 is not"));
	ck_assert_int_eq(ts_count_files(dir, "wal_mmap_"), 0);
}
END_TEST

/* In a 1 MiB tmpfs: fill the disk, see ENOSPC, free space, continue. */
static int
enospc_ring_child(void *arg, const char *d)
{
	struct wal_ring_config cfg = { .dir = d, .segment_size = SEG64K,
	    .ring_segments = 2 };
	struct wal_ring *r;
	struct wal_error err;
	uint8_t buf[1000];
	int64_t s, acked = 0;
	char filler[4200];
	int fd, rc;

	(void)arg;
	/* Leave room for ~6 segments, then take it back later. */
	snprintf(filler, sizeof filler, "%s/filler", d);
	if ((fd = open(filler, O_CREAT | O_WRONLY, 0600)) == -1 ||
	    fallocate(fd, 0, 0, 600 * 1024) != 0)
		return (20);
	close(fd);
	if (wal_ring_open(&cfg, &r, NULL, &err) != 0)
		return (21);
	for (s = 0; s < 100000; s++) {
		ts_fill_payload(buf, 1000, s);
		rc = wal_ring_append(r, buf, 1000, -1, NULL, &err);
		if (rc != 0)
			break;
		acked++;
	}
	if (rc != -ENOSPC || strstr(err.msg, "No space left") == NULL)
		return (22);
	/* Failure is repeatable and harmless. */
	if (wal_ring_append(r, buf, 1000, -1, NULL, &err) != -ENOSPC)
		return (23);
	if (wal_ring_next_seq(r) != acked)
		return (24);
	/* Space returns: appends resume with the next seq. */
	unlink(filler);
	for (s = acked; s < acked + 300; s++) {
		ts_fill_payload(buf, 1000, s);
		if (wal_ring_append(r, buf, 1000, -1, NULL, &err) != 0)
			return (25);
	}
	wal_ring_close(r);
	if (ts_verify_log(d, 0, NULL, NULL) != acked + 300)
		return (26);
	return (0);
}

START_TEST(test_enospc_at_rotation)
{
	int rc = ts_with_tmpfs(1024 * 1024, enospc_ring_child, NULL);

	if (rc == -1) {
		fprintf(stderr, "test_enospc_at_rotation: SKIPPED (cannot "
		    "mount tmpfs here; run as root)\n");
		return;
	}
	ck_assert_int_eq(rc, 0);
}
END_TEST

START_TEST(test_reserve_commit)
{
	struct wal_ring *r = open_ring(SEG64K, 2);
	struct wal_error err;
	uint8_t *p;

	ck_assert_int_eq(wal_ring_reserve(r, 4, &p, &err), 0);
	memcpy(p, "zero", 4);
	ck_assert_int_eq(wal_ring_commit(r, 77), 0);
	ck_assert_int_eq(wal_ring_reserve(r, 3, &p, &err), 0);
	memcpy(p, "one", 3);
	ck_assert_int_eq(wal_ring_commit(r, 78), 1);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, NULL, NULL), 2);
}
END_TEST

/*
 * Deferred commits: nothing is written (CRC stored, written_seq
 * published, readable) before the flush; a full batch flushes itself;
 * rotation and close flush what is pending.
 */
static void
commit_one(struct wal_ring *r, int64_t s)
{
	struct wal_error err;
	uint8_t *p;

	if (wal_ring_reserve(r, (uint32_t)ts_size_of(s), &p, &err) != 0)
		ck_abort_msg("reserve %lld: %s", (long long)s, err.msg);
	ts_fill_payload(p, ts_size_of(s), s);
	ck_assert_int_eq(wal_ring_commit_deferred(r, -1), s);
}

START_TEST(test_deferred_commit)
{
	struct wal_ring *r = open_ring(SEG64K, 4);
	struct wal_error err;
	int64_t s;

	for (s = 0; s < 5; s++)
		commit_one(r, s);
	ck_assert_int_eq(wal_ring_written_seq(r), -1);
	ck_assert_int_eq(wal_ring_next_seq(r), 5);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 0);
	wal_ring_flush(r);
	ck_assert_int_eq(wal_ring_written_seq(r), 4);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 5);
	wal_ring_flush(r);			/* nothing pending: no-op */
	ck_assert_int_eq(wal_ring_written_seq(r), 4);

	/* The batch-th deferred record flushes the whole batch. */
	for (; s < 5 + WAL_RING_CRC_BATCH - 1; s++)
		commit_one(r, s);
	ck_assert_int_eq(wal_ring_written_seq(r), 4);
	commit_one(r, s++);
	ck_assert_int_eq(wal_ring_written_seq(r), s - 1);

	/* Rotation seals the segment with its pending CRCs in it. */
	commit_one(r, s++);
	commit_one(r, s++);
	ck_assert_int_eq(wal_ring_rotate(r, &err), 0);
	ck_assert_int_eq(wal_ring_written_seq(r), s - 1);

	/* Close writes what is still pending. */
	commit_one(r, s++);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), s);
}
END_TEST

/* What a run's hook saw: each record's index and seq, and if published. */
struct run_seen {
	struct wal_ring	*ring;
	unsigned	 n;
	unsigned	 idx[8];
	int64_t		 seq[8];
	int		 published;	/* a seq at or below written_seq */
};

static void
run_each(void *arg, unsigned i, int64_t seq)
{
	struct run_seen *rs = arg;

	if (seq <= wal_ring_written_seq(rs->ring))
		rs->published = 1;
	if (rs->n < 8) {
		rs->idx[rs->n] = i;
		rs->seq[rs->n] = seq;
	}
	rs->n++;
}

/*
 * A run of records: consecutive seqs across segment switches, written at
 * the flush like deferred commits; a record the log cannot take ends the
 * run there, the ones before it flushed, and the hook saw only those
 * written, each before it was published.
 */
START_TEST(test_append_run)
{
	struct wal_ring *r = open_ring(SEG64K, 4);
	static uint8_t bufs[50][512], big[SEG64K];
	struct iovec iov[50];
	struct wal_ring_stats st;
	struct run_seen rs = { 0 };
	struct wal_error err;
	int64_t s = 0;
	unsigned i, k;

	rs.ring = r;
	for (k = 0; k < 20; k++) {	/* 1000 records, ~180 KiB */
		for (i = 0; i < 50; i++) {
			ts_fill_payload(bufs[i], ts_size_of(s + i), s + i);
			iov[i].iov_base = bufs[i];
			iov[i].iov_len = ts_size_of(s + i);
		}
		ck_assert_uint_eq(wal_ring_append_run(r, iov, 50, -1,
		    run_each, &rs, &err), 50);
		s += 50;
		ck_assert_int_eq(wal_ring_next_seq(r), s);
	}
	/* 1000 is not a multiple of the batch: the last ones are pending. */
	ck_assert_int_lt(wal_ring_written_seq(r), s - 1);
	ck_assert_uint_eq(wal_ring_append_run(r, iov, 0, -1, NULL, NULL,
	    &err), 0);
	wal_ring_flush(r);
	ck_assert_int_eq(wal_ring_written_seq(r), s - 1);
	wal_ring_stats(r, &st);
	ck_assert_uint_ge(st.rotations, 2);	/* runs crossed segments */
	ck_assert_uint_eq(rs.n, 1000);
	ck_assert_int_eq(rs.seq[7], 7);
	ck_assert_int_eq(rs.published, 0);	/* flushes inside runs too */
	memset(&rs, 0, sizeof rs);

	/* The third of these is larger than a 64 KiB segment takes. */
	for (i = 0; i < 5; i++) {
		ts_fill_payload(bufs[i], ts_size_of(s + i), s + i);
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = ts_size_of(s + i);
	}
	iov[2].iov_base = big;
	iov[2].iov_len = sizeof big;
	rs.ring = r;
	ck_assert_uint_eq(wal_ring_append_run(r, iov, 5, -1, run_each, &rs,
	    &err), 2);
	ck_assert_int_eq(err.code, EMSGSIZE);
	ck_assert_uint_eq(rs.n, 2);
	ck_assert_uint_eq(rs.idx[1], 1);
	ck_assert_int_eq(rs.seq[0], s);
	ck_assert_int_eq(rs.seq[1], s + 1);
	ck_assert_int_eq(rs.published, 0);
	s += 2;
	ck_assert_int_eq(wal_ring_written_seq(r), s - 1);
	ck_assert_int_eq(wal_ring_next_seq(r), s);

	/* 4 GiB + 10 bytes is refused, not taken for 10 (32-bit sizes). */
	iov[0].iov_base = big;
	iov[0].iov_len = ((size_t)1 << 32) + 10;
	ck_assert_uint_eq(wal_ring_append_run(r, iov, 1, -1, NULL, NULL,
	    &err), 0);
	ck_assert_int_eq(err.code, EMSGSIZE);
	ck_assert_int_eq(wal_ring_next_seq(r), s);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), s);
}
END_TEST

/*
 * The background thread blocks asynchronous signals, so SIGTERM, SIGINT and
 * SIGHUP reach the daemon's event loop and never a helper thread.
 */
START_TEST(test_bg_thread_blocks_signals)
{
	struct wal_ring *r = open_ring(SEG64K, 2);
	struct wal_ring_stats st;
	int i;

	/*
	 * A new thread runs with every signal blocked until it has started
	 * (glibc restores the creator's mask then): wait until it has done
	 * some work, its standby segment.
	 */
	for (i = 0; i < 1000; i++) {
		wal_ring_stats(r, &st);
		if (st.standby > 0)
			break;
		usleep(10000);
	}
	ck_assert_uint_gt(st.standby, 0);
	ck_assert_int_ge(ts_helper_threads_block_signals(getpid()), 1);
	wal_ring_close(r);
}
END_TEST


/* Wait (at most 10 s) until the ring's counters satisfy ok(). */
static void
wait_stats(struct wal_ring *r, int (*ok)(const struct wal_ring_stats *),
    const char *what)
{
	struct wal_ring_stats st;
	int i;

	for (i = 0; i < 10000; i++) {
		wal_ring_stats(r, &st);
		if (ok(&st))
			return;
		usleep(1000);
	}
	ck_abort_msg("waited 10 s for %s", what);
}

static int
checkpoint_caught_up(const struct wal_ring_stats *st)
{
	return (st->checkpoint_id == st->synced_below);
}

static int
bg_idle(const struct wal_ring_stats *st)
{
	return (st->standby > 0 && st->sealed_unsynced == 0 &&
	    st->checkpoint_id == st->synced_below);
}

static int
one_create_failure(const struct wal_ring_stats *st)
{
	return (st->create_failures >= 1);
}

/*
 * Issue #13, defect 3: a failed sync is sticky. The kernel reports a
 * failed write-back once and marks the pages clean, so the sync after it
 * succeeds without writing them; the ring must never call them durable.
 * It leaves walmmapd.sync-failed, and the next open writes everything after
 * the checkpoint again, syncs it and only then removes the marker.
 */
START_TEST(test_sync_failure_is_sticky)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K,
	    .ring_segments = 2 };
	struct wal_recovery info;
	struct wal_ring_stats st;
	struct wal_error err, err2;
	struct wal_ring *r;
	uint8_t *ck1, *ck2;
	size_t l1, l2;
	int64_t durable, n = 200;
	int i, rc = 0;

	r = open_ring(SEG64K, 2);
	append_n(r, 0, 100);
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), 0);
	ck_assert_int_eq(durable, 99);
	append_n(r, 100, 100);
	wf_arm(ctl, WF_MSYNC, 1, EIO, 0);
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), -EIO);
	ck_assert_int_eq(durable, 99);
	ck_assert_ptr_nonnull(strstr(err.msg, "cannot sync segment 0"));
	ck_assert_ptr_nonnull(strstr(err.msg, "Input/output error"));
	/* The next msync would succeed: it must not be asked. */
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err2), -EIO);
	ck_assert_int_eq(durable, 99);
	ck_assert_str_eq(err2.msg, err.msg);
	ck_assert_uint_eq(atomic_load(&ctl->op[WF_MSYNC].calls), 2);
	ck_assert_int_eq(wal_ring_durable_seq(r), 99);
	ck_assert_int_eq(wal_ring_failed(r, &err2), -EIO);
	ck_assert_str_eq(err2.msg, err.msg);
	wal_ring_stats(r, &st);
	ck_assert_int_eq(st.failed, EIO);
	ck_assert_int_eq(access(dir_file(WAL_SYNC_FAILED_NAME), F_OK), 0);
	ck1 = ts_read_file(dir_file(WAL_CHECKPOINT_NAME), &l1);
	ck_assert_ptr_nonnull(ck1);

	/*
	 * Records are still written, but nothing is synced again: not by the
	 * background thread either, so once WAL_MAX_SEALED_UNSYNCED sealed
	 * segments wait, the next rotation fails with the first error.
	 */
	for (i = 0; i < 3 * WAL_MAX_SEALED_UNSYNCED && rc == 0; i++) {
		append_n(r, n, 1);
		n++;
		rc = wal_ring_rotate(r, &err2);
	}
	ck_assert_int_eq(rc, -EIO);
	ck_assert_str_eq(err2.msg, err.msg);
	wal_ring_stats(r, &st);
	ck_assert_uint_eq(st.sealed_unsynced, WAL_MAX_SEALED_UNSYNCED);
	ck_assert_int_eq(wal_ring_durable_seq(r), 99);
	wal_ring_close(r);
	/* Close claimed nothing: the checkpoint did not move. */
	ck2 = ts_read_file(dir_file(WAL_CHECKPOINT_NAME), &l2);
	ck_assert_ptr_nonnull(ck2);
	ck_assert_uint_eq(l1, l2);
	ck_assert(memcmp(ck1, ck2, l1) == 0);
	free(ck1);
	free(ck2);
	ck_assert_int_eq(access(dir_file(WAL_SYNC_FAILED_NAME), F_OK), 0);

	/* The next open writes every segment after the checkpoint again. */
	ck_assert_int_eq(wal_ring_open(&cfg, &r, &info, &err), 0);
	ck_assert_int_eq(info.sync_failed, 1);
	ck_assert_uint_ge(info.rewritten, 2);
	ck_assert_uint_eq(info.rewritten, info.synced);
	ck_assert_int_eq(info.next_seq, n);
	ck_assert_int_eq(wal_ring_durable_seq(r), n - 1);
	ck_assert_int_eq(wal_ring_failed(r, NULL), 0);
	ck_assert_int_eq(access(dir_file(WAL_SYNC_FAILED_NAME), F_OK), -1);
	ck_assert_int_eq(errno, ENOENT);
	append_n(r, n, 10);
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), 0);
	ck_assert_int_eq(durable, n + 9);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), n + 10);
}
END_TEST

/*
 * A failed fdatasync of a sealed segment in the background thread is
 * sticky too (it used to be ignored and retried).
 */
START_TEST(test_background_sync_failure_is_sticky)
{
	struct wal_ring *r = open_ring(SEG64K, 2);
	struct wal_error err;
	int64_t durable;
	int i;

	append_n(r, 0, 50);
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), 0);
	wait_stats(r, bg_idle, "the background thread to go idle");
	wf_arm(ctl, WF_FDATASYNC, 1, EIO, 0);
	append_n(r, 50, 50);
	ck_assert_int_eq(wal_ring_rotate(r, &err), 0);
	for (i = 0; i < 10000 && wal_ring_failed(r, NULL) == 0; i++)
		usleep(1000);
	ck_assert_int_eq(wal_ring_failed(r, &err), -EIO);
	ck_assert_ptr_nonnull(strstr(err.msg, "cannot sync segment 0"));
	ck_assert_uint_eq(atomic_load(&ctl->op[WF_FDATASYNC].injected), 1);
	/* The syncs the group commit would make now would all succeed. */
	append_n(r, 100, 5);
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), -EIO);
	ck_assert_int_eq(durable, 49);
	ck_assert_int_eq(access(dir_file(WAL_SYNC_FAILED_NAME), F_OK), 0);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 105);
}
END_TEST

/*
 * Issue #13, defect 5: at most WAL_MAX_SEALED_UNSYNCED sealed segments
 * await a sync, under a rotation-heavy load with 64 KiB segments and a
 * background thread kept busy creating fifteen standbys.
 */
/* Append records from .. to - 1 of 1000 bytes each (seq = index). */
static void
append_1000(struct wal_ring *r, int64_t from, int64_t to)
{
	uint8_t buf[1000];
	struct wal_error err;
	int64_t s;

	for (s = from; s < to; s++) {
		ts_fill_payload(buf, sizeof buf, s);
		ck_assert_int_eq(wal_ring_append(r, buf, sizeof buf, -1, NULL,
		    &err), 0);
	}
}

/* The log holds records 0 .. n - 1, each of 1000 bytes, and no more. */
static void
read_back_1000(int64_t want)
{
	struct wal_reader *rd;
	struct wal_record rec;
	struct wal_error err;
	int64_t n = 0;

	ck_assert_int_eq(wal_reader_open(dir, &rd, &err), 0);
	while (wal_reader_next(rd, &rec, &err) == 1) {
		TS_CHECK(rec.seq == n && rec.size == 1000, "seq %lld",
		    (long long)n);
		n++;
	}
	ck_assert_int_eq(n, want);
	wal_reader_close(rd);
}

START_TEST(test_sealed_unsynced_bound)
{
	struct wal_ring *r = open_ring(SEG64K, 16);
	struct wal_ring_stats st;
	struct wal_error err;
	uint8_t buf[1000];
	uint64_t peak = 0;
	int64_t s;

	for (s = 0; s < 20000; s++) {
		ts_fill_payload(buf, sizeof buf, s);
		if (wal_ring_append(r, buf, sizeof buf, -1, NULL, &err) != 0)
			ck_abort_msg("append %lld: %s", (long long)s, err.msg);
		wal_ring_stats(r, &st);
		if (st.sealed_unsynced > peak)
			peak = st.sealed_unsynced;
	}
	ck_assert_uint_ge(st.rotations, 300);
	ck_assert_msg(peak <= WAL_MAX_SEALED_UNSYNCED, "%llu sealed segments "
	    "awaited a sync at once", (unsigned long long)peak);
	wal_ring_close(r);
	read_back_1000(20000);
}
END_TEST

/* Wait (bounded) until the background thread synced every sealed one. */
static void
wait_sealed_synced(struct wal_ring *r)
{
	struct wal_ring_stats st;
	int i;

	for (i = 0; i < 2000; i++) {
		wal_ring_stats(r, &st);
		if (st.sealed_unsynced == 0)
			return;
		usleep(5000);
	}
	ck_abort_msg("%llu sealed segments still unsynced after 10 s",
	    (unsigned long long)st.sealed_unsynced);
}

/*
 * writeback_step: the background thread unmaps a sealed segment and
 * starts its write-back a step at a time (one sync_file_range() a step,
 * not one a segment), a sync starts the active segment's write-back in
 * steps before its msync, and every record is still there.
 */
START_TEST(test_writeback_step)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K,
	    .ring_segments = 3, .writeback_step = 4096 };
	struct wal_ring_stats st;
	struct wal_ring *r;
	struct wal_error err;
	uint8_t buf[1000];
	uint64_t c0, c1, sealed;
	int64_t s, durable;

	ck_assert_int_eq(wal_ring_open(&cfg, &r, NULL, &err), 0);
	c0 = atomic_load(&ctl->sfr_calls);
	/*
	 * One sealed segment at a time, so that the background thread is
	 * the one to release each: a writer that reaches the bound of
	 * sealed segments syncs and closes them itself first, and a segment
	 * already synced is unmapped without a write-back to start (seen
	 * under ASan, where the background thread falls behind).
	 */
	for (s = 0; s < 400; s++) {
		ts_fill_payload(buf, sizeof buf, s);
		ck_assert_int_eq(wal_ring_append(r, buf, sizeof buf, -1, NULL,
		    &err), 0);
		if (s % 50 == 49) {
			ck_assert_int_eq(wal_ring_rotate(r, &err), 0);
			wait_sealed_synced(r);
		}
	}
	wal_ring_stats(r, &st);
	sealed = st.rotations;
	ck_assert_uint_eq(sealed, 8);
	/* 16 steps of 4K a 64K segment; without the option one call each. */
	ck_assert_msg(atomic_load(&ctl->sfr_calls) - c0 >= sealed * 16,
	    "%llu sync_file_range calls for %llu sealed segments",
	    (unsigned long long)(atomic_load(&ctl->sfr_calls) - c0),
	    (unsigned long long)sealed);

	/* 40 records (40K) in the fresh active segment, then a sync. */
	append_1000(r, 400, 440);
	c1 = atomic_load(&ctl->sfr_calls);
	ck_assert_int_eq(wal_ring_sync_paced(r, &durable, &err), 0);
	ck_assert_int_eq(durable, 439);
	ck_assert_msg(atomic_load(&ctl->sfr_calls) - c1 >= 9, "a sync of 40K "
	    "made %llu sync_file_range calls",
	    (unsigned long long)(atomic_load(&ctl->sfr_calls) - c1));
	/* The writer's own sync (wal_ring_sync) never paces. */
	append_1000(r, 440, 450);
	c1 = atomic_load(&ctl->sfr_calls);
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), 0);
	ck_assert_int_eq(durable, 449);
	ck_assert_uint_eq(atomic_load(&ctl->sfr_calls), c1);
	wal_ring_close(r);
	read_back_1000(450);
}
END_TEST

/*
 * writeback_step: the pauses of one segment or one sync add up to at most
 * 200 ms of real time (walmmapd.conf(5)), not 200 ms of asked-for 50 us
 * sleeps. The shim makes every nanosleep() last 1 ms longer, as a loaded
 * CPU does: a 16 MiB segment released in 4K steps, and a sync of an 8 MiB
 * backlog, may then pause about 200 times each, not 4000 and 2000 (4 s
 * and 2 s). Each pause lasts at least 1 ms, so the bound is exact.
 */
START_TEST(test_writeback_pause_cap_is_real_time)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = 16 << 20,
	    .ring_segments = 3, .no_prefault = 1, .writeback_step = 4096 };
	static uint8_t buf[65000];
	struct wal_ring *r;
	struct wal_error err;
	uint64_t n0, n1;
	int64_t s, durable;

	ck_assert_int_eq(wal_ring_open(&cfg, &r, NULL, &err), 0);
	/* 260 records of 65000 bytes: one full segment and a few more. */
	for (s = 0; s < 260; s++) {
		ts_fill_payload(buf, sizeof buf, s);
		ck_assert_int_eq(wal_ring_append(r, buf, sizeof buf, -1, NULL,
		    &err), 0);
	}
	n0 = atomic_load(&ctl->sleep_calls);
	atomic_store(&ctl->sleep_extra_ns, 1000000);
	ck_assert_int_eq(wal_ring_rotate(r, &err), 0);
	wait_sealed_synced(r);
	n1 = atomic_load(&ctl->sleep_calls);
	ck_assert_msg(n1 - n0 <= 2 * 201, "%llu pauses of over 1 ms to "
	    "release two segments", (unsigned long long)(n1 - n0));

	/* About 8 MiB in the active segment, then a sync. */
	for (s = 260; s < 390; s++) {
		ts_fill_payload(buf, sizeof buf, s);
		ck_assert_int_eq(wal_ring_append(r, buf, sizeof buf, -1, NULL,
		    &err), 0);
	}
	n0 = atomic_load(&ctl->sleep_calls);
	ck_assert_int_eq(wal_ring_sync_paced(r, &durable, &err), 0);
	n1 = atomic_load(&ctl->sleep_calls);
	atomic_store(&ctl->sleep_extra_ns, 0);
	ck_assert_int_eq(durable, 389);
	ck_assert_msg(n1 - n0 >= 1 && n1 - n0 <= 201, "%llu pauses of over "
	    "1 ms in one sync", (unsigned long long)(n1 - n0));
	wal_ring_close(r);
}
END_TEST

/*
 * Issue #13, defect 6: a reservation given up (an APPEND_FD payload that
 * could not be read) leaves no stale bytes after the segment's last record,
 * which a later recovery would read as a torn record and end the log at.
 */
START_TEST(test_abandoned_reservation_is_zeroed)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K,
	    .ring_segments = 2 };
	struct wal_recovery info;
	struct wal_ring_stats st;
	struct wal_error err;
	struct wal_ring *r;
	struct wal_scan sc;
	uint8_t *p, *img, buf[1000];
	uint32_t rest;
	size_t len;
	int64_t s = 0;

	r = open_ring(SEG64K, 2);
	for (;; s++) {
		wal_ring_stats(r, &st);
		if (st.active_used > SEG64K - 2100)
			break;
		ts_fill_payload(buf, sizeof buf, s);
		ck_assert_int_eq(wal_ring_append(r, buf, sizeof buf, -1, NULL,
		    &err), 0);
	}
	ck_assert_uint_eq(st.active_id, 0);
	/* A payload read fails part-way: 600 of 1000 bytes were stored. */
	ck_assert_int_eq(wal_ring_reserve(r, 1000, &p, &err), 0);
	memset(p, 0xa5, 600);
	wal_ring_abandon(r);
	/* The next record does not fit in what is left: segment 0 is sealed. */
	rest = (uint32_t)(SEG64K - st.active_used);
	{
		uint8_t *big = calloc(1, rest);

		ck_assert_int_eq(wal_ring_append(r, big, rest - 27, -1, NULL,
		    &err), 0);
		free(big);
	}
	wal_ring_stats(r, &st);
	ck_assert_uint_eq(st.active_id, 1);
	s++;
	wal_ring_close(r);

	img = ts_read_file(ts_seg_path(dir, 0), &len);
	ck_assert_ptr_nonnull(img);
	wal_scan(img, len, WAL_FILE_HEADER_SIZE, -1, &sc);
	ck_assert_int_eq(sc.last_seq, s - 2);
	ck_assert_msg(wal_is_zero(img + sc.end, len - sc.end), "stale bytes "
	    "after the last record of a sealed segment");
	free(img);

	/* Read in full (no checkpoint): no tear, nothing discarded. */
	ck_assert_int_eq(unlink(dir_file(WAL_CHECKPOINT_NAME)), 0);
	ck_assert_int_eq(wal_ring_open(&cfg, &r, &info, &err), 0);
	ck_assert_int_eq(info.checkpoint, WAL_CKPT_NONE);
	ck_assert_uint_eq(info.torn_bytes, 0);
	ck_assert_uint_eq(info.discarded, 0);
	ck_assert_int_eq(info.next_seq, s);
	wal_ring_close(r);
	ck_assert_int_eq(ts_count_files(dir, "wal_mmap_0000000000.wal."), 0);
	ck_assert_int_eq(ts_count_files(dir, "wal_mmap_0000000001.wal."), 0);
	ck_assert_int_eq(ts_verify_log(dir, 0, NULL, NULL), s);
}
END_TEST

/*
 * Issue #13, defect 7: a segment creation that fails after the file got
 * its name (directory fsync, mmap) does not wedge every later creation:
 * the name is removed and the id is not used again.
 */
static void
create_fails_after_rename(enum wf_call call, int64_t nth, int errnum)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K,
	    .ring_segments = 2, .no_prefault = 1 };
	struct wal_recovery info;
	struct wal_ring_stats st;
	struct wal_error err;
	struct wal_ring *r;
	int i;

	ck_assert_int_eq(wal_ring_open(&cfg, &r, NULL, &err), 0);
	append_n(r, 0, 10);
	wait_stats(r, bg_idle, "the background thread to go idle");
	wal_ring_stats(r, &st);
	ck_assert_uint_eq(st.active_id, 0);	/* segment 1 is the standby */
	wf_arm(ctl, call, nth, errnum, 0);
	/* Segment 1 becomes active; creating segment 2 fails. */
	ck_assert_int_eq(wal_ring_rotate(r, &err), 0);
	wait_stats(r, one_create_failure, "the standby creation to fail");
	ck_assert_uint_eq(atomic_load(&ctl->op[call].injected), 1);
	ck_assert_int_eq(access(ts_seg_path(dir, 2), F_OK), -1);
	/* The next creations work (inline, no standby is ready). */
	for (i = 0; i < 3; i++) {
		append_n(r, 10 + i, 1);
		ck_assert_int_eq(wal_ring_rotate(r, &err), 0);
	}
	append_n(r, 13, 1);
	wal_ring_stats(r, &st);
	ck_assert_uint_ge(st.active_id, 4);
	wal_ring_close(r);
	/* Id 2 is never used; the log has no hole. */
	ck_assert_int_eq(access(ts_seg_path(dir, 2), F_OK), -1);
	ck_assert_int_eq(wal_ring_open(&cfg, &r, &info, &err), 0);
	ck_assert_uint_eq(info.discarded, 0);
	ck_assert_int_eq(info.next_seq, 14);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 14);
}

START_TEST(test_create_mmap_fails_after_rename)
{
	create_fails_after_rename(WF_MMAP, 1, ENOMEM);
}
END_TEST

START_TEST(test_create_dirsync_fails_after_rename)
{
	/* The new file's fsync, then the directory's. */
	create_fails_after_rename(WF_FSYNC, 2, EIO);
}
END_TEST

/*
 * The checkpoint follows the sealed segments the ring synced, off the
 * acknowledgement path; a reopen reads from its segment on.
 */
START_TEST(test_checkpoint_follows_syncs)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K,
	    .ring_segments = 2 };
	struct wal_checkpoint ck;
	struct wal_recovery info;
	struct wal_ring_stats st;
	struct wal_error err;
	struct wal_ring *r;
	int64_t last, durable;
	uint8_t *img;
	size_t len;
	struct wal_scan sc;
	int dfd;

	r = open_ring(SEG64K, 2);
	append_n(r, 0, 2000);
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), 0);
	wait_stats(r, checkpoint_caught_up, "the checkpoint");
	wal_ring_stats(r, &st);
	ck_assert_uint_ge(st.checkpoint_id, 2);
	ck_assert_uint_le(st.retain_below, st.checkpoint_id);
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	ck_assert_int_eq(wal_checkpoint_read(dfd, dir, &ck, &err), 1);
	close(dfd);
	ck_assert_uint_eq(ck.synced_below, st.checkpoint_id);
	img = ts_read_file(ts_seg_path(dir, ck.synced_below - 1), &len);
	wal_scan(img, len, WAL_FILE_HEADER_SIZE, -1, &sc);
	free(img);
	ck_assert_int_eq(ck.last_seq, sc.last_seq);
	ck_assert_uint_gt(ck.next_id, st.active_id);
	last = durable;
	wal_ring_close(r);

	ck_assert_int_eq(wal_ring_open(&cfg, &r, &info, &err), 0);
	ck_assert_int_eq(info.checkpoint, WAL_CKPT_USED);
	ck_assert_uint_ge(info.scan_from_id, st.checkpoint_id);
	ck_assert_int_eq(info.next_seq, last + 1);
	wal_ring_close(r);
}
END_TEST

/*
 * A sync that fails while the ring is opened (recovery's) fails the open,
 * says what to do, and leaves the marker: the next open writes the
 * segments again before it syncs them.
 */
START_TEST(test_recovery_sync_failure)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K,
	    .ring_segments = 2 };
	struct wal_recovery info;
	struct wal_error err;
	struct wal_ring *r;

	r = open_ring(SEG64K, 2);
	append_n(r, 0, 100);
	wal_ring_close(r);
	wf_arm(ctl, WF_FDATASYNC, 1, EIO, 0);
	ck_assert_int_eq(wal_ring_open(&cfg, &r, &info, &err), -EIO);
	ck_assert_ptr_nonnull(strstr(err.msg, "cannot sync segment"));
	ck_assert_ptr_nonnull(strstr(err.msg, WAL_SYNC_FAILED_NAME));
	ck_assert_ptr_nonnull(strstr(err.msg, "start again"));
	ck_assert_int_eq(access(dir_file(WAL_SYNC_FAILED_NAME), F_OK), 0);
	ck_assert_int_eq(wal_ring_open(&cfg, &r, &info, &err), 0);
	ck_assert_int_eq(info.sync_failed, 1);
	ck_assert_uint_ge(info.rewritten, 1);
	ck_assert_int_eq(info.next_seq, 100);
	ck_assert_int_eq(wal_ring_durable_seq(r), 99);
	ck_assert_int_eq(access(dir_file(WAL_SYNC_FAILED_NAME), F_OK), -1);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 100);
}
END_TEST

static Suite *
ring_suite(void)
{
	Suite *s = suite_create("ring");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_file_is_byte_exact);
	tcase_add_test(tc, test_append_and_read_back);
	tcase_add_test(tc, test_fifty_rotations_ring_of_two);
	tcase_add_test(tc, test_record_too_large_for_segment);
	tcase_add_test(tc, test_record_over_64mib);
	tcase_add_test(tc, test_appendv_gathers);
	tcase_add_test(tc, test_timestamp_is_realtime);
	tcase_add_test(tc, test_clock_jumps_back);
	tcase_add_test(tc, test_explicit_rotate);
	tcase_add_test(tc, test_sync_advances_durable);
	tcase_add_test(tc, test_sync_concurrent_with_rotation);
	tcase_add_test(tc, test_bad_config);
	tcase_add_test(tc, test_enospc_at_rotation);
	tcase_add_test(tc, test_reserve_commit);
	tcase_add_test(tc, test_append_run);
	tcase_add_test(tc, test_deferred_commit);
	tcase_add_test(tc, test_bg_thread_blocks_signals);
	tcase_add_test(tc, test_sync_failure_is_sticky);
	tcase_add_test(tc, test_background_sync_failure_is_sticky);
	tcase_add_test(tc, test_sealed_unsynced_bound);
	tcase_add_test(tc, test_writeback_step);
	tcase_add_test(tc, test_writeback_pause_cap_is_real_time);
	tcase_add_test(tc, test_abandoned_reservation_is_zeroed);
	tcase_add_test(tc, test_create_mmap_fails_after_rename);
	tcase_add_test(tc, test_create_dirsync_fails_after_rename);
	tcase_add_test(tc, test_checkpoint_follows_syncs);
	tcase_add_test(tc, test_recovery_sync_failure);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(ring_suite()));
}
