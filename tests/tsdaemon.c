/*
 * walmmapd tests - a real daemon and real programs (see tsdaemon.h).
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "faultinject.h"
#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_proto.h"
#include "wal_shm.h"

#define MAX_ARGS	64

static int	exit_status(int);
static int	run_argv(char **argv, const char *input, size_t inlen,
		    unsigned long nofile, unsigned seconds, char **out);
static void	ts_fault_env(const char *ctl);
static int	ts_run_progv(unsigned, const char *, const char *, size_t,
		    char **, va_list);
static void	notify_drain(struct ts_daemon *);

const char *
ts_prog(const char *prog)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/%s", TS_BUILDDIR, prog);
	return (path);
}

void
ts_daemon_init(struct ts_daemon *d, const char *base)
{
	memset(d, 0, sizeof *d);
	d->notify_fd = -1;
	snprintf(d->base, sizeof d->base, "%s", base);
	snprintf(d->data, sizeof d->data, "%s/data", base);
	snprintf(d->sock, sizeof d->sock, "%s/sock", base);
	snprintf(d->log, sizeof d->log, "%s/walmmapd.log", base);
	snprintf(d->notify_path, sizeof d->notify_path, "%s/notify", base);
}

int
ts_daemon_start(struct ts_daemon *d, ...)
{
	char *args[MAX_ARGS];
	va_list ap;
	int n = 0;

	va_start(ap, d);
	while (n < MAX_ARGS - 1 && (args[n] = va_arg(ap, char *)) != NULL)
		n++;
	va_end(ap);
	args[n] = NULL;
	return (ts_daemon_startv(d, args));
}

int
ts_daemon_startv(struct ts_daemon *d, char *const *extra)
{
	char *argv[MAX_ARGS + 24], wrap[512], *w, *save = NULL;
	const char *wrapper = getenv("TS_DAEMON_WRAPPER");
	int n = 0, i, logfd;

	if (ts_daemon_notify_open(d) != 0)
		return (-1);
	/* TS_DAEMON_WRAPPER="valgrind --error-exitcode=99 -q": run under it. */
	if (wrapper != NULL && *wrapper != '\0') {
		snprintf(wrap, sizeof wrap, "%s", wrapper);
		for (w = strtok_r(wrap, " ", &save); w != NULL && n < 16;
		    w = strtok_r(NULL, " ", &save))
			argv[n++] = w;
	}
	for (i = 0; d->prefix != NULL && d->prefix[i] != NULL && n < 20; i++)
		argv[n++] = d->prefix[i];
	argv[n++] = (char *)ts_prog("daemon/walmmapd");
	argv[n++] = (char *)"-f";
	if (!d->no_paths) {
		argv[n++] = (char *)"-d";
		argv[n++] = d->data;
		argv[n++] = (char *)"-s";
		argv[n++] = d->sock;
	}
	for (i = 0; extra != NULL && extra[i] != NULL && n < MAX_ARGS; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;

	if ((d->pid = fork()) == -1)
		return (-1);
	if (d->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		logfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		    0644);
		if (logfd != -1) {
			dup2(logfd, STDOUT_FILENO);
			dup2(logfd, STDERR_FILENO);
		}
		setenv("NOTIFY_SOCKET", d->notify_path, 1);
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		if (d->fault_ctl != NULL)
			ts_fault_env(d->fault_ctl);
		for (i = 0; d->env != NULL && d->env[i] != NULL; i++)
			putenv(d->env[i]);
		execvp(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return (ts_daemon_wait_ready(d));
}

pid_t
ts_daemon_spawn_fds(struct ts_daemon *d, const char *bin, const int *fds,
    const char *names, int nfds, char *const *extra)
{
	char *argv[MAX_ARGS + 8], num[32];
	int n = 0, i, logfd, tmp[256];

	if (ts_daemon_notify_open(d) != 0 || nfds > 256)
		return (-1);
	argv[n++] = (char *)(bin != NULL ? bin : ts_prog("daemon/walmmapd"));
	argv[n++] = (char *)"-f";
	argv[n++] = (char *)"-d";
	argv[n++] = d->data;
	argv[n++] = (char *)"-s";
	argv[n++] = d->sock;
	for (i = 0; extra != NULL && extra[i] != NULL && n < MAX_ARGS; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	if ((d->pid = fork()) == -1)
		return (-1);
	if (d->pid > 0)
		return (d->pid);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Out of the way of 3.. first, then in place (dup2 clears CLOEXEC). */
	for (i = 0; i < nfds; i++)
		tmp[i] = fcntl(fds[i], F_DUPFD, 512);
	logfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd != -1) {
		dup2(logfd, STDOUT_FILENO);
		dup2(logfd, STDERR_FILENO);
	}
	for (i = 0; i < nfds; i++) {
		dup2(tmp[i], 3 + i);
		close(tmp[i]);
	}
	setenv("NOTIFY_SOCKET", d->notify_path, 1);
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	if (nfds > 0) {
		snprintf(num, sizeof num, "%d", nfds);
		setenv("LISTEN_FDS", num, 1);
		setenv("LISTEN_FDNAMES", names, 1);
		snprintf(num, sizeof num, "%ld", (long)getpid());
		setenv("LISTEN_PID", num, 1);
	}
	if (d->fault_ctl != NULL)
		ts_fault_env(d->fault_ctl);
	for (i = 0; d->env != NULL && d->env[i] != NULL; i++)
		putenv(d->env[i]);
	execv(argv[0], argv);
	fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

int
ts_daemon_notify_open(struct ts_daemon *d)
{
	struct sockaddr_un sun;

	if (d->notify_fd != -1)
		return (0);
	d->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (snprintf(sun.sun_path, sizeof sun.sun_path, "%s",
	    d->notify_path) >= (int)sizeof sun.sun_path) {
		fprintf(stderr, "%s: path too long\n", d->notify_path);
		return (-1);
	}
	unlink(d->notify_path);
	if (d->notify_fd == -1 || bind(d->notify_fd, (struct sockaddr *)&sun,
	    sizeof sun) == -1) {
		fprintf(stderr, "notify socket %s: %s\n", d->notify_path,
		    strerror(errno));
		return (-1);
	}
	return (0);
}

/*
 * Nobody reads the notify socket after READY=1: close it, or the daemon's
 * status line once a second fills its queue (net.unix.max_dgram_qlen, 10
 * by default) and the next sd_notify() blocks the daemon.
 */
void
ts_daemon_notify_close(struct ts_daemon *d)
{
	if (d->notify_fd == -1)
		return;
	close(d->notify_fd);
	d->notify_fd = -1;
	unlink(d->notify_path);
}

int
ts_daemon_wait_ready(struct ts_daemon *d)
{
	struct pollfd pfd;
	char buf[512];
	time_t until;
	ssize_t len;
	int status;

	until = time(NULL) + 60;
	while (time(NULL) < until) {
		pfd.fd = d->notify_fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 100) == 1) {
			len = recv(d->notify_fd, buf, sizeof buf - 1, 0);
			if (len > 0) {
				buf[len] = '\0';
				if (strstr(buf, "READY=1") != NULL) {
					ts_daemon_notify_close(d);
					return (0);
				}
			}
		}
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			d->pid = 0;
			return (exit_status(status));
		}
	}
	fprintf(stderr, "walmmapd did not become ready in 60 s\n");
	ts_daemon_kill(d);
	return (-1);
}

