/*
 * walmmapd - configuration (see srvconf.h).
 *
 * walmmapd.conf holds "key = value" lines; '#' starts a comment. Sizes take
 * K, M, G or T suffixes (powers of 1024); durations take ms, s, m, h or d.
 */
#include "config.h"


#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srvconf.h"
#include "wal_format.h"
#include "wal_proto.h"
#include "wal_ring.h"
#include "wal_segment.h"
#include "wal_shm.h"

/* walmmapd -n: the namespace whose defaults apply, or NULL. */
static const char *config_ns;

static int	parse_uint(const char *, uint64_t max, uint64_t *);
static int	parse_bool(const char *, int *);
static int	parse_ids(const char *, int groups, uint32_t *ids, size_t *n);
static int	parse_acl(const char *, struct srv_acl *, char *, size_t);
static char	*trim(char *);
static void	set_str(char **, const char *);

/* Use the defaults of a namespace (valid) from now on. */
void
config_set_namespace(const char *ns)
{
	config_ns = ns;
}

/* Defaults: systemd's directories when set, else documented paths. */
void
config_defaults(struct srv_config *c)
{
	const char *state = getenv("STATE_DIRECTORY");
	const char *run = getenv("RUNTIME_DIRECTORY");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	const char *home = getenv("HOME");
	char buf[PATH_MAX], *colon;

	memset(c, 0, sizeof *c);
	if (state != NULL && *state != '\0') {
		/* systemd may pass several, colon-separated: use the first. */
		snprintf(buf, sizeof buf, "%s", state);
		if ((colon = strchr(buf, ':')) != NULL)
			*colon = '\0';
		set_str(&c->dir, buf);
	} else if (geteuid() == 0 || home == NULL) {
		snprintf(buf, sizeof buf, "%s/lib/walmmapd%s%s", LOCALSTATEDIR,
		    config_ns != NULL ? "/" : "", config_ns != NULL ?
		    config_ns : "");
		set_str(&c->dir, buf);
	} else {
		snprintf(buf, sizeof buf, "%s/.local/state/walmmapd%s%s", home,
		    config_ns != NULL ? "/" : "", config_ns != NULL ?
		    config_ns : "");
		set_str(&c->dir, buf);
	}
	if (run != NULL && *run != '\0') {
		snprintf(buf, sizeof buf, "%s", run);
		if ((colon = strchr(buf, ':')) != NULL)
			*colon = '\0';
		if (config_ns != NULL) {
			strncat(buf, "/", sizeof buf - strlen(buf) - 1);
			strncat(buf, config_ns, sizeof buf - strlen(buf) - 1);
			strncat(buf, ".sock", sizeof buf - strlen(buf) - 1);
		} else
			strncat(buf, "/walmmapd.sock", sizeof buf -
			    strlen(buf) - 1);
		set_str(&c->socket_path, buf);
	} else if (geteuid() != 0 && xdg != NULL && *xdg != '\0') {
		if (config_ns != NULL)
			snprintf(buf, sizeof buf, "%s/walmmapd/%s.sock", xdg,
			    config_ns);
		else
			snprintf(buf, sizeof buf, "%s/%s", xdg,
			    WAL_PROTO_USER_SOCKET);
		set_str(&c->socket_path, buf);
	} else if (config_ns != NULL) {
		snprintf(buf, sizeof buf, "%s/%s.sock", WAL_SYSTEM_SOCKET_DIR,
		    config_ns);
		set_str(&c->socket_path, buf);
	} else
		set_str(&c->socket_path, WAL_PROTO_SYSTEM_SOCKET);
	c->socket_mode = 0666;
	c->socket_group = (gid_t)-1;
	c->segment_size = WAL_SEGMENT_DEFAULT;
	c->ring = WAL_RING_DEFAULT;
	c->prefault = 1;
	c->max_record = WAL_MAX_PAYLOAD;
	c->max_connections = 1024;
	c->hello_timeout_s = 10;
	c->max_subscriber_hold = 1024ull * 1024 * 1024;
	c->forward_hold_max_bytes = 4096ull * 1024 * 1024;
	c->max_inflight = 4u * 1024 * 1024;
	c->max_inflight_total = 256u * 1024 * 1024;
	c->sync_interval_ms = 1000;
	c->commit_delay_ms = 2;
	c->shm = 1;
	c->shm_size = WAL_SHM_DEFAULT_SIZE;
	c->shm_total = 256u * 1024 * 1024;
	c->shm_spin_us = 50;
	snprintf(c->name_prefix, sizeof c->name_prefix, "wal_mmap");
	c->producer_slots = 1024;
	c->producer_journal = 1u << 18;
	c->producer_expire_s = 7 * 86400;
}

