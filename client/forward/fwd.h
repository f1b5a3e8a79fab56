/*
 * walmmap-forward - what its files share.
 *
 * Threads: the main thread owns everything here except the fields marked
 * (lock): libnats calls the acknowledgement and connection handlers on
 * its own threads, and they take fw->lock.
 */
#ifndef FWD_H
#define FWD_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include <nats/nats.h>

/* Exit codes (walmmap-forward(8)). */
#define FWD_EXIT_OK		0	/* stopped by SIGTERM/SIGINT */
#define FWD_EXIT_FAIL		1	/* the daemon refused us, other errors */
#define FWD_EXIT_CONFIG		2	/* usage, configuration, credentials,
					   stream or subject */
#define FWD_EXIT_GAP		3	/* records were removed before they
					   were shipped */
#define FWD_EXIT_TOO_LARGE	4	/* a record larger than the server's
					   max_payload or the stream's
					   max_msg_size */

enum fwd_level { FWD_LEVEL_WRITTEN, FWD_LEVEL_DURABLE };

struct fwd_config {
	const char	*socket;	/* walmmapd's socket, NULL: default */
	const char	*datadir;	/* read segments here instead */
	const char	*urls;		/* comma-separated */
	const char	*stream;
	char		 subject[256];
	const char	*name;		/* registered with walmmapd */
	int		 create_stream;
	int		 replicas;
	int		 memory_storage;
	enum fwd_level	 level;
	int		 window;	/* unacknowledged messages at most */
	int		 ack_wait_ms;
	int		 stop_wait_ms;	/* SIGTERM: wait for acks this long */
	int		 allow_gap;	/* go on after a gap (said loudly) */
	const char	*creds;
	const char	*nkey_seed;
	const char	*user;
	const char	*password;
	const char	*tls_ca;
	const char	*tls_cert;
	const char	*tls_key;
	char		**owned;	/* copies of option values, freed at exit */
	size_t		 nowned;
	int		 tls;
	int		 foreground;
};

/* One message in flight: its seq and whether JetStream stored it. */
struct fwd_slot {
	int64_t		 seq;
	int64_t		 ts_ns;
	int		 acked;
};

struct fwd {
	struct fwd_config cfg;
	uint8_t		 log_id[16];
	char		 log_id_hex[33];
	int		 have_log_id;

	natsOptions	*opts;
	natsConnection	*nc;
	jsCtx		*js;		/* this epoch's context (lock) */
	int64_t		 max_payload;
	int64_t		 stream_max_msg; /* the stream's max_msg_size, or
					   max_bytes with discard new; -1 */

	pthread_mutex_t	 lock;
	pthread_cond_t	 cond;		/* an ack arrived (lock) */
	struct fwd_slot	*slots;		/* window entries, by seq (lock) */
	int64_t		 acked_seq;	/* all <= it stored (lock) */
	int64_t		 acked_ts_ns;	/* (lock) */
	int64_t		 sent_seq;	/* last published (lock) */
	int		 waiting;	/* the publisher waits for room (lock) */
	int		 rewind;	/* an ack failed or the connection
					   dropped: start again (lock) */
	int		 connected;	/* to a NATS server (lock) */
	char		 error[160];	/* last error (lock) */
	char		 nats_error[128]; /* libnats's last async error (lock) */
	uint64_t	 published;	/* messages published (lock) */
	uint64_t	 duplicates;	/* acks saying "duplicate" (lock) */

	int		 ctl;		/* control connection to walmmapd */
	int		 positioned;	/* acked_seq is what the stream says */
	int64_t		 durable_seq;	/* as walmmapd last said */
	int64_t		 last_sseq;	/* stream seq of the last message on
					   the subject, 0: none */
	int64_t		 last_ts_ns;	/* that message's Walmmap-Timestamp */
	uint64_t	 last_hash;	/* and its payload's fwd_hash() */
	int64_t		 last_len;
	int64_t		 verified;	/* the stream holds every seq <= it
					   once, in order; -2: not known */
};

/* nats.c */
int	 fwd_nats_setup(struct fwd *, char *why, size_t whylen);
int	 fwd_nats_connected(struct fwd *);
int	 fwd_nats_check_stream(struct fwd *, char *why, size_t whylen);
int	 fwd_nats_last(struct fwd *, int64_t *seq, char *why, size_t whylen);
int	 fwd_nats_verify(struct fwd *, int64_t last, int64_t floor,
	    char *why, size_t whylen);
int	 fwd_nats_epoch(struct fwd *, int64_t shipped, char *why,
	    size_t whylen);
int	 fwd_nats_publish(struct fwd *, int64_t seq, int64_t ts_ns,
	    const void *data, size_t len, char *why, size_t whylen);
uint64_t fwd_hash(const void *, size_t);
void	 fwd_nats_settle(struct fwd *, int timeout_ms);
void	 fwd_nats_server(struct fwd *, char *buf, size_t len);
void	 fwd_nats_probe(struct fwd *, char *buf, size_t len);
void	 fwd_nats_close(struct fwd *);
void	 fwd_set_error(struct fwd *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/* ctl.c */
struct wal_msg_fwd_state;
int	 ctl_connect(struct fwd *, char *why, size_t whylen);
void	 ctl_close(struct fwd *);
int	 ctl_register(struct fwd *, struct wal_msg_fwd_state *, char *why,
	    size_t whylen);
int	 ctl_position(struct fwd *);
int	 ctl_poll(struct fwd *);
int	 ctl_durable(struct fwd *);

/* forward.c */
extern volatile sig_atomic_t fwd_stop;	/* SIGTERM/SIGINT came */
void	 fwd_log(int prio, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

#endif /* FWD_H */
