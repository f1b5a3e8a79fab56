/*
 * walmmapd - the write-ahead-log daemon: options, start-up, the event loop,
 * signals, periodic work and shutdown.
 */
#include "config.h"

#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "forward.h"
#include "handover.h"
#include "log.h"
#include "rights.h"
#include "server.h"
#include "wal_ring.h"
#include "wal_segment.h"

#define MAX_OVERRIDES	64

/* Command-line settings, applied over the config file. */
struct overrides {
	const char	*key[MAX_OVERRIDES];
	const char	*val[MAX_OVERRIDES];
	size_t		 n;
};

static void	usage(FILE *, int) __attribute__((noreturn));
static void	add_override(struct overrides *, const char *, const char *);
static int	load_config(struct srv_config *, const char *conf, int must,
		    const struct overrides *, char *, size_t);
static int	daemonize(void);
static int	detach_wait(int, pid_t);
static void	ready(int fd);
static void	libevent_log_cb(int, const char *);
static void	signal_cb(int, short, void *);
static void	reload(struct server *);
static void	log_recovery(const struct wal_recovery *);
static int	foreign_segments(int dirfd, const char *prefix, char *name,
		    size_t len);
static void	sync_done_cb(int, short, void *);
static void	sync_timer_cb(int, short, void *);
static void	tick_cb(int, short, void *);
static void	closer_tick_cb(int, short, void *);
static void	watchdog_cb(int, short, void *);
static void	stop_timer_cb(int, short, void *);

static struct overrides	 overrides;

