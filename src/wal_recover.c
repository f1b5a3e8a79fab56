/*
 * walmmapd - recovery of a segment directory.
 *
 * What a crash leaves: after kill -9 every byte the writer stored is in
 * the page cache, so at most one record is torn (its CRC missing). After a
 * power cut each page written since its file's last sync is on disk or not,
 * in any order, so a segment can have holes anywhere in what was unsynced.
 *
 * What recovery relies on: the ring syncs segments in id order and records
 * in walmmapd.checkpoint which segments are synced in full (it never writes
 * into those again). Everything durable is therefore a prefix of the log,
 * and every break - a hole, a torn record, a seq that does not follow - is
 * at or after the checkpoint's segment. Recovery reads from there, ends the
 * log at the first break, and syncs everything it keeps before the ring
 * calls it durable.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wal_dir.h"
#include "wal_recover.h"

/* What recovery decided for one segment at or after the checkpoint. */
enum seg_action {
	SEG_KEEP,	/* holds records before the tail: sync it */
	SEG_TAIL,	/* the last segment of the log: repair and sync it */
	SEG_DISCARD,	/* after a break: rename it aside */
	SEG_ADOPT,	/* empty, after the tail, of the segment size */
	SEG_REMOVE,	/* empty and of no use: unlink it */
};

/* One segment as read. */
struct seg_sum {
	uint64_t	 id;
	uint64_t	 size;
	uint64_t	 records;
	int64_t		 first_seq;
	int64_t		 last_seq;
	uint64_t	 end;		/* after the last valid record */
	uint64_t	 nonzero_end;	/* after the last non-zero byte */
	enum seg_action	 action;
};

/* A recovery under way. */
struct recovery {
	int			 dirfd;
	const char		*dir;
	uint64_t		 segment_size;
	int			 marker;	/* walmmapd.sync-failed found */
	struct wal_recovery	*info;
	struct wal_error	*err;
};

static int	summarize(struct recovery *, uint64_t id, struct seg_sum *);
static int	check_entry(struct recovery *, uint64_t id);
static int	checkpoint_usable(struct recovery *, const struct wal_seglist *,
		    const struct wal_checkpoint *, uint64_t *rec_id);
static void	decide(const struct recovery *, struct seg_sum *, size_t n,
		    int ck_ok, int64_t ck_last, int64_t bound_last);
static int	cut_garbage(struct recovery *, struct wal_segment *,
		    uint64_t from, uint64_t to, uint64_t *torn);
static int	remove_segment(struct recovery *, const struct seg_sum *);
static int	discard_segment(struct recovery *, uint64_t id);
static int	save_discarded(struct recovery *, uint64_t id,
		    const uint8_t *base, uint64_t off, uint64_t len);
static int	sync_segment(struct recovery *, struct wal_segment *);
static int	sync_failed(struct recovery *, int code, const char *what);
static uint64_t	last_nonzero_end(const uint8_t *base, uint64_t from,
		    uint64_t size);
static int	holds_valid_record(const uint8_t *base, uint64_t from,
		    uint64_t to);

/* Recover a locked directory. */
int
wal_recover_dir(int dirfd, const char *dir, uint64_t segment_size,
    struct wal_recovered *out, struct wal_recovery *info,
    struct wal_error *err)
{
	return (wal_recover_dir_start(dirfd, dir, segment_size, 0, out, info,
	    err));
}

/* Recover a locked directory; a new log begins at start_seq. */
int
wal_recover_dir_start(int dirfd, const char *dir, uint64_t segment_size,
    int64_t start_seq, struct wal_recovered *out, struct wal_recovery *info,
    struct wal_error *err)
{
	struct recovery rv = { .dirfd = dirfd, .dir = dir,
	    .segment_size = segment_size, .info = info, .err = err };
	struct wal_checkpoint ck = { 0, -1, 0 }, bound = { 0, -1, 0 }, next;
	struct wal_segment *seg, **link;
	struct wal_seglist list;
	struct wal_error e2;
	struct seg_sum *sums = NULL;
	size_t i, from, n;
	uint64_t rec_id = WAL_NO_ID, torn;
	int ck_ok = 0, rc, sync_fail;
	char what[WAL_ERROR_MSG_MAX + 64];

