/*
 * walmmapd - the daemon's state and the functions its modules share.
 *
 * Threads: everything here belongs to the event-loop thread, which is also
 * the ring's writer, unless a field says otherwise. The sync thread
 * (syncer.c) and the ring's own segment thread touch only what their
 * comments name.
 */
#ifndef SERVER_H
#define SERVER_H

#include <sys/queue.h>
#include <sys/types.h>

#include <stdint.h>
#include <time.h>

#ifndef TAILQ_FOREACH_SAFE	/* BSD has it, glibc does not */
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);	\
	    (var) = (tvar))
#endif

#include "closer.h"
#include "metrics.h"
#include "srvconf.h"
#include "wal_format.h"
#include "wal_proto.h"

struct event;
struct event_base;
struct fwd;
struct fwd_table;
struct shm_ring;
struct wal_reader;
struct wal_ring;
struct wal_ptab;
struct syncer;

/* Outgoing frames, kept whole: [len][nfds][fds...][frame]... */
struct outq {
	uint8_t		*buf;
	size_t		 head;		/* first unsent byte */
	size_t		 tail;		/* end of queued bytes */
	size_t		 cap;
	size_t		 frames;	/* frames queued */
	uint64_t	*total;		/* adds cap here (all queues), or NULL */
};

/* One SYNC request waiting for durability. */
struct sync_wait {
	uint64_t	id;
	int64_t		target;		/* durable_seq must reach this */
};

#define CONN_MAX_SYNC_WAITS	64

/* Why a connection is parked: a frame waits for its turn (see conn.c). */
enum conn_park {
	CONN_PARK_NONE,
	CONN_PARK_ROTATE,	/* ROTATE waiting for the next rotation */
	CONN_PARK_APPEND_FD,	/* large APPEND_FD waiting in srv->parked */
};

/*
 * What STATUS reports about the data directory, from one scan of it (see
 * srv_status): kept while nothing that changes it happened, at most
 * SRV_DIRSTAT_MS.
 */
struct srv_dirstat {
	int		 valid;
	uint64_t	 segments;
	uint64_t	 disk_bytes;
	int64_t		 first_seq;
	int64_t		 when_ms;	/* monotonic */
	uint64_t	 created;	/* segments created then */
	uint64_t	 removed;	/* removed by retention then */
	int64_t		 next_seq;	/* the ring's then */
};

struct conn {
	struct server		*srv;
	int			 fd;
	struct event		*ev_read;
	struct event		*ev_write;
	pid_t			 pid;
	uid_t			 uid;
	gid_t			 gid;
	int			 hello_done;
	uint32_t		 version;	/* agreed protocol version */
	uint8_t			 ack;		/* connection default level */
	int			 read_paused;	/* out queue over the cap */
	int			 closing;	/* close once the queue drains */
	int64_t			 since;		/* connected (monotonic ms) */
	int64_t			 last_active;	/* last read pass (ms) */
	int64_t			 closing_since;	/* (ms) */
	uint64_t		 active_records; /* records at the last check */

	struct outq		 out;
	struct wal_ack_entry	*acks;		/* coalesced in one read pass */
	size_t			 nacks;
	int			 acks_held;	/* until the durable sync */
	size_t			 acks_cap;

	int64_t			 durable_want;	/* -1: no durable ack owed */
	int64_t			 durable_low;	/* first not yet reported */
	int			 durable_expected; /* acked last sync, not back */
	struct sync_wait	 syncs[CONN_MAX_SYNC_WAITS];
	size_t			 nsyncs;
	/*
	 * Parked: one frame waits for its turn and nothing more is read
	 * until it is handled, so replies keep the order of the requests.
	 */
	int			 fd_wait;	/* not read: closer_room() */
	int			 fwd_wait;	/* not read: forward_hold_block */
	enum conn_park		 parked;
	uint64_t		 park_id;	/* the ROTATE's id */
	struct wal_msg_append_fd park_af;	/* the APPEND_FD ... */
	int			 park_fd;	/* ... and its memfd */
	TAILQ_ENTRY(conn)	 park_entry;	/* srv->parked */

	/* Subscription (walctl tail). */
	struct wal_reader	*sub;
	int64_t			 sub_to;	/* last seq wanted, -1 none */
	int			 sub_follow;
	int			 sub_waiting;	/* at the end, awaiting records */
	int			 sub_done;	/* passed sub_to */
	int			 sub_held;	/* sub_rec did not fit last frame */
	struct wal_record	 sub_rec;	/* valid until the next read */
	uint64_t		 sub_fd_bytes;	/* record in a memfd not yet read */
	struct event		*ev_sub_retry;	/* look again whether it is */

