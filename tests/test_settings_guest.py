"""settings.check_for_guest: what QEMU accepts but makes no sense for the guest, and the
supported QEMU range - checked once, used by migrate, lab run and simulate."""

from __future__ import annotations

import pytest

from migtune.errors import InputError
from migtune.model import Settings
from migtune.settings import (
    SUPPORTED_QEMU,
    apply_assignment,
    check_for_guest,
    check_qemu_version,
    validate,
)
from migtune.units import GiB, KiB, MiB


def xbzrle(size: int) -> Settings:
    return Settings(xbzrle_cache_size=size, capabilities={"xbzrle": True})


@pytest.mark.parametrize("cache", [GiB, 2 * GiB])
def test_xbzrle_cache_not_smaller_than_ram_is_refused_with_the_reason(cache):
    with pytest.raises(InputError) as exc:
        check_for_guest(xbzrle(cache), GiB)
    msg = str(exc.value)
    assert msg.startswith("xbzrle-cache-size: ")
    assert "not smaller than the guest's 1.0 GiB" in msg and "at most 256.0 MiB" in msg


def test_xbzrle_cache_above_half_ram_is_a_warning_below_is_fine():
    (warning,) = check_for_guest(xbzrle(512 * MiB), 768 * MiB)
    assert "more than half the guest's 768.0 MiB" in warning
    assert check_for_guest(xbzrle(256 * MiB), 512 * MiB) == []
    # Unknown RAM or XBZRLE switched off: nothing to compare or nothing allocated.
    assert check_for_guest(xbzrle(4 * GiB), None) == []
    off = Settings(xbzrle_cache_size=4 * GiB, capabilities={"xbzrle": False})
    assert check_for_guest(off, GiB) == []


def test_downtime_limit_zero_is_refused_but_small_limits_are_not():
    with pytest.raises(InputError, match="downtime-limit: 0 lets QEMU switch over only"):
        check_for_guest(Settings(downtime_limit=0.0), GiB)
    assert check_for_guest(Settings(downtime_limit=0.001), GiB) == []


def test_max_cpu_throttle_below_the_default_initial_step_is_refused():
    with pytest.raises(InputError, match="below QEMU's default cpu-throttle-initial"):
        check_for_guest(Settings(max_cpu_throttle=10), GiB)
    assert check_for_guest(Settings(max_cpu_throttle=10, cpu_throttle_initial=5), GiB) == []


def test_no_time_at_all_is_refused():
    with pytest.raises(InputError, match="time limit: must be more than 0 s"):
        check_for_guest(Settings(), GiB, time_limit=0)


def test_a_cap_too_low_for_one_pass_is_a_warning():
    (w,) = check_for_guest(Settings(max_bandwidth=100 * KiB), GiB)
    assert "needs 2 h 54 min for one pass" in w
    (w,) = check_for_guest(Settings(max_bandwidth=1 * MiB), GiB, time_limit=60)
    assert "cannot send the guest's RAM once within the 1 min 00 s time limit" in w
    assert check_for_guest(Settings(max_bandwidth=0), GiB, time_limit=1) == []  # unlimited


@pytest.mark.parametrize(
    "settings, message",
    [
        (Settings(downtime_limit=2001.0), "downtime-limit: must be between 0 and 2000 s"),
        (Settings(downtime_limit=float("nan")), "downtime-limit: nan is not a finite number"),
        (Settings(max_bandwidth=-1.0), "max-bandwidth: cannot be negative"),
        (Settings(avail_switchover_bandwidth=-1.0), "avail-switchover-bandwidth: cannot be"),
        (Settings(multifd_channels=0), "multifd-channels: 0 is outside QEMU's range 1..255"),
        (Settings(multifd_channels=256), "multifd-channels: 256 is outside"),
        (Settings(cpu_throttle_increment=100), "cpu-throttle-increment: 100% is outside"),
        (Settings(max_cpu_throttle=0), "max-cpu-throttle: 0% is outside"),
        (Settings(throttle_trigger_threshold=101), "throttle-trigger-threshold: 101%"),
        (Settings(cpu_throttle_initial=50, max_cpu_throttle=40), "below cpu-throttle-initial"),
        (Settings(xbzrle_cache_size=3 * MiB), "xbzrle-cache-size: must be a power of two"),
    ],
)
def test_values_qemu_refuses_name_the_setting(settings, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate(settings)
    with pytest.raises(InputError):
        check_for_guest(settings, GiB)  # the one check the commands call includes these


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("max-bandwidth=-1", "max-bandwidth: cannot read rate"),
        ("multifd-channels=x", "multifd-channels: bad value 'x'"),
        ("xbzrle=maybe", "xbzrle: expected on/off"),
        ("max-cpu-throttle=150", "max-cpu-throttle: percentage 150 out of range"),
    ],
)
def test_set_assignments_name_the_setting(assignment, message):
    with pytest.raises(InputError, match=message):
        apply_assignment(Settings(), assignment)


@pytest.mark.parametrize("text", ["7.2", "8.2.1", "10.0.2", "10.2", " 9.1 "])
def test_supported_qemu_versions_pass(text):
    assert check_qemu_version(text) == text.strip()


@pytest.mark.parametrize("text", ["3.0", "7.1", "10.3", "11.0", "6.2.0"])
def test_qemu_versions_outside_the_range_are_refused(text):
    with pytest.raises(InputError, match=f"outside the supported range {SUPPORTED_QEMU}"):
        check_qemu_version(text)


@pytest.mark.parametrize("text", ["abc", "10", "10.x", "1e3.0", ""])
def test_unreadable_qemu_versions_are_refused(text):
    with pytest.raises(InputError, match="cannot read QEMU version"):
        check_qemu_version(text)


def test_xbzrle_on_without_a_size_checks_qemus_default_cache():
    on = Settings(capabilities={"xbzrle": True})
    with pytest.raises(InputError, match="QEMU's default 64.0 MiB cache is not smaller"):
        check_for_guest(on, 64 * MiB)
    assert check_for_guest(on, 512 * MiB) == []
