"""preflight without QEMU: the measurement plan, the workload inference, the verdict.

Real lab measurements (``tests/fixtures/preflight/lab-results.jsonl``, written by
``benchmarks/bench_preflight.py``) are replayed through the same analysis: the
verdicts and the predicted times must stay as good as they were in the lab.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys

import numpy as np
import pytest

from conftest import FIXTURES, REPO
from migtune.analysis.preflight import predict_from_measurement
from migtune.analysis.preflight.infer import dirtied, infer
from migtune.analysis.preflight.recommend import Limits
from migtune.cli.main import main
from migtune.cli.preflight import parse_allow
from migtune.errors import InputError
from migtune.model import Settings
from migtune.qemu.dirtyrate import DirtyMeasurement, DirtyPeriod, period_lengths
from migtune.units import MiB

RESULTS = FIXTURES / "preflight" / "lab-results.jsonl"
RAM = 512 * MiB


def synthetic(
    pattern: str, ws: float, rate: float, zero_share: float = 0.6, budget: float = 10.0
) -> DirtyMeasurement:
    """What QEMU's dirty-bitmap mode would report for a workload: whole MiB/s, rounded down."""
    periods = []
    for t in period_lengths(budget):
        d = float(dirtied(pattern, np.array(ws), np.array(rate), t))
        periods.append(DirtyPeriod(t, "page-sampling", int(d / t / MiB), 16384))
    return DirtyMeasurement("page-sampling", periods, RAM, zero_share=zero_share, zero_samples=1024)


# -- the measurement plan --------------------------------------------------------------


@pytest.mark.parametrize("budget", [1.0, 3.0, 10.0, 20.0, 60.0])
def test_periods_fit_the_budget_and_climb_a_ladder(budget):
    lengths = period_lengths(budget)
    assert sum(lengths) <= budget
    assert lengths[0] == 0.1
    assert max(lengths) <= max(0.1, budget / 2)
    # something is measured twice, so the spread tells how steady the guest is
    assert len(lengths) > len(set(lengths))


def test_periods_before_qemu_8_2_are_whole_seconds():
    lengths = period_lengths(10.0, ms_units=False)
    assert all(x == int(x) and x >= 1 for x in lengths)


def test_a_budget_must_be_positive():
    with pytest.raises(InputError):
        period_lengths(0)


def test_bounds_cover_rounding_and_sampling_noise():
    exact = DirtyPeriod(1.0, "dirty-bitmap", 16).bounds(RAM)
    assert exact == (16 * MiB, 17 * MiB)  # QEMU rounds down to whole MiB/s
    sampled = DirtyPeriod(1.0, "page-sampling", 16, 16384).bounds(RAM)
    assert sampled[0] < exact[0] and sampled[1] > exact[1]


def test_steadiness_sees_a_guest_that_changes_its_rate():
    steady = DirtyMeasurement(
        "dirty-bitmap", [DirtyPeriod(1.0, "dirty-bitmap", r) for r in (30, 30, 31)], RAM
    )
    jumpy = DirtyMeasurement(
        "dirty-bitmap", [DirtyPeriod(1.0, "dirty-bitmap", r) for r in (10, 30, 50)], RAM
    )
    assert steady.steadiness() == 0.0
    assert jumpy.steadiness() > 0.5


# -- inference -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern,ws_mib,rate_mib",
    [("random", 128, 16), ("random", 64, 40), ("seq", 96, 48), ("hotcold", 192, 24)],
)
def test_the_plausible_set_holds_the_true_rate(pattern, ws_mib, rate_mib):
    inf = infer(synthetic(pattern, ws_mib * MiB, rate_mib * MiB))
    r = inf.ranges()
    lo, hi = r["write_rate_bytes_per_s"]
    assert lo * 0.9 <= rate_mib * MiB <= hi * 1.1
    ws_lo, ws_hi = r["working_set_bytes"]
    assert ws_lo <= ws_mib * MiB * 1.1 and ws_hi >= ws_mib * MiB * 0.9
    # the variants the measurement cannot tell apart are in the set
    assert {w.bytes_per_write for w in inf.workloads} == {16, 256, 4096}


