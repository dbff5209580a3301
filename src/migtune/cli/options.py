"""Migration settings as command-line flags, shared by ``migrate``, ``lab run`` and ``simulate``.

``@migration_settings_options`` adds the flags; :func:`settings_from_options`
turns the parsed values into a :class:`~migtune.model.Settings` and
:func:`postcopy_rule_from_options` into the post-copy switch rule.  Values take
the units operators type (``300ms``, ``2s``, ``32MiB/s``, ``1Gbit/s``, ``4GiB``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from migtune.errors import InputError
from migtune.model import Settings
from migtune.settings import apply_assignment, check_qemu_version, setting_names, validate
from migtune.units import parse_duration, parse_rate, parse_size

# Keyword names the decorator adds; consumers pop them with pop_settings_options().
OPTION_NAMES = (
    "downtime_limit",
    "max_bandwidth",
    "xbzrle",
    "xbzrle_cache_size",
    "auto_converge",
    "cpu_throttle_initial",
    "cpu_throttle_increment",
    "max_cpu_throttle",
    "throttle_trigger_threshold",
    "postcopy",
    "postcopy_after_passes",
    "postcopy_after",
    "multifd",
    "multifd_channels",
    "avail_switchover_bandwidth",
    "set_",
)


# QEMU keeps sizes and rates in 64-bit integers; anything beyond is a typo, not a guest.
INT64_MAX = 2**63 - 1


class _UnitType(click.ParamType):
    """A click type backed by one of migtune's unit parsers (errors stay one line).

    Values are finite and within ``minimum``..``maximum``; a rate or size between 0 and
    one unit (``0.5B/s``) is refused, since QEMU takes whole bytes and would read 0
    (for ``max-bandwidth``: unlimited).
    """

    def __init__(
        self,
        name: str,
        parser: Callable[[str], Any],
        minimum: float | None = 0,
        maximum: float | None = INT64_MAX,
        whole_units: bool = False,
    ):
        self.name = name
        self.parser = parser
        self.minimum = minimum
        self.maximum = maximum
        self.whole_units = whole_units

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            out = self.parser(value)
        except InputError as exc:
            self.fail(str(exc), param, ctx)
        except (ValueError, OverflowError):
            self.fail(f"cannot read {self.name} {value!r}", param, ctx)
        if not math.isfinite(out):
            self.fail(f"{value!r} is not a finite {self.name}", param, ctx)
        if self.minimum is not None and out < self.minimum:
            self.fail(
                f"{value!r} is negative" if out < 0 else f"{value!r} is too small", param, ctx
            )
        if self.maximum is not None and out > self.maximum:
            self.fail(f"{value!r} is too large", param, ctx)
        if self.whole_units and 0 < out < 1:
            self.fail(f"{value!r} is less than 1 byte (0 means unlimited)", param, ctx)
        return out


class _QemuVersionType(click.ParamType):
    """A QEMU release inside the range migtune models (:data:`migtune.settings.SUPPORTED_QEMU`)."""

    name = "version"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return check_qemu_version(str(value))
        except InputError as exc:
            self.fail(str(exc), param, ctx)


QEMU_VERSION = _QemuVersionType()
DURATION = _UnitType("duration", parse_duration, maximum=10 * 365 * 86400.0)
RATE = _UnitType("rate", parse_rate, whole_units=True)
SIZE = _UnitType("size", parse_size)
# The simulator keeps per-page arrays: beyond 64 TiB (16 G pages) no machine has the memory.
GUEST_RAM = _UnitType("size", parse_size, minimum=4096, maximum=64 * 1024**4)
PERCENT = click.IntRange(1, 100)


# What --postcopy and --multifd need differ per command: a real migration must also set
# them on the destination (through --dest-qmp), the lab sets both of its QEMUs itself,
# and the simulator only models them.
POSTCOPY_HELP = {
    "migrate": "Allow switching to post-copy (needs --dest-qmp: the destination must enable "
    "it too). WARNING: if the migration fails after the switch, the VM is lost.",
    "lab": "Allow switching to post-copy (the lab enables it on both QEMUs). In a real "
    "migration a failure after the switch loses the VM.",
    "simulate": "Simulate a switch to post-copy (when: --postcopy-after-passes or "
    "--postcopy-after).",
}
MULTIFD_HELP = {
    "migrate": "Send RAM over several parallel connections (needs --dest-qmp: the "
    "destination must enable it too).",
    "lab": "Send RAM over several parallel connections (the lab enables it on both QEMUs).",
    "simulate": "Simulate RAM sent over several parallel connections (128-page packets).",
}


def migration_settings_options(
    f: Callable[..., Any] | None = None, *, command: str = "simulate"
) -> Callable[..., Any]:
    """Add the migration settings flags to a click command (see module docstring).

    Use as ``@migration_settings_options`` or ``@migration_settings_options(command=...)``
    with ``migrate``, ``lab`` or ``simulate``: the help of the flags that depend on the
    destination is worded for that command.
    """
    if f is None:
        return functools.partial(migration_settings_options, command=command)
    options = [
        click.option("--downtime-limit", type=DURATION, metavar="TIME",
                      help="Maximum pause at switch-over (300ms, 2s). QEMU default 300ms."),
        click.option("--max-bandwidth", type=RATE, metavar="RATE",
                      help="Pre-copy rate cap (32MiB/s, 1Gbit/s; 0 = unlimited). "
                      "QEMU default 128MiB/s."),
        click.option("--xbzrle/--no-xbzrle", default=None,
                     help="XBZRLE delta compression of re-sent pages."),
        click.option("--xbzrle-cache-size", type=SIZE, metavar="SIZE",
                     help="XBZRLE cache (power of two, e.g. 256MiB). QEMU default 64MiB."),
        click.option("--auto-converge/--no-auto-converge", default=None,
                     help="Throttle the guest's vCPUs when it dirties memory too fast."),
        click.option("--cpu-throttle-initial", type=PERCENT, metavar="PCT",
                     help="First throttle step, percent (default 20)."),
        click.option("--cpu-throttle-increment", type=PERCENT, metavar="PCT",
                     help="Throttle increase per step, percent (default 10)."),
        click.option("--max-cpu-throttle", type=PERCENT, metavar="PCT",
                     help="Throttle ceiling, percent (default 99)."),
        click.option("--throttle-trigger-threshold", type=PERCENT, metavar="PCT",
                     help="Throttle when dirtied bytes exceed this percent of sent bytes "
                     "(default 50)."),
        click.option("--postcopy", is_flag=True, default=False, help=POSTCOPY_HELP[command]),
        click.option("--postcopy-after-passes", type=click.IntRange(1), metavar="N",
                     help="Switch to post-copy once QEMU's dirty-sync-count reaches N "
                     "(default with --postcopy: 2, i.e. after the first full pass)."),
        click.option("--postcopy-after", type=DURATION, metavar="TIME",
                     help="Switch to post-copy after this long in pre-copy."),
        click.option("--multifd/--no-multifd", default=None, help=MULTIFD_HELP[command]),
        click.option("--multifd-channels", type=click.IntRange(1, 255), metavar="N",
                     help="Number of multifd connections (default 2)."),
        click.option("--avail-switchover-bandwidth", type=RATE, metavar="RATE",
                     help="Bandwidth to assume at switch-over (QEMU 8.2+; 0 = measured)."),
        click.option("--set", "set_", multiple=True, metavar="NAME=VALUE",
                     help="Any setting by its QEMU name, repeatable: "
                     + ", ".join(setting_names()) + "."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


@dataclass(frozen=True, slots=True)
class PostcopyRule:
    """Whether post-copy is allowed, and when to switch (``None``: not by this rule)."""

    allow: bool = False
    after_passes: int | None = None
    after: float | None = None

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`migtune.qemu.migrate.migrate`."""
        return {
            "allow_postcopy": self.allow,
            "postcopy_after_passes": self.after_passes,
            "postcopy_after": self.after,
        }


