"""Management-layer policies on hand-made sample sequences (no QEMU)."""

from __future__ import annotations

import pytest

from migtune.errors import InputError
from migtune.model import Sample, Settings
from migtune.qemu.policies import (
    ABORT,
    PAUSE,
    SET_PARAMETERS,
    START_POSTCOPY,
    KubevirtPolicy,
    NovaPolicy,
    Policy,
    ProxmoxPolicy,
    parse_policy,
)
from migtune.units import GiB, MiB


def s(transferred: int, remaining: int, status: str = "active", passes: int = 2) -> Sample:
    return Sample(status=status, transferred=transferred, remaining=remaining, passes=passes)


def rising(n: int, start_tx: int = 0) -> list[Sample]:
    """n polls where transferred moves and remaining rises each time."""
    return [s(start_tx + (i + 1) * MiB, (i + 2) * MiB) for i in range(n)]


def downtimes(actions) -> list[int]:
    return [a.params["downtime-limit"] for a in actions if a.kind == SET_PARAMETERS]


# -- Proxmox -------------------------------------------------------------------------------
def proxmox(downtime_s: float | None = 0.1) -> ProxmoxPolicy:
    p = ProxmoxPolicy()
    asked = Settings(downtime_limit=downtime_s)
    p.configure(Settings(downtime_limit=downtime_s or 0.3), ram_bytes=GiB, requested=asked)
    return p


def test_proxmox_doubles_on_exactly_the_sixth_event():
    p = proxmox()
    # First poll only sets lastrem; then 6 rises.
    samples = [s(1 * MiB, 1 * MiB), *rising(6, start_tx=1 * MiB)]
    results = [p.decide(x, float(i)) for i, x in enumerate(samples)]
    assert all(r == [] for r in results[:-1])  # events 1..5: nothing
    assert downtimes(results[-1]) == [200]  # 6th event: 100 -> 200 ms
    assert p.counter == 0


def test_proxmox_counts_zero_remaining_and_ignores_polls_without_transfer():
    p = proxmox()
    acts = []
    tx = 0
    for _ in range(5):
        tx += MiB
        acts += p.decide(s(tx, 0), 0.0)  # remaining 0 counts
        acts += p.decide(s(tx, 0), 0.0)  # transferred unchanged: not counted
    assert acts == [] and p.counter == 5
    acts = p.decide(s(tx + MiB, 0), 0.0)
    assert downtimes(acts) == [200]


def test_proxmox_events_need_not_be_consecutive():
    p = proxmox()
    tx, acts = 0, []
    rem = 10 * MiB
    for i in range(12):
        tx += MiB
        rem = rem + MiB if i % 2 == 0 else rem - 2 * MiB  # rise, fall, rise, fall ...
        acts += p.decide(s(tx, rem), float(i))
    # the first poll only sets lastrem, rises at polls 2,4,6,8,10 -> 5 events; not yet doubled
    assert downtimes(acts) == []
    acts = p.decide(s(tx + MiB, rem + MiB), 12.0)
    assert downtimes(acts) == [200]


def test_proxmox_sequence_and_cap():
    p = proxmox()
    seen = []
    tx, rem = 0, MiB
    for _ in range(6 * 20):
        tx += MiB
        rem += MiB
        seen += downtimes(p.decide(s(tx, rem), 0.0))
    assert seen[:5] == [200, 400, 800, 1600, 3200]
    assert seen[-1] == 2_000_000
    assert seen.count(2_000_000) == 1  # once at the cap, no further changes
    assert max(seen) == 2_000_000


def test_proxmox_initial_downtime_default_100ms():
    p = proxmox(None)
    assert downtimes(p.initial_actions()) == [100]
    assert proxmox(0.1).initial_actions() == []
    q = ProxmoxPolicy(downtime="1s")
    q.configure(Settings(), ram_bytes=GiB)
    assert downtimes(q.initial_actions()) == [1000]


# -- Nova ----------------------------------------------------------------------------------
def nova(**params) -> NovaPolicy:
    p = NovaPolicy(**params)
    p.configure(Settings(), ram_bytes=4 * GiB, allow_postcopy=params.pop("_pc", False))
    return p


def test_nova_downtime_steps_corpus_example():
    p = nova(downtime="5000", steps="7", delay="75")
    assert p.data_gb == 4
    assert p.schedule[0] == (0, 714)
    assert p.schedule[1] == (300, 1326)
    assert p.schedule[-1] == (2100, 5000)  # Python 3 Nova: float division
    assert downtimes(p.decide(s(1, 1), 0.5)) == [714]
    assert p.decide(s(2, 1), 300.0) == []  # step 1 applies only once 300 s have *passed*
    assert downtimes(p.decide(s(3, 1), 300.5)) == [1326]
    assert downtimes(p.decide(s(4, 1), 2100.5)) == [5000]


def test_nova_py2_matches_the_corpus_log_exactly():
    # tests/fixtures/real/nova-compute-downtime-steps-4GiB.txt: 714 ms, +612 ms every 300 s, 4998 ms
    p = nova(downtime="5000", steps="7", delay="75", py2="yes")
    assert p.schedule == [(300 * i, 714 + 612 * i) for i in range(8)]
    assert p.schedule[-1] == (2100, 4998)


