/*
 * libwalmmap - producing: a connection to walmmapd, appends, acknowledgement
 * tracking, waits, sync, rotate, status.
 *
 * The daemon answers a connection's requests in the order it sent them, so
 * outstanding appends are a FIFO: each ACK entry answers the oldest one.
 * Appends without an ack level are not tracked; a PING tells when the
 * daemon has handled them.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "wal_format.h"
#include "walmmap.h"

#define OUTSTANDING_MAX	4096		/* frames awaiting an ACK */
#define DRAIN_MAX	1024		/* frames taken by one walmmap_process */

/* An append frame waiting for its ACK. */
struct pending {
	uint64_t	id;
	uint32_t	count;		/* records not yet answered */
	uint32_t	bytes;		/* frame bytes, for the window */
	int		durable;	/* asked for durability */
};

struct walmmap {
	int			 fd;		/* -1 after a failed connect */
	uint8_t			 ack;
	unsigned		 flags;
	int			 timeout_ms;	/* each call's limit, -1 none */
	int			 lost;
	char			 lost_why[WM_MSG_MAX]; /* how it was lost */
	struct wal_msg_welcome	 welcome;
	uint64_t		 next_id;

	struct pending		*fifo;		/* ring of OUTSTANDING_MAX */
	size_t			 fifo_head;
	size_t			 fifo_len;
	uint64_t		 window;	/* bytes in fifo frames */
	uint64_t		 untracked;	/* ack-none frames since a PING */
	uint8_t			 send_level;	/* of the frames being sent */
	int64_t			 durable_owed;	/* daemon will say DURABLE up
						   to here unasked, -1 */

	/* A request waiting for its reply. */
	uint64_t		 reply_id;
	int			 reply_done;
	int			 reply_err;
	uint8_t			*reply;		/* copy of the reply frame */

	/* Append frames cap_lo..cap_lo+cap_n-1 whose seqs a caller wants. */
	uint64_t		 cap_lo;
	size_t			 cap_n;
	int64_t			*cap_seq;	/* first seq, -1 refused */
	int			 cap_err;

	struct wm_shm		*shm;		/* NULL: socket only */
	char			 shm_why[WM_MSG_MAX]; /* why not, if asked */

	int			 deferred;	/* first error since a wait */

	/*
	 * Failed syncs. The daemon reports one once (an ERROR with id 0 for
	 * durable appends, or with a SYNC's id) and never sends DURABLE for
	 * what it covered, so it is kept here apart from deferred, which an
	 * earlier error may hold: seqs sync_lo..sync_hi of this connection
	 * are not durable, for good (-1: none).
	 */
	uint64_t		 sync_failures;
	int64_t			 sync_lo;
	int64_t			 sync_hi;
	char			 sync_why[WM_MSG_MAX];

	char			*status_dir;	/* last STATUS_REPLY's, whole */
	char			*metrics;	/* METRICS_REPLY text so far */
	size_t			 metrics_len;
	size_t			 metrics_cap;
	struct walmmap_progress	 prog;
	walmmap_ack_cb		 ack_cb;
	void			*ack_arg;
	int			 in_cb;		/* ack_cb is running */
	uint8_t			*rx;
	uint8_t			*tx;
	char			 msg[WM_MSG_MAX];
	uint8_t			*rx2;		/* a second frame (read_one) */
	int			 rx_pollfirst;	/* reads left to poll first */
};

#define RX_POLLFIRST	16	/* see read_one() */

enum frame_kind { FRAME_REQUEST, FRAME_UNTRACKED, FRAME_TRACKED };

static int	send_frame(struct walmmap *, const void *, size_t, int fd,
		    uint32_t records, enum frame_kind, int64_t deadline);
static int	drain(struct walmmap *);
static int	read_one(struct walmmap *, int64_t deadline);
static int	handle(struct walmmap *, const uint8_t *, size_t, int fd);
static int	request(struct walmmap *, uint16_t type, uint16_t flags,
		    int64_t deadline);
static int	lost(struct walmmap *, int rc);
static int	metrics_room(struct walmmap *, size_t n);
static int	not_usable(struct walmmap *);
static int64_t	ring_written(const struct walmmap *);
static int	append_fd(struct walmmap *, const void *, size_t, uint8_t,
		    uint64_t id, enum frame_kind, int64_t deadline);
static int	wait_captured(struct walmmap *);
static int64_t	op_deadline(const struct walmmap *);
static int64_t	send_deadline(const struct walmmap *);
static void	sync_failed(struct walmmap *, int64_t covered);
static int	sync_covers(const struct walmmap *, int64_t seq);
static int	sync_error(struct walmmap *, int64_t seq);
static int	capture(struct walmmap *, uint64_t id, int64_t seq, int err);
static int	take_deferred(struct walmmap *);
static uint8_t	level(const struct walmmap *, enum walmmap_ack);
static int	sock_append_batch(struct walmmap *, const struct iovec *,
		    size_t, uint8_t lvl, int64_t *seqs);
static int	shm_setup(struct walmmap *, int64_t deadline);
static int	shm_append_batch(struct walmmap *, const struct iovec *,
		    size_t, uint8_t lvl, int64_t *seqs);
static int	shm_wait(struct walmmap *, enum wm_shm_cond, uint64_t target,
		    int64_t deadline);

int
walmmap_connect(struct walmmap **wp, const char *socket, enum walmmap_ack ack,
    unsigned flags)
{
	return (walmmap_connect_timeout(wp, socket, ack, flags,
	    WALMMAP_CONNECT_TIMEOUT_MS));
}

int
walmmap_connect_timeout(struct walmmap **wp, const char *socket,
    enum walmmap_ack ack, unsigned flags, int timeout_ms)
{
	struct walmmap *w;
	int64_t deadline = wm_deadline(timeout_ms);
	int s;

