"""Diagnose a migration run: findings with evidence (numbers) and recommendations.

Each rule is one function that reads :class:`Metrics` (and the run for its settings and
events) and returns a :class:`Finding` or ``None``.  The heuristics follow
docs/platforms.md §1.10 and §8 and docs/qemu-migration.md §13; their thresholds are
named constants so a reader can see exactly when a finding fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migtune.analysis import failures
from migtune.analysis import recommend as rec
from migtune.analysis.downtime import downtime_increased, downtime_over_limit, limit_in_force
from migtune.analysis.findings import Finding
from migtune.analysis.metrics import Metrics, compute
from migtune.analysis.rates import (
    SAFETY,
    bandwidth_capped,
    cap_hit,
    link_bound,
    r1,
    ssh_tunnel,
    stalled,
)
from migtune.model import Run
from migtune.units import MiB, format_bytes, format_duration, format_rate

PAGE_SIZE = 4096

NOT_CONVERGING_RATIO = 1.0  # dirty >= send: pre-copy cannot finish on its own
NEAR_CONVERGING_RATIO = 0.8  # dirty close to send: passes shrink very slowly
# More sent than one pass explains (RAM less the zero pages, which cost ~nothing) by this
# margin: pages were sent again.  Page headers and rounding stay well inside 5 %.
RESEND_MARGIN = 0.05
RESEND_WARNING = 1.5  # sent / RAM above this: much of the traffic was re-sends
HIGH_THROTTLE_PCT = 50.0  # auto-converge holds the vCPUs asleep at least half the time
QEMU_MAX_CPU_THROTTLE = 99  # the highest max-cpu-throttle QEMU accepts (and its default)
XBZRLE_MISS_HIGH = 0.90
XBZRLE_OVERFLOW_MANY = 1000
XBZRLE_OVERFLOW_SHARE = 0.10  # overflows per cache hit above which XBZRLE is mostly waste
ZERO_SHARE_HIGH = 0.5
SLOW_TARGET_START_S = 10.0
# Beyond this a longer stop-and-copy is an outage, not a tuning knob: offer other remedies.
MAX_SENSIBLE_DOWNTIME = 30.0


@dataclass(slots=True)
class Diagnosis:
    format: str
    status: str  # completed | failed | cancelled | active
    metrics: Metrics
    findings: list[Finding] = field(default_factory=list)
    partial: bool = False
    warnings: list[str] = field(default_factory=list)
    vm: str | None = None
    target: str | None = None

    def ids(self) -> list[str]:
        return [f.id for f in self.findings]

    def get(self, finding_id: str) -> Finding | None:
        return next((f for f in self.findings if f.id == finding_id), None)


def contract_status(run: Run) -> str:
    return run.status if run.status in ("completed", "failed", "cancelled") else "active"


def diagnose(run: Run, *, predict: bool = False) -> Diagnosis:
    """Findings and recommendations; with ``predict`` each recommendation the simulator
    can model gets its predicted effect (calibrating the workload from the run first,
    which takes seconds) and each finding's remedies are ordered by it."""
    m = compute(run)
    tgt = rec.target_of(run)
    d = Diagnosis(
        format=run.format,
        status=contract_status(run),
        metrics=m,
        partial=run.partial,
        warnings=list(run.warnings),
        vm=run.vm,
        target=run.target,
    )
    if run.status == "unknown":
        d.warnings.append("the log does not show how the migration ended; analysed as still active")
    errors = failures.error_text(run)
    machine = failures.machine_type(run, tgt, errors)
    device = failures.device_state(run, errors)
    converging = not_converging(run, m, tgt)
    rules = [
        failures.failed(run, m, machine, device),
        machine,
        device,
        failures.cancelled(run, m),
        converging,
        resending(run, m),
        bandwidth_capped(run, m, tgt),
        link_bound(run, m, tgt),
        ssh_tunnel(run, m, tgt),
        stalled(run, m, tgt),
        xbzrle_cache_too_small(run, m, tgt),
        xbzrle_overflow(m, tgt),
        downtime_over_limit(run, m, tgt),
        downtime_increased(run, m, tgt),
        zero_pages(m),
        slow_target_start(m),
    ]
    rules.append(heavy_throttling(run, m, tgt, converging))
    d.findings = [f for f in rules if f is not None]
    # Never advise what the run already had (auto-converge on, a cap already lifted, ...).
    started = run.status == "postcopy-active" or any(
        s.status == "postcopy-active" for s in run.samples
    )
    initial_limit = run.settings.downtime_limit
    if initial_limit is None:
        initial_limit = m.downtime_limit_s
    for f in d.findings:
        f.recommendations = rec.respect_settings(
            f.recommendations, run.settings, initial_limit, tgt, postcopy_started=started
        )
    if d.status == "completed" and not any(f.severity != "info" for f in d.findings):
        d.findings.insert(0, healthy(m))
    order = {"error": 0, "warning": 1, "info": 2}
    d.findings.sort(key=lambda f: order.get(f.severity, 3))
    if predict and run.samples:
        from migtune.analysis.tune.effects import predict_effects

        predict_effects(run, d)
    return d


