"""The lab matrix: every named scenario (``migtune.lab.scenario.MATRIX``), N times each.

Each run writes its own recording (``<out>/<scenario>-<n>.jsonl``); the results
table compares them side by side.  The guest is built and the accelerator probed
once for the whole matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migtune.errors import InputError, MigtuneError
from migtune.lab.guest import build_guest
from migtune.lab.interrupt import LabInterrupted
from migtune.lab.run import LabResult, choose_accel, lab_run
from migtune.lab.scenario import Scenario
from migtune.qemu.supervisor import SIGNAL_REASONS
from migtune.units import format_bytes, format_duration, format_rate


@dataclass
class MatrixRow:
    scenario: Scenario
    repeat: int  # 1-based
    result: LabResult | None
    error: str | None = None
    recording: str | None = None

    @property
    def as_expected(self) -> bool | None:
        if self.result is None:
            return None
        return self.result.outcome.status == self.scenario.expect

    def to_dict(self) -> dict[str, Any]:
        base = {
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "repeat": self.repeat,
            "expected": self.scenario.expect,
            "as_expected": self.as_expected,
            "error": self.error,
        }
        if self.result is not None:
            base.update(self.result.to_dict())
        else:
            base["recording"] = self.recording
        return base


def run_matrix(
    scenarios: list[Scenario],
    *,
    repeat: int = 1,
    out_dir: str | Path = "lab-matrix",
    accel: str = "auto",
    progress: bool = False,
    status: Callable[[str | None], None] | None = None,
    on_row: Callable[[MatrixRow], None] | None = None,
    verify: bool = False,
) -> list[MatrixRow]:
    """Run each scenario ``repeat`` times; a run that errors is reported, not fatal.

    ``verify`` compares both sides' RAM after every completed pre-copy run.
    """
    if repeat < 1:
        raise InputError("--repeat must be at least 1")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {out}: {exc.strerror}") from None
    say = status or (lambda _m: None)
    image = build_guest()
    if accel == "auto":
        say("checking whether KVM can run the guest")
        accel = choose_accel(image)
    rows: list[MatrixRow] = []
    for n in range(1, repeat + 1):
        for sc in scenarios:
            path = out / f"{sc.name}-{n}.jsonl"
            say(f"{sc.name} ({n}/{repeat})")
            meta = {
                "scenario": sc.name,
                "description": sc.description,
                "expect": sc.expect,
                "repeat": n,
            }
            try:
                result = lab_run(
                    sc.ram,
                    sc.parsed_workload(),
                    sc.build_settings(),
                    policy=sc.policy,
                    time_limit=sc.time_limit,
                    record=path,
                    allow_postcopy=sc.allow_postcopy,
                    postcopy_after_passes=sc.postcopy_after_passes,
                    accel=accel,
                    progress=progress,
                    status=lambda m, name=sc.name: say(None if m is None else f"{name}: {m}"),
                    meta=meta,
                    image=image,
                    verify=verify and not sc.allow_postcopy,
                )
                row = MatrixRow(sc, n, result, recording=str(path))
                if result.migration.reason in SIGNAL_REASONS:  # Ctrl-C/SIGTERM mid-migration
                    if on_row is not None:
                        on_row(row)
                    raise LabInterrupted(
                        f"{result.migration.reason}: the matrix was stopped during {sc.name} "
                        f"(recordings so far in {out})"
                    )
            except LabInterrupted:
                raise  # Ctrl-C / SIGTERM stops the whole matrix, not one scenario
            except MigtuneError as exc:
                row = MatrixRow(sc, n, None, error=str(exc), recording=str(path))
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


HEADERS = (
    "scenario",
    "#",
    "status",
    "exp",
    "time",
    "downtime",
    "sent",
    "passes",
    "miss",
    "ovfl",
    "throttle",
    "guest rate",
)


def _cells(row: MatrixRow) -> list[str]:
    sc = row.scenario
    if row.result is None:
        return [sc.name, str(row.repeat), "error", "NO", *["-"] * 8]
    o = row.result.outcome
    xb = o.xbzrle
    miss = "-" if xb is None or xb.cache_miss_rate is None else f"{xb.cache_miss_rate:.0%}"
    return [
        sc.name,
        str(row.repeat),
        ("converged" if o.converged else o.status),
        "yes" if row.as_expected else "NO",
        format_duration(o.total_time_s),
        "-" if o.downtime_ms is None else f"{o.downtime_ms:.0f} ms",
        format_bytes(o.transferred_bytes),
        "-" if o.passes is None else str(o.passes),
        miss,
        "-" if xb is None or xb.overflow is None else str(xb.overflow),
        f"{o.max_throttle_pct or 0:.0f}%",
        _rate(row.result.guest_rate_during()),
    ]


def _rate(value: float | None) -> str:
    return "-" if value is None else format_rate(value)


def results_table(rows: list[MatrixRow]) -> str:
    """A plain-text table, one line per run (``exp``: did QEMU do what the scenario expects)."""
    table = [list(HEADERS), *(_cells(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    lines = []
    for i, r in enumerate(table):
        cells = [
            c.ljust(w) if j in (0, 2) else c.rjust(w)
            for j, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        if r.error:
            lines.append(f"{r.scenario.name} #{r.repeat}: {r.error}")
        elif r.result is not None and r.result.differing_pages:
            lines.append(
                f"{r.scenario.name} #{r.repeat}: RAM differs after the migration "
                f"in {r.result.differing_pages} pages"
            )
        elif r.result is not None and r.result.destination_alive is False:
            lines.append(f"{r.scenario.name} #{r.repeat}: destination guest not alive")
    return "\n".join(lines)
