/*
 * walmmapd tests - libwalmmap and walctl against a real walmmapd.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "testsupport.h"
#include "tsdaemon.h"
#include "walmmap.h"

static char		*base;
static struct ts_daemon	 d;

static void
setup(void)
{
	base = ts_mkdtemp("client");
	ts_daemon_init(&d, base);
	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "256K", "-o",
	    "prefault=no", NULL), 0);
}

static void
teardown(void)
{
	ts_daemon_kill(&d);
	if (d.notify_fd != -1)
		close(d.notify_fd);
	ts_rmtree(base);
}

static struct walmmap *
connect_ok(enum walmmap_ack ack, unsigned flags)
{
	struct walmmap *w;
	int rc = walmmap_connect(&w, d.sock, ack, flags);

	ck_assert_msg(rc == 0, "connect: %s", walmmap_errmsg(w));
	return (w);
}

/* walctl with -s our socket; in is a string or NULL. */
static size_t
input_len(const char *in)
{
	return (in == NULL ? 0 : strlen(in));
}
#define WALCTL(in, out, ...)						\
	ts_run_prog("client/walctl", (in), input_len(in), (out),	\
	    "-s", d.sock, __VA_ARGS__, NULL)

/* The acceptance flow: append, dump --json, verify, damage. */
START_TEST(test_walctl_append_dump_verify)
{
	char *out, *p, file[PATH_MAX], needle[PATH_MAX + 64];
	uint8_t byte;
	size_t len;
	uint8_t *seg;
	long off;

	ck_assert_int_eq(WALCTL("a\nb\nc\n", &out, "append", "--ack",
	    "durable"), 0);
	ck_assert_msg(strstr(out, "3 records, seq 0 .. 2 durable") != NULL,
	    "%s", out);
	free(out);
	ck_assert_int_eq(WALCTL(NULL, &out, "dump", d.data, "--json"), 0);
	ck_assert_msg(strstr(out, "\"seq\":0,") != NULL &&
	    strstr(out, "\"payload\":\"a\"}\n") != NULL &&
	    strstr(out, "\"seq\":1,") != NULL &&
	    strstr(out, "\"payload\":\"b\"}\n") != NULL &&
	    strstr(out, "\"seq\":2,") != NULL &&
	    strstr(out, "\"payload\":\"c\"}\n") != NULL, "%s", out);
	for (len = 0, p = out; (p = strchr(p, '\n')) != NULL; p++)
		len++;
	ck_assert_uint_eq(len, 3);
	free(out);
	ck_assert_int_eq(WALCTL(NULL, &out, "verify", d.data), 0);
	ck_assert_msg(strstr(out, "3 records (seq 0 .. 2), 0 problems") !=
	    NULL, "%s", out);
	free(out);

	/* Flip the payload byte of record 1 ("b"). */
	snprintf(file, sizeof file, "%s", ts_seg_path(d.data, 0));
	seg = ts_read_file(file, &len);
	ck_assert_ptr_nonnull(seg);
	off = 16 + (28 + 1) + 24;	/* file magic, record 0, header 1 */
	ck_assert_int_eq(seg[off], 'b');
	free(seg);
	byte = 'B';
	ck_assert_int_eq(ts_pwrite_file(file, &byte, 1, off), 0);
	ck_assert_int_eq(WALCTL(NULL, &out, "verify", d.data), 1);
	snprintf(needle, sizeof needle, "%s: offset %d: seq 1: CRC", file,
	    16 + 29);
	ck_assert_msg(strstr(out, needle) != NULL, "want \"%s\" in:\n%s",
	    needle, out);
	ck_assert_msg(strstr(out, "1 problem\n") != NULL, "%s", out);
	free(out);
	/* dump stops at the damage with the same facts, exit 1. */
	ck_assert_int_eq(WALCTL(NULL, &out, "dump", d.data), 1);
	ck_assert_msg(strstr(out, "0 ") == out && strstr(out, "offset 45") !=
	    NULL, "%s", out);
	free(out);
}
END_TEST

