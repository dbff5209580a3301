"""A management layer's policy in the simulation loop.

The same :class:`~migtune.qemu.policies.Policy` objects ``migtune migrate --policy``
uses see each simulated ``query-migrate`` reply at the policy's own poll cadence
(Proxmox 1 s / 100 ms, Nova 0.5 s, KubeVirt 0.4 s), and the engine carries out what
they answer: ``migrate-set-parameters`` (in force at once, as on QEMU), a switch to
post-copy (when the ``postcopy-ram`` capability is on; else ignored, as the driver
does), pausing the guest (``stop``: pre-copy then finishes with nothing left to dirty)
or cancelling.  So a simulated run is steered by the policy code itself, not by a
replayed schedule of its past decisions.

Settled runs (:mod:`migtune.sim.settle`) are only extrapolated as far as the policy
is sure to stay quiet: up to Nova's next downtime step or completion timeout, up to
KubeVirt's completion time; never while Proxmox can still double its downtime limit.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from migtune.model import Settings
from migtune.qemu.policies import (
    ABORT,
    PAUSE,
    PROXMOX_MAX_DOWNTIME_MS,
    SET_PARAMETERS,
    START_POSTCOPY,
    KubevirtPolicy,
    NovaPolicy,
    Policy,
    ProxmoxPolicy,
    parse_policy,
)
from migtune.settings import QMP_PARAMETERS, from_qmp_value, validate
from migtune.sim.report import query_migrate
from migtune.sources.querymigrate import sample_from_query_migrate


class Steering:
    """Polls one simulated migration for a policy and applies its actions."""

    def __init__(
        self,
        policy: str | Policy,
        settings: Settings,
        ram_bytes: int,
        allow_postcopy: bool,
        requested: Settings | None = None,
    ):
        # a fresh copy per simulation: policies keep state (counters, timers)
        self.policy = copy.deepcopy(parse_policy(policy))
        self.policy.configure(
            settings, ram_bytes=ram_bytes, allow_postcopy=allow_postcopy, requested=requested
        )
        self.allow_postcopy = allow_postcopy
        self.next_poll = 0.0
        self.last = None
        self.abort: str | None = None
        self.postcopy = False
        self.paused_at: float | None = None
        self.actions: list[dict[str, Any]] = []

    def initial(self, s: Settings) -> Settings:
        """The settings after the policy's actions before the migration starts."""
        for action in self.policy.initial_actions():
            if action.kind == SET_PARAMETERS:
                s = _with_params(s, action.params)
                self.actions.append({**action.to_dict(), "t": 0.0})
        return s

    def poll(self, e) -> None:
        """Called every loop step: one poll when the policy's next one is due."""
        now = e.t - e.start
        if now + 1e-9 < self.next_poll or e.status not in ("active", "postcopy-active"):
            return
        sample = sample_from_query_migrate(query_migrate(e), round(now, 3))
        # like the driver: the interval is chosen from the latest sample, then waited
        self.next_poll = now + self.policy.poll_interval(sample)
        for action in self.policy.decide(sample, now):
            self.apply(e, action, now)

    def apply(self, e, action, now: float) -> None:
        action.t = round(now, 3)
        self.actions.append(action.to_dict())
        if action.kind == SET_PARAMETERS:
            e.set_settings(_with_params(e.s, action.params))
            kind = "downtime-change" if "downtime-limit" in action.params else "settings"
            e.events.append((e.t, kind, action.reason, action.to_dict()))
        elif action.kind == ABORT:
            self.abort = f"policy {self.policy.name}: {action.reason}"
            e.events.append((e.t, "cancelled", self.abort, action.to_dict()))
        elif action.kind == START_POSTCOPY:
            if self.allow_postcopy and not self.postcopy:
                self.postcopy = True
            else:
                e.events.append((e.t, "warning", "post-copy asked but not allowed", {}))
        elif action.kind == PAUSE and self.paused_at is None:
            e.guest_to(e.t)
            e.stopped = True  # no more writes: the next passes shrink to nothing
            self.paused_at = round(now, 3)
            e.events.append((e.t, "info", f"guest paused: {action.reason}", action.to_dict()))

    def quiet_until(self, e) -> float:
        """Seconds since the start up to which the policy cannot act on a run that
        repeats the same round (``0``: it may act at any poll)."""
        p = self.policy
        now = e.t - e.start
        if self.abort or self.postcopy or self.paused_at is not None:
            return 0.0
        if isinstance(p, ProxmoxPolicy):
            # a repeating round keeps raising `remaining` at each sync: it doubles on
            return math.inf if p.downtime_ms >= PROXMOX_MAX_DOWNTIME_MS else 0.0
        if isinstance(p, NovaPolicy):
            times = [t for t, _ in p.schedule if t >= now]
            if p.completion_timeout > 0 and not p.timed_out:
                times.append(p.completion_timeout)
            return min(times, default=math.inf)
        if isinstance(p, KubevirtPolicy):
            # a repeating round makes progress (remaining falls between syncs) every
            # poll, so only the completion time can fire
            return math.inf if p.done else p.acceptable
        if type(p) is Policy:
            return math.inf
        return 0.0  # a policy this module does not know: simulate every poll

    def stats(self) -> dict[str, Any]:
        return {
            "policy": self.policy.describe(),
            "policy_actions": self.actions,
            "guest_paused_at_s": self.paused_at,
        }


def _with_params(s: Settings, params: dict[str, Any]) -> Settings:
    new = copy.copy(s)
    new.capabilities = dict(s.capabilities)
    for name, value in params.items():
        field = QMP_PARAMETERS.get(name)
        if field is not None:
            setattr(new, field[0], from_qmp_value(name, value))
    validate(new)
    return new
