/*
 * walctl - talk to walmmapd and read its segment files. Built only on the
 * public libwalmmap API.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "walctl.h"
#include "walmmap.h"

struct cmd {
	const char	*name;
	int		(*fn)(int, char **);
	const char	*usage;
	const char	*help;
};

static int	cmd_status(int, char **);
static int	cmd_stats(int, char **);
static int	cmd_append(int, char **);
static int	cmd_sync(int, char **);
static int	cmd_rotate(int, char **);
static int	cmd_restart(int, char **);
static int	cmd_tail(int, char **);
static int	cmd_dump(int, char **);
static int	cmd_verify(int, char **);

static const struct cmd cmds[] = {
	{ "status", cmd_status, "status [--json]",
	  "the daemon's state: seq range, segments, clients" },
	{ "stats", cmd_stats, "stats [--json|--prometheus]",
	  "counters: records, records/s, syncs, sync latency; "
	  "--prometheus: all metrics in Prometheus text format" },
	{ "append", cmd_append,
	  "append [--ack none|written|durable] [--null] [--producer ID]\n"
	  "       [--no-reconnect] [FILE]",
	  "append one record per line (or per NUL with --null) of FILE or "
	  "stdin" },
	{ "sync", cmd_sync, "sync", "make everything written durable" },
	{ "rotate", cmd_rotate, "rotate", "seal the active segment" },
	{ "restart", cmd_restart, "restart",
	  "hand walmmapd's connections over to a new walmmapd process "
	  "(re-executes it: an upgrade takes effect)" },
	{ "tail", cmd_tail,
	  "tail [-n N] [-f] [--from SEQ] [--json|--raw]",
	  "print the last N records (default 10) through the daemon; -f "
	  "follows" },
	{ "dump", cmd_dump,
	  "dump DIR|FILE [--from SEQ] [--to SEQ] [--producer ID] [--json|--raw]",
	  "print records from segment files (no daemon needed)" },
	{ "verify", cmd_verify, "verify [-q] DIR|FILE",
	  "check segment files; exit 0 clean, 1 problems, 2 errors" },
};
#define NCMDS	(sizeof cmds / sizeof cmds[0])

static const char	*socket_path;	/* -s, else the library's default */
static int		 timeout_ms = -2; /* -t in ms, -1 none, -2 defaults */
static const struct cmd	*current;

static void __attribute__((noreturn))
usage(int status)
{
	FILE *f = status == 0 ? stdout : stderr;
	size_t i;

	fprintf(f, "usage: walctl [-s SOCKET | -n NAME] [-t SECONDS] COMMAND "
	    "[ARGS]\n\n");
	for (i = 0; i < NCMDS; i++)
		fprintf(f, "  %-50s %s\n", cmds[i].usage, cmds[i].help);
	fprintf(f, "\n  -s SOCKET  walmmapd's socket (default: $WALMMAP_SOCKET "
	    "or the daemon's default)\n  -n NAME    the log of namespace NAME "
	    "(walmmapd -n NAME, walmmapd@NAME;\n             default: "
	    "$WALMMAP_NAMESPACE)\n  -t, --timeout SECONDS\n"
	    "             limit on connecting and on each request (default "
	    "%d s and %d s; 0: none)\n  -V         version\n"
	    "Run \"walctl COMMAND -h\" for a command's help.\n",
	    WALMMAP_CONNECT_TIMEOUT_MS / 1000, WALMMAP_TIMEOUT_MS / 1000);
	exit(status);
}

static void __attribute__((noreturn))
cmd_usage(int status)
{
	FILE *f = status == 0 ? stdout : stderr;

	fprintf(f, "usage: walctl %s\n  %s\n", current->usage, current->help);
	exit(status);
}

/*
 * Print a reader's error and return its exit code: 2 when a file could
 * not be read or the daemon not reached, 1 for damage or a lost stream.
 */
static int
fail(int code, const char *msg)
{
	fprintf(stderr, "walctl %s: %s\n", current->name, msg);
	return (code == -WALMMAP_ENODAEMON || code == -WALMMAP_EPERM ||
	    code == -WALMMAP_EINVAL || code == -WALMMAP_EIO ? EXIT_USAGE :
	    EXIT_PROBLEMS);
}

/* Connecting failed (not running, refused us, no handshake): 2. */
static int
fail_connect(const char *msg)
{
	fprintf(stderr, "walctl %s: %s\n", current->name, msg);
	return (EXIT_USAGE);
}

/* A request on a connection failed, whatever the reason: 1. */
static int
fail_request(const char *msg)
{
	fprintf(stderr, "walctl %s: %s\n", current->name, msg);
	return (EXIT_PROBLEMS);
}

/*
 * Has writing to standard output failed? Then say so (once) and return
 * the exit code, else 0. errno is the failed write's when called right
 * after it.
 */
