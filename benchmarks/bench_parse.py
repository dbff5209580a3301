"""Benchmark: stream-parse a long Proxmox task log and show that memory stays flat.

Writes a realistic PVE 8 log (progress + xbzrle lines, now and then an auto-increased
downtime line, a VM that never converges) of 100k and 1M lines to a temp file, then
reads it back through ``proxmox.iter_records`` straight from the open file and prints
lines/s and peak memory (tracemalloc peak while parsing, and the process's ru_maxrss).

Each size is measured in a fresh interpreter (best CPU time of ``--repeat`` runs) so its
peak RSS is its own; ``--tracemalloc`` adds a traced run (slow) for Python-level peaks.

Run: ``python benchmarks/bench_parse.py [--lines N ...] [--tracemalloc]``
Target: >= 250,000 lines/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

from migtune.model import Sample
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


def measure(path: str, trace: bool = False) -> dict:
    """Stream the file through iter_records, keeping nothing; figures as a dict."""
    records = samples = 0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if trace:
        tracemalloc.start()
    cpu, wall = time.process_time(), time.perf_counter()
    with open(path, encoding="utf-8", buffering=1 << 20) as f:
        for rec in iter_records(f):
            # A consumer that folds as it goes and keeps nothing.
            records += 1
            if type(rec) is Sample:
                samples += 1
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = tracemalloc.get_traced_memory()[1] if trace else None
    if trace:
        tracemalloc.stop()
    with open(path, "rb") as f:
        lines = sum(1 for _ in f)
    return {
        "lines": lines,
        "cpu": cpu,
        "wall": wall,
        "traced_peak": peak,
        "rss_before": rss_before,
        "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "records": records,
        "samples": samples,
    }


def _child(path: str, trace: bool) -> dict:
    """Measure in a fresh interpreter so each size gets its own peak RSS."""
    cmd = [sys.executable, __file__, "--child", path] + (["--tracemalloc"] if trace else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs per size")
    ap.add_argument("--tracemalloc", action="store_true", help="also trace allocations (slow, ~5x)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.tracemalloc)))
        return 0
    best_rate = 0.0
    with tempfile.TemporaryDirectory(prefix="migtune-bench-") as tmp:
        for n in args.lines:
            path = os.path.join(tmp, f"proxmox-{n}.log")
            write_log(path, n)
            runs = [_child(path, False) for _ in range(args.repeat)]
            fig = min(runs, key=lambda r: r["cpu"])
            cpu_rate, wall_rate = fig["lines"] / fig["cpu"], fig["lines"] / fig["wall"]
            best_rate = max(best_rate, cpu_rate) if n == args.lines[-1] else best_rate
            print(
                f"{fig['lines']:>9,} lines ({format_bytes(os.path.getsize(path))}): "
                f"{cpu_rate:>9,.0f} lines/s CPU, {wall_rate:>9,.0f} lines/s wall "
                f"({fig['records']:,} records, {fig['samples']:,} samples)"
            )
            grown = fig["rss_peak"] - fig["rss_before"]
            print(
                f"{'':>9}  peak RSS {format_bytes(fig['rss_peak'])} "
                f"(+{format_bytes(grown)} while parsing)"
            )
            if args.tracemalloc:
                traced = _child(path, True)
                print(
                    f"{'':>9}  tracemalloc peak while parsing: {format_bytes(traced['traced_peak'])}"
                )
    met = best_rate >= TARGET_LINES_PER_S
    print(
        f"target >= {TARGET_LINES_PER_S:,} lines/s (CPU time, largest size): {'met' if met else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
