/*
 * walmmapd tests - the Python package (client/python) through its pytest
 * suite, against this build tree: the package from the source tree
 * (PYTHONPATH), libwalmmap from client/.libs ($WALMMAP_LIBRARY) and the
 * daemon from daemon/walmmapd ($WALMMAPD), which the suite's fixture
 * starts on a temporary directory and stops.
 *
 * The interpreter is $PYTHON, else the first of python3 and
 * /usr/bin/python3 that imports cffi and pytest (Debian's python3-cffi,
 * python3-pytest; a python3 earlier in PATH may lack them). Without one,
 * or in a sanitizer build (an instrumented libwalmmap cannot be loaded
 * into an uninstrumented interpreter), or without a shared libwalmmap,
 * the suite is skipped (exit 77) and says why.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <check.h>

#include "testsupport.h"
#include "tsdaemon.h"

#define SKIP	77

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED	1
#endif
#endif

static const char	*python;

/* Exit status of argv run with its output discarded (-1: no run). */
static int
run_quiet(char *const *argv)
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
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return (-1);
	return (WEXITSTATUS(status));
}

/* The first interpreter that has cffi and pytest, or NULL. */
static const char *
find_python(void)
{
	static const char *const cands[] = { "python3", "/usr/bin/python3" };
	const char *env = getenv("PYTHON");
	char *argv[] = { NULL, (char *)"-c", (char *)"import cffi, pytest",
	    NULL };
	size_t i;

	if (env != NULL && *env != '\0') {
		argv[0] = (char *)env;
		return (run_quiet(argv) == 0 ? env : NULL);
	}
	for (i = 0; i < sizeof cands / sizeof cands[0]; i++) {
		argv[0] = (char *)cands[i];
		if (run_quiet(argv) == 0)
			return (cands[i]);
	}
	return (NULL);
}

/* The whole pytest suite passes against the build tree. */
START_TEST(test_pytest_suite)
{
	char tests[PATH_MAX], pkg[PATH_MAX];
	char *argv[] = { (char *)python, (char *)"-m", (char *)"pytest",
	    (char *)"-v", (char *)"-p", (char *)"no:cacheprovider", tests,
	    NULL };
	pid_t pid;
	int status;

	snprintf(pkg, sizeof pkg, "%s/client/python", TS_SRCDIR);
	snprintf(tests, sizeof tests, "%s/client/python/tests", TS_SRCDIR);
	ck_assert_int_eq(setenv("PYTHONPATH", pkg, 1), 0);
	ck_assert_int_eq(setenv("PYTHONDONTWRITEBYTECODE", "1", 1), 0);
	ck_assert_int_eq(setenv("WALMMAP_LIBRARY",
	    ts_prog("client/.libs/libwalmmap.so"), 1), 0);
	ck_assert_int_eq(setenv("WALMMAPD", ts_prog("daemon/walmmapd"), 1),
	    0);
	unsetenv("WALMMAP_SOCKET");
	unsetenv("WALMMAP_NAMESPACE");
	printf("check_python: %s -m pytest %s (WALMMAP_LIBRARY=%s)\n",
	    python, tests, getenv("WALMMAP_LIBRARY"));
	fflush(stdout);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		dup2(STDOUT_FILENO, STDERR_FILENO);
		execvp(argv[0], argv);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "pytest failed (status %#x): see its output above", status);
}
END_TEST

static Suite *
python_suite(void)
{
	Suite *s = suite_create("python");
	TCase *tc = tcase_create("walmmap package");

	tcase_set_timeout(tc, 900);
	tcase_add_test(tc, test_pytest_suite);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	struct stat st;

#ifdef SANITIZED
	printf("check_python: skipped: a sanitizer build's libwalmmap cannot "
	    "be loaded into python3\n");
	return (SKIP);
#endif
	if (stat(ts_prog("client/.libs/libwalmmap.so"), &st) == -1) {
		printf("check_python: skipped: no shared libwalmmap at %s\n",
		    ts_prog("client/.libs/libwalmmap.so"));
		return (SKIP);
	}
	if ((python = find_python()) == NULL) {
		printf("check_python: skipped: no python3 imports cffi and "
		    "pytest (install python3-cffi and python3-pytest, or set "
		    "PYTHON)\n");
		return (SKIP);
	}
	signal(SIGPIPE, SIG_IGN);
	return (ts_run(python_suite()));
}
