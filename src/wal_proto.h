/*
 * walmmapd - the wire protocol between walmmapd and its clients.
 *
 * The only header both daemon/ and client/ include from each other's
 * world. man/walmmap-protocol.7 describes it for people; this file is the
 * reference for code.
 *
 * Transport: a Unix SOCK_SEQPACKET socket. One message is one frame; the
 * kernel keeps the boundaries. All integers are in host byte order (the
 * socket never leaves the host). Every frame starts with struct wal_msg;
 * msg.len is the whole frame's length and must equal the bytes received.
 *
 * A connection starts with HELLO (client) and WELCOME (daemon). Requests
 * carry a client-chosen id that replies echo.
 */
#ifndef WAL_PROTO_H
#define WAL_PROTO_H

#include <stddef.h>
#include <stdint.h>

/*
 * Version 1: the first wave. Version 2 adds idempotent producers
 * (PRODUCER, APPEND_P), forwarder registration (FWD_REGISTER,
 * FWD_POSITION), METRICS and RESTART; a v2 daemon still answers a client
 * that offers only 1, and the v2-only requests are refused on such a
 * connection with WAL_PERR_VERSION.
 */
#define WAL_PROTO_VERSION_MIN	1	/* oldest version the daemon speaks */
#define WAL_PROTO_VERSION	2	/* newest */
#define WAL_PROTO_MAX_FRAME	(128u * 1024)	/* largest frame either way */

/* Where clients look for the daemon (see wal_proto_default_socket()). */
#define WAL_PROTO_SOCKET_ENV	"WALMMAP_SOCKET"
#define WAL_PROTO_SYSTEM_SOCKET	WAL_SYSTEM_SOCKET	/* configure --with-socket */
#define WAL_PROTO_USER_SOCKET	"walmmapd.sock"	/* in $XDG_RUNTIME_DIR */
/*
 * Namespaces: separate logs on one host, each its own walmmapd
 * (walmmapd -n NAME, walmmapd@NAME.service). NAME's socket is
 * WAL_SYSTEM_SOCKET_DIR/NAME.sock, or (not root)
 * $XDG_RUNTIME_DIR/walmmapd/NAME.sock when that exists.
 */
#define WAL_PROTO_NAMESPACE_ENV	"WALMMAP_NAMESPACE"
#define WAL_PROTO_NAMESPACE_MAX	64	/* bytes of a name */

/* Message types. */
enum wal_msg_type {
	/* client -> daemon */
	WAL_MSG_HELLO = 1,	/* struct wal_msg_hello */
	WAL_MSG_APPEND = 2,	/* struct wal_msg_append + records */
	WAL_MSG_APPEND_FD = 3,	/* struct wal_msg_append_fd + SCM_RIGHTS memfd */
	WAL_MSG_SYNC = 4,	/* header only: make everything durable */
	WAL_MSG_STATUS = 5,	/* header only */
	WAL_MSG_ROTATE = 6,	/* header only */
	WAL_MSG_SUBSCRIBE = 7,	/* struct wal_msg_subscribe */
	WAL_MSG_SHM_OPEN = 8,	/* struct wal_msg_shm_open: ask for a ring */
	WAL_MSG_PING = 9,	/* header only: OK once earlier frames are done */
	/* version 2 */
	WAL_MSG_PRODUCER = 10,	/* struct wal_msg_producer: be (or resume) a
				   producer with an identity */
	WAL_MSG_APPEND_P = 11,	/* struct wal_msg_append_p + records: APPEND
				   carrying producer seqs */
	WAL_MSG_FWD_REGISTER = 12, /* struct wal_msg_fwd_register */
	WAL_MSG_FWD_POSITION = 13, /* struct wal_msg_fwd_position */
	WAL_MSG_METRICS = 14,	/* header only: Prometheus text exposition */
	WAL_MSG_RESTART = 15,	/* header only: hand over to a new walmmapd */

