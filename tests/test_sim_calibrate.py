"""Calibration from logs: evidence, the plausible set, what-ifs, the horizon, and a fast
slice of the fidelity figures on real lab recordings (``benchmarks/bench_fidelity.py``
prints them all)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from migtune.model import Settings
from migtune.outputs.platform_logs import hmp_snapshots, proxmox_task_log
from migtune.sim.calibrate import calibrate, proof, what_if
from migtune.sim.calibrate.candidates import dirtied, rate_for, rate_periods
from migtune.sim.calibrate.evidence import Evidence, extract, observed_outcome
from migtune.sim.calibrate.predict import describe_range
from migtune.sim.workloads import share_limited_rate, throttled_rate
from migtune.sources import load_run
from migtune.sources.hmp import parse as parse_hmp
from migtune.sources.proxmox import parse as parse_proxmox
from migtune.workload import parse_workload

LAB = Path(__file__).parent / "fixtures" / "lab"


def test_fit_and_held_out_sets_are_disjoint_and_recorded():
    assert not set(proof.FIT) & set(proof.HELD_OUT)
    assert len(proof.FIT) + len(proof.HELD_OUT) >= 10
    for name in proof.FIT + proof.HELD_OUT:
        assert (LAB / f"{name}.jsonl").is_file(), name
    for a, b in proof.PAIRS_HELD_OUT:
        assert a in proof.HELD_OUT and b in proof.HELD_OUT


def test_cancelled_recording_reads_its_observed_time_from_the_result_line():
    ev = extract(load_run(LAB / "calib-seq-256-dt300.jsonl"))
    assert ev.status == "cancelled"
    assert ev.duration == pytest.approx(40.003, abs=0.01)
    cal = calibrate(load_run(LAB / "calib-seq-256-dt300.jsonl"))
    assert cal.observed.total_time_s == pytest.approx(40.003, abs=0.01)


def test_dirty_model_inverts():
    for pattern in ("random", "hotcold", "seq"):
        ws, t = 256 * 2**20, 2.0
        r = rate_for(pattern, ws, 100 * 2**20, t)
        assert r is not None
        assert dirtied(pattern, ws, r, t) == pytest.approx(100 * 2**20, rel=1e-3)
    assert rate_for("random", 64 * 2**20, 80 * 2**20, 1.0) is None  # cannot hold it


def test_throttle_response():
    # a writer that needs half its vCPU is untouched up to 50 % throttle, then slows
    assert share_limited_rate(1000.0, 1e6, 40, 0.5) == 1000.0
    assert share_limited_rate(1000.0, 1e6, 75, 0.5) == pytest.approx(500.0)
    assert share_limited_rate(1000.0, 1e6, 99, 0.0) == 1000.0  # DMA: not throttled
    # the lab writer (10 ms burst) keeps its rate up to 50 %, like cpu=0.5
    assert throttled_rate(1000.0, 1e6, 50, False) == pytest.approx(1000.0)
    assert throttled_rate(1000.0, 1e6, 75, False) == pytest.approx(500.0)
    w = parse_workload("ws=64MiB,rate=10MiB/s,cpu=0.3")
    assert w.cpu == 0.3 and parse_workload(w.spec()) == w


@pytest.mark.parametrize(
    "name", ["calib-seq-256-dt300", "calib-seq-256-dt3s", "calib-random-1024-b64"]
)
def test_replay_reproduces_recorded_outcome(name):
    case = proof.replay_case(name)
    assert case.class_ok
    assert abs(case.bytes_err) <= 0.25
    if case.time_err is not None:
        assert abs(case.time_err) <= 0.25


def test_what_if_pair_downtime_limit():
    case = proof.pair_case("calib-seq-256-dt300", "calib-seq-256-dt3s")
    assert case.class_ok
    assert abs(case.time_err) <= 0.25 and abs(case.bytes_err) <= 0.25


def test_replay_from_converted_proxmox_and_hmp_logs():
    rec = load_run(LAB / "calib-seq-256-dt3s.jsonl")
    text = proxmox_task_log(rec)
    assert "migration completed, transferred" in text and "TASK OK" in text
    assert "migration speed limit: 32.0 MiB/s" in text
    px = parse_proxmox(text.splitlines())
    assert px.status == "completed"
    assert px.ram_bytes == pytest.approx(rec.samples[0].total, rel=1e-3)  # one decimal
    hmp = parse_hmp(hmp_snapshots(rec, every=1.0).splitlines())
    assert hmp.status == "completed"
    for run in (px, hmp):
        cal = calibrate(run)
        assert cal.replay_class_ok
        assert abs(cal.errors["transferred"]) <= 0.25


def test_what_if_reports_the_set_and_never_stops_before_the_observed_time():
    cal = calibrate(load_run(LAB / "calib-seq-256-dt300.jsonl"))
    assert 1 <= len(cal.plausible) <= 9
    assert cal.replay_class_ok and not cal.low_confidence
    same = dataclasses.replace(cal.settings, capabilities=dict(cal.settings.capabilities))
    pred = what_if(cal, same, horizon=5.0)
    assert pred.horizon >= 40.0  # the observed run lasted 40 s
    assert pred.converged_count == 0
    assert "did not finish within" in pred.verdict()
    d = pred.to_dict()
    assert d["finished"] is False and d["range"]["did_not_finish"] == len(pred.members)
    assert d["range"]["transferred_bytes"]["min"] <= d["range"]["transferred_bytes"]["max"]


def test_three_line_excerpt_that_resent_more_than_the_ram_is_a_dirtying_guest():
    excerpt = [
        "2026-03-02 10:26:05 migration active, transferred 1.3 GiB of 1.0 GiB VM-state, 32.1 MiB/s",
        "2026-03-02 10:26:15 migration active, transferred 1.6 GiB of 1.0 GiB VM-state, 31.8 MiB/s",
        "2026-03-02 10:26:15 xbzrle: send updates to 35400 pages in 82.0 MiB encoded memory, "
        "cache-miss 99.59%, overflow 1300",
    ]
    run = parse_proxmox(excerpt)
    cal = calibrate(run)
    assert not all(w.idle for w in cal.plausible)
    assert cal.replay is not None and not cal.replay.outcome.converged
    assert cal.observed_duration >= 40  # 1.3 GiB had been sent before the first line
    assert "idle" not in cal.describe_inferred()


def test_low_confidence_is_said_when_no_workload_reproduces_the_outcome():
    cal = calibrate(load_run(LAB / "calib-seq-256-dt3s.jsonl"))
    cal.replay_class_ok = False
    pred = what_if(cal, Settings(downtime_limit=1.0), horizon=60.0)
    assert pred.low_confidence and "low confidence" in pred.verdict()
    assert cal.to_dict()["low_confidence"] is True


FIXTURES = Path(__file__).parent / "fixtures"


def test_failed_run_replay_is_compared_at_the_failure_time():
    """A failed run (one progress line, then an error) did not complete by the failure:
    the link comes from its only line over the time since the start, and the replay
    has not completed by the failure time."""
    run = load_run(FIXTURES / "proxmox" / "pve-failures.log")
    ev = extract(run)
    assert ev.status == "failed"
    assert ev.wire_rate == pytest.approx(ev.progress[0][1] / ev.progress[0][0])
    cal = calibrate(run)
    assert cal.replay_class_ok and not cal.low_confidence
    assert cal.replay.outcome.total_time_s > cal.observed_duration
    assert any("the run failed after" in n for n in cal.notes)


def test_log_without_capabilities_tries_auto_converge_when_defaults_cannot_converge():
    run = load_run(FIXTURES / "hmp" / "qemu-10.1-compact-snapshots.txt")
    assert not run.settings.capabilities
    cal = calibrate(run)
    assert cal.replay_class_ok and cal.replay.outcome.converged
    assert cal.settings.capabilities.get("auto-converge")
    assert any("capabilities not in the log" in n for n in cal.notes)


def test_a_prediction_that_did_not_finish_is_a_class_miss_not_a_time():
    # calibrated on a run that never converged, predicted unchanged to its 40 s: against
    # a run that converged the answer is wrong, and it has no time error to report
    cal = calibrate(load_run(LAB / "calib-seq-256-dt300.jsonl"))
    pred = what_if(cal, cal.settings, horizon=40.0)
    assert pred.converged_count == 0
    real = observed_outcome(load_run(LAB / "calib-seq-256-dt3s.jsonl"))
    case = proof.judge("dt300 unchanged vs dt3s", "recording", pred, real)
    assert not case.class_ok and case.spans is False
    assert case.time_err is None and case.bytes_err is None
    assert case.in_range is False
    s = proof.summary([case])
    assert s["class_right"] == 0 and s["misses_spanning"] == (0, 1)
    assert s["time_median"] is None
    # the text cell says it did not finish rather than printing the horizon as a time
    assert describe_range(pred)["total_time_s"].startswith("> ")


def test_dirty_rate_is_read_over_its_rate_period():
    # QEMU's dirty-pages-rate is pages per rate period (about a pass), not per second:
    # a first value of 18.7 MiB/s seen at 10 s after a 7 s first pass is ~131 MiB dirty
    mib = 2**20
    ev = Evidence(ram=512 * mib, status="completed", duration=12.0, duration_how="", transferred=0)
    ev.progress = [(5.0, 160 * mib), (10.0, 320 * mib), (12.0, 400 * mib)]
    ev.dirty_rates = [(10.0, 18.7 * mib, 0.0)]
    (t, d, first), *_ = rate_periods(ev, nonzero=224 * mib)
    assert first and t == pytest.approx(7.0, abs=0.01)
    assert d == pytest.approx(18.7 * 7.0 * mib, rel=0.01)
    # a Proxmox log prints the rate only above the line's rate: no first period there
    ev.rate_absent_is_zero = False
    assert rate_periods(ev, nonzero=224 * mib) == []


def test_hmp_snapshot_rate_read_over_its_period_keeps_xbzrle_off_from_converging():
    # the HMP snapshots of an XBZRLE run show one dirty-page rate, measured over the
    # 7 s first pass: read per second it made a slow writer that converges without
    # XBZRLE; the real run without XBZRLE never converged
    case = proof.pair_case("calib-random-512-b512-xbzrle", "calib-random-512-b512", "hmp")
    assert case.class_ok
    assert abs(case.bytes_err) <= 0.25
