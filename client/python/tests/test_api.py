"""The package's promises about itself: its type hints match it and
catch misuse, and the README's example runs."""

import os
import re
import site
import subprocess
import sys
import textwrap

import pytest

import walmmap

PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(
    walmmap.__file__)))
README = os.path.join(os.path.dirname(__file__), "..", "..", "..",
                      "README.md")


def run_mypy(*args, cwd):
    """python -m mypy with the package on its path; (status, output)."""
    pytest.importorskip("mypy", reason="mypy (python3-mypy) not installed")
    env = dict(os.environ)
    if PKG_PARENT not in site.getsitepackages():
        env["MYPYPATH"] = PKG_PARENT    # not installed: the source tree
    p = subprocess.run([sys.executable, "-m"] + list(args), cwd=cwd,
                       env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=600)
    return p.returncode, p.stdout


def test_stubs_match_the_module(tmp_path):
    rc, out = run_mypy("mypy.stubtest", "walmmap", cwd=tmp_path)
    assert rc == 0, out


def test_type_hints_catch_misuse(tmp_path):
    good = tmp_path / "good.py"
    good.write_text(textwrap.dedent("""
        import walmmap
        with walmmap.connect(None, ack="durable", shm=True) as p:
            seq: int | None = p.append(b"x", ack=walmmap.Ack.WRITTEN)
            seqs = p.append_batch([b"a", bytearray(b"b"), memoryview(b"c")])
            p.wait(seq, "durable", timeout=1.5)
            d: int = p.sync()
            n: int = p.progress.pending
        for rec in walmmap.open_reader("/var/lib/walmmapd", from_seq=3):
            s: int = rec.seq + rec.timestamp_ns
            b = bytes(rec.payload)
        try:
            pass
        except walmmap.TimeoutError as e:
            code: int = e.code
            msg: str = e.message
        """))
    bad = tmp_path / "bad.py"
    bad.write_text(textwrap.dedent("""
        import walmmap
        p = walmmap.connect(shm="yes")
        p.append("text")
        p.append_batch([1, 2])
        x: str = p.sync()
        for rec in walmmap.open_reader(follow=1.5):
            y: str = rec.seq
        """))
    rc, out = run_mypy("mypy", "--cache-dir=/dev/null", "--strict",
                       str(good), cwd=tmp_path)
    assert rc == 0, out
    rc, out = run_mypy("mypy", "--cache-dir=/dev/null", str(bad),
                       cwd=tmp_path)
    assert rc == 1, out
    lines = {int(m) for m in re.findall(r"bad\.py:(\d+): error", out)}
    assert lines == {3, 4, 5, 6, 7, 8}, out


def test_readme_example_runs(daemon):
    if not os.path.exists(README):
        pytest.skip("README.md not beside the package (installed alone)")
    with open(README) as f:
        text = f.read()
    section = text[text.index("\n## Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    env = dict(os.environ, WALMMAP_SOCKET=daemon.sock,
               PYTHONPATH=PKG_PARENT)
    p = subprocess.run([sys.executable, "-c", code], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout
    assert "order 17 filled" in p.stdout, p.stdout


def python_with(env_changes, code):
    """Run code in a fresh interpreter with the package on its path."""
    env = dict(os.environ, PYTHONPATH=PKG_PARENT)
    for k, v in env_changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return subprocess.run([sys.executable, "-c", code], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=120)


def test_library_choice():
    lib = os.environ.get("WALMMAP_LIBRARY")
    if not lib:
        pytest.skip("runs with WALMMAP_LIBRARY set (the build tree's)")
    libdir = os.path.dirname(os.path.abspath(lib))
    if not os.path.exists(os.path.join(libdir, "libwalmmap.so.0")):
        pytest.skip("no libwalmmap.so.0 beside " + lib)
    # Without $WALMMAP_LIBRARY: the installed libwalmmap.so.0, found by
    # the dynamic loader (here through LD_LIBRARY_PATH).
    code = ("import walmmap\n"
            "maps = open('/proc/self/maps').read()\n"
            "print([l.split()[-1] for l in maps.splitlines()\n"
            "       if 'libwalmmap.so' in l][0])\n")
    p = python_with({"WALMMAP_LIBRARY": None, "LD_LIBRARY_PATH": libdir},
                    code)
    assert p.returncode == 0, p.stdout
    assert os.path.realpath(p.stdout.strip()) == \
        os.path.realpath(os.path.join(libdir, "libwalmmap.so.0"))
    # A $WALMMAP_LIBRARY that cannot be loaded is an ImportError naming it.
    p = python_with({"WALMMAP_LIBRARY": "/nonexistent/libwalmmap.so"},
                    "import walmmap")
    assert p.returncode != 0
    assert "ImportError" in p.stdout and "WALMMAP_LIBRARY" in p.stdout
    assert "/nonexistent/libwalmmap.so" in p.stdout
