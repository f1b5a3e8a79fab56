/*
 * libwalmmap - idempotent producers with transparent reconnect.
 *
 * A struct walmmap_producer is a connection that presented a producer id
 * (PRODUCER) and appends with APPEND_P: every record carries its producer
 * seq. Frames are kept, whole, until the daemon acknowledged them at the
 * producer's level. When the connection drops (the daemon crashed or was
 * restarted), the library connects again with backoff until the
 * reconnect timeout, resumes the same producer id, and sends every frame
 * not yet acknowledged again with the same producer seqs: the daemon
 * writes those it does not have and answers the others from its producer
 * table with their original seqs (WAL_ACK_F_DUP). Each append call
 * returns success once, after every one of its records is acknowledged.
 *
 * Owned by one thread; nothing is shared.
 */
#include "config.h"

#include <sys/uio.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "wal_format.h"
#include "walmmap.h"

_Static_assert(WALMMAP_PRODUCER_MAX_RECORD == WAL_PROTO_MAX_FRAME -
    sizeof(struct wal_msg_append_p) - 4, "producer record limit");

#define PROD_BACKOFF_MIN_MS	10
#define PROD_BACKOFF_MAX_MS	1000

/*
 * A frame sent and not yet acknowledged at the producer's level. Its ACK
 * may come in several entries: the records a crash cut it to (a
 * duplicate, one entry per run of consecutive seqs, when it had been cut
 * more than once) and the rest, written when it was sent again.
 */
struct pframe {
	uint8_t		*buf;		/* the whole APPEND_P frame */
	uint32_t	 len;
	uint32_t	 count;
	uint64_t	 id;		/* hdr.id of the last send */
	uint32_t	 acked;		/* records acknowledged so far */
	int64_t		*seq;		/* [count]: of those, -1 unknown */
	/*
	 * With a ring (walmmap_producer_set_shm) records go one by one:
	 * through the ring, or alone in an APPEND_P with id id + k.
	 */
	uint32_t	*roff;		/* record k's length word in buf */
	uint64_t	*rpos;		/* its ring slot, UINT64_MAX: socket */
	int64_t		*rseq;		/* its seq, PROD_PENDING: not yet */
};

#define PROD_PENDING	INT64_MIN

struct walmmap_producer {
	char			*socket;
	int			 fd;		/* -1: not connected */
	uint8_t			 ack;		/* WRITTEN or DURABLE */
	uint64_t		 id;
	uint64_t		 next_pseq;	/* of the next record */
	uint64_t		 daemon_pseq;	/* walmmapd's, at PRODUCER_OK */
	int64_t			 durable;	/* newest DURABLE seen */
	uint64_t		 next_req;
	int			 timeout_ms;	/* each call, -1 none */
	int			 reconnect;	/* on? */
	int			 reconnect_ms;	/* limit of one outage, -1 */
	uint64_t		 reconnects;
	uint64_t		 dups;		/* records acknowledged as DUP */
	int			 use_shm;	/* a ring on each connection */
	struct wm_shm		*shm;		/* this connection's, or NULL */
	uint64_t		 srv_next;	/* next_pseq of PRODUCER_OK */
	uint8_t			*tx;		/* one-record APPEND_P frames */
	struct wal_msg_welcome	 welcome;
	struct pframe		*frames;	/* of the call in progress, */
	size_t			 nframes;
	size_t			 ndoubt;	/* after those of failed calls */
	uint8_t			*rx;
	char			 msg[WM_MSG_MAX];
};

static int	prod_connect(struct walmmap_producer *, int64_t deadline);
static int	prod_hello(struct walmmap_producer *, int64_t deadline);
static int	prod_recover(struct walmmap_producer *, int rc);
static int	prod_send_all(struct walmmap_producer *);
static int	prod_collect(struct walmmap_producer *, int64_t deadline);
static int	prod_handle(struct walmmap_producer *, const uint8_t *, int);
static int	prod_sync(struct walmmap_producer *, int64_t seq,
		    int64_t deadline);
static void	prod_drop(struct walmmap_producer *);
static void	prod_free_frames(struct walmmap_producer *);
static void	prod_unack(struct walmmap_producer *);
static void	prod_rebase(struct walmmap_producer *);
static int	prod_shm_open(struct walmmap_producer *, int64_t deadline);
static int	prod_ring_send(struct walmmap_producer *, struct pframe *);
static int	prod_ring_collect(struct walmmap_producer *, int64_t deadline);
static void	prod_ring_harvest(struct walmmap_producer *);
static int	prod_read_one(struct walmmap_producer *, int64_t deadline);

