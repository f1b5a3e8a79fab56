/*
 * libFuzzer target: the daemon's reading of a shared-memory ring whose
 * producer wrote arbitrary bytes. The input is the published tail (8
 * bytes) and the ring's data area; every record the consumer yields must
 * lie inside the data area and below the tail.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wal_shm.h"

#define DATA	4096u

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	static uint8_t *ring;
	struct wal_shm_consumer c;
	struct wal_shm_rec recs[8];
	uint64_t tail, seq = 0;
	char why[256];
	unsigned i, n;
	int rounds, rc;

	if (ring == NULL && (ring = aligned_alloc(4096, WAL_SHM_HEADER_SIZE +
	    DATA)) == NULL)
		return (0);
	if (len < 8)
		return (0);
	memset(ring, 0, WAL_SHM_HEADER_SIZE + DATA);
	wal_shm_format(ring, DATA, 1024);
	wal_shm_consumer_init(&c, ring, DATA, 1024);
	memcpy(&tail, in, 8);
	memcpy(ring + WAL_SHM_HEADER_SIZE, in + 8, len - 8 > DATA ? DATA :
	    len - 8);
	/* Two passes: the second with the tail moved on by the input. */
	for (rounds = 0; rounds < 2; rounds++) {
		atomic_store(&((struct wal_shm_header *)(void *)ring)->tail,
		    tail);
		if (wal_shm_load_tail(&c, why, sizeof why) <= 0)
			break;
		do {
			/* As the daemon drains: runs, each consumed whole. */
			rc = wal_shm_peek_run(&c, recs, 8, &n, why, sizeof why);
			for (i = 0; i < n; i++)
				if (recs[i].payload < ring + WAL_SHM_HEADER_SIZE ||
				    recs[i].payload + recs[i].len > ring +
				    WAL_SHM_HEADER_SIZE + DATA ||
				    recs[i].next > c.tail || recs[i].len > 1024)
					__builtin_trap();
			wal_shm_consume_run(&c, recs, n, (int64_t)seq);
			seq += n;
		} while (rc == 1);
		(void)wal_shm_publish(&c);
		if (rc < 0)
			break;
		tail += (uint64_t)(in[len - 1]) * 16;
	}
	return (0);
}