def test_a_saturating_random_guest_pins_its_working_set():
    # 40 MiB/s over 64 MiB saturates within the 5 s period: the working set is known
    inf = infer(synthetic("random", 64 * MiB, 40 * MiB))
    ws_lo, ws_hi = inf.ranges()["working_set_bytes"]
    assert 48 * MiB <= ws_lo and ws_hi <= 90 * MiB


def test_an_idle_guest_is_idle():
    m = DirtyMeasurement(
        "page-sampling", [DirtyPeriod(t, "page-sampling", 0, 16384) for t in (0.1, 1, 5)], RAM
    )
    inf = infer(m)
    assert all(w.idle for w in inf.workloads)
    assert "idle" in inf.describe()


def test_measured_bytes_per_write_replace_the_guesses():
    m = synthetic("random", 128 * MiB, 16 * MiB)
    assert {w.bytes_per_write for w in infer(m).workloads} == {16, 256, 4096}
    m.bytes_changed = [8] * 20 + [16] * 10 + [4] * 10
    assert m.bytes_per_write() == (8, 8, 16)
    inf = infer(m)
    assert {w.bytes_per_write for w in inf.workloads} == {8, 16}
    assert inf.ranges()["bytes_per_write"] == [8, 16]
    m.bytes_changed = [8] * 5  # too few pages seen changing to say
    assert m.bytes_per_write() is None


def test_unknown_zero_share_keeps_both_ends():
    m = synthetic("random", 128 * MiB, 16 * MiB, zero_share=None)
    zeros = {w.zero for w in infer(m).workloads}
    assert zeros == {0.0, 0.9}


def test_measured_zero_share_sets_the_non_zero_memory():
    inf = infer(synthetic("random", 128 * MiB, 16 * MiB, zero_share=0.6))
    lo, hi = inf.nonzero_bytes
    assert lo < 0.4 * RAM < hi
    for w in inf.workloads:
        nonzero = w.ws + (1 - w.zero) * (RAM - w.ws)
        assert lo * 0.95 <= nonzero <= hi * 1.05


# -- prediction and verdict ------------------------------------------------------------


def test_below_the_cap_converges_and_needs_no_change():
    m = synthetic("random", 128 * MiB, 16 * MiB)
    _, _, _, check, rec, _ = predict_from_measurement(
        m, Settings(max_bandwidth=32 * MiB), limits=Limits(2.0, 90)
    )
    assert check["converges"] and check["meets_limits"]
    assert check["total_time_s"]["min"] <= check["total_time_s"]["median"]
    # tune still offers the fastest settings it found, which meet the limits too
    assert rec is not None and rec.check["meets_limits"]


def test_above_the_cap_does_not_converge_and_tune_finds_settings_that_do():
    m = synthetic("random", 128 * MiB, 64 * MiB)
    _, _, _, check, rec, _ = predict_from_measurement(
        m, Settings(max_bandwidth=32 * MiB), limits=Limits(2.0, 120), allow=("auto-converge",)
    )
    assert not check["converges"] and not check["meets_limits"]
    assert "does not converge" in check["why_not"]
    assert rec is not None and rec.source == "tune"
    assert "auto-converge=on" in rec.changes  # the only feature allowed that can do it
    assert rec.check["meets_limits"] and rec.check["certain"]
    assert any("auto-converge" in c for c in rec.commands["qmp"])
    assert "--auto-converge" in rec.flags


def test_nothing_allowed_means_no_recommendation_and_the_closest():
    m = synthetic("random", 128 * MiB, 64 * MiB)
    _, _, _, check, rec, _ = predict_from_measurement(
        m, Settings(max_bandwidth=32 * MiB), limits=Limits(2.0, 60), allow=()
    )
    assert not check["meets_limits"] and rec is None
    assert check["closest"]["label"]  # what tune came nearest with


