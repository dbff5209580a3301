"""The HTML report: one self-contained page (findings, charts, pass table, explained log).

``build_report(run, compare=[...])`` returns the page as a string; ``write_report``
writes it (and, optionally, each chart as a PNG).  Runs come from
:func:`migtune.sources.load_run`, so real logs, lab recordings and simulations all work.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from migtune.errors import InputError
from migtune.model import Run
from migtune.report import charts as ch
from migtune.report.analysis import analyse
from migtune.report.html import ChartView, RunView, page, run_name
from migtune.report.logexcerpt import ProxmoxExcerpt
from migtune.report.series import pass_rows, run_series
from migtune.settings import describe

__all__ = ["ProxmoxExcerpt", "build_report", "render", "save_pngs", "write_report"]


def _view(run: Run) -> RunView:
    name = run_name(run)
    if run.meta.get("origin") == "simulate":
        name += " (simulated)"
    return RunView(
        run=run,
        name=name,
        label=f"{name}: {describe(run.settings)}",
        analysis=analyse(run),
        passes=pass_rows(run),
    )


def _phases(view: RunView) -> list:
    exp = view.analysis.explanation
    return list(getattr(exp, "timeline", None) or [])


def _no_chart_reason(run: Run) -> str:
    if not run.samples:
        return (
            "This log has no progress samples (bytes transferred or remaining): nothing to chart."
        )
    return (
        "This log's progress lines carry no usable timestamps, so nothing can be drawn over "
        "time; the numbers are in the header and the pass table."
    )


def _captions(views: Sequence[RunView]) -> dict[str, str]:
    series = run_series(views[0].run)
    dirty = (
        "The dirty rate is QEMU's measurement of how fast the guest rewrites memory."
        if series.dirty_rate
        else "This log does not report the guest's dirty rate."
    )
    rates = (
        "Throughput is what actually crossed the network (QEMU's rate, or transferred bytes "
        f"over time). {dirty} While the dirty rate stays above the throughput the migration "
        "cannot converge."
    )
    if not (series.throughput or series.dirty_rate):
        rates = (
            "This log reports neither throughput nor dirty rate; the chart shows the setting "
            "changes it does report."
        )
    return {
        "progress": (
            "Transferred counts every byte sent, including pages sent again after the guest "
            "dirtied them, so it can exceed the RAM size. Remaining is the dirty memory still "
            "to send: the migration can switch over once it fits in the downtime limit."
        ),
        "rates": rates,
    }


def render(
    run: Run, compare: Sequence[Run] = (), log_excerpt: ProxmoxExcerpt | None = None
) -> tuple[str, list[ch.Chart]]:
    """The page and its matplotlib charts (for ``save_pngs``).

    ``log_excerpt``: the excerpt made while ``run`` was parsed (``load_run(path,
    observe=ProxmoxExcerpt())``); without it a huge log is read a second time."""
    views = [_view(run), *(_view(r) for r in compare)]
    plots = [ch.RunPlot(v.label, run_series(v.run)) for v in views]
    plots[0].phases = _phases(views[0])
    charts = [c for c in (ch.progress_chart(plots), ch.rates_chart(plots)) if c is not None]
    captions = _captions(views)
    chart_views = [ChartView(c.name, c.title, ch.to_svg(c), captions[c.name]) for c in charts]
    html = page(views, chart_views, _no_chart_reason(run), _phases(views[0]), log_excerpt)
    return html, charts


def build_report(run: Run, compare: Sequence[Run] = ()) -> str:
    """The report for ``run`` with ``compare`` runs overlaid, as one HTML document."""
    return render(run, compare)[0]


def write_report(
    run: Run,
    output: str | Path | None,
    compare: Sequence[Run] = (),
    png_dir: str | Path | None = None,
    log_excerpt: ProxmoxExcerpt | None = None,
) -> tuple[str, list[Path]]:
    """Write the HTML report to ``output`` (unless None) and each chart as ``DIR/<name>.png``.

    Returns the page and the paths written.
    """
    html, charts = render(run, compare, log_excerpt)
    written: list[Path] = []
    if output is not None:
        out = Path(output)
        _write(out, html.encode("utf-8"))
        written.append(out)
    if png_dir is not None:
        written += save_pngs(charts, png_dir)
    return html, written


def save_pngs(charts: Sequence[ch.Chart], png_dir: str | Path) -> list[Path]:
    """Write each chart as ``DIR/<name>.png`` (1280 px wide), creating DIR if needed."""
    d = Path(png_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {d}: {exc.strerror or exc}") from None
    paths = []
    for c in charts:
        p = d / f"{c.name}.png"
        _write(p, ch.to_png(c))
        paths.append(p)
    return paths


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
