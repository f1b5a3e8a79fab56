/*
 * walmmapd tests - metrics: walctl stats --prometheus, METRICS_REPLY
 * frames and metrics_listen, against a real walmmapd. The text is checked
 * with prometheus_client's own parser (tests/prom_parse.py, Debian's
 * python3-prometheus-client), which also turns it into the samples the
 * tests compare before and after each action.
 */
#include "config.h"

#include <sys/resource.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_proto.h"
#include "wal_shm.h"

static char		*base;
static struct ts_daemon	 d;

static void
setup(void)
{
	base = ts_mkdtemp("metrics");
	ts_daemon_init(&d, base);
}

static void
teardown(void)
{
	ts_daemon_kill(&d);
	if (d.notify_fd != -1)
		close(d.notify_fd);
	ts_rmtree(base);
}

/* Start with small segments and the extra arguments; fail if it cannot. */
static void
start(char *const *extra)
{
	char *args[32];
	size_t n = 0, i;
	int rc;

	args[n++] = "--segment-size";
	args[n++] = "256K";
	args[n++] = "-o";
	args[n++] = "prefault=no";
	for (i = 0; extra != NULL && extra[i] != NULL && n < 31; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	if ((rc = ts_daemon_startv(&d, args)) != 0) {
		char *log = ts_daemon_log(&d);

		ck_abort_msg("walmmapd did not start (%d): %s", rc, log);
	}
}

/* Debian's python3, which has prometheus_client ($TS_PYTHON overrides). */
static const char *
python(void)
{
	const char *p = getenv("TS_PYTHON");

	return (p != NULL && *p != '\0' ? p : "/usr/bin/python3");
}

/*
 * The text (or what url serves) through tests/prom_parse.py: its sample
 * lines "NAME LABELS VALUE". Fails the test when it does not parse.
 */
static char *
prom_parse(const char *text, const char *url)
{
	const char *script = TS_SRCDIR "/tests/prom_parse.py";
	char *out = NULL;
	int rc;

	if (url != NULL)
		rc = ts_run_cmd_within(60, NULL, 0, &out, python(), script, url,
		    (char *)NULL);
	else
		rc = ts_run_cmd_within(60, text, strlen(text), &out, python(),
		    script, (char *)NULL);
	ck_assert_msg(rc == 0, "prom_parse.py failed (%d): %s\ntext:\n%s", rc,
	    out != NULL ? out : "", text != NULL ? text : url);
	return (out);
}

/* walctl stats --prometheus, parsed. */
static char *
prom_walctl(void)
{
	char *text = NULL, *parsed;
	int rc;

	rc = ts_run_prog_within(60, "client/walctl", NULL, 0, &text, "-s",
	    d.sock, "stats", "--prometheus", (char *)NULL);
	ck_assert_msg(rc == 0, "walctl stats --prometheus: %d: %s", rc, text);
	parsed = prom_parse(text, NULL);
	free(text);
	return (parsed);
}

/* A sample's value; fails the test when it is missing. */
static double
prom_value(const char *parsed, const char *name, const char *labels)
{
	char key[256];
	const char *p = parsed;
	size_t klen;

	klen = (size_t)snprintf(key, sizeof key, "%s %s ", name,
	    labels != NULL ? labels : "-");
	while (p != NULL && *p != '\0') {
		if (strncmp(p, key, klen) == 0)
			return (strtod(p + klen, NULL));
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	}
	ck_abort_msg("no sample %s{%s} in:\n%s", name, labels != NULL ?
	    labels : "", parsed);
	return (0);
}

/*
 * walctl stats --prometheus, parsed, once the sample has this value (what
 * was sent without an acknowledgement, or through a ring, is counted when
 * the daemon reads it). Fails the test after 30 s (a hang detector).
 */
static char *
prom_wait(const char *name, const char *labels, double want)
{
	char *p;
	int i;

	for (i = 0; i < 300; i++) {
		p = prom_walctl();
		if (prom_value(p, name, labels) == want)
			return (p);
		free(p);
		usleep(100000);
	}
	ck_abort_msg("%s{%s} did not reach %g", name, labels != NULL ?
	    labels : "", want);
	return (NULL);
}

/* Does the parsed output hold a sample of this name (any labels)? */
static int
prom_has(const char *parsed, const char *name)
{
	char key[256];
	const char *p = parsed;
	size_t klen;

	klen = (size_t)snprintf(key, sizeof key, "%s ", name);
	while (p != NULL && *p != '\0') {
		if (strncmp(p, key, klen) == 0)
			return (1);
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	}
	return (0);
}

/*
 * METRICS on a raw connection (after HELLO): the text the
 * METRICS_REPLY frames carry, joined; *frames their number. Asserts each
 * frame is at most frame_max bytes, answers id, and that every frame but
 * the last has WAL_METRICS_F_MORE and ends at a line end.
 */
static char *
raw_metrics(int s, uint64_t id, size_t frame_max, size_t *frames)
{
	static uint8_t buf[WAL_PROTO_MAX_FRAME];
	struct wal_msg h;
	char *text = NULL;
	size_t len = 0, n;

	*frames = 0;
	ts_raw_frame(s, WAL_MSG_METRICS, id);
	for (;;) {
		n = ts_raw_recv_until(s, WAL_MSG_METRICS_REPLY, buf, sizeof buf,
		    30000);
		memcpy(&h, buf, sizeof h);
		ck_assert_uint_eq(h.id, id);
		ck_assert_uint_le(n, frame_max);
		ck_assert_uint_ge(n, sizeof h);
		text = realloc(text, len + (n - sizeof h) + 1);
		ck_assert_ptr_nonnull(text);
		memcpy(text + len, buf + sizeof h, n - sizeof h);
		len += n - sizeof h;
		text[len] = '\0';
		(*frames)++;
		ck_assert_uint_le(*frames, 10000);
		if (!(h.flags & WAL_METRICS_F_MORE))
			break;
		ck_assert_msg(n > sizeof h && buf[n - 1] == '\n', "a frame "
		    "with more to follow does not end at a line end");
	}
	return (text);
}

/* A raw HTTP/1.0 request to 127.0.0.1:port: the whole answer. */
static char *
http_raw(unsigned port, const char *request)
{
	struct sockaddr_in sin;
	char *out;
	size_t len = 0, cap = 65536;
	ssize_t n;
	int s;

	ck_assert_int_ne(s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0),
	    -1);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_msg(connect(s, (struct sockaddr *)&sin, sizeof sin) == 0,
	    "cannot connect to 127.0.0.1:%u: %s", port, strerror(errno));
	ck_assert_int_eq(send(s, request, strlen(request), MSG_NOSIGNAL),
	    (ssize_t)strlen(request));
	ck_assert_ptr_nonnull(out = malloc(cap));
	/* evhttp closes an HTTP/1.0 connection after its answer. */
	while (len < cap - 1 && (n = ts_raw_recv(s, out + len, cap - 1 - len,
	    30000)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(s);
	return (out);
}

/* The same text over the socket and over HTTP, both parse. */
START_TEST(test_walctl_and_http_parse)
{
	char where[64], url[128], portarg[96], *args[4], *a, *b, *resp;
	unsigned port = ts_free_tcp_port();
	int rc;

	snprintf(where, sizeof where, "127.0.0.1:%u", port);
	snprintf(portarg, sizeof portarg, "metrics_listen=%s", where);
	args[0] = "-o";
	args[1] = portarg;
	args[2] = NULL;
	start(args);
	ck_assert_int_eq(ts_pid_listens_tcp(d.pid), 1);
	rc = ts_run_prog("client/walctl", "one\ntwo\n", 8, NULL, "-s", d.sock,
	    "append", (char *)NULL);
	ck_assert_int_eq(rc, 0);

	a = prom_walctl();
	snprintf(url, sizeof url, "http://%s/metrics", where);
	b = prom_parse(NULL, url);
	ck_assert_double_eq(prom_value(a, "walmmapd_records_total", NULL), 2);
	ck_assert_double_eq(prom_value(b, "walmmapd_records_total", NULL), 2);
	ck_assert_double_eq(prom_value(b, "walmmapd_record_bytes_total", NULL),
	    6);
	ck_assert_double_eq(prom_value(b,
	    "walmmapd_metrics_http_requests_total", NULL), 1);
	ck_assert_double_eq(prom_value(a,
	    "walmmapd_metrics_http_requests_total", NULL), 0);
	/* Both carry the families the manual lists. */
	ck_assert(prom_has(a, "walmmapd_sync_duration_seconds_bucket"));
	ck_assert(prom_has(b, "walmmapd_sync_duration_seconds_bucket"));
	ck_assert(prom_has(b, "walmmapd_standby_segments"));
	ck_assert(prom_has(b, "walmmapd_uptime_seconds"));
	free(a);
	free(b);
	/* One format at a time. */
	rc = ts_run_prog("client/walctl", NULL, 0, NULL, "-s", d.sock, "stats",
	    "--json", "--prometheus", (char *)NULL);
	ck_assert_int_eq(rc, 2);

	/* Only GET and HEAD of /metrics. */
	resp = http_raw(port, "GET /other HTTP/1.0\r\n\r\n");
	ck_assert_msg(strncmp(resp, "HTTP/1.0 404", 12) == 0 ||
	    strncmp(resp, "HTTP/1.1 404", 12) == 0, "%s", resp);
	free(resp);
	resp = http_raw(port, "POST /metrics HTTP/1.0\r\nContent-Length: 0"
	    "\r\n\r\n");
	ck_assert_msg((strstr(resp, " 405 ") != NULL || strstr(resp, " 501 ") !=
	    NULL) && strstr(resp, "# HELP") == NULL, "%s", resp);
	free(resp);
	resp = http_raw(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
	ck_assert_msg(strstr(resp, " 200 ") != NULL && strstr(resp,
	    "# HELP") == NULL, "%s", resp);
	free(resp);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * HTTP peers that open connections and send half a request, trickling a
 * byte now and then, cannot take the descriptors the log needs: local
 * clients are still served and /metrics answers once they go.
 */
START_TEST(test_http_many_connections)
{
	enum { NPEERS = 300 };
	static int peers[NPEERS];
	struct sockaddr_in sin;
	struct rlimit rl, saved;
	char where[64], url[128], opt[96], *args[4], *out = NULL, *p;
	unsigned port = ts_free_tcp_port();
	int i, round, rc;

	snprintf(where, sizeof where, "127.0.0.1:%u", port);
	snprintf(opt, sizeof opt, "metrics_listen=%s", where);
	args[0] = "-o";
	args[1] = opt;
	args[2] = NULL;
	/* The daemon gets 256 descriptors; we keep ours. */
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
	ck_assert_uint_ge(saved.rlim_max, NPEERS + 64);
	rl = saved;
	rl.rlim_cur = 256;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	start(args);
	rl.rlim_cur = saved.rlim_max;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (i = 0; i < NPEERS; i++) {
		ck_assert_int_ne(peers[i] = socket(AF_INET, SOCK_STREAM |
		    SOCK_CLOEXEC | SOCK_NONBLOCK, 0), -1);
		/* Beyond the backlog a connect may stay in progress. */
		if (connect(peers[i], (struct sockaddr *)&sin, sizeof sin) ==
		    -1)
			ck_assert_msg(errno == EINPROGRESS || errno == EAGAIN,
			    "connect %d: %s", i, strerror(errno));
		(void)send(peers[i], "GET /metrics HTTP/1.1\r\n", 23,
		    MSG_NOSIGNAL);
	}
	/*
	 * A byte each now and then (connects beyond the backlog are retried
	 * by the kernel) until the daemon holds all its descriptors, or 8 s.
	 */
	for (round = 0; round < 32 && ts_pid_nfds(d.pid) < 250; round++) {
		usleep(250000);
		for (i = 0; i < NPEERS; i++)
			(void)send(peers[i], "X", 1, MSG_NOSIGNAL);
	}
	/* Local clients are still served: append, rotate, status. */
	for (round = 0; round < 3; round++) {
		rc = ts_run_prog_within(60, "client/walctl", "r\n", 2, &out,
		    "-s", d.sock, "append", (char *)NULL);
		ck_assert_msg(rc == 0, "append with %d HTTP peers: %d: %s",
		    NPEERS, rc, out);
		free(out);
		rc = ts_run_prog_within(60, "client/walctl", NULL, 0, &out,
		    "-s", d.sock, "rotate", (char *)NULL);
		ck_assert_msg(rc == 0, "rotate with %d HTTP peers: %d: %s",
		    NPEERS, rc, out);
		free(out);
	}
	p = prom_walctl();
	ck_assert_double_eq(prom_value(p, "walmmapd_records_total", NULL), 3);
	free(p);
	for (i = 0; i < NPEERS; i++)
		close(peers[i]);
	/* Once they are gone, /metrics answers again (within 30 s). */
	snprintf(url, sizeof url, "http://%s/metrics", where);
	for (round = 0; round < 300; round++) {
		rc = ts_run_cmd_within(60, NULL, 0, &out, python(),
		    TS_SRCDIR "/tests/prom_parse.py", url, (char *)NULL);
		free(out);
		if (rc == 0)
			break;
		usleep(100000);
	}
	ck_assert_msg(rc == 0, "/metrics does not answer after the peers "
	    "left");
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* Does the daemon's log so far hold text? */
static int
log_has(const char *text)
{
	char *log = ts_daemon_log(&d);
	int found = strstr(log, text) != NULL;

	free(log);
	return (found);
}

/*
 * Peers that fill every metrics_listen connection and keep trickling a
 * byte each do not lock a scraper out for ever: connections are dropped
 * after their lifetime (30 s) and a scrape gets its answer (bounded wait).
 */
START_TEST(test_http_trickling_peers_expire)
{
	enum { NPEERS = 72 };
	static int peers[NPEERS];
	struct sockaddr_in sin;
	char where[64], opt[96], *args[4], buf[64];
	const char *req = "GET /metrics HTTP/1.0\r\n\r\n";
	unsigned port = ts_free_tcp_port();
	ssize_t n;
	size_t got = 0;
	int i, round, s;

	snprintf(where, sizeof where, "127.0.0.1:%u", port);
	snprintf(opt, sizeof opt, "metrics_listen=%s", where);
	args[0] = "-o";
	args[1] = opt;
	args[2] = NULL;
	start(args);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (i = 0; i < NPEERS; i++) {
		ck_assert_int_ne(peers[i] = socket(AF_INET, SOCK_STREAM |
		    SOCK_CLOEXEC | SOCK_NONBLOCK, 0), -1);
		if (connect(peers[i], (struct sockaddr *)&sin, sizeof sin) ==
		    -1)
			ck_assert_msg(errno == EINPROGRESS || errno == EAGAIN,
			    "connect %d: %s", i, strerror(errno));
		(void)send(peers[i], "GET /metrics HTTP/1.1\r\n", 23,
		    MSG_NOSIGNAL);
	}
	/* Until the daemon is at its cap (64) with peers trickling, or 8 s. */
	for (round = 0; round < 32 && !log_has("HTTP "
	    "connections open"); round++) {
		usleep(250000);
		for (i = 0; i < NPEERS; i++)
			(void)send(peers[i], "X", 1, MSG_NOSIGNAL);
	}
	ck_assert_msg(log_has("HTTP connections open"),
	    "the daemon did not reach its cap of HTTP connections");
	/* A scrape, while the peers keep trickling: answered within 120 s. */
	ck_assert_int_ne(s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0), -1);
	if (connect(s, (struct sockaddr *)&sin, sizeof sin) == -1)
		ck_assert_int_eq(errno, EINPROGRESS);
	for (round = 0; round < 480 && got < 12; round++) {
		usleep(250000);
		for (i = 0; i < NPEERS; i++)
			(void)send(peers[i], "X", 1, MSG_NOSIGNAL);
		if (req != NULL && send(s, req, strlen(req), MSG_NOSIGNAL) ==
		    (ssize_t)strlen(req))
			req = NULL;
		if (req == NULL && (n = recv(s, buf + got, sizeof buf - 1 -
		    got, MSG_DONTWAIT)) > 0)
			got += (size_t)n;
	}
	buf[got] = '\0';
	ck_assert_msg(got >= 12 && strstr(buf, " 200 ") != NULL, "no answer "
	    "to a scrape in 120 s while %d peers trickle: \"%s\"", NPEERS,
	    buf);
	close(s);
	for (i = 0; i < NPEERS; i++)
		close(peers[i]);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* Each counter moves when what it counts happens. */
START_TEST(test_counters_move)
{
	char *args[] = { "-o", "max_record=1K", "-o", "sync_interval=0", NULL };
	char big[2048], *p0, *p1, *p2, *p3, *p4, *p5;
	struct ts_ring r;
	int rc, s;

	start(args);
	p0 = prom_walctl();
	ck_assert_double_eq(prom_value(p0, "walmmapd_records_total", NULL), 0);
	ck_assert_double_eq(prom_value(p0, "walmmapd_written_seq", NULL), -1);
	ck_assert_double_eq(prom_value(p0, "walmmapd_durable_seq", NULL), -1);
	ck_assert_double_eq(prom_value(p0, "walmmapd_next_seq", NULL), 0);
	ck_assert_double_eq(prom_value(p0,
	    "walmmapd_sync_duration_seconds_count", NULL), 0);

	/* Written: records, bytes, the written level, written_seq. */
	rc = ts_run_prog("client/walctl", "a\nbb\nccc\n", 9, NULL, "-s",
	    d.sock, "append", "--ack", "written", (char *)NULL);
	ck_assert_int_eq(rc, 0);
	p1 = prom_walctl();
	ck_assert_double_eq(prom_value(p1, "walmmapd_records_total", NULL), 3);
	ck_assert_double_eq(prom_value(p1, "walmmapd_record_bytes_total",
	    NULL), 6);
	ck_assert_double_eq(prom_value(p1, "walmmapd_append_records_total",
	    "ack=written"), 3);
	ck_assert_double_eq(prom_value(p1, "walmmapd_append_records_total",
	    "ack=durable"), 0);
	ck_assert_double_eq(prom_value(p1, "walmmapd_written_seq", NULL), 2);
	ck_assert_double_eq(prom_value(p1, "walmmapd_next_seq", NULL), 3);
	ck_assert_double_eq(prom_value(p1, "walmmapd_durable_seq", NULL), -1);
	ck_assert_double_eq(prom_value(p1, "walmmapd_syncs_total", NULL), 0);

	/* Durable and unacknowledged: their levels, a sync, its latency. */
	rc = ts_run_prog("client/walctl", "d1\nd2\n", 6, NULL, "-s", d.sock,
	    "append", "--ack", "durable", (char *)NULL);
	ck_assert_int_eq(rc, 0);
	/* (walctl asks for the first seq, so it needs an ack: raw.) */
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	ts_raw_append(s, 3, "n", 1, WAL_ACK_NONE);
	ts_raw_frame(s, WAL_MSG_PING, 4);
	(void)ts_raw_recv_until(s, WAL_MSG_OK, big, sizeof big, 30000);
	close(s);
	p2 = prom_walctl();
	ck_assert_double_eq(prom_value(p2, "walmmapd_append_records_total",
	    "ack=durable"), 2);
	ck_assert_double_eq(prom_value(p2, "walmmapd_append_records_total",
	    "ack=none"), 1);
	ck_assert_double_eq(prom_value(p2, "walmmapd_records_total", NULL), 6);
	ck_assert_double_ge(prom_value(p2, "walmmapd_durable_seq", NULL), 4);
	ck_assert_double_ge(prom_value(p2, "walmmapd_syncs_total", NULL), 1);
	ck_assert_double_eq(prom_value(p2,
	    "walmmapd_sync_duration_seconds_count", NULL),
	    prom_value(p2, "walmmapd_syncs_total", NULL));
	ck_assert_double_gt(prom_value(p2, "walmmapd_sync_duration_seconds_sum",
	    NULL), 0);
	ck_assert_double_eq(prom_value(p2,
	    "walmmapd_sync_duration_seconds_bucket", "le=+Inf"),
	    prom_value(p2, "walmmapd_syncs_total", NULL));

	/* A rotation; an error (a record above max_record). */
	rc = ts_run_prog("client/walctl", NULL, 0, NULL, "-s", d.sock,
	    "rotate", (char *)NULL);
	ck_assert_int_eq(rc, 0);
	memset(big, 'x', sizeof big);
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	ts_raw_append(s, 5, big, sizeof big, WAL_ACK_WRITTEN);
	ts_raw_expect_error(s, WAL_PERR_TOO_LARGE, 0, "exceeds max_record",
	    30000);
	close(s);
	p3 = prom_walctl();
	ck_assert_double_eq(prom_value(p3, "walmmapd_rotations_total", NULL),
	    prom_value(p2, "walmmapd_rotations_total", NULL) + 1);
	ck_assert_double_eq(prom_value(p3, "walmmapd_errors_sent_total",
	    "code=too_large"), 1);
	ck_assert_double_eq(prom_value(p3, "walmmapd_errors_sent_total",
	    "code=busy"), 0);
	ck_assert_double_eq(prom_value(p3, "walmmapd_records_total", NULL), 6);

	/* Records through a shared-memory ring: written and durable. */
	ts_ring_open(&d, &r, 0);
	ts_ring_put(&r, "ring-w", 6, 6, 0);
	ts_ring_put(&r, "ring-d", 6, 6, WAL_SHM_F_DURABLE);
	ts_ring_publish(&r, r.tail);
	p4 = prom_wait("walmmapd_records_total", NULL, 8);
	ck_assert_double_eq(prom_value(p4, "walmmapd_shm_rings", NULL), 1);
	ck_assert_double_eq(prom_value(p4, "walmmapd_append_records_total",
	    "ack=written"), 4);
	ck_assert_double_eq(prom_value(p4, "walmmapd_append_records_total",
	    "ack=durable"), 3);
	ts_ring_close(&r);

	/* Uptime and clients accepted only grow. */
	p5 = prom_walctl();
	ck_assert_double_gt(prom_value(p5, "walmmapd_clients_accepted_total",
	    NULL), prom_value(p0, "walmmapd_clients_accepted_total", NULL));
	ck_assert_double_ge(prom_value(p5, "walmmapd_uptime_seconds", NULL),
	    prom_value(p0, "walmmapd_uptime_seconds", NULL));
	free(p0);
	free(p1);
	free(p2);
	free(p3);
	free(p4);
	free(p5);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* A refused client: by reason, and its error by code; clients now. */
START_TEST(test_refusals_counted)
{
	char *args[] = { "-o", "max_connections_per_uid=2", NULL };
	char *text, *parsed;
	size_t frames;
	int s1, s2, s3;

	start(args);
	s1 = ts_raw_connect(&d);
	ts_raw_hello(s1);
	s2 = ts_raw_connect(&d);
	ts_raw_hello(s2);
	s3 = ts_raw_connect(&d);
	ts_raw_expect_error(s3, WAL_PERR_BUSY, 1, "max_connections_per_uid",
	    30000);
	close(s3);
	text = raw_metrics(s1, 41, WAL_PROTO_MAX_FRAME, &frames);
	parsed = prom_parse(text, NULL);
	ck_assert_double_eq(prom_value(parsed,
	    "walmmapd_connections_refused_total",
	    "reason=max_connections_per_uid"), 1);
	ck_assert_double_eq(prom_value(parsed,
	    "walmmapd_connections_refused_total", "reason=max_connections"),
	    0);
	ck_assert_double_eq(prom_value(parsed, "walmmapd_errors_sent_total",
	    "code=busy"), 1);
	ck_assert_double_eq(prom_value(parsed, "walmmapd_clients", NULL), 2);
	free(text);
	free(parsed);
	close(s1);
	close(s2);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* A reply larger than a frame: pieces at line ends, joined whole. */
START_TEST(test_reply_in_frames)
{
	char *env[] = { "WALMMAPD_METRICS_FRAME=512", NULL };
	char *text, *parsed, *whole;
	size_t frames;
	int s;

	d.env = env;
	start(NULL);
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	text = raw_metrics(s, 7, 512, &frames);
	ck_assert_uint_gt(frames, 10);
	ck_assert_uint_gt(strlen(text), 512 * 10 - 16 * 10);
	parsed = prom_parse(text, NULL);
	ck_assert_double_eq(prom_value(parsed, "walmmapd_records_total", NULL),
	    0);
	free(parsed);
	/* Requests after it are answered in order. */
	ts_raw_frame(s, WAL_MSG_PING, 8);
	free(text);
	close(s);
	/* The library joins them: walctl's text parses. */
	whole = prom_walctl();
	ck_assert(prom_has(whole, "walmmapd_metrics_http_requests_total"));
	free(whole);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* Nothing listens on TCP unless metrics_listen says so. */
START_TEST(test_http_off_by_default)
{
	char *log;

	start(NULL);
	ck_assert_int_eq(ts_pid_listens_tcp(d.pid), 0);
	log = ts_daemon_log(&d);
	ck_assert_ptr_null(strstr(log, "metrics on http"));
	free(log);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* A bad metrics_listen is a clear error; walmmapd does not start. */
START_TEST(test_bad_metrics_listen)
{
	static const struct {
		const char	*value;
		const char	*says;
	} bad[] = {
		{ "127.0.0.1", "has no port" },
		{ "localhost:9101", "numeric IPv4" },
		{ "127.0.0.1:0", "port from 1 to 65535" },
		{ "127.0.0.1:65536", "port from 1 to 65535" },
		{ "127.0.0.1:http", "port from 1 to 65535" },
		{ "::1:9101", "IPv6 goes in brackets" },
		{ "[::1:9101", "[IPv6 address]:port" },
		{ "[nonsense]:9101", "numeric IPv6" },
		{ "/run/walmmapd/metrics.sock", "has no port" },
	};
	char opt[160], conf[PATH_MAX], *out = NULL, where[64];
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	size_t i;
	FILE *f;
	int rc, s;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(opt, sizeof opt, "metrics_listen=%s", bad[i].value);
		rc = ts_run_prog_within(60, "daemon/walmmapd", NULL, 0, &out,
		    "-f", "-d", d.data, "-s", d.sock, "-o", opt, (char *)NULL);
		ck_assert_msg(rc == 1 && strstr(out, "metrics_listen") !=
		    NULL && strstr(out, bad[i].says) != NULL,
		    "%s: exit %d: %s", bad[i].value, rc, out);
		free(out);
		out = NULL;
	}
	/* In a file: the line is named. */
	snprintf(conf, sizeof conf, "%s/walmmapd.conf", base);
	ck_assert_ptr_nonnull(f = fopen(conf, "w"));
	fprintf(f, "# metrics\nmetrics_listen = 127.0.0.1:99999\n");
	fclose(f);
	rc = ts_run_prog_within(60, "daemon/walmmapd", NULL, 0, &out, "-f",
	    "-c", conf, "-d", d.data, "-s", d.sock, (char *)NULL);
	ck_assert_msg(rc == 1 && strstr(out, "walmmapd.conf:2: "
	    "metrics_listen") != NULL, "exit %d: %s", rc, out);
	free(out);
	out = NULL;

	/* A port someone else holds: says so, and does not start. */
	ck_assert_int_ne(s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0),
	    -1);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sin, sizeof sin), 0);
	ck_assert_int_eq(listen(s, 1), 0);
	ck_assert_int_eq(getsockname(s, (struct sockaddr *)&sin, &len), 0);
	snprintf(where, sizeof where, "127.0.0.1:%u", ntohs(sin.sin_port));
	snprintf(opt, sizeof opt, "metrics_listen=%s", where);
	rc = ts_run_prog_within(60, "daemon/walmmapd", NULL, 0, &out, "-f",
	    "-d", d.data, "-s", d.sock, "-o", opt, (char *)NULL);
	ck_assert_msg(rc == 1 && strstr(out, "cannot listen on") != NULL &&
	    strstr(out, "Address already in use") != NULL, "exit %d: %s", rc,
	    out);
	free(out);
	close(s);
	/* Off, explicitly. */
	{
		char *args[] = { "-o", "metrics_listen=off", NULL };

		start(args);
		ck_assert_int_eq(ts_pid_listens_tcp(d.pid), 0);
		ck_assert_int_eq(ts_daemon_stop(&d), 0);
	}
}
END_TEST

/* metrics_listen takes effect at a restart; a reload says so. */
START_TEST(test_reload_says_restart)
{
	char conf[PATH_MAX], line[96], *args[4];
	FILE *f;

	snprintf(conf, sizeof conf, "%s/walmmapd.conf", base);
	ck_assert_ptr_nonnull(f = fopen(conf, "w"));
	fprintf(f, "metrics_listen = off\n");
	fclose(f);
	args[0] = "-c";
	args[1] = conf;
	args[2] = NULL;
	start(args);
	ck_assert_int_eq(ts_pid_listens_tcp(d.pid), 0);
	snprintf(line, sizeof line, "metrics_listen = 127.0.0.1:%u\n",
	    ts_free_tcp_port());
	ck_assert_ptr_nonnull(f = fopen(conf, "w"));
	fputs(line, f);
	fclose(f);
	ts_daemon_signal(&d, SIGHUP);
	ck_assert(ts_daemon_log_wait(&d, "reload: metrics_listen changed; it "
	    "takes effect after a restart"));
	ck_assert(ts_daemon_log_wait(&d, "configuration reloaded"));
	ck_assert_int_eq(ts_pid_listens_tcp(d.pid), 0);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	/* The restart applies it. */
	start(args);
	ck_assert_int_eq(ts_pid_listens_tcp(d.pid), 1);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

static Suite *
metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_walctl_and_http_parse);
	tcase_add_test(tc, test_http_many_connections);
	tcase_add_test(tc, test_http_trickling_peers_expire);
	tcase_add_test(tc, test_counters_move);
	tcase_add_test(tc, test_refusals_counted);
	tcase_add_test(tc, test_reply_in_frames);
	tcase_add_test(tc, test_http_off_by_default);
	tcase_add_test(tc, test_bad_metrics_listen);
	tcase_add_test(tc, test_reload_says_restart);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	return (ts_run(metrics_suite()));
}
