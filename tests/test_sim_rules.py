"""Each simulator rule with hand-worked numbers (sections of docs/qemu-migration.md in the docstrings)."""

from __future__ import annotations

import numpy as np
import pytest

from migtune.errors import InputError
from migtune.sim import rules
from migtune.sim.cache import PageCache, distinct_slot_runs
from migtune.sim.workloads import throttled_rate

V72, V100, V101 = (7, 2), (10, 0), (10, 1)
MiB = 1024**2


def test_threshold_default_cap_and_downtime():
    # 128 MiB/s cap: each 100 ms window carries ≈ 13 421 772 bytes -> 134217.72 B/ms
    budget = rules.window_budget(128 * MiB)
    assert budget == 13421772
    bw = rules.window_bandwidth(budget, 100)
    assert bw == pytest.approx(134217.72)
    thr = rules.switchover_threshold(bw, 300)
    assert thr == 40265316  # ≈ 40.27 MB ≈ 9830 pages
    assert thr // 4096 == 9830


def test_threshold_avail_switchover_bandwidth_only_from_8_2():
    assert rules.switchover_bandwidth(5000.0, 1_000_999, (8, 2)) == 1000.0  # integer / 1000
    assert rules.switchover_bandwidth(5000.0, 1_000_999, V72) == 5000.0
    assert rules.switchover_bandwidth(5000.0, 0, V100) == 5000.0


def test_rate_limit_strict_and_unlimited():
    assert not rules.rate_exceeded(100, 100)
    assert rules.rate_exceeded(101, 100)
    assert not rules.rate_exceeded(10**12, rules.window_budget(0))


def test_mbps_is_decimal_megabits():
    assert rules.window_mbps(3355443, 100) == pytest.approx(268.43544)


def test_expected_downtime_needs_rate_and_traffic():
    assert rules.expected_downtime_ms(40_000_000, 33554.4, 0, 3_000_000) is None
    assert rules.expected_downtime_ms(40_000_000, 33554.4, 100, 10_000) is None
    assert rules.expected_downtime_ms(40_000_000, 33554.4, 100, 10_001) == 1192


def test_sync_trigger_is_strict():
    assert rules.sync_due(999, 1000)
    assert not rules.sync_due(1000, 1000)
    assert not rules.sync_due(0, 0)  # threshold 0 before the first window closes


@pytest.mark.parametrize(
    ("pending", "threshold", "v72", "v101"),
    [
        (0, 0, True, True),  # empty bitmap completes at once
        (1000, 1000, False, True),  # equality: only 10.1+
        (999, 1000, True, True),
        (1001, 1000, False, False),
        (4096, 0, False, False),  # downtime-limit 0: only an empty bitmap
    ],
)
def test_completion_predicate_by_version(pending, threshold, v72, v101):
    assert rules.completion_ready(pending, threshold, V72) is v72
    assert rules.completion_ready(pending, threshold, V100) is v72
    assert rules.completion_ready(pending, threshold, V101) is v101
    assert not rules.completion_ready(pending, threshold, V101, can_switchover=False)


def test_rate_period_and_dirty_rate():
    assert not rules.rate_period_elapsed(2000, 1000)  # exactly 1000 ms: not yet
    assert rules.rate_period_elapsed(2001, 1000)
    assert rules.dirty_pages_rate(12345, 3500, 1000) == 4938  # 12345 * 1000 // 2500


def test_throttle_trigger():
    hit, thresh = rules.throttle_condition(60_000_000, 100_000_000, 50)
    assert (hit, thresh) == (True, 50_000_000)
    assert rules.throttle_condition(50_000_000, 100_000_000, 50) == (False, 50_000_000)


def test_throttle_steps_default_sequence():
    seq, cur = [], 0
    for _ in range(11):
        cur = rules.throttle_step(cur, 2, 1)
        seq.append(cur)
    assert seq == [20, 30, 40, 50, 60, 70, 80, 90, 99, 99, 99]


def test_throttle_tailslow():
    # at 40 %: cpu_now 60, ideal = trunc(60 * 50/60) = 50, step min(10, 10) = 10
    assert rules.throttle_step(40, 60, 50, tailslow=True) == 50
    # dirtying only slightly too fast: ideal = trunc(60 * 57/60) = 57, step 3
    assert rules.throttle_step(40, 60, 57, tailslow=True) == 43
    assert rules.throttle_step(95, 1000, 1, tailslow=True) == 99


