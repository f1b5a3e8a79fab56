/*
 * walbench - walmmapd against its limits and its peers, in one run.
 *
 *	walbench [--json] [--quick] [--reps N] [--daemon PATH] SCENARIO...
 *	walbench [--json] [--quick] [--reps N] --all
 *
 * Each scenario measures walmmapd and, in the same run, a baseline (the
 * physical or transport limit, or what a user would use instead) and
 * prints one line per variant with the ratio. See tests/bench/BENCHMARKS.md.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <ftw.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "walbench.h"

static const struct {
	const char	*name;
	int		(*fn)(const struct wb *);
	const char	*what;
} scenarios[] = {
	{ "core", wb_core, "the ring writer in-process vs buffered and plain "
	    "write() appenders and memcpy" },
	{ "seqpacket", wb_seqpacket, "clients through walmmapd vs a raw "
	    "SOCK_SEQPACKET pair" },
	{ "shm", wb_shm, "producers through rings vs a raw SPSC ring" },
	{ "durable", wb_durable, "durable acks vs fdatasync per record" },
	{ "latency", wb_latency, "append->ack at a fixed load vs raw round "
	    "trips (socket, shm)" },
	{ "recovery", wb_recovery, "start after kill -9, walctl verify vs "
	    "read(), cold cache" },
	{ "redis", wb_redis, "durable vs Redis appendfsync always" },
	{ "python", wb_python, "append_batch from Python vs an os.write "
	    "loop" },
	{ "forward", wb_forward, "append->JetStream ack via walmmap-forward "
	    "vs a libnats async publisher" },
	{ "restart", wb_restart, "a producer's pause across a restart vs a "
	    "fresh start" },
	{ "idem", wb_idem, "appends with producer seqs vs without" },
};
#define NSCEN	(sizeof scenarios / sizeof scenarios[0])

static void
usage(FILE *f, int status)
{
	size_t i;

	fprintf(f, "usage: walbench [--json] [--quick] [--reps N] "
	    "[--daemon PATH] SCENARIO... | --all\nscenarios:\n");
	for (i = 0; i < NSCEN; i++)
		fprintf(f, "  %-10s %s\n", scenarios[i].name,
		    scenarios[i].what);
	exit(status);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json",	no_argument,		NULL, 'j' },
		{ "quick",	no_argument,		NULL, 'q' },
		{ "all",	no_argument,		NULL, 'a' },
		{ "daemon",	required_argument,	NULL, 'd' },
		{ "reps",	required_argument,	NULL, 'r' },
		{ "help",	no_argument,		NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct wb wb;
	const char *tmpdir;
	int c, all = 0, rc = 0, want[NSCEN];
	size_t i;

	memset(&wb, 0, sizeof wb);
	memset(want, 0, sizeof want);
	snprintf(wb.daemon, sizeof wb.daemon, "%s/daemon/walmmapd",
	    WB_BUILDDIR);
	snprintf(wb.walctl, sizeof wb.walctl, "%s/client/walctl", WB_BUILDDIR);
	while ((c = getopt_long(argc, argv, "jqad:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			wb.json = 1;
			break;
		case 'q':
			wb.quick = 1;
			break;
		case 'a':
			all = 1;
			break;
		case 'd':
			snprintf(wb.daemon, sizeof wb.daemon, "%s", optarg);
			break;
		case 'r':
			wb.reps = atoi(optarg);
			if (wb.reps < 1 || wb.reps > 99) {
				fprintf(stderr, "walbench: --reps %s: want "
				    "1..99\n", optarg);
				usage(stderr, 2);
			}
			break;
		case 'h':
			usage(stdout, 0);
			break;
		default:
			usage(stderr, 2);
		}
	}
	for (; optind < argc; optind++) {
		for (i = 0; i < NSCEN; i++)
			if (strcmp(argv[optind], scenarios[i].name) == 0)
				break;
		if (i == NSCEN) {
			fprintf(stderr, "walbench: unknown scenario \"%s\"\n",
			    argv[optind]);
			usage(stderr, 2);
		}
		want[i] = 1;
	}
	if (all)
		for (i = 0; i < NSCEN; i++)
			want[i] = 1;
	for (i = 0; i < NSCEN && !want[i]; i++)
		;
	if (i == NSCEN)
		usage(stderr, 2);
	if (wb.reps == 0)
		wb.reps = wb.quick ? 1 : 3;
	if ((tmpdir = getenv("TMPDIR")) == NULL)
		tmpdir = "/tmp";
	snprintf(wb.tmp, sizeof wb.tmp, "%s/walbench-XXXXXX", tmpdir);
	if (mkdtemp(wb.tmp) == NULL) {
		fprintf(stderr, "walbench: mkdtemp %s: %s\n", wb.tmp,
		    strerror(errno));
		return (1);
	}
	signal(SIGPIPE, SIG_IGN);
	for (i = 0; i < NSCEN; i++) {
		if (!want[i])
			continue;
		if (!wb.json)
			printf("== %s: %s\n", scenarios[i].name,
			    scenarios[i].what);
		fflush(stdout);
		if (scenarios[i].fn(&wb) != 0) {
			fprintf(stderr, "walbench: scenario %s failed\n",
			    scenarios[i].name);
			rc = 1;
		}
		fflush(stdout);
	}
	wb_rmtree(wb.tmp);
	return (rc);
}

void
wb_result_init(struct wb_result *r, const char *scenario, const char *baseline)
{
	memset(r, 0, sizeof *r);
	r->scenario = scenario;
	r->baseline = baseline;
	r->p50 = r->p99 = r->p999 = -1;
	r->base_p50 = r->base_p99 = r->base_p999 = -1;
	r->rtt_before = r->rtt_after = -1;
	r->ms = r->base_ms = -1;
}

double
wb_load(void)
{
	double l = -1;
	FILE *f;

	if ((f = fopen("/proc/loadavg", "r")) == NULL)
		return (-1);
	if (fscanf(f, "%lf", &l) != 1)
		l = -1;
	fclose(f);
	return (l);
}

static void
json_num(const char *key, double v, int last)
{
	if (v < 0 || isnan(v))
		printf("\"%s\":null%s", key, last ? "" : ",");
	else
		printf("\"%s\":%.1f%s", key, v, last ? "" : ",");
}

/* walmmapd's percentile against the baseline's (latency: lower is better). */
static double
pratio(double a, double b)
{
	return (a >= 0 && b > 0 ? a / b : -1);
}

