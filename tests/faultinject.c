/*
 * walmmapd tests - an LD_PRELOAD shim that fails chosen system calls of
 * the process it is loaded into, as the test that started it says (see
 * faultinject.h). Only the calls walmmapd's durability and recovery
 * depend on are wrapped; each wrapper asks wf_fail() first and otherwise
 * calls the next definition (libc, or a sanitizer's interceptor).
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "faultinject.h"

/*
 * Not instrumented by ThreadSanitizer: its start-up calls mmap before its
 * runtime can run instrumented code, and this file may be linked into (or
 * preloaded ahead of) a program built with -fsanitize=thread.
 */
#if defined(__has_attribute)
#if __has_attribute(no_sanitize)
#define WF_NOTSAN	__attribute__((no_sanitize("thread")))
#endif
#endif
#ifndef WF_NOTSAN
#define WF_NOTSAN
#endif

static struct wf_ctl	*ctl;
static atomic_int	 ctl_state;	/* 0 unknown, 1 mapped, -1 none */

/* File mappings, so that an msync can be charged to its file (lock). */
#define WF_MAPS_MAX	1024
static struct wf_map {
	uintptr_t	 start;		/* 0: free */
	size_t		 len;
	uint64_t	 dev;
	uint64_t	 ino;
	uint64_t	 off;
} maps[WF_MAPS_MAX];
static pthread_mutex_t	 ledger_lock = PTHREAD_MUTEX_INITIALIZER;

static void	ledger_map(void *, size_t, int fd, off_t);
static void	ledger_msync(void *, size_t);
static void	ledger_fsync(int fd);
static void	ledger_syncfs(void);

/* Map $WALFAULT_CTL once; NULL when there is none. */
static WF_NOTSAN struct wf_ctl *
wf_ctl_get(void)
{
	static int (*real_open)(const char *, int, ...);
	static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
	const char *path;
	void *p;
	int fd, st = atomic_load_explicit(&ctl_state, memory_order_acquire);

	if (st != 0)
		return (st > 0 ? ctl : NULL);
	if ((path = getenv("WALFAULT_CTL")) == NULL || *path == '\0') {
		atomic_store(&ctl_state, -1);
		return (NULL);
	}
	real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
	real_mmap = (void *(*)(void *, size_t, int, int, int, off_t))
	    dlsym(RTLD_NEXT, "mmap");
	if (real_open == NULL || real_mmap == NULL ||
	    (fd = real_open(path, O_RDWR | O_CLOEXEC)) == -1) {
		atomic_store(&ctl_state, -1);
		return (NULL);
	}
	p = real_mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED,
	    fd, 0);
	close(fd);
	if (p == MAP_FAILED || ((struct wf_ctl *)p)->magic != WF_MAGIC) {
		atomic_store(&ctl_state, -1);
		return (NULL);
	}
	ctl = p;
	atomic_store_explicit(&ctl_state, 1, memory_order_release);
	return (ctl);
}

#define WF_SHORT	(-1)	/* wf_fail(): move half the bytes */

/*
 * For a test that links the shim into itself instead of preloading it into
 * a daemon: use c from now on (NULL: fail nothing). c must stay mapped;
 * a MAP_SHARED mapping is shared with the test's children.
 */
WF_NOTSAN void
wf_ctl_use(struct wf_ctl *c)
{
	ctl = c;
	atomic_store_explicit(&ctl_state, c != NULL ? 1 : -1,
	    memory_order_release);
}

/*
 * Count a call; 0 to let it through, WF_SHORT for a short transfer, else
 * the errno to fail it with.
 * fd >= 0 limits faults to regular files other than 0-2 (the daemon's
 * log, eventfds and sockets are not storage).
 */
