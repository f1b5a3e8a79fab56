/*
 * walmmapd - reading records back from segments.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wal_dir.h"
#include "wal_reader.h"
#include "wal_segment.h"

/*
 * Times a reader lists the directory again because a segment it listed was
 * deleted before it could open it (retention deletes from the front, so
 * each retry finds fewer files before ours); then the error stands.
 */
#define REOPEN_TRIES	64

/* reader_next_seg(): a listed segment is gone, list again. */
#define NEXT_SEG_RELIST	2

struct wal_reader {
	char			*path;		/* as given */
	int			 dirfd;		/* -1 when reading one file */
	struct wal_seglist	 segs;		/* directory mode */
	size_t			 idx;		/* cur_id's index in segs, or
						   the first larger id's */
	uint64_t		 cur_id;	/* segment being read; while seg
						   is NULL, the one wanted */
	struct wal_segment	*seg;		/* current, mapped read-only */
	uint64_t		 off;		/* next record offset in seg */
	int64_t			 expect;	/* next seq expected, -1 any */
	int64_t			 skip_to;	/* skip records below (seek) */
	int			 strict;	/* the log is not being written */

	/*
	 * The full scan for a valid record after an invalid one (at scan_off
	 * in segment scan_id) is done once for each place a reader waits at:
	 * what a live writer adds there later, the cheap walk finds.
	 */
	int			 scan_done;
	int			 scan_found;
	uint64_t		 scan_id;
	uint64_t		 scan_off;

	struct wal_reader_stop	 stop;
	char			 file[PATH_MAX]; /* current segment path */
	char			 stopfile[PATH_MAX];
};

static int	reader_peek(struct wal_reader *, struct wal_record *,
		    struct wal_error *err);
static void	reader_consume(struct wal_reader *, const struct wal_record *);
static int	reader_start(struct wal_reader *, struct wal_error *err);
static int	reader_advance(struct wal_reader *, struct wal_error *err);
static int	reader_next_seg(struct wal_reader *, int gone,
		    struct wal_error *err);
static int	reader_invalid(struct wal_reader *, enum wal_rec_status,
		    struct wal_record *, struct wal_error *err);
static int	reader_valid_after(struct wal_reader *, struct wal_error *err);
static int	reader_later_valid(struct wal_reader *, struct wal_error *err);
static int	reader_relist(struct wal_reader *, struct wal_error *err);
static int	reader_open_seg(struct wal_reader *, size_t idx,
		    struct wal_segment **, struct wal_error *err);
static void	reader_set_seg(struct wal_reader *, size_t idx,
		    struct wal_segment *);
static int64_t	reader_first_seq(struct wal_reader *, size_t idx);
static void	reader_stop(struct wal_reader *, enum wal_rec_status,
		    const char *file, uint64_t off, int64_t found);
static int	reader_new(int dirfd, const char *path, struct wal_reader **,
		    struct wal_error *);
static void	seg_path(const struct wal_reader *, size_t idx, char *buf,
		    size_t len);
static int	seg_has_magic(const struct wal_segment *);
static int	seg_walk_valid(const uint8_t *, uint64_t size, uint64_t off);
static uint64_t	seg_find_valid(const uint8_t *, uint64_t size, uint64_t off);
static uint64_t	skip_zero(const uint8_t *, uint64_t size, uint64_t off);

/* Open a directory or a single segment file. */
int
wal_reader_open(const char *path, struct wal_reader **out,
    struct wal_error *err)
{
	struct stat st;
	int rc, fd;

	*out = NULL;
	if (stat(path, &st) == -1)
		return (wal_seterrno(err, errno, "cannot open %s", path));
	if (S_ISDIR(st.st_mode)) {
		if ((fd = wal_dir_open(path, err)) < 0)
			return (fd);
		rc = reader_new(fd, path, out, err);
		close(fd);
		return (rc);
	}
	return (reader_new(-1, path, out, err));
}

