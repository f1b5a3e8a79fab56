/*
 * walmmapd tests - idempotent producers (PRODUCER, APPEND_P), the
 * producer table and its recovery, transparent reconnect in libwalmmap,
 * provenance in walctl dump. Real walmmapd, real libwalmmap.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "faultinject.h"
#include "powercut.h"
#include "testsupport.h"
#include "tsdaemon.h"
#include "wal_proto.h"
#include "wal_ptab.h"
#include "wal_reader.h"
#include "wal_ring.h"
#include "wal_shm.h"
#include "walmmap.h"

static char		*base;
static struct ts_daemon	 d;

static void
start(const char *o1, const char *o2)
{
	int rc;

	if (o1 == NULL)
		rc = ts_daemon_start(&d, "--segment-size", "256K", "-o",
		    "prefault=no", NULL);
	else if (o2 == NULL)
		rc = ts_daemon_start(&d, "--segment-size", "256K", "-o",
		    "prefault=no", "-o", o1, NULL);
	else
		rc = ts_daemon_start(&d, "--segment-size", "256K", "-o",
		    "prefault=no", "-o", o1, "-o", o2, NULL);
	ck_assert_msg(rc == 0, "walmmapd did not start (%d): %s", rc,
	    ts_daemon_log(&d));
}

/* A raw v2 connection that is producer id (0: new). */
static int
raw_producer(uint64_t id, struct wal_msg_producer_ok *ok)
{
	int s = ts_raw_connect(&d);

	ts_raw_hello(s);
	ck_assert_uint_eq(ts_raw_producer(s, id, ok), 0);
	return (s);
}

/* The next ACK's single entry. */
static struct wal_ack_entry
ack_of(int s)
{
	uint8_t buf[4096];
	struct wal_msg_ack a;
	struct wal_ack_entry e;

	ts_raw_recv_until(s, WAL_MSG_ACK, buf, sizeof buf, 10000);
	memcpy(&a, buf, sizeof a);
	ck_assert_uint_eq(a.count, 1);
	memcpy(&e, buf + sizeof a, sizeof e);
	return (e);
}

static int64_t
next_seq(void)
{
	struct walmmap *w;
	struct walmmap_status st;

	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	ck_assert_int_eq(walmmap_status(w, &st), 0);
	walmmap_close(w);
	return (st.next_seq);
}

/* Records whose payload is text, in log order, into a string. */
static char *
log_text(void)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	size_t len = 0;
	char *out = calloc(1, 1);

	ck_assert_msg(wal_reader_open(d.data, &r, &err) == 0, "%s", err.msg);
	while (wal_reader_next(r, &rec, &err) == 1) {
		out = realloc(out, len + rec.size + 2);
		memcpy(out + len, rec.payload, rec.size);
		len += rec.size;
		out[len++] = ' ';
		out[len] = '\0';
	}
	wal_reader_close(r);
	return (out);
}

/*
 * A resent frame is acknowledged with its first seq and not written; a
 * frame cut short and sent again is written from where it was cut.
 */
START_TEST(test_duplicate)
{
	struct wal_msg_producer_ok ok;
	struct wal_ack_entry e;
	struct wal_msg_ack am;
	uint8_t buf[4096];
	char *txt;
	int s;

	start(NULL, NULL);
	s = raw_producer(0, &ok);
	ck_assert_uint_ne(ok.producer_id, 0);
	ck_assert_uint_eq(ok.next_pseq, 1);
	ck_assert_int_eq(ok.last_seq, -1);
	ts_raw_append_p(s, 10, 1, 3, WAL_ACK_WRITTEN);
	e = ack_of(s);
	ck_assert_uint_eq(e.id, 10);
	ck_assert_int_eq(e.first_seq, 0);
	ck_assert_uint_eq(e.flags, 0);
	ts_raw_append_p(s, 11, 4, 2, WAL_ACK_WRITTEN);
	ck_assert_int_eq(ack_of(s).first_seq, 3);
	/* Both frames again: duplicates, with the original seqs. */
	ts_raw_append_p(s, 12, 1, 3, WAL_ACK_WRITTEN);
	e = ack_of(s);
	ck_assert_uint_eq(e.id, 12);
	ck_assert_int_eq(e.first_seq, 0);
	ck_assert_uint_eq(e.count, 3);
	ck_assert_uint_eq(e.flags, WAL_ACK_F_DUP);
	ts_raw_append_p(s, 13, 4, 2, WAL_ACK_DURABLE);
	e = ack_of(s);
	ck_assert_int_eq(e.first_seq, 3);
	ck_assert_uint_eq(e.flags, WAL_ACK_F_DUP);
	ck_assert_int_eq(next_seq(), 5);
	/* A jump and a frame across next_pseq are refused, nothing written. */
	ts_raw_append_p(s, 14, 9, 1, WAL_ACK_WRITTEN);
	ts_raw_expect_error(s, WAL_PERR_PSEQ, 0, "jumps", 10000);
	ck_assert_int_eq(next_seq(), 5);
	/*
	 * A frame across next_pseq (one a crash cut short, sent again):
	 * two entries, the part in the log (DUP) and the rest, written.
	 */
	ts_raw_append_p(s, 15, 4, 4, WAL_ACK_WRITTEN);
	ts_raw_recv_until(s, WAL_MSG_ACK, buf, sizeof buf, 10000);
	memcpy(&am, buf, sizeof am);
	ck_assert_uint_eq(am.count, 2);
	memcpy(&e, buf + sizeof am, sizeof e);
	ck_assert_uint_eq(e.id, 15);
	ck_assert_int_eq(e.first_seq, 3);
	ck_assert_uint_eq(e.count, 2);
	ck_assert_uint_eq(e.flags, WAL_ACK_F_DUP);
	memcpy(&e, buf + sizeof am + sizeof e, sizeof e);
	ck_assert_uint_eq(e.id, 15);
	ck_assert_int_eq(e.first_seq, 5);
	ck_assert_uint_eq(e.count, 2);
	ck_assert_uint_eq(e.flags, 0);
	ts_raw_append_p(s, 16, 8, 1, WAL_ACK_WRITTEN);
	ck_assert_int_eq(ack_of(s).first_seq, 7);
	close(s);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	txt = log_text();
	ck_assert_str_eq(txt, "r1 r2 r3 r4 r5 r6 r7 r8 ");
	free(txt);
}
END_TEST

/*
 * A resent frame whose records are not consecutive in the log (a crash
 * or a full disk cut the first send short, and the rest was written after
 * another client's record): each run of the duplicate gets its own entry
 * with its own seqs, never one entry that claims the seqs in between
 * (another client's record, and at level durable a hold on the wrong
 * seq).
 */
START_TEST(test_dup_split)
{
	struct wal_msg_producer_ok ok;
	struct wal_ack_entry e[4];
	struct wal_msg_ack am;
	uint8_t buf[4096];
	int s, o, i;

	start(NULL, NULL);
	s = raw_producer(0, &ok);
	ts_raw_append_p(s, 1, 1, 2, WAL_ACK_WRITTEN);	/* seqs 0, 1 */
	ck_assert_int_eq(ack_of(s).first_seq, 0);
	o = ts_raw_connect(&d);
	ts_raw_hello(o);
	ts_raw_append(o, 1, "other", 5, WAL_ACK_WRITTEN);	/* seq 2 */
	ts_raw_recv_until(o, WAL_MSG_ACK, buf, sizeof buf, 10000);
	ts_raw_append_p(s, 2, 3, 2, WAL_ACK_WRITTEN);	/* seqs 3, 4 */
	ck_assert_int_eq(ack_of(s).first_seq, 3);
	ts_raw_append_p(s, 3, 5, 1, WAL_ACK_WRITTEN);	/* seq 5 */
	ck_assert_int_eq(ack_of(s).first_seq, 5);
	/* Records 1 to 5 as one frame again. */
	for (i = 0; i < 2; i++) {
		ts_raw_append_p(s, 4 + i, 1, 5, i == 0 ? WAL_ACK_WRITTEN :
		    WAL_ACK_DURABLE);
		ts_raw_recv_until(s, WAL_MSG_ACK, buf, sizeof buf, 10000);
		memcpy(&am, buf, sizeof am);
		ck_assert_uint_eq(am.count, 2);
		memcpy(e, buf + sizeof am, 2 * sizeof e[0]);
		ck_assert_uint_eq(e[0].id, 4 + i);
		ck_assert_int_eq(e[0].first_seq, 0);
		ck_assert_uint_eq(e[0].count, 2);
		ck_assert_uint_eq(e[0].flags, WAL_ACK_F_DUP);
		ck_assert_uint_eq(e[1].id, 4 + i);
		ck_assert_int_eq(e[1].first_seq, 3);
		ck_assert_uint_eq(e[1].count, 3);
		ck_assert_uint_eq(e[1].flags, WAL_ACK_F_DUP);
	}
	ck_assert_int_eq(next_seq(), 6);
	close(o);
	close(s);
}
END_TEST

