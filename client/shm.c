/*
 * libwalmmap - the producer's side of a shared-memory ring (see
 * src/wal_shm.h for the layout and the rules both sides follow).
 *
 * One thread writes (the handle's user). Slots are written at the private
 * tail and published in one store per append call: a release store with
 * no fence when the daemon does the sleep handshake's fencing itself
 * (WAL_SHM_FEAT_ASYM: membarrier(2), for which the process registers when
 * it maps the ring), else a sequentially consistent one. Head is read
 * from the header only when the cached copy says the ring is full, so a
 * steady stream of appends touches no line the daemon writes except
 * daemon_sleeping, which changes only when it sleeps.
 *
 * Doorbells: walmmapd passes the producer's end of a socket pair twice
 * (descriptors 2 and 3 of SHM_READY); daemons before it passed two
 * eventfds. Both take an 8-byte write as a ring and give one or more
 * messages to read when the daemon rings, so the code below serves both.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <linux/membarrier.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "walmmap.h"

#define SHM_SPIN_NS	20000		/* poll this long before sleeping */
#define SHM_BELL_READS	64		/* wake-ups drained per wake */

static void	shm_ring_bell(int);
static void	shm_drain_bell(int);
static int	shm_failed(const struct wm_shm *);

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* Map the ring passed with SHM_READY; takes the three descriptors. */
int
wm_shm_map(struct wm_shm **sp, const struct wal_msg_shm_ready *rd, int *fds,
    char *msg)
{
	struct wm_shm *s;
	struct stat st;
	void *base;
	size_t len;
	int rc, seals;

	*sp = NULL;
	len = (size_t)rd->header_size + rd->size;
	if (fds[0] == -1 || fds[1] == -1 || fds[2] == -1) {
		rc = wm_seterr(msg, WALMMAP_EPROTO, "walmmapd passed the ring "
		    "without its descriptors");
		goto fail;
	}
	if (rd->header_size != WAL_SHM_HEADER_SIZE || rd->size <
	    WAL_SHM_MIN_SIZE || rd->size > WAL_SHM_MAX_SIZE ||
	    (rd->size & (rd->size - 1)) != 0 || fstat(fds[0], &st) == -1 ||
	    (uint64_t)st.st_size < len) {
		rc = wm_seterr(msg, WALMMAP_EPROTO, "walmmapd passed a ring of "
		    "%" PRIu64 " bytes (header %" PRIu32 ") that does not "
		    "match its memfd", rd->size, rd->header_size);
		goto fail;
	}
	/*
	 * A memfd that can shrink could be cut under the mapping, and every
	 * later access to the ring would kill us with SIGBUS.
	 */
	if ((seals = fcntl(fds[0], F_GET_SEALS)) == -1 ||
	    (seals & F_SEAL_SHRINK) == 0) {
		rc = wm_seterr(msg, WALMMAP_EPROTO, "walmmapd passed a ring "
		    "whose memfd is not sealed against shrinking");
		goto fail;
	}
	base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_POPULATE, fds[0], 0);
	if (base == MAP_FAILED) {
		rc = wm_seterr(msg, WALMMAP_ENOMEM, "cannot map the %zu-byte "
		    "shared-memory ring: %s", len, strerror(errno));
		goto fail;
	}
	if ((s = calloc(1, sizeof *s)) == NULL) {
		munmap(base, len);
		rc = wm_seterr(msg, WALMMAP_ENOMEM, "out of memory");
		goto fail;
	}
	s->hdr = base;
	s->data = (uint8_t *)base + rd->header_size;
	s->maplen = len;
	s->size = rd->size;
	s->max_record = rd->max_record;
	s->efd_in = fds[1];
	s->efd_out = fds[2];
	close(fds[0]);
	/* Our copies never block us (the daemon never blocks on its own). */
	(void)fcntl(s->efd_in, F_SETFL, fcntl(s->efd_in, F_GETFL) | O_NONBLOCK);
	(void)fcntl(s->efd_out, F_SETFL, fcntl(s->efd_out, F_GETFL) |
	    O_NONBLOCK);
	if (s->hdr->magic != WAL_SHM_MAGIC || s->hdr->version !=
	    WAL_SHM_VERSION || s->hdr->size != s->size) {
		wm_shm_free(s);
		return (wm_seterr(msg, WALMMAP_EPROTO, "the shared-memory ring "
		    "has an unknown header (magic %#" PRIx32 ", version %"
		    PRIu32 ")", ((struct wal_shm_header *)base)->magic,
		    ((struct wal_shm_header *)base)->version));
	}
	if (s->hdr->features & WAL_SHM_FEAT_ASYM) {
		/*
		 * Let the daemon's membarrier(2) fence this process when it
		 * falls asleep; it reaches registered processes only. When
		 * registering fails (an old kernel, a seccomp filter) we keep
		 * our own fence: else a record published as the daemon falls
		 * asleep would wait for its re-check (WAL_SHM_RECHECK_*).
		 */
#ifdef SYS_membarrier
		s->asym = syscall(SYS_membarrier,
		    MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
#endif
	}
	*sp = s;
	return (0);
fail:
	wm_close_fds(fds);
	return (rc);
}

