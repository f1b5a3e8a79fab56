"""The reading side of the walmmap package: files and subscriptions."""

import os
import subprocess
import sys
import textwrap
import threading

import pytest

import walmmap


def fill(daemon, n, fmt=b"rec %d"):
    """Append n records; return their payloads."""
    payloads = [fmt % i for i in range(n)]
    with walmmap.connect(daemon.sock) as p:
        p.append_batch(payloads)
    return payloads


def test_files_and_subscription_give_the_same_records(daemon):
    payloads = fill(daemon, 50)
    files = list(walmmap.open_reader(daemon.dir))
    sub = list(walmmap.open_reader(daemon.sock))
    assert [r.payload for r in files] == payloads
    assert files == sub
    assert all(isinstance(r, walmmap.Record) for r in files)
    assert [r.seq for r in files] == list(range(50))


def test_from_seq(daemon):
    fill(daemon, 20)
    for src in (daemon.dir, daemon.sock):
        with walmmap.open_reader(src, from_seq=15) as r:
            assert [rec.seq for rec in r] == [15, 16, 17, 18, 19]
        with walmmap.open_reader(src, from_seq=20) as r:
            assert list(r) == []
    with pytest.raises(ValueError, match="subscription"):
        walmmap.open_reader(daemon.dir, from_seq=-1)
    with pytest.raises(ValueError):
        walmmap.open_reader(daemon.sock, from_seq=-2)


def test_zero_copy_payloads(daemon):
    payloads = fill(daemon, 3)
    r = walmmap.open_reader(daemon.dir, copy=False)
    first = next(r)
    assert isinstance(first.payload, memoryview)
    assert first.payload.readonly
    assert first.payload == payloads[0]
    assert bytes(first.payload[:3]) == b"rec"
    second = next(r)
    assert bytes(second.payload) == payloads[1]
    # The first record's view was released: no access to stale memory.
    with pytest.raises(ValueError):
        bytes(first.payload)
    r.close()
    with pytest.raises(ValueError):
        bytes(second.payload)


def run_child(code, *args):
    """Run code in a child interpreter (a crash there does not take pytest
    with it); return its exit status and output."""
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)] +
                       list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    return p.returncode, p.stdout.decode(errors="replace")


def test_zero_copy_views_kept_do_not_crash(daemon):
    # A slice of a zero-copy payload (or an export of it) is a view of its
    # own that release() of the payload does not reach: it must neither
    # read unmapped memory (segfault) nor see another record's bytes.
    fill(daemon, 400, b"%d" + b"x" * 3000)    # several 1 MiB segments
    code = """
        import gc, sys, walmmap
        src = sys.argv[1]
        want = lambda i: b"%d" % i + b"x" * 3000
        # A slice kept past next(): next() refuses, the slice stays right.
        r = walmmap.open_reader(src, copy=False)
        rec = next(r)
        s = rec.payload[1:]
        try:
            next(r)
            sys.exit("next() with a slice of the last payload alive")
        except BufferError:
            pass
        assert bytes(s) == want(0)[1:], "slice changed"
        del s
        assert next(r).seq == 1
        # An export (as numpy.frombuffer makes) of the payload itself.
        import pickle
        pb = pickle.PickleBuffer(next(r).payload)
        try:
            next(r)
            sys.exit("next() with an export of the last payload alive")
        except BufferError:
            pass
        assert bytes(pb.raw()) == want(2), "export changed"
        pb.release()
        r = walmmap.open_reader(src, from_seq=1, copy=False)
        assert next(r).seq == 1
        # Slices kept past close(): they stay valid and right.
        keep = [rec.payload[1:] for rec in [next(r)]]
        r.close()
        assert r.closed
        assert list(r) == []
        gc.collect()
        assert bytes(keep[0]) == want(2)[1:], "slice after close"
        # A reader dropped without close() while a payload is kept.
        def first():
            return next(iter(walmmap.open_reader(src, copy=False))).payload
        v = first()
        gc.collect()
        assert bytes(v) == want(0), "payload after the reader was freed"
        print("ok")
    """
    for src in (daemon.dir, daemon.sock):
        rc, out = run_child(code, src)
        assert rc == 0 and out.strip() == "ok", (src, rc, out)


def test_follow_subscription_and_files(daemon):
    fill(daemon, 5)
    for src in (daemon.sock, daemon.dir):
        got = []
        reader = walmmap.open_reader(src, from_seq=3, follow=True,
                                     timeout=60)
        started = threading.Event()

        def consume():
            started.set()
            for rec in reader:
                got.append(rec)
                if len(got) == 7:
                    break

        t = threading.Thread(target=consume)
        t.start()
        assert started.wait(10)
        with walmmap.connect(daemon.sock) as p:
            p.append_batch([b"new"] * 5)
        t.join(60)
        assert not t.is_alive()
        reader.close()
        assert [r.seq for r in got][:2] == [3, 4]
        assert len(got) == 7 and got[-1].payload == b"new"


def test_follow_stops_after_timeout_and_on_close(daemon):
    fill(daemon, 3)
    with walmmap.open_reader(daemon.dir, follow=True, timeout=0.3) as r:
        assert len(list(r)) == 3
    # close() from another thread ends an endless following iteration.
    reader = walmmap.open_reader(daemon.sock, follow=True)
    got = []
    t = threading.Thread(target=lambda: got.extend(reader))
    t.start()
    while len(got) < 3 and t.is_alive():
        t.join(0.05)
    reader.close()
    t.join(30)
    assert not t.is_alive()
    assert len(got) == 3


def test_only_new_records(daemon):
    fill(daemon, 4)
    with walmmap.open_reader(daemon.sock, from_seq=-1, follow=True,
                             timeout=30) as r:
        with walmmap.connect(daemon.sock) as p:
            seq = p.append(b"fresh")
        rec = next(r)
    assert (rec.seq, rec.payload) == (seq, b"fresh") and seq == 4


def test_open_errors_name_the_path(tmpbase, monkeypatch):
    missing = os.path.join(tmpbase, "missing")
    with pytest.raises(walmmap.WalmmapError) as ei:
        walmmap.open_reader(missing)
    assert missing in str(ei.value)
    # None subscribes on the library's default socket.
    monkeypatch.setenv("WALMMAP_SOCKET", missing + ".sock")
    with pytest.raises(walmmap.NoDaemonError) as ei:
        walmmap.open_reader()
    assert missing + ".sock" in ei.value.message


def test_damage_is_a_corrupt_error(daemon):
    fill(daemon, 3, b"marker-%d-payload")
    assert daemon.stop() == 0
    for name in os.listdir(daemon.dir):
        path = os.path.join(daemon.dir, name)
        with open(path, "rb") as f:
            data = f.read()
        at = data.find(b"marker-0-payload")
        if at >= 0:
            with open(path, "r+b") as f:
                f.seek(at)
                f.write(b"M")
            break
    else:
        pytest.fail("no segment holds the records")
    with walmmap.open_reader(daemon.dir) as r:
        with pytest.raises(walmmap.CorruptError) as ei:
            list(r)
    assert ei.value.code == walmmap.Error.CORRUPT
    assert ei.value.message
