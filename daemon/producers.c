/*
 * walmmapd - idempotent producers: PRODUCER, the checks of APPEND_P, and
 * the producer table (src/wal_ptab.h) they keep.
 *
 * A connection becomes a producer with PRODUCER (a new id, or the resumed
 * id of the same uid). Its APPEND_P frames carry producer seqs: the frame
 * that starts at the producer's next_pseq is written by conn_append(),
 * which journals each record in the table before the record is published;
 * a frame wholly below next_pseq is a resend, answered from the journal
 * with its original seq and WAL_ACK_F_DUP, and not written again.
 *
 * Everything here runs on the event loop. The table is synced by whichever
 * thread moves the ring's durable seq (wal_ring_set_companion()).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "server.h"
#include "wal_ptab.h"
#include "wal_ring.h"

static int	prod_companion_sync(void *, int64_t, struct wal_error *);

static char	prod_why[WAL_ERROR_MSG_MAX];	/* why there is no table */
static char	prod_fail_why[WAL_ERROR_MSG_MAX]; /* the table's failed sync:
						   written before ... */
static atomic_int prod_table_failed;		/* ... this is set */

static void	prod_fail_later(struct server *, const char *);
static int	prod_busy(void *, int);
static struct conn *prod_holder(struct server *, int slot);
static void	prod_proc(pid_t, char *comm, size_t, char *exe, size_t);

/*
 * Open the producer table after the ring's recovery and reconcile it with
 * the log. A corrupt or missing table is replaced (the log still opens).
 */
void
prod_open(struct server *srv)
{
	struct wal_ptab_config pc;
	struct wal_ptab_recovery info;
	struct wal_error err;
	int64_t next = wal_ring_next_seq(srv->ring);

	memset(&pc, 0, sizeof pc);
	pc.nslots = srv->cfg.producer_slots;
	pc.jcap = srv->cfg.producer_journal;
	if (wal_ptab_open(srv->data_dirfd, srv->cfg.dir, next, &pc,
	    &srv->ptab, &info, &err) != 0) {
		/*
		 * A failed sync of it is a failed sync (fail-stop, as for
		 * the segments'). No room for it: the log does not need it;
		 * run, and refuse producers.
		 */
		if (err.code != ENOSPC && err.code != EDQUOT)
			fatalx("%s", err.msg);
		srv->ptab = NULL;
		snprintf(prod_why, sizeof prod_why, "%s", err.msg);
		log_warnx("no producer table: %s; PRODUCER requests are "
		    "refused until walmmapd is started with one", err.msg);
		return;
	}
	if (info.corrupt)
		log_warnx("producer table %s/%s is unusable (%s): moved to %s "
		    "and replaced by an empty one; producers start anew, and a "
		    "record they resend is written again", srv->cfg.dir,
		    WAL_PTAB_FILE, info.why, info.aside);
	else if (info.created && next > 0)
		log_warnx("producer table %s/%s was missing: created an empty "
		    "one; producers start anew", srv->cfg.dir, WAL_PTAB_FILE);
	if (info.cut_back > 0 || info.advanced > 0 || info.erased > 0 ||
	    info.lost > 0)
		log_info("producer table: %" PRIu64 " producer%s, %" PRIu64
		    " journal entries; %" PRIu64 " entries after the log's end "
		    "erased, %" PRIu64 " producer%s moved back to the log, %"
		    PRIu64 " moved on from the journal, %" PRIu64 " lost",
		    info.producers, info.producers == 1 ? "" : "s",
		    info.entries, info.erased, info.cut_back,
		    info.cut_back == 1 ? "" : "s", info.advanced, info.lost);
	wal_ring_set_companion(srv->ring, prod_companion_sync, srv->ptab);
}

/*
 * The ring was opened again (a restart whose exec failed): the table is
 * its companion again, synced before the ring's first durable seq.
 */
int
prod_ring_reopened(struct server *srv, struct wal_error *err)
{
	if (srv->ptab == NULL)
		return (0);
	wal_ring_set_companion(srv->ring, prod_companion_sync, srv->ptab);
	return (prod_companion_sync(srv->ptab, wal_ring_durable_seq(srv->ring),
	    err));
}

/* After the ring's final sync: unmap the table (synced with it). */
void
prod_close(struct server *srv)
{
	struct wal_error err;

	if (srv->ptab == NULL)
		return;
	/* A failure is a failed sync: exit status 1, as for the segments. */
	if (!srv->sync_failed && wal_ptab_sync(srv->ptab,
	    wal_ring_durable_seq(srv->ring), &err) != 0)
		srv_sync_failed(srv, err.msg, wal_ring_durable_seq(srv->ring));
	wal_ptab_close(srv->ptab);
	srv->ptab = NULL;
}

