/*
 * walmmapd - one client connection: frames in, acknowledgements out.
 *
 * Runs on the event-loop thread, which is also the ring's writer, so an
 * append goes from the received frame straight into the mapped segment.
 * Acks for all frames read in one pass are coalesced into one ACK frame.
 * Every frame is validated by wal_proto_check() before any field is used.
 */
#include "config.h"

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <linux/sockios.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
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
#include "rights.h"
#include "server.h"
#include "wal_reader.h"
#include "wal_ptab.h"
#include "wal_ring.h"

/*
 * A read pass ends after CONN_READ_BATCH frames or once its frames made
 * the daemon take CONN_READ_BUDGET bytes (frame bytes, or the payload
 * written when that is more), so one client cannot starve the others. A
 * frame is never split: the pass that reaches the budget finishes its
 * frame. An APPEND_FD record larger than the budget (up to max_record) is
 * not written in the pass: its connection is parked (see conn_park) and
 * such records are written one per loop pass, in the order they came, so
 * however many connections send them, another client waits at most for
 * one.
 */
#define CONN_READ_BATCH		64
#define CONN_READ_BUDGET	(1024 * 1024)
#define CONN_RUN		32	/* records of a frame written at once */

/* How often a subscriber's unread memfd record is looked at again (ms). */
#define CONN_SUB_RETRY_MS	2

/* Seconds a closing connection may take to read its last replies. */
#define CONN_LINGER_S		60

static void	conn_read_cb(int, short, void *);
static void	conn_write_cb(int, short, void *);
static int	conn_recv_one(struct conn *, uint64_t *);
static void	conn_handle(struct conn *, const uint8_t *, size_t, int fd);
static void	conn_hello(struct conn *, const struct wal_msg_hello *);
static void	conn_append(struct conn *, const uint8_t *, size_t,
		    uint64_t);
static void	conn_append_fd(struct conn *, const struct wal_msg_append_fd *,
		    int fd);
static void	conn_sync(struct conn *, uint64_t id);
static void	conn_rotate(struct conn *, uint64_t id);
static void	conn_park(struct conn *, enum conn_park);
static void	conn_unpark(struct conn *);
static void	conn_run_parked(struct conn *);
static void	conn_sub_pump(struct conn *);
static void	conn_sub_send_fd(struct conn *, const struct wal_rec_out *,
		    const struct wal_record *);
static int	conn_sub_fd_ok(struct conn *, uint32_t size);
static void	conn_sub_retry_cb(int, short, void *);
static void	conn_ack_add(struct conn *, uint64_t id, int64_t first,
		    uint32_t count);
static void	conn_ack_flush(struct conn *);
static void	conn_queue(struct conn *, const void *, size_t);
static void	conn_after_pass(struct conn *);
static int	conn_owed(const struct conn *);
static int64_t	conn_now(void);

/* Make a connection for an accepted socket. */
struct conn *
conn_new(struct server *srv, int fd)
{
	struct conn *c;
	struct ucred cred;
	socklen_t len = sizeof cred;

	if ((c = calloc(1, sizeof *c)) == NULL)
		return (NULL);
	c->srv = srv;
	c->fd = fd;
	c->out.total = &srv->outq_total;
	c->park_fd = -1;
	c->producer_slot = -1;
	c->durable_want = -1;
	c->durable_low = -1;
	c->sub_to = -1;
	c->ack = WAL_ACK_WRITTEN;
	c->since = c->last_active = conn_now();
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
		c->pid = cred.pid;
		c->uid = cred.uid;
		c->gid = cred.gid;
	} else {
		c->uid = (uid_t)-1;
		c->gid = (gid_t)-1;
	}
	c->ev_read = event_new(srv->base, fd, EV_READ | EV_PERSIST,
	    conn_read_cb, c);
	c->ev_write = event_new(srv->base, fd, EV_WRITE, conn_write_cb, c);
	if (c->ev_read == NULL || c->ev_write == NULL) {
		if (c->ev_read != NULL)
			event_free(c->ev_read);
		if (c->ev_write != NULL)
			event_free(c->ev_write);
		free(c);
		return (NULL);
	}
	event_add(c->ev_read, NULL);
	TAILQ_INSERT_TAIL(&srv->conns, c, entry);
	srv->nconns++;
	srv->clients_total++;
	return (c);
}

/* Close and free a connection. */
void
conn_free(struct conn *c)
{
	struct server *srv = c->srv;

	handover_conn_gone(c);
	shm_close_ring(c);
	fwd_conn_gone(c);
	srv_durable_returned(srv, c);
	if (c->parked == CONN_PARK_APPEND_FD) {
		TAILQ_REMOVE(&srv->parked, c, park_entry);
		closer_close(srv->closer, c->park_fd);	/* not written */
	}
	TAILQ_REMOVE(&srv->conns, c, entry);
	srv->nconns--;
	event_free(c->ev_read);
	event_free(c->ev_write);
	closer_close_socket(srv->closer, c->fd);	/* what is in flight too */
	outq_free(&c->out);
	wal_reader_close(c->sub);
	if (c->ev_sub_retry != NULL)
		event_free(c->ev_sub_retry);
	srv->sub_fd_total -= c->sub_fd_bytes;
	free(c->acks);
	free(c->groups);
	log_debug("client pid %ld uid %ld disconnected after %" PRIu64
	    " records", (long)c->pid, (long)c->uid, c->records);
	free(c);
	if (srv->stopping && srv->nconns == 0)
		event_base_loopbreak(srv->base);
}

/*
 * Read and process what a client already sent (used at shutdown), up to
 * budget bytes counted as a read pass counts them: a client that keeps
 * sending cannot hold the stop. What is not read is not acknowledged.
 */
void
conn_drain(struct conn *c, uint64_t budget)
{
	uint64_t spent = 0;
	int rc = 1;

	/* The parked frame first: the ring's records since are after it. */
	if (c->parked == CONN_PARK_APPEND_FD)
		conn_run_parked(c);
	shm_drain_published(c);
	while (!c->closing && spent < budget)
		if ((rc = conn_recv_one(c, &spent)) <= 0)
			break;
	if (rc < 0) {
		conn_free(c);
		return;
	}
	conn_after_pass(c);
}

