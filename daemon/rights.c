/*
 * walmmapd - who may read, write and administer the log.
 *
 * Three rights: read (SUBSCRIBE, forwarders), write (appends, SYNC,
 * shared-memory rings), admin (ROTATE, RESTART). A client's rights are
 * worked out from the credentials the kernel recorded when it connected
 * (SO_PEERCRED, SO_PEERGROUPS) when it connects and again after every
 * reload, and every request is checked against them, so tightening the
 * lists also stops what a connection already does.
 *
 * Who holds a right:
 * - root and walmmapd's own user hold all three, always;
 * - read: allow_readers when set, else allow_users/allow_groups when set
 *   (the lists of earlier versions grant read and write), else those who
 *   could read the segment files directly: the data directory's owner,
 *   its group when the group may list it; never others, whatever the
 *   directory's mode: segment files are created 0640, so a directory
 *   others may list (0755, what mkdir gives) still hides their records;
 * - write: allow_writers when set, else allow_users/allow_groups when
 *   set, else everyone who may connect (the socket's mode and group);
 * - admin: allow_admins when set, else nobody else.
 * A client holding none is refused when it connects.
 *
 * Groups are the primary gid and the supplementary groups the kernel
 * recorded with the connection (SO_PEERGROUPS): the groups the process
 * really has, read without a race. /proc/PID/status could be read for
 * another process by the time we look (the pid may be reused) and is
 * hidden under ProtectProc=invisible; getgrouplist() asks the group
 * database, which may not be what the process runs with (it may have
 * dropped groups) and may block the event loop on a network directory.
 *
 * In a user namespace that does not map every uid (systemd's
 * PrivateUsers=yes) every unmapped client appears as the overflow uid
 * (65534): such a client is anonymous and holds only what "all" grants.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "rights.h"
#include "server.h"
#include "wal_proto.h"
#include "wal_reader.h"

/* What rights_init found about the user namespace. */
static int	rights_userns_partial;	/* some uids are not mapped */
static uid_t	rights_overflow_uid = 65534;

static int	rights_acl_has(const struct srv_acl *,
		    const struct rights_peer *, int anon);
static int	rights_legacy_has(const struct srv_config *,
		    const struct rights_peer *, int anon);
static int	rights_in_group(const struct rights_peer *, gid_t);
static int	rights_anon(const struct rights_peer *);
static unsigned	rights_needed(uint16_t type);
static void	rights_holders(const struct server *, unsigned right,
		    char *buf, size_t len);

/* Once at start-up: is this a user namespace that hides clients? */
void
rights_init(struct server *srv)
{
	unsigned long long inside, outside, count, total = 0;
	unsigned long v;
	FILE *f;
	int lines = 0;

	if ((f = fopen("/proc/sys/kernel/overflowuid", "re")) != NULL) {
		if (fscanf(f, "%lu", &v) == 1)
			rights_overflow_uid = (uid_t)v;
		fclose(f);
	}
	if ((f = fopen("/proc/self/uid_map", "re")) == NULL)
		return;
	while (fscanf(f, "%llu %llu %llu", &inside, &outside, &count) == 3) {
		total += count;
		lines++;
	}
	fclose(f);
	/* The initial namespace maps 4294967295 uids (all but -1). */
	rights_userns_partial = lines > 0 && total < 4294967295ull;
	if (rights_userns_partial)
		log_warnx("walmmapd runs in a user namespace that maps %llu "
		    "uid%s (systemd's PrivateUsers=yes?): every client whose "
		    "uid is not mapped appears as uid %lu and holds only the "
		    "rights granted to \"all\"", total, total == 1 ? "" : "s",
		    (unsigned long)rights_overflow_uid);
}

/* Once the socket is there: say which options it made meaningless. */
void
rights_socket_check(struct server *srv)
{
	if (srv->socket_from_systemd && (srv->cfg.socket_mode_given ||
	    srv->cfg.socket_group_given))
		log_warnx("socket_mode and socket_group are ignored: the "
		    "socket comes from systemd (set SocketMode= and "
		    "SocketGroup= in walmmapd.socket)");
}

