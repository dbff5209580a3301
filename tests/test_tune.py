"""``tune``: platform grids, transports, ranking by simulated effect, limits, commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from migtune.analysis.tune import Candidate, tune
from migtune.analysis.tune.grid import (
    Knobs,
    grid,
    policy_for,
    proxmox_cache,
    settings_for,
    transports,
)
from migtune.errors import InputError
from migtune.model import Settings
from migtune.sim import simulate
from migtune.sources import load_run
from migtune.units import GiB, MiB

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RAM = 256 * MiB
# writes faster than a 40 MiB/s link sends: QEMU's defaults cannot converge
HOT = "ws=64MiB,rate=48MiB/s,pattern=random"
LINK = 40 * MiB / 0.94  # a link whose TCP payload rate is 40 MiB/s


@pytest.fixture(scope="module")
def hot():
    return tune(ram_bytes=RAM, workload=HOT, link_rate=LINK, allow=("auto-converge",),
                max_downtime=1.0)  # fmt: skip


def test_recommendation_meets_the_limits_and_is_ranked_first(hot):
    rec = hot.recommendation
    assert isinstance(rec, Candidate) and rec is hot.candidates[0]
    assert rec.meets_limits and rec.confirmed
    p = rec.predicted()
    assert p["converged_share"] == 1.0
    assert p["downtime_ms"]["max"] <= 1000
    assert rec.settings.downtime_limit <= 1.0
    # ranked: candidates meeting the limits come first, fastest worst case first
    meeting = [c for c in hot.candidates if c.meets_limits]
    worst = [c.predicted()["total_time_s"]["max"] for c in meeting]
    assert hot.candidates[: len(meeting)] == meeting
    assert worst[0] <= min(worst) * 1.03 + 1e-9
    # QEMU's defaults (300 ms, no auto-converge) are in the grid and do not converge
    default = next(c for c in hot.candidates if c.label == "downtime 300 ms")
    assert default.predicted()["converged_share"] == 0.0 and not default.meets_limits


def test_the_prediction_is_a_simulation_of_the_recommended_settings(hot):
    rec = hot.recommendation
    again = simulate(RAM, HOT, rec.settings, link_rate=rec.link_rate,
                     time_limit=hot.limits["horizon_s"], stop_when_settled=True)  # fmt: skip
    assert again.outcome.converged
    assert again.outcome.total_time_s == pytest.approx(
        rec.predicted()["total_time_s"]["median"], rel=1e-6
    )


def test_json_contract(hot):
    d = hot.to_dict()
    assert {"recommendation", "candidates", "calibration", "limits"} <= set(d)
    rec = d["recommendation"]
    assert {"settings", "commands", "predicted"} <= set(rec)
    pred = rec["predicted"]
    assert 0 <= pred["converged_share"] <= 1
    for key in ("total_time_s", "downtime_ms", "transferred_bytes", "max_throttle_pct"):
        assert set(pred[key]) == {"min", "median", "max"}
        assert pred[key]["min"] <= pred[key]["median"] <= pred[key]["max"]
    assert d["limits"]["max_downtime_s"] == 1.0
    assert len(d["candidates"]) == len(hot.candidates) >= 10
    assert "qmp" in rec["commands"]


def test_nothing_meets_tight_limits_names_the_closest_and_the_limit_to_give():
    r = tune(ram_bytes=RAM, workload=HOT, link_rate=LINK, allow=(), max_downtime=0.1,
             max_time=20.0)  # fmt: skip
    assert r.recommendation is None and r.closest is not None
    assert r.limit_to_give  # e.g. {"converges": "0 of 1 ...", ...} or a downtime / time
    assert r.to_dict()["closest"]["label"] == r.closest.label
    assert not any(c.meets_limits for c in r.candidates)


def test_proxmox_grid_is_what_qemu_server_can_set():
    ks = grid("proxmox", {"xbzrle", "auto-converge", "postcopy", "multifd"}, 32 * GiB,
              Settings(), 2.0, None)  # fmt: skip
    assert ks and all(k.xbzrle_cache == 4 * GiB and k.auto_converge for k in ks)
    assert not any(k.postcopy or k.multifd for k in ks)
    assert proxmox_cache(3 * GiB) == 512 * MiB  # RAM/10 rounded up to a power of two
    assert policy_for(ks[0], "proxmox").startswith("proxmox:downtime=")


def test_nova_and_kubevirt_grids_use_their_policies_and_omit_xbzrle():
    nova = grid("nova", {"xbzrle", "auto-converge", "postcopy"}, 4 * GiB, Settings(), 2.0, None)
    assert nova and not any(k.xbzrle_cache for k in nova)
    assert not any(k.postcopy and k.auto_converge for k in nova)  # Nova drops one of them
    assert {k.nova_action for k in nova} == {"abort", "force_complete"}
    assert policy_for(nova[0], "nova").startswith("nova:downtime=")
    kv = grid("kubevirt", {"xbzrle", "auto-converge", "postcopy"}, 4 * GiB, Settings(), 2.0, None)
    assert kv and not any(k.xbzrle_cache for k in kv)
    assert all(k.downtime == 0.3 for k in kv)  # KubeVirt leaves QEMU's limit alone
    assert "completion_per_gib=" in policy_for(kv[0], "kubevirt")


def test_transports_when_the_log_shows_the_ssh_tunnel():
    observed = 36 * MiB
    ts = transports(observed, {"ssh-tunnel-bottleneck"}, None, "proxmox")
    assert ts[0].name == "observed" and ts[0].assumption is None
    assert {t.name for t in ts[1:]} == {"insecure"}  # qemu-server has no TLS transport
    assert all(t.assumption and "assumed" in t.assumption for t in ts[1:])
    libvirt = transports(observed, {"ssh-tunnel-bottleneck"}, 10e9 / 8, "libvirt")
    assert {t.name for t in libvirt} == {"observed", "insecure", "tls"}
    assert next(t for t in libvirt if t.name == "insecure").assumption is None
    bound = transports(110 * MiB, {"link-bound"}, None, "qemu")
    assert [t.name for t in bound] == ["observed", "dedicated", "dedicated"]
    assert transports(observed, set(), None, "qemu") == ts[:1]


def test_commands_per_platform():
    k = Knobs(downtime=0.5, xbzrle_cache=512 * MiB, auto_converge=True, multifd=None)
    from migtune.analysis.recommend import Target
    from migtune.analysis.tune.commands import commands
    from migtune.analysis.tune.grid import Transport

    tr = Transport("insecure", 1e9)
    pve = commands(k, tr, "proxmox", Target(vmid="101"))
    assert "qm set 101 --migrate_downtime 0.5" in pve["proxmox"]
    assert "migration: type=insecure,network=CIDR" in pve["proxmox"]
    virsh = commands(k, tr, "libvirt", Target())["libvirt"][0]
    assert "--auto-converge" in virsh and "--comp-xbzrle-cache 536870912" in virsh
    nk = Knobs(nova_downtime_ms=1000, nova_steps=3, nova_delay=3.0, nova_timeout=800.0,
               nova_action="force_complete", auto_converge=True)  # fmt: skip
    nova = commands(nk, tr, "nova", Target())["nova"]
    assert "live_migration_downtime = 1000" in nova
    assert "live_migration_timeout_action = force_complete" in nova
    kk = Knobs(kv_completion_per_gib=400.0, kv_disruption=True, postcopy=True)
    yaml = commands(kk, Transport("observed", 1e9), "kubevirt", Target())["kubevirt"]
    assert "kind: MigrationPolicy" in yaml and "  completionTimeoutPerGiB: 400" in yaml
    s = settings_for(k, Settings(), "qemu")
    assert s.capabilities == {"xbzrle": True, "auto-converge": True, "postcopy-ram": False,
                              "multifd": False}  # fmt: skip


def test_proxmox_policy_runs_in_the_loop():
    # every write changes a whole page: XBZRLE cannot help, Proxmox's doubling does
    full_pages = HOT + ",bytes=4096"
    r = tune(ram_bytes=RAM, workload=full_pages, link_rate=LINK, platform="proxmox",
             max_downtime=1.0)  # fmt: skip
    assert all(c.policy.startswith("proxmox:") for c in r.candidates)
    c100 = next(c for c in r.candidates if c.label == "downtime 100 ms")
    acts = [a for m in c100.prediction.members for a in m.stats["policy_actions"]]
    limits = [a["params"]["downtime-limit"] for a in acts]
    assert limits[:2] == [200, 400]  # doubled from the initial migrate_downtime
    # it converges, but only once the doubled limit lets it: the downtime is above 100 ms
    assert c100.predicted()["downtime_ms"]["max"] > 100


def test_from_a_lab_recording():
    run = load_run(str(FIXTURES / "lab" / "calib-random-384.jsonl"))
    r = tune(run, max_downtime=1.0, max_time=45.0, allow=("auto-converge",))
    assert r.observed is not None and r.observed["converged"] is False
    assert r.calibration["plausible"]
    # the run was capped at 24 MiB/s on loopback: the cap stays in every candidate
    assert all(c.settings.max_bandwidth == 24 * MiB for c in r.candidates)
    assert r.recommendation is not None and "did not complete" in r.why


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({}, "give a log"),
        ({"ram_bytes": RAM, "workload": HOT, "platform": "vmware"}, "unknown platform"),
        ({"ram_bytes": RAM, "workload": HOT, "allow": ("zstd",)}, "unknown feature"),
        ({"ram_bytes": RAM, "workload": HOT, "max_downtime": 0.0}, "must be positive"),
        ({"ram_bytes": 32 * MiB, "workload": HOT}, "working set"),
    ],
)
def test_bad_input(kw, msg):
    with pytest.raises(InputError, match=msg):
        tune(**kw)


# -- diagnose --predict -------------------------------------------------------------------
def test_diagnose_predict_ranks_remedies_by_their_simulated_effect():
    from migtune.analysis.diagnose import diagnose
    from migtune.outputs.jsonout import diagnosis_dict

    run = load_run(str(FIXTURES / "lab" / "calib-random-384.jsonl"))
    plain = diagnose(run)
    d = diagnose(run, predict=True)
    assert plain.ids() == d.ids()
    f = d.get("not-converging")
    assert f is not None
    preds = [r.predicted for r in f.recommendations]
    assert any(p is not None for p in preds)
    # the same remedies, now ordered: converging for every workload first, fastest first
    assert sorted(r.setting for r in f.recommendations) == sorted(
        r.setting for r in plain.get("not-converging").recommendations
    )
    full = [p for p in preds if p is not None and p["converged_share"] == 1]
    assert preds[: len(full)] == full
    worst = [p["total_time_s"]["max"] for p in full]
    assert worst == sorted(worst)
    # a longer downtime limit (4.1 s here) converges: the effect says how fast and how long
    dl = next(r for r in f.recommendations if r.setting == "downtime-limit")
    assert dl.predicted["effect"].startswith("converges in ~")
    assert dl.predicted["downtime_ms"]["max"] <= 4100
    # inside the guest: nothing to simulate
    assert next(r for r in f.recommendations if r.setting == "workload").predicted is None
    # JSON: the old keys, plus "predicted" (null without --predict)
    rec_json = next(r for f2 in diagnosis_dict(d)["findings"] for r in f2["recommendations"])
    assert {"setting", "action", "commands", "notes", "predicted"} <= set(rec_json)
    assert all(
        r["predicted"] is None
        for f2 in diagnosis_dict(plain)["findings"]
        for r in f2["recommendations"]
    )
