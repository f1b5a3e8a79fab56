/*
 * walmmapd tests - disk images of what was synced, and power cuts built
 * from them (see powercut.h).
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "powercut.h"
#include "wal_checkpoint.h"
#include "wal_ptab.h"
#include "wal_segment.h"

#define PC_PAGE		4096

/* The bytes of one file that are on the disk for sure. */
struct pc_image {
	dev_t		 dev;
	ino_t		 ino;
	uint8_t		*data;
	size_t		 len;
	struct pc_image	*next;
};

static pthread_mutex_t	 pc_lock = PTHREAD_MUTEX_INITIALIZER;
static char		 pc_dir[PATH_MAX];	/* watched; "" none (lock) */
static atomic_int	 pc_watching;
static struct pc_image	*pc_images;		/* (lock) */
static uint64_t		 pc_count;		/* (lock) */

static int	(*real_msync)(void *, size_t, int);
static int	(*real_fdatasync)(int);
static int	(*real_fsync)(int);

static void	pc_resolve(void);
static int	pc_fd_watched(int fd);
static int	pc_map_watched(const void *addr, dev_t *dev, ino_t *ino,
		    uint64_t *off);
static struct pc_image *pc_image(dev_t, ino_t);
static void	pc_snapshot_fd(int fd);
static int	pc_read_file(int fd, uint8_t **out, size_t *len);
static int	pc_write_file(const char *path, const uint8_t *buf, size_t len);

/* The libc functions we wrap, looked up once (any thread may be first). */
static void
pc_resolve_once(void)
{
	real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	real_msync = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "msync");
}

static void
pc_resolve(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, pc_resolve_once);
}

/* Is fd a regular file in the watched directory? */
static int
pc_fd_watched(int fd)
{
	char link[64], path[PATH_MAX];
	size_t dlen = strlen(pc_dir);
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode))
		return (0);
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, sizeof path - 1)) <= 0)
		return (0);
	path[n] = '\0';
	return (dlen > 0 && strncmp(path, pc_dir, dlen) == 0 &&
	    path[dlen] == '/' && strchr(path + dlen + 1, '/') == NULL);
}

/*
 * The file mapped at addr, if it is in the watched directory: its device,
 * inode and the file offset of addr.
 */
static int
pc_map_watched(const void *addr, dev_t *dev, ino_t *ino, uint64_t *off)
{
	char line[PATH_MAX + 256], path[PATH_MAX];
	unsigned long long lo, hi, pgoff, inode;
	unsigned maj, mnr;
	size_t dlen = strlen(pc_dir);
	uintptr_t a = (uintptr_t)addr;
	FILE *f;
	int found = 0;

	if ((f = fopen("/proc/self/maps", "re")) == NULL)
		return (0);
	while (fgets(line, sizeof line, f) != NULL) {
		path[0] = '\0';
		if (sscanf(line, "%llx-%llx %*s %llx %x:%x %llu %4095s", &lo,
		    &hi, &pgoff, &maj, &mnr, &inode, path) < 6)
			continue;
		if (a < lo || a >= hi)
			continue;
		if (dlen > 0 && strncmp(path, pc_dir, dlen) == 0 &&
		    path[dlen] == '/') {
			*dev = makedev(maj, mnr);
			*ino = (ino_t)inode;
			*off = pgoff + (a - lo);
			found = 1;
		}
		break;
	}
	fclose(f);
	return (found);
}

/* The image of a file, made empty on first use. The caller holds pc_lock. */
static struct pc_image *
pc_image(dev_t dev, ino_t ino)
{
	struct pc_image *im;

	for (im = pc_images; im != NULL; im = im->next)
		if (im->dev == dev && im->ino == ino)
			return (im);
	if ((im = calloc(1, sizeof *im)) == NULL)
		abort();
	im->dev = dev;
	im->ino = ino;
	im->next = pc_images;
	pc_images = im;
	return (im);
}

