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

/*
 * Producers and consumers are pinned: a producer to CPU 1, the daemon (or
 * the raw baseline's consumer) to CPU 0, so both sides of a pair run in
 * the same placement and never share a CPU.
 */
#define PROD_CPU	1
#define CONS_CPU	0

/* What each producer child does; results land in shared memory. */
struct prod {
	const char	*sock;
	unsigned	 flags;		/* WALMMAP_SHM or 0 */
	uint32_t	 size;
	long		 each;		/* records per child */
	int		 batch;		/* records per call */
	int		 cpu;		/* pin to it, < 0: do not */
	double		*append_s;	/* [child]: time inside the appends */
	double		*end_s;		/* [child]: all acknowledged (wb_now) */
};

/* Producer i: p->each records through walmmapd, then the last ack. */
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

	if (p->cpu >= 0)
		(void)wb_pin_self(p->cpu);
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
	p->end_s[i] = wb_now();
	walmmap_close(w);
	return (0);
}

/*
 * Records/s of n producers through the daemon, from the start signal to
 * the last producer's last acknowledgement (not their exit); *append_ns
 * per append.
 */
static double
run_producers(const char *sock, unsigned flags, int n, long total,
    uint32_t size, int batch, int cpu, double *append_ns)
{
	struct wb_group g;
	struct prod p;
	double t0, t1 = 0, sum = 0, *sh;
	int i;

	p.sock = sock;
	p.flags = flags;
	p.size = size;
	p.each = total / n / batch * batch;
	p.batch = batch;
	p.cpu = cpu;
	if ((sh = wb_shared(2 * sizeof(double) * (size_t)n)) == NULL)
		return (-1);
	p.append_s = sh;
	p.end_s = sh + n;
	if (wb_start_children(&g, n, producer_child, &p) != 0)
		return (-1);
	t0 = wb_now();
	wb_go(&g);
	if (wb_wait_children(&g) != 0)
		return (-1);
	for (i = 0; i < n; i++) {
		sum += p.append_s[i];
		if (p.end_s[i] > t1)
			t1 = p.end_s[i];
	}
	if (append_ns != NULL)
		*append_ns = sum / n / (double)p.each * 1e9;
	munmap(sh, 2 * sizeof(double) * (size_t)n);
	return ((double)(p.each * n) / (t1 - t0));
}

/* The transport alone: senders push APPEND-sized frames, nobody parses. */
struct raw {
	int		*fds;		/* [child]: its end of a socketpair */
	long		 frames;
	size_t		 frame_len;
};

/* Raw pair i's sender: r->frames frames of r->frame_len bytes. */
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
		    r->frame_len) {
			fprintf(stderr, "walbench: raw sender: send: %s\n",
			    strerror(errno));
			return (10);
		}
	return (0);
}

#define RAW_VLEN	32

/*
 * The receiver takes up to RAW_VLEN frames per recvmmsg() call; timed
 * from the start signal to the last frame received.
 */
