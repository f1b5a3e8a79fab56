/*
 * walmmapd - the segment ring.
 *
 * Ownership (see also wal_ring.h):
 *
 *  active, next_seq, pending_*      writer thread only; active is also
 *                                   written under lock on rotation so that
 *                                   wal_ring_sync() can read it under lock.
 *  standby list, sealed list,       lock
 *  stop, counters marked (lock),
 *  synced_below/synced_seq,
 *  ckpt_id, ckpt_retry
 *  next_id                          create_lock (one segment creation at
 *                                   a time, by the background thread or by a
 *                                   writer that found no standby)
 *  closing fds of sealed segments   sync_lock (only a sync retires them)
 *  unmapping sealed segments        background thread, under lock, except
 *                                   sync_pin (the one a sync is msyncing)
 *  active->written                  stored by the writer with release
 *                                   before written_seq (same rule)
 *  written_seq                      stored by the writer with release after
 *                                   a record's CRC is in place; loaded with
 *                                   acquire by syncers: every record up to
 *                                   it is in a segment on the sealed list or
 *                                   the active one
 *  durable_seq                      stored with release, under sync_lock,
 *                                   by a sync after its msync/fdatasyncs
 *                                   returned, never after a failure;
 *                                   acquire by readers
 *  fail_code, fail_err              set once, under sync_lock, by the first
 *                                   failed sync: fail_err is written before
 *                                   fail_code is stored with release, and
 *                                   never changes after; readers load
 *                                   fail_code with acquire
 *  rec_id                           stored (relaxed) by the writer when a
 *                                   segment gets its first record
 *
 * Where durability is published, and why each is safe:
 *
 *  - written_seq/active->written: after the CRCs are stored; the bytes are
 *    in the page cache, so they survive kill -9 (not a power cut: nothing
 *    claims that).
 *  - durable_seq: only by a sync under sync_lock whose msync of the active
 *    segment and fdatasync of every sealed one succeeded, and the sync of
 *    the companion file after them (the producer table, which then holds
 *    every producer record up to it), and only while no
 *    sync has failed (a failed write-back is reported once: a later sync of
 *    the same pages would succeed without writing them).
 *  - synced_below (memory) and walmmapd.checkpoint (disk): after the
 *    fdatasync of every sealed segment below it succeeded; the file is
 *    written by the background thread, off the acknowledgement path, and
 *    never after a failure. Recovery reads from the checkpoint's segment
 *    on, so every segment it skips was synced in full and is never written
 *    again. Retention removes only segments below the checkpoint on disk.
 *  - Starting write-back early (sync_file_range() of a sealed segment as
 *    it is unmapped, and with writeback_step of the active one before a
 *    sync's msync) publishes nothing: durable_seq and synced_below still
 *    wait for the msync/fdatasync of the same bytes, which writes what is
 *    still dirty, waits for all of it and reports any write-back error,
 *    the early calls' included (the error is kept for the file).
 */
#include "config.h"

#include <sys/mman.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wal_checkpoint.h"
#include "wal_crc.h"
#include "wal_dir.h"
#include "wal_recover.h"
#include "wal_ring.h"

#define RING_PAUSE_NS		50000	/* after each paced step */
#define RING_PAUSE_MAX_NS	200000000 /* pauses for one segment or sync */

struct wal_ring {
	char			*dir;
	int			 dirfd;
	uint64_t		 segment_size;
	unsigned		 ring_segments;
	int			 seg_flags;
	uint64_t		 prefault_step;	/* 0: a segment at once */
	uint64_t		 writeback_step; /* 0: a range at once */

	/* Writer thread. */
	struct wal_segment	*active;
	int64_t			 next_seq;
	uint8_t			*pending;	/* reserved record start */
	uint32_t		 pending_size;
	/*
	 * Committed records whose CRC is not computed yet (writer only).
	 * A CRC read right after the record's bytes were stored stalls on
	 * store forwarding (28 ns for a 64-byte record here, 9 ns when
	 * deferred), so wal_ring_commit_deferred() queues and
	 * wal_ring_flush() computes, stores and publishes them together.
	 */
	uint8_t			*crc_rec[WAL_RING_CRC_BATCH];
	uint32_t		 crc_size[WAL_RING_CRC_BATCH];
	unsigned		 ncrc;

	_Atomic int64_t		 written_seq;
	_Atomic int64_t		 durable_seq;
	_Atomic uint64_t	 rec_id;	/* newest segment with a record */
	/* Synced with the segments before durable_seq moves (sync_lock). */
	int			(*companion)(void *, int64_t,
				    struct wal_error *);
	void			*companion_arg;

	/* The first failed sync: sticky (see the top of the file). */
	_Atomic int		 fail_code;
	struct wal_error	 fail_err;

	pthread_mutex_t		 lock;
	pthread_cond_t		 cond;		/* wakes the background thread */
	struct wal_segment	*standby;	/* ready, ascending id (lock) */
	struct wal_segment	*sealed;	/* awaiting sync, ascending (lock) */
	struct wal_segment	*sync_pin;	/* mapping a sync is using: the
						   bg thread leaves it mapped
						   (lock) */
	unsigned		 nstandby;	/* (lock) */
	unsigned		 nsealed;	/* (lock) */
	int			 stop;		/* (lock) */
	time_t			 create_retry;	/* after a failed bg creation, retry
						   at this CLOCK_MONOTONIC second;
						   0 when none failed (lock) */
	uint64_t		 synced_below;	/* segments below are synced in
						   full (lock) */
	int64_t			 synced_seq;	/* their last seq (lock) */
	uint64_t		 ckpt_id;	/* synced_below of the checkpoint
						   on disk (lock) */
	time_t			 ckpt_retry;	/* after a failed checkpoint write
						   (full disk), retry then (lock) */

	pthread_mutex_t		 create_lock;
	uint64_t		 next_id;	/* (create_lock) */

	pthread_mutex_t		 sync_lock;
	/* Set while the writer waits for sync_lock: a sync stops pausing. */
	_Atomic int		 writer_waits;
	/* The active segment's write-back started up to (sync_lock). */
	uint64_t		 wb_id;
	uint64_t		 wb_off;

