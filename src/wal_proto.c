/*
 * walmmapd - validation of wire frames (see wal_proto.h).
 *
 * Everything here reads a frame that came from another process: every
 * length is checked against the bytes received before it is used.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wal_format.h"
#include "wal_proto.h"

_Static_assert(sizeof(struct wal_msg) == 16, "wal_msg layout");
_Static_assert(sizeof(struct wal_msg_hello) == 32, "hello layout");
_Static_assert(sizeof(struct wal_msg_append) == 24, "append layout");
_Static_assert(sizeof(struct wal_ack_entry) == 24, "ack entry layout");
_Static_assert(sizeof(struct wal_rec_out) == 24, "rec_out layout");
_Static_assert(sizeof(struct wal_msg_append_p) == 32, "append_p layout");
_Static_assert(sizeof(struct wal_msg_producer_ok) == 48, "producer_ok layout");

static const struct {
	unsigned	 type;
	const char	*name;
	size_t		 size;		/* fixed part */
	int		 exact;		/* no variable part */
	int		 from_daemon;
} msg_table[] = {
	{ WAL_MSG_HELLO, "HELLO", sizeof(struct wal_msg_hello), 1, 0 },
	{ WAL_MSG_APPEND, "APPEND", sizeof(struct wal_msg_append), 0, 0 },
	{ WAL_MSG_APPEND_FD, "APPEND_FD", sizeof(struct wal_msg_append_fd), 1,
	    0 },
	{ WAL_MSG_SYNC, "SYNC", sizeof(struct wal_msg), 1, 0 },
	{ WAL_MSG_STATUS, "STATUS", sizeof(struct wal_msg), 1, 0 },
	{ WAL_MSG_ROTATE, "ROTATE", sizeof(struct wal_msg), 1, 0 },
	{ WAL_MSG_SUBSCRIBE, "SUBSCRIBE", sizeof(struct wal_msg_subscribe), 1,
	    0 },
	{ WAL_MSG_SHM_OPEN, "SHM_OPEN", sizeof(struct wal_msg_shm_open), 1, 0 },
	{ WAL_MSG_PING, "PING", sizeof(struct wal_msg), 1, 0 },
	{ WAL_MSG_PRODUCER, "PRODUCER", sizeof(struct wal_msg_producer), 1, 0 },
	{ WAL_MSG_APPEND_P, "APPEND_P", sizeof(struct wal_msg_append_p), 0,
	    0 },
	{ WAL_MSG_FWD_REGISTER, "FWD_REGISTER",
	    sizeof(struct wal_msg_fwd_register), 1, 0 },
	{ WAL_MSG_FWD_POSITION, "FWD_POSITION",
	    sizeof(struct wal_msg_fwd_position), 1, 0 },
	{ WAL_MSG_METRICS, "METRICS", sizeof(struct wal_msg), 1, 0 },
	{ WAL_MSG_RESTART, "RESTART", sizeof(struct wal_msg), 1, 0 },
	{ WAL_MSG_WELCOME, "WELCOME", sizeof(struct wal_msg_welcome), 1, 1 },
	{ WAL_MSG_ACK, "ACK", sizeof(struct wal_msg_ack), 0, 1 },
	{ WAL_MSG_DURABLE, "DURABLE", sizeof(struct wal_msg_durable), 1, 1 },
	{ WAL_MSG_ERROR, "ERROR", sizeof(struct wal_msg_error), 0, 1 },
	{ WAL_MSG_STATUS_REPLY, "STATUS_REPLY", sizeof(struct wal_status), 0,
	    1 },
	{ WAL_MSG_OK, "OK", sizeof(struct wal_msg), 1, 1 },
	{ WAL_MSG_RECORDS, "RECORDS", sizeof(struct wal_msg_records), 0, 1 },
	{ WAL_MSG_RECORD_FD, "RECORD_FD", sizeof(struct wal_msg) +
	    sizeof(struct wal_rec_out), 1, 1 },
	{ WAL_MSG_SUB_END, "SUB_END", sizeof(struct wal_msg_sub_end), 1, 1 },
	{ WAL_MSG_SHM_READY, "SHM_READY", sizeof(struct wal_msg_shm_ready), 1,
	    1 },
	{ WAL_MSG_PRODUCER_OK, "PRODUCER_OK",
	    sizeof(struct wal_msg_producer_ok), 1, 1 },
	{ WAL_MSG_METRICS_REPLY, "METRICS_REPLY", sizeof(struct wal_msg), 0,
	    1 },
	{ WAL_MSG_FWD_STATE, "FWD_STATE", sizeof(struct wal_msg_fwd_state), 1,
	    1 },
};