/* The configuration file read when -c names none. */
void
config_default_path(char *buf, size_t len)
{
	const char *dir = getenv("CONFIGURATION_DIRECTORY");
	char *colon, name[WAL_PROTO_NAMESPACE_MAX + 32];

	/* A namespace's: walmmapd@NAME.conf beside walmmapd.conf. */
	if (config_ns != NULL)
		snprintf(name, sizeof name, "walmmapd@%s.conf", config_ns);
	else
		snprintf(name, sizeof name, "walmmapd.conf");
	if (dir == NULL || *dir == '\0') {
		snprintf(buf, len, "%s/%s", SYSCONFDIR, name);
		return;
	}
	/* systemd may pass several, colon-separated: use the first. */
	snprintf(buf, len, "%s", dir);
	if ((colon = strchr(buf, ':')) != NULL)
		*colon = '\0';
	strncat(buf, "/", len - strlen(buf) - 1);
	strncat(buf, name, len - strlen(buf) - 1);
}

/* Load a file. */
int
config_load(struct srv_config *c, const char *path, int must_exist,
    char *err, size_t errlen)
{
	char line[4096], why[512], *p, *eq, *key, *val;
	unsigned lineno = 0;
	FILE *f;

	if ((f = fopen(path, "re")) == NULL) {
		if (errno == ENOENT && !must_exist)
			return (0);
		snprintf(err, errlen, "cannot read config file %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	while (fgets(line, sizeof line, f) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errlen, "%s:%u: line too long", path,
			    lineno);
			fclose(f);
			return (-1);
		}
		if ((p = strchr(line, '#')) != NULL)
			*p = '\0';
		p = trim(line);
		if (*p == '\0')
			continue;
		if ((eq = strchr(p, '=')) == NULL) {
			snprintf(err, errlen, "%s:%u: expected \"key = value\", "
			    "got \"%s\"", path, lineno, p);
			fclose(f);
			return (-1);
		}
		*eq = '\0';
		key = trim(p);
		val = trim(eq + 1);
		if (config_set(c, key, val, why, sizeof why) != 0) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			fclose(f);
			return (-1);
		}
	}
	/* A read error is not the end of the file: nothing half-read counts. */
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read config file %s: %s", path,
		    strerror(errno));
		fclose(f);
		return (-1);
	}
	fclose(f);
	return (0);
}