/*
 * Read what the daemon sent to our NOTIFY_SOCKET meanwhile: an AF_UNIX
 * datagram socket takes only net.unix.max_dgram_qlen (10) unread messages,
 * after which its sd_notify() (STATUS= once a second) blocks the daemon.
 */
static void
notify_drain(struct ts_daemon *d)
{
	char buf[512];

	if (d->notify_fd == -1)
		return;
	while (recv(d->notify_fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
		;
}

int
ts_daemon_stop(struct ts_daemon *d)
{
	return (ts_daemon_stop_within(d, 30));
}

int
ts_daemon_stop_within(struct ts_daemon *d, unsigned seconds)
{
	int status;
	unsigned i;

	if (d->pid <= 0)
		return (-1);
	kill(d->pid, SIGTERM);
	for (i = 0; i < seconds * 20; i++) {
		notify_drain(d);
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			d->pid = 0;
			return (exit_status(status));
		}
		usleep(50000);
	}
	fprintf(stderr, "walmmapd ignored SIGTERM for %u s\n", seconds);
	ts_daemon_dump(d);
	ts_daemon_kill(d);
	return (-1);
}

/*
 * A daemon that hangs: its log's tail and every thread's stack on stderr
 * (the test's log), with gdb when it is installed, else each thread's
 * kernel wait channel.
 */
void
ts_daemon_dump(const struct ts_daemon *d)
{
	char cmd[PATH_MAX + 256], *log;
	size_t len;

	if ((log = ts_daemon_log(d)) != NULL) {
		len = strlen(log);
		fprintf(stderr, "---- walmmapd log (last 4000 bytes) ----\n%s\n",
		    log + (len > 4000 ? len - 4000 : 0));
		free(log);
	}
	snprintf(cmd, sizeof cmd, "if command -v gdb >/dev/null; then "
	    "gdb -batch -nx -p %ld -ex 'thread apply all bt' 2>&1 | "
	    "grep -v '^\\[' >&2; else for t in /proc/%ld/task/*; do "
	    "echo \"$t $(cat $t/comm) $(cat $t/wchan)\" >&2; done; fi",
	    (long)d->pid, (long)d->pid);
	fflush(stderr);
	if (system(cmd) == -1)
		fprintf(stderr, "cannot run: %s\n", cmd);
}

void
ts_daemon_kill(struct ts_daemon *d)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, SIGKILL);
	waitpid(d->pid, NULL, 0);
	d->pid = 0;
}

