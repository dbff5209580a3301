"""How concurrent migration streams share a link: max-min fair, caps respected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migtune.plan.link import share_link

LINK = 1000.0


def test_equal_streams_get_equal_shares():
    assert share_link(LINK, [None, None, None, None]) == [250.0] * 4


def test_one_stream_alone_gets_the_link_or_its_cap():
    assert share_link(LINK, [None]) == [LINK]
    assert share_link(LINK, [300.0]) == [300.0]


def test_what_a_capped_stream_leaves_goes_to_the_others():
    # 100 is below the equal share (333): the other two split the remaining 900
    assert share_link(LINK, [100.0, None, None]) == [100.0, 450.0, 450.0]
    # two caps below the share, the third takes the rest
    assert share_link(LINK, [100.0, 200.0, None]) == [100.0, 200.0, 700.0]


def test_caps_that_add_up_to_less_than_the_link_all_run_at_their_cap():
    assert share_link(LINK, [100.0, 200.0, 300.0]) == [100.0, 200.0, 300.0]


def test_zero_means_no_cap_as_qemu_reads_it():
    assert share_link(LINK, [0, 0]) == [500.0, 500.0]


def test_no_stream_no_rate_and_a_dead_link_is_refused():
    assert share_link(LINK, []) == []
    with pytest.raises(ValueError):
        share_link(0, [None])


@given(st.lists(st.one_of(st.none(), st.floats(1.0, 5000.0)), min_size=1, max_size=12))
def test_max_min_fair(caps):
    rates = share_link(LINK, caps)
    limits = [c if c else float("inf") for c in caps]
    # never above a cap, never more than the link, no capacity left while a stream could use it
    assert all(r <= c * (1 + 1e-9) for r, c in zip(rates, limits, strict=True))
    assert sum(rates) == pytest.approx(min(LINK, sum(limits)), rel=1e-9)
    # max-min: a stream below its cap gets at least as much as any other stream
    for r, c in zip(rates, limits, strict=True):
        if r < c * (1 - 1e-9):
            assert all(r >= other * (1 - 1e-9) for other in rates)
