/*
 * walmmapd tests - attacks on the promise that nothing acknowledged is
 * ever lost or duplicated: a record acknowledged written survives kill -9,
 * one acknowledged durable survives a power cut, no record appears twice,
 * seqs never go back, and after a failed sync nothing it covered is called
 * durable and walmmapd stops with status 1. Each test reproduces one way
 * that was broken (issue #13 review).
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "faultinject.h"
#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_reader.h"
#include "wal_ring.h"
#include "walmmap.h"

static char		*base;
static char		 ctlpath[PATH_MAX];
static struct wf_ctl	*ctl;
static struct ts_daemon	 d;

/* Wait (at most 10 s) until the shim failed call at least n times. */
static void
wait_injected(enum wf_call call, uint64_t n)
{
	int i;

	for (i = 0; i < 1000; i++) {
		if (atomic_load(&ctl->op[call].injected) >= n)
			return;
		usleep(10000);
	}
	ck_abort_msg("the shim failed %s %llu times in 10 s, not %llu",
	    wf_call_names[call], (unsigned long long)atomic_load(
	    &ctl->op[call].injected), (unsigned long long)n);
}

/* The sync-failure marker is in the data directory. */
static int
marker_present(void)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof path, "%s/walmmapd.sync-failed", d.data);
	return (access(path, F_OK) == 0);
}

/*
 * The daemon stopped with status 1 within 10 s (it did not need a signal
 * when bysignal is 0), logged the failed sync once and left the marker.
 */
static void
check_failed_stop(int rc)
{
	char *log = ts_daemon_log(&d), *p;
	int n = 0;

	for (p = log; (p = strstr(p, "<3>walmmapd: sync failed: ")) != NULL;
	    p++)
		n++;
	ck_assert_msg(rc == 1, "exit status %d after a failed sync:\n%s", rc,
	    log);
	ck_assert_msg(n == 1, "%d error lines for the failed sync:\n%s", n,
	    log);
	ck_assert_msg(marker_present(), "no walmmapd.sync-failed:\n%s", log);
	free(log);
}

/*
 * The background thread's fdatasync of a sealed segment fails while no
 * client waits for durability (written acks only, no periodic sync): the
 * failure is as final as any other, so the daemon stops by itself with
 * status 1 (walmmapd(8), I/O ERRORS) instead of running on with a log that
 * can never be synced again.
 */
START_TEST(test_bg_sync_failure_stops)
{
	static uint8_t rec[30000];
	struct walmmap *w;
	int64_t seq;
	int i;

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K",
	    "--ring", "2", "-o", "prefault=no", "-o", "sync_interval=0",
	    NULL), 0);
	/* The first fdatasync of the run: the sealed segment's. */
	wf_arm(ctl, WF_FDATASYNC, 1, EIO, 0);
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	memset(rec, 'b', sizeof rec);
	for (i = 0; i < 5; i++)		/* two rotations */
		ck_assert_msg(walmmap_append(w, rec, sizeof rec,
		    WALMMAP_ACK_WRITTEN, &seq) == 0, "%s", walmmap_errmsg(w));
	wait_injected(WF_FDATASYNC, 1);
	check_failed_stop(ts_daemon_wait_exit(&d, 10000));
	walmmap_close(w);
}
END_TEST

/*
 * A sync that fails after the last client left, at the end of the run
 * (here the checkpoint's fsync, which a full disk had held back until
 * then): the daemon still exits with status 1 and says so, not 0 with the
 * marker silently left behind.
 */