	if ((*wp = w = calloc(1, sizeof *w)) == NULL)
		return (-WALMMAP_ENOMEM);
	w->fd = -1;
	w->timeout_ms = WALMMAP_TIMEOUT_MS;
	w->prog.last_seq = -1;
	w->prog.durable_seq = -1;
	w->durable_owed = -1;
	w->sync_lo = w->sync_hi = -1;
	snprintf(w->shm_why, sizeof w->shm_why, "not requested "
	    "(WALMMAP_SHM)");
	if (ack > WALMMAP_ACK_DURABLE || (flags & ~(WALMMAP_NONBLOCK |
	    WALMMAP_SHM)) != 0)
		return (wm_seterr(w->msg, WALMMAP_EINVAL, "walmmap_connect: "
		    "bad ack level %d or flags %#x", ack, flags));
	if ((flags & WALMMAP_SHM) && (flags & WALMMAP_NONBLOCK))
		return (wm_seterr(w->msg, WALMMAP_EINVAL, "walmmap_connect: "
		    "WALMMAP_SHM cannot be combined with WALMMAP_NONBLOCK"));
	w->ack = (uint8_t)ack;
	w->flags = flags;
	w->fifo = calloc(OUTSTANDING_MAX, sizeof *w->fifo);
	w->rx = malloc(WAL_PROTO_MAX_FRAME);
	w->rx2 = malloc(WAL_PROTO_MAX_FRAME);
	w->tx = malloc(WAL_PROTO_MAX_FRAME);
	w->reply = malloc(sizeof(struct wal_status));
	if (w->fifo == NULL || w->rx == NULL || w->rx2 == NULL ||
	    w->tx == NULL || w->reply == NULL)
		return (wm_seterr(w->msg, WALMMAP_ENOMEM, "out of memory"));
	if ((s = wm_connect_timeout(socket, w->ack, &w->welcome, timeout_ms,
	    w->msg)) < 0)
		return (s);
	w->fd = s;
	w->next_id = 2;
	if (flags & WALMMAP_SHM)
		return (shm_setup(w, deadline));
	return (0);
}

void
walmmap_set_timeout(struct walmmap *w, int timeout_ms)
{
	w->timeout_ms = timeout_ms < 0 ? -1 : timeout_ms;
}

uint32_t
walmmap_max_record(const struct walmmap *w)
{
	return (w->welcome.max_record);
}

void
walmmap_close(struct walmmap *w)
{
	if (w == NULL)
		return;
	if (w->shm != NULL) {
		wm_shm_publish(w->shm);
		wm_shm_free(w->shm);
	}
	if (w->fd != -1)
		close(w->fd);
	free(w->fifo);
	free(w->rx);
	free(w->rx2);
	free(w->tx);
	free(w->reply);
	free(w->status_dir);
	free(w->metrics);
	free(w);
}

const char *
walmmap_errmsg(const struct walmmap *w)
{
	return (w == NULL ? "out of memory" : w->msg);
}

int
walmmap_append(struct walmmap *w, const void *data, size_t len,
    enum walmmap_ack ack, int64_t *seq)
{
	struct iovec iov;
	int rc;

	iov.iov_base = (void *)(uintptr_t)data;
	iov.iov_len = len;
	rc = walmmap_append_batch(w, &iov, 1, ack, seq);
	return (rc < 0 ? rc : rc == 1 ? 0 : -WALMMAP_EAGAIN);
}

int
walmmap_append_batch(struct walmmap *w, const struct iovec *recs, size_t n,
    enum walmmap_ack ack, int64_t *seqs)
{
	uint8_t lvl;
	size_t j;

	if (w->fd == -1 || w->lost || w->in_cb)
		return (not_usable(w));
	if ((ack > WALMMAP_ACK_DURABLE && ack != WALMMAP_ACK_DEFAULT) ||
	    (seqs != NULL && (w->flags & WALMMAP_NONBLOCK)))
		return (wm_seterr(w->msg, WALMMAP_EINVAL, "walmmap_append: bad "
		    "ack level, or a seq wanted in non-blocking mode"));
	/* The count is returned as an int. */
	if (n > INT_MAX || (recs == NULL && n > 0))
		return (wm_seterr(w->msg, WALMMAP_EINVAL, "walmmap_append_batch: "
		    "%s", recs == NULL ? "no records array" : "more than "
		    "INT_MAX records in one batch"));
	lvl = level(w, ack);
	if (seqs != NULL && lvl == WALMMAP_ACK_NONE)
		lvl = WALMMAP_ACK_WRITTEN;	/* we must hear the seq */
	/* All checked before anything is sent: a refusal sends nothing. */
	for (j = 0; j < n; j++) {
		if (recs[j].iov_base == NULL && recs[j].iov_len > 0)
			return (wm_seterr(w->msg, WALMMAP_EINVAL, "record %zu "
			    "has no data but a length of %zu bytes", j,
			    recs[j].iov_len));
		if (recs[j].iov_len > w->welcome.max_record ||
		    recs[j].iov_len > WAL_MAX_PAYLOAD)
			return (wm_seterr(w->msg, WALMMAP_ETOOLARGE, "record %zu "
			    "of %zu bytes exceeds the daemon's max_record of %"
			    PRIu32 " bytes", j, recs[j].iov_len,
			    w->welcome.max_record));
	}
	if (w->shm != NULL)
		return (shm_append_batch(w, recs, n, lvl, seqs));
	return (sock_append_batch(w, recs, n, lvl, seqs));
}

/* Append through the socket: records packed into frames, memfds. */
static int
sock_append_batch(struct walmmap *w, const struct iovec *recs, size_t n,
    uint8_t lvl, int64_t *seqs)
{
	struct wal_msg_append a;
	size_t i = 0, start, off, nframes = 0, j, k, *frame = NULL;
	enum frame_kind kind;
	int rc = 0;

	kind = lvl == WALMMAP_ACK_NONE ? FRAME_UNTRACKED : FRAME_TRACKED;
	w->send_level = lvl;
	if (seqs != NULL) {
		/* Frames get consecutive ids from here; remember seqs. */
		frame = calloc(n, sizeof *frame);
		w->cap_seq = calloc(n, sizeof *w->cap_seq);
		if (frame == NULL || w->cap_seq == NULL) {
			free(frame);
			free(w->cap_seq);
			w->cap_seq = NULL;
			return (wm_seterr(w->msg, WALMMAP_ENOMEM, "out of "
			    "memory"));
		}
		w->cap_lo = w->next_id;
		w->cap_n = 0;
		w->cap_err = 0;
	}

	while (i < n) {
		uint64_t id = w->next_id++;

		start = i;
		if (sizeof a + 4 + recs[i].iov_len > WAL_PROTO_MAX_FRAME) {
			/* Too big for a message: a sealed memfd. */
			rc = append_fd(w, recs[i].iov_base, recs[i].iov_len,
			    lvl, id, kind, send_deadline(w));
			i++;
		} else {
			off = sizeof a;
			while (i < n && off + 4 + recs[i].iov_len <=
			    WAL_PROTO_MAX_FRAME) {
				uint32_t sz = (uint32_t)recs[i].iov_len;

				memcpy(w->tx + off, &sz, 4);
				if (sz > 0)
					memcpy(w->tx + off + 4,
					    recs[i].iov_base, sz);
				off += 4 + sz;
				i++;
			}
			memset(&a, 0, sizeof a);
			a.hdr.type = WAL_MSG_APPEND;
			a.hdr.len = (uint32_t)off;
			a.hdr.id = id;
			a.count = (uint32_t)(i - start);
			a.ack = lvl;
			memcpy(w->tx, &a, sizeof a);
			rc = send_frame(w, w->tx, off, -1, a.count, kind,
			    send_deadline(w));
		}
		if (rc < 0) {
			w->next_id--;
			i = start;
			break;
		}
		if (frame != NULL) {
			for (k = start; k < i; k++)
				frame[k] = nframes;
			w->cap_seq[nframes] = -2;
			w->cap_n = nframes + 1;
		}
		nframes++;
	}
	if (rc == -WALMMAP_ETIMEDOUT && i > 0) {
		char why[WM_MSG_MAX];

		snprintf(why, sizeof why, "%s", w->msg);
		(void)wm_seterr(w->msg, WALMMAP_ETIMEDOUT, "%s (%zu of the "
		    "%zu records sent)", why, i, n);
	}
	if (rc < 0 && (rc != -WALMMAP_EAGAIN || i == 0))
		goto out;
	rc = (int)i;
	if (seqs == NULL)
		return (rc);
	/* Wait for the frames' ACKs; records of one frame are consecutive. */
	if ((rc = wait_captured(w)) < 0)
		goto out;
	for (j = 0; j < n; j = k) {
		for (k = j; k < n && frame[k] == frame[j]; k++)
			seqs[k] = w->cap_seq[frame[j]] + (int64_t)(k - j);
	}
	rc = (int)n;
	if (lvl == WALMMAP_ACK_DURABLE && n > 0) {
		int r = walmmap_wait_durable(w, seqs[n - 1], -1);

		/* A failed sync may have covered earlier frames only. */
		for (j = 0; r == 0 && j < n; j++)
			if (sync_covers(w, seqs[j]))
				r = sync_error(w, seqs[j]);
		if (r < 0)
			rc = r;
	}
out:
	free(frame);
	free(w->cap_seq);
	w->cap_seq = NULL;
	w->cap_n = 0;
	return (rc);
}

