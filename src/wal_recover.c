/*
 * walmmapd - recovery of a segment directory.
 */
#include "config.h"

#include <sys/mman.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "wal_dir.h"
#include "wal_recover.h"

static int	recover_tail(int dirfd, const char *dir, struct wal_segment *,
		    const struct wal_scan *, uint64_t *torn,
		    struct wal_error *err);
static uint64_t	last_nonzero_end(const uint8_t *base, uint64_t from,
		    uint64_t size);
static int	holds_valid_record(const uint8_t *base, uint64_t from,
		    uint64_t to);
static int	save_discarded(int dirfd, const char *dir, uint64_t id,
		    const uint8_t *base, uint64_t off, uint64_t len,
		    struct wal_error *err);

/* Recover a locked directory. */
int
wal_recover_dir(int dirfd, const char *dir, uint64_t segment_size,
    struct wal_recovered *out, struct wal_recovery *info,
    struct wal_error *err)
{
	struct wal_seglist list;
	struct wal_segment *seg;
	struct wal_scan scan;
	char name[WAL_SEGMENT_NAME_MAX];
	size_t i;
	uint64_t torn;
	int rc;

	memset(out, 0, sizeof *out);
	memset(info, 0, sizeof *info);
	wal_dir_remove_temps(dirfd);
	if ((rc = wal_dir_list(dirfd, dir, &list, err)) != 0)
		return (rc);
	info->segments = list.count;
	out->next_id = list.count > 0 ? list.ids[list.count - 1] + 1 : 0;

	for (i = list.count; i-- > 0;) {
		rc = wal_seg_open(dirfd, dir, list.ids[i], 1, &seg, err);
		if (rc != 0)
			goto fail;
		wal_seg_name(name, sizeof name, seg->id);
		if (seg->base == NULL) {
			rc = wal_seterr(err, EINVAL, "segment %s/%s is empty "
			    "(0 bytes, no file magic): move it out of the "
			    "directory", dir, name);
			wal_seg_close(seg);
			goto fail;
		}
		wal_scan(seg->base, seg->size, WAL_FILE_HEADER_SIZE, -1, &scan);
		if (scan.stop == WAL_REC_BAD_FILE) {
			rc = wal_seterr(err, EINVAL, "segment %s/%s does not "
			    "start with the SIGNETWAL1 file magic: move it out "
			    "of the directory", dir, name);
			wal_seg_close(seg);
			goto fail;
		}
		torn = 0;
		if ((rc = recover_tail(dirfd, dir, seg, &scan, &torn, err))
		    != 0) {
			wal_seg_close(seg);
			goto fail;
		}
		info->torn_bytes += torn;
		if (scan.records > 0) {
			out->tail = seg;
			info->tail_id = seg->id;
			info->tail_offset = seg->used;
			break;
		}
		/* Empty: a standby of an earlier run; reuse it if it fits. */
		if (seg->size == segment_size) {
			seg->next = out->empties;
			out->empties = seg;
			info->adopted++;
		} else
			wal_seg_close(seg);
	}
	out->next_seq = out->tail != NULL ? out->tail->last_seq + 1 : 0;
	info->next_seq = out->next_seq;
	wal_seglist_free(&list);
	return (0);

fail:
	while ((seg = out->empties) != NULL) {
		out->empties = seg->next;
		wal_seg_close(seg);
	}
	wal_seglist_free(&list);
	return (rc);
}

/*
 * Set a scanned segment's write position and zero everything after its last
 * valid record that is not zero already.
 */
static int
recover_tail(int dirfd, const char *dir, struct wal_segment *seg,
    const struct wal_scan *scan, uint64_t *torn, struct wal_error *err)
{
	uint64_t end;
	int rc;

	seg->used = scan->end;
	seg->first_seq = scan->first_seq;
	seg->last_seq = scan->last_seq;
	end = last_nonzero_end(seg->base, scan->end, seg->size);
	if (end == scan->end)
		return (0);

	if (holds_valid_record(seg->base, scan->end, end)) {
		rc = save_discarded(dirfd, dir, seg->id, seg->base, scan->end,
		    end - scan->end, err);
		if (rc != 0)
			return (rc);
	}
	memset(seg->base + scan->end, 0, end - scan->end);
	if ((rc = wal_seg_flush(seg, scan->end, end - scan->end, 1, err)) != 0)
		return (rc);
	*torn = end - scan->end;
	return (0);
}

/* Offset just past the last non-zero byte in [from, size), or from. */
static uint64_t
last_nonzero_end(const uint8_t *base, uint64_t from, uint64_t size)
{
	const uint64_t chunk = 64 * 1024;
	uint64_t hi = size, lo;

	/* Walk back in chunks: pre-allocated tails are long runs of zeros. */
	while (hi > from) {
		lo = hi - from > chunk ? hi - chunk : from;
		if (!wal_is_zero(base + lo, hi - lo)) {
			while (hi > lo && base[hi - 1] == 0)
				hi--;
			return (hi);
		}
		hi = lo;
	}
	return (from);
}

/* True if a valid record (any seq) starts at some offset in [from, to). */
static int
holds_valid_record(const uint8_t *base, uint64_t from, uint64_t to)
{
	struct wal_record rec;
	uint64_t off;

	for (off = from; off + WAL_RECORD_OVERHEAD <= to; off++) {
		if (wal_le32_load(base + off) != WAL_RECORD_MAGIC)
			continue;
		if (wal_record_check(base + off, to - off, -1, &rec) ==
		    WAL_REC_OK)
			return (1);
	}
	return (0);
}

/* Keep bytes recovery is about to zero that still hold valid records. */
static int
save_discarded(int dirfd, const char *dir, uint64_t id, const uint8_t *base,
    uint64_t off, uint64_t len, struct wal_error *err)
{
	char name[WAL_SEGMENT_NAME_MAX], path[WAL_SEGMENT_NAME_MAX + 40];
	ssize_t n;
	int fd, rc;

	wal_seg_name(name, sizeof name, id);
	snprintf(path, sizeof path, "%s.discarded-%" PRIu64, name, off);
	fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0640);
	if (fd == -1)
		return (wal_seterrno(err, errno, "cannot save bytes after the "
		    "last valid record of %s/%s to %s", dir, name, path));
	while (len > 0) {
		n = write(fd, base + off, len);
		if (n <= 0) {
			rc = n == 0 ? EIO : errno;
			close(fd);
			return (wal_seterrno(err, rc, "cannot save bytes after "
			    "the last valid record of %s/%s to %s", dir, name,
			    path));
		}
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	if (fsync(fd) == -1) {
		rc = errno;
		close(fd);
		return (wal_seterrno(err, rc, "cannot sync %s/%s", dir, path));
	}
	close(fd);
	return (wal_dir_sync(dirfd, dir, err));
}