static void
usage(FILE *f, int status)
{
	char conf[PATH_MAX];

	config_default_path(conf, sizeof conf);
	fprintf(f,
"usage: walmmapd [-fDhV] [-c file] [-d dir] [-s socket] [-n name]\n"
"                [--segment-size size] [--ring n] [-o key=value]...\n"
"  -c, --config FILE       configuration file (default %s)\n"
"  -n, --namespace NAME    a separate log: its own defaults for the\n"
"                          configuration file, directory and socket\n"
"  -d, --dir DIR           data directory for segment files\n"
"  -s, --socket PATH       Unix socket clients connect to\n"
"  -f, --foreground        do not detach (implied under systemd)\n"
"      --segment-size SIZE segment file size, e.g. 64M\n"
"      --ring N            mapped segments (2..16)\n"
"  -o, --set KEY=VALUE     any walmmapd.conf(5) setting\n"
"  -D, --debug             log debugging messages\n"
"  -V, --version           print the version and exit\n"
"  -h, --help              print this help and exit\n",
	    conf);
	exit(status);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config",		required_argument, NULL, 'c' },
		{ "dir",		required_argument, NULL, 'd' },
		{ "socket",		required_argument, NULL, 's' },
		{ "namespace",		required_argument, NULL, 'n' },
		{ "foreground",		no_argument,	   NULL, 'f' },
		{ "segment-size",	required_argument, NULL, 'S' },
		{ "ring",		required_argument, NULL, 'R' },
		{ "set",		required_argument, NULL, 'o' },
		{ "debug",		no_argument,	   NULL, 'D' },
		{ "version",		no_argument,	   NULL, 'V' },
		{ "help",		no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct server srv;
	sigset_t stopsigs;
	struct wal_ring_config rc;
	struct wal_recovery rec;
	struct wal_error err;
	struct conn *c;
	char why[1024], *eq, default_conf[PATH_MAX];
	const char *conf;
	int ch, conf_given = 0, foreground = 0, ready_fd = -1, dirfd, i;
	int detached = 0;
	uint64_t wd_usec;
	struct timeval tv;

	handover_init(argc, argv);
	config_default_path(default_conf, sizeof default_conf);
	conf = default_conf;
	while ((ch = getopt_long(argc, argv, "c:d:s:n:fo:DVh", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'n':
			if (!wal_proto_namespace_valid(optarg)) {
				fprintf(stderr, "walmmapd: -n %s: not a namespace "
				    "name (1 to %d letters, digits, '_', '-' or "
				    "'.', not starting with '.')\n", optarg,
				    WAL_PROTO_NAMESPACE_MAX);
				exit(1);
			}
			config_set_namespace(optarg);
			if (!conf_given) {
				config_default_path(default_conf,
				    sizeof default_conf);
				conf = default_conf;
			}
			break;
		case 'c':
			conf = optarg;
			conf_given = 1;
			break;
		case 'd':
			add_override(&overrides, "dir", optarg);
			break;
		case 's':
			add_override(&overrides, "socket", optarg);
			break;
		case 'f':
			foreground = 1;
			break;
		case 'S':
			add_override(&overrides, "segment_size", optarg);
			break;
		case 'R':
			add_override(&overrides, "ring", optarg);
			break;
		case 'o':
			if ((eq = strchr(optarg, '=')) == NULL) {
				fprintf(stderr, "walmmapd: -o %s: expected "
				    "KEY=VALUE\n", optarg);
				exit(1);
			}
			*eq = '\0';
			add_override(&overrides, optarg, eq + 1);
			break;
		case 'D':
			add_override(&overrides, "debug", "yes");
			break;
		case 'V':
			printf("walmmapd %s (protocol %d)\n", PACKAGE_VERSION,
			    WAL_PROTO_VERSION);
			exit(0);
		case 'h':
			usage(stdout, 0);
		default:
			usage(stderr, 1);
		}
	}
	if (optind != argc) {
		fprintf(stderr, "walmmapd: unexpected argument \"%s\"\n",
		    argv[optind]);
		usage(stderr, 1);
	}

	memset(&srv, 0, sizeof srv);
	srv.listen_fd = -1;
	srv.data_dirfd = -1;
	srv.sock_dirfd = -1;
	srv.sync_fd = -1;
	TAILQ_INIT(&srv.conns);
	TAILQ_INIT(&srv.shms);
	TAILQ_INIT(&srv.parked);
	srv.conf_path = conf;
	if (load_config(&srv.cfg, conf, conf_given, &overrides, why,
	    sizeof why) != 0) {
		fprintf(stderr, "<3>walmmapd: %s\n", why);
		exit(1);
	}
	log_init(srv.cfg.debug);
	event_set_log_callback(libevent_log_cb);

	/* Under systemd (or asked to) stay in the foreground. */
	if (getenv("NOTIFY_SOCKET") != NULL || getenv("LISTEN_FDS") != NULL ||
	    getenv("INVOCATION_ID") != NULL)
		foreground = 1;
	/* Re-executed by a restart: already detached (handover.c). */
	if (handover_incoming(&detached)) {
		foreground = 1;
		if (detached)
			log_to_syslog();
	}
	/* Before detaching: a write to the pipe must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	/* A restart asked for before the loop runs must not kill us either. */
	signal(SIGUSR2, SIG_IGN);
	if (!foreground && (ready_fd = daemonize()) == -1)
		exit(1);

	/*
	 * The data directory, checked on the descriptor the ring, status,
	 * retention and subscriptions then use: recovery writes and renames
	 * files in it as root, and its path is never looked up again.
	 */
	if ((dirfd = srv_dir_open("data directory", srv.cfg.dir,
	    !srv.cfg.dir_given, 0750, why, sizeof why)) == -1)
		fatalx("%s", why);

	/*
	 * Segment names, before anything lists or names one. One directory
	 * holds one log: segments named with another prefix (name_prefix
	 * changed, or another writer's) are refused, not mixed in.
	 */
	if (wal_seg_set_prefix(srv.cfg.name_prefix) != 0)
		fatalx("name_prefix \"%s\" is not usable", srv.cfg.name_prefix);
	if (foreign_segments(dirfd, srv.cfg.name_prefix, why, sizeof why))
		fatalx("data directory %s holds segment files of another "
		    "name_prefix (%s), not %s_*.wal: one directory holds one "
		    "log; set name_prefix to theirs or use another directory",
		    srv.cfg.dir, why, srv.cfg.name_prefix);

	/* The ring first: its lock decides whether we may run at all. */
	config_ring(&srv.cfg, dirfd, &rc);
	if (wal_ring_open(&rc, &srv.ring, &rec, &err) != 0)
		fatalx("%s", err.msg);
	srv.data_dirfd = dirfd;
	if (fwd_open(&srv, why, sizeof why) != 0)
		fatalx("%s", why);
	log_info("data directory %s: %" PRIu64 " segment%s, next seq %" PRId64
	    "%s", srv.cfg.dir, rec.segments, rec.segments == 1 ? "" : "s",
	    rec.next_seq, rec.torn_bytes ? " (torn tail repaired)" : "");
	if (rec.torn_bytes > 0)
		log_warnx("recovery zeroed %" PRIu64 " bytes after the last "
		    "valid record of segment %" PRIu64 " (offset %" PRIu64 ")",
		    rec.torn_bytes, rec.tail_id, rec.tail_offset);
	if (rec.discarded > 0)
		log_warnx("recovery found a hole in the log (a power cut before "
		    "a sync): it ends in segment %" PRIu64 "; %" PRIu64 " later "
		    "segment%s renamed *.discarded", rec.tail_id, rec.discarded,
		    rec.discarded == 1 ? "" : "s");
	log_recovery(&rec);
	if (srv.cfg.use_large_pages)
		log_info("use_large_pages: segments are mapped with "
		    "MADV_HUGEPAGE; the kernel gives them huge pages where the "
		    "file system offers them for shared file mappings (tmpfs "
		    "mounted huge=within_size or advise), not on disk file "
		    "systems");
	if (srv.cfg.prefault && srv.cfg.prefault_step > 0)
		log_info("prefault_step: new segments are pre-faulted %" PRIu64
		    " bytes at a time, without readahead, pausing while a "
		    "standby segment is ready", srv.cfg.prefault_step);
	else if (srv.cfg.prefault_step > 0)
		log_warnx("prefault_step: ignored, as prefault is off");
	if (srv.cfg.writeback_step > 0)
		log_info("writeback_step: write-back starts %" PRIu64 " bytes "
		    "at a time, pausing between steps", srv.cfg.writeback_step);
	prod_open(&srv);	/* the producer table, reconciled with the log */

	if ((srv.base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	srv.rxbuf = malloc(WAL_PROTO_MAX_FRAME);
	srv.txbuf = malloc(WAL_PROTO_MAX_FRAME);
	srv.ackbuf = malloc(WAL_PROTO_MAX_FRAME);
	if (srv.rxbuf == NULL || srv.txbuf == NULL || srv.ackbuf == NULL)
		fatal("cannot allocate frame buffers");
	srv.started = time(NULL);
	metrics_init(&srv);

	/* Group commit runs on its own thread and reports via an eventfd. */
	if ((srv.sync_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		fatal("eventfd");
	if ((srv.syncer = syncer_start(srv.ring, srv.sync_fd)) == NULL)
		fatalx("cannot start the sync thread");
	if ((srv.closer = closer_start()) == NULL)
		fatalx("cannot start the thread that closes what clients pass");
	srv.ev_sync_done = event_new(srv.base, srv.sync_fd,
	    EV_READ | EV_PERSIST, sync_done_cb, &srv);
	srv.ev_sync_timer = event_new(srv.base, -1, EV_PERSIST, sync_timer_cb,
	    &srv);
	srv.ev_sync_kick = event_new(srv.base, -1, 0, srv_sync_kick_cb, &srv);
	srv.ev_commit_delay = evtimer_new(srv.base, srv_commit_delay_cb, &srv);
	srv.ev_rotate = evtimer_new(srv.base, srv_rotate_cb, &srv);
	srv.ev_parked = evtimer_new(srv.base, conn_parked_cb, &srv);
	srv.ev_closer = event_new(srv.base, -1, EV_PERSIST, closer_tick_cb,
	    &srv);
	srv.ev_fd_wait = evtimer_new(srv.base, srv_fd_wait_cb, &srv);
	srv.ev_tick = event_new(srv.base, -1, EV_PERSIST, tick_cb, &srv);
	srv.ev_drain = event_new(srv.base, -1, 0, srv_shm_drain_cb, &srv);
	srv.ev_stop_timer = evtimer_new(srv.base, stop_timer_cb, &srv);
	srv.ev_signals[0] = evsignal_new(srv.base, SIGTERM, signal_cb, &srv);
	srv.ev_signals[1] = evsignal_new(srv.base, SIGINT, signal_cb, &srv);
	srv.ev_signals[2] = evsignal_new(srv.base, SIGHUP, signal_cb, &srv);
	srv.ev_signals[3] = evsignal_new(srv.base, SIGUSR2, signal_cb, &srv);
	if (srv.ev_sync_done == NULL || srv.ev_sync_timer == NULL ||
	    srv.ev_tick == NULL || srv.ev_stop_timer == NULL ||
	    srv.ev_sync_kick == NULL || srv.ev_commit_delay == NULL ||
	    srv.ev_rotate == NULL || srv.ev_parked == NULL ||
	    srv.ev_closer == NULL || srv.ev_fd_wait == NULL ||
	    srv.ev_drain == NULL ||
	    srv.ev_signals[0] == NULL || srv.ev_signals[1] == NULL ||
	    srv.ev_signals[2] == NULL || srv.ev_signals[3] == NULL)
		fatalx("cannot create events");
	event_add(srv.ev_sync_done, NULL);
	for (i = 0; i < 4; i++)
		evsignal_add(srv.ev_signals[i], NULL);
	if (srv.cfg.sync_interval_ms > 0) {
		tv.tv_sec = srv.cfg.sync_interval_ms / 1000;
		tv.tv_usec = (srv.cfg.sync_interval_ms % 1000) * 1000;
		event_add(srv.ev_sync_timer, &tv);
	}
	tv.tv_sec = 1;
	tv.tv_usec = 0;
	event_add(srv.ev_tick, &tv);
	tv.tv_sec = 0;
	tv.tv_usec = CLOSER_TICK_MS * 1000;
	event_add(srv.ev_closer, &tv);
	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
		srv.ev_watchdog = event_new(srv.base, -1, EV_PERSIST,
		    watchdog_cb, &srv);
		tv.tv_sec = (time_t)(wd_usec / 2 / 1000000);
		tv.tv_usec = (suseconds_t)(wd_usec / 2 % 1000000);
		event_add(srv.ev_watchdog, &tv);
	}

	rights_init(&srv);	/* before hand-over: its clients get rights */
	handover_restore(&srv);
	if (srv_listen(&srv) != 0) {
		wal_ring_close(srv.ring);
		exit(1);
	}
	rights_socket_check(&srv);
	if (metrics_http_start(&srv) != 0) {
		srv_close_listener(&srv);
		wal_ring_close(srv.ring);
		exit(1);
	}
	log_info("walmmapd %s ready: socket %s, segments of %" PRIu64
	    " bytes, ring %u, next seq %" PRId64, PACKAGE_VERSION,
	    srv.socket_from_systemd ? "from systemd" : srv.cfg.socket_path,
	    srv.cfg.segment_size, srv.cfg.ring, rec.next_seq);
	sd_notifyf(0, "READY=1\nSTATUS=ready, next seq %" PRId64 "\nMAINPID=%ld",
	    rec.next_seq, (long)getpid());
	ready(ready_fd);

	event_base_dispatch(srv.base);

	/*
	 * Freeing the signal events below restores the default actions: a
	 * SIGTERM that came while we stop would then end us with 143 and
	 * hide the exit status (1 after a failed sync). Block them for good.
	 */
	sigemptyset(&stopsigs);
	sigaddset(&stopsigs, SIGTERM);
	sigaddset(&stopsigs, SIGINT);
	sigaddset(&stopsigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &stopsigs, NULL);

	/* Stopped: whatever is left is closed, the ring synced and closed. */
	while ((c = TAILQ_FIRST(&srv.conns)) != NULL)
		conn_free(c);
	shm_finish(&srv);
	srv_close_listener(&srv);
	syncer_stop(srv.syncer);
	/*
	 * The final sync and checkpoint, after the last records (rings of
	 * clients that left). A sync that failed since the loop last looked,
	 * this one included, still makes the exit status 1 and is logged like
	 * any other (there is no client left to tell).
	 */
	if (wal_ring_shutdown(srv.ring, &err) != 0)
		srv_sync_failed(&srv, err.msg, wal_ring_durable_seq(srv.ring));
	closer_stop(srv.closer);
	prod_close(&srv);
	wal_ring_close(srv.ring);
	fwd_close(&srv);
	log_info("stopped after %" PRIu64 " records", srv.records);

	for (i = 0; i < 4; i++)
		event_free(srv.ev_signals[i]);
	event_free(srv.ev_sync_done);
	event_free(srv.ev_sync_timer);
	event_free(srv.ev_sync_kick);
	event_free(srv.ev_commit_delay);
	event_free(srv.ev_rotate);
	event_free(srv.ev_parked);
	event_free(srv.ev_closer);
	event_free(srv.ev_fd_wait);
	event_free(srv.ev_tick);
	event_free(srv.ev_drain);
	event_free(srv.ev_stop_timer);
	if (srv.ev_watchdog != NULL)
		event_free(srv.ev_watchdog);
	if (srv.ev_accept != NULL)
		event_free(srv.ev_accept);
	if (srv.ev_accept_resume != NULL)
		event_free(srv.ev_accept_resume);
	metrics_http_stop(&srv);
	event_base_free(srv.base);
	close(srv.sync_fd);
	close(srv.data_dirfd);
	free(srv.rxbuf);
	free(srv.txbuf);
	free(srv.ackbuf);
	config_free(&srv.cfg);
	return (srv.exit_status);
}

static void
add_override(struct overrides *o, const char *key, const char *val)
{
	if (o->n == MAX_OVERRIDES) {
		fprintf(stderr, "walmmapd: too many options\n");
		exit(1);
	}
	o->key[o->n] = key;
	o->val[o->n] = val;
	o->n++;
}

/* Defaults, then the file, then the command line; then cross-checks. */
static int
load_config(struct srv_config *cfg, const char *conf, int must,
    const struct overrides *o, char *err, size_t errlen)
{
	char why[512];
	size_t i;

	config_defaults(cfg);
	if (config_load(cfg, conf, must, err, errlen) != 0)
		goto fail;
	for (i = 0; i < o->n; i++)
		if (config_set(cfg, o->key[i], o->val[i], why,
		    sizeof why) != 0) {
			snprintf(err, errlen, "command line: %s", why);
			goto fail;
		}
	if (config_validate(cfg, err, errlen) != 0)
		goto fail;
	return (0);
fail:
	config_free(cfg);
	return (-1);
}

/*
 * Detach. The starting process stays until the daemon is ready or has
 * failed (detach_wait), so "walmmapd && use it" works and a failure shows
 * on the terminal. Returns the daemon's end of the pipe, or -1.
 */
static int
daemonize(void)
{
	int pfd[2], devnull;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) == -1) {
		log_warn("cannot create a pipe to detach");
		return (-1);
	}
	if ((pid = fork()) == -1) {
		log_warn("cannot fork to detach");
		return (-1);
	}
	if (pid > 0) {
		close(pfd[1]);
		_exit(detach_wait(pfd[0], pid));
	}
	close(pfd[0]);
	if (setsid() == -1)
		log_warn("setsid");
	if ((devnull = open("/dev/null", O_RDWR)) != -1) {
		dup2(devnull, STDIN_FILENO);
		dup2(devnull, STDOUT_FILENO);
		dup2(devnull, STDERR_FILENO);
		if (devnull > STDERR_FILENO)
			close(devnull);
	}
	log_to_syslog();
	log_tee(pfd[1]);
	return (pfd[1]);
}

/*
 * The starting process: copy the daemon's start-up warnings and errors to
 * our standard error until it says it is ready (a NUL byte: exit 0) or
 * closes the pipe without saying so (it failed or died: its exit status,
 * at least 1).
 */
static int
detach_wait(int fd, pid_t pid)
{
	char buf[4096], *nul;
	ssize_t n;
	size_t len;
	int status, said = 0;

	for (;;) {
		if ((n = read(fd, buf, sizeof buf)) == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		nul = memchr(buf, '\0', (size_t)n);
		len = nul != NULL ? (size_t)(nul - buf) : (size_t)n;
		if (len > 0 && fwrite(buf, 1, len, stderr) == len)
			said = 1;
		if (nul != NULL)
			return (0);
	}
	/* The pipe closed without "ready": the daemon is exiting. */
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR) {
			fprintf(stderr, "walmmapd: the daemon (pid %ld) stopped "
			    "while starting: waitpid: %s\n", (long)pid,
			    strerror(errno));
			return (1);
		}
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "walmmapd: the daemon (pid %ld) was killed by "
		    "signal %d (%s) while starting\n", (long)pid,
		    WTERMSIG(status), strsignal(WTERMSIG(status)));
		return (1);
	}
	if (!said)
		fprintf(stderr, "walmmapd: the daemon (pid %ld) exited with "
		    "status %d while starting, saying nothing\n", (long)pid,
		    WEXITSTATUS(status));
	return (WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1);
}

/* Tell a waiting starting process that we are ready. */
static void
ready(int fd)
{
	if (fd == -1)
		return;
	log_tee(-1);
	(void)write(fd, "", 1);
	close(fd);
}

/* libevent's own messages (it exits after an error) go to our log. */
static void
libevent_log_cb(int severity, const char *msg)
{
	switch (severity) {
	case EVENT_LOG_DEBUG:
		log_debug("libevent: %s", msg);
		break;
	case EVENT_LOG_MSG:
		log_info("libevent: %s", msg);
		break;
	case EVENT_LOG_WARN:
		log_warnx("libevent: %s", msg);
		break;
	default:
		log_errx("libevent: %s", msg);
		break;
	}
}

static void
signal_cb(int sig, short ev, void *arg)
{
	struct server *srv = arg;

	(void)ev;
	if (sig == SIGHUP)
		reload(srv);
	else if (sig == SIGUSR2)
		(void)handover_request(srv, NULL, 0, HANDOVER_EXEC);
	else {
		/* systemd keeps the connections for the next start. */
		if (sig == SIGTERM && handover_fdstore_available())
			(void)handover_run(srv, HANDOVER_FDSTORE);
		srv_stop(srv, sig == SIGTERM ? "SIGTERM" : "SIGINT");
	}
}

/* SIGHUP: re-read the configuration; apply what can change at run time. */
static void
reload(struct server *srv)
{
	struct srv_config n, *o = &srv->cfg;
	char why[1024];
	struct timeval tv;

	/*
	 * The file must be there now, even if it was not at start: a file
	 * missing for a moment (being replaced) must not switch access
	 * control off by bringing back the built-in defaults.
	 */
	sd_notify(0, "RELOADING=1");
	if (load_config(&n, srv->conf_path, 1, &overrides, why,
	    sizeof why) != 0) {
		log_warnx("reload: %s; keeping the running configuration", why);
		sd_notify(0, "READY=1");
		return;
	}
	/*
	 * max_record is checked against the segments the daemon writes, not
	 * a segment_size that only a restart applies.
	 */
	if (n.segment_size != o->segment_size) {
		uint64_t room = o->segment_size - WAL_FILE_HEADER_SIZE -
		    WAL_RECORD_OVERHEAD;

		if (!n.max_record_given)
			n.max_record = room < WAL_MAX_PAYLOAD ? (uint32_t)room :
			    WAL_MAX_PAYLOAD;
		else if (n.max_record > room) {
			log_warnx("reload: max_record %" PRIu32 " does not fit "
			    "in the running segments of %" PRIu64 " bytes (at "
			    "most %" PRIu64 "; the new segment_size applies "
			    "after a restart); keeping the running "
			    "configuration", n.max_record, o->segment_size,
			    room);
			config_free(&n);
			sd_notify(0, "READY=1");
			return;
		}
	}
#define RESTART_ONLY(f, name) do {					\
	if (n.f != o->f)						\
		log_warnx("reload: %s changed; it takes effect after a "	\
		    "restart", name);						\
} while (0)
#define LIVE(f, name, fmt) do {						\
	if (n.f != o->f) {						\
		log_info("reload: %s %" fmt " -> %" fmt, name, o->f, n.f);	\
		o->f = n.f;						\
	}								\
} while (0)
	if (strcmp(n.dir, o->dir) != 0)
		log_warnx("reload: dir changed; it takes effect after a "
		    "restart");
	if (strcmp(n.name_prefix, o->name_prefix) != 0)
		log_warnx("reload: name_prefix changed; it takes effect after a "
		    "restart");
	if (strcmp(n.socket_path, o->socket_path) != 0)
		log_warnx("reload: socket changed; it takes effect after a "
		    "restart");
	if ((n.metrics_listen == NULL) != (o->metrics_listen == NULL) ||
	    (n.metrics_listen != NULL && strcmp(n.metrics_listen,
	    o->metrics_listen) != 0))
		log_warnx("reload: metrics_listen changed; it takes effect "
		    "after a restart");
	RESTART_ONLY(segment_size, "segment_size");
	RESTART_ONLY(ring, "ring");
	RESTART_ONLY(prefault, "prefault");
	RESTART_ONLY(prefault_step, "prefault_step");
	RESTART_ONLY(writeback_step, "writeback_step");
	RESTART_ONLY(use_large_pages, "use_large_pages");
	RESTART_ONLY(start_seq, "start_seq");
	RESTART_ONLY(socket_mode, "socket_mode");
	RESTART_ONLY(socket_group, "socket_group");
	LIVE(max_record, "max_record", PRIu32);
	LIVE(max_connections, "max_connections", "u");
	LIVE(max_connections_per_uid, "max_connections_per_uid", "u");
	LIVE(hello_timeout_s, "hello_timeout (s)", "u");
	LIVE(idle_timeout_s, "idle_timeout (s)", "u");
	LIVE(max_subscriber_hold, "max_subscriber_hold", PRIu64);
	LIVE(max_inflight, "max_inflight", PRIu32);
	LIVE(max_inflight_total, "max_inflight_total", PRIu64);
	LIVE(retain_segments, "retain_segments", PRIu64);
	LIVE(retain_bytes, "retain_bytes", PRIu64);
	LIVE(retain_age_s, "retain_age (s)", PRIu64);
	LIVE(forward_hold_max_bytes, "forward_hold_max_bytes", PRIu64);
	LIVE(forward_hold_max_age_s, "forward_hold_max_age (s)", PRIu64);
	LIVE(forward_hold_block, "forward_hold_block", "d");
	LIVE(shm, "shm", "d");
	LIVE(shm_size, "shm_size", PRIu64);
	LIVE(shm_total, "shm_total", PRIu64);
	LIVE(shm_spin_us, "shm_spin (us)", "u");
	LIVE(debug, "debug", "d");
	LIVE(commit_delay_ms, "commit_delay (ms)", "u");
	if (n.sync_interval_ms != o->sync_interval_ms) {
		log_info("reload: sync_interval %ums -> %ums",
		    o->sync_interval_ms, n.sync_interval_ms);
		o->sync_interval_ms = n.sync_interval_ms;
		event_del(srv->ev_sync_timer);
		if (o->sync_interval_ms > 0) {
			tv.tv_sec = o->sync_interval_ms / 1000;
			tv.tv_usec = (o->sync_interval_ms % 1000) * 1000;
			event_add(srv->ev_sync_timer, &tv);
		}
	}
	LIVE(shm_total_per_uid, "shm_total_per_uid", PRIu64);
	if (n.nallow_uids != o->nallow_uids || n.nallow_gids != o->nallow_gids
	    || memcmp(n.allow_uids, o->allow_uids, sizeof n.allow_uids) != 0 ||
	    memcmp(n.allow_gids, o->allow_gids, sizeof n.allow_gids) != 0 ||
	    memcmp(&n.allow_readers, &o->allow_readers, sizeof n.allow_readers)
	    != 0 || memcmp(&n.allow_writers, &o->allow_writers,
	    sizeof n.allow_writers) != 0 || memcmp(&n.allow_admins,
	    &o->allow_admins, sizeof n.allow_admins) != 0) {
		log_info("reload: rights changed; applied to every connection");
		memcpy(o->allow_uids, n.allow_uids, sizeof n.allow_uids);
		memcpy(o->allow_gids, n.allow_gids, sizeof n.allow_gids);
		o->nallow_uids = n.nallow_uids;
		o->nallow_gids = n.nallow_gids;
		o->allow_readers = n.allow_readers;
		o->allow_writers = n.allow_writers;
		o->allow_admins = n.allow_admins;
	}
