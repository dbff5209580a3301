"""``migtune simulate``: model a pre-copy migration, or replay a calibrated log with other settings."""

from __future__ import annotations

import json
from typing import Any

import click

from migtune.cli.history import history_options, record_recording
from migtune.cli.main import cli, load_log, warning_line
from migtune.cli.options import (
    DURATION,
    GUEST_RAM,
    QEMU_VERSION,
    RATE,
    migration_settings_options,
    pop_settings_options,
    postcopy_rule_from_options,
    settings_from_options,
)
from migtune.errors import EXIT_NOT_CONVERGED, InputError
from migtune.settings import SUPPORTED_QEMU, check_for_guest
from migtune.units import format_bytes, format_duration


@cli.command("simulate")
@click.option("--ram", type=GUEST_RAM, metavar="SIZE", help="Guest RAM (e.g. 32GiB).")
@click.option("--workload", default="idle", show_default=True, metavar="SPEC",
              help="How the guest dirties memory, as for `lab run`, e.g. "
              "ws=256MiB,rate=64MiB/s (keys: ws, rate, pattern, hot, hotw, bytes, "
              "catchup).")  # fmt: skip
@click.option("--trace", type=click.Path(dir_okay=False), metavar="FILE",
              help="Replay page writes from a trace (.npz with t+pages or t+bitmaps, "
              "or text lines 'seconds page').")  # fmt: skip
@migration_settings_options
@click.option("--qemu-version", type=QEMU_VERSION, default="10.0", show_default=True,
              metavar="X.Y", help=f"QEMU behaviour to model ({SUPPORTED_QEMU}).")  # fmt: skip
@click.option("--link", type=RATE, metavar="RATE",
              help="Wire rate the migration stream achieves without a cap "
              "(default: the lab's loopback, about 0.7 GB/s).")  # fmt: skip
@click.option("--time-limit", type=DURATION, metavar="TIME",
              help="Cancel the simulated migration after this long (default 600s; with "
              "--from: long enough to finish, at least the observed duration).")  # fmt: skip
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Random seed of the guest.")  # fmt: skip
@click.option("--from", "from_log", type=click.Path(dir_okay=False), metavar="LOG",
              help="Calibrate from an observed run (any log explain reads), then show "
              "the settings given here side by side with what was observed.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object.")
@click.option("--record", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the simulated run as a recording (readable by explain/diagnose); "
              "it is added to the history too.")  # fmt: skip
@history_options
def simulate_cmd(**kw: Any) -> int:
    """Simulate QEMU's pre-copy migration page by page, in a fraction of a second.

    Exit status: 0 the simulated migration completed, 6 it did not converge within
    the time limit, 2 bad input.
    """
    from migtune.sim.api import simulate

    opts = pop_settings_options(kw)
    settings = settings_from_options(opts)
    rule = postcopy_rule_from_options(opts, settings)
    if kw["from_log"]:
        return _from_log(kw, settings, rule)
    if kw["ram"] is None:
        raise InputError("--ram: missing (give the guest's RAM, or --from LOG)")
    time_limit = 600.0 if kw["time_limit"] is None else kw["time_limit"]
    for line in check_for_guest(settings, int(kw["ram"]), time_limit=time_limit):
        warning_line(line)
    result = simulate(
        int(kw["ram"]),
        kw["workload"],
        settings,
        qemu_version=kw["qemu_version"],
        link_rate=kw["link"],
        time_limit=time_limit,
        seed=kw["seed"],
        record=kw["record"],
        trace=kw["trace"],
        postcopy_after_passes=rule.after_passes,
        postcopy_after=rule.after,
    )
    history_id = _record(kw, result.outcome)
    if kw["as_json"]:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        click.echo(render(result))
        _say_recorded(history_id)
    return 0 if result.outcome.converged else EXIT_NOT_CONVERGED


def _record(kw: dict[str, Any], outcome: Any) -> int | None:
    """``--record``: the recording goes into the history too (a warning at most)."""
    if not kw["record"]:
        return None
    return record_recording(
        kw["record"], origin="simulate", no_history=kw["no_history"], vm=kw["vm_name"],
        outcome=outcome,
    )  # fmt: skip


