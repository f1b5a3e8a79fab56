/*
 * walmmap.h - client library for walmmapd, the local write-ahead-log daemon.
 *
 * A producer connects to walmmapd, appends records and learns when they are
 * written (they survive a crash of the producer or the daemon) or durable
 * (they survive power loss). A reader iterates the log's segment files
 * directly, without a daemon, or follows new records through a daemon
 * subscription. See libwalmmap(3).
 *
 * Errors: every function that can fail returns 0 (or a count) on success
 * and a negative enum walmmap_error on failure. walmmap_strerror() names an
 * error; walmmap_errmsg() / walmmap_reader_errmsg() give the full message
 * of the last failure on a handle (what failed, on what, and why).
 *
 * Time limits: no call waits without a limit unless told to. Connecting
 * (the socket's connect and the HELLO handshake) is bounded by
 * WALMMAP_CONNECT_TIMEOUT_MS, every other wait on a connection by its
 * timeout (WALMMAP_TIMEOUT_MS unless walmmap_set_timeout() changed it);
 * a limit that expires returns WALMMAP_ETIMEDOUT and leaves the connection
 * usable (late answers are matched up or ignored).
 *
 * Threads: a handle may be used by one thread at a time; different handles
 * are independent. The library has no global state, starts no threads,
 * never prints and never exits. It blocks SIGPIPE on its own sends
 * (MSG_NOSIGNAL) so a dead daemon is an error, not a signal.
 */
#ifndef WALMMAP_H
#define WALMMAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WALMMAP_VERSION_MAJOR	0
#define WALMMAP_VERSION_MINOR	1

/* Acknowledgement levels (see walmmapd(8), "Guarantees"). */
enum walmmap_ack {
	WALMMAP_ACK_NONE = 0,		/* accepted; nothing is promised */
	WALMMAP_ACK_WRITTEN = 1,	/* in the log: survives kill -9 */
	WALMMAP_ACK_DURABLE = 2,	/* synced: survives power loss */
	WALMMAP_ACK_DEFAULT = 255	/* per append: the connection's level */
};

/* Errors, always returned negated. */
enum walmmap_error {
	WALMMAP_OK = 0,
	WALMMAP_ENODAEMON = 1,		/* no daemon listens on the socket */
	WALMMAP_EPERM = 2,		/* socket or allow-list refused us */
	WALMMAP_ETOOLARGE = 3,		/* record above the daemon's limit */
	WALMMAP_ENOSPC = 4,		/* the log's disk is full */
	WALMMAP_EVERSION = 5,		/* no common protocol version */
	WALMMAP_ELOST = 6,		/* connection to the daemon lost */
	WALMMAP_ETIMEDOUT = 7,		/* a time limit expired */
	WALMMAP_EAGAIN = 8,		/* non-blocking: try again later */
	WALMMAP_EINVAL = 9,		/* bad argument */
	WALMMAP_EIO = 10,		/* I/O error (daemon's or ours) */
	WALMMAP_EPROTO = 11,		/* daemon sent something invalid */
	WALMMAP_ENOMEM = 12,		/* out of memory */
	WALMMAP_EBUSY = 13,		/* daemon at its connection limit */
	WALMMAP_ESYNC = 14,		/* the daemon could not sync */
	WALMMAP_ECORRUPT = 15,		/* reader: damaged log data */
	WALMMAP_ESHUTDOWN = 16,		/* daemon is stopping */
	WALMMAP_ENOTSUP = 17,		/* not supported here */
	WALMMAP_EREMOVED = 18		/* reader: the records it was to read
					   next were deleted by retention */
};

/* Name of an error (positive or negative code). Never NULL. */
const char	*walmmap_strerror(int err);

/* ------------------------------------------------------------------ */
/* Producing: a connection to walmmapd.                                */
/* ------------------------------------------------------------------ */

struct walmmap;

/* Default time limits, in milliseconds. */
#define WALMMAP_CONNECT_TIMEOUT_MS	5000	/* connect and handshake */
#define WALMMAP_TIMEOUT_MS		30000	/* each call on a connection */

/* walmmap_connect() flags. */
#define WALMMAP_NONBLOCK	0x1	/* appends never block (see below) */
#define WALMMAP_SHM		0x2	/* append through shared memory */

