/*
 * libwalmmap - the socket to walmmapd: connect, hello, send, receive;
 * error texts.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "walmmap.h"

static const char *const error_text[] = {
	[WALMMAP_OK] = "success",
	[WALMMAP_ENODAEMON] = "walmmapd is not running",
	[WALMMAP_EPERM] = "permission denied",
	[WALMMAP_ETOOLARGE] = "record too large",
	[WALMMAP_ENOSPC] = "no space left on the log's device",
	[WALMMAP_EVERSION] = "protocol version mismatch",
	[WALMMAP_ELOST] = "connection to walmmapd lost",
	[WALMMAP_ETIMEDOUT] = "timed out",
	[WALMMAP_EAGAIN] = "would block",
	[WALMMAP_EINVAL] = "invalid argument",
	[WALMMAP_EIO] = "I/O error",
	[WALMMAP_EPROTO] = "protocol error",
	[WALMMAP_ENOMEM] = "out of memory",
	[WALMMAP_EBUSY] = "walmmapd is busy",
	[WALMMAP_ESYNC] = "sync failed",
	[WALMMAP_ECORRUPT] = "the log is damaged",
	[WALMMAP_ESHUTDOWN] = "walmmapd is shutting down",
	[WALMMAP_ENOTSUP] = "not supported",
	[WALMMAP_EREMOVED] = "records removed by retention",
};

const char *
walmmap_strerror(int err)
{
	if (err < 0)
		err = -err;
	if ((size_t)err >= sizeof error_text / sizeof error_text[0])
		return ("unknown error");
	return (error_text[err]);
}

int
wm_seterr(char *msg, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, WM_MSG_MAX, fmt, ap);
	va_end(ap);
	return (-code);
}

int
wm_perr(unsigned code)
{
	switch (code) {
	case WAL_PERR_VERSION:
		return (WALMMAP_EVERSION);
	case WAL_PERR_TOO_LARGE:
		return (WALMMAP_ETOOLARGE);
	case WAL_PERR_NOSPC:
		return (WALMMAP_ENOSPC);
	case WAL_PERR_IO:
	case WAL_PERR_BADFD:
		return (WALMMAP_EIO);
	case WAL_PERR_PERM:
		return (WALMMAP_EPERM);
	case WAL_PERR_BUSY:
		return (WALMMAP_EBUSY);
	case WAL_PERR_SHUTDOWN:
		return (WALMMAP_ESHUTDOWN);
	case WAL_PERR_UNSUPPORTED:
		return (WALMMAP_ENOTSUP);
	case WAL_PERR_SYNC:
		return (WALMMAP_ESYNC);
	case WAL_PERR_LAGGING:	/* the daemon ended the connection */
	case WAL_PERR_TIMEOUT:
		return (WALMMAP_ELOST);
	default:
		return (WALMMAP_EPROTO);
	}
}

int64_t
wm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

int64_t
wm_deadline(int timeout_ms)
{
	return (timeout_ms < 0 ? -1 : wm_now_ms() + timeout_ms);
}

int
wm_left_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return (-1);
	left = deadline - wm_now_ms();
	if (left < 0)
		return (0);
	return (left > 1000000 ? 1000000 : (int)left);
}

int
wm_expired(int64_t deadline)
{
	return (deadline >= 0 && wm_now_ms() > deadline);
}

/* Connect within the default limit. */
int
wm_connect(const char *path, uint8_t ack, struct wal_msg_welcome *w,
    char *msg)
{
	return (wm_connect_timeout(path, ack, w, WALMMAP_CONNECT_TIMEOUT_MS,
	    msg));
}

/*
 * Connect to the socket before deadline. A daemon whose listen queue is
 * full (one that stopped accepting) makes connect(2) wait; on a Unix
 * socket SO_SNDTIMEO bounds that wait, which then fails with EAGAIN.
 * Returns 0, or -1 with errno (ETIMEDOUT when the deadline passed).
 */
