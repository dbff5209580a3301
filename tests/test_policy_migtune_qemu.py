"""``--policy migtune`` against real QEMU: one lab migration that cannot converge within
the allowance is cancelled early, long before the time limit, with the source running.

One boot of two small QEMUs and about 15 s of migration under TCG.
"""

from __future__ import annotations

import pytest

from migtune.lab.run import lab_run
from migtune.model import Settings
from migtune.sources.recording import parse_recording
from migtune.units import MiB
from migtune.workload import parse_workload

pytestmark = pytest.mark.qemu


def test_migtune_cancels_a_hopeless_migration_early(image, tmp_path):
    rec = tmp_path / "hopeless.jsonl"
    # 128 MiB rewritten at 64 MiB/s over a 32 MiB/s link: no pass shrinks, and a 300 ms
    # allowance (the limit already in force) leaves nothing to change
    res = lab_run(
        384 * MiB,
        parse_workload("ws=128MiB,rate=16384pages/s,pattern=random"),
        Settings(downtime_limit=0.3, max_bandwidth=32 * MiB),
        policy="migtune:max-downtime=300ms",
        time_limit=60.0,
        record=rec,
        progress=False,
        image=image,
    )
    m = res.migration
    assert m.status == "cancelled" and res.source_alive
    assert m.reason.startswith("cancelled early: the model predicts no convergence within")
    [abort] = [a for a in m.actions if a.kind == "abort"]
    # well before the 60 s limit (two hopeless predictions; each takes seconds on a
    # loaded 2-core machine, so a tighter bound measures the host, not the policy)
    assert abort.t < 45.0
    assert abort.prediction["verdict"] == "will-not-converge"
    run = parse_recording(rec.read_text().splitlines())
    preds = [e for e in run.events if e.kind == "prediction"]
    assert len(preds) >= 2 and all(p.data["t"] <= abort.t for p in preds)
    assert m.warnings == [] or all("live prediction" not in w for w in m.warnings)
