/*
 * walmmapd - the listening socket, accepting, syncing, retention, status.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <sched.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "forward.h"
#include "log.h"
#include "rights.h"
#include "server.h"
#include "wal_dir.h"
#include "wal_ring.h"
#include "wal_segment.h"

/* Seconds from SIGTERM to exit, however much clients keep sending. */
#define SRV_STOP_TIMEOUT_S	5

/* While no room to receive descriptors, look again this often (ms). */
#define SRV_FD_WAIT_MS		10

/* Lines about clients logged per second at most (srv_log_client). */
#define SRV_CLIENT_LOG_PER_S	20

/* Rotations by request happen at most this often (ms). */
#define SRV_ROTATE_MS		1000

/* Connections accepted per loop pass at most. */
#define SRV_ACCEPT_BATCH	64

/* STATUS rescans the directory at least this often (ms). */
#define SRV_DIRSTAT_MS		1000

static void	server_accept_cb(int, short, void *);
static void	server_accept_resume_cb(int, short, void *);
static int	server_bind(struct server *);
static int	server_probe(const struct sockaddr_un *, const char *path);
static void	server_unlink(struct server *);
static void	server_forget_expected(struct server *);
static unsigned	server_uid_conns(const struct server *, uid_t);
static void	server_refuse(struct server *, int, unsigned, const char *);
static void	server_dirstat(struct server *, const struct wal_ring_stats *);
static int64_t	server_mono_ms(void);

/*
 * Take the socket from systemd (socket activation) or bind our own. A
 * stale socket file of a dead daemon is replaced; a live daemon's is not.
 */
int
srv_listen(struct server *srv)
{
	int n, fd;

	if (srv->listen_fd != -1)	/* handed over (handover.c) */
		goto events;
	n = sd_listen_fds(1);
	if (n < 0) {
		log_errx("cannot read the sockets passed by systemd: %s",
		    strerror(-n));
		return (-1);
	}
	if (n > 1) {
		log_errx("systemd passed %d sockets; walmmapd takes one", n);
		return (-1);
	}
	if (n == 1) {
		fd = SD_LISTEN_FDS_START;
		if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) <= 0) {
			log_errx("the socket passed by systemd is not a "
			    "listening AF_UNIX SOCK_SEQPACKET socket (use "
			    "ListenSequentialPacket=)");
			return (-1);
		}
		if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1 ||
		    fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
			log_warn("cannot configure the systemd socket");
			return (-1);
		}
		srv->listen_fd = fd;
		srv->socket_from_systemd = 1;
		log_info("listening on the socket passed by systemd");
	} else if (server_bind(srv) != 0)
		return (-1);

events:
	srv->ev_accept = event_new(srv->base, srv->listen_fd,
	    EV_READ | EV_PERSIST, server_accept_cb, srv);
	srv->ev_accept_resume = evtimer_new(srv->base, server_accept_resume_cb,
	    srv);
	if (srv->ev_accept == NULL || srv->ev_accept_resume == NULL) {
		log_errx("cannot create the accept events");
		return (-1);
	}
	event_add(srv->ev_accept, NULL);
	return (0);
}

/*
 * Stop accepting; remove a socket file we created. Our own socket is shut
 * first (connecting is refused from then on) and the connections still in
 * its backlog are accepted and closed as clients are: closing the socket
 * with them would release what they sent, descriptors included, here.
 * (systemd keeps its socket, and the backlog with it, for the next start.)
 */
