"""The normalised run model that every source fills in and every analysis reads.

A :class:`Run` is one live migration as migtune understands it, whatever produced
it (a Proxmox task log, ``query-migrate`` samples, HMP or virsh snapshots, a lab
recording or a simulation):

* :class:`Settings` - the migration parameters and capabilities in force at the start;
* :class:`Sample` - timestamped counters, one per progress line / poll / snapshot;
* :class:`Event` - everything else that happened (set-up steps, downtime changes,
  storage mirroring, errors, the outcome), each with the source line it came from.

Units: bytes, seconds and bytes per second, always.  ``None`` means "the source did
not say", never zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from migtune.bounded import EventList, SampleList

# Final or current state of a migration, normalised over all sources.
STATUSES = ("completed", "failed", "cancelled", "active", "unknown")

# Event kinds.  Sources may add others; analyses must ignore kinds they do not know.
EVENT_KINDS = {
    "task-start": "management task started (HA or user)",
    "migration-start": "migration of the VM requested",
    "migration-network": "dedicated migration network chosen",
    "disk-scan": "local disks found / copied offline",
    "replication": "storage replication step",
    "target-start": "destination VM being started",
    "target-output": "a line printed by the destination node",
    "tunnel": "migration tunnel set up",
    "storage-start": "storage (NBD drive-mirror) migration started",
    "storage-progress": "storage mirror progress",
    "storage-ready": "storage mirror in sync",
    "ram-start": "RAM migration started (QMP migrate issued)",
    "settings": "a migration parameter or capability was set",
    "downtime-change": "the downtime limit was changed during migration",
    "bandwidth-change": "the bandwidth limit was changed during migration",
    "postcopy-start": "switched to post-copy",
    "throttle-change": "auto-converge CPU throttle changed",
    "status": "QEMU migration status changed",
    "summary": "migration summary (speed, downtime)",
    "completed": "RAM migration completed",
    "cleanup": "post-migration clean-up step",
    "finished": "management task finished",
    "cancelled": "migration cancelled",
    "error": "an error",
    "warning": "a warning",
    "info": "informational line",
    "prediction": "migtune's live prediction of the outcome (migrate, lab run)",
}


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a sample or event came from: 1-based line number and the line's text."""

    line: int
    text: str


@dataclass(slots=True)
class Xbzrle:
    """QEMU ``xbzrle-cache`` counters (cumulative unless noted)."""

    cache_size: int | None = None  # bytes
    bytes: int | None = None  # encoded bytes sent (+ page size per overflow)
    pages: int | None = None  # cache hits (encoded, unchanged or overflowed)
    cache_miss: int | None = None  # cumulative misses
    cache_miss_rate: float | None = None  # 0..1, over QEMU's last rate period
    encoding_rate: float | None = None
    overflow: int | None = None  # pages whose delta did not fit


@dataclass(slots=True)
class Sample:
    """One observation of the migration's counters.

    ``t`` is seconds since the run's origin ``Run.t0``: the first timestamped line
    of a management-layer log (Proxmox, nova; the RAM phase start is then in
    ``run.meta["ram_start"]``), or the start of the migration for QEMU's own
    counters (``total-time``) and recordings.  ``None`` where the source has no
    time (e.g. ``[date removed]`` logs).
    """

    t: float | None = None
    status: str | None = None  # QEMU status string: active, completed, device, ...
    transferred: int | None = None  # cumulative bytes on the wire (ram.transferred)
    remaining: int | None = None  # dirty bytes still to send (ram.remaining)
    total: int | None = None  # RAM size incl. ROM/VGA blocks (ram.total)
    throughput: float | None = None  # real network rate, bytes/s (mbps converted)
    page_rate: float | None = None  # pages-per-second x page size, bytes/s: counts zero pages
    dirty_rate: float | None = None  # bytes/s dirtied (dirty-pages-rate x page size)
    passes: int | None = None  # dirty-sync-count
    duplicate: int | None = None  # zero pages sent
    normal: int | None = None  # full pages sent
    normal_bytes: int | None = None
    page_size: int | None = None
    multifd_bytes: int | None = None
    postcopy_requests: int | None = None
    precopy_bytes: int | None = None
    downtime_bytes: int | None = None
    postcopy_bytes: int | None = None
    xbzrle: Xbzrle | None = None
    throttle_pct: float | None = None  # cpu-throttle-percentage
    expected_downtime: float | None = None  # seconds
    downtime: float | None = None  # seconds, once completed
    setup_time: float | None = None  # seconds
    total_time: float | None = None  # seconds since QEMU started the migration
    vfio_bytes: int | None = None
    disk_transferred: int | None = None  # storage migration counters, where the source has them
    disk_remaining: int | None = None
    disk_total: int | None = None
    error: str | None = None
    source: SourceRef | None = None


