/*
 * walmmapd tests - helpers shared by the Check suites.
 */
#ifndef TESTSUPPORT_H
#define TESTSUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>

/* Make a fresh temporary directory; the caller frees the path. */
char	*ts_mkdtemp(const char *tag);

/* Remove a directory tree (best effort) and free its path. */
void	 ts_rmtree(char *path);

/* Read a whole file; returns a malloc'd buffer and sets *len. */
uint8_t	*ts_read_file(const char *path, size_t *len);

/* Create or replace a file holding buf[0..len). Returns 0 or -1. */
int	 ts_write_file(const char *path, const void *buf, size_t len);

/* Overwrite len bytes of a file at off. Returns 0 or -1. */
int	 ts_pwrite_file(const char *path, const void *buf, size_t len,
	    off_t off);

/* Path of segment id in dir, in a static buffer. */
const char *ts_seg_path(const char *dir, uint64_t id);

/* Count directory entries whose name starts with prefix. */
int	 ts_count_files(const char *dir, const char *prefix);

/* Deterministic payload byte i of record seq. */
uint8_t	 ts_payload_byte(int64_t seq, size_t i);

/* Fill buf with the deterministic payload of seq. */
void	 ts_fill_payload(uint8_t *buf, size_t len, int64_t seq);

/*
 * Run fn(arg, dir) in a child process inside a private mount namespace
 * where dir is a tmpfs of size bytes; the mount vanishes with the child.
 * Returns the child's exit status, or -1 when a tmpfs cannot be mounted
 * here (not root): the caller then skips with a message.
 */
int	 ts_with_tmpfs(size_t size, int (*fn)(void *, const char *),
	    void *arg);

/*
 * Run fn(arg) in a child process as uid and gid (no supplementary groups;
 * needs root). Returns its exit status (128 + signal if killed), or -1.
 */
int	 ts_as_user(uid_t, gid_t, int (*fn)(void *), void *arg);

/* ts_as_user with supplementary groups. */
int	 ts_as_user_groups(uid_t, gid_t, size_t ngroups, const gid_t *groups,
	    int (*fn)(void *), void *arg);

/*
 * Payload of producer p's n-th record: "p:n:" then 0..199 filler bytes
 * (buf holds TS_KEY_PAYLOAD_MAX). Returns its length.
 */
#define TS_KEY_PAYLOAD_MAX	264
size_t	 ts_key_payload(uint8_t *buf, unsigned p, uint64_t n);

/*
 * Parse "p:n:" back: 1 when buf is that key's payload (exact) or starts
 * with it (!exact), else 0.
 */
int	 ts_key_parse(const uint8_t *buf, size_t len, int exact, unsigned *p,
	    uint64_t *n);

/* Payload size used for seq by the default test workload (0..300 bytes). */
size_t	 ts_size_of(int64_t seq);

/*
 * Read every record of dir (directory or file) with the core reader and
 * check seqs are first, first+1, ... and payloads are ts_fill_payload() of
 * sizefn(seq) bytes (sizefn NULL: payloads not checked). Returns the number
 * of records read, or -1 after printing what was wrong. *stop gets the
 * reader's stop status when not NULL.
 */
long	 ts_verify_log(const char *dir, int64_t first,
	    size_t (*sizefn)(int64_t), int *stop);

/*
 * An assertion for loops over many records: Check's ck_assert_*() record
 * every passing assertion's location in the result file (25 crash cycles
 * over the whole log made it 1 GB, which the runner then took minutes to
 * read). TS_CHECK() records nothing unless it fails.
 */
#define TS_CHECK(cond, ...)	do {					\
	if (!(cond))							\
		ck_abort_msg(__VA_ARGS__);				\
} while (0)

/*
 * Count the threads of pid other than its main one, failing the test on
 * one that does not block SIGTERM, SIGINT and SIGHUP (asynchronous
 * signals must reach the main thread's event loop). A thread that has not
 * started yet still shows every signal blocked.
 */
int	 ts_helper_threads_block_signals(pid_t pid);

/* splitmix64: the next pseudo-random number of *state (any seed). */
uint64_t ts_rand(uint64_t *state);

/*
 * Self-describing variable-length record payloads: "p:n:len:" then
 * filler letters that depend on (p, n) only, len bytes in all (at least
 * the header; ts_rec_payload returns the length it used, at most cap).
 * Printable ASCII, so walctl's text output shows them verbatim.
 * ts_rec_parse returns 1 when buf is exactly such a payload (and sets p
 * and n), 0 when it is not (damaged, cut, or something else).
 */
#define TS_REC_HDR_MAX	40
size_t	 ts_rec_payload(uint8_t *buf, size_t cap, unsigned p, uint64_t n,
	    size_t len);
int	 ts_rec_parse(const uint8_t *buf, size_t len, unsigned *p,
	    uint64_t *n);

/*
 * What a power cut may leave of one file: out gets synced (the file as
 * of its last completed sync) with each 4 KiB page that now differs from
 * it either written back or not, by mode: 0 none of them, 1 a random
 * subset, 2 all of them with the last one torn at a random 512-byte
 * boundary, 3 all but one random page, 4 all of them. rng drives the
 * choices. Returns the number of differing pages left out (or torn).
 */
#define TS_CUT_MODES	5
size_t	 ts_cut_image(uint8_t *out, const uint8_t *synced, const uint8_t *now,
	    size_t len, int mode, uint64_t *rng);

/* Wait up to timeout_ms for path to exist: 1 once it does, else 0. */
int	 ts_wait_file(const char *path, int timeout_ms);

/* Run a suite; returns the process exit status (0 when all passed). */
int	 ts_run(Suite *);

#endif /* TESTSUPPORT_H */
