/*
 * walmmapd - metrics: the daemon's counters and gauges as Prometheus text
 * exposition (format 0.0.4), rendered in one place (metrics_render) and
 * served two ways: METRICS_REPLY frames on the socket (walctl stats
 * --prometheus) and, when metrics_listen is set, GET /metrics over HTTP
 * with libevent's evhttp on the daemon's own event loop.
 *
 * Runs on the event-loop thread. Rendering reads what the loop owns, the
 * ring's atomics and the sync thread's results (under its lock); it never
 * touches the append path. The counters it renders are bumped where the
 * work happens (see metrics.h).
 */
#include "config.h"

#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "forward.h"
#include "log.h"
#include "server.h"
#include "wal_ring.h"

/* Idle or slow HTTP clients are dropped after this many seconds. */
#define METRICS_HTTP_TIMEOUT_S	10
#define METRICS_HTTP_BACKLOG	16
/*
 * At most this many HTTP connections at a time: each holds a descriptor,
 * and a peer that trickles a byte now and then is never idle, so without
 * a cap HTTP peers could take every descriptor the log needs.
 */
#define METRICS_HTTP_MAX_CONNS	64
/*
 * A connection is dropped this many seconds after it was accepted, busy
 * or not (a Prometheus scrape takes well under a second): peers that
 * trickle cannot hold the connections for ever and lock scrapers out.
 */
#define METRICS_HTTP_LIFETIME_S	30
#define METRICS_CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"

/* Environment: the largest METRICS_REPLY frame (tests use a small one). */
#define METRICS_FRAME_ENV	"WALMMAPD_METRICS_FRAME"
#define METRICS_FRAME_MIN	256

/* 25 us .. 10 s: an fdatasync on NVMe takes tens of us, on a disk ms. */
const uint64_t metrics_sync_bounds_ns[METRICS_SYNC_BUCKETS] = {
	25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000, 25000000, 50000000,
	100000000, 250000000, 500000000,
	1000000000, 2500000000u, 5000000000u, 10000000000u,
};

/* The code label of each WAL_PERR_* (wal_proto.h), "" if none. */
static const char *const metrics_perr_label[] = {
	[WAL_PERR_PROTO] = "proto",
	[WAL_PERR_VERSION] = "version",
	[WAL_PERR_TOO_LARGE] = "too_large",
	[WAL_PERR_NOSPC] = "nospc",
	[WAL_PERR_IO] = "io",
	[WAL_PERR_PERM] = "perm",
	[WAL_PERR_BUSY] = "busy",
	[WAL_PERR_BADFD] = "badfd",
	[WAL_PERR_SHUTDOWN] = "shutdown",
	[WAL_PERR_UNSUPPORTED] = "unsupported",
	[WAL_PERR_SYNC] = "sync",
	[WAL_PERR_LAGGING] = "lagging",
	[WAL_PERR_TIMEOUT] = "timeout",
	[WAL_PERR_PRODUCER] = "producer",
	[WAL_PERR_PSEQ] = "pseq",
	[WAL_PERR_GAP] = "gap",
};
#define METRICS_NPERR \
	(sizeof metrics_perr_label / sizeof metrics_perr_label[0])
_Static_assert(METRICS_NPERR <= METRICS_PERR_MAX, "METRICS_PERR_MAX");

static const char *const metrics_refusal_label[METRICS_REFUSE_N] = {
	[METRICS_REFUSE_ALLOW] = "allow_list",
	[METRICS_REFUSE_MAX_CONN] = "max_connections",
	[METRICS_REFUSE_MAX_CONN_UID] = "max_connections_per_uid",
};

static const char *const metrics_ack_label[3] = {
	[WAL_ACK_NONE] = "none",
	[WAL_ACK_WRITTEN] = "written",
	[WAL_ACK_DURABLE] = "durable",
};

/*
 * The server metrics_listen serves (evhttp hands the listener's error
 * callback its own pointer, not ours), and whether rendering ran out of
 * memory.
 */
static struct server	*metrics_http_srv;
static int		 metrics_oom;

static int	metrics_may_read(const struct conn *);
static void	metrics_family(struct evbuffer *, const char *name,
		    const char *type, const char *help);
static void	metrics_u64(struct evbuffer *, const char *name,
		    const char *labels, uint64_t);
