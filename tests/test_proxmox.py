"""The Proxmox VE task-log source: real logs, bundled examples, synthetic fixtures, outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import EXAMPLES, FIXTURES, REAL_LOGS
from migtune.model import EVENT_KINDS, Run
from migtune.sources import parse_text, proxmox, split_header_comments
from migtune.sources.proxmox_lines import ASSUMED_YEAR
from migtune.units import GiB, MiB

PROXMOX_FIXTURES = FIXTURES / "proxmox"
EXAMPLE_FILES = sorted(EXAMPLES.glob("proxmox-*.log"))


def _real(name: str) -> Path:
    return REAL_LOGS / name


def _parse(path: Path) -> Run:
    return parse_text(path.read_text(encoding="utf-8"), "proxmox", name=str(path))


# --- the real logs in tests/fixtures/real ------------------------------------------------


def test_pve8_ha_diskless_completed():
    run = _parse(_real("proxmox-github-pve8-ha-diskless-4GiB-completed.txt"))
    assert run.format == "proxmox"
    assert (run.status, run.partial, run.warnings) == ("completed", False, [])
    assert run.ram_bytes == 4 * GiB
    assert run.downtime == pytest.approx(0.073)
    assert run.duration == 18
    assert run.ram_duration == 9  # 00:34:29 start migrate command -> 00:34:38 completed
    assert (run.vm, run.target) == ("105", "pve1")
    assert len(run.samples) == 8
    first, last = run.samples[0], run.samples[-1]
    assert first.t == 6.0 and first.transferred == round(357.9 * MiB)
    assert first.page_rate == pytest.approx(586.6 * MiB) and first.throughput is None
    assert last.transferred == round(2.5 * GiB) and last.status == "active"
    s = run.settings
    assert s.downtime_limit == pytest.approx(0.1)
    assert s.xbzrle_cache_size == 512 * MiB
    assert s.capabilities == {"auto-converge": True, "xbzrle": True}
    assert s.extra["capabilities_source"] == "proxmox-default"
    assert s.max_bandwidth == 16 * GiB and s.extra["max_bandwidth_source"] == "proxmox-default"
    assert s.migration_type == "secure"
    assert s.migration_uri == "unix:/run/qemu-server/105.migrate"
    assert s.migration_network == "10.10.1.1"
    assert run.meta["ha"] is True
    assert run.meta["pve_format"] == "new"
    assert run.meta["average_speed"] == pytest.approx(457.0 * MiB)
    assert run.meta["average_speed_meaning"] == "ram-total-per-second"
    assert run.t0 is not None and run.events_of("task-start")[0].t is None  # before any stamp
    assert [e.kind for e in run.events][-2:] == ["finished", "finished"]


def test_pve3_ssh_tunnel_old_format_elided():
    run = _parse(_real("proxmox-blog-pve3-secure-ssh-tunnel-64MBps.txt"))
    assert run.status == "completed"
    assert run.partial and any("elided" in w for w in run.warnings)
    assert run.ram_bytes == 1082789888
    assert run.downtime == pytest.approx(0.054)
    assert run.duration == 21
    assert run.ram_duration == 16  # 1024 MB / 16 s = the logged 64.00 MB/s
    assert len(run.samples) == 4
    assert [s.remaining for s in run.samples] == [930062336, 788221952, 20889600, 11558912]
    assert all(s.total == 1082789888 for s in run.samples)
    assert run.settings.max_bandwidth == 8589934592
    assert run.settings.downtime_limit == pytest.approx(0.1)
    assert run.settings.migration_type == "secure"
    assert run.settings.migration_uri == "localhost:60000"
    assert run.settings.capabilities == {}  # no caps line before qemu-server 4.0-79
    assert run.meta["pve_format"] == "old"
    assert run.meta["year_assumed"] == ASSUMED_YEAR
    assert run.meta["average_speed_meaning"] == "configured-memory-per-second"
    assert run.meta["pve_version"] == "<=3.4"  # "successfuly"


def test_pve4_glusterfs_no_progress_lines():
    run = _parse(_real("proxmox-blog-pve4-glusterfs-vm104-completed.txt"))
    assert (run.status, run.partial) == ("completed", False)
    assert run.samples == []
    assert (run.downtime, run.duration, run.ram_duration) == (pytest.approx(0.015), 10, 2)
    # 256.00 MB/s x 2 s: the configured memory, the only RAM figure in this log
    assert run.ram_bytes == 512 * MiB
    assert run.meta["configured_memory"] == 512 * MiB
    assert (run.vm, run.target) == ("104", "proxmox02")


def test_runbook_cancelled_without_dates():
    run = _parse(_real("proxmox-runbook-ceph-16GiB-manual-cancel.txt"))
    assert run.status == "cancelled"
    assert run.meta["cancelled_by"] == "operator"
    assert run.partial  # '...' and no task footer
    assert run.t0 is None and all(s.t is None for s in run.samples)
    assert len(run.samples) == 2
    assert run.ram_bytes == 16 * GiB
    assert run.samples[-1].transferred == round(3.1 * GiB)
    assert run.settings.xbzrle_cache_size == 2 * GiB
    assert run.duration is None and run.downtime is None
    assert run.meta["timestamps"] == "removed"
    assert run.events_of("cancelled")


def test_machine_type_failure_multiline():
    run = _parse(_real("proxmox-blog-machine-type-too-new-failure.txt"))
    assert run.status == "failed"
    assert run.partial
    out = run.events_of("target-output")
    assert len(out) == 1 and out[0].data["node"] == "pve2"
    assert "too old to run machine type 'pc-i440fx-9.0+pve0'" in out[0].message
    assert out[0].source.line == 5 and "\n" in out[0].source.text
    assert run.meta["target_qemu_version"] == "8.1.2"
    assert run.meta["machine_type"] == "pc-i440fx-9.0+pve0"
    assert run.meta["reason"] == "remote command failed with exit code 255"
    assert run.samples == []


# --- the bundled examples ---------------------------------------------------------------------


def test_example_not_converging():
    run = _parse(EXAMPLES / "proxmox-32GiB-not-converging.log")
    assert (run.status, run.partial) == ("cancelled", False)
    assert run.ram_bytes == 32 * GiB
    assert run.duration == 1631 and run.ram_duration == 1625
    assert len(run.samples) == 325
    assert all(s.throughput is None for s in run.samples)
    assert run.samples[-1].transferred == round(57.2 * GiB)
    assert run.samples[-1].dirty_rate == pytest.approx(46.4 * MiB)
    sample_406 = next(s for s in run.samples if s.transferred == round(40.6 * GiB))
    assert sample_406.page_rate == 36175872 and sample_406.dirty_rate is None
    xb = next(s.xbzrle for s in run.samples if s.xbzrle and s.xbzrle.pages == 9810)
    assert xb.bytes == round(7.2 * MiB) and xb.overflow == 1300
    assert xb.cache_miss_rate == pytest.approx(0.9959) and xb.cache_size == 4 * GiB
    changes = run.events_of("downtime-change")
    assert [e.data["downtime_limit"] for e in changes] == [0.2, 0.4, 0.8, 1.6]
    assert run.meta["auto_increase_count"] == 4 and run.meta["final_downtime_limit"] == 1.6
    assert run.meta["problems"] is True
    # self-consistent numbers: transferred deltas / time stay within the stated link rates
    active = [s for s in run.samples if s.transferred and s.status == "active"]
    rate = (active[-1].transferred - active[0].transferred) / (active[-1].t - active[0].t)
    assert 32.6 * MiB < rate < 39.9 * MiB


def test_example_insecure_10gbe():
    run = _parse(EXAMPLES / "proxmox-16GiB-insecure-10GbE-completed.log")
    assert (run.status, run.partial) == ("completed", False)
    assert run.settings.migration_type == "insecure"
    assert run.settings.migration_uri == "tcp:10.20.0.12:60000"
    assert run.settings.migration_network == "10.20.0.12"
    assert (run.downtime, run.duration, run.ram_duration) == (pytest.approx(0.038), 18, 11)
    done = run.samples[-1]
    assert done.status == "completed" and done.transferred == round(10.4 * GiB)
    assert done.downtime == pytest.approx(0.038) and done.total == 16 * GiB
    assert run.meta["transferred_final"] == round(10.4 * GiB)
    assert run.meta["pve_version"] == ">=8.4"


def test_example_local_disk_mirror():
    run = _parse(EXAMPLES / "proxmox-8GiB-local-disk-mirror-completed.log")
    assert (run.status, run.partial) == ("completed", False)
    assert run.meta["storage_migration"] is True
    assert run.meta["local_disks"] == ["local-lvm:vm-120-disk-0"]
    progress = run.events_of("storage-progress")
    assert len(progress) == 40
    assert progress[0].data["total"] == 32 * GiB and progress[0].data["elapsed"] == 1
    assert progress[-1].data["ready"] and progress[-1].data["percent"] == 100.0
    # mirror lines carry no stamp: t = mirror start (09:15:06 = t 4) + elapsed
    assert progress[0].t == 5 and progress[-1].t == 44
    assert len(run.events_of("storage-ready")) == 3
    assert run.ram_duration == 14 and run.meta["ram_start"] == 45


def test_example_pre64_xbzrle():
    run = _parse(EXAMPLES / "proxmox-4GiB-pre64-xbzrle-completed.log")
    assert (run.status, run.partial) == ("completed", False)
    assert run.ram_bytes == 4312604672 and len(run.samples) == 28
    assert all(s.xbzrle is not None for s in run.samples)
    last = run.samples[-1]
    assert (last.remaining, last.xbzrle.pages, last.xbzrle.cache_miss) == (0, 132949, 362059)
    assert last.xbzrle.cache_size == 512 * MiB and last.xbzrle.overflow == 1175
    assert run.settings.xbzrle_cache_size == 536870912
    assert [e.data["downtime_limit"] for e in run.events_of("downtime-change")] == [0.2]
    assert run.settings.downtime_limit == pytest.approx(0.1)  # the initial value stays
    assert run.meta["pve_format"] == "old"


def test_example_broken_pipe():
    run = _parse(EXAMPLES / "proxmox-8GiB-broken-pipe-failed.log")
    assert (run.status, run.partial) == ("failed", False)
    assert run.meta["reason"] == "Unable to write to socket: Broken pipe"
    assert run.settings.max_bandwidth == 300 * MiB
    assert run.ram_duration == 24 and run.duration == 30 and run.downtime is None
    err = run.events_of("error")[0]
    assert err.data["error"] == "Unable to write to socket: Broken pipe"


# --- synthetic fixtures for the remaining templates -------------------------------------------


def test_fixture_pve9_remote_vfio_device():
    run = _parse(PROXMOX_FIXTURES / "pve9-remote-vfio-device.log")
    assert (run.status, run.partial) == ("completed", False)
    assert run.settings.migration_type == "websocket"
    assert run.settings.max_bandwidth == 50 * MiB
    assert run.settings.downtime_limit == 2000.0
    assert run.downtime == pytest.approx(0.912)
    statuses = [s.status for s in run.samples]
    assert statuses == ["active", "active", "device", "completed"]
    assert run.samples[0].vfio_bytes == 12 * MiB
    assert run.samples[1].dirty_rate == pytest.approx(61.5 * MiB)
    assert run.samples[1].xbzrle.cache_miss_rate == 0.0  # omitted when zero
    assert run.samples[2].vfio_bytes == round(300.5 * MiB)
    assert run.samples[3].vfio_bytes == round(300.5 * MiB)
    assert run.events_of("status")[0].data["status"] == "setup"
    assert run.meta["pve_version"] == ">=9.1"
    assert run.events_of("warning")


def test_fixture_pve6_replication_old_mirror():
    run = _parse(PROXMOX_FIXTURES / "pve6-replication-old-mirror.log")
    assert (run.status, run.partial) == ("completed", False)
    assert run.meta["unrecognised_lines"] == 0
    assert len(run.events_of("replication")) >= 10
    mirror = run.events_of("storage-progress")
    assert mirror[0].data == {
        "job": "drive-scsi1",
        "transferred": 104857600,
        "remaining": 968884224,
        "total": 1073741824,
        "percent": 9.77,
        "busy": True,
        "ready": False,
    }
    assert run.events_of("storage-start")[-1].data["bwlimit"] == 102400 * 1024
    assert run.settings.max_bandwidth == 104857600
    assert run.settings.xbzrle_cache_size == 268435456
    assert run.settings.migration_type == "insecure"
    assert run.meta["pve_version"] == "6.1-6.3"
    assert run.ram_duration == 21


def test_fixture_failures():
    run = _parse(PROXMOX_FIXTURES / "pve-failures.log")
    assert run.status == "failed"
    assert run.meta["reason"] == "unable to parse migration status 'device' - aborting"
    assert run.meta["ha"] is True
    assert run.settings.downtime_limit == 1000.0
    assert run.events_of("target-output")[0].data["node"] == "pve-y"
    assert len(run.events_of("warning")) == 2  # set-parameters error, query failure
    assert run.meta["unrecognised_lines"] == 0
    # GUI chrome lines leave no events
    assert not any(e.message in ("()", "Stop", "Download") for e in run.events)


@pytest.mark.parametrize("path", EXAMPLE_FILES + sorted(PROXMOX_FIXTURES.glob("*.log")), ids=str)
def test_every_line_known_and_kinds_valid(path):
    run = _parse(path)
    assert run.meta["unrecognised_lines"] == 0
    assert {e.kind for e in run.events} <= set(EVENT_KINDS)
    assert proxmox.sniff(split_header_comments(path.read_text().splitlines())[0]) > 0.9


_S = "2025-02-02 10:00:0"


@pytest.mark.parametrize(
    "body,status,reason",
    [
        (
            [
                f"{_S}0 starting migration of VM 5 to node 'b' (10.0.0.2)",
                f"{_S}1 ERROR: migration aborted (duration 00:00:01): can't migrate VM which uses local devices: hostpci0",
                "TASK ERROR: migration aborted",
            ],
            "failed",
            "can't migrate VM which uses local devices: hostpci0",
        ),
        (
            [
                f"{_S}0 start migrate command to unix:/run/qemu-server/5.migrate",
                f"{_S}2 migration status error: cancelled",
                f"{_S}2 ERROR: online migrate failure - aborting",
                "TASK ERROR: migration problems",
            ],
            "cancelled",
            "QEMU reported migration status 'cancelled'",
        ),
        (
            [
                f"{_S}0 start migrate command to unix:/run/qemu-server/5.migrate",
                f"{_S}3 ERROR: migration aborted (duration 00:00:03): interrupted by signal",
                "TASK ERROR: migration aborted",
            ],
            "cancelled",
            "interrupted by signal",
        ),
        (
            [f"{_S}0 start migrate command to tcp:10.0.0.2:60000", f"{_S}1 migrate_cancel"],
            "cancelled",
            "migrate_cancel issued",
        ),
        (
            [
                f"{_S}0 starting migration of VM 5 to node 'b' (10.0.0.2)",
                "TASK ERROR: command failed",
            ],
            "failed",
            "command failed",
        ),
        (
            [
                f"{_S}0 start migrate command to tcp:10.0.0.2:60000",
                f"{_S}1 ERROR: received interrupt - delayed",
            ],
            "cancelled",
            "interrupt received (the task was stopped)",
        ),
    ],
)
def test_outcomes(body, status, reason):
    run = proxmox.parse(body)
    assert run.status == status
    assert run.meta["reason"] == reason


def test_prepare_failure_has_duration_and_no_ram_phase():
    run = proxmox.parse(
        [
            f"{_S}0 starting migration of VM 5 to node 'b' (10.0.0.2)",
            f"{_S}1 ERROR: migration aborted (duration 00:00:01): Can't connect to destination address using public key",
            "TASK ERROR: migration aborted",
        ]
    )
    assert (run.status, run.duration, run.ram_duration, run.partial) == ("failed", 1, None, False)
    assert run.settings.migration_type is None and run.samples == []


def test_old_insecure_uri_and_speed_line():
    run = proxmox.parse(
        [
            "Mar 03 10:00:00 starting online/live migration on 192.168.0.5:60000",
            "Mar 03 10:00:07 migration speed: 73.14 MB/s - downtime 20 ms",
            "Mar 03 10:00:07 migration status: completed",
        ]
    )
    assert run.settings.migration_type == "insecure"
    assert run.ram_duration == 7 and run.ram_bytes == 512 * MiB  # 73.14 MB/s x 7 s
    assert run.status == "completed" and run.partial  # no task footer
