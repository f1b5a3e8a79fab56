/*
 * walmmapd tests - reading segments back (src/wal_reader.c, the file
 * reader of libwalmmap, walctl dump and verify).
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_crc.h"
#include "wal_format.h"
#include "wal_reader.h"
#include "wal_ring.h"
#include "walmmap.h"

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

/* Offset of record k of a segment write_segment() began at seq first. */
static uint64_t
rec_off(int64_t first, int k)
{
	uint64_t off = WAL_FILE_HEADER_SIZE;
	int i;

	for (i = 0; i < k; i++)
		off += wal_record_span(ts_size_of(first + i));
	return (off);
}

/* How put_record() leaves the CRC. */
enum crc_mode { CRC_OK, CRC_ZERO, CRC_WRONG };

/*
 * Store record seq (payload as write_segment()'s) at off of segment id,
 * with its CRC right, zero (a writer has stored header and payload, not
 * the CRC yet) or wrong.
 */
static void
put_record(uint64_t id, uint64_t off, int64_t seq, enum crc_mode crc)
{
	uint8_t img[512], buf[512];
	size_t n = ts_size_of(seq), span;

	ts_fill_payload(buf, n, seq);
	span = wal_record_encode(img, seq, 1000 + seq, buf, (uint32_t)n);
	if (crc == CRC_ZERO)
		memset(img + span - 4, 0, 4);
	else if (crc == CRC_WRONG)
		img[span - 4] ^= 0x5a;
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, id), img, span,
	    (off_t)off), 0);
}

/* Read records while there are; they must be seqs from, from+1, ... */
static int64_t
read_run(struct wal_reader *r, int64_t from)
{
	struct wal_record rec;
	struct wal_error err;
	int64_t n = from;
	int rc;

	while ((rc = wal_reader_next(r, &rec, &err)) == 1) {
		TS_CHECK(rec.seq == n, "seq %" PRId64 " where %" PRId64
		    " was expected", rec.seq, n);
		n++;
	}
	ck_assert_msg(rc == 0, "wal_reader_next: %s", err.msg);
	return (n);
}

/* Delete segment id, as retention does. */
static void
remove_segment(uint64_t id)
{
	ck_assert_int_eq(unlink(ts_seg_path(dir, id)), 0);
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
	/* Beyond the end: -ENOENT, then nothing yet, clean end. */
	ck_assert_int_eq(wal_reader_seek(r, 9000, &err), -ENOENT);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 0);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_END);
	ck_assert_int_eq(wal_reader_seek(r, 5000, &err), -ENOENT);
	ck_assert_int_eq(wal_reader_seek(r, 4999, &err), 0);
	wal_reader_close(r);
}
END_TEST

/*
 * Seeking past the end says so (-ENOENT) and leaves the reader there,
 * ready to follow: the records before the seq are skipped as they come.
 */
START_TEST(test_seek_past_end)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	int64_t s;

	write_segment(0, 0, 10);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	ck_assert_int_eq(wal_reader_seek(r, 12, &err), -ENOENT);
	ck_assert_msg(strstr(err.msg, "seq 12 is beyond the last record") !=
	    NULL, "%s", err.msg);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 0);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_END);
	for (s = 10; s < 14; s++)
		put_record(0, rec_off(0, (int)s), s, CRC_OK);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
	ck_assert_int_eq(rec.seq, 12);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
	ck_assert_int_eq(rec.seq, 13);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 0);
	/* The next seq to be written is past the end too. */
	ck_assert_int_eq(wal_reader_seek(r, 14, &err), -ENOENT);
	ck_assert_int_eq(wal_reader_seek(r, 13, &err), 0);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
	ck_assert_int_eq(rec.seq, 13);
	wal_reader_close(r);

	/* One file. */
	ck_assert_int_eq(wal_reader_open(ts_seg_path(dir, 0), &r, &err), 0);
	ck_assert_int_eq(wal_reader_seek(r, 20, &err), -ENOENT);
	ck_assert_int_eq(wal_reader_seek(r, 3, &err), 0);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
	ck_assert_int_eq(rec.seq, 3);
	wal_reader_close(r);
}
END_TEST