/* PRODUCER: become producer_id (0: a new one) and say where it stands. */
void
prod_producer(struct conn *c, const struct wal_msg_producer *m)
{
	struct server *srv = c->srv;
	struct wal_ptab *t = srv->ptab;
	struct wal_msg_producer_ok ok;
	struct wal_ptab_slot *s;
	struct wal_error err;
	struct conn *old;
	char comm[16], exe[PATH_MAX];
	int64_t now = wal_now_ns();
	int slot;

	if (t == NULL) {
		conn_error(c, m->hdr.id, WAL_PERR_PRODUCER, 0, "walmmapd has "
		    "no producer table: %s", prod_why);
		return;
	}
	if (c->producer_id != 0) {
		conn_error(c, m->hdr.id, WAL_PERR_PRODUCER, 0, "this "
		    "connection is already producer %" PRIu64, c->producer_id);
		return;
	}
	if (c->shm != NULL) {
		conn_error(c, m->hdr.id, WAL_PERR_PRODUCER, 0, "PRODUCER after "
		    "SHM_OPEN: a ring opened before carries no producer seqs");
		return;
	}
	if (m->flags != 0) {
		conn_error(c, m->hdr.id, WAL_PERR_PROTO, 0, "PRODUCER with "
		    "unknown flags 0x%x", m->flags);
		return;
	}
	if (m->producer_id == 0) {
		slot = wal_ptab_create(t, (uint32_t)c->uid, (uint32_t)c->gid,
		    now, now - (int64_t)srv->cfg.producer_expire_s *
		    1000000000, prod_busy, srv);
		if (slot < 0) {
			conn_error(c, m->hdr.id, WAL_PERR_PRODUCER, 0, "producer "
			    "table full: %u producers, none idle for %" PRIu64
			    "s (producer_expire) and unused", t->nslots,
			    srv->cfg.producer_expire_s);
			return;
		}
	} else {
		if ((slot = wal_ptab_find(t, m->producer_id)) < 0) {
			conn_error(c, m->hdr.id, WAL_PERR_PRODUCER, 0,
			    "producer %" PRIu64 " is unknown (never assigned, "
			    "or expired after producer_expire idle)",
			    m->producer_id);
			return;
		}
		s = &t->slots[slot];
		if (s->uid != (uint32_t)c->uid) {
			conn_error(c, m->hdr.id, WAL_PERR_PRODUCER, 0,
			    "producer %" PRIu64 " belongs to uid %" PRIu32
			    ", not to uid %ld", m->producer_id, s->uid,
			    (long)c->uid);
			return;
		}
		if (s->flags & WAL_PTAB_F_LOST) {
			conn_error(c, m->hdr.id, WAL_PERR_PRODUCER, 0,
			    "producer %" PRIu64 "'s position was lost when the "
			    "log was recovered (its table entry was ahead of "
			    "the log); start a new producer", m->producer_id);
			return;
		}
		/* Its old ring writes nothing more: the producer resends. */
		shm_producer_resumed(srv, slot);
		if ((old = prod_holder(srv, slot)) != NULL) {
			/* The resumed connection wins; the old one is dead. */
			conn_error(old, 0, WAL_PERR_PRODUCER, 1, "producer %"
			    PRIu64 " was resumed by another connection (pid "
			    "%ld)", m->producer_id, (long)c->pid);
			old->producer_id = 0;
			old->producer_slot = -1;
		}
	}
	prod_proc(c->pid, comm, sizeof comm, exe, sizeof exe);
	if (wal_ptab_claim(t, slot, (uint32_t)c->pid, comm, exe, now,
	    &err) != 0) {
		/*
		 * A failed write-back of the table is a failed sync: the
		 * kernel reports it once, so nothing it held can be called
		 * durable again (fail-stop, as for a segment).
		 */
		conn_error(c, m->hdr.id, WAL_PERR_SYNC, 0, "sync failed: %s; "
		    "walmmapd is stopping", err.msg);
		prod_fail_later(srv, err.msg);
		return;
	}
	s = &t->slots[slot];
	c->producer_id = s->id;
	c->producer_slot = slot;
	memset(&ok, 0, sizeof ok);
	ok.hdr.type = WAL_MSG_PRODUCER_OK;
	ok.hdr.len = sizeof ok;
	ok.hdr.id = m->hdr.id;
	ok.producer_id = s->id;
	ok.next_pseq = s->next_pseq;
	ok.last_seq = s->last_seq;
	ok.durable_seq = wal_ring_durable_seq(srv->ring);
	conn_queue_fds(c, &ok, sizeof ok, NULL, 0);
}

/*
 * APPEND_P: where the frame stands against the producer's next_pseq.
 * Returns the producer seq of the first record to write (first_pseq, or
 * next_pseq for the rest of a frame cut short before), or 0 when the
 * frame was answered here (a duplicate, or an error).
 */
