"""``migtune history``: the runs migtune made or read, and calibrations over several of them.

Also the hook ``migrate``, ``lab run``, ``lab matrix`` and ``simulate --record`` call
to add their run (:func:`record_quietly`): it never fails or disturbs the command it
follows, a problem is one warning line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from migtune.cli.main import cli, warning_line
from migtune.cli.options import history_db_option
from migtune.errors import EXIT_BAD_INPUT, InputError
from migtune.units import format_bytes, format_duration

_DB = history_db_option()
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON (a stable contract).")


# -- the hook the other commands use ------------------------------------------------------


def history_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--vm NAME`` and ``--no-history`` for the commands whose runs are recorded."""
    func = click.option(
        "--no-history",
        is_flag=True,
        help="Do not add this run to the history (MIGTUNE_HISTORY=0 does the same).",
    )(func)
    return click.option(
        "--vm",
        "vm_name",
        metavar="NAME",
        help="The VM's name in the history (for `history calibrate --vm NAME`).",
    )(func)


def history_enabled(no_history: bool = False) -> bool:
    return not no_history and os.environ.get("MIGTUNE_HISTORY", "1").strip().lower() not in (
        "0",
        "no",
        "off",
        "false",
    )


def record_quietly(
    run: Any,
    *,
    origin: str,
    recording: str | None = None,
    no_history: bool = False,
    **kw: Any,
) -> int | None:
    """Add a run migtune just made to the history; its id, or None (disabled, or a
    problem, said in one warning line: the run itself is what matters)."""
    if not history_enabled(no_history):
        return None
    try:
        from migtune.history import record_run

        raw = _raw_of(run, recording)
        return record_run(run, raw, origin=origin, source=recording, **kw)
    except Exception as exc:  # noqa: BLE001 - the history must never fail the migration
        warning_line(f"not added to the history: {exc}")
        return None


def record_recording(path: str, *, origin: str, no_history: bool = False, **kw: Any) -> int | None:
    """:func:`record_quietly` for a run known only by the recording it wrote."""
    if not history_enabled(no_history):
        return None
    try:
        from migtune.sources import load_run

        run = load_run(path)
    except Exception as exc:  # noqa: BLE001 - as in record_quietly
        warning_line(f"not added to the history: {exc}")
        return None
    return record_quietly(run, origin=origin, recording=path, no_history=no_history, **kw)


def _raw_of(run: Any, recording: str | None) -> bytes:
    """The recording's text: the file when one was written (the lab adds its final
    facts there), unless it holds less than the migration kept in memory (a disk that
    filled up stopped the file, not the supervision)."""
    memory = ("\n".join(run.lines) + "\n").encode("utf-8") if run.lines is not None else None
    if recording:
        try:
            written = Path(recording).read_bytes()
        except OSError:
            written = None
        if written is not None and (memory is None or written.count(b"\n") >= memory.count(b"\n")):
            return written
    if memory is None:
        raise InputError("no recording text to keep")
    return memory


# -- migtune history ... ------------------------------------------------------------------


@cli.group("history")
def history() -> None:
    """The runs migtune made or read (migrate, lab, simulate --record, history add).

    Stored in one SQLite file: --db PATH or $MIGTUNE_DB, else under the XDG data
    directory. MIGTUNE_HISTORY=0 or --no-history keeps a run out of it.
    """


@history.command("add")
@click.argument("logs", nargs=-1, required=True, metavar="LOG...")
@click.option("--vm", "vm_name", metavar="NAME", help="The VM the logs are of.")
@_DB
@_JSON
def add_cmd(logs: tuple[str, ...], vm_name: str | None, db: str | None, as_json: bool) -> int:
    """Add logs (any format explain reads) to the history.

    A file that cannot be read is one error line; the others are still added, and the
    exit status is then 2.
    """
    from migtune.history import add_logs

    result = add_logs(logs, vm=vm_name, db=db)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for path, run_id in result.added:
            click.echo(f"added {path} as run #{run_id}")
        for path, run_id in result.duplicates:
            click.echo(f"{path}: already in the history as run #{run_id}")
    for line in result.errors:
        print(f"migtune: error: {' '.join(line.split())}", file=sys.stderr)
    return EXIT_BAD_INPUT if result.errors else 0


def _when(iso: str | None) -> str:
    if not iso:
        return "?"
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


@history.command("list")
@click.option("--vm", "vm_name", metavar="NAME", help="Only this VM's runs.")
@click.option("--since", metavar="WHEN",
              help="Only runs since: 2d, 12h, 30min, 1w ago, or an ISO date or time "
              "(local time unless it has an offset).")  # fmt: skip
@_DB
@_JSON
def list_cmd(vm_name: str | None, since: str | None, db: str | None, as_json: bool) -> int:
    """List the runs in the history, oldest first."""
    from migtune.history import list_runs

    rows = list_runs(vm=vm_name, since=since, db=db)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return 0
    if not rows:
        click.echo("no runs in the history" + (" for that selection" if vm_name or since else ""))
        return 0
    click.echo(
        f"{'id':>5}  {'when':20} {'origin':8} {'vm':14} {'status':10} {'time':>12} "
        f"{'downtime':>9} {'sent':>11}  qemu"
    )
    for r in rows:
        click.echo(
            f"{r['id']:>5}  {_when(r['at']):20} {r['origin']:8} {(r['vm'] or '-')[:14]:14} "
            f"{r['status'] or '?':10} {format_duration(r['total_time_s']):>12} "
            f"{_ms(r['downtime_ms']):>9} {format_bytes(r['transferred_bytes']):>11}  "
            f"{r['qemu_version'] or '?'}"
        )
    return 0


