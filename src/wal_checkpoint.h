/*
 * walmmapd - the two small files a writer keeps beside the segments.
 *
 * walmmapd.checkpoint says which segments are synced for good, so that
 * recovery reads only the segments after them and never mistakes an old,
 * synced segment for one a power cut may have holed. walmmapd.sync-failed
 * says that a sync failed: the kernel reports a failed write-back once and
 * then marks the pages clean, so the next start must write everything after
 * the checkpoint again before it may call it durable.
 *
 * Neither changes the segment format: a Signet reader reads only
 * wal_mmap_*.wal files and ignores both.
 */
#ifndef WAL_CHECKPOINT_H
#define WAL_CHECKPOINT_H

#include <stdint.h>

#include "wal_error.h"

#define WAL_CHECKPOINT_NAME	"walmmapd.checkpoint"
#define WAL_SYNC_FAILED_NAME	"walmmapd.sync-failed"

/*
 * What a checkpoint says. A writer never writes into a segment below
 * synced_below again, so the claim stays true.
 */
struct wal_checkpoint {
	uint64_t	synced_below;	/* every segment with a smaller id is
					   synced in full, its directory entry
					   too */
	int64_t		last_seq;	/* the last seq those segments hold, -1
					   if none */
	uint64_t	next_id;	/* ids below this may have been used */
};

/*
 * Read the checkpoint of the directory open as dirfd. Returns 1 when it
 * was read and is valid, 0 when there is none, and a negative errno with a
 * message saying why when it cannot be used (unreadable, corrupt, a
 * symbolic link).
 */
int	wal_checkpoint_read(int dirfd, const char *dir, struct wal_checkpoint *,
	    struct wal_error *err);

/*
 * Replace the checkpoint atomically: a new file under a temporary name
 * (O_EXCL), written, fsynced, renamed over the old one, and the directory
 * fsynced. When the failure was one of the two syncs, *sync_failed is set
 * to 1: the caller must treat the storage as failing (the other failures,
 * a full disk for one, leave the old checkpoint in place and can be
 * retried).
 */
int	wal_checkpoint_write(int dirfd, const char *dir,
	    const struct wal_checkpoint *, int *sync_failed,
	    struct wal_error *err);

/*
 * Leave the sync-failure marker holding why (O_CREAT|O_EXCL|O_NOFOLLOW; one
 * that is there already is kept), synced with the directory. Best effort:
 * returns 0 or a negative errno with a message.
 */
int	wal_sync_failed_mark(int dirfd, const char *dir, const char *why,
	    struct wal_error *err);

/*
 * 1 if the marker is there (whatever it is: a symbolic link counts), 0 if
 * not, a negative errno when that cannot be told.
 */
int	wal_sync_failed_present(int dirfd, const char *dir,
	    struct wal_error *err);

/* Remove the marker and sync the directory. */
int	wal_sync_failed_clear(int dirfd, const char *dir,
	    struct wal_error *err);

#endif /* WAL_CHECKPOINT_H */
