/*
 * walmmapd - recovery of a segment directory before a writer continues it.
 */
#ifndef WAL_RECOVER_H
#define WAL_RECOVER_H

#include <stdint.h>

#include "wal_error.h"
#include "wal_ring.h"
#include "wal_segment.h"

/* What recovery hands the ring. */
struct wal_recovered {
	struct wal_segment	*tail;		/* last segment with records, mapped
						   read-write; NULL if none */
	struct wal_segment	*empties;	/* empty pre-allocated segments of
						   segment_size after the tail,
						   ascending id, mapped */
	uint64_t		 next_id;	/* id for the next new segment */
	int64_t			 next_seq;	/* seq for the next record */
};

/*
 * Recover the locked directory dirfd: find the last segment holding records,
 * scan it to its last valid record, zero what follows (a torn record or
 * stray bytes; bytes that still hold valid-looking records are first saved
 * to "<segment>.discarded-<offset>" beside it), and compute where seq and
 * segment ids continue. The few segments before the tail that may hold
 * unsynced records are checked for a break (a hole a power cut left); the
 * log then ends there and the segments after it are renamed
 * "<segment>.discarded". Older segments are not read.
 */
int	wal_recover_dir(int dirfd, const char *dir, uint64_t segment_size,
	    struct wal_recovered *out, struct wal_recovery *info,
	    struct wal_error *err);

#endif /* WAL_RECOVER_H */