/* The peer's credentials, supplementary groups included. */
int
rights_peer_get(int fd, struct rights_peer *p)
{
	struct ucred cred;
	socklen_t len = sizeof cred;
	gid_t *g = NULL, *ng;
	socklen_t glen = 0;

	memset(p, 0, sizeof *p);
	p->uid = (uid_t)-1;
	p->gid = (gid_t)-1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1)
		return (-1);
	p->pid = cred.pid;
	p->uid = cred.uid;
	p->gid = cred.gid;
#ifdef SO_PEERGROUPS
	/* Asked with no room, the kernel says how much it needs. */
	for (;;) {
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &glen) == 0)
			break;
		if (errno != ERANGE || glen == 0 || (ng = realloc(g,
		    glen)) == NULL) {
			free(g);
			/* No groups known: only what the uid and gid give. */
			return (0);
		}
		g = ng;
	}
	p->groups = g;
	p->ngroups = g != NULL ? glen / sizeof *g : 0;
#else
	(void)g;
	(void)ng;
	(void)glen;
#endif
	return (0);
}

void
rights_peer_free(struct rights_peer *p)
{
	free(p->groups);
	p->groups = NULL;
	p->ngroups = 0;
}

/* The rights a peer holds now. */
unsigned
rights_of(const struct server *srv, const struct rights_peer *p)
{
	const struct srv_config *cfg = &srv->cfg;
	int anon = rights_anon(p), legacy;
	unsigned r = 0;
	struct stat st;

	if (p->uid == (uid_t)-1)
		return (0);
	if (!anon && (p->uid == 0 || p->uid == geteuid()))
		return (RIGHT_ALL);
	legacy = cfg->nallow_uids > 0 || cfg->nallow_gids > 0;

	if (cfg->allow_readers.set) {
		if (rights_acl_has(&cfg->allow_readers, p, anon))
			r |= RIGHT_READ;
	} else if (legacy) {
		if (rights_legacy_has(cfg, p, anon))
			r |= RIGHT_READ;
	} else if (srv->data_dirfd != -1 && fstat(srv->data_dirfd, &st) == 0) {
		/* Who could read the segment files (0640) without us. */
		if (!anon && (p->uid == st.st_uid || ((st.st_mode & 0050) ==
		    0050 && rights_in_group(p, st.st_gid))))
			r |= RIGHT_READ;
	}

	if (cfg->allow_writers.set) {
		if (rights_acl_has(&cfg->allow_writers, p, anon))
			r |= RIGHT_WRITE;
	} else if (legacy) {
		if (rights_legacy_has(cfg, p, anon))
			r |= RIGHT_WRITE;
	} else
		r |= RIGHT_WRITE;	/* whoever the socket lets in */

	if (cfg->allow_admins.set && rights_acl_has(&cfg->allow_admins, p,
	    anon))
		r |= RIGHT_ADMIN;
	return (r);
}

/* Why a peer holding no right is refused. */
void
rights_refusal(const struct server *srv, const struct rights_peer *p,
    char *why, size_t len)
{
	(void)srv;
	if (p->uid == (uid_t)-1) {
		snprintf(why, len, "walmmapd cannot tell who this client is "
		    "(SO_PEERCRED failed)");
		return;
	}
	snprintf(why, len, "uid %ld holds no right on this log: not in "
	    "allow_writers, allow_readers or allow_admins (or allow_users/"
	    "allow_groups)%s", (long)p->uid, rights_anon(p) ? "; walmmapd "
	    "runs in a user namespace that does not map this uid" : "");
}

/* The connection keeps the peer's groups for later reloads. */
void
rights_attach(struct conn *c, struct rights_peer *p, unsigned rights)
{
	c->rights = rights;
	c->groups = p->groups;
	c->ngroups = p->ngroups;
	p->groups = NULL;
	p->ngroups = 0;
}

