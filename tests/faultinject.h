/*
 * walmmapd tests - the fault-injection shim's control block.
 *
 * libfaultinject.so (tests/faultinject.c) is preloaded into a walmmapd a
 * test starts (ts_daemon.fault_ctl). It maps the file named by
 * $WALFAULT_CTL, a struct wf_ctl the test created with wf_ctl_open(), and
 * fails the calls the test armed there, at any moment the test chooses:
 *
 *	wf_arm(ctl, WF_MSYNC, 3, EIO, 0);	the 3rd msync from now fails
 *	wf_arm(ctl, WF_FDATASYNC, 1, EIO, 1);	every fdatasync from now fails
 *	wf_arm_short(ctl, WF_PREAD, 1, EIO);	the next pread reads half of
 *						what it asks, the one after
 *						fails (a read cut part-way)
 *	wf_disarm(ctl, WF_MSYNC);
 *	wf_hold(ctl, WF_MSYNC, 1);	msyncs wait (counted first) ...
 *	wf_hold(ctl, WF_MSYNC, 0);	... until released
 *
 * Calls on descriptors 0-2 (the daemon's log) are never failed. Counters
 * say how often each call was made and failed. Both sides touch only the
 * _Atomic fields after the file is set up.
 *
 * The sync ledger (ledger_on set by the test) records, per file, how much
 * of it the daemon has made durable: after each successful msync(MS_SYNC)
 * of a file mapping, fdatasync or fsync of a regular file that starts at
 * or before the file's synced end, the shim moves that end to just past
 * the last non-zero byte the sync covered. Bytes past a file's end were
 * zero at its last sync or were written after it: a power cut may lose
 * them (tests build such states with ts_cut_image()). Segments only grow
 * by appending into zeroed, pre-allocated space, which is what makes one
 * end per file exact enough. Injected failures do not lose data here: the
 * pages stay dirty and a later sync writes them.
 */
#ifndef FAULTINJECT_H
#define FAULTINJECT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define WF_MAGIC	0x57464c54u	/* "WFLT" */

enum wf_call {
	WF_MSYNC,
	WF_FDATASYNC,
	WF_FSYNC,
	WF_FALLOCATE,	/* fallocate and posix_fallocate */
	WF_MMAP,	/* file mappings only (not anonymous memory) */
	WF_RENAME,	/* renameat2, renameat, rename */
	WF_PREAD,
	WF_WRITE,	/* write and pwrite, descriptors > 2 */
	WF_NCALLS
};

struct wf_op {
	_Atomic int64_t		countdown;	/* >0: fail when it reaches 0 */
	_Atomic int32_t		err;		/* errno to fail with */
	_Atomic int32_t		persist;	/* once failed, fail every call */
	_Atomic int32_t		failing;	/* persist tripped (shim) */
	_Atomic int32_t		short_io;	/* pread/write: the nth call
						   moves half its bytes, the
						   next one fails */
	_Atomic uint64_t	calls;		/* made (shim) */
	_Atomic uint64_t	injected;	/* failed by us (shim) */
	_Atomic int32_t		hold;		/* 1: calls wait until 0 */
	_Atomic int64_t		first_ns;	/* CLOCK_MONOTONIC of the
						   first failure, 0 none
						   (shim; the test resets) */
};

/* One file of the sync ledger; ino 0 is a free slot. */
struct wf_synced {
	_Atomic uint64_t	dev;
	_Atomic uint64_t	ino;
	_Atomic uint64_t	end;		/* synced prefix (bytes) */
};

#define WF_LEDGER_MAX	4096

struct wf_ctl {
	uint32_t		magic;
	uint32_t		ncalls;
	struct wf_op		op[WF_NCALLS];
	/*
	 * sync_file_range() calls on regular files, counted, never failed:
	 * they only start write-back, and the msync or fdatasync that
	 * follows reports what went wrong (shim).
	 */
	_Atomic uint64_t	sfr_calls;
	/*
	 * nanosleep() calls, counted (shim); each one sleeps
	 * sleep_extra_ns longer (set by the test: a loaded CPU).
	 */
	_Atomic uint64_t	sleep_calls;
	_Atomic int64_t		sleep_extra_ns;
	_Atomic int32_t		ledger_on;	/* set by the test */
	_Atomic int32_t		ledger_full;	/* a file found no slot */
	_Atomic uint64_t	ledger_syncs;	/* syncs recorded */
	struct wf_synced	synced[WF_LEDGER_MAX];
};

