/*
 * walmmap-forward - the JetStream side: connection, stream, publishing.
 *
 * Publishing is asynchronous with a window of at most cfg.window messages
 * not yet acknowledged. Each message's id is "<log id>:<seq>", so a
 * message published again after a crash or a failed acknowledgement is
 * dropped by JetStream's duplicate window. Any failed acknowledgement or
 * lost connection starts a new epoch: the main loop waits for what is in
 * flight, asks the stream for its last message on the subject and goes on
 * after it, so what the stream holds decides, never a local cursor.
 */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "fwd.h"

static void	fwd_ack_cb(jsCtx *, natsMsg *, jsPubAck *, jsPubAckErr *,
		    void *);
static void	fwd_connected_cb(natsConnection *, void *);
static void	fwd_disconnected_cb(natsConnection *, void *);
static void	fwd_reconnected_cb(natsConnection *, void *);
static void	fwd_error_cb(natsConnection *, natsSubscription *,
		    natsStatus, void *);
static natsStatus fwd_nats_opts(struct fwd *, natsOptions **, int);
static int	fwd_subject_covers(const char *pattern, const char *subject);
static int64_t	fwd_msg_seq(natsMsg *);

/* Record the last error (shown by walctl status). */
void
fwd_set_error(struct fwd *fw, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&fw->lock);
	va_start(ap, fmt);
	vsnprintf(fw->error, sizeof fw->error, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&fw->lock);
}

static natsStatus
fwd_nats_opts(struct fwd *fw, natsOptions **op, int probe)
{
	const struct fwd_config *cfg = &fw->cfg;
	const char *servers[32];
	natsOptions *o = NULL;
	char *urls, *p, *save = NULL;
	natsStatus s;
	int n = 0;

	if ((urls = strdup(cfg->urls)) == NULL)
		return (NATS_NO_MEMORY);
	for (p = strtok_r(urls, ",", &save); p != NULL && n < 32;
	    p = strtok_r(NULL, ",", &save))
		servers[n++] = p;
	if ((s = natsOptions_Create(&o)) != NATS_OK) {
		free(urls);
		return (s);
	}
	s = natsOptions_SetServers(o, servers, n);
	free(urls);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, "walmmap-forward");
	if (s == NATS_OK && probe)
		s = natsOptions_SetAllowReconnect(o, false);
	if (s == NATS_OK && probe)
		s = natsOptions_SetTimeout(o, 2000);
	if (s == NATS_OK && !probe)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK && !probe)
		s = natsOptions_SetReconnectWait(o, 250);
	if (s == NATS_OK && !probe)
		s = natsOptions_SetReconnectJitter(o, 100, 1000);
	if (s == NATS_OK && !probe)
		s = natsOptions_SetReconnectBufSize(o, 1);
	if (s == NATS_OK && !probe)
		s = natsOptions_SetRetryOnFailedConnect(o, true,
		    fwd_connected_cb, fw);
	if (s == NATS_OK && !probe)
		s = natsOptions_SetDisconnectedCB(o, fwd_disconnected_cb, fw);
	if (s == NATS_OK && !probe)
		s = natsOptions_SetReconnectedCB(o, fwd_reconnected_cb, fw);
	if (s == NATS_OK && !probe)
		s = natsOptions_SetErrorHandler(o, fwd_error_cb, fw);
	if (s == NATS_OK && cfg->creds != NULL)
		s = natsOptions_SetUserCredentialsFromFiles(o, cfg->creds,
		    NULL);
	if (s == NATS_OK && cfg->nkey_seed != NULL)
		s = natsOptions_SetNKeyFromSeed(o, NULL, cfg->nkey_seed);
	if (s == NATS_OK && cfg->user != NULL)
		s = natsOptions_SetUserInfo(o, cfg->user,
		    cfg->password != NULL ? cfg->password : "");
	if (s == NATS_OK && (cfg->tls || cfg->tls_ca != NULL ||
	    cfg->tls_cert != NULL))
		s = natsOptions_SetSecure(o, true);
	if (s == NATS_OK && cfg->tls_ca != NULL)
		s = natsOptions_LoadCATrustedCertificates(o, cfg->tls_ca);
	if (s == NATS_OK && cfg->tls_cert != NULL)
		s = natsOptions_LoadCertificatesChain(o, cfg->tls_cert,
		    cfg->tls_key);
	if (s != NATS_OK) {
		natsOptions_Destroy(o);
		return (s);
	}
	*op = o;
	return (NATS_OK);
}

