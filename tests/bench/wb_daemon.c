/*
 * walbench - producers through a real walmmapd: over the socket, through
 * shared-memory rings, and the round-trip latency at a fixed load; each
 * against the transport alone (a raw SOCK_SEQPACKET pair, a raw SPSC ring).
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "walbench.h"
#include "wal_proto.h"
#include "walmmap.h"

#define BATCH	64

/* What each producer child does; results land in shared memory. */
struct prod {
	const char	*sock;
	unsigned	 flags;		/* WALMMAP_SHM or 0 */
	uint32_t	 size;
	long		 each;		/* records per child */
	int		 batch;		/* records per call */
	double		*append_s;	/* [child]: time inside the appends */
};

static int
producer_child(int i, void *arg)
{
	struct prod *p = arg;
	struct iovec iov[BATCH];
	struct walmmap *w;
	uint8_t buf[4096];
	double t0;
	long k;
	int j;

	if (walmmap_connect(&w, p->sock, WALMMAP_ACK_WRITTEN, p->flags) != 0)
		return (10);
	if ((p->flags & WALMMAP_SHM) && !walmmap_shm_active(w, NULL))
		return (11);
	wb_fill(buf, sizeof buf, (uint64_t)i);
	for (j = 0; j < BATCH; j++) {
		iov[j].iov_base = buf + j;
		iov[j].iov_len = p->size;
	}
	wb_child_sync();
	t0 = wb_now();
	for (k = 0; k < p->each; k += p->batch) {
		if (p->batch == 1) {
			if (walmmap_append(w, buf, p->size,
			    WALMMAP_ACK_DEFAULT, NULL) != 0)
				return (12);
		} else if (walmmap_append_batch(w, iov, (size_t)p->batch,
		    WALMMAP_ACK_DEFAULT, NULL) != p->batch)
			return (13);
	}
	p->append_s[i] = wb_now() - t0;
	if (walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1) != 0)
		return (14);
	walmmap_close(w);
	return (0);
}

/* Records/s of n producers through the daemon; *append_ns per append. */
static double
run_producers(const char *sock, unsigned flags, int n, long total,
    uint32_t size, int batch, double *append_ns)
{
	struct wb_group g;
	struct prod p;
	double t0, t1, sum = 0;
	int i;

	p.sock = sock;
	p.flags = flags;
	p.size = size;
	p.each = total / n / batch * batch;
	p.batch = batch;
	if ((p.append_s = wb_shared(sizeof(double) * (size_t)n)) == NULL)
		return (-1);
	if (wb_start_children(&g, n, producer_child, &p) != 0)
		return (-1);
	t0 = wb_now();
	wb_go(&g);
	if (wb_wait_children(&g) != 0)
		return (-1);
	t1 = wb_now();
	for (i = 0; i < n; i++)
		sum += p.append_s[i];
	if (append_ns != NULL)
		*append_ns = sum / n / (double)p.each * 1e9;
	munmap(p.append_s, sizeof(double) * (size_t)n);
	return ((double)(p.each * n) / (t1 - t0));
}

/* The transport alone: senders push APPEND-sized frames, nobody parses. */
struct raw {
	int		*fds;		/* [child]: its end of a socketpair */
	long		 frames;
	size_t		 frame_len;
};

static int
raw_sender(int i, void *arg)
{
	struct raw *r = arg;
	uint8_t buf[WAL_PROTO_MAX_FRAME];
	long k;

	memset(buf, 'x', sizeof buf);
	wb_child_sync();
	for (k = 0; k < r->frames; k++)
		if (send(r->fds[i], buf, r->frame_len, 0) != (ssize_t)
		    r->frame_len)
			return (10);
	return (0);
}

static double
run_raw_seqpacket(int n, long total, uint32_t size, int batch)
{
	uint8_t buf[WAL_PROTO_MAX_FRAME];
	struct pollfd *pfd;
	struct wb_group g;
	struct raw r;
	long got = 0, want;
	int i, sp[2], *mine;
	double t0, t1;

	r.frames = total / n / batch;
	r.frame_len = sizeof(struct wal_msg_append) + (size_t)batch * (4 +
	    size);
	want = r.frames * n;
	r.fds = calloc((size_t)n, sizeof(int));
	mine = calloc((size_t)n, sizeof(int));
	pfd = calloc((size_t)n, sizeof *pfd);
	for (i = 0; i < n; i++) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) == -1)
			return (-1);
		r.fds[i] = sp[0];
		mine[i] = sp[1];
	}
	if (wb_start_children(&g, n, raw_sender, &r) != 0)
		return (-1);
	for (i = 0; i < n; i++) {
		close(r.fds[i]);
		pfd[i].fd = mine[i];
		pfd[i].events = POLLIN;
	}
	t0 = wb_now();
	wb_go(&g);
	while (got < want) {
		if (poll(pfd, (nfds_t)n, -1) == -1 && errno != EINTR)
			return (-1);
		for (i = 0; i < n; i++)
			if (pfd[i].revents & POLLIN)
				while (recv(mine[i], buf, sizeof buf,
				    MSG_DONTWAIT) > 0)
					got++;
	}
	t1 = wb_now();
	if (wb_wait_children(&g) != 0)
		return (-1);
	for (i = 0; i < n; i++)
		close(mine[i]);
	free(r.fds);
	free(mine);
	free(pfd);
	return ((double)(want * batch) / (t1 - t0));
}