int
walmmap_wait(struct walmmap *w, enum walmmap_ack lvl, int timeout_ms)
{
	int64_t deadline;
	int rc;

	if (lvl != WALMMAP_ACK_WRITTEN && lvl != WALMMAP_ACK_DURABLE)
		return (wm_seterr(w->msg, WALMMAP_EINVAL, "walmmap_wait: level "
		    "%d is neither WALMMAP_ACK_WRITTEN nor WALMMAP_ACK_DURABLE",
		    (int)lvl));
	if (w->fd == -1 || w->lost || w->in_cb)
		return (not_usable(w));
	deadline = timeout_ms < 0 ? op_deadline(w) : wm_deadline(timeout_ms);
	if (w->shm != NULL && lvl != WALMMAP_ACK_DURABLE) {
		/* (A SYNC below covers the ring: the daemon catches up.) */
		wm_shm_publish(w->shm);
		if ((rc = shm_wait(w, WM_SHM_WRITTEN, w->shm->records_pub,
		    deadline)) < 0)
			return (rc);
	}
	if (lvl == WALMMAP_ACK_DURABLE) {
		if ((rc = request(w, WAL_MSG_SYNC, 0, deadline)) < 0)
			return (rc);
		/* However much else went wrong, say this first. */
		if (w->sync_hi >= 0) {
			(void)take_deferred(w);
			return (sync_error(w, w->sync_hi));
		}
		return (take_deferred(w));
	}
	if (w->untracked > 0) {
		if ((rc = request(w, WAL_MSG_PING, 0, deadline)) < 0)
			return (rc);
		w->untracked = 0;
	}
	while (w->fifo_len > 0)
		if ((rc = read_one(w, deadline)) < 0)
			return (rc);
		else if (rc == 0 || (w->fifo_len > 0 && wm_expired(deadline)))
			return (wm_seterr(w->msg, WALMMAP_ETIMEDOUT, "%zu "
			    "appends still unacknowledged after %d ms",
			    w->fifo_len, timeout_ms < 0 ? w->timeout_ms :
			    timeout_ms));
	/* Take what else came, and notice a daemon that went away. */
	if ((rc = drain(w)) < 0)
		return (rc);
	return (take_deferred(w));
}

int
walmmap_wait_durable(struct walmmap *w, int64_t seq, int timeout_ms)
{
	int64_t deadline;
	int rc;

	if (sync_covers(w, seq))
		return (sync_error(w, seq));
	if (w->prog.durable_seq >= seq)
		return (0);
	if (w->fd == -1 || w->lost || w->in_cb)
		return (not_usable(w));
	deadline = timeout_ms < 0 ? op_deadline(w) : wm_deadline(timeout_ms);
	if (seq <= w->durable_owed) {
		/* Appended as durable: its DURABLE comes without asking. */
		while (w->prog.durable_seq < seq) {
			if ((rc = read_one(w, deadline)) < 0)
				return (rc);
			/* The failure ends the wait: nothing else follows. */
			if (rc > 0 && sync_covers(w, seq))
				return (sync_error(w, seq));
			if (rc == 0 || (w->prog.durable_seq < seq &&
			    wm_expired(deadline)))
				return (wm_seterr(w->msg, WALMMAP_ETIMEDOUT,
				    "seq %" PRId64 " not durable within %d ms",
				    seq, timeout_ms < 0 ? w->timeout_ms :
				    timeout_ms));
			if (seq > w->durable_owed && w->prog.durable_seq < seq)
				break;	/* no longer owed: ask */
		}
		if (w->prog.durable_seq >= seq)
			return (0);
	}
	if ((rc = request(w, WAL_MSG_SYNC, 0, deadline)) < 0)
		return (rc);
	if (sync_covers(w, seq))
		return (sync_error(w, seq));
	if (w->prog.durable_seq < seq)
		return (wm_seterr(w->msg, WALMMAP_ESYNC, "seq %" PRId64 " is "
		    "not durable after a sync (durable up to %" PRId64 ")",
		    seq, w->prog.durable_seq));
	return (0);
}

int
walmmap_sync(struct walmmap *w, int64_t *durable_seq)
{
	int rc;

	if ((rc = request(w, WAL_MSG_SYNC, 0, op_deadline(w))) < 0)
		return (rc);
	if (durable_seq != NULL)
		*durable_seq = w->prog.durable_seq;
	return (0);
}

int
walmmap_rotate(struct walmmap *w)
{
	return (request(w, WAL_MSG_ROTATE, 0, op_deadline(w)));
}

int
walmmap_restart(struct walmmap *w)
{
	return (request(w, WAL_MSG_RESTART, 0, op_deadline(w)));
}

