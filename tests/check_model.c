/*
 * walmmapd tests - the randomized, model-checked fault test.
 *
 * walk: a seeded generator drives a real walmmapd (with the fault shim
 * preloaded) through random steps: appends at every level from four
 * producers (two on the socket, two on shared-memory rings), records of
 * random sizes up to several times a socket frame (memfd), syncs,
 * rotations, SIGTERM and SIGKILL restarts with configuration changes
 * between them, kills and power cuts at random moments (also in the
 * middle of appends), injected I/O errors, a full disk, and subscribers
 * (one that follows, one that is slow, one that stalls), walctl tail -f
 * and a file reader running through all of it. tsmodel.h says what is
 * checked after every step.
 *
 * ioerr: what SQLite's I/O-error tests do. A fixed scenario (start on a
 * log a kill -9 left, appends at both levels on the socket and a ring,
 * records in a memfd, rotations, a sync, retention removing a segment,
 * a SIGTERM stop) runs with the Nth call of one of msync, fdatasync,
 * fsync, fallocate, mmap, rename, pread, write failing (once; or a short
 * pread/write, then a failing one; with WALMODEL_IOERR=all also every
 * call from the Nth on), for N = 1, 2, ... until the scenario completes
 * without reaching N. After each run the files are checked as the run
 * left them, then a power cut drops every page the daemon did not sync,
 * walmmapd starts without faults and the whole log is checked again.
 * The scenario has no subscribers: the daemon's readers poll, so the
 * calls they make would vary with timing (the walk fails calls under
 * them).
 *
 * What the daemon must do about a failed call (tsmodel.h): stop with
 * status 1 after a failed msync or fdatasync and acknowledge nothing
 * sent after it as durable; the same, or go on, after a failed fsync,
 * write or rename; go on after a failed fallocate, mmap or pread; and
 * once the fault is gone, take appends again.
 *
 * Environment:
 *   WALMODEL_SEED=S	 run only seed S (decimal or 0x...)
 *   WALMODEL_STEPS=N	 steps: of seed S, or in all (make check-long:
 *			 20000); default 75 per fixed seed and for one
 *			 random seed, which is printed
 *   WALMODEL_OPS=-a,-b	 leave step kinds out (names as in the step list),
 *			 or features: memfd (records above a frame),
 *			 resize (segment size changes), longspin
 *			 (shm_spin >= 500us), filereader (the live file
 *			 reader), subscribers (and walctl tail); a
 *			 diagnosis aid, all on by default
 *   WALMODEL_CALLS=msync,pread  fail only these calls (walk and ioerr)
 *   WALMODEL_IOERR=0	 skip the I/O-error loop; =all: also persistent
 *			 failures
 *   WALMODEL_KEEP_GOING=1  ioerr: report every failing run and go on
 *   WALMODEL_DEBUG=1	 print what each power cut did to each segment
 *   WALMODEL_NO_TMPFS=1 walk in a plain directory (as when a tmpfs cannot
 *			 be mounted: a full disk is fallocate failing)
 * A failure prints the seed and the step list; the same seed and step
 * count replay the same steps (their timing is the machine's).
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "testsupport.h"
#include "tsmodel.h"

#define TMPFS_SIZE	(160u * 1024 * 1024)
#define EPOCH_STEPS	300
#define WALK_STEPS	75	/* make check: per fixed seed, and the random one */

enum st_kind {
	ST_APPEND, ST_SYNC, ST_ROTATE, ST_CHECK, ST_TERM, ST_KILL,
	ST_KILL_LOAD, ST_CUT, ST_CUT_LOAD, ST_FAULT, ST_DISKFULL, ST_STALL,
	ST_SLOW, ST_SUB, ST_TAIL, ST_NKINDS
};

static const struct {
	const char	*name;
	unsigned	 weight;
} kinds[ST_NKINDS] = {
	{ "append", 44 }, { "sync", 6 }, { "rotate", 5 }, { "check", 2 },
	{ "term", 7 }, { "kill", 4 }, { "kill-load", 4 }, { "cut", 3 },
	{ "cut-load", 4 }, { "fault", 11 }, { "diskfull", 3 }, { "stall", 2 },
	{ "slow", 1 }, { "resubscribe", 2 }, { "tail", 1 },
};

struct step {
	enum st_kind	 kind;
	struct m_append	 a[3];
	unsigned	 na;
	int		 newcfg;
	struct m_cfg	 cfg;
	int		 delay_ms;
	int		 cut_mode;
	enum wf_call	 call;
	int64_t		 nth;
	int		 err;
	int		 persist;	/* 2: short transfer first */
	uint64_t	 room;
	unsigned	 sub;
	int		 flag;
	uint64_t	 pick;
	int		 rotate;
	int		 sync;
};

struct walk_total {
	struct m_counts	c;
	unsigned	walks;
};