static void	metrics_i64(struct evbuffer *, const char *name,
		    const char *labels, int64_t);
static void	metrics_counter(struct evbuffer *, const char *name,
		    const char *help, uint64_t);
static void	metrics_gauge(struct evbuffer *, const char *name,
		    const char *help, int64_t);
static void	metrics_forwarders(struct server *, struct evbuffer *);
static void	metrics_sync_histogram(struct evbuffer *,
		    const struct metrics_hist *);
static void	metrics_http_cb(struct evhttp_request *, void *);
static void	metrics_http_other_cb(struct evhttp_request *, void *);
static void	metrics_http_error_cb(struct evconnlistener *, void *);
static void	metrics_http_resume_cb(int, short, void *);
static struct bufferevent *metrics_http_bev_cb(struct event_base *, void *);
static void	metrics_http_sweep(struct srv_metrics *);

/* The connections evhttp serves (a reference each; see bev_cb). */
static struct bufferevent *metrics_http_conns[METRICS_HTTP_MAX_CONNS];
static time_t	metrics_http_since[METRICS_HTTP_MAX_CONNS];	/* accepted */
static size_t	metrics_http_nconns;

static time_t	metrics_http_now(void);

/* Read the tunables (before the loop runs). */
void
metrics_init(struct server *srv)
{
	const char *e = getenv(METRICS_FRAME_ENV);
	char *end;
	unsigned long v;

	srv->metrics.frame_max = WAL_PROTO_MAX_FRAME;
	if (e == NULL || *e == '\0')
		return;
	errno = 0;
	v = strtoul(e, &end, 10);
	if (errno != 0 || *end != '\0' || v < METRICS_FRAME_MIN ||
	    v > WAL_PROTO_MAX_FRAME) {
		log_warnx("%s=%s is not a frame size from %d to %u; using %u",
		    METRICS_FRAME_ENV, e, METRICS_FRAME_MIN,
		    WAL_PROTO_MAX_FRAME, WAL_PROTO_MAX_FRAME);
		return;
	}
	srv->metrics.frame_max = v;
}

/* An ERROR frame with this code is being sent. */
void
metrics_error_sent(struct server *srv, unsigned code)
{
	srv->metrics.errors_sent[code < METRICS_PERR_MAX ? code : 0]++;
}

/*
 * METRICS: the text in METRICS_REPLY frames of at most frame_max bytes,
 * cut at line ends where a line fits, WAL_METRICS_F_MORE on all but the
 * last (wal_proto.h).
 */
void
metrics_request(struct conn *c, uint64_t id)
{
	struct server *srv = c->srv;
	const size_t room = srv->metrics.frame_max - sizeof(struct wal_msg);
	struct evbuffer *b;
	struct wal_msg h;
	const char *text, *nl;
	size_t len, off = 0, n;

	/* The one place that decides who may read the metrics. */
	if (!metrics_may_read(c)) {
		conn_error(c, id, WAL_PERR_PERM, 0, "reading the metrics is "
		    "not allowed to uid %ld", (long)c->uid);
		return;
	}
	if ((b = evbuffer_new()) == NULL || metrics_render(srv, b) != 0 ||
	    (text = (const char *)evbuffer_pullup(b, -1)) == NULL) {
		conn_error(c, id, WAL_PERR_IO, 0, "cannot render the metrics: "
		    "out of memory");
		if (b != NULL)
			evbuffer_free(b);
		return;
	}
	len = evbuffer_get_length(b);
	do {
		n = len - off < room ? len - off : room;
		if (off + n < len && (nl = memrchr(text + off, '\n', n)) !=
		    NULL)
			n = (size_t)(nl - (text + off)) + 1;
		memset(&h, 0, sizeof h);
		h.type = WAL_MSG_METRICS_REPLY;
		h.flags = off + n < len ? WAL_METRICS_F_MORE : 0;
		h.len = (uint32_t)(sizeof h + n);
		h.id = id;
		memcpy(srv->txbuf, &h, sizeof h);
		memcpy(srv->txbuf + sizeof h, text + off, n);
		if (conn_queue_fds(c, srv->txbuf, h.len, NULL, 0) != 0)
			break;		/* the connection is closing */
		off += n;
	} while (off < len);
	evbuffer_free(b);
}