	memset(out, 0, sizeof *out);
	memset(info, 0, sizeof *info);
	out->on_disk.last_seq = -1;
	wal_dir_remove_temps(dirfd);
	if ((rc = wal_dir_list(dirfd, dir, &list, err)) != 0)
		return (rc);
	info->segments = list.count;
	for (i = 0; i < list.count; i++)
		if ((rc = check_entry(&rv, list.ids[i])) != 0)
			goto fail;
	if ((rc = wal_sync_failed_present(dirfd, dir, err)) < 0)
		goto fail;
	rv.marker = info->sync_failed = rc;

	/* 1. Where to read from. */
	if ((rc = wal_checkpoint_read(dirfd, dir, &ck, &e2)) == 1) {
		/*
		 * Even one that cannot be used says which seqs and ids were
		 * handed out: they are never handed out again.
		 */
		bound = ck;
		if ((rc = checkpoint_usable(&rv, &list, &ck, &rec_id)) < 0)
			goto fail;
		ck_ok = rc;
	} else if (rc == 0)
		info->checkpoint = WAL_CKPT_NONE;
	else {
		info->checkpoint = WAL_CKPT_BAD;
		snprintf(info->checkpoint_why, sizeof info->checkpoint_why,
		    "%s", e2.msg);
	}
	if (ck_ok)
		out->on_disk = ck;
	else {
		ck.synced_below = 0;
		ck.last_seq = -1;
		ck.next_id = 0;
		rec_id = WAL_NO_ID;
	}
	for (from = 0; from < list.count && list.ids[from] < ck.synced_below;)
		from++;
	info->scan_from_id = from < list.count ? list.ids[from] :
	    ck.synced_below;
	out->next_id = list.id_bound;
	if (bound.next_id > out->next_id)
		out->next_id = bound.next_id;

	/* 2. Read every segment from there; nothing is changed yet. */
	n = list.count - from;
	if (n > 0 && (sums = calloc(n, sizeof *sums)) == NULL) {
		rc = wal_seterrno(err, ENOMEM, "cannot recover %s", dir);
		goto fail;
	}
	for (i = 0; i < n; i++)
		if ((rc = summarize(&rv, list.ids[from + i], &sums[i])) != 0)
			goto fail;
	info->scanned = n;

	/* 3. Where the log ends. */
	decide(&rv, sums, n, ck_ok, ck.last_seq, bound.last_seq);

	/*
	 * 4. Act: move aside what follows a break, remove what is of no use.
	 * A crash in the middle of this leaves a directory whose next
	 * recovery decides the same: the renames go in id order, so what is
	 * left after a break still shows it.
	 */
	for (i = 0; i < n; i++) {
		if (sums[i].action == SEG_DISCARD) {
			if ((rc = discard_segment(&rv, sums[i].id)) != 0)
				goto fail;
			info->discarded++;
		} else if (sums[i].action == SEG_REMOVE) {
			if ((rc = remove_segment(&rv, &sums[i])) != 0)
				goto fail;
			info->removed++;
		}
	}

	/* 5. The segments kept: repair the tail, adopt the empties, sync. */
	link = &out->empties;
	for (i = 0; i < n; i++) {
		struct seg_sum *s = &sums[i];

		if (s->action != SEG_KEEP && s->action != SEG_TAIL &&
		    s->action != SEG_ADOPT)
			continue;
		if ((rc = wal_seg_open(dirfd, dir, s->id, 1, &seg, err)) != 0)
			goto fail;
		seg->used = s->end;
		seg->first_seq = s->first_seq;
		seg->last_seq = s->last_seq;
		torn = 0;
		if (s->nonzero_end > s->end && (rc = cut_garbage(&rv, seg,
		    s->end, s->nonzero_end, &torn)) != 0) {
			wal_seg_close(seg);
			goto fail;
		}
		info->torn_bytes += torn;
		if (s->action == SEG_ADOPT) {
			/* Holds nothing anyone relies on: no sync needed. */
			*link = seg;
			link = &seg->next;
			info->adopted++;
			continue;
		}
		if ((rc = sync_segment(&rv, seg)) != 0) {
			wal_seg_close(seg);
			goto fail;
		}
		if (s->action == SEG_TAIL)
			out->tail = seg;
		else
			wal_seg_close(seg);
	}
	if (fsync(dirfd) == -1) {
		snprintf(what, sizeof what, "cannot sync directory %s", dir);
		rc = sync_failed(&rv, errno, what);
		goto fail;
	}