/* Features WALMODEL_OPS can leave out too (diagnosis, not defaults). */
static int	no_memfd;	/* -memfd: no record above a frame */
static int	no_resize;	/* -resize: one segment size per walk */
static int	no_longspin;	/* -longspin: shm_spin below 500us */
static int	no_filereader;	/* -filereader: no live file reader */
static int	no_subs;	/* -subscribers: none, no walctl tail */

/* The calls fault steps fail (WALMODEL_CALLS, default all). */
static enum wf_call	fault_calls[WF_NCALLS];
static unsigned		nfault_calls;

static char		*base;
static struct walk_total total;

/* ------------------------------------------------------------------ */
/* The generator: steps from the seed alone (replays exactly).         */
/* ------------------------------------------------------------------ */

/* A number below n. */
static uint64_t
rnd(uint64_t *g, uint64_t n)
{
	return (ts_rand(g) % n);
}

/* A random daemon configuration. */
static void
gen_cfg(uint64_t *g, struct m_cfg *c)
{
	static const uint32_t seg[] = { 64, 128, 256, 512, 1024 };
	static const uint32_t shm[] = { 64, 256, 1024 };
	static const uint32_t spin[] = { 0, 10, 50, 50, 50, 200, 200, 1000,
	    5000 };
	static const uint32_t keep[] = { 0, 0, 1, 2, 4 };
	static const uint32_t keepkb[] = { 0, 0, 0, 512, 2048 };
	static const uint32_t sync[] = { 0, 50, 1000, 3600000 };
	static const uint32_t commit[] = { 0, 2, 20 };

	static uint32_t first_seg;
	uint32_t sz = seg[rnd(g, 5)];

	c->seg_kb = no_resize && first_seg != 0 ? first_seg : sz;
	first_seg = c->seg_kb;
	c->ring = 2 + (uint32_t)rnd(g, 5);
	c->prefault = rnd(g, 10) < 3;
	c->shm = rnd(g, 10) < 8;
	c->shm_kb = shm[rnd(g, 3)];
	c->spin_us = spin[rnd(g, sizeof spin / sizeof spin[0])];
	if (no_longspin && c->spin_us >= 500)
		c->spin_us = 200;
	c->retain_segments = keep[rnd(g, 5)];
	c->retain_kb = keepkb[rnd(g, 5)];
	c->sync_ms = sync[rnd(g, 4)];
	c->commit_ms = commit[rnd(g, 3)];
}

/* A record size: mostly small, some large, a few above a frame. */
static uint32_t
gen_size(uint64_t *g)
{
	uint64_t r = rnd(g, 1000);

	if (r < 600)
		return (16 + (uint32_t)rnd(g, 285));
	if (r < 850)
		return (300 + (uint32_t)rnd(g, 3700));
	if (r < 980)
		return (4000 + (uint32_t)rnd(g, 36000));
	if (r < 995 || no_memfd)
		return (40000 + (uint32_t)rnd(g, 24000));
	return (130 * 1024 + (uint32_t)rnd(g, 270 * 1024));
}

/* A producer's random append command. */
static void
gen_append(uint64_t *g, struct m_append *a, unsigned prod, int durable)
{
	uint64_t r = rnd(g, 100);
	unsigned i;

	a->prod = prod;
	a->level = durable ? M_DURABLE : r < 20 ? M_NONE : r < 65 ? M_WRITTEN :
	    M_DURABLE;
	r = rnd(g, 100);
	a->mode = r < 60 ? M_SINGLE : r < 85 ? M_PIPE : M_BATCH;
	a->count = 1 + (unsigned)rnd(g, rnd(g, 2) ? 8 : M_BATCH_MAX);
	for (i = 0; i < a->count; i++)
		a->sizes[i] = gen_size(g);
}

/* One to three producers appending at once. */
static void
gen_burst(uint64_t *g, struct step *s, int durable)
{
	unsigned i, first = (unsigned)rnd(g, M_NPROD);

	s->na = 1 + (unsigned)rnd(g, 3);
	for (i = 0; i < s->na; i++)
		gen_append(g, &s->a[i], (first + i) % M_NPROD, durable && i ==
		    0);
}

static const int call_err[WF_NCALLS][2] = {
	{ EIO, EIO },		/* msync */
	{ EIO, ENOSPC },	/* fdatasync */
	{ EIO, EIO },		/* fsync */
	{ ENOSPC, EIO },	/* fallocate */
	{ ENOMEM, EIO },	/* mmap */
	{ EIO, ENOSPC },	/* rename */
	{ EIO, EIO },		/* pread */
	{ EIO, ENOSPC },	/* write */
};

