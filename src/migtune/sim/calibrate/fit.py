"""Fit workloads to a log: simulate the seeds under the log's own settings, keep those
that reproduce what was observed.

A candidate is simulated exactly as the run happened (settings, setting changes at
their times, the post-copy switch, cancelled at the observed time when the run did not
finish) and the simulated run is read back through the same :func:`extract` as the
log, so QEMU's own counters are compared with QEMU's own counters.  The score adds:

* 10 when the outcome class differs (converged, or still running at the observed time);
* |log error| of the total time (converged runs) and of the bytes sent;
* half the |log error| of the pass count, of the dirty set left after each sync and
  of QEMU's dirty-page rate, where the log has them;
* the XBZRLE overflow share and bytes per encoded page, where the log has them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from migtune.model import Settings
from migtune.sim.api import SimResult, simulate
from migtune.sim.calibrate.evidence import Evidence, extract
from migtune.sim.machine import Machine
from migtune.workload import PAGE_SIZE, Workload

CLASS_PENALTY = 10.0
# Members of the plausible set score within this of the best (a 10 % error in one figure).
PLAUSIBLE_MARGIN = 0.12
# The throttle responses tried (share of its vCPU the guest's writes need).
CPU_SHARES = (0.0, 0.25, 0.5, 1.0)
# Where the log cannot tell: what the plausible set spans (low, middle, high).
CPU_RANGE = (0.25, 0.5, 1.0)
BYTES_RANGE = (16, 256, 4096)


@dataclass
class Setup:
    """How every candidate is simulated: the run's own conditions."""

    ram: int
    settings: Settings
    qemu_version: str
    link: float
    schedule: list[tuple[float, str]]
    postcopy_after: float | None
    limit: float  # cancel the replay here (the observed time when the run did not finish)
    machine: Machine | None = None
    # The search runs on a guest shrunk by this factor: RAM, working set, write rate,
    # link, cap and XBZRLE cache all divided, so every pass takes as long as at full
    # size (pre-copy depends on their ratios) at a fraction of the pages.  The best
    # fit is then replayed at full size (see ``calibrate``).
    scale: int = 1
    # seconds between the simulation's query-migrate samples: as the log was sampled
    # (read through the same ``extract``), never below the lab's 0.5 s (None: default)
    sample_interval: float | None = None
    # how XBZRLE is priced (simulate's ``xbzrle_pricing``: auto, statistics, pages)
    xbzrle_pricing: str = "auto"

    def full(self) -> Setup:
        return dataclasses.replace(self, scale=1)


SEARCH_RAM = 2 * 1024**3  # search on guests of at most this much RAM


def search_scale(ram: int) -> int:
    return max(1, math.ceil(ram / SEARCH_RAM))


def _pow2_floor(n: float) -> int:
    return 1 << max(12, int(math.log2(max(1.0, n))))


