"""QMP ``query-migrate`` output in the shapes operators save it.

Accepted input:

1. **migtune recordings** (``migrate --record``, the lab, the simulator): delegated to
   :mod:`migtune.sources.recording`.
2. **One reply**: a single JSON object, pretty-printed or not, either the bare
   ``MigrationInfo`` or ``{"return": {...}}``.
3. **A sequence of replies** (JSON-lines, or pretty-printed objects one after the
   other, as a QMP wire log or ``qmp-shell`` transcript gives them).  Each object is
   one of:

   * a reply: ``{"return": {MigrationInfo}}``, ``{"query-migrate": {...}}`` or a bare
     ``MigrationInfo`` (an object with ``status`` or ``ram``);
   * a QMP event: ``{"event": "MIGRATION", "data": {"status": ...}, "timestamp": ...}``
     (also ``MIGRATION_PASS``, ``STOP``, ``RESUME``);
   * a command: ``{"execute": "migrate-set-parameters", "arguments": {...}}`` or
     ``migrate-set-capabilities`` (before the first sample they are the settings in
     force, later they become ``settings``/``downtime-change``/``bandwidth-change``
     events), and replies to ``query-migrate-parameters``/``-capabilities``.

   Time of an object, in this order: a QMP ``"timestamp": {"seconds": s,
   "microseconds": us}``; a ``"t"`` or ``"time"`` member in seconds (values above
   10**9 are epoch seconds, smaller ones seconds since the start); an ISO date-time
   in text before the object on its line (``2026-01-05T10:00:00.123Z QMP <<< {...}``).
   Epoch times are made relative to the first one, which becomes ``run.t0``.  A reply
   with no time at all gets QEMU's ``total-time`` as ``t``.
4. **Python dict dumps** (``pprint`` of the reply in a management agent's debug log,
   possibly with a log prefix on every line and cut off mid-dump): the common prefix
   is stripped and ``ast.literal_eval`` tried; when the dump is incomplete the
   ``'key': value`` lines are salvaged one by one into a partial sample.

Every reply goes through :func:`~migtune.sources.querymigrate.sample_from_query_migrate`.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from migtune.errors import InputError
from migtune.model import Event, Run, SourceRef
from migtune.settings import QMP_PARAMETERS, from_qmp_value
from migtune.sources import _pydump as pydump
from migtune.sources._common import (
    ISO_RE,
    JSON_DECODER,
    add_sample_events,
    finish_from_samples,
    iso_epoch,
    run_status,
    warn,
)
from migtune.sources.querymigrate import sample_from_query_migrate
from migtune.sources.recording import is_recording, parse_recording

FORMAT = "qmp"

_EPOCH_MIN = 1e9  # larger "t"/"time" values are wall-clock epoch seconds
_MIGRATION_KEYS = {"status", "ram", "total-time", "expected-downtime", "xbzrle-cache"}


def sniff(lines: Sequence[str]) -> float:
    if is_recording(lines):
        return 1.0
    head = [line.strip() for line in lines if line.strip()]
    if not head:
        return 0.0
    joined = "\n".join(head[:200])
    score = 0.0
    if head[0].startswith("{") or re.search(r"^\S.*?\s[<>]{1,3}\s*\{", head[0]):
        score += 0.3
    for key in ('"ram"', '"dirty-sync-count"', '"expected-downtime"', '"total-time"'):
        if key in joined:
            score += 0.2
    if '"return"' in joined or '"event": "MIGRATION' in joined:
        score += 0.2
    if score >= 0.5:
        return min(score, 0.95)
    return max(score, pydump.sniff(head))


def _obj_time(obj: dict[str, Any], prefix: str) -> float | None:
    ts = obj.get("timestamp")
    if isinstance(ts, dict) and isinstance(ts.get("seconds"), (int, float)):
        us = ts.get("microseconds")
        return float(ts["seconds"]) + (float(us) / 1e6 if isinstance(us, (int, float)) else 0.0)
    for key in ("t", "time"):
        v = obj.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return iso_epoch(prefix) if prefix.strip() else None


def _finite(value: Any) -> bool:
    """A number a QMP parameter can have (a Python dump may hold 1e999 or a huge int)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 2**64 and (isinstance(value, int) or math.isfinite(value))