/* Open the directory dirfd refers to. */
int
wal_reader_open_dir(int dirfd, const char *path, struct wal_reader **out,
    struct wal_error *err)
{
	*out = NULL;
	if (dirfd < 0)
		return (wal_seterr(err, EBADF, "cannot read %s: no directory "
		    "descriptor", path));
	return (reader_new(dirfd, path, out, err));
}

/* A reader of the directory dirfd (copied), or of the file path (-1). */
static int
reader_new(int dirfd, const char *path, struct wal_reader **out,
    struct wal_error *err)
{
	struct wal_reader *r;
	int rc;

	if ((r = calloc(1, sizeof *r)) == NULL || (r->path = strdup(path)) ==
	    NULL) {
		free(r);
		return (wal_seterrno(err, ENOMEM, "cannot read %s", path));
	}
	r->dirfd = -1;
	r->expect = -1;
	r->skip_to = -1;
	reader_stop(r, WAL_REC_END, NULL, 0, -1);
	if (dirfd != -1) {
		if ((r->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0)) == -1) {
			rc = wal_seterrno(err, errno, "cannot read %s", path);
			goto fail;
		}
		if ((rc = wal_dir_list(r->dirfd, path, &r->segs, err)) != 0)
			goto fail;
		if (r->segs.count > 0)
			r->cur_id = r->segs.ids[0];
	} else {
		/* One file: a list of one entry whose id is unused. */
		if ((r->segs.ids = calloc(1, sizeof *r->segs.ids)) == NULL) {
			rc = wal_seterrno(err, ENOMEM, "cannot read %s", path);
			goto fail;
		}
		r->segs.count = 1;
	}
	*out = r;
	return (0);
fail:
	wal_reader_close(r);
	return (rc);
}

/* Close a reader. */
void
wal_reader_close(struct wal_reader *r)
{
	if (r == NULL)
		return;
	wal_seg_close(r->seg);
	wal_seglist_free(&r->segs);
	if (r->dirfd != -1)
		close(r->dirfd);
	free(r->path);
	free(r);
}

/* Say whether the log is known not to be written. */
void
wal_reader_set_strict(struct wal_reader *r, int on)
{
	r->strict = on != 0;
}

/* Where and why the reader stopped. */
const struct wal_reader_stop *
wal_reader_stopped(const struct wal_reader *r)
{
	return (&r->stop);
}

/* Id of the segment being read. */
uint64_t
wal_reader_current_id(const struct wal_reader *r)
{
	if (r->dirfd == -1 || r->seg == NULL)
		return (UINT64_MAX);
	return (r->cur_id);
}

/* Seq expected next. */
int64_t
wal_reader_position(const struct wal_reader *r)
{
	return (r->expect);
}

int64_t
wal_reader_next_seq(const struct wal_reader *r)
{
	if (r->expect >= 0)
		return (r->skip_to > r->expect ? r->skip_to : r->expect);
	return (r->skip_to);
}

/* Next record. */
int
wal_reader_next(struct wal_reader *r, struct wal_record *rec,
    struct wal_error *err)
{
	int rc;

	for (;;) {
		if ((rc = reader_peek(r, rec, err)) <= 0)
			return (rc);
		reader_consume(r, rec);
		if (rec->seq >= r->skip_to)
			return (1);
	}
}

/* Position before seq. */
int
wal_reader_seek(struct wal_reader *r, int64_t seq, struct wal_error *err)
{
	struct wal_record rec;
	size_t lo, hi, mid, best = 0;
	int64_t f;
	int rc;

	if (r->dirfd != -1) {
		wal_seglist_free(&r->segs);
		if ((rc = wal_dir_list(r->dirfd, r->path, &r->segs, err)) != 0)
			return (rc);
	}
	/* Last segment whose first seq is <= seq (empties sort as later). */
	lo = 0;
	hi = r->segs.count;
	while (r->dirfd != -1 && lo < hi) {
		mid = lo + (hi - lo) / 2;
		f = reader_first_seq(r, mid);
		if (f >= 0 && f <= seq) {
			best = mid;
			lo = mid + 1;
		} else
			hi = mid;
	}
	wal_seg_close(r->seg);
	r->seg = NULL;
	r->idx = best;
	r->cur_id = r->segs.count > 0 ? r->segs.ids[best] : 0;
	r->expect = -1;
	r->skip_to = seq;

	/* Scan up to seq, so that the next record returned is the one. */
	for (;;) {
		if ((rc = reader_peek(r, &rec, err)) < 0)
			return (rc);
		if (rc == 0) {
			if (r->stop.status != WAL_REC_END)
				return (0);	/* next() reports the damage */
			return (wal_seterr(err, ENOENT, "seq %" PRId64 " is "
			    "beyond the last record of %s", seq, r->path));
		}
		if (rec.seq >= seq)
			return (0);
		reader_consume(r, &rec);
	}
}

