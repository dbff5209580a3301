"""How concurrent migration streams share one link (docs/plan.md, "Sharing the link")."""

from __future__ import annotations

from collections.abc import Sequence


def share_link(link_rate: float, caps: Sequence[float | None]) -> list[float]:
    """The rate each of several concurrent migration streams gets on one link.

    Each QEMU migration is its own TCP stream (or a few, with multifd) whose sender is
    held to its own ``max-bandwidth``: it never sends faster than that cap, whatever the
    link could carry.  The streams then meet on the wire, where TCP's congestion control
    drives competing long-lived flows with the same round-trip time towards equal
    shares.  A stream held below its equal share by its own cap leaves the difference on
    the wire, and the others take it up.  The result is the max-min fair allocation
    ("water filling"): every stream gets ``min(cap, level)``, with the level chosen so
    the rates add up to the link, or every stream runs at its cap when the caps add up
    to less than the link.

    ``caps`` holds one cap per stream in bytes/s (``None`` or ``0``: no cap of its own);
    the answer is in the same order.  Equal streams get equal shares; the sum never
    exceeds ``link_rate``; no stream exceeds its cap; and no capacity is left unused
    while some stream could send more.
    """
    n = len(caps)
    if n == 0:
        return []
    if link_rate <= 0:
        raise ValueError("the link rate must be positive")
    limits = [float("inf") if not c or c <= 0 else float(c) for c in caps]
    rates = [0.0] * n
    left = float(link_rate)
    open_ = sorted(range(n), key=lambda i: (limits[i], i))
    # Fill from the most capped stream up: each either gets its cap (below the equal
    # share of what is left) or the equal share, which then goes to all that remain.
    for k, i in enumerate(open_):
        share = left / (n - k)
        if limits[i] <= share:
            rates[i] = limits[i]
            left -= limits[i]
        else:
            for j in open_[k:]:
                rates[j] = share
            break
    return rates
