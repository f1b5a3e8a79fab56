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

#include "log.h"

static int	log_debugging;
static int	log_syslog;		/* detached: stderr is /dev/null */

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

void
log_set_debug(int debug)
{
	log_debugging = debug;
}

static void
vlog(int prio, int with_errno, const char *fmt, va_list ap)
{
	char buf[2048];
	int saved = errno;

	vsnprintf(buf, sizeof buf, fmt, ap);
	if (log_syslog) {
		if (with_errno)
			syslog(prio, "%s: %s", buf, strerror(saved));
		else
			syslog(prio, "%s", buf);
	} else if (with_errno)
		fprintf(stderr, "<%d>walmmapd: %s: %s\n", prio, buf,
		    strerror(saved));
	else
		fprintf(stderr, "<%d>walmmapd: %s\n", prio, buf);
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
