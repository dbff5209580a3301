"""A recorded run as the text a platform would have printed for it.

Users rarely have a migtune recording: they have a Proxmox task log or a few HMP
``info migrate`` snapshots.  These converters turn a recording (every ``query-migrate``
reply, twice a second) into those texts, with the platform's own rounding and cadence,
so the calibration can be measured on what users really hold
(``benchmarks/bench_fidelity.py``):

* :func:`proxmox_task_log`: qemu-server's migration task log - one progress line per
  second with ``render_bytes`` rounding (one decimal, binary units), the per-line rate
  QEMU's ``pages-per-second`` x page size, ``VM dirties lots of memory`` when the
  dirty-page rate is above that, xbzrle lines, downtime increases, whole-second stamps.
  Proxmox always turns XBZRLE and auto-converge on; a run that did not have both gets
  no "set migration capabilities" line (its settings read as QEMU's defaults; its
  xbzrle lines still show XBZRLE at work), a
  cap other than Proxmox's default gets a "migration speed limit" line.
* :func:`hmp_snapshots`: ``info migrate_capabilities``, ``info migrate_parameters`` and
  an ``info migrate`` every ``every`` seconds in QEMU 8.2-10.0's layout, plus the final one.
"""

from __future__ import annotations

import time

from migtune.model import Run, Sample
from migtune.units import format_bytes

_KEY_CAPS = ("xbzrle", "auto-converge", "postcopy-ram", "multifd")


def _stamp(t0: float, t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t0 + t))


def _at_seconds(run: Run, start: float, end: float) -> list[tuple[int, Sample]]:
    """The latest sample at or before each whole second of the migration (1 s polls)."""
    out: list[tuple[int, Sample]] = []
    active = [s for s in run.samples if s.t is not None and s.status == "active" and s.transferred]
    k, second = 0, 1
    last = None
    while second + start <= end:
        while k < len(active) and active[k].t <= start + second:
            last = active[k]
            k += 1
        if last is not None and (not out or out[-1][1] is not last):
            out.append((second, last))
        second += 1
    return out


def _ram_start(run: Run) -> float:
    starts = [e.t for e in run.events if e.kind == "ram-start" and e.t is not None]
    return max(starts) if starts else 0.0


def _end(run: Run) -> float:
    ts = [s.t for s in run.samples if s.t is not None]
    return max(ts) if ts else 0.0


def _final(run: Run) -> Sample | None:
    return next((s for s in reversed(run.samples) if s.status == "completed"), None)


def proxmox_task_log(run: Run, vmid: int = 100) -> str:
    """The run as a Proxmox VE 8 migration task log (text, one line per entry)."""
    t0 = run.t0 or 1_800_000_000.0
    start = _ram_start(run)
    s = run.settings
    lines: list[tuple[float, str]] = []
    add = lines.append
    add((start - 3, f"starting migration of VM {vmid} to node 'lab' (127.0.0.1)"))
    add((start - 3, f"starting VM {vmid} on remote node 'lab'"))
    add((start - 1, "starting online/live migration on tcp:127.0.0.1:60000"))
    caps = s.capabilities
    if caps.get("xbzrle") and caps.get("auto-converge"):
        add((start, "set migration capabilities"))
    if s.max_bandwidth and s.max_bandwidth < 2**34:
        add((start, f"migration speed limit: {format_bytes(s.max_bandwidth)}/s"))
    if s.downtime_limit is not None:
        add((start, f"migration downtime limit: {s.downtime_limit * 1000:.0f} ms"))
    if caps.get("xbzrle") and s.xbzrle_cache_size:
        add((start, f"migration cachesize: {format_bytes(s.xbzrle_cache_size)}"))
    add((start, "set migration parameters"))
    add((start, "start migrate command to tcp:127.0.0.1:60000"))
    for e in run.events:
        params = e.data.get("params") if isinstance(e.data, dict) else None
        if e.kind == "downtime-change" and isinstance(params, dict) and e.t is not None:
            ms = params.get("downtime-limit")
            if ms is not None:
                add((e.t, f"auto-increased downtime to continue migration: {ms:.0f} ms"))
    end = _end(run)
    for second, smp in _at_seconds(run, start, end):
        line = (
            f"migration active, transferred {format_bytes(smp.transferred)} of "
            f"{format_bytes(smp.total)} VM-state, {format_bytes(smp.page_rate or 0)}/s"
        )
        if smp.dirty_rate and smp.page_rate is not None and smp.dirty_rate > smp.page_rate:
            line += f", VM dirties lots of memory: {format_bytes(smp.dirty_rate)}/s"
        add((start + second, line))
        x = smp.xbzrle
        if x is not None and (x.bytes or x.pages):
            xl = f"xbzrle: send updates to {x.pages or 0} pages in {format_bytes(x.bytes or 0)} encoded memory"
            if x.cache_miss_rate:
                xl += f", cache-miss {x.cache_miss_rate * 100:.2f}%"
            if x.overflow:
                xl += f", overflow {x.overflow}"
            add((start + second, xl))
    final = _final(run)
    if final is not None:
        done = start + (final.total_time or (final.t or end) - start)
        secs = max(1, round(done - start))
        avg = (final.total or run.ram_bytes or 0) / secs
        down = (final.downtime or 0) * 1000
        add((done, f"average migration speed: {format_bytes(avg)}/s - downtime {down:.0f} ms"))
        add((done, f"migration completed, transferred {format_bytes(final.transferred)} VM-state"))
        add((done, "migration status: completed"))
        dur = round(done - start + 4)
        add((done + 1, f"migration finished successfully (duration {_hms(dur)})"))
        add((done + 1, "TASK OK"))
    else:
        add((end, "ERROR: online migrate failure - interrupted by signal"))
        add((end, "aborting phase 2 - cleanup resources"))
        add((end, "migrate_cancel"))
        add(
            (end + 1, f"ERROR: migration finished with problems (duration {_hms(end - start + 4)})")
        )
        add((end + 1, "TASK ERROR: migration problems"))
    lines.sort(key=lambda x: x[0])
    out = [f"{_stamp(t0, t)} {text}" if not text.startswith("TASK") else text for t, text in lines]
    return "\n".join(out) + "\n"


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _kb(v: int | None) -> str:
    return f"{(v or 0) // 1024} kbytes"


