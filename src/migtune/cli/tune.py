"""``migtune tune``: settings that converge, ranked by their simulated effect."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import click

from migtune.cli.main import cli, load_log
from migtune.cli.options import (
    DURATION,
    GUEST_RAM,
    PLATFORMS,
    QEMU_VERSION,
    RATE,
    history_db_option,
)
from migtune.errors import EXIT_NOT_CONVERGED, EXIT_OK, InputError

PLATFORM_OF_FORMAT = {"proxmox": "proxmox", "libvirt": "libvirt", "nova": "nova"}


@cli.command("tune")
@click.option("--from", "from_log", type=click.Path(dir_okay=False), metavar="LOG",
              help="Calibrate the workload from an observed run (any log explain reads).")  # fmt: skip
@click.option("--vm", "vm_name", metavar="NAME",
              help="Calibrate from this VM's past runs in the history (migtune history).")  # fmt: skip
@history_db_option(used_for=" for --vm")
@click.option("--ram", type=GUEST_RAM, metavar="SIZE", help="Guest RAM, without --from.")
@click.option("--workload", metavar="SPEC", help="How the guest dirties memory, without --from.")
@click.option("--platform", type=click.Choice(PLATFORMS),
              help="What may be set and how it behaves (default: the log's platform, else qemu).")  # fmt: skip
@click.option("--max-downtime", type=DURATION, default="2s", show_default=True, metavar="TIME",
              help="Longest acceptable pause of the guest, in the worst plausible case.")  # fmt: skip
@click.option("--max-time", type=DURATION, metavar="TIME",
              help="Longest acceptable migration (default: no limit).")  # fmt: skip
@click.option("--link", type=RATE, metavar="RATE",
              help="A link's raw rate (10Gbit/s): the dedicated network to consider, or "
              "with --ram the link the migration uses (default then 10Gbit/s).")  # fmt: skip
@click.option("--allow", default="xbzrle,auto-converge,multifd", show_default=True,
              metavar="LIST", help="Features to consider: xbzrle, auto-converge, postcopy, "
              "multifd (post-copy only when listed: a network failure after the switch "
              "loses the VM).")  # fmt: skip
@click.option("--qemu-version", type=QEMU_VERSION, metavar="X.Y",
              help="QEMU behaviour to model (default: the log's, else 10.0).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def tune_cmd(**kw: Any) -> int:
    """Find the settings that converge within the limits, ranked by simulated effect.

    The workload comes from a log (--from), from a VM's past runs in the history
    (--vm NAME), or is given (--ram and --workload).

    Exit status: 0 a setting meets the limits, 6 none does (the closest is shown with
    the limit that would have to give), 2 bad input.
    """
    from migtune.analysis.tune import tune

    given = [
        bool(kw["from_log"]),
        bool(kw["vm_name"]),
        kw["ram"] is not None or bool(kw["workload"]),
    ]
    if sum(given) > 1:
        raise InputError("--from: give one of a log, --vm, or --ram and --workload")
    if not kw["from_log"] and not kw["vm_name"] and (kw["ram"] is None or not kw["workload"]):
        raise InputError("--from: missing (give a log, --vm NAME, or --ram and --workload)")
    allow = [a.strip() for a in kw["allow"].split(",") if a.strip()]
    source = None
    platform = kw["platform"]
    if kw["vm_name"]:
        from migtune.history import calibration_for_vm

        # the VM's runs calibrated together: the plausible set reproduces all of them
        source = calibration_for_vm(kw["vm_name"], db=kw["db"])
    elif kw["from_log"]:
        source = load_log(kw["from_log"])
        platform = platform or PLATFORM_OF_FORMAT.get(source.format, "qemu")
    with _progress(kw["as_json"]) as show:
        result = tune(
            source,
            ram_bytes=None if kw["ram"] is None else int(kw["ram"]),
            workload=kw["workload"],
            platform=platform or "qemu",
            max_downtime=kw["max_downtime"],
            max_time=kw["max_time"],
            link_rate=kw["link"],
            allow=allow,
            qemu_version=kw["qemu_version"],
            progress=show,
        )
    if kw["as_json"]:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        from migtune.analysis.tune.text import render

        click.echo(render(result), nl=False)
    return EXIT_OK if result.recommendation is not None else EXIT_NOT_CONVERGED


@contextlib.contextmanager
def _progress(quiet: bool):
    """A progress bar on stderr while candidates are simulated (terminals only)."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("calibrating, simulating candidates"), BarColumn(), MofNCompleteColumn(),
        console=Console(stderr=True), transient=True,
    )  # fmt: skip
    task = bar.add_task("tune", total=None)

    def show(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield show