/*
 * May this client read the metrics? Every client the allow-list admitted
 * may, as it may read STATUS. The read/write/admin rights (issue #17)
 * decide here once they exist: this is the only check on the socket.
 */
static int
metrics_may_read(const struct conn *c)
{
	(void)c;
	return (1);
}

/* Render every family into b. */
int
metrics_render(struct server *srv, struct evbuffer *b)
{
	struct srv_metrics *m = &srv->metrics;
	struct wal_status st;
	struct wal_ring_stats rs;
	struct metrics_hist lat;
	struct conn *c;
	uint64_t subscribers = 0, other = 0;
	char label[96];
	size_t i;

	metrics_oom = 0;
	srv_status(srv, &st);
	wal_ring_stats(srv->ring, &rs);
	syncer_latency(srv->syncer, &lat);
	TAILQ_FOREACH(c, &srv->conns, entry)
		if (c->sub != NULL)
			subscribers++;

	metrics_family(b, "walmmapd_build_info", "gauge", "Always 1; the "
	    "version label says which walmmapd and protocol runs.");
	snprintf(label, sizeof label, "version=\"%s\",protocol=\"%d\"",
	    PACKAGE_VERSION, WAL_PROTO_VERSION);
	metrics_u64(b, "walmmapd_build_info", label, 1);
	metrics_gauge(b, "walmmapd_start_time_seconds", "When the daemon "
	    "started, in seconds since the epoch.", (int64_t)srv->started);
	metrics_gauge(b, "walmmapd_uptime_seconds", "Seconds since the daemon "
	    "started.", (int64_t)st.uptime_s);

	/* Appends. */
	metrics_counter(b, "walmmapd_records_total", "Records appended since "
	    "the daemon started (socket and shared-memory rings).",
	    st.records);
	metrics_counter(b, "walmmapd_record_bytes_total", "Payload bytes of "
	    "the records appended since the daemon started.", st.bytes);
	metrics_family(b, "walmmapd_append_records_total", "counter",
	    "Records appended, by the acknowledgement level the client asked "
	    "for (shared-memory ring records count as written or durable).");
	for (i = 0; i < 3; i++) {
		snprintf(label, sizeof label, "ack=\"%s\"",
		    metrics_ack_label[i]);
		metrics_u64(b, "walmmapd_append_records_total", label,
		    m->append_records[i]);
	}
	metrics_counter(b, "walmmapd_frames_total", "Frames received from "
	    "clients.", st.frames);

	/* Positions in the log. */
	metrics_gauge(b, "walmmapd_next_seq", "The seq the next record will "
	    "get.", st.next_seq);
	metrics_gauge(b, "walmmapd_written_seq", "The last seq written "
	    "(survives kill -9); -1 if none.", st.written_seq);
	metrics_gauge(b, "walmmapd_durable_seq", "The last seq on stable "
	    "storage (survives a power cut); -1 if none.", st.durable_seq);
	metrics_gauge(b, "walmmapd_first_seq", "The oldest seq still on disk; "
	    "-1 if none.", st.first_seq);

	/* Syncs. */
	metrics_counter(b, "walmmapd_syncs_total", "Group commits that synced "
	    "records.", st.syncs);
	metrics_sync_histogram(b, &lat);
	metrics_gauge(b, "walmmapd_sync_failed", "1 once a sync failed: "
	    "nothing more becomes durable and the daemon stops.",
	    srv->sync_failed ? 1 : 0);

	/* Segments. */
	metrics_counter(b, "walmmapd_rotations_total", "Segments sealed and "
	    "replaced by the next one.", rs.rotations);
	metrics_counter(b, "walmmapd_rotations_without_standby_total",
	    "Rotations that found no standby segment ready and created one "
	    "while appends waited.", rs.rotations_waited);
	metrics_gauge(b, "walmmapd_standby_segments", "Pre-allocated segments "
	    "ready for the next rotation.", (int64_t)rs.standby);
	metrics_counter(b, "walmmapd_segments_created_total", "Segment files "
	    "created.", rs.segments_created);
	metrics_counter(b, "walmmapd_segment_create_failures_total",
	    "Segment files that could not be created (disk full, I/O error).",
	    rs.create_failures);
	metrics_counter(b, "walmmapd_segments_removed_total", "Segment files "
	    "removed by retention.", srv->segments_removed);
	metrics_gauge(b, "walmmapd_segments", "Segment files in the data "
	    "directory.", (int64_t)st.segments);
	metrics_gauge(b, "walmmapd_segments_bytes", "Total size of the segment "
	    "files in the data directory.", (int64_t)st.disk_bytes);
	metrics_gauge(b, "walmmapd_segment_size_bytes", "Size of each segment "
	    "file.", (int64_t)st.segment_size);

	/* Clients. */
	metrics_gauge(b, "walmmapd_clients", "Clients connected now.",
	    (int64_t)st.clients);
	metrics_counter(b, "walmmapd_clients_accepted_total", "Connections "
	    "accepted since the daemon started.", st.clients_total);
	metrics_family(b, "walmmapd_connections_refused_total", "counter",
	    "Connections refused before they were served, by reason.");
	for (i = 0; i < METRICS_REFUSE_N; i++) {
		snprintf(label, sizeof label, "reason=\"%s\"",
		    metrics_refusal_label[i]);
		metrics_u64(b, "walmmapd_connections_refused_total", label,
		    m->refused[i]);
	}
	metrics_family(b, "walmmapd_errors_sent_total", "counter", "ERROR "
	    "frames sent to clients, by protocol error code (refusals, "
	    "failed appends, dropped clients).");
	for (i = 1; i < METRICS_PERR_MAX; i++) {
		if (i < METRICS_NPERR && metrics_perr_label[i] != NULL)
			snprintf(label, sizeof label, "code=\"%s\"",
			    metrics_perr_label[i]);
		else if (m->errors_sent[i] > 0)
			snprintf(label, sizeof label, "code=\"%zu\"", i);
		else
			continue;
		metrics_u64(b, "walmmapd_errors_sent_total", label,
		    m->errors_sent[i]);
	}
	other = m->errors_sent[0];
	if (other > 0)
		metrics_u64(b, "walmmapd_errors_sent_total", "code=\"other\"",
		    other);
	metrics_gauge(b, "walmmapd_subscribers", "Clients reading the log "
	    "through the daemon (walctl tail).", (int64_t)subscribers);
	metrics_gauge(b, "walmmapd_shm_rings", "Shared-memory rings open.",
	    (int64_t)srv->nshms);
	metrics_gauge(b, "walmmapd_shm_ring_bytes", "Memory of the "
	    "shared-memory rings open.", (int64_t)srv->shm_bytes);
	metrics_gauge(b, "walmmapd_reply_queue_bytes", "Memory held by the "
	    "queues of replies to clients.",
	    (int64_t)srv->outq_total);
	metrics_counter(b, "walmmapd_metrics_http_requests_total", "Requests "
	    "answered on metrics_listen.", m->http_requests);

	metrics_forwarders(srv, b);
	return (metrics_oom ? -1 : 0);
}

