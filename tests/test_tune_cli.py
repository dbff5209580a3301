"""``migtune tune`` on the command line: text, JSON, exit codes 0 / 6 / 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migtune.cli.main import main

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = ["--ram", "256MiB", "--workload", "ws=64MiB,rate=48MiB/s,pattern=random",
         "--link", "320Mbit/s", "--allow", "auto-converge"]  # fmt: skip


def test_text_has_the_table_the_recommendation_and_commands(capsys):
    rc = main(["tune", *SMALL, "--max-downtime", "1s"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Tuning for qemu (limits: downtime <= 1.0 s" in out
    assert "total time" in out and "downtime" in out and "sent" in out and "throttle" in out
    assert "Recommendation: downtime" in out
    assert "why: it converges for the workload in at most" in out
    assert "with the platform's defaults (downtime 300 ms) it does not converge within" in out
    assert '"execute": "migrate-set-parameters"' in out
    # units in the cells: seconds and bytes
    assert " s " in out and "MiB" in out


def test_json_contract_and_platform_commands(capsys):
    rc = main(["tune", *SMALL, "--platform", "libvirt", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0
    rec = d["recommendation"]
    assert set(rec["commands"]) == {"libvirt", "qmp"}
    assert rec["commands"]["libvirt"][0].startswith("virsh migrate --live")
    for key in ("total_time_s", "downtime_ms", "transferred_bytes", "max_throttle_pct"):
        assert set(rec["predicted"][key]) == {"min", "median", "max"}
    assert d["limits"]["max_downtime_s"] == 2.0  # the default
    assert d["calibration"]["source"] == "given"
    assert d["candidates"][0]["label"] == rec["label"]


def test_nothing_meets_the_limits_exits_6_with_the_closest(capsys):
    rc = main(["tune", *SMALL[:-2], "--allow", "", "--max-downtime", "100ms", "--max-time", "20s"])
    out = capsys.readouterr().out
    assert rc == 6
    assert "Nothing meets the limits. Closest:" in out and "would need:" in out


def test_json_exit_6(capsys):
    rc = main(["tune", *SMALL[:-2], "--allow", "", "--max-downtime", "100ms", "--max-time",
               "20s", "--json"])  # fmt: skip
    d = json.loads(capsys.readouterr().out)
    assert rc == 6 and d["recommendation"] is None
    assert d["closest"] is not None and d["limit_to_give"]


def test_from_a_log_uses_its_platform(capsys):
    rc = main(["tune", "--from", str(FIXTURES / "lab" / "calib-random-384.jsonl"),
               "--max-time", "45s", "--allow", "auto-converge", "--json"])  # fmt: skip
    d = json.loads(capsys.readouterr().out)
    assert rc in (0, 6)
    assert d["platform"] == "qemu"  # a recording of plain QEMU
    assert d["observed"]["converged"] is False
    assert d["calibration"]["plausible"]


@pytest.mark.parametrize(
    "args, msg",
    [
        ([], "--from: missing"),
        (["--ram", "256MiB"], "--from: missing"),
        (
            ["--from", "/nonexistent/log", "--ram", "1GiB", "--workload", "idle"],
            "give one of a log",
        ),
        (["--from", "/nonexistent/log"], "/nonexistent/log"),
        ([*SMALL[:-2], "--allow", "zstd"], "--allow: unknown feature 'zstd'"),
        ([*SMALL, "--platform", "vmware"], "--platform"),
        ([*SMALL, "--max-downtime", "soon"], "--max-downtime"),
        (["--ram", "32MiB", "--workload", "ws=64MiB,rate=1MiB/s"], "working set"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, msg, capsys):
    rc = main(["tune", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("migtune: error: ") and err.count("\n") == 1
    assert msg in err


def test_the_readme_documents_the_json_contract(capsys):
    """Every key of the README's ``tune --json`` example is in the output."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Tuning: `migtune tune`", 1)[1].split("\n## ", 1)[0]
    doc = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    rc = main(["tune", *SMALL, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert {k for k in doc if k != "..."} <= set(out)
    rec = out["recommendation"]
    assert {k for k in doc["recommendation"] if k != "..."} <= set(rec)
    assert set(doc["recommendation"]["predicted"]) <= set(rec["predicted"])
    assert set(doc["limits"]) <= set(out["limits"]) and set(doc["stats"]) <= set(out["stats"])
    assert set(doc["recommendation"]["transport"]) == set(rec["transport"])


def test_vm_tunes_from_the_runs_in_the_history(tmp_path, capsys):
    """``tune --vm NAME``: the workload is the VM's runs in the history calibrated together."""
    db = str(tmp_path / "h.db")
    run = str(FIXTURES / "lab" / "calib-random-256-b1024.jsonl")
    assert main(["history", "add", run, "--vm", "web1", "--db", db]) == 0
    capsys.readouterr()
    rc = main(["tune", "--vm", "web1", "--db", db, "--max-downtime", "1s", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert d["recommendation"]["predicted"]["converged_share"] == 1.0
    # the calibration is the history's: the recorded run's guest (256 MiB + ROM/devices)
    assert 256 * 2**20 <= d["calibration"]["ram_bytes"] < 260 * 2**20


def test_vm_unknown_or_combined_with_a_log_is_one_error_line(tmp_path, capsys):
    db = str(tmp_path / "empty.db")
    assert main(["tune", "--vm", "nobody", "--db", db]) == 2
    assert "no run of VM 'nobody'" in capsys.readouterr().err
    assert main(["tune", "--vm", "web1", "--from", "x.log", "--db", db]) == 2
    assert "give one of a log, --vm" in capsys.readouterr().err
