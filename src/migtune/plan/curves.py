"""Per VM: how its migration goes at each rate it may get (docs/plan.md, "Rate curves").

A migration's duration depends on the rate its stream gets, and that rate depends on
what else runs.  Rather than simulate every VM once per possible neighbourhood, each VM
is simulated at a few rates (a geometric grid from the largest rate it can get down to
its smallest fair share), for each candidate setting and each plausible workload.  The
timeline (:mod:`.timeline`) then reads the first-pass time, total time and downtime at
whatever rate the VM gets, interpolated between grid points.

:func:`simulate_vm` is the unit of work that runs as one Dask task: it takes a
picklable :class:`VmJob` and returns a :class:`VmCurves`, nothing else, so the answer is
the same wherever it runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from migtune.model import Settings
from migtune.settings import QEMU_MAX_DOWNTIME_LIMIT
from migtune.sim.api import simulate
from migtune.sim.calibrate.fit import Setup, search_scale, shrunk
from migtune.sim.machine import Machine
from migtune.workload import parse_workload

# A migration still not done after this many passes at a constant rate is counted as
# not converging: the planner does not bet on it (and its simulation stops there).
# Not with auto-converge: the throttle climbs one step per pass, so convergence can
# come late (the simulation stops once the throttle is at its maximum and the passes
# repeat, see migtune.sim.settle).
GIVE_UP_PASSES = 40


def _give_up(s: Settings) -> int | None:
    return None if s.capabilities.get("auto-converge") else GIVE_UP_PASSES


# how far past the link the "what would it need" search looks (x2, x4, ... x16)
NEED_RATE_STEPS = (2, 4, 8, 16)
NEED_DOWNTIME_STEPS = (4, 16, 64, 256, 1024)


@dataclass(frozen=True)
class TuneAsk:
    """What ``migtune tune`` is asked for one VM: its platform's settings that meet the
    downtime budget at the rate it can expect (its smallest fair share)."""

    platform: str
    max_downtime: float
    expected_rate: float
    link: float  # for the candidate's rate grid
    floor_share: float
    stream_rate: float | None


@dataclass(frozen=True)
class VmJob:
    """Everything a worker needs to simulate one VM (picklable, no file access)."""

    name: str
    ram_bytes: int
    workloads: tuple[str, ...]  # plausible workload specs
    # (name, settings, rate grid largest first), "base" first
    candidates: tuple[tuple[str, Settings, tuple[float, ...]], ...]
    time_limit: float  # s: give up on a migration after this long
    qemu_version: str = "10.0"
    # how the platform steers every migration it runs (``migrate --policy``), e.g.
    # Proxmox doubling the downtime limit of a stalled migration; None: nobody steers
    policy: str | None = None
    tune: TuneAsk | None = None  # ask `migtune tune` for one more candidate

    def key(self) -> tuple:
        """Jobs that differ only in the VM's name simulate the same thing."""
        return (self.ram_bytes, self.workloads, repr(self.candidates), self.time_limit,
                self.qemu_version, self.policy, self.tune)  # fmt: skip


@dataclass(frozen=True)
class Point:
    """One simulation: a workload under a candidate at one rate."""

    rate: float  # bytes/s the stream got
    converged: bool
    first_pass_s: float  # time of the first full pass over the RAM
    total_s: float | None  # None: did not complete within the time limit
    downtime_s: float | None
    transferred: int | None
    simulated: bool = True  # False: not run, known not to converge (a faster rate did not)


@dataclass
class VmCurves:
    """The answer for one VM: per candidate, per workload, the points (largest rate first);
    and, when nothing converges at the largest rate, what it would need."""

    name: str
    curves: dict[str, list[list[Point]]] = field(default_factory=dict)
    needs_rate: float | None = None  # bytes/s of its own that would let it converge
    needs_downtime: float | None = None  # s: a downtime limit that would, at the top rate
    simulations: int = 0
    # what `migtune tune` recommended (None: not asked, or it found nothing)
    tuned: Settings | None = None
    tuned_label: str | None = None
    tuned_commands: list[str] = field(default_factory=list)  # "VMID" / "DOMAIN" left in


def rate_grid(link: float, floor_share: float, cap: float | None) -> tuple[float, ...]:
    """Rates a VM can get: from ``min(link, cap)`` halving down to its smallest fair
    share (at least one point)."""
    top = min(link, cap) if cap else link
    floor = min(top, floor_share)
    rates = [top]
    while rates[-1] / 2 >= floor * 0.999:
        rates.append(rates[-1] / 2)
    if rates[-1] > floor * 1.001:
        rates.append(floor)
    return tuple(rates)


