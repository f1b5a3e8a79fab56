/*
 * walmmapd tests - power cuts and injected faults of the model (see
 * tsmodel_int.h): the sync ledger, the on-disk state a power loss could
 * leave, and what the daemon must do about a failed call.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testsupport.h"
#include "tsmodel_int.h"
#include "wal_dir.h"
#include "wal_format.h"
#include "wal_segment.h"
#include "walmmap.h"

/* ------------------------------------------------------------------ */
/* Power cuts.                                                         */
/* ------------------------------------------------------------------ */

/*
 * After a cut (or a new epoch) every file is on disk as it is: its synced
 * end is just past its last non-zero byte (what is written later, into
 * the zeros, is not synced until the daemon syncs it).
 */
void
m_ledger_reset(struct model *m)
{
	struct dirent *de;
	struct stat st;
	char path[PATH_MAX + 300];
	uint8_t *img;
	size_t len, end;
	DIR *dir;

	memset(m->ctl->synced, 0, sizeof m->ctl->synced);
	atomic_store(&m->ctl->ledger_full, 0);
	if ((dir = opendir(m->d.data)) == NULL)
		return;
	while ((de = readdir(dir)) != NULL) {
		snprintf(path, sizeof path, "%s/%s", m->d.data, de->d_name);
		if (stat(path, &st) == -1 || !S_ISREG(st.st_mode) ||
		    (img = ts_read_file(path, &len)) == NULL)
			continue;
		for (end = len; end > 0 && img[end - 1] == 0; end--)
			;
		free(img);
		if (wf_ledger_set(m->ctl, (uint64_t)st.st_dev,
		    (uint64_t)st.st_ino, end) != 0)
			atomic_store(&m->ctl->ledger_full, 1);
	}
	closedir(dir);
}

/* The ledger's synced end of segment id. */
int64_t
m_ledger_end(struct model *m, uint64_t id)
{
	struct wf_synced *e;
	struct stat st;

	if (stat(ts_seg_path(m->d.data, id), &st) == -1 || (e =
	    wf_ledger_find(m->ctl, (uint64_t)st.st_dev, (uint64_t)st.st_ino))
	    == NULL)
		return (-1);
	return ((int64_t)atomic_load(&e->end));
}

/* The offset after the last record of segment id. */
int64_t
m_segment_end(struct model *m, uint64_t id)
{
	struct wal_scan sc;
	uint8_t *img;
	size_t len;

	if ((img = ts_read_file(ts_seg_path(m->d.data, id), &len)) == NULL)
		return (-1);
	wal_scan(img, len, WAL_FILE_HEADER_SIZE, -1, &sc);
	free(img);
	return (sc.records > 0 ? (int64_t)sc.end : -1);
}

/* Kill the daemon and leave what a power loss could leave. */
void
m_power_cut(struct model *m, int mode, uint64_t *rng)
{
	struct wal_seglist list;
	struct wf_synced *e;
	struct stat st;
	char path[PATH_MAX + 64], name[WAL_SEGMENT_NAME_MAX];
	uint8_t *now, *synced, *out;
	uint64_t end;
	size_t i, len;
	int dfd, fmode;

	if (m->exited)
		m_judge_exit(m);
	if (m->running) {
		ts_daemon_kill(&m->d);
		m->running = 0;
		m->last_exit = -1;
		m->c.kills++;
	}
	/* The kill -9 part: nothing seen is lost yet. */
	m_after_death(m);
	m->c.power_cuts++;
	m->cut_pages = 0;
	if ((dfd = wal_dir_open(m->d.data, NULL)) < 0)
		return;
	if (wal_dir_list(dfd, m->d.data, &list, NULL) != 0)
		abort();
	close(dfd);
	for (i = 0; i < list.count; i++) {
		wal_seg_name(name, sizeof name, list.ids[i]);
		snprintf(path, sizeof path, "%s/%s", m->d.data, name);
		if (stat(path, &st) == -1 || (now = ts_read_file(path, &len)) ==
		    NULL)
			continue;
		/*
		 * Bytes past the file's synced end were zero at its last
		 * sync or written since: they are what a cut may lose. A
		 * full ledger (or a file it does not know) loses nothing.
		 */
		e = wf_ledger_find(m->ctl, (uint64_t)st.st_dev,
		    (uint64_t)st.st_ino);
		end = e != NULL ? atomic_load(&e->end) :
		    atomic_load(&m->ctl->ledger_full) ? len : 0;
		if (end > len)
			end = len;
		if ((synced = malloc(len + 1)) == NULL || (out = malloc(len +
		    1)) == NULL)
			abort();
		memcpy(synced, now, end);
		memset(synced + end, 0, len - end);
		fmode = mode >= 0 ? mode : (int)(ts_rand(rng) % TS_CUT_MODES);
		if (getenv("WALMODEL_DEBUG") != NULL) {
			size_t last = len;

			while (last > 0 && now[last - 1] == 0)
				last--;
			fprintf(stderr, "cut %s: data ends at %zu, synced end %"
			    PRIu64 " (%s) mode %d\n", name, last, end, e !=
			    NULL ? "ledger" : "none", fmode);
		}
		m->cut_pages += ts_cut_image(out, synced, now, len, fmode, rng);
		if (memcmp(out, now, len) != 0 && ts_pwrite_file(path, out, len,
		    0) != 0)
			abort();
		free(now);
		free(synced);
		free(out);
	}
	wal_seglist_free(&list);
	m->c.pages_lost += m->cut_pages;
	m_ledger_reset(m);
	m->cut_pending = 1;
}