/*
 * One series per forwarder the daemon knows (walmmap-forward), labelled
 * forwarder="NAME"; names are [A-Za-z0-9_.-], so no escaping is needed.
 */
static void
metrics_forwarders(struct server *srv, struct evbuffer *b)
{
	static const struct {
		const char	*name;
		const char	*type;
		const char	*help;
	} fam[] = {
		{ "walmmapd_forwarder_shipped_seq", "gauge", "Last seq the "
		    "forwarder's destination acknowledged (-1: none)." },
		{ "walmmapd_forwarder_lag_records", "gauge", "Written records "
		    "the forwarder has not shipped." },
		{ "walmmapd_forwarder_lag_seconds", "gauge", "Age of the last "
		    "shipped record while records wait (0 when caught up)." },
		{ "walmmapd_forwarder_gap_records_total", "counter", "Records "
		    "retention removed before the forwarder shipped them." },
		{ "walmmapd_forwarder_attached", "gauge", "1 while the "
		    "forwarder is registered on a connection." },
		{ "walmmapd_forwarder_connected", "gauge", "1 while the "
		    "forwarder reports it reaches its destination." },
	};
	struct fwd_info fi[WAL_STATUS_FWD_MAX];
	char label[64];
	size_t n, i, f;

	n = fwd_list(srv, fi, WAL_STATUS_FWD_MAX);
	if (n == 0)
		return;
	for (f = 0; f < sizeof fam / sizeof fam[0]; f++) {
		metrics_family(b, fam[f].name, fam[f].type, fam[f].help);
		for (i = 0; i < n; i++) {
			snprintf(label, sizeof label, "forwarder=\"%s\"",
			    fi[i].name);
			switch (f) {
			case 0:
				metrics_i64(b, fam[f].name, label,
				    fi[i].shipped_seq);
				break;
			case 1:
				metrics_i64(b, fam[f].name, label,
				    fi[i].lag_records);
				break;
			case 2:
				if (evbuffer_add_printf(b, "%s{%s} %.3f\n",
				    fam[f].name, label, fi[i].lag_ns / 1e9) < 0)
					metrics_oom = 1;
				break;
			case 3:
				metrics_u64(b, fam[f].name, label,
				    fi[i].gap_records);
				break;
			case 4:
				metrics_u64(b, fam[f].name, label,
				    (uint64_t)fi[i].attached);
				break;
			default:
				metrics_u64(b, fam[f].name, label,
				    (uint64_t)fi[i].connected);
				break;
			}
		}
	}
}

