/*
 * walmmapd tests - a sync that fails (an I/O error in msync, injected by
 * the fault shim) is sticky: every client waiting for durability gets the
 * error, on the socket and through a shared-memory ring, nothing is ever
 * reported durable after it, and the daemon stops with exit status 1.
 *
 * The shim fails msync() without calling it, so the pages stay dirty and
 * the next sync would succeed: exactly the kernel behaviour (an error
 * reported once) that made PostgreSQL panic on fsync failure.
 */
#include "config.h"

#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "faultinject.h"
#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_proto.h"
#include "wal_shm.h"
#include "walmmap.h"

static char		*base;
static char		 ctlpath[PATH_MAX];
static struct wf_ctl	*ctl;
static struct ts_daemon	 d;

/*
 * A periodic sync every 100 ms: without the fix, the sync after the failed
 * one succeeds and is reported (the defect); with it, nothing is.
 */
static void
setup(void)
{
	base = ts_mkdtemp("syncfail");
	ts_daemon_init(&d, base);
	snprintf(ctlpath, sizeof ctlpath, "%s/faults", base);
	ck_assert_ptr_nonnull(ctl = wf_ctl_open(ctlpath));
	d.fault_ctl = ctlpath;
	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "1M", "-o",
	    "prefault=no", "-o", "sync_interval=100ms", "-o", "max_record=1K",
	    "-o", "shm_size=64K", NULL), 0);
}

static void
teardown(void)
{
	ts_daemon_kill(&d);
	if (d.notify_fd != -1)
		close(d.notify_fd);
	wf_ctl_close(ctl);
	ts_rmtree(base);
}

/* The daemon stopped by itself with status 1 and logged why, once. */
static void
check_stopped(void)
{
	char *log, *p;
	int n = 0;

	ck_assert_int_eq(ts_daemon_wait_exit(&d, 30000), 1);
	log = ts_daemon_log(&d);
	for (p = log; (p = strstr(p, "<3>walmmapd: sync failed: ")) != NULL;
	    p++)
		n++;
	ck_assert_msg(n == 1, "%d error lines for the failed sync:\n%s", n,
	    log);
	ck_assert_msg(strstr(log, "Input/output error") != NULL, "%s", log);
	ck_assert_msg(strstr(log, "sync failed: stopping") != NULL, "%s", log);
	free(log);
}

/* Receive one frame within 10 s; its type, the frame in buf. */
static unsigned
recv_frame(int s, uint8_t *buf, size_t len, struct wal_msg *hdr)
{
	struct pollfd pfd = { s, POLLIN, 0 };
	ssize_t n;

	ck_assert_msg(poll(&pfd, 1, 10000) == 1, "no answer in 10 s");
	n = recv(s, buf, len, 0);
	ck_assert_msg(n >= (ssize_t)sizeof *hdr, "connection closed (%zd)",
	    n);
	memcpy(hdr, buf, sizeof *hdr);
	return (hdr->type);
}

/* An APPEND of one record of len bytes at level ack, built in buf. */
static size_t
make_append(uint8_t *buf, size_t buflen, uint64_t id, uint8_t ack,
    size_t len)
{
	struct wal_msg_append a;
	uint32_t size = (uint32_t)len;
	size_t off = sizeof a;

	ck_assert_uint_le(sizeof a + sizeof size + len, buflen);
	memset(&a, 0, sizeof a);
	a.hdr.type = WAL_MSG_APPEND;
	a.hdr.id = id;
	a.ack = ack;
	a.count = 1;
	memcpy(buf + off, &size, sizeof size);
	off += sizeof size;
	memset(buf + off, 'r', len);
	off += len;
	a.hdr.len = (uint32_t)off;
	memcpy(buf, &a, sizeof a);
	return (off);
}

/* Send an APPEND (see make_append). */
static void
send_append(int s, uint64_t id, uint8_t ack, size_t len)
{
	uint8_t buf[4096];
	size_t n = make_append(buf, sizeof buf, id, ack, len);

	ck_assert_int_eq(send(s, buf, n, 0), (ssize_t)n);
}

/*
 * (a) walctl append --ack durable fails when its sync fails, and walctl
 * sync afterwards does not report the record durable.
 */