/*
 * Connect to walmmapd. socket: the daemon's socket path, or NULL for
 * $WALMMAP_SOCKET, else the socket of namespace $WALMMAP_NAMESPACE (see
 * walmmapd(8); a name that is not one is WALMMAP_EINVAL), else
 * $XDG_RUNTIME_DIR/walmmapd.sock when it exists and
 * we are not root, else /run/walmmapd/walmmapd.sock. ack: the level appends
 * get unless they say otherwise.
 *
 * On success returns 0 and *wp. On failure returns an error and still sets
 * *wp to a handle that holds the message (walmmap_errmsg()); close it with
 * walmmap_close(). *wp is NULL only when memory ran out.
 */
int		 walmmap_connect(struct walmmap **wp, const char *socket,
		    enum walmmap_ack ack, unsigned flags);

/*
 * walmmap_connect() with its own limit for connecting and the handshake
 * (timeout_ms < 0: no limit) instead of WALMMAP_CONNECT_TIMEOUT_MS.
 */
int		 walmmap_connect_timeout(struct walmmap **wp,
		    const char *socket, enum walmmap_ack ack, unsigned flags,
		    int timeout_ms);

/*
 * The limit, in milliseconds, on the waits of every later call on this
 * connection that has no timeout argument of its own (appends, sync,
 * rotate, status) and of waits called with timeout_ms < 0. timeout_ms < 0
 * removes the limit. Default WALMMAP_TIMEOUT_MS.
 */
void		 walmmap_set_timeout(struct walmmap *, int timeout_ms);

/* Largest record the daemon takes, as it said when we connected. */
uint32_t	 walmmap_max_record(const struct walmmap *);

/*
 * With WALMMAP_SHM the daemon passes the connection a shared-memory ring
 * and appends go through it without a system call while the daemon is
 * draining; everything else (acks, waits, seqs, errors) works as on the
 * socket, and records above the ring's limit still travel over the socket,
 * in order. When the daemon cannot give a ring the connection works over
 * the socket: walmmap_shm_active() returns 0 and sets *why (if not NULL)
 * to the reason. Not combinable with WALMMAP_NONBLOCK.
 */
int		 walmmap_shm_active(const struct walmmap *, const char **why);

/* Close the connection (unacknowledged records may or may not be in). */
void		 walmmap_close(struct walmmap *);

/* Message of the last failure on this handle ("" if none). */
const char	*walmmap_errmsg(const struct walmmap *);

/*
 * Append one record of len bytes. ack: a level for this record, or
 * WALMMAP_ACK_DEFAULT for the connection's.
 *
 * With seq != NULL the call waits until the record is acknowledged at its
 * level (at least written, so the daemon can say which seq it got) and
 * stores the seq. With seq == NULL it only sends: the record is pipelined
 * and its acknowledgement is collected later (walmmap_wait(), or any call
 * that reads from the daemon). Either way the call blocks while the
 * connection's unacknowledged bytes exceed the daemon's in-flight limit.
 * Each of those waits is bounded by the connection's timeout.
 *
 * data may be NULL only when len is 0; len above the protocol's 64 MiB
 * limit is WALMMAP_ETOOLARGE without sending. Records larger than one
 * socket message travel in a sealed memfd.
 */
int		 walmmap_append(struct walmmap *, const void *data, size_t len,
		    enum walmmap_ack ack, int64_t *seq);

/*
 * Append n records, packed into as few messages as fit (records of one
 * message get consecutive seqs). With seqs != NULL (an array of n) the
 * call waits for the acknowledgements and stores each record's seq.
 * Returns the number of records appended (n, or fewer in non-blocking
 * mode when the socket filled up), or a negative error. n above INT_MAX,
 * or a record with NULL data and a nonzero length, is WALMMAP_EINVAL
 * before anything is sent.
 */
int		 walmmap_append_batch(struct walmmap *, const struct iovec *recs,
		    size_t n, enum walmmap_ack ack, int64_t *seqs);

/*
 * Wait until every record appended so far on this connection is at least
 * at level (WALMMAP_ACK_WRITTEN or WALMMAP_ACK_DURABLE; anything else is
 * WALMMAP_EINVAL). timeout_ms < 0 uses the connection's timeout. Returns
 * 0, WALMMAP_ETIMEDOUT, the loss of the connection, or the error the
 * daemon reported for one of the records (the first one since the last
 * wait). At WALMMAP_ACK_DURABLE, once a sync the daemon reported failed
 * covered records of this connection, the answer is WALMMAP_ESYNC for
 * good: those records are not durable.
 */
int		 walmmap_wait(struct walmmap *, enum walmmap_ack level,
		    int timeout_ms);

/*
 * Wait until the record with this seq is durable (seq from an append);
 * WALMMAP_ESYNC when a failed sync covered it, however much is pending.
 */