/* Set one key. */
int
config_set(struct srv_config *c, const char *key, const char *val,
    char *err, size_t errlen)
{
	uint64_t v;

#define BAD(...) do { snprintf(err, errlen, __VA_ARGS__); return (-1); } \
	while (0)
	if (strcmp(key, "dir") == 0 || strcmp(key, "directory") == 0) {
		if (*val != '/')
			BAD("dir: \"%s\" is not an absolute path", val);
		set_str(&c->dir, val);
		c->dir_given = 1;
	} else if (strcmp(key, "socket") == 0) {
		if (*val != '/')
			BAD("socket: \"%s\" is not an absolute path", val);
		if (strlen(val) >= 108)
			BAD("socket: path longer than 107 bytes");
		set_str(&c->socket_path, val);
		c->socket_given = 1;
	} else if (strcmp(key, "socket_mode") == 0) {
		char *end;
		unsigned long m;

		errno = 0;
		m = strtoul(val, &end, 8);
		if (*val == '\0' || *end != '\0' || errno != 0 || m > 0777)
			BAD("socket_mode: \"%s\" is not an octal mode such as "
			    "0660", val);
		c->socket_mode = (mode_t)m;
		c->socket_mode_given = 1;
	} else if (strcmp(key, "socket_group") == 0) {
		struct group *gr;

		if (parse_uint(val, UINT32_MAX - 1, &v) == 0)
			c->socket_group = (gid_t)v;
		else if ((gr = getgrnam(val)) != NULL)
			c->socket_group = gr->gr_gid;
		else
			BAD("socket_group: no group \"%s\"", val);
		c->socket_group_given = 1;
	} else if (strcmp(key, "segment_size") == 0) {
		if (config_parse_size(val, &v) != 0 || v < WAL_SEGMENT_MIN ||
		    v > WAL_SEGMENT_MAX || v % WAL_SEGMENT_ALIGN != 0)
			BAD("segment_size: \"%s\" is not a multiple of 64K "
			    "between 64K and 16G", val);
		c->segment_size = v;
	} else if (strcmp(key, "ring") == 0) {
		if (parse_uint(val, WAL_RING_MAX, &v) != 0 || v < WAL_RING_MIN)
			BAD("ring: \"%s\" is not a number of segments from "
			    "%d to %d", val, WAL_RING_MIN, WAL_RING_MAX);
		c->ring = (unsigned)v;
	} else if (strcmp(key, "prefault") == 0) {
		if (parse_bool(val, &c->prefault) != 0)
			BAD("prefault: \"%s\" is not yes or no", val);
	} else if (strcmp(key, "prefault_step") == 0 ||
	    strcmp(key, "writeback_step") == 0) {
		long page = sysconf(_SC_PAGESIZE);

		if (config_parse_size(val, &v) != 0 || v % (uint64_t)page != 0 ||
		    v > WAL_SEGMENT_MAX)
			BAD("%s: \"%s\" is not 0 or a multiple of the page size "
			    "(%ldK) up to 16G", key, val, page / 1024);
		if (strcmp(key, "prefault_step") == 0)
			c->prefault_step = v;
		else
			c->writeback_step = v;
	} else if (strcmp(key, "max_record") == 0) {
		if (config_parse_size(val, &v) != 0 || v == 0 ||
		    v > WAL_MAX_PAYLOAD)
			BAD("max_record: \"%s\" is not a size from 1 to 64M",
			    val);
		c->max_record = (uint32_t)v;
		c->max_record_given = 1;
	} else if (strcmp(key, "max_connections") == 0) {
		if (parse_uint(val, 1000000, &v) != 0 || v == 0)
			BAD("max_connections: \"%s\" is not a number from 1 to "
			    "1000000", val);
		c->max_connections = (unsigned)v;
	} else if (strcmp(key, "max_connections_per_uid") == 0) {
		if (parse_uint(val, 1000000, &v) != 0 || v == 0)
			BAD("max_connections_per_uid: \"%s\" is not a number "
			    "from 1 to 1000000", val);
		c->max_connections_per_uid = (unsigned)v;
		c->max_connections_per_uid_given = 1;
	} else if (strcmp(key, "hello_timeout") == 0) {
		if (config_parse_duration_ms(val, &v) != 0 || v > 3600000 ||
		    (v > 0 && v < 1000))
			BAD("hello_timeout: \"%s\" is not a duration from 1s "
			    "to 1h (0 waits forever)", val);
		c->hello_timeout_s = (unsigned)((v + 999) / 1000);
	} else if (strcmp(key, "idle_timeout") == 0) {
		if (config_parse_duration_ms(val, &v) != 0 || v > 30 *
		    86400000ull || (v > 0 && v < 1000))
			BAD("idle_timeout: \"%s\" is not a duration from 1s "
			    "to 30d (0 keeps idle clients)", val);
		c->idle_timeout_s = (unsigned)((v + 999) / 1000);
	} else if (strcmp(key, "max_subscriber_hold") == 0) {
		if (config_parse_size(val, &v) != 0)
			BAD("max_subscriber_hold: \"%s\" is not a size (0 lets "
			    "subscribers hold everything)", val);
		c->max_subscriber_hold = v;
	} else if (strcmp(key, "max_inflight") == 0) {
		if (config_parse_size(val, &v) != 0 || v < 64 * 1024 ||
		    v > 1024ull * 1024 * 1024)
			BAD("max_inflight: \"%s\" is not a size from 64K to 1G",
			    val);
		c->max_inflight = (uint32_t)v;
	} else if (strcmp(key, "max_inflight_total") == 0) {
		if (config_parse_size(val, &v) != 0 || v < 64 * 1024)
			BAD("max_inflight_total: \"%s\" is not a size of at "
			    "least 64K", val);
		c->max_inflight_total = v;
	} else if (strcmp(key, "sync_interval") == 0) {
		if (config_parse_duration_ms(val, &v) != 0 || v > 3600000)
			BAD("sync_interval: \"%s\" is not a duration up to 1h "
			    "(0 disables the periodic sync)", val);
		c->sync_interval_ms = (unsigned)v;
	} else if (strcmp(key, "commit_delay") == 0) {
		if (config_parse_duration_ms(val, &v) != 0 || v > 1000)
			BAD("commit_delay: \"%s\" is not a duration up to 1s "
			    "(0 syncs at once)", val);
		c->commit_delay_ms = (unsigned)v;
	} else if (strcmp(key, "allow_readers") == 0 ||
	    strcmp(key, "allow_writers") == 0 ||
	    strcmp(key, "allow_admins") == 0) {
		char why[256];
		struct srv_acl *a = key[6] == 'r' ? &c->allow_readers :
		    key[6] == 'w' ? &c->allow_writers : &c->allow_admins;

		if (parse_acl(val, a, why, sizeof why) != 0)
			BAD("%s: %s", key, why);
	} else if ((strcmp(key, "allow_users") == 0 ||
	    strcmp(key, "allow_groups") == 0) && *val == '\0') {
		/* An empty list once admitted everyone without a word. */
		BAD("%s: empty; remove the line for the defaults, or name "
		    "who may connect (see allow_readers and allow_writers)",
		    key);
	} else if (strcmp(key, "allow_users") == 0) {
		if (parse_ids(val, 0, c->allow_uids, &c->nallow_uids) != 0)
			BAD("allow_users: \"%s\" is not a list of user names or "
			    "uids (at most %d)", val, SRV_MAX_ALLOW);
		if (c->nallow_uids == 0)
			BAD("allow_users: \"%s\" names nobody; remove the line "
			    "for the defaults, or name who may connect", val);
	} else if (strcmp(key, "allow_groups") == 0) {
		if (parse_ids(val, 1, c->allow_gids, &c->nallow_gids) != 0)
			BAD("allow_groups: \"%s\" is not a list of group names "
			    "or gids (at most %d)", val, SRV_MAX_ALLOW);
		if (c->nallow_gids == 0)
			BAD("allow_groups: \"%s\" names nobody; remove the line "
			    "for the defaults, or name who may connect", val);
	} else if (strcmp(key, "retain_segments") == 0) {
		if (parse_uint(val, UINT32_MAX, &v) != 0)
			BAD("retain_segments: \"%s\" is not a count (0 keeps "
			    "all)", val);
		c->retain_segments = v;
	} else if (strcmp(key, "retain_bytes") == 0) {
		if (config_parse_size(val, &v) != 0)
			BAD("retain_bytes: \"%s\" is not a size (0 keeps all)",
			    val);
		c->retain_bytes = v;
	} else if (strcmp(key, "retain_age") == 0) {
		if (config_parse_duration_ms(val, &v) != 0)
			BAD("retain_age: \"%s\" is not a duration (0 keeps "
			    "all)", val);
		if (v > 0 && v < 1000)
			BAD("retain_age: \"%s\" is less than 1s (0 keeps all)",
			    val);
		c->retain_age_s = v / 1000;
	} else if (strcmp(key, "forward_hold_max_bytes") == 0) {
		if (config_parse_size(val, &v) != 0)
			BAD("forward_hold_max_bytes: \"%s\" is not a size (0: "
			    "no byte cap)", val);
		c->forward_hold_max_bytes = v;
	} else if (strcmp(key, "forward_hold_max_age") == 0) {
		if (config_parse_duration_ms(val, &v) != 0)
			BAD("forward_hold_max_age: \"%s\" is not a duration "
			    "(0: no age cap)", val);
		c->forward_hold_max_age_s = v / 1000;
	} else if (strcmp(key, "forward_hold_block") == 0) {
		if (parse_bool(val, &c->forward_hold_block) != 0)
			BAD("forward_hold_block: \"%s\" is not yes or no", val);
	} else if (strcmp(key, "shm") == 0) {
		if (parse_bool(val, &c->shm) != 0)
			BAD("shm: \"%s\" is not yes or no", val);
	} else if (strcmp(key, "shm_size") == 0) {
		if (config_parse_size(val, &v) != 0 || v < WAL_SHM_MIN_SIZE ||
		    v > WAL_SHM_MAX_SIZE)
			BAD("shm_size: \"%s\" is not a size from 64K to 256M",
			    val);
		c->shm_size = v;
	} else if (strcmp(key, "shm_total") == 0) {
		if (config_parse_size(val, &v) != 0 || v < WAL_SHM_MIN_SIZE +
		    WAL_SHM_HEADER_SIZE)
			BAD("shm_total: \"%s\" is not a size of at least 68K",
			    val);
		c->shm_total = v;
	} else if (strcmp(key, "start_seq") == 0) {
		if (parse_uint(val, INT64_MAX / 2, &v) != 0)
			BAD("start_seq: \"%s\" is not a seq from 0 to %" PRId64,
			    val, INT64_MAX / 2);
		c->start_seq = (int64_t)v;
	} else if (strcmp(key, "name_prefix") == 0) {
		size_t i, n = strlen(val);

		for (i = 0; i < n; i++)
			if (!isalnum((unsigned char)val[i]) && val[i] != '_' &&
			    val[i] != '-' && val[i] != '.')
				break;
		if (n == 0 || n > WAL_SEG_PREFIX_MAX || val[0] == '.' || i < n)
			BAD("name_prefix: \"%s\" is not 1 to %d letters, digits, "
			    "'_', '-' or '.' (not starting with '.')", val,
			    WAL_SEG_PREFIX_MAX);
		snprintf(c->name_prefix, sizeof c->name_prefix, "%s", val);
	} else if (strcmp(key, "use_large_pages") == 0) {
		if (parse_bool(val, &c->use_large_pages) != 0)
			BAD("use_large_pages: \"%s\" is not yes or no", val);
	} else if (strcmp(key, "shm_total_per_uid") == 0) {
		if (config_parse_size(val, &v) != 0 || v < WAL_SHM_MIN_SIZE +
		    WAL_SHM_HEADER_SIZE)
			BAD("shm_total_per_uid: \"%s\" is not a size of at "
			    "least 68K", val);
		c->shm_total_per_uid = v;
		c->shm_total_per_uid_given = 1;
	} else if (strcmp(key, "shm_spin") == 0) {
		if (config_parse_duration_ms(val, &v) == 0 && v <= 100)
			c->shm_spin_us = (unsigned)(v * 1000);
		else if (strlen(val) > 2 && strlen(val) < 32 && strcmp(val +
		    strlen(val) - 2, "us") == 0) {
			char tmp[32];

			snprintf(tmp, sizeof tmp, "%.*s", (int)strlen(val) - 2,
			    val);
			if (parse_uint(tmp, 100000, &v) != 0)
				BAD("shm_spin: \"%s\" is not a duration up to "
				    "100ms", val);
			c->shm_spin_us = (unsigned)v;
		}
		else
			BAD("shm_spin: \"%s\" is not a duration up to 100ms",
			    val);
	} else if (strcmp(key, "metrics_listen") == 0) {
		char host[INET6_ADDRSTRLEN], why[160];
		uint16_t port;

		free(c->metrics_listen);
		c->metrics_listen = NULL;
		if (*val == '\0' || strcmp(val, "no") == 0 ||
		    strcmp(val, "off") == 0)
			return (0);
		if (config_parse_listen(val, host, sizeof host, &port, why,
		    sizeof why) != 0)
			BAD("metrics_listen: \"%s\" %s", val, why);
		set_str(&c->metrics_listen, val);
	} else if (strcmp(key, "producers") == 0) {
		if (parse_uint(val, 65536, &v) != 0 || v == 0)
			BAD("producers: \"%s\" is not a number from 1 to "
			    "65536", val);
		c->producer_slots = (unsigned)v;
	} else if (strcmp(key, "producer_journal") == 0) {
		if (parse_uint(val, 1u << 26, &v) != 0 || v < 2 ||
		    (v & (v - 1)) != 0)
			BAD("producer_journal: \"%s\" is not a power of two "
			    "from 2 to 67108864", val);
		c->producer_journal = (unsigned)v;
	} else if (strcmp(key, "producer_expire") == 0) {
		if (config_parse_duration_ms(val, &v) != 0 || v < 1000 ||
		    v > 3650ull * 86400000)
			BAD("producer_expire: \"%s\" is not a duration from "
			    "1s to 3650d", val);
		c->producer_expire_s = (v + 999) / 1000;
	} else if (strcmp(key, "debug") == 0) {
		if (parse_bool(val, &c->debug) != 0)
			BAD("debug: \"%s\" is not yes or no", val);
	} else
		BAD("unknown key \"%s\"", key);
	return (0);
#undef BAD
}

