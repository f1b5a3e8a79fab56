/*
 * walbench - the cost of idempotence: the same appends with producer seqs
 * (APPEND_P, journalled in the producer table) and without (APPEND), in
 * the same run, in-process and through a real walmmapd.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "walbench.h"
#include "wal_format.h"
#include "wal_proto.h"
#include "wal_ptab.h"
#include "wal_ring.h"

#define IDEM_BATCH	64
#define IDEM_WINDOW	32		/* frames in flight */

/*
 * The daemon's append path in-process (reserve, copy, commit deferred,
 * flush per frame of 64), with or without a journal entry per record.
 */
static double
idem_core(const struct wb *wb, uint32_t size, long n, int on)
{
	struct wal_ring_config cfg;
	struct wal_ring_stats st;
	struct wal_ptab_recovery info;
	struct wal_ptab *t = NULL;
	struct wal_ring *r;
	struct wal_error err;
	char dir[PATH_MAX];
	static uint8_t payload[4096];
	uint8_t *dst;
	double t0, t1;
	long i, fit;
	int waited, dfd, slot = 0;

	snprintf(dir, sizeof dir, "%s/idem-core", wb->tmp);
	if (mkdir(dir, 0755) == -1)
		return (-1);
	memset(&cfg, 0, sizeof cfg);
	cfg.dir = dir;
	cfg.segment_size = wb->quick ? 16u << 20 : 64u << 20;
	cfg.ring_segments = wb->quick ? 4 : WAL_RING_MAX;
	wb_fill(payload, sizeof payload, 0);
	if (wal_ring_open(&cfg, &r, NULL, &err) != 0) {
		fprintf(stderr, "walbench: %s\n", err.msg);
		return (-1);
	}
	if (on) {
		if ((dfd = open(dir, O_RDONLY | O_DIRECTORY)) == -1 ||
		    wal_ptab_open(dfd, dir, 0, NULL, &t, &info, &err) != 0) {
			fprintf(stderr, "walbench: producer table: %s\n",
			    err.msg);
			return (-1);
		}
		close(dfd);
		slot = wal_ptab_create(t, 0, 0, 1, 0, NULL, NULL);
	}
	for (waited = 0; waited < 600; waited++) {
		wal_ring_stats(r, &st);
		if (st.standby + 1 >= cfg.ring_segments)
			break;
		usleep(50000);
	}
	fit = (long)((st.standby * st.segment_size) / wal_record_span(size));
	if (fit < n)
		n = fit;
	t0 = wb_now();
	for (i = 0; i < n; i++) {
		if (wal_ring_reserve(r, size, &dst, &err) != 0)
			break;
		memcpy(dst, payload, size);
		if (on)
			wal_ptab_note(t, 1, (uint64_t)i + 1,
			    wal_ring_next_seq(r), i % IDEM_BATCH == 0 ?
			    WAL_PTAB_J_FIRST : 0);
		(void)wal_ring_commit_deferred(r, 0);
		if (i % IDEM_BATCH == IDEM_BATCH - 1) {
			wal_ring_flush(r);
			if (on)
				wal_ptab_advance(t, slot, (uint64_t)i + 2, i,
				    0);
		}
	}
	wal_ring_flush(r);
	t1 = wb_now();
	wal_ring_close(r);
	wal_ptab_close(t);
	wb_rmtree(dir);
	return (i == n ? (double)n / (t1 - t0) : -1);
}

static int
raw_connect(const char *path)
{
	struct sockaddr_un sun;
	struct wal_msg_hello h;
	uint8_t buf[512];
	int s;

	if ((s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) == -1)
		return (-1);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path)
		return (-1);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (connect(s, (struct sockaddr *)&sun, sizeof sun) == -1)
		return (-1);
	memset(&h, 0, sizeof h);
	h.hdr.type = WAL_MSG_HELLO;
	h.hdr.len = sizeof h;
	h.version_min = h.version_max = WAL_PROTO_VERSION;
	h.ack = WAL_ACK_WRITTEN;
	if (send(s, &h, sizeof h, 0) != (ssize_t)sizeof h ||
	    recv(s, buf, sizeof buf, 0) <= 0)
		return (-1);
	return (s);
}

/* Count the ACK entries in frames that came; -1 on EOF/ERROR. */
static long
take_acks(int s, int wait)
{
	uint8_t buf[WAL_PROTO_MAX_FRAME];
	struct wal_msg_ack a;
	long got = 0;
	ssize_t k;

	while ((k = recv(s, buf, sizeof buf, wait && got == 0 ? 0 :
	    MSG_DONTWAIT)) > 0) {
		memcpy(&a, buf, sizeof a);
		if (a.hdr.type == WAL_MSG_ACK)
			got += a.count;
		else if (a.hdr.type == WAL_MSG_ERROR)
			return (-1);
	}
	if (k == 0)
		return (-1);
	return (got);
}

/*
 * One client through a fresh walmmapd: frames of 64 records of size
 * bytes, written acks, IDEM_WINDOW frames in flight; APPEND_P (on) or
 * APPEND. Records/s.
 */