/* The next random step. */
static void
gen_step(uint64_t *g, const unsigned *weights, struct step *s)
{
	unsigned sum = 0, i, pick;

	memset(s, 0, sizeof *s);
	for (i = 0; i < ST_NKINDS; i++)
		sum += weights[i];
	pick = (unsigned)rnd(g, sum);
	for (i = 0; pick >= weights[i]; i++)
		pick -= weights[i];
	s->kind = (enum st_kind)i;
	switch (s->kind) {
	case ST_APPEND:
		gen_burst(g, s, 0);
		s->sync = rnd(g, 10) == 0;
		break;
	case ST_TERM:
		if ((s->newcfg = rnd(g, 2) == 0))
			gen_cfg(g, &s->cfg);
		break;
	case ST_KILL:
	case ST_CUT:
		s->newcfg = rnd(g, 4) == 0;
		if (s->newcfg)
			gen_cfg(g, &s->cfg);
		s->cut_mode = (int)rnd(g, TS_CUT_MODES + 1) - 1;
		break;
	case ST_KILL_LOAD:
	case ST_CUT_LOAD:
		gen_burst(g, s, 0);
		s->delay_ms = (int)rnd(g, 30);
		s->cut_mode = (int)rnd(g, TS_CUT_MODES + 1) - 1;
		break;
	case ST_FAULT:
		s->call = fault_calls[rnd(g, nfault_calls)];
		s->nth = (int64_t[]){ 1, 1, 1, 1, 1, 2, 2, 2, 3, 4 }
		    [rnd(g, 10)];
		s->err = call_err[s->call][rnd(g, 2)];
		s->persist = rnd(g, 100) < 15;
		if ((s->call == WF_PREAD || s->call == WF_WRITE) && rnd(g, 2))
			s->persist = 2;
		gen_burst(g, s, 1);
		/* The daemon preads a record only from a memfd: send one. */
		if (s->call == WF_PREAD && !no_memfd)
			s->a[s->na - 1].sizes[0] = 130 * 1024 + (uint32_t)rnd(g,
			    100 * 1024);
		/* Rotations make segments, the calls most faults hit. */
		s->rotate = 1 + (int)rnd(g, 3);
		s->sync = rnd(g, 3) == 0;
		break;
	case ST_DISKFULL:
		s->room = (uint64_t[]){ 0, 65536, 300 * 1024, 1024 * 1024 }
		    [rnd(g, 4)];
		gen_burst(g, s, 0);
		s->rotate = 1;
		break;
	case ST_STALL:
		s->sub = 2;
		s->flag = (int)rnd(g, 2);
		break;
	case ST_SLOW:
		s->sub = 1;
		s->flag = (int)rnd(g, 2);
		break;
	case ST_SUB:
		s->sub = (unsigned)rnd(g, M_NSUB);
		s->pick = ts_rand(g);
		break;
	case ST_TAIL:
		s->pick = ts_rand(g);
		break;
	default:
		break;
	}
}

/* One line for the step list. */
static void
describe(const struct step *s, char *buf, size_t len)
{
	size_t off;
	unsigned i;
	char cfg[400];

	off = (size_t)snprintf(buf, len, "%s", kinds[s->kind].name);
	switch (s->kind) {
	case ST_FAULT:
		off += (size_t)snprintf(buf + off, len - off, " %s nth=%" PRId64
		    " %s%s +rotate*%d%s", wf_call_names[s->call], s->nth,
		    strerror(s->err), s->persist == 2 ? " after a short one" :
		    s->persist ? " persistent" : "",
		    s->rotate, s->sync ? " +sync" : "");
		break;
	case ST_DISKFULL:
		off += (size_t)snprintf(buf + off, len - off, " room=%" PRIu64
		    "K", s->room / 1024);
		break;
	case ST_KILL_LOAD:
	case ST_CUT_LOAD:
		off += (size_t)snprintf(buf + off, len - off, " after=%dms",
		    s->delay_ms);
		/* FALLTHROUGH */
	case ST_KILL:
	case ST_CUT:
		if (s->kind == ST_CUT || s->kind == ST_CUT_LOAD)
			off += (size_t)snprintf(buf + off, len - off,
			    " pages=%s", s->cut_mode < 0 ? "mixed" :
			    (const char *[]){ "dropped", "random", "torn",
			    "all-but-one", "kept" }[s->cut_mode]);
		break;
	case ST_STALL:
	case ST_SLOW:
		off += (size_t)snprintf(buf + off, len - off, " sub%u %s",
		    s->sub, s->flag ? "on" : "off");
		break;
	case ST_SUB:
		off += (size_t)snprintf(buf + off, len - off, " sub%u pick=%"
		    PRIu64, s->sub, s->pick % 1000);
		break;
	default:
		break;
	}
	for (i = 0; i < s->na && off < len; i++) {
		unsigned k, big = 0, sum = 0;

		for (k = 0; k < s->a[i].count; k++) {
			sum += s->a[i].sizes[k];
			big += s->a[i].sizes[k] > 128 * 1024;
		}
		off += (size_t)snprintf(buf + off, len - off, " p%u:%s:%s:%u"
		    "rec:%uB%s", s->a[i].prod, (const char *[]){ "none",
		    "written", "durable" }[s->a[i].level], (const char *[]){
		    "single", "pipe", "batch" }[s->a[i].mode], s->a[i].count,
		    sum, big ? ":memfd" : "");
	}
	if (s->kind == ST_APPEND && s->sync && off < len)
		off += (size_t)snprintf(buf + off, len - off, " +sync");
	if (s->newcfg && off < len) {
		m_cfg_str(&s->cfg, cfg, sizeof cfg);
		snprintf(buf + off, len - off, " -> %s", cfg);
	}
}

