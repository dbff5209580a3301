"""Calibrate a simulation from an observed run (any format ``load_run`` reads).

What a log tells, and how it becomes simulator input (docs/qemu-migration.md §14.10):

* RAM: ``ram.total`` (or the management layer's VM-state size).
* Link: the settings' ``max-bandwidth`` if the log names it; the observed wire rate
  (``mbps`` or the slope of ``transferred``) becomes the link rate, so an uncapped
  run replays at the speed it really had.
* Zero pages: ``duplicate`` vs ``normal`` at the end of the first pass, or else the
  bytes the first pass cost against the RAM size.
* Dirtying: QEMU's ``dirty-pages-rate`` (distinct pages per second) and the dirty set
  left at each sync (``remaining`` right after ``dirty-sync-count`` moves) give the
  write rate and the working set; a short search on the write rate then fits the
  observed total time and bytes.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from migtune.errors import InputError
from migtune.model import Run, Settings
from migtune.outcome import Outcome, outcome_from_run
from migtune.sim.api import SimResult, simulate
from migtune.sim.machine import Machine
from migtune.workload import PAGE_SIZE, Workload

FIT_FACTORS = (0.6, 0.8, 1.0, 1.25, 1.6)


@dataclass
class Calibration:
    ram_bytes: int
    settings: Settings
    workload: Workload
    link_rate: float
    qemu_version: str
    time_limit: float
    observed: Outcome
    notes: list[str] = field(default_factory=list)
    replay: SimResult | None = None
    errors: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ram_bytes": self.ram_bytes,
            "link_rate": self.link_rate,
            "workload": self.workload.spec(),
            "qemu_version": self.qemu_version,
            "max_bandwidth": self.settings.max_bandwidth,
            "downtime_limit": self.settings.downtime_limit,
            "notes": self.notes,
            "observed": self.observed.to_dict(),
            "replay": self.replay.outcome.to_dict() if self.replay else None,
            "errors": self.errors,
        }


def rel_error(sim: float | None, real: float | None) -> float | None:
    if sim is None or real is None or real == 0:
        return None
    return (sim - real) / real


def compare(sim: Outcome, real: Outcome) -> dict[str, float | None]:
    return {
        "converged_match": float(sim.converged == real.converged),
        "total_time": rel_error(sim.total_time_s, real.total_time_s),
        "transferred": rel_error(sim.transferred_bytes, real.transferred_bytes),
        "passes": None
        if sim.passes is None or real.passes is None
        else float(sim.passes - real.passes),
        "downtime_ms": None
        if sim.downtime_ms is None or real.downtime_ms is None
        else sim.downtime_ms - real.downtime_ms,
    }


def _throughput(run: Run) -> float | None:
    """Observed wire rate (bytes/s): QEMU's per-window mbps while running, else the
    slope of ``transferred``, else the whole-migration average reported at the end, else
    the page rate."""
    vals = [s.throughput for s in run.samples if s.throughput and s.status != "completed"]
    if vals:
        return statistics.median(vals)
    pts = [(s.t, s.transferred) for s in run.samples if s.t is not None and s.transferred]
    if len(pts) >= 2 and pts[-1][0] > pts[0][0] and pts[-1][1] > pts[0][1]:
        return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
    vals = [s.throughput for s in run.samples if s.throughput]
    if vals:
        return vals[-1]
    # Proxmox prints pages-per-second x page size: counts zero pages, but it is a rate
    vals = [s.page_rate for s in run.samples if s.page_rate and s.status != "completed"]
    return statistics.median(vals) if vals else None


def _zero_pages(run: Run, ram: int) -> tuple[int, str]:
    """Zero pages of the guest (all RAM)."""
    pages = ram // PAGE_SIZE
    dup = next((s.duplicate for s in reversed(run.samples) if s.duplicate is not None), None)
    if dup is not None:
        return min(pages, dup), "zero pages from QEMU's duplicate counter"
    for s in run.samples:
        if s.transferred and s.remaining is not None and s.total and s.remaining < 0.1 * s.total:
            covered = 1 - s.remaining / s.total
            frac = min(1.0, s.transferred / max(1.0, covered * s.total))
            return int(pages * (1 - frac)), "zero pages from the bytes the first pass cost"
    last = run.last
    if run.status == "completed" and last and last.transferred and last.transferred < ram:
        return int(pages * (1 - last.transferred / ram)), "zero pages from bytes sent vs RAM"
    return 0, "no page counters: assumed no zero pages"


def _dirtying(run: Run, ram: int) -> tuple[float, int, str]:
    """(write rate bytes/s, working set bytes, note).

    QEMU's dirty-pages-rate counts distinct pages per rate period (about a pass), so a
    pass of T seconds re-dirties D = rate x T pages; the working set must hold more than
    that, and random writes at r pages/s over W pages dirty W(1 - exp(-rT/W)) of them.
    """
    rates = [s.dirty_rate for s in run.samples if s.dirty_rate and s.status != "completed"]
    after_sync, sync_times, prev = [], [], None
    for s in run.samples:
        if s.passes and prev is not None and s.passes > prev:
            if s.remaining is not None and s.status != "completed":
                after_sync.append(s.remaining)
            if s.t is not None:
                sync_times.append(s.t)
        if s.passes:
            prev = s.passes
    if not rates and not after_sync:
        return 0.0, 0, "no dirty-rate or pass data: modelled as an idle guest"
    last = run.last
    passes = max((s.passes or 0) for s in run.samples)
    span = (last.total_time or last.t or 0.0) if last else 0.0
    gaps = [b - a for a, b in zip(sync_times, sync_times[1:], strict=False) if b > a]
    # later passes: what the guest re-dirties in one pass (pass 2 also holds pass 1's)
    pass_time = statistics.median(gaps) if gaps else (span / passes if passes and span else 1.0)
    rate = statistics.median(rates) if rates else max(after_sync) / pass_time
    if len(after_sync) >= 2:
        dirty_set = statistics.median(after_sync[1:])
        how = "remaining right after the syncs"
    else:
        dirty_set = max([rate * pass_time, *after_sync])
        how = "dirty-pages-rate x pass time"
    ws = min(ram, max(PAGE_SIZE, int(1.25 * dirty_set)))
    # invert W(1 - exp(-rT/W)) = D; a dirty set as large as the RAM keeps the raw rate
    saturated = dirty_set >= ws
    write_rate = rate if saturated else -ws / pass_time * math.log(1 - dirty_set / ws)
    note = (
        f"working set {ws / 2**20:.0f} MiB from a dirty set of {dirty_set / 2**20:.0f} MiB per "
        f"~{pass_time:.1f} s pass ({how})"
    )
    return write_rate, ws, note


def calibrate(run: Run, *, fit: bool = True, machine: Machine | None = None) -> Calibration:
    """Estimate simulator inputs from a run and check how well they reproduce it."""
    if not run.samples:
        raise InputError("the log has no progress samples to calibrate from")
    ram = run.ram_bytes or max((s.total or 0) for s in run.samples)
    if not ram:
        raise InputError("the log does not say how much RAM the VM has")
    observed = outcome_from_run(run)
    notes: list[str] = []
    s = dataclasses.replace(run.settings, capabilities=dict(run.settings.capabilities))
    thr = _throughput(run)
    link = (machine or Machine()).link_rate
    if s.max_bandwidth is None:
        if thr:
            s.max_bandwidth = 0.0
            link = thr
            notes.append(
                f"bandwidth cap not in the log: link modelled at the observed {thr:.3g} B/s"
            )
        else:
            notes.append("neither cap nor throughput known: QEMU's default cap assumed")
    elif thr and s.max_bandwidth and thr < 0.8 * s.max_bandwidth:
        link = thr
        notes.append("the link was slower than the cap: link rate set to the observed rate")
    zero_pages, note = _zero_pages(run, ram)
    notes.append(note)
    rate, ws, note = _dirtying(run, ram)
    notes.append(note)
    ws = min(ws, ram - zero_pages * PAGE_SIZE) // PAGE_SIZE * PAGE_SIZE
    outside = max(1, ram - ws)
    zero = min(1.0, zero_pages * PAGE_SIZE / outside)
    if rate and ws:
        workload = Workload(ws=ws, rate=rate, pattern="random", zero=zero)
    else:
        workload = Workload(ws=0, rate=0.0, zero=zero)
    version = s.qemu_version or "10.0"
    if not s.qemu_version:
        notes.append("QEMU version not in the log: 10.0 assumed")
    span = observed.total_time_s or (run.last.t if run.last else None)
    if not span and thr and observed.transferred_bytes:
        span = observed.transferred_bytes / thr  # no clock in the log: time at that rate
    span = span or 600.0
    # a run that did not finish is replayed for as long as it was observed
    limit = span * (3.0 if observed.status == "completed" else 1.0)
    cal = Calibration(ram, s, workload, link, version, max(limit, 1.0), observed, notes)
    best = _replay(cal, workload)
    if fit and rate:
        for f in FIT_FACTORS:
            if f == 1.0:
                continue
            w = dataclasses.replace(workload, rate=rate * f)
            r = _replay(cal, w)
            if _score(r.outcome, observed) < _score(best.outcome, observed):
                best, cal.workload = r, w
        if cal.workload.rate != rate:
            cal.notes.append(f"write rate fitted to {cal.workload.rate:.3g} B/s")
    cal.replay = best
    cal.errors = compare(best.outcome, observed)
    return cal


def _replay(cal: Calibration, w: Workload) -> SimResult:
    return simulate(
        cal.ram_bytes,
        w,
        cal.settings,
        qemu_version=cal.qemu_version,
        link_rate=cal.link_rate,
        time_limit=cal.time_limit,
    )


def _score(sim: Outcome, real: Outcome) -> float:
    err = compare(sim, real)
    score = 0.0 if sim.converged == real.converged else 10.0
    for key in ("total_time", "transferred"):
        if err[key] is not None:
            score += abs(err[key])
    return score


def what_if(cal: Calibration, settings: Settings, **kw: Any) -> SimResult:
    """Replay the calibrated guest under other settings."""
    return simulate(
        cal.ram_bytes,
        cal.workload,
        settings,
        qemu_version=kw.pop("qemu_version", cal.qemu_version),
        link_rate=kw.pop("link_rate", cal.link_rate),
        time_limit=kw.pop("time_limit", max(cal.time_limit, 600.0)),
        **kw,
    )
