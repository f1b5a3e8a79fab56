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
	tcase_add_test(tc, test_verify_after_segment_size_change);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(attack_suite()));
}
