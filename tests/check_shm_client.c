/*
 * walmmapd tests - libwalmmap's side of a shared-memory ring, white box:
 * client/shm.c compiled in, on a ring formatted here (no daemon: what is
 * tested is the producer's choice, which no daemon can see).
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "internal.h"
#include "testsupport.h"
#include "wal_proto.h"
#include "wal_shm.h"

#define RING_BYTES	(64u * 1024)

/*
 * Map a ring as libwalmmap does on SHM_READY, its header saying
 * features; returns what wm_shm_map made (the test frees it).
 */
static struct wm_shm *
map_ring(uint32_t features)
{
	struct wal_msg_shm_ready rd;
	struct wal_shm_header *h;
	struct wm_shm *s;
	char msg[512];
	size_t len = WAL_SHM_HEADER_SIZE + RING_BYTES;
	int fds[3], sv[2], mfd;

	mfd = memfd_create("test-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_ge(mfd, 0);
	ck_assert_int_eq(ftruncate(mfd, (off_t)len), 0);
	ck_assert_int_eq(fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW),
	    0);
	h = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	ck_assert_ptr_ne(h, MAP_FAILED);
	wal_shm_format(h, RING_BYTES, wal_shm_max_record(RING_BYTES, 1024));
	h->features = features;		/* whatever this process may do */
	munmap(h, len);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0,
	    sv), 0);
	close(sv[0]);
	memset(&rd, 0, sizeof rd);
	rd.size = RING_BYTES;
	rd.header_size = WAL_SHM_HEADER_SIZE;
	rd.max_record = wal_shm_max_record(RING_BYTES, 1024);
	fds[0] = mfd;
	fds[1] = sv[1];
	fds[2] = fcntl(sv[1], F_DUPFD_CLOEXEC, 0);
	ck_assert_msg(wm_shm_map(&s, &rd, fds, msg) == 0, "%s", msg);
	return (s);
}

/*
 * membarrier(2) refused with EPERM from here on, as a unit's
 * SystemCallFilter with SystemCallErrorNumber=EPERM would (this test
 * runs in its own process: CK_FORK).
 */
static void
deny_membarrier(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof f / sizeof f[0], f };

	ck_assert_int_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	ck_assert_int_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
}

/*
 * WAL_SHM_FEAT_ASYM lets a producer skip its fence only because the
 * daemon's membarrier(2) fences it, which reaches registered processes
 * only. A producer whose MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED was
 * refused must keep its sequentially consistent publish: else each time
 * the daemon falls asleep its record can be missed and wait for the
 * daemon's re-check, up to a second, although the daemon's fence works.
 */
START_TEST(test_asym_needs_registration)
{
	struct wm_shm *s;
	long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

	if (q == -1 || (q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0) {
		/* Nothing to register with here: never asym. */
		s = map_ring(WAL_SHM_FEAT_ASYM);
		ck_assert_int_eq(s->asym, 0);
		wm_shm_free(s);
		return;
	}
	s = map_ring(WAL_SHM_FEAT_ASYM);
	ck_assert_msg(s->asym == 1, "registered, yet the fence is kept");
	wm_shm_free(s);
	s = map_ring(0);
	ck_assert_msg(s->asym == 0, "an older daemon's ring published "
	    "without a fence");
	wm_shm_free(s);
}
END_TEST

START_TEST(test_asym_registration_refused)
{
	struct wm_shm *s;

	deny_membarrier();
	s = map_ring(WAL_SHM_FEAT_ASYM);
	ck_assert_msg(s->asym == 0, "membarrier registration was refused, "
	    "yet the producer publishes without a fence");
	/* Still a working ring: publishing needs no daemon here. */
	ck_assert_int_ge(wm_shm_reserve(s, 8), 0);
	wm_shm_write(s, 0, "12345678", 8, 0);
	wm_shm_publish(s);
	ck_assert_uint_eq(atomic_load(&s->hdr->tail), 32);
	wm_shm_free(s);
}
END_TEST

static Suite *
shm_client_suite(void)
{
	Suite *s = suite_create("shm_client");
	TCase *tc = tcase_create("producer");

	tcase_add_test(tc, test_asym_needs_registration);
	tcase_add_test(tc, test_asym_registration_refused);
	suite_add_tcase(s, tc);
	return (s);
}

int
main(void)
{
	return (ts_run(shm_client_suite()));
}
