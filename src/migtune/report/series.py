"""What the report draws, taken from a :class:`~migtune.model.Run`: plain lists, no plotting.

Keeping the data extraction apart from matplotlib lets the tests check the numbers
without rendering anything, and keeps the chart code about layout only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from migtune.analysis.metrics import event_downtime_limit, interval_rates
from migtune.model import Event, Run, Sample
from migtune.units import format_duration, format_rate

# Cap on plotted points per line: keeps each inline SVG small enough for a ticket.
MAX_POINTS = 400
# A rise of ``remaining`` by more than this marks a dirty-bitmap sync when the log has
# no dirty-sync-count (same threshold as migtune.analysis.metrics).
_PASS_JUMP = 4 * 1024**2
_PCT_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*%")  # look-behind: linear search


@dataclass(slots=True)
class Line:
    """One plotted series: x in seconds, y in base units (bytes, bytes/s or percent)."""

    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    steps: bool = False  # draw as steps (a rate holding over an interval)

    def __bool__(self) -> bool:
        return bool(self.x)


@dataclass(slots=True)
class Marker:
    """A vertical mark on the rates chart: a setting that changed at time ``t``."""

    t: float
    kind: str  # downtime-change | bandwidth-change | throttle-change | postcopy-start
    label: str
    value: float | None = None  # the new setting (s, bytes/s or percent), where known


@dataclass(slots=True)
class RunSeries:
    transferred: Line
    remaining: Line
    throughput: Line
    throughput_source: str  # qemu (QEMU's rate) | deltas (Δtransferred/Δt) | averaged (windowed)
    dirty_rate: Line
    page_rate: Line
    throttle: Line
    markers: list[Marker]
    ram_bytes: int | None
    disk: Line = field(default_factory=Line)  # storage mirrored (NBD drive-mirror), bytes

    @property
    def has_progress(self) -> bool:
        return bool(self.transferred or self.remaining or self.disk)

    @property
    def has_rates(self) -> bool:
        return bool(self.throughput or self.dirty_rate or self.throttle or self.markers)

    @property
    def t_max(self) -> float | None:
        xs = [
            x
            for line in (
                self.transferred,
                self.remaining,
                self.throughput,
                self.dirty_rate,
                self.disk,
            )
            for x in line.x
        ]
        xs += [m.t for m in self.markers]
        return max(xs) if xs else None


@dataclass(slots=True)
class PassRow:
    """One row of the per-pass table (a pass = the samples between two dirty syncs)."""

    number: int | None  # dirty-sync-count, or an ordinal when derived from remaining
    start: float | None
    end: float | None
    samples: int
    remaining_start: int | None  # dirty bytes left when the pass was first seen
    sent: int | None  # bytes sent during the pass (None when the start is unknown)
    transferred_end: int | None  # cumulative bytes on the wire at the pass's last sample
    dirty_rate: float | None
    throughput: float | None
    expected_downtime: float | None
    throttle_pct: float | None


def thin(x: list[float], y: list[float], limit: int = MAX_POINTS) -> tuple[list, list]:
    """Reduce a series to at most ~``limit`` points, keeping each bucket's min and max.

    Plain striding would drop the spikes an operator is looking for; min/max per
    bucket keeps the envelope of the curve with a tenth of the points.
    """
    n = len(x)
    if n <= limit:
        return list(x), list(y)
    buckets = max(1, limit // 2)
    size = n / buckets
    keep: set[int] = {0, n - 1}
    for b in range(buckets):
        lo, hi = int(b * size), min(n, int((b + 1) * size))
        if lo >= hi:
            continue
        idx = range(lo, hi)
        keep.add(min(idx, key=lambda i: y[i]))
        keep.add(max(idx, key=lambda i: y[i]))
    order = sorted(keep)
    return [x[i] for i in order], [y[i] for i in order]


def _line(samples: list[Sample], attr: str, steps: bool = False) -> Line:
    xs, ys = [], []
    for s in samples:
        v = getattr(s, attr)
        if s.t is not None and v is not None:
            xs.append(float(s.t))
            ys.append(float(v))
    xs, ys = thin(xs, ys)
    return Line(xs, ys, steps)


def _print_unit(x: float) -> float:
    return float(1024 ** int(math.log(x, 1024))) if x >= 1024 else 1.0


def _rounded_to_one_decimal(xs: list[int]) -> bool:
    """True when every value is what ``render_bytes`` (``%.1f`` in B/KiB/MiB/GiB) gives back."""
    big = [x for x in xs if x >= 1024]
    return len(big) >= 3 and all(
        x == int(round(round(x / _print_unit(x), 1) * _print_unit(x))) for x in big
    )


def _throughput(run: Run) -> tuple[Line, str]:
    """QEMU's own rate (``mbps``) where the log has it, else Δtransferred/Δt.

    Logs that print sizes with one decimal (Proxmox: ``1.3 GiB``, ±0.05 GiB) and whole
    seconds make a one-second delta swing by 100 % or more, so each point then averages
    back far enough that rounding stays under ~10 % of the bytes and of the time.
    """
    qemu = _line(run.samples, "throughput")
    if qemu:
        return qemu, "qemu"
    ivs = interval_rates(run.samples)
    pts = [
        (s.t, s.transferred) for s in run.samples if s.t is not None and s.transferred is not None
    ]
    rounded = _rounded_to_one_decimal([x for _, x in pts])
    whole_seconds = len(pts) >= 3 and all(float(t).is_integer() for t, _ in pts)
    if not (rounded or whole_seconds):
        # Exact counters: each interval's rate, drawn as a step over that interval.
        xs = [iv.start for iv in ivs] + [ivs[-1].end] if ivs else []
        ys = [iv.rate for iv in ivs] + [ivs[-1].rate] if ivs else []
        xs, ys = thin(xs, ys)
        return Line(xs, ys, steps=True), "deltas"
    xs, ys = [], []
    for i, j in enumerate(_window_starts(pts, rounded, whole_seconds)):
        if i == 0:
            continue
        (t1, x1), (t0, x0) = pts[i], pts[j]
        if t1 > t0 and x1 >= x0:
            xs.append(float(t1))
            ys.append((x1 - x0) / (t1 - t0))
    xs, ys = thin(xs, ys)
    return Line(xs, ys), "averaged"


def _window_starts(pts: list[tuple[float, int]], rounded: bool, whole_seconds: bool) -> list[int]:
    """For each point i, the latest j < i far enough back to average over (0 if none).

    "Far enough" means at least 10 s (whole-second stamps) and bytes sent well above
    the printing rounding of both ends.  Walking back from each point was quadratic
    once values reach TiB (the rounding is then 0.05 TiB: most points qualify for no
    j); within a stretch where time and bytes only grow the test is monotone in j, so
    a binary search finds the same j.  A stretch ends where a counter goes back (a
    new migration in the same log); the search does not look past that.
    """
    min_dt = 10.0 if whole_seconds else 0.0
    unit = [0.05 * _print_unit(x) if rounded and x >= 1024 else 0.0 for _, x in pts]

    def far_enough(i: int, j: int) -> bool:
        return pts[i][0] - pts[j][0] >= min_dt and pts[i][1] - pts[j][1] >= 10 * (unit[j] + unit[i])

    out = [0] * len(pts)
    start = 0  # first point of the current monotone stretch
    for i in range(1, len(pts)):
        if pts[i][0] < pts[i - 1][0] or pts[i][1] < pts[i - 1][1]:
            start = i
        lo, hi = max(start, 1), i - 1  # the walk never tests j = 0
        if lo > hi or not far_enough(i, lo):
            out[i] = start if start < i else i - 1
            continue
        while lo < hi:  # largest j in [lo, hi] that is far enough
            mid = (lo + hi + 1) // 2
            if far_enough(i, mid):
                lo = mid
            else:
                hi = mid - 1
        out[i] = lo
    return out


def _dirty(samples: list[Sample]) -> Line:
    # QEMU reports 0 before its first rate period and after completion: not a measurement.
    kept = [
        s
        for s in samples
        if not (s.dirty_rate == 0 and ((s.passes or 0) < 2 or s.status == "completed"))
    ]
    return _line(kept, "dirty_rate")


def _throttle_value(e: Event) -> float | None:
    for key in ("throttle_pct", "cpu_throttle_percentage", "cpu-throttle-percentage", "pct"):
        v = e.data.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    m = _PCT_RE.search(e.message)
    return float(m.group(1)) if m else None


def _bandwidth_value(e: Event) -> float | None:
    for key in ("max_bandwidth", "max-bandwidth", "bandwidth"):
        v = e.data.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def _throttle(run: Run) -> Line:
    line = _line(run.samples, "throttle_pct", steps=True)
    if line:
        return line
    xs, ys = [], []
    for e in run.events_of("throttle-change"):
        v = _throttle_value(e)
        if e.t is not None and v is not None:
            xs.append(float(e.t))
            ys.append(v)
    return Line(xs, ys, steps=True)


def markers(run: Run) -> list[Marker]:
    """Setting changes during the migration, with a short label for the chart."""
    out: list[Marker] = []
    verdict = None
    for e in run.events:
        if e.t is None:
            continue
        if e.kind == "prediction" and isinstance(e.data, dict):
            # a live prediction, marked where its verdict changes (one per sync is noise)
            if e.data.get("verdict") == verdict:
                continue
            verdict = e.data.get("verdict")
            v, label = None, f"predicted: {str(verdict).replace('-', ' ')}"
        elif e.kind == "downtime-change":
            v = event_downtime_limit(e)
            label = f"limit {format_duration(v)}" if v is not None else "downtime limit"
        elif e.kind == "bandwidth-change":
            v = _bandwidth_value(e)
            label = ("unlimited" if v == 0 else f"cap {format_rate(v)}") if v is not None else ""
            label = label or "bandwidth"
        elif e.kind == "throttle-change":
            v = _throttle_value(e)
            label = f"throttle {v:.0f} %" if v is not None else "throttle"
        elif e.kind == "postcopy-start":
            v, label = None, "post-copy"
        else:
            continue
        out.append(Marker(float(e.t), e.kind, label, v))
    return out


def _disk(run: Run) -> Line:
    """Bytes of local disks mirrored so far: the samples' counters, else storage-progress."""
    line = _line(run.samples, "disk_transferred")
    if line:
        return line
    per_job: dict[str, int] = {}
    xs, ys = [], []
    for e in run.events_of("storage-progress"):
        done = e.data.get("transferred")
        if e.t is None or not isinstance(done, int) or isinstance(done, bool):
            continue
        per_job[str(e.data.get("job") or e.data.get("drive") or "")] = done
        xs.append(float(e.t))
        ys.append(float(sum(per_job.values())))
    xs, ys = thin(xs, ys)
    return Line(xs, ys)