/*
 * Find the next valid record without taking it: 1 with *rec (the record
 * at r->off), 0 when stopped (r->stop says why), negative errno.
 */
static int
reader_peek(struct wal_reader *r, struct wal_record *rec,
    struct wal_error *err)
{
	enum wal_rec_status st;
	int rc;

	for (;;) {
		if (r->seg == NULL && (rc = reader_start(r, err)) <= 0)
			return (rc);
		st = wal_record_check(r->seg->base + r->off,
		    r->seg->size - r->off, r->expect, rec);
		if (st == WAL_REC_OK)
			return (1);
		if (st == WAL_REC_END)
			rc = reader_advance(r, err);
		else
			rc = reader_invalid(r, st, rec, err);
		if (rc <= 0)
			return (rc);
	}
}

/* Take the record reader_peek() found. */
static void
reader_consume(struct wal_reader *r, const struct wal_record *rec)
{
	r->off += wal_record_span(rec->size);
	r->expect = rec->seq + 1;
}

/*
 * Open the segment to read from: cur_id, or the first one after it when
 * it is gone. 1 when a segment is current, 0 when stopped, negative errno.
 */
static int
reader_start(struct wal_reader *r, struct wal_error *err)
{
	struct wal_segment *seg;
	int tries, rc;

	for (tries = 0;; tries++) {
		if (r->dirfd != -1 && (r->idx >= r->segs.count ||
		    r->segs.ids[r->idx] != r->cur_id) &&
		    (rc = reader_relist(r, err)) < 0)
			return (rc);
		if (r->idx >= r->segs.count) {
			reader_stop(r, WAL_REC_END, NULL, 0, -1);
			return (0);
		}
		rc = reader_open_seg(r, r->idx, &seg, err);
		if (rc == -ENOENT && r->dirfd != -1 && tries < REOPEN_TRIES) {
			/* Deleted since it was listed (retention). */
			r->cur_id = r->segs.ids[r->idx] + 1;
			continue;
		}
		if (rc != 0)
			return (rc);
		reader_set_seg(r, r->idx, seg);
		if (!seg_has_magic(seg)) {
			reader_stop(r, WAL_REC_BAD_FILE, r->file, 0, -1);
			wal_seg_close(r->seg);
			r->seg = NULL;
			return (0);
		}
		return (1);
	}
}

/*
 * At the end of the current segment's records: move to the next segment
 * that holds records if it continues the seq chain. Returns 1 when moved
 * (or when the current segment grew meanwhile), 0 when stopped, negative
 * errno on error.
 */
static int
reader_advance(struct wal_reader *r, struct wal_error *err)
{
	int relist, gone, tries, rc;

	if (r->dirfd == -1) {
		reader_stop(r, WAL_REC_END, r->file, r->off, -1);
		return (0);
	}
	/* At the last listed segment, list again for new ones. */
	relist = r->idx + 1 >= r->segs.count ||
	    r->segs.ids[r->idx] != r->cur_id;
	for (tries = 0;; tries++) {
		if (relist && (rc = reader_relist(r, err)) < 0)
			return (rc);
		gone = r->idx >= r->segs.count ||
		    r->segs.ids[r->idx] != r->cur_id;
		rc = reader_next_seg(r, gone, err);
		if (rc != NEXT_SEG_RELIST)
			return (rc);
		if (tries == REOPEN_TRIES)
			return (-ENOENT);	/* err set by the open */
		relist = 1;
	}
}

