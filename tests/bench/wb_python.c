/*
 * walbench python: records/s of append_batch() from Python (the walmmap
 * package in client/python over this build's libwalmmap) against a Python
 * loop writing the same records to a file with os.write(), both measured
 * by one Python process in the same run (tests/bench/wb_python.py).
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "walbench.h"

#define MAXREPS	99

static const char *const py_args[] = { "--segment-size", "64M", "--ring",
	"2", NULL };

/* Exit status of python -c code, its output discarded (-1: no run). */
static int
python_ok(const char *python, const char *code)
{
	pid_t pid;
	int status, fd;

	if ((pid = fork()) == -1)
		return (-1);
	if (pid == 0) {
		if ((fd = open("/dev/null", O_WRONLY)) != -1) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execlp(python, python, "-c", code, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return (-1);
	return (WEXITSTATUS(status));
}

/* $PYTHON, else the first of python3 and /usr/bin/python3 with cffi. */
static const char *
find_python(void)
{
	static const char *const cands[] = { "python3", "/usr/bin/python3" };
	const char *env = getenv("PYTHON");
	size_t i;

	if (env != NULL && *env != '\0')
		return (python_ok(env, "import cffi") == 0 ? env : NULL);
	for (i = 0; i < sizeof cands / sizeof cands[0]; i++)
		if (python_ok(cands[i], "import cffi") == 0)
			return (cands[i]);
	return (NULL);
}

/* One run of wb_python.py against a fresh daemon; 0 or -1. */
static int
run_once(const struct wb *wb, const char *python, long n, int size,
    int batch, double *rps, double *base)
{
	struct wb_daemon d;
	char pkg[PATH_MAX], lib[PATH_MAX], script[PATH_MAX], file[PATH_MAX];
	char sn[32], ssize[32], sbatch[32], out[512];
	size_t got = 0;
	ssize_t k;
	pid_t pid;
	int p[2], status;
	char *line;

	if (wb_daemon_start(wb, &d, "python", 0, py_args) != 0)
		return (-1);
	snprintf(pkg, sizeof pkg, "%s/client/python", WB_SRCDIR);
	snprintf(script, sizeof script, "%s/tests/bench/wb_python.py",
	    WB_SRCDIR);
	snprintf(lib, sizeof lib, "%s/client/.libs/libwalmmap.so",
	    WB_BUILDDIR);
	snprintf(file, sizeof file, "%s/python-oswrite", wb->tmp);
	snprintf(sn, sizeof sn, "%ld", n);
	snprintf(ssize, sizeof ssize, "%d", size);
	snprintf(sbatch, sizeof sbatch, "%d", batch);
	if (pipe(p) == -1 || (pid = fork()) == -1) {
		wb_daemon_stop(&d, 1);
		return (-1);
	}
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], STDOUT_FILENO);
		setenv("PYTHONPATH", pkg, 1);
		setenv("WALMMAP_LIBRARY", lib, 1);
		setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
		execlp(python, python, script, d.sock, file, sn, ssize, sbatch,
		    (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	while (got < sizeof out - 1 &&
	    (k = read(p[0], out + got, sizeof out - 1 - got)) > 0)
		got += (size_t)k;
	out[got] = '\0';
	close(p[0]);
	waitpid(pid, &status, 0);
	wb_daemon_stop(&d, 1);
	*rps = *base = -1;
	if ((line = strstr(out, "walmmap ")) != NULL)
		*rps = atof(line + 8);
	if ((line = strstr(out, "oswrite ")) != NULL)
		*base = atof(line + 8);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || *rps <= 0 ||
	    *base <= 0) {
		fprintf(stderr, "walbench: python %s failed (status %#x): "
		    "%s\n", script, status, out);
		return (-1);
	}
	return (0);
}

int
wb_python(const struct wb *wb)
{
	static const int batches[] = { 1000, 64 };
	const int size = 64;
	struct wb_result r;
	struct stat st;
	double rps[MAXREPS], base[MAXREPS];
	const char *python;
	char lib[PATH_MAX];
	long n = wb->quick ? 50000 : 500000;
	size_t i;
	int k;

	snprintf(lib, sizeof lib, "%s/client/.libs/libwalmmap.so",
	    WB_BUILDDIR);
	if (stat(lib, &st) == -1) {
		wb_skip(wb, "python", "no shared libwalmmap in the build tree");
		return (0);
	}
	if ((python = find_python()) == NULL) {
		wb_skip(wb, "python", "no python3 with cffi (python3-cffi; or "
		    "set PYTHON)");
		return (0);
	}
	for (i = 0; i < sizeof batches / sizeof batches[0]; i++) {
		for (k = 0; k < wb->reps; k++)
			if (run_once(wb, python, n, size, batches[i], &rps[k],
			    &base[k]) != 0)
				return (-1);
		wb_result_init(&r, "python", "os.write() loop to a file");
		snprintf(r.variant, sizeof r.variant, "append_batch of %d",
		    batches[i]);
		r.rps = wb_median(rps, wb->reps);
		r.rec_bytes = size;
		r.base_rps = wb_median(base, wb->reps);
		snprintf(r.note, sizeof r.note, "%dB records, written acks, "
		    "%ld records, median of %d", size, n, wb->reps);
		wb_report(wb, &r);
	}
	return (0);
}
