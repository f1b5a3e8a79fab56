/*
 * walmmapd - error reporting for the core library.
 *
 * Library code never prints. A function that can fail returns 0 or a
 * negative errno value and, when the caller passes a struct wal_error,
 * fills it with a sentence saying what failed, on what, and why.
 */
#ifndef WAL_ERROR_H
#define WAL_ERROR_H

#include <stddef.h>

#define WAL_ERROR_MSG_MAX 512

struct wal_error {
	int	code;			/* positive errno value, 0 if none */
	char	msg[WAL_ERROR_MSG_MAX];	/* human-readable, no trailing newline */
};

/* Record an error; returns -code so callers can "return wal_seterr(...)". */
int	wal_seterr(struct wal_error *, int code, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

/* Like wal_seterr(), appending ": strerror(code)". */
int	wal_seterrno(struct wal_error *, int code, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

/* Clear an error structure (NULL allowed). */
void	wal_clearerr(struct wal_error *);

#endif /* WAL_ERROR_H */