int		 walmmap_wait_durable(struct walmmap *, int64_t seq,
		    int timeout_ms);

/* Make everything written so far durable (group commit); *durable_seq. */
int		 walmmap_sync(struct walmmap *, int64_t *durable_seq);

/* Seal the active segment; the next record starts a new one. */
int		 walmmap_rotate(struct walmmap *);

/*
 * Have walmmapd hand its connections over to a new walmmapd process (an
 * administrative request: root or the daemon's user). Returns once the
 * new process answers; clients see a pause, no error.
 */
int		 walmmap_restart(struct walmmap *);

/* What this connection knows; valid after any call, even a failed one. */
struct walmmap_progress {
	uint64_t	sent;		/* records sent */
	uint64_t	acked;		/* records acknowledged written */
	uint64_t	failed;		/* records the daemon refused */
	uint64_t	pending;	/* sent with an ack level, no answer yet */
	int64_t		last_seq;	/* highest seq acknowledged, -1 none */
	int64_t		durable_seq;	/* log durable up to here, -1 unknown */
};
void		 walmmap_progress(const struct walmmap *,
		    struct walmmap_progress *);

/* The daemon's status and counters (walctl status / stats). */
struct walmmap_status {
	uint32_t	protocol;	/* protocol version in use */
	uint32_t	ring_segments;
	int64_t		next_seq;	/* seq the next record gets */
	int64_t		written_seq;	/* last written, -1 none */
	int64_t		durable_seq;	/* last durable, -1 none */
	int64_t		first_seq;	/* oldest on disk, -1 none */
	uint64_t	segment_size;
	uint64_t	segments;	/* segment files in the directory */
	uint64_t	disk_bytes;
	uint64_t	active_segment;	/* id of the segment being written */
	uint64_t	clients;
	uint64_t	clients_total;
	uint64_t	records;	/* appended since the daemon started */
	uint64_t	bytes;		/* payload bytes since start */
	uint64_t	frames;
	uint64_t	syncs;
	uint64_t	sync_ns_total;	/* time spent syncing */
	uint64_t	sync_ns_max;
	uint64_t	rotations;
	uint64_t	errors;		/* error replies sent */
	uint64_t	records_per_s;	/* over the last second */
	uint64_t	uptime_s;
	uint64_t	pid;
	char		dir[256];	/* data directory (first 255 bytes) */
};
int		 walmmap_status(struct walmmap *, struct walmmap_status *);

/*
 * The data directory of the last successful walmmap_status() on this
 * connection, whole however long it is ("" before one). Valid until the
 * next walmmap_status() or walmmap_close().
 */
const char	*walmmap_status_dir(const struct walmmap *);

/*
 * The daemon's counters and gauges as Prometheus text exposition (format
 * 0.0.4; walctl stats --prometheus): *text gets a malloc'd, NUL-terminated
 * copy the caller frees, *len (if not NULL) its length. A reply larger
 * than WALMMAP_METRICS_MAX is refused with WALMMAP_EPROTO. Needs protocol
 * version 2 (WALMMAP_EVERSION from an older daemon).
 */
#define WALMMAP_METRICS_MAX	(16u * 1024 * 1024)
int		 walmmap_metrics(struct walmmap *, char **text, size_t *len);

/*
 * The log's identity and its forwarders (walmmap-forward), as the daemon
 * at socket (NULL: as for walmmap_connect()) knows them, on a connection
 * of its own. WALMMAP_ENOTSUP from a daemon without forwarders; errbuf
 * (if not NULL) gets the message of a failure.
 */
#define WALMMAP_MAX_FORWARDERS	64
struct walmmap_forwarder {
	char		name[33];
	int64_t		shipped_seq;	/* last seq its destination holds */
	int64_t		shipped_ts_ns;	/* that record's timestamp, 0 none */
	int64_t		lag_records;	/* written records not shipped */
	int64_t		lag_ns;		/* now - shipped_ts_ns while lagging */
	int64_t		gap_first;	/* last gap: first seq lost, -1 none */
	int64_t		gap_last;
	uint64_t	gap_records;	/* lost to retention, all gaps */
	int		attached;	/* registered with the daemon now */
	int		connected;	/* it says it reaches its server */
	char		server[96];	/* the server it is connected to */
	char		error[160];	/* its last error, "" none */
};
struct walmmap_log_info {
	uint8_t		log_id[16];
	char		log_id_hex[33];
	uint64_t	gap_records;	/* all forwarders */
	int		blocking;	/* producers wait for a forwarder */
	size_t		count;
	struct walmmap_forwarder fwd[WALMMAP_MAX_FORWARDERS];
};
int		 walmmap_log_info(const char *socket,
		    struct walmmap_log_info *, char *errbuf, size_t errlen);

