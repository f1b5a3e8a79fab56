/*
 * walmmapd tests - what the parts of the model (tsmodel.c: history, the
 * daemon, reading the log back; tsreaders.c: workers' answers,
 * subscribers, walctl tail, the file reader; tsfault.c: power cuts and
 * faults) share. Not for tests: they use tsmodel.h.
 */
#ifndef TSMODEL_INT_H
#define TSMODEL_INT_H

#include <sys/types.h>

#include <limits.h>
#include <stdint.h>

#include "faultinject.h"
#include "tsdaemon.h"
#include "tsmodel.h"
#include "tsworker.h"
#include "walmmap.h"

#define HANG_MS		30000	/* a producer command or start: a hang */
#define STATUS_S	2	/* walctl status must answer in this */
#define PROGRESS_MS	15000	/* a subscriber must move in this */
#define FAILSTOP_MS	15000	/* exit after a failed sync within this */
#define RETRY_MS	8000	/* appends work again after a fault */
#define GONE_MS		3000	/* a stopping daemon exits within this */
#define FR_BUDGET	256	/* file-reader records per pump */

/* Record states (see tsmodel.h). */
enum r_state {
	R_PENDING,	/* command sent, no answer yet */
	R_SENT,		/* sent, no acknowledgement level or not yet */
	R_MAYBE,	/* connection lost or sync failed: may be in */
	R_REFUSED,	/* refused, or never sent: must never appear */
	R_WRITTEN,	/* acknowledged written */
	R_DURABLE	/* acknowledged durable */
};



struct m_rec {
	int64_t		 seq;		/* -1 until known */
	int64_t		 seq_lo;	/* its seq is at least this */
	int64_t		 t_sent;	/* CLOCK_MONOTONIC ns */
	uint32_t	 size;
	int32_t		 step;
	uint8_t		 state;
	uint8_t		 level;
	uint8_t		 lost;		/* a power cut lost it */
	const char	*who;		/* who saw it at seq first */
};

struct m_prod {
	int		 fd;
	pid_t		 pid;
	int		 busy;
	struct m_rec	*recs;		/* recs[n - base] */
	uint64_t	 base, n, cap;
	uint64_t	 cmd_n0;	/* the running command's records */
	unsigned	 cmd_count;
};

struct m_sub {
	int		 fd;
	pid_t		 pid;
	int		 active;	/* a subscription runs */
	int		 stopping;	/* S_STOP sent, SR_STOPPED due */
	int		 stalled;
	int		 slow;
	int		 loose;		/* first record may be past next */
	unsigned	 gen;		/* daemon generation it follows */
	int64_t		 next;		/* seq expected next */
	int64_t		 mark;		/* next at the last progress check */
};

struct m_tail {
	pid_t		 pid;
	int		 fd;
	char		*buf;
	size_t		 len, cap;
	unsigned	 gen;
	int		 loose;
	int		 dying;		/* its output ends in an error */
	int64_t		 next;
};

struct model {
	struct m_opts	 o;
	char		 base[PATH_MAX];
	char		 ctlpath[PATH_MAX];
	char		 filler[PATH_MAX];
	struct ts_daemon d;
	struct wf_ctl	*ctl;
	struct m_cfg	 cfg, next_cfg;
	unsigned	 gen;		/* daemon starts */
	int		 running;
	int		 last_exit;	/* status of the last exit, -1 killed */
	int		 exited;	/* exited by itself, not judged yet */
	int		 start_rc;	/* exit status of a failed start, or 0 */
	int		 may_stop;	/* a failure it may stop for (fsync,
					   write, rename) since it started */

	struct m_prod	 prod[M_NPROD];
	struct m_sub	 sub[M_NSUB];
	struct m_tail	 tail;
	struct walmmap_reader *fr;	/* the file reader */
	int64_t		 fr_next;

	uint64_t	*hist;		/* key per seq, 0 unknown */
	int64_t		 hist_n, hist_cap;
	int64_t		 durable_claim;	/* highest seq reported durable */
	int64_t		 next_seen;	/* highest next_seq reported */
	int64_t		 log_first;	/* of the last scan, -1 none */
	int64_t		 log_last;
	int		 cut_pending;	/* a power cut awaits the restart */
	uint64_t	 cut_pages;

	/* A fault being injected. */
	int		 fault_on;
	enum wf_call	 fault_call;
	uint64_t	 fault_base;	/* injected count when armed */
	int64_t		 fault_syncs[16]; /* walctl sync answers started
					   after the failure */
	unsigned	 fault_nsyncs;
	int		 disk_full;

	char		**steps;
	size_t		 nsteps, steps_cap;
	int		 nfail;
	struct m_counts	 c;
};

extern const char *const r_state_names[];

/* tsmodel.c */
const char	*m_step_of(struct model *, int step);
struct m_rec	*m_rec_of(struct model *, unsigned p, uint64_t n);
void		 m_observe(struct model *, int64_t seq, const uint8_t *,
		    size_t, const char *who);
void		 m_observe_key(struct model *, int64_t seq, unsigned p,
		    uint64_t n, const char *who);
void		 m_claim_durable(struct model *, int64_t seq);
int		 m_daemon_alive(struct model *);
int		 m_daemon_alive_after(struct model *, int ms);
void		 m_prods_idle(struct model *);
void		 m_judge_exit(struct model *);

/* tsreaders.c */
void		 m_pump(struct model *, int timeout_ms);
void		 m_sub_start(struct model *, unsigned);
void		 m_sub_stop(struct model *, unsigned);
void		 m_tail_start(struct model *);
void		 m_tail_stop(struct model *);
void		 m_fr_close(struct model *);

/* tsfault.c */
void		 m_ledger_reset(struct model *);
void		 m_fault_sync_answer(struct model *, int64_t t_start,
		    int64_t durable);

#endif /* TSMODEL_INT_H */
