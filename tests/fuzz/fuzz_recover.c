/*
 * libFuzzer target: recovery of a segment directory, then appends and a
 * read back.
 *
 * Each input builds a directory under $TMPDIR (see fr_build): segment
 * files of records with good CRCs (seqs that follow, or jump), corrupted
 * at will (bytes flipped, zeroed or overwritten, files of other sizes,
 * without the file magic, empty ones between others), and the files that
 * live beside segments written with the input's bytes under their names
 * (walmmapd.checkpoint, also a well-formed one through
 * wal_checkpoint_write; walmmapd.sync-failed; walmmapd.producers,
 * walmmapd.log-id, walmmapd.forwarders; leftovers of an interrupted
 * creation or of an earlier recovery; a directory or a symbolic link
 * under a segment's name; a well-formed producer table, built with
 * wal_ptab_*, whose producers' journal entries and positions are around
 * the end of the log, before it, after it, or ahead of their journal).
 * It is then opened with the real recovery (wal_ring_open, 64 KiB
 * segments, ring of 2), the producer table opened after it as walmmapd
 * does (wal_ptab_open at the recovered next seq), appended to, closed,
 * read back with wal_reader, and opened a second time (the table too).
 *
 * Checked (a violation aborts with a message):
 *  - wal_ring_open succeeds, or fails with an errno and a message;
 *  - the appended records get the seqs next_seq, next_seq + 1, ...;
 *  - the log read back has seqs that follow each other (no gap, nothing
 *    twice); every record in it below next_seq is a record with a good
 *    CRC somewhere in the input's files (nothing readable that was not
 *    written), and from next_seq on it is exactly what was appended
 *    (or, with a checkpoint in a damaged input, a record of the input:
 *    recovery does not read the segments below the checkpoint, and an
 *    older one may hold seqs past the newest one's);
 *  - without a walmmapd.checkpoint in the input (which may claim segments
 *    are sound that recovery then does not read) it reads to a clean end,
 *    and a seek to next_seq finds the appended records;
 *  - an input that is a clean log (consecutive segments and seqs, no
 *    damage, no other files, or a true checkpoint) loses nothing: next_seq
 *    is one after its last record and every record reads back;
 *  - after the clean close, a second wal_ring_open succeeds at
 *    next_seq + appended;
 *  - the producer table opens after each wal_ring_open, and nothing in it
 *    is ahead of the recovered log: no journal entry at or after next_seq,
 *    no producer (unless marked lost, which refuses its resumption) whose
 *    last_seq is, or whose position is behind its own newest journal
 *    entry or disagrees with it (next_pseq - 1 journalled under another
 *    seq than last_seq);
 *  - no crash, leak, sanitizer report or hang.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wal_checkpoint.h"
#include "wal_format.h"
#include "wal_ptab.h"
#include "wal_reader.h"
#include "wal_ring.h"
#include "wal_segment.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FR_SEG		(64u * 1024)	/* the ring's segment size */
#define FR_FILES	8		/* segment files per input */
#define FR_APPENDS	64		/* records appended after open */
#define FR_FOUND_MAX	8192		/* good records in the input */
#define FR_PSLOTS	4		/* producer table slots */
#define FR_PJOURNAL	16		/* ... and journal entries */

/* A segment file being built. */
struct fr_file {
	uint64_t	 id;
	uint8_t		*buf;
	size_t		 size;		/* the file's size */
	size_t		 off;		/* where the next record goes */
	int		 nrec;
};

/* A record identified by seq and a hash of all it holds. */
struct fr_key {
	int64_t		 seq;
	uint64_t	 hash;
};

