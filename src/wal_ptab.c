/*
 * walmmapd - the producer table (see wal_ptab.h for the layout and the
 * rules that keep it consistent with the log).
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wal_crc.h"
#include "wal_ptab.h"

_Static_assert(sizeof(struct wal_ptab_hdr) <= WAL_PTAB_HDR_SIZE,
    "ptab header");
_Static_assert(sizeof(struct wal_ptab_slot) == WAL_PTAB_SLOT_SIZE,
    "ptab slot");
_Static_assert(sizeof(struct wal_ptab_jent) == WAL_PTAB_JENT_SIZE,
    "ptab journal entry");

#define HCRC_LEN	offsetof(struct wal_ptab_hdr, hcrc)
#define SCRC_LEN	offsetof(struct wal_ptab_slot, scrc)

static size_t	ptab_jofs(uint32_t nslots);
static size_t	ptab_size(uint32_t nslots, uint32_t jcap);
static int	ptab_check_hdr(const struct wal_ptab_hdr *, size_t fsize,
		    char *why, size_t whylen);
static int	ptab_create(int dirfd, const char *dir, uint32_t nslots,
		    uint32_t jcap, uint64_t first_id, struct wal_error *);
static uint64_t	ptab_id_base(void);
static int	ptab_map(struct wal_ptab *, int fd, int readonly,
		    struct wal_error *, const char *dir);
static void	ptab_recover(struct wal_ptab *, int64_t next_seq,
		    struct wal_ptab_recovery *);
static uint32_t	ptab_slot_crc(const struct wal_ptab_slot *);

/* Open, create or replace, and reconcile the table with the log. */
int
wal_ptab_open(int dirfd, const char *dir, int64_t next_seq,
    const struct wal_ptab_config *cfg, struct wal_ptab **tp,
    struct wal_ptab_recovery *info, struct wal_error *err)
{
	struct wal_ptab *t;
	struct wal_ptab_hdr h;
	struct stat st;
	char why[sizeof info->why] = "";
	uint32_t nslots, jcap;
	int fd, rc;

	memset(info, 0, sizeof *info);
	nslots = cfg != NULL && cfg->nslots ? cfg->nslots :
	    WAL_PTAB_SLOTS_DEFAULT;
	jcap = cfg != NULL && cfg->jcap ? cfg->jcap : WAL_PTAB_JOURNAL_DEFAULT;
	if (nslots > WAL_PTAB_SLOTS_MAX || jcap > WAL_PTAB_JOURNAL_MAX ||
	    jcap < 2 || (jcap & (jcap - 1)) != 0)
		return (wal_seterr(err, EINVAL, "producer table geometry "
		    "%u slots, %u journal entries: out of range", nslots,
		    jcap));
again:
	fd = openat(dirfd, WAL_PTAB_FILE, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1 && errno == ENOENT) {
		/* Beside a log, a table may have been there: new ids. */
		if ((rc = ptab_create(dirfd, dir, nslots, jcap, next_seq > 0 ?
		    ptab_id_base() : 1, err)) != 0)
			return (rc);
		info->created = 1;
		goto again;
	}
	if (fd == -1)
		return (wal_seterrno(err, errno, "cannot open %s/%s", dir,
		    WAL_PTAB_FILE));
	if (fstat(fd, &st) == -1) {
		rc = wal_seterrno(err, errno, "cannot stat %s/%s", dir,
		    WAL_PTAB_FILE);
		close(fd);
		return (rc);
	}
	memset(&h, 0, sizeof h);
	info->why[0] = '\0';	/* (again after a replacement) */
	if (!S_ISREG(st.st_mode))
		snprintf(info->why, sizeof info->why, "not a regular file");
	else if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
		snprintf(info->why, sizeof info->why, "shorter than its "
		    "header");
	else
		(void)ptab_check_hdr(&h, (size_t)st.st_size, info->why,
		    sizeof info->why);
	if (info->why[0] != '\0') {
		/* Keep it for a post-mortem; the log does not need it. */
		close(fd);
		snprintf(info->aside, sizeof info->aside, "%s.corrupt-%lld",
		    WAL_PTAB_FILE, (long long)time(NULL));
		if (renameat(dirfd, WAL_PTAB_FILE, dirfd, info->aside) == -1)
			return (wal_seterrno(err, errno, "cannot move the "
			    "unusable %s/%s aside", dir, WAL_PTAB_FILE));
		info->corrupt = 1;
		if ((rc = ptab_create(dirfd, dir, nslots, jcap,
		    ptab_id_base(), err)) != 0)
			return (rc);
		snprintf(why, sizeof why, "%s", info->why);
		goto again;
	}
	if (info->corrupt)
		snprintf(info->why, sizeof info->why, "%s", why);
	if ((t = calloc(1, sizeof *t)) == NULL) {
		close(fd);
		return (wal_seterr(err, ENOMEM, "out of memory"));
	}
	if ((rc = ptab_map(t, fd, 0, err, dir)) != 0) {
		free(t);
		return (rc);
	}
	ptab_recover(t, next_seq, info);
	/* Recovery wrote it: the first sync writes it back. */
	atomic_init(&t->changes, 1);
	if ((rc = wal_ptab_sync(t, next_seq - 1, err)) != 0) {
		wal_ptab_close(t);
		return (rc);
	}
	*tp = t;
	return (0);
}

