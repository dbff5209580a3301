"""Recommendations with the exact command for each platform.

Each function returns one :class:`Recommendation` for one setting, with commands for
Proxmox VE (``qm``, ``/etc/pve/datacenter.cfg``), libvirt (``virsh``) and plain QEMU
(QMP), and a note where a platform cannot do it (docs/platforms.md §1.7-1.8, §2.1;
docs/qemu-migration.md §11).  Values are computed by the caller in base units; this module
only converts them to each tool's units and rounds them to something a person would type.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from migtune.analysis.findings import Recommendation
from migtune.model import Run, Settings
from migtune.units import MiB, format_bits, format_bytes, format_duration


@dataclass(slots=True)
class Target:
    """Names to put into commands: the VM id (Proxmox) or domain (libvirt)."""

    vmid: str = "VMID"
    domain: str = "DOMAIN"
    node: str = "TARGET"


def target_of(run: Run) -> Target:
    """Fill in only what the log names: a Proxmox id is not a libvirt domain name."""
    vm = str(run.vm) if run.vm else None
    proxmox_id = vm if run.format == "proxmox" and vm and vm.isdigit() else "VMID"
    domain = vm if run.format == "libvirt" and vm else "DOMAIN"
    return Target(vmid=proxmox_id, domain=domain, node=run.target or "TARGET")


def qmp(command: str, arguments: dict) -> str:
    return json.dumps({"execute": command, "arguments": arguments})


def caps(**states: bool) -> str:
    return qmp(
        "migrate-set-capabilities",
        {
            "capabilities": [
                {"capability": k.replace("_", "-"), "state": v} for k, v in states.items()
            ]
        },
    )


def nice_seconds(seconds: float) -> float:
    """Round a downtime limit up to a value worth typing: 50 ms / 100 ms / 1 s / 10 s steps."""
    if seconds <= 0:
        return 0.05
    for limit, step in ((1.0, 0.05), (10.0, 0.1), (100.0, 1.0)):
        if seconds <= limit:
            return round(math.ceil(seconds / step - 1e-9) * step, 3)
    return float(math.ceil(seconds / 10.0) * 10)


def nice_mib(rate: float) -> int:
    """Round a rate up to whole MiB/s, in steps of 8 MiB/s above 64 MiB/s."""
    mib = rate / MiB
    step = 8 if mib > 64 else 1
    return max(1, int(math.ceil(mib / step) * step))


PROXMOX_NO_POSTCOPY = "Proxmox VE has no post-copy switch: qemu-server always migrates pre-copy."
PROXMOX_NO_MULTIFD = "Proxmox VE has no multifd (parallel connections) option: one stream always."
PROXMOX_HAS_AUTOCONVERGE = (
    "Proxmox VE already enables auto-converge on every migration; nothing to switch on."
)
PROXMOX_XBZRLE_FIXED = (
    "Proxmox VE always enables XBZRLE and fixes its cache at RAM/10 rounded up to a power of "
    "two; there is no option to change or disable it."
)


def downtime_limit(
    seconds: float, tgt: Target, *, proxmox_autoraise: bool = True
) -> Recommendation:
    s = nice_seconds(seconds)
    ms = int(round(s * 1000))
    notes = {
        "libvirt": "Works while the migration runs; libvirt never raises it by itself.",
        "qmp": "Takes effect at the next switch-over check.",
    }
    if proxmox_autoraise:
        notes["proxmox"] = (
            "Proxmox doubles the limit by itself after every 6 polls in which the remaining "
            "data grew; setting it up front saves those rounds."
        )
    return Recommendation(
        setting="downtime-limit",
        action=f"allow a downtime of {format_duration(s)}"
        + (f" ({ms} ms)" if s >= 1 else "")
        + " for the final stop-and-copy",
        commands={
            "proxmox": [f"qm set {tgt.vmid} --migrate_downtime {s:g}"],
            "libvirt": [f"virsh migrate-setmaxdowntime {tgt.domain} {ms}"],
            "qmp": [qmp("migrate-set-parameters", {"downtime-limit": ms})],
        },
        notes=notes,
    )


def bandwidth(rate: float, tgt: Target, why: str) -> Recommendation:
    """Set (or, with ``rate == 0``, remove) the migration bandwidth cap."""
    if rate <= 0:
        return Recommendation(
            setting="max-bandwidth",
            action=f"remove the migration bandwidth cap ({why})",
            commands={
                "proxmox": [
                    f"qm set {tgt.vmid} --migrate_speed 0",
                    "# and drop 'migration=' from the 'bwlimit:' line of /etc/pve/datacenter.cfg",
                ],
                "libvirt": [f"virsh migrate-setspeed {tgt.domain} 8796093022207"],
                "qmp": [qmp("migrate-set-parameters", {"max-bandwidth": 0})],
            },
            notes={
                "proxmox": "With neither migrate_speed nor bwlimit set, Proxmox lets QEMU run unlimited.",
                "libvirt": "libvirt already runs unlimited unless --bandwidth or migrate-setspeed was used.",
                "qmp": "0 means unlimited; QEMU's own default is 128 MiB/s (32 MiB/s before 5.2).",
            },
        )
    mib = nice_mib(rate)
    return Recommendation(
        setting="max-bandwidth",
        action=f"allow the migration {mib} MiB/s ({format_bits(mib * MiB)}) ({why})",
        commands={
            "proxmox": [
                f"qm set {tgt.vmid} --migrate_speed {mib}",
                f"# or for all VMs, in /etc/pve/datacenter.cfg: bwlimit: migration={mib * 1024}",
            ],
            "libvirt": [f"virsh migrate-setspeed {tgt.domain} {mib}"],
            "qmp": [qmp("migrate-set-parameters", {"max-bandwidth": mib * MiB})],
        },
        notes={
            "proxmox": "migrate_speed is MiB/s, bwlimit KiB/s; the lower non-zero of the two applies.",
            "libvirt": "MiB/s; works while the migration runs (or pass --bandwidth to virsh migrate).",
        },
    )


def faster_network(tgt: Target, why: str, need: float | None = None) -> Recommendation:
    extra = f" of at least {format_bits(need)}" if need else ""
    return Recommendation(
        setting="migration-network",
        action=f"send migration traffic over a faster, dedicated network{extra} ({why})",
        commands={
            "proxmox": ["# /etc/pve/datacenter.cfg", "migration: type=secure,network=CIDR"],
            "libvirt": [
                f"virsh migrate --live {tgt.domain} qemu+ssh://{tgt.node}/system tcp://MIGRATION-IP"
            ],
            "qmp": [qmp("migrate", {"uri": "tcp:MIGRATION-IP:PORT"})],
        },
        notes={
            "proxmox": "CIDR is the subnet of the fast network; every node needs an address in it.",
            "libvirt": "The last argument (migrateuri) picks the address QEMU streams to.",
        },
    )


def insecure_transport(tgt: Target, why: str) -> Recommendation:
    return Recommendation(
        setting="migration-type",
        action=f"stream RAM directly instead of through SSH ({why})",
        commands={
            "proxmox": ["# /etc/pve/datacenter.cfg", "migration: type=insecure,network=CIDR"],
            "libvirt": [
                f"virsh migrate --live {tgt.domain} qemu+ssh://{tgt.node}/system  # without --tunnelled",
                f"virsh migrate --live --tls {tgt.domain} qemu+ssh://{tgt.node}/system  # encrypted, in QEMU",
            ],
            "qmp": [qmp("migrate", {"uri": "tcp:MIGRATION-IP:PORT"})],
        },
        notes={
            "proxmox": "Only on a trusted, isolated network: RAM (keys, passwords) crosses it in clear text.",
            "libvirt": "--tls encrypts inside QEMU and avoids the single-threaded tunnel.",
        },
    )


def auto_converge(tgt: Target) -> Recommendation:
    return Recommendation(
        setting="auto-converge",
        action="let QEMU throttle the guest's vCPUs until the dirty rate falls below the link rate",
        commands={
            "proxmox": [],
            "libvirt": [
                f"virsh migrate --live --auto-converge {tgt.domain} qemu+ssh://{tgt.node}/system"
            ],
            "qmp": [
                caps(**{"auto-converge": True}),
                qmp(
                    "migrate-set-parameters",
                    {"cpu-throttle-initial": 30, "cpu-throttle-increment": 20},
                ),
            ],
        },
        notes={
            "proxmox": PROXMOX_HAS_AUTOCONVERGE,
            "qmp": "Set before 'migrate'. Throttling slows the guest; device/DMA writes are not throttled.",
        },
    )


def postcopy(tgt: Target) -> Recommendation:
    return Recommendation(
        setting="postcopy-ram",
        action="switch to post-copy after the first pass: the guest runs on the target and pulls pages",
        commands={
            "proxmox": [],
            "libvirt": [
                f"virsh migrate --live --postcopy --postcopy-after-precopy {tgt.domain} "
                f"qemu+ssh://{tgt.node}/system"
            ],
            "qmp": [
                caps(**{"postcopy-ram": True}) + "  # on source and destination",
                qmp("migrate-start-postcopy", {}),
            ],
        },
        notes={
            "proxmox": PROXMOX_NO_POSTCOPY,
            "libvirt": "If the network fails during post-copy the guest is lost on both sides.",
        },
    )


def multifd(tgt: Target, channels: int = 4) -> Recommendation:
    return Recommendation(
        setting="multifd",
        action=f"send RAM over {channels} parallel connections to use more than one core and stream",
        commands={
            "proxmox": [],
            "libvirt": [
                f"virsh migrate --live --parallel --parallel-connections {channels} {tgt.domain} "
                f"qemu+ssh://{tgt.node}/system"
            ],
            "qmp": [
                caps(multifd=True) + "  # on source and destination",
                qmp("migrate-set-parameters", {"multifd-channels": channels}),
            ],
        },
        notes={
            "proxmox": PROXMOX_NO_MULTIFD,
            "qmp": "multifd cannot be combined with XBZRLE (QEMU 8.1+ rejects it).",
        },
    )


def xbzrle_cache(size: int, tgt: Target) -> Recommendation:
    size = 1 << max(12, math.ceil(math.log2(max(size, 4096))))  # QEMU needs a power of two
    return Recommendation(
        setting="xbzrle-cache-size",
        action=f"give XBZRLE a {format_bytes(size)} cache so re-dirtied pages are still in it",
        commands={
            "proxmox": [],
            "libvirt": [f"virsh migrate-compcache {tgt.domain} --size {size}"],
            "qmp": [qmp("migrate-set-parameters", {"xbzrle-cache-size": size})],
        },
        notes={
            "proxmox": PROXMOX_XBZRLE_FIXED,
            "qmp": "Resizing during a migration empties the cache; set it before 'migrate'.",
        },
    )


def disable_xbzrle(tgt: Target) -> Recommendation:
    return Recommendation(
        setting="xbzrle",
        action="turn XBZRLE off: the pages change too much to be delta-encoded, so it only burns CPU",
        commands={
            "proxmox": [],
            "libvirt": [
                f"virsh migrate --live {tgt.domain} qemu+ssh://{tgt.node}/system  # without --compressed"
            ],
            "qmp": [caps(xbzrle=False)],
        },
        notes={"proxmox": PROXMOX_XBZRLE_FIXED},
    )


def upgrade_target(tgt: Target, machine: str | None, qemu: str | None) -> Recommendation:
    older = f" (or pin the VM to a machine version that QEMU {qemu} has)" if qemu else ""
    return Recommendation(
        setting="target-qemu-version",
        action=f"upgrade QEMU on {tgt.node} to the source's version{older}",
        commands={
            "proxmox": [
                f"ssh root@{tgt.node} 'apt update && apt full-upgrade'",
                f"# or: qm set {tgt.vmid} --machine MACHINE-VERSION-OF-TARGET  (takes effect after a VM restart)",
            ],
            "libvirt": [
                f"virsh dumpxml {tgt.domain} | grep machine  # must exist in the target's 'virsh capabilities'"
            ],
            "qmp": ["# start the destination QEMU with the same -machine " + (machine or "TYPE")],
        },
        notes={"proxmox": "Keep all cluster nodes on the same qemu-server / pve-qemu-kvm version."},
    )


IN_THE_GUEST = "No migration setting does this: it is done inside the guest (or by its owner)."


def throttle_note(tgt: Target) -> Recommendation:
    """Reduce the guest's write load: the one remedy that needs no platform support."""
    return Recommendation(
        setting="workload",
        action="migrate when the guest writes less memory (off-peak), or pause the busy service",
        # Every recommendation carries the three platform keys (a README contract): empty
        # lists, since this is done inside the guest, and a note saying so.
        commands={"proxmox": [], "libvirt": [], "qmp": []},
        notes={
            "all": "Fewer re-dirtied pages per second is the surest way to converge.",
            **{p: IN_THE_GUEST for p in ("proxmox", "libvirt", "qmp")},
        },
    )


