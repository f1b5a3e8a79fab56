/*
 * walmmapd - reading records back from segments.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wal_dir.h"
#include "wal_reader.h"
#include "wal_segment.h"

struct wal_reader {
	char			*path;		/* as given */
	int			 dirfd;		/* -1 when reading one file */
	struct wal_seglist	 segs;		/* directory mode */
	size_t			 idx;		/* current index into segs */
	struct wal_segment	*seg;		/* current, mapped read-only */
	uint64_t		 off;		/* next record offset in seg */
	int64_t			 expect;	/* next seq expected, -1 any */
	int64_t			 skip_to;	/* skip records below (seek) */
	struct wal_reader_stop	 stop;
	char			 file[PATH_MAX]; /* current segment path */
	char			 stopfile[PATH_MAX];
};

static int	reader_open_seg(struct wal_reader *, size_t idx,
		    struct wal_segment **, struct wal_error *err);
static void	reader_set_seg(struct wal_reader *, size_t idx,
		    struct wal_segment *);
static int	reader_advance(struct wal_reader *, struct wal_error *err);
static int64_t	reader_first_seq(struct wal_reader *, size_t idx);
static void	reader_stop(struct wal_reader *, enum wal_rec_status,
		    const char *file, uint64_t off, int64_t found);
static void	seg_path(const struct wal_reader *, size_t idx, char *buf,
		    size_t len);

/* Open a directory or a single segment file. */
int
wal_reader_open(const char *path, struct wal_reader **out,
    struct wal_error *err)
{
	struct wal_reader *r;
	struct stat st;
	int rc;