void
ts_daemon_signal(struct ts_daemon *d, int sig)
{
	if (d->pid > 0)
		kill(d->pid, sig);
}

char *
ts_daemon_log(const struct ts_daemon *d)
{
	size_t len;
	uint8_t *b = ts_read_file(d->log, &len);
	char *s;

	if ((s = malloc(len + 1)) == NULL)
		abort();
	if (b != NULL)
		memcpy(s, b, len);
	s[b != NULL ? len : 0] = '\0';
	free(b);
	return (s);
}

int
ts_daemon_log_wait(const struct ts_daemon *d, const char *text)
{
	char *log;
	int i, found = 0;

	for (i = 0; i < 300 && !found; i++) {
		log = ts_daemon_log(d);
		found = strstr(log, text) != NULL;
		free(log);
		if (!found)
			usleep(100000);
	}
	return (found);
}

int
ts_run_prog(const char *prog, const char *input, size_t inlen, char **out,
    ...)
{
	va_list ap;
	int rc;

	va_start(ap, out);
	rc = ts_run_progv(0, prog, input, inlen, out, ap);
	va_end(ap);
	return (rc);
}

int
ts_run_prog_within(unsigned seconds, const char *prog, const char *input,
    size_t inlen, char **out, ...)
{
	va_list ap;
	int rc;

	va_start(ap, out);
	rc = ts_run_progv(seconds, prog, input, inlen, out, ap);
	va_end(ap);
	return (rc);
}

/* ts_run_prog(), killed by SIGALRM after seconds (0: never). */
static int
ts_run_progv(unsigned seconds, const char *prog, const char *input,
    size_t inlen, char **out, va_list ap)
{
	char *argv[MAX_ARGS];
	int n = 1;

	argv[0] = (char *)ts_prog(prog);
	while (n < MAX_ARGS - 1 && (argv[n] = va_arg(ap, char *)) != NULL)
		n++;
	argv[n] = NULL;
	return (run_argv(argv, input, inlen, 0, seconds, out));
}

int
ts_run_cmd_within(unsigned seconds, const char *input, size_t inlen,
    char **out, const char *path, ...)
{
	char *argv[MAX_ARGS];
	va_list ap;
	int n = 1;

	argv[0] = (char *)path;
	va_start(ap, path);
	while (n < MAX_ARGS - 1 && (argv[n] = va_arg(ap, char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	return (run_argv(argv, input, inlen, 0, seconds, out));
}

unsigned
ts_free_tcp_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ne(s, -1);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sin, sizeof sin), 0);
	ck_assert_int_eq(getsockname(s, (struct sockaddr *)&sin, &len), 0);
	close(s);
	return (ntohs(sin.sin_port));
}