/*
 * One variant: a line for people, or a JSON object. The load and the
 * cpu0-cpu1 round trip after the figure are taken here when the scenario
 * did not.
 */
void
wb_report(const struct wb *wb, const struct wb_result *res)
{
	struct wb_result r = *res;
	double ratio, ns = r.rps > 0 ? 1e9 / r.rps : -1, load = wb_load();

	if (r.rtt_after < 0)
		r.rtt_after = wb_cpu_rtt_ns();
	if (r.ratio > 0)
		ratio = r.ratio;
	else if (r.ratio == 0 && r.base_rps > 0 && r.rps > 0)
		ratio = r.rps / r.base_rps;
	else
		ratio = -1;
	if (wb->json) {
		fflush(stdout);
		printf("{\"scenario\":\"%s\",\"variant\":\"%s\",", r.scenario,
		    r.variant);
		if (r.clients > 0)
			printf("\"clients\":%d,", r.clients);
		json_num("records_per_s", r.rps, 0);
		json_num("mb_per_s", r.rps * r.rec_bytes / 1e6, 0);
		json_num("ns_per_record", ns, 0);
		json_num("p50_ns", r.p50, 0);
		json_num("p99_ns", r.p99, 0);
		json_num("p999_ns", r.p999, 0);
		printf("\"baseline\":\"%s\",", r.baseline);
		json_num("baseline_records_per_s", r.base_rps, 0);
		json_num("baseline_p50_ns", r.base_p50, 0);
		json_num("baseline_p99_ns", r.base_p99, 0);
		json_num("baseline_p999_ns", r.base_p999, 0);
		if (ratio < 0)
			printf("\"ratio\":null,");
		else
			printf("\"ratio\":%.3f,", ratio);
		if (r.base_p99 > 0 && r.p99 >= 0)
			printf("\"p50_ratio\":%.3f,\"p99_ratio\":%.3f,"
			    "\"p999_ratio\":%.3f,", pratio(r.p50, r.base_p50),
			    pratio(r.p99, r.base_p99), pratio(r.p999,
			    r.base_p999));
		json_num("ms", r.ms, 0);
		json_num("baseline_ms", r.base_ms, 0);
		json_num("load", load, 0);
		json_num("cpu_rtt_before_ns", r.rtt_before, 0);
		json_num("cpu_rtt_after_ns", r.rtt_after, 0);
		printf("\"note\":\"%s\"}\n", r.note);
		fflush(stdout);
		return;
	}
	if (r.ms >= 0) {
		printf("%-10s %-26s %12.1f ms\n%-10s   vs %-23s %12.1f ms",
		    r.scenario, r.variant, r.ms, "", r.baseline, r.base_ms);
		goto tail;
	}
	printf("%-10s %-26s %12.0f rec/s %8.1f MB/s %9.1f ns/rec", r.scenario,
	    r.variant, r.rps, r.rps * r.rec_bytes / 1e6, ns);
	if (r.p50 >= 0)
		printf("  p50 %.1f us p99 %.1f us p999 %.1f us", r.p50 / 1e3,
		    r.p99 / 1e3, r.p999 / 1e3);
	printf("\n%-10s   vs %-23s %12.0f rec/s", "", r.baseline, r.base_rps);
	if (ratio >= 0)
		printf("  ratio %.3f", ratio);
	if (r.base_p99 > 0)
		printf("  p50 %.1f us p99 %.1f us p999 %.1f us (x%.2f x%.2f "
		    "x%.2f)", r.base_p50 / 1e3, r.base_p99 / 1e3,
		    r.base_p999 / 1e3, pratio(r.p50, r.base_p50),
		    pratio(r.p99, r.base_p99), pratio(r.p999, r.base_p999));
tail:
	printf("\n%-10s   load %.2f, cpu0-cpu1 ", "", load);
	if (r.rtt_before >= 0)
		printf("%.0f/", r.rtt_before);
	printf("%.0f ns%s%s\n", r.rtt_after, r.note[0] ? "; " : "", r.note);
	fflush(stdout);		/* before the next fork */
}

