"""``--policy migtune``: steer a running migration by the model's prediction.

Every platform policy steers blind (docs/platforms.md): Proxmox doubles the downtime
limit after six polls in which the remaining data rose, Nova raises it on a clock,
KubeVirt waits for a timeout.  This one asks the model.  At each sync the live
prediction (:mod:`migtune.analysis.live`, run off the polling loop by
:mod:`migtune.qemu.livewatch`) simulates the migration as it goes and with each change
this policy may make; then:

* the settings in force converge within the limits for every plausible workload:
  nothing to do;
* otherwise the *smallest* change the model says will converge for every plausible
  workload is made (in this order: a higher downtime limit within ``max-downtime``;
  the bandwidth cap raised to ``link``; auto-converge stepped up, when allowed; both;
  post-copy, when allowed and ``--postcopy`` was given);
* when neither the settings in force nor any allowed change converges for any
  plausible workload, in two predictions in a row, the migration is cancelled with a
  one-line reason and the source keeps running, instead of at the time limit;
* when the model is uncertain (some plausible workloads converge, some not) it takes
  the change that makes most of them converge, and never cancels;
* when the settings in force were predicted to converge by some time and the migration
  is still running well past it, the model is too optimistic for this guest: the next
  change that it says converges is made (feedback from what really happens).

Every decision is an action (a recording event) that carries the prediction that
justified it.  Auto-converge can only be switched on before the migration starts
(QEMU refuses capability changes during one), so with ``allow=auto-converge`` the
capability is armed at 1 % (``max-cpu-throttle=1``, which barely slows the guest) and
"enabling" it means raising ``max-cpu-throttle``.
"""

from __future__ import annotations

from typing import Any

from migtune.analysis.live import Change, LivePrediction
from migtune.errors import InputError, MigtuneError
from migtune.model import Event, Run, Sample, Settings
from migtune.qemu.policies import ABORT, POSTCOPY_STATES, SET_PARAMETERS, START_POSTCOPY, Action
from migtune.qemu.policies import Policy as _Policy
from migtune.units import format_duration, parse_duration, parse_rate

ALLOWED = ("auto-converge", "postcopy")
DORMANT = {"cpu-throttle-initial": 1, "cpu-throttle-increment": 1, "max-cpu-throttle": 1}
# Cancelling on one prediction would trust a single calibration; two in a row cost one
# more sync (seconds) and guard against a fit that the next pass corrects.
HOPELESS_PREDICTIONS = 2
THROTTLE_STEPS = (50, 99)
INLINE_GAP = 2.0  # simulated seconds between predictions made inside the simulator  # max-cpu-throttle the policy may raise an armed auto-converge to


def _allow(text: str) -> frozenset[str]:
    items = frozenset(x.strip().lower() for x in text.replace(",", "+").split("+") if x.strip())
    bad = sorted(items - set(ALLOWED) - {"none"})
    if bad:
        raise InputError(f"unknown {bad[0]!r} (allow: {'+'.join(ALLOWED)})")
    return items - {"none"}


