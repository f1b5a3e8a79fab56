/*
 * walmmapd - shared-memory rings: one per connection that asks, drained by
 * the event-loop thread (the ring's writer) straight into the segment.
 *
 * The drainer runs as one libevent timer over every ring. While records
 * flow it polls without system calls; after shm_spin without any it sets
 * each ring's daemon_sleeping flag, fences every producer at once
 * (membarrier(2), see src/wal_shm.h) and returns to the loop, where a
 * producer's doorbell wakes it, or a re-check of every tail after
 * WAL_SHM_RECHECK_US and then every WAL_SHM_RECHECK_IDLE_MS
 * (shm_recheck). Every SHM_SLICE_NS it re-adds itself with
 * a zero timeout and returns, so the loop polls sockets, runs timers and
 * handles signals before the next slice; its idle clock (drain_idle) runs
 * on across slices. Rings are served round robin, SHM_PASS_BUDGET records
 * each per pass, so no producer can hold the loop or starve another.
 *
 * The ring is the producer's memory and may change under us at any time:
 * wal_shm_* (src/wal_shm.c) reads each value once and checks it. A ring
 * that fails a check is closed with a fatal ERROR on the connection; its
 * records already written stay written, and nothing else is touched.
 *
 * Nothing a client holds can block the daemon: the doorbells are one
 * socket pair per ring, of which the daemon keeps an end no client has
 * (its flags are ours) and uses it with MSG_DONTWAIT only; the memfd is
 * only mapped. A client that fills, closes or re-flags its end harms only
 * itself.
 *
 * Memory: a ring is at most shm_size data bytes (whatever the client asks)
 * and all rings together, closing ones included, at most shm_total.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "forward.h"
#include "handover.h"
#include "log.h"
#include "server.h"
#include "wal_ptab.h"
#include "wal_ring.h"
#include "wal_shm.h"

#define SHM_PASS_BUDGET		4096	/* records per ring per pass */
#define SHM_CATCH_UP_BUDGET	4096	/* records per catch-up step */
#define SHM_SLICE_NS		500000	/* then yield to the loop */
#define SHM_BELL_READS		64	/* doorbell messages per callback */
#define SHM_MARKS		32
#define SHM_RUN			32	/* records found and written at once */

#ifndef SO_PASSRIGHTS
#define SO_PASSRIGHTS		83	/* Linux 6.16 */
#endif

/* Records [.., count) of a ring end with seq: durable once seq is. */
struct shm_mark {
	uint64_t	count;
	int64_t		seq;
};

struct shm_ring {
	struct server		*srv;
	struct conn		*conn;		/* NULL once closing */
	pid_t			 pid;		/* the producer, for messages */
	uid_t			 uid;		/* its uid: shm_total_per_uid */
	struct wal_shm_consumer	 cons;
	void			*base;
	size_t			 maplen;
	int			 bell;		/* our end of the doorbell pair */
	int			 memfd;		/* kept for a hand-over, or -1 */
	struct event		*ev_bell;
	struct shm_mark		 marks[SHM_MARKS];
	size_t			 nmarks;
	uint64_t		 durable;	/* records durable */
	int64_t			 durable_want;	/* F_DURABLE seq owed, -1 */
	uint64_t		 catch_to;	/* catching up to this tail */
	int			 catching;
	int			 closing;	/* connection gone: drain, free */
	int			 broken;	/* failed a check: no more reads */
	int			 bell_wait;	/* not read: closer_room() */
	uint64_t		 producer_id;	/* idempotent producer, or 0 */
	int			 producer_slot;	/* in srv->ptab, -1: none */
	uint64_t		 run_pseq;	/* pseq of the run's first record
						   (shm_journal) */
	TAILQ_ENTRY(shm_ring)	 entry;
};

static void	shm_bell_cb(int, short, void *);
static int	shm_drain_ring(struct shm_ring *, unsigned budget, int64_t ts,
		    int load);
static void	shm_fail(struct shm_ring *, unsigned code, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));
static void	shm_sync_refuse(struct shm_ring *);
static void	shm_free(struct shm_ring *);
static void	shm_release(struct shm_ring *);
static void	shm_publish(struct shm_ring *);
static void	shm_journal(void *, unsigned, int64_t);
static void	shm_schedule(struct server *);
static void	shm_recheck(struct server *, int first);
static void	shm_wake_producer(struct shm_ring *);
static int	shm_sleep_all(struct server *);
static uint64_t	shm_mono_ns(void);
static uint64_t	shm_uid_bytes(const struct server *, uid_t);

static int	shm_nofence_said;	/* logged that producers fence */

