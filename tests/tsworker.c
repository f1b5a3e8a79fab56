/*
 * walmmapd tests - the worker processes of check_model (see tsworker.h):
 * producers append through libwalmmap, subscribers follow the daemon.
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/socket.h>

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testsupport.h"
#include "tsworker.h"
#include "walmmap.h"

#define REC_MAX		(400u * 1024)	/* largest payload a producer sends */

/* CLOCK_MONOTONIC in ns. */
int64_t
tw_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
}

/* Fork a worker on one end of a socketpair; returns the test's end. */
int
tw_spawn(pid_t *pid, enum tw_kind kind, unsigned arg)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		abort();
	if ((*pid = fork()) == -1)
		abort();
	if (*pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(sv[0]);
		if (kind == TW_PRODUCER)
			tw_producer_main(sv[1], arg);
		tw_subscriber_main(sv[1]);
	}
	close(sv[1]);
	return (sv[0]);
}

/* Answer the test (exit when it is gone). */
static void
send_res(int fd, const struct p_res *r)
{
	if (send(fd, r, sizeof *r, MSG_NOSIGNAL) != (ssize_t)sizeof *r)
		_exit(0);
}

/* Errors after which the connection is of no further use. */
static int
conn_dead(int rc)
{
	return (rc == -WALMMAP_ELOST || rc == -WALMMAP_ENODAEMON ||
	    rc == -WALMMAP_ESHUTDOWN || rc == -WALMMAP_EPROTO ||
	    rc == -WALMMAP_ETIMEDOUT || rc == -WALMMAP_ESYNC);
}

/*
 * A producer: appends what the test asks, answering each record (its seq
 * or error) as soon as it is known, and RES_DONE at the end.
 */
void
tw_producer_main(int fd, unsigned p)
{
	struct walmmap *w = NULL;
	struct p_cmd c;
	struct p_res r;
	struct iovec *iov;
	int64_t *seqs, seq, t;
	uint8_t *buf;
	size_t off;
	unsigned i;
	int rc, wrc;

	buf = malloc((size_t)REC_MAX * M_BATCH_MAX / 4 + REC_MAX);
	iov = calloc(M_BATCH_MAX, sizeof *iov);
	seqs = calloc(M_BATCH_MAX, sizeof *seqs);
	if (buf == NULL || iov == NULL || seqs == NULL)
		_exit(1);
	for (;;) {
		if (recv(fd, &c, sizeof c, 0) != (ssize_t)sizeof c)
			_exit(0);
		if (c.op == P_QUIT)
			_exit(0);
		if (c.op == P_CLOSE) {
			walmmap_close(w);
			w = NULL;
			memset(&r, 0, sizeof r);
			r.kind = RES_DONE;
			send_res(fd, &r);
			continue;
		}
		memset(&r, 0, sizeof r);
		if (w == NULL && (rc = walmmap_connect(&w, c.sock,
		    WALMMAP_ACK_WRITTEN, c.shm ? WALMMAP_SHM : 0)) != 0) {
			walmmap_close(w);
			w = NULL;
			/* Not sent at all. */
			for (i = 0; i < c.count; i++) {
				r.kind = RES_REC;
				r.rc = -WALMMAP_ENODAEMON;
				r.n = c.n0 + i;
				r.seq = -1;
				send_res(fd, &r);
			}
			r.kind = RES_DONE;
			r.rc = rc;
			send_res(fd, &r);
			continue;
		}
		rc = 0;
		if (c.mode == M_BATCH) {
			for (i = 0, off = 0; i < c.count; i++) {
				iov[i].iov_base = buf + off;
				iov[i].iov_len = ts_rec_payload(buf + off,
				    REC_MAX, p, c.n0 + i, c.sizes[i]);
				off += iov[i].iov_len;
			}
			t = tw_mono_ns();
			rc = walmmap_append_batch(w, iov, c.count, c.level,
			    seqs);
			for (i = 0; i < c.count; i++) {
				r.kind = RES_REC;
				r.rc = rc < 0 ? rc : 0;
				r.n = c.n0 + i;
				r.seq = rc < 0 ? -1 : seqs[i];
				r.t_sent = t;
				/* A failed batch may have written some. */
				r.pipelined = rc < 0;
				send_res(fd, &r);
			}
		} else {
			for (i = 0; i < c.count; i++) {
				size_t len = ts_rec_payload(buf, REC_MAX, p,
				    c.n0 + i, c.sizes[i]);

				seq = -1;
				t = tw_mono_ns();
				rc = walmmap_append(w, buf, len, c.level,
				    c.mode == M_SINGLE && c.level !=
				    M_NONE ? &seq : NULL);
				r.kind = RES_REC;
				r.rc = rc;
				r.n = c.n0 + i;
				r.seq = seq;
				r.t_sent = t;
				r.pipelined = c.mode != M_SINGLE ||
				    c.level == M_NONE;
				send_res(fd, &r);
				if (rc < 0 && conn_dead(rc))
					break;
			}
			for (i++; i < c.count; i++) {
				/* Not sent after the connection died. */
				r.kind = RES_REC;
				r.rc = -WALMMAP_ENODAEMON;
				r.n = c.n0 + i;
				r.seq = -1;
				r.pipelined = 0;
				send_res(fd, &r);
			}
			if (c.mode != M_SINGLE || c.level == M_NONE) {
				/* What was sent is at least at its level? */
				wrc = walmmap_wait(w, c.level == M_NONE ?
				    WALMMAP_ACK_WRITTEN : c.level, -1);
				r.kind = RES_WAIT;
				r.rc = wrc;
				r.count = c.count;
				send_res(fd, &r);
				if (wrc < 0)
					rc = wrc;
			}
		}
		if (rc < 0 && conn_dead(rc)) {
			walmmap_close(w);
			w = NULL;
		}
		r.kind = RES_DONE;
		r.rc = rc;
		send_res(fd, &r);
	}
}

