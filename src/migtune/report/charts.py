"""The report's charts: headless matplotlib figures rendered to lean inline SVG or PNG.

Two charts, each able to overlay several runs on the same axes:

* **progress** - bytes transferred and bytes remaining over time, the RAM size marked,
  the phases of the primary run shaded;
* **rates** - real throughput against the guest's dirty rate, with downtime-limit,
  bandwidth and CPU-throttle changes marked.

With one run, colour tells the series apart; with several, colour tells the runs apart
and the line style tells the series apart.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

# Figures are made with the object API, never pyplot: no GUI backend, no global figure
# registry to leak into, safe headless and in a process that uses matplotlib otherwise.
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from migtune.analysis.findings import Phase
from migtune.report.series import Line, RunSeries
from migtune.units import GiB, MiB, format_bytes, format_rate

# 12.8 x 4.8 in at 100 dpi = 1280 x 480 px: readable at full width on a 1280 px screen.
FIG_SIZE = (12.8, 4.8)
PNG_DPI = 100
RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
SINGLE = {
    "transferred": "#1f77b4",
    "remaining": "#ff7f0e",
    "throughput": "#1f77b4",
    "dirty": "#d62728",
    "page_rate": "#7f7f7f",
    "disk": "#8c564b",
    "throttle": "#2ca02c",
}
STYLES = {"transferred": "-", "remaining": "--", "disk": ":", "throughput": "-", "dirty": "--"}
PHASE_COLOURS = {
    "setup": "#e0e0e0",
    "target-start": "#fde0c5",
    "storage-copy": "#d9c8f0",
    "first-pass": "#d6e9f8",
    "ram-copy": "#d6e9f8",
    "dirty-passes": "#fbe7a1",
    "switchover": "#f8c9c9",
    "downtime": "#f4a6a6",
    "cleanup": "#d5ecd4",
}
MARKER_COLOURS = {
    "downtime-change": "#6a3d9a",
    "prediction": "#8c564b",
    "bandwidth-change": "#8c564b",
    "throttle-change": "#2ca02c",
    "postcopy-start": "#e377c2",
}
RC = {
    "svg.fonttype": "none",  # text stays text: no embedded glyph paths, small and searchable
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial"],
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "path.simplify": True,
    "text.parse_math": False,  # labels come from logs and settings: "$" is not TeX
}


@dataclass(slots=True)
class RunPlot:
    """One run to draw: its series, its legend label and (primary run only) its phases."""

    label: str
    series: RunSeries
    phases: Sequence[Phase] = ()


@dataclass(slots=True)
class Chart:
    name: str  # file stem for --png and the element id in the page
    title: str
    figure: Figure


def _byte_unit(max_value: float) -> tuple[float, str]:
    return (GiB, "GiB") if max_value >= 2 * GiB else (MiB, "MiB")


def _rate_unit(max_value: float) -> tuple[float, str]:
    return (GiB, "GiB/s") if max_value >= 4 * GiB else (MiB, "MiB/s")


def _time_unit(max_t: float) -> tuple[float, str]:
    return (60.0, "min") if max_t > 1200 else (1.0, "s")


def _plot(ax, line: Line, xs: float, ys: float, value_label=None, below=False, **kw) -> None:
    x = [v / xs for v in line.x]
    y = [v / ys for v in line.y]
    if len(x) <= 30:
        kw.setdefault("marker", "o")
        kw.setdefault("markersize", 3.5 if len(x) > 2 else 6)
    ax.plot(x, y, drawstyle="steps-post" if line.steps else "default", **kw)
    if len(x) == 1 and value_label is not None:
        # A lone snapshot (HMP, virsh) shows as a dot: print its value beside it.
        ax.annotate(
            value_label(line.y[0]),
            (x[0], y[0]),
            xytext=(-8, -3 if below else 3),
            textcoords="offset points",
            ha="right",
            va="top" if below else "bottom",
            fontsize=10,
            color=kw.get("color", "#333333"),
        )


def _colour(i: int, n_runs: int, series: str) -> str:
    return SINGLE[series] if n_runs == 1 else RUN_COLOURS[i % len(RUN_COLOURS)]


def _t_range(plots: Sequence[RunPlot]) -> tuple[float, float]:
    """Seconds spanned by every run, its markers and the phases: shared by both charts."""
    ts = [p.series.t_max for p in plots if p.series.t_max is not None]
    ts += [t for p in plots for ph in p.phases for t in (ph.start, ph.end) if t is not None]
    ts += [
        x
        for p in plots
        for line in (p.series.transferred, p.series.remaining, p.series.throughput)
        for x in line.x[:1]
    ]
    return (min(0.0, *ts), max(ts)) if ts else (0.0, 1.0)


def _t_scale(plots: Sequence[RunPlot]) -> tuple[float, str, tuple[float, float]]:
    lo, hi = _t_range(plots)
    ts, tu = _time_unit(hi)
    pad = max((hi - lo) * 0.015, 0.5)
    return ts, tu, ((lo - pad) / ts, (hi + pad) / ts)


def _figure() -> tuple[Figure, object]:
    # Fixed margins (not constrained layout) so the two charts' time axes line up exactly.
    fig = Figure(figsize=FIG_SIZE)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.065, right=0.935)
    return fig, ax


def _legend_columns(labels: list[str], max_chars: int = 150) -> int:
    """As many columns (up to 4) as fit in the figure's width; matplotlib fills by column."""
    for ncol in range(min(4, max(1, len(labels))), 1, -1):
        rows = -(-len(labels) // ncol)
        cols = [labels[c * rows : (c + 1) * rows] for c in range(ncol)]
        if sum(max((len(x) for x in col), default=0) + 8 for col in cols) <= max_chars:
            return ncol
    return 1


def _finish(fig: Figure, ax, handles: list, xlim: tuple[float, float]) -> None:
    ax.set_xlim(*xlim)
    ax.set_ylim(bottom=0)
    ncol = _legend_columns([h.get_label() for h in handles])
    rows = -(-len(handles) // ncol) if handles else 0
    # Room below the axes for tick labels, the axis label and the legend, in inches; a
    # long legend (many compared runs) makes the figure taller, not the plot smaller.
    bottom = 0.62 + 0.24 * rows
    height = max(FIG_SIZE[1], 3.2 + bottom)
    fig.set_size_inches(FIG_SIZE[0], height)
    fig.subplots_adjust(bottom=bottom / height, top=1 - 0.38 / height)
    if handles:
        fig.legend(
            handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, frameon=False
        )


def _phases(ax, phases: Sequence[Phase], ts: float) -> list:
    handles: list = []
    seen: set[str] = set()
    for ph in phases:
        if ph.start is None or ph.end is None or ph.end <= ph.start:
            continue
        colour = PHASE_COLOURS.get(ph.name, "#eeeeee")
        ax.axvspan(ph.start / ts, ph.end / ts, color=colour, alpha=0.6, lw=0, zorder=0)
        if ph.name not in seen:
            seen.add(ph.name)
            handles.append(Patch(color=colour, alpha=0.6, label=f"phase: {ph.name}"))
    return handles


def progress_chart(plots: Sequence[RunPlot]) -> Chart | None:
    """Transferred and remaining bytes over time; None when no run has timed progress."""
    drawable = [p for p in plots if p.series.has_progress]
    if not drawable:
        return None
    n = len(plots)
    peak = max(
        [
            v
            for p in drawable
            for v in (*p.series.transferred.y, *p.series.remaining.y, *p.series.disk.y)
        ]
        + [p.series.ram_bytes or 0 for p in drawable]
    )
    bs, bu = _byte_unit(peak)
    ts, tu, xlim = _t_scale(plots)
    with rc_context(RC):
        fig, ax = _figure()
        handles = _phases(ax, plots[0].phases, ts)
        rams: set[int] = set()
        for i, p in enumerate(plots):
            s = p.series
            if not s.has_progress:
                continue
            if s.transferred:
                _plot(
                    ax,
                    s.transferred,
                    ts,
                    bs,
                    format_bytes,
                    color=_colour(i, n, "transferred"),
                    lw=2,
                )
            if s.remaining:
                c = _colour(i, n, "remaining")
                _plot(
                    ax,
                    s.remaining,
                    ts,
                    bs,
                    format_bytes,
                    True,
                    color=c,
                    lw=2,
                    ls=STYLES["remaining"],
                )
            if s.disk:
                c = _colour(i, n, "disk")
                _plot(ax, s.disk, ts, bs, format_bytes, color=c, lw=2, ls=STYLES["disk"])
            # Sizes within 1 % are the same VM (ram.total counts ROM/VGA blocks too).
            if s.ram_bytes and not any(abs(s.ram_bytes - r) <= 0.01 * r for r in rams):
                rams.add(s.ram_bytes)
                ax.axhline(s.ram_bytes / bs, color="#444444" if n == 1 else RUN_COLOURS[i], lw=1)
                ax.annotate(
                    f"RAM {format_bytes(s.ram_bytes)}" + ("" if i == 0 else f" (run {i + 1})"),
                    (0.005, s.ram_bytes / bs),
                    xycoords=("axes fraction", "data"),
                    xytext=(0, 3),
                    textcoords="offset points",
                    fontsize=10,
                    color="#333333",
                )
        ax.set_xlabel(f"time since the start of the log ({tu})")
        ax.set_ylabel(f"bytes ({bu})")
        ax.set_title("Progress: bytes transferred and remaining")
        names = [k for k in ("transferred", "remaining", "disk") if _any(plots, k)]
        handles = _series_legend(plots, names) + handles
        _finish(fig, ax, handles, xlim)
        ax.set_ylim(top=max(ax.get_ylim()[1], peak / bs * 1.08))
    return Chart("progress", "Progress over time", fig)


_LABELS = {
    "transferred": "transferred (cumulative, incl. re-sent pages)",
    "remaining": "remaining (dirty, still to send)",
    "disk": "local disks mirrored (storage migration)",
    "throughput": "real throughput",
    "dirty": "guest dirty rate",
}


def _any(plots: Sequence[RunPlot], attr: str) -> bool:
    return any(getattr(p.series, attr) for p in plots)


def _series_legend(plots: Sequence[RunPlot], names: Sequence[str]) -> list:
    n = len(plots)
    if n == 1:
        labels = dict(_LABELS)
        labels["throughput"] = {
            "qemu": "real throughput (QEMU's measured rate)",
            "deltas": "real throughput (transferred bytes per interval)",
            "averaged": "real throughput (from transferred bytes, smoothed)",
        }[plots[0].series.throughput_source]
        return [Line2D([], [], color=SINGLE[k], lw=2, ls=STYLES[k], label=labels[k]) for k in names]
    style = [Line2D([], [], color="#333333", lw=2, ls=STYLES[k], label=_LABELS[k]) for k in names]
    runs = [
        Line2D([], [], color=RUN_COLOURS[i % len(RUN_COLOURS)], lw=4, label=p.label)
        for i, p in enumerate(plots)
    ]
    return style + runs


def rates_chart(plots: Sequence[RunPlot]) -> Chart | None:
    """Real throughput against the dirty rate, setting changes marked; None if nothing to draw."""
    drawable = [p for p in plots if p.series.has_rates]
    if not drawable:
        return None
    n = len(plots)
    peak = max(
        [
            v
            for p in drawable
            for v in (
                *p.series.throughput.y,
                *p.series.dirty_rate.y,
                *(p.series.page_rate.y if n == 1 else ()),  # drawn for a single run only
            )
        ]
        + [0.0]
    )
    rs, ru = _rate_unit(peak)
    ts, tu, xlim = _t_scale(plots)
    with rc_context(RC):
        fig, ax = _figure()
        _phases(ax, plots[0].phases, ts)  # same shading as the progress chart, legend there
        extra: list = []
        throttle_ax = None
        for i, p in enumerate(plots):
            s = p.series
            if s.throughput:
                _plot(
                    ax, s.throughput, ts, rs, format_rate, color=_colour(i, n, "throughput"), lw=2
                )
            if s.dirty_rate:
                c = _colour(i, n, "dirty")
                _plot(
                    ax, s.dirty_rate, ts, rs, format_rate, True, color=c, lw=2, ls=STYLES["dirty"]
                )
            if n == 1 and s.page_rate:
                _plot(ax, s.page_rate, ts, rs, color=SINGLE["page_rate"], lw=1, ls=":")
                extra.append(
                    Line2D(
                        [],
                        [],
                        color=SINGLE["page_rate"],
                        lw=1,
                        ls=":",
                        label="page rate incl. zero pages (not throughput)",
                    )
                )
            if s.throttle:
                if throttle_ax is None:
                    throttle_ax = ax.twinx()
                    throttle_ax.set_ylabel("CPU throttle (%)")
                    throttle_ax.set_ylim(0, 100)
                    throttle_ax.grid(False)
                    throttle_ax.spines["right"].set_visible(True)
                c = SINGLE["throttle"] if n == 1 else RUN_COLOURS[i % len(RUN_COLOURS)]
                _plot(throttle_ax, s.throttle, ts, 1.0, color=c, lw=1.5, ls="-.", alpha=0.8)
                if not any(h.get_label() == "CPU throttle (right axis)" for h in extra):
                    extra.append(
                        Line2D([], [], color=c, lw=1.5, ls="-.", label="CPU throttle (right axis)")
                    )
            _markers(ax, s, ts, None if n == 1 else RUN_COLOURS[i % len(RUN_COLOURS)])
        kinds = {m.kind for p in plots for m in p.series.markers}
        extra += [
            Line2D([], [], color=MARKER_COLOURS.get(k, "#555555"), lw=1, ls=":", label=_MARK[k])
            for k in sorted(kinds)
        ]
        ax.set_xlabel(f"time since the start of the log ({tu})")
        ax.set_ylabel(f"rate ({ru})")
        ax.set_title("Throughput against the guest's dirty rate")
        if not any(p.series.throughput or p.series.dirty_rate for p in plots):
            peak = _limit_schedule(ax, plots, ts, xlim[1])
            rs = 1.0
        names = [
            k for k, a in (("throughput", "throughput"), ("dirty", "dirty_rate")) if _any(plots, a)
        ]
        handles = _series_legend(plots, names) + extra
        _finish(fig, ax, handles, xlim)
        if peak:
            ax.set_ylim(top=peak / rs * 1.25)  # head-room for the marker labels
    return Chart("rates", "Throughput and dirty rate", fig)


def _limit_schedule(ax, plots: Sequence[RunPlot], ts: float, x_end: float) -> float:
    """No rates in the log (nova's messages): draw the downtime limit it stepped through."""
    ax.set_title("Downtime limit over time (this log has no throughput or dirty rate)")
    top = 0.0
    for i, p in enumerate(plots):
        steps = [(m.t, m.value) for m in p.series.markers if m.kind == "downtime-change"]
        steps = [(t, v) for t, v in steps if v is not None]
        if not steps:
            continue
        x = [t / ts for t, _ in steps] + [x_end]
        y = [v for _, v in steps] + [steps[-1][1]]
        colour = MARKER_COLOURS["downtime-change"] if len(plots) == 1 else RUN_COLOURS[i % 7]
        ax.plot(x, y, drawstyle="steps-post", color=colour, lw=2)
        top = max(top, *y)
    if top:
        ax.set_ylabel("downtime limit (s)")
    else:
        ax.set_yticks([])
        ax.set_ylabel("rate - not in this log")
    return top


_MARK = {
    "downtime-change": "downtime limit changed",
    "bandwidth-change": "bandwidth limit changed",
    "throttle-change": "CPU throttle changed",
    "postcopy-start": "switched to post-copy",
    "prediction": "live prediction changed",
}


def _markers(ax, s: RunSeries, ts: float, run_colour: str | None) -> None:
    # Many changes (nova's downtime steps) stay legible by labelling a subset.
    step = max(1, len(s.markers) // 12)
    for k, m in enumerate(s.markers):
        colour = run_colour or MARKER_COLOURS.get(m.kind, "#555555")
        ax.axvline(m.t / ts, color=colour, lw=1.2, ls=":", zorder=1)
        if k % step == 0:
            ax.annotate(
                m.label,
                (m.t / ts, 0.98),
                xycoords=("data", "axes fraction"),
                xytext=(3, 0),
                textcoords="offset points",
                rotation=90,
                va="top",
                ha="left",
                fontsize=9,
                color=colour,
            )


_UNREFERENCED_ID = re.compile(r'\sid="([^"]+)"')


def to_svg(chart: Chart, salt: str = "") -> str:
    """The chart as an ``<svg>`` element to inline in HTML (no XML prolog, no metadata)."""
    buf = io.StringIO()
    with rc_context({**RC, "svg.hashsalt": f"migtune-{salt}{chart.name}"}):
        chart.figure.savefig(
            buf,
            format="svg",
            metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
        )
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    # Ids that nothing references would clash between several inline SVGs; drop them.
    used = set(re.findall(r"#([\w.-]+)", svg))
    svg = _UNREFERENCED_ID.sub(lambda m: m.group(0) if m.group(1) in used else "", svg)
    svg = re.sub(r'\swidth="[\d.]+pt" height="[\d.]+pt"', "", svg, count=1)
    label = chart.title.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1).strip()


def to_png(chart: Chart) -> bytes:
    buf = io.BytesIO()
    with rc_context(RC):
        chart.figure.savefig(buf, format="png", dpi=PNG_DPI, metadata={"Software": None})
    return buf.getvalue()
