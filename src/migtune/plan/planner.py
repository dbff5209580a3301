"""``plan_evacuation``: the order, concurrency and settings that drain a host fastest
within its limits, with the baselines it is compared against (docs/plan.md).

Steps: read the fleet; per VM, resolve the plausible workloads and the candidate
settings; simulate each VM along its rate grid (one Dask task per VM, identical jobs
once); build min / median / max profiles; score every strategy on the pessimistic
profiles (one Dask task per strategy); play the best one and the baselines forward
under all three profiles for the ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migtune.errors import InputError
from migtune.plan import platforms
from migtune.plan.curves import TuneAsk, VmCurves, VmJob, profile, rate_grid, simulate_vm
from migtune.plan.fleet import PLATFORMS, VmSpec, load_fleet
from migtune.plan.runner import Progress, Runner
from migtune.plan.sources import candidates, plausible_workloads
from migtune.plan.strategies import (
    STATS,
    Evaluation,
    Strategy,
    VmInput,
    evaluate,
    evaluate_task,
    strategies,
)
from migtune.settings import validate
from migtune.units import format_duration

DEFAULT_MAX_TIME = 3600.0  # s: a migration still running after this is given up
DEFAULT_PARALLEL = 4
# The slowest link or stream planned for; it also keeps every rate the shrunk
# simulations impose (the rate divided by up to 32768 for a 64 TiB guest, spread over
# up to 64 streams) at a byte per second or more, as QEMU needs.
MIN_LINK = 12.5e6


@dataclass
class PlannedVm:
    spec: VmSpec
    platform: str
    downtime_budget: float  # s: the limit its settings use
    downtime_limit: float | None  # s: the limit it must meet (None: none given)
    max_time: float
    workloads: tuple[str, ...]
    settings: dict[str, Any]  # candidate -> Settings
    curves: VmCurves | None = None
    flags: list[str] = field(default_factory=list)  # impossible limits, as sentences


@dataclass
class EvacuationPlan:
    link_rate: float
    max_parallel: int
    platform: str
    stream_rate: float | None
    deadline: float | None
    max_downtime: float | None
    vms: list[PlannedVm]
    best: Evaluation
    baselines: list[Evaluation]
    tried: int  # strategies scored
    simulations: int  # simulator runs
    runner: str
    workers: int
    inputs: list[VmInput] = field(default_factory=list, repr=False)  # for re-scoring

    def evaluate(self, strategy: Strategy) -> Evaluation:
        """Play another strategy on the same fleet and profiles (all three statistics)."""
        return evaluate(strategy, self.inputs, self.link_rate, self.deadline, STATS)

    @property
    def ok(self) -> bool:
        """Every VM converges within its limits and the drain meets the deadline."""
        b = self.best
        return not b.failed and not b.over_downtime and not b.deadline_missed

    def vm(self, name: str) -> PlannedVm:
        return next(v for v in self.vms if v.spec.name == name)

    def to_dict(self) -> dict[str, Any]:
        from migtune.plan.report import plan_dict

        return plan_dict(self)


def _prepare(
    fleet: list[VmSpec], path: str, *, platform: str, max_downtime: float | None,
    max_time: float, link: float, max_parallel: int, qemu_version: str,
    history_db: str | None = None,
) -> list[PlannedVm]:  # fmt: skip
    out = []
    for vm in fleet:
        where = f"{path}:{vm.line}"
        plat = vm.platform or platform
        budget = vm.max_downtime if vm.max_downtime is not None else max_downtime
        flags = []
        if budget is None:
            budget = platforms.base_downtime(plat)
        if budget < 0.001:
            flags.append(
                f"max-downtime {format_duration(budget)} is below 1 ms, the least QEMU "
                "can be told: no migration can meet it"
            )
            budget = 0.001
        budget = min(budget, 2000.0)
        vm_time = vm.max_time if vm.max_time is not None else max_time
        if vm_time <= 0:
            flags.append("max-time 0: no migration can finish in no time")
        cands = candidates(plat, vm, budget)
        for _, s in cands:
            try:
                validate(s)
            except InputError as exc:
                raise InputError(f"{where}: {exc.message}") from None
        given = vm.max_downtime if vm.max_downtime is not None else max_downtime
        out.append(PlannedVm(vm, plat, budget, given, vm_time,
                             plausible_workloads(vm, where, history_db), dict(cands),
                             flags=flags))  # fmt: skip
    return out


def stream_cap(settings_cap: float | None, stream_rate: float | None) -> float | None:
    """What holds one stream back: its ``max-bandwidth`` or what one migration stream
    can move at all (``stream_rate``), whichever is lower (None: neither)."""
    caps = [c for c in (settings_cap, stream_rate) if c]
    return min(caps) if caps else None


def _inputs(vms: list[PlannedVm], link: float, stream_rate: float | None = None) -> list[VmInput]:
    out = []
    for v in vms:
        assert v.curves is not None
        profiles = {c: {s: profile(ch, s) for s in STATS} for c, ch in v.curves.curves.items()}
        caps = {c: stream_cap(v.settings[c].max_bandwidth, stream_rate) for c in profiles}
        top = min(link, v.spec.max_bandwidth) if v.spec.max_bandwidth else link
        out.append(VmInput(v.spec.name, v.spec.index, v.spec.ram_bytes, v.max_time,
                           v.downtime_limit, profiles, caps, top))  # fmt: skip
    return out


# Strategies whose drain time is within this share of the fastest count as equally fast;
# among them the one with the shortest worst downtime wins.
DRAIN_TOLERANCE = 0.01


def pick(tried: list[Strategy], scores: list[tuple]) -> int:
    """The best strategy: fewest failures (then VMs over their downtime limit, then
    deadline missed); among those, a drain within 1 % of the fastest and no slower than
    the best baseline of the same standing; among those, the shortest worst downtime."""
    top = min(sc[:3] for sc in scores)
    group = [i for i, sc in enumerate(scores) if sc[:3] == top]
    fastest = min(scores[i][3] for i in group)
    limit = fastest * (1 + DRAIN_TOLERANCE)
    baselines = [scores[i][3] for i in group if not tried[i].tuned]
    if baselines:
        limit = min(limit, min(baselines))
    near = [i for i in group if scores[i][3] <= limit + 1e-9]
    return min(near, key=lambda i: (scores[i][4], scores[i][3], i))


def plan_evacuation(
    fleet: str | Path | list[VmSpec],
    *,
    link_rate: float,
    max_parallel: int = DEFAULT_PARALLEL,
    max_downtime: float | None = None,
    deadline: float | None = None,
    max_time: float = DEFAULT_MAX_TIME,
    platform: str = "qemu",
    qemu_version: str = "10.0",
    serial: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Progress | None = None,
    stream_rate: float | None = None,
    history_db: str | None = None,
    use_tune: bool = False,
) -> EvacuationPlan:
    """Plan draining a host: ``fleet`` is a fleet file or its parsed rows; the link in
    bytes/s; limits in seconds; ``stream_rate`` the most one migration stream moves
    whatever the link (one migration thread, TLS or an SSH tunnel; None: no limit);
    ``history_db`` the history store that ``history:NAME`` rows read; ``use_tune``
    adds ``migtune tune``'s recommendation to each VM's candidates.  Simulations
    run on Dask (a LocalCluster of ``workers`` processes, or ``scheduler``) unless
    ``serial``."""
    if link_rate < MIN_LINK:
        raise InputError("--link: below 100 Mbit/s is not a migration network")
    if max_parallel < 1:
        raise InputError("--max-parallel: must be at least 1")
    if deadline is not None and deadline <= 0:
        raise InputError("--deadline: must be more than 0 s")
    if max_time <= 0:
        raise InputError("--max-time: must be more than 0 s")
    if stream_rate is not None and stream_rate < MIN_LINK:
        raise InputError("--stream-rate: below 100 Mbit/s is not a migration stream")
    if platform not in PLATFORMS:
        raise InputError(f"--platform: {platform!r} is not one of {', '.join(PLATFORMS)}")
    path = str(fleet) if not isinstance(fleet, list) else "fleet"
    rows = load_fleet(fleet) if not isinstance(fleet, list) else fleet
    vms = _prepare(rows, path, platform=platform, max_downtime=max_downtime,
                   max_time=max_time, link=link_rate, max_parallel=max_parallel,
                   qemu_version=qemu_version, history_db=history_db)  # fmt: skip
    jobs = []
    for v in vms:
        cands = tuple(
            (
                c,
                s,
                rate_grid(
                    link_rate, link_rate / max_parallel, stream_cap(s.max_bandwidth, stream_rate)
                ),
            )  # fmt: skip
            for c, s in v.settings.items()
        )
        # the simulator needs some time: a VM given none fails in the timeline anyway
        ask = None
        if use_tune:
            floor = link_rate / max_parallel
            expected = min(floor, stream_rate or floor, v.spec.max_bandwidth or floor)
            ask = TuneAsk(v.platform, v.downtime_budget, expected, link_rate, floor, stream_rate)
        jobs.append(VmJob(v.spec.name, v.spec.ram_bytes, v.workloads, cands,
                          max(v.max_time, 1.0), qemu_version,
                          platforms.platform_policy(v.platform), ask))  # fmt: skip
    unique: dict[tuple, int] = {}
    for j in jobs:
        unique.setdefault(j.key(), len(unique))
    todo = [next(j for j in jobs if j.key() == k) for k in unique]
    with Runner(serial=serial, workers=workers, scheduler=scheduler, progress=progress) as run:
        results = run.map(simulate_vm, todo, "simulating VMs")
        for v, j in zip(vms, jobs, strict=True):
            r = results[unique[j.key()]]
            v.curves = VmCurves(v.spec.name, r.curves, r.needs_rate, r.needs_downtime,
                                r.simulations, r.tuned, r.tuned_label,
                                r.tuned_commands)  # fmt: skip
            if r.tuned is not None:
                v.settings["tune"] = r.tuned
        inputs = _inputs(vms, link_rate, stream_rate)
        tried = strategies(max_parallel)
        scores = run.map(evaluate_task, tried, "scoring strategies", inputs, link_rate, deadline)
        best_i = pick(tried, [sc[0] for sc in scores])
        description, n_workers = run.description, run.n_workers
    best = evaluate(tried[best_i], inputs, link_rate, deadline, STATS)
    baselines = [evaluate(s, inputs, link_rate, deadline, STATS) for s in tried[:3]]
    return EvacuationPlan(
        link_rate=link_rate,
        max_parallel=max_parallel,
        platform=platform,
        stream_rate=stream_rate,
        deadline=deadline,
        max_downtime=max_downtime,
        vms=vms,
        best=best,
        baselines=baselines,
        tried=len(tried),
        simulations=sum(r.simulations for r in results),
        runner=description,
        workers=n_workers,
        inputs=inputs,
    )


__all__ = ["EvacuationPlan", "PlannedVm", "Strategy", "plan_evacuation"]