PROXMOX_THROTTLE_FIXED = (
    "Proxmox VE leaves auto-converge's throttle at QEMU's defaults (start 20 %, +10 % per "
    "step, ceiling 99 %); qemu-server has no option to change them."
)


def max_cpu_throttle(pct: int, tgt: Target) -> Recommendation:
    """Let auto-converge throttle harder: its ceiling (QEMU default 99 %) was reached."""
    return Recommendation(
        setting="max-cpu-throttle",
        action=f"let auto-converge throttle the vCPUs up to {pct}% (max-cpu-throttle)",
        commands={
            "proxmox": [],
            "libvirt": [
                f"virsh qemu-monitor-command {tgt.domain} "
                + "'"
                + qmp("migrate-set-parameters", {"max-cpu-throttle": pct})
                + "'"
            ],
            "qmp": [qmp("migrate-set-parameters", {"max-cpu-throttle": pct})],
        },
        notes={
            "proxmox": PROXMOX_THROTTLE_FIXED,
            "libvirt": "virsh has no flag for the ceiling; qemu-monitor-command works but marks "
            "the domain as tainted.",
            "qmp": "Takes effect at the throttle's next step, also during a migration.",
        },
    )


def throttle_steps(initial: int, increment: int, tgt: Target) -> Recommendation:
    """Reach the throttle ceiling sooner: a higher start and bigger steps."""
    return Recommendation(
        setting="cpu-throttle-increment",
        action=f"throttle sooner and in bigger steps: start at {initial}%, +{increment}% per step",
        commands={
            "proxmox": [],
            "libvirt": [
                f"virsh migrate --live --auto-converge --auto-converge-initial {initial} "
                f"--auto-converge-increment {increment} {tgt.domain} qemu+ssh://{tgt.node}/system"
            ],
            "qmp": [
                qmp(
                    "migrate-set-parameters",
                    {"cpu-throttle-initial": initial, "cpu-throttle-increment": increment},
                )
            ],
        },
        notes={"proxmox": PROXMOX_THROTTLE_FIXED},
    )


