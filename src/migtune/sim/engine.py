"""The pre-copy simulation (docs/qemu-migration.md §14), stepped per ``ram_save_iterate`` call.

QEMU's migration bitmap is a :class:`~migtune.sim.dirtyset.DirtySet` (runs of dirty
pages in scan order: one run for the whole RAM at start).  The guest's dirty log is
kept as what was written since the last sync: write *counts* for a spec workload (the
pages are drawn once, at the sync, as runs), page arrays when each write matters
(XBZRLE's ``wcount``, writes since a page was last sent, mod 256; traces).  One step
takes the next dirty pages of the scan, prices them (zero / normal in closed form,
XBZRLE hit / miss / overflow / unchanged page by page), and keeps the prefix QEMU
would send before the rate limit (§1.4) or MAX_WAIT (§1.5) stops the call.  So a
pass costs what it sends and what the guest wrote, never a sweep of RAM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from migtune.errors import InputError
from migtune.sim import rules, runs
from migtune.sim.cache import PageCache, cache_slots, distinct_slot_runs
from migtune.sim.dirtyset import DirtySet
from migtune.sim.machine import Machine
from migtune.sim.plan import Plan, SegmentPlan
from migtune.sim.workloads import Dirtier
from migtune.sim.writelog import CountLog, ExplicitLog, TimedLog
from migtune.sim.xbzrle import prefix_write_size
from migtune.sim.xbzstat import XbzrleStats

# ``xbzrle_pricing="auto"``: statistics when the guest writes more pages than this (1 GiB)
AUTO_STATISTICS_PAGES = 1 << 18


@dataclass
class Counters:
    normal: int = 0
    duplicate: int = 0
    xb_pages: int = 0
    xb_miss: int = 0
    xb_overflow: int = 0
    xb_bytes: int = 0
    target_pages: int = 0  # pages emitted by ram_save_iterate (cache-miss-rate denominator)
    ram_bytes: int = 0  # RAM-accounted (7.2 ram.transferred)
    all_bytes: int = 0  # every channel (8.2+ ram.transferred, rate limiter)
    multifd_bytes: int = 0
    precopy_bytes: int = 0
    downtime_bytes: int = 0
    postcopy_bytes: int = 0
    postcopy_requests: int = 0


class Engine:
    """Holds the state; :mod:`migtune.sim.run` drives the main loop."""

    def __init__(
        self,
        pages,
        dirtier,
        settings,
        version,
        machine: Machine,
        page_size=4096,
        exact=False,
        explicit_writes=False,
        xbzrle_pricing="auto",
        seed=0,
    ):
        self.N, self.P = int(pages), page_size
        self.dirtier = dirtier
        self.layout = dirtier.layout
        self.s = settings
        self.version = version
        self.machine = machine
        caps = settings.capabilities
        self.multifd = bool(caps.get("multifd"))
        self.channels = int(settings.multifd_channels or 2) if self.multifd else None
        # 8.1+ rejects multifd + xbzrle; 7.2/8.0 silently skip XBZRLE (§4.1)
        self.xbzrle_on = bool(caps.get("xbzrle")) and not self.multifd
        self.auto_converge = bool(caps.get("auto-converge"))
        self.dirty_limit = bool(caps.get("dirty-limit"))
        self.link = machine.stream(self.channels)
        self.costs = self.page_costs()
        self.budget = rules.window_budget(settings.max_bandwidth or 0)
        self.downtime_limit_ms = int(round((settings.downtime_limit or 0) * 1000))
        self.ds = DirtySet(self.N, self.layout.nonzero_end())
        self.rlo, self.rhi = dirtier.region
        # the guest's dirty log since the last sync, kept one of three ways:
        # - write counts, drawn as runs at the sync (:class:`CountLog`; no XBZRLE: only
        #   the set of pages written matters);
        # - write counts with their step's end time, drawn when a sync or an
        #   XBZRLE-priced step needs them (:class:`TimedLog`);
        # - every write's page (:class:`ExplicitLog`: traces, exact mode; and
        #   ``explicit_writes``, the page-level reference the others are checked against)
        spec = isinstance(dirtier, Dirtier) and not explicit_writes
        if xbzrle_pricing not in ("auto", "statistics", "pages"):
            raise InputError(
                f"XBZRLE pricing: 'auto', 'statistics' or 'pages' (got {xbzrle_pricing!r})"
            )
        if xbzrle_pricing == "auto":
            # page by page costs ~50-100 ns a page sent: cheap below this many writable
            # pages, and there it is the reference; statistics above
            big = self.rhi - self.rlo > AUTO_STATISTICS_PAGES
            xbzrle_pricing = "statistics" if big else "pages"
        # statistical XBZRLE (migtune.sim.xbzstat): a spec workload's pages are priced by
        # shares, so the dirty log only needs the set of pages written, as without XBZRLE
        stat = spec and self.xbzrle_on and not exact and xbzrle_pricing == "statistics"
        self.xbzrle_pricing = "statistics" if stat else ("pages" if self.xbzrle_on else None)
        self.wlo, self.whi = self.rlo, self.rhi  # the pages ``wcount`` covers
        self.wcount = None
        self.log = None
        if stat:
            self.log = CountLog(dirtier)
        elif spec and self.xbzrle_on and not exact:
            self.wlo = self.layout.ws_lo
            if dirtier.background:
                self.wlo = min(self.wlo, self.layout.static - dirtier.bg_pages)
            self.log = TimedLog(dirtier, self.wlo, self.whi)
            self.wcount = self.log.wcount
        elif spec and not self.xbzrle_on:
            self.log = CountLog(dirtier)
        elif self.xbzrle_on:
            self.wcount = np.zeros(self.rhi - self.rlo, dtype=np.uint8)
        self.cache_size = int(settings.xbzrle_cache_size or 0) if self.xbzrle_on else 0
        if self.xbzrle_on:
            cache_slots(self.cache_size, page_size)  # a power of two, or InputError
        self.cache = PageCache(self.cache_size, page_size) if self.xbzrle_on and not stat else None
        self.enc_size = int(prefix_write_size(dirtier.bytes_per_write, page_size))
        # the guest OS's own rewrites (background) change a few bytes of a page
        self.bg_enc_size = int(prefix_write_size(machine.guest_background_bytes, page_size))
        self.contents = None
        if exact and self.xbzrle_on:
            from migtune.sim.contents import Contents

            self.contents = Contents(
                self.rlo, self.rhi, self.layout.ws_lo, self.cache.items, page_size,
                dirtier.bytes_per_write, machine.guest_background_bytes,
            )  # fmt: skip
        if self.log is None:
            self.log = ExplicitLog(self.rlo, self.rhi - self.rlo, self.wcount, self.contents)
        self.xstat = XbzrleStats(self, seed) if stat else None
        self._zones = self._price_zones() if stat else []
        # zones are contiguous: their edges, once each
        self._zone_edges = tuple(z[0] for z in self._zones) + (self.N,)
        self.c = Counters()
        self.dirty = self.N
        self.last_call_pages = 0
        self.last_call_timed_out = False
        self.xbzrle_started = False
        self.stopped = False
        self.last_stage = False
        self.postcopy_active = False
        self.blocktime = 0.0  # s of vCPU stalls waiting for post-copy page requests
        self.start = 0.0
        self.t = 0.0
        self.guest_t = 0.0
        self.status = "setup"
        # sync / rate period state (§1.6)
        self.sync_count = 0
        self.time_last_sync_ms: int | None = None
        self.period_new = 0
        self.bytes_xfer_prev = 0
        self.dirty_pages_rate = 0
        self.dirty_bytes_last_sync = 0
        self.high_cnt = 0
        self.throttle = 0
        self.max_throttle = 0
        self.dirty_limit_active = False
        self.synced_since_tick = False
        self.xb_prev = (0, 0, 0, 0)  # miss, target pages, xb pages, xb bytes at period start
        self.cache_miss_rate = 0.0
        self.encoding_rate = 0.0
        # window state (§1.4)
        self.win_start = 0.0
        self.win_bytes0 = 0
        self.win_pages0 = 0
        self.threshold = 0
        self.expected_downtime = self.downtime_limit_ms
        self.mbps = 0.0
        self.pps = 0.0
        self.downtime_ms: int | None = None
        self.total_time_ms: int | None = None
        self.completed_mbps = 0.0
        self.passes: list[dict[str, Any]] = []
        self.events: list[tuple[float, str, str, dict]] = []
        self.schedule: list[tuple[float, str]] = []
        self.stop_after_passes: int | None = None
        self.stop_when_settled = False  # see migtune.sim.settle
        self.settled_from: float | None = None
        self.rounds = 0  # complete rounds over the dirty bitmap

    def apply_schedule(self) -> None:
        """Setting changes made during the migration (``migrate-set-parameters``): the
        bandwidth cap applies at once, the downtime limit at the next window (§1.4)."""
        from migtune.settings import apply_assignment

        while self.schedule and self.schedule[0][0] <= self.t - self.start:
            t, assignment = self.schedule.pop(0)
            self.set_settings(apply_assignment(self.s, assignment))
            self.events.append((self.t, "settings", f"set {assignment}", {"set": assignment}))

    def set_settings(self, s) -> None:
        """New parameters in force (a schedule entry or a policy's migrate-set-parameters)."""
        self.s = s
        self.budget = rules.window_budget(self.s.max_bandwidth or 0)
        self.downtime_limit_ms = int(round((self.s.downtime_limit or 0) * 1000))

    # -- counters ------------------------------------------------------------------
    def transferred(self) -> int:
        return (
            self.c.all_bytes
            if rules.transferred_counts_all_bytes(self.version)
            else self.c.ram_bytes
        )

    def add_bytes(self, n: int, ram: bool, multifd: int = 0) -> None:
        """Account ``n`` bytes on the main channel (+ ``multifd`` on the channels)."""
        c = self.c
        c.all_bytes += n + multifd
        c.multifd_bytes += multifd
        if ram:
            c.ram_bytes += n + multifd
            if self.postcopy_active:
                c.postcopy_bytes += n
            elif self.stopped:
                c.downtime_bytes += n
            else:
                c.precopy_bytes += n

    def pages_total(self) -> int:
        return self.c.normal + self.c.duplicate + self.c.xb_pages

    def window_bytes(self) -> int:
        return self.c.all_bytes - self.win_bytes0

    def rate_exceeded(self) -> bool:
        return rules.rate_exceeded(self.window_bytes(), self.budget)

    # -- the guest -------------------------------------------------------------------
    def guest_to(self, t: float) -> None:
        """Apply the guest's writes up to ``t`` (none once it is stopped)."""
        if t <= self.guest_t:
            return
        if not self.stopped:
            keep = None
            if self.dirty_limit_active:
                limit = float(self.s.extra.get("vcpu-dirty-limit", 1e6)) / self.P
                keep = max(0, int(limit * (t - self.guest_t)))
            if isinstance(self.log, ExplicitLog):
                rel = self.dirtier.writes_rel(self.guest_t, t, self.throttle)
                self.log.add_pages(rel if keep is None else rel[:keep])
            else:
                n_ws, n_bg = self.dirtier.write_counts(self.guest_t, t, self.throttle)
                if keep is not None:
                    n_ws = min(n_ws, keep)
                    n_bg = min(n_bg, keep - n_ws)
                self.log.add(t, n_ws, n_bg)
                if self.xstat is not None:
                    self.xstat.wrote(n_ws, n_bg)
        self.guest_t = t

    def discard_log(self) -> None:
        self.log.discard()

    def on_wrap(self) -> None:
        """§1.5: falling off the last block completes a round; XBZRLE starts after it."""
        self.ds.on_wrap()
        self.rounds += 1
        if self.xstat is not None:
            self.xstat.on_wrap()
        if self.xbzrle_on:
            self.xbzrle_started = True
        if self.multifd and self.version >= (8, 1):
            self.t += self.machine.multifd_sync_time * (self.channels or 1)

    # -- pricing and sending pages (§3, §4.1, §14.5) -----------------------------------
    def page_costs(self) -> tuple[float, float]:
        """Wire bytes of a zero and of a normal page (§3, §7)."""
        if self.multifd:
            return (
                rules.multifd_page_cost(True, self.P, self.version),
                rules.multifd_page_cost(False, self.P, self.version),
            )
        return rules.zero_page_cost(), rules.normal_page_cost(self.P)

    def prices_per_page(self) -> bool:
        """XBZRLE prices each page (after the first round, not in post-copy); otherwise a
        step's pages are priced in closed form, however many they are."""
        return (
            self.xstat is None
            and self.xbzrle_on
            and self.xbzrle_started
            and not self.postcopy_active
        )

    def plans(self, a: int, b: int):
        """Plans for the scan positions ``[a, b)``, one at a time (each is priced after
        the previous one was committed: the XBZRLE cache changes)."""
        if self.xstat is not None:
            yield self.segment_plan(a, b)
            return
        if not self.prices_per_page():
            cz, cn = self.costs
            nonzero = self.ds.nonzero(a, b)
            yield Plan(None, self.link, self.machine.page_cpu, n=b - a, pos=a,
                       nonzero=nonzero, cost_nz=cn, cost_z=cz)  # fmt: skip
            return
        if isinstance(self.log, TimedLog):
            self.log.materialise()
        idx = self.ds.pages(a, b)
        for sl in distinct_slot_runs(idx, self.cache.items):
            yield self.plan(idx[sl], a + sl.start)

    def plan(self, idx: np.ndarray, pos: int | None = None) -> Plan:
        """Price the pages ``idx`` (ascending; ``pos`` their scan position, None when
        they are sent out of scan order)."""
        m = self.machine
        cz, cn = self.costs
        xb = self.xbzrle_on and self.xbzrle_started and not self.postcopy_active
        if not xb:
            nonzero = int(np.searchsorted(idx, self.layout.nonzero_end(), side="left"))
            return Plan(idx, self.link, m.page_cpu, pos=pos, nonzero=nonzero, cost_nz=cn, cost_z=cz)
        # ``idx`` is ascending and zero / writable / working-set pages are ranges of page
        # numbers, so each is a slice of it
        n = len(idx)
        b, r0, r1, w = np.searchsorted(
            idx, [self.layout.nonzero_end(), self.wlo, self.whi, self.layout.ws_lo]
        ).tolist()
        zero = np.zeros(n, dtype=bool)
        zero[b:] = True
        cost = np.full(n, cn)
        cost[b:] = cz
        hits = np.zeros(n, dtype=bool)
        hits[:b] = self.cache.lookup_many(idx[:b], self.sync_count)
        changed = np.zeros(n, dtype=bool)
        changed[r0:r1] = self.wcount[idx[r0:r1] - self.wlo] != 0
        size = np.full(n, self.enc_size, dtype=np.int64)
        size[:w] = self.bg_enc_size
        size[~(hits & changed)] = 0
        if self.contents is not None:  # exact mode: the real encoder on real bytes
            real = hits & self.contents.inside(idx)
            size[real] = self.contents.sizes(idx[real], idx[real] & self.cache.mask)
        enc = hits & (size > 0)
        cost[enc] = rules.PAGE_HEADER + 3 + size[enc]
        cost[hits & (size == 0)] = 0
        return Plan(
            idx, self.link, m.page_cpu, pos=pos, arrays=(cost, hits, size, zero, m.xbzrle_cpu)
        )

    def commit(self, p: Plan, n: int) -> None:
        """Send the first ``n`` pages of a plan: clear bits, count, update the cache."""
        if n <= 0:
            return
        if isinstance(p, SegmentPlan):
            self.commit_segments(p, n)
            return
        idx = None if p.idx is None else p.idx[:n]
        if p.pos is None:
            self.ds.remove(idx)
        else:
            self.ds.advance(n)
        self.dirty = self.ds.count
        c = self.c
        nzero = p.zeros(n)
        c.duplicate += nzero
        unchanged = enc = 0
        if p.xb:
            _, hits, size, zero, _ = (a[:n] if hasattr(a, "__len__") else a for a in p.arrays)
            nz = ~zero
            unchanged = int(np.count_nonzero(hits & (size == 0)))
            over = int(np.count_nonzero(hits & (size < 0)))
            encm = hits & (size > 0)
            enc = int(np.count_nonzero(encm))
            c.xb_pages += int(np.count_nonzero(hits))
            c.xb_miss += int(np.count_nonzero(nz & ~hits))
            c.xb_overflow += over
            c.xb_bytes += int(size[encm].sum()) + 3 * enc + self.P * over
            if not self.last_stage:
                inserted = self.cache.commit(idx[nz], hits[nz], self.sync_count)
                if self.contents is not None:
                    keep = (hits[nz] & (size[nz] != 0)) | inserted
                    kept = idx[nz][keep & self.contents.inside(idx[nz])]
                    self.contents.store(kept, kept & self.cache.mask)
                if nzero:
                    self.cache.try_insert_many(idx[zero], self.sync_count)
        c.normal += n - nzero - unchanged - enc
        if not self.last_stage:
            c.target_pages += n - unchanged
        if self.wcount is not None:
            self._reset_wcount(idx, p.pos, n)
        nbytes = int(round(p.bytes_upto(n)))
        if self.multifd:
            main = nzero * rules.zero_page_cost() if self.version < (9, 0) else 0
            self.add_bytes(main, True, nbytes - main)
        else:
            self.add_bytes(nbytes, True)
        self.t += p.time_upto(n)

    # -- statistical XBZRLE (migtune.sim.xbzstat) ---------------------------------------
    def _price_zones(self):
        """Page ranges priced alike, in page order: the populations, the other non-zero
        pages (never written: whole pages), the zero pages."""
        zones, at = [], 0
        for p in self.xstat.pops:
            if p.lo > at:
                zones.append((at, p.lo, "other"))
            zones.append((p.lo, p.hi, p))
            at = p.hi
        nz = self.layout.nonzero_end()
        if nz > at:
            zones.append((at, nz, "other"))
        zones.append((max(at, nz), self.N, "zero"))
        return [z for z in zones if z[1] > z[0]]

    def segment_plan(self, a: int, b: int) -> SegmentPlan:
        """Scan positions ``[a, b)`` (one side of the wrap) priced by zone shares."""
        m = self.machine
        cz, cn = self.costs
        cache_on = self.xbzrle_on and self.xbzrle_started and not self.postcopy_active
        after = a >= self.ds.wrap_pos
        segs, shares = [], {}
        at = self.ds.firsts_at(self._zone_edges, after)
        for i, (_, _, key) in enumerate(self._zones):
            x0 = min(max(at[i], a), b)
            x1 = min(max(at[i + 1], a), b)
            if x1 <= x0:
                continue
            if key == "zero":
                segs.append((x1 - x0, cz, m.page_cpu, 0.0, key))
            elif isinstance(key, str) or not cache_on:
                segs.append((x1 - x0, cn, m.page_cpu, 1.0, key))
            else:
                sh = self.xstat.shares(key, cn)
                hit = sh.hit_unch + sh.hit_enc + sh.hit_over
                segs.append((x1 - x0, sh.cost, m.page_cpu + hit * m.xbzrle_cpu, sh.full, key))
                shares[key.name] = sh
        plan = SegmentPlan(self.link, a, segs)
        plan.cache_on, plan.shares = cache_on, shares
        return plan

    def commit_segments(self, p: SegmentPlan, n: int) -> None:
        """Send the first ``n`` pages of a segment plan: expected counts, carried as
        fractions between commits (the counters stay integers)."""
        if p.cache_on:
            first, last = self.ds.page_at(p.pos), self.ds.page_at(p.pos + n - 1)
        self.ds.advance(n)
        self.dirty = self.ds.count
        c, xs = self.c, self.xstat
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
                tot["bytes"] += k * (sh.hit_enc * (key.enc + 3) + sh.hit_over * self.P)
        unch = enc = 0
        if p.cache_on:
            xs.sample_span(first, last, counts, self.sync_count, not self.last_stage)
            hits, miss = xs.take("hits", tot["hits"]), xs.take("miss", tot["miss"])
            over, enc = xs.take("over", tot["over"]), xs.take("enc", tot["enc"])
            unch = min(xs.take("unch", tot["unch"]), max(0, n - nzero - enc))
            c.xb_pages += hits
            c.xb_miss += miss
            c.xb_overflow += over
            c.xb_bytes += xs.take("bytes", tot["bytes"])
        c.normal += max(0, n - nzero - unch - enc)
        if not self.last_stage:
            c.target_pages += n - unch
        self.add_bytes(int(round(p.bytes_upto(n))), True)
        self.t += p.time_upto(n)

    def _reset_wcount(self, idx, pos, n) -> None:
        """The pages just sent have had no write since (XBZRLE's size model)."""
        if idx is None:
            first, last = self.ds.page_at(pos), self.ds.page_at(pos + n - 1)
            if last < self.wlo or first >= self.whi:
                return  # none of them is a page the guest writes
        if isinstance(self.log, TimedLog):
            span = None if idx is not None else self.ds.runs_between(pos, pos + n)
            self.log.sent(idx, span, self.t)
            return
        if idx is None:
            s, e = self.ds.runs_between(pos, pos + n)
            if len(s) > 16:
                idx = runs.to_pages((s, e))
            else:
                for a, b in zip(s.tolist(), e.tolist(), strict=True):
                    a, b = max(a, self.rlo), min(b, self.rhi)
                    if a < b:
                        self.wcount[a - self.rlo : b - self.rlo] = 0
                return
        lo, hi = np.searchsorted(idx, [self.rlo, self.rhi])
        self.wcount[idx[lo:hi] - self.rlo] = 0

    # -- bitmap sync (§1.6, §14.4) -------------------------------------------------------
    def sync(self) -> None:
        self.guest_to(self.t)
        self.sync_count += 1
        self.synced_since_tick = True
        now_ms = self.now_ms()
        if self.time_last_sync_ms is None:
            self.time_last_sync_ms = now_ms
        new = self.ds.merge(self.log.take())
        self.dirty = self.ds.count
        if self.xstat is not None:
            self.xstat.on_sync(self.ds)
        self.period_new += new
        self.dirty_bytes_last_sync = self.dirty * self.P
        if rules.rate_period_elapsed(now_ms, self.time_last_sync_ms):
            self.rate_period(now_ms)
        self.t += self.machine.sync_cpu_per_page * self.N
        self.passes.append(
            {
                "pass": self.sync_count,
                "t": self.t,
                "new_dirty_pages": new,
                "dirty_pages": self.dirty,
                "transferred": self.transferred(),
                "threshold": self.threshold,
                "throttle_pct": self.throttle,
            }
        )

    def period_counter(self) -> int:
        return (
            self.c.all_bytes
            if rules.transferred_counts_all_bytes(self.version)
            else self.c.ram_bytes
        )

    def rate_period(self, now_ms: int) -> None:
        """§1.6 step 5: auto-converge trigger, dirty rate, XBZRLE rates; new period."""
        s = self.s
        xfer = self.period_counter() - self.bytes_xfer_prev
        dirty_b = self.period_new * self.P
        hit, thresh = rules.throttle_condition(dirty_b, xfer, s.throttle_trigger_threshold or 50)
        counting = self.auto_converge or self.version >= (8, 1)
        if hit and counting:
            self.high_cnt += 1
            if self.high_cnt >= 2:
                self.high_cnt = 0
                if self.auto_converge:
                    new = rules.throttle_step(
                        self.throttle,
                        dirty_b,
                        thresh,
                        s.cpu_throttle_initial or 20,
                        s.cpu_throttle_increment or 10,
                        s.max_cpu_throttle or 99,
                        bool(s.extra.get("cpu-throttle-tailslow")),
                    )
                    if new != self.throttle:
                        self.events.append(
                            (self.t, "throttle-change", f"CPU throttle {new}%", {"pct": new})
                        )
                    self.throttle = new
                    self.max_throttle = max(self.max_throttle, new)
                elif self.dirty_limit:
                    self.dirty_limit_active = True
        self.dirty_pages_rate = rules.dirty_pages_rate(
            self.period_new, now_ms, self.time_last_sync_ms
        )
        if self.xbzrle_on:
            miss0, tp0, xp0, xb0 = self.xb_prev
            dtp = self.c.target_pages - tp0
            if dtp > 0:
                self.cache_miss_rate = (self.c.xb_miss - miss0) / dtp
                dpages, dbytes = self.c.xb_pages - xp0, self.c.xb_bytes - xb0
                self.encoding_rate = dpages * self.P / dbytes if dpages and dbytes else 0.0
                self.xb_prev = (
                    self.c.xb_miss,
                    self.c.target_pages,
                    self.c.xb_pages,
                    self.c.xb_bytes,
                )
        self.time_last_sync_ms = now_ms
        self.period_new = 0
        self.bytes_xfer_prev = self.period_counter()

    # -- the rate-limit window (§1.4) --------------------------------------------------------
    def now_ms(self) -> int:
        return math.floor(self.t * 1000 + 1e-9)

    def close_window_if_due(self) -> None:
        start_ms = math.floor(self.win_start * 1000 + 1e-9)
        now_ms = self.now_ms()
        if now_ms < start_ms + rules.BUFFER_DELAY_MS:
            return
        xfer = self.window_bytes()
        spent = now_ms - start_ms
        bw = rules.window_bandwidth(xfer, spent)
        exp_bw = rules.switchover_bandwidth(
            bw, self.s.avail_switchover_bandwidth or 0, self.version
        )
        self.threshold = rules.switchover_threshold(exp_bw, self.downtime_limit_ms)
        self.mbps = rules.window_mbps(xfer, spent)
        self.pps = (self.pages_total() - self.win_pages0) / (spent / 1000)
        ed = rules.expected_downtime_ms(
            self.dirty_bytes_last_sync,
            exp_bw if self.version >= (8, 2) else bw,
            self.dirty_pages_rate,
            xfer,
        )
        if ed is not None:
            self.expected_downtime = ed
        self.win_start = self.t
        self.win_bytes0 = self.c.all_bytes
        self.win_pages0 = self.pages_total()