static struct {
	char		 dir[256];
	struct fr_file	 files[FR_FILES];
	int		 nfiles;
	int64_t		 next_seq;	/* of the next record built */
	int64_t		 first_seq;	/* of the first, -1 none */
	int		 clean;		/* no damage: nothing may be lost */
	int		 checkpoint;	/* a walmmapd.checkpoint was written */
	int		 ptab;		/* a well-formed producer table too */
	struct fr_key	 found[FR_FOUND_MAX];
	size_t		 nfound;
	struct fr_key	 appended[FR_APPENDS];
	uint32_t	 app_size[FR_APPENDS];
	size_t		 napp;
	const uint8_t	*in;
	size_t		 inlen, inoff;
} fr;

static void	fr_fail(const char *, ...)
		    __attribute__((format(printf, 1, 2), noreturn));

/* An invariant does not hold: say which, and crash for libFuzzer. */
static void
fr_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dprintf(2, "fuzz_recover: invariant violated (%s): ", fr.dir);
	vdprintf(2, fmt, ap);
	dprintf(2, "\n");
	va_end(ap);
	abort();
}

static uint8_t
fr_u8(void)
{
	return (fr.inoff < fr.inlen ? fr.in[fr.inoff++] : 0);
}

static uint16_t
fr_u16(void)
{
	uint16_t v = fr_u8();

	return ((uint16_t)(v | fr_u8() << 8));
}

static uint64_t
fr_u64(void)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v |= (uint64_t)fr_u8() << (8 * i);
	return (v);
}

static void
fr_bytes(uint8_t *p, size_t n)
{
	size_t k = fr.inlen - fr.inoff < n ? fr.inlen - fr.inoff : n;

	memcpy(p, fr.in + fr.inoff, k);
	memset(p + k, 0, n - k);
	fr.inoff += k;
}

static uint64_t
fr_hash(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n-- > 0)
		h = (h ^ *b++) * 0x100000001b3ull;
	return (h);
}

/* The key of a record as read. */
static struct fr_key
fr_key(const struct wal_record *r)
{
	struct fr_key k;
	uint64_t h = 0xcbf29ce484222325ull;

	h = fr_hash(h, &r->timestamp_ns, sizeof r->timestamp_ns);
	h = fr_hash(h, &r->size, sizeof r->size);
	k.seq = r->seq;
	k.hash = fr_hash(h, r->payload, r->size);
	return (k);
}

static int
fr_key_cmp(const void *a, const void *b)
{
	const struct fr_key *x = a, *y = b;

	if (x->seq != y->seq)
		return (x->seq < y->seq ? -1 : 1);
	if (x->hash != y->hash)
		return (x->hash < y->hash ? -1 : 1);
	return (0);
}

/* Remember every good record anywhere in a file's bytes. */
static void
fr_scan(const uint8_t *p, size_t n)
{
	struct wal_record r;
	size_t i;

	for (i = 0; i + WAL_RECORD_OVERHEAD <= n; i++) {
		if (wal_le32_load(p + i) != WAL_RECORD_MAGIC)
			continue;
		if (wal_record_check(p + i, n - i, -1, &r) != WAL_REC_OK)
			continue;
		if (fr.nfound == FR_FOUND_MAX)
			fr_fail("more than %d records in an input",
			    FR_FOUND_MAX);
		fr.found[fr.nfound++] = fr_key(&r);
	}
}

/* Write a file of the directory, created with these bytes. */
static void
fr_write(const char *name, const uint8_t *p, size_t n)
{
	char path[512];
	int fd;

	snprintf(path, sizeof path, "%s/%s", fr.dir, name);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
	    O_NOFOLLOW, 0644)) == -1)
		return;		/* a directory of that name, say */
	if (n > 0 && write(fd, p, n) != (ssize_t)n)
		fr_fail("write %s: %s", path, strerror(errno));
	close(fd);
	fr_scan(p, n);
}