def not_converging(run: Run, m: Metrics, tgt: rec.Target) -> Finding | None:
    dirty = m.dirty_rate
    send = m.throughput
    basis = "real throughput"
    if dirty is None:
        return None
    if send is None and m.page_rate_max:
        # The per-line rate counts zero pages, so it is an upper bound of the real rate.
        send, basis = m.page_rate_max, "per-line rate (an upper bound: it counts zero pages)"
    if not send:
        return None
    ratio = dirty / send
    if ratio < NEAR_CONVERGING_RATIO:
        return None
    finished = run.status == "completed"
    severity = "warning" if finished or ratio < NOT_CONVERGING_RATIO else "error"
    need_bw = dirty * SAFETY
    limit, _ = limit_in_force(run, m)
    ev = {
        "dirty_rate_bytes_per_s": r1(dirty),
        "throughput_bytes_per_s": r1(send),
        "throughput_basis": basis,
        "dirty_to_throughput_ratio": round(ratio, 3),
        "needed_bandwidth_bytes_per_s": r1(need_bw),
        "remaining_bytes": m.remaining_bytes,
        "passes": m.passes,
        "downtime_limit_s": limit,
        # What it would take to send the current remaining within the current limit.
        "bandwidth_for_limit_bytes_per_s": r1(m.remaining_bytes / limit)
        if m.remaining_bytes and limit
        else None,
    }
    needed_dt = m.needed_downtime_s
    if m.expected_downtime_s is not None:
        ev["expected_downtime_s"] = m.expected_downtime_s
        needed_dt = max(needed_dt or 0.0, m.expected_downtime_s)
    ev["needed_downtime_limit_s"] = r1(needed_dt, 3)
    recs = []
    if needed_dt and needed_dt <= MAX_SENSIBLE_DOWNTIME:
        recs.append(rec.downtime_limit(needed_dt, tgt, proxmox_autoraise=run.format == "proxmox"))
    if cap_hit(run, m) is not None or (m.max_bandwidth and m.max_bandwidth < need_bw):
        # A setting, not the link, holds the rate down: raise it before buying a network.
        link = rec.bandwidth(need_bw, tgt, "the cap is below the dirty rate")
    else:
        link = rec.faster_network(tgt, "the link must out-run the dirty rate", need_bw)
    throttled = _throttle(run, m, tgt)
    autoconverge_on = bool(run.settings.capabilities.get("auto-converge"))
    if throttled is None:
        recs += [link, rec.auto_converge(tgt), rec.postcopy(tgt)]
        throttled_text = ""
        if autoconverge_on:
            ev["max_throttle_pct"] = m.throttle_max_pct
    else:
        # Auto-converge is on and already holds the guest back hard: the next steps are a
        # higher ceiling (or faster steps), post-copy, then a faster link.
        ev.update(throttled.evidence)
        recs += [*throttled.recommendations, rec.postcopy(tgt), link]
        throttled_text = f" even with {throttled.summary}"
    recs += [rec.multifd(tgt), rec.throttle_note(tgt)]
    if throttled is not None:
        slow_down = "or let it run on the target (post-copy). " + throttled.detail
    elif autoconverge_on:
        slow_down = "or let it run on the target (post-copy). Auto-converge was already on" + (
            " (the log does not show how hard it throttled)."
            if m.throttle_max_pct is None
            else f" and throttled the vCPUs to {m.throttle_max_pct:.0f}%."
        )
    else:
        slow_down = (
            "or slow the guest down (auto-converge) or let it run on the target (post-copy)."
        )
    state = "was dirtying" if finished else "dirties"
    verdict = (
        "it finished only because the stop-and-copy was allowed to grow"
        if finished
        else "pre-copy cannot finish on its own"
        if ratio >= NOT_CONVERGING_RATIO
        else "each pass shrinks only slowly"
    )
    return Finding(
        id="not-converging",
        severity=severity,
        summary=(
            f"the guest {state} memory at {format_rate(dirty)}, {ratio:.2f}x the "
            f"{format_rate(send)} the link sends{throttled_text}: {verdict}"
        ),
        evidence=ev,
        recommendations=recs,
        detail=(
            f"To converge, send faster than the guest writes (at least {format_rate(need_bw)}), "
            + (
                f"allow a {format_duration(rec.nice_seconds(needed_dt))} stop-and-copy, "
                if needed_dt and needed_dt <= MAX_SENSIBLE_DOWNTIME
                else ""
            )
            + slow_down
        ),
    )


