"""Human-readable output of ``explain`` and ``diagnose`` (rich; plain when not a TTY).

Log text is never passed through rich markup (a line such as ``[pve2] ...`` would be
taken for a style tag): everything is built from :class:`rich.text.Text` pieces.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

from rich.console import Console
from rich.control import strip_control_codes
from rich.text import Text

from migtune.analysis.diagnose import Diagnosis
from migtune.analysis.explain import Explanation
from migtune.analysis.findings import PLATFORMS, Finding
from migtune.analysis.metrics import Metrics
from migtune.units import format_bytes, format_duration, format_rate

SEVERITY_STYLE = {"error": "bold red", "warning": "bold yellow", "info": "cyan"}


def console(stream: IO[str] | None = None) -> Console:
    out = stream or sys.stdout
    tty = hasattr(out, "isatty") and out.isatty()
    return Console(
        file=out,
        force_terminal=tty,
        no_color=not tty or bool(os.environ.get("NO_COLOR")),
        highlight=False,
        soft_wrap=True,
        emoji=False,
    )


def evidence_value(key: str, value: Any) -> str:
    """An evidence number in an operator's units, chosen by its key's suffix."""
    if value is None:
        return "?"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if key.endswith("bytes_per_s"):
        return format_rate(value)
    if key.endswith("_bytes") or key == "ram_bytes":
        return format_bytes(value)
    if key.endswith("_s"):
        return format_duration(value)
    if key.endswith("_ms"):
        return f"{value:.0f} ms"
    if key.endswith(("share", "_rate")) and 0 <= value <= 1:
        return f"{value * 100:.2f}%"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def render_finding(con: Console, f: Finding) -> None:
    head = Text("  ")
    head.append(f"[{f.severity}]", style=SEVERITY_STYLE.get(f.severity, ""))
    head.append(f" {f.id}", style="bold")
    head.append(f": {f.summary}")
    con.print(head)
    if f.detail:
        con.print(Text(f"      {f.detail}", style="dim"))
    shown = [(k, v) for k, v in f.evidence.items() if v is not None]
    if shown:
        ev = ", ".join(
            f"{k.removesuffix('_bytes_per_s').removesuffix('_bytes')}={evidence_value(k, v)}"
            for k, v in shown
        )
        con.print(Text(f"      evidence: {ev}", style="dim"))
    for r in f.recommendations:
        con.print(Text(f"      -> {r.action} [{r.setting}]", style="green"))
        if r.predicted is not None:
            con.print(Text(f"         predicted: {r.predicted['effect']}", style="cyan"))
        for platform in (*PLATFORMS, *(p for p in r.commands if p not in PLATFORMS)):
            for cmd in r.commands.get(platform, []):
                con.print(Text(f"         {platform + ':':9} {cmd}"))
        # The same note for several platforms (e.g. "done inside the guest") is shown once.
        by_note: dict[str, list[str]] = {}
        for platform, note in r.notes.items():
            by_note.setdefault(note, []).append(platform)
        for note, platforms in by_note.items():
            con.print(Text(f"         note ({', '.join(platforms)}): {note}", style="dim"))


def diagnosis_facts(m: Metrics) -> list[str]:
    """The headline numbers of a diagnosis, as short phrases."""
    facts = []
    if m.ram_bytes:
        facts.append(f"RAM {format_bytes(m.ram_bytes)}")
    if m.transferred_bytes is not None:
        facts.append(f"sent {format_bytes(m.transferred_bytes)}")
    if m.throughput:
        facts.append(f"real throughput {format_rate(m.throughput)}")
    if m.dirty_rate is not None:
        facts.append(f"dirty rate {format_rate(m.dirty_rate)}")
    if m.passes is not None:
        facts.append(f"passes {m.passes}")
    if m.duration_s is not None:
        facts.append(f"duration {format_duration(m.duration_s)}")
    if m.downtime_s is not None:
        facts.append(f"downtime {format_duration(m.downtime_s)}")
    return facts


def render_diagnosis(
    d: Diagnosis, stream: IO[str] | None = None, con: Console | None = None
) -> None:
    con = con or console(stream)
    m = d.metrics
    title = Text(f"Diagnosis ({d.format}, {d.status}", style="bold")
    if d.vm:
        title.append(f", VM {d.vm}")
    title.append(")")
    con.print(title)
    facts = diagnosis_facts(m)
    if facts:
        con.print(Text("  " + ", ".join(facts)))
    for f in d.findings:
        render_finding(con, f)
    if d.partial or d.warnings:
        why = ": " + "; ".join(d.warnings[:5]) if d.warnings else ""
        more = f" (+{len(d.warnings) - 5} more)" if len(d.warnings) > 5 else ""
        con.print(Text(f"  (partial log{why}{more})", style="dim"))


# Lines of the explained log handed to rich per print: one print per line costs ~100 us
# of rich's per-call overhead (a 90,000-line log took seconds); one per block is linear
# with a small constant and keeps memory bounded.
_BLOCK_LINES = 2000


def _plain_log(x: Explanation, out: IO[str]) -> None:
    """The explained log as rich prints it without a terminal (no styles), written directly:
    rich's per-character work made a 90,000-line log take seconds."""
    chunk: list[str] = []
    for ln in x.lines:
        if not ln.text.strip() and not ln.notes:
            continue
        chunk.append(_as_rich_plain(ln.text.rstrip("\n")))
        chunk.extend(_as_rich_plain(f"    -> {note}") for note in ln.notes)
        if len(chunk) >= _BLOCK_LINES:
            out.write("\n".join(chunk) + "\n")
            chunk = []
    if chunk:
        out.write("\n".join(chunk) + "\n")


def _as_rich_plain(line: str) -> str:
    """What rich prints for a plain Text line: control codes dropped, tabs expanded."""
    if line.isprintable():  # no control code, no tab: the usual line, as it is
        return line
    return strip_control_codes(line).expandtabs(8)


def render_explanation(x: Explanation, stream: IO[str] | None = None) -> None:
    con = console(stream)
    if not con.is_terminal:
        _plain_log(x, con.file)
        return _render_rest(x, con)
    block, lines = Text(), 0
    for ln in x.lines:
        if not ln.text.strip() and not ln.notes:
            continue
        block.append(ln.text.rstrip("\n"), style="bold" if ln.notes else "dim")
        block.append("\n")
        for note in ln.notes:
            block.append(f"    -> {note}\n", style="cyan")
        lines += 1 + len(ln.notes)
        if lines >= _BLOCK_LINES:
            con.print(block, end="")
            block, lines = Text(), 0
    con.print(block, end="")
    _render_rest(x, con)


def _render_rest(x: Explanation, con: Console) -> None:
    con.print()
    if x.summary:
        con.print(Text("Summary", style="bold"))
        for s in x.summary:
            con.print(Text(f"  {s}"))
        con.print()
    if x.timeline:
        con.print(Text("Timeline", style="bold"))
        for p in x.timeline:
            start = "?" if p.start is None else f"{p.start:8.1f} s"
            dur = format_duration(p.duration) if p.duration is not None else "?"
            con.print(Text(f"  {p.name:13} at {start:>10}  {dur:>12}  {p.note}"))
        con.print()
    if x.predictions:
        con.print(Text("Live predictions (what migtune expected while it ran)", style="bold"))
        for r in x.predictions:
            at = "?" if r["t"] is None else f"{r['t']:8.1f} s"
            con.print(Text(f"  {r['kind']:10} at {at:>10}  {r['text']}"))
        con.print()
    render_diagnosis(x.diagnosis, con=con)
