/*
 * walmmapd - closing what clients passed, away from the event loop.
 *
 * Closing the last reference to an open file can wait for as long as
 * someone else likes: a TCP socket with SO_LINGER waits until its unsent
 * data is acknowledged (up to the linger time its owner chose), a FUSE
 * file waits for its server to answer FLUSH. A client can pass such a
 * descriptor with any frame (SCM_RIGHTS), to a doorbell, or leave it in
 * flight in a socket the daemon closes, and then close its own copy: the
 * daemon's close is then the last one. So the event loop never closes a
 * descriptor a client passed unless it is a memfd (shmem or hugetlbfs, the
 * only files that take seals, whose release never waits): it hands it to
 * the closer thread. A close that takes longer than CLOSER_NUDGE_MS is
 * interrupted with a signal (closer_tick), which ends every wait a signal
 * can end (the linger wait does); what waits uninterruptibly (a FUSE
 * server that never answers) holds only this thread and what is queued
 * behind it.
 *
 * What is queued holds descriptors of ours. While a close takes its time a
 * client could pass thousands more, up to the descriptor limit; past it the
 * kernel drops what a message carries inside recvmsg, on the loop's thread,
 * and a last reference dropped there blocks the loop after all. So the
 * queue is bounded: closer_room() says whether another message's worth
 * (CLOSER_MAX_FDS) still fits in a quarter of the descriptor limit, and
 * the loop receives nothing from clients while it does not.
 *
 * A socket a client can send to (a connection, a doorbell) may hold
 * descriptors in flight, released with it: closer_close_socket() shuts it
 * for reading (no new message can arrive), receives what is queued with
 * room for every descriptor a message can carry (so the kernel drops none
 * on our thread), hands those to the thread, and only then closes it.
 *
 * Threads: the queue (fds, n, cap, stop) is guarded by lock; busy_since is
 * written by the closer thread and read by the loop (closer_tick).
 */
#include "config.h"

#include <sys/resource.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "closer.h"
#include "log.h"

#define CLOSER_NUDGE_MS	100	/* then a close is interrupted */
#define CLOSER_SIGNAL	SIGURG	/* ignored by default: harmless if sent */
#define CLOSER_WARN_S	10	/* a close still stuck: say so, once */

struct closer {
	pthread_t		 thread;
	pthread_mutex_t		 lock;
	pthread_cond_t		 cond;
	int			*fds;		/* (lock) waiting to be closed */
	_Atomic size_t		 n;		/* (lock; read without) */
	size_t			 max;		/* queued at most (closer_room) */
	size_t			 cap;		/* (lock) */
	int			 stop;		/* (lock) */
	_Atomic uint64_t	 busy_since;	/* mono ns a close began, 0 */
	int			 warned;	/* (loop) about this close */
};

static void	*closer_main(void *);
static void	 closer_nudged(int);
static uint64_t	 closer_mono_ns(void);

/* Start the thread (signals blocked but the one that interrupts it). */
struct closer *
closer_start(void)
{
	struct closer *cl;
	struct sigaction sa;
	struct rlimit rl;
	sigset_t all, saved;
	int rc;

	if ((cl = calloc(1, sizeof *cl)) == NULL)
		return (NULL);
	/* A quarter of the descriptors; the rest are the daemon's own. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		cl->max = rl.rlim_cur / 4;
	else
		cl->max = 16384;
	pthread_mutex_init(&cl->lock, NULL);
	pthread_cond_init(&cl->cond, NULL);
	/* A handler (not SA_RESTART) so the signal ends a wait in close(). */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = closer_nudged;
	sigemptyset(&sa.sa_mask);
	if (sigaction(CLOSER_SIGNAL, &sa, NULL) == -1)
		goto fail;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	rc = pthread_create(&cl->thread, NULL, closer_main, cl);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc != 0)
		goto fail;
	return (cl);
fail:
	pthread_mutex_destroy(&cl->lock);
	pthread_cond_destroy(&cl->cond);
	free(cl);
	return (NULL);
}

/*
 * Stop the thread: it closes nothing more (exit releases what is left,
 * without lingering). A thread in the middle of a close is left to it:
 * the daemon's stop bound does not wait for a client's descriptor.
 */
