/*
 * walmmapd - forwarders and the log's identity.
 *
 * The log id: 16 random bytes created once with the data directory, kept
 * in walmmapd.log-id beside the segments and never rewritten, so that the
 * messages two hosts ship into one stream never collide (walmmap-forward
 * builds each message id from it).
 *
 * Forwarders: a walmmap-forward process registers under a name
 * (FWD_REGISTER) and reports what its destination acknowledged
 * (FWD_POSITION). The daemon keeps each name's shipped seq in
 * walmmapd.forwarders (rewritten atomically, at most once a second), so
 * the hold survives daemon restarts, and retention keeps the segments a
 * forwarder has not shipped up to forward_hold_max_bytes /
 * forward_hold_max_age. Past the cap retention wins and the loss is
 * reported loudly: the daemon log, STATUS, and WAL_PERR_GAP to the
 * forwarder; or, with forward_hold_block, retention keeps them and
 * producers wait (their connections are not read, their rings not
 * drained) until the forwarder is back within the cap.
 */
#include "config.h"

#include <sys/random.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "forward.h"
#include "log.h"
#include "server.h"
#include "wal_dir.h"
#include "wal_format.h"
#include "wal_ring.h"
#include "wal_segment.h"

struct fwd {
	char		 name[WAL_FWD_NAME_MAX];
	int64_t		 shipped_seq;	/* -1: none */
	int		 positioned;	/* shipped_seq known: it holds */
	int64_t		 shipped_ts_ns;
	int64_t		 gap_first;	/* last gap, -1: none */
	int64_t		 gap_last;
	uint64_t	 gap_records;
	struct conn	*conn;		/* registered on it, or NULL */
	int		 connected;
	char		 server[96];
	char		 error[160];
};

struct fwd_table {
	uint8_t		 log_id[16];
	struct fwd	 v[WAL_STATUS_FWD_MAX];
	size_t		 n;
	int		 dirty;		/* positions to save */
	int		 blocking;	/* producers wait (forward_hold_block) */
	uint64_t	 gap_records;	/* all forwarders */
};

static int	fwd_load_id(struct server *, char *, size_t);
static void	fwd_load_state(struct server *);
static int	fwd_save_state(struct server *);
static int	fwd_write_file(int dirfd, const char *name, const char *data,
		    size_t len, int exclusive);
static struct fwd *fwd_find(struct fwd_table *, const char *name);
static int64_t	fwd_first_seq(struct server *);
static int64_t	fwd_seg_first(int dirfd, uint64_t id);
static void	fwd_gap(struct server *, struct fwd *, int64_t first_kept);

/* 1 while producers wait for a forwarder (forward_hold_block). */
int
fwd_blocking(const struct server *srv)
{
	return (srv->fwd != NULL && srv->fwd->blocking);
}

/* Must c wait before its next frame is read? Producers only. */
int
fwd_holds_conn(const struct conn *c)
{
	return (fwd_blocking(c->srv) && c->fwd == NULL && c->sub == NULL &&
	    c->records > 0);
}