int
walmmap_producer_open(struct walmmap_producer **pp, const char *socket,
    enum walmmap_ack ack, uint64_t producer_id)
{
	struct walmmap_producer *p;
	char path[4096];
	int rc;

	if ((*pp = p = calloc(1, sizeof *p)) == NULL)
		return (-WALMMAP_ENOMEM);
	p->fd = -1;
	p->timeout_ms = WALMMAP_TIMEOUT_MS;
	p->reconnect = 1;
	p->reconnect_ms = WALMMAP_RECONNECT_TIMEOUT_MS;
	p->durable = -1;
	p->next_req = 1;
	p->id = producer_id;
	if (ack != WALMMAP_ACK_WRITTEN && ack != WALMMAP_ACK_DURABLE)
		return (wm_seterr(p->msg, WALMMAP_EINVAL, "walmmap_producer_"
		    "open: level %d is neither WALMMAP_ACK_WRITTEN nor "
		    "WALMMAP_ACK_DURABLE", (int)ack));
	p->ack = (uint8_t)ack;
	if (socket == NULL) {
		wal_proto_default_socket(path, sizeof path);
		socket = path;
	}
	p->socket = strdup(socket);
	p->rx = malloc(WAL_PROTO_MAX_FRAME);
	if (p->socket == NULL || p->rx == NULL)
		return (wm_seterr(p->msg, WALMMAP_ENOMEM, "out of memory"));
	rc = prod_connect(p, wm_deadline(WALMMAP_CONNECT_TIMEOUT_MS));
	/*
	 * A daemon that closed the connection (it died, or stops) is waited
	 * for like a lost one. No daemon at all is an error at once for a
	 * new producer, but not for one resumed by id: its daemon was there
	 * before and may be restarting.
	 */
	if (rc == -WALMMAP_ENODAEMON && producer_id != 0)
		rc = -WALMMAP_ELOST;
	if (rc == -WALMMAP_ELOST || rc == -WALMMAP_ESHUTDOWN)
		rc = prod_recover(p, rc);
	return (rc < 0 ? rc : 0);
}

void
walmmap_producer_set_timeout(struct walmmap_producer *p, int timeout_ms)
{
	p->timeout_ms = timeout_ms < 0 ? -1 : timeout_ms;
}

void
walmmap_producer_set_reconnect(struct walmmap_producer *p, int on,
    int timeout_ms)
{
	p->reconnect = on;
	p->reconnect_ms = timeout_ms < 0 ? -1 : timeout_ms;
}

/*
 * Append through a shared-memory ring (on), opened now if connected and
 * on every reconnect. 0, or -code when the ring cannot be had now.
 */
int
walmmap_producer_set_shm(struct walmmap_producer *p, int on)
{
	int rc;

	if (p->nframes > 0)
		return (wm_seterr(p->msg, WALMMAP_EINVAL, "walmmap_producer_"
		    "set_shm: an append is in progress"));
	p->use_shm = on != 0;
	if (p->tx == NULL && (p->tx = malloc(WAL_PROTO_MAX_FRAME)) == NULL)
		return (wm_seterr(p->msg, WALMMAP_ENOMEM, "out of memory"));
	if (!on) {
		wm_shm_free(p->shm);
		p->shm = NULL;
		return (0);
	}
	if (p->fd == -1 || p->shm != NULL)
		return (0);
	rc = prod_shm_open(p, wm_deadline(WALMMAP_CONNECT_TIMEOUT_MS));
	/* Lost meanwhile: the next call reconnects, ring and all. */
	if ((rc == -WALMMAP_ELOST || rc == -WALMMAP_ESHUTDOWN) && p->reconnect)
		rc = 0;
	return (rc);
}

int
walmmap_producer_shm_active(const struct walmmap_producer *p)
{
	return (p->shm != NULL);
}

uint64_t
walmmap_producer_id(const struct walmmap_producer *p)
{
	return (p->id);
}

uint64_t
walmmap_producer_next_pseq(const struct walmmap_producer *p)
{
	return (p->next_pseq);
}

uint64_t
walmmap_producer_reconnects(const struct walmmap_producer *p)
{
	return (p->reconnects);
}

uint32_t
walmmap_producer_max_record(const struct walmmap_producer *p)
{
	return (p->welcome.max_record);
}

const char *
walmmap_producer_errmsg(const struct walmmap_producer *p)
{
	return (p == NULL ? "out of memory" : p->msg);
}

void
walmmap_producer_close(struct walmmap_producer *p)
{
	if (p == NULL)
		return;
	prod_drop(p);
	prod_free_frames(p);
	free(p->socket);
	free(p->rx);
	free(p->tx);
	free(p);
}