static inline void
shm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* SHM_OPEN: make a ring for this connection and pass it. */
void
shm_open_ring(struct conn *c, const struct wal_msg_shm_open *m)
{
	struct server *srv = c->srv;
	struct wal_msg_shm_ready rd;
	struct shm_ring *r = NULL;
	uint64_t size;
	int mfd = -1, sv[2] = { -1, -1 }, fds[3], saved, off = 0;

	if (!srv->cfg.shm) {
		conn_error(c, m->hdr.id, WAL_PERR_UNSUPPORTED, 0,
		    "shared-memory rings are disabled (shm = no)");
		return;
	}
	if (c->shm != NULL) {
		conn_error(c, m->hdr.id, WAL_PERR_PROTO, 0, "this connection "
		    "already has a shared-memory ring");
		return;
	}
	/* A client may ask for less than shm_size, never for more. */
	size = m->size != 0 && m->size < srv->cfg.shm_size ? m->size :
	    srv->cfg.shm_size;
	size = wal_shm_ring_size(size);
	if (srv->shm_bytes + WAL_SHM_HEADER_SIZE + size > srv->cfg.shm_total) {
		log_debug("client pid %ld: no shared-memory ring: shm_total "
		    "reached", (long)c->pid);
		conn_error(c, m->hdr.id, WAL_PERR_BUSY, 0, "shared-memory rings "
		    "already hold %" PRIu64 " of shm_total %" PRIu64 " bytes; "
		    "no room for a ring of %" PRIu64 " bytes", srv->shm_bytes,
		    srv->cfg.shm_total, WAL_SHM_HEADER_SIZE + size);
		return;
	}
	/* One uid must not take every ring's memory from the others. */
	if (shm_uid_bytes(srv, c->uid) + WAL_SHM_HEADER_SIZE + size >
	    srv->cfg.shm_total_per_uid) {
		if (srv_log_client(srv))
			log_warnx("client pid %ld uid %ld: no shared-memory "
			    "ring: its uid holds shm_total_per_uid", (long)c->pid,
			    (long)c->uid);
		conn_error(c, m->hdr.id, WAL_PERR_BUSY, 0, "shared-memory rings "
		    "of uid %ld already hold %" PRIu64 " of shm_total_per_uid "
		    "%" PRIu64 " bytes; no room for a ring of %" PRIu64
		    " bytes", (long)c->uid, shm_uid_bytes(srv, c->uid),
		    srv->cfg.shm_total_per_uid, WAL_SHM_HEADER_SIZE + size);
		return;
	}

	if ((r = calloc(1, sizeof *r)) == NULL)
		goto fail;
	r->srv = srv;
	r->conn = c;
	r->pid = c->pid;
	r->uid = c->uid;
	r->bell = -1;
	r->memfd = -1;
	r->base = MAP_FAILED;
	r->durable_want = -1;
	r->producer_slot = -1;
	r->maplen = WAL_SHM_HEADER_SIZE + size;
	mfd = memfd_create("walmmapd-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd == -1 || ftruncate(mfd, (off_t)r->maplen) == -1)
		goto fail;
	/* The producer must not shrink it under us (SIGBUS). */
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
	    F_SEAL_SEAL) == -1)
		goto fail;
	r->base = mmap(NULL, r->maplen, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_POPULATE, mfd, 0);
	if (r->base == MAP_FAILED)
		goto fail;
	wal_shm_format(r->base, size, wal_shm_max_record(size,
	    srv->cfg.max_record));
	if (!wal_shm_membarrier_ok() && !shm_nofence_said) {
		shm_nofence_said = 1;
		log_info("membarrier(2) MEMBARRIER_CMD_GLOBAL_EXPEDITED is "
		    "not available: shared-memory producers fence each "
		    "publish themselves");
	}
	wal_shm_consumer_init(&r->cons, r->base, size, wal_shm_max_record(size,
	    srv->cfg.max_record));
	if (c->producer_id != 0 && srv->ptab != NULL) {
		/* Its records take the producer's seqs from next_pseq on. */
		r->producer_id = c->producer_id;
		r->producer_slot = c->producer_slot;
		((struct wal_shm_header *)r->base)->first_pseq =
		    srv->ptab->slots[c->producer_slot].next_pseq;
	}
	/*
	 * The doorbells: we keep sv[0], a description no client holds, and
	 * the producer gets sv[1] (twice: its bell to us and ours to it).
	 */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0, sv) == -1)
		goto fail;
	r->bell = sv[0];
	/*
	 * A ring carries no descriptors: refuse them (Linux 6.16 and later;
	 * older kernels let them through, and shm_bell_cb takes care).
	 */
	(void)setsockopt(r->bell, SOL_SOCKET, SO_PASSRIGHTS, &off, sizeof off);
	r->ev_bell = event_new(srv->base, r->bell, EV_READ | EV_PERSIST,
	    shm_bell_cb, r);
	if (r->ev_bell == NULL)
		goto fail;
	/* A restart hands the ring over (handover.c): keep the memfd. */
	if ((r->memfd = fcntl(mfd, F_DUPFD_CLOEXEC, 3)) == -1)
		goto fail;
	/* The queue closes what it passes: give it its own copies. */
	fds[0] = mfd;
	fds[1] = sv[1];
	fds[2] = fcntl(sv[1], F_DUPFD_CLOEXEC, 0);
	mfd = sv[1] = -1;
	if (fds[2] == -1) {
		saved = errno;
		close(fds[0]);
		close(fds[1]);
		conn_error(c, m->hdr.id, WAL_PERR_IO, 0, "cannot pass the "
		    "shared-memory ring: %s", strerror(saved));
		shm_free(r);
		return;
	}
	memset(&rd, 0, sizeof rd);
	rd.hdr.type = WAL_MSG_SHM_READY;
	rd.hdr.len = sizeof rd;
	rd.hdr.id = m->hdr.id;
	rd.size = size;
	rd.header_size = WAL_SHM_HEADER_SIZE;
	rd.max_record = r->cons.max_record;
	if (conn_queue_fds(c, &rd, sizeof rd, fds, 3) != 0) {
		/* Out of memory: the queue closed fds, the client is closing. */
		shm_free(r);
		return;
	}
	event_add(r->ev_bell, NULL);
	c->shm = r;
	TAILQ_INSERT_TAIL(&srv->shms, r, entry);
	srv->nshms++;
	srv->shm_bytes += r->maplen;
	/* Its tail is looked at even before it first rings (shm_recheck). */
	if (!srv->drain_scheduled && !event_pending(srv->ev_drain, EV_TIMEOUT,
	    NULL))
		shm_recheck(srv, 0);
	log_debug("client pid %ld: shared-memory ring of %" PRIu64 " bytes",
	    (long)c->pid, size);
	return;
