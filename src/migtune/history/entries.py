"""A run as a history row, and a row back as JSON or a Run.

The row keeps the text the run was read from (recording or log), so anything computed
from it later (a calibration, a new analysis) can be computed again from the same
bytes; the outcome and settings are kept besides, as JSON, for listing and export
without parsing every log again.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from migtune import __version__
from migtune.errors import InputError
from migtune.history.store import iso_from_epoch, now_iso
from migtune.model import Run, to_dict
from migtune.outcome import Outcome, outcome_from_run

# Above this the raw text is not kept (the summary still is): a 1 GB Proxmox log would
# make every backup of the history 50 MB bigger for a run nobody will recalibrate.
MAX_RAW_BYTES = 256 * 1024**2
_META_SKIP = {"path", "comments", "result"}  # the file name is `source`; the rest is in raw


@dataclass(frozen=True)
class StoredText:
    """A run's text as the history keeps it."""

    blob: bytes | None  # zlib-compressed text; None when above MAX_RAW_BYTES
    encoding: str | None
    size: int  # bytes of the uncompressed text
    sha256: str


def compress(raw: bytes) -> StoredText:
    sha = hashlib.sha256(raw).hexdigest()
    if len(raw) > MAX_RAW_BYTES:
        return StoredText(None, None, len(raw), sha)
    return StoredText(zlib.compress(raw, 6), "zlib", len(raw), sha)


def compress_file(path: str, chunk: int = 1 << 20) -> StoredText:
    """:func:`compress` of a file read in chunks: a log of any size costs at most its
    compressed size in memory (and nothing once past MAX_RAW_BYTES)."""
    sha, size = hashlib.sha256(), 0
    z: Any = zlib.compressobj(6)
    parts: list[bytes] = []
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            sha.update(block)
            size += len(block)
            if z is not None and size > MAX_RAW_BYTES:
                z, parts = None, []  # too big to keep: only size and hash
            if z is not None:
                parts.append(z.compress(block))
    if z is None:
        return StoredText(None, None, size, sha.hexdigest())
    parts.append(z.flush())
    return StoredText(b"".join(parts), "zlib", size, sha.hexdigest())


def host_of(uri: str | None) -> str | None:
    """The host of a QEMU migration URI (``tcp:10.0.0.2:4444``, ``tcp:[::1]:4444``)."""
    if not uri:
        return None
    m = re.match(r"^(?:tcp|rdma|ssh|exec)?:?\[?([^\]/]+?)\]?:\d+$", uri.strip())
    if m:
        return m.group(1)
    if uri.startswith(("unix:", "file:", "fd:")):
        return "localhost"
    return None


def this_host() -> str:
    return socket.gethostname()


def run_row(
    run: Run,
    raw: bytes | StoredText,
    *,
    origin: str,
    vm: str | None = None,
    source: str | None = None,
    outcome: Outcome | None = None,
    source_host: str | None = None,
    target_host: str | None = None,
    workload: str | None = None,
) -> dict[str, Any]:
    """The history row of one run (``raw``: the text it was read from)."""
    o = outcome or outcome_from_run(run, recording=source)
    text = raw if isinstance(raw, StoredText) else compress(raw)
    started = iso_from_epoch(run.t0)
    added = now_iso()
    meta = {k: v for k, v in run.meta.items() if k not in _META_SKIP}
    meta = {"partial": run.partial, "warnings": run.warnings[:20], **meta}
    lab = run.meta.get("lab") if isinstance(run.meta.get("lab"), dict) else {}
    ram = run.ram_bytes or lab.get("ram")
    return {
        "at": started or added,
        "added_at": added,
        "started_at": started,
        "origin": origin,
        "vm": vm if vm is not None else run.vm,
        "source_host": source_host,
        "target_host": target_host or run.target or host_of(run.settings.migration_uri),
        "qemu_version": run.settings.qemu_version,
        "format": run.format,
        "source": source,
        "status": o.status,
        "converged": int(bool(o.converged)),
        "total_time_s": o.total_time_s,
        "downtime_ms": o.downtime_ms,
        "transferred_bytes": o.transferred_bytes,
        "passes": o.passes,
        "max_throttle_pct": o.max_throttle_pct,
        "ram_bytes": int(ram) if isinstance(ram, (int, float)) and ram else None,
        "workload": workload or run.meta.get("workload"),
        "summary": json.dumps(o.to_dict(), default=str),
        "settings": json.dumps(to_dict(run.settings), default=str),
        "meta": json.dumps(meta, default=str),
        "raw": text.blob,
        "raw_encoding": text.encoding,
        "raw_bytes": text.size,
        "raw_sha256": text.sha256,
        "migtune_version": __version__,
    }


# Keys of a run in `history list --json` (a contract: add keys, never rename or drop).
LIST_KEYS = (
    "id", "at", "added_at", "started_at", "origin", "vm", "source_host", "target_host",
    "qemu_version", "format", "source", "status", "converged", "total_time_s",
    "downtime_ms", "transferred_bytes", "passes", "max_throttle_pct", "ram_bytes",
    "workload", "raw_bytes", "raw_sha256", "raw_stored",
)  # fmt: skip


def listed(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row.get(k) for k in LIST_KEYS}
    out["converged"] = bool(out["converged"])
    out["raw_stored"] = bool(out["raw_stored"])
    return out


def detailed(row: dict[str, Any], calibrations: list[dict[str, Any]]) -> dict[str, Any]:
    """A run for `history show --json` and `export`: the listed keys, the outcome
    object, the settings, what the source said besides, and the calibrations that used it."""
    out = listed(row)
    out["summary"] = json.loads(row["summary"] or "null")
    out["settings"] = json.loads(row["settings"] or "null")
    out["meta"] = json.loads(row["meta"] or "null")
    out["calibrations"] = [calibration_brief(c) for c in calibrations]
    return out


def calibration_brief(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": c["id"],
        "vm": c["vm"],
        "created_at": c["created_at"],
        "run_ids": json.loads(c["run_ids"] or "[]"),
        "workload": c["workload"],
        "plausible": json.loads(c["plausible"] or "[]"),
        "reproduces_all": bool(c["reproduces_all"]),
        "drifted": bool(c["drifted"]),
        "low_confidence": bool(c["low_confidence"]),
        "errors": json.loads(c["errors"] or "{}"),
    }


_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_SINCE_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> str:
    """``2d``, ``12h``, ``30min``, ``1w`` ago, or an ISO date or time (local time unless
    it has an offset), as the ISO-8601 UTC string rows are compared with."""
    from datetime import UTC

    now = now or datetime.now(UTC)
    m = _SINCE.match(text)
    if m:
        ago = float(m.group(1)) * _SINCE_UNITS[m.group(2).lower()]
        try:
            return (now - timedelta(seconds=ago)).isoformat(timespec="seconds")
        except OverflowError:
            return "0001-01-01T00:00:00+00:00"
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"--since: {text!r} is neither a duration (2d, 12h, 30min, 1w) nor an ISO date "
            "or time (2026-11-30, 2026-11-30T06:00)"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # a bare date or time is the operator's local time
    return when.astimezone(UTC).isoformat(timespec="seconds")
