/*
 * libFuzzer target: a frame from a client or the daemon, as both sides
 * validate it (wal_proto_check) and then walk it (APPEND records).
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wal_proto.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	const uint8_t *payload;
	struct wal_msg hdr;
	char why[256];
	size_t off = 0;
	uint32_t size;
	uint64_t total = 0;
	int from_daemon;

	for (from_daemon = 0; from_daemon <= 1; from_daemon++) {
		if (wal_proto_check(data, len, from_daemon, why, sizeof why)
		    != 0)
			continue;
		memcpy(&hdr, data, sizeof hdr);
		if (hdr.type != WAL_MSG_APPEND)
			continue;
		/* Every record the walk yields lies inside the frame. */
		while (wal_proto_next_record((const struct wal_msg_append *)
		    (const void *)data, len, &off, &payload, &size)) {
			if (payload < data || payload + size > data + len)
				__builtin_trap();
			total += size;
		}
	}
	return (total > len ? -1 : 0);
}