/*
 * A call that failed leaves its records in doubt; the next call on the
 * same handle settles them (sends them again first, with their producer
 * seqs) and then writes its own: each record once, in order. Before, the
 * next call's records came after a hole in the producer seqs, and the
 * handle answered every later call with a PSEQ error.
 */
START_TEST(test_failed_call)
{
	struct walmmap_producer *p;
	uint64_t id, pseq;
	char *txt;
	int64_t seq;
	int rc;

	start(NULL, NULL);
	ck_assert_int_eq(walmmap_producer_open(&p, d.sock,
	    WALMMAP_ACK_WRITTEN, 0), 0);
	walmmap_producer_set_reconnect(p, 1, 200);
	ck_assert_int_eq(walmmap_producer_append(p, "a1", 2, &seq), 0);
	ck_assert_int_eq(seq, 0);
	/* No daemon within the reconnect timeout: a2 is in doubt. */
	ts_daemon_kill(&d);
	rc = walmmap_producer_append(p, "a2", 2, &seq);
	ck_assert_msg(rc == -WALMMAP_ELOST, "append without a daemon: %d %s",
	    rc, walmmap_producer_errmsg(p));
	start(NULL, NULL);
	rc = walmmap_producer_append(p, "a3", 2, &seq);
	ck_assert_msg(rc == 0, "the call after a failed one: %d %s", rc,
	    walmmap_producer_errmsg(p));
	ck_assert_int_eq(seq, 2);
	/* An ACK that does not come in time: a4 is in doubt. */
	walmmap_producer_set_timeout(p, 300);
	ts_daemon_pause(&d);
	rc = walmmap_producer_append(p, "a4", 2, &seq);
	ck_assert_msg(rc == -WALMMAP_ETIMEDOUT, "append to a stopped daemon: "
	    "%d %s", rc, walmmap_producer_errmsg(p));
	ts_daemon_signal(&d, SIGCONT);
	walmmap_producer_set_timeout(p, 10000);
	rc = walmmap_producer_append(p, "a5", 2, &seq);
	ck_assert_msg(rc == 0, "the call after a timeout: %d %s", rc,
	    walmmap_producer_errmsg(p));
	ck_assert_int_eq(seq, 4);
	ck_assert_uint_eq(walmmap_producer_next_pseq(p), 6);
	/*
	 * Closing a handle with a call in doubt: a new handle of the same
	 * id tells whether it is in the log (next_pseq past its pseq).
	 */
	id = walmmap_producer_id(p);
	walmmap_producer_set_timeout(p, 300);
	ts_daemon_pause(&d);
	ck_assert_int_eq(walmmap_producer_append(p, "a6", 2, &seq),
	    -WALMMAP_ETIMEDOUT);
	ts_daemon_signal(&d, SIGCONT);
	walmmap_producer_close(p);
	ck_assert_int_eq(walmmap_producer_open(&p, d.sock,
	    WALMMAP_ACK_WRITTEN, id), 0);
	pseq = walmmap_producer_next_pseq(p);
	ck_assert_msg(pseq == 6 || pseq == 7, "next_pseq %" PRIu64, pseq);
	walmmap_producer_close(p);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	txt = log_text();
	ck_assert_str_eq(txt, pseq == 7 ? "a1 a2 a3 a4 a5 a6 " :
	    "a1 a2 a3 a4 a5 ");
	free(txt);
}
END_TEST

/*
 * The library takes an ACK of a resent frame in as many entries as
 * walmmapd sends: here three (two runs already in the log, written by
 * a connection that resumed the id while the call was in doubt, and the
 * rest). Before, an entry after the second was dropped and the call
 * waited for it until its timeout.
 */
START_TEST(test_dup_runs_library)
{
	struct wal_msg_producer_ok ok;
	struct walmmap_producer *p;
	struct iovec iov[5];
	char *txt, b[5][16];
	int64_t seq;
	int s, o, i, rc;

	start(NULL, NULL);
	ck_assert_int_eq(walmmap_producer_open(&p, d.sock,
	    WALMMAP_ACK_WRITTEN, 0), 0);
	walmmap_producer_set_reconnect(p, 1, 200);
	walmmap_producer_set_timeout(p, 5000);
	for (i = 0; i < 5; i++) {
		snprintf(b[i], sizeof b[i], "b%d", i + 1);
		iov[i].iov_base = b[i];
		iov[i].iov_len = 2;
	}
	ts_daemon_kill(&d);
	ck_assert_int_eq(walmmap_producer_append_batch(p, iov, 5, NULL),
	    -WALMMAP_ELOST);
	start(NULL, NULL);
	s = raw_producer(walmmap_producer_id(p), &ok);
	ck_assert_uint_eq(ok.next_pseq, 1);
	o = ts_raw_connect(&d);
	ts_raw_hello(o);
	ts_raw_append_p(s, 1, 1, 2, WAL_ACK_WRITTEN);	/* seqs 0, 1 */
	ck_assert_int_eq(ack_of(s).first_seq, 0);
	ts_raw_append(o, 1, "other", 5, WAL_ACK_WRITTEN);	/* seq 2 */
	ts_raw_recv_until(o, WAL_MSG_ACK, (uint8_t [4096]){ 0 }, 4096, 10000);
	ts_raw_append_p(s, 2, 3, 2, WAL_ACK_WRITTEN);	/* seqs 3, 4 */
	ck_assert_int_eq(ack_of(s).first_seq, 3);
	ts_raw_append(o, 2, "other", 5, WAL_ACK_WRITTEN);	/* seq 5 */
	ts_raw_recv_until(o, WAL_MSG_ACK, (uint8_t [4096]){ 0 }, 4096, 10000);
	close(s);
	close(o);
	/* The frame of b1-b5 again: DUP (0,2), DUP (3,2), b5 written. */
	rc = walmmap_producer_append(p, "c6", 2, &seq);
	ck_assert_msg(rc == 0, "append after the resend: %d %s", rc,
	    walmmap_producer_errmsg(p));
	ck_assert_int_eq(seq, 7);
	walmmap_producer_close(p);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	txt = log_text();
	ck_assert_str_eq(txt, "r1 r2 other r3 r4 other b5 c6 ");
	free(txt);
}
END_TEST

/*
 * At level written a power cut may take records a call returned success
 * for (documented); the producer goes on from where walmmapd is. Before,
 * its next producer seq lay past walmmapd's: every later call on the
 * handle failed with PSEQ. The cut is played by putting back a copy of
 * the directory from before the lost records were synced.
 */
START_TEST(test_written_lost)
{
	struct walmmap_producer *p;
	char cmd[4 * PATH_MAX], snap[PATH_MAX + 16], *txt;
	int64_t seq;
	int rc;

	snprintf(snap, sizeof snap, "%s/snap", base);
	start(NULL, NULL);
	ck_assert_int_eq(walmmap_producer_open(&p, d.sock,
	    WALMMAP_ACK_WRITTEN, 0), 0);
	ck_assert_int_eq(walmmap_producer_append(p, "a1", 2, &seq), 0);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", d.data, snap);
	ck_assert_int_eq(system(cmd), 0);
	start(NULL, NULL);
	ck_assert_int_eq(walmmap_producer_append(p, "a2", 2, &seq), 0);
	ck_assert_int_eq(walmmap_producer_append(p, "a3", 2, &seq), 0);
	ck_assert_int_eq(seq, 2);
	ts_daemon_kill(&d);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && mv '%s' '%s'", d.data, snap,
	    d.data);
	ck_assert_int_eq(system(cmd), 0);
	start(NULL, NULL);
	rc = walmmap_producer_append(p, "a4", 2, &seq);
	ck_assert_msg(rc == 0, "append after a power cut took a2, a3: %d %s",
	    rc, walmmap_producer_errmsg(p));
	ck_assert_int_eq(seq, 1);
	ck_assert_uint_eq(walmmap_producer_next_pseq(p), 3);
	ck_assert_int_eq(walmmap_producer_append(p, "a5", 2, &seq), 0);
	walmmap_producer_close(p);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	txt = log_text();
	ck_assert_str_eq(txt, "a1 a4 a5 ");
	free(txt);
}
END_TEST