def run_series(run: Run) -> RunSeries:
    throughput, source = _throughput(run)
    ram = run.ram_bytes or next((s.total for s in reversed(run.samples) if s.total), None)
    return RunSeries(
        transferred=_line(run.samples, "transferred"),
        remaining=_line(run.samples, "remaining"),
        throughput=throughput,
        throughput_source=source,
        dirty_rate=_dirty(run.samples),
        page_rate=_line(run.samples, "page_rate"),
        throttle=_throttle(run),
        markers=markers(run),
        ram_bytes=ram,
        disk=_disk(run),
    )


def _groups(samples: list[Sample]) -> list[tuple[int | None, list[Sample]]]:
    counted = [s for s in samples if s.passes is not None]
    groups: list[tuple[int | None, list[Sample]]] = []
    if counted:
        for s in counted:
            if groups and groups[-1][0] == s.passes:
                groups[-1][1].append(s)
            else:
                groups.append((s.passes, [s]))
        return groups
    with_rem = [s for s in samples if s.remaining is not None]
    if len(with_rem) < 2:
        return []
    number = 1
    groups.append((number, [with_rem[0]]))
    for prev, s in zip(with_rem, with_rem[1:], strict=False):
        if s.remaining > prev.remaining + _PASS_JUMP:  # type: ignore[operator]
            number += 1
            groups.append((number, []))
        groups[-1][1].append(s)
    return groups