	/* 6. Where this run goes on, and the checkpoint that says so. */
	/*
	 * A new log (no record kept, found or handed out) may begin at
	 * start_seq: the checkpoint then says the seqs below it were handed
	 * out, so the next recovery expects the first record to be
	 * start_seq, like any record after the checkpoint.
	 */
	if (start_seq > 0 && out->tail == NULL && bound.last_seq < 0 &&
	    rec_id == WAL_NO_ID && info->discarded == 0)
		bound.last_seq = start_seq - 1;
	if (out->tail != NULL && bound.last_seq > out->tail->last_seq) {
		/*
		 * A checkpoint says later records existed and their segments
		 * are gone: their seqs are not used again. The log goes on
		 * after them in a new segment (the tail is synced).
		 */
		rec_id = out->tail->id;
		wal_seg_close(out->tail);
		out->tail = NULL;
	}
	if (out->tail != NULL) {
		out->next_seq = out->tail->last_seq + 1;
		out->rec_id = out->tail->id;
		info->tail_id = out->tail->id;
		info->tail_offset = out->tail->used;
		next.synced_below = out->tail->id;
		next.last_seq = out->tail->first_seq - 1;
	} else {
		out->next_seq = bound.last_seq + 1;
		out->rec_id = rec_id;
		next.synced_below = out->empties != NULL ? out->empties->id :
		    out->next_id;
		next.last_seq = bound.last_seq;
	}
	if (next.synced_below < ck.synced_below)
		next.synced_below = ck.synced_below;
	next.next_id = out->next_id;
	info->next_seq = out->next_seq;
	out->synced = next;
	rc = wal_checkpoint_write(dirfd, dir, &next, &sync_fail, &e2);
	if (rc != 0 && sync_fail) {
		rc = sync_failed(&rv, -rc, e2.msg);
		goto fail;
	}
	/*
	 * A full disk keeps the old checkpoint (or none): the ring writes a
	 * new one only once a sealed segment is synced. The caller is told.
	 */
	if (rc == 0)
		out->on_disk = next;
	else
		snprintf(info->checkpoint_unwritten,
		    sizeof info->checkpoint_unwritten, "%s", e2.msg);

	/* 7. Only now is everything synced again: the marker can go. */
	if (rv.marker && (rc = wal_sync_failed_clear(dirfd, dir, err)) != 0)
		goto fail;
	free(sums);
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
	free(sums);
	wal_seglist_free(&list);
	return (rc);
}

/*
 * Every name of a segment is a regular file, below a checkpoint too
 * (recovery does not read those, but readers do): refuse to start on a
 * directory or a symbolic link under such a name, as when reading one.
 */
static int
check_entry(struct recovery *rv, uint64_t id)
{
	char name[WAL_SEGMENT_NAME_MAX];
	struct stat st;

	wal_seg_name(name, sizeof name, id);
	if (fstatat(rv->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno == ENOENT)
			return (0);	/* its later open says so */
		return (wal_seterrno(rv->err, errno, "cannot examine segment "
		    "%s/%s", rv->dir, name));
	}
	if (S_ISLNK(st.st_mode))
		return (wal_seterr(rv->err, ELOOP, "segment %s/%s is a symbolic "
		    "link, which walmmapd never follows: move it out of the "
		    "directory", rv->dir, name));
	if (!S_ISREG(st.st_mode))
		return (wal_seterr(rv->err, EINVAL, "segment %s/%s is not a "
		    "regular file: move it out of the directory", rv->dir,
		    name));
	return (0);
}

/* Read one segment: its records and where its non-zero bytes end. */
static int
summarize(struct recovery *rv, uint64_t id, struct seg_sum *s)
{
	char name[WAL_SEGMENT_NAME_MAX];
	struct wal_segment *seg;
	struct wal_scan scan;
	int rc;

	if ((rc = wal_seg_open(rv->dirfd, rv->dir, id, 0, &seg, rv->err)) != 0)
		return (rc);
	wal_seg_name(name, sizeof name, id);
	if (seg->base == NULL) {
		wal_seg_close(seg);
		return (wal_seterr(rv->err, EINVAL, "segment %s/%s is empty (0 "
		    "bytes, no file magic): move it out of the directory",
		    rv->dir, name));
	}
	wal_scan(seg->base, seg->size, WAL_FILE_HEADER_SIZE, -1, &scan);
	if (scan.stop == WAL_REC_BAD_FILE) {
		wal_seg_close(seg);
		return (wal_seterr(rv->err, EINVAL, "segment %s/%s does not "
		    "start with the SIGNETWAL1 file magic: move it out of the "
		    "directory", rv->dir, name));
	}
	memset(s, 0, sizeof *s);
	s->id = id;
	s->size = seg->size;
	s->records = scan.records;
	s->first_seq = scan.first_seq;
	s->last_seq = scan.last_seq;
	s->end = scan.end;
	s->nonzero_end = last_nonzero_end(seg->base, scan.end, seg->size);
	wal_seg_close(seg);
	return (0);
}