/* Check the right a request type needs. */
int
rights_request(struct conn *c, uint16_t type, uint64_t id)
{
	unsigned need = rights_needed(type);

	if (need == 0)
		return (1);
	return (rights_check(c, id, need, wal_proto_type_name(type)));
}

/* Does the connection hold need? If not, say so to it and to the log. */
int
rights_check(struct conn *c, uint64_t id, unsigned need, const char *what)
{
	struct rights_peer p;
	char holders[256];
	unsigned missing = need & ~c->rights;

	if (missing == 0)
		return (1);
	/* The first one missing is named. */
	missing = missing & RIGHT_READ ? RIGHT_READ : missing & RIGHT_WRITE ?
	    RIGHT_WRITE : RIGHT_ADMIN;
	rights_holders(c->srv, missing, holders, sizeof holders);
	if (srv_log_client(c->srv))
		log_warnx("refused %s from pid %ld uid %ld: no %s right",
		    what, (long)c->pid, (long)c->uid, rights_name(missing));
	memset(&p, 0, sizeof p);
	p.uid = c->uid;
	conn_error(c, id, WAL_PERR_PERM, 0, "%s needs the %s right, which uid "
	    "%ld does not hold; it is held by %s%s", what,
	    rights_name(missing), (long)c->uid, holders, rights_anon(&p) ?
	    " (walmmapd runs in a user namespace that does not map this "
	    "uid)" : "");
	return (0);
}

/*
 * Reload: rights again; stop what a connection may no longer do. A closing
 * connection too: until its last replies are taken (CONN_LINGER_S) its
 * subscription would still be fed and its ring still drained. A client
 * that loses both rights loses both at once; it is told the first.
 */
void
rights_reload(struct server *srv)
{
	struct conn *c, *next;
	struct rights_peer p;
	unsigned r, lost;
	char holders[256];
	int stopped;

	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next) {
		memset(&p, 0, sizeof p);
		p.pid = c->pid;
		p.uid = c->uid;
		p.gid = c->gid;
		p.groups = c->groups;
		p.ngroups = c->ngroups;
		r = rights_of(srv, &p);
		lost = c->rights & ~r;
		c->rights = r;
		if (lost == 0)
			continue;
		stopped = 0;
		if ((lost & RIGHT_READ) && c->sub != NULL) {
			rights_holders(srv, RIGHT_READ, holders,
			    sizeof holders);
			log_warnx("reload: subscriber pid %ld uid %ld lost the "
			    "read right; ending its subscription", (long)c->pid,
			    (long)c->uid);
			wal_reader_close(c->sub);
			c->sub = NULL;
			c->sub_held = 0;
			if (!c->closing)
				conn_error(c, 0, WAL_PERR_PERM, 1, "subscription "
				    "ended: after a reload uid %ld no longer "
				    "holds the read right (held by %s)",
				    (long)c->uid, holders);
			stopped = 1;
		}
		/* A ring's records pass no request check: close it. */
		if ((lost & RIGHT_WRITE) && c->shm != NULL) {
			rights_holders(srv, RIGHT_WRITE, holders,
			    sizeof holders);
			log_warnx("reload: producer pid %ld uid %ld lost the "
			    "write right; closing it", (long)c->pid,
			    (long)c->uid);
			/* What its ring published until now is written. */
			shm_close_ring(c);
			if (!c->closing)
				conn_error(c, 0, WAL_PERR_PERM, 1, "closed: "
				    "after a reload uid %ld no longer holds the "
				    "write right (held by %s)", (long)c->uid,
				    holders);
			stopped = 1;
		}
		if (!stopped && r == 0 && !c->closing) {
			log_warnx("reload: client pid %ld uid %ld holds no "
			    "right any more; closing it", (long)c->pid,
			    (long)c->uid);
			conn_error(c, 0, WAL_PERR_PERM, 1, "closed: after a "
			    "reload uid %ld holds no right on this log",
			    (long)c->uid);
			stopped = 1;
		}
		if (stopped)
			conn_flush(c);	/* may free c */
	}
}

