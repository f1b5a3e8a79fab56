/*
 * libwalmmap - provenance: which producer wrote a record, read from the
 * producer table walmmapd keeps beside the segments (walmmapd.producers,
 * see walmmap-protocol(7)).
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wal_ptab.h"
#include "walmmap.h"

struct walmmap_prov {
	struct wal_ptab	*t;
	uint32_t	*order;		/* valid journal entries by seq */
	size_t		 n;
};

static const struct wal_ptab *sort_t;

static int
by_seq(const void *a, const void *b)
{
	int64_t x = sort_t->journal[*(const uint32_t *)a].seq;
	int64_t y = sort_t->journal[*(const uint32_t *)b].seq;

	return (x < y ? -1 : x > y);
}

int
walmmap_prov_open(struct walmmap_prov **pp, const char *path, char *err,
    size_t errlen)
{
	struct walmmap_prov *p;
	struct wal_error e;
	struct stat st;
	char buf[PATH_MAX], *dir;
	uint32_t i;
	int dfd, rc;

	*pp = NULL;
	if (stat(path, &st) == -1) {
		snprintf(err, errlen, "cannot stat %s: %s", path,
		    strerror(errno));
		return (-WALMMAP_EIO);
	}
	snprintf(buf, sizeof buf, "%s", path);
	dir = S_ISDIR(st.st_mode) ? buf : dirname(buf);
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "cannot open %s: %s", dir,
		    strerror(errno));
		return (-WALMMAP_EIO);
	}
	if ((p = calloc(1, sizeof *p)) == NULL) {
		close(dfd);
		snprintf(err, errlen, "out of memory");
		return (-WALMMAP_ENOMEM);
	}
	rc = wal_ptab_open_ro(dfd, dir, &p->t, &e);
	close(dfd);
	if (rc != 0) {
		free(p);
		snprintf(err, errlen, "%s", e.msg);
		return (rc == -ENOENT ? -WALMMAP_ENOTSUP : -WALMMAP_ECORRUPT);
	}
	if ((p->order = calloc(p->t->jcap, sizeof *p->order)) == NULL) {
		walmmap_prov_close(p);
		snprintf(err, errlen, "out of memory");
		return (-WALMMAP_ENOMEM);
	}
	for (i = 0; i < p->t->jcap; i++)
		if (wal_ptab_jent_valid(&p->t->journal[i]))
			p->order[p->n++] = i;
	sort_t = p->t;
	qsort(p->order, p->n, sizeof *p->order, by_seq);
	sort_t = NULL;
	*pp = p;
	return (0);
}

int
walmmap_prov_lookup(const struct walmmap_prov *p, int64_t seq,
    struct walmmap_provenance *out)
{
	const struct wal_ptab_jent *e;
	const struct wal_ptab_slot *s;
	size_t lo = 0, hi = p->n, mid;
	int slot;

	memset(out, 0, sizeof *out);
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (p->t->journal[p->order[mid]].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == p->n || p->t->journal[p->order[lo]].seq != seq)
		return (0);
	e = &p->t->journal[p->order[lo]];
	out->producer_id = e->producer_id;
	out->pseq = e->pseq;
	out->uid = out->gid = out->pid = UINT32_MAX;
	if ((slot = wal_ptab_find(p->t, e->producer_id)) >= 0) {
		s = &p->t->slots[slot];
		out->known = 1;
		out->uid = s->uid;
		out->gid = s->gid;
		out->pid = s->pid;
		out->connect_ns = s->connect_ns;
		memcpy(out->comm, s->comm, sizeof s->comm);
		out->comm[sizeof out->comm - 1] = '\0';
		memcpy(out->exe, s->exe, sizeof s->exe);
		out->exe[sizeof out->exe - 1] = '\0';
	}
	return (1);
}

void
walmmap_prov_close(struct walmmap_prov *p)
{
	if (p == NULL)
		return;
	wal_ptab_close(p->t);
	free(p->order);
	free(p);
}
