/*
 * walmmapd - a directory of segments: listing, locking, syncing.
 */
#ifndef WAL_DIR_H
#define WAL_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "wal_error.h"

/* The segment ids found in a directory, ascending. */
struct wal_seglist {
	uint64_t	*ids;
	size_t		 count;
	/*
	 * 1 + the largest id named by a segment or by a file named after
	 * one ("<segment>.discarded", ...), 0 if none: ids below it were used.
	 */
	uint64_t	 id_bound;
};

/* Open a directory for segment work (O_DIRECTORY); returns fd or -errno. */
int	wal_dir_open(const char *path, struct wal_error *err);

/* List the segment files of a directory, sorted by id. */
int	wal_dir_list(int dirfd, const char *path, struct wal_seglist *out,
	    struct wal_error *err);

/* Free a list filled by wal_dir_list(). */
void	wal_seglist_free(struct wal_seglist *);

/*
 * Take the exclusive writer lock of a directory (flock on the directory
 * itself, so no lock file is left behind). Fails with -EWOULDBLOCK when
 * another writer holds it. The lock lives as long as dirfd stays open.
 * Readers learn whether a writer is live by taking a shared lock and
 * dropping it at once (walmmap_verify()); this retries past that moment.
 */
int	wal_dir_lock(int dirfd, const char *path, struct wal_error *err);

/* Make the directory's entries durable. */
int	wal_dir_sync(int dirfd, const char *path, struct wal_error *err);

/*
 * Remove leftover temporary files of interrupted segment creations and
 * checkpoint writes (".tmp.<segment>", ".tmp.walmmapd.checkpoint").
 */
void	wal_dir_remove_temps(int dirfd);

#endif /* WAL_DIR_H */
