"""Live prediction: prefixes of recordings, the prediction, the worker, the supervisor hook."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from migtune.analysis.explain import explain
from migtune.analysis.live import (
    EVENT_KIND,
    Change,
    LivePrediction,
    first_pass_end,
    predict,
    predictions_of,
    recording_prefix,
    timeline_rows,
)
from migtune.outputs.recording import RecordingWriter
from migtune.qemu.livewatch import LiveWatch
from migtune.qemu.policies import Policy
from migtune.qemu.supervisor import Supervisor
from migtune.sim.calibrate.evidence import extract
from migtune.sources.querymigrate import sample_from_query_migrate

LAB = Path(__file__).parent / "fixtures" / "lab"


def lines_of(name: str) -> list[str]:
    return (LAB / name).read_text(encoding="utf-8").splitlines()


def replay(lines: list[str]):
    """(sample, recording text up to it) for each sample record, as the driver sees them."""
    text = ""
    for line in lines:
        rec = json.loads(line)
        if rec.get("kind") == "result":
            continue
        text += line + "\n"
        if rec.get("kind") == "sample":
            yield sample_from_query_migrate(rec["query-migrate"], rec["t"]), text


def test_prefix_is_a_still_active_run_read_as_a_lower_bound():
    lines = lines_of("above-link-1.jsonl")
    full = recording_prefix(lines)
    cut = first_pass_end(full)
    assert cut is not None and 5.0 < cut < 8.0
    run = recording_prefix(lines, cut)
    assert run.status == "active" and "result" not in run.meta
    assert max(s.t for s in run.samples) == cut
    ev = extract(run)
    assert ev.status == "active" and not ev.converged
    # one sync: the first pass is the pass the fit starts from, timed by QEMU's
    # MIGRATION_PASS event, with what was sent again since the sync added back
    t, dirty = ev.first_pass()
    assert ev.pass_time() == t == pytest.approx(ev.pass_starts[2]) and t < cut
    assert dirty > ev.syncs[0][2]


def test_predictions_of_a_clear_case_each_way():
    above = lines_of("above-link-1.jsonl")
    run = recording_prefix(above, 10.1)  # the second sync
    pred, _ = predict(run, time_limit=25.0)
    assert pred.verdict == "will-not-converge"
    assert pred.short() == "will not converge within 25.0 s with these settings"
    below = lines_of("below-link-1.jsonl")
    run = recording_prefix(below, first_pass_end(recording_prefix(below)))
    pred, _ = predict(run)
    assert pred.verdict == "converges"
    assert pred.eta_s["median"] is not None and 0.0 <= pred.eta_s["median"] < 10.0
    assert pred.short().startswith("converges in ~")


def test_a_change_is_simulated_from_the_moment_of_the_prediction():
    lines = lines_of("above-link-1.jsonl")
    run = recording_prefix(lines, 10.1)
    current, [raised] = predict(run, time_limit=25.0, changes=[Change(("downtime-limit=5s",))])
    assert current.converged_members == 0
    # 5 s at 32 MiB/s holds the whole 128 MiB working set: every plausible workload converges
    assert raised.verdict == "converges"
    assert raised.change == {"set": ["downtime-limit=5s"], "postcopy": False}
    assert raised.total_time_s["min"] >= 10.0  # not before the prediction was made


def _pred(**kw) -> LivePrediction:
    base = {
        "t": 60.0,
        "passes": 3,
        "members": 9,
        "converged_members": 9,
        "time_limit": None,
        "horizon_s": 3600.0,
        "total_time_s": {"min": 240.0, "median": 300.0, "max": 420.0},
        "downtime_ms": {"min": 100.0, "median": 200.0, "max": 280.0},
    }
    return LivePrediction(**{**base, **kw})


def test_progress_words():
    assert _pred().short() == "converges in ~4 min (3-6)"
    none = _pred(converged_members=0, time_limit=1800.0)
    assert none.short() == "will not converge within 30 min 00 s with these settings"
    some = _pred(converged_members=3)
    assert some.verdict == "uncertain"
    assert some.short().startswith("may not converge: 3 of 9 plausible workloads do")
    again = LivePrediction.from_dict(json.loads(json.dumps(_pred().to_dict())))
    assert again.short() == _pred().short() and again.verdict == "converges"


def test_worker_process_predicts_at_each_sync_off_the_loop():
    lw = LiveWatch(time_limit=25.0)
    lw.min_gap = 0.0  # the recording is replayed faster than it ran
    lw.start()
    asked, got = [], []
    try:
        for sample, text in replay(lines_of("above-link-1.jsonl")):
            if lw.feed(sample, lambda text=text: text):
                asked.append(sample.t)
                assert lw.feed(sample, lambda text=text: text, force=True) is False  # busy
            # the recording's clock runs faster than a real one: let each job finish
            deadline = time.monotonic() + 60
            while lw.busy_since is not None and time.monotonic() < deadline:
                got += lw.collect()
                time.sleep(0.02)
    finally:
        lw.close()
    assert asked and asked[0] == pytest.approx(6.53)
    assert [o.asked_at for o in got] == asked and len(got) == 6  # one per sync
    assert all(o.current is not None and o.current.t == o.asked_at for o in got)
    assert lw.warnings == []
    assert lw.proc is None  # closed


def test_the_worker_waits_as_long_as_its_last_prediction_took():
    lw = LiveWatch(time_limit=25.0, mode="inline")
    lw.min_gap = 1.0
    fed = [
        s.t for s, text in replay(lines_of("above-link-1.jsonl")) if lw.feed(s, lambda t=text: t)
    ]
    # the replay takes far less than a second: only the first sync gets a prediction
    assert fed == [pytest.approx(6.53)]


def test_a_prediction_over_budget_is_abandoned_with_one_warning():
    lw = LiveWatch(time_limit=25.0, budget=0.0)
    try:
        for sample, text in replay(lines_of("above-link-1.jsonl")):
            if lw.feed(sample, lambda text=text: text):
                break
        proc = lw.proc
        time.sleep(0.05)
        assert lw.collect() == []
        assert any("longer than 0 s" in w for w in lw.warnings)
        assert proc is not None and proc.poll() is not None  # killed
        assert lw.busy_since is None  # the next sync may try again
    finally:
        lw.close()


def test_a_failing_prediction_is_a_warning_not_an_exception():
    lw = LiveWatch(mode="inline")
    sample = sample_from_query_migrate({"status": "active", "ram": {"dirty-sync-count": 2}}, 5.0)
    assert lw.feed(sample, lambda: '{"kind":"header","migtune-recording":1}\n')
    [out] = lw.collect()
    assert out.current is None and out.error
    assert lw.warnings and lw.warnings[0].startswith("prediction failed")


class _Exploding(Policy):
    def on_prediction(self, current, alternatives):
        raise RuntimeError("boom")


def _supervisor(policy: Policy) -> tuple[Supervisor, io.StringIO]:
    sup = Supervisor(policy, None, 0.5, False)
    buf = io.StringIO()
    sup.rec = RecordingWriter(None, stream=buf)
    sup.live = LiveWatch(time_limit=25.0, mode="inline")
    return sup, buf


def test_supervisor_records_and_shows_predictions():
    sup, buf = _supervisor(Policy())
    for sample, text in replay(lines_of("above-link-1.jsonl")):
        sup.snapshot = lambda text=text: text
        sup._live_step(sample, sample.t)
        if sample.t > 12:
            break
    events = [json.loads(x) for x in buf.getvalue().splitlines()]
    preds = [e for e in events if e.get("event") == EVENT_KIND]
    assert len(preds) >= 2
    assert preds[0]["message"].startswith("prediction at 6.5 s (pass 2):")
    assert preds[-1]["data"]["verdict"] == "will-not-converge"
    assert sup.prediction_text == "will not converge within 25.0 s with these settings"


def test_a_policy_failing_on_a_prediction_stops_the_prediction_only():
    sup, _ = _supervisor(_Exploding())
    for sample, text in replay(lines_of("above-link-1.jsonl")):
        sup.snapshot = lambda text=text: text
        sup._live_step(sample, sample.t)
    assert sup.live is None
    assert any("live prediction stopped: RuntimeError: boom" in w for w in sup.warnings)


def test_explain_shows_what_was_predicted_when(tmp_path):
    sup, buf = _supervisor(Policy())
    lines = lines_of("above-link-1.jsonl")
    for sample, text in replay(lines):
        sup.snapshot = lambda text=text: text
        sup._live_step(sample, sample.t)
    # the predictions go into the recording among its records, in time order
    recs = [json.loads(x) for x in lines] + [json.loads(x) for x in buf.getvalue().splitlines()]
    recs.sort(key=lambda r: (r.get("kind") != "header", r.get("kind") == "result", r.get("t", 0)))
    path = tmp_path / "with-predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    from migtune.sources import load_run

    run = load_run(str(path))
    assert len(predictions_of(run)) >= 4
    rows = timeline_rows(run)
    assert rows[-1]["kind"] == "prediction" and rows[-1]["verdict"] == "will-not-converge"
    assert rows[0]["from_samples_to_s"] == pytest.approx(6.53)
    x = explain(run)
    assert x.predictions == rows
    notes = [n for line in x.lines for n in line.notes if "live prediction" in n]
    assert len(notes) == len(rows) and "will not converge" in notes[-1]
    from migtune.report import build_report

    html = build_report(run)
    assert '<section id="predictions"><h2>Live predictions</h2>' in html
    assert html.count("will not converge within 25.0 s") >= len(rows) - 1


class _Metrics:
    def __init__(self):
        self.calls = []

    def set_prediction(self, eta_s, converges, **kw):
        self.calls.append((eta_s, converges, kw))


def test_predictions_are_published_to_the_metrics_endpoint():
    sup, _ = _supervisor(Policy())
    sup.metrics = _Metrics()
    for sample, text in replay(lines_of("above-link-1.jsonl")):
        sup.snapshot = lambda text=text: text
        sup._live_step(sample, sample.t)
    assert sup.metrics.calls
    eta, converges, kw = sup.metrics.calls[-1]
    assert converges is False and eta is None and kw["downtime_s"] is None


def test_a_policy_stepping_auto_converge_is_replayed_maximum_first():
    lines = lines_of("above-link-1.jsonl")
    step = {
        "kind": "event",
        "t": 8.0,
        "event": "settings",
        "message": "policy migtune",
        "data": {
            "kind": "set-parameters",
            "params": {
                "cpu-throttle-initial": 20,
                "cpu-throttle-increment": 10,
                "max-cpu-throttle": 99,
            },
        },
    }
    at = next(i for i, x in enumerate(lines) if json.loads(x).get("t", 0) > 8.0)
    run = recording_prefix([*lines[:at], json.dumps(step), *lines[at:]], 12.0)
    names = [a.split("=")[0] for _, a in extract(run).schedule]
    assert names == ["max-cpu-throttle", "cpu-throttle-initial", "cpu-throttle-increment"]
