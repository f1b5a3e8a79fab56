/*
 * walmmapd - the segment ring: one writer appending into a mapped, pre-faulted
 * segment while a background thread keeps standby segments ready.
 *
 * Threads:
 *  - the writer (whoever opened the ring) is the only caller of
 *    wal_ring_append/reserve/commit/rotate/close. The append path takes no
 *    lock and makes no system call; only a rotation takes the ring lock.
 *  - the background thread creates, fallocates, maps and pre-faults standby
 *    segments, unmaps sealed ones and starts their write-back.
 *  - any thread may call wal_ring_sync() and the wal_ring_*_seq() getters.
 */
#ifndef WAL_RING_H
#define WAL_RING_H

#include <sys/uio.h>

#include <stdint.h>

#include "wal_error.h"
#include "wal_format.h"

struct wal_ring;

/*
 * Sealed segments kept open awaiting a sync before the ring syncs them
 * itself. So at most this many + 1 sealed segments and the active one hold
 * unsynced records, which bounds what recovery checks for holes.
 */
#define WAL_MAX_SEALED_UNSYNCED	4

struct wal_ring_config {
	const char	*dir;		/* existing directory (and its name) */
	int		 has_dirfd;	/* use dirfd, not a new open of dir: */
	int		 dirfd;		/*   the caller checked it (dup'd) */
	uint64_t	 segment_size;	/* 0: WAL_SEGMENT_DEFAULT */
	unsigned	 ring_segments;	/* mapped segments, 0: WAL_RING_DEFAULT */
	int		 no_prefault;	/* skip pre-faulting (tests, tmpfs) */
};

/* What recovery found when the ring was opened. */
struct wal_recovery {
	uint64_t	segments;	/* segment files present */
	int64_t		next_seq;	/* where this run continues */
	uint64_t	tail_id;	/* segment continued (if records) */
	uint64_t	tail_offset;	/* offset after its last record */
	uint64_t	torn_bytes;	/* garbage zeroed after the tail */
	uint64_t	adopted;	/* empty pre-allocated segments reused */
	uint64_t	temps_removed;	/* .tmp. files of interrupted creation */
	uint64_t	discarded;	/* segments after a break, moved aside */
};

struct wal_ring_stats {
	int64_t		next_seq;
	int64_t		written_seq;	/* last record written, -1 none */
	int64_t		durable_seq;	/* last record synced, -1 none */
	uint64_t	active_id;
	uint64_t	active_used;
	uint64_t	segment_size;
	uint64_t	rotations;
	uint64_t	rotations_waited; /* no standby ready: created inline */
	uint64_t	segments_created;
	uint64_t	create_failures;
	uint64_t	syncs;
	uint64_t	standby;	/* standby segments ready now */
	uint64_t	sealed_unsynced;
};

/* Lock the directory, recover it, start the background thread. */
int	wal_ring_open(const struct wal_ring_config *, struct wal_ring **,
	    struct wal_recovery *, struct wal_error *err);

/* Sync, stop the background thread, unmap and close everything. */
void	wal_ring_close(struct wal_ring *);

/*
 * Append one record. timestamp_ns < 0 stamps it with CLOCK_REALTIME.
 * On success stores the record's seq in *seq (if not NULL) and returns 0.
 * Fails with -EMSGSIZE for a record that can never fit and with the
 * segment creation error (for example -ENOSPC) when a rotation finds no
 * space; nothing is written then and the ring stays usable.
 */
int	wal_ring_append(struct wal_ring *, const void *payload, uint32_t size,
	    int64_t timestamp_ns, int64_t *seq, struct wal_error *err);

/* Append one record whose payload is the concatenation of iov. */
int	wal_ring_appendv(struct wal_ring *, const struct iovec *iov, int iovcnt,
	    int64_t timestamp_ns, int64_t *seq, struct wal_error *err);

/*
 * Zero-copy append in two steps: reserve returns where size payload bytes
 * go (in the mapped segment); commit writes header and CRC and publishes
 * the record. Nothing else may be called on the ring in between.
 */
int	wal_ring_reserve(struct wal_ring *, uint32_t size, uint8_t **payload,
	    struct wal_error *err);
int64_t	wal_ring_commit(struct wal_ring *, int64_t timestamp_ns);

/*
 * Batched commits: wal_ring_commit_deferred() writes the header and
 * returns the seq, but the record is written (CRC stored, written_seq
 * published) only at the next wal_ring_flush() (automatic every
 * WAL_RING_CRC_BATCH records, and before a rotation or close). Computing
 * the CRCs of a batch together avoids a store-forwarding stall per record.
 * Acknowledge nothing before the flush.
 */
#define WAL_RING_CRC_BATCH	32
int64_t	wal_ring_commit_deferred(struct wal_ring *, int64_t timestamp_ns);
void	wal_ring_flush(struct wal_ring *);

/* Seal the active segment and continue in a new one (no-op when empty). */
int	wal_ring_rotate(struct wal_ring *, struct wal_error *err);

/*
 * Make every record written before the call durable: fdatasync of each
 * segment holding unsynced records (directory entries were synced when the
 * segments were created). Concurrent callers are serialised; one call
 * covers all records written before it started (group commit). Stores the
 * durable seq in *durable if not NULL.
 */
int	wal_ring_sync(struct wal_ring *, int64_t *durable, struct wal_error *err);

/* Seq the next append gets. Writer thread. */
int64_t	wal_ring_next_seq(const struct wal_ring *);

/* Last written / durable seq, -1 if none. Any thread. */
int64_t	wal_ring_written_seq(const struct wal_ring *);
int64_t	wal_ring_durable_seq(const struct wal_ring *);

/* Largest payload one append can take with this ring's segment size. */
uint32_t wal_ring_max_record(const struct wal_ring *);

/* Counters. Any thread (values are a consistent-enough snapshot). */
void	wal_ring_stats(struct wal_ring *, struct wal_ring_stats *);

/* Current wall-clock time in ns since the epoch (CLOCK_REALTIME). */
int64_t	wal_now_ns(void);

#endif /* WAL_RING_H */