void
walmmap_progress(const struct walmmap *w, struct walmmap_progress *p)
{
	*p = w->prog;
	p->pending = 0;
	if (w->fifo != NULL) {
		size_t i;

		for (i = 0; i < w->fifo_len; i++)
			p->pending += w->fifo[(w->fifo_head + i) %
			    OUTSTANDING_MAX].count;
	}
	if (w->shm != NULL) {
		const struct wal_shm_header *h = w->shm->hdr;
		uint64_t written = atomic_load_explicit(&h->written,
		    memory_order_acquire);
		int64_t ws = atomic_load_explicit(&h->written_seq,
		    memory_order_relaxed);
		int64_t ds = atomic_load_explicit(&h->durable_seq,
		    memory_order_relaxed);

		p->acked += written;
		if (w->shm->records_pub > written)
			p->pending += w->shm->records_pub - written;
		if (ws > p->last_seq)
			p->last_seq = ws;
		if (ds > p->durable_seq)
			p->durable_seq = ds;
	}
}

int
walmmap_shm_active(const struct walmmap *w, const char **why)
{
	if (w->shm != NULL)
		return (1);
	if (why != NULL)
		*why = w->shm_why;
	return (0);
}

int
walmmap_status(struct walmmap *w, struct walmmap_status *out)
{
	struct wal_status st;
	int rc;

	if ((rc = request(w, WAL_MSG_STATUS, WAL_STATUS_F_DIR,
	    op_deadline(w))) < 0)
		return (rc);
	memcpy(&st, w->reply, sizeof st);
	memset(out, 0, sizeof *out);
	out->protocol = st.version;
	out->ring_segments = st.ring_segments;
	out->next_seq = st.next_seq;
	out->written_seq = st.written_seq;
	out->durable_seq = st.durable_seq;
	out->first_seq = st.first_seq;
	out->segment_size = st.segment_size;
	out->segments = st.segments;
	out->disk_bytes = st.disk_bytes;
	out->active_segment = st.active_id;
	out->clients = st.clients;
	out->clients_total = st.clients_total;
	out->records = st.records;
	out->bytes = st.bytes;
	out->frames = st.frames;
	out->syncs = st.syncs;
	out->sync_ns_total = st.sync_ns_total;
	out->sync_ns_max = st.sync_ns_max;
	out->rotations = st.rotations;
	out->errors = st.errors;
	out->records_per_s = st.records_per_s;
	out->uptime_s = st.uptime_s;
	out->pid = st.pid;
	memcpy(out->dir, st.dir, sizeof out->dir);
	out->dir[sizeof out->dir - 1] = '\0';
	if (w->status_dir == NULL)
		w->status_dir = strdup(out->dir);	/* an older daemon */
	return (0);
}

const char *
walmmap_status_dir(const struct walmmap *w)
{
	return (w->status_dir != NULL ? w->status_dir : "");
}

int
walmmap_metrics(struct walmmap *w, char **text, size_t *len)
{
	int rc;

	*text = NULL;
	if (len != NULL)
		*len = 0;
	w->metrics_len = 0;
	if ((rc = request(w, WAL_MSG_METRICS, 0, op_deadline(w))) < 0)
		return (rc);
	if (metrics_room(w, 1) < 0)
		return (-WALMMAP_ENOMEM);
	w->metrics[w->metrics_len] = '\0';
	*text = w->metrics;
	if (len != NULL)
		*len = w->metrics_len;
	w->metrics = NULL;	/* the caller's now */
	w->metrics_len = w->metrics_cap = 0;
	return (0);
}

/* Room for n more bytes of metrics text. 0, or -1 with msg set. */
static int
metrics_room(struct walmmap *w, size_t n)
{
	size_t cap;
	char *p;

	if (w->metrics_len + n <= w->metrics_cap)
		return (0);
	cap = w->metrics_cap ? w->metrics_cap : 16384;
	while (cap < w->metrics_len + n)
		cap *= 2;
	if ((p = realloc(w->metrics, cap)) == NULL) {
		wm_seterr(w->msg, WALMMAP_ENOMEM, "out of memory for %zu bytes "
		    "of metrics", cap);
		return (-1);
	}
	w->metrics = p;
	w->metrics_cap = cap;
	return (0);
}

void
walmmap_set_ack_cb(struct walmmap *w, walmmap_ack_cb cb, void *arg)
{
	w->ack_cb = cb;
	w->ack_arg = arg;
}

int
walmmap_fd(const struct walmmap *w)
{
	return (w->fd);
}

int
walmmap_process(struct walmmap *w)
{
	int rc;

	if (w->fd == -1 || w->lost || w->in_cb)
		return (not_usable(w));
	rc = drain(w);
	return (rc < 0 ? rc : 0);
}

/* The level an append asks for. */
static uint8_t
level(const struct walmmap *w, enum walmmap_ack ack)
{
	return (ack == WALMMAP_ACK_DEFAULT ? w->ack : (uint8_t)ack);
}

/*
 * The deadline of one append frame's wait to be sent: the connection's
 * timeout, or now in non-blocking mode (frames already there are taken,
 * none is waited for).
 */
static int64_t
send_deadline(const struct walmmap *w)
{
	return ((w->flags & WALMMAP_NONBLOCK) ? wm_deadline(0) :
	    op_deadline(w));
}

/*
 * Send a frame before deadline. A tracked frame waits for room in the
 * window first; a full socket is drained of replies while we wait, so
 * neither side can block the other.
 */
