/*
 * walmmapd - logging to stderr with sd-daemon priority prefixes, so journald
 * files each line at its level ("<3>" error, "<4>" warning, "<6>" info,
 * "<7>" debug).
 */
#ifndef LOG_H
#define LOG_H

#include <stdarg.h>

void	log_init(int debug);
void	log_set_debug(int debug);
void	log_to_syslog(void);
int	log_is_syslog(void);
void	log_tee(int fd);

/* Messages; the *_errno forms append ": strerror(errno)". */
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_errx(const char *, ...) __attribute__((format(printf, 1, 2)));

/* Cannot continue: log at error level and exit(1). */
void	fatal(const char *, ...) __attribute__((format(printf, 1, 2),
	    noreturn));
void	fatalx(const char *, ...) __attribute__((format(printf, 1, 2),
	    noreturn));

#endif /* LOG_H */
