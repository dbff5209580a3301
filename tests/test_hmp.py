"""HMP 'info migrate' parser: 7.2, 8.x-10.0 and 10.1+ layouts, parameters and capabilities."""

from __future__ import annotations

import pytest

from conftest import FIXTURES
from migtune.errors import InputError
from migtune.sources import hmp, load_run, parse_text

HMP = FIXTURES / "hmp"
KiB = 1024
GiB = 1024**3


def test_real_power8_nonconverging(real_logs):
    run = load_run(real_logs / "qemu-hmp-info-migrate-power8-hugepage-nonconverging.txt")
    assert run.format == "hmp"
    assert run.status == "active"
    (s,) = run.samples
    assert s.total == 8388864 * KiB
    assert run.ram_bytes == 8388864 * KiB
    assert s.transferred == 18197383 * KiB
    assert s.remaining == 376892 * KiB
    assert s.passes == 6
    assert s.dirty_rate == 39044 * 4096
    assert s.throughput == 866.83 * 1e6 / 8
    assert s.expected_downtime == 1.475
    assert s.setup_time == 3.475
    assert s.t == 130.874
    st = run.settings
    assert st.downtime_limit == 0.3
    assert st.max_bandwidth == 9223372036853727232
    assert (st.cpu_throttle_initial, st.cpu_throttle_increment) == (20, 10)
    assert st.extra["x-checkpoint-delay"] == "200"
    assert not run.partial, run.warnings


def test_real_ppc64_completed(real_logs):
    run = load_run(real_logs / "qemu-hmp-info-migrate-ppc64-4GiB-completed.txt")
    assert run.status == "completed"
    assert run.downtime == 0.162
    assert run.ram_duration == 39.432
    (s,) = run.samples
    assert s.throughput == 270.72 * 125000
    assert s.total == 4194560 * KiB
    assert s.page_size == 4096  # derived from normal bytes / normal pages (no page size line)
    assert run.settings.capabilities == {
        "xbzrle": False,
        "rdma-pin-all": False,
        "auto-converge": False,
        "zero-blocks": False,
        "compress": False,
        "postcopy-ram": True,  # printed as x-postcopy-ram by QEMU 2.4
    }


def test_72_layout_with_xbzrle_block():
    run = load_run(HMP / "qemu-7.2-active-4GiB.txt")
    (s,) = run.samples
    assert s.status == "active" and s.t == 10.012
    assert s.transferred == 1311189 * KiB
    assert s.page_rate == 49020 * 4096
    assert s.dirty_rate is None  # no dirty pages rate line in pass 1
    assert s.precopy_bytes == 1311189 * KiB
    assert s.xbzrle is not None
    assert s.xbzrle.cache_size == 268435456
    assert s.xbzrle.bytes == 0
    assert run.settings.xbzrle_cache_size == 268435456
    assert run.settings.capabilities["xbzrle"] is True
    assert run.meta["globals"]["decompress-error-check"] == "on"


def test_82_snapshots_params_caps_and_throttle():
    run = load_run(HMP / "qemu-8.2-snapshots-autoconverge.txt")
    assert [s.t for s in run.samples] == [20.012, 28.012, 34.012, 38.012, 47.245]
    assert [s.throttle_pct for s in run.samples] == [None, 20, 30, 40, None]
    assert [s.passes for s in run.samples] == [1, 3, 4, 5, 13]
    assert run.status == "completed"
    assert run.downtime == 0.134
    st = run.settings
    assert st.capabilities["xbzrle"] is True and st.capabilities["auto-converge"] is True
    assert st.capabilities["postcopy-ram"] is False
    assert st.xbzrle_cache_size == 268435456
    assert st.max_bandwidth == 134217728
    assert st.avail_switchover_bandwidth == 0
    assert st.max_cpu_throttle == 99 and st.throttle_trigger_threshold == 50
    assert st.multifd_channels == 2
    assert st.migration_uri == "tcp:192.0.2.20:4444"
    assert [e.data["throttle_pct"] for e in run.events_of("throttle-change")] == [20, 30, 40]
    last = run.samples[-1]
    assert last.xbzrle is not None and last.xbzrle.cache_miss == 547890
    assert last.xbzrle.cache_miss_rate == 0.30
    assert last.downtime_bytes == 14745 * KiB
    assert not run.partial, run.warnings


def test_82_matches_the_qmp_run_up_to_kib_rounding():
    hmp_run = load_run(HMP / "qemu-8.2-snapshots-autoconverge.txt")
    qmp_run = load_run(FIXTURES / "qmp" / "run-4GiB-xbzrle-autoconverge.jsonl")
    by_time = {s.total_time: s for s in qmp_run.samples}
    for s in hmp_run.samples:
        q = by_time[s.total_time]
        assert s.transferred == q.transferred // KiB * KiB
        assert s.remaining == q.remaining // KiB * KiB
        assert s.passes == q.passes
        assert s.dirty_rate == q.dirty_rate or (s.dirty_rate is None and not q.dirty_rate)


