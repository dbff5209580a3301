"""Does calibrating from several past runs predict the next migration better than one?

The lab's calibration recordings hold groups of real migrations of one guest workload
under different settings (a VM migrated again and again, each time differently). For
each group of three, each run is held out in turn: the other two are put in a history
as one VM, and the held-out run's settings are predicted (``what_if``) from

* ``joint``: ``calibration_for_vm`` over both other runs (this module's subject);
* ``single``: each other run calibrated alone (``simulate --from`` of one log).

Printed per case and in total: the class (converged or not) right, the error of the
total time (both converged) and of the bytes sent (median member against what was
observed), and whether the plausible set's range holds the observed time.

    .venv/bin/python benchmarks/bench_history_predict.py

CPU-heavy (a few minutes on a shared 2-core machine): run it under the lab lock.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from migtune.history import calibration_for_vm, record_run
from migtune.outcome import outcome_from_run
from migtune.sim.calibrate import calibrate, what_if
from migtune.sources import load_run

LAB = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lab"
GROUPS = {
    "random-640 (64 MiB/s cap)": ["calib-random-640-cap64", "calib-random-640-cap64-ac",
                                  "calib-random-640-cap64-multifd4"],
    "random-512 b512": ["calib-random-512-b512", "calib-random-512-b512-xbzrle",
                        "calib-random-512-b512-xbzrle-small"],
    "seq-512 (24 MiB/s cap)": ["calib-seq-512-cap24", "calib-seq-512-cap24-ac",
                               "calib-seq-512-cap24-dt5s"],
}  # fmt: skip


def rel(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else (a - b) / b


def predict(cal, held) -> dict:
    observed = outcome_from_run(held)
    span = observed.total_time_s or 0.0
    horizon = max(60.0, 2 * span)
    pred = what_if(cal, held.settings, time_limit=horizon)
    o = pred.result.outcome
    # a run stopped at its time limit: right when the prediction had not converged by then
    done = o.converged and (observed.converged or (o.total_time_s or 0.0) <= span)
    both = o.converged and observed.converged
    times = [m.outcome.total_time_s for m in pred.members if m.outcome.converged]
    covered = None
    if observed.converged and times and len(times) == len(pred.members):
        covered = min(times) * 0.95 <= observed.total_time_s <= max(times) * 1.05
    return {
        "class_ok": done == observed.converged,
        "time": rel(o.total_time_s, observed.total_time_s) if both else None,
        "bytes": rel(o.transferred_bytes, observed.transferred_bytes) if both else None,
        "covered": covered,
        "members": len(pred.members),
    }


def show(tag: str, r: dict) -> str:
    t = "-" if r["time"] is None else f"{r['time']:+.0%}"
    b = "-" if r["bytes"] is None else f"{r['bytes']:+.0%}"
    cov = {True: "yes", False: "no", None: "-"}[r["covered"]]
    return (
        f"    {tag:28} class {'ok ' if r['class_ok'] else 'BAD'} time {t:>6} bytes {b:>6} "
        f"range holds time: {cov} ({r['members']} members)"
    )


def summary(name: str, rows: list[dict]) -> str:
    ok = sum(r["class_ok"] for r in rows)
    t = [abs(r["time"]) for r in rows if r["time"] is not None]
    b = [abs(r["bytes"]) for r in rows if r["bytes"] is not None]
    cov = [r["covered"] for r in rows if r["covered"] is not None]
    med = lambda v: f"{statistics.median(v):.0%}" if v else "-"  # noqa: E731
    return (
        f"{name:7} {len(rows):2} predictions: class right {ok}/{len(rows)}, median |time "
        f"error| {med(t)} ({len(t)}), median |bytes error| {med(b)} ({len(b)}), range holds "
        f"the observed time {sum(cov)}/{len(cov)}"
    )


def paired(pairs: list[tuple[dict, list[dict]]]) -> str:
    """Case by case, where the joint and both single predictions have a time error:
    is the joint one as good as the better single run, or only as the worse?"""

    def err(r: dict) -> float:
        return abs(r["time"]) if r["time"] is not None else float("nan")

    both = [
        (j, s) for j, s in pairs if j["time"] is not None and all(x["time"] is not None for x in s)
    ]
    best = sum(err(j) <= min(err(x) for x in s) + 0.01 for j, s in both)
    worst = sum(err(j) <= max(err(x) for x in s) + 0.01 for j, s in both)
    cls = sum(j["class_ok"] >= max(x["class_ok"] for x in s) for j, s in pairs)
    return (
        f"paired, {len(both)} cases with every time error: joint within 1 point of the better "
        f"single run {best}, of the worse {worst}; class as right as the better single run "
        f"in {cls}/{len(pairs)} cases"
    )


def main() -> None:
    t0 = time.process_time()
    joint_rows: list[dict] = []
    single_rows: list[dict] = []
    pairs: list[tuple[dict, list[dict]]] = []
    runs = {n: load_run(LAB / f"{n}.jsonl") for g in GROUPS.values() for n in g}
    alone = {n: calibrate(r) for n, r in runs.items()}
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        for group, names in GROUPS.items():
            print(group)
            for held in names:
                others = [n for n in names if n != held]
                db = Path(tmp) / f"{held}.db"
                for n in others:
                    path = LAB / f"{n}.jsonl"
                    record_run(runs[n], path.read_bytes(), origin="add", db=db, vm="v")
                print(f"  held out {held}")
                joint = calibration_for_vm("v", db=db, store=False)
                r = predict(joint, runs[held])
                joint_rows.append(r)
                print(show(f"joint ({' + '.join(o[6:] for o in others)})", r))
                singles = [predict(alone[n], runs[held]) for n in others]
                for n, one in zip(others, singles, strict=True):
                    single_rows.append(one)
                    print(show(f"single {n[6:]}", one))
                pairs.append((r, singles))
    print(summary("joint", joint_rows))
    print(summary("single", single_rows))
    print(paired(pairs))
    print(
        f"({time.process_time() - t0:.0f} s CPU, cpu count {os.cpu_count()}, load "
        f"{os.getloadavg()[0]:.2f})"
    )


if __name__ == "__main__":
    main()