/* APPEND_P before PRODUCER, an unknown id, PRODUCER twice. */
START_TEST(test_bad_requests)
{
	struct wal_msg_producer_ok ok;
	int s;

	start(NULL, NULL);
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	ts_raw_append_p(s, 1, 1, 1, WAL_ACK_WRITTEN);
	ts_raw_expect_error(s, WAL_PERR_PRODUCER, 0, "before PRODUCER",
	    10000);
	ck_assert_uint_eq(ts_raw_producer(s, 4242, &ok), WAL_PERR_PRODUCER);
	ck_assert_uint_eq(ts_raw_producer(s, 0, &ok), 0);
	ck_assert_uint_eq(ts_raw_producer(s, 0, &ok), WAL_PERR_PRODUCER);
	close(s);
	ck_assert_int_eq(next_seq(), 0);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* A producer id belongs to its uid (needs root to be another user). */
START_TEST(test_other_uid)
{
	struct wal_msg_producer_ok ok;
	pid_t pid;
	int s, status;

	if (geteuid() != 0) {
		fprintf(stderr, "test_other_uid: skipped (needs root)\n");
		return;
	}
	ck_assert_int_eq(chmod(base, 0755), 0);
	start("socket_mode=0666", NULL);
	s = raw_producer(0, &ok);
	if ((pid = fork()) == 0) {
		struct walmmap_producer *p;
		int rc;

		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(10);
		rc = walmmap_producer_open(&p, d.sock, WALMMAP_ACK_WRITTEN,
		    ok.producer_id);
		if (rc != -WALMMAP_EPERM && rc != -WALMMAP_EPROTO &&
		    rc >= 0) {
			fprintf(stderr, "rc %d\n", rc);
			_exit(11);
		}
		if (strstr(walmmap_producer_errmsg(p), "belongs to uid 0") ==
		    NULL) {
			fprintf(stderr, "%s\n", walmmap_producer_errmsg(p));
			_exit(12);
		}
		walmmap_producer_close(p);
		/* Its own new producer is fine. */
		if (walmmap_producer_open(&p, d.sock, WALMMAP_ACK_WRITTEN, 0)
		    != 0 || walmmap_producer_append(p, "u", 1, NULL) != 0)
			_exit(13);
		walmmap_producer_close(p);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "status %#x", status);
	close(s);
	ck_assert_int_eq(next_seq(), 1);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* After kill -9 the table knows every written record: resends are DUP. */
START_TEST(test_kill9_resend)
{
	struct wal_msg_producer_ok ok, ok2;
	struct wal_ack_entry e;
	char *txt;
	int s;

	start(NULL, NULL);
	s = raw_producer(0, &ok);
	ts_raw_append_p(s, 1, 1, 2, WAL_ACK_WRITTEN);
	ck_assert_int_eq(ack_of(s).first_seq, 0);
	ts_raw_append_p(s, 2, 3, 2, WAL_ACK_WRITTEN);
	ck_assert_int_eq(ack_of(s).first_seq, 2);
	close(s);
	ts_daemon_kill(&d);
	start(NULL, NULL);
	s = raw_producer(ok.producer_id, &ok2);
	ck_assert_uint_eq(ok2.producer_id, ok.producer_id);
	ck_assert_uint_eq(ok2.next_pseq, 5);
	ck_assert_int_eq(ok2.last_seq, 3);
	ts_raw_append_p(s, 3, 3, 2, WAL_ACK_WRITTEN);
	e = ack_of(s);
	ck_assert_int_eq(e.first_seq, 2);
	ck_assert_uint_eq(e.flags, WAL_ACK_F_DUP);
	ts_raw_append_p(s, 4, 5, 1, WAL_ACK_DURABLE);
	e = ack_of(s);
	ck_assert_int_eq(e.first_seq, 4);
	ck_assert_uint_eq(e.flags, 0);
	close(s);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	txt = log_text();
	ck_assert_str_eq(txt, "r1 r2 r3 r4 r5 ");
	free(txt);
}
END_TEST

/* The entries of the next ACK (one frame's answer), at most max. */
static unsigned
acks_of(int s, struct wal_ack_entry *e, unsigned max)
{
	uint8_t buf[4096];
	struct wal_msg_ack a;

	ts_raw_recv_until(s, WAL_MSG_ACK, buf, sizeof buf, 10000);
	memcpy(&a, buf, sizeof a);
	ck_assert_uint_le(a.count, max);
	memcpy(e, buf + sizeof a, a.count * sizeof *e);
	return (a.count);
}

/*
 * APPEND_P frames whose records go into the log in runs of 32 (conn.c
 * CONN_RUN): 32, 33 and 64 records, resends cut short whose written part
 * is exactly a run or a run and one, a resend all in the log. Each record
 * once, consecutive seqs, the right ACK entries, a journal entry per
 * record with the frame's first written record (only) flagged
 * WAL_PTAB_J_FIRST, and after a restart a resend is a duplicate.
 */
START_TEST(test_append_p_runs)
{
	static const struct {
		uint64_t first_pseq;
		uint32_t count;
		unsigned nack;		/* entries: DUP one, then written */
		int64_t dup_seq;
		uint32_t dup_count;
		int64_t seq;
		uint32_t written;
	} f[] = {
		{ 1, 32, 1, -1, 0, 0, 32 },
		{ 33, 33, 1, -1, 0, 32, 33 },
		{ 66, 64, 1, -1, 0, 65, 64 },
		{ 98, 64, 2, 97, 32, 129, 32 },		/* skip 32, write 32 */
		{ 150, 45, 2, 149, 12, 161, 33 },	/* skip 12, write 33 */
		{ 100, 64, 1, 99, 64, -1, 0 },		/* all in the log */
	};
	struct wal_msg_producer_ok ok, ok2;
	struct wal_ack_entry e[4];
	struct wal_ptab *t;
	struct wal_error err;
	uint32_t flags;
	uint64_t p;
	unsigned i, n, j;
	char *txt, *want, *w;
	int s, dfd;

	start(NULL, NULL);
	s = raw_producer(0, &ok);
	for (i = 0; i < sizeof f / sizeof f[0]; i++) {
		ts_raw_append_p(s, 100 + i, f[i].first_pseq, f[i].count,
		    WAL_ACK_WRITTEN);
		n = acks_of(s, e, 4);
		ck_assert_msg(n == f[i].nack, "frame %u: %u entries", i, n);
		j = 0;
		if (f[i].dup_count > 0) {
			ck_assert_uint_eq(e[0].flags, WAL_ACK_F_DUP);
			ck_assert_int_eq(e[0].first_seq, f[i].dup_seq);
			ck_assert_uint_eq(e[0].count, f[i].dup_count);
			j = 1;
		}
		if (f[i].written > 0) {
			ck_assert_uint_eq(e[j].flags, 0);
			ck_assert_msg(e[j].first_seq == f[i].seq, "frame %u: "
			    "first seq %lld", i, (long long)e[j].first_seq);
			ck_assert_msg(e[j].count == f[i].written, "frame %u: "
			    "count %u", i, e[j].count);
		}
	}
	ck_assert_int_eq(next_seq(), 194);
	close(s);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	txt = log_text();
	want = w = calloc(1, 194 * 6 + 1);
	for (p = 1; p <= 194; p++)
		w += sprintf(w, "r%llu ", (unsigned long long)p);
	ck_assert_str_eq(txt, want);
	free(txt);
	free(want);

	/* A journal entry per record; the first of each frame flagged. */
	ck_assert_int_ge(dfd = open(d.data, O_RDONLY | O_DIRECTORY), 0);
	ck_assert_msg(wal_ptab_open_ro(dfd, d.data, &t, &err) == 0, "%s",
	    err.msg);
	for (p = 1; p <= 194; p++) {
		flags = 0xff;
		ck_assert_msg(wal_ptab_lookup(t, ok.producer_id, p, &flags) ==
		    (int64_t)p - 1, "pseq %llu", (unsigned long long)p);
		ck_assert_msg(flags == (p == 1 || p == 33 || p == 66 ||
		    p == 130 || p == 162 ? WAL_PTAB_J_FIRST : 0u),
		    "pseq %llu: flags %u", (unsigned long long)p, flags);
	}
	wal_ptab_close(t);
	close(dfd);

	/* After a restart: duplicates with their seqs, nothing written. */
	start(NULL, NULL);
	s = raw_producer(ok.producer_id, &ok2);
	ck_assert_uint_eq(ok2.next_pseq, 195);
	ck_assert_int_eq(ok2.last_seq, 193);
	ts_raw_append_p(s, 200, 131, 64, WAL_ACK_WRITTEN);
	ck_assert_uint_eq(acks_of(s, e, 4), 1);
	ck_assert_uint_eq(e[0].flags, WAL_ACK_F_DUP);
	ck_assert_int_eq(e[0].first_seq, 130);
	ck_assert_uint_eq(e[0].count, 64);
	ck_assert_int_eq(next_seq(), 194);
	close(s);
}
END_TEST

/*
 * Answer to one APPEND_P: the ACK entries (DUP, then written) and, when
 * the frame failed, the ERROR's text in msg (else ""). want: the records
 * the frame writes if nothing fails (an ACK that says so is the end).
 */
static unsigned
frame_answer(int s, struct wal_ack_entry *e, unsigned max, uint32_t want,
    char *msg, size_t msglen)
{
	static uint8_t frame[WAL_PROTO_MAX_FRAME];
	struct wal_msg_error er;
	struct wal_msg_ack a;
	struct wal_msg hdr;
	unsigned n = 0;
	ssize_t r;

	msg[0] = '\0';
	for (;;) {
		r = ts_raw_recv(s, frame, sizeof frame, 10000);
		ck_assert_msg(r >= (ssize_t)sizeof hdr, "no answer (%zd)", r);
		memcpy(&hdr, frame, sizeof hdr);
		if (hdr.type == WAL_MSG_ERROR) {
			memcpy(&er, frame, sizeof er);
			snprintf(msg, msglen, "%.*s", (int)((size_t)r -
			    sizeof er), (char *)frame + sizeof er);
			return (n);
		}
		ck_assert_uint_eq(hdr.type, WAL_MSG_ACK);
		memcpy(&a, frame, sizeof a);
		ck_assert_uint_le(n + a.count, max);
		memcpy(e + n, frame + sizeof a, a.count * sizeof *e);
		n += a.count;
		if (e[n - 1].flags == 0 && e[n - 1].count == want)
			return (n);
	}
}

/*
 * Disk full at a segment switch inside APPEND_P frames of 32, 33, 40 and
 * 64 records (written in runs of 32): the records before the switch are
 * acknowledged with their seqs, the error says "K of N records written",
 * the daemon goes on, and the frame sent again is a duplicate for those K
 * and written for the rest: each record once, journalled once.
 */
START_TEST(test_append_p_disk_full)
{
	static const uint32_t sizes[] = { 64, 33, 40, 32, 64, 63 };
	struct wal_msg_producer_ok ok;
	struct wal_ack_entry e[4];
	struct wal_ptab *t;
	struct wal_error err;
	struct wf_ctl *ctl;
	char ctlpath[PATH_MAX], msg[1024], ks[256] = "";
	char *txt, *want, *w;
	uint64_t pseq = 1, p;
	int64_t seq = 0;
	uint32_t n, k, of, tries;
	unsigned round, fails = 0, ne, j;
	int s, dfd;

	snprintf(ctlpath, sizeof ctlpath, "%s/faults", base);
	ck_assert_ptr_nonnull(ctl = wf_ctl_open(ctlpath));
	d.fault_ctl = ctlpath;
	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "64K", "-o",
	    "prefault=no", NULL), 0);
	s = raw_producer(0, &ok);
	wf_arm(ctl, WF_FALLOCATE, 1, ENOSPC, 1);
	for (round = 0; fails < 4 && round < 20000; round++) {
		n = sizes[round % (sizeof sizes / sizeof sizes[0])];
		ts_raw_append_p(s, round, pseq, n, WAL_ACK_WRITTEN);
		ne = frame_answer(s, e, 4, n, msg, sizeof msg);
		if (msg[0] == '\0') {
			ck_assert_uint_eq(ne, 1);
			ck_assert_int_eq(e[0].first_seq, seq);
			ck_assert_uint_eq(e[0].count, n);
			pseq += n;
			seq += n;
			continue;
		}
		ck_assert_msg(sscanf(msg, "%u of %u records written", &k,
		    &of) == 2 && of == n && k < n, "round %u: %s", round, msg);
		ck_assert_msg(strstr(msg, "No space left") != NULL, "%s", msg);
		ck_assert_uint_eq(ne, k > 0);
		if (k > 0) {
			ck_assert_int_eq(e[0].first_seq, seq);
			ck_assert_uint_eq(e[0].count, k);
			ck_assert_uint_eq(e[0].flags, 0);
		}
		snprintf(ks + strlen(ks), sizeof ks - strlen(ks), " %u/%u", k,
		    n);
		ck_assert_int_eq(next_seq(), seq + k);
		/* Space again: the frame once more, from where it was cut. */
		wf_disarm(ctl, WF_FALLOCATE);
		for (tries = 0;; tries++) {
			ts_raw_append_p(s, 100000 + round, pseq, n,
			    WAL_ACK_WRITTEN);
			ne = frame_answer(s, e, 4, n - k, msg, sizeof msg);
			if (msg[0] == '\0')
				break;
			ck_assert_msg(tries < 50 && strstr(msg, "0 of") ==
			    msg, "%s", msg);
			usleep(100000);
		}
		j = 0;
		if (k > 0) {
			ck_assert_uint_eq(ne, 2);
			ck_assert_uint_eq(e[0].flags, WAL_ACK_F_DUP);
			ck_assert_int_eq(e[0].first_seq, seq);
			ck_assert_uint_eq(e[0].count, k);
			j = 1;
		} else
			ck_assert_uint_eq(ne, 1);
		ck_assert_uint_eq(e[j].flags, 0);
		ck_assert_int_eq(e[j].first_seq, seq + k);
		ck_assert_uint_eq(e[j].count, n - k);
		pseq += n;
		seq += n;
		fails++;
		wf_arm(ctl, WF_FALLOCATE, 1, ENOSPC, 1);
	}
	fprintf(stderr, "test_append_p_disk_full: %u frames, cut at%s\n",
	    round, ks);
	ck_assert_uint_eq(fails, 4);
	wf_disarm(ctl, WF_FALLOCATE);
	close(s);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	txt = log_text();
	want = w = calloc(1, (size_t)pseq * 8 + 1);
	for (p = 1; p < pseq; p++)
		w += sprintf(w, "r%llu ", (unsigned long long)p);
	ck_assert_msg(strcmp(txt, want) == 0, "the log is not r1..r%llu "
	    "once each", (unsigned long long)pseq - 1);
	free(txt);
	free(want);
	ck_assert_int_ge(dfd = open(d.data, O_RDONLY | O_DIRECTORY), 0);
	ck_assert_msg(wal_ptab_open_ro(dfd, d.data, &t, &err) == 0, "%s",
	    err.msg);
	for (p = 1; p < pseq; p++)
		ck_assert_msg(wal_ptab_lookup(t, ok.producer_id, p, NULL) ==
		    (int64_t)p - 1, "pseq %llu", (unsigned long long)p);
	wal_ptab_close(t);
	close(dfd);
	wf_ctl_close(ctl);
}
END_TEST

