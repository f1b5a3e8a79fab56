/*
 * walmmapd tests - recovery of a directory (src/wal_recover.c via the ring).
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testsupport.h"
#include "wal_format.h"
#include "wal_reader.h"
#include "wal_ring.h"

#define SEG64K	(64 * 1024)

static char *dir;

static void
setup(void)
{
	dir = ts_mkdtemp("recover");
}

static void
teardown(void)
{
	ts_rmtree(dir);
}

static struct wal_ring *
open_ring(struct wal_recovery *info)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K,
	    .ring_segments = 3 };
	struct wal_ring *r;
	struct wal_error err;

	if (wal_ring_open(&cfg, &r, info, &err) != 0)
		ck_abort_msg("wal_ring_open: %s", err.msg);
	return (r);
}

static void
append_n(struct wal_ring *r, int64_t from, int64_t n)
{
	uint8_t buf[512];
	struct wal_error err;
	int64_t s, seq;

	for (s = from; s < from + n; s++) {
		ts_fill_payload(buf, ts_size_of(s), s);
		if (wal_ring_append(r, buf, (uint32_t)ts_size_of(s), -1, &seq,
		    &err) != 0)
			ck_abort_msg("append %lld: %s", (long long)s, err.msg);
		ck_assert_int_eq(seq, s);
	}
}

/* Offset just after the last record of segment id (by scanning it). */
static uint64_t
tail_offset(uint64_t id, int64_t *last)
{
	struct wal_scan sc;
	uint8_t *img;
	size_t len;

	img = ts_read_file(ts_seg_path(dir, id), &len);
	ck_assert_ptr_nonnull(img);
	wal_scan(img, len, WAL_FILE_HEADER_SIZE, -1, &sc);
	free(img);
	if (last != NULL)
		*last = sc.last_seq;
	return (sc.end);
}

START_TEST(test_restart_continues_seq_and_ids)
{
	struct wal_recovery info;
	struct wal_ring *r;
	struct wal_ring_stats st;
	uint8_t *before, *after;
	size_t lb, la;

	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 0);
	append_n(r, 0, 2000);
	wal_ring_close(r);
	before = ts_read_file(ts_seg_path(dir, 0), &lb);

	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 2000);
	ck_assert_uint_eq(info.torn_bytes, 0);
	ck_assert_int_eq(wal_ring_next_seq(r), 2000);
	append_n(r, 2000, 2000);
	wal_ring_stats(r, &st);
	wal_ring_close(r);

	/* Segment 0 (full, sealed) is untouched by the second run. */
	after = ts_read_file(ts_seg_path(dir, 0), &la);
	ck_assert_uint_eq(la, lb);
	ck_assert(memcmp(before, after, la) == 0);
	free(before);
	free(after);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 4000);

	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 4000);
	ck_assert_uint_ge(info.tail_id, st.active_id);
	wal_ring_close(r);
}
END_TEST

START_TEST(test_adopts_empty_standby)
{
	struct wal_recovery info;
	struct wal_ring *r;
	int files;

	r = open_ring(&info);
	append_n(r, 0, 10);
	/* Wait for the background thread to prepare its standbys. */
	for (int i = 0; i < 500; i++) {
		struct wal_ring_stats st;

		wal_ring_stats(r, &st);
		if (st.standby == 2)
			break;
		usleep(10000);
	}
	wal_ring_close(r);
	files = ts_count_files(dir, "wal_mmap_");
	ck_assert_int_eq(files, 3);
	r = open_ring(&info);
	ck_assert_uint_eq(info.adopted, 2);
	ck_assert_uint_eq(info.tail_id, 0);
	append_n(r, 10, 10);
	wal_ring_close(r);
	/* No new files for standby: the old ones were reused. */
	ck_assert_int_eq(ts_count_files(dir, "wal_mmap_"), 3);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 20);
}
END_TEST

START_TEST(test_torn_last_record)
{
	struct wal_recovery info;
	struct wal_ring *r;
	uint8_t rec[128];
	uint64_t end;
	int64_t last;

	r = open_ring(NULL);
	append_n(r, 0, 50);
	wal_ring_close(r);
	end = tail_offset(0, &last);
	ck_assert_int_eq(last, 49);
	/* Seq 50 cut by a crash: header and half the payload, no CRC. */
	wal_record_encode(rec, 50, 1, "0123456789abcdef0123456789abcdef", 32);
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 0), rec, 24 + 16,
	    (off_t)end), 0);

	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 50);
	ck_assert_uint_eq(info.torn_bytes, 40);
	ck_assert_uint_eq(info.tail_offset, end);
	append_n(r, 50, 10);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 60);
	/* Nothing was worth saving: no .discarded file. */
	ck_assert_int_eq(ts_count_files(dir, "wal_mmap_0000000000.wal."), 0);
}
END_TEST

