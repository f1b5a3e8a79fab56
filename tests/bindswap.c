/*
 * walmmapd tests - an LD_PRELOAD shim that plays a local attacker who wins
 * the race right after walmmapd binds its socket: once bind(2) of a named
 * AF_UNIX socket succeeds, the socket file is replaced by a symbolic link
 * to $WALTEST_SWAP_TARGET, as a user who can write to the socket's
 * directory could do before the daemon sets the file's mode and group.
 * Without $WALTEST_SWAP_TARGET it does nothing.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

int	bind(int, const struct sockaddr *, socklen_t);

int
bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	static int (*real)(int, const struct sockaddr *, socklen_t);
	const struct sockaddr_un *sun = (const struct sockaddr_un *)addr;
	const char *target = getenv("WALTEST_SWAP_TARGET");
	int rc;

	if (real == NULL)
		real = (int (*)(int, const struct sockaddr *, socklen_t))
		    dlsym(RTLD_NEXT, "bind");
	if ((rc = real(fd, addr, len)) != 0 || target == NULL ||
	    addr->sa_family != AF_UNIX || len <= sizeof(sa_family_t) ||
	    sun->sun_path[0] == '\0')
		return (rc);
	/* The name as the daemon gave it: relative names resolve alike. */
	if (unlink(sun->sun_path) == 0)
		(void)symlink(target, sun->sun_path);
	return (rc);
}
