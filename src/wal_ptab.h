/*
 * walmmapd - the producer table: who wrote which record, and how far each
 * idempotent producer got.
 *
 * The table lives beside the segments in one mapped file,
 * walmmapd.producers (the segment format does not change):
 *
 *   offset 0        header, WAL_PTAB_HDR_SIZE bytes (struct wal_ptab_hdr)
 *   offset 4096     slots[nslots], WAL_PTAB_SLOT_SIZE bytes each
 *                   (struct wal_ptab_slot): one per producer
 *   offset jofs     journal[jcap], WAL_PTAB_JENT_SIZE bytes each
 *                   (struct wal_ptab_jent), jofs = 4096 + nslots * 128
 *                   rounded up to 4096
 *
 * The journal is a circular array with one entry per record a producer
 * wrote, in log order: (seq, producer id, producer seq), each with its own
 * CRC. The writer stores a record's entry before the record is published
 * as written, so after a kill -9 every producer record in the log has its
 * entry. The group commit syncs the table after the segments and before
 * it publishes the durable seq (wal_ptab_sync()).
 *
 * Recovery (wal_ptab_open()) takes the recovered log's next_seq as the
 * truth: entries at or after it are erased, and each producer's position
 * (next_pseq, last_seq) is recomputed from its slot and its newest journal
 * entry below next_seq. A slot ahead of the log without a journal entry
 * to cut it back to is marked lost (resuming it is refused).
 *
 * Threads: one writer (the daemon's loop) calls everything except
 * wal_ptab_sync(), which the sync thread may call concurrently: it only
 * writes hdr->synced_seq and msyncs the mapping.
 */
#ifndef WAL_PTAB_H
#define WAL_PTAB_H

#include <sys/types.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "wal_error.h"

#define WAL_PTAB_FILE		"walmmapd.producers"
#define WAL_PTAB_MAGIC		"WALPROD1"
#define WAL_PTAB_VERSION	1
#define WAL_PTAB_HDR_SIZE	4096
#define WAL_PTAB_SLOT_SIZE	128
#define WAL_PTAB_JENT_SIZE	32
#define WAL_PTAB_SLOTS_DEFAULT	1024
#define WAL_PTAB_JOURNAL_DEFAULT (1u << 18)	/* entries (8 MiB) */
#define WAL_PTAB_SLOTS_MAX	65536
#define WAL_PTAB_JOURNAL_MAX	(1u << 26)

/* Header: geometry (covered by hcrc) then fields the writer updates. */
struct wal_ptab_hdr {
	char		magic[8];	/* WAL_PTAB_MAGIC */
	uint32_t	version;	/* WAL_PTAB_VERSION */
	uint32_t	hdr_size;	/* WAL_PTAB_HDR_SIZE */
	uint32_t	nslots;
	uint32_t	slot_size;	/* WAL_PTAB_SLOT_SIZE */
	uint32_t	jcap;		/* journal entries, a power of two */
	uint32_t	jent_size;	/* WAL_PTAB_JENT_SIZE */
	uint32_t	hcrc;		/* CRC-32 of the 32 bytes above */
	uint32_t	pad;
	uint64_t	next_id;	/* next producer id assigned (advisory) */
	int64_t		synced_seq;	/* log seq the last table sync covered */
};

#define WAL_PTAB_F_LOST	0x1		/* position unknown after recovery */

/* One producer. Identity fields are covered by scrc. */
struct wal_ptab_slot {
	uint64_t	id;		/* 0: free */
	uint32_t	uid;
	uint32_t	gid;
	uint32_t	pid;		/* at the last PRODUCER */
	uint32_t	flags;		/* WAL_PTAB_F_* */
	int64_t		created_ns;	/* CLOCK_REALTIME of the first PRODUCER */
	int64_t		connect_ns;	/* ... of the last */
	char		comm[16];	/* /proc/PID/comm, NUL-padded */
	char		exe[32];	/* basename of /proc/PID/exe, cut */
	uint32_t	scrc;		/* CRC-32 of the bytes above */
	uint32_t	pad;
	/* Position: updated by the writer after each frame. */
	uint64_t	next_pseq;	/* first producer seq not written */
	int64_t		last_seq;	/* log seq of next_pseq - 1, -1: none */
	int64_t		active_ns;	/* CLOCK_REALTIME of the last append */
	uint64_t	pad2;
};

#define WAL_PTAB_J_FIRST	0x1	/* first record of its frame */

/* One journal entry: a record a producer wrote. */
struct wal_ptab_jent {
	int64_t		seq;
	uint64_t	producer_id;
	uint64_t	pseq;
	uint32_t	flags;		/* WAL_PTAB_J_* */
	uint32_t	crc;		/* wal_ptab_jent_crc() of the above */
};

struct wal_ptab {
	int			 fd;
	uint8_t			*map;
	size_t			 maplen;
	int			 readonly;
	struct wal_ptab_hdr	*hdr;
	struct wal_ptab_slot	*slots;
	struct wal_ptab_jent	*journal;
	uint32_t		 nslots;
	uint32_t		 jcap;
	uint64_t		 jhead;		/* entries written (next: jhead %
						   jcap) */
	uint64_t		 next_id;
	_Atomic uint64_t	 changes;	/* writes to the mapping (writer) */
	uint64_t		 synced_changes; /* changes the last sync saw */
};

struct wal_ptab_config {
	uint32_t	nslots;		/* for a new table; 0: default */
	uint32_t	jcap;		/* for a new table; 0: default */
};

