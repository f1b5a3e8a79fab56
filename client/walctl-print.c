/*
 * walctl - printing records and values: text, JSON Lines, raw.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "walctl.h"

static void	json_string(FILE *, const uint8_t *, size_t);
static void	base64(FILE *, const uint8_t *, size_t);
static size_t	utf8_len(const uint8_t *, size_t);
static int	utf8_valid(const uint8_t *, size_t);

/* "2026-11-25T10:00:00.123456789Z" */
void
print_time(FILE *f, int64_t ns)
{
	struct tm tm;
	time_t t;
	int64_t frac;

	t = (time_t)(ns / 1000000000);
	frac = ns % 1000000000;
	if (frac < 0) {
		frac += 1000000000;
		t--;
	}
	gmtime_r(&t, &tm);
	fprintf(f, "%04d-%02d-%02dT%02d:%02d:%02d.%09" PRId64 "Z",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, frac);
}

/* One record in the chosen format. */
void
print_record(FILE *f, enum out_format fmt, const struct walmmap_record *r)
{
	print_record_prov(f, fmt, r, NULL);
}

/* A record and, in JSON, who wrote it (pv, if known). */
void
print_record_prov(FILE *f, enum out_format fmt, const struct walmmap_record *r,
    const struct walmmap_provenance *pv)
{
	const uint8_t *p = r->data;
	size_t i;

	switch (fmt) {
	case OUT_RAW:
		fwrite(p, 1, r->size, f);
		fputc('\n', f);
		break;
	case OUT_JSON:
		fprintf(f, "{\"seq\":%" PRId64 ",\"timestamp_ns\":%" PRId64
		    ",\"size\":%zu,", r->seq, r->timestamp_ns, r->size);
		if (pv != NULL) {
			fprintf(f, "\"producer\":{\"id\":%" PRIu64 ",\"pseq\":%"
			    PRIu64, pv->producer_id, pv->pseq);
			if (pv->known) {
				fprintf(f, ",\"uid\":%" PRIu32 ",\"gid\":%" PRIu32
				    ",\"pid\":%" PRIu32 ",\"connect_ns\":%" PRId64
				    ",", pv->uid, pv->gid, pv->pid,
				    pv->connect_ns);
				print_json_text(f, "comm", pv->comm);
				fputc(',', f);
				print_json_text(f, "exe", pv->exe);
			}
			fputs("},", f);
		}
		if (utf8_valid(p, r->size)) {
			fputs("\"payload\":", f);
			json_string(f, p, r->size);
		} else {
			fputs("\"payload_base64\":\"", f);
			base64(f, p, r->size);
			fputc('"', f);
		}
		fputs("}\n", f);
		break;
	case OUT_TEXT:
		fprintf(f, "%" PRId64 " ", r->seq);
		print_time(f, r->timestamp_ns);
		fputc(' ', f);
		for (i = 0; i < r->size; i++) {
			if (p[i] == '\\')
				fputs("\\\\", f);
			else if (p[i] >= 0x20 && p[i] < 0x7f)
				fputc(p[i], f);
			else if (p[i] == '\n')
				fputs("\\n", f);
			else if (p[i] == '\t')
				fputs("\\t", f);
			else
				fprintf(f, "\\x%02x", p[i]);
		}
		fputc('\n', f);
		break;
	}
}

/*
 * "key":"text" for NUL-terminated text that need not be UTF-8 (a path):
 * each byte that is not part of valid UTF-8 becomes U+FFFD, so the JSON
 * is valid; then, only when that happened, "key_base64" with the exact
 * bytes.
 */
void
print_json_text(FILE *f, const char *key, const char *s)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t n = strlen(s);

	fprintf(f, "\"%s\":", key);
	json_string(f, p, n);
	if (utf8_valid(p, n))
		return;
	fprintf(f, ",\"%s_base64\":\"", key);
	base64(f, p, n);
	fputc('"', f);
}

/* A JSON string; bytes that are not valid UTF-8 become U+FFFD. */
static void
json_string(FILE *f, const uint8_t *p, size_t n)
{
	size_t i, len;

	fputc('"', f);
	for (i = 0; i < n; i++) {
		if (p[i] >= 0x80) {
			if ((len = utf8_len(p + i, n - i)) == 0)
				fputs("\\ufffd", f);
			else {
				fwrite(p + i, 1, len, f);
				i += len - 1;
			}
			continue;
		}
		switch (p[i]) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (p[i] < 0x20 || p[i] == 0x7f)
				fprintf(f, "\\u%04x", p[i]);
			else
				fputc(p[i], f);
		}
	}
	fputc('"', f);
}

