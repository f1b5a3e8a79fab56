/*
 * walmmapd tests - a model of what walmmapd acknowledged, checked against
 * a real daemon driven through producers, subscribers, kills, power cuts
 * and injected I/O errors (used by check_model).
 *
 * The test process keeps the model and never calls libwalmmap itself:
 * producers and subscribers are worker processes it commands over
 * socketpairs, with every wait bounded, so a hung daemon is a reported
 * failure, not a hung test.
 *
 * What the model holds, and the guarantees it checks (walmmapd(8),
 * "Guarantees"):
 *
 *  - Every record a producer appends has a key (producer p, counter n)
 *    and a self-describing payload (ts_rec_payload), so any record read
 *    back names the append it came from, and a damaged one is seen.
 *  - A record's state: sent without an acknowledgement level (it may or
 *    may not be in the log), acknowledged written, acknowledged durable,
 *    refused (the daemon answered an error other than a failed sync: it
 *    must never appear), or unknown (the connection was lost, or a sync
 *    failed: it may or may not be in the log, but never twice).
 *  - The history: the key each seq was seen holding, by anyone (an ack, a
 *    subscriber, walctl tail, the file reader, a scan of the files). A seq
 *    once seen with a key holds that key for good; the only exception is
 *    a power cut, after which every seq past the end of the recovered log
 *    is forgotten and may be given to a new record. A key never appears at
 *    two seqs, nor again after a power cut lost it.
 *  - Claims: the highest seq the daemon reported durable (a durable ack,
 *    a SYNC answer, status) and written. A kill -9 (or a fail-stop exit)
 *    loses nothing that was seen: every seq of the history is still there.
 *    A power cut loses nothing up to the durable claim. What a power cut
 *    may lose is decided by the shim's sync ledger (faultinject.h): the
 *    bytes the daemon really synced survive, the others may be dropped,
 *    kept or torn at page granularity.
 */
#ifndef TSMODEL_H
#define TSMODEL_H

#include <stdint.h>
#include <stdio.h>

#include "faultinject.h"
#include "tsdaemon.h"

#define M_NPROD		4	/* producers 0, 1: socket; 2, 3: ring */
#define M_NSUB		3	/* subscribers: follows, slow, stalls */
#define M_BATCH_MAX	48	/* records per producer command */

enum m_level { M_NONE = 0, M_WRITTEN = 1, M_DURABLE = 2 };

/* How a producer command appends its records. */
enum m_mode {
	M_SINGLE,	/* one append per record, waiting for its seq */
	M_PIPE,		/* pipelined appends, then one wait for the level */
	M_BATCH		/* one walmmap_append_batch() with seqs */
};

/* The daemon's configuration for its next start. */
struct m_cfg {
	uint32_t	seg_kb;		/* segment size, KiB */
	uint32_t	ring;
	int		prefault;
	int		shm;
	uint32_t	shm_kb;
	uint32_t	spin_us;
	uint32_t	retain_segments;
	uint32_t	retain_kb;
	uint32_t	sync_ms;	/* sync_interval, 0 off */
	uint32_t	commit_ms;	/* commit_delay */
};

/* One producer command (also the generator's description of it). */
struct m_append {
	unsigned	prod;
	enum m_level	level;
	enum m_mode	mode;
	unsigned	count;
	uint32_t	sizes[M_BATCH_MAX];
};

struct model;

/* Options of a run. */
struct m_opts {
	uint64_t	 seed;
	const char	*name;		/* for messages ("walk", "ioerr") */
	int		 keep_going;	/* ioerr: report and go on */
	int		 tmpfs;		/* the data directory is a tmpfs */
	int		 no_file_reader; /* no live file reader */
	int		 no_subs;	/* no subscribers, no walctl tail */
};

/* Set up in base (which exists); workers started, no daemon yet. */
struct model	*m_new(const char *base, const struct m_opts *);

/* The daemon's data directory (base/data). */
const char	*m_data_dir(const struct model *);

/* Stop everything, free. */
void		 m_free(struct model *);

/*
 * The step being run: its number and one-line description, kept for the
 * step list a failure prints.
 */
void		 m_step(struct model *, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));

/*
 * A broken guarantee: print what, the seed, the step list, the daemon's
 * log; then exit(1), or with keep_going return (m_failed() counts).
 */
void		 m_fail(struct model *, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));
int		 m_failed(const struct model *);

/* The configuration of the next start; the one in use. */
void		 m_set_cfg(struct model *, const struct m_cfg *);
const struct m_cfg *m_cfg(const struct model *);
void		 m_cfg_str(const struct m_cfg *, char *, size_t);

/*
 * Start the daemon. With expect_ok a failure to start is a broken
 * guarantee; otherwise it returns the exit status (> 0) quietly. 0 when
 * it runs. Subscribers and walctl tail are (re)started behind it.
 */
int		 m_start(struct model *, int expect_ok);
int		 m_running(struct model *);

