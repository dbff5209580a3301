"""Derived numbers of a run: the figures explain and diagnose reason with.

Everything here is computed from the normalised :class:`~migtune.model.Run`, never from
a format's own text, so the same rule holds for Proxmox, QMP, HMP, virsh and nova.

Two rules shape the code (docs/platforms.md §1.3, docs/qemu-migration.md §1.4):

* Real throughput is Δtransferred/Δt between samples (or QEMU's ``mbps``).  Proxmox's
  per-line rate is pages-per-second x page size, which counts zero pages that cost
  almost nothing on the wire, so ``Sample.page_rate`` is never used as throughput.
* ``None`` means "the log does not say"; no figure is invented to fill a gap.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field

from migtune.model import Event, Run, Sample

# QEMU's default max-bandwidth before 5.2 and since (docs/qemu-migration.md §11).
QEMU_OLD_DEFAULT_CAP = 32 * 1024**2
QEMU_DEFAULT_CAP = 128 * 1024**2
# Raw line rates in bytes/s; a single TCP stream tops out at ~90-100 % of them.
LINKS = (("100 Mbit Ethernet", 12.5e6), ("1 GbE", 125e6), ("2.5 GbE", 312.5e6), ("10 GbE", 1.25e9))
LINK_BAND = 0.90  # sustained rate >= 90 % of a link's raw rate => link-bound
# A remaining value this much above the previous one marks a dirty-bitmap sync (new pass).
_JUMP_MIN = 4 * 1024**2


@dataclass(slots=True)
class Interval:
    """Real throughput between two consecutive samples."""

    start: float
    end: float
    rate: float  # bytes/s


@dataclass(slots=True)
class Metrics:
    ram_bytes: int | None = None
    transferred_bytes: int | None = None  # last known cumulative bytes on the wire
    duration_s: float | None = None  # whole task (management layer) or QEMU total-time
    ram_duration_s: float | None = None  # RAM phase only
    downtime_s: float | None = None
    throughput: float | None = None  # real network rate, bytes/s
    throughput_source: str | None = None  # transferred-deltas | qemu-mbps | ram-phase-average
    throughput_min: float | None = None
    throughput_max: float | None = None
    intervals: list[Interval] = field(default_factory=list)
    page_rate_min: float | None = None  # Proxmox per-line rate, includes zero pages
    page_rate_max: float | None = None
    dirty_rate: float | None = None  # bytes/s (median of the measured values)
    dirty_rate_max: float | None = None
    dirty_reports: int = 0  # samples that carried a dirty rate
    dirty_ratio: float | None = None  # dirty_rate / throughput
    passes: int | None = None
    passes_source: str | None = None  # dirty-sync-count | remaining-jumps
    passes_at_least: int | None = None  # lower bound from transferred / RAM
    sent_ratio: float | None = None  # transferred / RAM
    remaining_bytes: int | None = None
    expected_downtime_s: float | None = None
    needed_downtime_s: float | None = None  # remaining / throughput: one stop-and-copy
    downtime_limit_s: float | None = None  # initial limit, where the log says
    downtime_limit_final_s: float | None = None  # after the last change
    downtime_changes: list[Event] = field(default_factory=list)
    max_bandwidth: float | None = None  # configured cap, bytes/s (0 = unlimited)
    xbzrle_cache_size: int | None = None
    xbzrle_cache_miss_rate: float | None = None  # 0..1, last value QEMU reported
    xbzrle_cache_miss_rate_max: float | None = None
    xbzrle_miss_rate_cumulative: bool = False  # computed from counts, not QEMU's period rate
    xbzrle_overflow: int | None = None
    xbzrle_overflow_first: int | None = None
    xbzrle_pages: int | None = None
    xbzrle_bytes: int | None = None
    xbzrle_encoding_rate: float | None = None
    zero_pages: int | None = None
    normal_pages: int | None = None
    zero_page_share: float | None = None  # of the pages handled so far
    throttle_max_pct: float | None = None
    time_to_converge_s: float | None = None  # active runs: estimate of time left
    first_pass_s: float | None = None  # RAM / throughput: upper bound of pass 1
    target_start_s: float | None = None
    storage_s: float | None = None
    orchestration_s: float | None = None  # task duration minus RAM phase

    @property
    def downtime_ms(self) -> float | None:
        return None if self.downtime_s is None else self.downtime_s * 1000.0


def _values(samples: list[Sample], name: str) -> list:
    return [v for s in samples if (v := getattr(s, name)) is not None]


def _last(samples: list[Sample], name: str):
    vals = _values(samples, name)
    return vals[-1] if vals else None


def interval_rates(samples: list[Sample]) -> list[Interval]:
    """Δtransferred/Δt between consecutive timed samples (skipping equal timestamps)."""
    pts = [(s.t, s.transferred) for s in samples if s.t is not None and s.transferred is not None]
    out: list[Interval] = []
    prev = None
    for t, x in pts:
        if prev is not None and t > prev[0] and x >= prev[1]:
            out.append(Interval(prev[0], t, (x - prev[1]) / (t - prev[0])))
            prev = (t, x)
        elif prev is None or t > prev[0] or x < prev[1]:
            prev = (t, x)
    return out


def _span_rate(
    samples: list[Sample], origin: float | None, first: tuple[float, int] | None = None
) -> float | None:
    """Average rate over the whole sampled span (robust against per-line rounding)."""
    pts = [(s.t, s.transferred) for s in samples if s.t is not None and s.transferred is not None]
    if first is not None and pts and pts[0] != first:
        pts.insert(0, first)
    if origin is not None and pts and origin < pts[0][0]:
        pts.insert(0, (origin, 0))  # the RAM phase starts with nothing sent
    if len(pts) < 2:
        return None
    (t0, x0), (t1, x1) = pts[0], pts[-1]
    if t1 - t0 < 1.0 or x1 < x0:
        return None
    return (x1 - x0) / (t1 - t0)


def _dirty_values(samples: list[Sample]) -> list[float]:
    out = []
    for s in samples:
        if s.dirty_rate is None:
            continue
        # QEMU reports 0 until its first rate period and again once completed.
        if s.dirty_rate == 0 and ((s.passes or 0) < 2 or s.status == "completed"):
            continue
        out.append(s.dirty_rate)
    return out


def count_remaining_jumps(samples: list[Sample]) -> int:
    """Number of times ``remaining`` rose: each rise is a dirty-bitmap sync (a new pass)."""
    rem = _values(samples, "remaining")
    return sum(1 for a, b in zip(rem, rem[1:], strict=False) if b > a + _JUMP_MIN)


_MS_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*ms\b")  # look-behind: linear search
_S_RE = re.compile(r"migrate_set_downtime:?\s*(\d+(?:\.\d+)?)")


def event_downtime_limit(e: Event) -> float | None:
    """The new downtime limit (seconds) carried by a downtime-change/settings event."""
    for key in ("downtime_limit", "downtime-limit", "limit"):
        v = e.data.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    for key in ("ms", "downtime_ms", "limit_ms"):
        v = e.data.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v) / 1000.0
    m = _MS_RE.search(e.message)
    if m:
        return float(m.group(1)) / 1000.0
    m = _S_RE.search(e.message)
    return float(m.group(1)) if m else None


def _phase_edges(run: Run) -> dict[str, float]:
    """First time of each event kind (on the run's clock)."""
    edges: dict[str, float] = {}
    for e in run.events:
        if e.t is not None and e.kind not in edges:
            edges[e.kind] = e.t
    return edges


def ram_start_time(run: Run) -> float | None:
    return _phase_edges(run).get("ram-start")


def compute(run: Run) -> Metrics:
    m = Metrics()
    samples = run.samples
    m.ram_bytes = run.ram_bytes or _last(samples, "total")
    m.transferred_bytes = _last(samples, "transferred")
    completed = next((e for e in run.events if e.kind == "completed"), None)
    if completed is not None:
        final = completed.data.get("transferred")
        if isinstance(final, int) and (m.transferred_bytes is None or final >= m.transferred_bytes):
            m.transferred_bytes = final
    m.duration_s = run.duration if run.duration is not None else _last(samples, "total_time")
    m.ram_duration_s = run.ram_duration
    m.downtime_s = run.downtime if run.downtime is not None else _last(samples, "downtime")

    _throughput(run, m)
    pages = _values(samples, "page_rate")
    if pages:
        m.page_rate_min, m.page_rate_max = min(pages), max(pages)

    dirty = _dirty_values(samples)
    m.dirty_reports = len(dirty)
    if dirty:
        # The recent half reflects the working set the migration is fighting now.
        recent = dirty[len(dirty) // 2 :]
        m.dirty_rate = statistics.median(recent)
        m.dirty_rate_max = max(dirty)
    if m.dirty_rate is not None and m.throughput:
        m.dirty_ratio = m.dirty_rate / m.throughput

    _passes(run, samples, m)
    active = [s for s in samples if s.status != "completed"]
    m.remaining_bytes = _last(active, "remaining")
    m.expected_downtime_s = _last(active, "expected_downtime")
    if m.remaining_bytes is not None and m.throughput and run.status != "completed":
        m.needed_downtime_s = m.remaining_bytes / m.throughput

    _limits(run, m)
    _xbzrle(samples, m)
    _zero_pages(run, samples, m)
    throttles = _values(samples, "throttle_pct")
    m.throttle_max_pct = max(throttles) if throttles else None
    _predictions(run, m)
    _orchestration(run, m)
    stats = getattr(samples, "stats", None)
    if getattr(samples, "thinned", False) and stats is not None:
        _over_all_samples(m, stats())
    return m


def _over_all_samples(m: Metrics, st) -> None:
    """A thinned run (see migtune.bounded): the figures that need every sample, exactly.

    Last values, the span rate and change points survive thinning as they are; the
    median dirty rate and QEMU's median ``mbps`` come from the kept samples (an even
    subset, so the medians move little); these come from the fold over all samples.
    """
    if st.interval_min is not None:
        m.throughput_min, m.throughput_max = st.interval_min, st.interval_max
    if st.page_rate_min is not None:
        m.page_rate_min, m.page_rate_max = st.page_rate_min, st.page_rate_max
    m.dirty_reports = st.dirty_reports
    if st.dirty_max is not None:
        m.dirty_rate_max = st.dirty_max
    if m.passes_source == "dirty-sync-count" and st.passes_max is not None:
        m.passes = st.passes_max
    elif m.passes_source == "remaining-jumps":
        m.passes = 1 + st.remaining_jumps
    if st.throttle_max is not None:
        m.throttle_max_pct = st.throttle_max
    if st.miss_rate_max is not None:
        m.xbzrle_cache_miss_rate_max = st.miss_rate_max
    if st.overflow_first is not None:
        m.xbzrle_overflow_first = st.overflow_first


def _throughput(run: Run, m: Metrics) -> None:
    samples = run.samples
    m.intervals = interval_rates(samples)
    # Whole-second timestamps make 1 s intervals noisy; keep the extremes for evidence only.
    rates = [iv.rate for iv in m.intervals if iv.end - iv.start >= 1.0]
    if rates:
        m.throughput_min, m.throughput_max = min(rates), max(rates)
    first = None
    if getattr(samples, "thinned", False):
        first = samples.stats().first_point  # the first point may have been thinned away
    span = _span_rate(samples, ram_start_time(run) if run.format == "proxmox" else None, first)
    if span:
        m.throughput, m.throughput_source = span, "transferred-deltas"
        return
    mbps = _values(samples, "throughput")
    if mbps:
        nonzero = [v for v in mbps if v > 0] or mbps
        m.throughput, m.throughput_source = statistics.median(nonzero), "qemu-mbps"
        return
    if m.transferred_bytes and run.ram_duration and run.ram_duration > 0:
        m.throughput = m.transferred_bytes / run.ram_duration
        m.throughput_source = "ram-phase-average"


def _passes(run: Run, samples: list[Sample], m: Metrics) -> None:
    syncs = _values(samples, "passes")
    if syncs:
        m.passes, m.passes_source = max(syncs), "dirty-sync-count"
    elif run.format == "proxmox" and len(_values(samples, "remaining")) >= 2:
        # Old Proxmox logs remaining every second, so each sync shows as a jump; nova's
        # 30 s progress lines are too sparse to count passes this way.
        m.passes, m.passes_source = 1 + count_remaining_jumps(samples), "remaining-jumps"
    if m.ram_bytes and m.transferred_bytes is not None:
        m.sent_ratio = m.transferred_bytes / m.ram_bytes
        m.passes_at_least = 1 + int(m.sent_ratio) if m.sent_ratio >= 1 else None


def _limits(run: Run, m: Metrics) -> None:
    m.downtime_limit_s = run.settings.downtime_limit
    m.max_bandwidth = run.settings.max_bandwidth
    changes = [e for e in run.events if e.kind == "downtime-change"]
    m.downtime_changes = changes
    values = [v for e in changes if (v := event_downtime_limit(e)) is not None]
    if values:
        m.downtime_limit_final_s = values[-1]
    else:
        m.downtime_limit_final_s = m.downtime_limit_s


def _xbzrle(samples: list[Sample], m: Metrics) -> None:
    xbs = [s.xbzrle for s in samples if s.xbzrle is not None]
    if not xbs:
        return
    last = xbs[-1]
    m.xbzrle_cache_size = next((x.cache_size for x in reversed(xbs) if x.cache_size), None)
    rates = [x.cache_miss_rate for x in xbs if x.cache_miss_rate is not None]
    if rates:
        m.xbzrle_cache_miss_rate, m.xbzrle_cache_miss_rate_max = rates[-1], max(rates)
    elif last.cache_miss is not None and last.pages is not None and last.cache_miss + last.pages:
        # virsh and old Proxmox give only counts: misses / (misses + hits) since the start.
        m.xbzrle_cache_miss_rate = last.cache_miss / (last.cache_miss + last.pages)
        m.xbzrle_cache_miss_rate_max = m.xbzrle_cache_miss_rate
        m.xbzrle_miss_rate_cumulative = True
    overflows = [x.overflow for x in xbs if x.overflow is not None]
    if overflows:
        m.xbzrle_overflow, m.xbzrle_overflow_first = overflows[-1], overflows[0]
    m.xbzrle_pages = last.pages
    m.xbzrle_bytes = last.bytes
    m.xbzrle_encoding_rate = last.encoding_rate


def _zero_pages(run: Run, samples: list[Sample], m: Metrics) -> None:
    m.zero_pages = _last(samples, "duplicate")
    m.normal_pages = _last(samples, "normal")
    if m.zero_pages is not None and m.normal_pages is not None:
        handled = m.zero_pages + m.normal_pages + (m.xbzrle_pages or 0)
        if handled:
            m.zero_page_share = m.zero_pages / handled
    elif run.status == "completed" and m.ram_bytes and final_transferred(run) is not None:
        sent = m.transferred_bytes
        # Every page was handled once; what was not sent in full was (nearly all) zero.
        if sent is not None and sent < m.ram_bytes:
            m.zero_page_share = 1 - sent / m.ram_bytes


def final_transferred(run: Run) -> int | None:
    """Bytes sent by the end of a completed run, only where the log states it."""
    for e in run.events:
        if e.kind == "completed" and isinstance(e.data.get("transferred"), int):
            return e.data["transferred"]
    done = [s for s in run.samples if s.status == "completed" and s.transferred is not None]
    return done[-1].transferred if done else None


def _predictions(run: Run, m: Metrics) -> None:
    if not m.throughput or not m.ram_bytes:
        return
    m.first_pass_s = m.ram_bytes / m.throughput
    if run.status in ("completed", "failed", "cancelled"):
        return
    left = m.remaining_bytes
    if left is None and m.transferred_bytes is not None and m.transferred_bytes < m.ram_bytes:
        left = m.ram_bytes - m.transferred_bytes  # still in pass 1: at most the rest of RAM
    if left is None:
        return
    net = m.throughput - (m.dirty_rate or 0.0)
    m.time_to_converge_s = left / net if net > 0 else math.inf


def _orchestration(run: Run, m: Metrics) -> None:
    m.target_start_s = target_start_duration(run)
    window = storage_window(run)
    if window is not None and window[1] is not None:
        m.storage_s = window[1] - window[0]
    if m.duration_s is not None and m.ram_duration_s is not None and run.format == "proxmox":
        m.orchestration_s = max(0.0, m.duration_s - m.ram_duration_s)


def storage_window(run: Run) -> tuple[float, float | None] | None:
    """Start and end of the disk mirror before the RAM copy.

    The end is the last mirror progress/ready time before the RAM copy starts: Proxmox
    prints mirror lines without a timestamp, so their own times can lag behind.
    """
    start = end = None
    for e in run.events:
        if e.kind == "ram-start" and start is not None:
            break
        if e.t is None:
            continue
        if e.kind == "storage-start" and start is None:
            start = e.t
        elif e.kind in ("storage-progress", "storage-ready") and start is not None:
            end = e.t if end is None else max(end, e.t)
    if start is None:
        return None
    return start, (end if end is not None and end >= start else None)


def target_start_duration(run: Run) -> float | None:
    """Seconds from "starting VM on remote node" to the next step on the source."""
    events = run.events
    for i, e in enumerate(events):
        if e.kind == "target-start" and e.t is not None:
            for nxt in events[i + 1 :]:
                if nxt.t is not None and nxt.kind not in ("target-start", "target-output"):
                    return max(0.0, nxt.t - e.t)
            return None
    return None


def link_match(rate: float | None) -> tuple[str, float] | None:
    """The link whose ceiling this sustained rate sits at, if any."""
    if not rate:
        return None
    for name, raw in LINKS:
        if LINK_BAND * raw <= rate <= raw * 1.01:
            return name, raw
    return None


def fmt_ratio(x: float | None) -> str:
    return "?" if x is None else f"{x:.2f}"
