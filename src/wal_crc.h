/*
 * walmmapd - CRC-32 (IEEE 802.3, reflected, the one zlib's crc32() computes).
 *
 * Backed by ISA-L's crc32_gzip_refl() where configure found it, zlib's
 * crc32() otherwise. Both chain the same way: start with 0 and pass the
 * previous result to continue over the next buffer.
 */
#ifndef WAL_CRC_H
#define WAL_CRC_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC-32 over buf[0..len); start a new one with crc = 0. */
uint32_t	 wal_crc32(uint32_t crc, const void *buf, size_t len);

/* Name of the implementation in use ("isa-l" or "zlib"). */
const char	*wal_crc32_impl(void);

#endif /* WAL_CRC_H */
