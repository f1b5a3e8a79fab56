/*
 * walmmapd tests - record format and CRC (src/wal_format.c, src/wal_crc.c).
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "testsupport.h"
#include "wal_crc.h"
#include "wal_format.h"
#include "wal_segment.h"

/* seq 1, ts 0x0102030405060708, payload "hello": bytes worked out by hand. */
static const uint8_t hello_record[] = {
	0x31, 0x4c, 0x41, 0x57,				/* magic "1LAW" LE */
	0x01, 0, 0, 0, 0, 0, 0, 0,			/* seq 1 */
	0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,	/* timestamp */
	0x05, 0, 0, 0,					/* size 5 */
	'h', 'e', 'l', 'l', 'o',
	0x8e, 0xc2, 0x0f, 0x86,				/* CRC 0x860fc28e */
};

START_TEST(test_crc_known_value)
{
	ck_assert_uint_eq(wal_crc32(0, "123456789", 9), 0xCBF43926u);
	ck_assert_uint_eq(wal_crc32(0, "", 0), 0);
}
END_TEST

START_TEST(test_crc_matches_zlib_and_chains)
{
	uint8_t buf[4096];
	size_t len, cut;

	ts_fill_payload(buf, sizeof buf, 7);
	for (len = 0; len <= sizeof buf; len += len < 80 ? 1 : 97) {
		uint32_t z = (uint32_t)crc32(0, buf, (uInt)len);

		ck_assert_uint_eq(wal_crc32(0, buf, len), z);
		cut = len / 3;
		ck_assert_uint_eq(wal_crc32(wal_crc32(0, buf, cut), buf + cut,
		    len - cut), z);
	}
}
END_TEST

START_TEST(test_encode_known_record)
{
	uint8_t out[sizeof hello_record];

	ck_assert_uint_eq(wal_record_encode(out, 1, 0x0102030405060708ll,
	    "hello", 5), sizeof hello_record);
	ck_assert_mem_eq(out, hello_record, sizeof hello_record);
	ck_assert_uint_eq(wal_record_span(5), sizeof hello_record);
}
END_TEST

START_TEST(test_header_and_crc_helpers)
{
	uint8_t hdr[WAL_RECORD_HEADER_SIZE];

	wal_record_encode_header(hdr, 1, 0x0102030405060708ll, 5);
	ck_assert_mem_eq(hdr, hello_record, WAL_RECORD_HEADER_SIZE);
	ck_assert_uint_eq(wal_record_crc(hdr, "hello", 5), 0x860fc28eu);
	/* An empty record's CRC covers the header alone. */
	wal_record_encode_header(hdr, 0, 1700000000000000000ll, 0);
	ck_assert_uint_eq(wal_record_crc(hdr, NULL, 0), 0xb88c169fu);
}
END_TEST

START_TEST(test_check_known_record)
{
	struct wal_record rec;

	ck_assert_int_eq(wal_record_check(hello_record, sizeof hello_record,
	    1, &rec), WAL_REC_OK);
	ck_assert_int_eq(rec.seq, 1);
	ck_assert_int_eq(rec.timestamp_ns, 0x0102030405060708ll);
	ck_assert_uint_eq(rec.size, 5);
	ck_assert_mem_eq(rec.payload, "hello", 5);
	ck_assert_int_eq(wal_record_check(hello_record, sizeof hello_record,
	    -1, &rec), WAL_REC_OK);
}
END_TEST

static const size_t roundtrip_sizes[] = { 0, 1, 63, 64 * 1024, 1024 * 1024 };

START_TEST(test_roundtrip_sizes)
{
	size_t n = roundtrip_sizes[_i];
	uint8_t *payload = malloc(n + 1), *buf = malloc(wal_record_span(n));
	struct wal_record rec;

	ts_fill_payload(payload, n, 42);
	wal_record_encode(buf, 42, 123456789, payload, (uint32_t)n);
	ck_assert_int_eq(wal_record_check(buf, wal_record_span(n), 42, &rec),
	    WAL_REC_OK);
	ck_assert_uint_eq(rec.size, n);
	ck_assert_int_eq(rec.timestamp_ns, 123456789);
	ck_assert(memcmp(rec.payload, payload, n) == 0);
	free(payload);
	free(buf);
}
END_TEST

