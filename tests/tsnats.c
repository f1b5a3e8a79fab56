/*
 * walmmapd tests - nats-server, walmmap-forward and JetStream read-back
 * (see tsnats.h).
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <nats/nats.h>

#include "testsupport.h"
#include "tsdaemon.h"
#include "tsnats.h"
#include "walmmap.h"

static int64_t
tsn_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* A free TCP port on 127.0.0.1 (the kernel's choice, released). */
int
ts_free_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	int s, port;

	if ((s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		ck_abort_msg("socket: %s", strerror(errno));
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)&sin, sizeof sin) == -1 ||
	    getsockname(s, (struct sockaddr *)&sin, &len) == -1)
		ck_abort_msg("bind: %s", strerror(errno));
	port = ntohs(sin.sin_port);
	close(s);
	return (port);
}

void
ts_nats_init(struct ts_nats *n, const char *base, const char *name)
{
	memset(n, 0, sizeof *n);
	snprintf(n->name, sizeof n->name, "%s", name);
	snprintf(n->dir, sizeof n->dir, "%s/js-%s", base, name);
	snprintf(n->conf, sizeof n->conf, "%s/nats-%s.conf", base, name);
	snprintf(n->log, sizeof n->log, "%s/nats-%s.log", base, name);
	n->port = ts_free_port();
	snprintf(n->url, sizeof n->url, "nats://127.0.0.1:%d", n->port);
}