@history.command("show")
@click.argument("run_id", type=click.IntRange(1), metavar="ID")
@click.option("--raw", is_flag=True, help="Print the stored recording or log text instead.")
@_DB
@_JSON
def show_cmd(run_id: int, raw: bool, db: str | None, as_json: bool) -> int:
    """Show one run: outcome, settings, where it came from, its calibrations."""
    from migtune.history import raw_text, show_run

    if raw:
        if as_json:
            raise InputError("--raw prints the stored text as it is; not with --json")
        sys.stdout.flush()
        sys.stdout.buffer.write(raw_text(run_id, db=db))
        sys.stdout.buffer.flush()
        return 0
    d = show_run(run_id, db=db)
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
    else:
        click.echo(render_run(d))
    return 0


def render_run(d: dict[str, Any]) -> str:
    from migtune.cli.simulate import outcome_lines
    from migtune.model import settings_from_dict
    from migtune.outcome import Outcome, XbzrleOutcome
    from migtune.settings import describe

    s = d["summary"] or {}
    xb = XbzrleOutcome(**s["xbzrle"]) if isinstance(s.get("xbzrle"), dict) else None
    o = Outcome(**{**s, "xbzrle": xb})
    lines = [
        f"run #{d['id']}: {d['origin']}, {d['format']} format"
        + (f", VM {d['vm']}" if d["vm"] else ""),
        f"  when        {_when(d['at'])}"
        + ("" if d["started_at"] else " (added; the log has no clock)"),
        f"  hosts       {d['source_host'] or '?'} -> {d['target_host'] or '?'}",
        f"  QEMU        {d['qemu_version'] or '?'}",
        f"  RAM         {format_bytes(d['ram_bytes'])}",
    ]
    if d["workload"]:
        lines.append(f"  workload    {d['workload']}")
    if d["source"]:
        lines.append(f"  source      {d['source']}")
    stored = "stored" if d["raw_stored"] else "not stored (too big)"
    lines.append(f"  text        {format_bytes(d['raw_bytes'])}, {stored}")
    lines.append(f"  settings    {describe(settings_from_dict(d['settings'] or {}))}")
    lines += outcome_lines(o)
    for c in d["calibrations"]:
        flags = [
            f
            for f, on in (("drifted", c["drifted"]), ("low confidence", c["low_confidence"]))
            if on
        ]
        lines.append(
            f"  calibration #{c['id']} ({_when(c['created_at'])}, runs "
            f"{', '.join('#' + str(i) for i in c['run_ids'])}): {c['workload']}"
            + (f" [{', '.join(flags)}]" if flags else "")
        )
    return "\n".join(lines)


@history.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), required=True,
              help="csv: one row per run; json: runs and calibrations.")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Write here instead of standard output.")  # fmt: skip
@_DB
def export_cmd(fmt: str, output: str | None, db: str | None) -> int:
    """Export every run (CSV or JSON)."""
    from migtune.history.commands import export_text

    text = export_text(fmt, db=db)
    if output is None:
        click.echo(text, nl=False)
        return 0
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{output}: cannot write ({exc.strerror or exc})") from None
    return 0


@history.command("calibrate")
@click.option("--vm", "vm_name", metavar="NAME", required=True, help="The VM to calibrate.")
@click.option("--last", type=click.IntRange(1), metavar="N",
              help="Use the N most recent runs (default 10).")  # fmt: skip
@_DB
@_JSON
def calibrate_cmd(vm_name: str, last: int | None, db: str | None, as_json: bool) -> int:
    """Calibrate from several past runs of a VM together, and store the calibration.

    The plausible workloads are those that reproduce every run (else each run's best
    fits, merged); drift between runs beyond their own spread is reported.
    """
    from migtune.history import calibrate_vm

    result = calibrate_vm(vm_name, db=db, last=last)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        click.echo(render_calibration(result))
    return 0


def render_calibration(r: Any) -> str:
    cal = r.calibration
    ids = ", ".join(f"#{f.run_id}" for f in r.fits)
    n = len(cal.plausible)
    lines = [
        f"VM {r.vm}: calibrated from {len(r.fits)} run{'s' if len(r.fits) > 1 else ''} "
        f"({ids}), stored as calibration #{r.id}",
    ]
    for f in r.fits:
        pr = r.per_run[f.run_id]
        errs = pr["errors"]
        parts = [
            f"{k} {v:+.0%}"
            for k, v in (("time", errs.get("total_time")), ("bytes", errs.get("transferred")))
            if v is not None
        ]
        if errs.get("converged_match") == 0.0:
            parts.insert(0, "converged where it did not, or the other way")
        lines.append(
            f"  run #{f.run_id:<4} {_when(f.at):20} {f.calibration.observed.status:10} "
            f"alone: {f.calibration.describe_inferred()}"
        )
        lines.append(
            "             best joint fit "
            + ("reproduces it" if pr["reproduced"] else "does NOT reproduce it")
            + (f" ({', '.join(parts)})" if parts else "")
        )
    how = "reproduce every run" if r.reproduces_all else "merged: no one workload fits all runs"
    lines.append(f"  together:   {cal.describe_inferred()} ({n} plausible workloads, {how})")
    lines.append(f"  best fit    {cal.workload.spec()}")
    if r.drift:
        lines.append("  DRIFT: the workload changed between runs")
        lines += [f"    - {d.detail}" for d in r.drift]
    else:
        lines.append("  no drift beyond the runs' own spread")
    if cal.low_confidence:
        lines.append("  LOW CONFIDENCE: the best fit does not reproduce the latest run's outcome")
    lines += [f"  - {s}" for s in r.skipped]
    lines += [f"  - {n_}" for n_ in r.notes]
    return "\n".join(lines)