START_TEST(test_random_bytes_after_last_record)
{
	struct wal_recovery info;
	struct wal_ring *r;
	uint8_t junk[777];
	uint64_t end;
	int stop;

	r = open_ring(NULL);
	append_n(r, 0, 30);
	wal_ring_close(r);
	end = tail_offset(0, NULL);
	ts_fill_payload(junk, sizeof junk, 999);
	junk[0] = 0x5a;		/* not a zero magic, not the record magic */
	junk[sizeof junk - 1] = 0x7f;
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 0), junk,
	    sizeof junk, (off_t)end + 100), 0);
	junk[0] = 0x11;
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 0), junk, 1,
	    (off_t)end), 0);

	/*
	 * Before recovery a strict reader (ts_verify_log: the log is not
	 * being written) stops at the garbage and names it.
	 */
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, &stop), 30);
	ck_assert_int_eq(stop, WAL_REC_BAD_MAGIC);

	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 30);
	ck_assert_uint_eq(info.torn_bytes, 100 + sizeof junk);
	append_n(r, 30, 5);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, &stop), 35);
	ck_assert_int_eq(stop, WAL_REC_END);
}
END_TEST

START_TEST(test_corruption_saved_before_zeroing)
{
	struct wal_recovery info;
	struct wal_ring *r;
	uint64_t off;
	uint8_t b;
	int64_t n;

	r = open_ring(NULL);
	append_n(r, 0, 40);
	wal_ring_close(r);
	/* Flip a payload bit of seq 20: 21..39 still look valid after it. */
	off = WAL_FILE_HEADER_SIZE;
	for (n = 0; n < 20; n++)
		off += wal_record_span(ts_size_of(n));
	{
		size_t len;
		uint8_t *img = ts_read_file(ts_seg_path(dir, 0), &len);

		b = img[off + 24] ^ 0x04;
		free(img);
	}
	ck_assert_int_eq(ts_pwrite_file(ts_seg_path(dir, 0), &b, 1,
	    (off_t)off + 24), 0);
	r = open_ring(&info);
	ck_assert_int_eq(info.next_seq, 20);
	ck_assert_uint_gt(info.torn_bytes, 0);
	wal_ring_close(r);
	/* The bytes holding seq 20..39 were kept beside the segment. */
	ck_assert_int_eq(ts_count_files(dir,
	    "wal_mmap_0000000000.wal.discarded-"), 1);
}
END_TEST

START_TEST(test_second_writer_refused)
{
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K,
	    .ring_segments = 2 };
	struct wal_ring *r, *r2;
	struct wal_error err;

	r = open_ring(NULL);
	append_n(r, 0, 5);
	ck_assert_int_eq(wal_ring_open(&cfg, &r2, NULL, &err), -EWOULDBLOCK);
	ck_assert_ptr_nonnull(strstr(err.msg, "in use by another writer"));
	ck_assert_ptr_nonnull(strstr(err.msg, dir));
	append_n(r, 5, 5);
	wal_ring_close(r);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 10);
}
END_TEST

START_TEST(test_missing_directory)
{
	struct wal_ring_config cfg = { .segment_size = SEG64K };
	struct wal_ring *r;
	struct wal_error err;
	char path[4200];

	snprintf(path, sizeof path, "%s/missing", dir);
	cfg.dir = path;
	ck_assert_int_eq(wal_ring_open(&cfg, &r, NULL, &err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err.msg, path));
	ck_assert_ptr_nonnull(strstr(err.msg, "No such file or directory"));
}
END_TEST

START_TEST(test_foreign_segment_refused)
{
	struct wal_ring *r;
	struct wal_error err;
	struct wal_ring_config cfg = { .dir = dir, .segment_size = SEG64K };
	char junk[64] = "this is not a segment";
	int fd;

	fd = open(ts_seg_path(dir, 3), O_CREAT | O_WRONLY, 0600);
	ck_assert_int_eq(write(fd, junk, sizeof junk), sizeof junk);
	close(fd);
	ck_assert_int_eq(wal_ring_open(&cfg, &r, NULL, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "SIGNETWAL1"));
	ck_assert_ptr_nonnull(strstr(err.msg, "wal_mmap_0000000003.wal"));
}
END_TEST

