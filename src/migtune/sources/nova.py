"""nova-compute log lines of the libvirt driver's live-migration monitor (docs/platforms.md
§3).

Lines may carry the oslo.log prefix (``2026-01-05 10:00:00.123 12345 INFO
nova.virt.libvirt.driver [req-...] [instance: <uuid>] <message>``) or be bare messages
as people quote them.  Understood messages:

* ``Migration running for N secs, memory P% remaining (bytes processed=..., remaining=...,
  total=...); disk P% remaining (...)`` (Train+) and the older ``...remaining; (bytes
  ...)`` form without disk part -> samples (``t`` = the N seconds);
* ``Increasing downtime to N ms after M sec elapsed time`` -> ``downtime-change``
  events; from them the nova.conf downtime settings are inferred (§3.2) into
  ``run.meta["nova"]``;
* start, completion, abort, cancel, failure, post-copy and completion-timeout lines.

Time: ``t`` is seconds since the migration started.  With the prefix, ``run.t0`` is
the wall-clock start: the ``Starting monitoring`` line, else a progress or downtime
line's stamp minus the seconds it reports, else the first stamp.  Lines about a second instance are
left out with a warning.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

from migtune.errors import InputError
from migtune.model import Event, Run, Sample, SourceRef
from migtune.sources._common import MAX_WARNINGS, add_sample_events, warn
from migtune.sources._nova_infer import infer_downtime_config
from migtune.units import GiB

FORMAT = "nova"

_PREFIX_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2}) (?P<time>\d{2}:\d{2}:\d{2}(?:\.\d+)?) (?P<pid>\d+) "
    r"(?P<level>[A-Z]+) (?P<logger>[\w.]+)(?: \[(?P<req>[^\]]*)\])?"
    r"(?: \[instance: (?P<inst>[0-9a-fA-F-]+)\])? ?(?P<msg>.*)$"
)
_RUNNING_RE = re.compile(
    r"Migration running for (?P<secs>\d{1,24}) secs, memory (?P<pct>\d{1,24})% remaining;? "
    r"\(bytes processed=(?P<proc>\d{1,24}), remaining=(?P<rem>\d{1,24}), total=(?P<total>\d{1,24})\)"
    r"(?:; disk (?P<dpct>\d{1,24})% remaining \(bytes processed=(?P<dproc>\d{1,24}), "
    r"remaining=(?P<drem>\d{1,24}), total=(?P<dtotal>\d{1,24})\))?"
)
_DOWNTIME_RE = re.compile(
    r"Increasing downtime to (?P<ms>\d{1,24}) ms after (?P<secs>\d{1,24}) sec elapsed time"
)
_DOWNTIME_FAIL_RE = re.compile(
    r"Unable to increase max downtime to (?P<ms>\d{1,24}) ms: (?P<err>.*)"
)
_TIMEOUT_RE = re.compile(r"Live migration not completed after (?P<secs>\d{1,24}) sec")
_FAILURE_RE = re.compile(r"Live Migration failure: (?P<err>.*)")
_MONITOR_ERR_RE = re.compile(r"Error monitoring migration: (?P<err>.*)")

# Plain messages: text -> (event kind, status it implies or None)
_MESSAGES = {
    "Starting monitoring of live migration": ("migration-start", None),
    "About to invoke the migrate API": ("ram-start", None),
    "Migrate API has completed": ("info", None),
    "Migration operation thread has finished": ("info", None),
    "Migration operation thread notification": ("info", None),
    "Live migration monitoring is all done": ("info", None),
    "Migration operation has completed": ("completed", "completed"),
    "Migration operation has aborted": ("error", "failed"),
    "Migration operation was cancelled": ("cancelled", "cancelled"),
    "Switching to post-copy migration mode": ("postcopy-start", None),
}
_AUTO_CONVERGE_MSG = "auto-converge will not be in use"


def sniff(lines: Sequence[str]) -> float:
    score = 0.0
    for line in lines:
        if _DOWNTIME_RE.search(line) or _RUNNING_RE.search(line):
            score += 0.4
        elif "nova.virt.libvirt" in line or "nova.compute" in line:
            score += 0.2
        elif any(
            msg in line for msg in ("Live Migration failure:", "Live migration not completed")
        ):
            score += 0.3
        if score >= 1.0:
            return 1.0
    return min(score, 1.0)


def _stamp(m: re.Match[str]) -> float | None:
    try:
        value = _dt.datetime.fromisoformat(f"{m.group('date')}T{m.group('time')}")
    except ValueError:
        return None
    return value.replace(tzinfo=_dt.UTC).timestamp()


class _Record:
    __slots__ = ("no", "raw", "stamp", "msg", "level", "elapsed")

    def __init__(self, no: int, raw: str, stamp: float | None, msg: str, level: str | None):
        self.no, self.raw, self.stamp, self.msg, self.level = no, raw, stamp, msg, level
        self.elapsed: float | None = None


def _collect(run: Run, lines: Iterable[str]) -> tuple[list[_Record], float | None, bool]:
    """Pass 1: split prefixes, keep one instance's lines; the first stamp of all, and
    whether any line (of that instance) had the oslo.log prefix.

    Only the lines parse() can use are kept, so a whole nova-compute.log (gigabytes of
    other messages around one migration) is read in bounded memory: the migration's
    own lines, and the first :data:`MAX_WARNINGS` + 1 unprefixed others (each is a
    warning while the log has no prefixed line; warnings stop at that cap).
    """
    records: list[_Record] = []
    instance: str | None = None
    others: set[str] = set()
    first_stamp: float | None = None
    prefixed = False
    bare_others = 0  # unprefixed lines kept only for their warning
    for no, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text:
            continue
        m = _PREFIX_RE.match(text)
        if m:
            inst = m.group("inst")
            msg = m.group("msg")
            if inst:
                if instance is None and _is_migration(msg):
                    instance = inst
                    run.vm = inst
                elif instance is not None and inst != instance:
                    others.add(inst)
                    continue
            stamp = _stamp(m)
            if first_stamp is None and stamp is not None:
                first_stamp = stamp
            if not prefixed:
                prefixed = True
                if bare_others:  # they would not be warned about after all
                    records = [r for r in records if r.level is not None or _understood(r.msg)]
            if _understood(msg):
                records.append(_Record(no, raw, stamp, msg, m.group("level")))
        elif _understood(text):
            records.append(_Record(no, raw, None, text, None))
        elif not prefixed and bare_others <= MAX_WARNINGS:
            bare_others += 1
            records.append(_Record(no, raw, None, text, None))
    if others:
        # Not a defect of this run's log, so the run is not marked partial.
        run.warnings.append(
            f"lines about {len(others)} other instance(s) left out: {', '.join(sorted(others))}"
        )
    return records, first_stamp, prefixed


def _understood(msg: str) -> bool:
    """A message parse() makes something of (the tests of its loop, in one)."""
    return bool(
        _RUNNING_RE.search(msg)
        or _DOWNTIME_RE.search(msg)
        or _DOWNTIME_FAIL_RE.search(msg)
        or _TIMEOUT_RE.search(msg)
        or _FAILURE_RE.search(msg)
        or _MONITOR_ERR_RE.search(msg)
        or _AUTO_CONVERGE_MSG in msg
        or any(k in msg for k in _MESSAGES)
    )


def _is_migration(msg: str) -> bool:
    return bool(
        _RUNNING_RE.search(msg)
        or _DOWNTIME_RE.search(msg)
        or any(key in msg for key in _MESSAGES)
        or "Live Migration failure" in msg
    )


def _origin(records: list[_Record], first_stamp: float | None) -> float | None:
    """Wall-clock start of the migration (see module docstring)."""
    for r in records:
        if r.stamp is not None and "Starting monitoring of live migration" in r.msg:
            return r.stamp
    # nova counts "running for N secs" from the start of monitoring.
    for pattern in (_RUNNING_RE, _DOWNTIME_RE):
        for r in records:
            m = pattern.search(r.msg) if r.stamp is not None else None
            if m:
                return r.stamp - float(m.group("secs"))
    return first_stamp  # of any line


def parse(lines: Iterable[str]) -> Run:
    run = Run(format=FORMAT)
    records, first_stamp, prefixed = _collect(run, lines)
    t0 = _origin(records, first_stamp)
    run.t0 = t0
    status = "unknown"
    steps: list[tuple[float, int]] = []
    recognised = 0
    for r in records:
        ref = SourceRef(r.no, r.raw)
        t = round(r.stamp - t0, 3) if r.stamp is not None and t0 is not None else None
        msg = r.msg
        if m := _RUNNING_RE.search(msg):
            recognised += 1
            s = _sample(m, ref)
            run.samples.append(s)
            status = status if status != "unknown" else "active"
            continue
        if m := _DOWNTIME_RE.search(msg):
            recognised += 1
            ms, secs = int(m.group("ms")), float(m.group("secs"))
            steps.append((secs, ms))
            data: dict[str, Any] = {"downtime_limit": ms / 1000.0, "elapsed": secs}
            # nova logs the step's scheduled time; the line's own stamp may be later.
            when = secs if t is None else t
            run.events.append(Event(when, "downtime-change", f"downtime limit {ms} ms", data, ref))
            status = status if status != "unknown" else "active"
            continue
        if m := _DOWNTIME_FAIL_RE.search(msg):
            recognised += 1
            run.events.append(
                Event(t, "warning", msg, {"downtime_limit": int(m.group("ms")) / 1000.0}, ref)
            )
            continue
        if m := _TIMEOUT_RE.search(msg):
            recognised += 1
            data = {"elapsed": float(m.group("secs"))}
            run.events.append(Event(t, "warning", "completion timeout reached: " + msg, data, ref))
            continue
        if m := _FAILURE_RE.search(msg):
            recognised += 1
            run.events.append(Event(t, "error", m.group("err").strip(), {}, ref))
            status = "failed"
            continue
        if m := _MONITOR_ERR_RE.search(msg):
            recognised += 1
            run.events.append(Event(t, "warning", msg, {}, ref))
            continue
        if _AUTO_CONVERGE_MSG in msg:
            recognised += 1
            run.settings.capabilities["postcopy-ram"] = True
            run.events.append(Event(t, "info", msg, {}, ref))
            continue
        hit = next((k for k in _MESSAGES if k in msg), None)
        if hit is not None:
            recognised += 1
            kind, implied = _MESSAGES[hit]
            run.events.append(Event(t, kind, hit, {}, ref))
            if implied and status != "failed":
                status = implied
            elif kind in ("migration-start", "ram-start", "postcopy-start") and status == "unknown":
                status = "active"
            continue
        if r.level is None and not prefixed:
            # Bare quoted messages: anything else is worth a warning.  In a real log,
            # unprefixed lines are tracebacks or continuations of the line before.
            warn(run, f"line {r.no}: not a nova-compute migration line: {msg[:80]}")
    if not recognised:
        raise InputError("no nova-compute live-migration lines found")
    run.status = status
    _finish(run, steps)
    return run


def _sample(m: re.Match[str], ref: SourceRef) -> Sample:
    s = Sample(t=float(m.group("secs")), status="active", source=ref)
    s.transferred = int(m.group("proc"))
    s.remaining = int(m.group("rem"))
    s.total = int(m.group("total"))
    s.total_time = s.t
    if m.group("dtotal") is not None and int(m.group("dtotal")) > 0:
        s.disk_transferred = int(m.group("dproc"))
        s.disk_remaining = int(m.group("drem"))
        s.disk_total = int(m.group("dtotal"))
    return s


def _finish(run: Run, steps: list[tuple[float, int]]) -> None:
    run.ram_bytes = next((s.total for s in reversed(run.samples) if s.total), None)
    if run.samples:
        run.ram_duration = run.samples[-1].t
    if steps:
        first_secs, first_ms = steps[0]
        if first_secs == 0:
            run.settings.downtime_limit = first_ms / 1000.0
    disk = next((s.disk_total for s in reversed(run.samples) if s.disk_total), None)
    ram_gib = run.ram_bytes / GiB if run.ram_bytes else None
    disk_gib = disk / GiB if disk else None
    inferred = infer_downtime_config(steps, ram_gib=ram_gib, disk_gib=disk_gib)
    if inferred:
        run.meta["nova"] = inferred
    if run.status not in ("completed", "failed", "cancelled"):
        run.partial = run.partial or not run.samples
    add_sample_events(run)
