"""The explained log section: every line with its notes, folded by default.

A long run (a lab recording at 10 samples/s, an hour of Proxmox progress lines) would
make the page too big to attach to a ticket, so above a size budget the routine
progress lines are thinned evenly; every other line, the first sample of each pass,
and the head and tail of the log are always kept.

A log far above the budget (hundreds of MB) is never held: the explained lines are
walked once and an excerpt is kept as they pass (:class:`_Excerpt`): the head, the
tail, the lines that say something other than progress (set-up, setting changes,
errors, the first line of each pass) up to a cap, and an even subset of the rest.  The
page says how many lines it left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from html import escape
from typing import Any

from migtune.model import Run

LOG_BUDGET = 300_000  # characters of log text and notes kept in the page (~400 KB of HTML)
LOG_EDGE = 50  # lines always kept at each end
MAX_LINE_CHARS = 300  # longer lines (JSON dumps) are cut


def _esc(value: Any) -> str:
    return escape(str(value), quote=False)


MUST_BUDGET = LOG_BUDGET // 2  # streaming: cost kept for non-routine lines, the rest thinned
_ROUTINE_KINDS = {"info", "storage-progress", "target-output", "status", "throttle-change"}

Line = tuple[int, str, list[str]]


def iter_log_lines(run: Run, explanation: Any | None) -> Iterator[Line]:
    """(line number, text, notes) for every line of the source, one at a time."""
    if explanation is not None and getattr(explanation, "lines", None) is not None:
        return ((ln.line, ln.text, list(ln.notes)) for ln in explanation.lines)
    return ((i, text, []) for i, text in enumerate(run.lines or [], 1))


def log_lines(run: Run, explanation: Any | None) -> list[Line]:
    """(line number, text, notes) for every line of the source (small logs)."""
    return list(iter_log_lines(run, explanation))


def _cost(line: tuple[int, str, list[str]]) -> int:
    return min(len(line[1]), MAX_LINE_CHARS) + sum(len(n) for n in line[2]) + 60


def select(
    lines: list[tuple[int, str, list[str]]], run: Run, budget: int = LOG_BUDGET
) -> list[int]:
    """Indices of the lines to show: all if they fit in ``budget``, else a thinned set."""
    if sum(_cost(ln) for ln in lines) <= budget:
        return list(range(len(lines)))
    sample_pass: dict[int, int | None] = {
        s.source.line: s.passes for s in run.samples if s.source is not None
    }
    must: set[int] = set()
    routine: list[int] = []
    prev_pass: object = object()
    for k, (no, _text, _notes) in enumerate(lines):
        edge = k < LOG_EDGE or k >= len(lines) - LOG_EDGE
        if no not in sample_pass:
            must.add(k)  # set-up steps, setting changes, errors: never dropped
        elif edge or sample_pass[no] != prev_pass:
            must.add(k)  # the head, the tail and the first sample of each pass
        else:
            routine.append(k)
        if no in sample_pass:
            prev_pass = sample_pass[no]
    left = budget - sum(_cost(lines[k]) for k in must)
    if routine and left > 0:
        per = sum(_cost(lines[k]) for k in routine) / len(routine)
        take = min(len(routine), int(left / per))
        if take:
            stride = len(routine) / take
            must.update(routine[int(i * stride)] for i in range(take))
    return sorted(must)


def render(run: Run, explanation: Any | None, excerpt: Any | None = None) -> str:
    """The log section; ``excerpt``: a :class:`~migtune.report.logexcerpt.ProxmoxExcerpt`
    that rode along the parse, used for a thinned (huge) log instead of a second read."""
    if excerpt is not None and explanation is not None and _thinned(run):
        rows = excerpt.rows(run, explanation.metrics)
        what = "routine progress lines" if excerpt.stride == 1 else "lines (mostly progress)"
        why = (
            f"; {{left}} {what} left out to keep the page small: shown are the first and "
            "last lines, set-up, setting changes, errors, the first line of each pass and "
            "an even subset of the progress lines (`migtune explain` prints them all)"
        )
        return _section(run, explanation, rows, excerpt.total, None, why)
    stream = iter_log_lines(run, explanation)
    lines, big = _take_within(stream, 4 * LOG_BUDGET)
    if not big:
        if not lines:
            return ""
        shown = select(lines, run)
        rows = [(k, *lines[k]) for k in shown]
        return _section(run, explanation, rows, len(lines), sum(1 for ln in lines if ln[2]))
    # A huge log: walk it again, writing notes only for the lines the excerpt keeps.
    plan = _Excerpt(run, _count_lines(run, explanation))
    walk = getattr(getattr(explanation, "lines", None), "walk", None)
    if walk is not None:
        for item in walk(plan.wanted):
            plan.add(None if item is None else (item.line, item.text, list(item.notes)))
    else:
        for line in iter_log_lines(run, explanation):
            plan.wanted(line[0])
            plan.add(line)
    what = "routine progress lines" if plan.must.stride == 1 else "lines (mostly progress)"
    why = (
        f"; {{left}} {what} left out to keep the page small: shown are the first and last "
        "lines, set-up, setting changes, errors, the first line of each pass and an even "
        "subset of the progress lines (`migtune explain` prints them all)"
    )
    return _section(run, explanation, plan.rows(), plan.total, None, why)


def _thinned(run: Run) -> bool:
    return run.format == "proxmox" and bool(getattr(run.samples, "thinned", False))


def _take_within(stream: Iterator[Line], budget: int) -> tuple[list[Line], bool]:
    """The first lines up to ``budget`` of cost; True if the log goes on beyond it."""
    out: list[Line] = []
    spent = 0
    for line in stream:
        out.append(line)
        spent += _cost(line)
        if spent > budget:
            return out, True
    return out, False


def _count_lines(run: Run, explanation: Any | None) -> int:
    known = getattr(run.lines, "line_count", None)
    if known is not None:
        return known  # counted by the parse, which read the whole file
    batches = getattr(run.lines, "batches", None)
    if batches is not None:
        return sum(len(b) for b in batches())
    return sum(1 for _ in iter_log_lines(run, explanation))


Row = tuple[int, int, str, list[str]]


class _Excerpt:
    """Which lines of a huge log to show, decided line by line before their notes exist.

    The head and tail (the line count is known), the lines that say something other
    than progress (set-up, setting changes, errors, the first line of each pass) under
    one budget and the routine progress lines under another, each kept every
    ``stride``-th, the stride doubling (and every other kept line going) when the
    budget is spent, so the kept lines stay evenly spread over the whole log.
    """

    def __init__(self, run: Run, total: int):
        self.total, self.k = total, -1
        self.head: list[Row] = []
        self.tail: list[Row] = []
        self.sample_pass = {s.source.line: s.passes for s in run.samples if s.source is not None}
        self.event_lines = {
            e.source.line
            for e in run.events
            if e.source is not None and e.kind not in _ROUTINE_KINDS
        }
        self.prev_pass: object = object()
        self.must = _Strided(MUST_BUDGET)
        self.routine = _Strided(LOG_BUDGET - MUST_BUDGET)
        self._target: list[Row] | _Strided | None = None

    def wanted(self, no: int) -> bool:
        """Called once per line, in order, before :meth:`add` of that line."""
        k = self.k + 1
        first_of_pass = False
        if no in self.sample_pass:
            first_of_pass = self.sample_pass[no] != self.prev_pass
            self.prev_pass = self.sample_pass[no]
        if k < LOG_EDGE:
            self._target = self.head
        elif k >= self.total - LOG_EDGE:
            self._target = self.tail
        else:
            res = self.must if no in self.event_lines or first_of_pass else self.routine
            self._target = res if res.offer() else None
        return self._target is not None

    def add(self, line: Line | None) -> None:
        self.k += 1
        target, self._target = self._target, None
        if line is None or target is None:
            return
        no, text, notes = line
        if len(text) > MAX_LINE_CHARS:  # cut here already: only the cut text is shown
            text = f"{text[:MAX_LINE_CHARS]}... [{len(text) - MAX_LINE_CHARS} more characters]"
        row = (self.k, no, text, notes)
        if isinstance(target, list):
            target.append(row)
        else:
            target.keep(row)

    def rows(self) -> list[Row]:
        return self.head + sorted(self.must.kept + self.routine.kept) + self.tail


class _Strided:
    """Every ``stride``-th row offered, the stride doubling to stay within ``budget``."""

    def __init__(self, budget: int):
        self.budget, self.stride, self.offered, self.spent = budget, 1, 0, 0
        self.kept: list[Row] = []

    def offer(self) -> bool:
        n = self.offered
        self.offered += 1
        return n % self.stride == 0

    def keep(self, row: Row) -> None:
        self.kept.append(row)
        self.spent += _cost(row[1:])
        while self.spent > self.budget and len(self.kept) > 1:
            self.stride *= 2
            self.kept = self.kept[::2]
            self.spent = sum(_cost(r[1:]) for r in self.kept)


def _section(
    run: Run,
    explanation: Any | None,
    shown: Iterable[tuple[int, int, str, list[str]]],
    total: int,
    noted: int | None,
    why: str = "; {left} routine progress lines left out to keep the page small",
) -> str:
    what = "Explained log" if explanation is not None else "Log"
    rows = []
    prev = -1
    count = 0
    for k, no, text, notes in shown:
        count += 1
        if k > prev + 1:
            rows.append(
                f'<tr class="gap"><td class="no">...</td><td>{k - prev - 1} lines left out</td></tr>'
            )
        prev = k
        if len(text) > MAX_LINE_CHARS:
            text = f"{text[:MAX_LINE_CHARS]}... [{len(text) - MAX_LINE_CHARS} more characters]"
        cls = ' class="noted"' if notes else ""
        note_html = "".join(f"<li>{_esc(n)}</li>" for n in notes)
        rows.append(
            f'<tr{cls}><td class="no">{no}</td><td><code class="line">{_esc(text)}</code>'
            + (f'<ul class="notes">{note_html}</ul>' if notes else "")
            + "</td></tr>"
        )
    left_out = total - count
    extra = why.format(left=left_out) if left_out else ""
    return (
        '<section id="log"><h2>Log</h2><details class="log">'
        f"<summary>{what}: {total} lines{'' if noted is None else f', {noted} with notes'}"
        f"{extra}</summary>"
        f'<table class="log"><tbody>{"".join(rows)}</tbody></table></details></section>'
    )