/* Map a table read-only (no reconciliation). */
int
wal_ptab_open_ro(int dirfd, const char *dir, struct wal_ptab **tp,
    struct wal_error *err)
{
	struct wal_ptab *t;
	struct wal_ptab_hdr h;
	struct stat st;
	char why[256] = "";
	int fd, rc;

	fd = openat(dirfd, WAL_PTAB_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1)
		return (wal_seterrno(err, errno, "cannot open %s/%s", dir,
		    WAL_PTAB_FILE));
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
	    ptab_check_hdr(&h, (size_t)st.st_size, why, sizeof why) != 0) {
		close(fd);
		return (wal_seterr(err, EINVAL, "%s/%s is not a producer "
		    "table%s%s", dir, WAL_PTAB_FILE, why[0] ? ": " : "", why));
	}
	if ((t = calloc(1, sizeof *t)) == NULL) {
		close(fd);
		return (wal_seterr(err, ENOMEM, "out of memory"));
	}
	if ((rc = ptab_map(t, fd, 1, err, dir)) != 0) {
		free(t);
		return (rc);
	}
	*tp = t;
	return (0);
}

void
wal_ptab_close(struct wal_ptab *t)
{
	if (t == NULL)
		return;
	if (t->map != NULL)
		munmap(t->map, t->maplen);
	if (t->fd != -1)
		close(t->fd);
	free(t);
}

/* The slot of producer id, or -1. */
int
wal_ptab_find(const struct wal_ptab *t, uint64_t id)
{
	uint32_t i;

	if (id == 0)
		return (-1);
	for (i = 0; i < t->nslots; i++)
		if (t->slots[i].id == id)
			return ((int)i);
	return (-1);
}

/* A new producer: a free slot, else the longest idle unused one. */
int
wal_ptab_create(struct wal_ptab *t, uint32_t uid, uint32_t gid,
    int64_t now_ns, int64_t idle_before_ns, int (*busy)(void *, int),
    void *arg)
{
	struct wal_ptab_slot *s;
	int64_t oldest = 0;
	uint32_t i;
	int pick = -1;

	for (i = 0; i < t->nslots; i++)
		if (t->slots[i].id == 0) {
			pick = (int)i;
			break;
		}
	if (pick < 0) {
		for (i = 0; i < t->nslots; i++) {
			s = &t->slots[i];
			if (s->active_ns >= idle_before_ns ||
			    (busy != NULL && busy(arg, (int)i)))
				continue;
			if (pick < 0 || s->active_ns < oldest) {
				pick = (int)i;
				oldest = s->active_ns;
			}
		}
	}
	if (pick < 0)
		return (-ENOSPC);
	s = &t->slots[pick];
	memset(s, 0, sizeof *s);
	s->id = t->next_id++;
	t->hdr->next_id = t->next_id;
	s->uid = uid;
	s->gid = gid;
	s->created_ns = now_ns;
	s->next_pseq = 1;
	s->last_seq = -1;
	s->active_ns = now_ns;
	atomic_fetch_add_explicit(&t->changes, 1, memory_order_release);
	return (pick);
}

