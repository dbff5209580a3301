"""XBZRLE priced from statistics: no per-page arrays over the guest, no full cache.

For a workload described by a spec (not a trace) the guest's pages fall into a few
*populations* - the working set (or its hot and cold parts) and the guest OS's own
background pages - whose pages are alike: each is written at the same rate, uniformly.
So instead of asking, for every page sent, "is it in the cache, was it written since
it was last sent" (the page-level path, :meth:`migtune.sim.engine.Engine.plan`), a
batch of a population's pages is priced by the *shares* of hits, misses, overflows
and unchanged pages:

* :func:`send_to_slots` - the cache (docs/qemu-migration.md §4.2) is direct-mapped, so
  its slots are independent: a *sample* of slots (:class:`SlotSample`, a few thousand,
  with every page that maps to them) is simulated exactly - lookups, refused inserts
  (``CACHED_PAGE_LIFETIME``), in scan order and generation by generation - with each
  sampled page sent when its population's pages around it are.  The sample's hit
  share is the population's;
* :func:`unchanged_share` - a page can be in the bitmap and yet unwritten since it was
  last sent (written after the sync, then sent in the same generation: the next sync
  flags it again).  Those pages are kept as a pool that decays as the guest writes;
* :func:`wrapped_share` - the size model's counter is mod 256 (docs/simulator.md
  "XBZRLE"): a page written a multiple of 256 times since it was sent is unchanged;
* :func:`hit_cost` - a changed hit costs ``8 + 3 + len`` on the wire, an overflow a
  whole page, an unchanged page nothing (§3, §4.1; sizes from
  :func:`migtune.sim.xbzrle.prefix_write_size`).

The page-level path stays the reference (``simulate(..., xbzrle_pricing="pages")``,
traces, exact mode); ``benchmarks/bench_sim.py`` prints how far the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from migtune.sim import rules

CACHED_PAGE_LIFETIME = 2  # §4.2 (as migtune.sim.cache)
SAMPLE_SLOTS = 8192  # cache slots simulated exactly (all of them when fewer) ...
SAMPLE_PAGES = 1 << 20  # ... with at most this many pages mapping to them
# the hit share is averaged (exponentially) over this share of a round's sampled sends
SAMPLE_MEMORY = 0.05


def send_to_slots(owner, age, rows, pages, generation: int, update: bool) -> np.ndarray:
    """§4.2 for pages sent in one go, all in distinct slots (``rows``): a lookup hits
    when the slot holds the page (the hit stamps it with the generation); a miss takes
    the slot when it is empty or its occupant was last stamped ``CACHED_PAGE_LIFETIME``
    or more generations ago (``cache_insert``).  Returns the hit mask."""
    held = owner[rows]
    hit = held == pages
    if update:
        take = ~hit & ((held < 0) | (age[rows] + CACHED_PAGE_LIFETIME <= generation))
        owner[rows[take]] = pages[take]
        age[rows[hit | take]] = generation
    return hit


class SlotSample:
    """Some of the cache's slots and every writable page that maps to them, simulated
    page by page: the slots QEMU's pages share are independent of all the others, so
    the sample's hit share is the cache's.  Pages are sampled where their population's
    pages are sent, with the share of them that was sent."""

    def __init__(self, pops, slots: int, rng: np.random.Generator):
        self.slots = slots
        self.rng = rng
        lo = min(p.lo for p in pops)
        hi = max(p.hi for p in pops)
        # slots of evenly spread pages of each population (so each is in the sample)
        per_slot = max(1, -(-(hi - lo) // slots))
        per = max(1, min(SAMPLE_SLOTS, SAMPLE_PAGES // per_slot) // len(pops))
        chosen = [np.unique(np.linspace(p.lo, p.hi - 1, min(per, p.pages)).astype(np.int64))
                  for p in pops]  # fmt: skip
        slot_ids = np.unique(np.concatenate(chosen) % slots)
        k = np.arange(-(-(hi - lo) // slots) + 1, dtype=np.int64)
        first = lo + (slot_ids - lo) % slots
        pages = first[:, None] + k[None, :] * slots
        row = np.broadcast_to(np.arange(len(slot_ids))[:, None], pages.shape)
        keep = pages < hi
        order = np.argsort(pages[keep], kind="stable")
        self.page = pages[keep][order]
        self.row = row[keep][order]
        bounds = np.array([p.lo for p in pops] + [pops[-1].hi])
        self.pop = np.searchsorted(bounds, self.page, side="right") - 1
        self.owner = np.full(len(slot_ids), -1, dtype=np.int64)
        self.age = np.zeros(len(slot_ids), dtype=np.int64)
        self.hits = np.zeros(len(pops))  # exponentially averaged over the last sends
        self.sends = np.zeros(len(pops))
        self.memory = 16.0  # sends averaged over (from the last round's)
        self.round_sends = 0.0

    def on_wrap(self) -> None:
        self.memory = min(400.0, max(16.0, SAMPLE_MEMORY * self.round_sends))
        self.round_sends = 0.0

    def hit_share(self, i: int) -> float:
        return float(self.hits[i] / self.sends[i]) if self.sends[i] >= 1.0 else 0.0

    def send(self, first: int, last: int, sent_share, generation: int, update: bool) -> None:
        """The scan sent pages ``first..last``; ``sent_share[i]`` of population i's
        pages there."""
        i0, i1 = np.searchsorted(self.page, [first, last + 1])
        if i1 <= i0:
            return
        # a population's sampled pages are one stretch of the (address-ordered) sample
        cuts = np.searchsorted(self.pop[i0:i1], np.arange(len(self.sends) + 1)) + i0
        picks = []
        for i, share in enumerate(sent_share.tolist()):
            j0, j1 = int(cuts[i]), int(cuts[i + 1])
            m = j1 - j0
            if share <= 0 or m <= 0:
                continue
            if share > 0.2:
                picks.append(j0 + np.flatnonzero(self.rng.random(m) < share))
            else:  # few of many: draw how many, then which (cost grows with those sent)
                k = int(self.rng.binomial(m, share))
                if k:
                    picks.append(j0 + np.unique(self.rng.integers(0, m, size=k)))
        if not picks:
            return
        idx = np.concatenate(picks) if len(picks) > 1 else picks[0]
        pages, rows, pop = self.page[idx], self.row[idx], self.pop[idx]
        hit = np.empty(len(pages), dtype=bool)
        # the scan is ascending: a slot comes back only ``slots`` pages later
        a = 0
        while a < len(pages):
            b = int(np.searchsorted(pages, pages[a] + self.slots))
            hit[a:b] = send_to_slots(self.owner, self.age, rows[a:b], pages[a:b],
                                     generation, update)  # fmt: skip
            a = b
        n = len(self.sends)
        got = np.bincount(pop, minlength=n).astype(float)
        hits = np.bincount(pop[hit], minlength=n).astype(float)
        self.round_sends += len(pages)
        fade = np.exp(-got / self.memory)
        self.hits = self.hits * fade + hits
        self.sends = self.sends * fade + got


def unchanged_share(pool: float, dirty: float, round_writes: float) -> float:
    """Share of the population's dirty pages not written since they were last sent.

    ``pool`` of the ``dirty`` pages were flagged by the last syncs only because they
    were written before being sent in the same generation.  The scan reaches each
    again a round after it sent it (it is behind the cursor): unchanged if none of the
    round's ``round_writes`` writes per page hit it."""
    if dirty <= 0:
        return 0.0
    return min(1.0, max(0.0, pool / dirty)) * math.exp(-max(0.0, round_writes))


