"""Diagnosis rules about the transfer rate: caps, link ceilings, SSH tunnels, stalls.

Thresholds follow docs/platforms.md §1.9-§1.10 and §8 (link-bound, tunnel-bound,
limit-bound) and docs/qemu-migration.md §11 (QEMU's default caps).
"""

from __future__ import annotations

from migtune.analysis import recommend as rec
from migtune.analysis.findings import Finding
from migtune.analysis.metrics import (
    QEMU_DEFAULT_CAP,
    QEMU_OLD_DEFAULT_CAP,
    Metrics,
    link_match,
)
from migtune.model import Run
from migtune.units import MiB, format_bytes, format_duration, format_rate

CAP_BAND = (0.85, 1.03)  # throughput / cap inside this band: sitting at the cap
# Old ssh streams top out at 60-100 MB/s (~65 MiB/s in the real PVE 3 log, tests/fixtures/real).
SSH_CEILING = 150 * MiB
STALLED_RATE = 1 * MiB
SAFETY = 1.25  # margin on needed bandwidth: the link must out-run the dirty rate clearly


def r1(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


def _caps(run: Run, m: Metrics) -> list[tuple[float, str]]:
    caps: list[tuple[float, str]] = []
    if m.max_bandwidth:
        label = "migrate_speed/bwlimit" if run.format == "proxmox" else "configured max-bandwidth"
        caps.append((m.max_bandwidth, label))
    if run.format in ("qmp", "hmp") and m.max_bandwidth is None:
        caps.append((QEMU_OLD_DEFAULT_CAP, "QEMU's default max-bandwidth before 5.2 (32 MiB/s)"))
        caps.append((QEMU_DEFAULT_CAP, "QEMU's default max-bandwidth since 5.2 (128 MiB/s)"))
    return caps


def cap_hit(run: Run, m: Metrics) -> tuple[float, str] | None:
    if not m.throughput:
        return None
    for cap, label in _caps(run, m):
        if CAP_BAND[0] * cap <= m.throughput <= CAP_BAND[1] * cap:
            return cap, label
    return None


def bandwidth_capped(run: Run, m: Metrics, tgt: rec.Target) -> Finding | None:
    hit = cap_hit(run, m)
    if hit is None:
        return None
    cap, label = hit
    want = (m.dirty_rate or 0) * SAFETY
    recs = [rec.bandwidth(want if want > cap else 0, tgt, f"it sits at {label}")]
    if "QEMU's default" in label:
        recs[0].notes["qmp"] = (
            "Plain QEMU caps every migration at its default unless a manager raises it; "
            "libvirt and Proxmox set their own (unlimited / 16 GiB/s)."
        )
    return Finding(
        id="bandwidth-capped",
        severity="warning",
        summary=f"throughput {format_rate(m.throughput)} sits at the {format_rate(cap)} cap ({label})",
        evidence={
            "throughput_bytes_per_s": r1(m.throughput),
            "cap_bytes_per_s": cap,
            "cap_source": label,
            "ratio": round(m.throughput / cap, 3),
        },
        recommendations=recs,
        detail="The link was not the limit: a setting held the migration back.",
    )


def _steady_rate(m: Metrics) -> tuple[float | None, str]:
    if m.throughput:
        return m.throughput, "real throughput"
    if m.page_rate_min and m.page_rate_max and m.page_rate_max <= 1.1 * m.page_rate_min:
        # A steady per-line rate (no zero-page spikes) is the wire rate within a few %.
        return (m.page_rate_min + m.page_rate_max) / 2, "steady per-line rate (no timestamps)"
    return None, ""


def link_bound(run: Run, m: Metrics, tgt: rec.Target) -> Finding | None:
    rate, basis = _steady_rate(m)
    link = link_match(rate)
    if link is None or cap_hit(run, m) is not None:
        return None
    name, raw = link
    ev = {
        "rate_bytes_per_s": r1(rate),
        "rate_basis": basis,
        "link": name,
        "link_rate_bytes_per_s": raw,
    }
    detail = f"{format_rate(rate)} is what one TCP stream gets from {name}."
    if m.ram_bytes:
        first = m.ram_bytes / rate
        ev["first_pass_s"] = round(first, 1)
        detail += (
            f" One full pass over {format_bytes(m.ram_bytes)} needs at least "
            f"{format_duration(first)} at this rate, more if the guest keeps writing."
        )
    faster = {"100 Mbit Ethernet": 125e6, "1 GbE": 1.25e9}.get(name, raw * 4)
    return Finding(
        id="link-bound",
        severity="info",
        summary=f"the migration runs at {format_rate(rate)}, the ceiling of {name}: the network is the limit",
        evidence=ev,
        recommendations=[rec.faster_network(tgt, f"{name} is saturated", faster)],
        detail=detail,
    )


def _tunnelled(run: Run) -> bool:
    s = run.settings
    if s.migration_type == "secure" or s.capability("tunnelled"):
        return True
    if s.migration_type:
        return False
    uri = s.migration_uri or ""
    if run.format == "proxmox":
        if "localhost:" in uri or uri.startswith("unix:"):
            return True
        return any(e.kind == "tunnel" and "ssh" in e.message.lower() for e in run.events) and (
            not uri or "localhost" in uri
        )
    return False


def ssh_tunnel(run: Run, m: Metrics, tgt: rec.Target) -> Finding | None:
    if not _tunnelled(run) or not m.throughput or m.throughput >= SSH_CEILING:
        return None
    if link_match(m.throughput) or cap_hit(run, m):
        return None
    return Finding(
        id="ssh-tunnel-bottleneck",
        severity="warning",
        summary=(
            f"RAM goes through an SSH tunnel and moves at only {format_rate(m.throughput)}, "
            "below any network ceiling: one ssh process is doing all the encryption"
        ),
        evidence={
            "throughput_bytes_per_s": r1(m.throughput),
            "throughput_min_bytes_per_s": r1(m.throughput_min),
            "throughput_max_bytes_per_s": r1(m.throughput_max),
            "migration_type": run.settings.migration_type or "secure",
            "migration_uri": run.settings.migration_uri,
        },
        recommendations=[
            rec.insecure_transport(tgt, "the SSH tunnel caps the rate"),
            rec.faster_network(
                tgt, "a dedicated migration network also takes load off the VM network"
            ),
        ],
        detail=(
            "Secure migration pipes every byte through one ssh/sshd pair; old OpenSSH or CPUs "
            "without AES-NI cap that at 60-100 MB/s whatever the link. Current Proxmox/OpenSSH "
            "reach several hundred MiB/s; insecure mode streams directly."
        ),
    )


def stalled(run: Run, m: Metrics, tgt: rec.Target) -> Finding | None:
    if run.status in ("completed", "failed", "cancelled") or m.throughput is None:
        return None
    if m.throughput >= STALLED_RATE or not m.remaining_bytes:
        return None
    left = m.remaining_bytes / m.throughput if m.throughput > 0 else None
    return Finding(
        id="throughput-stalled",
        severity="error",
        summary=(
            f"the migration crawls at {format_rate(m.throughput)} with {format_bytes(m.remaining_bytes)} "
            f"left" + (f" ({format_duration(left)} at this rate)" if left else "")
        ),
        evidence={
            "throughput_bytes_per_s": r1(m.throughput, 3),
            "remaining_bytes": m.remaining_bytes,
            "page_rate_bytes_per_s": r1(m.page_rate_max),
            "seconds_left_at_this_rate": r1(left),
        },
        recommendations=[
            rec.Recommendation(
                setting="max-bandwidth",
                action="check the bandwidth limit actually in force and whether the stream is blocked",
                commands={
                    "proxmox": [f"qm monitor {tgt.vmid}  # then: info migrate_parameters"],
                    "libvirt": [f"virsh migrate-getspeed {tgt.domain}"],
                    "qmp": ['{"execute": "query-migrate-parameters"}'],
                },
            ),
            rec.bandwidth(0, tgt, "a near-zero rate with a live link points at a limit"),
        ],
        detail="Such a low rate is a rate limit, a blocked socket or an overloaded migration thread, not a link.",
    )