int
ts_pid_nfds(pid_t pid)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof path, "/proc/%ld/fd", (long)pid);
	ck_assert_msg((dir = opendir(path)) != NULL, "%s: %s", path,
	    strerror(errno));
	while ((de = readdir(dir)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(dir);
	return (n);
}

int
ts_pid_listens_tcp(pid_t pid)
{
	static const char *const tables[] = { "/proc/net/tcp",
	    "/proc/net/tcp6" };
	unsigned long inodes[1024], ino;
	size_t n = 0, i, t;
	char path[PATH_MAX], link[128], line[512];
	struct dirent *de;
	unsigned st;
	DIR *dir;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%ld/fd", (long)pid);
	ck_assert_msg((dir = opendir(path)) != NULL, "%s: %s", path,
	    strerror(errno));
	while ((de = readdir(dir)) != NULL && n < 1024) {
		char fdp[PATH_MAX + 300];
		ssize_t k;

		snprintf(fdp, sizeof fdp, "%s/%s", path, de->d_name);
		if ((k = readlink(fdp, link, sizeof link - 1)) <= 0)
			continue;
		link[k] = '\0';
		if (sscanf(link, "socket:[%lu]", &ino) == 1)
			inodes[n++] = ino;
	}
	closedir(dir);
	for (t = 0; t < 2; t++) {
		if ((f = fopen(tables[t], "re")) == NULL)
			continue;
		/* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
		while (fgets(line, sizeof line, f) != NULL)
			if (sscanf(line, "%*s %*s %*s %x %*s %*s %*s %*s %*s "
			    "%lu", &st, &ino) == 2 && st == 0x0A)
				for (i = 0; i < n; i++)
					if (inodes[i] == ino) {
						fclose(f);
						return (1);
					}
		fclose(f);
	}
	return (0);
}

int
ts_run_prog_nofile(const char *prog, unsigned long nofile, char **out, ...)
{
	char *argv[MAX_ARGS];
	va_list ap;
	int n = 1;

	argv[0] = (char *)ts_prog(prog);
	va_start(ap, out);
	while (n < MAX_ARGS - 1 && (argv[n] = va_arg(ap, char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	return (run_argv(argv, NULL, 0, nofile, 0, out));
}

/*
 * Run argv with input on stdin and nofile descriptors (0: as ours), killed
 * by SIGALRM after seconds (0: never).
 */
static int
run_argv(char **argv, const char *input, size_t inlen, unsigned long nofile,
    unsigned seconds, char **out)
{
	struct rlimit rl;
	int in[2], outp[2], status;
	size_t len = 0, cap = 4096, done = 0;
	char *buf;
	ssize_t r;
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(outp, O_CLOEXEC) == -1)
		return (-1);
	if ((pid = fork()) == -1)
		return (-1);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (nofile > 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
			rl.rlim_cur = nofile;
			if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
				_exit(126);
		}
		dup2(in[0], STDIN_FILENO);
		dup2(outp[1], STDOUT_FILENO);
		dup2(outp[1], STDERR_FILENO);
		if (seconds > 0)
			alarm(seconds);		/* survives execv */
		execv(argv[0], argv);
		_exit(127);
	}
	close(in[0]);
	close(outp[1]);
	/* Inputs in tests are small enough for the pipe buffer. */
	while (input != NULL && done < inlen) {
		r = write(in[1], input + done, inlen - done);
		if (r <= 0)
			break;
		done += (size_t)r;
	}
	close(in[1]);
	if ((buf = malloc(cap)) == NULL)
		abort();
	while ((r = read(outp[0], buf + len, cap - len - 1)) > 0) {
		len += (size_t)r;
		if (cap - len < 1024 && (buf = realloc(buf, cap *= 2)) == NULL)
			abort();
	}
	buf[len] = '\0';
	close(outp[0]);
	waitpid(pid, &status, 0);
	if (out != NULL)
		*out = buf;
	else
		free(buf);
	return (exit_status(status));
}

/* Start a program with stdout and stderr on pipes (see tsdaemon.h). */
pid_t
ts_spawn_prog(const char *prog, int *outfd, int *errfd, ...)
{
	char *argv[MAX_ARGS];
	int outp[2], errp[2], n = 1;
	va_list ap;
	pid_t pid;

	argv[0] = (char *)ts_prog(prog);
	va_start(ap, errfd);
	while (n < MAX_ARGS - 1 && (argv[n] = va_arg(ap, char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	if (pipe2(outp, O_CLOEXEC) == -1 || pipe2(errp, O_CLOEXEC) == -1)
		ck_abort_msg("pipe: %s", strerror(errno));
	/* One page: the program blocks once it wrote that much unread. */
	if (fcntl(outp[1], F_SETPIPE_SZ, 4096) == -1)
		ck_abort_msg("F_SETPIPE_SZ: %s", strerror(errno));
	if ((pid = fork()) == -1)
		ck_abort_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(outp[1], STDOUT_FILENO);
		dup2(errp[1], STDERR_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	close(outp[1]);
	close(errp[1]);
	*outfd = outp[0];
	*errfd = errp[0];
	return (pid);
}

/* Reap a program ts_spawn_prog() started. */
int
ts_prog_wait(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) == -1)
		return (-1);
	return (exit_status(status));
}

static int
exit_status(int status)
{
	if (WIFEXITED(status))
		return (WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		return (128 + WTERMSIG(status));
	return (-1);
}

void
ts_daemon_pause(struct ts_daemon *d)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd, i;

	ts_daemon_signal(d, SIGSTOP);
	snprintf(path, sizeof path, "/proc/%ld/stat", (long)d->pid);
	for (i = 0; i < 1000; i++) {
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			break;
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n > 0) {
			buf[n] = '\0';
			if ((p = strrchr(buf, ')')) != NULL && p[1] == ' ' &&
			    (p[2] == 'T' || p[2] == 't'))
				return;
		}
		usleep(10000);
	}
	ck_abort_msg("walmmapd did not stop on SIGSTOP");
}

int
ts_raw_connect(const struct ts_daemon *d)
{
	struct sockaddr_un sun;
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (snprintf(sun.sun_path, sizeof sun.sun_path, "%s", d->sock) >=
	    (int)sizeof sun.sun_path)
		ck_abort_msg("socket path too long");
	ck_assert_msg(connect(s, (struct sockaddr *)&sun, sizeof sun) == 0,
	    "cannot connect to %s: %s", d->sock, strerror(errno));
	return (s);
}

void
ts_raw_hello(int s)
{
	struct wal_msg_hello h;
	uint8_t buf[256];

	memset(&h, 0, sizeof h);
	h.hdr.type = WAL_MSG_HELLO;
	h.hdr.len = sizeof h;
	h.version_min = h.version_max = WAL_PROTO_VERSION;
	h.ack = WAL_ACK_WRITTEN;
	ck_assert_int_eq(send(s, &h, sizeof h, 0), sizeof h);
	ck_assert_int_eq(recv(s, buf, sizeof buf, 0),
	    sizeof(struct wal_msg_welcome));
}

void
ts_raw_frame(int s, uint16_t type, uint64_t id)
{
	struct wal_msg m;

	memset(&m, 0, sizeof m);
	m.type = type;
	m.len = sizeof m;
	m.id = id;
	ck_assert_int_eq(send(s, &m, sizeof m, 0), sizeof m);
}

void
ts_raw_append(int s, uint64_t id, const void *payload, uint32_t size,
    uint8_t ack)
{
	struct wal_msg_append a;
	uint8_t *frame;
	size_t len = sizeof a + 4 + size;

	memset(&a, 0, sizeof a);
	a.hdr.type = WAL_MSG_APPEND;
	a.hdr.len = (uint32_t)len;
	a.hdr.id = id;
	a.count = 1;
	a.ack = ack;
	if ((frame = malloc(len)) == NULL)
		abort();
	memcpy(frame, &a, sizeof a);
	memcpy(frame + sizeof a, &size, 4);
	memcpy(frame + sizeof a + 4, payload, size);
	ck_assert_int_eq(send(s, frame, len, 0), (ssize_t)len);
	free(frame);
}

unsigned
ts_raw_producer(int s, uint64_t id, struct wal_msg_producer_ok *ok)
{
	struct wal_msg_producer m;
	struct wal_msg_error e;
	uint8_t buf[1024];
	ssize_t n;

	memset(&m, 0, sizeof m);
	m.hdr.type = WAL_MSG_PRODUCER;
	m.hdr.len = sizeof m;
	m.hdr.id = 77;
	m.producer_id = id;
	ck_assert_int_eq(send(s, &m, sizeof m, 0), (ssize_t)sizeof m);
	n = ts_raw_recv(s, buf, sizeof buf, 10000);
	ck_assert_int_gt(n, (ssize_t)sizeof(struct wal_msg));
	memcpy(&m.hdr, buf, sizeof m.hdr);
	if (m.hdr.type == WAL_MSG_ERROR) {
		memcpy(&e, buf, sizeof e);
		return (e.code);
	}
	ck_assert_uint_eq(m.hdr.type, WAL_MSG_PRODUCER_OK);
	ck_assert_uint_eq((size_t)n, sizeof *ok);
	memcpy(ok, buf, sizeof *ok);
	return (0);
}

void
ts_raw_append_p(int s, uint64_t id, uint64_t first_pseq, uint32_t count,
    uint8_t ack)
{
	struct wal_msg_append_p a;
	uint8_t frame[4096];
	size_t off = sizeof a;
	uint32_t i, sz;
	char rec[32];

	ck_assert_uint_le(count, 64);
	for (i = 0; i < count; i++) {
		sz = (uint32_t)snprintf(rec, sizeof rec, "r%llu",
		    (unsigned long long)(first_pseq + i));
		memcpy(frame + off, &sz, 4);
		memcpy(frame + off + 4, rec, sz);
		off += 4 + sz;
	}
	memset(&a, 0, sizeof a);
	a.hdr.type = WAL_MSG_APPEND_P;
	a.hdr.len = (uint32_t)off;
	a.hdr.id = id;
	a.count = count;
	a.ack = ack;
	a.first_pseq = first_pseq;
	memcpy(frame, &a, sizeof a);
	ck_assert_int_eq(send(s, frame, off, 0), (ssize_t)off);
}

int
ts_raw_append_fd(int s, uint64_t id, uint64_t size, int mfd, uint8_t ack,
    int flags)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct wal_msg_append_fd af;
	struct msghdr msg;
	struct iovec iov;

	memset(&af, 0, sizeof af);
	af.hdr.type = WAL_MSG_APPEND_FD;
	af.hdr.len = sizeof af;
	af.hdr.id = id;
	af.size = size;
	af.ack = ack;
	memset(&msg, 0, sizeof msg);
	memset(&cm, 0, sizeof cm);
	iov.iov_base = &af;
	iov.iov_len = sizeof af;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.buf;
	msg.msg_controllen = sizeof cm.buf;
	cm.hdr.cmsg_level = SOL_SOCKET;
	cm.hdr.cmsg_type = SCM_RIGHTS;
	cm.hdr.cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(&cm.hdr), &mfd, sizeof mfd);
	return (sendmsg(s, &msg, flags | MSG_NOSIGNAL) == (ssize_t)sizeof af ?
	    0 : -1);
}