/*
 * Non-blocking use (WALMMAP_NONBLOCK). Appends send without waiting:
 * seq/seqs must be NULL, and WALMMAP_EAGAIN means the socket or the
 * in-flight window is full and a reply is owed: poll walmmap_fd() for
 * POLLIN, then call walmmap_process(). (Appends at level none are owed
 * no reply: when only they fill the socket, poll for POLLOUT as well.)
 * walmmap_process() reads what the daemon sent without blocking and
 * reports each acknowledgement through the callback, in the order the
 * appends were made (count records from first_seq, or the error that
 * refused them). Any call that reads replies may run the callback (an
 * append, a wait), in blocking mode too. Inside the callback the
 * connection is busy: appends, waits and requests on it fail with
 * WALMMAP_EBUSY (send the next record after the call that ran the
 * callback returns), and walmmap_close() must not be called.
 * walmmap_wait() and friends still block, within the connection's
 * timeout.
 */
typedef void	(*walmmap_ack_cb)(void *arg, int64_t first_seq, uint32_t count,
		    int error);
void		 walmmap_set_ack_cb(struct walmmap *, walmmap_ack_cb, void *);
int		 walmmap_fd(const struct walmmap *);
int		 walmmap_process(struct walmmap *);

/* ------------------------------------------------------------------ */
/* Reading: segment files directly, or a daemon subscription.          */
/* ------------------------------------------------------------------ */

struct walmmap_reader;

struct walmmap_record {
	int64_t		 seq;
	int64_t		 timestamp_ns;	/* CLOCK_REALTIME when written */
	const void	*data;		/* valid until the next call */
	size_t		 size;
};

/*
 * Open a directory of segment files or one segment file. No daemon is
 * involved; the files may be written by a running daemon meanwhile. Same
 * error convention as walmmap_connect().
 *
 * A file reader treats an invalid record at the end of the log (no valid
 * record after it) as one the writer has not finished: the end for now,
 * not damage. walmmap_reader_set_strict() says the log is not being
 * written, so such a record is reported as damage too.
 */
int		 walmmap_reader_open(struct walmmap_reader **rp,
		    const char *path);
int		 walmmap_reader_set_strict(struct walmmap_reader *, int on);

/* walmmap_subscribe() flags. */
#define WALMMAP_FOLLOW		0x1	/* keep streaming new records */

/*
 * Stream records from walmmapd (socket as for walmmap_connect()) starting
 * at from_seq (-1: only records appended from now on), up to to_seq (-1:
 * no limit). With WALMMAP_FOLLOW the stream waits for new records.
 */
int		 walmmap_subscribe(struct walmmap_reader **rp,
		    const char *socket, int64_t from_seq, int64_t to_seq,
		    unsigned flags);

void		 walmmap_reader_close(struct walmmap_reader *);
const char	*walmmap_reader_errmsg(const struct walmmap_reader *);

/*
 * Files only: go to the record with this seq (or the first after it). A
 * seq beyond the end is not an error: the reader waits there for it.
 */
int		 walmmap_reader_seek(struct walmmap_reader *, int64_t seq);

/*
 * Next record. Returns 1 with *rec; 0 when there is none within
 * timeout_ms (0: do not wait; < 0: wait without limit; a file reader polls
 * the files, a subscription waits on the socket); a negative error
 * otherwise. WALMMAP_ECORRUPT means the log is damaged at the reader's
 * position (walmmap_reader_errmsg() says where). WALMMAP_EREMOVED means
 * retention deleted the records the reader was to read next while it read
 * (seek to carry on from what is left). After the end of a
 * subscription without WALMMAP_FOLLOW, or after its to_seq, it returns 0
 * at once.
 */
int		 walmmap_reader_next(struct walmmap_reader *,
		    struct walmmap_record *rec, int timeout_ms);

/* Subscriptions: the socket, for poll(2). -1 for a file reader. */
int		 walmmap_reader_fd(const struct walmmap_reader *);

/*
 * 1 once a subscription has ended: its to_seq was sent, or without
 * WALMMAP_FOLLOW the end of the log (walmmap_reader_next() returns 0
 * from then on; before, 0 means its time limit passed). A file reader
 * never ends: 0.
 */
int		 walmmap_reader_ended(const struct walmmap_reader *);

/* ------------------------------------------------------------------ */
/* Verifying segment files (walctl verify).                            */
/* ------------------------------------------------------------------ */

