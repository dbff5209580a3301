"""The answer first: a diagnosis, the timeline and the few log lines that matter most.

``brief(run)`` is what ``migtune explain --brief`` (and ``make demo``) shows. A full
explanation of a long log runs to thousands of lines with the diagnosis at the very end;
someone who hands over a log first wants to know what went wrong and what to change,
then see the lines that prove it.

The commands are those of the platform the log comes from (a Proxmox task log gets
``qm``/``datacenter.cfg`` lines, a virsh or nova log gets ``virsh``, a QEMU log QMP);
``migtune diagnose`` prints them for every platform with the evidence.

The explained lines are walked once and only a bounded set of candidates is kept (the
first and last line of each kind, the lines with events), so a huge log costs one pass
and little memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from migtune.analysis.explain import Explanation, explain
from migtune.analysis.findings import ExplainedLine
from migtune.model import Run

# Which platform's commands fit a log of this format.
PLATFORM_OF_FORMAT = {"proxmox": "proxmox", "libvirt": "libvirt", "nova": "libvirt"}
DEFAULT_EXCERPT_LINES = 8
TEMPLATE_CHARS = 40  # enough to tell one kind of line from another
MAX_WORD = 16  # longer words are logger names and ids, the same on every line
MAX_TEMPLATES = 10_000  # a log of garbage has a kind per line: stop tracking new ones
_UNIT = re.compile(r"^\(?(?:[KMGTP]i?)?B(?:/s)?[,.;:)]*$|^m?s[,.;:)]*$")

# Event kinds that mark a turn in the story of a migration (start, outcome, errors, a
# setting changed on the way); routine progress and set-up steps rank below them.
_TURNING_POINTS = {
    "error": 6,
    "cancelled": 5,
    "completed": 5,
    "finished": 4,
    "postcopy-start": 4,
    "downtime-change": 3,
    "bandwidth-change": 3,
    "throttle-change": 3,
    "summary": 3,
    "ram-start": 3,
    "warning": 2,
    "status": 2,
    "target-output": 2,
}


@dataclass(slots=True)
class Brief:
    explanation: Explanation
    platform: str  # proxmox | libvirt | qmp: whose commands to show
    excerpt: list[ExplainedLine]  # the most informative lines, in log order
    lines_total: int  # non-empty lines in the log
    lines_explained: int  # lines that carry a note
    # non-empty lines left out before each excerpt line (since the previous one)
    skipped_before: list[int] = field(default_factory=list)


def platform_for(fmt: str) -> str:
    return PLATFORM_OF_FORMAT.get(fmt, "qmp")


def brief(run: Run, max_lines: int = DEFAULT_EXCERPT_LINES) -> Brief:
    """Explain ``run`` and keep the ``max_lines`` explained lines that tell the most."""
    x = explain(run)
    pick = _Picker(run)
    pick.walk(x.lines)
    excerpt = pick.best(max_lines)
    return Brief(
        explanation=x,
        platform=platform_for(run.format),
        excerpt=[c.line for c in excerpt],
        lines_total=pick.nonempty,
        lines_explained=pick.explained,
        skipped_before=[
            0 if i == 0 else c.index - excerpt[i - 1].index - 1 for i, c in enumerate(excerpt)
        ],
    )


def informative_lines(run: Run, lines: Iterable[ExplainedLine], n: int) -> list[ExplainedLine]:
    """The ``n`` explained lines that tell the most about ``run``, in log order."""
    pick = _Picker(run)
    pick.walk(lines)
    return [c.line for c in pick.best(n)]


@dataclass(slots=True)
class _Candidate:
    line: ExplainedLine
    index: int  # position among the non-empty lines (to count what lies between)
    template: str


class _Picker:
    """Ranks explained lines.

    Turning points (errors, the outcome, a limit raised) score highest; of the progress
    lines only the first and the last are worth showing (how it started, where it
    ended). Lines of one kind (the downtime raised five times, a hundred progress lines,
    the same field in every snapshot) are told by their last (where the log ends) and,
    less, their first; the ones between rank below every line that says something new.
    Among the rest, a longer explanation (a verdict such as "faster than the link")
    ranks above a unit conversion. Ties go to the earlier line so the excerpt reads as a
    story; an explanation already shown under another line is not shown again.
    """

    def __init__(self, run: Run):
        self.kinds: dict[int, list[str]] = {}
        for e in run.events:
            if e.source is not None:
                self.kinds.setdefault(e.source.line, []).append(e.kind)
        sample_lines = [s.source.line for s in run.samples if s.source is not None]
        self.samples = set(sample_lines)
        self.ends = {min(sample_lines), max(sample_lines)} if sample_lines else set()
        self.first: dict[str, _Candidate] = {}
        self.last: dict[str, _Candidate] = {}
        self.count: dict[str, int] = {}
        self.others: list[_Candidate] = []  # lines with events, and the first few of all
        self.nonempty = 0
        self.explained = 0

    def walk(self, lines: Iterable[ExplainedLine]) -> None:
        for ln in lines:
            if ln is None or not ln.text.strip():
                continue
            self.nonempty += 1
            if not ln.notes:
                continue
            self.explained += 1
            tpl = _template(ln.text)
            c = _Candidate(ln, self.nonempty, tpl)
            if tpl in self.count or len(self.count) < MAX_TEMPLATES:
                self.first.setdefault(tpl, c)
                self.last[tpl] = c
                self.count[tpl] = self.count.get(tpl, 0) + 1
            if ln.line in self.kinds or len(self.others) < 2 * DEFAULT_EXCERPT_LINES:
                self.others.append(c)

    def score(self, c: _Candidate) -> float:
        ln = c.line
        s = max((_TURNING_POINTS.get(k, 1) for k in self.kinds.get(ln.line, [])), default=0)
        # A sample's line shows its figures in one-line formats; in block formats (virsh,
        # HMP) it is the block's heading ("Job type: Unbounded"), which shows none.
        figures = any(ch.isdigit() for ch in ln.text)
        if ln.line in self.ends and figures:
            s = max(s, 3)
        elif ln.line in self.samples:
            s = max(s, 0.5)
        said = min(sum(len(note) for note in ln.notes), 400) / 2000
        s += 0.1 * min(len(ln.notes), 3) + said
        if self.count.get(c.template, 1) > 1 and self.last.get(c.template) is not c:
            s *= 0.5 if self.first.get(c.template) is c else 0.02
        return s

    def best(self, n: int) -> list[_Candidate]:
        if n <= 0:
            return []
        pool: dict[int, _Candidate] = {}
        for c in (*self.first.values(), *self.last.values(), *self.others):
            pool[c.line.line] = c
        picked: list[_Candidate] = []
        said: set[tuple[str, ...]] = set()
        for c in sorted(pool.values(), key=lambda c: (-self.score(c), c.line.line)):
            if len(picked) == n:
                break
            notes = tuple(c.line.notes)
            if notes in said:
                continue
            said.add(notes)
            picked.append(c)
        return sorted(picked, key=lambda c: c.line.line)


def _template(text: str) -> str:
    """What stays the same between lines of one kind: the words without figures, units,
    ids or time stamps (so a progress line at 181.0 MiB and one at 57.2 GiB match)."""
    words = [
        w
        for w in text.split()
        if len(w) <= MAX_WORD and not any(c.isdigit() for c in w) and not _UNIT.match(w)
    ]
    return " ".join(words)[:TEMPLATE_CHARS]
