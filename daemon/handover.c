/*
 * walmmapd - restarts that keep connections.
 *
 * A hand-over gives the next walmmapd process the listening socket, every
 * client connection and every shared-memory ring, with a state that says
 * where each stands. Two ways:
 *
 *  - re-execution (SIGUSR2, or a RESTART request such as "walctl
 *    restart"): this process executes the binary at the path it was
 *    started from (so an upgrade takes effect; /proc/self/exe when that
 *    path is unknown). The pid stays, so systemd's MAINPID stays right.
 *    The descriptors stay open across exec; WALMMAPD_HANDOVER_FDS names
 *    them ("name:fd,...").
 *  - systemd's file-descriptor store (SIGTERM when systemd gives us one:
 *    $FDSTORE is set): each descriptor goes to systemd with FDSTORE=1
 *    and a FDNAME, then this process exits; systemd starts the next one
 *    with them in LISTEN_FDS/LISTEN_FDNAMES. The new process removes them
 *    from the store (FDSTOREREMOVE=1) once it has them.
 *
 * Either way the descriptors are named: "wh-state" (a sealed memfd with
 * the state), "wh-listen" (the listening socket, unless systemd's socket
 * unit holds it), "wh-sockdir" (its directory) and "wh-fN" for the others,
 * which the state refers to by N.
 *
 * Quiescing (handover_run, all in one loop callback, so nothing else runs
 * meanwhile): no new connection is accepted and no new frame read (a
 * frame not read stays in its socket for the next process); the ROTATEs
 * and large APPEND_FDs waiting for their turn are done; the rings of
 * connections already gone are drained to the end; one sync makes every
 * written record durable, and every acknowledgement owed (written and
 * durable, SYNC replies, the rings' durable counts) is queued and sent as
 * far as the sockets take it; what they do not take is handed over in the
 * state and sent by the next process. Records a producer published in its
 * ring and the daemon did not drain yet stay there, and the next process
 * drains them in order. Then the state is written, the sync thread
 * stopped, the ring shut down and closed (a clean checkpoint, the
 * directory lock released) and only then the next process started. If
 * that fails (no binary, exec error) the ring is opened again and this
 * process serves on; a RESTART request gets the error.
 *
 * The state (version HANDOVER_VERSION, checked with a CRC) begins with a
 * fixed header; each connection's part starts with its length, so a newer
 * walmmapd can read an older state and older fields never move: new
 * fields go at the end of a part. A process that cannot read the state
 * says why, closes what it cannot use and serves the listening socket
 * alone: clients reconnect.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "forward.h"
#include "handover.h"
#include "log.h"
#include "rights.h"
#include "server.h"
#include "wal_crc.h"
#include "wal_ptab.h"
#include "wal_reader.h"
#include "wal_ring.h"

#define HANDOVER_MAGIC		0x4f48574du	/* "MWHO" */
#define HANDOVER_VERSION	1u
#define HANDOVER_ENV_FDS	"WALMMAPD_HANDOVER_FDS"
#define HANDOVER_ENV_LOG	"WALMMAPD_HANDOVER_LOG"
#define HANDOVER_NONE		UINT32_MAX	/* no descriptor */
#define HANDOVER_MAX_STATE	(1024u * 1024 * 1024)
#define HANDOVER_ENV_MAX	(120u * 1024)	/* under MAX_ARG_STRLEN */

/* The fixed start of the state. */
struct handover_hdr {
	uint32_t	magic;
	uint32_t	version;
	uint64_t	length;		/* whole state, this header included */
	uint32_t	crc;		/* CRC-32 of what follows the header */
	uint32_t	pad;
	uint64_t	started_ns;	/* quiescing began (CLOCK_MONOTONIC) */
};

/* A growing buffer the state is written into. */
struct hbuf {
	uint8_t		*p;
	size_t		 len;
	size_t		 cap;
	int		 failed;
};

/* Reading the state back: every get checks the bounds. */
struct hread {
	const uint8_t	*p;
	size_t		 len;
	size_t		 off;
	int		 bad;
};

/* Descriptors handed over: the ones this process passes, by index. */
struct hfds {
	int		*fd;
	size_t		 n;
	size_t		 cap;
	int		 listen;	/* "wh-listen", or -1 */
	int		 sockdir;	/* "wh-sockdir", or -1 */
};

/* Descriptors received, by name. */
struct hin {
	char		 name[32];
	int		 fd;
	int		 used;
};

static void	handover_cb(int, short, void *);
static int	handover_quiesce(struct server *, char *, size_t);
static int	handover_write(struct server *, enum handover_mode,
		    struct hfds *, uint64_t, int *statefd, char *, size_t);
static void	handover_write_conn(struct hbuf *, struct hfds *,
		    struct conn *);
static int	handover_exec(struct server *, struct hfds *, int statefd,
		    char *, size_t);
static void	handover_store(struct server *, struct hfds *, int statefd);
static void	handover_store_one(const char *, int);
static void	handover_resume(struct server *, int ring_closed);
static int	handover_reopen_ring(struct server *, char *, size_t);
static int	handover_in_env(struct hin **, size_t *, char *, size_t);
static int	handover_in_systemd(struct server *, struct hin **, size_t *,
		    char *, size_t);
static void	handover_free_names(char **, int);
static int	handover_read(struct server *, struct hin *, size_t, int apply,
		    char *, size_t);
static int	handover_read_conn(struct server *, struct hread *,
		    struct hin *, size_t, int apply, char *, size_t);
static struct hin *handover_in_find(struct hin *, size_t, const char *);
static int	handover_in_take(struct hin *, size_t, uint32_t, int *fd);
static void	handover_cloexec(int fd, int on);
static void	handover_signals(int how);
static uint64_t	handover_mono_ns(void);

static void	hb_put(struct hbuf *, const void *, size_t);
static void	hb_u8(struct hbuf *, uint8_t);
static void	hb_u32(struct hbuf *, uint32_t);
static void	hb_u64(struct hbuf *, uint64_t);
static void	hb_i64(struct hbuf *, int64_t);
static uint32_t	hf_add(struct hfds *, int fd);
static int	hr_get(struct hread *, void *, size_t);
static uint8_t	hr_u8(struct hread *);
static uint32_t	hr_u32(struct hread *);
static uint64_t	hr_u64(struct hread *);
static int64_t	hr_i64(struct hread *);

static char	**handover_argv;
static char	  handover_exe[PATH_MAX];	/* "": use /proc/self/exe */
static char	  handover_sockpath[PATH_MAX];	/* inherited socket's path */

/* One request at a time, run on the next loop pass. */
static struct {
	int			 pending;
	enum handover_mode	 mode;
	const struct conn	*req;		/* RESTART to answer, or NULL */
	uint64_t		 req_id;
} handover_req;

