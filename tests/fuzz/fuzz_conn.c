/*
 * libFuzzer target: walmmapd's connection handling, stateful.
 *
 * Each input runs a real daemon core in this process: the daemon's own
 * objects (every daemon/ file; walmmapd.c is included below with its main
 * renamed, so its sync and tick callbacks are the real ones), a real event
 * base, a real wal_ring on a fresh directory under $TMPDIR (64 KiB
 * segments, ring of 2, no prefault), the sync, segment and closer
 * threads, and the daemon's own listening socket in that directory
 * (srv_listen). Fake clients connect to it and are accepted by
 * server_accept_cb, so the allow-list and whatever else accepting does
 * apply; their sockets live in the same event base, so one loop runs the
 * daemon and reads its replies.
 * The input is a program (see fc_run): frames from up to FC_SLOTS clients
 * (HELLO of both versions, APPEND, APPEND_FD with and without a memfd,
 * SYNC, STATUS, ROTATE, SUBSCRIBE, PING, SHM_OPEN, and the version-2
 * PRODUCER, APPEND_P with resends, FWD_REGISTER, FWD_POSITION, METRICS),
 * raw frames, records written into a shared-memory ring and bytes written
 * over it, reconnects, settles (wait until every client's replies are in)
 * and daemon ticks. Timers the daemon arms (the ROTATE rate limit, the
 * commit delay) are fired early, so an input takes milliseconds.
 *
 * RESTART is never sent: once implemented it would re-execute this
 * process.
 *
 * After each input, checked (any violation aborts with a message):
 *  - every reply is a valid daemon frame (wal_proto_check) and answers a
 *    request of its own connection; errors carry a known code; a v2
 *    request on a v1 connection gets WAL_PERR_VERSION and nothing else;
 *  - an APPEND (or APPEND_FD, APPEND_P) acknowledged at written or
 *    durable is acknowledged once, with its record count; on one
 *    connection acknowledged seqs increase; no two acknowledgements that
 *    are not duplicates (WAL_ACK_F_DUP) share a seq, across connections;
 *  - one processed at written or durable that got neither an ACK nor an
 *    ERROR is a violation;
 *  - an APPEND_P below its producer's next seq gets a duplicate entry
 *    (WAL_ACK_F_DUP, the original seq or -1) for the records in the log
 *    already, then, if it goes past them, one for the rest (same id);
 *    a duplicate's seqs hold the records its producer wrote under those
 *    producer seqs (compared where the client never sent other bytes
 *    under them); a producer seq is never acknowledged under two log
 *    seqs, duplicates included;
 *  - the log read back (wal_reader) is gap-free from seq 0, ends cleanly
 *    at the ring's next seq, holds at each acknowledged seq exactly the
 *    record acknowledged, and every record not acknowledged is one sent
 *    at level none (or sent by a client before it vanished) and not
 *    written twice; every level-none record that was certainly processed
 *    is there, and every ring record its ring's header counts as written;
 *  - records streamed to a subscriber are consecutive and equal the log's;
 *  - DURABLE never reports a seq past the log's end;
 *  - no crash, leak or sanitizer report, no hang (FC_HANG_S per settle).
 */
#include "config.h"

#define main walmmapd_main
#include "../../daemon/walmmapd.c"
#undef main

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <dirent.h>

#include "wal_reader.h"
#include "wal_shm.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);
int	LLVMFuzzerInitialize(int *, char ***);

/*
 * Start-up steps that modules being written in parallel add to main()
 * (#16 producer table, #14 forwarders, #15 rights). Weak: called when
 * linked in (fc_start, fc_stop), so the target sets the daemon up as
 * main() does once they are merged. A merged prototype that differs from
 * these stops the build here: update them then.
 */
void	prod_open(struct server *) __attribute__((weak));
void	prod_close(struct server *) __attribute__((weak));
int	fwd_open(struct server *, char *, size_t) __attribute__((weak));
void	fwd_close(struct server *) __attribute__((weak));
void	rights_init(struct server *) __attribute__((weak));

#define FC_SLOTS	4	/* clients at once */
#define FC_CONNS	24	/* connections per input (reconnects) */
#define FC_FRAMES	384	/* frames per input */
#define FC_HANG_S	20	/* a settle longer than this is a hang */
#define FC_RUNS		8	/* duplicate entries of a frame checked */

/* A record sent: its size and a hash of its bytes. */
struct fc_rec {
	uint32_t	 len;
	uint64_t	 hash;
};

enum fc_state { FS_PENDING, FS_ACKED, FS_ERRORED, FS_ANSWERED };

struct fc_frame {
	int		 conn;		/* index in fc.conns */
	uint64_t	 id;
	uint16_t	 type;
	int		 valid;		/* passes wal_proto_check */
	int		 level;		/* effective ack level (appends) */
	int		 writes;	/* carries records for the log */
	size_t		 rec0, nrec;	/* in fc.recs */
	uint64_t	 pseq;		/* APPEND_P: first producer seq */
	uint64_t	 producer;	/* APPEND_P: its connection's (fc_verify) */
	uint32_t	 dup_n;		/* APPEND_P: records answered as in the
					   log already, in runs: */
	int		 nruns;
	uint32_t	 run_n[FC_RUNS];	/* records of each duplicate entry */
	int64_t		 run_seq[FC_RUNS];	/* its first seq, -1 unknown */
	enum fc_state	 state;
	uint8_t		*copy;		/* APPEND_P: its bytes, to resend */
	size_t		 copylen;
	int64_t		 first_seq;	/* records written: rec0 + dup_n ... */
	uint32_t	 count;
};

struct fc_conn {
	int		 fd;		/* the client's end, -1 closed */
	struct event	*ev;
	int		 hello;		/* a valid HELLO was sent */
	unsigned	 ack;		/* its level */
	unsigned	 version;	/* from WELCOME, 0 before */
	int		 eof;		/* the daemon closed it */
	int		 dropped;	/* we closed it abruptly */
	int		 fatal;		/* fatal ERROR received ... */
	uint64_t	 fatal_id;	/* ... for this id (0: unknown) */
	uint64_t	 marker;	/* settle marker id, 0 none */
	int		 marker_done;
	int64_t		 last_ack_end;	/* after the last non-dup ack */
	int64_t		 sub_last;	/* last streamed seq, -1 */
	uint64_t	 producer;	/* from PRODUCER_OK */
	uint64_t	 next_pseq;
	uint64_t	 ring_pseq;	/* after the last pseq a ring took */
	uint8_t		*shm;		/* its ring (SHM_READY), mapped */
	size_t		 shm_len;
	int		 shm_bell;	/* our doorbell to the daemon */
	uint32_t	 shm_hsize;	/* from SHM_READY, not the ring: */
	uint64_t	 shm_size;	/*   a scribble may change that */
	uint32_t	 shm_max;
	uint64_t	 shm_written;	/* its header's count at the end */
	uint64_t	 shm_seen;	/* (fc_verify) */
};

struct fc_sub { int64_t seq; struct fc_rec r; };

static struct {
	struct server	 srv;
	char		 dir[256];
	struct fc_conn	 conns[FC_CONNS];
	int		 nconns;
	int		 slot[FC_SLOTS];	/* current conn of a slot, -1 */
	struct fc_frame	 frames[FC_FRAMES + FC_CONNS * 2];
	size_t		 nframes;
	struct fc_rec	*recs;
	size_t		 nrecs, caprecs;
	struct fc_sub	*subs;
	size_t		 nsubs, capsubs;
	int64_t		 max_durable;
	struct event	*ev_guard;
	int		 hung;
	int		 scribbled;	/* a ring was written over at random */
	int		 trace;		/* $FUZZ_CONN_TRACE: replies to fd 2 */
	uint8_t		 rx[WAL_PROTO_MAX_FRAME];
	uint8_t		 tx[WAL_PROTO_MAX_FRAME];
	/* The input being run. */
	const uint8_t	*in;
	size_t		 inlen, inoff;
} fc;

static void	fc_fail(const char *, ...)
		    __attribute__((format(printf, 1, 2), noreturn));

/* An invariant does not hold: say which, and crash for libFuzzer. */
static void
fc_fail(const char *fmt, ...)
{
	va_list ap;

	/* Straight to fd 2: stderr may be /dev/null (LLVMFuzzerInitialize). */
	va_start(ap, fmt);
	dprintf(2, "fuzz_conn: invariant violated (%s): ", fc.dir);
	vdprintf(2, fmt, ap);
	dprintf(2, "\n");
	va_end(ap);
	abort();
}

static uint64_t
fc_hash(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (n-- > 0)
		h = (h ^ *p++) * 0x100000001b3ull;
	return (h);
}

