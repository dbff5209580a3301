"""Each diagnosis rule on a run built by hand, and the recommendations it carries."""

from __future__ import annotations

import json

import pytest

from migtune.analysis import recommend as rec
from migtune.analysis.diagnose import diagnose
from migtune.model import Event, Run, Sample, Settings, SourceRef, Xbzrle
from migtune.outputs.jsonout import diagnosis_dict, dumps
from migtune.units import GiB, MiB


def series(rate, seconds, start=0.0, ram=4 * GiB, **extra):
    """Samples one second apart sending ``rate`` bytes/s from t=start."""
    return [
        Sample(t=start + i, status="active", transferred=int(rate * i), total=ram, **extra)
        for i in range(1, seconds + 1)
    ]


def pve(samples, status="completed", ram=4 * GiB, **kw):
    settings = kw.pop("settings", Settings(downtime_limit=0.1, migration_type="insecure"))
    run = Run(format="proxmox", samples=samples, ram_bytes=ram, status=status, vm="105",
              target="pve1", settings=settings, **kw)  # fmt: skip
    run.events.append(Event(0.0, "ram-start", "start migrate command to tcp:10.0.0.2:60000"))
    return run


def ids(run):
    return diagnose(run).ids()


def test_healthy_only_when_completed_without_warnings():
    run = pve(series(400 * MiB, 8), downtime=0.05, duration=15, ram_duration=9)
    d = diagnose(run)
    assert d.ids() == ["healthy"]
    assert d.findings[0].severity == "info"
    run.status = "active"
    assert "healthy" not in ids(run)


def test_not_converging_gives_rates_ratio_and_remedies():
    run = Run(format="hmp", status="active", ram_bytes=8 * GiB)
    run.samples = [
        Sample(t=130, status="active", transferred=18 * GiB, remaining=400_000_000, total=8 * GiB,
               throughput=100e6, dirty_rate=150e6, passes=6, expected_downtime=1.475)
    ]  # fmt: skip
    d = diagnose(run)
    f = d.get("not-converging")
    assert f.severity == "error"
    ev = f.evidence
    assert ev["dirty_rate_bytes_per_s"] == 150e6 and ev["throughput_bytes_per_s"] == 100e6
    assert ev["dirty_to_throughput_ratio"] == 1.5
    assert ev["needed_bandwidth_bytes_per_s"] == pytest.approx(187.5e6)
    assert ev["needed_downtime_limit_s"] == pytest.approx(4.0)
    settings = [r.setting for r in f.recommendations]
    assert settings[:2] == ["downtime-limit", "migration-network"]
    assert {"auto-converge", "postcopy-ram", "multifd"} <= set(settings)
    dt = f.recommendations[0]
    assert dt.commands["libvirt"] == ["virsh migrate-setmaxdowntime DOMAIN 4000"]
    assert json.loads(dt.commands["qmp"][0])["arguments"] == {"downtime-limit": 4000}
    assert "resending-dirty-memory" in d.ids() and "downtime-over-limit" in d.ids()


