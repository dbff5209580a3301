"""Calibrate from several past runs of one VM together, and say when its workload drifted.

Each run is calibrated alone first (:func:`migtune.sim.calibrate.calibrate`): a small
plausible set of workloads that reproduce *that* run.  Then every workload of every
set is replayed under every run's own conditions and scored as calibration scores a
candidate (same score, same margin):

* the workloads that reproduce **every** run form the joint plausible set (the
  intersection): one guest, seen several times;
* when none does, the set is the **merge** of each run's best fits, so it still
  reproduces each run with one of its members, and predictions span the regimes seen;
  this is reported (``reproduces_all`` false).

Drift: each run's fit has its own spread (the range of working sets and write rates its
plausible set allows; the 10th-90th percentile of the dirty rate QEMU measured during
it).  When two runs' ranges do not overlap, even with 10 % slack, the workload changed
between them, and the finding says which way and between which runs.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from migtune import __version__
from migtune.errors import InputError, MigtuneError
from migtune.history.store import now_iso, open_store
from migtune.sim.calibrate import Calibration, calibrate, compare
from migtune.sim.calibrate.fit import PLAUSIBLE_MARGIN, Scored, Setup, evaluate, search_scale
from migtune.units import format_bytes, format_rate
from migtune.workload import Workload

DEFAULT_LAST = 10  # runs calibrated together unless --last says otherwise (cost grows as N²)
DRIFT_SLACK = 0.10  # ranges must miss each other by more than this to count as drift
MAX_MEMBERS = 9  # as many as one run's plausible set holds


@dataclass
class RunFit:
    """One run, calibrated alone, with what it takes to score other workloads on it."""

    run_id: int
    at: str
    calibration: Calibration
    setup: Setup
    best: Scored
    cache: dict[str, Scored] = field(default_factory=dict)

    def score(self, w: Workload) -> Scored:
        assert self.calibration.evidence is not None
        return evaluate(self.setup, w, self.calibration.evidence, self.cache)

    def reproduced_by(self, w: Workload) -> bool:
        s = self.score(w)
        return s.class_ok == self.best.class_ok and s.score <= self.best.score + PLAUSIBLE_MARGIN


@dataclass
class Drift:
    quantity: str  # working_set_bytes | write_rate_bytes_per_s | dirty_rate_bytes_per_s | activity
    earlier: dict[str, Any]  # {"run": id, "at": iso, "range": [lo, hi]}
    later: dict[str, Any]
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class VmCalibration:
    vm: str
    fits: list[RunFit]
    calibration: Calibration  # the combined one: the latest run's conditions, the joint set
    reproduces_all: bool
    drift: list[Drift]
    notes: list[str]
    skipped: list[str]  # runs left out, one line each
    per_run: dict[int, dict[str, Any]]  # how the joint best fit does on each run
    id: int | None = None
    created_at: str = ""

    @property
    def drifted(self) -> bool:
        return bool(self.drift)

    def to_dict(self) -> dict[str, Any]:
        cal = self.calibration
        return {
            "id": self.id,
            "vm": self.vm,
            "created_at": self.created_at,
            "run_ids": [f.run_id for f in self.fits],
            "workload": cal.workload.spec(),
            "plausible": [w.spec() for w in cal.plausible],
            "reproduces_all": self.reproduces_all,
            "drifted": self.drifted,
            "drift": [d.to_dict() for d in self.drift],
            "low_confidence": cal.low_confidence,
            "runs": [
                {
                    "id": f.run_id,
                    "at": f.at,
                    "status": f.calibration.observed.status,
                    "workload": f.calibration.workload.spec(),
                    "plausible": [w.spec() for w in f.calibration.plausible],
                    "inferred": f.calibration.inferred(),
                    "low_confidence": f.calibration.low_confidence,
                    **self.per_run[f.run_id],
                }
                for f in self.fits
            ],
            "errors": {str(k): v["errors"] for k, v in self.per_run.items()},
            "skipped": self.skipped,
            "notes": self.notes,
            "calibration": cal.to_dict(),
        }


def _fit(run_id: int, at: str, run: Any) -> RunFit:
    cal = calibrate(run)
    # the conditions calibrate() replayed its candidates under, rebuilt from its result
    setup = Setup(
        ram=cal.ram_bytes,
        settings=cal.settings,
        qemu_version=cal.qemu_version,
        link=cal.link_rate,
        schedule=list(cal.schedule),
        postcopy_after=cal.postcopy_after,
        limit=cal.time_limit,
        machine=cal.machine,
        scale=search_scale(cal.ram_bytes),
        sample_interval=getattr(cal, "sample_interval", None),
    )
    fit = RunFit(run_id, at, cal, setup, best=None)  # type: ignore[arg-type]
    fit.best = fit.score(cal.workload)
    return fit


def _load_fits(vm: str, db: Any, last: int | None) -> tuple[list[RunFit], list[str]]:
    from migtune.sources import parse_lines

    store = open_store(db, create=False)
    if store is None:
        raise InputError(f"no run of VM {vm!r} in the history (there is no history yet)")
    skipped: list[str] = []
    fits: list[RunFit] = []
    try:
        rows = store.runs(vm=vm)
        if not rows:
            raise InputError(f"no run of VM {vm!r} in the history ({store.path})")
        usable = [r for r in rows if r["raw_stored"]]
        skipped += [
            f"run #{r['id']}: its text was too big to keep" for r in rows if r not in usable
        ]
        # runs of another RAM size are another guest for the simulator: left out before
        # they cost a calibration each (the stored size; unknown sizes are checked after)
        ram = usable[-1]["ram_bytes"] if usable else None
        for r in [r for r in usable if ram and r["ram_bytes"] and r["ram_bytes"] != ram]:
            usable.remove(r)
            skipped.append(
                f"run #{r['id']}: {format_bytes(r['ram_bytes'])} of RAM, not the "
                f"{format_bytes(ram)} of the latest run"
            )
        chosen = usable[-(last or DEFAULT_LAST) :]
        if len(usable) > len(chosen):
            skipped.append(f"{len(usable) - len(chosen)} older runs not used (--last)")
        texts = [(r["id"], r["at"], store.raw_text(r["id"]) or b"") for r in chosen]
    finally:
        store.close()  # calibrating can take minutes: the file is not held meanwhile
    for run_id, at, raw in texts:
        try:
            run = parse_lines(raw.decode("utf-8", "replace").splitlines(), name=f"run #{run_id}")
            fits.append(_fit(run_id, at, run))
        except MigtuneError as exc:
            skipped.append(f"run #{run_id}: {exc}")
    if not fits:
        why = "; ".join(skipped) or "none usable"
        raise InputError(f"no run of VM {vm!r} can be calibrated from ({why})")
    ram = fits[-1].calibration.ram_bytes
    other = [f for f in fits if f.calibration.ram_bytes != ram]
    for f in other:
        skipped.append(
            f"run #{f.run_id}: {format_bytes(f.calibration.ram_bytes)} of RAM, not the "
            f"{format_bytes(ram)} of the latest run"
        )
    return [f for f in fits if f not in other], skipped


def _pool(fits: list[RunFit]) -> list[Workload]:
    """Every run's plausible workloads (the latest run's first), and per pattern the
    median working set and write rate of the runs' best fits (a middle no single run
    proposed, which may fit all of them)."""
    seen: dict[str, Workload] = {}
    for f in reversed(fits):
        for w in f.calibration.plausible:
            seen.setdefault(w.spec(), w)
    if len(fits) > 1:
        bests = [f.calibration.workload for f in reversed(fits) if not f.calibration.workload.idle]
        for pattern in dict.fromkeys(b.pattern for b in bests):
            same = [b for b in bests if b.pattern == pattern]
            rates = [b.rate for b in same if b.rate is not None]
            if len(same) < 2 or len(rates) < len(same):
                continue
            page = 4096
            ws = int(statistics.median(b.ws for b in same)) // page * page
            mid = dataclasses.replace(same[0], ws=ws, rate=float(statistics.median(rates)))
            seen.setdefault(mid.spec(), mid)
    return list(seen.values())


def _span(values: list[float]) -> list[float] | None:
    return [min(values), max(values)] if values else None


def _ranges(fit: RunFit) -> dict[str, list[float] | None]:
    cal = fit.calibration
    active = [w for w in cal.plausible if not w.idle]
    ev = cal.evidence
    rates = sorted(r for _, r, thr in (ev.dirty_rates if ev else []) if r > 0 and thr == 0)
    observed = None
    if len(rates) >= 3:
        lo = rates[int(0.1 * (len(rates) - 1))]
        hi = rates[int(round(0.9 * (len(rates) - 1)))]
        observed = [float(lo), float(hi)]
    return {
        "working_set_bytes": _span([float(w.ws) for w in active]),
        "write_rate_bytes_per_s": _span([float(w.rate) for w in active if w.rate is not None]),
        "dirty_rate_bytes_per_s": observed,
    }


_FMT = {
    "working_set_bytes": ("fitted working set", "fits", format_bytes),
    "write_rate_bytes_per_s": ("fitted write rate", "fits", format_rate),
    "dirty_rate_bytes_per_s": ("dirty rate QEMU measured", "shows", format_rate),
}


def _show(r: list[float], fmt: Any) -> str:
    return fmt(r[0]) if r[1] <= r[0] * 1.02 else f"{fmt(r[0])}-{fmt(r[1])}"


def _side(f: RunFit, rng: list[float] | None) -> dict[str, Any]:
    return {"run": f.run_id, "at": f.at, "range": rng}


def drift_of(fits: list[RunFit], together: bool) -> list[Drift]:
    """Where the runs disagree.  What QEMU measured (the dirty rate) is compared always;
    what was fitted (working set, write rate, idle or not) only when no single workload
    reproduces every run (``together``): otherwise the fits differ only in what the logs
    cannot tell."""
    out: list[Drift] = []
    if not together:
        out += _unexplained_pair(fits)
        idle = [f for f in fits if all(w.idle for w in f.calibration.plausible)]
        if idle and len(idle) < len(fits):
            busy = next(f for f in fits if f not in idle)
            a, b = sorted((idle[0], busy), key=lambda f: (f.at, f.run_id))
            out.append(
                Drift(
                    "activity",
                    _side(a, None),
                    _side(b, None),
                    f"run #{idle[0].run_id} fits an idle guest, run #{busy.run_id} a guest "
                    "that writes memory",
                )
            )
    ranges = {f.run_id: _ranges(f) for f in fits}
    for q, (name, verb, fmt) in _FMT.items():
        if together and q != "dirty_rate_bytes_per_s":
            continue
        have = [(f, ranges[f.run_id][q]) for f in fits if ranges[f.run_id][q]]
        if len(have) < 2:
            continue
        low = min(have, key=lambda x: x[1][1])  # the lowest upper bound
        high = max(have, key=lambda x: x[1][0])  # the highest lower bound
        if high[1][0] <= low[1][1] * (1 + DRIFT_SLACK):
            continue
        a, b = sorted((low, high), key=lambda x: (x[0].at, x[0].run_id))
        way = "grew" if a is low else "shrank"
        out.append(
            Drift(
                q,
                _side(*a),
                _side(*b),
                f"{name} {way}: run #{a[0].run_id} ({a[0].at}) {verb} {_show(a[1], fmt)}, run "
                f"#{b[0].run_id} ({b[0].at}) {_show(b[1], fmt)}, beyond either run's own spread",
            )
        )
    return out


def _unexplained_pair(fits: list[RunFit]) -> list[Drift]:
    """Two runs none of whose own plausible workloads reproduces both: runs next to each
    other in time first, then the first and the last."""
    n = len(fits)
    pairs = [(i, i + 1) for i in range(n - 1)] + ([(0, n - 1)] if n > 2 else [])
    for i, j in pairs:
        a, b = fits[i], fits[j]
        candidates = [*a.calibration.plausible, *b.calibration.plausible]
        if not any(a.reproduced_by(w) and b.reproduced_by(w) for w in candidates):
            return [
                Drift(
                    "outcome",
                    _side(a, None),
                    _side(b, None),
                    f"no workload reproduces both run #{a.run_id} ({a.at}, "
                    f"{a.calibration.observed.status}) and run #{b.run_id} ({b.at}, "
                    f"{b.calibration.observed.status}): the guest behaved differently",
                )
            ]
    return []


def combine(vm: str, fits: list[RunFit]) -> tuple[Calibration, bool, dict[int, dict], list[str]]:
    """The joint calibration: (calibration, every member reproduces every run, how its
    best fit does on each run, notes)."""
    latest = fits[-1]
    pool = _pool(fits)
    # latest run first: a candidate that fails it is out before the others are replayed
    joint = [w for w in pool if all(f.reproduced_by(w) for f in reversed(fits))]
    joint.sort(key=lambda w: sum(max(0.0, f.score(w).score - f.best.score) for f in fits))
    notes: list[str] = []
    reproduces_all = bool(joint)
    if joint:
        members = joint[:MAX_MEMBERS]
        if len(fits) > 1:
            notes.append(
                f"calibrated from {len(fits)} runs together: {len(joint)} of {len(pool)} "
                "workloads tried reproduce every run"
            )
    else:
        # merge: each run's own best fits, the latest run's first, so every run is
        # reproduced by some member and predictions span what was seen
        members = []
        for f in reversed(fits):
            own = sorted(
                (w for w in f.calibration.plausible if f.reproduced_by(w)),
                key=lambda w: f.score(w).score,
            ) or [f.calibration.workload]
            for w in own[: max(1, MAX_MEMBERS // len(fits))]:
                if w not in members:
                    members.append(w)
        members = members[:MAX_MEMBERS]
        notes.append(
            f"no single workload reproduces all {len(fits)} runs: the set merges each run's "
            "best fits, so predictions span the workloads seen"
        )
    best = latest.score(members[0])
    replay = best.sim
    if latest.setup.scale > 1:
        from migtune.sim.calibrate.predict import _scaled_outcome

        replay = dataclasses.replace(
            replay, outcome=_scaled_outcome(replay.outcome, latest.setup.scale)
        )
    base = latest.calibration
    cal = dataclasses.replace(
        base,
        workload=members[0],
        plausible=members,
        replay=replay,
        errors=compare(replay.outcome, base.observed),
        replay_class_ok=best.class_ok,
        notes=[*base.notes, *notes],
    )
    per_run = {}
    for f in fits:
        s = f.score(members[0])
        per_run[f.run_id] = {
            "reproduced": f.reproduced_by(members[0]),
            "score": round(s.score, 4),
            "own_best_score": round(f.best.score, 4),
            "errors": compare(_outcome_at_scale(s, f.setup.scale), f.calibration.observed),
        }
    return cal, reproduces_all, per_run, notes


def _outcome_at_scale(s: Scored, k: int):
    if k == 1:
        return s.sim.outcome
    from migtune.sim.calibrate.predict import _scaled_outcome

    return _scaled_outcome(s.sim.outcome, k)


def calibrate_vm(
    vm: str, *, db: Any = None, last: int | None = None, store: bool = True
) -> VmCalibration:
    """Calibrate from the ``last`` runs of ``vm`` in the history together (default the
    10 most recent), say whether its workload drifted, and store the calibration."""
    if last is not None and last < 1:
        raise InputError("--last: must be at least 1")
    fits, skipped = _load_fits(vm, db, last)
    fits.sort(key=lambda f: (f.at, f.run_id))
    cal, reproduces_all, per_run, notes = combine(vm, fits)
    drift = drift_of(fits, reproduces_all)
    if not reproduces_all:
        notes.append("runs that one workload cannot explain together: see drift")
    result = VmCalibration(
        vm, fits, cal, reproduces_all, drift, notes, skipped, per_run, created_at=now_iso()
    )
    if store:
        hist = open_store(db)
        try:
            result.id = hist.add_calibration(_row(result))
        finally:
            hist.close()
    return result


def _row(r: VmCalibration) -> dict[str, Any]:
    d = r.to_dict()
    return {
        "vm": r.vm,
        "created_at": r.created_at,
        "run_ids": json.dumps(d["run_ids"]),
        "workload": d["workload"],
        "plausible": json.dumps(d["plausible"]),
        "reproduces_all": int(r.reproduces_all),
        "drifted": int(r.drifted),
        "low_confidence": int(r.calibration.low_confidence),
        "errors": json.dumps(d["errors"], default=str),
        "result": json.dumps(d, default=str),
        "migtune_version": __version__,
    }


def calibration_for_vm(
    name: str, db: Any = None, last: int | None = None, *, store: bool = True
) -> Calibration:
    """The calibration of a VM from its runs in the history, ready for ``what_if`` (the
    latest run's RAM, settings and link; the joint plausible set).  For ``tune --vm``,
    ``preflight --vm`` and ``history:NAME`` in fleet plans."""
    return calibrate_vm(name, db=db, last=last, store=store).calibration


def workload_for_vm(name: str, db: Any = None, last: int | None = None) -> Workload:
    """The best joint fit of a VM's workload (``calibration_for_vm(...).workload``)."""
    return calibration_for_vm(name, db=db, last=last).workload