/* ------------------------------------------------------------------ */
/* The walk.                                                           */
/* ------------------------------------------------------------------ */

/* A SIGTERM's exit status: 0, or 1 when a sync it may stop for failed. */
static void
stopped(struct model *m, int rc)
{
	if (rc != 0 && !(rc == 1 && m_may_stop(m)))
		m_fail(m, "walmmapd exited with status %d after SIGTERM", rc);
}

/* Start again, with the step's new configuration if it has one. */
static void
restart(struct model *m, const struct step *s)
{
	if (s->newcfg)
		m_set_cfg(m, &s->cfg);
	m_start(m, 1);
}

/* Run one step against the model. */
static void
run_step(struct model *m, const struct step *s, uint64_t *rng)
{
	struct m_append one = { .prod = 1, .level = M_WRITTEN, .mode =
	    M_SINGLE, .count = 1, .sizes = { 64 } };
	int i;

	if (!m_running(m) && s->kind != ST_TERM && s->kind != ST_KILL &&
	    s->kind != ST_CUT)
		m_start(m, 1);
	switch (s->kind) {
	case ST_APPEND:
		m_appends(m, s->a, s->na, -1, 0, rng);
		if (s->sync)
			m_sync(m);
		break;
	case ST_SYNC:
		m_sync(m);
		break;
	case ST_ROTATE:
		m_rotate(m);
		break;
	case ST_CHECK:
		break;
	case ST_TERM:
		if (m_running(m))
			stopped(m, m_stop(m));
		restart(m, s);
		break;
	case ST_KILL:
		m_kill(m);
		restart(m, s);
		break;
	case ST_CUT:
		m_power_cut(m, s->cut_mode, rng);
		restart(m, s);
		break;
	case ST_KILL_LOAD:
		m_appends(m, s->a, s->na, s->delay_ms, -2, rng);
		m_start(m, 1);
		break;
	case ST_CUT_LOAD:
		m_appends(m, s->a, s->na, s->delay_ms, s->cut_mode, rng);
		m_start(m, 1);
		break;
	case ST_FAULT:
		if (s->persist == 2)
			m_fault_arm_short(m, s->call, s->nth, s->err);
		else
			m_fault_arm(m, s->call, s->nth, s->err, s->persist);
		m_appends(m, s->a, s->na, -1, 0, rng);
		for (i = 0; i < s->rotate; i++) {
			m_rotate(m);
			m_appends(m, &one, 1, -1, 0, rng);
		}
		if (s->sync)
			m_sync(m);
		m_settle(m, 200);	/* background creations */
		m_fault_end(m);
		break;
	case ST_DISKFULL:
		m_disk_full(m, s->room);
		m_appends(m, s->a, s->na, -1, 0, rng);
		m_rotate(m);
		m_disk_free(m);
		break;
	case ST_STALL:
	case ST_SLOW:
		if (s->kind == ST_STALL)
			m_sub_stall(m, s->sub, s->flag);
		else
			m_sub_slow(m, s->sub, s->flag);
		break;
	case ST_SUB:
		m_sub_restart(m, s->sub, s->pick);
		break;
	case ST_TAIL:
		m_tail_restart(m, s->pick);
		break;
	default:
		break;
	}
}

/* Which step kinds run: WALMODEL_OPS=-fault,-cut leaves them out. */
static void
weights_from_env(unsigned *w, char *desc, size_t len)
{
	const char *env = getenv("WALMODEL_OPS");
	char buf[512], *tok, *save = NULL;
	unsigned i;

	const char *calls = getenv("WALMODEL_CALLS");

	for (i = 0; i < ST_NKINDS; i++)
		w[i] = kinds[i].weight;
	desc[0] = '\0';
	nfault_calls = 0;
	for (i = 0; i < WF_NCALLS; i++)
		if (calls == NULL || strstr(calls, wf_call_names[i]) != NULL)
			fault_calls[nfault_calls++] = (enum wf_call)i;
	if (nfault_calls == 0)
		w[ST_FAULT] = 0;
	if (calls != NULL)
		snprintf(desc, len, " WALMODEL_CALLS=%s", calls);
	if (env == NULL || *env == '\0')
		return;
	snprintf(desc + strlen(desc), len - strlen(desc), " WALMODEL_OPS=%s",
	    env);
	snprintf(buf, sizeof buf, "%s", env);
	for (tok = strtok_r(buf, ", ", &save); tok != NULL; tok = strtok_r(NULL,
	    ", ", &save)) {
		int off = *tok == '-';
		const char *name = tok + (off || *tok == '+');

		if (strcmp(name, "memfd") == 0)
			no_memfd = off;
		else if (strcmp(name, "resize") == 0)
			no_resize = off;
		else if (strcmp(name, "longspin") == 0)
			no_longspin = off;
		else if (strcmp(name, "filereader") == 0)
			no_filereader = off;
		else if (strcmp(name, "subscribers") == 0)
			no_subs = off;

		for (i = 0; i < ST_NKINDS; i++)
			if (strcmp(tok + (off || *tok == '+'),
			    kinds[i].name) == 0)
				w[i] = off ? 0 : kinds[i].weight;
	}
}