static double
run_raw_seqpacket(int n, long total, uint32_t size, int batch)
{
	static uint8_t bufs[RAW_VLEN][WAL_PROTO_MAX_FRAME];
	struct mmsghdr mm[RAW_VLEN];
	struct iovec iov[RAW_VLEN];
	struct pollfd *pfd;
	struct wb_group g;
	struct raw r;
	long got = 0, want;
	int i, j, k, sp[2], *mine, open;
	double t0, t1;

	r.frames = total / n / batch;
	r.frame_len = sizeof(struct wal_msg_append) + (size_t)batch * (4 +
	    size);
	want = r.frames * n;
	open = n;
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
	while (got < want && open > 0) {
		if (poll(pfd, (nfds_t)n, -1) == -1 && errno != EINTR)
			return (-1);
		for (i = 0; i < n; i++) {
			if (!(pfd[i].revents & (POLLIN | POLLHUP)))
				continue;
			do {
				memset(mm, 0, sizeof mm);
				for (j = 0; j < RAW_VLEN; j++) {
					iov[j].iov_base = bufs[j];
					iov[j].iov_len = sizeof bufs[j];
					mm[j].msg_hdr.msg_iov = &iov[j];
					mm[j].msg_hdr.msg_iovlen = 1;
				}
				k = recvmmsg(mine[i], mm, RAW_VLEN,
				    MSG_DONTWAIT, NULL);
				/* At the end a frame of length 0 (EOF). */
				for (j = 0; j < k && mm[j].msg_len > 0; j++)
					got++;
				if ((k >= 0 && j < k) || k == 0 || (k < 0 &&
				    errno != EAGAIN && errno != EINTR)) {
					pfd[i].fd = -1;	/* sender gone */
					open--;
					break;
				}
			} while (k == RAW_VLEN);
		}
	}
	t1 = wb_now();
	if (wb_wait_children(&g) != 0 || got < want) {
		fprintf(stderr, "walbench: raw SOCK_SEQPACKET: %ld of %ld "
		    "frames arrived\n", got, want);
		return (-1);
	}
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

/* Two CPUs or more: pin the pairs (PROD_CPU, CONS_CPU). */
static int
can_pin(void)
{
	return (sysconf(_SC_NPROCESSORS_ONLN) >= 2);
}

/* Start walmmapd for a pinned run: every thread of it on CONS_CPU. */
static int
daemon_start_pinned(const struct wb *wb, struct wb_daemon *d, const char *tag,
    const char *const *args)
{
	if (wb_daemon_start(wb, d, tag, 0, args) != 0)
		return (-1);
	if (can_pin())
		(void)wb_pin_pid(d->pid, CONS_CPU);
	return (0);
}

/* One run of run_producers() against a fresh daemon, pinned. */
static double
daemon_run(const struct wb *wb, const char *tag, unsigned flags, int n,
    long total, uint32_t size, int batch, double *append_ns)
{
	struct wb_daemon d;
	double rps;

	if (daemon_start_pinned(wb, &d, tag, wb->quick ? quick_args :
	    big_args) != 0)
		return (-1);
	rps = run_producers(d.sock, flags, n, total, size, batch, can_pin() ?
	    PROD_CPU : -1, append_ns);
	wb_daemon_stop(&d, 1);
	return (rps);
}

/*
 * Runs of a pair can differ by 10x here (the host moves the two vCPUs
 * between one die and two; see wb_cpu_rtt_ns()), so each pair runs
 * wb->reps times, alternating, with the cpu0-cpu1 round trip measured
 * before and after each run, and the median of the per-run ratios is
 * reported (never a ratio of medians, which could pair two placements).
 */
#define MAXREPS	99

/* How many runs saw the placement change (round trips 1.5x apart). */
static int
moved(const double *before, const double *after, int n)
{
	int k, m = 0;

	for (k = 0; k < n; k++)
		if (before[k] > 0 && after[k] > 0 && (before[k] > 1.5 *
		    after[k] || after[k] > 1.5 * before[k]))
			m++;
	return (m);
}

/* Clients over the socket against a raw SOCK_SEQPACKET pair. */
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
	double rps[MAXREPS], base[MAXREPS], ratio[MAXREPS];
	double rb[MAXREPS], ra[MAXREPS];
	long total;
	size_t i;
	int k;

	for (i = 0; i < sizeof v / sizeof v[0]; i++) {
		total = v[i].batch == 1 ? 1000000 : 6000000;
		if (wb->quick)
			total /= 20;
		for (k = 0; k < wb->reps; k++) {
			rb[k] = wb_cpu_rtt_ns();
			rps[k] = daemon_run(wb, "seqpacket", 0, v[i].clients,
			    total, size, v[i].batch, NULL);
			base[k] = run_raw_seqpacket(v[i].clients, total, size,
			    v[i].batch);
			ra[k] = wb_cpu_rtt_ns();
			if (rps[k] < 0 || base[k] < 0)
				return (-1);
			ratio[k] = rps[k] / base[k];
		}
		wb_result_init(&r, "seqpacket", "raw SOCK_SEQPACKET");
		snprintf(r.variant, sizeof r.variant, "%s", v[i].name);
		r.clients = v[i].clients;
		r.ratio = wb_median(ratio, wb->reps);
		r.rps = wb_median(rps, wb->reps);
		r.rec_bytes = size;
		r.base_rps = wb_median(base, wb->reps);
		r.rtt_before = wb_median(rb, wb->reps);
		r.rtt_after = wb_median(ra, wb->reps);
		snprintf(r.note, sizeof r.note, "%uB records, written acks, "
		    "to the last ack vs the last frame received (recvmmsg), "
		    "median of %d per-run ratios", size, wb->reps);
		wb_report(wb, &r);
	}
	return (0);
}