class _Builder:
    """Turns decoded objects into samples, events and settings, in file order."""

    def __init__(self) -> None:
        self.run = Run(format=FORMAT)
        self.t0: float | None = None
        self.status_word: str | None = None

    def rel(self, t: float | None) -> float | None:
        if t is None or t < _EPOCH_MIN:
            return t
        if self.t0 is None:
            self.t0 = t
        return round(t - self.t0, 6)  # microsecond stamps; avoid float noise from epochs

    def add(self, obj: Any, ref: SourceRef, prefix: str = "") -> bool:
        """Interpret one decoded object; False if it means nothing to migtune."""
        if not isinstance(obj, dict):
            return False
        t = self.rel(_obj_time(obj, prefix))
        if isinstance(obj.get("event"), str):
            return self.event(obj, t, ref)
        if isinstance(obj.get("execute"), str):
            return self.command(obj["execute"], obj.get("arguments") or {}, t, ref)
        if "error" in obj and isinstance(obj["error"], dict):
            desc = str(obj["error"].get("desc", obj["error"]))
            self.run.events.append(Event(t, "warning", f"QMP error: {desc}", {}, ref))
            return True
        body = obj.get("return", obj.get("query-migrate", obj))
        if isinstance(body, list):
            return self.capability_list(body, t, ref)
        if not isinstance(body, dict):
            return False
        if "downtime-limit" in body or "max-bandwidth" in body:
            return self.parameters(body, t, ref)
        if not _MIGRATION_KEYS & body.keys():
            return body == {}  # the empty reply to a command: fine, nothing to record
        reasons = body.get("blocked-reasons")
        if isinstance(reasons, list):
            self.blocked(reasons, t, ref)
        sample = sample_from_query_migrate(body, t, ref)
        if sample.t is None:
            sample.t = sample.total_time
        self.run.samples.append(sample)
        if sample.status:
            self.status_word = sample.status
        return True

    def blocked(self, reasons: list[Any], t: float | None, ref: SourceRef) -> None:
        """``blocked-reasons``: why QEMU refuses to migrate (e.g. a device without support)."""
        known = self.run.meta.setdefault("blocked_reasons", [])
        for reason in reasons:
            if isinstance(reason, str) and reason not in known:
                known.append(reason)
                msg = f"migration blocked: {reason}"
                self.run.events.append(Event(t, "error", msg, {"reason": reason}, ref))

    def event(self, obj: dict[str, Any], t: float | None, ref: SourceRef) -> bool:
        name = obj["event"]
        data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
        if name == "MIGRATION" and isinstance(data.get("status"), str):
            self.status_word = data["status"]
            kind = "status"
            if data["status"] == "postcopy-active":
                kind = "postcopy-start"
            self.run.events.append(
                Event(t, kind, f"migration status {data['status']}", dict(data), ref)
            )
        elif name == "MIGRATION_PASS":
            self.run.events.append(Event(t, "info", f"pass {data.get('pass')}", dict(data), ref))
        else:
            self.run.events.append(Event(t, "qmp-event", name, {"event": name, "data": data}, ref))
        return True

    def command(self, name: str, args: Any, t: float | None, ref: SourceRef) -> bool:
        if not isinstance(args, dict):
            return True
        if name in ("migrate-set-parameters", "migrate_set_parameters"):
            return self.parameters(args, t, ref)
        if name == "migrate-set-capabilities":
            caps = args.get("capabilities") or []
            if not isinstance(caps, list):
                warn(self.run, f"line {ref.line}: 'capabilities' is not a list; ignored")
                return True
            return self.capability_list(caps, t, ref)
        if name == "migrate":
            uri = args.get("uri")
            self.run.events.append(Event(t, "ram-start", "migrate issued", dict(args), ref))
            if isinstance(uri, str) and self.run.settings.migration_uri is None:
                self.run.settings.migration_uri = uri
        elif name == "migrate_cancel":
            self.run.events.append(Event(t, "cancelled", "migrate_cancel issued", {}, ref))
        elif name == "migrate-start-postcopy":
            self.run.events.append(Event(t, "postcopy-start", "post-copy requested", {}, ref))
        return True

    def parameters(self, params: dict[str, Any], t: float | None, ref: SourceRef) -> bool:
        st = self.run.settings
        started = bool(self.run.samples)
        for key, value in params.items():
            if key in QMP_PARAMETERS and _finite(value):
                field = QMP_PARAMETERS[key][0]
                parsed = from_qmp_value(key, value)
                if started and getattr(st, field) != parsed:
                    kind = {
                        "downtime-limit": "downtime-change",
                        "max-bandwidth": "bandwidth-change",
                    }
                    self.run.events.append(
                        Event(
                            t,
                            kind.get(key, "settings"),
                            f"{key} = {value}",
                            {field: parsed, "name": key},
                            ref,
                        )
                    )
                elif getattr(st, field) is None:
                    setattr(st, field, parsed)
            elif not started:
                st.extra.setdefault(key, value)
        return True

    def capability_list(self, caps: list[Any], t: float | None, ref: SourceRef) -> bool:
        started = bool(self.run.samples)
        for item in caps:
            if not isinstance(item, dict) or not isinstance(item.get("capability"), str):
                continue
            name, on = item["capability"], bool(item.get("state"))
            if started:
                self.run.events.append(Event(t, "settings", f"{name} {on}", {name: on}, ref))
            else:
                self.run.settings.capabilities[name] = on
        return True

    def finish(self) -> Run:
        run = self.run
        run.t0 = self.t0
        run.status = run_status(self.status_word)
        add_sample_events(run, statuses=not any(e.kind == "status" for e in run.events))
        finish_from_samples(run)
        return run