static const char *const perr_text[] = {
	[WAL_PERR_PROTO] = "malformed frame",
	[WAL_PERR_VERSION] = "protocol version mismatch",
	[WAL_PERR_TOO_LARGE] = "record too large",
	[WAL_PERR_NOSPC] = "no space left on the log's device",
	[WAL_PERR_IO] = "I/O error in the log",
	[WAL_PERR_PERM] = "permission denied",
	[WAL_PERR_BUSY] = "too many connections",
	[WAL_PERR_BADFD] = "bad memfd",
	[WAL_PERR_SHUTDOWN] = "daemon is shutting down",
	[WAL_PERR_UNSUPPORTED] = "request not supported",
	[WAL_PERR_SYNC] = "sync failed",
	[WAL_PERR_LAGGING] = "subscriber too far behind",
	[WAL_PERR_TIMEOUT] = "connection timed out",
	[WAL_PERR_PRODUCER] = "producer refused",
	[WAL_PERR_PSEQ] = "producer sequence out of order",
	[WAL_PERR_GAP] = "records removed before they were forwarded",
};

static int	bad(char *why, size_t len, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));
static int	check_records(const uint8_t *buf, size_t len, size_t fixed,
		    uint32_t count, size_t rec_hdr, char *why, size_t whylen);

/* Name of a message type. */
const char *
wal_proto_type_name(unsigned type)
{
	size_t i;

	for (i = 0; i < sizeof msg_table / sizeof msg_table[0]; i++)
		if (msg_table[i].type == type)
			return (msg_table[i].name);
	return ("unknown");
}

/* Text of a protocol error code. */
const char *
wal_proto_strerror(unsigned code)
{
	if (code == 0 || code >= sizeof perr_text / sizeof perr_text[0])
		return ("unknown error");
	return (perr_text[code]);
}