def _throttle(run: Run, m: Metrics, tgt: rec.Target | None = None) -> Finding | None:
    """Auto-converge on and throttling at least :data:`HIGH_THROTTLE_PCT`: what it did and
    the next steps, as a finding (``heavy_throttling``) or material for ``not-converging``."""
    pct = m.throttle_max_pct
    s = run.settings
    if pct is None or pct < HIGH_THROTTLE_PCT or s.capabilities.get("auto-converge") is False:
        return None
    tgt = tgt or rec.target_of(run)
    ceiling = s.max_cpu_throttle or QEMU_MAX_CPU_THROTTLE
    at_ceiling = pct >= ceiling - 1
    recs = []
    if at_ceiling and ceiling < QEMU_MAX_CPU_THROTTLE:
        recs.append(rec.max_cpu_throttle(QEMU_MAX_CPU_THROTTLE, tgt))
    elif not at_ceiling and run.status != "completed":
        initial = max(s.cpu_throttle_initial or 20, 50)
        recs.append(rec.throttle_steps(initial, max(s.cpu_throttle_increment or 10, 20), tgt))
    if at_ceiling:
        where = "at its ceiling" + (
            "" if ceiling < QEMU_MAX_CPU_THROTTLE else ", the most QEMU allows"
        )
        detail = (
            f"Auto-converge throttled the vCPUs to {pct:.0f}%, {where}: the guest ran at "
            f"{100 - pct:.0f}% of its CPU time"
            + (
                f"; max-cpu-throttle {ceiling}% can go up to {QEMU_MAX_CPU_THROTTLE}%."
                if ceiling < QEMU_MAX_CPU_THROTTLE
                else ", and throttling cannot do more: post-copy or a faster link remain."
            )
        )
    else:
        detail = (
            f"Auto-converge throttled the vCPUs to {pct:.0f}% (ceiling {ceiling}%): the guest "
            f"ran at {100 - pct:.0f}% of its CPU time (writes by devices, DMA, are not slowed)."
        )
    return Finding(
        id="heavy-throttling",
        severity="warning",
        summary=f"auto-converge throttling the vCPUs to {pct:.0f}% (ceiling {ceiling}%)",
        evidence={
            "max_throttle_pct": pct,
            "max_cpu_throttle_pct": ceiling,
            "throttle_at_ceiling": at_ceiling,
        },
        recommendations=recs,
        detail=detail,
    )


def heavy_throttling(
    run: Run, m: Metrics, tgt: rec.Target, not_converging_finding: Finding | None
) -> Finding | None:
    """The guest was throttled hard (and ``not-converging`` did not already say so)."""
    if not_converging_finding is not None:
        return None
    f = _throttle(run, m, tgt)
    if f is None:
        return None
    pct = f.evidence["max_throttle_pct"]
    f.summary = (
        f"auto-converge throttled the vCPUs to {pct:.0f}% (ceiling "
        f"{f.evidence['max_cpu_throttle_pct']}%): the guest ran at {100 - pct:.0f}% of its "
        "CPU time" + (" until the migration converged" if run.status == "completed" else "")
    )
    f.recommendations += [rec.postcopy(tgt), rec.faster_network(tgt, "less throttling needed")]
    return f


