"""Assemble the report page: one self-contained HTML document, no script, no external file.

Everything that comes from a log or a run (lines, messages, VM names, file names,
findings) goes through :func:`esc`; only the SVG produced by matplotlib (which escapes
its own text) and this module's fixed markup are written raw.  A Content-Security-Policy
that forbids scripts and every network fetch backs that up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from migtune import __version__
from migtune.analysis.findings import Phase
from migtune.model import Run
from migtune.report import logview
from migtune.report.analysis import Analysis
from migtune.report.series import PassRow
from migtune.settings import describe
from migtune.units import format_bytes, format_duration, format_rate

MAX_PASS_ROWS = 200
# No script, no fetch of any kind; only the page's own inline styles (and the SVGs').
CSP = "default-src 'none'; style-src 'unsafe-inline'"


def esc(value: Any) -> str:
    """Text content: ``<``, ``>`` and ``&`` escaped (quotes are harmless outside attributes)."""
    return escape("" if value is None else str(value), quote=False)


def attr(value: Any) -> str:
    """An attribute value (always written in double quotes)."""
    return escape("" if value is None else str(value), quote=True)


@dataclass(slots=True)
class RunView:
    """One run as the page shows it."""

    run: Run
    name: str  # file name or origin
    label: str  # legend label: name and settings
    analysis: Analysis
    passes: list[PassRow] = field(default_factory=list)


@dataclass(slots=True)
class ChartView:
    name: str
    title: str
    svg: str
    caption: str


def _css() -> str:
    return resources.files("migtune.report").joinpath("report.css").read_text(encoding="utf-8")


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1000:.0f} ms"


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{x * 100:.1f} %"


def title_of(view: RunView) -> str:
    run = view.run
    if run.vm and run.target:
        return f"Live migration of VM {run.vm} to {run.target}"
    if run.vm:
        return f"Live migration of VM {run.vm}"
    return f"Live migration: {view.name}"


def _facts(view: RunView) -> list[tuple[str, str, str]]:
    """(key, label, value) for the header; key names the element for tests and styling."""
    run, m = view.run, view.analysis.metrics
    ram = run.ram_bytes or m.ram_bytes
    outcome = run.status + (" (partial log)" if run.partial else "")
    total = run.duration if run.duration is not None else m.duration_s
    limit = m.downtime_limit_final_s
    if limit is None:
        limit = run.settings.downtime_limit
    measured = run.downtime if run.downtime is not None else m.downtime_s
    no_switch = measured is None and run.status in ("active", "cancelled", "failed")
    downtime = "none" if no_switch else _ms(measured)
    if limit is not None:
        downtime += f" (limit {format_duration(limit)})"
    elif no_switch:
        downtime += " (no switch-over)"
    facts = [
        ("ram", "VM RAM", format_bytes(ram) if ram else "?"),
        ("outcome", "Outcome", outcome),
        ("total-time", "Total time", format_duration(total)),
        ("downtime", "Downtime", downtime),
    ]
    if run.ram_duration is not None and run.ram_duration != total:
        facts.append(("ram-time", "RAM phase", format_duration(run.ram_duration)))
    if m.transferred_bytes is not None:
        ratio = f" ({m.sent_ratio:.2f}x RAM)" if m.sent_ratio is not None else ""
        facts.append(("transferred", "Transferred", format_bytes(m.transferred_bytes) + ratio))
    if m.throughput is not None:
        facts.append(("throughput", "Throughput", format_rate(m.throughput)))
    if m.dirty_rate is not None:
        facts.append(("dirty-rate", "Dirty rate", format_rate(m.dirty_rate)))
    if m.passes is not None:
        facts.append(("passes", "Passes", str(m.passes)))
    if m.remaining_bytes is not None and run.status != "completed":
        facts.append(("remaining", "Remaining", format_bytes(m.remaining_bytes)))
    if m.xbzrle_cache_miss_rate is not None:
        facts.append(("xbzrle-miss", "XBZRLE cache miss", _pct(m.xbzrle_cache_miss_rate)))
    if m.throttle_max_pct is not None:
        facts.append(("throttle", "Max CPU throttle", f"{m.throttle_max_pct:.0f} %"))
    return facts


def _header(view: RunView) -> str:
    run = view.run
    facts = "".join(
        f'<div class="fact" data-key="{k}"><dt>{esc(label)}</dt><dd>{esc(value)}</dd></div>'
        for k, label, value in _facts(view)
    )
    where = [f"source: {view.name}", f"format: {run.format}"]
    if run.settings.qemu_version:
        where.append(f"QEMU {run.settings.qemu_version}")
    where.append(f"settings: {describe(run.settings)}")
    status = (
        run.status if run.status in ("completed", "failed", "cancelled", "active") else "unknown"
    )
    out = [
        "<header>",
        f'<h1>{esc(title_of(view))} <span class="badge status-{status}">{esc(run.status)}</span></h1>',
        f'<p class="sub">{" · ".join(esc(w) for w in where)}</p>',
        f'<dl class="facts" id="facts">{facts}</dl>',
    ]
    summary = getattr(view.analysis.explanation, "summary", None) or []
    if summary:
        out.append(f'<p class="summary" id="summary">{" ".join(esc(x) for x in summary)}</p>')
    thinned = run.meta.get("samples_thinned")
    if isinstance(thinned, dict):
        out.append(
            f'<p class="sub" id="thinned">This log has {thinned.get("seen", 0):,} progress '
            f"samples; the charts and the pass table use {thinned.get('kept', 0):,} of them "
            "(an even subset plus every change of status, pass or throttle). Header figures "
            "and findings are computed over all samples.</p>"
        )
    if run.warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in run.warnings[:20])
        more = len(run.warnings) - 20
        if more > 0:
            items += f"<li>... and {more} more</li>"
        out.append(
            '<details class="warnings"><summary>Parts of the log could not be read '
            f"({len(run.warnings)})</summary><ul>{items}</ul></details>"
        )
    out.append("</header>")
    return "\n".join(out)


_EVIDENCE_SUFFIXES = (
    ("_bytes_per_s", format_rate),
    ("_bytes", format_bytes),
    ("_ms", lambda v: f"{v:.0f} ms"),
    ("_s", format_duration),
    ("_pct", lambda v: f"{v:.0f} %"),
    ("_ratio", lambda v: f"{v:.2f}"),
)


def format_evidence(key: str, value: Any) -> str:
    """A finding's evidence value in operator units, from the key's unit suffix."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return str(value)
    if isinstance(value, (int, float)):
        for suffix, fmt in _EVIDENCE_SUFFIXES:
            if key.endswith(suffix):
                return fmt(value)
        if "miss_rate" in key or "share" in key:  # fractions 0..1
            return _pct(value)
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    text = json.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= 200 else text[:197] + "..."


