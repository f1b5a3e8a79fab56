/*
 * walmmapd - the daemon's own directories (data, socket): created with an
 * exact mode, refused when another user could put files in them.
 *
 * walmmapd usually runs as root and creates, writes, renames and removes
 * files in these directories. In a directory another user can write to,
 * that user could plant a symbolic link or a crafted file under a name the
 * daemon is about to use and aim root's writes at any file. So a directory
 * must belong to the daemon's effective user and be writable by nobody
 * else; it is checked on the open descriptor, which is from then on the
 * only way the daemon reaches it (nothing re-resolves the path).
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

static int	dirs_step(int, const char *, int create, const char *what,
		    const char *path, const char *upto, char *why,
		    size_t whylen);
static int	dirs_trusted_link(int, const struct stat *, const char *what,
		    const char *path, const char *link, char *why,
		    size_t whylen);
static int	dirs_check(int, int created, mode_t, const char *what,
		    const char *path, char *why, size_t whylen);

#define DIRS_OPEN	(O_RDONLY | O_DIRECTORY | O_CLOEXEC)

/*
 * Open the directory at path, creating it with mode (and, with parents,
 * its missing parents with 0755) when it does not exist; the modes are set
 * exactly, whatever the umask. Refused, with the reason in why: a
 * directory that is not owned by our effective uid or that its group or
 * others can write to, and a symbolic link anyone else could have made,
 * in its place or in place of a parent. Returns an O_DIRECTORY
 * descriptor, or -1.
 */
int
srv_dir_open(const char *what, const char *path, int parents, mode_t mode,
    char *why, size_t whylen)
{
	char buf[PATH_MAX], *p, *slash;
	struct stat lst;
	size_t len;
	int fd, next, created = 0;

	len = strlen(path);
	if (len == 0 || len >= sizeof buf) {
		snprintf(why, whylen, "%s \"%s\": %s", what, path,
		    len == 0 ? "empty path" : strerror(ENAMETOOLONG));
		return (-1);
	}
	memcpy(buf, path, len + 1);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	if ((fd = open(buf[0] == '/' ? "/" : ".", DIRS_OPEN)) == -1) {
		snprintf(why, whylen, "cannot open %s %s: %s", what, path,
		    strerror(errno));
		return (-1);
	}

	/* The parents: links only trusted ones, made if allowed. */
	p = buf;
	while (*p == '/')
		p++;
	while ((slash = strchr(p, '/')) != NULL) {
		*slash = '\0';
		if ((next = dirs_step(fd, p, parents, what, path, buf, why,
		    whylen)) == -1) {
			close(fd);
			return (-1);
		}
		close(fd);
		fd = next;
		*slash = '/';
		p = slash + 1;
		while (*p == '/')
			p++;
	}
	if (*p == '\0')		/* the root directory itself */
		return (dirs_check(fd, 0, mode, what, path, why, whylen));

	/* The directory itself: made here, or checked as found. */
	if (fstatat(fd, p, &lst, AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno != ENOENT)
			goto create_failed;
		if (mkdirat(fd, p, mode) == 0)
			created = 1;
		else if (errno != EEXIST)
			goto create_failed;
		if (fstatat(fd, p, &lst, AT_SYMLINK_NOFOLLOW) == -1)
			goto create_failed;
	}
	if (S_ISLNK(lst.st_mode)) {
		if (dirs_trusted_link(fd, &lst, what, path, NULL, why,
		    whylen) != 0) {
			close(fd);
			return (-1);
		}
		next = openat(fd, p, DIRS_OPEN);
	} else
		next = openat(fd, p, DIRS_OPEN | O_NOFOLLOW);
	if (next == -1) {
		if (errno == ELOOP)
			snprintf(why, whylen, "%s %s was replaced by a symbolic "
			    "link while walmmapd opened it; refusing it", what,
			    path);
		else
			snprintf(why, whylen, "cannot open %s %s: %s", what,
			    path, strerror(errno));
		close(fd);
		return (-1);
	}
	close(fd);
	return (dirs_check(next, created, mode, what, path, why, whylen));

create_failed:
	snprintf(why, whylen, "cannot create %s %s: %s", what, path,
	    strerror(errno));
	close(fd);
	return (-1);
}

/*
 * One parent, name in at (upto: the path up to it, for messages): opened
 * without following a symbolic link, unless only root or we could have
 * made the link (dirs_trusted_link); a link anyone else made could aim
 * walmmapd at a directory of root's of their choosing. Created (0755,
 * whatever the umask) when missing and create is set. Returns its
 * descriptor, or -1 with why set.
 */