/*
 * SIGTERM: returns the exit status, which must be 0, or 1 after a failure
 * it may stop for (m_may_stop(): a failed fsync, write or rename since it
 * started; its final sync reports it).
 */
int		 m_stop(struct model *);
int		 m_may_stop(const struct model *);

/* SIGKILL (a crash of the daemon: the page cache keeps everything). */
void		 m_kill(struct model *);

/*
 * Everything after a kill: reap, let workers notice, check the files as
 * the kill left them (nothing seen is lost). Called by m_kill() and after
 * the daemon exited by itself.
 */
void		 m_after_death(struct model *);

/*
 * A power cut: kill, then rewrite the segment files to a state a power
 * loss could leave (ledger), mode 0..TS_CUT_MODES-1 or -1 for a random
 * mode per file. The next m_start() checks that nothing durable was lost
 * and forgets the seqs past the recovered end.
 */
void		 m_power_cut(struct model *, int mode, uint64_t *rng);

/*
 * Run producer commands concurrently and wait for all of them (bounded).
 * With kill_after_ms >= 0 the daemon is SIGKILLed that long after they
 * started (power_cut_mode >= -1: a power cut instead; < -1: a kill).
 */
void		 m_appends(struct model *, const struct m_append *, unsigned n,
		    int kill_after_ms, int power_cut_mode, uint64_t *rng);

/* walctl sync / rotate (through walctl; failures allowed when told). */
int		 m_sync(struct model *);
int		 m_rotate(struct model *);

/*
 * After each step: status answers within 2 s, the whole log is read back
 * and checked, subscribers make progress. Does nothing while the daemon
 * is down (then only the files are checked).
 */
void		 m_check(struct model *);

/* Subscriber control: stall/resume, slow on/off, resubscribe from seq. */
void		 m_sub_stall(struct model *, unsigned sub, int stalled);
void		 m_sub_slow(struct model *, unsigned sub, int slow);
void		 m_sub_restart(struct model *, unsigned sub, uint64_t pick);
void		 m_tail_restart(struct model *, uint64_t pick);

/*
 * Faults. m_fault_arm() arms the shim; m_fault_end() disarms it and
 * returns how many calls were failed since it was armed, checking the
 * agreed behaviour: after a failed msync/fdatasync the daemon stops with
 * exit status 1 (fail-stop) and gives no durable acknowledgement for
 * anything sent after the failure; after a failed fsync, write or rename
 * (which also make the checkpoint and segment names durable) it may stop
 * the same way, also later (m_check() accepts that exit); otherwise it
 * keeps running, and once the fault is gone appends work again. Stopped
 * with SIGTERM during a fault it exits 0, or 1 when a sync failed.
 */
void		 m_fault_arm(struct model *, enum wf_call, int64_t nth, int err,
		    int persist);
/* pread/write: the nth call moves half its bytes, the next one fails. */
void		 m_fault_arm_short(struct model *, enum wf_call, int64_t nth,
		    int err);
uint64_t	 m_fault_end(struct model *);

/* Full disk (tmpfs: fill it leaving room bytes; else fallocate ENOSPC). */
void		 m_disk_full(struct model *, uint64_t room);
void		 m_disk_free(struct model *);

/*
 * Take the log already in the data directory (copied there from an
 * earlier run; no daemon runs) as this model's: its records become
 * records acknowledged written, its files count as on disk.
 */
void		 m_adopt(struct model *);

/* Forget the log: stop, remove the data directory, start afresh. */
void		 m_new_epoch(struct model *);

/* Let workers and the daemon run for ms (reading what they send). */
void		 m_settle(struct model *, int ms);

/* Bounded wait for the daemon to apply retention (segments <= n). */
int		 m_wait_segments(struct model *, unsigned n, int timeout_ms);

/*
 * The sync ledger's synced end of segment id (faultinject.h): bytes the
 * daemon made durable; -1 when the ledger does not know the file.
 */
int64_t		 m_ledger_end(struct model *, uint64_t id);

/* The end offset of the last record of segment id (-1: no records). */
int64_t		 m_segment_end(struct model *, uint64_t id);

/* Counters for the summary line. */
struct m_counts {
	uint64_t	steps;
	uint64_t	records;	/* appended */
	uint64_t	acked;		/* acknowledged written or durable */
	uint64_t	durable;	/* acknowledged durable */
	uint64_t	refused;
	uint64_t	faults[WF_NCALLS];	/* calls failed by the shim */
	uint64_t	power_cuts;
	uint64_t	pages_lost;	/* unsynced pages a cut dropped/tore */
	uint64_t	kills;
	uint64_t	stops;
	uint64_t	starts;
	uint64_t	fail_stops;	/* exits after a failed sync */
	uint64_t	sub_records;	/* records subscribers received */
	uint64_t	scans;
	uint64_t	epochs;
};
const struct m_counts *m_counts(const struct model *);
void		 m_print_counts(const struct m_counts *, FILE *);

#endif /* TSMODEL_H */
