"""Derived numbers (analysis.metrics) on runs built by hand."""

from __future__ import annotations

import math

import pytest

from migtune.analysis.metrics import (
    compute,
    count_remaining_jumps,
    event_downtime_limit,
    interval_rates,
    link_match,
    storage_window,
    target_start_duration,
)
from migtune.model import Event, Run, Sample, Settings, Xbzrle
from migtune.units import GiB, MiB


def proxmox_run(points, ram=4 * GiB, page_rate=900 * MiB, ram_start=0.0, status="active"):
    run = Run(format="proxmox", ram_bytes=ram, status=status)
    run.events.append(Event(ram_start, "ram-start", "start migrate command to unix:/x"))
    for t, x in points:
        run.samples.append(
            Sample(t=t, status="active", transferred=x, total=ram, page_rate=page_rate)
        )
    return run


def test_throughput_comes_from_transferred_deltas_not_page_rate():
    # 100 MiB/s on the wire while the per-line (zero-page inflated) rate says 900 MiB/s.
    run = proxmox_run([(1, 100 * MiB), (2, 200 * MiB), (3, 300 * MiB), (5, 500 * MiB)])
    m = compute(run)
    assert m.throughput == pytest.approx(100 * MiB)
    assert m.throughput_source == "transferred-deltas"
    assert m.page_rate_max == 900 * MiB
    assert m.throughput_min == pytest.approx(100 * MiB)


def test_span_uses_ram_start_as_origin_with_nothing_sent():
    run = proxmox_run([(4, 400 * MiB)], ram_start=0.0)
    assert compute(run).throughput == pytest.approx(100 * MiB)


def test_interval_rates_skip_same_second_lines():
    samples = [
        Sample(t=0, transferred=0),
        Sample(t=2, transferred=200),
        Sample(t=2, transferred=260),
        Sample(t=4, transferred=460),
    ]
    # The second t=2 line adds no interval; the next one is measured from the first t=2 line.
    rates = [iv.rate for iv in interval_rates(samples)]
    assert rates == [100, 130]


def test_qemu_mbps_used_when_no_time_series():
    run = Run(format="hmp", status="active")
    run.samples.append(Sample(t=10, transferred=GiB, total=8 * GiB, throughput=108e6))
    m = compute(run)
    assert m.throughput == 108e6 and m.throughput_source == "qemu-mbps"


def test_dirty_rate_ignores_qemu_zero_before_first_measurement():
    run = Run(format="qmp", status="active")
    run.samples = [
        Sample(t=1, transferred=10, throughput=1e6, dirty_rate=0.0, passes=1),
        Sample(t=2, transferred=20, throughput=1e6, dirty_rate=5e6, passes=2),
        Sample(t=3, transferred=30, throughput=1e6, dirty_rate=7e6, passes=3),
    ]
    m = compute(run)
    assert m.dirty_reports == 2
    assert m.dirty_rate == pytest.approx(7e6)  # median of the recent half
    assert m.dirty_rate_max == 7e6
    assert m.passes == 3 and m.passes_source == "dirty-sync-count"


def test_passes_inferred_from_remaining_jumps():
    samples = [
        Sample(t=0, transferred=0, remaining=1000 * MiB, total=GiB),
        Sample(t=1, transferred=400 * MiB, remaining=600 * MiB, total=GiB),
        Sample(t=2, transferred=1000 * MiB, remaining=5 * MiB, total=GiB),
        Sample(t=3, transferred=1010 * MiB, remaining=300 * MiB, total=GiB),  # sync: pass 2
        Sample(t=4, transferred=1300 * MiB, remaining=20 * MiB, total=GiB),
        Sample(t=5, transferred=1320 * MiB, remaining=200 * MiB, total=GiB),  # pass 3
    ]
    assert count_remaining_jumps(samples) == 2
    run = Run(format="proxmox", samples=samples, ram_bytes=GiB, status="active")
    m = compute(run)
    assert m.passes == 3 and m.passes_source == "remaining-jumps"
    assert m.sent_ratio == pytest.approx(1320 / 1024)
    assert m.passes_at_least == 2


def test_needed_downtime_and_time_to_converge():
    run = Run(format="hmp", status="active")
    run.samples.append(
        Sample(t=100, transferred=16 * GiB, remaining=400e6, total=8 * GiB, throughput=100e6,
               dirty_rate=150e6, passes=6, expected_downtime=1.4)
    )  # fmt: skip
    m = compute(run)
    assert m.needed_downtime_s == pytest.approx(4.0)
    assert m.dirty_ratio == pytest.approx(1.5)
    assert math.isinf(m.time_to_converge_s)
    assert m.expected_downtime_s == 1.4


