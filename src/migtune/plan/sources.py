"""Where the planner gets each VM's plausible workloads and candidate settings.

The one place that knows about the history store and the tuner: a workload spec is one
workload; ``history:NAME`` is the plausible set the history store calibrated from that
VM's past migrations.  Candidate settings come from the platform's rules
(:mod:`.platforms`).
"""

from __future__ import annotations

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
        from migtune.history import calibration_for_vm  # type: ignore[attr-defined]
    except ImportError:
        raise InputError(
            f"{where}: workload: {vm.workload} needs the migration history store, which "
            "this migtune does not have; give a workload spec instead"
        ) from None
    try:
        cal = calibration_for_vm(vm.history, db=db)
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
