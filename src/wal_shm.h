/*
 * walmmapd - the shared-memory ring between one producer and the daemon.
 *
 * The daemon creates the ring (a sealed memfd) for one connection on
 * request and passes it with the producer's end of a doorbell socket pair;
 * man/walmmap-protocol.7 ("SHARED-MEMORY RING") describes it for people,
 * this file for code.
 *
 * Layout (host byte order; the ring never leaves the host):
 *
 *	[0, WAL_SHM_HEADER_SIZE)	struct wal_shm_header
 *	[WAL_SHM_HEADER_SIZE, +size)	data: slots, each WAL_SHM_ALIGN aligned
 *
 * A slot is a struct wal_shm_slot followed by len payload bytes, padded to
 * WAL_SHM_ALIGN. A slot whose len is WAL_SHM_PAD fills the rest of the data
 * area: the next slot starts at offset 0. A slot never wraps. Positions
 * (tail, head) count bytes since the ring was made; a position's offset in
 * the data area is position & (size - 1).
 *
 * Producer: writes slots at tail, then publishes the new tail and reads
 * daemon_sleeping; if it is 1 it rings the daemon's doorbell. It never
 * writes below head + size. With WAL_SHM_FEAT_ASYM in features the store
 * of tail is a release store with no fence after it (the daemon pays for
 * the handshake, see Sleeping); without it, a sequentially consistent one.
 *
 * Daemon: loads tail once per pass, checks it, copies each record once
 * into the log (the CRC is computed over its own copy), then publishes
 * head, written and written_seq with release stores. It never reads back
 * anything it wrote: the producer may scribble over the whole mapping.
 *
 * Sleeping: a side that found nothing to do sets its flag (sequentially
 * consistent), looks once more, and only then waits on its doorbell. The
 * other side reads the flag after publishing and rings when it is set.
 * Between each side's store and its load of the other side's word stands a
 * sequentially consistent fence (or both are seq_cst operations), so on
 * any CPU, arm64 included, at least one of them sees the other's store:
 * either the sleeper sees the progress, or the publisher sees the flag and
 * rings. The two pairs:
 *
 *  - the producer stores tail, then loads daemon_sleeping (both seq_cst);
 *    the daemon stores daemon_sleeping, fence, then loads tail. With
 *    WAL_SHM_FEAT_ASYM the producer's fence is gone from the per-append
 *    path (it cost a wait for the line the daemon reads: 130-160 ns when
 *    the two CPUs sit on different dies): the producer stores tail
 *    (release), a compiler barrier, loads daemon_sleeping; the daemon
 *    stores daemon_sleeping, then membarrier(2) MEMBARRIER_CMD_GLOBAL_
 *    EXPEDITED (a full barrier on every CPU running a process registered
 *    with MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, which libwalmmap does
 *    when it maps a ring, keeping its seq_cst store when that fails), then
 *    loads tail: the asymmetric fence userspace
 *    RCU uses. A daemon that cannot call it (an old kernel, a seccomp
 *    filter) does not set WAL_SHM_FEAT_ASYM. Where a call fails after
 *    all, or the producer did not register,
 *    the store of tail may be missed for as long as it sits in the
 *    producer's store buffer; so the daemon looks at every tail again
 *    WAL_SHM_RECHECK_US after it fell asleep, and every
 *    WAL_SHM_RECHECK_IDLE_MS while it sleeps. A published record thus
 *    waits for a sleeping daemon at most WAL_SHM_RECHECK_IDLE_MS, even
 *    from a producer that never rings;
 *  - the daemon stores head, written, durable or failed, fence, then loads
 *    producer_waiting; the producer stores producer_waiting, fence, then
 *    loads head, written, durable and failed.
 *
 * Doorbells: the daemon keeps one end of an AF_UNIX SOCK_SEQPACKET socket
 * pair and passes the other; a message either way is a ring. The daemon
 * reads and writes its own end with MSG_DONTWAIT only, so nothing the
 * producer does to its end (flags, a full buffer, closing it) can block
 * the daemon. A producer that breaks its doorbell harms only itself.
 *
 * Failure: when a sync fails the daemon stores failed = 1. durable never
 * advances again; the producer stops waiting for it and reads the reason
 * from its socket (a fatal ERROR, code SYNC, or the connection closing).
 */
