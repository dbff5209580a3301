"""Benchmark: how faithfully the simulator reproduces real QEMU (the lab recordings).

Replays every recording (default: ``tests/fixtures/lab/*.jsonl``) with the same RAM,
workload, settings and QEMU version, and prints real beside simulated with the errors,
then the medians and worst cases against issue 4's tolerances.

Run: ``python benchmarks/bench_fidelity.py [RECORDING ...]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from migtune.sim.fidelity import replay, summary

DEFAULT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lab"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.0%}"


def _num(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recordings", nargs="*", type=Path)
    args = ap.parse_args()
    paths = args.recordings or sorted(DEFAULT.glob("*.jsonl"))
    if not paths:
        print(f"no recordings (looked in {DEFAULT})", file=sys.stderr)
        return 2
    head = (
        f"{'run':28} {'converged':>11} {'time real/sim':>16} {'err':>5} "
        f"{'MB sent real/sim':>18} {'err':>5} {'passes':>7} {'downtime ms':>12} "
        f"{'throttle':>9}  ok"
    )
    print(head)
    print("-" * len(head))
    reps = []
    for p in paths:
        r = replay(p)
        reps.append(r)
        real, sim, e = r.real, r.sim.outcome, r.errors()
        ok = r.within_tolerance()
        conv = f"{'y' if real.converged else 'n'}/{'y' if sim.converged else 'n'}"
        mb = (real.transferred_bytes or 0) / 1e6, (sim.transferred_bytes or 0) / 1e6
        print(
            f"{p.stem[:28]:28} {conv:>11} "
            f"{_num(real.total_time_s, '6.2f')}/{_num(sim.total_time_s, '<6.2f'):7} "
            f"{_pct(e['total_time']):>5} {mb[0]:8.1f}/{mb[1]:<8.1f} {_pct(e['transferred']):>5} "
            f"{real.passes:>3}/{sim.passes:<3} "
            f"{_num(real.downtime_ms, '5.0f')}/{_num(sim.downtime_ms, '<5.0f'):6} "
            f"{real.max_throttle_pct or 0:3.0f}/{sim.max_throttle_pct or 0:<3.0f}  "
            + ("ok" if all(ok.values()) else "MISS " + ",".join(k for k, v in ok.items() if not v))
        )
    s = summary(reps)
    print()
    print(
        f"{s['runs']} runs; converged-or-not right in all: {s['converged_all_right']}; "
        f"median |error| time {_pct(s['total_time_median'])} (max {_pct(s['total_time_max'])}), "
        f"bytes {_pct(s['transferred_median'])} (max {_pct(s['transferred_max'])}); "
        f"passes off by at most {s['passes_max_off']}"
    )
    print("targets: medians <= 10 %, none over 25 %, passes ±1, downtime within 50 % or 50 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