struct bg_append {
	struct walmmap_producer	*p;
	int			 rc;
	int64_t			 seq;
};

static void *
bg_append_main(void *arg)
{
	struct bg_append *b = arg;

	b->rc = walmmap_producer_append(b->p, "late", 4, &b->seq);
	return (NULL);
}

/*
 * The library reconnects: an append made while walmmapd is down returns
 * success once a new walmmapd is up; with reconnect off it fails.
 */
START_TEST(test_library_reconnect)
{
	struct walmmap_producer *p;
	struct bg_append b;
	pthread_t th;
	uint64_t id;
	int64_t seq;
	char *txt;

	start(NULL, NULL);
	ck_assert_int_eq(walmmap_producer_open(&p, d.sock, WALMMAP_ACK_DURABLE,
	    0), 0);
	id = walmmap_producer_id(p);
	ck_assert_uint_ne(id, 0);
	ck_assert_int_eq(walmmap_producer_append(p, "early", 5, &seq), 0);
	ck_assert_int_eq(seq, 0);
	ts_daemon_kill(&d);
	memset(&b, 0, sizeof b);
	b.p = p;
	walmmap_producer_set_reconnect(p, 1, 60000);
	ck_assert_int_eq(pthread_create(&th, NULL, bg_append_main, &b), 0);
	usleep(100000);		/* (not needed for the outcome) */
	start(NULL, NULL);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_msg(b.rc == 0, "append across the restart: %s",
	    walmmap_producer_errmsg(p));
	ck_assert_int_eq(b.seq, 1);
	ck_assert_uint_ge(walmmap_producer_reconnects(p), 1);
	ck_assert_uint_eq(walmmap_producer_id(p), id);
	/* Off: the loss is the caller's. */
	walmmap_producer_set_reconnect(p, 0, 0);
	ts_daemon_kill(&d);
	ck_assert_int_eq(walmmap_producer_append(p, "lost", 4, NULL),
	    -WALMMAP_ELOST);
	walmmap_producer_close(p);
	start(NULL, NULL);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	txt = log_text();
	ck_assert_str_eq(txt, "early late ");
	free(txt);
}
END_TEST