/* Load or create the log id and load the positions. */
int
fwd_open(struct server *srv, char *why, size_t whylen)
{
	if ((srv->fwd = calloc(1, sizeof *srv->fwd)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return (-1);
	}
	if (fwd_load_id(srv, why, whylen) != 0)
		return (-1);
	fwd_load_state(srv);
	return (0);
}

/* Save what changed, free everything. */
void
fwd_close(struct server *srv)
{
	if (srv->fwd == NULL)
		return;
	if (srv->fwd->dirty)
		(void)fwd_save_state(srv);
	free(srv->fwd);
	srv->fwd = NULL;
}

/* Save the positions at most once a second. */
void
fwd_tick(struct server *srv)
{
	if (srv->fwd != NULL && srv->fwd->dirty)
		(void)fwd_save_state(srv);
}

/* The log id. */
const uint8_t *
fwd_log_id(const struct server *srv)
{
	return (srv->fwd->log_id);
}

/*
 * Read walmmapd.log-id, or create it: a directory of an earlier version
 * (segments but no id) gets one now; it never changes afterwards. It is
 * created under a temporary name and linked into place, so it appears
 * whole or not at all and an existing one is never replaced.
 */
static int
fwd_load_id(struct server *srv, char *why, size_t whylen)
{
	struct fwd_table *t = srv->fwd;
	char text[64], tmp[64];
	ssize_t n;
	size_t i;
	unsigned v;
	int fd;

	fd = openat(srv->data_dirfd, FWD_LOG_ID_FILE, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd == -1 && errno != ENOENT) {
		snprintf(why, whylen, "cannot open %s/%s: %s", srv->cfg.dir,
		    FWD_LOG_ID_FILE, strerror(errno));
		return (-1);
	}
	if (fd == -1) {
		if (getrandom(t->log_id, sizeof t->log_id, 0) !=
		    (ssize_t)sizeof t->log_id) {
			snprintf(why, whylen, "cannot make a log id: "
			    "getrandom: %s", strerror(errno));
			return (-1);
		}
		for (i = 0; i < 16; i++)
			snprintf(text + 2 * i, 3, "%02x", t->log_id[i]);
		text[32] = '\n';
		snprintf(tmp, sizeof tmp, "%s.%ld.tmp", FWD_LOG_ID_FILE,
		    (long)getpid());
		(void)unlinkat(srv->data_dirfd, tmp, 0);
		if (fwd_write_file(srv->data_dirfd, tmp, text, 33, 1) != 0 ||
		    linkat(srv->data_dirfd, tmp, srv->data_dirfd,
		    FWD_LOG_ID_FILE, 0) != 0) {
			snprintf(why, whylen, "cannot create %s/%s: %s",
			    srv->cfg.dir, FWD_LOG_ID_FILE, strerror(errno));
			(void)unlinkat(srv->data_dirfd, tmp, 0);
			return (-1);
		}
		(void)unlinkat(srv->data_dirfd, tmp, 0);
		(void)wal_dir_sync(srv->data_dirfd, srv->cfg.dir, NULL);
		log_info("created the log id %.32s in %s/%s", text,
		    srv->cfg.dir, FWD_LOG_ID_FILE);
		return (0);
	}
	n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n < 32) {
		snprintf(why, whylen, "%s/%s is not a log id (32 hex digits): "
		    "%s; restore it from a backup (forwarded messages carry it)",
		    srv->cfg.dir, FWD_LOG_ID_FILE, n < 0 ? strerror(errno) :
		    "too short");
		return (-1);
	}
	text[n] = '\0';
	for (i = 0; i < 16; i++) {
		if (strchr("0123456789abcdef", text[2 * i]) == NULL ||
		    strchr("0123456789abcdef", text[2 * i + 1]) == NULL ||
		    sscanf(text + 2 * i, "%2x", &v) != 1) {
			snprintf(why, whylen, "%s/%s is not a log id (32 "
			    "lower-case hex digits); restore it from a backup "
			    "(forwarded messages carry it)", srv->cfg.dir,
			    FWD_LOG_ID_FILE);
			return (-1);
		}
		t->log_id[i] = (uint8_t)v;
	}
	return (0);
}

/*
 * Read walmmapd.forwarders: "name shipped_seq shipped_ts_ns gap_records"
 * per line. A damaged file costs only the holds: said loudly, and each
 * forwarder registers its position again when it connects.
 */
static void
fwd_load_state(struct server *srv)
{
	struct fwd_table *t = srv->fwd;
	struct fwd *f;
	char line[256], name[64];
	long long seq, ts;
	unsigned long long gaps;
	FILE *fp;
	int fd, lineno = 0;

	fd = openat(srv->data_dirfd, FWD_STATE_FILE, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd == -1) {
		if (errno != ENOENT)
			log_warn("cannot read %s/%s: retention holds no "
			    "segments for forwarders until they register",
			    srv->cfg.dir, FWD_STATE_FILE);
		return;
	}
	if ((fp = fdopen(fd, "r")) == NULL) {
		close(fd);
		return;
	}
	while (fgets(line, sizeof line, fp) != NULL) {
		lineno++;
		if (line[0] == '#')
			continue;
		if (sscanf(line, "%63s %lld %lld %llu", name, &seq, &ts,
		    &gaps) != 4 || strlen(name) >= WAL_FWD_NAME_MAX ||
		    seq < -1 || seq == LLONG_MAX || t->n ==
		    WAL_STATUS_FWD_MAX) {
			log_warnx("%s/%s:%d: not a forwarder's position; "
			    "ignored (it registers again when it connects)",
			    srv->cfg.dir, FWD_STATE_FILE, lineno);
			continue;
		}
		f = &t->v[t->n++];
		memset(f, 0, sizeof *f);
		memcpy(f->name, name, strlen(name) + 1);	/* fits: checked */
		f->shipped_seq = seq;
		f->positioned = 1;
		f->shipped_ts_ns = ts;
		f->gap_records = gaps;
		f->gap_first = f->gap_last = -1;
		t->gap_records += gaps;
	}
	fclose(fp);
	if (t->n > 0)
		log_info("%zu forwarder%s known from %s", t->n, t->n == 1 ?
		    "" : "s", FWD_STATE_FILE);
}

