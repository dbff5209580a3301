"""``simulate()``: the library entry point used by the CLI, the tuner and the tests."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migtune.errors import InputError
from migtune.model import Event, Run, Settings, to_dict
from migtune.outcome import Outcome, outcome_from_run
from migtune.settings import effective, validate
from migtune.sim import rules
from migtune.sim.engine import Engine
from migtune.sim.loop import main_loop, make_sampler
from migtune.sim.machine import Machine
from migtune.sim.workloads import Dirtier, TraceDirtier, make_layout
from migtune.sources.querymigrate import sample_from_query_migrate
from migtune.workload import PAGE_SIZE, Workload, parse_workload

DEFAULT_QEMU_VERSION = "10.0"
DEFAULT_TIME_LIMIT = 600.0


@dataclass
class SimResult:
    outcome: Outcome
    run: Run
    passes: list[dict[str, Any]]
    wall_time: float = 0.0  # seconds the simulation itself took
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``Outcome.to_dict()`` plus simulator extras (a superset: same keys as lab run)."""
        d = self.outcome.to_dict()
        d["simulated"] = True
        d.update(self.stats)
        d["pass_table"] = self.passes
        return d


def _postcopy_trigger(
    enabled: bool, after_passes: int | None, after: float | None, poll: float = 0.0
):
    """When migtune would issue migrate-start-postcopy: once dirty-sync-count reaches
    ``after_passes`` or ``after`` seconds passed, whichever first (default: 2 passes,
    as ``migtune migrate --postcopy``) - noticed at its next ``query-migrate`` poll."""
    if not enabled:
        return None
    if after_passes is None and after is None:
        after_passes = 2
    state: dict[str, float] = {}

    def due(e) -> bool:
        if "at" not in state:
            hit = after_passes is not None and e.sync_count >= after_passes
            if not (hit or (after is not None and e.t - e.start >= after)):
                return False
            seen = e.t - e.start
            state["at"] = math.ceil(seen / poll - 1e-9) * poll if poll > 0 else seen
        return e.t - e.start >= state["at"]

    return due