def test_with_a_fast_link_the_cap_is_lifted():
    m = synthetic("random", 128 * MiB, 64 * MiB)
    _, _, _, _, rec, _ = predict_from_measurement(
        m, Settings(max_bandwidth=32 * MiB), link_rate=1e9, limits=Limits(2.0, 60), allow=()
    )
    assert rec is not None and "max-bandwidth=unlimited" in rec.changes
    assert any(f == "--max-bandwidth 0" for f in rec.flags)


# -- the lab, replayed -------------------------------------------------------------------


def _lab_rows() -> list[dict]:
    return [json.loads(x) for x in RESULTS.read_text().splitlines() if x.strip()]


def test_lab_measurements_replayed_keep_verdicts_and_times():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_preflight", REPO / "benchmarks" / "bench_preflight.py"
    )
    bench = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_preflight", bench)  # its dataclasses look themselves up
    spec.loader.exec_module(bench)
    rows = [bench.replay(r) for r in _lab_rows()]
    assert len(rows) >= 8
    assert {r["real_converged"] for r in rows} == {True, False}
    wrong = [r["name"] for r in rows if r["predicted_converges"] != r["real_converged"]]
    assert wrong == []
    errors = [
        abs(r["predicted_time_s"]["median"] - r["real_time_s"]) / r["real_time_s"]
        for r in rows
        if r["real_converged"]
    ]
    assert statistics.median(errors) <= 0.20


# -- the command line ------------------------------------------------------------------


def test_the_cli_knows_tunes_names():
    from migtune.analysis import tune
    from migtune.cli import preflight as cli

    assert set(cli.ALLOWED) == set(tune.FEATURES)
    assert set(cli.PLATFORMS) == set(tune.PLATFORMS)
    assert set(cli.DEFAULT_ALLOW.split("+")) == set(tune.DEFAULT_ALLOW)


def test_allow_list():
    assert parse_allow("auto-converge+postcopy") == ("auto-converge", "postcopy")
    assert parse_allow("none") == ()
    with pytest.raises(InputError):
        parse_allow("magic")


def test_a_missing_socket_is_one_line_and_exit_5(tmp_path, capsys):
    assert main(["preflight", "--qmp", str(tmp_path / "gone.qmp")]) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("migtune: error: QMP socket")


def test_bad_limits_are_exit_2(tmp_path, capsys):
    assert main(["preflight", "--qmp", str(tmp_path / "x"), "--max-time", "0s"]) == 2
    assert main(["preflight", "--qmp", str(tmp_path / "x"), "--allow", "magic"]) == 2


def test_history_widens_the_plausible_set_with_past_migrations():
    """``preflight --vm``: a guest quiet during the measurement whose past migrations
    showed a heavy writer is not a sure "go" any more."""
    cap = Settings(max_bandwidth=32 * MiB)
    hot = synthetic("random", 128 * MiB, 64 * MiB)
    _, past, *_ = predict_from_measurement(
        hot, cap, limits=Limits(2.0, 90), recommend_settings=False
    )
    quiet = synthetic("random", 128 * MiB, 16 * MiB)
    alone = predict_from_measurement(quiet, cap, limits=Limits(2.0, 90), recommend_settings=False)
    both = predict_from_measurement(
        quiet, cap, limits=Limits(2.0, 90), recommend_settings=False, history=past
    )
    assert alone[3]["meets_limits"]
    assert both[3]["members"] == alone[3]["members"] + len(past.plausible)
    assert not both[3]["meets_limits"] and not both[3]["certain"]
    assert any(n.startswith("history: ") for n in both[0].notes)
    # past runs of another RAM size do not carry over
    other = predict_from_measurement(
        dataclasses.replace(quiet, ram_bytes=2 * RAM), cap, limits=Limits(2.0, 90),
        recommend_settings=False, history=past,
    )  # fmt: skip
    assert other[3]["members"] == alone[3]["members"]
    assert "not used" in other[0].notes[-1]


def test_vm_not_in_the_history_is_refused_before_qemu_is_touched(tmp_path, capsys):
    rc = main(["preflight", "--qmp", str(tmp_path / "gone.sock"), "--vm", "nobody",
               "--db", str(tmp_path / "empty.db")])  # fmt: skip
    assert rc == 2
    assert "no run of VM 'nobody'" in capsys.readouterr().err
