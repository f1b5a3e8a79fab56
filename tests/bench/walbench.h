/*
 * walbench - what the benchmark's scenarios share: results, a daemon to
 * measure, child processes started together.
 */
#ifndef WALBENCH_H
#define WALBENCH_H

#include <sys/types.h>

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

struct wb {
	int		 json;
	int		 quick;
	int		 reps;			/* runs per noisy pair (median) */
	char		 tmp[256];		/* scratch directory */
	char		 daemon[PATH_MAX];	/* walmmapd to measure */
	char		 walctl[PATH_MAX];
};

/* One line of output: a scenario variant against its baseline. */
struct wb_result {
	const char	*scenario;
	char		 variant[64];
	double		 rps;		/* records/s */
	double		 rec_bytes;	/* payload bytes per record (MB/s) */
	double		 p50, p99, p999; /* ns; < 0: not measured */
	const char	*baseline;
	double		 base_rps;
	char		 note[320];
	double		 ratio;		/* > 0: the scenario's (e.g. median of
					   per-run ratios); 0: rps / base_rps;
					   < 0: none */
	double		 base_p50, base_p99, base_p999; /* baseline's, ns */
	double		 rtt_before;	/* cpu0-cpu1 ns before the figure */
	double		 rtt_after;	/*   and after; < 0: wb_report() */
	int		 clients;	/* producers/clients, 0: not said */
	double		 ms, base_ms;	/* a time instead of a rate; < 0: none */
};

void	 wb_result_init(struct wb_result *, const char *scenario,
	    const char *baseline);
void	 wb_report(const struct wb *, const struct wb_result *);
void	 wb_skip(const struct wb *, const char *scenario, const char *why);
/*
 * With --json, a latency distribution as one JSON line (scenario,
 * variant, series, cdf: [[percentile, ns], ...]) for the charts; ns
 * sorted ascending. Nothing without --json.
 */
void	 wb_report_cdf(const struct wb *, const char *scenario,
	    const char *variant, const char *series, const uint64_t *ns,
	    size_t n);
/* The 1-minute load average, or < 0. */
double	 wb_load(void);

double	 wb_now(void);
uint64_t wb_now_ns(void);

/* A walmmapd started on a fresh directory under wb->tmp. */
struct wb_daemon {
	pid_t	pid;
	char	dir[PATH_MAX];
	char	sock[PATH_MAX];
};

/*
 * Start walmmapd -f with extra arguments (NULL-terminated), wait until it
 * accepts connections and then until it is idle (standby segments
 * pre-faulted). keep_dir: use dir as it is (recovery).
 */
int	 wb_daemon_start(const struct wb *, struct wb_daemon *, const char *tag,
	    int keep_dir, const char *const *extra);
/* Seconds from exec to the first accepted connection, or < 0. */
double	 wb_daemon_ready_s(const struct wb_daemon *);
void	 wb_daemon_stop(struct wb_daemon *, int remove_dir);

/*
 * Children released together: wb_start_children() forks n children that
 * each run fn(i, arg) after the parent's wb_go(); fn's return value is
 * the exit status.
 */
struct wb_group {
	int	 n;
	pid_t	*pids;
	int	 go[2];
	int	 ready[2];
};
int	 wb_start_children(struct wb_group *, int n, int (*fn)(int, void *),
	    void *arg);
void	 wb_child_sync(void);	/* in a child: set up; wait for go */
void	 wb_go(struct wb_group *);
int	 wb_wait_children(struct wb_group *);	/* 0: all exited 0 */

/* Memory shared with children (MAP_SHARED | MAP_ANONYMOUS). */
void	*wb_shared(size_t);

/*
 * Round trip of one cache line between CPU 0 and CPU 1, in ns: how far
 * apart the host has placed the two vCPUs at this moment (100 ns on one
 * die here, 400 ns and more across dies). Cross-process figures (shm, the
 * raw SPSC ring) scale with it. < 0 if it cannot be measured.
 */
double	 wb_cpu_rtt_ns(void);

/*
 * Pin the calling process (every thread it starts later inherits it), or
 * every thread of process pid, to one CPU; wb_unpin_self() undoes
 * wb_pin_self(). 0, or -1 when the CPU is not there.
 */
int	 wb_pin_self(int cpu);
int	 wb_pin_pid(pid_t pid, int cpu);
void	 wb_unpin_self(void);

/* The median of n values (sorted in place). */
double	 wb_median(double *v, int n);

/* Percentiles of n samples (sorted in place). */
void	 wb_percentiles(uint64_t *ns, size_t n, struct wb_result *);

void	 wb_rmtree(const char *);
void	 wb_fill(uint8_t *buf, size_t len, uint64_t n);

/* Scenarios (wb_local.c, wb_daemon.c, wb_durable.c). */
int	 wb_core(const struct wb *);
int	 wb_idem(const struct wb *);
int	 wb_recovery(const struct wb *);
int	 wb_seqpacket(const struct wb *);
int	 wb_shm(const struct wb *);
int	 wb_durable(const struct wb *);
int	 wb_latency(const struct wb *);
int	 wb_redis(const struct wb *);
int	 wb_python(const struct wb *);	/* wb_python.c */
int	 wb_forward(const struct wb *);		/* wb_forward.c */
int	 wb_restart(const struct wb *);	/* wb_restart.c */

#endif /* WALBENCH_H */
