"""walbench's python scenario, the Python side (run by wb_python.c).

    wb_python.py SOCKET FILE RECORDS SIZE BATCH

Builds RECORDS records of SIZE bytes, then measures, in this process:
append_batch() of BATCH records at a time to walmmapd on SOCKET (written
acks: each call waits for its batch's seqs), and a Python loop writing
the same records to FILE with os.write() (one call per record, page cache
only, as written acks promise no sync). Prints "walmmap R" and "oswrite R"
(records/s) on stdout.
"""

import os
import sys
import time

import walmmap


def main():
    sock, path = sys.argv[1], sys.argv[2]
    n, size, batch = (int(a) for a in sys.argv[3:6])
    recs = [(b"%012d" % i + b"x" * size)[:size] for i in range(n)]

    with walmmap.connect(sock, ack="written") as log:
        log.append_batch(recs[:batch])     # connection and code warmed up
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            log.append_batch(recs[i:i + batch])
        t1 = time.perf_counter()
    print("walmmap %.1f" % (n / (t1 - t0)))

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                 0o600)
    try:
        write = os.write
        for r in recs[:batch]:
            write(fd, r)
        t0 = time.perf_counter()
        for r in recs:
            write(fd, r)
        t1 = time.perf_counter()
    finally:
        os.close(fd)
        os.unlink(path)
    print("oswrite %.1f" % (n / (t1 - t0)))


if __name__ == "__main__":
    main()