/*
 * Look at the segments after the current one (gone: the current one is
 * no longer listed, so r->idx is the first after it). Returns as
 * reader_advance(), or NEXT_SEG_RELIST when a listed segment was deleted
 * before we could open it.
 */
static int
reader_next_seg(struct wal_reader *r, int gone, struct wal_error *err)
{
	struct wal_segment *seg;
	struct wal_record first, rec;
	enum wal_rec_status st;
	char path[PATH_MAX];
	size_t j;
	int rc;

	for (j = gone ? r->idx : r->idx + 1; j < r->segs.count; j++) {
		rc = reader_open_seg(r, j, &seg, err);
		if (rc == -ENOENT)
			return (NEXT_SEG_RELIST);
		if (rc != 0)
			return (rc);
		seg_path(r, j, path, sizeof path);
		if (!seg_has_magic(seg)) {
			wal_seg_close(seg);
			reader_stop(r, WAL_REC_BAD_FILE, path, 0, -1);
			return (0);
		}
		st = wal_record_check(seg->base + WAL_FILE_HEADER_SIZE,
		    seg->size - WAL_FILE_HEADER_SIZE, -1, &first);
		if (st == WAL_REC_END) {
			wal_seg_close(seg);	/* empty: a standby */
			continue;
		}
		if (st == WAL_REC_OK && (r->expect < 0 ||
		    first.seq == r->expect)) {
			reader_set_seg(r, j, seg);
			return (1);
		}
		/*
		 * The writer may have added to the current segment after we
		 * read its end and then moved on to this one: look once more
		 * (it completes a segment before it starts the next).
		 */
		atomic_thread_fence(memory_order_acquire);
		if (wal_record_check(r->seg->base + r->off,
		    r->seg->size - r->off, r->expect, &rec) != WAL_REC_END) {
			wal_seg_close(seg);
			return (1);
		}
		if (st == WAL_REC_OK) {
			wal_seg_close(seg);
			/*
			 * Our segment was deleted and the log now resumes
			 * later: retention removed what we were to read.
			 */
			reader_stop(r, gone && first.seq > r->expect ?
			    WAL_REC_REMOVED : WAL_REC_BAD_SEQ, path,
			    WAL_FILE_HEADER_SIZE, first.seq);
			return (0);
		}
		if (r->strict) {
			wal_seg_close(seg);
			reader_stop(r, st, path, WAL_FILE_HEADER_SIZE,
			    first.seq);
			return (0);
		}
		/*
		 * Its first record is invalid, perhaps because the writer is
		 * still on it: read on there, where reader_invalid() tells.
		 */
		reader_set_seg(r, j, seg);
		return (1);
	}
	reader_stop(r, WAL_REC_END, r->file, r->off, -1);
	return (0);
}

/*
 * An invalid record at r->off. It is damage when it is complete but out of
 * seq, when the reader is strict, or when a valid record lies after it;
 * otherwise the writer has not finished it: the end for now. Returns 1
 * when it has become valid (read it again), 0 when stopped, negative errno.
 */
static int
reader_invalid(struct wal_reader *r, enum wal_rec_status st,
    struct wal_record *rec, struct wal_error *err)
{
	int64_t found = rec->seq;
	int rc;

	if (st != WAL_REC_BAD_SEQ && !r->strict) {
		if ((rc = reader_valid_after(r, err)) < 0)
			return (rc);
		if (rc == 0) {
			reader_stop(r, WAL_REC_END, r->file, r->off, found);
			return (0);
		}
		/*
		 * The writer is past it. It stores the CRCs of a batch in
		 * record order after a release fence (wal_ring_flush()), so
		 * this one's may have landed since we looked: look again
		 * before calling it damage.
		 */
		atomic_thread_fence(memory_order_acquire);
		st = wal_record_check(r->seg->base + r->off,
		    r->seg->size - r->off, r->expect, rec);
		if (st == WAL_REC_OK)
			return (1);
		found = rec->seq;
	}
	reader_stop(r, st, r->file, r->off, found);
	return (0);
}

