"""walmmap: append to and read walmmapd, the local write-ahead-log daemon.

A thin layer over libwalmmap (loaded with cffi in ABI mode; see
``walmmap._ffi``). Producers append records and learn when they are
*written* (they survive a crash of the producer or the daemon) or
*durable* (they survive power loss)::

    import walmmap

    with walmmap.connect() as log:              # the library's default socket
        seq = log.append(b"order 42 filled")    # waits until written
        seqs = log.append_batch([b"a", b"b"])   # one round trip
        log.sync()                              # now durable too

    for rec in walmmap.open_reader("/var/lib/walmmapd", from_seq=seq):
        print(rec.seq, rec.timestamp_ns, rec.payload)

Every call that waits (connecting, appending, waiting, syncing, reading)
releases the GIL, so threads that produce or read in parallel scale; a
producer or reader may be shared between threads (its calls take turns),
but one per thread runs them in parallel. Failures raise
:class:`WalmmapError` subclasses that carry the library's message and code.

The library is ``$WALMMAP_LIBRARY`` when set (a path: the build tree's
``client/.libs/libwalmmap.so``), else the installed ``libwalmmap.so.0``.
"""

import enum
import os
import stat
import sys
import threading
import weakref
from array import array
from itertools import accumulate
from typing import Iterable, List, NamedTuple, Optional, Union

from ._ffi import CONNECT_TIMEOUT_MS, F_FOLLOW, F_SHM, ffi, lib

__all__ = [
    "Ack", "Error", "Progress", "Producer", "Reader", "Record",
    "connect", "open_reader",
    "WalmmapError", "NoDaemonError", "PermissionDeniedError",
    "RecordTooLargeError", "NoSpaceError", "VersionError",
    "ConnectionLostError", "TimeoutError", "WouldBlockError",
    "InvalidArgumentError", "LogIOError", "ProtocolError",
    "OutOfMemoryError", "BusyError", "SyncError", "CorruptError",
    "ShutdownError", "NotSupportedError", "RemovedError",
]

__version__ = "0.1.0"

# References to an object (CPython); elsewhere, 0: no view is detected.
_getrefcount = getattr(sys, "getrefcount", lambda _o: 0)

# How long one wait of a following reader lasts before it looks at
# Python's signals (Ctrl-C) and at close() from another thread.
_FOLLOW_POLL_MS = 250


class Ack(enum.IntEnum):
    """Acknowledgement levels (walmmapd(8), "Guarantees")."""

    NONE = 0        #: accepted; nothing is promised
    WRITTEN = 1     #: in the log: survives kill -9
    DURABLE = 2     #: synced: survives power loss


class Error(enum.IntEnum):
    """libwalmmap's error codes (enum walmmap_error, positive)."""

    NODAEMON = 1
    PERM = 2
    TOOLARGE = 3
    NOSPC = 4
    VERSION = 5
    LOST = 6
    TIMEDOUT = 7
    AGAIN = 8
    INVAL = 9
    IO = 10
    PROTO = 11
    NOMEM = 12
    BUSY = 13
    SYNC = 14
    CORRUPT = 15
    SHUTDOWN = 16
    NOTSUP = 17
    REMOVED = 18


class WalmmapError(Exception):
    """A failure reported by libwalmmap or walmmapd.

    ``code`` is the library's error code (an :class:`Error` member, or a
    plain int for a code this package does not know), ``name`` its
    description (walmmap_strerror()), ``message`` the library's full
    message: what failed, on what, and why.
    """

    def __init__(self, code: int, message: str) -> None:
        try:
            code = Error(code)
        except ValueError:
            pass
        self.code = code
        self.name = ffi.string(lib.walmmap_strerror(int(code))).decode()
        self.message = message or self.name
        super().__init__(self.message)

    def __reduce__(self):
        """Pickle as the call that makes it (multiprocessing hands a
        worker's exception to its parent so)."""
        return (type(self), (int(self.code), self.message))


class NoDaemonError(WalmmapError, ConnectionRefusedError):
    """No walmmapd listens on the socket (Error.NODAEMON)."""


class PermissionDeniedError(WalmmapError, PermissionError):
    """The socket or walmmapd's rights refused us (Error.PERM)."""