static int
out_failed(void)
{
	static int told;
	int e = errno;

	if (fflush(stdout) == EOF)
		e = errno;
	if (!ferror(stdout))
		return (0);
	if (!told)
		fprintf(stderr, "walctl %s: cannot write to standard output: "
		    "%s\n", current->name, strerror(e));
	told = 1;
	return (EXIT_USAGE);
}

static int
parse_seq(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < 0) {
		fprintf(stderr, "walctl %s: \"%s\" is not a sequence number\n",
		    current->name, s);
		return (-1);
	}
	*out = v;
	return (0);
}

static int
parse_ack(const char *s, enum walmmap_ack *out)
{
	if (strcmp(s, "none") == 0)
		*out = WALMMAP_ACK_NONE;
	else if (strcmp(s, "written") == 0)
		*out = WALMMAP_ACK_WRITTEN;
	else if (strcmp(s, "durable") == 0)
		*out = WALMMAP_ACK_DURABLE;
	else {
		fprintf(stderr, "walctl %s: --ack %s: expected none, written "
		    "or durable\n", current->name, s);
		return (-1);
	}
	return (0);
}

/* Options common to commands without arguments but -h / --json. */
static int
simple_opts(int argc, char **argv, int *json)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'j':
			if (json == NULL)
				cmd_usage(EXIT_USAGE);
			*json = 1;
			break;
		case 'h':
			cmd_usage(EXIT_OK);
		default:
			cmd_usage(EXIT_USAGE);
		}
	}
	if (optind != argc)
		cmd_usage(EXIT_USAGE);
	return (0);
}

/* Connect within --timeout, which then bounds every request too. */
static int
connect_or_fail(struct walmmap **w, enum walmmap_ack ack)
{
	int rc;

	if ((rc = walmmap_connect_timeout(w, socket_path, ack, 0,
	    timeout_ms == -2 ? WALMMAP_CONNECT_TIMEOUT_MS : timeout_ms)) != 0) {
		rc = fail_connect(walmmap_errmsg(*w));
		walmmap_close(*w);
		*w = NULL;
		return (rc);
	}
	if (timeout_ms != -2)
		walmmap_set_timeout(*w, timeout_ms);
	return (0);
}

static void
print_seq_json(FILE *f, const char *key, int64_t v, int comma)
{
	if (v < 0)
		fprintf(f, "\"%s\":null%s", key, comma ? "," : "");
	else
		fprintf(f, "\"%s\":%" PRId64 "%s", key, v, comma ? "," : "");
}

/* The daemon's status; *dir (if not NULL) its whole data directory. */
static int
query_status(struct walmmap_status *st, char **dir)
{
	struct walmmap *w;
	int rc;

	if ((rc = connect_or_fail(&w, WALMMAP_ACK_NONE)) != 0)
		return (rc);
	if ((rc = walmmap_status(w, st)) != 0) {
		rc = fail_request(walmmap_errmsg(w));
		walmmap_close(w);
		return (rc);
	}
	if (dir != NULL && (*dir = strdup(walmmap_status_dir(w))) == NULL) {
		walmmap_close(w);
		return (fail_request("out of memory"));
	}
	walmmap_close(w);
	return (0);
}

static int
cmd_status(int argc, char **argv)
{
	struct walmmap_status st;
	struct walmmap_log_info *li;
	char *dir;
	int json = 0, rc;

	simple_opts(argc, argv, &json);
	if ((rc = query_status(&st, &dir)) != 0)
		return (rc);
	/* The log id and forwarders; a version 1 daemon has neither. */
	if ((li = calloc(1, sizeof *li)) == NULL) {
		free(dir);
		return (fail_request("out of memory"));
	}
	if (walmmap_log_info(socket_path, li, NULL, 0) != 0)
		li->log_id_hex[0] = '\0';
	if (json) {
		printf("{\"pid\":%" PRIu64 ",", st.pid);
		print_json_text(stdout, "dir", dir);
		free(dir);
		printf(",\"protocol\":%u,", st.protocol);
		print_seq_json(stdout, "first_seq", st.first_seq, 1);
		print_seq_json(stdout, "last_seq", st.written_seq, 1);
		print_seq_json(stdout, "durable_seq", st.durable_seq, 1);
		printf("\"next_seq\":%" PRId64 ",\"segments\":%" PRIu64
		    ",\"disk_bytes\":%" PRIu64 ",\"segment_size\":%" PRIu64
		    ",\"ring\":%u,\"active_segment\":%" PRIu64 ",\"clients\":%"
		    PRIu64 ",\"records_per_s\":%" PRIu64 ",\"uptime_s\":%"
		    PRIu64 ",", st.next_seq, st.segments, st.disk_bytes,
		    st.segment_size, st.ring_segments, st.active_segment,
		    st.clients, st.records_per_s, st.uptime_s);
		print_forwarders_json(stdout, li);
		printf("}\n");
		free(li);
		return (EXIT_OK);
	}
	printf("walmmapd pid %" PRIu64 ", up %" PRIu64 " s, protocol %u\n",
	    st.pid, st.uptime_s, st.protocol);
	printf("directory    %s\n", dir);
	free(dir);
	if (st.first_seq >= 0 && st.written_seq >= 0)
		printf("records      seq %" PRId64 " .. %" PRId64 " (%" PRId64
		    " on disk)\n", st.first_seq, st.written_seq,
		    st.written_seq - st.first_seq + 1);
	else
		printf("records      none\n");
	printf("next seq     %" PRId64 "\n", st.next_seq);
	if (st.durable_seq >= 0)
		printf("durable to   %" PRId64 "\n", st.durable_seq);
	else
		printf("durable to   -\n");
	printf("segments     %" PRIu64 " files, %" PRIu64 " bytes (segment "
	    "size %" PRIu64 ", ring %u, active %" PRIu64 ")\n", st.segments,
	    st.disk_bytes, st.segment_size, st.ring_segments,
	    st.active_segment);
	printf("clients      %" PRIu64 " connected\n", st.clients);
	printf("rate         %" PRIu64 " records/s\n", st.records_per_s);
	print_forwarders(stdout, li);
	free(li);
	return (EXIT_OK);
}