static int
dirs_step(int at, const char *name, int create, const char *what,
    const char *path, const char *upto, char *why, size_t whylen)
{
	struct stat st;
	int fd, tried = 0, created = 0;

	while (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno != ENOENT || !create || tried) {
			if (errno == ENOENT)
				snprintf(why, whylen, "cannot create %s %s: "
				    "%s does not exist (walmmapd creates the "
				    "parents of its default directories only)",
				    what, path, upto);
			else
				snprintf(why, whylen, "cannot open %s %s: %s: "
				    "%s", what, path, upto, strerror(errno));
			return (-1);
		}
		if (mkdirat(at, name, 0755) == 0)
			created = 1;
		else if (errno != EEXIST) {
			snprintf(why, whylen, "cannot create %s %s: %s: %s",
			    what, path, upto, strerror(errno));
			return (-1);
		}
		tried = 1;
	}
	if (S_ISLNK(st.st_mode)) {
		if (dirs_trusted_link(at, &st, what, path, upto, why,
		    whylen) != 0)
			return (-1);
		fd = openat(at, name, DIRS_OPEN);
	} else
		fd = openat(at, name, DIRS_OPEN | O_NOFOLLOW);
	if (fd == -1) {
		if (errno == ELOOP)
			snprintf(why, whylen, "%s %s: %s was replaced by a "
			    "symbolic link while walmmapd opened it; refusing "
			    "it", what, path, upto);
		else
			snprintf(why, whylen, "cannot open %s %s: %s: %s", what,
			    path, upto, strerror(errno));
		return (-1);
	}
	if (created && fstat(fd, &st) == 0 && st.st_uid == geteuid() &&
	    fchmod(fd, 0755) == -1) {
		snprintf(why, whylen, "cannot set mode 0755 on %s (a parent of "
		    "%s %s): %s", upto, what, path, strerror(errno));
		close(fd);
		return (-1);
	}
	return (fd);
}

/*
 * A symbolic link in place of the directory (link NULL) or of its parent
 * link is followed only when nobody but root or us could have made it: it
 * is owned by root or by us, and so is the directory holding it, which
 * nobody else can write to (systemd's StateDirectory= with DynamicUser= is
 * such a link into /var/lib/private; /var/run one to /run).
 */
static int
dirs_trusted_link(int at, const struct stat *lst, const char *what,
    const char *path, const char *link, char *why, size_t whylen)
{
	struct stat pst;
	uid_t me = geteuid();

	if (fstat(at, &pst) == -1) {
		snprintf(why, whylen, "cannot examine the directory holding "
		    "%s %s: %s", what, path, strerror(errno));
		return (-1);
	}
	if ((lst->st_uid == 0 || lst->st_uid == me) && (pst.st_uid == 0 ||
	    pst.st_uid == me) && (pst.st_mode & (S_IWGRP | S_IWOTH)) == 0)
		return (0);
	if (link == NULL)
		snprintf(why, whylen, "%s %s is a symbolic link owned by uid %u "
		    "in a directory of uid %u with mode %04o; refusing to "
		    "follow it, since another user could have made it or could "
		    "replace it: give the path of the real directory", what,
		    path, (unsigned)lst->st_uid, (unsigned)pst.st_uid,
		    (unsigned)(pst.st_mode & 07777));
	else
		snprintf(why, whylen, "%s %s: its parent %s is a symbolic link "
		    "owned by uid %u in a directory of uid %u with mode %04o; "
		    "refusing to follow it, since another user could have made "
		    "it or could replace it: give the path of the real "
		    "directory", what, path, link, (unsigned)lst->st_uid,
		    (unsigned)pst.st_uid, (unsigned)(pst.st_mode & 07777));
	return (-1);
}

/*
 * The directory we will use: ours, and writable by us alone. One we just
 * created gets its mode here, on the descriptor.
 */
static int
dirs_check(int fd, int created, mode_t mode, const char *what,
    const char *path, char *why, size_t whylen)
{
	struct stat st;
	uid_t me = geteuid();

	if (fstat(fd, &st) == -1) {
		snprintf(why, whylen, "cannot examine %s %s: %s", what, path,
		    strerror(errno));
		goto fail;
	}
	if (created && st.st_uid == me) {
		if (fchmod(fd, mode) == -1) {
			snprintf(why, whylen, "cannot set mode %04o on %s %s: "
			    "%s", (unsigned)mode, what, path, strerror(errno));
			goto fail;
		}
		st.st_mode = (st.st_mode & ~(mode_t)07777) | mode;
	}
	if (st.st_uid != me) {
		snprintf(why, whylen, "%s %s is owned by uid %u (mode %04o), not "
		    "by uid %u that walmmapd runs as; refusing it, since its "
		    "owner could plant files there for walmmapd to write "
		    "through: use a directory that uid %u owns and only it can "
		    "write to", what, path, (unsigned)st.st_uid,
		    (unsigned)(st.st_mode & 07777), (unsigned)me, (unsigned)me);
		goto fail;
	}
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) && (st.st_mode & S_ISVTX)) {
		snprintf(why, whylen, "%s %s (owner uid %u, mode %04o) can be "
		    "written by its group or by others; refusing it, since they "
		    "could plant files there for walmmapd to write through: it "
		    "is a shared directory, so give walmmapd a directory of its "
		    "own in it", what, path, (unsigned)st.st_uid,
		    (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(why, whylen, "%s %s (owner uid %u, mode %04o) can be "
		    "written by its group or by others; refusing it, since they "
		    "could plant files there for walmmapd to write through: "
		    "chmod go-w %s, or use another directory", what, path,
		    (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), path);
		goto fail;
	}
	return (fd);
fail:
	close(fd);
	return (-1);
}
