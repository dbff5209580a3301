"""Calibrate the simulator from an observed run (any format ``load_run`` reads).

``calibrate(run)`` learns the guest's workload from what the log shows
(:mod:`.evidence`), as a small *set* of plausible workloads that all reproduce the
observed outcome (:mod:`.fit`); ``what_if(cal, settings)`` simulates every member under
other settings and reports min / median / max (:mod:`.predict`).  ``tune`` can evaluate
candidate settings the same way: ``[what_if(cal, s) for s in candidates]``.

What each line of a log contributes is listed in ``docs/simulator.md``, "Calibration".
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from typing import Any

from migtune.model import Run, Settings
from migtune.outcome import Outcome
from migtune.sim.api import SimResult
from migtune.sim.calibrate import candidates
from migtune.sim.calibrate.evidence import Evidence, extract, nonzero_estimate, observed_outcome
from migtune.sim.calibrate.fit import (
    BYTES_RANGE,
    CPU_RANGE,
    CPU_SHARES,
    PLAUSIBLE_MARGIN,
    Scored,
    Setup,
    bytes_per_write,
    evaluate,
    refine,
    sample_spacing,
    search_scale,
    with_zero,
)
from migtune.sim.machine import Machine
from migtune.units import format_bytes, format_duration, format_rate, parse_duration
from migtune.workload import Workload

__all__ = ["Calibration", "calibrate", "compare", "rel_error", "what_if", "Prediction"]

MAX_BASES = 3  # distinct (pattern, working set, rate) fits kept in the set


@dataclass
class Calibration:
    ram_bytes: int
    settings: Settings
    workload: Workload  # the best fit (first member of ``plausible``)
    link_rate: float
    qemu_version: str
    time_limit: float  # how long the replay ran (the observed time for unfinished runs)
    observed: Outcome
    notes: list[str] = field(default_factory=list)
    replay: SimResult | None = None
    errors: dict[str, float | None] = field(default_factory=dict)
    plausible: list[Workload] = field(default_factory=list)
    evidence: Evidence | None = None
    replay_class_ok: bool = True
    schedule: list[tuple[float, str]] = field(default_factory=list)
    postcopy_after: float | None = None
    observed_duration: float | None = None
    machine: Machine | None = None
    # seconds between simulated samples, as the log was sampled (None: the machine's)
    sample_interval: float | None = None

    @property
    def low_confidence(self) -> bool:
        """The replay of the unchanged settings did not reproduce the observed outcome."""
        return not self.replay_class_ok

    def inferred(self) -> dict[str, Any]:
        """Ranges over the plausible set (bytes, bytes/s, shares)."""
        ws = [w.ws for w in self.plausible]
        rate = [w.rate for w in self.plausible if w.rate is not None]
        cpu = [w.cpu for w in self.plausible if w.cpu is not None]
        return {
            "working_set_bytes": [min(ws), max(ws)] if ws else None,
            "write_rate_bytes_per_s": [min(rate), max(rate)] if rate else None,
            "patterns": sorted({w.pattern for w in self.plausible if not w.idle}),
            "bytes_per_write": sorted({w.bytes_per_write for w in self.plausible}),
            "throttle_cpu_share": [min(cpu), max(cpu)] if cpu else None,
        }

    def describe_inferred(self) -> str:
        """One line with units, e.g. ``ws 57.5-230 MiB, writes 40.0-52.1 MiB/s, random``."""
        if all(w.idle for w in self.plausible):
            return "an idle guest (no working set)"
        ws = [w.ws for w in self.plausible if not w.idle]
        rate = [w.rate or 0.0 for w in self.plausible if not w.idle]
        parts = [
            f"ws={_span(ws, format_bytes)}",
            f"writes {_span(rate, format_rate)}",
            "/".join(sorted({w.pattern for w in self.plausible if not w.idle})),
            f"{_span([w.bytes_per_write for w in self.plausible], lambda b: f'{b:.0f}')}"
            " bytes per write",
        ]
        cpu = [w.cpu for w in self.plausible if w.cpu is not None]
        if cpu:
            parts.append(
                f"writes need {_span(cpu, lambda c: f'{c:.0%}')} of a vCPU (throttle response)"
            )
        return ", ".join(parts)

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
            "plausible": [w.spec() for w in self.plausible],
            "inferred": self.inferred(),
            "replay_class_ok": self.replay_class_ok,
            "low_confidence": self.low_confidence,
            "observed_duration_s": self.observed_duration,
            "setting_changes": [{"t": t, "set": a} for t, a in self.schedule],
        }


def _span(vals: list[float], fmt) -> str:
    lo, hi = min(vals), max(vals)
    return fmt(lo) if hi <= lo * 1.02 else f"{fmt(lo)}-{fmt(hi)}"


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


def _link(ev: Evidence, s: Settings, machine: Machine | None, notes: list[str]) -> float:
    link = (machine or Machine()).link_rate
    thr = ev.wire_rate
    unlimited = s.max_bandwidth is not None and (s.max_bandwidth == 0 or s.max_bandwidth >= 2**60)
    if s.max_bandwidth is None or unlimited or (thr and s.max_bandwidth > 8 * thr):
        if thr:
            if s.max_bandwidth is None:
                s.max_bandwidth = 0.0
            notes.append(
                f"link: the observed {format_rate(thr)} (the cap, if any, was not reached)"
            )
            return thr
        notes.append("link: neither cap nor throughput in the log: QEMU's default cap assumed")
        return link
    if thr and thr < 0.8 * s.max_bandwidth:
        notes.append(
            f"link: the observed {format_rate(thr)}, slower than the "
            f"{format_rate(s.max_bandwidth)} cap"
        )
        return thr
    notes.append(f"link: the {format_rate(s.max_bandwidth)} cap")
    return link


def calibrate(
    run: Run,
    *,
    fit: bool = True,
    machine: Machine | None = None,
    full_replay: bool = False,
    xbzrle_pricing: str = "statistics",
) -> Calibration:
    """Learn a set of plausible workloads from a run; replay the unchanged settings.

    Guests above 2 GiB are fitted and replayed shrunk (bytes scaled back);
    ``full_replay`` replays the best fit at full size as well (slower).
    ``xbzrle_pricing`` as :func:`migtune.sim.simulate` (``"pages"``: every replay priced
    page by page, the reference for the statistical pricing)."""
    ev = extract(run)
    notes: list[str] = []
    s = dataclasses.replace(run.settings, capabilities=dict(run.settings.capabilities))
    version = s.qemu_version or "10.0"
    if not s.qemu_version:
        notes.append("QEMU version not in the log: 10.0 assumed")
    if ev.xbzrle is not None and (ev.xbzrle.pages or ev.xbzrle.bytes):
        if not s.capabilities.get("xbzrle"):
            s.capabilities["xbzrle"] = True  # the log shows XBZRLE at work
            notes.append("XBZRLE on: the log shows encoded pages")
        if ev.xbzrle.cache_size and not s.xbzrle_cache_size:
            s.xbzrle_cache_size = ev.xbzrle.cache_size
    if (
        run.format == "proxmox"
        and not run.settings.capabilities
        and s.xbzrle_cache_size
        and not s.capabilities.get("xbzrle")
    ):
        # qemu-server logs "migration cachesize" when it sets the XBZRLE cache, which
        # it does with XBZRLE on (docs/platforms.md, section 1.7): a log without the
        # capabilities line but with the cache line migrated with XBZRLE
        s.capabilities["xbzrle"] = True
        notes.append("XBZRLE on: the log shows Proxmox setting its cache size")
    link = _link(ev, s, machine, notes)
    observed = observed_outcome(run)
    first = ev.progress[0] if ev.progress else None
    if not ev.start_known and first and first[1] and link:
        # an excerpt: the log begins mid-migration, after what it shows as sent
        ev.shift(max(0.0, first[1] / link - first[0]))
        ev.duration_how = (
            "the log's clock plus the bytes sent before its first line at the link rate"
        )
    duration = ev.duration
    if duration is None and ev.transferred and link:
        duration = ev.transferred / link  # no clock in the log: the time at the link rate
        ev.duration_how = "bytes sent at the link rate (no clock in the log)"
    duration = duration or 600.0
    ev.duration = duration
    if observed.total_time_s is None:
        observed = dataclasses.replace(observed, total_time_s=duration)
    if ev.transferred and observed.transferred_bytes is None:
        observed = dataclasses.replace(observed, transferred_bytes=ev.transferred)
    notes.append(
        f"observed: {'converged' if ev.converged else ev.status} after "
        f"{format_duration(duration)} (from {ev.duration_how})"
    )
    nonzero, how = nonzero_estimate(ev)
    notes.append(f"non-zero memory {format_bytes(nonzero)} ({how})")
    if ev.schedule:
        notes.append(
            "setting changes replayed at their times: "
            + ", ".join(f"{a} at {t:.0f} s" for t, a in ev.schedule[:6])
            + (" ..." if len(ev.schedule) > 6 else "")
        )
    limit = duration if not ev.converged else max(2.0 * duration, duration + 5.0)
    k = search_scale(ev.ram)
    spacing = sample_spacing(ev)
    setup = Setup(
        ev.ram, s, version, link, ev.schedule, ev.postcopy_at, limit, machine, k, spacing,
        xbzrle_pricing,
    )  # fmt: skip
    if k > 1:
        notes.append(
            f"fitted on a guest {k} times smaller with the same pass times (bytes scaled back)"
            + ("; the replay at full size" if full_replay else "")
        )
    final_limit = s.downtime_limit
    for _, a in ev.schedule:
        if a.startswith("downtime-limit="):
            final_limit = parse_duration(a.split("=", 1)[1])
    seeds, seed_how = candidates.seeds(ev, link, nonzero, final_limit)
    notes.append(f"workload fitted to {seed_how}")
    best, cache, cpu_known, fit_notes = _fit(setup, ev, seeds, fit)
    caps_known = bool(run.settings.capabilities)
    if not best.class_ok and not caps_known and ev.converged:
        # the log does not show the capabilities: a run that converged where no workload
        # converges under QEMU's defaults had auto-converge on (the one capability that
        # leaves no counter of its own in a compact snapshot)
        s2 = dataclasses.replace(s, capabilities={**s.capabilities, "auto-converge": True})
        setup2 = dataclasses.replace(setup, settings=s2)
        alt = _fit(setup2, ev, seeds, fit)
        if alt[0].class_ok:
            best, cache, cpu_known, fit_notes = alt
            s, setup = s2, setup2
            notes.append(
                "capabilities not in the log: auto-converge assumed on (with QEMU's "
                "defaults no workload converges as the log did)"
            )
    notes.extend(fit_notes)
    plausible = _plausible(best, cache, ev, cpu_known)
    if k > 1 and full_replay:
        best = evaluate(setup.full(), best.workload, ev, {})
    elif k > 1:
        best.sim.outcome = _scaled_outcome(best.sim.outcome, k)
    cal = Calibration(
        ram_bytes=ev.ram,
        settings=s,
        workload=plausible[0],
        link_rate=link,
        qemu_version=version,
        time_limit=limit,
        observed=observed,
        notes=notes,
        replay=best.sim,
        errors=compare(best.sim.outcome, observed),
        plausible=plausible,
        evidence=ev,
        replay_class_ok=best.class_ok,
        schedule=list(ev.schedule),
        postcopy_after=ev.postcopy_at,
        observed_duration=duration,
        machine=machine,
        sample_interval=spacing,
    )
    ro = best.sim.outcome
    if ev.status == "failed" and best.class_ok and ro.converged:
        # a failed run's class is "not completed by the failure": the replay is compared
        # there, and what it would have done had the run not been stopped is said
        cal.notes.append(
            f"the run failed after {format_duration(duration)}; the replay had not completed "
            f"by then (it would have completed after {format_duration(ro.total_time_s or 0)})"
        )
    if not best.class_ok:
        cal.notes.append(
            "LOW CONFIDENCE: no workload tried reproduces the observed outcome "
            f"({'converged' if ev.converged else 'not converged by ' + format_duration(duration)})"
            "; every prediction from this log is uncertain"
        )
    return cal


def _fit(setup: Setup, ev: Evidence, seeds, fit: bool):
    """Score the seeds under ``setup``, refine each pattern's best, fit the throttle
    response: (best, every candidate scored, throttle response fitted, notes)."""
    s = setup.settings
    fit_notes: list[str] = []
    throttle_on = bool(s.capabilities.get("auto-converge"))
    tpass = ev.pass_time()
    cache: dict[str, Scored] = {}
    scored = []
    for w, nz in seeds:
        w = with_zero(w, ev.ram, nz)
        b = bytes_per_write(ev, w, tpass)
        if b:
            w = dataclasses.replace(w, bytes_per_write=b)
        if throttle_on and not w.idle:
            w = dataclasses.replace(w, cpu=0.5)
        scored.append(evaluate(setup, w, ev, cache))
    best = min(scored, key=lambda x: x.score)
    if fit:
        # each pattern's best fit is refined: patterns can explain the same log
        # equally well and disagree under other settings (they stay in the set)
        heads = {}
        for c in sorted(scored, key=lambda x: x.score):
            if c.class_ok or not best.class_ok:  # a wrong outcome is not refined
                heads.setdefault(c.workload.pattern, c)
        refined = [refine(c, setup, ev, cache) for c in heads.values()]
        best = min(refined, key=lambda x: x.score)
    cpu_known = False
    if throttle_on and not best.workload.idle:
        trials = [
            evaluate(setup, dataclasses.replace(best.workload, cpu=c), ev, cache)
            for c in CPU_SHARES
        ]
        best = min(trials, key=lambda x: x.score)
        cpu_known = True
        src = "throttle and dirty-rate samples" if ev.max_throttle else "how the run ended"
        fit_notes.append(f"throttle response fitted to {src}")
    return best, cache, cpu_known, fit_notes


def _plausible(best: Scored, cache: dict[str, Scored], ev: Evidence, cpu_known: bool):
    """Up to MAX_BASES fits within the margin (spread over working-set sizes), each in
    the variants the log cannot tell apart (throttle response, bytes per write)."""
    ok = [
        c
        for c in cache.values()
        if c.class_ok == best.class_ok and c.score <= best.score + PLAUSIBLE_MARGIN
    ]
    bases = [best.workload]
    if cpu_known:
        # throttle responses that fit equally well stay in the set
        cpus = sorted({c.workload.cpu for c in ok if _same_but_cpu(c.workload, best.workload)})
    else:
        cpus = []
    others = sorted(
        (c for c in ok if not _same_but_cpu(c.workload, best.workload)), key=lambda c: c.score
    )
    # the best of each other pattern first, then the extremes of the working set
    for c in others:
        if c.workload.pattern not in {b.pattern for b in bases}:
            bases.append(c.workload)
    if others:
        by_ws = sorted(others, key=lambda c: c.workload.ws)
        bases += [by_ws[0].workload, by_ws[-1].workload]
    seen: list[Workload] = []
    for b in bases:
        if all(not _same_but_cpu(b, x) for x in seen):
            seen.append(b)
    bases = seen[:MAX_BASES]
    xb_known = ev.xbzrle is not None and ev.encoded_per_page() is not None
    xb_known = xb_known or ev.overflow_share() is not None
    out: list[Workload] = []
    for b in bases:
        if b.idle:
            variants = [b]
        elif cpu_known:
            variants = [dataclasses.replace(b, cpu=c) for c in (cpus or [b.cpu])]
            if not xb_known:
                variants = [
                    dataclasses.replace(v, bytes_per_write=BYTES_RANGE[1]) for v in variants
                ]
        elif xb_known:
            variants = [dataclasses.replace(b, cpu=c) for c in CPU_RANGE]
        else:
            variants = [
                dataclasses.replace(b, cpu=c, bytes_per_write=n)
                for c, n in zip(CPU_RANGE, BYTES_RANGE, strict=True)
            ]
        out.extend(variants)
    # the best fit first, then the others; at most 9
    mid = [w for w in out if w.ws == best.workload.ws and w.rate == best.workload.rate]
    mid = mid or out[:1]
    mid.sort(key=lambda w: abs((w.cpu or 0.5) - 0.5) + abs(w.bytes_per_write - BYTES_RANGE[1]))
    rest = [w for w in out if w not in mid]
    return (mid + rest)[:9]


def _same_but_cpu(a: Workload, b: Workload) -> bool:
    return dataclasses.replace(a, cpu=None) == dataclasses.replace(b, cpu=None)


def median_of(vals: list[float]) -> float:
    return float(statistics.median(vals))


from migtune.sim.calibrate.predict import Prediction, _scaled_outcome, what_if  # noqa: E402