/*
 * Write walmmapd.forwarders atomically (temporary file synced, rename,
 * directory synced: after a power cut the file holds the old positions or
 * the new ones, and a newly registered name is not lost).
 */
static int
fwd_save_state(struct server *srv)
{
	struct fwd_table *t = srv->fwd;
	struct wal_error err;
	char buf[WAL_STATUS_FWD_MAX * 100 + 64], tmp[64];
	size_t i, len;

	len = (size_t)snprintf(buf, sizeof buf, "# walmmapd forwarders: name "
	    "shipped_seq shipped_ts_ns gap_records\n");
	for (i = 0; i < t->n; i++)
		if (t->v[i].positioned)
			len += (size_t)snprintf(buf + len, sizeof buf - len,
			    "%s %" PRId64 " %" PRId64 " %" PRIu64 "\n",
			    t->v[i].name, t->v[i].shipped_seq,
			    t->v[i].shipped_ts_ns, t->v[i].gap_records);
	snprintf(tmp, sizeof tmp, "%s.tmp", FWD_STATE_FILE);
	if (fwd_write_file(srv->data_dirfd, tmp, buf, len, 0) != 0 ||
	    renameat(srv->data_dirfd, tmp, srv->data_dirfd,
	    FWD_STATE_FILE) != 0) {
		log_warn("cannot write %s/%s (forwarders' positions; tried "
		    "again in a second)", srv->cfg.dir, FWD_STATE_FILE);
		(void)unlinkat(srv->data_dirfd, tmp, 0);
		return (-1);
	}
	if (wal_dir_sync(srv->data_dirfd, srv->cfg.dir, &err) != 0) {
		log_warnx("%s: %s/%s may not survive a power cut (tried again "
		    "in a second)", err.msg, srv->cfg.dir, FWD_STATE_FILE);
		return (-1);
	}
	t->dirty = 0;
	return (0);
}

/* Write a whole file and sync it; -1 with errno. */
static int
fwd_write_file(int dirfd, const char *name, const char *data, size_t len,
    int exclusive)
{
	ssize_t n;
	size_t off = 0;
	int fd, saved;

	fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
	    (exclusive ? O_EXCL : O_TRUNC), 0644);
	if (fd == -1)
		return (-1);
	while (off < len) {
		if ((n = write(fd, data + off, len - off)) <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			if (n == 0)
				errno = EIO;
			goto fail;
		}
		off += (size_t)n;
	}
	if (fdatasync(fd) != 0)
		goto fail;
	return (close(fd));
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return (-1);
}

/* The forwarder of this name, or NULL. */
static struct fwd *
fwd_find(struct fwd_table *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (strcmp(t->v[i].name, name) == 0)
			return (&t->v[i]);
	return (NULL);
}