/*
 * The limit of shared memory between two processes: bare SPSC rings of
 * 16-byte aligned slots (4 MiB, the size of walmmapd's; a slot that would
 * cross the end starts at the beginning), one per producer,
 * the consumer copying each record out. A producer publishes its tail
 * with a release store every 16 records; the consumer its head once per
 * drained batch. Both sides spin a while, then yield.
 */
#define SPSC_PUB	16
#define MAXRINGS	16

struct spsc {
	_Atomic uint64_t	tail;
	uint8_t			pad0[56];
	_Atomic uint64_t	head;
	uint8_t			pad1[56];
	uint8_t			data[4u << 20];
};

struct spsc_arg {
	struct spsc	*q;		/* [producer] */
	long		 n;		/* records per producer */
	uint32_t	 size;
	int		 cpu;
};

/* Raw ring i's producer: a->n records, tail published every 16. */
static int
spsc_producer(int i, void *arg)
{
	struct spsc_arg *a = arg;
	struct spsc *q = &a->q[i];
	const uint64_t cap = sizeof q->data, slot = (16 + a->size + 15) & ~15u;
	uint64_t tail = 0, head = 0;
	uint8_t buf[4096];
	long k;
	int spin;

	if (a->cpu >= 0)
		(void)wb_pin_self(a->cpu);
	wb_fill(buf, sizeof buf, 0);
	wb_child_sync();
	for (k = 0; k < a->n; k++) {
		if (tail % cap + slot > cap)
			tail += cap - tail % cap;	/* wrap: skip the rest */
		if (tail + slot - head > cap) {
			atomic_store_explicit(&q->tail, tail,
			    memory_order_release);
			for (spin = 0; tail + slot - head > cap; spin++) {
				head = atomic_load_explicit(&q->head,
				    memory_order_acquire);
				if (spin > 1000)
					sched_yield();
			}
		}
		memcpy(q->data + (tail % cap), &a->size, 4);
		memcpy(q->data + (tail % cap) + 16, buf, a->size);
		tail += slot;
		if (k % SPSC_PUB == SPSC_PUB - 1 || k == a->n - 1)
			atomic_store_explicit(&q->tail, tail,
			    memory_order_release);
	}
	return (0);
}

/* Records/s through nq raw rings, one producer each, one consumer. */
static double
run_raw_spsc(int nq, long total, uint32_t size)
{
	struct spsc_arg a;
	struct wb_group g;
	uint64_t head[MAXRINGS], tail, cap;
	const uint64_t slot = (16 + size + 15) & ~15u;
	uint8_t out[4096];
	double t0, t1;
	long got = 0, want;
	int spin = 0, i, idle;

	if (nq > MAXRINGS || (a.q = wb_shared(sizeof *a.q * (size_t)nq)) ==
	    NULL)
		return (-1);
	cap = sizeof a.q->data;
	a.n = total / nq;
	a.size = size;
	a.cpu = can_pin() ? PROD_CPU : -1;
	want = a.n * nq;
	memset(a.q, 0, sizeof *a.q * (size_t)nq);
	memset(head, 0, sizeof head);
	if (wb_start_children(&g, nq, spsc_producer, &a) != 0)
		return (-1);
	if (can_pin())
		(void)wb_pin_self(CONS_CPU);
	t0 = wb_now();
	wb_go(&g);
	while (got < want) {
		for (i = 0, idle = 1; i < nq; i++) {
			struct spsc *q = &a.q[i];

			tail = atomic_load_explicit(&q->tail,
			    memory_order_acquire);
			if (tail == head[i])
				continue;
			idle = 0;
			while (head[i] < tail) {
				uint32_t len;

				if (head[i] % cap + slot > cap)
					head[i] += cap - head[i] % cap;
				memcpy(&len, q->data + (head[i] % cap), 4);
				memcpy(out, q->data + (head[i] % cap) + 16,
				    len);
				head[i] += slot;
				got++;
			}
			atomic_store_explicit(&q->head, head[i],
			    memory_order_release);
		}
		if (!idle)
			spin = 0;
		else if (++spin > 1000)
			sched_yield();
	}
	t1 = wb_now();
	wb_unpin_self();
	(void)wb_wait_children(&g);
	munmap(a.q, sizeof *a.q * (size_t)nq);
	return ((double)want / (t1 - t0));
}