	/* daemon -> client */
	WAL_MSG_WELCOME = 101,	/* struct wal_msg_welcome */
	WAL_MSG_ACK = 102,	/* struct wal_msg_ack + wal_ack_entry[] */
	WAL_MSG_DURABLE = 103,	/* struct wal_msg_durable */
	WAL_MSG_ERROR = 104,	/* struct wal_msg_error + text */
	WAL_MSG_STATUS_REPLY = 105, /* struct wal_status [+ directory] */
	WAL_MSG_OK = 106,	/* header only: request done */
	WAL_MSG_RECORDS = 107,	/* struct wal_msg_records + wal_rec_out[] */
	WAL_MSG_RECORD_FD = 108, /* struct wal_rec_out + SCM_RIGHTS memfd */
	WAL_MSG_SUB_END = 109,	/* struct wal_msg_sub_end */
	WAL_MSG_SHM_READY = 110, /* struct wal_msg_shm_ready + 3 descriptors */
	/* version 2 */
	WAL_MSG_PRODUCER_OK = 111, /* struct wal_msg_producer_ok */
	WAL_MSG_METRICS_REPLY = 112, /* header + text, not NUL-terminated */
	WAL_MSG_FWD_STATE = 113, /* struct wal_msg_fwd_state */
};

/* Acknowledgement levels. */
enum wal_ack_level {
	WAL_ACK_NONE = 0,
	WAL_ACK_WRITTEN = 1,
	WAL_ACK_DURABLE = 2,
	WAL_ACK_DEFAULT = 255,	/* in an append: the connection's level */
};

/* Error codes carried by WAL_MSG_ERROR. */
enum wal_proto_err {
	WAL_PERR_PROTO = 1,	/* malformed frame */
	WAL_PERR_VERSION = 2,	/* no common protocol version */
	WAL_PERR_TOO_LARGE = 3,	/* record above the daemon's limit */
	WAL_PERR_NOSPC = 4,	/* disk full: record not written */
	WAL_PERR_IO = 5,	/* I/O error: record not written */
	WAL_PERR_PERM = 6,	/* peer lacks the right (read, write, admin) */
	WAL_PERR_BUSY = 7,	/* too many connections */
	WAL_PERR_BADFD = 8,	/* memfd missing, unsealed or short */
	WAL_PERR_SHUTDOWN = 9,	/* daemon is stopping */
	WAL_PERR_UNSUPPORTED = 10, /* request not supported */
	WAL_PERR_SYNC = 11,	/* sync failed: durability not reached */
	WAL_PERR_LAGGING = 12,	/* subscriber held back too much of the log */
	WAL_PERR_TIMEOUT = 13,	/* no HELLO in time, or idle too long */
	/* version 2 */
	WAL_PERR_PRODUCER = 14,	/* producer id unknown, another uid's, or
				   the producer table is full */
	WAL_PERR_PSEQ = 15,	/* producer seq jumps past the next one */
	WAL_PERR_GAP = 16,	/* records a forwarder needs were removed */
};

/* Every frame starts with this. */
struct wal_msg {
	uint16_t	type;		/* enum wal_msg_type */
	uint16_t	flags;		/* zero unless a message says otherwise */
	uint32_t	len;		/* whole frame, header included */
	uint64_t	id;		/* request id, echoed by replies */
};

struct wal_msg_hello {
	struct wal_msg	hdr;
	uint32_t	version_min;
	uint32_t	version_max;
	uint8_t		ack;		/* default level for this connection */
	uint8_t		pad[7];
};

struct wal_msg_welcome {
	struct wal_msg	hdr;
	uint32_t	version;	/* chosen version */
	uint32_t	max_frame;	/* largest frame the daemon takes */
	uint32_t	max_record;	/* largest record (any path) */
	uint32_t	max_inflight;	/* unacknowledged bytes per client */
	int64_t		next_seq;	/* seq the next record will get */
};

/*
 * APPEND: count records, each a uint32_t size followed by size payload
 * bytes, packed without padding after the fixed part. The records of one
 * frame get consecutive seqs. hdr.id is echoed in the ack.
 */