static int
send_frame(struct walmmap *w, const void *buf, size_t len, int fd,
    uint32_t records, enum frame_kind kind, int64_t deadline)
{
	const uint64_t cap = w->welcome.max_inflight / 2;
	struct pollfd pfd;
	struct pending *p;
	struct wal_msg hdr;
	int rc, retried = 0;
	/* Requests (sync, status, ...) block in non-blocking mode too. */
	int nb = (w->flags & WALMMAP_NONBLOCK) != 0 && kind != FRAME_REQUEST;

	if (kind == FRAME_TRACKED)
		while (w->fifo_len == OUTSTANDING_MAX || (w->fifo_len > 0 &&
		    w->window + len > cap)) {
			if ((rc = read_one(w, deadline)) < 0)
				return (rc);
			if (rc > 0 && !wm_expired(deadline))
				continue;
			if (w->fifo_len < OUTSTANDING_MAX && (w->fifo_len ==
			    0 || w->window + len <= cap))
				break;		/* room, just in time */
			if (nb)
				return (-WALMMAP_EAGAIN);
			return (wm_seterr(w->msg, WALMMAP_ETIMEDOUT, "walmmapd "
			    "acknowledged nothing within %d ms with the "
			    "in-flight window full", w->timeout_ms));
		}
	for (;;) {
		rc = wm_send(w->fd, buf, len, fd, 1, w->msg);
		if (rc == 0)
			break;
		if (rc != -WALMMAP_EAGAIN)
			return (lost(w, rc));
		if (nb) {
			/*
			 * The replies there now may be the last ones owed: had
			 * we read one and said EAGAIN, the caller would poll
			 * for input that never comes. Read what is there; with
			 * nothing owed any more the daemon has read all we
			 * sent, so try once more. EAGAIN then only while a
			 * reply is owed (appends at level none aside, see
			 * walmmap.h). Once: a peer that keeps sending cannot
			 * keep us here.
			 */
			if ((rc = drain(w)) < 0)
				return (rc);
			if (rc > 0 && w->fifo_len == 0 && !retried) {
				retried = 1;
				continue;
			}
			return (-WALMMAP_EAGAIN);
		}
		if (wm_expired(deadline))
			return (wm_seterr(w->msg, WALMMAP_ETIMEDOUT, "walmmapd "
			    "took no frame within %d ms", w->timeout_ms));
		pfd.fd = w->fd;
		pfd.events = POLLOUT | POLLIN;
		pfd.revents = 0;
		rc = poll(&pfd, 1, wm_left_ms(deadline));
		if (rc == 0)
			return (wm_seterr(w->msg, WALMMAP_ETIMEDOUT, "walmmapd "
			    "took no frame within %d ms", w->timeout_ms));
		if (rc == -1 && errno != EINTR)
			return (wm_seterr(w->msg, WALMMAP_EIO, "poll: %s",
			    strerror(errno)));
		if (rc > 0 && (pfd.revents & POLLIN))
			if ((rc = read_one(w, 0)) < 0)
				return (rc);
	}
	w->prog.sent += records;
	if (kind == FRAME_UNTRACKED)
		w->untracked++;
	if (kind != FRAME_TRACKED)
		return (0);
	memcpy(&hdr, buf, sizeof hdr);
	p = &w->fifo[(w->fifo_head + w->fifo_len) % OUTSTANDING_MAX];
	p->id = hdr.id;
	p->count = records;
	p->bytes = (uint32_t)len;
	p->durable = w->send_level == WALMMAP_ACK_DURABLE;
	w->fifo_len++;
	w->window += len;
	return (0);
}

/* One record through a sealed memfd. */
static int
append_fd(struct walmmap *w, const void *data, size_t len, uint8_t lvl,
    uint64_t id, enum frame_kind kind, int64_t deadline)
{
	struct wal_msg_append_fd a;
	size_t done = 0;
	ssize_t n;
	int mfd, rc;

	if ((mfd = memfd_create("walmmap-record", MFD_CLOEXEC |
	    MFD_ALLOW_SEALING)) == -1)
		return (wm_seterr(w->msg, WALMMAP_EIO, "memfd_create: %s",
		    strerror(errno)));
	while (done < len) {
		n = write(mfd, (const uint8_t *)data + done, len - done);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = wm_seterr(w->msg, WALMMAP_EIO, "cannot fill the "
			    "record's memfd: %s", strerror(errno));
			close(mfd);
			return (rc);
		}
		done += (size_t)n;
	}
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
	    F_SEAL_WRITE | F_SEAL_SEAL) == -1) {
		rc = wm_seterr(w->msg, WALMMAP_EIO, "cannot seal the record's "
		    "memfd: %s", strerror(errno));
		close(mfd);
		return (rc);
	}
	memset(&a, 0, sizeof a);
	a.hdr.type = WAL_MSG_APPEND_FD;
	a.hdr.len = sizeof a;
	a.hdr.id = id;
	a.size = len;
	a.ack = lvl;
	rc = send_frame(w, &a, sizeof a, mfd, 1, kind, deadline);
	close(mfd);
	return (rc);
}

/*
 * Send a header-only request and wait for its answer until deadline. A
 * late answer (after a timeout) is ignored: its id is no longer awaited.
 */
static int
request(struct walmmap *w, uint16_t type, uint16_t flags, int64_t deadline)
{
	struct wal_msg m;
	int64_t t0 = wm_now_ms();
	int rc;

	if (w->fd == -1 || w->lost || w->in_cb)
		return (not_usable(w));
	if (w->shm != NULL)
		wm_shm_publish(w->shm);	/* the daemon handles it first */
	memset(&m, 0, sizeof m);
	m.type = type;
	m.flags = flags;
	m.len = sizeof m;
	m.id = w->next_id++;
	if ((rc = send_frame(w, &m, sizeof m, -1, 0, FRAME_REQUEST,
	    deadline)) < 0)
		return (rc);
	w->reply_id = m.id;
	w->reply_done = 0;
	while (!w->reply_done) {
		if ((rc = read_one(w, deadline)) < 0) {
			w->reply_id = 0;
			return (rc);
		}
		if (rc == 0 || (!w->reply_done && wm_expired(deadline))) {
			w->reply_id = 0;
			return (wm_seterr(w->msg, WALMMAP_ETIMEDOUT, "no answer "
			    "to %s from walmmapd within %" PRId64 " ms",
			    wal_proto_type_name(type), wm_now_ms() - t0));
		}
	}
	w->reply_id = 0;
	return (w->reply_err);
}

/* Wait until every captured frame is answered; the first error. */
static int
wait_captured(struct walmmap *w)
{
	uint64_t hi = w->cap_lo + w->cap_n;
	int64_t deadline = op_deadline(w);
	int rc;

	while (w->fifo_len > 0 && w->fifo[w->fifo_head].id < hi) {
		if ((rc = read_one(w, deadline)) < 0)
			return (rc);
		if (rc == 0 || (w->fifo_len > 0 && w->fifo[w->fifo_head].id <
		    hi && wm_expired(deadline)))
			return (wm_seterr(w->msg, WALMMAP_ETIMEDOUT, "walmmapd "
			    "did not acknowledge the records within %d ms",
			    w->timeout_ms));
	}
	return (w->cap_err);
}

/* The deadline of a wait bounded by the connection's timeout. */
static int64_t
op_deadline(const struct walmmap *w)
{
	return (wm_deadline(w->timeout_ms));
}

/*
 * The daemon reported a failed sync covering this connection's records up
 * to covered: none of them after the durable seq known is durable, and
 * the daemon sends no DURABLE for them.
 */