/* Check a received frame's structure. */
int
wal_proto_check(const void *buf, size_t len, int from_daemon, char *why,
    size_t whylen)
{
	struct wal_msg hdr;
	const uint8_t *p = buf;
	size_t i;

	if (len < sizeof hdr)
		return (bad(why, whylen, "frame of %zu bytes is shorter than "
		    "the %zu-byte header", len, sizeof hdr));
	memcpy(&hdr, p, sizeof hdr);
	if (hdr.len != len)
		return (bad(why, whylen, "frame header says %u bytes but %zu "
		    "arrived", hdr.len, len));
	if (len > WAL_PROTO_MAX_FRAME)
		return (bad(why, whylen, "frame of %zu bytes exceeds %u", len,
		    WAL_PROTO_MAX_FRAME));
	for (i = 0; i < sizeof msg_table / sizeof msg_table[0]; i++)
		if (msg_table[i].type == hdr.type)
			break;
	if (i == sizeof msg_table / sizeof msg_table[0] ||
	    msg_table[i].from_daemon != from_daemon)
		return (bad(why, whylen, "unexpected message type %u",
		    hdr.type));
	if (len < msg_table[i].size || (msg_table[i].exact &&
	    len != msg_table[i].size))
		return (bad(why, whylen, "%s frame of %zu bytes, expected %s%zu",
		    msg_table[i].name, len, msg_table[i].exact ? "" :
		    "at least ", msg_table[i].size));

	switch (hdr.type) {
	case WAL_MSG_HELLO: {
		struct wal_msg_hello h;

		memcpy(&h, p, sizeof h);
		if (h.version_min > h.version_max || h.version_min == 0)
			return (bad(why, whylen, "HELLO with version range "
			    "%u..%u", h.version_min, h.version_max));
		if (h.ack > WAL_ACK_DURABLE)
			return (bad(why, whylen, "HELLO with ack level %u",
			    h.ack));
		break;
	}
	case WAL_MSG_APPEND: {
		struct wal_msg_append a;

		memcpy(&a, p, sizeof a);
		if (a.ack > WAL_ACK_DURABLE && a.ack != WAL_ACK_DEFAULT)
			return (bad(why, whylen, "APPEND with ack level %u",
			    a.ack));
		if (a.count == 0)
			return (bad(why, whylen, "APPEND with no records"));
		return (check_records(p, len, sizeof a, a.count, 4, why,
		    whylen));
	}
	case WAL_MSG_APPEND_P: {
		struct wal_msg_append_p a;

		memcpy(&a, p, sizeof a);
		if (a.ack > WAL_ACK_DURABLE && a.ack != WAL_ACK_DEFAULT)
			return (bad(why, whylen, "APPEND_P with ack level %u",
			    a.ack));
		if (a.count == 0)
			return (bad(why, whylen, "APPEND_P with no records"));
		if (a.first_pseq == 0 || a.first_pseq > UINT64_MAX - a.count)
			return (bad(why, whylen, "APPEND_P with producer seq "
			    "%llu", (unsigned long long)a.first_pseq));
		return (check_records(p, len, sizeof a, a.count, 4, why,
		    whylen));
	}
	case WAL_MSG_FWD_REGISTER: {
		struct wal_msg_fwd_register r;
		size_t k;

		memcpy(&r, p, sizeof r);
		if (r.name[0] == '\0')
			return (bad(why, whylen, "FWD_REGISTER without a "
			    "name"));
		for (k = 0; k < sizeof r.name && r.name[k] != '\0'; k++)
			if (strchr("abcdefghijklmnopqrstuvwxyz"
			    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-",
			    r.name[k]) == NULL)
				return (bad(why, whylen, "FWD_REGISTER name "
				    "with byte 0x%02x", (unsigned char)
				    r.name[k]));
		if (k == sizeof r.name)
			return (bad(why, whylen, "FWD_REGISTER name not "
			    "NUL-terminated"));
		if (r.shipped_seq < -2)
			return (bad(why, whylen, "FWD_REGISTER with seq %lld",
			    (long long)r.shipped_seq));
		break;
	}
	case WAL_MSG_APPEND_FD: {
		struct wal_msg_append_fd a;

		memcpy(&a, p, sizeof a);
		if (a.ack > WAL_ACK_DURABLE && a.ack != WAL_ACK_DEFAULT)
			return (bad(why, whylen, "APPEND_FD with ack level %u",
			    a.ack));
		if (a.size > WAL_MAX_PAYLOAD)
			return (bad(why, whylen, "APPEND_FD of %llu bytes "
			    "exceeds the 64 MiB record limit",
			    (unsigned long long)a.size));
		break;
	}
	case WAL_MSG_ACK: {
		struct wal_msg_ack a;

		memcpy(&a, p, sizeof a);
		if ((len - sizeof a) % sizeof(struct wal_ack_entry) != 0 ||
		    (len - sizeof a) / sizeof(struct wal_ack_entry) != a.count)
			return (bad(why, whylen, "ACK with %u entries in %zu "
			    "bytes", a.count, len));
		break;
	}
	case WAL_MSG_RECORDS: {
		struct wal_msg_records r;

		memcpy(&r, p, sizeof r);
		return (check_records(p, len, sizeof r, r.count,
		    sizeof(struct wal_rec_out), why, whylen));
	}
	default:
		break;
	}
	return (0);
}

