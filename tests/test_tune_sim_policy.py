"""Platform policies in the simulation loop: the same Policy objects ``migrate --policy``
uses, fed simulated query-migrate replies (rules as in tests/test_policies.py)."""

from __future__ import annotations

import pytest

from migtune.model import Settings
from migtune.qemu.policies import NovaPolicy
from migtune.sim import simulate
from migtune.units import MiB

RAM = 256 * MiB
# dirties faster than the 32 MiB/s cap sends: pre-copy alone never converges
STUCK = "ws=128MiB,rate=80MiB/s,pattern=random"
SLOW_CONVERGING = "ws=64MiB,rate=40MiB/s,pattern=random"
CAPPED = Settings(downtime_limit=0.1, max_bandwidth=32 * MiB)


def actions(r, kind=None):
    return [a for a in r.stats["policy_actions"] if kind is None or a["kind"] == kind]


def test_without_a_policy_the_run_does_not_converge():
    r = simulate(RAM, SLOW_CONVERGING, CAPPED, time_limit=120, stop_when_settled=True)
    assert r.outcome.status == "cancelled"
    assert "policy_actions" not in r.stats


def test_proxmox_doubles_the_downtime_limit_until_it_converges():
    r = simulate(RAM, SLOW_CONVERGING, CAPPED, time_limit=120, policy="proxmox")
    limits = [a["params"]["downtime-limit"] for a in actions(r, "set-parameters")]
    assert limits[:3] == [200, 400, 800]
    assert all(b == 2 * a for a, b in zip(limits, limits[1:], strict=False))
    assert r.outcome.status == "completed"
    # the downtime limit in force at the end is the last doubling
    assert r.run.settings.downtime_limit == pytest.approx(0.1)  # what it started with
    times = [a["t"] for a in actions(r)]
    assert times == sorted(times) and times[0] > 5  # six stalled polls of 1 s at least
    assert any(ev.kind == "downtime-change" for ev in r.run.events)


def test_nova_steps_its_downtime_at_its_times_and_aborts_at_the_completion_timeout():
    spec = "nova:downtime=300ms,steps=3,delay=40s,timeout=200s"
    r = simulate(RAM, STUCK, CAPPED, time_limit=600, policy=spec)
    ref = NovaPolicy(downtime="300ms", steps="3", delay="40s", timeout="200s")
    ref.configure(CAPPED, ram_bytes=RAM)  # 256 MiB counts as 2 GiB: steps 80 s apart
    sets = actions(r, "set-parameters")
    assert [a["params"]["downtime-limit"] for a in sets] == [d for _, d in ref.schedule]
    for a, (when, _) in zip(sets[1:], ref.schedule[1:], strict=True):
        assert when < a["t"] <= when + 0.5 + 1e-6  # at the first 0.5 s poll after the step
    (abort,) = actions(r, "abort")
    assert ref.completion_timeout < abort["t"] <= ref.completion_timeout + 0.5 + 1e-6
    assert r.outcome.status == "cancelled"
    assert r.outcome.total_time_s == pytest.approx(abort["t"], abs=0.1)


def test_nova_force_complete_pauses_the_guest_and_the_run_completes():
    r = simulate(
        RAM, STUCK, CAPPED, time_limit=600, policy="nova:timeout=20s,action=force_complete"
    )
    (pause,) = actions(r, "pause")
    assert 40 < pause["t"] <= 40.5 + 1e-6  # 20 s per GiB x 2 GiB
    assert r.outcome.status == "completed"
    assert r.stats["guest_paused_at_s"] == pause["t"]
    assert r.outcome.total_time_s > pause["t"]


def test_kubevirt_aborts_at_the_completion_time_per_gib():
    r = simulate(RAM, STUCK, CAPPED, time_limit=600, policy="kubevirt:completion_per_gib=20s")
    (abort,) = actions(r, "abort")
    assert 20 < abort["t"] <= 20.4 + 1e-6  # ceil(256 MiB / 1e9) = 1 unit; 0.4 s polls
    assert r.outcome.status == "cancelled"
    # progress is made at every poll (remaining falls between syncs): no progress abort
    long = simulate(RAM, STUCK, CAPPED, time_limit=100, policy="kubevirt:progress_timeout=5s")
    assert actions(long, "abort") == [] and long.outcome.status == "cancelled"


def test_kubevirt_switches_to_postcopy_when_allowed():
    s = Settings(downtime_limit=0.1, max_bandwidth=32 * MiB, capabilities={"postcopy-ram": True})
    r = simulate(RAM, STUCK, s, time_limit=600, policy="kubevirt:completion_per_gib=20s")
    assert [a["kind"] for a in actions(r)] == ["start-postcopy"]
    assert r.outcome.status == "completed"
    assert [e.kind for e in r.run.events if e.kind == "postcopy-start"] == ["postcopy-start"]


@pytest.mark.parametrize(
    "spec", ["nova:downtime=300ms,steps=3,delay=40s,timeout=200s", "kubevirt", "fixed"]
)
def test_settled_runs_extrapolate_only_while_the_policy_is_quiet(spec):
    """Same decisions, same end, same bytes (within a round) with and without settling."""
    full = simulate(RAM, STUCK, CAPPED, time_limit=600, policy=spec)
    fast = simulate(RAM, STUCK, CAPPED, time_limit=600, policy=spec, stop_when_settled=True)
    assert fast.stats["settled_from_s"] is not None
    assert [a["kind"] for a in actions(fast)] == [a["kind"] for a in actions(full)]
    for a, b in zip(actions(fast), actions(full), strict=True):
        assert a["params"] == b["params"]
        assert a["t"] == pytest.approx(b["t"], abs=1.0)
    assert fast.outcome.total_time_s == pytest.approx(full.outcome.total_time_s, abs=1.0)
    assert fast.outcome.transferred_bytes == pytest.approx(full.outcome.transferred_bytes, rel=0.01)


def test_a_policy_object_is_copied_per_simulation():
    pol = NovaPolicy(timeout="20s")
    a = simulate(RAM, STUCK, CAPPED, time_limit=100, policy=pol)
    b = simulate(RAM, STUCK, CAPPED, time_limit=100, policy=pol)
    assert actions(a) == actions(b)
    assert not hasattr(pol, "schedule")  # the caller's object was never configured


def test_shrunk_guest_gets_the_full_size_for_the_policy_timeouts():
    r = simulate(
        RAM, STUCK, CAPPED, time_limit=600, policy="kubevirt:completion_per_gib=20s",
        policy_ram_bytes=3 * 10**9,
    )  # fmt: skip
    (abort,) = actions(r, "abort")
    assert 60 < abort["t"] <= 60.4 + 1e-6