static void
sync_failed(struct walmmap *w, int64_t covered)
{
	int64_t lo = w->prog.durable_seq + 1;

	w->sync_failures++;
	snprintf(w->sync_why, sizeof w->sync_why, "%s", w->msg);
	w->durable_owed = -1;
	if (covered < lo)
		return;
	if (w->sync_lo < 0 || lo < w->sync_lo)
		w->sync_lo = lo;
	if (covered > w->sync_hi)
		w->sync_hi = covered;
}

/* Did a failed sync cover seq? */
static int
sync_covers(const struct walmmap *w, int64_t seq)
{
	return (w->sync_hi >= 0 && seq >= w->sync_lo && seq <= w->sync_hi);
}

/* The error for seq, which a failed sync covered. */
static int
sync_error(struct walmmap *w, int64_t seq)
{
	return (wm_seterr(w->msg, WALMMAP_ESYNC, "seq %" PRId64 " is not "
	    "durable: %s", seq, w->sync_why));
}

/*
 * The error of a call on a connection that is gone, or made from inside
 * the acknowledgement callback: the library is in the middle of reading a
 * reply there, with the caller's frame maybe not sent yet, so nothing may
 * send or read on the connection until the callback returns (walmmap.h).
 */
static int
not_usable(struct walmmap *w)
{
	if (w->in_cb)
		return (wm_seterr(w->msg, WALMMAP_EBUSY, "called from the "
		    "acknowledgement callback: append or wait after "
		    "walmmap_process() (or the call that ran it) returned"));
	if (w->fd == -1)
		return (wm_seterr(w->msg, WALMMAP_ELOST, "not connected to "
		    "walmmapd"));
	return (wm_seterr(w->msg, WALMMAP_ELOST, "connection to walmmapd "
	    "lost earlier: %s", w->lost_why));
}

/*
 * Note the answer to an append frame whose seqs a caller waits for.
 * Returns 1 if the frame is one of those.
 */
static int
capture(struct walmmap *w, uint64_t id, int64_t seq, int err)
{
	size_t i;

	if (w->cap_seq == NULL || id < w->cap_lo || id - w->cap_lo >= w->cap_n)
		return (0);
	i = id - w->cap_lo;
	if (err != 0) {
		if (w->cap_err == 0)
			w->cap_err = err;
	} else if (w->cap_seq[i] == -2)
		w->cap_seq[i] = seq;
	return (1);
}

/*
 * Read and handle the frames waiting, one or two (the ACK held for a sync
 * and the DURABLE after it come in one call). 1: handled, 0: nothing
 * before deadline. Both are handled now, as if the caller had read again
 * at once: handle() fails only when the connection is lost, and nothing is
 * left behind that a poll on the socket would not show. When a blocking
 * read found nothing, the next RX_POLLFIRST blocking reads poll first, so
 * a client waiting for durability makes no read that finds nothing; then
 * one reads first again, in case replies now come faster than we ask.
 */
static int
read_one(struct walmmap *w, int64_t deadline)
{
	char why[WM_MSG_MAX];
	uint8_t *buf[2];
	size_t len[2];
	int n, fd[2], missed, late, rc;

	if (w->lost)
		return (not_usable(w));
	buf[0] = w->rx;
	buf[1] = w->rx2;
	n = wm_recv2(w->fd, buf, len, fd, deadline, w->rx_pollfirst > 0 &&
	    !wm_expired(deadline), &missed, &late, w->msg);
	if (missed == -1)
		w->rx_pollfirst--;
	else if (missed == 1 && !wm_expired(deadline))
		w->rx_pollfirst = RX_POLLFIRST;
	if (n < 0)
		return (lost(w, n));
	if (n == 0)
		return (0);
	if (late != 0) {
		/* A bad frame came after this one: this one counts first. */
		snprintf(why, sizeof why, "%s", w->msg);
		if ((rc = handle(w, w->rx, len[0], fd[0])) < 0)
			return (rc);
		return (lost(w, wm_seterr(w->msg, -late, "%s", why)));
	}
	rc = handle(w, w->rx, len[0], fd[0]);
	if (n == 1)
		return (rc);
	if (rc < 0) {
		if (fd[1] != -1)
			close(fd[1]);
		return (rc);
	}
	return (handle(w, w->rx2, len[1], fd[1]));
}

/*
 * Take the frames that are there without waiting, at most DRAIN_MAX: a
 * daemon that never stops sending cannot keep us here. Returns the frames
 * taken, or a negative error.
 */
static int
drain(struct walmmap *w)
{
	int rc, n;

	for (n = 0; n < DRAIN_MAX; n++)
		if ((rc = read_one(w, 0)) <= 0)
			return (rc < 0 ? rc : n);
	return (n);
}

/* The connection is unusable: say what is known to be acknowledged. */
static int
lost(struct walmmap *w, int rc)
{
	struct walmmap_progress p;
	char why[WM_MSG_MAX];

	if (rc == -WALMMAP_EAGAIN || rc == -WALMMAP_ETIMEDOUT)
		return (rc);
	w->lost = 1;
	walmmap_progress(w, &p);
	snprintf(why, sizeof why, "%s", w->msg);
	/* Keep the reason a daemon gave (ENOSPC, EPERM, ...); else ELOST. */
	rc = wm_seterr(w->msg, rc < 0 && rc != -WALMMAP_EIO ? -rc :
	    WALMMAP_ELOST, "%s; %" PRIu64 " records acknowledged written (up "
	    "to seq %" PRId64 "), %" PRIu64 " sent without an answer", why,
	    p.acked, p.last_seq, p.pending);
	snprintf(w->lost_why, sizeof w->lost_why, "%s", w->msg);
	return (rc);
}

/* Highest seq the daemon took from our ring, -1 none or no ring. */
static int64_t
ring_written(const struct walmmap *w)
{
	if (w->shm == NULL)
		return (-1);
	return (atomic_load_explicit(&w->shm->hdr->written_seq,
	    memory_order_acquire));
}

/* The first error since the last wait, if any. */
static int
take_deferred(struct walmmap *w)
{
	int rc = w->deferred;

	w->deferred = 0;
	return (rc);
}