static WF_NOTSAN int
wf_fail(enum wf_call call, int fd)
{
	struct wf_ctl *c = wf_ctl_get();
	struct stat st;
	struct wf_op *op;
	int64_t left;

	if (c == NULL)
		return (0);
	op = &c->op[call];
	if (fd >= 0 && (fd <= 2 || ((atomic_load(&op->failing) ||
	    atomic_load(&op->countdown) > 0) && (fstat(fd, &st) == -1 ||
	    !S_ISREG(st.st_mode)))))
		return (0);
	atomic_fetch_add(&op->calls, 1);
	while (atomic_load(&op->hold))
		usleep(1000);
	if (atomic_load(&op->failing))
		goto fail;
	left = atomic_load(&op->countdown);
	while (left > 0) {
		if (atomic_compare_exchange_weak(&op->countdown, &left,
		    left - 1)) {
			if (left != 1)
				return (0);
			if (atomic_exchange(&op->short_io, 0)) {
				/* This one is short; the next one fails. */
				atomic_store(&op->countdown, 1);
				return (WF_SHORT);
			}
			if (atomic_load(&op->persist))
				atomic_store(&op->failing, 1);
			goto fail;
		}
	}
	return (0);
fail:
	if (atomic_load(&op->first_ns) == 0) {
		struct timespec ts;
		int64_t zero = 0;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		atomic_compare_exchange_strong(&op->first_ns, &zero,
		    (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
	}
	atomic_fetch_add(&op->injected, 1);
	return (atomic_load(&op->err) != 0 ? atomic_load(&op->err) : EIO);
}

/*
 * The next definition of a wrapped call. Resolved on first use by any
 * thread; a race only resolves it twice to the same value (relaxed
 * atomics keep that free of a data race).
 */
#define REAL(ret, name, ...)						\
	static ret (*_Atomic real_)(__VA_ARGS__);			\
	ret (*real)(__VA_ARGS__) = atomic_load_explicit(&real_,		\
	    memory_order_relaxed);					\
	if (real == NULL) {						\
		real = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, name);	\
		atomic_store_explicit(&real_, real, memory_order_relaxed); \
	}

WF_NOTSAN int
msync(void *addr, size_t len, int flags)
{
	REAL(int, "msync", void *, size_t, int);
	int e;

	if ((flags & MS_SYNC) && (e = wf_fail(WF_MSYNC, -1)) != 0) {
		errno = e;
		return (-1);
	}
	if ((e = real(addr, len, flags)) == 0 && (flags & MS_SYNC))
		ledger_msync(addr, len);
	return (e);
}

WF_NOTSAN int
fdatasync(int fd)
{
	REAL(int, "fdatasync", int);
	int e;

	if ((e = wf_fail(WF_FDATASYNC, -1)) != 0) {
		errno = e;
		return (-1);
	}
	if ((e = real(fd)) == 0)
		ledger_fsync(fd);
	return (e);
}

WF_NOTSAN int
fsync(int fd)
{
	REAL(int, "fsync", int);
	int e;

	if ((e = wf_fail(WF_FSYNC, -1)) != 0) {
		errno = e;
		return (-1);
	}
	if ((e = real(fd)) == 0)
		ledger_fsync(fd);
	return (e);
}

WF_NOTSAN int
sync_file_range(int fd, off_t off, off_t len, unsigned int flags)
{
	REAL(int, "sync_file_range", int, off_t, off_t, unsigned int);
	struct wf_ctl *c = wf_ctl_get();

	if (c != NULL && fd > 2)
		atomic_fetch_add(&c->sfr_calls, 1);
	return (real(fd, off, len, flags));
}

WF_NOTSAN int
nanosleep(const struct timespec *req, struct timespec *rem)
{
	REAL(int, "nanosleep", const struct timespec *, struct timespec *);
	struct wf_ctl *c = wf_ctl_get();
	struct timespec ts;
	int64_t ns;

	if (c != NULL)
		atomic_fetch_add(&c->sleep_calls, 1);
	if (c == NULL || (ns = atomic_load(&c->sleep_extra_ns)) <= 0)
		return (real(req, rem));
	ns += (int64_t)req->tv_sec * 1000000000 + req->tv_nsec;
	ts.tv_sec = ns / 1000000000;
	ts.tv_nsec = ns % 1000000000;
	return (real(&ts, rem));
}

WF_NOTSAN int
fallocate(int fd, int mode, off_t off, off_t len)
{
	REAL(int, "fallocate", int, int, off_t, off_t);
	int e;

	if ((e = wf_fail(WF_FALLOCATE, -1)) != 0) {
		errno = e;
		return (-1);
	}
	return (real(fd, mode, off, len));
}

WF_NOTSAN int
posix_fallocate(int fd, off_t off, off_t len)
{
	REAL(int, "posix_fallocate", int, off_t, off_t);
	int e;

	if ((e = wf_fail(WF_FALLOCATE, -1)) != 0)
		return (e);
	return (real(fd, off, len));
}

WF_NOTSAN void *
mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	REAL(void *, "mmap", void *, size_t, int, int, int, off_t);
	void *p;
	int e;

	if (!(flags & MAP_ANONYMOUS) && (e = wf_fail(WF_MMAP, fd)) != 0) {
		errno = e;
		return (MAP_FAILED);
	}
	p = real(addr, len, prot, flags, fd, off);
	if (p != MAP_FAILED && !(flags & MAP_ANONYMOUS) && fd >= 0)
		ledger_map(p, len, fd, off);
	return (p);
}

