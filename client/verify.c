/*
 * libwalmmap - verifying segment files: every problem, with file, offset
 * and seq; resynchronising after damage where a valid record follows.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
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

	/*
	 * A writer holds the directory: the log is live. A problem at the
	 * end of a file with nothing valid after it is then held here, and
	 * reported only once a later file shows a valid record (the writer
	 * had moved past it); at the end of the log it is a record the
	 * writer has not finished, not damage.
	 */
	int				 live;
	int				 pending;
	char				 pend_file[PATH_MAX];
	uint64_t			 pend_off;
	int64_t				 pend_seq;
	char				 pend_what[512];
	char				 end_file[PATH_MAX];
	uint64_t			 end_off;	/* where the last file
							   with records ended */
};

static void	problem(struct verify *, uint64_t off, int64_t seq,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void	verify_file(struct verify *, const char *path);
static void	verify_pending(struct verify *);
static int	grown_since(struct verify *, uint64_t off);
static int	record_now_valid(const char *path, uint64_t off);
static int	dir_writer_live(const char *path, int dirfd);
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
		v.live = dir_writer_live(path, -1);
		v.total = (uint64_t)sb.st_size;
		verify_file(&v, path);
		return (0);	/* a held problem is the live end */
	}
	if ((dirfd = wal_dir_open(path, &err)) < 0 ||
	    wal_dir_list(dirfd, path, &list, &err) != 0) {
		snprintf(errbuf, errlen, "%s", err.msg);
		if (dirfd >= 0)
			close(dirfd);
		return (-WALMMAP_EIO);
	}
	v.live = dir_writer_live(path, dirfd);
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
	/*
	 * Segment ids may skip: walmmapd never uses an id twice, so one burnt
	 * by a failed creation, a segment moved aside (.discarded) or an
	 * unused standby removed at start (another segment size) leaves a
	 * gap. A segment missing from the log shows as a seq that does not
	 * follow, checked across files below.
	 */
	for (i = 0; i < list.count; i++) {
		wal_seg_name(name, sizeof name, list.ids[i]);
		snprintf(file, sizeof file, "%s/%s", path, name);
		verify_file(&v, file);
	}
	wal_seglist_free(&list);
	return (0);	/* a held problem is the live end */
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
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT && v->live) {
			/* Retention deleted it since the listing. */
			v->expect = -1;
			return;
		}
		v->res->files++;
		problem(v, 0, v->expect, "cannot open: %s", strerror(errno));
		return;
	}
	v->res->files++;
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
			if (v->pending)
				verify_pending(v);
			if (v->expect >= 0 && rec.seq != v->expect &&
			    !grown_since(v, off))
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
			/* The normal end of a segment. */
			if (off > WAL_FILE_HEADER_SIZE) {
				snprintf(v->end_file, sizeof v->end_file,
				    "%s", path);
				v->end_off = off;
			}
			break;
		} else {
			next = resync(base, size, off + 1);
			/*
			 * On a live log the writer may have finished the
			 * record while we looked further: it stores CRCs in
			 * record order (wal_ring_flush()), so look again.
			 */
			atomic_thread_fence(memory_order_acquire);
			if (v->live && next < size && wal_record_check(base +
			    off, size - off, -1, &rec) == WAL_REC_OK)
				continue;
			if (v->live && next >= size) {
				/* Perhaps the record being written: hold it. */
				v->pending = 1;
				snprintf(v->pend_file, sizeof v->pend_file,
				    "%s", path);
				v->pend_off = off;
				v->pend_seq = v->expect;
				snprintf(v->pend_what, sizeof v->pend_what,
				    "%s (nothing valid after it)",
				    st == WAL_REC_END ? "non-zero bytes after "
				    "the last record" : wal_rec_strstatus(st));
			} else if (st == WAL_REC_END)
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

/*
 * A valid record follows the held problem: report it, unless the record
 * there has become valid meanwhile (the writer finished it, then moved on).
 */
static void
verify_pending(struct verify *v)
{
	const char *file = v->file;

	v->pending = 0;
	if (record_now_valid(v->pend_file, v->pend_off))
		return;
	v->file = v->pend_file;
	problem(v, v->pend_off, v->pend_seq, "%s", v->pend_what);
	v->file = file;
}

/*
 * A live log's next file starts with a seq other than the one expected:
 * true when the previous file has grown since we read its end (the writer
 * added to it, then moved on), which is no problem.
 */
static int
grown_since(struct verify *v, uint64_t off)
{
	return (v->live && off == WAL_FILE_HEADER_SIZE && v->end_off > 0 &&
	    record_now_valid(v->end_file, v->end_off));
}

/* True if a valid record is at off in the file at path now. */
static int
record_now_valid(const char *path, uint64_t off)
{
	struct wal_record rec;
	uint8_t hdr[WAL_RECORD_HEADER_SIZE], *buf;
	uint32_t size;
	ssize_t n;
	int fd, ok = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (0);
	if (pread(fd, hdr, sizeof hdr, (off_t)off) != (ssize_t)sizeof hdr ||
	    wal_le32_load(hdr) != WAL_RECORD_MAGIC ||
	    (size = wal_le32_load(hdr + 20)) > WAL_MAX_PAYLOAD) {
		close(fd);
		return (0);
	}
	if ((buf = malloc(wal_record_span(size))) != NULL) {
		n = pread(fd, buf, wal_record_span(size), (off_t)off);
		ok = n == (ssize_t)wal_record_span(size) &&
		    wal_record_check(buf, (size_t)n, -1, &rec) == WAL_REC_OK;
		free(buf);
	}
	close(fd);
	return (ok);
}

/*
 * Whether a writer is live on the directory path (open as dirfd, or -1:
 * the directory holding the file path). walmmapd holds an exclusive flock
 * on its directory while it runs (wal_dir_lock()): when we can take a
 * shared one, nobody writes; we drop it at once (wal_dir_lock() retries
 * for the moment we hold it).
 */
static int
dir_writer_live(const char *path, int dirfd)
{
	char parent[PATH_MAX];
	int fd = dirfd, live;

	if (fd == -1) {
		snprintf(parent, sizeof parent, "%s", path);
		if ((fd = open(dirname(parent), O_RDONLY | O_DIRECTORY |
		    O_CLOEXEC)) == -1)
			return (0);
	}
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		(void)flock(fd, LOCK_UN);
		live = 0;
	} else
		live = errno == EWOULDBLOCK;
	if (fd != dirfd)
		close(fd);
	return (live);
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
