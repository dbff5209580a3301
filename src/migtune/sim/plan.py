"""The next dirty pages of the scan, priced: what one simulator step may send."""

from __future__ import annotations

import math

import numpy as np

PAGE_BYTES = 4096


class Plan:
    """The next dirty pages of the scan, priced.

    Without XBZRLE a step's pages are a run of non-zero pages then a run of zero pages
    (zero-ness is a range test on ascending page numbers), so sums are closed forms;
    with XBZRLE every page has its own cost and the sums are prefix sums.
    """

    def __init__(
        self, idx, link, cpu, *, n=None, pos=None, nonzero=0, cost_nz=0.0, cost_z=0.0, arrays=None
    ):
        self.idx = idx  # page numbers, or None for a run of the scan priced in closed form
        self.n = len(idx) if idx is not None else int(n)
        self.pos = pos  # scan position of the first page (None: sent out of scan order)
        self.link, self.cpu = link, cpu
        self.b, self.cost_nz, self.cost_z = nonzero, cost_nz, cost_z
        self.arrays = arrays  # (cost, hits, size, zero, xbzrle_cpu) or None
        if arrays is not None:
            self.ccost = np.cumsum(arrays[0])
            self.chits = np.cumsum(arrays[1]) if arrays[4] else None
        self._ctime = None

    @property
    def xb(self) -> bool:
        return self.arrays is not None

    def zeros(self, k: int) -> int:
        if self.arrays is not None:
            return int(np.count_nonzero(self.arrays[3][:k]))
        return max(0, k - self.b)

    def flush_at_or_after(self, k: int, done_full: int, every: int) -> int | None:
        """Smallest page count m >= k after which QEMUFile flushes: page m is a full page
        and the call's full pages so far (``done_full`` + this plan's) are a multiple of
        ``every`` (None: not within this plan)."""
        if k <= 0:
            k = 1
        if self.arrays is None:
            if k > self.b:
                return None
            m = k + (-(done_full + k)) % every
            return m if m <= self.b else None
        full = self.arrays[0] >= PAGE_BYTES
        cf = np.cumsum(full)
        ok = full & ((done_full + cf) % every == 0)
        ok[: k - 1] = False
        hit = np.flatnonzero(ok)
        return int(hit[0]) + 1 if len(hit) else None

    def fulls(self, k: int) -> int:
        if self.arrays is None:
            return min(k, self.b)
        return int(np.count_nonzero(self.arrays[0][:k] >= PAGE_BYTES))

    def bytes_upto(self, k: int) -> float:
        if k <= 0:
            return 0.0
        if self.arrays is not None:
            return float(self.ccost[k - 1])
        return min(k, self.b) * self.cost_nz + max(0, k - self.b) * self.cost_z

    def time_upto(self, k: int) -> float:
        if k <= 0:
            return 0.0
        t = self.bytes_upto(k) / self.link + k * self.cpu
        if self.arrays is not None and self.chits is not None:
            t += float(self.chits[k - 1]) * self.arrays[4]
        return t

    def first_over_bytes(self, limit: float) -> int | None:
        """Smallest page count whose bytes exceed ``limit`` (None: not within the plan)."""
        if self.arrays is not None:
            i = int(np.searchsorted(self.ccost, limit, side="right"))
            return i + 1 if i < self.n else None
        return self._solve(limit, self.cost_nz, self.cost_z)

    def first_over_time(self, limit: float) -> int | None:
        if self.arrays is not None:
            if self._ctime is None:
                k = np.arange(1, self.n + 1)
                self._ctime = self.ccost / self.link + k * self.cpu
                if self.chits is not None:
                    self._ctime += self.chits * self.arrays[4]
            i = int(np.searchsorted(self._ctime, limit, side="right"))
            return i + 1 if i < self.n else None
        return self._solve(
            limit, self.cost_nz / self.link + self.cpu, self.cost_z / self.link + self.cpu
        )

    def _solve(self, limit: float, per_nz: float, per_z: float) -> int | None:
        if limit < 0:
            return 1 if self.n else None
        if self.b and self.b * per_nz > limit:
            return int(limit // per_nz) + 1
        rest = limit - self.b * per_nz
        if per_z <= 0:
            return None
        k = self.b + int(rest // per_z) + 1
        return k if k <= self.n else None


class SegmentPlan:
    """The next dirty pages of the scan priced by segments of alike pages (statistical
    XBZRLE, :mod:`migtune.sim.xbzstat`): each segment has a count and a mean cost, CPU
    and share of whole pages per page, so every sum is piecewise linear."""

    xb = False
    idx = None

    def __init__(self, link, pos, segments):
        # segments: (count, bytes per page, CPU per page, whole-page share, key)
        self.link, self.pos = link, pos
        self.segs = [s for s in segments if s[0] > 0]
        self.n = sum(s[0] for s in self.segs)

    def _walk(self, k: int):
        """(segment, pages of it) for the first ``k`` pages."""
        for s in self.segs:
            if k <= 0:
                return
            take = min(k, s[0])
            yield s, take
            k -= take

    def zeros(self, k: int) -> int:
        return sum(t for s, t in self._walk(k) if s[4] == "zero")

    def fulls(self, k: int) -> int:
        return int(round(sum(t * s[3] for s, t in self._walk(k))))

    def bytes_upto(self, k: int) -> float:
        return sum(t * s[1] for s, t in self._walk(k))

    def time_upto(self, k: int) -> float:
        return sum(t * (s[1] / self.link + s[2]) for s, t in self._walk(k))

    def _first_over(self, limit: float, per) -> int | None:
        if limit < 0:
            return 1 if self.n else None
        done = 0
        acc = 0.0
        for s in self.segs:
            c = per(s)
            if c > 0 and acc + s[0] * c > limit:
                return done + int((limit - acc) // c) + 1
            acc += s[0] * c
            done += s[0]
        return None

    def first_over_bytes(self, limit: float) -> int | None:
        return self._first_over(limit, lambda s: s[1])

    def first_over_time(self, limit: float) -> int | None:
        return self._first_over(limit, lambda s: s[1] / self.link + s[2])

    def flush_at_or_after(self, k: int, done_full: int, every: int) -> int | None:
        """As :meth:`Plan.flush_at_or_after`, with whole pages spread at their share."""
        k = max(1, k)
        before = done_full + sum(t * s[3] for s, t in self._walk(k - 1))
        target = (math.floor(before) // every + 1) * every
        need = target - done_full
        done, acc = 0, 0.0
        for s in self.segs:
            if s[3] > 0 and acc + s[0] * s[3] >= need:
                m = done + max(1, math.ceil((need - acc) / s[3] - 1e-9))
                return max(m, k)
            acc += s[0] * s[3]
            done += s[0]
        return None