/* "# HELP" and "# TYPE" of a family. */
static void
metrics_family(struct evbuffer *b, const char *name, const char *type,
    const char *help)
{
	if (evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name,
	    help, name, type) < 0)
		metrics_oom = 1;
}

/* One sample: name{labels} value. */
static void
metrics_u64(struct evbuffer *b, const char *name, const char *labels,
    uint64_t v)
{
	int rc;

	if (labels != NULL)
		rc = evbuffer_add_printf(b, "%s{%s} %" PRIu64 "\n", name,
		    labels, v);
	else
		rc = evbuffer_add_printf(b, "%s %" PRIu64 "\n", name, v);
	if (rc < 0)
		metrics_oom = 1;
}

/* One sample of a value that may be negative (a seq of -1: none). */
static void
metrics_i64(struct evbuffer *b, const char *name, const char *labels,
    int64_t v)
{
	int rc;

	if (labels != NULL)
		rc = evbuffer_add_printf(b, "%s{%s} %" PRId64 "\n", name,
		    labels, v);
	else
		rc = evbuffer_add_printf(b, "%s %" PRId64 "\n", name, v);
	if (rc < 0)
		metrics_oom = 1;
}

/* A family of one unlabelled counter. */
static void
metrics_counter(struct evbuffer *b, const char *name, const char *help,
    uint64_t v)
{
	metrics_family(b, name, "counter", help);
	metrics_u64(b, name, NULL, v);
}

/* A family of one unlabelled gauge. */
static void
metrics_gauge(struct evbuffer *b, const char *name, const char *help,
    int64_t v)
{
	metrics_family(b, name, "gauge", help);
	metrics_i64(b, name, NULL, v);
}

/* walmmapd_sync_duration_seconds: cumulative buckets, sum, count. */
static void
metrics_sync_histogram(struct evbuffer *b, const struct metrics_hist *h)
{
	static const char *name = "walmmapd_sync_duration_seconds";
	uint64_t cum = 0;
	size_t i;
	int rc;

	metrics_family(b, name, "histogram", "Time a group commit took to "
	    "sync the records waiting for it (fdatasync/msync).");
	for (i = 0; i <= METRICS_SYNC_BUCKETS; i++) {
		cum += h->bucket[i];
		if (i < METRICS_SYNC_BUCKETS)
			rc = evbuffer_add_printf(b, "%s_bucket{le=\"%g\"} %"
			    PRIu64 "\n", name, metrics_sync_bounds_ns[i] / 1e9,
			    cum);
		else
			rc = evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %"
			    PRIu64 "\n", name, cum);
		if (rc < 0)
			metrics_oom = 1;
	}
	if (evbuffer_add_printf(b, "%s_sum %.9f\n%s_count %" PRIu64 "\n",
	    name, h->sum_ns / 1e9, name, h->count) < 0)
		metrics_oom = 1;
}

/*
 * metrics_listen: an evhttp server on the loop, on a listener we make
 * (so that running out of descriptors backs off instead of spinning).
 */
