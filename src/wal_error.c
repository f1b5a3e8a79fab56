/*
 * walmmapd - error reporting for the core library.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "wal_error.h"

static int	wal_vseterr(struct wal_error *, int, int, const char *, va_list);

/* Record an error and return its negative code. */
int
wal_seterr(struct wal_error *e, int code, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = wal_vseterr(e, code, 0, fmt, ap);
	va_end(ap);
	return (rc);
}

/* Record an error with the errno text appended and return its negative code. */
int
wal_seterrno(struct wal_error *e, int code, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = wal_vseterr(e, code, 1, fmt, ap);
	va_end(ap);
	return (rc);
}

/* Clear an error. */
void
wal_clearerr(struct wal_error *e)
{
	if (e != NULL) {
		e->code = 0;
		e->msg[0] = '\0';
	}
}

static int
wal_vseterr(struct wal_error *e, int code, int with_errno, const char *fmt,
    va_list ap)
{
	size_t len;

	if (code <= 0)
		code = EIO;
	if (e == NULL)
		return (-code);
	e->code = code;
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	if (with_errno) {
		len = strlen(e->msg);
		snprintf(e->msg + len, sizeof e->msg - len, ": %s",
		    strerror(code));
	}
	return (-code);
}
