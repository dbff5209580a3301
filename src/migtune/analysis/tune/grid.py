"""What each platform can set: the candidate grids ``tune`` searches.

Only settings the platform exposes are varied, the rest stay as the platform fixes them
(docs/platforms.md): Proxmox VE always runs XBZRLE with a cache of RAM/10 rounded up to
a power of two and auto-converge, and doubles its downtime limit on stalls; Nova steps
its downtime up to ``live_migration_downtime`` and acts at its completion timeout;
KubeVirt has its completion time per GiB, progress timeout and post-copy switch; plain
QEMU and libvirt can set every migration parameter and capability.  The platform's
policy runs in the simulation loop (:mod:`migtune.sim.steer`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from migtune.model import Settings
from migtune.units import MiB, format_bits, format_bytes, format_duration, format_rate

PLATFORMS = ("proxmox", "libvirt", "nova", "kubevirt", "qemu")
FEATURES = ("xbzrle", "auto-converge", "postcopy", "multifd")
# post-copy loses the VM if the network fails after the switch: only when asked for
DEFAULT_ALLOW = ("xbzrle", "auto-converge", "multifd")
DOWNTIMES = (0.1, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
# above the downtime limit only a few values: they show what giving on it would buy
EXTRA_ABOVE_LIMIT = 2
NOVA_FINAL_DOWNTIMES_MS = (500, 1000, 2000, 5000, 10000, 30000)
KUBEVIRT_COMPLETION_PER_GIB = (150.0, 400.0, 800.0)
COMMON_LINKS_BITS = (1e9, 10e9, 25e9)
# TCP/IP framing leaves about this share of a link's bit rate for the stream
LINK_EFFICIENCY = 0.94
# assumption: QEMU's TLS (or KubeVirt's proxy) encrypts one stream at about this rate
TLS_RATE = 800 * MiB
MULTIFD_CHANNELS = 4


@dataclass(frozen=True)
class Transport:
    """How RAM travels: ``observed`` (as in the log), ``insecure`` (direct TCP instead of
    an SSH tunnel), ``tls`` (encrypted in QEMU), ``dedicated`` (another network)."""

    name: str
    link_rate: float  # bytes/s the stream can reach
    assumption: str | None = None  # said when the rate is assumed, not measured

    def label(self) -> str:
        if self.name == "observed":
            return "as observed"
        return f"{self.name} {format_bits(self.link_rate / LINK_EFFICIENCY)}"

    def to_dict(self) -> dict:
        return {"name": self.name, "link_rate": self.link_rate, "assumption": self.assumption}


@dataclass
class Knobs:
    """One candidate's platform-level choices (what the commands set)."""

    downtime: float | None = None  # s: QEMU's limit (Proxmox: the initial one)
    max_bandwidth: float | None = None  # bytes/s; 0 = unlimited
    xbzrle_cache: int | None = None
    auto_converge: bool = False
    aggressive_throttle: bool = False  # cpu-throttle-initial 30, increment 20
    postcopy: bool = False
    multifd: int | None = None
    # Nova
    nova_downtime_ms: int | None = None
    nova_steps: int | None = None
    nova_delay: float | None = None
    nova_timeout: float | None = None
    nova_action: str | None = None
    # KubeVirt
    kv_completion_per_gib: float | None = None
    kv_disruption: bool | None = None
    extra: dict = field(default_factory=dict)


def pow2_ceil(n: float) -> int:
    return 1 << max(12, math.ceil(math.log2(max(4096.0, n))))


def proxmox_cache(ram: int) -> int:
    """qemu-server's XBZRLE cache: RAM/10 rounded up to a power of two."""
    return pow2_ceil(ram / 10)


def downtimes(max_downtime: float | None) -> list[float]:
    if max_downtime is None:
        return list(DOWNTIMES)
    below = [d for d in DOWNTIMES if d <= max_downtime + 1e-9]
    above = [d for d in DOWNTIMES if d > max_downtime + 1e-9][:EXTRA_ABOVE_LIMIT]
    if not below:
        below = [max_downtime]
    elif below[-1] < max_downtime:
        below.append(max_downtime)  # the limit itself is the least restrictive value
    return below + above


