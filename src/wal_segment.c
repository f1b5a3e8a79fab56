/*
 * walmmapd - one segment file: create, map, pre-fault, flush, seal.
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
#include "wal_segment.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define WAL_TEMP_PREFIX ".tmp."

static int	wal_seg_reserve(int fd, uint64_t size);
static int	wal_seg_map(struct wal_segment *, const char *path,
		    struct wal_error *err);
static int	wal_seg_adopt_fd(int fd, uint64_t id, const char *path,
		    int writable, struct wal_segment **, struct wal_error *err);

/*
 * The segment names' prefix with its '_' (name_prefix): set once, before
 * any segment is named, listed or parsed (wal_seg_set_prefix), then only
 * read.
 */
static char	wal_seg_prefix[WAL_SEG_PREFIX_MAX + 2] = WAL_SEGMENT_PREFIX;

/* Name segments "<name_prefix>_<id>.wal" from now on. */
int
wal_seg_set_prefix(const char *name_prefix)
{
	size_t i, n = strlen(name_prefix);

	if (n == 0 || n > WAL_SEG_PREFIX_MAX || name_prefix[0] == '.')
		return (-1);
	for (i = 0; i < n; i++)
		if (!((name_prefix[i] >= 'a' && name_prefix[i] <= 'z') ||
		    (name_prefix[i] >= 'A' && name_prefix[i] <= 'Z') ||
		    (name_prefix[i] >= '0' && name_prefix[i] <= '9') ||
		    name_prefix[i] == '_' || name_prefix[i] == '-' ||
		    name_prefix[i] == '.'))
			return (-1);
	snprintf(wal_seg_prefix, sizeof wal_seg_prefix, "%s_", name_prefix);
	return (0);
}

/* Format a segment file name. */
void
wal_seg_name(char *buf, size_t len, uint64_t id)
{
	snprintf(buf, len, "%s%010" PRIu64 WAL_SEGMENT_SUFFIX, wal_seg_prefix,
	    id);
}

/*
 * Parse the prefix, 10 or more digits and the suffix of a segment name;
 * returns 0, sets *id and *rest (what follows the suffix), or -1. Only
 * the digits wal_seg_name() writes: more than 10 without a leading zero,
 * so that no two names parse as one id (a stray "wal_mmap_00000000001.wal"
 * beside segment 1 would have listed segment 1 twice).
 */
static int
wal_seg_parse(const char *name, uint64_t *id, const char **rest)
{
	const char *p;
	uint64_t v = 0;
	size_t digits = 0;

	if (strncmp(name, wal_seg_prefix, strlen(wal_seg_prefix)) != 0)
		return (-1);
	p = name + strlen(wal_seg_prefix);
	for (; *p >= '0' && *p <= '9'; p++, digits++) {
		if (v > (UINT64_MAX - 9) / 10)
			return (-1);
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (digits < 10 || (digits > 10 && name[strlen(wal_seg_prefix)] ==
	    '0') || strncmp(p, WAL_SEGMENT_SUFFIX,
	    strlen(WAL_SEGMENT_SUFFIX)) != 0)
		return (-1);
	*id = v;
	*rest = p + strlen(WAL_SEGMENT_SUFFIX);
	return (0);
}

/* Parse a segment file name: the prefix, 10 or more digits, the suffix. */
int
wal_seg_parse_name(const char *name, uint64_t *id)
{
	const char *rest;
	uint64_t v;

	if (wal_seg_parse(name, &v, &rest) != 0 || *rest != '\0')
		return (-1);
	*id = v;
	return (0);
}

/* Parse the id of a segment name or of a name made from one by a suffix. */
int
wal_seg_parse_any_name(const char *name, uint64_t *id)
{
	const char *rest;
	uint64_t v;

	if (wal_seg_parse(name, &v, &rest) != 0 || (*rest != '\0' &&
	    *rest != '.'))
		return (-1);
	*id = v;
	return (0);
}

/* True if size is a valid segment size. */
int
wal_seg_size_valid(uint64_t size)
{
	return (size >= WAL_SEGMENT_MIN && size <= WAL_SEGMENT_MAX &&
	    size % WAL_SEGMENT_ALIGN == 0);
}

/* Create, reserve, name and map a new segment. */
int
wal_seg_create(int dirfd, const char *dirname, uint64_t id, uint64_t size,
    int flags, struct wal_segment **out, int *named, struct wal_error *err)
{
	char name[WAL_SEGMENT_NAME_MAX], tmp[WAL_SEGMENT_NAME_MAX + 16];
	char path[4096];
	struct wal_segment *seg;
	int fd, rc;

	*out = NULL;
	if (named != NULL)
		*named = 0;
	wal_seg_name(name, sizeof name, id);
	snprintf(path, sizeof path, "%s/%s", dirname, name);
	if (!wal_seg_size_valid(size))
		return (wal_seterr(err, EINVAL, "cannot create segment %s: "
		    "size %" PRIu64 " is not a multiple of 64 KiB between "
		    "64 KiB and 16 GiB", path, size));
	snprintf(tmp, sizeof tmp, WAL_TEMP_PREFIX "%s", name);

	fd = openat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0640);
	if (fd == -1)
		return (wal_seterrno(err, errno, "cannot create segment %s",
		    path));
	if ((rc = wal_seg_reserve(fd, size)) != 0) {
		wal_seterrno(err, rc, "cannot reserve %" PRIu64 " bytes for "
		    "segment %s", size, path);
		goto fail;
	}
	if (pwrite(fd, WAL_FILE_MAGIC, WAL_FILE_HEADER_SIZE, 0) !=
	    WAL_FILE_HEADER_SIZE) {
		rc = errno != 0 ? errno : EIO;
		wal_seterrno(err, rc, "cannot write file magic of segment %s",
		    path);
		goto fail;
	}
	/* The size, extents and magic are durable before the name appears. */
	if (fsync(fd) == -1) {
		rc = errno;
		wal_seterrno(err, rc, "cannot sync new segment %s", path);
		goto fail;
	}
	if (renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) == -1) {
		rc = errno;
		wal_seterrno(err, rc, "cannot name new segment %s", path);
		goto fail;
	}

	/*
	 * From here on the file has its final name. A failure takes the name
	 * away again, so no empty segment is left where recovery would take
	 * it for a hole, and tells the caller never to use the id again.
	 */
	if (named != NULL)
		*named = 1;
	if ((rc = -wal_dir_sync(dirfd, dirname, err)) != 0)
		goto unname;
	if ((seg = calloc(1, sizeof *seg)) == NULL) {
		rc = ENOMEM;
		wal_seterrno(err, rc, "cannot map segment %s", path);
		goto unname;
	}
	seg->id = id;
	seg->fd = fd;
	seg->size = size;
	seg->used = WAL_FILE_HEADER_SIZE;
	seg->first_seq = seg->last_seq = -1;
	seg->writable = 1;
	if ((rc = -wal_seg_map(seg, path, err)) != 0) {
		free(seg);
		goto unname;
	}
	if (flags & WAL_SEG_HUGE)
		(void)wal_seg_advise_huge(seg);	/* advice only */
	if (flags & WAL_SEG_PREFAULT)
		wal_seg_prefault(seg);
	*out = seg;
	return (0);