	pthread_t		 bg;
	int			 bg_running;
	int			 shut;		/* wal_ring_shutdown() ran (writer) */

	/* Counters. */
	_Atomic uint64_t	 rotations;
	_Atomic uint64_t	 rotations_waited;
	_Atomic uint64_t	 segments_created;
	_Atomic uint64_t	 create_failures;
	_Atomic uint64_t	 syncs;
};

static void	*ring_bg_main(void *);
static int	 ring_create_segment(struct wal_ring *, struct wal_segment **,
		    int, struct wal_error *err);
static void	 ring_prefault(struct wal_ring *, struct wal_segment *, int);
static int	 ring_pause(struct wal_ring *, uint64_t *);
static int	 ring_sync(struct wal_ring *, int64_t *, struct wal_error *,
		    int);
static void	 ring_writeback(struct wal_ring *, struct wal_segment *,
		    uint64_t);
static void	 ring_release_sealed(struct wal_ring *, uint8_t *, uint64_t,
		    int);
static int	 ring_switch(struct wal_ring *, struct wal_error *err);
static void	 ring_free_list(struct wal_segment *);
static struct wal_segment *ring_pop_standby(struct wal_ring *);
static int	 ring_sync_sealed(struct wal_ring *, struct wal_error *);
static int	 ring_sync_sealed_locked(struct wal_ring *, int64_t *,
		    struct wal_error *);
static int	 ring_set_durable(struct wal_ring *, int64_t,
		    struct wal_error *);
static int	 ring_fail(struct wal_ring *, const struct wal_error *);
static void	 ring_write_checkpoint(struct wal_ring *,
		    const struct wal_checkpoint *);
static void	 ring_list_append(struct wal_segment **, struct wal_segment *);

/* Current CLOCK_REALTIME in ns. */
int64_t
wal_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
}

/* Open a ring on a directory: lock, recover, start the background thread. */
int
wal_ring_open(const struct wal_ring_config *cfg, struct wal_ring **out,
    struct wal_recovery *info, struct wal_error *err)
{
	struct wal_recovery dummy;
	struct wal_recovered rec;
	pthread_condattr_t cattr;
	struct wal_ring *r;
	sigset_t all, saved;
	struct wal_segment *seg;
	int rc;

	*out = NULL;
	if (info == NULL)
		info = &dummy;
	if ((r = calloc(1, sizeof *r)) == NULL || (r->dir = strdup(cfg->dir))
	    == NULL) {
		free(r);
		return (wal_seterrno(err, ENOMEM, "cannot open ring on %s",
		    cfg->dir));
	}
	r->dirfd = -1;
	r->segment_size = cfg->segment_size ? cfg->segment_size :
	    WAL_SEGMENT_DEFAULT;
	r->ring_segments = cfg->ring_segments ? cfg->ring_segments :
	    WAL_RING_DEFAULT;
	r->seg_flags = cfg->no_prefault ? 0 : WAL_SEG_PREFAULT;
	if (cfg->large_pages)
		r->seg_flags |= WAL_SEG_HUGE;
	r->prefault_step = cfg->prefault_step;
	r->writeback_step = cfg->writeback_step;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &cattr);
	pthread_condattr_destroy(&cattr);
	pthread_mutex_init(&r->create_lock, NULL);
	pthread_mutex_init(&r->sync_lock, NULL);
	atomic_init(&r->written_seq, -1);
	atomic_init(&r->durable_seq, -1);

	if (!wal_seg_size_valid(r->segment_size)) {
		rc = wal_seterr(err, EINVAL, "segment size %" PRIu64 " is not "
		    "a multiple of 64 KiB between 64 KiB and 16 GiB",
		    r->segment_size);
		goto fail;
	}
	if (r->ring_segments < WAL_RING_MIN || r->ring_segments >
	    WAL_RING_MAX) {
		rc = wal_seterr(err, EINVAL, "ring of %u segments is outside "
		    "%d..%d", r->ring_segments, WAL_RING_MIN, WAL_RING_MAX);
		goto fail;
	}
	/*
	 * The sealed segment is unmapped a step at a time: a step that is
	 * not whole pages makes every other munmap() fail (EINVAL), and the
	 * pages it leaves mapped stay mapped for good.
	 */
	if (r->writeback_step % (uint64_t)sysconf(_SC_PAGESIZE) != 0) {
		rc = wal_seterr(err, EINVAL, "writeback_step %" PRIu64 " is "
		    "not a multiple of the page size (%ld)", r->writeback_step,
		    sysconf(_SC_PAGESIZE));
		goto fail;
	}
	if (cfg->has_dirfd) {
		if ((r->dirfd = fcntl(cfg->dirfd, F_DUPFD_CLOEXEC, 0)) == -1) {
			rc = wal_seterrno(err, errno, "cannot duplicate the "
			    "descriptor of %s", r->dir);
			goto fail;
		}
	} else if ((rc = wal_dir_open(r->dir, err)) < 0)
		goto fail;
	else
		r->dirfd = rc;
	if ((rc = wal_dir_lock(r->dirfd, r->dir, err)) != 0)
		goto fail;
	if ((rc = wal_recover_dir_start(r->dirfd, r->dir, r->segment_size,
	    cfg->start_seq, &rec, info, err)) != 0)
		goto fail;

	/*
	 * start_seq: the first seq of a log that continues one kept
	 * elsewhere; recovery began a new log there. A log holding records
	 * is never renumbered: one whose next seq is below it is refused;
	 * one already past it goes on.
	 */
	if (cfg->start_seq > rec.next_seq) {
		rc = wal_seterr(err, EEXIST, "start_seq %" PRId64 ": %s already "
		    "holds records (the next seq is %" PRId64 "); a log is "
		    "never renumbered, so start_seq applies only to a directory "
		    "without records", cfg->start_seq, r->dir, rec.next_seq);
		wal_seg_close(rec.tail);
		while ((seg = rec.empties) != NULL) {
			rec.empties = seg->next;
			wal_seg_close(seg);
		}
		goto fail;
	}
	r->next_id = rec.next_id;
	r->next_seq = rec.next_seq;
	r->synced_below = rec.synced.synced_below;
	r->synced_seq = rec.synced.last_seq;
	r->ckpt_id = rec.on_disk.synced_below;
	atomic_store(&r->rec_id, rec.rec_id);
	atomic_store(&r->written_seq, rec.next_seq - 1);
	r->active = rec.tail;
	if (rec.tail != NULL && (r->seg_flags & WAL_SEG_HUGE))
		(void)wal_seg_advise_huge(rec.tail);
	for (seg = rec.empties; seg != NULL; seg = seg->next) {
		if (r->seg_flags & WAL_SEG_HUGE)
			(void)wal_seg_advise_huge(seg);
		if (r->seg_flags & WAL_SEG_PREFAULT)
			wal_seg_prefault(seg);
		r->nstandby++;
	}
	r->standby = rec.empties;
	if (r->active == NULL && (rc = ring_switch(r, err)) != 0)
		goto fail;
	atomic_store(&r->active->written, r->active->used);
	/*
	 * Recovery fdatasynced every segment at or after the checkpoint (and
	 * the directory): every record it found is durable now.
	 */
	atomic_store(&r->durable_seq, rec.next_seq - 1);

	/*
	 * The thread starts with every signal blocked, so asynchronous ones
	 * (SIGTERM, SIGHUP) reach the caller's threads, where a daemon's
	 * event loop waits for them.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	rc = pthread_create(&r->bg, NULL, ring_bg_main, r);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc != 0) {
		rc = wal_seterrno(err, rc, "cannot start the segment thread");
		goto fail;
	}
	r->bg_running = 1;
	*out = r;
	return (0);

fail:
	wal_ring_close(r);
	return (rc);
}

/*
 * Stop the background thread, then the final sync and checkpoint. After a
 * sync failure nothing more is synced or claimed: wal_ring_sync() returns
 * the sticky error, and the checkpoint stays where it was. A failure of
 * the background thread's syncs or checkpoints since the caller last
 * looked, or of this final sync or checkpoint, is returned here: it is the
 * caller's last chance to hear of it.
 */
