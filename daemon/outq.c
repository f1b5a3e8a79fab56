/*
 * walmmapd - per-connection queue of outgoing frames.
 *
 * A SOCK_SEQPACKET send either takes a whole frame or nothing, so frames
 * are queued whole and sent as one message each, up to OUTQ_BATCH of them
 * per sendmmsg(): an ACK and the DURABLE after it cost one system call. A
 * frame may carry descriptors (a memfd holding a large record, a
 * shared-memory ring and its doorbells) passed with SCM_RIGHTS; the queue
 * owns them until they are sent.
 */
#include "config.h"

#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handover.h"
#include "server.h"

struct outq_item {
	uint32_t	len;
	int32_t		nfds;
	int32_t		fds[OUTQ_MAX_FDS];
};

static int	outq_reserve(struct outq *, size_t);

static void	outq_close_fds(const struct outq_item *);

/* Queue a frame. Returns 0, or -1 when out of memory. */
int
outq_push(struct outq *q, const void *frame, size_t len)
{
	return (outq_push_fds(q, frame, len, NULL, 0));
}

/* Queue a frame with a descriptor to pass (the queue takes ownership). */
int
outq_push_fd(struct outq *q, const void *frame, size_t len, int fd)
{
	return (outq_push_fds(q, frame, len, &fd, 1));
}

/* Queue a frame with up to OUTQ_MAX_FDS descriptors (owned from now). */
int
outq_push_fds(struct outq *q, const void *frame, size_t len, const int *fds,
    int nfds)
{
	struct outq_item it;

	memset(&it, 0, sizeof it);
	it.len = (uint32_t)len;
	it.nfds = nfds;
	if (nfds > 0)
		memcpy(it.fds, fds, sizeof(int) * (size_t)nfds);
	if (outq_reserve(q, sizeof it + len) != 0) {
		outq_close_fds(&it);
		return (-1);
	}
	memcpy(q->buf + q->tail, &it, sizeof it);
	memcpy(q->buf + q->tail + sizeof it, frame, len);
	q->tail += sizeof it + len;
	q->frames++;
	return (0);
}

/* Bytes waiting. */
size_t
outq_bytes(const struct outq *q)
{
	return (q->tail - q->head);
}

#define OUTQ_BATCH	16

/*
 * An empty queue keeps at most this much memory for the next replies (a
 * subscriber's frame fits).
 */
#define OUTQ_KEEP	(256 * 1024)

union outq_cmsg {
	struct cmsghdr	hdr;
	char		buf[CMSG_SPACE(sizeof(int) * OUTQ_MAX_FDS)];
};

/* Point msg at the frame of it (at p) and its descriptors, if any. */
static void
outq_msg(struct msghdr *msg, struct iovec *iov, union outq_cmsg *cm,
    const struct outq_item *it, uint8_t *p)
{
	memset(msg, 0, sizeof *msg);
	iov->iov_base = p + sizeof *it;
	iov->iov_len = it->len;
	msg->msg_iov = iov;
	msg->msg_iovlen = 1;
	if (it->nfds <= 0)
		return;
	memset(cm, 0, sizeof *cm);
	msg->msg_control = cm->buf;
	msg->msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)it->nfds);
	cm->hdr.cmsg_level = SOL_SOCKET;
	cm->hdr.cmsg_type = SCM_RIGHTS;
	cm->hdr.cmsg_len = CMSG_LEN(sizeof(int) * (size_t)it->nfds);
	memcpy(CMSG_DATA(&cm->hdr), it->fds, sizeof(int) * (size_t)it->nfds);
}

/*
 * Send queued frames until the socket would block. Returns 1 when the
 * queue is empty, 0 when frames remain, -1 on a socket error (errno).
 */
int
outq_send(struct outq *q, int fd)
{
	union outq_cmsg cm[OUTQ_BATCH];
	struct mmsghdr mm[OUTQ_BATCH];
	struct iovec iov[OUTQ_BATCH];
	struct outq_item it;
	size_t off;
	int i, n, sent;

	while (q->head < q->tail) {
		for (n = 0, off = q->head; n < OUTQ_BATCH && off < q->tail;
		    n++) {
			memcpy(&it, q->buf + off, sizeof it);
			outq_msg(&mm[n].msg_hdr, &iov[n], &cm[n], &it,
			    q->buf + off);
			mm[n].msg_len = 0;
			off += sizeof it + it.len;
		}
		/*
		 * Messages are sent in order; an error after the first is
		 * reported by the next call, which starts at it.
		 */
		sent = sendmmsg(fd, mm, (unsigned)n, MSG_DONTWAIT |
		    MSG_NOSIGNAL);
		if (sent == -1) {
			if (errno == EAGAIN || errno == EINTR)
				return (0);
			return (-1);
		}
		for (i = 0; i < sent; i++) {
			memcpy(&it, q->buf + q->head, sizeof it);
			outq_close_fds(&it);
			q->head += sizeof it + it.len;
			q->frames--;
		}
	}
	q->head = q->tail = 0;
	/* A burst is over: give its memory back. */
	if (q->cap > OUTQ_KEEP) {
		if (q->total != NULL)
			*q->total -= q->cap;
		free(q->buf);
		q->buf = NULL;
		q->cap = 0;
	}
	return (1);
}

/* Release the queue and any descriptors in it. */
void
outq_free(struct outq *q)
{
	struct outq_item it;

	while (q->head < q->tail) {
		memcpy(&it, q->buf + q->head, sizeof it);
		outq_close_fds(&it);
		q->head += sizeof it + it.len;
	}
	if (q->total != NULL)
		*q->total -= q->cap;
	free(q->buf);
	memset(q, 0, sizeof *q);
}

/* Make room for n more bytes, compacting before growing. */
static int
outq_reserve(struct outq *q, size_t n)
{
	size_t cap;
	uint8_t *nb;

	if (q->tail + n <= q->cap)
		return (0);
	if (q->head > 0) {
		memmove(q->buf, q->buf + q->head, q->tail - q->head);
		q->tail -= q->head;
		q->head = 0;
		if (q->tail + n <= q->cap)
			return (0);
	}
	cap = q->cap ? q->cap : 4096;
	while (cap < q->tail + n)
		cap *= 2;
	if ((nb = realloc(q->buf, cap)) == NULL)
		return (-1);
	if (q->total != NULL)
		*q->total += cap - q->cap;
	q->buf = nb;
	q->cap = cap;
	return (0);
}

static void
outq_close_fds(const struct outq_item *it)
{
	int i;

	for (i = 0; i < it->nfds; i++)
		if (it->fds[i] != -1)
			close(it->fds[i]);
}

/*
 * Walk the queued frames for a hand-over (handover.c): start with *off =
 * 0; each call yields one frame and copies its descriptors (still owned
 * by the queue) to fds[OUTQ_MAX_FDS]. Returns 1 with a frame, 0 after the
 * last.
 */
int
outq_next(const struct outq *q, size_t *off, const void **frame,
    size_t *len, int *fds, int *nfds)
{
	struct outq_item it;

	if (*off < q->head)
		*off = q->head;
	if (*off >= q->tail)
		return (0);
	memcpy(&it, q->buf + *off, sizeof it);
	*frame = q->buf + *off + sizeof it;
	*len = it.len;
	*nfds = it.nfds;
	if (it.nfds > 0)
		memcpy(fds, it.fds, sizeof(int) * (size_t)it.nfds);
	*off += sizeof it + it.len;
	return (1);
}