	*out = NULL;
	if (stat(path, &st) == -1)
		return (wal_seterrno(err, errno, "cannot open %s", path));
	if ((r = calloc(1, sizeof *r)) == NULL || (r->path = strdup(path)) ==
	    NULL) {
		free(r);
		return (wal_seterrno(err, ENOMEM, "cannot read %s", path));
	}
	r->dirfd = -1;
	r->expect = -1;
	r->skip_to = -1;
	reader_stop(r, WAL_REC_END, NULL, 0, -1);
	if (S_ISDIR(st.st_mode)) {
		if ((rc = wal_dir_open(path, err)) < 0)
			goto fail;
		r->dirfd = rc;
		if ((rc = wal_dir_list(r->dirfd, path, &r->segs, err)) != 0)
			goto fail;
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

const struct wal_reader_stop *
wal_reader_stopped(const struct wal_reader *r)
{
	return (&r->stop);
}

uint64_t
wal_reader_current_id(const struct wal_reader *r)
{
	if (r->dirfd == -1 || r->segs.count == 0 || r->seg == NULL)
		return (UINT64_MAX);
	return (r->segs.ids[r->idx]);
}

int64_t
wal_reader_position(const struct wal_reader *r)
{
	return (r->expect);
}

/* Next record. */
int
wal_reader_next(struct wal_reader *r, struct wal_record *rec,
    struct wal_error *err)
{
	struct wal_segment *seg;
	enum wal_rec_status st;
	int rc;

	for (;;) {
		if (r->seg == NULL) {
			if (r->dirfd != -1 && r->segs.count == 0) {
				wal_seglist_free(&r->segs);
				rc = wal_dir_list(r->dirfd, r->path, &r->segs,
				    err);
				if (rc != 0)
					return (rc);
			}
			if (r->segs.count == 0) {
				reader_stop(r, WAL_REC_END, NULL, 0, -1);
				return (0);
			}
			if ((rc = reader_open_seg(r, r->idx, &seg, err)) != 0)
				return (rc);
			reader_set_seg(r, r->idx, seg);
			if (r->seg->size < WAL_FILE_HEADER_SIZE ||
			    memcmp(r->seg->base, WAL_FILE_MAGIC,
			    WAL_FILE_HEADER_SIZE) != 0) {
				reader_stop(r, WAL_REC_BAD_FILE, r->file, 0, -1);
				wal_seg_close(r->seg);
				r->seg = NULL;
				return (0);
			}
		}
		st = wal_record_check(r->seg->base + r->off,
		    r->seg->size - r->off, r->expect, rec);
		if (st == WAL_REC_OK) {
			r->off += wal_record_span(rec->size);
			r->expect = rec->seq + 1;
			if (rec->seq < r->skip_to)
				continue;
			return (1);
		}
		if (st != WAL_REC_END) {
			reader_stop(r, st, r->file, r->off, rec->seq);
			return (0);
		}
		/* End of this segment's records: is there a next one? */
		if ((rc = reader_advance(r, err)) <= 0)
			return (rc);
	}
}

/* Position before seq. */
int
wal_reader_seek(struct wal_reader *r, int64_t seq, struct wal_error *err)
{
	struct wal_segment *seg;
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
	r->expect = -1;
	r->skip_to = seq;
	if (r->segs.count > 0) {
		if ((rc = reader_open_seg(r, best, &seg, err)) != 0)
			return (rc);
		reader_set_seg(r, best, seg);
	}
	return (0);
}

/*
 * At the clean end of the current segment: move to the next segment that
 * holds records if it continues the seq chain. Returns 1 when moved, 0 at
 * the end (stop set), negative errno on error.
 */
static int
reader_advance(struct wal_reader *r, struct wal_error *err)
{
	struct wal_segment *seg;
	struct wal_record first, rec;
	enum wal_rec_status st;
	size_t j;
	int rc;

	if (r->dirfd == -1) {
		reader_stop(r, WAL_REC_END, r->file, r->off, -1);
		return (0);
	}
	if (r->idx + 1 >= r->segs.count) {
		/* Pick up segments created since the listing. */
		uint64_t cur = r->segs.ids[r->idx];

		wal_seglist_free(&r->segs);
		if ((rc = wal_dir_list(r->dirfd, r->path, &r->segs, err)) != 0)
			return (rc);
		for (j = 0; j < r->segs.count && r->segs.ids[j] != cur; j++)
			;
		if (j == r->segs.count) {
			/* Our segment vanished (retention): carry on after. */
			for (j = 0; j < r->segs.count &&
			    r->segs.ids[j] < cur; j++)
				;
			j = j > 0 ? j - 1 : 0;
		}
		r->idx = j;
	}
	for (j = r->idx + 1; j < r->segs.count; j++) {
		char path[PATH_MAX];

		if ((rc = reader_open_seg(r, j, &seg, err)) != 0)
			return (rc);
		seg_path(r, j, path, sizeof path);
		if (seg->size < WAL_FILE_HEADER_SIZE || memcmp(seg->base,
		    WAL_FILE_MAGIC, WAL_FILE_HEADER_SIZE) != 0) {
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
		wal_seg_close(seg);
		/*
		 * A writer may have added to the current segment after we
		 * read its end and then rotated: look once more.
		 */
		if (wal_record_check(r->seg->base + r->off,
		    r->seg->size - r->off, r->expect, &rec) == WAL_REC_OK)
			return (1);
		/* The next segment's first record is damaged or out of seq. */
		reader_stop(r, st == WAL_REC_OK ? WAL_REC_BAD_SEQ : st, path,
		    WAL_FILE_HEADER_SIZE, first.seq);
		return (0);
	}
	reader_stop(r, WAL_REC_END, r->file, r->off, -1);
	return (0);
}

/* First seq of segment idx, -1 if empty or unreadable. */
static int64_t
reader_first_seq(struct wal_reader *r, size_t idx)
{
	uint8_t hdr[WAL_FILE_HEADER_SIZE + WAL_RECORD_HEADER_SIZE];
	char path[PATH_MAX];
	int fd;

	seg_path(r, idx, path, sizeof path);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
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
	r->off = WAL_FILE_HEADER_SIZE;
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
