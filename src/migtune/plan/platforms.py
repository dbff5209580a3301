"""What each platform migrates with by default, what the planner may change, and the
commands that apply a VM's planned settings (docs/platforms.md §1.7-1.8, §2.1).

``base`` is what an operator gets without tuning (the baselines use it); the planner's
own candidates, least intrusive first, are ``open`` (no cap beyond one the fleet file
gives, the platform's downtime limit or a lower budget), ``budget`` (the VM's whole
downtime budget as the limit, when it is above the platform's) and, where the platform
leaves it off, ``auto-converge`` (``budget`` plus QEMU's vCPU throttling).
"""

from __future__ import annotations

import dataclasses
import math

from migtune.analysis.recommend import caps, qmp
from migtune.model import Settings
from migtune.settings import (
    QEMU_DEFAULT_DOWNTIME_LIMIT,
    QEMU_DEFAULT_MAX_BANDWIDTH,
)
from migtune.units import MiB

PROXMOX_DEFAULT_DOWNTIME = 0.1  # s: qemu-server's migrate_downtime default (§1.8)
PROXMOX_UNCAPPED = 16 * 1024**3  # B/s: what qemu-server sets when no limit applies (§1.8)
# the preference order of the planner's candidates (the first that converges wins);
# "tune" is `migtune tune`'s recommendation, there only when asked for (--tune)
CANDIDATES = ("tune", "open", "budget", "auto-converge")


def proxmox_cache(ram_bytes: int) -> int:
    """Proxmox's XBZRLE cache: a tenth of the RAM rounded up to a power of two (§1.5)."""
    return 1 << max(12, math.ceil(math.log2(max(ram_bytes / 10, 4096))))


def platform_policy(platform: str) -> str | None:
    """How the platform steers a running migration, as ``migrate --policy`` names it:
    qemu-server doubles the downtime limit of a stalled migration (§1.4); libvirt and
    plain QEMU leave the settings alone."""
    return "proxmox" if platform == "proxmox" else None


def base_downtime(platform: str) -> float:
    return PROXMOX_DEFAULT_DOWNTIME if platform == "proxmox" else QEMU_DEFAULT_DOWNTIME_LIMIT


def _cap(*caps_: float | None) -> float:
    """The lowest of the given caps (0: none)."""
    given = [c for c in caps_ if c]
    return float(min(given)) if given else 0.0


def base_settings(platform: str, ram_bytes: int, vm_cap: float | None) -> Settings:
    """What the platform migrates with when nobody tunes anything."""
    if platform == "proxmox":
        # auto-converge and XBZRLE always on, cache RAM/10, downtime 100 ms (§1.7, §1.8)
        return Settings(
            downtime_limit=PROXMOX_DEFAULT_DOWNTIME,
            max_bandwidth=_cap(vm_cap, PROXMOX_UNCAPPED),
            xbzrle_cache_size=proxmox_cache(ram_bytes),
            capabilities={"xbzrle": True, "auto-converge": True},
        )
    if platform == "libvirt":
        # libvirt lifts QEMU's 128 MiB/s cap unless told a bandwidth (§2.1)
        return Settings(downtime_limit=QEMU_DEFAULT_DOWNTIME_LIMIT, max_bandwidth=_cap(vm_cap))
    return Settings(
        downtime_limit=QEMU_DEFAULT_DOWNTIME_LIMIT,
        max_bandwidth=_cap(vm_cap, QEMU_DEFAULT_MAX_BANDWIDTH),
    )


def candidate_settings(
    platform: str, ram_bytes: int, vm_cap: float | None, downtime: float
) -> dict[str, Settings]:
    """The planner's candidates for one VM, least intrusive first."""
    base = base_settings(platform, ram_bytes, vm_cap)
    opened = dataclasses.replace(
        base,
        downtime_limit=min(downtime, base.downtime_limit or downtime),
        max_bandwidth=_cap(vm_cap),
        capabilities=dict(base.capabilities),
    )
    out = {"open": opened}
    widest = opened
    if downtime > (opened.downtime_limit or 0):
        widest = out["budget"] = dataclasses.replace(
            opened, downtime_limit=downtime, capabilities=dict(opened.capabilities)
        )
    if platform != "proxmox":  # Proxmox has it on already
        out["auto-converge"] = dataclasses.replace(
            widest, capabilities={**widest.capabilities, "auto-converge": True}
        )
    return out


def settings_dict(s: Settings) -> dict[str, object]:
    """The settings as QEMU names them (JSON: seconds, bytes/s, bytes)."""
    return {
        "downtime-limit": s.downtime_limit,
        "max-bandwidth": s.max_bandwidth,
        "xbzrle": bool(s.capabilities.get("xbzrle")),
        "xbzrle-cache-size": s.xbzrle_cache_size if s.capabilities.get("xbzrle") else None,
        "auto-converge": bool(s.capabilities.get("auto-converge")),
        "multifd": bool(s.capabilities.get("multifd")),
        "multifd-channels": s.multifd_channels if s.capabilities.get("multifd") else None,
        "postcopy-ram": bool(s.capabilities.get("postcopy-ram")),
    }


def commands(platform: str, vm: str, s: Settings) -> list[str]:
    """The commands that migrate VM ``vm`` with settings ``s`` on ``platform``
    (``TARGET`` and ``MIGRATION-IP`` stand for what the plan cannot know)."""
    ms = int(round((s.downtime_limit or 0) * 1000))
    cap = s.max_bandwidth or 0
    if platform == "proxmox":
        out = []
        if not math.isclose(s.downtime_limit or 0, PROXMOX_DEFAULT_DOWNTIME):
            out.append(f"qm set {vm} --migrate_downtime {(s.downtime_limit or 0):g}")
        if cap and cap < PROXMOX_UNCAPPED:
            out.append(f"qm set {vm} --migrate_speed {max(1, int(cap // MiB))}")
        out.append(f"qm migrate {vm} TARGET --online")
        return out
    if platform == "libvirt":
        flags = "--live"
        if s.capabilities.get("auto-converge"):
            flags += " --auto-converge"
        if cap:
            flags += f" --bandwidth {max(1, int(cap // MiB))}"
        return [
            f"virsh migrate {flags} {vm} qemu+ssh://TARGET/system &",
            f"virsh migrate-setmaxdowntime {vm} {ms}  # once the job runs",
        ]
    out = []
    if s.capabilities.get("auto-converge"):
        out.append(caps(**{"auto-converge": True}))
    out.append(qmp("migrate-set-parameters", {"downtime-limit": ms, "max-bandwidth": int(cap)}))
    out.append(qmp("migrate", {"uri": "tcp:MIGRATION-IP:PORT"}))
    return out