/* Remember how we were started (argv, the binary), before anything else. */
void
handover_init(int argc, char **argv)
{
	char buf[PATH_MAX];
	ssize_t n;
	char *del;
	int i;

	/* A copy: option parsing writes into argv (-o KEY=VALUE). */
	if ((handover_argv = calloc((size_t)argc + 1, sizeof *argv)) == NULL)
		return;
	for (i = 0; i < argc; i++)
		if ((handover_argv[i] = strdup(argv[i])) == NULL) {
			handover_argv = NULL;	/* no restarts then */
			return;
		}
	n = readlink("/proc/self/exe", buf, sizeof buf - 1);
	if (n <= 0)
		return;
	buf[n] = '\0';
	if ((del = strstr(buf, " (deleted)")) != NULL && del[10] == '\0')
		*del = '\0';
	snprintf(handover_exe, sizeof handover_exe, "%s", buf);
}

/* Was this process started by a re-execution (it must not detach)? */
int
handover_incoming(int *was_detached)
{
	const char *log = getenv(HANDOVER_ENV_LOG);

	*was_detached = log != NULL && strcmp(log, "syslog") == 0;
	return (getenv(HANDOVER_ENV_FDS) != NULL);
}

/*
 * systemd 254 and later put FileDescriptorStoreMax= in $FDSTORE; for older
 * ones walmmapd.service says WALMMAPD_FDSTORE=1 itself.
 */
int
handover_fdstore_available(void)
{
	const char *s = getenv("FDSTORE"), *w = getenv("WALMMAPD_FDSTORE");

	if (getenv("NOTIFY_SOCKET") == NULL)
		return (0);
	if (s != NULL)
		return (strtoul(s, NULL, 10) > 0);
	return (w != NULL && strcmp(w, "1") == 0);
}

/* A connection is freed: forget it as the requester. */
void
handover_conn_gone(const struct conn *c)
{
	if (handover_req.req == c)
		handover_req.req = NULL;
}

/* Ask for a hand-over on the next loop pass. */
int
handover_request(struct server *srv, struct conn *c, uint64_t id,
    enum handover_mode mode)
{
	static const struct timeval zero = { 0, 0 };

	if (handover_req.pending || srv->stopping) {
		if (c != NULL)
			conn_error(c, id, WAL_PERR_BUSY, 0, "%s",
			    srv->stopping ? "walmmapd is stopping" :
			    "a restart is already under way");
		else
			log_warnx("restart: %s; ignoring the signal",
			    srv->stopping ? "walmmapd is stopping" :
			    "a restart is already under way");
		return (-1);
	}
	handover_req.pending = 1;
	handover_req.mode = mode;
	handover_req.req = c;
	handover_req.req_id = id;
	if (c != NULL)
		log_info("restart asked for by client pid %ld uid %ld",
		    (long)c->pid, (long)c->uid);
	if (event_base_once(srv->base, -1, EV_TIMEOUT, handover_cb, srv,
	    &zero) == -1) {
		handover_req.pending = 0;
		if (c != NULL)
			conn_error(c, id, WAL_PERR_IO, 0, "cannot schedule "
			    "the restart");
		return (-1);
	}
	return (0);
}

/* The loop pass after the request: hand over (or say why not). */
static void
handover_cb(int fd, short ev, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)ev;
	(void)handover_run(srv, handover_req.mode);
}

/*
 * Hand over now. Returns only if it failed (0): this process serves on
 * (a RESTART request has the error), or stops if it was stopping anyway.
 */
int
handover_run(struct server *srv, enum handover_mode mode)
{
	struct hfds fds = { NULL, 0, 0, -1, -1 };
	struct conn *c;
	char why[PATH_MAX + 1024];
	uint64_t t0 = handover_mono_ns();
	int statefd = -1, ring_closed = 0, shut_failed = 0;
	int64_t durable = -1;
	struct wal_error err;
	struct stat st;

	why[0] = '\0';
	errno = 0;
	if (srv->stopping || srv->sync_failed) {
		snprintf(why, sizeof why, "walmmapd is stopping");
		goto fail;
	}
	if (mode == HANDOVER_EXEC && handover_argv == NULL) {
		snprintf(why, sizeof why, "out of memory at start for the "
		    "command line");
		goto fail;
	}
	if (mode == HANDOVER_EXEC && handover_exe[0] != '\0' &&
	    (stat(handover_exe, &st) == -1 || !S_ISREG(st.st_mode) ||
	    access(handover_exe, X_OK) == -1)) {
		snprintf(why, sizeof why, "cannot execute %s: %s",
		    handover_exe, errno != 0 ? strerror(errno) :
		    "not a regular file");
		goto fail;
	}
	log_info("restart: handing %u connection%s over to the next walmmapd "
	    "(%s)", srv->nconns, srv->nconns == 1 ? "" : "s",
	    mode == HANDOVER_EXEC ? "re-executing" : "systemd's descriptor "
	    "store");
	if (handover_quiesce(srv, why, sizeof why) != 0)
		goto fail;
	if (handover_write(srv, mode, &fds, t0, &statefd, why,
	    sizeof why) != 0)
		goto fail;
	/* Nothing is written after this: the next process opens the ring. */
	syncer_stop(srv->syncer);
	srv->syncer = NULL;
	ring_closed = 1;
	if (wal_ring_shutdown(srv->ring, &err) != 0) {
		/* A failed sync: fail-stop, once the log is open again. */
		snprintf(why, sizeof why, "%s", err.msg);
		shut_failed = 1;
		durable = wal_ring_durable_seq(srv->ring);
		wal_ring_close(srv->ring);
		srv->ring = NULL;
		goto fail;
	}
	wal_ring_close(srv->ring);
	srv->ring = NULL;
	if (mode == HANDOVER_FDSTORE)
		handover_store(srv, &fds, statefd);	/* does not return */
	(void)handover_exec(srv, &fds, statefd, why, sizeof why);
fail:
	log_warnx("restart failed: %s; this walmmapd serves on", why);
	if (statefd != -1)
		close(statefd);
	free(fds.fd);
	handover_resume(srv, ring_closed);
	if (shut_failed)
		srv_sync_failed(srv, why, durable);
	if ((c = (struct conn *)(uintptr_t)handover_req.req) != NULL) {
		conn_error(c, handover_req.req_id, WAL_PERR_IO, 0, "restart "
		    "failed: %s; walmmapd (pid %ld) serves on", why,
		    (long)getpid());
		conn_flush(c);
	}
	handover_req.pending = 0;
	handover_req.req = NULL;
	return (0);
}

/*
 * Stop taking work and answer everything owed (see the top of the file).
 * 0, or -1 with why (nothing lost: the caller resumes).
 */
