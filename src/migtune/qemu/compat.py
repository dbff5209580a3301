"""Refuse, before anything is touched, setting combinations a QEMU version rejects.

QEMU would refuse most of these itself, but only halfway through the set-up (one
capability applied, the next refused) and with messages that name internals.
Checking first keeps the source untouched and the message one clear line.
Rules: ``docs/qemu-migration.md`` §4.7 (XBZRLE), §5.5 (dirty-limit),
§6 (post-copy), §7 (multifd), §11 (ranges), §12 (version changes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from migtune.errors import InputError
from migtune.model import Settings
from migtune.settings import validate


@dataclass(frozen=True, order=True, slots=True)
class Version:
    major: int
    minor: int
    micro: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.micro}"


def parse_version(text: str) -> Version:
    m = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        raise InputError(f"cannot read QEMU version {text!r}")
    return Version(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def available_capabilities(reply: Iterable[dict]) -> set[str]:
    """Capability names from a ``query-migrate-capabilities`` reply."""
    return {str(c.get("capability")) for c in reply if isinstance(c, dict)}


def check(
    settings: Settings,
    version: str | Version,
    capabilities: Iterable[str] | None = None,
    *,
    allow_postcopy: bool = False,
    dest_qmp: bool = False,
) -> list[str]:
    """Raise :class:`InputError` for a combination ``version`` rejects; return warnings.

    ``capabilities`` is what the source QEMU offers (``query-migrate-capabilities``);
    ``dest_qmp`` says whether migtune can also configure the destination.
    """
    v = version if isinstance(version, Version) else parse_version(version)
    validate(settings)
    caps = {k for k, on in settings.capabilities.items() if on}
    if allow_postcopy:
        caps.add("postcopy-ram")
    warnings: list[str] = []

    if capabilities is not None:
        offered = set(capabilities)
        for cap in sorted(caps):
            if cap not in offered:
                raise InputError(f"QEMU {v} does not offer the migration capability {cap!r}")

    if "multifd" in caps and "xbzrle" in caps:
        if v >= Version(8, 1):
            raise InputError(f"QEMU {v} rejects XBZRLE together with multifd: choose one")
        warnings.append(f"QEMU {v} silently ignores XBZRLE when multifd is on")
    if settings.avail_switchover_bandwidth and v < Version(8, 2):
        raise InputError(f"avail-switchover-bandwidth needs QEMU 8.2 or later (this is {v})")
    if "dirty-limit" in caps:
        if v < Version(8, 1):
            raise InputError(f"the dirty-limit capability needs QEMU 8.1 or later (this is {v})")
        if "auto-converge" in caps:
            raise InputError("dirty-limit and auto-converge cannot be used together: choose one")
        warnings.append("dirty-limit needs KVM with a dirty ring (-accel kvm,dirty-ring-size=N)")
    if "postcopy-ram" in caps:
        if not dest_qmp:
            raise InputError(
                "post-copy must be enabled on the destination too: give --dest-qmp SOCKET"
            )
        if "multifd" in caps and v < Version(10, 1):
            warnings.append(f"post-copy with multifd is only considered safe from QEMU 10.1 ({v})")
    if "multifd" in caps and not dest_qmp:
        raise InputError(
            "multifd must be enabled on the destination before it listens: give --dest-qmp SOCKET"
        )
    if settings.multifd_channels is not None and "multifd" not in caps:
        warnings.append("multifd-channels has no effect without the multifd capability")
    if settings.xbzrle_cache_size is not None and "xbzrle" not in caps:
        warnings.append("xbzrle-cache-size has no effect without the xbzrle capability")
    throttle = (
        settings.cpu_throttle_initial,
        settings.cpu_throttle_increment,
        settings.max_cpu_throttle,
    )
    if any(x is not None for x in throttle) and "auto-converge" not in caps:
        warnings.append("CPU throttle parameters have no effect without auto-converge")
    return warnings
