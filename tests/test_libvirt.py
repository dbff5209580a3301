"""virsh domjobinfo parser: running, completed, failed, cancelled, rawstats, transcripts."""

from __future__ import annotations

import pytest

from conftest import FIXTURES
from migtune.errors import InputError
from migtune.sources import libvirt, load_run, parse_text

LV = FIXTURES / "libvirt"
KiB, MiB, GiB = 1024, 1024**2, 1024**3


def test_snapshots_of_a_non_converging_guest():
    run = load_run(LV / "domjobinfo-8GiB-not-converging.txt")
    assert run.format == "libvirt"
    assert run.status == "active"
    assert not run.partial, run.warnings
    assert [s.t for s in run.samples] == [33.874, 63.874, 93.874, 130.874]
    assert [s.passes for s in run.samples] == [2, 3, 4, 6]
    # the first `date` stamp (10:00:30 UTC) minus the job's 33.874 s elapsed
    assert run.t0 == pytest.approx(1767607230.0 - 33.874)
    last = run.samples[-1]
    assert last.transferred == round(17.354 * GiB)
    assert last.remaining == round(368.059 * MiB)
    assert last.total == 8 * GiB
    assert last.throughput == 103.334 * MiB
    assert last.dirty_rate == 39044 * 4096
    assert last.page_size == 4096
    assert last.duplicate == 1678265 and last.normal == 4536795
    assert last.normal_bytes == round(17.306 * GiB)
    assert last.expected_downtime == 1.475 and last.setup_time == 3.475
    assert last.postcopy_requests == 0
    assert run.meta["libvirt"]["operation"] == "Outgoing migration"
    assert run.ram_bytes == 8 * GiB


def test_completed_with_compression():
    run = load_run(LV / "domjobinfo-completed-xbzrle.txt")
    assert run.status == "completed"
    (s,) = run.samples
    assert s.downtime == 0.19 and run.downtime == 0.19
    assert s.expected_downtime is None
    assert run.meta["libvirt"]["downtime_net"] == 0.134
    assert run.meta["libvirt"]["time_elapsed_net"] == 47.245
    x = s.xbzrle
    assert x is not None
    assert x.cache_size == 256 * MiB
    assert x.bytes == round(1.062 * GiB)
    assert x.pages == 1278414 and x.cache_miss == 547890 and x.overflow == 0
    assert x.cache_miss_rate is None and x.encoding_rate is None  # not knowable from counts
    assert run.settings.capabilities == {"xbzrle": True}
    assert run.settings.xbzrle_cache_size == 256 * MiB
    assert run.ram_duration == 47.301


def test_running_with_storage_and_throttle():
    run = load_run(LV / "domjobinfo-storage-autoconverge.txt")
    (s,) = run.samples
    assert s.throttle_pct == 40
    assert s.disk_total == 20 * GiB and s.disk_transferred == 10 * GiB
    assert s.disk_remaining == 10 * GiB
    assert run.meta["libvirt"]["disk_bps"] == 120 * MiB
    assert s.dirty_rate == 53760 * 4096
    assert run.settings.capabilities == {"xbzrle": True, "auto-converge": True}
    assert [e.data["throttle_pct"] for e in run.events_of("throttle-change")] == [40]


def test_failed_with_error_message():
    run = load_run(LV / "domjobinfo-failed.txt")
    assert run.status == "failed"
    (s,) = run.samples
    assert s.error == "operation failed: migration out job: unexpectedly failed"
    assert s.expected_downtime == 9.813
    assert [e.message for e in run.events_of("error")] == [s.error]
    assert not run.partial, run.warnings


def test_cancelled_transcript():
    run = load_run(LV / "domjobinfo-cancelled.txt")
    assert [s.status for s in run.samples] == ["active", "cancelled"]
    assert run.status == "cancelled"
    assert [s.t for s in run.samples] == [28.41, 32.011]
    (abort,) = run.events_of("cancelled")
    assert abort.t == 28.41
    assert run.samples[1].throughput is None  # omitted by virsh when 0
    assert not run.partial, run.warnings


def test_rawstats():
    run = load_run(LV / "domjobinfo-rawstats.txt")
    assert run.status == "active"
    (s,) = run.samples
    assert s.transferred == 18634120192
    assert s.remaining == 385937408
    assert s.total == 8590196736
    assert s.throughput == 108353750.0
    assert s.dirty_rate == 39044 * 4096
    assert s.passes == 6
    assert s.expected_downtime == 1.475  # rawstats 'downtime' of a running job
    assert s.normal_bytes == 18582712320
    assert run.meta["libvirt"]["operation"] == "Outgoing migration"
    assert not run.partial, run.warnings


def test_rawstats_completed_downtime():
    run = libvirt.parse(["Job type: 3", "time_elapsed: 5000", "downtime: 42", "memory_total: 1024"])
    assert run.status == "completed"
    assert run.samples[0].downtime == 0.042
    assert run.samples[0].expected_downtime is None


def test_transcript_commands_set_settings_or_events():
    run = libvirt.parse(
        [
            "$ virsh migrate-setmaxdowntime vm 500",
            "$ virsh migrate --live --auto-converge --compressed --bandwidth 800 vm qemu+ssh://b/system",
            "$ virsh domjobinfo vm",
            "Job type:         Unbounded",
            "Time elapsed:     1000         ms",
            "Memory total:     1.000 GiB",
            "$ virsh migrate-setmaxdowntime vm 2000",
            "$ virsh migrate-setspeed vm 1000",
        ]
    )
    st = run.settings
    assert st.downtime_limit == 0.5
    assert st.max_bandwidth == 800 * MiB
    assert st.capabilities == {"auto-converge": True, "xbzrle": True}
    (dt,) = run.events_of("downtime-change")
    assert dt.data == {"downtime_limit": 2.0} and dt.t == 1.0
    (bw,) = run.events_of("bandwidth-change")
    assert bw.data == {"max_bandwidth": 1000 * MiB}


