"""Diagnosis aware of the settings in force: no advice to switch on what was on, the next
step when auto-converge already throttles hard, and re-sent memory measured against what
one pass over RAM explains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migtune.analysis import recommend as rec
from migtune.analysis.diagnose import diagnose
from migtune.model import Run, Sample, Settings
from migtune.outputs.jsonout import diagnosis_dict
from migtune.sources import load_run, parse_text
from migtune.units import GiB, MiB

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "tests" / "fixtures" / "lab"
PLATFORMS = ("proxmox", "libvirt", "qmp")


def settings_of(finding):
    return [r.setting for r in finding.recommendations]


def all_recs(d):
    return [r for f in d.findings for r in f.recommendations]


# -- resending-dirty-memory ----------------------------------------------------------------
PROXMOX_EXCERPT = """\
2025-06-12 14:28:57 migration active, transferred 40.4 GiB of 32.0 GiB VM-state, 36.9 MiB/s
2025-06-12 14:29:02 migration active, transferred 40.5 GiB of 32.0 GiB VM-state, 38.3 MiB/s
2025-06-12 14:29:07 migration active, transferred 40.6 GiB of 32.0 GiB VM-state, 36.1 MiB/s
"""


def test_proxmox_excerpt_above_ram_while_active_reports_resent_bytes():
    d = diagnose(parse_text(PROXMOX_EXCERPT))
    assert d.status == "active"
    f = d.get("resending-dirty-memory")
    assert f is not None and f.severity == "info"  # 1.27x RAM: below the warning level
    ev = f.evidence
    assert ev["one_pass_basis"] == "ram"  # Proxmox does not log zero pages
    assert ev["resent_bytes"] == pytest.approx(8.6 * GiB, rel=0.01)
    assert "sent so far" in f.summary and "8.6 GiB" in f.summary
    data = diagnosis_dict(d)
    dumped = next(x for x in data["findings"] if x["id"] == "resending-dirty-memory")
    assert dumped["evidence"]["resent_bytes"] == ev["resent_bytes"]


def qmp_run(sent_ratio, *, zero_share=None, ram=4 * GiB, status="completed"):
    """A run whose last active sample had 70 MB left, then completed at sent_ratio x RAM."""
    zero = None if zero_share is None else int(ram * zero_share) // 4096
    active = Sample(t=30, status="active", transferred=int(ram * sent_ratio) - 70_000_000,
                    remaining=70_000_000, total=ram, throughput=125e6, duplicate=zero,
                    normal=1000 if zero is not None else None)  # fmt: skip
    done = Sample(t=31, status=status, transferred=int(ram * sent_ratio), total=ram,
                  duplicate=zero, normal=1000 if zero is not None else None)  # fmt: skip
    return Run(format="qmp", status=status, ram_bytes=ram, samples=[active, done])


def test_completed_run_that_sent_110_percent_of_ram_fires_as_info():
    f = diagnose(qmp_run(1.10)).get("resending-dirty-memory")
    assert f is not None and f.severity == "info"
    assert f.evidence["resent_bytes"] == pytest.approx(0.10 * 4 * GiB, rel=0.01)
    # Within the 5 % margin (page headers, rounding): one pass explains it.
    assert diagnose(qmp_run(1.03)).get("resending-dirty-memory") is None


def test_zero_pages_lower_what_one_pass_explains():
    # A quarter of RAM is zero pages: one pass sends ~0.75 x RAM.
    f = diagnose(qmp_run(0.90, zero_share=0.25)).get("resending-dirty-memory")
    assert f is not None and f.evidence["one_pass_basis"] == "ram-minus-zero-pages"
    assert f.evidence["resent_bytes"] == pytest.approx(0.15 * 4 * GiB, rel=0.02)
    assert diagnose(qmp_run(0.76, zero_share=0.25)).get("resending-dirty-memory") is None


def test_resending_is_a_warning_from_one_and_a_half_times_ram():
    f = diagnose(qmp_run(1.6)).get("resending-dirty-memory")
    assert f.severity == "warning"
    assert diagnose(qmp_run(1.4)).get("resending-dirty-memory").severity == "info"


# -- auto-converge on, throttling hard ---------------------------------------------------
def test_autoconverge_recording_gets_next_steps_not_autoconverge():
    run = load_run(LAB / "above-link-autoconverge-1.jsonl")
    assert run.settings.capabilities.get("auto-converge") is True
    d = diagnose(run)
    assert "auto-converge" not in [r.setting for r in all_recs(d)]
    f = d.get("not-converging")
    assert "auto-converge throttling the vCPUs to 80%" in f.summary
    assert f.evidence["max_throttle_pct"] == 80 and f.evidence["max_cpu_throttle_pct"] == 99
    steps = settings_of(f)
    assert "postcopy-ram" in steps and ({"max-bandwidth", "migration-network"} & set(steps))
    assert steps.index("postcopy-ram") < steps.index("multifd")
    assert d.get("resending-dirty-memory").severity == "warning"


def throttled_run(pct, *, ceiling=None, status="active", dirty=40e6, initial=None):
    settings = Settings(
        capabilities={"auto-converge": True},
        max_cpu_throttle=ceiling,
        cpu_throttle_initial=initial,
    )
    samples = [
        Sample(t=t, status="active", transferred=int(t * 32 * MiB), remaining=300 * MiB,
               total=GiB, throughput=32 * MiB, dirty_rate=dirty, passes=t // 4 + 1,
               throttle_pct=min(pct, 20 + 10 * (t // 4)))
        for t in range(4, 80, 4)
    ]  # fmt: skip
    if status == "completed":
        samples.append(Sample(t=84, status="completed", transferred=int(84 * 32 * MiB), total=GiB))
    return Run(format="qmp", status=status, ram_bytes=GiB, samples=samples, settings=settings)


def test_throttle_at_a_lowered_ceiling_recommends_raising_max_cpu_throttle():
    d = diagnose(throttled_run(90, ceiling=90, initial=20))
    f = d.get("not-converging")
    assert f.evidence["throttle_at_ceiling"] is True
    r = next(r for r in f.recommendations if r.setting == "max-cpu-throttle")
    assert json.loads(r.commands["qmp"][0])["arguments"] == {"max-cpu-throttle": 99}
    assert set(PLATFORMS) <= set(r.commands)
    assert r.commands["proxmox"] == [] and "Proxmox" in r.notes["proxmox"]
    assert "qemu-monitor-command" in r.commands["libvirt"][0]
    assert [s for s in settings_of(f) if s in ("max-cpu-throttle", "postcopy-ram")] == [
        "max-cpu-throttle",
        "postcopy-ram",
    ]


def test_throttle_at_qemus_own_ceiling_says_throttling_cannot_do_more():
    f = diagnose(throttled_run(99)).get("not-converging")
    assert "max-cpu-throttle" not in settings_of(f)
    assert "throttling cannot do more" in f.detail
    assert "postcopy-ram" in settings_of(f)


def test_throttle_below_its_ceiling_recommends_bigger_steps():
    f = diagnose(throttled_run(60)).get("not-converging")
    r = next(r for r in f.recommendations if r.setting == "cpu-throttle-increment")
    assert json.loads(r.commands["qmp"][0])["arguments"] == {
        "cpu-throttle-initial": 50,
        "cpu-throttle-increment": 20,
    }
    assert "--auto-converge-increment 20" in r.commands["libvirt"][0]
    assert r.commands["proxmox"] == [] and r.notes["proxmox"]


def test_converged_only_by_heavy_throttling_is_its_own_finding():
    d = diagnose(throttled_run(90, status="completed", dirty=5e6))
    assert d.get("not-converging") is None
    f = d.get("heavy-throttling")
    assert f is not None and f.severity == "warning"
    assert "ran at 10% of its CPU time until the migration converged" in f.summary
    assert "healthy" not in d.ids()
    # A light throttle is nothing to report.
    assert (
        diagnose(throttled_run(30, status="completed", dirty=5e6)).get("heavy-throttling") is None
    )


# -- nothing already in force is recommended -----------------------------------------------
T = rec.Target()
# No rule advises switching XBZRLE on today; one that does must not when it was on.
ENABLE_XBZRLE = rec.Recommendation(
    setting="xbzrle", action="turn XBZRLE on", commands={"qmp": [rec.caps(xbzrle=True)]}
)


@pytest.mark.parametrize(
    "recommendation, settings, limit, dropped",
    [
        (rec.auto_converge(T), Settings(capabilities={"auto-converge": True}), None, True),
        (rec.auto_converge(T), Settings(capabilities={"auto-converge": False}), None, False),
        (rec.auto_converge(T), Settings(), None, False),
        (rec.disable_xbzrle(T), Settings(capabilities={"xbzrle": False}), None, True),
        (ENABLE_XBZRLE, Settings(capabilities={"xbzrle": True}), None, True),
        (ENABLE_XBZRLE, Settings(capabilities={"xbzrle": False}), None, False),
        (rec.disable_xbzrle(T), Settings(capabilities={"xbzrle": True}), None, False),
        (rec.multifd(T, 4), Settings(capabilities={"multifd": True}, multifd_channels=4), None, True),
        (rec.multifd(T, 4), Settings(capabilities={"multifd": True}), None, False),
        (rec.downtime_limit(1.0, T), Settings(downtime_limit=2.0), 2.0, True),
        (rec.downtime_limit(3.0, T), Settings(downtime_limit=2.0), 2.0, False),
        (rec.bandwidth(0, T, "x"), Settings(max_bandwidth=0), None, True),
        (rec.bandwidth(64 * MiB, T, "x"), Settings(max_bandwidth=0), None, True),
        (rec.bandwidth(64 * MiB, T, "x"), Settings(max_bandwidth=32 * MiB), None, False),
        (rec.bandwidth(64 * MiB, T, "x"), Settings(), None, False),
        (rec.xbzrle_cache(256 * MiB, T), Settings(xbzrle_cache_size=GiB), None, True),
        (rec.xbzrle_cache(256 * MiB, T), Settings(xbzrle_cache_size=64 * MiB), None, False),
        (rec.max_cpu_throttle(99, T), Settings(max_cpu_throttle=99), None, True),
        (rec.insecure_transport(T, "x"), Settings(migration_type="insecure"), None, True),
        (rec.insecure_transport(T, "x"), Settings(migration_type="secure"), None, False),
    ],
)  # fmt: skip
def test_advice_already_in_force_is_dropped(recommendation, settings, limit, dropped):
    kept = rec.respect_settings([recommendation], settings, limit, T)
    assert (kept == []) is dropped


def test_postcopy_allowed_but_not_started_becomes_start_it():
    allowed = Settings(capabilities={"postcopy-ram": True})
    (r,) = rec.respect_settings([rec.postcopy(T)], allowed, None, T)
    assert r.setting == "postcopy-start" and r.commands["qmp"] == [
        '{"execute": "migrate-start-postcopy", "arguments": {}}'
    ]
    assert r.commands["libvirt"][0].startswith("virsh migrate-postcopy DOMAIN")
    assert r.commands["proxmox"] == [] and r.notes["proxmox"]
    assert rec.respect_settings([rec.postcopy(T)], allowed, None, T, postcopy_started=True) == []


@pytest.mark.parametrize("path", sorted(LAB.glob("*.jsonl")), ids=lambda p: p.name)
def test_lab_recordings_never_get_advice_to_switch_on_what_was_on(path):
    run = load_run(path)
    on = {k for k, v in run.settings.capabilities.items() if v}
    advised = {
        cap
        for r in all_recs(diagnose(run))
        for line in r.commands.get("qmp", [])
        if '"migrate-set-capabilities"' in line
        for cap in on
        if f'"capability": "{cap}", "state": true' in line
    }
    assert advised == set()


def test_proxmox_log_with_autoconverge_on_but_no_throttle_logged():
    d = diagnose(load_run(ROOT / "examples" / "proxmox-32GiB-not-converging.log"))
    f = d.get("not-converging")
    assert "auto-converge" not in [r.setting for r in all_recs(d)]
    assert "Auto-converge was already on (the log does not show how hard it throttled)" in f.detail
    assert f.evidence["max_throttle_pct"] is None