START_TEST(test_walctl_commands)
{
	char *out;

	ck_assert_int_eq(ts_run_prog("client/walctl", "p\0q\0", 4, &out, "-s",
	    d.sock, "append", "--null", "--ack", "none", NULL), 0);
	ck_assert_msg(strstr(out, "2 records sent") != NULL, "%s", out);
	free(out);
	ck_assert_int_eq(WALCTL("tab\there\n\x01\xff\n", &out, "append"), 0);
	free(out);
	ck_assert_int_eq(WALCTL(NULL, &out, "sync"), 0);
	ck_assert_msg(strstr(out, "durable up to seq 3") != NULL, "%s", out);
	free(out);
	ck_assert_int_eq(WALCTL(NULL, &out, "tail", "-n", "2"), 0);
	ck_assert_msg(strstr(out, "2 ") == out && strstr(out, " tab\\there\n")
	    != NULL && strstr(out, "\n3 ") != NULL &&
	    strstr(out, " \\x01\\xff\n") != NULL, "%s", out);
	free(out);
	ck_assert_int_eq(WALCTL(NULL, &out, "tail", "--from", "3", "--json"),
	    0);
	ck_assert_msg(strstr(out, "\"seq\":3,") != NULL &&
	    strstr(out, "\"payload_base64\":\"Af8=\"") != NULL, "%s", out);
	free(out);
	ck_assert_int_eq(WALCTL(NULL, &out, "dump", d.data, "--from", "0",
	    "--to", "1", "--raw"), 0);
	ck_assert_str_eq(out, "p\nq\n");
	free(out);
	ck_assert_int_eq(WALCTL(NULL, &out, "rotate"), 0);
	free(out);
	ck_assert_int_eq(WALCTL(NULL, &out, "status", "--json"), 0);
	ck_assert_msg(strstr(out, "\"first_seq\":0,\"last_seq\":3,") != NULL &&
	    strstr(out, "\"next_seq\":4,") != NULL &&
	    strstr(out, "\"active_segment\":1,") != NULL, "%s", out);
	free(out);
	ck_assert_int_eq(WALCTL(NULL, &out, "stats"), 0);
	ck_assert_msg(strstr(out, "rotations      1") != NULL, "%s", out);
	free(out);
	/* Usage errors and help. */
	ck_assert_int_eq(WALCTL(NULL, &out, "bogus"), 2);
	free(out);
	ck_assert_int_eq(WALCTL(NULL, &out, "append", "--ack", "maybe"), 2);
	ck_assert_msg(strstr(out, "expected none, written or durable") !=
	    NULL, "%s", out);
	free(out);
	ck_assert_int_eq(WALCTL(NULL, &out, "dump", "-h"), 0);
	ck_assert_msg(strstr(out, "usage: walctl dump") != NULL, "%s", out);
	free(out);
	ck_assert_int_eq(WALCTL(NULL, &out, "verify", "/nonexistent"), 2);
	ck_assert_msg(strstr(out, "cannot read /nonexistent") != NULL, "%s",
	    out);
	free(out);
	/* No daemon: a clear message, exit 2. */
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(WALCTL(NULL, &out, "status"), 2);
	ck_assert_msg(strstr(out, "walmmapd is not running") != NULL, "%s",
	    out);
	ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1,
	    "more than one line: %s", out);
	free(out);
}
END_TEST