void
ts_raw_subscribe(int s, uint64_t id, int64_t from, int64_t to,
    uint32_t flags)
{
	struct wal_msg_subscribe sub;

	memset(&sub, 0, sizeof sub);
	sub.hdr.type = WAL_MSG_SUBSCRIBE;
	sub.hdr.len = sizeof sub;
	sub.hdr.id = id;
	sub.from_seq = from;
	sub.to_seq = to;
	sub.flags = flags;
	ck_assert_int_eq(send(s, &sub, sizeof sub, 0), sizeof sub);
}

ssize_t
ts_raw_recv(int s, void *buf, size_t len, int timeout_ms)
{
	struct pollfd pfd;
	ssize_t n;
	int rc;

	pfd.fd = s;
	pfd.events = POLLIN;
	pfd.revents = 0;
	while ((rc = poll(&pfd, 1, timeout_ms)) == -1 && errno == EINTR)
		;
	if (rc <= 0)
		return (-1);
	n = recv(s, buf, len, MSG_DONTWAIT);
	/*
	 * The peer closed with frames of ours unread: reported once, ahead
	 * of the frames it sent before (still queued here).
	 */
	if (n == -1 && errno == ECONNRESET && (n = recv(s, buf, len,
	    MSG_DONTWAIT)) == -1)
		return (0);
	return (n);
}

