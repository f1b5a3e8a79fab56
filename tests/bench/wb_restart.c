/*
 * walbench - restart: the pause a producer sees while walmmapd restarts
 * and hands its connections over (SIGUSR2, see walmmapd(8) RESTARTS),
 * against the time a fresh walmmapd takes to accept its first connection,
 * in the same run.
 *
 * Two producers (one on the socket, one through a shared-memory ring)
 * append 64-byte records one at a time, each waiting for its written ack,
 * and log when each call started and how long it took. The pause of a
 * restart is the longest call that started from 50 ms before the signal
 * until the next restart's window; p50 and p99 over the restarts (20, 5
 * with --quick), for each producer.
 */
#include "config.h"

#include <sys/types.h>

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "walbench.h"
#include "walmmap.h"

#define WR_MAX_CALLS	(4u * 1024 * 1024)
#define WR_WINDOW_NS	50000000ull	/* a window opens before a signal */

/* One producer thread and what it logged. */
struct wr_prod {
	const char		*sock;
	unsigned		 flags;		/* 0 or WALMMAP_SHM */
	pthread_t		 thread;
	uint64_t		*start;		/* when each call started */
	uint64_t		*lat;		/* how long it took */
	_Atomic size_t		 n;
	_Atomic uint64_t	 last_start;	/* of the last call done */
	_Atomic int		 stop;
	int			 failed;
	char			 why[256];
};

static void *
wr_produce(void *arg)
{
	struct wr_prod *p = arg;
	struct walmmap *w;
	uint8_t buf[64];
	uint64_t t0, t1;
	int64_t seq;
	size_t i;
	int rc;

	if ((rc = walmmap_connect(&w, p->sock, WALMMAP_ACK_WRITTEN,
	    p->flags)) != 0) {
		p->failed = 1;
		snprintf(p->why, sizeof p->why, "connect: %s",
		    walmmap_strerror(rc));
		return (NULL);
	}
	wb_fill(buf, sizeof buf, 0);
	for (i = 0; i < WR_MAX_CALLS && !atomic_load(&p->stop); i++) {
		t0 = wb_now_ns();
		if (walmmap_append(w, buf, sizeof buf, WALMMAP_ACK_DEFAULT,
		    &seq) != 0) {
			p->failed = 1;
			snprintf(p->why, sizeof p->why, "append: %s",
			    walmmap_errmsg(w));
			break;
		}
		t1 = wb_now_ns();
		p->start[i] = t0;
		p->lat[i] = t1 - t0;
		atomic_store(&p->n, i + 1);
		atomic_store(&p->last_start, t0);
	}
	walmmap_close(w);
	return (NULL);
}

/* The pause of each restart: the longest call of its window. */
static void
wr_pauses(const struct wr_prod *p, const uint64_t *sig, int nsig,
    uint64_t *pause)
{
	size_t i, n = atomic_load(&p->n);
	uint64_t lo, hi;
	int k;

	for (k = 0; k < nsig; k++) {
		lo = sig[k] - WR_WINDOW_NS;
		hi = k + 1 < nsig ? sig[k + 1] - WR_WINDOW_NS : UINT64_MAX;
		pause[k] = 0;
		for (i = 0; i < n; i++)
			if (p->start[i] >= lo && p->start[i] < hi &&
			    p->lat[i] > pause[k])
				pause[k] = p->lat[i];
	}
}

int
wb_restart(const struct wb *wb)
{
	const int nrestart = wb->quick ? 5 : 20, nfresh = wb->quick ? 2 : 5;
	struct wr_prod prod[2];
	struct wb_daemon d, e;
	struct wb_result r;
	uint64_t sig[20], pause[20];
	double fresh[5], fresh_s;
	int i, j, k, rc = -1;

	/* The baseline: a fresh walmmapd, exec to the first connection. */
	for (i = 0; i < nfresh; i++) {
		memset(&e, 0, sizeof e);
		if (wb_daemon_start(wb, &e, "restart-fresh", 0, NULL) != 0)
			return (-1);
		fresh[i] = wb_daemon_ready_s(&e);
		wb_daemon_stop(&e, 1);
	}
	fresh_s = wb_median(fresh, nfresh);

	memset(&d, 0, sizeof d);
	if (wb_daemon_start(wb, &d, "restart", 0, NULL) != 0)
		return (-1);
	memset(prod, 0, sizeof prod);
	for (j = 0; j < 2; j++) {
		prod[j].sock = d.sock;
		prod[j].flags = j == 0 ? 0 : WALMMAP_SHM;
		prod[j].start = calloc(WR_MAX_CALLS, sizeof(uint64_t));
		prod[j].lat = calloc(WR_MAX_CALLS, sizeof(uint64_t));
		if (prod[j].start == NULL || prod[j].lat == NULL ||
		    pthread_create(&prod[j].thread, NULL, wr_produce,
		    &prod[j]) != 0) {
			fprintf(stderr, "walbench: restart: cannot start a "
			    "producer\n");
			goto out;
		}
	}
	usleep(200000);
	for (k = 0; k < nrestart; k++) {
		sig[k] = wb_now_ns();
		if (kill(d.pid, SIGUSR2) == -1)
			break;
		/* Done once both producers have had calls answered since. */
		for (i = 0; i < 20000; i++) {
			if (atomic_load(&prod[0].last_start) > sig[k] &&
			    atomic_load(&prod[1].last_start) > sig[k])
				break;
			if (prod[0].failed || prod[1].failed)
				break;
			usleep(500);
		}
		usleep(100000);
	}
	for (j = 0; j < 2; j++) {
		atomic_store(&prod[j].stop, 1);
		pthread_join(prod[j].thread, NULL);
		prod[j].thread = 0;
	}
	for (j = 0; j < 2; j++)
		if (prod[j].failed) {
			fprintf(stderr, "walbench: restart: %s producer: %s\n",
			    j == 0 ? "socket" : "ring", prod[j].why);
			goto out;
		}
	for (j = 0; j < 2; j++) {
		wr_pauses(&prod[j], sig, k, pause);
		wb_result_init(&r, "restart", "fresh walmmapd ready");
		snprintf(r.variant, sizeof r.variant, "%s pause, %d restarts",
		    j == 0 ? "socket" : "ring", k);
		wb_percentiles(pause, (size_t)k, &r);
		r.p999 = r.p99;
		r.rps = r.p50 > 0 ? 1e9 / r.p50 : 0;
		r.rec_bytes = 0;
		r.base_rps = 1 / fresh_s;
		snprintf(r.note, sizeof r.note, "pause p50 %.1f ms p99 %.1f ms "
		    "(a restart per rec/s figure); fresh start ready in %.1f ms "
		    "(median of %d)", r.p50 / 1e6, r.p99 / 1e6, fresh_s * 1e3,
		    nfresh);
		wb_report(wb, &r);
	}
	rc = 0;
out:
	for (j = 0; j < 2; j++) {
		if (prod[j].thread != 0) {
			atomic_store(&prod[j].stop, 1);
			pthread_join(prod[j].thread, NULL);
		}
		free(prod[j].start);
		free(prod[j].lat);
	}
	wb_daemon_stop(&d, 1);
	return (rc);
}
