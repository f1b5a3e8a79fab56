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
 */
#ifndef WAL_READER_H
#define WAL_READER_H

#include <stdint.h>

#include "wal_error.h"
#include "wal_format.h"

struct wal_reader;

/* Where and why a reader stopped. */
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
void	wal_reader_close(struct wal_reader *);

/*
 * Return the next record in *rec (payload valid until the next call):
 * 1 with a record, 0 when there is none (now), negative errno on an I/O
 * error. At 0, wal_reader_stopped() tells whether this is the clean end
 * of what has been written (WAL_REC_END) or damage. Calling again after 0
 * retries from the same place, which is how a follower sees new records.
 */
int	wal_reader_next(struct wal_reader *, struct wal_record *rec,
	    struct wal_error *err);

/*
 * Position so that the next record returned is seq, or the first record
 * after seq if seq itself is gone (removed by retention, or the log starts
 * later). Binary search over the segments' first seqs, then a scan.
 * Returns 0, or -ENOENT when seq is beyond the last record (the reader is
 * then positioned at the end, ready to follow).
 */
int	wal_reader_seek(struct wal_reader *, int64_t seq, struct wal_error *err);

/* Why the last wal_reader_next() returned 0. */
const struct wal_reader_stop *wal_reader_stopped(const struct wal_reader *);

/* Id of the segment being read, UINT64_MAX when none. */
uint64_t wal_reader_current_id(const struct wal_reader *);

/* Seq of the next record the reader expects (-1 before the first). */
int64_t	wal_reader_position(const struct wal_reader *);

#endif /* WAL_READER_H */