static int
connect_by(int s, const struct sockaddr_un *sun, int64_t deadline)
{
	struct timeval tv;
	int left, rc;

	for (;;) {
		if ((left = wm_left_ms(deadline)) == 0) {
			errno = ETIMEDOUT;
			return (-1);
		}
		memset(&tv, 0, sizeof tv);
		if (left > 0) {
			tv.tv_sec = left / 1000;
			tv.tv_usec = (left % 1000) * 1000;
		}
		if (setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) ==
		    -1)
			return (-1);
		rc = connect(s, (const struct sockaddr *)sun, sizeof *sun);
		if (rc == 0 || errno != EINTR)
			break;
	}
	if (rc == -1 && errno == EAGAIN)
		errno = ETIMEDOUT;
	/* Later sends block, or not, as each asks: no limit of their own. */
	memset(&tv, 0, sizeof tv);
	if (rc == 0 && setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv,
	    sizeof tv) == -1)
		return (-1);
	return (rc);
}

/*
 * The daemon's answer to HELLO, read before deadline. Returns its length,
 * 0 when the daemon closed, -1 with errno (ETIMEDOUT when the deadline
 * passed). A refusal closes with our HELLO unread, and Linux then reports
 * ECONNRESET before the queued ERROR: ask again to read it.
 */
static ssize_t
hello_reply(int s, uint8_t *buf, size_t len, int64_t deadline)
{
	struct pollfd pfd = { s, POLLIN, 0 };
	ssize_t n;
	int rc, reset = 0;

	for (;;) {
		n = recv(s, buf, len, MSG_DONTWAIT);
		if (n >= 0)
			return (n);
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET && !reset) {
			reset = 1;
			continue;
		}
		if (errno != EAGAIN) {
			if (reset)
				errno = ECONNRESET;
			return (-1);
		}
		if (reset) {
			errno = ECONNRESET;
			return (-1);
		}
		rc = poll(&pfd, 1, wm_left_ms(deadline));
		if (rc == 0) {
			errno = ETIMEDOUT;
			return (-1);
		}
		if (rc == -1 && errno != EINTR)
			return (-1);
	}
}

