/*
 * walmmapd tests - segment files and directories (src/wal_segment.c,
 * src/wal_dir.c).
 */
#include "config.h"

#include <sys/stat.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testsupport.h"
#include "wal_dir.h"
#include "wal_segment.h"

#define SEG64K	(64 * 1024)

static char *dir;
static int dirfd_;

static void
setup(void)
{
	dir = ts_mkdtemp("seg");
	dirfd_ = open(dir, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(dirfd_, 0);
}

static void
teardown(void)
{
	close(dirfd_);
	ts_rmtree(dir);
}

START_TEST(test_create_reserves_and_writes_magic)
{
	struct wal_segment *seg;
	struct wal_error err;
	struct stat st;

	ck_assert_int_eq(wal_seg_create(dirfd_, dir, 3, 4 * SEG64K,
	    WAL_SEG_PREFAULT, &seg, NULL, &err), 0);
	ck_assert_ptr_nonnull(seg->base);
	ck_assert_uint_eq(seg->used, WAL_FILE_HEADER_SIZE);
	ck_assert_mem_eq(seg->base, "SIGNETWAL1\0\0\0\0\0\0", 16);
	ck_assert_int_eq(stat(ts_seg_path(dir, 3), &st), 0);
	ck_assert_int_eq(st.st_size, 4 * SEG64K);
	/* fallocate reserved the blocks: no SIGBUS later on a full disk. */
	ck_assert_int_ge((long long)st.st_blocks * 512, 4 * SEG64K);
	ck_assert_int_eq(ts_count_files(dir, ".tmp."), 0);
	wal_seg_close(seg);
}
END_TEST

START_TEST(test_create_never_clobbers)
{
	struct wal_segment *seg;
	struct wal_error err;
	uint8_t mark = 0xAB;

	ck_assert_int_eq(wal_seg_create(dirfd_, dir, 5, SEG64K, 0, &seg, NULL,
	    &err), 0);
	seg->base[100] = mark;
	wal_seg_close(seg);
	ck_assert_int_eq(wal_seg_create(dirfd_, dir, 5, SEG64K, 0, &seg, NULL,
	    &err), -EEXIST);
	ck_assert_ptr_null(seg);
	ck_assert_ptr_nonnull(strstr(err.msg, "wal_mmap_0000000005.wal"));
	ck_assert_ptr_nonnull(strstr(err.msg, "File exists"));
	ck_assert_int_eq(wal_seg_open(dirfd_, dir, 5, 0, &seg, &err), 0);
	ck_assert_uint_eq(seg->base[100], mark);
	wal_seg_close(seg);
	ck_assert_int_eq(ts_count_files(dir, ".tmp."), 0);
}
END_TEST

START_TEST(test_create_rejects_bad_size)
{
	struct wal_segment *seg;
	struct wal_error err;

	ck_assert_int_eq(wal_seg_create(dirfd_, dir, 0, SEG64K + 1, 0, &seg,
	    NULL, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "not a multiple of 64 KiB"));
	ck_assert_int_eq(ts_count_files(dir, "wal_mmap_"), 0);
}
END_TEST

static int
enospc_child(void *arg, const char *d)
{
	struct wal_segment *seg;
	struct wal_error err;
	int fd = open(d, O_RDONLY | O_DIRECTORY);

	(void)arg;
	/* 1 MiB of tmpfs: a 64 KiB segment fits, a 2 MiB one does not. */
	if (wal_seg_create(fd, d, 0, SEG64K, 0, &seg, NULL, &err) != 0)
		return (10);
	wal_seg_close(seg);
	if (wal_seg_create(fd, d, 1, 2 * 1024 * 1024, 0, &seg, NULL,
	    &err) != -ENOSPC)
		return (11);
	if (strstr(err.msg, "No space left on device") == NULL ||
	    strstr(err.msg, "wal_mmap_0000000001.wal") == NULL)
		return (12);
	/* Nothing half-made is left behind, the first segment is intact. */
	if (ts_count_files(d, ".tmp.") != 0 ||
	    ts_count_files(d, "wal_mmap_") != 1)
		return (13);
	if (wal_seg_open(fd, d, 0, 0, &seg, &err) != 0 ||
	    memcmp(seg->base, WAL_FILE_MAGIC, 16) != 0)
		return (14);
	wal_seg_close(seg);
	return (0);
}

START_TEST(test_create_enospc)
{
	int rc = ts_with_tmpfs(1024 * 1024, enospc_child, NULL);

	if (rc == -1) {
		fprintf(stderr, "test_create_enospc: SKIPPED (cannot mount "
		    "tmpfs here; run as root)\n");
		return;
	}
	ck_assert_int_eq(rc, 0);
}
END_TEST

START_TEST(test_open_missing_segment)
{
	struct wal_segment *seg;
	struct wal_error err;

	ck_assert_int_eq(wal_seg_open(dirfd_, dir, 9, 0, &seg, &err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err.msg, "cannot open segment"));
	ck_assert_ptr_nonnull(strstr(err.msg, "No such file or directory"));
}
END_TEST

START_TEST(test_dir_lock_exclusive)
{
	struct wal_error err;
	int a, b;

	a = wal_dir_open(dir, &err);
	b = wal_dir_open(dir, &err);
	ck_assert_int_ge(a, 0);
	ck_assert_int_ge(b, 0);
	ck_assert_int_eq(wal_dir_lock(a, dir, &err), 0);
	ck_assert_int_eq(wal_dir_lock(b, dir, &err), -EWOULDBLOCK);
	ck_assert_ptr_nonnull(strstr(err.msg, "in use by another writer"));
	close(a);
	/* The lock dies with its holder. */
	ck_assert_int_eq(wal_dir_lock(b, dir, &err), 0);
	close(b);
}
END_TEST

START_TEST(test_dir_list_sorted_and_filtered)
{
	static const uint64_t ids[] = { 12, 3, 7, 10000000000ull };
	struct wal_seglist l;
	struct wal_segment *seg;
	struct wal_error err;
	size_t i;
	int fd;

	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(wal_seg_create(dirfd_, dir, ids[i], SEG64K, 0,
		    &seg, NULL, &err), 0);
		wal_seg_close(seg);
	}
	fd = openat(dirfd_, "notes.txt", O_CREAT | O_WRONLY, 0600);
	close(fd);
	fd = openat(dirfd_, "wal_mmap_1.wal", O_CREAT | O_WRONLY, 0600);
	close(fd);
	ck_assert_int_eq(wal_dir_list(dirfd_, dir, &l, &err), 0);
	ck_assert_uint_eq(l.count, 4);
	ck_assert_uint_eq(l.ids[0], 3);
	ck_assert_uint_eq(l.ids[1], 7);
	ck_assert_uint_eq(l.ids[2], 12);
	ck_assert_uint_eq(l.ids[3], 10000000000ull);
	wal_seglist_free(&l);
}
END_TEST

