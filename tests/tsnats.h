/*
 * walmmapd tests - real nats-server processes (one, or a three-node
 * JetStream cluster) on free loopback ports with their store in the test's
 * temporary directory; walmmap-forward processes; reading a stream back
 * with a libnats JetStream consumer. Every process started here dies with
 * the test process (PR_SET_PDEATHSIG).
 */
#ifndef TSNATS_H
#define TSNATS_H

#include <sys/types.h>

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

struct ts_daemon;

struct ts_nats {
	pid_t	pid;			/* 0: not running */
	int	port;			/* client port */
	int	cport;			/* cluster port, 0: standalone */
	char	name[16];
	char	dir[PATH_MAX];		/* JetStream store */
	char	conf[PATH_MAX];
	char	log[PATH_MAX];
	char	url[64];
	char	routes[256];		/* cluster routes, "" standalone */
	char	extra[512];		/* more configuration text */
};

/* A free TCP port on 127.0.0.1. */
int	 ts_free_port(void);

/* Paths and ports under base; nothing started. */
void	 ts_nats_init(struct ts_nats *, const char *base, const char *name);

/*
 * Start it (configuration written from the fields) and wait until it
 * takes connections (fails the test after 30 s). With wait_js, also until
 * its JetStream answers (a cluster needs all nodes up for that).
 */
void	 ts_nats_start(struct ts_nats *, int wait_js);

/* SIGTERM (SIGKILL after 10 s) and reap; SIGKILL and reap. */
void	 ts_nats_stop(struct ts_nats *);
void	 ts_nats_kill(struct ts_nats *);

/* Wait up to 60 s until its JetStream answers (fails the test). */
void	 ts_nats_start_wait_js(struct ts_nats *);

/* Three nodes n1..n3 of one cluster, started, JetStream ready. */
void	 ts_nats_cluster(struct ts_nats n[3], const char *base);

/* "url1,url2,url3" of a cluster. */
void	 ts_nats_urls(const struct ts_nats *n, int count, char *buf,
	    size_t len);

/*
 * Start walmmap-forward -f -s <daemon's socket> [args, NULL-terminated]
 * with stdout and stderr appended to logpath; returns its pid.
 */
pid_t	 ts_fwd_start(const struct ts_daemon *, const char *logpath, ...);
/* When set, the forwarders started get it as NOTIFY_SOCKET. */
extern const char *ts_fwd_notify;
pid_t	 ts_fwd_startv(const struct ts_daemon *, const char *logpath,
	    char *const *args);

/*
 * Wait up to timeout_ms for it to exit: its exit status (128 + signal),
 * or -1 while it runs.
 */
int	 ts_fwd_wait(pid_t, int timeout_ms);

/* SIGTERM and wait up to 30 s (then SIGKILL, fails the test): status. */
int	 ts_fwd_stop(pid_t);

/* Messages in a stream (its state), -1 when it cannot be asked. */
int64_t	 ts_js_count(const char *url, const char *stream);

/* Wait up to timeout_ms until the stream holds n messages: 1, else 0. */
int	 ts_js_wait_count(const char *url, const char *stream, int64_t n,
	    int timeout_ms);

/*
 * Check the stream against the log: reading subject from the start with
 * a JetStream consumer gives exactly the records of the log in dir from
 * first_seq to last_seq, in order: payloads, Walmmap-Seq,
 * Walmmap-Timestamp and Nats-Msg-Id "<log_id>:<seq>"; and nothing else.
 * Fails the test with what differs.
 */
void	 ts_js_verify(const char *url, const char *stream, const char *subject,
	    const char *dir, const char *log_id, int64_t first_seq,
	    int64_t last_seq);

/* The log id of a data directory (32 hex digits). */
void	 ts_log_id(const char *dir, char out[33]);

#endif /* TSNATS_H */
