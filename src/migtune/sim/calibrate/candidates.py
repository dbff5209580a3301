"""First guesses of the guest's workload from the evidence, before any simulation.

A pass of ``T`` seconds leaves ``D`` bytes dirty.  For each write pattern over a
working set ``W`` at ``r`` bytes/s (random: ``D = W (1 - exp(-rT/W))``; sequential:
``D = min(W, rT)``; hot/cold: the sum of two random parts), one (D, T) pair fixes
``r`` once ``W`` is chosen, so the seeds are a short ladder of working sets per
pattern.  The engine then decides between them (``fit.py``).
"""

from __future__ import annotations

import math

from migtune.sim.calibrate.evidence import Evidence
from migtune.workload import PAGE_SIZE, Workload

HOT, HOTW = 0.1, 0.9  # the hot/cold shape the seeds assume (the workload spec's defaults)
MIN_WS = 64 * PAGE_SIZE


def dirtied(pattern: str, ws: float, rate: float, t: float) -> float:
    """Distinct bytes dirtied in ``t`` seconds (expected value)."""
    if ws <= 0 or rate <= 0 or t <= 0:
        return 0.0
    if pattern == "seq":
        return min(ws, rate * t)
    if pattern == "hotcold":
        wh, wc = ws * HOT, ws * (1 - HOT)
        return wh * (1 - math.exp(-HOTW * rate * t / wh)) + wc * (
            1 - math.exp(-(1 - HOTW) * rate * t / wc)
        )
    return ws * (1 - math.exp(-rate * t / ws))


def rate_for(pattern: str, ws: float, dirty: float, t: float) -> float | None:
    """The write rate that dirties ``dirty`` distinct bytes of ``ws`` in ``t`` s (bisection;
    None when ``ws`` cannot hold that much)."""
    if dirty <= 0 or t <= 0:
        return 0.0
    if dirty >= ws * 0.999:
        return None
    lo, hi = dirty / t, dirty / t
    while dirtied(pattern, ws, hi, t) < dirty:
        hi *= 2
        if hi > 1e13:
            return None
    for _ in range(50):
        mid = (lo + hi) / 2
        if dirtied(pattern, ws, mid, t) < dirty:
            lo = mid
        else:
            hi = mid
    return hi


def _ladder(lo: float, hi: float, n: int) -> list[float]:
    lo, hi = max(MIN_WS, lo), max(MIN_WS, hi)
    if hi <= lo * 1.05 or n <= 1:
        return [hi]
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


