"""Evacuation plans at scale: a synthetic fleet planned serially and on 1 and 2 Dask
worker processes (LocalCluster): identical results, wall times, speed-up; and the
timeline checked against direct simulation on a sample of VMs.

    PYTHONPATH=src python benchmarks/bench_plan.py [--vms 500] [--seed 1] [--verify 40]

CPU-heavy: run it under the shared lock (flock /tmp/migtune-qemu.lock ...).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from migtune.plan import plan_evacuation
from migtune.plan.strategies import Strategy
from migtune.plan.verify import check_vm

GiB, MiB = 1024**3, 1024**2


def synthetic_fleet(n: int, seed: int) -> str:
    """A CSV fleet: RAM log-uniform 1-512 GiB; idle, light, medium and heavy writers."""
    rng = random.Random(seed)
    rows = ["name,ram,workload"]
    for i in range(n):
        ram = round(2 ** rng.uniform(0, 9))  # GiB, 1 .. 512
        kind = rng.choices(["idle", "light", "medium", "heavy"], [4, 3, 2, 1])[0]
        if kind == "idle":
            spec = "idle"
        elif kind == "light":
            ws = max(64, int(ram * 1024 * rng.uniform(0.02, 0.08)))
            spec = f"ws={ws}MiB,rate={rng.randint(10, 60)}MiB/s,pattern=hotcold"
        elif kind == "medium":
            ws = max(64, int(ram * 1024 * rng.uniform(0.1, 0.25)))
            spec = f"ws={ws}MiB,rate={rng.randint(100, 300)}MiB/s,pattern=random"
        else:
            ws = max(64, int(ram * 1024 * rng.uniform(0.25, 0.5)))
            spec = f"ws={ws}MiB,rate={rng.randint(400, 900)}MiB/s,pattern=random"
        rows.append(f'vm-{i:03d},{ram}GiB,"{spec}"')
    return "\n".join(rows) + "\n"


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the Dask workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--link", type=float, default=1.25e9, help="bytes/s (10 Gbit/s)")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument(
        "--stream-rate",
        type=float,
        default=300e6,
        help="bytes/s one migration stream moves at most (0: no limit)",
    )
    ap.add_argument("--platform", default="qemu")
    ap.add_argument("--verify", type=int, default=40, help="VMs checked by direct simulation")
    ap.add_argument("--modes", default="serial,1,2")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    fleet = d / "fleet.csv"
    fleet.write_text(synthetic_fleet(args.vms, args.seed))
    kw = dict(link_rate=args.link, max_parallel=args.parallel, platform=args.platform,
              stream_rate=args.stream_rate or None)  # fmt: skip
    results, walls = {}, {}
    cpus = {}
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        c0 = _cpu()
        if mode == "serial":
            plan = plan_evacuation(str(fleet), serial=True, **kw)
        else:
            plan = plan_evacuation(str(fleet), workers=int(mode), **kw)
        walls[mode] = time.perf_counter() - t0
        cpus[mode] = _cpu() - c0
        out = plan.to_dict()
        out.pop("execution")
        results[mode] = (json.dumps(out, sort_keys=True), plan)
        print(f"{mode:>6}: wall {walls[mode]:7.1f} s, CPU {cpus[mode]:7.1f} s in all processes"
              f"  ({plan.runner}; {plan.simulations} "
              f"simulations, {plan.tried} strategies)", flush=True)  # fmt: skip
    texts = {m: r[0] for m, r in results.items()}
    same = len(set(texts.values())) == 1
    print(f"identical plans across {', '.join(texts)}: {same}")
    if "serial" in walls:
        for m in walls:
            if m != "serial":
                print(f"speed-up of {m} worker(s) over serial: {walls['serial'] / walls[m]:.2f}x")
    if "1" in walls and "2" in walls:
        print(f"speed-up of 2 workers over 1: {walls['1'] / walls['2']:.2f}x")
    plan = next(iter(results.values()))[1]
    d0 = plan.to_dict()
    print(f"\nplan: {d0['strategy']['name']}; drain {d0['drain_time_s']['max']:.0f} s, "
          f"failed {len(d0['failed'])}, cannot converge {len(d0['cannot_converge'])}")  # fmt: skip
    for e in [d0["plan"], *d0["baselines"]]:
        w = e["worst_downtime_ms"]["max"]
        print(f"  {e['name']:<28} drain {e['drain_time_s']['max']:8.0f} s  last success "
              f"{e['last_completion_s']['max']:7.0f} s  failed "
              f"{e['failed']:4d}  over downtime {len(e['over_downtime']):3d}  worst downtime "
              f"{'-' if w is None else f'{w:.0f} ms'}")  # fmt: skip
    if args.verify:
        # the timeline against direct simulation, on VMs whose rate changed: in the
        # plan, and with everything tuned in list order, the most at once (the most
        # rate changes)
        rng = random.Random(args.seed)
        busy = plan.evaluate(Strategy("check", "list", args.parallel, False, True))
        moved = [(ev, n) for ev in (plan.best, busy) for n, r in ev.pessimistic.runs.items()
                 if len(r.rates) > 1 and r.status == "completed"]  # fmt: skip
        sample = rng.sample(moved, min(args.verify, len(moved)))
        checks = [check_vm(plan, n, evaluation=ev) for ev, n in sample]
        errs = [abs(c.error) for c in checks if c.error is not None]
        agree = sum(c.same_class for c in checks)
        if errs:
            print(f"\ntimeline vs direct simulation, {len(checks)} VMs whose rate changed: "
                  f"same outcome {agree}/{len(checks)}, |error| of duration median "
                  f"{statistics.median(errs):.1%}, max {max(errs):.1%}")  # fmt: skip
        else:
            print("\nno VM changed rate in the plan: nothing to check")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