/* Producers through rings against raw SPSC rings and the socket. */
int
wb_shm(const struct wb *wb)
{
	static const struct { int producers; uint32_t size; } v[] = {
		{ 1, 64 }, { 1, 32 }, { 4, 64 },
	};
	struct wb_result r;
	double rps[MAXREPS], base[MAXREPS], sock[MAXREPS], ans[MAXREPS];
	double ratio[MAXREPS], sratio[MAXREPS], rb[MAXREPS], ra[MAXREPS];
	long total = wb->quick ? 400000 : 8000000;
	size_t i;
	int k, single, np, m;

	for (i = 0; i < sizeof v / sizeof v[0]; i++) {
		np = v[i].producers;
		single = np == 1;
		for (k = 0; k < wb->reps; k++) {
			rb[k] = wb_cpu_rtt_ns();
			rps[k] = daemon_run(wb, "shm", WALMMAP_SHM, np, total,
			    v[i].size, 1, &ans[k]);
			base[k] = run_raw_spsc(np, total, v[i].size);
			/* One producer: the same records over the socket. */
			sock[k] = single ? daemon_run(wb, "shm-sock", 0, 1,
			    total, v[i].size, BATCH, NULL) : 1;
			ra[k] = wb_cpu_rtt_ns();
			if (rps[k] < 0 || base[k] < 0 || sock[k] < 0)
				return (-1);
			ratio[k] = rps[k] / base[k];
			sratio[k] = rps[k] / sock[k];
		}
		m = moved(rb, ra, wb->reps);
		wb_result_init(&r, "shm", np > 1 ? "raw SPSC rings, one each" :
		    "raw SPSC ring");
		snprintf(r.variant, sizeof r.variant, "%d producer%s, %uB",
		    np, single ? "" : "s", v[i].size);
		r.clients = np;
		r.ratio = wb_median(ratio, wb->reps);
		r.rps = wb_median(rps, wb->reps);
		r.rec_bytes = v[i].size;
		r.base_rps = wb_median(base, wb->reps);
		r.rtt_before = wb_median(rb, wb->reps);
		r.rtt_after = wb_median(ra, wb->reps);
		snprintf(r.note, sizeof r.note, "producer %.1f ns/append, "
		    "written acks, pinned cpu1->cpu0, median of %d per-run "
		    "ratios, placement moved in %d", wb_median(ans, wb->reps),
		    wb->reps, m);
		wb_report(wb, &r);
		if (!single)
			continue;
		wb_result_init(&r, "shm", "socket, batch 64");
		snprintf(r.variant, sizeof r.variant, "1 producer, %uB",
		    v[i].size);
		r.clients = 1;
		r.ratio = wb_median(sratio, wb->reps);
		r.rps = wb_median(rps, wb->reps);
		r.rec_bytes = v[i].size;
		r.base_rps = wb_median(sock, wb->reps);
		r.rtt_before = wb_median(rb, wb->reps);
		r.rtt_after = wb_median(ra, wb->reps);
		snprintf(r.note, sizeof r.note, "same daemon settings, "
		    "pinned, median of %d per-run ratios, placement moved in "
		    "%d", wb->reps, m);
		wb_report(wb, &r);
	}
	return (0);
}