/* Send the test a subscriber message (exit when it is gone). */
static void
sub_send(int fd, struct s_res *r)
{
	size_t len = r->kind == SR_RECS ? offsetof(struct s_res, u) +
	    r->count * sizeof(struct s_item) : sizeof *r;

	if (send(fd, r, len, MSG_NOSIGNAL) != (ssize_t)len)
		_exit(0);
	r->count = 0;
}

/*
 * A subscriber: follows the daemon from a seq, checks each payload and
 * reports what it got; can be told to stall (stop reading) or be slow.
 */
void
tw_subscriber_main(int fd)
{
	struct walmmap_reader *rd = NULL;
	struct walmmap_record rec;
	struct s_res out, r;
	struct s_cmd c;
	struct pollfd pfd;
	int stalled = 0, slow = 0, rc;
	int64_t last_send = 0;
	unsigned p;
	uint64_t n;

	memset(&out, 0, sizeof out);
	out.kind = SR_RECS;
	for (;;) {
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, rd == NULL || stalled ? 200 : 0) == 1) {
			if (recv(fd, &c, sizeof c, 0) != (ssize_t)sizeof c)
				_exit(0);
			memset(&r, 0, sizeof r);
			switch (c.op) {
			case S_QUIT:
				_exit(0);
			case S_STALL:
				stalled = c.arg;
				break;
			case S_SLOW:
				slow = c.arg;
				break;
			case S_STOP:
			case S_START:
				if (out.count > 0)
					sub_send(fd, &out);
				walmmap_reader_close(rd);
				rd = NULL;
				if (c.op == S_STOP) {
					r.kind = SR_STOPPED;
					sub_send(fd, &r);
					break;
				}
				stalled = 0;
				slow = c.arg;
				rc = walmmap_subscribe(&rd, c.sock, c.from, -1,
				    WALMMAP_FOLLOW);
				if (rc != 0) {
					r.kind = SR_ERR;
					r.rc = rc;
					snprintf(r.u.msg, sizeof r.u.msg, "%s",
					    walmmap_reader_errmsg(rd));
					walmmap_reader_close(rd);
					rd = NULL;
				} else
					r.kind = SR_STARTED;
				sub_send(fd, &r);
				break;
			}
			continue;
		}
		if (rd == NULL || stalled)
			continue;
		rc = walmmap_reader_next(rd, &rec, 20);
		if (rc == 1) {
			struct s_item *it = &out.u.items[out.count++];

			it->seq = rec.seq;
			it->size = (uint32_t)rec.size;
			it->ok = (uint32_t)ts_rec_parse(rec.data, rec.size, &p,
			    &n);
			it->p = it->ok ? p : 0;
			it->n = it->ok ? n : 0;
			if (slow)
				usleep(2000);
		}
		if (out.count > 0 && (rc != 1 || out.count == SUB_ITEMS ||
		    tw_mono_ns() - last_send > 20000000)) {
			sub_send(fd, &out);
			last_send = tw_mono_ns();
		}
		if (rc < 0) {
			memset(&r, 0, sizeof r);
			r.kind = SR_ERR;
			r.rc = rc;
			snprintf(r.u.msg, sizeof r.u.msg, "%s",
			    walmmap_reader_errmsg(rd));
			sub_send(fd, &r);
			walmmap_reader_close(rd);
			rd = NULL;
		}
	}
}

