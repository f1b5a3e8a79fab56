/*
 * walmmapd - the sync thread: group commit off the event loop.
 *
 * The loop calls syncer_request() whenever records wait for durability.
 * The thread runs wal_ring_sync_paced(), which covers every record
 * written before it started (pacing its write-back by writeback_step: the
 * loop's own syncs, at a stop or a hand-over, do not pace), then writes
 * to an eventfd the loop watches. Requests that
 * arrive while a sync runs are folded into the next one, so one fdatasync
 * serves every client that asked in the meantime.
 *
 * Shared fields are guarded by lock; the loop reads results only after the
 * eventfd fired (the write happens after the results are stored under
 * lock, the loop takes lock to read them).
 *
 * A failure is sticky: once a sync failed the thread syncs no more, every
 * result reports the failure, and durable stays at the last seq a
 * successful sync covered (see srv_sync_failed in walmmapd.c).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server.h"
#include "wal_ring.h"

struct syncer {
	struct wal_ring	*ring;
	int		 notify_fd;
	pthread_t	 thread;
	pthread_mutex_t	 lock;
	pthread_cond_t	 cond;
	int		 requested;	/* (lock) */
	int		 stop;		/* (lock) */
	/* Results (lock). */
	int64_t		 durable;	/* covered by the last good sync */
	int		 failed;	/* sticky */
	char		 err[WAL_ERROR_MSG_MAX];
	uint64_t	 count;
	uint64_t	 ns_total;
	uint64_t	 ns_max;
	struct metrics_hist latency;	/* of syncs that synced something */
};

static void	*syncer_main(void *);

/* Start the thread. */
struct syncer *
syncer_start(struct wal_ring *ring, int notify_fd)
{
	struct syncer *s;
	sigset_t all, saved;
	int rc;

	if ((s = calloc(1, sizeof *s)) == NULL)
		return (NULL);
	s->ring = ring;
	s->notify_fd = notify_fd;
	s->durable = wal_ring_durable_seq(ring);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	/* Signals are the event loop's: the thread starts with all blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	rc = pthread_create(&s->thread, NULL, syncer_main, s);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc != 0) {
		pthread_mutex_destroy(&s->lock);
		pthread_cond_destroy(&s->cond);
		free(s);
		return (NULL);
	}
	return (s);
}

/* Ask for a sync (coalesced with any already asked for). */
void
syncer_request(struct syncer *s)
{
	pthread_mutex_lock(&s->lock);
	if (!s->requested) {
		s->requested = 1;
		pthread_cond_signal(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
}

/* Stop and join the thread (a requested sync still runs first). */
void
syncer_stop(struct syncer *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = 1;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

/*
 * Latest result: 0 and *durable, or -1 with the failure text once any
 * sync failed (*durable is then what the last good sync covered).
 */
int
syncer_result(struct syncer *s, int64_t *durable, char *err, size_t errlen)
{
	int failed;

	pthread_mutex_lock(&s->lock);
	*durable = s->durable;
	failed = s->failed;
	if (failed)
		snprintf(err, errlen, "%s", s->err);
	pthread_mutex_unlock(&s->lock);
	return (failed ? -1 : 0);
}

void
syncer_stats(struct syncer *s, uint64_t *count, uint64_t *ns_total,
    uint64_t *ns_max)
{
	pthread_mutex_lock(&s->lock);
	*count = s->count;
	*ns_total = s->ns_total;
	*ns_max = s->ns_max;
	pthread_mutex_unlock(&s->lock);
}

/* The latency histogram of group commits that synced something. */
void
syncer_latency(struct syncer *s, struct metrics_hist *h)
{
	pthread_mutex_lock(&s->lock);
	*h = s->latency;
	pthread_mutex_unlock(&s->lock);
}

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

static void *
syncer_main(void *arg)
{
	struct syncer *s = arg;
	struct wal_error err;
	uint64_t one = 1, t0, dt, before;
	size_t b;
	int64_t durable;
	int rc;

	(void)pthread_setname_np(pthread_self(), "wal-sync");
	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (!s->requested && !s->stop)
			pthread_cond_wait(&s->cond, &s->lock);
		if (!s->requested && s->stop)
			break;
		s->requested = 0;
		if (s->failed)
			continue;	/* sticky: nothing more to learn */
		pthread_mutex_unlock(&s->lock);

		before = wal_ring_sync_count(s->ring);
		t0 = mono_ns();
		rc = wal_ring_sync_paced(s->ring, &durable, &err);
		dt = mono_ns() - t0;

		pthread_mutex_lock(&s->lock);
		if (rc == 0)
			s->durable = durable;
		else {
			s->failed = 1;
			snprintf(s->err, sizeof s->err, "%s", err.msg);
		}
		s->count++;
		s->ns_total += dt;
		if (dt > s->ns_max)
			s->ns_max = dt;
		/* Only a sync that synced: nothing to do takes no time. */
		if (wal_ring_sync_count(s->ring) != before) {
			for (b = 0; b < METRICS_SYNC_BUCKETS &&
			    dt > metrics_sync_bounds_ns[b]; b++)
				;
			s->latency.bucket[b]++;
			s->latency.sum_ns += dt;
			s->latency.count++;
		}
		/* Wake the loop; the results above are already stored. */
		if (write(s->notify_fd, &one, sizeof one) == -1 &&
		    errno != EAGAIN) {
			/* The loop will see the next notification. */
		}
	}
	pthread_mutex_unlock(&s->lock);
	return (NULL);
}
