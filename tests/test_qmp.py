"""QMP query-migrate parser: replies, JSON-lines, wire logs, dict dumps, recordings."""

from __future__ import annotations

import json

import pytest

from conftest import FIXTURES
from migtune.errors import InputError
from migtune.outputs.recording import RecordingWriter
from migtune.sources import load_run, parse_text, qmp

QMP = FIXTURES / "qmp"


def test_single_pretty_reply():
    run = load_run(QMP / "reply-active-4GiB.json")
    assert run.format == "qmp"
    assert run.status == "active"
    assert not run.partial and run.warnings == []
    (s,) = run.samples
    assert s.t == 12.034  # no timestamp: total-time
    assert s.transferred == 1613585112
    assert s.remaining == 2681700352
    assert s.total == 4297064448
    assert s.throughput == 1063.1491 * 1e6 / 8
    assert s.page_rate == 32448 * 4096
    assert s.dirty_rate == 0
    assert s.passes == 1
    assert s.expected_downtime == 0.3
    assert s.setup_time == 0.012
    assert s.source is not None and s.source.line == 5
    assert run.ram_bytes == 4297064448
    assert run.ram_duration == 12.034


def test_failed_bare_migration_info():
    run = load_run(QMP / "failed-error-desc.json")
    assert run.status == "failed"
    (s,) = run.samples
    assert s.error == "Unable to write to socket: Connection reset by peer"
    assert s.passes == 2
    assert s.dirty_rate == 30512 * 4096
    errors = run.events_of("error")
    assert [e.message for e in errors] == ["Unable to write to socket: Connection reset by peer"]
    assert run.downtime is None


def test_jsonl_wire_log_with_timestamps_xbzrle_autoconverge():
    run = load_run(QMP / "run-4GiB-xbzrle-autoconverge.jsonl")
    assert run.status == "completed"
    assert run.t0 == 1767607200.0
    assert len(run.samples) == 24
    assert run.samples[0].t == 2.012
    assert run.samples[-1].t == 47.4455
    st = run.settings
    assert st.capabilities == {"xbzrle": True, "auto-converge": True}
    assert st.xbzrle_cache_size == 268435456
    assert st.downtime_limit == 0.3
    assert st.max_bandwidth == 134217728
    assert (st.cpu_throttle_initial, st.cpu_throttle_increment) == (20, 10)
    assert st.migration_uri == "tcp:192.0.2.20:4444"
    throttles = [e.data["throttle_pct"] for e in run.events_of("throttle-change")]
    assert throttles == [20.0, 30.0, 40.0]
    assert [e.t for e in run.events_of("throttle-change")] == [28.012, 34.012, 38.012]
    statuses = [e.data["status"] for e in run.events_of("status")]
    assert statuses == ["setup", "active", "device", "completed"]  # from MIGRATION events only
    last = run.samples[-1]
    assert last.passes == 13
    assert last.downtime == 0.134
    assert last.xbzrle is not None
    assert last.xbzrle.cache_miss == 547890
    assert last.xbzrle.cache_miss_rate == 0.2999
    assert last.downtime_bytes == 15099494
    assert run.downtime == 0.134
    assert run.ram_duration == 47.245
    assert run.ram_bytes == 4297064448
    assert not run.partial


def test_jsonl_relative_t_and_cancel():
    run = load_run(QMP / "samples-relative-t.jsonl")
    assert [s.t for s in run.samples] == [0.0, 5.0, 10.0, 12.5, 12.6]
    assert run.t0 is None
    assert run.status == "cancelled"
    assert run.samples[1].remaining == 900005888
    assert run.samples[1].throughput == 268.5 * 125000
    assert run.samples[3].status == "cancelling"


def test_real_qemu_10_reply():
    run = load_run(QMP / "qemu-10.0.2-completed-xbzrle.json")
    assert run.status == "completed"
    (s,) = run.samples
    assert s.downtime == 0.009 and run.downtime == 0.009
    assert s.total == 268967936
    assert s.downtime_bytes == 277143
    assert s.xbzrle is not None and s.xbzrle.cache_miss == 67
    assert run.settings.capabilities == {"xbzrle": True}  # implied by the xbzrle-cache block
    assert run.settings.xbzrle_cache_size == 67108864


def test_pprint_dumps_with_prefix():
    run = load_run(QMP / "pprint-agent-debug.log")
    assert not run.partial, run.warnings
    assert [s.t for s in run.samples] == [5.004, 9.41]
    assert [s.status for s in run.samples] == ["active", "completed"]
    assert run.samples[0].remaining == 1025507328
    assert run.samples[0].throughput == 940.2 * 125000
    assert run.samples[1].downtime == 0.041
    assert [s.source.line for s in run.samples] == [4, 20]
    assert run.status == "completed"