static uint64_t
ts_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

size_t
ts_raw_recv_until(int s, uint16_t type, void *buf, size_t len, int timeout_ms)
{
	static uint8_t frame[WAL_PROTO_MAX_FRAME];
	struct wal_msg hdr;
	uint64_t end = ts_mono_ms() + (uint64_t)timeout_ms, now;
	ssize_t n;

	for (;;) {
		now = ts_mono_ms();
		ck_assert_msg(now < end, "no %s within %d ms",
		    wal_proto_type_name(type), timeout_ms);
		n = ts_raw_recv(s, frame, sizeof frame, (int)(end - now));
		ck_assert_msg(n != 0, "connection closed before %s",
		    wal_proto_type_name(type));
		ck_assert_msg(n > 0, "no %s within %d ms",
		    wal_proto_type_name(type), timeout_ms);
		ck_assert_int_ge(n, (ssize_t)sizeof hdr);
		memcpy(&hdr, frame, sizeof hdr);
		if (hdr.type == type) {
			ck_assert_uint_le((size_t)n, len);
			memcpy(buf, frame, (size_t)n);
			return ((size_t)n);
		}
		ck_assert_msg(hdr.type != WAL_MSG_ERROR, "ERROR while waiting "
		    "for %s: %.*s", wal_proto_type_name(type),
		    (int)((size_t)n - sizeof(struct wal_msg_error)),
		    (char *)frame + sizeof(struct wal_msg_error));
	}
}

