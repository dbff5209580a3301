"""The less frequent Proxmox task-log templates (management-layers.md §1.2, §1.6).

Each template is one entry of :data:`_TEMPLATES`: a cheap prefix (and optionally a
substring) checked before its one compiled regex, and a handler that turns the match
into events and run-level updates.  The progress and xbzrle lines, which make up
almost all of a long log, are handled inline in :mod:`migtune.sources.proxmox_lines`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migtune.model import Event, Sample, SourceRef

_FACTORS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4, "PiB": 1024**5}
_SIZE = r"([0-9]+(?:\.[0-9]+)?) (B|KiB|MiB|GiB|TiB|PiB)"
_DURATION_RE = re.compile(r"(\d+)([wdhms])")
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
# Lines a GUI copy-paste adds around the task log (corpus #6).
_CHROME = {"()", "OutputStatus", "Output", "Status", "Stop", "Download"}
_ELISIONS = {"...", "…", "[...]", "(...)", "[…]", ". . ."}


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

    t: float | None = None  # t of the last stamped line
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


def _simple(kind: str) -> Handler:
    def handler(ctx: Context, m: re.Match[str], t: float | None, ref: SourceRef, err: bool):
        message = m.string
        return [_ev("error" if err and kind not in ("finished", "cancelled") else kind, message, t, ref)]

    return handler


# --- handlers ------------------------------------------------------------------------


def _migration_start(ctx, m, t, ref, err):
    vm, node, address = m.groups()
    recs = [
        _ev("migration-start", m.string, t, ref, vm=vm, target=node, address=address),
        _upd("run.vm", vm, ref),
        _upd("run.target", node, ref),
    ]
    if address:
        recs.append(_upd("meta.target_address", address, ref))
    return recs


def _network(ctx, m, t, ref, err):
    address = m.group(1)
    return [
        _ev("migration-network", m.string, t, ref, address=address),
        _upd("settings.migration_network", address, ref),
    ]


def _target_start(ctx, m, t, ref, err):
    vm, node = m.groups()
    return [
        _ev("target-start", m.string, t, ref, vm=vm, target=node),
        _upd("run.vm", vm, ref),
        _upd("run.target", node, ref),
    ]


def _target_output(ctx, m, t, ref, err):
    return [_ev("target-output", m.group(2), t, ref, node=m.group(1))]


def _local_disk(ctx, m, t, ref, err):
    what, volume, why = m.groups()
    return [
        _ev("disk-scan", m.string, t, ref, volume=volume, reason=why, replicated="replicated" in what),
        _upd("meta.local_disk", volume, ref),
    ]


def _ha(ctx, m, t, ref, err):
    return [_ev("task-start", m.string, t, ref, ha=True), _upd("meta.ha", True, ref)]


def _websocket(ctx, m, t, ref, err):
    return [_ev("tunnel", m.string, t, ref, websocket=True), _upd("meta.websocket", True, ref)]


def _ssh_tunnel_old(ctx, m, t, ref, err):
    # ssh -L TCP forward to localhost:60000: secure mode before qemu-server 4.0-79.
    return [_ev("tunnel", m.string, t, ref), _version("<=", 4, 4, ref)]


def _storage_start(ctx, m, t, ref, err):
    ctx.storage_t = t
    return [_ev("storage-start", m.string, t, ref), _upd("meta.storage_migration", True, ref)]


def _drive_start(ctx, m, t, ref, err):
    drive, uri = m.groups()
    if t is not None:
        ctx.mirror_start[drive] = t
        ctx.mirror_start["drive-" + drive] = t
    return [
        _ev("storage-start", m.string, t, ref, drive=drive, uri=uri),
        _upd("meta.storage_migration", True, ref),
    ]


def _mirror_starting(ctx, m, t, ref, err):
    job, limit = m.groups()
    data: dict[str, Any] = {"job": job}
    if limit is not None:
        data["bwlimit"] = int(limit) * 1024
    return [Event(t, "storage-start", m.string, data, ref)]


def _mirror_progress(ctx, m, t, ref, err):
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


def _mirror_progress_old(ctx, m, t, ref, err):
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


def _active_mode(ctx, m, t, ref, err):
    return [_ev("storage-start", m.string, t, ref, active_mode=True), _version(">=", 8, 2, ref)]


def _ram_start(ctx, m, t, ref, err):
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


def _caps(ctx, m, t, ref, err):
    old = m.string.startswith("set migration_caps")
    return [
        _ev("settings", m.string, t, ref, capabilities={"auto-converge": True, "xbzrle": True}),
        _upd("capability.auto-converge", True, ref),
        _upd("capability.xbzrle", True, ref),
        _upd("extra.capabilities_source", "proxmox-default", ref),
        _upd("meta.pve_format", "old" if old else "new", ref),
        _version("<=", 6, 3, ref) if old else _version(">=", 6, 4, ref),
    ]


def _speed_limit(ctx, m, t, ref, err):
    rate = _bytes(m, 1)
    return [
        _ev("settings", m.string, t, ref, max_bandwidth=rate),
        _upd("settings.max_bandwidth", float(rate), ref),
    ]


def _downtime_limit(ctx, m, t, ref, err):
    limit = float(m.group(1)) / 1000.0
    return [
        _ev("settings", m.string, t, ref, downtime_limit=limit),
        _upd("settings.downtime_limit", limit, ref),
        _version(">=", 6, 1, ref),
    ]


def _cap_downtime(ctx, m, t, ref, err):
    limit = float(m.group(1)) / 1000.0
    return [
        _ev("settings", m.string, t, ref, downtime_limit=limit),
        _upd("settings.downtime_limit", limit, ref),
        _version(">=", 9, 1, ref),
    ]


def _cachesize(ctx, m, t, ref, err):
    size = _bytes(m, 1) if m.lastindex and m.lastindex >= 2 else int(m.group(1))
    ctx.cache_size = size
    return [
        _ev("settings", m.string, t, ref, xbzrle_cache_size=size),
        _upd("settings.xbzrle_cache_size", size, ref),
    ]


def _set_params(ctx, m, t, ref, err):
    return [_ev("settings", m.string, t, ref), _upd("meta.parameters_set", True, ref)]


def _set_speed(ctx, m, t, ref, err):
    rate = float(m.group(1))
    return [
        _ev("settings", m.string, t, ref, max_bandwidth=rate),
        _upd("settings.max_bandwidth", rate, ref),
        _version("<=", 6, 1, ref),
    ]


def _set_downtime(ctx, m, t, ref, err):
    limit = float(m.group(1))
    if ctx.progress_seen:
        # PVE <= 6.1 logged its automatic doubling this way.
        return [_ev("downtime-change", m.string, t, ref, downtime_limit=limit, auto=True)]
    return [
        _ev("settings", m.string, t, ref, downtime_limit=limit),
        _upd("settings.downtime_limit", limit, ref),
        _version("<=", 6, 1, ref),
    ]


def _auto_downtime(ctx, m, t, ref, err):
    limit = float(m.group(1)) / 1000.0
    return [_ev("downtime-change", m.string, t, ref, downtime_limit=limit, auto=True)]


def _waiting(ctx, m, t, ref, err):
    return [_ev("status", m.string, t, ref, status=m.group(1)), _version(">=", 9, 0, ref)]


def _average(ctx, m, t, ref, err):
    speed, downtime = float(_bytes(m, 1)), float(m.group(3)) / 1000.0
    ctx.downtime = downtime
    return [
        _ev("summary", m.string, t, ref, average_speed=speed, downtime=downtime),
        _upd("run.downtime", downtime, ref),
        _upd("meta.average_speed", speed, ref),
        _upd("meta.average_speed_meaning", "ram-total-per-second", ref),
    ]


def _old_speed(ctx, m, t, ref, err):
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


def _completed_summary(ctx, m, t, ref, err):
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


def _status(ctx, m, t, ref, err):
    status = m.group(1)
    kind = "completed" if status == "completed" else "status"
    return [_ev(kind, m.string, t, ref, status=status)]


def _status_error(ctx, m, t, ref, err):
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


def _failed(ctx, m, t, ref, err):
    return [_ev("error", m.string, t, ref), _outcome("failed", m.string, ref)]


def _online_failure(ctx, m, t, ref, err):
    reason = m.group(1).strip()
    if "interrupted by signal" in reason or "received interrupt" in reason:
        return [
            _ev("cancelled", m.string, t, ref, error=reason, by="operator"),
            _outcome("cancelled", "interrupted by signal (the task was stopped)", ref),
        ]
    # "aborting" only repeats a failure already reported by 'migration status error'.
    weak = reason == "aborting"
    return [_ev("error", m.string, t, ref, error=reason), _outcome("failed", reason, ref, weak)]


def _interrupt(ctx, m, t, ref, err):
    return [
        _ev("cancelled", m.string, t, ref, by="operator"),
        _outcome("cancelled", "interrupt received (the task was stopped)", ref),
    ]


def _migrate_cancel(ctx, m, t, ref, err):
    # Issued on every phase-2 rollback; it only means "cancelled" if nothing else said why.
    return [
        _ev("cancelled", m.string, t, ref),
        _outcome("cancelled", "migrate_cancel issued", ref, weak=True),
    ]


def _finished_ok(ctx, m, t, ref, err):
    recs = [_ev("finished", m.string, t, ref, ok=True), _upd("run.duration", hms(m.group(2)), ref)]
    if m.group(1) == "successfuly":
        recs.append(_version("<=", 3, 4, ref))
    recs.append(_upd("meta.task_end", True, ref))
    return recs


def _finished_problems(ctx, m, t, ref, err):
    return [
        _ev("finished", m.string, t, ref, ok=False, problems=True),
        _upd("run.duration", hms(m.group(1)), ref),
        _upd("meta.problems", True, ref),
        _upd("meta.task_end", True, ref),
    ]


def _aborted(ctx, m, t, ref, err):
    reason = m.group(2).strip()
    status = "cancelled" if "interrupted by signal" in reason else "failed"
    return [
        _ev("finished", m.string, t, ref, ok=False, error=reason),
        _upd("run.duration", hms(m.group(1)), ref),
        _outcome(status, reason, ref),
        _upd("meta.task_end", True, ref),
    ]


def _task_ok(ctx, m, t, ref, err):
    return [_ev("finished", m.string, t, ref, ok=True, task=True), _upd("meta.task_end", True, ref)]


def _task_error(ctx, m, t, ref, err):
    message = m.group(1).strip()
    return [
        _ev("finished", m.string, t, ref, ok=False, task=True, error=message),
        _upd("meta.task_error", message, ref),
        _upd("meta.task_end", True, ref),
    ]


def _warning(ctx, m, t, ref, err):
    recs: Records = [_ev("warning", m.string, t, ref)]
    if m.string.startswith("conntrack state migration"):
        recs.append(_version(">=", 9, 0, ref))
    return recs


def _chrome(ctx, m, t, ref, err):
    return []


def _elision(ctx, m, t, ref, err):
    return [
        _upd("warning", f"line {ref.line}: lines were elided ('{m.string}') in this copy", ref),
        _upd("meta.elided", 1, ref),
    ]


# (prefix, substring or "", regex, handler, needs a stamp).  First match wins.
_S = _simple
_TEMPLATE_SPECS: list[tuple[str, str, str, Handler, bool]] = [
    ("starting migration of VM ", "", r"starting migration of VM (\S+) to node '([^']*)'(?: \(([^)]*)\))?", _migration_start, False),
    ("use dedicated network address", "", r"use dedicated network address for sending migration traffic \(([^)]*)\)", _network, False),
    ("starting VM ", "", r"starting VM (\S+) on remote node '([^']*)'", _target_start, False),
    ("task started by HA resource agent", "", r".*", _ha, False),
    ("Requesting HA migration", "", r".*", _ha, False),
    ("found ", "disk", r"found (local|local, replicated|generated) disk '([^']*)'(?: \((.*)\))?", _local_disk, False),
    ("copying local disk images", "", r".*", _S("disk-scan"), False),
    ("copying disk images", "", r".*", _S("disk-scan"), False),
    ("volume '", "", r"volume '[^']*' is '[^']*' on the target", _S("disk-scan"), False),
    ("drive '", "", r"drive '[^']*': .*", _S("disk-scan"), False),
    ("Allocating volume for drive", "", r".*", _S("disk-scan"), False),
    ("can't migrate local disk", "", r".*", _S("error"), False),
    ("Problem found while scanning volumes", "", r".*", _S("error"), False),
    ("replicating disk images", "", r".*", _S("replication"), False),
    ("start replication job", "", r".*", _S("replication"), False),
    ("end replication job with error", "", r".*", _S("error"), False),
    ("end replication job", "", r".*", _S("replication"), False),
    ("guest => VM", "", r".*", _S("replication"), False),
    ("volumes => ", "", r".*", _S("replication"), False),
    ("freeze guest filesystem", "", r".*", _S("replication"), False),
    ("thaw guest filesystem", "", r".*", _S("replication"), False),
    ("create snapshot '", "", r".*", _S("replication"), False),
    ("delete previous replication snapshot", "", r".*", _S("replication"), False),
    ("incremental sync '", "", r".*", _S("replication"), False),
    ("full sync '", "", r".*", _S("replication"), False),
    ("using secure transmission", "", r".*", _S("replication"), False),
    ("using insecure transmission", "", r".*", _S("replication"), False),
    ("", ": start tracking writes using block-dirty-bitmap", r"\S+: start tracking writes.*", _S("replication"), False),
    ("start remote tunnel", "", r".*", _S("tunnel"), False),
    ("ssh tunnel ver", "", r".*", _S("tunnel"), False),
    ("starting ssh migration tunnel", "", r".*", _ssh_tunnel_old, False),
    ("websocket tunnel started", "", r".*", _websocket, False),
    ("tunnel: ", "", r".*", _websocket, False),
    ("Setting up tunnel for", "", r".*", _websocket, False),
    ("local WS tunnel version", "", r".*", _websocket, False),
    ("remote WS tunnel version", "", r".*", _websocket, False),
    ("minimum required WS tunnel version", "", r".*", _websocket, False),
    ("remote: started tunnel worker", "", r".*", _websocket, False),
    ("starting storage migration", "", r".*", _storage_start, False),
    ("", ": start migration to ", r"(\S+): start migration to (\S+)", _drive_start, False),
    ("drive mirror is starting for ", "", r"drive mirror is starting for (\S+?)(?: with bandwidth limit: (\d+) KiB/s)?$", _mirror_starting, False),
    ("drive mirror re-using dirty bitmap", "", r".*", _S("storage-start"), False),
    ("switching mirror jobs to actively synced mode", "", r".*", _active_mode, False),
    ("", "successfully switched to actively synced mode", r".*", _S("storage-ready"), False),
    ("", ": switching to actively synced mode", r".*", _S("storage-start"), False),
    ("", ": transferred ", rf"(\S+): transferred {_SIZE} of {_SIZE} \(([0-9.]+)%\) in ([0-9wdhms ]+?)(?:, (ready|still busy))?$", _mirror_progress, False),
    ("", ": transferred: ", r"(\S+): transferred: (\d+) bytes remaining: (\d+) bytes total: (\d+) bytes progression: ([0-9.]+) % busy: (\d+) ready: (\d+)", _mirror_progress_old, False),
    ("all 'mirror' jobs are ready", "", r".*", _S("storage-ready"), False),
    ("", ": Completing block job", r".*", _S("cleanup"), False),
    ("", ": Completed successfully", r".*", _S("cleanup"), False),
    ("", ": mirror-job finished", r".*", _S("cleanup"), False),
    ("", ": Cancelling block job", r".*", _S("cleanup"), False),
    ("", "' has been cancelled", r".*", _S("cleanup"), False),
    ("", ": Done.", r"\S+: Done\.$", _S("cleanup"), False),
    ("", "block job cannot be completed", r".*", _S("warning"), False),
    ("block job (", "", r".*", _S("error"), False),
    ("Failed to complete", " storage migration", r".*", _failed, False),
    ("starting online/live migration on ", "", r"starting online/live migration on (\S+)", _ram_start, False),
    ("start migrate command to ", "", r"start migrate command to (\S+)", _ram_start, False),
    ("migrate uri => ", "", r".*", _failed, False),
    ("set migration capabilities", "", r".*", _caps, False),
    ("set migration_caps", "", r".*", _caps, False),
    ("migration speed limit: ", "", rf"migration speed limit: {_SIZE}/s", _speed_limit, False),
    ("migration downtime limit: ", "", r"migration downtime limit: ([0-9.]+) ms", _downtime_limit, False),
    ("capping downtime limit", "", r"capping downtime limit to maximum possible: ([0-9.]+) ms", _cap_downtime, False),
    ("migration cachesize: ", "", rf"migration cachesize: {_SIZE}", _cachesize, False),
    ("set cachesize: ", "", r"set cachesize: (\d+)", _cachesize, False),
    ("set migration parameters", "", r".*", _set_params, False),
    ("migrate_set_speed: ", "", r"migrate_set_speed: (\d+)", _set_speed, False),
    ("migrate_set_downtime: ", "", r"migrate_set_downtime: ([0-9.]+)", _set_downtime, False),
    ("spice client_migrate_info", "", r".*", _S("settings"), False),
    ("migrate-set-parameters error", "", r".*", _S("warning"), False),
    ("migrate_set_downtime error", "", r".*", _S("warning"), False),
    ("migrate-set-cache-size error", "", r".*", _S("warning"), False),
    ("client_migrate_info error", "", r".*", _S("warning"), False),
    ("migration in status '", "", r"migration in status '([\w-]+)' - waiting for transition", _waiting, False),
    ("query migrate failed", "", r".*", _S("warning"), False),
    ("auto-increased downtime", "", r"auto-increased downtime to continue migration: ([0-9.]+) ms", _auto_downtime, False),
    ("average migration speed: ", "", rf"average migration speed: {_SIZE}/s - downtime (\d+) ms", _average, False),
    ("migration speed: ", "", r"migration speed: ([0-9.]+) MB/s - downtime (\d+) ms", _old_speed, False),
    ("migration completed, ", "", rf"migration completed, transferred {_SIZE} VM-state(?: \(\+ {_SIZE} VFIO-state\))?", _completed_summary, False),
    ("migration status error: ", "", r"migration status error: ([\w-]+)(?: - (.*))?", _status_error, False),
    ("migration status: ", "", r"migration status: ([\w-]+)\s*$", _status, False),
    ("unable to parse migration status", "", r".*", _failed, False),
    ("online migrate failure - ", "", r"online migrate failure - (.*)", _online_failure, False),
    ("received interrupt", "", r".*", _interrupt, False),
    ("aborting phase ", "", r".*", _S("cleanup"), False),
    ("migrate_cancel error", "", r".*", _S("warning"), False),
    ("migrate_cancel", "", r"migrate_cancel\s*$", _migrate_cancel, False),
    ("query-status error", "", r".*", _S("error"), False),
    ("resuming VM failed", "", r".*", _S("error"), False),
    ("VM was paused, but ended in postmigrate", "", r".*", _S("error"), False),
    ("stopping NBD storage migration server", "", r".*", _S("cleanup"), False),
    ("issuing guest fstrim", "", r".*", _S("cleanup"), False),
    ("skipping guest fstrim", "", r".*", _S("cleanup"), False),
    ("fstrim failed", "", r".*", _S("warning"), False),
    ("stopping migration dbus-vmstate helpers", "", r".*", _S("cleanup"), False),
    ("migrated ", "conntrack state entr", r".*", _S("cleanup"), False),
    ("flushing conntrack state", "", r".*", _S("cleanup"), False),
    ("Waiting for spice server migration", "", r".*", _S("cleanup"), False),
    ("stopping vm failed", "", r".*", _S("error"), False),
    ("Cleanup after stopping VM failed", "", r".*", _S("error"), False),
    ("removing local copy of", "", r".*", _S("error"), False),
    ("failed to clear migrate lock", "", r".*", _S("error"), False),
    ("migration finished ", "(duration ", r"migration finished (successfully|successfuly) \(duration (\d+:\d\d:\d\d)\)", _finished_ok, False),
    ("migration finished with problems", "", r"migration finished with problems \(duration (\d+:\d\d:\d\d)\)", _finished_problems, False),
    ("migration aborted (duration ", "", r"migration aborted \(duration (\d+:\d\d:\d\d)\): ?(.*)", _aborted, False),
    ("TASK OK", "", r"TASK OK\s*$", _task_ok, False),
    ("TASK ERROR: ", "", r"TASK ERROR: (.*)", _task_error, False),
    ("conntrack state migration not supported", "", r".*", _warning, False),
    ("stopped left-over dbus-vmstate helper", "", r".*", _warning, False),
    ("attempt to clean up left-over fleecing", "", r".*", _warning, False),
    ("WARNING: ", "", r".*", _warning, False),
    ("migrating VM which uses", "", r".*", _S("info"), False),
    ("mapped: ", "", r".*", _S("info"), False),
    ("[", "] ", r"\[([^\]\s]+)\] (.*)", _target_output, True),
    ("Task viewer: ", "", r".*", _chrome, False),
]
_TEMPLATES = [
    (prefix, needle, re.compile(pattern).match, handler, stamp)
    for prefix, needle, pattern, handler, stamp in _TEMPLATE_SPECS
]


def match_template(msg: str, stamped: bool) -> tuple[Handler, re.Match[str]] | None:
    for prefix, needle, match, handler, needs_stamp in _TEMPLATES:
        if msg.startswith(prefix) and needle in msg and (stamped or not needs_stamp):
            m = match(msg)
            if m is not None:
                return handler, m
    return None


def classify(
    ctx: Context,
    msg: str,
    t: float | None,
    no: int,
    line: str,
    stamped: bool,
    err: bool,
    probe: bool = False,
) -> Records:
    """Records for one line that is not a progress/xbzrle line.

    With ``probe`` only tell whether the line is a known template (non-empty list),
    without touching ``ctx``: used to decide whether a bare line continues the last one.
    """
    text = msg.strip()
    if not stamped and (text in _CHROME or text in _ELISIONS):
        if probe:
            return [True]
        handler = _elision if text in _ELISIONS else _chrome
        return handler(ctx, re.match(r".*", text), t, SourceRef(no, line), err)
    found = match_template(msg, stamped)
    if probe:
        return [True] if found else []
    ref = SourceRef(no, line)
    if found is None:
        kind = "error" if err else "info"
        return [Event(t, kind, msg, {"unrecognised": True}, ref)]
    handler, m = found
    return handler(ctx, m, t, ref, err)