/*
 * Whether a valid record lies after the invalid one at r->off, in this
 * segment or a later one: 1 yes, 0 no, negative errno.
 */
static int
reader_valid_after(struct wal_reader *r, struct wal_error *err)
{
	const uint8_t *base = r->seg->base;
	uint64_t size = r->seg->size;

	/* The records whose headers are in place: a batch in progress. */
	if (seg_walk_valid(base, size, r->off))
		return (1);
	/* Anything valid further on, past a zeroed or garbled stretch. */
	if (!r->scan_done || r->scan_id != r->cur_id ||
	    r->scan_off != r->off) {
		r->scan_found = seg_find_valid(base, size, r->off + 1) < size;
		r->scan_id = r->cur_id;
		r->scan_off = r->off;
		r->scan_done = 1;
	}
	if (r->scan_found)
		return (1);
	if (r->dirfd == -1)
		return (0);
	return (reader_later_valid(r, err));
}

/*
 * Whether a segment after the current one holds a valid record (the
 * writer has moved on): 1 yes, 0 no, negative errno.
 */
static int
reader_later_valid(struct wal_reader *r, struct wal_error *err)
{
	struct wal_segment *seg;
	struct wal_record rec;
	enum wal_rec_status st;
	size_t j;
	int found, rc;

	if ((rc = reader_relist(r, err)) < 0)
		return (rc);
	for (j = rc == 1 ? r->idx + 1 : r->idx; j < r->segs.count; j++) {
		rc = reader_open_seg(r, j, &seg, err);
		if (rc == -ENOENT)
			continue;
		if (rc != 0)
			return (rc);
		found = 0;
		if (seg_has_magic(seg)) {
			st = wal_record_check(seg->base + WAL_FILE_HEADER_SIZE,
			    seg->size - WAL_FILE_HEADER_SIZE, -1, &rec);
			if (st == WAL_REC_OK)
				found = 1;
			else if (st != WAL_REC_END)
				found = seg_find_valid(seg->base, seg->size,
				    WAL_FILE_HEADER_SIZE) < seg->size;
		}
		wal_seg_close(seg);
		if (found)
			return (1);
	}
	return (0);
}

/*
 * List the directory again; r->idx becomes cur_id's index, or that of the
 * first larger id. Returns 1 when cur_id is listed, 0 when it is not,
 * negative errno.
 */
static int
reader_relist(struct wal_reader *r, struct wal_error *err)
{
	size_t j;
	int rc;

	if (r->dirfd == -1)
		return (1);
	wal_seglist_free(&r->segs);
	if ((rc = wal_dir_list(r->dirfd, r->path, &r->segs, err)) != 0)
		return (rc);
	for (j = 0; j < r->segs.count && r->segs.ids[j] < r->cur_id; j++)
		;
	r->idx = j;
	return (j < r->segs.count && r->segs.ids[j] == r->cur_id);
}