@dataclass(slots=True)
class Event:
    t: float | None
    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    source: SourceRef | None = None


@dataclass(slots=True)
class Settings:
    """Migration settings in force at the start of the run (``None`` = not known)."""

    downtime_limit: float | None = None  # seconds
    max_bandwidth: float | None = None  # bytes/s; 0 = unlimited
    avail_switchover_bandwidth: float | None = None  # bytes/s; 0 = use QEMU's estimate
    xbzrle_cache_size: int | None = None  # bytes
    capabilities: dict[str, bool] = field(default_factory=dict)  # QMP capability names
    migration_type: str | None = None  # secure | insecure | websocket | tcp | unix | rdma | file
    migration_uri: str | None = None
    migration_network: str | None = None
    multifd_channels: int | None = None
    cpu_throttle_initial: int | None = None
    cpu_throttle_increment: int | None = None
    max_cpu_throttle: int | None = None
    throttle_trigger_threshold: int | None = None
    max_postcopy_bandwidth: float | None = None
    qemu_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def capability(self, name: str) -> bool | None:
        return self.capabilities.get(name)


@dataclass(slots=True)
class Run:
    """One migration, normalised."""

    format: str  # proxmox | qmp | hmp | libvirt | nova | recording | simulation
    # Bounded lists: past a limit they keep a thinned subset (see migtune.bounded).
    samples: list[Sample] = field(default_factory=SampleList)
    events: list[Event] = field(default_factory=EventList)
    settings: Settings = field(default_factory=Settings)
    status: str = "unknown"  # completed | failed | cancelled | active | unknown
    ram_bytes: int | None = None  # VM RAM (ram.total, VM-state, Memory total)
    downtime: float | None = None  # seconds, as reported by QEMU / the management layer
    duration: float | None = None  # seconds of the whole task (management layer)
    ram_duration: float | None = None  # seconds of the RAM phase
    t0: float | None = None  # epoch seconds of t = 0, where the log has wall-clock time
    vm: str | None = None  # VM id or name
    target: str | None = None  # destination node / host
    partial: bool = False  # truncated, elided or unrecognised parts
    warnings: list[str] = field(default_factory=list)  # what could not be read, one line each
    # The source's lines for `explain`: a LineSource that reads the file again on each
    # iteration (a 1 GB log is never held in memory), or a list for runs built from text.
    lines: Iterable[str] | None = None
    # Error-like lines of the source, collected while parsing (sources.errorlines), so
    # the failure rules need not read a big log again; None: scan ``lines`` when needed.
    error_lines: list[str] | None = None
    meta: dict[str, Any] = field(
        default_factory=dict
    )  # source-specific facts (workload, versions...)

    @property
    def last(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def events_of(self, *kinds: str) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]


def to_dict(obj: Any) -> Any:
    """Dataclasses to plain JSON-able dicts (``SourceRef`` becomes ``{line, text}``)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def settings_from_dict(data: dict[str, Any]) -> Settings:
    """Inverse of ``to_dict(settings)``; unknown keys go to ``extra``."""
    if not isinstance(data, dict):  # a hand-edited recording: nothing usable
        return Settings()
    names = {f.name for f in dataclasses.fields(Settings)}
    known = {k: v for k, v in data.items() if k in names and k != "extra"}
    extra = dict(data["extra"]) if isinstance(data.get("extra"), dict) else {}
    extra.update({k: v for k, v in data.items() if k not in names})
    return Settings(**known, extra=extra)
