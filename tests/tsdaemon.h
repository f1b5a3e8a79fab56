/*
 * walmmapd tests - starting a real walmmapd, running walctl, collecting
 * logs. Every process started here dies with the test process
 * (PR_SET_PDEATHSIG), so a failing test leaves nothing running.
 */
#ifndef TSDAEMON_H
#define TSDAEMON_H

#include <sys/types.h>

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

struct ts_daemon {
	pid_t	pid;			/* 0: not running */
	char	base[PATH_MAX];		/* the test's temporary directory */
	char	data[PATH_MAX];		/* base/data */
	char	sock[PATH_MAX];		/* base/sock */
	char	log[PATH_MAX];		/* base/walmmapd.log (appended) */
	int	notify_fd;		/* our NOTIFY_SOCKET */
	char	notify_path[PATH_MAX];
	/*
	 * When set, the daemon starts with the fault-injection shim
	 * preloaded, controlled by this file (see faultinject.h).
	 */
	const char *fault_ctl;
	/* Extra NAME=VALUE entries for the daemon's environment, or NULL. */
	char *const *env;
	/*
	 * Words run before walmmapd (NULL-terminated: "unshare", "--user",
	 * ...), or NULL.
	 */
	char *const *prefix;
	/* Set: no -d and -s (the daemon picks its defaults). */
	int	no_paths;
};

/* Paths under base; nothing started. */
void	 ts_daemon_init(struct ts_daemon *, const char *base);

/*
 * Start walmmapd -f -d data -s sock [extra args, NULL-terminated] (under
 * $TS_DAEMON_WRAPPER, for example valgrind, when it is set) and wait
 * until it sends READY=1 (returns 0) or exits (returns its exit status,
 * > 0) or 60 s pass (-1).
 */
int	 ts_daemon_start(struct ts_daemon *, ...);
int	 ts_daemon_startv(struct ts_daemon *, char *const *extra);

/*
 * Start bin (NULL: the build tree's walmmapd) -f -d data -s sock [extra]
 * as systemd starts a service: the nfds descriptors fds become 3, 4, ...
 * with LISTEN_FDS, LISTEN_FDNAMES (names, colon-separated) and LISTEN_PID
 * set (nfds 0: none of them). Does not wait: ts_daemon_wait_ready() or
 * read d->notify_fd. Returns the pid (also in d->pid), or -1.
 */
pid_t	 ts_daemon_spawn_fds(struct ts_daemon *, const char *bin,
	    const int *fds, const char *names, int nfds, char *const *extra);

/* A program's path in the build tree ("daemon/walmmapd"). */
const char *ts_prog(const char *prog);

/*
 * Our NOTIFY_SOCKET (created on first use) and waiting on it for READY=1
 * from pid (0 when it arrived, -1 after 60 s or when pid exited).
 */
int	 ts_daemon_notify_open(struct ts_daemon *);
int	 ts_daemon_wait_ready(struct ts_daemon *);

/* Close and remove it (done once READY=1 arrived; reopened on start). */
void	 ts_daemon_notify_close(struct ts_daemon *);

/* SIGTERM and wait: the exit status (128 + signal if killed). */
int	 ts_daemon_stop(struct ts_daemon *);

/*
 * Wait up to timeout_ms for the daemon to exit by itself: its exit status
 * (128 + signal if killed), or -1 when it is still running.
 */
int	 ts_daemon_wait_exit(struct ts_daemon *, int timeout_ms);

/*
 * SIGTERM and wait at most seconds: the exit status, or -1 (after a dump
 * and SIGKILL) when the daemon is still running.
 */
int	 ts_daemon_stop_within(struct ts_daemon *, unsigned seconds);

/* SIGKILL and reap. */
void	 ts_daemon_kill(struct ts_daemon *);

/* A hung daemon's log tail and thread stacks, on stderr. */
void	 ts_daemon_dump(const struct ts_daemon *);

/* Send a signal (SIGHUP for reload tests). */
void	 ts_daemon_signal(struct ts_daemon *, int sig);

/*
 * SIGSTOP the daemon and wait until it is stopped (fails the test after
 * 10 s); ts_daemon_signal(d, SIGCONT) lets it go on.
 */
void	 ts_daemon_pause(struct ts_daemon *);

/* The log so far (malloc'd, NUL-terminated). */
char	*ts_daemon_log(const struct ts_daemon *);

/* Wait up to 30 s until the log contains text. 1 found, 0 not. */
int	 ts_daemon_log_wait(const struct ts_daemon *, const char *text);

/*
 * Run a program from the build tree ("client/walctl", "daemon/walmmapd")
 * with args (NULL-terminated), feeding input (may be NULL) on stdin.
 * Stdout and stderr are returned in *out (malloc'd) when out != NULL.
 * Returns the exit status (128 + signal if killed).
 */
int	 ts_run_prog(const char *prog, const char *input, size_t inlen,
	    char **out, ...);

/* ts_run_prog without input, the program's soft RLIMIT_NOFILE nofile. */
int	 ts_run_prog_nofile(const char *prog, unsigned long nofile, char **out,
	    ...);

/*
 * Start a program from the build tree with args (NULL-terminated), its
 * stdout on a pipe of one page (it blocks once it has written that much
 * unread) whose read end is *outfd, its stderr on another (*errfd).
 * Returns its pid; it dies with the test process. ts_prog_wait() reaps it
 * and returns its exit status (128 + signal if killed).
 */
pid_t	 ts_spawn_prog(const char *prog, int *outfd, int *errfd, ...);
int	 ts_prog_wait(pid_t pid);

