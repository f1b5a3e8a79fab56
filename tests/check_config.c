/*
 * walmmapd tests - configuration values that could not be written or
 * meant the wrong thing, and the options a log takes from the reference
 * writer: retain_age below a second, max_record after a reload that
 * changes segment_size, start_seq, use_large_pages, prefault_step.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "testsupport.h"
#include "tsdaemon.h"
#include "walmmap.h"

#define PATHF(buf, ...)							\
	ck_assert_int_lt(snprintf(buf, sizeof buf, __VA_ARGS__),	\
	    (int)sizeof buf)

static char		*base;
static struct ts_daemon	 d;
static char		 conf[PATH_MAX];

static void
setup(void)
{
	base = ts_mkdtemp("config");
	ts_daemon_init(&d, base);
	PATHF(conf, "%s/walmmapd.conf", base);
}

static void
teardown(void)
{
	ts_daemon_kill(&d);
	if (d.notify_fd != -1)
		close(d.notify_fd);
	ts_rmtree(base);
}

static void
write_conf(const char *text)
{
	ck_assert_int_eq(ts_write_file(conf, text, strlen(text)), 0);
}

/* The log contains text (now, not waiting). */
static void
log_has(const char *text)
{
	char *log = ts_daemon_log(&d);

	ck_assert_msg(strstr(log, text) != NULL, "\"%s\" not in: %s", text,
	    log);
	free(log);
}

/* The max_record a new connection is told. */
static uint32_t
max_record(void)
{
	struct walmmap *w;
	uint32_t m;

	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	m = walmmap_max_record(w);
	walmmap_close(w);
	return (m);
}

/* Append one record; its seq. */
static int64_t
append_one(void)
{
	struct walmmap *w;
	int64_t seq = -1;

	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	ck_assert_msg(walmmap_append(w, "r", 1, WALMMAP_ACK_WRITTEN, &seq) ==
	    0, "%s", walmmap_errmsg(w));
	walmmap_close(w);
	return (seq);
}

/* retain_age below one second used to become 0, "keep all". */
START_TEST(test_retain_age_subsecond)
{
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no",
	    "--segment-size", "64K", "-o", "retain_age=500ms", NULL), 1);
	log_has("retain_age: \"500ms\" is less than 1s (0 keeps all)");
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no",
	    "--segment-size", "64K", "-o", "retain_age=1s", NULL), 0);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * A reload that changes segment_size (applied at the next start) checks
 * max_record against the segments being written: a default max_record
 * stays what fits them, and a max_record that does not fit them is
 * refused, the running configuration kept.
 */
START_TEST(test_reload_max_record)
{
	uint32_t room = 64 * 1024 - 16 - 28;

	write_conf("segment_size = 64K\nprefault = no\n");
	ck_assert_int_eq(ts_daemon_start(&d, "-c", conf, NULL), 0);
	ck_assert_uint_eq(max_record(), room);

	/* The default follows the new size only after a restart. */
	write_conf("segment_size = 1M\nprefault = no\n");
	ts_daemon_signal(&d, SIGHUP);
	ck_assert(ts_daemon_log_wait(&d, "configuration reloaded"));
	log_has("reload: segment_size changed; it takes effect after a "
	    "restart");
	ck_assert_uint_eq(max_record(), room);

	/* One that fits the new size but not the running one is refused. */
	write_conf("segment_size = 1M\nprefault = no\nmax_record = 512K\n");
	ts_daemon_signal(&d, SIGHUP);
	ck_assert(ts_daemon_log_wait(&d, "reload: max_record 524288 does not "
	    "fit in the running segments of 65536 bytes"));
	ck_assert(ts_daemon_log_wait(&d, "keeping the running configuration"));
	ck_assert_uint_eq(max_record(), room);

	/* After a restart the new size and limit hold. */
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(ts_daemon_start(&d, "-c", conf, NULL), 0);
	ck_assert_uint_eq(max_record(), 512 * 1024);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * start_seq: a new log begins there (and continues from there after a
 * restart); a directory whose records end below it is refused, never
 * renumbered.
 */
START_TEST(test_start_seq)
{
	char *out;
	int rc;

	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no",
	    "--segment-size", "64K", "-o", "start_seq=1000", NULL), 0);
	ck_assert_int_eq(append_one(), 1000);
	ck_assert_int_eq(append_one(), 1001);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no",
	    "--segment-size", "64K", "-o", "start_seq=1000", NULL), 0);
	ck_assert_int_eq(append_one(), 1002);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);

	/* Below its end: it cannot be honoured without a gap. */
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no",
	    "--segment-size", "64K", "-o", "start_seq=5000", NULL), 1);
	log_has("start_seq 5000: ");
	log_has("already holds records (the next seq is 1003)");

	/* The files read as a log from 1000 on, by walctl and the reader. */
	rc = ts_run_prog("client/walctl", NULL, 0, &out, "dump", d.data,
	    "--json", NULL);
	ck_assert_msg(rc == 0 && strstr(out, "{\"seq\":1000,") != NULL &&
	    strstr(out, "{\"seq\":1002,") != NULL && strstr(out,
	    "{\"seq\":0,") == NULL, "%d: %s", rc, out);
	free(out);
	rc = ts_run_prog("client/walctl", NULL, 0, &out, "verify", d.data,
	    NULL);
	ck_assert_msg(rc == 0 && strstr(out, "(seq 1000 .. 1002)") != NULL,
	    "%d: %s", rc, out);
	free(out);
}
END_TEST

