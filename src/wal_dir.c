/*
 * walmmapd - a directory of segments: listing, locking, syncing.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wal_checkpoint.h"
#include "wal_dir.h"
#include "wal_segment.h"

static int	wal_id_cmp(const void *, const void *);

/* Open a directory. */
int
wal_dir_open(const char *path, struct wal_error *err)
{
	int fd;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1)
		return (wal_seterrno(err, errno, "cannot open directory %s",
		    path));
	return (fd);
}

/* List segment ids, ascending. */
int
wal_dir_list(int dirfd, const char *path, struct wal_seglist *out,
    struct wal_error *err)
{
	struct dirent *de;
	uint64_t id, *ids = NULL, *n;
	size_t count = 0, cap = 0;
	DIR *d;
	int fd;

	out->ids = NULL;
	out->count = 0;
	out->id_bound = 0;
	if ((fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return (wal_seterrno(err, errno, "cannot list directory %s",
		    path));
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return (wal_seterrno(err, errno, "cannot list directory %s",
		    path));
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (wal_seg_parse_any_name(de->d_name, &id) == 0 &&
		    id >= out->id_bound)
			out->id_bound = id == UINT64_MAX ? id : id + 1;
		if (wal_seg_parse_name(de->d_name, &id) != 0)
			continue;
		if (count == cap) {
			cap = cap ? cap * 2 : 16;
			if ((n = reallocarray(ids, cap, sizeof *ids)) == NULL) {
				free(ids);
				closedir(d);
				return (wal_seterrno(err, ENOMEM, "cannot list "
				    "directory %s", path));
			}
			ids = n;
		}
		ids[count++] = id;
	}
	if (errno != 0) {
		int e = errno;

		free(ids);
		closedir(d);
		return (wal_seterrno(err, e, "cannot list directory %s", path));
	}
	closedir(d);
	if (count > 1)
		qsort(ids, count, sizeof *ids, wal_id_cmp);
	out->ids = ids;
	out->count = count;
	return (0);
}

/* Free a segment list. */
void
wal_seglist_free(struct wal_seglist *l)
{
	free(l->ids);
	l->ids = NULL;
	l->count = 0;
}

/*
 * Take the exclusive writer lock. A reader that asks whether a writer is
 * live (walctl verify) holds a shared lock for two system calls: retry a
 * few times over ~20 ms before calling the directory taken.
 */
int
wal_dir_lock(int dirfd, const char *path, struct wal_error *err)
{
	const struct timespec pause = { 0, 2 * 1000 * 1000 };
	int tries;

	for (tries = 0; flock(dirfd, LOCK_EX | LOCK_NB) != 0; tries++) {
		if (errno != EWOULDBLOCK)
			return (wal_seterrno(err, errno, "cannot lock "
			    "directory %s", path));
		if (tries == 10)
			return (wal_seterr(err, EWOULDBLOCK, "directory %s is "
			    "in use by another writer (is another walmmapd "
			    "running on it?)", path));
		nanosleep(&pause, NULL);
	}
	return (0);
}

/* fsync a directory. */
int
wal_dir_sync(int dirfd, const char *path, struct wal_error *err)
{
	if (fsync(dirfd) == -1)
		return (wal_seterrno(err, errno, "cannot sync directory %s",
		    path));
	return (0);
}

/* Remove temporary files of interrupted segment creations. */
void
wal_dir_remove_temps(int dirfd)
{
	struct dirent *de;
	uint64_t id;
	DIR *d;
	int fd;

	if ((fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, ".tmp.", 5) != 0)
			continue;
		if (wal_seg_parse_name(de->d_name + 5, &id) == 0 ||
		    strcmp(de->d_name + 5, WAL_CHECKPOINT_NAME) == 0)
			unlinkat(dirfd, de->d_name, 0);
	}
	closedir(d);
}

static int
wal_id_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x < y ? -1 : x > y);
}
