/*
 * libFuzzer target: walmmapd.conf as the daemon loads it (config_load,
 * then config_validate). The input becomes a file through a memfd.
 */
#define _GNU_SOURCE
#include "config.h"

#include <sys/mman.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "srvconf.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct srv_config c;
	char path[64], err[1024];
	int fd;

	if ((fd = memfd_create("fuzz-conf", MFD_CLOEXEC)) == -1)
		return (0);
	if (write(fd, data, len) != (ssize_t)len) {
		close(fd);
		return (0);
	}
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	config_defaults(&c);
	if (config_load(&c, path, 1, err, sizeof err) == 0)
		(void)config_validate(&c, err, sizeof err);
	config_free(&c);
	close(fd);
	return (0);
}
