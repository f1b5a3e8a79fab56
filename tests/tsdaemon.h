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
 * Our NOTIFY_SOCKET (created on first use) and waiting on it for READY=1
 * from pid (0 when it arrived, -1 after 60 s or when pid exited).
 */
int	 ts_daemon_notify_open(struct ts_daemon *);
int	 ts_daemon_wait_ready(struct ts_daemon *);

/* SIGTERM and wait: the exit status (128 + signal if killed). */
int	 ts_daemon_stop(struct ts_daemon *);

/*
 * Wait up to timeout_ms for the daemon to exit by itself: its exit status
 * (128 + signal if killed), or -1 when it is still running.
 */
int	 ts_daemon_wait_exit(struct ts_daemon *, int timeout_ms);

/* SIGKILL and reap. */
void	 ts_daemon_kill(struct ts_daemon *);

/* A hung daemon's log tail and thread stacks, on stderr. */
void	 ts_daemon_dump(const struct ts_daemon *);

/* Send a signal (SIGHUP for reload tests). */
void	 ts_daemon_signal(struct ts_daemon *, int sig);

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

/*
 * ts_run_prog() without input that gives up after timeout_ms: the exit
 * status, or -1 when the program had not finished (it is killed then).
 */
int	 ts_run_prog_within(int timeout_ms, const char *prog, char **out, ...);

/* A raw connection to the daemon's socket (for malformed input). */
int	 ts_raw_connect(const struct ts_daemon *);

/* HELLO on a raw connection; asserts a WELCOME comes back. */
void	 ts_raw_hello(int s);
/*
 * APPEND one record of len bytes (each byte c) at level ack, as request
 * id; asserts it was sent whole.
 */
void	 ts_raw_append(int s, uint64_t id, uint8_t ack, size_t len, int c);
/* APPEND_FD: the same record in a sealed memfd passed with the frame. */
void	 ts_raw_append_fd(int s, uint64_t id, uint8_t ack, size_t len, int c);
/*
 * Receive one frame into buf within timeout_ms: its length, or 0 when
 * none came; asserts the connection did not end.
 */
size_t	 ts_raw_recv(int s, void *buf, size_t len, int timeout_ms);

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

/* Write a slot of len bytes (copy of them from p) at the private tail. */
void	 ts_ring_put(struct ts_ring *, const void *p, uint32_t len,
	    uint32_t copy, uint32_t flags);

/* Publish tail and ring the daemon's doorbell. */
void	 ts_ring_publish(struct ts_ring *, uint64_t tail);

void	 ts_ring_close(struct ts_ring *);

/* Path of a program in the build tree, in a static buffer. */
const char *ts_prog(const char *prog);

#endif /* TSDAEMON_H */
