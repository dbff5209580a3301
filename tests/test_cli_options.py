"""The shared migration settings flags (click decorator) and their conversion."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from migtune.cli.options import (
    PostcopyRule,
    migration_settings_options,
    pop_settings_options,
    postcopy_rule_from_options,
    settings_from_options,
    with_settings,
)
from migtune.errors import InputError
from migtune.units import GiB, MiB


@click.command()
@migration_settings_options
@click.option("--other", default="x")
def probe(**kwargs):
    opts = pop_settings_options(kwargs)
    s = settings_from_options(opts)
    rule = postcopy_rule_from_options(opts, s)
    click.echo(repr((s, rule, kwargs)))
    probe.result = (s, rule, kwargs)


def invoke(*args: str):
    result = CliRunner().invoke(probe, list(args), catch_exceptions=False)
    return result, getattr(probe, "result", None)


def test_units_operators_type():
    r, (s, rule, rest) = invoke(
        "--downtime-limit", "2s", "--max-bandwidth", "1Gbit/s", "--xbzrle",
        "--xbzrle-cache-size", "4GiB", "--auto-converge", "--cpu-throttle-initial", "30",
        "--cpu-throttle-increment", "5", "--max-cpu-throttle", "90",
        "--throttle-trigger-threshold", "40", "--avail-switchover-bandwidth", "100MB/s",
    )  # fmt: skip
    assert r.exit_code == 0
    assert s.downtime_limit == 2.0
    assert s.max_bandwidth == 125e6
    assert s.xbzrle_cache_size == 4 * GiB
    assert s.capabilities == {"xbzrle": True, "auto-converge": True}
    assert (s.cpu_throttle_initial, s.cpu_throttle_increment, s.max_cpu_throttle) == (30, 5, 90)
    assert s.throttle_trigger_threshold == 40
    assert s.avail_switchover_bandwidth == 100e6
    assert rule == PostcopyRule(False, None, None)
    assert rest == {"other": "x"}  # the decorator's own options are all popped


def test_milliseconds_and_unlimited_bandwidth():
    _, (s, _, _) = invoke("--downtime-limit", "300ms", "--max-bandwidth", "0")
    assert s.downtime_limit == pytest.approx(0.3)
    assert s.max_bandwidth == 0.0  # 0 = unlimited, not "not set"


def test_nothing_given_means_qemu_defaults():
    _, (s, rule, _) = invoke()
    assert s.downtime_limit is None and s.max_bandwidth is None and s.capabilities == {}
    assert rule.allow is False


def test_multifd_and_no_flags():
    _, (s, _, _) = invoke("--multifd", "--multifd-channels", "4", "--no-xbzrle")
    assert s.capabilities == {"multifd": True, "xbzrle": False}
    assert s.multifd_channels == 4
    _, (s, _, _) = invoke("--multifd-channels", "4")  # a channel count implies multifd
    assert s.capabilities["multifd"] is True
    _, (s, _, _) = invoke("--multifd-channels", "4", "--no-multifd")
    assert s.capabilities["multifd"] is False


def test_set_assignments_apply_after_flags():
    _, (s, _, _) = invoke(
        "--downtime-limit", "1s", "--set", "downtime-limit=500ms", "--set", "xbzrle=on",
        "--set", "xbzrle-cache-size=256MiB",
    )  # fmt: skip
    assert s.downtime_limit == 0.5
    assert s.capabilities["xbzrle"] is True and s.xbzrle_cache_size == 256 * MiB


def test_postcopy_rule():
    _, (s, rule, _) = invoke("--postcopy", "--postcopy-after-passes", "3")
    assert rule == PostcopyRule(True, 3, None)
    assert s.capabilities["postcopy-ram"] is True
    assert rule.as_kwargs() == {
        "allow_postcopy": True,
        "postcopy_after_passes": 3,
        "postcopy_after": None,
    }
    _, (_, rule, _) = invoke("--postcopy", "--postcopy-after", "90s")
    assert rule.after == 90.0
    _, (_, rule, _) = invoke("--set", "postcopy-ram=on")
    assert rule.allow is True


def test_postcopy_triggers_need_postcopy():
    with pytest.raises(InputError, match="need --postcopy"):
        invoke("--postcopy-after-passes", "2")


@pytest.mark.parametrize(
    "args",
    [
        ("--downtime-limit", "fast"),
        ("--max-bandwidth", "12 parsecs"),
        ("--xbzrle-cache-size", "-1"),
        ("--cpu-throttle-initial", "0"),
        ("--multifd-channels", "300"),
    ],
)
def test_bad_values_are_usage_errors(args):
    r, _ = invoke(*args)
    assert r.exit_code == 2
    assert "Invalid value" in r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (("--xbzrle-cache-size", "3MiB"), "power of two"),
        (("--set", "bogus=1"), "unknown setting"),
        (
            ("--cpu-throttle-initial", "50", "--max-cpu-throttle", "40"),
            "below cpu-throttle-initial",
        ),
    ],
)
def test_invalid_combinations_raise_input_error(args, message):
    with pytest.raises(InputError, match=message):
        invoke(*args)


def test_with_settings_wrapper():
    seen = {}

    @click.command()
    @with_settings
    def cmd(settings, postcopy, **rest):
        seen.update(settings=settings, postcopy=postcopy, rest=rest)

    r = CliRunner().invoke(cmd, ["--downtime-limit", "1s"], catch_exceptions=False)
    assert r.exit_code == 0
    assert seen["settings"].downtime_limit == 1.0
    assert seen["postcopy"].allow is False and seen["rest"] == {}