	struct shm_ring		*shm;		/* shared-memory ring, if any */
	struct fwd		*fwd;		/* registered forwarder (forward.c) */

	/* Idempotent producer (producers.c); carried across a re-exec. */
	uint64_t		 producer_id;	/* 0: not a producer */
	int			 producer_slot;	/* in srv->ptab, -1: none */

	uint64_t		 records;
	TAILQ_ENTRY(conn)	 entry;

	unsigned		 rights;	/* RIGHT_* (rights.c) */
	gid_t			*groups;	/* supplementary, or NULL */
	size_t			 ngroups;
};

TAILQ_HEAD(connlist, conn);

struct server {
	struct srv_config	 cfg;
	const char		*conf_path;	/* NULL: none */
	struct event_base	*base;
	struct wal_ring		*ring;
	/*
	 * The data directory as checked at start-up (srv_dir_open): status,
	 * retention and subscriptions reach it through this descriptor, never
	 * through cfg.dir, which whoever owns a parent could redirect.
	 */
	int			 data_dirfd;

	int			 listen_fd;
	int			 socket_from_systemd;
	int			 socket_created;	/* we bound it: unlink */
	int			 sock_dirfd;	/* its directory, checked; or -1 */
	const char		*sock_name;	/* its name there */
	dev_t			 sock_dev;	/* the file we bound */
	ino_t			 sock_ino;
	struct event		*ev_accept;
	struct event		*ev_accept_resume;	/* EMFILE back-off */

	struct connlist		 conns;
	unsigned		 nconns;
	uint64_t		 clients_total;
	time_t			 client_log_sec;	/* srv_log_client() */
	unsigned		 client_log_n;	/* lines in that second */
	uint64_t		 client_log_dropped; /* not logged since */

	struct syncer		*syncer;
	struct wal_ptab		*ptab;		/* producer table (producers.c) */
	struct closer		*closer;	/* what clients passed */
	int			 sync_fd;	/* eventfd: sync thread -> loop */
	struct event		*ev_sync_done;
	struct event		*ev_sync_timer;
	struct event		*ev_sync_kick;	/* deferred sync request */
	int			 sync_kick_pending;
	struct event		*ev_commit_delay;	/* waiting for a group */
	struct event		*ev_rotate;	/* the next ROTATE may run */
	TAILQ_HEAD(, conn)	 parked;	/* large APPEND_FDs, in order */
	struct event		*ev_parked;	/* runs the first of them */
	struct event		*ev_closer;	/* closer_tick() */
	struct event		*ev_fd_wait;	/* room to receive again? */
	int			 rotate_armed;
	int64_t			 rotate_last_ms; /* last ROTATE (mono), 0 */
	int			 commit_delay_armed;
	unsigned		 durable_expected;	/* conns still to return */
	/*
	 * A sync failed (srv_sync_failed): sticky. No durable position is
	 * published after it, on the socket or in a ring.
	 */
	int			 sync_failed;
	char			 sync_error[400];	/* what clients are told */

	TAILQ_HEAD(, shm_ring)	 shms;		/* rings the drainer polls */
	unsigned		 nshms;
	uint64_t		 shm_bytes;	/* memory of those rings */
	struct event		*ev_drain;	/* srv_shm_drain_cb (timer) */
	int			 drain_scheduled;
	uint64_t		 drain_idle;	/* last records seen (mono ns) */

	struct event		*ev_signals[4];
	struct event		*ev_tick;	/* status, rates, retention */
	struct event		*ev_watchdog;
	struct event		*ev_stop_timer;

	uint8_t			*rxbuf;		/* one received frame */
	uint8_t			*txbuf;		/* one frame being built */
	uint8_t			*ackbuf;	/* an ACK frame being built */
	int			 stopping;
	int			 exit_status;
	time_t			 started;
	int			 sub_dirty;	/* records appended: wake tails */

	struct srv_dirstat	 dirstat;	/* last scan, for STATUS */
	struct fwd_table	*fwd;		/* forwarders, log id (forward.c) */
	uint64_t		 outq_total;	/* memory of all reply queues */
	uint64_t		 sub_fd_total;	/* records in memfds not yet read */
	uint64_t		 segments_removed;	/* by retention */

	uint64_t		 records;
	uint64_t		 bytes;
	uint64_t		 frames;
	uint64_t		 errors;
	uint64_t		 rate_records;	/* records at the last tick */
	uint64_t		 records_per_s;
	struct srv_metrics	 metrics;	/* metrics.c */
};

/* dirs.c */
int	 srv_dir_open(const char *what, const char *path, int parents,
	    mode_t, char *why, size_t whylen);