START_TEST(test_syncfail_socket)
{
	char *out;
	int rc;

	wf_arm(ctl, WF_MSYNC, 1, EIO, 0);
	rc = ts_run_prog("client/walctl", "r\n", 2, &out, "-s", d.sock,
	    "append", "--ack", "durable", NULL);
	ck_assert_msg(rc != 0, "append --ack durable succeeded: %s", out);
	ck_assert_msg(strstr(out, "sync failed") != NULL, "%s", out);
	free(out);
	ck_assert_uint_ge(atomic_load(&ctl->op[WF_MSYNC].injected), 1);
	/* Fails, or finds the daemon gone: never "durable up to seq 0". */
	rc = ts_run_prog("client/walctl", NULL, 0, &out, "-s", d.sock, "sync",
	    NULL);
	ck_assert_msg(rc != 0 && strstr(out, "durable up to") == NULL,
	    "walctl sync after the failure: %d: %s", rc, out);
	free(out);
	check_stopped();
}
END_TEST

/* (b) The same append through a shared-memory ring gets an error. */
START_TEST(test_syncfail_ring)
{
	struct walmmap *w;
	int64_t seq = -1;
	int rc;

	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN,
	    WALMMAP_SHM), 0);
	ck_assert(walmmap_shm_active(w, NULL));
	/* Written records go through before. */
	ck_assert_int_eq(walmmap_append(w, "w", 1, WALMMAP_ACK_WRITTEN, &seq),
	    0);
	ck_assert_int_eq(seq, 0);
	wf_arm(ctl, WF_MSYNC, 1, EIO, 0);
	rc = walmmap_append(w, "r", 1, WALMMAP_ACK_DURABLE, &seq);
	ck_assert_msg(rc == -WALMMAP_ESYNC, "durable append through the ring: "
	    "%d: %s", rc, walmmap_errmsg(w));
	ck_assert_msg(strstr(walmmap_errmsg(w), "sync failed") != NULL, "%s",
	    walmmap_errmsg(w));
	walmmap_close(w);
	check_stopped();
}
END_TEST

/*
 * (b) A ring whose durable record the daemon had not yet taken when the
 * sync failed: the daemon stops, takes it while it drains, and refuses it
 * (a fatal SYNC error); the ring's durable count never moves, though the
 * daemon's final sync would now succeed, and its failed word is set.
 */
