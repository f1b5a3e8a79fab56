/*
 * walmmap-forward - ship walmmapd's log to NATS JetStream, exactly once,
 * in order.
 *
 * It reads the log through a subscription on walmmapd's socket (or, with
 * -d, straight from the segment files), publishes each record as one
 * JetStream message whose id is "<log id>:<seq>", and tells walmmapd how
 * far the stream has acknowledged (FWD_POSITION), so retention keeps what
 * is not shipped yet. On every start, and after every failure, it asks
 * the stream for its last message on the subject and goes on after it.
 */
#include "config.h"

#include <sys/socket.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "fwd.h"
#include "internal.h"
#include "walmmap.h"

#define FWD_BACKOFF_MIN_MS	250
#define FWD_BACKOFF_MAX_MS	5000
#define FWD_REPORT_MS		250	/* FWD_POSITION, sd_notify */

volatile sig_atomic_t fwd_stop;
static int	fwd_foreground = 1;

static void	usage(FILE *, int) __attribute__((noreturn));
static void	fwd_signal(int);
static int	fwd_load_config(struct fwd_config *, const char *path);
static int	fwd_set_opt(struct fwd_config *, const char *key,
		    const char *val, char *why, size_t whylen);
static int	fwd_run(struct fwd *);
static void	fwd_sleep(int *backoff_ms);
static int64_t	fwd_now_ms(void);
static void	fwd_report(struct fwd *);

static const struct option longopts[] = {
	{ "foreground",		no_argument,		NULL, 'f' },
	{ "config",		required_argument,	NULL, 'c' },
	{ "socket",		required_argument,	NULL, 's' },
	{ "datadir",		required_argument,	NULL, 'd' },
	{ "url",		required_argument,	NULL, 'u' },
	{ "stream",		required_argument,	NULL, 'S' },
	{ "subject",		required_argument,	NULL, 'j' },
	{ "name",		required_argument,	NULL, 'n' },
	{ "create-stream",	no_argument,		NULL, 'C' },
	{ "replicas",		required_argument,	NULL, 'r' },
	{ "storage",		required_argument,	NULL, 'T' },
	{ "level",		required_argument,	NULL, 'l' },
	{ "window",		required_argument,	NULL, 'w' },
	{ "ack-wait",		required_argument,	NULL, 'a' },
	{ "stop-wait",		required_argument,	NULL, 'W' },
	{ "allow-gap",		no_argument,		NULL, 'g' },
	{ "creds",		required_argument,	NULL, 'k' },
	{ "nkey-seed",		required_argument,	NULL, 'N' },
	{ "user",		required_argument,	NULL, 'U' },
	{ "password",		required_argument,	NULL, 'P' },
	{ "tls",		no_argument,		NULL, 't' },
	{ "tls-ca",		required_argument,	NULL, 'A' },
	{ "tls-cert",		required_argument,	NULL, 'E' },
	{ "tls-key",		required_argument,	NULL, 'K' },
	{ "help",		no_argument,		NULL, 'h' },
	{ NULL,			0,			NULL, 0 }
};

static void
usage(FILE *f, int status)
{
	fprintf(f, "usage: walmmap-forward [-f] [-c FILE] [-s SOCKET] [-d "
	    "DATADIR] --url URL[,URL...]\n"
	    "           --stream NAME [--subject SUBJECT] [--create-stream "
	    "[--replicas N]\n"
	    "           [--storage file|memory]] [--level written|durable] "
	    "[--name NAME]\n"
	    "           [--window N] [--ack-wait MS] [--stop-wait MS] "
	    "[--allow-gap]\n"
	    "           [--creds FILE] [--nkey-seed FILE] [--user USER "
	    "--password PASS]\n"
	    "           [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key "
	    "FILE]\n");
	exit(status);
}

/* Log a line: sd-daemon priority prefix on stderr, or syslog. */
void
fwd_log(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (fwd_foreground) {
		fprintf(stderr, "<%d>walmmap-forward: ", prio);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	} else
		vsyslog(prio, fmt, ap);
	va_end(ap);
}

