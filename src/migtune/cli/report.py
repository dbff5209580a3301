"""CLI command: ``migtune report RUN [--compare RUN ...] [-o report.html] [--png DIR]``."""

from __future__ import annotations

import sys

import click

from migtune.cli.main import cli, load_log
from migtune.sources import FORMATS


@cli.command()
@click.argument("run_path", metavar="RUN", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--compare",
    "compare",
    multiple=True,
    metavar="RUN",
    type=click.Path(dir_okay=False),
    help="Overlay another run (a simulated what-if, a lab run) on the same charts; repeatable.",
)
@click.option(
    "-o",
    "--output",
    default="report.html",
    show_default=True,
    metavar="FILE",
    help="Where to write the HTML report ('-' for standard output).",
)
@click.option(
    "--png",
    "png_dir",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Also write each chart as DIR/<chart>.png (for a forum post).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Format of RUN when detection guesses wrong (compared runs are always detected).",
)
def report(
    run_path: str, compare: tuple[str, ...], output: str, png_dir: str | None, fmt: str | None
) -> None:
    """Write a self-contained HTML report of a migration: findings, charts, passes, the log.

    RUN is anything `explain` reads: a Proxmox task log, QMP query-migrate output, HMP
    'info migrate', virsh domjobinfo, nova-compute lines, or a migtune recording.  The
    page loads nothing from the network, so it can be attached to a ticket as is.
    """
    from migtune.report import ProxmoxExcerpt, write_report

    excerpt = ProxmoxExcerpt()  # the explained-log excerpt, made in the same pass
    run = load_log(run_path, fmt, observe=excerpt)
    others = [load_log(p) for p in compare]
    to_stdout = output == "-"
    html, written = write_report(
        run, None if to_stdout else output, others, png_dir, log_excerpt=excerpt
    )
    if to_stdout:
        sys.stdout.write(html)
    for path in written:
        click.echo(f"wrote {path}", err=to_stdout)