/*
 * A checkpoint is used only if the newest segment below it that is still
 * there and holds records ends where it says (so a checkpoint copied from
 * another directory, or older than the segments, is not trusted). Empty
 * segments there are unused standbys an earlier version left. Returns 1
 * usable, 0 not (info says why), or a negative errno. *rec_id gets that
 * segment's id.
 */
static int
checkpoint_usable(struct recovery *rv, const struct wal_seglist *list,
    const struct wal_checkpoint *ck, uint64_t *rec_id)
{
	char name[WAL_SEGMENT_NAME_MAX];
	struct seg_sum s;
	size_t i;
	int rc;

	for (i = list->count; i-- > 0;) {
		if (list->ids[i] >= ck->synced_below)
			continue;
		if ((rc = summarize(rv, list->ids[i], &s)) != 0)
			return (rc);
		if (s.records == 0)
			continue;
		if (s.last_seq == ck->last_seq) {
			*rec_id = s.id;
			return (1);
		}
		wal_seg_name(name, sizeof name, s.id);
		rv->info->checkpoint = WAL_CKPT_BAD;
		snprintf(rv->info->checkpoint_why,
		    sizeof rv->info->checkpoint_why, "%s/%s says the segments "
		    "below %" PRIu64 " end at seq %" PRId64 ", but %s ends at "
		    "seq %" PRId64, rv->dir, WAL_CHECKPOINT_NAME,
		    ck->synced_below, ck->last_seq, name, s.last_seq);
		return (0);
	}
	/* Retention removed every segment below it. */
	*rec_id = WAL_NO_ID;
	return (1);
}

/*
 * Decide what becomes of each segment read (ascending ids): at most one
 * becomes the tail, the last segment of the log.
 *
 * The log ends at the first break: a segment whose first seq does not
 * follow the last one's, garbage after a segment's last record (the log
 * ends inside it), or an empty segment below a later one that holds
 * records (a segment the ring wrote into has a record, so a power cut
 * emptied it). Without a checkpoint (a directory an earlier version
 * wrote, whose old standbys of another size can sit below the tail) an
 * empty segment is a break only if the seqs around it do not follow:
 * an unused standby holds nothing, so nothing is missing; it is removed.
 *
 * A segment that begins right after the seqs a checkpoint says were
 * handed out (bound_last: even one not usable says so) follows, whatever
 * came before it: when their segments are gone, recovery goes on after
 * them (wal_recover_dir, step 6), and the next recovery, which finds the
 * same checkpoint claim unusable and reads every segment, must not take
 * that gap for a break and discard what was written since.
 *
 * Empty segments after the last one holding records are standbys of an
 * earlier run: adopted if they have the segment size, removed if not (so
 * none is left below a later tail). After a failed sync they are removed
 * too: their pages may differ from what storage holds.
 */
static void
decide(const struct recovery *rv, struct seg_sum *s, size_t n, int ck_ok,
    int64_t ck_last, int64_t bound_last)
{
	ssize_t lastrec = -1, tail = -1, pending = -1, brk = -1;
	int64_t prev = ck_last;
	int known = ck_ok;
	size_t i, j;

	for (i = 0; i < n; i++)
		if (s[i].records > 0)
			lastrec = (ssize_t)i;
	for (i = 0; i < n && (ssize_t)i <= lastrec; i++) {
		if (s[i].records == 0) {
			if (pending < 0)
				pending = (ssize_t)i;
			continue;
		}
		if (pending >= 0) {
			if (ck_ok || (known && s[i].first_seq != prev + 1)) {
				brk = pending;	/* the log ends before it */
				break;
			}
			for (j = (size_t)pending; j < i; j++)
				s[j].action = SEG_REMOVE;
			pending = -1;
		}
		if (known && s[i].first_seq != prev + 1 &&
		    !(prev < bound_last && s[i].first_seq == bound_last + 1)) {
			brk = (ssize_t)i;
			break;
		}
		tail = (ssize_t)i;
		s[i].action = SEG_KEEP;
		if (s[i].nonzero_end != s[i].end) {
			brk = (ssize_t)i + 1;	/* the log ends inside it */
			break;
		}
		prev = s[i].last_seq;
		known = 1;
	}
	if (tail >= 0)
		s[tail].action = SEG_TAIL;
	for (i = brk >= 0 ? (size_t)brk : n; (ssize_t)i <= lastrec; i++)
		s[i].action = SEG_DISCARD;
	for (i = (size_t)(lastrec + 1); i < n; i++)
		s[i].action = s[i].size == rv->segment_size && !rv->marker ?
		    SEG_ADOPT : SEG_REMOVE;
}

