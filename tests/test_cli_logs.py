"""`migtune explain` and `migtune diagnose` through the CLI entry point."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migtune.analysis.explain import explain
from migtune.cli.main import main
from migtune.errors import InputError
from migtune.outputs.jsonout import dumps, explanation_dict
from migtune.sources import parse_text

HMP_STUCK = """\
Migration status: active
total time: 130874 milliseconds
expected downtime: 1475 milliseconds
transferred ram: 18197383 kbytes
throughput: 866.83 mbps
remaining ram: 376892 kbytes
total ram: 8388864 kbytes
dirty sync count: 6
page size: 4 kbytes
dirty pages rate: 39044 pages
"""


@pytest.fixture
def hmp_log(tmp_path):
    p = tmp_path / "stuck.txt"
    p.write_text(HMP_STUCK)
    return p


def test_diagnose_text_exit_0(hmp_log, capsys):
    assert main(["diagnose", str(hmp_log)]) == 0
    out = capsys.readouterr().out
    assert "not-converging" in out and "virsh migrate-setmaxdowntime DOMAIN 3600" in out


def test_diagnose_json_contract(hmp_log, capsys):
    assert main(["diagnose", str(hmp_log), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "hmp" and data["status"] == "active"
    m = data["metrics"]
    assert m["passes"] == 6
    assert m["throughput_bytes_per_s"] == pytest.approx(108353750.0)
    assert m["dirty_rate_bytes_per_s"] == pytest.approx(39044 * 4096)
    assert m["downtime_ms"] is None and m["xbzrle_cache_miss_rate"] is None
    ids = [f["id"] for f in data["findings"]]
    assert ids[0] == "not-converging"
    assert data["findings"][0]["severity"] == "error"


def test_explain_json_and_text(hmp_log, capsys):
    assert main(["explain", str(hmp_log), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["lines"][0]["text"] == "Migration status: active"
    assert any("pass 6" in n for ln in data["lines"] for n in ln["notes"])
    assert data["diagnosis"]["findings"][0]["id"] == "not-converging"
    assert main(["explain", str(hmp_log)]) == 0
    out = capsys.readouterr().out
    assert "Timeline" in out and "Diagnosis" in out and "\x1b[" not in out


def test_format_option_forces_a_parser(hmp_log, capsys):
    assert main(["diagnose", "--format", "hmp", str(hmp_log), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "hmp"
    assert main(["diagnose", "--format", "bogus", str(hmp_log)]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"", "empty"),
        (b"\x00\x01\x02\x03" * 500, "binary"),
        (b"hello world\nthis is not a migration log\n", "unrecognised"),
    ],
)
@pytest.mark.parametrize("command", ["diagnose", "explain"])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, content, message, command):
    p = tmp_path / "log.txt"
    if content is not None:
        p.write_bytes(content)
    assert main([command, str(p)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("migtune: error:") and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in captured.err
    assert captured.out == ""


def test_directory_is_bad_input(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path)]) == 2
    assert "directory" in capsys.readouterr().err


# --- robustness: whatever a parser makes of odd input, the analysis never crashes ----------


_PIECES = [
    "2025-01-04 00:34:30 migration active, transferred 357.9 MiB of 4.0 GiB VM-state, 586.6 MiB/s",
    "2025-01-04 00:34:31 xbzrle: send updates to 12 pages in 1.0 KiB encoded memory, cache-miss 99.59%",
    "2025-01-04 00:34:32 auto-increased downtime to continue migration: 200 ms",
    "Nov 24 12:26:45 migration status: active (transferred 1, remaining 0), total 0)",
    "Migration status: active",
    "transferred ram: 0 kbytes",
    "dirty pages rate: 39044 pages",
    "Memory bandwidth: 0.000 B/s",
    '{"return": {"status": "completed", "ram": {"transferred": 0, "total": 0}}}',
    "Increasing downtime to 0 ms after 0 sec elapsed time",
    "2025-01-04 00:34:38 average migration speed: 0.0 B/s - downtime 0 ms",
    "[date removed] ERROR: online migrate failure - interrupted by signal",
]


def _analyse(text: str) -> None:
    try:
        run = parse_text(text)
    except InputError:
        return
    x = explain(run)
    dumps(explanation_dict(x))  # must be valid JSON: no NaN, no Infinity


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=80), min_size=1, max_size=12))
def test_mixed_and_random_lines_never_crash(lines):
    _analyse("\n".join(lines))


def test_truncated_real_logs_never_crash(real_logs):
    for path in sorted(real_logs.glob("*.txt")):
        text = path.read_text()
        for cut in range(0, len(text), max(1, len(text) // 12)):
            _analyse(text[:cut])
