"""Benchmark: how fast the pre-copy simulator and the XBZRLE codec are.

For each scenario: CPU seconds of the simulation (``time.process_time``), simulated
time and passes, simulator steps (``ram_save_iterate`` calls), CPU per step and the
floor measured in the same run: the cost of an empty Python loop of the same number
of steps that makes one small numpy call per step (what any step costs at least), so
ratios stay comparable on a loaded machine.  Then ``migtune simulate --from`` on the
demo log (wall time, and CPU per simulation it ran), then the XBZRLE encoder.
XBZRLE is priced from statistics for guests that write more than 1 GiB
(``sim/xbzstat.py``) and page by page below: the grid ``bench_xbzrle_agreement`` runs
both on the same scenarios and prints how far they agree.

Run: ``python benchmarks/bench_sim.py [--quick]`` (``--quick``: skip 1 TiB and 1 h runs)
Targets (issue 9): one simulation of up to 1 TiB and 1 h simulated <= 1 s CPU;
``simulate --from examples/proxmox-32GiB-not-converging.log --set downtime-limit=2s``
<= 2 s wall; XBZRLE encoding >= 200 MB/s (issue 4).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from migtune.model import Settings
from migtune.sim import api, loop, simulate
from migtune.sim.xbzrle import encode_many, encoded_sizes

GiB = 1024**3
HOUR = 3600.0
ROOT = Path(__file__).resolve().parents[1]
DEMO = ["simulate", "--from", "examples/proxmox-32GiB-not-converging.log"]
DEMO += ["--set", "downtime-limit=2s"]


def _xbz(cache: int, **kw) -> Settings:
    return Settings(xbzrle_cache_size=cache, capabilities={"xbzrle": True}, **kw)


# name, RAM, workload, settings, link (None: the lab's), stop after passes, time limit
SCENARIOS = [
    ("32 GiB, 8 GiB hot at 1 GiB/s, unlimited, 30 passes", 32 * GiB,
     "ws=8GiB,rate=1GiB/s,pattern=random,zero=0.5", Settings(max_bandwidth=0), 1.25e9, 30, HOUR),
    ("32 GiB, 4 GiB at 400 MiB/s, unlimited (converges)", 32 * GiB,
     "ws=4GiB,rate=400MiB/s,pattern=random,zero=0.5", Settings(max_bandwidth=0), 1.25e9, None,
     HOUR),
    ("256 GiB non-converging 1 h: 1 GiB at 256 MiB/s, cap", 256 * GiB,
     "ws=1GiB,rate=256MiB/s,pattern=random,zero=0.5", Settings(), None, None, HOUR),
    ("256 GiB non-converging 1 h: 16 GiB at 512 MiB/s, cap", 256 * GiB,
     "ws=16GiB,rate=512MiB/s,pattern=random,zero=0.5", Settings(), None, None, HOUR),
    ("1 TiB mostly zero, 4 GiB at 16 MiB/s, cap", 1024 * GiB,
     "ws=4GiB,rate=16MiB/s,pattern=random,zero=0.99", Settings(), 1.25e9, None, HOUR),
    ("1 TiB busy 1 h: 64 GiB at 2 GiB/s, 10 Gbit/s", 1024 * GiB,
     "ws=64GiB,rate=2GiB/s,pattern=random,zero=0.2", Settings(max_bandwidth=0), 1.25e9, None,
     HOUR),
    ("1 TiB busy 1 h: 64 GiB sweep at 2 GiB/s, 10 Gbit/s", 1024 * GiB,
     "ws=64GiB,rate=2GiB/s,pattern=seq,zero=0.2", Settings(max_bandwidth=0), 1.25e9, None, HOUR),
    ("XBZRLE 4 GiB: 512 MiB at 64 MiB/s, 256 MiB cache", 4 * GiB,
     "ws=512MiB,rate=64MiB/s,pattern=random,bytes=64", _xbz(GiB // 4), None, None, 600.0),
    ("XBZRLE 32 GiB 10 min: 2 GiB at 256 MiB/s, 1 GiB cache", 32 * GiB,
     "ws=2GiB,rate=256MiB/s,pattern=random,bytes=64,zero=0.5", _xbz(GiB), None, None, 600.0),
    ("XBZRLE 256 GiB 1 h: 1 GiB hot/cold, 512 MiB cache", 256 * GiB,
     "ws=1GiB,rate=256MiB/s,pattern=hotcold,bytes=8,zero=0.5", _xbz(GiB // 2), None, None, HOUR),
    ("XBZRLE 1 TiB busy 20 min: 64 GiB at 1 GiB/s, 4 GiB cache", 1024 * GiB,
     "ws=64GiB,rate=1GiB/s,pattern=random,bytes=64,zero=0.2", _xbz(4 * GiB, max_bandwidth=0),
     1.25e9, None, 1200.0),
    ("XBZRLE 1 TiB busy 1 h: 64 GiB at 1 GiB/s, 4 GiB cache", 1024 * GiB,
     "ws=64GiB,rate=1GiB/s,pattern=random,bytes=64,zero=0.2", _xbz(4 * GiB, max_bandwidth=0),
     1.25e9, None, HOUR),
    ("XBZRLE 1 TiB mostly zero 1 h: 8 GiB hot/cold, 1 GiB cache", 1024 * GiB,
     "ws=8GiB,rate=1GiB/s,pattern=hotcold,bytes=256,zero=0.99",
     _xbz(GiB, max_bandwidth=0), 1.25e9, None, HOUR),
]  # fmt: skip


class StepCounter:
    """Wraps the simulator's main loop to count ``ram_save_iterate`` calls."""

    def __init__(self):
        self.steps = 0  # simulator steps (one or several fused ram_save_iterate calls)
        self.calls = 0  # ram_save_iterate calls simulated
        self.sims = 0
        self.cpu: list[float] = []

    def __enter__(self):
        self._main, self._iterate = api.main_loop, loop.iterate

        def iterate(e, calls=1):
            self.steps += 1
            self.calls += calls
            self._iterate(e, calls)

        def main_loop(*a, **kw):
            t = time.process_time()
            self._main(*a, **kw)
            self.cpu.append(time.process_time() - t)
            self.sims += 1

        loop.iterate, api.main_loop = iterate, main_loop
        return self

    def __exit__(self, *exc):
        api.main_loop, loop.iterate = self._main, self._iterate


