"""The XBZRLE page cache: direct-mapped, one entry per slot, with generation ageing.

Reference §4.2 (``migration/page_cache.c``).  The simulator keeps only what decides
hits, misses and refusals (the address and age of each slot); page contents are
tracked separately (writes since the page was last sent), so 1 TiB of guest memory
never needs 1 TiB of cache.

Addresses are page numbers (``ram_addr / P``): QEMU's slot is ``(addr / P) & (n - 1)``.
"""

from __future__ import annotations

import numpy as np

from migtune.errors import InputError

CACHED_PAGE_LIFETIME = 2  # §4.2: an entry used in this or the previous generation is kept


def cache_slots(cache_size: int, page_size: int = 4096) -> int:
    """§4.2/§4.7: slots of a cache of ``cache_size`` bytes (a power of two, >= a page)."""
    items = cache_size // page_size
    if cache_size < page_size or items & (items - 1):
        raise InputError(
            f"XBZRLE cache size must be a power of two of at least one page (got {cache_size})"
        )
    return items


class PageCache:
    def __init__(self, cache_size: int, page_size: int = 4096):
        items = cache_slots(cache_size, page_size)
        self.size = cache_size
        self.items = items
        self.mask = items - 1
        self.addr = np.full(items, -1, dtype=np.int64)
        self.age = np.zeros(items, dtype=np.int64)

    # -- one page at a time, as QEMU does it --------------------------------------
    def is_cached(self, addr: int, generation: int) -> bool:
        """``cache_is_cached``: hit iff the slot holds this address; a hit refreshes the age."""
        slot = addr & self.mask
        if self.addr[slot] == addr:
            self.age[slot] = generation
            return True
        return False

    def insert(self, addr: int, generation: int) -> bool:
        """``cache_insert``: refuse to evict an entry younger than CACHED_PAGE_LIFETIME."""
        slot = addr & self.mask
        occupant = self.addr[slot]
        if (
            occupant != -1
            and occupant != addr
            and self.age[slot] + CACHED_PAGE_LIFETIME > generation
        ):
            return False
        self.addr[slot] = addr
        self.age[slot] = generation
        return True

    # -- vectorised: many pages whose slots are all distinct ----------------------
    def lookup_many(self, addrs: np.ndarray, generation: int) -> np.ndarray:
        """Hit mask for ``addrs`` (distinct slots); ages of hits are NOT touched yet."""
        return self.addr[addrs & self.mask] == addrs

    def commit(self, addrs: np.ndarray, hits: np.ndarray, generation: int) -> np.ndarray:
        """Apply what sending ``addrs`` does to the cache: hits refresh their age, misses
        try an insert.  Returns the mask of misses whose insert succeeded."""
        slots = addrs & self.mask
        self.age[slots[hits]] = generation
        miss_slots = slots[~hits]
        miss_addrs = addrs[~hits]
        occ = self.addr[miss_slots]
        ok = (
            (occ == -1)
            | (occ == miss_addrs)
            | (self.age[miss_slots] + CACHED_PAGE_LIFETIME <= generation)
        )
        self.addr[miss_slots[ok]] = miss_addrs[ok]
        self.age[miss_slots[ok]] = generation
        inserted = np.zeros(len(addrs), dtype=bool)
        inserted[np.flatnonzero(~hits)[ok]] = True
        return inserted

    def try_insert_many(self, addrs: np.ndarray, generation: int) -> np.ndarray:
        """Insert-only (zero pages after the first round, §3): returns the success mask."""
        return self.commit(addrs, np.zeros(len(addrs), dtype=bool), generation)


def distinct_slot_runs(addrs: np.ndarray, items: int) -> list[slice]:
    """Split an ascending array of page numbers into pieces whose slots do not collide.

    Pages sent in one simulator step between wraps are ascending (one scan), so two of
    them share a slot only if they are ``items`` or more pages apart; no piece spans that.
    """
    n = len(addrs)
    if n == 0:
        return []
    if addrs[-1] - addrs[0] < items:
        return [slice(0, n)]
    out, lo = [], 0
    while lo < n:
        hi = int(np.searchsorted(addrs, addrs[lo] + items, side="left"))
        out.append(slice(lo, hi))
        lo = hi
    return out