void
wm_shm_free(struct wm_shm *s)
{
	if (s == NULL)
		return;
	munmap(s->hdr, s->maplen);
	close(s->efd_in);
	close(s->efd_out);
	free(s);
}

/*
 * Room for a record of len bytes at the tail, by the cached head only.
 * Returns its slot's position, or -1 when the ring looks full (refresh the
 * head, or wait).
 */
/*
 * The head to wait for when a record of len bytes finds no room: a
 * quarter of the ring free after it (fewer wake-ups than one slot at a
 * time), but never more than what is published, which is all the daemon
 * can free.
 */
uint64_t
wm_shm_room_target(const struct wm_shm *s, uint32_t len)
{
	uint64_t target;

	target = s->tail + wal_shm_slot_bytes(len) + s->size / 4 - s->size;
	return (target > s->published ? s->published : target);
}

int64_t
wm_shm_reserve(struct wm_shm *s, uint32_t len)
{
	uint64_t need = wal_shm_slot_bytes(len), off, pad = 0, pos;
	struct wal_shm_slot *slot;

	off = s->tail & (s->size - 1);
	if (off + need > s->size)
		pad = s->size - off;
	if (s->tail + pad + need - s->head > s->size)
		return (-1);
	if (pad > 0) {
		slot = (struct wal_shm_slot *)(void *)(s->data + off);
		slot->len = WAL_SHM_PAD;
		slot->flags = 0;
		s->tail += pad;
	}
	pos = s->tail;
	s->tail += need;
	return ((int64_t)pos);
}

/* Fill a reserved slot. */
void
wm_shm_write(struct wm_shm *s, uint64_t pos, const void *data, uint32_t len,
    uint32_t flags)
{
	struct wal_shm_slot *slot;

	slot = (struct wal_shm_slot *)(void *)(s->data + (pos & (s->size - 1)));
	slot->len = len;
	slot->flags = flags;
	if (len > 0)
		memcpy(slot + 1, data, len);
	s->records++;
}

/*
 * Publish the slots written so far and ring the doorbell if the daemon
 * sleeps. The store of tail releases the slots (pairs with the daemon's
 * acquire load of tail); with the load of daemon_sleeping after it, it
 * pairs with the daemon's store of daemon_sleeping, fence, load of tail
 * (src/wal_shm.c wal_shm_sleep): either it sees our tail or we see its
 * flag. Under WAL_SHM_FEAT_ASYM the daemon's fence is membarrier(2),
 * which fences this thread too: our side needs only the compiler to keep
 * the load after the store, and the store costs no wait for the line the
 * daemon polls. Else both are sequentially consistent.
 */
void
wm_shm_publish(struct wm_shm *s)
{
	uint32_t one = 1, sleeping;

	if (s->published == s->tail)
		return;
	if (s->asym) {
		atomic_store_explicit(&s->hdr->tail, s->tail,
		    memory_order_release);
		atomic_signal_fence(memory_order_seq_cst);
		sleeping = atomic_load_explicit(&s->hdr->daemon_sleeping,
		    memory_order_relaxed);
	} else {
		atomic_store_explicit(&s->hdr->tail, s->tail,
		    memory_order_seq_cst);
		sleeping = atomic_load_explicit(&s->hdr->daemon_sleeping,
		    memory_order_seq_cst);
	}
	s->published = s->tail;
	s->records_pub = s->records;
	if (sleeping && atomic_compare_exchange_strong(
	    &s->hdr->daemon_sleeping, &one, 0))
		shm_ring_bell(s->efd_in);
}

/* Re-read the daemon's head. -1 when it makes no sense. */
int
wm_shm_refresh(struct wm_shm *s)
{
	uint64_t h = atomic_load_explicit(&s->hdr->head, memory_order_acquire);

	if (h < s->head || h > s->published)
		return (-1);
	s->head = h;
	return (0);
}

/* The seq the daemon stored in a consumed slot (WAL_SHM_F_SEQ). */
int64_t
wm_shm_seq(const struct wm_shm *s, uint64_t pos)
{
	const struct wal_shm_slot *slot;

	slot = (const struct wal_shm_slot *)(const void *)(s->data +
	    (pos & (s->size - 1)));
	return (*(const volatile int64_t *)&slot->seq);
}