/* First seq of segment idx, -1 if empty or unreadable. */
static int64_t
reader_first_seq(struct wal_reader *r, size_t idx)
{
	uint8_t hdr[WAL_FILE_HEADER_SIZE + WAL_RECORD_HEADER_SIZE];
	char path[PATH_MAX];
	int fd;

	/* In a directory: by name, never through a link or into a FIFO. */
	if (r->dirfd != -1) {
		wal_seg_name(path, sizeof path, r->segs.ids[idx]);
		fd = openat(r->dirfd, path, O_RDONLY | O_NOFOLLOW |
		    O_NONBLOCK | O_CLOEXEC);
	} else {
		seg_path(r, idx, path, sizeof path);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd == -1)
		return (-1);
	if (pread(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr) {
		close(fd);
		return (-1);
	}
	close(fd);
	if (wal_le32_load(hdr + WAL_FILE_HEADER_SIZE) != WAL_RECORD_MAGIC)
		return (-1);
	return ((int64_t)wal_le64_load(hdr + WAL_FILE_HEADER_SIZE + 4));
}

/* Open and map segment idx read-only. */
static int
reader_open_seg(struct wal_reader *r, size_t idx, struct wal_segment **out,
    struct wal_error *err)
{
	if (r->dirfd != -1)
		return (wal_seg_open(r->dirfd, r->path, r->segs.ids[idx], 0,
		    out, err));
	return (wal_seg_open_path(r->path, 0, out, err));
}

/* Make segment idx (already opened as seg) the current one. */
static void
reader_set_seg(struct wal_reader *r, size_t idx, struct wal_segment *seg)
{
	if (r->seg != seg)
		wal_seg_close(r->seg);
	r->seg = seg;
	r->idx = idx;
	r->cur_id = r->segs.ids[idx];
	r->off = WAL_FILE_HEADER_SIZE;
	r->scan_done = 0;
	seg_path(r, idx, r->file, sizeof r->file);
}

/* Remember where and why reading stopped. */
static void
reader_stop(struct wal_reader *r, enum wal_rec_status st, const char *file,
    uint64_t off, int64_t found)
{
	r->stop.status = st;
	if (file != NULL) {
		snprintf(r->stopfile, sizeof r->stopfile, "%s", file);
		r->stop.file = r->stopfile;
	} else
		r->stop.file = NULL;
	r->stop.offset = off;
	r->stop.expect_seq = r->expect;
	r->stop.found_seq = found;
}

/* Path of segment idx. */
static void
seg_path(const struct wal_reader *r, size_t idx, char *buf, size_t len)
{
	char name[WAL_SEGMENT_NAME_MAX];

	if (r->dirfd == -1) {
		snprintf(buf, len, "%s", r->path);
		return;
	}
	wal_seg_name(name, sizeof name, r->segs.ids[idx]);
	snprintf(buf, len, "%s/%s", r->path, name);
}

/* True if a segment starts with the file magic. */
static int
seg_has_magic(const struct wal_segment *seg)
{
	return (seg->size >= WAL_FILE_HEADER_SIZE &&
	    memcmp(seg->base, WAL_FILE_MAGIC, WAL_FILE_HEADER_SIZE) == 0);
}

/*
 * Step over the records from off whose headers are in place (the CRCs of a
 * batch come last) and say whether one after off is valid. Cheap: it stops
 * at the first header that is not there.
 */
static int
seg_walk_valid(const uint8_t *base, uint64_t size, uint64_t off)
{
	struct wal_record rec;
	uint32_t n;

	while (size - off >= WAL_RECORD_HEADER_SIZE &&
	    wal_le32_load(base + off) == WAL_RECORD_MAGIC) {
		n = wal_le32_load(base + off + 20);
		if (n > WAL_MAX_PAYLOAD || wal_record_span(n) > size - off)
			break;
		off += wal_record_span(n);
		if (wal_record_check(base + off, size - off, -1, &rec) ==
		    WAL_REC_OK)
			return (1);
	}
	return (0);
}

/* Offset of the first valid record at or after off, or size if none. */
static uint64_t
seg_find_valid(const uint8_t *base, uint64_t size, uint64_t off)
{
	struct wal_record rec;

	while (off < size) {
		off = skip_zero(base, size, off);
		if (size - off < WAL_RECORD_OVERHEAD)
			break;
		if (wal_le32_load(base + off) == WAL_RECORD_MAGIC &&
		    wal_record_check(base + off, size - off, -1, &rec) ==
		    WAL_REC_OK)
			return (off);
		off++;
	}
	return (size);
}

/* Offset of the first non-zero byte at or after off, or size. */
static uint64_t
skip_zero(const uint8_t *base, uint64_t size, uint64_t off)
{
	uint64_t a, b, c, d;

	while (off < size && ((uintptr_t)(base + off) & 7) != 0) {
		if (base[off] != 0)
			return (off);
		off++;
	}
	for (; size - off >= 32; off += 32) {
		memcpy(&a, base + off, 8);
		memcpy(&b, base + off + 8, 8);
		memcpy(&c, base + off + 16, 8);
		memcpy(&d, base + off + 24, 8);
		if ((a | b | c | d) != 0)
			break;
	}
	while (off < size && base[off] == 0)
		off++;
	return (off);
}