int
walmmap_producer_append(struct walmmap_producer *p, const void *data,
    size_t len, int64_t *seq)
{
	struct iovec iov;

	iov.iov_base = (void *)(uintptr_t)data;
	iov.iov_len = len;
	return (walmmap_producer_append_batch(p, &iov, 1, seq));
}

/*
 * Append n records and return once all are acknowledged at the
 * producer's level, across reconnects. 0, or -code with nothing of a
 * frame not acknowledged claimed. The frames of a call that failed stay
 * (in doubt) and go first in the next call, with their producer seqs:
 * each record is then in the log once, and no seq is skipped.
 */
int
walmmap_producer_append_batch(struct walmmap_producer *p,
    const struct iovec *recs, size_t n, int64_t *seqs)
{
	struct wal_msg_append_p a;
	struct pframe *f, *nf;
	size_t i = 0, j, k, off, start;
	int64_t deadline, last = -1;
	uint64_t pseq0;
	int rc;

	if (n == 0)
		return (0);
	if (recs == NULL)
		return (wm_seterr(p->msg, WALMMAP_EINVAL, "no records array"));
	for (j = 0; j < n; j++)
		if ((recs[j].iov_base == NULL && recs[j].iov_len > 0) ||
		    recs[j].iov_len > WAL_MAX_PAYLOAD ||
		    recs[j].iov_len > p->welcome.max_record ||
		    sizeof a + 4 + recs[j].iov_len > WAL_PROTO_MAX_FRAME)
			return (wm_seterr(p->msg, recs[j].iov_base == NULL &&
			    recs[j].iov_len > 0 ? WALMMAP_EINVAL :
			    WALMMAP_ETOOLARGE, "record %zu of %zu bytes: no "
			    "data, or above the producer's limit of %" PRIu32
			    " bytes", j, recs[j].iov_len, (uint32_t)(
			    p->welcome.max_record < WAL_PROTO_MAX_FRAME -
			    sizeof a - 4 ? p->welcome.max_record :
			    WAL_PROTO_MAX_FRAME - sizeof a - 4)));
	/*
	 * Build every frame first: they are what a reconnect resends. The
	 * frames of failed calls stay in front, sent again as after a
	 * reconnect.
	 */
	if ((nf = reallocarray(p->frames, p->nframes + n, sizeof *nf)) ==
	    NULL)
		return (wm_seterr(p->msg, WALMMAP_ENOMEM, "out of memory"));
	p->frames = nf;
	memset(p->frames + p->nframes, 0, n * sizeof *nf);
	p->ndoubt = p->nframes;
	prod_unack(p);
	pseq0 = p->next_pseq;
	while (i < n) {
		start = i;
		off = sizeof a;
		for (; i < n && off + 4 + recs[i].iov_len <=
		    WAL_PROTO_MAX_FRAME; i++)
			off += 4 + recs[i].iov_len;
		f = &p->frames[p->nframes++];
		if ((f->buf = malloc(off)) == NULL || (f->seq =
		    calloc(i - start, sizeof *f->seq)) == NULL) {
			/* No seq of this call was taken. */
			while (p->nframes > p->ndoubt) {
				free(p->frames[--p->nframes].buf);
				free(p->frames[p->nframes].seq);
			}
			p->next_pseq = pseq0;
			return (wm_seterr(p->msg, WALMMAP_ENOMEM, "out of "
			    "memory"));
		}
		f->len = (uint32_t)off;
		f->count = (uint32_t)(i - start);
		memset(&a, 0, sizeof a);
		a.hdr.type = WAL_MSG_APPEND_P;
		a.hdr.len = f->len;
		a.count = f->count;
		a.ack = p->ack;
		a.first_pseq = p->next_pseq;
		p->next_pseq += f->count;
		memcpy(f->buf, &a, sizeof a);
		if (p->use_shm) {
			f->roff = calloc(f->count, sizeof *f->roff);
			f->rpos = calloc(f->count, sizeof *f->rpos);
			f->rseq = calloc(f->count, sizeof *f->rseq);
			if (f->roff == NULL || f->rpos == NULL ||
			    f->rseq == NULL)
				return (wm_seterr(p->msg, WALMMAP_ENOMEM,
				    "out of memory"));
			for (k = 0; k < f->count; k++)
				f->rseq[k] = PROD_PENDING;
		}
		for (off = sizeof a, k = start; k < i; k++) {
			uint32_t sz = (uint32_t)recs[k].iov_len;

			if (f->roff != NULL)
				f->roff[k - start] = (uint32_t)off;
			memcpy(f->buf + off, &sz, 4);
			if (sz > 0)
				memcpy(f->buf + off + 4, recs[k].iov_base, sz);
			off += 4 + sz;
		}
	}
	for (;;) {
		deadline = p->timeout_ms < 0 ? -1 : wm_deadline(p->timeout_ms);
		if (p->fd == -1)
			rc = -WALMMAP_ELOST;
		else if ((rc = prod_send_all(p)) == 0)
			rc = p->use_shm ? prod_ring_collect(p, deadline) :
			    prod_collect(p, deadline);
		if (rc == 0 && p->ack == WAL_ACK_DURABLE && p->use_shm) {
			for (j = 0; j < p->nframes; j++)
				for (k = 0; k < p->frames[j].count; k++)
					if (p->frames[j].rseq[k] > last)
						last = p->frames[j].rseq[k];
			rc = prod_sync(p, last, deadline);
		} else if (rc == 0 && p->ack == WAL_ACK_DURABLE) {
			for (j = 0; j < p->nframes; j++)
				for (k = 0; k < p->frames[j].count; k++)
					if (p->frames[j].seq[k] > last)
						last = p->frames[j].seq[k];
			rc = prod_sync(p, last, deadline);
		}
		if (rc == 0)
			break;
		if ((rc = prod_recover(p, rc)) < 0) {
			/* Whatever was not acknowledged is in doubt. */
			return (rc);
		}
	}
	if (seqs != NULL)
		for (i = 0, j = p->ndoubt; j < p->nframes; j++) {
			f = &p->frames[j];
			if (f->rseq != NULL) {
				for (k = 0; k < f->count; k++)
					seqs[i++] = f->rseq[k] < 0 ? -1 :
					    f->rseq[k];
				continue;
			}
			for (k = 0; k < f->count; k++)
				seqs[i++] = f->seq[k];
		}
	prod_free_frames(p);
	return (0);
}