def test_time_to_converge_in_first_pass_uses_rest_of_ram():
    run = proxmox_run([(1, 1 * GiB), (2, 2 * GiB)], ram=10 * GiB)
    m = compute(run)
    assert m.throughput == pytest.approx(GiB)
    assert m.time_to_converge_s == pytest.approx(8.0)
    assert m.first_pass_s == pytest.approx(10.0)


def test_xbzrle_rates_and_cumulative_fallback():
    run = Run(format="proxmox", status="active")
    run.samples = [
        Sample(t=1, transferred=1, xbzrle=Xbzrle(cache_miss_rate=0.5, overflow=10, pages=100)),
        Sample(t=2, transferred=2, xbzrle=Xbzrle(cache_miss_rate=0.9959, overflow=1300, pages=900)),
    ]
    m = compute(run)
    assert m.xbzrle_cache_miss_rate == 0.9959
    assert (m.xbzrle_overflow_first, m.xbzrle_overflow) == (10, 1300)
    virsh = Run(format="libvirt", status="active")
    virsh.samples = [Sample(t=1, xbzrle=Xbzrle(cache_miss=300, pages=100))]
    mv = compute(virsh)
    assert mv.xbzrle_cache_miss_rate == pytest.approx(0.75)
    assert mv.xbzrle_miss_rate_cumulative


def test_zero_page_share_needs_final_counters():
    # Completed, but the last progress line is not the end: the share is unknown.
    run = proxmox_run([(1, GiB)], ram=4 * GiB, status="completed")
    assert compute(run).zero_page_share is None
    run.events.append(Event(2, "completed", "migration completed", {"transferred": GiB}))
    assert compute(run).zero_page_share == pytest.approx(0.75)
    hmp = Run(format="hmp", status="completed")
    hmp.samples = [Sample(t=1, duplicate=700, normal=300, status="completed")]
    assert compute(hmp).zero_page_share == pytest.approx(0.7)


def test_link_bands():
    assert link_match(113 * MiB)[0] == "1 GbE"
    assert link_match(103.3 * MiB) is None  # the real POWER8 log: not at a ceiling
    assert link_match(1.2e9)[0] == "10 GbE"
    assert link_match(None) is None


@pytest.mark.parametrize(
    "event, expected",
    [
        (Event(0, "downtime-change", "x", {"downtime_limit": 0.4}), 0.4),
        (Event(0, "downtime-change", "auto-increased downtime to continue migration: 800 ms"), 0.8),
        (Event(0, "downtime-change", "Increasing downtime to 1326 ms after 300 sec"), 1.326),
        (Event(0, "settings", "migrate_set_downtime: 0.1"), 0.1),
        (Event(0, "settings", "nothing here"), None),
    ],
)
def test_event_downtime_limit(event, expected):
    assert event_downtime_limit(event) == expected


def test_target_start_and_orchestration():
    run = Run(format="proxmox", duration=18, ram_duration=9.0, status="completed")
    run.events = [
        Event(0, "migration-start", "starting migration"),
        Event(0, "target-start", "starting VM 105 on remote node 'pve1'"),
        Event(0, "target-output", "[pve1] a warning"),
        Event(4, "tunnel", "start remote tunnel"),
    ]
    assert target_start_duration(run) == 4
    m = compute(run)
    assert m.target_start_s == 4 and m.orchestration_s == 9


def test_settings_limits_and_changes():
    run = Run(format="proxmox", settings=Settings(downtime_limit=0.1, max_bandwidth=50 * MiB))
    run.events = [
        Event(5, "downtime-change", "auto-increased downtime to continue migration: 200 ms"),
        Event(9, "downtime-change", "auto-increased downtime to continue migration: 400 ms"),
    ]
    m = compute(run)
    assert (m.downtime_limit_s, m.downtime_limit_final_s) == (0.1, 0.4)
    assert len(m.downtime_changes) == 2 and m.max_bandwidth == 50 * MiB


def test_storage_window_ends_with_the_last_mirror_line_before_ram():
    run = Run(format="proxmox")
    run.events = [
        Event(4, "storage-start", "starting storage migration"),
        Event(5, "storage-progress", "drive-scsi0: transferred 1 GiB of 32 GiB"),
        Event(44, "storage-progress", "drive-scsi0: transferred 32 GiB of 32 GiB, ready"),
        Event(4, "storage-ready", "all 'mirror' jobs are ready"),  # unstamped: lags behind
        Event(45, "ram-start", "starting online/live migration on unix:/x"),
        Event(60, "storage-ready", "all 'mirror' jobs are ready"),  # after RAM: not the copy
    ]
    assert storage_window(run) == (4, 44)
    assert compute(run).storage_s == 40
