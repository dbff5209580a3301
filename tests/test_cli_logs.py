"""`migtune explain` and `migtune diagnose` through the CLI entry point."""

from __future__ import annotations

import json

import pytest

from migtune.cli.main import main

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
