"""The plan as one self-contained HTML page: a Gantt chart (inline SVG) and the tables.

Same rules as the report (:mod:`migtune.report.html`): no script, nothing fetched, the
same Content-Security-Policy and style sheet; every name from the fleet file goes
through ``esc``/``attr``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from migtune import __version__
from migtune.errors import InputError
from migtune.plan.report import flag_reason, format_span, vm_count
from migtune.report.html import CSP, _css, attr, esc
from migtune.units import format_bits, format_bytes, format_duration

if TYPE_CHECKING:
    from migtune.plan.planner import EvacuationPlan

WIDTH, LEFT, LANE, TOP = 1180, 70, 26, 30
COLOURS = {"planned": "#2e7d32", "over-downtime": "#b26a00", "fails": "#b42318"}
EXTRA_CSS = """
.gantt text { font: 11px "DejaVu Sans", Arial, sans-serif; }
.gantt .lab { fill: #fff; }
.gantt .axis { fill: #5f6b76; }
table.plan { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
table.plan th, table.plan td { border-bottom: 1px solid #d9dee3; padding: 3px 10px; text-align: left; }
td.num { text-align: right; }
pre.cmds { background: #f5f7f9; padding: 10px; overflow-x: auto; }
"""


def _ticks(end: float) -> list[float]:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400):
        if end / step <= 10:
            return [i * step for i in range(int(end // step) + 1)]
    return [0.0, end]


def gantt_svg(d: dict[str, Any]) -> str:
    """Lanes are the parallel slots; each bar one VM's migration (slowest plausible
    workloads), its end whisker the range over the plausible set."""
    vms = [v for v in d["vms"] if v["slot"] is not None]
    lanes = max((v["slot"] for v in vms), default=1)
    end = max((v["end_s"]["max"] or 0 for v in vms), default=1.0) or 1.0
    height = TOP + lanes * LANE + 30
    scale = (WIDTH - LEFT - 20) / end

    def x(t: float) -> float:
        return LEFT + t * scale

    parts = [f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
             f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
             f'aria-label="Gantt chart of the evacuation">']  # fmt: skip
    for t in _ticks(end):
        parts.append(f'<line x1="{x(t):.1f}" y1="{TOP - 6}" x2="{x(t):.1f}" '
                     f'y2="{TOP + lanes * LANE}" stroke="#d9dee3"/>')  # fmt: skip
        parts.append(f'<text class="axis" x="{x(t):.1f}" y="{TOP - 10}" text-anchor="middle">'
                     f"{esc(format_duration(t))}</text>")  # fmt: skip
    for lane in range(1, lanes + 1):
        parts.append(f'<text class="axis" x="4" y="{TOP + (lane - 1) * LANE + 17}">'
                     f"slot {lane}</text>")  # fmt: skip
    for v in vms:
        y = TOP + (v["slot"] - 1) * LANE + 3
        s, e = v["start_s"]["max"] or 0.0, v["end_s"]["max"] or 0.0
        w = max(1.0, (e - s) * scale)
        colour = COLOURS.get(v["status"], "#5f6b76")
        tip = (f"{v['name']}: {format_bytes(v['ram_bytes'])}, starts {format_duration(s)}, "
               f"ends {format_duration(e)}, wave {v['wave']}, {v['status']}")  # fmt: skip
        parts.append(f'<g><title>{esc(tip)}</title><rect x="{x(s):.1f}" y="{y}" '
                     f'width="{w:.1f}" height="{LANE - 6}" rx="3" fill="{colour}" '
                     f'stroke="#fff"/>')  # fmt: skip
        lo, hi = v["end_s"]["min"], v["end_s"]["max"]
        if lo is not None and hi is not None and hi - lo > 0:
            ym = y + (LANE - 6) / 2
            parts.append(f'<line x1="{x(lo):.1f}" y1="{ym}" x2="{x(hi):.1f}" y2="{ym}" '
                         'stroke="#1d232a" stroke-width="1.5"/>')  # fmt: skip
        if w > 7 * len(v["name"]):
            parts.append(f'<text class="lab" x="{x(s) + 4:.1f}" y="{y + 14}">'
                         f"{esc(v['name'])}</text>")  # fmt: skip
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _ms(v: float) -> str:
    return format_duration(v / 1000)


def _row(cells: list[str], numeric: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    tds = "".join(
        f'<td class="num">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>"
        for i, c in enumerate(cells)
    )
    return f"<tr>{tds}</tr>"


def render_page(plan: EvacuationPlan) -> str:
    d = plan.to_dict()
    title = f"Evacuation plan: {vm_count(len(d['vms']))} over {format_bits(d['link_rate'])}"
    verdict = "meets its limits" if d["ok"] else "does NOT meet its limits"
    facts = [
        ("drain time", format_span(d["drain_time_s"], format_duration)),
        ("strategy", d["strategy"]["name"]),
        ("VMs failing", str(len(d["failed"]))),
        ("deadline", "none" if d["deadline_s"] is None else
         f"{format_duration(d['deadline_s'])}: " + ("met" if d["meets_deadline"] else "missed")),
    ]  # fmt: skip
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{attr(CSP)}">',
        '<meta name="generator" content="migtune plan">',
        f"<title>{esc(title)} - migtune</title>",
        f"<style>{_css()}{EXTRA_CSS}</style></head><body><main>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="sub">Platform {esc(d["platform"])}, up to {d["max_parallel"]} at once; '
        f"the plan {esc(verdict)}.</p>",
        '<dl class="facts">'
        + "".join(f'<div class="fact"><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>' for k, v in facts)
        + "</dl>",
        "<h2>Timeline</h2>",
        gantt_svg(d),
        '<p class="muted">Bars: each migration under the slowest plausible workloads; the '
        "line at its end spans the fastest to the slowest plausible end. Green: within its "
        "limits; orange: over its downtime limit; red: given up at its max-time.</p>",
        "<h2>Compared</h2>",
        '<table class="plan"><tr><th>strategy</th><th>settings</th><th>drain time</th>'
        "<th>last success</th><th>failed</th><th>over downtime limit</th><th>worst downtime</th></tr>",
    ]
    for e in [d["plan"], *d["baselines"]]:
        out.append(_row([e["name"], e["settings"], format_span(e["drain_time_s"], format_duration),
                         format_span(e["last_completion_s"], format_duration),
                         str(e["failed"]), str(len(e["over_downtime"])),
                         format_span(e["worst_downtime_ms"], _ms)], {4, 5}))  # fmt: skip
    out += [
        "</table>",
        "<h2>VMs</h2>",
        '<table class="plan"><tr><th>#</th><th>VM</th><th>RAM</th><th>wave</th><th>slot</th>'
        "<th>start</th><th>end</th><th>downtime</th><th>status</th><th>notes</th></tr>",
    ]
    for v in sorted(d["vms"], key=lambda v: (v["position"] or 10**9, v["name"])):
        out.append(_row([str(v["position"] or "-"), v["name"], format_bytes(v["ram_bytes"]),
                         str(v["wave"] or "-"), str(v["slot"] or "-"),
                         format_span(v["start_s"], format_duration),
                         format_span(v["end_s"], format_duration),
                         format_span(v["downtime_ms"], _ms), v["status"],
                         flag_reason(v) if v["status"] != "planned" or v["flags"] else ""],
                        {0, 2}))  # fmt: skip
    out.append('</table><h2>Commands</h2><pre class="cmds">')
    for v in sorted(d["vms"], key=lambda v: (v["position"] or 10**9, v["name"])):
        if v["commands"]:
            out.append(esc(f"# {v['name']} ({v['platform']})"))
            out += [esc(c) for c in v["commands"]]
    out += [
        "</pre>",
        f"<footer>Generated by migtune {esc(__version__)}. This file is self-contained: "
        "it loads nothing from the network.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(out) + "\n"


def write_plan_page(plan: EvacuationPlan, path: str | Path) -> None:
    try:
        Path(path).write_text(render_page(plan), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