/* A daemon with 1 GiB pre-faulted (512 MiB active + one standby). */
static const char *const big_args[] = { "--segment-size", "512M", "--ring",
	"2", NULL };
static const char *const quick_args[] = { "--segment-size", "64M", "--ring",
	"2", NULL };

/* One run of run_producers() against a fresh daemon. */
static double
daemon_run(const struct wb *wb, const char *tag, unsigned flags, int n,
    long total, uint32_t size, int batch, double *append_ns)
{
	struct wb_daemon d;
	double rps;

	if (wb_daemon_start(wb, &d, tag, 0, wb->quick ? quick_args :
	    big_args) != 0)
		return (-1);
	rps = run_producers(d.sock, flags, n, total, size, batch, append_ns);
	wb_daemon_stop(&d, 1);
	return (rps);
}

/*
 * Runs of a pair can differ by 10x here (the host moves the two vCPUs
 * between one die and two; see wb_cpu_rtt_ns()), so each pair runs
 * wb->reps times, alternating, and the medians are reported.
 */
#define MAXREPS	99

int
wb_seqpacket(const struct wb *wb)
{
	static const struct { int clients, batch; const char *name; } v[] = {
		{ 1, BATCH, "1 client, batch 64" },
		{ 1, 1, "1 client, single" },
		{ 8, BATCH, "8 clients, batch 64" },
	};
	const uint32_t size = 64;
	struct wb_result r;
	double rps[MAXREPS], base[MAXREPS];
	long total;
	size_t i;
	int k;

	for (i = 0; i < sizeof v / sizeof v[0]; i++) {
		total = v[i].batch == 1 ? 1000000 : 6000000;
		if (wb->quick)
			total /= 20;
		for (k = 0; k < wb->reps; k++) {
			rps[k] = daemon_run(wb, "seqpacket", 0, v[i].clients,
			    total, size, v[i].batch, NULL);
			base[k] = run_raw_seqpacket(v[i].clients, total, size,
			    v[i].batch);
			if (rps[k] < 0 || base[k] < 0)
				return (-1);
		}
		wb_result_init(&r, "seqpacket", "raw SOCK_SEQPACKET");
		snprintf(r.variant, sizeof r.variant, "%s", v[i].name);
		r.rps = wb_median(rps, wb->reps);
		r.rec_bytes = size;
		r.base_rps = wb_median(base, wb->reps);
		snprintf(r.note, sizeof r.note, "%uB records, written acks, "
		    "median of %d", size, wb->reps);
		wb_report(wb, &r);
	}
	return (0);
}

/*
 * The limit of shared memory between two processes: a bare SPSC ring of
 * 16-byte aligned slots, the consumer copying each record out. Both sides
 * spin a while, then yield.
 */
struct spsc {
	_Atomic uint64_t	tail;
	uint8_t			pad0[56];
	_Atomic uint64_t	head;
	uint8_t			pad1[56];
	uint8_t			data[4u << 20];
};

struct spsc_arg {
	struct spsc	*q;
	long		 n;
	uint32_t	 size;
};

static int
spsc_producer(int i, void *arg)
{
	struct spsc_arg *a = arg;
	struct spsc *q = a->q;
	const uint64_t cap = sizeof q->data, slot = (16 + a->size + 15) & ~15u;
	uint64_t tail = 0, head = 0;
	uint8_t buf[4096];
	long k;
	int spin;

	(void)i;
	wb_fill(buf, sizeof buf, 0);
	wb_child_sync();
	for (k = 0; k < a->n; k++) {
		for (spin = 0; tail + slot - head > cap; spin++) {
			head = atomic_load_explicit(&q->head,
			    memory_order_acquire);
			if (spin > 1000)
				sched_yield();
		}
		memcpy(q->data + (tail % cap), &a->size, 4);
		memcpy(q->data + (tail % cap) + 16, buf, a->size);
		tail += slot;
		atomic_store_explicit(&q->tail, tail, memory_order_release);
	}
	return (0);
}