/* Checks across keys; a default max_record shrinks to fit a segment. */
int
config_validate(struct srv_config *c, char *err, size_t errlen)
{
	uint64_t room = c->segment_size - WAL_FILE_HEADER_SIZE -
	    WAL_RECORD_OVERHEAD;

	if (!c->max_record_given && c->max_record > room)
		c->max_record = (uint32_t)room;
	/* By default one uid may take a quarter of the connections. */
	if (!c->max_connections_per_uid_given)
		c->max_connections_per_uid = c->max_connections / 4 > 0 ?
		    c->max_connections / 4 : 1;
	/* And a quarter of the rings' memory, at least one ring. */
	if (!c->shm_total_per_uid_given) {
		c->shm_total_per_uid = c->shm_total / 4;
		if (c->shm_total_per_uid < WAL_SHM_HEADER_SIZE +
		    wal_shm_ring_size(c->shm_size))
			c->shm_total_per_uid = WAL_SHM_HEADER_SIZE +
			    wal_shm_ring_size(c->shm_size);
	}
	if (c->max_record > room) {
		snprintf(err, errlen, "max_record %" PRIu32 " does not fit in "
		    "a segment of %" PRIu64 " bytes (at most %" PRIu64 "); "
		    "raise segment_size or lower max_record", c->max_record,
		    c->segment_size, room);
		return (-1);
	}
	if (c->shm && c->shm_total < WAL_SHM_HEADER_SIZE +
	    wal_shm_ring_size(c->shm_size)) {
		snprintf(err, errlen, "shm_total %" PRIu64 " is less than one "
		    "ring of shm_size (%" PRIu64 " bytes and a %u-byte header); "
		    "raise shm_total or lower shm_size", c->shm_total,
		    wal_shm_ring_size(c->shm_size), WAL_SHM_HEADER_SIZE);
		return (-1);
	}
	if (c->shm && c->shm_total_per_uid < WAL_SHM_HEADER_SIZE +
	    wal_shm_ring_size(c->shm_size)) {
		snprintf(err, errlen, "shm_total_per_uid %" PRIu64 " is less "
		    "than one ring of shm_size (%" PRIu64 " bytes and a "
		    "%u-byte header); raise shm_total_per_uid or lower "
		    "shm_size", c->shm_total_per_uid,
		    wal_shm_ring_size(c->shm_size), WAL_SHM_HEADER_SIZE);
		return (-1);
	}
	return (0);
}

