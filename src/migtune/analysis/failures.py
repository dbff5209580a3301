"""Findings read from error text: failures, cancels, version skew, device-state errors.

These rules look at what the log *says* went wrong (docs/platforms.md §1.2, §1.10,
§7 item 5) rather than at the counters, so they search the error-like events and, as a
fallback, the whole log text (messages are sometimes wrapped over two lines).
"""

from __future__ import annotations

import re

from migtune.analysis import recommend as rec
from migtune.analysis.findings import Finding, Recommendation
from migtune.analysis.metrics import Metrics
from migtune.model import Run
from migtune.sources.errorlines import error_lines
from migtune.units import format_bytes, format_duration, format_rate

_ERROR_KINDS = ("error", "target-output", "cancelled", "warning", "status", "finished")

MACHINE_RE = re.compile(
    r"Installed QEMU version '(?P<qemu>[^']+)' is too old to run\s+machine type "
    r"'(?P<machine>[^']+)'(?:,\s*please upgrade node '(?P<node>[^']+)')?",
    re.S,
)
MACHINE_GENERIC_RE = re.compile(
    r"(unsupported machine type|machine type '[^']+' (?:is )?not (?:found|supported)|"
    r"Unknown machine type)",
    re.I,
)
DEVICE_STATE_RE = re.compile(
    r"(check_section_footer|Read section footer failed|Missing section footer|"
    r"error while loading state|load of migration failed|Unknown savevm section|"
    # Bounded gaps: with [^\n]* every "vmstate" of a long line rescanned it (quadratic).
    r"Failed to load [\w:./-]+|VMState[^\n]{0,200}?failed|vmstate[^\n]{0,200}?error|"
    r"device state load failed)",
    re.I,
)
SIGNAL_RE = re.compile(
    r"interrupted by signal|received interrupt|migration_cancel|"
    r"migrate_cancel|cancelled by user|operation was cancelled",
    re.I,
)


def error_text(run: Run) -> str:
    """Error-like messages of the run, one per line, plus the raw log as a fallback."""
    parts = [e.message for e in run.events if e.kind in _ERROR_KINDS]
    parts += [s.error for s in run.samples if s.error]
    if run.error_lines is not None:
        parts += run.error_lines
    elif run.lines is not None:
        parts += error_lines(run.lines)
    return "\n".join(parts)


def first_error(run: Run) -> str | None:
    for s in run.samples:
        if s.error:
            return s.error
    for e in run.events:
        if e.kind == "error" and e.message:
            return e.message.strip()
    return None


def machine_type(run: Run, tgt: rec.Target, text: str | None = None) -> Finding | None:
    text = error_text(run) if text is None else text
    m = MACHINE_RE.search(text)
    if m:
        node = m.group("node") or tgt.node
        machine = " ".join(m.group("machine").split())
        qemu = m.group("qemu")
        target = rec.Target(tgt.vmid, tgt.domain, node)
        return Finding(
            id="machine-type-mismatch",
            severity="error",
            summary=(
                f"the target node {node} runs QEMU {qemu}, too old for machine type {machine}: "
                "the VM could not start there"
            ),
            evidence={"target_qemu_version": qemu, "machine_type": machine, "target_node": node},
            recommendations=[rec.upgrade_target(target, machine, qemu)],
            detail=(
                "A VM keeps the machine version it was started with; a destination can only run "
                "machine versions its QEMU knows. This is version skew between nodes, not a "
                "convergence problem: no RAM was sent."
            ),
        )
    g = MACHINE_GENERIC_RE.search(text)
    if g:
        return Finding(
            id="machine-type-mismatch",
            severity="error",
            summary=f"the destination cannot run the VM's machine type ({g.group(1)})",
            evidence={"message": g.group(1)},
            recommendations=[rec.upgrade_target(tgt, None, None)],
        )
    return None


def device_state(run: Run, text: str | None = None) -> Finding | None:
    m = DEVICE_STATE_RE.search(error_text(run) if text is None else text)
    if not m:
        return None
    return Finding(
        id="device-state-error",
        severity="error",
        summary=f"the destination could not load the device state ({m.group(1)})",
        evidence={"message": m.group(1)},
        recommendations=[
            Recommendation(
                setting="versions",
                action="run the same QEMU version and VM configuration (devices, CPU model) on both hosts",
                commands={
                    "proxmox": ["pveversion -v | grep -E 'qemu|pve-manager'  # on both nodes"]
                },
                notes={
                    "all": "Device state is versioned per device; a mismatch fails the load at switch-over."
                },
            )
        ],
        detail=(
            "RAM arrived, but a device's saved state did not match what the destination "
            "expected: usually a QEMU version or device-model difference between the hosts."
        ),
    )


def cancelled(run: Run, m: Metrics) -> Finding | None:
    if run.status != "cancelled":
        return None
    text = error_text(run)
    by_signal = bool(SIGNAL_RE.search(text))
    evidence: dict = {"transferred_bytes": m.transferred_bytes, "ram_bytes": m.ram_bytes}
    progress = ""
    if m.transferred_bytes is not None and m.ram_bytes:
        progress = (
            f" after sending {format_bytes(m.transferred_bytes)} of {format_bytes(m.ram_bytes)}"
        )
        evidence["sent_ratio"] = round(m.transferred_bytes / m.ram_bytes, 4)
    if m.first_pass_s is not None:
        evidence["first_pass_s"] = round(m.first_pass_s, 1)
    who = "stopped by the operator (or the HA stack)" if by_signal else "cancelled"
    detail = ""
    if m.sent_ratio is not None and m.sent_ratio >= 1:
        detail = (
            f"It had already sent {m.sent_ratio:.2f}x the RAM without converging: see the "
            "other findings for why."
        )
    elif m.first_pass_s is not None and m.throughput:
        detail = (
            f"At {format_rate(m.throughput)} one full pass over {format_bytes(m.ram_bytes)} takes "
            f"about {format_duration(m.first_pass_s)}; it was not given that long."
        )
    return Finding(
        id="cancelled",
        severity="info" if by_signal else "warning",
        summary=f"the migration was {who}{progress}; the VM keeps running on the source",
        evidence=evidence,
        detail=detail,
    )


def failed(run: Run, m: Metrics, machine: Finding | None, device: Finding | None) -> Finding | None:
    if run.status != "failed":
        return None
    reason = first_error(run) or "the log gives no reason"
    cause = ""
    if machine is not None:
        cause = " (cause: machine-type-mismatch)"
    elif device is not None:
        cause = " (cause: device-state-error)"
    before_ram = m.transferred_bytes in (None, 0)
    when = "before any RAM was sent" if before_ram else "during the RAM copy"
    return Finding(
        id="migration-failed",
        severity="error",
        summary=f"the migration failed {when}: {reason}{cause}",
        evidence={"error": reason, "transferred_bytes": m.transferred_bytes},
        detail="The VM keeps running on the source; nothing was switched over.",
    )
