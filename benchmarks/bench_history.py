"""The history database: cost of adding a run, of opening a big history (the integrity
check runs on every open), of listing, and of calibrating from several runs together.

    .venv/bin/python benchmarks/bench_history.py [--runs 2000] [--big 100 400]

Works in a temporary directory; prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from migtune.history import calibrate_vm, list_runs, open_store, record_run
from migtune.history.store import inspect
from migtune.sources import load_run

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "tests" / "fixtures" / "lab"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2000, help="runs in the big history")
    ap.add_argument(
        "--big",
        type=int,
        nargs="*",
        default=[100, 400],
        metavar="MiB",
        help="sizes of the big logs `history add` reads (0 to skip)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        db = Path(tmp) / "history.db"
        src = LAB / "xbzrle-cache-small-1.jsonl"
        run, raw = load_run(src), src.read_bytes()
        times = []
        for i in range(args.runs):
            t = time.perf_counter()
            # distinct text each time (the same text twice is one run)
            record_run(run, raw + f"#{i}\n".encode(), origin="lab", db=db, vm=f"vm{i % 50}")
            times.append(time.perf_counter() - t)
        size = db.stat().st_size
        print(
            f"add a run (open + check + insert + close), {len(raw) / 1024:.0f} KiB recording: "
            f"median {statistics.median(times) * 1000:.1f} ms, last 100 "
            f"{statistics.median(times[-100:]) * 1000:.1f} ms"
        )
        print(f"history of {args.runs} runs: {size / 2**20:.1f} MiB on disk")
        t = time.perf_counter()
        inspect(db)
        print(
            f"read-only identity + quick_check of that file: {(time.perf_counter() - t) * 1000:.0f} ms"
        )
        t = time.perf_counter()
        store = open_store(db)
        store.close()
        print(f"open for writing (check, WAL, schema): {(time.perf_counter() - t) * 1000:.0f} ms")
        t = time.perf_counter()
        rows = list_runs(db=db)
        print(f"list all {len(rows)} runs: {(time.perf_counter() - t) * 1000:.0f} ms")
        t = time.perf_counter()
        rows = list_runs(db=db, vm="vm7")
        print(f"list one VM's {len(rows)} runs: {(time.perf_counter() - t) * 1000:.0f} ms")
        cal_db = Path(tmp) / "cal.db"
        # ten real lab runs of 512 MiB guests with different workloads, as one "VM"
        names = ["idle-1.jsonl", "below-link-1.jsonl", "above-link-1.jsonl",
                 "above-link-downtime-3s-1.jsonl", "xbzrle-cache-large-1.jsonl",
                 "multifd-1.jsonl", "idle-2.jsonl", "below-link-2.jsonl",
                 "above-link-downtime-3s-2.jsonl", "xbzrle-cache-large-2.jsonl"]  # fmt: skip
        for name in names:
            p = LAB / name
            record_run(load_run(p), p.read_bytes(), origin="add", db=cal_db, vm="mixed")
        for n in (1, 2, 5, 10):
            t = time.perf_counter()
            r = calibrate_vm("mixed", db=cal_db, last=n, store=False)
            print(
                f"history calibrate --last {n:<2}: {time.perf_counter() - t:5.2f} s "
                f"({len(r.fits)} runs, {len(r.calibration.plausible)} plausible, "
                f"reproduces all: {r.reproduces_all}, drift findings: {len(r.drift)})"
            )
        if args.big and args.big != [0]:
            big_logs(Path(tmp), args.big)
        print(f"(cpu count {os.cpu_count()}, load {os.getloadavg()[0]:.2f})")


def big_logs(tmp: Path, sizes: list[int]) -> None:
    """`history add` of big Proxmox logs in a child process: wall time and peak RSS,
    against `diagnose` of the same file (the log is read as a stream by both)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_parse import write_log
    from bench_stream import BYTES_PER_LINE, run_child

    for mb in sizes:
        log = tmp / f"big-{mb}.log"
        write_log(str(log), mb * 2**20 // BYTES_PER_LINE)
        db = tmp / f"big-{mb}.db"
        add = run_child(["history", "add", str(log), "--db", str(db), "--vm", "big"])
        diag = run_child(["diagnose", str(log)])
        (row,) = list_runs(db=db)
        print(
            f"history add of a {log.stat().st_size / 2**20:.0f} MiB log: {add['wall']:.1f} s, "
            f"peak RSS {add['rss'] / 2**20:.0f} MiB (diagnose: {diag['wall']:.1f} s, "
            f"{diag['rss'] / 2**20:.0f} MiB); text kept: {row['raw_stored']}, history "
            f"{db.stat().st_size / 2**20:.1f} MiB"
        )
        log.unlink()


if __name__ == "__main__":
    main()