/* The whole file is on the disk now. The caller holds pc_lock. */
static void
pc_snapshot_fd(int fd)
{
	struct pc_image *im;
	struct stat st;
	char link[64];
	uint8_t *buf;
	size_t len;
	int rfd;

	/* The descriptor may be write-only (the checkpoint's). */
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	if (fstat(fd, &st) == -1 || (rfd = open(link, O_RDONLY | O_CLOEXEC)) ==
	    -1)
		abort();
	if (pc_read_file(rfd, &buf, &len) != 0)
		abort();
	close(rfd);
	im = pc_image(st.st_dev, st.st_ino);
	free(im->data);
	im->data = buf;
	im->len = len;
	pc_count++;
}

int
fdatasync(int fd)
{
	int rc, watched;

	pc_resolve();
	if (!atomic_load(&pc_watching))
		return (real_fdatasync(fd));
	pthread_mutex_lock(&pc_lock);
	watched = pc_fd_watched(fd);
	rc = real_fdatasync(fd);
	if (rc == 0 && watched)
		pc_snapshot_fd(fd);
	pthread_mutex_unlock(&pc_lock);
	return (rc);
}

int
fsync(int fd)
{
	int rc, watched;

	pc_resolve();
	if (!atomic_load(&pc_watching))
		return (real_fsync(fd));
	pthread_mutex_lock(&pc_lock);
	watched = pc_fd_watched(fd);
	rc = real_fsync(fd);
	if (rc == 0 && watched)
		pc_snapshot_fd(fd);
	pthread_mutex_unlock(&pc_lock);
	return (rc);
}

/*
 * Copy what msync just wrote back. The writer may be storing into the
 * mapping meanwhile (a kernel's write-back races it the same way): under
 * TSan this deliberate racy read is done byte by byte, uninstrumented.
 */
#ifdef __SANITIZE_THREAD__
__attribute__((no_sanitize_thread, noinline))
static void
pc_copy_mapping(uint8_t *dst, const void *src, size_t len)
{
	const volatile uint8_t *s = src;
	size_t i;

	for (i = 0; i < len; i++)
		dst[i] = s[i];
}
#else
static void
pc_copy_mapping(uint8_t *dst, const void *src, size_t len)
{
	memcpy(dst, src, len);
}
#endif

int
msync(void *addr, size_t len, int flags)
{
	struct pc_image *im;
	uint64_t off;
	dev_t dev;
	ino_t ino;
	int rc, watched;

	pc_resolve();
	if (!atomic_load(&pc_watching) || !(flags & MS_SYNC))
		return (real_msync(addr, len, flags));
	pthread_mutex_lock(&pc_lock);
	watched = pc_map_watched(addr, &dev, &ino, &off);
	rc = real_msync(addr, len, flags);
	if (rc == 0 && watched) {
		/* Exactly the range asked for: the mapping may change beyond. */
		im = pc_image(dev, ino);
		if (im->len < off + len) {
			if ((im->data = realloc(im->data, off + len)) == NULL)
				abort();
			memset(im->data + im->len, 0, off + len - im->len);
			im->len = off + len;
		}
		pc_copy_mapping(im->data + off, addr, len);
		pc_count++;
	}
	pthread_mutex_unlock(&pc_lock);
	return (rc);
}

void
pc_watch(const char *dir)
{
	pc_resolve();
	pthread_mutex_lock(&pc_lock);
	snprintf(pc_dir, sizeof pc_dir, "%s", dir);
	pc_count = 0;
	pthread_mutex_unlock(&pc_lock);
	atomic_store(&pc_watching, 1);
}

void
pc_unwatch(void)
{
	struct pc_image *im;

	atomic_store(&pc_watching, 0);
	pthread_mutex_lock(&pc_lock);
	pc_dir[0] = '\0';
	while ((im = pc_images) != NULL) {
		pc_images = im->next;
		free(im->data);
		free(im);
	}
	pthread_mutex_unlock(&pc_lock);
}

void
pc_hold(void)
{
	pthread_mutex_lock(&pc_lock);
}