/*
 * Whether the daemon maps every segment with a VmFlags flag of smaps: " hg"
 * (MADV_HUGEPAGE), " rr" (MADV_RANDOM).
 */
static int
segments_flagged(pid_t pid, const char *flag)
{
	char path[64], line[1024];
	int in_seg = 0, found = 0, hg = 1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%ld/smaps", (long)pid);
	ck_assert_ptr_nonnull(f = fopen(path, "r"));
	while (fgets(line, sizeof line, f) != NULL) {
		if (strstr(line, "/wal_mmap_") != NULL) {
			in_seg = 1;
			found++;
		} else if (in_seg && strncmp(line, "VmFlags:", 8) == 0) {
			if (strstr(line, flag) == NULL)
				hg = 0;
			in_seg = 0;
		}
	}
	fclose(f);
	ck_assert_msg(found > 0, "no segment mapped by pid %ld", (long)pid);
	return (hg);
}

/*
 * use_large_pages: every segment mapping carries MADV_HUGEPAGE (the
 * kernel's "hg" flag), the standbys included; without it none does.
 */
START_TEST(test_use_large_pages)
{
	if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0) {
		fprintf(stderr, "test_use_large_pages: skipped (the kernel "
		    "has no transparent huge pages)\n");
		return;
	}
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no",
	    "--segment-size", "64K", "-o", "use_large_pages=yes", NULL), 0);
	log_has("use_large_pages: segments are mapped with MADV_HUGEPAGE");
	ck_assert_int_ne(append_one(), -1);
	ck_assert(segments_flagged(d.pid, " hg"));
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	/* Again on the directory recovery now opens: tail and standbys. */
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no",
	    "--segment-size", "64K", "-o", "use_large_pages=yes", NULL), 0);
	ck_assert(segments_flagged(d.pid, " hg"));
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no",
	    "--segment-size", "64K", NULL), 0);
	ck_assert(!segments_flagged(d.pid, " hg"));
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/* Whether every page of the file at path is in the page cache. */
static int
file_resident(const char *path)
{
	unsigned char vec[1024];
	struct stat st;
	size_t pages, i;
	void *p;
	int fd, all = 1;

	ck_assert_int_ne(fd = open(path, O_RDONLY), -1);
	ck_assert_int_eq(fstat(fd, &st), 0);
	pages = ((size_t)st.st_size + 4095) / 4096;
	ck_assert_uint_le(pages, sizeof vec);
	ck_assert_ptr_ne(p = mmap(NULL, (size_t)st.st_size, PROT_READ,
	    MAP_SHARED, fd, 0), MAP_FAILED);
	ck_assert_int_eq(mincore(p, (size_t)st.st_size, vec), 0);
	for (i = 0; i < pages; i++)
		if (!(vec[i] & 1))
			all = 0;
	munmap(p, (size_t)st.st_size);
	close(fd);
	return (all);
}

/* Whether the data directory has n segments, each resident in full. */
static int
segments_resident(unsigned n)
{
	char path[PATH_MAX + 300];
	struct dirent *e;
	unsigned found = 0, resident = 0;
	DIR *dir;

	ck_assert_ptr_nonnull(dir = opendir(d.data));
	while ((e = readdir(dir)) != NULL) {
		if (strncmp(e->d_name, "wal_mmap_", 9) != 0 ||
		    strstr(e->d_name, ".wal") == NULL)
			continue;
		found++;
		PATHF(path, "%s/%s", d.data, e->d_name);
		resident += file_resident(path);
	}
	closedir(dir);
	return (found >= n && resident == found);
}

/*
 * 600 records of 2000 bytes through the running daemon (every durable'th
 * one durable, none if 0), stop it, and walctl verify finds seqs 0 .. 599.
 */
static void
append_600_stop_verify(int durable)
{
	char rec[2000], *out;
	struct walmmap *w;
	int64_t seq = -1;
	int i, rc;

	ck_assert_int_eq(walmmap_connect(&w, d.sock, WALMMAP_ACK_WRITTEN, 0),
	    0);
	memset(rec, 'r', sizeof rec);
	for (i = 0; i < 600; i++)
		ck_assert_msg(walmmap_append(w, rec, sizeof rec, durable > 0 &&
		    i % durable == durable - 1 ? WALMMAP_ACK_DURABLE :
		    WALMMAP_ACK_WRITTEN, &seq) == 0, "%s", walmmap_errmsg(w));
	walmmap_close(w);
	ck_assert_int_eq(seq, 599);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	rc = ts_run_prog("client/walctl", NULL, 0, &out, "verify", d.data,
	    NULL);
	ck_assert_msg(rc == 0 && strstr(out, "(seq 0 .. 599)") != NULL,
	    "%d: %s", rc, out);
	free(out);
}