def test_nova_defaults_small_guest_counts_as_2_gib():
    p = NovaPolicy()
    p.configure(Settings(), ram_bytes=256 * MiB)
    assert p.data_gb == 2
    assert p.schedule[0] == (0, 50) and p.schedule[1] == (150, 95)
    assert p.completion_timeout == 1600


def test_nova_completion_timeout_abort_once():
    p = nova(timeout="10s", delay="1000s")
    p.decide(s(1, 1), 1.0)
    assert p.decide(s(2, 1), 40.0) == []
    acts = p.decide(s(3, 1), 40.5)
    assert [a.kind for a in acts] == [ABORT]
    assert "not completed after 40 sec" in acts[0].reason
    assert p.decide(s(4, 1), 50.0) == []


def test_nova_force_complete_pauses_without_postcopy_and_switches_with_it():
    p = nova(timeout="10s", delay="1000s", action="force_complete")
    assert [a.kind for a in p.decide(s(1, 1), 41.0) if a.kind != SET_PARAMETERS] == [PAUSE]
    q = NovaPolicy(timeout="10s", delay="1000s", action="force_complete")
    q.configure(Settings(), ram_bytes=4 * GiB, allow_postcopy=True)
    assert [a.kind for a in q.decide(s(1, 1), 41.0) if a.kind != SET_PARAMETERS] == [START_POSTCOPY]


def test_nova_never_acts_in_postcopy():
    p = nova(timeout="10s")
    assert p.decide(s(1, 1, status="postcopy-active"), 100.0) == []


# -- KubeVirt ------------------------------------------------------------------------------
def kubevirt(ram=4 * GiB, allow_postcopy=False, **params) -> KubevirtPolicy:
    p = KubevirtPolicy(**params)
    p.configure(Settings(), ram_bytes=ram, allow_postcopy=allow_postcopy)
    return p


def test_kubevirt_size_rounds_up_in_decimal_gigabytes():
    assert kubevirt().acceptable == 750  # 4 GiB = 4.29e9 bytes -> 5 x 150 s
    assert kubevirt(ram=2 * 10**9).acceptable == 300


def test_kubevirt_progress_timeout_aborts_when_remaining_stops_falling():
    p = kubevirt()
    assert p.decide(s(1, 100), 0.0) == []
    assert p.decide(s(2, 90), 10.0) == []  # progress at 10 s
    for t in range(11, 161):
        assert p.decide(s(3, 95), float(t)) == []  # stuck, up to 150 s after 10 s
    acts = p.decide(s(4, 95), 160.5)
    assert [a.kind for a in acts] == [ABORT]
    assert "stuck for 150 seconds" in acts[0].reason


def test_kubevirt_completion_timeout_abort_or_postcopy_or_pause():
    falling = iter(range(10**9, 0, -1))

    def run(p):
        for t in range(0, 760, 5):
            acts = p.decide(s(t, next(falling)), float(t))
            if acts:
                return t, [a.kind for a in acts]
        return None

    assert run(kubevirt()) == (755, [ABORT])
    assert run(kubevirt(allow_postcopy=True)) == (755, [START_POSTCOPY])
    p = kubevirt(disruption="yes")
    assert run(p) == (755, [PAUSE])
    assert p.acceptable == 1500  # doubled after pausing


def test_kubevirt_does_nothing_in_postcopy():
    p = kubevirt()
    assert p.decide(s(1, 1, status="postcopy-active"), 10_000.0) == []


# -- parsing -------------------------------------------------------------------------------
def test_parse_policy_specs():
    assert type(parse_policy(None)) is Policy
    p = parse_policy("nova:downtime=500ms,steps=10,delay=75s,timeout=800s")
    assert isinstance(p, NovaPolicy)
    assert p.params["downtime"] == 500 and p.params["delay"] == 75
    assert parse_policy("kubevirt:progress-timeout=2min").params["progress_timeout"] == 120
    for bad in ("vmware", "nova:nope=1", "nova:steps", "kubevirt:disruption=maybe"):
        with pytest.raises(InputError):
            parse_policy(bad)
    with pytest.raises(InputError):
        nova(action="explode")


def test_poll_cadence_follows_the_platform():
    p = proxmox()
    assert p.poll_interval(None) == 1.0
    assert p.poll_interval(s(10 * MiB, 100 * MiB)) == 1.0  # avg sent/poll 10 MiB < remaining
    assert p.poll_interval(s(20 * MiB, 5 * MiB)) == 0.1  # remaining below avg 10 MiB per poll
    assert NovaPolicy().poll_interval(None) == 0.5
    assert KubevirtPolicy().poll_interval(None) == 0.4
    assert Policy().poll_interval(None) == 0.5


def test_describe_lists_given_parameters_only():
    assert parse_policy("proxmox").describe() == "proxmox"
    assert parse_policy("nova:steps=3").describe().startswith("nova:downtime=500.0,steps=3")


def test_eta_is_honest_about_a_guest_that_keeps_up():
    from migtune.model import Sample
    from migtune.qemu.progress import eta

    mib = 1024**2
    assert eta(Sample(remaining=100 * mib, throughput=100 * mib, dirty_rate=50 * mib)) == 2.0
    assert eta(Sample(remaining=100 * mib, throughput=100 * mib, dirty_rate=97 * mib)) is None
    assert eta(Sample(remaining=100 * mib, throughput=100 * mib, dirty_rate=120 * mib)) is None
    assert eta(Sample(remaining=100 * mib, throughput=None)) is None
