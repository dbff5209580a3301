"""QEMU's migration bitmap as the scan sees it: runs of dirty pages in scan order.

See :mod:`migtune.sim.runs` for run sets (exact runs, and density runs: ``k`` pages
spread over a range).  Sending always takes the next pages of the circular scan, so
what was sent since the last sync is one position ``pos`` in scan order; a sync (or a
post-copy fault) rebuilds the runs.  Nothing here walks RAM page by page.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from migtune.sim import runs


class DirtySet:
    """The pages still to send, in the order QEMU's circular scan will find them.

    The runs are stored in scan order: first those at or after the cursor, then (after
    the scan wraps at the end of RAM) those before it.
    """

    def __init__(self, pages: int, nonzero_end: int):
        self.N = int(pages)
        self.nz_end = int(nonzero_end)
        one = np.array([0], np.int64), np.array([self.N], np.int64), np.array([self.N], np.int64)
        self._rebuild(one, 0)

    # -- layout ------------------------------------------------------------------
    def _rebuild(self, r, cursor: int) -> None:
        s, e, k = r[0], r[1], runs.counts(r)
        j = int(np.searchsorted(e, cursor, side="right"))  # runs[:j] end at/before cursor
        after = [s[:j], e[:j], k[:j]]
        bs, be, bk = s[j:].copy(), e[j:], k[j:].copy()
        if len(bs) and bs[0] < cursor:  # the run under the cursor is split
            left = int(round(int(bk[0]) * (cursor - int(bs[0])) / (int(be[0]) - int(bs[0]))))
            left = min(left, int(bk[0]))
            after = [np.append(after[0], bs[0]), np.append(after[1], cursor),
                     np.append(after[2], left)]  # fmt: skip
            bs[0], bk[0] = cursor, bk[0] - left
        self.s = np.concatenate((bs, after[0]))
        self.e = np.concatenate((be, after[1]))
        self.k = np.concatenate((bk, after[2]))
        self.wrapi = len(bs)
        keep = self.k > 0
        if not keep.all():
            self.wrapi = int(np.count_nonzero(keep[: self.wrapi]))
            self.s, self.e, self.k = self.s[keep], self.e[keep], self.k[keep]
        self.c = np.cumsum(self.k)  # pages up to and including each run
        self.exact = bool(np.array_equal(self.k, self.e - self.s))
        self.total = int(self.c[-1]) if len(self.c) else 0
        self.wrap_pos = int(self.c[self.wrapi - 1]) if self.wrapi else 0
        self.pos = 0
        self.wrapped = False
        self._cursor0, self._cursor_zero = cursor, False
        self.count = self.total
        # few runs (the usual case): scalar look-ups on Python lists beat numpy calls
        small = len(self.s) <= 4096
        self._cl = self.c.tolist() if small else None
        self._sl = self.s.tolist() if small else None
        self._firsts: dict[tuple[int, bool], int] = {}
        self._nz = (self.first_at(self.nz_end, False), self.first_at(self.nz_end, True))

    def first_at(self, page: int, after_wrap: bool) -> int:
        """Scan position of the first page >= ``page`` on one side of the wrap (before
        it: from the cursor to the end of RAM; after it: from page 0); the side's end
        when there is none.  Cached until the next rebuild."""
        key = (page, after_wrap)
        hit = self._firsts.get(key)
        if hit is not None:
            return hit
        i0, i1 = (self.wrapi, len(self.s)) if after_wrap else (0, self.wrapi)
        base = int(self.c[i0 - 1]) if i0 else 0
        k = i0 + int(np.searchsorted(self.e[i0:i1], page, side="right"))
        if k >= i1:
            out = int(self.c[i1 - 1]) if i1 else base
        else:
            before = int(self.c[k - 1]) if k else 0
            s, e, n = int(self.s[k]), int(self.e[k]), int(self.k[k])
            out = before + max(0, (page - s) * n // (e - s))
        self._firsts[key] = out
        return out

    def firsts_at(self, pages: tuple[int, ...], after_wrap: bool) -> list[int]:
        """:meth:`first_at` of several pages (cached as one until the next rebuild)."""
        key = (pages, after_wrap)
        hit = self._firsts.get(key)
        if hit is None:
            hit = self._firsts[key] = [self.first_at(x, after_wrap) for x in pages]
        return hit

    def count_in(self, bounds: np.ndarray) -> np.ndarray:
        """Pages still dirty in each range ``bounds[i] = (lo, hi)`` (a density run
        counts its share)."""
        s, e, k = self.unsent()
        if not len(s):
            return np.zeros(len(bounds))
        lo, hi = bounds[:, 0][:, None], bounds[:, 1][:, None]
        ov = np.clip(np.minimum(e, hi) - np.maximum(s, lo), 0, None)
        return ov @ (k / (e - s))

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
        """The page at scan position ``x`` (in a density run: where the x-th of its pages
        would be if they were evenly spaced)."""
        if self._cl is not None:
            i = bisect_right(self._cl, x)
            off = x - (self._cl[i - 1] if i else 0)
            s = self._sl[i]
        else:
            i = int(np.searchsorted(self.c, x, side="right"))
            off = x - (int(self.c[i - 1]) if i else 0)
            s = int(self.s[i])
        if self.exact:
            return s + off
        length, n = int(self.e[i]) - s, int(self.k[i])
        return s + off * length // n

    def runs_between(self, a: int, b: int) -> runs.Runs:
        """The runs of positions ``[a, b)`` (one side of the wrap), ascending.  Exact
        sets only (XBZRLE and traces never make density runs)."""
        if b <= a:
            return runs.empty()
        i = int(np.searchsorted(self.c, a, side="right"))
        j = int(np.searchsorted(self.c, b - 1, side="right"))
        s = self.s[i : j + 1].copy()
        e = self.e[i : j + 1].copy()
        s[0] += a - (int(self.c[i - 1]) if i else 0)
        e[-1] -= int(self.c[j]) - b
        return s, e

    def pages(self, a: int, b: int) -> np.ndarray:
        """The pages at positions ``[a, b)`` (evenly spaced within density runs)."""
        if self.exact:
            return runs.to_pages(self.runs_between(a, b))
        x = np.arange(a, b, dtype=np.int64)
        i = np.searchsorted(self.c, x, side="right")
        off = x - (self.c[i] - self.k[i])
        return self.s[i] + off * (self.e[i] - self.s[i]) // self.k[i]

    # -- whole-set operations (syncs, post-copy) -------------------------------------
    def unsent(self):
        """The pages still dirty, ascending, as ``(starts, ends, counts)``."""
        if self.pos >= self.total:
            return runs.empty() + (np.empty(0, np.int64),)
        i = int(np.searchsorted(self.c, self.pos, side="right"))
        s, e, k = self.s[i:].copy(), self.e[i:], self.k[i:].copy()
        done = self.pos - (int(self.c[i - 1]) if i else 0)
        if done:
            s[0] = self.page_at(self.pos)
            k[0] -= done
        w = max(0, self.wrapi - i)  # runs before the wrap come last in page order
        order = np.concatenate((np.arange(w, len(s)), np.arange(w)))
        return s[order], e[order], k[order]

    def merge(self, log) -> int:
        """A bitmap sync: OR the guest's dirty log in; returns the pages newly dirty."""
        if not len(log[0]):
            return 0
        merged = runs.union(self.unsent(), log)
        new = max(0, runs.size(merged) - self.count)
        if new:
            self._rebuild(merged, self.cursor)
        return new

    def remove(self, pages: np.ndarray) -> None:
        """Pages sent out of scan order (post-copy faults): sorted, distinct, all dirty."""
        if not len(pages):
            return
        s, e, k = self.unsent()
        full = k == e - s
        exact = runs.difference((s[full], e[full]), runs.from_pages(pages))
        part = np.flatnonzero(~full)
        ks = k[part].copy()
        if len(part):  # a density run loses the faulted pages it holds
            i = np.searchsorted(s[part], pages, side="right") - 1
            ok = (i >= 0) & (pages < e[part][np.maximum(i, 0)])
            ks -= np.bincount(i[ok], minlength=len(part))[: len(part)]
        s2 = np.concatenate((exact[0], s[part]))
        e2 = np.concatenate((exact[1], e[part]))
        k2 = np.concatenate((exact[1] - exact[0], np.maximum(ks, 0)))
        order = np.argsort(s2, kind="stable")
        self._rebuild((s2[order], e2[order], k2[order]), self.cursor)

    def run_count(self) -> int:
        """Runs of dirty pages (post-copy's discard bitmap; a density run counts the
        gaps its pages leave)."""
        s, e, k = self.unsent()
        if not len(s):
            return 0
        full = k == e - s
        exact = int(np.count_nonzero(s[1:] != e[:-1])) + 1
        gaps = k[~full] * (1.0 - k[~full] / (e[~full] - s[~full]))
        return exact + int(gaps.sum())
