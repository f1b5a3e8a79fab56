/*
 * walmmapd - reading records back from a directory of segments or from one
 * segment file, without a daemon.
 *
 * The reader maps one segment at a time read-only. It returns records in
 * seq order and stops at the first record that is invalid or breaks the
 * seq chain; wal_reader_stopped() says where and why. It is safe to read a
 * directory a writer is appending to: a record is returned only once its
 * CRC is in place, and wal_reader_next() can be called again later to pick
 * up records written since (following).
 *
 * The live end. The writer stores a record's payload and header first and
 * its CRC later (wal_ring_flush() does up to WAL_RING_CRC_BATCH at once),
 * so a reader in another process that reaches the write point can find a
 * header whose CRC is zero or wrong, or a record whose bytes are still
 * arriving. Such a record is "not yet", not damage: unless the reader is
 * strict (wal_reader_set_strict()), an invalid record counts as damage
 * only when a valid record exists after it, in its segment or in a later
 * one (the writer has moved past it); otherwise the reader stops there with
 * WAL_REC_END and picks the record up once it is complete. A record that is
 * complete (its CRC matches) but out of seq is always damage.
 *
 * Retention deletes segments from the front of the log, possibly the one a
 * reader is on: the reader keeps its mapping, and carries on with the next
 * segment when that continues the seq chain. When the records it needs next
 * were deleted too, it stops with WAL_REC_REMOVED.
 */
#ifndef WAL_READER_H
#define WAL_READER_H

#include <stdint.h>

#include "wal_error.h"
#include "wal_format.h"

struct wal_reader;

/*
 * Where and why a reader stopped. For WAL_REC_REMOVED: expect_seq is the
 * first seq that is gone, found_seq the seq the log continues at, file
 * and offset where that record is.
 */
struct wal_reader_stop {
	enum wal_rec_status	 status;	/* WAL_REC_END: clean end */
	const char		*file;		/* segment path, NULL if none */
	uint64_t		 offset;	/* byte offset in that file */
	int64_t			 expect_seq;	/* seq expected there, -1 any */
	int64_t			 found_seq;	/* seq found there, -1 none */
};

/* Open a directory of segments or a single segment file. */
int	wal_reader_open(const char *path, struct wal_reader **,
	    struct wal_error *err);

/*
 * Open the directory of segments dirfd refers to (a copy of it is kept):
 * path only names it in messages. Nothing goes through a path or a
 * symbolic link (walmmapd's subscriptions: the directory it checked).
 */
int	wal_reader_open_dir(int dirfd, const char *path, struct wal_reader **,
	    struct wal_error *err);
void	wal_reader_close(struct wal_reader *);

/*
 * Strict (on != 0): the caller knows the log is not being written, so an
 * invalid record at the end of the log is damage too, not "not yet".
 */
void	wal_reader_set_strict(struct wal_reader *, int on);

/*
 * Return the next record in *rec (payload valid until the next call):
 * 1 with a record, 0 when there is none (now), negative errno on an I/O
 * error. At 0, wal_reader_stopped() tells whether this is the end of what
 * has been written so far (WAL_REC_END), damage, or WAL_REC_REMOVED.
 * Calling again after 0 retries from the same place, which is how a
 * follower sees new records.
 */
int	wal_reader_next(struct wal_reader *, struct wal_record *rec,
	    struct wal_error *err);

/*
 * Position so that the next record returned is seq, or the first record
 * after seq if seq itself is gone (removed by retention, or the log starts
 * later). Binary search over the segments' first seqs, then a scan to seq.
 * Returns 0; -ENOENT (with err set) when seq is beyond the last complete
 * record, the reader then being positioned at the end, ready to follow
 * (records before seq are skipped as they come); or another negative errno
 * on an I/O error. When the scan meets damage it returns 0 and the next
 * wal_reader_next() reports the damage.
 */
int	wal_reader_seek(struct wal_reader *, int64_t seq, struct wal_error *err);

/* Why the last wal_reader_next() returned 0. */
const struct wal_reader_stop *wal_reader_stopped(const struct wal_reader *);

/* Id of the segment being read, UINT64_MAX when none. */
uint64_t wal_reader_current_id(const struct wal_reader *);

/* Seq of the next record the reader expects (-1 before the first). */
int64_t	wal_reader_position(const struct wal_reader *);

/*
 * Seq of the next record the reader returns: after the last one returned,
 * else the seq it was sought to (it may not exist yet), else -1 (the
 * first on disk).
 */
int64_t	wal_reader_next_seq(const struct wal_reader *);

#endif /* WAL_READER_H */