def simulate(
    ram_bytes: int,
    workload: Workload | str,
    settings: Settings | None = None,
    *,
    qemu_version: str = DEFAULT_QEMU_VERSION,
    link_rate: float | None = None,
    time_limit: float = DEFAULT_TIME_LIMIT,
    seed: int = 0,
    record: str | Path | None = None,
    machine: Machine | None = None,
    postcopy_after_passes: int | None = None,
    postcopy_after: float | None = None,
    schedule: list[tuple[float, str]] | None = None,
    stop_after_passes: int | None = None,
    stop_when_settled: bool = False,
    trace: str | Path | None = None,
    sample_interval: float | None = None,
    rate_factor=None,
    exact_xbzrle: bool = False,
    xbzrle_pricing: str = "auto",
    policy=None,
    policy_ram_bytes: int | None = None,
) -> SimResult:
    """Simulate one pre-copy migration of a guest with ``ram_bytes`` of RAM.

    ``settings`` as QEMU would get them (unset = QEMU default); ``link_rate`` the wire
    rate in bytes/s (default: the lab's loopback).  With the ``postcopy-ram``
    capability the switch happens after ``postcopy_after_passes`` syncs or
    ``postcopy_after`` seconds (default 2 passes).  ``stop_after_passes`` cancels the
    migration once dirty-sync-count exceeds it (a give-up policy; benchmarks).
    ``stop_when_settled`` ends a run that repeats the same pass with nothing pending
    and extrapolates it to ``time_limit`` (:mod:`migtune.sim.settle`; a ``settled`` event
    and ``stats["settled_from_s"]`` say from when).
    ``rate_factor(t)`` scales the workload's write rate over time (replaying what a real
    guest managed on a busy host).  ``exact_xbzrle`` keeps real page bytes and runs the
    real encoder for every delta (lab-sized guests; checks the size model).
    ``xbzrle_pricing``: ``"statistics"`` prices XBZRLE for a workload spec by the shares
    of hits, misses and unchanged pages (:mod:`migtune.sim.xbzstat`); ``"pages"`` page
    by page (the reference; traces and exact mode always are); ``"auto"`` (default)
    statistics when the guest writes more than 1 GiB of pages, else pages.  ``schedule`` lists ``(t, "name=value")``
    setting changes made during the migration (a policy raising the downtime limit).
    ``policy`` (a :class:`~migtune.qemu.policies.Policy` or its spec, ``"nova:timeout=10s"``)
    steers the run as ``migrate --policy`` does (:mod:`migtune.sim.steer`); it is told
    the guest has ``policy_ram_bytes`` (default ``ram_bytes``: a shrunk guest passes the
    full size, which Nova's and KubeVirt's timeouts scale with).  With a policy, post-copy
    starts only when the policy asks for it (or ``postcopy_after*`` say when).
    """
    version = rules.parse_version(qemu_version)
    if ram_bytes < PAGE_SIZE:
        raise InputError("guest RAM must be at least one page (4 KiB)")
    if time_limit <= 0:
        raise InputError("time limit must be positive")
    s = effective(settings or Settings())
    validate(s)
    s.qemu_version = str(qemu_version)
    caps = s.capabilities
    if caps.get("xbzrle") and caps.get("multifd") and version >= (8, 1):
        raise InputError("QEMU 8.1+ refuses xbzrle together with multifd")
    if caps.get("auto-converge") and caps.get("dirty-limit"):
        raise InputError("auto-converge and dirty-limit cannot both be on")
    if (postcopy_after is not None or postcopy_after_passes is not None) and not caps.get(
        "postcopy-ram"
    ):
        raise InputError("post-copy switch asked but the postcopy-ram capability is off")
    m = machine or Machine()
    if link_rate is not None:
        if link_rate <= 0:
            raise InputError("link rate must be positive")
        m = m.replace(link_rate=float(link_rate))
    if sample_interval is not None:
        m = m.replace(sample_interval=float(sample_interval))
    pages = int(ram_bytes) // PAGE_SIZE
    if trace is not None:
        w = parse_workload(workload) if isinstance(workload, str) else workload
        dirtier = TraceDirtier(trace, pages, w.bytes_per_write if w else 8)
        spec = f"trace={trace}"
    else:
        w = parse_workload(workload) if isinstance(workload, str) else workload
        layout = make_layout(pages, w.ws // PAGE_SIZE, w.zero)
        dirtier = Dirtier(
            w, layout, m.guest_cpu_rate, seed, m.guest_background_rate, m.guest_background_pages
        )
        dirtier.rate_factor = rate_factor
        spec = w.spec()
    eng = Engine(
        pages, dirtier, s, version, m, exact=exact_xbzrle, xbzrle_pricing=xbzrle_pricing, seed=seed
    )
    records: list[tuple[float, dict[str, Any]]] = []
    wall0 = time.perf_counter()
    steer = None
    pc_default = True
    if policy is not None:
        from migtune.sim.steer import Steering

        steer = Steering(
            policy, s, int(policy_ram_bytes or ram_bytes), bool(caps.get("postcopy-ram"))
        )
        s = steer.initial(s)
        eng.set_settings(s)
        pc_default = postcopy_after_passes is not None or postcopy_after is not None
    trigger = _postcopy_trigger(
        bool(caps.get("postcopy-ram")) and pc_default,
        postcopy_after_passes,
        postcopy_after,
        m.sample_interval,
    )
    eng.stop_after_passes = stop_after_passes
    eng.stop_when_settled = stop_when_settled
    if schedule:
        eng.schedule = sorted((float(t), a) for t, a in schedule)
    main_loop(eng, time_limit, make_sampler(m.sample_interval, records), trigger, steer)
    wall = time.perf_counter() - wall0
    run = _to_run(eng, records, s, spec, ram_bytes)
    outcome = outcome_from_run(run, recording=str(record) if record else None)
    stats = {
        "qemu_version": s.qemu_version,
        "link_rate": m.link_rate,
        "ram_bytes": pages * PAGE_SIZE,
        "workload": spec,
        "settled_from_s": eng.settled_from,
        "xbzrle_pricing": eng.xbzrle_pricing,
        "pages_per_second_simulated": round(eng.c.normal + eng.c.duplicate + eng.c.xb_pages) / wall
        if wall
        else None,
    }
    if steer is not None:
        stats.update(steer.stats())
    if record:
        _write_recording(record, run, records, eng, s, spec, outcome)
    return SimResult(outcome, run, eng.passes, wall, stats)


def _to_run(eng: Engine, records, s: Settings, spec: str, ram_bytes: int) -> Run:
    run = Run(format="simulation", settings=dataclasses.replace(s))
    run.samples = [sample_from_query_migrate(qm, t) for t, qm in records]
    run.events = [Event(t, kind, msg, data) for t, kind, msg, data in eng.events]
    run.status = {"completed": "completed", "cancelled": "cancelled"}.get(eng.status, "active")
    run.ram_bytes = eng.N * eng.P
    run.downtime = None if eng.downtime_ms is None else eng.downtime_ms / 1000
    run.ram_duration = None if eng.total_time_ms is None else eng.total_time_ms / 1000
    run.t0 = 0.0
    run.meta.update({"origin": "simulate", "workload": spec, "ram": ram_bytes})
    return run


def _write_recording(path, run: Run, records, eng: Engine, s: Settings, spec, outcome) -> None:
    from migtune.outputs.recording import RecordingWriter

    with RecordingWriter(path) as w:
        w.header(
            "simulate",
            to_dict(s),
            time.time(),
            qemu_version=s.qemu_version,
            workload=spec,
            meta={"ram": run.ram_bytes, "link_rate": eng.machine.link_rate},
        )
        events = sorted(eng.events, key=lambda e: e[0])
        k = 0
        for t, qm in records:
            while k < len(events) and events[k][0] <= t:
                et, kind, msg, data = events[k]
                w.event(et, kind, msg, data)
                k += 1
            w.sample(t, qm)
        for et, kind, msg, data in events[k:]:
            w.event(et, kind, msg, data)
        w.result(outcome.to_dict())
