/*
 * walctl - what its files share.
 */
#ifndef WALCTL_H
#define WALCTL_H

#include <stdint.h>
#include <stdio.h>

#include "walmmap.h"

/* Exit codes (walctl(1)). */
#define EXIT_OK		0
#define EXIT_PROBLEMS	1	/* verify found damage; a request failed */
#define EXIT_USAGE	2	/* usage, file or output, connection errors */

enum out_format { OUT_TEXT, OUT_JSON, OUT_RAW };

void	print_time(FILE *, int64_t ns);
void	print_record(FILE *, enum out_format, const struct walmmap_record *);
void	print_record_prov(FILE *, enum out_format,
	    const struct walmmap_record *, const struct walmmap_provenance *);
void	print_json_text(FILE *, const char *key, const char *);
void	print_forwarders(FILE *, const struct walmmap_log_info *);
void	print_forwarders_json(FILE *, const struct walmmap_log_info *);

#endif /* WALCTL_H */
