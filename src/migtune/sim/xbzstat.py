"""XBZRLE priced from statistics: no page arrays, no cache array, no per-page work.

For a workload described by a spec (not a trace) the guest's pages fall into a few
*populations* - the working set (or its hot and cold parts) and the guest OS's own
background pages - whose pages are alike: each is written at the same rate, uniformly.
So instead of asking, page by page, "is it in the cache, was it written since it was
last sent" (the page-level path, :meth:`migtune.sim.engine.Engine.plan`), this module
keeps, per population, the expected number of pages in each state and prices a batch
of pages sent by the *shares* of hits, misses, overflows and unchanged pages:

* :func:`hit_share` - a page hits when it is the occupant of its direct-mapped slot
  (docs/qemu-migration.md §4.2): occupants not yet sent in this generation over pages
  not yet sent in it;
* :func:`insert_share` - a miss replaces the slot's occupant only when the occupant
  was not used in this generation or the one before (``CACHED_PAGE_LIFETIME``, §4.2);
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


def hit_share(occupants_unsent: float, pages_unsent: float) -> float:
    """§4.2: a lookup hits when the slot holds this page.  Among the population's pages
    not yet sent in this generation, the share that are some slot's occupant."""
    if pages_unsent <= 0:
        return 0.0
    return min(1.0, max(0.0, occupants_unsent / pages_unsent))


def insert_share(pages_per_slot: float, empty: float, stale: float, slots: float) -> float:
    """§4.2 ``cache_insert``: a miss takes its slot when the slot is empty or its
    occupant is stale (last used ``CACHED_PAGE_LIFETIME`` or more generations ago).

    With at most one page per slot a miss always finds its slot empty.  Otherwise the
    missing page's slot is drawn by its pages: an empty slot has ``m`` pages that miss
    there, an occupied one ``m - 1``."""
    if pages_per_slot <= 1.0:
        return 1.0
    m = pages_per_slot
    occupied = max(0.0, slots - empty)
    den = m * empty + (m - 1.0) * occupied
    if den <= 0:
        return 0.0
    return min(1.0, (m * empty + (m - 1.0) * min(stale, occupied)) / den)


def evicted_share(pages_per_slot: float, gens_per_round: float, dirty_share: float) -> float:
    """§4.2 in scan order: how much of a page's hit chance survives its slot-mates.

    The scan is circular, so between two sends of a page its ``m - 1`` slot-mates (pages
    ``k x slots`` apart) are each reached once, ``j / m`` of a round later.  A mate
    that is dirty then takes the slot if the page was last used two generations or more
    before (``CACHED_PAGE_LIFETIME``).  Returns ``(r, keep)``: ``r`` the share of mates
    that come that late, ``keep`` the chance none of them was dirty."""
    if pages_per_slot <= 1.0:
        return 0.0, 1.0
    m = pages_per_slot
    mates = m - 1.0
    g = max(gens_per_round, 1e-9)
    fresh = min(mates, max(0.0, CACHED_PAGE_LIFETIME * m / g - 1.0))
    late = mates - fresh
    keep = (1.0 - min(1.0, max(0.0, dirty_share))) ** late
    return late / mates, keep


def unchanged_share(pool: float, dirty: float) -> float:
    """Share of the population's dirty pages not written since they were last sent."""
    if dirty <= 0:
        return 0.0
    return min(1.0, max(0.0, pool / dirty))


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
    lam: float = 0.0  # writes per page so far (cumulative)
    lam_sync: float = 0.0  # ... at the last sync
    dirty: float = 0.0  # its pages in the migration bitmap
    pool: float = 0.0  # of those, unwritten since last sent (valued at ``lam_pool``)
    lam_pool: float = 0.0
    cand: float = 0.0  # sent after a write since the sync: next sync's pool (at ``lam_cand``)
    lam_cand: float = 0.0
    occ: float = 0.0  # cache slots it occupies
    touched: float = 0.0  # occupants used in this generation
    touched_prev: float = 0.0  # used in the previous generation, not yet in this one
    sent: float = 0.0  # pages sent in this generation (cache on)
    gen_touch: float = 0.0  # hits + inserts in this generation
    touch_prev: float = 0.0  # (hits + inserts) / sent in the previous generation
    lam_wrap: float = 0.0  # writes per page at the last completed round
    round_writes: float = 0.0  # writes per page in the last round
    round_sent: float = 0.0  # pages sent in this round
    dirty_share: float = 1.0  # share of its pages sent in the last round
    cum_sent: float = 0.0  # pages sent since the cache started

    @property
    def pages(self) -> int:
        return self.hi - self.lo

    def stale(self) -> float:
        return max(0.0, self.occ - self.touched - self.touched_prev)

    def pool_now(self) -> float:
        return self.pool * math.exp(self.lam_pool - self.lam)

    def cand_now(self) -> float:
        return self.cand * math.exp(self.lam_cand - self.lam)


@dataclass
class Shares:
    """What a batch of one population's pages costs, per page."""

    hit_unch: float  # share: hits not written since sent (0 bytes)
    hit_enc: float  # share: hits delta-encoded
    hit_over: float  # share: hits that overflowed
    miss: float
    cost: float  # mean wire bytes per page
    full: float  # share of pages costing a whole page
    unchanged_miss: float  # of the misses, pages unwritten since sent