static double
idem_seqpacket(const struct wb *wb, uint32_t size, long frames, int on)
{
	static const char *const args[] = { "--segment-size", "512M",
	    "--ring", "2", NULL };
	static const char *const qargs[] = { "--segment-size", "64M",
	    "--ring", "2", NULL };
	struct wb_daemon d;
	struct wal_msg_append_p ap;
	struct wal_msg_append a;
	struct wal_msg_producer pm;
	uint8_t frame[WAL_PROTO_MAX_FRAME], buf[512];
	size_t hl = on ? sizeof ap : sizeof a, off;
	long sent = 0, acked = 0, k;
	double t0, t1;
	int s, j;

	if (wb_daemon_start(wb, &d, "idem", 0, wb->quick ? qargs : args) != 0)
		return (-1);
	if ((s = raw_connect(d.sock)) == -1)
		goto fail;
	if (on) {
		memset(&pm, 0, sizeof pm);
		pm.hdr.type = WAL_MSG_PRODUCER;
		pm.hdr.len = sizeof pm;
		if (send(s, &pm, sizeof pm, 0) != (ssize_t)sizeof pm ||
		    recv(s, buf, sizeof buf, 0) !=
		    (ssize_t)sizeof(struct wal_msg_producer_ok))
			goto fail;
	}
	for (off = hl, j = 0; j < IDEM_BATCH; j++) {
		memcpy(frame + off, &size, 4);
		wb_fill(frame + off + 4, size, (uint64_t)j);
		off += 4 + size;
	}
	t0 = wb_now();
	while (acked < frames) {
		while (sent < frames && sent - acked < IDEM_WINDOW) {
			if (on) {
				memset(&ap, 0, sizeof ap);
				ap.hdr.type = WAL_MSG_APPEND_P;
				ap.hdr.len = (uint32_t)off;
				ap.hdr.id = (uint64_t)sent + 1;
				ap.count = IDEM_BATCH;
				ap.ack = WAL_ACK_WRITTEN;
				ap.first_pseq = (uint64_t)sent * IDEM_BATCH + 1;
				memcpy(frame, &ap, sizeof ap);
			} else {
				memset(&a, 0, sizeof a);
				a.hdr.type = WAL_MSG_APPEND;
				a.hdr.len = (uint32_t)off;
				a.hdr.id = (uint64_t)sent + 1;
				a.count = IDEM_BATCH;
				a.ack = WAL_ACK_WRITTEN;
				memcpy(frame, &a, sizeof a);
			}
			if (send(s, frame, off, 0) != (ssize_t)off)
				goto fail;
			sent++;
		}
		if ((k = take_acks(s, 1)) < 0)
			goto fail;
		acked += k;
	}
	t1 = wb_now();
	close(s);
	wb_daemon_stop(&d, 1);
	return ((double)(frames * IDEM_BATCH) / (t1 - t0));
fail:
	fprintf(stderr, "walbench: idem seqpacket failed: %s\n",
	    strerror(errno));
	wb_daemon_stop(&d, 1);
	return (-1);
}

#define MAXREPS	99

int
wb_idem(const struct wb *wb)
{
	static const uint32_t sizes[] = { 32, 256 };
	struct wb_result r;
	double on[MAXREPS], off[MAXREPS], q[MAXREPS];
	long n, frames;
	size_t i;
	int k;

	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		n = (long)((wb->quick ? 40ull : 400ull) << 20) /
		    (long)wal_record_span(sizes[i]);
		for (k = 0; k < wb->reps; k++) {
			off[k] = idem_core(wb, sizes[i], n, 0);
			on[k] = idem_core(wb, sizes[i], n, 1);
			if (on[k] < 0 || off[k] < 0)
				return (-1);
			q[k] = on[k] / off[k];
		}
		wb_result_init(&r, "idem", "the same without producer seqs");
		snprintf(r.variant, sizeof r.variant, "core %uB", sizes[i]);
		r.rps = wb_median(on, wb->reps);
		r.rec_bytes = sizes[i];
		r.base_rps = wb_median(off, wb->reps);
		snprintf(r.note, sizeof r.note, "ring reserve/commit/flush per "
		    "64 + journal entry vs none, median of %d; median of the "
		    "pairs' ratios %.3f", wb->reps, wb_median(q, wb->reps));
		wb_report(wb, &r);
	}
	frames = wb->quick ? 5000 : 80000;
	for (k = 0; k < wb->reps; k++) {
		off[k] = idem_seqpacket(wb, 64, frames, 0);
		on[k] = idem_seqpacket(wb, 64, frames, 1);
		if (on[k] < 0 || off[k] < 0)
			return (-1);
		q[k] = on[k] / off[k];
	}
	wb_result_init(&r, "idem", "APPEND (no producer)");
	snprintf(r.variant, sizeof r.variant, "seqpacket batch 64");
	r.rps = wb_median(on, wb->reps);
	r.rec_bytes = 64;
	r.base_rps = wb_median(off, wb->reps);
	snprintf(r.note, sizeof r.note, "APPEND_P vs APPEND, 1 client, 64B, "
	    "written acks, %d frames in flight, median of %d; median of the "
	    "pairs' ratios %.3f", IDEM_WINDOW, wb->reps, wb_median(q,
	    wb->reps));
	wb_report(wb, &r);
	wb_skip(wb, "idem", "shm: no variant yet for rings on producer "
	    "connections (walmmap_producer_set_shm)");
	return (0);
}