/*
 * Retention deletes the segment the reader is on, and it was the last one
 * the reader had listed: the reader carries on with the real next segment
 * (issue #13, defect 17: it skipped it and reported a seq discontinuity).
 */
START_TEST(test_retention_deletes_current_segment)
{
	struct wal_reader *r;
	struct wal_error err;

	write_segment(0, 0, 10);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	ck_assert_int_eq(read_run(r, 0), 10);
	write_segment(1, 10, 10);
	write_segment(2, 20, 10);
	write_segment(3, 0, 0);		/* a standby */
	remove_segment(0);
	ck_assert_int_eq(read_run(r, 10), 30);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_END);
	ck_assert_uint_eq(wal_reader_current_id(r), 2);
	wal_reader_close(r);
}
END_TEST

/* The same in the middle of a segment, with the listing taken before. */
START_TEST(test_retention_deletes_segment_mid_read)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	int i;

	for (i = 0; i < 4; i++)
		write_segment((uint64_t)i, i * 10, 10);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	for (i = 0; i < 5; i++)
		ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
	remove_segment(0);
	for (i = 5; i < 13; i++) {
		ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
		ck_assert_int_eq(rec.seq, i);
	}
	remove_segment(1);
	ck_assert_int_eq(read_run(r, 13), 40);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_END);
	wal_reader_close(r);
}
END_TEST

/*
 * Retention deleted the segment the reader is on and the next one too: the
 * reader stops with WAL_REC_REMOVED, saying which seqs are gone and where
 * the log continues (it failed with "cannot open segment", or, when it had
 * to list again, stopped as if at the clean end).
 */
START_TEST(test_retention_removed_records)
{
	const struct wal_reader_stop *st;
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	int i;

	for (i = 0; i < 4; i++)
		write_segment((uint64_t)i, i * 10, 10);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	for (i = 0; i < 5; i++)
		ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
	remove_segment(0);
	remove_segment(1);
	ck_assert_int_eq(read_run(r, 5), 10);
	for (i = 0; i < 2; i++) {
		st = wal_reader_stopped(r);
		ck_assert_int_eq(st->status, WAL_REC_REMOVED);
		ck_assert_int_eq(st->expect_seq, 10);
		ck_assert_int_eq(st->found_seq, 20);
		ck_assert_str_eq(st->file, ts_seg_path(dir, 2));
		ck_assert_uint_eq(st->offset, WAL_FILE_HEADER_SIZE);
		ck_assert_int_eq(wal_reader_next(r, &rec, &err), 0);
	}
	/* Seeking carries on from what is left. */
	ck_assert_int_eq(wal_reader_seek(r, 10, &err), 0);
	ck_assert_int_eq(read_run(r, 20), 40);
	wal_reader_close(r);

	/* When the reader has to list the directory again to see it. */
	ts_rmtree(dir);
	dir = ts_mkdtemp("reader");
	write_segment(0, 0, 10);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	ck_assert_int_eq(read_run(r, 0), 10);
	for (i = 1; i < 4; i++)
		write_segment((uint64_t)i, i * 10, 10);
	remove_segment(0);
	remove_segment(1);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 0);
	st = wal_reader_stopped(r);
	ck_assert_int_eq(st->status, WAL_REC_REMOVED);
	ck_assert_int_eq(st->expect_seq, 10);
	ck_assert_int_eq(st->found_seq, 20);
	wal_reader_close(r);
}
END_TEST

/*
 * The live end: the writer has stored a record's header and payload but
 * not its CRC (zero, or a wrong one while being stored). That is the end
 * for now, not damage, and the record is read once its CRC is in place
 * (issue #13, defect 18).
 */