/* Next input byte (0 once it is used up). */
static uint8_t
fc_u8(void)
{
	return (fc.inoff < fc.inlen ? fc.in[fc.inoff++] : 0);
}

static uint32_t
fc_u32(void)
{
	uint32_t v = fc_u8();

	v |= (uint32_t)fc_u8() << 8;
	v |= (uint32_t)fc_u8() << 16;
	return (v | (uint32_t)fc_u8() << 24);
}

static uint64_t
fc_u64(void)
{
	uint64_t v = fc_u32();

	return (v | (uint64_t)fc_u32() << 32);
}

/* Fill p with n input bytes (zeros once it is used up). */
static void
fc_bytes(uint8_t *p, size_t n)
{
	size_t k = fc.inlen - fc.inoff < n ? fc.inlen - fc.inoff : n;

	memcpy(p, fc.in + fc.inoff, k);
	memset(p + k, 0, n - k);
	fc.inoff += k;
}

static void
fc_add_rec(const uint8_t *p, uint32_t len)
{
	if (fc.nrecs == fc.caprecs) {
		fc.caprecs = fc.caprecs ? fc.caprecs * 2 : 1024;
		if ((fc.recs = realloc(fc.recs, fc.caprecs *
		    sizeof *fc.recs)) == NULL)
			abort();
	}
	fc.recs[fc.nrecs].len = len;
	fc.recs[fc.nrecs].hash = fc_hash(p, len);
	fc.nrecs++;
}

static struct fc_frame *
fc_frame_by_id(int conn, uint64_t id)
{
	if (id == 0 || id > fc.nframes)
		return (NULL);
	if (fc.frames[id - 1].conn != conn)
		return (NULL);
	return (&fc.frames[id - 1]);
}

static int
fc_is_v2(unsigned type)
{
	return (type >= WAL_MSG_PRODUCER && type <= WAL_MSG_RESTART);
}

/*
 * An ACK entry for frame f. An APPEND_P whose records are in the log
 * already gets WAL_ACK_F_DUP entries for them first, one per run of
 * consecutive seqs (their original first seq; -1 for what the producer
 * table's journal no longer holds), then, if it goes past them, an entry
 * for the rest, written now: all with its id (walmmap-protocol(7),
 * APPEND_P; daemon/producers.c prod_append_check).
 */
static void
fc_on_ack(int ci, struct fc_conn *cl, const struct wal_ack_entry *e)
{
	struct fc_frame *f = fc_frame_by_id(ci, e->id);

	if (f == NULL || !f->writes)
		fc_fail("ACK for id %" PRIu64 ", not an append of this "
		    "connection", e->id);
	if (fc.trace)
		dprintf(2, "conn %d    ack id %" PRIu64 " seq %" PRId64 "+%u%s\n",
		    ci, e->id, e->first_seq, e->count,
		    e->flags & WAL_ACK_F_DUP ? " dup" : "");
	if (f->state == FS_ACKED)
		fc_fail("frame %" PRIu64 " acknowledged twice", e->id);
	if (e->flags & ~(uint32_t)WAL_ACK_F_DUP)
		fc_fail("ACK flags %#x", e->flags);
	if (e->flags != 0 && (cl->version < 2 || f->type != WAL_MSG_APPEND_P))
		fc_fail("ACK flags %#x for %s on a version %u connection",
		    e->flags, wal_proto_type_name(f->type), cl->version);
	if (f->type == WAL_MSG_APPEND_P && cl->version < 2)
		fc_fail("APPEND_P acknowledged on a version 1 connection");
	if (e->flags & WAL_ACK_F_DUP) {
		if (e->count == 0 || e->count > f->nrec - f->dup_n)
			fc_fail("duplicate ACK of %u records for a frame of "
			    "%zu, %u of them answered before", e->count,
			    f->nrec, f->dup_n);
		if (e->first_seq < -1)
			fc_fail("duplicate ACK with seq %" PRId64,
			    e->first_seq);
		if (f->nruns > 0 && f->nruns < FC_RUNS &&
		    f->run_seq[f->nruns - 1] >= 0 && e->first_seq >= 0 &&
		    e->first_seq < f->run_seq[f->nruns - 1] +
		    f->run_n[f->nruns - 1])
			fc_fail("duplicate ACK runs of frame %" PRIu64 " at "
			    "seq %" PRId64 " after %" PRId64, e->id,
			    e->first_seq, f->run_seq[f->nruns - 1]);
		if (f->nruns < FC_RUNS) {	/* the first ones are checked */
			f->run_n[f->nruns] = e->count;
			f->run_seq[f->nruns] = e->first_seq;
			f->nruns++;
		}
		f->dup_n += e->count;
		if (f->dup_n == f->nrec) {	/* all of it: answered */
			f->state = FS_ACKED;
			f->first_seq = 0;
			f->count = 0;
		}
		return;
	}
	if (e->count == 0 || e->count > f->nrec - f->dup_n)
		fc_fail("ACK of %u records for a frame of %zu (%u of them "
		    "duplicates)", e->count, f->nrec, f->dup_n);
	if (e->first_seq < 0)
		fc_fail("ACK with seq %" PRId64, e->first_seq);
	if (e->first_seq < cl->last_ack_end)
		fc_fail("ACK seq %" PRId64 " after one ending at %" PRId64
		    " on one connection", e->first_seq, cl->last_ack_end);
	cl->last_ack_end = e->first_seq + e->count;
	f->state = FS_ACKED;
	f->first_seq = e->first_seq;
	f->count = e->count;
}

