"""`migtune simulate` on the command line: outcome JSON, exit codes, recordings, --from."""

from __future__ import annotations

import json
from pathlib import Path

from migtune.cli.main import main
from migtune.outcome import Outcome
from migtune.sources import load_run

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_json_has_the_outcome_keys(capsys):
    rc = main(
        ["simulate", "--ram", "256MiB", "--workload", "ws=64MiB,rate=4MiB/s",
         "--max-bandwidth", "32MiB/s", "--json"]
    )  # fmt: skip
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(Outcome.__dataclass_fields__) <= set(out)
    assert out["converged"] is True and out["status"] == "completed"
    assert out["passes"] >= 3 and out["transferred_bytes"] > 64 * 2**20
    assert out["xbzrle"] is None and out["max_throttle_pct"] == 0


def test_not_converging_exits_6_and_text_has_pass_table(capsys):
    rc = main(
        ["simulate", "--ram", "512MiB", "--workload", "ws=128MiB,rate=64MiB/s",
         "--max-bandwidth", "32MiB/s", "--time-limit", "15s", "--qemu-version", "7.2"]
    )  # fmt: skip
    assert rc == 6
    text = capsys.readouterr().out
    assert "did not converge" in text and "QEMU 7.2" in text
    assert "dirty after sync" in text


def test_xbzrle_flags_and_record(tmp_path, capsys):
    rec = tmp_path / "s.jsonl"
    rc = main(
        ["simulate", "--ram", "256MiB", "--workload", "ws=64MiB,rate=16MiB/s,bytes=8",
         "--max-bandwidth", "32MiB/s", "--xbzrle-cache-size", "128MiB", "--json",
         "--record", str(rec)]
    )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["xbzrle"]["pages"] > 0
    first = json.loads(rec.read_text().splitlines()[0])
    assert first["origin"] == "simulate" and first["settings"]["capabilities"]["xbzrle"]
    assert main(["explain", str(rec)]) == 0


def test_bad_input_is_exit_2(capsys):
    assert main(["simulate", "--workload", "idle"]) == 2  # no --ram
    assert "--ram" in capsys.readouterr().err
    assert main(["simulate", "--ram", "64MiB", "--workload", "ws=1GiB,rate=1MiB/s"]) == 2
    assert main(["simulate", "--ram", "64MiB", "--qemu-version", "abc"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "migtune: error:" in err


def test_from_log_with_what_if(capsys):
    log = FIXTURES / "qmp" / "run-4GiB-xbzrle-autoconverge.jsonl"
    rc = main(["simulate", "--from", str(log), "--set", "downtime-limit=2s", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc in (0, 6)
    cal = out["calibration"]
    assert cal["ram_bytes"] > 3 * 2**30
    assert cal["errors"]["converged_match"] == 1.0
    assert abs(cal["errors"]["total_time"]) < 0.25
    assert out["what_if"]["converged"] is True


def test_from_log_what_if_is_recorded(tmp_path, capsys):
    log = FIXTURES / "qmp" / "run-4GiB-xbzrle-autoconverge.jsonl"
    rec = tmp_path / "whatif.jsonl"
    rc = main(["simulate", "--from", str(log), "--set", "downtime-limit=2s", "--record", str(rec)])
    capsys.readouterr()
    assert rc in (0, 6)
    run = load_run(rec)
    assert run.meta["origin"] == "simulate"
    assert run.settings.downtime_limit == 2.0
    assert run.samples and run.status in ("completed", "active", "cancelled")