START_TEST(test_stale_temp_removed)
{
	struct wal_recovery info;
	struct wal_ring *r;
	int fd;

	fd = open(ts_seg_path(dir, 0), O_CREAT | O_WRONLY, 0600);
	close(fd);
	unlink(ts_seg_path(dir, 0));
	{
		char p[4200];

		snprintf(p, sizeof p, "%s/.tmp.wal_mmap_0000000000.wal", dir);
		fd = open(p, O_CREAT | O_WRONLY, 0600);
		close(fd);
	}
	r = open_ring(&info);
	append_n(r, 0, 3);
	wal_ring_close(r);
	ck_assert_int_eq(ts_count_files(dir, ".tmp."), 0);
	ck_assert_int_eq(ts_verify_log(dir, 0, ts_size_of, NULL), 3);
}
END_TEST

/*
 * A child appends and reports each seq whose append returned through a
 * pipe; the parent SIGKILLs it at a random point and checks that recovery
 * keeps every reported record and continues the sequence.
 */
static void
kill_cycle(unsigned seed, int64_t *total)
{
	int64_t acked = -1, seq;
	struct wal_recovery info;
	struct wal_ring *r;
	int pfd[2], status;
	long target;
	pid_t pid;
	long n;

	srandom(seed);
	target = 200 + random() % 5000;
	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct wal_ring_config cfg = { .dir = dir,
		    .segment_size = SEG64K, .ring_segments = 2 };
		uint8_t buf[512];

		close(pfd[0]);
		if (wal_ring_open(&cfg, &r, NULL, NULL) != 0)
			_exit(3);
		for (seq = wal_ring_next_seq(r);; seq++) {
			ts_fill_payload(buf, ts_size_of(seq), seq);
			if (wal_ring_append(r, buf, (uint32_t)ts_size_of(seq),
			    -1, NULL, NULL) != 0)
				_exit(4);
			if (write(pfd[1], &seq, sizeof seq) != sizeof seq)
				_exit(5);
		}
	}
	close(pfd[1]);
	for (n = 0; n < target; n++)
		if (read(pfd[0], &acked, sizeof acked) != sizeof acked)
			break;
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	close(pfd[0]);
	ck_assert(WIFSIGNALED(status));

	r = open_ring(&info);
	ck_assert_int_gt(info.next_seq, acked);
	wal_ring_close(r);
	n = ts_verify_log(dir, 0, ts_size_of, NULL);
	ck_assert_int_eq(n, info.next_seq);
	*total = n;
}

START_TEST(test_kill9_mid_stream)
{
	int64_t total = 0, prev = 0;
	unsigned i;

	for (i = 0; i < 8; i++) {
		kill_cycle(1234 + i, &total);
		ck_assert_int_ge(total, prev);
		prev = total;
	}
}
END_TEST

/* The segment files of a directory, as bytes. */
struct image {
	size_t		 n;
	char		 name[16][WAL_SEGMENT_NAME_MAX];
	uint8_t		*data[16];
	size_t		 len[16];
};

static void
snapshot(const char *from, struct image *im)
{
	char path[PATH_MAX];
	uint64_t id;

	memset(im, 0, sizeof *im);
	for (id = 0; id < 64 && im->n < 16; id++) {
		snprintf(path, sizeof path, "%s", ts_seg_path(from, id));
		if (access(path, F_OK) != 0)
			continue;
		snprintf(im->name[im->n], sizeof im->name[0], "%s",
		    strrchr(path, '/') + 1);
		im->data[im->n] = ts_read_file(path, &im->len[im->n]);
		ck_assert_ptr_nonnull(im->data[im->n]);
		im->n++;
	}
}

static void
image_free(struct image *im)
{
	size_t i;

	for (i = 0; i < im->n; i++)
		free(im->data[i]);
}

/*
 * What a power cut may leave: each 4 KiB page written after the last
 * completed sync is either on disk or not (mode 0: none, 1: a random
 * subset, 2: all, the last one torn at a random 512-byte boundary, 3: all
 * but one random page). A segment created after the sync is on disk with
 * its file header (creation syncs the header before the rename and the
 * directory after it), and its later pages as above.
 */