def one_pass_bytes(m: Metrics) -> tuple[float | None, str]:
    """What one pass over RAM puts on the wire: RAM less the zero pages (they cost ~9 bytes
    each), from QEMU's zero-page counter where known, else its share, else RAM itself."""
    ram = m.ram_bytes
    if not ram:
        return None, "unknown"
    if m.zero_pages is not None:
        zero = min(m.zero_pages * PAGE_SIZE, ram)
        return ram - zero, "ram-minus-zero-pages"
    if m.zero_page_share is not None and m.transferred_bytes and m.transferred_bytes > ram:
        return ram * (1 - m.zero_page_share), "ram-minus-zero-page-share"
    return float(ram), "ram"


def resending(run: Run, m: Metrics) -> Finding | None:
    sent = m.transferred_bytes
    one_pass, basis = one_pass_bytes(m)
    if sent is None or one_pass is None or sent <= one_pass * (1 + RESEND_MARGIN):
        return None
    resent = sent - one_pass
    ratio = sent / one_pass if one_pass > 0 else None
    # The warning level stays where this finding always fired: 1.5 x RAM.
    severity = "warning" if m.sent_ratio is not None and m.sent_ratio >= RESEND_WARNING else "info"
    zero_note = (
        f", {format_bytes(m.ram_bytes - one_pass)} of it zero pages"
        if basis != "ram" and m.ram_bytes
        else ""
    )
    state = "sent" if run.status in ("completed", "failed", "cancelled") else "sent so far"
    return Finding(
        id="resending-dirty-memory",
        severity=severity,
        summary=(
            f"{format_bytes(sent)} {state} for {format_bytes(m.ram_bytes)} of RAM"
            f"{zero_note}: about {format_bytes(resent)} were pages sent again after the guest "
            "wrote to them"
        ),
        evidence={
            "transferred_bytes": sent,
            "ram_bytes": m.ram_bytes,
            "one_pass_bytes": round(one_pass),
            "one_pass_basis": basis,
            "resent_bytes": round(resent),
            "resent_ratio": r1(ratio, 3),
            "sent_ratio": round(m.sent_ratio, 3) if m.sent_ratio is not None else None,
            "zero_pages": m.zero_pages,
            "zero_page_share": r1(m.zero_page_share, 4),
            "passes": m.passes,
            "passes_at_least": m.passes_at_least,
        },
        detail=(
            "One pass sends every non-zero page once (zero pages cost a few bytes); "
            f"everything beyond {format_bytes(one_pass)} was a page the guest dirtied again after "
            "it had been sent"
            + (
                ", several times over: the dirty rate is close to the link rate."
                if severity == "warning"
                else ". Some re-sending is normal for a running guest."
            )
        ),
    )