def _say_recorded(history_id: int | None) -> None:
    if history_id is not None:
        click.echo(f"  history: run #{history_id} (migtune history show {history_id})")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


def _passes(o: Any) -> str:
    return "?" if o.passes is None else str(o.passes)


def outcome_lines(o: Any, horizon: float | None = None) -> list[str]:
    if o.converged:
        what = f"converged ({o.status})"
    elif o.status == "cancelled" and horizon:
        what = f"did not finish within {format_duration(horizon)}"
    else:
        what = f"did not converge ({o.status})"
    lines = [
        f"  outcome     {what}",
        f"  total time  {format_duration(o.total_time_s)}",
        f"  downtime    {_ms(o.downtime_ms)}",
        f"  sent        {format_bytes(o.transferred_bytes)}",
        f"  passes      {_passes(o)}",
        f"  throttle    {o.max_throttle_pct:.0f}% max"
        if o.max_throttle_pct
        else "  throttle    none",
    ]
    if o.xbzrle:
        x = o.xbzrle
        rate = "-" if x.cache_miss_rate is None else f"{x.cache_miss_rate:.0%}"
        lines.append(
            f"  xbzrle      {x.pages} hits, {format_bytes(x.bytes)}, miss rate {rate}, "
            f"{x.overflow} overflows"
        )
    return lines


