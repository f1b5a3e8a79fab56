/*
 * walmmapd - shared-memory rings: one per connection that asks, drained by
 * the event-loop thread (the ring's writer) straight into the segment.
 *
 * The drainer runs as one libevent callback over every ring. While records
 * flow it polls without system calls; after shm_spin without any it sets
 * each ring's daemon_sleeping flag and returns to the loop, where a
 * producer's doorbell (an eventfd) wakes it. It also returns to the loop
 * every SHM_SLICE_NS so sockets, timers and syncs are served in between.
 *
 * The ring is the producer's memory and may change under us at any time:
 * wal_shm_* (src/wal_shm.c) reads each value once and checks it. A ring
 * that fails a check is closed with a fatal ERROR on the connection; its
 * records already written stay written, and nothing else is touched.
 */
#include "config.h"

#include <sys/eventfd.h>
#include <sys/mman.h>

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

#include "log.h"
#include "server.h"
#include "wal_ring.h"
#include "wal_shm.h"

#define SHM_PASS_BUDGET	4096		/* records per ring per pass */
#define SHM_SLICE_NS	500000		/* then yield to the loop */
#define SHM_MARKS	32

/* Records [.., count) of a ring end with seq: durable once seq is. */
struct shm_mark {
	uint64_t	count;
	int64_t		seq;
};

struct shm_ring {
	struct conn		*conn;
	struct wal_shm_consumer	 cons;
	void			*base;
	size_t			 maplen;
	int			 efd_in;	/* producer -> daemon doorbell */
	int			 efd_out;	/* daemon -> producer doorbell */
	struct event		*ev_bell;
	struct shm_mark		 marks[SHM_MARKS];
	size_t			 nmarks;
	uint64_t		 durable;	/* records durable */
	int64_t			 durable_want;	/* F_DURABLE seq owed, -1 */
	int			 broken;	/* failed a check: no more reads */
	TAILQ_ENTRY(shm_ring)	 entry;
};

static void	shm_bell_cb(int, short, void *);
static int	shm_drain_ring(struct shm_ring *, unsigned budget, int64_t ts);
static void	shm_fail(struct shm_ring *, unsigned code, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));
static void	shm_sync_refuse(struct shm_ring *);
static void	shm_free(struct shm_ring *);
static void	shm_publish(struct shm_ring *);
static void	shm_wake_producer(struct shm_ring *);
static int	shm_sleep_all(struct server *);
static uint64_t	shm_mono_ns(void);

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
	int mfd = -1, fds[3];

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
	size = m->size != 0 ? m->size : srv->cfg.shm_size;
	if (size < WAL_SHM_MIN_SIZE)
		size = WAL_SHM_MIN_SIZE;
	if (size > WAL_SHM_MAX_SIZE)
		size = WAL_SHM_MAX_SIZE;
	while (size & (size - 1))	/* round up to a power of two */
		size = (size | (size - 1)) + 1;

	if ((r = calloc(1, sizeof *r)) == NULL)
		goto fail;
	r->conn = c;
	r->efd_in = r->efd_out = -1;
	r->base = MAP_FAILED;
	r->durable_want = -1;
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
	wal_shm_consumer_init(&r->cons, r->base, size, wal_shm_max_record(size,
	    srv->cfg.max_record));
	r->efd_in = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->efd_out = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->efd_in == -1 || r->efd_out == -1)
		goto fail;
	r->ev_bell = event_new(srv->base, r->efd_in, EV_READ | EV_PERSIST,
	    shm_bell_cb, r);
	if (r->ev_bell == NULL)
		goto fail;
	/* The queue closes what it passes: give it its own copies. */
	fds[0] = mfd;
	fds[1] = dup(r->efd_in);
	fds[2] = dup(r->efd_out);
	mfd = -1;
	memset(&rd, 0, sizeof rd);
	rd.hdr.type = WAL_MSG_SHM_READY;
	rd.hdr.len = sizeof rd;
	rd.hdr.id = m->hdr.id;
	rd.size = size;
	rd.header_size = WAL_SHM_HEADER_SIZE;
	rd.max_record = r->cons.max_record;
	if (fds[1] == -1 || fds[2] == -1 ||
	    conn_queue_fds(c, &rd, sizeof rd, fds, 3) != 0) {
		conn_error(c, m->hdr.id, WAL_PERR_IO, 0, "cannot pass the "
		    "shared-memory ring: %s", strerror(errno));
		shm_free(r);
		return;
	}
	event_add(r->ev_bell, NULL);
	c->shm = r;
	TAILQ_INSERT_TAIL(&srv->shms, r, entry);
	srv->nshms++;
	log_debug("client pid %ld: shared-memory ring of %" PRIu64 " bytes",
	    (long)c->pid, size);
	return;