/* Act on one frame from the daemon. */
static int
handle(struct walmmap *w, const uint8_t *buf, size_t len, int fd)
{
	struct wal_msg hdr;
	struct pending *p;
	size_t i;

	if (fd != -1)
		close(fd);	/* producers are not passed descriptors */
	memcpy(&hdr, buf, sizeof hdr);
	switch (hdr.type) {
	case WAL_MSG_ACK: {
		struct wal_msg_ack a;
		struct wal_ack_entry e;

		memcpy(&a, buf, sizeof a);
		for (i = 0; i < a.count; i++) {
			memcpy(&e, buf + sizeof a + i * sizeof e, sizeof e);
			p = &w->fifo[w->fifo_head];
			if (w->fifo_len == 0 || p->id != e.id ||
			    e.count > p->count)
				return (lost(w, wm_seterr(w->msg,
				    WALMMAP_EPROTO, "walmmapd acknowledged "
				    "request %" PRIu64 " out of order",
				    e.id)));
			w->prog.acked += e.count;
			if (e.count > 0 && e.first_seq + e.count - 1 >
			    w->prog.last_seq)
				w->prog.last_seq = e.first_seq + e.count - 1;
			/* The daemon syncs durable records by itself. */
			if (p->durable && e.count > 0 && e.first_seq +
			    e.count - 1 > w->durable_owed)
				w->durable_owed = e.first_seq + e.count - 1;
			capture(w, e.id, e.first_seq, 0);
			if (w->ack_cb != NULL && e.count > 0) {
				w->in_cb = 1;
				w->ack_cb(w->ack_arg, e.first_seq, e.count, 0);
				w->in_cb = 0;
			}
			p->count -= e.count;
			if (p->count == 0) {
				/* Fully answered (a partial one waits for
				 * its ERROR). */
				w->window -= p->bytes;
				w->fifo_head = (w->fifo_head + 1) %
				    OUTSTANDING_MAX;
				w->fifo_len--;
			}
		}
		return (1);
	}
	case WAL_MSG_DURABLE: {
		struct wal_msg_durable d;

		memcpy(&d, buf, sizeof d);
		if (d.durable_seq > w->prog.durable_seq)
			w->prog.durable_seq = d.durable_seq;
		if (hdr.id != 0 && hdr.id == w->reply_id) {
			w->reply_done = 1;
			w->reply_err = 0;
		}
		return (1);
	}
	case WAL_MSG_ERROR: {
		struct wal_msg_error e;
		int code, rc, captured = 0;

		memcpy(&e, buf, sizeof e);
		code = wm_perr(e.code);
		rc = wm_seterr(w->msg, code, "walmmapd: %s: %.*s",
		    wal_proto_strerror(e.code), (int)(len - sizeof e),
		    (const char *)buf + sizeof e);
		p = &w->fifo[w->fifo_head];
		if (hdr.id != 0 && w->fifo_len > 0 && p->id == hdr.id) {
			/* An append refused (whole, or the rest of it). */
			w->prog.failed += p->count;
			if (w->ack_cb != NULL) {
				w->in_cb = 1;
				w->ack_cb(w->ack_arg, -1, p->count, rc);
				w->in_cb = 0;
			}
			w->window -= p->bytes;
			w->fifo_head = (w->fifo_head + 1) % OUTSTANDING_MAX;
			w->fifo_len--;
			captured = capture(w, hdr.id, -1, rc);
		}
		/*
		 * A failed sync: with id 0 it covers the durable appends
		 * acknowledged so far, with a SYNC's id everything written.
		 */
		if (e.code == WAL_PERR_SYNC)
			sync_failed(w, hdr.id == 0 ? (w->durable_owed >
			    ring_written(w) ? w->durable_owed : ring_written(w)) :
			    (w->prog.last_seq > ring_written(w) ?
			    w->prog.last_seq : ring_written(w)));
		if (hdr.id != 0 && hdr.id == w->reply_id) {
			w->reply_done = 1;
			w->reply_err = rc;
		} else if (w->deferred == 0 && !captured)
			w->deferred = rc;
		if (e.fatal)
			return (lost(w, rc));
		return (1);
	}
	case WAL_MSG_METRICS_REPLY:
		/* A piece of the text; the last one has no MORE flag. */
		if (hdr.id != w->reply_id || w->reply_done)
			return (1);	/* a request given up on */
		if (w->metrics_len + (len - sizeof hdr) >= WALMMAP_METRICS_MAX) {
			w->reply_done = 1;
			w->reply_err = wm_seterr(w->msg, WALMMAP_EPROTO,
			    "walmmapd sent more than %u bytes of metrics",
			    WALMMAP_METRICS_MAX);
			w->reply_id = 0;	/* ignore the rest */
			return (1);
		}
		if (metrics_room(w, len - sizeof hdr) < 0) {
			w->reply_done = 1;
			w->reply_err = -WALMMAP_ENOMEM;
			w->reply_id = 0;
			return (1);
		}
		memcpy(w->metrics + w->metrics_len, buf + sizeof hdr,
		    len - sizeof hdr);
		w->metrics_len += len - sizeof hdr;
		if (!(hdr.flags & WAL_METRICS_F_MORE)) {
			w->reply_done = 1;
			w->reply_err = 0;
		}
		return (1);
	case WAL_MSG_STATUS_REPLY:
	case WAL_MSG_OK:
		if (hdr.id == w->reply_id) {
			memcpy(w->reply, buf, len < sizeof(struct wal_status) ?
			    len : sizeof(struct wal_status));
			w->reply_done = 1;
			w->reply_err = 0;
		}
		if (hdr.id == w->reply_id && hdr.type == WAL_MSG_STATUS_REPLY) {
			/* The whole directory follows (WAL_STATUS_F_DIR). */
			free(w->status_dir);
			w->status_dir = NULL;
			if (len > sizeof(struct wal_status))
				w->status_dir = strndup((const char *)buf +
				    sizeof(struct wal_status), len -
				    sizeof(struct wal_status));
		}
		return (1);
	default:
		return (lost(w, wm_seterr(w->msg, WALMMAP_EPROTO, "walmmapd "
		    "sent %s on a producer connection",
		    wal_proto_type_name(hdr.type))));
	}
}

/*
 * Ask for a shared-memory ring right after the handshake. When the daemon
 * cannot give one the connection stays on the socket and
 * walmmap_shm_active() says why.
 */