/* Deep copy. */
void
config_copy(struct srv_config *dst, const struct srv_config *src)
{
	*dst = *src;
	dst->dir = src->dir ? strdup(src->dir) : NULL;
	dst->socket_path = src->socket_path ? strdup(src->socket_path) : NULL;
	dst->metrics_listen = src->metrics_listen ?
	    strdup(src->metrics_listen) : NULL;
}

void
config_free(struct srv_config *c)
{
	free(c->dir);
	free(c->socket_path);
	free(c->metrics_listen);
	c->dir = c->socket_path = c->metrics_listen = NULL;
}

/* "64M", "1G", "4096": powers of 1024. */
int
config_parse_size(const char *s, uint64_t *out)
{
	char *end;
	uint64_t v, mul = 1;

	if (!isdigit((unsigned char)*s))
		return (-1);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return (-1);
	switch (toupper((unsigned char)*end)) {
	case '\0':
		break;
	case 'K':
		mul = 1ull << 10;
		break;
	case 'M':
		mul = 1ull << 20;
		break;
	case 'G':
		mul = 1ull << 30;
		break;
	case 'T':
		mul = 1ull << 40;
		break;
	default:
		return (-1);
	}
	if (*end != '\0') {
		end++;
		if (toupper((unsigned char)*end) == 'I')
			end++;
		if (toupper((unsigned char)*end) == 'B')
			end++;
		if (*end != '\0')
			return (-1);
	}
	if (v > UINT64_MAX / mul)
		return (-1);
	*out = v * mul;
	return (0);
}

