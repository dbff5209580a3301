"""Benchmark: the platform policies and ``--policy migtune`` on the same real migrations.

Each scenario is one lab guest (512 MiB, loopback capped at 32 MiB/s, downtime limit
300 ms at the start) migrated once under every policy with the same limits: 40 s to
finish, and a downtime allowance of 2 s where the policy takes one (nova's final
downtime, migtune's ``max-downtime``; Proxmox doubles without a bound, fixed and
KubeVirt never raise it).  Nova's and KubeVirt's timers are scaled to the 40 s (steps
every 2 s, abort at 40 s; KubeVirt aborts after 15 s without progress).

``--lab`` runs the migrations (real QEMU: wrap it in ``flock /tmp/migtune-qemu.lock``
and use ``--only`` to keep each hold short) and writes one recording per run to
``--out``; without it the table is made from the recordings already there.  ``--sim``
runs the same scenarios in the simulator instead, each policy steering the simulated
run (``simulate(policy=...)``): the model's view, not a measurement.

Figures per policy: runs completed, median total time of the completed runs, the
highest real downtime (QEMU's measurement) and downtime limit set, peak CPU throttle,
and the time spent on migrations that did not complete ("wasted").

Run: ``python benchmarks/bench_policy.py [--lab | --sim] [--only NAME,...] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from migtune.sources import load_run

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lab" / "policy"
RAM = 512 * 1024 * 1024
TIME_LIMIT = 40.0
ALLOWANCE_MS = 2000.0
SETTINGS = ("downtime-limit=300ms", "max-bandwidth=32MiB/s")
POLICIES = {
    "fixed": "fixed",
    "proxmox": "proxmox",
    "nova": "nova:downtime=2000ms,steps=10,delay=1s,timeout=20s",
    "kubevirt": "kubevirt:completion_per_gib=40s,progress_timeout=15s",
    "migtune": "migtune:max-downtime=2s,allow=auto-converge",
}
SCENARIOS = {
    "quiet": ("ws=64MiB,rate=1024pages/s,pattern=random", "4 MiB/s of writes: converges"),
    "hot-32": ("ws=32MiB,rate=16384pages/s,pattern=random", "a small set at 2x the link"),
    "hot-128": ("ws=128MiB,rate=16384pages/s,pattern=random", "128 MiB at 2x the link"),
    "hotcold-256": (
        "ws=256MiB,rate=8192pages/s,pattern=hotcold",
        "hot/cold 256 MiB at the link's rate",
    ),
    "seq-96": ("ws=96MiB,rate=6144pages/s,pattern=seq", "a 96 MiB sweep at 24 MiB/s"),
    "cpubound": ("ws=128MiB,rate=max,pattern=random", "a CPU-bound writer: hopeless"),
}


def run_lab(names: list[str], policies: list[str], out: Path) -> None:
    from migtune.lab.run import lab_run
    from migtune.model import Settings
    from migtune.settings import apply_assignment
    from migtune.workload import parse_workload

    out.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    for a in SETTINGS:
        settings = apply_assignment(settings, a)
    for name in names:
        spec, what = SCENARIOS[name]
        for pol in policies:
            path = out / f"{name}-{pol}.jsonl"
            print(f"lab: {name} ({what}) under {pol} ...", file=sys.stderr, flush=True)
            res = lab_run(
                RAM,
                parse_workload(spec),
                settings,
                policy=POLICIES[pol],
                time_limit=TIME_LIMIT,
                record=path,
                progress=False,
                meta={"scenario": name, "description": what, "bench": "bench_policy"},
            )
            o = res.outcome
            print(f"  {o.status} in {o.total_time_s or 0:.1f} s, reason {res.migration.reason}",
                  file=sys.stderr, flush=True)  # fmt: skip


def run_sim(names: list[str], policies: list[str]) -> list[dict]:
    """The same scenarios in the simulator, each policy in its loop (no QEMU)."""
    import dataclasses

    from migtune.model import Settings
    from migtune.qemu.policies import parse_policy
    from migtune.settings import apply_assignment
    from migtune.sim import simulate

    base = Settings()
    for a in SETTINGS:
        base = apply_assignment(base, a)
    rows = []
    for name in names:
        spec, _ = SCENARIOS[name]
        for pol in policies:
            text = POLICIES[pol] + (",max-time=40s" if pol == "migtune" else "")
            # what the driver switches on before the start for the policy (armed auto-converge)
            caps = {**base.capabilities, **parse_policy(text).capabilities(base)}
            s = dataclasses.replace(base, capabilities=caps)
            r = simulate(RAM, spec, s, time_limit=TIME_LIMIT, policy=text)
            o = r.outcome
            acts = r.stats.get("policy_actions", [])
            limits = [300.0] + [
                float(a["params"]["downtime-limit"])
                for a in acts
                if "downtime-limit" in (a.get("params") or {})
            ]
            reason = next((a["reason"] for a in acts if a["kind"] == "abort"), None)
            rows.append(
                {
                    "scenario": name,
                    "policy": pol,
                    "status": o.status,
                    "completed": o.status == "completed",
                    "total_s": o.total_time_s,
                    "downtime_ms": o.downtime_ms,
                    "max_limit_ms": max(limits),
                    "max_throttle_pct": o.max_throttle_pct or 0.0,
                    "reason": reason,
                    "load": None,
                }
            )
    return rows


def row_of(path: Path) -> dict:
    run = load_run(str(path))
    res = run.meta.get("result") or {}
    limits = [(run.settings.downtime_limit or 0) * 1000]
    for a in res.get("actions") or []:
        dl = (a.get("params") or {}).get("downtime-limit")
        if isinstance(dl, int | float):
            limits.append(float(dl))
    status = res.get("status") or run.status
    total = res.get("total_time_s")
    return {
        "scenario": run.meta.get("scenario") or path.stem.rsplit("-", 1)[0],
        "policy": path.stem.rsplit("-", 1)[1],
        "status": status,
        "completed": status == "completed",
        "total_s": total,
        "downtime_ms": res.get("downtime_ms"),
        "max_limit_ms": max(limits),
        "max_throttle_pct": res.get("max_throttle_pct") or 0.0,
        "reason": res.get("reason"),
        "load": (run.meta.get("machine") or {}).get("loadavg"),
    }


def table(rows: list[dict]) -> None:
    scen = sorted({r["scenario"] for r in rows}, key=lambda s: list(SCENARIOS).index(s))
    pols = [p for p in POLICIES if any(r["policy"] == p for r in rows)]
    by = {(r["scenario"], r["policy"]): r for r in rows}
    print(
        "per run: status and total time (s), real downtime (ms), highest limit set (ms), peak throttle %"
    )
    print(f"{'scenario':12} " + " ".join(f"{p:>26}" for p in pols))
    for s in scen:
        cells = []
        for p in pols:
            r = by.get((s, p))
            if r is None:
                cells.append(f"{'-':>26}")
                continue
            mark = "ok" if r["completed"] else "X"
            down = "-" if r["downtime_ms"] is None else f"{r['downtime_ms']:.0f}"
            cells.append(f"{mark:>2} {r['total_s'] or 0:5.1f} {down:>5} {r['max_limit_ms']:6.0f} "
                         f"{r['max_throttle_pct']:3.0f}")  # fmt: skip
        print(f"{s:12} " + " ".join(f"{c:>26}" for c in cells))
    print()
    print(f"{'policy':10} {'completed':>9} {'median time':>11} {'max downtime':>12} "
          f"{'max limit':>9} {'peak thr':>8} {'wasted':>8}")  # fmt: skip
    summary = {}
    for p in pols:
        mine = [r for r in rows if r["policy"] == p]
        done = [r for r in mine if r["completed"]]
        med = statistics.median([r["total_s"] for r in done]) if done else None
        downs = [r["downtime_ms"] for r in done if r["downtime_ms"] is not None]
        wasted = sum(r["total_s"] or 0 for r in mine if not r["completed"])
        summary[p] = {"done": {r["scenario"] for r in done}, "median": med}
        print(f"{p:10} {len(done):>4}/{len(mine):<4} {'-' if med is None else f'{med:9.1f} s':>11} "
              f"{max(downs, default=0):>9.0f} ms {max(r['max_limit_ms'] for r in mine):>6.0f} ms "
              f"{max(r['max_throttle_pct'] for r in mine):>6.0f} % {wasted:>6.1f} s")  # fmt: skip
    if "migtune" in summary:
        others = set().union(*(v["done"] for k, v in summary.items() if k != "migtune"))
        missed = sorted(others - summary["migtune"]["done"])
        print()
        print("migtune completes wherever another policy does: "
              + ("yes" if not missed else f"NO (missed: {', '.join(missed)})"))  # fmt: skip
        over = [
            r for r in rows if r["policy"] == "migtune" and (r["downtime_ms"] or 0) > ALLOWANCE_MS
        ]
        print(f"migtune within the {ALLOWANCE_MS:.0f} ms downtime allowance: "
              + ("yes" if not over else f"NO ({len(over)} runs)"))  # fmt: skip
        ratios = []
        for s in scen:
            mt = by.get((s, "migtune"))
            best = [by[(s, p)]["total_s"] for p in pols if p != "migtune" and (s, p) in by
                    and by[(s, p)]["completed"]]  # fmt: skip
            if mt and mt["completed"] and best:
                ratios.append(mt["total_s"] / min(best))
        if ratios:
            print(f"migtune time / best other policy's, where both completed: median "
                  f"{statistics.median(ratios):.2f} over {len(ratios)} scenarios")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", action="store_true", help="run the migrations (real QEMU)")
    ap.add_argument("--sim", action="store_true", help="simulate them instead (no QEMU)")
    ap.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    ap.add_argument("--policies", default=",".join(POLICIES), help="policies, comma-separated")
    ap.add_argument("--out", type=Path, default=OUT, help="directory of the recordings")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    pols = [p for p in args.policies.split(",") if p]
    bad = [n for n in names if n not in SCENARIOS] + [p for p in pols if p not in POLICIES]
    if bad:
        print(f"bench_policy: unknown {bad[0]!r}", file=sys.stderr)
        return 2
    if args.lab:
        run_lab(names, pols, args.out)
    if args.sim:
        rows = run_sim(names, pols)
    else:
        rows = [row_of(p) for p in sorted(args.out.glob("*.jsonl"))]
    if args.json:
        print(json.dumps(rows, indent=1))
    elif rows:
        table(rows)
    else:
        print(f"no recordings in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
