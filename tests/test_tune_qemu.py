"""``tune`` against real QEMU: observe with QEMU's defaults, tune, run the advice.

Two small scenarios (256 MiB guests, capped links): a short observation run with plain
QEMU's defaults is recorded, ``tune`` reads the recording with a 1 s downtime limit, and
the recommended settings are run in the lab: they must converge with a real downtime
within the limit.  About four lab runs, two to three minutes under TCG.  The larger
proof (six scenarios, each against an exhaustive sweep) is ``benchmarks/bench_tune.py
--lab``.
"""

from __future__ import annotations

import shutil

import pytest

from migtune.analysis.tune import tune
from migtune.errors import UnavailableError
from migtune.lab.guest import build_guest
from migtune.lab.run import choose_accel, lab_run
from migtune.model import Settings
from migtune.sources import load_run
from migtune.units import MiB
from migtune.workload import parse_workload

pytestmark = pytest.mark.qemu
RAM = 256 * MiB
LIMIT = 1.0  # s of downtime the operator accepts
TIME = 30.0  # s, every run's time limit and tune's --max-time


@pytest.fixture(scope="module")
def accel():
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    try:
        return choose_accel(build_guest())
    except UnavailableError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize(
    "workload, cap",
    [
        # dirties faster than the cap sends: QEMU's defaults do not converge
        ("ws=96MiB,rate=40MiB/s,pattern=random,bytes=16", 32 * MiB),
        # slower than the cap, whole pages rewritten: converges, slowly
        ("ws=128MiB,rate=20MiB/s,pattern=seq,bytes=4096", 32 * MiB),
    ],
)
def test_the_recommendation_converges_within_the_limit(workload, cap, accel, tmp_path):
    w = parse_workload(workload)
    observed = tmp_path / "observed.jsonl"
    lab_run(RAM, w, Settings(max_bandwidth=cap), time_limit=TIME, record=observed,
            accel=accel, progress=False)  # fmt: skip
    r = tune(load_run(str(observed)), max_downtime=LIMIT, max_time=TIME,
             allow=("xbzrle", "auto-converge"))  # fmt: skip
    assert r.recommendation is not None, r.limit_to_give
    rec = r.recommendation
    assert rec.settings.max_bandwidth == cap  # the cap stands for the link: kept
    s = rec.settings
    settings = Settings(
        downtime_limit=s.downtime_limit, max_bandwidth=s.max_bandwidth,
        xbzrle_cache_size=s.xbzrle_cache_size if s.capabilities.get("xbzrle") else None,
        capabilities={k: v for k, v in s.capabilities.items() if v},
    )  # fmt: skip
    real = lab_run(RAM, w, settings, time_limit=TIME, accel=accel, progress=False)
    assert real.outcome.converged, (rec.label, real.outcome)
    assert real.outcome.downtime_ms <= LIMIT * 1000
