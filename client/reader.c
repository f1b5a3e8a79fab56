/*
 * libwalmmap - reading: segment files through the core reader, or a
 * daemon subscription over the socket.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "wal_reader.h"
#include "walmmap.h"

#define FOLLOW_POLL_MS	10		/* file follower's re-check interval */

struct walmmap_reader {
	/* Files. */
	struct wal_reader	*files;

	/* Subscription. */
	int			 sock;		/* -1 for files */
	uint8_t			*rx;		/* current RECORDS frame */
	size_t			 rx_len;
	size_t			 rx_off;	/* next wal_rec_out in rx */
	uint32_t		 rx_left;	/* records left in rx */
	uint8_t			*big;		/* a record passed as memfd */
	size_t			 big_len;
	int			 ended;		/* SUB_END seen */
	int			 end_err;	/* why it ended, if damage */

	char			 msg[WM_MSG_MAX];
};

static int	files_next(struct walmmap_reader *, struct walmmap_record *,
		    int timeout_ms);
static int	sub_next(struct walmmap_reader *, struct walmmap_record *,
		    int timeout_ms);
static int	sub_frame(struct walmmap_reader *, size_t, int fd);

static struct walmmap_reader *
reader_new(void)
{
	struct walmmap_reader *r;

	if ((r = calloc(1, sizeof *r)) == NULL)
		return (NULL);
	r->sock = -1;
	return (r);
}

int
walmmap_reader_open(struct walmmap_reader **rp, const char *path)
{
	struct walmmap_reader *r;
	struct wal_error err;
	int rc;

	if ((*rp = r = reader_new()) == NULL)
		return (-WALMMAP_ENOMEM);
	if (path == NULL)
		return (wm_seterr(r->msg, WALMMAP_EINVAL, "no path to read"));
	if ((rc = wal_reader_open(path, &r->files, &err)) != 0)
		return (wm_seterr(r->msg, rc == -ENOMEM ? WALMMAP_ENOMEM :
		    WALMMAP_EIO, "%s", err.msg));
	return (0);
}

int
walmmap_reader_set_strict(struct walmmap_reader *r, int on)
{
	if (r->files == NULL)
		return (wm_seterr(r->msg, WALMMAP_ENOTSUP, "a subscription "
		    "reads what the daemon wrote; strict is for files"));
	wal_reader_set_strict(r->files, on);
	return (0);
}

int
walmmap_subscribe(struct walmmap_reader **rp, const char *socket,
    int64_t from_seq, int64_t to_seq, unsigned flags)
{
	struct walmmap_reader *r;
	struct wal_msg_welcome w;
	struct wal_msg_subscribe s;
	int fd, rc;

	if ((*rp = r = reader_new()) == NULL)
		return (-WALMMAP_ENOMEM);
	if ((flags & ~WALMMAP_FOLLOW) != 0)
		return (wm_seterr(r->msg, WALMMAP_EINVAL, "walmmap_subscribe: "
		    "unknown flags %#x", flags));
	if ((r->rx = malloc(WAL_PROTO_MAX_FRAME)) == NULL)
		return (wm_seterr(r->msg, WALMMAP_ENOMEM, "out of memory"));
	if ((fd = wm_connect(socket, WAL_ACK_NONE, &w, r->msg)) < 0)
		return (fd);
	r->sock = fd;
	memset(&s, 0, sizeof s);
	s.hdr.type = WAL_MSG_SUBSCRIBE;
	s.hdr.len = sizeof s;
	s.hdr.id = 2;
	s.from_seq = from_seq < 0 ? -1 : from_seq;
	s.to_seq = to_seq < 0 ? -1 : to_seq;
	s.flags = (flags & WALMMAP_FOLLOW) ? WAL_SUB_FOLLOW : 0;
	if ((rc = wm_send(fd, &s, sizeof s, -1, 0, r->msg)) < 0)
		return (rc);
	return (0);
}

void
walmmap_reader_close(struct walmmap_reader *r)
{
	if (r == NULL)
		return;
	wal_reader_close(r->files);
	if (r->sock != -1)
		close(r->sock);
	free(r->rx);
	free(r->big);
	free(r);
}

const char *
walmmap_reader_errmsg(const struct walmmap_reader *r)
{
	return (r == NULL ? "out of memory" : r->msg);
}