# The shrunk stream must keep at least this rate: QEMU's limiter lets each 100 ms window
# overshoot its budget by about a flush of pages, which at a few hundred KiB per window
# is a large share of it (a 240 GiB idle VM shrunk 120 times at 156 MB/s ran as if
# rate changes did not matter).  At 10 MiB/s the overshoot stays a few per cent.
MIN_SHRUNK_RATE = 10 * 1024**2


def shrink_factor(ram_bytes: int, slowest_rate: float) -> int:
    """How much a guest may be shrunk when its stream is held to ``slowest_rate``."""
    return max(1, min(search_scale(ram_bytes), int(slowest_rate // MIN_SHRUNK_RATE)))


def scaled_machine(k: int) -> Machine:
    """The host as seen by a guest shrunk ``k`` times: the guest OS's own background
    writes and the device state shrink with it, so they weigh on the shrunk link as
    they weigh on the real one."""
    m = Machine()
    if k == 1:
        return m
    return m.replace(
        guest_background_rate=m.guest_background_rate / k,
        guest_background_pages=max(1, m.guest_background_pages // k),
        device_state_bytes=max(4096, m.device_state_bytes // k),
    )


def _one(job: VmJob, spec: str, settings: Settings, rate: float, link: float) -> Point:
    """Simulate at ``rate`` imposed as the stream's cap on a link that is not slower."""
    s = dataclasses.replace(settings, capabilities=dict(settings.capabilities))
    s.max_bandwidth = rate
    k = shrink_factor(job.ram_bytes, rate)
    setup = Setup(job.ram_bytes, s, job.qemu_version, max(link, rate), [], None,
                  job.time_limit, None, k)  # fmt: skip
    ram, w, s2, link2, _ = shrunk(setup, parse_workload(spec))
    res = simulate(ram, w, s2, qemu_version=job.qemu_version, link_rate=link2,
                   time_limit=job.time_limit, stop_when_settled=True,
                   stop_after_passes=_give_up(s), machine=scaled_machine(k),
                   policy=job.policy, policy_ram_bytes=job.ram_bytes)  # fmt: skip
    o = res.outcome
    total = o.total_time_s if o.converged else None
    first = res.passes[1]["t"] if len(res.passes) > 1 else (o.total_time_s or job.time_limit)
    return Point(
        rate=rate,
        converged=bool(o.converged),
        first_pass_s=float(first),
        total_s=total,
        downtime_s=None if o.downtime_ms is None else o.downtime_ms / 1000,
        transferred=None if o.transferred_bytes is None else o.transferred_bytes * k,
    )


def _chain(job: VmJob, spec: str, settings: Settings, rates, counter: list[int]) -> list[Point]:
    """The grid, largest rate first; below a rate that does not converge, slower rates
    are not run (they do not converge either) and keep that point's first pass."""
    out: list[Point] = []
    link = rates[0]
    for r in rates:
        if out and not out[-1].converged:
            last = out[-1]
            # the first pass moves the same bytes, slower
            out.append(dataclasses.replace(
                last, rate=r, first_pass_s=last.first_pass_s * last.rate / r,
                downtime_s=None, transferred=None, simulated=False))  # fmt: skip
            continue
        counter[0] += 1
        out.append(_one(job, spec, settings, r, link))
    return out


def _all_converge(job: VmJob, settings: Settings, rate: float, counter: list[int]) -> bool:
    for spec in job.workloads:
        counter[0] += 1
        if not _one(job, spec, settings, rate, rate).converged:
            return False
    return True


def simulate_vm(job: VmJob) -> VmCurves:
    """Simulate one VM: every candidate, every plausible workload, along the rate grid.

    Candidates after the first two are tried only when the earlier ones leave some
    workload non-converging at the smallest rate (the planner takes the first that
    converges, so a later one would never be chosen)."""
    counter = [0]
    out = VmCurves(job.name)
    tuned_ok = False
    candidates = list(job.candidates)
    if job.tune is not None:
        asked = _ask_tune(job, out)
        if asked is not None:
            candidates.insert(1, asked)
    for i, (cname, settings, rates) in enumerate(candidates):
        if i >= 2 and tuned_ok:
            break
        chains = [_chain(job, spec, settings, rates, counter) for spec in job.workloads]
        out.curves[cname] = chains
        if i >= 1 and all(c[-1].converged for c in chains):
            tuned_ok = True
    tuned = [c for c in out.curves if c != "base"] or ["base"]
    top_ok = any(all(ch[0].converged for ch in out.curves[c]) for c in tuned)
    if not top_ok:
        # what would let it converge: a faster stream of its own, or a longer pause
        _, best, grid = next(c for c in candidates if c[0] == tuned[-1])
        top = grid[0]
        for m in NEED_RATE_STEPS:
            if _all_converge(job, best, top * m, counter):
                out.needs_rate = top * m
                break
        limit = best.downtime_limit or 0.3
        for m in NEED_DOWNTIME_STEPS:
            d = min(QEMU_MAX_DOWNTIME_LIMIT, limit * m)
            trial = dataclasses.replace(best, downtime_limit=d)
            if _all_converge(job, trial, top, counter):
                out.needs_downtime = d
                break
            if d >= QEMU_MAX_DOWNTIME_LIMIT:
                break
    out.simulations += counter[0]
    return out


def _ask_tune(job: VmJob, out: VmCurves):
    """The candidate ``tune``: ``migtune tune``'s recommendation for this VM at the rate
    it can expect (:func:`migtune.plan.sources.tune_recommendation`), on its rate grid."""
    from migtune.plan.sources import tune_recommendation

    ask = job.tune
    assert ask is not None
    found = tune_recommendation(job.ram_bytes, job.workloads[0], ask.platform,
                                ask.max_downtime, ask.expected_rate, job.qemu_version)  # fmt: skip
    if found is None:
        return None
    settings, label, commands, sims = found
    out.simulations += sims
    out.tuned, out.tuned_label, out.tuned_commands = settings, label, commands
    cap = (
        settings.max_bandwidth
        if settings.max_bandwidth and settings.max_bandwidth < 2**60
        else None
    )
    caps = [c for c in (cap, ask.stream_rate) if c]
    grid = rate_grid(ask.link, ask.floor_share, min(caps) if caps else None)
    return ("tune", settings, grid)


# ---- reading a curve at any rate -------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """One VM under one candidate, one statistic over the plausible set (min, median or
    max): its figures at each grid rate, ready for interpolation."""

    rates: tuple[float, ...]  # largest first
    first_bytes: tuple[float, ...]  # first-pass time x rate (the bytes it moves)
    rest_bytes: tuple[float, ...]  # (total - first pass) x rate; inf: does not converge
    downtime: tuple[float, ...]  # s (nan where it does not converge)

    @property
    def threshold(self) -> float | None:
        """The smallest grid rate at which it converges (None: at none)."""
        ok = [r for r, b in zip(self.rates, self.rest_bytes, strict=True) if math.isfinite(b)]
        return min(ok) if ok else None

    def converges_at(self, rate: float) -> bool:
        t = self.threshold
        return t is not None and rate >= t * (1 - 1e-9)

    def _interp(self, values: tuple[float, ...], rate: float) -> float:
        rs = self.rates
        if rate >= rs[0]:
            return values[0]
        if rate <= rs[-1]:
            return values[-1]
        for i in range(len(rs) - 1):
            hi, lo = rs[i], rs[i + 1]
            if lo <= rate <= hi:
                a, b = values[i], values[i + 1]
                if not (math.isfinite(a) and math.isfinite(b)):
                    return a if rate >= hi * (1 - 1e-9) else b
                f = (math.log(rate) - math.log(lo)) / (math.log(hi) - math.log(lo))
                return b + (a - b) * f
        return values[-1]

    def first_pass_time(self, rate: float) -> float:
        return self._interp(self.first_bytes, rate) / rate

    def rest_time(self, rate: float) -> float:
        """Seconds from the end of the first pass to completion at ``rate`` (inf: never)."""
        if not self.converges_at(rate):
            return math.inf
        return self._interp(self.rest_bytes, rate) / rate

    def downtime_at(self, rate: float) -> float:
        return self._interp(self.downtime, rate)


def _stat(values: list[float], which: str) -> float:
    vals = sorted(values)
    if which == "min":
        return vals[0]
    if which == "max":
        return vals[-1]
    return vals[len(vals) // 2]  # the upper median: the cautious one of two


def profile(chains: list[list[Point]], which: str) -> Profile:
    """Combine the plausible workloads' chains into one profile (``min``, ``median`` or
    ``max`` of each figure; a workload that does not converge counts as infinitely slow)."""
    rates = tuple(p.rate for p in chains[0])
    first, rest, down = [], [], []
    for i, r in enumerate(rates):
        pts = [c[i] for c in chains]
        first.append(_stat([p.first_pass_s * r for p in pts], which))
        rest.append(_stat([
            (p.total_s - p.first_pass_s) * r if p.converged and p.total_s is not None
            else math.inf for p in pts], which))  # fmt: skip
        dts = [p.downtime_s if p.converged and p.downtime_s is not None else math.inf
               for p in pts]  # fmt: skip
        d = _stat(dts, which)
        down.append(d if math.isfinite(d) else math.nan)
    rest = [max(0.0, b) for b in rest]
    return Profile(rates, tuple(first), tuple(rest), tuple(down))