/* stats --prometheus: the daemon's text exposition, as it sent it. */
static int
stats_prometheus(void)
{
	struct walmmap *w;
	char *text;
	size_t len;
	int rc;

	if ((rc = connect_or_fail(&w, WALMMAP_ACK_NONE)) != 0)
		return (rc);
	if ((rc = walmmap_metrics(w, &text, &len)) != 0) {
		rc = fail_request(walmmap_errmsg(w));
		walmmap_close(w);
		return (rc);
	}
	walmmap_close(w);
	(void)fwrite(text, 1, len, stdout);
	free(text);
	if ((rc = out_failed()) != 0)
		return (rc);
	return (EXIT_OK);
}

static int
cmd_stats(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "prometheus", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct walmmap_status st;
	uint64_t avg;
	int json = 0, prom = 0, rc, ch;

	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'j':
			json = 1;
			break;
		case 'p':
			prom = 1;
			break;
		case 'h':
			cmd_usage(EXIT_OK);
		default:
			cmd_usage(EXIT_USAGE);
		}
	}
	if (optind != argc || (json && prom))
		cmd_usage(EXIT_USAGE);
	if (prom)
		return (stats_prometheus());
	if ((rc = query_status(&st, NULL)) != 0)
		return (rc);
	avg = st.syncs ? st.sync_ns_total / st.syncs : 0;
	if (json) {
		printf("{\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"frames\":%"
		    PRIu64 ",\"records_per_s\":%" PRIu64 ",\"clients\":%" PRIu64
		    ",\"clients_total\":%" PRIu64 ",\"syncs\":%" PRIu64
		    ",\"sync_avg_ns\":%" PRIu64 ",\"sync_max_ns\":%" PRIu64
		    ",\"rotations\":%" PRIu64 ",\"errors\":%" PRIu64 ",",
		    st.records, st.bytes, st.frames, st.records_per_s,
		    st.clients, st.clients_total, st.syncs, avg,
		    st.sync_ns_max, st.rotations, st.errors);
		print_seq_json(stdout, "first_seq", st.first_seq, 1);
		print_seq_json(stdout, "last_seq", st.written_seq, 1);
		print_seq_json(stdout, "durable_seq", st.durable_seq, 0);
		printf("}\n");
		return (EXIT_OK);
	}
	printf("records        %" PRIu64 " (%" PRIu64 " payload bytes, %" PRIu64
	    " frames) since start\n", st.records, st.bytes, st.frames);
	printf("records/s      %" PRIu64 "\n", st.records_per_s);
	printf("seq range      %" PRId64 " .. %" PRId64 "\n", st.first_seq,
	    st.written_seq);
	printf("clients        %" PRIu64 " now, %" PRIu64 " since start\n",
	    st.clients, st.clients_total);
	printf("syncs          %" PRIu64 " (avg %.3f ms, max %.3f ms)\n",
	    st.syncs, avg / 1e6, st.sync_ns_max / 1e6);
	printf("rotations      %" PRIu64 "\n", st.rotations);
	printf("errors sent    %" PRIu64 "\n", st.errors);
	return (EXIT_OK);
}

/* What read_record() found besides a record. */
#define READ_END	-1		/* no more input */
#define READ_LONG	-2		/* a record over the limit */
#define READ_ERROR	-3		/* read error or no memory: errno */

/*
 * The next record of in, up to delim (not kept), into *buf, which grows
 * to at most limit bytes: a longer record is READ_LONG with the rest of
 * it unread, so memory stays bounded whatever the input. Returns the
 * record's length, READ_END, READ_LONG or READ_ERROR.
 */