void
ts_raw_expect_error(int s, unsigned code, int fatal, const char *text,
    int timeout_ms)
{
	static uint8_t frame[WAL_PROTO_MAX_FRAME];
	struct wal_msg_error e;
	char msg[1024];
	size_t n;

	n = ts_raw_recv_until(s, WAL_MSG_ERROR, frame, sizeof frame,
	    timeout_ms);
	memcpy(&e, frame, sizeof e);
	snprintf(msg, sizeof msg, "%.*s", (int)(n - sizeof e),
	    (char *)frame + sizeof e);
	ck_assert_msg(e.code == code, "error code %u, want %u: %s", e.code,
	    code, msg);
	ck_assert_msg((int)e.fatal == fatal, "fatal %u: %s", e.fatal, msg);
	ck_assert_msg(strstr(msg, text) != NULL, "error \"%s\" lacks \"%s\"",
	    msg, text);
	if (fatal)
		ck_assert_int_eq(ts_raw_recv(s, frame, sizeof frame,
		    timeout_ms), 0);
}

int
ts_raw_send_fds(int s, const void *frame, size_t len, const int *fds,
    int nfds)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 253)];
	} cm;
	struct msghdr msg;
	struct iovec iov;

	if (nfds < 1 || nfds > 253) {
		errno = EINVAL;
		return (-1);
	}
	memset(&msg, 0, sizeof msg);
	memset(&cm, 0, sizeof cm);
	iov.iov_base = (void *)(uintptr_t)frame;
	iov.iov_len = len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.buf;
	msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
	cm.hdr.cmsg_level = SOL_SOCKET;
	cm.hdr.cmsg_type = SCM_RIGHTS;
	cm.hdr.cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
	memcpy(CMSG_DATA(&cm.hdr), fds, sizeof(int) * (size_t)nfds);
	return (sendmsg(s, &msg, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1);
}

void
ts_status_within(const struct ts_daemon *d, unsigned seconds)
{
	char *out;
	int rc = ts_run_prog_within(seconds, "client/walctl", NULL, 0, &out,
	    "-s", d->sock, "status", NULL);

	if (rc != 0)
		ts_daemon_dump(d);
	ck_assert_msg(rc == 0, "walctl status did not answer within %us: "
	    "%d: %s", seconds, rc, out);
	free(out);
}

int
ts_sealed_memfd(uint64_t size)
{
	int mfd = memfd_create("ts-record", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	ck_assert_int_ge(mfd, 0);
	ck_assert_int_eq(ftruncate(mfd, (off_t)size), 0);
	ck_assert_int_eq(fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
	    F_SEAL_WRITE), 0);
	return (mfd);
}

/* Path of the fault-injection shim in the build tree. */
const char *
wf_shim_path(void)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/tests/.libs/libfaultinject.so",
	    TS_BUILDDIR);
	return (path);
}

/* Create or reset a fault control file and map it. */
struct wf_ctl *
wf_ctl_open(const char *path)
{
	struct wf_ctl *c;
	int fd;

	if ((fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600))
	    == -1)
		return (NULL);
	if (ftruncate(fd, sizeof *c) == -1) {
		close(fd);
		return (NULL);
	}
	c = mmap(NULL, sizeof *c, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (c == MAP_FAILED)
		return (NULL);
	c->ncalls = WF_NCALLS;
	c->magic = WF_MAGIC;
	return (c);
}