void
srv_close_listener(struct server *srv)
{
	int fd;

	if (srv->listen_fd == -1)
		return;
	if (srv->ev_accept != NULL)
		event_del(srv->ev_accept);
	if (srv->ev_accept_resume != NULL)
		event_del(srv->ev_accept_resume);
	if (!srv->socket_from_systemd &&
	    shutdown(srv->listen_fd, SHUT_RD) == 0)
		while ((fd = accept4(srv->listen_fd, NULL, NULL,
		    SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1)
			closer_close_socket(srv->closer, fd);
	close(srv->listen_fd);
	srv->listen_fd = -1;
	if (srv->socket_created)
		server_unlink(srv);
	srv->socket_created = 0;
}

/* Remove our socket file: the one we bound, in its directory, or nothing. */
static void
server_unlink(struct server *srv)
{
	const char *path = srv->cfg.socket_path;
	struct stat st;

	if (fstatat(srv->sock_dirfd, srv->sock_name, &st,
	    AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno != ENOENT)
			log_warn("cannot examine socket %s", path);
	} else if (!S_ISSOCK(st.st_mode) || st.st_dev != srv->sock_dev ||
	    st.st_ino != srv->sock_ino)
		log_warnx("%s is no longer the socket walmmapd bound; leaving "
		    "it", path);
	else if (unlinkat(srv->sock_dirfd, srv->sock_name, 0) == -1 &&
	    errno != ENOENT)
		log_warn("cannot remove socket %s", path);
	close(srv->sock_dirfd);
	srv->sock_dirfd = -1;
}

/*
 * Begin an orderly stop: no new clients, answer what was sent, sync. The
 * stop timer runs from the start, and each client's drain is budgeted
 * (max_inflight bytes, what a well-behaved client keeps unacknowledged),
 * so a client that keeps sending cannot delay the exit.
 */
void
srv_stop(struct server *srv, const char *why)
{
	struct conn *c, *next;
	struct wal_error err;
	struct timespec now, end;
	int64_t durable = -1;
	struct timeval tv = { SRV_STOP_TIMEOUT_S, 0 };

	if (srv->stopping)
		return;
	srv->stopping = 1;
	event_add(srv->ev_stop_timer, &tv);
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += SRV_STOP_TIMEOUT_S;
	log_info("%s: stopping", why);
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
	srv_close_listener(srv);

	/* ROTATE requests waiting for their turn: rotate now. */
	if (srv->rotate_armed) {
		event_del(srv->ev_rotate);
		srv_rotate_cb(-1, 0, srv);
	}
	/* What clients already sent is written and acknowledged. */
	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec &&
		    now.tv_nsec >= end.tv_nsec)) {
			log_warnx("stop: out of time; not reading the other "
			    "clients (what they sent is not acknowledged)");
			break;
		}
		conn_drain(c, srv->cfg.max_inflight);
	}
	if (!srv->sync_failed && wal_ring_sync(srv->ring, &durable, &err) != 0)
		srv_sync_failed(srv, err.msg, durable);
	/* After a failed sync conn_durable() fails the waiters instead. */
	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next)
		conn_durable(c, durable);
	/* Give clients a moment (the stop timer) to read their last acks. */
	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next) {
		conn_closing(c);
		conn_flush(c);
	}
	if (srv->nconns == 0)
		event_base_loopbreak(srv->base);
}

/*
 * Ask the sync thread for a group commit.
 *
 * Grouping: clients that got a durable ack from the last sync usually come
 * straight back with their next durable record. While some of them have
 * not (durable_expected > 0) the request waits, at most commit_delay, so
 * that one sync covers them all. Otherwise it goes out after the loop has
 * run every callback that is ready now.
 */
void
srv_request_sync(struct server *srv)
{
	struct timeval tv;

	if (srv->durable_expected > 0 && srv->cfg.commit_delay_ms > 0) {
		if (!srv->commit_delay_armed) {
			log_debug("sync deferred up to %ums: %u client%s of the "
			    "last sync not back yet", srv->cfg.commit_delay_ms,
			    srv->durable_expected, srv->durable_expected == 1 ?
			    "" : "s");
			srv->commit_delay_armed = 1;
			tv.tv_sec = srv->cfg.commit_delay_ms / 1000;
			tv.tv_usec = (srv->cfg.commit_delay_ms % 1000) * 1000;
			evtimer_add(srv->ev_commit_delay, &tv);
		}
		return;
	}
	if (srv->commit_delay_armed) {
		srv->commit_delay_armed = 0;
		evtimer_del(srv->ev_commit_delay);
	}
	if (srv->sync_kick_pending)
		return;
	srv->sync_kick_pending = 1;
	event_active(srv->ev_sync_kick, EV_TIMEOUT, 0);
}

/* A sync round completes: nobody is expected back yet. */
void
srv_sync_round(struct server *srv)
{
	server_forget_expected(srv);
}