/*
 * Has the daemon reached target on the counter cond names? The acquire
 * loads pair with the daemon's release stores in wal_shm_publish() and
 * wal_shm_publish_durable(): a record counted is in the log and its slot's
 * seq is stored.
 */
int
wm_shm_reached(struct wm_shm *s, enum wm_shm_cond cond, uint64_t target)
{
	switch (cond) {
	case WM_SHM_WRITTEN:
		return (atomic_load_explicit(&s->hdr->written,
		    memory_order_acquire) >= target);
	case WM_SHM_DURABLE:
		return (atomic_load_explicit(&s->hdr->durable,
		    memory_order_acquire) >= target);
	case WM_SHM_HEAD:
		if (wm_shm_refresh(s) != 0)
			return (-1);
		return (s->head >= target);
	}
	return (-1);
}

/*
 * Wait until the daemon reaches target (1), the deadline passes (0, even
 * while the doorbell keeps ringing), the socket has something to read
 * (2), or the daemon publishes nonsense (-1).
 * Spins briefly, then sleeps on the doorbell with producer_waiting set.
 * After a failed sync durability never comes: a wait for it goes to the
 * socket, where the daemon says why (or closes the connection).
 */
int
wm_shm_wait(struct wm_shm *s, int sock, enum wm_shm_cond cond,
    uint64_t target, int64_t deadline)
{
	struct pollfd pfd[2];
	struct timespec t0, t;
	int rc, i;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0;; i++) {
		if ((rc = wm_shm_reached(s, cond, target)) != 0)
			return (rc);
		if (cond == WM_SHM_DURABLE && shm_failed(s))
			break;
		if ((i & 63) != 63) {
			cpu_relax();
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec -
		    t0.tv_nsec) < SHM_SPIN_NS)
			continue;
		atomic_store_explicit(&s->hdr->producer_waiting, 1,
		    memory_order_seq_cst);
		/*
		 * Pairs with the daemon's stores of head, written, durable or
		 * failed, fence, load of producer_waiting (src/wal_shm.c
		 * producer_wants_bell): either the loads below see its
		 * progress, or it sees our flag and rings.
		 */
		atomic_thread_fence(memory_order_seq_cst);
		if ((rc = wm_shm_reached(s, cond, target)) != 0)
			return (rc);
		if (cond == WM_SHM_DURABLE && shm_failed(s))
			break;
		/* Doorbells that keep ringing do not extend the wait. */
		if (wm_expired(deadline))
			return (0);
		pfd[0].fd = sock;
		pfd[0].events = POLLIN;
		pfd[1].fd = s->efd_out;
		pfd[1].events = POLLIN;
		pfd[0].revents = pfd[1].revents = 0;
		rc = poll(pfd, 2, wm_left_ms(deadline));
		if (rc == 0)
			return (0);
		if (pfd[1].revents & POLLIN)
			shm_drain_bell(s->efd_out);
		if (pfd[0].revents) {
			/* Progress first: a dying daemon may have done it. */
			if ((rc = wm_shm_reached(s, cond, target)) != 0)
				return (rc);
			return (2);
		}
		if (pfd[1].revents & (POLLERR | POLLHUP | POLLNVAL))
			break;	/* the daemon dropped the ring */
		clock_gettime(CLOCK_MONOTONIC, &t0);
		i = 0;
	}
	/* Failed, or no doorbell: only the socket can tell us more. */
	pfd[0].fd = sock;
	pfd[0].events = POLLIN;
	pfd[0].revents = 0;
	rc = poll(pfd, 1, wm_left_ms(deadline));
	return (rc == 0 ? 0 : 2);
}

/* Ring the daemon's doorbell; a full or broken doorbell is no error. */
static void
shm_ring_bell(int fd)
{
	uint64_t bell = 1;

	/* No SIGPIPE when the daemon closed its end; an eventfd: write(). */
	if (send(fd, &bell, sizeof bell, MSG_DONTWAIT | MSG_NOSIGNAL) == -1 &&
	    errno == ENOTSOCK)
		(void)write(fd, &bell, sizeof bell);
}

/* Woken: take every wake-up waiting, so the next poll sleeps. */
static void
shm_drain_bell(int fd)
{
	uint64_t buf[8];
	int i;

	for (i = 0; i < SHM_BELL_READS; i++)
		if (read(fd, buf, sizeof buf) <= 0)
			break;
}

/* Has the daemon said that durable will never advance again? */
static int
shm_failed(const struct wm_shm *s)
{
	return (atomic_load_explicit(&s->hdr->failed,
	    memory_order_acquire) != 0);
}
