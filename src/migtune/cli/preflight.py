"""``migtune preflight``: will this VM migrate?  Measured before starting."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from migtune.cli.main import cli
from migtune.cli.options import (
    DURATION,
    PLATFORMS,
    RATE,
    history_db_option,
    migration_settings_options,
    pop_settings_options,
    settings_from_options,
)
from migtune.errors import InputError

# tune's names (migtune.analysis.tune.FEATURES / DEFAULT_ALLOW); kept here so --help
# does not import the simulator
ALLOWED = ("xbzrle", "auto-converge", "postcopy", "multifd")
DEFAULT_ALLOW = "xbzrle+auto-converge+multifd"


def parse_allow(text: str) -> tuple[str, ...]:
    """``auto-converge+postcopy`` -> the features the tuner may use; ``none`` for none."""
    if text.strip().lower() in ("", "none"):
        return ()
    parts = tuple(p.strip().lower() for p in text.replace(",", "+").split("+") if p.strip())
    for p in parts:
        if p not in ALLOWED:
            raise InputError(f"--allow: {p!r} is not one of {', '.join(ALLOWED)} (or none)")
    return parts


@cli.command("preflight")
@click.option(
    "--qmp", "qmp", required=True, metavar="SOCKET", help="QMP unix socket of the running VM."
)
@click.option(
    "--link",
    type=RATE,
    metavar="RATE",
    help="Rate of the network the migration will use (10Gbit/s); unknown: the lab's loopback.",
)
@migration_settings_options(command="simulate")
@click.option(
    "--platform",
    type=click.Choice(PLATFORMS),
    default="qemu",
    show_default=True,
    help="Whose settings to recommend, with its policy in the simulation and its commands.",
)
@click.option(
    "--max-downtime",
    type=DURATION,
    default="2s",
    show_default=True,
    metavar="TIME",
    help="Longest pause the guest may take.",
)
@click.option(
    "--max-time",
    type=DURATION,
    default="30min",
    show_default=True,
    metavar="TIME",
    help="Longest the migration may take.",
)
@click.option(
    "--measure",
    type=DURATION,
    default="10s",
    show_default=True,
    metavar="TIME",
    help="How long to measure the guest's dirty rate (longer: tighter working-set bounds).",
)
@click.option(
    "--allow",
    default=DEFAULT_ALLOW,
    show_default=True,
    metavar="LIST",
    help="Features a recommendation may switch on besides the downtime limit and the "
    "bandwidth (xbzrle, auto-converge, multifd, postcopy, joined with +), or none.",
)
@click.option(
    "--zero-samples",
    type=click.IntRange(0, 65536),
    default=1024,
    show_default=True,
    metavar="N",
    help="Guest pages read twice, a second apart (monitor xp, read-only): the zero-page "
    "share and the bytes a rewrite changes. 0: do not read guest memory (both unknown).",
)
@click.option("--vm", "vm_name", metavar="NAME",
              help="Also predict with the workloads this VM's past migrations showed "
              "(migtune history): the ranges cover both.")  # fmt: skip
@history_db_option(used_for=" for --vm")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def preflight_cmd(**kwargs: Any) -> int:
    """Measure a running VM without migrating it and predict its migration.

    Uses QEMU's calc-dirty-rate over periods of several lengths, the RAM size and
    the zero-page share, infers the plausible workloads, simulates the migration
    with the settings in force (plus any settings flags given: what you will set)
    and recommends settings that meet --max-downtime and --max-time.  Changes no
    migration parameter or capability.  Exit status: 0 go, 6 no-go (nothing allowed
    meets the limits), 2 bad option or a migration already in progress or a VM not
    running, 5 QMP socket missing or not answering.
    """
    from migtune.analysis.preflight import preflight

    opts = pop_settings_options(kwargs)
    overrides = settings_from_options(opts)
    allow = parse_allow(kwargs["allow"])
    if opts.get("postcopy"):
        allow = tuple(sorted({*allow, "postcopy"}))
    as_json = kwargs["as_json"]
    history = None
    if kwargs["vm_name"]:
        from migtune.history import calibration_for_vm

        # read before QEMU is touched: an unknown VM is a bad option, not a measurement
        history = calibration_for_vm(kwargs["vm_name"], db=kwargs["db"], store=False)

    def say(msg: str) -> None:
        if not as_json and sys.stderr.isatty():
            print(f"\r\033[Kmigtune: {msg}", end="", file=sys.stderr, flush=True)

    try:
        result = preflight(
            kwargs["qmp"],
            settings=overrides,
            link_rate=kwargs["link"],
            platform=kwargs["platform"],
            max_downtime=kwargs["max_downtime"],
            max_time=kwargs["max_time"],
            measure_s=kwargs["measure"],
            allow=allow,
            zero_samples=kwargs["zero_samples"],
            say=say,
            history=history,
        )
    finally:
        if not as_json and sys.stderr.isatty():
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        click.echo(result.text())
    return result.exit_code
