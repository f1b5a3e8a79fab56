/*
 * walmmapd tests - reading segments back (src/wal_reader.c).
 */
#include "config.h"

#include <sys/stat.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testsupport.h"
#include "wal_format.h"
#include "wal_reader.h"
#include "wal_ring.h"

#define SEG64K	(64 * 1024)

static char *dir;

static void
setup(void)
{
	dir = ts_mkdtemp("reader");
}

static void
teardown(void)
{
	ts_rmtree(dir);
}

static struct wal_ring *
open_ring(void)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K,
	    .ring_segments = 2 };
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
	int64_t s;

	for (s = from; s < from + n; s++) {
		ts_fill_payload(buf, ts_size_of(s), s);
		ck_assert_int_eq(wal_ring_append(r, buf,
		    (uint32_t)ts_size_of(s), -1, NULL, NULL), 0);
	}
}

/* Write a segment file by hand with records first..first+n-1. */
static void
write_segment(uint64_t id, int64_t first, int n)
{
	static uint8_t img[SEG64K];
	uint64_t off = WAL_FILE_HEADER_SIZE;
	uint8_t buf[512];
	int fd, i;

	memset(img, 0, sizeof img);
	memcpy(img, WAL_FILE_MAGIC, WAL_FILE_HEADER_SIZE);
	for (i = 0; i < n; i++) {
		ts_fill_payload(buf, ts_size_of(first + i), first + i);
		off += wal_record_encode(img + off, first + i, 1000 + i, buf,
		    (uint32_t)ts_size_of(first + i));
	}
	fd = open(ts_seg_path(dir, id), O_CREAT | O_WRONLY | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, img, sizeof img), sizeof img);
	close(fd);
}

START_TEST(test_empty_directory)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;

	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 0);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_END);
	wal_reader_close(r);
}
END_TEST

START_TEST(test_open_missing)
{
	struct wal_reader *r;
	struct wal_error err;
	char p[4200];

	snprintf(p, sizeof p, "%s/none", dir);
	ck_assert_int_eq(wal_reader_open(p, &r, &err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err.msg, p));
}
END_TEST

START_TEST(test_seek_binary_search)
{
	struct wal_ring *w = open_ring();
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	static const int64_t targets[] = { 0, 1, 777, 4999, 2500, 3333 };
	size_t i;

	append_n(w, 0, 5000);
	wal_ring_close(w);
	ck_assert_int_gt(ts_count_files(dir, "wal_mmap_"), 10);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	for (i = 0; i < sizeof targets / sizeof targets[0]; i++) {
		ck_assert_int_eq(wal_reader_seek(r, targets[i], &err), 0);
		ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
		ck_assert_int_eq(rec.seq, targets[i]);
		ck_assert_int_eq(wal_reader_next(r, &rec, &err),
		    targets[i] < 4999 ? 1 : 0);
	}
	/* Beyond the end: nothing yet, clean end. */
	ck_assert_int_eq(wal_reader_seek(r, 9000, &err), 0);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 0);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_END);
	wal_reader_close(r);
}
END_TEST

START_TEST(test_seek_before_first_after_retention)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;

	/* Segments 4 and 5 remain of a log whose start was deleted. */
	write_segment(4, 100, 10);
	write_segment(5, 110, 10);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	ck_assert_int_eq(wal_reader_seek(r, 3, &err), 0);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
	ck_assert_int_eq(rec.seq, 100);
	ck_assert_int_eq(wal_reader_seek(r, 115, &err), 0);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
	ck_assert_int_eq(rec.seq, 115);
	wal_reader_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 100, ts_size_of, NULL), 20);
}
END_TEST

START_TEST(test_follow_sees_new_records)
{
	struct wal_ring *w = open_ring();
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	int64_t n = 0;

	append_n(w, 0, 100);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	while (wal_reader_next(r, &rec, &err) == 1)
		ck_assert_int_eq(rec.seq, n++);
	ck_assert_int_eq(n, 100);
	/* The writer carries on, across several rotations. */
	append_n(w, 100, 3000);
	while (wal_reader_next(r, &rec, &err) == 1)
		ck_assert_int_eq(rec.seq, n++);
	ck_assert_int_eq(n, 3100);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_END);
	wal_ring_close(w);
	wal_reader_close(r);
}
END_TEST