/* Who connected as this producer; synced before the reply. */
int
wal_ptab_claim(struct wal_ptab *t, int slot, uint32_t pid, const char *comm,
    const char *exe, int64_t now_ns, struct wal_error *err)
{
	struct wal_ptab_slot *s = &t->slots[slot];
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a;

	s->pid = pid;
	s->connect_ns = now_ns;
	memset(s->comm, 0, sizeof s->comm);
	memset(s->exe, 0, sizeof s->exe);
	strncpy(s->comm, comm, sizeof s->comm - 1);
	strncpy(s->exe, exe, sizeof s->exe - 1);
	s->active_ns = now_ns;
	s->scrc = ptab_slot_crc(s);
	atomic_fetch_add_explicit(&t->changes, 1, memory_order_release);
	a = (uintptr_t)s & ~(pg - 1);
	if (msync((void *)a, (uintptr_t)(s + 1) - a, MS_SYNC) == -1 ||
	    msync(t->map, WAL_PTAB_HDR_SIZE, MS_SYNC) == -1)
		return (wal_seterrno(err, errno, "cannot sync the producer "
		    "table"));
	return (0);
}

/* A producer's position after a frame. */
void
wal_ptab_advance(struct wal_ptab *t, int slot, uint64_t next_pseq,
    int64_t last_seq, int64_t now_ns)
{
	struct wal_ptab_slot *s = &t->slots[slot];

	s->next_pseq = next_pseq;
	s->last_seq = last_seq;
	s->active_ns = now_ns;
	atomic_fetch_add_explicit(&t->changes, 1, memory_order_release);
}

/* The seq of (id, pseq) from the journal, newest first; -1 if gone. */
int64_t
wal_ptab_lookup(const struct wal_ptab *t, uint64_t id, uint64_t pseq,
    uint32_t *flags)
{
	const struct wal_ptab_jent *e;
	int64_t prev = INT64_MAX;
	uint64_t n, pos;

	for (n = 0; n < t->jcap && n < t->jhead; n++) {
		pos = (t->jhead - 1 - n) & (t->jcap - 1);
		e = &t->journal[pos];
		if (!wal_ptab_jent_valid(e) || e->seq >= prev)
			break;		/* wrapped into older or erased ones */
		prev = e->seq;
		if (e->producer_id != id)
			continue;
		if (e->pseq == pseq) {
			if (flags != NULL)
				*flags = e->flags;
			return (e->seq);
		}
		if (e->pseq < pseq)
			break;		/* a producer's seqs only grow */
	}
	return (-1);
}

/*
 * The log seq of producer id's record pseq and, in *run, how many of its
 * records from pseq on (at most max) follow it at consecutive seqs; -1
 * (*run 0) when the journal no longer holds pseq. Entries are in log
 * order, so the run ends at the first entry at or past the seq its next
 * record would need that is not that record.
 */
int64_t
wal_ptab_lookup_run(const struct wal_ptab *t, uint64_t id, uint64_t pseq,
    uint32_t max, uint32_t *run)
{
	const struct wal_ptab_jent *e;
	int64_t prev = INT64_MAX, first = -1;
	uint64_t n, pos = 0, k;

	*run = 0;
	for (n = 0; n < t->jcap && n < t->jhead; n++) {
		pos = t->jhead - 1 - n;
		e = &t->journal[pos & (t->jcap - 1)];
		if (!wal_ptab_jent_valid(e) || e->seq >= prev)
			break;		/* wrapped into older or erased ones */
		prev = e->seq;
		if (e->producer_id != id)
			continue;
		if (e->pseq == pseq) {
			first = e->seq;
			break;
		}
		if (e->pseq < pseq)
			break;		/* a producer's seqs only grow */
	}
	if (first < 0)
		return (-1);
	for (k = 1, pos++; k < max && pos < t->jhead; pos++) {
		e = &t->journal[pos & (t->jcap - 1)];
		if (!wal_ptab_jent_valid(e))
			break;
		if (e->producer_id == id && e->pseq == pseq + k &&
		    e->seq == first + (int64_t)k)
			k++;
		else if (e->seq >= first + (int64_t)k)
			break;
	}
	*run = (uint32_t)k;
	return (first);
}

