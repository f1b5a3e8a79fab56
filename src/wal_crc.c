/*
 * walmmapd - CRC-32 from a maintained library.
 *
 * ISA-L (Debian libisal-dev) computes the gzip CRC with PCLMULQDQ folding,
 * about ten times faster than zlib on short records; zlib is the fallback
 * where ISA-L is not packaged. Both accept 0 as the initial value and
 * chain: crc(a || b) == crc32(crc32(0, a), b).
 */
#include "config.h"

#include "wal_crc.h"

#if defined(WAL_CRC_ISAL)
#include <isa-l/crc.h>
#elif defined(WAL_CRC_ZLIB)
#include <zlib.h>
#else
#error "configure selected no CRC-32 implementation"
#endif

/* Continue a CRC-32 over a buffer. */
uint32_t
wal_crc32(uint32_t crc, const void *buf, size_t len)
{
#if defined(WAL_CRC_ISAL)
	return (crc32_gzip_refl(crc, buf, len));
#else
	const unsigned char *p = buf;
	uInt chunk;

	/* zlib takes uInt lengths; records may exceed 4 GiB only in theory. */
	while (len > 0) {
		chunk = len > 0x40000000u ? 0x40000000u : (uInt)len;
		crc = (uint32_t)crc32(crc, p, chunk);
		p += chunk;
		len -= chunk;
	}
	return (crc);
#endif
}

/* Name the CRC-32 implementation compiled in. */
const char *
wal_crc32_impl(void)
{
#if defined(WAL_CRC_ISAL)
	return ("isa-l");
#else
	return ("zlib");
#endif
}