/* FWD_REGISTER: take the name, answer FWD_STATE, then a gap if any. */
void
fwd_register(struct conn *c, const struct wal_msg_fwd_register *r)
{
	struct server *srv = c->srv;
	struct fwd_table *t = srv->fwd;
	struct wal_msg_fwd_state st;
	struct fwd *f;
	char name[WAL_FWD_NAME_MAX];
	int64_t first;

	memcpy(name, r->name, sizeof name);	/* checked: NUL-terminated */
	if (r->shipped_seq < -2 || r->shipped_seq >=
	    wal_ring_next_seq(srv->ring)) {
		conn_error(c, r->hdr.id, WAL_PERR_PROTO, 0, "FWD_REGISTER "
		    "with seq %" PRId64 ", beyond the log's last",
		    r->shipped_seq);
		return;
	}
	if (c->fwd != NULL && strcmp(c->fwd->name, name) != 0) {
		conn_error(c, r->hdr.id, WAL_PERR_PROTO, 0, "this connection "
		    "is forwarder %s already", c->fwd->name);
		return;
	}
	if ((f = fwd_find(t, name)) == NULL) {
		if (t->n == WAL_STATUS_FWD_MAX) {
			conn_error(c, r->hdr.id, WAL_PERR_BUSY, 0, "cannot "
			    "register forwarder %s: walmmapd keeps at most %d "
			    "(remove old ones from %s while it is stopped)",
			    name, WAL_STATUS_FWD_MAX, FWD_STATE_FILE);
			return;
		}
		f = &t->v[t->n++];
		memset(f, 0, sizeof *f);
		snprintf(f->name, sizeof f->name, "%s", name);
		f->shipped_seq = -1;
		f->gap_first = f->gap_last = -1;
		t->dirty = 1;
	} else if (f->conn != NULL && f->conn != c) {
		conn_error(c, r->hdr.id, WAL_PERR_BUSY, 0, "forwarder %s is "
		    "registered already, by pid %ld; one process per name",
		    name, (long)f->conn->pid);
		return;
	}
	if (c->fwd == NULL)
		log_info("forwarder %s registered (pid %ld): shipped to seq %"
		    PRId64 "%s", f->name, (long)c->pid, f->shipped_seq,
		    f->positioned ? "" : " (not known yet)");
	f->conn = c;
	c->fwd = f;
	memset(&st, 0, sizeof st);
	st.hdr.type = WAL_MSG_FWD_STATE;
	st.hdr.len = sizeof st;
	st.hdr.id = r->hdr.id;
	memcpy(st.log_id, t->log_id, sizeof st.log_id);
	first = fwd_first_seq(srv);
	st.first_seq = first;
	st.next_seq = wal_ring_next_seq(srv->ring);
	st.held_seq = f->positioned ? f->shipped_seq : -1;
	if (r->shipped_seq >= -1) {
		/* The destination knows best: hold from there on. */
		f->shipped_seq = r->shipped_seq;
		f->positioned = 1;
		t->dirty = 1;
	}
	conn_queue_fds(c, &st, sizeof st, NULL, 0);
	if (f->positioned && first > f->shipped_seq + 1)
		fwd_gap(srv, f, first);
}

/* FWD_POSITION: remember it (no reply). */
void
fwd_position(struct conn *c, const struct wal_msg_fwd_position *p)
{
	struct fwd *f = c->fwd;

	if (f == NULL) {
		conn_error(c, p->hdr.id, WAL_PERR_PROTO, 0, "FWD_POSITION "
		    "before FWD_REGISTER");
		return;
	}
	if (p->shipped_seq < -2 || p->shipped_seq >=
	    wal_ring_next_seq(c->srv->ring)) {
		conn_error(c, p->hdr.id, WAL_PERR_PROTO, 0, "FWD_POSITION "
		    "with seq %" PRId64 ", beyond the log's last",
		    p->shipped_seq);
		return;
	}
	/* -2: not known yet; only the state and the error are news. */
	if (p->shipped_seq >= -1) {
		if (p->shipped_seq != f->shipped_seq || !f->positioned)
			c->srv->fwd->dirty = 1;
		f->shipped_seq = p->shipped_seq;
		f->shipped_ts_ns = p->shipped_ts_ns;
		f->positioned = 1;
	}
	if (c->srv->fwd->blocking)
		srv_retention(c->srv);	/* producers may go on now */
	f->connected = p->connected != 0;
	memcpy(f->server, p->server, sizeof f->server);
	f->server[sizeof f->server - 1] = '\0';
	memcpy(f->error, p->error, sizeof f->error);
	f->error[sizeof f->error - 1] = '\0';
}

/* A connection goes: its forwarder stays known, detached. */
void
fwd_conn_gone(struct conn *c)
{
	if (c->fwd != NULL) {
		c->fwd->conn = NULL;
		c->fwd->connected = 0;
		c->fwd = NULL;
	}
}

/* The name of the forwarder registered on c, or NULL (a hand-over). */
const char *
fwd_conn_name(const struct conn *c)
{
	return (c->fwd != NULL ? c->fwd->name : NULL);
}

/*
 * A connection handed over by a restart was forwarder name: registered
 * again, without a reply (its FWD_STATE was sent long ago). Returns 0, or
 * -1 when the name is unknown or taken.
 */
int
fwd_adopt(struct conn *c, const char *name)
{
	struct fwd *f;

	if ((f = fwd_find(c->srv->fwd, name)) == NULL || (f->conn != NULL &&
	    f->conn != c))
		return (-1);
	f->conn = c;
	c->fwd = f;
	return (0);
}

