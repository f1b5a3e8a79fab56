/*
 * walmmapd tests - the model behind check_model (see tsmodel.h): set-up
 * and failure reports, the record history, the daemon, reading the log
 * back and the checks after each step, appends, epochs. The workers'
 * side is in tsreaders.c, power cuts and faults in tsfault.c.
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
#include "tsmodel_int.h"
#include "wal_dir.h"
#include "wal_format.h"
#include "wal_segment.h"
#include "walmmap.h"

const char *const r_state_names[] = {
	"pending", "sent", "unknown", "refused", "acknowledged written",
	"acknowledged durable"
};

static void	 scan(struct model *, int after_cut);
static void	 status(struct model *, int64_t *next, int64_t *first);

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
	m_tail_stop(m);
	m_fr_close(m);
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
struct m_rec *
m_rec_of(struct model *m, unsigned p, uint64_t n)
{
	struct m_prod *pr = &m->prod[p];

	if (p >= M_NPROD || n < pr->base || n >= pr->n)
		return (NULL);
	return (&pr->recs[n - pr->base]);
}

/* The line of step number step. */
const char *
m_step_of(struct model *m, int step)
{
	return (step >= 0 && (size_t)step < m->nsteps ? m->steps[step] : "?");
}

/* A record appears at seq (seen by who): check it against the model. */
void
m_observe_key(struct model *m, int64_t seq, unsigned p, uint64_t n,
    const char *who)
{
	struct m_rec *r = m_rec_of(m, p, n);
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
		    "step %d (%s)", who, seq, p, n, r->step, m_step_of(m,
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
void
m_observe(struct model *m, int64_t seq, const uint8_t *data, size_t len,
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
	m_observe_key(m, seq, p, n, who);
}

/* The daemon claims everything up to seq durable. */
void
m_claim_durable(struct model *m, int64_t seq)
{
	if (seq > m->durable_claim)
		m->durable_claim = seq;
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
int
m_daemon_alive(struct model *m)
{
	return (m_daemon_alive_after(m, 0));
}

/*
 * m_daemon_alive(), for when a client just lost it: a daemon that stops
 * closes its connections before it exits, so give it ms to be gone.
 */
int
m_daemon_alive_after(struct model *m, int ms)
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
		m_judge_exit(m);
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
		m_sub_start(m, i);
	m_tail_start(m);
	return (0);
}

/* SIGTERM the daemon; returns its exit status. */
int
m_stop(struct model *m)
{
	int rc;

	if (m->exited)
		m_judge_exit(m);
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
		m_judge_exit(m);
	if (!m->running)
		return;
	ts_daemon_kill(&m->d);
	m->running = 0;
	m->last_exit = -1;
	m->c.kills++;
	m_after_death(m);
}

/* Wait (bounded) until no producer command runs. */
void
m_prods_idle(struct model *m)
{
	int64_t until = tw_mono_ns() + (int64_t)HANG_MS * 1000000;
	unsigned i;
	int busy;

	do {
		busy = 0;
		for (i = 0; i < M_NPROD; i++)
			busy |= m->prod[i].busy;
		if (busy)
			m_pump(m, 50);
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
	m_prods_idle(m);
}

/* The daemon is gone: quiesce the workers, check the files. */
void
m_after_death(struct model *m)
{
	unsigned i;

	m->running = 0;
	m->exited = 0;
	m->d.pid = 0;
	m_prods_idle(m);
	prods_close(m);
	for (i = 0; i < M_NSUB; i++)
		m_sub_stop(m, i);
	m_tail_stop(m);
	m_fr_close(m);
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
			m_observe(m, rec.seq, rec.payload, rec.size, after_cut ?
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
				if ((r = m_rec_of(m, (unsigned)p, n)) != NULL) {
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
				    m_step_of(m, r->step), first, last);
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
		if (m_daemon_alive_after(m, GONE_MS))
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
	m_claim_durable(m, durable);
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
		m_pump(m, 50);
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
void
m_judge_exit(struct model *m)
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

	m_pump(m, 0);
	(void)m_daemon_alive(m);
	if (m->exited) {
		m_judge_exit(m);
		return;
	}
	scan(m, 0);
	if (!m->running)
		return;
	status(m, &next, NULL);
	if (!m_daemon_alive(m)) {
		m_check(m);	/* it exited meanwhile: as above */
		return;
	}
	/* Subscriptions cut by a fault or for lagging start again. */
	for (i = 0; i < M_NSUB; i++)
		if (!m->sub[i].active && !m->o.no_subs)
			m_sub_start(m, i);
	if (m->tail.pid == 0 && !m->o.no_subs)
		m_tail_start(m);
	if (next >= 0)
		progress(m, next);
}

/* Let workers and the daemon run for ms. */
void
m_settle(struct model *m, int ms)
{
	int64_t until = tw_mono_ns() + (int64_t)ms * 1000000;

	while (tw_mono_ns() < until)
		m_pump(m, 20);
}

/* Wait (bounded) for at most n segment files. */
int
m_wait_segments(struct model *m, unsigned n, int timeout_ms)
{
	int64_t until = tw_mono_ns() + (int64_t)timeout_ms * 1000000;
	int k;

	while ((k = ts_count_files(m->d.data, "wal_mmap_")) > (int)n &&
	    tw_mono_ns() < until)
		m_pump(m, 50);
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
			m_prods_idle(m);	/* reports which one hangs */
			break;
		}
		m_pump(m, kill_at != INT64_MAX ? 1 : 20);
	}
	if (kill_at != INT64_MAX) {
		/* Everything returned before the kill was due: kill now. */
		if (cut_mode >= -1)
			m_power_cut(m, cut_mode, rng);
		else
			m_kill(m);
	}
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
			m_claim_durable(m, durable);
			m_fault_sync_answer(m, t, durable);
		}
	} else if (!m->fault_on && !m->disk_full && m_daemon_alive_after(m,
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
	    m_daemon_alive_after(m, GONE_MS))
		m_fail(m, "walctl rotate failed (exit %d) with no fault: %s",
		    rc, out);
	free(out);
	return (rc);
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
			m_observe_key(m, rec.seq, p, n, "an earlier run");
		}
		free(img);
	}
	wal_seglist_free(&list);
	m_ledger_reset(m);
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
	m_ledger_reset(m);
	m->c.epochs++;
}