static double
run_raw_spsc(long n, uint32_t size)
{
	struct spsc_arg a;
	struct wb_group g;
	uint64_t head = 0, tail = 0, cap;
	const uint64_t slot = (16 + size + 15) & ~15u;
	uint8_t out[4096];
	double t0, t1;
	long got = 0;
	int spin = 0;

	if ((a.q = wb_shared(sizeof *a.q)) == NULL)
		return (-1);
	cap = sizeof a.q->data;
	a.n = n;
	a.size = size;
	memset(a.q->data, 0, sizeof a.q->data);
	if (wb_start_children(&g, 1, spsc_producer, &a) != 0)
		return (-1);
	t0 = wb_now();
	wb_go(&g);
	while (got < n) {
		tail = atomic_load_explicit(&a.q->tail, memory_order_acquire);
		if (tail == head) {
			if (++spin > 1000)
				sched_yield();
			continue;
		}
		spin = 0;
		while (head < tail) {
			uint32_t len;

			memcpy(&len, a.q->data + (head % cap), 4);
			memcpy(out, a.q->data + (head % cap) + 16, len);
			head += slot;
			got++;
		}
		atomic_store_explicit(&a.q->head, head, memory_order_release);
	}
	t1 = wb_now();
	(void)wb_wait_children(&g);
	munmap(a.q, sizeof *a.q);
	return ((double)n / (t1 - t0));
}

int
wb_shm(const struct wb *wb)
{
	static const struct { int producers; uint32_t size; } v[] = {
		{ 1, 64 }, { 1, 32 }, { 4, 64 },
	};
	struct wb_result r;
	double rps[MAXREPS], base[MAXREPS], sock[MAXREPS], ans[MAXREPS];
	double rtt[MAXREPS];
	long total = wb->quick ? 400000 : 8000000;
	size_t i;
	int k, single;

	for (i = 0; i < sizeof v / sizeof v[0]; i++) {
		single = v[i].producers == 1;
		for (k = 0; k < wb->reps; k++) {
			rtt[k] = wb_cpu_rtt_ns();
			rps[k] = daemon_run(wb, "shm", WALMMAP_SHM,
			    v[i].producers, total, v[i].size, 1, &ans[k]);
			base[k] = run_raw_spsc(total, v[i].size);
			/* One producer: the same records over the socket. */
			sock[k] = single ? daemon_run(wb, "shm-sock", 0, 1,
			    total, v[i].size, BATCH, NULL) : 0;
			if (rps[k] < 0 || base[k] < 0 || sock[k] < 0)
				return (-1);
		}
		wb_result_init(&r, "shm", "raw SPSC ring");
		snprintf(r.variant, sizeof r.variant, "%d producer%s, %uB",
		    v[i].producers, single ? "" : "s", v[i].size);
		r.rps = wb_median(rps, wb->reps);
		r.rec_bytes = v[i].size;
		r.base_rps = wb_median(base, wb->reps);
		snprintf(r.note, sizeof r.note, "producer %.1f ns/append, "
		    "written acks, median of %d, cpu0-cpu1 %.0f ns",
		    wb_median(ans, wb->reps), wb->reps,
		    wb_median(rtt, wb->reps));
		wb_report(wb, &r);
		if (!single)
			continue;
		wb_result_init(&r, "shm", "socket, batch 64");
		snprintf(r.variant, sizeof r.variant, "1 producer, %uB",
		    v[i].size);
		r.rps = wb_median(rps, wb->reps);
		r.rec_bytes = v[i].size;
		r.base_rps = wb_median(sock, wb->reps);
		snprintf(r.note, sizeof r.note, "same daemon settings, "
		    "median of %d", wb->reps);
		wb_report(wb, &r);
	}
	return (0);
}

/*
 * Latency at a fixed offered load: one non-blocking client appends on a
 * schedule (open loop) and timestamps each acknowledgement.
 */
struct lat {
	uint64_t	*sent;		/* [record]: when it was appended */
	uint64_t	*lat;
	size_t		 acked;
	size_t		 n;
};

static void
lat_ack_cb(void *arg, int64_t first_seq, uint32_t count, int error)
{
	struct lat *l = arg;
	uint64_t now = wb_now_ns();
	uint32_t i;

	(void)first_seq;
	(void)error;
	for (i = 0; i < count && l->acked < l->n; i++, l->acked++)
		l->lat[l->acked] = now - l->sent[l->acked];
}