struct bg_open {
	const char	*sock;
	uint64_t	 id;
	int		 rc;
	int64_t		 seq;
};

static void *
bg_open_main(void *arg)
{
	struct bg_open *o = arg;
	struct walmmap_producer *p;

	o->rc = walmmap_producer_open(&p, o->sock, WALMMAP_ACK_WRITTEN, o->id);
	if (o->rc == 0)
		o->rc = walmmap_producer_append(p, "resumed", 7, &o->seq);
	walmmap_producer_close(p);
	return (NULL);
}

/*
 * Opening: a new producer meets no daemon and fails at once; one resumed
 * by id waits for a daemon that is restarting.
 */
START_TEST(test_open_resume_waits)
{
	struct walmmap_producer *p;
	struct bg_open o;
	pthread_t th;
	uint64_t id;
	char *txt;

	start(NULL, NULL);
	ck_assert_int_eq(walmmap_producer_open(&p, d.sock, WALMMAP_ACK_WRITTEN,
	    0), 0);
	id = walmmap_producer_id(p);
	ck_assert_int_eq(walmmap_producer_append(p, "first", 5, NULL), 0);
	walmmap_producer_close(p);
	ts_daemon_kill(&d);
	ck_assert_int_eq(walmmap_producer_open(&p, d.sock, WALMMAP_ACK_WRITTEN,
	    0), -WALMMAP_ENODAEMON);
	walmmap_producer_close(p);
	memset(&o, 0, sizeof o);
	o.sock = d.sock;
	o.id = id;
	ck_assert_int_eq(pthread_create(&th, NULL, bg_open_main, &o), 0);
	usleep(200000);		/* (not needed for the outcome) */
	start(NULL, NULL);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_msg(o.rc == 0, "resuming producer %" PRIu64 " while "
	    "walmmapd restarts: %d", id, o.rc);
	ck_assert_int_eq(o.seq, 1);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	txt = log_text();
	ck_assert_str_eq(txt, "first resumed ");
	free(txt);
}
END_TEST

/* Wait (bounded: a hang detector) until the ring counts n written. */
static void
ring_written(struct ts_ring *r, uint64_t n)
{
	int i;

	for (i = 0; i < 10000 && atomic_load(&r->hdr->written) < n; i++)
		usleep(1000);
	ck_assert_uint_eq(atomic_load(&r->hdr->written), n);
}

/*
 * A ring on a producer connection: its records take the producer's seqs
 * from first_pseq on, journalled like APPEND_P's (a resend of one is a
 * DUP with its own seq), interleaved with APPEND_P in order; a resumed
 * producer's old ring writes nothing more.
 */
START_TEST(test_shm_producer_ring)
{
	struct wal_msg_producer_ok ok, ok2;
	struct wal_ack_entry e;
	struct ts_ring r, r2;
	char *txt;
	int s2;

	start(NULL, NULL);
	ts_ring_open_sock(&r, raw_producer(0, &ok), 0);
	ck_assert_uint_eq(ok.next_pseq, 1);
	ck_assert_uint_eq(r.hdr->first_pseq, 1);
	ts_ring_put(&r, "x1", 2, 2, WAL_SHM_F_SEQ);
	ts_ring_put(&r, "x2", 2, 2, WAL_SHM_F_SEQ);
	ts_ring_put(&r, "x3", 2, 2, WAL_SHM_F_SEQ);
	ts_ring_publish(&r, r.tail);
	ring_written(&r, 3);
	/* Published after the resume below: never written. */
	ts_ring_put(&r, "lost", 4, 4, WAL_SHM_F_SEQ);

	s2 = raw_producer(ok.producer_id, &ok2);
	ck_assert_uint_eq(ok2.next_pseq, 4);
	ck_assert_int_eq(ok2.last_seq, 2);
	ts_ring_publish(&r, r.tail);
	/* A resend of ring record 2 is answered with its own seq. */
	ts_raw_append_p(s2, 9, 2, 1, WAL_ACK_WRITTEN);
	e = ack_of(s2);
	ck_assert_uint_eq(e.id, 9);
	ck_assert_int_eq(e.first_seq, 1);
	ck_assert_uint_eq(e.flags & WAL_ACK_F_DUP, WAL_ACK_F_DUP);
	/* The new ring starts where the producer stands. */
	ts_ring_open_sock(&r2, s2, 0);
	ck_assert_uint_eq(r2.hdr->first_pseq, 4);
	ts_raw_append_p(s2, 10, 4, 1, WAL_ACK_WRITTEN);	/* "r4", seq 3 */
	e = ack_of(s2);
	ck_assert_int_eq(e.first_seq, 3);
	ts_ring_put(&r2, "x5", 2, 2, WAL_SHM_F_SEQ);	/* pseq 5 */
	ts_ring_publish(&r2, r2.tail);
	ring_written(&r2, 1);
	ck_assert_int_eq(atomic_load(&r2.hdr->written_seq), 4);
	ts_raw_append_p(s2, 11, 5, 1, WAL_ACK_WRITTEN);
	e = ack_of(s2);
	ck_assert_int_eq(e.first_seq, 4);
	ck_assert_uint_eq(e.flags & WAL_ACK_F_DUP, WAL_ACK_F_DUP);
	/* A jump past it is refused as on the socket. */
	ts_raw_append_p(s2, 12, 7, 1, WAL_ACK_WRITTEN);
	ts_ring_close(&r2);
	ts_ring_close(&r);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	txt = log_text();
	ck_assert_str_eq(txt, "x1 x2 x3 r4 x5 ");
	free(txt);
}
END_TEST

#define BIG_LEN	20000	/* above the max_record of a 64 KiB ring */

struct bg_batch {
	struct walmmap_producer	*p;
	int			 big;	/* record 7 too large for the ring */
	int			 rc;
	int64_t			 seqs[20];
};

static void *
bg_batch_main(void *arg)
{
	static char recs[20][16], big[BIG_LEN];
	struct bg_batch *b = arg;
	struct iovec iov[20];
	int i;

	for (i = 0; i < 20; i++) {
		snprintf(recs[i], sizeof recs[i], "b%d", i);
		iov[i].iov_base = recs[i];
		iov[i].iov_len = strlen(recs[i]);
	}
	if (b->big) {
		memset(big, 'x', sizeof big);
		memcpy(big, "b7", 2);
		iov[7].iov_base = big;
		iov[7].iov_len = sizeof big;
	}
	b->rc = walmmap_producer_append_batch(b->p, iov, 20, b->seqs);
	return (NULL);
}

/*
 * kill -9 of walmmapd with records published in a producer's ring and
 * not drained (the daemon was stopped): after the restart the library
 * sends them again through the new ring; each is in the log once, in
 * order, and the append returns their seqs once. Loop 0: written;
 * 1: durable; 2: written, a 64 KiB ring and one record too large for it
 * (sent alone on the socket, between ring records).
 */
