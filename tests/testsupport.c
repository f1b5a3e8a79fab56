/*
 * walmmapd tests - helpers shared by the Check suites.
 */
#include "config.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testsupport.h"
#include "wal_reader.h"

/* Make a fresh temporary directory. */
char *
ts_mkdtemp(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char *path;

	if (base == NULL || *base == '\0')
		base = "/tmp";
	if (asprintf(&path, "%s/walmmapd-%s-XXXXXX", base, tag) == -1)
		abort();
	if (mkdtemp(path) == NULL) {
		fprintf(stderr, "mkdtemp %s: %s\n", path, strerror(errno));
		abort();
	}
	return (path);
}

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return (remove(path));
}

/* Remove a tree and free its path. */
void
ts_rmtree(char *path)
{
	if (path == NULL)
		return;
	nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(path);
}

/* Read a whole file. */
uint8_t *
ts_read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	ssize_t n;
	size_t got = 0;
	int fd;

	if ((fd = open(path, O_RDONLY)) == -1)
		return (NULL);
	if (fstat(fd, &st) == -1 || (buf = malloc((size_t)st.st_size + 1)) ==
	    NULL) {
		close(fd);
		return (NULL);
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return (buf);
}

/* Create or replace a file. */
int
ts_write_file(const char *path, const void *buf, size_t len)
{
	ssize_t n;
	int fd;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644)) == -1)
		return (-1);
	n = write(fd, buf, len);
	close(fd);
	return (n == (ssize_t)len ? 0 : -1);
}

/* Overwrite bytes of a file. */
int
ts_pwrite_file(const char *path, const void *buf, size_t len, off_t off)
{
	int fd;
	ssize_t n;

	if ((fd = open(path, O_WRONLY)) == -1)
		return (-1);
	n = pwrite(fd, buf, len, off);
	close(fd);
	return (n == (ssize_t)len ? 0 : -1);
}

/* Path of a segment. */
const char *
ts_seg_path(const char *dir, uint64_t id)
{
	static char buf[4096];

	snprintf(buf, sizeof buf, "%s/wal_mmap_%010" PRIu64 ".wal", dir, id);
	return (buf);
}

/* Count entries by prefix. */
int
ts_count_files(const char *dir, const char *prefix)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	if ((d = opendir(dir)) == NULL)
		return (-1);
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(d);
	return (n);
}

/* Deterministic payload byte. */
uint8_t
ts_payload_byte(int64_t seq, size_t i)
{
	uint64_t x = (uint64_t)seq * 0x9E3779B97F4A7C15ull + i * 0xBF58476D1CE4E5B9ull;

	x ^= x >> 29;
	return ((uint8_t)(x * 0x94D049BB133111EBull >> 56));
}

/* Fill a deterministic payload. */
void
ts_fill_payload(uint8_t *buf, size_t len, int64_t seq)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = ts_payload_byte(seq, i);
}

size_t
ts_key_payload(uint8_t *buf, unsigned p, uint64_t n)
{
	size_t len = (size_t)snprintf((char *)buf, 64, "%u:%" PRIu64 ":", p,
	    n);
	size_t extra = (size_t)((p * 31 + n * 7) % 200);

	memset(buf + len, 'a' + (int)(n % 26), extra);
	return (len + extra);
}

int
ts_key_parse(const uint8_t *buf, size_t len, int exact, unsigned *p,
    uint64_t *n)
{
	char tmp[64];
	size_t k = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
	size_t want;
	uint8_t exp[TS_KEY_PAYLOAD_MAX];

	memcpy(tmp, buf, k);
	tmp[k] = '\0';
	if (sscanf(tmp, "%u:%" SCNu64 ":", p, n) != 2)
		return (0);
	want = ts_key_payload(exp, *p, *n);
	if (exact ? want != len : want > len)
		return (0);
	return (memcmp(exp, buf, want) == 0);
}

