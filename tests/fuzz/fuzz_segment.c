/*
 * libFuzzer target: a segment's bytes as the reader and recovery see
 * them. Every record wal_record_check accepts lies inside the buffer and
 * passes its CRC; wal_scan stops inside the buffer.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "wal_format.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct wal_record rec;
	struct wal_scan res;
	size_t off = 0;

	while (off < len) {
		if (wal_record_check(data + off, len - off, -1, &rec) !=
		    WAL_REC_OK)
			break;
		if (rec.payload < data || rec.payload + rec.size > data + len)
			__builtin_trap();
		off += (size_t)wal_record_span(rec.size);
	}
	if (len >= WAL_FILE_HEADER_SIZE) {
		wal_scan(data, len, WAL_FILE_HEADER_SIZE, -1, &res);
		if (res.end > len)
			__builtin_trap();
	}
	return (0);
}
