/*
 * walmmapd - forwarders (walmmap-forward) and the log's identity.
 *
 * Everything here belongs to the event-loop thread.
 */
#ifndef FORWARD_H
#define FORWARD_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "wal_proto.h"

struct conn;
struct server;

#define FWD_LOG_ID_FILE		"walmmapd.log-id"
#define FWD_STATE_FILE		"walmmapd.forwarders"

/* What the metrics module (and STATUS) learns about one forwarder. */
struct fwd_info {
	const char	*name;
	int64_t		 shipped_seq;	/* -1: nothing shipped yet */
	int64_t		 lag_records;	/* written records not shipped */
	int64_t		 lag_ns;	/* now - shipped record's time */
	uint64_t	 gap_records;	/* lost to retention past the cap */
	int		 attached;	/* registered on a connection */
	int		 connected;	/* reaches its destination */
};

/*
 * Load or create the log id and load the forwarders' positions, beside
 * the segments. Returns 0, or -1 with a message in why.
 */
int	 fwd_open(struct server *, char *why, size_t whylen);
/* Save the positions if they changed, free everything. */
void	 fwd_close(struct server *);
/* Once a second: save the positions if they changed. */
void	 fwd_tick(struct server *);
/* The log id. */
const uint8_t *fwd_log_id(const struct server *);

/* FWD_REGISTER / FWD_POSITION on c (a version 2 connection). */
void	 fwd_register(struct conn *, const struct wal_msg_fwd_register *);
void	 fwd_position(struct conn *, const struct wal_msg_fwd_position *);
/* c goes away: its forwarder stays, detached. */
void	 fwd_conn_gone(struct conn *);
/* A restart's hand-over: the forwarder on c (or NULL), and its adoption. */
const char *fwd_conn_name(const struct conn *);
int	 fwd_adopt(struct conn *, const char *name);

/*
 * Retention (srv_retention): ids[0 .. cut) are the segments it would
 * remove, ids[cut] the first it keeps; lower *limit so that every
 * forwarder keeps its unshipped segments up to the hold cap.
 */
void	 fwd_retention(struct server *, const uint64_t *ids,
	    const uint64_t *sizes, const time_t *mtimes, size_t cut,
	    uint64_t *limit);
/* 1 while producers wait for a forwarder (forward_hold_block). */
int	 fwd_blocking(const struct server *);
/* Must connection c wait before its next frame (a producer, blocked)? */
int	 fwd_holds_conn(const struct conn *);

/* After retention removed segments: report forwarders that lost records. */
void	 fwd_check_gaps(struct server *);

/*
 * STATUS with WAL_STATUS_F_FWD: write struct wal_status_fwd and its
 * entries into buf (room bytes, at least FWD_STATUS_MAX); returns the
 * length.
 */
#define FWD_STATUS_MAX	(sizeof(struct wal_status_fwd) + \
	    WAL_STATUS_FWD_MAX * sizeof(struct wal_status_fwd_entry))
size_t	 fwd_status(struct server *, uint8_t *buf, size_t room);

/*
 * Each forwarder for the metrics module: fills up to max entries of out
 * (names valid until the next event-loop pass); returns how many.
 */
size_t	 fwd_list(struct server *, struct fwd_info *out, size_t max);

#endif /* FORWARD_H */