def settings_from_options(opts: dict[str, Any], base: Settings | None = None) -> Settings:
    """Settings from the decorator's keyword arguments (``None`` = not given: QEMU's own)."""
    s = Settings() if base is None else base
    s = dataclasses.replace(s, capabilities=dict(s.capabilities), extra=dict(s.extra))
    for name in (
        "downtime_limit",
        "max_bandwidth",
        "xbzrle_cache_size",
        "cpu_throttle_initial",
        "cpu_throttle_increment",
        "max_cpu_throttle",
        "throttle_trigger_threshold",
        "multifd_channels",
        "avail_switchover_bandwidth",
    ):
        value = opts.get(name)
        if value is not None:
            setattr(s, name, value)
    for flag, cap in (
        ("xbzrle", "xbzrle"),
        ("auto_converge", "auto-converge"),
        ("multifd", "multifd"),
    ):
        if opts.get(flag) is not None:
            s.capabilities[cap] = bool(opts[flag])
    if opts.get("postcopy"):
        s.capabilities["postcopy-ram"] = True
    for assignment in opts.get("set_") or ():
        s = apply_assignment(s, assignment)
    # Implied capabilities: asking for a cache size or channel count means wanting the feature,
    # unless it was switched off explicitly.
    if s.xbzrle_cache_size is not None and opts.get("xbzrle") is None:
        s.capabilities.setdefault("xbzrle", True)
    if s.multifd_channels is not None and opts.get("multifd") is None:
        s.capabilities.setdefault("multifd", True)
    validate(s)
    return s