struct wal_msg_append {
	struct wal_msg	hdr;
	uint32_t	count;
	uint8_t		ack;		/* enum wal_ack_level */
	uint8_t		pad[3];
};

/* APPEND_FD: one record of size bytes held in a sealed memfd. */
struct wal_msg_append_fd {
	struct wal_msg	hdr;
	uint64_t	size;
	uint8_t		ack;
	uint8_t		pad[7];
};

/* ACK: records written, one entry per append frame, in frame order. */
#define WAL_ACK_F_DUP	0x1		/* APPEND_P already in the log:
					   first_seq is the original's */
struct wal_ack_entry {
	uint64_t	id;		/* the append frame's hdr.id */
	int64_t		first_seq;	/* seq of its first record */
	uint32_t	count;		/* records in it */
	uint32_t	flags;		/* WAL_ACK_F_*; 0 in version 1 */
};

struct wal_msg_ack {
	struct wal_msg	hdr;
	uint32_t	count;		/* entries that follow */
	uint32_t	pad;
};

/* DURABLE: every record with seq <= durable_seq is on stable storage. */
struct wal_msg_durable {
	struct wal_msg	hdr;		/* id: the SYNC request's, else 0 */
	int64_t		durable_seq;
};

/* ERROR: code, the request it answers (0 if none), then text. */
struct wal_msg_error {
	struct wal_msg	hdr;		/* id: the failed request's */
	uint32_t	code;		/* enum wal_proto_err */
	uint32_t	fatal;		/* 1: the daemon closes the connection */
	/* followed by a message, not NUL-terminated, up to hdr.len */
};

/* SUBSCRIBE: stream records from from_seq (-1: the next new one). */
#define WAL_SUB_FOLLOW	0x1		/* keep streaming new records */
struct wal_msg_subscribe {
	struct wal_msg	hdr;
	int64_t		from_seq;
	int64_t		to_seq;		/* last seq wanted, -1: no limit */
	uint32_t	flags;
	uint32_t	pad;
};

/* RECORDS: count of (wal_rec_out + payload) packed after the fixed part. */
struct wal_rec_out {
	int64_t		seq;
	int64_t		timestamp_ns;
	uint32_t	size;
	uint32_t	pad;
};

struct wal_msg_records {
	struct wal_msg	hdr;
	uint32_t	count;
	uint32_t	pad;
};

/* SUB_END: the subscription ended (to_seq reached, or reading stopped). */
struct wal_msg_sub_end {
	struct wal_msg	hdr;
	int64_t		next_seq;	/* first seq not sent */
	uint32_t	reason;		/* 0: done, else a wal_rec_status */
	uint32_t	pad;
};

/* SHM_OPEN: ask for a shared-memory ring of size data bytes (0: default). */
struct wal_msg_shm_open {
	struct wal_msg	hdr;
	uint64_t	size;
};

/*
 * SHM_READY: the ring (see wal_shm.h), passed with SCM_RIGHTS as three
 * descriptors in this order: the memfd (header_size + size bytes, sealed
 * against shrinking), the producer's doorbell to the daemon and the
 * daemon's doorbell to the producer (both eventfds).
 */
struct wal_msg_shm_ready {
	struct wal_msg	hdr;
	uint64_t	size;		/* data bytes, a power of two */
	uint32_t	header_size;
	uint32_t	max_record;	/* larger records go over the socket */
};

/*
 * Version 2: idempotent producers.
 *
 * PRODUCER makes the connection a producer with an identity: producer_id
 * 0 asks the daemon for a new one; any other value resumes that producer
 * (it must belong to the same uid). The reply says where the producer
 * stands in the log. Afterwards the connection appends with APPEND_P: the
 * records of a frame carry the producer seqs first_pseq, first_pseq + 1,
 * ... (1 is a new producer's first). A frame whose first_pseq is the
 * producer's next_pseq is written; one whose records are all already in
 * the log is a duplicate: it is not written again and its ACK entry
 * carries WAL_ACK_F_DUP and the original first_seq (a resent frame must
 * cover the same producer seqs as the frame it repeats). A frame that
 * straddles next_pseq is one a crash or a full disk cut short, sent
 * again: it gets two ACK entries with its id, the records in the log
 * (WAL_ACK_F_DUP, their original first_seq), then the rest, written now.
 * A jump past next_pseq is refused with WAL_PERR_PSEQ. A ring opened on
 * a producer connection (SHM_OPEN after PRODUCER) gives each record it
 * drains the producer's next_pseq, starting with the header's first_pseq
 * (src/wal_shm.h).
 */