/* walctl tail -f shows records another client appends afterwards. */
START_TEST(test_walctl_tail_follow)
{
	char outfile[PATH_MAX], *got = NULL;
	struct walmmap *w;
	uint8_t *buf;
	size_t len;
	pid_t pid;
	int i, fd, status;

	snprintf(outfile, sizeof outfile, "%s/tail.out", base);
	w = connect_ok(WALMMAP_ACK_WRITTEN, 0);
	ck_assert_int_eq(walmmap_append(w, "before", 6, WALMMAP_ACK_DEFAULT,
	    NULL), 0);
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1), 0);
	if ((pid = fork()) == 0) {
		fd = open(outfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, STDOUT_FILENO);
		execl(ts_prog("client/walctl"), "walctl", "-s", d.sock, "tail",
		    "-f", "-n", "1", (char *)NULL);
		_exit(127);
	}
	/* Once the old record is shown, tail is following. */
	for (i = 0; i < 300; i++) {
		buf = ts_read_file(outfile, &len);
		if (buf != NULL && memmem(buf, len, "before", 6) != NULL) {
			free(buf);
			break;
		}
		free(buf);
		usleep(100000);
	}
	ck_assert_int_eq(walmmap_append(w, "after one", 9, WALMMAP_ACK_DEFAULT,
	    NULL), 0);
	ck_assert_int_eq(walmmap_append(w, "after two", 9, WALMMAP_ACK_DEFAULT,
	    NULL), 0);
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1), 0);
	for (i = 0; i < 300; i++) {
		buf = ts_read_file(outfile, &len);
		if (buf != NULL && memmem(buf, len, "2 ", 2) != NULL &&
		    memmem(buf, len, " after two\n", 11) != NULL) {
			got = strndup((char *)buf, len);
			free(buf);
			break;
		}
		free(buf);
		usleep(100000);
	}
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	ck_assert_msg(got != NULL, "tail -f did not show the new records");
	ck_assert_msg(strstr(got, "0 ") == got && strstr(got, "\n1 ") != NULL
	    && strstr(got, " after one\n") != NULL, "%s", got);
	free(got);
	walmmap_close(w);
}
END_TEST

/*
 * In a small tmpfs: fill the disk through the daemon (socket, then ring),
 * read what is there, free space, and append again.
 */