/* Connect, HELLO, PRODUCER: one attempt. */
static int
prod_connect(struct walmmap_producer *p, int64_t deadline)
{
	int s, left = wm_left_ms(deadline);

	if ((s = wm_connect_timeout(p->socket, p->ack, &p->welcome,
	    deadline < 0 ? -1 : left, p->msg)) < 0)
		return (s);
	p->fd = s;
	if (p->welcome.version < 2) {
		prod_drop(p);
		return (wm_seterr(p->msg, WALMMAP_ENOTSUP, "walmmapd at %s "
		    "speaks protocol version %u: idempotent producers need "
		    "2", p->socket, p->welcome.version));
	}
	return (prod_hello(p, deadline));
}

/* PRODUCER and its PRODUCER_OK: where the producer stands. */
static int
prod_hello(struct walmmap_producer *p, int64_t deadline)
{
	struct wal_msg_producer m;
	struct wal_msg_producer_ok ok;
	struct wal_msg_error e;
	int n, fd, rc;

	memset(&m, 0, sizeof m);
	m.hdr.type = WAL_MSG_PRODUCER;
	m.hdr.len = sizeof m;
	m.hdr.id = p->next_req++;
	m.producer_id = p->id;
	if ((rc = wm_send(p->fd, &m, sizeof m, -1, 0, p->msg)) < 0) {
		prod_drop(p);
		return (rc);
	}
	for (;;) {
		if ((n = wm_recv(p->fd, p->rx, deadline, &fd, p->msg)) <= 0) {
			prod_drop(p);
			return (n < 0 ? n : wm_seterr(p->msg, WALMMAP_ETIMEDOUT,
			    "no answer to PRODUCER in time"));
		}
		if (fd != -1)
			close(fd);
		memcpy(&m.hdr, p->rx, sizeof m.hdr);
		if (m.hdr.type == WAL_MSG_ERROR) {
			memcpy(&e, p->rx, sizeof e);
			rc = wm_seterr(p->msg, wm_perr(e.code), "walmmapd "
			    "refused producer %" PRIu64 ": %.*s", p->id,
			    (int)(e.hdr.len - sizeof e), (char *)p->rx +
			    sizeof e);
			prod_drop(p);
			return (rc);
		}
		if (m.hdr.type == WAL_MSG_PRODUCER_OK)
			break;
		/* DURABLE of an earlier life, or the like: not ours. */
	}
	memcpy(&ok, p->rx, sizeof ok);
	p->daemon_pseq = ok.next_pseq;
	if (p->id == 0)
		p->next_pseq = ok.next_pseq;
	p->id = ok.producer_id;
	if (ok.durable_seq > p->durable)
		p->durable = ok.durable_seq;
	if (p->next_pseq == 0)
		p->next_pseq = ok.next_pseq;
	p->srv_next = ok.next_pseq;
	if (p->use_shm)
		return (prod_shm_open(p, deadline));
	return (0);
}

