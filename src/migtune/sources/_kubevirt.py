"""KubeVirt virt-launcher migration lines (docs/platforms.md §4.4), read by the libvirt parser.

virt-launcher logs libvirt's job statistics as one message, usually inside a JSON log
record (``{"component":"virt-launcher","msg":"Migration info for <uid>: TimeElapsed:...
ms DataProcessed:...MiB ...","timestamp":"..."}``).  Sizes are whole MiB (truncated,
so accurate to 1 MiB); rates are decimal megabits/s; ``DirtyRate`` is already bytes
dirtied per second converted to Mbps.
"""

from __future__ import annotations

import re
from typing import Any

from migtune.model import Sample, SourceRef
from migtune.sources._common import bounded_float, iso_epoch, json_loads
from migtune.units import MiB, mbps_to_bytes_per_s

INFO_RE = re.compile(r"Migration info for (?P<uid>[^:\s]+): (?P<stats>TimeElapsed:.*)")
_PAIR_RE = re.compile(
    r"(?<![A-Za-z])(?P<key>[A-Za-z]+):(?P<num>-?\d+(?:\.\d+)?)(?P<unit>ms|MiB|Mbps|x)?"
)

# key -> (Sample field or "meta:<key>", conversion)
_FIELDS: dict[str, tuple[str, str]] = {
    "TimeElapsed": ("total_time", "ms"),
    "MemoryProcessed": ("transferred", "mib"),
    "MemoryRemaining": ("remaining", "mib"),
    "MemoryTotal": ("total", "mib"),
    "MemoryBandwidth": ("throughput", "mbps"),
    "DirtyRate": ("dirty_rate", "mbps"),
    "Iteration": ("passes", "int"),
    "PostcopyRequests": ("postcopy_requests", "int"),
    "ConstantPages": ("duplicate", "int"),
    "NormalPages": ("normal", "int"),
    "NormalData": ("normal_bytes", "mib"),
    "ExpectedDowntime": ("expected_downtime", "ms"),
    "Downtime": ("downtime", "ms"),
    "DowntimeNet": ("meta:downtime_net", "ms"),
    "DataProcessed": ("meta:data_processed", "mib"),
    "DataRemaining": ("meta:data_remaining", "mib"),
    "DataTotal": ("meta:data_total", "mib"),
    "DiskMbps": ("meta:disk_bps", "mbps"),
    "CompressionRatio": ("meta:compression_ratio", "float"),
}

# Outcome messages -> (event kind, run status or None)
MESSAGES = {
    "Initiating live migration.": ("migration-start", None),
    "Live migration succeeded.": ("completed", "completed"),
    "Live migration failed.": ("error", "failed"),
    "Live migration abort succeeded": ("cancelled", "cancelled"),
}


def split_record(text: str) -> tuple[str, float | None, bool]:
    """(message, epoch stamp, is a virt-launcher record) of a log line, JSON or plain."""
    stripped = text.strip()
    if stripped.startswith("{") and '"msg"' in stripped:
        try:
            obj: Any = json_loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("msg"), str):
            stamp = obj.get("timestamp")
            epoch = iso_epoch(stamp) if isinstance(stamp, str) else None
            return obj["msg"], epoch, obj.get("component") == "virt-launcher"
    return stripped, None, False


def sample_from_info(stats: str, ref: SourceRef) -> tuple[Sample, dict[str, Any]]:
    """One ``Migration info`` message -> a Sample and the facts that belong in run.meta."""
    s = Sample(status="active", source=ref)
    meta: dict[str, Any] = {}
    for m in _PAIR_RE.finditer(stats):
        spec = _FIELDS.get(m.group("key"))
        if spec is None:
            continue
        field, conv = spec
        num = bounded_float(m.group("num"))
        if num is None:
            continue  # 1e999 or a 5000-digit run: not a measurement
        if conv == "ms":
            value: float | int = num / 1000.0
        elif conv == "mib":
            value = int(num) * MiB
        elif conv == "mbps":
            value = mbps_to_bytes_per_s(num)
        elif conv == "int":
            value = int(num)
        else:
            value = num
        if field.startswith("meta:"):
            meta[field[5:]] = value
        else:
            setattr(s, field, value)
    s.t = s.total_time
    return s, meta
