"""Sets of page numbers as sorted runs ``[start, end)`` (the simulator's migration
bitmap, :class:`~migtune.sim.dirtyset.DirtySet`, and the guest's dirty log).

Why runs: a pass costs what it sends.  A 1 TiB guest's first pass is one run; a
sweeping writer dirties one or two runs per sync; a random writer with few writes
between two syncs dirties a run per page - the pages it wrote are what it costs - and
one with many is a density run (below).  Nothing here walks the guest's RAM or
working set page by page.

A run set is a pair of int64 arrays ``(starts, ends)``, ascending, disjoint and not
touching (``ends[i] < starts[i + 1]``): every page of a run is in the set.  A third
array ``counts`` makes a *density* run set: run ``i`` holds ``counts[i]`` pages
spread uniformly over ``[starts[i], ends[i])`` (which ones is not drawn).  That is how
a random writer that hits a good share of its working set is kept: one run per range
of equal density instead of one per page, so a busy guest costs a few runs per sync.
"""

from __future__ import annotations

import math

import numpy as np

Runs = tuple[np.ndarray, np.ndarray]
# more writes than this between two syncs are kept as a density run, not drawn: the
# pages then cost nothing per sync, and a random writer's pages are uniform anyway
EXACT_WRITES = 256


def empty() -> Runs:
    return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)


def counts(r) -> np.ndarray:
    """Pages in each run."""
    return r[2] if len(r) == 3 else r[1] - r[0]


def size(r) -> int:
    return int(counts(r).sum())


def is_exact(r) -> bool:
    return len(r) == 2 or bool(np.array_equal(r[2], r[1] - r[0]))


def shift(r, off: int):
    return (r[0] + off, r[1] + off) + tuple(r[2:])


def density_at(r, x: np.ndarray) -> np.ndarray:
    """Share of the pages at ``x`` that are in the set (0 outside every run)."""
    i = np.searchsorted(r[0], x, side="right") - 1
    ok = i >= 0
    ok[ok] = x[ok] < r[1][i[ok]]
    out = np.zeros(len(x))
    j = i[ok]
    out[ok] = counts(r)[j] / (r[1][j] - r[0][j])
    return out


def _union_density(a, b):
    """Union of run sets at least one of which has density runs: on each stretch
    between two boundaries, independent sets give ``1 - (1 - da)(1 - db)``."""
    pts = distinct(np.concatenate((a[0], a[1], b[0], b[1])))
    lo, hi = pts[:-1], pts[1:]
    length = hi - lo
    dens = 1.0 - (1.0 - density_at(a, lo)) * (1.0 - density_at(b, lo))
    total = np.rint(np.cumsum(length * dens)).astype(np.int64)
    k = np.diff(np.concatenate(([0], total)))
    k = np.clip(np.where(dens >= 1.0, length, k), 0, length)
    keep = k > 0
    lo, hi, k = lo[keep], hi[keep], k[keep]
    # touching exact stretches make one run (keeps sparse exact sets small)
    full = k == hi - lo
    join = np.zeros(len(lo), dtype=bool)
    join[1:] = full[1:] & full[:-1] & (lo[1:] == hi[:-1])
    heads = np.flatnonzero(~join)
    last = np.concatenate((heads[1:] - 1, [len(lo) - 1]))
    return lo[heads], hi[last], np.add.reduceat(k, heads) if len(heads) else k


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


def union(a, b):
    return union_all([a, b])


def _merge_exact(starts: np.ndarray, ends: np.ndarray) -> Runs:
    """Runs ordered by start, then a run extends the one before it when it starts at or
    before the furthest end so far."""
    order = np.argsort(starts, kind="stable")  # sorted inputs: a merge
    starts = starts[order]
    reach = np.maximum.accumulate(ends[order])
    first = np.empty(len(starts), dtype=bool)
    first[0] = True
    np.greater(starts[1:], reach[:-1], out=first[1:])
    heads = np.flatnonzero(first)
    return starts[heads], reach[np.concatenate((heads[1:] - 1, [len(starts) - 1]))]


def _disjoint(parts: list):
    """The union of run sets over disjoint ranges (a workload's populations): laid end
    to end, or None when two overlap or two exact runs touch (they would be one)."""
    parts = sorted(parts, key=lambda p: int(p[0][0]))
    for p, q in zip(parts, parts[1:], strict=False):
        end, start = int(p[1][-1]), int(q[0][0])
        if end > start:
            return None
        if end == start:
            exact_p = len(p) == 2 or int(p[2][-1]) == end - int(p[0][-1])
            exact_q = len(q) == 2 or int(q[2][0]) == int(q[1][0]) - start
            if exact_p and exact_q:
                return None
    s = np.concatenate([p[0] for p in parts])
    e = np.concatenate([p[1] for p in parts])
    if all(len(p) == 2 for p in parts):
        return s, e
    return s, e, np.concatenate([counts(p) for p in parts])


def union_all(parts: list) -> Runs:
    """Union of run sets: the exact ones in one merge, then any density ones."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return empty()
    if len(parts) > 1:
        out = _disjoint(parts)
        if out is not None:
            return out
    exact = [p for p in parts if is_exact(p)]
    dense = [p for p in parts if not is_exact(p)]
    out = empty()
    if len(exact) == 1:
        out = exact[0][:2]
    elif exact:
        out = _merge_exact(
            np.concatenate([p[0] for p in exact]), np.concatenate([p[1] for p in exact])
        )
    for p in dense:
        out = _union_density(out, p) if len(out[0]) else p
    return out


def difference(a: Runs, b: Runs) -> Runs:
    """Exact sets only."""
    if not len(a[0]) or not len(b[0]):
        return a
    return _combine(a, b, lambda x, y: x & ~y)


def overlap(a: Runs, b: Runs) -> int:
    """Pages in both."""
    if not len(a[0]) or not len(b[0]):
        return 0
    return size(_combine(a, b, np.logical_and))


def contains(r, pages: np.ndarray) -> np.ndarray:
    """Which pages are in the set; in a density run, a fixed pseudo-random share of its
    pages is (a hash of the page number against the density)."""
    dens = density_at(r, pages)
    frac = ((pages * 2654435761) % (1 << 32)) / float(1 << 32)
    return (dens >= 1.0) | (frac < dens)


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

    Up to :data:`EXACT_WRITES` writes: drawn one by one (exact runs).  Otherwise one density run: each page is
    hit with probability ``1 - (1 - 1/S)^n``, the number hit drawn (binomial), which
    pages not drawn - the cost does not grow with the working set.
    """
    span = hi - lo
    if n <= 0 or span <= 0:
        return empty()
    if n <= EXACT_WRITES:
        return from_pages(distinct(rng.integers(lo, hi, size=n, dtype=np.int64)))
    miss = math.exp(n * math.log1p(-1.0 / span)) if span > 1 else 0.0
    hit = span - int(rng.binomial(span, miss))
    if not hit:
        return empty()
    return np.array([lo], np.int64), np.array([hi], np.int64), np.array([hit], np.int64)