def test_truncated_pretty_json_keeps_values_before_the_cut():
    run = load_run(QMP / "pretty-json-truncated.txt")
    assert run.partial
    assert len(run.samples) == 2
    first, cut = run.samples
    assert first.remaining == 301989888 and first.passes == 3
    assert cut.total_time == 25.012 and cut.expected_downtime == 2.29
    assert cut.transferred == 3345821696
    assert cut.remaining is None  # the line the cut went through is not trusted
    assert run.status == "active"


def test_real_fcqemu_partial_dump(real_logs):
    run = load_run(real_logs / "fcqemu-query-migrate-debug-partial.txt")
    assert run.format == "qmp"
    assert run.status == "active"
    assert run.partial
    s = next(s for s in run.samples if s.total is not None)
    assert s.throughput == pytest.approx(22680.0)
    assert s.throughput == 0.18144 * 1e6 / 8
    assert s.remaining == 168550400
    assert s.total == 286334976
    assert s.expected_downtime == 4.0
    assert s.page_rate == 2500 * 4096
    assert s.passes == 1
    assert s.duplicate == 28711
    assert run.ram_bytes == 286334976


def test_wire_log_with_iso_prefix_and_commands():
    lines = [
        '2026-01-05T10:00:00.000Z QMP >>> {"execute": "migrate-set-parameters", '
        '"arguments": {"downtime-limit": 500}}',
        '2026-01-05T10:00:00.010Z QMP <<< {"return": {}}',
        '2026-01-05T10:00:01.000Z QMP <<< {"return": {"status": "active", "total-time": 990, '
        '"ram": {"transferred": 1000, "remaining": 9000, "total": 10000, "page-size": 4096}}}',
        '2026-01-05T10:00:02.000Z QMP >>> {"execute": "migrate-set-parameters", '
        '"arguments": {"downtime-limit": 2000}}',
        '2026-01-05T10:00:03.500Z QMP <<< {"return": {"status": "completed", "total-time": 3480, '
        '"downtime": 120, "ram": {"transferred": 12000, "remaining": 0, "total": 10000}}}',
    ]
    run = qmp.parse(lines)
    assert run.t0 == 1767607200.0
    assert [s.t for s in run.samples] == [1.0, 3.5]
    assert run.settings.downtime_limit == 0.5
    (change,) = run.events_of("downtime-change")
    assert change.t == 2.0 and change.data["downtime_limit"] == 2.0
    assert run.status == "completed"
    assert run.downtime == 0.12


def test_query_parameters_and_capabilities_replies():
    lines = [
        json.dumps({"return": [{"capability": "multifd", "state": True}]}),
        json.dumps({"return": {"downtime-limit": 300, "max-bandwidth": 0, "multifd-channels": 4}}),
        json.dumps({"return": {"status": "active", "ram": {"total": 1, "remaining": 1}}}),
    ]
    run = qmp.parse(lines)
    assert run.settings.capabilities == {"multifd": True}
    assert run.settings.max_bandwidth == 0
    assert run.settings.multifd_channels == 4


def test_recording_is_delegated(tmp_path):
    path = tmp_path / "rec.jsonl"
    with RecordingWriter(path) as rec:
        rec.header("migrate", {"downtime_limit": 0.3}, 1700000000.0)
        rec.sample(1.0, {"status": "completed", "downtime": 5, "ram": {"total": 1024}})
    run = load_run(path)
    assert run.format == "qmp" and run.status == "completed"
    assert run.meta["origin"] == "migrate"


@pytest.mark.parametrize(
    "text",
    [
        '{"return": {}}',
        '{"hello": "world"}',
        "{'a': 1}",
        "[1, 2, 3]",
        "not json at all",
    ],
)
def test_nothing_recognisable_raises_input_error(text):
    with pytest.raises(InputError):
        parse_text(text, "qmp")


def test_sniff():
    assert qmp.sniff(['{"return": {"status": "active", "ram": {"dirty-sync-count": 1}}}']) > 0.5
    assert qmp.sniff(["2026-01-05 10:00:00 starting migration of VM 100"]) == 0.0


def test_pprint_wrapped_string_continuation():
    run = load_run(QMP / "pprint-failed-wrapped-error.log")
    assert not run.partial, run.warnings
    (s,) = run.samples
    assert s.error == "Unable to write to socket: Connection reset by peer"
    assert s.status == "failed" and run.status == "failed"
    assert s.total == 4297064448 and s.t == 41.022


def test_blocked_reasons_reply():
    reply = {"return": {"status": "none", "blocked-reasons": ["a vhost-user device is in use"]}}
    run = qmp.parse([json.dumps(reply)])
    assert run.meta["blocked_reasons"] == ["a vhost-user device is in use"]
    assert [e.kind for e in run.events_of("error")] == ["error"]
    assert run.status == "unknown"