/* "250ms", "1s", "5m", "2h", "30d", bare number = seconds. */
int
config_parse_duration_ms(const char *s, uint64_t *out)
{
	char *end;
	uint64_t v, mul;

	if (!isdigit((unsigned char)*s))
		return (-1);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return (-1);
	if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		mul = 1000;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else if (strcmp(end, "d") == 0)
		mul = 86400000;
	else
		return (-1);
	if (v > UINT64_MAX / mul)
		return (-1);
	*out = v * mul;
	return (0);
}

/* "ADDR:PORT", "[ADDR6]:PORT": numeric, so no lookup can change it. */
int
config_parse_listen(const char *s, char *host, size_t hostlen,
    uint16_t *port, char *why, size_t whylen)
{
	char addr[INET6_ADDRSTRLEN + 2];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *colon, *start = s, *end;
	uint64_t v;
	int v6 = 0;

	if (*s == '[') {
		if ((end = strchr(s, ']')) == NULL || end[1] != ':') {
			snprintf(why, whylen, "is not [IPv6 address]:port");
			return (-1);
		}
		start = s + 1;
		colon = end + 1;
		v6 = 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL) {
			snprintf(why, whylen, "has no port: give address:port, "
			    "such as 127.0.0.1:9101");
			return (-1);
		}
		end = colon;
	}
	if ((size_t)(end - start) >= sizeof addr || end == start) {
		snprintf(why, whylen, "has no valid address before the port");
		return (-1);
	}
	snprintf(addr, sizeof addr, "%.*s", (int)(end - start), start);
	if (inet_pton(v6 ? AF_INET6 : AF_INET, addr, bin) != 1) {
		snprintf(why, whylen, "does not start with a numeric %s "
		    "address (IPv6 goes in brackets: [::1]:9101)", v6 ?
		    "IPv6" : "IPv4");
		return (-1);
	}
	if (parse_uint(colon + 1, 65535, &v) != 0 || v == 0) {
		snprintf(why, whylen, "does not end with a port from 1 to "
		    "65535");
		return (-1);
	}
	if (strlen(addr) >= hostlen) {
		snprintf(why, whylen, "has an address too long");
		return (-1);
	}
	memcpy(host, addr, strlen(addr) + 1);
	*port = (uint16_t)v;
	return (0);
}