def test_real_qemu_10_0_capture():
    run = load_run(HMP / "qemu-10.0.2-completed-xbzrle.txt")
    assert run.status == "completed"
    (s,) = run.samples
    assert s.downtime == 0.009 and s.total_time == 0.116
    assert s.total == 262664 * KiB
    assert s.downtime_bytes == 270 * KiB
    assert s.xbzrle is not None and s.xbzrle.cache_miss == 67
    st = run.settings
    assert st.max_bandwidth == 8388608
    assert st.downtime_limit == 0.3
    assert st.xbzrle_cache_size == 67108864
    assert st.max_postcopy_bandwidth == 0
    assert st.capabilities["auto-converge"] is True
    assert st.capabilities["mapped-ram"] is False
    assert st.extra["zero-page-detection"] == "multifd"
    assert run.meta["globals"]["send-switchover-start"] == "on"
    assert not run.partial, run.warnings


def test_101_compact_with_all():
    run = load_run(HMP / "qemu-10.1-compact-active-all.txt")
    (s,) = run.samples
    assert s.status == "active"
    assert s.t == 38.012 and s.setup_time == 0.012 and s.expected_downtime == 7.71
    assert s.throughput == 1057.27 * 125000
    assert s.page_size == 4096
    assert s.total == 4 * GiB  # size_to_str keeps three significant digits
    assert s.transferred == round(4.73 * GiB)
    assert s.remaining == 747 * 1024**2
    assert s.multifd_bytes == 0 and s.postcopy_bytes == 0
    assert (s.normal, s.duplicate) == (1055091, 349696)
    assert s.page_rate == 71029 * 4096
    assert s.dirty_rate == 53760 * 4096
    assert s.passes == 5
    assert s.throttle_pct == 40
    x = s.xbzrle
    assert x is not None
    assert (x.cache_size, x.bytes, x.pages, x.cache_miss) == (268435456, 740332348, 829969, 355699)
    assert (x.cache_miss_rate, x.encoding_rate, x.overflow) == (0.30, 4.59, 0)
    assert run.meta["globals"]["clear-bitmap-shift"] == "18"
    assert not run.partial, run.warnings


def test_101_compact_snapshots_split_at_status():
    run = load_run(HMP / "qemu-10.1-compact-snapshots.txt")
    assert [s.status for s in run.samples] == ["active", "active", "completed"]
    assert [s.t for s in run.samples] == [2.012, 22.012, 47.245]
    assert run.samples[-1].downtime == 0.134
    assert run.samples[-1].downtime_bytes == 15099494
    assert run.status == "completed" and run.downtime == 0.134


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("qemu-7.2-failed.txt", "Unable to write to socket: Connection reset by peer"),
        ("qemu-10.1-compact-failed.txt", "Unable to write to socket: Broken pipe"),
    ],
)
def test_failed_status_with_error(name, error):
    run = load_run(HMP / name)
    assert run.status == "failed"
    assert run.samples[-1].status == "failed"
    assert run.samples[-1].error == error
    assert [e.message for e in run.events_of("error")] == [error]


def test_set_parameter_during_migration_is_an_event():
    run = load_run(HMP / "qemu-8.2-downtime-raised.txt")
    assert run.settings.downtime_limit == 0.3
    assert run.settings.capabilities == {"events": True}
    (change,) = run.events_of("downtime-change")
    assert change.data["downtime_limit"] == 3.4
    assert change.t == 130.874
    assert run.status == "completed" and run.downtime == 1.688


def test_hmp_size_commands_default_to_mib():
    run = hmp.parse(
        [
            "(qemu) migrate_set_speed 64",
            "(qemu) migrate_set_downtime 0.5",
            "(qemu) migrate_set_cache_size 512M",
            "(qemu) info migrate",
            "Migration status: setup",
        ]
    )
    assert run.settings.max_bandwidth == 64 * 1024**2
    assert run.settings.downtime_limit == 0.5
    assert run.settings.xbzrle_cache_size == 512 * 1024**2
    assert run.status == "active"


def test_unknown_lines_warn_but_do_not_fail():
    run = hmp.parse(["Migration status: active", "total time: 1000 ms", "frobnication: 12 widgets"])
    assert run.partial
    assert run.warnings == ["line 3: unknown field 'frobnication'"]
    assert run.samples[0].total_time == 1.0


def test_parameters_only_is_partial():
    run = hmp.parse(["info migrate_parameters", "downtime-limit: 300 ms"])
    assert run.samples == [] and run.partial
    assert run.settings.downtime_limit == 0.3


def test_garbage_raises():
    with pytest.raises(InputError):
        parse_text("hello\nworld\n", "hmp")


def test_sniff_ignores_proxmox_status_lines():
    lines = ["2024-01-01 10:00:01 migration status: active (transferred 1, remaining 2), total 3)"]
    assert hmp.sniff(lines) == 0.0
    assert hmp.sniff(["Migration status: active", "transferred ram: 1 kbytes"]) >= 0.5


def test_sniff_compact():
    assert hmp.sniff(["Status: \t\tactive", "Time (ms): \t\ttotal=1, setup=1"]) >= 0.5


def test_blocked_reasons_compact():
    run = hmp.parse(
        [
            "(qemu) info migrate",
            "Outgoing migration blocked:",
            "  VFIO device 0000:3b:00.0 does not support migration",
            "  VFIO device 0000:3b:00.0 does not support migration",
            "Status: \t\tnone",
        ]
    )
    assert run.meta["blocked_reasons"] == ["VFIO device 0000:3b:00.0 does not support migration"]
    (err,) = run.events_of("error")
    assert err.message.startswith("migration blocked: VFIO device")
    assert run.status == "unknown" and not run.partial