/* What wal_ptab_open() found and did. */
struct wal_ptab_recovery {
	int		created;	/* no table: a new one was made */
	int		corrupt;	/* unusable: moved aside, new one made */
	char		why[WAL_ERROR_MSG_MAX];	/* why it was unusable */
	char		aside[64];	/* name it was moved to */
	uint64_t	producers;	/* producers in the table */
	uint64_t	entries;	/* journal entries kept */
	uint64_t	erased;		/* entries at/after next_seq erased */
	uint64_t	cut_back;	/* producers moved back to the log */
	uint64_t	advanced;	/* producers moved on from the journal */
	uint64_t	lost;		/* producers marked lost */
};

/*
 * Open (creating if missing, replacing if corrupt) the table in the
 * locked directory dirfd and reconcile it with a log whose next record
 * gets next_seq. The table is synced before this returns.
 */
int	wal_ptab_open(int dirfd, const char *dir, int64_t next_seq,
	    const struct wal_ptab_config *, struct wal_ptab **,
	    struct wal_ptab_recovery *, struct wal_error *);

/*
 * Map a table read-only for reading provenance (walctl dump). Checks the
 * header; reconciles nothing. -ENOENT when there is none.
 */
int	wal_ptab_open_ro(int dirfd, const char *dir, struct wal_ptab **,
	    struct wal_error *);

void	wal_ptab_close(struct wal_ptab *);

/* The slot of producer id, or -1. */
int	wal_ptab_find(const struct wal_ptab *, uint64_t id);

/*
 * A new producer for uid/gid: a free slot, else the slot of the producer
 * idle longest if it has been idle since before idle_before_ns and
 * busy(arg, slot) says nobody uses it. Returns the slot, or -ENOSPC.
 */
int	wal_ptab_create(struct wal_ptab *, uint32_t uid, uint32_t gid,
	    int64_t now_ns, int64_t idle_before_ns,
	    int (*busy)(void *, int), void *arg);

/*
 * Record who connected as the producer of slot (pid, its comm and exe,
 * now) and sync the slot to disk. 0 or -errno.
 */
int	wal_ptab_claim(struct wal_ptab *, int slot, uint32_t pid,
	    const char *comm, const char *exe, int64_t now_ns,
	    struct wal_error *);

/*
 * Journal one record before it is published: it gets seq and is the
 * producer's pseq. Writer only.
 */
static inline void	wal_ptab_note(struct wal_ptab *, uint64_t id,
	    uint64_t pseq, int64_t seq, uint32_t flags);

/* After a frame: the producer's position. */
void	wal_ptab_advance(struct wal_ptab *, int slot, uint64_t next_pseq,
	    int64_t last_seq, int64_t now_ns);

/*
 * The log seq of producer id's record pseq, looked up in the journal;
 * -1 when the journal no longer holds it. *flags gets its entry's flags.
 */
int64_t	wal_ptab_lookup(const struct wal_ptab *, uint64_t id, uint64_t pseq,
	    uint32_t *flags);

/*
 * The log seq of producer id's record pseq, and in *run how many of its
 * records from pseq on (at most max) are at consecutive seqs from there;
 * -1 (and 0) when the journal no longer holds pseq.
 */
int64_t	wal_ptab_lookup_run(const struct wal_ptab *, uint64_t id,
	    uint64_t pseq, uint32_t max, uint32_t *run);

/*
 * Make the table durable: every entry stored before the call. covered is
 * the log seq the segments' sync just made durable (kept in the header).
 * Nothing is written when the table did not change since the last sync
 * (a log without idempotent producers pays no second sync per group
 * commit). One thread at a time (the ring's sync_lock). 0 or -errno.
 */
int	wal_ptab_sync(struct wal_ptab *, int64_t covered, struct wal_error *);

/* Journal entry check (used by readers too). */
int	wal_ptab_jent_valid(const struct wal_ptab_jent *);

/*
 * A journal entry's check: a 32-bit mix of its fields, not a CRC (it is
 * computed for every record on the append path, where a CRC of 28 bytes
 * cost 40% of the in-process append rate). It tells a written entry from
 * zeros, garbage and a torn write (an entry is 32 aligned bytes, inside
 * one sector) with a false match of 1 in 2^32.
 */
static inline uint32_t
wal_ptab_jent_crc(const struct wal_ptab_jent *e)
{
	uint64_t h;

	h = (uint64_t)e->seq * 0x9e3779b97f4a7c15ull;
	h ^= (e->producer_id + 0x632be59bd9b4e019ull) *
	    0xc2b2ae3d27d4eb4full;
	h ^= e->pseq * 0x165667b19e3779f9ull;
	h ^= (uint64_t)e->flags * 0x27d4eb2f165667c5ull;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	return ((uint32_t)h ^ 0x5741u);
}

static inline void
wal_ptab_note(struct wal_ptab *t, uint64_t id, uint64_t pseq, int64_t seq,
    uint32_t flags)
{
	struct wal_ptab_jent *e = &t->journal[t->jhead & (t->jcap - 1)];

	e->seq = seq;
	e->producer_id = id;
	e->pseq = pseq;
	e->flags = flags;
	e->crc = wal_ptab_jent_crc(e);
	t->jhead++;
	/* Before the record is published: a sync that covers it sees it. */
	atomic_fetch_add_explicit(&t->changes, 1, memory_order_release);
}

#endif /* WAL_PTAB_H */