/* Can we open a TCP connection to the port? */
static int
tsn_port_open(int port)
{
	struct sockaddr_in sin;
	int s, ok;

	if ((s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return (0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	ok = connect(s, (struct sockaddr *)&sin, sizeof sin) == 0;
	close(s);
	return (ok);
}

/* Does JetStream answer on url? */
static int
tsn_js_ready(const char *url)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsAccountInfo *ai = NULL;
	jsErrCode jerr = 0;
	int ok = 0;

	if (natsConnection_ConnectTo(&nc, url) != NATS_OK)
		return (0);
	if (natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
	    js_GetAccountInfo(&ai, js, NULL, &jerr) == NATS_OK) {
		ok = 1;
		jsAccountInfo_Destroy(ai);
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return (ok);
}

void
ts_nats_start(struct ts_nats *n, int wait_js)
{
	char text[8192];
	int64_t deadline;
	int status, fd;

	if (!n->cport)
		snprintf(text, sizeof text, "listen: 127.0.0.1:%d\nserver_name: "
		    "%s\njetstream { store_dir: \"%s\" }\n%s\n", n->port,
		    n->name, n->dir, n->extra);
	else
		snprintf(text, sizeof text, "listen: 127.0.0.1:%d\nserver_name: "
		    "%s\njetstream { store_dir: \"%s\" }\ncluster { name: tc\n"
		    "listen: 127.0.0.1:%d\nroutes: [%s]\n}\n%s\n", n->port,
		    n->name, n->dir, n->cport, n->routes, n->extra);
	ck_assert_int_eq(ts_write_file(n->conf, text, strlen(text)), 0);
	if ((n->pid = fork()) == -1)
		ck_abort_msg("fork: %s", strerror(errno));
	if (n->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		    0644);
		if (fd != -1) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execlp("nats-server", "nats-server", "-c", n->conf, (char *)NULL);
		fprintf(stderr, "exec nats-server: %s\n", strerror(errno));
		_exit(127);
	}
	deadline = tsn_now_ms() + 30000;
	while (!tsn_port_open(n->port) || (wait_js && !tsn_js_ready(n->url))) {
		if (waitpid(n->pid, &status, WNOHANG) == n->pid) {
			n->pid = 0;
			ck_abort_msg("nats-server %s exited at start (see %s)",
			    n->name, n->log);
		}
		if (tsn_now_ms() > deadline)
			ck_abort_msg("nats-server %s not ready within 30 s (see "
			    "%s)", n->name, n->log);
		poll(NULL, 0, 50);
	}
}

/* Signal, wait up to ms, then SIGKILL. */
static void
tsn_reap(pid_t *pid, int sig, int ms)
{
	int64_t deadline = tsn_now_ms() + ms;
	int status;

	if (*pid <= 0)
		return;
	kill(*pid, sig);
	while (waitpid(*pid, &status, WNOHANG) == 0) {
		if (tsn_now_ms() > deadline) {
			kill(*pid, SIGKILL);
			waitpid(*pid, &status, 0);
			break;
		}
		poll(NULL, 0, 20);
	}
	*pid = 0;
}

void
ts_nats_stop(struct ts_nats *n)
{
	tsn_reap(&n->pid, SIGTERM, 10000);
}

void
ts_nats_kill(struct ts_nats *n)
{
	tsn_reap(&n->pid, SIGKILL, 10000);
}

void
ts_nats_cluster(struct ts_nats n[3], const char *base)
{
	char name[16];
	int i;

	for (i = 0; i < 3; i++) {
		snprintf(name, sizeof name, "n%d", i + 1);
		ts_nats_init(&n[i], base, name);
		n[i].cport = ts_free_port();
	}
	for (i = 0; i < 3; i++)
		snprintf(n[i].routes, sizeof n[i].routes, "nats-route://"
		    "127.0.0.1:%d, nats-route://127.0.0.1:%d, "
		    "nats-route://127.0.0.1:%d", n[0].cport, n[1].cport,
		    n[2].cport);
	for (i = 0; i < 3; i++)
		ts_nats_start(&n[i], 0);
	for (i = 0; i < 3; i++)
		ts_nats_start_wait_js(&n[i]);
}

void
ts_nats_start_wait_js(struct ts_nats *n)
{
	int64_t deadline = tsn_now_ms() + 60000;

	while (!tsn_js_ready(n->url)) {
		if (tsn_now_ms() > deadline)
			ck_abort_msg("JetStream on %s not ready within 60 s (see "
			    "%s)", n->name, n->log);
		poll(NULL, 0, 100);
	}
}

void
ts_nats_urls(const struct ts_nats *n, int count, char *buf, size_t len)
{
	size_t off = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < count; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s",
		    i > 0 ? "," : "", n[i].url);
}

const char *ts_fwd_notify;

pid_t
ts_fwd_start(const struct ts_daemon *d, const char *logpath, ...)
{
	char *args[64];
	va_list ap;
	int n = 0;

	va_start(ap, logpath);
	while (n < 63 && (args[n] = va_arg(ap, char *)) != NULL)
		n++;
	va_end(ap);
	args[n] = NULL;
	return (ts_fwd_startv(d, logpath, args));
}

pid_t
ts_fwd_startv(const struct ts_daemon *d, const char *logpath,
    char *const *args)
{
	char prog[PATH_MAX], *argv[80];
	pid_t pid;
	int n = 0, i, fd;

	snprintf(prog, sizeof prog, "%s/client/forward/walmmap-forward",
	    TS_BUILDDIR);
	argv[n++] = prog;
	argv[n++] = (char *)"-f";
	argv[n++] = (char *)"-s";
	argv[n++] = (char *)d->sock;
	for (i = 0; args[i] != NULL && n < 78; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if ((pid = fork()) == -1)
		ck_abort_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		    0644);
		if (fd != -1) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		if (ts_fwd_notify != NULL)
			setenv("NOTIFY_SOCKET", ts_fwd_notify, 1);
		else
			unsetenv("NOTIFY_SOCKET");
		execv(prog, argv);
		fprintf(stderr, "exec %s: %s\n", prog, strerror(errno));
		_exit(127);
	}
	return (pid);
}

int
ts_fwd_wait(pid_t pid, int timeout_ms)
{
	int64_t deadline = tsn_now_ms() + timeout_ms;
	int status;

	for (;;) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return (WIFEXITED(status) ? WEXITSTATUS(status) :
			    128 + WTERMSIG(status));
		if (tsn_now_ms() > deadline)
			return (-1);
		poll(NULL, 0, 20);
	}
}

int
ts_fwd_stop(pid_t pid)
{
	int rc;

	kill(pid, SIGTERM);
	if ((rc = ts_fwd_wait(pid, 30000)) == -1) {
		kill(pid, SIGKILL);
		(void)ts_fwd_wait(pid, 10000);
		ck_abort_msg("walmmap-forward did not stop within 30 s of "
		    "SIGTERM");
	}
	return (rc);
}

int64_t
ts_js_count(const char *url, const char *stream)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	int64_t n = -1;

	if (natsConnection_ConnectTo(&nc, url) != NATS_OK)
		return (-1);
	if (natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
	    js_GetStreamInfo(&si, js, stream, NULL, &jerr) == NATS_OK) {
		n = (int64_t)si->State.Msgs;
		jsStreamInfo_Destroy(si);
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return (n);
}

