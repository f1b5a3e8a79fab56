/*
 * libwalmmap - the log id and the forwarders a daemon knows (walctl
 * status): STATUS with WAL_STATUS_F_FWD on a connection of its own.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "walmmap.h"

/* The daemon's log id and forwarders. */
int
walmmap_log_info(const char *socket, struct walmmap_log_info *out,
    char *errbuf, size_t errlen)
{
	struct wal_msg_welcome w;
	struct wal_msg q;
	struct wal_status st;
	struct wal_status_fwd h;
	struct wal_status_fwd_entry e;
	struct walmmap_forwarder *f;
	char msg[WM_MSG_MAX];
	uint8_t *buf = NULL;
	int64_t deadline;
	size_t i, need;
	int s, n, fd, rc;

	memset(out, 0, sizeof *out);
	msg[0] = '\0';
	if ((s = wm_connect(socket, WAL_ACK_NONE, &w, msg)) < 0) {
		rc = s;
		goto out;
	}
	if (w.version < 2) {
		rc = wm_seterr(msg, WALMMAP_ENOTSUP, "the daemon speaks "
		    "protocol version %u: it has no log id or forwarders",
		    w.version);
		goto out;
	}
	if ((buf = malloc(WAL_PROTO_MAX_FRAME)) == NULL) {
		rc = wm_seterr(msg, WALMMAP_ENOMEM, "out of memory");
		goto out;
	}
	memset(&q, 0, sizeof q);
	q.type = WAL_MSG_STATUS;
	q.flags = WAL_STATUS_F_FWD;
	q.len = sizeof q;
	q.id = 1;
	if ((rc = wm_send(s, &q, sizeof q, -1, 0, msg)) < 0)
		goto out;
	deadline = wm_deadline(WALMMAP_TIMEOUT_MS);
	for (;;) {
		if ((n = wm_recv(s, buf, deadline, &fd, msg)) < 0) {
			rc = n;
			goto out;
		}
		if (fd != -1)
			close(fd);
		if (n == 0) {
			rc = wm_seterr(msg, WALMMAP_ETIMEDOUT, "no STATUS reply "
			    "within %d ms", WALMMAP_TIMEOUT_MS);
			goto out;
		}
		memcpy(&q, buf, sizeof q);
		if (q.type == WAL_MSG_ERROR) {
			struct wal_msg_error em;

			memcpy(&em, buf, sizeof em);
			rc = wm_seterr(msg, wm_perr(em.code), "STATUS refused: "
			    "%.*s", (int)(n - (int)sizeof em), (const char *)
			    buf + sizeof em);
			goto out;
		}
		if (q.type == WAL_MSG_STATUS_REPLY && q.id == 1)
			break;
	}
	memcpy(&st, buf, sizeof st);
	if ((size_t)n < sizeof st + sizeof h) {
		rc = wm_seterr(msg, WALMMAP_ENOTSUP, "the daemon sent no log "
		    "id or forwarders (an older version 2 daemon)");
		goto out;
	}
	memcpy(&h, buf + sizeof st, sizeof h);
	need = sizeof st + sizeof h + (size_t)h.count * sizeof e;
	if (h.count > WALMMAP_MAX_FORWARDERS || (size_t)n < need) {
		rc = wm_seterr(msg, WALMMAP_EPROTO, "STATUS reply of %d bytes "
		    "with %u forwarders", n, h.count);
		goto out;
	}
	memcpy(out->log_id, h.log_id, sizeof out->log_id);
	for (i = 0; i < 16; i++)
		snprintf(out->log_id_hex + 2 * i, 3, "%02x", h.log_id[i]);
	out->gap_records = h.gap_records;
	out->blocking = h.blocking != 0;
	out->count = h.count;
	for (i = 0; i < h.count; i++) {
		memcpy(&e, buf + sizeof st + sizeof h + i * sizeof e,
		    sizeof e);
		f = &out->fwd[i];
		memcpy(f->name, e.name, sizeof e.name);
		f->name[sizeof f->name - 1] = '\0';
		f->shipped_seq = e.shipped_seq;
		f->shipped_ts_ns = e.shipped_ts_ns;
		f->lag_records = e.lag_records;
		f->lag_ns = e.lag_ns;
		f->gap_first = e.gap_first;
		f->gap_last = e.gap_last;
		f->gap_records = e.gap_records;
		f->attached = (int)e.attached;
		f->connected = (int)e.connected;
		memcpy(f->server, e.server, sizeof f->server);
		f->server[sizeof f->server - 1] = '\0';
		memcpy(f->error, e.error, sizeof f->error);
		f->error[sizeof f->error - 1] = '\0';
	}
	rc = 0;
out:
	if (s >= 0)
		close(s);
	free(buf);
	if (rc != 0 && errbuf != NULL && errlen > 0)
		snprintf(errbuf, errlen, "%s", msg);
	return (rc);
}
