"""Statistical XBZRLE pricing (sim/xbzstat.py) against the page-level engine, and the
pieces it is built from: segment plans, scan positions of pages, the cache rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from migtune.errors import InputError
from migtune.model import Settings
from migtune.sim import runs, simulate
from migtune.sim.cache import CACHED_PAGE_LIFETIME as PAGE_LEVEL_LIFETIME
from migtune.sim.cache import PageCache
from migtune.sim.dirtyset import DirtySet
from migtune.sim.plan import Plan, SegmentPlan
from migtune.sim.xbzstat import CACHED_PAGE_LIFETIME, send_to_slots, wrapped_share

MiB = 1024**2
GiB = 1024**3


def _xbz(cache: int, **kw) -> Settings:
    return Settings(xbzrle_cache_size=cache, capabilities={"xbzrle": True}, **kw)


def test_slot_rule_is_the_page_caches():
    # send_to_slots applies QEMU's lookup / insert rules as PageCache does, page for page
    rng = np.random.default_rng(3)
    slots = 64
    cache = PageCache(slots * 4096)
    owner = np.full(slots, -1, dtype=np.int64)
    age = np.zeros(slots, dtype=np.int64)
    assert CACHED_PAGE_LIFETIME == PAGE_LEVEL_LIFETIME
    for gen in range(1, 40):
        pages = np.unique(rng.integers(0, 4 * slots, size=40))
        pages = pages[np.unique(pages % slots, return_index=True)[1]]  # distinct slots
        pages.sort()
        hits_ref = cache.lookup_many(pages, gen)
        cache.commit(pages, hits_ref, gen)
        hits = send_to_slots(owner, age, pages % slots, pages, gen, True)
        assert np.array_equal(hits, hits_ref)
        assert np.array_equal(owner, cache.addr)


def test_wrapped_share_is_the_poisson_mass_on_multiples_of_256():
    def pmf(k: int, lam: float) -> float:
        return math.exp(k * math.log(lam) - lam - math.lgamma(k + 1))

    for lam in (150.0, 256.0, 700.0, 5000.0):
        exact = sum(pmf(256 * j, lam) for j in range(1, 100))
        assert wrapped_share(lam) == pytest.approx(exact, rel=0.05, abs=1e-4)
    assert wrapped_share(10.0) == 0.0


def test_segment_plan_matches_closed_form_plan():
    # one segment of whole pages then zero pages: the same sums as Plan's closed form
    plan = Plan(None, 1e8, 1e-6, n=1000, pos=0, nonzero=600, cost_nz=4104.0, cost_z=9.0)
    seg = SegmentPlan(1e8, 0, [(600, 4104.0, 1e-6, 1.0, "other"), (400, 9.0, 1e-6, 0.0, "zero")])
    for k in (0, 1, 599, 600, 601, 1000):
        assert seg.bytes_upto(k) == pytest.approx(plan.bytes_upto(k))
        assert seg.time_upto(k) == pytest.approx(plan.time_upto(k))
        assert seg.zeros(k) == plan.zeros(k)
        assert seg.fulls(k) == plan.fulls(k)
    for limit in (0.0, 5000.0, 600 * 4104.0, 600 * 4104.0 + 100, 1e9):
        assert seg.first_over_bytes(limit) == plan.first_over_bytes(limit)
    for limit in (1e-5, 0.02, 0.03, 1.0):
        assert seg.first_over_time(limit) == plan.first_over_time(limit)
    for k in (1, 5, 64, 200):
        assert seg.flush_at_or_after(k, 3, 64) == plan.flush_at_or_after(k, 3, 64)


def test_dirty_set_positions_and_counts_of_page_ranges():
    ds = DirtySet(1000, 800)
    pages = np.array([5, 6, 7, 100, 500, 501, 900], dtype=np.int64)
    ds.merge(runs.from_pages(pages))
    ds.advance(ds.count)  # everything sent once
    ds.merge(runs.from_pages(pages))
    assert ds.count_in(np.array([[0, 10], [100, 600], [0, 1000]])).tolist() == [3, 3, 7]
    # positions in scan order: the first page >= x
    at = ds.firsts_at((0, 7, 101, 900, 1000), after_wrap=True)
    assert at == [ds.first_at(x, True) for x in (0, 7, 101, 900, 1000)]


@pytest.mark.parametrize(
    ("workload", "cache", "ram", "limit"),
    [("ws=1GiB,rate=64MiB/s,pattern=random,bytes=8", GiB, 4 * GiB, 60),
     ("ws=1GiB,rate=256MiB/s,pattern=random,bytes=64", GiB // 4, 4 * GiB, 40),
     ("ws=1GiB,rate=512MiB/s,pattern=hotcold,hot=0.1,hotw=0.9,bytes=8", GiB // 16, 4 * GiB, 30),
     ("ws=1GiB,rate=300MiB/s,pattern=seq,bytes=4096", GiB // 4, 4 * GiB, 40),
     ("ws=128MiB,rate=48MiB/s,pattern=random,bytes=8", 8 * MiB, 512 * MiB, 30)],
)  # fmt: skip
def test_statistical_xbzrle_agrees_with_page_level(workload, cache, ram, limit):
    # the screening model against the reference, same run: class, time, bytes within a
    # few per cent, XBZRLE pages within a third (bench_sim.py prints the whole grid)
    s = _xbz(cache, max_bandwidth=128 * MiB)
    fast = simulate(ram, workload, s, time_limit=limit, xbzrle_pricing="statistics")
    ref = simulate(ram, workload, s, time_limit=limit, xbzrle_pricing="pages")
    assert fast.stats["xbzrle_pricing"] == "statistics"
    assert ref.stats["xbzrle_pricing"] == "pages"
    a, b = fast.outcome, ref.outcome
    assert a.converged == b.converged
    assert a.total_time_s == pytest.approx(b.total_time_s, rel=0.08)
    assert a.transferred_bytes == pytest.approx(b.transferred_bytes, rel=0.08)
    assert a.xbzrle.pages == pytest.approx(b.xbzrle.pages, rel=0.35, abs=2000)
    assert a.xbzrle.overflow == pytest.approx(b.xbzrle.overflow, rel=0.35, abs=2000)


def test_auto_pricing_by_guest_size_and_traces_stay_page_level(tmp_path):
    s = _xbz(64 * MiB, max_bandwidth=128 * MiB)
    small = simulate(512 * MiB, "ws=64MiB,rate=16MiB/s,bytes=8", s, time_limit=10)
    big = simulate(8 * GiB, "ws=2GiB,rate=16MiB/s,bytes=8", s, time_limit=10)
    assert small.stats["xbzrle_pricing"] == "pages"
    assert big.stats["xbzrle_pricing"] == "statistics"
    trace = tmp_path / "t.npz"
    np.savez(trace, t=np.linspace(0, 1, 100, endpoint=False), pages=np.arange(100))
    traced = simulate(8 * GiB, "idle", s, trace=trace, time_limit=5, xbzrle_pricing="statistics")
    assert traced.stats["xbzrle_pricing"] == "pages"
    off = simulate(8 * GiB, "ws=2GiB,rate=16MiB/s", Settings(), time_limit=5)
    assert off.stats["xbzrle_pricing"] is None
    with pytest.raises(InputError):
        simulate(512 * MiB, "idle", s, time_limit=5, xbzrle_pricing="bytes")
