/*
 * walmmapd tests - what a power cut leaves, from what really was synced.
 *
 * Linked into a test program, powercut.c interposes msync(MS_SYNC),
 * fdatasync and fsync. While it watches a directory, every one of those
 * calls on a file in it that succeeds records the bytes it made durable
 * (the whole file for fdatasync/fsync, exactly the range for msync) in a
 * "disk image" of that file. pc_cut() then builds, from the real files, a
 * copy of the directory as a power cut at that moment could leave it:
 * each page of a file is what its disk image holds or what the page cache
 * holds now, as the mode says. Syncs and cuts are serialised, so a cut
 * sees every sync that returned before it and none that had not started.
 *
 * Directory operations (create, rename, unlink) are taken as durable when
 * made: walmmapd syncs the directory right after each.
 */
#ifndef POWERCUT_H
#define POWERCUT_H

#include <stdint.h>

enum pc_mode {
	PC_NONE,	/* no unsynced page reached the disk */
	PC_SOME,	/* each unsynced page did or did not */
	PC_ALL_TORN,	/* all did, the last one torn at a 512-byte boundary */
	PC_ALL_BUT_ONE,	/* all but one */
	PC_NMODES
};

/* Watch dir (an absolute path, no trailing slash); forget earlier images. */
void	pc_watch(const char *dir);

/* Stop watching, free the images. */
void	pc_unwatch(void);

/*
 * Block syncs (a cut is being taken). Between pc_hold() and pc_release()
 * no msync/fdatasync/fsync of the watched directory starts or ends.
 */
void	pc_hold(void);
void	pc_release(void);

/*
 * While held: write into to (created) the segment files, checkpoint and
 * producer table of the watched directory as a power cut could leave
 * them. seed picks the pages. Returns the number of files written, -1 on error (printed).
 */
int	pc_cut(const char *to, enum pc_mode mode, unsigned seed);

/* Syncs recorded since pc_watch(). */
uint64_t pc_syncs(void);

#endif /* POWERCUT_H */
