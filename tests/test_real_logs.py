"""Every real log in tests/fixtures/real is parsed, explained and diagnosed as its README says.

The expectations come from ``tests/fixtures/real/README.md`` (what a good diagnosis says)
and each file's ``# outcome:`` header; the numbers are worked out from the logs themselves.
"""

from __future__ import annotations

import pytest

from migtune.analysis.diagnose import diagnose
from migtune.analysis.explain import explain
from migtune.outputs.jsonout import diagnosis_dict, dumps
from migtune.sources import load_run
from migtune.units import GiB, MiB

# file -> (format, status, findings that must be there, findings that must not be)
EXPECTED = {
    "proxmox-blog-pve4-glusterfs-vm104-completed.txt": (
        "proxmox", "completed", {"healthy"}, {"ssh-tunnel-bottleneck", "slow-target-start"},
    ),
    "proxmox-blog-pve3-secure-ssh-tunnel-64MBps.txt": (
        "proxmox", "completed", {"ssh-tunnel-bottleneck"}, {"healthy", "link-bound"},
    ),
    "proxmox-github-pve8-ha-diskless-4GiB-completed.txt": (
        "proxmox", "completed", {"healthy"}, {"ssh-tunnel-bottleneck", "slow-target-start"},
    ),
    "proxmox-runbook-ceph-16GiB-manual-cancel.txt": (
        "proxmox", "cancelled", {"cancelled", "link-bound"}, {"migration-failed", "not-converging"},
    ),
    "proxmox-blog-machine-type-too-new-failure.txt": (
        "proxmox", "failed", {"machine-type-mismatch", "migration-failed"}, {"not-converging"},
    ),
    "qemu-hmp-info-migrate-power8-hugepage-nonconverging.txt": (
        "hmp", "active", {"not-converging", "resending-dirty-memory", "downtime-over-limit"},
        {"bandwidth-capped"},
    ),
    "qemu-hmp-info-migrate-ppc64-4GiB-completed.txt": (
        "hmp", "completed", {"bandwidth-capped"}, {"healthy", "not-converging"},
    ),
    "nova-compute-downtime-steps-4GiB.txt": ("nova", "active", {"downtime-increased"}, set()),
    "fcqemu-query-migrate-debug-partial.txt": (
        "qmp", "active", {"throughput-stalled", "downtime-over-limit", "zero-pages-dominate"},
        {"not-converging", "healthy"},
    ),
}  # fmt: skip


def test_every_real_log_has_an_expectation(real_logs):
    on_disk = {p.name for p in real_logs.glob("*.txt")}
    assert on_disk == set(EXPECTED), "add the new log to EXPECTED"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_log_diagnosis(real_logs, name):
    fmt, status, present, absent = EXPECTED[name]
    run = load_run(real_logs / name)
    d = diagnose(run)
    assert (d.format, d.status) == (fmt, status)
    ids = set(d.ids())
    assert present <= ids, f"missing {present - ids}; got {sorted(ids)}"
    assert not (absent & ids), f"unexpected {absent & ids}"
    dumps(diagnosis_dict(d))  # JSON-serialisable, no NaN/Infinity
    x = explain(run)
    assert sum(1 for ln in x.lines if ln.notes) >= 1


def diag(real_logs, name):
    return diagnose(load_run(real_logs / name))


def test_pve3_ssh_rate_is_measured_from_deltas(real_logs):
    d = diag(real_logs, "proxmox-blog-pve3-secure-ssh-tunnel-64MBps.txt")
    m = d.metrics
    # ~65-70 MB/s from the transferred counters (the log's "64.00 MB/s" is RAM MB / 16 s).
    assert 64 * MiB < m.throughput < 70 * MiB
    assert m.duration_s == 21 and m.ram_duration_s == 16 and m.downtime_ms == pytest.approx(54)
    f = d.get("ssh-tunnel-bottleneck")
    assert "type=insecure" in " ".join(f.recommendations[0].commands["proxmox"])


def test_pve8_healthy_numbers(real_logs):
    m = diag(real_logs, "proxmox-github-pve8-ha-diskless-4GiB-completed.txt").metrics
    assert m.ram_bytes == 4 * GiB and m.downtime_ms == pytest.approx(73)
    assert 300 * MiB < m.throughput < 340 * MiB  # real rate, below the 243-587 MiB/s page rates
    assert m.page_rate_max > m.throughput
    assert m.orchestration_s == 9 and m.target_start_s == 4


def test_ceph_cancel_is_link_bound_1gbe(real_logs):
    d = diag(real_logs, "proxmox-runbook-ceph-16GiB-manual-cancel.txt")
    link = d.get("link-bound").evidence
    assert link["link"] == "1 GbE"
    assert 140 <= link["first_pass_s"] <= 150  # 16 GiB at ~113 MiB/s
    assert d.get("cancelled").severity == "info"


def test_power8_convergence_numbers(real_logs):
    d = diag(real_logs, "qemu-hmp-info-migrate-power8-hugepage-nonconverging.txt")
    ev = d.get("not-converging").evidence
    assert ev["dirty_to_throughput_ratio"] == pytest.approx(1.48, abs=0.01)
    assert ev["dirty_rate_bytes_per_s"] == pytest.approx(152.5 * MiB, rel=0.01)
    assert ev["throughput_bytes_per_s"] == pytest.approx(103.3 * MiB, rel=0.01)
    # The author needed ~3.4 s; remaining / throughput says 3.56 s -> recommend 3.6 s.
    assert ev["needed_downtime_limit_s"] == pytest.approx(3.56, abs=0.01)
    cmd = d.get("not-converging").recommendations[0].commands["qmp"][0]
    assert '"downtime-limit": 3600' in cmd
    assert d.metrics.passes == 6 and d.metrics.sent_ratio == pytest.approx(2.17, abs=0.01)


def test_ppc64_capped_at_old_default(real_logs):
    d = diag(real_logs, "qemu-hmp-info-migrate-ppc64-4GiB-completed.txt")
    ev = d.get("bandwidth-capped").evidence
    assert ev["cap_bytes_per_s"] == 32 * MiB and ev["ratio"] == pytest.approx(1.01, abs=0.01)
    assert d.metrics.downtime_ms == pytest.approx(162)


def test_nova_steps_match_the_formula(real_logs):
    ev = diag(real_logs, "nova-compute-downtime-steps-4GiB.txt").get("downtime-increased").evidence
    assert ev["initial_limit_s"] == 0.714 and ev["final_limit_s"] == 4.998
    assert ev["step_s"] == pytest.approx(0.612) and ev["delay_between_steps_s"] == 300
    assert ev["inferred_live_migration_downtime_ms"] == 5000


def test_fcqemu_page_rate_versus_mbps(real_logs):
    d = diag(real_logs, "fcqemu-query-migrate-debug-partial.txt")
    m = d.metrics
    assert m.throughput == pytest.approx(0.18144e6 / 8)
    assert m.page_rate_max == 2500 * 4096
    assert d.get("downtime-over-limit").evidence["expected_downtime_s"] == 4.0
    assert d.partial