static int
disk_full(void *arg, const char *dir)
{
	struct ts_daemon td;
	struct walmmap *w, *ws;
	struct walmmap_reader *rd;
	struct walmmap_record rec;
	char filler[PATH_MAX];
	uint8_t buf[1000];
	int64_t seq = -1, last = -1;
	long n;
	int rc, i, fd;

	(void)arg;
	/* Space we can give back later. */
	snprintf(filler, sizeof filler, "%s/filler", dir);
	if ((fd = open(filler, O_WRONLY | O_CREAT, 0644)) == -1)
		return (20);
	memset(buf, 0, sizeof buf);
	for (i = 0; i < 192; i++)
		if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
			return (21);
	close(fd);
	ts_daemon_init(&td, dir);
	if (ts_daemon_start(&td, "--segment-size", "64K", "--ring", "2", "-o",
	    "prefault=no", NULL) != 0)
		return (10);
	if (walmmap_connect(&w, td.sock, WALMMAP_ACK_WRITTEN, 0) != 0)
		return (11);
	memset(buf, 'f', sizeof buf);
	for (i = 0; i < 100000; i++) {
		rc = walmmap_append(w, buf, sizeof buf, WALMMAP_ACK_DEFAULT,
		    &seq);
		if (rc != 0)
			break;
		last = seq;
	}
	if (rc != -WALMMAP_ENOSPC) {
		fprintf(stderr, "disk_full: rc %d: %s\n", rc,
		    walmmap_errmsg(w));
		return (12);
	}
	if (strstr(walmmap_errmsg(w), "No space left on device") == NULL ||
	    strstr(walmmap_errmsg(w), "0 of 1 records written") == NULL) {
		fprintf(stderr, "disk_full: message: %s\n",
		    walmmap_errmsg(w));
		return (13);
	}
	/* The connection and the daemon go on; nothing acked is lost. */
	if (walmmap_status(w, &(struct walmmap_status){ 0 }) != 0)
		return (14);
	/* A ring producer hits the same wall: a clear error, not a hang. */
	if (walmmap_connect(&ws, td.sock, WALMMAP_ACK_WRITTEN, WALMMAP_SHM)
	    != 0 || !walmmap_shm_active(ws, NULL))
		return (17);
	for (i = 0; i < 1000; i++)
		if ((rc = walmmap_append(ws, buf, sizeof buf,
		    WALMMAP_ACK_DEFAULT, &seq)) != 0)
			break;
		else
			last = seq;
	if (rc != -WALMMAP_ENOSPC || strstr(walmmap_errmsg(ws),
	    "No space left on device") == NULL) {
		fprintf(stderr, "disk_full: ring: rc %d: %s\n", rc,
		    walmmap_errmsg(ws));
		return (18);
	}
	walmmap_close(ws);
	/* Reads still work while the disk is full. */
	if (walmmap_subscribe(&rd, td.sock, 0, last, 0) != 0)
		return (19);
	for (n = 0; (rc = walmmap_reader_next(rd, &rec, 10000)) == 1; n++)
		;
	walmmap_reader_close(rd);
	if (n != last + 1) {
		fprintf(stderr, "disk_full: subscription read %ld of %lld "
		    "records (rc %d)\n", n, (long long)last + 1, rc);
		return (22);
	}
	/* Space comes back: appends resume on the same connection. */
	if (unlink(filler) != 0)
		return (23);
	for (i = 0; i < 50; i++) {
		if ((rc = walmmap_append(w, buf, sizeof buf,
		    WALMMAP_ACK_DEFAULT, &seq)) == 0)
			break;
		if (rc != -WALMMAP_ENOSPC)
			return (24);
		usleep(100000);	/* the daemon retries segment creation */
	}
	if (rc != 0 || seq != last + 1) {
		fprintf(stderr, "disk_full: after freeing space: rc %d seq "
		    "%lld: %s\n", rc, (long long)seq, walmmap_errmsg(w));
		return (25);
	}
	last = seq;
	walmmap_close(w);
	if (ts_daemon_stop(&td) != 0)
		return (15);
	if (last < 10 || ts_verify_log(td.data, 0, NULL, NULL) != last + 1)
		return (16);
	close(td.notify_fd);
	return (0);
}

/*
 * Disk full is reported by the daemon as ENOSPC with its reason, on the
 * socket and through a ring; reads go on; appends resume with space.
 */
START_TEST(test_disk_full)
{
	int rc = ts_with_tmpfs(512 * 1024, disk_full, NULL);

	if (rc == -1) {
		fprintf(stderr, "test_disk_full: skipped (cannot mount a tmpfs "
		    "here; needs root)\n");
		return;
	}
	ck_assert_msg(rc == 0, "disk_full step %d failed", rc);
}
END_TEST

