/*
 * walmmapd tests - the worker processes check_model commands (tsmodel.c)
 * and what they say to each other, one message per SOCK_SEQPACKET frame.
 *
 * A producer owns one libwalmmap connection (socket or shared-memory
 * ring) and appends what it is told, answering each record's seq or error
 * as soon as it knows it; a subscriber follows the daemon from a seq and
 * reports every record it gets (checked: a producer's payload, intact),
 * and can be told to stall or be slow. The test never calls libwalmmap
 * itself, so a call that blocks is a reported hang, not a hung test.
 */
#ifndef TSWORKER_H
#define TSWORKER_H

#include <sys/types.h>

#include <limits.h>
#include <stdint.h>

#include "tsmodel.h"

#define SUB_ITEMS	64

/*
 * Producer: P_APPEND count records n0.. of sizes[] at level, by mode
 * (enum m_mode); the answers are one RES_REC per record (its seq, or the
 * error; pipelined: only whether it was sent), a RES_WAIT for the wait
 * that ends a pipelined command, and RES_DONE. P_CLOSE drops the
 * connection (answered with RES_DONE).
 */
enum { P_APPEND = 1, P_CLOSE, P_QUIT };
struct p_cmd {
	uint32_t	op;
	uint32_t	level;
	uint32_t	mode;
	uint32_t	count;
	uint64_t	n0;
	int32_t		shm;
	uint32_t	sizes[M_BATCH_MAX];
	char		sock[PATH_MAX];
};
enum { RES_REC = 1, RES_WAIT, RES_DONE };
struct p_res {
	uint32_t	kind;
	int32_t		rc;
	uint64_t	n;
	int64_t		seq;
	int64_t		t_sent;
	uint32_t	count;		/* RES_WAIT: records it covers */
	uint32_t	pipelined;
};

/*
 * Subscriber: S_START subscribes from a seq (answered SR_STARTED or
 * SR_ERR), then records come in SR_RECS batches; SR_ERR when the
 * subscription fails; S_STOP ends it (answered SR_STOPPED); S_STALL and
 * S_SLOW (arg 1/0) switch stalling and slowness.
 */
enum { S_START = 1, S_STALL, S_SLOW, S_STOP, S_QUIT };
struct s_cmd {
	uint32_t	op;
	int32_t		arg;
	int64_t		from;
	char		sock[PATH_MAX];
};
struct s_item {
	int64_t		seq;
	uint64_t	n;
	uint32_t	p;
	uint32_t	ok;
	uint32_t	size;
	uint32_t	pad;
};
enum { SR_RECS = 1, SR_ERR, SR_STARTED, SR_STOPPED };
struct s_res {
	uint32_t	kind;
	int32_t		rc;
	uint32_t	count;
	uint32_t	pad;
	union {
		struct s_item	items[SUB_ITEMS];
		char		msg[512];
	} u;
};

enum tw_kind { TW_PRODUCER, TW_SUBSCRIBER };

/*
 * Fork a worker (producer p = arg) on one end of a socketpair; returns
 * the test's end. The worker dies with the test process.
 */
int		 tw_spawn(pid_t *, enum tw_kind, unsigned arg);

void		 tw_producer_main(int fd, unsigned p) __attribute__((noreturn));
void		 tw_subscriber_main(int fd) __attribute__((noreturn));

/* CLOCK_MONOTONIC in ns (comparable between the test and the shim). */
int64_t		 tw_mono_ns(void);

#endif /* TSWORKER_H */