def xbzrle_cache_too_small(run: Run, m: Metrics, tgt: rec.Target) -> Finding | None:
    miss = m.xbzrle_cache_miss_rate
    if miss is None or max(miss, m.xbzrle_cache_miss_rate_max or 0) < XBZRLE_MISS_HIGH:
        return None
    size = m.xbzrle_cache_size or run.settings.xbzrle_cache_size
    bigger = 2 * size if size else 256 * MiB
    if m.ram_bytes:
        bigger = min(bigger, max(m.ram_bytes // 4, 4096))
    return Finding(
        id="xbzrle-cache-too-small",
        severity="warning",
        summary=(
            f"XBZRLE cache misses {miss * 100:.2f}% of re-sent pages"
            + (f" with a {format_bytes(size)} cache" if size else "")
            + ": almost nothing is delta-encoded"
        ),
        evidence={
            "xbzrle_cache_miss_rate": miss,
            "xbzrle_cache_size_bytes": size,
            "xbzrle_pages": m.xbzrle_pages,
            "ram_bytes": m.ram_bytes,
        },
        recommendations=[rec.xbzrle_cache(bigger, tgt), rec.disable_xbzrle(tgt)],
        detail=(
            "A miss means the page's previous copy was not in the cache (it only holds what "
            "fits, direct-mapped), so the page is sent in full and XBZRLE costs CPU for nothing. "
            "Either the re-dirtied working set is larger than the cache or pages are new."
        ),
    )


def xbzrle_overflow(m: Metrics, tgt: rec.Target) -> Finding | None:
    ovf = m.xbzrle_overflow
    if not ovf:
        return None
    grew = m.xbzrle_overflow_first is not None and ovf > m.xbzrle_overflow_first
    share = ovf / m.xbzrle_pages if m.xbzrle_pages else None
    if ovf < XBZRLE_OVERFLOW_MANY and not grew and (share is None or share < 0.1):
        return None
    # A few overflows per hundred hits are normal; only a large share costs real CPU.
    minor = share is not None and share < XBZRLE_OVERFLOW_SHARE
    return Finding(
        id="xbzrle-overflow",
        severity="info" if minor else "warning",
        summary=f"{ovf} pages changed too much to delta-encode (XBZRLE overflow) and went in full"
        + (f", {share * 100:.1f}% of the cache hits" if share is not None else ""),
        evidence={
            "xbzrle_overflow": ovf,
            "xbzrle_pages": m.xbzrle_pages,
            "overflow_share_of_hits": r1(share, 4),
            "overflow_rising": grew,
        },
        recommendations=[rec.disable_xbzrle(tgt), rec.multifd(tgt)],
        detail="Each overflow is a page encoded, found too different, and sent raw anyway: pure CPU cost.",
    )


def zero_pages(m: Metrics) -> Finding | None:
    share = m.zero_page_share
    if share is None or share < ZERO_SHARE_HIGH:
        return None
    ev = {
        "zero_page_share": round(share, 4),
        "zero_pages": m.zero_pages,
        "normal_pages": m.normal_pages,
    }
    detail = "Zero pages cost about 9 bytes each on the wire, so this RAM moves almost for free."
    if m.page_rate_max and m.throughput:
        ev["page_rate_bytes_per_s"] = r1(m.page_rate_max)
        ev["throughput_bytes_per_s"] = r1(m.throughput, 3)
        detail += (
            f" That is also why the page rate ({format_rate(m.page_rate_max)}) is far above "
            f"the real throughput ({format_rate(m.throughput)})."
        )
    return Finding(
        id="zero-pages-dominate",
        severity="info",
        summary=f"{share * 100:.0f}% of the pages handled were zero pages",
        evidence=ev,
        detail=detail,
    )


def slow_target_start(m: Metrics) -> Finding | None:
    t = m.target_start_s
    if t is None or t < SLOW_TARGET_START_S / 2:
        return None
    if t < SLOW_TARGET_START_S and (m.ram_duration_s is None or t <= m.ram_duration_s):
        return None
    return Finding(
        id="slow-target-start",
        severity="warning" if t >= SLOW_TARGET_START_S else "info",
        summary=f"starting the VM on the target took {format_duration(t)} before any RAM was sent",
        evidence={"target_start_s": t, "ram_duration_s": m.ram_duration_s},
        detail=(
            "This is orchestration time (storage activation, hook scripts, a slow or busy target "
            "node), not migration bandwidth; look at the target node's logs."
        ),
    )


def healthy(m: Metrics) -> Finding:
    parts = []
    if m.duration_s is not None:
        parts.append(f"took {format_duration(m.duration_s)}")
    if m.ram_duration_s is not None:
        parts.append(f"RAM phase {format_duration(m.ram_duration_s)}")
    if m.downtime_s is not None:
        parts.append(f"paused the guest {format_duration(m.downtime_s)}")
    if m.throughput:
        parts.append(f"moved {format_rate(m.throughput)}")
    return Finding(
        id="healthy",
        severity="info",
        summary="the migration completed normally" + (": " + ", ".join(parts) if parts else ""),
        evidence={
            "duration_s": m.duration_s,
            "ram_duration_s": m.ram_duration_s,
            "orchestration_s": m.orchestration_s,
            "downtime_s": m.downtime_s,
            "throughput_bytes_per_s": r1(m.throughput),
        },
    )