/* Connect and exchange HELLO/WELCOME, all within timeout_ms. */
int
wm_connect_timeout(const char *path, uint8_t ack, struct wal_msg_welcome *w,
    int timeout_ms, char *msg)
{
	struct sockaddr_un sun;
	struct wal_msg_hello h;
	uint8_t buf[sizeof(struct wal_msg_error) + 600];
	char def[sizeof sun.sun_path + 64];
	struct wal_msg hdr;
	int64_t deadline = wm_deadline(timeout_ms);
	ssize_t n;
	int s, rc;

	if (path == NULL) {
		const char *ns = getenv(WAL_PROTO_NAMESPACE_ENV);
		const char *env = getenv(WAL_PROTO_SOCKET_ENV);

		/* A bad name must not lead to another namespace's log. */
		if ((env == NULL || *env == '\0') && ns != NULL &&
		    *ns != '\0' && !wal_proto_namespace_valid(ns))
			return (wm_seterr(msg, WALMMAP_EINVAL, "%s=\"%.64s\" "
			    "is not a namespace name (1 to %d letters, digits, "
			    "'_', '-' or '.', not starting with '.')",
			    WAL_PROTO_NAMESPACE_ENV, ns,
			    WAL_PROTO_NAMESPACE_MAX));
		wal_proto_default_socket(def, sizeof def);
		path = def;
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path)
		return (wm_seterr(msg, WALMMAP_EINVAL, "socket path %s is "
		    "longer than %zu bytes", path, sizeof sun.sun_path - 1));
	memcpy(sun.sun_path, path, strlen(path));
	if ((s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) == -1)
		return (wm_seterr(msg, WALMMAP_EIO, "socket: %s",
		    strerror(errno)));
	if (connect_by(s, &sun, deadline) == -1) {
		int e = errno;

		close(s);
		if (e == ENOENT || e == ECONNREFUSED || e == ENOTDIR)
			return (wm_seterr(msg, WALMMAP_ENODAEMON, "walmmapd is "
			    "not running: cannot connect to %s: %s", path,
			    strerror(e)));
		if (e == EACCES || e == EPERM)
			return (wm_seterr(msg, WALMMAP_EPERM, "permission "
			    "denied to connect to %s (socket_mode and "
			    "socket_group in walmmapd.conf)", path));
		if (e == EPROTOTYPE)
			return (wm_seterr(msg, WALMMAP_ENODAEMON, "%s is not "
			    "walmmapd's socket (not SOCK_SEQPACKET)", path));
		if (e == ETIMEDOUT)
			return (wm_seterr(msg, WALMMAP_ETIMEDOUT, "walmmapd at "
			    "%s did not accept the connection within %d ms "
			    "(its listen queue is full)", path, timeout_ms));
		return (wm_seterr(msg, WALMMAP_EIO, "cannot connect to %s: %s",
		    path, strerror(e)));
	}
	memset(&h, 0, sizeof h);
	h.hdr.type = WAL_MSG_HELLO;
	h.hdr.len = sizeof h;
	h.hdr.id = 1;
	h.version_min = WAL_PROTO_VERSION_MIN;
	h.version_max = WAL_PROTO_VERSION;
	h.ack = ack;
	/*
	 * The daemon answers WELCOME, or ERROR when it refuses us. One that
	 * refuses may close before our HELLO arrives; its ERROR frame is
	 * still queued, so read on even if the send failed.
	 */
	rc = wm_send(s, &h, sizeof h, -1, 0, msg);
	if (rc < 0) {
		n = recv(s, buf, sizeof buf, MSG_DONTWAIT);
		if (n == -1 && errno == ECONNRESET)
			n = recv(s, buf, sizeof buf, MSG_DONTWAIT);
		if (n <= 0) {
			close(s);
			return (rc);
		}
	} else
		n = hello_reply(s, buf, sizeof buf, deadline);
	if (n == -1 && errno == ETIMEDOUT) {
		close(s);
		return (wm_seterr(msg, WALMMAP_ETIMEDOUT, "walmmapd at %s did "
		    "not answer the handshake within %d ms", path,
		    timeout_ms));
	}
	if (n <= 0) {
		close(s);
		return (wm_seterr(msg, WALMMAP_ELOST, "walmmapd at %s closed "
		    "the connection during the handshake%s%s", path,
		    n < 0 ? ": " : "", n < 0 ? strerror(errno) : ""));
	}
	if ((size_t)n < sizeof hdr) {
		close(s);
		return (wm_seterr(msg, WALMMAP_EPROTO, "walmmapd at %s sent a "
		    "%zd-byte handshake reply", path, n));
	}
	memcpy(&hdr, buf, sizeof hdr);
	if (hdr.type == WAL_MSG_ERROR && (size_t)n >= sizeof(struct
	    wal_msg_error)) {
		struct wal_msg_error e;

		memcpy(&e, buf, sizeof e);
		close(s);
		return (wm_seterr(msg, wm_perr(e.code), "walmmapd at %s "
		    "refused the connection: %.*s", path,
		    (int)((size_t)n - sizeof e), (char *)buf + sizeof e));
	}
	if (hdr.type != WAL_MSG_WELCOME || (size_t)n != sizeof *w) {
		close(s);
		return (wm_seterr(msg, WALMMAP_EPROTO, "%s did not answer "
		    "HELLO with WELCOME (got %s, %zd bytes)", path,
		    wal_proto_type_name(hdr.type), n));
	}
	memcpy(w, buf, sizeof *w);
	if (w->version < WAL_PROTO_VERSION_MIN ||
	    w->version > WAL_PROTO_VERSION) {
		close(s);
		return (wm_seterr(msg, WALMMAP_EVERSION, "walmmapd at %s "
		    "chose protocol version %u; this library speaks %d..%d",
		    path, w->version, WAL_PROTO_VERSION_MIN,
		    WAL_PROTO_VERSION));
	}
	return (s);
}

