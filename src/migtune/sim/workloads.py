"""Page-level dirtying processes for the simulator, built from a :class:`Workload` spec.

A guest's RAM is laid out as three ranges of page numbers (docs/qemu-migration.md §14.1):
``[0, static)`` non-zero pages nobody writes (kernel, page cache), ``[ws_lo, ws_hi)``
the working set the dirtier writes (non-zero), and the rest zero pages.  Zero-ness is
therefore a range test, not a per-page array, which keeps a 1 TiB guest small.

:meth:`Dirtier.writes` returns the page numbers written in ``[t0, t1)`` (repeats
allowed: XBZRLE cares how often a page was written) given the CPU throttle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from migtune.errors import InputError
from migtune.sim import rules, runs
from migtune.workload import PAGE_SIZE, Workload

THROTTLE_TIMESLICE = 0.010  # §5.3: a throttled vCPU runs 10 ms per cycle
WRITER_BURST = 0.010  # lab dirtier (dirtier.c): its token bucket holds at most 10 ms of writes


def throttled_rate(
    rate: float | None,
    cpu_rate: float,
    throttle_pct: float,
    catchup: bool,
    burst: float = WRITER_BURST,
) -> float:
    """Pages/s a writer achieves under a CPU throttle (§5.3).

    ``rate`` is the asked page rate (None = CPU-bound), ``cpu_rate`` what the vCPU can
    write flat out.  A CPU-bound writer keeps ``1 - p`` of its speed.  A rate-limited
    writer sleeps anyway: it loses nothing until the throttle's sleep exceeds what it
    can bank (``burst``: 10 ms for the lab dirtier), then keeps ``(10 ms + burst) /
    cycle`` - unless it catches up, in which case only the CPU share limits it.
    """
    share = rules.throttle_cpu_share(throttle_pct)
    if rate is None:
        return cpu_rate * share
    asked = min(rate, cpu_rate)
    if throttle_pct <= 0:
        return asked
    if catchup:
        return min(asked, cpu_rate * share)
    cycle = THROTTLE_TIMESLICE / max(share, 1e-9)
    sleep = cycle - THROTTLE_TIMESLICE
    per_cycle = min(rate * (THROTTLE_TIMESLICE + min(sleep, burst)), cpu_rate * THROTTLE_TIMESLICE)
    return min(asked, per_cycle / cycle)


def share_limited_rate(
    rate: float | None, cpu_rate: float, throttle_pct: float, cpu: float
) -> float:
    """Pages/s of a writer that needs ``cpu`` of its vCPU to write at ``rate`` (§5.3).

    Throttled to p %, the vCPU keeps ``1 - p/100`` of its time; while that is at least
    ``cpu`` the writer is unaffected, below it writes shrink in proportion.  ``cpu = 0``
    is writing the throttle does not reach (device DMA).  The lab writer without
    catch-up behaves like ``cpu = 0.5`` (10 ms slice + 10 ms banked per cycle)."""
    asked = cpu_rate if rate is None else min(rate, cpu_rate)
    if throttle_pct <= 0 or cpu <= 0:
        return asked
    share = rules.throttle_cpu_share(throttle_pct)
    return asked * min(1.0, share / cpu)


@dataclass
class Layout:
    """Where the static, working-set and zero pages are (page numbers)."""

    pages: int
    static: int  # [0, static) non-zero, never written
    ws_lo: int
    ws_hi: int

    def nonzero_end(self) -> int:
        return max(self.static, self.ws_hi)

    def zero_mask(self, idx: np.ndarray) -> np.ndarray:
        return idx >= self.nonzero_end()

    def zero_pages(self) -> int:
        return self.pages - self.nonzero_end()


def make_layout(pages: int, ws_pages: int, zero_fraction: float) -> Layout:
    if ws_pages > pages:
        raise InputError("workload: working set larger than guest RAM")
    rest = pages - ws_pages
    static = int(round(rest * (1.0 - zero_fraction)))
    return Layout(pages, static, static, static + ws_pages)


class Dirtier:
    """A spec-driven dirtier: idle, random, hot/cold or sequential over the working set."""

    def __init__(
        self,
        workload: Workload,
        layout: Layout,
        cpu_rate: float,
        seed: int = 0,
        background_rate: float = 0.0,
        background_pages: int = 0,
    ):
        self.w = workload
        self.layout = layout
        self.cpu_rate = float(cpu_rate)
        self.rng = np.random.default_rng(seed)
        self.carry = 0.0
        # the guest OS itself (timers, the init loop forking `sleep`) keeps rewriting a
        # small set of its own pages: the top ``background_pages`` of the static range
        self.background = float(background_rate) if layout.static else 0.0
        self.bg_pages = min(layout.static, background_pages or layout.static)
        self.bg_carry = 0.0
        self.rate_factor = None  # optional f(t): observed / modelled rate (replays)
        self.seq = 0
        self.bytes_per_write = workload.bytes_per_write
        n = layout.ws_hi - layout.ws_lo
        self.nhot = min(n, max(1, int(workload.hot * n))) if n else 0

    @property
    def region(self) -> tuple[int, int]:
        if self.background:
            return 0, self.layout.ws_hi
        return self.layout.ws_lo, self.layout.ws_hi

    def rate(self, throttle_pct: float) -> float:
        """Current write rate in pages/s."""
        if self.w.idle:
            return 0.0
        asked = None if self.w.rate is None else self.w.rate / PAGE_SIZE
        if self.w.cpu is not None:
            return share_limited_rate(asked, self.cpu_rate, throttle_pct, self.w.cpu)
        return throttled_rate(asked, self.cpu_rate, throttle_pct, self.w.catchup)

    def count(self, t0: float, t1: float, throttle_pct: float) -> int:
        rate = self.rate(throttle_pct)
        if self.rate_factor is not None:
            rate *= self.rate_factor(t0)
        x = self.carry + rate * max(0.0, t1 - t0)
        n = math.floor(x)
        self.carry = x - n
        return n

    def writes(self, t0: float, t1: float, throttle_pct: float) -> np.ndarray:
        """Page numbers written in ``[t0, t1)`` (repeats kept)."""
        return self.writes_rel(t0, t1, throttle_pct) + self.region[0]

    def writes_rel(self, t0: float, t1: float, throttle_pct: float) -> np.ndarray:
        """The same, relative to the start of the writable range (:attr:`region`)."""
        return self.draw(*self.write_counts(t0, t1, throttle_pct))

    def write_counts(self, t0: float, t1: float, throttle_pct: float) -> tuple[int, int]:
        """How many working-set and background writes fall in ``[t0, t1)``, without
        drawing their pages: the engine adds these up between two bitmap syncs and draws
        the pages once (:meth:`draw` or :meth:`distinct_runs`)."""
        n = self.count(t0, t1, throttle_pct)
        if not self.background:
            return n, 0
        x = self.bg_carry + self.background * rules.throttle_cpu_share(throttle_pct) * (t1 - t0)
        nb = math.floor(x)
        self.bg_carry = x - nb
        return n, nb

    def draw(self, n_ws: int, n_bg: int) -> np.ndarray:
        """The pages of ``n_ws`` working-set and ``n_bg`` background writes (relative to
        :attr:`region`, repeats kept)."""
        ws = self._ws_writes(n_ws)
        if not self.background:
            return ws
        bg = self.rng.integers(self.layout.static - self.bg_pages, self.layout.static, size=n_bg)
        return np.concatenate([ws + self.layout.ws_lo, bg])

    def populations(self, n_ws: int, n_bg: int) -> list[tuple[int, int, int, int | None, bool]]:
        """Where ``n_ws`` working-set and ``n_bg`` background writes land, as a statistical
        summary instead of pages: ``(lo, hi, n, sweep_from, background)`` = ``n`` uniform
        writes over ``[lo, hi)`` (relative to :attr:`region`), or a sweep of ``n`` pages
        from ``sweep_from`` wrapping within ``[lo, hi)``.  Advances the sweep and draws the
        hot/cold split as :meth:`draw` does."""
        off = self.layout.ws_lo - self.region[0]
        size = self.layout.ws_hi - self.layout.ws_lo
        out: list[tuple[int, int, int, int | None, bool]] = []
        if n_ws > 0 and size > 0:
            if self.w.pattern == "seq":
                out.append((off, off + size, n_ws, self.seq, False))
                self.seq = (self.seq + n_ws) % size
            elif self.w.pattern == "hotcold" and self.nhot < size:
                nh = int(self.rng.binomial(n_ws, self.w.hotw))
                out.append((off, off + self.nhot, nh, None, False))
                out.append((off + self.nhot, off + size, n_ws - nh, None, False))
            else:
                hi = self.nhot if self.w.pattern == "hotcold" else size
                out.append((off, off + hi, n_ws, None, False))
        if self.background and n_bg > 0:
            out.append((self.layout.static - self.bg_pages, self.layout.static, n_bg, None, True))
        return out

    def distinct_runs(self, n_ws: int, n_bg: int) -> tuple[np.ndarray, np.ndarray]:
        """The distinct pages ``n_ws`` + ``n_bg`` writes hit, as sorted runs ``[start, end)``
        relative to :attr:`region` - the same distribution as the distinct pages of
        :meth:`draw`, at a cost that grows with the pages hit, not the writes."""
        parts = []
        for lo, hi, n, sweep_from, _ in self.populations(n_ws, n_bg):
            if sweep_from is not None:
                parts.append(runs.sweep(sweep_from, n, hi - lo, lo))
            else:
                parts.append(runs.uniform_hits(self.rng, lo, hi, n))
        return runs.union_all(parts)

    def _ws_writes(self, n: int) -> np.ndarray:
        size = self.layout.ws_hi - self.layout.ws_lo
        dt = np.int64
        if n <= 0 or size <= 0:
            return np.empty(0, dtype=dt)
        if self.w.pattern == "seq":
            idx = np.arange(self.seq, self.seq + n, dtype=np.int64) % size
            self.seq = (self.seq + n) % size
            return idx.astype(dt)
        if self.w.pattern == "hotcold" and self.nhot < size:
            nh = int(self.rng.binomial(n, self.w.hotw))
            hot = self.rng.integers(0, self.nhot, size=nh, dtype=dt)
            cold = self.rng.integers(self.nhot, size, size=n - nh, dtype=dt)
            return np.concatenate([hot, cold])
        if self.w.pattern == "hotcold":
            return self.rng.integers(0, self.nhot, size=n, dtype=dt)
        return self.rng.integers(0, size, size=n, dtype=dt)

    def distinct_rate(self, throttle_pct: float, window: float) -> float:
        """Expected distinct pages/s dirtied over a window: what QEMU's dirty-pages-rate sees."""
        lo, hi = self.region
        n = self.rate(throttle_pct) * window
        size = hi - lo
        if size <= 0 or n <= 0:
            return 0.0
        if self.w.pattern == "seq":
            return min(n, size) / window
        return size * (1 - math.exp(-n / size)) / window


