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
static int	recover_breaks(int dirfd, const char *dir,
		    const struct wal_seglist *, size_t tail_idx,
		    struct wal_recovered *, struct wal_recovery *,
		    struct wal_error *err);
static int	discard_segment(int dirfd, const char *dir, uint64_t id,
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
			if ((rc = recover_breaks(dirfd, dir, &list, i, out,
			    info, err)) != 0)
				goto fail;
			info->tail_id = out->tail->id;
			info->tail_offset = out->tail->used;
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
	if (out->tail != NULL) {
		wal_seg_close(out->tail);
		out->tail = NULL;
	}
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

/*
 * A power cut can leave holes in the last segments: pages written after
 * the last sync reach the disk in any order, or not at all. What was
 * durable is a prefix of the log (a sync covers every segment holding
 * unsynced records), so the log ends at the first break: a segment whose
 * records stop before its last non-zero byte, or one whose first seq does
 * not follow the previous segment's last. Everything after the break was
 * never durable: the segment holding the break becomes the tail and the
 * segments after it are renamed "<name>.discarded". Only the segments that
 * can hold unsynced records are read: the ring syncs sealed segments
 * beyond WAL_MAX_SEALED_UNSYNCED.
 */
static int
recover_breaks(int dirfd, const char *dir, const struct wal_seglist *list,
    size_t tail_idx, struct wal_recovered *out, struct wal_recovery *info,
    struct wal_error *err)
{
	const size_t window = WAL_MAX_SEALED_UNSYNCED + 2;
	struct wal_segment *seg, *prev = NULL, *brk = NULL;
	struct wal_scan scan;
	size_t i, lo, brk_idx = 0;
	uint64_t torn;
	int rc = 0;

	lo = tail_idx > window ? tail_idx - window : 0;
	for (i = lo; i < tail_idx && brk == NULL; i++) {
		if ((rc = wal_seg_open(dirfd, dir, list->ids[i], 1, &seg,
		    err)) != 0)
			goto out;
		if (seg->base == NULL) {
			wal_seg_close(seg);
			continue;
		}
		wal_scan(seg->base, seg->size, WAL_FILE_HEADER_SIZE, -1, &scan);
		seg->used = scan.end;
		seg->first_seq = scan.first_seq;
		seg->last_seq = scan.last_seq;
		if (scan.records == 0 || (prev != NULL && scan.first_seq !=
		    prev->last_seq + 1)) {
			/* A hole before this segment: the log ends at prev. */
			wal_seg_close(seg);
			if (prev != NULL) {
				brk = prev;
				brk_idx = i - 1;
				prev = NULL;
			}
			continue;
		}
		if (last_nonzero_end(seg->base, scan.end, seg->size) !=
		    scan.end) {
			/* Torn inside: the log ends in this segment. */
			brk = seg;
			brk_idx = i;
			break;
		}
		if (prev != NULL)
			wal_seg_close(prev);
		prev = seg;
	}
	if (brk == NULL) {
		if (prev == NULL || out->tail->first_seq == prev->last_seq + 1)
			goto out;	/* continuous up to the tail */
		brk = prev;
		brk_idx = tail_idx - 1;
		prev = NULL;
		while (brk_idx > lo && list->ids[brk_idx] != brk->id)
			brk_idx--;
	}
	/* The break's segment becomes the tail; the rest is discarded. */
	torn = 0;
	wal_scan(brk->base, brk->size, WAL_FILE_HEADER_SIZE, -1, &scan);
	if ((rc = recover_tail(dirfd, dir, brk, &scan, &torn, err)) != 0)
		goto out;
	info->torn_bytes += torn;
	wal_seg_close(out->tail);
	out->tail = brk;
	brk = NULL;
	for (i = brk_idx + 1; i <= tail_idx; i++) {
		if ((rc = discard_segment(dirfd, dir, list->ids[i], err)) != 0)
			goto out;
		info->discarded++;
	}
	rc = wal_dir_sync(dirfd, dir, err);
out:
	if (prev != NULL && prev != out->tail)
		wal_seg_close(prev);
	if (brk != NULL && brk != out->tail)
		wal_seg_close(brk);
	return (rc);
}

/* Move a segment beyond a break out of the log, keeping its bytes. */
static int
discard_segment(int dirfd, const char *dir, uint64_t id, struct wal_error *err)
{
	char name[WAL_SEGMENT_NAME_MAX], to[WAL_SEGMENT_NAME_MAX + 16];

	wal_seg_name(name, sizeof name, id);
	snprintf(to, sizeof to, "%s.discarded", name);
	if (renameat(dirfd, name, dirfd, to) == -1)
		return (wal_seterrno(err, errno, "cannot move %s/%s (after a "
		    "break in the log) to %s", dir, name, to));
	return (0);
}