/* A client of the last round is back (or gone). */
void
srv_durable_returned(struct server *srv, struct conn *c)
{
	if (!c->durable_expected)
		return;
	c->durable_expected = 0;
	if (--srv->durable_expected == 0 && srv->commit_delay_armed)
		srv_request_sync(srv);
}

/* The commit delay ran out: sync with whoever is there. */
void
srv_commit_delay_cb(int fd, short ev, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)ev;
	srv->commit_delay_armed = 0;
	/*
	 * Stop waiting for the rest: each connection's flag goes with the
	 * count, or one coming back later would take the count below zero.
	 */
	server_forget_expected(srv);
	srv_request_sync(srv);
}

/* The deferred half of srv_request_sync(). */
void
srv_sync_kick_cb(int fd, short ev, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)ev;
	srv->sync_kick_pending = 0;
	syncer_request(srv->syncer);
}

/*
 * A ROTATE request: rotate now if the last rotation by request was at
 * least SRV_ROTATE_MS ago and none is scheduled, or the daemon is stopping
 * (0, or a WAL_PERR_* with err filled when rotating failed); else -1: the
 * request must wait for srv_rotate_cb.
 */
int
srv_rotate_now(struct server *srv, pid_t pid, char *err, size_t errlen)
{
	struct wal_error e;
	int64_t now = server_mono_ms();

	if (!srv->stopping && (srv->rotate_armed || (srv->rotate_last_ms !=
	    0 && now - srv->rotate_last_ms < SRV_ROTATE_MS)))
		return (-1);
	srv->rotate_last_ms = now;
	if (wal_ring_rotate(srv->ring, &e) != 0) {
		snprintf(err, errlen, "%s", e.msg);
		return ((int)conn_errno_perr(e.code));
	}
	log_info("segment rotated on request of pid %ld", (long)pid);
	return (0);
}

/* A ROTATE request waits: run srv_rotate_cb when the next one may run. */
void
srv_rotate_later(struct server *srv)
{
	int64_t wait = srv->rotate_last_ms + SRV_ROTATE_MS -
	    server_mono_ms();
	struct timeval tv;

	if (srv->rotate_armed)
		return;
	if (wait < 0)
		wait = 0;
	tv.tv_sec = wait / 1000;
	tv.tv_usec = (wait % 1000) * 1000;
	srv->rotate_armed = 1;
	evtimer_add(srv->ev_rotate, &tv);
}

/* One rotation for every ROTATE request waiting; answer them all. */
void
srv_rotate_cb(int fd, short ev, void *arg)
{
	struct server *srv = arg;
	struct conn *c, *next;
	struct wal_error e;
	unsigned n = 0;
	int rc = 0;

	(void)fd;
	(void)ev;
	e.msg[0] = '\0';
	srv->rotate_armed = 0;
	srv->rotate_last_ms = server_mono_ms();
	TAILQ_FOREACH(c, &srv->conns, entry)
		if (c->parked == CONN_PARK_ROTATE)
			n++;
	if (n == 0)
		return;		/* they went away */
	if (wal_ring_rotate(srv->ring, &e) != 0)
		rc = (int)conn_errno_perr(e.code);
	else
		log_info("segment rotated on request (%u request%s)", n,
		    n == 1 ? "" : "s");
	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next) {
		if (c->parked != CONN_PARK_ROTATE)
			continue;
		conn_rotated(c, rc, e.msg);
		conn_flush(c);	/* may free c */
	}
}

/*
 * May a line about what one client did be logged now? Clients cause such
 * lines at will (a connection that breaks its ring, sends no HELLO, is
 * refused...): at most SRV_CLIENT_LOG_PER_S a second are logged, the rest
 * only counted and reported once a second (srv_log_suppressed), so clients
 * cannot fill the disk with the log, nor exhaust journald's rate limit
 * (which would drop the daemon's own messages too).
 */
int
srv_log_client(struct server *srv)
{
	time_t now = time(NULL);

	if (now != srv->client_log_sec) {
		srv->client_log_sec = now;
		srv->client_log_n = 0;
	}
	if (srv->client_log_n < SRV_CLIENT_LOG_PER_S) {
		srv->client_log_n++;
		return (1);
	}
	srv->client_log_dropped++;
	return (0);
}