int
walmmap_reader_seek(struct walmmap_reader *r, int64_t seq)
{
	struct wal_error err;
	int rc;

	if (r->files == NULL)
		return (wm_seterr(r->msg, WALMMAP_ENOTSUP, "a subscription "
		    "cannot seek; subscribe from the seq instead"));
	/* -ENOENT: seq is beyond the end; the reader waits there for it. */
	if ((rc = wal_reader_seek(r->files, seq, &err)) != 0 && rc != -ENOENT)
		return (wm_seterr(r->msg, rc == -ENOMEM ? WALMMAP_ENOMEM :
		    WALMMAP_EIO, "%s", err.msg));
	return (0);
}

int
walmmap_reader_next(struct walmmap_reader *r, struct walmmap_record *rec,
    int timeout_ms)
{
	if (r->files != NULL)
		return (files_next(r, rec, timeout_ms));
	if (r->sock != -1)
		return (sub_next(r, rec, timeout_ms));
	return (wm_seterr(r->msg, WALMMAP_EINVAL, "reader is not open"));
}

int
walmmap_reader_fd(const struct walmmap_reader *r)
{
	return (r->sock);
}

int
walmmap_reader_ended(const struct walmmap_reader *r)
{
	return (r->sock != -1 && r->ended && r->end_err == 0);
}

/* Next record from the files; at the end, poll until the timeout. */
static int
files_next(struct walmmap_reader *r, struct walmmap_record *rec,
    int timeout_ms)
{
	const struct wal_reader_stop *st;
	struct timespec ts;
	struct wal_record wr;
	struct wal_error err;
	int64_t deadline = wm_deadline(timeout_ms);
	int rc, left;

	for (;;) {
		rc = wal_reader_next(r->files, &wr, &err);
		if (rc < 0)
			return (wm_seterr(r->msg, WALMMAP_EIO, "%s", err.msg));
		if (rc > 0) {
			rec->seq = wr.seq;
			rec->timestamp_ns = wr.timestamp_ns;
			rec->data = wr.payload;
			rec->size = wr.size;
			return (1);
		}
		st = wal_reader_stopped(r->files);
		if (st->status == WAL_REC_REMOVED)
			return (wm_seterr(r->msg, WALMMAP_EREMOVED, "records "
			    "from seq %" PRId64 " to %" PRId64 " were removed "
			    "by retention while they were being read; the log "
			    "continues at seq %" PRId64 " in %s",
			    st->expect_seq, st->found_seq - 1, st->found_seq,
			    st->file ? st->file : "?"));
		if (st->status != WAL_REC_END) {
			char seqs[96] = "";

			if (st->expect_seq >= 0 && st->found_seq >= 0 &&
			    st->expect_seq != st->found_seq)
				snprintf(seqs, sizeof seqs, " (expected seq %"
				    PRId64 ", found %" PRId64 ")",
				    st->expect_seq, st->found_seq);
			else if (st->expect_seq >= 0)
				snprintf(seqs, sizeof seqs, " (at seq %" PRId64
				    ")", st->expect_seq);
			return (wm_seterr(r->msg, WALMMAP_ECORRUPT, "%s: offset "
			    "%" PRIu64 ": %s%s", st->file ? st->file : "?",
			    st->offset, wal_rec_strstatus(st->status), seqs));
		}
		left = wm_left_ms(deadline);
		if (left == 0)
			return (0);
		if (left < 0 || left > FOLLOW_POLL_MS)
			left = FOLLOW_POLL_MS;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)left * 1000000;
		nanosleep(&ts, NULL);
	}
}

