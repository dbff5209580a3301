"""The explained-log excerpt of a huge Proxmox log, made while the log is parsed.

A report of a 1 GB log shows a few thousand of its lines (:mod:`logview`).  Their notes
depend on every progress line before them (rates over a window, pass numbers, remarks
made once), so the excerpt used to need a second read and a second parse of the whole
log.  :class:`ProxmoxExcerpt` rides along the one parse instead (``load_run(...,
observe=excerpt)``): it advances the explanation's running context over each line as
its record goes by, picks the lines to show as :class:`logview._Excerpt` does, and keeps
for each of them what its notes need (the context as it was there, the real rate its
line gives).  The notes themselves need the whole run's metrics, so they are written at
the end (:meth:`ProxmoxExcerpt.rows`), and they are those of ``migtune explain``.

One known difference: after the parse, the samples the run keeps are completed (the RAM
size on a final sample) and bounds-checked (an absurd value becomes "not known");
``explain`` then reads those kept samples, the excerpt saw them as parsed.  Only a
mangled log (a progress line after the final one, a counter out of range) shows it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from migtune.analysis import explain_proxmox
from migtune.analysis.explain import event_notes
from migtune.analysis.explain_ctx import Ctx
from migtune.analysis.explain_proxmox import advance
from migtune.analysis.metrics import Metrics
from migtune.model import Event, Run, Sample

LOG_EDGE = 50  # lines always kept at each end (as logview)
MUST_BUDGET = 150_000  # characters for non-routine lines (as logview) ...
ROUTINE_BUDGET = 150_000  # ... and for an even subset of the progress lines
NOTES_ESTIMATE = 220  # characters of notes per shown line: they are written at the end
_ROUTINE_KINDS = {"info", "storage-progress", "target-output", "status", "throttle-change"}

# A line that may be shown: (index among all lines, line number, text, its sample, its
# events, whether it must be shown, the real rate of its progress line, then the running
# context as it was before the line: previous sample, pass number, downtime limit in
# force, last XBZRLE overflow, remarks made, least and most transferred so far).  One flat
# tuple: one is made for each line of the log.
_Row = tuple
_NOTHING = 5  # rows of lines with nothing to explain end here (no context)


class _Pool:
    """Every ``stride``-th row offered, the stride doubling to stay within ``budget``."""

    def __init__(self, budget: int):
        self.budget, self.stride, self.offered, self.spent = budget, 1, 0, 0
        self.kept: list[_Row] = []

    def offer(self, row: _Row) -> None:
        n = self.offered
        self.offered += 1
        if n % self.stride:
            return
        self.kept.append(row)
        self.spent += _cost(row[2])
        while self.spent > self.budget and len(self.kept) > 1:
            self.stride *= 2
            self.kept = self.kept[::2]
            self.spent = sum(_cost(r[2]) for r in self.kept)


def _cost(text: str) -> int:
    return min(len(text), 300) + NOTES_ESTIMATE + 60


class ProxmoxExcerpt:
    """Observer of a Proxmox parse (see module doc); ``rows(run, m)`` at the end."""

    __slots__ = ("window", "ctx", "next_no", "samples", "events", "k", "head", "tail",
                 "must", "routine", "prev_pass", "sent_min", "sent_max", "_said",
                 "_finished", "_first", "_batch")  # fmt: skip

    def __init__(self) -> None:
        self.window: Any = None
        # The running context: the run and its metrics are not known yet; the notes
        # that need them are written at the end, with the real ones.
        self.ctx = Ctx(run=Run(format="proxmox"), m=Metrics(), fmt="proxmox")
        self.next_no = 1  # first line not handled yet
        self.samples: dict[int, Sample] = {}  # records of lines not handled yet
        self.events: dict[int, list[Event]] = {}
        self.k = -1  # index of the last line handled
        self.head: list[_Row] = []
        self.tail: deque[_Row] = deque()
        self.must = _Pool(MUST_BUDGET)
        self.routine = _Pool(ROUTINE_BUDGET)
        self.prev_pass: object = object()
        self.sent_min: float | None = None  # transferred over the progress lines so far
        self.sent_max: float | None = None
        self._said: frozenset[str] = frozenset()
        self._finished = False
        self._first, self._batch = 0, []  # the window's batch the last line came from

    # --- the parse calls these -----------------------------------------------------------

    def start(self, window: Any) -> None:
        self.window = window

    def __call__(self, rec: Any) -> None:
        src = getattr(rec, "source", None)
        if src is None:
            return  # an Update: a run-level fact, no line of its own to explain
        no = src.line
        nxt = self.next_no
        if no > nxt:
            # Records come in line order: the lines before this one are complete.
            line = self._line
            for done in range(nxt, no):
                line(done)
            self.next_no = no
        elif no < nxt:
            return
        if type(rec) is Sample:
            self.samples.setdefault(no, rec)
        else:
            self.events.setdefault(no, []).append(rec)

    # --- line by line, as analysis.explain walks a huge log for the report -----------------

    def _upto(self, end: int) -> None:
        line = self._line
        for no in range(self.next_no, end):
            line(no)
        self.next_no = end

    def _text(self, no: int) -> str | None:
        i = no - self._first
        if 0 <= i < len(self._batch):
            return self._batch[i]
        text = self.window.text(no) if self.window is not None else None
        batch = self.window.batch_of(no) if self.window is not None else None
        if batch is not None:
            self._first, self._batch = batch
        return text

    def _line(self, no: int) -> None:
        # Once per line of a huge log: kept lean (locals, one tuple per line).
        i = no - self._first
        text = self._batch[i] if 0 <= i < len(self._batch) else self._text(no)
        sample = self.samples.pop(no, None)
        events = self.events.pop(no, None) if self.events else None
        k = self.k = self.k + 1
        if not text or text.isspace() or text.startswith("#"):
            # Nothing to explain (a blank or comment line, or one no longer in the window).
            row: _Row = (k, no, text or "", None, None)
        else:
            c = self.ctx
            said = self._said
            if len(c.said) != len(said):
                said = self._said = frozenset(c.said)  # remarks are only ever added
            lo, hi = self.sent_min, self.sent_max
            prev, pass_no, limit_now, overflow = c.prev, c.pass_no, c.limit_now, c.last_overflow
            real = advance(text, sample, c)
            must = events is not None and any(e.kind not in _ROUTINE_KINDS for e in events)
            if sample is not None:
                if sample.passes != self.prev_pass:
                    must = True  # the first line of each pass
                    self.prev_pass = sample.passes
                sent = sample.transferred
                if sent is not None:
                    if lo is None or sent < lo:
                        self.sent_min = sent
                    if hi is None or sent > hi:
                        self.sent_max = sent
            row = (k, no, text, sample, events, must, real,
                   prev, pass_no, limit_now, overflow, said, lo, hi)  # fmt: skip
        if k < LOG_EDGE:
            self.head.append(row)
            return
        tail = self.tail
        tail.append(row)
        if len(tail) > LOG_EDGE:
            old = tail.popleft()
            if len(old) > _NOTHING:  # a line with something to explain
                (self.must if old[5] else self.routine).offer(old)

    # --- at the end ------------------------------------------------------------------------

    def finish(self) -> None:
        """Handle the lines after the last record (call once the parse is over)."""
        if self._finished:
            return
        self._finished = True
        end = self.window.end if self.window is not None else self.next_no - 1
        self._upto(max(end + 1, self.next_no))

    @property
    def total(self) -> int:
        self.finish()
        return self.k + 1

    @property
    def stride(self) -> int:
        return self.routine.stride

    def rows(self, run: Run, m: Metrics) -> list[tuple[int, int, str, list[str]]]:
        """(index, line number, text, notes) of the lines shown, in log order."""
        self.finish()
        chosen = self.head + sorted(self.must.kept + self.routine.kept) + list(self.tail)
        page_size = next((s.page_size for s in run.samples if s.page_size), None)
        return [(row[0], row[1], row[2], _notes(row, run, m, page_size)) for row in chosen]


def _notes(row: _Row, run: Run, m: Metrics, page_size: int | None) -> list[str]:
    """The notes ``migtune explain`` gives the line of ``row`` (see _Row)."""
    if len(row) <= _NOTHING:
        return []
    _k, _no, text, sample, events, _must, real = row[:7]
    prev, pass_no, limit_now, last_overflow, said, sent_min, sent_max = row[7:]
    c = Ctx(run=run, m=m, fmt="proxmox", page_size=page_size)
    c.prev, c.pass_no, c.limit_now, c.last_overflow = prev, pass_no, limit_now, last_overflow
    c.said = set(said)
    ram = m.ram_bytes
    # The once-only remarks on how much of RAM was sent depend on the RAM size, known
    # only now: given before this line if an earlier line was below / above it.
    if ram:
        if sent_min is not None and sent_min / ram < 1:
            c.said.add("pass1")
        if sent_max is not None and sent_max / ram >= 1:
            c.said.add("resend")
    try:
        if sample is not None and sample.transferred is not None:
            notes = explain_proxmox.progress_notes(sample, c, real)
        else:
            notes = explain_proxmox.notes_for(text, sample, c)
    except (ValueError, ArithmeticError):
        notes = []
    if not notes and events:
        notes = event_notes(events)
    return notes