def test_forced_sync_only_92_plus_with_autoconverge():
    assert rules.forced_sync_due((9, 2), True, 2, False)
    assert not rules.forced_sync_due((9, 1), True, 2, False)
    assert not rules.forced_sync_due(V100, False, 2, False)
    assert not rules.forced_sync_due(V100, True, 1, False)  # first pass excluded
    assert not rules.forced_sync_due(V100, True, 3, True)


def test_wire_costs():
    assert rules.normal_page_cost() == 4104
    assert rules.zero_page_cost() == 9
    assert rules.xbzrle_page_cost(10) == 21
    assert rules.xbzrle_page_cost(0) == 0
    assert rules.multifd_page_cost(True, version=V100) == pytest.approx(10.5)
    assert rules.multifd_page_cost(True, version=V72) == 9
    assert rules.multifd_page_cost(False) == pytest.approx(4106.5)


def test_transferred_counter_by_version():
    assert not rules.transferred_counts_all_bytes(V72)
    assert not rules.transferred_counts_all_bytes((8, 1))
    assert rules.transferred_counts_all_bytes((8, 2))


def test_parse_version():
    assert rules.parse_version("10.0.2") == (10, 0)
    assert rules.parse_version("7.2") == (7, 2)
    assert rules.parse_version("9") == (9, 0)
    with pytest.raises(InputError):
        rules.parse_version("ten")


def test_throttle_share_and_writers():
    assert rules.throttle_cpu_share(20) == pytest.approx(0.8)
    # CPU-bound: keeps 1 - p
    assert throttled_rate(None, 100_000, 50, False) == pytest.approx(50_000)
    # rate-bound at 16k pages/s, banking 20 ms: untouched up to p = 2/3
    assert throttled_rate(16_000, 100_000, 60, False, burst=0.02) == pytest.approx(16_000)
    # at 90 %: cycle 100 ms, 10 ms run + 20 ms banked -> 30 % of the rate
    assert throttled_rate(16_000, 100_000, 90, False, burst=0.02) == pytest.approx(4_800)
    # the lab dirtier banks 10 ms (dirtier.c): at 50 % (cycle 20 ms) it keeps all of its
    # rate, at 75 % (cycle 40 ms) 20/40
    assert throttled_rate(16_000, 100_000, 50, False) == pytest.approx(16_000)
    assert throttled_rate(16_000, 100_000, 75, False) == pytest.approx(8_000)
    # catching up: only the CPU share limits it
    assert throttled_rate(16_000, 100_000, 90, True) == pytest.approx(10_000)


def test_cache_direct_mapped_and_freshness():
    c = PageCache(4 * 4096)  # 4 slots
    assert not c.is_cached(1, 5)
    assert c.insert(1, 5)
    assert c.is_cached(1, 5)
    # page 5 maps to slot 1 too: refused while the occupant is young (age 5 + 2 > 6)
    assert not c.insert(5, 6)
    assert c.is_cached(1, 6)  # a hit refreshes the age to 6
    assert not c.insert(5, 7)
    assert c.insert(5, 8)  # 6 + 2 <= 8: replaced
    assert not c.is_cached(1, 8) and c.is_cached(5, 8)
    assert c.insert(5, 8)  # same address: overwritten


def test_cache_vectorised_matches_scalar():
    rng = np.random.default_rng(3)
    a, b = PageCache(64 * 4096), PageCache(64 * 4096)
    for gen in range(1, 30):
        addrs = np.unique(rng.integers(0, 1000, size=60))
        for piece in distinct_slot_runs(addrs, a.items):
            chunk = addrs[piece]
            hits = a.lookup_many(chunk, gen)
            a.commit(chunk, hits, gen)
            for x in chunk:
                if not b.is_cached(int(x), gen):
                    b.insert(int(x), gen)
        assert np.array_equal(a.addr, b.addr) and np.array_equal(a.age, b.age)


def test_cache_size_must_be_power_of_two():
    with pytest.raises(InputError):
        PageCache(3 * 4096)
    assert PageCache(64 * MiB).items == 16384


def test_distinct_slot_runs():
    addrs = np.array([0, 3, 5, 8, 9, 17])
    runs = distinct_slot_runs(addrs, 8)
    for sl in runs:
        piece = addrs[sl]
        assert len(set(piece % 8)) == len(piece)
    assert sum(len(addrs[s]) for s in runs) == len(addrs)