fail:
	unlinkat(dirfd, tmp, 0);
	close(fd);
	return (-rc);

unname:
	/* Best effort: the error already says what failed. */
	unlinkat(dirfd, name, 0);
	(void)fsync(dirfd);
	close(fd);
	return (-rc);
}

/* Open and map an existing segment of a directory. */
int
wal_seg_open(int dirfd, const char *dirname, uint64_t id, int writable,
    struct wal_segment **out, struct wal_error *err)
{
	char name[WAL_SEGMENT_NAME_MAX], path[4096];
	int fd;

	*out = NULL;
	wal_seg_name(name, sizeof name, id);
	snprintf(path, sizeof path, "%s/%s", dirname, name);
	/*
	 * Never through a symbolic link, and without blocking on a FIFO
	 * someone planted under a segment name (the type is checked next).
	 */
	fd = openat(dirfd, name, (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW |
	    O_NONBLOCK | O_CLOEXEC);
	if (fd == -1 && errno == ELOOP)
		return (wal_seterr(err, ELOOP, "segment %s is a symbolic link, "
		    "which walmmapd never follows: move it out of the "
		    "directory", path));
	if (fd == -1)
		return (wal_seterrno(err, errno, "cannot open segment %s",
		    path));
	return (wal_seg_adopt_fd(fd, id, path, writable, out, err));
}

/* Open and map a segment file by path. */
int
wal_seg_open_path(const char *path, int writable, struct wal_segment **out,
    struct wal_error *err)
{
	const char *base = strrchr(path, '/');
	uint64_t id = 0;
	int fd;

	*out = NULL;
	(void)wal_seg_parse_name(base != NULL ? base + 1 : path, &id);
	fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK |
	    O_CLOEXEC);
	if (fd == -1)
		return (wal_seterrno(err, errno, "cannot open %s", path));
	return (wal_seg_adopt_fd(fd, id, path, writable, out, err));
}

/* Wrap an open segment file descriptor; it is closed on failure. */
static int
wal_seg_adopt_fd(int fd, uint64_t id, const char *path, int writable,
    struct wal_segment **out, struct wal_error *err)
{
	struct wal_segment *seg;
	struct stat st;
	int rc;

