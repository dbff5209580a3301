"""Benchmark: live prediction from the first part of a real migration (no QEMU needed).

For every lab recording (``tests/fixtures/lab/**/*.jsonl`` by default), the recording is cut
where the live driver would have predicted - at the end of the first pass (the first
sample after QEMU's second dirty sync) and at half of the real duration - and
:func:`migtune.analysis.live.predict` is run on the prefix exactly as ``migrate`` runs it
(calibration from a still-active run, the settings in force, the run's time limit).

Figures printed:

* converge-or-not after the first pass (goal: right for every recording), after the
  second sync and at half time: right, wrong, or uncertain (the plausible workloads
  disagree; the progress line then says "may not converge");
* ETA error at half time for the runs that converged: (predicted total - real total) /
  real time left at the cut, median of the absolute values (goal <= 15 %).

Cuts still in the first pass are left out (the live prediction starts at its end), and
so are cuts after which a policy changed the settings or cancelled the run (the
prediction is of the settings in force, which the run did not keep).

Run: ``python benchmarks/bench_live.py [FILES...] [--json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from migtune.analysis.live import first_pass_end, predict, recording_prefix
from migtune.errors import MigtuneError

DEFAULT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lab"


def postcopy_trigger(run) -> int | None:
    """The dirty-sync count a recorded run switched to post-copy at (the driver's
    default for ``fixed`` and ``proxmox``: 2), when it had post-copy on."""
    meta = run.meta
    if not run.settings.capabilities.get("postcopy-ram") or not meta.get("allow_postcopy"):
        return None
    if isinstance(meta.get("postcopy_after_passes"), int):
        return int(meta["postcopy_after_passes"])
    return 2 if str(meta.get("policy", "fixed")).split(":")[0] in ("fixed", "proxmox") else None


def sync_time(run, count: int) -> float | None:
    """Time of the first sample showing dirty-sync-count ``count``."""
    for s in run.samples:
        if s.passes is not None and s.passes >= count and s.t is not None:
            return s.t
    return None


def changed_after(run, cut: float) -> bool:
    """A policy changed the settings (or cancelled) after ``cut``: what the run did is
    not what the settings in force at ``cut`` would have done."""
    for e in run.events:
        if e.t is None or e.t <= cut:
            continue
        if e.kind in ("downtime-change", "bandwidth-change", "settings"):
            return True
        if e.kind == "cancelled" and "policy" in e.message:
            return True
    return False


def bench_one(path: Path) -> dict:
    lines = path.read_text(encoding="utf-8").splitlines()
    full = recording_prefix(lines)
    res = recording_prefix.__globals__["parse_recording"](lines).meta.get("result") or {}
    converged = res.get("status") == "completed" if res else full.status == "completed"
    total = res.get("total_time_s") or (full.last.total_time if full.last else None)
    limit = full.meta.get("time_limit")
    limit = float(limit) if isinstance(limit, int | float) else None
    out = {"run": path.stem, "converged": converged, "total_s": total, "cuts": {}}
    first = first_pass_end(full)
    cuts = {"first-pass": first, "second-sync": sync_time(full, 3)}
    if total:
        cuts["half"] = total / 2
    for name, cut in cuts.items():
        if cut is None or (total is not None and cut >= total):
            out["cuts"][name] = {"skipped": "the run ended before this point"}
            continue
        if first is None or cut < first:
            out["cuts"][name] = {"skipped": "still in the first pass: no live prediction yet"}
            continue
        if changed_after(full, cut):
            # the prediction is of the settings in force; the run went on with others
            out["cuts"][name] = {"skipped": "a policy changed the settings after this point"}
            continue
        prefix = recording_prefix(lines, cut)
        if not prefix.samples:
            out["cuts"][name] = {"skipped": "no sample yet"}
            continue
        started = time.monotonic()
        try:
            pred, _ = predict(
                prefix, time_limit=limit, postcopy_after_passes=postcopy_trigger(full)
            )
        except MigtuneError as exc:
            out["cuts"][name] = {"error": str(exc)}
            continue
        decided = pred.verdict != "uncertain"
        cell = {
            "t": pred.t,
            "verdict": pred.verdict,
            "decided": decided,
            "right": decided and (pred.verdict == "converges") == converged,
            "text": pred.short(),
            "seconds": round(time.monotonic() - started, 2),
            "total_pred": pred.total_time_s,
        }
        if converged and pred.converged_members and total:
            left = max(1e-3, total - pred.t)
            cell["eta_err"] = (pred.total_time_s["median"] - total) / left
        out["cuts"][name] = cell
    out["first_decided"] = first_decided(lines, full, converged, total, limit)
    return out


def first_decided(lines, full, converged: bool, total, limit) -> dict | None:
    """The first prediction, sync by sync from the first pass's end, that is not
    uncertain: when it came (share of the run's duration) and whether it was right."""
    seen = set()
    for s in full.samples:
        if s.passes is None or s.passes < 2 or s.passes in seen or s.t is None:
            continue
        seen.add(s.passes)
        if (total and s.t >= total) or changed_after(full, s.t) or s.status != "active":
            return None
        try:
            pred, _ = predict(
                recording_prefix(lines, s.t),
                time_limit=limit,
                postcopy_after_passes=postcopy_trigger(full),
            )
        except MigtuneError:
            continue
        if pred.verdict != "uncertain":
            right = (pred.verdict == "converges") == converged
            share = s.t / total if total else None
            return {"t": s.t, "share": share, "right": right, "verdict": pred.verdict}
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    paths = args.files or sorted(DEFAULT.rglob("*.jsonl"))
    rows = [bench_one(p) for p in paths]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        head = f"{'run':34} {'real':>12}  {'first pass: prediction':46}  {'half time: prediction':46} {'ETA err':>8}"
        print(head)
        print("-" * len(head))
        for r in rows:
            real = f"{'conv' if r['converged'] else 'not'} {r['total_s'] or 0:5.1f}s"
            cells = []
            for name in ("first-pass", "half"):
                c = r["cuts"].get(name, {})
                if "text" in c:
                    mark = "ok" if c["right"] else "WRONG" if c["decided"] else "?"
                    cells.append(f"{mark:5} @{c['t']:5.1f}s {c['text'][:34]:34}")
                else:
                    cells.append(f"{'-':5} {(c.get('skipped') or c.get('error') or '')[:40]:40}")
            err = r["cuts"].get("half", {}).get("eta_err")
            print(f"{r['run'][:34]:34} {real:>12}  {cells[0]:46}  {cells[1]:46} "
                  f"{'-' if err is None else f'{err:+.0%}':>8}")  # fmt: skip
    for name in ("first-pass", "second-sync", "half"):
        cells = [r["cuts"][name] for r in rows if "right" in r["cuts"].get(name, {})]
        right = sum(1 for c in cells if c["right"])
        wrong = sum(1 for c in cells if c["decided"] and not c["right"])
        unsure = len(cells) - right - wrong
        print(f"{name}: converge-or-not right in {right}/{len(cells)}"
              f" ({100 * right / max(1, len(cells)):.0f} %), wrong {wrong}, uncertain {unsure}"
              f"; prediction time median {statistics.median([c['seconds'] for c in cells]) if cells else 0:.2f} s")  # fmt: skip
    dec = [r["first_decided"] for r in rows if r.get("first_decided")]
    if dec:
        shares = [d["share"] for d in dec if d["share"] is not None]
        print(f"first decided prediction (sync by sync): right in {sum(d['right'] for d in dec)}"
              f"/{len(dec)}, made at a median {statistics.median(shares):.0%} of the run's "
              f"duration; {len(rows) - len(dec)} runs never decided before they ended")  # fmt: skip
        for r in rows:
            d = r.get("first_decided")
            if d and not d["right"]:
                print(f"  wrong: {r['run']} at {d['t']:.1f} s said {d['verdict']}")
    errs = [
        abs(r["cuts"]["half"]["eta_err"]) for r in rows if "eta_err" in r["cuts"].get("half", {})
    ]
    if errs:
        print(f"half: ETA error (vs real time left) median {statistics.median(errs):.0%}, "
              f"max {max(errs):.0%} over {len(errs)} converging runs")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