static int
shm_setup(struct walmmap *w, int64_t deadline)
{
	struct wal_msg_shm_open o;
	struct wal_msg_shm_ready rd;
	struct wal_msg_error e;
	struct wal_msg hdr;
	int fds[WM_MAX_FDS], n, rc;

	memset(&o, 0, sizeof o);
	o.hdr.type = WAL_MSG_SHM_OPEN;
	o.hdr.len = sizeof o;
	o.hdr.id = w->next_id++;
	if ((rc = wm_send(w->fd, &o, sizeof o, -1, 0, w->msg)) < 0)
		return (lost(w, rc));
	if ((n = wm_recv_fds(w->fd, w->rx, deadline, fds, w->msg)) < 0)
		return (lost(w, n));
	if (n == 0)
		return (lost(w, wm_seterr(w->msg, WALMMAP_ETIMEDOUT, "walmmapd "
		    "did not answer SHM_OPEN in time")));
	memcpy(&hdr, w->rx, sizeof hdr);
	if (hdr.type == WAL_MSG_SHM_READY && hdr.id == o.hdr.id) {
		memcpy(&rd, w->rx, sizeof rd);
		if (wm_shm_map(&w->shm, &rd, fds, w->shm_why) < 0)
			w->shm = NULL;	/* on the socket, shm_why says why */
		return (0);
	}
	wm_close_fds(fds);
	if (hdr.type == WAL_MSG_ERROR && hdr.id == o.hdr.id) {
		memcpy(&e, w->rx, sizeof e);
		snprintf(w->shm_why, sizeof w->shm_why, "walmmapd gave no "
		    "shared-memory ring: %s: %.*s", wal_proto_strerror(e.code),
		    (int)((size_t)n - sizeof e), (const char *)w->rx +
		    sizeof e);
		if (e.fatal)
			return (lost(w, wm_seterr(w->msg, wm_perr(e.code), "%s",
			    w->shm_why)));
		return (0);
	}
	return (lost(w, wm_seterr(w->msg, WALMMAP_EPROTO, "walmmapd answered "
	    "SHM_OPEN with %s", wal_proto_type_name(hdr.type))));
}

/* Seqs of the ring records before index upto whose slots were consumed. */
static void
shm_harvest(struct walmmap *w, const uint64_t *pos, int64_t *seqs,
    size_t upto, size_t *done)
{
	for (; *done < upto; (*done)++) {
		if (pos[*done] == UINT64_MAX)
			continue;	/* went over the socket */
		if (pos[*done] >= w->shm->head)
			break;
		seqs[*done] = wm_shm_seq(w->shm, pos[*done]);
	}
}

/*
 * Append through the ring: slots written at the tail and published once
 * at the end (or when the ring fills). Records above the ring's limit go
 * over the socket; the daemon writes what the ring holds first, so order
 * is kept.
 */
static int
shm_append_batch(struct walmmap *w, const struct iovec *recs, size_t n,
    uint8_t lvl, int64_t *seqs)
{
	struct wm_shm *s = w->shm;
	uint32_t flags = 0, len;
	uint64_t one, *pos = NULL, target;
	size_t i, done = 0, sent = 0;
	int64_t p;
	int rc;

	if (lvl == WALMMAP_ACK_DURABLE)
		flags |= WAL_SHM_F_DURABLE;
	if (seqs != NULL) {
		flags |= WAL_SHM_F_SEQ;
		if (n == 1)
			pos = &one;
		else if ((pos = calloc(n, sizeof *pos)) == NULL)
			return (wm_seterr(w->msg, WALMMAP_ENOMEM, "out of "
			    "memory"));
	}
	for (i = 0; i < n; i++) {
		len = (uint32_t)recs[i].iov_len;
		if (len > s->max_record) {
			wm_shm_publish(s);
			w->prog.sent += sent;
			sent = 0;
			rc = sock_append_batch(w, &recs[i], 1, lvl,
			    seqs != NULL ? &seqs[i] : NULL);
			if (rc < 0)
				goto out;
			if (pos != NULL)
				pos[i] = UINT64_MAX;
			continue;
		}
		while ((p = wm_shm_reserve(s, len)) < 0) {
			/* Full by the cached head: look again, then wait. */
			if (wm_shm_refresh(s) != 0) {
				rc = lost(w, wm_seterr(w->msg, WALMMAP_EPROTO,
				    "walmmapd published a ring head outside "
				    "the ring"));
				goto out;
			}
			if (pos != NULL)
				shm_harvest(w, pos, seqs, i, &done);
			if ((p = wm_shm_reserve(s, len)) >= 0)
				break;
			wm_shm_publish(s);
			/* Sleep until a quarter of the ring is free. */
			target = wm_shm_room_target(s, len);
			if ((rc = shm_wait(w, WM_SHM_HEAD, target,
			    op_deadline(w))) < 0)
				goto out;
			if (pos != NULL)
				shm_harvest(w, pos, seqs, i, &done);
		}
		wm_shm_write(s, (uint64_t)p, recs[i].iov_base, len, flags);
		sent++;
		if (pos != NULL)
			pos[i] = (uint64_t)p;
	}
	wm_shm_publish(s);
	w->prog.sent += sent;
	rc = (int)n;
	if (seqs == NULL)
		goto out;
	if ((rc = shm_wait(w, lvl == WALMMAP_ACK_DURABLE ? WM_SHM_DURABLE :
	    WM_SHM_WRITTEN, s->records, op_deadline(w))) < 0)
		goto out;
	if (wm_shm_refresh(s) != 0) {
		rc = lost(w, wm_seterr(w->msg, WALMMAP_EPROTO, "walmmapd "
		    "published a ring head outside the ring"));
		goto out;
	}
	shm_harvest(w, pos, seqs, n, &done);
	rc = (int)n;
	if (done < n)
		rc = lost(w, wm_seterr(w->msg, WALMMAP_EPROTO, "walmmapd "
		    "counted record %zu as written but did not release its "
		    "slot", done));
out:
	if (pos != &one)
		free(pos);
	return (rc);
}

/*
 * Wait on the ring, answering socket frames meanwhile. A failed sync the
 * daemon reports on the socket ends a wait for durability: the ring's
 * durable count will not reach the records it covered.
 */
static int
shm_wait(struct walmmap *w, enum wm_shm_cond cond, uint64_t target,
    int64_t deadline)
{
	uint64_t failures = w->sync_failures;
	int rc;

	for (;;) {
		if (w->lost)
			return (not_usable(w));
		rc = wm_shm_wait(w->shm, w->fd, cond, target, deadline);
		if (rc == 1)
			return (0);
		if (rc == 0)
			return (wm_seterr(w->msg, WALMMAP_ETIMEDOUT, "records "
			    "in the shared-memory ring still unacknowledged "
			    "when the time limit expired"));
		if (rc < 0)
			return (lost(w, wm_seterr(w->msg, WALMMAP_EPROTO,
			    "walmmapd published a ring head outside the "
			    "ring")));
		if ((rc = read_one(w, 0)) < 0)
			return (rc);
		if (cond == WM_SHM_DURABLE && w->sync_failures != failures)
			return (wm_seterr(w->msg, WALMMAP_ESYNC, "records in "
			    "the shared-memory ring are not durable: %s",
			    w->sync_why));
		/* Frames that keep coming do not extend the wait. */
		if (wm_expired(deadline) && wm_shm_reached(w->shm, cond,
		    target) == 0)
			return (wm_seterr(w->msg, WALMMAP_ETIMEDOUT, "records "
			    "in the shared-memory ring still unacknowledged "
			    "when the time limit expired"));
	}
}
