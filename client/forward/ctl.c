/*
 * walmmap-forward - the control connection to walmmapd: FWD_REGISTER,
 * FWD_POSITION, the durable position (STATUS), and what the daemon says
 * unasked (a GAP).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "fwd.h"
#include "internal.h"
#include "walmmap.h"

static int	ctl_answer(struct fwd *, uint64_t id, uint16_t type, char *why,
		    size_t whylen, unsigned *perr);

static uint8_t	fwd_buf[WAL_PROTO_MAX_FRAME];

/* Connect to walmmapd (protocol version 2). */
int
ctl_connect(struct fwd *fw, char *why, size_t whylen)
{
	struct wal_msg_welcome w;
	char msg[WM_MSG_MAX];
	int s;

	if ((s = wm_connect(fw->cfg.socket, WAL_ACK_NONE, &w, msg)) < 0) {
		snprintf(why, whylen, "%s", msg);
		return (-1);
	}
	if (w.version < 2) {
		close(s);
		snprintf(why, whylen, "walmmapd speaks protocol version %u; "
		    "forwarding needs version 2", w.version);
		return (-1);
	}
	fw->ctl = s;
	return (0);
}

void
ctl_close(struct fwd *fw)
{
	if (fw->ctl >= 0)
		close(fw->ctl);
	fw->ctl = -1;
}

/* Wait for the answer to request id: its length in fwd_buf, or -1. */
static int
ctl_answer(struct fwd *fw, uint64_t id, uint16_t type, char *why,
    size_t whylen, unsigned *perr)
{
	struct wal_msg hdr;
	struct wal_msg_error e;
	char msg[WM_MSG_MAX];
	int64_t deadline = wm_deadline(10000);
	int n, fd;

	*perr = 0;
	for (;;) {
		if ((n = wm_recv(fw->ctl, fwd_buf, deadline, &fd, msg)) <= 0) {
			snprintf(why, whylen, "%s", n == 0 ? "walmmapd did not "
			    "answer within 10 s" : msg);
			return (-1);
		}
		if (fd != -1)
			close(fd);
		memcpy(&hdr, fwd_buf, sizeof hdr);
		if (hdr.type == WAL_MSG_ERROR) {
			memcpy(&e, fwd_buf, sizeof e);
			snprintf(why, whylen, "walmmapd: %.*s", (int)(n -
			    (int)sizeof e), (const char *)fwd_buf + sizeof e);
			if (e.code == WAL_PERR_GAP) {
				fwd_log(LOG_ERR, "%s", why);
				continue;	/* FWD_STATE says it too */
			}
			if (hdr.id == id || e.fatal) {
				*perr = e.code;
				return (-1);
			}
			continue;
		}
		if (hdr.type == type && hdr.id == id)
			return (n);
	}
}

/*
 * Register; st gets the log id and where the log starts. Returns 0, -1 to
 * try again, or an exit status.
 */
int
ctl_register(struct fwd *fw, struct wal_msg_fwd_state *st, char *why,
    size_t whylen)
{
	struct wal_msg_fwd_register r;
	char msg[WM_MSG_MAX];
	unsigned perr;
	int i;

	memset(&r, 0, sizeof r);
	r.hdr.type = WAL_MSG_FWD_REGISTER;
	r.hdr.len = sizeof r;
	r.hdr.id = 2;
	snprintf(r.name, sizeof r.name, "%s", fw->cfg.name);
	r.shipped_seq = -2;	/* the stream says, once we know the id */
	if (wm_send(fw->ctl, &r, sizeof r, -1, 0, msg) < 0) {
		snprintf(why, whylen, "%s", msg);
		return (-1);
	}
	if (ctl_answer(fw, 2, WAL_MSG_FWD_STATE, why, whylen, &perr) < 0)
		return (perr == WAL_PERR_BUSY || perr == WAL_PERR_PROTO ||
		    perr == WAL_PERR_PERM ? FWD_EXIT_FAIL : -1);
	memcpy(st, fwd_buf, sizeof *st);
	if (fw->have_log_id && memcmp(fw->log_id, st->log_id, 16) != 0) {
		snprintf(why, whylen, "walmmapd's log id changed (was %s): "
		    "another data directory behind the same socket", 
		    fw->log_id_hex);
		return (FWD_EXIT_FAIL);
	}
	memcpy(fw->log_id, st->log_id, 16);
	for (i = 0; i < 16; i++)
		snprintf(fw->log_id_hex + 2 * i, 3, "%02x", fw->log_id[i]);
	fw->have_log_id = 1;
	return (0);
}

