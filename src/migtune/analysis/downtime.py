"""Diagnosis rules about downtime: over the limit, raised by Proxmox or Nova."""

from __future__ import annotations

import re

from migtune.analysis import recommend as rec
from migtune.analysis.findings import Finding
from migtune.analysis.metrics import Metrics, event_downtime_limit
from migtune.analysis.rates import STALLED_RATE, r1
from migtune.model import Run
from migtune.units import format_duration

DOWNTIME_OVER_FACTOR = 1.5  # reported downtime this far above the limit is worth a word
PROXMOX_DEFAULT_DOWNTIME = 0.1
QEMU_DEFAULT_DOWNTIME = 0.3


def limit_in_force(run: Run, m: Metrics) -> tuple[float, bool]:
    """The limit in force at the end, and whether the log stated it (vs a default)."""
    if m.downtime_limit_final_s is not None:
        return m.downtime_limit_final_s, True
    if run.format == "proxmox":
        return PROXMOX_DEFAULT_DOWNTIME, False
    return QEMU_DEFAULT_DOWNTIME, False


def downtime_over_limit(run: Run, m: Metrics, tgt: rec.Target) -> Finding | None:
    limit, stated = limit_in_force(run, m)
    src = "" if stated else " (default, not in the log)"
    if run.status == "completed":
        dt = m.downtime_s
        if dt is None or dt <= limit * DOWNTIME_OVER_FACTOR or dt - limit < 0.05:
            return None
        return Finding(
            id="downtime-over-limit",
            severity="warning",
            summary=(
                f"the guest was paused {format_duration(dt)}, "
                + (f"{dt / limit:.1f}x the " if limit > 0 else "over the ")  # a limit of 0 ms
                + f"{format_duration(limit)} limit{src}"
            ),
            evidence={"downtime_s": dt, "downtime_limit_s": limit, "limit_stated": stated},
            recommendations=[rec.faster_network(tgt, "the final copy runs at link speed")],
            detail=(
                "The limit only steers when QEMU stops the guest; the final dirty pages, device "
                "state and an over-optimistic bandwidth estimate (zero pages) can make it longer."
            ),
        )
    exp = m.expected_downtime_s
    if exp is None or exp <= limit or run.status in ("failed", "cancelled"):
        return None
    need = exp
    if m.needed_downtime_s and m.throughput and m.throughput >= STALLED_RATE:
        need = max(exp, m.needed_downtime_s)
    return Finding(
        id="downtime-over-limit",
        severity="warning",
        summary=(
            f"QEMU expects a {format_duration(exp)} stop-and-copy, over the "
            f"{format_duration(limit)} limit{src}: it will not switch over"
        ),
        evidence={
            "expected_downtime_s": exp,
            "downtime_limit_s": limit,
            "limit_stated": stated,
            "needed_downtime_limit_s": round(need, 3),
        },
        recommendations=[rec.downtime_limit(need, tgt, proxmox_autoraise=run.format == "proxmox")],
    )


def downtime_increased(run: Run, m: Metrics, tgt: rec.Target) -> Finding | None:
    values = [(e, v) for e in m.downtime_changes if (v := event_downtime_limit(e)) is not None]
    if not values:
        return None
    if run.format == "nova":
        return _nova_steps(values, m, run.meta.get("nova") or {})
    first, final = values[0][1], values[-1][1]
    start = m.downtime_limit_s
    n = len(values)
    return Finding(
        id="downtime-increased",
        severity="warning",
        summary=(
            f"Proxmox raised the downtime limit {n} time(s), to {final * 1000:.0f} ms: "
            "the guest kept out-running the link"
            if run.format == "proxmox"
            else f"the downtime limit was changed {n} time(s) during the migration, to {final * 1000:.0f} ms"
        ),
        evidence={
            "increases": n,
            "initial_limit_s": start,
            "first_new_limit_s": first,
            "final_limit_s": final,
            "remaining_rose_polls_at_least": 6 * n if run.format == "proxmox" else None,
        },
        # Only a finished run proves the final limit was enough to set it up front.
        recommendations=[rec.downtime_limit(final, tgt, proxmox_autoraise=run.format == "proxmox")]
        if run.status == "completed"
        else [],
        detail=(
            (
                "Proxmox doubles the limit after every 6 polls in which the remaining data grew, "
                "preferring a long pause to a migration that never ends. "
            )
            if run.format == "proxmox"
            else ""
        )
        + (
            "The final pause could be about as long as the final limit."
            if run.status == "completed"
            else "Even the last limit was not enough when the log ends."
        ),
    )


def _nova_steps(values: list, m: Metrics, inferred: dict) -> Finding | None:
    limits = [v for _, v in values]
    times: list[float | None] = []
    for e, _ in values:
        elapsed = e.data.get("elapsed")
        mt = re.search(r"after (\d+) sec", e.message)
        if isinstance(elapsed, (int, float)):
            times.append(float(elapsed))
        else:
            times.append(float(mt.group(1)) if mt else e.t)
    increases = len(limits) - 1 if times and times[0] == 0 else len(limits)
    if increases < 1:
        return None  # only the initial step (downtime / steps) was applied
    delay = None
    known = [t for t in times if t is not None]
    if len(known) >= 2:
        delay = (known[-1] - known[0]) / (len(known) - 1)
    base = limits[0]
    # The parser infers nova.conf from the step sizes; the ratio last/first is only the
    # step count once the final step has been reached.
    steps = inferred.get("downtime_steps") or (round(limits[-1] / base) if base else None)
    final_ms = inferred.get("downtime_final")
    final_ms = round(final_ms * 1000) if final_ms else _nova_final(base, steps)
    ev = {
        "increases": increases,
        "initial_limit_s": base,
        "final_limit_s": limits[-1],
        "step_s": r1((limits[-1] - base) / (len(limits) - 1), 3) if len(limits) > 1 else None,
        "delay_between_steps_s": delay,
        "elapsed_s": known[-1] if known else None,
        "inferred_live_migration_downtime_steps": steps,
        "inferred_live_migration_downtime_ms": final_ms,
    }
    detail = (
        "Nova starts at live_migration_downtime / steps and adds an equal step every "
        "live_migration_downtime_delay x (data GiB) seconds."
    )
    if delay:
        detail += f" Here one step every {delay:.0f} s: the guest had not converged for {increases} of those periods."
    r = rec.downtime_limit(limits[-1], rec.Target())
    r.notes["nova"] = (
        "In nova.conf [libvirt]: live_migration_downtime (final ms), live_migration_downtime_steps, "
        "live_migration_downtime_delay (s per GiB); live_migration_permit_post_copy=true with "
        "live_migration_timeout_action=force_complete finishes busy guests."
    )
    return Finding(
        id="downtime-increased",
        severity="warning" if increases >= 2 else "info",
        summary=(
            f"Nova raised the downtime limit {increases} time(s), from {base * 1000:.0f} ms to "
            f"{limits[-1] * 1000:.0f} ms"
            + (f" after {known[-1]:.0f} s" if known else "")
            + ": the migration had not converged"
        ),
        evidence=ev,
        recommendations=[r],
        detail=detail,
    )


def _nova_final(base: float, steps: int | None) -> int | None:
    """Nova's live_migration_downtime: int(D / steps) == base ms, so D is in a small range."""
    if not steps:
        return None
    low, high = round(base * 1000) * steps, (round(base * 1000) + 1) * steps
    for step in (1000, 100, 10):
        nice = -(-low // step) * step
        if nice < high:
            return nice
    return low