/*
 * Options and the connection. The connection retries for ever, also when
 * no server answers at first (connect returns at once, the connected
 * handler says when it got through). The reconnect buffer is one byte:
 * a publish while disconnected fails at once instead of reaching the
 * server after messages that were lost with the old connection.
 */
int
fwd_nats_setup(struct fwd *fw, char *why, size_t whylen)
{
	natsStatus s;

	if ((s = fwd_nats_opts(fw, &fw->opts, 0)) != NATS_OK)
		goto fail;
	s = natsConnection_Connect(&fw->nc, fw->opts);
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED)
		goto fail;
	if (s == NATS_OK) {
		pthread_mutex_lock(&fw->lock);
		fw->connected = 1;
		pthread_mutex_unlock(&fw->lock);
	}
	return (0);
fail:
	snprintf(why, whylen, "NATS options for %s: %s", fw->cfg.urls,
	    nats_GetLastError(NULL) != NULL ? nats_GetLastError(NULL) :
	    natsStatus_GetText(s));
	return (-1);
}

/* 1 when connected to a server. */
int
fwd_nats_connected(struct fwd *fw)
{
	return (fw->nc != NULL && natsConnection_Status(fw->nc) ==
	    NATS_CONN_STATUS_CONNECTED);
}

/* The URL of the server we are connected to, or "". */
void
fwd_nats_server(struct fwd *fw, char *buf, size_t len)
{
	buf[0] = '\0';
	if (fw->nc != NULL && natsConnection_GetConnectedUrl(fw->nc, buf,
	    len) != NATS_OK)
		buf[0] = '\0';
}

/*
 * The stream exists (or is created) and its subjects cover ours: 0;
 * FWD_EXIT_CONFIG when it cannot work as configured; -1 when it could not
 * be asked (try again).
 */
int
fwd_nats_check_stream(struct fwd *fw, char *why, size_t whylen)
{
	const struct fwd_config *cfg = &fw->cfg;
	jsStreamInfo *si = NULL;
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	natsStatus s;
	const char *subjects[1];
	int i, ok = 0;

	s = js_GetStreamInfo(&si, fw->js, cfg->stream, NULL, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
		if (!cfg->create_stream) {
			snprintf(why, whylen, "no stream %s on %s (create it, "
			    "or start with --create-stream)", cfg->stream,
			    cfg->urls);
			return (FWD_EXIT_CONFIG);
		}
		jsStreamConfig_Init(&sc);
		sc.Name = cfg->stream;
		subjects[0] = cfg->subject;
		sc.Subjects = subjects;
		sc.SubjectsLen = 1;
		sc.Storage = cfg->memory_storage ? js_MemoryStorage :
		    js_FileStorage;
		sc.Replicas = cfg->replicas;
		s = js_AddStream(&si, fw->js, &sc, NULL, &jerr);
		if (s != NATS_OK) {
			snprintf(why, whylen, "cannot create stream %s "
			    "(subject %s, %d replica%s): %s (%d)", cfg->stream,
			    cfg->subject, cfg->replicas, cfg->replicas == 1 ?
			    "" : "s", nats_GetLastError(NULL) != NULL ?
			    nats_GetLastError(NULL) : natsStatus_GetText(s),
			    (int)jerr);
			return (jerr != 0 ? FWD_EXIT_CONFIG : -1);
		}
		fwd_log(LOG_NOTICE, "created stream %s for subject %s (%d "
		    "replica%s, %s storage)", cfg->stream, cfg->subject,
		    cfg->replicas, cfg->replicas == 1 ? "" : "s",
		    cfg->memory_storage ? "memory" : "file");
		jsStreamInfo_Destroy(si);
		return (0);
	}
	if (s != NATS_OK) {
		snprintf(why, whylen, "cannot look up stream %s: %s",
		    cfg->stream, nats_GetLastError(NULL) != NULL ?
		    nats_GetLastError(NULL) : natsStatus_GetText(s));
		return (-1);
	}
	for (i = 0; i < si->Config->SubjectsLen; i++)
		if (fwd_subject_covers(si->Config->Subjects[i], cfg->subject))
			ok = 1;
	/*
	 * A message the stream can never take, refused inside a window,
	 * would leave a hole: such a record is refused before it is sent.
	 */
	fw->stream_max_msg = si->Config->MaxMsgSize > 0 ?
	    si->Config->MaxMsgSize : -1;
	if (si->Config->Discard == js_DiscardNew && si->Config->MaxBytes > 0 &&
	    (fw->stream_max_msg < 0 || si->Config->MaxBytes <
	    fw->stream_max_msg))
		fw->stream_max_msg = si->Config->MaxBytes;
	jsStreamInfo_Destroy(si);
	if (!ok) {
		snprintf(why, whylen, "stream %s does not take subject %s (add "
		    "it to the stream's subjects, or choose --subject)",
		    cfg->stream, cfg->subject);
		return (FWD_EXIT_CONFIG);
	}
	return (0);
}