class TraceDirtier:
    """Trace-driven writes: timestamped page numbers, or a sequence of dirty bitmaps.

    Files (numpy ``.npz``):

    * ``t`` (seconds, ascending) and ``pages`` (page numbers), one write each; or
    * ``t`` (end time of each interval) and ``bitmaps`` (one packed bit row per
      interval, ``np.packbits`` order): the set pages are written, spread evenly over
      the interval ``[t[i-1], t[i])``.

    Text files hold one write per line: ``seconds page`` (comma or space separated).
    The trace repeats when it runs out (``loop``).  Throttling scales time: a guest kept
    at ``1 - p`` of its CPU replays the trace that much slower.
    """

    def __init__(self, path: str | Path, pages: int, bytes_per_write: int = 8, loop: bool = True):
        self.bytes_per_write = bytes_per_write
        self.loop = loop
        t, pg = _load_trace(Path(path))
        if len(pg) and (pg.min() < 0 or pg.max() >= pages):
            raise InputError(f"{path}: page numbers outside guest RAM (0..{pages - 1})")
        order = np.argsort(t, kind="stable")
        self.t, self.pages = t[order], pg[order]
        self.period = float(self.t[-1]) if len(self.t) and self.t[-1] > 0 else 1.0
        hi = int(self.pages.max()) + 1 if len(self.pages) else 0
        self.layout = Layout(pages, 0, 0, hi)
        self.guest_t = 0.0  # trace time consumed (slower when throttled)
        self.w = None

    @property
    def region(self) -> tuple[int, int]:
        return 0, self.layout.ws_hi

    def _index(self, x: float) -> int:
        """Writes of the looped trace before trace time ``x``, as one global count.

        A function of ``x`` alone, so back-to-back slices share their boundary exactly:
        no write is lost or counted twice however the period boundaries round.
        """
        k = math.floor(x / self.period)
        return k * len(self.t) + int(np.searchsorted(self.t, x - k * self.period, side="left"))

    def _slice(self, a: float, b: float) -> np.ndarray:
        if not self.loop:
            lo, hi = np.searchsorted(self.t, [a, b], side="left")
            return self.pages[lo:hi]
        lo, hi = self._index(a), self._index(b)
        if hi <= lo or not len(self.t):
            return np.empty(0, dtype=np.int64)
        return np.take(self.pages, np.arange(lo, hi) % len(self.t))

    def writes(self, t0: float, t1: float, throttle_pct: float) -> np.ndarray:
        dt = max(0.0, t1 - t0) * rules.throttle_cpu_share(throttle_pct)
        a, self.guest_t = self.guest_t, self.guest_t + dt
        return self._slice(a, self.guest_t)

    def writes_rel(self, t0: float, t1: float, throttle_pct: float) -> np.ndarray:
        return self.writes(t0, t1, throttle_pct)  # the writable range starts at page 0

    def rate(self, throttle_pct: float) -> float:
        return len(self.pages) / self.period * rules.throttle_cpu_share(throttle_pct)


