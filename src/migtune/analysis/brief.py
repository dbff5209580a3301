"""The answer first: a diagnosis, the timeline and the few log lines that matter most.

``brief(run)`` is what ``migtune explain --brief`` (and ``make demo``) shows. A full
explanation of a long log runs to thousands of lines with the diagnosis at the very end;
someone who hands over a log first wants to know what went wrong and what to change,
then see the lines that prove it.

The commands are those of the platform the log comes from (a Proxmox task log gets
``qm``/``datacenter.cfg`` lines, a virsh or nova log gets ``virsh``, a QEMU log QMP);
``migtune diagnose`` prints them for every platform with the evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from migtune.analysis.explain import Explanation, explain
from migtune.analysis.findings import ExplainedLine
from migtune.model import Run

# Which platform's commands fit a log of this format.
PLATFORM_OF_FORMAT = {"proxmox": "proxmox", "libvirt": "libvirt", "nova": "libvirt"}
DEFAULT_EXCERPT_LINES = 8
TEMPLATE_CHARS = 40  # enough to tell one kind of line from another
MAX_WORD = 16  # longer words are logger names and ids, the same on every line
_NUMBER = re.compile(r"\d")
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


def platform_for(fmt: str) -> str:
    return PLATFORM_OF_FORMAT.get(fmt, "qmp")


def brief(run: Run, max_lines: int = DEFAULT_EXCERPT_LINES) -> Brief:
    """Explain ``run`` and keep the ``max_lines`` explained lines that tell the most."""
    x = explain(run)
    explained = [ln for ln in x.lines if ln.notes]
    return Brief(
        explanation=x,
        platform=platform_for(run.format),
        excerpt=informative_lines(run, explained, max_lines),
        lines_total=sum(1 for ln in x.lines if ln.text.strip()),
        lines_explained=len(explained),
    )


def informative_lines(run: Run, explained: list[ExplainedLine], n: int) -> list[ExplainedLine]:
    """The ``n`` explained lines with the highest score, back in log order.

    Turning points (errors, the outcome, a limit raised) score highest; of the progress
    lines only the first and the last are worth showing (how it started, where it ended),
    since the ones between repeat the same template with other numbers. Ties go to the
    earlier line so the excerpt reads as a story.
    """
    if n <= 0 or not explained:
        return []
    kinds: dict[int, list[str]] = {}
    for e in run.events:
        if e.source is not None:
            kinds.setdefault(e.source.line, []).append(e.kind)
    sample_lines = sorted({s.source.line for s in run.samples if s.source is not None})
    ends = set(sample_lines[:1] + sample_lines[-1:])

    samples = set(sample_lines)

    def base(ln: ExplainedLine) -> float:
        s = max((_TURNING_POINTS.get(k, 1) for k in kinds.get(ln.line, [])), default=0)
        # A sample's line shows its figures in one-line formats; in block formats (virsh,
        # HMP) it is the block's heading ("Job type: Unbounded"), which shows none.
        figures = _NUMBER.search(ln.text) is not None
        if ln.line in ends and figures:
            s = max(s, 3)
        elif ln.line in samples:
            s = max(s, 0.5)
        # Among the rest, more to say ranks higher: a verdict ("faster than the link",
        # "above the limit") takes more words than a unit conversion.
        said = min(sum(len(note) for note in ln.notes), 400) / 2000
        return s + 0.1 * min(len(ln.notes), 3) + said

    # Lines of one template (the downtime raised five times, a hundred progress lines, the
    # same field in every snapshot) are told by their last (where the log ends) and, less,
    # their first; the ones between rank below every line that says something new.
    by_template: dict[str, list[int]] = {}
    for ln in explained:
        by_template.setdefault(_template(ln.text), []).append(ln.line)

    def score(ln: ExplainedLine) -> float:
        same = by_template[_template(ln.text)]
        if len(same) == 1 or ln.line == same[-1]:
            weight = 1.0
        else:
            weight = 0.5 if ln.line == same[0] else 0.02
        return base(ln) * weight

    picked: list[ExplainedLine] = []
    said: set[tuple[str, ...]] = set()
    for ln in sorted(explained, key=lambda ln: (-score(ln), ln.line)):
        if len(picked) == n:
            break
        notes = tuple(ln.notes)
        if notes in said:  # the same explanation under another line adds nothing
            continue
        said.add(notes)
        picked.append(ln)
    return sorted(picked, key=lambda ln: ln.line)


def _template(text: str) -> str:
    """What stays the same between lines of one kind: the words without figures, units,
    ids or time stamps (so a progress line at 181.0 MiB and one at 57.2 GiB match)."""
    words = [
        w
        for w in text.split()
        if len(w) <= MAX_WORD and not any(c.isdigit() for c in w) and not _UNIT.match(w)
    ]
    return " ".join(words)[:TEMPLATE_CHARS]