#ifndef WAL_SHM_H
#define WAL_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define WAL_SHM_MAGIC		0x52534c57u	/* "WLSR" */
#define WAL_SHM_VERSION		1u
#define WAL_SHM_HEADER_SIZE	4096u
#define WAL_SHM_ALIGN		16u
#define WAL_SHM_PAD		0xffffffffu	/* slot len: skip to the end */
#define WAL_SHM_MIN_SIZE	(64u * 1024)
#define WAL_SHM_MAX_SIZE	(256u * 1024 * 1024)
#define WAL_SHM_DEFAULT_SIZE	(4u * 1024 * 1024)

/*
 * Header features (set by the daemon). WAL_SHM_FEAT_ASYM only when the
 * daemon can call membarrier(2) MEMBARRIER_CMD_GLOBAL_EXPEDITED: a daemon
 * that cannot fence for its producers lets them fence themselves.
 */
#define WAL_SHM_FEAT_ASYM	0x1u	/* tail needs no producer fence */

/* The sleeping daemon's re-checks of every tail (see Sleeping). */
#define WAL_SHM_RECHECK_US	1000	/* once, after falling asleep */
#define WAL_SHM_RECHECK_IDLE_MS	1000	/* then this often */

/* Slot flags. */
#define WAL_SHM_F_SEQ		0x1u	/* daemon stores the seq in the slot */
#define WAL_SHM_F_DURABLE	0x2u	/* producer waits for durability */
#define WAL_SHM_F_MASK		0x3u

struct wal_shm_slot {
	uint32_t	len;		/* payload bytes, or WAL_SHM_PAD */
	uint32_t	flags;		/* WAL_SHM_F_* */
	int64_t		seq;		/* written by the daemon (F_SEQ) */
};

struct wal_shm_header {
	/* Set by the daemon before the ring is passed; never changed. */
	uint32_t		magic;
	uint32_t		version;
	uint64_t		size;		/* data bytes, a power of two */
	uint32_t		header_size;
	uint32_t		max_record;	/* largest payload in a slot */
	uint32_t		features;	/* WAL_SHM_FEAT_* */
	uint32_t		pad0a;
	/*
	 * On a producer connection (PRODUCER before SHM_OPEN): the producer
	 * seq of the first record the ring will carry (the producer's
	 * next_pseq at SHM_OPEN); each record drained takes the producer's
	 * next seq. 0 on other connections (producer seqs start at 1).
	 */
	uint64_t		first_pseq;
	uint8_t			pad0[24];

	/* The producer's cache line. */
	_Atomic uint64_t	tail;		/* bytes published */
	_Atomic uint32_t	producer_waiting; /* asleep on its doorbell */
	uint8_t			pad1[52];

	/* The daemon's progress. */
	_Atomic uint64_t	head;		/* bytes consumed (free again) */
	_Atomic uint64_t	written;	/* records written */
	_Atomic uint64_t	durable;	/* records durable */
	_Atomic int64_t		written_seq;	/* seq of the last written, -1 */
	_Atomic int64_t		durable_seq;	/* log durable up to, -1 */
	_Atomic uint32_t	failed;		/* a sync failed: durable is final */
	uint8_t			pad2[20];

	/* The daemon's sleep flag, alone so polling it stays cheap. */
	_Atomic uint32_t	daemon_sleeping;
	uint8_t			pad3[60];
};

/* Bytes a record of len payload bytes takes in the ring. */
static inline uint64_t
wal_shm_slot_bytes(uint32_t len)
{
	return (sizeof(struct wal_shm_slot) +
	    (((uint64_t)len + WAL_SHM_ALIGN - 1) & ~(uint64_t)(WAL_SHM_ALIGN - 1)));
}

/* Largest payload a ring of size data bytes accepts (a quarter of it). */
static inline uint32_t
wal_shm_max_record(uint64_t size, uint32_t limit)
{
	uint64_t m = size / 4 - sizeof(struct wal_shm_slot);

	return (m < limit ? (uint32_t)m : limit);
}

/*
 * Data bytes of a ring asked for with size (0 is not special here): at
 * least WAL_SHM_MIN_SIZE, at most WAL_SHM_MAX_SIZE, a power of two.
 */