START_TEST(test_shm_producer_kill9)
{
	struct walmmap_producer *p;
	struct bg_batch b;
	pthread_t th;
	int64_t seq;
	char *txt, *want, one[16];
	size_t wlen = 512 + BIG_LEN;
	int i;

	if (_i == 2)
		start("shm_size=65536", NULL);
	else
		start(NULL, NULL);
	ck_assert_int_eq(walmmap_producer_open(&p, d.sock, _i == 1 ?
	    WALMMAP_ACK_DURABLE : WALMMAP_ACK_WRITTEN, 0), 0);
	ck_assert_int_eq(walmmap_producer_set_shm(p, 1), 0);
	ck_assert_int_eq(walmmap_producer_shm_active(p), 1);
	walmmap_producer_set_reconnect(p, 1, 60000);
	for (i = 0; i < 5; i++) {
		snprintf(one, sizeof one, "a%d", i);
		ck_assert_int_eq(walmmap_producer_append(p, one, strlen(one),
		    &seq), 0);
		ck_assert_int_eq(seq, i);
	}
	ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
	memset(&b, 0, sizeof b);
	b.p = p;
	b.big = _i == 2;
	ck_assert_int_eq(pthread_create(&th, NULL, bg_batch_main, &b), 0);
	usleep(200000);		/* published meanwhile (not needed) */
	ts_daemon_kill(&d);
	if (_i == 2)
		start("shm_size=65536", NULL);
	else
		start(NULL, NULL);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_msg(b.rc == 0, "append across kill -9: %s",
	    walmmap_producer_errmsg(p));
	for (i = 0; i < 20; i++)
		ck_assert_int_eq(b.seqs[i], 5 + i);
	ck_assert_uint_ge(walmmap_producer_reconnects(p), 1);
	ck_assert_int_eq(walmmap_producer_shm_active(p), 1);
	ck_assert_int_eq(walmmap_producer_append(p, "c", 1, &seq), 0);
	ck_assert_int_eq(seq, 25);
	walmmap_producer_close(p);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	txt = log_text();
	want = calloc(1, wlen);
	for (i = 0; i < 5; i++)
		snprintf(want + strlen(want), wlen - strlen(want), "a%d ", i);
	for (i = 0; i < 20; i++) {
		snprintf(want + strlen(want), wlen - strlen(want), "b%d", i);
		if (i == 7 && _i == 2)
			memset(want + strlen(want), 'x', BIG_LEN - 2);
		strcat(want, " ");
	}
	strcat(want, "c ");
	ck_assert_str_eq(txt, want);
	free(want);
	free(txt);
}
END_TEST

/* The table is bounded: full is an error; idle producers expire. */
START_TEST(test_table_full)
{
	struct wal_msg_producer_ok ok1, ok2, ok3;
	int s1, s2, s3, i, rc = -1;

	start("producers=2", "producer_expire=1s");
	s1 = raw_producer(0, &ok1);
	s2 = raw_producer(0, &ok2);
	s3 = ts_raw_connect(&d);
	ts_raw_hello(s3);
	ck_assert_uint_eq(ts_raw_producer(s3, 0, &ok3), WAL_PERR_PRODUCER);
	/* Still connected: never expired, however long idle. */
	close(s1);
	/* s1's producer expires once idle for 1 s (bounded wait). */
	for (i = 0; i < 100; i++) {
		if ((rc = (int)ts_raw_producer(s3, 0, &ok3)) == 0)
			break;
		usleep(100000);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_gt(ok3.producer_id, ok2.producer_id);
	/* The expired id is unknown now. */
	close(s3);
	s3 = ts_raw_connect(&d);
	ts_raw_hello(s3);
	ck_assert_uint_eq(ts_raw_producer(s3, ok1.producer_id, &ok3),
	    WAL_PERR_PRODUCER);
	close(s3);
	close(s2);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

static int
has_aside(void)
{
	DIR *dp = opendir(d.data);
	struct dirent *de;
	int found = 0;

	ck_assert_ptr_nonnull(dp);
	while ((de = readdir(dp)) != NULL)
		if (strncmp(de->d_name, WAL_PTAB_FILE ".corrupt-",
		    strlen(WAL_PTAB_FILE ".corrupt-")) == 0)
			found = 1;
	closedir(dp);
	return (found);
}

/* A corrupt or missing table: said clearly; the log opens. */
START_TEST(test_table_damaged)
{
	struct wal_msg_producer_ok ok;
	struct walmmap_producer *p;
	char path[PATH_MAX + 64];
	uint64_t id0;
	int fd, s;

	start(NULL, NULL);
	ck_assert_int_eq(walmmap_producer_open(&p, d.sock, WALMMAP_ACK_WRITTEN,
	    0), 0);
	ck_assert_int_eq(walmmap_producer_append(p, "one", 3, NULL), 0);
	id0 = walmmap_producer_id(p);
	walmmap_producer_close(p);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	snprintf(path, sizeof path, "%s/%s", d.data, WAL_PTAB_FILE);
	ck_assert_int_ge(fd = open(path, O_WRONLY), 0);
	ck_assert_int_eq(pwrite(fd, "garbage!", 8, 0), 8);
	close(fd);
	start(NULL, NULL);
	ck_assert(ts_daemon_log_wait(&d, "is unusable (bad magic)"));
	ck_assert(has_aside());
	ck_assert_int_eq(next_seq(), 1);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(unlink(path), 0);
	start(NULL, NULL);
	ck_assert(ts_daemon_log_wait(&d, "was missing"));
	ck_assert_int_eq(next_seq(), 1);
	ck_assert_int_eq(walmmap_producer_open(&p, d.sock, WALMMAP_ACK_WRITTEN,
	    0), 0);
	ck_assert_int_eq(walmmap_producer_append(p, "two", 3, NULL), 0);
	/*
	 * A replaced table does not give out the ids of the one it replaced:
	 * a producer of the old table that resumes its id is refused, not
	 * taken for the new producer (its resent records would be answered
	 * as duplicates of the other's, and lost).
	 */
	ck_assert_uint_ne(walmmap_producer_id(p), id0);
	walmmap_producer_close(p);
	s = ts_raw_connect(&d);
	ts_raw_hello(s);
	ck_assert_uint_eq(ts_raw_producer(s, id0, &ok), WAL_PERR_PRODUCER);
	close(s);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* Recovery of the table against a shorter log (the log is the truth). */
START_TEST(test_ptab_recover)
{
	struct wal_ptab_config pc = { 4, 16 };
	struct wal_ptab_recovery info;
	struct wal_ptab *t;
	struct wal_error err;
	char dir[PATH_MAX + 16];
	int dfd, slot, slot2, i;
	uint64_t id, id2;

	snprintf(dir, sizeof dir, "%s/ptab", base);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	ck_assert_int_ge(dfd = open(dir, O_RDONLY | O_DIRECTORY), 0);
	ck_assert_msg(wal_ptab_open(dfd, dir, 0, &pc, &t, &info, &err) == 0,
	    "%s", err.msg);
	ck_assert(info.created);
	slot = wal_ptab_create(t, 0, 0, 1, 0, NULL, NULL);
	slot2 = wal_ptab_create(t, 0, 0, 1, 0, NULL, NULL);
	ck_assert_int_ge(slot, 0);
	ck_assert_int_eq(wal_ptab_claim(t, slot, 1, "a", "a", 1, &err), 0);
	ck_assert_int_eq(wal_ptab_claim(t, slot2, 1, "b", "b", 1, &err), 0);
	id = t->slots[slot].id;
	id2 = t->slots[slot2].id;
	/* Producer 1 wrote seqs 0..9 (pseqs 1..10), producer 2 seq 10. */
	for (i = 0; i < 10; i++)
		wal_ptab_note(t, id, (uint64_t)i + 1, i, 0);
	wal_ptab_advance(t, slot, 11, 9, 2);
	wal_ptab_note(t, id2, 1, 10, WAL_PTAB_J_FIRST);
	/* Its slot was not updated (a kill before): the journal knows. */
	ck_assert_int_eq(wal_ptab_lookup(t, id, 4, NULL), 3);
	wal_ptab_close(t);

	/* The log kept seqs 0..4 only. */
	ck_assert_msg(wal_ptab_open(dfd, dir, 5, &pc, &t, &info, &err) == 0,
	    "%s", err.msg);
	ck_assert_uint_eq(info.erased, 6);
	ck_assert_uint_eq(info.cut_back, 1);
	ck_assert_uint_eq(t->slots[slot].next_pseq, 6);
	ck_assert_int_eq(t->slots[slot].last_seq, 4);
	ck_assert_int_eq(wal_ptab_lookup(t, id, 5, NULL), 4);
	ck_assert_int_eq(wal_ptab_lookup(t, id, 7, NULL), -1);
	ck_assert_uint_eq(t->slots[slot2].next_pseq, 1);
	/* Continuing: seq 5 is the producer's pseq 6. */
	wal_ptab_note(t, id, 6, 5, 0);
	wal_ptab_close(t);
	ck_assert_msg(wal_ptab_open(dfd, dir, 6, &pc, &t, &info, &err) == 0,
	    "%s", err.msg);
	ck_assert_uint_eq(info.advanced, 1);
	ck_assert_uint_eq(t->slots[slot].next_pseq, 7);
	ck_assert_int_eq(t->slots[slot].last_seq, 5);
	/* A slot ahead of the log with no journal entry to go back to. */
	t->slots[slot2].last_seq = 100;
	t->slots[slot2].next_pseq = 50;
	wal_ptab_close(t);
	ck_assert_msg(wal_ptab_open(dfd, dir, 6, &pc, &t, &info, &err) == 0,
	    "%s", err.msg);
	ck_assert_uint_eq(info.lost, 1);
	ck_assert(t->slots[slot2].flags & WAL_PTAB_F_LOST);
	wal_ptab_close(t);
	close(dfd);
}
END_TEST

/* walctl dump --json names the producer of each record; --producer. */
START_TEST(test_provenance)
{
	char *out, *txt;
	int s;
	struct wal_msg_producer_ok ok;

	start(NULL, NULL);
	ck_assert_int_eq(ts_run_prog("client/walctl", "x\ny\n", 4, &out, "-s",
	    d.sock, "append", NULL), 0);
	free(out);
	/* A plain connection's record has no producer. */
	ck_assert_int_eq(ts_run_prog("client/walctl", "z\n", 2, &out, "-s",
	    d.sock, "append", "--ack", "none", NULL), 0);
	free(out);
	s = raw_producer(0, &ok);
	ts_raw_append_p(s, 1, 1, 1, WAL_ACK_WRITTEN);
	ck_assert_int_eq(ack_of(s).first_seq, 3);
	close(s);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "dump",
	    "--json", d.data, NULL), 0);
	ck_assert_msg(strstr(out, "\"size\":1,\"producer\":{\"id\":1,"
	    "\"pseq\":1,\"uid\":0,\"gid\":0,") != NULL || geteuid() != 0,
	    "%s", out);
	ck_assert_msg(strstr(out, "\"comm\":\"walctl\",\"exe\":\"walctl\"},"
	    "\"payload\":\"y\"}") != NULL || strstr(out, "\"exe\":\"lt-walctl"
	    "\"},\"payload\":\"y\"}") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "\"size\":1,\"payload\":\"z\"}") != NULL,
	    "%s", out);
	ck_assert_msg(strstr(out, "\"producer\":{\"id\":2,\"pseq\":1,") !=
	    NULL, "%s", out);
	free(out);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "dump",
	    "--producer", "2", "--raw", d.data, NULL), 0);
	ck_assert_str_eq(out, "r1\n");
	free(out);
	ck_assert_int_eq(ts_run_prog("client/walctl", NULL, 0, &out, "dump",
	    "--producer", "1", "--raw", d.data, NULL), 0);
	ck_assert_str_eq(out, "x\ny\n");
	free(out);
	txt = log_text();
	ck_assert_str_eq(txt, "x y z r1 ");
	free(txt);
}
END_TEST

