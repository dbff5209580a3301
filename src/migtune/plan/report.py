"""The plan as JSON (a contract, see the README) and as text with units."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from migtune.plan import platforms
from migtune.plan.strategies import STATS, Evaluation
from migtune.settings import describe
from migtune.units import format_bits, format_bytes, format_duration, format_rate

if TYPE_CHECKING:
    from migtune.plan.planner import EvacuationPlan, PlannedVm


def _range(values: list[float | None]) -> dict[str, float | None]:
    vals = sorted(v for v in values if v is not None and math.isfinite(v))
    if not vals:
        return {"min": None, "median": None, "max": None}
    return {"min": vals[0], "median": vals[len(vals) // 2], "max": vals[-1]}


def _per_stat(ev: Evaluation, name: str, attr: str, scale: float = 1.0) -> dict:
    vals = []
    for s in STATS:
        r = ev.timelines[s].runs.get(name)
        v = None if r is None else getattr(r, attr)
        vals.append(None if v is None else v * scale)
    return _range(vals)


def _status(plan: EvacuationPlan, name: str) -> str:
    b = plan.best
    if name in b.excluded:
        return "cannot-converge"
    if name in b.pessimistic.failed:
        return "fails"
    if name in b.over_downtime:
        return "over-downtime"
    return "planned"


def _needs(v: PlannedVm) -> dict[str, float | None]:
    c = v.curves
    return {
        "rate_bytes_per_s": c.needs_rate if c else None,
        "downtime_limit_s": c.needs_downtime if c else None,
    }


def _vm_dict(plan: EvacuationPlan, v: PlannedVm, position: int | None) -> dict[str, Any]:
    b = plan.best
    name = v.spec.name
    cand = b.chosen.get(name)
    run = b.pessimistic.runs.get(name)
    s = v.settings[cand] if cand else None
    return {
        "name": name,
        "line": v.spec.line,
        "ram_bytes": v.spec.ram_bytes,
        "workload": v.spec.workload,
        "plausible_workloads": list(v.workloads),
        "platform": v.platform,
        "status": _status(plan, name),
        "position": position,
        "wave": run.wave if run else None,
        "slot": run.slot + 1 if run else None,
        "settings_candidate": cand,
        "settings": platforms.settings_dict(s) if s else None,
        "start_s": _per_stat(b, name, "start"),
        "end_s": _per_stat(b, name, "end"),
        "downtime_ms": _per_stat(b, name, "downtime", 1000.0),
        "downtime_limit_s": v.downtime_limit,
        "max_time_s": v.max_time,
        "flags": list(v.flags),
        "needs": _needs(v),
        "commands": _commands(v, name, cand),
    }


def _commands(v: PlannedVm, name: str, cand: str | None) -> list[str]:
    if cand is None:
        return []
    if cand == "tune" and v.curves is not None and v.curves.tuned_commands:
        # tune's own commands, with this VM's name where it had a placeholder
        return [c.replace("VMID", name).replace("DOMAIN", name) for c in v.curves.tuned_commands]
    return platforms.commands(v.platform, name, v.settings[cand])


def _eval_dict(ev: Evaluation, label: str) -> dict[str, Any]:
    worst = [ev.timelines[s].worst_downtime for s in STATS]
    return {
        "name": label,
        "order": ev.strategy.order,
        "parallel": ev.strategy.parallel,
        "admission": ev.strategy.admission,
        "settings": "tuned per VM" if ev.strategy.tuned else "platform defaults",
        "drain_time_s": _range([ev.timelines[s].drain_time for s in STATS]),
        "last_completion_s": _range([ev.timelines[s].last_completion for s in STATS]),
        "failed": len(ev.failed),
        "failed_vms": ev.failed,
        "over_downtime": ev.over_downtime,
        "worst_downtime_ms": _range([None if w is None else w * 1000 for w in worst]),
        "deadline_missed": ev.deadline_missed,
    }


def waves(plan: EvacuationPlan) -> list[dict[str, Any]]:
    """VMs grouped by wave: wave n is the n-th migration each slot runs."""
    b = plan.best
    out: dict[int, list[str]] = {}
    for name, r in sorted(b.pessimistic.runs.items(), key=lambda x: (x[1].start, x[0])):
        out.setdefault(r.wave, []).append(name)
    rows = []
    for w in sorted(out):
        names = out[w]
        starts = [_per_stat(b, n, "start") for n in names]
        ends = [_per_stat(b, n, "end") for n in names]
        rows.append({
            "wave": w,
            "vms": names,
            "start_s": {k: min(s[k] for s in starts) for k in ("min", "median", "max")},
            "end_s": {k: max(e[k] for e in ends) for k in ("min", "median", "max")},
        })  # fmt: skip
    return rows


def plan_dict(plan: EvacuationPlan) -> dict[str, Any]:
    b = plan.best
    runs = b.pessimistic.runs
    order = sorted(runs, key=lambda n: (runs[n].start, runs[n].slot))
    position = {n: i + 1 for i, n in enumerate(order)}
    return {
        "ok": plan.ok,
        "link_rate": plan.link_rate,
        "max_parallel": plan.max_parallel,
        "platform": plan.platform,
        "stream_rate": plan.stream_rate,
        "deadline_s": plan.deadline,
        "max_downtime_s": plan.max_downtime,
        "strategy": {
            "name": b.strategy.name,
            "order": b.strategy.order,
            "parallel": b.strategy.parallel,
            "admission": b.strategy.admission,
            "tuned": b.strategy.tuned,
        },
        "drain_time_s": _range([b.timelines[s].drain_time for s in STATS]),
        "meets_deadline": None if plan.deadline is None else not b.deadline_missed,
        "failed": b.failed,
        "over_downtime": b.over_downtime,
        "cannot_converge": b.excluded,
        "waves": waves(plan),
        "vms": [_vm_dict(plan, v, position.get(v.spec.name)) for v in plan.vms],
        "plan": _eval_dict(b, "plan"),
        "baselines": [_eval_dict(e, e.strategy.name) for e in plan.baselines],
        "simulations": plan.simulations,
        "strategies_tried": plan.tried,
        "execution": {"runner": plan.runner, "workers": plan.workers},
    }


# ---- text --------------------------------------------------------------------------


def vm_count(n: int) -> str:
    return f"{n} VM" if n == 1 else f"{n} VMs"


def format_span(r: dict[str, float | None], fmt) -> str:
    lo, mid, hi = r["min"], r["median"], r["max"]
    if mid is None:
        return "-"
    if hi is None or lo is None or hi - lo <= max(0.02 * abs(hi), 1e-9):
        return fmt(mid)
    return f"{fmt(mid)} ({fmt(lo)}-{fmt(hi)})"


def _ms(v: float) -> str:
    return format_duration(v / 1000)


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return ["  " + fmt.format(*header).rstrip()] + ["  " + fmt.format(*r).rstrip() for r in rows]


def render_text(plan: EvacuationPlan) -> str:
    d = plan_dict(plan)
    b = plan.best
    out = [
        f"Evacuation plan: {vm_count(len(plan.vms))} over {format_bits(plan.link_rate)} "
        f"({format_rate(plan.link_rate)}), platform {plan.platform}, up to "
        f"{plan.max_parallel} at once",
        f"  strategy: {b.strategy.name}; settings "
        + ("tuned per VM" if b.strategy.tuned else "the platform's defaults"),
        f"  drain time {format_span(d['drain_time_s'], format_duration)}"
        + (
            ""
            if plan.deadline is None
            else f"; deadline {format_duration(plan.deadline)}: "
            + ("met" if not b.deadline_missed else "MISSED")
        ),  # fmt: skip
        f"  ranges: median (fastest-slowest plausible workloads); {d['simulations']} "
        f"simulations, {d['strategies_tried']} strategies ({d['execution']['runner']})",
        "",
        "Waves (wave n = the n-th migration of each slot)",
    ]
    out += _table(
        [[str(w["wave"]), str(len(w["vms"])), format_duration(w["start_s"]["median"]),
          format_span(w["end_s"], format_duration)] for w in d["waves"]],
        ["wave", "VMs", "first start", "last end"],
    )  # fmt: skip
    out += ["", "VMs (in start order)"]
    rows = []
    for v in sorted(d["vms"], key=lambda v: (v["position"] or 10**9, v["name"])):
        pv = plan.vm(v["name"])
        cand = v["settings_candidate"]
        rows.append([
            str(v["position"] or "-"), v["name"], format_bytes(v["ram_bytes"]),
            str(v["wave"] or "-"), str(v["slot"] or "-"),
            describe(pv.settings[cand]) if cand else "-",
            format_span(v["start_s"], format_duration), format_span(v["end_s"], format_duration),
            format_span(v["downtime_ms"], _ms), v["status"],
        ])  # fmt: skip
    out += _table(rows, ["#", "VM", "RAM", "wave", "slot", "settings", "start", "end",
                         "downtime", "status"])  # fmt: skip
    flagged = [v for v in d["vms"] if v["status"] != "planned" or v["flags"]]
    if flagged:
        out += ["", "Flagged"]
        for v in flagged:
            out.append(f"  {v['name']}: {flag_reason(v)}")
    out += ["", f"Compared on the same fleet and link ({plan.max_parallel} parallel jobs, "
            "the platform's default settings for the baselines)"]  # fmt: skip
    rows = []
    for e in [d["plan"], *d["baselines"]]:
        rows.append([
            e["name"], format_span(e["drain_time_s"], format_duration),
            format_span(e["last_completion_s"], format_duration), str(e["failed"]),
            str(len(e["over_downtime"])), format_span(e["worst_downtime_ms"], _ms),
        ])  # fmt: skip
    out += _table(rows, ["strategy", "drain time", "last success", "failed",
                         "over downtime limit", "worst downtime"])  # fmt: skip
    out += ["", "Commands, in start order (TARGET: the node to evacuate to)"]
    for v in sorted(d["vms"], key=lambda v: (v["position"] or 10**9, v["name"])):
        if v["commands"]:
            out.append(f"  # {v['name']} ({v['platform']})")
        for c in v["commands"]:
            out.append(f"  {c}")
    return "\n".join(out) + "\n"


def flag_reason(v: dict[str, Any]) -> str:
    parts = list(v["flags"])
    if v["status"] == "cannot-converge":
        parts.append("does not converge under any allowed setting, even alone on the link")
    elif v["status"] == "fails":
        parts.append(f"still migrating after its max-time {format_duration(v['max_time_s'])}")
    elif v["status"] == "over-downtime":
        parts.append(
            f"downtime {_ms(v['downtime_ms']['max'])} above its limit "
            f"{format_duration(v['downtime_limit_s'])}"
        )
    need = v["needs"]
    wants = []
    if need["rate_bytes_per_s"]:
        wants.append(f"a stream of its own of {format_bits(need['rate_bytes_per_s'])}")
    if need["downtime_limit_s"]:
        wants.append(f"a downtime limit of {format_duration(need['downtime_limit_s'])}")
    if v["status"] == "cannot-converge":
        parts.append(
            "would need " + " or ".join(wants)
            if wants
            else "neither 16 times the link nor the longest downtime QEMU allows would do"
        )
    return "; ".join(parts)