fail:
	saved = errno;
	conn_error(c, m->hdr.id, WAL_PERR_IO, 0, "cannot create a %" PRIu64
	    "-byte shared-memory ring: %s", size, strerror(saved));
	if (mfd != -1)
		close(mfd);
	if (sv[1] != -1)
		close(sv[1]);
	if (r != NULL)
		shm_free(r);
}

/*
 * The connection is going away. What its producer published until now is
 * still written (a producer that died mid-record never published that
 * record), by the drainer, a budget at a time between other work; the
 * ring is freed once that is done.
 */
void
shm_close_ring(struct conn *c)
{
	struct shm_ring *r = c->shm;
	char why[256];
	int rc;

	if (r == NULL)
		return;
	c->shm = NULL;
	r->conn = NULL;
	r->durable_want = -1;
	r->catching = 0;
	if (r->broken || (rc = wal_shm_load_tail(&r->cons, why,
	    sizeof why)) == 0) {
		shm_release(r);
		return;
	}
	if (rc < 0) {
		if (srv_log_client(r->srv))
			log_warnx("client pid %ld: shared-memory ring corrupt "
			    "at close: %s; nothing more written from it",
			    (long)r->pid, why);
		shm_release(r);
		return;
	}
	r->closing = 1;
	event_del(r->ev_bell);
	shm_schedule(r->srv);
}

/*
 * Called before each socket frame of the connection is received: the ring
 * records its producer published before it sent the frame are written
 * first, so a client's records keep their order across both paths. The
 * frame's presence is checked with MSG_PEEK, then the tail is loaded: every
 * record published before the frame was sent lies below it. Returns 1 when
 * the frame may be received now (or the receive will see an end or error),
 * 0 when no frame waits or records remain after SHM_CATCH_UP_BUDGET (the
 * read event fires again on the next loop pass and the drainer helps).
 */
int
shm_catch_up(struct conn *c)
{
	struct shm_ring *r = c->shm;
	char why[256], b;
	ssize_t n;

	if (r == NULL || r->broken)
		return (1);
	if (!r->catching) {
		n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR))
			return (0);
		if (n <= 0)
			return (1);
		if (wal_shm_load_tail(&r->cons, why, sizeof why) < 0) {
			shm_fail(r, WAL_PERR_PROTO, "shared-memory ring corrupt: "
			    "%s", why);
			return (1);
		}
		r->catch_to = r->cons.tail;
		r->catching = 1;
	}
	if (r->cons.head < r->catch_to)
		(void)shm_drain_ring(r, SHM_CATCH_UP_BUDGET, -1, 0);
	if (r->broken)
		return (1);
	if (r->cons.head < r->catch_to) {
		shm_schedule(c->srv);
		return (0);
	}
	r->catching = 0;
	return (1);
}

