"""The guest's writes as XBZRLE needs them, without drawing every write.

XBZRLE prices a page by how often it was written since it was last sent (the size
model, :func:`migtune.sim.xbzrle.prefix_write_size`: changed or not, and unchanged
after a multiple of 256 writes).  The engine records, per simulator step, only the
*number* of writes and when the step ended (:meth:`TimedLog.add`); the pages are
drawn when something needs them - a bitmap sync (the dirty log) or an XBZRLE-priced
step (``wcount``) - from the dirtier's statistical summary
(:meth:`~migtune.sim.workloads.Dirtier.populations`).

A write counts towards a page's ``wcount`` only if it came after the page was last
sent: each page keeps the time of its last send (``sent_at``) and each write carries
the end time of its step, as when writes were applied after every step.  Few writes
over many pages are drawn one by one; many writes over few pages are drawn as
per-page counts (Poisson) split by time - the cost follows the pages the guest can
write, not the writes.  Arrays (a byte, a flag and a float32 per page) cover only the
pages the guest can write.
"""

from __future__ import annotations

import numpy as np

from migtune.sim import runs


class TimedLog:
    def __init__(self, dirtier, lo: int, hi: int):
        """``lo``/``hi``: absolute page range holding every page the guest writes."""
        self.dirtier = dirtier
        self.base = dirtier.region[0]  # populations are relative to this
        self.lo, self.hi = lo, hi
        self.wcount = np.zeros(hi - lo, dtype=np.uint8)
        # float32: a step lasts milliseconds, float32 resolves 0.5 ms at 2 h
        self.sent_at = np.full(hi - lo, -np.inf, dtype=np.float32)
        self.seg_t: list[float] = []
        self.seg_n: list[tuple[int, int]] = []
        self.written = np.zeros(hi - lo, dtype=bool)  # the dirty log since the sync

    def add(self, t_end: float, n_ws: int, n_bg: int) -> None:
        if n_ws or n_bg:
            self.seg_t.append(t_end)
            self.seg_n.append((n_ws, n_bg))

    def sent(self, pages: np.ndarray | None, span: runs.Runs | None, t: float) -> None:
        """Pages just sent at ``t`` (an array, or runs): no write since."""
        if pages is not None:
            k = pages[(pages >= self.lo) & (pages < self.hi)] - self.lo
            self.wcount[k] = 0
            self.sent_at[k] = t
            return
        for a, b in zip(span[0].tolist(), span[1].tolist(), strict=True):
            a, b = max(a, self.lo), min(b, self.hi)
            if a < b:
                self.wcount[a - self.lo : b - self.lo] = 0
                self.sent_at[a - self.lo : b - self.lo] = t

    def materialise(self) -> None:
        """Draw the pending writes: into ``wcount`` and the dirty log."""
        if not self.seg_t:
            return
        seg_t = np.asarray(self.seg_t, dtype=np.float32)
        seg_n = np.asarray(self.seg_n, dtype=np.int64)
        self.seg_t, self.seg_n = [], []
        totals = seg_n.sum(axis=0)
        rng = self.dirtier.rng
        for lo, hi, n, sweep_from, bg in self.dirtier.populations(int(totals[0]), int(totals[1])):
            if n <= 0:
                continue
            per_seg = seg_n[:, 1 if bg else 0]
            lo, hi = lo + self.base - self.lo, hi + self.base - self.lo  # into our arrays
            span = hi - lo
            if n <= 2 * span:
                self._one_by_one(rng, lo, hi, n, sweep_from, seg_t, per_seg)
            elif sweep_from is not None:
                self._sweeps(lo, hi, n, sweep_from, seg_t, per_seg)
            else:
                self._as_counts(rng, lo, hi, n, seg_t, per_seg)

    def _done_before(self, lo, hi, n, seg_t, per_seg) -> np.ndarray:
        """Per page: how many of the population's ``n`` writes came before its last send."""
        cum = np.cumsum(per_seg)
        before = np.searchsorted(seg_t, self.sent_at[lo:hi], side="right")
        done = np.where(before > 0, cum[np.maximum(before - 1, 0)], 0)
        return done * n // max(1, int(cum[-1]))

    def _sweeps(self, lo, hi, n, sweep_from, seg_t, per_seg) -> None:
        """Several sweeps: write ``k`` (in time order) hits page ``(from + k) mod span``;
        a page's writes after its last send are those of its ``k`` past that send."""
        span = hi - lo
        j = (np.arange(span, dtype=np.int64) - sweep_from) % span  # its first write index

        def upto(m):  # writes k < m with k = j (mod span)
            return np.maximum(0, (m - j + span - 1) // span)

        after = upto(n) - upto(self._done_before(lo, hi, n, seg_t, per_seg))
        self.wcount[lo:hi] += (after % 256).astype(np.uint8)
        self.written[lo:hi] = True

    def _write_times(self, seg_t, per_seg, total, n) -> np.ndarray:
        """The step end time of each of ``n`` writes, in time order (the population's
        share of each step's writes is proportional)."""
        cum = np.cumsum(per_seg)
        k = np.arange(n, dtype=np.int64) * max(1, int(cum[-1])) // max(1, n)
        return seg_t[np.searchsorted(cum, k, side="right")]

    def _one_by_one(self, rng, lo, hi, n, sweep_from, seg_t, per_seg) -> None:
        span = hi - lo
        if sweep_from is not None:
            idx = (np.arange(sweep_from, sweep_from + n, dtype=np.int64) % span) + lo
        else:
            idx = rng.integers(lo, hi, size=n, dtype=np.int64)
        when = self._write_times(seg_t, per_seg, per_seg.sum(), n)
        after = idx[when > self.sent_at[idx]]
        if len(after):
            np.add.at(self.wcount, after, np.uint8(1))
        self.written[idx] = True

    def _as_counts(self, rng, lo, hi, n, seg_t, per_seg) -> None:
        """Per page: writes after its last send ~ Poisson(mean x share after), writes
        before it ~ Poisson(the rest), independent (a Poisson split)."""
        span = hi - lo
        mean = n / span
        # share of the population's writes that came after each page's last send
        share = np.clip(1.0 - self._done_before(lo, hi, n, seg_t, per_seg) / n, 0.0, 1.0)
        lam = mean * share
        if mean < 30:
            after = rng.poisson(lam)
        else:  # many writes per page: the normal approximation, far cheaper to draw
            z = rng.standard_normal(span, dtype=np.float32)
            after = np.maximum(0, np.rint(lam + np.sqrt(lam) * z)).astype(np.int64)
        self.wcount[lo:hi] += (after % 256).astype(np.uint8)
        early = rng.random(span, dtype=np.float32) < -np.expm1(-mean * (1.0 - share))
        self.written[lo:hi] |= (after > 0) | early

    def take(self) -> runs.Runs:
        """The pages written since the last call (absolute), drawn; clears the log."""
        self.materialise()
        pages = np.flatnonzero(self.written)
        self.written[pages] = False
        return runs.from_pages(pages + self.lo)

    def discard(self) -> None:
        self.seg_t, self.seg_n = [], []
        self.written[:] = False


class CountLog:
    """Without XBZRLE only the set of pages written between two syncs matters: keep the
    write counts and draw the set once, at the sync (as runs)."""

    def __init__(self, dirtier):
        self.dirtier = dirtier
        self.base = dirtier.region[0]
        self.n_ws = self.n_bg = 0

    def add(self, t_end: float, n_ws: int, n_bg: int) -> None:
        self.n_ws += n_ws
        self.n_bg += n_bg

    def take(self):
        if not (self.n_ws or self.n_bg):
            return runs.empty()
        out = runs.shift(self.dirtier.distinct_runs(self.n_ws, self.n_bg), self.base)
        self.discard()
        return out

    def discard(self) -> None:
        self.n_ws = self.n_bg = 0


class ExplicitLog:
    """Every write's page (traces; exact mode, where real bytes change): the distinct
    pages since the sync, ``wcount`` and the page contents updated write by write."""

    def __init__(self, base: int, size: int, wcount=None, contents=None):
        self.base = base  # the writer's page numbers are relative to this
        self.mask = np.zeros(size, dtype=bool)
        self.parts: list[np.ndarray] = []  # distinct pages, each new since the sync
        self.wcount, self.contents = wcount, contents

    def add_pages(self, rel: np.ndarray) -> None:
        if not len(rel):
            return
        fresh = rel[~self.mask[rel]]
        if len(fresh):
            fresh = runs.distinct(fresh)
            self.mask[fresh] = True
            self.parts.append(fresh)
        if self.wcount is not None:
            np.add.at(self.wcount, rel, np.uint8(1))
        if self.contents is not None:
            self.contents.write(rel)

    def take(self):
        if not self.parts:
            return runs.empty()
        out = runs.from_pages(np.sort(np.concatenate(self.parts)) + self.base)
        self.discard()
        return out

    def discard(self) -> None:
        if self.parts:
            self.mask[np.concatenate(self.parts)] = False
        self.parts = []
