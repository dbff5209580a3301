"""Recover nova.conf's progressive-downtime options from the ``Increasing downtime`` lines.

nova (docs/platforms.md §3.2) raises the downtime limit in ``steps`` equal
increments, one every ``delay`` seconds, where ``delay = int(downtime_delay x data_gb)``
and ``data_gb = max(2, RAM GiB) + sum(max(2, disk GiB))``::

    base   = downtime / steps
    offset = (downtime - base) / steps
    step i: (delay * i seconds, int(base + offset * i) ms),  i = 0..steps

Python 2 era nova did this in integer arithmetic (each division rounded down), so the
final step can be a few ms below ``live_migration_downtime``; both variants are tried.
"""

from __future__ import annotations

import math
from typing import Any

MAX_STEPS = 100  # far above nova's default of 10; keeps the search small


def _predict(downtime: int, steps: int, i: int, integer: bool) -> int:
    if integer:
        base = downtime // steps
        return base + (downtime - base) // steps * i
    base = downtime / steps
    return int(base + (downtime - base) / steps * i)


def _roundness(value: int) -> int:
    """Operators type round numbers: prefer 5000 over 4998."""
    for rank, div in enumerate((1000, 500, 100, 50, 10, 5)):
        if value % div == 0:
            return rank
    return 6


def _fits(points: list[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """All (downtime ms, steps, integer arithmetic) that reproduce the observed points."""
    i_max, ms_max = max(points)
    first = dict(points).get(0)
    checks = sorted(points, reverse=True)  # the far steps rule out most candidates at once
    found = []
    for steps in range(3, MAX_STEPS + 1):
        if i_max > steps:
            continue
        if first is not None:
            # step 0 is int(D / steps): D is one of `steps` consecutive values
            candidates = range(max(100, first * steps), (first + 1) * steps)
        else:
            # ms_i = D * (1/s + (s-1) i / s^2): solve for D, then try the neighbourhood.
            estimate = int(ms_max / (1 / steps + (steps - 1) * i_max / steps**2))
            candidates = range(max(100, estimate - steps - 2), estimate + steps + 3)
        for downtime in candidates:
            for integer in (False, True):
                if all(_predict(downtime, steps, i, integer) == ms for i, ms in checks):
                    found.append((downtime, steps, integer))
    return found


def infer_downtime_config(
    steps: list[tuple[float, int]], ram_gib: float | None = None, disk_gib: float | None = None
) -> dict[str, Any] | None:
    """``steps`` are the (elapsed s, downtime ms) pairs nova logged, in order."""
    if not steps:
        return None
    seen = sorted(set(steps))
    result: dict[str, Any] = {
        "downtime_steps_seen": len(seen),
        "downtime_initial": seen[0][1] / 1000.0,
        "downtime_last": seen[-1][1] / 1000.0,
        "downtime_final": None,
        "downtime_steps": None,
        "downtime_delay": None,
        "downtime_delay_per_gib": None,
        "data_gib": None,
        "integer_arithmetic": None,
        "alternatives": 0,
        "conf": {},
    }
    secs = [int(round(t)) for t, _ in seen if t > 0]
    if not secs:
        return result
    delay = 0
    for value in secs:
        delay = math.gcd(delay, value)
    result["downtime_delay"] = float(delay)
    points = [(int(round(t)) // delay, ms) for t, ms in seen]
    fits = _fits(points)
    if fits:
        fits.sort(key=lambda f: (_roundness(f[0]), f[1], f[2]))
        downtime, n, integer = fits[0]
        result.update(
            downtime_final=downtime / 1000.0,
            downtime_steps=n,
            integer_arithmetic=integer,
            alternatives=len({(d, s) for d, s, _ in fits}) - 1,
        )
        result["conf"]["live_migration_downtime"] = downtime
        result["conf"]["live_migration_downtime_steps"] = n
    if ram_gib:
        data_gib = max(2.0, ram_gib) + (max(2.0, disk_gib) if disk_gib else 0.0)
        per_gib = delay / data_gib
        # nova's option is an integer; RAM seen by QEMU includes a few MiB of ROM/VGA.
        if abs(per_gib - round(per_gib)) <= 0.01 * per_gib:
            per_gib = float(round(per_gib))
            result["conf"]["live_migration_downtime_delay"] = int(per_gib)
        result["downtime_delay_per_gib"] = round(per_gib, 2)
        result["data_gib"] = round(data_gib, 3)
    return result
