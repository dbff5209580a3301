"""Simulator state rendered as QMP ``query-migrate`` replies (docs/qemu-migration.md §2, §10.4).

Version differences: 7.2 still has ``skipped``; ``transferred`` counts RAM-accounted
bytes before 8.2 and every byte after; ``expected-downtime`` disappears on completion.
"""

from __future__ import annotations

from typing import Any


def query_migrate(sim: Any, status: str | None = None) -> dict[str, Any]:
    status = status or sim.status
    completed = status == "completed"
    total_ms = int(round((sim.t - sim.start) * 1000))
    info: dict[str, Any] = {"status": status}
    if status == "setup":
        return info
    info["setup-time"] = int(round(sim.machine.setup_time * 1000))
    info["total-time"] = sim.total_time_ms if completed else total_ms
    if completed or sim.postcopy_active:
        info["downtime"] = sim.downtime_ms
    if not completed and not sim.postcopy_active:
        info["expected-downtime"] = sim.expected_downtime
    c = sim.c
    ram = {
        "transferred": sim.transferred(),
        "remaining": 0 if completed else sim.dirty * sim.P,
        "total": sim.N * sim.P,
        "duplicate": c.duplicate,
        "normal": c.normal,
        "normal-bytes": c.normal * sim.P,
        "dirty-pages-rate": 0 if completed else sim.dirty_pages_rate,
        "mbps": sim.completed_mbps if completed else sim.mbps,
        "dirty-sync-count": sim.sync_count,
        "postcopy-requests": c.postcopy_requests,
        "page-size": sim.P,
        "multifd-bytes": c.multifd_bytes,
        "pages-per-second": int(sim.pps),
        "precopy-bytes": c.precopy_bytes,
        "downtime-bytes": c.downtime_bytes,
        "postcopy-bytes": c.postcopy_bytes,
        "dirty-sync-missed-zero-copy": 0,
    }
    if sim.version < (9, 1):
        ram["skipped"] = 0
    info["ram"] = ram
    if sim.xbzrle_on:
        info["xbzrle-cache"] = {
            "cache-size": sim.cache_size,
            "bytes": c.xb_bytes,
            "pages": c.xb_pages,
            "cache-miss": c.xb_miss,
            "cache-miss-rate": sim.cache_miss_rate,
            "encoding-rate": sim.encoding_rate,
            "overflow": c.xb_overflow,
        }
    if sim.throttle > 0 and not completed:
        info["cpu-throttle-percentage"] = sim.throttle
    return info
