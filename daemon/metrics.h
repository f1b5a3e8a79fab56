/*
 * walmmapd - the counters the daemon keeps for its metrics (metrics.c
 * renders them as Prometheus text exposition).
 *
 * Every field belongs to the event-loop thread unless it says otherwise,
 * and is bumped where the work already happens (once per frame, per read
 * pass or per drained batch of a ring): no lock and no system call on the
 * append path.
 */
#ifndef METRICS_H
#define METRICS_H

#include <stdint.h>

struct conn;
struct event;
struct evbuffer;
struct evconnlistener;
struct evhttp;
struct server;

/* Upper bounds of the sync latency histogram's buckets (ns), then +Inf. */
#define METRICS_SYNC_BUCKETS	18
extern const uint64_t metrics_sync_bounds_ns[METRICS_SYNC_BUCKETS];

/* A latency histogram: counts per bucket (not cumulative), sum, count. */
struct metrics_hist {
	uint64_t	bucket[METRICS_SYNC_BUCKETS + 1];	/* last: +Inf */
	uint64_t	sum_ns;
	uint64_t	count;
};

/* Why a connection was refused before it was served. */
enum metrics_refusal {
	METRICS_REFUSE_ALLOW,		/* not on allow_users/allow_groups */
	METRICS_REFUSE_MAX_CONN,	/* max_connections */
	METRICS_REFUSE_MAX_CONN_UID,	/* max_connections_per_uid */
	METRICS_REFUSE_N
};

/* ERROR frames are counted by WAL_PERR code up to this (above: 0). */
#define METRICS_PERR_MAX	32

struct srv_metrics {
	uint64_t	append_records[3];	/* by ack level asked:
						   none, written, durable */
	uint64_t	errors_sent[METRICS_PERR_MAX];	/* by WAL_PERR code */
	uint64_t	refused[METRICS_REFUSE_N];
	uint64_t	http_requests;		/* served on metrics_listen */
	size_t		frame_max;		/* METRICS_REPLY frame bytes */
	struct evhttp	*http;			/* metrics_listen, or NULL */
	struct evconnlistener *http_listener;
	struct event	*ev_http_resume;	/* accept back-off (EMFILE) */
};

/* Read the tunables (before the loop runs). */
void	metrics_init(struct server *);

/* The whole text exposition into buf. 0, or -1 out of memory. */
int	metrics_render(struct server *, struct evbuffer *buf);

/* METRICS: answer with METRICS_REPLY frames. */
void	metrics_request(struct conn *, uint64_t id);

/* An ERROR frame with this code is being sent (any connection). */
void	metrics_error_sent(struct server *, unsigned code);

/* metrics_listen: serve /metrics over HTTP. 0, or -1 (logged). */
int	metrics_http_start(struct server *);
void	metrics_http_stop(struct server *);

#endif /* METRICS_H */
