/*
 * walmmapd - closing what clients passed, away from the event loop (see
 * closer.c).
 */
#ifndef CLOSER_H
#define CLOSER_H

#include <sys/socket.h>

#include <stddef.h>

/* Descriptors one message can carry (the kernel's SCM_MAX_FD). */
#define CLOSER_MAX_FDS		253
/* Control space that receives all of them, so the kernel drops none. */
#define CLOSER_CMSG_SPACE	CMSG_SPACE(sizeof(int) * CLOSER_MAX_FDS)

struct closer;

struct closer	*closer_start(void);
void		 closer_stop(struct closer *);

/* Close a descriptor a client passed, never waiting on it. */
void		 closer_close(struct closer *, int fd);

/* Close a socket a client can send to, and what is in flight in it. */
void		 closer_close_socket(struct closer *, int fd);

/*
 * Receive and discard up to max waiting messages (not waiting for more),
 * closing what they carry as closer_close() does. Returns how many;
 * *ended (may be NULL): the socket is at its end or failed.
 */
size_t		 closer_drain(struct closer *, int fd, size_t max, int *ended);

/*
 * The descriptors of a received message (msg_control as filled by
 * recvmsg) go to closer_close(), but with keep_first the first: returned
 * (-1 if none).
 */
int		 closer_take_fds(struct closer *, struct msghdr *, int keep_first);

/*
 * May the loop receive another message from a client? Not while the
 * descriptors waiting to be closed are near their bound (see closer.c).
 */
int		 closer_room(struct closer *);

/* Every CLOSER_TICK_MS from the loop: interrupt a close that is slow. */
#define CLOSER_TICK_MS	100
void		 closer_tick(struct closer *);

#endif /* CLOSER_H */
