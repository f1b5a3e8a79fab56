/*
 * walmmapd - the daemon's side of a shared-memory ring (see wal_shm.h).
 *
 * The producer's memory is hostile: every value read from it is read once
 * into a local, checked against the ring's bounds, and only then used.
 * Positions, counts and seqs the daemon owns live in struct
 * wal_shm_consumer and are only ever stored into the shared header.
 */
#include "config.h"

#include <sys/syscall.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <linux/membarrier.h>

#include "wal_shm.h"

_Static_assert(sizeof(struct wal_shm_slot) == WAL_SHM_ALIGN, "slot layout");
_Static_assert(sizeof(struct wal_shm_header) == 256, "header layout");
_Static_assert(offsetof(struct wal_shm_header, features) == 24, "features");
_Static_assert(offsetof(struct wal_shm_header, first_pseq) == 32,
    "first_pseq");
_Static_assert(offsetof(struct wal_shm_header, tail) == 64, "tail line");
_Static_assert(offsetof(struct wal_shm_header, head) == 128, "head line");
_Static_assert(offsetof(struct wal_shm_header, failed) == 168, "failed word");
_Static_assert(offsetof(struct wal_shm_header, daemon_sleeping) == 192,
    "sleep line");

static int	corrupt(char *why, size_t len, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));
static int	producer_wants_bell(struct wal_shm_header *);

void
wal_shm_format(void *base, uint64_t size, uint32_t max_record)
{
	struct wal_shm_header *h = base;

	memset(h, 0, sizeof *h);
	h->magic = WAL_SHM_MAGIC;
	h->version = WAL_SHM_VERSION;
	h->size = size;
	h->header_size = WAL_SHM_HEADER_SIZE;
	h->max_record = max_record;
	/*
	 * Our sleep handshake needs no fence from the producer when we can
	 * fence it ourselves (wal_shm_barrier); else it keeps its own.
	 */
	h->features = wal_shm_membarrier_ok() ? WAL_SHM_FEAT_ASYM : 0;
	atomic_init(&h->written_seq, -1);
	atomic_init(&h->durable_seq, -1);
	/* Nothing drains a new ring until its producer rings. */
	atomic_init(&h->daemon_sleeping, 1);
}

void
wal_shm_consumer_init(struct wal_shm_consumer *c, void *base, uint64_t size,
    uint32_t max_record)
{
	memset(c, 0, sizeof *c);
	c->hdr = base;
	c->data = (const uint8_t *)base + WAL_SHM_HEADER_SIZE;
	c->size = size;
	c->max_record = max_record;
	c->written_seq = -1;
}

int
wal_shm_load_tail(struct wal_shm_consumer *c, char *why, size_t len)
{
	/* Pairs with the producer's store of tail: its slots are visible. */
	uint64_t t = atomic_load_explicit(&c->hdr->tail, memory_order_acquire);

	if (t < c->head || t - c->head > c->size)
		return (corrupt(why, len, "tail %" PRIu64 " is outside the "
		    "ring (head %" PRIu64 ", size %" PRIu64 ")", t, c->head,
		    c->size));
	if (t % WAL_SHM_ALIGN != 0)
		return (corrupt(why, len, "tail %" PRIu64 " is not a multiple "
		    "of %u", t, WAL_SHM_ALIGN));
	c->tail = t;
	return (t != c->head);
}

/*
 * The record at *pos (below the loaded tail), skipping padding: *pos moves
 * past the padding, not past the record. 1, 0 (none), -1 (corrupt).
 */
static int
peek_at(const struct wal_shm_consumer *c, uint64_t *pos,
    struct wal_shm_rec *rec, char *why, size_t len)
{
	uint64_t off, avail, word, need;
	uint32_t n, flags;

	for (;;) {
		avail = c->tail - *pos;
		if (avail == 0)
			return (0);
		off = *pos & (c->size - 1);
		/* One read of the slot's first word: len and flags. */
		word = *(const volatile uint64_t *)(const void *)(c->data + off);
		n = (uint32_t)(word & 0xffffffffu);
		flags = (uint32_t)(word >> 32);
		if (n != WAL_SHM_PAD)
			break;
		/* Padding: the rest of the data area is skipped. */
		need = c->size - off;
		if (need > avail)
			return (corrupt(why, len, "padding at offset %" PRIu64
			    " runs past the published tail", off));
		*pos += need;
	}
	if (n > c->max_record)
		return (corrupt(why, len, "record of %" PRIu32 " bytes at "
		    "offset %" PRIu64 " exceeds the ring's limit of %" PRIu32,
		    n, off, c->max_record));
	if ((flags & ~WAL_SHM_F_MASK) != 0)
		return (corrupt(why, len, "unknown slot flags %#" PRIx32 " at "
		    "offset %" PRIu64, flags, off));
	need = wal_shm_slot_bytes(n);
	if (need > avail || off + need > c->size)
		return (corrupt(why, len, "record of %" PRIu32 " bytes at "
		    "offset %" PRIu64 " runs past the %s", n, off,
		    need > avail ? "published tail" : "end of the ring"));
	rec->payload = c->data + off + sizeof(struct wal_shm_slot);
	rec->len = n;
	rec->flags = flags;
	rec->slot_pos = *pos;
	rec->next = *pos + need;
	return (1);
}