def start_postcopy(tgt: Target) -> Recommendation:
    """Post-copy was allowed but never started: start it."""
    return Recommendation(
        setting="postcopy-start",
        action="post-copy is allowed but was not started: switch to it after the first pass",
        commands={
            "proxmox": [],
            "libvirt": [f"virsh migrate-postcopy {tgt.domain}  # while the migration runs"],
            "qmp": [qmp("migrate-start-postcopy", {})],
        },
        notes={
            "proxmox": PROXMOX_NO_POSTCOPY,
            "libvirt": "Or start the migration with --postcopy-after-precopy. If the network "
            "fails during post-copy the guest is lost on both sides.",
        },
    )


# -- what is already in force ----------------------------------------------------------
UNLIMITED_BANDWIDTH = 2**60  # libvirt's "unlimited" is INT64_MAX-like


def _qmp_requests(r: Recommendation) -> tuple[dict[str, bool], dict[str, float]]:
    """The capabilities and parameters a recommendation's QMP commands ask for."""
    caps_wanted: dict[str, bool] = {}
    params: dict[str, float] = {}
    for line in r.commands.get("qmp", []):
        try:
            cmd = json.loads(line.split("  #", 1)[0])
        except ValueError:
            continue
        args = cmd.get("arguments") or {}
        if cmd.get("execute") == "migrate-set-capabilities":
            for c in args.get("capabilities", []):
                caps_wanted[c["capability"]] = bool(c["state"])
        elif cmd.get("execute") == "migrate-set-parameters":
            params.update({k: v for k, v in args.items() if isinstance(v, (int, float))})
    return caps_wanted, params


