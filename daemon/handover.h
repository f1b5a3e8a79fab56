/*
 * walmmapd - restarts that keep connections: the listening socket, every
 * client connection and every shared-memory ring go to the next walmmapd
 * process, with a serialized state beside them (see handover.c).
 */
#ifndef HANDOVER_H
#define HANDOVER_H

#include <stdint.h>

struct conn;
struct server;

/* How the next process gets the descriptors. */
enum handover_mode {
	HANDOVER_EXEC,		/* re-execute ourselves (SIGUSR2, RESTART) */
	HANDOVER_FDSTORE,	/* systemd's file-descriptor store, then exit */
};

/* The state of one shared-memory ring, as shm.c exports and imports it. */
#define HANDOVER_SHM_MARKS	32
struct shm_state {
	int		 memfd;		/* the ring's memfd */
	int		 bell;		/* the daemon's end of the doorbells */
	uint64_t	 size;		/* data bytes */
	uint32_t	 max_record;
	uint64_t	 head;		/* bytes consumed */
	uint64_t	 written;	/* records written */
	int64_t		 written_seq;
	uint64_t	 durable;	/* records durable */
	int64_t		 durable_want;	/* F_DURABLE seq owed, -1 */
	uint32_t	 nmarks;
	struct {
		uint64_t count;
		int64_t	 seq;
	}		 marks[HANDOVER_SHM_MARKS];
};

/* Remember how we were started (argv, the binary), before anything else. */
void	handover_init(int argc, char **argv);

/* Was this process started by a hand-over (it must not detach)? */
int	handover_incoming(int *was_detached);

/*
 * Take over what the previous process handed over, if it did: the
 * listening socket (srv->listen_fd) and the connections. Called once the
 * ring and the event loop exist, before srv_listen(). A state that cannot
 * be read is refused with a message; the listening socket is still used.
 */
void	handover_restore(struct server *);

/* Is the systemd file-descriptor store there to hand over through? */
int	handover_fdstore_available(void);

/*
 * Ask for a hand-over: done on the next loop pass. c and id name a
 * RESTART request to answer (NULL: a signal). Returns 0, or -1 when one
 * is already under way (c has its error then).
 */
int	handover_request(struct server *, struct conn *c, uint64_t id,
	    enum handover_mode);

/* Do it now (SIGTERM with the store): 0 only if it failed (then stop). */
int	handover_run(struct server *, enum handover_mode);


/* A connection is freed: forget it as the requester. */
void	handover_conn_gone(const struct conn *c);

/* shm.c: a ring's state for the next process (0: none), and back. */
int	shm_export(struct conn *, struct shm_state *);
int	shm_import(struct conn *, const struct shm_state *, char *why,
	    size_t whylen);
void	shm_finish_closing(struct server *);

/* outq.c: walk the queued frames (start with *off = 0; 0 at the end). */
struct outq;
int	outq_next(const struct outq *, size_t *off, const void **frame,
	    size_t *len, int *fds, int *nfds);

#endif /* HANDOVER_H */