void
wf_ctl_close(struct wf_ctl *c)
{
	if (c != NULL)
		munmap(c, sizeof *c);
}

/* In the daemon's child: preload the shim, controlled by ctl. */
static void
ts_fault_env(const char *ctl)
{
	char opts[1024];
	const char *old = getenv("ASAN_OPTIONS");

	setenv("LD_PRELOAD", wf_shim_path(), 1);
	setenv("WALFAULT_CTL", ctl, 1);
	/* A sanitizer runtime must otherwise be the first library. */
	snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0",
	    old != NULL ? old : "", old != NULL && *old != '\0' ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
}

int
ts_daemon_wait_exit(struct ts_daemon *d, int timeout_ms)
{
	int i, status;

	if (d->pid <= 0)
		return (-1);
	for (i = 0; i <= timeout_ms / 10; i++) {
		notify_drain(d);
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			d->pid = 0;
			return (exit_status(status));
		}
		usleep(10000);
	}
	return (-1);
}

void
ts_ring_open(const struct ts_daemon *d, struct ts_ring *r, uint64_t size)
{
	int s = ts_raw_connect(d);

	ts_raw_hello(s);
	ts_ring_open_sock(r, s, size);
}

void
ts_ring_open_sock(struct ts_ring *r, int sock, uint64_t size)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 3)];
	} cm;
	struct wal_msg_shm_open o;
	struct wal_msg_shm_ready rd;
	struct msghdr msg;
	struct iovec iov;
	int fds[3];

	memset(r, 0, sizeof *r);
	r->sock = sock;
	memset(&o, 0, sizeof o);
	o.hdr.type = WAL_MSG_SHM_OPEN;
	o.hdr.len = sizeof o;
	o.hdr.id = 7;
	o.size = size;
	ck_assert_int_eq(send(r->sock, &o, sizeof o, 0), sizeof o);
	memset(&msg, 0, sizeof msg);
	iov.iov_base = &rd;
	iov.iov_len = sizeof rd;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.buf;
	msg.msg_controllen = sizeof cm.buf;
	ck_assert_int_eq(recvmsg(r->sock, &msg, MSG_CMSG_CLOEXEC), sizeof rd);
	ck_assert_int_eq(rd.hdr.type, WAL_MSG_SHM_READY);
	ck_assert_ptr_nonnull(CMSG_FIRSTHDR(&msg));
	ck_assert_int_eq(CMSG_FIRSTHDR(&msg)->cmsg_len, CMSG_LEN(sizeof fds));
	memcpy(fds, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof fds);
	r->size = rd.size;
	r->maplen = rd.header_size + rd.size;
	r->hdr = mmap(NULL, r->maplen, PROT_READ | PROT_WRITE, MAP_SHARED,
	    fds[0], 0);
	ck_assert_ptr_ne(r->hdr, MAP_FAILED);
	close(fds[0]);
	r->data = (uint8_t *)r->hdr + rd.header_size;
	r->efd_in = fds[1];
	r->efd_out = fds[2];
	/* Shrinking it under the daemon is refused by the seals. */
	ck_assert_int_eq(ftruncate(fds[0], 0), -1);
}

void
ts_ring_put(struct ts_ring *r, const void *p, uint32_t len, uint32_t copy,
    uint32_t flags)
{
	struct wal_shm_slot *s = (struct wal_shm_slot *)(void *)(r->data +
	    (r->tail & (r->size - 1)));

	s->len = len;
	s->flags = flags;
	memcpy(s + 1, p, copy);
	r->tail += wal_shm_slot_bytes(len);
}

void
ts_ring_publish(struct ts_ring *r, uint64_t tail)
{
	uint64_t one = 1;
	ssize_t n;

	atomic_store(&r->hdr->tail, tail);
	/* A socket pair, or the eventfd of older daemons. */
	n = send(r->efd_in, &one, sizeof one, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n == -1 && errno == ENOTSOCK)
		n = write(r->efd_in, &one, sizeof one);
	/* A doorbell full of earlier rings is rung already. */
	ck_assert_msg(n == sizeof one || errno == EAGAIN, "cannot ring the "
	    "daemon's doorbell: %s", strerror(errno));
}

void
ts_ring_close(struct ts_ring *r)
{
	munmap(r->hdr, r->maplen);
	close(r->efd_in);
	close(r->efd_out);
	close(r->sock);
}