class MigtunePolicy(_Policy):
    name = "migtune"
    POLL_INTERVAL = 0.5
    PARAMS = {
        "max_downtime": (parse_duration, 2.0, "the downtime allowance: highest limit it may set"),
        "max_time": (parse_duration, None, "finish within this (default: --time-limit)"),
        "allow": (_allow, frozenset(), "auto-converge+postcopy: what else it may use"),
        "link": (parse_rate, None, "the link's rate: the bandwidth cap may be raised to it"),
    }

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.pending: list[Action] = []
        self.latest: LivePrediction | None = None
        self.decisions = 0
        self.hopeless = 0  # predictions in a row in which nothing allowed converges
        self.deadline: float | None = None  # see _overdue
        # set by the driver, which predicts off its loop; otherwise (the simulator's
        # policy hook) the policy predicts from the samples it sees
        self.live_fed = False
        self.seen = Run(format="qmp")
        self._last_sync = 0
        self._next_inline = 0.0
        self.cancelled = False
        self.throttle_cap: int | None = None  # max-cpu-throttle now in force (armed AC)
        self.downtime_ms: float | None = None
        self.bandwidth: float | None = None

    def describe(self) -> str:
        p = dict(self.params)
        p["allow"] = "+".join(sorted(p["allow"])) or None
        given = {k: v for k, v in p.items() if v is not None}
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in given.items())

    # -- before the start ----------------------------------------------------------------------
    def capabilities(self, requested: Settings) -> dict[str, bool]:
        """Capabilities to switch on before the migration (the driver asks)."""
        if "auto-converge" in self.params["allow"] and not requested.capabilities.get(
            "auto-converge"
        ):
            return {"auto-converge": True}
        return {}

    def configure(self, settings: Settings, **kw: Any) -> None:
        super().configure(settings, **kw)
        if self.params["max_time"] is not None:
            limit = self.time_limit
            self.time_limit = min(self.params["max_time"], limit or float("inf"))
        self.downtime_ms = (settings.downtime_limit or 0.3) * 1000.0
        self.bandwidth = settings.max_bandwidth
        armed = "auto-converge" in self.params["allow"] and not self.requested.capabilities.get(
            "auto-converge"
        )
        if settings.capabilities.get("auto-converge"):
            # as QEMU has it (--attach); initial_actions() arms it at 1 % before a start
            self.throttle_cap = int(settings.max_cpu_throttle or 99)
        if self.downtime_ms > self.params["max_downtime"] * 1000.0:
            raise InputError(
                f"policy migtune: the downtime limit in force ({self.downtime_ms:.0f} ms) is "
                f"above max-downtime ({self.params['max_downtime'] * 1000:.0f} ms)"
            )
        self._armed = armed

    def initial_actions(self) -> list[Action]:
        if getattr(self, "_armed", False) and self.throttle_cap is not None:
            self.throttle_cap = DORMANT["max-cpu-throttle"]
            return [Action(SET_PARAMETERS, "auto-converge armed at 1 % (policy migtune)", DORMANT)]
        return []

    # -- the changes it may make, smallest first ---------------------------------------------
    def candidate_changes(self, sample: Sample | None = None) -> list[Change]:
        if self.cancelled or self.in_postcopy:
            return []
        out: list[Change] = []
        top = self.params["max_downtime"] * 1000.0
        cur = self.downtime_ms or 300.0
        steps = []
        v = cur * 2
        while v < top:
            steps.append(v)
            v *= 2
        if cur < top:
            steps.append(top)
        down = [f"downtime-limit={int(ms)}ms" for ms in steps]
        out += [Change((d,)) for d in down]
        link = self.params["link"]
        bw = None
        if link and self.bandwidth not in (None, 0.0) and self.bandwidth < link:
            bw = f"max-bandwidth={int(link)}"
            out.append(Change((bw,)))
        ac: list[str] = []
        if self.throttle_cap is not None and "auto-converge" in self.params["allow"]:
            for cap in THROTTLE_STEPS:
                if cap > self.throttle_cap:
                    init = 20 if self.throttle_cap <= 1 else None
                    extra = (f"cpu-throttle-initial={init}", "cpu-throttle-increment=10")
                    # the maximum first: QEMU's initial throttle may not exceed it
                    ac.append((f"max-cpu-throttle={cap}", *(extra if init else ())))
        out += [Change(tuple(a)) for a in ac]
        top_down = (down[-1],) if down else ()
        if bw and top_down:
            out.append(Change((*top_down, bw)))
        if ac and (top_down or bw):
            out.append(Change((*top_down, *((bw,) if bw else ()), *ac[-1])))
        if "postcopy" in self.params["allow"] and self.allow_postcopy:
            out.append(Change(top_down, postcopy=True))
        return out

    # -- deciding ------------------------------------------------------------------------------
    def on_prediction(
        self, current: LivePrediction, alternatives: list[tuple[Change, LivePrediction]]
    ) -> None:
        """A prediction arrived: choose what to do (carried out at the next decide())."""
        self.latest = current
        if self.cancelled or self.in_postcopy:
            return
        overdue = self._overdue(current)
        if self._meets(current) and not overdue:
            return
        fits = [(c, p) for c, p in alternatives if self._meets(p)]
        if fits:
            change, pred = fits[0]  # the smallest that does
            why = "the model says it converges within the limits"
            if overdue:
                why = (
                    f"the settings in force were predicted to converge by {overdue:.1f} s and "
                    f"have not: the model is too optimistic here, one step more"
                )
            self._take(change, pred, why)
            return
        hopeless = current.verdict == "will-not-converge" and all(
            p.converged_members == 0 for _, p in alternatives
        )
        self.hopeless = self.hopeless + 1 if hopeless else 0
        if self.hopeless >= HOPELESS_PREDICTIONS:
            tried = (
                f"or any of the {len(alternatives)} allowed changes"
                if alternatives
                else "(and no other change is allowed)"
            )
            self.cancelled = True
            self.pending.append(
                Action(
                    ABORT,
                    f"cancelled early: the model predicts no convergence {self._limits_text(current)} "
                    f"with the settings in force {tried}, {self.hopeless} predictions in a row",
                    prediction=current.to_dict(),
                )
            )
            return
        if hopeless:
            return
        within = [(c, p) for c, p in alternatives if self._downtime_ok(p)]
        best = max(within, key=lambda cp: cp[1].converged_members, default=None)
        if best is not None and best[1].converged_members > current.converged_members:
            self._take(
                best[0],
                best[1],
                "the model is uncertain; most plausible workloads converge with this change",
            )

    def _limits_text(self, p: LivePrediction) -> str:
        parts = []
        limit = self.time_limit if self.time_limit is not None else p.time_limit
        if limit is not None:
            parts.append(f"within {format_duration(limit)}")
        parts.append(f"with a downtime of at most {self.params['max_downtime'] * 1000:.0f} ms")
        return " ".join(parts)

    def _overdue(self, p: LivePrediction) -> float | None:
        """The time by which the settings in force were predicted to have converged, when
        that time has passed with the migration still running (None otherwise).  The
        first "converges" prediction since the last change sets the deadline: its latest
        total time, with a quarter and a second of slack."""
        if self.deadline is None:
            if self._meets(p) and p.total_time_s.get("max") is not None:
                self.deadline = 1.25 * float(p.total_time_s["max"]) + 1.0
            return None
        return self.deadline if p.t > self.deadline else None

    def _meets(self, p: LivePrediction) -> bool:
        return p.verdict == "converges" and self._downtime_ok(p)

    def _downtime_ok(self, p: LivePrediction) -> bool:
        down = p.downtime_ms.get("max") if p.downtime_ms else None
        return down is None or down <= self.params["max_downtime"] * 1000.0

    def _take(self, change: Change, pred: LivePrediction, why: str) -> None:
        self.decisions += 1
        self.deadline = None  # a new setting: the next prediction sets the next deadline
        text = f"{change.describe()}: {why} ({pred.short()})"
        justified = {**pred.to_dict(), "change": change.to_dict()}
        params: dict[str, Any] = {}
        for a in change.set:
            name, _, value = a.partition("=")
            if name == "downtime-limit":
                self.downtime_ms = parse_duration(value) * 1000.0
                params[name] = int(round(self.downtime_ms))
            elif name == "max-bandwidth":
                self.bandwidth = float(value)
                params[name] = int(float(value))
            else:
                params[name] = int(value)
                if name == "max-cpu-throttle":
                    self.throttle_cap = int(value)
        if params:
            self.pending.append(Action(SET_PARAMETERS, text, params, prediction=justified))
        if change.postcopy:
            self.pending.append(Action(START_POSTCOPY, text, prediction=justified))

    def decide(self, sample: Sample, now: float) -> list[Action]:
        self.observe(sample)
        if not self.live_fed:
            self._predict_inline(sample, now)
        if sample.status in POSTCOPY_STATES:
            self.pending = [a for a in self.pending if a.kind == ABORT]
        if (
            self.params["max_time"] is not None
            and now > self.params["max_time"]
            and not self.cancelled
            and not self.in_postcopy
        ):
            self.cancelled = True
            self.pending.append(
                Action(ABORT, f"max-time of {format_duration(self.params['max_time'])} reached")
            )
        out, self.pending = self.pending, []
        for a in out:  # what it did is part of the run the next calibration replays
            kind = "downtime-change" if "downtime-limit" in a.params else "settings"
            self.seen.events.append(Event(now, kind, a.reason, {"params": dict(a.params)}))
        return out

    # -- in the simulator (migtune.sim.steer): no driver feeds predictions ----------------------
    def _predict_inline(self, sample: Sample, now: float) -> None:
        """Predict synchronously from the samples this policy saw, at each new sync.

        Only when nothing feeds it predictions (``live_fed`` False): a simulated run
        steered through ``simulate(policy=...)``.  The driver sets ``live_fed`` and
        predicts off its polling loop instead; this would block it."""
        from migtune.analysis.live import predict

        if not self.seen.samples:
            self.seen.settings = self.settings
            self.seen.events.append(Event(0.0, "ram-start", "simulated migration"))
        self.seen.samples.append(sample)
        if sample.total:
            self.seen.ram_bytes = sample.total
        sync = sample.passes or 0
        if sync < 2 or sync <= self._last_sync or sample.status != "active":
            return
        if now < self._next_inline:
            return  # as the driver's worker would: not at every short pass
        self._last_sync, self._next_inline = sync, now + INLINE_GAP
        self.seen.status = "active"
        try:
            changes = self.candidate_changes(sample)
            current, alts = predict(self.seen, time_limit=self.time_limit, changes=changes)
        except MigtuneError:
            return  # no prediction this time: nothing to act on
        self.on_prediction(current, list(zip(changes, alts, strict=True)))
