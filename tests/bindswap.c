/*
 * walmmapd tests - an LD_PRELOAD shim around walmmapd's bind(2) of its
 * named AF_UNIX socket, for the local-attack tests:
 *
 * - $WALTEST_SWAP_TARGET: plays a local attacker who wins the race right
 *   after bind: the socket file is replaced by a symbolic link to that
 *   path, as a user who can write to the socket's directory could do
 *   before the daemon sets the file's mode and group.
 * - $WALTEST_BIND_UMASKS: appends "tid N umask MMMM" to that file for every
 *   other thread of the process, as /proc shows it right after bind: the
 *   umask the daemon binds under must not reach threads creating files.
 *
 * Without either it does nothing.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int	bind(int, const struct sockaddr *, socklen_t);

static void	record_umasks(const char *);

int
bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	static int (*real)(int, const struct sockaddr *, socklen_t);
	const struct sockaddr_un *sun = (const struct sockaddr_un *)addr;
	const char *target = getenv("WALTEST_SWAP_TARGET");
	const char *umasks = getenv("WALTEST_BIND_UMASKS");
	int rc;

	if (real == NULL)
		real = (int (*)(int, const struct sockaddr *, socklen_t))
		    dlsym(RTLD_NEXT, "bind");
	if ((rc = real(fd, addr, len)) != 0 ||
	    addr->sa_family != AF_UNIX || len <= sizeof(sa_family_t) ||
	    sun->sun_path[0] == '\0')
		return (rc);
	if (umasks != NULL)
		record_umasks(umasks);
	/* The name as the daemon gave it: relative names resolve alike. */
	if (target != NULL && unlink(sun->sun_path) == 0)
		(void)symlink(target, sun->sun_path);
	return (rc);
}

/* Every other thread's umask, from /proc/self/task/TID/status. */
static void
record_umasks(const char *path)
{
	char name[300], line[256];
	struct dirent *de;
	long me = syscall(SYS_gettid);
	FILE *out, *f;
	DIR *dir;

	if ((out = fopen(path, "ae")) == NULL)
		return;
	if ((dir = opendir("/proc/self/task")) == NULL) {
		fclose(out);
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.' || atol(de->d_name) == me)
			continue;
		snprintf(name, sizeof name, "/proc/self/task/%s/status",
		    de->d_name);
		if ((f = fopen(name, "re")) == NULL)
			continue;
		while (fgets(line, sizeof line, f) != NULL)
			if (strncmp(line, "Umask:", 6) == 0)
				fprintf(out, "tid %s umask %s", de->d_name,
				    line + 6 + strspn(line + 6, " \t"));
		fclose(f);
	}
	closedir(dir);
	fclose(out);
}