static void
base64(FILE *f, const uint8_t *p, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint32_t v;
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		fputc(tab[v >> 18], f);
		fputc(tab[(v >> 12) & 63], f);
		fputc(tab[(v >> 6) & 63], f);
		fputc(tab[v & 63], f);
	}
	if (n - i == 1) {
		v = (uint32_t)p[i] << 16;
		fputc(tab[v >> 18], f);
		fputc(tab[(v >> 12) & 63], f);
		fputs("==", f);
	} else if (n - i == 2) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		fputc(tab[v >> 18], f);
		fputc(tab[(v >> 12) & 63], f);
		fputc(tab[(v >> 6) & 63], f);
		fputc('=', f);
	}
}

/*
 * Length of the character at p in strict UTF-8 (no overlongs, no
 * surrogates, nothing above U+10FFFF); 0 when p does not start one.
 */
static size_t
utf8_len(const uint8_t *p, size_t n)
{
	size_t len, k;
	uint32_t cp;

	if (p[0] < 0x80)
		return (1);
	if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = p[0] & 0x07;
	} else
		return (0);
	if (n < len)
		return (0);
	for (k = 1; k < len; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return (0);
		cp = cp << 6 | (p[k] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return (0);
	return (len);
}

/* Valid UTF-8 without NUL bytes (a payload with NUL stays binary). */
static int
utf8_valid(const uint8_t *p, size_t n)
{
	size_t i = 0, len;

	while (i < n) {
		if (p[i] == 0 || (len = utf8_len(p + i, n - i)) == 0)
			return (0);
		i += len;
	}
	return (1);
}

/* walctl status: the log id and each forwarder, as text. */
void
print_forwarders(FILE *f, const struct walmmap_log_info *li)
{
	const struct walmmap_forwarder *w;
	size_t i;

	if (li->log_id_hex[0] == '\0')
		return;
	fprintf(f, "log id       %s\n", li->log_id_hex);
	if (li->count == 0)
		fprintf(f, "forwarders   none\n");
	if (li->blocking)
		fprintf(f, "PRODUCERS WAIT: a forwarder is past its hold "
		    "(forward_hold_block)\n");
	for (i = 0; i < li->count; i++) {
		w = &li->fwd[i];
		fprintf(f, "forwarder    %s: ", w->name);
		if (w->shipped_seq >= 0)
			fprintf(f, "shipped to seq %" PRId64, w->shipped_seq);
		else
			fprintf(f, "nothing shipped");
		fprintf(f, ", lag %" PRId64 " records, %" PRId64 ".%01" PRId64
		    " s", w->lag_records, w->lag_ns / 1000000000,
		    w->lag_ns / 100000000 % 10);
		if (!w->attached)
			fprintf(f, ", not running");
		else if (w->connected)
			fprintf(f, ", connected to %s", w->server);
		else if (w->server[0] != '\0')
			fprintf(f, ", not connected (last %s)", w->server);
		else
			fprintf(f, ", not connected");
		if (w->error[0] != '\0')
			fprintf(f, ", last error: %s", w->error);
		fprintf(f, "\n");
		if (w->gap_records > 0)
			fprintf(f, "             GAP: %" PRIu64 " records "
			    "removed by retention before it shipped them "
			    "(last: seq %" PRId64 " .. %" PRId64 ")\n",
			    w->gap_records, w->gap_first, w->gap_last);
	}
}

/* walctl status --json: "log_id" and "forwarders" (no braces around). */
void
print_forwarders_json(FILE *f, const struct walmmap_log_info *li)
{
	const struct walmmap_forwarder *w;
	size_t i;

	if (li->log_id_hex[0] == '\0') {
		fprintf(f, "\"log_id\":null,\"forwarders\":[]");
		return;
	}
	fprintf(f, "\"log_id\":\"%s\",\"producers_wait\":%s,\"forwarders\":[",
	    li->log_id_hex, li->blocking ? "true" : "false");
	for (i = 0; i < li->count; i++) {
		w = &li->fwd[i];
		fprintf(f, "%s{", i > 0 ? "," : "");
		print_json_text(f, "name", w->name);
		fprintf(f, ",\"shipped_seq\":%" PRId64 ",\"lag_records\":%"
		    PRId64 ",\"lag_s\":%.3f,\"running\":%s,\"connected\":%s,",
		    w->shipped_seq, w->lag_records, (double)w->lag_ns / 1e9,
		    w->attached ? "true" : "false", w->connected ? "true" :
		    "false");
		print_json_text(f, "server", w->server);
		fprintf(f, ",");
		print_json_text(f, "error", w->error);
		fprintf(f, ",\"gap_records\":%" PRIu64 "}", w->gap_records);
	}
	fprintf(f, "]");
}