/* Does a NATS subject pattern (with * and >) match the subject? */
static int
fwd_subject_covers(const char *p, const char *s)
{
	size_t pl, sl;

	for (;;) {
		pl = strcspn(p, ".");
		sl = strcspn(s, ".");
		if (pl == 1 && p[0] == '>')
			return (sl > 0);
		if (!(pl == 1 && p[0] == '*') && (pl != sl ||
		    memcmp(p, s, pl) != 0))
			return (0);
		if (p[pl] == '\0' || s[sl] == '\0')
			return (p[pl] == '\0' && s[sl] == '\0');
		p += pl + 1;
		s += sl + 1;
	}
}

/* The Walmmap-Seq header of a message, -1 if none. */
static int64_t
fwd_msg_seq(natsMsg *m)
{
	const char *v = NULL;

	if (natsMsgHeader_Get(m, "Walmmap-Seq", &v) != NATS_OK || v == NULL)
		return (-1);
	return (strtoll(v, NULL, 10));
}

/*
 * The last seq the stream holds on our subject (-1: none): 0; or
 * FWD_EXIT_CONFIG when it holds another log's messages there; -1 when the
 * stream could not be asked.
 */
int
fwd_nats_last(struct fwd *fw, int64_t *seq, char *why, size_t whylen)
{
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	const char *id = NULL;

	s = js_GetLastMsg(&m, fw->js, fw->cfg.stream, fw->cfg.subject, NULL,
	    &jerr);
	if (s == NATS_NOT_FOUND) {
		*seq = -1;
		fw->last_sseq = 0;
		return (0);
	}
	if (s != NATS_OK) {
		snprintf(why, whylen, "cannot ask stream %s for its last "
		    "message on %s: %s", fw->cfg.stream, fw->cfg.subject,
		    nats_GetLastError(NULL) != NULL ? nats_GetLastError(NULL) :
		    natsStatus_GetText(s));
		return (-1);
	}
	if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) != NATS_OK ||
	    id == NULL || strncmp(id, fw->log_id_hex, 32) != 0 ||
	    id[32] != ':' || (*seq = fwd_msg_seq(m)) < 0) {
		snprintf(why, whylen, "the last message on %s in stream %s "
		    "is not from this log (message id %s, this log's id %s): "
		    "give each log a subject of its own (--subject)",
		    fw->cfg.subject, fw->cfg.stream, id != NULL ? id : "none",
		    fw->log_id_hex);
		natsMsg_Destroy(m);
		return (FWD_EXIT_CONFIG);
	}
	fw->last_sseq = (int64_t)natsMsg_GetSequence(m);
	fw->last_ts_ns = -1;
	if (natsMsgHeader_Get(m, "Walmmap-Timestamp", &id) == NATS_OK &&
	    id != NULL)
		fw->last_ts_ns = strtoll(id, NULL, 10);
	fw->last_len = natsMsg_GetDataLength(m);
	fw->last_hash = fwd_hash(natsMsg_GetData(m),
	    (size_t)natsMsg_GetDataLength(m));
	natsMsg_Destroy(m);
	return (0);
}

/* FNV-1a, 64 bits: is the stream's message the log's record? */
uint64_t
fwd_hash(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t h = 14695981039346656037ULL;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= b[i];
		h *= 1099511628211ULL;
	}
	return (h);
}

/*
 * The stream's messages on our subject after seq floor are exactly
 * floor + 1 .. last, in order: 0. JetStream can refuse message N (a
 * stream limit, no leader during a failover) and still store N + 1 that
 * was already in flight; resuming after last would then leave N out for
 * ever. So walk the stream back from its last message on the subject
 * (fwd_nats_last) down to floor: FWD_EXIT_GAP, with the missing seqs in
 * why, when one is missing or out of place; -1 when the stream could not
 * be asked (try again).
 */
