/*
 * walmmapd tests - the model's side of its workers and readers (see
 * tsmodel_int.h): producers' answers, subscribers, walctl tail -f and the
 * file reader, each record they see checked against the history.
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
		if ((r = m_rec_of(m, p, res->n)) == NULL)
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
			m_claim_durable(m, res->seq);
		}
		m_observe_key(m, res->seq, p, res->n, "an acknowledgement");
		break;
	case RES_WAIT:
		for (i = pr->cmd_n0; i < pr->cmd_n0 + pr->cmd_count; i++) {
			if ((r = m_rec_of(m, p, i)) == NULL || r->state !=
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
			if ((r = m_rec_of(m, p, i)) != NULL && (r->state ==
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
			m_observe_key(m, it->seq, it->p, it->n, i == 0 ?
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
		    !s->slow && m_daemon_alive_after(m, GONE_MS))
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
			    m_daemon_alive_after(m, GONE_MS))
				m_fail(m, "walctl tail: unexpected line "
				    "\"%.200s\"", line);
		}
		else {
			sub_record(m, "walctl tail", &t->next, &t->loose,
			    seq);
			m_observe(m, seq, (const uint8_t *)sp + 1, (size_t)(nl -
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
	if (t->gen == m->gen && !m->fault_on && m_daemon_alive_after(m,
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
void
m_tail_start(struct model *m)
{
	struct m_tail *t = &m->tail;
	char from[32];
	int pfd[2];

	if (t->pid != 0)
		m_tail_stop(m);
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
void
m_tail_stop(struct model *m)
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

	m_tail_stop(m);
	if (m->hist_n > lo)
		m->tail.next = lo + (int64_t)(pick % (uint64_t)(m->hist_n - lo +
		    1));
	if (m->running)
		m_tail_start(m);
}

/* Close the file reader (it reopens at the oldest record). */
void
m_fr_close(struct model *m)
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
			m_fr_close(m);
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
		m_observe(m, rec.seq, rec.data, rec.size, "the file reader");
	}
	if (budget >= 0 && rc < 0) {
		first = log_first_now(m);
		if (m->fr_next >= 0 && first > m->fr_next) {
			/* Retention removed what it had not read yet. */
			m_fr_close(m);
			return;
		}
		m_fail(m, "file reader: %s at seq %" PRId64 " (%s), though the "
		    "log holds seq %" PRId64 " on", walmmap_strerror(rc),
		    m->fr_next, walmmap_reader_errmsg(m->fr), first);
		m_fr_close(m);
	}
}

/* Read what workers sent; wait up to timeout_ms for the first of it. */
void
m_pump(struct model *m, int timeout_ms)
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
void
m_sub_start(struct model *m, unsigned i)
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
void
m_sub_stop(struct model *m, unsigned i)
{
	int64_t until = tw_mono_ns() + (int64_t)HANG_MS * 1000000;

	m_pump(m, 0);
	if (!m->sub[i].active)
		return;
	m->sub[i].stopping = 1;
	sub_cmd(m, i, S_STOP, 0, 0);
	while (m->sub[i].stopping && tw_mono_ns() < until)
		m_pump(m, 100);
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

	m_sub_stop(m, i);
	if (m->hist_n > lo)
		m->sub[i].next = lo + (int64_t)(pick % (uint64_t)(m->hist_n -
		    lo + 1));
	if (m->running)
		m_sub_start(m, i);
}
