"""The explained log section: every line with its notes, folded by default.

A long run (a lab recording at 10 samples/s, an hour of Proxmox progress lines) would
make the page too big to attach to a ticket, so above a size budget the routine
progress lines are thinned evenly; every other line, the first sample of each pass,
and the head and tail of the log are always kept.
"""

from __future__ import annotations

from html import escape
from typing import Any

from migtune.model import Run

LOG_BUDGET = 300_000  # characters of log text and notes kept in the page (~400 KB of HTML)
LOG_EDGE = 50  # lines always kept at each end
MAX_LINE_CHARS = 300  # longer lines (JSON dumps) are cut


def _esc(value: Any) -> str:
    return escape(str(value), quote=False)


def log_lines(run: Run, explanation: Any | None) -> list[tuple[int, str, list[str]]]:
    """(line number, text, notes) for every line of the source."""
    if explanation is not None and getattr(explanation, "lines", None):
        return [(ln.line, ln.text, list(ln.notes)) for ln in explanation.lines]
    return [(i, text, []) for i, text in enumerate(run.lines or [], 1)]


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


def render(run: Run, explanation: Any | None) -> str:
    lines = log_lines(run, explanation)
    if not lines:
        return ""
    shown = select(lines, run)
    left_out = len(lines) - len(shown)
    noted = sum(1 for ln in lines if ln[2])
    what = "Explained log" if explanation is not None else "Log"
    rows = []
    prev = -1
    for k in shown:
        if k > prev + 1:
            rows.append(
                f'<tr class="gap"><td class="no">...</td><td>{k - prev - 1} lines left out</td></tr>'
            )
        prev = k
        no, text, notes = lines[k]
        if len(text) > MAX_LINE_CHARS:
            text = f"{text[:MAX_LINE_CHARS]}... [{len(text) - MAX_LINE_CHARS} more characters]"
        cls = ' class="noted"' if notes else ""
        note_html = "".join(f"<li>{_esc(n)}</li>" for n in notes)
        rows.append(
            f'<tr{cls}><td class="no">{no}</td><td><code class="line">{_esc(text)}</code>'
            + (f'<ul class="notes">{note_html}</ul>' if notes else "")
            + "</td></tr>"
        )
    extra = (
        f"; {left_out} routine progress lines left out to keep the page small" if left_out else ""
    )
    return (
        '<section id="log"><h2>Log</h2><details class="log">'
        f"<summary>{what}: {len(lines)} lines, {noted} with notes{extra}</summary>"
        f'<table class="log"><tbody>{"".join(rows)}</tbody></table></details></section>'
    )
