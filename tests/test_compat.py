"""QEMU version / capability checks before a migration is touched (no QEMU needed)."""

from __future__ import annotations

import pytest

from migtune.errors import InputError
from migtune.model import Settings
from migtune.qemu.compat import Version, available_capabilities, check, parse_version

ALL_CAPS = {"xbzrle", "auto-converge", "postcopy-ram", "multifd", "dirty-limit", "events"}


def caps(**on: bool) -> Settings:
    return Settings(capabilities={k.replace("_", "-"): v for k, v in on.items()})


def test_parse_version():
    assert parse_version("10.0.2") == Version(10, 0, 2)
    assert parse_version("7.2") == Version(7, 2, 0)
    assert parse_version("8.2.1 (Debian 1:8.2.1+ds-1)") > parse_version("8.1.5")
    with pytest.raises(InputError):
        parse_version("unknown")


def test_available_capabilities_from_reply():
    reply = [{"capability": "xbzrle", "state": False}, {"capability": "multifd", "state": True}]
    assert available_capabilities(reply) == {"xbzrle", "multifd"}


def test_plain_settings_pass_on_any_version():
    assert check(Settings(downtime_limit=0.3, max_bandwidth=0), "7.2.0", ALL_CAPS) == []


def test_multifd_with_xbzrle_rejected_from_8_1_warned_before():
    s = caps(multifd=True, xbzrle=True)
    with pytest.raises(InputError, match="XBZRLE together with multifd"):
        check(s, "8.1.0", ALL_CAPS, dest_qmp=True)
    warnings = check(s, "8.0.0", ALL_CAPS, dest_qmp=True)
    assert any("ignores XBZRLE" in w for w in warnings)


def test_avail_switchover_bandwidth_needs_8_2():
    s = Settings(avail_switchover_bandwidth=125e6)
    with pytest.raises(InputError, match="8.2"):
        check(s, "8.1.2", ALL_CAPS)
    assert check(s, "8.2.0", ALL_CAPS) == []
    assert check(Settings(avail_switchover_bandwidth=0.0), "7.2", ALL_CAPS) == []


def test_dirty_limit_needs_8_1_and_excludes_auto_converge():
    with pytest.raises(InputError, match="8.1"):
        check(caps(dirty_limit=True), "8.0.0", ALL_CAPS)
    with pytest.raises(InputError, match="auto-converge"):
        check(caps(dirty_limit=True, auto_converge=True), "9.0.0", ALL_CAPS)
    assert any("dirty ring" in w for w in check(caps(dirty_limit=True), "9.0.0", ALL_CAPS))


def test_xbzrle_cache_must_be_power_of_two():
    with pytest.raises(InputError, match="power of two"):
        check(Settings(xbzrle_cache_size=3 * 1024**2), "10.0.2", ALL_CAPS)


def test_postcopy_and_multifd_need_the_destination():
    with pytest.raises(InputError, match="--dest-qmp"):
        check(Settings(), "10.0.2", ALL_CAPS, allow_postcopy=True)
    with pytest.raises(InputError, match="--dest-qmp"):
        check(caps(postcopy_ram=True), "10.0.2", ALL_CAPS)
    with pytest.raises(InputError, match="--dest-qmp"):
        check(caps(multifd=True), "10.0.2", ALL_CAPS)
    assert check(Settings(), "10.0.2", ALL_CAPS, allow_postcopy=True, dest_qmp=True) == []


def test_postcopy_with_multifd_warns_before_10_1():
    s = caps(multifd=True)
    warnings = check(s, "10.0.2", ALL_CAPS, allow_postcopy=True, dest_qmp=True)
    assert any("10.1" in w for w in warnings)
    assert check(s, "10.1.0", ALL_CAPS, allow_postcopy=True, dest_qmp=True) == []


def test_capability_this_qemu_does_not_offer():
    with pytest.raises(InputError, match="does not offer .*dirty-limit"):
        check(caps(dirty_limit=True), "9.0.0", {"xbzrle", "events"})


def test_disabled_capabilities_are_not_checked():
    assert check(caps(multifd=False, xbzrle=True), "10.0.2", {"xbzrle"}) == []


def test_parameters_without_their_capability_warn():
    w = check(Settings(xbzrle_cache_size=2**28, cpu_throttle_initial=30), "10.0.2", ALL_CAPS)
    assert any("xbzrle-cache-size" in x for x in w)
    assert any("auto-converge" in x for x in w)