/*
 * Latency at a fixed offered load, open loop: record i is due at
 * t0 + i * step and its latency is counted from then, not from when it
 * was sent (a sender that falls behind does not hide the delay:
 * coordinated omission). The first warm-up seconds are sent but not
 * counted. A run also reports the rate it achieved (records over the
 * time to the last acknowledgement): below the offered rate the sender
 * fell behind, and its latencies grow with the run.
 */
struct lat {
	uint64_t	 t0, step;
	uint64_t	 t_end;		/* the last acknowledgement */
	uint64_t	*lat;		/* [record], ns */
	size_t		 acked;
	size_t		 real;		/* acknowledged when a run stopped */
	int		 stopped;	/* by lat_over() */
	size_t		 n;
};

/* Record i was seen acknowledged at now. */
static void
lat_note(struct lat *l, size_t i, uint64_t now)
{
	uint64_t due = l->t0 + i * l->step;

	l->lat[i] = now > due ? now - due : 0;
	l->t_end = now;
}

/* walmmap_process() callback: count records from the scheduled send. */
static void
lat_ack_cb(void *arg, int64_t first_seq, uint32_t count, int error)
{
	struct lat *l = arg;
	uint64_t now = wb_now_ns();
	uint32_t i;

	(void)first_seq;
	(void)error;
	for (i = 0; i < count && l->acked < l->n; i++, l->acked++)
		lat_note(l, l->acked, now);
}

/* A run of rate records/s: warm seconds, then secs counted. */
static int
lat_alloc(struct lat *l, long rate, double warm, double secs)
{
	memset(l, 0, sizeof *l);
	l->n = (size_t)((double)rate * (warm + secs));
	l->step = 1000000000ull / (uint64_t)rate;
	return ((l->lat = calloc(l->n, sizeof *l->lat)) == NULL ? -1 : 0);
}

/* qsort() order of uint64_t. */
static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return ((x > y) - (x < y));
}

/* The counted part of l (after the warm-up), sorted; *n its length. */
static uint64_t *
lat_counted(struct lat *l, long rate, double warm, size_t *n)
{
	size_t skip = (size_t)((double)rate * warm);

	*n = l->n - skip;
	qsort(l->lat + skip, *n, sizeof *l->lat, cmp_u64);
	return (l->lat + skip);
}

/*
 * A run that cannot keep the offered rate would last as long as its
 * backlog: it stops 1 s after the last record was due, and the records
 * still unacknowledged count from their due time to then (a lower bound;
 * the note flags the run). 1: stop now.
 */
static int
lat_over(struct lat *l, uint64_t now)
{
	size_t i;

	uint64_t end = l->t_end;

	if (now < l->t0 + l->n * l->step + 1000000000ull)
		return (0);
	l->real = l->acked;
	l->stopped = 1;
	for (i = l->acked; i < l->n; i++)
		lat_note(l, i, now);
	l->acked = l->n;
	l->t_end = end;
	return (1);
}

/* Records/s the run achieved, start to last acknowledgement. */
static double
lat_rate(const struct lat *l)
{
	return (l->t_end > l->t0 ? (double)(l->stopped ? l->real : l->n) /
	    ((double)(l->t_end - l->t0) / 1e9) : -1);
}

/* p50/p99/p999 of sorted v. */
static void
lat_pcts(const uint64_t *v, size_t n, double p[3])
{
	p[0] = v[n / 2];
	p[1] = v[n * 99 / 100];
	p[2] = v[n * 999 / 1000];
}