int
fwd_nats_verify(struct fwd *fw, int64_t last, int64_t floor, char *why,
    size_t whylen)
{
	jsStreamInfo *si = NULL;
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	uint64_t sseq, first;
	int64_t expect, seq;
	int deleted = 0;

	if (last <= floor || fw->last_sseq <= 0)
		return (0);
	s = js_GetStreamInfo(&si, fw->js, fw->cfg.stream, NULL, &jerr);
	if (s != NATS_OK)
		goto fail;
	first = si->State.FirstSeq;
	jsStreamInfo_Destroy(si);
	expect = last - 1;
	for (sseq = (uint64_t)fw->last_sseq - 1; expect > floor &&
	    sseq >= first && sseq > 0; sseq--) {
		s = js_GetMsg(&m, fw->js, fw->cfg.stream, sseq, NULL, &jerr);
		if (s == NATS_NOT_FOUND) {
			deleted = 1;	/* removed since: maybe ours */
			continue;
		}
		if (s != NATS_OK)
			goto fail;
		if (strcmp(natsMsg_GetSubject(m), fw->cfg.subject) != 0) {
			natsMsg_Destroy(m);
			continue;
		}
		seq = fwd_msg_seq(m);
		natsMsg_Destroy(m);
		if (seq == expect) {
			expect--;
			deleted = 0;
			continue;
		}
		/*
		 * A refused message takes no stream seq: a hole is between
		 * neighbours in the stream. With a deleted message between
		 * them (a work queue or interest stream, a purge) the missing
		 * ones may have been stored and removed since.
		 */
		if (deleted && seq >= 0 && seq < expect) {
			expect = seq - 1;
			deleted = 0;
			continue;
		}
		if (seq >= 0 && seq < expect)
			snprintf(why, whylen, "stream %s misses records %"
			    PRId64 " .. %" PRId64 " of this log on %s but "
			    "holds later ones (up to %" PRId64 "): JetStream "
			    "refused them but stored what followed (or "
			    "--allow-gap went past them)",
			    fw->cfg.stream, seq + 1, expect, fw->cfg.subject,
			    last);
		else
			snprintf(why, whylen, "stream %s holds seq %" PRId64
			    " of this log on %s at stream seq %" PRIu64
			    " where seq %" PRId64 " was expected",
			    fw->cfg.stream, seq, fw->cfg.subject, sseq, expect);
		return (FWD_EXIT_GAP);
	}
	return (0);
fail:
	snprintf(why, whylen, "cannot read back stream %s to check it holds "
	    "seq %" PRId64 " .. %" PRId64 ": %s", fw->cfg.stream, floor + 1,
	    last, nats_GetLastError(NULL) != NULL ? nats_GetLastError(NULL) :
	    natsStatus_GetText(s));
	return (-1);
}

/*
 * A new epoch after shipped: a fresh JetStream context (acks for the old
 * one are ignored), an empty window.
 */
int
fwd_nats_epoch(struct fwd *fw, int64_t shipped, char *why, size_t whylen)
{
	jsOptions jo;
	jsCtx *js = NULL, *old;
	natsStatus s;
	int i;

	jsOptions_Init(&jo);
	jo.Wait = fw->cfg.ack_wait_ms;
	jo.PublishAsync.MaxPending = fw->cfg.window + 1;
	jo.PublishAsync.AckHandler = fwd_ack_cb;
	jo.PublishAsync.AckHandlerClosure = fw;
	if ((s = natsConnection_JetStream(&js, fw->nc, &jo)) != NATS_OK) {
		snprintf(why, whylen, "JetStream context: %s",
		    natsStatus_GetText(s));
		return (-1);
	}
	fw->max_payload = natsConnection_GetMaxPayload(fw->nc);
	pthread_mutex_lock(&fw->lock);
	old = fw->js;
	fw->js = js;
	for (i = 0; i < fw->cfg.window; i++)
		fw->slots[i].seq = -1;
	fw->acked_seq = shipped;
	fw->sent_seq = shipped;
	fw->rewind = 0;
	pthread_mutex_unlock(&fw->lock);
	if (old != NULL)
		jsCtx_Destroy(old);
	return (0);
}

/*
 * Publish the record with this seq. Waits while the window is full.
 * Returns 0; 1 when the epoch must start again (the caller rewinds) or
 * a stop was asked for;
 * FWD_EXIT_TOO_LARGE for a record the server cannot take.
 */