int
wm_send(int sock, const void *buf, size_t len, int fd, int dontwait,
    char *msg)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct msghdr m;
	struct iovec iov;
	ssize_t n;

	memset(&m, 0, sizeof m);
	iov.iov_base = (void *)(uintptr_t)buf;
	iov.iov_len = len;
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	if (fd != -1) {
		memset(&cm, 0, sizeof cm);
		m.msg_control = cm.buf;
		m.msg_controllen = sizeof cm.buf;
		cm.hdr.cmsg_level = SOL_SOCKET;
		cm.hdr.cmsg_type = SCM_RIGHTS;
		cm.hdr.cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(&cm.hdr), &fd, sizeof fd);
	}
	do
		n = sendmsg(sock, &m, MSG_NOSIGNAL |
		    (dontwait ? MSG_DONTWAIT : 0));
	while (n == -1 && errno == EINTR);
	if (n == -1) {
		if (errno == EAGAIN)
			return (-WALMMAP_EAGAIN);
		return (wm_seterr(msg, WALMMAP_ELOST, "cannot send to "
		    "walmmapd: %s", strerror(errno)));
	}
	return (0);
}

int
wm_recv(int sock, uint8_t *buf, int64_t deadline, int *fd, char *msg)
{
	int fds[WM_MAX_FDS], n, i;

	n = wm_recv_fds(sock, buf, deadline, fds, msg);
	*fd = fds[0];
	for (i = 1; i < WM_MAX_FDS; i++)
		if (fds[i] != -1)
			close(fds[i]);
	return (n);
}

int
wm_recv_fds(int sock, uint8_t *buf, int64_t deadline, int *fd, char *msg)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 4)];
	} cm;
	struct pollfd pfd = { sock, POLLIN, 0 };
	struct cmsghdr *c;
	struct msghdr m;
	struct iovec iov;
	char why[256];
	ssize_t n;
	int rc, nfds, fds[4], i, j, got = 0, reset = 0;

	for (j = 0; j < WM_MAX_FDS; j++)
		fd[j] = -1;
	for (;;) {
		memset(&m, 0, sizeof m);
		iov.iov_base = buf;
		iov.iov_len = WAL_PROTO_MAX_FRAME;
		m.msg_iov = &iov;
		m.msg_iovlen = 1;
		m.msg_control = cm.buf;
		m.msg_controllen = sizeof cm.buf;
		n = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET && !reset) {
			/* Frames sent before the close are still queued. */
			reset = 1;
			continue;
		}
		if (errno != EAGAIN || reset)
			return (wm_seterr(msg, WALMMAP_ELOST, "cannot receive "
			    "from walmmapd: %s", strerror(reset ? ECONNRESET :
			    errno)));
		rc = poll(&pfd, 1, wm_left_ms(deadline));
		if (rc == 0)
			return (0);
		if (rc == -1 && errno != EINTR)
			return (wm_seterr(msg, WALMMAP_EIO, "poll: %s",
			    strerror(errno)));
	}
	for (c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		if (nfds > 4)
			nfds = 4;
		memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)nfds);
		for (i = 0; i < nfds; i++) {
			if (got < WM_MAX_FDS)
				fd[got++] = fds[i];
			else
				close(fds[i]);
		}
	}
	if (n == 0) {
		wm_close_fds(fd);
		return (wm_seterr(msg, WALMMAP_ELOST, "walmmapd closed the "
		    "connection"));
	}
	if (wal_proto_check(buf, (size_t)n, 1, why, sizeof why) != 0 ||
	    (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		wm_close_fds(fd);
		return (wm_seterr(msg, WALMMAP_EPROTO, "walmmapd sent a bad "
		    "frame: %s", m.msg_flags & MSG_TRUNC ? "too large" : why));
	}
	return ((int)n);
}