/*
 * After rc broke the call: connect again with backoff while the outage
 * lasts less than the reconnect timeout (only for a lost connection).
 */
static int
prod_recover(struct walmmap_producer *p, int rc)
{
	struct timespec ts;
	int64_t deadline;
	int wait = PROD_BACKOFF_MIN_MS;

	if (rc != -WALMMAP_ELOST && rc != -WALMMAP_ESHUTDOWN)
		return (rc);
	prod_drop(p);
	if (!p->reconnect)
		return (rc);
	deadline = p->reconnect_ms < 0 ? -1 : wm_deadline(p->reconnect_ms);
	for (;;) {
		rc = prod_connect(p, deadline < 0 ? wm_deadline(
		    WALMMAP_CONNECT_TIMEOUT_MS) : deadline);
		if (rc == 0) {
			p->reconnects++;
			/*
			 * What was acknowledged written but not yet durable is
			 * sent again: a power cut may have taken it, and the
			 * seqs it had may now be other records'. The daemon
			 * answers what it still has as duplicates. So is a
			 * frame acknowledged in part.
			 */
			prod_unack(p);
			prod_rebase(p);
			return (0);
		}
		/* Refusals are final; a daemon not (yet) there is not. */
		if (rc != -WALMMAP_ENODAEMON && rc != -WALMMAP_ELOST &&
		    rc != -WALMMAP_ESHUTDOWN && rc != -WALMMAP_ETIMEDOUT &&
		    rc != -WALMMAP_EBUSY)
			return (rc);
		if (wm_expired(deadline)) {
			char why[WM_MSG_MAX];

			snprintf(why, sizeof why, "%s", p->msg);
			return (wm_seterr(p->msg, WALMMAP_ELOST, "connection "
			    "to walmmapd lost and not back within %d ms "
			    "(last attempt: %s)", p->reconnect_ms, why));
		}
		ts.tv_sec = wait / 1000;
		ts.tv_nsec = (long)(wait % 1000) * 1000000;
		nanosleep(&ts, NULL);
		wait = wait * 2 > PROD_BACKOFF_MAX_MS ? PROD_BACKOFF_MAX_MS :
		    wait * 2;
	}
}

/* Send every frame not yet acknowledged, with a fresh request id. */
static int
prod_send_all(struct walmmap_producer *p)
{
	struct pframe *f;
	size_t j;
	int rc;

	for (j = 0; j < p->nframes; j++) {
		f = &p->frames[j];
		if (f->acked == f->count)
			continue;
		if (f->rseq != NULL) {
			if ((rc = prod_ring_send(p, f)) < 0)
				return (rc);
			continue;
		}
		f->id = p->next_req++;
		memcpy(f->buf + offsetof(struct wal_msg, id), &f->id,
		    sizeof f->id);
		if ((rc = wm_send(p->fd, f->buf, f->len, -1, 0, p->msg)) < 0)
			return (rc);
	}
	return (0);
}

/* Read replies until every frame has its ACK. */
static int
prod_collect(struct walmmap_producer *p, int64_t deadline)
{
	size_t j, left;
	int n, fd, rc;

	for (;;) {
		for (left = 0, j = 0; j < p->nframes; j++)
			if (p->frames[j].acked < p->frames[j].count)
				left++;
		if (left == 0)
			return (0);
		if ((n = wm_recv(p->fd, p->rx, deadline, &fd, p->msg)) < 0)
			return (n);
		if (fd != -1)
			close(fd);
		if (n == 0 || wm_expired(deadline))
			return (wm_seterr(p->msg, WALMMAP_ETIMEDOUT, "%zu "
			    "append frame%s of producer %" PRIu64 " not "
			    "acknowledged within %d ms", left, left == 1 ? "" :
			    "s", p->id, p->timeout_ms));
		if ((rc = prod_handle(p, p->rx, n)) < 0)
			return (rc);
	}
}

