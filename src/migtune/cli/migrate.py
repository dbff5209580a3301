"""``migtune migrate``: drive one live migration of a running QEMU over QMP."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click

from migtune.cli.history import history_options, record_quietly
from migtune.cli.main import cli
from migtune.cli.metrics import metrics_endpoint, metrics_options
from migtune.cli.options import (
    DURATION,
    migration_settings_options,
    pop_settings_options,
    postcopy_rule_from_options,
    settings_from_options,
)
from migtune.errors import InputError, MigrationFailed
from migtune.qemu.policies import parse_policy
from migtune.units import format_bytes, format_duration

# Written with spaces after the commas of each parameter list: click wraps help text at
# spaces only, and a long unbroken NAME:key=value,... run would be cut mid-word.
POLICY_HELP = (
    "How to steer the migration: NAME or NAME:key=value,key=value. "
    "fixed: keep the settings. "
    "proxmox (downtime=100ms): double the downtime limit on every 6th poll where remaining "
    "rose (cap 2000 s), no time limit. "
    "nova (downtime=500ms, steps=10, delay=75s, timeout=800s, action=abort or "
    "force_complete, data_gb=N, py2=no): downtime steps every delay x GiB, completion "
    "timeout timeout x GiB, then abort or force-complete (post-copy if --postcopy, else "
    "pause the guest). "
    "kubevirt (progress_timeout=150s, completion_per_gib=150s, disruption=yes or no, "
    "size=N): abort when remaining has not fallen for progress_timeout; at "
    "completion_per_gib x ceil(RAM/1e9) switch to post-copy if allowed (or pause with "
    "disruption=yes), else abort. "
    "migtune (max-downtime=2s, max-time=TIME, allow=auto-converge+postcopy, link=RATE): "
    "predict at every sync and make the smallest change the model says converges within "
    "the limits, or cancel early when nothing allowed can. "
    "Example: --policy nova:steps=5,timeout=400s."
)


@cli.command("migrate")
@click.option(
    "--qmp", "qmp", required=True, metavar="SOCKET", help="QMP unix socket of the source QEMU."
)
@click.option(
    "--to",
    "to_uri",
    metavar="URI",
    help="Destination URI, e.g. tcp:10.0.0.2:4444 (needed unless --attach or --cancel).",
)
@click.option(
    "--attach",
    is_flag=True,
    help="Take over a migration already in progress on --qmp (started by hand, or by a "
    "migtune that was killed): progress, --time-limit, --policy, Ctrl-C, --record.",
)
@click.option(
    "--cancel",
    "cancel",
    is_flag=True,
    help="Cancel the migration in progress on --qmp, check that the source VM runs and put "
    "back the settings a killed migtune had changed.",
)
@click.option(
    "--dest-qmp",
    metavar="SOCKET",
    help="QMP socket of the destination QEMU: needed for post-copy and multifd, and "
    "lets migtune notice a destination that vanishes.",
)
@migration_settings_options(command="migrate")
@click.option("--policy", default="fixed", show_default=True, metavar="SPEC", help=POLICY_HELP)
@click.option(
    "--record",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Write every sample, event and policy action as a JSON-lines recording.",
)
@click.option(
    "--time-limit",
    type=DURATION,
    metavar="TIME",
    help="Cancel (the source keeps running) if not completed after this long.",
)
@click.option(
    "--poll-interval",
    type=DURATION,
    metavar="TIME",
    help="How often to poll query-migrate (default: the policy's own cadence: fixed and "
    "nova 0.5s, kubevirt 0.4s, proxmox 1s, then 0.1s near the end).",
)
@click.option(
    "--dest-grace",
    type=DURATION,
    default="60s",
    show_default=True,
    metavar="TIME",
    help="With --dest-qmp: how long the destination may leave QMP unanswered (a network "
    "stall, a stopped process) before the migration is cancelled. A destination whose "
    "process is gone fails it at once.",
)
@click.option(
    "--keep-settings",
    is_flag=True,
    help="Leave the migration parameters and capabilities as migtune set them (default: put "
    "back what was in force before, on the source always and on the destination unless "
    "the migration completed).",
)
@metrics_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--no-diagnosis", is_flag=True, help="Do not print the diagnosis of the run.")
@history_options
def migrate_cmd(**kwargs: Any) -> int:
    """Migrate a running QEMU to URI over QMP, with progress, a policy and safety.

    Ctrl-C, --time-limit, an error or a destination that is gone or silent beyond
    --dest-grace cancel the migration and leave the source VM running, except once
    post-copy has started; the settings in force before are put back.  Exit status: 0
    completed (or cancelled with --cancel), 2 bad option or nothing to attach to or
    cancel, 3 cancelled, 4 failed, 5 QMP socket or QEMU missing or not answering QMP.
    """
    from migtune.qemu.migrate import attach, migrate

    opts = pop_settings_options(kwargs)
    settings = settings_from_options(opts)
    rule = postcopy_rule_from_options(opts, settings, explicit=True)
    as_json = kwargs["as_json"]
    policy = parse_policy(kwargs["policy"])  # bad names/parameters: exit 2 before touching QEMU
    if kwargs["cancel"]:
        return _cancel(kwargs, as_json)
    if kwargs["attach"] and (kwargs["to_uri"] or _given_settings(opts)):
        raise InputError(
            "--attach takes over a running migration as it is: no --to or settings flags "
            "(except --postcopy and its triggers)"
        )
    if not kwargs["attach"] and not kwargs["to_uri"]:
        raise InputError("--to URI is needed (or --attach / --cancel for a running migration)")
    if rule.allow:
        click.echo(
            "migtune: warning: post-copy allowed: if the migration fails after the switch to "
            "post-copy, the VM is lost (neither side holds all of it)",
            err=True,
        )
    common: dict[str, Any] = {
        "policy": policy,
        "record": kwargs["record"],
        "time_limit": kwargs["time_limit"],
        "dest_qmp": kwargs["dest_qmp"],
        "progress": not as_json,
        "poll_interval": kwargs["poll_interval"],
        "dest_grace": kwargs["dest_grace"],
        "keep_settings": kwargs["keep_settings"],
        **rule.as_kwargs(),
    }
    with metrics_endpoint(kwargs) as metrics:  # a port in use: exit 2 before QEMU is touched
        if kwargs["attach"]:
            result = attach(kwargs["qmp"], metrics=metrics, **common)
        else:
            result = migrate(kwargs["qmp"], kwargs["to_uri"], settings, metrics=metrics, **common)
    history_id = _record(result, kwargs)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        click.echo(summary(result))
        if history_id is not None:
            click.echo(f"  history: run #{history_id} (migtune history show {history_id})")
        if not kwargs["no_diagnosis"]:
            text = diagnosis_text(result.run)
            if text:
                click.echo(text)
    return result.exit_code


def _record(result: Any, kwargs: dict[str, Any]) -> int | None:
    """Add the run to the history (never fails the command: a warning at most)."""
    from migtune.history.entries import host_of, this_host

    return record_quietly(
        result.run,
        origin="migrate",
        recording=result.recording,
        no_history=kwargs["no_history"],
        vm=kwargs["vm_name"],
        outcome=result.outcome,
        source_host=this_host(),
        target_host=host_of(kwargs["to_uri"]),
    )


def _given_settings(opts: dict[str, Any]) -> bool:
    """Settings flags other than the post-copy switch rule (which --attach can follow)."""
    switch = ("postcopy", "postcopy_after_passes", "postcopy_after")
    return any(v not in (None, False, ()) for k, v in opts.items() if k not in switch)


def _cancel(kwargs: dict[str, Any], as_json: bool) -> int:
    from migtune.qemu.migrate import cancel_migration

    if kwargs["attach"] or kwargs["to_uri"]:
        raise InputError("--cancel stops the running migration: no --to or --attach with it")
    done = cancel_migration(kwargs["qmp"], keep_settings=kwargs["keep_settings"])
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(done), indent=2))
    else:
        restored = {True: ", settings restored", False: ", settings partly restored"}
        click.echo(
            f"migration {done.status} (was {done.previous}); source VM "
            f"{done.source_status or 'unknown'}" + restored.get(done.settings_restored, "")
        )
        for w in done.warnings:
            click.echo(f"  warning: {w}")
    if done.source_status != "running" and done.status != "completed":
        raise MigrationFailed(
            f"the migration was cancelled but the source VM is {done.source_status}: "
            "run 'cont' on its QMP monitor if it should run"
        )
    return 0


def summary(result: Any) -> str:
    o = result.outcome
    lines = [f"migration {result.status}" + (f": {result.reason}" if result.reason else "")]
    lines.append(
        f"  total time {format_duration(o.total_time_s)}, downtime "
        + ("?" if o.downtime_ms is None else f"{o.downtime_ms:.0f} ms")
        + f", sent {format_bytes(o.transferred_bytes)}, passes {o.passes if o.passes is not None else '?'}"
    )
    if o.max_throttle_pct:
        lines.append(f"  max CPU throttle {o.max_throttle_pct:.0f}%")
    if o.xbzrle is not None:
        rate = o.xbzrle.cache_miss_rate
        lines.append(
            f"  XBZRLE: {o.xbzrle.pages} hits, {format_bytes(o.xbzrle.bytes)} encoded, "
            f"overflow {o.xbzrle.overflow}, cache-miss rate "
            + ("?" if rate is None else f"{rate * 100:.0f}%")
        )
    for a in result.actions:
        lines.append(f"  at {format_duration(a.t)}: {a.kind} - {a.reason}")
    if result.postcopy:
        lines.append("  switched to post-copy")
    if result.status != "completed":
        lines.append(f"  source VM: {result.source_status or 'unknown'}")
    for w in result.warnings:
        lines.append(f"  warning: {w}")
    if getattr(result, "settings_restored", None) is not None:
        lines.append(
            "  settings in force before were restored"
            if result.settings_restored
            else "  settings only partly restored (see warnings)"
        )
    if result.recording:
        lines.append(f"  recording: {result.recording}")
    return "\n".join(lines)


def diagnosis_text(run: Any) -> str:
    """The diagnosis of the run, if the analysis package is available (it is optional here)."""
    try:
        from migtune.analysis.diagnose import diagnose
    except ImportError:
        return ""
    try:
        d = diagnose(run)
    except Exception as exc:  # noqa: BLE001 - the migration result matters more than its analysis
        print(
            f"migtune: note: diagnosis unavailable ({type(exc).__name__}: {exc})", file=sys.stderr
        )
        return ""
    if not d.findings:
        return ""
    lines = ["diagnosis:"]
    for f in d.findings:
        lines.append(f"  [{f.severity}] {f.summary}")
        for r in f.recommendations[:2]:
            lines.append(f"      -> {r.action}")
    return "\n".join(lines)
