/*
 * libwalmmap - what the library's files share; not installed.
 */
#ifndef WALMMAP_INTERNAL_H
#define WALMMAP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "wal_proto.h"

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
 * Connect to walmmapd and exchange HELLO/WELCOME. Returns the socket or
 * -code with msg set.
 */
int	wm_connect(const char *path, uint8_t ack, struct wal_msg_welcome *,
	    char *msg);

/*
 * Receive one frame into buf (WAL_PROTO_MAX_FRAME bytes) within the
 * deadline; *fd gets a passed descriptor or -1. Returns its length, 0 on
 * timeout, or -code with msg set (the connection is unusable then). The
 * frame has passed wal_proto_check().
 */
int	wm_recv(int sock, uint8_t *buf, int64_t deadline, int *fd, char *msg);

/* Send one frame (and fd if not -1); -WALMMAP_EAGAIN when dontwait. */
int	wm_send(int sock, const void *buf, size_t len, int fd, int dontwait,
	    char *msg);

#endif /* WALMMAP_INTERNAL_H */