/* A sync finished: answer what it covers. */
void
conn_durable(struct conn *c, int64_t durable)
{
	struct wal_msg_durable d;
	size_t i, kept = 0;

	if (c->srv->sync_failed) {
		/* Sticky: no later sync makes anything durable. */
		conn_sync_failed(c, c->srv->sync_error);
		return;
	}
	memset(&d, 0, sizeof d);
	d.hdr.type = WAL_MSG_DURABLE;
	d.hdr.len = sizeof d;
	d.durable_seq = durable;
	/* Held acks go out just before the DURABLE that covers them. */
	if (c->acks_held && c->durable_want <= durable) {
		c->acks_held = 0;
		conn_ack_flush(c);
	}
	/* Report progress over this client's durable records. */
	if (c->durable_low >= 0 && c->durable_low <= durable) {
		conn_queue(c, &d, sizeof d);
		if (c->durable_want <= durable) {
			c->durable_want = c->durable_low = -1;
			conn_expect(c);
		} else
			c->durable_low = durable + 1;
	}
	for (i = 0; i < c->nsyncs; i++) {
		if (c->syncs[i].target <= durable) {
			d.hdr.id = c->syncs[i].id;
			conn_queue(c, &d, sizeof d);
			conn_expect(c);
		} else
			c->syncs[kept++] = c->syncs[i];
	}
	c->nsyncs = kept;
	shm_durable(c, durable);
	conn_flush(c);
}

/*
 * Is a durable acknowledgement owed (socket or ring)? Only conn_durable(),
 * after a sync round, sends it, so one is owed even when the ring's
 * durable seq already covers the record: a sync of sealed segments that
 * was not a group commit (the writer's at the bound, or the background
 * thread's) may have. The round that answers it finds nothing to sync and
 * returns at once. After conn_durable(durable) an owed acknowledgement is
 * one that durable does not cover.
 */
int
conn_durable_owed(const struct conn *c)
{
	return (c->durable_want >= 0 || c->nsyncs > 0 || shm_durable_owed(c));
}

/*
 * A sync failed: everyone waiting for durability hears it, whatever else
 * happened on the connection before: durable appends (ERROR with id 0),
 * each SYNC request (ERROR with its id), a shared-memory ring (its failed
 * word, and a fatal ERROR when it waits).
 */
void
conn_sync_failed(struct conn *c, const char *why)
{
	size_t i;

	c->acks_held = 0;	/* conn_error() sends them first */
	if (c->durable_want >= 0) {
		conn_error(c, 0, WAL_PERR_SYNC, 0, "%s", why);
		c->durable_want = c->durable_low = -1;
	}
	for (i = 0; i < c->nsyncs; i++)
		conn_error(c, c->syncs[i].id, WAL_PERR_SYNC, 0, "%s", why);
	c->nsyncs = 0;
	shm_sync_failed(c, why);
	conn_flush(c);
}

/* Queue an ERROR frame; a fatal one closes the connection once sent. */
void
conn_error(struct conn *c, uint64_t id, unsigned code, int fatal,
    const char *fmt, ...)
{
	uint8_t buf[sizeof(struct wal_msg_error) + 512];
	struct wal_msg_error e;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf((char *)buf + sizeof e, 512, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > 511)
		n = 511;
	memset(&e, 0, sizeof e);
	e.hdr.type = WAL_MSG_ERROR;
	e.hdr.len = (uint32_t)(sizeof e + (size_t)n);
	e.hdr.id = id;
	e.code = code;
	e.fatal = fatal ? 1 : 0;
	memcpy(buf, &e, sizeof e);
	c->srv->errors++;
	metrics_error_sent(c->srv, code);
	log_debug("client pid %ld: %s%s: %.*s", (long)c->pid,
	    wal_proto_strerror(code), fatal ? " (closing)" : "", n,
	    (char *)buf + sizeof e);
	conn_queue(c, buf, e.hdr.len);
	if (fatal)
		conn_closing(c);
}

/*
 * Close the connection once its queued replies are sent. It is not read
 * any more (a readable socket nobody reads would spin the loop); a peer
 * that does not take its last replies within CONN_LINGER_S is dropped.
 */
void
conn_closing(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	c->closing_since = conn_now();
	event_del(c->ev_read);
}

/*
 * Once a second: drop a connection that sent no HELLO within
 * hello_timeout, one idle for idle_timeout (no frame, no ring record and
 * nothing owed to it), and a closing one whose peer does not read; forget
 * a memfd record its subscriber has read.
 */
void
conn_check_timeouts(struct conn *c)
{
	const struct srv_config *cfg = &c->srv->cfg;
	int64_t now = conn_now();
	int unread;

	/* A memfd record read since (its subscription may be over). */
	if (c->sub_fd_bytes > 0 && ioctl(c->fd, SIOCOUTQ, &unread) == 0 &&
	    unread == 0) {
		c->srv->sub_fd_total -= c->sub_fd_bytes;
		c->sub_fd_bytes = 0;
	}
	if (c->closing) {
		if (now - c->closing_since >= CONN_LINGER_S * 1000) {
			if (srv_log_client(c->srv))
				log_info("client pid %ld uid %ld did not read its "
				    "last replies within %ds; disconnecting it",
				    (long)c->pid, (long)c->uid, CONN_LINGER_S);
			conn_free(c);
		}
		return;
	}
	if (!c->hello_done) {
		if (cfg->hello_timeout_s > 0 && now - c->since >=
		    (int64_t)cfg->hello_timeout_s * 1000) {
			if (srv_log_client(c->srv))
				log_info("client pid %ld uid %ld sent no HELLO "
				    "within %us; disconnecting it", (long)c->pid,
				    (long)c->uid, cfg->hello_timeout_s);
			conn_error(c, 0, WAL_PERR_TIMEOUT, 1, "no HELLO within "
			    "hello_timeout (%us)", cfg->hello_timeout_s);
			conn_flush(c);
		}
		return;
	}
	/* Records through the ring and anything owed count as activity. */
	if (c->records != c->active_records || conn_owed(c)) {
		c->active_records = c->records;
		c->last_active = now;
		return;
	}
	if (cfg->idle_timeout_s > 0 && now - c->last_active >=
	    (int64_t)cfg->idle_timeout_s * 1000) {
		if (srv_log_client(c->srv))
			log_info("client pid %ld uid %ld idle for %us; "
			    "disconnecting it", (long)c->pid, (long)c->uid,
			    cfg->idle_timeout_s);
		conn_error(c, 0, WAL_PERR_TIMEOUT, 1, "idle for idle_timeout "
		    "(%us)", cfg->idle_timeout_s);
		conn_flush(c);
	}
}

/*
 * Send what is queued. Returns -1 if the connection was freed.
 *
 * Back-pressure: reading pauses while the replies owed to the client
 * exceed max_inflight (the queue, and the acks held for a sync: a sync
 * can take long, and a client that keeps sending durable appends meanwhile
 * would otherwise grow them without bound), or while its queue cannot be
 * sent and all clients' queues together hold more than
 * max_inflight_total. It resumes once the queue is sent and the held acks
 * are under the cap again.
 */