static void
fwd_signal(int sig)
{
	(void)sig;
	fwd_stop = 1;
}

/* Set an option by its long name (command line or configuration file). */
static int
fwd_set_opt(struct fwd_config *c, const char *key, const char *val,
    char *why, size_t whylen)
{
	char *end;
	long v;
	const char *dup;

	if (val != NULL && (dup = strdup(val)) != NULL) {
		char **o = realloc(c->owned, (c->nowned + 1) * sizeof *o);

		if (o == NULL) {
			free((void *)dup);
			snprintf(why, whylen, "out of memory");
			return (-1);
		}
		c->owned = o;
		c->owned[c->nowned++] = (char *)dup;
		val = dup;	/* kept for the run, freed at exit */
	}
	if (strcmp(key, "socket") == 0)
		c->socket = val;
	else if (strcmp(key, "datadir") == 0)
		c->datadir = val;
	else if (strcmp(key, "url") == 0)
		c->urls = val;
	else if (strcmp(key, "stream") == 0)
		c->stream = val;
	else if (strcmp(key, "subject") == 0) {
		if (strlen(val) >= sizeof c->subject || *val == '\0' ||
		    strpbrk(val, " \t*>") != NULL) {
			snprintf(why, whylen, "subject \"%s\": not a NATS "
			    "subject without wildcards", val);
			return (-1);
		}
		snprintf(c->subject, sizeof c->subject, "%s", val);
	} else if (strcmp(key, "name") == 0) {
		if (strlen(val) >= WAL_FWD_NAME_MAX || *val == '\0' ||
		    strspn(val, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
		    "QRSTUVWXYZ0123456789_.-") != strlen(val)) {
			snprintf(why, whylen, "name \"%s\": 1 to %d of "
			    "[A-Za-z0-9_.-]", val, WAL_FWD_NAME_MAX - 1);
			return (-1);
		}
		c->name = val;
	} else if (strcmp(key, "create-stream") == 0)
		c->create_stream = 1;
	else if (strcmp(key, "allow-gap") == 0)
		c->allow_gap = 1;
	else if (strcmp(key, "tls") == 0)
		c->tls = 1;
	else if (strcmp(key, "storage") == 0) {
		if (strcmp(val, "file") == 0)
			c->memory_storage = 0;
		else if (strcmp(val, "memory") == 0)
			c->memory_storage = 1;
		else {
			snprintf(why, whylen, "storage \"%s\": file or memory",
			    val);
			return (-1);
		}
	} else if (strcmp(key, "level") == 0) {
		if (strcmp(val, "written") == 0)
			c->level = FWD_LEVEL_WRITTEN;
		else if (strcmp(val, "durable") == 0)
			c->level = FWD_LEVEL_DURABLE;
		else {
			snprintf(why, whylen, "level \"%s\": written or "
			    "durable", val);
			return (-1);
		}
	} else if (strcmp(key, "replicas") == 0 || strcmp(key, "window") ==
	    0 || strcmp(key, "ack-wait") == 0 || strcmp(key, "stop-wait") ==
	    0) {
		errno = 0;
		v = strtol(val, &end, 10);
		if (errno != 0 || *end != '\0' || end == val || v < 1 ||
		    v > (strcmp(key, "replicas") == 0 ? 5 :
		    strcmp(key, "window") == 0 ? 65536 : 3600000)) {
			snprintf(why, whylen, "%s \"%s\": not a number in "
			    "range", key, val);
			return (-1);
		}
		if (strcmp(key, "replicas") == 0)
			c->replicas = (int)v;
		else if (strcmp(key, "window") == 0)
			c->window = (int)v;
		else if (strcmp(key, "ack-wait") == 0)
			c->ack_wait_ms = (int)v;
		else
			c->stop_wait_ms = (int)v;
	} else if (strcmp(key, "creds") == 0)
		c->creds = val;
	else if (strcmp(key, "nkey-seed") == 0)
		c->nkey_seed = val;
	else if (strcmp(key, "user") == 0)
		c->user = val;
	else if (strcmp(key, "password") == 0)
		c->password = val;
	else if (strcmp(key, "tls-ca") == 0)
		c->tls_ca = val;
	else if (strcmp(key, "tls-cert") == 0)
		c->tls_cert = val;
	else if (strcmp(key, "tls-key") == 0)
		c->tls_key = val;
	else {
		snprintf(why, whylen, "unknown option \"%s\"", key);
		return (-1);
	}
	return (0);
}

