"""Check the timeline's approximation against direct simulation (docs/plan.md, "How
good is the approximation").

The timeline reads each VM's rate curve at the rate it gets between events.  Here the
same VM is simulated once, directly, with the rates the timeline gave it imposed as
setting changes at their times (``max-bandwidth`` steps, the same way the curves impose
a rate), and the two durations are compared.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from migtune.plan.curves import scaled_machine, shrink_factor
from migtune.plan.platforms import platform_policy
from migtune.sim.api import simulate
from migtune.sim.calibrate.fit import Setup, shrunk
from migtune.workload import parse_workload

if TYPE_CHECKING:
    from migtune.plan.planner import EvacuationPlan
    from migtune.plan.strategies import Evaluation


@dataclass(frozen=True)
class Check:
    name: str
    rate_changes: int  # how many times its rate changed during its migration
    model_s: float | None  # duration the timeline predicts (None: did not complete)
    direct_s: float | None  # duration of the direct simulation (None: did not complete)

    @property
    def error(self) -> float | None:
        if self.model_s is None or self.direct_s is None or self.direct_s == 0:
            return None
        return (self.model_s - self.direct_s) / self.direct_s

    @property
    def same_class(self) -> bool:
        return (self.model_s is None) == (self.direct_s is None)


def check_vm(
    plan: EvacuationPlan,
    name: str,
    qemu_version: str = "10.0",
    evaluation: Evaluation | None = None,
) -> Check:
    """Simulate VM ``name`` directly under the rates the (pessimistic) timeline of the
    plan, or of another ``evaluation`` of its fleet, gives it; the first plausible
    workload is simulated (a spec VM has only one)."""
    ev = evaluation or plan.best
    v = plan.vm(name)
    run = ev.pessimistic.runs[name]
    cand = ev.chosen[name]
    settings = v.settings[cand]
    pieces = run.rates
    start = run.start
    s = dataclasses.replace(settings, capabilities=dict(settings.capabilities))
    s.max_bandwidth = pieces[0][2]
    schedule = [(t0 - start, f"max-bandwidth={r:.0f}") for t0, _, r in pieces[1:]]
    # the wire is the whole link (or the VM's own cap), as when the curves were made
    top = min(plan.link_rate, v.spec.max_bandwidth or plan.link_rate,
              plan.stream_rate or plan.link_rate)  # fmt: skip
    k = shrink_factor(v.spec.ram_bytes, min(r for _, _, r in pieces))
    setup = Setup(v.spec.ram_bytes, s, qemu_version, top, schedule, None, v.max_time, None, k)
    ram, w, s2, link2, sched = shrunk(setup, parse_workload(v.workloads[0]))
    res = simulate(ram, w, s2, qemu_version=qemu_version, link_rate=link2,
                   time_limit=v.max_time, schedule=sched or None,
                   stop_when_settled=True, machine=scaled_machine(k),
                   policy=platform_policy(v.platform),
                   policy_ram_bytes=v.spec.ram_bytes)  # fmt: skip
    direct = res.outcome.total_time_s if res.outcome.converged else None
    model = run.end - run.start if run.status == "completed" else None
    return Check(name, len(pieces) - 1, model, direct)