static inline uint64_t
wal_shm_ring_size(uint64_t size)
{
	if (size < WAL_SHM_MIN_SIZE)
		size = WAL_SHM_MIN_SIZE;
	if (size > WAL_SHM_MAX_SIZE)
		size = WAL_SHM_MAX_SIZE;
	while (size & (size - 1))
		size = (size | (size - 1)) + 1;
	return (size);
}

/* Lay out a fresh ring in base (header_size + size bytes, zeroed). */
void	wal_shm_format(void *base, uint64_t size, uint32_t max_record);

/*
 * The daemon's side. All fields are private copies; the shared header is
 * only written, except tail (loaded once per pass and checked).
 */
struct wal_shm_consumer {
	struct wal_shm_header	*hdr;
	const uint8_t		*data;
	uint64_t		 size;
	uint32_t		 max_record;
	uint64_t		 head;
	uint64_t		 tail;		/* as last loaded and checked */
	uint64_t		 written;
	int64_t			 written_seq;
};

/* A record found in the ring; payload points into shared memory. */
struct wal_shm_rec {
	const uint8_t	*payload;	/* copy it once, trust nothing */
	uint32_t	 len;
	uint32_t	 flags;
	uint64_t	 slot_pos;	/* position of its slot */
	uint64_t	 next;		/* position after it (and padding) */
};

void	wal_shm_consumer_init(struct wal_shm_consumer *, void *base,
	    uint64_t size, uint32_t max_record);

/*
 * Load the producer's tail and check it. Returns 1 when records may be
 * waiting, 0 when none, -1 when the ring is corrupt (why says how).
 */
int	wal_shm_load_tail(struct wal_shm_consumer *, char *why, size_t len);

/*
 * Up to max consecutive records from the head, below the loaded tail and
 * skipping padding, into recs[0 .. *found - 1]. Nothing is consumed
 * (padding before the first is): call wal_shm_consume_run() for those
 * written. A record's next is past any padding that follows it. Returns
 * 1 when max were found, 0 when the loaded tail came first, -1 when the
 * record after the found ones is corrupt (why says how).
 */
int	wal_shm_peek_run(struct wal_shm_consumer *, struct wal_shm_rec *recs,
	    unsigned max, unsigned *found, char *why, size_t len);

/* The first n records of a run were written with seqs from first_seq. */
void	wal_shm_consume_run(struct wal_shm_consumer *,
	    const struct wal_shm_rec *recs, unsigned n, int64_t first_seq);

/*
 * Publish head, written and written_seq. Returns 1 when the producer is
 * asleep and must be woken (its flag is cleared).
 */
int	wal_shm_publish(struct wal_shm_consumer *);

/* Publish durability (records durable, log durable seq); as above. */
int	wal_shm_publish_durable(struct wal_shm_consumer *, uint64_t durable,
	    int64_t durable_seq);

/*
 * A sync failed: durable will never advance again. Returns 1 when the
 * producer is asleep and must be woken (its flag is cleared).
 */
int	wal_shm_publish_failed(struct wal_shm_consumer *);

/*
 * About to sleep: set daemon_sleeping, then look at tail once more.
 * Returns 1 when asleep (nothing published), 0 when records arrived
 * meanwhile (the flag is cleared again). For a producer of a ring with
 * WAL_SHM_FEAT_ASYM the caller must issue wal_shm_barrier() between
 * wal_shm_sleep_mark() and wal_shm_sleep_check(), once for all rings.
 */
int	wal_shm_sleep(struct wal_shm_consumer *);
void	wal_shm_sleep_mark(struct wal_shm_consumer *);
int	wal_shm_sleep_check(struct wal_shm_consumer *);

/*
 * The daemon's side of the asymmetric fence: membarrier(2)
 * MEMBARRIER_CMD_GLOBAL_EXPEDITED when the kernel has it, else (and
 * always) a sequentially consistent fence. Returns 1 when membarrier
 * was used.
 */
int	wal_shm_barrier(void);

/* Does the kernel have MEMBARRIER_CMD_GLOBAL_EXPEDITED (cached)? */
int	wal_shm_membarrier_ok(void);

/* Woken (or draining anyway): the producer need not ring. */
void	wal_shm_awake(struct wal_shm_consumer *);

#endif /* WAL_SHM_H */