void
pc_release(void)
{
	pthread_mutex_unlock(&pc_lock);
}

uint64_t
pc_syncs(void)
{
	uint64_t n;

	pthread_mutex_lock(&pc_lock);
	n = pc_count;
	pthread_mutex_unlock(&pc_lock);
	return (n);
}

int
pc_cut(const char *to, enum pc_mode mode, unsigned seed)
{
	char path[PATH_MAX + 300];
	struct pc_image *im;
	struct dirent *de;
	struct stat st;
	uint8_t *now, *img;
	size_t len, page, n, last, hole, changed, cut;
	uint64_t id;
	DIR *d;
	int fd, files = 0;

	if (mkdir(to, 0755) == -1 || (d = opendir(pc_dir)) == NULL) {
		fprintf(stderr, "pc_cut %s: %s\n", to, strerror(errno));
		return (-1);
	}
	while ((de = readdir(d)) != NULL) {
		if (wal_seg_parse_name(de->d_name, &id) != 0 &&
		    strcmp(de->d_name, WAL_CHECKPOINT_NAME) != 0 &&
		    strcmp(de->d_name, WAL_PTAB_FILE) != 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", pc_dir, de->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			continue;	/* retention removed it meanwhile */
		if (fstat(fd, &st) == -1 || pc_read_file(fd, &now, &len) != 0)
			abort();
		close(fd);
		for (im = pc_images; im != NULL; im = im->next)
			if (im->dev == st.st_dev && im->ino == st.st_ino)
				break;
		if (im == NULL) {
			fprintf(stderr, "pc_cut: %s was never synced\n", path);
			free(now);
			closedir(d);
			return (-1);
		}
		if ((img = calloc(1, len)) == NULL)
			abort();
		memcpy(img, im->data, im->len < len ? im->len : len);
		/* Pages that differ: which ones reach the disk. */
		last = hole = (size_t)-1;
		for (page = 0, changed = 0; page < len; page += PC_PAGE) {
			n = len - page < PC_PAGE ? len - page : PC_PAGE;
			if (memcmp(img + page, now + page, n) == 0)
				continue;
			last = page;
			if ((size_t)rand_r(&seed) % ++changed == 0)
				hole = page;
		}
		for (page = 0; page < len; page += PC_PAGE) {
			n = len - page < PC_PAGE ? len - page : PC_PAGE;
			if (memcmp(img + page, now + page, n) == 0)
				continue;
			if (mode == PC_NONE ||
			    (mode == PC_SOME && rand_r(&seed) % 2) ||
			    (mode == PC_ALL_BUT_ONE && page == hole))
				continue;
			if (mode == PC_ALL_TORN && page == last) {
				cut = (size_t)(rand_r(&seed) % 8) * 512;
				memcpy(img + page, now + page, cut < n ? cut : n);
				continue;
			}
			memcpy(img + page, now + page, n);
		}
		snprintf(path, sizeof path, "%s/%s", to, de->d_name);
		if (pc_write_file(path, img, len) != 0)
			abort();
		free(img);
		free(now);
		files++;
	}
	closedir(d);
	return (files);
}

/* A whole file through its descriptor. */
static int
pc_read_file(int fd, uint8_t **out, size_t *len)
{
	struct stat st;
	size_t off = 0;
	ssize_t n;
	uint8_t *buf;

	if (fstat(fd, &st) == -1)
		return (-1);
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL)
		return (-1);
	while (off < (size_t)st.st_size) {
		n = pread(fd, buf + off, (size_t)st.st_size - off, (off_t)off);
		if (n <= 0) {
			free(buf);
			return (-1);
		}
		off += (size_t)n;
	}
	*out = buf;
	*len = off;
	return (0);
}

static int
pc_write_file(const char *path, const uint8_t *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640)) ==
	    -1)
		return (-1);
	while (off < len) {
		if ((n = write(fd, buf + off, len - off)) <= 0) {
			close(fd);
			return (-1);
		}
		off += (size_t)n;
	}
	close(fd);
	return (0);
}