/* Names, for messages and step logs. */
static const char *const wf_call_names[WF_NCALLS] = {
	"msync", "fdatasync", "fsync", "fallocate", "mmap", "rename",
	"pread", "write",
};

/* Arm: the nth call from now (1 = the next) fails with err. */
static inline void
wf_arm(struct wf_ctl *c, enum wf_call call, int64_t nth, int err, int persist)
{
	struct wf_op *op = &c->op[call];

	atomic_store(&op->failing, 0);
	atomic_store(&op->short_io, 0);
	atomic_store(&op->err, err);
	atomic_store(&op->persist, persist);
	atomic_store(&op->countdown, nth);
}

/* Arm a short transfer: pread or write only (see above). */
static inline void
wf_arm_short(struct wf_ctl *c, enum wf_call call, int64_t nth, int err)
{
	wf_arm(c, call, nth, err, 0);
	atomic_store(&c->op[call].short_io, 1);
}

/* Disarm a call (a persistent failure stops too). */
static inline void
wf_disarm(struct wf_ctl *c, enum wf_call call)
{
	atomic_store(&c->op[call].countdown, 0);
	atomic_store(&c->op[call].failing, 0);
	atomic_store(&c->op[call].persist, 0);
	atomic_store(&c->op[call].short_io, 0);
}

/* The ledger slot of a file, NULL when it has none (test side). */
static inline struct wf_synced *
wf_ledger_find(struct wf_ctl *c, uint64_t dev, uint64_t ino)
{
	size_t i, h = (size_t)((ino * 0x9e3779b97f4a7c15ull) ^ dev) %
	    WF_LEDGER_MAX;

	for (i = 0; i < WF_LEDGER_MAX; i++) {
		struct wf_synced *e = &c->synced[(h + i) % WF_LEDGER_MAX];

		if (atomic_load(&e->ino) == 0)
			return (NULL);
		if (atomic_load(&e->ino) == ino && atomic_load(&e->dev) == dev)
			return (e);
	}
	return (NULL);
}

/*
 * Set a file's synced end (test side, while no daemon runs; a new slot
 * when it has none). Returns 0, or -1 when the ledger is full.
 */
static inline int
wf_ledger_set(struct wf_ctl *c, uint64_t dev, uint64_t ino, uint64_t end)
{
	size_t i, h = (size_t)((ino * 0x9e3779b97f4a7c15ull) ^ dev) %
	    WF_LEDGER_MAX;

	for (i = 0; i < WF_LEDGER_MAX; i++) {
		struct wf_synced *e = &c->synced[(h + i) % WF_LEDGER_MAX];

		if (atomic_load(&e->ino) == 0) {
			atomic_store(&e->dev, dev);
			atomic_store(&e->end, end);
			atomic_store(&e->ino, ino);
			return (0);
		}
		if (atomic_load(&e->ino) == ino && atomic_load(&e->dev) ==
		    dev) {
			atomic_store(&e->end, end);
			return (0);
		}
	}
	return (-1);
}

/*
 * Hold: from now on the call waits in the shim, after counting itself in
 * calls, until released (so a test sees it began and decides when it
 * ends; a sync held this way stays in flight).
 */
static inline void
wf_hold(struct wf_ctl *c, enum wf_call call, int on)
{
	atomic_store(&c->op[call].hold, on);
}

/* Create (or reset) the control file at path and map it; NULL on error. */
struct wf_ctl	*wf_ctl_open(const char *path);
void		 wf_ctl_close(struct wf_ctl *);

/*
 * A test program that has faultinject.c linked in (not preloaded) fails
 * its own calls as c says from now on (NULL: none). In the shim.
 */
void		 wf_ctl_use(struct wf_ctl *c);

/* Path of the shim in the build tree. */
const char	*wf_shim_path(void);

#endif /* FAULTINJECT_H */