/*
 * Zero [from, to) of a segment mapped read-write, first saving it when it
 * still holds valid-looking records, and sync it.
 */
static int
cut_garbage(struct recovery *rv, struct wal_segment *seg, uint64_t from,
    uint64_t to, uint64_t *torn)
{
	char name[WAL_SEGMENT_NAME_MAX], what[WAL_ERROR_MSG_MAX];
	struct wal_error e2;
	int rc;

	if (holds_valid_record(seg->base, from, to) && (rc = save_discarded(rv,
	    seg->id, seg->base, from, to - from)) != 0)
		return (rc);
	memset(seg->base + from, 0, to - from);
	if (wal_seg_flush(seg, from, to - from, 1, &e2) != 0) {
		wal_seg_name(name, sizeof name, seg->id);
		snprintf(what, sizeof what, "cannot sync segment %s/%s after "
		    "zeroing what follows its last record", rv->dir, name);
		return (sync_failed(rv, e2.code, what));
	}
	*torn = to - from;
	return (0);
}

/*
 * Unlink an empty segment (its garbage saved first if it holds valid
 * records). The directory is synced once at the end of recovery.
 */
static int
remove_segment(struct recovery *rv, const struct seg_sum *s)
{
	char name[WAL_SEGMENT_NAME_MAX];
	struct wal_segment *seg;
	int rc;

	if (s->nonzero_end > s->end) {
		if ((rc = wal_seg_open(rv->dirfd, rv->dir, s->id, 0, &seg,
		    rv->err)) != 0)
			return (rc);
		rc = 0;
		if (holds_valid_record(seg->base, s->end, s->nonzero_end))
			rc = save_discarded(rv, s->id, seg->base, s->end,
			    s->nonzero_end - s->end);
		wal_seg_close(seg);
		if (rc != 0)
			return (rc);
	}
	wal_seg_name(name, sizeof name, s->id);
	if (unlinkat(rv->dirfd, name, 0) == -1)
		return (wal_seterrno(rv->err, errno, "cannot remove empty "
		    "segment %s/%s", rv->dir, name));
	return (0);
}

/*
 * Move a segment after a break out of the log, keeping its bytes, under a
 * name no file has (RENAME_NOREPLACE: an existing file, or a symbolic link
 * planted under the name, is never replaced).
 */
static int
discard_segment(struct recovery *rv, uint64_t id)
{
	char name[WAL_SEGMENT_NAME_MAX], to[WAL_SEGMENT_NAME_MAX + 32];
	unsigned k;

	wal_seg_name(name, sizeof name, id);
	for (k = 0; k < 1000; k++) {
		if (k == 0)
			snprintf(to, sizeof to, "%s.discarded", name);
		else
			snprintf(to, sizeof to, "%s.discarded.%u", name, k);
		if (renameat2(rv->dirfd, name, rv->dirfd, to,
		    RENAME_NOREPLACE) == 0)
			return (0);
		if (errno != EEXIST)
			return (wal_seterrno(rv->err, errno, "cannot move "
			    "%s/%s (after a break in the log) to %s", rv->dir,
			    name, to));
	}
	return (wal_seterr(rv->err, EEXIST, "cannot move %s/%s (after a break "
	    "in the log) aside: %s.discarded and 999 more names are taken",
	    rv->dir, name, name));
}

/*
 * Keep bytes recovery is about to zero that still hold valid records, in a
 * new file (O_EXCL, never through a symbolic link, never over a file).
 */