START_TEST(test_live_end_record_without_crc)
{
	const struct wal_reader_stop *st;
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	int i;

	write_segment(0, 0, 10);
	write_segment(1, 0, 0);		/* a standby */
	put_record(0, rec_off(0, 10), 10, CRC_ZERO);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	ck_assert_int_eq(read_run(r, 0), 10);
	for (i = 0; i < 2; i++) {
		st = wal_reader_stopped(r);
		ck_assert_msg(st->status == WAL_REC_END, "stopped: %s",
		    wal_rec_strstatus(st->status));
		ck_assert_uint_eq(st->offset, rec_off(0, 10));
		ck_assert_int_eq(wal_reader_next(r, &rec, &err), 0);
	}
	put_record(0, rec_off(0, 10), 10, CRC_WRONG);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 0);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_END);
	put_record(0, rec_off(0, 10), 10, CRC_OK);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 1);
	ck_assert_int_eq(rec.seq, 10);

	/* A batch of three: CRCs land in record order. */
	for (i = 11; i < 14; i++)
		put_record(0, rec_off(0, i), i, CRC_ZERO);
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 0);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_END);
	put_record(0, rec_off(0, 11), 11, CRC_OK);
	put_record(0, rec_off(0, 12), 12, CRC_OK);
	ck_assert_int_eq(read_run(r, 11), 13);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_END);
	put_record(0, rec_off(0, 13), 13, CRC_OK);
	ck_assert_int_eq(read_run(r, 13), 14);
	wal_reader_close(r);
}
END_TEST

/* The same for the first record of the segment the writer moved on to. */
START_TEST(test_live_end_first_record_of_next_segment)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;

	write_segment(0, 0, 10);
	write_segment(1, 0, 0);
	write_segment(2, 0, 0);
	put_record(1, WAL_FILE_HEADER_SIZE, 10, CRC_ZERO);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	ck_assert_int_eq(read_run(r, 0), 10);
	ck_assert_msg(wal_reader_stopped(r)->status == WAL_REC_END,
	    "stopped: %s", wal_rec_strstatus(wal_reader_stopped(r)->status));
	ck_assert_int_eq(wal_reader_next(r, &rec, &err), 0);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_END);
	put_record(1, WAL_FILE_HEADER_SIZE, 10, CRC_OK);
	ck_assert_int_eq(read_run(r, 10), 11);
	wal_reader_close(r);
}
END_TEST

/*
 * An invalid record with a valid one after it (the writer is past it) is
 * damage, whether the valid one follows at once, after a zeroed stretch or
 * in a later segment; and the reader says so every time it is asked.
 */
START_TEST(test_invalid_record_before_valid_is_damage)
{
	const struct wal_reader_stop *st;
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	int i, round;

	for (round = 0; round < 3; round++) {
		ts_rmtree(dir);
		dir = ts_mkdtemp("reader");
		write_segment(0, 0, 10);
		if (round == 0) {
			put_record(0, rec_off(0, 10), 10, CRC_ZERO);
			put_record(0, rec_off(0, 11), 11, CRC_OK);
		} else if (round == 1) {
			put_record(0, rec_off(0, 10), 10, CRC_WRONG);
			put_record(0, 40000, 11, CRC_OK);
		} else {
			put_record(0, rec_off(0, 10), 10, CRC_ZERO);
			write_segment(1, 11, 5);
		}
		ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
		ck_assert_int_eq(read_run(r, 0), 10);
		for (i = 0; i < 2; i++) {
			st = wal_reader_stopped(r);
			ck_assert_msg(st->status == WAL_REC_BAD_CRC,
			    "round %d: stopped: %s", round,
			    wal_rec_strstatus(st->status));
			ck_assert_str_eq(st->file, ts_seg_path(dir, 0));
			ck_assert_uint_eq(st->offset, rec_off(0, 10));
			ck_assert_int_eq(st->expect_seq, 10);
			ck_assert_int_eq(wal_reader_next(r, &rec, &err), 0);
		}
		wal_reader_close(r);
	}
}
END_TEST