static ssize_t
read_record(FILE *in, int delim, char **buf, size_t *cap, size_t limit)
{
	size_t n = 0, ncap;
	char *nbuf;
	int ch;

	for (;;) {
		if ((ch = getc_unlocked(in)) == EOF) {
			if (ferror(in))
				return (READ_ERROR);
			return (n == 0 ? READ_END : (ssize_t)n);
		}
		if (ch == delim)
			return ((ssize_t)n);
		if (n == limit)
			return (READ_LONG);
		if (n == *cap) {
			ncap = *cap < 4096 ? 4096 : *cap * 2;
			if (ncap > limit)
				ncap = limit;
			if ((nbuf = realloc(*buf, ncap)) == NULL) {
				errno = ENOMEM;
				return (READ_ERROR);
			}
			*buf = nbuf;
			*cap = ncap;
		}
		(*buf)[n++] = (char)ch;
	}
}

/*
 * Wait for what was sent before a failure and say how much of it is in:
 * "N records before it appended (seq A .. B written)".
 */
static void
appended_before(struct walmmap *w, enum walmmap_ack ack, int64_t first,
    char *buf, size_t len)
{
	struct walmmap_progress p;

	(void)walmmap_wait(w, ack == WALMMAP_ACK_NONE ? WALMMAP_ACK_WRITTEN :
	    ack, -1);
	walmmap_progress(w, &p);
	if (ack == WALMMAP_ACK_NONE)
		snprintf(buf, len, "%" PRIu64 " record%s before it sent", p.sent,
		    p.sent == 1 ? "" : "s");
	else if (p.acked == 0)
		snprintf(buf, len, "no record before it appended");
	else
		snprintf(buf, len, "%" PRIu64 " record%s before it appended "
		    "(seq %" PRId64 " .. %" PRId64 ")", p.acked, p.acked == 1 ?
		    "" : "s", first, p.last_seq);
}

#define APPEND_BATCH		1024		/* records per producer call */
#define APPEND_BATCH_BYTES	(64u * 1024)

/*
 * append at level written or durable: as an idempotent producer that
 * reconnects (libwalmmap(3)), in batches. 0 or an exit code.
 */
static int
append_producer(FILE *in, const char *name, int delim, enum walmmap_ack ack,
    uint64_t id, int reconnect)
{
	struct walmmap_producer *p;
	struct walmmap *w = NULL;
	struct iovec iov[APPEND_BATCH];
	int64_t seqs[APPEND_BATCH], first = -1, last = -1;
	char *buf[APPEND_BATCH];
	size_t cap[APPEND_BATCH], n = 0, bytes = 0, limit, i, big;
	uint64_t done = 0;
	uintmax_t lineno = 0;
	ssize_t len;
	int rc = 0, over = 0;

	memset(buf, 0, sizeof buf);
	memset(cap, 0, sizeof cap);
	if ((rc = walmmap_producer_open(&p, socket_path, ack, id)) != 0) {
		rc = fail_connect(walmmap_producer_errmsg(p));
		walmmap_producer_close(p);
		return (rc);
	}
	if (!reconnect)
		walmmap_producer_set_reconnect(p, 0, 0);
	if (timeout_ms != -2)
		walmmap_producer_set_timeout(p, timeout_ms);
	limit = walmmap_producer_max_record(p);
	for (;;) {
		len = read_record(in, delim, &buf[n], &cap[n], limit);
		if (len >= 0) {
			lineno++;
			iov[n].iov_base = buf[n];
			iov[n].iov_len = (size_t)len;
			bytes += (size_t)len;
			n++;
		}
		if (len > WALMMAP_PRODUCER_MAX_RECORD) {
			/*
			 * Above a frame: a memfd on a plain connection, after
			 * the batch before it (not resent across a restart).
			 */
			big = --n;
			if (n > 0 && (rc = walmmap_producer_append_batch(p,
			    iov, n, seqs)) != 0)
				break;
			if (n > 0 && first < 0)
				first = seqs[0];
			if (n > 0)
				last = seqs[n - 1];
			done += n;
			n = 0;
			bytes = 0;
			if (w == NULL && (rc = connect_or_fail(&w, ack)) != 0)
				goto done;
			if ((rc = walmmap_append(w, buf[big], (size_t)len,
			    WALMMAP_ACK_DEFAULT, &last)) != 0) {
				rc = fail_request(walmmap_errmsg(w));
				goto done;
			}
			if (first < 0)
				first = last;
			done++;
			continue;
		}
		if (n > 0 && (len < 0 || n == APPEND_BATCH ||
		    bytes >= APPEND_BATCH_BYTES)) {
			if ((rc = walmmap_producer_append_batch(p, iov, n,
			    seqs)) != 0)
				break;
			if (first < 0)
				first = seqs[0];
			last = seqs[n - 1];
			done += n;
			n = 0;
			bytes = 0;
		}
		if (len < 0)
			break;
	}
	if (rc != 0) {
		char msg[1024];

		snprintf(msg, sizeof msg, "%s (producer %" PRIu64 ", reading "
		    "stopped at %s %ju of %s; %" PRIu64 " record%s "
		    "acknowledged)", walmmap_producer_errmsg(p),
		    walmmap_producer_id(p), delim == '\n' ? "line" : "record",
		    lineno, name, done, done == 1 ? "" : "s");
		rc = fail_request(msg);
	} else if (len == READ_LONG || len == READ_ERROR) {
		char before[256];

		if (done == 0)
			snprintf(before, sizeof before, "no record before it "
			    "appended");
		else
			snprintf(before, sizeof before, "%" PRIu64 " record%s "
			    "before it appended (seq %" PRId64 " .. %" PRId64
			    ")", done, done == 1 ? "" : "s", first, last);
		if (len == READ_LONG) {
			fprintf(stderr, "walctl append: %s: %s %ju is longer "
			    "than the daemon's record limit of %zu bytes "
			    "(max_record); %s\n", name, delim == '\n' ? "line" :
			    "record", lineno + 1, limit, before);
			rc = EXIT_PROBLEMS;
		} else {
			fprintf(stderr, "walctl append: cannot read %s %ju of "
			    "%s: %s; %s\n", delim == '\n' ? "line" : "record",
			    lineno + 1, name, strerror(errno), before);
			rc = EXIT_USAGE;
		}
		over = 1;
	}
	if (rc == 0 && !over) {
		if (done == 0)
			printf("0 records\n");
		else
			printf("%" PRIu64 " records, seq %" PRId64 " .. %"
			    PRId64 " %s\n", done, first, last, ack ==
			    WALMMAP_ACK_DURABLE ? "durable" : "written");
	}
done:
	for (i = 0; i < APPEND_BATCH; i++)
		free(buf[i]);
	walmmap_producer_close(p);
	walmmap_close(w);
	return (rc);
}

