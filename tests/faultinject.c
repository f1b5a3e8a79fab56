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

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
 * Count a call; 0 to let it through, else the errno to fail it with.
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
			if (atomic_load(&op->persist))
				atomic_store(&op->failing, 1);
			goto fail;
		}
	}
	return (0);
fail:
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
	return (real(addr, len, flags));
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
	return (real(fd));
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
	return (real(fd));
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
	int e;

	if (!(flags & MAP_ANONYMOUS) && (e = wf_fail(WF_MMAP, fd)) != 0) {
		errno = e;
		return (MAP_FAILED);
	}
	return (real(addr, len, prot, flags, fd, off));
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

WF_NOTSAN ssize_t
pread(int fd, void *buf, size_t len, off_t off)
{
	REAL(ssize_t, "pread", int, void *, size_t, off_t);
	int e;

	if ((e = wf_fail(WF_PREAD, fd)) != 0) {
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

	if ((e = wf_fail(WF_WRITE, fd)) != 0) {
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

	if ((e = wf_fail(WF_WRITE, fd)) != 0) {
		errno = e;
		return (-1);
	}
	return (real(fd, buf, len, off));
}
