"""From a dirty-rate measurement to a plausible set of workloads.

A ``calc-dirty-rate`` period of length T reports D(T), the distinct bytes the guest
changed in T.  Each workload shape has its own curve:

* ``random`` over a working set ws at r bytes/s: D = ws (1 - exp(-r T / ws));
* ``seq`` (a sweep): D = min(r T, ws);
* ``hotcold``: the hot and the cold part, each random with its share of the writes;

plus, in the dirty-bitmap and dirty-ring modes, the guest OS's own small hot set
(the simulator's machine background).  Page sampling compares page contents, and
most of those OS writes (timers, counters rewritten in place) leave a sampled page
as it was or are too few to hit a sample: an idle lab guest measures 0-1 MiB/s there,
so nothing is subtracted in that mode.  Short periods fix the write rate (D ~ r T), periods long
enough to saturate fix the working set; what the periods cannot tell apart stays in
the set, as calibrate keeps every workload that explains a log.  The measurement's
own uncertainty (QEMU rounds to whole MiB/s, page sampling is a sample, the guest is
not perfectly steady) sets how far a member may miss: a chi-square margin around
the best fit.  The zero-page share sets the non-zero memory outside the working set;
where it is unknown both ends (mostly zero, all non-zero) stay in the set.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from migtune.qemu.dirtyrate import DirtyMeasurement
from migtune.sim.calibrate.fit import BYTES_RANGE, CPU_RANGE, with_zero
from migtune.sim.machine import Machine
from migtune.units import MiB, format_bytes, format_rate
from migtune.workload import PAGE_SIZE, Workload

PATTERNS = ("random", "seq", "hotcold")
HOT, HOTW = 0.1, 0.9  # the hotcold shape tried (the workload spec's defaults)
MODEL_FLOOR = 0.03  # relative error no fit can beat: the guest's rate is not exact
MAX_BASES = 4  # distinct (pattern, ws, rate) members before the variants
MIN_WS = 4 * MiB


@dataclass
class Point:
    """Every period of one length, pooled: D in bytes and its standard error."""

    length: float
    dirtied: float
    sigma: float
    count: int


@dataclass
class Inference:
    workloads: list[Workload]
    points: list[Point]
    best_chi2: float
    margin: float
    nonzero_bytes: tuple[float, float] | None  # low, high; None: unknown
    notes: list[str] = field(default_factory=list)

    def ranges(self) -> dict[str, Any]:
        busy = [w for w in self.workloads if not w.idle]
        ws = [w.ws for w in busy]
        rate = [w.rate for w in busy if w.rate is not None]
        return {
            "working_set_bytes": [min(ws), max(ws)] if ws else None,
            "write_rate_bytes_per_s": [min(rate), max(rate)] if rate else None,
            "patterns": sorted({w.pattern for w in busy}),
            "idle_possible": any(w.idle for w in self.workloads),
            "bytes_per_write": sorted({w.bytes_per_write for w in busy}),
            "non_zero_bytes": list(self.nonzero_bytes) if self.nonzero_bytes else None,
        }

    def describe(self) -> str:
        r = self.ranges()
        if r["working_set_bytes"] is None:
            return "an idle guest (only the OS's own writes)"
        ws, rate = r["working_set_bytes"], r["write_rate_bytes_per_s"]
        out = (
            f"writes {_span(rate, format_rate)} over a working set of {_span(ws, format_bytes)}"
            f" ({'/'.join(r['patterns'])})"
        )
        return out + (", or idle" if r["idle_possible"] else "")


def _span(v: list[float], fmt) -> str:
    return fmt(v[0]) if v[1] <= v[0] * 1.03 else f"{fmt(v[0])}-{fmt(v[1])}"


def background(length: np.ndarray | float, machine: Machine) -> np.ndarray | float:
    """Distinct bytes the guest OS itself dirties in ``length`` s (the simulator's model)."""
    pages = machine.guest_background_pages or 350
    return pages * PAGE_SIZE * (1 - np.exp(-machine.guest_background_rate * length / pages))


def dirtied(pattern: str, ws: np.ndarray, rate: np.ndarray, length: float) -> np.ndarray:
    """D(T) of a workload shape, broadcast over working sets and rates (bytes)."""
    if pattern == "seq":
        return np.minimum(rate * length, ws)
    if pattern == "hotcold":
        hot, cold = ws * HOT, ws * (1 - HOT)
        return hot * (1 - np.exp(-HOTW * rate * length / hot)) + cold * (
            1 - np.exp(-(1 - HOTW) * rate * length / cold)
        )
    return ws * (1 - np.exp(-rate * length / ws))


def pool(m: DirtyMeasurement) -> list[Point]:
    """One point per period length: the mean D and its error (QEMU's rounding, the
    sampling noise, and the spread between repeats, whichever is larger)."""
    out = []
    for length, periods in m.by_length().items():
        centres, noise = [], []
        for p in periods:
            lo, hi = p.bounds(m.ram_bytes)
            centres.append((lo + hi) / 2)
            noise.append((hi - lo) / 4)  # the bounds are about two standard errors wide
        n = len(centres)
        mean = sum(centres) / n
        within = sum(s * s for s in noise) / n / n
        between = sum((c - mean) ** 2 for c in centres) / (n - 1) / n if n > 1 else 0.0
        sigma = math.sqrt(max(within, between) + (MODEL_FLOOR * mean) ** 2)
        out.append(Point(length, mean, max(sigma, PAGE_SIZE * 4.0), n))
    return out


def nonzero_range(m: DirtyMeasurement) -> tuple[float, float] | None:
    """Non-zero guest memory, low and high (two standard errors of the page sample)."""
    if m.zero_share is None or m.zero_samples <= 0:
        return None
    nz = 1.0 - m.zero_share
    sigma = math.sqrt(max(nz * (1 - nz), 1.0 / m.zero_samples) / m.zero_samples)
    ram = m.ram_bytes
    return max(0.0, (nz - 2 * sigma) * ram), min(float(ram), (nz + 2 * sigma) * ram)


def infer(m: DirtyMeasurement, machine: Machine | None = None) -> Inference:
    """The plausible workloads behind a measurement (see the module docstring)."""
    machine = machine or Machine()
    ram = m.ram_bytes
    pts = pool(m)
    notes: list[str] = []
    lengths = np.array([p.length for p in pts])
    obs = np.array([p.dirtied for p in pts])
    if m.mode != "page-sampling":
        obs = obs - background(lengths, machine)
    sig = np.array([p.sigma for p in pts])
    nz = nonzero_range(m)
    ws_hi = min(float(ram), nz[1]) if nz else float(ram)
    seen = max(0.0, float(np.max(obs)))
    ws_lo = max(MIN_WS, min(seen * 0.7, ws_hi))
    idle_chi2 = float(np.sum((obs / sig) ** 2))
    if seen <= 2 * float(np.max(sig)) or ws_hi <= MIN_WS:
        best_chi2, cells = idle_chi2, []
    else:
        ws = np.geomspace(ws_lo, max(ws_hi, ws_lo * 1.01), 72)
        speed = float(np.max(np.maximum(obs, 0) / lengths))
        rate = np.geomspace(max(speed * 0.5, 1024.0), max(speed * 100, 4 * MiB), 200)
        cells = []
        for pattern in PATTERNS:
            W, R = np.meshgrid(ws, rate, indexing="ij")
            chi2 = np.zeros_like(W)
            for t, o, s in zip(lengths, obs, sig, strict=True):
                chi2 += ((dirtied(pattern, W, R, float(t)) - o) / s) ** 2
            cells.append((pattern, W, R, chi2))
        best_chi2 = min(min(float(c[3].min()) for c in cells), idle_chi2)
    dof = max(1, len(pts) - 2)
    # a poor best fit (the guest is not one of the shapes) widens the margin with it
    margin = 4.0 * max(1.0, best_chi2 / dof)
    bases: list[tuple[float, Workload]] = []
    for pattern, W, R, chi2 in cells:
        ok = chi2 <= best_chi2 + margin
        if not ok.any():
            continue
        idx = np.argwhere(ok)
        pick = {
            tuple(idx[np.argmin(chi2[ok])]),
            tuple(idx[np.argmin(W[ok])]),
            tuple(idx[np.argmax(W[ok])]),
        }
        for i, j in pick:
            w = Workload(
                ws=int(W[i, j]) // PAGE_SIZE * PAGE_SIZE,
                rate=float(R[i, j]) // PAGE_SIZE * PAGE_SIZE,
                pattern=pattern,
                **({"hot": HOT, "hotw": HOTW} if pattern == "hotcold" else {}),
            )
            bases.append((float(chi2[i, j]), w))
    if idle_chi2 <= best_chi2 + margin:
        bases.append((idle_chi2, Workload(ws=0, rate=0.0)))
    bases.sort(key=lambda b: b[0])
    chosen = _spread(bases)
    if nz is None:
        notes.append(
            "zero-page share unknown: members with mostly zero and with all non-zero "
            "memory outside the working set"
        )
    bpw = m.bytes_per_write()
    if bpw is not None:
        notes.append(
            f"bytes changed per rewritten page: {bpw[1]} (quartiles {bpw[0]}-{bpw[2]}, "
            f"{len(m.bytes_changed)} pages read twice)"
        )
    else:
        notes.append(
            "bytes changed per write unknown (too few sampled pages rewritten): "
            f"{BYTES_RANGE[0]}-{BYTES_RANGE[-1]} kept in the set"
        )
    workloads = _variants(chosen, ram, nz, bpw)
    notes.append(
        f"{len(pts)} period lengths ({', '.join(f'{p.length:g} s' for p in pts)}), "
        f"best fit chi2 {best_chi2:.1f} over {len(pts)} points, margin {margin:.1f}"
    )
    return Inference(workloads, pts, best_chi2, margin, nz, notes)


def _spread(bases: list[tuple[float, Workload]]) -> list[Workload]:
    """The best fit, then the extremes of the working set, then other patterns' best."""
    if not bases:
        return [Workload(ws=0, rate=0.0)]
    best = bases[0][1]
    rest = [w for _, w in bases[1:]]
    busy = sorted((w for w in rest if not w.idle), key=lambda w: w.ws)
    order = [best]
    if busy:
        order += [busy[0], busy[-1]]
    order += [w for w in rest if w.pattern not in {o.pattern for o in order}]
    order += [w for w in rest if w.idle]
    out: list[Workload] = []
    for w in order:
        if w not in out:
            out.append(w)
    return out[:MAX_BASES]


def _variants(
    bases: list[Workload],
    ram: int,
    nz: tuple[float, float] | None,
    bpw: tuple[int, int, int] | None = None,
) -> list[Workload]:
    """Each base in the variants the measurement cannot tell apart: the throttle
    response and bytes per write (paired low/middle/high, as calibrate does; the bytes
    are the measured quartiles where pages were read twice), and the non-zero memory
    outside the working set (measured, or both ends when unknown)."""
    low, mid, high = (max(1, min(PAGE_SIZE, b)) for b in bpw) if bpw else BYTES_RANGE
    out: list[Workload] = []
    for b in bases:
        if nz is not None:
            zeros = [with_zero(b, ram, int((nz[0] + nz[1]) / 2))]
        else:
            zeros = [dataclasses.replace(b, zero=0.9), dataclasses.replace(b, zero=0.0)]
        for z in zeros:
            if z.idle:
                out.append(z)
                continue
            # the middle variant first: the first member is the best fit
            for cpu, n in ((CPU_RANGE[1], mid), (CPU_RANGE[0], low), (CPU_RANGE[2], high)):
                out.append(dataclasses.replace(z, cpu=cpu, bytes_per_write=n))
    return out