int
conn_flush(struct conn *c)
{
	struct server *srv = c->srv;
	uint64_t owed;
	int rc;

	rc = outq_send(&c->out, c->fd);
	if (rc < 0) {
		log_debug("client pid %ld: send: %s", (long)c->pid,
		    strerror(errno));
		conn_free(c);
		return (-1);
	}
	if (rc == 1 && c->closing) {
		conn_free(c);
		return (-1);
	}
	if (rc == 0)
		event_add(c->ev_write, NULL);
	owed = outq_bytes(&c->out) + c->nacks * sizeof *c->acks;
	if (owed > srv->cfg.max_inflight || (rc == 0 && srv->outq_total >
	    srv->cfg.max_inflight_total)) {
		if (!c->read_paused) {
			c->read_paused = 1;
			event_del(c->ev_read);
		}
	} else if (rc == 1 && c->read_paused) {
		c->read_paused = 0;
		conn_read_enable(c);
	}
	return (0);
}

/* New records exist: a waiting subscriber can go on. */
void
conn_sub_wake(struct conn *c)
{
	if (c->sub != NULL && c->sub_waiting) {
		c->sub_waiting = 0;
		event_add(c->ev_write, NULL);
	}
}

/*
 * A subscriber holds back more than max_subscriber_hold of segments that
 * retention would remove: end its subscription with an error and close.
 */
void
conn_sub_drop(struct conn *c, uint64_t held)
{
	int64_t pos;

	if (c->sub == NULL)
		return;
	/* The first seq not queued for it: where to subscribe again. */
	pos = c->sub_held ? c->sub_rec.seq : wal_reader_position(c->sub);
	if (srv_log_client(c->srv))
		log_warnx("subscriber pid %ld uid %ld dropped: at seq %" PRId64
		    " it holds back %" PRIu64 " bytes of segments that "
		    "retention would remove (max_subscriber_hold %" PRIu64 ")",
		    (long)c->pid, (long)c->uid, pos, held,
		    c->srv->cfg.max_subscriber_hold);
	wal_reader_close(c->sub);	/* its segments are free now */
	c->sub = NULL;
	c->sub_held = 0;
	conn_error(c, 0, WAL_PERR_LAGGING, 1, "subscription ended at seq %"
	    PRId64 ": it fell %" PRIu64 " bytes behind what retention keeps "
	    "(max_subscriber_hold %" PRIu64 "); subscribe again from a later "
	    "seq", pos, held, c->srv->cfg.max_subscriber_hold);
	conn_flush(c);
}

/* Segment a subscriber reads now (retention keeps it), else UINT64_MAX. */
uint64_t
conn_sub_segment(const struct conn *c)
{
	if (c->sub == NULL)
		return (UINT64_MAX);
	return (wal_reader_current_id(c->sub));
}

/* Readable: take one budgeted pass of frames, then answer in one go. */
static void
conn_read_cb(int fd, short ev, void *arg)
{
	struct conn *c = arg;
	uint64_t spent = 0;
	int i, rc = 1;

	(void)fd;
	(void)ev;
	for (i = 0; i < CONN_READ_BATCH && spent < CONN_READ_BUDGET &&
	    !c->closing; i++)
		if ((rc = conn_recv_one(c, &spent)) <= 0)
			break;
	if (rc < 0) {
		/* Peer gone or socket error: nothing more to answer. */
		conn_free(c);
		return;
	}
	conn_after_pass(c);
}

/* Writable: send the queue, then feed a subscription. */
static void
conn_write_cb(int fd, short ev, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)ev;
	if (conn_flush(c) < 0)
		return;
	if (c->sub != NULL && outq_bytes(&c->out) == 0)
		conn_sub_pump(c);
}

/* End of a read pass: coalesced acks out, syncs and tails poked. */
static void
conn_after_pass(struct conn *c)
{
	struct server *srv = c->srv;

	c->last_active = conn_now();
	/*
	 * Acks of a pass with durable appends wait for the sync: the client
	 * then wakes once for ACK and DURABLE together. (Any other reply
	 * flushes them first, so the order of replies holds.)
	 */
	if (c->acks_held && (c->durable_want < 0 || c->durable_want <=
	    wal_ring_durable_seq(srv->ring)))
		c->acks_held = 0;
	if (!c->acks_held)
		conn_ack_flush(c);
	if (conn_durable_owed(c)) {
		srv_durable_returned(srv, c);
		srv_request_sync(srv);
	}
	if (srv->sub_dirty)
		srv_wake_subscribers(srv);
	conn_flush(c);
}

/*
 * Receive one frame (and a descriptor with it, if any). Returns 1 after
 * handling a frame, 0 when nothing is waiting, -1 when the peer is gone.
 * Adds to *spent the frame's bytes, or the payload bytes it made the
 * daemon write when that is more.
 */
static int
conn_recv_one(struct conn *c, uint64_t *spent)
{
	struct server *srv = c->srv;
	struct wal_msg hdr;
	uint64_t before = srv->bytes, wrote;
	union {
		struct cmsghdr	hdr;
		char		buf[CLOSER_CMSG_SPACE];
	} cm;
	struct msghdr msg;
	struct iovec iov;
	ssize_t n;
	int fd = -1;

	/* A parked connection's next frame waits for the one parked. */
	if (c->parked)
		return (0);
	/* A forwarder holds past its cap (forward_hold_block): wait. */
	if (fwd_holds_conn(c)) {
		c->fwd_wait = 1;
		event_del(c->ev_read);
		return (0);
	}
	/* No room for what the frame may carry: wait (srv_fd_wait_cb). */
	if (!closer_room(srv->closer)) {
		c->fd_wait = 1;
		event_del(c->ev_read);
		srv_fd_wait(srv);
		return (0);
	}
	/* What the ring got before the frame was sent goes first. */
	if (!shm_catch_up(c) || c->closing)
		return (0);
	memset(&msg, 0, sizeof msg);
	iov.iov_base = c->srv->rxbuf;
	iov.iov_len = WAL_PROTO_MAX_FRAME;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.buf;
	msg.msg_controllen = sizeof cm.buf;
	n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n == -1) {
		if (errno == EAGAIN || errno == EINTR)
			return (0);
		log_debug("client pid %ld: receive: %s", (long)c->pid,
		    strerror(errno));
		return (-1);
	}
	if (n == 0)
		return (-1);
	/*
	 * Keep the first passed descriptor (only APPEND_FD may carry one);
	 * the others are closed where closing cannot block the loop. The
	 * control space takes as many as a message can carry, so the kernel
	 * drops one only when this process has no descriptor left.
	 */
	fd = closer_take_fds(srv->closer, &msg, 1);
	*spent += (uint64_t)n;
	if (msg.msg_flags & MSG_TRUNC) {
		closer_close(srv->closer, fd);
		conn_error(c, 0, WAL_PERR_PROTO, 1, "frame larger than %u "
		    "bytes (records this large go in a memfd)",
		    WAL_PROTO_MAX_FRAME);
		return (1);
	}
	srv->frames++;
	if (msg.msg_flags & MSG_CTRUNC) {
		/*
		 * The kernel dropped what was passed: this process has no
		 * descriptor left.
		 */
		closer_close(srv->closer, fd);
		fd = -1;
		memset(&hdr, 0, sizeof hdr);
		if ((size_t)n >= sizeof hdr)
			memcpy(&hdr, srv->rxbuf, sizeof hdr);
		if (hdr.type == WAL_MSG_APPEND_FD && wal_proto_check(srv->rxbuf,
		    (size_t)n, 0, NULL, 0) == 0) {
			if (srv_log_client(srv))
				log_warnx("client pid %ld: a descriptor it passed "
				    "was dropped (walmmapd is out of file "
				    "descriptors)", (long)c->pid);
			conn_error(c, hdr.id, WAL_PERR_BADFD, 0, "the memfd "
			    "passed with APPEND_FD was dropped on receipt: "
			    "walmmapd is out of file descriptors; the record "
			    "was not written");
			return (1);
		}
	}
	conn_handle(c, srv->rxbuf, (size_t)n, fd);
	wrote = srv->bytes - before;
	if (wrote > (uint64_t)n)
		*spent += wrote - (uint64_t)n;
	return (1);
}