def floor_per_step(steps: int) -> float:
    """CPU seconds per step of an empty loop making one small numpy call per step."""
    a = np.arange(8)
    n = max(10_000, min(steps, 200_000))
    t = time.process_time()
    for i in range(n):
        a.searchsorted(i & 7)
    return (time.process_time() - t) / n


def bench_scenarios(quick: bool) -> None:
    print(f"{'scenario':54} {'cpu':>7} {'sim time':>9} {'passes':>6} {'steps':>7} "
          f"{'us/step':>8} {'floor':>6} {'x floor':>7} {'ns/page':>7} {'maxrss':>7} "
          f"{'XBZRLE priced':>13}")  # fmt: skip
    for name, ram, wl, st, link, stop, limit in SCENARIOS:
        if quick and (ram > 64 * GiB or limit >= HOUR):
            continue
        with StepCounter() as sc:
            t = time.process_time()
            r = simulate(ram, wl, st, link_rate=link, time_limit=limit, stop_after_passes=stop)
            cpu = time.process_time() - t
        per = cpu / max(1, sc.steps)
        fl = floor_per_step(sc.steps)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ok = "ok" if cpu <= 1.0 else "over 1 s"
        o, last = r.outcome, r.run.last
        pages = (last.normal or 0) + (last.duplicate or 0) + (o.xbzrle.pages if o.xbzrle else 0)
        print(
            f"{name:54} {cpu:6.2f}s {o.total_time_s:8.0f}s {o.passes:>6} {sc.steps:>7} "
            f"{per * 1e6:8.1f} {fl * 1e6:6.2f} {per / fl:7.0f} {cpu / max(1, pages) * 1e9:7.1f} "
            f"{rss:5.0f}MiB {r.stats['xbzrle_pricing'] or '-':>13} {ok}"
        )