uint64_t
prod_append_check(struct conn *c, const uint8_t *buf, size_t len)
{
	struct server *srv = c->srv;
	struct wal_msg_append_p a;
	struct wal_ptab_slot *s;
	uint64_t next, end, pseq;
	int64_t first;
	uint32_t n, left;
	unsigned ack;

	(void)len;
	memcpy(&a, buf, sizeof a);
	if (c->producer_slot < 0) {
		conn_error(c, a.hdr.id, WAL_PERR_PRODUCER, 0, "APPEND_P before "
		    "PRODUCER");
		return (0);
	}
	s = &srv->ptab->slots[c->producer_slot];
	next = s->next_pseq;
	end = a.first_pseq + a.count;
	if (a.first_pseq == next)
		return (next);
	if (a.first_pseq > next) {
		conn_error(c, a.hdr.id, WAL_PERR_PSEQ, 0, "producer seq %"
		    PRIu64 " jumps: producer %" PRIu64 " is at %" PRIu64,
		    a.first_pseq, c->producer_id, next);
		return (0);
	}
	/*
	 * A resend: its records from first_pseq up to next_pseq are in the
	 * log already. All of them: one DUP entry. Some (a frame that a
	 * crash or a full disk cut short): a DUP entry for those, and the
	 * rest is written now, with an entry of its own (same id).
	 */
	ack = a.ack == WAL_ACK_DEFAULT ? c->ack : a.ack;
	if (ack == WAL_ACK_DURABLE && srv->sync_failed) {
		conn_error(c, a.hdr.id, WAL_PERR_SYNC, 0, "%s; durable appends "
		    "are refused", srv->sync_error);
		return (0);
	}
	/*
	 * One DUP entry per run of consecutive seqs: a frame a crash cut
	 * short and the rest written later is in two runs, with other
	 * records between them. What the journal no longer holds: one entry
	 * with seq -1, held at level durable until the producer's last.
	 */
	left = end > next ? (uint32_t)(next - a.first_pseq) : a.count;
	for (pseq = a.first_pseq; left > 0; pseq += n, left -= n) {
		first = wal_ptab_lookup_run(srv->ptab, c->producer_id, pseq,
		    left, &n);
		if (first < 0)
			n = left;
		conn_ack_dup(c, a.hdr.id, first, n, ack, first >= 0 ?
		    first + n - 1 : s->last_seq);
	}
	return (end > next ? next : 0);
}

/* After conn_append() wrote a frame of this producer. */
void
prod_appended(struct conn *c, uint64_t next_pseq, int64_t last_seq,
    int64_t now_ns)
{
	wal_ptab_advance(c->srv->ptab, c->producer_slot, next_pseq, last_seq,
	    now_ns);
}

/* The connection goes: its producer may be resumed by another. */
void
prod_conn_gone(struct conn *c)
{
	c->producer_id = 0;
	c->producer_slot = -1;
}

/*
 * srv_sync_failed() from the loop, not from inside a connection's frame:
 * stopping reads every connection, this one too.
 */
static void
prod_fail_cb(int fd, short ev, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)ev;
	srv_sync_failed(srv, prod_fail_why, wal_ring_durable_seq(srv->ring));
}

static void
prod_fail_later(struct server *srv, const char *why)
{
	struct timeval now = { 0, 0 };

	snprintf(prod_fail_why, sizeof prod_fail_why, "%s", why);
	/* Pairs with the acquire load in prod_companion_sync(). */
	atomic_store_explicit(&prod_table_failed, 1, memory_order_release);
	if (event_base_once(srv->base, -1, EV_TIMEOUT, prod_fail_cb, srv,
	    &now) == -1)
		fatalx("cannot schedule the stop after a failed sync: %s", why);
}

/* Ring companion: sync the table before a durable seq is published. */
static int
prod_companion_sync(void *arg, int64_t covered, struct wal_error *err)
{
	/*
	 * After a failed write-back of the table a later sync proves
	 * nothing (the kernel reports a failure once): fail every sync.
	 */
	if (atomic_load_explicit(&prod_table_failed, memory_order_acquire))
		return (wal_seterr(err, EIO, "%s", prod_fail_why));
	return (wal_ptab_sync(arg, covered, err));
}

/* Is the producer of slot connected (so it cannot expire)? */
static int
prod_busy(void *arg, int slot)
{
	return (prod_holder(arg, slot) != NULL ||
	    shm_producer_busy(arg, slot));
}

static struct conn *
prod_holder(struct server *srv, int slot)
{
	struct conn *c;

	TAILQ_FOREACH(c, &srv->conns, entry)
		if (c->producer_slot == slot && c->producer_id != 0)
			return (c);
	return (NULL);
}

/*
 * The kernel's name for pid (/proc/PID/comm) and the name of its
 * executable (/proc/PID/exe): what the process cannot choose for us.
 */
static void
prod_proc(pid_t pid, char *comm, size_t commlen, char *exe, size_t exelen)
{
	char path[64], link[PATH_MAX];
	const char *b;
	ssize_t n;
	int fd;

	snprintf(comm, commlen, "?");
	snprintf(exe, exelen, "?");
	if (pid <= 0)
		return;
	snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) != -1) {
		n = read(fd, comm, commlen - 1);
		close(fd);
		if (n > 0) {
			comm[n] = '\0';
			comm[strcspn(comm, "\n")] = '\0';
		}
	}
	snprintf(path, sizeof path, "/proc/%ld/exe", (long)pid);
	n = readlink(path, link, sizeof link - 1);
	if (n > 0) {
		link[n] = '\0';
		b = strrchr(link, '/');
		snprintf(exe, exelen, "%s", b != NULL ? b + 1 : link);
	}
}