/* Dispatch one received frame; owns fd. */
static void
conn_handle(struct conn *c, const uint8_t *buf, size_t len, int fd)
{
	struct wal_msg hdr;
	char why[256];
	unsigned code;

	code = (unsigned)wal_proto_check(buf, len, 0, why, sizeof why);
	if (code != 0) {
		closer_close(c->srv->closer, fd);
		conn_error(c, len >= sizeof hdr ? ((const struct wal_msg *)
		    (const void *)buf)->id : 0, code, 1, "%s", why);
		return;
	}
	memcpy(&hdr, buf, sizeof hdr);
	if (hdr.type != WAL_MSG_APPEND_FD && fd != -1) {
		closer_close(c->srv->closer, fd);
		fd = -1;
	}
	if (!c->hello_done && hdr.type != WAL_MSG_HELLO) {
		closer_close(c->srv->closer, fd);
		conn_error(c, hdr.id, WAL_PERR_PROTO, 1, "%s before HELLO",
		    wal_proto_type_name(hdr.type));
		return;
	}
	if (hdr.type >= WAL_MSG_PRODUCER && hdr.type <= WAL_MSG_RESTART &&
	    c->version < 2) {
		closer_close(c->srv->closer, fd);
		conn_error(c, hdr.id, WAL_PERR_VERSION, 0, "%s needs protocol "
		    "version 2; this connection agreed on %u",
		    wal_proto_type_name(hdr.type), c->version);
		return;
	}
	if (!rights_request(c, hdr.type, hdr.id)) {
		closer_close(c->srv->closer, fd);
		return;
	}
	switch (hdr.type) {
	case WAL_MSG_HELLO:
		if (c->hello_done) {
			conn_error(c, hdr.id, WAL_PERR_PROTO, 1,
			    "second HELLO");
			return;
		}
		conn_hello(c, (const struct wal_msg_hello *)(const void *)buf);
		break;
	case WAL_MSG_APPEND:
		conn_append(c, buf, len, 0);
		break;
	case WAL_MSG_PRODUCER:
		prod_producer(c, (const struct wal_msg_producer *)
		    (const void *)buf);
		break;
	case WAL_MSG_APPEND_P: {
		uint64_t pseq;

		if ((pseq = prod_append_check(c, buf, len)) != 0)
			conn_append(c, buf, len, pseq);
		break;
	}
	case WAL_MSG_APPEND_FD: {
		struct wal_msg_append_fd af;

		memcpy(&af, buf, sizeof af);
		if (af.size > CONN_READ_BUDGET && fd != -1 &&
		    !c->srv->stopping) {
			/* Written in its turn (conn_parked_cb). */
			c->park_af = af;
			c->park_fd = fd;
			conn_park(c, CONN_PARK_APPEND_FD);
			break;
		}
		conn_append_fd(c, &af, fd);
		break;
	}
	case WAL_MSG_SYNC:
		conn_sync(c, hdr.id);
		break;
	case WAL_MSG_STATUS: {
		uint8_t reply[sizeof(struct wal_status) + FWD_STATUS_MAX +
		    PATH_MAX];
		struct wal_status st;
		size_t dlen = 0, flen = 0;

		srv_status(c->srv, &st);
		st.hdr.id = hdr.id;
		if ((hdr.flags & WAL_STATUS_F_FWD) && c->version >= 2) {
			/* Forwarders and the log id (forward.c). */
			flen = fwd_status(c->srv, reply + sizeof st,
			    FWD_STATUS_MAX);
			st.hdr.len = (uint32_t)(sizeof st + flen);
		}
		if (hdr.flags & WAL_STATUS_F_DIR) {
			/* The whole directory, which st.dir may cut. */
			dlen = strnlen(c->srv->cfg.dir, PATH_MAX);
			memcpy(reply + sizeof st + flen, c->srv->cfg.dir, dlen);
			st.hdr.len = (uint32_t)(sizeof st + flen + dlen);
		}
		memcpy(reply, &st, sizeof st);
		conn_queue(c, reply, sizeof st + flen + dlen);
		break;
	}
	case WAL_MSG_ROTATE:
		conn_rotate(c, hdr.id);
		break;
	case WAL_MSG_PING: {
		struct wal_msg ok = { WAL_MSG_OK, 0, sizeof ok, hdr.id };

		conn_queue(c, &ok, sizeof ok);
		break;
	}
	case WAL_MSG_METRICS:
		metrics_request(c, hdr.id);
		break;
	case WAL_MSG_SUBSCRIBE:
		conn_subscribe(c, (const struct wal_msg_subscribe *)
		    (const void *)buf);
		break;
	case WAL_MSG_SHM_OPEN:
		shm_open_ring(c, (const struct wal_msg_shm_open *)
		    (const void *)buf);
		break;
	case WAL_MSG_FWD_REGISTER:
		fwd_register(c, (const struct wal_msg_fwd_register *)
		    (const void *)buf);
		break;
	case WAL_MSG_FWD_POSITION:
		fwd_position(c, (const struct wal_msg_fwd_position *)
		    (const void *)buf);
		break;
	case WAL_MSG_RESTART:
		/* The admin right was checked before the switch (rights.c). */
		(void)handover_request(c->srv, c, hdr.id, HANDOVER_EXEC);
		break;
	default:
		conn_error(c, hdr.id, WAL_PERR_UNSUPPORTED, 0, "%s is not "
		    "supported by this daemon", wal_proto_type_name(hdr.type));
		break;
	}
}

