"""A step's pages priced by segments, for XBZRLE from statistics (:mod:`.xbzstat`).

The engine's scan positions ``[a, b)`` (one side of the wrap) are split where the
guest's page *zones* begin - each population of written pages, the other non-zero
pages (never written: whole pages, §3), the zero pages - using the dirty set's scan
positions of those pages (:meth:`~migtune.sim.dirtyset.DirtySet.firsts_at`).  Each
segment gets its population's shares of hits, misses, overflows and unchanged pages
(:meth:`~migtune.sim.xbzstat.XbzrleStats.shares`), so a step is a piecewise-linear
:class:`~migtune.sim.plan.SegmentPlan` that the loop cuts at the rate limit or MAX_WAIT
like any other; committing it adds the expected counts (fractions carried).
"""

from __future__ import annotations

from migtune.sim.plan import SegmentPlan


class SegmentPricer:
    def __init__(self, engine):
        self.e = engine
        self.zones = self._zones()
        # zones are contiguous: their edges, once each
        self.edges = tuple(z[0] for z in self.zones) + (engine.N,)

    def _zones(self):
        """Page ranges priced alike, in page order: the populations, the other non-zero
        pages, the zero pages."""
        e = self.e
        zones, at = [], 0
        for p in e.xstat.pops:
            if p.lo > at:
                zones.append((at, p.lo, "other"))
            zones.append((p.lo, p.hi, p))
            at = p.hi
        nz = e.layout.nonzero_end()
        if nz > at:
            zones.append((at, nz, "other"))
        zones.append((max(at, nz), e.N, "zero"))
        return [z for z in zones if z[1] > z[0]]

    def plan(self, a: int, b: int) -> SegmentPlan:
        """Scan positions ``[a, b)`` (one side of the wrap) priced by zone shares."""
        e = self.e
        m = e.machine
        cz, cn = e.costs
        cache_on = e.xbzrle_on and e.xbzrle_started and not e.postcopy_active
        after = a >= e.ds.wrap_pos
        segs, shares = [], {}
        if cache_on:  # the pages this step is likely to reach
            ahead = max(64, e.last_call_pages * e.fused_calls)
            e.xstat.peek(e.ds.page_at(a), e.ds.page_at(min(b, a + ahead) - 1))
        at = e.ds.firsts_at(self.edges, after)
        for i, (_, _, key) in enumerate(self.zones):
            x0 = min(max(at[i], a), b)
            x1 = min(max(at[i + 1], a), b)
            if x1 <= x0:
                continue
            if key == "zero":
                segs.append((x1 - x0, cz, m.page_cpu, 0.0, key))
            elif isinstance(key, str) or not cache_on:
                segs.append((x1 - x0, cn, m.page_cpu, 1.0, key))
            else:
                sh = e.xstat.shares(key, cn)
                hit = sh.hit_unch + sh.hit_enc + sh.hit_over
                segs.append((x1 - x0, sh.cost, m.page_cpu + hit * m.xbzrle_cpu, sh.full, key))
                shares[key.name] = sh
        plan = SegmentPlan(e.link, a, segs)
        plan.cache_on, plan.shares = cache_on, shares
        return plan

    def commit(self, p: SegmentPlan, n: int) -> None:
        """Send the first ``n`` pages of a segment plan: expected counts, carried as
        fractions between commits (the counters stay integers)."""
        e = self.e
        if p.cache_on:
            first, last = e.ds.page_at(p.pos), e.ds.page_at(p.pos + n - 1)
        e.ds.advance(n)
        e.dirty = e.ds.count
        c, xs = e.c, e.xstat
        counts: dict[int, int] = {}
        nzero = p.zeros(n)
        c.duplicate += nzero
        tot = {"hits": 0.0, "miss": 0.0, "over": 0.0, "enc": 0.0, "unch": 0.0, "bytes": 0.0}
        for seg, k in p._walk(n):
            key = seg[4]
            if key == "zero":
                continue
            if isinstance(key, str):
                tot["miss"] += k if p.cache_on else 0
                continue
            sh = p.shares.get(key.name) if p.cache_on else None
            got = xs.sent(key, k, sh)
            counts[key.index] = counts.get(key.index, 0) + k
            for name, v in got.items():
                tot[name] += v
            if sh is not None:
                tot["bytes"] += k * (sh.hit_enc * (key.enc + 3) + sh.hit_over * e.P)
        unch = enc = 0
        if p.cache_on:
            xs.sample_span(first, last, counts, e.sync_count, not e.last_stage)
            hits, miss = xs.take("hits", tot["hits"]), xs.take("miss", tot["miss"])
            over, enc = xs.take("over", tot["over"]), xs.take("enc", tot["enc"])
            unch = min(xs.take("unch", tot["unch"]), max(0, n - nzero - enc))
            c.xb_pages += hits
            c.xb_miss += miss
            c.xb_overflow += over
            c.xb_bytes += xs.take("bytes", tot["bytes"])
        c.normal += max(0, n - nzero - unch - enc)
        if not e.last_stage:
            c.target_pages += n - unch
        e.add_bytes(int(round(p.bytes_upto(n))), True)
        e.t += p.time_upto(n)