/* A SYNC answered during a fault: m_fault_end() judges it. */
void
m_fault_sync_answer(struct model *m, int64_t t_start, int64_t durable)
{
	int64_t first;

	if (!m->fault_on)
		return;
	first = atomic_load(&m->ctl->op[m->fault_call].first_ns);
	if (first != 0 && t_start > first && m->fault_nsyncs < 16)
		m->fault_syncs[m->fault_nsyncs++] = durable;
}

/*
 * After a failed sync, nothing sent after the failure is durable: no
 * record of it acknowledged durable, and no SYNC answer (one may repeat
 * what was durable before) that covers one of them.
 */
static void
fault_no_durable_after(struct model *m, enum wf_call call, int64_t first)
{
	struct m_rec *r;
	int64_t lo = INT64_MAX;
	uint64_t p, n;
	unsigned i;

	for (p = 0; p < M_NPROD; p++)
		for (n = m->prod[p].base; n < m->prod[p].n; n++) {
			r = &m->prod[p].recs[n - m->prod[p].base];
			if (r->t_sent <= first)
				continue;
			if (r->seq >= 0 && r->seq < lo)
				lo = r->seq;
			if (r->state == R_DURABLE)
				m_fail(m, "record %u:%" PRIu64 " was "
				    "acknowledged durable (seq %" PRId64 "), "
				    "but it was sent after a %s had failed",
				    (unsigned)p, n, r->seq,
				    wf_call_names[call]);
		}
	for (i = 0; i < m->fault_nsyncs; i++)
		if (m->fault_syncs[i] >= lo)
			m_fail(m, "walctl sync said durable up to seq %" PRId64
			    " after a %s had failed, but seq %" PRId64 " was "
			    "sent after the failure", m->fault_syncs[i],
			    wf_call_names[call], lo);
}


/* ------------------------------------------------------------------ */
/* Faults.                                                             */
/* ------------------------------------------------------------------ */

/* Fail the nth call from now (and on, with persist). */
void
m_fault_arm(struct model *m, enum wf_call call, int64_t nth, int err,
    int persist)
{
	m_pump(m, 0);
	m->fault_on = 1;
	m->fault_call = call;
	m->fault_base = atomic_load(&m->ctl->op[call].injected);
	m->fault_nsyncs = 0;
	atomic_store(&m->ctl->op[call].first_ns, 0);
	wf_arm(m->ctl, call, nth, err, persist);
}

/* Make the nth pread/write short and the next one fail. */
void
m_fault_arm_short(struct model *m, enum wf_call call, int64_t nth, int err)
{
	m_fault_arm(m, call, nth, err, 0);
	wf_arm_short(m->ctl, call, nth, err);
}

/* Once a fault is gone, a written append works again (bounded retry). */
static void
fault_gone(struct model *m, const char *what)
{
	struct m_append a;
	int64_t until = tw_mono_ns() + (int64_t)RETRY_MS * 1000000;
	struct m_rec *r;

	memset(&a, 0, sizeof a);
	a.prod = 0;
	a.level = M_WRITTEN;
	a.mode = M_SINGLE;
	a.count = 1;
	a.sizes[0] = 100;
	for (;;) {
		m_appends(m, &a, 1, -1, 0, NULL);
		r = m_rec_of(m, 0, m->prod[0].n - 1);
		if (r->state == R_WRITTEN || !m->running)
			return;
		if (!m_daemon_alive(m))
			return;		/* m_check() judges it */
		if (tw_mono_ns() > until)
			break;
		usleep(200000);
	}
	m_fail(m, "appends still fail %d s after the %s fault was removed "
	    "(the record was %s)", RETRY_MS / 1000, what,
	    r_state_names[r->state]);
}