#undef RESTART_ONLY
#undef LIVE
	/* Group membership may have changed too: always. */
	rights_reload(srv);
	log_set_debug(o->debug);
	config_free(&n);
	log_info("configuration reloaded");
	sd_notify(0, "READY=1");
}

/* The sync thread finished a group commit: answer everyone it covers. */
static void
sync_done_cb(int fd, short ev, void *arg)
{
	struct server *srv = arg;
	struct conn *c, *next;
	char why[WAL_ERROR_MSG_MAX];
	uint64_t n;
	int64_t durable;
	int again = 0;

	(void)ev;
	if (read(fd, &n, sizeof n) != (ssize_t)sizeof n)
		return;
	if (syncer_result(srv->syncer, &durable, why, sizeof why) != 0) {
		/*
		 * What the sync thread last covered may be behind the ring's
		 * durable seq, which the syncs of sealed segments also move
		 * and SYNC replies report: the first seq not durable is after
		 * the ring's (frozen by the failure).
		 */
		srv_sync_failed(srv, why, wal_ring_durable_seq(srv->ring));
		return;
	}
	if (srv->sync_failed)
		return;		/* sticky: a later success proves nothing */
	srv_sync_round(srv);
	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next) {
		conn_durable(c, durable);
		/* conn_durable may have freed c; next is still valid. */
	}
	TAILQ_FOREACH(c, &srv->conns, entry)
		if (conn_durable_owed(c))
			again = 1;
	if (again)
		srv_request_sync(srv);
}