def _load_trace(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        if path.suffix == ".npz":
            data = np.load(path)
            t = np.asarray(data["t"], dtype=np.float64)
            if "pages" in data:
                return t, np.asarray(data["pages"], dtype=np.int64)
            bm = np.asarray(data["bitmaps"], dtype=np.uint8)
            if bm.ndim != 2 or len(bm) != len(t):
                raise InputError(f"{path}: 'bitmaps' must be one packed row per time in 't'")
            ts, ps = [], []
            prev = 0.0
            for end, row in zip(t, bm, strict=True):
                pg = np.flatnonzero(np.unpackbits(row))
                ts.append(np.linspace(prev, end, len(pg), endpoint=False))
                ps.append(pg)
                prev = float(end)
            return np.concatenate(ts), np.concatenate(ps).astype(np.int64)
        text = path.read_text(encoding="utf-8").replace(",", " ")
        rows = np.loadtxt(text.splitlines(), comments="#", ndmin=2)
    except FileNotFoundError:
        raise InputError(f"{path}: no such trace file") from None
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: cannot read trace ({exc})") from None
    if rows.shape[1] < 2:
        raise InputError(f"{path}: each line must be 'seconds page'")
    return rows[:, 0].astype(np.float64), rows[:, 1].astype(np.int64)
