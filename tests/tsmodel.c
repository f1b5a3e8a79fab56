/*
 * walmmapd tests - the model behind check_model (see tsmodel.h): worker
 * processes, the record history, reading the log back, power cuts, faults.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testsupport.h"
#include "tsmodel.h"
#include "tsworker.h"
#include "wal_dir.h"
#include "wal_format.h"
#include "wal_segment.h"
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

static const char *const r_state_names[] = {
	"pending", "sent", "unknown", "refused", "acknowledged written",
	"acknowledged durable"
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

static void	 pump(struct model *, int timeout_ms);
static void	 observe(struct model *, int64_t seq, const uint8_t *,
		    size_t, const char *who);
static void	 observe_key(struct model *, int64_t seq, unsigned p,
		    uint64_t n, const char *who);
static void	 scan(struct model *, int after_cut);
static void	 status(struct model *, int64_t *next, int64_t *first);
static void	 sub_start(struct model *, unsigned);
static void	 tail_start(struct model *);
static void	 tail_stop(struct model *);
static void	 fr_close(struct model *);
static void	 ledger_reset(struct model *);
static int	 daemon_alive(struct model *);
static int	 daemon_alive_after(struct model *, int ms);
static void	 judge_exit(struct model *);

/* ------------------------------------------------------------------ */
/* Set-up and failure reports.                                         */
/* ------------------------------------------------------------------ */

/* Set up a model in base: the fault control file, the workers. */
struct model *
m_new(const char *base, const struct m_opts *o)
{
	struct model *m;
	unsigned i;

	if ((m = calloc(1, sizeof *m)) == NULL)
		abort();
	m->o = *o;
	snprintf(m->base, sizeof m->base, "%s", base);
	snprintf(m->ctlpath, sizeof m->ctlpath, "%s/faults", base);
	snprintf(m->filler, sizeof m->filler, "%s/filler", base);
	ts_daemon_init(&m->d, base);
	m->d.fault_ctl = m->ctlpath;
	if ((m->ctl = wf_ctl_open(m->ctlpath)) == NULL)
		abort();
	/* Touch every page: a full tmpfs must not SIGBUS the shim later. */
	memset(m->ctl->op, 0, sizeof *m->ctl - offsetof(struct wf_ctl, op));
	atomic_store(&m->ctl->ledger_on, 1);
	m->durable_claim = -1;
	m->next_seen = 0;
	m->log_first = m->log_last = -1;
	m->tail.pid = 0;
	m->tail.fd = -1;
	for (i = 0; i < M_NPROD; i++)
		m->prod[i].fd = tw_spawn(&m->prod[i].pid, TW_PRODUCER, i);
	for (i = 0; i < M_NSUB; i++) {
		m->sub[i].fd = tw_spawn(&m->sub[i].pid, TW_SUBSCRIBER, i);
		m->sub[i].slow = i == 1;
	}
	m->cfg.seg_kb = 256;
	m->cfg.ring = 3;
	m->cfg.shm = 1;
	m->cfg.shm_kb = 256;
	m->cfg.spin_us = 50;
	m->cfg.sync_ms = 1000;
	m->cfg.commit_ms = 2;
	m->next_cfg = m->cfg;
	return (m);
}

/* The daemon's data directory. */
const char *
m_data_dir(const struct model *m)
{
	return (m->d.data);
}

/* Stop the daemon and every worker; free the model. */
void
m_free(struct model *m)
{
	unsigned i;
	size_t j;

	if (m == NULL)
		return;
	tail_stop(m);
	fr_close(m);
	ts_daemon_kill(&m->d);
	for (i = 0; i < M_NPROD; i++) {
		close(m->prod[i].fd);
		kill(m->prod[i].pid, SIGKILL);
		waitpid(m->prod[i].pid, NULL, 0);
		free(m->prod[i].recs);
	}
	for (i = 0; i < M_NSUB; i++) {
		close(m->sub[i].fd);
		kill(m->sub[i].pid, SIGKILL);
		waitpid(m->sub[i].pid, NULL, 0);
	}
	if (m->d.notify_fd != -1)
		close(m->d.notify_fd);
	wf_ctl_close(m->ctl);
	for (j = 0; j < m->nsteps; j++)
		free(m->steps[j]);
	free(m->steps);
	free(m->hist);
	free(m->tail.buf);
	free(m);
}

/* Start a step: remember its line for the step list. */
void
m_step(struct model *m, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		abort();
	va_end(ap);
	if (m->nsteps == m->steps_cap) {
		m->steps_cap = m->steps_cap ? m->steps_cap * 2 : 256;
		if ((m->steps = realloc(m->steps, m->steps_cap *
		    sizeof *m->steps)) == NULL)
			abort();
	}
	m->steps[m->nsteps++] = s;
	m->c.steps++;
}

/* How many guarantees a run broke (keep_going). */
int
m_failed(const struct model *m)
{
	return (m->nfail);
}

/* The data directory as a failure report shows it. */
static void
dump_dir(struct model *m)
{
	struct dirent **names;
	struct wal_scan sc;
	struct stat st;
	char path[PATH_MAX + 300];
	uint8_t *img;
	size_t len;
	int i, n;

	if ((n = scandir(m->d.data, &names, NULL, alphasort)) < 0)
		return;
	fprintf(stderr, "data directory (model: durable claim %" PRId64
	    ", seqs seen up to %" PRId64 "):\n", m->durable_claim,
	    m->hist_n - 1);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof path, "%s/%s", m->d.data,
		    names[i]->d_name);
		if (names[i]->d_name[0] != '.' && stat(path, &st) == 0 &&
		    S_ISREG(st.st_mode)) {
			sc.first_seq = sc.last_seq = -1;
			sc.end = 0;
			sc.stop = WAL_REC_END;
			if (strncmp(names[i]->d_name, "wal_mmap_", 9) == 0 &&
			    (img = ts_read_file(path, &len)) != NULL) {
				wal_scan(img, len, WAL_FILE_HEADER_SIZE, -1,
				    &sc);
				free(img);
			}
			fprintf(stderr, "  %-44s %9lld bytes  seqs %" PRId64
			    "..%" PRId64 "  end %" PRIu64 " (%s)\n",
			    names[i]->d_name, (long long)st.st_size,
			    sc.first_seq, sc.last_seq, sc.end,
			    wal_rec_strstatus(sc.stop));
		}
		free(names[i]);
	}
	free(names);
}