def shrunk(setup: Setup, w: Workload) -> tuple[int, Workload, Settings, float, list]:
    k = setup.scale
    if k == 1:
        return setup.ram, w, setup.settings, setup.link, list(setup.schedule)
    s = dataclasses.replace(setup.settings, capabilities=dict(setup.settings.capabilities))
    if s.max_bandwidth and s.max_bandwidth < 2**60:
        s.max_bandwidth = s.max_bandwidth / k
    if s.avail_switchover_bandwidth:
        s.avail_switchover_bandwidth = s.avail_switchover_bandwidth / k
    if s.xbzrle_cache_size:
        s.xbzrle_cache_size = _pow2_floor(s.xbzrle_cache_size / k)
    sched = []
    for t, a in setup.schedule:
        name, _, value = a.partition("=")
        sched.append((t, f"max-bandwidth={float(value) / k:.0f}" if name == "max-bandwidth" else a))
    ws = max(PAGE_SIZE, w.ws // k // PAGE_SIZE * PAGE_SIZE) if w.ws else 0
    rate = None if w.rate is None else w.rate / k
    small = dataclasses.replace(w, ws=ws, rate=rate)
    return setup.ram // k // PAGE_SIZE * PAGE_SIZE, small, s, setup.link / k, sched


@dataclass
class Scored:
    workload: Workload
    sim: SimResult
    evidence: Evidence
    score: float
    class_ok: bool
    ram: int = 0  # the full-size guest's RAM


def replay(setup: Setup, w: Workload, *, time_limit: float | None = None) -> SimResult:
    pc = setup.postcopy_after if setup.settings.capabilities.get("postcopy-ram") else None
    ram, w, settings, link, schedule = shrunk(setup, w)
    return simulate(
        ram,
        w,
        settings,
        qemu_version=setup.qemu_version,
        link_rate=link,
        time_limit=time_limit or setup.limit,
        schedule=schedule or None,
        postcopy_after=pc,
        machine=setup.machine,
        sample_interval=setup.sample_interval,
        xbzrle_pricing=setup.xbzrle_pricing,
    )


# the coarsest sampling a simulation gets (a log's lines every minute still get 5 s)
SAMPLE_MAX = 5.0


def sample_spacing(ev: Evidence) -> float | None:
    """How often the log sampled the migration (median seconds between progress lines),
    within [0.5 s, SAMPLE_MAX]; None for a log with fewer than three lines."""
    times = [t for t, _ in ev.progress]
    if len(times) < 3:
        return None
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False) if b > a)
    if not gaps:
        return None
    return min(SAMPLE_MAX, max(0.5, gaps[len(gaps) // 2]))


def _log_err(sim: float | None, real: float | None) -> float | None:
    if sim is None or real is None or sim <= 0 or real <= 0:
        return None
    return math.log(sim / real)


def score(sim: SimResult, sev: Evidence, ev: Evidence, k: int = 1) -> tuple[float, bool]:
    """(score, class right) of one simulated run against the observed evidence (``k``:
    the simulated guest was shrunk k times, so its byte figures are scaled back)."""
    o = sim.outcome
    if ev.converged:
        class_ok = o.converged
    else:  # still running (or cancelled) at the observed time: not finished before it
        class_ok = not o.converged or (
            ev.duration is not None and (o.total_time_s or 0) > ev.duration
        )
    total = 0.0 if class_ok else CLASS_PENALTY

    def up(v: float | None) -> float | None:
        return None if v is None else v * k

    terms: list[tuple[float, float | None]] = [
        (1.0, _log_err(up(o.transferred_bytes), ev.transferred))
    ]
    if ev.converged:
        terms.append((1.0, _log_err(o.total_time_s, ev.duration)))
    if ev.passes and o.passes:
        terms.append((0.5, _log_err(o.passes + 1, ev.passes + 1)))
    terms.append((0.5, _log_err(up(sev.dirty_set()), ev.dirty_set())))
    terms.append((0.5, _log_err(up(sev.dirty_rate()), ev.dirty_rate())))
    share_real, share_sim = ev.overflow_share(), sev.overflow_share()
    if share_real is not None:
        terms.append((1.0, abs((share_sim or 0.0) - share_real)))
    miss_real = ev.xbzrle.cache_miss_rate if ev.xbzrle else None
    if miss_real is not None and ev.encoded_per_page() is not None:
        miss_sim = sev.xbzrle.cache_miss_rate if sev.xbzrle else None
        terms.append((1.0, abs((miss_sim or 0.0) - miss_real)))
    enc = _log_err(sev.encoded_per_page(), ev.encoded_per_page())
    if enc is not None:
        terms.append((0.3, enc))
    for weight, err in terms:
        if err is not None:
            total += weight * abs(err)
    return total, class_ok


def evaluate(setup: Setup, w: Workload, ev: Evidence, cache: dict[str, Scored]) -> Scored:
    key = w.spec()
    if key not in cache:
        sim = replay(setup, w)
        sev = extract(sim.run)
        s, ok = score(sim, sev, ev, setup.scale)
        cache[key] = Scored(w, sim, sev, s, ok, setup.ram)
    return cache[key]


def bytes_per_write(ev: Evidence, w: Workload, tpass: float | None) -> int | None:
    """Bytes a write changes, from XBZRLE's figures: a page that overflows had more changed
    than the encoding can hold (whole-page writes); otherwise the bytes per encoded page,
    less ~3 bytes of run headers per write, spread over the writes a page gets per pass."""
    share = ev.overflow_share()
    if share is not None and share > 0.5:
        return PAGE_SIZE
    enc = ev.encoded_per_page()
    if enc is None:
        return None
    writes = 1.0
    if w.rate and w.ws and tpass:
        from migtune.sim.calibrate.candidates import dirtied

        d = dirtied(w.pattern, w.ws, w.rate, tpass)
        writes = max(1.0, (w.rate * tpass / PAGE_SIZE) / max(1.0, d / PAGE_SIZE))
    return int(min(PAGE_SIZE, max(1, round(enc / writes - 3))))


def with_zero(w: Workload, ram: int, nonzero: int) -> Workload:
    """Zero fraction of the RAM outside the working set, keeping the non-zero total."""
    outside = max(1, ram - w.ws)
    static = max(0, nonzero - w.ws)
    return dataclasses.replace(w, zero=max(0.0, min(1.0, 1.0 - static / outside)))


def refine(
    best: Scored, setup: Setup, ev: Evidence, cache: dict[str, Scored], rounds: int = 2
) -> Scored:
    """Coordinate steps on the write rate and the working set while the score drops."""
    if best.workload.idle:
        return best
    for _ in range(rounds):
        improved = False
        w = best.workload
        trials = [dataclasses.replace(w, rate=w.rate * f) for f in (0.85, 1.18) if w.rate]
        trials += [
            dataclasses.replace(w, ws=int(w.ws * f) // PAGE_SIZE * PAGE_SIZE)
            for f in (0.8, 1.25)
            if int(w.ws * f) <= _nonzero(best)
        ]
        for t in trials:
            t = with_zero(t, setup.ram, _nonzero(best))
            s = evaluate(setup, t, ev, cache)
            if s.score < best.score - 1e-3:
                best, improved = s, True
        if not improved:
            break
    return best


def _nonzero(s: Scored) -> int:
    """The non-zero bytes a scored candidate was given (kept when its ws changes)."""
    w = s.workload
    outside = s.ram - w.ws
    return int(w.ws + outside * (1 - w.zero))