static int
lat_run(const char *sock, long rate, double secs, struct wb_result *r)
{
	struct walmmap *w;
	struct lat l;
	uint64_t t0, next, step = 1000000000ull / (uint64_t)rate;
	size_t sent = 0;
	uint8_t buf[64];
	int rc;

	memset(&l, 0, sizeof l);
	l.n = (size_t)((double)rate * secs);
	l.sent = calloc(l.n, sizeof *l.sent);
	l.lat = calloc(l.n, sizeof *l.lat);
	if (walmmap_connect(&w, sock, WALMMAP_ACK_WRITTEN, WALMMAP_NONBLOCK)
	    != 0)
		return (-1);
	walmmap_set_ack_cb(w, lat_ack_cb, &l);
	wb_fill(buf, sizeof buf, 0);
	t0 = next = wb_now_ns();
	while (l.acked < l.n) {
		uint64_t now = wb_now_ns();

		if (sent < l.n && now >= next) {
			l.sent[sent] = now;
			rc = walmmap_append(w, buf, sizeof buf,
			    WALMMAP_ACK_DEFAULT, NULL);
			if (rc == 0) {
				sent++;
				next += step;
			} else if (rc != -WALMMAP_EAGAIN)
				return (-1);
		}
		if (walmmap_process(w) != 0)
			return (-1);
	}
	r->rps = (double)l.n / ((double)(wb_now_ns() - t0) / 1e9);
	wb_percentiles(l.lat, l.n, r);
	walmmap_close(w);
	free(l.sent);
	free(l.lat);
	return (0);
}

/* The transport's round trip at the same load: an echo over a pair. */
static int
echo_child(int i, void *arg)
{
	const int *sp = arg;
	int s = sp[1];
	uint8_t buf[256];
	ssize_t n;

	(void)i;
	close(sp[0]);	/* so the parent's close ends our loop */
	wb_child_sync();
	while ((n = recv(s, buf, sizeof buf, 0)) > 0)
		if (send(s, buf, (size_t)n, 0) != n)
			return (1);
	return (0);
}

static int
echo_run(long rate, double secs, struct wb_result *r)
{
	struct wb_group g;
	uint64_t *lat, *sent, t0, next, step = 1000000000ull / (uint64_t)rate;
	size_t n = (size_t)((double)rate * secs), s = 0, got = 0;
	uint8_t buf[256];
	int sp[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) == -1)
		return (-1);
	lat = calloc(n, sizeof *lat);
	sent = calloc(n, sizeof *sent);
	if (wb_start_children(&g, 1, echo_child, sp) != 0)
		return (-1);
	close(sp[1]);
	memset(buf, 'x', sizeof buf);
	wb_go(&g);
	t0 = next = wb_now_ns();
	while (got < n) {
		uint64_t now = wb_now_ns();

		if (s < n && now >= next) {
			sent[s] = now;
			if (send(sp[0], buf, sizeof(struct wal_msg_append) + 68,
			    0) > 0) {
				s++;
				next += step;
			}
		}
		while (got < s && recv(sp[0], buf, sizeof buf, MSG_DONTWAIT) >
		    0) {
			lat[got] = wb_now_ns() - sent[got];
			got++;
		}
	}
	r->base_rps = (double)n / ((double)(wb_now_ns() - t0) / 1e9);
	close(sp[0]);
	(void)wb_wait_children(&g);
	wb_percentiles(lat, n, r);
	free(lat);
	free(sent);
	return (0);
}

int
wb_latency(const struct wb *wb)
{
	const long rate = 100000;
	double secs = wb->quick ? 0.3 : 2.0;
	struct wb_result r, e;
	struct wb_daemon d;

	wb_result_init(&e, "latency", "");
	if (echo_run(rate, secs, &e) != 0)
		return (-1);
	if (wb_daemon_start(wb, &d, "latency", 0, NULL) != 0)
		return (-1);
	wb_result_init(&r, "latency", "raw SOCK_SEQPACKET echo");
	snprintf(r.variant, sizeof r.variant, "64B at 100k/s, written");
	r.rec_bytes = 64;
	if (lat_run(d.sock, rate, secs, &r) != 0) {
		wb_daemon_stop(&d, 1);
		return (-1);
	}
	wb_daemon_stop(&d, 1);
	r.base_rps = e.base_rps;
	snprintf(r.note, sizeof r.note, "echo p50 %.1f us p99 %.1f us p999 "
	    "%.1f us", e.p50 / 1e3, e.p99 / 1e3, e.p999 / 1e3);
	wb_report(wb, &r);
	return (0);
}