/* Tell walmmapd what the stream acknowledged. */
int
ctl_position(struct fwd *fw)
{
	struct wal_msg_fwd_position p;
	char msg[WM_MSG_MAX];

	if (fw->ctl < 0)
		return (-1);
	memset(&p, 0, sizeof p);
	p.hdr.type = WAL_MSG_FWD_POSITION;
	p.hdr.len = sizeof p;
	p.hdr.id = 3;
	fwd_nats_server(fw, p.server, sizeof p.server);
	pthread_mutex_lock(&fw->lock);
	p.shipped_seq = fw->acked_seq;
	p.shipped_ts_ns = fw->acked_ts_ns;
	p.connected = (uint32_t)fw->connected;
	snprintf(p.error, sizeof p.error, "%s", fw->error);
	pthread_mutex_unlock(&fw->lock);
	if (!fw->positioned)
		p.shipped_seq = -2;	/* not known yet */
	else if (p.shipped_seq < -1)
		p.shipped_seq = -1;
	if (wm_send(fw->ctl, &p, sizeof p, -1, 1, msg) < 0 &&
	    strstr(msg, "again") == NULL)
		return (-1);
	return (0);
}

/*
 * Read what walmmapd sent on the control connection without waiting: a
 * GAP error is logged; 0, or -1 when the connection is gone.
 */
int
ctl_poll(struct fwd *fw)
{
	struct wal_msg hdr;
	struct wal_msg_error e;
	char msg[WM_MSG_MAX];
	int n, fd;

	if (fw->ctl < 0)
		return (-1);
	for (;;) {
		n = wm_recv(fw->ctl, fwd_buf, wm_now_ms() - 1, &fd, msg);
		if (n == 0)
			return (0);
		if (n < 0) {
			fwd_log(LOG_WARNING, "walmmapd: %s", msg);
			return (-1);
		}
		if (fd != -1)
			close(fd);
		memcpy(&hdr, fwd_buf, sizeof hdr);
		if (hdr.type != WAL_MSG_ERROR)
			continue;
		memcpy(&e, fwd_buf, sizeof e);
		fwd_log(LOG_ERR, "walmmapd: %.*s", (int)(n - (int)sizeof e),
		    (const char *)fwd_buf + sizeof e);
		if (e.code == WAL_PERR_GAP || e.fatal)
			return (-1);	/* register again: it decides */
	}
}

/* Ask walmmapd how far the log is durable (fw->durable_seq). */
int
ctl_durable(struct fwd *fw)
{
	struct wal_msg q;
	struct wal_status st;
	char msg[WM_MSG_MAX], why[1024];
	unsigned perr;

	if (fw->ctl < 0)
		return (-1);
	memset(&q, 0, sizeof q);
	q.type = WAL_MSG_STATUS;
	q.len = sizeof q;
	q.id = 4;
	if (wm_send(fw->ctl, &q, sizeof q, -1, 0, msg) < 0 ||
	    ctl_answer(fw, 4, WAL_MSG_STATUS_REPLY, why, sizeof why,
	    &perr) < 0)
		return (-1);
	memcpy(&st, fwd_buf, sizeof st);
	fw->durable_seq = st.durable_seq;
	return (0);
}