static int
handover_quiesce(struct server *srv, char *why, size_t whylen)
{
	struct conn *c, *next;
	struct wal_error err;
	int64_t durable = -1;

	if (srv->ev_accept != NULL)
		event_del(srv->ev_accept);
	if (srv->ev_accept_resume != NULL)
		event_del(srv->ev_accept_resume);
	/* ROTATE requests waiting for their turn: rotate now. */
	if (srv->rotate_armed) {
		event_del(srv->ev_rotate);
		srv_rotate_cb(-1, 0, srv);
	}
	/* Large APPEND_FDs waiting for their turn: write them now. */
	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next)
		if (c->parked == CONN_PARK_APPEND_FD)
			conn_drain(c, 0);	/* reads no new frame */
	TAILQ_FOREACH(c, &srv->conns, entry)
		if (c->parked != CONN_PARK_NONE) {
			snprintf(why, whylen, "a request of client pid %ld "
			    "still waits for its turn", (long)c->pid);
			return (-1);
		}
	shm_finish_closing(srv);
	if (wal_ring_sync(srv->ring, &durable, &err) != 0) {
		srv_sync_failed(srv, err.msg, durable);
		snprintf(why, whylen, "sync failed: %s", err.msg);
		return (-1);
	}
	/* Every acknowledgement owed, out now (or handed over queued). */
	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next)
		conn_durable(c, durable);	/* may free c */
	return (0);
}

/* Write the state into a sealed memfd; collect the descriptors. */
static int
handover_write(struct server *srv, enum handover_mode mode, struct hfds *fds,
    uint64_t t0, int *statefd, char *why, size_t whylen)
{
	struct hbuf b = { NULL, 0, 0, 0 };
	struct handover_hdr h;
	struct conn *c;
	size_t off, n;
	ssize_t w;
	const char *path = srv->cfg.socket_path;
	int fd;

	/* A socket handed over to us keeps the path it was bound at. */
	if (srv->sock_name != NULL && srv->sock_name >= handover_sockpath &&
	    srv->sock_name < handover_sockpath + sizeof handover_sockpath)
		path = handover_sockpath;

	memset(&h, 0, sizeof h);
	hb_put(&b, &h, sizeof h);
	/*
	 * The listening socket (systemd's store keeps walmmapd.socket's
	 * anyway: not that one) and, if we bound it, its directory.
	 */
	if (srv->listen_fd != -1 && (mode == HANDOVER_EXEC ||
	    !srv->socket_from_systemd))
		fds->listen = srv->listen_fd;
	if (srv->socket_created && srv->sock_dirfd != -1)
		fds->sockdir = srv->sock_dirfd;
	hb_u8(&b, fds->listen != -1);
	hb_u8(&b, fds->sockdir != -1);
	hb_u8(&b, (uint8_t)srv->socket_from_systemd);
	hb_u8(&b, (uint8_t)srv->socket_created);
	hb_u64(&b, (uint64_t)srv->sock_dev);
	hb_u64(&b, (uint64_t)srv->sock_ino);
	n = strlen(path);
	hb_u32(&b, (uint32_t)n);
	hb_put(&b, path, n);
	hb_u32(&b, srv->sock_name != NULL && srv->socket_created ?
	    (uint32_t)(srv->sock_name - path) : 0);
	hb_u64(&b, srv->clients_total);
	hb_u64(&b, srv->records);
	hb_u64(&b, srv->bytes);
	hb_u64(&b, srv->frames);
	hb_u64(&b, srv->errors);
	hb_i64(&b, (int64_t)srv->started);
	hb_u32(&b, srv->nconns);
	TAILQ_FOREACH(c, &srv->conns, entry)
		handover_write_conn(&b, fds, c);
	if (b.failed || fds->n == SIZE_MAX) {
		snprintf(why, whylen, "out of memory for the state");
		goto fail;
	}
	h.magic = HANDOVER_MAGIC;
	h.version = HANDOVER_VERSION;
	h.length = b.len;
	h.crc = wal_crc32(0, b.p + sizeof h, b.len - sizeof h);
	h.started_ns = t0;
	memcpy(b.p, &h, sizeof h);

	fd = memfd_create("walmmapd-handover", MFD_CLOEXEC |
	    MFD_ALLOW_SEALING);
	if (fd == -1) {
		snprintf(why, whylen, "cannot create the state memfd: %s",
		    strerror(errno));
		goto fail;
	}
	for (off = 0; off < b.len; off += (size_t)w)
		if ((w = write(fd, b.p + off, b.len - off)) <= 0) {
			snprintf(why, whylen, "cannot write the state: %s",
			    w == 0 ? "short write" : strerror(errno));
			close(fd);
			goto fail;
		}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
	    F_SEAL_WRITE | F_SEAL_SEAL) == -1) {
		snprintf(why, whylen, "cannot seal the state: %s",
		    strerror(errno));
		close(fd);
		goto fail;
	}
	log_debug("restart: state of %zu bytes, %zu descriptors", b.len,
	    fds->n);
	free(b.p);
	*statefd = fd;
	return (0);
fail:
	free(b.p);
	return (-1);
}

/*
 * One connection's part: its length first, then (version 1) the fields
 * below in this order. New fields go at the end.
 */
static void
handover_write_conn(struct hbuf *b, struct hfds *fds, struct conn *c)
{
	struct shm_state st;
	size_t start = b->len, off = 0, len, i;
	const void *frame;
	int64_t sub_pos;
	uint32_t n;
	int qfds[OUTQ_MAX_FDS], nq, k;
	char fname[WAL_FWD_NAME_MAX];

	hb_u32(b, 0);			/* length, filled in below */
	hb_u32(b, hf_add(fds, c->fd));
	hb_i64(b, (int64_t)c->pid);
	hb_u32(b, (uint32_t)c->uid);
	hb_u32(b, (uint32_t)c->gid);
	hb_u8(b, (uint8_t)c->hello_done);
	hb_u8(b, c->ack);
	hb_u8(b, (uint8_t)c->closing);
	hb_u8(b, (uint8_t)c->acks_held);
	hb_u32(b, c->version);
	hb_i64(b, c->since);
	hb_i64(b, c->last_active);
	hb_u64(b, c->records);
	/* Durability owed (nothing after the sync of the quiesce). */
	hb_i64(b, c->durable_want);
	hb_i64(b, c->durable_low);
	hb_u32(b, (uint32_t)c->nsyncs);
	for (i = 0; i < c->nsyncs; i++) {
		hb_u64(b, c->syncs[i].id);
		hb_i64(b, c->syncs[i].target);
	}
	hb_u32(b, (uint32_t)c->nacks);
	for (i = 0; i < c->nacks; i++) {
		hb_u64(b, c->acks[i].id);
		hb_i64(b, c->acks[i].first_seq);
		hb_u32(b, c->acks[i].count);
		hb_u32(b, c->acks[i].flags);
	}
	/* The RESTART request it sent: the next process says OK. */
	hb_u8(b, handover_req.req == c);
	hb_u64(b, handover_req.req == c ? handover_req.req_id : 0);
	/* Its subscription: the first seq not queued for it. */
	hb_u8(b, c->sub != NULL);
	sub_pos = c->sub == NULL ? -1 : c->sub_held ? c->sub_rec.seq :
	    wal_reader_next_seq(c->sub);
	hb_i64(b, c->sub != NULL && sub_pos < 0 ? 0 : sub_pos);
	hb_i64(b, c->sub_to);
	hb_u8(b, (uint8_t)c->sub_follow);
	hb_u64(b, c->sub_fd_bytes);
	/* Its shared-memory ring. */
	if (shm_export(c, &st)) {
		hb_u8(b, 1);
		hb_u32(b, hf_add(fds, st.memfd));
		hb_u32(b, hf_add(fds, st.bell));
		hb_u64(b, st.size);
		hb_u32(b, st.max_record);
		hb_u64(b, st.head);
		hb_u64(b, st.written);
		hb_i64(b, st.written_seq);
		hb_u64(b, st.durable);
		hb_i64(b, st.durable_want);
		hb_u32(b, st.nmarks);
		for (i = 0; i < st.nmarks; i++) {
			hb_u64(b, st.marks[i].count);
			hb_i64(b, st.marks[i].seq);
		}
	} else
		hb_u8(b, 0);
	/* Replies the socket did not take yet, with their descriptors. */
	for (n = 0, off = 0; outq_next(&c->out, &off, &frame, &len, qfds,
	    &nq); )
		n++;
	hb_u32(b, n);
	off = 0;
	while (outq_next(&c->out, &off, &frame, &len, qfds, &nq)) {
		hb_u32(b, (uint32_t)len);
		hb_u32(b, (uint32_t)nq);
		for (k = 0; k < nq; k++)
			hb_u32(b, hf_add(fds, qfds[k]));
		hb_put(b, frame, len);
	}
	/* Added after version 1's fields: the forwarder registered on it. */
	memset(fname, 0, sizeof fname);
	if (fwd_conn_name(c) != NULL)
		snprintf(fname, sizeof fname, "%s", fwd_conn_name(c));
	hb_put(b, fname, sizeof fname);
	/* Added after that: the idempotent producer it is (0: none). */
	hb_u64(b, c->producer_id);
	if (!b->failed) {
		n = (uint32_t)(b->len - start);
		memcpy(b->p + start, &n, sizeof n);
	}
}

