"""Handlers for the less frequent Proxmox task-log templates (docs/platforms.md §1.2).

Each handler turns one matched template into records: events for the timeline and
:class:`Update` facts (settings, identity, outcome, version hints) for the folder in
:mod:`migtune.sources.proxmox`.  The template table lives in
:mod:`migtune.sources.proxmox_templates`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migtune.model import Event, Sample, SourceRef

_FACTORS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4, "PiB": 1024**5}
_DURATION_RE = re.compile(r"(?<!\d)(\d{1,12})([wdhms])")  # look-behind: linear search
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def pve_bytes(text: str) -> int:
    """``render_bytes`` output (``40.6 GiB``) to bytes; same result as units.parse_pve_bytes."""
    number, unit = text.split(" ")
    return round(float(number) * _FACTORS[unit])


def _bytes(m: re.Match[str], i: int) -> int | None:
    """Bytes from the size whose number is group ``i`` and unit group ``i + 1``."""
    number = m.group(i)
    return None if number is None else round(float(number) * _FACTORS[m.group(i + 1)])


def hms(text: str) -> float:
    """``HH:MM:SS`` task duration to seconds."""
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + int(s)


def render_duration(text: str) -> float | None:
    """Proxmox ``render_duration`` (``5s``, ``1m 5s``, ``1h 2m 3s``) to seconds."""
    parts = _DURATION_RE.findall(text)
    if not parts:
        return None
    return float(sum(int(n) * _DURATION_UNITS[u] for n, u in parts))


@dataclass(slots=True)
class Context:
    """The little state the line reader needs between lines."""

    timestamps: str | None = None  # iso | short | removed
    progress_seen: bool = False
    device_seen: bool = False
    cache_size: int | None = None  # XBZRLE cache, for the Xbzrle records
    downtime: float | None = None  # from the summary line, for the completion sample
    mirror_start: dict[str, float] = field(default_factory=dict)  # drive -> t of its start
    storage_t: float | None = None


@dataclass(slots=True)
class Update:
    """A run-level fact learnt from one line, applied by the folder in order.

    ``key`` is ``settings.<field>``, ``capability.<name>``, ``extra.<key>`` (settings
    extra), ``run.<field>``, ``meta.<key>``, ``outcome`` (value: ``{"status", "reason",
    "weak"}``), ``version`` (value: ``(">=" | "<=", (major, minor))``) or ``warning``.
    """

    key: str
    value: Any
    line: int | None = None


Records = list[Any]
Handler = Callable[[Context, re.Match[str], float | None, SourceRef, bool], Records]


def _ev(kind: str, message: str, t: float | None, ref: SourceRef, **data: Any) -> Event:
    return Event(t, kind, message, data, ref)


def _upd(key: str, value: Any, ref: SourceRef) -> Update:
    return Update(key, value, ref.line)


def _outcome(status: str, reason: str, ref: SourceRef, weak: bool = False):
    return _upd("outcome", {"status": status, "reason": reason, "weak": weak}, ref)


def _version(op: str, major: int, minor: int, ref: SourceRef):
    return _upd("version", (op, (major, minor)), ref)


def simple(kind: str) -> Handler:
    def handler(ctx: Context, m: re.Match[str], t: float | None, ref: SourceRef, err: bool):
        message = m.string
        return [
            _ev("error" if err and kind not in ("finished", "cancelled") else kind, message, t, ref)
        ]

    return handler


# --- handlers ------------------------------------------------------------------------


def migration_start(ctx, m, t, ref, err):
    vm, node, address = m.groups()
    recs = [
        _ev("migration-start", m.string, t, ref, vm=vm, target=node, address=address),
        _upd("run.vm", vm, ref),
        _upd("run.target", node, ref),
    ]
    if address:
        recs.append(_upd("meta.target_address", address, ref))
    return recs


def network(ctx, m, t, ref, err):
    address = m.group(1)
    return [
        _ev("migration-network", m.string, t, ref, address=address),
        _upd("settings.migration_network", address, ref),
    ]


def target_start(ctx, m, t, ref, err):
    vm, node = m.groups()
    return [
        _ev("target-start", m.string, t, ref, vm=vm, target=node),
        _upd("run.vm", vm, ref),
        _upd("run.target", node, ref),
    ]


def target_output(ctx, m, t, ref, err):
    return [_ev("target-output", m.group(2), t, ref, node=m.group(1))]


def local_disk(ctx, m, t, ref, err):
    what, volume, why = m.groups()
    return [
        _ev(
            "disk-scan",
            m.string,
            t,
            ref,
            volume=volume,
            reason=why,
            replicated="replicated" in what,
        ),
        _upd("meta.local_disk", volume, ref),
    ]


def ha(ctx, m, t, ref, err):
    return [_ev("task-start", m.string, t, ref, ha=True), _upd("meta.ha", True, ref)]


def websocket(ctx, m, t, ref, err):
    return [_ev("tunnel", m.string, t, ref, websocket=True), _upd("meta.websocket", True, ref)]


def ssh_tunnel_old(ctx, m, t, ref, err):
    # ssh -L TCP forward to localhost:60000: secure mode before qemu-server 4.0-79.
    return [_ev("tunnel", m.string, t, ref), _version("<=", 4, 4, ref)]


def storage_start(ctx, m, t, ref, err):
    ctx.storage_t = t
    return [_ev("storage-start", m.string, t, ref), _upd("meta.storage_migration", True, ref)]


def drive_start(ctx, m, t, ref, err):
    drive, uri = m.groups()
    if t is not None:
        ctx.mirror_start[drive] = t
        ctx.mirror_start["drive-" + drive] = t
    return [
        _ev("storage-start", m.string, t, ref, drive=drive, uri=uri),
        _upd("meta.storage_migration", True, ref),
    ]


def mirror_starting(ctx, m, t, ref, err):
    job, limit = m.groups()
    data: dict[str, Any] = {"job": job}
    if limit is not None:
        data["bwlimit"] = int(limit) * 1024
    return [Event(t, "storage-start", m.string, data, ref)]


def mirror_progress(ctx, m, t, ref, err):
    job = m.group(1)
    elapsed = render_duration(m.group(7))
    state = m.group(8)
    start = ctx.mirror_start.get(job, ctx.storage_t)
    when = start + elapsed if start is not None and elapsed is not None else t
    data = {
        "job": job,
        "transferred": _bytes(m, 2),
        "total": _bytes(m, 4),
        "percent": float(m.group(6)),
        "elapsed": elapsed,
        "ready": state == "ready",
    }
    return [Event(when, "storage-progress", m.string, data, ref)]


def mirror_progress_old(ctx, m, t, ref, err):
    job, done, remaining, total, pct, busy, ready = m.groups()
    data = {
        "job": job,
        "transferred": int(done),
        "remaining": int(remaining),
        "total": int(total),
        "percent": float(pct),
        "busy": busy == "1",
        "ready": ready == "1",
    }
    return [Event(t, "storage-progress", m.string, data, ref), _version("<=", 6, 3, ref)]


def active_mode(ctx, m, t, ref, err):
    return [_ev("storage-start", m.string, t, ref, active_mode=True), _version(">=", 8, 2, ref)]


def ram_start(ctx, m, t, ref, err):
    uri = m.group(1)
    recs = [_ev("ram-start", m.string, t, ref, uri=uri), _upd("settings.migration_uri", uri, ref)]
    kind = _uri_type(uri)
    if kind:
        recs.append(_upd("settings.migration_type", kind, ref))
    if uri.startswith("localhost:") or uri.startswith("tcp:localhost:"):
        recs.append(_version("<=", 4, 4, ref))
    return recs


def _uri_type(uri: str) -> str | None:
    """secure (ssh-forwarded socket or localhost port) / insecure (direct TCP), §1.9."""
    if uri.startswith("unix:"):
        return "secure"
    rest = uri.removeprefix("tcp:")
    host = rest.rsplit(":", 1)[0].strip("[]")
    if not host or ":" not in rest:
        return None
    return "secure" if host in ("localhost", "127.0.0.1", "::1") else "insecure"


def caps(ctx, m, t, ref, err):
    old = m.string.startswith("set migration_caps")
    return [
        _ev("settings", m.string, t, ref, capabilities={"auto-converge": True, "xbzrle": True}),
        _upd("capability.auto-converge", True, ref),
        _upd("capability.xbzrle", True, ref),
        _upd("extra.capabilities_source", "proxmox-default", ref),
        _upd("meta.pve_format", "old" if old else "new", ref),
        _version("<=", 6, 3, ref) if old else _version(">=", 6, 4, ref),
    ]


def speed_limit(ctx, m, t, ref, err):
    rate = _bytes(m, 1)
    return [
        _ev("settings", m.string, t, ref, max_bandwidth=rate),
        _upd("settings.max_bandwidth", float(rate), ref),
    ]


def downtime_limit(ctx, m, t, ref, err):
    limit = float(m.group(1)) / 1000.0
    return [
        _ev("settings", m.string, t, ref, downtime_limit=limit),
        _upd("settings.downtime_limit", limit, ref),
        _version(">=", 6, 1, ref),
    ]


def cap_downtime(ctx, m, t, ref, err):
    limit = float(m.group(1)) / 1000.0
    return [
        _ev("settings", m.string, t, ref, downtime_limit=limit),
        _upd("settings.downtime_limit", limit, ref),
        _version(">=", 9, 1, ref),
    ]


def cachesize(ctx, m, t, ref, err):
    size = _bytes(m, 1) if m.lastindex and m.lastindex >= 2 else int(m.group(1))
    ctx.cache_size = size
    return [
        _ev("settings", m.string, t, ref, xbzrle_cache_size=size),
        _upd("settings.xbzrle_cache_size", size, ref),
    ]


def set_params(ctx, m, t, ref, err):
    return [_ev("settings", m.string, t, ref), _upd("meta.parameters_set", True, ref)]


def set_speed(ctx, m, t, ref, err):
    rate = float(m.group(1))
    return [
        _ev("settings", m.string, t, ref, max_bandwidth=rate),
        _upd("settings.max_bandwidth", rate, ref),
        _version("<=", 6, 1, ref),
    ]


def set_downtime(ctx, m, t, ref, err):
    limit = float(m.group(1))
    if ctx.progress_seen:
        # PVE <= 6.1 logged its automatic doubling this way.
        return [_ev("downtime-change", m.string, t, ref, downtime_limit=limit, auto=True)]
    return [
        _ev("settings", m.string, t, ref, downtime_limit=limit),
        _upd("settings.downtime_limit", limit, ref),
        _version("<=", 6, 1, ref),
    ]


def auto_downtime(ctx, m, t, ref, err):
    limit = float(m.group(1)) / 1000.0
    return [_ev("downtime-change", m.string, t, ref, downtime_limit=limit, auto=True)]


def waiting(ctx, m, t, ref, err):
    return [_ev("status", m.string, t, ref, status=m.group(1)), _version(">=", 9, 0, ref)]


def average(ctx, m, t, ref, err):
    speed, downtime = float(_bytes(m, 1)), float(m.group(3)) / 1000.0
    ctx.downtime = downtime
    return [
        _ev("summary", m.string, t, ref, average_speed=speed, downtime=downtime),
        _upd("run.downtime", downtime, ref),
        _upd("meta.average_speed", speed, ref),
        _upd("meta.average_speed_meaning", "ram-total-per-second", ref),
    ]


def old_speed(ctx, m, t, ref, err):
    # Configured memory (MB, really MiB) / whole seconds: not a throughput (§1.3).
    speed, downtime = float(m.group(1)) * 1024**2, float(m.group(2)) / 1000.0
    ctx.downtime = downtime
    return [
        _ev("summary", m.string, t, ref, average_speed=speed, downtime=downtime),
        _upd("run.downtime", downtime, ref),
        _upd("meta.average_speed", speed, ref),
        _upd("meta.average_speed_meaning", "configured-memory-per-second", ref),
        _upd("meta.pve_format", "old", ref),
        _version("<=", 6, 3, ref),
    ]


def completed_summary(ctx, m, t, ref, err):
    transferred, vfio = _bytes(m, 1), _bytes(m, 3)
    sample = Sample(
        t=t,
        status="completed",
        transferred=transferred,
        vfio_bytes=vfio,
        downtime=ctx.downtime,
        source=ref,
    )
    return [
        sample,
        _ev("summary", m.string, t, ref, transferred=transferred, vfio=vfio),
        _upd("meta.transferred_final", transferred, ref),
        _version(">=", 8, 4, ref),
    ]


def status(ctx, m, t, ref, err):
    status = m.group(1)
    kind = "completed" if status == "completed" else "status"
    return [_ev(kind, m.string, t, ref, status=status)]


def status_error(ctx, m, t, ref, err):
    status, desc = m.group(1), m.group(2)
    reason = desc or f"QEMU reported migration status '{status}'"
    recs = []
    if status == "cancelled":
        recs += [_ev("cancelled", m.string, t, ref, status=status, error=desc)]
        recs.append(_outcome("cancelled", reason, ref))
    else:
        recs += [_ev("error", m.string, t, ref, status=status, error=desc)]
        recs.append(_outcome("failed", reason, ref))
    if desc:
        recs.append(_version(">=", 7, 3, ref))
    return recs


def failed(ctx, m, t, ref, err):
    return [_ev("error", m.string, t, ref), _outcome("failed", m.string, ref)]


def online_failure(ctx, m, t, ref, err):
    reason = m.group(1).strip()
    if "interrupted by signal" in reason or "received interrupt" in reason:
        return [
            _ev("cancelled", m.string, t, ref, error=reason, by="operator"),
            _outcome("cancelled", "interrupted by signal (the task was stopped)", ref),
        ]
    # "aborting" only repeats a failure already reported by 'migration status error'.
    weak = reason == "aborting"
    return [_ev("error", m.string, t, ref, error=reason), _outcome("failed", reason, ref, weak)]


def interrupt(ctx, m, t, ref, err):
    return [
        _ev("cancelled", m.string, t, ref, by="operator"),
        _outcome("cancelled", "interrupt received (the task was stopped)", ref),
    ]


def migrate_cancel(ctx, m, t, ref, err):
    # Issued on every phase-2 rollback; it only means "cancelled" if nothing else said why.
    return [
        _ev("cancelled", m.string, t, ref),
        _outcome("cancelled", "migrate_cancel issued", ref, weak=True),
    ]


def finished_ok(ctx, m, t, ref, err):
    recs = [_ev("finished", m.string, t, ref, ok=True), _upd("run.duration", hms(m.group(2)), ref)]
    if m.group(1) == "successfuly":
        recs.append(_version("<=", 3, 4, ref))
    recs.append(_upd("meta.task_end", True, ref))
    return recs


def finished_problems(ctx, m, t, ref, err):
    return [
        _ev("finished", m.string, t, ref, ok=False, problems=True),
        _upd("run.duration", hms(m.group(1)), ref),
        _upd("meta.problems", True, ref),
        _upd("meta.task_end", True, ref),
    ]


def aborted(ctx, m, t, ref, err):
    reason = m.group(2).strip()
    status = "cancelled" if "interrupted by signal" in reason else "failed"
    return [
        _ev("finished", m.string, t, ref, ok=False, error=reason),
        _upd("run.duration", hms(m.group(1)), ref),
        _outcome(status, reason, ref),
        _upd("meta.task_end", True, ref),
    ]


def task_ok(ctx, m, t, ref, err):
    return [_ev("finished", m.string, t, ref, ok=True, task=True), _upd("meta.task_end", True, ref)]


def task_error(ctx, m, t, ref, err):
    message = m.group(1).strip()
    return [
        _ev("finished", m.string, t, ref, ok=False, task=True, error=message),
        _upd("meta.task_error", message, ref),
        _upd("meta.task_end", True, ref),
    ]


def warning(ctx, m, t, ref, err):
    recs: Records = [_ev("warning", m.string, t, ref)]
    if m.string.startswith("conntrack state migration"):
        recs.append(_version(">=", 9, 0, ref))
    return recs


def chrome(ctx, m, t, ref, err):
    return []


def elision(ctx, m, t, ref, err):
    return [
        _upd("warning", f"line {ref.line}: lines were elided ('{m.string}') in this copy", ref),
        _upd("meta.elided", 1, ref),
    ]