/* Handle one reply frame (and the descriptors it carried). */
static void
fc_on_reply(int ci, const uint8_t *buf, size_t n, const int *fds, int nfds)
{
	struct fc_conn *cl = &fc.conns[ci];
	struct wal_msg hdr;
	struct fc_frame *f;
	char why[256];
	size_t i;

	if (wal_proto_check(buf, n, 1, why, sizeof why) != 0)
		fc_fail("daemon sent an invalid frame: %s", why);
	memcpy(&hdr, buf, sizeof hdr);
	if (fc.trace)
		dprintf(2, "conn %d <- %s id %" PRIu64 "%s%.*s\n", ci,
		    wal_proto_type_name(hdr.type), hdr.id,
		    hdr.type == WAL_MSG_ERROR ? ": " : "",
		    hdr.type == WAL_MSG_ERROR ? (int)(n -
		    sizeof(struct wal_msg_error)) : 0,
		    (const char *)buf + sizeof(struct wal_msg_error));
	if (cl->fatal)
		fc_fail("%s after a fatal ERROR", wal_proto_type_name(
		    hdr.type));
	f = fc_frame_by_id(ci, hdr.id);
	if (hdr.id != 0 && f == NULL)
		fc_fail("%s with id %" PRIu64 " this connection never sent",
		    wal_proto_type_name(hdr.type), hdr.id);
	if (f != NULL && hdr.id == cl->marker &&
	    (hdr.type == WAL_MSG_OK || hdr.type == WAL_MSG_DURABLE ||
	    hdr.type == WAL_MSG_ERROR))
		cl->marker_done = 1;
	if (f != NULL && f->valid && fc_is_v2(f->type) && cl->version == 1 &&
	    hdr.type != WAL_MSG_ERROR)
		fc_fail("%s answered with %s on a version 1 connection",
		    wal_proto_type_name(f->type), wal_proto_type_name(hdr.type));
	switch (hdr.type) {
	case WAL_MSG_WELCOME: {
		struct wal_msg_welcome w;

		memcpy(&w, buf, sizeof w);
		if (f == NULL || f->type != WAL_MSG_HELLO || cl->version != 0)
			fc_fail("WELCOME not answering the HELLO");
		if (w.version < WAL_PROTO_VERSION_MIN ||
		    w.version > WAL_PROTO_VERSION)
			fc_fail("WELCOME with version %u", w.version);
		cl->version = w.version;
		f->state = FS_ANSWERED;
		break;
	}
	case WAL_MSG_ACK: {
		struct wal_msg_ack a;
		struct wal_ack_entry e;

		memcpy(&a, buf, sizeof a);
		if (n != sizeof a + (size_t)a.count * sizeof e)
			fc_fail("ACK of %zu bytes for %u entries", n, a.count);
		for (i = 0; i < a.count; i++) {
			memcpy(&e, buf + sizeof a + i * sizeof e, sizeof e);
			fc_on_ack(ci, cl, &e);
		}
		break;
	}
	case WAL_MSG_ERROR: {
		struct wal_msg_error e;

		memcpy(&e, buf, sizeof e);
		if (e.code == 0 || e.code > WAL_PERR_GAP)
			fc_fail("ERROR with code %u", e.code);
		if (f != NULL && f->valid && fc_is_v2(f->type) &&
		    cl->version == 1 && e.code != WAL_PERR_VERSION)
			fc_fail("%s on a version 1 connection refused with %u, "
			    "not VERSION", wal_proto_type_name(f->type), e.code);
		if (f != NULL && f->state != FS_ACKED)
			f->state = FS_ERRORED;
		if (e.fatal) {
			cl->fatal = 1;
			cl->fatal_id = hdr.id;
		}
		break;
	}
	case WAL_MSG_DURABLE: {
		struct wal_msg_durable d;

		memcpy(&d, buf, sizeof d);
		if (d.durable_seq > fc.max_durable)
			fc.max_durable = d.durable_seq;
		if (f != NULL)
			f->state = FS_ANSWERED;
		break;
	}
	case WAL_MSG_STATUS_REPLY: {
		struct wal_status st;

		memcpy(&st, buf, sizeof st);
		if (st.written_seq >= st.next_seq ||
		    st.durable_seq > st.written_seq)
			fc_fail("STATUS next %" PRId64 " written %" PRId64
			    " durable %" PRId64, st.next_seq, st.written_seq,
			    st.durable_seq);
		if (f != NULL)
			f->state = FS_ANSWERED;
		break;
	}
	case WAL_MSG_RECORDS: {
		struct wal_msg_records r;
		struct wal_rec_out ro;
		size_t off = sizeof r;

		memcpy(&r, buf, sizeof r);
		for (i = 0; i < r.count; i++) {
			if (off + sizeof ro > n)
				fc_fail("RECORDS shorter than its count");
			memcpy(&ro, buf + off, sizeof ro);
			off += sizeof ro;
			if (ro.size > n - off)
				fc_fail("RECORDS record past the frame");
			if (cl->sub_last >= 0 && ro.seq != cl->sub_last + 1)
				fc_fail("subscription streamed seq %" PRId64
				    " after %" PRId64, ro.seq, cl->sub_last);
			cl->sub_last = ro.seq;
			if (fc.nsubs == fc.capsubs) {
				fc.capsubs = fc.capsubs ? fc.capsubs * 2 : 256;
				if ((fc.subs = realloc(fc.subs, fc.capsubs *
				    sizeof *fc.subs)) == NULL)
					abort();
			}
			fc.subs[fc.nsubs].seq = ro.seq;
			fc.subs[fc.nsubs].r.len = ro.size;
			fc.subs[fc.nsubs].r.hash = fc_hash(buf + off, ro.size);
			fc.nsubs++;
			off += ro.size;
		}
		break;
	}
	case WAL_MSG_PRODUCER_OK: {
		struct wal_msg_producer_ok p;

		memcpy(&p, buf, sizeof p);
		if (f == NULL || f->type != WAL_MSG_PRODUCER)
			fc_fail("PRODUCER_OK not answering a PRODUCER");
		if (p.producer_id == 0 || p.next_pseq == 0)
			fc_fail("PRODUCER_OK with id %" PRIu64 " next pseq %"
			    PRIu64, p.producer_id, p.next_pseq);
		cl->producer = p.producer_id;
		cl->next_pseq = p.next_pseq;
		f->state = FS_ANSWERED;
		break;
	}
	case WAL_MSG_SUB_END:
		cl->sub_last = -1;	/* a later SUBSCRIBE starts anew */
		break;
	case WAL_MSG_SHM_READY: {
		struct wal_msg_shm_ready rd;
		void *p;

		memcpy(&rd, buf, sizeof rd);
		if (f != NULL)
			f->state = FS_ANSWERED;
		if (nfds != 3 || cl->shm != NULL)
			fc_fail("SHM_READY with %d descriptors", nfds);
		cl->shm_len = rd.header_size + rd.size;
		cl->shm_hsize = rd.header_size;
		cl->shm_size = rd.size;
		cl->shm_max = rd.max_record;
		if (rd.header_size < sizeof(struct wal_shm_header) ||
		    rd.size < WAL_SHM_MIN_SIZE || (rd.size & (rd.size - 1)) ||
		    rd.max_record > rd.size / 4)
			fc_fail("SHM_READY with header %u, size %" PRIu64
			    ", max_record %u", rd.header_size, rd.size,
			    rd.max_record);
		p = mmap(NULL, cl->shm_len, PROT_READ | PROT_WRITE,
		    MAP_SHARED, fds[0], 0);
		if (p == MAP_FAILED)
			fc_fail("cannot map the ring: %s", strerror(errno));
		cl->shm = p;
		cl->shm_bell = dup(fds[1]);
		break;
	}
	default:
		if (f != NULL && f->state == FS_PENDING)
			f->state = FS_ANSWERED;
		break;
	}
	for (i = 0; i < (size_t)nfds; i++)
		close(fds[i]);
}

/* The client's end is readable: take every reply. */
static void
fc_client_cb(int fd, short ev, void *arg)
{
	int ci = (int)(intptr_t)arg;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * 8)];
	} cm;
	struct msghdr msg;
	struct iovec iov;
	struct cmsghdr *cmsg;
	int fds[8], nfds;
	ssize_t n;

	(void)ev;
	for (;;) {
		memset(&msg, 0, sizeof msg);
		iov.iov_base = fc.rx;
		iov.iov_len = sizeof fc.rx;
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = cm.buf;
		msg.msg_controllen = sizeof cm.buf;
		n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		nfds = 0;
		for (cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL;
		    cmsg = CMSG_NXTHDR(&msg, cmsg))
			if (cmsg->cmsg_level == SOL_SOCKET &&
			    cmsg->cmsg_type == SCM_RIGHTS) {
				size_t k, m = (cmsg->cmsg_len - CMSG_LEN(0)) /
				    sizeof(int);

				for (k = 0; k < m && nfds < 8; k++)
					memcpy(&fds[nfds++], CMSG_DATA(cmsg) +
					    k * sizeof(int), sizeof(int));
			}
		if (n <= 0) {
			while (nfds > 0)
				close(fds[--nfds]);
			fc.conns[ci].eof = 1;
			event_del(fc.conns[ci].ev);
			return;
		}
		if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
			fc_fail("daemon sent a frame larger than %u bytes or "
			    "too many descriptors", WAL_PROTO_MAX_FRAME);
		fc_on_reply(ci, fc.rx, (size_t)n, fds, nfds);
	}
}

/* Hang detector for a settle. */
static void
fc_guard_cb(int fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	(void)arg;
	fc.hung = 1;
}

/*
 * One turn of the loop. The daemon's waiting timers (the ROTATE rate
 * limit, the commit delay) fire at once: time runs fast here.
 */
static void
fc_turn(int block)
{
	static const struct timeval zero = { 0, 0 };

	if (fc.srv.rotate_armed)
		evtimer_add(fc.srv.ev_rotate, &zero);
	if (fc.srv.commit_delay_armed)
		evtimer_add(fc.srv.ev_commit_delay, &zero);
	event_base_loop(fc.srv.base, block ? EVLOOP_ONCE : EVLOOP_ONCE |
	    EVLOOP_NONBLOCK);
}

/* Connect a new client in slot s (walmmapd accepts it in the loop). */
static int
fc_connect(int s)
{
	struct sockaddr_un sun;
	struct fc_conn *cl;
	int fd, ci;

	if (fc.nconns == FC_CONNS)
		return (-1);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s",
	    fc.srv.cfg.socket_path);
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) == -1)
		fc_fail("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1)
		fc_fail("connect %s: %s", sun.sun_path, strerror(errno));
	ci = fc.nconns++;
	cl = &fc.conns[ci];
	memset(cl, 0, sizeof *cl);
	cl->fd = fd;
	cl->sub_last = -1;
	cl->last_ack_end = 0;
	cl->ev = event_new(fc.srv.base, fd, EV_READ | EV_PERSIST,
	    fc_client_cb, (void *)(intptr_t)ci);
	if (cl->ev == NULL)
		abort();
	event_add(cl->ev, NULL);
	fc.slot[s] = ci;
	return (ci);
}

/* Slot s's connection, made on first use. */
static int
fc_client(int s)
{
	if (fc.slot[s] < 0)
		return (fc_connect(s));
	return (fc.slot[s]);
}

/* Close slot s's client end at once (a client that vanishes). */
static void
fc_drop(int s)
{
	struct fc_conn *cl;

	if (fc.slot[s] < 0)
		return;
	cl = &fc.conns[fc.slot[s]];
	event_free(cl->ev);
	cl->ev = NULL;
	close(cl->fd);
	cl->fd = -1;
	cl->dropped = 1;
	fc.slot[s] = -1;
}

/*
 * Send a frame on connection ci, remembering what it carries. The id is
 * the frame's index + 1 (replies name it). A socket that stays full is
 * served by the loop meanwhile.
 */