def test_job_none_and_garbage():
    run = libvirt.parse(["Job type:         None        "])
    assert run.samples == [] and run.status == "unknown" and run.partial
    with pytest.raises(InputError):
        parse_text("totally unrelated\ntext here\n", "libvirt")


def test_bad_values_warn():
    run = libvirt.parse(["Job type: Unbounded", "Memory total: lots", "Iteration: 3"])
    assert run.partial
    assert run.samples[0].passes == 3
    assert any("Memory total" in w for w in run.warnings)


def test_sniff_not_on_proxmox():
    assert (
        libvirt.sniff(["2025-11-14 21:47:58 migration active, transferred 1.1 GiB of 4.0 GiB"]) == 0
    )
    assert libvirt.sniff(["Job type:         Unbounded", "Memory total: 8.000 GiB"]) >= 0.5


def test_kubevirt_launcher_records():
    run = load_run(LV / "kubevirt-launcher-completed.log")
    assert run.format == "libvirt"
    assert run.status == "completed"
    assert run.vm == "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
    assert [s.t for s in run.samples] == [4.012, 28.012, 46.012]
    assert run.t0 == pytest.approx(1767607204.030 - 4.012)
    s = run.samples[1]
    assert s.transferred == 3835 * MiB and s.remaining == 1240 * MiB and s.total == 4098 * MiB
    assert s.throughput == 1070 * 125000
    assert s.dirty_rate == 2516 * 125000  # already bytes/s, converted to Mbps by KubeVirt
    assert s.passes == 3 and s.expected_downtime == 12.0
    assert s.normal_bytes == 3584 * MiB
    assert [e.kind for e in run.events_of("migration-start", "completed")] == [
        "migration-start",
        "completed",
    ]
    assert run.events_of("migration-start")[0].t == pytest.approx(0.002)
    assert run.events_of("completed")[0].t == pytest.approx(47.462)
    assert run.meta["kubevirt"]["data_total"] == 4098 * MiB
    assert not run.partial, run.warnings


def test_kubevirt_plain_info_line_and_failure():
    run = libvirt.parse(
        [
            "Migration info for vmi-1: TimeElapsed:2000ms MemoryProcessed:10MiB "
            "MemoryRemaining:90MiB MemoryTotal:100MiB Iteration:1 ExpectedDowntime:300ms",
            "Live migration failed.",
        ]
    )
    assert run.status == "failed"
    assert run.samples[0].total == 100 * MiB and run.samples[0].t == 2.0
    assert run.events_of("error")[0].t == 2.0


def test_every_domjobinfo_label_is_understood():
    block = """Job type:         Bounded
Operation:        Outgoing migration
Time elapsed:     5000         ms
Time elapsed w/o network: 4990         ms
Time remaining:   1000         ms
Data processed:   1.000 GiB
Data remaining:   1.000 GiB
Data total:       2.000 GiB
Memory processed: 512.000 MiB
Memory remaining: 512.000 MiB
Memory total:     1.000 GiB
Memory bandwidth: 100.000 MiB/s
Dirty rate:       1000         pages/s
Page size:        4096         bytes
Iteration:        2
Postcopy requests: 0
File processed:   512.000 MiB
File remaining:   512.000 MiB
File total:       1.000 GiB
File bandwidth:   50.000 MiB/s
Constant pages:   10
Normal pages:     20
Normal data:      80.000 KiB
Expected downtime: 300          ms
Downtime w/o network: 290          ms
Setup time:       10           ms
Compression cache: 64.000 MiB
Compressed data:  1.500 MiB
Compressed pages: 300
Compression cache misses: 40
Compression overflows: 1
Auto converge throttle: 20
Temporary disk space use: 0.000 B
Temporary disk space total: 0.000 B
Error message:    none so far
"""
    run = libvirt.parse(block.splitlines())
    assert run.warnings == [] and not run.partial
    (s,) = run.samples
    assert s.status == "active" and s.t == 5.0
    assert (s.transferred, s.remaining, s.total) == (512 * MiB, 512 * MiB, GiB)
    assert s.throughput == 100 * MiB and s.dirty_rate == 1000 * 4096
    assert (s.disk_transferred, s.disk_remaining, s.disk_total) == (512 * MiB, 512 * MiB, GiB)
    assert (s.duplicate, s.normal, s.normal_bytes) == (10, 20, 80 * KiB)
    assert s.expected_downtime == 0.3 and s.setup_time == 0.01
    assert s.xbzrle is not None
    assert (s.xbzrle.cache_size, s.xbzrle.bytes, s.xbzrle.pages) == (
        64 * MiB,
        round(1.5 * MiB),
        300,
    )
    assert (s.xbzrle.cache_miss, s.xbzrle.overflow) == (40, 1)
    assert s.throttle_pct == 20 and s.error == "none so far"
    meta = run.meta["libvirt"]
    assert meta["time_remaining"] == 1.0 and meta["time_elapsed_net"] == 4.99
    assert meta["data_total"] == 2 * GiB and meta["disk_bps"] == 50 * MiB
    assert meta["downtime_net"] == 0.29