struct walk_args {
	uint64_t	seed;
	long		steps;
	int		tmpfs;
	char		counts[4200];	/* where the walk leaves its counts */
};

/* One walk in dir (a tmpfs or not); 0 when every check passed. */
static int
walk(struct walk_args *wa, const char *dir)
{
	struct m_opts o = { .seed = wa->seed, .name = "walk", .tmpfs =
	    wa->tmpfs };
	unsigned w[ST_NKINDS];
	uint64_t g = wa->seed, rng;
	struct model *m;
	struct m_cfg cfg;
	struct step s;
	char line[1024], cfgs[400], ops[600];
	long i;

	weights_from_env(w, ops, sizeof ops);
	o.no_file_reader = no_filereader;
	o.no_subs = no_subs;
	m = m_new(dir, &o);
	gen_cfg(&g, &cfg);
	m_cfg_str(&cfg, cfgs, sizeof cfgs);
	m_step(m, "start %s", cfgs);
	m_set_cfg(m, &cfg);
	m_start(m, 1);
	m_check(m);
	for (i = 1; i < wa->steps; i++) {
		if (i % EPOCH_STEPS == 0) {
			m_step(m, "epoch (a new data directory)");
			m_new_epoch(m);
			m_start(m, 1);
			m_check(m);
			continue;
		}
		gen_step(&g, w, &s);
		describe(&s, line, sizeof line);
		m_step(m, "%s", line);
		rng = wa->seed ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull);
		run_step(m, &s, &rng);
		m_check(m);
	}
	if (m_running(m))
		stopped(m, m_stop(m));
	m_check(m);
	fprintf(stderr, "model walk seed %#" PRIx64 "%s: ", wa->seed, ops);
	m_print_counts(m_counts(m), stderr);
	/* The parent adds these up. */
	{
		FILE *f;

		if ((f = fopen(wa->counts, "w")) != NULL) {
			fwrite(m_counts(m), sizeof(struct m_counts), 1, f);
			fclose(f);
		}
	}
	m_free(m);
	return (0);
}

/* ts_with_tmpfs() callback: the walk on the tmpfs. */
static int
walk_tmpfs_cb(void *arg, const char *dir)
{
	return (walk(arg, dir));
}

/* Run a walk in a child, on a tmpfs when one can be mounted. */
static int
run_walk(uint64_t seed, long steps)
{
	struct walk_args wa = { .seed = seed, .steps = steps, .tmpfs = 1 };
	struct m_counts c;
	char dir[4200], path[4200];
	int status, i;
	FILE *f;
	pid_t pid;

	snprintf(dir, sizeof dir, "%s/walk-%" PRIx64, base, seed);
	if (mkdir(dir, 0755) == -1)
		return (-1);
	snprintf(wa.counts, sizeof wa.counts, "%s/counts-%" PRIx64, base,
	    seed);
	fflush(stderr);
	status = getenv("WALMODEL_NO_TMPFS") != NULL ? -1 :
	    ts_with_tmpfs(TMPFS_SIZE, walk_tmpfs_cb, &wa);
	if (status == -1) {
		/* Not root: a plain directory, full disk through the shim. */
		wa.tmpfs = 0;
		if ((pid = fork()) == 0)
			_exit(walk(&wa, dir));
		waitpid(pid, &status, 0);
		status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 +
		    WTERMSIG(status);
	}
	snprintf(path, sizeof path, "%s", wa.counts);
	if ((f = fopen(path, "r")) != NULL) {
		if (fread(&c, sizeof c, 1, f) == 1) {
			total.c.steps += c.steps;
			total.c.records += c.records;
			total.c.acked += c.acked;
			total.c.durable += c.durable;
			total.c.refused += c.refused;
			for (i = 0; i < WF_NCALLS; i++)
				total.c.faults[i] += c.faults[i];
			total.c.power_cuts += c.power_cuts;
			total.c.pages_lost += c.pages_lost;
			total.c.kills += c.kills;
			total.c.stops += c.stops;
			total.c.starts += c.starts;
			total.c.fail_stops += c.fail_stops;
			total.c.sub_records += c.sub_records;
			total.c.scans += c.scans;
			total.c.epochs += c.epochs;
		}
		fclose(f);
		unlink(path);
	}
	total.walks++;
	return (status);
}

