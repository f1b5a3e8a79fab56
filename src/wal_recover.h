/*
 * walmmapd - recovery of a segment directory before a writer continues it.
 */
#ifndef WAL_RECOVER_H
#define WAL_RECOVER_H

#include <stdint.h>

#include "wal_checkpoint.h"
#include "wal_error.h"
#include "wal_ring.h"
#include "wal_segment.h"

/* No segment holds a record (struct wal_recovered.rec_id). */
#define WAL_NO_ID	UINT64_MAX

/* What recovery hands the ring. */
struct wal_recovered {
	struct wal_segment	*tail;		/* last segment with records, mapped
						   read-write; NULL if none at or
						   after the checkpoint */
	struct wal_segment	*empties;	/* empty pre-allocated segments of
						   segment_size after the tail,
						   ascending id, mapped */
	uint64_t		 next_id;	/* above every id ever used */
	int64_t			 next_seq;	/* seq for the next record */
	uint64_t		 rec_id;	/* newest segment holding a record,
						   WAL_NO_ID if none */
	struct wal_checkpoint	 synced;	/* what recovery made true: every
						   segment below synced_below is
						   synced (the tail and the
						   empties are at or above it) */
	struct wal_checkpoint	 on_disk;	/* what walmmapd.checkpoint says
						   now (synced_below 0: none) */
};

/*
 * Recover the locked directory dirfd so that a writer can continue it and
 * call every record in it durable:
 *
 *  - read walmmapd.checkpoint; without a usable one read every segment;
 *  - read every segment from the checkpoint's on and find the first break
 *    a crash or power cut left: garbage after a segment's last record, a
 *    seq that does not follow, an empty segment below a later one. The log
 *    ends there; the segments after it are renamed "<segment>.discarded"
 *    (a unique name, never over an existing file), bytes that recovery
 *    zeroes and that still hold valid-looking records are first copied to
 *    "<segment>.discarded-<offset>";
 *  - empty segments after the last one holding records are adopted when
 *    they have segment_size, removed otherwise;
 *  - every segment kept at or after the checkpoint is fdatasynced (after
 *    walmmapd.sync-failed: written again first), the directory too, and a
 *    new checkpoint is written; only then is the marker removed.
 *
 * Segments below the checkpoint are not read.
 */
int	wal_recover_dir(int dirfd, const char *dir, uint64_t segment_size,
	    struct wal_recovered *out, struct wal_recovery *info,
	    struct wal_error *err);

/*
 * wal_recover_dir() for a log that, when new (no record kept, found or
 * ever handed out: the checkpoint says so), begins at start_seq (> 0):
 * out->next_seq is start_seq and the checkpoint written says the seqs
 * below it are taken.
 */
int	wal_recover_dir_start(int dirfd, const char *dir,
	    uint64_t segment_size, int64_t start_seq, struct wal_recovered *out,
	    struct wal_recovery *info, struct wal_error *err);

#endif /* WAL_RECOVER_H */
