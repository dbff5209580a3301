"""Orders, concurrency and settings to try, and how one such strategy is scored
(docs/plan.md, "The planner").

A strategy is an order of the VMs, how many migrate at once, whether a migration may
start when the rate it would get is too low for it to converge (admission control), and
which settings each VM gets: the platform's defaults (``tuned=False``, what the
baselines run) or, per VM, the least intrusive candidate that converges at the rate it
can expect.  Strategies are scored on the pessimistic profile (the slowest plausible
workload at every rate), so a plan that meets its limits does so in the worst plausible
case.  The baselines are among the strategies tried, so the plan is never worse than
they are (by this model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from migtune.plan.curves import Profile
from migtune.plan.platforms import CANDIDATES
from migtune.plan.timeline import Entry, Timeline, run_timeline

ORDERS = ("list", "largest-first", "smallest-first", "hardest-first", "longest-first")
BASELINES = (
    ("bulk migrate (list order)", "list"),
    ("largest-first", "largest-first"),
    ("smallest-first", "smallest-first"),
)
STATS = ("min", "median", "max")


@dataclass(frozen=True)
class Strategy:
    name: str
    order: str
    parallel: int
    admission: bool
    tuned: bool


@dataclass(frozen=True)
class VmInput:
    """What scoring needs to know about one VM."""

    name: str
    index: int  # position in the fleet file
    ram_bytes: int
    max_time: float
    max_downtime: float | None
    profiles: dict[str, dict[str, Profile]]  # candidate -> statistic -> profile
    caps: dict[str, float | None]  # candidate -> its stream's cap (None: none)
    top_rate: float  # the most it can get: the link or its own cap


@dataclass
class Evaluation:
    strategy: Strategy
    chosen: dict[str, str]  # VM -> candidate
    excluded: list[str]  # cannot converge under any candidate: not started
    timelines: dict[str, Timeline] = field(default_factory=dict)  # statistic -> timeline
    over_downtime: list[str] = field(default_factory=list)
    deadline: float | None = None

    @property
    def pessimistic(self) -> Timeline:
        return self.timelines["max"]

    @property
    def failed(self) -> list[str]:
        """VMs that do not end up on the target: given up at max-time, or not started."""
        return sorted(set(self.pessimistic.failed) | set(self.excluded))

    @property
    def drain_time(self) -> float:
        return self.pessimistic.drain_time

    @property
    def deadline_missed(self) -> bool:
        return self.deadline is not None and self.drain_time > self.deadline

    def score(self) -> tuple:
        """Lower is better: VMs failed, VMs over their downtime limit, deadline missed,
        drain time, worst downtime."""
        worst = self.pessimistic.worst_downtime
        return (len(self.failed), len(self.over_downtime), self.deadline_missed,
                round(self.drain_time, 6), round(worst or 0.0, 6))  # fmt: skip


def expected_rate(vm: VmInput, cap: float | None, link: float, parallel: int) -> float:
    """The least it gets with ``parallel`` streams on the link: an equal share, or its cap."""
    share = link / parallel
    return min(share, cap) if cap else share


def choose(vm: VmInput, link: float, parallel: int, tuned: bool) -> str | None:
    """The candidate this VM migrates with (None: none converges at any rate)."""
    if not tuned:
        return "base"
    names = [c for c in CANDIDATES if c in vm.profiles]
    for c in names:
        if vm.profiles[c]["max"].converges_at(expected_rate(vm, vm.caps[c], link, parallel)):
            return c
    reachable = [(vm.profiles[c]["max"].threshold, i, c) for i, c in enumerate(names)]
    reachable = [x for x in reachable if x[0] is not None]
    return min(reachable)[2] if reachable else None


def _order(vms: list[tuple[VmInput, str]], how: str, link: float, parallel: int) -> list:
    def need(v: VmInput, c: str) -> float:
        return v.profiles[c]["max"].threshold or math.inf

    def duration(v: VmInput, c: str) -> float:
        p = v.profiles[c]["max"]
        r = expected_rate(v, v.caps[c], link, parallel)
        return p.first_pass_time(r) + min(p.rest_time(r), v.max_time)

    keys = {
        "list": lambda x: (x[0].index,),
        "largest-first": lambda x: (-x[0].ram_bytes, x[0].index),
        "smallest-first": lambda x: (x[0].ram_bytes, x[0].index),
        "hardest-first": lambda x: (-need(*x), -x[0].ram_bytes, x[0].index),
        "longest-first": lambda x: (-duration(*x), x[0].index),
    }
    return sorted(vms, key=keys[how])


def evaluate(
    strategy: Strategy,
    vms: list[VmInput],
    link: float,
    deadline: float | None,
    stats: tuple[str, ...] = ("max",),
) -> Evaluation:
    """Play ``strategy`` forward under each statistic's profiles (``max`` at least)."""
    chosen: dict[str, str] = {}
    excluded: list[str] = []
    pairs = []
    for vm in vms:
        c = choose(vm, link, strategy.parallel, strategy.tuned)
        if c is None:
            excluded.append(vm.name)
            continue
        chosen[vm.name] = c
        pairs.append((vm, c))
    ordered = _order(pairs, strategy.order, link, strategy.parallel)
    ev = Evaluation(strategy, chosen, excluded, deadline=deadline)
    for stat in dict.fromkeys((*stats, "max")):
        entries = [
            Entry(vm.name, vm.profiles[c][stat], vm.caps[c], vm.max_time,
                  vm.profiles[c]["max"].threshold if strategy.admission else None)
            for vm, c in ordered
        ]  # fmt: skip
        ev.timelines[stat] = run_timeline(entries, link, strategy.parallel,
                                          admission=strategy.admission)  # fmt: skip
    runs = ev.pessimistic.runs
    ev.over_downtime = sorted(
        vm.name
        for vm in vms
        if vm.max_downtime is not None
        and vm.name in runs
        and runs[vm.name].downtime is not None
        and runs[vm.name].downtime > vm.max_downtime * (1 + 1e-9)
    )
    return ev


def strategies(max_parallel: int) -> list[Strategy]:
    """The baselines first, then the planner's own: every order, a few concurrencies
    up to ``max_parallel``, with and without admission control."""
    out = [Strategy(name, order, max_parallel, False, False) for name, order in BASELINES]
    levels = sorted({1, max_parallel} | {2**i for i in range(1, 8) if 2**i < max_parallel})
    for order in ORDERS:
        for n in levels:
            for admission in (False, True):
                if admission and n == 1:
                    continue  # alone, admission changes nothing
                label = f"{order}, {n} at once" + (", admission control" if admission else "")
                out.append(Strategy(label, order, n, admission, True))
    return out


def evaluate_task(strategy: Strategy, vms: list[VmInput], link: float, deadline) -> tuple:
    """One Dask task: a strategy's score (the timeline stays on the worker)."""
    ev = evaluate(strategy, vms, link, deadline)
    return ev.score(), len(ev.failed), ev.drain_time