/* Once a second: how many lines about clients were not logged. */
void
srv_log_suppressed(struct server *srv)
{
	if (srv->client_log_dropped == 0)
		return;
	log_warnx("%" PRIu64 " more message%s about clients not logged (at "
	    "most %d a second are)", srv->client_log_dropped,
	    srv->client_log_dropped == 1 ? "" : "s", SRV_CLIENT_LOG_PER_S);
	srv->client_log_dropped = 0;
}

/*
 * A connection or doorbell was not read: the descriptors waiting to be
 * closed are near their bound (closer_room). Look again in a moment.
 */
void
srv_fd_wait(struct server *srv)
{
	static const struct timeval tv = { 0, SRV_FD_WAIT_MS * 1000 };

	if (!evtimer_pending(srv->ev_fd_wait, NULL))
		evtimer_add(srv->ev_fd_wait, &tv);
}

/* Room again: read the connections and doorbells that waited. */
void
srv_fd_wait_cb(int fd, short ev, void *arg)
{
	struct server *srv = arg;
	struct conn *c;

	(void)fd;
	(void)ev;
	if (!closer_room(srv->closer)) {
		srv_fd_wait(srv);
		return;
	}
	TAILQ_FOREACH(c, &srv->conns, entry)
		if (c->fd_wait) {
			c->fd_wait = 0;
			conn_read_enable(c);
		}
	shm_bells_enable(srv);
}

/* Forwarders are back within their hold: producers go on. */
void
srv_fwd_unblocked(struct server *srv)
{
	struct conn *c;

	TAILQ_FOREACH(c, &srv->conns, entry)
		if (c->fwd_wait) {
			c->fwd_wait = 0;
			conn_read_enable(c);
		}
	shm_kick(srv);
}

/* Once a second: handshake, idle and linger timeouts. */
void
srv_check_timeouts(struct server *srv)
{
	struct conn *c, *next;

	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next)
		conn_check_timeouts(c);	/* may free c */
}

/* Records were appended: subscribers waiting at the end can go on. */
void
srv_wake_subscribers(struct server *srv)
{
	struct conn *c;

	srv->sub_dirty = 0;
	TAILQ_FOREACH(c, &srv->conns, entry)
		conn_sub_wake(c);
}

/* Fill a status reply. */
void
srv_status(struct server *srv, struct wal_status *st)
{
	struct wal_ring_stats rs;
	uint64_t count, total, max;

	memset(st, 0, sizeof *st);
	st->hdr.type = WAL_MSG_STATUS_REPLY;
	st->hdr.len = sizeof *st;
	wal_ring_stats(srv->ring, &rs);
	st->version = WAL_PROTO_VERSION;
	st->ring_segments = srv->cfg.ring;
	st->next_seq = rs.next_seq;
	st->written_seq = rs.written_seq;
	st->durable_seq = rs.durable_seq;
	st->first_seq = -1;
	st->segment_size = rs.segment_size;
	st->active_id = rs.active_id;
	st->clients = srv->nconns;
	st->clients_total = srv->clients_total;
	st->records = srv->records;
	st->bytes = srv->bytes;
	st->frames = srv->frames;
	st->syncs = rs.syncs;
	syncer_stats(srv->syncer, &count, &total, &max);
	st->sync_ns_total = total;
	st->sync_ns_max = max;
	st->rotations = rs.rotations;
	st->errors = srv->errors;
	st->records_per_s = srv->records_per_s;
	st->uptime_s = (uint64_t)(time(NULL) - srv->started);
	st->pid = (uint64_t)getpid();
	snprintf(st->dir, sizeof st->dir, "%s", srv->cfg.dir);
	server_dirstat(srv, &rs);
	st->segments = srv->dirstat.segments;
	st->disk_bytes = srv->dirstat.disk_bytes;
	st->first_seq = srv->dirstat.first_seq;
}