START_TEST(test_check_every_flipped_byte)
{
	uint8_t buf[sizeof hello_record];
	struct wal_record rec;
	enum wal_rec_status st;
	size_t i;

	for (i = 0; i < sizeof buf; i++) {
		memcpy(buf, hello_record, sizeof buf);
		buf[i] ^= 0x10;
		st = wal_record_check(buf, sizeof buf, 1, &rec);
		ck_assert_msg(st != WAL_REC_OK, "flip at byte %zu accepted", i);
		if (i < 4)
			ck_assert_int_eq(st, WAL_REC_BAD_MAGIC);
		else if (i >= 20 && i < 24)
			ck_assert(st == WAL_REC_BAD_SIZE ||
			    st == WAL_REC_TRUNCATED || st == WAL_REC_BAD_CRC);
		else
			ck_assert_int_eq(st, WAL_REC_BAD_CRC);
	}
}
END_TEST

START_TEST(test_check_statuses)
{
	uint8_t buf[64] = { 0 };
	struct wal_record rec;

	ck_assert_int_eq(wal_record_check(buf, sizeof buf, 0, &rec),
	    WAL_REC_END);
	ck_assert_int_eq(wal_record_check(buf, 0, 0, &rec), WAL_REC_END);
	ck_assert_int_eq(wal_record_check(hello_record, 10, 1, &rec),
	    WAL_REC_TRUNCATED);
	ck_assert_int_eq(wal_record_check(hello_record,
	    sizeof hello_record - 1, 1, &rec), WAL_REC_TRUNCATED);
	ck_assert_int_eq(wal_record_check(hello_record, sizeof hello_record,
	    2, &rec), WAL_REC_BAD_SEQ);
	ck_assert_int_eq(rec.seq, 1);
	/* A negative seq is no record, even where any seq is accepted. */
	wal_record_encode(buf, -5, 0, "x", 1);
	ck_assert_int_eq(wal_record_check(buf, sizeof buf, -1, &rec),
	    WAL_REC_BAD_SEQ);
	ck_assert_int_eq(rec.seq, -5);
	/* A size above 64 MiB is refused before any CRC work. */
	wal_record_encode_header(buf, 0, 0, WAL_MAX_PAYLOAD + 1);
	ck_assert_int_eq(wal_record_check(buf, sizeof buf, 0, &rec),
	    WAL_REC_BAD_SIZE);
	ck_assert_str_eq(wal_rec_strstatus(WAL_REC_BAD_CRC), "CRC mismatch");
	ck_assert_str_eq(wal_rec_strstatus((enum wal_rec_status)99),
	    "unknown status");
}
END_TEST

START_TEST(test_scan_image)
{
	uint8_t img[4096] = { 0 };
	uint64_t off = WAL_FILE_HEADER_SIZE;
	struct wal_scan sc;
	int64_t s;

	memcpy(img, WAL_FILE_MAGIC, WAL_FILE_HEADER_SIZE);
	for (s = 10; s < 20; s++)
		off += wal_record_encode(img + off, s, s, "abc", 3);
	wal_scan(img, sizeof img, WAL_FILE_HEADER_SIZE, -1, &sc);
	ck_assert_uint_eq(sc.records, 10);
	ck_assert_int_eq(sc.first_seq, 10);
	ck_assert_int_eq(sc.last_seq, 19);
	ck_assert_uint_eq(sc.end, off);
	ck_assert_int_eq(sc.stop, WAL_REC_END);

	/* A flipped payload bit in record 15 stops the scan there. */
	img[WAL_FILE_HEADER_SIZE + 5 * wal_record_span(3) + 24] ^= 1;
	wal_scan(img, sizeof img, WAL_FILE_HEADER_SIZE, 10, &sc);
	ck_assert_uint_eq(sc.records, 5);
	ck_assert_int_eq(sc.stop, WAL_REC_BAD_CRC);
	ck_assert_int_eq(sc.stop_seq, 15);
	ck_assert_uint_eq(sc.end, WAL_FILE_HEADER_SIZE + 5 * wal_record_span(3));

	/*
	 * A negative first seq stops the scan: it would otherwise expect a
	 * negative seq next, which accepts any.
	 */
	off = WAL_FILE_HEADER_SIZE;
	off += wal_record_encode(img + off, -1, 0, "abc", 3);
	off += wal_record_encode(img + off, 500, 0, "abc", 3);
	memset(img + off, 0, sizeof img - off);
	wal_scan(img, sizeof img, WAL_FILE_HEADER_SIZE, -1, &sc);
	ck_assert_uint_eq(sc.records, 0);
	ck_assert_int_eq(sc.stop, WAL_REC_BAD_SEQ);
	ck_assert_uint_eq(sc.end, WAL_FILE_HEADER_SIZE);

	/* Without the file magic nothing is read. */
	img[0] = 'X';
	wal_scan(img, sizeof img, WAL_FILE_HEADER_SIZE, -1, &sc);
	ck_assert_int_eq(sc.stop, WAL_REC_BAD_FILE);
	ck_assert_uint_eq(sc.records, 0);
}
END_TEST

