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

from dataclasses import dataclass

from migtune.analysis.explain import Explanation, explain
from migtune.analysis.findings import ExplainedLine
from migtune.model import Run

# Which platform's commands fit a log of this format.
PLATFORM_OF_FORMAT = {"proxmox": "proxmox", "libvirt": "libvirt", "nova": "libvirt"}
DEFAULT_EXCERPT_LINES = 8

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

    def kind_of(ln: ExplainedLine) -> str:
        line_kinds = kinds.get(ln.line, [])
        if line_kinds:
            return max(line_kinds, key=lambda k: _TURNING_POINTS.get(k, 1))
        return "sample" if ln.line in samples else "note"

    def base(ln: ExplainedLine) -> float:
        s = max((_TURNING_POINTS.get(k, 1) for k in kinds.get(ln.line, [])), default=0)
        if ln.line in ends:
            s = max(s, 3)
        elif ln.line in samples:
            s = max(s, 0.5)
        return s + 0.1 * min(len(ln.notes), 3)

    # A run of lines of one kind (the downtime raised five times, a hundred progress
    # lines) is told by its first and last line; the ones between rank much lower.
    by_kind: dict[str, list[int]] = {}
    for ln in explained:
        by_kind.setdefault(kind_of(ln), []).append(ln.line)

    def score(ln: ExplainedLine) -> float:
        same = by_kind[kind_of(ln)]
        repeated = ln.line not in (same[0], same[-1])
        return base(ln) * (0.3 if repeated else 1.0)

    ranked = sorted(explained, key=lambda ln: (-score(ln), ln.line))[:n]
    return sorted(ranked, key=lambda ln: ln.line)
