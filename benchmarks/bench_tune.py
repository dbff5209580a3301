"""Benchmark: how fast ``migtune tune`` is, and how good its advice is on real QEMU.

Speed (default): ``tune --from examples/proxmox-32GiB-not-converging.log`` for its own
platform (proxmox) and for plain QEMU (>= 200 candidates): candidate count,
simulations, CPU per simulation, wall time of the search and of the calibration.

Lab (``--lab``): for each scenario below (not among the older lab fixtures), record a
short observation run with plain QEMU's defaults (``record``), run ``tune`` on that
recording with a downtime limit (``tune``), then run in the lab every candidate of the
same grid, the recommendation once more, and Proxmox's, Nova's and KubeVirt's default
settings with their policies (``sweep``); ``report`` prints the table from the
recordings, which are kept in ``tests/fixtures/lab/tune-<scenario>/``.

Run:
  python benchmarks/bench_tune.py                       # speed
  python benchmarks/bench_tune.py --inputs              # every example and real log
  flock /tmp/migtune-qemu.lock python benchmarks/bench_tune.py --lab t1 --stage record
  python benchmarks/bench_tune.py --lab t1 --stage tune
  flock /tmp/migtune-qemu.lock python benchmarks/bench_tune.py --lab t1 --stage sweep --minutes 8
  python benchmarks/bench_tune.py --lab all --stage report
(``sweep`` resumes where it stopped: runs whose recording exists are skipped.)
Targets (issue 10): the demo over >= 200 candidates x the plausible set <= 10 s wall;
in the lab the recommendation converges, its real time <= 1.2x the best real time in
the sweep, its real downtime never above the limit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from migtune.analysis.tune import tune
from migtune.analysis.tune.grid import proxmox_cache
from migtune.model import Settings, settings_from_dict
from migtune.outcome import outcome_from_run
from migtune.sources import load_run
from migtune.units import MiB, format_duration
from migtune.workload import parse_workload

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "proxmox-32GiB-not-converging.log"
FIXTURES = ROOT / "tests" / "fixtures" / "lab"
# what tune predicted for each scenario (the sweep runs its candidates): not a log, so
# not among the fixtures every log test reads
PREDICTED = ROOT / "benchmarks" / "tune-lab"

# name: (guest RAM, workload, bandwidth cap standing for the link)
SCENARIOS = {
    "t1": (384 * MiB, "ws=160MiB,rate=40MiB/s,pattern=random,bytes=16", 32 * MiB),
    "t2": (512 * MiB, "ws=192MiB,rate=40MiB/s,pattern=seq,bytes=4096", 48 * MiB),
    "t3": (256 * MiB, "ws=96MiB,rate=48MiB/s,pattern=hotcold,bytes=64", 32 * MiB),
    "t4": (448 * MiB, "ws=64MiB,rate=24MiB/s,pattern=random,bytes=256", 24 * MiB),
    "t5": (512 * MiB, "ws=320MiB,rate=20MiB/s,pattern=random,bytes=1024", 48 * MiB),
    "t6": (384 * MiB, "ws=128MiB,rate=80MiB/s,pattern=random,bytes=8", 40 * MiB),
}
MAX_DOWNTIME = 1.0  # s, the operator's limit given to tune
TIME_LIMIT = 45.0  # s, every lab run (and tune's --max-time)
LAB_DOWNTIMES = (0.3, 1.0)
ALLOW = ("xbzrle", "auto-converge", "multifd")


def lab_grid(ram: int):
    """The lab sweep's grid: 2 downtimes x (none, auto-converge, XBZRLE at RAM/10, both,
    multifd x4, multifd x4 + auto-converge) = 12 settings."""

    def only(k) -> bool:
        return (
            k.downtime in LAB_DOWNTIMES
            and not k.aggressive_throttle
            and (not k.xbzrle_cache or k.xbzrle_cache == proxmox_cache(ram))
        )

    return only


# -- speed ---------------------------------------------------------------------------------
def speed() -> None:
    from migtune.sim.calibrate import calibrate

    run = load_run(str(DEMO))
    t0 = time.perf_counter()
    cal = calibrate(run)
    t_cal = time.perf_counter() - t0
    print(f"demo: calibration {t_cal:.1f} s wall, {len(cal.plausible)} plausible workloads")
    print("platform   candidates  confirmed  simulations  CPU/sim   search wall  verdict")
    for platform in ("proxmox", "qemu"):
        t0 = time.perf_counter()
        r = tune(cal, platform=platform, max_downtime=2.0)
        # the transport candidates need the log's findings: give them as tune(run) would
        wall = time.perf_counter() - t0
        s = r.stats
        per = s["simulation_s"] / max(1, s["simulations"])
        verdict = r.recommendation.label if r.recommendation else "nothing meets the limits"
        print(f"{platform:<10} {s['candidates']:>10}  {s['confirmed']:>9}  {s['simulations']:>11}"
              f"  {per * 1000:6.1f} ms  {wall:9.1f} s  {verdict}")  # fmt: skip
    for platform in ("proxmox", "qemu"):
        t0 = time.perf_counter()
        r = tune(run, platform=platform, max_downtime=2.0)
        wall = time.perf_counter() - t0
        s = r.stats
        per = s["simulation_s"] / max(1, s["simulations"])
        verdict = r.recommendation.label if r.recommendation else "nothing meets the limits"
        print(f"{platform + '+log':<10} {s['candidates']:>10}  {s['confirmed']:>9}  "
              f"{s['simulations']:>11}  {per * 1000:6.1f} ms  {wall:9.1f} s  {verdict}"
              "  (wall includes calibration)")  # fmt: skip


def inputs() -> None:
    """tune on every example and public real log: exit code, answer, wall time."""
    from migtune.cli.tune import PLATFORM_OF_FORMAT
    from migtune.errors import MigtuneError

    files = sorted(p for p in (ROOT / "examples").iterdir() if p.is_file())
    files += sorted((ROOT / "tests" / "fixtures" / "real").glob("*.txt"))
    for path in files:
        t0 = time.perf_counter()
        try:
            run = load_run(str(path))
            platform = PLATFORM_OF_FORMAT.get(run.format, "qemu")
            r = tune(run, platform=platform)
            code = 0 if r.recommendation else 6
            best = r.recommendation or r.closest
            p = best.predicted() if best else {}
            t = p.get("total_time_s", {})
            answer = (f"{'recommend' if code == 0 else 'closest'}: {best.label}; total "
                      f"{format_duration(t.get('min'))}-{format_duration(t.get('max'))}, "
                      f"{p.get('converged_share', 0):.0%} converge" if best else "no candidate")  # fmt: skip
        except MigtuneError as exc:
            code, answer = exc.exit_code, f"error: {exc}"
        wall = time.perf_counter() - t0
        print(f"{path.name:<55} exit {code}  {wall:6.1f} s  {answer}", flush=True)


# -- lab -----------------------------------------------------------------------------------
def _dir(name: str) -> Path:
    d = FIXTURES / f"tune-{name}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _lab(name: str, label: str, settings: Settings, policy: str = "fixed") -> None:
    from migtune.lab.run import lab_run

    ram, workload, _ = SCENARIOS[name]
    path = _dir(name) / f"{label}.jsonl"
    if path.exists():
        return
    tmp = path.with_suffix(".part")
    load = os.getloadavg()[0]
    print(f"  {name} {label}: {policy} ... (load {load:.1f})", flush=True)
    res = lab_run(ram, parse_workload(workload), settings, policy=policy, time_limit=TIME_LIMIT,
                  record=tmp, accel="tcg", progress=False,
                  meta={"scenario": f"tune-{name}", "run": label})  # fmt: skip
    tmp.rename(path)
    o = res.outcome
    print(f"    {o.status} {o.total_time_s} s, downtime {o.downtime_ms} ms", flush=True)


def record(name: str) -> None:
    _, _, cap = SCENARIOS[name]
    _lab(name, "observed", Settings(max_bandwidth=cap))


def run_tune(name: str) -> dict:
    ram, _, _ = SCENARIOS[name]
    d = _dir(name)
    run = load_run(str(d / "observed.jsonl"))
    t0 = time.perf_counter()
    r = tune(run, platform="qemu", max_downtime=MAX_DOWNTIME, max_time=TIME_LIMIT, allow=ALLOW,
             only=lab_grid(ram))  # fmt: skip
    wall = time.perf_counter() - t0
    out = {
        "scenario": name,
        "wall_s": round(wall, 2),
        "recommendation": r.recommendation.label if r.recommendation else None,
        "closest": r.closest.label if r.closest else None,
        "candidates": [
            {
                "label": c.label,
                "settings": c.to_dict()["settings"],
                "predicted": c.predicted(),
                "meets_limits": c.meets_limits,
            }  # fmt: skip
            for c in r.candidates
        ],
    }
    PREDICTED.mkdir(exist_ok=True)
    (PREDICTED / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(
        f"{name}: tune {wall:.1f} s -> {out['recommendation'] or 'none; closest ' + str(out['closest'])}"
    )
    return out


def _lab_settings(d: dict) -> Settings:
    s = settings_from_dict(d)
    return Settings(
        downtime_limit=s.downtime_limit, max_bandwidth=s.max_bandwidth,
        xbzrle_cache_size=s.xbzrle_cache_size if s.capabilities.get("xbzrle") else None,
        capabilities={k: v for k, v in s.capabilities.items() if v},
        multifd_channels=s.multifd_channels if s.capabilities.get("multifd") else None,
        cpu_throttle_initial=s.cpu_throttle_initial, cpu_throttle_increment=s.cpu_throttle_increment,
    )  # fmt: skip


def planned(name: str) -> list[tuple[str, Settings, str]]:
    ram, _, cap = SCENARIOS[name]
    t = json.loads((PREDICTED / f"{name}.json").read_text())
    runs = [(f"sweep-{i:02d}", _lab_settings(c["settings"]), "fixed")
            for i, c in enumerate(sorted(t["candidates"], key=lambda c: c["label"]))]  # fmt: skip
    best = next((c for c in t["candidates"] if c["label"] == t["recommendation"]), None)
    if best is not None:
        runs.append(("recommended", _lab_settings(best["settings"]), "fixed"))
    pve = Settings(downtime_limit=0.1, max_bandwidth=cap, xbzrle_cache_size=proxmox_cache(ram),
                   capabilities={"xbzrle": True, "auto-converge": True})  # fmt: skip
    runs += [
        ("policy-proxmox", pve, "proxmox"),
        ("policy-nova", Settings(max_bandwidth=cap), "nova"),
        ("policy-kubevirt", Settings(max_bandwidth=cap), "kubevirt"),
    ]
    return runs


def sweep(name: str, minutes: float, not_after: str | None = None) -> None:
    end = time.monotonic() + minutes * 60
    for label, settings, policy in planned(name):
        late = not_after is not None and time.strftime("%H:%M", time.gmtime()) >= not_after
        if time.monotonic() > end - TIME_LIMIT - 15 or late:
            print(f"  {name}: stopping (time budget); run again to continue")
            return
        _lab(name, label, settings, policy)


def _outcome(path: Path):
    run = load_run(str(path))
    o = outcome_from_run(run)
    if o.total_time_s is None and run.samples:  # cancelled: QEMU's clock stops with it
        o = dataclasses.replace(o, total_time_s=run.samples[-1].t)
    return o


def _load(path: Path) -> float | None:
    """The 1-minute load average the lab wrote at the start of a recording."""
    try:
        head = json.loads(path.read_text().split("\n", 1)[0])
        return head["meta"]["machine"]["loadavg"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _cell(p: Path) -> str:
    if not p.exists():
        return "not run"
    o = _outcome(p)
    if not o.converged:
        return f"{o.status} at {format_duration(o.total_time_s)}"
    return f"{format_duration(o.total_time_s)}, {o.downtime_ms:.0f} ms"


def report(names: list[str]) -> None:
    """A markdown table: one row per scenario."""
    print("| scenario | recommendation (predicted worst case) | converged | real time | "
          "best real in the sweep | ratio | real downtime (limit 1 s) | same settings in the "
          "sweep | sweep meeting the limits | Proxmox | Nova | KubeVirt | load |")  # fmt: skip
    print("|" + "---|" * 13)
    for name in names:
        d = FIXTURES / f"tune-{name}"
        if not (PREDICTED / f"{name}.json").exists():
            continue
        t = json.loads((PREDICTED / f"{name}.json").read_text())
        cands = sorted(t["candidates"], key=lambda c: c["label"])
        labels = {f"sweep-{i:02d}": c["label"] for i, c in enumerate(cands)}
        ok, ran, loads = [], 0, []
        for label in labels:
            p = d / f"{label}.jsonl"
            if p.exists():
                ran += 1
                loads.append(_load(p))
                o = _outcome(p)
                if o.converged and (o.downtime_ms or 0) <= MAX_DOWNTIME * 1000:
                    ok.append((o.total_time_s, labels[label]))
        best = min(ok, default=None)
        rec = d / "recommended.jsonl"
        same = next((k for k, v in labels.items() if v == t["recommendation"]), None)
        if not rec.exists() and same:  # not run again: its run in the sweep stands for it
            rec = d / f"{same}.jsonl"
        ro = _outcome(rec) if rec.exists() else None
        pred = next((c["predicted"] for c in cands if c["label"] == t["recommendation"]), None)
        ratio = f"{ro.total_time_s / best[0]:.2f}x" if ro and ro.converged and best else "-"
        ram, workload, cap = SCENARIOS[name]
        loads = [x for x in loads if x is not None]
        where = f"{name}: {ram // MiB} MiB, `{workload}`, cap {cap // MiB} MiB/s"
        said = (f"{t['recommendation']} ({format_duration(pred['total_time_s']['max'])})"
                if pred else f"none (closest {t['closest']})")  # fmt: skip
        print(f"| {where} | {said} | {'yes' if ro and ro.converged else 'no' if ro else 'not run'} | "
              f"{format_duration(ro.total_time_s) if ro and ro.converged else '-'} | "
              f"{format_duration(best[0]) + ' (' + best[1] + ')' if best else 'none'} | {ratio} | "
              f"{f'{ro.downtime_ms:.0f} ms' if ro and ro.converged else '-'} | "
              f"{_cell(d / f'{same}.jsonl') if same else '-'} | {len(ok)} of {ran} run "
              f"({len(labels)} planned) | {_cell(d / 'policy-proxmox.jsonl')} | "
              f"{_cell(d / 'policy-nova.jsonl')} | {_cell(d / 'policy-kubevirt.jsonl')} | "
              f"{min(loads, default=0):.1f}-{max(loads, default=0):.1f} |")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", help="scenario name(s), comma-separated, or 'all'")
    ap.add_argument("--stage", choices=("record", "tune", "sweep", "report"), default="report")
    ap.add_argument("--inputs", action="store_true", help="tune every example and real log")
    ap.add_argument("--not-after", metavar="HH:MM", help="sweep: start no run after (UTC)")
    ap.add_argument("--minutes", type=float, default=8.0, help="sweep: stop starting runs after")
    a = ap.parse_args()
    if a.inputs:
        inputs()
        return 0
    if not a.lab:
        speed()
        return 0
    names = list(SCENARIOS) if a.lab == "all" else a.lab.split(",")
    for n in names:
        if n not in SCENARIOS:
            print(f"unknown scenario {n}", file=sys.stderr)
            return 2
    if a.stage == "report":
        report(names)
        return 0
    for n in names:
        {"record": record, "tune": run_tune}.get(
            a.stage, lambda x: sweep(x, a.minutes, a.not_after)
        )(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