/* A configuration file: "key = value" lines, keys as the long options. */
static int
fwd_load_config(struct fwd_config *c, const char *path)
{
	char line[1024], why[300], *k, *v, *e;
	FILE *f;
	int n = 0;

	if ((f = fopen(path, "r")) == NULL) {
		fwd_log(LOG_ERR, "cannot open %s: %s", path, strerror(errno));
		return (-1);
	}
	while (fgets(line, sizeof line, f) != NULL) {
		n++;
		k = line + strspn(line, " \t");
		if (*k == '#' || *k == '\n' || *k == '\0')
			continue;
		k[strcspn(k, "\n")] = '\0';
		if ((v = strchr(k, '=')) != NULL) {
			for (e = v; e > k && (e[-1] == ' ' || e[-1] == '\t');
			    e--)
				;
			*e = '\0';
			v++;
			v += strspn(v, " \t");
			for (e = v + strlen(v); e > v && (e[-1] == ' ' ||
			    e[-1] == '\t'); e--)
				;
			*e = '\0';
		}
		if (fwd_set_opt(c, k, v != NULL ? v : "", why, sizeof why) !=
		    0) {
			fwd_log(LOG_ERR, "%s:%d: %s", path, n, why);
			fclose(f);
			return (-1);
		}
	}
	fclose(f);
	return (0);
}

int
main(int argc, char **argv)
{
	struct fwd fw;
	struct sigaction sa;
	char why[300], host[200];
	const char *conf = NULL;
	int ch, rc, i;

	memset(&fw, 0, sizeof fw);
	fw.ctl = -1;
	fw.durable_seq = -1;
	fw.acked_seq = -1;
	fw.verified = -2;
	fw.cfg.name = "default";
	fw.cfg.replicas = 1;
	fw.cfg.window = 1024;
	fw.cfg.ack_wait_ms = 5000;
	fw.cfg.stop_wait_ms = 10000;
	/* -c first, so that the command line wins over the file. */
	for (i = 1; i < argc - 1; i++)
		if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") ==
		    0)
			conf = argv[i + 1];
	if (conf != NULL && fwd_load_config(&fw.cfg, conf) != 0)
		exit(FWD_EXIT_CONFIG);
	while ((ch = getopt_long(argc, argv, "fc:s:d:h", longopts, NULL)) !=
	    -1) {
		const char *key = NULL;

		switch (ch) {
		case 'f':
			fw.cfg.foreground = 1;
			continue;
		case 'c':
			continue;
		case 'h':
			usage(stdout, 0);
		case '?':
			usage(stderr, FWD_EXIT_CONFIG);
		case 's':
			key = "socket";
			break;
		case 'd':
			key = "datadir";
			break;
		default:
			for (i = 0; longopts[i].name != NULL; i++)
				if (longopts[i].val == ch)
					key = longopts[i].name;
			break;
		}
		if (fwd_set_opt(&fw.cfg, key, optarg, why, sizeof why) != 0) {
			fprintf(stderr, "walmmap-forward: %s\n", why);
			exit(FWD_EXIT_CONFIG);
		}
	}
	if (optind != argc)
		usage(stderr, FWD_EXIT_CONFIG);
	if (fw.cfg.urls == NULL || fw.cfg.stream == NULL) {
		fprintf(stderr, "walmmap-forward: --url and --stream are "
		    "needed\n");
		exit(FWD_EXIT_CONFIG);
	}
	if (fw.cfg.subject[0] == '\0') {
		if (gethostname(host, sizeof host) != 0)
			snprintf(host, sizeof host, "localhost");
		host[sizeof host - 1] = '\0';
		for (i = 0; host[i] != '\0'; i++)
			if (strchr(" \t.*>", host[i]) != NULL)
				host[i] = '_';
		snprintf(fw.cfg.subject, sizeof fw.cfg.subject, "walmmap.%s",
		    host);
	}
	if (!fw.cfg.foreground) {
		if (daemon(0, 0) != 0) {
			fprintf(stderr, "walmmap-forward: daemon: %s\n",
			    strerror(errno));
			exit(FWD_EXIT_FAIL);
		}
		fwd_foreground = 0;
		openlog("walmmap-forward", LOG_PID, LOG_DAEMON);
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = fwd_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	pthread_mutex_init(&fw.lock, NULL);
	pthread_cond_init(&fw.cond, NULL);
	if ((fw.slots = calloc((size_t)fw.cfg.window, sizeof *fw.slots)) ==
	    NULL) {
		fwd_log(LOG_ERR, "out of memory");
		exit(FWD_EXIT_FAIL);
	}
	if (fwd_nats_setup(&fw, why, sizeof why) != 0) {
		fwd_log(LOG_ERR, "%s", why);
		exit(FWD_EXIT_CONFIG);
	}
	fwd_log(LOG_INFO, "forwarding %s to stream %s, subject %s, on %s "
	    "(%s records, window %d)", fw.cfg.datadir != NULL ?
	    fw.cfg.datadir : fw.cfg.socket != NULL ? fw.cfg.socket :
	    "walmmapd", fw.cfg.stream, fw.cfg.subject, fw.cfg.urls,
	    fw.cfg.level == FWD_LEVEL_DURABLE ? "durable" : "written",
	    fw.cfg.window);
	rc = fwd_run(&fw);
	fwd_report(&fw);
	ctl_close(&fw);
	fwd_nats_close(&fw);
	nats_Close();
	if (rc == FWD_EXIT_OK)
		fwd_log(LOG_INFO, "stopped: shipped to seq %" PRId64,
		    fw.acked_seq);
	sd_notify(0, "STOPPING=1");
	free(fw.slots);
	while (fw.cfg.nowned > 0)
		free(fw.cfg.owned[--fw.cfg.nowned]);
	free(fw.cfg.owned);
	return (rc);
}