START_TEST(test_dir_open_missing)
{
	struct wal_error err;
	char path[4200];

	snprintf(path, sizeof path, "%s/nope", dir);
	ck_assert_int_eq(wal_dir_open(path, &err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err.msg, path));
}
END_TEST

START_TEST(test_remove_temps)
{
	int fd;

	fd = openat(dirfd_, ".tmp.wal_mmap_0000000004.wal", O_CREAT | O_WRONLY,
	    0600);
	close(fd);
	fd = openat(dirfd_, ".tmp.other", O_CREAT | O_WRONLY, 0600);
	close(fd);
	wal_dir_remove_temps(dirfd_);
	ck_assert_int_eq(ts_count_files(dir, ".tmp.wal_mmap_"), 0);
	ck_assert_int_eq(ts_count_files(dir, ".tmp.other"), 1);
}
END_TEST

START_TEST(test_flush_and_unmap)
{
	struct wal_segment *seg;
	struct wal_error err;

	ck_assert_int_eq(wal_seg_create(dirfd_, dir, 0, SEG64K, 0, &seg, NULL,
	    &err), 0);
	memcpy(seg->base + 16, "xyz", 3);
	ck_assert_int_eq(wal_seg_flush(seg, 16, 3, 1, &err), 0);
	ck_assert_int_eq(wal_seg_flush(seg, 0, SEG64K, 0, &err), 0);
	wal_seg_unmap(seg);
	ck_assert_ptr_null(seg->base);
	/* Without a mapping a sync falls back to fdatasync. */
	ck_assert_int_eq(wal_seg_flush(seg, 0, 0, 1, &err), 0);
	wal_seg_close(seg);
}
END_TEST

/*
 * Issue #13, defect 24: a symbolic link or a FIFO under a segment name is
 * refused, never followed or waited on; the id of any file named after a
 * segment counts as used.
 */
START_TEST(test_open_refuses_links_and_fifos)
{
	struct wal_segment *seg;
	struct wal_seglist l;
	struct wal_error err;
	char path[4200];

	ck_assert_int_eq(wal_seg_create(dirfd_, dir, 0, SEG64K, 0, &seg, NULL,
	    &err), 0);
	wal_seg_close(seg);
	snprintf(path, sizeof path, "%s", ts_seg_path(dir, 0));
	ck_assert_int_eq(symlink(path, ts_seg_path(dir, 1)), 0);
	ck_assert_int_eq(wal_seg_open(dirfd_, dir, 1, 1, &seg, &err), -ELOOP);
	ck_assert_ptr_null(seg);
	ck_assert_ptr_nonnull(strstr(err.msg, "symbolic link"));
	ck_assert_int_eq(mkfifo(ts_seg_path(dir, 2), 0600), 0);
	ck_assert_int_eq(wal_seg_open(dirfd_, dir, 2, 0, &seg, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "not a regular file"));
	snprintf(path, sizeof path, "%s.discarded-4096.3", ts_seg_path(dir, 7));
	ck_assert_int_eq(close(open(path, O_CREAT | O_WRONLY, 0600)), 0);
	ck_assert_int_eq(wal_dir_list(dirfd_, dir, &l, &err), 0);
	ck_assert_uint_eq(l.count, 3);
	ck_assert_uint_eq(l.id_bound, 8);
	wal_seglist_free(&l);
}
END_TEST

static Suite *
segment_suite(void)
{
	Suite *s = suite_create("segment");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_create_reserves_and_writes_magic);
	tcase_add_test(tc, test_create_never_clobbers);
	tcase_add_test(tc, test_create_rejects_bad_size);
	tcase_add_test(tc, test_create_enospc);
	tcase_add_test(tc, test_open_missing_segment);
	tcase_add_test(tc, test_dir_lock_exclusive);
	tcase_add_test(tc, test_dir_list_sorted_and_filtered);
	tcase_add_test(tc, test_dir_open_missing);
	tcase_add_test(tc, test_remove_temps);
	tcase_add_test(tc, test_flush_and_unmap);
	tcase_add_test(tc, test_open_refuses_links_and_fifos);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(segment_suite()));
}