/*
 * Write everything the connection's producer published until now, at
 * once (at shutdown, before the final sync: bounded by the ring's size).
 */
void
shm_drain_published(struct conn *c)
{
	struct shm_ring *r = c->shm;

	if (r == NULL || r->broken)
		return;
	r->catching = 0;
	(void)shm_drain_ring(r, UINT32_MAX, -1, 1);
}

/*
 * The loop has stopped and every connection is closed: write what the
 * closing rings still hold and free them.
 */
void
shm_finish(struct server *srv)
{
	struct shm_ring *r;

	while ((r = TAILQ_FIRST(&srv->shms)) != NULL) {
		if (r->conn != NULL) {
			shm_close_ring(r->conn);
			continue;
		}
		while (!r->broken && r->cons.head < r->cons.tail &&
		    shm_drain_ring(r, UINT32_MAX, -1, 0) > 0)
			;
		shm_release(r);
	}
}

/* A sync finished: tell each ring how many of its records are durable. */
void
shm_durable(struct conn *c, int64_t durable)
{
	struct shm_ring *r = c->shm;
	size_t i = 0;

	/* After a failed sync nothing is durable any more (sticky). */
	if (r == NULL || r->broken || c->srv->sync_failed)
		return;
	while (i < r->nmarks && r->marks[i].seq <= durable)
		r->durable = r->marks[i++].count;
	if (i > 0) {
		memmove(r->marks, r->marks + i, (r->nmarks - i) *
		    sizeof r->marks[0]);
		r->nmarks -= i;
	}
	if (wal_shm_publish_durable(&r->cons, r->durable, durable))
		shm_wake_producer(r);
	if (r->durable_want >= 0 && r->durable_want <= durable) {
		r->durable_want = -1;
		conn_expect(c);
	}
}

/* Does the ring owe a durable count (see conn_durable_owed)? */
int
shm_durable_owed(const struct conn *c)
{
	return (c->shm != NULL && !c->shm->broken &&
	    c->shm->durable_want >= 0);
}

/*
 * A sync failed (srv_sync_failed): the ring's durable count is final. The
 * header says so (failed), so a producer waiting for durability turns to
 * its socket; one that waits for it already gets a fatal ERROR now, one
 * that asks later has its durable record refused the same way
 * (shm_sync_refuse). Written records are unaffected.
 */
void
shm_sync_failed(struct conn *c, const char *why)
{
	struct shm_ring *r = c->shm;

	if (r == NULL || r->broken)
		return;
	if (wal_shm_publish_failed(&r->cons))
		shm_wake_producer(r);
	if (r->durable_want >= 0) {
		r->broken = 1;
		conn_error(c, 0, WAL_PERR_SYNC, 1, "%s", why);
	}
}

/*
 * The drainer: poll every ring until none has had records for shm_spin,
 * then sleep on the doorbells. After each SHM_SLICE_NS it yields to the
 * loop with a zero-timeout timer (event_active() would run it again before
 * the loop polls anything) and comes back on the loop's next pass.
 */
void
srv_shm_drain_cb(int fd, short ev, void *arg)
{
	static const struct timeval zero = { 0, 0 };
	struct server *srv = arg;
	struct shm_ring *r;
	struct conn *c;
	uint64_t start, spin_ns;
	unsigned left;
	int64_t ts;
	int n, total, sync = 0, yield = 0;

	(void)fd;
	(void)ev;
	if (fwd_blocking(srv)) {
		/* Producers wait for a forwarder: shm_kick() goes on. */
		srv->drain_scheduled = 0;
		return;
	}
	if (!srv->drain_scheduled) {
		/* A re-check while asleep (shm_recheck). */
		if (srv->nshms == 0)
			return;
		if (shm_sleep_all(srv)) {
			shm_recheck(srv, 0);
			return;
		}
		srv->drain_scheduled = 1;
		srv->drain_idle = shm_mono_ns();
	}
	spin_ns = (uint64_t)srv->cfg.shm_spin_us * 1000;
	start = shm_mono_ns();
	TAILQ_FOREACH(r, &srv->shms, entry)
		if (!r->closing)
			wal_shm_awake(&r->cons);
	for (;;) {
		ts = wal_now_ns();
		total = 0;
		/* Each ring once; the one served first now goes last. */
		for (left = srv->nshms; left > 0 && !yield; left--) {
			r = TAILQ_FIRST(&srv->shms);
			TAILQ_REMOVE(&srv->shms, r, entry);
			TAILQ_INSERT_TAIL(&srv->shms, r, entry);
			n = shm_drain_ring(r, SHM_PASS_BUDGET, ts, 1);
			total += n;
			/* Owed, even if covered already (conn_durable_owed). */
			if (n > 0 && r->conn != NULL && r->durable_want >= 0)
				sync = 1;
			if (r->broken && (c = r->conn) != NULL) {
				/* The fatal ERROR is queued: close. */
				shm_close_ring(c);
				conn_flush(c);
			} else if (r->broken || (r->closing &&
			    r->cons.head == r->cons.tail))
				shm_release(r);
			if (shm_mono_ns() - start >= SHM_SLICE_NS)
				yield = 1;
		}
		if (total > 0) {
			srv->drain_idle = shm_mono_ns();
			if (srv->sub_dirty)
				srv_wake_subscribers(srv);
			if (sync) {
				srv_request_sync(srv);
				sync = 0;
			}
		}
		if (srv->nshms == 0)
			break;
		if (yield) {
			/* Sockets, timers and signals first; then on. */
			event_add(srv->ev_drain, &zero);
			return;
		}
		if (shm_mono_ns() - srv->drain_idle >= spin_ns &&
		    shm_sleep_all(srv)) {
			srv->drain_scheduled = 0;
			shm_recheck(srv, 1);
			return;
		}
		shm_cpu_relax();
	}
	srv->drain_scheduled = 0;
}

