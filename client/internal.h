/*
 * libwalmmap - what the library's files share; not installed.
 */
#ifndef WALMMAP_INTERNAL_H
#define WALMMAP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "wal_proto.h"
#include "wal_shm.h"

#define WM_MSG_MAX	512

/* Store a message; returns -code. */
int	wm_seterr(char *msg, int code, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

/* Map a protocol error code to enum walmmap_error. */
int	wm_perr(unsigned code);

/* Milliseconds left until deadline (CLOCK_MONOTONIC ms); -1: none. */
int64_t	wm_now_ms(void);
int	wm_left_ms(int64_t deadline);
int64_t	wm_deadline(int timeout_ms);

/*
 * Has deadline passed (-1: never)? Every loop that waits for a particular
 * answer asks after each frame it took: frames that keep coming, none of
 * them the answer, must not keep it waiting past its limit.
 */
int	wm_expired(int64_t deadline);

/*
 * Connect to walmmapd and exchange HELLO/WELCOME within timeout_ms (< 0:
 * no limit). Returns the socket or -code with msg set. wm_connect() uses
 * WALMMAP_CONNECT_TIMEOUT_MS.
 */
int	wm_connect(const char *path, uint8_t ack, struct wal_msg_welcome *,
	    char *msg);
int	wm_connect_timeout(const char *path, uint8_t ack,
	    struct wal_msg_welcome *, int timeout_ms, char *msg);

/*
 * Receive one frame into buf (WAL_PROTO_MAX_FRAME bytes) within the
 * deadline; *fd gets a passed descriptor or -1. Returns its length, 0 on
 * timeout, or -code with msg set (the connection is unusable then). The
 * frame has passed wal_proto_check().
 */
int	wm_recv(int sock, uint8_t *buf, int64_t deadline, int *fd, char *msg);

/* wm_recv() keeping up to WM_MAX_FDS descriptors (the rest are -1). */
#define WM_MAX_FDS	3
int	wm_recv_fds(int sock, uint8_t *buf, int64_t deadline, int *fds,
	    char *msg);
void	wm_close_fds(int *fds);

/*
 * Receive up to two frames with one recvmmsg(2) into buf[0] and buf[1]
 * (WAL_PROTO_MAX_FRAME bytes each) within the deadline: a producer
 * waiting for durability gets its held ACK and the DURABLE after it in
 * one call. With pollfirst it polls before reading (a reply is not due
 * yet: no read that finds nothing). *missed is 1 when a read without a
 * poll before it found nothing, 0 when it found a frame, -1 when the call
 * polled first (no news). Returns the frames
 * (len[i], fd[i] one kept descriptor or -1), 0 on timeout, or -code
 * with msg set. Each frame has passed wal_proto_check(). When the
 * second frame is bad, returns the first with *late set to the error
 * (-code, msg set): handle the frame, then report it; else *late is 0.
 */
int	wm_recv2(int sock, uint8_t *buf[2], size_t len[2], int fd[2],
	    int64_t deadline, int pollfirst, int *missed, int *late,
	    char *msg);

/* Send one frame (and fd if not -1); -WALMMAP_EAGAIN when dontwait. */
int	wm_send(int sock, const void *buf, size_t len, int fd, int dontwait,
	    char *msg);

/*
 * The producer's side of a shared-memory ring (shm.c). Owned by the
 * handle's thread; the header is shared with the daemon.
 */
struct wm_shm {
	struct wal_shm_header	*hdr;
	uint8_t			*data;
	size_t			 maplen;
	uint64_t		 size;
	uint32_t		 max_record;	/* larger records: the socket */
	int			 efd_in;	/* our doorbell to the daemon */
	int			 efd_out;	/* the daemon's to us */
	uint64_t		 tail;		/* next slot (private) */
	uint64_t		 published;	/* tail as last published */
	uint64_t		 head;		/* daemon's head as last read */
	uint64_t		 records;	/* records written into slots */
	uint64_t		 records_pub;	/* of those, published */
	int			 asym;		/* WAL_SHM_FEAT_ASYM: no fence */
};

enum wm_shm_cond { WM_SHM_WRITTEN, WM_SHM_DURABLE, WM_SHM_HEAD };

int	wm_shm_map(struct wm_shm **, const struct wal_msg_shm_ready *,
	    int *fds, char *msg);
void	wm_shm_free(struct wm_shm *);
int64_t	wm_shm_reserve(struct wm_shm *, uint32_t len);
uint64_t wm_shm_room_target(const struct wm_shm *, uint32_t len);
void	wm_shm_write(struct wm_shm *, uint64_t pos, const void *, uint32_t len,
	    uint32_t flags);
void	wm_shm_publish(struct wm_shm *);
int	wm_shm_refresh(struct wm_shm *);
int64_t	wm_shm_seq(const struct wm_shm *, uint64_t pos);
int	wm_shm_reached(struct wm_shm *, enum wm_shm_cond, uint64_t target);
int	wm_shm_wait(struct wm_shm *, int sock, enum wm_shm_cond,
	    uint64_t target, int64_t deadline);

#endif /* WALMMAP_INTERNAL_H */