def _last(samples: list[Sample], attr: str):
    return next((v for s in reversed(samples) if (v := getattr(s, attr)) is not None), None)


def _first(samples: list[Sample], attr: str):
    return next((v for s in samples if (v := getattr(s, attr)) is not None), None)


def pass_rows(run: Run) -> list[PassRow]:
    """The per-pass table: one row per dirty-sync count seen in the samples."""
    rows: list[PassRow] = []
    prev_end: int | None = None
    for number, group in _groups(run.samples):
        if not group:
            continue
        times = [s.t for s in group if s.t is not None]
        end_x = _last(group, "transferred")
        if prev_end is not None and end_x is not None:
            sent = end_x - prev_end
        elif number == 1 and not rows and end_x is not None:
            sent = end_x  # the first pass starts from nothing sent
        else:
            sent = None
        active = [s for s in group if s.status != "completed"] or group
        dirty = [s.dirty_rate for s in active if s.dirty_rate]
        mbps = [s.throughput for s in active if s.throughput]
        rows.append(
            PassRow(
                number=number,
                start=min(times) if times else None,
                end=max(times) if times else None,
                samples=len(group),
                remaining_start=_first(group, "remaining"),
                sent=sent,
                transferred_end=end_x,
                dirty_rate=sum(dirty) / len(dirty) if dirty else None,
                throughput=sum(mbps) / len(mbps) if mbps else None,
                expected_downtime=_last(active, "expected_downtime"),
                throttle_pct=_last(group, "throttle_pct"),
            )
        )
        prev_end = end_x if end_x is not None else prev_end
    _fill_pass_throughput(run, rows)
    return rows