START_TEST(test_is_zero)
{
	uint8_t buf[300] = { 0 };
	size_t start, len;

	for (start = 0; start < 9; start++)
		for (len = 0; len + start <= sizeof buf; len += 37) {
			ck_assert(wal_is_zero(buf + start, len));
			if (len > 0) {
				buf[start + len - 1] = 1;
				ck_assert(!wal_is_zero(buf + start, len));
				buf[start + len - 1] = 0;
			}
		}
}
END_TEST

START_TEST(test_segment_names)
{
	char name[WAL_SEGMENT_NAME_MAX];
	uint64_t id;

	wal_seg_name(name, sizeof name, 42);
	ck_assert_str_eq(name, "wal_mmap_0000000042.wal");
	ck_assert_int_eq(wal_seg_parse_name(name, &id), 0);
	ck_assert_uint_eq(id, 42);
	ck_assert_int_eq(wal_seg_parse_name("wal_mmap_12345678901.wal", &id),
	    0);
	ck_assert_uint_eq(id, 12345678901ull);
	ck_assert_int_eq(wal_seg_parse_name("wal_mmap_42.wal", &id), -1);
	/* Only the name wal_seg_name() gives: one name per id. */
	ck_assert_int_eq(wal_seg_parse_name("wal_mmap_00000000042.wal", &id),
	    -1);
	ck_assert_int_eq(wal_seg_parse_any_name(
	    "wal_mmap_00000000042.wal.discarded", &id), -1);
	ck_assert_int_eq(wal_seg_parse_name("wal_mmap_0000000042.wal.tmp",
	    &id), -1);
	ck_assert_int_eq(wal_seg_parse_name(".tmp.wal_mmap_0000000042.wal",
	    &id), -1);
	ck_assert_int_eq(wal_seg_parse_name("wal_mmap_00000000x2.wal", &id),
	    -1);
	ck_assert(wal_seg_size_valid(64 * 1024));
	ck_assert(wal_seg_size_valid(16ull << 30));
	ck_assert(!wal_seg_size_valid(64 * 1024 + 4096));
	ck_assert(!wal_seg_size_valid(32 * 1024));
	ck_assert(!wal_seg_size_valid((16ull << 30) + 65536));
}
END_TEST

static Suite *
format_suite(void)
{
	Suite *s = suite_create("format");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_crc_known_value);
	tcase_add_test(tc, test_crc_matches_zlib_and_chains);
	tcase_add_test(tc, test_encode_known_record);
	tcase_add_test(tc, test_header_and_crc_helpers);
	tcase_add_test(tc, test_check_known_record);
	tcase_add_loop_test(tc, test_roundtrip_sizes, 0,
	    sizeof roundtrip_sizes / sizeof roundtrip_sizes[0]);
	tcase_add_test(tc, test_check_every_flipped_byte);
	tcase_add_test(tc, test_check_statuses);
	tcase_add_test(tc, test_scan_image);
	tcase_add_test(tc, test_is_zero);
	tcase_add_test(tc, test_segment_names);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(format_suite()));
}