def in_force(r: Recommendation, s: Settings, downtime_limit: float | None) -> bool:
    """Whether what ``r`` recommends is already what the run had: then it is no advice.

    ``downtime_limit`` is the limit in force at the end (seconds).  Unknown settings
    (``None``) never count as in force: the advice may still help.
    """
    caps_wanted, params = _qmp_requests(r)
    caps = s.capabilities
    if r.setting in ("auto-converge", "multifd", "xbzrle"):
        # The capability is the advice; throttle steps or channel counts that come with it
        # are only a sensible start.
        if not caps_wanted or any(caps.get(k) is not v for k, v in caps_wanted.items()):
            return False
        if r.setting == "multifd" and "multifd-channels" in params:
            return (s.multifd_channels or 2) >= params["multifd-channels"]
        return True
    if r.setting == "postcopy-ram":
        return bool(caps.get("postcopy-ram"))
    if r.setting == "downtime-limit" and "downtime-limit" in params:
        return downtime_limit is not None and downtime_limit * 1000 >= params["downtime-limit"]
    if r.setting == "max-bandwidth" and "max-bandwidth" in params and s.max_bandwidth is not None:
        cap, want = s.max_bandwidth, params["max-bandwidth"]
        unlimited = cap == 0 or cap >= UNLIMITED_BANDWIDTH
        return unlimited or (want > 0 and cap >= want)
    if r.setting == "xbzrle-cache-size" and s.xbzrle_cache_size is not None:
        return s.xbzrle_cache_size >= params.get("xbzrle-cache-size", float("inf"))
    if r.setting == "max-cpu-throttle" and s.max_cpu_throttle is not None:
        return s.max_cpu_throttle >= params.get("max-cpu-throttle", 100)
    if r.setting == "migration-type":
        return s.migration_type in ("insecure", "tcp")
    return False


def respect_settings(
    recs: list[Recommendation],
    s: Settings,
    downtime_limit: float | None,
    tgt: Target,
    *,
    postcopy_started: bool = False,
) -> list[Recommendation]:
    """``recs`` without what is already in force.  Post-copy that was allowed but never
    started becomes the advice to start it (none if it did start)."""
    out: list[Recommendation] = []
    for r in recs:
        if r.setting == "postcopy-ram" and s.capabilities.get("postcopy-ram"):
            if postcopy_started:
                continue
            r = start_postcopy(tgt)
        if not in_force(r, s, downtime_limit):
            out.append(r)
    return out
