"""``migtune plan evacuate``: a thin layer over :func:`migtune.plan.plan_evacuation`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from migtune.cli.main import cli
from migtune.cli.options import DURATION, QEMU_VERSION, RATE, history_db_option
from migtune.errors import EXIT_NOT_CONVERGED, InputError
from migtune.plan.fleet import PLATFORMS
from migtune.settings import SUPPORTED_QEMU


@cli.group("plan")
def plan_group() -> None:
    """Plan migrations of many VMs (evacuating a host)."""


class _Bar:
    """A rich progress bar on stderr while the simulations run (not when stderr is a file)."""

    def __init__(self) -> None:
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _Bar:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.progress = Progress(
                "{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )  # fmt: skip
            self.progress.start()
        return self

    def __call__(self, what: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        if what not in self.tasks:
            self.tasks[what] = self.progress.add_task(what, total=total)
        self.progress.update(self.tasks[what], completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


@plan_group.command("evacuate")
@click.argument("fleet", metavar="VMS.csv|VMS.toml", type=click.Path(dir_okay=False))
@click.option("--link", type=RATE, default="10Gbit/s", show_default=True, metavar="RATE",
              help="The link every migration shares.")  # fmt: skip
@click.option("--stream-rate", type=RATE, metavar="RATE",
              help="The most one migration stream moves whatever the link (one "
              "migration thread, TLS, an SSH tunnel); default: no such limit.")  # fmt: skip
@click.option("--max-parallel", type=click.IntRange(1, 64), default=4, show_default=True,
              metavar="N", help="At most this many migrations at once (the baselines "
              "run exactly this many).")  # fmt: skip
@click.option("--max-downtime", type=DURATION, metavar="TIME",
              help="The pause each VM can accept, unless its row says otherwise "
              "(default: the platform's downtime limit).")  # fmt: skip
@click.option("--deadline", type=DURATION, metavar="TIME",
              help="The whole drain must end within this (exit 6 otherwise).")  # fmt: skip
@click.option("--max-time", type=DURATION, default="1h", show_default=True, metavar="TIME",
              help="Give up on a VM's migration after this long, unless its row says "
              "otherwise.")  # fmt: skip
@click.option("--platform", type=click.Choice(PLATFORMS), default="qemu", show_default=True,
              help="Whose settings and commands (a row's platform column wins).")  # fmt: skip
@click.option("--qemu-version", type=QEMU_VERSION, default="10.0", show_default=True,
              metavar="X.Y", help=f"QEMU behaviour to model ({SUPPORTED_QEMU}).")  # fmt: skip
@history_db_option("history_db", used_for=" that history:NAME rows read")
@click.option("--tune", "use_tune", is_flag=True,
              help="Also ask migtune tune for each VM's settings (its platform's "
              "whole grid, the platform's policy in the loop); seconds per VM.")  # fmt: skip
@click.option("--scheduler", metavar="tcp://HOST:8786",
              help="Run the simulations on this Dask cluster (default: a local cluster "
              "of worker processes).")  # fmt: skip
@click.option("--workers", type=click.IntRange(1, 256), metavar="N",
              help="Worker processes of the local cluster (default 2).")  # fmt: skip
@click.option("--serial", is_flag=True,
              help="Simulate in this process, without Dask (same plan).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@click.option("--report", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the plan as an HTML page with a Gantt chart.")  # fmt: skip
def evacuate_cmd(**kw: Any) -> int:
    """Plan draining a host: order, concurrency and settings for every VM, compared
    with bulk migrate, largest-first and smallest-first.

    VMS.csv / VMS.toml has one VM per row: name, ram, workload (a workload spec as
    for simulate, or history:NAME), and optional max-downtime, max-time,
    max-bandwidth, platform.

    Exit status: 0 every VM converges within its limits and the deadline is met;
    6 some VM cannot converge, misses its downtime limit, or the deadline is missed;
    2 bad input.
    """
    from migtune.plan import plan_evacuation
    from migtune.plan.report import render_text

    if kw["serial"] and (kw["scheduler"] or kw["workers"]):
        raise InputError("--serial: runs without Dask; drop --scheduler / --workers")
    if kw["scheduler"] and kw["workers"]:
        raise InputError("--workers: only for the local cluster; the cluster at "
                         "--scheduler has its own workers")  # fmt: skip
    report = kw["report"]
    if report is not None:
        _check_writable(Path(report))
    with _Bar() as bar:
        plan = plan_evacuation(
            kw["fleet"],
            link_rate=kw["link"],
            max_parallel=kw["max_parallel"],
            max_downtime=kw["max_downtime"],
            deadline=kw["deadline"],
            max_time=kw["max_time"],
            platform=kw["platform"],
            qemu_version=kw["qemu_version"],
            serial=kw["serial"],
            workers=kw["workers"],
            scheduler=kw["scheduler"],
            progress=bar,
            stream_rate=kw["stream_rate"],
            history_db=kw["history_db"],
            use_tune=kw["use_tune"],
        )
    if kw["as_json"]:
        click.echo(json.dumps(plan.to_dict(), indent=2))
    else:
        click.echo(render_text(plan), nl=False)
    if report is not None:
        from migtune.plan.html import write_plan_page

        write_plan_page(plan, report)
    return 0 if plan.ok else EXIT_NOT_CONVERGED


def _check_writable(path: Path) -> None:
    """Refuse an unwritable --report before minutes of simulation, not after."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--report: {path}: the folder {parent} does not exist")
    if path.is_dir():
        raise InputError(f"--report: {path}: is a directory")