START_TEST(test_flipped_bit_stops_and_says_where)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	const struct wal_reader_stop *st;
	uint64_t off = WAL_FILE_HEADER_SIZE;
	uint8_t b = 0xff;
	int64_t n = 0;

	write_segment(0, 0, 20);
	write_segment(1, 20, 20);
	for (int i = 0; i < 7; i++)
		off += wal_record_span(ts_size_of(20 + i));
	/* Seq 27 in segment 1 gets a damaged CRC. */
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 1), &b, 1,
	    (off_t)(off + 24 + ts_size_of(27))), 0);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	while (wal_reader_next(r, &rec, &err) == 1)
		n++;
	ck_assert_int_eq(n, 27);
	st = wal_reader_stopped(r);
	ck_assert_int_eq(st->status, WAL_REC_BAD_CRC);
	ck_assert_str_eq(st->file, ts_seg_path(dir, 1));
	ck_assert_uint_eq(st->offset, off);
	ck_assert_int_eq(st->expect_seq, 27);
	ck_assert_int_eq(st->found_seq, 27);
	wal_reader_close(r);
}
END_TEST

START_TEST(test_seq_gap_between_segments)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	int64_t n = 0;

	write_segment(0, 0, 10);
	write_segment(1, 11, 10);	/* seq 10 is missing */
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	while (wal_reader_next(r, &rec, &err) == 1)
		n++;
	ck_assert_int_eq(n, 10);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_BAD_SEQ);
	ck_assert_int_eq(wal_reader_stopped(r)->expect_seq, 10);
	ck_assert_int_eq(wal_reader_stopped(r)->found_seq, 11);
	ck_assert_str_eq(wal_reader_stopped(r)->file, ts_seg_path(dir, 1));
	wal_reader_close(r);
}
END_TEST

START_TEST(test_stale_bytes_never_read_as_records)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	uint8_t img[256];
	uint64_t off = WAL_FILE_HEADER_SIZE;
	int64_t n = 0;

	write_segment(0, 0, 5);
	for (int i = 0; i < 5; i++)
		off += wal_record_span(ts_size_of(i));
	/* A valid-looking record with an old seq right after the last. */
	wal_record_encode(img, 2, 1, "old", 3);
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 0), img, 31,
	    (off_t)off), 0);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	while (wal_reader_next(r, &rec, &err) == 1)
		n++;
	ck_assert_int_eq(n, 5);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_BAD_SEQ);
	wal_reader_close(r);
}
END_TEST

START_TEST(test_single_file_and_bad_magic)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	int64_t n = 0;

	write_segment(7, 70, 12);
	ck_assert_int_eq(wal_reader_open(ts_seg_path(dir, 7), &r, &err), 0);
	while (wal_reader_next(r, &rec, &err) == 1)
		ck_assert_int_eq(rec.seq, 70 + n++);
	ck_assert_int_eq(n, 12);
	ck_assert_int_eq(wal_reader_seek(r, 75, &err), 0);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
	ck_assert_int_eq(rec.seq, 75);
	wal_reader_close(r);

	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 7), "X", 1, 0), 0);
	ck_assert_int_eq(wal_reader_open(ts_seg_path(dir, 7), &r, &err), 0);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 0);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_BAD_FILE);
	wal_reader_close(r);
}
END_TEST

START_TEST(test_empty_segment_skipped)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	int64_t n = 0;

	write_segment(0, 0, 10);
	write_segment(1, 0, 0);		/* pre-allocated, never used */
	write_segment(2, 10, 10);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	while (wal_reader_next(r, &rec, &err) == 1)
		ck_assert_int_eq(rec.seq, n++);
	ck_assert_int_eq(n, 20);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_END);
	wal_reader_close(r);
}
END_TEST

static Suite *
reader_suite(void)
{
	Suite *s = suite_create("reader");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_empty_directory);
	tcase_add_test(tc, test_open_missing);
	tcase_add_test(tc, test_seek_binary_search);
	tcase_add_test(tc, test_seek_before_first_after_retention);
	tcase_add_test(tc, test_follow_sees_new_records);
	tcase_add_test(tc, test_flipped_bit_stops_and_says_where);
	tcase_add_test(tc, test_seq_gap_between_segments);
	tcase_add_test(tc, test_stale_bytes_never_read_as_records);
	tcase_add_test(tc, test_single_file_and_bad_magic);
	tcase_add_test(tc, test_empty_segment_skipped);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(reader_suite()));
}
