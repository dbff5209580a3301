"""Proxmox VE migration task logs (``qm migrate`` / HA migrate), every version since PVE 3.

:func:`iter_records` (in :mod:`migtune.sources.proxmox_lines`) reads the log as a stream;
:func:`parse` folds that stream into a :class:`~migtune.model.Run`: settings in force,
progress samples, events, outcome, and facts the analysis needs in ``run.meta``.

What the numbers mean (docs/platforms.md §1.3): the per-line ``Z/s`` is the page
rate including zero pages, so it goes to ``Sample.page_rate`` and ``throughput`` stays
unknown (the analysis derives it from transferred deltas); ``average migration speed``
is RAM size over whole seconds, kept in ``meta["average_speed"]`` with its meaning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from migtune.model import Event, Run, Sample
from migtune.sources._common import warn
from migtune.sources.proxmox_lines import ASSUMED_YEAR, Record, Update, iter_records

__all__ = ["FORMAT", "iter_records", "parse", "sniff", "Update", "ASSUMED_YEAR"]

FORMAT = "proxmox"
# Proxmox sets max-bandwidth to 16 GiB/s when no limit is configured (6.4-2+, §1.8).
PROXMOX_UNLIMITED_BANDWIDTH = float(16 * 1024**3)
_TOO_OLD_RE = re.compile(
    r"Installed QEMU version '([^']+)' is too old to run machine type '([^']+)'"
)


def sniff(lines: Sequence[str]) -> float:
    """Share of the (non-blank) head lines that are known Proxmox templates."""
    known = unknown = 0
    for rec in iter_records(lines[:200]):
        if isinstance(rec, Sample):
            known += 1
        elif isinstance(rec, Event):
            if rec.data.get("unrecognised"):
                unknown += 1
            elif rec.kind != "info":
                known += 1
    if known == 0:
        return 0.0
    return min(1.0, known / (known + unknown) + (0.1 if known >= 3 else 0.0))


class _Folder:
    """Applies records to a Run in line order and settles run-level facts at the end."""

    def __init__(self) -> None:
        self.run = Run(format=FORMAT)
        self.outcome: dict[str, Any] | None = None
        self.weak_outcome: dict[str, Any] | None = None
        self.ram_start: float | None = None
        self.ram_end: float | None = None
        self.ram_completed = False
        self.finished_ok = False
        self.task_error = False
        self.task_end = False
        self.versions: dict[str, tuple[int, int]] = {}
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.unrecognised = 0
        self.auto_increases = 0
        self.downtime_limit_last: float | None = None
        self.local_disks: list[str] = []
        self.websocket = False

    def add(self, rec: Record) -> None:
        run = self.run
        if type(rec) is Sample:
            run.samples.append(rec)
            self._clock(rec.t)
            return
        if type(rec) is Update:
            self._update(rec)
            return
        run.events.append(rec)
        self._clock(rec.t)
        kind, data = rec.kind, rec.data
        if data.get("unrecognised"):
            self.unrecognised += 1
        elif kind == "ram-start":
            if not self.ram_completed and self.outcome is None:
                self.ram_start = rec.t
        elif kind == "completed":
            self.ram_completed = True
            if self.ram_end is None:
                self.ram_end = rec.t
        elif kind == "downtime-change":
            self.auto_increases += 1
            self.downtime_limit_last = data.get("downtime_limit")
        elif kind == "finished":
            if data.get("ok"):
                self.finished_ok = True
            elif data.get("task"):
                self.task_error = True
        elif kind == "target-output":
            m = _TOO_OLD_RE.search(rec.message)
            if m:
                run.meta["target_qemu_version"] = m.group(1)
                run.meta["machine_type"] = m.group(2)
                data["version_skew"] = True

    def _clock(self, t: float | None) -> None:
        if t is not None:
            if self.first_t is None:
                self.first_t = t
            self.last_t = t

    def _update(self, u: Update) -> None:
        run, key, value = self.run, u.key, u.value
        if key == "warning":
            warn(run, value)
        elif key == "outcome":
            if value.get("weak"):
                self.weak_outcome = self.weak_outcome or value
            elif self.outcome is None:
                self.outcome = value
                if self.ram_end is None:
                    self.ram_end = self.last_t
        elif key == "version":
            op, version = value
            old = self.versions.get(op)
            if old is None or (version > old if op == ">=" else version < old):
                self.versions[op] = version
        elif key.startswith("settings."):
            setattr(run.settings, key[9:], value)
        elif key.startswith("capability."):
            run.settings.capabilities[key[11:]] = value
        elif key.startswith("extra."):
            run.settings.extra[key[6:]] = value
        elif key.startswith("run."):
            setattr(run, key[4:], value)
        elif key == "meta.local_disk":
            if value not in self.local_disks:
                self.local_disks.append(value)
        elif key == "meta.elided":
            run.meta["elided"] = run.meta.get("elided", 0) + 1
        elif key == "meta.websocket":
            self.websocket = True
        elif key == "meta.task_end":
            self.task_end = True
        elif key.startswith("meta."):
            run.meta[key[5:]] = value

    def finish(self) -> Run:
        run, meta, settings = self.run, self.run.meta, self.run.settings
        started = self.ram_start is not None or bool(run.samples)
        # Status: the first stated reason wins (a cancel is followed by rollback errors).
        outcome = self.outcome
        if outcome is None and self.weak_outcome and not self.ram_completed:
            outcome = self.weak_outcome
        if outcome is not None:
            run.status = outcome["status"]
            meta["reason"] = outcome["reason"]
        elif self.ram_completed or self.finished_ok:
            run.status = "completed"
        elif self.task_error:
            run.status = "failed"
            meta["reason"] = meta.get("task_error")
        elif started:
            run.status = "active"
        if run.status == "cancelled" and "interrupt" in (meta.get("reason") or ""):
            meta["cancelled_by"] = "operator"
        # RAM phase: from the QMP migrate command to completion or the first failure.
        if self.ram_start is not None and self.ram_end is not None:
            run.ram_duration = max(0.0, self.ram_end - self.ram_start)
        meta["ram_start"] = self.ram_start
        if self.first_t is not None and self.last_t is not None:
            meta["log_span"] = self.last_t - self.first_t
        self._ram_bytes()
        self._settings_defaults()
        if self.websocket:
            settings.migration_type = "websocket"
        meta.setdefault("pve_format", None)
        meta["ha"] = bool(meta.get("ha"))
        meta["local_disks"] = self.local_disks
        meta.setdefault("storage_migration", False)
        meta["auto_increase_count"] = self.auto_increases
        if self.downtime_limit_last is not None:
            meta["final_downtime_limit"] = self.downtime_limit_last
        meta["unrecognised_lines"] = self.unrecognised
        meta["pve_version"] = _version_text(self.versions)
        if not self.task_end:
            warn(run, "log ends before the task's final line ('TASK OK' / 'TASK ERROR')")
        if not run.samples and not run.events:
            warn(run, "no Proxmox migration lines found")
        return run

    def _ram_bytes(self) -> None:
        run, meta = self.run, self.run.meta
        total = next((s.total for s in reversed(run.samples) if s.total), None)
        if total is not None:
            run.ram_bytes = total
            meta["ram_bytes_source"] = "progress"
        elif meta.get("average_speed") and run.ram_duration:
            run.ram_bytes = _from_average(meta["average_speed"], run.ram_duration, meta)
        for s in run.samples:
            if s.status == "completed" and s.total is None:
                s.total = run.ram_bytes

    def _settings_defaults(self) -> None:
        s, meta = self.run.settings, self.run.meta
        # PVE >= 6.4 leaves out the speed-limit line when none applies and sets 16 GiB/s.
        if (
            s.max_bandwidth is None
            and meta.get("parameters_set")
            and meta.get("pve_format") == "new"
        ):
            s.max_bandwidth = PROXMOX_UNLIMITED_BANDWIDTH
            s.extra["max_bandwidth_source"] = "proxmox-default"


def _from_average(speed: float, seconds: float, meta: dict[str, Any]) -> int | None:
    """RAM size from the summary speed, which is RAM ÷ whole seconds (§1.3).

    The whole-second delay Proxmox used can differ by one from the log's stamps; an
    old ``MB/s`` value times the right delay is a whole number of MiB, which picks it.
    """
    old = meta.get("average_speed_meaning") == "configured-memory-per-second"
    mib = speed / 1024**2
    delays = [d for d in (seconds, seconds - 1, seconds + 1) if d > 0]
    if old:
        best = min(
            delays, key=lambda d: (abs(mib * d - round(mib * d)) > 0.005 * d, delays.index(d))
        )
        meta["ram_bytes_source"] = "old summary speed x seconds (configured memory)"
        meta["configured_memory"] = int(round(mib * best)) * 1024**2
        return meta["configured_memory"]
    meta["ram_bytes_source"] = "average speed x seconds (approximate)"
    return int(speed * seconds)


def _version_text(versions: dict[str, tuple[int, int]]) -> str | None:
    low, high = versions.get(">="), versions.get("<=")
    if low and high and low > high:
        return None  # contradicting hints (mixed or edited log)
    if low and high:
        return f"{low[0]}.{low[1]}-{high[0]}.{high[1]}"
    if low:
        return f">={low[0]}.{low[1]}"
    if high:
        return f"<={high[0]}.{high[1]}"
    return None


def parse(lines: Iterable[str], observe: Callable[[Record], None] | None = None) -> Run:
    """Fold a whole Proxmox task log into a Run; never raises on odd lines.

    ``observe`` sees every record too, after the folder (the report's log excerpt of a
    huge log is made in the same pass).
    """
    folder = _Folder()
    add = folder.add
    append = folder.run.samples.append
    # Half the records of a long log are samples: what add() does with one, inline.
    if observe is None:
        for rec in iter_records(lines):
            if type(rec) is Sample:
                append(rec)
                if rec.t is not None:
                    folder.last_t = rec.t
                    if folder.first_t is None:
                        folder.first_t = rec.t
            else:
                add(rec)
    else:
        for rec in iter_records(lines):
            add(rec)
            observe(rec)
    return folder.finish()