void
closer_stop(struct closer *cl)
{
	if (cl == NULL)
		return;
	pthread_mutex_lock(&cl->lock);
	cl->stop = 1;
	pthread_cond_signal(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
	/* Not closing: it sees stop before it takes another descriptor. */
	if (atomic_load(&cl->busy_since) != 0) {
		log_warnx("a descriptor a client passed is still being closed; "
		    "not waiting for it");
		return;
	}
	pthread_join(cl->thread, NULL);
	pthread_mutex_destroy(&cl->lock);
	pthread_cond_destroy(&cl->cond);
	free(cl->fds);
	free(cl);
}

/*
 * Close a descriptor a client passed: at once if it is a memfd, else on
 * the thread. Never waits on anything the client controls.
 */
void
closer_close(struct closer *cl, int fd)
{
	int *n;
	size_t cap;

	if (fd < 0)
		return;
	if (fcntl(fd, F_GET_SEALS) != -1) {
		close(fd);	/* shmem or hugetlbfs: release never waits */
		return;
	}
	pthread_mutex_lock(&cl->lock);
	if (cl->n == cl->cap) {
		cap = cl->cap ? cl->cap * 2 : 64;
		if ((n = reallocarray(cl->fds, cap, sizeof *n)) == NULL) {
			pthread_mutex_unlock(&cl->lock);
			/* Out of memory: keeping it would leak it for good. */
			log_warnx("out of memory queueing a descriptor to close; "
			    "closing it on the event loop");
			close(fd);
			return;
		}
		cl->fds = n;
		cl->cap = cap;
	}
	cl->fds[cl->n++] = fd;
	pthread_cond_signal(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}

/*
 * Close a socket a client can send to: shut it for reading, hand what is
 * in flight in it to the thread, close it.
 */
void
closer_close_socket(struct closer *cl, int fd)
{
	if (fd < 0)
		return;
	(void)shutdown(fd, SHUT_RD);
	(void)closer_drain(cl, fd, SIZE_MAX, NULL);
	close(fd);
}

/*
 * Receive and discard up to max messages waiting on a socket (without
 * waiting), handing every descriptor they carry to the thread. Returns
 * the messages taken; *ended (if not NULL) says whether the socket is at
 * its end or failed (rather than just empty).
 */
size_t
closer_drain(struct closer *cl, int fd, size_t max, int *ended)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CLOSER_CMSG_SPACE];
	} cm;
	struct msghdr msg;
	struct iovec iov;
	uint8_t b[16];
	size_t taken;
	ssize_t n = 1;

	if (ended != NULL)
		*ended = 0;
	for (taken = 0; taken < max; taken++) {
		memset(&msg, 0, sizeof msg);
		iov.iov_base = b;
		iov.iov_len = sizeof b;
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = cm.buf;
		msg.msg_controllen = sizeof cm.buf;
		if ((n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)) <= 0)
			break;
		(void)closer_take_fds(cl, &msg, 0);
	}
	if (ended != NULL && (n == 0 || (n == -1 && errno != EAGAIN &&
	    errno != EWOULDBLOCK && errno != EINTR)))
		*ended = 1;
	return (taken);
}

/*
 * Hand every descriptor a received message carries to the thread, but
 * the first one when keep_first is set: returns it (or -1 if none).
 */
int
closer_take_fds(struct closer *cl, struct msghdr *msg, int keep_first)
{
	struct cmsghdr *cmsg;
	int fds[CLOSER_MAX_FDS], kept = -1;
	size_t i, nfds;

	for (cmsg = CMSG_FIRSTHDR(msg); cmsg != NULL;
	    cmsg = CMSG_NXTHDR(msg, cmsg)) {
		if (cmsg->cmsg_level != SOL_SOCKET ||
		    cmsg->cmsg_type != SCM_RIGHTS ||
		    cmsg->cmsg_len < CMSG_LEN(0))
			continue;
		nfds = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (nfds > CLOSER_MAX_FDS)
			nfds = CLOSER_MAX_FDS;
		memcpy(fds, CMSG_DATA(cmsg), sizeof(int) * nfds);
		for (i = 0; i < nfds; i++) {
			if (keep_first && kept == -1)
				kept = fds[i];
			else
				closer_close(cl, fds[i]);
		}
	}
	return (kept);
}

/*
 * May the loop receive another message from a client (one that may carry
 * CLOSER_MAX_FDS descriptors)? Not while the queue is near its bound.
 */
int
closer_room(struct closer *cl)
{
	size_t n = atomic_load(&cl->n);

	return (n == 0 || n + CLOSER_MAX_FDS <= cl->max);
}

/*
 * Every CLOSER_NUDGE_MS (the loop): interrupt a close that has taken that
 * long, and say once that one is stuck.
 */
void
closer_tick(struct closer *cl)
{
	uint64_t since = atomic_load(&cl->busy_since), now;

	if (since == 0) {
		cl->warned = 0;
		return;
	}
	now = closer_mono_ns();
	if (now - since < (uint64_t)CLOSER_NUDGE_MS * 1000000u)
		return;
	pthread_kill(cl->thread, CLOSER_SIGNAL);
	if (!cl->warned && now - since >= (uint64_t)CLOSER_WARN_S *
	    1000000000u) {
		cl->warned = 1;
		log_warnx("closing a descriptor a client passed has taken "
		    "%ds so far; descriptors passed later wait behind it",
		    CLOSER_WARN_S);
	}
}

static void *
closer_main(void *arg)
{
	struct closer *cl = arg;
	sigset_t set;
	int fd;

	(void)pthread_setname_np(pthread_self(), "wal-closer");
	sigemptyset(&set);
	sigaddset(&set, CLOSER_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	pthread_mutex_lock(&cl->lock);
	for (;;) {
		while (cl->n == 0 && !cl->stop)
			pthread_cond_wait(&cl->cond, &cl->lock);
		if (cl->stop)
			break;
		fd = cl->fds[--cl->n];
		/* Under the lock: closer_stop() sees it once stop is set. */
		atomic_store(&cl->busy_since, closer_mono_ns());
		pthread_mutex_unlock(&cl->lock);
		close(fd);
		atomic_store(&cl->busy_since, 0);
		pthread_mutex_lock(&cl->lock);
	}
	pthread_mutex_unlock(&cl->lock);
	return (NULL);
}

/* The signal only has to arrive: it ends the wait it interrupts. */
static void
closer_nudged(int sig)
{
	(void)sig;
}

static uint64_t
closer_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}