/*
 * The directory's part of STATUS: segment files, their bytes, the oldest
 * seq kept. A scan costs a stat per segment (thousands in a long log), so
 * one scan serves every STATUS until a segment is created or removed, the
 * first record of an empty log is written, or SRV_DIRSTAT_MS pass (files
 * an operator removed): a client sending STATUS without pause cannot make
 * the daemon scan without pause.
 */
static void
server_dirstat(struct server *srv, const struct wal_ring_stats *rs)
{
	struct srv_dirstat *ds = &srv->dirstat;
	struct wal_seglist list;
	struct stat sb;
	struct timespec now;
	char name[WAL_SEGMENT_NAME_MAX];
	int64_t ms;
	size_t i;
	int dirfd = srv->data_dirfd;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	if (ds->valid && ms - ds->when_ms < SRV_DIRSTAT_MS &&
	    ds->created == rs->segments_created &&
	    ds->removed == srv->segments_removed &&
	    (ds->first_seq >= 0 || ds->next_seq == rs->next_seq))
		return;
	memset(ds, 0, sizeof *ds);
	ds->first_seq = -1;
	ds->when_ms = ms;
	ds->created = rs->segments_created;
	ds->removed = srv->segments_removed;
	ds->next_seq = rs->next_seq;
	ds->valid = 1;

	if (wal_dir_list(dirfd, srv->cfg.dir, &list, NULL) == 0) {
		ds->segments = list.count;
		for (i = 0; i < list.count; i++) {
			wal_seg_name(name, sizeof name, list.ids[i]);
			if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) ==
			    0 && S_ISREG(sb.st_mode))
				ds->disk_bytes += (uint64_t)sb.st_size;
		}
		/* The oldest segment's first record is the oldest kept. */
		for (i = 0; i < list.count && ds->first_seq < 0; i++) {
			uint8_t hdr[WAL_FILE_HEADER_SIZE +
			    WAL_RECORD_HEADER_SIZE];
			int fd;

			wal_seg_name(name, sizeof name, list.ids[i]);
			if ((fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW |
			    O_NONBLOCK | O_CLOEXEC)) == -1)
				continue;
			if (pread(fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr
			    && wal_le32_load(hdr + WAL_FILE_HEADER_SIZE) ==
			    WAL_RECORD_MAGIC)
				ds->first_seq = (int64_t)wal_le64_load(hdr +
				    WAL_FILE_HEADER_SIZE + 4);
			close(fd);
		}
		wal_seglist_free(&list);
	}
}

/*
 * Retention: delete the oldest sealed segments beyond the configured
 * count, bytes or age. Never the active or standby segments, never the
 * newest sealed one (it carries the sequence across a restart while the
 * active one is empty), never one a subscriber is reading or will read,
 * and only from the front, so what remains is one contiguous log.
 *
 * A subscriber may hold back at most max_subscriber_hold bytes of
 * segments retention would otherwise remove; one that holds back more
 * (stalled, or far slower than the writers) is dropped with an error, so
 * it cannot switch retention off and fill the disk.
 */