/* HELLO: agree on a version, answer with the limits. */
static void
conn_hello(struct conn *c, const struct wal_msg_hello *h)
{
	struct server *srv = c->srv;
	struct wal_msg_welcome w;

	if (h->version_min > WAL_PROTO_VERSION ||
	    h->version_max < WAL_PROTO_VERSION_MIN) {
		conn_error(c, h->hdr.id, WAL_PERR_VERSION, 1, "client speaks "
		    "protocol versions %u..%u, this daemon speaks %u..%u",
		    h->version_min, h->version_max, WAL_PROTO_VERSION_MIN,
		    WAL_PROTO_VERSION);
		return;
	}
	c->hello_done = 1;
	c->version = h->version_max < WAL_PROTO_VERSION ? h->version_max :
	    WAL_PROTO_VERSION;
	c->ack = h->ack;
	memset(&w, 0, sizeof w);
	w.hdr.type = WAL_MSG_WELCOME;
	w.hdr.len = sizeof w;
	w.hdr.id = h->hdr.id;
	w.version = c->version;
	w.max_frame = WAL_PROTO_MAX_FRAME;
	w.max_record = srv->cfg.max_record;
	w.max_inflight = srv->cfg.max_inflight;
	w.next_seq = wal_ring_next_seq(srv->ring);
	conn_queue(c, &w, sizeof w);
}

/* What conn_journal() needs of the run being appended. */
struct conn_run {
	struct conn	*c;
	uint64_t	 pseq;		/* of the run's first record */
	int		 first;		/* the run starts the frame */
};

/*
 * wal_ring_each_fn: record i of a run has seq; an APPEND_P's records go
 * into the producer table before they can be published.
 */
static void
conn_journal(void *arg, unsigned i, int64_t seq)
{
	struct conn_run *jr = arg;

	wal_ptab_note(jr->c->srv->ptab, jr->c->producer_id, jr->pseq + i,
	    seq, jr->first && i == 0 ? WAL_PTAB_J_FIRST : 0);
}

/*
 * APPEND: all records of the frame, consecutive seqs, one timestamp.
 * APPEND_P (pseq, its first producer seq, not 0): the same, each record
 * journalled in the producer table before it is published.
 */
static void
conn_append(struct conn *c, const uint8_t *buf, size_t len, uint64_t pseq)
{
	struct server *srv = c->srv;
	struct wal_msg_append a;
	struct wal_error err;
	const uint8_t *payload;
	size_t off0 = pseq != 0 ? sizeof(struct wal_msg_append_p) : 0;
	size_t off = off0;
	uint32_t size, done = 0, skip = 0, todo;
	int64_t ts, seq, first = -1;
	struct iovec iov[CONN_RUN];
	struct conn_run jr;
	unsigned ack, m = 0, k, i;
	int more;

	memcpy(&a, buf, sizeof a);
	if (pseq != 0) {
		uint64_t fp;

		/* Records below pseq are in the log (prod_append_check). */
		memcpy(&fp, buf + offsetof(struct wal_msg_append_p,
		    first_pseq), sizeof fp);
		skip = (uint32_t)(pseq - fp);
	}
	todo = a.count - skip;
	ack = a.ack == WAL_ACK_DEFAULT ? c->ack : a.ack;
	if (ack == WAL_ACK_DURABLE && srv->sync_failed) {
		conn_error(c, a.hdr.id, WAL_PERR_SYNC, 0, "%s; durable appends "
		    "are refused", srv->sync_error);
		return;
	}
	/* Refuse the whole frame before writing any of it. */
	while (wal_proto_next_record((const struct wal_msg_append *)
	    (const void *)buf, len, &off, &payload, &size))
		if (size > srv->cfg.max_record) {
			conn_error(c, a.hdr.id, WAL_PERR_TOO_LARGE, 0, "record "
			    "of %" PRIu32 " bytes exceeds max_record %" PRIu32,
			    size, srv->cfg.max_record);
			return;
		}
	/* Runs of up to CONN_RUN records, each read once from the frame. */
	ts = wal_now_ns();
	off = off0;
	jr.c = c;
	for (more = 1; more;) {
		more = wal_proto_next_record((const struct wal_msg_append *)
		    (const void *)buf, len, &off, &payload, &size);
		if (more && skip > 0) {
			skip--;
			continue;
		}
		if (more) {
			iov[m].iov_base = (void *)(uintptr_t)payload;
			iov[m].iov_len = size;
			if (++m < CONN_RUN)
				continue;
		}
		if (m == 0)
			break;
		seq = wal_ring_next_seq(srv->ring);
		jr.pseq = pseq + done;
		jr.first = done == 0;
		k = wal_ring_append_run(srv->ring, iov, m, ts, pseq != 0 ?
		    conn_journal : NULL, &jr, &err);
		if (k > 0 && first < 0)
			first = seq;
		for (i = 0; i < k; i++)
			srv->bytes += iov[i].iov_len;
		done += k;
		if (k < m) {
			/* Disk full at rotation: the rest is not written. */
			if (srv_log_client(srv))
				log_warnx("%s", err.msg);
			if (done > 0 && ack >= WAL_ACK_WRITTEN)
				conn_ack_add(c, a.hdr.id, first, done);
			conn_error(c, a.hdr.id, conn_errno_perr(err.code), 0,
			    "%" PRIu32 " of %" PRIu32 " records written: %s",
			    done, todo, err.msg);
			goto out;
		}
		m = 0;
	}
	wal_ring_flush(srv->ring);	/* written before acknowledged */
	if (ack >= WAL_ACK_WRITTEN)
		conn_ack_add(c, a.hdr.id, first, done);
out:
	if (done > 0 && pseq != 0)
		prod_appended(c, pseq + done, first + done - 1, ts);
	if (done > 0) {
		srv->records += done;
		srv->metrics.append_records[ack < 3 ? ack : 0] += done;
		c->records += done;
		srv->sub_dirty = 1;
		if (ack == WAL_ACK_DURABLE) {
			c->durable_want = first + done - 1;
			if (c->durable_low < 0)
				c->durable_low = first;
			c->acks_held = 1;
		}
	}
}