def _info_migrate(smp: Sample, cache_size: int | None) -> list[str]:
    out = [
        "(qemu) info migrate",
        f"Migration status: {smp.status}",
        f"total time: {(smp.total_time or 0) * 1000:.0f} ms",
    ]
    if smp.status == "completed" and smp.downtime is not None:
        out.append(f"downtime: {smp.downtime * 1000:.0f} ms")
    elif smp.expected_downtime is not None:
        out.append(f"expected downtime: {smp.expected_downtime * 1000:.0f} ms")
    if smp.setup_time is not None:
        out.append(f"setup: {smp.setup_time * 1000:.0f} ms")
    out += [
        f"transferred ram: {_kb(smp.transferred)}",
        f"throughput: {(smp.throughput or 0) * 8 / 1e6:.2f} mbps",
        f"remaining ram: {_kb(smp.remaining)}",
        f"total ram: {_kb(smp.total)}",
        f"duplicate: {smp.duplicate or 0} pages",
        f"normal: {smp.normal or 0} pages",
        f"normal bytes: {_kb(smp.normal_bytes)}",
        f"dirty sync count: {smp.passes or 0}",
        "page size: 4 kbytes",
        f"multifd bytes: {_kb(smp.multifd_bytes)}",
        f"pages-per-second: {(smp.page_rate or 0) / 4096:.0f}",
    ]
    if smp.dirty_rate:
        out.append(f"dirty pages rate: {smp.dirty_rate / 4096:.0f} pages")
    out.append(f"precopy ram: {_kb(smp.precopy_bytes)}")
    x = smp.xbzrle
    if x is not None:
        out += [
            f"cache size: {cache_size or x.cache_size or 0} bytes",
            f"xbzrle transferred: {_kb(x.bytes)}",
            f"xbzrle pages: {x.pages or 0} pages",
            f"xbzrle cache miss: {x.cache_miss or 0} pages",
            f"xbzrle cache miss rate: {x.cache_miss_rate or 0:.2f}",
            f"xbzrle encoding rate: {x.encoding_rate or 0:.2f}",
            f"xbzrle overflow: {x.overflow or 0}",
        ]
    if smp.throttle_pct:
        out.append(f"cpu throttle percentage: {smp.throttle_pct:.0f}")
    return out


def hmp_snapshots(run: Run, every: float = 5.0) -> str:
    """The run as HMP ``info migrate`` snapshots every ``every`` seconds (8.2-10.0 layout)."""
    s = run.settings
    out = ["(qemu) info migrate_capabilities"]
    for cap in _KEY_CAPS:
        out.append(f"{cap}: {'on' if s.capabilities.get(cap) else 'off'}")
    out.append("(qemu) info migrate_parameters")
    if s.cpu_throttle_initial is not None:
        out.append(f"cpu-throttle-initial: {s.cpu_throttle_initial}")
    if s.cpu_throttle_increment is not None:
        out.append(f"cpu-throttle-increment: {s.cpu_throttle_increment}")
    if s.max_bandwidth is not None:
        out.append(f"max-bandwidth: {s.max_bandwidth:.0f} bytes/second")
    if s.downtime_limit is not None:
        out.append(f"downtime-limit: {s.downtime_limit * 1000:.0f} ms")
    if s.multifd_channels is not None:
        out.append(f"multifd-channels: {s.multifd_channels}")
    if s.xbzrle_cache_size is not None:
        out.append(f"xbzrle-cache-size: {s.xbzrle_cache_size} bytes")
    out.append("(qemu) migrate -d tcp:127.0.0.1:60000")
    start = _ram_start(run)
    nxt = every
    for smp in run.samples:
        if smp.t is None or smp.status != "active" or smp.total_time is None:
            continue
        if smp.t - start >= nxt:
            out += _info_migrate(smp, s.xbzrle_cache_size)
            nxt += every
    final = _final(run)
    if final is not None:
        out += _info_migrate(final, s.xbzrle_cache_size)
    else:  # looked once more just before cancelling
        last = [x for x in run.samples if x.status == "active" and x.total_time is not None]
        if last:
            out += _info_migrate(last[-1], s.xbzrle_cache_size)
        out += ["(qemu) migrate_cancel", "(qemu) info migrate", "Migration status: cancelled"]
    return "\n".join(out) + "\n"