/* One frame from the daemon. */
static int
prod_handle(struct walmmap_producer *p, const uint8_t *buf, int len)
{
	struct wal_msg hdr;
	struct wal_msg_ack a;
	struct wal_ack_entry e;
	struct wal_msg_durable d;
	struct wal_msg_error er;
	struct pframe *f;
	uint32_t i, k;
	size_t j;

	memcpy(&hdr, buf, sizeof hdr);
	switch (hdr.type) {
	case WAL_MSG_ACK:
		memcpy(&a, buf, sizeof a);
		for (i = 0; i < a.count; i++) {
			memcpy(&e, buf + sizeof a + i * sizeof e, sizeof e);
			for (j = 0; j < p->nframes; j++) {
				f = &p->frames[j];
				if (f->rseq != NULL) {
					/* One record of a ring producer's. */
					if (e.id < f->id || e.id - f->id >=
					    f->count || e.count != 1 ||
					    f->rseq[e.id - f->id] !=
					    PROD_PENDING)
						continue;
					f->rseq[e.id - f->id] = e.first_seq <
					    0 ? -1 : e.first_seq;
					f->acked++;
					if (e.flags & WAL_ACK_F_DUP)
						p->dups++;
					continue;
				}
				if (f->id != e.id ||
				    e.count > f->count - f->acked)
					continue;
				for (k = 0; k < e.count; k++)
					f->seq[f->acked + k] = e.first_seq < 0 ?
					    -1 : e.first_seq + (int64_t)k;
				f->acked += e.count;
				if (e.flags & WAL_ACK_F_DUP)
					p->dups += e.count;
			}
		}
		break;
	case WAL_MSG_DURABLE:
		memcpy(&d, buf, sizeof d);
		if (d.durable_seq > p->durable)
			p->durable = d.durable_seq;
		break;
	case WAL_MSG_ERROR:
		memcpy(&er, buf, sizeof er);
		return (wm_seterr(p->msg, er.code == WAL_PERR_SHUTDOWN ?
		    WALMMAP_ESHUTDOWN : wm_perr(er.code), "walmmapd: %.*s",
		    (int)((size_t)len - sizeof er), (const char *)buf +
		    sizeof er));
	default:
		break;
	}
	return (0);
}

/* Durable up to seq: wait for the DURABLE the daemon owes, or ask. */
static int
prod_sync(struct walmmap_producer *p, int64_t seq, int64_t deadline)
{
	struct wal_msg m;
	uint64_t id;
	int n, fd, rc;

	if (seq <= p->durable)
		return (0);
	memset(&m, 0, sizeof m);
	m.type = WAL_MSG_SYNC;
	m.len = sizeof m;
	m.id = id = p->next_req++;
	if ((rc = wm_send(p->fd, &m, sizeof m, -1, 0, p->msg)) < 0)
		return (rc);
	while (p->durable < seq) {
		if ((n = wm_recv(p->fd, p->rx, deadline, &fd, p->msg)) < 0)
			return (n);
		if (fd != -1)
			close(fd);
		if (n == 0 || wm_expired(deadline))
			return (wm_seterr(p->msg, WALMMAP_ETIMEDOUT, "seq %"
			    PRId64 " not durable within %d ms", seq,
			    p->timeout_ms));
		if ((rc = prod_handle(p, p->rx, n)) < 0)
			return (rc);
	}
	return (0);
}

static void
prod_drop(struct walmmap_producer *p)
{
	if (p->fd != -1)
		close(p->fd);
	p->fd = -1;
	/* What it held unacknowledged is in the frames: sent again. */
	wm_shm_free(p->shm);
	p->shm = NULL;
}

/*
 * Before frames are sent again: forget the ACKs of those acknowledged in
 * part, and at level durable of all (one acknowledged written may be
 * gone after a power cut, or was not durable when the call failed).
 */
static void
prod_unack(struct walmmap_producer *p)
{
	size_t j, k;

	for (j = 0; j < p->nframes; j++)
		if (p->ack == WAL_ACK_DURABLE ||
		    p->frames[j].acked < p->frames[j].count) {
			p->frames[j].acked = 0;
			for (k = 0; p->frames[j].rseq != NULL &&
			    k < p->frames[j].count; k++)
				p->frames[j].rseq[k] = PROD_PENDING;
		}
}

/*
 * After a resume: walmmapd's next producer seq below every one this
 * handle will send means that records acknowledged written were lost (a
 * power cut; level written promises no more) and that none of those to
 * send is in the log. They are numbered again from walmmapd's, else each
 * would be refused as a jump in producer seqs, and every later call too.
 */
static void
prod_rebase(struct walmmap_producer *p)
{
	struct pframe *f;
	uint64_t low = p->next_pseq, fp, delta;
	size_t j;

	for (j = 0; j < p->nframes; j++) {
		f = &p->frames[j];
		memcpy(&fp, f->buf + offsetof(struct wal_msg_append_p,
		    first_pseq), sizeof fp);
		if (f->acked < f->count && fp < low)
			low = fp;
	}
	if (p->daemon_pseq == 0 || p->daemon_pseq >= low)
		return;
	for (j = 0; j < p->nframes; j++) {
		f = &p->frames[j];
		memcpy(&fp, f->buf + offsetof(struct wal_msg_append_p,
		    first_pseq), sizeof fp);
		if (fp >= low && f->acked == f->count)
			return;		/* not to be sent: leave it to PSEQ */
	}
	delta = low - p->daemon_pseq;
	for (j = 0; j < p->nframes; j++) {
		f = &p->frames[j];
		memcpy(&fp, f->buf + offsetof(struct wal_msg_append_p,
		    first_pseq), sizeof fp);
		if (fp < low)
			continue;
		fp -= delta;
		memcpy(f->buf + offsetof(struct wal_msg_append_p, first_pseq),
		    &fp, sizeof fp);
	}
	p->next_pseq -= delta;
}