/* Disarm the fault and check what the daemon did about it. */
uint64_t
m_fault_end(struct model *m)
{
	enum wf_call call = m->fault_call;
	uint64_t inj;
	int64_t first;
	int rc, must, may, by_test;

	if (!m->fault_on)
		return (0);
	m_pump(m, 0);
	wf_disarm(m->ctl, call);
	inj = atomic_load(&m->ctl->op[call].injected) - m->fault_base;
	first = atomic_load(&m->ctl->op[call].first_ns);
	m->c.faults[call] += inj;
	if (inj == 0) {
		m->fault_on = 0;
		return (0);
	}
	/*
	 * A failed msync or fdatasync is a failed sync: the daemon must stop
	 * (exit status 1). fsync, write and rename also make the checkpoint
	 * and new segment names durable, so after one of them failed it may
	 * stop that way too, or go on. Not after fallocate, mmap or pread.
	 */
	must = call == WF_MSYNC || call == WF_FDATASYNC;
	may = must || call == WF_FSYNC || call == WF_WRITE || call ==
	    WF_RENAME;
	if (!m->running && m->start_rc != 0) {
		/* It could not start: any failure may stop a start. */
		if (m->start_rc != 1)
			m_fail(m, "walmmapd did not start (status %d) after a "
			    "failed %s (1 expected)", m->start_rc,
			    wf_call_names[call]);
		m->fault_on = 0;
		return (inj);
	}
	/* Its exit status: now, or when the test stopped or killed it. */
	by_test = !m->running && !m->exited;
	if (m->exited) {
		rc = m->last_exit;
		m->exited = 0;
		m->running = 1;		/* m_after_death() below */
	} else
		rc = by_test ? m->last_exit : ts_daemon_wait_exit(&m->d, must ?
		    FAILSTOP_MS : 0);
	if (may && rc < 0 && m->running)
		m->may_stop = 1;	/* it may still stop (m_check) */
	m_pump(m, 0);
	if (rc >= 0 && m->running) {
		m->running = 0;
		m_after_death(m);	/* the scan pins the seqs we judge */
	}
	/*
	 * A failed msync or fdatasync syncs records. (Of fsync, write and
	 * rename failures only the daemon knows which one stopped it: one in
	 * making a segment does not, one in writing the checkpoint may.)
	 */
	if (must)
		fault_no_durable_after(m, call, first);
	if (by_test && rc >= 0) {
		/* A SIGTERM while failing: 0, or 1 after a failed sync. */
		if (rc == 128 + SIGTERM)
			m_fail(m, "walmmapd died of the SIGTERM (status %d) "
			    "after a failed %s: a signal that arrives while it "
			    "stops must not hide the exit status", rc,
			    wf_call_names[call]);
		else if (rc == 0 ? must : rc != 1 || !(may || m->may_stop))
			m_fail(m, "walmmapd exited with status %d on SIGTERM "
			    "after a failed %s", rc, wf_call_names[call]);
	} else if (!by_test && must && rc < 0)
		m_fail(m, "walmmapd still runs %d s after a failed %s (it must "
		    "stop with status 1: fail-stop)", FAILSTOP_MS / 1000,
		    wf_call_names[call]);
	else if (!by_test && rc >= 0 && (rc != 1 || !(may || m->may_stop)))
		m_fail(m, "walmmapd exited with status %d after a failed %s%s",
		    rc, wf_call_names[call], may ? " (1 expected)" : "; it "
		    "must keep running");
	else if (!by_test && rc == 1)
		m->c.fail_stops++;
	m->fault_on = 0;
	if (m->running)
		fault_gone(m, wf_call_names[call]);
	return (inj);
}

/* Fill the disk, leaving room bytes. */
void
m_disk_full(struct model *m, uint64_t room)
{
	struct statvfs sv;
	uint64_t free_b, fill;
	char chunk[65536];
	int fd;

	m->disk_full = 1;
	if (!m->o.tmpfs) {
		m_fault_arm(m, WF_FALLOCATE, 1, ENOSPC, 1);
		return;
	}
	if (statvfs(m->d.data, &sv) == -1)
		abort();
	free_b = (uint64_t)sv.f_bavail * sv.f_frsize;
	fill = free_b > room ? free_b - room : 0;
	if ((fd = open(m->filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) == -1)
		abort();
	memset(chunk, 'f', sizeof chunk);
	while (fill > 0) {
		ssize_t w = write(fd, chunk, fill < sizeof chunk ? fill :
		    sizeof chunk);

		if (w <= 0)
			break;
		fill -= (uint64_t)w;
	}
	close(fd);
}

/* Free the disk; appends must work again. */
void
m_disk_free(struct model *m)
{
	if (!m->disk_full)
		return;
	if (!m->o.tmpfs) {
		m->disk_full = 0;
		(void)m_fault_end(m);
		return;
	}
	unlink(m->filler);
	m->disk_full = 0;
	if (m->running)
		fault_gone(m, "disk full");
}