/* A strict reader (the log is not being written) reports the end too. */
START_TEST(test_strict_reports_invalid_end)
{
	struct wal_reader *r;
	struct wal_error err;

	write_segment(0, 0, 10);
	put_record(0, rec_off(0, 10), 10, CRC_ZERO);
	ck_assert_int_eq(wal_reader_open(dir, &r, &err), 0);
	wal_reader_set_strict(r, 1);
	ck_assert_int_eq(read_run(r, 0), 10);
	ck_assert_int_eq(wal_reader_stopped(r)->status, WAL_REC_BAD_CRC);
	ck_assert_uint_eq(wal_reader_stopped(r)->offset, rec_off(0, 10));
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

/* Lines of text, and whether each starts with seqs from, from+1, ... */
static long
count_seq_lines(const char *out, int64_t from)
{
	const char *p;
	char *end;
	long n = 0;

	for (p = out; *p != '\0'; p = strchr(p, '\n') + 1) {
		if (strchr(p, '\n') == NULL)
			break;
		if (strtoll(p, &end, 10) != from + n || *end != ' ')
			return (-1 - n);
		n++;
	}
	return (n);
}

/*
 * walctl dump stops cleanly (exit 0) at a record still being written, and
 * reports it as damage (exit 1) once a valid record follows it.
 */
START_TEST(test_dump_live_end_exits_0)
{
	char *out;

	write_segment(0, 0, 10);
	write_segment(1, 0, 0);
	put_record(0, rec_off(0, 10), 10, CRC_ZERO);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "dump",
	    dir, NULL), 0);
	ck_assert_msg(count_seq_lines(out, 0) == 10, "%s", out);
	free(out);
	put_record(0, rec_off(0, 11), 11, CRC_OK);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "dump",
	    dir, NULL), 1);
	ck_assert_msg(strstr(out, "CRC mismatch") != NULL, "%s", out);
	free(out);
}
END_TEST

/*
 * walctl verify is strict on a stopped log, and on a live one (a writer
 * holds the directory's lock) leaves alone an invalid record at the very
 * end, unless a valid record follows it, here or in a later file.
 */
START_TEST(test_verify_live_end)
{
	char *out, pathbuf[PATH_MAX];
	uint8_t junk[16];
	int lockfd;

	write_segment(0, 0, 10);
	write_segment(1, 0, 0);
	put_record(0, rec_off(0, 10), 10, CRC_ZERO);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "verify",
	    dir, NULL), 1);
	ck_assert_msg(strstr(out, "CRC mismatch") != NULL, "%s", out);
	free(out);

	/* Held as walmmapd holds it (wal_dir_lock()). */
	lockfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(lockfd, 0);
	ck_assert_int_eq(flock(lockfd, LOCK_EX | LOCK_NB), 0);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "verify",
	    dir, NULL), 0);
	ck_assert_msg(strstr(out, "10 records (seq 0 .. 9), 0 problems") !=
	    NULL, "%s", out);
	free(out);
	snprintf(pathbuf, sizeof pathbuf, "%s", ts_seg_path(dir, 0));
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "verify",
	    pathbuf, NULL), 0);
	free(out);

	/* A payload stored before its header. */
	put_record(0, rec_off(0, 10), 10, CRC_OK);
	memset(junk, 0x77, sizeof junk);
	ck_assert_int_eq(ts_pwrite_file(pathbuf, junk, sizeof junk,
	    (off_t)rec_off(0, 11) + WAL_RECORD_HEADER_SIZE), 0);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "verify",
	    dir, NULL), 0);
	free(out);

	/* The writer moved on to the next file: the record is damaged. */
	put_record(0, rec_off(0, 11), 11, CRC_ZERO);
	write_segment(1, 12, 3);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "verify",
	    dir, NULL), 1);
	ck_assert_msg(strstr(out, "seq 11: CRC mismatch") != NULL &&
	    strstr(out, ", 1 problem\n") != NULL, "%s", out);
	free(out);
	close(lockfd);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "verify",
	    dir, NULL), 1);
	free(out);
}
END_TEST

/*
 * The library's file reader: an unfinished record at the end is "none
 * yet", strict mode reports it, and records removed by retention while
 * reading give WALMMAP_EREMOVED; seeking past the end is not an error.
 */