def _recommendation(rec: Any) -> str:
    out = [f'<li class="rec"><p><b>{esc(rec.setting)}</b>: {esc(rec.action)}</p>']
    for platform, commands in (rec.commands or {}).items():
        if not commands:
            continue  # the platform cannot do it; its note says why
        code = "\n".join(commands)
        out.append(
            f'<div class="cmd"><span class="platform">{esc(platform)}</span>'
            f"<pre><code>{esc(code)}</code></pre></div>"
        )
    for platform, note in (rec.notes or {}).items():
        out.append(f'<p class="note"><span class="platform">{esc(platform)}</span> {esc(note)}</p>')
    out.append("</li>")
    return "".join(out)


def _findings(view: RunView) -> str:
    diag = view.analysis.diagnosis
    out = ['<section id="findings"><h2>Findings</h2>']
    findings = diag.findings if diag is not None else []
    if not findings:
        out.append('<p class="ok">No problems found in this log.</p>')
    for f in findings:
        sev = f.severity if f.severity in ("info", "warning", "error") else "info"
        out.append(f'<article class="finding sev-{sev}" data-id="{attr(f.id)}">')
        out.append(
            f'<h3><span class="badge sev-{sev}">{esc(f.severity)}</span> {esc(f.summary)}'
            f' <span class="fid">{esc(f.id)}</span></h3>'
        )
        if f.detail:
            out.append(f"<p>{esc(f.detail)}</p>")
        if f.evidence:
            rows = "".join(
                f"<tr><th>{esc(k)}</th><td>{esc(format_evidence(k, v))}</td></tr>"
                for k, v in f.evidence.items()
            )
            out.append(
                f'<details class="evidence"><summary>Evidence</summary><table>{rows}</table></details>'
            )
        if f.recommendations:
            out.append('<ul class="recs">')
            out.extend(_recommendation(r) for r in f.recommendations)
            out.append("</ul>")
        out.append("</article>")
    out.append("</section>")
    return "\n".join(out)


def _charts(charts: Sequence[ChartView], reason: str) -> str:
    out = ['<section id="charts"><h2>Charts</h2>']
    if not charts:
        out.append(f'<p class="muted">{esc(reason)}</p>')
    for c in charts:
        out.append(
            f'<figure class="chart" id="chart-{attr(c.name)}">{c.svg}'
            f"<figcaption>{esc(c.caption)}</figcaption></figure>"
        )
    out.append("</section>")
    return "\n".join(out)


