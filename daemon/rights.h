/*
 * walmmapd - who may read, write and administer the log (see rights.c).
 */
#ifndef RIGHTS_H
#define RIGHTS_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

struct conn;
struct server;

#define RIGHT_READ	0x1u	/* SUBSCRIBE, forwarders */
#define RIGHT_WRITE	0x2u	/* appends, SYNC, shared-memory rings */
#define RIGHT_ADMIN	0x4u	/* ROTATE, RESTART */
#define RIGHT_ALL	(RIGHT_READ | RIGHT_WRITE | RIGHT_ADMIN)

/* A client as the kernel recorded it when it connected. */
struct rights_peer {
	pid_t		 pid;
	uid_t		 uid;
	gid_t		 gid;
	gid_t		*groups;	/* supplementary (SO_PEERGROUPS) */
	size_t		 ngroups;
};

/* Once at start-up: what the user namespace hides; warnings. */
void	 rights_init(struct server *);
/* After the socket is set up: warn about socket options it ignores. */
void	 rights_socket_check(struct server *);

/*
 * The credentials of a just-accepted socket. 0, or -1 when the kernel
 * would not say (the peer then holds no right).
 */
int	 rights_peer_get(int fd, struct rights_peer *);
void	 rights_peer_free(struct rights_peer *);

/* The rights a peer holds under the running configuration. */
unsigned rights_of(const struct server *, const struct rights_peer *);

/*
 * Refuse a peer that holds no right at all: the text for its error and
 * the log line.
 */
void	 rights_refusal(const struct server *, const struct rights_peer *,
	    char *why, size_t whylen);

/* The connection takes over the peer's credentials (groups). */
void	 rights_attach(struct conn *, struct rights_peer *, unsigned rights);

/*
 * A request of this type may run on this connection: 1, or 0 after an
 * ERROR naming the missing right went to the client and a line with its
 * uid and pid to the log.
 */
int	 rights_request(struct conn *, uint16_t type, uint64_t id);

/* The same for a right asked for by name (RIGHT_*). */
int	 rights_check(struct conn *, uint64_t id, unsigned need,
	    const char *what);

/*
 * After a reload: every connection's rights again; a subscription whose
 * reader lost the read right ends, a producer that lost the write right
 * (socket or ring) is closed, a client left with no right is closed.
 */
void	 rights_reload(struct server *);

/* A right's name ("read"). */
const char *rights_name(unsigned right);

#endif /* RIGHTS_H */
