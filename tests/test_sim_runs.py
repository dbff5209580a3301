"""Run sets and the scan-ordered migration bitmap (fast, no simulation)."""

from __future__ import annotations

import numpy as np
import pytest

from migtune.sim import runs
from migtune.sim.dirtyset import DirtySet


def _random_pages(rng, n):
    return np.unique(rng.integers(0, n, size=int(rng.integers(0, n))))


def test_run_set_operations_match_numpy_sets():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 200))
        a, b = _random_pages(rng, n), _random_pages(rng, n)
        ra, rb = runs.from_pages(a), runs.from_pages(b)
        u = runs.union(ra, rb)
        assert np.array_equal(runs.to_pages(u), np.union1d(a, b))
        assert (u[0][1:] > u[1][:-1]).all()  # disjoint and not touching
        assert np.array_equal(runs.to_pages(runs.difference(ra, rb)), np.setdiff1d(a, b))
        assert runs.overlap(ra, rb) == len(np.intersect1d(a, b))
        assert np.array_equal(runs.contains(ra, np.arange(n)), np.isin(np.arange(n), a))
        assert np.array_equal(runs.distinct(np.concatenate([a, b])), np.union1d(a, b))


def test_density_union_is_independent_union():
    half = (np.array([0]), np.array([1000]), np.array([500]))
    quarter = (np.array([500]), np.array([1500]), np.array([250]))
    u = runs.union(half, quarter)
    # 250 + 500 x (1 - 0.5 x 0.75) + 125 pages
    assert runs.size(u) == pytest.approx(250 + 312.5 + 125, abs=1)
    exact = runs.from_pages(np.array([1200, 1201, 1202]))
    assert runs.size(runs.union(half, exact)) == 503


def test_uniform_hits_expected_count():
    rng = np.random.default_rng(0)
    span, n = 100_000, 150_000  # 1 - e^-1.5 of the pages
    got = [runs.size(runs.uniform_hits(rng, 10, 10 + span, n)) for _ in range(20)]
    assert np.mean(got) == pytest.approx(span * (1 - np.exp(-n / span)), rel=0.01)
    few = runs.uniform_hits(rng, 0, span, 100)  # drawn page by page
    assert runs.is_exact(few) and 90 <= runs.size(few) <= 100


def test_dirty_set_scans_circularly_from_the_cursor():
    ds = DirtySet(100, nonzero_end=60)
    a, b, ran_off = ds.take(30)
    assert (a, b, ran_off) == (0, 30, False) and ds.nonzero(a, b) == 30
    ds.advance(30)
    a, b, ran_off = ds.take(1000)
    assert (a, b, ran_off) == (30, 100, True)  # up to the end of RAM
    assert ds.nonzero(a, b) == 30  # pages 30..59 non-zero, 60..99 zero
    ds.advance(10)  # cursor at page 40
    # a sync: pages 5 and 70 written (70 is still dirty: not new)
    assert ds.merge(runs.from_pages(np.array([5, 70]))) == 1
    assert ds.cursor == 40 and ds.count == 61
    a, b, ran_off = ds.take(1000)  # 40..99 before the wrap, then page 5
    assert (b - a, ran_off) == (60, True)
    ds.advance(60)
    ds.on_wrap()
    assert ds.take(1000)[1] - ds.take(1000)[0] == 1 and ds.page_at(ds.pos) == 5
    ds.advance(1)
    assert ds.count == 0


def test_dirty_set_removes_out_of_order_pages():
    ds = DirtySet(64, nonzero_end=64)
    ds.remove(np.array([3, 4, 40]))
    assert ds.count == 61
    assert runs.to_pages(ds.unsent()[:2]).tolist()[:4] == [0, 1, 2, 5]
    assert ds.run_count() == 3


def test_density_runs_place_pages_evenly():
    ds = DirtySet(1000, nonzero_end=1000)
    ds.advance(1000)
    ds.on_wrap()
    dense = (np.array([100]), np.array([200]), np.array([25]))
    assert ds.merge(dense) == 25
    pages = ds.pages(0, 25)
    assert pages.tolist() == [ds.page_at(x) for x in range(25)]
    assert pages[0] == 100 and pages[-1] < 200 and (np.diff(pages) == 4).all()


def test_small_density_union_is_the_numpy_one(monkeypatch):
    # the Python-list union for a few runs gives exactly the numpy one's runs
    rng = np.random.default_rng(5)

    def rand_set():
        k = int(rng.integers(1, 8))
        pts = np.sort(rng.choice(1000, size=2 * k, replace=False)).astype(np.int64)
        s, e = pts[0::2], pts[1::2]
        if rng.random() < 0.5:
            return s, e, np.array([int(rng.integers(1, x + 1)) for x in e - s], np.int64)
        return s, e

    for _ in range(500):
        a, b = rand_set(), rand_set()
        if len(a) == 2 and len(b) == 2:
            continue
        small = runs._union_density_small(a, b)
        monkeypatch.setattr(runs, "SMALL_UNION", -1)
        big = runs._union_density(a, b)
        monkeypatch.undo()
        assert all(np.array_equal(x, y) for x, y in zip(small, big, strict=True))


def test_coalesce_joins_touching_runs_of_equal_density_only():
    s = np.arange(0, 4000, 100, dtype=np.int64)
    e = s + 100
    k = np.full(len(s), 50, dtype=np.int64)
    k[10] = 20  # a different density: a run of its own
    k[20] = 100  # full: exact, never joined
    out = runs.coalesce((s, e, k))
    assert runs.size(out) == int(k.sum())
    assert out[0].tolist() == [0, 1000, 1100, 2000, 2100]
    few = (s[:5], e[:5], k[:5])
    assert runs.coalesce(few) is few  # few runs are left as they are