int
wal_ring_shutdown(struct wal_ring *r, struct wal_error *err)
{
	struct wal_checkpoint ck;
	struct wal_error local;
	int sealed_left;

	if (err == NULL)
		err = &local;
	if (r->shut)
		return (wal_ring_failed(r, err));
	r->shut = 1;
	wal_ring_flush(r);
	if (r->bg_running) {
		pthread_mutex_lock(&r->lock);
		r->stop = 1;
		pthread_cond_signal(&r->cond);
		pthread_mutex_unlock(&r->lock);
		pthread_join(r->bg, NULL);
		r->bg_running = 0;
	}
	if (r->active != NULL && wal_ring_sync(r, NULL, err) == 0 &&
	    ring_sync_sealed(r, err) == 0) {
		/*
		 * Every segment below the active one is synced in full; the
		 * next run continues the active one, so it stays outside.
		 */
		pthread_mutex_lock(&r->lock);
		sealed_left = r->sealed != NULL;
		pthread_mutex_unlock(&r->lock);
		ck.synced_below = r->active->id;
		ck.last_seq = r->active->first_seq >= 0 ?
		    r->active->first_seq - 1 : r->next_seq - 1;
		ck.next_id = r->next_id;
		if (!sealed_left && ck.synced_below > r->ckpt_id)
			ring_write_checkpoint(r, &ck);
	}
	/* A failure of the checkpoint's syncs is sticky like any other. */
	return (wal_ring_failed(r, err));
}

/* Shut down (unless done) and tear down. */
void
wal_ring_close(struct wal_ring *r)
{
	if (r == NULL)
		return;
	(void)wal_ring_shutdown(r, NULL);
	ring_free_list(r->sealed);
	ring_free_list(r->standby);
	wal_seg_close(r->active);
	if (r->dirfd != -1)
		close(r->dirfd);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->create_lock);
	pthread_mutex_destroy(&r->sync_lock);
	free(r->dir);
	free(r);
}

/* Largest payload a single append can take. */
uint32_t
wal_ring_max_record(const struct wal_ring *r)
{
	uint64_t room = r->segment_size - WAL_FILE_HEADER_SIZE -
	    WAL_RECORD_OVERHEAD;

	return (room < WAL_MAX_PAYLOAD ? (uint32_t)room : WAL_MAX_PAYLOAD);
}

/*
 * Where a record of size bytes goes: the active segment, or a new one when
 * it is full. The hot half of wal_ring_reserve() and wal_ring_append_run().
 */
static inline int
ring_reserve(struct wal_ring *r, uint32_t size, struct wal_error *err)
{
	struct wal_segment *a = r->active;

	if (__builtin_expect(a->used + wal_record_span(size) > a->size, 0)) {
		if (size > wal_ring_max_record(r))
			return (wal_seterr(err, EMSGSIZE, "record of %" PRIu32
			    " bytes exceeds the largest record this log takes "
			    "(%" PRIu32 " bytes with %" PRIu64 "-byte segments)",
			    size, wal_ring_max_record(r), r->segment_size));
		return (ring_switch(r, err));
	}
	return (0);
}

/*
 * Header of a record of size bytes at the active segment's end, its CRC
 * queued for the next flush; the payload is in place. Returns its seq.
 */
static inline int64_t
ring_commit(struct wal_ring *r, uint32_t size, int64_t timestamp_ns)
{
	struct wal_segment *a = r->active;
	uint8_t *p = a->base + a->used;
	int64_t seq = r->next_seq;

	wal_record_encode_header(p, seq, timestamp_ns, size);
	r->crc_rec[r->ncrc] = p;
	r->crc_size[r->ncrc] = size;
	a->used += wal_record_span(size);
	if (a->first_seq < 0) {
		a->first_seq = seq;
		/* Retention keeps the newest segment holding a record. */
		atomic_store_explicit(&r->rec_id, a->id, memory_order_relaxed);
	}
	a->last_seq = seq;
	r->next_seq = seq + 1;
	if (++r->ncrc == WAL_RING_CRC_BATCH)
		wal_ring_flush(r);
	return (seq);
}

/* Reserve room for a record; rotates when the active segment is full. */
int
wal_ring_reserve(struct wal_ring *r, uint32_t size, uint8_t **payload,
    struct wal_error *err)
{
	int rc;

