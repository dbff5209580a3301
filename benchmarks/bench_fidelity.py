"""Benchmark: how faithfully the simulator reproduces real QEMU (the lab recordings).

Part 1, the model told the workload: replays every ``tests/fixtures/lab`` recording
(not the ``calib-*`` ones) with its own RAM, workload spec, settings and QEMU version.

Part 2, calibration (``simulate --from``): the workload is learnt from the run itself,
from its recording and from the Proxmox task log and HMP snapshots the same run would
have produced.  Replays of the unchanged settings and what-if pairs (calibrate on one
run, predict another run of the same guest with other settings), on the held-out
recordings (``migtune.sim.calibrate.proof.HELD_OUT``) and, separately, on the
recordings used to choose the calibration's constants (``FIT``).

Errors are over the cases whose class is right: a class miss (e.g. a prediction that
did not finish against a run that converged) is counted as a miss, not as a time.

Run: ``python benchmarks/bench_fidelity.py [--part 1|2] [--sources recording,proxmox,hmp]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from migtune.sim.calibrate import proof
from migtune.sim.fidelity import replay, summary

DEFAULT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lab"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.0%}"


def _num(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def part1(paths: list[Path]) -> None:
    head = (
        f"{'run':28} {'converged':>11} {'time real/sim':>16} {'err':>5} "
        f"{'MB sent real/sim':>18} {'err':>5} {'passes':>7} {'downtime ms':>12} "
        f"{'throttle':>9}  ok"
    )
    print("== 1. the simulator told the workload (lab matrix recordings)")
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
    print(
        f"{s['runs']} runs; converged-or-not right in all: {s['converged_all_right']}; "
        f"median |error| time {_pct(s['total_time_median'])} (max {_pct(s['total_time_max'])}), "
        f"bytes {_pct(s['transferred_median'])} (max {_pct(s['transferred_max'])}); "
        f"passes off by at most {s['passes_max_off']}"
    )
    print()


def _table(title: str, cases: list[proof.Case]) -> None:
    print(title)
    for c in cases:
        rng = "" if c.in_range is None else ("  in range" if c.in_range else "  OUT of range")
        if not c.class_ok and c.spans:
            rng += "  (the set spans the real class)"
        print(
            f"  {c.name[:62]:62} {c.source:9} class {'ok ' if c.class_ok else 'BAD'} "
            f"time {_pct(c.time_err):>5} bytes {_pct(c.bytes_err):>5}{rng}"
        )
        print(f"      {c.note}")
    s = proof.summary(cases)
    rng = (
        ""
        if s["in_range"] is None
        else f"; real value within the set's range {s['in_range'][0]}/{s['in_range'][1]}"
    )
    if s["misses_spanning"] and s["misses_spanning"][1]:
        rng += (
            f"; of the {s['misses_spanning'][1]} class misses, {s['misses_spanning'][0]} "
            "had the real class among the set's members"
        )
    print(
        f"  => class right {s['class_right']}/{s['cases']}; median |error| time "
        f"{_pct(s['time_median'])} (max {_pct(s['time_max'])}), bytes {_pct(s['bytes_median'])} "
        f"(max {_pct(s['bytes_max'])}){rng}"
    )
    print()


def part2(sources: list[str], which: str) -> None:
    sets = {"held-out": (proof.HELD_OUT, proof.PAIRS_HELD_OUT), "fit": (proof.FIT, proof.PAIRS_FIT)}
    for label in ("held-out", "fit") if which == "both" else (which,):
        names, pairs = sets[label]
        names = [n for n in names if (proof.LAB / f"{n}.jsonl").is_file()]
        pairs = [p for p in pairs if all((proof.LAB / f"{n}.jsonl").is_file() for n in p)]
        for src in sources:
            t0 = time.perf_counter()
            _table(
                f"== 2. replay of the unchanged settings, {label} set, from the {src}",
                [proof.replay_case(n, src) for n in names],
            )
            _table(
                f"== 2. what-if pairs (calibrate on A, predict B), {label} set, from the {src}",
                [proof.pair_case(a, b, src) for a, b in pairs],
            )
            print(f"  ({time.perf_counter() - t0:.1f} s)")
            print()
    print("targets: class right in all; median |error| <= 10 %, none over 25 %")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("1", "2", "both"), default="both")
    ap.add_argument("--sources", default=",".join(proof.SOURCES))
    ap.add_argument("--set", dest="which", choices=("held-out", "fit", "both"), default="both")
    args = ap.parse_args()
    if args.part in ("1", "both"):
        paths = sorted(p for p in DEFAULT.glob("*.jsonl") if not p.stem.startswith("calib-"))
        if not paths:
            print(f"no recordings (looked in {DEFAULT})", file=sys.stderr)
            return 2
        part1(paths)
    if args.part in ("2", "both"):
        part2([s for s in args.sources.split(",") if s], args.which)
    return 0


if __name__ == "__main__":
    sys.exit(main())