/* Run fn in a child with a private tmpfs. */
int
ts_with_tmpfs(size_t size, int (*fn)(void *, const char *), void *arg)
{
	char opts[64], *dir;
	pid_t pid;
	int status, pfd[2];
	char ok = 0;

	dir = ts_mkdtemp("tmpfs");
	if (pipe(pfd) == -1)
		abort();
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		snprintf(opts, sizeof opts, "size=%zu,mode=0700", size);
		if (unshare(CLONE_NEWNS) == -1 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1 ||
		    mount("tmpfs", dir, "tmpfs", 0, opts) == -1)
			_exit(111);
		ok = 1;
		if (write(pfd[1], &ok, 1) != 1)
			_exit(112);
		close(pfd[1]);
		_exit(fn(arg, dir));
	}
	close(pfd[1]);
	if (read(pfd[0], &ok, 1) != 1)
		ok = 0;
	close(pfd[0]);
	waitpid(pid, &status, 0);
	ts_rmtree(dir);
	if (!ok)
		return (-1);
	return (WIFEXITED(status) ? WEXITSTATUS(status) : 128 +
	    WTERMSIG(status));
}

/* Run fn in a child as another user. */
int
ts_as_user(uid_t uid, gid_t gid, int (*fn)(void *), void *arg)
{
	return (ts_as_user_groups(uid, gid, 0, NULL, fn, arg));
}

/* Run fn in a child as another user with supplementary groups. */
int
ts_as_user_groups(uid_t uid, gid_t gid, size_t ngroups, const gid_t *groups,
    int (*fn)(void *), void *arg)
{
	pid_t pid;
	int status;

	if ((pid = fork()) == -1)
		return (-1);
	if (pid == 0) {
		if (setgroups(ngroups, groups) == -1 ||
		    setresgid(gid, gid, gid) == -1
		    || setresuid(uid, uid, uid) == -1)
			_exit(125);
		_exit(fn(arg));
	}
	if (waitpid(pid, &status, 0) != pid)
		return (-1);
	return (WIFEXITED(status) ? WEXITSTATUS(status) : 128 +
	    WTERMSIG(status));
}

/* Run a suite and report through the exit status. */
int
ts_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return (failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

/* Default record size for seq. */
size_t
ts_size_of(int64_t seq)
{
	return ((size_t)((uint64_t)seq * 7919u % 301u));
}

/* Read back and check a log. */
long
ts_verify_log(const char *dir, int64_t first, size_t (*sizefn)(int64_t),
    int *stop)
{
	struct wal_reader *r;
	struct wal_record rec;
	struct wal_error err;
	uint8_t *want = NULL;
	long n = 0;
	int rc;

	if (wal_reader_open(dir, &r, &err) != 0) {
		fprintf(stderr, "verify %s: %s\n", dir, err.msg);
		return (-1);
	}
	/* The logs checked here are not being written: a bad end is damage. */
	wal_reader_set_strict(r, 1);
	while ((rc = wal_reader_next(r, &rec, &err)) == 1) {
		if (rec.seq != first + n) {
			fprintf(stderr, "verify %s: seq %lld where %lld was "
			    "expected\n", dir, (long long)rec.seq,
			    (long long)(first + n));
			n = -1;
			break;
		}
		if (sizefn != NULL) {
			size_t len = sizefn(rec.seq);

			want = realloc(want, len + 1);
			ts_fill_payload(want, len, rec.seq);
			if (rec.size != len || memcmp(rec.payload, want, len)) {
				fprintf(stderr, "verify %s: payload of seq "
				    "%lld differs\n", dir, (long long)rec.seq);
				n = -1;
				break;
			}
		}
		n++;
	}
	if (rc < 0) {
		fprintf(stderr, "verify %s: %s\n", dir, err.msg);
		n = -1;
	}
	if (stop != NULL)
		*stop = (int)wal_reader_stopped(r)->status;
	free(want);
	wal_reader_close(r);
	return (n);
}

int
ts_helper_threads_block_signals(pid_t pid)
{
	const unsigned long long want = (1ull << (SIGTERM - 1)) |
	    (1ull << (SIGINT - 1)) | (1ull << (SIGHUP - 1));
	char path[PATH_MAX], line[256];
	unsigned long long blk;
	struct dirent *de;
	int n = 0;
	FILE *f;
	DIR *dir;

	snprintf(path, sizeof path, "/proc/%ld/task", (long)pid);
	ck_assert_ptr_nonnull(dir = opendir(path));
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.' || atol(de->d_name) == (long)pid)
			continue;
		snprintf(path, sizeof path, "/proc/%ld/task/%s/status",
		    (long)pid, de->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;	/* gone meanwhile */
		blk = 0;
		while (fgets(line, sizeof line, f) != NULL)
			if (sscanf(line, "SigBlk: %llx", &blk) == 1)
				break;
		fclose(f);
		ck_assert_msg((blk & want) == want, "thread %s of pid %ld does "
		    "not block SIGTERM/SIGINT/SIGHUP (SigBlk %llx)",
		    de->d_name, (long)pid, blk);
		n++;
	}
	closedir(dir);
	return (n);
}

uint64_t
ts_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (z ^ (z >> 31));
}