def _timeline(phases: Sequence[Phase]) -> str:
    if not phases:
        return ""
    rows = "".join(
        f"<tr><td>{esc(p.name)}</td><td>{esc(_t(p.start))}</td><td>{esc(_t(p.end))}</td>"
        f"<td>{esc(format_duration(p.duration))}</td><td>{esc(p.note)}</td></tr>"
        for p in phases
    )
    return (
        '<section id="timeline"><h2>Timeline</h2><table class="data"><thead><tr>'
        "<th>phase</th><th>from (s)</th><th>to (s)</th><th>duration</th><th>note</th>"
        f"</tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _predictions(view: RunView) -> str:
    """What migtune predicted while the migration ran (``prediction`` events) and the
    policy decisions those predictions justified."""
    from migtune.analysis.live import timeline_rows

    rows = timeline_rows(view.run)
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{esc(_t(r['t']))}</td><td>{esc(_t(r['from_samples_to_s']))}</td>"
        f"<td>{esc(r['kind'])}</td><td>{esc(r['verdict'] or '')}</td><td>{esc(r['text'])}</td></tr>"
        for r in rows
    )
    return (
        '<section id="predictions"><h2>Live predictions</h2>'
        "<p>What migtune's model expected while the migration ran, from the samples seen "
        "up to then, and what a policy did on the strength of it.</p>"
        '<table class="data"><thead><tr><th>at (s)</th><th>from samples to (s)</th>'
        "<th>what</th><th>verdict</th><th>prediction</th>"
        f"</tr></thead><tbody>{body}</tbody></table></section>"
    )


def _t(t: float | None) -> str:
    return "?" if t is None else f"{t:.1f}"


def _pass_row(r: PassRow) -> str:
    cells = (
        r.number if r.number is not None else "?",
        _t(r.start),
        _t(r.end),
        r.samples,
        format_bytes(r.remaining_start),
        format_bytes(r.sent),
        format_bytes(r.transferred_end),
        format_rate(r.dirty_rate),
        format_rate(r.throughput),
        _ms(r.expected_downtime),
        "?" if r.throttle_pct is None else f"{r.throttle_pct:.0f} %",
    )
    return "<tr>" + "".join(f"<td>{esc(v)}</td>" for v in cells) + "</tr>"


def _passes(rows: Sequence[PassRow]) -> str:
    out = ['<section id="passes"><h2>Passes</h2>']
    if not rows:
        out.append(
            '<p class="muted">The log has no per-pass counters '
            "(dirty-sync-count or remaining bytes).</p></section>"
        )
        return "\n".join(out)
    head = (
        "<th>pass</th><th>from (s)</th><th>to (s)</th><th>samples</th>"
        "<th>remaining at start</th><th>sent in pass</th><th>transferred (total)</th>"
        "<th>dirty rate</th><th>throughput</th><th>expected downtime</th><th>CPU throttle</th>"
    )
    body = [_pass_row(r) for r in rows]
    if len(rows) > MAX_PASS_ROWS:  # a run stuck for hours: the start and the end tell the story
        half = MAX_PASS_ROWS // 2
        gap = f'<tr class="gap"><td colspan="11">{len(rows) - 2 * half} passes left out</td></tr>'
        body = [*body[:half], gap, *body[-half:]]
    out.append(
        f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )
    out.append(
        '<p class="muted">A pass ends at each dirty-bitmap sync. "?" means the log does not say.</p>'
    )
    out.append("</section>")
    return "\n".join(out)


def _compare(views: Sequence[RunView]) -> str:
    if len(views) < 2:
        return ""
    rows = []
    for i, v in enumerate(views):
        f = dict((k, val) for k, _, val in _facts(v))
        rows.append(
            f'<tr><td><span class="swatch c{i % 7}"></span>{esc(v.name)}</td>'
            f"<td>{esc(describe(v.run.settings))}</td><td>{esc(f['outcome'])}</td>"
            f"<td>{esc(f['ram'])}</td><td>{esc(f['total-time'])}</td><td>{esc(f['downtime'])}</td>"
            f"<td>{esc(f.get('transferred', '?'))}</td><td>{esc(f.get('passes', '?'))}</td></tr>"
        )
    return (
        '<section id="compare"><h2>Compared runs</h2><table class="data"><thead><tr>'
        "<th>run</th><th>settings</th><th>outcome</th><th>RAM</th><th>total time</th>"
        "<th>downtime</th><th>transferred</th><th>passes</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def page(
    views: Sequence[RunView],
    charts: Sequence[ChartView],
    no_chart_reason: str,
    phases: Iterable[Phase] = (),
    log_excerpt: Any | None = None,
) -> str:
    """The whole HTML document for a primary run (``views[0]``) and its comparisons.

    ``log_excerpt``: made while the primary run was parsed (see report.logexcerpt)."""
    primary = views[0]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="migtune report">',
        f"<title>{esc(title_of(primary))} - migtune report</title>",
        f"<style>{_css()}</style></head><body><main>",
        _header(primary),
        _findings(primary),
        _charts(charts, no_chart_reason),
        _compare(views),
        _timeline(list(phases)),
        _predictions(primary),
        _passes(primary.passes),
        logview.render(primary.run, primary.analysis.explanation, log_excerpt),
        f"<footer>Generated by migtune {esc(__version__)}. This file is self-contained: "
        "it loads nothing from the network.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def run_name(run: Run) -> str:
    path = run.meta.get("path")
    if path:
        return Path(str(path)).name
    origin = run.meta.get("origin")
    return str(origin) if origin else run.format
