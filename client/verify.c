/*
 * libwalmmap - verifying segment files: every problem, with file, offset
 * and seq; resynchronising after damage where a valid record follows.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "wal_dir.h"
#include "wal_format.h"
#include "wal_segment.h"
#include "walmmap.h"

#define PROGRESS_STEP	(64u * 1024 * 1024)

struct verify {
	walmmap_verify_cb		 cb;
	void				*arg;
	struct walmmap_verify_result	*res;
	uint64_t			 total;
	uint64_t			 next_progress;
	int64_t				 expect;	/* next seq, -1 any */
	const char			*file;
};

static void	problem(struct verify *, uint64_t off, int64_t seq,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void	verify_file(struct verify *, const char *path);
static uint64_t	resync(const uint8_t *, uint64_t size, uint64_t from);

int
walmmap_verify(const char *path, walmmap_verify_cb cb, void *arg,
    struct walmmap_verify_result *res, char *errbuf, size_t errlen)
{
	struct verify v;
	struct wal_seglist list;
	struct wal_error err;
	struct stat sb;
	char file[PATH_MAX], name[WAL_SEGMENT_NAME_MAX];
	size_t i;
	int dirfd;

	memset(res, 0, sizeof *res);
	res->first_seq = res->last_seq = -1;
	memset(&v, 0, sizeof v);
	v.cb = cb;
	v.arg = arg;
	v.res = res;
	v.expect = -1;
	if (stat(path, &sb) == -1) {
		snprintf(errbuf, errlen, "cannot read %s: %s", path,
		    strerror(errno));
		return (-WALMMAP_EIO);
	}
	if (!S_ISDIR(sb.st_mode)) {
		v.total = (uint64_t)sb.st_size;
		verify_file(&v, path);
		return (0);
	}
	if ((dirfd = wal_dir_open(path, &err)) < 0 ||
	    wal_dir_list(dirfd, path, &list, &err) != 0) {
		snprintf(errbuf, errlen, "%s", err.msg);
		if (dirfd >= 0)
			close(dirfd);
		return (-WALMMAP_EIO);
	}
	close(dirfd);
	if (list.count == 0) {
		snprintf(errbuf, errlen, "%s holds no segment files (%s*%s)",
		    path, WAL_SEGMENT_PREFIX, WAL_SEGMENT_SUFFIX);
		wal_seglist_free(&list);
		return (-WALMMAP_EIO);
	}
	for (i = 0; i < list.count; i++) {
		wal_seg_name(name, sizeof name, list.ids[i]);
		snprintf(file, sizeof file, "%s/%s", path, name);
		if (stat(file, &sb) == 0)
			v.total += (uint64_t)sb.st_size;
	}
	for (i = 0; i < list.count; i++) {
		if (i > 0 && list.ids[i] != list.ids[i - 1] + 1) {
			wal_seg_name(name, sizeof name, list.ids[i]);
			snprintf(file, sizeof file, "%s/%s", path, name);
			v.file = file;
			problem(&v, 0, v.expect, "segment ids jump from %"
			    PRIu64 " to %" PRIu64 " (a segment is missing)",
			    list.ids[i - 1], list.ids[i]);
		}
		wal_seg_name(name, sizeof name, list.ids[i]);
		snprintf(file, sizeof file, "%s/%s", path, name);
		verify_file(&v, file);
	}
	wal_seglist_free(&list);
	return (0);
}

/* Check one segment file; v->expect carries the seq across files. */
static void
verify_file(struct verify *v, const char *path)
{
	struct wal_record rec;
	struct stat sb;
	enum wal_rec_status st;
	const uint8_t *base;
	uint64_t off, size, next;
	void *map;
	int fd;

	v->file = path;
	v->res->files++;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		problem(v, 0, v->expect, "cannot open: %s", strerror(errno));
		return;
	}
	if (fstat(fd, &sb) == -1) {
		problem(v, 0, v->expect, "cannot stat: %s", strerror(errno));
		close(fd);
		return;
	}
	size = (uint64_t)sb.st_size;
	if (size < WAL_FILE_HEADER_SIZE) {
		problem(v, 0, v->expect, "file of %" PRIu64 " bytes is shorter "
		    "than the %d-byte file magic", size, WAL_FILE_HEADER_SIZE);
		close(fd);
		return;
	}
	map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		problem(v, 0, v->expect, "cannot map: %s", strerror(errno));
		return;
	}
	base = map;
	(void)madvise(map, size, MADV_SEQUENTIAL);
	if (memcmp(base, WAL_FILE_MAGIC, WAL_FILE_HEADER_SIZE) != 0)
		problem(v, 0, v->expect, "bad file magic (not a SIGNETWAL1 "
		    "segment)");

	off = WAL_FILE_HEADER_SIZE;
	while (off < size) {
		st = wal_record_check(base + off, size - off, -1, &rec);
		if (st == WAL_REC_OK) {
			if (v->expect >= 0 && rec.seq != v->expect)
				problem(v, off, v->expect, "seq %" PRId64
				    " where %" PRId64 " was expected", rec.seq,
				    v->expect);
			if (v->res->first_seq < 0)
				v->res->first_seq = rec.seq;
			v->res->last_seq = rec.seq;
			v->res->records++;
			v->expect = rec.seq + 1;
			off += wal_record_span(rec.size);
		} else if (st == WAL_REC_END &&
		    wal_is_zero(base + off, size - off)) {
			break;		/* the normal end of a segment */
		} else {
			next = resync(base, size, off + 1);
			if (st == WAL_REC_END)
				problem(v, off, v->expect, "non-zero bytes "
				    "after the last record");
			else if (next < size)
				problem(v, off, v->expect, "%s; valid records "
				    "resume at offset %" PRIu64 " (seq %" PRId64
				    ")", wal_rec_strstatus(st), next,
				    (int64_t)wal_le64_load(base + next + 4));
			else
				problem(v, off, v->expect, "%s (nothing valid "
				    "after it)", wal_rec_strstatus(st));
			/* What the damage swallowed is part of this one
			 * problem: continue from whatever seq comes next. */
			v->expect = -1;
			off = next;
		}
		if (v->cb != NULL && v->res->bytes + off >= v->next_progress) {
			v->cb(v->arg, NULL, v->res->bytes + off, v->total);
			v->next_progress = v->res->bytes + off +
			    PROGRESS_STEP;
		}
	}
	v->res->bytes += size;
	if (v->cb != NULL)
		v->cb(v->arg, NULL, v->res->bytes, v->total);
	munmap(map, size);
}

/* Offset of the next valid record at or after from, or size. */
static uint64_t
resync(const uint8_t *base, uint64_t size, uint64_t from)
{
	struct wal_record rec;
	const uint8_t *p;
	uint8_t magic[4];

	wal_le32_store(magic, WAL_RECORD_MAGIC);
	while (from + WAL_RECORD_OVERHEAD <= size) {
		p = memmem(base + from, size - from, magic, sizeof magic);
		if (p == NULL)
			break;
		from = (uint64_t)(p - base);
		if (wal_record_check(p, size - from, -1, &rec) == WAL_REC_OK)
			return (from);
		from++;
	}
	return (size);
}

static void
problem(struct verify *v, uint64_t off, int64_t seq, const char *fmt, ...)
{
	struct walmmap_problem p;
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	v->res->problems++;
	if (v->cb == NULL)
		return;
	p.file = v->file;
	p.offset = off;
	p.seq = seq;
	p.what = what;
	v->cb(v->arg, &p, 0, 0);
}
