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
 * Sealed segments that may await a sync at once: the background thread
 * syncs them as soon as it can, and a writer that finds this many syncs
 * them itself before it seals another. So at most this many sealed
 * segments and the active one hold unsynced records (and descriptors).
 */
#define WAL_MAX_SEALED_UNSYNCED	4

struct wal_ring_config {
	const char	*dir;		/* existing directory (and its name) */
	int		 has_dirfd;	/* use dirfd, not a new open of dir: */
	int		 dirfd;		/*   the caller checked it (dup'd) */
	uint64_t	 segment_size;	/* 0: WAL_SEGMENT_DEFAULT */
	unsigned	 ring_segments;	/* mapped segments, 0: WAL_RING_DEFAULT */
	int		 no_prefault;	/* skip pre-faulting (tests, tmpfs) */
	int		 large_pages;	/* MADV_HUGEPAGE on every segment */
	uint64_t	 prefault_step;	/* paced pre-fault steps, 0: at once */
	uint64_t	 writeback_step; /* paced write-back steps, 0: at once */
	int64_t		 start_seq;	/* first seq of a new log (0) */
};

/* How recovery used the checkpoint (struct wal_recovery.checkpoint). */
enum wal_ckpt_state {
	WAL_CKPT_USED = 0,	/* read from its segment on */
	WAL_CKPT_NONE,		/* none (a new directory or one made by an
				   earlier version): scanned and synced in full */
	WAL_CKPT_BAD,		/* unusable (checkpoint_why says why):
				   scanned and synced in full */
};

/*
 * What recovery found and did when the ring was opened. Library code does
 * not log: the caller reports what it wants to.
 */
struct wal_recovery {
	uint64_t	segments;	/* segment files present */
	int64_t		next_seq;	/* where this run continues */
	uint64_t	tail_id;	/* segment continued (if records) */
	uint64_t	tail_offset;	/* offset after its last record */
	uint64_t	torn_bytes;	/* garbage zeroed after the tail */
	uint64_t	adopted;	/* empty pre-allocated segments reused */
	uint64_t	removed;	/* empty segments removed: of another
					   size, or unused ones below the tail */
	uint64_t	temps_removed;	/* .tmp. files of interrupted creation */
	uint64_t	discarded;	/* segments after a break, moved aside */
	int		checkpoint;	/* enum wal_ckpt_state */
	char		checkpoint_why[WAL_ERROR_MSG_MAX];
	/* "" or why recovery could not write the checkpoint (a full disk) */
	char		checkpoint_unwritten[WAL_ERROR_MSG_MAX];
	uint64_t	scan_from_id;	/* first segment id read */
	uint64_t	scanned;	/* segments read for breaks */
	uint64_t	synced;		/* segments fdatasynced before the
					   recovered records were called durable */
	int		sync_failed;	/* the previous run left the marker
					   walmmapd.sync-failed */
	uint64_t	rewritten;	/* segments written again because of it */
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
	uint64_t	sealed_unsynced; /* <= WAL_MAX_SEALED_UNSYNCED */
	uint64_t	synced_below;	/* segments below it are synced in full */
	uint64_t	checkpoint_id;	/* and below this one walmmapd.checkpoint
					   says so (<= synced_below) */
	uint64_t	retain_below;	/* retention may remove only segments
					   below this id */
	int		failed;		/* errno of the sticky sync failure,
					   0 if none (see wal_ring_failed()) */
};

/* Lock the directory, recover it, start the background thread. */
int	wal_ring_open(const struct wal_ring_config *, struct wal_ring **,
	    struct wal_recovery *, struct wal_error *err);

/*
 * The end of a run: stop the background thread, sync, and record the sync
 * in the checkpoint (nothing is synced or recorded after a sync failure).
 * Returns 0, or the sticky sync failure (a negative errno, its message in
 * *err) whenever it happened: before, or in this final sync or checkpoint.
 * Writer thread; nothing may be appended after it. A second call only
 * reports again.
 */