static int
cmd_append(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "ack", required_argument, NULL, 'a' },
		{ "null", no_argument, NULL, '0' },
		{ "producer", required_argument, NULL, 'P' },
		{ "no-reconnect", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	uint64_t producer = 0;
	int64_t pv;
	int reconnect = 1, legacy = 0;
	enum walmmap_ack ack = WALMMAP_ACK_WRITTEN;
	struct walmmap *w;
	struct walmmap_progress p;
	const char *name = "standard input";
	char *line = NULL, done[256];
	uintmax_t lineno = 0;
	size_t cap = 0, limit;
	ssize_t n;
	int64_t first = -1;
	int ch, delim = '\n', rc;
	FILE *in = stdin;

	while ((ch = getopt_long(argc, argv, "a:0h", lo, NULL)) != -1) {
		switch (ch) {
		case 'a':
			if (parse_ack(optarg, &ack) != 0)
				return (EXIT_USAGE);
			break;
		case '0':
			delim = '\0';
			break;
		case 'P':
			if (parse_seq(optarg, &pv) != 0)
				return (EXIT_USAGE);
			producer = (uint64_t)pv;
			break;
		case 'R':
			reconnect = 0;
			break;
		case 'h':
			cmd_usage(EXIT_OK);
		default:
			cmd_usage(EXIT_USAGE);
		}
	}
	if (argc - optind > 1)
		cmd_usage(EXIT_USAGE);
	/* Without an ack nothing can be resent: the plain connection. */
	legacy = ack == WALMMAP_ACK_NONE;
	if (argc - optind == 1 && strcmp(argv[optind], "-") != 0) {
		name = argv[optind];
		if ((in = fopen(name, "re")) == NULL) {
			fprintf(stderr, "walctl append: cannot read %s: %s\n",
			    name, strerror(errno));
			return (EXIT_USAGE);
		}
	}
	if (!legacy) {
		rc = append_producer(in, name, delim, ack, producer,
		    reconnect);
		goto out;
	}
	if ((rc = connect_or_fail(&w, ack)) != 0)
		goto out;
	limit = walmmap_max_record(w);
	while ((n = read_record(in, delim, &line, &cap, limit)) >= 0) {
		lineno++;
		/* The first record's seq is waited for; the rest stream. */
		rc = walmmap_append(w, line, (size_t)n, WALMMAP_ACK_DEFAULT,
		    first < 0 ? &first : NULL);
		if (rc != 0)
			break;
	}
	if (rc == 0 && n == READ_LONG) {
		appended_before(w, ack, first, done, sizeof done);
		fprintf(stderr, "walctl append: %s: %s %ju is longer than the "
		    "daemon's record limit of %zu bytes (max_record); %s\n",
		    name, delim == '\n' ? "line" : "record", lineno + 1, limit,
		    done);
		rc = EXIT_PROBLEMS;
		goto close;
	}
	if (rc == 0 && n == READ_ERROR) {
		int e = errno;

		appended_before(w, ack, first, done, sizeof done);
		fprintf(stderr, "walctl append: cannot read %s %ju of %s: %s; "
		    "%s\n", delim == '\n' ? "line" : "record", lineno + 1, name,
		    strerror(e), done);
		rc = EXIT_USAGE;
		goto close;
	}
	if (rc == 0 && ack != WALMMAP_ACK_NONE)
		rc = walmmap_wait(w, ack, -1);
	walmmap_progress(w, &p);
	if (rc != 0) {
		char msg[1024];

		snprintf(msg, sizeof msg, "%s (reading stopped at %s %ju of "
		    "%s; %" PRIu64 " record%s acknowledged)", walmmap_errmsg(w),
		    delim == '\n' ? "line" : "record", lineno, name, p.acked,
		    p.acked == 1 ? "" : "s");
		rc = fail_request(msg);
	} else if (p.sent == 0)
		printf("0 records\n");
	else if (ack == WALMMAP_ACK_NONE)
		printf("%" PRIu64 " records sent\n", p.sent);
	else
		printf("%" PRIu64 " records, seq %" PRId64 " .. %" PRId64 " %s\n",
		    p.acked, first, p.last_seq, ack == WALMMAP_ACK_DURABLE ?
		    "durable" : "written");
close:
	walmmap_close(w);
out:
	free(line);
	if (in != stdin)
		fclose(in);
	return (rc);
}

