"""The lab against real QEMU: small guests (256 MiB), capped links, short time limits.

Each test boots two QEMUs (about 10 s of fixed cost under TCG) and migrates once;
the whole file takes about two minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from migtune.errors import EXIT_CANCELLED
from migtune.lab.run import choose_accel, lab_run
from migtune.model import Settings
from migtune.qemu.process import live_pids
from migtune.settings import apply_assignment
from migtune.sources.recording import parse_recording
from migtune.units import MiB
from migtune.workload import parse_workload

pytestmark = pytest.mark.qemu
RAM = 256 * MiB


@pytest.fixture(scope="session")
def accel(image):
    return choose_accel(image)


def _qemu_children() -> set[int]:
    """PIDs of QEMU processes whose parent is this test process."""
    me = str(os.getpid())
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = stat[stat.rindex(")") + 2 :].split()[1]
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and comm.startswith("qemu-system"):
            found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_leftover_qemu():
    before = _qemu_children()
    yield
    assert live_pids() == [], "a QemuProcess was not stopped"
    assert _qemu_children() - before == set(), "a QEMU process outlived the test"


def _settings(*assignments: str) -> Settings:
    s = Settings()
    for a in assignments:
        s = apply_assignment(s, a)
    return s


def _run(tmp_path, image, accel, workload, settings, **kw):
    path = tmp_path / "run.jsonl"
    result = lab_run(
        RAM,
        parse_workload(workload),
        settings,
        record=path,
        accel=accel,
        image=image,
        progress=False,
        **kw,
    )
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return result, records, path


def test_below_cap_completes_with_destination_alive(tmp_path, image, accel):
    result, records, path = _run(
        tmp_path,
        image,
        accel,
        "ws=32MiB,rate=4MiB/s,pattern=random,bytes=8",
        _settings("max-bandwidth=32MiB/s"),
        time_limit=60,
        verify=True,
    )
    assert result.outcome.status == "completed" and result.outcome.converged
    assert result.differing_pages == 0  # destination RAM identical to the stopped source's
    assert result.destination_alive is True
    assert result.outcome.downtime_ms is not None and result.outcome.downtime_ms < 1000
    assert result.outcome.passes is not None and result.outcome.passes >= 2
    # the guest really wrote at about the asked rate before and during the migration
    assert result.guest_rate_before == pytest.approx(4 * MiB, rel=0.15)
    header, last = records[0], records[-1]
    assert header["origin"] == "lab"
    assert header["workload"] == "ws=32MiB,rate=1024pages/s,pattern=random,bytes=8"
    assert header["qemu_version"] and header["settings"]["max_bandwidth"] == 32 * MiB
    assert header["meta"]["lab"]["ram"] == RAM and header["meta"]["lab"]["accel"] == accel
    assert len(header["meta"]["machine"]["loadavg"]) == 3
    rates = [r for r in records if r.get("event") == "guest-rate"]
    assert rates and all(r["data"]["rate_Bps"] > 0 for r in rates)
    assert any(r["data"]["side"] == "destination" for r in rates)
    assert last["kind"] == "result" and last["status"] == "completed"
    # the recording reads back through the same parser as `migtune explain`
    run = parse_recording(path.read_text().splitlines())
    assert run.status == "completed" and run.meta["origin"] == "lab"
    assert run.events_of("guest-rate")


def test_above_cap_is_cancelled_at_time_limit_with_source_running(tmp_path, image, accel):
    result, records, _ = _run(
        tmp_path,
        image,
        accel,
        "ws=64MiB,rate=64MiB/s,pattern=random,bytes=8",
        _settings("max-bandwidth=16MiB/s"),
        time_limit=8,
    )
    assert result.outcome.status == "cancelled" and not result.outcome.converged
    assert result.migration.exit_code == EXIT_CANCELLED
    assert "time limit" in (result.migration.reason or "")
    assert result.migration.source_status == "running"
    assert result.source_alive is True
    samples = [r for r in records if r["kind"] == "sample"]
    assert samples[-1]["t"] >= 8
    # QEMU held the link near its cap: mbps of ~134 for 16 MiB/s
    mbps = [s["query-migrate"]["ram"]["mbps"] for s in samples[2:-2] if "ram" in s["query-migrate"]]
    assert mbps and max(mbps) < 16 * MiB * 8 / 1e6 * 1.2


def test_auto_converge_raises_cpu_throttle(tmp_path, image, accel):
    result, records, _ = _run(
        tmp_path,
        image,
        accel,
        "ws=32MiB,rate=64MiB/s,pattern=random,bytes=8",
        _settings("max-bandwidth=32MiB/s", "auto-converge=on"),
        time_limit=25,
    )
    throttle = [
        r["query-migrate"]["cpu-throttle-percentage"]
        for r in records
        if r["kind"] == "sample" and "cpu-throttle-percentage" in r["query-migrate"]
    ]
    assert throttle, "cpu-throttle-percentage never appeared"
    assert throttle[0] == 20  # cpu-throttle-initial
    assert max(throttle) >= 30  # raised at least once by cpu-throttle-increment
    assert result.outcome.max_throttle_pct == max(throttle)


def test_xbzrle_statistics_appear_and_move(tmp_path, image, accel):
    result, records, _ = _run(
        tmp_path,
        image,
        accel,
        "ws=32MiB,rate=32MiB/s,pattern=random,bytes=8",
        _settings("max-bandwidth=32MiB/s", "xbzrle=on", "xbzrle-cache-size=64MiB"),
        time_limit=20,
    )
    caches = [
        r["query-migrate"]["xbzrle-cache"]
        for r in records
        if r["kind"] == "sample" and "xbzrle-cache" in r["query-migrate"]
    ]
    assert caches and caches[0]["cache-size"] == 64 * MiB
    assert caches[-1]["pages"] > caches[0]["pages"]
    assert caches[-1]["bytes"] > caches[0]["bytes"]
    assert result.outcome.xbzrle is not None and result.outcome.xbzrle.pages > 0
    # 8 changed bytes per page: encoded pages are far smaller than 4 KiB
    assert caches[-1]["bytes"] / caches[-1]["pages"] < 1024


def test_proxmox_policy_doubles_downtime_limit(tmp_path, image, accel):
    result, records, _ = _run(
        tmp_path,
        image,
        accel,
        "ws=16MiB,rate=64MiB/s,pattern=random,bytes=8",
        _settings("max-bandwidth=16MiB/s", "downtime-limit=100ms"),
        policy="proxmox",
        time_limit=25,
    )
    assert records[0]["settings"]["downtime_limit"] == pytest.approx(0.1)
    changes = [
        r["data"]["params"]["downtime-limit"]
        for r in records
        if r.get("event") == "downtime-change"
    ]
    assert changes, "the downtime limit was never raised"
    assert changes == [100 * 2**i for i in range(1, len(changes) + 1)]
    # each raise follows polls in which `remaining` rose: the saw-tooth of a stuck migration
    first = next(r["t"] for r in records if r.get("event") == "downtime-change")
    rem = [
        r["query-migrate"]["ram"]["remaining"]
        for r in records
        if r["kind"] == "sample" and r["t"] <= first and "ram" in r["query-migrate"]
    ]
    assert sum(b > a for a, b in zip(rem, rem[1:], strict=False)) >= 6
    assert result.outcome.status in ("completed", "cancelled")