int	wal_ring_shutdown(struct wal_ring *, struct wal_error *err);

/*
 * wal_ring_shutdown() unless that was done, then unmap and close
 * everything.
 */
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
 * Give up a reservation instead of committing it (for example when the
 * payload cannot be read): what the caller wrote into it is zeroed, so no
 * stale bytes stay after the segment's last record.
 */
void	wal_ring_abandon(struct wal_ring *);

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

/*
 * Append the n records of recs[], stamped timestamp_ns (< 0: now), with
 * consecutive seqs from
 * wal_ring_next_seq(); as after wal_ring_commit_deferred(), they are
 * written only at the next wal_ring_flush(). The payloads are read once:
 * the CRCs cover the copies. each, when not NULL, is called with arg, the
 * record's index and its seq once the record has its place and before it
 * can be published (to journal it). Returns how many were appended, fewer
 * than n only when the next one is larger than the log takes or the
 * segment switch before it failed (err says why; the ones before are
 * flushed; each was not called for it).
 */
typedef void	 wal_ring_each_fn(void *arg, unsigned i, int64_t seq);
unsigned wal_ring_append_run(struct wal_ring *, const struct iovec *recs,
	    unsigned n, int64_t timestamp_ns, wal_ring_each_fn *each,
	    void *arg, struct wal_error *err);

/* Seal the active segment and continue in a new one (no-op when empty). */
int	wal_ring_rotate(struct wal_ring *, struct wal_error *err);

/*
 * Make every record written before the call durable: msync of the active
 * segment's written part and fdatasync of each sealed segment holding
 * unsynced records (directory entries were synced when the segments were
 * created). Concurrent callers are serialised; one call covers all records
 * written before it started (group commit). Stores the durable seq in
 * *durable if not NULL.
 *
 * A failure is sticky: after the first failed sync (here, in the
 * background thread, or of the checkpoint) the durable seq never advances
 * again and every call returns that first error at once. The ring leaves
 * walmmapd.sync-failed in the directory, so that the next open writes
 * every segment after the checkpoint again before calling it durable.
 */
int	wal_ring_sync(struct wal_ring *, int64_t *durable, struct wal_error *err);
/*
 * The same, paced by writeback_step (see walmmapd.conf(5)): for a thread
 * that syncs on behalf of others (walmmapd's sync thread), never for the
 * writer's own thread, which would only pause itself.
 */
int	wal_ring_sync_paced(struct wal_ring *, int64_t *durable,
	    struct wal_error *err);

/*
 * The sticky sync failure: 0 if none, else its negative errno, with its
 * message in *err (if not NULL). Any thread.
 */
int	wal_ring_failed(const struct wal_ring *, struct wal_error *err);

/*
 * Have every sync that moves the durable seq call fn(arg, covered, err)
 * after the segments are synced and before it publishes covered: the
 * daemon syncs its producer table there. A failure of fn fails the sync
 * (sticky, as a segment's). Call before the first append.
 */
void	wal_ring_set_companion(struct wal_ring *, int (*fn)(void *, int64_t,
	    struct wal_error *), void *arg);

/* Seq the next append gets. Writer thread. */
int64_t	wal_ring_next_seq(const struct wal_ring *);

/* Last written / durable seq, -1 if none. Any thread. */
int64_t	wal_ring_written_seq(const struct wal_ring *);
int64_t	wal_ring_durable_seq(const struct wal_ring *);

/* Group commits (wal_ring_sync) that synced something, since open. */
uint64_t wal_ring_sync_count(const struct wal_ring *);

/* Largest payload one append can take with this ring's segment size. */
uint32_t wal_ring_max_record(const struct wal_ring *);

/* Counters. Any thread (values are a consistent-enough snapshot). */
void	wal_ring_stats(struct wal_ring *, struct wal_ring_stats *);

/* Current wall-clock time in ns since the epoch (CLOCK_REALTIME). */
int64_t	wal_now_ns(void);

#endif /* WAL_RING_H */
