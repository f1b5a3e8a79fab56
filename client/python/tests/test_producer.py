"""The producer side of the walmmap package against a real walmmapd."""

import threading
import time
from array import array

import pytest

import walmmap


def read_all(path):
    """Every record of a log's files, payloads as bytes."""
    with walmmap.open_reader(path) as r:
        return list(r)


def test_append_returns_seqs_and_records_read_back(daemon):
    t0 = time.time_ns()
    with walmmap.connect(daemon.sock) as p:
        seqs = [p.append(b"record %d" % i) for i in range(3)]
    t1 = time.time_ns()
    assert seqs == [0, 1, 2]
    recs = read_all(daemon.dir)
    assert [r.seq for r in recs] == seqs
    assert [r.payload for r in recs] == [b"record 0", b"record 1",
                                         b"record 2"]
    for r in recs:
        assert isinstance(r.payload, bytes)
        assert t0 <= r.timestamp_ns <= t1


def test_append_takes_any_bytes_like(daemon):
    words = array("H", [1, 2, 3])
    data = [b"", bytearray(b"ba"), memoryview(b"xmvx")[1:3],
            memoryview(words)]
    with walmmap.connect(daemon.sock) as p:
        for d in data:
            p.append(d)
        p.append_batch(data)
    want = [b"", b"ba", b"mv", words.tobytes()]
    assert [r.payload for r in read_all(daemon.dir)] == want + want


def test_append_batch(daemon):
    recs = [bytes([i % 251]) * (i % 300) for i in range(1000)]
    with walmmap.connect(daemon.sock) as p:
        seqs = p.append_batch(recs)
        more = p.append_batch(b"g%d" % i for i in range(5))
        assert p.append_batch([]) == []
    assert seqs == list(range(1000))
    assert more == list(range(1000, 1005))
    got = read_all(daemon.dir)
    assert [r.payload for r in got] == recs + [b"g%d" % i for i in range(5)]


def test_append_batch_refuses_non_bytes_before_sending(daemon):
    with walmmap.connect(daemon.sock) as p:
        with pytest.raises(TypeError):
            p.append_batch([b"a", "text"])
        with pytest.raises(TypeError):
            p.append("text")
        assert p.progress.sent == 0
    assert read_all(daemon.dir) == []