int
fwd_nats_publish(struct fwd *fw, int64_t seq, int64_t ts_ns,
    const void *data, size_t len, char *why, size_t whylen)
{
	jsPubOptions po;
	natsMsg *m = NULL;
	natsStatus s;
	char id[64], v[32];
	struct fwd_slot *slot;
	struct timespec until;
	int64_t maxp;

	maxp = fw->max_payload;	/* the server's, at the epoch's start */
	/* Headers take about 150 bytes of the payload limit. */
	if (maxp > 0 && (int64_t)len + 160 > maxp) {
		snprintf(why, whylen, "record %" PRId64 " has %zu bytes; the "
		    "NATS server takes at most %" PRId64 " per message "
		    "(max_payload, headers included): raise max_payload in "
		    "its configuration; nothing after seq %" PRId64 " was "
		    "shipped", seq, len, maxp, seq - 1);
		return (FWD_EXIT_TOO_LARGE);
	}
	if (fw->stream_max_msg > 0 && (int64_t)len + 160 >
	    fw->stream_max_msg) {
		snprintf(why, whylen, "record %" PRId64 " has %zu bytes; stream "
		    "%s takes at most %" PRId64 " per message (max_msg_size, "
		    "or max_bytes with discard new; headers included): raise "
		    "it; nothing after seq %" PRId64 " was shipped", seq, len,
		    fw->cfg.stream, fw->stream_max_msg, seq - 1);
		return (FWD_EXIT_TOO_LARGE);
	}
	pthread_mutex_lock(&fw->lock);
	while (!fw->rewind && !fwd_stop && fw->sent_seq - fw->acked_seq >=
	    fw->cfg.window) {
		fw->waiting = 1;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 100 * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&fw->cond, &fw->lock, &until);
		fw->waiting = 0;
	}
	if (fw->rewind || fwd_stop) {
		pthread_mutex_unlock(&fw->lock);
		return (1);
	}
	slot = &fw->slots[seq % fw->cfg.window];
	slot->seq = seq;
	slot->ts_ns = ts_ns;
	slot->acked = 0;
	fw->sent_seq = seq;
	pthread_mutex_unlock(&fw->lock);

	s = natsMsg_Create(&m, fw->cfg.subject, NULL, data, (int)len);
	snprintf(v, sizeof v, "%" PRId64, seq);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Walmmap-Seq", v);
	snprintf(v, sizeof v, "%" PRId64, ts_ns);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Walmmap-Timestamp", v);
	snprintf(id, sizeof id, "%s:%" PRId64, fw->log_id_hex, seq);
	jsPubOptions_Init(&po);
	po.MsgId = id;
	po.MaxWait = fw->cfg.ack_wait_ms;
	if (s == NATS_OK)
		s = js_PublishMsgAsync(fw->js, &m, &po);
	natsMsg_Destroy(m);	/* NULL once the library took it */
	if (s != NATS_OK) {
		fwd_set_error(fw, "publishing seq %" PRId64 ": %s", seq,
		    natsStatus_GetText(s));
		pthread_mutex_lock(&fw->lock);
		fw->rewind = 1;
		pthread_mutex_unlock(&fw->lock);
		return (1);
	}
	pthread_mutex_lock(&fw->lock);
	fw->published++;
	pthread_mutex_unlock(&fw->lock);
	return (0);
}

/* Wait up to timeout_ms for every message in flight to be answered. */
void
fwd_nats_settle(struct fwd *fw, int timeout_ms)
{
	jsPubOptions po;

	if (fw->js == NULL)
		return;
	jsPubOptions_Init(&po);
	po.MaxWait = timeout_ms;
	(void)js_PublishAsyncComplete(fw->js, &po);
}

/* Close and free the NATS side. */
void
fwd_nats_close(struct fwd *fw)
{
	if (fw->js != NULL)
		jsCtx_Destroy(fw->js);
	fw->js = NULL;
	if (fw->nc != NULL) {
		natsConnection_Close(fw->nc);
		natsConnection_Destroy(fw->nc);
	}
	fw->nc = NULL;
	natsOptions_Destroy(fw->opts);
	fw->opts = NULL;
}

/*
 * JetStream answered a publish (libnats thread): mark it stored and move
 * acked_seq over every stored message in order; a failure starts a new
 * epoch. Answers for an earlier epoch's context are ignored.
 */