def _ws(x: float) -> int:
    return max(MIN_WS, int(x) // PAGE_SIZE * PAGE_SIZE)


def sync_pairs(ev: Evidence) -> list[tuple[float, float]]:
    """(pass seconds, bytes dirtied in it) for each unthrottled pass the log shows.

    The remaining figure comes from the first sample after a sync, up to one sample
    interval late: half an interval of sending is added back, and syncs seen more than
    a third of a pass late are left out."""
    thr = {round(t, 3): p for t, _, p in ev.dirty_rates}
    out = []
    prev_t = 0.0
    times = [t for t, _ in ev.progress]
    prev_n = 1
    for t, n, rem in ev.syncs:
        i = next((k for k, x in enumerate(times) if x >= t - 1e-9), None)
        gap = t - times[i - 1] if i else 0.0
        span = t - prev_t
        consecutive = n == prev_n + 1  # the span is one pass
        if consecutive and span > 0 and gap <= span / 3 and not thr.get(round(t, 3)):
            out.append((span, rem + (ev.wire_rate or 0.0) * gap / 2))
        prev_t, prev_n = t, n
    return out


def rate_periods(ev: Evidence, nonzero: int | None = None) -> list[tuple[float, float, bool]]:
    """(period seconds, bytes dirtied in it, is the first period) for each unthrottled
    rate period the log shows a ``dirty-pages-rate`` for.

    QEMU computes the rate at a sync that closes a period of at least 1 s: the pages
    newly dirtied in the period over its length (docs/qemu-migration.md §1.6), so a
    period is about a pass, not a second, and rate x period is the pass's dirty set.
    A value seen for the first time ended its period between the line before and its
    own line.  The first period starts with the migration and ends with the first
    pass: where the log says how much memory is non-zero, when ``transferred`` reached
    it; otherwise half-way between the two lines.  Later periods run from one change of
    the value to the next (a slow sampler may merge several)."""
    rates = sorted((t, r) for t, r, thr in ev.dirty_rates if r > 0 and not thr)
    if not rates:
        return []
    seen = {round(t, 3) for t, _ in rates}
    times = sorted(t for t, _ in ev.progress)
    # (earliest end, latest end, rate, every line since the previous change had a rate)
    changes: list[tuple[float, float, float, bool]] = []
    prev_value = None
    unbroken = True
    for t in times:
        if round(t, 3) not in seen:
            unbroken = ev.rate_absent_is_zero and prev_value is None
            continue
        r = next(v for x, v in rates if round(x, 3) == round(t, 3))
        if r != prev_value:
            before = [x for x in times if x < t - 1e-9]
            changes.append((before[-1] if before else 0.0, t, r, unbroken))
            unbroken = True
        prev_value = r
    if not changes:
        return []
    out: list[tuple[float, float, bool]] = []
    lo, hi, r, _ = changes[0]
    # the first value ends the first period only where a line without a rate means 0
    if ev.start_known and ev.rate_absent_is_zero and rates[0][0] >= hi - 1e-9:
        end = (lo + hi) / 2
        crossed = _time_sent(ev, nonzero) if nonzero else None
        if crossed is not None:
            end = min(hi, max(lo, crossed))
        if end > 0:
            out.append((end, r * end, True))
    for (lo0, hi0, _, _), (lo1, hi1, r1, unbroken1) in zip(changes, changes[1:], strict=False):
        span = (lo1 + hi1) / 2 - (lo0 + hi0) / 2
        if span >= 1.0 and unbroken1:
            out.append((span, r1 * span, False))
    return out


def _time_sent(ev: Evidence, sent: float) -> float | None:
    """When ``transferred`` reached ``sent`` (linear between the lines around it)."""
    prev = (0.0, 0) if ev.start_known else None
    for t, b in sorted(ev.progress):
        if b >= sent:
            if prev is None or b <= prev[1]:
                return t
            return prev[0] + (t - prev[0]) * (sent - prev[1]) / (b - prev[1])
        prev = (t, b)
    return None


def fit_pattern(pattern: str, pairs: list[tuple[float, float]], writable: int):
    """The working sets (ladder) with the rate fitting ``pairs`` best, by residual:
    ``[(residual, ws, rate)]`` sorted, best first."""
    top = max(d for _, d in pairs)
    out = []
    for ws in _ladder(top * 1.02, writable, 18):
        rates = [rate_for(pattern, ws, d, t) for t, d in pairs]
        rates = [r for r in rates if r]
        if not rates:
            continue
        rates.sort()
        rate = rates[len(rates) // 2]
        res = sum(
            math.log(max(1.0, dirtied(pattern, ws, rate, t)) / d) ** 2 for t, d in pairs
        ) / len(pairs)
        out.append((res, ws, rate))
    return sorted(out)


def seeds(
    ev: Evidence, link: float, writable: int, downtime_limit: float | None = None
) -> tuple[list[tuple[Workload, int]], str]:
    """Candidate workloads, each with the non-zero memory it assumes, and a sentence
    saying what they were built from."""
    dset, tpass, drate = ev.dirty_set(), ev.pass_time(), ev.dirty_rate()
    out: list[tuple[Workload, int]] = []

    def add(pattern: str, ws: float, rate: float | None, nonzero: float = writable) -> None:
        if rate is None or rate <= 0 or ws > nonzero:
            return
        out.append((Workload(ws=_ws(ws), rate=float(rate), pattern=pattern), int(nonzero)))

    pairs = sync_pairs(ev)
    if len(pairs) >= 2:
        # passes of different lengths: each pattern's best working sets and rates
        fits = []
        for pattern in ("random", "hotcold", "seq"):
            fits += [
                (res, pattern, ws, r) for res, ws, r in fit_pattern(pattern, pairs, writable)[:2]
            ]
        fits.sort()
        for _, pattern, ws, r in fits[:6]:
            add(pattern, ws, r)
        how = (
            f"{len(pairs)} passes of {min(t for t, _ in pairs):.1f}-{max(t for t, _ in pairs):.1f} s "
            f"leaving {min(d for _, d in pairs) / 2**20:.1f}-{max(d for _, d in pairs) / 2**20:.1f} MiB "
            "dirty (remaining right after each sync)"
        )
    elif dset and tpass:
        # the dirty set per pass: random/hot-cold need a larger working set than D
        for pattern in ("random", "hotcold"):
            for f in (1.1, 1.6, 3.0, 8.0):
                add(pattern, min(writable, dset * f), rate_for(pattern, dset * f, dset, tpass))
        add("seq", dset, dset / tpass)  # a sweep not yet wrapping in one pass
        add("seq", dset, 2.5 * dset / tpass)  # a sweep wrapping: the whole set each pass
        how = (
            f"a dirty set of {dset / 2**20:.1f} MiB per {tpass:.1f} s pass "
            "(remaining right after each sync)"
        )
    elif drate:
        # QEMU's dirty-pages-rate: the pages newly dirtied in a rate period (>= 1 s,
        # closed by a sync: about a pass) over its length.  A period of T s that
        # counted D bytes fixes the rate once the working set is chosen, as a pass
        # does: the first period (the first pass) and the median later one are used;
        # where the log shows no period, the rate is read as one second's dirtying
        hi = writable
        periods = [p for p in rate_periods(ev, writable) if p[1] < writable]
        later = sorted((p for p in periods if not p[2]), key=lambda p: p[0])
        chosen = [p for p in periods if p[2]] + ([later[len(later) // 2]] if later else [])
        for t, d, _ in chosen:
            for ws in _ladder(d * 1.1, hi, 4):
                for pattern in ("random", "hotcold"):
                    add(pattern, ws, rate_for(pattern, ws, d, t))
            add("seq", min(hi, d * 1.1), d / t)
        if not chosen:
            lo = min(hi, max(drate * 4, MIN_WS))
            for ws in _ladder(lo, hi, 4):
                for pattern in ("random", "hotcold"):
                    add(pattern, ws, rate_for(pattern, ws, min(drate, ws * 0.9), 1.0))
            add("seq", lo, drate)
        how = f"a dirty-page rate of {drate / 2**20:.1f} MiB/s"
        if chosen:
            how += " over rate periods of " + ", ".join(f"{t:.1f} s" for t, _, _ in chosen)
    elif not ev.converged and ev.transferred and ev.transferred > writable:
        # re-sent bytes while still running: the guest keeps dirtying at about link speed
        lo = min(writable, max(link * 2, MIN_WS))
        for ws in _ladder(lo, writable, 4):
            for f in (1.0, 2.0):
                add("random", ws, link * f)
        how = (
            f"{(ev.transferred - writable) / 2**30:.1f} GiB sent beyond the RAM's content "
            "while still running (a guest dirtying about as fast as the link sends)"
        )
    elif ev.converged and ev.duration and ev.transferred:
        # converged: what was sent beyond the non-zero memory was re-dirtied; with no
        # page counters the split is unknown, so some of the bytes may be re-sends
        # (certainly when XBZRLE encoded pages: only a page sent before is encoded)
        resent = ev.xbzrle is not None and bool(ev.xbzrle.pages)
        certain = ev.transferred - writable  # sent beyond the non-zero memory: re-sends
        if not resent and certain < 0.05 * ev.transferred:
            out.append((Workload(ws=0, rate=0.0), writable))
        if certain >= 0.05 * ev.transferred:
            lo = min(writable, max(MIN_WS, link * 0.5))
            for ws in _ladder(lo, writable, 3):
                for f in (0.25, 1.0):
                    add("random", ws, f * certain / max(1.0, ev.duration))
            # a small set rewritten all the time, re-sent every pass, that fitted the
            # downtime limit only once the platform raised it
            final = downtime_limit or 0.3
            for f in (0.7, 1.5):
                add("random", link * final * f, 2.0 * link)
        if certain < 0.5 * ev.transferred:
            for share in (0.1, 0.25):
                extra = share * ev.transferred
                base = min(writable, ev.transferred - extra)
                for ws in _ladder(max(extra, MIN_WS), max(extra, base * 0.8), 3):
                    add("random", ws, extra / max(1.0, ev.duration), base)
        how = "only the totals (RAM, bytes sent, time)"
    else:
        out.append((Workload(ws=0, rate=0.0), writable))
        how = "no dirty-rate, pass or re-send data"
    if not out:
        out.append((Workload(ws=0, rate=0.0), writable))
    return out, how