class RecordTooLargeError(WalmmapError, ValueError):
    """A record above the daemon's limit (Error.TOOLARGE)."""


class NoSpaceError(WalmmapError):
    """The log's disk is full (Error.NOSPC)."""


class VersionError(WalmmapError):
    """No common protocol version (Error.VERSION)."""


class ConnectionLostError(WalmmapError, ConnectionError):
    """The connection to walmmapd was lost (Error.LOST)."""


class TimeoutError(WalmmapError, TimeoutError):  # noqa: A001
    """A time limit expired; the handle stays usable (Error.TIMEDOUT)."""


class WouldBlockError(WalmmapError):
    """Non-blocking: try again later (Error.AGAIN)."""


class InvalidArgumentError(WalmmapError, ValueError):
    """The library refused an argument (Error.INVAL)."""


class LogIOError(WalmmapError):
    """An I/O error, the daemon's or ours (Error.IO)."""


class ProtocolError(WalmmapError):
    """walmmapd sent something invalid (Error.PROTO)."""


class OutOfMemoryError(WalmmapError, MemoryError):
    """Memory ran out (Error.NOMEM)."""


class BusyError(WalmmapError):
    """walmmapd is at its connection limit (Error.BUSY)."""


class SyncError(WalmmapError):
    """walmmapd could not sync: the records are not durable (Error.SYNC)."""


class CorruptError(WalmmapError):
    """A reader met damaged log data (Error.CORRUPT)."""


class ShutdownError(WalmmapError):
    """walmmapd is stopping (Error.SHUTDOWN)."""


class NotSupportedError(WalmmapError):
    """Not supported here (Error.NOTSUP)."""


class RemovedError(WalmmapError):
    """Retention deleted the records a reader was to read (Error.REMOVED)."""


_ERROR_CLASSES = {
    Error.NODAEMON: NoDaemonError, Error.PERM: PermissionDeniedError,
    Error.TOOLARGE: RecordTooLargeError, Error.NOSPC: NoSpaceError,
    Error.VERSION: VersionError, Error.LOST: ConnectionLostError,
    Error.TIMEDOUT: TimeoutError, Error.AGAIN: WouldBlockError,
    Error.INVAL: InvalidArgumentError, Error.IO: LogIOError,
    Error.PROTO: ProtocolError, Error.NOMEM: OutOfMemoryError,
    Error.BUSY: BusyError, Error.SYNC: SyncError,
    Error.CORRUPT: CorruptError, Error.SHUTDOWN: ShutdownError,
    Error.NOTSUP: NotSupportedError, Error.REMOVED: RemovedError,
}


def _error(rc: int, msg) -> WalmmapError:
    """The exception for a negative return code and a C message."""
    text = ffi.string(msg).decode("utf-8", "replace") if msg else ""
    return _ERROR_CLASSES.get(-rc, WalmmapError)(-rc, text)


def _ack(level, what: str) -> int:
    """An acknowledgement level from an Ack, its name or its value."""
    if isinstance(level, str):
        try:
            return Ack[level.upper()]
        except KeyError:
            pass
    elif isinstance(level, int) and not isinstance(level, bool):
        try:
            return Ack(level)
        except ValueError:
            pass
    raise ValueError("%s: %r is not an acknowledgement level (want "
                     "\"none\", \"written\" or \"durable\")" % (what, level))


def _ms(seconds: Optional[float], what: str) -> int:
    """A time limit in whole milliseconds; None is -1 (the default)."""
    if seconds is None:
        return -1
    if seconds < 0:
        raise ValueError("%s: %r: want seconds >= 0 or None" %
                         (what, seconds))
    return min(int(seconds * 1000), 2**31 - 1)


def _path(p, what: str):
    """A C string from a path (str, bytes or os.PathLike), or NULL."""
    if p is None:
        return ffi.NULL
    b = os.fsencode(p)
    if b"\0" in b:
        raise ValueError("%s: %r contains a NUL byte" % (what, p))
    return b


