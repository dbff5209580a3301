"""Where the planner gets each VM's plausible workloads and candidate settings.

The one place that knows about the history store and the tuner: a workload spec is one
workload; ``history:NAME`` is the plausible set the history store calibrated from that
VM's past migrations.  Candidate settings come from the platform's rules
(:mod:`.platforms`) and, when asked for, from ``migtune tune``.
"""

from __future__ import annotations

import dataclasses

from migtune.errors import InputError, MigtuneError
from migtune.model import Settings
from migtune.plan import platforms
from migtune.plan.fleet import VmSpec
from migtune.workload import parse_workload


def plausible_workloads(vm: VmSpec, where: str, db: str | None = None) -> tuple[str, ...]:
    """The workload specs to simulate for ``vm`` (``where``: ``FILE:LINE`` for errors;
    ``db``: the history store, None for its default place)."""
    if vm.history is None:
        return (parse_workload(vm.workload).spec(),)
    try:
        from migtune.history import calibration_for_vm
    except ImportError:
        raise InputError(
            f"{where}: workload: {vm.workload} needs the migration history store, which "
            "this migtune does not have; give a workload spec instead"
        ) from None
    try:
        # a plan reads the history; it must not add a stored calibration per VM per plan
        cal = calibration_for_vm(vm.history, db=db, store=False)
    except MigtuneError as exc:
        raise InputError(f"{where}: workload: {vm.workload}: {exc.message}") from None
    specs = tuple(dict.fromkeys(w.spec() for w in cal.plausible))
    if not specs:
        raise InputError(f"{where}: workload: {vm.workload}: no plausible workload")
    return specs


def candidates(platform: str, vm: VmSpec, downtime: float) -> tuple[tuple[str, Settings], ...]:
    """``base`` (the platform's defaults, for the baselines) then the planner's own
    candidates, least intrusive first."""
    base = platforms.base_settings(platform, vm.ram_bytes, vm.max_bandwidth)
    tuned = platforms.candidate_settings(platform, vm.ram_bytes, vm.max_bandwidth, downtime)
    return (("base", base), *tuned.items())


def tune_recommendation(
    ram_bytes: int, workload: str, platform: str, max_downtime: float, rate: float,
    qemu_version: str,
) -> tuple[Settings, str, list[str], int] | None:  # fmt: skip
    """``migtune tune``'s answer for one VM migrating at ``rate``: its recommendation, or
    the closest candidate when none meets ``max_downtime``, as (settings, label, the
    platform's commands, simulations run); None when it has neither."""
    from migtune.analysis.tune import tune

    r = tune(ram_bytes=ram_bytes, workload=workload, platform=platform,
             max_downtime=max_downtime, link_rate=rate, qemu_version=qemu_version)  # fmt: skip
    rec = r.recommendation or r.closest
    if rec is None:
        return None
    settings = dataclasses.replace(rec.settings, capabilities=dict(rec.settings.capabilities))
    key = "qmp" if platform == "qemu" else platform
    commands = list(rec.commands.get(key) or rec.commands.get("qmp") or [])
    return settings, rec.label, commands, int(r.stats.get("simulations") or 0)
