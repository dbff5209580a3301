"""Explain a migration log: every informative line with a note, a timeline, a diagnosis.

``explain(run)`` returns an :class:`Explanation`; ``migtune explain`` renders it as text
or JSON.  Per-line notes live in :mod:`explain_proxmox` and :mod:`explain_qemu`; this
module walks the lines, builds the phase timeline and adds the diagnosis.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from migtune.analysis import explain_proxmox, explain_qemu, explain_qmp
from migtune.analysis.diagnose import Diagnosis, diagnose
from migtune.analysis.explain_ctx import Ctx
from migtune.analysis.findings import ExplainedLine, Phase
from migtune.analysis.live import timeline_rows
from migtune.analysis.metrics import Metrics, count_remaining_jumps, storage_window
from migtune.model import Event, Run, Sample
from migtune.settings import describe
from migtune.sources import fewer_collections
from migtune.units import format_bytes, format_duration, format_rate


@dataclass(slots=True)
class Explanation:
    format: str
    lines: ExplainedLines  # iterable; computed line by line each time it is walked
    timeline: list[Phase]
    diagnosis: Diagnosis
    summary: list[str] = field(default_factory=list)  # a few sentences: what happened
    # live predictions recorded during the run, and the decisions they justified
    predictions: list[dict] = field(default_factory=list)

    @property
    def metrics(self) -> Metrics:
        return self.diagnosis.metrics


class ExplainedLines:
    """Every line of the run's source with its notes, made while iterating.

    The source is read again on each walk (``Run.lines`` is a re-readable source), so a
    1 GB log is explained in bounded memory; walking twice costs twice.  Indexing and
    ``len`` work too (they walk the whole log: meant for small logs and tests).
    """

    def __init__(self, run: Run, m: Metrics):
        self._run, self._m = run, m

    def __iter__(self) -> Iterator[ExplainedLine]:
        return _explained_lines(self._run, self._m)

    def walk(self, wanted: Callable[[int], bool]) -> Iterator[ExplainedLine | None]:
        """Like iterating, but ``None`` for each line where ``wanted(line_no)`` is False.

        For an excerpt of a huge log: Proxmox lines not wanted only update the running
        context (their notes would be the slow part); the wanted ones get the same notes
        as in the full explanation.
        """
        return _explained_lines(self._run, self._m, wanted)

    def __bool__(self) -> bool:
        return next(iter(self), None) is not None

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __getitem__(self, index):
        return list(self)[index]


def explain(run: Run) -> Explanation:
    diagnosis = diagnose(run)
    m = diagnosis.metrics
    return Explanation(
        format=run.format,
        lines=ExplainedLines(run, m),
        timeline=timeline(run, m),
        diagnosis=diagnosis,
        summary=summary(run, m),
        predictions=timeline_rows(run),
    )


def _explained_lines(
    run: Run, m: Metrics, wanted: Callable[[int], bool] | None = None
) -> Iterator[ExplainedLine | None]:
    # A huge log streams through here as through the parse: see fewer_collections.
    with fewer_collections():
        yield from _explained(run, m, wanted)


def _explained(
    run: Run, m: Metrics, wanted: Callable[[int], bool] | None
) -> Iterator[ExplainedLine | None]:
    ctx = Ctx(run=run, m=m, fmt=run.format, page_size=_page_size(run))
    samples: dict[int, Sample] = {}
    for s in run.samples:
        if s.source is not None:
            samples.setdefault(s.source.line, s)
    for e in run.events:
        if e.source is not None:
            ctx.events_by_line.setdefault(e.source.line, []).append(e)
    reparsed = _reparsed_samples(run)
    proxmox = run.format == "proxmox"
    events_by_line = ctx.events_by_line
    for no, text in _numbered_lines(run):
        notes: list[str] = []
        # (``text and not text.isspace()`` is ``text.strip()`` without a copy of the line)
        if wanted is not None and not wanted(no) and proxmox:
            if text and not text.isspace() and not text.startswith("#"):
                sample = samples.get(no)
                if sample is None and reparsed is not None:
                    sample = reparsed(no)
                explain_proxmox.advance(text, sample, ctx)
            yield None
            continue
        if text and not text.isspace() and not text.startswith("#"):
            if proxmox:
                sample = samples.get(no)
                if sample is None and reparsed is not None:
                    sample = reparsed(no)
                notes = explain_proxmox.notes_for(text, sample, ctx)
            elif '"execute"' in text:
                notes = explain_qmp.command_notes(text, ctx)
            elif no in samples and _one_line_object(text):
                notes = explain_qmp.sample_notes(samples[no], ctx)
            elif '"migtune-recording"' in text:
                notes = [f"migtune recording header; settings in force: {describe(run.settings)}"]
            else:
                notes = explain_qemu.notes_for(text, ctx)
        if not notes and no in events_by_line:
            notes = event_notes(events_by_line[no])
        yield ExplainedLine(no, text, notes)


def _reparsed_samples(run: Run) -> Callable[[int], Sample | None] | None:
    """For a thinned Proxmox run: the sample of any line, by parsing the source again.

    Per-line notes compare each progress line with the ones before it, so they need
    every sample; the run kept only some (see migtune.bounded).  The Proxmox reader is
    a stream, so a second pass alongside the lines costs time, not memory.  Other
    formats explain thinned-away sample lines from their text alone.
    """
    if not getattr(run.samples, "thinned", False) or run.format != "proxmox":
        return None
    if run.lines is None:
        return None
    from migtune.sources.proxmox import iter_records

    records = iter_records(_blanked_header(_lines_of(run.lines)))
    pending: list[Sample | None] = [None]

    def sample_at(no: int) -> Sample | None:
        cur = pending[0]
        while cur is None or (cur.source is not None and cur.source.line < no):
            rec = next(records, None)
            if rec is None:
                pending[0] = None
                return None
            if type(rec) is Sample:
                cur = rec
        pending[0] = cur
        return cur if cur.source is not None and cur.source.line == no else None

    return sample_at


_QMP_EVENTS = {
    "STOP": "the source vCPUs stopped: the guest's downtime starts here",
    "RESUME": "the guest runs again",
    "MIGRATION_PASS": "QEMU synced the dirty bitmap: a new pass starts",
}
_KIND_NOTES = {
    "ram-start": "the RAM copy starts here",
    "postcopy-start": "switch to post-copy: the guest runs on the destination and fetches missing pages",
    "cancelled": "the migration is cancelled; the guest stays on the source",
    "storage-ready": "the disks are in sync on the destination",
    "completed": "the RAM copy finished",
}


def event_notes(events: list[Event]) -> list[str]:
    """Generic notes from what the parser understood of a line (any format)."""
    notes: list[str] = []
    for e in events:
        d = e.data
        if e.kind == "downtime-change" and isinstance(d.get("downtime_limit"), (int, float)):
            notes.append(
                f"downtime limit set to {format_duration(d['downtime_limit'])} during the migration"
            )
        elif e.kind == "bandwidth-change" and isinstance(d.get("max_bandwidth"), (int, float)):
            cap = d["max_bandwidth"]
            notes.append(f"bandwidth cap set to {format_rate(cap) if cap else 'unlimited'}")
        elif e.kind == "throttle-change" and d.get("throttle_pct") is not None:
            notes.append(f"auto-converge now throttles the vCPUs by {d['throttle_pct']:g}%")
        elif e.kind == "qmp-event" and d.get("event") in _QMP_EVENTS:
            notes.append(_QMP_EVENTS[d["event"]])
        elif e.kind == "status" and isinstance(d.get("status"), str):
            notes += explain_qemu.status_meaning(d["status"])
        elif e.kind == "info" and "pass" in d:
            notes.append(f"pass {d['pass']} starts (dirty-bitmap sync)")
        elif e.kind == "prediction" and isinstance(d.get("text"), str):
            notes.append(
                f"migtune's live prediction from the first {format_duration(d.get('t'))} "
                f"of the migration: {d['text']}"
            )
        elif isinstance(d.get("prediction"), dict) and e.message:
            notes.append(f"migtune policy decision, justified by the live prediction: {e.message}")
        elif e.kind in ("error", "warning") and e.message:
            notes.append(f"{e.kind}: {e.message}")
        elif e.kind in _KIND_NOTES:
            notes.append(_KIND_NOTES[e.kind])
    return list(dict.fromkeys(notes))


def _blanked_header(lines: Iterator[str]) -> Iterator[str]:
    """The lines with the leading ``#`` block blanked, as the parse read them
    (sources.blank_header_comments, without a generator step per line after it)."""
    head: list[str] = []
    for line in lines:
        if line.startswith("#"):
            head.append("")
            continue
        head.append(line)
        if line.strip():
            break
    return itertools.chain(head, lines)


def _one_line_object(text: str) -> bool:
    body = text.strip()
    return body.startswith("{") and body.endswith("}") and body.count(":") > 2


def _page_size(run: Run) -> int | None:
    return next((s.page_size for s in run.samples if s.page_size), None)


def _lines_of(lines: Iterable[str]) -> Iterator[str]:
    batches = getattr(lines, "batches", None)
    if batches is not None:  # a LineSource: its lists of lines, chained in C
        return itertools.chain.from_iterable(batches())
    return iter(lines)


def _numbered_lines(run: Run) -> Iterable[tuple[int, str]]:
    if run.lines is not None:
        return enumerate(_lines_of(run.lines), 1)
    # No source text kept (e.g. a Run built in code): rebuild it from the source refs.
    refs: dict[int, str] = {}
    for item in [*run.samples, *run.events]:
        if item.source is not None:
            refs.setdefault(item.source.line, item.source.text)
    return sorted(refs.items())


def _first(run: Run, *kinds: str) -> Event | None:
    return next((e for e in run.events if e.kind in kinds and e.t is not None), None)


def _last(run: Run, *kinds: str) -> Event | None:
    return next((e for e in reversed(run.events) if e.kind in kinds and e.t is not None), None)


def _pass_boundary(run: Run) -> float | None:
    """Time the second pass began, where the log shows it."""
    for s in run.samples:
        if s.t is not None and s.passes is not None and s.passes >= 2:
            # The final sample only says that pass 2 began at some point before it.
            first = s is run.samples[0] or s.status == "completed"
            return None if first else s.t
    prev = None
    for s in run.samples:
        if s.remaining is None or s.t is None:
            continue
        if prev is not None and s.remaining > prev.remaining and count_remaining_jumps([prev, s]):
            return s.t
        prev = s
    return None


def _pass1_over_by(run: Run) -> float | None:
    """First time transferred exceeded the RAM size: pass 1 had ended by then."""
    for s in run.samples:
        if s.status == "completed":
            break  # the final counters say nothing about when pass 1 ended
        if s.t is not None and s.transferred and s.total and s.transferred > s.total:
            return s.t
    return None


PHASE_NOTES = {
    "setup": "checks, volume scan, locking",
    "qemu-setup": "QEMU connects and syncs the dirty bitmap",
    "target-start": "the destination QEMU starts, paused, waiting for RAM",
    "storage-copy": "local disks mirrored over NBD",
    "first-pass": "every non-zero page sent once",
    "dirty-passes": "pages the guest re-dirtied, sent again",
    "ram-copy": "RAM copy (pass boundaries not in the log)",
    "switchover": "last passes and stop-and-copy (between polls)",
    "downtime": "guest paused on the source (QEMU's measurement)",
    "cleanup": "config moved, VM resumed on the target, source stopped",
    "rollback": "migration stopped, target cleaned up",
}


def timeline(run: Run, m: Metrics) -> list[Phase]:
    phases: list[Phase] = []

    def add(name: str, start: float | None, end: float | None, note: str | None = None) -> None:
        if start is not None:
            phases.append(Phase(name, start, end, note or PHASE_NOTES[name]))

    begin = _first(run, "task-start", "migration-start", "migration-network", "disk-scan")
    target = _first(run, "target-start")
    ram = _first(run, "ram-start")
    completed = _first(run, "completed")
    finished = _first(run, "finished")
    stop = _first(run, "cancelled", "error")
    timed = [s.t for s in run.samples if s.t is not None]
    qemu_level = run.format in ("qmp", "hmp", "libvirt")
    # QEMU-level clocks (total-time) start at the migrate command.
    ram_start = ram.t if ram else (0.0 if qemu_level and timed else None)
    if qemu_level:
        setup = next((s.setup_time for s in run.samples if s.setup_time is not None), None)
        if setup is not None and ram_start is not None:
            add("setup", ram_start, ram_start + setup, PHASE_NOTES["qemu-setup"])
            ram_start += setup
    elif begin is not None:
        add("setup", begin.t, target.t if target else ram_start)
    if target is not None:
        t_end = target.t + m.target_start_s if m.target_start_s is not None else None
        add("target-start", target.t, t_end)
    storage = storage_window(run)
    if storage is not None:
        add("storage-copy", storage[0], storage[1] if storage[1] is not None else ram_start)
    ram_end = completed.t if completed else (stop.t if stop else (max(timed) if timed else None))
    if run.status == "completed" and run.format != "proxmox" and timed:
        ram_end = max(timed)
    progress = [s.t for s in run.samples if s.t is not None and s.status != "completed"]
    last_progress = max(progress, default=None)
    # Proxmox logs no progress for the last poll(s): the gap up to "completed" is switch-over.
    copy_end = last_progress if completed and run.format == "proxmox" and progress else ram_end
    boundary = _pass_boundary(run)
    by = _pass1_over_by(run) if boundary is None else None
    if boundary is not None:
        add("first-pass", ram_start, boundary)
        add("dirty-passes", boundary, copy_end)
    elif by is not None:
        add(
            "first-pass",
            ram_start,
            by,
            "every non-zero page sent once (ended by here at the latest)",
        )
        add("dirty-passes", by, copy_end)
    else:
        add("ram-copy", ram_start, copy_end)
    if completed and run.format == "proxmox" and progress and completed.t > last_progress:
        add("switchover", last_progress, completed.t)
    if run.downtime is not None and ram_end is not None:
        add("downtime", ram_end - run.downtime, ram_end)
    if completed is not None and finished is not None and finished.t >= completed.t:
        add("cleanup", completed.t, finished.t)
    if stop is not None and run.status in ("cancelled", "failed"):
        last = _last(run, "cleanup", "cancelled", "error", "finished")
        add("rollback", stop.t, last.t if last else stop.t)
    return phases


def summary(run: Run, m: Metrics) -> list[str]:
    out = []
    what = {"completed": "completed", "failed": "failed", "cancelled": "was cancelled"}.get(
        run.status, "was still running when the log ends"
    )
    vm = f"VM {run.vm}" if run.vm else "The VM"
    to = f" to {run.target}" if run.target else ""
    ram = f" ({format_bytes(m.ram_bytes)} RAM)" if m.ram_bytes else ""
    out.append(f"{vm}{ram} migration{to} {what}.")
    if m.throughput:
        src = {
            "transferred-deltas": "from the transferred counters",
            "qemu-mbps": "QEMU's own measurement",
            "ram-phase-average": "bytes sent / RAM phase",
        }.get(m.throughput_source or "", "")
        out.append(f"Real throughput {format_rate(m.throughput)} ({src}).")
    if m.transferred_bytes is not None and m.ram_bytes:
        out.append(f"Sent {format_bytes(m.transferred_bytes)}, {m.sent_ratio:.2f}x the RAM.")
    if m.duration_s is not None and m.ram_duration_s is not None and run.format == "proxmox":
        out.append(
            f"Task {format_duration(m.duration_s)}: RAM phase {format_duration(m.ram_duration_s)}, "
            f"orchestration {format_duration(m.orchestration_s)}."
        )
    if m.downtime_s is not None:
        out.append(f"Reported downtime {format_duration(m.downtime_s)}.")
    return out