const char *
rights_name(unsigned right)
{
	switch (right) {
	case RIGHT_READ:
		return ("read");
	case RIGHT_WRITE:
		return ("write");
	case RIGHT_ADMIN:
		return ("admin");
	}
	return ("?");
}

/* The right each request needs; 0: any client (HELLO, PING, STATUS...). */
static unsigned
rights_needed(uint16_t type)
{
	switch (type) {
	case WAL_MSG_APPEND:
	case WAL_MSG_APPEND_FD:
	case WAL_MSG_SYNC:
	case WAL_MSG_SHM_OPEN:
	case WAL_MSG_PRODUCER:
	case WAL_MSG_APPEND_P:
		return (RIGHT_WRITE);
	case WAL_MSG_SUBSCRIBE:
	case WAL_MSG_FWD_REGISTER:
	case WAL_MSG_FWD_POSITION:
		return (RIGHT_READ);
	case WAL_MSG_ROTATE:
	case WAL_MSG_RESTART:
		return (RIGHT_ADMIN);
	}
	/* METRICS, like STATUS, carries counters, never a record. */
	return (0);
}

/* Who holds a right, in words, for an error message. */
static void
rights_holders(const struct server *srv, unsigned right, char *buf,
    size_t len)
{
	const struct srv_config *cfg = &srv->cfg;
	int legacy = cfg->nallow_uids > 0 || cfg->nallow_gids > 0;
	struct stat st;

	switch (right) {
	case RIGHT_READ:
		if (cfg->allow_readers.set)
			snprintf(buf, len, "root, walmmapd's user and "
			    "allow_readers");
		else if (legacy)
			snprintf(buf, len, "root, walmmapd's user and "
			    "allow_users/allow_groups");
		else if (srv->data_dirfd != -1 &&
		    fstat(srv->data_dirfd, &st) == 0)
			snprintf(buf, len, "root, walmmapd's user and who may "
			    "read the data directory (owner uid %ld, group "
			    "gid %ld when its mode lets it); see allow_readers",
			    (long)st.st_uid, (long)st.st_gid);
		else
			snprintf(buf, len, "root and walmmapd's user");
		break;
	case RIGHT_WRITE:
		snprintf(buf, len, "root, walmmapd's user and %s",
		    cfg->allow_writers.set ? "allow_writers" :
		    "allow_users/allow_groups");
		break;
	default:
		snprintf(buf, len, "%s", cfg->allow_admins.set ? "root, "
		    "walmmapd's user and allow_admins" : "root and walmmapd's "
		    "user (see allow_admins)");
		break;
	}
}

static int
rights_acl_has(const struct srv_acl *a, const struct rights_peer *p,
    int anon)
{
	size_t i;

	if (a->all)
		return (1);
	if (anon)
		return (0);
	for (i = 0; i < a->nuids; i++)
		if (a->uids[i] == p->uid)
			return (1);
	for (i = 0; i < a->ngids; i++)
		if (rights_in_group(p, a->gids[i]))
			return (1);
	return (0);
}

/* allow_users/allow_groups of earlier versions. */
static int
rights_legacy_has(const struct srv_config *cfg, const struct rights_peer *p,
    int anon)
{
	size_t i;

	if (anon)
		return (0);
	for (i = 0; i < cfg->nallow_uids; i++)
		if (cfg->allow_uids[i] == p->uid)
			return (1);
	for (i = 0; i < cfg->nallow_gids; i++)
		if (rights_in_group(p, cfg->allow_gids[i]))
			return (1);
	return (0);
}

/* Primary or supplementary group. */
static int
rights_in_group(const struct rights_peer *p, gid_t gid)
{
	size_t i;

	if (p->gid == gid)
		return (1);
	for (i = 0; i < p->ngroups; i++)
		if (p->groups[i] == gid)
			return (1);
	return (0);
}

/* A client the user namespace does not let us tell apart. */
static int
rights_anon(const struct rights_peer *p)
{
	return (rights_userns_partial && p->uid == rights_overflow_uid);
}