static void
make_state(const struct image *synced, const struct image *now, int mode,
    const char *to)
{
	char path[PATH_MAX];
	uint8_t *img;
	size_t i, j, off, page, last_page, hole, changed;
	int fd;

	ck_assert_int_eq(mkdir(to, 0755), 0);
	for (i = 0; i < now->n; i++) {
		const uint8_t *old = NULL;

		for (j = 0; j < synced->n; j++)
			if (strcmp(synced->name[j], now->name[i]) == 0)
				old = synced->data[j];
		img = calloc(1, now->len[i]);
		ck_assert_ptr_nonnull(img);
		if (old != NULL)
			memcpy(img, old, now->len[i]);
		else
			memcpy(img, WAL_FILE_MAGIC, WAL_FILE_HEADER_SIZE);
		hole = (size_t)-1;
		last_page = (size_t)-1;
		for (page = 0, changed = 0; page < now->len[i]; page += 4096)
			if (memcmp(img + page, now->data[i] + page, 4096) != 0) {
				last_page = page;
				if (random() % ++changed == 0)
					hole = page;
			}
		for (page = 0; page < now->len[i]; page += 4096) {
			if (memcmp(img + page, now->data[i] + page, 4096) == 0)
				continue;
			if (mode == 0)
				continue;
			if (mode == 1 && random() % 2)
				continue;
			if (mode == 3 && page == hole)
				continue;
			if (mode == 2 && page == last_page) {
				off = (size_t)(random() % 8) * 512;
				memcpy(img + page, now->data[i] + page, off);
				continue;
			}
			memcpy(img + page, now->data[i] + page, 4096);
		}
		ck_assert_int_lt(snprintf(path, sizeof path, "%s/%s", to,
		    now->name[i]), (int)sizeof path);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		ck_assert_int_ne(fd, -1);
		ck_assert_int_eq(write(fd, img, now->len[i]), (ssize_t)
		    now->len[i]);
		close(fd);
		free(img);
	}
}

/*
 * Power loss: after a sync and more unsynced writes (across a rotation),
 * every state a power cut could leave recovers to a log that holds every
 * durable record and only records that were written, in seq order.
 */
START_TEST(test_power_loss_states)
{
	struct image synced, now;
	struct wal_ring *r;
	struct wal_error err;
	struct wal_recovery info;
	char state[PATH_MAX];
	int64_t durable;
	long n, lo = 800, hi = 0;
	int trial, mode, stop;

	srandom(11);
	r = open_ring(NULL);
	append_n(r, 0, 300);
	ck_assert_int_eq(wal_ring_sync(r, &durable, &err), 0);
	ck_assert_int_eq(durable, 299);
	snapshot(dir, &synced);
	append_n(r, 300, 500);		/* unsynced, into the next segment */
	snapshot(dir, &now);		/* what the page cache holds */
	wal_ring_close(r);
	for (trial = 0; trial < 40; trial++) {
		mode = trial % 4;
		snprintf(state, sizeof state, "%s/state-%d", dir, trial);
		make_state(&synced, &now, mode, state);
		{
			struct wal_ring_config cfg = { .dir = state,
			    .segment_size = SEG64K, .ring_segments = 3,
			    .no_prefault = 1 };

			if (wal_ring_open(&cfg, &r, &info, &err) != 0)
				ck_abort_msg("state %d (mode %d): %s", trial,
				    mode, err.msg);
			/* The log goes on where it ends, with no hole. */
			append_n(r, info.next_seq, 10);
			wal_ring_close(r);
		}
		/* Payloads checked: nothing that was not written comes back. */
		n = ts_verify_log(state, 0, ts_size_of, &stop);
		ck_assert_msg(n == info.next_seq + 10, "state %d (mode %d): "
		    "%ld records readable, the writer continued at %lld",
		    trial, mode, n, (long long)info.next_seq);
		n -= 10;
		ck_assert_msg(n > durable, "state %d (mode %d): %ld records, "
		    "durable up to %lld", trial, mode, n, (long long)durable);
		ck_assert_int_le(n, 800);
		lo = n < lo ? n : lo;
		hi = n > hi ? n : hi;
	}
	fprintf(stderr, "power loss: 40 states, %ld..%ld of 800 records "
	    "recovered, all 300 durable ones in each\n", lo, hi);
	image_free(&synced);
	image_free(&now);
}
END_TEST

static Suite *
recover_suite(void)
{
	Suite *s = suite_create("recover");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_restart_continues_seq_and_ids);
	tcase_add_test(tc, test_power_loss_states);
	tcase_add_test(tc, test_adopts_empty_standby);
	tcase_add_test(tc, test_torn_last_record);
	tcase_add_test(tc, test_random_bytes_after_last_record);
	tcase_add_test(tc, test_corruption_saved_before_zeroing);
	tcase_add_test(tc, test_second_writer_refused);
	tcase_add_test(tc, test_missing_directory);
	tcase_add_test(tc, test_foreign_segment_refused);
	tcase_add_test(tc, test_stale_temp_removed);
	tcase_add_test(tc, test_kill9_mid_stream);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(recover_suite()));
}