struct walmmap_problem {
	const char	*file;		/* segment file */
	uint64_t	 offset;	/* byte offset in it */
	int64_t		 seq;		/* seq expected there, -1 unknown */
	const char	*what;		/* what is wrong */
};

struct walmmap_verify_result {
	uint64_t	files;
	uint64_t	records;
	uint64_t	bytes;		/* bytes scanned */
	uint64_t	problems;
	int64_t		first_seq;	/* -1: no records */
	int64_t		last_seq;
};

/* Called for each problem; and with p == NULL, for progress. */
typedef void	(*walmmap_verify_cb)(void *arg,
		    const struct walmmap_problem *p, uint64_t done,
		    uint64_t total);

/*
 * Check a directory or one segment file: file magic, every record's magic,
 * size and CRC, seq continuity within and across segments, and that the
 * space after the last record is zero. Reports every problem through cb
 * (and resumes at the next valid record where one can be found). Returns
 * 0 when the scan ran (look at result->problems), or an error when the
 * files could not be read.
 */
int		 walmmap_verify(const char *path, walmmap_verify_cb cb,
		    void *arg, struct walmmap_verify_result *result,
		    char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

/*
 * Idempotent producers (protocol version 2). A producer connection has an
 * id (0 asks the daemon for a new one; another value resumes that
 * producer, which must belong to the same uid) and numbers its records.
 * Each append returns once every record is acknowledged at the level
 * given (WRITTEN or DURABLE). When the connection drops, the library
 * connects again (backoff 10 ms doubling to 1 s, for at most the
 * reconnect timeout), resumes the id and sends every record not yet
 * acknowledged again; the daemon writes those it lacks and acknowledges
 * the others with their original seqs, so each record is in the log once
 * and each append returns success once. Reconnecting is on by default.
 */
struct walmmap_producer;

#define WALMMAP_RECONNECT_TIMEOUT_MS	30000	/* one outage, by default */
/* Largest record a producer appends (one frame): 128 KiB - 36. */
#define WALMMAP_PRODUCER_MAX_RECORD	131036

int		 walmmap_producer_open(struct walmmap_producer **pp,
		    const char *socket, enum walmmap_ack ack,
		    uint64_t producer_id);
void		 walmmap_producer_set_reconnect(struct walmmap_producer *,
		    int on, int timeout_ms);
void		 walmmap_producer_set_timeout(struct walmmap_producer *,
		    int timeout_ms);
int		 walmmap_producer_append(struct walmmap_producer *,
		    const void *data, size_t len, int64_t *seq);
int		 walmmap_producer_append_batch(struct walmmap_producer *,
		    const struct iovec *recs, size_t n, int64_t *seqs);
int		 walmmap_producer_set_shm(struct walmmap_producer *, int on);
int		 walmmap_producer_shm_active(const struct walmmap_producer *);
uint64_t	 walmmap_producer_id(const struct walmmap_producer *);
uint64_t	 walmmap_producer_next_pseq(const struct walmmap_producer *);
uint64_t	 walmmap_producer_reconnects(const struct walmmap_producer *);
uint32_t	 walmmap_producer_max_record(const struct walmmap_producer *);
const char	*walmmap_producer_errmsg(const struct walmmap_producer *);
void		 walmmap_producer_close(struct walmmap_producer *);

/*
 * Provenance: which producer wrote a record, from the producer table in
 * the data directory (walmmap_prov_open() takes the directory or one of
 * its segments). Records of connections without a producer id have none.
 * uid and gid are the producer's (an id never changes uid); pid, comm,
 * exe and connect_ns are those of the producer's latest connection.
 * Entries are kept for the newest records only (the daemon's
 * producer_journal, 1048576 by default).
 */
struct walmmap_prov;
struct walmmap_provenance {
	uint64_t	producer_id;	/* 0: none recorded */
	uint64_t	pseq;		/* the record's producer seq */
	int		known;		/* the producer is still in the table */
	uint32_t	uid;
	uint32_t	gid;
	uint32_t	pid;
	int64_t		connect_ns;	/* CLOCK_REALTIME */
	char		comm[16];	/* the kernel's name of the process */
	char		exe[32];	/* basename of its executable */
};

int		 walmmap_prov_open(struct walmmap_prov **, const char *path,
		    char *err, size_t errlen);
int		 walmmap_prov_lookup(const struct walmmap_prov *, int64_t seq,
		    struct walmmap_provenance *);
void		 walmmap_prov_close(struct walmmap_prov *);

#endif /* WALMMAP_H */