class Progress(NamedTuple):
    """What a producer's connection knows (walmmap_progress())."""

    sent: int           #: records sent
    acked: int          #: records acknowledged written
    failed: int         #: records the daemon refused
    pending: int        #: sent with an ack level, no answer yet
    last_seq: int       #: highest seq acknowledged, -1 none
    durable_seq: int    #: log durable up to here, -1 unknown


# append_batch builds its struct iovec array with array('Q') slices when
# pointers and sizes are 64-bit: no Python loop over the records.
_IOV_FAST = (ffi.sizeof("struct iovec") == 16 and
             ffi.sizeof("void *") == 8 and array("Q").itemsize == 8)


class Producer:
    """A connection to walmmapd that appends records (see :func:`connect`).

    Thread-safe: calls from several threads take turns on the connection
    (the library's handle is for one thread at a time). Closed by
    :meth:`close`, by leaving a ``with`` block, or when garbage-collected.
    """

    def __init__(self, socket=None, ack: Union[Ack, str, int] = "written",
                 shm: bool = False, timeout: Optional[float] = None) -> None:
        self._ack = _ack(ack, "ack")
        self._lock = threading.Lock()
        self._seq = ffi.new("int64_t *")
        self._socket = socket
        hp = ffi.new("struct walmmap **")
        cms = CONNECT_TIMEOUT_MS if timeout is None else _ms(timeout,
                                                             "timeout")
        rc = lib.walmmap_connect_timeout(hp, _path(socket, "socket"),
                                         self._ack, F_SHM if shm else 0,
                                         cms)
        if hp[0] == ffi.NULL:
            raise OutOfMemoryError(Error.NOMEM, "walmmap_connect: out of "
                                   "memory")
        self._h = ffi.gc(hp[0], lib.walmmap_close)
        if rc < 0:
            err = _error(rc, lib.walmmap_errmsg(self._h))
            ffi.release(self._h)
            self._h = None
            raise err
        if timeout is not None:
            lib.walmmap_set_timeout(self._h, _ms(timeout, "timeout"))

    def _live(self):
        """The handle; ValueError once closed (call with the lock held)."""
        if self._h is None:
            raise ValueError("walmmap: operation on a closed producer")
        return self._h

    def _fail(self, rc: int) -> WalmmapError:
        """The exception for rc (call with the lock held)."""
        return _error(rc, lib.walmmap_errmsg(self._h))

    def append(self, data, ack: Union[Ack, str, int, None] = None,
               wait: bool = True) -> Optional[int]:
        """Append one record (any bytes-like object); return its seq.

        ``ack``: this record's level, or None for the connection's. With
        ``wait=False`` the record is only sent (pipelined) and None is
        returned: its acknowledgement is collected by :meth:`wait` (or a
        later call that waits); errors it met surface there.
        """
        a = lib.WALMMAP_ACK_DEFAULT if ack is None else _ack(ack, "ack")
        buf = ffi.from_buffer(data)
        with self._lock:
            h = self._live()
            rc = lib.walmmap_append(h, buf, len(buf), a,
                                    self._seq if wait else ffi.NULL)
            if rc < 0:
                raise self._fail(rc)
            return self._seq[0] if wait else None

    def append_batch(self, records: Iterable,
                     ack: Union[Ack, str, int, None] = None,
                     wait: bool = True) -> Optional[List[int]]:
        """Append several records in as few messages as fit.

        Returns the seqs, in order (records of one message get consecutive
        seqs; a large batch may be interleaved with other producers'). With
        ``wait=False`` the records are only sent and None is returned, as
        for :meth:`append`.
        """
        recs = records if isinstance(records, (list, tuple)) else \
            list(records)
        n = len(recs)
        a = lib.WALMMAP_ACK_DEFAULT if ack is None else _ack(ack, "ack")
        if n == 0:
            return [] if wait else None
        data = b"".join(recs)
        lens = list(map(len, recs))
        if sum(lens) != len(data):
            # len() of a memoryview counts items; or another thread
            # changed a record meanwhile. Views fix each record's bytes
            # (a bytearray cannot be resized while one exists) and their
            # lengths, which must never point past data.
            views = [memoryview(r) for r in recs]
            if len(views) != n:
                raise ValueError("append_batch: the records changed "
                                 "while being appended")
            lens = [v.nbytes for v in views]
            data = b"".join(views)
            del views
        cdata = ffi.from_buffer(data)
        if _IOV_FAST:
            base = int(ffi.cast("uintptr_t", cdata))
            words = array("Q", bytes(16 * n))
            words[0::2] = array("Q", accumulate(lens[:-1], initial=base))
            words[1::2] = array("Q", lens)
            iov = ffi.cast("struct iovec *", ffi.from_buffer(words))
        else:
            iov = ffi.new("struct iovec[]", n)
            off = 0
            for i, ln in enumerate(lens):
                iov[i].iov_base = cdata + off
                iov[i].iov_len = ln
                off += ln
        seqs = ffi.new("int64_t[]", n) if wait else ffi.NULL
        with self._lock:
            h = self._live()
            rc = lib.walmmap_append_batch(h, iov, n, a, seqs)
            if rc < 0:
                raise self._fail(rc)
        return ffi.unpack(seqs, n) if wait else None

    def wait(self, seq: Optional[int] = None,
             level: Union[Ack, str, int] = "written",
             timeout: Optional[float] = None) -> None:
        """Wait until records are acknowledged at ``level``.

        Without ``seq``: every record appended so far on this connection.
        With ``seq`` and level durable: until that record is durable
        (walmmap_wait_durable()); level written waits for every record
        appended so far, which includes it. ``timeout`` in seconds; None:
        the connection's. Raises the error the daemon reported for one of
        the records, :class:`SyncError` once a failed sync covered them.
        """
        lv = _ack(level, "level")
        if lv == Ack.NONE:
            raise ValueError("level: want \"written\" or \"durable\"")
        ms = _ms(timeout, "timeout")
        with self._lock:
            h = self._live()
            if seq is not None and lv == Ack.DURABLE:
                rc = lib.walmmap_wait_durable(h, seq, ms)
            else:
                rc = lib.walmmap_wait(h, lv, ms)
            if rc < 0:
                raise self._fail(rc)

    def sync(self) -> int:
        """Make everything written so far durable; return the durable seq."""
        with self._lock:
            h = self._live()
            rc = lib.walmmap_sync(h, self._seq)
            if rc < 0:
                raise self._fail(rc)
            return self._seq[0]

    def set_timeout(self, timeout: Optional[float]) -> None:
        """Limit, in seconds, of each later wait (None: no limit)."""
        ms = -1 if timeout is None else _ms(timeout, "timeout")
        with self._lock:
            lib.walmmap_set_timeout(self._live(), ms)

    @property
    def progress(self) -> Progress:
        """What this connection knows (a :class:`Progress`)."""
        p = ffi.new("struct walmmap_progress *")
        with self._lock:
            lib.walmmap_progress(self._live(), p)
        return Progress(p.sent, p.acked, p.failed, p.pending, p.last_seq,
                        p.durable_seq)

    @property
    def max_record(self) -> int:
        """Largest record the daemon takes, in bytes."""
        with self._lock:
            return lib.walmmap_max_record(self._live())

    @property
    def shm_active(self) -> bool:
        """True when appends go through a shared-memory ring."""
        with self._lock:
            return bool(lib.walmmap_shm_active(self._live(), ffi.NULL))

    @property
    def shm_reason(self) -> Optional[str]:
        """Why the connection has no shared-memory ring (None if it has)."""
        why = ffi.new("const char **")
        with self._lock:
            if lib.walmmap_shm_active(self._live(), why):
                return None
            return ffi.string(why[0]).decode() if why[0] else ""

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._h is None

    def close(self) -> None:
        """Close the connection (records not yet acknowledged may or may
        not be in the log). Closing twice is harmless."""
        with self._lock:
            if self._h is not None:
                ffi.release(self._h)
                self._h = None

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Close; without an exception, first wait for pipelined records
        (appended with ``wait=False``) to be written."""
        try:
            if exc_type is None and not self.closed and \
                    self.progress.pending > 0:
                self.wait(level=Ack.WRITTEN)
        finally:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return "<walmmap.Producer socket=%r ack=%s %s>" % (
            self._socket, Ack(self._ack).name.lower(), state)


def connect(socket=None, ack: Union[Ack, str, int] = "written",
            shm: bool = False, timeout: Optional[float] = None) -> Producer:
    """Connect to walmmapd and return a :class:`Producer`.

    ``socket``: the daemon's socket path; None lets libwalmmap choose
    ($WALMMAP_SOCKET and the other variables it honours, else its
    default). ``ack``: the level appends wait for unless they say
    otherwise ("none", "written" or "durable"). ``shm``: append through a
    shared-memory ring when the daemon grants one (see
    :attr:`Producer.shm_reason`). ``timeout``: seconds for connecting and
    for each later wait; None: the library's defaults (5 s to connect,
    30 s per call).
    """
    return Producer(socket, ack=ack, shm=shm, timeout=timeout)


class Record(NamedTuple):
    """One record of the log."""

    seq: int                                #: its sequence number
    timestamp_ns: int                       #: CLOCK_REALTIME when written
    payload: Union[bytes, memoryview]       #: its bytes


class Reader:
    """An iterator over the log's records (see :func:`open_reader`).

    Thread-safe like :class:`Producer`; :meth:`close` from another thread
    ends a following iteration within a quarter of a second.
    """

    def __init__(self, source=None, from_seq: Optional[int] = None,
                 follow: bool = False, copy: bool = True,
                 timeout: Optional[float] = None) -> None:
        self._lock = threading.Lock()
        self._follow = follow
        self._copy = copy
        self._views: List[memoryview] = []
        self._exporter = None   # the ffi.buffer under self._views
        self._rec = ffi.new("struct walmmap_record *")
        self._source = source
        self._h = None
        if from_seq is not None and from_seq < -1:
            raise ValueError("from_seq: %r: want a seq >= 0, -1 or None" %
                             (from_seq,))
        self._sub = source is None or _is_socket(source)
        if timeout is not None:
            self._wait_ms = _ms(timeout, "timeout")
        elif follow:
            self._wait_ms = -1
        else:
            self._wait_ms = 30000 if self._sub else 0
        hp = ffi.new("struct walmmap_reader **")
        if self._sub:
            rc = lib.walmmap_subscribe(hp, _path(source, "socket"),
                                       0 if from_seq is None else from_seq,
                                       -1, F_FOLLOW if follow else 0)
        else:
            if from_seq == -1:
                raise ValueError("from_seq -1 (only new records) needs a "
                                 "subscription (a socket), not files")
            rc = lib.walmmap_reader_open(hp, _path(source, "path"))
        if hp[0] == ffi.NULL:
            raise OutOfMemoryError(Error.NOMEM, "walmmap reader: out of "
                                   "memory")
        self._h = ffi.gc(hp[0], lib.walmmap_reader_close)
        if rc >= 0 and not self._sub and from_seq is not None:
            rc = lib.walmmap_reader_seek(self._h, from_seq)
        if rc < 0:
            err = _error(rc, lib.walmmap_reader_errmsg(self._h))
            ffi.release(self._h)
            self._h = None
            raise err

    def _release_views(self) -> bool:
        """Invalidate the memoryviews handed out for the last record.

        False when the record's memory is still referenced: a slice of
        the payload (slices are views of their own, which release() of
        the payload does not reach) or an export of it (numpy). The
        library would then reuse or unmap memory that Python still reads.
        """
        for v in self._views:
            try:
                v.release()
            except BufferError:
                pass    # exported further: the check below sees it
        self._views.clear()
        ex = self._exporter
        # self._exporter, ex and getrefcount's own: no view is left
        # (CPython; elsewhere we cannot tell and trust the contract).
        if ex is not None and _getrefcount(ex) > 3:
            return False
        self._exporter = None
        return True

    def _view(self, rec) -> memoryview:
        """A read-only view of rec's payload in the library's buffer."""
        self._exporter = ffi.buffer(rec.data, rec.size)
        raw = memoryview(self._exporter)
        payload = raw.toreadonly()
        self._views += [payload, raw]
        return payload

    def _next_once(self, ms: int):
        """One wait for a record: a Record, or None when none came."""
        rec = self._rec
        with self._lock:
            if self._h is None:
                raise StopIteration
            if not self._release_views():
                raise BufferError("walmmap reader: a zero-copy payload "
                                  "(a slice or an export of it) is still "
                                  "in use: drop it or copy it (bytes()) "
                                  "before fetching the next record")
            rc = lib.walmmap_reader_next(self._h, rec, ms)
            if rc < 0:
                raise _error(rc, lib.walmmap_reader_errmsg(self._h))
            if rc == 0:
                if not self._follow and self._sub and \
                        not lib.walmmap_reader_ended(self._h) and ms != 0:
                    raise TimeoutError(Error.TIMEDOUT, "walmmap reader: "
                                       "walmmapd sent nothing for %d ms "
                                       "and did not end the subscription"
                                       % ms)
                return None
            if rec.size == 0:
                payload = b"" if self._copy else memoryview(b"")
            elif self._copy:
                payload = ffi.buffer(rec.data, rec.size)[:]
            else:
                payload = self._view(rec)
            return Record(rec.seq, rec.timestamp_ns, payload)

    def __iter__(self) -> "Reader":
        return self

    def __next__(self) -> Record:
        if not self._follow:
            r = self._next_once(self._wait_ms)
            if r is None:
                raise StopIteration
            return r
        # Following: wait in short steps so that signals (Ctrl-C) and
        # close() from another thread get through.
        left = self._wait_ms
        while True:
            step = _FOLLOW_POLL_MS if left < 0 else min(left,
                                                        _FOLLOW_POLL_MS)
            r = self._next_once(step)
            if r is not None:
                return r
            if left >= 0:
                left -= step
                if left <= 0:
                    raise StopIteration

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._h is None

    def close(self) -> None:
        """Close the reader; memoryviews it handed out are released. A
        slice or an export of the last payload still in use keeps the
        library's reader (its memory) open until it is freed."""
        with self._lock:
            if self._h is not None:
                if self._release_views():
                    ffi.release(self._h)
                else:
                    self._close_later()
                self._h = None
            self._exporter = None

    def _close_later(self) -> None:
        """Close the C reader once the last view of its last payload is
        gone (its exporter, the ffi.buffer under the views, is freed)."""
        weakref.finalize(self._exporter, ffi.release, self._h)

    def __del__(self) -> None:
        # Freed without close() while a payload of ours may be alive: the
        # C reader (its memory) lives as long as that payload.
        if getattr(self, "_exporter", None) is not None and \
                self._h is not None:
            self._close_later()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "subscription" if self._sub else "files"
        return "<walmmap.Reader %s %r%s>" % (
            kind, self._source, " closed" if self.closed else "")