/* Through walmmapd's socket, non-blocking, written acks. */
static int
lat_sock(const char *sock, struct lat *l)
{
	struct walmmap *w;
	size_t sent = 0;
	uint8_t buf[64];
	int rc;

	if (walmmap_connect(&w, sock, WALMMAP_ACK_WRITTEN, WALMMAP_NONBLOCK)
	    != 0)
		return (-1);
	walmmap_set_ack_cb(w, lat_ack_cb, l);
	wb_fill(buf, sizeof buf, 0);
	l->t0 = wb_now_ns();
	while (l->acked < l->n) {
		uint64_t now = wb_now_ns();

		if (lat_over(l, now))
			break;
		if (sent < l->n && now >= l->t0 + sent * l->step) {
			rc = walmmap_append(w, buf, sizeof buf,
			    WALMMAP_ACK_DEFAULT, NULL);
			if (rc == 0)
				sent++;
			else if (rc != -WALMMAP_EAGAIN) {
				walmmap_close(w);
				return (-1);
			}
		}
		if (walmmap_process(w) != 0) {
			walmmap_close(w);
			return (-1);
		}
	}
	walmmap_close(w);
	return (0);
}

/*
 * Through walmmapd's shared-memory ring: the record counts once the
 * producer sees it written (walmmap_progress() reads the ring's written
 * count, no system call).
 */
static int
lat_shm(const char *sock, struct lat *l)
{
	struct walmmap_progress p;
	struct walmmap *w;
	size_t sent = 0;
	uint8_t buf[64];

	if (walmmap_connect(&w, sock, WALMMAP_ACK_WRITTEN, WALMMAP_SHM) != 0)
		return (-1);
	if (!walmmap_shm_active(w, NULL)) {
		walmmap_close(w);
		return (-1);
	}
	wb_fill(buf, sizeof buf, 0);
	l->t0 = wb_now_ns();
	while (l->acked < l->n) {
		uint64_t now = wb_now_ns();

		if (lat_over(l, now))
			break;
		if (sent < l->n && now >= l->t0 + sent * l->step) {
			if (walmmap_append(w, buf, sizeof buf,
			    WALMMAP_ACK_DEFAULT, NULL) != 0) {
				walmmap_close(w);
				return (-1);
			}
			sent++;
		}
		walmmap_progress(w, &p);
		if (p.acked > l->acked) {
			now = wb_now_ns();
			while (l->acked < p.acked && l->acked < l->n)
				lat_note(l, l->acked++, now);
		}
	}
	walmmap_close(w);
	return (0);
}

/* The socket's round trip at the same load: an echo over a pair. */
static int
echo_child(int i, void *arg)
{
	const int *sp = arg;
	int s = sp[1];
	uint8_t buf[256];
	ssize_t n;

	(void)i;
	close(sp[0]);	/* so the parent's close ends our loop */
	if (can_pin())
		(void)wb_pin_self(CONS_CPU);
	wb_child_sync();
	/* The parent may close with frames in flight (lat_over()). */
	while ((n = recv(s, buf, sizeof buf, 0)) > 0)
		if (send(s, buf, (size_t)n, 0) != n)
			break;
	return (0);
}

/* One echo run at l's rate over a SOCK_SEQPACKET pair. */
static int
echo_run(struct lat *l)
{
	struct wb_group g;
	size_t s = 0;
	uint8_t buf[256];
	int sp[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) == -1)
		return (-1);
	if (wb_start_children(&g, 1, echo_child, sp) != 0)
		return (-1);
	close(sp[1]);
	memset(buf, 'x', sizeof buf);
	wb_go(&g);
	l->t0 = wb_now_ns();
	while (l->acked < l->n) {
		uint64_t now = wb_now_ns();

		if (lat_over(l, now))
			break;
		if (s < l->n && now >= l->t0 + s * l->step &&
		    send(sp[0], buf, sizeof(struct wal_msg_append) + 68,
		    MSG_DONTWAIT) > 0)
			s++;
		while (l->acked < s && recv(sp[0], buf, sizeof buf,
		    MSG_DONTWAIT) > 0)
			lat_note(l, l->acked++, wb_now_ns());
	}
	close(sp[0]);
	return (wb_wait_children(&g));
}

/*
 * Shared memory's round trip at the same load: a raw SPSC ping-pong. The
 * producer writes a 64-byte record into a ring and publishes its tail;
 * the other process copies it out and publishes how many it has taken;
 * the producer counts a record when it sees that. No daemon, no log.
 */
struct pong {
	_Atomic uint64_t	tail;		/* records published */
	uint8_t			pad0[56];
	_Atomic uint64_t	done;		/* records taken */
	uint8_t			pad1[56];
	_Atomic int		stop;
	uint8_t			pad2[60];
	uint8_t			data[1u << 20];
};