static int
cmd_sync(int argc, char **argv)
{
	struct walmmap *w;
	int64_t durable;
	int rc;

	simple_opts(argc, argv, NULL);
	if ((rc = connect_or_fail(&w, WALMMAP_ACK_NONE)) != 0)
		return (rc);
	if ((rc = walmmap_sync(w, &durable)) != 0)
		rc = fail_request(walmmap_errmsg(w));
	else if (durable >= 0)
		printf("durable up to seq %" PRId64 "\n", durable);
	else
		printf("nothing to sync\n");
	walmmap_close(w);
	return (rc);
}

static int
cmd_rotate(int argc, char **argv)
{
	struct walmmap *w;
	int rc;

	simple_opts(argc, argv, NULL);
	if ((rc = connect_or_fail(&w, WALMMAP_ACK_NONE)) != 0)
		return (rc);
	if ((rc = walmmap_rotate(w)) != 0)
		rc = fail_request(walmmap_errmsg(w));
	walmmap_close(w);
	return (rc);
}

static int
cmd_restart(int argc, char **argv)
{
	struct walmmap *w;
	int rc;

	simple_opts(argc, argv, NULL);
	if ((rc = connect_or_fail(&w, WALMMAP_ACK_NONE)) != 0)
		return (rc);
	if ((rc = walmmap_restart(w)) != 0)
		rc = fail_request(walmmap_errmsg(w));
	else
		printf("walmmapd restarted; its connections were handed "
		    "over\n");
	walmmap_close(w);
	return (rc);
}

/* --json / --raw / --from / --to / -n / -f shared by tail and dump. */
struct read_opts {
	enum out_format	 fmt;
	int64_t		 from;
	int64_t		 to;
	int64_t		 last;		/* -n */
	int		 follow;
	uint64_t	 producer;	/* dump --producer, 0: all */
	struct walmmap_prov *prov;	/* dump: the producer table, or NULL */
};

static int
read_opts(int argc, char **argv, struct read_opts *o, int tail)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "raw", no_argument, NULL, 'r' },
		{ "from", required_argument, NULL, 'F' },
		{ "to", required_argument, NULL, 'T' },
		{ "lines", required_argument, NULL, 'n' },
		{ "follow", no_argument, NULL, 'f' },
		{ "producer", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int64_t v;
	int ch;

	o->fmt = OUT_TEXT;
	o->producer = 0;
	o->prov = NULL;
	o->from = o->to = -1;
	o->last = tail ? 10 : -1;
	o->follow = 0;
	while ((ch = getopt_long(argc, argv, tail ? "n:fh" : "h", lo,
	    NULL)) != -1) {
		switch (ch) {
		case 'j':
			o->fmt = OUT_JSON;
			break;
		case 'r':
			o->fmt = OUT_RAW;
			break;
		case 'F':
			if (parse_seq(optarg, &o->from) != 0)
				return (-1);
			o->last = -1;
			break;
		case 'T':
			if (tail || parse_seq(optarg, &o->to) != 0)
				cmd_usage(EXIT_USAGE);
			break;
		case 'n':
			if (parse_seq(optarg, &o->last) != 0)
				return (-1);
			break;
		case 'f':
			o->follow = 1;
			break;
		case 'P':
			if (tail || parse_seq(optarg, &v) != 0 || v == 0)
				cmd_usage(EXIT_USAGE);
			o->producer = (uint64_t)v;
			break;
		case 'h':
			cmd_usage(EXIT_OK);
		default:
			cmd_usage(EXIT_USAGE);
		}
	}
	return (0);
}

/*
 * The next record while following: wait for the reader and for standard
 * output at once, so that walctl stops as soon as whoever reads its
 * output has gone (a pipe's reader closed it), even when no record comes.
 */
