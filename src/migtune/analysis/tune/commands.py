"""The exact commands that put a candidate in force, per platform.

Proxmox VE: ``qm set`` and ``/etc/pve/datacenter.cfg``; libvirt: ``virsh``; plain
QEMU: QMP JSON; OpenStack Nova: ``nova.conf`` options; KubeVirt: a MigrationPolicy.
Single-setting commands come from :mod:`migtune.analysis.recommend` so ``diagnose`` and
``tune`` say the same thing.  ``VMID``, ``DOMAIN``, ``TARGET``, ``CIDR``,
``MIGRATION-IP`` are placeholders where the log does not name them.
"""

from __future__ import annotations

from migtune.analysis import recommend as rc
from migtune.analysis.tune.grid import Knobs, Transport
from migtune.units import MiB


def commands(k: Knobs, transport: Transport, platform: str, tgt: rc.Target) -> dict[str, list[str]]:
    """``{platform: [...], "qmp": [...]}``: the platform's own commands and the QMP they
    amount to (what ``migtune migrate`` or any QMP client would send)."""
    out = {"qmp": qmp_commands(k, transport)}
    build = {
        "proxmox": proxmox_commands,
        "libvirt": virsh_commands,
        "nova": nova_commands,
        "kubevirt": kubevirt_commands,
    }.get(platform)
    if build is not None:
        out[platform] = build(k, transport, tgt)
    return out


def qmp_commands(k: Knobs, transport: Transport) -> list[str]:
    caps = {
        "xbzrle": bool(k.xbzrle_cache),
        "auto-converge": k.auto_converge,
        "multifd": bool(k.multifd),
        "postcopy-ram": k.postcopy,
    }
    out = [rc.caps(**caps) + ("  # on source and destination" if k.multifd or k.postcopy else "")]
    params: dict = {}
    if k.downtime is not None:
        params["downtime-limit"] = int(round(k.downtime * 1000))
    if k.max_bandwidth is not None:
        params["max-bandwidth"] = int(k.max_bandwidth)
    if k.xbzrle_cache:
        params["xbzrle-cache-size"] = int(k.xbzrle_cache)
    if k.aggressive_throttle:
        params.update({"cpu-throttle-initial": 30, "cpu-throttle-increment": 20})
    if k.multifd:
        params["multifd-channels"] = k.multifd
    if params:
        out.append(rc.qmp("migrate-set-parameters", params))
    if transport.name == "tls":
        out.append(rc.qmp("migrate-set-parameters", {"tls-creds": "tls0"})
                   + "  # after object-add tls-creds-x509 id=tls0 on both sides")  # fmt: skip
    uri = "tcp:MIGRATION-IP:PORT" if transport.name != "observed" else "URI"
    out.append(rc.qmp("migrate", {"uri": uri}))
    if k.postcopy:
        out.append(rc.qmp("migrate-start-postcopy", {}) + "  # once the first pass is done")
    return out


def proxmox_commands(k: Knobs, transport: Transport, tgt: rc.Target) -> list[str]:
    out = [f"qm set {tgt.vmid} --migrate_downtime {rc.nice_seconds(k.downtime or 0.1):g}"]
    if k.max_bandwidth:
        out.append(f"qm set {tgt.vmid} --migrate_speed {rc.nice_mib(k.max_bandwidth)}")
    if transport.name in ("insecure", "dedicated"):
        kind = "insecure" if transport.name == "insecure" else "secure"
        out += ["# /etc/pve/datacenter.cfg", f"migration: type={kind},network=CIDR"]
    out.append(f"qm migrate {tgt.vmid} {tgt.node} --online")
    return out


def virsh_commands(k: Knobs, transport: Transport, tgt: rc.Target) -> list[str]:
    flags = ["--live"]
    if k.auto_converge:
        flags.append("--auto-converge")
        if k.aggressive_throttle:
            flags += ["--auto-converge-initial 30", "--auto-converge-increment 20"]
    if k.xbzrle_cache:
        flags += ["--compressed", "--comp-methods xbzrle", f"--comp-xbzrle-cache {k.xbzrle_cache}"]
    if k.multifd:
        flags += ["--parallel", f"--parallel-connections {k.multifd}"]
    if k.postcopy:
        flags += ["--postcopy", "--postcopy-after-precopy"]
    if k.max_bandwidth:
        flags.append(f"--bandwidth {rc.nice_mib(k.max_bandwidth)}")
    if transport.name == "tls":
        flags.append("--tls")
    uri = "" if transport.name == "observed" else " tcp://MIGRATION-IP"
    cmd = f"virsh migrate {' '.join(flags)} {tgt.domain} qemu+ssh://{tgt.node}/system{uri}"
    ms = int(round((k.downtime or 0.3) * 1000))
    return [
        cmd,
        f"virsh migrate-setmaxdowntime {tgt.domain} {ms}  # from another shell, once it runs",
    ]


def nova_commands(k: Knobs, transport: Transport, tgt: rc.Target) -> list[str]:
    out = [
        "# /etc/nova/nova.conf on the compute nodes, then restart nova-compute",
        "[libvirt]",
        f"live_migration_downtime = {k.nova_downtime_ms}",
        f"live_migration_downtime_steps = {k.nova_steps}",
        f"live_migration_downtime_delay = {k.nova_delay:g}",
        f"live_migration_completion_timeout = {k.nova_timeout:g}",
        f"live_migration_timeout_action = {k.nova_action}",
        f"live_migration_permit_auto_converge = {str(k.auto_converge).lower()}",
        f"live_migration_permit_post_copy = {str(k.postcopy).lower()}",
    ]
    if k.multifd:
        out.append(f"live_migration_parallel_connections = {k.multifd}")
    if k.max_bandwidth:
        out.append(f"live_migration_bandwidth = {rc.nice_mib(k.max_bandwidth)}")
    if transport.name == "tls":
        out.append("live_migration_with_native_tls = true")
    if transport.name in ("insecure", "dedicated", "tls"):
        out.append("live_migration_inbound_addr = MIGRATION-IP")
    return out


def kubevirt_commands(k: Knobs, transport: Transport, tgt: rc.Target) -> list[str]:
    yaml = [
        "apiVersion: migrations.kubevirt.io/v1alpha1",
        "kind: MigrationPolicy",
        "metadata:",
        "  name: migtune-tuned",
        "spec:",
        f"  allowAutoConverge: {str(k.auto_converge).lower()}",
        f"  allowPostCopy: {str(k.postcopy).lower()}",
        f"  allowWorkloadDisruption: {str(bool(k.kv_disruption)).lower()}",
        f"  completionTimeoutPerGiB: {int(k.kv_completion_per_gib or 150)}",
        f"  bandwidthPerMigration: {int(k.max_bandwidth // MiB) if k.max_bandwidth else 0}Mi",
        "  selectors:",
        "    virtualMachineInstanceSelector:",
        '      migtune-tuned: "true"  # label the VMI with this',
    ]
    if transport.name in ("insecure", "dedicated", "tls"):
        yaml += [
            "---",
            "# KubeVirt CR, spec.configuration.migrations:",
            "#   network: MIGRATION-NETWORK  (a Multus network dedicated to migrations)",
        ]
        if transport.name == "insecure":
            yaml.append("#   disableTLS: true")
    return yaml