def settings_for(k: Knobs, base: Settings, platform: str) -> Settings:
    """QEMU settings a candidate puts in force (capabilities all explicit)."""
    caps = {
        "xbzrle": bool(k.xbzrle_cache),
        "auto-converge": k.auto_converge,
        "postcopy-ram": k.postcopy,
        "multifd": bool(k.multifd),
    }
    s = replace(
        base,
        capabilities=caps,
        downtime_limit=k.downtime,
        max_bandwidth=k.max_bandwidth,
        xbzrle_cache_size=k.xbzrle_cache,
        multifd_channels=k.multifd,
        cpu_throttle_initial=30 if k.aggressive_throttle else None,
        cpu_throttle_increment=20 if k.aggressive_throttle else None,
        max_cpu_throttle=None,
        extra={},
    )
    return s


def is_default(k: Knobs, platform: str) -> bool:
    """The platform's own settings: what runs when nobody tunes anything."""
    plain = not (k.auto_converge or k.postcopy or k.multifd or k.aggressive_throttle)
    if platform == "proxmox":
        return k.downtime == 0.1
    if platform == "nova":
        return plain and (k.nova_downtime_ms, k.nova_steps, k.nova_delay, k.nova_action) == (
            500,
            10,
            75.0,
            "abort",
        )
    if platform == "kubevirt":
        return plain and k.kv_completion_per_gib == 150.0 and not k.kv_disruption
    return plain and not k.xbzrle_cache and k.downtime == 0.3


def policy_for(k: Knobs, platform: str) -> str:
    """The ``--policy`` spec that runs the platform's behaviour in the loop."""
    if platform == "proxmox":
        return f"proxmox:downtime={int(round((k.downtime or 0.1) * 1000))}ms"
    if platform == "nova":
        return (
            f"nova:downtime={k.nova_downtime_ms}ms,steps={k.nova_steps},delay={k.nova_delay:g}s,"
            f"timeout={k.nova_timeout:g}s,action={k.nova_action}"
        )
    if platform == "kubevirt":
        d = "yes" if k.kv_disruption else "no"
        return f"kubevirt:completion_per_gib={k.kv_completion_per_gib:g}s,disruption={d}"
    return "fixed"


def describe(k: Knobs, platform: str) -> str:
    """A short label: what is set, in the platform's terms."""
    parts: list[str] = []
    if platform == "nova":
        parts.append(f"downtime {k.nova_downtime_ms} ms in {k.nova_steps} steps")
        if k.nova_delay != 75:
            parts.append(f"delay {k.nova_delay:g} s/GiB")
        parts.append(f"timeout {k.nova_timeout:g} s/GiB {k.nova_action}")
    elif platform == "kubevirt":
        parts.append(f"completion {k.kv_completion_per_gib:g} s/GiB")
        if k.kv_disruption:
            parts.append("workload disruption")
    else:
        parts.append(f"downtime {format_duration(k.downtime)}")
    if k.max_bandwidth:
        parts.append(f"cap {format_rate(k.max_bandwidth)}")
    if k.xbzrle_cache and platform != "proxmox":
        parts.append(f"XBZRLE {format_bytes(k.xbzrle_cache, 0)}")
    if k.auto_converge and platform != "proxmox":
        parts.append("auto-converge" + (" 30+20%" if k.aggressive_throttle else ""))
    if k.multifd:
        parts.append(f"multifd x{k.multifd}")
    if k.postcopy:
        parts.append("post-copy")
    return ", ".join(parts)