/* The ping-pong's far side: take records, publish how many. */
static int
pong_child(int i, void *arg)
{
	struct pong *q = arg;
	uint64_t head = 0, tail;
	uint8_t out[64];
	long spin = 0;

	(void)i;
	if (can_pin())
		(void)wb_pin_self(CONS_CPU);
	wb_child_sync();
	while (!atomic_load_explicit(&q->stop, memory_order_relaxed)) {
		tail = atomic_load_explicit(&q->tail, memory_order_acquire);
		if (tail == head) {
			if (++spin > 100000)
				sched_yield();
			continue;
		}
		spin = 0;
		for (; head < tail; head++)
			memcpy(out, q->data + (head % (sizeof q->data / 64)) *
			    64, sizeof out);
		atomic_store_explicit(&q->done, head, memory_order_release);
	}
	return (0);
}

/* One ping-pong run at l's rate. */
static int
pong_run(struct lat *l)
{
	struct wb_group g;
	struct pong *q;
	uint64_t done, s = 0;
	uint8_t buf[64];
	const size_t slots = sizeof q->data / 64;

	if ((q = wb_shared(sizeof *q)) == NULL)
		return (-1);
	memset(q, 0, sizeof *q);
	wb_fill(buf, sizeof buf, 0);
	if (wb_start_children(&g, 1, pong_child, q) != 0)
		return (-1);
	wb_go(&g);
	l->t0 = wb_now_ns();
	while (l->acked < l->n) {
		uint64_t now = wb_now_ns();

		if (lat_over(l, now))
			break;
		if (s < l->n && now >= l->t0 + s * l->step &&
		    s - l->acked < slots) {
			memcpy(q->data + (s % slots) * 64, buf, sizeof buf);
			atomic_store_explicit(&q->tail, ++s,
			    memory_order_release);
		}
		done = atomic_load_explicit(&q->done, memory_order_acquire);
		if (done > l->acked) {
			now = wb_now_ns();
			while (l->acked < done)
				lat_note(l, l->acked++, now);
		}
	}
	atomic_store(&q->stop, 1);
	(void)wb_wait_children(&g);
	munmap(q, sizeof *q);
	return (0);
}

/* "; walmmapd -o a -o b" for a note, "" without arguments. */
static const char *
lat_args(const char *const *args, char *buf, size_t len)
{
	size_t n;
	int i;

	buf[0] = '\0';
	if (args == NULL)
		return (buf);
	n = (size_t)snprintf(buf, len, "; walmmapd");
	for (i = 0; args[i] != NULL && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, " %s", args[i]);
	return (buf);
}

/*
 * One latency variant: alternating runs of the baseline and walmmapd,
 * each with a warm-up, the median of each percentile and of the per-run
 * p99 ratios (walmmapd / baseline: lower is better), and in --json the
 * CDF of every run.
 */