/* Sync the whole mapping (msync writes back the dirty pages only). */
int
wal_ptab_sync(struct wal_ptab *t, int64_t covered, struct wal_error *err)
{
	uint64_t changes;

	if (t->readonly)
		return (0);
	/*
	 * A note is counted (a release: its entry's stores come first)
	 * before its record is published, and the caller loaded the written
	 * position it covers before this acquire load: so an entry of a
	 * record this sync covers is counted here, and visible to the msync.
	 */
	changes = atomic_load_explicit(&t->changes, memory_order_acquire);
	if (changes == t->synced_changes)
		return (0);
	t->hdr->synced_seq = covered;
	if (msync(t->map, t->maplen, MS_SYNC) == -1)
		return (wal_seterrno(err, errno, "cannot sync the producer "
		    "table %s", WAL_PTAB_FILE));
	t->synced_changes = changes;
	return (0);
}

int
wal_ptab_jent_valid(const struct wal_ptab_jent *e)
{
	return (e->seq >= 0 && e->producer_id != 0 &&
	    e->crc == wal_ptab_jent_crc(e));
}

static uint32_t
ptab_slot_crc(const struct wal_ptab_slot *s)
{
	return (wal_crc32(0, s, SCRC_LEN));
}

static size_t
ptab_jofs(uint32_t nslots)
{
	size_t o = WAL_PTAB_HDR_SIZE + (size_t)nslots * WAL_PTAB_SLOT_SIZE;

	return ((o + 4095) & ~(size_t)4095);
}

static size_t
ptab_size(uint32_t nslots, uint32_t jcap)
{
	return (ptab_jofs(nslots) + (size_t)jcap * WAL_PTAB_JENT_SIZE);
}

/* Is this a table header of ours, for a file of fsize bytes? */
static int
ptab_check_hdr(const struct wal_ptab_hdr *h, size_t fsize, char *why,
    size_t whylen)
{
	if (memcmp(h->magic, WAL_PTAB_MAGIC, sizeof h->magic) != 0)
		snprintf(why, whylen, "bad magic");
	else if (h->hcrc != wal_crc32(0, h, HCRC_LEN))
		snprintf(why, whylen, "header CRC mismatch");
	else if (h->version != WAL_PTAB_VERSION)
		snprintf(why, whylen, "version %u, this walmmapd reads %u",
		    h->version, WAL_PTAB_VERSION);
	else if (h->hdr_size != WAL_PTAB_HDR_SIZE ||
	    h->slot_size != WAL_PTAB_SLOT_SIZE ||
	    h->jent_size != WAL_PTAB_JENT_SIZE || h->nslots == 0 ||
	    h->nslots > WAL_PTAB_SLOTS_MAX || h->jcap < 2 ||
	    h->jcap > WAL_PTAB_JOURNAL_MAX || (h->jcap & (h->jcap - 1)) != 0)
		snprintf(why, whylen, "bad geometry");
	else if (fsize != ptab_size(h->nslots, h->jcap))
		snprintf(why, whylen, "%zu bytes, its header says %zu", fsize,
		    ptab_size(h->nslots, h->jcap));
	else
		return (0);
	return (-1);
}

/*
 * The first id of a table that replaces one that is lost: the time in
 * microseconds, above every id the lost table gave out (one per PRODUCER,
 * each a synced write: far fewer than one a microsecond since it began at
 * 1 or at such a time) unless the clock went back. A producer of the lost
 * table that resumes its id is then refused as unknown, instead of
 * becoming a new producer that got the same id, whose records its resent
 * ones would be taken for.
 */
static uint64_t
ptab_id_base(void)
{
	struct timespec ts;
	uint64_t us;

	if (clock_gettime(CLOCK_REALTIME, &ts) == -1)
		return (1);
	us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	return (us > 0 ? us : 1);
}