/* Iterate the records of an APPEND frame already checked. */
int
wal_proto_next_record(const struct wal_msg_append *a, size_t len,
    size_t *off, const uint8_t **payload, uint32_t *size)
{
	const uint8_t *p = (const uint8_t *)a;
	uint32_t n;

	if (*off == 0)
		*off = sizeof *a;
	if (*off + 4 > len)
		return (0);
	memcpy(&n, p + *off, 4);
	*payload = p + *off + 4;
	*size = n;
	*off += 4 + (size_t)n;
	return (1);
}

/*
 * Check count records of (rec_hdr bytes whose last 8 hold size, pad) +
 * payload, packed from offset fixed to exactly len.
 */
static int
check_records(const uint8_t *p, size_t len, size_t fixed, uint32_t count,
    size_t rec_hdr, char *why, size_t whylen)
{
	size_t off = fixed;
	uint32_t i, size;

	for (i = 0; i < count; i++) {
		if (len - off < rec_hdr)
			return (bad(why, whylen, "record %u of %u: header "
			    "runs past the end of the frame", i + 1, count));
		if (rec_hdr == 4)
			memcpy(&size, p + off, 4);
		else
			memcpy(&size, p + off + offsetof(struct wal_rec_out,
			    size), 4);
		off += rec_hdr;
		if (size > len - off)
			return (bad(why, whylen, "record %u of %u claims %u "
			    "bytes but only %zu remain in the frame", i + 1,
			    count, size, len - off));
		off += size;
	}
	if (off != len)
		return (bad(why, whylen, "%zu bytes after the last of %u "
		    "records", len - off, count));
	return (0);
}

static int
bad(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (why != NULL && len > 0) {
		va_start(ap, fmt);
		vsnprintf(why, len, fmt, ap);
		va_end(ap);
	}
	return (WAL_PERR_PROTO);
}

/* The socket a client uses when it names none. */
void
wal_proto_default_socket(char *buf, size_t len)
{
	const char *env = getenv(WAL_PROTO_SOCKET_ENV);
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	const char *ns = getenv(WAL_PROTO_NAMESPACE_ENV);

	if (env != NULL && *env != '\0') {
		snprintf(buf, len, "%s", env);
		return;
	}
	if (ns != NULL && *ns != '\0' && wal_proto_namespace_valid(ns)) {
		wal_proto_namespace_socket(ns, buf, len);
		return;
	}
	if (geteuid() != 0 && xdg != NULL && *xdg != '\0') {
		snprintf(buf, len, "%s/%s", xdg, WAL_PROTO_USER_SOCKET);
		if (access(buf, F_OK) == 0)
			return;
	}
	snprintf(buf, len, "%s", WAL_PROTO_SYSTEM_SOCKET);
}

/* Letters, digits, '_', '-', '.'; not "", not ".x", not too long. */
int
wal_proto_namespace_valid(const char *ns)
{
	size_t i, n = strlen(ns);

	if (n == 0 || n > WAL_PROTO_NAMESPACE_MAX || ns[0] == '.')
		return (0);
	for (i = 0; i < n; i++)
		if (!((ns[i] >= 'a' && ns[i] <= 'z') || (ns[i] >= 'A' &&
		    ns[i] <= 'Z') || (ns[i] >= '0' && ns[i] <= '9') ||
		    ns[i] == '_' || ns[i] == '-' || ns[i] == '.'))
			return (0);
	return (1);
}

/* A namespace's socket, as the daemon of that namespace binds it. */
void
wal_proto_namespace_socket(const char *ns, char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (geteuid() != 0 && xdg != NULL && *xdg != '\0') {
		snprintf(buf, len, "%s/walmmapd/%s.sock", xdg, ns);
		if (access(buf, F_OK) == 0)
			return;
	}
	snprintf(buf, len, "%s/%s.sock", WAL_SYSTEM_SOCKET_DIR, ns);
}