int
metrics_http_start(struct server *srv)
{
	struct srv_metrics *m = &srv->metrics;
	struct sockaddr_storage ss;
	int sslen = sizeof ss, e;

	if (srv->cfg.metrics_listen == NULL)
		return (0);
	metrics_http_srv = srv;
	memset(&ss, 0, sizeof ss);
	if (evutil_parse_sockaddr_port(srv->cfg.metrics_listen,
	    (struct sockaddr *)&ss, &sslen) != 0) {
		log_errx("metrics_listen: \"%s\" is not address:port",
		    srv->cfg.metrics_listen);
		return (-1);
	}
	if ((m->http = evhttp_new(srv->base)) == NULL ||
	    (m->ev_http_resume = evtimer_new(srv->base,
	    metrics_http_resume_cb, srv)) == NULL) {
		log_errx("metrics_listen: cannot set up the HTTP server: out "
		    "of memory");
		return (-1);
	}
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(m->http, METRICS_HTTP_TIMEOUT_S);
	evhttp_set_max_headers_size(m->http, 8192);
	evhttp_set_max_body_size(m->http, 0);
	evhttp_set_cb(m->http, "/metrics", metrics_http_cb, srv);
	evhttp_set_gencb(m->http, metrics_http_other_cb, srv);
	evhttp_set_bevcb(m->http, metrics_http_bev_cb, srv);
	m->http_listener = evconnlistener_new_bind(srv->base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
	    METRICS_HTTP_BACKLOG, (struct sockaddr *)&ss, sslen);
	if (m->http_listener == NULL) {
		e = errno;
		log_errx("metrics_listen: cannot listen on %s: %s%s",
		    srv->cfg.metrics_listen, strerror(e), e == EAFNOSUPPORT ||
		    e == EPERM || e == EACCES ? " (under walmmapd.service the "
		    "unit must allow it: RestrictAddressFamilies=AF_INET "
		    "AF_INET6, no PrivateNetwork=; see walmmapd.conf(5))" : "");
		return (-1);
	}
	evconnlistener_set_error_cb(m->http_listener, metrics_http_error_cb);
	if (evhttp_bind_listener(m->http, m->http_listener) == NULL) {
		log_errx("metrics_listen: cannot serve HTTP on %s: out of "
		    "memory", srv->cfg.metrics_listen);
		evconnlistener_free(m->http_listener);
		m->http_listener = NULL;
		return (-1);
	}
	log_info("metrics on http://%s/metrics", srv->cfg.metrics_listen);
	return (0);
}

/* Close the HTTP server and its connections (the listener with it). */
void
metrics_http_stop(struct server *srv)
{
	struct srv_metrics *m = &srv->metrics;

	if (m->http != NULL)
		evhttp_free(m->http);
	metrics_http_sweep(m);
	while (metrics_http_nconns > 0)		/* none left after evhttp_free */
		bufferevent_decref(metrics_http_conns[--metrics_http_nconns]);
	if (m->ev_http_resume != NULL)
		event_free(m->ev_http_resume);
	m->http = NULL;
	m->http_listener = NULL;
	m->ev_http_resume = NULL;
}

/* GET or HEAD /metrics. */
static void
metrics_http_cb(struct evhttp_request *req, void *arg)
{
	struct server *srv = arg;
	struct evbuffer *b;

	srv->metrics.http_requests++;	/* this one included */
	if ((b = evbuffer_new()) == NULL || metrics_render(srv, b) != 0) {
		evhttp_send_error(req, HTTP_INTERNAL, "cannot render the "
		    "metrics: out of memory");
		if (b != NULL)
			evbuffer_free(b);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", METRICS_CONTENT_TYPE);
	/* libevent 2.1 would send the body to HEAD too: the length only. */
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		char clen[32];

		snprintf(clen, sizeof clen, "%zu", evbuffer_get_length(b));
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Length", clen);
		evhttp_send_reply(req, HTTP_OK, "OK", NULL);
	} else
		evhttp_send_reply(req, HTTP_OK, "OK", b);
	evbuffer_free(b);
}

/* Anything but /metrics. */
static void
metrics_http_other_cb(struct evhttp_request *req, void *arg)
{
	(void)arg;
	evhttp_send_error(req, HTTP_NOTFOUND, "walmmapd serves only "
	    "/metrics");
}

