"""Benchmark: hostile inputs that used to take quadratic time, at growing sizes.

Each case is built at sizes x1, x2, x4 and x10 and run through what a user runs on it;
the table prints seconds against input size, so linear growth (time x10 at size x10)
is told apart from quadratic growth (x100) at a glance.  Times are CPU seconds of this
process (wall seconds beside them): on a shared machine other jobs inflate wall time.

* ``qmp-one-line``: many ``query-migrate`` replies on one line (a QMP wire log with the
  newlines lost), 155 KB at x1: ``migtune explain --json``.
* ``parse-size``: ``'1' * N + '!'`` given to :func:`migtune.units.parse_size` (what
  ``--ram`` does with the option's text), N = 20,000 at x1.
* ``virsh-digits``: a ``virsh domjobinfo`` log whose ``Memory processed`` value is
  ``'1' * N + '!' GiB``, N = 20,000 at x1: ``migtune explain --json``.
* ``hmp-long``: an HMP transcript of 9,000 lines of ``info migrate`` snapshots at x1
  (90,000 at x10): ``migtune explain`` (text, not a terminal).

Run: ``python benchmarks/bench_hostile.py [--scales 1 2 4 10] [--case NAME ...]``
Goal: every case at x10 in under 2 s (CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from migtune.analysis.explain import explain
from migtune.errors import MigtuneError
from migtune.outputs import jsonout, text
from migtune.sources import load_run
from migtune.units import parse_size

GOAL_SECONDS = 2.0

_REPLY = (
    '{"return": {"status": "active", "total-time": %d, "expected-downtime": 300, '
    '"ram": {"transferred": %d, "remaining": 1048576000, "total": 4294967296, '
    '"duplicate": 1000, "normal": 200000, "normal-bytes": 819200000, "mbps": 800.5, '
    '"dirty-sync-count": 3, "page-size": 4096, "dirty-pages-rate": 20000}}} '
)

_VIRSH = """Job type:         Unbounded
Operation:        Outgoing migration
Time elapsed:     47301        ms
Data processed:   5.856 GiB
Data remaining:   1.000 GiB
Data total:       4.002 GiB
Memory processed: {value} GiB
Memory remaining: 1.000 GiB
Memory total:     4.002 GiB
Memory bandwidth: 126.920 MiB/s
Page size:        4096         bytes
Iteration:        13
"""

_HMP_SNAPSHOT = """(qemu) info migrate
globals:
store-global-state: on
only-migratable: off
send-configuration: on
send-section-footer: on
clear-bitmap-shift: 18
Migration status: active
total time: {ms} ms
expected downtime: 3000 ms
setup: 12 ms
transferred ram: {kib} kbytes
throughput: 880.00 mbps
remaining ram: 1048576 kbytes
total ram: 4194304 kbytes
duplicate: 1000 pages
skipped: 0 pages
normal: {pages} pages
normal bytes: {kib} kbytes
dirty sync count: {passes}
page size: 4 kbytes
multifd bytes: 0 kbytes
pages-per-second: 26000
dirty pages rate: 30000 pages
"""


def qmp_one_line(scale: int) -> str:
    n = 500 * scale  # ~230 bytes each: 114 KB at x1
    return "".join(_REPLY % (1000 * (i + 1), 100_000_000 * (i + 1)) for i in range(n)) + "\n"


def virsh_digits(scale: int) -> str:
    return _VIRSH.format(value="1" * (20_000 * scale) + "!")


def hmp_long(scale: int) -> str:
    snapshot_lines = _HMP_SNAPSHOT.count("\n")
    n = 9_000 * scale // snapshot_lines
    parts = [
        _HMP_SNAPSHOT.format(
            ms=1000 * (i + 1), kib=100_000 * (i + 1), pages=25_000 * (i + 1), passes=1 + i // 10
        )  # fmt: skip
        for i in range(n)
    ]
    return "".join(parts)


def run_log(body: str, as_json: bool) -> None:
    """``migtune explain [--json] FILE``: load, explain (which diagnoses), print."""
    fd, path = tempfile.mkstemp(prefix="migtune-hostile-", suffix=".log")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
        try:
            run = load_run(path)
        except MigtuneError:
            return  # refused with a one-line error: also an answer, and what is timed
        x = explain(run)
        if as_json:
            jsonout.dumps(jsonout.explanation_dict(x))
        else:
            text.render_explanation(x, stream=io.StringIO())
    finally:
        Path(path).unlink()


def _parse_size(body: str) -> None:
    with contextlib.suppress(MigtuneError):  # refusing it is the right answer
        parse_size(body)


CASES: dict[str, tuple[Callable[[int], str], Callable[[str], None]]] = {
    "qmp-one-line": (qmp_one_line, lambda body: run_log(body, as_json=True)),
    "parse-size": (lambda scale: "1" * (20_000 * scale) + "!", _parse_size),
    "virsh-digits": (virsh_digits, lambda body: run_log(body, as_json=True)),
    "hmp-long": (hmp_long, lambda body: run_log(body, as_json=False)),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4, 10])
    ap.add_argument("--case", action="append", choices=sorted(CASES), default=None)
    args = ap.parse_args(argv)
    worst = 0.0
    print(f"{'case':14} {'scale':>5} {'input':>12} {'CPU s':>8} {'wall s':>8} {'CPU s/x1':>9}")
    for name in args.case or list(CASES):
        build, run = CASES[name]
        for scale in args.scales:
            body = build(scale)
            wall, cpu = time.perf_counter(), time.process_time()
            run(body)
            secs = time.process_time() - cpu
            wall = time.perf_counter() - wall
            size = f"{len(body.encode()):,} B"
            print(
                f"{name:14} {'x' + str(scale):>5} {size:>12} {secs:8.3f} {wall:8.3f} "
                f"{secs / scale:9.3f}"
            )
            if scale == max(args.scales):
                worst = max(worst, secs)
    verdict = "meets" if worst < GOAL_SECONDS else "MISSES"
    print(
        f"largest scale, slowest case: {worst:.2f} s ({verdict} the goal of < {GOAL_SECONDS:g} s)"
    )
    return 0 if worst < GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