	if ((rc = ring_reserve(r, size, err)) != 0)
		return (rc);
	r->pending = r->active->base + r->active->used;
	r->pending_size = size;
	*payload = r->pending + WAL_RECORD_HEADER_SIZE;
	return (0);
}

/* Write the header and CRC of the reserved record and publish it. */
int64_t
wal_ring_commit(struct wal_ring *r, int64_t timestamp_ns)
{
	int64_t seq = wal_ring_commit_deferred(r, timestamp_ns);

	wal_ring_flush(r);
	return (seq);
}

/* Write the header of the reserved record; its CRC waits for a flush. */
int64_t
wal_ring_commit_deferred(struct wal_ring *r, int64_t timestamp_ns)
{
	uint32_t size = r->pending_size;

	if (timestamp_ns < 0)
		timestamp_ns = wal_now_ns();
	r->pending = NULL;
	return (ring_commit(r, size, timestamp_ns));
}

/*
 * A run of records, each copied once from recs[] into the segment: the
 * reserve, copy and commit of each without a call between them (the shared
 * memory drainer's loop, 38 M records/s, spends a third of its time
 * outside the CRC and the copy).
 */
unsigned
wal_ring_append_run(struct wal_ring *r, const struct iovec *recs, unsigned n,
    int64_t timestamp_ns, wal_ring_each_fn *each, void *arg,
    struct wal_error *err)
{
	struct wal_segment *a;
	uint32_t size;
	unsigned i;

	if (timestamp_ns < 0)
		timestamp_ns = wal_now_ns();
	for (i = 0; i < n; i++) {
		if (recs[i].iov_len > WAL_MAX_PAYLOAD) {
			wal_seterr(err, EMSGSIZE, "record of %zu bytes exceeds "
			    "the 64 MiB limit", recs[i].iov_len);
			wal_ring_flush(r);
			break;
		}
		size = (uint32_t)recs[i].iov_len;
		if (ring_reserve(r, size, err) != 0) {
			wal_ring_flush(r);
			break;
		}
		a = r->active;
		memcpy(a->base + a->used + WAL_RECORD_HEADER_SIZE,
		    recs[i].iov_base, size);
		if (each != NULL)	/* before a flush can publish it */
			each(arg, i, r->next_seq);
		(void)ring_commit(r, size, timestamp_ns);
	}
	return (i);
}

/*
 * Give up a reservation: zero what the caller may have written into it, so
 * that no stale bytes are left after the segment's last record (recovery
 * would read them as a torn record and end the log there).
 */
void
wal_ring_abandon(struct wal_ring *r)
{
	if (r->pending == NULL)
		return;
	memset(r->pending, 0, wal_record_span(r->pending_size));
	r->pending = NULL;
}

/* CRCs of the deferred records, then publish them as written. */
void
wal_ring_flush(struct wal_ring *r)
{
	uint32_t crc[WAL_RING_CRC_BATCH];
	unsigned i;

	if (r->ncrc == 0)
		return;
	for (i = 0; i < r->ncrc; i++)
		crc[i] = wal_crc32(0, r->crc_rec[i], WAL_RECORD_HEADER_SIZE +
		    (size_t)r->crc_size[i]);
	/*
	 * Header and payload are in place before the CRC: a reader that
	 * finds a matching CRC sees the whole record (pairs with the
	 * reader's check of the CRC over the bytes it reads).
	 */
	atomic_thread_fence(memory_order_release);
	for (i = 0; i < r->ncrc; i++)
		wal_le32_store(r->crc_rec[i] + WAL_RECORD_HEADER_SIZE +
		    r->crc_size[i], crc[i]);
	r->ncrc = 0;
	/* Both pair with the acquire loads in wal_ring_sync(). */
	atomic_store_explicit(&r->active->written, r->active->used,
	    memory_order_release);
	atomic_store_explicit(&r->written_seq, r->next_seq - 1,
	    memory_order_release);
}

/* Append one record. */
int
wal_ring_append(struct wal_ring *r, const void *payload, uint32_t size,
    int64_t timestamp_ns, int64_t *seq, struct wal_error *err)
{
	uint8_t *dst = NULL;
	int64_t s;
	int rc;

	if ((rc = wal_ring_reserve(r, size, &dst, err)) != 0)
		return (rc);
	memcpy(dst, payload, size);
	s = wal_ring_commit(r, timestamp_ns);
	if (seq != NULL)
		*seq = s;
	return (0);
}