/*
 * A sync failed: fail-stop. The kernel reports a lost write-back once and
 * may then let the next sync succeed over pages it never wrote, so no
 * later sync can make the records after the last good one durable
 * (PostgreSQL's lesson of 2018). From now on (sync_failed, sticky): every
 * client waiting for durability gets the error (conn_sync_failed: durable
 * appends, SYNC requests, shared-memory rings), nothing durable is
 * published again on the socket (conn_durable) or in a ring (shm_durable),
 * durable appends and SYNC requests are refused, and the daemon stops with
 * exit status 1. The next start syncs the log again before it reports
 * anything durable. durable is the last seq a successful sync covered
 * (-1: none).
 */
void
srv_sync_failed(struct server *srv, const char *why, int64_t durable)
{
	struct conn *c, *next;

	if (srv->sync_failed)
		return;
	srv->sync_failed = 1;
	srv->exit_status = 1;
	log_errx("sync failed: %s; records from seq %" PRId64 " on may not "
	    "be on storage: failing every client waiting for durability and "
	    "stopping", why, durable + 1);
	/* Clients print it after the code's name, "sync failed". */
	snprintf(srv->sync_error, sizeof srv->sync_error, "%s; nothing from "
	    "seq %" PRId64 " on is durable and walmmapd is stopping", why,
	    durable + 1);
	TAILQ_FOREACH_SAFE(c, &srv->conns, entry, next)
		conn_sync_failed(c, srv->sync_error);
	srv_stop(srv, "sync failed");
}