START_TEST(test_library_reader)
{
	struct walmmap_reader *r;
	struct walmmap_record rec;
	int i, rc;

	for (i = 0; i < 4; i++)
		write_segment((uint64_t)i, i * 10, 10);
	put_record(3, rec_off(30, 10), 40, CRC_ZERO);
	ck_assert_int_eq(walmmap_reader_open(&r, dir), 0);
	ck_assert_int_eq(walmmap_reader_seek(r, 35), 0);
	for (i = 35; i < 40; i++) {
		ck_assert_int_eq(walmmap_reader_next(r, &rec, 0), 1);
		ck_assert_int_eq(rec.seq, i);
	}
	ck_assert_int_eq(walmmap_reader_next(r, &rec, 20), 0);
	ck_assert_int_eq(walmmap_reader_set_strict(r, 1), 0);
	ck_assert_int_eq(walmmap_reader_next(r, &rec, 0), -WALMMAP_ECORRUPT);
	ck_assert_msg(strstr(walmmap_reader_errmsg(r), "CRC mismatch") != NULL,
	    "%s", walmmap_reader_errmsg(r));
	ck_assert_int_eq(walmmap_reader_set_strict(r, 0), 0);
	ck_assert_int_eq(walmmap_reader_seek(r, 1000), 0);
	ck_assert_int_eq(walmmap_reader_next(r, &rec, 0), 0);

	ck_assert_int_eq(walmmap_reader_seek(r, 0), 0);
	for (i = 0; i < 5; i++)
		ck_assert_int_eq(walmmap_reader_next(r, &rec, 0), 1);
	remove_segment(0);
	remove_segment(1);
	while ((rc = walmmap_reader_next(r, &rec, 0)) == 1)
		ck_assert_int_eq(rec.seq, i++);
	ck_assert_int_eq(i, 10);
	ck_assert_int_eq(rc, -WALMMAP_EREMOVED);
	ck_assert_msg(strstr(walmmap_reader_errmsg(r), "records from seq 10 "
	    "to 19 were removed by retention") != NULL, "%s",
	    walmmap_reader_errmsg(r));
	ck_assert_str_eq(walmmap_strerror(rc), "records removed by retention");
	ck_assert_int_eq(walmmap_reader_seek(r, 10), 0);
	ck_assert_int_eq(walmmap_reader_next(r, &rec, 0), 1);
	ck_assert_int_eq(rec.seq, 20);
	walmmap_reader_close(r);
}
END_TEST

/* Read a descriptor to its end into a malloc'd string. */
static char *
slurp(int fd, size_t *lenp)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	ssize_t n;

	ck_assert_ptr_nonnull(buf);
	while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (cap - len < 4096) {
			buf = realloc(buf, cap *= 2);
			ck_assert_ptr_nonnull(buf);
		}
	}
	buf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return (buf);
}

/*
 * walctl dump falls behind retention. Its output goes to a one-page pipe
 * we do not read yet, so it stops inside segment 0, which it has begun to
 * print; then retention deletes segment 0 (it reads on into segment 1) or
 * segments 0 and 1 (the records it wants are gone: exit 1 saying so; it
 * exited 2 with "cannot open segment").
 */
