import json

from migtune.model import Settings, to_dict
from migtune.outcome import outcome_from_run
from migtune.outputs.recording import RecordingWriter
from migtune.sources import load_run


def _reply(status, transferred, remaining, passes, **extra):
    ram = {
        "transferred": transferred,
        "remaining": remaining,
        "total": 1073741824,
        "mbps": 268.4,
        "dirty-sync-count": passes,
        "page-size": 4096,
        "dirty-pages-rate": 1000,
        "pages-per-second": 8000,
    }
    return {"status": status, "total-time": 1000 * passes, "ram": ram, **extra}


def test_recording_round_trip(tmp_path):
    path = tmp_path / "run.jsonl"
    settings = Settings(downtime_limit=0.3, max_bandwidth=33554432.0, capabilities={"xbzrle": True})
    with RecordingWriter(path) as rec:
        rec.header("lab", to_dict(settings), 1700000000.0, qemu_version="10.0.2", workload="idle")
        rec.sample(0.5, _reply("active", 1000, 5000, 1))
        rec.event(0.7, "downtime-change", "doubled", {"downtime_limit": 0.6})
        rec.sample(1.0, _reply("completed", 9000, 0, 3, downtime=12))
    run = load_run(path)
    assert run.format == "qmp"
    assert run.status == "completed"
    assert run.settings.downtime_limit == 0.3
    assert run.settings.capabilities == {"xbzrle": True}
    assert run.settings.qemu_version == "10.0.2"
    assert [s.t for s in run.samples] == [0.5, 1.0]
    assert run.samples[0].throughput == 268.4 * 125000
    assert run.samples[0].dirty_rate == 1000 * 4096
    assert run.events[0].data == {"downtime_limit": 0.6}
    out = outcome_from_run(run)
    assert out.converged and out.passes == 3 and out.downtime_ms == 12
    assert out.transferred_bytes == 9000


def test_truncated_recording_keeps_samples(tmp_path):
    path = tmp_path / "cut.jsonl"
    with RecordingWriter(path) as rec:
        rec.header("migrate", {}, 0.0)
        rec.sample(0.5, _reply("active", 1000, 5000, 1))
    text = path.read_text() + json.dumps({"kind": "sample", "t": 1.0})[:17]
    path.write_text(text)
    run = load_run(path)
    assert run.partial
    assert len(run.samples) == 1 and run.status == "active"
