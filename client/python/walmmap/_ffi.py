"""The C side: libwalmmap's declarations and the loaded library.

cffi in ABI mode (dlopen): nothing is compiled when the package is built
or installed; the declarations below are copied from client/walmmap.h and
must match it (the struct layouts in particular). cffi releases the GIL
around every call into the library.
"""

import ctypes.util
import os

from cffi import FFI  # type: ignore

ffi = FFI()
ffi.cdef("""
struct iovec { void *iov_base; size_t iov_len; };

enum walmmap_ack {
    WALMMAP_ACK_NONE = 0,
    WALMMAP_ACK_WRITTEN = 1,
    WALMMAP_ACK_DURABLE = 2,
    WALMMAP_ACK_DEFAULT = 255
};

const char *walmmap_strerror(int err);

struct walmmap;
int walmmap_connect_timeout(struct walmmap **wp, const char *socket,
    enum walmmap_ack ack, unsigned flags, int timeout_ms);
void walmmap_set_timeout(struct walmmap *, int timeout_ms);
uint32_t walmmap_max_record(const struct walmmap *);
int walmmap_shm_active(const struct walmmap *, const char **why);
void walmmap_close(struct walmmap *);
const char *walmmap_errmsg(const struct walmmap *);
int walmmap_append(struct walmmap *, const void *data, size_t len,
    enum walmmap_ack ack, int64_t *seq);
int walmmap_append_batch(struct walmmap *, const struct iovec *recs,
    size_t n, enum walmmap_ack ack, int64_t *seqs);
int walmmap_wait(struct walmmap *, enum walmmap_ack level, int timeout_ms);
int walmmap_wait_durable(struct walmmap *, int64_t seq, int timeout_ms);
int walmmap_sync(struct walmmap *, int64_t *durable_seq);

struct walmmap_progress {
    uint64_t sent;
    uint64_t acked;
    uint64_t failed;
    uint64_t pending;
    int64_t last_seq;
    int64_t durable_seq;
};
void walmmap_progress(const struct walmmap *, struct walmmap_progress *);

struct walmmap_reader;
struct walmmap_record {
    int64_t seq;
    int64_t timestamp_ns;
    const void *data;
    size_t size;
};
int walmmap_reader_open(struct walmmap_reader **rp, const char *path);
int walmmap_subscribe(struct walmmap_reader **rp, const char *socket,
    int64_t from_seq, int64_t to_seq, unsigned flags);
void walmmap_reader_close(struct walmmap_reader *);
const char *walmmap_reader_errmsg(const struct walmmap_reader *);
int walmmap_reader_seek(struct walmmap_reader *, int64_t seq);
int walmmap_reader_next(struct walmmap_reader *, struct walmmap_record *rec,
    int timeout_ms);
int walmmap_reader_ended(const struct walmmap_reader *);
""")

CONNECT_TIMEOUT_MS = 5000  # WALMMAP_CONNECT_TIMEOUT_MS
F_NONBLOCK = 0x1  # WALMMAP_NONBLOCK
F_SHM = 0x2  # WALMMAP_SHM
F_FOLLOW = 0x1  # WALMMAP_FOLLOW


def _load():
    """Load libwalmmap: $WALMMAP_LIBRARY, else the installed one."""
    path = os.environ.get("WALMMAP_LIBRARY")
    if path:
        try:
            return ffi.dlopen(path)
        except OSError as e:
            raise ImportError("walmmap: cannot load libwalmmap from "
                "$WALMMAP_LIBRARY (%s): %s" % (path, e)) from e
    tried = []
    for name in ("libwalmmap.so.0", ctypes.util.find_library("walmmap")):
        if not name:
            continue
        try:
            return ffi.dlopen(name)
        except OSError as e:
            tried.append("%s: %s" % (name, e))
    raise ImportError("walmmap: cannot load libwalmmap (install walmmapd's "
        "library or set WALMMAP_LIBRARY to its path): " + "; ".join(tried))


lib = _load()
