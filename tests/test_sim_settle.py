"""Ending a settled non-converging run early (``stop_when_settled``): the extrapolated
figures agree with simulating every round, and a run still on its way is left alone."""

from __future__ import annotations

import pytest

from migtune.model import Settings
from migtune.sim.api import simulate

XBZRLE = Settings(capabilities={"xbzrle": True}, xbzrle_cache_size=64 * 2**20)


def test_settled_xbzrle_run_is_extrapolated_within_a_percent():
    args = (2**30, "ws=512M,rate=200M,pattern=random,bytes=256", XBZRLE)
    kw = {"link_rate": 50e6, "time_limit": 400}
    full = simulate(*args, **kw)
    fast = simulate(*args, stop_when_settled=True, **kw)
    assert full.stats["settled_from_s"] is None
    assert fast.stats["settled_from_s"] is not None and fast.stats["settled_from_s"] < 200
    assert any(e.kind == "settled" for e in fast.run.events)
    a, b = full.outcome, fast.outcome
    assert not a.converged and not b.converged
    assert b.total_time_s == pytest.approx(a.total_time_s, rel=1e-3)
    assert b.transferred_bytes == pytest.approx(a.transferred_bytes, rel=0.01)
    assert b.passes == pytest.approx(a.passes, abs=3)
    assert b.xbzrle.pages == pytest.approx(a.xbzrle.pages, rel=0.05)


def test_run_whose_dirty_set_still_shrinks_is_not_settled():
    # auto-converge still raising the throttle: the outcome is not settled
    s = Settings(capabilities={"auto-converge": True})
    full = simulate(2**30, "ws=256M,rate=150M,pattern=random,cpu=1", s, link_rate=100e6)
    fast = simulate(
        2**30, "ws=256M,rate=150M,pattern=random,cpu=1", s, link_rate=100e6, stop_when_settled=True
    )
    assert fast.stats["settled_from_s"] is None
    assert fast.outcome.converged == full.outcome.converged
    assert fast.outcome.total_time_s == full.outcome.total_time_s