def _is_socket(path) -> bool:
    """True when path names a socket (a subscription, not files)."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False    # walmmap_reader_open() says what is wrong


def open_reader(dir_or_socket=None, from_seq: Optional[int] = None,
                follow: bool = False, copy: bool = True,
                timeout: Optional[float] = None) -> Reader:
    """Open an iterator over the log's records (:class:`Record` items).

    ``dir_or_socket``: a data directory or one segment file, read
    directly without a daemon; or walmmapd's socket, read through a
    subscription; None subscribes on libwalmmap's default socket (as
    :func:`connect`). ``from_seq``: the first seq wanted (or the first
    after it still in the log); None: the oldest record; -1 (subscriptions
    only): only records appended from now on. ``follow``: keep waiting for
    new records instead of stopping at the end of the log.

    ``copy=True`` gives each payload as ``bytes``; ``copy=False`` as a
    read-only ``memoryview`` of the library's buffer (no copy), valid only
    until the next record is fetched or the reader is closed (it is then
    released). While a slice or an export (numpy) of it is still in use,
    fetching the next record raises ``BufferError`` (the library would
    reuse that memory); close() then leaves the memory to the slice.

    ``timeout`` (seconds): how long to wait for the next record; when it
    passes, a following iteration stops, a subscription without ``follow``
    raises :class:`TimeoutError` (the daemon stalled). None: forever when
    following, else 30 s for a subscription and no wait for files.
    """
    return Reader(dir_or_socket, from_seq=from_seq, follow=follow,
                  copy=copy, timeout=timeout)