/*
 * The drainer fell asleep (first) or found nothing at a re-check: look at
 * every tail again after WAL_SHM_RECHECK_US, then every
 * WAL_SHM_RECHECK_IDLE_MS. A producer that publishes without a fence
 * (WAL_SHM_FEAT_ASYM) on a kernel without membarrier(2), or without
 * having registered for it, may have had its tail in its store buffer
 * while we looked; and one that never rings is found too. So no
 * published record waits longer than WAL_SHM_RECHECK_IDLE_MS for a
 * sleeping drainer. A doorbell or shm_schedule() replaces the timer.
 */
static void
shm_recheck(struct server *srv, int first)
{
	struct timeval tv;

	if (first) {
		tv.tv_sec = 0;
		tv.tv_usec = WAL_SHM_RECHECK_US;
	} else {
		tv.tv_sec = WAL_SHM_RECHECK_IDLE_MS / 1000;
		tv.tv_usec = (WAL_SHM_RECHECK_IDLE_MS % 1000) * 1000;
	}
	event_add(srv->ev_drain, &tv);
}

/* Producers may go on (forward_hold_block): drain what waited. */
void
shm_kick(struct server *srv)
{
	shm_schedule(srv);
}

/* The connection's parked frame is handled: its ring may go on. */
void
shm_unparked(struct conn *c)
{
	if (c->shm != NULL && !c->shm->broken)
		shm_schedule(c->srv);
}

/* Room again to receive descriptors: read the doorbells that waited. */
void
shm_bells_enable(struct server *srv)
{
	struct shm_ring *r;

	TAILQ_FOREACH(r, &srv->shms, entry)
		if (r->bell_wait) {
			r->bell_wait = 0;
			if (!r->closing)
				event_add(r->ev_bell, NULL);
		}
}

/* Records may wait in some ring: run the drainer on the loop's next pass. */
static void
shm_schedule(struct server *srv)
{
	static const struct timeval zero = { 0, 0 };

	if (srv->drain_scheduled)
		return;
	srv->drain_scheduled = 1;
	srv->drain_idle = shm_mono_ns();
	event_add(srv->ev_drain, &zero);
}

/*
 * A producer rang: the drainer was asleep. Our own end of the pair, read
 * with MSG_DONTWAIT whatever the producer did to its end, and at most
 * SHM_BELL_READS messages: one that rings without pause cannot hold us.
 * Descriptors sent with a ring are received (not left to the kernel to
 * drop here) and closed where that cannot block us.
 */
static void
shm_bell_cb(int fd, short ev, void *arg)
{
	struct shm_ring *r = arg;
	int ended;

	(void)ev;
	if (!closer_room(r->srv->closer)) {
		/* No room for what a ring may carry: wait. */
		r->bell_wait = 1;
		event_del(r->ev_bell);
		srv_fd_wait(r->srv);
		shm_schedule(r->srv);
		return;
	}
	(void)closer_drain(r->srv->closer, fd, SHM_BELL_READS, &ended);
	if (ended) {
		/* It closed its end: it cannot ring any more. */
		log_debug("client pid %ld: doorbell closed", (long)r->pid);
		event_del(r->ev_bell);
	}
	shm_schedule(r->srv);
}

/*
 * Copy up to budget published records into the log; load first loads the
 * producer's tail again, else only what is below the tail loaded last is
 * taken (a closing ring never loads again). ts < 0 stamps now. Returns the
 * records written; a corrupt ring or a failed write marks the ring broken
 * with a fatal ERROR queued on its connection.
 */