/* Next record of a subscription. */
static int
sub_next(struct walmmap_reader *r, struct walmmap_record *rec, int timeout_ms)
{
	int64_t deadline = wm_deadline(timeout_ms);
	struct wal_rec_out ro;
	int n, fd, rc;

	for (;;) {
		if (r->rx_left > 0) {
			/* Checked by wal_proto_check: sizes fit the frame. */
			memcpy(&ro, r->rx + r->rx_off, sizeof ro);
			rec->seq = ro.seq;
			rec->timestamp_ns = ro.timestamp_ns;
			rec->size = ro.size;
			rec->data = r->rx + r->rx_off + sizeof ro;
			r->rx_off += sizeof ro + ro.size;
			r->rx_left--;
			return (1);
		}
		if (r->ended)
			return (r->end_err);
		n = wm_recv(r->sock, r->rx, deadline, &fd, r->msg);
		if (n < 0)
			return (n);
		if (n == 0)
			return (0);
		if ((rc = sub_frame(r, (size_t)n, fd)) != 0)
			return (rc);
		if (r->big != NULL && r->big_len != (size_t)-1) {
			memcpy(&ro, r->rx + sizeof(struct wal_msg), sizeof ro);
			rec->seq = ro.seq;
			rec->timestamp_ns = ro.timestamp_ns;
			rec->size = r->big_len;
			rec->data = r->big;
			r->big_len = (size_t)-1;	/* handed out */
			return (1);
		}
		/* Frames without a record do not extend the wait. */
		if (r->rx_left == 0 && wm_expired(deadline))
			return (0);
	}
}

/* Take one frame of a subscription. 0, or an error to return. */
static int
sub_frame(struct walmmap_reader *r, size_t len, int fd)
{
	struct wal_msg hdr;

	memcpy(&hdr, r->rx, sizeof hdr);
	if (hdr.type != WAL_MSG_RECORD_FD && fd != -1) {
		close(fd);
		fd = -1;
	}
	switch (hdr.type) {
	case WAL_MSG_RECORDS: {
		struct wal_msg_records m;

		memcpy(&m, r->rx, sizeof m);
		r->rx_len = len;
		r->rx_off = sizeof m;
		r->rx_left = m.count;
		return (0);
	}
	case WAL_MSG_RECORD_FD: {
		struct wal_rec_out ro;
		struct stat sb;
		size_t got = 0;
		ssize_t n;

		memcpy(&ro, r->rx + sizeof hdr, sizeof ro);
		free(r->big);
		r->big = NULL;
		if (fd == -1 || fstat(fd, &sb) == -1 ||
		    (uint64_t)sb.st_size < ro.size) {
			if (fd != -1)
				close(fd);
			return (wm_seterr(r->msg, WALMMAP_EPROTO, "walmmapd "
			    "passed record %" PRId64 " without a usable memfd",
			    ro.seq));
		}
		if ((r->big = malloc(ro.size ? ro.size : 1)) == NULL) {
			close(fd);
			return (wm_seterr(r->msg, WALMMAP_ENOMEM, "out of "
			    "memory for a record of %" PRIu32 " bytes",
			    ro.size));
		}
		while (got < ro.size) {
			n = pread(fd, r->big + got, ro.size - got, (off_t)got);
			if (n <= 0) {
				close(fd);
				return (wm_seterr(r->msg, WALMMAP_EIO, "cannot "
				    "read record %" PRId64 " from its memfd",
				    ro.seq));
			}
			got += (size_t)n;
		}
		close(fd);
		r->big_len = ro.size;
		return (0);
	}
	case WAL_MSG_SUB_END: {
		struct wal_msg_sub_end e;

		memcpy(&e, r->rx, sizeof e);
		r->ended = 1;
		if (e.reason == WAL_REC_REMOVED)
			r->end_err = wm_seterr(r->msg, WALMMAP_EREMOVED,
			    "walmmapd: records from seq %" PRId64 " on were "
			    "removed by retention before they were sent",
			    e.next_seq);
		else if (e.reason != 0)
			r->end_err = wm_seterr(r->msg, WALMMAP_ECORRUPT,
			    "the log is damaged at seq %" PRId64 ": %s",
			    e.next_seq, wal_rec_strstatus(e.reason));
		return (r->end_err);
	}
	case WAL_MSG_ERROR: {
		struct wal_msg_error e;

		memcpy(&e, r->rx, sizeof e);
		r->ended = 1;
		r->end_err = wm_seterr(r->msg, wm_perr(e.code), "walmmapd: "
		    "%s: %.*s", wal_proto_strerror(e.code),
		    (int)(len - sizeof e), (const char *)r->rx + sizeof e);
		return (r->end_err);
	}
	default:
		return (wm_seterr(r->msg, WALMMAP_EPROTO, "walmmapd sent %s on "
		    "a subscription", wal_proto_type_name(hdr.type)));
	}
}
