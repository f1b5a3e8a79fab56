/*
 * append_read - append a record to walmmapd durably, then read it back
 * from the segment files.
 *
 *   cc append_read.c $(pkg-config --cflags --libs walmmap) -o append_read
 *   ./append_read [SOCKET [DATADIR]]
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <walmmap.h>

int
main(int argc, char *argv[])
{
	const char *sock = argc > 1 ? argv[1] : NULL;
	const char *msg = "hello, write-ahead log";
	struct walmmap *w;
	struct walmmap_reader *r;
	struct walmmap_record rec;
	int64_t seq;
	int rc;

	/* Durable: the append returns once the record is synced. */
	if (walmmap_connect(&w, sock, WALMMAP_ACK_DURABLE, 0) != 0) {
		fprintf(stderr, "connect: %s\n", walmmap_errmsg(w));
		walmmap_close(w);
		return 1;
	}
	if (walmmap_append(w, msg, strlen(msg), WALMMAP_ACK_DEFAULT,
	    &seq) != 0) {
		fprintf(stderr, "append: %s\n", walmmap_errmsg(w));
		walmmap_close(w);
		return 1;
	}
	printf("appended seq %" PRId64 "\n", seq);
	walmmap_close(w);

	if (argc < 3)
		return 0;
	/* Read it back from the files; no daemon involved. */
	if (walmmap_reader_open(&r, argv[2]) != 0 ||
	    walmmap_reader_seek(r, seq) != 0 ||
	    (rc = walmmap_reader_next(r, &rec, 0)) != 1) {
		fprintf(stderr, "read: %s\n", walmmap_reader_errmsg(r));
		walmmap_reader_close(r);
		return 1;
	}
	printf("read back seq %" PRId64 ": %.*s\n", rec.seq, (int)rec.size,
	    (const char *)rec.data);
	rc = rec.seq == seq && rec.size == strlen(msg) &&
	    memcmp(rec.data, msg, rec.size) == 0 ? 0 : 1;
	walmmap_reader_close(r);
	return rc;
}