/*
 * Power cuts (check_recover style, tests/powercut.c): three producers
 * append frames through the daemon's path in-process (journal entry, then
 * commit; the table synced with every sync that moves the durable seq),
 * syncs come at random; at random moments the disk is built as a power
 * cut could leave it (log and table each at most what their syncs
 * covered, unsynced pages there or not). After recovery each producer
 * resends every record not acknowledged durable, as libwalmmap does: every
 * record acknowledged durable must be in the log exactly once and be
 * recognised as a duplicate with its seq; every record sent is in the log.
 * PC_CUTS (default 24) runs it longer.
 */
#define PC_NPROD	3

static int
pc_companion(void *arg, int64_t covered, struct wal_error *err)
{
	return (wal_ptab_sync(arg, covered, err));
}

/* Producer p's record pseq: "P<p>:<pseq>:" and filler, 4..600 bytes. */
static uint32_t
pc_payload(uint8_t *buf, unsigned p, uint64_t pseq)
{
	uint32_t len = (uint32_t)snprintf((char *)buf, 64, "P%u:%llu:", p,
	    (unsigned long long)pseq);
	uint32_t extra = (uint32_t)((pseq * 2654435761u + p) % 560);

	memset(buf + len, 'a' + (int)(pseq % 26), extra);
	return (len + extra);
}

/* One frame of count records of producer slot through ring r. */
static int64_t
pc_frame(struct wal_ring *r, struct wal_ptab *t, int slot, unsigned p,
    uint64_t pseq, uint32_t count)
{
	struct wal_error err;
	uint8_t buf[1024], *dst;
	uint64_t id = t->slots[slot].id;
	int64_t first = -1, seq;
	uint32_t i, len;

	for (i = 0; i < count; i++) {
		len = pc_payload(buf, p, pseq + i);
		ck_assert_msg(wal_ring_reserve(r, len, &dst, &err) == 0, "%s",
		    err.msg);
		memcpy(dst, buf, len);
		wal_ptab_note(t, id, pseq + i, wal_ring_next_seq(r), i == 0 ?
		    WAL_PTAB_J_FIRST : 0);
		seq = wal_ring_commit_deferred(r, -1);
		if (first < 0)
			first = seq;
	}
	wal_ring_flush(r);
	wal_ptab_advance(t, slot, pseq + count, first + count - 1, 1);
	return (first);
}