/* Start a segment file; in a clean log only after one with records. */
static void
fr_segment(void)
{
	static const size_t sizes[] = { FR_SEG, FR_SEG, FR_SEG, FR_SEG,
	    2 * FR_SEG, 16, 10, 0, 4096, FR_SEG + 1 };
	struct fr_file *f, *cur = fr.nfiles ? &fr.files[fr.nfiles - 1] : NULL;
	uint8_t b = fr_u8(), sel = fr_u8();

	if (fr.nfiles == FR_FILES)
		return;
	if (fr.clean && cur != NULL && cur->nrec == 0)
		return;
	f = &fr.files[fr.nfiles];
	memset(f, 0, sizeof *f);
	if (fr.clean) {
		f->id = cur != NULL ? cur->id + 1 : b % 4;
		f->size = FR_SEG;
	} else {
		f->id = b < 240 ? b % 12 : fr_u64() % 10000000000ull;
		f->size = sizes[sel % (sizeof sizes / sizeof sizes[0])];
	}
	if ((f->buf = calloc(1, f->size + 1)) == NULL)
		abort();
	if (f->size >= WAL_FILE_HEADER_SIZE)
		memcpy(f->buf, WAL_FILE_MAGIC, WAL_FILE_HEADER_SIZE);
	if (!fr.clean && (sel & 0xf0) == 0xf0 && f->size > 0)
		f->buf[fr_u8() % (f->size < 16 ? f->size : 16)] ^= 0x20;
	f->off = WAL_FILE_HEADER_SIZE;
	fr.nfiles++;
}

/* Records with good CRCs into the current segment while they fit. */
static void
fr_records(void)
{
	struct fr_file *f;
	uint8_t payload[4096];
	uint32_t size;
	int64_t ts;
	int n, i;

	if (fr.nfiles == 0)
		fr_segment();
	if (fr.nfiles == 0)
		return;
	f = &fr.files[fr.nfiles - 1];
	n = 1 + fr_u8() % 8;
	for (i = 0; i < n; i++) {
		size = fr_u8();
		if (size >= 250)
			size = (size - 249) * 600;
		if (f->off + wal_record_span(size) > f->size)
			return;
		fr_bytes(payload, size < 32 ? size : 32);
		memset(payload + (size < 32 ? size : 32), 0x5a,
		    size > 32 ? size - 32 : 0);
		ts = 1000000000ll * 1700000000 + fr_u8();
		wal_record_encode(f->buf + f->off, fr.next_seq, ts, payload,
		    size);
		if (fr.first_seq < 0)
			fr.first_seq = fr.next_seq;
		fr.next_seq++;
		f->off += wal_record_span(size);
		f->nrec++;
	}
}

/* Damage the current segment. */
static void
fr_damage(void)
{
	struct fr_file *f;
	uint8_t how = fr_u8();
	size_t at, n, k;

	if (fr.nfiles == 0)
		return;
	f = &fr.files[fr.nfiles - 1];
	if (f->size == 0)
		return;
	/* Mostly near the records, where it matters. */
	at = fr_u16() % (how & 1 ? f->size : f->off + 64 < f->size ?
	    f->off + 64 : f->size);
	n = 1 + fr_u8() % 64;
	if (n > f->size - at)
		n = f->size - at;
	switch ((how >> 1) % 4) {
	case 0:
		f->buf[at] ^= (uint8_t)(1 + fr_u8() % 255);
		break;
	case 1:
		memset(f->buf + at, 0, n);
		break;
	case 2:
		fr_bytes(f->buf + at, n);
		break;
	default:	/* a record copied over another place */
		k = fr_u16() % f->size;
		if (k + n > f->size)
			n = f->size - k;
		memmove(f->buf + at, f->buf + k, n < f->size - at ? n :
		    f->size - at);
		break;
	}
}

/*
 * A well-formed producer table (replacing any): up to 3 producers whose
 * journal entries take seqs around the end of the log built so far (the
 * seqs between them are other producers' or plain records), and whose
 * positions are then what the journal says, behind it, or ahead of it.
 */