int
wm_recv2(int sock, uint8_t *buf[2], size_t len[2], int fd[2],
    int64_t deadline, int pollfirst, int *missed, int *late, char *msg)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 4)];
	} cm[2];
	struct pollfd pfd = { sock, POLLIN, 0 };
	struct mmsghdr mm[2];
	struct iovec iov[2];
	struct cmsghdr *c;
	char why[256];
	int rc, n, i, k, nfds, fds[4], reset = 0;

	*missed = pollfirst && !wm_expired(deadline) ? -1 : 0;
	*late = 0;
	fd[0] = fd[1] = -1;
	for (;;) {
		if (pollfirst && !wm_expired(deadline)) {
			pollfirst = 0;
			rc = poll(&pfd, 1, wm_left_ms(deadline));
			if (rc == 0)
				return (0);
			if (rc == -1 && errno != EINTR)
				return (wm_seterr(msg, WALMMAP_EIO, "poll: %s",
				    strerror(errno)));
		}
		memset(mm, 0, sizeof mm);
		for (i = 0; i < 2; i++) {
			iov[i].iov_base = buf[i];
			iov[i].iov_len = WAL_PROTO_MAX_FRAME;
			mm[i].msg_hdr.msg_iov = &iov[i];
			mm[i].msg_hdr.msg_iovlen = 1;
			mm[i].msg_hdr.msg_control = cm[i].buf;
			mm[i].msg_hdr.msg_controllen = sizeof cm[i].buf;
		}
		n = recvmmsg(sock, mm, 2, MSG_DONTWAIT | MSG_CMSG_CLOEXEC,
		    NULL);
		if (n > 0)
			break;
		if (n == 0)
			continue;	/* (not for a socket) */
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET && !reset) {
			/* Frames sent before the close are still queued. */
			reset = 1;
			continue;
		}
		if (errno != EAGAIN || reset)
			return (wm_seterr(msg, WALMMAP_ELOST, "cannot receive "
			    "from walmmapd: %s", strerror(reset ? ECONNRESET :
			    errno)));
		if (*missed == 0)
			*missed = 1;
		if (wm_expired(deadline))
			return (0);
		pollfirst = 1;
	}
	for (i = 0; i < n; i++) {
		for (c = CMSG_FIRSTHDR(&mm[i].msg_hdr); c != NULL;
		    c = CMSG_NXTHDR(&mm[i].msg_hdr, c)) {
			if (c->cmsg_level != SOL_SOCKET ||
			    c->cmsg_type != SCM_RIGHTS)
				continue;
			nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (nfds > 4)
				nfds = 4;
			memcpy(fds, CMSG_DATA(c), sizeof(int) *
			    (size_t)nfds);
			for (k = 0; k < nfds; k++) {
				if (fd[i] == -1)
					fd[i] = fds[k];
				else
					close(fds[k]);
			}
		}
		len[i] = mm[i].msg_len;
	}
	/* An end after a frame: the next call reports it. */
	if (n == 2 && len[1] == 0) {
		if (fd[1] != -1)
			close(fd[1]);
		fd[1] = -1;
		n = 1;
	}
	for (i = 0; i < n; i++) {
		if (len[i] == 0) {
			rc = wm_seterr(msg, WALMMAP_ELOST, "walmmapd closed "
			    "the connection");
			goto bad;
		}
		if (wal_proto_check(buf[i], len[i], 1, why, sizeof why) != 0 ||
		    (mm[i].msg_hdr.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
			rc = wm_seterr(msg, WALMMAP_EPROTO, "walmmapd sent a "
			    "bad frame: %s", mm[i].msg_hdr.msg_flags &
			    MSG_TRUNC ? "too large" : why);
			if (i == 0)
				goto bad;
			/*
			 * The frame before it is good and gone from the
			 * socket like this one: the caller handles it, then
			 * reports this error.
			 */
			if (fd[1] != -1)
				close(fd[1]);
			fd[1] = -1;
			*late = rc;
			return (1);
		}
	}
	return (n);
bad:
	for (i = 0; i < 2; i++)
		if (fd[i] != -1) {
			close(fd[i]);
			fd[i] = -1;
		}
	return (rc);
}

void
wm_close_fds(int *fd)
{
	int i;

	for (i = 0; i < WM_MAX_FDS; i++) {
		if (fd[i] != -1)
			close(fd[i]);
		fd[i] = -1;
	}
}