/* Periodic sync: bounds how much written data is not yet durable. */
static void
sync_timer_cb(int fd, short ev, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)ev;
	if (!srv->sync_failed && wal_ring_written_seq(srv->ring) >
	    wal_ring_durable_seq(srv->ring))
		srv_request_sync(srv);
}

/*
 * Once a second: a sync that failed where nobody waited for it, rates,
 * systemd status line, timeouts, retention.
 */
static void
tick_cb(int fd, short ev, void *arg)
{
	struct server *srv = arg;
	struct wal_error err;

	(void)fd;
	(void)ev;
	/*
	 * The background thread's sync of a sealed segment or checkpoint, or
	 * a writer's at the bound of sealed segments, failed: stop as for any
	 * failed sync, even if no client waits for durability.
	 */
	if (!srv->sync_failed && wal_ring_failed(srv->ring, &err) != 0) {
		srv_sync_failed(srv, err.msg, wal_ring_durable_seq(srv->ring));
		return;
	}
	srv->records_per_s = srv->records - srv->rate_records;
	srv->rate_records = srv->records;
	sd_notifyf(0, "STATUS=%" PRIu64 " records/s, %u client%s, last seq %"
	    PRId64 ", durable %" PRId64, srv->records_per_s, srv->nconns,
	    srv->nconns == 1 ? "" : "s", wal_ring_written_seq(srv->ring),
	    wal_ring_durable_seq(srv->ring));
	if (srv->sub_dirty)
		srv_wake_subscribers(srv);
	srv_check_timeouts(srv);
	srv_log_suppressed(srv);
	if (!srv->stopping)
		srv_retention(srv);
	fwd_tick(srv);
}