/* accept() failed: out of descriptors is a state, back off a second. */
static void
metrics_http_error_cb(struct evconnlistener *l, void *arg)
{
	static const struct timeval one = { 1, 0 };
	struct server *srv = metrics_http_srv;
	int e = EVUTIL_SOCKET_ERROR();

	(void)arg;		/* evhttp's, not ours */
	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		log_warnx("metrics_listen: cannot accept: %s; not accepting "
		    "for a second", strerror(e));
		evconnlistener_disable(l);
		evtimer_add(srv->metrics.ev_http_resume, &one);
		return;
	}
	log_warnx("metrics_listen: cannot accept: %s", strerror(e));
}

/*
 * Once a second while connections are open, and after a second of
 * back-off: let go of the closed ones, accept again below the cap.
 */
static void
metrics_http_resume_cb(int fd, short ev, void *arg)
{
	static const struct timeval one = { 1, 0 };
	struct server *srv = arg;
	struct srv_metrics *m = &srv->metrics;

	bufferevent_data_cb rd, wr;
	bufferevent_event_cb evcb;
	time_t now = metrics_http_now();
	size_t i;

	(void)fd;
	(void)ev;
	/*
	 * Past its lifetime: the event a read timeout raises, so evhttp
	 * drops the connection on its own path for idle ones.
	 */
	for (i = 0; i < metrics_http_nconns; i++) {
		if (now - metrics_http_since[i] < METRICS_HTTP_LIFETIME_S)
			continue;
		bufferevent_getcb(metrics_http_conns[i], &rd, &wr, &evcb, NULL);
		if (evcb != NULL)
			bufferevent_trigger_event(metrics_http_conns[i],
			    BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0);
	}
	metrics_http_sweep(m);
	if (m->http_listener != NULL &&
	    metrics_http_nconns < METRICS_HTTP_MAX_CONNS)
		evconnlistener_enable(m->http_listener);
	if (metrics_http_nconns > 0)
		evtimer_add(m->ev_http_resume, &one);
}

/*
 * evhttp's bufferevent for a connection it accepted. We make it (as evhttp
 * would) and keep a reference, to learn when evhttp has freed it: libevent
 * 2.1 has no cap on connections nor a hook when one closes. At the cap the
 * listener stops accepting (peers wait in the backlog) until one closes.
 */
static struct bufferevent *
metrics_http_bev_cb(struct event_base *base, void *arg)
{
	static const struct timeval one = { 1, 0 };
	struct server *srv = arg;
	struct srv_metrics *m = &srv->metrics;
	struct bufferevent *bev;

	metrics_http_sweep(m);
	if ((bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) ==
	    NULL || metrics_http_nconns == METRICS_HTTP_MAX_CONNS)
		return (bev);	/* not reached: stopped accepting at the cap */
	bufferevent_incref(bev);
	metrics_http_since[metrics_http_nconns] = metrics_http_now();
	metrics_http_conns[metrics_http_nconns++] = bev;
	if (metrics_http_nconns == METRICS_HTTP_MAX_CONNS) {
		log_warnx("metrics_listen: %d HTTP connections open; not "
		    "accepting more until one closes", METRICS_HTTP_MAX_CONNS);
		evconnlistener_disable(m->http_listener);
	}
	if (!evtimer_pending(m->ev_http_resume, NULL))
		evtimer_add(m->ev_http_resume, &one);
	return (bev);
}

/*
 * Drop our reference to the connections evhttp has freed (that also
 * closes their sockets): bufferevent_free() clears the callbacks evhttp
 * set when it made the connection, and evhttp never clears them itself on
 * a connection it serves.
 */
static void
metrics_http_sweep(struct srv_metrics *m)
{
	bufferevent_data_cb rd, wr;
	bufferevent_event_cb evcb;
	size_t i = 0;

	(void)m;
	while (i < metrics_http_nconns) {
		bufferevent_getcb(metrics_http_conns[i], &rd, &wr, &evcb,
		    NULL);
		if (rd != NULL || wr != NULL || evcb != NULL) {
			i++;
			continue;
		}
		bufferevent_decref(metrics_http_conns[i]);
		metrics_http_nconns--;
		metrics_http_conns[i] = metrics_http_conns[metrics_http_nconns];
		metrics_http_since[i] = metrics_http_since[metrics_http_nconns];
	}
}

/* Monotonic seconds, for connection lifetimes. */
static time_t
metrics_http_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec);
}