int
ts_js_wait_count(const char *url, const char *stream, int64_t n,
    int timeout_ms)
{
	int64_t deadline = tsn_now_ms() + timeout_ms;

	while (ts_js_count(url, stream) != n) {
		if (tsn_now_ms() > deadline)
			return (0);
		poll(NULL, 0, 100);
	}
	return (1);
}

void
ts_log_id(const char *dir, char out[33])
{
	char path[PATH_MAX];
	uint8_t *buf;
	size_t len;

	snprintf(path, sizeof path, "%s/walmmapd.log-id", dir);
	buf = ts_read_file(path, &len);
	ck_assert_msg(buf != NULL && len >= 32, "no log id in %s", path);
	memcpy(out, buf, 32);
	out[32] = '\0';
	free(buf);
}

/* A header as a number, -1 if missing. */
static int64_t
tsn_header(natsMsg *m, const char *key)
{
	const char *v = NULL;

	if (natsMsgHeader_Get(m, key, &v) != NATS_OK || v == NULL)
		return (-1);
	return (strtoll(v, NULL, 10));
}

void
ts_js_verify(const char *url, const char *stream, const char *subject,
    const char *dir, const char *log_id, int64_t first_seq, int64_t last_seq)
{
	natsConnection *nc = NULL;
	natsSubscription *sub = NULL;
	natsMsg *m = NULL;
	jsCtx *js = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	struct walmmap_reader *r = NULL;
	struct walmmap_record rec;
	const char *id = NULL;
	char want_id[80];
	int64_t seq, count;
	natsStatus s;

	ck_assert_int_eq(walmmap_reader_open(&r, dir), 0);
	ck_assert_int_eq(walmmap_reader_seek(r, first_seq), 0);
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverAll;
	s = js_SubscribeSync(&sub, js, subject, NULL, &so, &jerr);
	ck_assert_msg(s == NATS_OK, "JetStream consumer on %s: %s (%d)",
	    subject, natsStatus_GetText(s), (int)jerr);
	for (seq = first_seq; seq <= last_seq; seq++) {
		ck_assert_msg(walmmap_reader_next(r, &rec, 10000) == 1,
		    "the log has no record %" PRId64, seq);
		ck_assert_int_eq(rec.seq, seq);
		s = natsSubscription_NextMsg(&m, sub, 10000);
		ck_assert_msg(s == NATS_OK, "stream %s: no message for seq %"
		    PRId64 " (%s)", stream, seq, natsStatus_GetText(s));
		ck_assert_msg(tsn_header(m, "Walmmap-Seq") == seq, "stream "
		    "%s: message for seq %" PRId64 " has Walmmap-Seq %" PRId64
		    " (a gap, a duplicate or a reordering)", stream, seq,
		    tsn_header(m, "Walmmap-Seq"));
		ck_assert_msg(tsn_header(m, "Walmmap-Timestamp") ==
		    rec.timestamp_ns, "seq %" PRId64 ": timestamp %" PRId64
		    " in the stream, %" PRId64 " in the log", seq,
		    tsn_header(m, "Walmmap-Timestamp"), rec.timestamp_ns);
		snprintf(want_id, sizeof want_id, "%s:%" PRId64, log_id, seq);
		ck_assert_msg(natsMsgHeader_Get(m, "Nats-Msg-Id", &id) ==
		    NATS_OK && id != NULL && strcmp(id, want_id) == 0,
		    "seq %" PRId64 ": message id %s, want %s", seq,
		    id != NULL ? id : "none", want_id);
		ck_assert_msg((size_t)natsMsg_GetDataLength(m) == rec.size &&
		    (rec.size == 0 || memcmp(natsMsg_GetData(m), rec.data,
		    rec.size) == 0), "seq %" PRId64 ": payload of %d bytes in "
		    "the stream differs from the log's %zu", seq,
		    natsMsg_GetDataLength(m), rec.size);
		natsMsg_Destroy(m);
		m = NULL;
	}
	/* Nothing more on the subject. */
	s = natsSubscription_NextMsg(&m, sub, 300);
	ck_assert_msg(s == NATS_TIMEOUT, "stream %s holds a message after "
	    "seq %" PRId64 " (Walmmap-Seq %" PRId64 ")", stream, last_seq,
	    m != NULL ? tsn_header(m, "Walmmap-Seq") : -1);
	count = ts_js_count(url, stream);
	ck_assert_msg(count == last_seq - first_seq + 1, "stream %s holds %"
	    PRId64 " messages, want %" PRId64, stream, count,
	    last_seq - first_seq + 1);
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	walmmap_reader_close(r);
}
