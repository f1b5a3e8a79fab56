/*
 * walmmapd - logging (see log.h).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"

static int	log_debugging;
static int	log_syslog;		/* detached: stderr is /dev/null */
static int	log_tee_fd = -1;	/* the starting process, waiting */

static void	vlog(int prio, int with_errno, const char *, va_list);

void
log_init(int debug)
{
	log_debugging = debug;
	setvbuf(stderr, NULL, _IOLBF, 0);
}

/* Send further messages to syslog (after daemonizing). */
void
log_to_syslog(void)
{
	openlog("walmmapd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	log_syslog = 1;
}

/* Are messages going to syslog (a restart keeps it so)? */
int
log_is_syslog(void)
{
	return (log_syslog);
}

/*
 * While a detached daemon starts, also send its warnings and errors, as
 * lines in the standard-error format, to fd: the starting process copies
 * them to the terminal. -1 stops.
 */
void
log_tee(int fd)
{
	log_tee_fd = fd;
}

void
log_set_debug(int debug)
{
	log_debugging = debug;
}

static void
vlog(int prio, int with_errno, const char *fmt, va_list ap)
{
	char buf[2048], msg[2304], line[2400];
	int saved = errno, n;

	vsnprintf(buf, sizeof buf, fmt, ap);
	if (with_errno)
		snprintf(msg, sizeof msg, "%s: %s", buf, strerror(saved));
	else
		snprintf(msg, sizeof msg, "%s", buf);
	n = snprintf(line, sizeof line, "<%d>walmmapd: %s\n", prio, msg);
	if (n < 0 || (size_t)n >= sizeof line)
		n = (int)strlen(line);
	if (log_syslog)
		syslog(prio, "%s", msg);
	else
		fputs(line, stderr);
	/* One write: a line is shorter than PIPE_BUF, so it stays whole. */
	if (log_tee_fd != -1 && prio <= LOG_WARNING)
		(void)write(log_tee_fd, line, (size_t)n);
	errno = saved;
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!log_debugging)
		return;
	va_start(ap, fmt);
	vlog(7, 0, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(6, 0, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(4, 0, fmt, ap);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(4, 1, fmt, ap);
	va_end(ap);
}

void
log_errx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(3, 0, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(3, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(3, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