static int
shm_drain_ring(struct shm_ring *r, unsigned budget, int64_t ts, int load)
{
	struct conn *c = r->conn;
	struct server *srv = r->srv;
	struct wal_shm_rec recs[SHM_RUN];
	struct iovec iov[SHM_RUN];
	struct wal_error err;
	char why[256];
	unsigned n = 0, ndurable = 0, m, k, i;
	uint64_t pseq = 0, head0;
	int64_t first, seq = -1;
	int rc = 1, refuse = 0;

	if (r->broken)
		return (0);
	/*
	 * Its connection is parked (a frame waits for its turn): what the
	 * producer published since it sent that frame comes after it.
	 */
	if (c != NULL && c->parked)
		return (0);
	if (load && !r->closing &&
	    wal_shm_load_tail(&r->cons, why, sizeof why) < 0) {
		shm_fail(r, WAL_PERR_PROTO, "shared-memory ring corrupt: %s",
		    why);
		return (0);
	}
	if (r->cons.head == r->cons.tail)
		return (0);
	head0 = r->cons.head;
	if (ts < 0)
		ts = wal_now_ns();
	if (r->producer_id != 0)
		pseq = srv->ptab->slots[r->producer_slot].next_pseq;
	/* Runs of up to SHM_RUN records: found, written, consumed. */
	while (n < budget && rc == 1 && !refuse) {
		rc = wal_shm_peek_run(&r->cons, recs, budget - n < SHM_RUN ?
		    budget - n : SHM_RUN, &m, why, sizeof why);
		for (i = 0; i < m; i++) {
			if ((recs[i].flags & WAL_SHM_F_DURABLE) &&
			    srv->sync_failed && c != NULL) {
				m = i;		/* refused from this one on */
				refuse = 1;
				break;
			}
			iov[i].iov_base = (void *)(uintptr_t)recs[i].payload;
			iov[i].iov_len = recs[i].len;
		}
		first = wal_ring_next_seq(srv->ring);
		/*
		 * The one read of each payload; the CRCs cover our copies.
		 * An idempotent producer's records are journalled each as it
		 * gets its seq, before it can be published.
		 */
		r->run_pseq = pseq + n;
		k = wal_ring_append_run(srv->ring, iov, m, ts,
		    r->producer_id != 0 ? shm_journal : NULL, r, &err);
		if (k > 0) {
			wal_shm_consume_run(&r->cons, recs, k, first);
			seq = first + k - 1;
			for (i = 0; i < k; i++) {
				if (recs[i].flags & WAL_SHM_F_DURABLE) {
					ndurable++;
					if (c != NULL)
						r->durable_want = first + i;
				}
				srv->bytes += recs[i].len;
			}
			n += k;
		}
		if (k < m) {
			refuse = 0;	/* the failed one came first */
			if (srv_log_client(srv))
				log_warnx("%s", err.msg);
			shm_fail(r, conn_errno_perr(err.code), "%" PRIu64
			    " records from the shared-memory ring written, "
			    "the next one is not: %s", r->cons.written,
			    err.msg);
			break;
		}
		if (refuse)
			break;
		if (rc < 0) {
			shm_fail(r, WAL_PERR_PROTO, "shared-memory ring "
			    "corrupt after %" PRIu64 " records: %s",
			    r->cons.written, why);
			break;
		}
	}
	if (refuse)
		shm_sync_refuse(r);
	wal_ring_flush(srv->ring);	/* written before published */
	/* Only padding consumed: its head is published all the same. */
	if (n == 0 && !r->broken && r->cons.head == head0)
		return (0);
	if (n > 0 && r->producer_id != 0)
		wal_ptab_advance(srv->ptab, r->producer_slot, pseq + n, seq, ts);
	if (n > 0) {
		srv->records += n;
		srv->metrics.append_records[WAL_ACK_DURABLE] += ndurable;
		srv->metrics.append_records[WAL_ACK_WRITTEN] += n - ndurable;
		srv->sub_dirty = 1;
		if (c != NULL) {
			c->records += n;
			if (r->nmarks == SHM_MARKS)
				r->nmarks--;	/* merge into the newest */
			r->marks[r->nmarks].count = r->cons.written;
			r->marks[r->nmarks].seq = seq;
			r->nmarks++;
			if (r->durable_want == seq)
				srv_durable_returned(srv, c);
		}
	}
	shm_publish(r);
	return ((int)n);
}

/* wal_ring_each_fn: record i of a run has seq; journal its pseq. */
static void
shm_journal(void *arg, unsigned i, int64_t seq)
{
	struct shm_ring *r = arg;

	wal_ptab_note(r->srv->ptab, r->producer_id, r->run_pseq + i, seq,
	    WAL_PTAB_J_FIRST);
}

/* Progress into the header; wake the producer if it sleeps. */
static void
shm_publish(struct shm_ring *r)
{
	if (wal_shm_publish(&r->cons))
		shm_wake_producer(r);
}

