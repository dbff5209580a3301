"""Bounded lists for ``Run.samples`` and ``Run.events``: a 1 GB log must not need 5 GB.

A Proxmox log has one progress sample per second; a day-long migration or a lab
recording at 10 polls/s gives millions.  Every analysis in migtune either needs the
first/last values, the points where something changed, or a statistic over the whole
run; none needs every sample.  So:

* :class:`SampleList` keeps every sample up to :data:`SAMPLE_LIMIT`.  Beyond that it
  keeps an evenly strided subset (every 2nd, 4th, ... sample by position), and always
  the first sample, each sample where the status, the dirty-sync count, the CPU
  throttle, the error or the "transferred passed the RAM size" condition changed, each
  rise of ``remaining`` that marks a new pass, and the last :data:`TAIL` samples.  The
  figures that need every sample are folded exactly, in order, into :class:`SeriesStats`
  as samples leave the tail (so a parser may still fill in the sample it appended last).
* :class:`EventList` keeps every event of a kind up to :data:`EVENTS_PER_KIND`, then an
  evenly strided subset of that kind: garbage read with ``--format proxmox`` makes one
  "unrecognised line" event per line, and they must not fill the memory either.

Both are plain lists for every reader; only ``append`` differs.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

SAMPLE_LIMIT = 20_000  # ~1 KB each with its source line: ~20 MB; charts draw 400 points
TAIL = 8  # the newest samples are never thinned: parsers may still complete them
_BATCH = 48  # fold this often: thinned samples then die young, cheap for the GC
EVENTS_PER_KIND = 5_000
_PASS_JUMP = 4 * 1024**2  # same threshold as analysis.metrics: a rise of remaining = new pass
# What a sample must keep when it changes (with "xbzrle reported" and "sent more than RAM").
_KEY = operator.attrgetter("status", "passes", "throttle_pct", "error")


@dataclass(slots=True)
class SeriesStats:
    """Figures over every sample seen, in order, whatever was thinned away."""

    count: int = 0
    first_point: tuple[float, int] | None = None  # first (t, transferred)
    interval_min: float | None = None  # extremes of Δtransferred/Δt over intervals >= 1 s
    interval_max: float | None = None
    page_rate_min: float | None = None
    page_rate_max: float | None = None
    dirty_reports: int = 0  # samples with a dirty rate that is a measurement
    dirty_max: float | None = None
    passes_max: int | None = None
    remaining_values: int = 0
    remaining_jumps: int = 0
    throttle_max: float | None = None
    miss_rate_max: float | None = None
    overflow_first: int | None = None
    _prev_point: tuple[float, int] | None = None
    _prev_remaining: int | None = None
    _prev_key: tuple | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> SeriesStats:
        out = SeriesStats(**{k: getattr(self, k) for k in self.__slots__ if k != "extra"})
        out.extra = dict(self.extra)
        return out

    def fold(self, s: Any) -> bool:
        """Count one sample; True if it is a change point that thinning must keep."""
        return self.fold_many([s])[0]

    def fold_many(self, batch: list[Any]) -> list[bool]:
        """Count consecutive samples; per sample, True for a change point to keep.

        Runs over every sample of a big log, so each figure is one comprehension over
        the batch rather than a branchy loop per sample.
        """
        keep = [False] * len(batch)
        if not batch:
            return keep
        if self.count == 0:
            keep[0] = True
        self.count += len(batch)
        self._points([(s.t, s.transferred) for s in batch])
        self._extremes(batch)
        rem = [(i, v) for i, s in enumerate(batch) if (v := s.remaining) is not None]
        if rem:
            self.remaining_values += len(rem)
            before = self._prev_remaining
            for i, v in rem:
                if before is not None and v > before + _PASS_JUMP:
                    self.remaining_jumps += 1
                    keep[i] = True
                before = v
            self._prev_remaining = before
        keys = list(
            zip(
                map(_KEY, batch),
                [s.xbzrle is None for s in batch],
                [bool(s.transferred and s.total and s.transferred > s.total) for s in batch],
                strict=True,
            )
        )
        prev = self._prev_key
        if keys.count(keys[0]) == len(keys):  # the usual batch: nothing changes in it
            if keys[0] != prev:
                keep[0] = True
                prev = keys[0]
        else:
            for i, key in enumerate(keys):
                if key != prev:
                    keep[i] = True
                    prev = key
        self._prev_key = prev
        return keep

    def _points(self, pts: list[tuple[Any, Any]]) -> None:
        """Extremes of Δtransferred/Δt: the walk of analysis.metrics.interval_rates."""
        prev = self._prev_point
        if prev is not None and _steady(prev, pts):
            # The usual batch: every point timed, time rising, bytes not falling.
            pairs = zip([prev, *pts[:-1]], pts, strict=True)
            rates = [(x1 - x0) / (t1 - t0) for (t0, x0), (t1, x1) in pairs if t1 - t0 >= 1.0]
            if rates:
                self.interval_min = _lo(self.interval_min, min(rates))
                self.interval_max = _hi(self.interval_max, max(rates))
            self._prev_point = pts[-1]
            return
        lo, hi = self.interval_min, self.interval_max
        for t, x in pts:
            if t is None or x is None:
                continue
            if prev is None:
                self.first_point = prev = (t, x)
            elif t > prev[0] and x >= prev[1]:
                if t - prev[0] >= 1.0:
                    rate = (x - prev[1]) / (t - prev[0])
                    if lo is None or rate < lo:
                        lo = rate
                    if hi is None or rate > hi:
                        hi = rate
                prev = (t, x)
            elif x < prev[1]:
                prev = (t, x)
        self._prev_point, self.interval_min, self.interval_max = prev, lo, hi

    def _extremes(self, batch: list[Any]) -> None:
        pages = [v for s in batch if (v := s.page_rate) is not None]
        if pages:
            self.page_rate_min = _lo(self.page_rate_min, min(pages))
            self.page_rate_max = _hi(self.page_rate_max, max(pages))
        # QEMU reports a dirty rate of 0 before its first period and once completed.
        dirty = [
            v
            for s in batch
            if (v := s.dirty_rate) is not None
            and not (v == 0 and ((s.passes or 0) < 2 or s.status == "completed"))
        ]
        if dirty:
            self.dirty_reports += len(dirty)
            self.dirty_max = _hi(self.dirty_max, max(dirty))
        passes = [v for s in batch if (v := s.passes) is not None]
        if passes:
            self.passes_max = _hi(self.passes_max, max(passes))
        throttle = [v for s in batch if (v := s.throttle_pct) is not None]
        if throttle:
            self.throttle_max = _hi(self.throttle_max, max(throttle))
        xbs = [x for s in batch if (x := s.xbzrle) is not None]
        if xbs:
            rates = [v for x in xbs if (v := x.cache_miss_rate) is not None]
            if rates:
                self.miss_rate_max = _hi(self.miss_rate_max, max(rates))
            if self.overflow_first is None:
                self.overflow_first = next(
                    (x.overflow for x in xbs if x.overflow is not None), None
                )


def _steady(prev: tuple[Any, Any], pts: list[tuple[Any, Any]]) -> bool:
    """True when each point is timed and later than the one before, with no fewer bytes."""
    ts = [t for t, _ in pts]
    xs = [x for _, x in pts]
    if None in ts or None in xs:
        return False
    ts.insert(0, prev[0])
    xs.insert(0, prev[1])
    return all(map(operator.lt, ts, ts[1:])) and all(map(operator.le, xs, xs[1:]))


def _lo(a: Any, b: Any) -> Any:
    return b if a is None or b < a else a


def _hi(a: Any, b: Any) -> Any:
    return b if a is None or b > a else a


class SampleList(list):
    """``Run.samples``: a list that thins itself past :data:`SAMPLE_LIMIT` (see module doc)."""

    def __init__(self, *args: Any, limit: int | None = None):
        super().__init__(*args)
        self.limit = max(8, limit or SAMPLE_LIMIT)
        self.stride = 1  # keep every stride-th sample (by position in the log) ...
        self._stats = SeriesStats()
        self._folded = 0  # leading elements already counted in _stats
        self._index: list[int] = []  # ... position of each folded element
        self._pinned = bytearray()  # ... and 1 where it must be kept anyway
        self._room = TAIL + _BATCH - len(self)  # appends left before the next fold

    def append(self, sample: Any) -> None:
        list.append(self, sample)
        self._room -= 1
        if self._room < 0:
            self._fold(len(self) - TAIL)
            self._room = _BATCH

    @property
    def thinned(self) -> bool:
        return self.stride > 1

    @property
    def seen(self) -> int:
        """Samples appended so far, thinned or not."""
        return self._stats.count + (len(self) - self._folded)

    def stats(self) -> SeriesStats:
        """Exact figures over every sample appended (folds the newest without thinning)."""
        st = self._stats.copy()
        st.fold_many(self[self._folded :])
        return st

    def _fold(self, end: int) -> None:
        batch = self[self._folded : end]
        base, stride = self._stats.count, self.stride
        changes = self._stats.fold_many(batch)
        keep = [i for i, c in enumerate(changes) if c or (base + i) % stride == 0]
        if len(keep) < len(batch):
            self[self._folded : end] = [batch[i] for i in keep]
        self._index += [base + i for i in keep]
        self._pinned += bytes(1 if changes[i] else 0 for i in keep)
        self._folded += len(keep)
        while self._folded > self.limit:
            self._halve()

    def _halve(self) -> None:
        self.stride *= 2
        pinned = sum(self._pinned)
        # Change points too can be too many (a sync every poll): then thin them as well.
        pin_stride = 1 if pinned <= self.limit // 2 else math.ceil(2 * pinned / self.limit)
        kept, index, flags = [], [], bytearray()
        n_pin = 0
        for s, pos, pin in zip(self[: self._folded], self._index, self._pinned, strict=True):
            if pin:
                n_pin += 1
                if (n_pin - 1) % pin_stride and pos != 0:
                    continue
            elif pos % self.stride:
                continue
            kept.append(s)
            index.append(pos)
            flags.append(pin)
        self[: self._folded] = kept
        self._index, self._pinned, self._folded = index, flags, len(kept)


class EventList(list):
    """``Run.events``: every event of a kind up to a cap, then every n-th of that kind."""

    def __init__(self, *args: Any, per_kind: int | None = None):
        super().__init__(*args)
        self.per_kind = max(4, per_kind or EVENTS_PER_KIND)
        self.seen: dict[str, int] = {}  # events appended per kind
        self.strides: dict[str, int] = {}
        self.kept: dict[str, int] = {}

    @property
    def thinned(self) -> bool:
        return any(v > 1 for v in self.strides.values())

    def append(self, event: Any) -> None:
        kind = getattr(event, "kind", None)
        n = self.seen.get(kind, 0)
        self.seen[kind] = n + 1
        stride = self.strides.get(kind, 1)
        if n % stride:
            return
        list.append(self, event)
        kept = self.kept.get(kind, 0) + 1
        self.kept[kind] = kept
        if kept > self.per_kind:
            self._halve(kind)

    def _halve(self, kind: Any) -> None:
        # The kept events of this kind are at positions 0, s, 2s, ...: keep every other.
        self.strides[kind] = self.strides.get(kind, 1) * 2
        out, i = [], 0
        for e in self:
            if getattr(e, "kind", None) == kind:
                i += 1
                if (i - 1) % 2:
                    continue
            out.append(e)
        self[:] = out
        self.kept[kind] = (self.kept[kind] + 1) // 2

    def thinned_kinds(self) -> dict[str, tuple[int, int]]:
        """Kinds that were thinned: kind -> (seen, kept)."""
        return {k: (self.seen[k], self.kept[k]) for k, s in self.strides.items() if s > 1}