def pass_table(passes: list[dict[str, Any]], limit: int = 20) -> list[str]:
    rows = ["  pass      t   dirty after sync   new dirty   sent so far   threshold  throttle"]
    shown = passes if len(passes) <= limit else passes[: limit // 2] + passes[-limit // 2 :]
    for i, p in enumerate(shown):
        if len(passes) > limit and i == limit // 2:
            rows.append(f"  … {len(passes) - limit} passes not shown")
        rows.append(
            f"  {p['pass']:>4} {p['t']:>7.2f}s {format_bytes(p['dirty_pages'] * 4096):>17} "
            f"{p['new_dirty_pages']:>11} {format_bytes(p['transferred']):>13} "
            f"{format_bytes(p['threshold']):>11} {p['throttle_pct']:>8}%"
        )
    return rows


def render(result: Any, horizon: float | None = None) -> str:
    from migtune.settings import describe
    from migtune.units import format_rate
    from migtune.workload import describe as describe_workload
    from migtune.workload import parse_workload

    st = result.stats
    spec = st["workload"]
    wl = spec if spec.startswith("trace=") else describe_workload(parse_workload(spec))
    head = (
        f"simulated QEMU {st['qemu_version']}: {format_bytes(st['ram_bytes'])} guest, "
        f"link {format_rate(st['link_rate'])}, workload {wl}"
    )
    lines = [
        head,
        f"  settings    {describe(result.run.settings)}",
        *outcome_lines(result.outcome, horizon),
        "",
        *pass_table(result.passes),
    ]
    lines.append(f"  ({result.wall_time * 1000:.0f} ms to simulate)")
    return "\n".join(lines)


def _from_log(kw: dict[str, Any], settings: Any, rule: Any) -> int:
    from migtune.sim.calibrate import calibrate, compare, what_if

    run = load_log(kw["from_log"])
    cal = calibrate(run)
    # Only what the command line sets is checked: the log's own settings are what happened.
    for line in check_for_guest(settings, cal.ram_bytes, time_limit=kw["time_limit"]):
        warning_line(line)
    changed = _overlay(cal.settings, settings)
    pred = what_if(
        cal,
        changed,
        qemu_version=kw["qemu_version"] if kw["qemu_version"] != "10.0" else cal.qemu_version,
        link_rate=kw["link"] or cal.link_rate,
        time_limit=kw["time_limit"],
        postcopy_after_passes=rule.after_passes,
        postcopy_after=rule.after,
        record=kw["record"],
    )
    history_id = _record(kw, pred.result.outcome)
    if kw["as_json"]:
        out = {
            "calibration": cal.to_dict(),
            "what_if": pred.to_dict(),
            "what_if_vs_observed": compare(pred.result.outcome, cal.observed),
            "low_confidence": cal.low_confidence,
        }
        click.echo(json.dumps(out, indent=2, default=str))
    else:
        click.echo(render_from(cal, pred))
        _say_recorded(history_id)
    return 0 if pred.result.outcome.converged else EXIT_NOT_CONVERGED


def _overlay(base: Any, given: Any) -> Any:
    """The log's settings with whatever the command line set on top."""
    import dataclasses

    out = dataclasses.replace(base, capabilities={**base.capabilities, **given.capabilities})
    for f in dataclasses.fields(given):
        v = getattr(given, f.name)
        if f.name not in ("capabilities", "extra") and v is not None:
            setattr(out, f.name, v)
    return out


def _observed_settings(cal: Any) -> str:
    from migtune.settings import describe

    text = describe(cal.settings)
    steps = [a.split("=", 1)[1] for _, a in cal.schedule if a.startswith("downtime-limit=")]
    if steps:
        text += f"; downtime limit raised during the run to {', '.join(steps)}"
    return text


def _throttle_known(cal: Any) -> bool:
    """Logs that never report the throttle (Proxmox) show '?' rather than 0 %."""
    ev = cal.evidence
    return ev is None or ev.throttle_seen or not cal.settings.capabilities.get("auto-converge")


def render_from(cal: Any, pred: Any) -> str:
    from migtune.settings import describe
    from migtune.sim.calibrate.predict import describe_range
    from migtune.units import format_rate

    o, r = cal.observed, cal.replay.outcome
    n = len(cal.plausible)
    cap = cal.settings.max_bandwidth
    link = min(cal.link_rate, cap) if cap and cap < 2**60 else cal.link_rate
    lines = [
        f"calibrated from the log: {format_bytes(cal.ram_bytes)} guest, link {format_rate(link)}",
        f"  inferred    {cal.describe_inferred()}"
        + (f" ({n} plausible workloads)" if n > 1 else ""),
        *(f"  - {note}" for note in cal.notes),
        "",
    ]
    if cal.replay_class_ok:
        lines.append(
            "replay of the observed settings reproduces the observed outcome "
            f"({'converged' if o.converged else 'not converged by ' + format_duration(o.total_time_s)})"
        )
    else:
        lines.append(
            "the replay of the observed settings does NOT reproduce the observed outcome: "
            "every prediction below is low-confidence"
        )
    lines += [
        f"  observed settings  {_observed_settings(cal)}",
        f"  what-if settings   {describe(pred.settings)}",
        "",
        f"{'':14}{'observed':>20}{'replay':>20}  {'what-if':>34}",
    ]
    wr = pred.result.outcome
    cells = describe_range(pred)
    unfinished = wr.status == "cancelled" and not wr.converged

    def row(name: str, a: str, b: str, c: str) -> str:
        return f"  {name:12}{a:>20}{b:>20}  {c:>34}"

    def conv(x: Any, what_if: bool = False) -> str:
        if x.converged:
            return "yes"
        return "no (did not finish)" if what_if and unfinished else "no"

    lines += [
        row("converged", conv(o), conv(r), conv(wr, True)),
        row(
            "total time",
            format_duration(o.total_time_s),
            format_duration(r.total_time_s),
            f"> {format_duration(pred.horizon)}" if unfinished else cells["total_time_s"],
        ),
        row("downtime", _ms(o.downtime_ms), _ms(r.downtime_ms), _ms(wr.downtime_ms)),
        row(
            "sent",
            format_bytes(o.transferred_bytes),
            format_bytes(r.transferred_bytes),
            cells["transferred_bytes"],
        ),
        row("passes", _passes(o), _passes(r), _passes(wr)),
        row(
            "throttle",
            f"{o.max_throttle_pct or 0:.0f}%" if _throttle_known(cal) else "?",
            f"{r.max_throttle_pct or 0:.0f}%",
            f"{wr.max_throttle_pct or 0:.0f}%",
        ),
    ]
    errs = cal.errors
    parts = [
        f"{k} {v:+.0%}"
        for k, v in (("time", errs.get("total_time")), ("bytes", errs.get("transferred")))
        if v is not None and (k != "time" or o.converged)
    ]
    lines.append("  replay error: " + (", ".join(parts) or "not measurable from this log"))
    lines.append(f"  what-if: {pred.verdict()}")
    lines += [f"  - {note}" for note in pred.notes]
    return "\n".join(lines)