def wrapped_share(writes: float) -> float:
    """docs/simulator.md "XBZRLE": the writes-since-sent counter is a byte, so ``k``
    writes with ``k % 256 == 0`` look unchanged.  ``k`` ~ Poisson(``writes``); its
    mass on the multiples of 256 (normal approximation; nil below ~100 writes)."""
    if writes < 100.0:
        return 0.0
    sd = math.sqrt(writes)
    lo = max(1, math.floor((writes - 8 * sd) / 256))
    hi = math.ceil((writes + 8 * sd) / 256)
    s = 0.0
    for j in range(lo, hi + 1):
        z = (256 * j - writes) / sd
        s += math.exp(-0.5 * z * z)
    return min(1.0, s / (sd * math.sqrt(2 * math.pi)))


def hit_cost(enc_size: int, page_cost: float) -> tuple[float, bool]:
    """Wire bytes of a changed hit (§3: header + 3 + len) and whether it overflowed
    (§4.3: the delta did not fit; the page goes out whole)."""
    if enc_size < 0:
        return page_cost, True
    return float(rules.PAGE_HEADER + 3 + enc_size), False


@dataclass
class Population:
    """Pages ``[lo, hi)`` written alike; expected counts of their states."""

    name: str
    lo: int
    hi: int
    enc: int  # encoded size of a changed page (-1: overflow)
    index: int = 0
    lam: float = 0.0  # writes per page so far (cumulative)
    lam_sync: float = 0.0  # ... at the last sync
    dirty: float = 0.0  # its pages in the migration bitmap
    pool: float = 0.0  # of those, flagged only for a write before they were last sent
    cand: float = 0.0  # sent after a write since the sync: the next sync's pool
    lam_wrap: float = 0.0  # writes per page at the last completed round
    round_writes: float = 0.0  # writes per page in the last round

    @property
    def pages(self) -> int:
        return self.hi - self.lo

    def writes_per_round(self) -> float:
        """Writes per page in a round (the last one; this one so far before that)."""
        return self.round_writes if self.round_writes > 0 else self.lam - self.lam_wrap