/* ts_run_prog() killed with SIGALRM (status 142) after seconds. */
int	 ts_run_prog_within(unsigned seconds, const char *prog,
	    const char *input, size_t inlen, char **out, ...);

/*
 * Run any program (an absolute path: /usr/bin/python3) with args
 * (NULL-terminated), input on stdin, killed with SIGALRM (status 142)
 * after seconds; stdout and stderr in *out as ts_run_prog().
 */
int	 ts_run_cmd_within(unsigned seconds, const char *input, size_t inlen,
	    char **out, const char *path, ...);

/*
 * A TCP port on 127.0.0.1 that was free a moment ago (bound and closed
 * again: another process may take it before the caller does).
 */
unsigned ts_free_tcp_port(void);

/*
 * Does pid hold a listening TCP socket (IPv4 or IPv6)? Compares the
 * socket inodes of its descriptors with /proc/net/tcp and tcp6.
 */
int	 ts_pid_listens_tcp(pid_t pid);

/* How many descriptors pid has open now (/proc/PID/fd). */
int	 ts_pid_nfds(pid_t pid);

/* A raw connection to the daemon's socket (for malformed input). */
int	 ts_raw_connect(const struct ts_daemon *);

/* HELLO on a raw connection; asserts a WELCOME comes back. */
void	 ts_raw_hello(int s);

/*
 * A producer that maps its shared-memory ring itself, without the library
 * (for hostile producers): the ring and doorbell descriptors as passed.
 */
struct wal_shm_header;
struct ts_ring {
	int			 sock;
	struct wal_shm_header	*hdr;
	uint8_t			*data;
	uint64_t		 size;
	size_t			 maplen;
	int			 efd_in;	/* descriptor 2 of SHM_READY */
	int			 efd_out;	/* descriptor 3 */
	uint64_t		 tail;		/* private */
};

/*
 * Connect, HELLO, SHM_OPEN asking for size data bytes (0: the daemon's
 * choice), map the ring (asserts each step).
 */
void	 ts_ring_open(const struct ts_daemon *, struct ts_ring *,
	    uint64_t size);

/* The same on a connection s already set up (HELLO, PRODUCER, ...). */
void	 ts_ring_open_sock(struct ts_ring *, int s, uint64_t size);

/* Write a slot of len bytes (copy of them from p) at the private tail. */
void	 ts_ring_put(struct ts_ring *, const void *p, uint32_t len,
	    uint32_t copy, uint32_t flags);

/* Publish tail and ring the daemon's doorbell. */
void	 ts_ring_publish(struct ts_ring *, uint64_t tail);

void	 ts_ring_close(struct ts_ring *);

/* A header-only frame (PING, SYNC, STATUS, ...) on a raw connection. */
void	 ts_raw_frame(int s, uint16_t type, uint64_t id);

/* An APPEND of one record at an ack level (WAL_ACK_*). */
void	 ts_raw_append(int s, uint64_t id, const void *payload,
	    uint32_t size, uint8_t ack);

/*
 * PRODUCER (0: a new id) on a raw connection after ts_raw_hello; fills ok
 * on PRODUCER_OK and returns 0, or returns the error code of the ERROR.
 */
struct wal_msg_producer_ok;
unsigned ts_raw_producer(int s, uint64_t id, struct wal_msg_producer_ok *ok);

/* APPEND_P of count records ("r<pseq>" each) from first_pseq. */
void	 ts_raw_append_p(int s, uint64_t id, uint64_t first_pseq,
	    uint32_t count, uint8_t ack);

/*
 * APPEND_FD passing mfd, with send flags (MSG_DONTWAIT...). 0, or -1 with
 * errno when the frame was not sent.
 */
int	 ts_raw_append_fd(int s, uint64_t id, uint64_t size, int mfd,
	    uint8_t ack, int flags);

/* SUBSCRIBE from..to (-1: no limit) with WAL_SUB_* flags. */
void	 ts_raw_subscribe(int s, uint64_t id, int64_t from, int64_t to,
	    uint32_t flags);

/*
 * Receive one frame, waiting at most timeout_ms: its length, 0 at the
 * end of the connection, -1 when nothing came in time.
 */
ssize_t	 ts_raw_recv(int s, void *buf, size_t len, int timeout_ms);

/*
 * Read frames until one of type arrives, within timeout_ms in all; copy
 * it to buf and return its length. Fails the test on the end of the
 * connection, on an ERROR (unless ERROR is the type asked for) and when
 * nothing came in time.
 */
size_t	 ts_raw_recv_until(int s, uint16_t type, void *buf, size_t len,
	    int timeout_ms);

/*
 * Read frames until an ERROR: asserts its code, fatality and that its text
 * contains text; after a fatal one, that the connection then ends.
 */
void	 ts_raw_expect_error(int s, unsigned code, int fatal, const char *text,
	    int timeout_ms);

/*
 * Send a frame with descriptors (SCM_RIGHTS, up to 253). 0, or -1 with
 * errno.
 */
int	 ts_raw_send_fds(int s, const void *frame, size_t len, const int *fds,
	    int nfds);

/*
 * walctl status answers within seconds (a hang detector): fails the test
 * (after a dump of the daemon) when it does not.
 */
void	 ts_status_within(const struct ts_daemon *, unsigned seconds);

/* A sparse memfd of size bytes, sealed as APPEND_FD requires. */
int	 ts_sealed_memfd(uint64_t size);

/* Path of a program in the build tree, in a static buffer. */
const char *ts_prog(const char *prog);

#endif /* TSDAEMON_H */