/* Milliseconds, monotonic. */
static int64_t
fwd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Wait before trying again, doubling up to a limit; a signal cuts it. */
static void
fwd_sleep(int *backoff_ms)
{
	int64_t until = fwd_now_ms() + *backoff_ms;

	while (!fwd_stop && fwd_now_ms() < until) {
		sd_notify(0, "WATCHDOG=1");
		poll(NULL, 0, 50);
	}
	*backoff_ms *= 2;
	if (*backoff_ms > FWD_BACKOFF_MAX_MS)
		*backoff_ms = FWD_BACKOFF_MAX_MS;
}

/*
 * The loop of epochs: find where the stream stands, register, read from
 * there and publish until something fails or a stop is asked for; then
 * settle what is in flight and start again. Returns the exit status.
 */
static int
fwd_run(struct fwd *fw)
{
	struct wal_msg_fwd_state st;
	struct walmmap_reader *r = NULL;
	struct walmmap_record rec;
	char why[1024];
	const char *last_err;
	char nerr[128], logged[128] = "";
	natsStatus ns;
	int64_t last, next, next_start, low, report = 0;
	int check;
	int backoff = FWD_BACKOFF_MIN_MS, rc, n, warned = 0, shipped;
	int tried, stuck = 0;

	/*
	 * Ready as soon as it runs: waiting for NATS or walmmapd is its job
	 * (STATUS says so), not a start that systemd should time out.
	 */
	sd_notify(0, "READY=1");

	while (!fwd_stop) {
		if (r != NULL) {
			walmmap_reader_close(r);
			r = NULL;
		}
		fw->positioned = 0;
		fwd_report(fw);
		/* The daemon: the log id and where its log starts. */
		if (fw->ctl < 0 && ctl_connect(fw, why, sizeof why) != 0) {
			fwd_log(LOG_WARNING, "%s; trying again", why);
			fwd_set_error(fw, "%s", why);
			fwd_sleep(&backoff);
			continue;
		}
		if ((rc = ctl_register(fw, &st, why, sizeof why)) != 0) {
			fwd_log(LOG_ERR, "%s", why);
			ctl_close(fw);
			if (rc > 0)
				return (rc);
			fwd_sleep(&backoff);
			continue;
		}
		/* A lost connection is closed: open the next one. */
		if (fwd_nats_renew(fw, why, sizeof why) != 0) {
			fwd_log(LOG_WARNING, "%s; trying again", why);
			fwd_set_error(fw, "%s", why);
			fwd_sleep(&backoff);
			continue;
		}
		if (!fwd_nats_connected(fw)) {
			if (!warned)
				fwd_log(LOG_WARNING, "no NATS server reachable at "
				    "%s yet; trying again", fw->cfg.urls);
			warned = 1;
			last_err = NULL;
			if (fw->nc != NULL && (ns = natsConnection_GetLastError(
			    fw->nc, &last_err)) != NATS_OK && last_err == NULL)
				last_err = natsStatus_GetText(ns);
			pthread_mutex_lock(&fw->lock);
			snprintf(nerr, sizeof nerr, "%s", fw->nats_error);
			pthread_mutex_unlock(&fw->lock);
			if (nerr[0] == '\0')
				fwd_nats_probe(fw, nerr, sizeof nerr);
			if (nerr[0] != '\0')
				last_err = nerr;	/* the server's reason */
			fwd_set_error(fw, "no NATS server reachable at %s%s%s",
			    fw->cfg.urls, last_err != NULL ? ": " : "",
			    last_err != NULL ? last_err : "");
			if (nerr[0] != '\0' && strcmp(nerr, logged) != 0) {
				fwd_log(LOG_ERR, "NATS at %s: %s", fw->cfg.urls,
				    nerr);
				snprintf(logged, sizeof logged, "%s", nerr);
			}
			fwd_sleep(&backoff);
			continue;
		}
		/* The stream first: a misconfigured one registers nothing. */
		if (fwd_nats_epoch(fw, -1, why, sizeof why) != 0) {
			fwd_log(LOG_WARNING, "%s", why);
			fwd_sleep(&backoff);
			continue;
		}
		if ((rc = fwd_nats_check_stream(fw, why, sizeof why)) != 0) {
			fwd_set_error(fw, "%s", why);
			if (rc > 0) {
				fwd_log(LOG_ERR, "%s", why);
				return (rc);
			}
			fwd_log(LOG_WARNING, "%s; trying again", why);
			fwd_sleep(&backoff);
			continue;
		}
		if ((rc = fwd_nats_last(fw, &last, why, sizeof why)) != 0) {
			fwd_set_error(fw, "%s", why);
			if (rc > 0) {
				fwd_log(LOG_ERR, "%s", why);
				return (rc);
			}
			fwd_log(LOG_WARNING, "%s; trying again", why);
			fwd_sleep(&backoff);
			continue;
		}
		/*
		 * Nothing after what the last epoch had stored in order (or,
		 * on a start, the last window of messages) may be missing.
		 */
		low = fw->verified >= -1 ? fw->verified : last -
		    fw->cfg.window;
		if ((rc = fwd_nats_verify(fw, last, low < -1 ? -1 : low,
		    why, sizeof why)) != 0) {
			fwd_set_error(fw, "%s%s", rc > 0 ? "GAP: " : "", why);
			if (rc < 0) {
				fwd_log(LOG_WARNING, "%s; trying again", why);
				fwd_sleep(&backoff);
				continue;
			}
			fwd_log(LOG_ERR, "GAP: %s%s", why, fw->cfg.allow_gap ?
			    "; going on after them (--allow-gap)" : "");
			if (!fw->cfg.allow_gap)
				return (FWD_EXIT_GAP);
		}
		fw->verified = last;
		next = last + 1;
		if (st.first_seq >= 0 && st.first_seq > next) {
			fwd_log(LOG_ERR, "GAP: the log no longer holds records "
			    "%" PRId64 " .. %" PRId64 " that stream %s lacks "
			    "(retention removed them: forward_hold_max_bytes, "
			    "forward_hold_max_age in walmmapd.conf)%s", next,
			    st.first_seq - 1, fw->cfg.stream, fw->cfg.allow_gap ?
			    "; going on after them (--allow-gap)" : "");
			fwd_set_error(fw, "GAP: records %" PRId64 " .. %" PRId64
			    " were removed before they were shipped", next,
			    st.first_seq - 1);
			if (!fw->cfg.allow_gap)
				return (FWD_EXIT_GAP);
			next = st.first_seq;
		}
		next_start = next;
		if (fwd_nats_epoch(fw, next - 1, why, sizeof why) != 0) {
			fwd_log(LOG_WARNING, "%s", why);
			fwd_sleep(&backoff);
			continue;
		}
		pthread_mutex_lock(&fw->lock);
		fw->acked_ts_ns = 0;
		pthread_mutex_unlock(&fw->lock);
		/*
		 * Read from the stream's last record when the log still has
		 * it: it must be the same record. A log that lost records it
		 * had shipped (a power cut under --level written) gives its
		 * seqs to new records, which the stream would never get.
		 */
		check = last >= 0 && last >= st.first_seq && last + 1 == next;
		if (fw->cfg.datadir != NULL) {
			if ((rc = walmmap_reader_open(&r, fw->cfg.datadir)) ==
			    0)
				rc = walmmap_reader_seek(r, check ? last :
				    next);
		} else
			rc = walmmap_subscribe(&r, fw->cfg.socket, check ?
			    last : next, -1, WALMMAP_FOLLOW);
		if (rc != 0) {
			snprintf(why, sizeof why, "cannot read the log from seq "
			    "%" PRId64 ": %s", next, r != NULL ?
			    walmmap_reader_errmsg(r) : walmmap_strerror(rc));
			fwd_log(LOG_WARNING, "%s; trying again", why);
			fwd_set_error(fw, "%s", why);
			ctl_close(fw);
			fwd_sleep(&backoff);
			continue;
		}
		fw->positioned = 1;
		fwd_log(LOG_INFO, "stream %s holds seq %" PRId64 " of this log "
		    "on %s: shipping from seq %" PRId64, fw->cfg.stream, last,
		    fw->cfg.subject, next);
		fwd_set_error(fw, "%s", "");
		warned = 0;
		if (!stuck)
			backoff = FWD_BACKOFF_MIN_MS;
		tried = stuck = 0;
		/* Publish until something fails. */
		rc = 0;
		while (!fwd_stop) {
			pthread_mutex_lock(&fw->lock);
			n = fw->rewind;	/* a late ack failed: start again */
			pthread_mutex_unlock(&fw->lock);
			if (n)
				break;
			if (fwd_now_ms() - report >= FWD_REPORT_MS) {
				report = fwd_now_ms();
				fwd_report(fw);
				if (ctl_poll(fw) != 0) {
					ctl_close(fw);
					break;
				}
			}
			n = walmmap_reader_next(r, &rec, 100);
			if (n == 0)
				continue;
			if (n < 0) {
				fwd_log(LOG_WARNING, "reading the log at seq %"
				    PRId64 ": %s", next,
				    walmmap_reader_errmsg(r));
				fwd_set_error(fw, "reading the log: %s",
				    walmmap_reader_errmsg(r));
				if (n == -WALMMAP_ELOST ||
				    n == -WALMMAP_ESHUTDOWN)
					ctl_close(fw);
				else
					stuck = 1;	/* not a restart */
				break;
			}
			if (check && rec.seq == last) {
				check = 0;
				if (rec.timestamp_ns == fw->last_ts_ns &&
				    (int64_t)rec.size == fw->last_len &&
				    fwd_hash(rec.data, rec.size) ==
				    fw->last_hash)
					continue;
				snprintf(why, sizeof why, "stream %s holds a "
				    "seq %" PRId64 " of this log (timestamp %"
				    PRId64 ", %" PRId64 " bytes) that is not "
				    "the log's record %" PRId64 " (timestamp %"
				    PRId64 ", %zu bytes): the log lost records "
				    "it had shipped (a power cut with --level "
				    "written?) and gave their seqs to new ones, "
				    "which the stream would drop as duplicates",
				    fw->cfg.stream, last, fw->last_ts_ns,
				    fw->last_len, last, rec.timestamp_ns,
				    rec.size);
				fwd_log(LOG_ERR, "GAP: %s%s", why,
				    fw->cfg.allow_gap ? "; going on after "
				    "them (--allow-gap)" : "");
				fwd_set_error(fw, "GAP: %s", why);
				if (!fw->cfg.allow_gap) {
					walmmap_reader_close(r);
					return (FWD_EXIT_GAP);
				}
				continue;
			}
			if (rec.seq != next) {
				fwd_log(LOG_ERR, "the log gave seq %" PRId64
				    " where %" PRId64 " was expected", rec.seq,
				    next);
				stuck = 1;
				break;
			}
			while (fw->cfg.level == FWD_LEVEL_DURABLE &&
			    rec.seq > fw->durable_seq && !fwd_stop) {
				if (ctl_durable(fw) != 0)
					break;
				if (rec.seq > fw->durable_seq)
					poll(NULL, 0, 10);
			}
			if (rec.seq > fw->durable_seq && fw->cfg.level ==
			    FWD_LEVEL_DURABLE)
				break;
			tried = 1;
			rc = fwd_nats_publish(fw, rec.seq, rec.timestamp_ns,
			    rec.data, rec.size, why, sizeof why);
			if (rc == FWD_EXIT_TOO_LARGE) {
				fwd_log(LOG_ERR, "%s", why);
				fwd_set_error(fw, "%s", why);
				break;
			}
			if (rc != 0)
				break;
			next++;
		}
		/* Whatever ended the epoch, settle what is in flight. */
		fwd_nats_settle(fw, fwd_stop ? fw->cfg.stop_wait_ms :
		    fw->cfg.ack_wait_ms);
		pthread_mutex_lock(&fw->lock);
		fw->verified = fw->acked_seq;	/* stored in order up to it */
		shipped = fw->acked_seq >= next_start;
		pthread_mutex_unlock(&fw->lock);
		fwd_report(fw);
		/*
		 * An epoch that published and shipped nothing (a stream that
		 * refuses every message: full with discard new, a limit, a
		 * permission), or that the log stopped, is not retried at
		 * once, or the forwarder would republish its window in a
		 * loop: back off as for any other failure, and keep backing
		 * off (the next epoch finding its place does not reset it).
		 * One that ended because walmmapd went away, with nothing to
		 * ship, is not stuck: it reconnects at once.
		 */
		if (tried && !shipped)
			stuck = 1;
		if (shipped)
			stuck = 0;
		if (stuck && !fwd_stop && rc != FWD_EXIT_TOO_LARGE)
			fwd_sleep(&backoff);
		if (rc == FWD_EXIT_TOO_LARGE) {
			walmmap_reader_close(r);
			return (FWD_EXIT_TOO_LARGE);
		}
		pthread_mutex_lock(&fw->lock);
		if (fw->rewind && !fwd_stop && fw->error[0] != '\0')
			fwd_log(LOG_WARNING, "%s: asking the stream where it "
			    "stands", fw->error);
		pthread_mutex_unlock(&fw->lock);
	}
	if (r != NULL)
		walmmap_reader_close(r);
	return (FWD_EXIT_OK);
}

/* Report progress to walmmapd and systemd. */
static void
fwd_report(struct fwd *fw)
{
	char server[96];
	int64_t acked;
	int connected;

	fwd_nats_server(fw, server, sizeof server);
	pthread_mutex_lock(&fw->lock);
	acked = fw->acked_seq;
	connected = fw->connected && fwd_nats_connected(fw);
	pthread_mutex_unlock(&fw->lock);
	(void)ctl_position(fw);
	sd_notifyf(0, "STATUS=shipped to seq %" PRId64 "; %s%s\nWATCHDOG=1",
	    acked, connected ? "connected to " : "not connected",
	    connected ? server : "");
}