def postcopy_rule_from_options(
    opts: dict[str, Any], settings: Settings | None = None, *, explicit: bool = False
) -> PostcopyRule:
    """The post-copy switch rule; the triggers without ``--postcopy`` are an error.

    With ``explicit`` (commands that drive a real migration) only ``--postcopy``
    allows post-copy: ``--set postcopy-ram=on`` alone is refused, since after the
    switch a network failure loses the VM.
    """
    asked = bool(settings and settings.capabilities.get("postcopy-ram"))
    allow = bool(opts.get("postcopy")) or (asked and not explicit)
    if explicit and asked and not allow:
        raise InputError(
            "postcopy-ram=on needs --postcopy: after the switch to post-copy neither side "
            "holds the whole VM, so if the network fails the VM is lost"
        )
    passes, after = opts.get("postcopy_after_passes"), opts.get("postcopy_after")
    if not allow and (passes is not None or after is not None):
        raise InputError("--postcopy-after-passes/--postcopy-after need --postcopy")
    return PostcopyRule(allow, passes, after)


def pop_settings_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the decorator's keyword arguments from ``kwargs`` and return them."""
    return {name: kwargs.pop(name) for name in OPTION_NAMES if name in kwargs}


def with_settings(f: Callable[..., Any]) -> Callable[..., Any]:
    """Like :func:`migration_settings_options`, but the command receives ``settings`` and
    ``postcopy`` (a :class:`PostcopyRule`) instead of the individual flags."""

    @migration_settings_options
    @functools.wraps(f)
    def wrapper(**kwargs: Any) -> Any:
        opts = pop_settings_options(kwargs)
        settings = settings_from_options(opts)
        return f(settings=settings, postcopy=postcopy_rule_from_options(opts, settings), **kwargs)

    return wrapper


# The platforms tune, preflight and their commands know (migtune.analysis.tune.PLATFORMS;
# kept here so --help does not import the simulator; tests check they agree).
PLATFORMS = ("proxmox", "libvirt", "nova", "kubevirt", "qemu")


def history_db_option(dest: str = "db", used_for: str = "") -> Callable[..., Any]:
    """``--db PATH``: the history store, for every command that reads or writes it."""
    return click.option(
        "--db",
        dest,
        type=click.Path(dir_okay=False),
        metavar="PATH",
        help=f"The history database{used_for} (default: $MIGTUNE_DB, else "
        "$XDG_DATA_HOME/migtune/history.db, else ~/.local/share/migtune/history.db).",
    )
