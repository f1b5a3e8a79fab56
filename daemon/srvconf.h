/*
 * walmmapd - configuration: defaults, walmmapd.conf, command-line options.
 */
#ifndef SRVCONF_H
#define SRVCONF_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#define SRV_DEFAULT_CONF	SYSCONFDIR "/walmmapd.conf"
#define SRV_MAX_ALLOW		64

/*
 * Who holds one right (rights.c): users and groups named in allow_readers,
 * allow_writers or allow_admins, or everyone ("all"). Not set: the
 * default of that right.
 */
struct srv_acl {
	int		 set;
	int		 all;
	uid_t		 uids[SRV_MAX_ALLOW];
	size_t		 nuids;
	gid_t		 gids[SRV_MAX_ALLOW];
	size_t		 ngids;
};

struct srv_config {
	char		*dir;
	char		*socket_path;
	mode_t		 socket_mode;
	gid_t		 socket_group;		/* (gid_t)-1: unchanged */
	uint64_t	 segment_size;
	unsigned	 ring;
	int		 prefault;
	uint64_t	 prefault_step;		/* 0: a segment at once */
	uint64_t	 writeback_step;	/* 0: a range at once */
	uint32_t	 max_record;
	unsigned	 max_connections;
	unsigned	 max_connections_per_uid;
	unsigned	 hello_timeout_s;	/* 0: wait for HELLO forever */
	unsigned	 idle_timeout_s;	/* 0: idle clients stay */
	uint64_t	 max_subscriber_hold;	/* 0: subscribers hold all */
	uint32_t	 max_inflight;
	uint64_t	 max_inflight_total;	/* all clients' replies */
	unsigned	 sync_interval_ms;	/* 0: no periodic sync */
	unsigned	 commit_delay_ms;	/* wait for a sync's group */
	uid_t		 allow_uids[SRV_MAX_ALLOW];
	size_t		 nallow_uids;
	gid_t		 allow_gids[SRV_MAX_ALLOW];
	size_t		 nallow_gids;
	struct srv_acl	 allow_readers;		/* rights.c */
	struct srv_acl	 allow_writers;
	struct srv_acl	 allow_admins;
	int		 socket_mode_given;
	int		 socket_group_given;
	uint64_t	 shm_total_per_uid;	/* one uid's rings */
	int		 shm_total_per_uid_given;
	int64_t		 start_seq;		/* first seq of a new log */
	char		 name_prefix[40];	/* segment names' prefix */
	int		 use_large_pages;	/* MADV_HUGEPAGE on segments */
	uint64_t	 retain_segments;	/* 0: keep all */
	uint64_t	 retain_bytes;		/* 0: keep all */
	uint64_t	 retain_age_s;		/* 0: keep all */
	uint64_t	 forward_hold_max_bytes; /* 0: no byte cap */
	uint64_t	 forward_hold_max_age_s; /* 0: no age cap */
	int		 forward_hold_block;	/* past the cap producers wait */
	int		 shm;			/* shared-memory rings allowed */
	uint64_t	 shm_size;		/* ring size, and the most */
	uint64_t	 shm_total;		/* all rings' memory */
	unsigned	 shm_spin_us;		/* drainer spin before sleeping */
	char		*metrics_listen;	/* "ADDR:PORT" for /metrics, or
						   NULL: off */
	unsigned	 producer_slots;	/* new producer table's size */
	unsigned	 producer_journal;	/* ... its journal's entries */
	uint64_t	 producer_expire_s;	/* idle producers may go */
	int		 debug;
	int		 dir_given;		/* not a default */
	int		 socket_given;
	int		 max_record_given;
	int		 max_connections_per_uid_given;
};

/*
 * The file read when none is named: $CONFIGURATION_DIRECTORY/walmmapd.conf
 * (systemd's ConfigurationDirectory=) when set, else SRV_DEFAULT_CONF.
 */
void	config_default_path(char *buf, size_t len);

/*
 * walmmapd -n NAME: the defaults of namespace NAME (valid, kept) from now
 * on: walmmapd@NAME.conf, LOCALSTATEDIR/lib/walmmapd/NAME, NAME.sock.
 */
void	config_set_namespace(const char *);

/* Fill in the built-in defaults (dir and socket from the environment). */
void	config_defaults(struct srv_config *);

/*
 * Read a config file over cfg. A missing file is fine when !must_exist.
 * On error returns -1 with "FILE:LINE: reason" in err.
 */
int	config_load(struct srv_config *, const char *path, int must_exist,
	    char *err, size_t errlen);

/* Set one key from text (file or command line). -1 with reason in err. */
int	config_set(struct srv_config *, const char *key, const char *value,
	    char *err, size_t errlen);

/* Cross-field checks after everything is loaded. */
int	config_validate(struct srv_config *, char *err, size_t errlen);

/*
 * The ring's settings from the configuration, for the data directory
 * open as dirfd: every key that shapes segments, and start_seq, for the
 * first open and the reopen after a failed exec alike. start_seq acts only
 * on a directory where no seq was ever handed out (the reopen can find
 * one: no record yet, and the first open's checkpoint not written).
 */
struct wal_ring_config;
void	config_ring(const struct srv_config *, int dirfd,
	    struct wal_ring_config *);

/* Copy a config (strings duplicated). */
void	config_copy(struct srv_config *dst, const struct srv_config *src);

/* Free the strings of a config. */
void	config_free(struct srv_config *);

/* Value parsers, exposed for the command line and tests. */
int	config_parse_size(const char *, uint64_t *);
int	config_parse_duration_ms(const char *, uint64_t *);

/*
 * "127.0.0.1:9101" or "[::1]:9101" (numeric addresses only): the address
 * into host (without brackets) and the port. 0, or -1 with why.
 */
int	config_parse_listen(const char *, char *host, size_t hostlen,
	    uint16_t *port, char *why, size_t whylen);

#endif /* SRVCONF_H */