/* Percentile levels of the charts' CDFs. */
static const double cdf_levels[] = { 0, 1, 5, 10, 20, 30, 40, 50, 60, 70,
	80, 90, 95, 97, 99, 99.5, 99.7, 99.9, 99.95, 99.99, 99.999, 100 };

void
wb_report_cdf(const struct wb *wb, const char *scenario, const char *variant,
    const char *series, const uint64_t *ns, size_t n)
{
	size_t i, k;

	if (!wb->json || n == 0)
		return;
	printf("{\"scenario\":\"%s\",\"variant\":\"%s\",\"series\":\"%s\","
	    "\"cdf\":[", scenario, variant, series);
	for (i = 0; i < sizeof cdf_levels / sizeof cdf_levels[0]; i++) {
		k = (size_t)((double)(n - 1) * cdf_levels[i] / 100);
		printf("%s[%g,%llu]", i ? "," : "", cdf_levels[i],
		    (unsigned long long)ns[k]);
	}
	printf("]}\n");
	fflush(stdout);
}

void
wb_skip(const struct wb *wb, const char *scenario, const char *why)
{
	if (wb->json)
		printf("{\"scenario\":\"%s\",\"skipped\":\"%s\"}\n", scenario,
		    why);
	else
		printf("%-10s skipped: %s\n", scenario, why);
	fflush(stdout);
}

double
wb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

uint64_t
wb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