struct wal_msg_producer {
	struct wal_msg	hdr;
	uint64_t	producer_id;	/* 0: assign a new one */
	uint32_t	flags;		/* none defined: 0 */
	uint32_t	pad;
};

struct wal_msg_producer_ok {
	struct wal_msg	hdr;
	uint64_t	producer_id;
	uint64_t	next_pseq;	/* first producer seq not in the log */
	int64_t		last_seq;	/* log seq of next_pseq - 1, -1: none */
	int64_t		durable_seq;	/* the log's durable position now */
};

struct wal_msg_append_p {
	struct wal_msg	hdr;
	uint32_t	count;
	uint8_t		ack;		/* enum wal_ack_level */
	uint8_t		pad[3];
	uint64_t	first_pseq;	/* producer seq of the first record */
};

/*
 * Version 2: forwarders. A forwarder (walmmap-forward) registers under a
 * name; the daemon keeps, per name and across its own restarts, the last
 * seq the forwarder reported shipped, and retention keeps every segment
 * holding a later record (up to the configured cap). FWD_POSITION reports
 * progress and state; the daemon does not answer it.
 */
#define WAL_FWD_NAME_MAX	32	/* name bytes, NUL-padded */

struct wal_msg_fwd_register {
	struct wal_msg	hdr;
	char		name[WAL_FWD_NAME_MAX];	/* [A-Za-z0-9_.-]+ */
	int64_t		shipped_seq;	/* last seq the destination holds,
					   -1: none, -2: unknown */
	uint32_t	flags;		/* none defined: 0 */
	uint32_t	pad;
};

struct wal_msg_fwd_state {
	struct wal_msg	hdr;
	uint8_t		log_id[16];	/* the log's stable identity */
	int64_t		first_seq;	/* oldest seq on disk, -1: none */
	int64_t		next_seq;
	int64_t		held_seq;	/* what the daemon held for this
					   name, -1: nothing */
};

struct wal_msg_fwd_position {
	struct wal_msg	hdr;
	int64_t		shipped_seq;	/* last seq acknowledged downstream,
					   -1: none, -2: not known yet (the
					   state and error are news) */
	int64_t		shipped_ts_ns;	/* its record's timestamp */
	uint32_t	connected;	/* 1: connected to the destination */
	uint32_t	pad;
	char		server[96];	/* NUL-padded */
	char		error[160];	/* last error, NUL-padded, "" none */
};

/*
 * Version 2: METRICS (header only) asks for the daemon's counters and
 * gauges as Prometheus text exposition (format 0.0.4). The answer is one
 * or more METRICS_REPLY frames with the request's id, each the header and
 * a piece of the text (not NUL-terminated, up to hdr.len); every frame but
 * the last carries WAL_METRICS_F_MORE in hdr.flags. The pieces end at line
 * ends where a line fits a frame; the client joins them in order.
 */
#define WAL_METRICS_F_MORE	0x1

/*
 * STATUS with this in hdr.flags: the reply carries, after struct
 * wal_status, the data directory's whole path (not NUL-terminated, up to
 * hdr.len); dir holds only its first 255 bytes. Older daemons ignore the
 * flag and send the fixed part alone.
 */
#define WAL_STATUS_F_DIR	0x1

/*
 * STATUS with this in hdr.flags, on a version 2 connection: the reply
 * carries, after struct wal_status and before the directory (when
 * WAL_STATUS_F_DIR asks for it too), struct wal_status_fwd and then its
 * count of struct wal_status_fwd_entry. A client that does not set the
 * flag (every version 1 client) gets the version 1 layout.
 */
