"""Text rendering of :func:`migtune.analysis.brief.brief`: the answer, then the proof.

Order: the diagnosis (each finding's summary and what to change, with the commands of
the log's platform), the timeline, a few explained lines, and the commands that show
everything.  Evidence and the longer explanations stay in ``diagnose`` and ``explain``.
The whole fits in one screenful (:data:`MAX_ROWS`): the diagnosis is never cut, the
excerpt gives way when space runs out.
"""

from __future__ import annotations

from typing import IO

from rich.text import Text

from migtune.analysis.brief import Brief
from migtune.outputs.text import SEVERITY_STYLE, console, diagnosis_facts
from migtune.units import format_duration

MAX_ROWS = 80
MAX_NOTES_PER_LINE = 2
MAX_LINE_CHARS = 160


def render_brief(b: Brief, log_name: str, stream: IO[str] | None = None) -> None:
    con = console(stream)
    rows = diagnosis_rows(b) + timeline_rows(b)
    footer = [
        Text(""),
        Text(f"Full line-by-line: migtune explain {log_name}", style="dim"),
        Text(f"Evidence and commands for every platform: migtune diagnose {log_name}", style="dim"),
    ]
    groups = excerpt_groups(b)
    room = MAX_ROWS - len(rows) - len(footer) - 2  # 2: blank line and the excerpt's title
    kept: list[list[Text]] = []
    for group in groups:
        if sum(map(len, kept)) + len(group) > room:
            break
        kept.append(group)
    if kept:
        rows.append(Text(""))
        title = f"Key lines ({len(kept)} of the {b.lines_explained} explained lines)"
        rows.append(Text(title, style="bold"))
        rows.extend(t for g in kept for t in g)
    for t in rows + footer:
        con.print(t)


def diagnosis_rows(b: Brief) -> list[Text]:
    d = b.explanation.diagnosis
    title = Text(f"Diagnosis ({d.format}, {d.status}", style="bold")
    if d.vm:
        title.append(f", VM {d.vm}")
    title.append(f"; commands for {b.platform})")
    rows = [title]
    facts = diagnosis_facts(d.metrics)
    if facts:
        rows.append(Text("  " + ", ".join(facts)))
    shown: set[tuple[str, str]] = set()
    for f in d.findings:
        head = Text("  ")
        head.append(f"[{f.severity}]", style=SEVERITY_STYLE.get(f.severity, ""))
        head.append(f" {f.id}", style="bold")
        head.append(f": {f.summary}")
        rows.append(head)
        for r in f.recommendations:
            key = (r.setting, r.action)
            if key in shown:  # the same advice under several findings: print it once
                rows.append(Text(f"      -> {r.action} [{r.setting}] (see above)", style="green"))
                continue
            shown.add(key)
            rows.append(Text(f"      -> {r.action} [{r.setting}]", style="green"))
            rows.extend(Text(f"         {cmd}") for cmd in r.commands.get(b.platform, []))
            note = r.notes.get(b.platform) or r.notes.get("all")
            if note:
                rows.append(Text(f"         note: {note}", style="dim"))
    return rows


def timeline_rows(b: Brief) -> list[Text]:
    phases = b.explanation.timeline
    if not phases:
        return []
    rows = [Text(""), Text("Timeline", style="bold")]
    for p in phases:
        start = "?" if p.start is None else f"{p.start:8.1f} s"
        dur = format_duration(p.duration) if p.duration is not None else "?"
        rows.append(Text(f"  {p.name:13} at {start:>10}  {dur:>12}  {p.note}"))
    return rows


def excerpt_groups(b: Brief) -> list[list[Text]]:
    """One group of rows per excerpt line: how many lines were skipped, the line, notes."""
    groups: list[list[Text]] = []
    for i, ln in enumerate(b.excerpt):
        group = []
        skipped = b.skipped_before[i] if i < len(b.skipped_before) else 0
        if skipped:
            group.append(Text(f"  ... {skipped} line{'s' if skipped > 1 else ''}", style="dim"))
        text = ln.text.strip()
        if len(text) > MAX_LINE_CHARS:  # a one-line JSON reply: its start says what it is
            text = text[: MAX_LINE_CHARS - 3] + "..."
        group.append(Text(f"  {ln.line:>5}: {text}"))
        group.extend(
            Text(f"         -> {note}", style="cyan") for note in ln.notes[:MAX_NOTES_PER_LINE]
        )
        groups.append(group)
    return groups
