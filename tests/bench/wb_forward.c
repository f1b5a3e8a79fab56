/*
 * walbench forward - records/s from append to JetStream acknowledgement
 * through walmmapd and walmmap-forward, against a plain libnats
 * asynchronous JetStream publisher pushing the same messages (same
 * payloads, the same three headers, the same window) to the same
 * nats-server in the same run.
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "walbench.h"

#ifndef WB_HAVE_NATS
int
wb_forward(const struct wb *wb)
{
	wb_skip(wb, "forward", "built without libnats (walmmap-forward)");
	return (0);
}
#else

#include <nats/nats.h>

#include "walmmap.h"

#define FWD_WINDOW	1024

/* A free port on 127.0.0.1. */
static int
fwd_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	int s, port = -1;

	if ((s = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return (-1);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)&sin, sizeof sin) == 0 &&
	    getsockname(s, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	close(s);
	return (port);
}

/* Start a process, output to /dev/null; dies with us. */
static pid_t
fwd_spawn(char *const *argv)
{
	pid_t pid;

	if ((pid = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (freopen("/dev/null", "w", stdout) == NULL ||
		    freopen("/dev/null", "w", stderr) == NULL)
			_exit(126);
		execvp(argv[0], argv);
		_exit(127);
	}
	return (pid);
}

static void
fwd_reap(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
}

/* Messages in a stream, -1 if it cannot be asked. */
static int64_t
fwd_count(jsCtx *js, const char *stream)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	int64_t n = -1;

	if (js_GetStreamInfo(&si, js, stream, NULL, &jerr) == NATS_OK) {
		n = (int64_t)si->State.Msgs;
		jsStreamInfo_Destroy(si);
	}
	return (n);
}

/* The baseline: n messages published asynchronously, all acknowledged. */
static double
fwd_baseline(natsConnection *nc, const char *stream, const char *subject,
    size_t size, long n)
{
	jsOptions jo;
	jsStreamConfig sc;
	jsPubOptions po;
	jsCtx *js = NULL;
	jsErrCode jerr = 0;
	natsMsg *m;
	uint8_t buf[1024];
	char id[64], v[32];
	const char *subj[1] = { subject };
	double t0, t;
	long i;

	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = FWD_WINDOW;
	if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK)
		return (-1);
	jsStreamConfig_Init(&sc);
	sc.Name = stream;
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	if (js_AddStream(NULL, js, &sc, NULL, &jerr) != NATS_OK) {
		jsCtx_Destroy(js);
		return (-1);
	}
	t0 = wb_now();
	for (i = 0; i < n; i++) {
		wb_fill(buf, size, (uint64_t)i);
		if (natsMsg_Create(&m, subject, NULL, (const char *)buf,
		    (int)size) != NATS_OK)
			break;
		snprintf(v, sizeof v, "%ld", i);
		natsMsgHeader_Set(m, "Walmmap-Seq", v);
		snprintf(v, sizeof v, "%" PRIu64, wb_now_ns());
		natsMsgHeader_Set(m, "Walmmap-Timestamp", v);
		snprintf(id, sizeof id, "0123456789abcdef0123456789abcdef:%ld",
		    i);
		jsPubOptions_Init(&po);
		po.MsgId = id;
		if (js_PublishMsgAsync(js, &m, &po) != NATS_OK) {
			natsMsg_Destroy(m);
			break;
		}
	}
	jsPubOptions_Init(&po);
	po.MaxWait = 60000;
	js_PublishAsyncComplete(js, &po);
	t = wb_now() - t0;
	if (fwd_count(js, stream) != n)
		t = -1;
	jsCtx_Destroy(js);
	return (t > 0 ? n / t : -1);
}