class XbzrleStats:
    """The statistical XBZRLE state of one simulation (see the module docstring)."""

    def __init__(self, engine):
        e = engine
        lay, d = e.layout, e.dirtier
        self.P = e.P
        self.cache_size = int(e.s.xbzrle_cache_size)
        self.slots = self.cache_size // e.P
        self.size = self.cache_size
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
        self.pops = pops
        self.bounds = np.array([(p.lo, p.hi) for p in pops], dtype=np.int64).reshape(-1, 2)
        writable = sum(p.pages for p in pops)
        self.per_slot = writable / self.slots if self.slots else 0.0
        self.syncs = self.syncs_at_wrap = 0
        self.gens_per_round = 1.0
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
        were sent join the pool; the cache's generation moves on (§1.6, §4.2)."""
        self.syncs += 1
        dirty = ds.count_in(self.bounds).tolist()
        for p, d in zip(self.pops, dirty, strict=True):
            p.dirty = d
            p.pool = p.pool_now() + p.cand_now()
            p.lam_pool = p.lam
            p.cand, p.lam_cand = 0.0, p.lam
            p.lam_sync = p.lam
            if p.sent > 0:
                p.touch_prev = p.gen_touch / p.sent
            p.touched_prev, p.touched = p.touched, 0.0
            p.sent = p.gen_touch = 0.0

    def on_wrap(self) -> None:
        self.gens_per_round = max(1.0, float(self.syncs - self.syncs_at_wrap))
        self.syncs_at_wrap = self.syncs
        for p in self.pops:
            p.dirty_share = min(1.0, p.round_sent / p.pages) if p.pages else 0.0
            p.round_sent = 0.0
            p.round_writes = p.lam - p.lam_wrap
            p.lam_wrap = p.lam

    # -- pricing -------------------------------------------------------------------
    def shares(self, p: Population, cache_on: bool, cn: float) -> Shares:
        u = unchanged_share(p.pool_now(), p.dirty)
        if not cache_on:
            return Shares(0.0, 0.0, 0.0, 1.0, cn, 1.0, u)
        h_u = p.touch_prev  # sent in the last generation: cached if they were then
        pool = u * p.dirty
        occ_unsent = p.occ - p.touched - pool * h_u
        h_c = hit_share(occ_unsent, p.pages - p.sent - pool)
        # slot-mates reached two generations or more after the page take its slot
        gens = max(self.gens_per_round, float(self.syncs - self.syncs_at_wrap))
        r, keep = evicted_share(self.per_slot, gens, p.dirty_share)
        if r > 0:
            ever = -math.expm1(-p.cum_sent / p.pages) if p.pages else 0.0
            h_c = (1.0 - r) * h_c + r * ever * keep
            h_u = h_u * ((1.0 - r) + r * keep)
        hits_u = u * h_u
        hits_c = (1.0 - u) * h_c
        wrap = wrapped_share(p.round_writes)
        unch = hits_u + hits_c * wrap
        changed_hits = hits_c * (1.0 - wrap)
        cost_hit, over = hit_cost(p.enc, cn)
        miss = 1.0 - hits_u - hits_c
        enc, ovr = (0.0, changed_hits) if over else (changed_hits, 0.0)
        cost = (miss + ovr) * cn + enc * cost_hit
        full = miss + ovr + (enc if cost_hit >= self.P else 0.0)
        um = u * (1.0 - h_u) / miss if miss > 0 else 0.0
        return Shares(unch, enc, ovr, miss, cost, full, um)

    def sent(self, p: Population, n: float, sh: Shares | None, cache: bool) -> dict:
        """``n`` of the population's pages were sent with shares ``sh``: update the
        state; returns the expected counters."""
        if n <= 0:
            return {}
        pool_now = p.pool_now()
        u = unchanged_share(pool_now, p.dirty)
        unch_sent = n * u
        # those sent after a write since the sync are flagged again at the next one
        fresh = (n - unch_sent) * -math.expm1(-(p.lam - p.lam_sync))
        p.cand = p.cand_now() + fresh
        p.lam_cand = p.lam
        p.pool = max(0.0, pool_now - unch_sent)
        p.lam_pool = p.lam
        p.dirty = max(0.0, p.dirty - n)
        p.round_sent += n
        if sh is None:
            return {}
        hits = n * (sh.hit_unch + sh.hit_enc + sh.hit_over)
        miss = n * sh.miss
        if cache:
            self._cache_update(p, hits, miss)
            p.sent += n
            p.cum_sent += n
        return {
            "hits": hits,
            "miss": miss,
            "over": n * sh.hit_over,
            "enc": n * sh.hit_enc,
            "unch": n * sh.hit_unch,
        }

    def _cache_update(self, p: Population, hits: float, miss: float) -> None:
        """§4.2: hits stamp their slot; misses insert where the occupant is stale."""
        not_touched = p.occ - p.touched
        if hits > 0 and not_touched > 0:
            p.touched_prev = max(0.0, p.touched_prev - hits * p.touched_prev / not_touched)
        p.touched += hits
        empty = max(0.0, self.slots - sum(q.occ for q in self.pops))
        stale_all = sum(q.stale() for q in self.pops)
        ins = miss * insert_share(self.per_slot, empty, stale_all, self.slots)
        from_empty = ins
        if self.per_slot > 1.0 and ins > 0:
            m = self.per_slot
            den = m * empty + (m - 1.0) * stale_all
            from_empty = ins * (m * empty / den) if den > 0 else 0.0
        from_empty = min(from_empty, empty)
        evict = ins - from_empty
        if evict > 0 and stale_all > 0:
            for q in self.pops:
                q.occ = max(0.0, q.occ - evict * q.stale() / stale_all)
        p.occ += ins
        p.touched += ins
        p.gen_touch += hits + ins

    def take(self, name: str, x: float) -> int:
        """Whole part of a fractional counter, the rest carried to the next commit."""
        v = self.carry.get(name, 0.0) + x
        whole = math.floor(v + 1e-9)
        self.carry[name] = v - whole
        return whole