static int
lat_variant(const struct wb *wb, int shm, long rate, const char *variant,
    const char *const *args)
{
	const double warm = wb->quick ? 0.05 : 1.0;
	const double secs = wb->quick ? 0.2 : 10.0;
	double w[3][MAXREPS], b[3][MAXREPS], ratio[MAXREPS], rb[MAXREPS],
	    ra[MAXREPS], p[3], wr[MAXREPS], br[MAXREPS];
	struct wb_result r;
	struct wb_daemon d;
	struct lat l;
	uint64_t *v;
	size_t n;
	char series[64], opts[64];
	int k, j, rc;

	for (k = 0; k < wb->reps; k++) {
		rb[k] = wb_cpu_rtt_ns();
		if (lat_alloc(&l, rate, warm, secs) != 0)
			return (-1);
		if (can_pin())
			(void)wb_pin_self(PROD_CPU);	/* as for walmmapd */
		rc = shm ? pong_run(&l) : echo_run(&l);
		wb_unpin_self();
		if (rc != 0 || (v = lat_counted(&l, rate, warm, &n)) == NULL)
			return (-1);
		lat_pcts(v, n, p);
		br[k] = lat_rate(&l);
		for (j = 0; j < 3; j++)
			b[j][k] = p[j];
		snprintf(series, sizeof series, "%s run %d", shm ?
		    "raw SPSC ping-pong" : "raw SOCK_SEQPACKET echo", k + 1);
		wb_report_cdf(wb, "latency", variant, series, v, n);
		free(l.lat);

		if (lat_alloc(&l, rate, warm, secs) != 0 ||
		    daemon_start_pinned(wb, &d, "latency", args) != 0)
			return (-1);
		if (can_pin())
			(void)wb_pin_self(PROD_CPU);
		rc = shm ? lat_shm(d.sock, &l) : lat_sock(d.sock, &l);
		wb_unpin_self();
		wb_daemon_stop(&d, 1);
		if (rc != 0 || (v = lat_counted(&l, rate, warm, &n)) == NULL)
			return (-1);
		lat_pcts(v, n, p);
		wr[k] = lat_rate(&l);
		for (j = 0; j < 3; j++)
			w[j][k] = p[j];
		snprintf(series, sizeof series, "walmmapd %s run %d", shm ?
		    "shm" : "socket", k + 1);
		wb_report_cdf(wb, "latency", variant, series, v, n);
		free(l.lat);
		ratio[k] = b[1][k] > 0 ? w[1][k] / b[1][k] : 0;
		ra[k] = wb_cpu_rtt_ns();
	}
	wb_result_init(&r, "latency", shm ? "raw SPSC ping-pong" :
	    "raw SOCK_SEQPACKET echo");
	snprintf(r.variant, sizeof r.variant, "%s", variant);
	/* Achieved rates: below the offered one, the sender fell behind. */
	r.rps = wb_median(wr, wb->reps);
	r.base_rps = wb_median(br, wb->reps);
	r.rec_bytes = 64;
	r.p50 = wb_median(w[0], wb->reps);
	r.p99 = wb_median(w[1], wb->reps);
	r.p999 = wb_median(w[2], wb->reps);
	r.base_p50 = wb_median(b[0], wb->reps);
	r.base_p99 = wb_median(b[1], wb->reps);
	r.base_p999 = wb_median(b[2], wb->reps);
	r.ratio = wb_median(ratio, wb->reps);
	r.rtt_before = wb_median(rb, wb->reps);
	r.rtt_after = wb_median(ra, wb->reps);
	snprintf(r.note, sizeof r.note, "ratio: walmmapd p99 / baseline p99 "
	    "(lower is better), median of %d runs of %.1f s after %.2f s "
	    "warm-up, from the scheduled send, pinned, placement moved in "
	    "%d%s%s", wb->reps, secs, warm, moved(rb, ra, wb->reps),
	    lat_args(args, opts, sizeof opts), r.rps < 0.95 * (double)rate ||
	    r.base_rps < 0.95 * (double)rate ?
	    "; OFFERED RATE NOT SUSTAINED (rec/s: achieved)" : "");
	wb_report(wb, &r);
	return (0);
}

/*
 * Latency through the socket and through a ring, at fixed rates; through
 * a ring also with the daemon's background work paced (prefault_step,
 * writeback_step), which walbench's pinning puts on the drainer's CPU.
 */
int
wb_latency(const struct wb *wb)
{
	static const char *const paced[] = { "-o", "prefault_step=64K",
		"-o", "writeback_step=1M", NULL };

	if (lat_variant(wb, 0, 100000, "socket, 64B at 100k/s", NULL) != 0 ||
	    lat_variant(wb, 1, 100000, "shm, 64B at 100k/s", NULL) != 0 ||
	    lat_variant(wb, 1, 100000, "shm, 64B at 100k/s, paced", paced) !=
	    0 ||
	    lat_variant(wb, 1, 1000000, "shm, 64B at 1M/s", NULL) != 0 ||
	    lat_variant(wb, 1, 1000000, "shm, 64B at 1M/s, paced", paced) !=
	    0)
		return (-1);
	return (0);
}