def _stamp(text: str) -> str:
    """The ISO date-time in ``text`` (as text, to be read again by ``_obj_time``), or ""."""
    m = ISO_RE.search(text) if text.strip() else None
    return m.group(0) if m else ""


def _parse_json(lines: Sequence[str]) -> tuple[Run | None, int]:
    """Decode every JSON object in the text: the run (None if nothing in them is about a
    migration) and how many objects were decoded.

    Linear in the size of the text, however many objects share a line: the decoder
    starts at an index into the one joined string, and the text before an object (for
    its time stamp) is only what lies between it and the previous object.
    """
    text = "\n".join(lines)
    text_end = len(text.rstrip())
    b = _Builder()
    found = 0
    line_idx = 0
    line_start = 0  # offset of lines[line_idx] in text
    prev_end = 0  # where the previous object (or failed attempt) ended
    line_stamp = ""  # the date-time before the first object of the current line
    pos = text.find("{")
    while pos != -1:
        while True:  # advance to the line holding pos (each line is passed once)
            nxt = line_start + len(lines[line_idx]) + 1
            if nxt > pos or line_idx + 1 >= len(lines):
                break
            line_idx, line_start = line_idx + 1, nxt
        if prev_end <= line_start:  # first object on its line: the text before it
            prefix = text[line_start:pos]
            line_stamp = _stamp(prefix)
        else:  # a later one: the text since the previous object, else the line's stamp
            between = text[prev_end:pos]
            prefix = between if _stamp(between) else line_stamp
        try:
            obj, end = JSON_DECODER.raw_decode(text, pos)
        except RecursionError:
            obj, end = None, -1
        except ValueError as exc:
            at = getattr(exc, "pos", 0)
            obj, end = None, (-2 if at >= text_end else -1)
        if end == -2:
            # Cut off at the end of the file: keep what the last object still says.
            found += _salvage_tail(b, lines, line_idx)
            break
        if end < 0:
            warn(b.run, f"line {line_idx + 1}: not a complete JSON object")
            prev_end = line_start + len(lines[line_idx]) + 1
            pos = text.find("{", prev_end)
            continue
        found += 1
        ref = SourceRef(line_idx + 1, lines[line_idx])
        if not b.add(obj, ref, prefix):
            warn(b.run, f"line {line_idx + 1}: JSON object is not a query-migrate reply")
        prev_end = end
        pos = text.find("{", end)
    run = b.finish()
    if not found or (not run.samples and not run.events):
        return None, found
    if not run.samples:
        warn(run, "no query-migrate reply, only events or settings")
    return run, found


def _salvage_tail(b: _Builder, lines: Sequence[str], first: int) -> int:
    """Read the ``"key": value`` lines of a JSON object cut off by the end of the file."""
    value = pydump.salvage(list(lines[first:]))
    ref = SourceRef(first + 1, lines[first])
    if not value or not b.add(value, ref, lines[first].split("{", 1)[0]):
        warn(b.run, f"line {first + 1}: JSON cut off, nothing usable in it")
        return 0
    warn(b.run, f"line {first + 1}: JSON cut off at the end; values before the cut kept")
    return 1


def parse(lines: Iterable[str]) -> Run:
    it = iter(lines)
    head = list(itertools.islice(it, 64))
    if is_recording([line for line in head if line.strip()]):
        return parse_recording(itertools.chain(head, it))  # JSON lines: read as a stream
    # Pretty-printed or several-per-line JSON and dict dumps need the whole text.
    lines = head + list(it)
    run, objects = _parse_json(lines) if any("{" in line for line in lines) else (None, 0)
    dumps = pydump.find_dumps(lines)
    if run is not None and (run.samples or not dumps):
        return run
    if not dumps and not objects:
        raise InputError("no query-migrate reply found (expected JSON or a Python dict dump)")
    b = _Builder()
    for dump in dumps:
        ref = SourceRef(dump.line, lines[dump.line - 1])
        if dump.partial:
            leaves = pydump.count_values(dump.value)
            warn(b.run, f"line {dump.line}: dict dump cut off; {leaves} values before the cut kept")
        if not b.add(dump.value, ref):
            warn(b.run, f"line {dump.line}: dump is not a query-migrate reply")
    result = b.finish()
    if not result.samples and objects:
        # Valid JSON that says nothing about a migration, e.g. {"return": {}}: the reply
        # to some other command.
        what = "a QMP reply" if objects == 1 else f"{objects} QMP JSON objects"
        raise InputError(
            f"{what} with no migration info (query-migrate returns {{}} until a "
            "migration has started; expected replies with 'status' or 'ram')"
        )
    if not result.samples:
        raise InputError("no query-migrate reply found in the dict dumps")
    _check_samples(result)
    return result


def _check_samples(run: Run) -> None:
    for s in run.samples:
        if s.status is None and s.total is None:
            warn(run, f"line {s.source.line if s.source else '?'}: sample without status or RAM")