/* Batches report every seq; waits and the durable seq. */
START_TEST(test_batch_and_wait)
{
	struct walmmap *w;
	struct walmmap_progress p;
	struct iovec iov[100];
	char bufs[100][16];
	int64_t seqs[100], seq, durable;
	int i;

	w = connect_ok(WALMMAP_ACK_WRITTEN, 0);
	for (i = 0; i < 100; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = (size_t)snprintf(bufs[i], sizeof bufs[i],
		    "r%d", i);
	}
	ck_assert_int_eq(walmmap_append_batch(w, iov, 100, WALMMAP_ACK_DEFAULT,
	    seqs), 100);
	for (i = 0; i < 100; i++)
		ck_assert_int_eq(seqs[i], i);
	/* Streamed appends, then wait for everything durable. */
	for (i = 0; i < 1000; i++)
		ck_assert_int_eq(walmmap_append(w, "s", 1, WALMMAP_ACK_DEFAULT,
		    NULL), 0);
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_DURABLE, 10000), 0);
	walmmap_progress(w, &p);
	ck_assert_uint_eq(p.acked, 1100);
	ck_assert_uint_eq(p.pending, 0);
	ck_assert_int_eq(p.last_seq, 1099);
	ck_assert_int_eq(p.durable_seq, 1099);
	/* Unacknowledged appends, then a written wait (PING). */
	for (i = 0; i < 10; i++)
		ck_assert_int_eq(walmmap_append(w, "n", 1, WALMMAP_ACK_NONE,
		    NULL), 0);
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1), 0);
	ck_assert_int_eq(walmmap_append(w, "d", 1, WALMMAP_ACK_DURABLE, &seq),
	    0);
	ck_assert_int_eq(seq, 1110);
	ck_assert_int_eq(walmmap_wait_durable(w, seq, 5000), 0);
	ck_assert_int_eq(walmmap_sync(w, &durable), 0);
	ck_assert_int_eq(durable, 1110);
	ck_assert_str_eq(walmmap_strerror(-WALMMAP_ENOSPC),
	    "no space left on the log's device");
	walmmap_close(w);
	ck_assert_int_eq(walmmap_connect(&w, d.sock, (enum walmmap_ack)7, 0),
	    -WALMMAP_EINVAL);
	ck_assert_msg(strstr(walmmap_errmsg(w), "bad ack level") != NULL, "%s",
	    walmmap_errmsg(w));
	walmmap_close(w);
}
END_TEST

struct acks {
	int64_t		next;
	uint32_t	records;
	int		errors;
};

static void
ack_cb(void *arg, int64_t first, uint32_t count, int error)
{
	struct acks *a = arg;

	if (error) {
		a->errors++;
		return;
	}
	ck_assert_int_eq(first, a->next);
	a->next += count;
	a->records += count;
}

/* Non-blocking: EAGAIN when full, acks through the callback in order. */
START_TEST(test_nonblocking)
{
	struct walmmap *w;
	struct acks a = { 0, 0, 0 };
	struct pollfd pfd;
	uint8_t rec[1000];
	int sent = 0, again = 0, rc;

	w = connect_ok(WALMMAP_ACK_WRITTEN, WALMMAP_NONBLOCK);
	walmmap_set_ack_cb(w, ack_cb, &a);
	memset(rec, 'n', sizeof rec);
	ck_assert_int_eq(walmmap_append(w, rec, 1, WALMMAP_ACK_DEFAULT,
	    (int64_t[1]){ 0 }), -WALMMAP_EINVAL);
	while (sent < 20000) {
		rc = walmmap_append(w, rec, sizeof rec, WALMMAP_ACK_DEFAULT,
		    NULL);
		if (rc == 0) {
			sent++;
			continue;
		}
		ck_assert_int_eq(rc, -WALMMAP_EAGAIN);
		again++;
		pfd.fd = walmmap_fd(w);
		pfd.events = POLLIN;
		ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
		ck_assert_int_eq(walmmap_process(w), 0);
	}
	while (a.records < (uint32_t)sent) {
		pfd.fd = walmmap_fd(w);
		pfd.events = POLLIN;
		ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
		ck_assert_int_eq(walmmap_process(w), 0);
	}
	ck_assert_int_eq(a.errors, 0);
	ck_assert_int_eq(a.next, 20000);
	ck_assert_int_gt(again, 0);	/* the window did fill */
	walmmap_close(w);
}
END_TEST

