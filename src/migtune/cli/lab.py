"""``migtune lab``: a local two-QEMU testbed (build the guest, run one migration, the matrix)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from migtune.cli.history import history_options, record_quietly
from migtune.cli.main import cli
from migtune.cli.metrics import metrics_endpoint, metrics_options
from migtune.cli.options import (
    DURATION,
    SIZE,
    migration_settings_options,
    pop_settings_options,
    postcopy_rule_from_options,
    settings_from_options,
)
from migtune.units import format_bytes, format_rate


class _Spinner:
    """A one-line status on a terminal for boot and warm-up; silent otherwise.

    ``spinner(None)`` hides it while the migration's own progress bar runs (rich
    allows one live display at a time).
    """

    def __init__(self, enabled: bool):
        self.console: Any = None
        self._live: Any = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console

            self.console = Console(stderr=True)

    def __call__(self, message: str | None) -> None:
        if self.console is None:
            return
        if message is None:
            self.stop()
        elif self._live is None:
            self._live = self.console.status(message)
            self._live.start()
        else:
            self._live.update(message)

    def log(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, highlight=False)
        else:
            click.echo(text, err=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


@contextmanager
def _status(enabled: bool) -> Iterator[_Spinner]:
    spinner = _Spinner(enabled)
    try:
        yield spinner
    finally:
        spinner.stop()


@cli.group("lab")
def lab() -> None:
    """Local testbed: two QEMUs on loopback and a guest that dirties memory on purpose.

    The guest is the Debian cloud kernel with a busybox initramfs and migtune's own
    static memory dirtier, built on first use into ~/.cache/migtune/lab.
    """


@lab.command("build")
@click.option("--force", is_flag=True, help="Rebuild even if a cached image exists.")
def build_cmd(force: bool) -> int:
    """Build (or find) the lab guest and print where it is."""
    from migtune.lab.guest import build_guest

    image = build_guest(force=force)
    click.echo(f"kernel  {image.kernel}")
    click.echo(f"initrd  {image.initrd}")
    click.echo(f"dirtier {image.dirtier}")
    click.echo(f"key     {image.key}")
    return 0


ACCEL = click.Choice(["auto", "kvm", "tcg"])


@lab.command("run")
@click.option("--ram", type=SIZE, default="512MiB", show_default=True, help="Guest RAM.")
@click.option(
    "--workload",
    default="idle",
    show_default=True,
    metavar="SPEC",
    help="How the guest dirties memory: idle, or key=value pairs joined by commas, e.g. "
    "ws=256MiB,rate=64MiB/s. Keys: ws, rate (MiB/s, pages/s or unlimited), pattern (seq, "
    "random, hotcold), hot, hotw, bytes, catchup.",
)
@migration_settings_options(command="lab")
@click.option("--policy", default="fixed", show_default=True, metavar="SPEC",
              help="fixed, proxmox, nova, kubevirt or migtune, with parameters as for `migtune migrate`.")  # fmt: skip
@click.option("--time-limit", type=DURATION, default="60s", show_default=True, metavar="TIME",
              help="Cancel the migration after this long (the source keeps running).")  # fmt: skip
@click.option("--record", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the run as a JSON-lines recording (readable by explain/diagnose).")  # fmt: skip
@click.option("--accel", type=ACCEL, default="auto", show_default=True,
              help="auto: KVM if the guest really runs under it, else TCG.")  # fmt: skip
@click.option("--machine", default="pc", show_default=True, help="QEMU machine type.")
@click.option("--verify", is_flag=True,
              help="Keep the destination paused after the migration, compare both sides' RAM "
              "page by page, then resume it (pre-copy only).")  # fmt: skip
@metrics_options
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object.")
@history_options
def run_cmd(**kwargs: Any) -> int:
    """Boot a source and a destination guest, migrate between them, record the run.

    Exit status: 0 completed, 3 cancelled, 4 failed, 5 something needed is missing.
    """
    from migtune.lab.run import lab_run
    from migtune.qemu.policies import parse_policy
    from migtune.workload import parse_workload

    opts = pop_settings_options(kwargs)
    settings = settings_from_options(opts)
    rule = postcopy_rule_from_options(opts, settings, explicit=True)
    workload = parse_workload(kwargs["workload"])
    policy = parse_policy(kwargs["policy"])  # bad names: exit 2 before starting QEMU
    as_json = kwargs["as_json"]
    if rule.allow:
        click.echo(
            "migtune: warning: post-copy allowed: if the migration fails after the switch to "
            "post-copy, the VM is lost (neither side holds all of it)",
            err=True,
        )
    with metrics_endpoint(kwargs) as metrics, _status(not as_json) as say:
        result = lab_run(
            int(kwargs["ram"]),
            workload,
            settings,
            policy=policy,
            time_limit=kwargs["time_limit"],
            record=kwargs["record"],
            accel=kwargs["accel"],
            machine=kwargs["machine"],
            progress=not as_json,
            status=say,
            verify=kwargs["verify"],
            metrics=metrics,
            **rule.as_kwargs(),
        )
    history_id = record_lab(result, kwargs["vm_name"], kwargs["no_history"])
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        from migtune.cli.migrate import summary

        click.echo(summary(result.migration))
        click.echo(lab_summary(result))
        if history_id is not None:
            click.echo(f"  history: run #{history_id} (migtune history show {history_id})")
    return result.migration.exit_code


def record_lab(result: Any, vm: str | None, no_history: bool = False) -> int | None:
    """Add a lab run to the history (never fails the command: a warning at most)."""
    return record_quietly(
        result.migration.run,
        origin="lab",
        recording=result.recording,
        no_history=no_history,
        vm=vm,
        outcome=result.outcome,
        source_host="localhost",
        target_host="localhost",
        workload=result.workload.spec(),
    )


def lab_summary(result: Any) -> str:
    lines = [
        f"  guest: {format_bytes(result.ram)} RAM, workload {result.workload.spec()}, "
        f"{result.accel.upper()}, QEMU {result.qemu_version}"
    ]
    before, during = result.guest_rate_before, result.guest_rate_during()
    if before is not None:
        lines.append(
            f"  guest wrote {format_rate(before)} before migrating"
            + (f", {format_rate(during)} during" if during is not None else "")
        )
    if result.destination_alive is not None:
        lines.append(
            "  destination guest alive (heartbeat advancing)"
            if result.destination_alive
            else "  destination guest NOT alive: no heartbeat after the switch-over"
        )
    if result.differing_pages is not None:
        lines.append(
            "  RAM identical on both sides after the migration"
            if result.differing_pages == 0
            else f"  RAM DIFFERS after the migration: {result.differing_pages} pages"
        )
    if result.source_alive is not None:
        lines.append(
            "  source guest still running"
            if result.source_alive
            else "  source guest NOT running after the migration stopped"
        )
    for w in result.warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


def _names(values: tuple[str, ...]) -> list[str]:
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


@lab.command("matrix")
@click.option("--repeat", type=click.IntRange(1), default=1, show_default=True,
              help="Run every scenario N times.")  # fmt: skip
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="lab-matrix",
              show_default=True, help="Directory for the recordings (<scenario>-<n>.jsonl).")  # fmt: skip
@click.option("--only", multiple=True, metavar="NAME",
              help="Run only these scenarios (repeatable or comma-separated).")  # fmt: skip
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option("--accel", type=ACCEL, default="auto", show_default=True,
              help="Accelerator for every scenario's QEMUs; auto: KVM if the guest really "
              "runs under it, else TCG.")  # fmt: skip
@click.option("--verify", is_flag=True,
              help="Compare both sides' RAM after each completed pre-copy run.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the results as a JSON list.")
@click.option("--no-history", is_flag=True,
              help="Do not add the runs to the history (MIGTUNE_HISTORY=0 does the same); "
              "each run is added as VM lab-SCENARIO otherwise.")  # fmt: skip
def matrix_cmd(
    repeat: int,
    out_dir: str,
    only: tuple[str, ...],
    list_only: bool,
    accel: str,
    verify: bool,
    as_json: bool,
    no_history: bool,
) -> int:
    """Run the built-in scenarios and print a results table, one recording per run.

    Scenarios: idle guest, dirtying below and above a 32 MiB/s link, auto-converge with a
    rate-limited, a catching-up and a CPU-bound writer, a raised downtime limit, XBZRLE
    with a cache far larger and far smaller than the working set and with whole-page
    writes, post-copy, multifd and the proxmox policy.
    """
    from migtune.lab.matrix import results_table, run_matrix
    from migtune.lab.scenario import select

    scenarios = select(_names(only))
    if list_only:
        for sc in scenarios:
            click.echo(f"{sc.name:26} {sc.description}")
        return 0

    with _status(not as_json) as say:

        def echo_row(row: Any) -> None:
            if row.result is not None:
                record_lab(row.result, f"lab-{row.scenario.name}", no_history)
            if not as_json:
                state = row.error or (row.result.outcome.status if row.result else "?")
                say.log(f"{row.scenario.name} #{row.repeat}: {state}")

        rows = run_matrix(
            scenarios,
            repeat=repeat,
            out_dir=out_dir,
            accel=accel,
            progress=not as_json,
            status=say,
            on_row=echo_row,
            verify=verify,
        )
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2, default=str))
    else:
        click.echo(results_table(rows))
        click.echo(f"recordings in {out_dir}/")
    return 0
