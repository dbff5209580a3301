"""Play an evacuation forward in time: who migrates when, at what rate, until when
(docs/plan.md, "The timeline").

Migrations start in the given order as slots free up (at most ``parallel`` at once, as
Proxmox's bulk migrate runs its workers).  Between two events (a start, the end of a
first pass, a completion, a give-up) the set of running streams is fixed, so each
stream's rate is constant: :func:`~migtune.plan.link.share_link` of the link among
them.  Each migration advances in two phases, each measured as the share of its work
done at the current rate:

* the first pass moves the same bytes whatever the rate: at rate ``r`` it needs
  ``first_pass_time(r)``, so ``dt / first_pass_time(r)`` of it is done in ``dt``;
* the passes after it need ``rest_time(r)``; at a rate where the migration does not
  converge they make no progress (the dirty set stays where it is, the stream is busy
  re-sending it) until a faster rate lets them finish.

A migration that is still running ``max_time`` after its start is cancelled (it
failed, its slot frees up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from migtune.plan.curves import Profile
from migtune.plan.link import share_link

EPS = 1e-9


@dataclass(frozen=True)
class Entry:
    """One VM to migrate: its profile under its settings, its cap, its give-up time."""

    name: str
    profile: Profile
    cap: float | None  # its stream's own cap (None: none)
    max_time: float
    need: float | None = None  # the rate it must get to converge (admission control)


@dataclass
class VmRun:
    name: str
    start: float
    end: float
    status: str  # completed | failed (given up at max_time)
    downtime: float | None
    slot: int
    wave: int
    rates: list[tuple[float, float, float]] = field(default_factory=list)  # (from, to, rate)


@dataclass
class Timeline:
    runs: dict[str, VmRun]
    drain_time: float

    @property
    def failed(self) -> list[str]:
        return [n for n, r in self.runs.items() if r.status != "completed"]

    @property
    def last_completion(self) -> float:
        """When the last migration that completes ends (0: none completes)."""
        return max((r.end for r in self.runs.values() if r.status == "completed"), default=0.0)

    @property
    def worst_downtime(self) -> float | None:
        d = [r.downtime for r in self.runs.values() if r.downtime is not None]
        return max(d) if d else None


@dataclass
class _Live:
    entry: Entry
    start: float
    slot: int
    wave: int
    phase: int = 1
    done: float = 0.0  # share of the current phase done
    rates: list[tuple[float, float, float]] = field(default_factory=list)


def _phase_time(v: _Live, rate: float) -> float:
    p = v.entry.profile
    return p.first_pass_time(rate) if v.phase == 1 else p.rest_time(rate)


def _admissible(entry: Entry, running: list[_Live], link: float) -> bool:
    """Starting ``entry`` now leaves every stream (it too) a rate it converges at."""
    streams = [v.entry for v in running] + [entry]
    rates = share_link(link, [e.cap for e in streams])
    return all(
        e.need is None or r >= e.need * (1 - EPS) for e, r in zip(streams, rates, strict=True)
    )


def run_timeline(
    entries: list[Entry], link: float, parallel: int, *, admission: bool = False
) -> Timeline:
    """Migrate ``entries`` in their order, ``parallel`` at a time, over ``link`` (bytes/s).

    With ``admission``, a migration starts only when every running stream (it
    included) still gets a rate it converges at; the next one in order that fits goes
    first, and a VM that fits nowhere starts alone."""
    queue = list(entries)
    running: list[_Live] = []
    runs: dict[str, VmRun] = {}
    generation = [0] * parallel
    busy = [False] * parallel
    t = 0.0
    while queue or running:
        while queue and len(running) < parallel:
            pick = None
            if not admission or not running:
                pick = 0
            else:
                pick = next((i for i, e in enumerate(queue) if _admissible(e, running, link)), None)
            if pick is None:
                break
            e = queue.pop(pick)
            slot = busy.index(False)
            busy[slot] = True
            generation[slot] += 1
            running.append(_Live(e, t, slot, generation[slot]))
        rates = share_link(link, [v.entry.cap for v in running])
        times = []
        for v, r in zip(running, rates, strict=True):
            left = (1 - v.done) * _phase_time(v, r)
            times.append(min(left, v.start + v.entry.max_time - t))
        dt = max(0.0, min(times))
        for v, r in zip(running, rates, strict=True):
            if dt > 0:
                if v.rates and v.rates[-1][2] == r and v.rates[-1][1] == t:
                    v.rates[-1] = (v.rates[-1][0], t + dt, r)
                else:
                    v.rates.append((t, t + dt, r))
                pt = _phase_time(v, r)
                if math.isfinite(pt) and pt > 0:
                    v.done += dt / pt
        t += dt
        still = []
        for v, r, left in zip(running, rates, times, strict=True):
            if left <= dt * (1 + EPS) + EPS and v.start + v.entry.max_time - t > EPS:
                if v.phase == 1:
                    v.phase, v.done = 2, 0.0
                    # a migration whose later passes take no time completes now
                    if _phase_time(v, r) > EPS:
                        still.append(v)
                        continue
                runs[v.entry.name] = VmRun(v.entry.name, v.start, t, "completed",
                                           v.entry.profile.downtime_at(r), v.slot, v.wave,
                                           v.rates)  # fmt: skip
                busy[v.slot] = False
            elif v.start + v.entry.max_time - t <= EPS:
                runs[v.entry.name] = VmRun(v.entry.name, v.start, t, "failed", None,
                                           v.slot, v.wave, v.rates)  # fmt: skip
                busy[v.slot] = False
            else:
                still.append(v)
        running = still
    drain = max((r.end for r in runs.values()), default=0.0)
    return Timeline(runs, drain)