/* A descriptor a client passed may be slow to close: nudge it. */
static void
closer_tick_cb(int fd, short ev, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)ev;
	closer_tick(srv->closer);
}

static void
watchdog_cb(int fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	(void)arg;
	sd_notify(0, "WATCHDOG=1");
}

/* Clients did not go away after the final acks: close them. */
static void
stop_timer_cb(int fd, short ev, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)ev;
	log_info("closing %u client%s that stayed connected", srv->nconns,
	    srv->nconns == 1 ? "" : "s");
	event_base_loopbreak(srv->base);
}

/* Say how recovery used the checkpoint and what it synced or removed. */
static void
log_recovery(const struct wal_recovery *rec)
{
	if (rec->checkpoint == WAL_CKPT_BAD)
		log_warnx("walmmapd.checkpoint is unusable (%s): read and "
		    "synced all %" PRIu64 " segments", rec->checkpoint_why,
		    rec->scanned);
	else if (rec->checkpoint == WAL_CKPT_NONE && rec->scanned > 0)
		log_info("no walmmapd.checkpoint (a directory of an earlier "
		    "version): read and synced all %" PRIu64 " segments once",
		    rec->scanned);
	else if (rec->synced > 0)
		log_info("recovery read segments from %" PRIu64 " on and "
		    "synced %" PRIu64 " before calling their records durable",
		    rec->scan_from_id, rec->synced);
	if (rec->checkpoint_unwritten[0] != '\0')
		log_warnx("walmmapd.checkpoint not written at start (%s): the "
		    "old one, if any, stays until a sealed segment is synced",
		    rec->checkpoint_unwritten);
	if (rec->sync_failed)
		log_warnx("the previous run stopped after a failed sync: "
		    "%" PRIu64 " segment%s written again and synced; "
		    "walmmapd.sync-failed removed", rec->rewritten,
		    rec->rewritten == 1 ? "" : "s");
	if (rec->removed > 0)
		log_info("recovery removed %" PRIu64 " empty segment%s (another "
		    "size, or unused)", rec->removed, rec->removed == 1 ? "" :
		    "s");
}

/*
 * A file named like a segment of another prefix ("<x>_<10 digits>.wal")
 * in the data directory: 1 with its name, else 0.
 */
static int
foreign_segments(int dirfd, const char *prefix, char *name, size_t len)
{
	struct dirent *de;
	const char *u, *p;
	size_t plen = strlen(prefix), digits;
	DIR *d;
	int fd, found = 0;

	if ((fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		return (0);	/* recovery will say what is wrong */
	}
	while (!found && (de = readdir(d)) != NULL) {
		if ((u = strrchr(de->d_name, '_')) == NULL ||
		    u == de->d_name || de->d_name[0] == '.')
			continue;
		for (p = u + 1, digits = 0; *p >= '0' && *p <= '9'; p++)
			digits++;
		if (digits < 10 || strcmp(p, ".wal") != 0)
			continue;
		if ((size_t)(u - de->d_name) == plen &&
		    strncmp(de->d_name, prefix, plen) == 0)
			continue;
		snprintf(name, len, "%s", de->d_name);
		found = 1;
	}
	closedir(d);
	return (found);
}
