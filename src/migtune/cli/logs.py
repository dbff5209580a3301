"""CLI commands that read a migration log: ``explain`` and ``diagnose``."""

from __future__ import annotations

import click

from migtune.analysis.brief import DEFAULT_EXCERPT_LINES
from migtune.analysis.brief import brief as brief_run
from migtune.analysis.diagnose import diagnose as diagnose_run
from migtune.analysis.explain import explain as explain_run
from migtune.cli.main import cli, load_log
from migtune.errors import InputError
from migtune.outputs import jsonout, text
from migtune.outputs.brief_text import render_brief
from migtune.sources import FORMATS

_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Log format (default: detect it).",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON (a stable contract).")


@cli.command()
@click.argument("log", type=click.Path(dir_okay=True, allow_dash=True))
@_FORMAT
@_JSON
@click.option(
    "--brief",
    is_flag=True,
    help="The answer first: the diagnosis with the commands for the log's platform, the "
    "timeline and the most informative lines (see --lines), instead of every line.",
)
@click.option(
    "--lines",
    "max_lines",
    type=click.IntRange(0, 1000),
    default=DEFAULT_EXCERPT_LINES,
    show_default=True,
    help="With --brief: how many explained log lines to show.",
)
def explain(log: str, fmt: str | None, as_json: bool, brief: bool, max_lines: int) -> int:
    """Print LOG back with what each line means, a timeline and the diagnosis."""
    if brief:
        if as_json:
            raise InputError("--brief is a text view; --json always carries every line")
        render_brief(brief_run(load_log(log, fmt), max_lines), log)
        return 0
    x = explain_run(load_log(log, fmt))
    if as_json:
        # Streamed: the lines array is as big as the log.
        jsonout.write_explanation(x, click.get_text_stream("stdout"))
    else:
        text.render_explanation(x)
    return 0


@cli.command()
@click.argument("log", type=click.Path(dir_okay=True, allow_dash=True))
@_FORMAT
@_JSON
@click.option("--predict", is_flag=True,
              help="Simulate each recommendation on the workload calibrated from the log and "
              "rank the remedies by their predicted effect (takes seconds).")  # fmt: skip
def diagnose(log: str, fmt: str | None, as_json: bool, predict: bool) -> int:
    """Find what slowed or broke the migration in LOG and what to change.

    Exits 0 whenever the log could be analysed, whatever it found.
    """
    d = diagnose_run(load_log(log, fmt), predict=predict)
    if as_json:
        click.echo(jsonout.dumps(jsonout.diagnosis_dict(d)))
    else:
        text.render_diagnosis(d)
    return 0