static struct fc_frame *
fc_send(int ci, uint8_t *buf, size_t len, int fd)
{
	struct fc_conn *cl = &fc.conns[ci];
	struct fc_frame *f;
	struct wal_msg hdr;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct msghdr msg;
	struct iovec iov;
	ssize_t n;
	int tries;

	if (cl->fd == -1 || cl->eof || fc.nframes == sizeof fc.frames /
	    sizeof fc.frames[0])
		return (NULL);
	f = &fc.frames[fc.nframes++];
	memset(f, 0, sizeof *f);
	f->conn = ci;
	f->id = fc.nframes;
	f->state = FS_PENDING;
	f->rec0 = fc.nrecs;
	if (len >= sizeof hdr) {
		memcpy(&hdr, buf, sizeof hdr);
		hdr.id = f->id;
		memcpy(buf, &hdr, sizeof hdr);
		f->type = hdr.type;
	}
	f->valid = wal_proto_check(buf, len, 0, NULL, 0) == 0;
	if (fc.trace)
		dprintf(2, "conn %d -> %s id %" PRIu64 " (%zu bytes%s)\n", ci,
		    wal_proto_type_name(f->type), f->id, len, f->valid ? "" :
		    ", malformed");
	if (f->valid && f->type == WAL_MSG_HELLO && !cl->hello) {
		struct wal_msg_hello h;

		memcpy(&h, buf, sizeof h);
		cl->hello = 1;
		cl->ack = h.ack;
	}
	if (f->valid && (f->type == WAL_MSG_APPEND ||
	    f->type == WAL_MSG_APPEND_P)) {
		size_t fixed = f->type == WAL_MSG_APPEND ?
		    sizeof(struct wal_msg_append) :
		    sizeof(struct wal_msg_append_p);
		struct wal_msg_append a;
		size_t off = fixed;
		uint32_t i, size;

		memcpy(&a, buf, sizeof a);
		if (f->type == WAL_MSG_APPEND_P) {
			struct wal_msg_append_p ap;

			memcpy(&ap, buf, sizeof ap);
			f->pseq = ap.first_pseq;
			if (fc.trace)
				dprintf(2, "conn %d    producer %" PRIu64
				    " pseq %" PRIu64 "+%u\n", ci, cl->producer,
				    f->pseq, ap.count);
			if ((f->copy = malloc(len)) == NULL)
				abort();
			memcpy(f->copy, buf, len);
			f->copylen = len;
		}
		f->writes = 1;
		f->level = a.ack == WAL_ACK_DEFAULT ? (int)cl->ack : a.ack;
		for (i = 0; i < a.count; i++) {
			memcpy(&size, buf + off, sizeof size);
			fc_add_rec(buf + off + 4, size);
			off += 4 + size;
		}
	}
	if (f->valid && f->type == WAL_MSG_APPEND_FD && fd != -1) {
		struct wal_msg_append_fd a;
		struct stat st;
		uint8_t *p;

		memcpy(&a, buf, sizeof a);
		f->writes = 1;
		f->level = a.ack == WAL_ACK_DEFAULT ? (int)cl->ack : a.ack;
		if (fstat(fd, &st) == 0 && (uint64_t)st.st_size >= a.size &&
		    a.size <= UINT32_MAX && (p = malloc(a.size + 1)) != NULL) {
			if (pread(fd, p, a.size, 0) == (ssize_t)a.size)
				fc_add_rec(p, (uint32_t)a.size);
			free(p);
		}
	}
	f->nrec = fc.nrecs - f->rec0;
	if (f->writes && f->nrec == 0)
		f->writes = 0;	/* cannot be written: a short memfd */

	memset(&msg, 0, sizeof msg);
	iov.iov_base = buf;
	iov.iov_len = len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fd != -1) {
		memset(&cm, 0, sizeof cm);
		msg.msg_control = cm.buf;
		msg.msg_controllen = sizeof cm.buf;
		CMSG_FIRSTHDR(&msg)->cmsg_level = SOL_SOCKET;
		CMSG_FIRSTHDR(&msg)->cmsg_type = SCM_RIGHTS;
		CMSG_FIRSTHDR(&msg)->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(CMSG_FIRSTHDR(&msg)), &fd, sizeof fd);
	}
	for (tries = 0; tries < 2000; tries++) {
		n = sendmsg(cl->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n == (ssize_t)len)
			break;
		if (n == -1 && errno != EAGAIN && errno != ENOBUFS)
			break;	/* the daemon closed it */
		fc_turn(tries > 16);
		if (cl->fd == -1 || cl->eof)
			break;
	}
	if (n != (ssize_t)len) {
		/* Not sent: nothing to expect. */
		fc.nrecs = f->rec0;
		f->nrec = 0;
		f->writes = 0;
		f->state = FS_ANSWERED;
	}
	return (f);
}

/*
 * Wait until every live client has its replies: each gets a marker
 * (PING, or SYNC so durable replies are in too) and the loop runs until
 * the marker is answered or the daemon closed the connection.
 */
static void
fc_settle(int sync)
{
	static const struct timeval guard = { FC_HANG_S, 0 };
	struct wal_msg m;
	struct fc_frame *f;
	int i, waiting;

	for (i = 0; i < fc.nconns; i++) {
		struct fc_conn *cl = &fc.conns[i];

		cl->marker = 0;
		cl->marker_done = 0;
		if (cl->fd == -1 || cl->eof)
			continue;
		memset(&m, 0, sizeof m);
		m.type = sync && cl->hello ? WAL_MSG_SYNC : WAL_MSG_PING;
		m.len = sizeof m;
		if ((f = fc_send(i, (uint8_t *)&m, sizeof m, -1)) != NULL)
			cl->marker = f->id;
	}
	fc.hung = 0;
	evtimer_add(fc.ev_guard, &guard);
	for (;;) {
		waiting = 0;
		for (i = 0; i < fc.nconns; i++) {
			struct fc_conn *cl = &fc.conns[i];

			if (cl->fd != -1 && !cl->eof && !cl->marker_done)
				waiting++;
		}
		if (waiting == 0)
			break;
		if (fc.hung)
			fc_fail("hang: %d client%s still waiting for replies "
			    "after %ds", waiting, waiting == 1 ? "" : "s",
			    FC_HANG_S);
		fc_turn(1);
	}
	evtimer_del(fc.ev_guard);
}

/* Put a client-chosen ack level byte in range most of the time. */
static uint8_t
fc_level(uint8_t b)
{
	static const uint8_t lv[] = { WAL_ACK_DEFAULT, WAL_ACK_WRITTEN,
	    WAL_ACK_DURABLE, WAL_ACK_NONE, WAL_ACK_WRITTEN, WAL_ACK_DEFAULT,
	    WAL_ACK_WRITTEN, 3 };

	return (lv[b & 7]);
}

/* A record size: mostly small, sometimes near or past max_record. */
static uint32_t
fc_size(void)
{
	uint8_t b = fc_u8();

	if (b < 240)
		return (b % 64);
	if (b < 250)
		return (fc.srv.cfg.max_record - (b - 240) * 1000);
	return (fc.srv.cfg.max_record + (b - 250));
}

/* Build count records after a fixed part of fixed bytes at fc.tx. */
static size_t
fc_records(size_t fixed, uint32_t count)
{
	size_t off = fixed;
	uint32_t i, size;

	for (i = 0; i < count; i++) {
		size = fc_size();
		if (off + 4 + size > WAL_PROTO_MAX_FRAME)
			size = 0;
		memcpy(fc.tx + off, &size, 4);
		fc_bytes(fc.tx + off + 4, size);
		off += 4 + size;
	}
	return (off);
}

/* APPEND_P on connection ci: a new frame, or one that jumps or goes back. */
static void
fc_append_p(int ci, uint8_t how)
{
	struct fc_conn *cl = &fc.conns[ci];
	struct wal_msg_append_p a;
	size_t len;

	memset(&a, 0, sizeof a);
	a.hdr.type = WAL_MSG_APPEND_P;
	a.count = 1 + fc_u8() % 4;
	a.ack = fc_level(fc_u8());
	a.first_pseq = cl->next_pseq ? cl->next_pseq : 1;
	if ((how & 7) == 6)
		a.first_pseq += 1 + how % 3;		/* a jump */
	else if ((how & 7) == 7 && a.first_pseq > 1 &&
	    a.first_pseq > cl->ring_pseq)
		a.first_pseq -= 1;			/* straddles */
	len = fc_records(sizeof a, a.count);
	a.hdr.len = (uint32_t)len;
	memcpy(fc.tx, &a, sizeof a);
	if (fc_send(ci, fc.tx, len, -1) != NULL && (how & 7) < 6)
		cl->next_pseq = a.first_pseq + a.count;
}