/* Readers: files (dir, one segment, seek, follow) and a subscription. */
START_TEST(test_readers)
{
	struct walmmap *w;
	struct walmmap_reader *r, *sub;
	struct walmmap_record rec;
	char buf[32];
	int i, n;

	w = connect_ok(WALMMAP_ACK_WRITTEN, 0);
	for (i = 0; i < 5000; i++) {
		n = snprintf(buf, sizeof buf, "rec %d", i);
		ck_assert_int_eq(walmmap_append(w, buf, (size_t)n,
		    WALMMAP_ACK_DEFAULT, NULL), 0);
	}
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1), 0);

	/* Directory, seek into a later segment. */
	ck_assert_int_eq(walmmap_reader_open(&r, d.data), 0);
	ck_assert_int_eq(walmmap_reader_seek(r, 4321), 0);
	ck_assert_int_eq(walmmap_reader_next(r, &rec, 0), 1);
	ck_assert_int_eq(rec.seq, 4321);
	ck_assert_int_eq((int)rec.size, 8);
	ck_assert(memcmp(rec.data, "rec 4321", 8) == 0);
	for (i = 4322; i < 5000; i++) {
		ck_assert_int_eq(walmmap_reader_next(r, &rec, 0), 1);
		ck_assert_int_eq(rec.seq, i);
	}
	ck_assert_int_eq(walmmap_reader_next(r, &rec, 0), 0);
	/* Following: a record appended now shows up within the wait. */
	ck_assert_int_eq(walmmap_append(w, "late", 4, WALMMAP_ACK_DEFAULT,
	    NULL), 0);
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1), 0);
	ck_assert_int_eq(walmmap_reader_next(r, &rec, 30000), 1);
	ck_assert_int_eq(rec.seq, 5000);
	walmmap_reader_close(r);

	/* One segment file on its own. */
	ck_assert_int_eq(walmmap_reader_open(&r, ts_seg_path(d.data, 0)), 0);
	ck_assert_int_eq(walmmap_reader_next(r, &rec, 0), 1);
	ck_assert_int_eq(rec.seq, 0);
	walmmap_reader_close(r);
	ck_assert_int_eq(walmmap_reader_open(&r, "/nonexistent"),
	    -WALMMAP_EIO);
	ck_assert_msg(strstr(walmmap_reader_errmsg(r), "/nonexistent") != NULL,
	    "%s", walmmap_reader_errmsg(r));
	walmmap_reader_close(r);

	/* Subscription: history, then follow. */
	ck_assert_int_eq(walmmap_subscribe(&sub, d.sock, 4990, -1,
	    WALMMAP_FOLLOW), 0);
	for (i = 4990; i <= 5000; i++) {
		ck_assert_int_eq(walmmap_reader_next(sub, &rec, 30000), 1);
		ck_assert_int_eq(rec.seq, i);
	}
	ck_assert_int_eq(walmmap_reader_next(sub, &rec, 0), 0);
	ck_assert_int_eq(walmmap_append(w, "new", 3, WALMMAP_ACK_DEFAULT,
	    NULL), 0);
	ck_assert_int_eq(walmmap_reader_next(sub, &rec, 30000), 1);
	ck_assert_int_eq(rec.seq, 5001);
	ck_assert(rec.size == 3 && memcmp(rec.data, "new", 3) == 0);
	walmmap_reader_close(sub);
	/* A bounded subscription ends. */
	ck_assert_int_eq(walmmap_subscribe(&sub, d.sock, 10, 12, 0), 0);
	for (i = 10; i <= 12; i++) {
		ck_assert_int_eq(walmmap_reader_next(sub, &rec, 30000), 1);
		ck_assert_int_eq(rec.seq, i);
	}
	ck_assert_int_eq(walmmap_reader_next(sub, &rec, 30000), 0);
	walmmap_reader_close(sub);
	walmmap_close(w);
}
END_TEST

struct problems {
	int	n;
	char	what[4][256];
};

static void
verify_cb(void *arg, const struct walmmap_problem *p, uint64_t done,
    uint64_t total)
{
	struct problems *pr = arg;

	(void)done;
	(void)total;
	if (p == NULL)
		return;
	if (pr->n < 4)
		snprintf(pr->what[pr->n], sizeof pr->what[0], "%s@%" PRIu64
		    ":%" PRId64 ":%s", strrchr(p->file, '/') + 1, p->offset,
		    p->seq, p->what);
	pr->n++;
}