START_TEST(test_dump_behind_retention)
{
	char *out, *errs, *all;
	int round, i, ofd, efd, rc;
	size_t len;
	pid_t pid;

	for (round = 0; round < 2; round++) {
		ts_rmtree(dir);
		dir = ts_mkdtemp("reader");
		for (i = 0; i < 4; i++)
			write_segment((uint64_t)i, i * 100, 100);
		pid = ts_spawn_prog("client/walctl", &ofd, &efd, "dump", dir,
		    NULL);
		all = malloc(2);
		ck_assert_ptr_nonnull(all);
		/* It has printed from segment 0: it has it mapped. */
		ck_assert_int_eq(read(ofd, all, 1), 1);
		ck_assert_int_eq(all[0], '0');
		remove_segment(0);
		if (round == 1)
			remove_segment(1);
		out = slurp(ofd, &len);
		errs = slurp(efd, NULL);
		close(ofd);
		close(efd);
		rc = ts_prog_wait(pid);
		all = realloc(all, len + 2);
		ck_assert_ptr_nonnull(all);
		memcpy(all + 1, out, len + 1);
		if (round == 0) {
			ck_assert_msg(rc == 0, "exit %d: %s", rc, errs);
			ck_assert_int_eq(count_seq_lines(all, 0), 400);
		} else {
			ck_assert_msg(rc == 1, "exit %d: %s", rc, errs);
			ck_assert_int_eq(count_seq_lines(all, 0), 100);
			ck_assert_msg(strstr(errs, "records from seq 100 to "
			    "199 were removed by retention") != NULL, "%s",
			    errs);
		}
		free(all);
		free(out);
		free(errs);
	}
}
END_TEST

/* A producer appending to a live walmmapd until told to stop. */
struct producer {
	const char	*sock;
	atomic_int	 stop;
	int64_t		 appended;
	int		 rc;
	char		 err[256];
};

#define LIVE_MAX_RECORDS	60000
#define LIVE_BATCH		48

static void *
producer_main(void *arg)
{
	struct producer *p = arg;
	const struct timespec pause = { 0, 500 * 1000 };
	struct iovec iov[LIVE_BATCH];
	uint8_t buf[LIVE_BATCH][96];
	struct walmmap *w;
	int i, rc;

	if ((rc = walmmap_connect(&w, p->sock, WALMMAP_ACK_WRITTEN, 0)) != 0) {
		snprintf(p->err, sizeof p->err, "%s", walmmap_errmsg(w));
		walmmap_close(w);
		p->rc = rc;
		return (NULL);
	}
	while (!atomic_load(&p->stop) && p->appended < LIVE_MAX_RECORDS) {
		for (i = 0; i < LIVE_BATCH; i++) {
			iov[i].iov_len = 8 + (size_t)(p->appended + i) % 88;
			ts_fill_payload(buf[i], iov[i].iov_len,
			    p->appended + i);
			iov[i].iov_base = buf[i];
		}
		if ((rc = walmmap_append_batch(w, iov, LIVE_BATCH,
		    WALMMAP_ACK_DEFAULT, NULL)) != LIVE_BATCH)
			break;
		p->appended += LIVE_BATCH;
		/* Shape the load so the log stays live through the dumps. */
		nanosleep(&pause, NULL);
	}
	if (rc >= 0)
		rc = walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1);
	if (rc < 0)
		snprintf(p->err, sizeof p->err, "%s", walmmap_errmsg(w));
	p->rc = rc < 0 ? rc : 0;
	walmmap_close(w);
	return (NULL);
}

/* A core reader following the live log as closely as it can. */
struct follower {
	const char	*dir;
	struct producer	*p;
	int64_t		 next;
	char		 err[WAL_ERROR_MSG_MAX + 256];
};

static void *
follower_main(void *arg)
{
	struct follower *f = arg;
	const struct wal_reader_stop *st;
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	int rc;

	if (wal_reader_open(f->dir, &r, &err) != 0) {
		snprintf(f->err, sizeof f->err, "%s", err.msg);
		return (NULL);
	}
	for (;;) {
		while ((rc = wal_reader_next(r, &rec, &err)) == 1) {
			if (rec.seq != f->next) {
				snprintf(f->err, sizeof f->err, "seq %" PRId64
				    " where %" PRId64 " was expected", rec.seq,
				    f->next);
				goto out;
			}
			f->next++;
		}
		st = wal_reader_stopped(r);
		if (rc < 0 || st->status != WAL_REC_END) {
			snprintf(f->err, sizeof f->err, "%s: offset %" PRIu64
			    ": %s", st->file ? st->file : "?", st->offset,
			    rc < 0 ? err.msg : wal_rec_strstatus(st->status));
			goto out;
		}
		if (atomic_load(&f->p->stop) == 2 && f->next >= f->p->appended)
			break;
		sched_yield();
	}
out:
	wal_reader_close(r);
	return (NULL);
}