/*
 * Ring the producer's doorbell: never blocking (our own end, MSG_DONTWAIT).
 * A full buffer means wake-ups it has not read yet; a closed end, that it
 * is gone. Either way it harms only itself.
 */
static void
shm_wake_producer(struct shm_ring *r)
{
	uint64_t one = 1;

	if (send(r->bell, &one, sizeof one, MSG_DONTWAIT | MSG_NOSIGNAL) ==
	    -1 && errno != EAGAIN && errno != EWOULDBLOCK)
		log_debug("client pid %ld: cannot ring its doorbell: %s",
		    (long)r->pid, strerror(errno));
}

/* Stop reading a ring and tell its client why (fatal). */
static void
shm_fail(struct shm_ring *r, unsigned code, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	r->broken = 1;
	if (srv_log_client(r->srv))
		log_warnx("client pid %ld: %s; %s", (long)r->pid, msg,
		    r->conn != NULL ? "disconnecting it" :
		    "its connection is gone");
	if (r->conn != NULL)
		conn_error(r->conn, 0, code, 1, "%s", msg);
}

/*
 * A durable record after a failed sync: refused like a durable append on
 * the socket (not written), and the ring closed with the sync's error.
 */
static void
shm_sync_refuse(struct shm_ring *r)
{
	r->broken = 1;
	conn_error(r->conn, 0, WAL_PERR_SYNC, 1, "%s; %" PRIu64 " records "
	    "from the shared-memory ring written, the next one (durable) is "
	    "refused", r->srv->sync_error, r->cons.written);
}

/*
 * Try to sleep: 1 if every ring is idle, else 0 (all flags cleared). A
 * closing ring still holding records has no doorbell: it keeps us awake.
 */
static int
shm_sleep_all(struct server *srv)
{
	struct shm_ring *r;

	TAILQ_FOREACH(r, &srv->shms, entry) {
		if (r->conn != NULL && r->conn->parked)
			continue;	/* shm_unparked() wakes us */
		if (r->closing)
			goto awake;
		if (!r->broken)
			wal_shm_sleep_mark(&r->cons);
	}
	/*
	 * One fence for every ring: membarrier(2) fences each producer that
	 * publishes without one (WAL_SHM_FEAT_ASYM).
	 */
	(void)wal_shm_barrier();
	TAILQ_FOREACH(r, &srv->shms, entry) {
		if (r->conn != NULL && r->conn->parked)
			continue;
		if (!r->broken && !wal_shm_sleep_check(&r->cons))
			goto awake;
	}
	return (1);
awake:
	TAILQ_FOREACH(r, &srv->shms, entry)
		if (!r->closing)
			wal_shm_awake(&r->cons);
	return (0);
}

/* Take a ring off the drainer's list and free it. */
static void
shm_release(struct shm_ring *r)
{
	struct server *srv = r->srv;

	TAILQ_REMOVE(&srv->shms, r, entry);
	srv->nshms--;
	srv->shm_bytes -= r->maplen;
	shm_free(r);
}

static void
shm_free(struct shm_ring *r)
{
	if (r->ev_bell != NULL)
		event_free(r->ev_bell);
	if (r->base != MAP_FAILED)
		munmap(r->base, r->maplen);
	if (r->bell != -1)	/* the producer can send to it */
		closer_close_socket(r->srv->closer, r->bell);
	if (r->memfd != -1)
		close(r->memfd);
	free(r);
}

static uint64_t
shm_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

/* Memory of one uid's rings, closing ones included (they hold it). */
static uint64_t
shm_uid_bytes(const struct server *srv, uid_t uid)
{
	const struct shm_ring *r;
	uint64_t n = 0;

	TAILQ_FOREACH(r, &srv->shms, entry)
		if (r->uid == uid)
			n += r->maplen;
	return (n);
}

/*
 * A hand-over (handover.c): the state of the connection's ring for the
 * next process, or 0 when it has none worth handing over (a broken ring:
 * its connection is closing with the error). The loop is between passes:
 * head, written and written_seq are published (shm_drain_ring ends with
 * shm_publish), and records published since stay in the ring for the
 * next process, which drains them in order.
 */
int
shm_export(struct conn *c, struct shm_state *st)
{
	struct shm_ring *r = c->shm;
	size_t i;

	if (r == NULL || r->broken || r->memfd == -1)
		return (0);
	memset(st, 0, sizeof *st);
	st->memfd = r->memfd;
	st->bell = r->bell;
	st->size = r->cons.size;
	st->max_record = r->cons.max_record;
	st->head = r->cons.head;
	st->written = r->cons.written;
	st->written_seq = r->cons.written_seq;
	st->durable = r->durable;
	st->durable_want = r->durable_want;
	st->nmarks = (uint32_t)r->nmarks;
	for (i = 0; i < r->nmarks && i < HANDOVER_SHM_MARKS; i++) {
		st->marks[i].count = r->marks[i].count;
		st->marks[i].seq = r->marks[i].seq;
	}
	return (1);
}