/* verify reports every problem and resumes after damage. */
START_TEST(test_verify_every_problem)
{
	struct walmmap *w;
	struct walmmap_verify_result res;
	struct problems pr;
	char err[256], *seg;
	uint8_t junk[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	int i;

	w = connect_ok(WALMMAP_ACK_WRITTEN, 0);
	for (i = 0; i < 10; i++)
		ck_assert_int_eq(walmmap_append(w, "0123456789", 10,
		    WALMMAP_ACK_DEFAULT, NULL), 0);
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_WRITTEN, -1), 0);
	walmmap_close(w);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	seg = strdup(ts_seg_path(d.data, 0));
	/* Damage record 2's payload and record 7's magic. */
	ck_assert_int_eq(ts_pwrite_file(seg, "X", 1, 16 + 2 * 38 + 24), 0);
	ck_assert_int_eq(ts_pwrite_file(seg, "\0", 1, 16 + 7 * 38), 0);
	/* And stray bytes after the end. */
	ck_assert_int_eq(ts_pwrite_file(seg, junk, sizeof junk,
	    16 + 10 * 38 + 100), 0);
	memset(&pr, 0, sizeof pr);
	ck_assert_int_eq(walmmap_verify(d.data, verify_cb, &pr, &res, err,
	    sizeof err), 0);
	ck_assert_uint_eq(res.problems, 3);
	ck_assert_uint_eq(res.records, 8);
	ck_assert_msg(strstr(pr.what[0], "@92:2:CRC") != NULL, "%s",
	    pr.what[0]);
	ck_assert_msg(strstr(pr.what[1], "@282:7:") != NULL, "%s", pr.what[1]);
	ck_assert_msg(strstr(pr.what[2], "non-zero bytes after the last "
	    "record") != NULL, "%s", pr.what[2]);
	free(seg);
}
END_TEST

/*
 * Durable appends hold their ACK until the sync; written appends and
 * requests behind them on the same connection still get answered, in
 * order, and durable waits need no SYNC of their own.
 */
START_TEST(test_durable_acks_held_in_order)
{
	struct walmmap *w = connect_ok(WALMMAP_ACK_WRITTEN, 0);
	struct walmmap_status st;
	struct walmmap_progress p;
	int64_t seq;
	int i;

	for (i = 0; i < 10; i++)
		ck_assert_int_eq(walmmap_append(w, "d", 1, WALMMAP_ACK_DURABLE,
		    NULL), 0);
	ck_assert_int_eq(walmmap_append(w, "w", 1, WALMMAP_ACK_WRITTEN, &seq),
	    0);
	ck_assert_int_eq(seq, 10);
	ck_assert_int_eq(walmmap_status(w, &st), 0);
	ck_assert_int_eq(st.written_seq, 10);
	ck_assert_int_eq(walmmap_append(w, "d", 1, WALMMAP_ACK_DURABLE, &seq),
	    0);
	ck_assert_int_eq(seq, 11);
	walmmap_progress(w, &p);
	ck_assert_int_ge(p.durable_seq, 11);
	ck_assert_uint_eq(p.acked, 12);
	ck_assert_int_eq(walmmap_wait(w, WALMMAP_ACK_DURABLE, -1), 0);
	walmmap_close(w);
}
END_TEST

static Suite *
client_suite(void)
{
	Suite *s = suite_create("client");
	TCase *tc = tcase_create("libwalmmap+walctl");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_durable_acks_held_in_order);
	tcase_add_test(tc, test_walctl_append_dump_verify);
	tcase_add_test(tc, test_walctl_commands);
	tcase_add_test(tc, test_walctl_tail_follow);
	tcase_add_test(tc, test_disk_full);
	tcase_add_test(tc, test_batch_and_wait);
	tcase_add_test(tc, test_nonblocking);
	tcase_add_test(tc, test_readers);
	tcase_add_test(tc, test_verify_every_problem);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	return (ts_run(client_suite()));
}
