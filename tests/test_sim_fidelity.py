"""Replay every committed lab recording in the simulator (issue 4's tolerances).

Per run: converged-or-not right, passes within ±1, downtime within 50 % or 50 ms, total
time and bytes sent within 25 %.  Over all runs: median error ≤ 10 % on total time and
on bytes sent.  ``benchmarks/bench_fidelity.py`` prints the same comparison as a table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from migtune.sim.fidelity import replay, summary

LAB = Path(__file__).resolve().parent / "fixtures" / "lab"
# calib-* recordings measure calibration (test_sim_calibrate.py), not the told-workload replay
RECORDINGS = (
    sorted(p for p in LAB.glob("*.jsonl") if not p.stem.startswith("calib-"))
    if LAB.is_dir()
    else []
)
_cache: dict[Path, object] = {}


def _replay(path: Path):
    if path not in _cache:
        _cache[path] = replay(path)
    return _cache[path]


@pytest.mark.skipif(not RECORDINGS, reason="no lab recordings in tests/fixtures/lab yet")
@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_replay_within_tolerance(path):
    r = _replay(path)
    e = r.errors()
    ok = r.within_tolerance()
    real, sim = r.real, r.sim.outcome
    context = f"real {real.to_dict()} / simulated {sim.to_dict()}"
    assert ok["converged"], f"converged-or-not wrong: {context}"
    assert ok["passes"], f"passes off by {e['passes']}: {context}"
    assert ok["downtime"], f"downtime off by {e['downtime_ms']} ms: {context}"
    assert ok["total_time"], f"total time off by {e['total_time']:+.0%}: {context}"
    assert ok["transferred"], f"bytes sent off by {e['transferred']:+.0%}: {context}"


@pytest.mark.skipif(not RECORDINGS, reason="no lab recordings in tests/fixtures/lab yet")
def test_median_errors():
    s = summary([_replay(p) for p in RECORDINGS])
    assert s["total_time_median"] <= 0.10, s
    assert s["transferred_median"] <= 0.10, s
