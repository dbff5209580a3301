"""Preflight against the real migration: verdict and predicted time, lab scenarios.

For each scenario the lab boots source and destination, waits until the guest writes
at its rate, runs ``preflight`` on the source's QMP socket (the migration settings of
the scenario given as what will be set, ``--max-time`` the scenario's time limit),
then migrates with exactly those settings.  Printed per scenario: preflight's verdict
for those settings (converges or not within the time limit) against what QEMU did,
the predicted total time (median and range over the plausible workloads) against the
real one, and the measurement (mode, periods, zero-page share).

Needs QEMU and the lab guest; takes about a minute per scenario.  Run it under the
lab lock, a batch at a time::

    flock /tmp/migtune-qemu.lock python benchmarks/bench_preflight.py --only conv-64,above-64
    python benchmarks/bench_preflight.py --table results.jsonl   # the table of saved results

Goal: the verdict right in every scenario; the median |error| of the predicted total
time within 20 % over the scenarios that converge.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass

from migtune.analysis.preflight import preflight
from migtune.lab.run import lab_run
from migtune.model import Settings
from migtune.settings import apply_assignment
from migtune.units import MiB
from migtune.workload import parse_workload

LINK32 = "max-bandwidth=32MiB/s"


@dataclass(frozen=True)
class Case:
    name: str
    ram_mib: int
    workload: str
    settings: tuple[str, ...]
    time_limit: float


CASES = (
    Case("idle-512", 512, "idle", (LINK32,), 30),
    Case("conv-64", 256, "ws=64MiB,rate=8MiB/s,pattern=random,bytes=8", (LINK32,), 40),
    Case("conv-128", 512, "ws=128MiB,rate=16MiB/s,pattern=random,bytes=64", (LINK32,), 45),
    Case("conv-seq", 384, "ws=160MiB,rate=12MiB/s,pattern=seq,bytes=8", (LINK32,), 45),
    Case(
        "conv-cap64", 256, "ws=64MiB,rate=40MiB/s,pattern=random,bytes=4096",
        ("max-bandwidth=64MiB/s",), 40,
    ),
    Case(
        "hot-downtime-1s", 512, "ws=192MiB,rate=24MiB/s,pattern=hotcold,bytes=8",
        (LINK32, "downtime-limit=1s"), 45,
    ),
    Case("above-64", 512, "ws=128MiB,rate=64MiB/s,pattern=random,bytes=8", (LINK32,), 35),
    Case("above-seq", 384, "ws=96MiB,rate=48MiB/s,pattern=seq,bytes=256", (LINK32,), 35),
    Case("above-256", 256, "ws=96MiB,rate=40MiB/s,pattern=random,bytes=16", (LINK32,), 35),
    # XBZRLE: whether it converges depends on the bytes a write changes
    Case(
        "xbz-16", 512, "ws=128MiB,rate=48MiB/s,pattern=random,bytes=16",
        (LINK32, "xbzrle=on", "xbzrle-cache-size=256MiB"), 40,
    ),
    Case(
        "xbz-4096", 512, "ws=128MiB,rate=48MiB/s,pattern=random,bytes=4096",
        (LINK32, "xbzrle=on", "xbzrle-cache-size=256MiB"), 35,
    ),
    # near the link rate: where the verdict is hardest
    Case("near-28", 512, "ws=128MiB,rate=28MiB/s,pattern=random,bytes=8", (LINK32,), 45),
    Case("near-36", 512, "ws=128MiB,rate=36MiB/s,pattern=random,bytes=8", (LINK32,), 40),
    Case("above-hot", 512, "ws=192MiB,rate=96MiB/s,pattern=hotcold,bytes=8", (LINK32,), 35),
)  # fmt: skip


def settings_of(case: Case) -> Settings:
    s = Settings()
    for a in case.settings:
        s = apply_assignment(s, a)
    return s


def run_case(case: Case, measure: float, record_dir: str | None = None) -> dict:
    s = settings_of(case)
    w = parse_workload(case.workload)
    t0 = time.time()

    def before(qmp_path: str):
        return preflight(qmp_path, settings=s, max_time=case.time_limit, measure_s=measure)

    lab = lab_run(
        case.ram_mib * MiB, w, s, time_limit=case.time_limit, progress=False,
        before_migrate=before, accel="tcg",
        record=os.path.join(record_dir, f"{case.name}.jsonl") if record_dir else None,
    )  # fmt: skip
    pf = lab.before
    c = pf.current_check
    real = lab.outcome
    return {
        "name": case.name,
        "ram_mib": case.ram_mib,
        "workload": case.workload,
        "settings": list(case.settings),
        "time_limit": case.time_limit,
        "measure_s": measure,
        "predicted_converges": c["converges"],
        "predicted_members": f"{c['converged_members']}/{c['members']}",
        "predicted_time_s": c["total_time_s"],
        "predicted_downtime_s": c["downtime_s"],
        "verdict": pf.verdict,
        "recommended": pf.recommended.changes if pf.recommended else None,
        "inferred": pf.inference.describe(),
        "mode": pf.measurement.mode,
        "zero_share": pf.measurement.zero_share,
        "bytes_changed": pf.measurement.bytes_changed,
        "steadiness": pf.measurement.steadiness(),
        "periods": [(p.length, p.rate_mib) for p in pf.measurement.periods],
        "real_status": real.status,
        "real_converged": real.converged,
        "real_time_s": real.total_time_s,
        "real_downtime_ms": real.downtime_ms,
        "real_passes": real.passes,
        "real_transferred": real.transferred_bytes,
        "recording": lab.recording,
        "guest_rate_before": lab.guest_rate_before,
        "loadavg": os.getloadavg()[0],
        "wall_s": round(time.time() - t0, 1),
        "text": pf.text(),
    }


def replay(row: dict, without_bytes: bool = False) -> dict:
    """The row's prediction made again from its saved measurement (no QEMU): how a
    change to the inference would have done on the same guests."""
    from migtune.analysis.preflight import predict_from_measurement
    from migtune.analysis.preflight.recommend import Limits
    from migtune.qemu.dirtyrate import DirtyMeasurement, DirtyPeriod

    case = next(c for c in CASES if c.name == row["name"])
    m = DirtyMeasurement(
        row.get("mode", "page-sampling"),
        [DirtyPeriod(t, row.get("mode", "page-sampling"), r, 16384) for t, r in row["periods"]],
        case.ram_mib * MiB,
        zero_share=row["zero_share"],
        zero_samples=row.get("zero_samples", 1024),
        bytes_changed=[] if without_bytes else row.get("bytes_changed", []),
    )
    inf, _cal, _pred, check, _rec, _ = predict_from_measurement(
        m, settings_of(case), limits=Limits(2.0, case.time_limit), recommend_settings=False
    )
    return {
        **row,
        "predicted_converges": check["converges"],
        "predicted_members": f"{check['converged_members']}/{check['members']}",
        "predicted_time_s": check["total_time_s"],
        "inferred": inf.describe(),
    }


def table(rows: list[dict]) -> str:
    out = [
        f"{'scenario':<16} {'pred':>9} {'real':>9} {'ok':>3} {'pred time':>18} "
        f"{'real time':>9} {'err':>6}  inferred"
    ]
    errs: list[float] = []
    best_errs: list[float] = []
    right = 0
    for r in rows:
        pred = "converge" if r["predicted_converges"] else "no"
        real = "converge" if r["real_converged"] else "no"
        ok = r["predicted_converges"] == r["real_converged"]
        right += ok
        t = r["predicted_time_s"]
        ptxt, err = "-", ""
        if t["median"] is not None:
            ptxt = f"{t['median']:.1f} ({t['min']:.1f}-{t['max']:.1f})"
        if r["real_converged"] and t["median"] is not None and r["real_time_s"]:
            e = (t["median"] - r["real_time_s"]) / r["real_time_s"]
            errs.append(abs(e))
            err = f"{e:+.0%}"
            if t.get("best_fit"):
                best_errs.append(abs(t["best_fit"] - r["real_time_s"]) / r["real_time_s"])
        rt = f"{r['real_time_s']:.1f}" if r["real_converged"] and r["real_time_s"] else "-"
        out.append(
            f"{r['name']:<16} {pred:>9} {real:>9} {'yes' if ok else 'NO':>3} {ptxt:>18} "
            f"{rt:>9} {err:>6}  {r['inferred']} [{r['predicted_members']}]"
        )
    out.append(f"verdict right: {right}/{len(rows)}")
    if errs:
        out.append(
            f"predicted total time, converging runs: median |error| "
            f"{statistics.median(errs):.0%} over {len(errs)} (max {max(errs):.0%})"
        )
    if best_errs:
        out.append(
            f"  the best fit alone: median |error| {statistics.median(best_errs):.0%} "
            f"(max {max(best_errs):.0%})"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--measure", type=float, default=10.0, help="preflight --measure, s")
    ap.add_argument("--out", default="preflight-results.jsonl", help="append results here")
    ap.add_argument("--record-dir", help="keep each migration's recording here")
    ap.add_argument("--table", metavar="FILE", help="only print the table of saved results")
    ap.add_argument("--list", action="store_true")
    ap.add_argument(
        "--without-bytes",
        action="store_true",
        help="with --replay: as if no page had been read twice (bytes per write unknown)",
    )
    ap.add_argument(
        "--replay",
        action="store_true",
        help="with --table: predict again from the saved measurements",
    )
    a = ap.parse_args(argv)
    if a.list:
        for c in CASES:
            print(c.name, c.ram_mib, c.workload, " ".join(c.settings), c.time_limit)
        return 0
    if a.table:
        with open(a.table) as f:
            rows = [json.loads(x) for x in f if x.strip()]
        print(table([replay(r, a.without_bytes) for r in rows] if a.replay else rows))
        return 0
    names = set(a.only.split(",")) if a.only else None
    rows = []
    for case in CASES:
        if names and case.name not in names:
            continue
        print(f"running {case.name} ...", file=sys.stderr, flush=True)
        row = run_case(case, a.measure, a.record_dir)
        rows.append(row)
        with open(a.out, "a") as f:
            f.write(json.dumps(row) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
