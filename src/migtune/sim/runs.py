"""Sets of page numbers as sorted runs ``[start, end)``, and QEMU's migration bitmap
as the scan sees it (:class:`DirtySet`).

Why runs: a pass costs what it sends.  A 1 TiB guest's first pass is one run; a
sweeping writer dirties one or two runs per sync; a random writer that hits most of
its working set leaves a few holes, i.e. a few runs; only a sparse random writer
needs a run per page - and then the pages it wrote are what it costs.  Nothing here
walks the guest's RAM or working set page by page.

A run set is a pair of int64 arrays ``(starts, ends)``, ascending, disjoint and not
touching (``ends[i] < starts[i + 1]``).
"""

from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np

Runs = tuple[np.ndarray, np.ndarray]


def empty() -> Runs:
    return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)


def size(r: Runs) -> int:
    return int((r[1] - r[0]).sum())


def distinct(pages: np.ndarray) -> np.ndarray:
    """Sorted distinct values (``np.unique`` without its hashing, several times faster
    on the page arrays here)."""
    x = np.sort(np.asarray(pages, dtype=np.int64))
    if len(x) < 2:
        return x
    keep = np.empty(len(x), dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def from_pages(pages: np.ndarray) -> Runs:
    """Runs of sorted, distinct page numbers."""
    if not len(pages):
        return empty()
    pages = np.asarray(pages, dtype=np.int64)
    cut = np.flatnonzero(np.diff(pages) != 1) + 1
    first = np.concatenate(([0], cut))
    last = np.concatenate((cut - 1, [len(pages) - 1]))
    return pages[first], pages[last] + 1


def to_pages(r: Runs) -> np.ndarray:
    """The page numbers of a run set, ascending."""
    s, e = r
    lens = e - s
    total = int(lens.sum())
    if not total:
        return np.empty(0, dtype=np.int64)
    if len(s) == 1:
        return np.arange(int(s[0]), int(e[0]), dtype=np.int64)
    first = np.cumsum(lens) - lens
    return np.arange(total, dtype=np.int64) + np.repeat(s - first, lens)


def _combine(a: Runs, b: Runs, op) -> Runs:
    """``op(in_a, in_b)`` over the coverage of two run sets, as runs."""
    pts = np.concatenate((a[0], a[1], b[0], b[1]))
    if not len(pts):
        return empty()
    na, nb = len(a[0]), len(b[0])
    da = np.concatenate((np.ones(na, np.int64), -np.ones(na, np.int64), np.zeros(2 * nb, np.int64)))
    db = np.concatenate((np.zeros(2 * na, np.int64), np.ones(nb, np.int64), -np.ones(nb, np.int64)))
    order = np.argsort(pts, kind="stable")
    pts = pts[order]
    ca, cb = np.cumsum(da[order]), np.cumsum(db[order])
    last = np.concatenate((pts[1:] != pts[:-1], [True]))  # coverage after a point's events
    pts, keep = pts[last], op(ca[last] > 0, cb[last] > 0)
    seg = keep[:-1]  # segment [pts[i], pts[i + 1])
    if not seg.any():
        return empty()
    prev = np.concatenate(([False], seg[:-1]))
    nxt = np.concatenate((seg[1:], [False]))
    return pts[:-1][seg & ~prev], pts[1:][seg & ~nxt]


def union(a: Runs, b: Runs) -> Runs:
    if not len(a[0]):
        return b
    if not len(b[0]):
        return a
    # runs ordered by start (two sorted inputs: a merge), then a run extends the one
    # before it when it starts at or before the furthest end so far
    starts = np.concatenate((a[0], b[0]))
    order = np.argsort(starts, kind="stable")
    starts = starts[order]
    reach = np.maximum.accumulate(np.concatenate((a[1], b[1]))[order])
    first = np.empty(len(starts), dtype=bool)
    first[0] = True
    np.greater(starts[1:], reach[:-1], out=first[1:])
    heads = np.flatnonzero(first)
    return starts[heads], reach[np.concatenate((heads[1:] - 1, [len(starts) - 1]))]


def union_all(parts: list[Runs]) -> Runs:
    out = empty()
    for p in parts:
        out = union(out, p)
    return out


def difference(a: Runs, b: Runs) -> Runs:
    if not len(a[0]) or not len(b[0]):
        return a
    return _combine(a, b, lambda x, y: x & ~y)


def overlap(a: Runs, b: Runs) -> int:
    """Pages in both."""
    if not len(a[0]) or not len(b[0]):
        return 0
    return size(_combine(a, b, np.logical_and))


def contains(r: Runs, pages: np.ndarray) -> np.ndarray:
    i = np.searchsorted(r[0], pages, side="right") - 1
    ok = i >= 0
    ok[ok] = pages[ok] < r[1][i[ok]]
    return ok


def sweep(pos: int, n: int, length: int, off: int) -> Runs:
    """Pages ``pos, pos + 1, …`` (``n`` of them, wrapping at ``length``), plus ``off``."""
    if n >= length:
        return np.array([off], np.int64), np.array([off + length], np.int64)
    end = pos + n
    if end <= length:
        return np.array([off + pos], np.int64), np.array([off + end], np.int64)
    return np.array([off, off + pos], np.int64), np.array(
        [off + end - length, off + length], np.int64
    )


def uniform_hits(rng: np.random.Generator, lo: int, hi: int, n: int) -> Runs:
    """The distinct pages ``n`` uniform writes over ``[lo, hi)`` hit.

    Few writes: drawn one by one (exact).  Otherwise each page is hit independently with
    probability ``1 - (1 - 1/S)^n``; when most pages are hit, the missed ones (holes)
    are drawn instead, so a saturated working set costs its holes, not its pages.
    """
    span = hi - lo
    if n <= 0 or span <= 0:
        return empty()
    if 32 * n <= span:
        return from_pages(distinct(rng.integers(lo, hi, size=n, dtype=np.int64)))
    if 4 * n <= span:  # a mask over the span beats sorting the writes
        mask = np.zeros(span, dtype=bool)
        mask[rng.integers(0, span, size=n, dtype=np.int64)] = True
        return from_pages(np.flatnonzero(mask) + lo)
    miss = math.exp(n * math.log1p(-1.0 / span)) if span > 1 else 0.0
    holes = int(rng.binomial(span, miss))
    if 16 * holes <= span:
        if not holes:
            return np.array([lo], np.int64), np.array([hi], np.int64)
        where = np.sort(rng.choice(span, size=holes, replace=False, shuffle=False)) + lo
        starts = np.concatenate(([lo], where + 1))
        ends = np.concatenate((where, [hi]))
        keep = ends > starts
        return starts[keep], ends[keep]
    return from_pages(np.flatnonzero(rng.random(span) >= miss) + lo)


class DirtySet:
    """The pages still to send, in the order QEMU's circular scan will find them.

    The runs are stored in scan order: first those at or after the cursor, then (after
    the scan wraps at the end of RAM) those before it.  Sending always takes the next
    pages of that order, so "sent" is one position ``pos``; a sync rebuilds the runs.
    """

    def __init__(self, pages: int, nonzero_end: int):
        self.N = int(pages)
        self.nz_end = int(nonzero_end)
        self._cursor0 = 0
        self._rebuild(np.array([0], np.int64), np.array([self.N], np.int64), 0)

    # -- layout ------------------------------------------------------------------
    def _rebuild(self, s: np.ndarray, e: np.ndarray, cursor: int) -> None:
        j = int(np.searchsorted(e, cursor, side="right"))  # runs[:j] end at/before cursor
        after_s, after_e = s[:j], e[:j]
        bs, be = s[j:].copy(), e[j:]
        if len(bs) and bs[0] < cursor:  # the run under the cursor is split
            after_s = np.concatenate((after_s, bs[:1]))
            after_e = np.concatenate((after_e, [cursor]))
            bs[0] = cursor
        self.s = np.concatenate((bs, after_s))
        self.e = np.concatenate((be, after_e))
        self.c = np.cumsum(self.e - self.s)  # pages up to and including each run
        self.total = int(self.c[-1]) if len(self.c) else 0
        self.wrapi = len(bs)
        self.wrap_pos = int(self.c[self.wrapi - 1]) if self.wrapi else 0
        self.pos = 0
        self.wrapped = False
        self._cursor0, self._cursor_zero = cursor, False
        self.count = self.total
        # few runs (the usual case): scalar look-ups on Python lists beat numpy calls
        small = len(self.s) <= 4096
        self._cl = self.c.tolist() if small else None
        self._sl = self.s.tolist() if small else None
        self._nz = (
            self._first_at_or_above(0, self.wrapi),
            self._first_at_or_above(self.wrapi, len(self.s)),
        )

    def _first_at_or_above(self, i0: int, i1: int) -> int:
        """Scan position of the first zero page (>= nz_end) among runs [i0, i1)."""
        base = int(self.c[i0 - 1]) if i0 else 0
        k = i0 + int(np.searchsorted(self.e[i0:i1], self.nz_end, side="right"))
        if k >= i1:
            return int(self.c[i1 - 1]) if i1 else base
        before = int(self.c[k - 1]) if k else 0
        return before + max(0, self.nz_end - int(self.s[k]))

    # -- the scan ---------------------------------------------------------------
    @property
    def cursor(self) -> int:
        """The page the scan looks at next."""
        if self._cursor_zero:
            return 0
        if self.pos == 0:
            return self._cursor0
        return self.page_at(self.pos - 1) + 1

    def take(self, want: int) -> tuple[int, int, bool]:
        """Scan positions ``[a, b)`` of the next (at most ``want``) dirty pages, and
        whether the scan reaches the end of RAM there (the caller wraps)."""
        a = self.pos
        end = self.total if self.wrapped else self.wrap_pos
        b = min(a + max(0, want), end)
        return a, b, b == end

    def on_wrap(self) -> None:
        self._cursor_zero = True
        self.wrapped = True

    def advance(self, k: int) -> None:
        """The next ``k`` pages were sent."""
        if k > 0:
            self.pos += k
            self.count -= k
            self._cursor_zero = False

    def nonzero(self, a: int, b: int) -> int:
        """How many of positions ``[a, b)`` (one side of the wrap) are non-zero pages: they
        come first, the scan being ascending."""
        first_zero = self._nz[0] if a < self.wrap_pos else self._nz[1]
        return max(0, min(b, first_zero) - a)

    def page_at(self, x: int) -> int:
        """The page at scan position ``x``."""
        if self._cl is not None:
            i = bisect_right(self._cl, x)
            return self._sl[i] + x - (self._cl[i - 1] if i else 0)
        i = int(np.searchsorted(self.c, x, side="right"))
        return int(self.s[i]) + x - (int(self.c[i - 1]) if i else 0)

    def runs_between(self, a: int, b: int) -> Runs:
        """The runs of positions ``[a, b)`` (one side of the wrap), ascending."""
        if b <= a:
            return empty()
        i = int(np.searchsorted(self.c, a, side="right"))
        j = int(np.searchsorted(self.c, b - 1, side="right"))
        s = self.s[i : j + 1].copy()
        e = self.e[i : j + 1].copy()
        s[0] += a - (int(self.c[i - 1]) if i else 0)
        e[-1] -= int(self.c[j]) - b
        return s, e

    def pages(self, a: int, b: int) -> np.ndarray:
        return to_pages(self.runs_between(a, b))

    # -- whole-set operations (syncs, post-copy) -------------------------------------
    def unsent(self) -> Runs:
        """The pages still dirty, ascending."""
        if self.pos >= self.total:
            return empty()
        before = self.runs_between(self.pos, self.wrap_pos) if self.pos < self.wrap_pos else empty()
        after = self.runs_between(max(self.pos, self.wrap_pos), self.total)
        return np.concatenate((after[0], before[0])), np.concatenate((after[1], before[1]))

    def merge(self, log: Runs) -> int:
        """A bitmap sync: OR the guest's dirty log in; returns the pages newly dirty."""
        if not len(log[0]):
            return 0
        cur = self.unsent()
        merged = union(cur, log)
        new = size(merged) - self.count
        if new:
            self._rebuild(*merged, self.cursor)
        return new

    def remove(self, pages: np.ndarray) -> None:
        """Pages sent out of scan order (post-copy faults): sorted, distinct, all dirty."""
        if len(pages):
            self._rebuild(*difference(self.unsent(), from_pages(pages)), self.cursor)

    def run_count(self) -> int:
        s, e = self.unsent()
        return int(np.count_nonzero(s[1:] != e[:-1])) + 1 if len(s) else 0