fail:
	conn_error(c, m->hdr.id, WAL_PERR_IO, 0, "cannot create a %" PRIu64
	    "-byte shared-memory ring: %s", size, strerror(errno));
	if (mfd != -1)
		close(mfd);
	if (r != NULL)
		shm_free(r);
}

/*
 * The connection is going away: write what its producer published (a
 * producer that died mid-record never published that record), then
 * release the ring.
 */
void
shm_close_ring(struct conn *c)
{
	struct shm_ring *r = c->shm;

	if (r == NULL)
		return;
	if (!r->broken)
		(void)shm_drain_ring(r, UINT32_MAX, -1);
	TAILQ_REMOVE(&c->srv->shms, r, entry);
	c->srv->nshms--;
	c->shm = NULL;
	shm_free(r);
}

/*
 * Write everything the connection's producer published before now: called
 * before a socket frame of the same connection is handled, so a client's
 * records keep their order across both paths.
 */
void
shm_catch_up(struct conn *c)
{
	if (c->shm != NULL && !c->shm->broken)
		(void)shm_drain_ring(c->shm, UINT32_MAX, -1);
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

/* Does the ring owe a durable acknowledgement beyond durable? */
int
shm_durable_pending(const struct conn *c, int64_t durable)
{
	return (c->shm != NULL && !c->shm->broken &&
	    c->shm->durable_want > durable);
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
 * then sleep on the doorbells. Yields to the loop every SHM_SLICE_NS.
 */
void
srv_shm_drain_cb(int fd, short ev, void *arg)
{
	struct server *srv = arg;
	struct shm_ring *r, *next;
	uint64_t start, now, idle, spin_ns;
	int64_t ts;
	int n, total, sync = 0;

	(void)fd;
	(void)ev;
	spin_ns = (uint64_t)srv->cfg.shm_spin_us * 1000;
	start = idle = shm_mono_ns();
	TAILQ_FOREACH(r, &srv->shms, entry)
		wal_shm_awake(&r->cons);
	for (;;) {
		ts = wal_now_ns();
		total = 0;
		TAILQ_FOREACH_SAFE(r, &srv->shms, entry, next) {
			struct conn *c = r->conn;

			n = shm_drain_ring(r, SHM_PASS_BUDGET, ts);
			if (n > 0) {
				total += n;
				if (r->durable_want > wal_ring_durable_seq(
				    srv->ring))
					sync = 1;
			}
			if (r->broken) {
				/* The fatal ERROR is queued: close. */
				shm_close_ring(c);
				conn_flush(c);
			}
		}
		if (total > 0) {
			if (srv->sub_dirty)
				srv_wake_subscribers(srv);
			if (sync) {
				srv_request_sync(srv);
				sync = 0;
			}
		}
		if (srv->nshms == 0)
			break;
		now = shm_mono_ns();
		if (total > 0)
			idle = now;
		if (now - start >= SHM_SLICE_NS) {
			/* Let sockets and timers in; come straight back. */
			event_active(srv->ev_drain, EV_TIMEOUT, 0);
			return;
		}
		if (now - idle >= spin_ns) {
			if (shm_sleep_all(srv))
				break;
			idle = now;
		}
		shm_cpu_relax();
	}
	srv->drain_scheduled = 0;
}

/* Records reached the log through some ring: keep draining. */
static void
shm_schedule(struct server *srv)
{
	if (srv->drain_scheduled)
		return;
	srv->drain_scheduled = 1;
	event_active(srv->ev_drain, EV_TIMEOUT, 0);
}

/* A producer rang: the drainer was asleep. */
static void
shm_bell_cb(int fd, short ev, void *arg)
{
	struct shm_ring *r = arg;
	uint64_t n;

	(void)ev;
	while (read(fd, &n, sizeof n) == (ssize_t)sizeof n)
		;
	shm_schedule(r->conn->srv);
}

/*
 * Copy up to budget published records into the log. ts < 0 stamps now.
 * Returns the records written; a corrupt ring or a failed write marks the
 * ring broken with a fatal ERROR queued on its connection.
 */
static int
shm_drain_ring(struct shm_ring *r, unsigned budget, int64_t ts)
{
	struct conn *c = r->conn;
	struct server *srv = c->srv;
	struct wal_shm_rec rec;
	struct wal_error err;
	char why[256];
	uint8_t *dst;
	unsigned n = 0;
	int64_t seq = -1;
	int rc;

	if (r->broken)
		return (0);
	if ((rc = wal_shm_load_tail(&r->cons, why, sizeof why)) <= 0) {
		if (rc < 0)
			shm_fail(r, WAL_PERR_PROTO, "shared-memory ring "
			    "corrupt: %s", why);
		return (0);
	}
	if (ts < 0)
		ts = wal_now_ns();
	while (n < budget) {
		rc = wal_shm_peek(&r->cons, &rec, why, sizeof why);
		if (rc == 0)
			break;
		if (rc < 0) {
			shm_fail(r, WAL_PERR_PROTO, "shared-memory ring "
			    "corrupt after %" PRIu64 " records: %s",
			    r->cons.written, why);
			break;
		}
		if ((rec.flags & WAL_SHM_F_DURABLE) && srv->sync_failed) {
			shm_sync_refuse(r);
			break;
		}
		if (wal_ring_reserve(srv->ring, rec.len, &dst, &err) != 0) {
			wal_ring_flush(srv->ring);
			log_warnx("%s", err.msg);
			shm_fail(r, conn_errno_perr(err.code), "%" PRIu64
			    " records from the shared-memory ring written, "
			    "the next one is not: %s", r->cons.written,
			    err.msg);
			break;
		}
		/* The one read of the payload; the CRC covers our copy. */
		memcpy(dst, rec.payload, rec.len);
		seq = wal_ring_commit_deferred(srv->ring, ts);
		wal_shm_consume(&r->cons, &rec, seq);
		if (rec.flags & WAL_SHM_F_DURABLE)
			r->durable_want = seq;
		srv->bytes += rec.len;
		n++;
	}
	wal_ring_flush(srv->ring);	/* written before published */
	if (n == 0 && !r->broken)
		return (0);
	if (n > 0) {
		srv->records += n;
		c->records += n;
		srv->sub_dirty = 1;
		if (r->nmarks == SHM_MARKS)
			r->nmarks--;	/* merge into the newest: later */
		r->marks[r->nmarks].count = r->cons.written;
		r->marks[r->nmarks].seq = seq;
		r->nmarks++;
		if (r->durable_want == seq)
			srv_durable_returned(srv, c);
	}
	shm_publish(r);
	return ((int)n);
}

/* Progress into the header; wake the producer if it sleeps. */
static void
shm_publish(struct shm_ring *r)
{
	if (wal_shm_publish(&r->cons))
		shm_wake_producer(r);
}

static void
shm_wake_producer(struct shm_ring *r)
{
	uint64_t one = 1;

	if (write(r->efd_out, &one, sizeof one) == -1 && errno != EAGAIN)
		log_warn("client pid %ld: cannot ring its doorbell",
		    (long)r->conn->pid);
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
	log_warnx("client pid %ld: %s; disconnecting it", (long)r->conn->pid,
	    msg);
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
	    "refused", r->conn->srv->sync_error, r->cons.written);
}

/* Try to sleep: 1 if every ring is idle, else 0 (all flags cleared). */
static int
shm_sleep_all(struct server *srv)
{
	struct shm_ring *r;

	TAILQ_FOREACH(r, &srv->shms, entry)
		if (!r->broken && !wal_shm_sleep(&r->cons))
			break;
	if (r == NULL)
		return (1);
	TAILQ_FOREACH(r, &srv->shms, entry)
		wal_shm_awake(&r->cons);
	return (0);
}

static void
shm_free(struct shm_ring *r)
{
	if (r->ev_bell != NULL)
		event_free(r->ev_bell);
	if (r->base != MAP_FAILED)
		munmap(r->base, r->maplen);
	if (r->efd_in != -1)
		close(r->efd_in);
	if (r->efd_out != -1)
		close(r->efd_out);
	free(r);
}

static uint64_t
shm_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}
