/*
 * walmmapd - one segment file: create, map, pre-fault, flush, seal.
 */
#ifndef WAL_SEGMENT_H
#define WAL_SEGMENT_H

#include <stdatomic.h>
#include <stdint.h>

#include "wal_error.h"
#include "wal_format.h"

/*
 * A segment. Created by whoever creates or opens it; afterwards owned by
 * one thread at a time (the ring documents the hand-offs).
 */
struct wal_segment {
	uint64_t		 id;
	int			 fd;		/* -1 once closed */
	uint8_t			*base;		/* mapping, NULL when unmapped */
	uint64_t		 size;		/* file (and mapping) size */
	uint64_t		 used;		/* bytes holding magic + records */
	/*
	 * Bytes up to which records are complete (CRC in place): stored
	 * with release by the ring's writer, loaded by its syncers, which
	 * write back only that much of an active segment.
	 */
	_Atomic uint64_t	 written;
	int64_t			 first_seq;	/* -1 while empty */
	int64_t			 last_seq;	/* -1 while empty */
	int			 writable;
	struct wal_segment	*next;		/* list linkage, owner's use */
};

/* Flags for wal_seg_create(). */
#define WAL_SEG_PREFAULT	0x1	/* touch every page after mapping */
#define WAL_SEG_HUGE		0x2	/* wal_seg_advise_huge() after mapping */

/* Longest name_prefix (a name then fits WAL_SEGMENT_NAME_MAX). */
#define WAL_SEG_PREFIX_MAX	32

/*
 * Name segments "<name_prefix>_<id>.wal" (default "wal_mmap", as Signet
 * Forge's WalMmapWriter): 1 to WAL_SEG_PREFIX_MAX letters, digits, '_',
 * '-' or '.', not starting with '.'; -1 otherwise. For the whole process:
 * call it once before any segment is named, listed or parsed (walmmapd
 * does at start); readers in other processes see the default.
 */
int	wal_seg_set_prefix(const char *name_prefix);

/* Format a segment file name ("wal_mmap_0000000042.wal"). */
void	wal_seg_name(char *buf, size_t len, uint64_t id);

/* Parse a segment file name; returns 0 and sets *id, or -1. */
int	wal_seg_parse_name(const char *name, uint64_t *id);

/*
 * Parse the id out of a segment name or of a file named after one
 * ("wal_mmap_0000000042.wal.discarded-4096"); returns 0 and sets *id, or -1.
 */
int	wal_seg_parse_any_name(const char *name, uint64_t *id);

/* True if size is a valid segment size (64 KiB multiple, 64 KiB..16 GiB). */
int	wal_seg_size_valid(uint64_t size);

/*
 * Create segment id in the directory open as dirfd: reserve size bytes with
 * fallocate (so a full disk fails here, never later as SIGBUS), write the
 * file magic, make size and name durable, map it read-write and optionally
 * pre-fault it. The file is built under a temporary name and renamed into
 * place, so a crash never leaves a partial segment under a segment name.
 * A failure after the rename removes the name again; *named (if not NULL)
 * then says 1: the id was visible in the directory and must not be used
 * again (the removal may not be durable).
 */
int	wal_seg_create(int dirfd, const char *dirname, uint64_t id,
	    uint64_t size, int flags, struct wal_segment **out, int *named,
	    struct wal_error *err);

/*
 * Open and map an existing segment (read-only unless writable). A segment
 * name that is a symbolic link or not a regular file is refused, never
 * followed.
 */
int	wal_seg_open(int dirfd, const char *dirname, uint64_t id, int writable,
	    struct wal_segment **out, struct wal_error *err);

/* Open and map a segment file by path (its id parsed from the name). */
int	wal_seg_open_path(const char *path, int writable,
	    struct wal_segment **out, struct wal_error *err);

/*
 * Ask for huge pages on the mapping (MADV_HUGEPAGE): the kernel uses them
 * where the file system offers them for shared file mappings (tmpfs with
 * huge=within_size or advise), and ignores the advice elsewhere. 0, or an
 * errno (EINVAL: the kernel has no transparent huge pages).
 */
int	wal_seg_advise_huge(struct wal_segment *);

/* Touch every page of the mapping so later writes take no page fault. */
void	wal_seg_prefault(struct wal_segment *);

/* The same for [off, off+len); off a multiple of the page size. */
void	wal_seg_prefault_range(struct wal_segment *, uint64_t off,
	    uint64_t len);

/*
 * No readahead on faults (MADV_RANDOM): a fault on a new segment then fills
 * one page, not read_ahead_kb of them. Advice only.
 */
void	wal_seg_advise_random(struct wal_segment *);

/* Write back dirty pages of [off, off+len): sync waits, else starts it. */
int	wal_seg_flush(struct wal_segment *, uint64_t off, uint64_t len,
	    int sync, struct wal_error *err);

/* Unmap (the file descriptor stays open for syncing). */
void	wal_seg_unmap(struct wal_segment *);

/* Unmap, close and free. NULL allowed. */
void	wal_seg_close(struct wal_segment *);

#endif /* WAL_SEGMENT_H */
