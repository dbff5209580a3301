"""What a log says about the guest and the link, as numbers (docs/qemu-migration.md §14.10).

:func:`extract` reads one :class:`~migtune.model.Run` (any format) into an
:class:`Evidence`: the same figures are read from a simulated run, so the fit compares
like with like (QEMU's counters as a log shows them, not the simulator's internals).

Every figure is optional except the RAM size: a three-line Proxmox excerpt has RAM,
transferred and an XBZRLE line; a migtune recording has everything.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from migtune.errors import InputError
from migtune.model import Run, Xbzrle
from migtune.outcome import Outcome, XbzrleOutcome, outcome_from_run
from migtune.workload import PAGE_SIZE


@dataclass
class Evidence:
    ram: int  # bytes
    status: str  # completed | cancelled | failed | active
    duration: float | None  # s of RAM migration observed (to completion or to the end of the log)
    duration_how: str
    transferred: int | None  # bytes on the wire at the end
    progress: list[tuple[float, int]] = field(default_factory=list)  # (t, transferred)
    # (t, dirty-sync-count, remaining) at the first sample after each sync
    syncs: list[tuple[float, int, int]] = field(default_factory=list)
    dirty_rates: list[tuple[float, float, float]] = field(default_factory=list)  # t, B/s, thr %
    passes: int | None = None
    max_throttle: float = 0.0
    xbzrle: Xbzrle | None = None
    duplicate: int | None = None  # zero pages QEMU counted
    schedule: list[tuple[float, str]] = field(default_factory=list)  # (t, "name=value")
    postcopy_at: float | None = None  # s into the migration the post-copy switch happened
    wire_rate: float | None = None  # observed bytes/s on the wire while running
    start_known: bool = True  # the log shows when the migration started
    throttle_seen: bool = False  # the log reports the auto-converge throttle at all
    # a line without a dirty rate means the rate was 0 (QMP, HMP) - not so in Proxmox
    # logs, which print it only when it exceeds the line's page rate
    rate_absent_is_zero: bool = True
    # s into the migration each pass started at, from QMP MIGRATION_PASS events (recordings)
    pass_starts: dict[int, float] = field(default_factory=dict)

    def shift(self, dt: float) -> None:
        """Move every time by ``dt`` (the log began ``dt`` s into the migration)."""
        self.progress = [(t + dt, b) for t, b in self.progress]
        self.syncs = [(t + dt, n, r) for t, n, r in self.syncs]
        self.dirty_rates = [(t + dt, r, p) for t, r, p in self.dirty_rates]
        self.schedule = [(t + dt, a) for t, a in self.schedule]
        if self.postcopy_at is not None:
            self.postcopy_at += dt
        if self.duration is not None:
            self.duration += dt

    @property
    def converged(self) -> bool:
        return self.status == "completed"

    def dirty_set(self) -> float | None:
        """Median dirty data left right after a sync, passes 3+ (pass 2 also holds what
        pass 1 missed), else any sync after the first."""
        later = [r for _, n, r in self.syncs if n >= 3] or [r for _, n, r in self.syncs if n >= 2]
        return float(statistics.median(later)) if later else None

    def dirty_rate(self) -> float | None:
        vals = [r for _, r, thr in self.dirty_rates if r > 0 and thr == 0]
        vals = vals or [r for _, r, _ in self.dirty_rates if r > 0]
        return float(statistics.median(vals)) if vals else None

    def pass_time(self) -> float | None:
        """Median seconds between syncs after the first pass."""
        ts = [t for t, n, _ in self.syncs if n >= 2]
        gaps = [b - a for a, b in zip(ts, ts[1:], strict=False) if b > a]
        if gaps:
            return float(statistics.median(gaps))
        first = self.first_pass()
        return first[0] if first else None

    def first_pass(self) -> tuple[float, float] | None:
        """A run still in its second pass (a live prediction): the first pass is the one
        pass there is, as (seconds, bytes it left dirty).  The sync's own time comes from
        QEMU's MIGRATION_PASS event where the recording has it, and the bytes already
        sent again between the sync and the sample are added back."""
        if self.status != "active" or [n for _, n, _ in self.syncs] != [2]:
            return None
        t, _, rem = self.syncs[0]
        start = self.pass_starts.get(2, t)
        if not 0 < start <= t:
            start = t
        return start, rem + (self.wire_rate or 0.0) * (t - start)

    def overflow_share(self) -> float | None:
        x = self.xbzrle
        if x is None or not x.overflow and not x.pages:
            return None
        return (x.overflow or 0) / max(1, (x.pages or 0) + (x.overflow or 0))

    def encoded_per_page(self) -> float | None:
        """XBZRLE bytes per encoded page (overflowed pages excluded: QEMU counts them in
        ``pages`` but their bytes go out as normal pages)."""
        x = self.xbzrle
        if x is None or not x.pages or x.bytes is None:
            return None
        encoded = max(1, x.pages - (x.overflow or 0))
        return x.bytes / encoded


def _start(run: Run) -> float:
    """The migration's origin on the run's clock: the (last) RAM-start event, or the
    first sample minus the total-time it reports."""
    starts = [e.t for e in run.events if e.kind == "ram-start" and e.t is not None]
    if starts:
        return max(starts)
    for s in run.samples:
        if s.t is not None and s.total_time is not None:
            return s.t - s.total_time
    first = next((s.t for s in run.samples if s.t is not None), None)
    return first or 0.0


def _duration(run: Run, start: float) -> tuple[float | None, str]:
    res = run.meta.get("result") if isinstance(run.meta, dict) else None
    if isinstance(res, dict) and isinstance(res.get("total_time_s"), int | float):
        return float(res["total_time_s"]), "the result line"
    last = run.last
    if run.status == "completed":
        if last is not None and last.total_time is not None:
            return last.total_time, "QEMU's total-time"
        if run.ram_duration is not None:
            return run.ram_duration, "the log's RAM phase"
    ends = [e.t for e in run.events if e.kind in ("cancelled", "completed", "error") and e.t]
    ts = [s.t for s in run.samples if s.t is not None]
    qemu = [s.total_time for s in run.samples if s.total_time is not None]
    if ends and ts:
        return max(min(ends), max(ts)) - start, "the log's clock (start to end of migration)"
    if ts and max(ts) > start:
        return max(ts) - start, "the log's clock (start to last line)"
    if qemu:
        return max(qemu), "QEMU's total-time"
    return None, "not in the log"


def _wire_rate(run: Run) -> float | None:
    """Bytes/s on the wire: QEMU's per-window mbps while running, else the slope of
    ``transferred`` (Proxmox's per-line rate counts zero pages: last resort)."""
    vals = [s.throughput for s in run.samples if s.throughput and s.status != "completed"]
    if vals:
        return float(statistics.median(vals))
    pts = [(s.t, s.transferred) for s in run.samples if s.t is not None and s.transferred]
    if len(pts) >= 2 and pts[-1][0] > pts[0][0] and pts[-1][1] > pts[0][1]:
        return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
    vals = [s.throughput for s in run.samples if s.throughput]
    if vals:
        return vals[-1]
    vals = [s.page_rate for s in run.samples if s.page_rate and s.status != "completed"]
    return float(statistics.median(vals)) if vals else None


_THROTTLE_PARAMS = ("max-cpu-throttle", "cpu-throttle-initial", "cpu-throttle-increment")


def _schedule(run: Run, start: float) -> list[tuple[float, str]]:
    """Setting changes made during the migration (Proxmox doubling, Nova steps, a
    policy's ``migrate-set-parameters``) as ``(t, "name=value")``."""
    out: list[tuple[float, str]] = []
    for e in run.events:
        if e.kind not in ("downtime-change", "bandwidth-change", "settings") or e.t is None:
            continue
        data = e.data if isinstance(e.data, dict) else {}
        t = max(0.0, e.t - start)
        if e.kind == "settings" and t <= 0:
            continue  # set before the start: already in the header's settings
        params = data.get("params")
        if isinstance(params, dict):
            if "downtime-limit" in params:
                out.append((t, f"downtime-limit={params['downtime-limit']}ms"))
            if "max-bandwidth" in params:
                out.append((t, f"max-bandwidth={params['max-bandwidth']}"))
            # a policy stepping auto-converge mid-run (``--policy migtune``): the
            # maximum first, so the initial throttle never exceeds it on the way
            steps = [k for k in _THROTTLE_PARAMS if k in params]
            out += [(t + i * 1e-6, f"{k}={params[k]}") for i, k in enumerate(steps)]
        elif data.get("downtime_limit") is not None:
            out.append((t, f"downtime-limit={float(data['downtime_limit']) * 1000:.0f}ms"))
        elif data.get("max_bandwidth") is not None:
            out.append((t, f"max-bandwidth={float(data['max_bandwidth']):.0f}"))
    return sorted(out)


def extract(run: Run) -> Evidence:
    """All the figures :func:`~migtune.sim.calibrate.calibrate` fits, from one run."""
    if not run.samples:
        raise InputError("the log has no progress samples to calibrate from")
    ram = run.ram_bytes or max((s.total or 0) for s in run.samples)
    if not ram:
        raise InputError("the log does not say how much RAM the VM has")
    start = _start(run)
    status = run.status if run.status not in (None, "unknown") else "active"
    res = run.meta.get("result") if isinstance(run.meta, dict) else None
    if isinstance(res, dict) and res.get("status") in ("completed", "cancelled", "failed"):
        status = str(res["status"])  # the result line knows how the run ended
    duration, how = _duration(run, start)
    ev = Evidence(
        ram=int(ram),
        status=status,
        duration=duration,
        duration_how=how,
        transferred=next(
            (s.transferred for s in reversed(run.samples) if s.transferred is not None), None
        ),
    )
    if isinstance(res, dict) and res.get("transferred_bytes"):
        ev.transferred = int(res["transferred_bytes"])
    prev = None
    prev_t = None
    for s in run.samples:
        t = None if s.t is None else s.t - start
        if t is not None and s.transferred is not None:
            ev.progress.append((t, s.transferred))
        # a sync is evidence only when seen fresh: one sync since the previous sample
        # and that sample at most 1.5 s earlier (a snapshot every 5 s sees a dirty
        # set already half sent, or several passes at once)
        new_pass = s.passes and prev is not None and s.passes == prev + 1
        fresh = t is not None and prev_t is not None and t - prev_t <= 1.5
        running = s.status not in ("completed", "cancelled")
        if new_pass and fresh and running and s.remaining is not None:
            ev.syncs.append((t, s.passes, s.remaining))
        if t is not None:
            prev_t = t
        if s.passes:
            prev = s.passes
        if s.dirty_rate is not None and t is not None and s.status != "completed":
            ev.dirty_rates.append((t, float(s.dirty_rate), float(s.throttle_pct or 0.0)))
        ev.max_throttle = max(ev.max_throttle, float(s.throttle_pct or 0.0))
        ev.throttle_seen = ev.throttle_seen or s.throttle_pct is not None
    ev.rate_absent_is_zero = run.format != "proxmox"
    ev.passes = max((s.passes for s in run.samples if s.passes), default=None)
    ev.xbzrle = next((s.xbzrle for s in reversed(run.samples) if s.xbzrle), None)
    ev.duplicate = next((s.duplicate for s in reversed(run.samples) if s.duplicate), None)
    ev.schedule = _schedule(run, start)
    for e in run.events:
        if e.kind == "qmp-event" and e.t is not None and e.data.get("event") == "MIGRATION_PASS":
            n = (e.data.get("data") or {}).get("pass")
            if isinstance(n, int) and n not in ev.pass_starts:
                ev.pass_starts[n] = e.t - start
    pc = [e.t for e in run.events if e.kind == "postcopy-start" and e.t is not None]
    ev.postcopy_at = min(pc) - start if pc else None
    ev.wire_rate = _wire_rate(run)
    ev.start_known = any(e.kind == "ram-start" for e in run.events) or any(
        s.total_time is not None for s in run.samples
    )
    if ev.wire_rate is None and ev.start_known and len(ev.progress) == 1:
        # one progress line of a run whose start is known (a failed run's only line):
        # what it shows as sent, over the time since the start
        t, sent = ev.progress[0]
        if t > 0 and sent:
            ev.wire_rate = sent / t
    return ev


def nonzero_estimate(ev: Evidence) -> tuple[int, str]:
    """Bytes of guest RAM that are not zero pages (what the first pass must send)."""
    pages = ev.ram // PAGE_SIZE
    if ev.duplicate is not None:
        return max(0, pages - min(pages, ev.duplicate)) * PAGE_SIZE, "QEMU's zero-page counter"
    first = [(t, r) for t, n, r in ev.syncs if n == 2]
    if first and ev.progress:
        t2 = first[0][0]
        sent = max((b for t, b in ev.progress if t <= t2), default=0)
        if sent:
            return min(ev.ram, sent), "bytes sent in the first pass"
    if ev.converged and ev.transferred and ev.transferred < ev.ram:
        return ev.transferred, "bytes sent against the RAM size"
    return ev.ram, "no page counters: all RAM assumed non-zero"


def observed_outcome(run: Run) -> Outcome:
    """The run's outcome: its result line (``lab run`` / ``migrate --record``) when it has
    one, else read from the samples.  A run without an outcome yet (a live prediction's
    prefix) is ``active``, not converged: the fit reads it as "not finished by its last
    sample", a lower bound on the total time (``fit.score``), never as a cancelled run."""
    res = run.meta.get("result") if isinstance(run.meta, dict) else None
    if isinstance(res, dict) and "converged" in res:
        xb = res.get("xbzrle")
        return Outcome(
            converged=bool(res["converged"]),
            status=str(res.get("status")),
            total_time_s=res.get("total_time_s"),
            downtime_ms=res.get("downtime_ms"),
            transferred_bytes=res.get("transferred_bytes"),
            passes=res.get("passes"),
            max_throttle_pct=res.get("max_throttle_pct"),
            xbzrle=XbzrleOutcome(**xb) if isinstance(xb, dict) else None,
        )
    return outcome_from_run(run)