/* A seed in decimal or 0x hex. */
static uint64_t
parse_seed(const char *s)
{
	return (strtoull(s, NULL, 0));
}

START_TEST(test_walk)
{
	static const uint64_t fixed[] = { 0x5eed0001, 0x5eed0002, 0x5eed0003 };
	const char *env_seed = getenv("WALMODEL_SEED");
	const char *env_steps = getenv("WALMODEL_STEPS");
	long steps = env_steps != NULL ? atol(env_steps) : -1, per;
	uint64_t seed;
	struct timespec ts;
	size_t i;
	int st;

	if (env_seed != NULL && *env_seed != '\0') {
		seed = parse_seed(env_seed);
		st = run_walk(seed, steps > 0 ? steps : 300);
		ck_assert_msg(st == 0, "model walk seed %#" PRIx64 " failed "
		    "(status %d): its step list is in the log above", seed,
		    st);
		return;
	}
	/* Fixed seeds first, then one random seed. */
	per = WALK_STEPS;
	for (i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
		st = run_walk(fixed[i], per);
		ck_assert_msg(st == 0, "model walk seed %#" PRIx64 " failed "
		    "(status %d): its step list is in the log above", fixed[i],
		    st);
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	seed = ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)ts.tv_nsec ^
	    ((uint64_t)getpid() << 40);
	fprintf(stderr, "model walk: random seed %#" PRIx64 " (replay: "
	    "WALMODEL_SEED=%#" PRIx64 ")\n", seed, seed);
	st = run_walk(seed, steps > 0 ? steps - (long)(sizeof fixed /
	    sizeof fixed[0]) * per : per);
	ck_assert_msg(st == 0, "model walk seed %#" PRIx64 " failed (status "
	    "%d): its step list is in the log above", seed, st);
	fprintf(stderr, "model walk total: %u walks, ", total.walks);
	m_print_counts(&total.c, stderr);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The I/O-error loop.                                                 */
/* ------------------------------------------------------------------ */

static const int ioerr_err[WF_NCALLS] = {
	EIO, EIO, EIO, ENOSPC, ENOMEM, EIO, EIO, EIO
};

/* The scenario's daemon: small segments, a short ring, retention. */
static const struct m_cfg ioerr_cfg = { .seg_kb = 256, .ring = 2,
    .prefault = 0, .shm = 1, .shm_kb = 64, .spin_us = 0,
    .retain_segments = 1, .sync_ms = 0, .commit_ms = 0 };

/* Copy the regular files of directory from into to (created). */
static void
copy_dir(const char *from, const char *to)
{
	struct dirent *de;
	char src[4500], dst[4500];
	uint8_t *buf;
	size_t len;
	DIR *d;

	ck_assert_int_eq(mkdir(to, 0700), 0);
	ck_assert_ptr_nonnull(d = opendir(from));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(src, sizeof src, "%s/%s", from, de->d_name);
		snprintf(dst, sizeof dst, "%s/%s", to, de->d_name);
		if ((buf = ts_read_file(src, &len)) == NULL)
			continue;
		ck_assert_int_eq(ts_write_file(dst, buf, len), 0);
		free(buf);
	}
	closedir(d);
}

/* Producer 0 (socket) or 2 (ring): count records of size at level. */
static void
ioerr_append(struct model *m, unsigned prod, enum m_level level,
    unsigned count, uint32_t size)
{
	struct m_append a;
	unsigned i;

	memset(&a, 0, sizeof a);
	a.prod = prod;
	a.level = level;
	a.mode = M_SINGLE;
	a.count = count;
	for (i = 0; i < count; i++)
		a.sizes[i] = size + i * 37;
	m_appends(m, &a, 1, -1, 0, NULL);
}

/*
 * The scenario with the Nth call of one kind failing (n = 0: none).
 * Returns the number of calls failed.
 */