void
srv_retention(struct server *srv)
{
	const struct srv_config *cfg = &srv->cfg;
	struct wal_ring_stats rs;
	struct wal_seglist list;
	struct conn *c, *next;
	struct stat sb;
	char name[WAL_SEGMENT_NAME_MAX];
	uint64_t limit, sealed_bytes = 0, *sizes = NULL, removed = 0;
	uint64_t held, seg, bytes;
	time_t now = time(NULL), *mtimes = NULL;
	size_t i, j, nsealed, cut;
	int dirfd = srv->data_dirfd;

	if (cfg->retain_segments == 0 && cfg->retain_bytes == 0 &&
	    cfg->retain_age_s == 0)
		return;
	wal_ring_stats(srv->ring, &rs);
	limit = rs.active_id;
	/* Only synced for good, and never the newest records (wal_ring.h). */
	if (rs.retain_below < limit)
		limit = rs.retain_below;
	if (wal_dir_list(dirfd, cfg->dir, &list, NULL) != 0)
		return;
	/* Sealed segments: ids below the active one; keep the newest. */
	for (nsealed = 0; nsealed < list.count && list.ids[nsealed] <
	    rs.active_id; nsealed++)
		;
	sizes = calloc(nsealed + 1, sizeof *sizes);
	mtimes = calloc(nsealed + 1, sizeof *mtimes);
	if (sizes == NULL || mtimes == NULL)
		goto out;
	for (i = 0; i < nsealed; i++) {
		wal_seg_name(name, sizeof name, list.ids[i]);
		if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
			sizes[i] = (uint64_t)sb.st_size;
			mtimes[i] = sb.st_mtime;
		}
		sealed_bytes += sizes[i];
	}
	/* What the limits alone would remove: list.ids[0 .. cut). */
	bytes = sealed_bytes;
	for (cut = 0; cut + 1 < nsealed && ((cfg->retain_segments > 0 &&
	    nsealed - cut > cfg->retain_segments) || (cfg->retain_bytes > 0 &&
	    bytes > cfg->retain_bytes) || (cfg->retain_age_s > 0 &&
	    now - mtimes[cut] > (time_t)cfg->retain_age_s)); cut++)
		bytes -= sizes[cut];
	while (cut > 0 && list.ids[cut - 1] >= limit)
		cut--;
	/* Forwarders keep theirs, up to forward_hold_max_* (forward.c). */
	fwd_retention(srv, list.ids, sizes, mtimes, cut, &limit);
	/* Subscribers keep their segments, up to max_subscriber_hold. */
	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next) {
		if ((seg = conn_sub_segment(c)) >= limit)
			continue;
		for (held = 0, j = 0; j < cut; j++)
			if (list.ids[j] >= seg)
				held += sizes[j];
		if (cfg->max_subscriber_hold > 0 && held >
		    cfg->max_subscriber_hold)
			conn_sub_drop(c, held);	/* may free c */
		else
			limit = seg;
	}
	for (i = 0; i < cut && list.ids[i] < limit; i++) {
		wal_seg_name(name, sizeof name, list.ids[i]);
		if (unlinkat(dirfd, name, 0) == -1) {
			log_warn("retention: cannot remove %s/%s", cfg->dir,
			    name);
			break;
		}
		removed++;
		srv->segments_removed++;
	}
	if (removed > 0) {
		(void)wal_dir_sync(dirfd, cfg->dir, NULL);
		log_info("retention: removed %" PRIu64 " sealed segment%s",
		    removed, removed == 1 ? "" : "s");
		fwd_check_gaps(srv);
	}
out:
	free(sizes);
	free(mtimes);
	wal_seglist_free(&list);
}

/*
 * Accept clients until the backlog is empty, descriptors run out, or
 * SRV_ACCEPT_BATCH were taken: the listening socket stays readable, so
 * the rest come on the next loop pass, after the connections that were
 * already waiting (a user connecting and closing in a loop, refused or
 * not, cannot keep the daemon in here).
 */
static void
server_accept_cb(int lfd, short ev, void *arg)
{
	struct server *srv = arg;
	struct timeval tv = { 1, 0 };
	struct rights_peer cred;
	char why[256];
	struct conn *c;
	unsigned rights;
	int fd, n;

	(void)ev;
	for (n = 0; n < SRV_ACCEPT_BATCH; n++) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE) {
				/* Resource exhaustion is a state: back off. */
				log_warnx("out of file descriptors with %u "
				    "clients; not accepting for a second",
				    srv->nconns);
				event_del(srv->ev_accept);
				evtimer_add(srv->ev_accept_resume, &tv);
				return;
			}
			log_warn("accept");
			return;
		}
		(void)rights_peer_get(fd, &cred);
		if ((rights = rights_of(srv, &cred)) == 0) {
			rights_refusal(srv, &cred, why, sizeof why);
			if (srv_log_client(srv))
				log_warnx("refused pid %ld uid %ld gid %ld: %s",
				    (long)cred.pid, (long)cred.uid,
				    (long)cred.gid, why);
			srv->metrics.refused[METRICS_REFUSE_ALLOW]++;
			server_refuse(srv, fd, WAL_PERR_PERM, why);
			rights_peer_free(&cred);
			continue;
		}
		if (srv->nconns >= srv->cfg.max_connections) {
			srv->metrics.refused[METRICS_REFUSE_MAX_CONN]++;
			server_refuse(srv, fd, WAL_PERR_BUSY,
			    "max_connections reached");
			rights_peer_free(&cred);
			continue;
		}
		if (server_uid_conns(srv, cred.uid) >=
		    srv->cfg.max_connections_per_uid) {
			if (srv_log_client(srv))
				log_warnx("refused pid %ld uid %ld: it has "
				    "max_connections_per_uid (%u) connections",
				    (long)cred.pid, (long)cred.uid,
				    srv->cfg.max_connections_per_uid);
			srv->metrics.refused[METRICS_REFUSE_MAX_CONN_UID]++;
			server_refuse(srv, fd, WAL_PERR_BUSY,
			    "max_connections_per_uid reached for this uid");
			rights_peer_free(&cred);
			continue;
		}
		if ((c = conn_new(srv, fd)) == NULL) {
			log_warnx("out of memory for a new client");
			closer_close_socket(srv->closer, fd);
			rights_peer_free(&cred);
			continue;
		}
		rights_attach(c, &cred, rights);
		log_debug("client pid %ld uid %ld connected", (long)c->pid,
		    (long)c->uid);
	}
}