static int
follow_next(struct walmmap_reader *r, struct walmmap_record *rec)
{
	struct pollfd pfd[2];
	int rc;

	for (;;) {
		/* A file reader has no descriptor: it polls the files. */
		rc = walmmap_reader_next(r, rec, walmmap_reader_fd(r) == -1 ?
		    250 : 0);
		if (rc != 0)
			return (rc);
		pfd[0].fd = walmmap_reader_fd(r);
		pfd[0].events = POLLIN;
		pfd[1].fd = STDOUT_FILENO;
		pfd[1].events = 0;	/* only POLLERR and POLLHUP */
		pfd[0].revents = pfd[1].revents = 0;
		if (poll(pfd, 2, pfd[0].fd == -1 ? 0 : -1) == -1 &&
		    errno != EINTR)
			return (0);
		if (pfd[1].revents & (POLLERR | POLLHUP)) {
			/* As a write there would: SIGPIPE is SIG_DFL. */
			raise(SIGPIPE);
			fprintf(stderr, "walctl %s: standard output was "
			    "closed\n", current->name);
			exit(EXIT_USAGE);
		}
	}
}

/* Records until the reader ends; 0 ok, else an exit code. */
static int
print_all(struct walmmap_reader *r, const struct read_opts *o, int timeout)
{
	struct walmmap_record rec;
	struct walmmap_provenance pv;
	int rc, have;

	while ((rc = o->follow ? follow_next(r, &rec) :
	    walmmap_reader_next(r, &rec, timeout)) == 1) {
		if (o->to >= 0 && rec.seq > o->to)
			break;
		have = o->prov != NULL && walmmap_prov_lookup(o->prov, rec.seq,
		    &pv);
		if (o->producer != 0 && (!have || pv.producer_id !=
		    o->producer))
			continue;
		print_record_prov(stdout, o->fmt, &rec, have ? &pv : NULL);
		if (o->follow)
			fflush(stdout);
		if (ferror(stdout))
			return (out_failed());
	}
	if (rc < 0) {
		fflush(stdout);
		return (fail(rc, walmmap_reader_errmsg(r)));
	}
	/* A subscription that stopped short of its end: the daemon stalled. */
	if (rc == 0 && timeout > 0 && walmmap_reader_fd(r) != -1 &&
	    !walmmap_reader_ended(r)) {
		fflush(stdout);
		fprintf(stderr, "walctl %s: timed out: walmmapd sent nothing "
		    "for %d ms and did not end the subscription\n",
		    current->name, timeout);
		return (EXIT_PROBLEMS);
	}
	return (EXIT_OK);
}

static int
cmd_tail(int argc, char **argv)
{
	struct walmmap_reader *r;
	struct walmmap_status st;
	struct read_opts o;
	int64_t from;
	int rc;

	if (read_opts(argc, argv, &o, 1) != 0)
		return (EXIT_USAGE);
	if (optind != argc)
		cmd_usage(EXIT_USAGE);
	from = o.from;
	if (from < 0) {
		/* The last N: ask where the log ends now. */
		if ((rc = query_status(&st, NULL)) != 0)
			return (rc);
		from = st.next_seq - o.last;
		if (st.first_seq >= 0 && from < st.first_seq)
			from = st.first_seq;
		if (from < 0)
			from = 0;
	}
	if ((rc = walmmap_subscribe(&r, socket_path, from, -1,
	    o.follow ? WALMMAP_FOLLOW : 0)) != 0) {
		rc = fail_connect(walmmap_reader_errmsg(r));
		walmmap_reader_close(r);
		return (rc);
	}
	/* Following waits for records without a limit; the rest does not. */
	rc = print_all(r, &o, o.follow || timeout_ms == -1 ? -1 :
	    timeout_ms == -2 ? WALMMAP_TIMEOUT_MS : timeout_ms);
	walmmap_reader_close(r);
	return (rc);
}

static int
cmd_dump(int argc, char **argv)
{
	struct walmmap_reader *r;
	struct read_opts o;
	int rc;

	/* Allow the path before or after the options. */
	if (read_opts(argc, argv, &o, 0) != 0)
		return (EXIT_USAGE);
	if (argc - optind != 1)
		cmd_usage(EXIT_USAGE);
	if ((rc = walmmap_reader_open(&r, argv[optind])) != 0) {
		rc = fail(rc, walmmap_reader_errmsg(r));
		walmmap_reader_close(r);
		return (rc);
	}
	if (o.fmt == OUT_JSON || o.producer != 0) {
		char why[600];

		/* Provenance: from the table beside the segments. */
		rc = walmmap_prov_open(&o.prov, argv[optind], why, sizeof why);
		if (rc != 0 && (o.producer != 0 || rc != -WALMMAP_ENOTSUP)) {
			fprintf(stderr, "walctl dump: no provenance: %s\n",
			    why);
			walmmap_reader_close(r);
			return (EXIT_PROBLEMS);
		}
	}
	if (o.from >= 0 && (rc = walmmap_reader_seek(r, o.from)) != 0) {
		rc = fail(rc, walmmap_reader_errmsg(r));
		walmmap_reader_close(r);
		return (rc);
	}
	rc = print_all(r, &o, 0);
	walmmap_reader_close(r);
	walmmap_prov_close(o.prov);
	return (rc);
}

struct verify_state {
	int	quiet;
	int	tty;
	int	shown;		/* a progress line is on screen */
};

