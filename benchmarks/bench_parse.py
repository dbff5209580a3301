"""Benchmark: stream-parse a long Proxmox task log and show that memory stays flat.

Writes a realistic PVE 8 log (progress + xbzrle lines, now and then an auto-increased
downtime line, a VM that never converges) of 100k and 1M lines to a temp file, then
reads it back through ``proxmox.iter_records`` straight from the open file and prints
lines/s and peak memory (tracemalloc peak while parsing, and the process's ru_maxrss).

Run: ``python benchmarks/bench_parse.py [--lines N ...] [--no-tracemalloc]``
Target: >= 250,000 lines/s without tracemalloc (which itself slows Python down ~2x).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import Counter

from migtune.sources.proxmox import iter_records
from migtune.units import GiB, MiB, format_bytes

TARGET_LINES_PER_S = 250_000


def write_log(path: str, n_lines: int) -> None:
    """A 32 GiB VM that out-dirties a ~35 MiB/s link, ``n_lines`` lines long."""
    total = 32 * GiB
    start = 1735950864  # 2025-01-04 00:34:24 UTC
    head = [
        "task started by HA resource agent",
        "starting migration of VM 100 to node 'pve2' (10.10.1.2)",
        "starting VM 100 on remote node 'pve2'",
        "start remote tunnel",
        "ssh tunnel ver 1",
        "starting online/live migration on unix:/run/qemu-server/100.migrate",
        "set migration capabilities",
        "migration downtime limit: 100 ms",
        "migration cachesize: 4.0 GiB",
        "set migration parameters",
        "start migrate command to unix:/run/qemu-server/100.migrate",
    ]
    rate = 35 * MiB
    downtime = 100
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as f:
        written = 0
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start))
        for text in head:
            f.write(text + "\n" if text.startswith("task") else f"{stamp} {text}\n")
            written += 1
        second = 0
        pages = 0
        while written < n_lines - 3:
            second += 1
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + 1 + second))
            transferred = second * rate
            page_rate = rate * (1.0 + (second % 7) / 10)
            f.write(
                f"{stamp} migration active, transferred {format_bytes(transferred)} of "
                f"{format_bytes(total)} VM-state, {format_bytes(page_rate)}/s"
                + (f", VM dirties lots of memory: {format_bytes(46 * MiB)}/s" if second % 3 else "")
                + "\n"
            )
            written += 1
            if second > 900:
                pages += 9810
                f.write(
                    f"{stamp} xbzrle: send updates to {pages} pages in "
                    f"{format_bytes(pages * 770)} encoded memory, cache-miss 99.59%, "
                    f"overflow {pages // 7}\n"
                )
                written += 1
            if second % 600 == 0 and downtime < 2_000_000:
                downtime = min(downtime * 2, 2_000_000)
                f.write(f"{stamp} auto-increased downtime to continue migration: {downtime} ms\n")
                written += 1
        f.write(f"{stamp} ERROR: online migrate failure - interrupted by signal\n")
        f.write(f"{stamp} aborting phase 2 - cleanup resources\n")
        f.write(f"{stamp} migrate_cancel\n")


def measure(path: str, trace: bool) -> tuple[int, float, int | None, Counter]:
    """Stream the file through iter_records; returns lines, seconds, traced peak, kinds."""
    kinds: Counter = Counter()
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    with open(path, encoding="utf-8") as f:
        for rec in iter_records(f):
            # Keep nothing: a consumer that folds as it goes needs constant memory.
            kinds[type(rec).__name__] += 1
    elapsed = time.perf_counter() - t0
    peak = None
    if trace:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    with open(path, "rb") as f:
        lines = sum(1 for _ in f)
    return lines, elapsed, peak, kinds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--no-tracemalloc", action="store_true", help="skip the memory-traced run")
    args = ap.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory(prefix="migtune-bench-") as tmp:
        for n in args.lines:
            path = os.path.join(tmp, f"proxmox-{n}.log")
            write_log(path, n)
            size = os.path.getsize(path)
            lines, seconds, _, kinds = measure(path, trace=False)
            speed = lines / seconds
            ok = ok and speed >= TARGET_LINES_PER_S
            print(
                f"{lines:>9,} lines ({format_bytes(size)}): {seconds:6.2f} s, "
                f"{speed:>9,.0f} lines/s  [{', '.join(f'{k} {v:,}' for k, v in kinds.items())}]"
            )
            if not args.no_tracemalloc:
                _, traced_s, peak, _ = measure(path, trace=True)
                print(
                    f"{'':>9}  tracemalloc peak while parsing: {format_bytes(peak)} "
                    f"(traced run {traced_s:.2f} s)"
                )
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            print(f"{'':>9}  process peak RSS so far: {format_bytes(rss)}")
    print(f"target >= {TARGET_LINES_PER_S:,} lines/s: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
