/*
 * walmmapd tests - usernsmap N PROGRAM [ARG...]: run PROGRAM in a new user
 * namespace that maps uids and gids 0..N-1 to themselves (N = 1: root
 * only, what systemd's PrivateUsers=yes leaves a service). Needs root; it
 * needs no newuidmap, since a root helper in the parent namespace writes
 * the maps. PROGRAM keeps our pid (it is exec'd, not forked).
 */
#include "config.h"

#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int	write_map(pid_t, const char *file, unsigned long n);

int
main(int argc, char **argv)
{
	int go[2], done[2], status;
	unsigned long n;
	pid_t pid, self = getpid();
	char c;

	if (argc < 3 || (n = strtoul(argv[1], NULL, 10)) == 0) {
		fprintf(stderr, "usage: usernsmap N program [arg...]\n");
		return (2);
	}
	if (pipe(go) == -1 || pipe(done) == -1 || (pid = fork()) == -1) {
		perror("usernsmap");
		return (1);
	}
	if (pid == 0) {
		/* The helper stays in our namespace, where it may map. */
		close(go[1]);
		close(done[0]);
		if (read(go[0], &c, 1) != 1)
			_exit(1);
		if (write_map(self, "uid_map", n) != 0 ||
		    write_map(self, "gid_map", n) != 0)
			_exit(1);
		_exit(write(done[1], "", 1) == 1 ? 0 : 1);
	}
	close(go[0]);
	close(done[1]);
	if (unshare(CLONE_NEWUSER) == -1) {
		perror("usernsmap: unshare(CLONE_NEWUSER)");
		return (1);
	}
	if (write(go[1], "", 1) != 1 || read(done[0], &c, 1) != 1 ||
	    waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(stderr, "usernsmap: cannot write the uid and gid maps\n");
		return (1);
	}
	close(go[1]);
	close(done[0]);
	execvp(argv[2], argv + 2);
	fprintf(stderr, "usernsmap: %s: %s\n", argv[2], strerror(errno));
	return (127);
}

/* "0 0 n" into /proc/pid/file. */
static int
write_map(pid_t pid, const char *file, unsigned long n)
{
	char path[64], map[64];
	int fd, len, ok;

	snprintf(path, sizeof path, "/proc/%ld/%s", (long)pid, file);
	len = snprintf(map, sizeof map, "0 0 %lu\n", n);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) == -1) {
		fprintf(stderr, "usernsmap: %s: %s\n", path, strerror(errno));
		return (-1);
	}
	ok = write(fd, map, (size_t)len) == len;
	if (!ok)
		fprintf(stderr, "usernsmap: %s: %s\n", path, strerror(errno));
	close(fd);
	return (ok ? 0 : -1);
}