def bench_demo() -> None:
    """The demo what-if, as a user runs it (wall), and in-process per simulation."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "migtune", *DEMO], cwd=ROOT, env=env,
                   check=False, capture_output=True)  # fmt: skip
    wall = time.perf_counter() - t
    from migtune.cli.main import main

    devnull = open(os.devnull, "w")  # noqa: SIM115 - the CLI's output is not the point
    old, sys.stdout = sys.stdout, devnull
    try:
        with StepCounter() as sc:
            t = time.process_time()
            cwd = os.getcwd()
            os.chdir(ROOT)
            try:
                main(DEMO)
            finally:
                os.chdir(cwd)
            cpu = time.process_time() - t
    finally:
        sys.stdout = old
        devnull.close()
    per = ", ".join(f"{c:.2f}" for c in sc.cpu)
    fl = floor_per_step(sc.steps)
    print(
        f"migtune {' '.join(DEMO)}: {wall:.2f} s wall (target 2 s); in process {cpu:.2f} s CPU, "
        f"{sc.sims} simulations ({per} s CPU each), {sc.steps} steps for {sc.calls} "
        f"ram_save_iterate calls, {cpu / max(1, sc.steps) * 1e6:.0f} us/step "
        f"(floor {fl * 1e6:.2f} us, {cpu / max(1, sc.steps) / fl:.0f}x)"
    )


MiB = 1024**2
AGREEMENT = [
    # the faster write logs against drawing every write's page (Engine(explicit_writes))
    ("random 48 MiB/s, XBZRLE 256 MiB", "ws=128MiB,rate=48MiB/s,pattern=random,bytes=8",
     _xbz(256 * MiB, max_bandwidth=32 * MiB), 45),
    ("random 48 MiB/s, XBZRLE 8 MiB", "ws=128MiB,rate=48MiB/s,pattern=random,bytes=8",
     _xbz(8 * MiB, max_bandwidth=32 * MiB), 30),
    ("hot/cold 256 MiB/s, XBZRLE", "ws=64MiB,rate=256MiB/s,pattern=hotcold,hot=0.1,bytes=64",
     _xbz(64 * MiB, max_bandwidth=32 * MiB), 30),
    ("random 64 MiB/s", "ws=128MiB,rate=64MiB/s,pattern=random", Settings(max_bandwidth=32 * MiB),
     30),
    ("hot/cold 16 MiB/s", "ws=256MiB,rate=16MiB/s,pattern=hotcold,hot=0.2,hotw=0.8",
     Settings(max_bandwidth=32 * MiB), 60),
    ("random 2 GiB/s over 16 GiB, 10 Gbit/s", "ws=16GiB,rate=2GiB/s,pattern=random,zero=0.5",
     Settings(max_bandwidth=0), 300),
]  # fmt: skip


def bench_agreement() -> None:
    """Time, bytes and passes of the same run with the statistical write logs and with
    every write drawn page by page (several seeds: the spread of the reference itself
    is the noise to compare against)."""
    import functools

    from migtune.sim.engine import Engine

    print("agreement with the page-level engine (median over 3 seeds; ref spread in brackets):")
    for name, wl, st, limit in AGREEMENT:
        ram = 64 * GiB if "16 GiB" in name else 512 * MiB
        rows = {}
        for explicit in (False, True):
            api.Engine = functools.partial(Engine, explicit_writes=explicit)
            try:
                rows[explicit] = [simulate(ram, wl, st, time_limit=limit, seed=k,
                                           link_rate=1.25e9 if ram > GiB else None).outcome
                                  for k in range(3)]  # fmt: skip
            finally:
                api.Engine = Engine
        fast, ref = rows[False], rows[True]

        def med(xs):
            return float(np.median(xs))

        def err(f, fast=fast, ref=ref):
            a, b = med([f(o) for o in fast]), med([f(o) for o in ref])
            spread = (max(f(o) for o in ref) - min(f(o) for o in ref)) / b if b else 0.0
            return f"{(a - b) / b:+6.1%} [{spread:4.1%}]" if b else "-"

        print(
            f"  {name:40} time {err(lambda o: o.total_time_s)}  bytes "
            f"{err(lambda o: o.transferred_bytes)}  passes {med([o.passes for o in fast]):.0f}"
            f"/{med([o.passes for o in ref]):.0f}  converged "
            f"{sum(o.converged for o in fast)}/{sum(o.converged for o in ref)} of 3"
        )


XBZRLE_GRID = [
    # statistical XBZRLE pricing (sim/xbzstat.py) against page by page: 4 GiB guests,
    # 128 MiB/s cap, 120 s; cache against working set, bytes per write, patterns, rates
    # below and above what the cap lets through
    ("random 1G 64M/s, cache 2G, 8 B", "ws=1GiB,rate=64MiB/s,pattern=random,bytes=8", 2 * GiB),
    ("random 1G 64M/s, cache 1G, 8 B", "ws=1GiB,rate=64MiB/s,pattern=random,bytes=8", GiB),
    ("random 1G 64M/s, cache 256M, 8 B", "ws=1GiB,rate=64MiB/s,pattern=random,bytes=8",
     GiB // 4),
    ("random 1G 64M/s, cache 64M, 8 B", "ws=1GiB,rate=64MiB/s,pattern=random,bytes=8",
     GiB // 16),
    ("random 1G 64M/s, cache 1G, 512 B", "ws=1GiB,rate=64MiB/s,pattern=random,bytes=512", GiB),
    ("random 1G 64M/s, cache 1G, 4096 B", "ws=1GiB,rate=64MiB/s,pattern=random,bytes=4096",
     GiB),
    ("random 1G 256M/s, cache 1G, 64 B", "ws=1GiB,rate=256MiB/s,pattern=random,bytes=64", GiB),
    ("random 1G 256M/s, cache 256M, 64 B", "ws=1GiB,rate=256MiB/s,pattern=random,bytes=64",
     GiB // 4),
    ("random 2G 200M/s, cache 512M, 16 B", "ws=2GiB,rate=200MiB/s,pattern=random,bytes=16",
     GiB // 2),
    ("random 512M 400M/s, cache 1G, 8 B", "ws=512MiB,rate=400MiB/s,pattern=random,bytes=8",
     GiB),
    ("hot/cold 1G 256M/s, cache 256M, 64 B",
     "ws=1GiB,rate=256MiB/s,pattern=hotcold,hot=0.1,hotw=0.9,bytes=64", GiB // 4),
    ("hot/cold 1G 512M/s, cache 64M, 8 B",
     "ws=1GiB,rate=512MiB/s,pattern=hotcold,hot=0.1,hotw=0.9,bytes=8", GiB // 16),
    ("seq 512M 128M/s, cache 1G, 300 B", "ws=512MiB,rate=128MiB/s,pattern=seq,bytes=300", GiB),
    ("seq 1G 300M/s, cache 256M, 4096 B", "ws=1GiB,rate=300MiB/s,pattern=seq,bytes=4096",
     GiB // 4),
]  # fmt: skip


def bench_xbzrle_agreement() -> None:
    """Statistical XBZRLE pricing against page-level pricing, same runs."""
    print("statistical XBZRLE pricing against page by page (4 GiB guest, 128 MiB/s cap, 120 s):")
    print(f"  {'scenario':38} {'converged':>9} {'time':>7} {'bytes':>7} {'passes':>7} "
          f"{'hits':>7} {'misses':>7} {'overflow':>8} {'cpu stat/pages':>15}")  # fmt: skip
    errs: dict[str, list[float]] = {"time": [], "bytes": [], "hits": [], "miss": []}
    same = 0

    def rel(a, b):
        return (a - b) / b if b else (0.0 if a == b else float("inf"))

    for name, wl, cache in XBZRLE_GRID:
        st = _xbz(cache, max_bandwidth=128 * MiB)
        out = {}
        for mode in ("statistics", "pages"):
            t = time.process_time()
            r = simulate(4 * GiB, wl, st, time_limit=120.0, xbzrle_pricing=mode)
            out[mode] = (time.process_time() - t, r.outcome)
        (cs, a), (cp, b) = out["statistics"], out["pages"]
        xa, xb = a.xbzrle, b.xbzrle
        row = {
            "time": rel(a.total_time_s, b.total_time_s),
            "bytes": rel(a.transferred_bytes, b.transferred_bytes),
            "hits": rel(xa.pages, xb.pages),
            "miss": rel(xa.cache_miss_rate, xb.cache_miss_rate),
        }
        for k, v in row.items():
            errs[k].append(abs(v))
        same += a.converged == b.converged
        conv = f"{'yn'[not a.converged]}/{'yn'[not b.converged]}"
        print(
            f"  {name:38} {conv:>9} {row['time']:+7.1%} {row['bytes']:+7.1%} "
            f"{a.passes:>3}/{b.passes:<3} {row['hits']:+7.1%} "
            f"{xa.cache_miss_rate:.2f}/{xb.cache_miss_rate:.2f} "
            f"{xa.overflow:>4}/{xb.overflow:<4} {cs:6.2f}/{cp:.2f} s"
        )
    med = {k: float(np.median(v)) for k, v in errs.items()}
    print(
        f"  converged-or-not agrees {same}/{len(XBZRLE_GRID)}; median |error| time "
        f"{med['time']:.1%} (max {max(errs['time']):.1%}), bytes {med['bytes']:.1%} "
        f"(max {max(errs['bytes']):.1%}), XBZRLE pages {med['hits']:.1%}"
    )


SETTLE = (
    ("1 GiB random 512 MiB, XBZRLE 64 MiB, 50 MB/s", "ws=512M,rate=200M,pattern=random,bytes=256",
     Settings(capabilities={"xbzrle": True}, xbzrle_cache_size=64 * MiB), 50e6),
    ("1 GiB random 512 MiB, 100 MB/s", "ws=512M,rate=200M,pattern=random", Settings(), 100e6),
)  # fmt: skip


def bench_settle(limit: float = 900.0) -> None:
    """Non-converging runs ended once settled (``stop_when_settled``, what-ifs) against
    the same run simulated to the limit."""
    print(f"settled runs extrapolated to {limit:.0f} s against simulated to the end:")
    for name, wl, st, link in SETTLE:
        out = []
        for settle in (False, True):
            t0 = time.process_time()
            r = simulate(GiB, wl, st, link_rate=link, time_limit=limit, stop_when_settled=settle)
            out.append((time.process_time() - t0, r))
        (c_ref, ref), (c_fast, fast) = out
        a, b = ref.outcome, fast.outcome
        when = fast.stats["settled_from_s"]
        at = f"at {when:.0f} s" if when else "never"
        print(
            f"  {name:46} settled {at:>9}  bytes "
            f"{(b.transferred_bytes - a.transferred_bytes) / a.transferred_bytes:+.2%}  passes "
            f"{b.passes}/{a.passes}  cpu {c_fast:.2f}/{c_ref:.2f} s"
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
    ap.add_argument("--quick", action="store_true", help="skip the 1 TiB and 1 h scenarios")
    args = ap.parse_args()
    bench_scenarios(args.quick)
    bench_xbzrle_agreement()
    bench_agreement()
    bench_settle()
    bench_demo()
    bench_codec()


if __name__ == "__main__":
    main()
