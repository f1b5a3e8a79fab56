#!/usr/bin/python3
"""Check walmmapd's metrics with prometheus_client's own parser.

Usage: prom_parse.py [URL]

Reads the text exposition from standard input, or fetches URL (which must
answer 200 with the 0.0.4 text Content-Type). Parses it with
prometheus_client.parser (Debian's python3-prometheus-client), checks what
the parser lets pass (every family has HELP and TYPE and a walmmapd_ name,
no family or series twice, histogram buckets cumulative and ending in
+Inf = _count), then prints one line per sample for the C tests:

    NAME LABELS VALUE

LABELS is k=v,k=v sorted by key, or "-" when there are none. Exits 1 with
the reason on standard error when something does not hold.
"""

import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def fail(msg):
    sys.stderr.write("prom_parse: %s\n" % msg)
    sys.exit(1)


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        if r.status != 200:
            fail("%s answered %d" % (url, r.status))
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("text/plain; version=0.0.4"):
            fail("%s: Content-Type %r is not the text format 0.0.4"
                 % (url, ctype))
        return r.read().decode("utf-8")


def main():
    text = fetch(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin.read()
    if not text.endswith("\n"):
        fail("the text does not end with a newline")
    helps = [l.split()[2] for l in text.splitlines()
             if l.startswith("# HELP ")]
    types = [l.split()[2] for l in text.splitlines()
             if l.startswith("# TYPE ")]
    if len(set(helps)) != len(helps) or len(set(types)) != len(types):
        fail("a family has HELP or TYPE twice")
    seen = set()
    out = []
    for fam in text_string_to_metric_families(text):
        if not fam.name.startswith("walmmapd_"):
            fail("family %s is not named walmmapd_*" % fam.name)
        if fam.type == "unknown" or not fam.documentation:
            fail("family %s has no TYPE or no HELP" % fam.name)
        if not fam.samples:
            fail("family %s has no samples" % fam.name)
        buckets = []
        for s in fam.samples:
            labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
            key = (s.name, labels)
            if key in seen:
                fail("series %s{%s} appears twice" % key)
            seen.add(key)
            if fam.type == "counter" and s.value < 0:
                fail("counter %s is negative" % s.name)
            if s.name.endswith("_bucket"):
                buckets.append((float(s.labels["le"]), s.value))
            out.append("%s %s %r" % (s.name, labels or "-", s.value))
        if fam.type == "histogram":
            counts = [v for _, v in buckets]
            if counts != sorted(counts):
                fail("histogram %s buckets are not cumulative" % fam.name)
            if not buckets or buckets[-1][0] != float("inf"):
                fail("histogram %s does not end with +Inf" % fam.name)
            total = [s.value for s in fam.samples
                     if s.name == fam.name + "_count"]
            if total != [buckets[-1][1]]:
                fail("histogram %s: +Inf bucket is not _count" % fam.name)
    if not out:
        fail("no samples")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
