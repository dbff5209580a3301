import pytest

from migtune.errors import InputError
from migtune.model import Settings
from migtune.settings import apply_assignment, describe, effective
from migtune.units import GiB, MiB
from migtune.workload import Workload, parse_workload


def test_apply_assignment_units():
    s = apply_assignment(Settings(), "downtime-limit=2s")
    s = apply_assignment(s, "max-bandwidth=1GiB/s")
    s = apply_assignment(s, "xbzrle=on")
    s = apply_assignment(s, "xbzrle-cache-size=512MiB")
    assert s.downtime_limit == 2.0
    assert s.max_bandwidth == GiB
    assert s.capabilities == {"xbzrle": True}
    assert s.xbzrle_cache_size == 512 * MiB
    assert "xbzrle 512.0 MiB" in describe(s)


@pytest.mark.parametrize(
    "assignment",
    [
        "downtime-limit",
        "nonsense=1",
        "xbzrle-cache-size=100MB",
        "downtime-limit=3000s",
        "xbzrle=maybe",
    ],
)
def test_bad_assignments(assignment):
    with pytest.raises(InputError):
        apply_assignment(Settings(), assignment)


def test_effective_fills_qemu_defaults():
    e = effective(Settings())
    assert e.downtime_limit == 0.3
    assert e.max_bandwidth == 128 * MiB
    assert e.xbzrle_cache_size == 64 * MiB
    assert (e.cpu_throttle_initial, e.cpu_throttle_increment, e.max_cpu_throttle) == (20, 10, 99)


def test_workload_spec():
    w = parse_workload("ws=256MiB,rate=64MiB/s,pattern=random,bytes=8")
    assert w.ws == 256 * MiB and w.rate == 64 * MiB and w.pattern == "random"
    assert w.bytes_per_write == 8 and not w.idle and not w.cpu_bound
    assert parse_workload(w.spec()) == w
    cpu = parse_workload("ws=512MiB,rate=unlimited,pattern=seq,bytes=4096")
    assert cpu.cpu_bound and cpu.rate is None
    assert parse_workload(cpu.spec()) == cpu
    hc = parse_workload("ws=1GiB,rate=16000pages/s,pattern=hotcold,hot=0.2,hotw=0.8")
    assert hc.rate == 16000 * 4096 and hc.hot == 0.2
    assert parse_workload(hc.spec()) == hc
    assert parse_workload("idle").idle
    assert parse_workload("idle") == Workload(ws=0, rate=0.0)


@pytest.mark.parametrize(
    "bad", ["", "ws", "ws=1GiB,pattern=zigzag", "bytes=0", "hot=2", "ws=100", "colour=blue"]
)
def test_bad_workloads(bad):
    with pytest.raises(InputError):
        parse_workload(bad)


def test_describe_treats_huge_bandwidth_as_unlimited():
    assert "unlimited" in describe(Settings(max_bandwidth=9223372036853727232.0))
    assert "unlimited" in describe(Settings(max_bandwidth=0.0))
    assert "32.0 MiB/s" in describe(Settings(max_bandwidth=32 * MiB))