	if (fstat(fd, &st) == -1) {
		rc = errno;
		close(fd);
		return (wal_seterrno(err, rc, "cannot stat %s", path));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return (wal_seterr(err, EINVAL, "%s is not a regular file: "
		    "move it out of the directory", path));
	}
	/* Regular files never block: O_NONBLOCK was for the open only. */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == -1) {
		rc = errno;
		close(fd);
		return (wal_seterrno(err, rc, "cannot open %s", path));
	}
	if ((seg = calloc(1, sizeof *seg)) == NULL) {
		close(fd);
		return (wal_seterrno(err, ENOMEM, "cannot open %s", path));
	}
	seg->id = id;
	seg->fd = fd;
	seg->size = (uint64_t)st.st_size;
	seg->used = 0;
	seg->first_seq = seg->last_seq = -1;
	seg->writable = writable;
	if (seg->size > 0 && (rc = wal_seg_map(seg, path, err)) != 0) {
		wal_seg_close(seg);
		return (rc);
	}
	*out = seg;
	return (0);
}

/* Pre-fault every page for writing. */
void
wal_seg_prefault(struct wal_segment *seg)
{
	wal_seg_prefault_range(seg, 0, seg->size);
}

/* Pre-fault the pages of [off, off+len) for writing. */
void
wal_seg_prefault_range(struct wal_segment *seg, uint64_t off, uint64_t len)
{
	volatile uint8_t *p;
	uint64_t end;
	long pagesz;

	if (seg->base == NULL || !seg->writable || off >= seg->size)
		return;
	if (len > seg->size - off)
		len = seg->size - off;
	if (madvise(seg->base + off, len, MADV_POPULATE_WRITE) == 0)
		return;
	/* Kernels before 5.14: rewrite one byte of every page. */
	pagesz = sysconf(_SC_PAGESIZE);
	p = seg->base;
	end = off + len;
	for (off -= off % (uint64_t)pagesz; off < end; off += (uint64_t)pagesz)
		p[off] = p[off];
}

/* MADV_RANDOM on the mapping: a fault reads (zeroes) no page around it. */
void
wal_seg_advise_random(struct wal_segment *seg)
{
	if (seg->base != NULL)
		(void)madvise(seg->base, seg->size, MADV_RANDOM);
}

/* Write back a range of the mapping. */
int
wal_seg_flush(struct wal_segment *seg, uint64_t off, uint64_t len, int sync,
    struct wal_error *err)
{
	long pagesz = sysconf(_SC_PAGESIZE);
	uint64_t start;

	if (seg->base == NULL) {
		if (!sync)
			return (0);
		if (fdatasync(seg->fd) == -1)
			return (wal_seterrno(err, errno, "cannot sync segment "
			    "%" PRIu64, seg->id));
		return (0);
	}
	if (off >= seg->size || len == 0)
		return (0);
	if (len > seg->size - off)
		len = seg->size - off;
	start = off - off % (uint64_t)pagesz;
	if (msync(seg->base + start, len + (off - start),
	    sync ? MS_SYNC : MS_ASYNC) == -1)
		return (wal_seterrno(err, errno, "cannot flush segment "
		    "%" PRIu64, seg->id));
	return (0);
}

/* Unmap a segment, keeping its descriptor. */
void
wal_seg_unmap(struct wal_segment *seg)
{
	if (seg->base != NULL) {
		munmap(seg->base, seg->size);
		seg->base = NULL;
	}
}

/* Unmap, close, free. */
void
wal_seg_close(struct wal_segment *seg)
{
	if (seg == NULL)
		return;
	wal_seg_unmap(seg);
	if (seg->fd != -1)
		close(seg->fd);
	free(seg);
}

/* Reserve disk space for the whole file; returns 0 or an errno value. */
static int
wal_seg_reserve(int fd, uint64_t size)
{
	int rc;

	if (fallocate(fd, 0, 0, (off_t)size) == 0)
		return (0);
	if (errno != EOPNOTSUPP)
		return (errno);
	/* File systems without fallocate: glibc writes the blocks. */
	rc = posix_fallocate(fd, 0, (off_t)size);
	return (rc);
}

/* MADV_HUGEPAGE on the mapping. */
int
wal_seg_advise_huge(struct wal_segment *seg)
{
	if (seg->base == NULL)
		return (EINVAL);
#ifdef MADV_HUGEPAGE
	if (madvise(seg->base, seg->size, MADV_HUGEPAGE) == -1)
		return (errno);
	return (0);
#else
	return (ENOTSUP);
#endif
}

/* Map the whole file. */
static int
wal_seg_map(struct wal_segment *seg, const char *path, struct wal_error *err)
{
	void *p;

	p = mmap(NULL, seg->size, PROT_READ | (seg->writable ? PROT_WRITE : 0),
	    MAP_SHARED, seg->fd, 0);
	if (p == MAP_FAILED)
		return (wal_seterrno(err, errno, "cannot map segment %s", path));
	seg->base = p;
	return (0);
}