def test_append_batch_records_changing_meanwhile(daemon):
    # Another thread may resize a bytearray (or swap a list item) while
    # append_batch reads the records; the lengths it sends must still be
    # those of the bytes it sends, never past them (heap bytes in the log
    # or a crash). A list whose iteration grows its first record stands in
    # for that thread, deterministically (in a child: it may crash).
    import subprocess
    import sys
    import textwrap
    code = textwrap.dedent("""
        import sys, walmmap
        class Growing(list):
            def __iter__(self):
                self[0].extend(b"g" * 200000)
                return super().__iter__()
        with walmmap.connect(sys.argv[1]) as p:
            for i in range(5):
                try:
                    p.append_batch(Growing([bytearray(b"a"), b"b" * 10]))
                except (ValueError, BufferError):
                    pass
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code, daemon.sock],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)
    assert r.returncode == 0, r.stdout
    for rec in read_all(daemon.dir):
        assert rec.payload.rstrip(b"g") in (b"a", b"b" * 10), \
            (rec.seq, len(rec.payload), rec.payload[:40])


def test_pipelined_appends_and_wait(daemon):
    with walmmap.connect(daemon.sock) as p:
        for i in range(100):
            assert p.append(b"p%d" % i, wait=False) is None
        assert p.append_batch([b"b"] * 50, wait=False) is None
        p.wait()
        prog = p.progress
        assert prog.sent == 150 and prog.acked == 150
        assert prog.pending == 0 and prog.last_seq == 149
    assert len(read_all(daemon.dir)) == 150


def test_context_manager_waits_for_pipelined_records(daemon):
    with walmmap.connect(daemon.sock) as p:
        for i in range(10):
            p.append(b"x", wait=False)
    assert p.closed
    assert len(read_all(daemon.dir)) == 10
    with pytest.raises(ValueError, match="closed"):
        p.append(b"after close")
    p.close()   # twice is harmless


def test_sync_and_durable_waits(daemon):
    with walmmap.connect(daemon.sock) as p:
        seq = p.append(b"one")
        assert p.sync() >= seq
        seq = p.append(b"two", ack="written")
        p.wait(seq, "durable")
        p.append(b"three", wait=False)
        p.wait(level=walmmap.Ack.DURABLE)
        assert p.progress.durable_seq >= seq + 1
    with walmmap.connect(daemon.sock, ack="durable") as p:
        seq = p.append(b"four")
        assert p.progress.durable_seq >= seq
        assert p.append(b"five", ack="none", wait=False) is None
        p.wait(level="written")


def test_errors_carry_code_and_message(tmpbase):
    path = tmpbase + "/no-such.sock"
    with pytest.raises(walmmap.NoDaemonError) as ei:
        walmmap.connect(path)
    e = ei.value
    assert isinstance(e, walmmap.WalmmapError)
    assert isinstance(e, ConnectionRefusedError)
    assert e.code == walmmap.Error.NODAEMON
    assert e.name == "walmmapd is not running"
    assert path in e.message and path in str(e)


def test_errors_survive_pickling(tmpbase):
    # multiprocessing and concurrent.futures pickle a worker's exception
    # to hand it to the parent: unpickling must rebuild the same error.
    import pickle
    with pytest.raises(walmmap.NoDaemonError) as ei:
        walmmap.connect(tmpbase + "/no-such.sock")
    errs = [ei.value] + [cls(code, "what failed, on what, why") for
                         code, cls in walmmap._ERROR_CLASSES.items()]
    errs.append(walmmap.WalmmapError(99, "a code this package lacks"))
    for e in errs:
        e2 = pickle.loads(pickle.dumps(e))
        assert type(e2) is type(e)
        assert (e2.code, e2.name, e2.message, str(e2)) == \
            (e.code, e.name, e.message, str(e))


def test_record_too_large_leaves_connection_usable(tmpbase):
    from conftest import Daemon
    d = Daemon(tmpbase, "-o", "max_record=1K")
    d.start()
    try:
        with walmmap.connect(d.sock) as p:
            assert p.max_record == 1024
            with pytest.raises(walmmap.RecordTooLargeError) as ei:
                p.append(b"x" * 2000)
            assert ei.value.code == walmmap.Error.TOOLARGE
            assert "2000" in ei.value.message
            assert p.append(b"small") == 0
    finally:
        assert d.stop() == 0


def test_bad_arguments(daemon):
    with pytest.raises(ValueError, match="acknowledgement level"):
        walmmap.connect(daemon.sock, ack="soon")
    with walmmap.connect(daemon.sock) as p:
        with pytest.raises(ValueError):
            p.append(b"x", ack=7)
        with pytest.raises(ValueError):
            p.wait(level="none")
        with pytest.raises(ValueError):
            p.wait(timeout=-1)
    with pytest.raises(ValueError, match="NUL"):
        walmmap.connect("bad\0path")


def test_default_socket_is_the_librarys(daemon, monkeypatch):
    # socket=None leaves the choice to libwalmmap ($WALMMAP_SOCKET here).
    monkeypatch.setenv("WALMMAP_SOCKET", daemon.sock)
    with walmmap.connect() as p:
        seq = p.append(b"via the environment")
    with walmmap.open_reader(from_seq=seq) as r:
        assert next(r).payload == b"via the environment"


def test_shared_memory_producer(daemon):
    with walmmap.connect(daemon.sock, shm=True) as p:
        assert p.shm_active, p.shm_reason
        assert p.shm_reason is None
        seqs = p.append_batch([b"s%d" % i for i in range(200)])
        seqs.append(p.append(b"last"))
    assert seqs == list(range(201))
    assert read_all(daemon.dir)[-1].payload == b"last"
    with walmmap.connect(daemon.sock) as p:
        assert not p.shm_active and "not requested" in p.shm_reason


def test_timeout_on_a_stopped_daemon(daemon):
    with walmmap.connect(daemon.sock) as p:
        p.append(b"before")
        p.set_timeout(0.2)
        daemon.pause()
        try:
            with pytest.raises(walmmap.TimeoutError) as ei:
                p.sync()
            assert isinstance(ei.value, TimeoutError)
            assert ei.value.code == walmmap.Error.TIMEDOUT
        finally:
            daemon.resume()
        p.set_timeout(30)
        assert p.sync() >= 0


def test_blocking_calls_release_the_gil(daemon):
    # One thread blocks in sync() on a stopped daemon; this thread must
    # still run Python code meanwhile, and then wake the daemon. Were the
    # GIL held, this thread would get it back only when sync() timed out.
    p = walmmap.connect(daemon.sock, timeout=20)
    p.append(b"x")
    result = []
    calling = threading.Event()

    def syncer():
        calling.set()
        try:
            result.append(p.sync())
        except walmmap.WalmmapError as e:
            result.append(e)

    daemon.pause()
    t = threading.Thread(target=syncer)
    t.start()
    try:
        assert calling.wait(10)
        time.sleep(0.2)         # let it enter the library
        total = sum(range(200000))  # Python code: needs the GIL
        still_blocked = t.is_alive()
    finally:
        daemon.resume()
        t.join(60)
    p.close()
    assert total == 199999 * 100000
    assert still_blocked
    assert result == [0], result


def test_threads_share_and_own_producers(daemon):
    shared = walmmap.connect(daemon.sock)
    seqs = []
    lock = threading.Lock()

    def work(i):
        own = walmmap.connect(daemon.sock)
        mine = []
        for k in range(20):
            mine += own.append_batch([b"o%d.%d" % (i, k)] * 10)
            mine.append(shared.append(b"s%d.%d" % (i, k)))
        own.close()
        with lock:
            seqs.extend(mine)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    shared.close()
    assert sorted(seqs) == list(range(4 * 20 * 11))
    assert len(read_all(daemon.dir)) == 4 * 20 * 11