/* Write a new table through a temporary name, then rename it in place. */
static int
ptab_create(int dirfd, const char *dir, uint32_t nslots, uint32_t jcap,
    uint64_t first_id, struct wal_error *err)
{
	static const char tmp[] = ".tmp." WAL_PTAB_FILE;
	struct wal_ptab_hdr h;
	int fd, rc;

	(void)unlinkat(dirfd, tmp, 0);
	fd = openat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd == -1)
		return (wal_seterrno(err, errno, "cannot create %s/%s", dir,
		    tmp));
	memset(&h, 0, sizeof h);
	memcpy(h.magic, WAL_PTAB_MAGIC, sizeof h.magic);
	h.version = WAL_PTAB_VERSION;
	h.hdr_size = WAL_PTAB_HDR_SIZE;
	h.nslots = nslots;
	h.slot_size = WAL_PTAB_SLOT_SIZE;
	h.jcap = jcap;
	h.jent_size = WAL_PTAB_JENT_SIZE;
	h.hcrc = wal_crc32(0, &h, HCRC_LEN);
	h.next_id = first_id;
	h.synced_seq = -1;
	/*
	 * Allocated now, not sparse: a store into the mapping must never
	 * need a block a full disk cannot give (that would be SIGBUS).
	 */
	if ((rc = posix_fallocate(fd, 0, (off_t)ptab_size(nslots, jcap))) !=
	    0) {
		rc = wal_seterrno(err, rc, "cannot allocate %zu bytes for %s/%s",
		    ptab_size(nslots, jcap), dir, tmp);
		close(fd);
		(void)unlinkat(dirfd, tmp, 0);
		return (rc);
	}
	if (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
	    fsync(fd) == -1) {
		rc = wal_seterrno(err, errno, "cannot write %s/%s", dir, tmp);
		close(fd);
		(void)unlinkat(dirfd, tmp, 0);
		return (rc);
	}
	close(fd);
	if (renameat(dirfd, tmp, dirfd, WAL_PTAB_FILE) == -1) {
		rc = wal_seterrno(err, errno, "cannot rename %s/%s to %s", dir,
		    tmp, WAL_PTAB_FILE);
		(void)unlinkat(dirfd, tmp, 0);
		return (rc);
	}
	if (fsync(dirfd) == -1)
		return (wal_seterrno(err, errno, "cannot sync directory %s",
		    dir));
	return (0);
}

static int
ptab_map(struct wal_ptab *t, int fd, int readonly, struct wal_error *err,
    const char *dir)
{
	struct wal_ptab_hdr h;

	if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
		close(fd);
		return (wal_seterrno(err, errno ? errno : EIO, "cannot read "
		    "%s/%s", dir, WAL_PTAB_FILE));
	}
	t->fd = fd;
	t->readonly = readonly;
	t->maplen = ptab_size(h.nslots, h.jcap);
	/*
	 * The writer's mapping is populated now, so that journal stores do
	 * not fault a page in every 128 records.
	 */
	t->map = mmap(NULL, t->maplen, readonly ? PROT_READ :
	    PROT_READ | PROT_WRITE, MAP_SHARED | (readonly ? 0 :
	    MAP_POPULATE), fd, 0);
	if (t->map == MAP_FAILED) {
		t->map = NULL;
		close(fd);
		return (wal_seterrno(err, errno, "cannot map %s/%s", dir,
		    WAL_PTAB_FILE));
	}
	t->hdr = (struct wal_ptab_hdr *)(void *)t->map;
	t->slots = (struct wal_ptab_slot *)(void *)(t->map +
	    WAL_PTAB_HDR_SIZE);
	t->journal = (struct wal_ptab_jent *)(void *)(t->map +
	    ptab_jofs(h.nslots));
	t->nslots = h.nslots;
	t->jcap = h.jcap;
	t->next_id = h.next_id ? h.next_id : 1;
	/* Readers: the newest entry is the head's predecessor. */
	if (readonly) {
		int64_t best = -1;
		uint32_t i;

		for (i = 0; i < t->jcap; i++)
			if (wal_ptab_jent_valid(&t->journal[i]) &&
			    t->journal[i].seq > best) {
				best = t->journal[i].seq;
				t->jhead = (uint64_t)i + 1;
			}
		if (t->jhead == 0)
			t->jhead = 0;
		else
			t->jhead += t->jcap;	/* so lookups may wrap */
	}
	return (0);
}