/* server.c */
int	 srv_listen(struct server *);
void	 srv_close_listener(struct server *);
void	 srv_stop(struct server *, const char *why);
void	 srv_status(struct server *, struct wal_status *);
void	 srv_request_sync(struct server *);
void	 srv_sync_kick_cb(int, short, void *);
void	 srv_commit_delay_cb(int, short, void *);
void	 srv_durable_returned(struct server *, struct conn *);
void	 srv_sync_round(struct server *);
void	 srv_wake_subscribers(struct server *);
void	 srv_retention(struct server *);
void	 srv_check_timeouts(struct server *);
int	 srv_log_client(struct server *);
void	 srv_log_suppressed(struct server *);
void	 srv_fd_wait(struct server *);
void	 srv_fd_wait_cb(int, short, void *);
int	 srv_rotate_now(struct server *, pid_t, char *err, size_t errlen);
void	 srv_rotate_later(struct server *);
void	 srv_rotate_cb(int, short, void *);
void	 srv_fwd_unblocked(struct server *);

/* conn.c */
struct conn *conn_new(struct server *, int fd);
void	 conn_free(struct conn *);
void	 conn_drain(struct conn *, uint64_t budget);
void	 conn_closing(struct conn *);
void	 conn_check_timeouts(struct conn *);
void	 conn_durable(struct conn *, int64_t durable_seq);
void	 conn_sync_failed(struct conn *, const char *why);
void	 conn_error(struct conn *, uint64_t id, unsigned code, int fatal,
	    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int	 conn_flush(struct conn *);
int	 conn_queue_fds(struct conn *, const void *, size_t, const int *fds,
	    int nfds);
void	 conn_expect(struct conn *);
int	 conn_durable_owed(const struct conn *);
unsigned conn_errno_perr(int);
void	 conn_sub_wake(struct conn *);
uint64_t conn_sub_segment(const struct conn *);
void	 conn_sub_drop(struct conn *, uint64_t held);
void	 conn_rotated(struct conn *, int rc, const char *err);
void	 conn_parked_cb(int, short, void *);
void	 conn_read_enable(struct conn *);
void	 conn_subscribe(struct conn *, const struct wal_msg_subscribe *);
void	 conn_ack_dup(struct conn *, uint64_t id, int64_t first,
	    uint32_t count, unsigned ack, int64_t durable_until);

/* producers.c */
void	 prod_open(struct server *);
void	 prod_close(struct server *);
struct wal_error;
int	 prod_ring_reopened(struct server *, struct wal_error *);
void	 prod_producer(struct conn *, const struct wal_msg_producer *);
uint64_t prod_append_check(struct conn *, const uint8_t *, size_t);
void	 prod_appended(struct conn *, uint64_t next_pseq, int64_t last_seq,
	    int64_t now_ns);
void	 prod_conn_gone(struct conn *);

/* shm.c */
void	 shm_open_ring(struct conn *, const struct wal_msg_shm_open *);
void	 shm_close_ring(struct conn *);
int	 shm_catch_up(struct conn *);
void	 shm_drain_published(struct conn *);
void	 shm_durable(struct conn *, int64_t durable_seq);
int	 shm_durable_owed(const struct conn *);
void	 shm_sync_failed(struct conn *, const char *why);
void	 shm_finish(struct server *);
void	 shm_bells_enable(struct server *);
void	 shm_unparked(struct conn *);
void	 srv_shm_drain_cb(int, short, void *);
void	 shm_kick(struct server *);
void	 shm_producer_resumed(struct server *, int slot);
int	 shm_producer_busy(const struct server *, int slot);

/* walmmapd.c */
void	 srv_sync_failed(struct server *, const char *why, int64_t durable);

/* outq.c */
#define OUTQ_MAX_FDS	3
int	 outq_push(struct outq *, const void *frame, size_t len);
int	 outq_push_fd(struct outq *, const void *frame, size_t len, int fd);
int	 outq_push_fds(struct outq *, const void *frame, size_t len,
	    const int *fds, int nfds);
size_t	 outq_bytes(const struct outq *);
int	 outq_send(struct outq *, int fd);
void	 outq_free(struct outq *);

/* syncer.c */
struct syncer *syncer_start(struct wal_ring *, int notify_fd);
void	 syncer_request(struct syncer *);
void	 syncer_stop(struct syncer *);
/* Results, read by the loop after notify_fd fires. */
int	 syncer_result(struct syncer *, int64_t *durable, char *err,
	    size_t errlen);
void	 syncer_stats(struct syncer *, uint64_t *count, uint64_t *ns_total,
	    uint64_t *ns_max);
void	 syncer_latency(struct syncer *, struct metrics_hist *);

#endif /* SERVER_H */