START_TEST(test_syncfail_ring_late)
{
	uint8_t buf[1024];
	struct wal_msg hdr;
	struct wal_msg_error e;
	struct ts_ring r;
	struct walmmap *v;
	int64_t seq;

	ts_ring_open(&d, &r, 0);
	/* Published without a ring of the doorbell: the daemon sleeps on. */
	ts_ring_put(&r, "late", 4, 4, WAL_SHM_F_DURABLE | WAL_SHM_F_SEQ);
	atomic_store(&r.hdr->tail, r.tail);

	ck_assert_int_eq(walmmap_connect(&v, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	wf_arm(ctl, WF_MSYNC, 1, EIO, 0);
	ck_assert_int_ne(walmmap_append(v, "s", 1, WALMMAP_ACK_DURABLE, &seq),
	    0);
	walmmap_close(v);

	ck_assert_int_eq(recv_frame(r.sock, buf, sizeof buf, &hdr),
	    WAL_MSG_ERROR);
	memcpy(&e, buf, sizeof e);
	ck_assert_int_eq(e.code, WAL_PERR_SYNC);
	ck_assert_int_eq(e.fatal, 1);
	check_stopped();
	ck_assert_uint_eq(atomic_load(&r.hdr->durable), 0);
	ck_assert_uint_eq(atomic_load(&r.hdr->failed), 1);
	ts_ring_close(&r);
}
END_TEST

/*
 * (c) A connection with an earlier error pending (an append refused for
 * its size) still gets the sync failure, for its durable append and for
 * a SYNC request sent with it.
 */
START_TEST(test_syncfail_after_error)
{
	uint8_t buf[1024], app[256];
	struct wal_msg hdr, sync;
	struct wal_msg_error e;
	struct mmsghdr mm[2];
	struct iovec iov[2];
	size_t alen;
	int s, got_sync = 0, got_err0 = 0, got_ack = 0;

	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	send_append(s, 1, WAL_ACK_DURABLE, 2000);
	ck_assert_int_eq(recv_frame(s, buf, sizeof buf, &hdr), WAL_MSG_ERROR);
	memcpy(&e, buf, sizeof e);
	ck_assert_int_eq(e.code, WAL_PERR_TOO_LARGE);
	ck_assert_int_eq(hdr.id, 1);

	/* A durable append and a SYNC, read in one pass (it is stopped). */
	wf_arm(ctl, WF_MSYNC, 1, EIO, 0);
	alen = make_append(app, sizeof app, 2, WAL_ACK_DURABLE, 10);
	memset(&sync, 0, sizeof sync);
	sync.type = WAL_MSG_SYNC;
	sync.len = sizeof sync;
	sync.id = 3;
	memset(mm, 0, sizeof mm);
	iov[0].iov_base = app;
	iov[0].iov_len = alen;
	iov[1].iov_base = &sync;
	iov[1].iov_len = sizeof sync;
	mm[0].msg_hdr.msg_iov = &iov[0];
	mm[0].msg_hdr.msg_iovlen = 1;
	mm[1].msg_hdr.msg_iov = &iov[1];
	mm[1].msg_hdr.msg_iovlen = 1;
	ts_daemon_signal(&d, SIGSTOP);
	ck_assert_int_eq(sendmmsg(s, mm, 2, 0), 2);
	ts_daemon_signal(&d, SIGCONT);
	while (!(got_err0 && got_sync)) {
		switch (recv_frame(s, buf, sizeof buf, &hdr)) {
		case WAL_MSG_ACK:
			got_ack = 1;
			break;
		case WAL_MSG_ERROR:
			memcpy(&e, buf, sizeof e);
			ck_assert_msg(e.code == WAL_PERR_SYNC, "error %u (id %"
			    PRIu64 ")", e.code, hdr.id);
			if (hdr.id == 0)
				got_err0 = 1;
			else if (hdr.id == 3)
				got_sync = 1;
			break;
		case WAL_MSG_DURABLE:
			ck_abort_msg("DURABLE (id %" PRIu64 ") after the sync "
			    "failed", hdr.id);
			break;
		default:
			ck_abort_msg("unexpected frame %u", hdr.type);
		}
	}
	ck_assert(got_ack);		/* written: that still holds */
	close(s);
	check_stopped();
}
END_TEST

/*
 * (d) A client that never asked for durability stays connected: the
 * daemon still stops, with status 1, saying why once at error level.
 */
START_TEST(test_syncfail_stops)
{
	struct walmmap *w;
	int64_t seq;

	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	ck_assert_int_eq(walmmap_append(w, "w", 1, WALMMAP_ACK_WRITTEN, &seq),
	    0);
	/* The periodic sync covers it, and fails. */
	wf_arm(ctl, WF_MSYNC, 1, EIO, 0);
	check_stopped();
	walmmap_close(w);
}
END_TEST

/*
 * A group commit syncs the producer table only when it changed: every
 * durable sync used to rewrite the table's header and msync it, a second
 * device sync per round even with no idempotent producer at all (one
 * durable client: 215 us per sync instead of 110). Durable appends from a
 * plain client: at most one msync(MS_SYNC) per sync, plus the few of
 * start-up. (test_power_cut in check_producers shows the table is still
 * synced when producers write.)
 */
START_TEST(test_table_sync_only_when_changed)
{
	struct walmmap_status st0, st1;
	struct walmmap *w;
	uint64_t m0, m1, syncs;
	int i;

	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_DURABLE, 0),
	    0);
	ck_assert_int_eq(walmmap_status(w, &st0), 0);
	m0 = atomic_load(&ctl->op[WF_MSYNC].calls);
	for (i = 0; i < 100; i++) {
		ck_assert_int_eq(walmmap_append(w, "d", 1, WALMMAP_ACK_DEFAULT,
		    NULL), 0);
		ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_DURABLE, -1), 0);
	}
	m1 = atomic_load(&ctl->op[WF_MSYNC].calls);
	ck_assert_int_eq(walmmap_status(w, &st1), 0);
	walmmap_close(w);
	syncs = st1.syncs - st0.syncs;
	ck_assert_uint_ge(syncs, 100);	/* one a record at least */
	ck_assert_msg(m1 - m0 <= syncs + 2, "%" PRIu64 " msync calls for %"
	    PRIu64 " syncs of 100 durable records", m1 - m0, syncs);
}
END_TEST

static Suite *
syncfail_suite(void)
{
	Suite *s = suite_create("syncfail");
	TCase *tc = tcase_create("syncfail");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_syncfail_socket);
	tcase_add_test(tc, test_syncfail_ring);
	tcase_add_test(tc, test_syncfail_ring_late);
	tcase_add_test(tc, test_syncfail_after_error);
	tcase_add_test(tc, test_syncfail_stops);
	tcase_add_test(tc, test_table_sync_only_when_changed);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(syncfail_suite()));
}