/*
 * prefault_step: segments are pre-faulted in steps with readahead off
 * (MADV_RANDOM, "rr"), the active one and every standby in full, and
 * records go on across rotations; a step that is not a multiple of the
 * page size is refused, and one with prefault off is said to be ignored. The residency check is shown to see a file that is not
 * pre-faulted.
 */
START_TEST(test_prefault_step)
{
	char path[PATH_MAX + 32];
	int i, rc;

	PATHF(path, "%s/cold", base);
	ck_assert_int_ne(rc = open(path, O_RDWR | O_CREAT, 0600), -1);
	ck_assert_int_eq(posix_fallocate(rc, 0, 256 << 10), 0);
	close(rc);
	ck_assert(!file_resident(path));

	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "256K",
	    "--ring", "4", "-o", "prefault_step=4K", NULL), 0);
	log_has("prefault_step: new segments are pre-faulted 4096 bytes at a "
	    "time");
	for (i = 0; i < 200 && !segments_resident(4); i++)
		usleep(50000);
	ck_assert_msg(segments_resident(4), "segments not all pre-faulted");
	ck_assert(segments_flagged(d.pid, " rr"));

	append_600_stop_verify(0);

	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault_step=5000",
	    NULL), 1);
	log_has("prefault_step: \"5000\" is not 0 or a multiple of the "
	    "page size");
	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "256K", "-o",
	    "prefault=no", "-o", "prefault_step=4K", NULL), 0);
	log_has("prefault_step: ignored, as prefault is off");
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
}
END_TEST

/*
 * writeback_step reaches the ring (check_ring's test_writeback_step shows
 * what it does there): logged at start, records across rotations all
 * verify, and a step that is not a multiple of the page size is refused.
 */
START_TEST(test_writeback_step)
{
	ck_assert_int_eq(ts_daemon_start(&d, "--segment-size", "256K",
	    "--ring", "3", "-o", "writeback_step=64K", "-o",
	    "sync_interval=10ms", NULL), 0);
	log_has("writeback_step: write-back starts 65536 bytes at a time");
	append_600_stop_verify(50);

	ck_assert_int_eq(ts_daemon_start(&d, "-o", "writeback_step=5000",
	    NULL), 1);
	log_has("writeback_step: \"5000\" is not 0 or a multiple of the "
	    "page size");
}
END_TEST

/*
 * name_prefix: segments are named "<prefix>_<id>.wal", found again after
 * a restart, read through the daemon and, being Signet segment files of
 * that name, by path; a directory holding another prefix's segments is
 * refused rather than mixed; a prefix that is not a plain name is
 * refused.
 */
START_TEST(test_name_prefix)
{
	char path[PATH_MAX + 32], *out;
	int rc;

	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no",
	    "--segment-size", "64K", "-o", "name_prefix=trades", NULL), 0);
	ck_assert_int_eq(append_one(), 0);
	ck_assert_int_eq(append_one(), 1);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	ck_assert_int_eq(ts_count_files(d.data, "wal_mmap_"), 0);
	ck_assert_int_ge(ts_count_files(d.data, "trades_"), 1);
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no",
	    "--segment-size", "64K", "-o", "name_prefix=trades", NULL), 0);
	ck_assert_int_eq(append_one(), 2);
	rc = ts_run_prog("client/walctl", NULL, 0, &out, "-s", d.sock, "tail",
	    "-n", "10", NULL);
	ck_assert_msg(rc == 0 && strstr(out, "\n2 ") != NULL, "%d: %s", rc,
	    out);
	free(out);
	ck_assert_int_eq(ts_daemon_stop(&d), 0);
	PATHF(path, "%s/trades_0000000000.wal", d.data);
	rc = ts_run_prog("client/walctl", NULL, 0, &out, "dump", path,
	    "--json", NULL);
	ck_assert_msg(rc == 0 && strstr(out, "{\"seq\":1,") != NULL, "%d: %s",
	    rc, out);
	free(out);

	/* The default prefix on it: refused, nothing renamed or mixed. */
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "prefault=no",
	    "--segment-size", "64K", NULL), 1);
	log_has("holds segment files of another name_prefix (trades_");
	ck_assert_int_eq(ts_count_files(d.data, "wal_mmap_"), 0);
	ck_assert_int_eq(ts_daemon_start(&d, "-o", "name_prefix=a/b", NULL),
	    1);
	log_has("name_prefix: \"a/b\" is not 1 to 32 letters");
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_retain_age_subsecond);
	tcase_add_test(tc, test_reload_max_record);
	tcase_add_test(tc, test_start_seq);
	tcase_add_test(tc, test_use_large_pages);
	tcase_add_test(tc, test_prefault_step);
	tcase_add_test(tc, test_writeback_step);
	tcase_add_test(tc, test_name_prefix);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(config_suite()));
}
