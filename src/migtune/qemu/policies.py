"""How management layers steer a running migration, as pure, testable rules.

Each policy sees one ``query-migrate`` sample at a time and answers with a list of
:class:`Action` s for the driver to carry out.  The rules follow the team
``docs/platforms.md``: Proxmox §1.4, OpenStack Nova §3.2-3.3,
KubeVirt §4.3.  They never talk to QEMU themselves, so they are unit-tested on
hand-made sample sequences.

Parameters are given as ``name:key=value,key=value`` (``nova:downtime=500ms,steps=10``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from migtune.errors import InputError
from migtune.model import Sample, Settings
from migtune.units import GiB, parse_duration

# Action kinds the driver understands.
SET_PARAMETERS = "set-parameters"  # params: QMP migrate-set-parameters arguments
START_POSTCOPY = "start-postcopy"  # migrate-start-postcopy
PAUSE = "pause"  # stop the source guest so pre-copy can finish
ABORT = "abort"  # migrate_cancel: the source keeps running

POSTCOPY_STATES = ("postcopy-active", "postcopy-paused", "postcopy-recover", "postcopy-device")


@dataclass(slots=True)
class Action:
    kind: str
    reason: str
    params: dict[str, Any] = field(default_factory=dict)
    t: float | None = None  # seconds since the migration started, set by the driver
    # the live prediction that justified it (``--policy migtune``): LivePrediction.to_dict()
    prediction: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "reason": self.reason, "params": self.params, "t": self.t}
        if self.prediction is not None:
            out["prediction"] = self.prediction
        return out


class Policy:
    """Base: the ``fixed`` policy - keep what the user set, take no action."""

    name = "fixed"
    # key -> (parser, default, help)
    PARAMS: dict[str, tuple[Any, Any, str]] = {}

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.PARAMS)
        if unknown:
            known = ", ".join(sorted(self.PARAMS)) or "none"
            raise InputError(
                f"policy {self.name} has no parameter {sorted(unknown)[0]!r} (known: {known})"
            )
        self.params = {k: d for k, (_, d, _) in self.PARAMS.items()}
        for k, v in params.items():
            parser = self.PARAMS[k][0]
            try:
                self.params[k] = parser(v) if isinstance(v, str) else v
            except (ValueError, InputError) as exc:
                raise InputError(f"policy {self.name}: bad value {v!r} for {k} ({exc})") from None
        self.allow_postcopy = False
        self.time_limit: float | None = None
        self.ram_bytes: int | None = None
        self.settings = Settings()
        self.requested = Settings()
        self.in_postcopy = False

    def configure(
        self,
        settings: Settings,
        *,
        ram_bytes: int | None,
        allow_postcopy: bool = False,
        requested: Settings | None = None,
        time_limit: float | None = None,
    ) -> None:
        """Called once before the migration starts.

        ``settings`` are those in force on the source, ``requested`` what the user
        asked for (``None`` fields: not given), ``ram_bytes`` the guest's RAM,
        ``time_limit`` the driver's (``--time-limit``).
        """
        self.settings = settings
        self.requested = requested if requested is not None else settings
        self.ram_bytes = ram_bytes
        self.allow_postcopy = allow_postcopy
        self.time_limit = time_limit

    # -- the live prediction (see migtune.qemu.livewatch) -----------------------------------
    def capabilities(self, requested: Settings) -> dict[str, bool]:
        """Capabilities the policy needs switched on before the migration starts."""
        return {}

    def candidate_changes(self, sample: Sample | None = None) -> list[Any]:
        """Changes (``migtune.analysis.live.Change``) to predict besides the settings in
        force at the next prediction."""
        return []

    def prediction_limit(self) -> float | None:
        """The time the live prediction asks "converges within?" about."""
        return self.time_limit

    def on_prediction(self, current: Any, alternatives: list[Any]) -> None:
        """A live prediction arrived (``LivePrediction`` and ``[(Change, LivePrediction)]``)."""

    def observe(self, sample: Sample) -> None:
        if sample.status in POSTCOPY_STATES:
            self.in_postcopy = True

    # Seconds between polls when the user does not choose (the platform's own cadence).
    POLL_INTERVAL = 0.5

    def initial_actions(self) -> list[Action]:
        """Actions to take before the migration starts (after :meth:`configure`)."""
        return []

    def poll_interval(self, sample: Sample | None) -> float:
        """How long to wait before the next poll, given the latest sample."""
        return self.POLL_INTERVAL

    def decide(self, sample: Sample, now: float) -> list[Action]:
        """Actions to take after this sample; ``now`` is seconds since the migration began."""
        self.observe(sample)
        return []

    def describe(self) -> str:
        given = {k: v for k, v in self.params.items() if v is not None}
        if not given:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in given.items())


def _ms(text: str) -> float:
    """A downtime given with a unit (``500ms``, ``2s``) or as bare milliseconds, in ms."""
    stripped = text.strip()
    if stripped.replace(".", "", 1).isdigit():
        return float(stripped)
    return parse_duration(stripped) * 1000.0


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "yes", "true", "on"):
        return True
    if low in ("0", "no", "false", "off"):
        return False
    raise InputError(f"expected yes/no, got {text!r}")


PROXMOX_MAX_DOWNTIME_MS = 2_000_000


class ProxmoxPolicy(Policy):
    """qemu-server's dynamic downtime (docs/platforms.md §1.4).

    On each poll where ``transferred`` moved, count an event when ``remaining``
    rose since the previous such poll or is zero; on the 6th event reset the
    count and double the downtime limit, capped at 2 000 000 ms.  Proxmox has no
    time limit and never aborts.
    """

    name = "proxmox"
    POLL_INTERVAL = 1.0
    PARAMS = {
        "downtime": (_ms, None, "initial downtime limit (default: --downtime-limit, else 100ms)"),
    }

    def configure(self, settings: Settings, **kw: Any) -> None:
        super().configure(settings, **kw)
        initial = self.params["downtime"]
        if initial is None:  # the user's downtime limit, else Proxmox's migrate_downtime 0.1 s
            asked = self.requested.downtime_limit
            initial = asked * 1000 if asked is not None else 100.0
        self.downtime_ms = float(initial)
        self.counter = 0
        self.last_rem: int | None = None
        self.last_transferred: int | None = None

    def initial_actions(self) -> list[Action]:
        # Proxmox sets migrate_downtime (default 100 ms) before it starts the migration.
        current = self.settings.downtime_limit
        if current is not None and abs(current * 1000 - self.downtime_ms) < 0.5:
            return []
        return [Action(SET_PARAMETERS, "Proxmox initial downtime", self._downtime_params())]

    def decide(self, sample: Sample, now: float) -> list[Action]:
        self.observe(sample)
        actions: list[Action] = []
        if sample.transferred is None or sample.transferred == self.last_transferred:
            return actions
        self.last_transferred = sample.transferred
        rem = sample.remaining
        if rem is None:
            return actions
        if (self.last_rem is not None and rem > self.last_rem) or rem == 0:
            self.counter += 1
        self.last_rem = rem
        if self.counter > 5:
            self.counter = 0
            new = min(self.downtime_ms * 2, PROXMOX_MAX_DOWNTIME_MS)
            if new != self.downtime_ms:
                self.downtime_ms = new
                actions.append(
                    Action(
                        SET_PARAMETERS,
                        f"auto-increased downtime to continue migration: {new:.0f} ms",
                        self._downtime_params(),
                    )
                )
        return actions

    def poll_interval(self, sample: Sample | None) -> float:
        """1 s, or 100 ms once remaining is below the average bytes sent per poll (§1.3)."""
        if sample is None or sample.transferred is None or sample.remaining is None:
            return 1.0
        self.polls = getattr(self, "polls", 0) + 1
        return 0.1 if sample.remaining < sample.transferred / self.polls else 1.0

    def _downtime_params(self) -> dict[str, Any]:
        return {"downtime-limit": int(self.downtime_ms)}


class NovaPolicy(Policy):
    """OpenStack Nova's libvirt driver (docs/platforms.md §3.2-§3.3).

    Downtime steps: ``data_gb = max(2, RAM GiB)``, ``delay = int(delay × data_gb)``,
    ``base = downtime / steps``, ``offset = (downtime - base) / steps``; step *i*
    applies ``int(base + offset × i)`` ms once ``delay × i < elapsed`` (``py2=yes``:
    integer division, as in logs of Nova on Python 2).
    Completion timeout ``int(timeout × data_gb)`` s: ``abort`` cancels;
    ``force_complete`` switches to post-copy if allowed, else pauses the guest.
    Nova never aborts a migration that is already in post-copy.
    """

    name = "nova"
    POLL_INTERVAL = 0.5
    PARAMS = {
        "downtime": (_ms, 500.0, "final downtime in ms (live_migration_downtime)"),
        "steps": (int, 10, "live_migration_downtime_steps"),
        "delay": (parse_duration, 75.0, "seconds per GiB between steps"),
        "timeout": (parse_duration, 800.0, "completion timeout, seconds per GiB (0: none)"),
        "action": (str, "abort", "abort | force_complete (live_migration_timeout_action)"),
        "data_gb": (float, None, "data size in GiB (default: guest RAM, at least 2)"),
        "py2": (_bool, False, "integer division as Python 2 Nova did (714, 1326 ... 4998 ms)"),
    }

    def configure(self, settings: Settings, **kw: Any) -> None:
        super().configure(settings, **kw)
        p = self.params
        if p["action"] not in ("abort", "force_complete"):
            raise InputError("policy nova: action must be abort or force_complete")
        if p["steps"] < 1:
            raise InputError("policy nova: steps must be at least 1")
        gb = p["data_gb"]
        if gb is None:
            gb = max(2.0, (self.ram_bytes or 0) / GiB)
        self.data_gb = gb
        delay = int(p["delay"] * gb)
        if p["py2"]:  # Nova under Python 2 divided integers: logs show e.g. 4998 for 5000 ms
            base = int(p["downtime"]) // p["steps"]
            offset = (int(p["downtime"]) - base) // p["steps"]
        else:
            base = p["downtime"] / p["steps"]
            offset = (p["downtime"] - base) / p["steps"]
        self.schedule = [(delay * i, int(base + offset * i)) for i in range(p["steps"] + 1)]
        self.completion_timeout = int(p["timeout"] * gb)
        self.current: int | None = None
        self.timed_out = False

    def step_at(self, elapsed: float) -> int | None:
        """The downtime (ms) of the last step whose time is before ``elapsed``."""
        chosen = None
        for when, downtime in self.schedule:
            if when < elapsed:
                chosen = downtime
        return chosen

    def decide(self, sample: Sample, now: float) -> list[Action]:
        self.observe(sample)
        actions: list[Action] = []
        step = self.step_at(now)
        if step is not None and step != self.current and not self.in_postcopy:
            self.current = step
            actions.append(
                Action(
                    SET_PARAMETERS,
                    f"Increasing downtime to {step} ms after {int(now)} sec elapsed time",
                    {"downtime-limit": step},
                )
            )
        if (
            self.completion_timeout > 0
            and now > self.completion_timeout
            and not self.timed_out
            and not self.in_postcopy
        ):
            self.timed_out = True
            why = f"Live migration not completed after {self.completion_timeout} sec"
            if self.params["action"] == "abort":
                actions.append(Action(ABORT, why))
            elif self.allow_postcopy:
                actions.append(Action(START_POSTCOPY, why + ": switching to post-copy"))
            else:
                actions.append(Action(PAUSE, why + ": pausing the guest so pre-copy can finish"))
        return actions


class KubevirtPolicy(Policy):
    """KubeVirt's virt-launcher monitor (docs/platforms.md §4.3).

    Completion time ``completion_per_gib × ceil(RAM / 10^9)``; progress means
    ``remaining`` fell since the previous poll.  Order: in post-copy do nothing;
    past the completion time with workload disruption allowed, post-copy if
    allowed else pause the guest (the allowance then doubles); no progress for
    ``progress_timeout`` → abort; past the completion time → abort.
    """

    name = "kubevirt"
    POLL_INTERVAL = 0.4  # virt-launcher's monitor loop
    PARAMS = {
        "progress_timeout": (parse_duration, 150.0, "abort after this long without progress"),
        "completion_per_gib": (parse_duration, 150.0, "completionTimeoutPerGiB, seconds"),
        "disruption": (_bool, None, "allowWorkloadDisruption (default: = post-copy allowed)"),
        "size": (float, None, "size in units of 10^9 bytes (default: guest RAM, rounded up)"),
    }

    def configure(self, settings: Settings, **kw: Any) -> None:
        super().configure(settings, **kw)
        size = self.params["size"]
        if size is None:
            size = math.ceil((self.ram_bytes or 0) / 1e9)
        self.size = size
        self.acceptable = self.params["completion_per_gib"] * size
        disruption = self.params["disruption"]
        self.disruption = self.allow_postcopy if disruption is None else disruption
        self.last_remaining: int | None = None
        self.last_progress = 0.0
        self.paused = False
        self.done = False

    def decide(self, sample: Sample, now: float) -> list[Action]:
        self.observe(sample)
        if self.in_postcopy or self.done:
            return []
        rem = sample.remaining
        if rem is not None:
            if self.last_remaining is not None and rem < self.last_remaining:
                self.last_progress = now
            self.last_remaining = rem
        if now > self.acceptable and self.disruption and not self.paused:
            if self.allow_postcopy:
                self.done = True
                return [Action(START_POSTCOPY, "Starting post copy mode for migration")]
            self.paused = True
            self.acceptable *= 2
            return [Action(PAUSE, "Pausing the guest to allow migration to complete")]
        stuck = now - self.last_progress
        if stuck > self.params["progress_timeout"]:
            self.done = True
            return [Action(ABORT, f"Aborting migration: stuck for {int(stuck)} seconds")]
        if now > self.acceptable:
            self.done = True
            return [Action(ABORT, f"Aborting migration: not completed after {int(now)} seconds")]
        return []


POLICIES: dict[str, type[Policy]] = {
    "fixed": Policy,
    "proxmox": ProxmoxPolicy,
    "nova": NovaPolicy,
    "kubevirt": KubevirtPolicy,
}


def parse_policy(spec: str | Policy | None) -> Policy:
    """``fixed``, ``proxmox``, ``nova:downtime=500ms,steps=10,delay=75s,timeout=800s`` ..."""
    if isinstance(spec, Policy):
        return spec
    spec = (spec or "fixed").strip()
    name, _, rest = spec.partition(":")
    cls = POLICIES.get(name.strip().lower())
    if cls is None:
        raise InputError(f"unknown policy {name!r} (choose from {', '.join(POLICIES)})")
    params: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise InputError(f"policy parameter {item!r} must be key=value")
        params[key.strip().replace("-", "_")] = value.strip()
    return cls(**params)


def policy_help() -> str:
    lines = ["fixed: keep the settings given, take no action"]
    for name, cls in POLICIES.items():
        if cls.PARAMS:
            keys = ", ".join(f"{k}" for k in cls.PARAMS)
            lines.append(f"{name}: parameters {keys}")
    return "; ".join(lines)


from migtune.qemu.policy_migtune import MigtunePolicy  # noqa: E402 - it subclasses Policy

POLICIES["migtune"] = MigtunePolicy