/* The seq of a segment's first record, -1 if it has none. */
static int64_t
fwd_seg_first(int dirfd, uint64_t id)
{
	uint8_t hdr[WAL_FILE_HEADER_SIZE + WAL_RECORD_HEADER_SIZE];
	char name[WAL_SEGMENT_NAME_MAX];
	int64_t seq = -1;
	int fd;

	wal_seg_name(name, sizeof name, id);
	if ((fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC)) == -1)
		return (-1);
	if (pread(fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr &&
	    wal_le32_load(hdr + WAL_FILE_HEADER_SIZE) == WAL_RECORD_MAGIC)
		seq = (int64_t)wal_le64_load(hdr + WAL_FILE_HEADER_SIZE + 4);
	close(fd);
	return (seq);
}

/* Oldest seq on disk, -1 if none. */
static int64_t
fwd_first_seq(struct server *srv)
{
	struct wal_seglist list;
	int64_t seq = -1;
	size_t i;

	if (wal_dir_list(srv->data_dirfd, srv->cfg.dir, &list, NULL) != 0)
		return (-1);
	for (i = 0; i < list.count && seq < 0; i++)
		seq = fwd_seg_first(srv->data_dirfd, list.ids[i]);
	wal_seglist_free(&list);
	return (seq);
}

/* Forwarder f lost the records before first_kept: say so everywhere. */
static void
fwd_gap(struct server *srv, struct fwd *f, int64_t first_kept)
{
	uint64_t n = (uint64_t)(first_kept - f->shipped_seq - 1);

	if (f->gap_first == f->shipped_seq + 1 && f->gap_last ==
	    first_kept - 1)
		goto tell;	/* known: said already */
	if (f->gap_first == f->shipped_seq + 1 && f->gap_last < first_kept)
		n = (uint64_t)(first_kept - 1 - f->gap_last);	/* grew */
	f->gap_first = f->shipped_seq + 1;
	f->gap_last = first_kept - 1;
	f->gap_records += n;
	srv->fwd->gap_records += n;
	srv->fwd->dirty = 1;
	log_warnx("forwarder %s: records %" PRId64 " .. %" PRId64 " (%" PRIu64
	    " more) were removed by retention before it shipped them (the hold "
	    "passed forward_hold_max_bytes %" PRIu64 " or forward_hold_max_age "
	    "%" PRIu64 " s); they are lost for its destination", f->name,
	    f->gap_first, f->gap_last, n, srv->cfg.forward_hold_max_bytes,
	    srv->cfg.forward_hold_max_age_s);
tell:
	if (f->conn != NULL) {
		conn_error(f->conn, 0, WAL_PERR_GAP, 0, "records %" PRId64
		    " .. %" PRId64 " were removed by retention before "
		    "forwarder %s shipped them", f->gap_first, f->gap_last,
		    f->name);
		conn_flush(f->conn);
	}
}

/* After retention removed segments: who lost records? */
void
fwd_check_gaps(struct server *srv)
{
	struct fwd_table *t = srv->fwd;
	int64_t first;
	size_t i;

	if (t == NULL || t->n == 0)
		return;
	first = fwd_first_seq(srv);
	for (i = 0; i < t->n; i++)
		if (t->v[i].positioned && first > t->v[i].shipped_seq + 1)
			fwd_gap(srv, &t->v[i], first);
}

/*
 * Hold the segments each forwarder has not shipped, ids[k .. cut), within
 * the cap. Past the cap keep only what fits (the newest ones), or, with
 * forward_hold_block, keep everything and make producers wait.
 */