START_TEST(test_power_cut)
{
	struct wal_ring_config cfg = { .segment_size = 64 * 1024,
	    .ring_segments = 3, .no_prefault = 1 };
	struct wal_ptab_config pc = { 8, 4096 };
	struct wal_ptab_recovery pinfo;
	struct wal_recovery info;
	struct wal_error err;
	struct wal_ring *r, *sr;
	struct wal_ptab *t, *st;
	struct wal_reader *rd;
	struct wal_record rec;
	const char *env = getenv("PC_CUTS");
	int cuts = env != NULL ? atoi(env) : 24, done = 0, mode, dfd, sdfd;
	int slot[PC_NPROD], s2;
	uint64_t sent[PC_NPROD], *seen[PC_NPROD], pseq, dups = 0, twice = 0;
	uint64_t resent = 0, kept = 0;
	int64_t durable, *seqs[PC_NPROD], first, d0;
	char data[PATH_MAX + 16], state[PATH_MAX + 32];
	unsigned p, seed = 4242, k, n;

	snprintf(data, sizeof data, "%s/pc-data", base);
	ck_assert_int_eq(mkdir(data, 0750), 0);
	pc_watch(data);
	cfg.dir = data;
	ck_assert_msg(wal_ring_open(&cfg, &r, NULL, &err) == 0, "%s", err.msg);
	ck_assert_int_ge(dfd = open(data, O_RDONLY | O_DIRECTORY), 0);
	ck_assert_msg(wal_ptab_open(dfd, data, 0, &pc, &t, &pinfo, &err) == 0,
	    "%s", err.msg);
	wal_ring_set_companion(r, pc_companion, t);
	for (p = 0; p < PC_NPROD; p++) {
		slot[p] = wal_ptab_create(t, 0, 0, 1, 0, NULL, NULL);
		ck_assert_int_eq(wal_ptab_claim(t, slot[p], 1, "pc", "pc", 1,
		    &err), 0);
		sent[p] = 0;
		ck_assert_ptr_nonnull(seqs[p] = calloc(200000,
		    sizeof *seqs[p]));
	}
	while (done < cuts) {
		/* Frames of 1..40 records, a sync now and then. */
		for (k = 1 + rand_r(&seed) % 40; k > 0; k--) {
			p = (unsigned)rand_r(&seed) % PC_NPROD;
			n = 1 + (unsigned)rand_r(&seed) % 40;
			ck_assert_uint_lt(sent[p] + n, 200000);
			first = pc_frame(r, t, slot[p], p, sent[p] + 1, n);
			for (pseq = 0; pseq < n; pseq++)
				seqs[p][sent[p] + 1 + pseq] = first +
				    (int64_t)pseq;
			sent[p] += n;
			if (rand_r(&seed) % 6 == 0)
				ck_assert_msg(wal_ring_sync(r, NULL, &err) ==
				    0, "%s", err.msg);
		}
		mode = done % PC_NMODES;
		snprintf(state, sizeof state, "%s/pc-state-%d", base, done);
		pc_hold();
		durable = wal_ring_durable_seq(r);
		ck_assert_int_gt(pc_cut(state, (enum pc_mode)mode, seed +
		    (unsigned)done), 0);
		pc_release();

		/* Recover the log, then the table against it. */
		cfg.dir = state;
		ck_assert_msg(wal_ring_open(&cfg, &sr, &info, &err) == 0,
		    "cut %d: %s", done, err.msg);
		ck_assert_int_ge(sdfd = open(state, O_RDONLY | O_DIRECTORY),
		    0);
		ck_assert_msg(wal_ptab_open(sdfd, state, info.next_seq, &pc,
		    &st, &pinfo, &err) == 0, "cut %d: %s", done, err.msg);
		ck_assert_msg(!pinfo.corrupt && !pinfo.created, "cut %d: table "
		    "%s", done, pinfo.why);
		/* Each producer resends all it has not seen durable. */
		for (p = 0; p < PC_NPROD; p++) {
			s2 = wal_ptab_find(st, t->slots[slot[p]].id);
			ck_assert_int_ge(s2, 0);
			ck_assert(!(st->slots[s2].flags & WAL_PTAB_F_LOST));
			for (pseq = 1; pseq <= sent[p]; pseq++) {
				if (seqs[p][pseq] <= durable) {
					/* Durable: known, at its seq. */
					ck_assert_msg(pseq <
					    st->slots[s2].next_pseq, "cut %d "
					    "mode %d: producer %u's durable "
					    "record %llu unknown to the table",
					    done, mode, p,
					    (unsigned long long)pseq);
					d0 = wal_ptab_lookup(st,
					    st->slots[s2].id, pseq, NULL);
					ck_assert(d0 == seqs[p][pseq] ||
					    d0 == -1);
					continue;
				}
				resent++;
				if (pseq < st->slots[s2].next_pseq) {
					dups++;
					continue;
				}
				ck_assert_uint_eq(pseq,
				    st->slots[s2].next_pseq);
				(void)pc_frame(sr, st, s2, p, pseq, 1);
			}
		}
		ck_assert_int_eq(wal_ring_sync(sr, NULL, &err), 0);
		wal_ring_close(sr);
		wal_ptab_close(st);
		close(sdfd);
		/* Every record once (durable ones for sure), in order. */
		for (p = 0; p < PC_NPROD; p++)
			ck_assert_ptr_nonnull(seen[p] = calloc(sent[p] + 2,
			    sizeof *seen[p]));
		ck_assert_msg(wal_reader_open(state, &rd, &err) == 0, "%s",
		    err.msg);
		while (wal_reader_next(rd, &rec, &err) == 1) {
			unsigned long long q;
			char tmp[32];

			n = rec.size < sizeof tmp - 1 ? rec.size : sizeof tmp -
			    1;
			memcpy(tmp, rec.payload, n);
			tmp[n] = '\0';
			ck_assert(sscanf(tmp, "P%u:%llu:", &p, &q) == 2);
			ck_assert(p < PC_NPROD && q >= 1 && q <= sent[p]);
			seen[p][q]++;
		}
		wal_reader_close(rd);
		for (p = 0; p < PC_NPROD; p++) {
			for (pseq = 1; pseq <= sent[p]; pseq++) {
				ck_assert_msg(seen[p][pseq] >= 1, "cut %d mode "
				    "%d: producer %u's record %llu lost after "
				    "the resend", done, mode, p,
				    (unsigned long long)pseq);
				if (seqs[p][pseq] <= durable)
					ck_assert_msg(seen[p][pseq] == 1,
					    "cut %d mode %d: producer %u's "
					    "durable record %llu %llu times",
					    done, mode, p,
					    (unsigned long long)pseq,
					    (unsigned long long)seen[p][pseq]);
				else if (seen[p][pseq] > 1)
					twice++;
				else
					kept++;
			}
			free(seen[p]);
		}
		ts_rmtree(strdup(state));
		done++;
	}
	wal_ring_close(r);
	wal_ptab_close(t);
	close(dfd);
	pc_unwatch();
	fprintf(stderr, "producer power cuts: %d cuts, %llu records not "
	    "durable at a cut resent, %llu of them answered as duplicates, "
	    "%llu written twice (a table page lost, its log page kept)\n",
	    cuts, (unsigned long long)resent, (unsigned long long)dups,
	    (unsigned long long)twice);
	(void)kept;
	for (p = 0; p < PC_NPROD; p++)
		free(seqs[p]);
}
END_TEST

/* Read fd to its end into buf (NUL-terminated). */
static void
read_all(int fd, char *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len - 1 && (n = read(fd, buf + got, len - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	close(fd);
}

/*
 * walctl append reconnects: lines written before and after a kill -9 and
 * restart of walmmapd are each in the log once, in order, and walctl
 * reports them all, as without the restart.
 */
START_TEST(test_walctl_append_restart)
{
	char fifo[PATH_MAX + 16], line[32], out[4096], err[4096];
	char *txt, *want;
	size_t wlen = 0;
	int outfd, errfd, fd, i, status;
	pid_t pid;

	signal(SIGPIPE, SIG_IGN);	/* a walctl that failed: say so */
	start(NULL, NULL);
	snprintf(fifo, sizeof fifo, "%s/lines", base);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	pid = ts_spawn_prog("client/walctl", &outfd, &errfd, "-s", d.sock,
	    "append", fifo, NULL);
	/* Not inherited by the walmmapd started below: EOF must come. */
	ck_assert_int_ge(fd = open(fifo, O_WRONLY | O_CLOEXEC), 0);
	want = calloc(1, 6000 * 8);
	for (i = 0; i < 6000; i++) {
		int n = snprintf(line, sizeof line, "L%d\n", i);

		if (i == 3000) {
			int64_t t0 = wal_now_ns();

			/*
			 * Kill once walctl is connected: before, its open
			 * would find no daemon and fail at once (documented).
			 */
			while (next_seq() == 0) {
				ck_assert_msg(wal_now_ns() - t0 < 10000000000LL,
				    "walctl append wrote nothing in 10 s");
				usleep(1000);
			}
			ts_daemon_kill(&d);
			start(NULL, NULL);
		}
		if (write(fd, line, (size_t)n) != n)
			break;
		memcpy(want + wlen, line, (size_t)n - 1);
		want[wlen + (size_t)n - 1] = ' ';
		wlen += (size_t)n;
	}
	close(fd);
	read_all(outfd, out, sizeof out);
	read_all(errfd, err, sizeof err);
	status = ts_prog_wait(pid);
	ck_assert_msg(status == 0, "walctl append: %d: %s%s", status, out,
	    err);
	ck_assert_msg(strstr(out, "6000 records, seq 0 .. 5999 written") !=
	    NULL, "%s%s", out, err);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	txt = log_text();
	ck_assert_msg(strcmp(txt, want) == 0, "the log is not each line "
	    "once, in order");
	free(txt);
	free(want);
}
END_TEST

static void
setup(void)
{
	base = ts_mkdtemp("producers");
	ts_daemon_init(&d, base);
}

static void
teardown(void)
{
	ts_daemon_kill(&d);
	if (d.notify_fd != -1)
		close(d.notify_fd);
	ts_rmtree(base);
}

static Suite *
producers_suite(void)
{
	Suite *s = suite_create("producers");
	TCase *tc = tcase_create("producers");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_duplicate);
	tcase_add_test(tc, test_dup_split);
	tcase_add_test(tc, test_failed_call);
	tcase_add_test(tc, test_dup_runs_library);
	tcase_add_test(tc, test_written_lost);
	tcase_add_test(tc, test_bad_requests);
	tcase_add_test(tc, test_other_uid);
	tcase_add_test(tc, test_kill9_resend);
	tcase_add_test(tc, test_append_p_runs);
	tcase_add_test(tc, test_append_p_disk_full);
	tcase_add_test(tc, test_shm_producer_ring);
	tcase_add_loop_test(tc, test_shm_producer_kill9, 0, 3);
	tcase_add_test(tc, test_library_reconnect);
	tcase_add_test(tc, test_open_resume_waits);
	tcase_add_test(tc, test_table_full);
	tcase_add_test(tc, test_table_damaged);
	tcase_add_test(tc, test_ptab_recover);
	tcase_add_test(tc, test_provenance);
	tcase_add_test(tc, test_power_cut);
	tcase_add_test(tc, test_walctl_append_restart);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(producers_suite()));
}