WF_NOTSAN int
renameat2(int ofd, const char *old, int nfd, const char *new, unsigned fl)
{
	REAL(int, "renameat2", int, const char *, int, const char *, unsigned);
	int e;

	if ((e = wf_fail(WF_RENAME, -1)) != 0) {
		errno = e;
		return (-1);
	}
	return (real(ofd, old, nfd, new, fl));
}

WF_NOTSAN int
renameat(int ofd, const char *old, int nfd, const char *new)
{
	REAL(int, "renameat", int, const char *, int, const char *);
	int e;

	if ((e = wf_fail(WF_RENAME, -1)) != 0) {
		errno = e;
		return (-1);
	}
	return (real(ofd, old, nfd, new));
}

WF_NOTSAN int
rename(const char *old, const char *new)
{
	REAL(int, "rename", const char *, const char *);
	int e;

	if ((e = wf_fail(WF_RENAME, -1)) != 0) {
		errno = e;
		return (-1);
	}
	return (real(old, new));
}

/* syncfs and sync are never failed; the ledger counts them in. */
WF_NOTSAN int
syncfs(int fd)
{
	REAL(int, "syncfs", int);
	int e;

	if ((e = real(fd)) == 0)
		ledger_syncfs();
	return (e);
}

WF_NOTSAN void
sync(void)
{
	REAL(void, "sync", void);

	real();
	ledger_syncfs();
}

WF_NOTSAN ssize_t
pread(int fd, void *buf, size_t len, off_t off)
{
	REAL(ssize_t, "pread", int, void *, size_t, off_t);
	int e;

	if ((e = wf_fail(WF_PREAD, fd)) == WF_SHORT)
		len = len > 1 ? len / 2 : len;
	else if (e != 0) {
		errno = e;
		return (-1);
	}
	return (real(fd, buf, len, off));
}

WF_NOTSAN ssize_t
write(int fd, const void *buf, size_t len)
{
	REAL(ssize_t, "write", int, const void *, size_t);
	int e;

	if ((e = wf_fail(WF_WRITE, fd)) == WF_SHORT)
		len = len > 1 ? len / 2 : len;
	else if (e != 0) {
		errno = e;
		return (-1);
	}
	return (real(fd, buf, len));
}

WF_NOTSAN ssize_t
pwrite(int fd, const void *buf, size_t len, off_t off)
{
	REAL(ssize_t, "pwrite", int, const void *, size_t, off_t);
	int e;

	if ((e = wf_fail(WF_WRITE, fd)) == WF_SHORT)
		len = len > 1 ? len / 2 : len;
	else if (e != 0) {
		errno = e;
		return (-1);
	}
	return (real(fd, buf, len, off));
}

/* The ledger is kept only when the test asked for it. */
static WF_NOTSAN struct wf_ctl *
ledger_ctl(void)
{
	struct wf_ctl *c = wf_ctl_get();

	return (c != NULL && atomic_load(&c->ledger_on) ? c : NULL);
}

/* Offset just past the last non-zero byte of p[0..len), 0 if none. */
static WF_NOTSAN size_t
last_nonzero_end(const uint8_t *p, size_t len)
{
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p + len - 8, 8);
		if (w != 0)
			break;
		len -= 8;
	}
	while (len > 0 && p[len - 1] == 0)
		len--;
	return (len);
}

/*
 * A sync of file (dev, ino) covered [from, ...) and found data up to
 * data_end: move the file's synced end when the sync starts inside what
 * is synced already (the ledger keeps one prefix per file).
 */
