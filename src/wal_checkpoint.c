/*
 * walmmapd - the checkpoint and the sync-failure marker beside the segments.
 *
 * The checkpoint is a short text file an operator can read:
 *
 *	walmmapd checkpoint 1
 *	synced-below 42
 *	last-seq 1234567
 *	next-id 45
 *	crc32 1c291ca3
 *
 * the CRC-32 covering the lines before it. Every name is opened relative
 * to the directory's descriptor and never through a symbolic link.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "wal_checkpoint.h"
#include "wal_crc.h"

#define CKPT_TEMP	".tmp." WAL_CHECKPOINT_NAME
#define CKPT_MAX	512

static int	write_all(int fd, const char *buf, size_t len);

/* Read and check the checkpoint. */
int
wal_checkpoint_read(int dirfd, const char *dir, struct wal_checkpoint *ck,
    struct wal_error *err)
{
	char buf[CKPT_MAX], *crcline;
	struct wal_checkpoint c;
	struct stat st;
	unsigned int crc;
	size_t len = 0, body;
	ssize_t n;
	int fd, rc, used;

	fd = openat(dirfd, WAL_CHECKPOINT_NAME, O_RDONLY | O_NOFOLLOW |
	    O_NONBLOCK | O_CLOEXEC);
	if (fd == -1 && errno == ENOENT)
		return (0);
	if (fd == -1 && errno == ELOOP)
		return (wal_seterr(err, ELOOP, "%s/%s is a symbolic link",
		    dir, WAL_CHECKPOINT_NAME));
	if (fd == -1)
		return (wal_seterrno(err, errno, "cannot open %s/%s", dir,
		    WAL_CHECKPOINT_NAME));
	if (fstat(fd, &st) == -1) {
		rc = errno;
		close(fd);
		return (wal_seterrno(err, rc, "cannot stat %s/%s", dir,
		    WAL_CHECKPOINT_NAME));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return (wal_seterr(err, EINVAL, "%s/%s is not a regular file",
		    dir, WAL_CHECKPOINT_NAME));
	}
	while (len < sizeof buf - 1) {
		n = read(fd, buf + len, sizeof buf - 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			rc = errno;
			close(fd);
			return (wal_seterrno(err, rc, "cannot read %s/%s", dir,
			    WAL_CHECKPOINT_NAME));
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	if (len == sizeof buf - 1 || strlen(buf) != len)
		goto bad;
	if ((crcline = strstr(buf, "\ncrc32 ")) == NULL)
		goto bad;
	body = (size_t)(crcline + 1 - buf);
	used = -1;
	if (sscanf(crcline + 1, "crc32 %8x\n%n", &crc, &used) != 1 ||
	    used < 0 || body + (size_t)used != len ||
	    wal_crc32(0, buf, body) != crc)
		goto bad;
	used = -1;
	if (sscanf(buf, "walmmapd checkpoint 1\nsynced-below %" SCNu64
	    "\nlast-seq %" SCNd64 "\nnext-id %" SCNu64 "\n%n", &c.synced_below,
	    &c.last_seq, &c.next_id, &used) != 3 || used < 0 ||
	    (size_t)used != body)
		goto bad;
	if (c.last_seq < -1 || c.next_id < c.synced_below)
		goto bad;
	*ck = c;
	return (1);

bad:
	return (wal_seterr(err, EINVAL, "%s/%s is corrupt (not a walmmapd "
	    "checkpoint, or its CRC does not match)", dir,
	    WAL_CHECKPOINT_NAME));
}

/* Write a new checkpoint and rename it over the old one. */
int
wal_checkpoint_write(int dirfd, const char *dir,
    const struct wal_checkpoint *ck, int *sync_failed, struct wal_error *err)
{
	char buf[CKPT_MAX];
	int fd, len, rc, tries;

	*sync_failed = 0;
	len = snprintf(buf, sizeof buf, "walmmapd checkpoint 1\nsynced-below %"
	    PRIu64 "\nlast-seq %" PRId64 "\nnext-id %" PRIu64 "\n",
	    ck->synced_below, ck->last_seq, ck->next_id);
	len += snprintf(buf + len, sizeof buf - (size_t)len, "crc32 %08x\n",
	    (unsigned int)wal_crc32(0, buf, (size_t)len));

	/*
	 * Only the directory's writer (it holds the lock) uses the temporary
	 * name: one that is there is a leftover of a crash, or was planted.
	 * Either way it is removed, never written through.
	 */
	for (tries = 0;; tries++) {
		fd = openat(dirfd, CKPT_TEMP, O_WRONLY | O_CREAT | O_EXCL |
		    O_NOFOLLOW | O_CLOEXEC, 0640);
		if (fd != -1 || errno != EEXIST || tries > 0)
			break;
		(void)unlinkat(dirfd, CKPT_TEMP, 0);
	}
	if (fd == -1)
		return (wal_seterrno(err, errno, "cannot create %s/%s", dir,
		    CKPT_TEMP));
	if ((rc = write_all(fd, buf, (size_t)len)) != 0) {
		close(fd);
		(void)unlinkat(dirfd, CKPT_TEMP, 0);
		return (wal_seterrno(err, rc, "cannot write %s/%s", dir,
		    CKPT_TEMP));
	}
	if (fsync(fd) == -1) {
		rc = errno;
		close(fd);
		(void)unlinkat(dirfd, CKPT_TEMP, 0);
		*sync_failed = 1;
		return (wal_seterrno(err, rc, "cannot sync %s/%s", dir,
		    CKPT_TEMP));
	}
	close(fd);
	if (renameat(dirfd, CKPT_TEMP, dirfd, WAL_CHECKPOINT_NAME) == -1) {
		rc = errno;
		(void)unlinkat(dirfd, CKPT_TEMP, 0);
		return (wal_seterrno(err, rc, "cannot rename %s/%s to %s", dir,
		    CKPT_TEMP, WAL_CHECKPOINT_NAME));
	}
	if (fsync(dirfd) == -1) {
		*sync_failed = 1;
		return (wal_seterrno(err, errno, "cannot sync directory %s "
		    "after writing its checkpoint", dir));
	}
	return (0);
}

/* Leave the marker that a sync failed. */
int
wal_sync_failed_mark(int dirfd, const char *dir, const char *why,
    struct wal_error *err)
{
	int fd, rc;

	fd = openat(dirfd, WAL_SYNC_FAILED_NAME, O_WRONLY | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd == -1 && errno == EEXIST)
		return (0);
	if (fd == -1)
		return (wal_seterrno(err, errno, "cannot create %s/%s", dir,
		    WAL_SYNC_FAILED_NAME));
	if ((rc = write_all(fd, why, strlen(why))) != 0 ||
	    (rc = write_all(fd, "\n", 1)) != 0) {
		close(fd);
		return (wal_seterrno(err, rc, "cannot write %s/%s", dir,
		    WAL_SYNC_FAILED_NAME));
	}
	if (fsync(fd) == -1) {
		rc = errno;
		close(fd);
		return (wal_seterrno(err, rc, "cannot sync %s/%s", dir,
		    WAL_SYNC_FAILED_NAME));
	}
	close(fd);
	if (fsync(dirfd) == -1)
		return (wal_seterrno(err, errno, "cannot sync directory %s "
		    "after creating %s", dir, WAL_SYNC_FAILED_NAME));
	return (0);
}

/* Is the marker there? */
int
wal_sync_failed_present(int dirfd, const char *dir, struct wal_error *err)
{
	struct stat st;

	if (fstatat(dirfd, WAL_SYNC_FAILED_NAME, &st, AT_SYMLINK_NOFOLLOW) ==
	    0)
		return (1);
	if (errno == ENOENT)
		return (0);
	return (wal_seterrno(err, errno, "cannot look for %s/%s", dir,
	    WAL_SYNC_FAILED_NAME));
}

/* Remove the marker, durably. */
int
wal_sync_failed_clear(int dirfd, const char *dir, struct wal_error *err)
{
	if (unlinkat(dirfd, WAL_SYNC_FAILED_NAME, 0) == -1 && errno != ENOENT)
		return (wal_seterrno(err, errno, "cannot remove %s/%s", dir,
		    WAL_SYNC_FAILED_NAME));
	if (fsync(dirfd) == -1)
		return (wal_seterrno(err, errno, "cannot sync directory %s "
		    "after removing %s", dir, WAL_SYNC_FAILED_NAME));
	return (0);
}

/* write() all of buf; 0 or an errno value. */
static int
write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return (n == 0 ? EIO : errno);
		buf += n;
		len -= (size_t)n;
	}
	return (0);
}