@dataclass
class Shares:
    """What a batch of one population's pages costs, per page."""

    hit_unch: float  # share: hits not written since sent (0 bytes)
    hit_enc: float  # share: hits delta-encoded
    hit_over: float  # share: hits that overflowed
    miss: float
    cost: float  # mean wire bytes per page
    full: float  # share of pages costing a whole page


class XbzrleStats:
    """The statistical XBZRLE state of one simulation (see the module docstring)."""

    def __init__(self, engine, seed: int = 0):
        e = engine
        lay, d = e.layout, e.dirtier
        self.P = e.P
        self.cache_size = int(e.s.xbzrle_cache_size)
        self.slots = self.cache_size // e.P
        pops: list[Population] = []
        if d.background:
            lo = lay.static - d.bg_pages
            pops.append(Population("background", lo, lay.static, e.bg_enc_size))
        ws = lay.ws_hi - lay.ws_lo
        self.hot_share = 1.0
        if ws > 0:
            w = d.w
            if w.pattern == "hotcold" and d.nhot < ws:
                pops.append(Population("hot", lay.ws_lo, lay.ws_lo + d.nhot, e.enc_size))
                pops.append(Population("cold", lay.ws_lo + d.nhot, lay.ws_hi, e.enc_size))
                self.hot_share = float(w.hotw)
            elif w.pattern == "hotcold":
                pops.append(Population("hot", lay.ws_lo, lay.ws_lo + d.nhot, e.enc_size))
            else:
                pops.append(Population("ws", lay.ws_lo, lay.ws_hi, e.enc_size))
        for i, p in enumerate(pops):
            p.index = i
        self.pops = pops
        self.bounds = np.array([(p.lo, p.hi) for p in pops], dtype=np.int64).reshape(-1, 2)
        self.sample = (
            SlotSample(pops, self.slots, np.random.default_rng([seed, 4242])) if pops else None
        )
        self.pending: list | None = None  # spans not yet shown to the sample
        self.batch_pages = max(1, (self.bounds[-1, 1] - self.bounds[0, 0]) // 32) if pops else 1
        # fractional counters carried between commits (the engine's are integers)
        self.carry: dict[str, float] = {}

    # -- the guest ---------------------------------------------------------------
    def wrote(self, n_ws: int, n_bg: int) -> None:
        for p in self.pops:
            if p.name == "background":
                n = n_bg
            elif p.name == "hot":
                n = n_ws * self.hot_share
            elif p.name == "cold":
                n = n_ws * (1.0 - self.hot_share)
            else:
                n = n_ws
            if n and p.pages:
                p.lam += n / p.pages

    # -- the bitmap ----------------------------------------------------------------
    def on_sync(self, ds) -> None:
        """A bitmap sync: new dirty counts; pages re-flagged without a write since they
        were sent join the pool (§1.6)."""
        if not self.pops:
            return
        self.flush()
        dirty = ds.count_in(self.bounds).tolist()
        for p, d in zip(self.pops, dirty, strict=True):
            p.dirty = d
            p.pool = min(d, p.pool + p.cand)
            p.cand = 0.0
            p.lam_sync = p.lam

    def on_wrap(self) -> None:
        self.flush()
        if self.sample is not None:
            self.sample.on_wrap()
        for p in self.pops:
            p.round_writes = p.lam - p.lam_wrap
            p.lam_wrap = p.lam

    # -- pricing -------------------------------------------------------------------
    def shares(self, p: Population, cn: float) -> Shares:
        """The shares of one population's next pages (the cache is on)."""
        u = unchanged_share(p.pool, p.dirty, p.writes_per_round())
        h = self.sample.hit_share(p.index)
        wrap = wrapped_share(p.round_writes)
        unch = h * (u + (1.0 - u) * wrap)
        changed_hits = h - unch
        cost_hit, over = hit_cost(p.enc, cn)
        miss = 1.0 - h
        enc, ovr = (0.0, changed_hits) if over else (changed_hits, 0.0)
        cost = (miss + ovr) * cn + enc * cost_hit
        full = miss + ovr + (enc if cost_hit >= self.P else 0.0)
        return Shares(unch, enc, ovr, miss, cost, full)

    def sent(self, p: Population, n: float, sh: Shares | None) -> dict:
        """``n`` of the population's pages were sent with shares ``sh`` (None: not
        through the cache): update the pool; returns the expected counters."""
        if n <= 0:
            return {}
        unch_sent = n * unchanged_share(p.pool, p.dirty, p.writes_per_round())
        pool_sent = n * min(1.0, p.pool / p.dirty) if p.dirty > 0 else 0.0
        # those sent after a write since the sync are flagged again at the next one
        p.cand += (n - unch_sent) * -math.expm1(-(p.lam - p.lam_sync))
        p.pool = max(0.0, p.pool - pool_sent)
        p.dirty = max(0.0, p.dirty - n)
        if sh is None:
            return {}
        return {
            "hits": n * (sh.hit_unch + sh.hit_enc + sh.hit_over),
            "miss": n * sh.miss,
            "over": n * sh.hit_over,
            "enc": n * sh.hit_enc,
            "unch": n * sh.hit_unch,
        }

    def sample_span(self, first: int, last: int, counts: dict, gen: int, update: bool) -> None:
        """The cache sample sees the pages ``first..last`` sent (``counts``: pages of each
        population among them).  Consecutive spans of one generation are gathered into
        one (the sample's cost is per call) until they cover 1/32 of the pages."""
        pend = self.pending
        if pend is not None and (pend[3] != gen or pend[4] != update or first < pend[1]):
            self.flush()
            pend = None
        if pend is None:
            self.pending = pend = [first, last, {}, gen, update]
        pend[1] = last
        for i, k in counts.items():
            pend[2][i] = pend[2].get(i, 0) + k
        if last - pend[0] >= self.batch_pages:
            self.flush()

    def flush(self) -> None:
        """Send the gathered span to the cache sample."""
        pend, self.pending = self.pending, None
        if pend is None:
            return
        first, last, counts, gen, update = pend
        share = np.zeros(len(self.pops))
        for p in self.pops:
            k = counts.get(p.index, 0)
            span = min(last + 1, p.hi) - max(first, p.lo)
            if k > 0 and span > 0:
                share[p.index] = min(1.0, k / span)
        if share.any():
            self.sample.send(first, last, share, gen, update)

    def take(self, name: str, x: float) -> int:
        """Whole part of a fractional counter, the rest carried to the next commit."""
        v = self.carry.get(name, 0.0) + x
        whole = math.floor(v + 1e-9)
        self.carry[name] = v - whole
        return whole