static int
parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	uint64_t v;

	if (!isdigit((unsigned char)*s))
		return (-1);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return (-1);
	*out = v;
	return (0);
}

static int
parse_bool(const char *s, int *out)
{
	if (strcmp(s, "yes") == 0 || strcmp(s, "true") == 0 ||
	    strcmp(s, "on") == 0 || strcmp(s, "1") == 0)
		*out = 1;
	else if (strcmp(s, "no") == 0 || strcmp(s, "false") == 0 ||
	    strcmp(s, "off") == 0 || strcmp(s, "0") == 0)
		*out = 0;
	else
		return (-1);
	return (0);
}

/* Comma- or space-separated names or numbers. */
static int
parse_ids(const char *s, int groups, uint32_t *ids, size_t *n)
{
	char buf[4096], *tok, *save;
	uint64_t v;

	snprintf(buf, sizeof buf, "%s", s);
	*n = 0;
	for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
	    tok = strtok_r(NULL, ", \t", &save)) {
		if (*n == SRV_MAX_ALLOW)
			return (-1);
		if (parse_uint(tok, UINT32_MAX - 1, &v) == 0)
			ids[(*n)++] = (uint32_t)v;
		else if (groups) {
			struct group *gr = getgrnam(tok);

			if (gr == NULL)
				return (-1);
			ids[(*n)++] = gr->gr_gid;
		} else {
			struct passwd *pw = getpwnam(tok);

			if (pw == NULL)
				return (-1);
			ids[(*n)++] = pw->pw_uid;
		}
	}
	return (0);
}