/* Resend an earlier APPEND_P, byte for byte, on connection ci. */
static void
fc_resend(int ci, uint8_t pick)
{
	size_t i, k = 0, n = 0;
	struct fc_frame *f = NULL;

	for (i = 0; i < fc.nframes; i++)
		if (fc.frames[i].copy != NULL)
			n++;
	if (n == 0)
		return;
	pick %= n;
	for (i = 0; i < fc.nframes; i++)
		if (fc.frames[i].copy != NULL && k++ == pick) {
			f = &fc.frames[i];
			break;
		}
	memcpy(fc.tx, f->copy, f->copylen);
	fc_send(ci, fc.tx, f->copylen, -1);
}

/*
 * Write records into connection ci's ring as libwalmmap does (slot,
 * payload, then the tail with a release store, then the doorbell). They
 * are remembered as a frame at level none: the ring has no ACK.
 */
static void
fc_shm_write(int ci)
{
	struct fc_conn *cl = &fc.conns[ci];
	struct wal_shm_header *h = (struct wal_shm_header *)(void *)cl->shm;
	struct wal_shm_slot slot;
	struct fc_frame *f;
	uint64_t tail, head, pos, need, room;
	uint8_t *data;
	uint32_t i, n, size;

	if (cl->shm == NULL || fc.nframes == sizeof fc.frames /
	    sizeof fc.frames[0])
		return;
	/* Sizes as SHM_READY gave them: the header may be scribbled. */
	data = cl->shm + cl->shm_hsize;
	f = &fc.frames[fc.nframes++];
	memset(f, 0, sizeof *f);
	f->conn = ci;
	f->id = fc.nframes;
	f->writes = 1;
	f->level = WAL_ACK_NONE;
	f->rec0 = fc.nrecs;
	f->state = FS_PENDING;
	tail = atomic_load_explicit(&h->tail, memory_order_relaxed);
	n = 1 + fc_u8() % 4;
	for (i = 0; i < n; i++) {
		size = fc_size() % (cl->shm_max + 1);
		head = atomic_load_explicit(&h->head, memory_order_acquire);
		pos = tail & (cl->shm_size - 1);
		need = wal_shm_slot_bytes(size);
		room = cl->shm_size - pos;
		if (room < need)
			need += room;		/* a pad to the end first */
		if (tail + need - head > cl->shm_size)
			break;			/* full */
		if (room < wal_shm_slot_bytes(size)) {
			memset(&slot, 0, sizeof slot);
			slot.len = WAL_SHM_PAD;
			if (room >= sizeof slot)
				memcpy(data + pos, &slot, sizeof slot);
			tail += room;
			pos = 0;
		}
		memset(&slot, 0, sizeof slot);
		slot.len = size;
		slot.flags = fc_u8() & WAL_SHM_F_MASK;
		memcpy(data + pos, &slot, sizeof slot);
		fc_bytes(data + pos + sizeof slot, size < 64 ? size : 64);
		if (size > 64)
			memset(data + pos + sizeof slot + 64, 0x77, size - 64);
		fc_add_rec(data + pos + sizeof slot, size);
		tail += wal_shm_slot_bytes(size);
	}
	atomic_store_explicit(&h->tail, tail, memory_order_release);
	(void)send(cl->shm_bell, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	f->nrec = fc.nrecs - f->rec0;
	/*
	 * A producer's ring records take its next producer seqs (drained
	 * before any frame sent after them). A straddling APPEND_P does not
	 * reach back into them: its records differ, and a ring record's DUP
	 * is only comparable with the same record.
	 */
	if (cl->producer != 0 && cl->next_pseq != 0) {
		cl->next_pseq += f->nrec;
		cl->ring_pseq = cl->next_pseq;
	}
}

/*
 * Write input bytes anywhere over connection ci's ring (a producer that
 * scribbles): what the daemon then drains cannot be told, so records in
 * the log that nobody acknowledged are no longer checked.
 */
static void
fc_shm_scribble(int ci)
{
	struct fc_conn *cl = &fc.conns[ci];
	size_t at, n;

	if (cl->shm == NULL)
		return;
	at = ((size_t)fc_u8() << 8 | fc_u8()) * 16 % cl->shm_len;
	n = 1 + fc_u8() % 32;
	if (n > cl->shm_len - at)
		n = cl->shm_len - at;
	fc_bytes(cl->shm + at, n);
	fc.scribbled = 1;
	(void)send(cl->shm_bell, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* Run the input's program. */
static void
fc_run(void)
{
	uint8_t op, b;
	int s, ci;

	while (fc.inoff < fc.inlen && fc.nframes < FC_FRAMES) {
		op = fc_u8();
		s = (op >> 5) % FC_SLOTS;
		op &= 31;
		if (op == 20) {			/* reconnect */
			fc_drop(s);
			continue;
		}
		if (op == 19) {
			fc_settle(0);
			continue;
		}
		if (op == 22) {
			fc_settle(1);
			continue;
		}
		if (op == 21) {			/* the daemon's second */
			tick_cb(-1, 0, &fc.srv);
			continue;
		}
		if ((ci = fc_client(s)) < 0)
			break;
		memset(fc.tx, 0, 256);
		switch (op) {
		case 0: case 1: case 2: {	/* HELLO */
			struct wal_msg_hello h;

			memset(&h, 0, sizeof h);
			h.hdr.type = WAL_MSG_HELLO;
			h.hdr.len = sizeof h;
			b = fc_u8();
			h.ack = b % 3;
			h.version_min = 1;
			h.version_max = op == 1 ? 1 : 2;
			if (op == 2) {
				h.version_min = fc_u8() % 4;
				h.version_max = fc_u8() % 4;
				h.ack = b;
			}
			memcpy(fc.tx, &h, sizeof h);
			fc_send(ci, fc.tx, sizeof h, -1);
			break;
		}
		case 4: {			/* APPEND_FD without a memfd */
			struct wal_msg_append_fd a;

			memset(&a, 0, sizeof a);
			a.hdr.type = WAL_MSG_APPEND_FD;
			a.hdr.len = sizeof a;
			a.size = fc_u8();
			a.ack = fc_level(fc_u8());
			memcpy(fc.tx, &a, sizeof a);
			fc_send(ci, fc.tx, sizeof a, -1);
			break;
		}
		case 5: {			/* APPEND_FD with a memfd */
			struct wal_msg_append_fd a;
			uint32_t size = fc_size();
			int mfd;

			b = fc_u8();
			memset(&a, 0, sizeof a);
			a.hdr.type = WAL_MSG_APPEND_FD;
			a.hdr.len = sizeof a;
			a.size = size + (b & 0x10 ? 1 : 0);	/* short */
			a.ack = fc_level(b);
			mfd = memfd_create("fuzz", MFD_CLOEXEC |
			    MFD_ALLOW_SEALING);
			if (mfd == -1)
				fc_fail("memfd_create: %s", strerror(errno));
			if (size > 0) {
				uint8_t *p = calloc(1, size);

				if (p == NULL)
					abort();
				fc_bytes(p, size < 64 ? size : 64);
				if (write(mfd, p, size) != (ssize_t)size)
					abort();
				free(p);
			}
			if (!(b & 0x20))
				fcntl(mfd, F_ADD_SEALS, F_SEAL_WRITE |
				    F_SEAL_SHRINK | F_SEAL_GROW);
			memcpy(fc.tx, &a, sizeof a);
			{
				struct fc_frame *f = fc_send(ci, fc.tx,
				    sizeof a, mfd);

				/* An unsealed memfd is refused: not written. */
				if (f != NULL && (b & 0x20)) {
					fc.nrecs -= f->nrec;
					f->nrec = 0;
					f->writes = 0;
				}
			}
			close(mfd);
			break;
		}
		case 6: case 7: case 8: case 10: case 17: {
			struct wal_msg m;
			static const uint16_t t[] = { [6] = WAL_MSG_SYNC,
			    [7] = WAL_MSG_STATUS, [8] = WAL_MSG_ROTATE,
			    [10] = WAL_MSG_PING, [17] = WAL_MSG_METRICS };

			memset(&m, 0, sizeof m);
			m.type = t[op];
			m.len = sizeof m;
			if (op == 7)
				m.flags = fc_u8() & WAL_STATUS_F_DIR;
			memcpy(fc.tx, &m, sizeof m);
			fc_send(ci, fc.tx, sizeof m, -1);
			break;
		}
		case 9: {			/* SUBSCRIBE */
			struct wal_msg_subscribe m;

			memset(&m, 0, sizeof m);
			m.hdr.type = WAL_MSG_SUBSCRIBE;
			m.hdr.len = sizeof m;
			b = fc_u8();
			m.from_seq = b & 1 ? -1 : fc_u8() % 64;
			m.to_seq = b & 2 ? -1 : m.from_seq + fc_u8() % 64;
			m.flags = b & 4 ? WAL_SUB_FOLLOW : 0;
			memcpy(fc.tx, &m, sizeof m);
			fc_send(ci, fc.tx, sizeof m, -1);
			break;
		}
		case 11: {			/* SHM_OPEN */
			struct wal_msg_shm_open m;

			memset(&m, 0, sizeof m);
			m.hdr.type = WAL_MSG_SHM_OPEN;
			m.hdr.len = sizeof m;
			m.size = fc_u8() & 1 ? 0 : (uint64_t)fc_u8() << 12;
			memcpy(fc.tx, &m, sizeof m);
			fc_send(ci, fc.tx, sizeof m, -1);
			break;
		}
		case 12: {			/* PRODUCER */
			struct wal_msg_producer m;
			int other;

			memset(&m, 0, sizeof m);
			m.hdr.type = WAL_MSG_PRODUCER;
			m.hdr.len = sizeof m;
			b = fc_u8();
			other = fc.slot[(b >> 2) % FC_SLOTS];
			switch (b & 3) {
			case 0:
				m.producer_id = 0;
				break;
			case 1:		/* resume this one, or another's */
				m.producer_id = other >= 0 ?
				    fc.conns[other].producer : 0;
				if (fc.conns[ci].producer != 0)
					m.producer_id = fc.conns[ci].producer;
				break;
			case 2:		/* a slot's past connection's */
				if (fc.nconns > 0)
					m.producer_id = fc.conns[fc_u8() %
					    fc.nconns].producer;
				break;
			default:
				m.producer_id = fc_u64();
				m.flags = fc_u8();
				break;
			}
			memcpy(fc.tx, &m, sizeof m);
			fc_send(ci, fc.tx, sizeof m, -1);
			break;
		}
		case 13:			/* APPEND_P */
			fc_append_p(ci, fc_u8());
			break;
		case 14:			/* APPEND_P resent */
			fc_resend(ci, fc_u8());
			break;
		case 15: {			/* FWD_REGISTER */
			struct wal_msg_fwd_register m;
			size_t k, nl;

			memset(&m, 0, sizeof m);
			m.hdr.type = WAL_MSG_FWD_REGISTER;
			m.hdr.len = sizeof m;
			b = fc_u8();
			nl = 1 + b % 8;
			for (k = 0; k < nl; k++)
				m.name[k] = "abcfwd.-_9"[fc_u8() % 10];
			if (b & 0x80)
				m.name[0] = (char)fc_u8();
			m.shipped_seq = (int64_t)(fc_u8() % 80) - 2;
			memcpy(fc.tx, &m, sizeof m);
			fc_send(ci, fc.tx, sizeof m, -1);
			break;
		}
		case 16: {			/* FWD_POSITION */
			struct wal_msg_fwd_position m;

			memset(&m, 0, sizeof m);
			m.hdr.type = WAL_MSG_FWD_POSITION;
			m.hdr.len = sizeof m;
			m.shipped_seq = (int64_t)(fc_u8() % 80) - 1;
			m.shipped_ts_ns = (int64_t)fc_u64();
			m.connected = fc_u8() & 1;
			fc_bytes((uint8_t *)m.server, 8);
			fc_bytes((uint8_t *)m.error, 8);
			memcpy(fc.tx, &m, sizeof m);
			fc_send(ci, fc.tx, sizeof m, -1);
			break;
		}
		case 18: {			/* a raw frame */
			struct wal_msg m;
			size_t len;

			b = fc_u8();
			len = b & 0x80 ? 16 + fc_u8() % 96 : fc_u8() % 300;
			fc_bytes(fc.tx, len);
			if (len >= sizeof m) {
				memcpy(&m, fc.tx, sizeof m);
				m.type %= 120;
				if (m.type == WAL_MSG_RESTART)
					m.type = WAL_MSG_METRICS;
				if (b & 1)
					m.len = (uint32_t)len;
				memcpy(fc.tx, &m, sizeof m);
			}
			fc_send(ci, fc.tx, len, -1);
			break;
		}
		case 23:			/* records into its ring */
			fc_shm_write(ci);
			break;
		case 24:			/* bytes over its ring */
			fc_shm_scribble(ci);
			break;
		default: {			/* APPEND (3, 25..31) */
			struct wal_msg_append a;
			size_t len;

			memset(&a, 0, sizeof a);
			a.hdr.type = WAL_MSG_APPEND;
			b = fc_u8();
			a.count = 1 + b % 6;
			a.ack = fc_level(b >> 3);
			len = fc_records(sizeof a, a.count);
			a.hdr.len = (uint32_t)len;
			memcpy(fc.tx, &a, sizeof a);
			fc_send(ci, fc.tx, len, -1);
			break;
		}
		}
	}
}

/* A log record read back. */
struct fc_log {
	struct fc_rec	 r;
	int		 acked;		/* covered by a non-dup ACK */
};

/* A record that may (or, certain, must) be in the log unacknowledged. */
struct fc_pool {
	struct fc_rec	 r;
	int		 certain;
	int		 used;
};

static int
fc_rec_cmp(const struct fc_rec *a, const struct fc_rec *b)
{
	if (a->len != b->len)
		return (a->len < b->len ? -1 : 1);
	if (a->hash != b->hash)
		return (a->hash < b->hash ? -1 : 1);
	return (0);
}

/* Certain entries first among equals: they must be matched. */
static int
fc_pool_cmp(const void *a, const void *b)
{
	const struct fc_pool *x = a, *y = b;
	int c = fc_rec_cmp(&x->r, &y->r);

	return (c != 0 ? c : y->certain - x->certain);
}

static int
fc_recp_cmp(const void *a, const void *b)
{
	return (fc_rec_cmp(a, b));
}

/*
 * Was frame f certainly processed by the daemon (1), certainly not (0),
 * or is that unknown (-1)?
 */
static int
fc_processed(const struct fc_frame *f)
{
	const struct fc_conn *cl = &fc.conns[f->conn];

	if (cl->dropped)
		return (-1);
	if (cl->fatal && cl->fatal_id != 0)
		return (f->id < cl->fatal_id ? 1 : 0);
	if (cl->eof)
		return (-1);
	return (cl->marker_done ? 1 : -1);
}

#define FC_PARTS	(FC_RUNS + 1)

/*
 * The acknowledged parts of APPEND_P frame f as (producer seq, log seq,
 * records): the duplicate runs (0 records where their seq is unknown or
 * not kept), then the records written.
 */
static void
fc_parts(const struct fc_frame *f, uint64_t *p, int64_t *s, uint32_t *n)
{
	uint32_t at = 0;
	int r;

	for (r = 0; r < FC_RUNS; r++) {
		p[r] = f->pseq + at;
		s[r] = r < f->nruns ? f->run_seq[r] : -1;
		n[r] = r < f->nruns && s[r] >= 0 ? f->run_n[r] : 0;
		if (r < f->nruns)
			at += f->run_n[r];
	}
	p[FC_RUNS] = f->pseq + f->dup_n;
	s[FC_RUNS] = f->first_seq;
	n[FC_RUNS] = f->state == FS_ACKED ? f->count : 0;
}

/* Did every frame of producer id that carried producer seq pseq carry
 * the same record? */
static int
fc_pseq_same(uint64_t id, uint64_t pseq)
{
	const struct fc_rec *r = NULL;
	size_t i;

	for (i = 0; i < fc.nframes; i++) {
		const struct fc_frame *f = &fc.frames[i];

		if (f->type != WAL_MSG_APPEND_P || f->producer != id ||
		    !f->writes || pseq < f->pseq || pseq - f->pseq >= f->nrec)
			continue;
		if (r != NULL && fc_rec_cmp(r, &fc.recs[f->rec0 + (pseq -
		    f->pseq)]) != 0)
			return (0);
		r = &fc.recs[f->rec0 + (pseq - f->pseq)];
	}
	return (1);
}

/* Check the log read back against every reply. */
static void
fc_verify(int64_t next_seq)
{
	struct wal_reader *rd;
	struct wal_record rec;
	struct wal_error err;
	struct fc_log *log = NULL;
	struct fc_pool *pool = NULL;
	struct fc_rec *un = NULL;
	size_t nlog = 0, cap = 0, npool = 0, nun = 0, i, j, k;
	int rc;

	if (wal_reader_open(fc.dir, &rd, &err) != 0)
		fc_fail("cannot read the log back: %s", err.msg);
	while ((rc = wal_reader_next(rd, &rec, &err)) > 0) {
		if (rec.seq != (int64_t)nlog)
			fc_fail("log reads seq %" PRId64 " at position %zu",
			    rec.seq, nlog);
		if (nlog == cap) {
			cap = cap ? cap * 2 : 1024;
			if ((log = realloc(log, cap * sizeof *log)) == NULL)
				abort();
		}
		log[nlog].r.len = rec.size;
		log[nlog].r.hash = fc_hash(rec.payload, rec.size);
		log[nlog].acked = 0;
		nlog++;
	}
	if (rc < 0)
		fc_fail("reading the log back: %s", err.msg);
	if (wal_reader_stopped(rd)->status != WAL_REC_END)
		fc_fail("the log read back stops at seq %zu: %s", nlog,
		    wal_rec_strstatus(wal_reader_stopped(rd)->status));
	wal_reader_close(rd);
	if ((int64_t)nlog != next_seq)
		fc_fail("the log holds %zu records, the ring said %" PRId64,
		    nlog, next_seq);
	if (fc.max_durable >= next_seq)
		fc_fail("DURABLE %" PRId64 " past the log's end %" PRId64,
		    fc.max_durable, next_seq);

	/* Acknowledged records are where their ACK says, once. */
	for (i = 0; i < fc.nframes; i++) {
		struct fc_frame *f = &fc.frames[i];

		if (f->type == WAL_MSG_APPEND_P)
			f->producer = fc.conns[f->conn].producer;
		if (f->state != FS_ACKED)
			continue;
		if (f->first_seq + f->count > (int64_t)nlog)
			fc_fail("frame %" PRIu64 " acknowledged at %" PRId64
			    "+%u, past the log's end %zu", f->id, f->first_seq,
			    f->count, nlog);
		for (k = 0; k < f->count; k++) {
			struct fc_log *l = &log[f->first_seq + k];

			if (fc_rec_cmp(&l->r, &fc.recs[f->rec0 + f->dup_n +
			    k]) != 0)
				fc_fail("seq %" PRId64 " holds another record "
				    "than the one acknowledged (frame %" PRIu64
				    ")", f->first_seq + (int64_t)k, f->id);
			if (l->acked)
				fc_fail("seq %" PRId64 " acknowledged twice",
				    f->first_seq + (int64_t)k);
			l->acked = 1;
		}
	}
	/*
	 * A duplicate's seqs hold what its producer wrote under those
	 * producer seqs. The protocol identifies a record by its producer
	 * seq only: a client that sent other bytes under a producer seq
	 * (a fresh frame after a reconnect, sent before PRODUCER_OK told it
	 * where its producer stood; or a frame resent on a connection of
	 * another producer) is answered with the original's seq, so the
	 * bytes are compared only where every frame of that producer that
	 * carried the producer seq carried the same record.
	 */
	for (i = 0; i < fc.nframes; i++) {
		struct fc_frame *f = &fc.frames[i];
		uint32_t at = 0;
		int r;

		for (r = 0; r < f->nruns && r < FC_RUNS; at += f->run_n[r++]) {
			int64_t rs = f->run_seq[r];

			if (rs < 0)
				continue;
			if (rs + f->run_n[r] > (int64_t)nlog)
				fc_fail("frame %" PRIu64 " acknowledged as a "
				    "duplicate at %" PRId64 "+%u, past the "
				    "log's end %zu", f->id, rs, f->run_n[r],
				    nlog);
			for (k = 0; k < f->run_n[r]; k++)
				if (fc_pseq_same(f->producer, f->pseq + at +
				    k) && fc_rec_cmp(&log[rs + k].r,
				    &fc.recs[f->rec0 + at + k]) != 0)
					fc_fail("seq %" PRId64 " holds another "
					    "record than the one acknowledged "
					    "(frame %" PRIu64 ", duplicate)",
					    rs + (int64_t)k, f->id);
		}
	}
	/* A producer seq is in the log under one seq only. */
	for (i = 0; i < fc.nframes; i++) {
		struct fc_frame *f = &fc.frames[i];
		uint64_t fp[FC_PARTS], lo, hi;
		int64_t fs[FC_PARTS];
		uint32_t fn[FC_PARTS];
		int a, b;

		if (f->producer == 0)
			continue;
		fc_parts(f, fp, fs, fn);
		for (j = 0; j < i; j++) {
			struct fc_frame *g = &fc.frames[j];
			uint64_t gp[FC_PARTS];
			int64_t gs[FC_PARTS];
			uint32_t gn[FC_PARTS];

			if (g->producer != f->producer)
				continue;
			fc_parts(g, gp, gs, gn);
			for (a = 0; a < FC_PARTS; a++)
				for (b = 0; b < FC_PARTS; b++) {
					lo = fp[a] > gp[b] ? fp[a] : gp[b];
					hi = fp[a] + fn[a] < gp[b] + gn[b] ?
					    fp[a] + fn[a] : gp[b] + gn[b];
					for (; lo < hi; lo++)
						if (fs[a] + (int64_t)(lo -
						    fp[a]) != gs[b] +
						    (int64_t)(lo - gp[b]))
							fc_fail("producer %"
							    PRIu64 " seq %"
							    PRIu64 " acknowl"
							    "edged at seqs %"
							    PRId64 " and %"
							    PRId64,
							    f->producer, lo,
							    gs[b] + (int64_t)
							    (lo - gp[b]), fs[a]
							    + (int64_t)(lo -
							    fp[a]));
				}
		}
	}
	/*
	 * What may be in the log without an acknowledgement. A ring's
	 * records are drained while its connection lives, whatever happens
	 * on the socket: the first ones its header counts as written (the
	 * producer's acknowledgement) must be there, the rest may.
	 */
	for (i = 0; i < (size_t)fc.nconns; i++)
		fc.conns[i].shm_seen = 0;
	for (i = 0; i < fc.nframes; i++) {
		struct fc_frame *f = &fc.frames[i];
		struct fc_conn *cl = &fc.conns[f->conn];
		int p = fc_processed(f), certain;

		if (f->type == 0 && f->writes) {
			pool = realloc(pool, (npool + f->nrec) * sizeof *pool);
			if (pool == NULL)
				abort();
			for (k = 0; k < f->nrec; k++, cl->shm_seen++) {
				pool[npool].r = fc.recs[f->rec0 + k];
				pool[npool].certain = !fc.scribbled &&
				    cl->shm_seen < cl->shm_written;
				pool[npool].used = 0;
				npool++;
			}
			continue;
		}
		if (!f->writes || f->state == FS_ACKED || p == 0)
			continue;
		if (f->state == FS_ERRORED && f->level != WAL_ACK_NONE)
			continue;
		if (f->state == FS_PENDING && p == 1 &&
		    f->level != WAL_ACK_NONE)
			fc_fail("%s frame %" PRIu64 " at ack level %d processed "
			    "without an ACK or an ERROR",
			    wal_proto_type_name(f->type), f->id, f->level);
		certain = p == 1 && f->state == FS_PENDING &&
		    f->type != WAL_MSG_APPEND_P;
		pool = realloc(pool, (npool + f->nrec) * sizeof *pool);
		if (pool == NULL)
			abort();
		for (k = f->dup_n; k < f->nrec; k++) {	/* not the duplicates */
			pool[npool].r = fc.recs[f->rec0 + k];
			pool[npool].certain = certain;
			pool[npool].used = 0;
			npool++;
		}
	}
	if ((un = calloc(nlog + 1, sizeof *un)) == NULL)
		abort();
	for (i = 0; i < nlog; i++)
		if (!log[i].acked)
			un[nun++] = log[i].r;
	if (npool > 0)
		qsort(pool, npool, sizeof *pool, fc_pool_cmp);
	if (nun > 0)
		qsort(un, nun, sizeof *un, fc_recp_cmp);
	for (i = 0, j = 0; i < nun; i++) {
		while (j < npool && fc_rec_cmp(&pool[j].r, &un[i]) < 0)
			j++;
		if (j == npool || fc_rec_cmp(&pool[j].r, &un[i]) != 0) {
			if (fc.scribbled)
				continue;	/* from a scribbled ring */
			fc_fail("the log holds a record of %u bytes that was "
			    "not acknowledged and that no client sent at "
			    "level none (or it is there twice)", un[i].len);
		}
		pool[j++].used = 1;
	}
	for (j = 0; j < npool; j++)
		if (pool[j].certain && !pool[j].used)
			fc_fail("a record of %u bytes appended at level none "
			    "and processed is not in the log", pool[j].r.len);
	/* What subscribers got is the log. */
	for (i = 0; i < fc.nsubs; i++)
		if (fc.subs[i].seq < 0 || fc.subs[i].seq >= (int64_t)nlog ||
		    fc_rec_cmp(&fc.subs[i].r, &log[fc.subs[i].seq].r) != 0)
			fc_fail("a subscriber got seq %" PRId64 " unlike the "
			    "log's", fc.subs[i].seq);
	free(log);
	free(pool);
	free(un);
}

/* Remove the input's directory. */
static void
fc_rmdir(const char *path)
{
	struct dirent *de;
	DIR *d;

	if ((d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
	rmdir(path);
}

/* A daemon core as main() sets it up, on a fresh directory. */
static void
fc_start(void)
{
	struct server *srv = &fc.srv;
	struct wal_ring_config rc;
	struct wal_recovery rec;
	struct wal_error err;
	const char *tmp = getenv("TMPDIR");
	char why[512], sock[300];
	int dfd, i;

	memset(srv, 0, sizeof *srv);
	srv->listen_fd = -1;
	srv->sock_dirfd = -1;
	TAILQ_INIT(&srv->conns);
	TAILQ_INIT(&srv->shms);
	TAILQ_INIT(&srv->parked);
	snprintf(fc.dir, sizeof fc.dir, "%s/fuzz_conn.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(fc.dir) == NULL)
		fc_fail("mkdtemp %s: %s", fc.dir, strerror(errno));
	snprintf(sock, sizeof sock, "%s/sock", fc.dir);
	config_defaults(&srv->cfg);
	if (config_set(&srv->cfg, "dir", fc.dir, why, sizeof why) != 0 ||
	    config_set(&srv->cfg, "segment_size", "64K", why,
	    sizeof why) != 0 ||
	    config_set(&srv->cfg, "ring", "2", why, sizeof why) != 0 ||
	    config_set(&srv->cfg, "prefault", "no", why, sizeof why) != 0 ||
	    config_set(&srv->cfg, "shm_size", "64K", why, sizeof why) != 0 ||
	    config_set(&srv->cfg, "socket", sock, why, sizeof why) != 0 ||
	    config_validate(&srv->cfg, why, sizeof why) != 0)
		fc_fail("configuration: %s", why);
	if ((dfd = open(fc.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		fc_fail("open %s: %s", fc.dir, strerror(errno));
	memset(&rc, 0, sizeof rc);
	rc.dir = srv->cfg.dir;
	rc.has_dirfd = 1;
	rc.dirfd = dfd;
	rc.segment_size = srv->cfg.segment_size;
	rc.ring_segments = srv->cfg.ring;
	rc.no_prefault = 1;
	if (wal_ring_open(&rc, &srv->ring, &rec, &err) != 0)
		fc_fail("wal_ring_open: %s", err.msg);
	srv->data_dirfd = dfd;
	if ((srv->base = event_base_new()) == NULL)
		abort();
	srv->rxbuf = malloc(WAL_PROTO_MAX_FRAME);
	srv->txbuf = malloc(WAL_PROTO_MAX_FRAME);
	srv->ackbuf = malloc(WAL_PROTO_MAX_FRAME);
	srv->started = time(NULL);
	if ((srv->sync_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		abort();
	if ((srv->syncer = syncer_start(srv->ring, srv->sync_fd)) == NULL ||
	    (srv->closer = closer_start()) == NULL)
		abort();
	srv->ev_sync_done = event_new(srv->base, srv->sync_fd,
	    EV_READ | EV_PERSIST, sync_done_cb, srv);
	srv->ev_sync_timer = event_new(srv->base, -1, EV_PERSIST,
	    sync_timer_cb, srv);
	srv->ev_sync_kick = event_new(srv->base, -1, 0, srv_sync_kick_cb, srv);
	srv->ev_commit_delay = evtimer_new(srv->base, srv_commit_delay_cb, srv);
	srv->ev_rotate = evtimer_new(srv->base, srv_rotate_cb, srv);
	srv->ev_parked = evtimer_new(srv->base, conn_parked_cb, srv);
	srv->ev_closer = event_new(srv->base, -1, EV_PERSIST, closer_tick_cb,
	    srv);
	srv->ev_fd_wait = evtimer_new(srv->base, srv_fd_wait_cb, srv);
	srv->ev_tick = event_new(srv->base, -1, EV_PERSIST, tick_cb, srv);
	srv->ev_drain = event_new(srv->base, -1, 0, srv_shm_drain_cb, srv);
	srv->ev_stop_timer = evtimer_new(srv->base, stop_timer_cb, srv);
	fc.ev_guard = evtimer_new(srv->base, fc_guard_cb, NULL);
	if (srv->rxbuf == NULL || srv->txbuf == NULL || srv->ackbuf == NULL ||
	    srv->ev_sync_done == NULL || srv->ev_sync_timer == NULL ||
	    srv->ev_sync_kick == NULL || srv->ev_commit_delay == NULL ||
	    srv->ev_rotate == NULL || srv->ev_parked == NULL ||
	    srv->ev_closer == NULL || srv->ev_fd_wait == NULL ||
	    srv->ev_tick == NULL || srv->ev_drain == NULL ||
	    srv->ev_stop_timer == NULL || fc.ev_guard == NULL)
		abort();
	event_add(srv->ev_sync_done, NULL);
	if (prod_open != NULL)
		prod_open(srv);
	if (fwd_open != NULL && fwd_open(srv, why, sizeof why) != 0)
		fc_fail("fwd_open: %s", why);
	if (srv_listen(srv) != 0)
		fc_fail("srv_listen on %s failed", srv->cfg.socket_path);
	if (rights_init != NULL)
		rights_init(srv);
	for (i = 0; i < FC_SLOTS; i++)
		fc.slot[i] = -1;
	fc.nconns = 0;
	fc.nframes = 0;
	fc.nrecs = 0;
	fc.nsubs = 0;
	fc.max_durable = -1;
	fc.scribbled = 0;
}

/* Stop as main() does; the ring's next seq. */
static int64_t
fc_stop(void)
{
	struct server *srv = &fc.srv;
	struct wal_error err;
	struct conn *c;
	int64_t next;
	size_t i;
	int k;

	while ((c = TAILQ_FIRST(&srv->conns)) != NULL)
		conn_free(c);
	for (k = 0; k < fc.nconns; k++) {
		if (fc.conns[k].shm != NULL) {
			fc.conns[k].shm_written = atomic_load(&((struct
			    wal_shm_header *)(void *)fc.conns[k].shm)->written);
			munmap(fc.conns[k].shm, fc.conns[k].shm_len);
			close(fc.conns[k].shm_bell);
		}
		if (fc.conns[k].ev != NULL)
			event_free(fc.conns[k].ev);
		if (fc.conns[k].fd != -1)
			close(fc.conns[k].fd);
	}
	shm_finish(srv);
	srv_close_listener(srv);
	syncer_stop(srv->syncer);
	if (wal_ring_shutdown(srv->ring, &err) != 0)
		fc_fail("wal_ring_shutdown: %s", err.msg);
	if (prod_close != NULL)
		prod_close(srv);
	if (fwd_close != NULL)
		fwd_close(srv);
	closer_stop(srv->closer);
	next = wal_ring_next_seq(srv->ring);
	wal_ring_close(srv->ring);
	event_free(srv->ev_sync_done);
	event_free(srv->ev_sync_timer);
	event_free(srv->ev_sync_kick);
	event_free(srv->ev_commit_delay);
	event_free(srv->ev_rotate);
	event_free(srv->ev_parked);
	event_free(srv->ev_closer);
	event_free(srv->ev_fd_wait);
	event_free(srv->ev_tick);
	event_free(srv->ev_drain);
	event_free(srv->ev_stop_timer);
	event_free(fc.ev_guard);
	if (srv->ev_accept != NULL)
		event_free(srv->ev_accept);
	if (srv->ev_accept_resume != NULL)
		event_free(srv->ev_accept_resume);
	event_base_free(srv->base);
	close(srv->sync_fd);
	close(srv->data_dirfd);
	free(srv->rxbuf);
	free(srv->txbuf);
	free(srv->ackbuf);
	config_free(&srv->cfg);
	for (i = 0; i < fc.nframes; i++)
		free(fc.frames[i].copy);
	return (next);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	log_init(0);
	/*
	 * The daemon logs to stderr (rotations, refused clients): quiet
	 * unless FUZZ_CONN_LOG is set. libFuzzer and the sanitizers keep the
	 * real standard error; fc_fail writes to fd 2.
	 */
	fc.trace = getenv("FUZZ_CONN_TRACE") != NULL;
	if (getenv("FUZZ_CONN_LOG") == NULL)
		stderr = fopen("/dev/null", "w");
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	int64_t next;

	fc.in = data;
	fc.inlen = len;
	fc.inoff = 0;
	fc_start();
	fc_run();
	fc_settle(1);
	next = fc_stop();
	fc_verify(next);
	fc_rmdir(fc.dir);
	return (0);
}