def test_near_convergence_is_a_warning_and_slow_guest_is_fine():
    run = Run(format="qmp", status="active", ram_bytes=GiB)
    run.samples = [
        Sample(t=5, transferred=GiB // 2, total=GiB, throughput=100e6, dirty_rate=85e6, passes=3)
    ]
    assert diagnose(run).get("not-converging").severity == "warning"
    run.samples[0].dirty_rate = 20e6
    assert "not-converging" not in ids(run)


def test_not_converging_from_proxmox_dirty_flag_without_timestamps():
    samples = [Sample(t=None, status="active", transferred=x * GiB, total=32 * GiB,
                      page_rate=36 * MiB, dirty_rate=46.4 * MiB) for x in (40, 50, 57)]  # fmt: skip
    run = pve(samples, status="active", ram=32 * GiB)
    f = diagnose(run).get("not-converging")
    assert f is not None and "upper bound" in f.evidence["throughput_basis"]


def test_bandwidth_capped_by_qemu_old_default_and_by_configured_limit():
    run = Run(format="hmp", status="completed", ram_bytes=4 * GiB, downtime=0.16)
    run.samples = [Sample(t=39.4, status="completed", transferred=GiB, throughput=33.84e6)]
    f = diagnose(run).get("bandwidth-capped")
    assert f.evidence["cap_bytes_per_s"] == 32 * MiB and "before 5.2" in f.evidence["cap_source"]
    assert json.loads(f.recommendations[0].commands["qmp"][0])["arguments"] == {"max-bandwidth": 0}
    # Proxmox never runs at QEMU's default; only its own configured limit counts.
    p = pve(series(50 * MiB, 10), settings=Settings(max_bandwidth=50 * MiB, downtime_limit=0.1))
    f = diagnose(p).get("bandwidth-capped")
    assert f.evidence["cap_source"] == "migrate_speed/bwlimit"
    p.settings.max_bandwidth = 16 * GiB
    assert "bandwidth-capped" not in ids(p)


def test_ssh_tunnel_bottleneck_only_for_secure_transport_below_ceilings():
    secure = Settings(downtime_limit=0.1, migration_type="secure", migration_uri="localhost:60000")
    run = pve(series(66 * MiB, 15, ram=GiB), ram=GiB, settings=secure)
    f = diagnose(run).get("ssh-tunnel-bottleneck")
    assert f is not None
    assert f.recommendations[0].commands["proxmox"][-1] == "migration: type=insecure,network=CIDR"
    run.settings.migration_type = "insecure"
    assert "ssh-tunnel-bottleneck" not in ids(run)
    fast = pve(series(450 * MiB, 8), settings=secure)
    assert "ssh-tunnel-bottleneck" not in ids(fast)
    gbe = pve(series(113 * MiB, 20), settings=secure, status="active")
    assert "link-bound" in ids(gbe) and "ssh-tunnel-bottleneck" not in ids(gbe)


def test_link_bound_from_steady_per_line_rate_without_timestamps():
    samples = [Sample(t=None, status="active", transferred=x, total=16 * GiB, page_rate=r)
               for x, r in ((100 * MiB, 114.9 * MiB), (3 * GiB, 112.7 * MiB))]  # fmt: skip
    run = pve(samples, status="cancelled", ram=16 * GiB)
    f = diagnose(run).get("link-bound")
    assert f.evidence["link"] == "1 GbE"
    assert f.evidence["first_pass_s"] == pytest.approx(144, abs=2)


def test_xbzrle_findings():
    xb = [Xbzrle(cache_size=4 * GiB, pages=1000 * i, bytes=10 * MiB * i, cache_miss_rate=0.9959,
                 overflow=200 * i) for i in (1, 2, 3)]  # fmt: skip
    samples = series(36 * MiB, 3, ram=32 * GiB)
    for s, x in zip(samples, xb, strict=True):
        s.xbzrle = x
    run = pve(samples, status="active", ram=32 * GiB)
    d = diagnose(run)
    small = d.get("xbzrle-cache-too-small")
    assert small.evidence["xbzrle_cache_miss_rate"] == 0.9959
    grow = small.recommendations[0]
    assert grow.commands["libvirt"] == ["virsh migrate-compcache DOMAIN --size 8589934592"]
    assert grow.commands["proxmox"] == [] and "RAM/10" in grow.notes["proxmox"]
    ovf = d.get("xbzrle-overflow")
    assert ovf.evidence["xbzrle_overflow"] == 600 and ovf.evidence["overflow_rising"]


def test_downtime_over_limit_completed_and_expected():
    done = pve(series(400 * MiB, 5), downtime=0.9)
    f = diagnose(done).get("downtime-over-limit")
    assert f.evidence["downtime_s"] == 0.9 and f.evidence["downtime_limit_s"] == 0.1
    done.downtime = 0.12  # a little over the limit is normal
    assert "downtime-over-limit" not in ids(done)
    live = Run(format="qmp", status="active")
    live.samples = [
        Sample(t=10, transferred=10, remaining=1, expected_downtime=4.0, throughput=20e3)
    ]
    f = diagnose(live).get("downtime-over-limit")
    assert f.evidence["limit_stated"] is False and f.evidence["downtime_limit_s"] == 0.3
    assert f.evidence["needed_downtime_limit_s"] == 4.0  # stalled: QEMU's estimate, not hours


def test_downtime_increased_proxmox_and_nova():
    run = pve(series(36 * MiB, 5), status="active")
    for ms in (200, 400, 800):
        run.events.append(Event(3, "downtime-change", f"auto-increased downtime to continue migration: {ms} ms",
                                {"downtime_limit": ms / 1000, "auto": True}))  # fmt: skip
    f = diagnose(run).get("downtime-increased")
    assert f.evidence["increases"] == 3 and f.evidence["final_limit_s"] == 0.8
    assert f.recommendations == []  # still running: 0.8 s is not proven to be enough
    run.status, run.downtime = "completed", 0.7
    f = diagnose(run).get("downtime-increased")
    assert f.recommendations[0].commands["proxmox"] == ["qm set 105 --migrate_downtime 0.8"]
    nova = Run(format="nova", status="unknown")
    for i in range(8):
        ms = int(714 + 612 * i)
        nova.events.append(Event(300.0 * i, "downtime-change", f"downtime limit {ms} ms",
                                 {"downtime_limit": ms / 1000, "elapsed": 300.0 * i}))  # fmt: skip
    d = diagnose(nova)
    assert d.status == "active" and d.warnings
    ev = d.get("downtime-increased").evidence
    assert ev["increases"] == 7 and ev["delay_between_steps_s"] == 300
    assert ev["inferred_live_migration_downtime_steps"] == 7
    assert ev["inferred_live_migration_downtime_ms"] == 5000


def test_zero_pages_and_slow_target_start():
    run = Run(format="hmp", status="completed", downtime=0.1)
    run.samples = [Sample(t=10, status="completed", duplicate=900, normal=100, throughput=1e9)]
    assert "zero-pages-dominate" in ids(run)
    slow = pve(series(400 * MiB, 8), downtime=0.05)
    slow.events[:0] = [
        Event(-20, "target-start", "starting VM"),
        Event(-5, "tunnel", "start remote tunnel"),
    ]
    f = diagnose(slow).get("slow-target-start")
    assert f.evidence["target_start_s"] == 15 and f.severity == "warning"


def test_failures_cancel_machine_type_device_state():
    lines = [
        "2025-11-28 14:01:09 [pve2] Installed QEMU version '8.1.2' is too old to run ",
        "machine type 'pc-i440fx-9.0+pve0', please upgrade node 'pve2'",
        "2025-11-28 14:01:09 ERROR: online migrate failure - remote command failed with exit code 255",
    ]
    run = Run(format="proxmox", status="failed", lines=lines)
    run.events = [Event(0, "error", "online migrate failure - remote command failed with exit code 255",
                        source=SourceRef(3, lines[2]))]  # fmt: skip
    d = diagnose(run)
    assert d.ids()[:2] == ["migration-failed", "machine-type-mismatch"]
    mt = d.get("machine-type-mismatch").evidence
    assert mt == {
        "target_qemu_version": "8.1.2",
        "machine_type": "pc-i440fx-9.0+pve0",
        "target_node": "pve2",
    }
    dev = Run(format="proxmox", status="failed")
    dev.events = [
        Event(
            1, "target-output", "[pve2] qemu: check_section_footer: Read section footer failed: -5"
        )
    ]
    assert {"device-state-error", "migration-failed"} <= set(ids(dev))
    cancel = pve(series(113 * MiB, 20, ram=16 * GiB), status="cancelled", ram=16 * GiB)
    cancel.events.append(Event(21, "cancelled", "online migrate failure - interrupted by signal"))
    f = diagnose(cancel).get("cancelled")
    assert f.severity == "info" and "operator" in f.summary


def test_stalled_migration():
    run = Run(format="qmp", status="active")
    run.samples = [Sample(t=10, transferred=10, remaining=168_550_400, throughput=22680.0)]
    f = diagnose(run).get("throughput-stalled")
    assert f.severity == "error" and f.evidence["seconds_left_at_this_rate"] == pytest.approx(
        7431.7
    )


def test_recommendation_helpers():
    assert rec.nice_seconds(3.5618) == 3.6
    assert rec.nice_seconds(0.31) == 0.35
    assert rec.nice_seconds(14.2) == 15
    assert rec.nice_mib(150 * MiB) == 152
    assert rec.target_of(Run(format="libvirt", vm="web1")).domain == "web1"
    assert rec.target_of(Run(format="proxmox", vm="105")).vmid == "105"
    assert rec.target_of(Run(format="proxmox", vm="105")).domain == "DOMAIN"
    bw = rec.bandwidth(200 * MiB, rec.Target("7"), "test")
    assert bw.commands["proxmox"][0] == "qm set 7 --migrate_speed 200"
    assert "bwlimit: migration=204800" in bw.commands["proxmox"][1]
    assert bw.commands["libvirt"] == ["virsh migrate-setspeed DOMAIN 200"]
    assert "no post-copy" in rec.postcopy(rec.Target()).notes["proxmox"]
    assert "--parallel-connections 8" in rec.multifd(rec.Target(), 8).commands["libvirt"][0]


def test_json_contract_keys_and_finite_numbers():
    run = Run(format="hmp", status="active", ram_bytes=8 * GiB)
    run.samples = [Sample(t=130, status="active", transferred=18 * GiB, remaining=400_000_000,
                          total=8 * GiB, throughput=100e6, dirty_rate=150e6, passes=6)]  # fmt: skip
    data = json.loads(dumps(diagnosis_dict(diagnose(run))))
    assert {
        "format",
        "status",
        "metrics",
        "findings",
        "partial",
        "warnings",
        "migtune_version",
    } <= set(data)
    assert set(data["metrics"]) >= {
        "ram_bytes", "transferred_bytes", "duration_s", "downtime_ms", "throughput_bytes_per_s",
        "dirty_rate_bytes_per_s", "xbzrle_cache_miss_rate", "passes",
    }  # fmt: skip
    assert data["metrics"]["time_to_converge_s"] is None  # infinite -> null
    finding = data["findings"][0]
    assert set(finding) >= {"id", "severity", "summary", "evidence", "recommendations"}
    for r in finding["recommendations"]:
        assert set(r["commands"]) >= {"proxmox", "libvirt", "qmp"} and "notes" in r