/*
 * Re-execute: the descriptors stay open (not close-on-exec), their names
 * in the environment. Returns only on failure (why), with everything as
 * it was.
 */
static int
handover_exec(struct server *srv, struct hfds *fds, int statefd, char *why,
    size_t whylen)
{
	char *env, *path;
	size_t i, len = 0, cap = 128 + fds->n * 32;
	int saved, n;

	(void)srv;
	if (cap > HANDOVER_ENV_MAX) {
		snprintf(why, whylen, "%zu descriptors are too many to name "
		    "in the environment", fds->n);
		return (-1);
	}
	if ((env = malloc(cap)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return (-1);
	}
	/* Each entry fits (an index and a descriptor: 32 bytes at most). */
	len += (size_t)snprintf(env + len, cap - len, "wh-state:%d", statefd);
	if (fds->listen != -1)
		len += (size_t)snprintf(env + len, cap - len, ",wh-listen:%d",
		    fds->listen);
	if (fds->sockdir != -1)
		len += (size_t)snprintf(env + len, cap - len, ",wh-sockdir:%d",
		    fds->sockdir);
	for (i = 0; i < fds->n && len < cap; i++) {
		n = snprintf(env + len, cap - len, ",wh-f%zu:%d", i,
		    fds->fd[i]);
		len += n > 0 ? (size_t)n : 0;
	}
	if (len >= cap) {
		snprintf(why, whylen, "the descriptors' names do not fit");
		free(env);
		return (-1);
	}
	handover_cloexec(statefd, 0);
	if (fds->listen != -1)
		handover_cloexec(fds->listen, 0);
	if (fds->sockdir != -1)
		handover_cloexec(fds->sockdir, 0);
	for (i = 0; i < fds->n; i++)
		handover_cloexec(fds->fd[i], 0);
	setenv(HANDOVER_ENV_FDS, env, 1);
	setenv(HANDOVER_ENV_LOG, log_is_syslog() ? "syslog" : "stderr", 1);
	/* Pending until the next process handles them (not the default). */
	handover_signals(SIG_BLOCK);
	sd_notifyf(0, "RELOADING=1\nSTATUS=restarting (handing %u "
	    "connections over)\nMONOTONIC_USEC=%" PRIu64, srv->nconns,
	    handover_mono_ns() / 1000);
	/* /proc/self/exe: only when the path could not be read at start. */
	path = handover_exe[0] != '\0' ? handover_exe : "/proc/self/exe";
	execv(path, handover_argv);
	saved = errno;
	handover_signals(SIG_UNBLOCK);
	snprintf(why, whylen, "cannot execute %s: %s", path, strerror(saved));
	unsetenv(HANDOVER_ENV_FDS);
	unsetenv(HANDOVER_ENV_LOG);
	handover_cloexec(statefd, 1);
	if (fds->listen != -1)
		handover_cloexec(fds->listen, 1);
	if (fds->sockdir != -1)
		handover_cloexec(fds->sockdir, 1);
	for (i = 0; i < fds->n; i++)
		handover_cloexec(fds->fd[i], 1);
	free(env);
	sd_notify(0, "READY=1\nSTATUS=restart failed; serving on");
	return (-1);
}

/*
 * systemd's store: every descriptor with its name, the state last (the
 * next process looks for it first), then exit. Nothing here is shut down
 * or unlinked: the sockets live on in the store.
 */
static void
handover_store(struct server *srv, struct hfds *fds, int statefd)
{
	char name[32];
	size_t i;

	if (fds->listen != -1)
		handover_store_one("wh-listen", fds->listen);
	if (fds->sockdir != -1)
		handover_store_one("wh-sockdir", fds->sockdir);
	for (i = 0; i < fds->n; i++) {
		snprintf(name, sizeof name, "wh-f%zu", i);
		handover_store_one(name, fds->fd[i]);
	}
	handover_store_one("wh-state", statefd);
	sd_notify(0, "STOPPING=1\nSTATUS=connections handed over to the "
	    "descriptor store");
	log_info("stopped after %" PRIu64 " records; %u connection%s left in "
	    "systemd's descriptor store for the next walmmapd", srv->records,
	    srv->nconns, srv->nconns == 1 ? "" : "s");
	exit(0);
}

/* One descriptor into systemd's store, under name. */
static void
handover_store_one(const char *name, int fd)
{
	char msg[64];
	int rc;

	snprintf(msg, sizeof msg, "FDSTORE=1\nFDNAME=%s", name);
	if ((rc = sd_pid_notify_with_fds(0, 0, msg, &fd, 1)) <= 0)
		log_warnx("restart: cannot pass descriptor %s to systemd: %s",
		    name, rc < 0 ? strerror(-rc) : "no $NOTIFY_SOCKET");
}

/* The hand-over failed: serve on as before. */
static void
handover_resume(struct server *srv, int ring_closed)
{
	struct conn *c;
	char why[1024];

	if (ring_closed && handover_reopen_ring(srv, why, sizeof why) != 0)
		fatalx("restart failed and the log cannot be opened again: "
		    "%s", why);
	if (srv->stopping)
		return;
	if (srv->ev_accept != NULL && srv->listen_fd != -1)
		event_add(srv->ev_accept, NULL);
	TAILQ_FOREACH(c, &srv->conns, entry)
		conn_read_enable(c);
}

/* Open the ring again after a failed exec, and its sync thread. */
static int
handover_reopen_ring(struct server *srv, char *why, size_t whylen)
{
	struct wal_ring_config rc;
	struct wal_recovery rec;
	struct wal_error err;
	uint64_t n;

	config_ring(&srv->cfg, srv->data_dirfd, &rc);
	if (wal_ring_open(&rc, &srv->ring, &rec, &err) != 0) {
		snprintf(why, whylen, "%s", err.msg);
		return (-1);
	}
	/* The producer table is synced with it again (and now). */
	if (prod_ring_reopened(srv, &err) != 0) {
		snprintf(why, whylen, "%s", err.msg);
		return (-1);
	}
	/* A result the stopped sync thread left: not ours any more. */
	(void)read(srv->sync_fd, &n, sizeof n);
	if ((srv->syncer = syncer_start(srv->ring, srv->sync_fd)) == NULL) {
		snprintf(why, whylen, "cannot start the sync thread");
		return (-1);
	}
	log_info("restart failed: log open again, next seq %" PRId64,
	    rec.next_seq);
	return (0);
}

/*
 * The next process: take over what was handed over, if anything was. A
 * state that cannot be read is refused with a message: the listening
 * socket is still used, every other descriptor closed (clients
 * reconnect).
 */
void
handover_restore(struct server *srv)
{
	struct hin *in = NULL, *h;
	char why[1024];
	size_t nin = 0, i;
	int rc;

	handover_signals(SIG_UNBLOCK);
	if (getenv(HANDOVER_ENV_FDS) != NULL)
		rc = handover_in_env(&in, &nin, why, sizeof why);
	else if (getenv("LISTEN_FDS") != NULL)
		rc = handover_in_systemd(srv, &in, &nin, why, sizeof why);
	else
		return;
	if (rc == 0 && nin == 0)
		return;		/* nothing of ours: plain socket activation */
	if (rc == 0 && (rc = handover_read(srv, in, nin, 0, why,
	    sizeof why)) == 0) {
		for (i = 0; i < nin; i++)
			in[i].used = 0;
		rc = handover_read(srv, in, nin, 1, why, sizeof why);
	}
	if (rc != 0) {
		log_errx("cannot take over the previous walmmapd's connections: "
		    "%s; serving the listening socket alone (clients "
		    "reconnect)", why);
		if ((h = handover_in_find(in, nin, "wh-listen")) != NULL &&
		    srv->listen_fd == -1) {
			if (sd_is_socket_unix(h->fd, SOCK_SEQPACKET, 1, NULL,
			    0) > 0) {
				h->used = 1;
				srv->listen_fd = h->fd;
				(void)fcntl(h->fd, F_SETFL, fcntl(h->fd,
				    F_GETFL) | O_NONBLOCK);
			} else
				log_warnx("the listening socket handed over "
				    "is not a listening SOCK_SEQPACKET "
				    "socket; binding a new one");
		}
	}
	for (i = 0; i < nin; i++)
		if (!in[i].used) {
			if (rc == 0 && strcmp(in[i].name, "wh-state") != 0)
				log_warnx("descriptor %s was handed over but "
				    "the state does not use it: closed",
				    in[i].name);
			close(in[i].fd);
		}
	free(in);
}

/* The descriptors a re-execution named in the environment. */
static int
handover_in_env(struct hin **inp, size_t *nin, char *why, size_t whylen)
{
	char *env, *tok, *save = NULL, *colon, *end;
	struct hin *in;
	size_t n = 1;
	long fd;

	if ((env = strdup(getenv(HANDOVER_ENV_FDS))) == NULL)
		fatalx("out of memory");
	unsetenv(HANDOVER_ENV_FDS);
	unsetenv(HANDOVER_ENV_LOG);
	for (tok = env; *tok != '\0'; tok++)
		if (*tok == ',')
			n++;
	if ((*inp = in = calloc(n, sizeof *in)) == NULL)
		fatalx("out of memory");
	*nin = 0;
	for (tok = strtok_r(env, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		if ((colon = strchr(tok, ':')) == NULL ||
		    (size_t)(colon - tok) >= sizeof in->name) {
			snprintf(why, whylen, "%s: \"%s\" is not NAME:FD",
			    HANDOVER_ENV_FDS, tok);
			goto fail;
		}
		*colon = '\0';
		errno = 0;
		fd = strtol(colon + 1, &end, 10);
		if (errno != 0 || *end != '\0' || fd < 0 || fd > INT_MAX ||
		    fcntl((int)fd, F_GETFD) == -1) {
			snprintf(why, whylen, "%s: descriptor %s of %s is not "
			    "open", HANDOVER_ENV_FDS, colon + 1, tok);
			goto fail;
		}
		snprintf(in[*nin].name, sizeof in->name, "%s", tok);
		in[*nin].fd = (int)fd;
		handover_cloexec((int)fd, 1);
		(*nin)++;
	}
	free(env);
	return (0);
fail:
	free(env);
	return (-1);
}

/*
 * The descriptors systemd passed: ours are named "wh-*" (from its store;
 * removed from it now that we hold them). Another one is the socket of
 * walmmapd.socket. Nothing named "wh-*": *nin is 0 and the environment is
 * left to srv_listen().
 */
static int
handover_in_systemd(struct server *srv, struct hin **inp, size_t *nin,
    char *why, size_t whylen)
{
	char **names = NULL, msg[64];
	struct hin *in;
	int n, i, ours = 0, other = -1, nothers = 0, fd;

	*nin = 0;
	if ((n = sd_listen_fds_with_names(0, &names)) <= 0)
		return (0);
	for (i = 0; i < n; i++)
		if (strncmp(names[i], "wh-", 3) == 0)
			ours++;
	if (ours == 0) {
		handover_free_names(names, n);
		return (0);
	}
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	if ((*inp = in = calloc((size_t)ours, sizeof *in)) == NULL)
		fatalx("out of memory");
	for (i = 0; i < n; i++) {
		fd = SD_LISTEN_FDS_START + i;
		handover_cloexec(fd, 1);
		if (strncmp(names[i], "wh-", 3) != 0) {
			if (nothers++ == 0)
				other = fd;
			else
				close(fd);
			continue;
		}
		snprintf(in[*nin].name, sizeof in->name, "%s", names[i]);
		in[*nin].fd = fd;
		(*nin)++;
		/* Ours now: systemd must not pass it to the next start. */
		snprintf(msg, sizeof msg, "FDSTOREREMOVE=1\nFDNAME=%s",
		    names[i]);
		(void)sd_notify(0, msg);
	}
	handover_free_names(names, n);
	if (nothers == 1 && sd_is_socket_unix(other, SOCK_SEQPACKET, 1, NULL,
	    0) > 0) {
		(void)fcntl(other, F_SETFL, fcntl(other, F_GETFL) | O_NONBLOCK);
		srv->listen_fd = other;
		srv->socket_from_systemd = 1;
		log_info("listening on the socket passed by systemd");
	} else if (nothers > 0) {
		snprintf(why, whylen, "systemd passed %d descriptor%s besides "
		    "the hand-over; walmmapd takes one listening AF_UNIX "
		    "SOCK_SEQPACKET socket (use ListenSequentialPacket=)",
		    nothers, nothers == 1 ? "" : "s");
		close(other);
		return (-1);
	}
	return (0);
}

/* Free what sd_listen_fds_with_names() returned. */
static void
handover_free_names(char **names, int n)
{
	int i;

	for (i = 0; i < n && names != NULL; i++)
		free(names[i]);
	free(names);
}

/*
 * Read the state: check it, and with apply, take over what it describes.
 * 0, or -1 with why (apply 0 changes nothing but the used marks).
 */
static int
handover_read(struct server *srv, struct hin *in, size_t nin, int apply,
    char *why, size_t whylen)
{
	struct handover_hdr h;
	struct hread r;
	struct hin *st, *lh, *dh;
	struct stat sb;
	uint8_t *buf = NULL, has_listen, has_dir, from_systemd, created;
	uint64_t dev, ino, clients_total, records, bytes, frames, errors;
	uint32_t pathlen, name_off, nconns, i;
	int64_t started;
	size_t off;
	ssize_t got;
	int rc = -1;

	if ((st = handover_in_find(in, nin, "wh-state")) == NULL) {
		snprintf(why, whylen, "no state (descriptor wh-state) among "
		    "the %zu handed over", nin);
		return (-1);
	}
	if (fstat(st->fd, &sb) == -1 || sb.st_size < (off_t)sizeof h ||
	    (uint64_t)sb.st_size > HANDOVER_MAX_STATE) {
		snprintf(why, whylen, "the state is %s", sb.st_size <
		    (off_t)sizeof h ? "too short to be one" : "too large");
		return (-1);
	}
	if ((buf = malloc((size_t)sb.st_size)) == NULL) {
		snprintf(why, whylen, "out of memory for the state");
		return (-1);
	}
	for (off = 0; off < (size_t)sb.st_size; off += (size_t)got)
		if ((got = pread(st->fd, buf + off, (size_t)sb.st_size - off,
		    (off_t)off)) <= 0) {
			snprintf(why, whylen, "cannot read the state: %s",
			    got == 0 ? "short read" : strerror(errno));
			goto out;
		}
	memcpy(&h, buf, sizeof h);
	if (h.magic != HANDOVER_MAGIC) {
		snprintf(why, whylen, "the state is not a walmmapd hand-over "
		    "(magic %08" PRIx32 ")", h.magic);
		goto out;
	}
	if (h.version == 0 || h.version > HANDOVER_VERSION) {
		snprintf(why, whylen, "the state is version %" PRIu32 "; this "
		    "walmmapd reads versions 1 to %u (is it older than the one "
		    "that handed over?)", h.version, HANDOVER_VERSION);
		goto out;
	}
	if (h.length != (uint64_t)sb.st_size) {
		snprintf(why, whylen, "the state says it is %" PRIu64 " bytes "
		    "long but is %jd", h.length, (intmax_t)sb.st_size);
		goto out;
	}
	if (wal_crc32(0, buf + sizeof h, (size_t)sb.st_size - sizeof h) !=
	    h.crc) {
		snprintf(why, whylen, "the state's CRC does not match (it is "
		    "damaged)");
		goto out;
	}
	r.p = buf + sizeof h;
	r.len = (size_t)sb.st_size - sizeof h;
	r.off = 0;
	r.bad = 0;
	has_listen = hr_u8(&r);
	has_dir = hr_u8(&r);
	from_systemd = hr_u8(&r);
	created = hr_u8(&r);
	dev = hr_u64(&r);
	ino = hr_u64(&r);
	pathlen = hr_u32(&r);
	if (pathlen >= sizeof handover_sockpath) {
		snprintf(why, whylen, "the socket's path in the state is too "
		    "long");
		goto out;
	}
	if (apply)
		(void)hr_get(&r, handover_sockpath, pathlen);
	else
		r.off += pathlen <= r.len - r.off ? pathlen : (r.bad = 1, 0);
	name_off = hr_u32(&r);
	clients_total = hr_u64(&r);
	records = hr_u64(&r);
	bytes = hr_u64(&r);
	frames = hr_u64(&r);
	errors = hr_u64(&r);
	started = hr_i64(&r);
	nconns = hr_u32(&r);
	if (r.bad) {
		snprintf(why, whylen, "the state is truncated");
		goto out;
	}
	if (name_off > pathlen) {
		snprintf(why, whylen, "the state's socket name is outside its "
		    "path");
		goto out;
	}
	lh = has_listen ? handover_in_find(in, nin, "wh-listen") : NULL;
	dh = has_dir ? handover_in_find(in, nin, "wh-sockdir") : NULL;
	if ((has_listen && lh == NULL) || (has_dir && dh == NULL)) {
		snprintf(why, whylen, "the %s was not handed over",
		    lh == NULL && has_listen ? "listening socket" :
		    "socket's directory");
		goto out;
	}
	if (has_listen && srv->listen_fd != -1) {
		snprintf(why, whylen, "a listening socket came from systemd "
		    "and another in the hand-over");
		goto out;
	}
	if (lh != NULL)
		lh->used = 1;
	if (dh != NULL)
		dh->used = 1;
	if (apply) {
		handover_sockpath[pathlen] = '\0';
		if (lh != NULL) {
			srv->listen_fd = lh->fd;
			srv->socket_from_systemd = from_systemd;
			(void)fcntl(lh->fd, F_SETFL, fcntl(lh->fd, F_GETFL) |
			    O_NONBLOCK);
		}
		if (lh != NULL && dh != NULL && created) {
			srv->socket_created = 1;
			srv->sock_dirfd = dh->fd;
			srv->sock_name = handover_sockpath + name_off;
			srv->sock_dev = (dev_t)dev;
			srv->sock_ino = (ino_t)ino;
		} else if (dh != NULL)
			dh->used = 0;		/* closed by the caller */
		if (lh != NULL && !from_systemd &&
		    strcmp(handover_sockpath, srv->cfg.socket_path) != 0)
			log_warnx("the socket is %s now; keeping the one handed "
			    "over, %s, until a stop", srv->cfg.socket_path,
			    handover_sockpath);
	}
	for (i = 0; i < nconns; i++)
		if (handover_read_conn(srv, &r, in, nin, apply, why,
		    whylen) != 0)
			goto out;
	if (r.off != r.len) {
		snprintf(why, whylen, "%zu bytes after the last connection of "
		    "the state", r.len - r.off);
		goto out;
	}
	if (apply) {
		srv->clients_total = clients_total;
		srv->records = records;
		srv->bytes = bytes;
		srv->frames = frames;
		srv->errors = errors;
		srv->started = (time_t)started;
		log_info("restart: took over %" PRIu32 " connection%s from the "
		    "previous walmmapd; the hand-over took %.1f ms", nconns,
		    nconns == 1 ? "" : "s", (double)(handover_mono_ns() -
		    h.started_ns) / 1e6);
	}
	rc = 0;
out:
	free(buf);
	return (rc);
}

/*
 * One connection's part (see handover_write_conn). Without apply, checks
 * it; with apply, makes the connection.
 */
static int
handover_read_conn(struct server *srv, struct hread *r, struct hin *in,
    size_t nin, int apply, char *why, size_t whylen)
{
	struct hread cr;
	struct shm_state st;
	struct sync_wait syncs[CONN_MAX_SYNC_WAITS];
	struct wal_ack_entry *acks = NULL;
	struct wal_msg_subscribe sub;
	struct conn *c = NULL;
	const uint8_t *frame;
	char swhy[256];
	uint32_t len, idx, nsyncs, nacks, nframes, flen, nfds, k, i;
	uint8_t hello, ack, closing, held, has_reply, has_sub, follow,
	    has_shm;
	int64_t since, last, dwant, dlow, sub_pos, sub_to;
	uint64_t records, reply_id, sub_fd;
	int fd, qfds[OUTQ_MAX_FDS];
	uint32_t version;
	struct rights_peer peer;
	char fname[WAL_FWD_NAME_MAX];
	uint64_t producer_id;

	len = hr_u32(r);
	if (r->bad || len < sizeof len || len - sizeof len > r->len - r->off) {
		snprintf(why, whylen, "a connection's part of the state is "
		    "truncated");
		return (-1);
	}
	cr.p = r->p + r->off;
	cr.len = len - sizeof len;
	cr.off = 0;
	cr.bad = 0;
	r->off += cr.len;

	idx = hr_u32(&cr);
	(void)hr_i64(&cr);		/* pid, uid, gid: the kernel's again */
	(void)hr_u32(&cr);
	(void)hr_u32(&cr);
	hello = hr_u8(&cr);
	ack = hr_u8(&cr);
	closing = hr_u8(&cr);
	held = hr_u8(&cr);
	version = hr_u32(&cr);
	since = hr_i64(&cr);
	last = hr_i64(&cr);
	records = hr_u64(&cr);
	dwant = hr_i64(&cr);
	dlow = hr_i64(&cr);
	nsyncs = hr_u32(&cr);
	if (nsyncs > CONN_MAX_SYNC_WAITS) {
		snprintf(why, whylen, "a connection has %" PRIu32 " SYNC "
		    "requests waiting (at most %d)", nsyncs,
		    CONN_MAX_SYNC_WAITS);
		return (-1);
	}
	for (i = 0; i < nsyncs; i++) {
		syncs[i].id = hr_u64(&cr);
		syncs[i].target = hr_i64(&cr);
	}
	nacks = hr_u32(&cr);
	if (nacks > (cr.len - cr.off) / 24) {
		snprintf(why, whylen, "a connection's acknowledgements are "
		    "truncated");
		return (-1);
	}
	if (apply && nacks > 0 && (acks = calloc(nacks, sizeof *acks)) ==
	    NULL) {
		snprintf(why, whylen, "out of memory");
		return (-1);
	}
	for (i = 0; i < nacks; i++) {
		struct wal_ack_entry e;

		e.id = hr_u64(&cr);
		e.first_seq = hr_i64(&cr);
		e.count = hr_u32(&cr);
		e.flags = hr_u32(&cr);
		if (acks != NULL)
			acks[i] = e;
	}
	has_reply = hr_u8(&cr);
	reply_id = hr_u64(&cr);
	has_sub = hr_u8(&cr);
	sub_pos = hr_i64(&cr);
	sub_to = hr_i64(&cr);
	follow = hr_u8(&cr);
	sub_fd = hr_u64(&cr);
	if ((hello ? version < WAL_PROTO_VERSION_MIN || version >
	    WAL_PROTO_VERSION : version != 0) || ack > WAL_ACK_DURABLE ||
	    (has_sub && sub_pos < 0) || cr.bad) {
		snprintf(why, whylen, "a connection's protocol state is not "
		    "valid (version %" PRIu32 ", ack %u)", version, ack);
		free(acks);
		return (-1);
	}
	if (handover_in_take(in, nin, idx, &fd) != 0) {
		snprintf(why, whylen, "connection descriptor wh-f%" PRIu32
		    " missing or used twice", idx);
		free(acks);
		return (-1);
	}
	if (apply) {
		if ((c = conn_new(srv, fd)) == NULL) {
			log_warnx("restart: out of memory for a connection; "
			    "closing it");
			close(fd);
		} else {
			/* Rights as for a new client, under today's lists. */
			(void)rights_peer_get(fd, &peer);
			rights_attach(c, &peer, rights_of(srv, &peer));
			rights_peer_free(&peer);
			c->hello_done = hello;
			c->version = version;
			c->ack = ack;
			c->since = since;
			c->last_active = last;
			c->records = records;
			c->durable_want = dwant;
			c->durable_low = dlow;
			memcpy(c->syncs, syncs, sizeof syncs[0] * nsyncs);
			c->nsyncs = nsyncs;
			c->acks = acks;
			c->nacks = c->acks_cap = nacks;
			c->acks_held = held;
			acks = NULL;
		}
	}
	free(acks);
	has_shm = hr_u8(&cr);
	if (has_shm) {
		memset(&st, 0, sizeof st);
		idx = hr_u32(&cr);
		k = hr_u32(&cr);
		st.size = hr_u64(&cr);
		st.max_record = hr_u32(&cr);
		st.head = hr_u64(&cr);
		st.written = hr_u64(&cr);
		st.written_seq = hr_i64(&cr);
		st.durable = hr_u64(&cr);
		st.durable_want = hr_i64(&cr);
		st.nmarks = hr_u32(&cr);
		if (st.nmarks > HANDOVER_SHM_MARKS) {
			snprintf(why, whylen, "a ring has %" PRIu32 " marks",
			    st.nmarks);
			return (-1);
		}
		for (i = 0; i < st.nmarks; i++) {
			st.marks[i].count = hr_u64(&cr);
			st.marks[i].seq = hr_i64(&cr);
		}
		if (handover_in_take(in, nin, idx, &st.memfd) != 0 ||
		    handover_in_take(in, nin, k, &st.bell) != 0) {
			snprintf(why, whylen, "a ring's descriptors are "
			    "missing or used twice");
			return (-1);
		}
		if (apply && c == NULL) {
			close(st.memfd);
			close(st.bell);
		} else if (apply && shm_import(c, &st, swhy,
		    sizeof swhy) != 0) {
			log_warnx("restart: client pid %ld: its shared-memory "
			    "ring cannot be taken over: %s", (long)c->pid,
			    swhy);
			conn_error(c, 0, WAL_PERR_IO, 1, "the shared-memory "
			    "ring could not be taken over across a restart: "
			    "%s", swhy);
		}
	}
	nframes = hr_u32(&cr);
	for (i = 0; i < nframes && !cr.bad; i++) {
		flen = hr_u32(&cr);
		nfds = hr_u32(&cr);
		if (nfds > OUTQ_MAX_FDS || flen > WAL_PROTO_MAX_FRAME ||
		    flen < sizeof(struct wal_msg)) {
			snprintf(why, whylen, "a queued reply is not valid "
			    "(%" PRIu32 " bytes, %" PRIu32 " descriptors)",
			    flen, nfds);
			return (-1);
		}
		for (k = 0; k < nfds; k++)
			if (handover_in_take(in, nin, hr_u32(&cr),
			    &qfds[k]) != 0) {
				snprintf(why, whylen, "a queued reply's "
				    "descriptor is missing or used twice");
				return (-1);
			}
		if (flen > cr.len - cr.off) {
			cr.bad = 1;
			break;
		}
		frame = cr.p + cr.off;
		cr.off += flen;
		if (!apply)
			continue;
		if (c == NULL)
			for (k = 0; k < nfds; k++)
				close(qfds[k]);
		else
			(void)conn_queue_fds(c, frame, flen, qfds, (int)nfds);
	}
	/* Added later: the forwarder registered on it (absent: none). */
	memset(fname, 0, sizeof fname);
	if (cr.off < cr.len)
		(void)hr_get(&cr, fname, sizeof fname);
	fname[sizeof fname - 1] = '\0';
	/* Added after that: its producer id (absent: none). */
	producer_id = cr.off < cr.len ? hr_u64(&cr) : 0;
	/* Fields a later version added after these are skipped. */
	if (cr.bad) {
		snprintf(why, whylen, "a connection's part of the state is "
		    "truncated");
		return (-1);
	}
	if (!apply || c == NULL)
		return (0);
	if (producer_id != 0 && srv->ptab != NULL &&
	    (c->producer_slot = wal_ptab_find(srv->ptab, producer_id)) >= 0)
		c->producer_id = producer_id;
	else if (producer_id != 0)
		log_warnx("restart: client pid %ld was producer %" PRIu64
		    ", which the producer table no longer holds", (long)c->pid,
		    producer_id);
	if (fname[0] != '\0' && fwd_adopt(c, fname) != 0)
		log_warnx("restart: client pid %ld was forwarder %s, which "
		    "this process does not know or finds taken", (long)c->pid,
		    fname);
	if (has_sub) {
		memset(&sub, 0, sizeof sub);
		sub.hdr.type = WAL_MSG_SUBSCRIBE;
		sub.hdr.len = sizeof sub;
		sub.from_seq = sub_pos;
		sub.to_seq = sub_to;
		sub.flags = follow ? WAL_SUB_FOLLOW : 0;
		conn_subscribe(c, &sub);
		c->sub_fd_bytes = sub_fd;
		srv->sub_fd_total += sub_fd;
	}
	if (has_reply) {
		struct wal_msg ok = { WAL_MSG_OK, 0, sizeof ok, reply_id };

		(void)conn_queue_fds(c, &ok, sizeof ok, NULL, 0);
	}
	if (closing)
		conn_closing(c);
	if (conn_durable_owed(c))
		srv_request_sync(srv);
	(void)conn_flush(c);		/* may free c */
	return (0);
}

/* Find a received descriptor by name. */
static struct hin *
handover_in_find(struct hin *in, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(in[i].name, name) == 0)
			return (&in[i]);
	return (NULL);
}

/* The descriptor wh-f<idx>, marked used: 0, or -1 when missing. */
static int
handover_in_take(struct hin *in, size_t n, uint32_t idx, int *fd)
{
	char name[32];
	struct hin *h;

	snprintf(name, sizeof name, "wh-f%" PRIu32, idx);
	if ((h = handover_in_find(in, n, name)) == NULL || h->used)
		return (-1);
	h->used = 1;
	*fd = h->fd;
	return (0);
}

static void
handover_cloexec(int fd, int on)
{
	int fl = fcntl(fd, F_GETFD);

	if (fl != -1)
		(void)fcntl(fd, F_SETFD, on ? fl | FD_CLOEXEC :
		    fl & ~FD_CLOEXEC);
}

/* Block (before exec) or unblock the signals walmmapd handles. */
static void
handover_signals(int how)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGINT);
	sigaddset(&s, SIGHUP);
	sigaddset(&s, SIGUSR2);
	sigprocmask(how, &s, NULL);
}