static void
prod_free_frames(struct walmmap_producer *p)
{
	size_t j;

	for (j = 0; j < p->nframes; j++) {
		free(p->frames[j].buf);
		free(p->frames[j].seq);
		free(p->frames[j].roff);
		free(p->frames[j].rpos);
		free(p->frames[j].rseq);
	}
	free(p->frames);
	p->frames = NULL;
	p->nframes = 0;
	p->ndoubt = 0;
}

/*
 * SHM_OPEN after PRODUCER_OK: the ring's first record is the producer's
 * next_pseq (its header says which). A daemon that gives no ring leaves
 * the producer on the socket (records one by one).
 */
static int
prod_shm_open(struct walmmap_producer *p, int64_t deadline)
{
	struct wal_msg_shm_open o;
	struct wal_msg_shm_ready rd;
	struct wal_msg hdr;
	int fds[WM_MAX_FDS], n, rc;
	char why[WM_MSG_MAX];

	memset(&o, 0, sizeof o);
	o.hdr.type = WAL_MSG_SHM_OPEN;
	o.hdr.len = sizeof o;
	o.hdr.id = p->next_req++;
	if ((rc = wm_send(p->fd, &o, sizeof o, -1, 0, p->msg)) < 0) {
		prod_drop(p);
		return (rc);
	}
	for (;;) {
		if ((n = wm_recv_fds(p->fd, p->rx, deadline, fds,
		    p->msg)) <= 0) {
			prod_drop(p);
			return (n < 0 ? n : wm_seterr(p->msg, WALMMAP_ETIMEDOUT,
			    "no answer to SHM_OPEN in time"));
		}
		memcpy(&hdr, p->rx, sizeof hdr);
		if (hdr.id == o.hdr.id)
			break;
		wm_close_fds(fds);
	}
	if (hdr.type != WAL_MSG_SHM_READY) {
		wm_close_fds(fds);
		return (0);	/* refused (shm = no, full): the socket */
	}
	memcpy(&rd, p->rx, sizeof rd);
	if (wm_shm_map(&p->shm, &rd, fds, why) < 0) {
		p->shm = NULL;
		return (0);
	}
	if (p->shm->hdr->first_pseq != p->srv_next) {
		rc = wm_seterr(p->msg, WALMMAP_EPROTO, "walmmapd's ring starts "
		    "at producer seq %" PRIu64 ", PRODUCER_OK said %" PRIu64,
		    p->shm->hdr->first_pseq, p->srv_next);
		prod_drop(p);
		return (rc);
	}
	return (0);
}

/*
 * Send frame f record by record: those the daemon has (below srv_next)
 * alone in an APPEND_P each, answered from its journal with their own
 * seqs; the others through the ring, or alone on the socket when too
 * large for it (the daemon drains the ring up to a socket frame first,
 * so the producer seqs stay in order).
 */