/* APPEND_FD: one record read from a sealed memfd straight into the log. */
static void
conn_append_fd(struct conn *c, const struct wal_msg_append_fd *a, int fd)
{
	const int need = F_SEAL_SHRINK | F_SEAL_WRITE;
	struct server *srv = c->srv;
	struct wal_error err;
	struct stat st;
	uint8_t *dst;
	uint64_t got = 0;
	ssize_t n;
	int64_t seq;
	unsigned ack = a->ack == WAL_ACK_DEFAULT ? c->ack : a->ack;
	int seals;

	if (fd == -1) {
		conn_error(c, a->hdr.id, WAL_PERR_BADFD, 0, "APPEND_FD without "
		    "a descriptor");
		return;
	}
	if (ack == WAL_ACK_DURABLE && srv->sync_failed) {
		conn_error(c, a->hdr.id, WAL_PERR_SYNC, 0, "%s; durable appends "
		    "are refused", srv->sync_error);
		goto out;
	}
	/*
	 * Only a sealed memfd passes (only memfds take seals), and the
	 * daemon only fstats and preads it: no call here can block on it,
	 * whatever its owner does to it.
	 */
	seals = fcntl(fd, F_GET_SEALS);
	if (seals == -1 || (seals & need) != need) {
		conn_error(c, a->hdr.id, WAL_PERR_BADFD, 0, "the record's memfd "
		    "is not sealed against writing and shrinking "
		    "(F_SEAL_WRITE|F_SEAL_SHRINK)");
		goto out;
	}
	if (fstat(fd, &st) == -1 || (uint64_t)st.st_size < a->size) {
		conn_error(c, a->hdr.id, WAL_PERR_BADFD, 0, "the record's memfd "
		    "holds fewer than the %" PRIu64 " bytes announced",
		    a->size);
		goto out;
	}
	if (a->size > srv->cfg.max_record) {
		conn_error(c, a->hdr.id, WAL_PERR_TOO_LARGE, 0, "record of %"
		    PRIu64 " bytes exceeds max_record %" PRIu32, a->size,
		    srv->cfg.max_record);
		goto out;
	}
	if (wal_ring_reserve(srv->ring, (uint32_t)a->size, &dst, &err) != 0) {
		if (srv_log_client(srv))
			log_warnx("%s", err.msg);
		conn_error(c, a->hdr.id, conn_errno_perr(err.code), 0,
		    "record not written: %s", err.msg);
		goto out;
	}
	while (got < a->size) {
		n = pread(fd, dst + got, a->size - got, (off_t)got);
		if (n <= 0) {
			/* Not committed: zero what the pread stored. */
			wal_ring_abandon(srv->ring);
			conn_error(c, a->hdr.id, WAL_PERR_BADFD, 0, "cannot "
			    "read the record's memfd: %s", n == 0 ?
			    "short read" : strerror(errno));
			goto out;
		}
		got += (uint64_t)n;
	}
	seq = wal_ring_commit(srv->ring, -1);
	srv->records++;
	srv->metrics.append_records[ack < 3 ? ack : 0]++;
	srv->bytes += a->size;
	c->records++;
	srv->sub_dirty = 1;
	if (ack >= WAL_ACK_WRITTEN)
		conn_ack_add(c, a->hdr.id, seq, 1);
	if (ack == WAL_ACK_DURABLE) {
		c->durable_want = seq;
		if (c->durable_low < 0)
			c->durable_low = seq;
		c->acks_held = 1;
	}
out:
	closer_close(srv->closer, fd);	/* it may not be a memfd at all */
}

/* SYNC: answer with DURABLE once everything written so far is synced. */
static void
conn_sync(struct conn *c, uint64_t id)
{
	struct server *srv = c->srv;
	int64_t target = wal_ring_written_seq(srv->ring);
	struct wal_msg_durable d;

	if (srv->sync_failed) {
		conn_error(c, id, WAL_PERR_SYNC, 0, "%s", srv->sync_error);
		return;
	}
	if (target <= wal_ring_durable_seq(srv->ring)) {
		memset(&d, 0, sizeof d);
		d.hdr.type = WAL_MSG_DURABLE;
		d.hdr.len = sizeof d;
		d.hdr.id = id;
		d.durable_seq = wal_ring_durable_seq(srv->ring);
		conn_queue(c, &d, sizeof d);
		return;
	}
	if (c->nsyncs == CONN_MAX_SYNC_WAITS) {
		conn_error(c, id, WAL_PERR_BUSY, 0, "more than %d SYNC requests "
		    "outstanding", CONN_MAX_SYNC_WAITS);
		return;
	}
	c->syncs[c->nsyncs].id = id;
	c->syncs[c->nsyncs].target = target;
	c->nsyncs++;
}

/*
 * ROTATE: seal the active segment. Each rotation abandons the rest of a
 * segment (its disk space is taken) and may create the next one on this
 * thread, so requests rotate at most once per SRV_ROTATE_MS: one that
 * comes sooner parks its connection until the next rotation, which
 * answers every ROTATE waiting then (srv_rotate_cb).
 */
static void
conn_rotate(struct conn *c, uint64_t id)
{
	struct wal_msg ok = { WAL_MSG_OK, 0, sizeof ok, id };
	char err[WAL_ERROR_MSG_MAX];
	int rc;

	if ((rc = srv_rotate_now(c->srv, c->pid, err, sizeof err)) == 0) {
		conn_queue(c, &ok, sizeof ok);
		return;
	}
	if (rc > 0) {
		conn_error(c, id, (unsigned)rc, 0, "%s", err);
		return;
	}
	c->park_id = id;
	conn_park(c, CONN_PARK_ROTATE);
	srv_rotate_later(c->srv);
}

/*
 * The rotation a parked ROTATE waited for happened (rc 0) or failed (a
 * WAL_PERR_* and why): answer it, read on.
 */
void
conn_rotated(struct conn *c, int rc, const char *err)
{
	struct wal_msg ok = { WAL_MSG_OK, 0, sizeof ok, c->park_id };

	if (c->parked != CONN_PARK_ROTATE)
		return;
	if (rc != 0)
		conn_error(c, c->park_id, (unsigned)rc, 0, "%s", err);
	else
		conn_queue(c, &ok, sizeof ok);
	conn_unpark(c);
}

/*
 * Park: a frame waits for its turn; nothing more is read from the
 * connection, and nothing more drained from its shared-memory ring, until
 * it is handled (conn_unpark), so replies keep the order of the requests
 * and records the order they were sent in. A large APPEND_FD joins
 * srv->parked.
 */
static void
conn_park(struct conn *c, enum conn_park why)
{
	struct server *srv = c->srv;
	static const struct timeval zero = { 0, 0 };

	c->parked = why;
	event_del(c->ev_read);
	log_debug("client pid %ld: %s waits for its turn", (long)c->pid,
	    why == CONN_PARK_ROTATE ? "ROTATE" : "a large APPEND_FD");
	if (why != CONN_PARK_APPEND_FD)
		return;
	TAILQ_INSERT_TAIL(&srv->parked, c, park_entry);
	if (TAILQ_FIRST(&srv->parked) == c)
		event_add(srv->ev_parked, &zero);
}

/* The parked frame is handled: read on (unless paused or closing). */
static void
conn_unpark(struct conn *c)
{
	if (c->parked == CONN_PARK_APPEND_FD)
		TAILQ_REMOVE(&c->srv->parked, c, park_entry);
	c->parked = CONN_PARK_NONE;
	c->park_fd = -1;
	conn_read_enable(c);
	shm_unparked(c);
}