static void
verify_cb(void *arg, const struct walmmap_problem *p, uint64_t done,
    uint64_t total)
{
	struct verify_state *vs = arg;

	if (p == NULL) {
		if (vs->tty && total > 0) {
			fprintf(stderr, "\rverifying: %3u%% of %" PRIu64
			    " MiB", (unsigned)(done * 100 / total),
			    total >> 20);
			vs->shown = 1;
		}
		return;
	}
	if (vs->shown) {
		fputs("\r\033[K", stderr);
		vs->shown = 0;
	}
	if (p->seq >= 0)
		printf("%s: offset %" PRIu64 ": seq %" PRId64 ": %s\n",
		    p->file, p->offset, p->seq, p->what);
	else
		printf("%s: offset %" PRIu64 ": %s\n", p->file, p->offset,
		    p->what);
}

static int
cmd_verify(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct walmmap_verify_result res;
	struct verify_state vs;
	char err[512];
	int ch, rc;

	memset(&vs, 0, sizeof vs);
	while ((ch = getopt_long(argc, argv, "qh", lo, NULL)) != -1) {
		switch (ch) {
		case 'q':
			vs.quiet = 1;
			break;
		case 'h':
			cmd_usage(EXIT_OK);
		default:
			cmd_usage(EXIT_USAGE);
		}
	}
	if (argc - optind != 1)
		cmd_usage(EXIT_USAGE);
	vs.tty = isatty(STDERR_FILENO) && !vs.quiet;
	rc = walmmap_verify(argv[optind], verify_cb, &vs, &res, err,
	    sizeof err);
	if (vs.shown)
		fputs("\r\033[K", stderr);
	if (rc != 0) {
		fprintf(stderr, "walctl verify: %s\n", err);
		return (EXIT_USAGE);
	}
	if (!vs.quiet) {
		printf("%" PRIu64 " files, %" PRIu64 " records", res.files,
		    res.records);
		if (res.records > 0)
			printf(" (seq %" PRId64 " .. %" PRId64 ")",
			    res.first_seq, res.last_seq);
		printf(", %" PRIu64 " problem%s\n", res.problems,
		    res.problems == 1 ? "" : "s");
	}
	return (res.problems > 0 ? EXIT_PROBLEMS : EXIT_OK);
}

/* -t SECONDS (fractions allowed; 0: no limit) into timeout_ms. */
static void
parse_timeout(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= 0) ||
	    v > INT_MAX / 1000) {
		fprintf(stderr, "walctl: --timeout %s: expected seconds, from 0 "
		    "(no limit) to %d\n", s, INT_MAX / 1000);
		exit(EXIT_USAGE);
	}
	timeout_ms = v == 0 ? -1 : (int)(v * 1000 + 0.5);
	if (timeout_ms == 0)
		timeout_ms = 1;
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "namespace", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	sigset_t set;
	size_t i;
	int ch, rc, ns_given = 0;

	/*
	 * Writing to a pipe whose reader has gone ends walctl, as it ends
	 * cat(1), whatever the parent left: the library's own sends do not
	 * raise SIGPIPE (MSG_NOSIGNAL).
	 */
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	while ((ch = getopt_long(argc, argv, "+s:n:t:hV", lo, NULL)) != -1) {
		switch (ch) {
		case 's':
			socket_path = optarg;
			break;
		case 'n':
			/*
			 * The library finds the namespace's socket (and
			 * checks the name); -n wins over $WALMMAP_SOCKET.
			 */
			if (setenv("WALMMAP_NAMESPACE", optarg, 1) == -1 ||
			    unsetenv("WALMMAP_SOCKET") == -1) {
				fprintf(stderr, "walctl: -n %s: %s\n", optarg,
				    strerror(errno));
				return (EXIT_USAGE);
			}
			ns_given = 1;
			break;
		case 't':
			parse_timeout(optarg);
			break;
		case 'h':
			usage(EXIT_OK);
		case 'V':
			printf("walctl %s\n", PACKAGE_VERSION);
			return (EXIT_OK);
		default:
			usage(EXIT_USAGE);
		}
	}
	if (optind == argc)
		usage(EXIT_USAGE);
	if (ns_given && socket_path != NULL) {
		fprintf(stderr, "walctl: -s and -n name two sockets; give one\n");
		usage(EXIT_USAGE);
	}
	for (i = 0; i < NCMDS; i++)
		if (strcmp(argv[optind], cmds[i].name) == 0)
			break;
	if (i == NCMDS) {
		fprintf(stderr, "walctl: unknown command \"%s\"\n",
		    argv[optind]);
		usage(EXIT_USAGE);
	}
	current = &cmds[i];
	argc -= optind;
	argv += optind;
	optind = 0;	/* glibc: 0 restarts getopt, permuting again */
	rc = current->fn(argc, argv);
	/* What is still buffered, and anything that failed before. */
	if (out_failed() != 0 && rc == EXIT_OK)
		rc = EXIT_USAGE;
	return (rc);
}