def _fill_pass_throughput(run: Run, rows: list[PassRow]) -> None:
    """Without QEMU's rate, a pass's throughput is the mean Δtransferred/Δt inside it."""
    intervals = interval_rates(run.samples)
    ends = [iv.end for iv in intervals]
    row_ends = [r.end for r in rows if r.end is not None]
    if _ascending(ends) and _ascending(row_ends):
        _pass_means_linear(rows, intervals)
        return
    prev_end: float | None = None  # out-of-order counters: the plain, quadratic way
    for r in rows:
        if r.throughput is None and r.end is not None:
            inside = [
                iv.rate
                for iv in intervals
                if (prev_end is None or iv.end > prev_end) and iv.end <= r.end
            ]
            if inside:
                r.throughput = sum(inside) / len(inside)
        prev_end = r.end if r.end is not None else prev_end


def _ascending(values: list[float]) -> bool:
    return all(a <= b for a, b in zip(values, values[1:], strict=False))


def _pass_means_linear(rows: list[PassRow], intervals: list) -> None:
    """Rows and intervals both run forward in time: one pointer, not rows x intervals."""
    prev_end: float | None = None
    k = 0
    for r in rows:
        if r.end is not None:
            while k < len(intervals) and prev_end is not None and intervals[k].end <= prev_end:
                k += 1
            m = k
            while m < len(intervals) and intervals[m].end <= r.end:
                m += 1
            if r.throughput is None and m > k:
                inside = [iv.rate for iv in intervals[k:m]]
                r.throughput = sum(inside) / len(inside)
            prev_end = r.end
