"""Convert one QMP ``query-migrate`` reply into a :class:`~migtune.model.Sample`.

Shared by the QMP log parser, the recording reader and the live ``migrate``
command, so a value means the same thing wherever it came from.  Field meanings
follow QEMU's QAPI schema (``MigrationInfo``, ``MigrationStats``, ``XBZRLECacheStats``).
"""

from __future__ import annotations

import math
from typing import Any

from migtune.model import Sample, SourceRef, Xbzrle
from migtune.units import mbps_to_bytes_per_s


def _int(v: Any) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        return int(v)
    except OverflowError:  # inf from a JSON "1e999" or "Infinity"
        return None
    except (TypeError, ValueError):
        try:
            return int(str(v).replace(",", "").replace("'", ""))
        except ValueError:
            return None


def _float(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None  # JSON "Infinity"/"NaN" are not counters


def _ms(v: Any) -> float | None:
    f = _float(v)
    return None if f is None else f / 1000.0


def unwrap(reply: dict[str, Any]) -> dict[str, Any]:
    """Accept ``{"return": {...}}`` as well as the bare MigrationInfo object."""
    if isinstance(reply.get("return"), dict):
        return reply["return"]
    return reply


def sample_from_query_migrate(
    reply: dict[str, Any], t: float | None = None, source: SourceRef | None = None
) -> Sample:
    info = unwrap(reply)
    ram = info.get("ram") if isinstance(info.get("ram"), dict) else {}
    page_size = _int(ram.get("page-size"))
    s = Sample(t=t, source=source)
    s.status = info.get("status") if isinstance(info.get("status"), str) else None
    s.transferred = _int(ram.get("transferred"))
    s.remaining = _int(ram.get("remaining"))
    s.total = _int(ram.get("total"))
    mbps = _float(ram.get("mbps"))
    s.throughput = None if mbps is None else mbps_to_bytes_per_s(mbps)
    pps = _float(ram.get("pages-per-second"))
    if pps is not None and page_size:
        s.page_rate = pps * page_size
    dpr = _float(ram.get("dirty-pages-rate"))
    if dpr is not None and page_size:
        s.dirty_rate = dpr * page_size
    s.passes = _int(ram.get("dirty-sync-count"))
    s.duplicate = _int(ram.get("duplicate"))
    s.normal = _int(ram.get("normal"))
    s.normal_bytes = _int(ram.get("normal-bytes"))
    s.page_size = page_size
    s.multifd_bytes = _int(ram.get("multifd-bytes"))
    s.postcopy_requests = _int(ram.get("postcopy-requests"))
    s.precopy_bytes = _int(ram.get("precopy-bytes"))
    s.downtime_bytes = _int(ram.get("downtime-bytes"))
    s.postcopy_bytes = _int(ram.get("postcopy-bytes"))
    xb = info.get("xbzrle-cache")
    if isinstance(xb, dict):
        rate = _float(xb.get("cache-miss-rate"))
        s.xbzrle = Xbzrle(
            cache_size=_int(xb.get("cache-size")),
            bytes=_int(xb.get("bytes")),
            pages=_int(xb.get("pages")),
            cache_miss=_int(xb.get("cache-miss")),
            cache_miss_rate=rate,
            encoding_rate=_float(xb.get("encoding-rate")),
            overflow=_int(xb.get("overflow")),
        )
    s.throttle_pct = _float(info.get("cpu-throttle-percentage"))
    s.expected_downtime = _ms(info.get("expected-downtime"))
    s.downtime = _ms(info.get("downtime"))
    s.setup_time = _ms(info.get("setup-time"))
    s.total_time = _ms(info.get("total-time"))
    vfio = info.get("vfio")
    if isinstance(vfio, dict):
        s.vfio_bytes = _int(vfio.get("transferred"))
    disk = info.get("disk")
    if isinstance(disk, dict):
        s.disk_transferred = _int(disk.get("transferred"))
        s.disk_remaining = _int(disk.get("remaining"))
        s.disk_total = _int(disk.get("total"))
    err = info.get("error-desc")
    s.error = err if isinstance(err, str) else None
    return s
