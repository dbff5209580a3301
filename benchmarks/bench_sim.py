"""Benchmark: how fast the pre-copy simulator and the XBZRLE codec are.

Prints, for each scenario, the wall time, simulated pages per second, the peak memory
and the ratio to the memory-bound floor (one ``np.flatnonzero`` pass over a bitmap of
the guest's size, times the number of passes), then the XBZRLE encoder's throughput
on random page pairs.

Run: ``python benchmarks/bench_sim.py [--quick]``
Targets (issue 4): 32 GiB guest through 30 passes <= 2 s; 1 TiB mostly-zero guest
<= 30 s with < 1 GiB of memory; XBZRLE encoding >= 200 MB/s.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from migtune.model import Settings
from migtune.sim import simulate
from migtune.sim.xbzrle import encode_many, encoded_sizes

GiB = 1024**3
SCENARIOS = [
    # name, RAM, workload, settings, link, stop after passes, target seconds
    (
        "32 GiB, 8 GiB hot at 1 GiB/s, unlimited, 30 passes",
        32 * GiB,
        "ws=8GiB,rate=1GiB/s,pattern=random,zero=0.5",
        Settings(max_bandwidth=0),
        1.25e9,
        30,
        2.0,
    ),
    (
        "32 GiB, 4 GiB at 400 MiB/s, unlimited (converges)",
        32 * GiB,
        "ws=4GiB,rate=400MiB/s,pattern=random,zero=0.5",
        Settings(max_bandwidth=0),
        1.25e9,
        None,
        2.0,
    ),
    (
        "1 TiB mostly zero, 4 GiB at 16 MiB/s, 128 MiB/s cap",
        1024 * GiB,
        "ws=4GiB,rate=16MiB/s,pattern=random,zero=0.99",
        Settings(),
        1.25e9,
        None,
        30.0,
    ),
]


def floor_seconds(pages: int) -> float:
    """One numpy pass over a bool bitmap of ``pages`` (10 % set): the memory-bound floor."""
    bm = np.zeros(pages, dtype=bool)
    bm[::10] = True
    t = time.perf_counter()
    np.flatnonzero(bm)
    return time.perf_counter() - t


def bench_scenarios(quick: bool) -> None:
    print(f"{'scenario':54} {'wall':>7} {'target':>7} {'passes':>6} {'Mpages/s':>9} "
          f"{'floor x':>8} {'maxrss':>8}")  # fmt: skip
    for name, ram, wl, st, link, stop, target in SCENARIOS:
        if quick and ram > 64 * GiB:
            continue
        t = time.perf_counter()
        r = simulate(ram, wl, st, link_rate=link, time_limit=3600, stop_after_passes=stop)
        wall = time.perf_counter() - t
        last = r.run.last
        pages = (last.normal or 0) + (last.duplicate or 0)
        floor = floor_seconds(ram // 4096) * max(1, r.outcome.passes or 1)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ok = "ok" if wall <= target else "SLOW"
        print(
            f"{name:54} {wall:6.2f}s {target:6.1f}s {r.outcome.passes:>6} "
            f"{pages / wall / 1e6:9.1f} {wall / floor:8.1f} {rss:6.0f}MiB {ok}"
        )


def page_pairs(n: int, runs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random old pages; new = old with ``runs`` random runs of 1..64 changed bytes."""
    old = rng.integers(0, 256, size=(n, 4096), dtype=np.uint8)
    new = old.copy()
    for _ in range(runs):
        start = rng.integers(0, 4096 - 64, size=n)
        length = rng.integers(1, 65, size=n)
        for k in range(64):
            rows = np.flatnonzero(length > k)
            new[rows, start[rows] + k] ^= 0x5A
    return old, new


def bench_codec() -> None:
    rng = np.random.default_rng(0)
    n = 4096
    for runs in (1, 8, 32):
        old, new = page_pairs(n, runs, rng)
        mb = n * 4096 / 1e6
        t = time.perf_counter()
        encode_many(old, new)
        full = time.perf_counter() - t
        t = time.perf_counter()
        encoded_sizes(old, new)
        sizes = time.perf_counter() - t
        print(
            f"XBZRLE encode, {runs:>2} changed runs/page: {mb / full:7.0f} MB/s with output, "
            f"{mb / sizes:7.0f} MB/s sizes only (target 200 MB/s)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 1 TiB scenario")
    args = ap.parse_args()
    bench_scenarios(args.quick)
    bench_codec()


if __name__ == "__main__":
    main()