START_TEST(test_final_sync_failure_exit_status)
{
	static uint8_t rec[20000];
	struct walmmap *w;
	int64_t seq;
	int i;

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K",
	    "--ring", "4", "-o", "prefault=no", "-o", "sync_interval=0",
	    NULL), 0);
	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_DURABLE, 0),
	    0);
	memset(rec, 'c', sizeof rec);
	ck_assert_msg(walmmap_append(w, rec, sizeof rec, WALMMAP_ACK_DURABLE,
	    &seq) == 0, "%s", walmmap_errmsg(w));
	/* The three standbys are there: the rotation renames nothing. */
	for (i = 0; i < 1000 && ts_count_files(d.data, "wal_mmap_") < 4; i++)
		usleep(10000);
	ck_assert_int_eq(ts_count_files(d.data, "wal_mmap_"), 4);
	/*
	 * Renames fail: after the rotation the background thread syncs the
	 * sealed segment but cannot replace the checkpoint (nor create a
	 * standby); it retries a second later.
	 */
	wf_arm(ctl, WF_RENAME, 1, EIO, 1);
	ck_assert_msg(walmmap_rotate(w) == 0, "%s", walmmap_errmsg(w));
	wait_injected(WF_RENAME, 2);
	walmmap_close(w);
	/* From now on the storage fails every fsync; then SIGTERM. */
	wf_arm(ctl, WF_FSYNC, 1, EIO, 1);
	wf_disarm(ctl, WF_RENAME);
	check_failed_stop(ts_daemon_stop(&d));
}
END_TEST

/*
 * A clean restart with another segment size removes the unused standbys
 * of the old size, which leaves a gap in the segment ids (ids are never
 * used twice). walctl verify must not call that healthy log damaged.
 */
START_TEST(test_verify_after_segment_size_change)
{
	struct wal_ring_config cfg = { .segment_size = 128 * 1024,
	    .ring_segments = 4, .no_prefault = 1 };
	struct wal_ring_stats st;
	struct wal_recovery info;
	struct wal_error err;
	struct wal_ring *r;
	uint8_t buf[100];
	char *out;
	int i, rc;

	cfg.dir = d.data;
	ck_assert_int_eq(mkdir(d.data, 0750), 0);
	ck_assert_msg(wal_ring_open(&cfg, &r, &info, &err) == 0, "%s",
	    err.msg);
	for (i = 0; i < 1000; i++) {
		wal_ring_stats(r, &st);
		if (st.standby == 3)
			break;
		usleep(10000);
	}
	ck_assert_uint_eq(st.standby, 3);
	memset(buf, 'v', sizeof buf);
	for (i = 0; i < 10; i++)
		ck_assert_int_eq(wal_ring_append(r, buf, sizeof buf, -1, NULL,
		    &err), 0);
	wal_ring_close(r);

	cfg.segment_size = 64 * 1024;
	cfg.ring_segments = 2;
	ck_assert_msg(wal_ring_open(&cfg, &r, &info, &err) == 0, "%s",
	    err.msg);
	ck_assert_uint_eq(info.removed, 3);
	for (i = 0; i < 3000; i++)	/* fills the tail, then 64K ones */
		ck_assert_int_eq(wal_ring_append(r, buf, sizeof buf, -1, NULL,
		    &err), 0);
	wal_ring_stats(r, &st);
	ck_assert_uint_ge(st.active_id, 5);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(d.data, 0, NULL, NULL), 3010);
	rc = ts_run_prog("client/walctl", NULL, 0, &out, "verify", d.data,
	    NULL);
	ck_assert_msg(rc == 0, "walctl verify exit %d: %s", rc, out);
	free(out);
}
END_TEST

static void
setup(void)
{
	base = ts_mkdtemp("attack");
	ts_daemon_init(&d, base);
	snprintf(ctlpath, sizeof ctlpath, "%s/faults", base);
	ck_assert_ptr_nonnull(ctl = wf_ctl_open(ctlpath));
	d.fault_ctl = ctlpath;
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

static Suite *
attack_suite(void)
{
	Suite *s = suite_create("attack_durability");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 3600);
	tcase_add_test(tc, test_bg_sync_failure_stops);
	tcase_add_test(tc, test_final_sync_failure_exit_status);
	tcase_add_test(tc, test_verify_after_segment_size_change);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(attack_suite()));
}