static uint64_t
ioerr_run(const char *dir, const char *tmpl, enum wf_call call, int64_t n,
    int persist, int *failed)
{
	/*
	 * No subscribers: the daemon's readers poll, so the calls they make
	 * would vary with timing and the scenario would not be fixed (the
	 * walk fails calls under them).
	 */
	struct m_opts o = { .seed = (uint64_t)call << 32 | (uint64_t)n,
	    .name = "ioerr", .keep_going = 1, .no_subs = 1,
	    .no_file_reader = no_filereader };
	const struct m_cfg cfg = ioerr_cfg;
	uint64_t inj = 0, rng = 7;
	struct model *m;
	char cfgs[400];
	int rc;

	m = m_new(dir, &o);
	m_cfg_str(&cfg, cfgs, sizeof cfgs);
	m_set_cfg(m, &cfg);
	m_step(m, "ioerr: %s; the log a kill -9 left (30 records written)",
	    cfgs);
	copy_dir(tmpl, m_data_dir(m));
	m_adopt(m);
	m_step(m, "arm: %s call %" PRId64 " %s %s%s", wf_call_names[call], n,
	    persist == 2 ? "moves half its bytes, the next one fails with" :
	    "fails with", strerror(ioerr_err[call]), persist == 1 ?
	    " (and every one after it)" : "");
	if (n > 0 && persist == 2)
		m_fault_arm_short(m, call, n, ioerr_err[call]);
	else if (n > 0)
		m_fault_arm(m, call, n, ioerr_err[call], persist);
	m_step(m, "start (recovers the killed run)");
	rc = m_start(m, 0);
	if (rc == 0) {
		m_step(m, "append 10 written + 2 durable (socket)");
		ioerr_append(m, 0, M_WRITTEN, 10, 300);
		ioerr_append(m, 0, M_DURABLE, 2, 200);
		m_step(m, "append 10 written + 2 durable (ring)");
		ioerr_append(m, 2, M_WRITTEN, 10, 400);
		ioerr_append(m, 2, M_DURABLE, 2, 100);
		m_step(m, "append a record of 200K (memfd), walctl rotate");
		ioerr_append(m, 0, M_WRITTEN, 1, 200 * 1024);
		m_rotate(m);
		m_step(m, "append a record of 150K (memfd) + 2 durable "
		    "(socket), walctl rotate");
		ioerr_append(m, 0, M_WRITTEN, 1, 150 * 1024);
		ioerr_append(m, 0, M_DURABLE, 2, 1000);
		m_rotate(m);
		m_step(m, "walctl sync");
		m_sync(m);
		m_step(m, "retention (retain_segments=1) removes a segment");
		m_wait_segments(m, 3, call == WF_FSYNC ||
		    getenv("WALMODEL_IOERR_RETENTION") != NULL ? 3000 : 0);
		m_step(m, "append 2 durable (ring), 5 written (socket)");
		ioerr_append(m, 2, M_DURABLE, 2, 700);
		ioerr_append(m, 0, M_WRITTEN, 5, 50);
		m_step(m, "SIGTERM");
		if (m_running(m) && (rc = m_stop(m)) != 0 && n == 0)
			m_fail(m, "walmmapd exited with status %d after "
			    "SIGTERM", rc);
	} else
		m_step(m, "(start failed with status %d)", rc);
	if (n > 0) {
		m_step(m, "fault removed");
		inj = m_fault_end(m);
	}
	m_check(m);		/* the files as the run left them */
	m_stop(m);
	/*
	 * A power cut that loses every page the ledger does not show as
	 * synced, then a start without faults: every durable record is
	 * there, and (the cut keeps what a clean stop synced) every written
	 * one.
	 */
	m_step(m, "power cut (every page not synced is lost), start");
	m_power_cut(m, 0, &rng);
	m_start(m, 1);
	m_check(m);
	m_step(m, "SIGTERM");
	if ((rc = m_stop(m)) != 0)
		m_fail(m, "walmmapd exited with status %d after SIGTERM", rc);
	*failed = m_failed(m);
	m_free(m);
	return (inj);
}

/*
 * The log every run starts on, made once (so that every run starts on
 * the same bytes): 30 records written, then kill -9. Returns its data
 * directory.
 */
static const char *
ioerr_template(const struct m_cfg *cfg)
{
	static char data[4200];
	struct m_opts o = { .seed = 0, .name = "ioerr template", .no_subs = 1,
	    .keep_going = 1 };
	struct model *m;
	char dir[4200];

	snprintf(dir, sizeof dir, "%s/template", base);
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	m = m_new(dir, &o);
	m_set_cfg(m, cfg);
	m_step(m, "start, append 30 written (socket), kill -9");
	ck_assert_int_eq(m_start(m, 1), 0);
	ioerr_append(m, 0, M_WRITTEN, 30, 500);
	m_kill(m);
	ck_assert_int_eq(m_failed(m), 0);
	snprintf(data, sizeof data, "%s", m_data_dir(m));
	m_free(m);
	return (data);
}