/* Can we connect to path? */
static int
try_connect(const char *path)
{
	struct sockaddr_un sun;
	int s, rc;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path)
		return (0);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) == -1)
		return (0);
	rc = connect(s, (struct sockaddr *)&sun, sizeof sun) == 0;
	close(s);
	return (rc);
}

/* CPU ticks the process used so far. */
static unsigned long long
cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return (0);
	if (fgets(buf, sizeof buf, f) != NULL && (p = strrchr(buf, ')')) !=
	    NULL)
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
		    "%llu", &ut, &st);
	fclose(f);
	return (ut + st);
}

static double daemon_ready_s;

int
wb_daemon_start(const struct wb *wb, struct wb_daemon *d, const char *tag,
    int keep_dir, const char *const *extra)
{
	const char *argv[40];
	unsigned long long t, last;
	double t0;
	int n = 0, i, idle;

	if (!keep_dir)
		snprintf(d->dir, sizeof d->dir, "%s/%s", wb->tmp, tag);
	snprintf(d->sock, sizeof d->sock, "%s/%s.sock", wb->tmp, tag);
	argv[n++] = wb->daemon;
	argv[n++] = "-f";
	argv[n++] = "-d";
	argv[n++] = d->dir;
	argv[n++] = "-s";
	argv[n++] = d->sock;
	for (i = 0; extra != NULL && extra[i] != NULL && n < 38; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	t0 = wb_now();
	if ((d->pid = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (freopen("/dev/null", "w", stderr) == NULL)
			_exit(126);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (d->pid == -1)
		return (-1);
	for (i = 0; i < 60000 && !try_connect(d->sock); i++) {
		if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
			fprintf(stderr, "walbench: %s exited at start\n",
			    wb->daemon);
			d->pid = 0;
			return (-1);
		}
		usleep(500);
	}
	daemon_ready_s = wb_now() - t0;
	/* Wait until the standby segments are pre-faulted: CPU goes idle. */
	last = cpu_ticks(d->pid);
	for (i = 0, idle = 0; i < 600 && idle < 3; i++) {
		usleep(100000);
		t = cpu_ticks(d->pid);
		idle = t == last ? idle + 1 : 0;
		last = t;
	}
	return (0);
}

double
wb_daemon_ready_s(const struct wb_daemon *d)
{
	(void)d;
	return (daemon_ready_s);
}

void
wb_daemon_stop(struct wb_daemon *d, int remove_dir)
{
	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
	if (remove_dir)
		wb_rmtree(d->dir);
}

static int	child_ready_fd = -1, child_go_fd = -1;

int
wb_start_children(struct wb_group *g, int n, int (*fn)(int, void *),
    void *arg)
{
	char c;
	int i;

	g->n = n;
	if ((g->pids = calloc((size_t)n, sizeof *g->pids)) == NULL ||
	    pipe(g->go) == -1 || pipe(g->ready) == -1)
		return (-1);
	for (i = 0; i < n; i++) {
		if ((g->pids[i] = fork()) == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(g->go[1]);
			close(g->ready[0]);
			child_ready_fd = g->ready[1];
			child_go_fd = g->go[0];
			/* fn sets up, calls wb_child_sync(), then runs. */
			_exit(fn(i, arg));
		}
	}
	close(g->ready[1]);
	for (i = 0; i < n; i++)
		if (read(g->ready[0], &c, 1) != 1)
			break;
	close(g->ready[0]);
	close(g->go[0]);
	return (i == n ? 0 : -1);
}

void
wb_child_sync(void)
{
	char c;

	if (write(child_ready_fd, "r", 1) != 1)
		_exit(120);
	close(child_ready_fd);
	(void)read(child_go_fd, &c, 1);	/* returns 0 at the start */
	close(child_go_fd);
}

void
wb_go(struct wb_group *g)
{
	close(g->go[1]);	/* every child's read returns 0 */
}

int
wb_wait_children(struct wb_group *g)
{
	int i, status, rc = 0;

	for (i = 0; i < g->n; i++) {
		if (waitpid(g->pids[i], &status, 0) != g->pids[i] ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "walbench: child %d failed (status "
			    "%#x)\n", i, status);
			rc = -1;
		}
	}
	free(g->pids);
	return (rc);
}

void *
wb_shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);

	return (p == MAP_FAILED ? NULL : p);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x < y ? -1 : x > y);
}