/*
 * allow_readers and the like: "all", "none", or user names and uids and
 * @group names and @gids, separated by commas or blanks.
 */
static int
parse_acl(const char *s, struct srv_acl *a, char *err, size_t errlen)
{
	char buf[4096], *tok, *save;
	uint64_t v;
	int none = 0;

	memset(a, 0, sizeof *a);
	a->set = 1;
	if (strlen(s) >= sizeof buf) {
		snprintf(err, errlen, "list too long");
		return (-1);
	}
	snprintf(buf, sizeof buf, "%s", s);
	for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
	    tok = strtok_r(NULL, ", \t", &save)) {
		if (strcmp(tok, "all") == 0)
			a->all = 1;
		else if (strcmp(tok, "none") == 0)
			none = 1;
		else if (*tok == '@') {
			struct group *gr;

			if (a->ngids == SRV_MAX_ALLOW) {
				snprintf(err, errlen, "more than %d groups",
				    SRV_MAX_ALLOW);
				return (-1);
			}
			if (parse_uint(tok + 1, UINT32_MAX - 1, &v) == 0)
				a->gids[a->ngids++] = (gid_t)v;
			else if ((gr = getgrnam(tok + 1)) != NULL)
				a->gids[a->ngids++] = gr->gr_gid;
			else {
				snprintf(err, errlen, "no group \"%s\"", tok + 1);
				return (-1);
			}
		} else {
			struct passwd *pw;

			if (a->nuids == SRV_MAX_ALLOW) {
				snprintf(err, errlen, "more than %d users",
				    SRV_MAX_ALLOW);
				return (-1);
			}
			if (parse_uint(tok, UINT32_MAX - 1, &v) == 0)
				a->uids[a->nuids++] = (uid_t)v;
			else if ((pw = getpwnam(tok)) != NULL)
				a->uids[a->nuids++] = pw->pw_uid;
			else {
				snprintf(err, errlen, "no user \"%s\" (a group "
				    "is written @%s)", tok, tok);
				return (-1);
			}
		}
	}
	if (!a->all && !none && a->nuids == 0 && a->ngids == 0) {
		snprintf(err, errlen, "empty; write \"none\" for root and "
		    "walmmapd's own user only, \"all\" for everyone, or "
		    "remove the line for the default");
		return (-1);
	}
	if ((a->all || none) && (a->all + none > 1 || a->nuids > 0 ||
	    a->ngids > 0)) {
		snprintf(err, errlen, "\"all\" and \"none\" stand alone");
		return (-1);
	}
	return (0);
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return (s);
}

static void
set_str(char **dst, const char *v)
{
	free(*dst);
	if ((*dst = strdup(v)) == NULL)
		abort();
}

void
config_ring(const struct srv_config *c, int dirfd, struct wal_ring_config *rc)
{
	memset(rc, 0, sizeof *rc);
	rc->dir = c->dir;
	rc->has_dirfd = 1;
	rc->dirfd = dirfd;
	rc->segment_size = c->segment_size;
	rc->ring_segments = c->ring;
	rc->no_prefault = !c->prefault;
	rc->large_pages = c->use_large_pages;
	rc->prefault_step = c->prefault_step;
	rc->writeback_step = c->writeback_step;
	rc->start_seq = c->start_seq;
}