void
fwd_retention(struct server *srv, const uint64_t *ids, const uint64_t *sizes,
    const time_t *mtimes, size_t cut, uint64_t *limit)
{
	const struct srv_config *cfg = &srv->cfg;
	struct fwd_table *t = srv->fwd;
	int64_t *firsts, need;
	uint64_t held;
	time_t now = time(NULL);
	size_t i, j, k;
	int blocking = 0;

	if (t == NULL || t->n == 0 || cut == 0)
		goto out;
	if ((firsts = calloc(cut + 1, sizeof *firsts)) == NULL)
		goto out;
	for (j = 0; j <= cut; j++)
		firsts[j] = fwd_seg_first(srv->data_dirfd, ids[j]);
	for (i = 0; i < t->n; i++) {
		if (!t->v[i].positioned)
			continue;	/* holds nothing until it knows */
		need = t->v[i].shipped_seq + 1;
		if (firsts[cut] >= 0 && need >= firsts[cut])
			continue;	/* nothing of it is to go */
		if (firsts[0] >= 0 && need < firsts[0])
			continue;	/* gone already (fwd_check_gaps) */
		for (k = 0; k + 1 < cut && firsts[k + 1] >= 0 &&
		    firsts[k + 1] <= need; k++)
			;
		/* Within the cap, keep ids[k ..]; past it, what fits. */
		for (held = 0, j = k; j < cut; j++)
			held += sizes[j];
		for (; k < cut; k++) {
			if ((cfg->forward_hold_max_bytes == 0 || held <=
			    cfg->forward_hold_max_bytes) &&
			    (cfg->forward_hold_max_age_s == 0 || now -
			    mtimes[k] <= (time_t)cfg->forward_hold_max_age_s))
				break;
			if (cfg->forward_hold_block) {
				blocking = 1;
				break;
			}
			held -= sizes[k];
		}
		if (k < cut && ids[k] < *limit)
			*limit = ids[k];
	}
	free(firsts);
out:
	if (t == NULL || blocking == t->blocking)
		return;
	t->blocking = blocking;
	if (blocking)
		log_warnx("a forwarder holds more than forward_hold_max_bytes/"
		    "forward_hold_max_age of segments: producers wait until it "
		    "ships (forward_hold_block)");
	else
		log_info("forwarders are back within their hold: producers go "
		    "on");
	if (!blocking)
		srv_fwd_unblocked(srv);
}

/* STATUS part: struct wal_status_fwd + entries. */
size_t
fwd_status(struct server *srv, uint8_t *buf, size_t room)
{
	struct fwd_table *t = srv->fwd;
	struct wal_status_fwd h;
	struct wal_status_fwd_entry e;
	struct timespec ts;
	int64_t written = wal_ring_written_seq(srv->ring), now;
	size_t i, len;

	if (room < FWD_STATUS_MAX)
		return (0);
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	memset(&h, 0, sizeof h);
	memcpy(h.log_id, t->log_id, sizeof h.log_id);
	h.count = (uint32_t)t->n;
	h.blocking = (uint32_t)t->blocking;
	h.gap_records = t->gap_records;
	memcpy(buf, &h, sizeof h);
	len = sizeof h;
	for (i = 0; i < t->n; i++) {
		const struct fwd *f = &t->v[i];

		memset(&e, 0, sizeof e);
		memcpy(e.name, f->name, sizeof e.name);
		e.shipped_seq = f->shipped_seq;
		e.shipped_ts_ns = f->shipped_ts_ns;
		e.lag_records = written > f->shipped_seq ? written -
		    f->shipped_seq : 0;
		e.lag_ns = e.lag_records > 0 && f->shipped_ts_ns > 0 &&
		    now > f->shipped_ts_ns ? now - f->shipped_ts_ns : 0;
		e.gap_first = f->gap_first;
		e.gap_last = f->gap_last;
		e.gap_records = f->gap_records;
		e.attached = f->conn != NULL;
		e.connected = (uint32_t)f->connected;
		memcpy(e.server, f->server, sizeof e.server);
		memcpy(e.error, f->error, sizeof e.error);
		memcpy(buf + len, &e, sizeof e);
		len += sizeof e;
	}
	return (len);
}

/* Each forwarder, for the metrics module. */
size_t
fwd_list(struct server *srv, struct fwd_info *out, size_t max)
{
	struct fwd_table *t = srv->fwd;
	struct timespec ts;
	int64_t written = wal_ring_written_seq(srv->ring), now;
	size_t i;

	if (t == NULL)
		return (0);
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	for (i = 0; i < t->n && i < max; i++) {
		const struct fwd *f = &t->v[i];

		out[i].name = f->name;
		out[i].shipped_seq = f->shipped_seq;
		out[i].lag_records = written > f->shipped_seq ? written -
		    f->shipped_seq : 0;
		out[i].lag_ns = out[i].lag_records > 0 && f->shipped_ts_ns >
		    0 && now > f->shipped_ts_ns ? now - f->shipped_ts_ns : 0;
		out[i].gap_records = f->gap_records;
		out[i].attached = f->conn != NULL;
		out[i].connected = f->connected;
	}
	return (i);
}