/* Append one record gathered from an iovec. */
int
wal_ring_appendv(struct wal_ring *r, const struct iovec *iov, int iovcnt,
    int64_t timestamp_ns, int64_t *seq, struct wal_error *err)
{
	uint64_t total = 0;
	uint8_t *dst = NULL;
	int64_t s;
	int i, rc;

	for (i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total > WAL_MAX_PAYLOAD)
		return (wal_seterr(err, EMSGSIZE, "record of %" PRIu64 " bytes "
		    "exceeds the 64 MiB limit", total));
	if ((rc = wal_ring_reserve(r, (uint32_t)total, &dst, err)) != 0)
		return (rc);
	for (i = 0; i < iovcnt; i++) {
		memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
	s = wal_ring_commit(r, timestamp_ns);
	if (seq != NULL)
		*seq = s;
	return (0);
}

/* Explicit rotation. */
int
wal_ring_rotate(struct wal_ring *r, struct wal_error *err)
{
	if (r->active->used <= WAL_FILE_HEADER_SIZE)
		return (0);
	return (ring_switch(r, err));
}

/*
 * Sync and close the sealed segments present now. The caller holds
 * sync_lock. Their records all precede the active segment's, so on success
 * *upto gets the last one's last seq (unchanged when there were none).
 * On a failure the segments stay on the list; the caller makes it sticky.
 */
static int
ring_sync_sealed_locked(struct wal_ring *r, int64_t *upto,
    struct wal_error *err)
{
	struct wal_segment *batch, *last, *seg;

	pthread_mutex_lock(&r->lock);
	batch = r->sealed;
	for (last = batch; last != NULL && last->next != NULL;)
		last = last->next;
	pthread_mutex_unlock(&r->lock);
	if (batch == NULL)
		return (0);
	/*
	 * The sealed list only grows at its tail while we work, and only a
	 * holder of sync_lock removes from it, so [batch..last] is stable.
	 */
	for (seg = batch;; seg = seg->next) {
		if (fdatasync(seg->fd) == -1)
			return (wal_seterrno(err, errno, "cannot sync segment "
			    "%" PRIu64 " in %s", seg->id, r->dir));
		if (seg == last)
			break;
	}
	*upto = last->last_seq;
	pthread_mutex_lock(&r->lock);
	r->sealed = last->next;
	last->next = NULL;
	for (seg = batch; seg != NULL; seg = seg->next)
		r->nsealed--;
	/*
	 * Every segment below last is synced now (earlier ones left the list
	 * only through a sync like this one): the background thread records
	 * it in the checkpoint.
	 */
	r->synced_below = last->id + 1;
	if (last->last_seq >= 0)
		r->synced_seq = last->last_seq;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	ring_free_list(batch);
	return (0);
}

/*
 * Publish a new durable seq if it is ahead, after syncing the companion
 * file (the producer table), whose failure fails the sync like a
 * segment's. The caller holds sync_lock.
 */
static int
ring_set_durable(struct wal_ring *r, int64_t seq, struct wal_error *err)
{
	if (atomic_load_explicit(&r->fail_code, memory_order_relaxed) != 0)
		return (0);
	if (seq <= atomic_load_explicit(&r->durable_seq, memory_order_relaxed))
		return (0);
	if (r->companion != NULL && r->companion(r->companion_arg, seq,
	    err) != 0)
		return (ring_fail(r, err));
	/* Pairs with acquire loads in wal_ring_durable_seq(). */
	atomic_store_explicit(&r->durable_seq, seq, memory_order_release);
	return (0);
}

/* Sync fn(arg, covered) with every sync, before durable_seq moves. */
void
wal_ring_set_companion(struct wal_ring *r, int (*fn)(void *, int64_t,
    struct wal_error *), void *arg)
{
	pthread_mutex_lock(&r->sync_lock);
	r->companion = fn;
	r->companion_arg = arg;
	pthread_mutex_unlock(&r->sync_lock);
}

/*
 * Make a sync failure sticky; the caller holds sync_lock, so no sync can
 * claim anything between the failure and its publication. Leaves the
 * marker walmmapd.sync-failed in the directory (best effort; a failure to
 * is added to the message), so that the next start writes everything
 * after the checkpoint again. Returns the first failure's -errno.
 */
static int
ring_fail(struct wal_ring *r, const struct wal_error *why)
{
	struct wal_error e2;
	size_t len;

	if (atomic_load_explicit(&r->fail_code, memory_order_relaxed) == 0) {
		r->fail_err = *why;
		if (r->fail_err.code <= 0)
			r->fail_err.code = EIO;
		if (wal_sync_failed_mark(r->dirfd, r->dir, why->msg, &e2) !=
		    0) {
			len = strlen(r->fail_err.msg);
			snprintf(r->fail_err.msg + len, sizeof r->fail_err.msg
			    - len, "; also %s", e2.msg);
		}
		/* Pairs with the acquire load in wal_ring_failed(). */
		atomic_store_explicit(&r->fail_code, r->fail_err.code,
		    memory_order_release);
	}
	return (-r->fail_err.code);
}

/* The sticky failure, if any: 0, or its -errno and message. */
int
wal_ring_failed(const struct wal_ring *r, struct wal_error *err)
{
	int code;

	/* Pairs with the release store in ring_fail(). */
	code = atomic_load_explicit(&r->fail_code, memory_order_acquire);
	if (code == 0)
		return (0);
	if (err != NULL)
		*err = r->fail_err;
	return (-code);
}

/*
 * Sync and close the sealed segments (background thread, or a writer
 * bounding how many there are). Fails at once after an earlier failure.
 */
static int
ring_sync_sealed(struct wal_ring *r, struct wal_error *err)
{
	int64_t upto = -1;
	int rc;

	pthread_mutex_lock(&r->sync_lock);
	if ((rc = wal_ring_failed(r, err)) == 0) {
		if ((rc = ring_sync_sealed_locked(r, &upto, err)) == 0)
			rc = ring_set_durable(r, upto, err);
		else
			rc = ring_fail(r, err);
	}
	pthread_mutex_unlock(&r->sync_lock);
	return (rc);
}

int
wal_ring_sync(struct wal_ring *r, int64_t *durable, struct wal_error *err)
{
	return (ring_sync(r, durable, err, 0));
}

int
wal_ring_sync_paced(struct wal_ring *r, int64_t *durable,
    struct wal_error *err)
{
	return (ring_sync(r, durable, err, r->writeback_step > 0));
}

/*
 * Group commit: sync every segment that may hold unsynced records; paced:
 * start the active segment's write-back in steps first (ring_writeback).
 */
static int
ring_sync(struct wal_ring *r, int64_t *durable, struct wal_error *err,
    int paced)
{
	struct wal_segment *active;
	struct wal_error local;
	int64_t target, upto;
	uint64_t end;
	uint8_t *base;
	int rc = 0, saved;

	if (err == NULL)
		err = &local;
	pthread_mutex_lock(&r->sync_lock);
	/* After a failure nothing is synced or claimed again. */
	if ((rc = wal_ring_failed(r, err)) != 0)
		goto out;
	/* Pairs with the release store in wal_ring_flush(). */
	target = atomic_load_explicit(&r->written_seq, memory_order_acquire);
	if (target <= atomic_load_explicit(&r->durable_seq,
	    memory_order_relaxed))
		goto out;
	/*
	 * Every record <= target is in the active segment or a sealed one.
	 * Sync the active one first: a rotation after we read it puts it on
	 * the sealed list, which ring_sync_sealed_locked() below syncs whole
	 * and closes. Meanwhile the background thread may want to unmap it;
	 * sync_pin keeps it mapped while we use the mapping.
	 *
	 * Only its written part is synced (msync MS_SYNC of a range is a
	 * range fdatasync on Linux): a whole-file fdatasync would also write
	 * back the pre-faulted zero pages ahead of the writer, and
	 * write-protect them, so that every later first store to one of them
	 * faults again (page_mkwrite) - 30% of the daemon's time at 20 M
	 * records/s before this.
	 */
	pthread_mutex_lock(&r->lock);
	active = r->active;
	base = active->base;
	r->sync_pin = active;
	pthread_mutex_unlock(&r->lock);
	/* Covers every record <= target in this segment (loaded after). */
	end = atomic_load_explicit(&active->written, memory_order_acquire);
	if (paced)
		ring_writeback(r, active, end);
	rc = msync(base, end, MS_SYNC);
	saved = errno;
	pthread_mutex_lock(&r->lock);
	r->sync_pin = NULL;
	pthread_cond_signal(&r->cond);	/* it may be waiting to unmap it */
	pthread_mutex_unlock(&r->lock);
	if (rc == -1) {
		wal_seterrno(err, saved, "cannot sync segment %" PRIu64 " (the "
		    "active one) in %s", active->id, r->dir);
		rc = ring_fail(r, err);
		goto out;
	}
	if ((rc = ring_sync_sealed_locked(r, &upto, err)) != 0) {
		rc = ring_fail(r, err);
		goto out;
	}
	atomic_fetch_add_explicit(&r->syncs, 1, memory_order_relaxed);
	rc = ring_set_durable(r, target, err);
out:
	if (rc != 0)
		(void)wal_ring_failed(r, err);	/* the first failure's text */
	if (durable != NULL)
		*durable = atomic_load_explicit(&r->durable_seq,
		    memory_order_acquire);
	pthread_mutex_unlock(&r->sync_lock);
	return (rc);
}

int64_t
wal_ring_next_seq(const struct wal_ring *r)
{
	return (r->next_seq);
}

int64_t
wal_ring_written_seq(const struct wal_ring *r)
{
	return (atomic_load_explicit(&r->written_seq, memory_order_acquire));
}

int64_t
wal_ring_durable_seq(const struct wal_ring *r)
{
	return (atomic_load_explicit(&r->durable_seq, memory_order_acquire));
}

uint64_t
wal_ring_sync_count(const struct wal_ring *r)
{
	return (atomic_load_explicit(&r->syncs, memory_order_relaxed));
}

/* Snapshot the counters. */
void
wal_ring_stats(struct wal_ring *r, struct wal_ring_stats *st)
{
	uint64_t rec;

	memset(st, 0, sizeof *st);
	st->written_seq = wal_ring_written_seq(r);
	st->next_seq = st->written_seq + 1;
	st->durable_seq = wal_ring_durable_seq(r);
	st->segment_size = r->segment_size;
	st->rotations = atomic_load(&r->rotations);
	st->rotations_waited = atomic_load(&r->rotations_waited);
	st->segments_created = atomic_load(&r->segments_created);
	st->create_failures = atomic_load(&r->create_failures);
	st->syncs = atomic_load(&r->syncs);
	pthread_mutex_lock(&r->lock);
	st->active_id = r->active->id;
	st->active_used = r->active->used;
	st->standby = r->nstandby;
	st->sealed_unsynced = r->nsealed;
	st->synced_below = r->synced_below;
	st->checkpoint_id = r->ckpt_id;
	pthread_mutex_unlock(&r->lock);
	/*
	 * Retention may remove a segment only if it is synced for good (below
	 * the checkpoint on disk: recovery never reads it again) and a later
	 * segment holds a record (so the log never loses its newest records,
	 * and a restart never begins again at seq 0).
	 */
	st->retain_below = st->checkpoint_id;
	rec = atomic_load_explicit(&r->rec_id, memory_order_relaxed);
	if (rec < st->retain_below)
		st->retain_below = rec;
	st->failed = -wal_ring_failed(r, NULL);
}

/*
 * Make a standby segment active (creating one inline if none is ready) and
 * seal the old one. Writer thread.
 */
static int
ring_switch(struct wal_ring *r, struct wal_error *err)
{
	struct wal_segment *next, *old;
	struct wal_error local;
	int full, rc;

	if (err == NULL)
		err = &local;
	wal_ring_flush(r);	/* the old segment is sealed below */
	/*
	 * At most WAL_MAX_SEALED_UNSYNCED sealed segments await a sync: at
	 * the bound the writer syncs them itself before it seals another.
	 * Waiting for the background thread instead would tie the append
	 * path to a thread that may be busy creating a segment (exactly when
	 * rotations come fast) or waiting out a full disk; syncing here costs
	 * the same fdatasyncs, and only when the bound is reached.
	 */
	if (r->active != NULL) {
		pthread_mutex_lock(&r->lock);
		full = r->nsealed >= WAL_MAX_SEALED_UNSYNCED;
		pthread_mutex_unlock(&r->lock);
		if (full) {
			atomic_store(&r->writer_waits, 1);
			rc = ring_sync_sealed(r, err);
			atomic_store(&r->writer_waits, 0);
			if (rc != 0)
				return (rc);
		}
	}
	next = ring_pop_standby(r);
	if (next == NULL) {
		/*
		 * Wait for a creation the background thread may have under
		 * way (it pushes while holding create_lock), so segments are
		 * always used in id order; create inline if there is none.
		 */
		pthread_mutex_lock(&r->create_lock);
		next = ring_pop_standby(r);
		if (next == NULL) {
			if (r->active != NULL)
				atomic_fetch_add(&r->rotations_waited, 1);
			rc = ring_create_segment(r, &next, 0, err);
			if (rc != 0) {
				pthread_mutex_unlock(&r->create_lock);
				return (rc);
			}
		}
		pthread_mutex_unlock(&r->create_lock);
	}
	next->next = NULL;
	atomic_store_explicit(&next->written, next->used,
	    memory_order_relaxed);	/* published by the lock below */

	old = r->active;
	pthread_mutex_lock(&r->lock);
	r->active = next;
	if (old != NULL) {
		/* Append to the sealed list; the bg thread unmaps it. */
		ring_list_append(&r->sealed, old);
		r->nsealed++;
		atomic_fetch_add(&r->rotations, 1);
	}
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	return (0);
}

/* Take the first standby segment, NULL if none. */
static struct wal_segment *
ring_pop_standby(struct wal_ring *r)
{
	struct wal_segment *seg;

	pthread_mutex_lock(&r->lock);
	seg = r->standby;
	if (seg != NULL) {
		r->standby = seg->next;
		r->nstandby--;
	}
	pthread_mutex_unlock(&r->lock);
	return (seg);
}

/* Append a segment at the tail of a list. */
static void
ring_list_append(struct wal_segment **head, struct wal_segment *seg)
{
	while (*head != NULL)
		head = &(*head)->next;
	seg->next = NULL;
	*head = seg;
}

/* Create the next segment. The caller holds create_lock. */
static int
ring_create_segment(struct wal_ring *r, struct wal_segment **out, int bg,
    struct wal_error *err)
{
	int stepped, named, rc;

	/* prefault_step: ring_prefault() below, not wal_seg_create(). */
	stepped = r->prefault_step > 0 && (r->seg_flags & WAL_SEG_PREFAULT);
	rc = wal_seg_create(r->dirfd, r->dir, r->next_id, r->segment_size,
	    stepped ? r->seg_flags & ~WAL_SEG_PREFAULT : r->seg_flags, out,
	    &named, err);
	/* An id whose name appeared is never used again, even on failure. */
	if (rc == 0 || named)
		r->next_id++;
	if (rc == 0)
		atomic_fetch_add(&r->segments_created, 1);
	else
		atomic_fetch_add(&r->create_failures, 1);
	if (rc == 0 && stepped)
		ring_prefault(r, *out, bg);
	return (rc);
}

/*
 * prefault_step: pre-fault a new segment in steps, for a writer that
 * shares its CPU with this thread. A fault on a new segment fills up to
 * the device's read_ahead_kb of pages around it at once (8 MiB, 17 ms, on
 * the VM this was measured on), so readahead goes off first. Then the
 * background thread sleeps RING_PAUSE_NS after each step while a
 * standby segment is ready: the writer waits for one step, not for a whole
 * segment. A yield would not do: the scheduler hands the CPU straight back
 * to a thread that has had less than its share. With no standby ready the
 * writer is about to need this segment, so it goes on without pausing; a
 * writer that creates one itself never pauses. The pauses of one segment
 * add up to at most RING_PAUSE_MAX_NS: meanwhile this thread
 * unmaps, syncs and checkpoints nothing, and 1 GiB in 4 KiB steps would
 * otherwise hold those jobs for 13 s (at WAL_MAX_SEALED_UNSYNCED sealed
 * segments the writer syncs them itself). Stopping the pauses whenever a
 * sealed segment waits would end them at every rotation, when this
 * thread creates the next standby before it syncs the sealed one.
 * A close stops it between steps (16 GiB in 4 KiB steps would otherwise
 * hold the close for minutes). The price is throughput, probably because
 * pages faulted one by one make small folios where readahead makes large
 * ones (BENCHMARKS.md).
 */
static void
ring_prefault(struct wal_ring *r, struct wal_segment *seg, int bg)
{
	uint64_t off, paused = 0;

	wal_seg_advise_random(seg);
	for (off = 0; off < seg->size; off += r->prefault_step) {
		wal_seg_prefault_range(seg, off, r->prefault_step);
		/* Closing: the rest faults in when written, if ever. */
		if (bg && ring_pause(r, &paused) != 0)
			break;
	}
}

/*
 * Between two paced steps: sleep RING_PAUSE_NS if a standby segment is
 * ready and the pauses so far (*paused) leave room under
 * RING_PAUSE_MAX_NS. -1 when the ring is closing: no more pauses.
 * *paused counts the time the pauses really took, not RING_PAUSE_NS a
 * pause: timer slack alone makes a 50 us nanosleep() last about 115 us
 * here, and a busy CPU longer still, so counting the asked-for time let
 * 4000 pauses run 460 ms or more instead of the 200 ms documented.
 */
static int
ring_pause(struct wal_ring *r, uint64_t *paused)
{
	static const struct timespec pause = { 0, RING_PAUSE_NS };
	struct timespec t0, t1;
	int spare, stop;

	pthread_mutex_lock(&r->lock);
	spare = r->nstandby > 0;
	stop = r->stop;
	pthread_mutex_unlock(&r->lock);
	if (stop)
		return (-1);
	if (spare && *paused < RING_PAUSE_MAX_NS) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		(void)nanosleep(&pause, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		*paused += (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000 +
		    (t1.tv_nsec - t0.tv_nsec));
	}
	return (0);
}

/*
 * writeback_step: start the write-back of the active segment's records a
 * step at a time before a sync waits for them (sync thread, under
 * sync_lock, which keeps active->fd open). One msync of a second's worth
 * of records at 1 M/s ran 4 ms on the CPU (folio_mkclean, bios), during
 * which a writer sharing that CPU waited; sync_file_range() over a step
 * and a pause between steps hand the CPU back. Only complete pages below
 * end: the writer still stores into the last one. The msync that follows
 * is what makes the records durable: it writes whatever is still dirty,
 * waits for all of it and reports any write-back error (the errors of
 * these calls, which only start I/O, are recorded for that file and seen
 * by the msync), so nothing here decides what is durable.
 */
static void
ring_writeback(struct wal_ring *r, struct wal_segment *active, uint64_t end)
{
	const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t off, len, paused = 0;

	end -= end % page;
	off = r->wb_id == active->id ? r->wb_off : 0;
	for (; off < end; off += len) {
		len = end - off < r->writeback_step ? end - off :
		    r->writeback_step;
		(void)sync_file_range(active->fd, (off_t)off, (off_t)len,
		    SYNC_FILE_RANGE_WRITE);
		/* Closing, or the writer waits for this sync: no pauses. */
		if (off + len < end && (atomic_load(&r->writer_waits) ||
		    ring_pause(r, &paused) != 0))
			paused = RING_PAUSE_MAX_NS;
	}
	r->wb_id = active->id;
	r->wb_off = end;
}

/*
 * Unmap a sealed segment and start its write-back, so that its sync is
 * short (background thread; fd is a dup, -1 if none could be made). The
 * unmap walks every page table entry and marks dirty pages, the write-back
 * start builds the bios: 4-7 ms at once for a 64 MiB segment, on the
 * writer's CPU if it shares one. With writeback_step both go a step at a
 * time with ring_pause() between them. The sync of the segment
 * (ring_sync_sealed) still writes what is dirty and reports any error.
 */
static void
ring_release_sealed(struct wal_ring *r, uint8_t *base, uint64_t size, int fd)
{
	uint64_t off, len, paused = 0;
	int closing = 0;

	if (r->writeback_step == 0) {
		munmap(base, size);
		if (fd != -1)
			(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		return;
	}
	for (off = 0; off < size; off += len) {
		len = size - off < r->writeback_step ? size - off :
		    r->writeback_step;
		munmap(base + off, len);
		if (fd != -1)
			(void)sync_file_range(fd, (off_t)off, (off_t)len,
			    SYNC_FILE_RANGE_WRITE);
		if (!closing && off + len < size)
			closing = ring_pause(r, &paused) != 0;
	}
}

/*
 * Write the checkpoint (background thread, or close once it has stopped)
 * and publish it for retention. A failed sync of it is sticky like any
 * other; a failure to write it (a full disk) is retried a second later.
 */
static void
ring_write_checkpoint(struct wal_ring *r, const struct wal_checkpoint *ck)
{
	struct wal_error err;
	struct timespec now;
	int rc, sync_failed;

	rc = wal_checkpoint_write(r->dirfd, r->dir, ck, &sync_failed, &err);
	if (rc != 0 && sync_failed) {
		pthread_mutex_lock(&r->sync_lock);
		(void)ring_fail(r, &err);
		pthread_mutex_unlock(&r->sync_lock);
	}
	pthread_mutex_lock(&r->lock);
	if (rc == 0) {
		if (ck->synced_below > r->ckpt_id)
			r->ckpt_id = ck->synced_below;
		r->ckpt_retry = 0;
	} else if (!sync_failed) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		r->ckpt_retry = now.tv_sec + 1;
	}
	pthread_mutex_unlock(&r->lock);
}

/*
 * Background thread: unmap sealed segments and start their write-back,
 * keep ring_segments - 1 standby segments ready, sync sealed segments and
 * record them in the checkpoint. After a sync failure it only unmaps and
 * creates: nothing is synced or recorded again.
 */
static void *
ring_bg_main(void *arg)
{
	struct wal_ring *r = arg;
	struct wal_segment *seg;
	struct wal_checkpoint ck;
	struct wal_error err;
	struct timespec deadline, now;
	uint8_t *base;
	uint64_t size;
	time_t wake;
	int fd, failed, rc;

	(void)pthread_setname_np(pthread_self(), "wal-segments");
	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		failed = wal_ring_failed(r, NULL) != 0;
		/* 1. Unmap a sealed segment still mapped. */
		for (seg = r->sealed; seg != NULL; seg = seg->next)
			if (seg->base != NULL && seg != r->sync_pin)
				break;
		if (seg != NULL) {
			base = seg->base;
			size = seg->size;
			/* A sync may close seg->fd once we unlock: use a dup. */
			fd = fcntl(seg->fd, F_DUPFD_CLOEXEC, 0);
			seg->base = NULL;
			pthread_mutex_unlock(&r->lock);
			ring_release_sealed(r, base, size, fd);
			if (fd != -1)
				close(fd);
			pthread_mutex_lock(&r->lock);
			continue;
		}
		/* 2. Keep standby segments ready. */
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (r->nstandby + 1 < r->ring_segments &&
		    now.tv_sec >= r->create_retry) {
			/* Lock order: create_lock, then lock. */
			pthread_mutex_unlock(&r->lock);
			pthread_mutex_lock(&r->create_lock);
			rc = ring_create_segment(r, &seg, 1, NULL);
			pthread_mutex_lock(&r->lock);
			if (rc == 0) {
				ring_list_append(&r->standby, seg);
				r->nstandby++;
				r->create_retry = 0;
			} else {
				/* Disk full or similar: retry in a second. */
				clock_gettime(CLOCK_MONOTONIC, &now);
				r->create_retry = now.tv_sec + 1;
			}
			pthread_mutex_unlock(&r->create_lock);
			continue;
		}
		/*
		 * 3. Sync sealed segments as soon as they are unmapped, so the
		 * checkpoint follows the writer and their descriptors close.
		 * Never the active one, whose pre-faulted pages a write-back
		 * would make fault again on the append path.
		 */
		if (r->nsealed > 0 && !failed) {
			pthread_mutex_unlock(&r->lock);
			(void)ring_sync_sealed(r, &err);
			pthread_mutex_lock(&r->lock);
			continue;
		}
		/* 4. Record what is synced in the checkpoint. */
		if (r->synced_below > r->ckpt_id && !failed &&
		    now.tv_sec >= r->ckpt_retry) {
			ck.synced_below = r->synced_below;
			ck.last_seq = r->synced_seq;
			pthread_mutex_unlock(&r->lock);
			pthread_mutex_lock(&r->create_lock);
			ck.next_id = r->next_id;
			pthread_mutex_unlock(&r->create_lock);
			ring_write_checkpoint(r, &ck);
			pthread_mutex_lock(&r->lock);
			continue;
		}
		wake = 0;
		if (r->create_retry != 0 && r->nstandby + 1 < r->ring_segments)
			wake = r->create_retry;
		if (r->ckpt_retry != 0 && r->synced_below > r->ckpt_id &&
		    !failed && (wake == 0 || r->ckpt_retry < wake))
			wake = r->ckpt_retry;
		if (wake != 0) {
			/* The condvar uses CLOCK_MONOTONIC (see open). */
			deadline.tv_sec = wake;
			deadline.tv_nsec = 0;
			pthread_cond_timedwait(&r->cond, &r->lock, &deadline);
			continue;
		}
		pthread_cond_wait(&r->cond, &r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return (NULL);
}

/* Close every segment of a list. */
static void
ring_free_list(struct wal_segment *seg)
{
	struct wal_segment *next;

	for (; seg != NULL; seg = next) {
		next = seg->next;
		wal_seg_close(seg);
	}
}
