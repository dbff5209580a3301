"""Ending a non-converging run early once its outcome is settled (opt-in).

A pre-copy run whose dirty set after each sync stays the same pass after pass, well
above what the downtime limit lets through, with nothing left that could change it
(no setting change pending, auto-converge already at its maximum throttle, no
post-copy switch to come), repeats that pass until it is cancelled: simulating the
rest page by page only repeats it.  :class:`Settler` spots this at a sync and
extrapolates: the same pass (its duration, bytes and page counters, averaged over
the passes that agreed) is repeated up to the time limit.  The run then ends as it
would have, cancelled at the limit, with a ``settled`` event that says from when
the figures are extrapolated.

Used by what-ifs (``simulate(..., stop_when_settled=True)``); a replay that must match a
log's own counters runs page by page.
"""

from __future__ import annotations

import dataclasses

# rounds whose figures must agree before a run counts as settled
SETTLED_ROUNDS = 4
# how much they may differ: round durations and bytes; pages newly dirtied against
# pages sent in each round
SETTLED_SPREAD = 0.03
# the dirty set must stay this far above the threshold (a pass that happens to dirty
# a little less must still not be able to complete)
SETTLED_MARGIN = 1.5


def _spread(vals: list[float]) -> float:
    lo, hi = min(vals), max(vals)
    return (hi - lo) / hi if hi > 0 else 0.0


class Settler:
    """Looks at the run after each complete round over the dirty bitmap (a sync can
    come every few seconds mid-round: a round is the unit that repeats)."""

    def __init__(self) -> None:
        self.seen = 0  # rounds already looked at
        # at the end of each of the last rounds: (t, counters, pages sent, pages newly
        # dirtied, syncs so far)
        self.snaps: list[tuple] = []

    def check(self, e, pending_postcopy: bool) -> bool:
        """Called every loop step; True when the run is settled: over the last rounds
        the pages newly dirtied match the pages sent (the dirty set neither shrinks nor
        grows), rounds take the same time and bytes, and every sync left the dirty set
        well above the threshold."""
        if e.rounds == self.seen:
            return False
        self.seen = e.rounds
        pages = e.c.normal + e.c.duplicate + e.c.xb_pages
        new = sum(p["new_dirty_pages"] for p in e.passes)
        self.snaps.append((e.t, dataclasses.replace(e.c), pages, new, len(e.passes)))
        self.snaps = self.snaps[-(SETTLED_ROUNDS + 1) :]
        if len(self.snaps) <= SETTLED_ROUNDS or e.schedule or pending_postcopy:
            return False
        if e.postcopy_active or e.stopped or e.dirty_limit:
            return False
        if e.auto_converge and e.throttle < (e.s.max_cpu_throttle or 99):
            return False
        syncs = e.passes[self.snaps[0][4] :]
        if not syncs or any(
            not p["threshold"] or p["dirty_pages"] * e.P < SETTLED_MARGIN * p["threshold"]
            for p in syncs
        ):
            return False
        pairs = list(zip(self.snaps, self.snaps[1:], strict=False))
        durations = [b[0] - a[0] for a, b in pairs]
        sent = [b[1].all_bytes - a[1].all_bytes for a, b in pairs]
        balance = [abs((b[3] - a[3]) - (b[2] - a[2])) / max(1, b[2] - a[2]) for a, b in pairs]
        return (
            min(durations) > 0
            and max(balance) <= SETTLED_SPREAD
            and _spread(durations) <= SETTLED_SPREAD
            and _spread(sent) <= SETTLED_SPREAD
        )

    def extrapolate(self, e, time_limit: float, sample) -> None:
        """Repeat the average settled round up to the time limit (the last one cut)."""
        (t0, c0, _, _, p0), (t1, c1, _, _, p1) = self.snaps[0], self.snaps[-1]
        n = len(self.snaps) - 1
        per_round = {
            f.name: (getattr(c1, f.name) - getattr(c0, f.name)) / n for f in dataclasses.fields(c1)
        }
        per_round["syncs"] = (p1 - p0) / n
        dt = (t1 - t0) / n
        end = e.start + time_limit
        from_t = e.t
        e.events.append(
            (
                e.t,
                "settled",
                f"settled after {e.rounds} rounds: the same round repeats until the limit "
                "(figures extrapolated from here)",
                {"t": e.t - e.start, "round_time_s": dt},
            )
        )
        last = dict(e.passes[-1]) if e.passes else {}
        carry = dict.fromkeys(per_round, 0.0)
        while e.t < end:
            step = min(dt, end - e.t)
            for name, v in per_round.items():
                carry[name] += v * step / dt
                whole = int(carry[name])
                carry[name] -= whole
                if name == "syncs":
                    for _ in range(whole):
                        e.sync_count += 1
                        last = {**last, "pass": e.sync_count, "t": e.t + step}
                        e.passes.append(last)
                else:
                    setattr(e.c, name, getattr(e.c, name) + whole)
            e.t += step
            e.guest_t = e.t
            if e.passes:
                e.passes[-1]["transferred"] = e.transferred()
            sample(e)
        e.settled_from = from_t - e.start