static void
fr_ptab(void)
{
	struct wal_ptab_config pc = { FR_PSLOTS, FR_PJOURNAL };
	struct wal_ptab_recovery info;
	struct wal_ptab *t;
	struct wal_error err;
	uint64_t next[3];
	int64_t last[3], seq;
	int slot[3], np, n, i, p, dfd;

	if ((dfd = open(fr.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		fr_fail("open %s: %s", fr.dir, strerror(errno));
	(void)unlinkat(dfd, WAL_PTAB_FILE, 0);
	if (wal_ptab_open(dfd, fr.dir, INT64_MAX, &pc, &t, &info, &err) != 0) {
		close(dfd);
		return;		/* a directory of that name, say */
	}
	np = 1 + fr_u8() % 3;
	for (p = 0; p < np; p++) {
		if ((slot[p] = wal_ptab_create(t, 0, 0, 1, 1, NULL,
		    NULL)) < 0)
			fr_fail("wal_ptab_create in a new table: %d", slot[p]);
		if (wal_ptab_claim(t, slot[p], 1, "fuzz", "fuzz_recover", 1,
		    &err) != 0)
			fr_fail("wal_ptab_claim: %s", err.msg);
		next[p] = 1;
		last[p] = -1;
	}
	seq = fr.next_seq - fr_u8() % 24;
	if (seq < 0)
		seq = 0;
	n = fr_u8() % 24;
	for (i = 0; i < n; i++) {
		p = fr_u8() % np;
		seq += fr_u8() % 3;
		wal_ptab_note(t, t->slots[slot[p]].id, next[p], seq,
		    fr_u8() & WAL_PTAB_J_FIRST);
		last[p] = seq++;
		next[p]++;
	}
	for (p = 0; p < np; p++)
		switch (fr_u8() % 4) {
		case 0:		/* behind its journal */
			break;
		case 1:		/* ahead of it, and maybe of the log */
			wal_ptab_advance(t, slot[p], next[p] + 1 + fr_u8() % 4,
			    (last[p] < 0 ? seq : last[p]) + 1 + fr_u8() % 40,
			    2);
			break;
		default:	/* as the writer leaves it */
			wal_ptab_advance(t, slot[p], next[p], last[p], 2);
			break;
		}
	if (wal_ptab_sync(t, -1, &err) != 0)
		fr_fail("wal_ptab_sync: %s", err.msg);
	wal_ptab_close(t);
	close(dfd);
	fr.ptab = 1;
}

/* Open the producer table after a recovery to next, as walmmapd does. */
static void
fr_ptab_check(int64_t next)
{
	struct wal_ptab_config pc = { FR_PSLOTS, FR_PJOURNAL };
	struct wal_ptab_recovery info;
	struct wal_ptab *t;
	struct wal_error err;
	const struct wal_ptab_jent *e;
	const struct wal_ptab_slot *s;
	int64_t newest, at;
	uint32_t i, j;
	int dfd;

	if ((dfd = open(fr.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		fr_fail("open %s: %s", fr.dir, strerror(errno));
	if (wal_ptab_open(dfd, fr.dir, next, &pc, &t, &info, &err) != 0) {
		struct stat st;

		/* walmmapd refuses to start: only for no regular file. */
		if (fstatat(dfd, WAL_PTAB_FILE, &st, AT_SYMLINK_NOFOLLOW) ==
		    0 && S_ISREG(st.st_mode))
			fr_fail("the producer table does not open after "
			    "recovery to %" PRId64 ": %s", next, err.msg);
		close(dfd);
		return;
	}
	if (getenv("FUZZ_RECOVER_TRACE") != NULL)
		dprintf(2, "  producer table: %" PRIu64 " producers, %" PRIu64
		    " entries; created %d, corrupt %d, erased %" PRIu64 ", cut "
		    "back %" PRIu64 ", advanced %" PRIu64 ", lost %" PRIu64
		    "\n", info.producers, info.entries, info.created,
		    info.corrupt, info.erased, info.cut_back, info.advanced,
		    info.lost);
	for (j = 0; j < t->jcap; j++) {
		e = &t->journal[j];
		if (wal_ptab_jent_valid(e) && e->seq >= next)
			fr_fail("producer %" PRIu64 "'s journal entry for its "
			    "seq %" PRIu64 " at log seq %" PRId64 ", past the "
			    "recovered log's end %" PRId64, e->producer_id,
			    e->pseq, e->seq, next);
	}
	for (i = 0; i < t->nslots; i++) {
		s = &t->slots[i];
		if (s->id == 0 || (s->flags & WAL_PTAB_F_LOST))
			continue;
		if (s->last_seq >= next)
			fr_fail("producer %" PRIu64 " at seq %" PRId64 " (next "
			    "producer seq %" PRIu64 "), past the recovered "
			    "log's end %" PRId64, s->id, s->last_seq,
			    s->next_pseq, next);
		if (s->next_pseq == 0 || (s->last_seq >= 0) !=
		    (s->next_pseq > 1))
			fr_fail("producer %" PRIu64 " at seq %" PRId64 " with "
			    "next producer seq %" PRIu64, s->id, s->last_seq,
			    s->next_pseq);
		newest = -1;
		for (j = 0; j < t->jcap; j++) {
			e = &t->journal[j];
			if (wal_ptab_jent_valid(e) && e->producer_id == s->id &&
			    e->seq > newest)
				newest = e->seq;
		}
		if (newest > s->last_seq)
			fr_fail("producer %" PRIu64 " at seq %" PRId64 ", behind "
			    "its journal's %" PRId64, s->id, s->last_seq,
			    newest);
		if (s->next_pseq > 1 && (at = wal_ptab_lookup(t, s->id,
		    s->next_pseq - 1, NULL)) >= 0 && at != s->last_seq)
			fr_fail("producer %" PRIu64 " seq %" PRIu64 " at log "
			    "seq %" PRId64 ", its journal says %" PRId64, s->id,
			    s->next_pseq - 1, s->last_seq, at);
	}
	wal_ptab_close(t);
	close(dfd);
}

/* A file beside the segments, under a name walmmapd gives such files. */
static void
fr_side(void)
{
	static const char *const names[] = {
		WAL_CHECKPOINT_NAME, WAL_SYNC_FAILED_NAME,
		"walmmapd.producers", "walmmapd.log-id", "walmmapd.forwarders",
		"wal_mmap_0000000001.wal.tmp.1234",
		"wal_mmap_0000000002.wal.discarded",
		"wal_mmap_0000000000.wal.discarded-4096",
		"walmmapd.checkpoint.tmp", "walmmapd.lock", "wal_mmap_1.wal",
		"wal_mmap_00000000001.wal", "README",
	};
	uint8_t buf[1024];
	uint8_t b = fr_u8();
	size_t n = fr_u8() * 4u;
	const char *name = names[b % (sizeof names / sizeof names[0])];

	if (strcmp(name, WAL_PTAB_FILE) == 0 && (n & 4)) {
		fr_ptab();
		return;
	}
	if (n > sizeof buf)
		n = sizeof buf;
	fr_bytes(buf, n);
	fr_write(name, buf, n);
	if (strcmp(name, WAL_CHECKPOINT_NAME) == 0)
		fr.checkpoint = 1;
}

/* A well-formed checkpoint: true in a clean log, any values else. */
static void
fr_checkpoint(void)
{
	struct wal_checkpoint ck;
	struct wal_error err;
	int dfd, failed = 0;
	int64_t last = -1;
	int i;

	memset(&ck, 0, sizeof ck);
	if (fr.clean) {
		/* Every segment but the last is complete and synced. */
		if (fr.nfiles < 2)
			return;
		ck.synced_below = fr.files[fr.nfiles - 1].id;
		for (i = 0; i < fr.nfiles - 1; i++)
			last += fr.files[i].nrec;
		ck.last_seq = last < 0 ? -1 : fr.first_seq + last;
		ck.next_id = ck.synced_below + 1 + fr_u8() % 3;
	} else {
		ck.synced_below = fr_u8() % 14;
		ck.last_seq = (int64_t)(int8_t)fr_u8();
		ck.next_id = fr_u8() % 16;
	}
	if ((dfd = open(fr.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		fr_fail("open %s: %s", fr.dir, strerror(errno));
	/* Invalid values are refused here, as a writer never writes them. */
	if (wal_checkpoint_write(dfd, fr.dir, &ck, &failed, &err) == 0)
		fr.checkpoint = 1;
	close(dfd);
}

/* Odd entries under a segment's name. */
static void
fr_odd(void)
{
	char path[512], name[64];
	uint8_t b = fr_u8();

	wal_seg_name(name, sizeof name, b % 12);
	snprintf(path, sizeof path, "%s/%s", fr.dir, name);
	switch ((b >> 4) % 3) {
	case 0:
		(void)mkdir(path, 0755);
		break;
	case 1:
		(void)symlink("/dev/null", path);
		break;
	default: {
		char to[64];

		wal_seg_name(to, sizeof to, (b >> 2) % 12);
		(void)symlink(to, path);
		break;
	}
	}
}

/* Build the directory from the input's program. */
static void
fr_build(void)
{
	char name[64];
	uint8_t mode = fr_u8(), op;
	int i;

	fr.clean = (mode & 3) == 0;
	fr.next_seq = fr.clean ? fr_u8() : (int64_t)(int8_t)fr_u8() + 64;
	while (fr.inoff < fr.inlen) {
		op = fr_u8();
		switch (op % 10) {
		case 0:
			fr_segment();
			break;
		case 1: case 2: case 3:
			fr_records();
			break;
		case 4:
			if (!fr.clean)
				fr.next_seq += (int8_t)fr_u8();
			break;
		case 5:
			if (!fr.clean)
				fr_damage();
			break;
		case 6:
			if (!fr.clean)
				fr_side();
			break;
		case 7:
			if (fr.napp < FR_APPENDS) {
				uint32_t s = fr_u8();

				fr.app_size[fr.napp++] = s < 240 ? s :
				    (s - 239) * 3500;
			}
			break;
		case 8:
			fr_checkpoint();
			break;
		default:
			if (!fr.clean)
				fr_odd();
			break;
		}
	}
	for (i = 0; i < fr.nfiles; i++) {
		wal_seg_name(name, sizeof name, fr.files[i].id);
		fr_write(name, fr.files[i].buf, fr.files[i].size);
	}
	qsort(fr.found, fr.nfound, sizeof fr.found[0], fr_key_cmp);
}

/* Open the directory; 0 with *ring, or -1 after a clear refusal. */
static int
fr_open(struct wal_ring **ring, struct wal_recovery *rec)
{
	struct wal_ring_config rc;
	struct wal_error err;
	int rv;

	memset(&rc, 0, sizeof rc);
	rc.dir = fr.dir;
	rc.segment_size = FR_SEG;
	rc.ring_segments = 2;
	rc.no_prefault = 1;
	memset(&err, 0, sizeof err);
	if ((rv = wal_ring_open(&rc, ring, rec, &err)) == 0)
		return (0);
	if (rv > 0 || err.code == 0 || err.msg[0] == '\0' ||
	    strnlen(err.msg, sizeof err.msg) == sizeof err.msg)
		fr_fail("wal_ring_open failed (%d) without a clear error: "
		    "code %d \"%.100s\"", rv, err.code, err.msg);
	if (getenv("FUZZ_RECOVER_TRACE") != NULL)
		dprintf(2, "  refused: %s\n", err.msg);
	return (-1);
}

/* Read the log back and check it. */
static void
fr_verify(int64_t next)
{
	struct wal_reader *rd;
	struct wal_record r;
	struct wal_error err;
	struct fr_key k;
	int64_t prev = -1, nread = 0, from;
	size_t i;
	int rc;

	if (wal_reader_open(fr.dir, &rd, &err) != 0)
		fr_fail("cannot read the log back: %s", err.msg);
	while ((rc = wal_reader_next(rd, &r, &err)) > 0) {
		if (prev >= 0 && r.seq != prev + 1)
			fr_fail("seq %" PRId64 " read after %" PRId64, r.seq,
			    prev);
		prev = r.seq;
		k = fr_key(&r);
		if (r.seq < next) {
			if (bsearch(&k, fr.found, fr.nfound, sizeof k,
			    fr_key_cmp) == NULL)
				fr_fail("seq %" PRId64 " (%u bytes) read back "
				    "is no record of the input", r.seq, r.size);
			nread++;
		} else if (fr.checkpoint && !fr.clean && bsearch(&k, fr.found,
		    fr.nfound, sizeof k, fr_key_cmp) != NULL) {
			/*
			 * From a segment below a checkpoint that recovery
			 * took as usable (the newest segment below it ends
			 * where it says) and so did not read: an older one
			 * of the input may hold seqs past it, which no
			 * writer makes. The reader stops at the break.
			 */
			continue;
		} else if (r.seq - next >= (int64_t)fr.napp ||
		    fr_key_cmp(&k, &fr.appended[r.seq - next]) != 0)
			fr_fail("seq %" PRId64 " read back is not the record "
			    "appended", r.seq);
	}
	if (rc < 0)
		fr_fail("reading the log back: %s", err.msg);
	if (!fr.checkpoint || fr.clean) {
		if (wal_reader_stopped(rd)->status != WAL_REC_END)
			fr_fail("the log read back stops after seq %" PRId64
			    ": %s", prev, wal_rec_strstatus(
			    wal_reader_stopped(rd)->status));
		if (prev != next + (int64_t)fr.napp - 1 &&
		    !(prev == -1 && fr.napp == 0))
			fr_fail("the log read back ends at %" PRId64 ", not %"
			    PRId64, prev, next + (int64_t)fr.napp - 1);
	}
	if (fr.clean && fr.first_seq >= 0 && nread != next - fr.first_seq)
		fr_fail("a clean log of seqs %" PRId64 "..%" PRId64 " reads "
		    "back %" PRId64 " of them", fr.first_seq, next - 1, nread);
	wal_reader_close(rd);

	/*
	 * The appended records, wherever the start of the log stands. Not
	 * with a checkpoint in the input: recovery does not read the
	 * segments below it (it trusts the claim), and a reader stops at
	 * garbage there before it reaches them.
	 */
	if (fr.napp == 0 || (fr.checkpoint && !fr.clean))
		return;
	if (wal_reader_open(fr.dir, &rd, &err) != 0)
		fr_fail("cannot read the log back: %s", err.msg);
	if (wal_reader_seek(rd, next, &err) != 0)
		fr_fail("cannot find seq %" PRId64 " appended: %s", next,
		    err.msg);
	for (i = 0, from = next; i < fr.napp; i++, from++) {
		if ((rc = wal_reader_next(rd, &r, &err)) <= 0)
			fr_fail("appended seq %" PRId64 " does not read back: "
			    "%s", from, rc < 0 ? err.msg : wal_rec_strstatus(
			    wal_reader_stopped(rd)->status));
		k = fr_key(&r);
		if (r.seq != from || fr_key_cmp(&k, &fr.appended[i]) != 0)
			fr_fail("appended seq %" PRId64 " reads back as another "
			    "record (seq %" PRId64 ")", from, r.seq);
	}
	if (wal_reader_next(rd, &r, &err) != 0)
		fr_fail("a record after the last appended");
	wal_reader_close(rd);
}

/* Remove the input's directory (one level of subdirectories). */
static void
fr_rmdir(const char *path)
{
	struct dirent *de;
	char sub[512];
	DIR *d;

	if ((d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == -1 && errno == EISDIR) {
			snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
			fr_rmdir(sub);
		}
	}
	closedir(d);
	rmdir(path);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	const char *tmp = getenv("TMPDIR");
	struct wal_ring *ring;
	struct wal_recovery rec;
	struct wal_error err;
	uint8_t payload[60000];
	int64_t next, seq;
	int i;

	memset(&fr, 0, sizeof fr);
	fr.in = data;
	fr.inlen = len;
	fr.first_seq = -1;
	snprintf(fr.dir, sizeof fr.dir, "%s/fuzz_recover.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(fr.dir) == NULL)
		fr_fail("mkdtemp: %s", strerror(errno));
	fr_build();

	if (getenv("FUZZ_RECOVER_TRACE") != NULL) {
		dprintf(2, "%s: %s log, %d segment file%s, seqs %" PRId64
		    "..%" PRId64 ", checkpoint %s, producer table %s, %zu to "
		    "append\n", fr.dir, fr.clean ? "clean" : "damaged",
		    fr.nfiles, fr.nfiles == 1 ? "" : "s", fr.first_seq,
		    fr.next_seq - 1, fr.checkpoint ? "yes" : "no", fr.ptab ?
		    "yes" : "no", fr.napp);
		for (i = 0; i < fr.nfiles; i++)
			dprintf(2, "  segment %" PRIu64 ": %zu bytes, %d "
			    "records\n", fr.files[i].id, fr.files[i].size,
			    fr.files[i].nrec);
	}
	if (fr_open(&ring, &rec) != 0)
		goto out;
	next = rec.next_seq;
	fr_ptab_check(next);
	if (getenv("FUZZ_RECOVER_TRACE") != NULL)
		dprintf(2, "  recovered: next seq %" PRId64 ", checkpoint %d, "
		    "discarded %" PRIu64 ", torn %" PRIu64 ", removed %" PRIu64
		    "\n", next, rec.checkpoint, rec.discarded, rec.torn_bytes,
		    rec.removed);
	if (fr.clean && fr.first_seq >= 0 && next != fr.next_seq)
		fr_fail("a clean log ending at seq %" PRId64 " recovered to "
		    "next seq %" PRId64, fr.next_seq - 1, next);
	for (i = 0; i < (int)fr.napp; i++) {
		struct wal_record r;

		memset(payload, 0x30 + i, fr.app_size[i]);
		if (wal_ring_append(ring, payload, fr.app_size[i], 1000 + i,
		    &seq, &err) != 0)
			fr_fail("append of %u bytes after recovery: %s",
			    fr.app_size[i], err.msg);
		if (seq != next + i)
			fr_fail("append %d got seq %" PRId64 ", not %" PRId64,
			    i, seq, next + i);
		memset(&r, 0, sizeof r);
		r.seq = seq;
		r.size = fr.app_size[i];
		r.payload = payload;
		r.timestamp_ns = 1000 + i;
		fr.appended[i] = fr_key(&r);
	}
	if (wal_ring_shutdown(ring, &err) != 0)
		fr_fail("shutdown: %s", err.msg);
	wal_ring_close(ring);
	fr_verify(next);

	/* A clean close leaves a directory that opens where it stopped. */
	if (fr_open(&ring, &rec) != 0)
		fr_fail("the directory does not open again after a clean "
		    "close");
	if (rec.next_seq != next + (int64_t)fr.napp)
		fr_fail("opened again at next seq %" PRId64 ", not %" PRId64,
		    rec.next_seq, next + (int64_t)fr.napp);
	fr_ptab_check(rec.next_seq);
	wal_ring_close(ring);
out:
	for (i = 0; i < fr.nfiles; i++)
		free(fr.files[i].buf);
	fr_rmdir(fr.dir);
	return (0);
}
