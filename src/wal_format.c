/*
 * walmmapd - record encoding and checking.
 */
#include "config.h"

#include <endian.h>
#include <string.h>

#include "wal_crc.h"
#include "wal_format.h"

static const char *const wal_rec_status_text[] = {
	[WAL_REC_OK] = "valid record",
	[WAL_REC_END] = "end of records",
	[WAL_REC_TRUNCATED] = "record truncated by end of file",
	[WAL_REC_BAD_MAGIC] = "bad record magic",
	[WAL_REC_BAD_SIZE] = "record size exceeds 64 MiB",
	[WAL_REC_BAD_CRC] = "CRC mismatch",
	[WAL_REC_BAD_SEQ] = "sequence discontinuity",
	[WAL_REC_BAD_FILE] = "missing SIGNETWAL1 file magic",
	[WAL_REC_REMOVED] = "records removed by retention",
};

/* Text for a record status. */
const char *
wal_rec_strstatus(enum wal_rec_status st)
{
	if ((unsigned)st >= sizeof wal_rec_status_text /
	    sizeof wal_rec_status_text[0])
		return ("unknown status");
	return (wal_rec_status_text[st]);
}

/* CRC-32 over header then payload. */
uint32_t
wal_record_crc(const uint8_t hdr[WAL_RECORD_HEADER_SIZE], const void *payload,
    size_t size)
{
	uint32_t crc;

	crc = wal_crc32(0, hdr, WAL_RECORD_HEADER_SIZE);
	if (size > 0)
		crc = wal_crc32(crc, payload, size);
	return (crc);
}

/* Encode a whole record; returns its span. */
size_t
wal_record_encode(uint8_t *out, int64_t seq, int64_t timestamp_ns,
    const void *payload, uint32_t size)
{
	wal_record_encode_header(out, seq, timestamp_ns, size);
	if (size > 0)
		memcpy(out + WAL_RECORD_HEADER_SIZE, payload, size);
	/* Header and payload are contiguous: one pass computes the CRC. */
	wal_le32_store(out + WAL_RECORD_HEADER_SIZE + size,
	    wal_crc32(0, out, WAL_RECORD_HEADER_SIZE + (size_t)size));
	return (wal_record_span(size));
}

/* Check one record in a buffer. */
enum wal_rec_status
wal_record_check(const uint8_t *buf, size_t avail, int64_t expect_seq,
    struct wal_record *rec)
{
	uint32_t magic, size, crc;

	rec->seq = -1;
	rec->timestamp_ns = 0;
	rec->size = 0;
	rec->payload = NULL;

	if (avail < 4)
		return (wal_is_zero(buf, avail) ? WAL_REC_END :
		    WAL_REC_TRUNCATED);
	magic = wal_le32_load(buf);
	if (magic != WAL_RECORD_MAGIC)
		return (magic == 0 ? WAL_REC_END : WAL_REC_BAD_MAGIC);
	if (avail < WAL_RECORD_HEADER_SIZE)
		return (WAL_REC_TRUNCATED);

	rec->seq = (int64_t)wal_le64_load(buf + 4);
	rec->timestamp_ns = (int64_t)wal_le64_load(buf + 12);
	size = wal_le32_load(buf + 20);
	rec->size = size;
	if (size > WAL_MAX_PAYLOAD)
		return (WAL_REC_BAD_SIZE);
	if (avail - WAL_RECORD_HEADER_SIZE < (uint64_t)size + WAL_RECORD_CRC_SIZE)
		return (WAL_REC_TRUNCATED);
	crc = wal_le32_load(buf + WAL_RECORD_HEADER_SIZE + size);
	if (crc != wal_crc32(0, buf, WAL_RECORD_HEADER_SIZE + (size_t)size))
		return (WAL_REC_BAD_CRC);
	/*
	 * Seqs start at 0 and only grow: a negative one is no record of a
	 * log, and would pass for "any seq" as the next one expected.
	 */
	if (rec->seq < 0 || (expect_seq >= 0 && rec->seq != expect_seq))
		return (WAL_REC_BAD_SEQ);
	rec->payload = buf + WAL_RECORD_HEADER_SIZE;
	return (WAL_REC_OK);
}

/* Scan the valid, contiguous records of a segment image. */
void
wal_scan(const uint8_t *base, uint64_t size, uint64_t start,
    int64_t expect_seq, struct wal_scan *out)
{
	struct wal_record rec;
	enum wal_rec_status st;
	uint64_t off = start;

	out->records = 0;
	out->first_seq = out->last_seq = -1;
	out->end = start;
	out->stop_seq = -1;
	if (start == WAL_FILE_HEADER_SIZE && (size < WAL_FILE_HEADER_SIZE ||
	    memcmp(base, WAL_FILE_MAGIC, WAL_FILE_HEADER_SIZE) != 0)) {
		out->end = 0;
		out->stop = WAL_REC_BAD_FILE;
		return;
	}
	for (;;) {
		st = wal_record_check(base + off, size - off, expect_seq, &rec);
		if (st != WAL_REC_OK) {
			out->stop = st;
			out->stop_seq = rec.seq;
			break;
		}
		if (out->records++ == 0)
			out->first_seq = rec.seq;
		out->last_seq = rec.seq;
		expect_seq = rec.seq + 1;
		off += wal_record_span(rec.size);
	}
	out->end = off;
}

/* True if a buffer holds only zero bytes. */
int
wal_is_zero(const uint8_t *buf, size_t len)
{
	uint64_t w;

	while (len > 0 && ((uintptr_t)buf & 7) != 0) {
		if (*buf++ != 0)
			return (0);
		len--;
	}
	for (; len >= 32; buf += 32, len -= 32) {
		uint64_t a, b, c, d;

		memcpy(&a, buf, 8);
		memcpy(&b, buf + 8, 8);
		memcpy(&c, buf + 16, 8);
		memcpy(&d, buf + 24, 8);
		if ((a | b | c | d) != 0)
			return (0);
	}
	for (; len >= 8; buf += 8, len -= 8) {
		memcpy(&w, buf, 8);
		if (w != 0)
			return (0);
	}
	while (len-- > 0)
		if (*buf++ != 0)
			return (0);
	return (1);
}