/* Report a broken guarantee with the seed and the step list. */
void
m_fail(struct model *m, const char *fmt, ...)
{
	char *log;
	va_list ap;
	size_t i, len;

	if (m->nfail++ > 0 && m->o.keep_going)
		return;		/* the first failure of a run says it */
	fprintf(stderr, "\n==== check_model %s, seed %#" PRIx64 ": FAILED at "
	    "step %zu ====\n", m->o.name, m->o.seed, m->nsteps > 0 ?
	    m->nsteps - 1 : 0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	dump_dir(m);
	fprintf(stderr, "steps (seed %#" PRIx64 "):\n", m->o.seed);
	for (i = 0; i < m->nsteps; i++)
		fprintf(stderr, "%5zu %s\n", i, m->steps[i]);
	if ((log = ts_daemon_log(&m->d)) != NULL) {
		len = strlen(log);
		fprintf(stderr, "---- walmmapd log (last 3000 bytes) ----\n%s"
		    "----\n", log + (len > 3000 ? len - 3000 : 0));
		free(log);
	}
	fflush(stderr);
	if (!m->o.keep_going) {
		if (m->running)
			ts_daemon_dump(&m->d);
		m_free(m);
		exit(1);
	}
}

/* The counters so far. */
const struct m_counts *
m_counts(const struct model *m)
{
	return (&m->c);
}

/* One summary line of counters. */
void
m_print_counts(const struct m_counts *c, FILE *f)
{
	uint64_t faults = 0;
	int i;

	for (i = 0; i < WF_NCALLS; i++)
		faults += c->faults[i];
	fprintf(f, "%" PRIu64 " steps, %" PRIu64 " records appended (%"
	    PRIu64 " acknowledged, %" PRIu64 " durable, %" PRIu64 " refused), %"
	    PRIu64 " faults injected (", c->steps, c->records, c->acked,
	    c->durable, c->refused, faults);
	for (i = 0; i < WF_NCALLS; i++)
		fprintf(f, "%s%s %" PRIu64, i ? ", " : "", wf_call_names[i],
		    c->faults[i]);
	fprintf(f, "), %" PRIu64 " fail-stops, %" PRIu64 " power cuts (%"
	    PRIu64 " unsynced pages lost), %" PRIu64 " kills, %" PRIu64
	    " stops, %" PRIu64 " starts, %" PRIu64 " epochs, %" PRIu64
	    " records to subscribers, %" PRIu64 " scans\n", c->fail_stops,
	    c->power_cuts, c->pages_lost, c->kills, c->stops, c->starts,
	    c->epochs, c->sub_records, c->scans);
}

/* ------------------------------------------------------------------ */
/* The history.                                                        */
/* ------------------------------------------------------------------ */

/* A record's key in the history: producer and counter. */
static uint64_t
key_of(unsigned p, uint64_t n)
{
	return (((uint64_t)p << 56) | (n + 1));
}

/* The counter of a history key. */
static uint64_t
key_n(uint64_t key)
{
	return ((key & (((uint64_t)1 << 56) - 1)) - 1);
}

/* The model's record (p, n) of this epoch, NULL if none. */
static struct m_rec *
rec_of(struct model *m, unsigned p, uint64_t n)
{
	struct m_prod *pr = &m->prod[p];

	if (p >= M_NPROD || n < pr->base || n >= pr->n)
		return (NULL);
	return (&pr->recs[n - pr->base]);
}

/* The line of step number step. */
static const char *
step_of(struct model *m, int step)
{
	return (step >= 0 && (size_t)step < m->nsteps ? m->steps[step] : "?");
}

/* A record appears at seq (seen by who): check it against the model. */
static void
observe_key(struct model *m, int64_t seq, unsigned p, uint64_t n,
    const char *who)
{
	struct m_rec *r = rec_of(m, p, n);
	uint64_t key = key_of(p, n), old;

	if (r == NULL) {
		m_fail(m, "%s: seq %" PRId64 " holds record %u:%" PRIu64
		    ", which was never appended (in this epoch)", who, seq, p,
		    n);
		return;
	}
	if (r->state == R_REFUSED) {
		m_fail(m, "%s: seq %" PRId64 " holds record %u:%" PRIu64
		    ", which the daemon refused (or which was never sent) at "
		    "step %d (%s)", who, seq, p, n, r->step, step_of(m,
		    r->step));
		return;
	}
	if (r->lost) {
		m_fail(m, "%s: seq %" PRId64 " holds record %u:%" PRIu64 ", "
		    "which a power cut had lost", who, seq, p, n);
		return;
	}
	if (r->seq >= 0 && r->seq != seq) {
		m_fail(m, "%s: record %u:%" PRIu64 " (%s, step %d) is at seq %"
		    PRId64 ", but it was at seq %" PRId64 " (seen by %s): it "
		    "appears twice or moved", who, p, n,
		    r_state_names[r->state], r->step, seq, r->seq, r->who);
		return;
	}
	if (seq < m->hist_n && (old = m->hist[seq]) != 0 && old != key) {
		m_fail(m, "%s: seq %" PRId64 " holds record %u:%" PRIu64
		    ", but it held record %u:%" PRIu64 " before: a seq was "
		    "reused",
		    who, seq, p, n, (unsigned)(old >> 56), key_n(old));
		return;
	}
	if (seq >= m->hist_cap) {
		int64_t cap = m->hist_cap ? m->hist_cap : 4096;

		while (cap <= seq)
			cap *= 2;
		if ((m->hist = realloc(m->hist, (size_t)cap * sizeof *m->hist))
		    == NULL)
			abort();
		memset(m->hist + m->hist_cap, 0, (size_t)(cap - m->hist_cap) *
		    sizeof *m->hist);
		m->hist_cap = cap;
	}
	m->hist[seq] = key;
	if (seq >= m->hist_n)
		m->hist_n = seq + 1;
	if (r->seq < 0) {
		r->seq = seq;
		r->who = who;
	}
}

/* A payload seen at seq: it must be a producer's record, intact. */
static void
observe(struct model *m, int64_t seq, const uint8_t *data, size_t len,
    const char *who)
{
	unsigned p;
	uint64_t n;

	if (!ts_rec_parse(data, len, &p, &n)) {
		m_fail(m, "%s: seq %" PRId64 " holds %zu bytes that are no "
		    "producer's record (damaged or never appended): \"%.40s\"",
		    who, seq, len, (const char *)data);
		return;
	}
	observe_key(m, seq, p, n, who);
}

/* The daemon claims everything up to seq durable. */
static void
claim_durable(struct model *m, int64_t seq)
{
	if (seq > m->durable_claim)
		m->durable_claim = seq;
}

/* ------------------------------------------------------------------ */
/* Worker results, subscribers, walctl tail, the file reader.          */
/* ------------------------------------------------------------------ */

/* Classify a failed append: refused (never in the log) or unknown. */
static enum r_state
failed_state(int rc)
{
	switch (-rc) {
	case WALMMAP_ETOOLARGE:
	case WALMMAP_ENOSPC:
	case WALMMAP_EIO:
	case WALMMAP_EINVAL:
	case WALMMAP_EBUSY:
	case WALMMAP_ENODAEMON:
	case WALMMAP_ENOMEM:
		return (R_REFUSED);
	default:
		return (R_MAYBE);
	}
}

/* A producer's answer: a record's fate, a wait, the end. */
static void
prod_result(struct model *m, unsigned p, const struct p_res *res)
{
	struct m_prod *pr = &m->prod[p];
	struct m_rec *r;
	uint64_t i;

	switch (res->kind) {
	case RES_REC:
		if ((r = rec_of(m, p, res->n)) == NULL)
			return;
		r->t_sent = res->t_sent;
		if (res->rc < 0) {
			r->state = failed_state(res->rc);
			/* A pipelined record's error may be an older one's. */
			if (res->pipelined && r->state == R_REFUSED &&
			    res->rc != -WALMMAP_ETOOLARGE && res->rc !=
			    -WALMMAP_ENODAEMON)
				r->state = R_MAYBE;
			if (r->state == R_REFUSED)
				m->c.refused++;
			return;
		}
		if (res->pipelined) {
			r->state = R_SENT;
			return;
		}
		r->state = r->level == M_DURABLE ? R_DURABLE : R_WRITTEN;
		m->c.acked++;
		if (r->state == R_DURABLE) {
			m->c.durable++;
			claim_durable(m, res->seq);
		}
		observe_key(m, res->seq, p, res->n, "an acknowledgement");
		break;
	case RES_WAIT:
		for (i = pr->cmd_n0; i < pr->cmd_n0 + pr->cmd_count; i++) {
			if ((r = rec_of(m, p, i)) == NULL || r->state !=
			    R_SENT)
				continue;
			if (res->rc < 0) {
				r->state = R_MAYBE;
				continue;
			}
			r->state = r->level == M_DURABLE ? R_DURABLE :
			    R_WRITTEN;
			m->c.acked++;
			if (r->state == R_DURABLE)
				m->c.durable++;
		}
		break;
	case RES_DONE:
		pr->busy = 0;
		/* Anything still pending was never answered. */
		for (i = pr->cmd_n0; i < pr->cmd_n0 + pr->cmd_count; i++)
			if ((r = rec_of(m, p, i)) != NULL && (r->state ==
			    R_PENDING || r->state == R_SENT))
				r->state = R_MAYBE;
		break;
	}
}

static int64_t	log_first_now(struct model *);

/*
 * A record a subscriber (or walctl tail) got: gap-free, no duplicate.
 * loose: its first record since it (re)started, which may skip what
 * retention removed before it began.
 */
static void
sub_record(struct model *m, const char *who, int64_t *next, int *loose,
    int64_t seq)
{
	if (*loose) {
		*loose = 0;
		if (seq < *next || (seq > *next && seq > log_first_now(m)))
			m_fail(m, "%s: got seq %" PRId64 " first after asking "
			    "to start at %" PRId64 " (the log starts at %"
			    PRId64 ")", who, seq, *next, log_first_now(m));
	} else if (seq != *next)
		m_fail(m, "%s: got seq %" PRId64 " where %" PRId64 " was due "
		    "(%s)", who, seq, *next, seq < *next ? "a duplicate" :
		    "a gap");
	*next = seq + 1;
}

/* A subscriber's message: records, started, stopped, failed. */
static void
sub_result(struct model *m, unsigned i, const struct s_res *r)
{
	struct m_sub *s = &m->sub[i];
	char who[64];
	uint32_t k;

	snprintf(who, sizeof who, "subscriber %u%s", i, s->slow ? " (slow)" :
	    s->stalled ? " (stalls)" : "");
	switch (r->kind) {
	case SR_RECS:
		for (k = 0; k < r->count && k < SUB_ITEMS; k++) {
			const struct s_item *it = &r->u.items[k];

			if (!it->ok) {
				m_fail(m, "%s: seq %" PRId64 " came with %u "
				    "bytes that are no producer's record", who,
				    it->seq, it->size);
				continue;
			}
			sub_record(m, who, &s->next, &s->loose, it->seq);
			observe_key(m, it->seq, it->p, it->n, i == 0 ?
			    "subscriber 0" : i == 1 ? "subscriber 1" :
			    "subscriber 2");
			m->c.sub_records++;
		}
		break;
	case SR_STARTED:
		break;
	case SR_STOPPED:
		s->active = 0;
		s->stopping = 0;
		break;
	case SR_ERR:
		s->active = 0;
		/*
		 * Expected while the daemon is down or was restarted since
		 * (its generation moved on), under an injected fault, or
		 * for a subscriber that lags (it may be dropped, with a
		 * clear error). A subscriber that keeps up is never cut.
		 */
		if (s->gen == m->gen && !m->fault_on && !s->stalled &&
		    !s->slow && daemon_alive_after(m, GONE_MS))
			m_fail(m, "%s: the subscription failed with the daemon "
			    "running: %s (%s)", who, walmmap_strerror(r->rc),
			    r->u.msg);
		break;
	}
}

/* Parse walctl tail's lines: "SEQ TIMESTAMP PAYLOAD". */
static void
tail_lines(struct model *m)
{
	struct m_tail *t = &m->tail;
	char *line = t->buf, *nl, *sp, *end;
	int64_t seq;

	while ((nl = memchr(line, '\n', t->len - (size_t)(line - t->buf)))
	    != NULL) {
		*nl = '\0';
		seq = strtoll(line, &end, 10);
		if (end == line || *end != ' ' || (sp = strchr(end + 1, ' ')) ==
		    NULL) {
			/* Its last words, after the daemon went away. */
			if (!t->dying && t->gen == m->gen && !m->fault_on &&
			    daemon_alive_after(m, GONE_MS))
				m_fail(m, "walctl tail: unexpected line "
				    "\"%.200s\"", line);
		}
		else {
			sub_record(m, "walctl tail", &t->next, &t->loose,
			    seq);
			observe(m, seq, (const uint8_t *)sp + 1, (size_t)(nl -
			    sp - 1), "walctl tail");
		}
		line = nl + 1;
	}
	t->len -= (size_t)(line - t->buf);
	memmove(t->buf, line, t->len);
}

/* Read what walctl tail printed; notice when it exits. */
static void
tail_read(struct model *m)
{
	struct m_tail *t = &m->tail;
	ssize_t n;
	int status;

	for (;;) {
		if (t->cap - t->len < 65536 && (t->buf = realloc(t->buf,
		    t->cap = t->cap * 2 + 65536)) == NULL)
			abort();
		n = read(t->fd, t->buf + t->len, t->cap - t->len);
		if (n > 0) {
			t->len += (size_t)n;
			tail_lines(m);
			continue;
		}
		if (n == -1 && errno == EAGAIN)
			return;
		break;
	}
	/* walctl tail exited. */
	waitpid(t->pid, &status, 0);
	t->dying = 1;
	tail_lines(m);
	if (t->gen == m->gen && !m->fault_on && daemon_alive_after(m,
	    GONE_MS))
		m_fail(m, "walctl tail -f exited (status %#x) with the daemon "
		    "running: \"%.*s\"", status, (int)(t->len < 300 ? t->len :
		    300), t->buf);
	close(t->fd);
	t->fd = -1;
	t->pid = 0;
	t->len = 0;
}

/* Start walctl tail -f from the seq it expects next. */
static void
tail_start(struct model *m)
{
	struct m_tail *t = &m->tail;
	char from[32];
	int pfd[2];

	if (t->pid != 0)
		tail_stop(m);
	if (m->o.no_subs)
		return;
	if (pipe2(pfd, O_CLOEXEC) == -1)
		abort();
	snprintf(from, sizeof from, "%" PRId64, t->next);
	t->loose = 1;
	t->gen = m->gen;
	if ((t->pid = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(pfd[1], STDOUT_FILENO);
		dup2(pfd[1], STDERR_FILENO);
		execl(ts_prog("client/walctl"), "walctl", "-s", m->d.sock,
		    "tail", "-f", "--from", from, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	t->fd = pfd[0];
	fcntl(t->fd, F_SETFL, O_NONBLOCK);
	t->len = 0;
	t->dying = 0;
}

/* Kill walctl tail, taking in the lines it printed. */
static void
tail_stop(struct model *m)
{
	struct m_tail *t = &m->tail;

	if (t->pid == 0)
		return;
	kill(t->pid, SIGKILL);
	waitpid(t->pid, NULL, 0);
	t->dying = !m->running;
	/* Lines it printed before it died still count. */
	for (;;) {
		ssize_t n;

		if (t->cap - t->len < 65536 && (t->buf = realloc(t->buf,
		    t->cap = t->cap * 2 + 65536)) == NULL)
			abort();
		if ((n = read(t->fd, t->buf + t->len, t->cap - t->len)) <= 0)
			break;
		t->len += (size_t)n;
		tail_lines(m);
	}
	close(t->fd);
	t->fd = -1;
	t->pid = 0;
	t->len = 0;
}

/* Restart walctl tail from a seq picked in the log. */
void
m_tail_restart(struct model *m, uint64_t pick)
{
	int64_t lo = m->log_first < 0 ? 0 : m->log_first;

	tail_stop(m);
	if (m->hist_n > lo)
		m->tail.next = lo + (int64_t)(pick % (uint64_t)(m->hist_n - lo +
		    1));
	if (m->running)
		tail_start(m);
}

/* Close the file reader (it reopens at the oldest record). */
static void
fr_close(struct model *m)
{
	walmmap_reader_close(m->fr);
	m->fr = NULL;
}

/* The first seq of the log now (a quick look at the oldest segment). */
static int64_t
log_first_now(struct model *m)
{
	struct wal_seglist list;
	uint8_t hdr[WAL_FILE_HEADER_SIZE + WAL_RECORD_HEADER_SIZE];
	int64_t first = -1;
	size_t i;
	int dfd, fd;

	if ((dfd = wal_dir_open(m->d.data, NULL)) < 0)
		return (-1);
	if (wal_dir_list(dfd, m->d.data, &list, NULL) == 0) {
		for (i = 0; i < list.count && first < 0; i++) {
			char name[WAL_SEGMENT_NAME_MAX];

			wal_seg_name(name, sizeof name, list.ids[i]);
			if ((fd = openat(dfd, name, O_RDONLY | O_CLOEXEC)) ==
			    -1)
				continue;
			if (pread(fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr
			    && wal_le32_load(hdr + WAL_FILE_HEADER_SIZE) ==
			    WAL_RECORD_MAGIC)
				first = (int64_t)wal_le64_load(hdr +
				    WAL_FILE_HEADER_SIZE + 4);
			close(fd);
		}
		wal_seglist_free(&list);
	}
	close(dfd);
	return (first);
}

/*
 * The file reader follows the directory while the daemon writes it: it
 * returns only records that were appended, in seq order, without gaps,
 * and damage only where the log is damaged. It may fall behind retention
 * (then it starts again at the oldest record).
 */
static void
fr_pump(struct model *m, int budget)
{
	struct walmmap_record rec;
	int64_t first;
	int rc;

	if (m->fr == NULL) {
		if (walmmap_reader_open(&m->fr, m->d.data) != 0) {
			fr_close(m);
			return;
		}
		m->fr_next = -1;
	}
	while (budget-- > 0 && (rc = walmmap_reader_next(m->fr, &rec, 0)) ==
	    1) {
		if (m->fr_next >= 0 && rec.seq != m->fr_next)
			m_fail(m, "file reader: seq %" PRId64 " where %" PRId64
			    " was due", rec.seq, m->fr_next);
		m->fr_next = rec.seq + 1;
		observe(m, rec.seq, rec.data, rec.size, "the file reader");
	}
	if (budget >= 0 && rc < 0) {
		first = log_first_now(m);
		if (m->fr_next >= 0 && first > m->fr_next) {
			/* Retention removed what it had not read yet. */
			fr_close(m);
			return;
		}
		m_fail(m, "file reader: %s at seq %" PRId64 " (%s), though the "
		    "log holds seq %" PRId64 " on", walmmap_strerror(rc),
		    m->fr_next, walmmap_reader_errmsg(m->fr), first);
		fr_close(m);
	}
}

/* Read what workers sent; wait up to timeout_ms for the first of it. */
static void
pump(struct model *m, int timeout_ms)
{
	struct pollfd pfd[M_NPROD + M_NSUB + 1];
	struct p_res pres;
	struct s_res sres;
	unsigned i, n = 0;

	for (i = 0; i < M_NPROD; i++) {
		pfd[n].fd = m->prod[i].fd;
		pfd[n++].events = POLLIN;
	}
	for (i = 0; i < M_NSUB; i++) {
		pfd[n].fd = m->sub[i].fd;
		pfd[n++].events = POLLIN;
	}
	pfd[n].fd = m->tail.fd;
	pfd[n++].events = POLLIN;
	if (poll(pfd, n, timeout_ms) > 0) {
		for (i = 0; i < M_NPROD; i++)
			while (recv(m->prod[i].fd, &pres, sizeof pres,
			    MSG_DONTWAIT) == (ssize_t)sizeof pres)
				prod_result(m, i, &pres);
		for (i = 0; i < M_NSUB; i++)
			while (recv(m->sub[i].fd, &sres, sizeof sres,
			    MSG_DONTWAIT) > 0)
				sub_result(m, i, &sres);
		if (m->tail.fd != -1 && (pfd[n - 1].revents & (POLLIN |
		    POLLHUP)))
			tail_read(m);
	}
	if (m->running && !m->o.no_file_reader)
		fr_pump(m, FR_BUDGET);
}

/* Send subscriber i a command. */
static void
sub_cmd(struct model *m, unsigned i, uint32_t op, int32_t arg, int64_t from)
{
	struct s_cmd c;

	memset(&c, 0, sizeof c);
	c.op = op;
	c.arg = arg;
	c.from = from;
	snprintf(c.sock, sizeof c.sock, "%s", m->d.sock);
	if (send(m->sub[i].fd, &c, sizeof c, MSG_NOSIGNAL) != (ssize_t)sizeof c)
		m_fail(m, "subscriber %u: worker gone", i);
}

/* Subscribe subscriber i from the seq it expects next. */
static void
sub_start(struct model *m, unsigned i)
{
	struct m_sub *s = &m->sub[i];

	if (m->o.no_subs)
		return;
	s->loose = 1;
	s->gen = m->gen;
	s->active = 1;
	s->mark = s->next;
	sub_cmd(m, i, S_START, s->slow, s->next);
	if (s->stalled)
		sub_cmd(m, i, S_STALL, 1, 0);
}

/* Stop a subscription and wait until the worker confirms. */
static void
sub_stop(struct model *m, unsigned i)
{
	int64_t until = tw_mono_ns() + (int64_t)HANG_MS * 1000000;

	pump(m, 0);
	if (!m->sub[i].active)
		return;
	m->sub[i].stopping = 1;
	sub_cmd(m, i, S_STOP, 0, 0);
	while (m->sub[i].stopping && tw_mono_ns() < until)
		pump(m, 100);
	if (m->sub[i].stopping)
		m_fail(m, "subscriber %u: walmmap_reader_close/next did not "
		    "return within %d s", i, HANG_MS / 1000);
}

/* Make subscriber i stop reading, or read again. */
void
m_sub_stall(struct model *m, unsigned i, int stalled)
{
	m->sub[i].stalled = stalled;
	m->sub[i].mark = m->sub[i].next;
	if (m->sub[i].active)
		sub_cmd(m, i, S_STALL, stalled, 0);
}

/* Make subscriber i slow, or not. */
void
m_sub_slow(struct model *m, unsigned i, int slow)
{
	m->sub[i].slow = slow;
	if (m->sub[i].active)
		sub_cmd(m, i, S_SLOW, slow, 0);
}

/* Resubscribe subscriber i from a seq picked in the log. */
void
m_sub_restart(struct model *m, unsigned i, uint64_t pick)
{
	int64_t lo = m->log_first < 0 ? 0 : m->log_first;

	sub_stop(m, i);
	if (m->hist_n > lo)
		m->sub[i].next = lo + (int64_t)(pick % (uint64_t)(m->hist_n -
		    lo + 1));
	if (m->running)
		sub_start(m, i);
}

/* ------------------------------------------------------------------ */
/* The daemon.                                                         */
/* ------------------------------------------------------------------ */

/* A configuration as walmmapd.conf settings, for step lines. */
void
m_cfg_str(const struct m_cfg *c, char *buf, size_t len)
{
	snprintf(buf, len, "segment_size=%uK ring=%u prefault=%s shm=%s "
	    "shm_size=%uK shm_spin=%uus retain_segments=%u retain_bytes=%uK "
	    "sync_interval=%ums commit_delay=%ums", c->seg_kb, c->ring,
	    c->prefault ? "yes" : "no", c->shm ? "yes" : "no", c->shm_kb,
	    c->spin_us, c->retain_segments, c->retain_kb, c->sync_ms,
	    c->commit_ms);
}

/* The configuration of the next start. */
void
m_set_cfg(struct model *m, const struct m_cfg *c)
{
	m->next_cfg = *c;
}

/* The configuration in use. */
const struct m_cfg *
m_cfg(const struct model *m)
{
	return (&m->cfg);
}

/*
 * Is the daemon still running? When it exited by itself, note its status
 * (m_check() decides whether it was allowed to).
 */
static int
daemon_alive(struct model *m)
{
	return (daemon_alive_after(m, 0));
}

/*
 * daemon_alive(), for when a client just lost it: a daemon that stops
 * closes its connections before it exits, so give it ms to be gone.
 */
static int
daemon_alive_after(struct model *m, int ms)
{
	int rc;

	if (!m->running)
		return (0);
	if ((rc = ts_daemon_wait_exit(&m->d, ms)) < 0)
		return (1);
	m->running = 0;
	m->last_exit = rc;
	m->exited = 1;
	return (0);
}

/* Does the daemon run (as far as the model knows)? */
int
m_running(struct model *m)
{
	return (m->running);
}

/* Start the daemon with the next configuration. */
int
m_start(struct model *m, int expect_ok)
{
	char opt[10][64], *argv[32];
	const struct m_cfg *c = &m->next_cfg;
	int n = 0, k = 0, rc;
	unsigned i;

	if (m->exited)
		judge_exit(m);
	if (m->running)
		return (0);
#define OPT(...) do {							\
	snprintf(opt[k], sizeof opt[k], __VA_ARGS__);			\
	argv[n++] = (char *)"-o";					\
	argv[n++] = opt[k++];						\
} while (0)
	argv[n++] = (char *)"--segment-size";
	snprintf(opt[k], sizeof opt[k], "%uK", c->seg_kb);
	argv[n++] = opt[k++];
	argv[n++] = (char *)"--ring";
	snprintf(opt[k], sizeof opt[k], "%u", c->ring);
	argv[n++] = opt[k++];
	OPT("prefault=%s", c->prefault ? "yes" : "no");
	OPT("shm=%s", c->shm ? "yes" : "no");
	OPT("shm_size=%uK", c->shm_kb);
	if (c->spin_us % 1000 == 0)
		OPT("shm_spin=%ums", c->spin_us / 1000);
	else
		OPT("shm_spin=%uus", c->spin_us);
	OPT("retain_segments=%u", c->retain_segments);
	OPT("retain_bytes=%uK", c->retain_kb);
	OPT("sync_interval=%ums", c->sync_ms);
	OPT("commit_delay=%ums", c->commit_ms);
#undef OPT
	argv[n] = NULL;
	rc = ts_daemon_startv(&m->d, argv);
	if (rc != 0) {
		if (expect_ok)
			m_fail(m, "walmmapd did not start (status %d)", rc);
		m->d.pid = 0;
		m->start_rc = rc;
		return (rc);
	}
	m->start_rc = 0;
	m->cfg = *c;
	m->running = 1;
	m->exited = 0;
	m->may_stop = 0;
	m->gen++;
	m->c.starts++;
	if (m->cut_pending) {
		/*
		 * After a power cut: the recovered log holds every seq up to
		 * the durable claim, unchanged; what is past its end is
		 * forgotten (those seqs may be given to new records).
		 */
		scan(m, 1);
		m->cut_pending = 0;
	}
	for (i = 0; i < M_NSUB; i++)
		sub_start(m, i);
	tail_start(m);
	return (0);
}

/* SIGTERM the daemon; returns its exit status. */
int
m_stop(struct model *m)
{
	int rc;

	if (m->exited)
		judge_exit(m);
	if (!m->running)
		return (-1);
	rc = ts_daemon_stop(&m->d);
	m->running = 0;
	m->last_exit = rc;
	m->c.stops++;
	if (rc < 0)
		m_fail(m, "walmmapd did not stop within 30 s of SIGTERM");
	m_after_death(m);
	return (rc);
}

/* Did a call fail since the start that it may stop (exit 1) for? */
int
m_may_stop(const struct model *m)
{
	return (m->may_stop);
}

/* SIGKILL the daemon and check what it left. */
void
m_kill(struct model *m)
{
	if (m->exited)
		judge_exit(m);
	if (!m->running)
		return;
	ts_daemon_kill(&m->d);
	m->running = 0;
	m->last_exit = -1;
	m->c.kills++;
	m_after_death(m);
}

/* Wait (bounded) until no producer command runs. */
static void
prods_idle(struct model *m)
{
	int64_t until = tw_mono_ns() + (int64_t)HANG_MS * 1000000;
	unsigned i;
	int busy;

	do {
		busy = 0;
		for (i = 0; i < M_NPROD; i++)
			busy |= m->prod[i].busy;
		if (busy)
			pump(m, 50);
	} while (busy && tw_mono_ns() < until);
	for (i = 0; i < M_NPROD; i++)
		if (m->prod[i].busy)
			m_fail(m, "producer %u: its appends did not return "
			    "within %d s", i, HANG_MS / 1000);
}

/* Producers drop their connections to a daemon that is gone. */
static void
prods_close(struct model *m)
{
	struct p_cmd c;
	unsigned i;

	memset(&c, 0, sizeof c);
	c.op = P_CLOSE;
	for (i = 0; i < M_NPROD; i++) {
		m->prod[i].cmd_count = 0;
		m->prod[i].busy = 1;
		if (send(m->prod[i].fd, &c, sizeof c, MSG_NOSIGNAL) !=
		    (ssize_t)sizeof c)
			m_fail(m, "producer %u: worker gone", i);
	}
	prods_idle(m);
}

/* The daemon is gone: quiesce the workers, check the files. */
void
m_after_death(struct model *m)
{
	unsigned i;

	m->running = 0;
	m->exited = 0;
	m->d.pid = 0;
	prods_idle(m);
	prods_close(m);
	for (i = 0; i < M_NSUB; i++)
		sub_stop(m, i);
	tail_stop(m);
	fr_close(m);
	/* What the page cache holds now: nothing seen may be missing. */
	scan(m, 0);
}

/* ------------------------------------------------------------------ */
/* Reading the log back.                                               */
/* ------------------------------------------------------------------ */

/* Where a seq was found by the last scan (for power-cut diagnoses). */
struct seg_info {
	uint64_t	id;
	int64_t		first, last;
	uint64_t	end;		/* after the last record */
	int		garbage;	/* non-zero bytes after it */
};

/*
 * Read every segment file (the files, not the daemon): seqs continuous
 * from the oldest record, each record a producer's, intact, and agreeing
 * with the history; nothing after the last record of a segment the log
 * continues beyond. Then every acknowledged record must be there (after a
 * power cut: every durable one; the rest past the end is forgotten).
 */
static void
scan(struct model *m, int after_cut)
{
	struct wal_seglist list;
	struct wal_record rec;
	struct seg_info *si;
	struct stat st;
	enum wal_rec_status rs;
	char name[WAL_SEGMENT_NAME_MAX];
	struct wf_synced *e;
	uint64_t lend, span;
	int *fds, tries = 0;
	int64_t expect = -1, first = -1, last = -1, s;
	uint64_t off, p, n;
	uint8_t *map;
	size_t i, lastrec = 0;
	int dfd, fd;
	struct m_rec *r;

	const char *when = after_cut ? "the log recovered after a power cut" :
	    m->running ? "the segment files" : "the segment files after the "
	    "daemon died";

	m->c.scans++;
again:
	if ((dfd = wal_dir_open(m->d.data, NULL)) < 0) {
		if (m->hist_n > 0)
			m_fail(m, "the data directory %s is gone", m->d.data);
		return;
	}
	if (wal_dir_list(dfd, m->d.data, &list, NULL) != 0)
		abort();
	/*
	 * Open every listed segment before reading any: retention removes
	 * segments meanwhile (from the oldest on), and a segment gone after
	 * one that was read would look like a hole. When one is gone, list
	 * again; once all are open, what we read is one moment's log.
	 */
	if ((fds = calloc(list.count + 1, sizeof *fds)) == NULL)
		abort();
	for (i = 0; i < list.count; i++) {
		wal_seg_name(name, sizeof name, list.ids[i]);
		if ((fds[i] = openat(dfd, name, O_RDONLY | O_CLOEXEC)) != -1)
			continue;
		if (errno != ENOENT || ++tries > 50)
			m_fail(m, "cannot open %s: %s", name, strerror(errno));
		while (i-- > 0)
			close(fds[i]);
		free(fds);
		wal_seglist_free(&list);
		close(dfd);
		goto again;
	}
	close(dfd);
	if ((si = calloc(list.count + 1, sizeof *si)) == NULL)
		abort();
	for (i = 0; i < list.count; i++) {
		wal_seg_name(name, sizeof name, list.ids[i]);
		si[i].id = list.ids[i];
		si[i].first = si[i].last = -1;
		if ((fd = fds[i]) == -1)
			continue;
		if (fstat(fd, &st) == -1 || st.st_size < WAL_FILE_HEADER_SIZE) {
			close(fd);
			m_fail(m, "%s: %lld bytes, no file header", name,
			    (long long)st.st_size);
			continue;
		}
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED,
		    fd, 0);
		close(fd);
		if (map == MAP_FAILED)
			abort();
		if (memcmp(map, WAL_FILE_MAGIC, WAL_FILE_HEADER_SIZE) != 0)
			m_fail(m, "%s: no SIGNETWAL1 file magic", name);
		/* What the daemon synced of this file (the shim's ledger). */
		e = wf_ledger_find(m->ctl, (uint64_t)st.st_dev,
		    (uint64_t)st.st_ino);
		lend = atomic_load(&m->ctl->ledger_full) ? UINT64_MAX : e !=
		    NULL ? atomic_load(&e->end) : 0;
		off = WAL_FILE_HEADER_SIZE;
		while ((rs = wal_record_check(map + off, (size_t)st.st_size -
		    off, -1, &rec)) == WAL_REC_OK) {
			/*
			 * Reported durable, so synced: the ledger covers the
			 * record (zero bytes past its end were synced too).
			 */
			span = wal_record_span(rec.size);
			if (rec.seq <= m->durable_claim && off + span > lend &&
			    !wal_is_zero(map + (lend > off ? lend : off),
			    off + span - (lend > off ? lend : off)))
				m_fail(m, "%s: seq %" PRId64 " was reported "
				    "durable (up to seq %" PRId64 "), but the "
				    "daemon never synced it: %s bytes %" PRIu64
				    "..%" PRIu64 ", synced up to %" PRIu64 " (the "
				    "shim's ledger)", when, rec.seq,
				    m->durable_claim, name, off, off + span,
				    lend);
			if (expect >= 0 && rec.seq != expect)
				m_fail(m, "%s: %s offset %" PRIu64 ": seq %"
				    PRId64 " follows seq %" PRId64 " (%s)",
				    when, name, off, rec.seq, expect - 1,
				    rec.seq < expect ? "a seq again" :
				    "a hole in the log");
			if (first < 0)
				first = rec.seq;
			if (si[i].first < 0)
				si[i].first = rec.seq;
			si[i].last = last = rec.seq;
			expect = rec.seq + 1;
			lastrec = i;
			observe(m, rec.seq, rec.payload, rec.size, after_cut ?
			    "the log recovered after a power cut" :
			    "the segment files");
			off += span;
		}
		si[i].end = off;
		si[i].garbage = !wal_is_zero(map + off, (size_t)st.st_size -
		    off);
		munmap(map, (size_t)st.st_size);
	}
	/* Only the last segment with records may end in a tear. */
	for (i = 0; i < list.count; i++)
		if (si[i].last >= 0 && i < lastrec && si[i].garbage)
			m_fail(m, "%s: segment %" PRIu64 " has non-zero bytes "
			    "after its last record (seq %" PRId64 ", offset %"
			    PRIu64 ") while the log goes on in segment %"
			    PRIu64 ": recovery would call it torn", when,
			    si[i].id, si[i].last, si[i].end, si[lastrec].id);
	wal_seglist_free(&list);
	free(si);
	free(fds);
	m->log_first = first;
	m->log_last = last;

	if (after_cut) {
		if (last < m->durable_claim) {
			m_fail(m, "after a power cut the log ends at seq %"
			    PRId64 ", but the daemon had reported seq %" PRId64
			    " durable (%" PRIu64 " pages it had not synced "
			    "were lost or torn: see the sync ledger in "
			    "faultinject.h)", last, m->durable_claim,
			    m->cut_pages);
		}
		/* Forget the seqs past the end. */
		for (s = last + 1; s < m->hist_n; s++)
			if (m->hist[s] != 0) {
				p = m->hist[s] >> 56;
				n = key_n(m->hist[s]);
				if ((r = rec_of(m, (unsigned)p, n)) != NULL) {
					r->lost = 1;
					r->seq = -1;
				}
				m->hist[s] = 0;
			}
		if (m->hist_n > last + 1)
			m->hist_n = last + 1;
		m->next_seen = last + 1;
		for (i = 0; i < M_NSUB; i++)
			if (m->sub[i].next > last + 1)
				m->sub[i].next = last + 1;
		if (m->tail.next > last + 1)
			m->tail.next = last + 1;
	}
	/* Everything seen is still there (unless retention removed it). */
	if (m->hist_n > 0 && last < m->hist_n - 1)
		m_fail(m, "%s: the log ends at seq %" PRId64 ", but seq %"
		    PRId64 " was seen holding record %u:%" PRIu64 " before "
		    "(only a power cut may lose it)", when, last, m->hist_n -
		    1, (unsigned)(m->hist[m->hist_n - 1] >> 56),
		    key_n(m->hist[m->hist_n - 1]));
	/* Acknowledged records whose seq was never learnt: by key. */
	for (p = 0; p < M_NPROD; p++)
		for (n = m->prod[p].base; n < m->prod[p].n; n++) {
			r = &m->prod[p].recs[n - m->prod[p].base];
			if (r->seq >= 0 || r->lost || (r->state != R_WRITTEN &&
			    r->state != R_DURABLE))
				continue;
			if (after_cut && r->state == R_WRITTEN) {
				r->lost = 1;	/* a power cut may lose it */
				continue;
			}
			if (first < 0 || first <= r->seq_lo)
				m_fail(m, "record %u:%" PRIu64 " (%s at step "
				    "%d: %s) is not in the log (seqs %" PRId64
				    "..%" PRId64 ")", (unsigned)p, n,
				    r_state_names[r->state], r->step,
				    step_of(m, r->step), first, last);
		}
}

/* Parse a number after "key": in walctl status --json; -1 for null. */
static int64_t
json_num(const char *js, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof pat, "\"%s\":", key);
	if ((p = strstr(js, pat)) == NULL || strncmp(p + strlen(pat), "null",
	    4) == 0)
		return (-1);
	return (strtoll(p + strlen(pat), NULL, 10));
}

/* walctl status answers within 2 s; its numbers agree with the model. */
static void
status(struct model *m, int64_t *nextp, int64_t *firstp)
{
	char *out = NULL;
	int64_t next, durable;
	int rc;

	rc = ts_run_prog_within(STATUS_S, "client/walctl", NULL, 0, &out, "-s",
	    m->d.sock, "status", "--json", NULL);
	if (rc == 128 + SIGALRM) {
		m_fail(m, "walctl status did not answer within %d s", STATUS_S);
		free(out);
		return;
	}
	if (rc != 0) {
		if (daemon_alive_after(m, GONE_MS))
			m_fail(m, "walctl status failed (exit %d): %s", rc,
			    out);
		free(out);
		return;
	}
	next = json_num(out, "next_seq");
	durable = json_num(out, "durable_seq");
	if (next < m->next_seen)
		m_fail(m, "walctl status: next seq %" PRId64 " went back from %"
		    PRId64, next, m->next_seen);
	else
		m->next_seen = next;
	if (next < m->hist_n)
		m_fail(m, "walctl status: next seq %" PRId64 ", but seq %"
		    PRId64 " exists", next, m->hist_n - 1);
	if (durable >= next)
		m_fail(m, "walctl status: durable seq %" PRId64 " at or past "
		    "the next seq %" PRId64, durable, next);
	claim_durable(m, durable);
	if (nextp != NULL)
		*nextp = next;
	if (firstp != NULL)
		*firstp = json_num(out, "first_seq");
	free(out);
}

/* Bounded wait: subscribers that keep up reach seq target - 1. */
static void
progress(struct model *m, int64_t target)
{
	int64_t until = tw_mono_ns() + (int64_t)PROGRESS_MS * 1000000;
	unsigned i;
	int waiting;

	for (;;) {
		waiting = 0;
		for (i = 0; i < M_NSUB; i++) {
			struct m_sub *s = &m->sub[i];

			if (!s->active || s->stalled || s->next >= target)
				continue;
			/* A slow one must at least move. */
			if (s->slow && s->next > s->mark)
				continue;
			waiting = 1;
		}
		if (m->tail.pid != 0 && m->tail.next < target)
			waiting = 1;
		if (!waiting || tw_mono_ns() > until)
			break;
		pump(m, 50);
	}
	for (i = 0; i < M_NSUB; i++) {
		struct m_sub *s = &m->sub[i];

		if (s->active && !s->stalled && s->next < target && !(s->slow &&
		    s->next > s->mark))
			m_fail(m, "subscriber %u%s is stuck at seq %" PRId64
			    " for %d s while the log goes to seq %" PRId64, i,
			    s->slow ? " (slow)" : "", s->next, PROGRESS_MS /
			    1000, target - 1);
		s->mark = s->next;
	}
	if (m->tail.pid != 0 && m->tail.next < target)
		m_fail(m, "walctl tail -f is stuck at seq %" PRId64 " for %d s "
		    "while the log goes to seq %" PRId64, m->tail.next,
		    PROGRESS_MS / 1000, target - 1);
}

/*
 * The daemon exited by itself. After a failed fsync, write or rename it
 * may stop, also later than the step that failed the call (a failure in
 * the background shows at its next tick); otherwise it must not.
 */
static void
judge_exit(struct model *m)
{
	m->exited = 0;
	if (m->last_exit == 1 && m->may_stop)
		m->c.fail_stops++;
	else
		m_fail(m, "walmmapd exited by itself (status %d)",
		    m->last_exit);
	m_after_death(m);
}

/* The checks after every step. */
void
m_check(struct model *m)
{
	int64_t next = -1;
	unsigned i;

	pump(m, 0);
	(void)daemon_alive(m);
	if (m->exited) {
		judge_exit(m);
		return;
	}
	scan(m, 0);
	if (!m->running)
		return;
	status(m, &next, NULL);
	if (!daemon_alive(m)) {
		m_check(m);	/* it exited meanwhile: as above */
		return;
	}
	/* Subscriptions cut by a fault or for lagging start again. */
	for (i = 0; i < M_NSUB; i++)
		if (!m->sub[i].active && !m->o.no_subs)
			sub_start(m, i);
	if (m->tail.pid == 0 && !m->o.no_subs)
		tail_start(m);
	if (next >= 0)
		progress(m, next);
}

/* Let workers and the daemon run for ms. */
void
m_settle(struct model *m, int ms)
{
	int64_t until = tw_mono_ns() + (int64_t)ms * 1000000;

	while (tw_mono_ns() < until)
		pump(m, 20);
}

/* Wait (bounded) for at most n segment files. */
int
m_wait_segments(struct model *m, unsigned n, int timeout_ms)
{
	int64_t until = tw_mono_ns() + (int64_t)timeout_ms * 1000000;
	int k;

	while ((k = ts_count_files(m->d.data, "wal_mmap_")) > (int)n &&
	    tw_mono_ns() < until)
		pump(m, 50);
	return (k);
}

/* ------------------------------------------------------------------ */
/* Appends, syncs, rotations.                                          */
/* ------------------------------------------------------------------ */

/* Run producer commands together; kill or cut while they run. */
void
m_appends(struct model *m, const struct m_append *a, unsigned na,
    int kill_after_ms, int cut_mode, uint64_t *rng)
{
	struct p_cmd c;
	struct m_prod *pr;
	struct m_rec *r;
	int64_t t0, kill_at;
	unsigned i, k;

	memset(&c, 0, sizeof c);
	for (i = 0; i < na; i++) {
		pr = &m->prod[a[i].prod];
		if (pr->busy)
			continue;
		if (pr->n + a[i].count > pr->base + pr->cap) {
			pr->cap = (pr->cap + a[i].count) * 2;
			if ((pr->recs = realloc(pr->recs, pr->cap *
			    sizeof *pr->recs)) == NULL)
				abort();
		}
		c.op = P_APPEND;
		c.level = a[i].level;
		c.mode = a[i].level == M_NONE ? M_PIPE : a[i].mode;
		c.count = a[i].count;
		c.n0 = pr->n;
		c.shm = a[i].prod >= 2;
		memcpy(c.sizes, a[i].sizes, sizeof c.sizes);
		snprintf(c.sock, sizeof c.sock, "%s", m->d.sock);
		for (k = 0; k < a[i].count; k++) {
			r = &pr->recs[pr->n + k - pr->base];
			memset(r, 0, sizeof *r);
			r->seq = -1;
			r->seq_lo = m->hist_n > m->next_seen ? m->hist_n :
			    m->next_seen;
			r->size = a[i].sizes[k];
			r->step = (int32_t)m->nsteps - 1;
			r->state = R_PENDING;
			r->level = (uint8_t)a[i].level;
		}
		pr->n += a[i].count;
		pr->cmd_n0 = c.n0;
		pr->cmd_count = c.count;
		pr->busy = 1;
		m->c.records += a[i].count;
		if (send(pr->fd, &c, sizeof c, MSG_NOSIGNAL) != (ssize_t)
		    sizeof c)
			m_fail(m, "producer %u: worker gone", a[i].prod);
	}
	t0 = tw_mono_ns();
	kill_at = kill_after_ms >= 0 ? t0 + (int64_t)kill_after_ms * 1000000 :
	    INT64_MAX;
	for (;;) {
		int busy = 0;

		for (i = 0; i < M_NPROD; i++)
			busy |= m->prod[i].busy;
		if (!busy)
			break;
		if (tw_mono_ns() >= kill_at) {
			kill_at = INT64_MAX;
			if (cut_mode >= -1)
				m_power_cut(m, cut_mode, rng);
			else
				m_kill(m);
			continue;
		}
		if (tw_mono_ns() - t0 > (int64_t)HANG_MS * 1000000) {
			prods_idle(m);	/* reports which one hangs */
			break;
		}
		pump(m, kill_at != INT64_MAX ? 1 : 20);
	}
	if (kill_at != INT64_MAX) {
		/* Everything returned before the kill was due: kill now. */
		if (cut_mode >= -1)
			m_power_cut(m, cut_mode, rng);
		else
			m_kill(m);
	}
}

/* A SYNC answered during a fault: m_fault_end() judges it. */
static void
fault_sync_answer(struct model *m, int64_t t_start, int64_t durable)
{
	int64_t first;

	if (!m->fault_on)
		return;
	first = atomic_load(&m->ctl->op[m->fault_call].first_ns);
	if (first != 0 && t_start > first && m->fault_nsyncs < 16)
		m->fault_syncs[m->fault_nsyncs++] = durable;
}

/*
 * After a failed sync, nothing sent after the failure is durable: no
 * record of it acknowledged durable, and no SYNC answer (one may repeat
 * what was durable before) that covers one of them.
 */
static void
fault_no_durable_after(struct model *m, enum wf_call call, int64_t first)
{
	struct m_rec *r;
	int64_t lo = INT64_MAX;
	uint64_t p, n;
	unsigned i;

	for (p = 0; p < M_NPROD; p++)
		for (n = m->prod[p].base; n < m->prod[p].n; n++) {
			r = &m->prod[p].recs[n - m->prod[p].base];
			if (r->t_sent <= first)
				continue;
			if (r->seq >= 0 && r->seq < lo)
				lo = r->seq;
			if (r->state == R_DURABLE)
				m_fail(m, "record %u:%" PRIu64 " was "
				    "acknowledged durable (seq %" PRId64 "), "
				    "but it was sent after a %s had failed",
				    (unsigned)p, n, r->seq,
				    wf_call_names[call]);
		}
	for (i = 0; i < m->fault_nsyncs; i++)
		if (m->fault_syncs[i] >= lo)
			m_fail(m, "walctl sync said durable up to seq %" PRId64
			    " after a %s had failed, but seq %" PRId64 " was "
			    "sent after the failure", m->fault_syncs[i],
			    wf_call_names[call], lo);
}

/* walctl sync; its answer is a durable claim. */
int
m_sync(struct model *m)
{
	char *out = NULL, *p;
	int64_t t = tw_mono_ns(), durable;
	int rc;

	rc = ts_run_prog_within(HANG_MS / 1000, "client/walctl", NULL, 0, &out,
	    "-s", m->d.sock, "sync", NULL);
	if (rc == 128 + SIGALRM)
		m_fail(m, "walctl sync did not answer within %d s", HANG_MS /
		    1000);
	else if (rc == 0) {
		if ((p = strstr(out, "durable up to seq ")) != NULL) {
			durable = strtoll(p + 18, NULL, 10);
			claim_durable(m, durable);
			fault_sync_answer(m, t, durable);
		}
	} else if (!m->fault_on && !m->disk_full && daemon_alive_after(m,
	    GONE_MS))
		m_fail(m, "walctl sync failed (exit %d) with no fault: %s", rc,
		    out);
	free(out);
	return (rc);
}

/* walctl rotate. */
int
m_rotate(struct model *m)
{
	char *out = NULL;
	int rc;

	rc = ts_run_prog_within(HANG_MS / 1000, "client/walctl", NULL, 0, &out,
	    "-s", m->d.sock, "rotate", NULL);
	if (rc == 128 + SIGALRM)
		m_fail(m, "walctl rotate did not answer within %d s", HANG_MS /
		    1000);
	else if (rc != 0 && !m->fault_on && !m->disk_full &&
	    daemon_alive_after(m, GONE_MS))
		m_fail(m, "walctl rotate failed (exit %d) with no fault: %s",
		    rc, out);
	free(out);
	return (rc);
}

/* ------------------------------------------------------------------ */
/* Power cuts.                                                         */
/* ------------------------------------------------------------------ */

/*
 * After a cut (or a new epoch) every file is on disk as it is: its synced
 * end is just past its last non-zero byte (what is written later, into
 * the zeros, is not synced until the daemon syncs it).
 */
static void
ledger_reset(struct model *m)
{
	struct dirent *de;
	struct stat st;
	char path[PATH_MAX + 300];
	uint8_t *img;
	size_t len, end;
	DIR *dir;

	memset(m->ctl->synced, 0, sizeof m->ctl->synced);
	atomic_store(&m->ctl->ledger_full, 0);
	if ((dir = opendir(m->d.data)) == NULL)
		return;
	while ((de = readdir(dir)) != NULL) {
		snprintf(path, sizeof path, "%s/%s", m->d.data, de->d_name);
		if (stat(path, &st) == -1 || !S_ISREG(st.st_mode) ||
		    (img = ts_read_file(path, &len)) == NULL)
			continue;
		for (end = len; end > 0 && img[end - 1] == 0; end--)
			;
		free(img);
		if (wf_ledger_set(m->ctl, (uint64_t)st.st_dev,
		    (uint64_t)st.st_ino, end) != 0)
			atomic_store(&m->ctl->ledger_full, 1);
	}
	closedir(dir);
}

/* The ledger's synced end of segment id. */
int64_t
m_ledger_end(struct model *m, uint64_t id)
{
	struct wf_synced *e;
	struct stat st;

	if (stat(ts_seg_path(m->d.data, id), &st) == -1 || (e =
	    wf_ledger_find(m->ctl, (uint64_t)st.st_dev, (uint64_t)st.st_ino))
	    == NULL)
		return (-1);
	return ((int64_t)atomic_load(&e->end));
}

/* The offset after the last record of segment id. */
int64_t
m_segment_end(struct model *m, uint64_t id)
{
	struct wal_scan sc;
	uint8_t *img;
	size_t len;

	if ((img = ts_read_file(ts_seg_path(m->d.data, id), &len)) == NULL)
		return (-1);
	wal_scan(img, len, WAL_FILE_HEADER_SIZE, -1, &sc);
	free(img);
	return (sc.records > 0 ? (int64_t)sc.end : -1);
}

/* Kill the daemon and leave what a power loss could leave. */
void
m_power_cut(struct model *m, int mode, uint64_t *rng)
{
	struct wal_seglist list;
	struct wf_synced *e;
	struct stat st;
	char path[PATH_MAX + 64], name[WAL_SEGMENT_NAME_MAX];
	uint8_t *now, *synced, *out;
	uint64_t end;
	size_t i, len;
	int dfd, fmode;

	if (m->exited)
		judge_exit(m);
	if (m->running) {
		ts_daemon_kill(&m->d);
		m->running = 0;
		m->last_exit = -1;
		m->c.kills++;
	}
	/* The kill -9 part: nothing seen is lost yet. */
	m_after_death(m);
	m->c.power_cuts++;
	m->cut_pages = 0;
	if ((dfd = wal_dir_open(m->d.data, NULL)) < 0)
		return;
	if (wal_dir_list(dfd, m->d.data, &list, NULL) != 0)
		abort();
	close(dfd);
	for (i = 0; i < list.count; i++) {
		wal_seg_name(name, sizeof name, list.ids[i]);
		snprintf(path, sizeof path, "%s/%s", m->d.data, name);
		if (stat(path, &st) == -1 || (now = ts_read_file(path, &len)) ==
		    NULL)
			continue;
		/*
		 * Bytes past the file's synced end were zero at its last
		 * sync or written since: they are what a cut may lose. A
		 * full ledger (or a file it does not know) loses nothing.
		 */
		e = wf_ledger_find(m->ctl, (uint64_t)st.st_dev,
		    (uint64_t)st.st_ino);
		end = e != NULL ? atomic_load(&e->end) :
		    atomic_load(&m->ctl->ledger_full) ? len : 0;
		if (end > len)
			end = len;
		if ((synced = malloc(len + 1)) == NULL || (out = malloc(len +
		    1)) == NULL)
			abort();
		memcpy(synced, now, end);
		memset(synced + end, 0, len - end);
		fmode = mode >= 0 ? mode : (int)(ts_rand(rng) % TS_CUT_MODES);
		if (getenv("WALMODEL_DEBUG") != NULL) {
			size_t last = len;

			while (last > 0 && now[last - 1] == 0)
				last--;
			fprintf(stderr, "cut %s: data ends at %zu, synced end %"
			    PRIu64 " (%s) mode %d\n", name, last, end, e !=
			    NULL ? "ledger" : "none", fmode);
		}
		m->cut_pages += ts_cut_image(out, synced, now, len, fmode, rng);
		if (memcmp(out, now, len) != 0 && ts_pwrite_file(path, out, len,
		    0) != 0)
			abort();
		free(now);
		free(synced);
		free(out);
	}
	wal_seglist_free(&list);
	m->c.pages_lost += m->cut_pages;
	ledger_reset(m);
	m->cut_pending = 1;
}

/* ------------------------------------------------------------------ */
/* Faults.                                                             */
/* ------------------------------------------------------------------ */

/* Fail the nth call from now (and on, with persist). */
void
m_fault_arm(struct model *m, enum wf_call call, int64_t nth, int err,
    int persist)
{
	pump(m, 0);
	m->fault_on = 1;
	m->fault_call = call;
	m->fault_base = atomic_load(&m->ctl->op[call].injected);
	m->fault_nsyncs = 0;
	atomic_store(&m->ctl->op[call].first_ns, 0);
	wf_arm(m->ctl, call, nth, err, persist);
}

/* Make the nth pread/write short and the next one fail. */
void
m_fault_arm_short(struct model *m, enum wf_call call, int64_t nth, int err)
{
	m_fault_arm(m, call, nth, err, 0);
	wf_arm_short(m->ctl, call, nth, err);
}

/* Once a fault is gone, a written append works again (bounded retry). */
static void
fault_gone(struct model *m, const char *what)
{
	struct m_append a;
	int64_t until = tw_mono_ns() + (int64_t)RETRY_MS * 1000000;
	struct m_rec *r;

	memset(&a, 0, sizeof a);
	a.prod = 0;
	a.level = M_WRITTEN;
	a.mode = M_SINGLE;
	a.count = 1;
	a.sizes[0] = 100;
	for (;;) {
		m_appends(m, &a, 1, -1, 0, NULL);
		r = rec_of(m, 0, m->prod[0].n - 1);
		if (r->state == R_WRITTEN || !m->running)
			return;
		if (!daemon_alive(m))
			return;		/* m_check() judges it */
		if (tw_mono_ns() > until)
			break;
		usleep(200000);
	}
	m_fail(m, "appends still fail %d s after the %s fault was removed "
	    "(the record was %s)", RETRY_MS / 1000, what,
	    r_state_names[r->state]);
}

/* Disarm the fault and check what the daemon did about it. */
uint64_t
m_fault_end(struct model *m)
{
	enum wf_call call = m->fault_call;
	uint64_t inj;
	int64_t first;
	int rc, must, may, by_test;

	if (!m->fault_on)
		return (0);
	pump(m, 0);
	wf_disarm(m->ctl, call);
	inj = atomic_load(&m->ctl->op[call].injected) - m->fault_base;
	first = atomic_load(&m->ctl->op[call].first_ns);
	m->c.faults[call] += inj;
	if (inj == 0) {
		m->fault_on = 0;
		return (0);
	}
	/*
	 * A failed msync or fdatasync is a failed sync: the daemon must stop
	 * (exit status 1). fsync, write and rename also make the checkpoint
	 * and new segment names durable, so after one of them failed it may
	 * stop that way too, or go on. Not after fallocate, mmap or pread.
	 */
	must = call == WF_MSYNC || call == WF_FDATASYNC;
	may = must || call == WF_FSYNC || call == WF_WRITE || call ==
	    WF_RENAME;
	if (!m->running && m->start_rc != 0) {
		/* It could not start: any failure may stop a start. */
		if (m->start_rc != 1)
			m_fail(m, "walmmapd did not start (status %d) after a "
			    "failed %s (1 expected)", m->start_rc,
			    wf_call_names[call]);
		m->fault_on = 0;
		return (inj);
	}
	/* Its exit status: now, or when the test stopped or killed it. */
	by_test = !m->running && !m->exited;
	if (m->exited) {
		rc = m->last_exit;
		m->exited = 0;
		m->running = 1;		/* m_after_death() below */
	} else
		rc = by_test ? m->last_exit : ts_daemon_wait_exit(&m->d, must ?
		    FAILSTOP_MS : 0);
	if (may && rc < 0 && m->running)
		m->may_stop = 1;	/* it may still stop (m_check) */
	pump(m, 0);
	if (rc >= 0 && m->running) {
		m->running = 0;
		m_after_death(m);	/* the scan pins the seqs we judge */
	}
	/*
	 * A failed msync or fdatasync syncs records. (Of fsync, write and
	 * rename failures only the daemon knows which one stopped it: one in
	 * making a segment does not, one in writing the checkpoint may.)
	 */
	if (must)
		fault_no_durable_after(m, call, first);
	if (by_test && rc >= 0) {
		/* A SIGTERM while failing: 0, or 1 after a failed sync. */
		if (rc == 128 + SIGTERM)
			m_fail(m, "walmmapd died of the SIGTERM (status %d) "
			    "after a failed %s: a signal that arrives while it "
			    "stops must not hide the exit status", rc,
			    wf_call_names[call]);
		else if (rc == 0 ? must : rc != 1 || !(may || m->may_stop))
			m_fail(m, "walmmapd exited with status %d on SIGTERM "
			    "after a failed %s", rc, wf_call_names[call]);
	} else if (!by_test && must && rc < 0)
		m_fail(m, "walmmapd still runs %d s after a failed %s (it must "
		    "stop with status 1: fail-stop)", FAILSTOP_MS / 1000,
		    wf_call_names[call]);
	else if (!by_test && rc >= 0 && (rc != 1 || !(may || m->may_stop)))
		m_fail(m, "walmmapd exited with status %d after a failed %s%s",
		    rc, wf_call_names[call], may ? " (1 expected)" : "; it "
		    "must keep running");
	else if (!by_test && rc == 1)
		m->c.fail_stops++;
	m->fault_on = 0;
	if (m->running)
		fault_gone(m, wf_call_names[call]);
	return (inj);
}

/* Fill the disk, leaving room bytes. */
void
m_disk_full(struct model *m, uint64_t room)
{
	struct statvfs sv;
	uint64_t free_b, fill;
	char chunk[65536];
	int fd;

	m->disk_full = 1;
	if (!m->o.tmpfs) {
		m_fault_arm(m, WF_FALLOCATE, 1, ENOSPC, 1);
		return;
	}
	if (statvfs(m->d.data, &sv) == -1)
		abort();
	free_b = (uint64_t)sv.f_bavail * sv.f_frsize;
	fill = free_b > room ? free_b - room : 0;
	if ((fd = open(m->filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) == -1)
		abort();
	memset(chunk, 'f', sizeof chunk);
	while (fill > 0) {
		ssize_t w = write(fd, chunk, fill < sizeof chunk ? fill :
		    sizeof chunk);

		if (w <= 0)
			break;
		fill -= (uint64_t)w;
	}
	close(fd);
}

/* Free the disk; appends must work again. */
void
m_disk_free(struct model *m)
{
	if (!m->disk_full)
		return;
	if (!m->o.tmpfs) {
		m->disk_full = 0;
		(void)m_fault_end(m);
		return;
	}
	unlink(m->filler);
	m->disk_full = 0;
	if (m->running)
		fault_gone(m, "disk full");
}

/* ------------------------------------------------------------------ */
/* Epochs.                                                             */
/* ------------------------------------------------------------------ */

/* nftw() callback: remove one entry. */
static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return (remove(path));
}

void
m_adopt(struct model *m)
{
	struct wal_seglist list;
	struct wal_record rec;
	struct m_prod *pr;
	struct m_rec *r;
	uint64_t off, n, k;
	uint8_t *img;
	size_t i, len;
	unsigned p;
	int dfd;

	if ((dfd = wal_dir_open(m->d.data, NULL)) < 0)
		return;
	if (wal_dir_list(dfd, m->d.data, &list, NULL) != 0)
		abort();
	close(dfd);
	for (i = 0; i < list.count; i++) {
		if ((img = ts_read_file(ts_seg_path(m->d.data, list.ids[i]),
		    &len)) == NULL)
			continue;
		for (off = WAL_FILE_HEADER_SIZE; wal_record_check(img + off, len -
		    off, -1, &rec) == WAL_REC_OK; off += wal_record_span(
		    rec.size)) {
			if (!ts_rec_parse(rec.payload, rec.size, &p, &n) || p >=
			    M_NPROD)
				continue;
			pr = &m->prod[p];
			if (n >= pr->cap) {
				pr->cap = (n + 1) * 2;
				if ((pr->recs = realloc(pr->recs, pr->cap *
				    sizeof *pr->recs)) == NULL)
					abort();
			}
			/* Keys in between were never written: refused. */
			for (k = pr->n; k <= n; k++) {
				r = &pr->recs[k];
				memset(r, 0, sizeof *r);
				r->seq = -1;
				r->step = -1;
				r->state = R_REFUSED;
			}
			if (pr->n <= n)
				pr->n = n + 1;
			r = &pr->recs[n];
			r->state = R_WRITTEN;
			r->level = M_WRITTEN;
			r->size = rec.size;
			observe_key(m, rec.seq, p, n, "an earlier run");
		}
		free(img);
	}
	wal_seglist_free(&list);
	ledger_reset(m);
}

/* Start afresh on an empty data directory. */
void
m_new_epoch(struct model *m)
{
	unsigned i;
	int rc;

	if (m->running && (rc = m_stop(m)) != 0 && !(rc == 1 && m->may_stop))
		m_fail(m, "walmmapd exited with status %d after SIGTERM", rc);
	nftw(m->d.data, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	for (i = 0; i < M_NPROD; i++) {
		m->prod[i].base = m->prod[i].n;
		m->prod[i].cap = 0;
		free(m->prod[i].recs);
		m->prod[i].recs = NULL;
	}
	for (i = 0; i < M_NSUB; i++)
		m->sub[i].next = 0;
	m->tail.next = 0;
	if (m->hist != NULL)
		memset(m->hist, 0, (size_t)m->hist_cap * sizeof *m->hist);
	m->hist_n = 0;
	m->durable_claim = -1;
	m->next_seen = 0;
	m->log_first = m->log_last = -1;
	m->cut_pending = 0;
	ledger_reset(m);
	m->c.epochs++;
}