static void
fwd_ack_cb(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *arg)
{
	struct fwd *fw = arg;
	struct fwd_slot *slot;
	int64_t seq = fwd_msg_seq(m);

	pthread_mutex_lock(&fw->lock);
	if (js == fw->js && seq >= 0) {
		slot = &fw->slots[seq % fw->cfg.window];
		if (pa != NULL && slot->seq == seq) {
			slot->acked = 1;
			if (pa->Duplicate)
				fw->duplicates++;
			for (;;) {
				slot = &fw->slots[(fw->acked_seq + 1) %
				    fw->cfg.window];
				if (slot->seq != fw->acked_seq + 1 ||
				    !slot->acked)
					break;
				fw->acked_seq++;
				fw->acked_ts_ns = slot->ts_ns;
			}
			/*
			 * Wake the publisher once half the window is free,
			 * not at every ack: a wake-up per message costs more
			 * than the message.
			 */
			if (fw->waiting && fw->sent_seq - fw->acked_seq <=
			    fw->cfg.window / 2)
				pthread_cond_broadcast(&fw->cond);
		} else if (pae != NULL) {
			fw->rewind = 1;
			snprintf(fw->error, sizeof fw->error, "JetStream did "
			    "not store seq %" PRId64 ": %s%s%s", seq,
			    natsStatus_GetText(pae->Err), pae->ErrText != NULL ?
			    ": " : "", pae->ErrText != NULL ? pae->ErrText : "");
			pthread_cond_broadcast(&fw->cond);
		}
	}
	pthread_mutex_unlock(&fw->lock);
	natsMsg_Destroy(m);
}

/* The first connection got through (libnats thread). */
static void
fwd_connected_cb(natsConnection *nc, void *arg)
{
	struct fwd *fw = arg;

	(void)nc;
	pthread_mutex_lock(&fw->lock);
	fw->connected = 1;
	pthread_cond_broadcast(&fw->cond);
	pthread_mutex_unlock(&fw->lock);
}

/* Lost the server: what is in flight may be lost, start again. */
static void
fwd_disconnected_cb(natsConnection *nc, void *arg)
{
	struct fwd *fw = arg;

	(void)nc;
	pthread_mutex_lock(&fw->lock);
	if (fw->connected)
		snprintf(fw->error, sizeof fw->error, "disconnected from the "
		    "NATS server");
	fw->connected = 0;
	fw->rewind = 1;
	pthread_cond_broadcast(&fw->cond);
	pthread_mutex_unlock(&fw->lock);
}

/* Connected again (libnats thread). */
static void
fwd_reconnected_cb(natsConnection *nc, void *arg)
{
	struct fwd *fw = arg;

	(void)nc;
	pthread_mutex_lock(&fw->lock);
	fw->connected = 1;
	fw->rewind = 1;
	pthread_cond_broadcast(&fw->cond);
	pthread_mutex_unlock(&fw->lock);
}

/* An asynchronous error (libnats thread): kept for the status. */
static void
fwd_error_cb(natsConnection *nc, natsSubscription *sub, natsStatus err,
    void *arg)
{
	struct fwd *fw = arg;
	const char *text = NULL;

	(void)sub;
	if (natsConnection_GetLastError(nc, &text) == NATS_OK || text == NULL)
		text = natsStatus_GetText(err);
	pthread_mutex_lock(&fw->lock);
	snprintf(fw->nats_error, sizeof fw->nats_error, "%s", text);
	pthread_mutex_unlock(&fw->lock);
}

/*
 * Why no server takes us: one connection attempt of our own, without
 * retries (the retrying connection says only that none was available).
 */
void
fwd_nats_probe(struct fwd *fw, char *buf, size_t len)
{
	natsOptions *o = NULL;
	natsConnection *nc = NULL;
	natsStatus s;
	const char *text;

	buf[0] = '\0';
	if (fwd_nats_opts(fw, &o, 1) != NATS_OK)
		return;
	s = natsConnection_Connect(&nc, o);
	if (s == NATS_OK)
		natsConnection_Destroy(nc);
	else {
		text = nats_GetLastError(NULL);
		/* Without libnats's "(file.c:line): " prefix. */
		if (text != NULL && text[0] == '(' && strstr(text, "): ") !=
		    NULL)
			text = strstr(text, "): ") + 3;
		snprintf(buf, len, "%s", text != NULL ? text :
		    natsStatus_GetText(s));
	}
	natsOptions_Destroy(o);
}