/* Read the connection again unless something still holds it. */
void
conn_read_enable(struct conn *c)
{
	if (!c->closing && !c->read_paused && !c->parked && !c->fd_wait)
		event_add(c->ev_read, NULL);
}

/* Write a parked APPEND_FD record now and read on. */
static void
conn_run_parked(struct conn *c)
{
	struct wal_msg_append_fd af = c->park_af;
	int fd = c->park_fd;

	conn_unpark(c);
	conn_append_fd(c, &af, fd);
}

/*
 * One parked APPEND_FD record per loop pass (a zero timeout: sockets,
 * timers and signals are served between two), the oldest first; then
 * its connection's acknowledgements go out as after a read pass.
 */
void
conn_parked_cb(int fd, short ev, void *arg)
{
	static const struct timeval zero = { 0, 0 };
	struct server *srv = arg;
	struct conn *c;

	(void)fd;
	(void)ev;
	if ((c = TAILQ_FIRST(&srv->parked)) == NULL)
		return;
	conn_run_parked(c);
	if (!TAILQ_EMPTY(&srv->parked))
		event_add(srv->ev_parked, &zero);
	conn_after_pass(c);	/* may free c */
}

/* SUBSCRIBE: open a reader and start streaming when writable. */
void
conn_subscribe(struct conn *c, const struct wal_msg_subscribe *s)
{
	struct server *srv = c->srv;
	struct wal_error err;
	int64_t from = s->from_seq;
	int rc;

	if (c->sub != NULL) {
		conn_error(c, s->hdr.id, WAL_PERR_PROTO, 1, "second "
		    "SUBSCRIBE on one connection");
		return;
	}
	if (wal_reader_open_dir(srv->data_dirfd, srv->cfg.dir, &c->sub,
	    &err) != 0) {
		conn_error(c, s->hdr.id, WAL_PERR_IO, 1, "%s", err.msg);
		return;
	}
	if (from < 0)
		from = wal_ring_next_seq(srv->ring);
	/* -ENOENT: from is past the end; the reader waits there. */
	if ((rc = wal_reader_seek(c->sub, from, &err)) != 0 && rc != -ENOENT) {
		conn_error(c, s->hdr.id, WAL_PERR_IO, 1, "%s", err.msg);
		return;
	}
	/* One timer serves every subscription of the connection. */
	if (c->ev_sub_retry == NULL && (c->ev_sub_retry = evtimer_new(
	    srv->base, conn_sub_retry_cb, c)) == NULL) {
		conn_error(c, s->hdr.id, WAL_PERR_IO, 1, "out of memory");
		return;
	}
	c->sub_to = s->to_seq;
	c->sub_follow = (s->flags & WAL_SUB_FOLLOW) != 0;
	event_add(c->ev_write, NULL);
}

/* Fill one frame of records for a subscriber; at the end wait or stop. */
static void
conn_sub_pump(struct conn *c)
{
	uint8_t *frame = c->srv->txbuf;
	struct wal_msg_records hdr;
	struct wal_msg_sub_end end;
	struct wal_rec_out ro;
	struct wal_record rec;
	struct wal_error err;
	size_t off = sizeof hdr;
	uint32_t count = 0;
	int rc;

	while (!c->sub_done) {
		if (c->sub_held) {
			rec = c->sub_rec;
			c->sub_held = 0;
		} else if ((rc = wal_reader_next(c->sub, &rec, &err)) <= 0)
			break;
		if (c->sub_to >= 0 && rec.seq > c->sub_to) {
			c->sub_done = 1;
			break;
		}
		memset(&ro, 0, sizeof ro);
		ro.seq = rec.seq;
		ro.timestamp_ns = rec.timestamp_ns;
		ro.size = rec.size;
		if (off + sizeof ro + rec.size > WAL_PROTO_MAX_FRAME) {
			if (count > 0) {
				/* Send it first in the next frame. */
				c->sub_rec = rec;
				c->sub_held = 1;
				break;
			}
			/* Too big for any frame: hand over a sealed memfd. */
			if (!conn_sub_fd_ok(c, rec.size)) {
				c->sub_rec = rec;
				c->sub_held = 1;
				return;
			}
			conn_sub_send_fd(c, &ro, &rec);
			goto sent;
		}
		memcpy(frame + off, &ro, sizeof ro);
		memcpy(frame + off + sizeof ro, rec.payload, rec.size);
		off += sizeof ro + rec.size;
		count++;
	}
	if (count > 0) {
		memset(&hdr, 0, sizeof hdr);
		hdr.hdr.type = WAL_MSG_RECORDS;
		hdr.hdr.len = (uint32_t)off;
		hdr.count = count;
		memcpy(frame, &hdr, sizeof hdr);
		conn_queue(c, frame, off);
		goto sent;
	}
	/* Nothing more now. */
	if (c->sub_follow && !c->sub_done &&
	    wal_reader_stopped(c->sub)->status == WAL_REC_END) {
		c->sub_waiting = 1;
		return;
	}
	memset(&end, 0, sizeof end);
	end.hdr.type = WAL_MSG_SUB_END;
	end.hdr.len = sizeof end;
	end.next_seq = c->sub_done ? c->sub_to + 1 :
	    wal_reader_position(c->sub);
	end.reason = c->sub_done || wal_reader_stopped(c->sub)->status ==
	    WAL_REC_END ? 0 : wal_reader_stopped(c->sub)->status;
	conn_queue(c, &end, sizeof end);
	wal_reader_close(c->sub);
	c->sub = NULL;
	conn_flush(c);
	return;

sent:
	/*
	 * More may follow: come back when writable (a queue still full has
	 * armed the write event already).
	 */
	if (conn_flush(c) == 0 && outq_bytes(&c->out) == 0)
		event_add(c->ev_write, NULL);
}

/* Queue RECORD_FD: one record in a sealed memfd (it fits no frame). */
static void
conn_sub_send_fd(struct conn *c, const struct wal_rec_out *ro,
    const struct wal_record *rec)
{
	uint8_t fb[sizeof(struct wal_msg) + sizeof *ro];
	struct wal_msg h = { WAL_MSG_RECORD_FD, 0, sizeof fb, 0 };
	int mfd;

	mfd = memfd_create("walmmap-record", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd == -1 || write(mfd, rec->payload, rec->size) !=
	    (ssize_t)rec->size || fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK |
	    F_SEAL_GROW | F_SEAL_WRITE) == -1) {
		conn_error(c, 0, WAL_PERR_IO, 1, "cannot pass record %" PRId64
		    " in a memfd: %s", rec->seq, strerror(errno));
		if (mfd != -1)
			close(mfd);
		return;
	}
	memcpy(fb, &h, sizeof h);
	memcpy(fb + sizeof h, ro, sizeof *ro);
	c->sub_fd_bytes = rec->size;
	c->srv->sub_fd_total += rec->size;
	if (outq_push_fd(&c->out, fb, sizeof fb, mfd) != 0) {	/* closes mfd */
		log_warnx("client pid %ld: out of memory for replies; "
		    "disconnecting it", (long)c->pid);
		conn_closing(c);
	}
}