#define WAL_STATUS_F_FWD	0x2

#define WAL_STATUS_FWD_MAX	64	/* forwarders the daemon keeps */

struct wal_status_fwd {
	uint8_t		log_id[16];	/* the log's stable identity */
	uint32_t	count;		/* entries that follow */
	uint32_t	blocking;	/* 1: producers wait for a forwarder
					   (forward_hold_block) */
	uint64_t	gap_records;	/* removed before any forwarder
					   shipped them, all forwarders */
};

struct wal_status_fwd_entry {
	char		name[WAL_FWD_NAME_MAX];	/* NUL-padded */
	int64_t		shipped_seq;	/* last seq shipped, -1 none */
	int64_t		shipped_ts_ns;	/* its record's timestamp, 0 none */
	int64_t		lag_records;	/* written records not shipped */
	int64_t		lag_ns;		/* age of the oldest not shipped */
	int64_t		gap_first;	/* last gap: first seq lost, -1 */
	int64_t		gap_last;	/* its last seq lost */
	uint64_t	gap_records;	/* records lost for it, all gaps */
	uint32_t	attached;	/* 1: registered on a connection now */
	uint32_t	connected;	/* 1: it says it reaches its server */
	char		server[96];	/* NUL-padded */
	char		error[160];	/* last error, NUL-padded */
};

/* STATUS_REPLY. */
struct wal_status {
	struct wal_msg	hdr;
	uint32_t	version;
	uint32_t	ring_segments;
	int64_t		next_seq;
	int64_t		written_seq;
	int64_t		durable_seq;
	int64_t		first_seq;	/* oldest seq still on disk, -1 none */
	uint64_t	segment_size;
	uint64_t	segments;	/* segment files in the directory */
	uint64_t	disk_bytes;	/* their total size */
	uint64_t	active_id;
	uint64_t	clients;
	uint64_t	clients_total;	/* accepted since start */
	uint64_t	records;	/* appended since start */
	uint64_t	bytes;		/* payload bytes since start */
	uint64_t	frames;
	uint64_t	syncs;
	uint64_t	sync_ns_total;
	uint64_t	sync_ns_max;
	uint64_t	rotations;
	uint64_t	errors;		/* error frames sent */
	uint64_t	records_per_s;	/* over the last few seconds */
	uint64_t	uptime_s;
	uint64_t	pid;
	char		dir[256];
};

/* Validation of a received frame: 0 or a WAL_PERR_* with a message. */
int	wal_proto_check(const void *buf, size_t len, int from_daemon,
	    char *why, size_t whylen);

/*
 * Walk the records of a checked APPEND frame. Start with *off = 0; each
 * call yields one record. Returns 1 with a record, 0 after the last.
 */
int	wal_proto_next_record(const struct wal_msg_append *, size_t len,
	    size_t *off, const uint8_t **payload, uint32_t *size);

/*
 * The socket a client uses when it names none: $WALMMAP_SOCKET, else the
 * socket of namespace $WALMMAP_NAMESPACE (the caller checked the name
 * with wal_proto_namespace_valid()), else (not root)
 * $XDG_RUNTIME_DIR/walmmapd.sock if it exists, else the system socket.
 * Mirrors the daemon's defaults.
 */
void	wal_proto_default_socket(char *buf, size_t len);

/*
 * A namespace name: 1 to WAL_PROTO_NAMESPACE_MAX letters, digits, '_',
 * '-' and '.', not starting with '.'. 1 when it is one.
 */
int	wal_proto_namespace_valid(const char *);

/*
 * The socket of namespace ns (valid) for a client: user (not root) with
 * $XDG_RUNTIME_DIR set: $XDG_RUNTIME_DIR/walmmapd/NAME.sock when it
 * exists; else the system one.
 */
void	wal_proto_namespace_socket(const char *ns, char *buf, size_t len);

/* Name of a message type, for logs and errors. */
const char *wal_proto_type_name(unsigned type);

/* Text of a protocol error code. */
const char *wal_proto_strerror(unsigned code);

#endif /* WAL_PROTO_H */