static void
server_accept_resume_cb(int fd, short ev, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)ev;
	if (srv->listen_fd != -1)
		event_add(srv->ev_accept, NULL);
}

/*
 * Refuse a client just accepted: a fatal ERROR if its socket takes it at
 * once, then close it (and what it may have sent already) without
 * waiting on it.
 */
static void
server_refuse(struct server *srv, int fd, unsigned code, const char *why)
{
	uint8_t buf[sizeof(struct wal_msg_error) + 256];
	struct wal_msg_error e;
	size_t n = strnlen(why, 256);

	memset(&e, 0, sizeof e);
	e.hdr.type = WAL_MSG_ERROR;
	e.hdr.len = (uint32_t)(sizeof e + n);
	e.code = code;
	e.fatal = 1;
	memcpy(buf, &e, sizeof e);
	memcpy(buf + sizeof e, why, n);
	metrics_error_sent(srv, code);
	(void)send(fd, buf, e.hdr.len, MSG_DONTWAIT | MSG_NOSIGNAL);
	closer_close_socket(srv->closer, fd);
}

/* Nobody of the last sync round is expected back any more. */
static void
server_forget_expected(struct server *srv)
{
	struct conn *c;

	TAILQ_FOREACH(c, &srv->conns, entry)
		c->durable_expected = 0;
	srv->durable_expected = 0;
}

/* Connections of one uid (closing ones too: they hold a slot). */
static unsigned
server_uid_conns(const struct server *srv, uid_t uid)
{
	const struct conn *c;
	unsigned n = 0;

	TAILQ_FOREACH(c, &srv->conns, entry)
		if (c->uid == uid)
			n++;
	return (n);
}

/*
 * Bind our own socket, replacing a stale socket but never a live daemon's
 * and never anything else. Its directory must be ours and writable by us
 * alone (srv_dir_open), and every step names the socket relative to that
 * directory's descriptor, so no path is re-resolved and no symbolic link
 * is followed: bind and connect take a name relative to the working
 * directory, which is the socket directory just for these calls.
 */