static int
prod_ring_send(struct walmmap_producer *p, struct pframe *f)
{
	struct wal_msg_append_p a;
	struct wm_shm *s = p->shm;
	uint64_t first, pseq, target;
	uint32_t k, len;
	int64_t pos;
	int rc;

	memcpy(&a, f->buf, sizeof a);
	first = a.first_pseq;
	f->id = p->next_req;
	p->next_req += f->count;
	for (k = 0; k < f->count; k++) {
		if (f->rseq[k] != PROD_PENDING)
			continue;
		memcpy(&len, f->buf + f->roff[k], 4);
		pseq = first + k;
		f->rpos[k] = UINT64_MAX;
		if (s == NULL || pseq < p->srv_next || len > s->max_record) {
			if (s != NULL)
				wm_shm_publish(s);
			a.hdr.len = (uint32_t)(sizeof a + 4 + len);
			a.hdr.id = f->id + k;
			a.count = 1;
			a.first_pseq = pseq;
			memcpy(p->tx, &a, sizeof a);
			memcpy(p->tx + sizeof a, f->buf + f->roff[k], 4 + len);
			if ((rc = wm_send(p->fd, p->tx, a.hdr.len, -1, 0,
			    p->msg)) < 0)
				return (rc);
			/*
			 * A record written from the socket: its ACK before
			 * the next ring record, which else might be drained
			 * first and take its producer seq.
			 */
			while (s != NULL && pseq >= p->srv_next &&
			    f->rseq[k] == PROD_PENDING)
				if ((rc = prod_read_one(p, p->timeout_ms < 0 ?
				    -1 : wm_deadline(p->timeout_ms))) < 0)
					return (rc);
			continue;
		}
		while ((pos = wm_shm_reserve(s, len)) < 0) {
			if (wm_shm_refresh(s) != 0)
				goto nonsense;
			prod_ring_harvest(p);
			if ((pos = wm_shm_reserve(s, len)) >= 0)
				break;
			wm_shm_publish(s);
			/* Wait for a quarter of the ring, answering ACKs. */
			target = wm_shm_room_target(s, len);
			rc = wm_shm_wait(s, p->fd, WM_SHM_HEAD, target,
			    p->timeout_ms < 0 ? -1 :
			    wm_deadline(p->timeout_ms));
			if (rc < 0)
				goto nonsense;
			if (rc == 0)
				return (wm_seterr(p->msg, WALMMAP_ETIMEDOUT,
				    "the shared-memory ring stayed full for %d "
				    "ms", p->timeout_ms));
			if (rc == 2 && (rc = prod_read_one(p, wm_deadline(
			    p->timeout_ms < 0 ? 1000 : p->timeout_ms))) < 0)
				return (rc);
		}
		wm_shm_write(s, (uint64_t)pos, f->buf + f->roff[k] + 4, len,
		    WAL_SHM_F_SEQ);
		f->rpos[k] = (uint64_t)pos;
	}
	if (s != NULL)
		wm_shm_publish(s);
	return (0);
nonsense:
	return (wm_seterr(p->msg, WALMMAP_ELOST, "walmmapd published a ring "
	    "head outside the ring; connecting again"));
}

/* Seqs of ring records whose slots the daemon consumed. */
static void
prod_ring_harvest(struct walmmap_producer *p)
{
	struct pframe *f;
	size_t j;
	uint32_t k;

	if (p->shm == NULL)
		return;
	for (j = 0; j < p->nframes; j++) {
		f = &p->frames[j];
		for (k = 0; f->rseq != NULL && k < f->count; k++)
			if (f->rseq[k] == PROD_PENDING && f->rpos[k] !=
			    UINT64_MAX && f->rpos[k] < p->shm->head) {
				f->rseq[k] = wm_shm_seq(p->shm, f->rpos[k]);
				f->acked++;
			}
	}
}

/* Wait until every record has its seq: from the ring or an ACK. */
static int
prod_ring_collect(struct walmmap_producer *p, int64_t deadline)
{
	size_t j, left;
	int rc, ring;
	uint32_t k;

	for (;;) {
		if (p->shm != NULL && wm_shm_refresh(p->shm) != 0)
			return (wm_seterr(p->msg, WALMMAP_ELOST, "walmmapd "
			    "published a ring head outside the ring; "
			    "connecting again"));
		prod_ring_harvest(p);
		for (left = 0, ring = 0, j = 0; j < p->nframes; j++)
			for (k = 0; k < p->frames[j].count; k++)
				if (p->frames[j].rseq[k] == PROD_PENDING) {
					left++;
					if (p->frames[j].rpos[k] != UINT64_MAX)
						ring = 1;
				}
		if (left == 0)
			return (0);
		if (wm_expired(deadline))
			return (wm_seterr(p->msg, WALMMAP_ETIMEDOUT, "%zu "
			    "records of producer %" PRIu64 " not acknowledged "
			    "within %d ms", left, p->id, p->timeout_ms));
		if (ring) {
			rc = wm_shm_wait(p->shm, p->fd, WM_SHM_HEAD,
			    p->shm->published, deadline);
			if (rc < 0)
				return (wm_seterr(p->msg, WALMMAP_ELOST,
				    "walmmapd published a ring head outside "
				    "the ring; connecting again"));
			if (rc != 2)
				continue;
		}
		if ((rc = prod_read_one(p, deadline)) < 0)
			return (rc);
	}
}

/* One frame from the socket, handled. */
static int
prod_read_one(struct walmmap_producer *p, int64_t deadline)
{
	int n, fd;

	if ((n = wm_recv(p->fd, p->rx, deadline, &fd, p->msg)) < 0)
		return (n);
	if (fd != -1)
		close(fd);
	if (n == 0)
		return (wm_seterr(p->msg, WALMMAP_ETIMEDOUT, "producer %"
		    PRIu64 ": no answer within %d ms", p->id, p->timeout_ms));
	return (prod_handle(p, p->rx, n));
}