/* At most RTT_ROUNDS round trips, and no longer than RTT_MAX_S. */
#define RTT_ROUNDS	100000
#define RTT_MAX_S	0.02

static _Atomic long rtt_flag;

static int
pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return (pthread_setaffinity_np(pthread_self(), sizeof set, &set));
}

/* CPU 1: answer every odd value with the next even one, until -1. */
static void *
rtt_echo(void *arg)
{
	long v;

	(void)arg;
	/* Answer even unpinned: the caller spins until we do. */
	(void)pin(1);
	while ((v = atomic_load(&rtt_flag)) != -1)
		if (v & 1)
			atomic_store(&rtt_flag, v + 1);
	return (NULL);
}

double
wb_cpu_rtt_ns(void)
{
	cpu_set_t saved;
	pthread_t t;
	double t0, t1;
	long i;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2 ||
	    pthread_getaffinity_np(pthread_self(), sizeof saved, &saved) != 0 ||
	    !CPU_ISSET(0, &saved) || !CPU_ISSET(1, &saved) || pin(0) != 0)
		return (-1);
	atomic_store(&rtt_flag, 0);
	if (pthread_create(&t, NULL, rtt_echo, NULL) != 0) {
		pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
		return (-1);
	}
	/* Under load a preempted vCPU makes a round trip take ms: stop. */
	t0 = t1 = wb_now();
	for (i = 0; i < RTT_ROUNDS; i++) {
		atomic_store(&rtt_flag, 2 * i + 1);
		while (atomic_load(&rtt_flag) != 2 * i + 2)
			;
		if ((i & 255) == 255 && (t1 = wb_now()) - t0 > RTT_MAX_S) {
			i++;
			break;
		}
	}
	t1 = wb_now();
	atomic_store(&rtt_flag, -1);
	pthread_join(t, NULL);
	/* Children forked later must not inherit the pinning. */
	pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
	return ((t1 - t0) / (double)i * 1e9);
}

static cpu_set_t	unpinned;
static int		pinned;

int
wb_pin_self(int cpu)
{
	cpu_set_t set;

	if (cpu >= sysconf(_SC_NPROCESSORS_ONLN))
		return (-1);
	if (!pinned && sched_getaffinity(0, sizeof unpinned, &unpinned) != 0)
		return (-1);
	pinned = 1;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return (sched_setaffinity(0, sizeof set, &set));
}

void
wb_unpin_self(void)
{
	if (pinned)
		(void)sched_setaffinity(0, sizeof unpinned, &unpinned);
	pinned = 0;
}

int
wb_pin_pid(pid_t pid, int cpu)
{
	char path[64];
	struct dirent *e;
	cpu_set_t set;
	DIR *d;
	int rc = 0;

	if (cpu >= sysconf(_SC_NPROCESSORS_ONLN))
		return (-1);
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	snprintf(path, sizeof path, "/proc/%ld/task", (long)pid);
	if ((d = opendir(path)) == NULL)
		return (sched_setaffinity(pid, sizeof set, &set));
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && sched_setaffinity((pid_t)atol(
		    e->d_name), sizeof set, &set) != 0)
			rc = -1;
	closedir(d);
	return (rc);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return ((x > y) - (x < y));
}

double
wb_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return ((n % 2) ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

void
wb_percentiles(uint64_t *ns, size_t n, struct wb_result *r)
{
	if (n == 0)
		return;
	qsort(ns, n, sizeof *ns, cmp_u64);
	r->p50 = (double)ns[n / 2];
	r->p99 = (double)ns[n * 99 / 100];
	r->p999 = (double)ns[n * 999 / 1000];
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return (remove(path));
}

void
wb_rmtree(const char *path)
{
	(void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A recognisable payload. */
void
wb_fill(uint8_t *buf, size_t len, uint64_t n)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)('a' + (n + i) % 26);
}