int
wal_shm_peek_run(struct wal_shm_consumer *c, struct wal_shm_rec *recs,
    unsigned max, unsigned *found, char *why, size_t len)
{
	uint64_t pos = c->head;
	unsigned k = 0;
	int rc = 1;

	while (k < max) {
		rc = peek_at(c, &pos, &recs[k], why, len);
		/*
		 * Padding passed on the way goes with the record before it
		 * (consumed with it), or now when there is none: a producer
		 * waiting for room waits for the head to pass the padding.
		 */
		if (k == 0)
			c->head = pos;
		else
			recs[k - 1].next = pos;
		if (rc != 1)
			break;
		pos = recs[k++].next;
	}
	*found = k;
	return (rc);
}

void
wal_shm_consume_run(struct wal_shm_consumer *c, const struct wal_shm_rec *recs,
    unsigned n, int64_t first_seq)
{
	uint8_t *slot;
	unsigned i;

	if (n == 0)
		return;
	for (i = 0; i < n; i++) {
		if (!(recs[i].flags & WAL_SHM_F_SEQ))
			continue;
		slot = (uint8_t *)(uintptr_t)c->data +
		    (recs[i].slot_pos & (c->size - 1));
		/* Writing into the producer's memory is always harmless. */
		*(volatile int64_t *)(void *)(slot + offsetof(struct
		    wal_shm_slot, seq)) = first_seq + (int64_t)i;
	}
	c->head = recs[n - 1].next;
	c->written += n;
	c->written_seq = first_seq + (int64_t)n - 1;
}

int
wal_shm_publish(struct wal_shm_consumer *c)
{
	struct wal_shm_header *h = c->hdr;

	/*
	 * head and written_seq before written: a producer that sees a
	 * record counted as written also sees its slot released and its seq.
	 */
	atomic_store_explicit(&h->head, c->head, memory_order_release);
	atomic_store_explicit(&h->written_seq, c->written_seq,
	    memory_order_release);
	atomic_store_explicit(&h->written, c->written, memory_order_release);
	return (producer_wants_bell(h));
}

int
wal_shm_publish_durable(struct wal_shm_consumer *c, uint64_t durable,
    int64_t durable_seq)
{
	struct wal_shm_header *h = c->hdr;

	atomic_store_explicit(&h->durable_seq, durable_seq,
	    memory_order_relaxed);
	atomic_store_explicit(&h->durable, durable, memory_order_release);
	return (producer_wants_bell(h));
}

int
wal_shm_publish_failed(struct wal_shm_consumer *c)
{
	struct wal_shm_header *h = c->hdr;

	atomic_store_explicit(&h->failed, 1, memory_order_release);
	return (producer_wants_bell(h));
}

int
wal_shm_sleep(struct wal_shm_consumer *c)
{
	wal_shm_sleep_mark(c);
	(void)wal_shm_barrier();
	return (wal_shm_sleep_check(c));
}

void
wal_shm_sleep_mark(struct wal_shm_consumer *c)
{
	atomic_store_explicit(&c->hdr->daemon_sleeping, 1,
	    memory_order_seq_cst);
}

int
wal_shm_sleep_check(struct wal_shm_consumer *c)
{
	struct wal_shm_header *h = c->hdr;

	/*
	 * After wal_shm_barrier(): pairs with the producer's store of tail
	 * followed by its load of daemon_sleeping (client/shm.c
	 * wm_shm_publish): either we see its tail here, or it sees our flag
	 * and rings.
	 */
	if (atomic_load_explicit(&h->tail, memory_order_relaxed) != c->head) {
		atomic_store_explicit(&h->daemon_sleeping, 0,
		    memory_order_relaxed);
		return (0);
	}
	return (1);
}

#ifdef SYS_membarrier
/* MEMBARRIER_CMD_GLOBAL_EXPEDITED works: -1 not asked yet. */
static _Atomic int membarrier_ok = -1;
#endif

int
wal_shm_membarrier_ok(void)
{
#ifdef SYS_membarrier
	_Atomic int *ok = &membarrier_ok;
	long q;
	int v;

	if ((v = atomic_load_explicit(ok, memory_order_relaxed)) != -1)
		return (v);
	q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	v = q != -1 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0;
	atomic_store_explicit(ok, v, memory_order_relaxed);
	return (v);
#else
	return (0);
#endif
}

int
wal_shm_barrier(void)
{
	/* Pairs with the seq_cst store of tail of producers without ASYM. */
	atomic_thread_fence(memory_order_seq_cst);
#ifdef SYS_membarrier
	/*
	 * A full barrier on every CPU that runs a registered producer: its
	 * store of tail, made before its load of daemon_sleeping, is visible
	 * to our load of tail after this, or its load sees our flag.
	 */
	if (wal_shm_membarrier_ok()) {
		if (syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0,
		    0) == 0)
			return (1);
		/*
		 * Refused after all (a filter on the command): rings made
		 * from now on ask their producers to fence themselves; the
		 * re-checks cover the rings made before.
		 */
		atomic_store_explicit(&membarrier_ok, 0, memory_order_relaxed);
	}
#endif
	return (0);
}

void
wal_shm_awake(struct wal_shm_consumer *c)
{
	atomic_store_explicit(&c->hdr->daemon_sleeping, 0,
	    memory_order_relaxed);
}

/*
 * After publishing progress: is the producer asleep on its doorbell? The
 * fence orders our stores above before the load of producer_waiting; it
 * pairs with the fence between the producer's store of producer_waiting
 * and its re-check of head, written, durable and failed (client/shm.c
 * wm_shm_wait): either the producer sees what we stored, or we see its
 * flag. Clears the flag when set (the caller rings).
 */
static int
producer_wants_bell(struct wal_shm_header *h)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&h->producer_waiting, memory_order_relaxed)) {
		atomic_store_explicit(&h->producer_waiting, 0,
		    memory_order_relaxed);
		return (1);
	}
	return (0);
}

static int
corrupt(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return (-1);
}