/*
 * May a record of size bytes go to the subscriber in a memfd now? Each
 * memfd is memory (shmem) the daemon made, held until the subscriber
 * reads it, and a subscriber that does not read would otherwise be sent
 * one after another (as many as its socket takes): so at most one per
 * subscriber is unread (the socket's outgoing queue, SIOCOUTQ, is empty
 * once the subscriber has read all it was sent), and all subscribers'
 * unread ones together stay within max_inflight_total (but one always may
 * go). If not now, a timer looks again in CONN_SUB_RETRY_MS.
 */
static int
conn_sub_fd_ok(struct conn *c, uint32_t size)
{
	static const struct timeval retry = { 0, CONN_SUB_RETRY_MS * 1000 };
	struct server *srv = c->srv;
	int unread;

	if (c->sub_fd_bytes > 0) {
		if (ioctl(c->fd, SIOCOUTQ, &unread) == -1 || unread > 0)
			goto later;
		srv->sub_fd_total -= c->sub_fd_bytes;
		c->sub_fd_bytes = 0;
	}
	if (srv->sub_fd_total > 0 && srv->sub_fd_total + srv->outq_total +
	    size > srv->cfg.max_inflight_total)
		goto later;
	return (1);
later:
	evtimer_add(c->ev_sub_retry, &retry);
	return (0);
}

/* Look again whether the subscriber's memfd was read. */
static void
conn_sub_retry_cb(int fd, short ev, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)ev;
	if (c->sub != NULL && outq_bytes(&c->out) == 0)
		conn_sub_pump(c);
}

/* Remember an ack; coalesced until the end of the read pass. */
static void
conn_ack_add(struct conn *c, uint64_t id, int64_t first, uint32_t count)
{
	struct wal_ack_entry *n;
	size_t cap;

	if (c->nacks == c->acks_cap) {
		cap = c->acks_cap ? c->acks_cap * 2 : 16;
		if ((n = reallocarray(c->acks, cap, sizeof *n)) == NULL) {
			conn_ack_flush(c);
			if (c->nacks == c->acks_cap)
				return;
		} else {
			c->acks = n;
			c->acks_cap = cap;
		}
	}
	c->acks[c->nacks].id = id;
	c->acks[c->nacks].first_seq = first;
	c->acks[c->nacks].count = count;
	c->acks[c->nacks].flags = 0;
	c->nacks++;
}

/*
 * Acknowledge a resent APPEND_P from the log (WAL_ACK_F_DUP); first is
 * the original's seq (-1: no longer known). At level durable the ack is
 * held, like a new record's, until durable_until is durable.
 */
void
conn_ack_dup(struct conn *c, uint64_t id, int64_t first, uint32_t count,
    unsigned ack, int64_t durable_until)
{
	if (ack < WAL_ACK_WRITTEN)
		return;
	conn_ack_add(c, id, first, count);
	if (c->nacks > 0 && c->acks[c->nacks - 1].id == id)
		c->acks[c->nacks - 1].flags = WAL_ACK_F_DUP;
	if (ack == WAL_ACK_DURABLE && durable_until >
	    wal_ring_durable_seq(c->srv->ring)) {
		if (durable_until > c->durable_want)
			c->durable_want = durable_until;
		if (c->durable_low < 0)
			c->durable_low = durable_until;
		c->acks_held = 1;
	}
}

/* Queue the coalesced acks as ACK frames (in their own buffer). */
static void
conn_ack_flush(struct conn *c)
{
	const size_t per = (WAL_PROTO_MAX_FRAME - sizeof(struct wal_msg_ack)) /
	    sizeof(struct wal_ack_entry);
	uint8_t *frame = c->srv->ackbuf;
	struct wal_msg_ack a;
	size_t i, n;

	for (i = 0; i < c->nacks; i += n) {
		n = c->nacks - i < per ? c->nacks - i : per;
		memset(&a, 0, sizeof a);
		a.hdr.type = WAL_MSG_ACK;
		a.hdr.len = (uint32_t)(sizeof a + n * sizeof *c->acks);
		a.count = (uint32_t)n;
		memcpy(frame, &a, sizeof a);
		memcpy(frame + sizeof a, c->acks + i, n * sizeof *c->acks);
		if (outq_push(&c->out, frame, a.hdr.len) != 0) {
			log_warnx("client pid %ld: out of memory for replies; "
			    "disconnecting it", (long)c->pid);
			conn_closing(c);
			break;
		}
	}
	c->nacks = 0;
}

/*
 * Queue a frame behind any acks still being coalesced, so replies leave in
 * the order requests came. Out of memory drops the client, not the daemon.
 */
static void
conn_queue(struct conn *c, const void *frame, size_t len)
{
	(void)conn_queue_fds(c, frame, len, NULL, 0);
}

/* conn_queue() with descriptors to pass (owned from now). 0 or -1. */
int
conn_queue_fds(struct conn *c, const void *frame, size_t len, const int *fds,
    int nfds)
{
	if (c->nacks > 0)
		conn_ack_flush(c);
	if (outq_push_fds(&c->out, frame, len, fds, nfds) != 0) {
		log_warnx("client pid %ld: out of memory for replies; "
		    "disconnecting it", (long)c->pid);
		conn_closing(c);
		return (-1);
	}
	return (0);
}

/* This client just got durability; it will likely be back for more. */
void
conn_expect(struct conn *c)
{
	if (c->durable_expected || c->srv->stopping)
		return;
	c->durable_expected = 1;
	c->srv->durable_expected++;
}

/*
 * Is anything owed to the client: replies queued or held, a durable ack
 * or SYNC answer it waits for (socket or ring), a subscription?
 */
static int
conn_owed(const struct conn *c)
{
	return (outq_bytes(&c->out) > 0 || c->nacks > 0 || c->acks_held ||
	    c->sub != NULL || c->parked || conn_durable_owed(c));
}

/* Monotonic milliseconds, for timeouts. */
static int64_t
conn_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Map a ring errno to a protocol error code. */
unsigned
conn_errno_perr(int e)
{
	switch (e) {
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return (WAL_PERR_NOSPC);
	case EMSGSIZE:
		return (WAL_PERR_TOO_LARGE);
	default:
		return (WAL_PERR_IO);
	}
}