/*
 * The next process: map a ring handed over and drain it from where the
 * previous process stopped. Takes st->memfd and st->bell (closed on
 * failure too). Returns 0, or -1 with why.
 */
int
shm_import(struct conn *c, const struct shm_state *st, char *why,
    size_t whylen)
{
	struct server *srv = c->srv;
	struct shm_ring *r;
	struct stat sb;
	uint32_t i;

	if ((r = calloc(1, sizeof *r)) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	r->srv = srv;
	r->conn = c;
	r->pid = c->pid;
	r->base = MAP_FAILED;
	r->producer_slot = -1;
	r->bell = st->bell;
	r->memfd = st->memfd;
	r->maplen = WAL_SHM_HEADER_SIZE + st->size;
	if (st->size != wal_shm_ring_size(st->size) || st->nmarks >
	    SHM_MARKS || fstat(st->memfd, &sb) == -1 ||
	    (uint64_t)sb.st_size != r->maplen) {
		snprintf(why, whylen, "the ring's memfd is not the %" PRIu64
		    "-byte ring described", (uint64_t)r->maplen);
		goto fail_r;
	}
	r->base = mmap(NULL, r->maplen, PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_POPULATE, st->memfd, 0);
	if (r->base == MAP_FAILED) {
		snprintf(why, whylen, "cannot map the ring: %s",
		    strerror(errno));
		goto fail_r;
	}
	wal_shm_consumer_init(&r->cons, r->base, st->size, st->max_record);
	if (c->producer_id != 0 && srv->ptab != NULL) {
		/* A producer's ring stays one (its id came over with c). */
		r->producer_id = c->producer_id;
		r->producer_slot = c->producer_slot;
	}
	r->cons.head = r->cons.tail = st->head;
	r->cons.written = st->written;
	r->cons.written_seq = st->written_seq;
	r->durable = st->durable;
	r->durable_want = st->durable_want;
	r->nmarks = st->nmarks;
	for (i = 0; i < st->nmarks; i++) {
		r->marks[i].count = st->marks[i].count;
		r->marks[i].seq = st->marks[i].seq;
	}
	r->ev_bell = event_new(srv->base, r->bell, EV_READ | EV_PERSIST,
	    shm_bell_cb, r);
	if (r->ev_bell == NULL) {
		snprintf(why, whylen, "cannot create its event");
		goto fail_r;
	}
	event_add(r->ev_bell, NULL);
	c->shm = r;
	TAILQ_INSERT_TAIL(&srv->shms, r, entry);
	srv->nshms++;
	srv->shm_bytes += r->maplen;
	/* Records may have come while nobody drained: look now. */
	shm_schedule(srv);
	return (0);
fail_r:
	shm_free(r);
	return (-1);
fail:
	close(st->memfd);
	close(st->bell);
	return (-1);
}

/*
 * A hand-over: the rings of connections already gone are written to the
 * end and freed now (nobody hands them over).
 */
void
shm_finish_closing(struct server *srv)
{
	struct shm_ring *r, *next;

	TAILQ_FOREACH_SAFE(r, &srv->shms, entry, next) {
		if (r->conn != NULL)
			continue;
		while (!r->broken && r->cons.head < r->cons.tail &&
		    shm_drain_ring(r, UINT32_MAX, -1, 0) > 0)
			;
		shm_release(r);
	}
}

/*
 * Producer slot is being resumed by a new connection: every ring of it
 * (its old connection's, live or closing) stops here, writing nothing
 * more. What the drainer had not taken was never acknowledged; the
 * producer sends it again, with the same producer seqs, after the
 * PRODUCER_OK that says where it stands.
 */
void
shm_producer_resumed(struct server *srv, int slot)
{
	struct shm_ring *r, *next;

	TAILQ_FOREACH_SAFE(r, &srv->shms, entry, next) {
		if (r->producer_id == 0 || r->producer_slot != slot)
			continue;
		r->producer_id = 0;
		r->producer_slot = -1;
		if (r->conn == NULL) {
			shm_release(r);
			continue;
		}
		r->broken = 1;
	}
}

/* Does a ring (a closing one too) still write as producer slot? */
int
shm_producer_busy(const struct server *srv, int slot)
{
	const struct shm_ring *r;

	TAILQ_FOREACH(r, &srv->shms, entry)
		if (r->producer_id != 0 && r->producer_slot == slot)
			return (1);
	return (0);
}
