"""migtune recordings: the JSON-lines format written by ``migrate --record``, the lab
and the simulator, and read back by every command as format ``qmp``.

One JSON object per line, each with a ``kind``:

``header`` (first line)
    ``{"kind": "header", "migtune-recording": 1, "origin": "lab"|"migrate"|"simulate",
    "created": ISO-8601, "t0": epoch seconds of t = 0, "qemu_version": "10.0.2",
    "settings": {Settings as dict}, "workload": spec string or null, "meta": {...}}``
``sample``
    ``{"kind": "sample", "t": seconds since t0, "query-migrate": {MigrationInfo}}`` -
    the reply of QMP ``query-migrate`` exactly as QEMU sent it (the ``return`` member).
``event``
    ``{"kind": "event", "t": s, "event": kind, "message": text, "data": {...}}`` - an
    action of migtune or its policy (e.g. ``downtime-change``) or a guest report;
    ``event`` is one of :data:`migtune.model.EVENT_KINDS` or ``guest-rate``.  A
    ``prediction`` event holds a live prediction (``migtune.analysis.live``): ``data``
    has ``t`` (the last sample it saw), ``available_t``, ``verdict`` (``converges``,
    ``will-not-converge``, ``uncertain``), ``members``, ``converged_members``,
    ``eta_s``, ``total_time_s``, ``downtime_ms``, ``max_throttle_pct`` (each min /
    median / max), ``time_limit_s``, ``text`` and ``alternatives`` (the same for each
    change a policy asked about, with its ``change``).  A policy action's ``data`` may
    carry the ``prediction`` that justified it.
``qmp-event``
    ``{"kind": "qmp-event", "t": s, "event": "MIGRATION", "data": {...}}`` - an
    asynchronous QMP event (``MIGRATION``, ``MIGRATION_PASS``, ``STOP``, ``RESUME``).
``result`` (last line, optional)
    ``{"kind": "result", ...}`` - the outcome object printed by ``--json``.

Lines that are not objects with a known ``kind`` are reported as warnings, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from migtune.model import Event, Run, SourceRef, settings_from_dict
from migtune.sources._common import MAX_WARNINGS, json_loads, warn
from migtune.sources.querymigrate import sample_from_query_migrate

MAGIC = "migtune-recording"
VERSION = 1


def is_recording(lines: Sequence[str]) -> bool:
    for line in lines[:5]:
        stripped = line.strip()
        if not stripped:
            continue
        return stripped.startswith("{") and f'"{MAGIC}"' in stripped
    return False


def _status_from(run: Run) -> str:
    last = next((s.status for s in reversed(run.samples) if s.status), None)
    for e in reversed(run.events):
        if e.kind == "qmp-event" and e.data.get("event") == "MIGRATION":
            status = _dict(e.data.get("data")).get("status")
            last = status if isinstance(status, str) else last
            break
    if last in ("completed",):
        return "completed"
    if last in ("failed",):
        return "failed"
    if last in ("cancelled", "cancelling"):
        return "cancelled"
    if last:
        return "active"
    return "unknown"


def parse_recording(lines: Iterable[str]) -> Run:
    run = Run(format="qmp")
    for no, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        ref = SourceRef(no, line)
        try:
            obj = json_loads(text)
        except ValueError:
            warn(run, f"line {no}: not JSON (truncated recording?)")
            continue
        if not isinstance(obj, dict):
            warn(run, f"line {no}: not a JSON object")
            continue
        kind = obj.get("kind")
        t = obj.get("t")
        t = float(t) if isinstance(t, (int, float)) else None
        if kind == "header":
            _header(run, obj, no)
        elif kind == "sample" and isinstance(obj.get("query-migrate"), dict):
            run.samples.append(sample_from_query_migrate(obj["query-migrate"], t, ref))
        elif kind == "event":
            run.events.append(
                Event(
                    t,
                    str(obj.get("event", "info")),
                    str(obj.get("message", "")),
                    _dict(obj.get("data")),
                    ref,
                )
            )
        elif kind == "qmp-event":
            name = str(obj.get("event", ""))
            data = {"event": name, "data": _dict(obj.get("data"))}
            run.events.append(Event(t, "qmp-event", name, data, ref))
        elif kind == "result":
            run.meta["result"] = {k: v for k, v in obj.items() if k != "kind"}
        else:
            # Capped like every parser's warnings: a long garbage tail stays readable.
            if len(run.warnings) < MAX_WARNINGS:
                run.warnings.append(f"line {no}: unknown record kind {kind!r}")
    run.status = _status_from(run)
    _fill_outcome(run)
    return run


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _header(run: Run, obj: dict[str, Any], no: int) -> None:
    """The header's settings and meta; members of the wrong type are warnings."""
    for key, kind in (("settings", dict), ("meta", dict), ("t0", (int, float))):
        value = obj.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            warn(run, f"line {no}: header {key!r} is not a {_KIND_NAMES[key]}; ignored")
    run.settings = settings_from_dict(_dict(obj.get("settings")))
    version = obj.get("qemu_version")
    if isinstance(version, str) and version:
        run.settings.qemu_version = version
    t0 = obj.get("t0")
    run.t0 = float(t0) if isinstance(t0, (int, float)) and not isinstance(t0, bool) else None
    run.meta.update(_dict(obj.get("meta")))
    run.meta["origin"] = obj.get("origin") if isinstance(obj.get("origin"), str) else None
    run.meta["workload"] = obj.get("workload") if isinstance(obj.get("workload"), str) else None
    vm = run.meta.get("vm")
    run.vm = str(vm) if isinstance(vm, (str, int)) and not isinstance(vm, bool) else None


_KIND_NAMES = {"settings": "JSON object", "meta": "JSON object", "t0": "number"}


def _fill_outcome(run: Run) -> None:
    last = run.last
    if last is None:
        run.partial = True
        run.warnings.append("recording has no query-migrate samples")
        return
    run.ram_bytes = next((s.total for s in reversed(run.samples) if s.total), None)
    run.downtime = last.downtime
    run.ram_duration = last.total_time


def header_record(
    origin: str,
    settings: dict[str, Any],
    t0: float,
    qemu_version: str | None = None,
    workload: str | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import datetime as _dt

    return {
        "kind": "header",
        MAGIC: VERSION,
        "origin": origin,
        "created": _dt.datetime.fromtimestamp(t0, _dt.UTC).isoformat(),
        "t0": t0,
        "qemu_version": qemu_version,
        "settings": settings,
        "workload": workload,
        "meta": meta or {},
    }
