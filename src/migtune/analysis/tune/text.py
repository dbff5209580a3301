"""``migtune tune`` as text: the ranked table, the recommendation, why, the commands."""

from __future__ import annotations

from migtune.analysis.tune import Candidate, TuneResult
from migtune.units import format_bytes, format_duration

TABLE_ROWS = 15


def _span(s: dict, fmt) -> str:
    if s.get("median") is None:
        return "-"
    lo, mid, hi = s["min"], s["median"], s["max"]
    if hi <= lo * 1.02 + 1e-9:
        return fmt(mid)
    return f"{fmt(mid)} ({fmt(lo)}-{fmt(hi)})"


def _ms(v: float) -> str:
    return format_duration(v / 1000)


def _pct(v: float) -> str:
    return f"{v:.0f}%"


def row(c: Candidate) -> list[str]:
    p = c.predicted()
    share = p.get("converged_share", 0.0)
    return [
        ("*" if c.meets_limits else " ") + ("" if c.confirmed else "~"),
        c.label,
        f"{share:.0%}",
        _span(p["total_time_s"], format_duration) if share else "did not finish",
        _span(p["downtime_ms"], _ms) if share else "-",
        _span(p["transferred_bytes"], format_bytes),
        _span(p["max_throttle_pct"], _pct),
    ]


def render(r: TuneResult, rows: int = TABLE_ROWS) -> str:
    head = ["", "candidate", "conv.", "total time", "downtime", "sent", "throttle"]
    body = [row(c) for c in r.candidates[:rows]]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lim = r.limits
    limits = (
        ", ".join(
            x
            for x in (
                f"downtime <= {format_duration(lim['max_downtime_s'])}"
                if lim["max_downtime_s"]
                else "",
                f"time <= {format_duration(lim['max_time_s'])}" if lim["max_time_s"] else "",
            )
            if x
        )
        or "none"
    )
    out = [
        f"Tuning for {r.platform} (limits: {limits}; {r.stats['candidates']} candidates, "
        f"{r.stats['simulations']} simulations)",
    ]
    cal = r.calibration
    plausible = cal.get("plausible") or []
    out.append(f"  workload: {len(plausible)} plausible ({cal.get('workload')})")
    out += [f"  note: {n}" for n in r.notes]
    out.append("")
    for line in [head, *body]:
        out.append("  " + "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    more = len(r.candidates) - rows
    out.append("  * meets the limits for every plausible workload; ~ screened on the best fit only"
               + (f"; {more} more with --json" if more > 0 else ""))  # fmt: skip
    out.append("  figures: median (min-max) over the plausible workloads")
    out.append("")
    best = r.recommendation or r.closest
    if r.recommendation is not None:
        out.append(f"Recommendation: {best.label}")
    elif best is not None:
        give = ", ".join(f"{k} {v}" for k, v in (r.limit_to_give or {}).items())
        out.append(f"Nothing meets the limits. Closest: {best.label}")
        out.append(f"  would need: {give or 'more time'}")
    else:
        out.append("Nothing meets the limits.")
    if best is None:
        return "\n".join(out) + "\n"
    out.append(f"  why: {r.why}")
    if best.transport.assumption:
        out.append(f"  assumption: {best.transport.assumption}")
    for platform, cmds in best.commands.items():
        out.append(f"  {platform}:")
        out += [f"    {c}" for c in cmds]
    return "\n".join(out) + "\n"