static int
save_discarded(struct recovery *rv, uint64_t id, const uint8_t *base,
    uint64_t off, uint64_t len)
{
	char name[WAL_SEGMENT_NAME_MAX], path[WAL_SEGMENT_NAME_MAX + 48];
	ssize_t n;
	unsigned k;
	int fd = -1, rc;

	wal_seg_name(name, sizeof name, id);
	for (k = 0; k < 1000 && fd == -1; k++) {
		if (k == 0)
			snprintf(path, sizeof path, "%s.discarded-%" PRIu64,
			    name, off);
		else
			snprintf(path, sizeof path, "%s.discarded-%" PRIu64
			    ".%u", name, off, k);
		fd = openat(rv->dirfd, path, O_WRONLY | O_CREAT | O_EXCL |
		    O_NOFOLLOW | O_CLOEXEC, 0640);
		if (fd == -1 && errno != EEXIST)
			break;
	}
	if (fd == -1)
		return (wal_seterrno(rv->err, errno, "cannot save bytes after "
		    "the last valid record of %s/%s to %s", rv->dir, name,
		    path));
	while (len > 0) {
		n = write(fd, base + off, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n == 0 ? EIO : errno;
			close(fd);
			return (wal_seterrno(rv->err, rc, "cannot save bytes "
			    "after the last valid record of %s/%s to %s",
			    rv->dir, name, path));
		}
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	if (fsync(fd) == -1) {
		rc = errno;
		close(fd);
		return (wal_seterrno(rv->err, rc, "cannot sync %s/%s", rv->dir,
		    path));
	}
	close(fd);
	return (wal_dir_sync(rv->dirfd, rv->dir, rv->err));
}

/*
 * Sync a segment recovery keeps. After walmmapd.sync-failed its bytes are
 * written again first: after a failed write-back Linux marks the pages
 * clean and reports the error once, so a later fsync succeeds without
 * writing them; only pages dirtied again are written. The whole file is
 * rewritten, zeros included (a zeroing may be what was lost).
 */
static int
sync_segment(struct recovery *rv, struct wal_segment *seg)
{
	const uint64_t chunk = 1024 * 1024;
	char name[WAL_SEGMENT_NAME_MAX], what[WAL_ERROR_MSG_MAX];
	uint64_t off, len;
	uint8_t *buf;
	ssize_t n;

	wal_seg_name(name, sizeof name, seg->id);
	if (rv->marker) {
		if ((buf = malloc(chunk)) == NULL)
			return (wal_seterrno(rv->err, ENOMEM, "cannot rewrite "
			    "segment %s/%s", rv->dir, name));
		for (off = 0; off < seg->size; off += len) {
			len = seg->size - off < chunk ? seg->size - off : chunk;
			/* Through a copy: never pwrite a page onto itself. */
			memcpy(buf, seg->base + off, len);
			n = pwrite(seg->fd, buf, len, (off_t)off);
			if (n == -1 && errno == EINTR) {
				len = 0;
				continue;
			}
			if (n <= 0) {
				snprintf(what, sizeof what, "cannot rewrite "
				    "segment %s/%s", rv->dir, name);
				free(buf);
				return (sync_failed(rv, n == 0 ? EIO : errno,
				    what));
			}
			len = (uint64_t)n;
		}
		free(buf);
		rv->info->rewritten++;
	}
	if (fdatasync(seg->fd) == -1) {
		snprintf(what, sizeof what, "cannot sync segment %s/%s",
		    rv->dir, name);
		return (sync_failed(rv, errno, what));
	}
	rv->info->synced++;
	return (0);
}

/*
 * A sync (or a rewrite) failed: what was read may not be on storage, and
 * the kernel will not say so again. Leave walmmapd.sync-failed, so that
 * the next start writes everything again, and tell the operator what to do.
 */
static int
sync_failed(struct recovery *rv, int code, const char *what)
{
	struct wal_error e2;
	char mark[WAL_ERROR_MSG_MAX];

	if (code <= 0)
		code = EIO;
	mark[0] = '\0';
	if (!rv->marker && wal_sync_failed_mark(rv->dirfd, rv->dir, what,
	    &e2) != 0)
		snprintf(mark, sizeof mark, "; also %.400s: create it by "
		    "hand before the next start", e2.msg);
	return (wal_seterr(rv->err, code, "%s: %s. Records recovery found "
	    "may not be on storage and are not called durable: repair the "
	    "storage (see the kernel log), then start again; the next start "
	    "writes and syncs every segment after the checkpoint again "
	    "because %s/%s is there%s", what, strerror(code), rv->dir,
	    WAL_SYNC_FAILED_NAME, mark));
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