START_TEST(test_ioerr)
{
	const char *env = getenv("WALMODEL_IOERR");
	const char *calls = getenv("WALMODEL_CALLS");
	const char *kg = getenv("WALMODEL_KEEP_GOING");
	int keep_going = kg != NULL && atoi(kg) != 0;
	char dir[4200];
	uint64_t inj, runs = 0, injected = 0, failures = 0;
	unsigned w[ST_NKINDS];
	char desc[600];
	const char *tmpl;
	int64_t n;
	int c, v, persist, failed, npersist;

	if (env != NULL && strcmp(env, "0") == 0)
		return;
	weights_from_env(w, desc, sizeof desc);
	tmpl = ioerr_template(&ioerr_cfg);
	/* Variants: 0 one call fails, 2 a short one then a failure, 1 all. */
	npersist = env != NULL && strcmp(env, "all") == 0 ? 3 : 2;
	for (c = 0; c < WF_NCALLS; c++) {
		if (calls != NULL && strstr(calls, wf_call_names[c]) == NULL)
			continue;
		for (v = 0; v < npersist; v++) {
			persist = (int[]){ 0, 2, 1 }[v];
			if (persist == 2 && c != WF_PREAD && c != WF_WRITE)
				continue;
			for (n = 1; n < 500; n++) {
				snprintf(dir, sizeof dir, "%s/ioerr-%d-%d-%"
				    PRId64, base, c, persist, n);
				ck_assert_int_eq(mkdir(dir, 0755), 0);
				failed = 0;
				inj = ioerr_run(dir, tmpl, (enum wf_call)c,
				    n, persist, &failed);
				ts_rmtree(strdup(dir));
				runs++;
				injected += inj;
				if (failed) {
					failures++;
					ck_assert_msg(keep_going, "ioerr: %s "
					    "call %" PRId64 " failing broke a "
					    "guarantee (see the log above)",
					    wf_call_names[c], n);
				}
				if (inj == 0)
					break;	/* the scenario made < n */
			}
			fprintf(stderr, "ioerr: %s%s: the scenario makes %"
			    PRId64 " calls; each failed in turn\n",
			    wf_call_names[c], persist == 2 ? " (short, then "
			    "failing)" : persist ? " (persistent)" : "", n - 1);
		}
	}
	fprintf(stderr, "ioerr: %" PRIu64 " runs, %" PRIu64 " calls failed, %"
	    PRIu64 " runs broke a guarantee\n", runs, injected, failures);
	ck_assert_uint_eq(failures, 0);
}
END_TEST

/*
 * The sync ledger the power cuts rely on: what the daemon synced is what
 * it records, what it did not sync a cut loses (so a power cut can find
 * a durable acknowledgement the daemon did not earn).
 */
START_TEST(test_ledger)
{
	struct m_opts o = { .seed = 1, .name = "ledger", .keep_going = 1,
	    .no_subs = 1 };
	struct m_cfg cfg = { .seg_kb = 256, .ring = 2, .shm = 1, .shm_kb = 64,
	    .spin_us = 0, .sync_ms = 0 };
	struct m_append a = { .prod = 0, .level = M_DURABLE, .mode = M_SINGLE,
	    .count = 5, .sizes = { 1000, 2000, 3000, 4000, 5000 } };
	struct model *m;
	int64_t durable_end, end;
	uint64_t rng = 3;
	char dir[4200];

	snprintf(dir, sizeof dir, "%s/ledger", base);
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	m = m_new(dir, &o);
	m_set_cfg(m, &cfg);
	m_step(m, "start, 5 durable, 20 written, kill");
	ck_assert_int_eq(m_start(m, 1), 0);
	m_appends(m, &a, 1, -1, 0, NULL);
	durable_end = m_segment_end(m, 0);
	a.level = M_WRITTEN;
	a.count = 20;
	m_appends(m, &a, 1, -1, 0, NULL);
	m_kill(m);
	/* The durable records were synced; the written ones were not. */
	end = m_ledger_end(m, 0);
	ck_assert_msg(end >= durable_end && end < m_segment_end(m, 0),
	    "ledger end %lld, durable records end at %lld, written ones at "
	    "%lld", (long long)end, (long long)durable_end,
	    (long long)m_segment_end(m, 0));
	m_step(m, "power cut (unsynced pages dropped), restart");
	m_power_cut(m, 0, &rng);
	ck_assert_uint_gt(m_counts(m)->pages_lost, 0);
	ck_assert_int_eq(m_start(m, 1), 0);
	m_check(m);
	/* The log ends with the last durable record. */
	end = m_segment_end(m, 0);
	ck_assert_msg(end == durable_end, "the log ends at offset %lld, the "
	    "durable records at %lld", (long long)end, (long long)durable_end);
	m_stop(m);
	ck_assert_int_eq(m_failed(m), 0);
	m_free(m);
}
END_TEST

/* Each test case: a temporary directory. */
static void
setup(void)
{
	base = ts_mkdtemp("model");
	memset(&total, 0, sizeof total);
}

/* Remove it. */
static void
teardown(void)
{
	ts_rmtree(base);
}

/* The suite: the ledger, the walk, the I/O-error loop. */
static Suite *
model_suite(void)
{
	Suite *s = suite_create("model");
	TCase *tc = tcase_create("walk");
	TCase *io = tcase_create("ioerr");
	TCase *lg = tcase_create("ledger");

	tcase_add_checked_fixture(lg, setup, teardown);
	tcase_set_timeout(lg, 120);
	tcase_add_test(lg, test_ledger);
	suite_add_tcase(s, lg);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 36000);
	tcase_add_test(tc, test_walk);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(io, setup, teardown);
	tcase_set_timeout(io, 36000);
	tcase_add_test(io, test_ioerr);
	suite_add_tcase(s, io);
	return (s);
}

int
main(void)
{
	return (ts_run(model_suite()));
}
