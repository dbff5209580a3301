"""Exact mode: real page bytes for the guest's writable range and the XBZRLE cache.

With ``simulate(..., exact_xbzrle=True)`` every delta is produced by the real encoder
(:func:`migtune.sim.xbzrle.encoded_sizes`) between the cached copy and the page's
current bytes, instead of the size model.  Costs ``P`` bytes per writable page plus
the cache size, so it is meant for lab-sized guests and for checking the model.

Writes are the lab dirtier's: add 1 (mod 256, byte by byte) to the first ``bytes``
bytes of the page (``lab/guest/dirtier.c``); the guest OS's own rewrites change
``Machine.guest_background_bytes`` bytes the same way.
"""

from __future__ import annotations

import numpy as np

from migtune.sim.xbzrle import encoded_sizes


class Contents:
    def __init__(self, lo: int, hi: int, ws_lo: int, cache_items: int, page_size: int,
                 ws_bytes: int, bg_bytes: int):  # fmt: skip
        self.lo, self.hi, self.ws_lo = lo, hi, ws_lo
        self.ws_bytes, self.bg_bytes = ws_bytes, bg_bytes
        n = hi - lo
        # the dirtier's first touch: distinct non-zero bytes on every page
        pages = np.arange(lo, hi, dtype=np.uint64)[:, None]
        words = np.arange(0, page_size, 8, dtype=np.uint64)[None, :]
        init = (pages * np.uint64(0x100000001B3) + words) | np.uint64(0x0101010101010101)
        self.data = np.ascontiguousarray(init).view(np.uint8).reshape(n, page_size)
        self.cache = np.zeros((cache_items, page_size), dtype=np.uint8)

    def write(self, rel: np.ndarray) -> None:
        """Apply writes (page numbers relative to ``lo``, repeats = several writes)."""
        if not len(rel):
            return
        pages, times = np.unique(rel, return_counts=True)
        add = (times % 256).astype(np.uint8)[:, None]
        ws = pages >= self.ws_lo - self.lo
        self.data[pages[ws], : self.ws_bytes] += add[ws]
        self.data[pages[~ws], : self.bg_bytes] += add[~ws]

    def inside(self, idx: np.ndarray) -> np.ndarray:
        return (idx >= self.lo) & (idx < self.hi)

    def sizes(self, idx: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """QEMU's encoder result for each page against its cache slot (-1, 0 or length)."""
        return encoded_sizes(self.cache[slots], self.data[idx - self.lo])

    def store(self, idx: np.ndarray, slots: np.ndarray) -> None:
        """The page was sent from (and so now is) the cached copy."""
        self.cache[slots] = self.data[idx - self.lo]