/* Filler letter i of record (p, n). */
static uint8_t
ts_rec_fill(unsigned p, uint64_t n, size_t i)
{
	uint64_t x = (n * 0x9e3779b97f4a7c15ull + p) ^ ((uint64_t)i *
	    0xbf58476d1ce4e5b9ull);

	x ^= x >> 31;
	return ((uint8_t)('a' + (x * 0x94d049bb133111ebull >> 59) % 26));
}

size_t
ts_rec_payload(uint8_t *buf, size_t cap, unsigned p, uint64_t n, size_t len)
{
	char hdr[TS_REC_HDR_MAX];
	size_t h, i;
	int k;

	if (len > cap)
		len = cap;
	/* The header names the total length, which depends on its width. */
	for (;;) {
		k = snprintf(hdr, sizeof hdr, "%u:%" PRIu64 ":%zu:", p, n, len);
		h = (size_t)k;
		if (len >= h)
			break;
		len = h;
	}
	memcpy(buf, hdr, h);
	for (i = h; i < len; i++)
		buf[i] = ts_rec_fill(p, n, i);
	return (len);
}

int
ts_rec_parse(const uint8_t *buf, size_t len, unsigned *p, uint64_t *n)
{
	char tmp[TS_REC_HDR_MAX + 1], *end;
	unsigned long long vp, vn, vl;
	size_t k = len < TS_REC_HDR_MAX ? len : TS_REC_HDR_MAX, i, h;
	const char *s;

	memcpy(tmp, buf, k);
	tmp[k] = '\0';
	s = tmp;
	if (*s < '0' || *s > '9')
		return (0);
	vp = strtoull(s, &end, 10);
	if (*end != ':' || end[1] < '0' || end[1] > '9')
		return (0);
	vn = strtoull(end + 1, &end, 10);
	if (*end != ':' || end[1] < '0' || end[1] > '9')
		return (0);
	vl = strtoull(end + 1, &end, 10);
	if (*end != ':' || vp > UINT_MAX || vl != len)
		return (0);
	h = (size_t)(end + 1 - tmp);
	for (i = h; i < len; i++)
		if (buf[i] != ts_rec_fill((unsigned)vp, vn, i))
			return (0);
	*p = (unsigned)vp;
	*n = vn;
	return (1);
}

size_t
ts_cut_image(uint8_t *out, const uint8_t *synced, const uint8_t *now,
    size_t len, int mode, uint64_t *rng)
{
	const size_t pg = 4096;
	size_t page, n, changed = 0, hole = (size_t)-1, last = (size_t)-1;
	size_t off, lost = 0;

	memcpy(out, synced, len);
	for (page = 0; page < len; page += pg) {
		n = len - page < pg ? len - page : pg;
		if (memcmp(synced + page, now + page, n) != 0) {
			last = page;
			if (ts_rand(rng) % ++changed == 0)
				hole = page;
		}
	}
	for (page = 0; page < len; page += pg) {
		n = len - page < pg ? len - page : pg;
		if (memcmp(synced + page, now + page, n) == 0)
			continue;
		if (mode == 0 || (mode == 1 && ts_rand(rng) % 2) ||
		    (mode == 3 && page == hole)) {
			lost++;
			continue;
		}
		if (mode == 2 && page == last) {
			off = (size_t)(ts_rand(rng) % 8) * 512;
			memcpy(out + page, now + page, off < n ? off : n);
			lost++;
			continue;
		}
		memcpy(out + page, now + page, n);
	}
	return (lost);
}

/* Wait for a file to appear (a hang detector, not a timing assertion). */
int
ts_wait_file(const char *path, int timeout_ms)
{
	int waited;

	for (waited = 0; waited <= timeout_ms; waited += 10) {
		if (access(path, F_OK) == 0)
			return (1);
		usleep(10000);
	}
	return (0);
}