static int
server_bind(struct server *srv)
{
	const char *path = srv->cfg.socket_path, *name;
	char dir[PATH_MAX], why[1024];
	struct sockaddr_un sun;
	struct stat st;
	mode_t old;
	int fd = -1, cwd = -1, dirfd;

	if ((name = strrchr(path, '/')) == NULL || name[1] == '\0' ||
	    (size_t)(name - path) >= sizeof dir) {
		log_errx("socket path %s is not an absolute path to a file",
		    path);
		return (-1);
	}
	if (name == path)
		snprintf(dir, sizeof dir, "/");
	else {
		memcpy(dir, path, (size_t)(name - path));
		dir[name - path] = '\0';
	}
	name++;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(name) >= sizeof sun.sun_path) {
		log_errx("socket name %s is longer than %zu bytes", name,
		    sizeof sun.sun_path - 1);
		return (-1);
	}
	memcpy(sun.sun_path, name, strlen(name) + 1);

	if ((dirfd = srv_dir_open("socket directory", dir, 1, 0755, why,
	    sizeof why)) == -1) {
		log_errx("%s", why);
		return (-1);
	}
	/*
	 * The working directory and the umask below are this thread's alone:
	 * the ring's and the syncer's threads, which create segments, the
	 * checkpoint and the sync-failure marker meanwhile, keep the umask
	 * walmmapd was started with.
	 */
	if (unshare(CLONE_FS) == -1)
		log_warn("cannot give the main thread its own umask; files "
		    "created while the socket is bound may get mode %04o",
		    (unsigned)(0640 & srv->cfg.socket_mode));
	if ((cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fchdir(dirfd) == -1) {
		log_warn("cannot enter socket directory %s", dir);
		goto fail;
	}

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_errx("%s exists and is %s, not a socket; not "
			    "touching it", path, S_ISLNK(st.st_mode) ?
			    "a symbolic link" : "something else");
			goto fail;
		}
		if (server_probe(&sun, path) != 0)
			goto fail;
		log_info("removing stale socket %s", path);
		if (unlinkat(dirfd, name, 0) == -1) {
			log_warn("cannot remove stale socket %s", path);
			goto fail;
		}
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("socket");
		goto fail;
	}
	/*
	 * The mode comes from the umask, so the socket never has another
	 * one (the umask is this thread's, see unshare above).
	 */
	old = umask(0777 & ~srv->cfg.socket_mode);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		umask(old);
		log_warn("cannot bind %s", path);
		goto fail;
	}
	umask(old);
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
	    !S_ISSOCK(st.st_mode)) {
		log_errx("%s changed right after walmmapd bound it (it is not "
		    "a socket now); not touching it", path);
		goto fail;
	}
	srv->socket_created = 1;
	srv->sock_dirfd = dirfd;
	srv->sock_name = srv->cfg.socket_path + (name - path);
	srv->sock_dev = st.st_dev;
	srv->sock_ino = st.st_ino;
	if (fchdir(cwd) == -1 && chdir("/") == -1)
		log_warn("cannot leave socket directory %s", dir);
	close(cwd);
	cwd = -1;
	if (srv->cfg.socket_group != (gid_t)-1 && fchownat(dirfd, name,
	    (uid_t)-1, srv->cfg.socket_group, AT_SYMLINK_NOFOLLOW) == -1)
		log_warn("cannot set group %ld on %s",
		    (long)srv->cfg.socket_group, path);
	if (listen(fd, SOMAXCONN) == -1) {
		log_warn("cannot listen on %s", path);
		close(fd);
		server_unlink(srv);
		srv->socket_created = 0;
		return (-1);
	}
	srv->listen_fd = fd;
	log_info("listening on %s", path);
	return (0);

fail:
	if (fd != -1)
		close(fd);
	if (cwd != -1) {
		if (fchdir(cwd) == -1 && chdir("/") == -1)
			log_warn("cannot leave socket directory %s", dir);
		close(cwd);
	}
	close(dirfd);
	return (-1);
}

/*
 * Is a socket file stale? Only a refused connection proves that nobody
 * listens on it: 0. A connection made or waiting for accept (a live
 * daemon, even a stopped or busy one; the probe never waits) and any
 * other failure, which proves nothing (no descriptor left, not a
 * SOCK_SEQPACKET socket), leave it alone: -1, logged. sun names it
 * relative to the working directory.
 */
static int
server_probe(const struct sockaddr_un *sun, const char *path)
{
	int s, e;

	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s == -1) {
		log_warn("cannot tell whether another walmmapd is listening on "
		    "%s (no socket to ask with); leaving it", path);
		return (-1);
	}
	if (connect(s, (const struct sockaddr *)sun, sizeof *sun) == 0 ||
	    errno == EAGAIN || errno == EINPROGRESS) {
		close(s);
		log_errx("another walmmapd is listening on %s", path);
		return (-1);
	}
	e = errno;
	close(s);
	if (e == ECONNREFUSED)
		return (0);
	errno = e;
	log_warn("cannot tell whether another walmmapd is listening on %s; "
	    "leaving it", path);
	return (-1);
}

static int64_t
server_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}