/* Through walmmapd and walmmap-forward: append n, wait for the stream. */
static double
fwd_through(const struct wb *wb, natsConnection *nc, const char *url,
    const char *stream, size_t size, long n, char *note, size_t notelen)
{
	struct wb_daemon d;
	struct walmmap *w = NULL;
	struct iovec iov[64];
	static uint8_t buf[64][1024];
	char prog[PATH_MAX], tag[32], win[16];
	char *argv[20];
	jsCtx *js = NULL;
	pid_t fpid;
	double t0, t = -1;
	long done = 0;
	int k, i;

	snprintf(tag, sizeof tag, "fwd%zu", size);
	if (wb_daemon_start(wb, &d, tag, 0, NULL) != 0)
		return (-1);
	snprintf(prog, sizeof prog, "%s/client/forward/walmmap-forward",
	    WB_BUILDDIR);
	snprintf(win, sizeof win, "%d", FWD_WINDOW);
	i = 0;
	argv[i++] = prog;
	argv[i++] = (char *)"-f";
	argv[i++] = (char *)"-s";
	argv[i++] = d.sock;
	argv[i++] = (char *)"--url";
	argv[i++] = (char *)url;
	argv[i++] = (char *)"--stream";
	argv[i++] = (char *)stream;
	argv[i++] = (char *)"--subject";
	argv[i++] = (char *)stream;
	argv[i++] = (char *)"--create-stream";
	argv[i++] = (char *)"--window";
	argv[i++] = win;
	argv[i] = NULL;
	fpid = fwd_spawn(argv);
	if (natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
		goto out;
	for (i = 0; i < 3000 && fwd_count(js, stream) < 0; i++)
		usleep(10000);	/* the forwarder made its stream */
	if (walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0) != 0)
		goto out;
	t0 = wb_now();
	while (done < n) {
		k = n - done > 64 ? 64 : (int)(n - done);
		for (i = 0; i < k; i++) {
			wb_fill(buf[i], size, (uint64_t)(done + i));
			iov[i].iov_base = buf[i];
			iov[i].iov_len = size;
		}
		if (walmmap_append_batch(w, iov, (size_t)k,
		    WALMMAP_ACK_DEFAULT, NULL) != k)
			goto out;
		done += k;
	}
	if (walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1) != 0)
		goto out;
	for (i = 0; i < 12000 && fwd_count(js, stream) < n; i++)
		usleep(5000);	/* 5 ms: asking often loads the server */
	if (fwd_count(js, stream) == n)
		t = wb_now() - t0;
	snprintf(note, notelen, "window %d", FWD_WINDOW);
out:
	walmmap_close(w);
	fwd_reap(fpid);
	jsCtx_Destroy(js);
	wb_daemon_stop(&d, 1);
	return (t > 0 ? n / t : -1);
}

int
wb_forward(const struct wb *wb)
{
	static const size_t sizes[] = { 64, 1024 };
	struct wb_result r;
	natsConnection *nc = NULL;
	char url[64], port[16], store[PATH_MAX], bs[32], fs[32];
	char *argv[12];
	pid_t npid;
	long n = wb->quick ? 20000 : 200000;
	double base[9], thr[9];
	int p, i, rep, rc = 0;
	unsigned si;

	if ((p = fwd_port()) < 0)
		return (-1);
	snprintf(port, sizeof port, "%d", p);
	snprintf(url, sizeof url, "nats://127.0.0.1:%d", p);
	snprintf(store, sizeof store, "%s/nats-store", wb->tmp);
	i = 0;
	argv[i++] = (char *)"nats-server";
	argv[i++] = (char *)"-js";
	argv[i++] = (char *)"-sd";
	argv[i++] = store;
	argv[i++] = (char *)"-a";
	argv[i++] = (char *)"127.0.0.1";
	argv[i++] = (char *)"-p";
	argv[i++] = port;
	argv[i] = NULL;
	if ((npid = fwd_spawn(argv)) < 0)
		return (-1);
	for (i = 0; i < 300 && natsConnection_ConnectTo(&nc, url) != NATS_OK;
	    i++)
		usleep(20000);
	if (nc == NULL) {
		wb_skip(wb, "forward", "nats-server did not start (is it "
		    "installed?)");
		fwd_reap(npid);
		return (0);
	}
	for (si = 0; si < 2 && rc == 0; si++) {
		wb_result_init(&r, "forward", "libnats async publisher");
		snprintf(r.variant, sizeof r.variant, "%zu B, 1 producer",
		    sizes[si]);
		r.rec_bytes = (double)sizes[si];
		for (rep = 0; rep < wb->reps && rep < 9; rep++) {
			snprintf(bs, sizeof bs, "BASE%zu_%d", sizes[si], rep);
			snprintf(fs, sizeof fs, "FWD%zu_%d", sizes[si], rep);
			base[rep] = fwd_baseline(nc, bs, bs, sizes[si], n);
			thr[rep] = fwd_through(wb, nc, url, fs, sizes[si], n,
			    r.note, sizeof r.note);
			if (base[rep] < 0 || thr[rep] < 0)
				rc = -1;
		}
		if (rc != 0)
			break;
		r.base_rps = wb_median(base, rep);
		r.rps = wb_median(thr, rep);
		wb_report(wb, &r);
	}
	natsConnection_Destroy(nc);
	fwd_reap(npid);
	wb_rmtree(store);
	return (rc);
}
#endif /* WB_HAVE_NATS */