/*
 * Reconcile with the log: erase journal entries at or after next_seq
 * (the log is the truth), place the head after the newest entry left,
 * and set each producer's position from its slot and its newest entry.
 */
static void
ptab_recover(struct wal_ptab *t, int64_t next_seq,
    struct wal_ptab_recovery *info)
{
	struct wal_ptab_jent *e;
	struct wal_ptab_slot *s;
	uint32_t i, hsize, h, *hash;
	int64_t best = -1, *jseq;
	uint64_t *jpseq, maxid = 0;

	/* id -> slot, open addressing (slots are few). */
	for (hsize = 16; hsize < t->nslots * 2; hsize <<= 1)
		;
	hash = calloc(hsize, sizeof *hash);
	jseq = malloc(t->nslots * sizeof *jseq);
	jpseq = calloc(t->nslots, sizeof *jpseq);
	for (i = 0; i < t->nslots; i++) {
		s = &t->slots[i];
		if (jseq != NULL)
			jseq[i] = -1;
		if (s->id == 0)
			continue;
		if (s->scrc != ptab_slot_crc(s)) {
			/* Identity torn: nobody can prove it is theirs. */
			memset(s, 0, sizeof *s);
			info->lost++;
			continue;
		}
		if (s->id > maxid)
			maxid = s->id;
		if (hash == NULL)
			continue;
		for (h = (uint32_t)(s->id * 0x9e3779b97f4a7c15ull >> 40) &
		    (hsize - 1); hash[h] != 0; h = (h + 1) & (hsize - 1))
			;
		hash[h] = i + 1;
	}
	t->jhead = 0;
	for (i = 0; i < t->jcap; i++) {
		e = &t->journal[i];
		if (!wal_ptab_jent_valid(e) || e->seq >= next_seq) {
			if (e->seq != 0 || e->producer_id != 0 ||
			    e->pseq != 0 || e->crc != 0) {
				if (wal_ptab_jent_valid(e))
					info->erased++;
				memset(e, 0, sizeof *e);
			}
			continue;
		}
		info->entries++;
		if (e->producer_id > maxid)
			maxid = e->producer_id;
		if (e->seq > best) {
			best = e->seq;
			t->jhead = (uint64_t)i + 1;
		}
		if (hash == NULL || jseq == NULL || jpseq == NULL)
			continue;
		for (h = (uint32_t)(e->producer_id * 0x9e3779b97f4a7c15ull >>
		    40) & (hsize - 1); hash[h] != 0; h = (h + 1) & (hsize - 1))
			if (t->slots[hash[h] - 1].id == e->producer_id) {
				if (e->seq > jseq[hash[h] - 1]) {
					jseq[hash[h] - 1] = e->seq;
					jpseq[hash[h] - 1] = e->pseq;
				}
				break;
			}
	}
	if (t->jhead != 0)
		t->jhead += t->jcap;	/* lookups may look across the wrap */
	for (i = 0; i < t->nslots; i++) {
		s = &t->slots[i];
		if (s->id == 0)
			continue;
		info->producers++;
		if (jseq == NULL || jpseq == NULL)
			s->flags |= WAL_PTAB_F_LOST;
		else if (s->last_seq >= next_seq) {
			/* Ahead of the log: back to its newest record. */
			info->cut_back++;
			if (jseq[i] >= 0) {
				s->next_pseq = jpseq[i] + 1;
				s->last_seq = jseq[i];
			} else {
				s->flags |= WAL_PTAB_F_LOST;
				info->lost++;
			}
		} else if (jseq[i] > s->last_seq) {
			/* The journal got further than the slot. */
			info->advanced++;
			s->next_pseq = jpseq[i] + 1;
			s->last_seq = jseq[i];
		}
		if (s->next_pseq == 0)
			s->next_pseq = 1;
	}
	if (maxid + 1 > t->next_id)
		t->next_id = maxid + 1;
	t->hdr->next_id = t->next_id;
	free(hash);
	free(jseq);
	free(jpseq);
}