static uint64_t
handover_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

static void
hb_put(struct hbuf *b, const void *p, size_t n)
{
	size_t cap;
	uint8_t *np;

	if (b->failed)
		return;
	if (b->len + n > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		if ((np = realloc(b->p, cap)) == NULL) {
			b->failed = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void
hb_u8(struct hbuf *b, uint8_t v)
{
	hb_put(b, &v, sizeof v);
}

static void
hb_u32(struct hbuf *b, uint32_t v)
{
	hb_put(b, &v, sizeof v);
}

static void
hb_u64(struct hbuf *b, uint64_t v)
{
	hb_put(b, &v, sizeof v);
}

static void
hb_i64(struct hbuf *b, int64_t v)
{
	hb_put(b, &v, sizeof v);
}

/* Add a descriptor to hand over: its index (SIZE_MAX in n: no memory). */
static uint32_t
hf_add(struct hfds *f, int fd)
{
	size_t cap;
	int *n;

	if (f->n == SIZE_MAX)
		return (HANDOVER_NONE);
	if (f->n == f->cap) {
		cap = f->cap ? f->cap * 2 : 64;
		if ((n = reallocarray(f->fd, cap, sizeof *n)) == NULL) {
			f->n = SIZE_MAX;
			return (HANDOVER_NONE);
		}
		f->fd = n;
		f->cap = cap;
	}
	f->fd[f->n] = fd;
	return ((uint32_t)f->n++);
}

static int
hr_get(struct hread *r, void *p, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = 1;
		memset(p, 0, n);
		return (-1);
	}
	memcpy(p, r->p + r->off, n);
	r->off += n;
	return (0);
}

static uint8_t
hr_u8(struct hread *r)
{
	uint8_t v;

	(void)hr_get(r, &v, sizeof v);
	return (v);
}

static uint32_t
hr_u32(struct hread *r)
{
	uint32_t v;

	(void)hr_get(r, &v, sizeof v);
	return (v);
}

static uint64_t
hr_u64(struct hread *r)
{
	uint64_t v;

	(void)hr_get(r, &v, sizeof v);
	return (v);
}

static int64_t
hr_i64(struct hread *r)
{
	int64_t v;

	(void)hr_get(r, &v, sizeof v);
	return (v);
}