def feature_sets(platform: str, allow: set[str], ram: int) -> list[Knobs]:
    """The capability combinations a platform can choose (before downtime and transport)."""
    if platform == "proxmox":
        return [Knobs(xbzrle_cache=proxmox_cache(ram), auto_converge=True)]
    out = [Knobs()]
    ac = "auto-converge" in allow
    if ac:
        out.append(Knobs(auto_converge=True))
    if platform == "kubevirt":
        # MigrationPolicy: allowAutoConverge, allowPostCopy (no XBZRLE, no downtime)
        if "postcopy" in allow:
            out += [Knobs(postcopy=True)] + ([Knobs(postcopy=True, auto_converge=True)] * ac)
        return out
    if platform == "nova":
        # nova.conf: permit_auto_converge (only without post-copy), permit_post_copy,
        # parallel_connections; no XBZRLE option
        if "postcopy" in allow:
            out.append(Knobs(postcopy=True))
        if "multifd" in allow:
            out += [Knobs(multifd=MULTIFD_CHANNELS)] + (
                [Knobs(multifd=MULTIFD_CHANNELS, auto_converge=True)] * ac
            )
        return out
    if ac:
        out.append(Knobs(auto_converge=True, aggressive_throttle=True))
    if "xbzrle" in allow:
        for cache in sorted({proxmox_cache(ram), pow2_ceil(ram / 4)}):
            out.append(Knobs(xbzrle_cache=cache))
            if ac:
                out.append(Knobs(xbzrle_cache=cache, auto_converge=True))
    if "multifd" in allow:
        out.append(Knobs(multifd=MULTIFD_CHANNELS))
        if ac:
            out.append(Knobs(multifd=MULTIFD_CHANNELS, auto_converge=True))
    if "postcopy" in allow:
        out.append(Knobs(postcopy=True))
        if ac:
            out.append(Knobs(postcopy=True, auto_converge=True))
    return out


def timing_sets(platform: str, max_downtime: float | None, ram: int, postcopy: bool) -> list[dict]:
    """The downtime / timeout choices a platform exposes, as Knobs fields."""
    if platform == "nova":
        out = []
        finals = [
            d for d in NOVA_FINAL_DOWNTIMES_MS if max_downtime is None or d <= max_downtime * 1000
        ]
        finals = finals or [NOVA_FINAL_DOWNTIMES_MS[0]]
        finals += [d for d in NOVA_FINAL_DOWNTIMES_MS if d not in finals][:1]
        for final in finals:
            for steps, delay in ((10, 75.0), (3, 3.0)):
                for action in ("abort", "force_complete"):
                    out.append(
                        dict(nova_downtime_ms=final, nova_steps=steps, nova_delay=delay,
                             nova_timeout=800.0, nova_action=action)
                    )  # fmt: skip
        return out
    if platform == "kubevirt":
        return [
            dict(downtime=0.3, kv_completion_per_gib=c, kv_disruption=d)
            for c in KUBEVIRT_COMPLETION_PER_GIB
            for d in ((False, True) if not postcopy else (True,))
        ]
    return [dict(downtime=d) for d in downtimes(max_downtime)]


def transports(
    observed_link: float,
    findings: set[str],
    link: float | None,
    platform: str,
) -> list[Transport]:
    """The observed transport, plus faster ones when the log shows the transport is what
    limits the rate (``ssh-tunnel-bottleneck``, ``link-bound``) or ``--link`` is given."""
    out = [Transport("observed", observed_link)]
    tunnel = "ssh-tunnel-bottleneck" in findings
    bound = "link-bound" in findings
    if link is not None:
        rates = [(link * LINK_EFFICIENCY, None)]
    else:
        rates = [
            (bits / 8 * LINK_EFFICIENCY, f"assumed: a {format_bits(bits / 8)} link")
            for bits in COMMON_LINKS_BITS
            if bits / 8 * LINK_EFFICIENCY > observed_link * 1.2
        ]
    if tunnel:
        for rate, why in rates:
            out.append(Transport("insecure", rate, why))
            if platform != "proxmox":  # qemu-server has no TLS transport of its own
                tls_why = f"assumed: TLS encrypts one stream at about {format_bits(TLS_RATE)}"
                out.append(Transport("tls", min(rate, TLS_RATE), tls_why))
    elif bound or link is not None:
        for rate, why in rates:
            if rate > observed_link * 1.05:
                out.append(Transport("dedicated", rate, why))
    return out


def grid(
    platform: str,
    allow: set[str],
    ram: int,
    base: Settings,
    max_downtime: float | None,
    cap: float | None,
) -> list[Knobs]:
    """Every combination of what ``platform`` can set (transport aside)."""
    out = []
    for feat in feature_sets(platform, allow, ram):
        for timing in timing_sets(platform, max_downtime, ram, feat.postcopy):
            k = replace(feat, **timing)
            if platform == "nova" and k.postcopy and k.auto_converge:
                continue  # Nova drops auto-converge when post-copy is permitted
            k.max_bandwidth = cap if cap is not None else 0.0
            out.append(k)
    return out