/*
 * A real walmmapd under load: repeated walctl dump and verify runs on the
 * live log all exit 0 with a gap-free prefix of it, and a file follower
 * reads every record in order without a false "CRC mismatch" (one of 40
 * dumps failed, and followers stopped, before the live end was handled).
 */
START_TEST(test_live_log_dumps_and_follower)
{
	struct ts_daemon d;
	struct producer p;
	struct follower f;
	struct walmmap_reader *r;
	struct walmmap_record rec;
	pthread_t th, fth;
	char *out;
	int64_t next = 0;
	long lines;
	int i, rc;

	ts_daemon_init(&d, dir);
	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "256K", "-o",
	    "prefault=no", NULL), 0);
	memset(&p, 0, sizeof p);
	p.sock = d.sock;
	ck_assert_int_eq(pthread_create(&th, NULL, producer_main, &p), 0);
	memset(&f, 0, sizeof f);
	f.dir = d.data;
	f.p = &p;
	ck_assert_int_eq(pthread_create(&fth, NULL, follower_main, &f), 0);
	ck_assert_int_eq(walmmap_reader_open(&r, d.data), 0);
	for (i = 0; i < 12; i++) {
		ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out,
		    "dump", d.data, NULL), 0);
		lines = count_seq_lines(out, 0);
		ck_assert_msg(lines >= 0, "dump %d: not a gap-free prefix at "
		    "line %ld", i, -1 - lines);
		free(out);
		rc = ts_run_prog("client/walctl", NULL, 0, &out, "verify",
		    "-q", d.data, NULL);
		ck_assert_msg(rc == 0, "verify %d: exit %d: %s", i, rc, out);
		free(out);
		/* The follower keeps up in between. */
		while ((rc = walmmap_reader_next(r, &rec, 0)) == 1)
			TS_CHECK(rec.seq == next++, "follower: seq %" PRId64
			    " where %" PRId64 " was expected", rec.seq,
			    next - 1);
		ck_assert_msg(rc == 0, "follower: %s",
		    walmmap_reader_errmsg(r));
	}
	atomic_store(&p.stop, 1);
	pthread_join(th, NULL);
	atomic_store(&p.stop, 2);	/* appended is final */
	pthread_join(fth, NULL);
	ck_assert_msg(p.rc == 0, "producer: %s", p.err);
	ck_assert_msg(f.err[0] == '\0' && f.next == p.appended, "follower "
	    "read %" PRId64 " of %" PRId64 ": %s", f.next, p.appended, f.err);
	while (next < p.appended &&
	    (rc = walmmap_reader_next(r, &rec, 10000)) == 1)
		TS_CHECK(rec.seq == next++, "follower: seq %" PRId64 " where %"
		    PRId64 " was expected", rec.seq, next - 1);
	ck_assert_msg(next == p.appended, "follower read %" PRId64 " of %"
	    PRId64 ": %s", next, p.appended, walmmap_reader_errmsg(r));
	walmmap_reader_close(r);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	if (d.notify_fd != -1)
		close(d.notify_fd);
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
	tcase_add_test(tc, test_seek_past_end);
	tcase_add_test(tc, test_retention_deletes_current_segment);
	tcase_add_test(tc, test_retention_deletes_segment_mid_read);
	tcase_add_test(tc, test_retention_removed_records);
	tcase_add_test(tc, test_live_end_record_without_crc);
	tcase_add_test(tc, test_live_end_first_record_of_next_segment);
	tcase_add_test(tc, test_invalid_record_before_valid_is_damage);
	tcase_add_test(tc, test_strict_reports_invalid_end);
	suite_add_tcase(s, tc);

	tc = tcase_create("tools");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_dump_live_end_exits_0);
	tcase_add_test(tc, test_verify_live_end);
	tcase_add_test(tc, test_library_reader);
	tcase_add_test(tc, test_dump_behind_retention);
	tcase_add_test(tc, test_live_log_dumps_and_follower);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(reader_suite()));
}