static WF_NOTSAN void
ledger_note(struct wf_ctl *c, uint64_t dev, uint64_t ino, uint64_t from,
    uint64_t data_end)
{
	struct wf_synced *e;
	uint64_t end;

	pthread_mutex_lock(&ledger_lock);
	if ((e = wf_ledger_find(c, dev, ino)) == NULL) {
		if (from == 0 && wf_ledger_set(c, dev, ino, data_end) != 0)
			atomic_store(&c->ledger_full, 1);
	} else if (from <= (end = atomic_load(&e->end)) && data_end > end)
		atomic_store(&e->end, data_end);
	atomic_fetch_add(&c->ledger_syncs, 1);
	pthread_mutex_unlock(&ledger_lock);
}

/* Remember a file mapping (it replaces any it overlaps). */
static WF_NOTSAN void
ledger_map(void *addr, size_t len, int fd, off_t off)
{
	uintptr_t a = (uintptr_t)addr;
	struct stat st;
	size_t i, slot = WF_MAPS_MAX;

	if (ledger_ctl() == NULL || fstat(fd, &st) == -1 ||
	    !S_ISREG(st.st_mode))
		return;
	pthread_mutex_lock(&ledger_lock);
	for (i = 0; i < WF_MAPS_MAX; i++) {
		if (maps[i].start != 0 && maps[i].start < a + len &&
		    a < maps[i].start + maps[i].len)
			maps[i].start = 0;
		if (maps[i].start == 0 && slot == WF_MAPS_MAX)
			slot = i;
	}
	if (slot < WF_MAPS_MAX) {
		maps[slot].start = a;
		maps[slot].len = len;
		maps[slot].dev = (uint64_t)st.st_dev;
		maps[slot].ino = (uint64_t)st.st_ino;
		maps[slot].off = (uint64_t)off;
	}
	pthread_mutex_unlock(&ledger_lock);
}

/* A successful msync(MS_SYNC): charge it to the mapped file. */
static WF_NOTSAN void
ledger_msync(void *addr, size_t len)
{
	struct wf_ctl *c = ledger_ctl();
	uintptr_t a = (uintptr_t)addr;
	struct wf_map m;
	size_t i;

	if (c == NULL)
		return;
	memset(&m, 0, sizeof m);
	pthread_mutex_lock(&ledger_lock);
	for (i = 0; i < WF_MAPS_MAX; i++)
		if (maps[i].start != 0 && maps[i].start <= a && a + len <=
		    maps[i].start + maps[i].len) {
			m = maps[i];
			break;
		}
	pthread_mutex_unlock(&ledger_lock);
	if (m.start == 0)
		return;
	/* The range is mapped and was just synced: scan what it held. */
	ledger_note(c, m.dev, m.ino, m.off + (a - m.start), m.off + (a -
	    m.start) + last_nonzero_end(addr, len));
}

/* A successful fdatasync or fsync: the whole file is synced. */
static WF_NOTSAN void
ledger_fsync(int fd)
{
	static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
	struct wf_ctl *c = ledger_ctl();
	struct stat st;
	void *p;

	if (c == NULL || fd <= 2 || fstat(fd, &st) == -1 ||
	    !S_ISREG(st.st_mode))
		return;
	if (st.st_size == 0) {
		ledger_note(c, (uint64_t)st.st_dev, (uint64_t)st.st_ino, 0, 0);
		return;
	}
	if (real_mmap == NULL)
		real_mmap = (void *(*)(void *, size_t, int, int, int, off_t))
		    dlsym(RTLD_NEXT, "mmap");
	p = real_mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return;		/* not recorded: the end stays where it was */
	ledger_note(c, (uint64_t)st.st_dev, (uint64_t)st.st_ino, 0,
	    last_nonzero_end(p, (size_t)st.st_size));
	munmap(p, (size_t)st.st_size);
}

/*
 * A successful syncfs or sync: every file this process has open is
 * synced (files it closed before are not known here, so for them the
 * ledger stays behind: a daemon that relied on syncfs for them would be
 * reported).
 */
static WF_NOTSAN void
ledger_syncfs(void)
{
	struct dirent *de;
	DIR *dir;
	int fd;

	if (ledger_ctl() == NULL || (dir = opendir("/proc/self/fd")) == NULL)
		return;
	while ((de = readdir(dir)) != NULL)
		if ((fd = atoi(de->d_name)) > 2 && fd != dirfd(dir))
			ledger_fsync(fd);
	closedir(dir);
}
