/*
 * walmmapd - the on-disk format (a compatibility contract with Signet Forge).
 *
 * A segment file starts with the 16-byte file magic "SIGNETWAL1" followed by
 * six zero bytes. Records follow from offset 16, all integers little-endian:
 *
 *	magic u32 = 0x57414C31 | seq i64 | timestamp_ns i64 | size u32 |
 *	payload[size] | crc u32
 *
 * The CRC-32 covers the 24 header bytes followed by the payload. A reader
 * stops at the first record whose magic, size or CRC is wrong, at a record
 * that does not fit in the file, or (our rule) at a seq that is not the
 * previous seq + 1. Zero bytes after the last record are the normal end of a
 * pre-allocated segment.
 */
#ifndef WAL_FORMAT_H
#define WAL_FORMAT_H

#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define WAL_FILE_MAGIC		"SIGNETWAL1\0\0\0\0\0\0"
#define WAL_FILE_HEADER_SIZE	16
#define WAL_RECORD_MAGIC	0x57414C31u
#define WAL_RECORD_HEADER_SIZE	24
#define WAL_RECORD_CRC_SIZE	4
#define WAL_RECORD_OVERHEAD	(WAL_RECORD_HEADER_SIZE + WAL_RECORD_CRC_SIZE)
#define WAL_MAX_PAYLOAD		(64u * 1024 * 1024)

#define WAL_SEGMENT_ALIGN	(64u * 1024)
#define WAL_SEGMENT_MIN		(64ull * 1024)
#define WAL_SEGMENT_MAX		(16ull * 1024 * 1024 * 1024)
#define WAL_SEGMENT_DEFAULT	(64ull * 1024 * 1024)

#define WAL_RING_MIN		2
#define WAL_RING_MAX		16
#define WAL_RING_DEFAULT	4

/* Segment file names: wal_mmap_<10-digit id>.wal */
#define WAL_SEGMENT_PREFIX	"wal_mmap_"
#define WAL_SEGMENT_SUFFIX	".wal"
#define WAL_SEGMENT_NAME_MAX	64

/* What a reader found at an offset. */
enum wal_rec_status {
	WAL_REC_OK = 0,		/* a valid record */
	WAL_REC_END,		/* zero magic or end of data: clean end */
	WAL_REC_TRUNCATED,	/* header or body runs past the end of data */
	WAL_REC_BAD_MAGIC,	/* non-zero bytes that are not a record magic */
	WAL_REC_BAD_SIZE,	/* size larger than WAL_MAX_PAYLOAD */
	WAL_REC_BAD_CRC,	/* CRC does not match header + payload */
	WAL_REC_BAD_SEQ,	/* seq is not the expected one */
	WAL_REC_BAD_FILE,	/* file too short or without the file magic */
	WAL_REC_REMOVED,	/* the records wanted next were deleted
				   (retention) while a reader read */
};

/* Result of scanning the records of one segment image. */
struct wal_scan {
	uint64_t		records;	/* valid records found */
	int64_t			first_seq;	/* -1 if none */
	int64_t			last_seq;	/* -1 if none */
	uint64_t		end;		/* offset after the last valid one */
	enum wal_rec_status	stop;		/* why the scan stopped */
	int64_t			stop_seq;	/* seq decoded where it stopped */
};

/* A decoded record; payload points into the buffer that was checked. */
struct wal_record {
	int64_t		 seq;
	int64_t		 timestamp_ns;
	uint32_t	 size;
	const uint8_t	*payload;
};

/* Text for a status ("CRC mismatch", ...). */
const char	*wal_rec_strstatus(enum wal_rec_status);

/* Bytes a record of payload size n occupies in a segment. */
static inline uint64_t
wal_record_span(uint64_t n)
{
	return (WAL_RECORD_OVERHEAD + n);
}

/*
 * Little-endian loads and stores that do not care about alignment. Inline:
 * the writer stores five of them per record.
 */
static inline uint32_t
wal_le32_load(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof v);
	return (le32toh(v));
}

static inline uint64_t
wal_le64_load(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof v);
	return (le64toh(v));
}

static inline void
wal_le32_store(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof v);
}

static inline void
wal_le64_store(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof v);
}

/* Encode the 24-byte header. */
static inline void
wal_record_encode_header(uint8_t out[WAL_RECORD_HEADER_SIZE], int64_t seq,
    int64_t timestamp_ns, uint32_t size)
{
	wal_le32_store(out, WAL_RECORD_MAGIC);
	wal_le64_store(out + 4, (uint64_t)seq);
	wal_le64_store(out + 12, (uint64_t)timestamp_ns);
	wal_le32_store(out + 20, size);
}

/* CRC-32 of an encoded header followed by the payload. */
uint32_t	 wal_record_crc(const uint8_t hdr[WAL_RECORD_HEADER_SIZE],
		    const void *payload, size_t size);

/*
 * Encode a complete record (header, payload, CRC) into out, which must hold
 * wal_record_span(size) bytes. Returns the bytes written.
 */
size_t		 wal_record_encode(uint8_t *out, int64_t seq,
		    int64_t timestamp_ns, const void *payload, uint32_t size);

/*
 * Check the record at buf[0..avail). expect_seq < 0 accepts any seq.
 * On WAL_REC_OK fills *rec (payload points into buf). On a failure *rec
 * holds what could be decoded of the header (seq is -1 if none).
 */
enum wal_rec_status wal_record_check(const uint8_t *buf, size_t avail,
		    int64_t expect_seq, struct wal_record *rec);

/*
 * Scan a segment image base[0..size) from offset start (WAL_FILE_HEADER_SIZE
 * for a whole segment; the file magic is checked then) while records are
 * valid and contiguous. expect_seq < 0 accepts any first seq.
 */
void		 wal_scan(const uint8_t *base, uint64_t size, uint64_t start,
		    int64_t expect_seq, struct wal_scan *out);

/* True if buf[0..len) is all zero bytes. */
int		 wal_is_zero(const uint8_t *buf, size_t len);


#endif /* WAL_FORMAT_H */
