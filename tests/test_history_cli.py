"""`migtune history` on the command line, the automatic recording of runs, and
calibrating from several runs of a VM."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import pytest

from migtune.cli.main import main
from migtune.history import calibration_for_vm, list_runs
from migtune.history.entries import LIST_KEYS
from migtune.outcome import Outcome
from migtune.sim.calibrate import Calibration, what_if

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "tests" / "fixtures" / "lab"
EXAMPLES = REPO / "examples"


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "history.db"
    monkeypatch.setenv("MIGTUNE_DB", str(path))
    return path


def _json(capsys, argv: list[str]) -> object:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_add_keeps_going_past_bad_files_and_exits_2(db, tmp_path, capsys):
    junk = tmp_path / "junk.log"
    junk.write_text("hello\nworld\n")
    argv = ["history", "add", str(LAB / "below-link-1.jsonl"), str(junk),
            str(tmp_path / "missing.log"), str(EXAMPLES / "proxmox-32GiB-not-converging.log"),
            "--vm", "web1"]  # fmt: skip
    assert main(argv) == 2
    out, err = capsys.readouterr()
    errors = err.splitlines()
    assert len(errors) == 2 and all(e.startswith("migtune: error: ") for e in errors)
    assert str(junk) in errors[0] and "missing.log" in errors[1]
    assert "as run #1" in out and "as run #2" in out
    rows = list_runs()
    assert [(r["vm"], r["format"], r["status"]) for r in rows] == [
        ("web1", "proxmox", "cancelled"),
        ("web1", "qmp", "completed"),
    ]
    # added again: recognised, not stored twice
    assert main(["history", "add", str(LAB / "below-link-1.jsonl"), "--vm", "web1"]) == 0
    assert "already in the history as run #1" in capsys.readouterr().out
    assert len(list_runs()) == 2


def test_list_json_filters_by_vm_and_time(db, capsys):
    main(["history", "add", str(LAB / "below-link-1.jsonl"), "--vm", "a"])
    main(["history", "add", str(LAB / "idle-1.jsonl"), "--vm", "b"])
    main(["history", "add", str(EXAMPLES / "proxmox-32GiB-not-converging.log"), "--vm", "a"])
    capsys.readouterr()
    rows = _json(capsys, ["history", "list", "--json"])
    assert [r["vm"] for r in rows] == ["a", "b", "a"]  # by when they ran: 2025 first
    assert all(set(LIST_KEYS) == set(r) for r in rows)
    lab = rows[1]
    assert lab["origin"] == "add" and lab["qemu_version"] == "10.0.2"
    assert lab["converged"] is True and lab["passes"] == 4 and lab["ram_bytes"] == 537403392
    assert [r["id"] for r in _json(capsys, ["history", "list", "--vm", "a", "--json"])] == [3, 1]
    since = _json(capsys, ["history", "list", "--since", "2026-01-01", "--json"])
    assert {r["vm"] for r in since} == {"a", "b"} and len(since) == 2
    assert main(["history", "list", "--vm", "a"]) == 0
    text = capsys.readouterr().out
    assert "cancelled" in text and "57.2 GiB" in text and "2025-06-12" in text


def test_show_json_and_raw(db, capsys):
    src = LAB / "xbzrle-cache-small-1.jsonl"
    main(["history", "add", str(src), "--vm", "x"])
    capsys.readouterr()
    d = _json(capsys, ["history", "show", "1", "--json"])
    assert set(Outcome.__dataclass_fields__) <= set(d["summary"])
    assert d["summary"]["xbzrle"]["pages"] > 0
    assert d["settings"]["capabilities"]["xbzrle"] is True
    assert d["source"] == str(src) and d["calibrations"] == []
    assert main(["history", "show", "1", "--raw"]) == 0
    assert capsys.readouterr().out == src.read_text()
    assert main(["history", "show", "1"]) == 0
    text = capsys.readouterr().out
    assert "run #1: add, qmp format, VM x" in text and "xbzrle" in text
    assert main(["history", "show", "7"]) == 2
    assert capsys.readouterr().err.startswith("migtune: error: no run #7 in the history")


def test_export_csv_and_json(db, tmp_path, capsys):
    main(["history", "add", str(LAB / "below-link-1.jsonl"), str(LAB / "idle-1.jsonl")])
    capsys.readouterr()
    out = tmp_path / "runs.csv"
    assert main(["history", "export", "--format", "csv", "-o", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert rows[0]["converged"] == "true" and json.loads(rows[0]["settings"])["downtime_limit"]
    doc = _json(capsys, ["history", "export", "--format", "json"])
    assert [r["id"] for r in doc["runs"]] == [2, 1]  # idle-1 ran first
    assert doc["calibrations"] == [] and doc["runs"][0]["summary"]["passes"] == 4


def test_calibrate_repeats_of_one_workload_agree(db, capsys):
    for name in ("above-link-downtime-3s-1.jsonl", "above-link-downtime-3s-2.jsonl"):
        main(["history", "add", str(LAB / name), "--vm", "steady"])
    capsys.readouterr()
    d = _json(capsys, ["history", "calibrate", "--vm", "steady", "--json"])
    assert d["run_ids"] == [1, 2] and d["id"] == 1
    assert d["reproduces_all"] is True and d["drifted"] is False and d["drift"] == []
    assert all(r["reproduced"] for r in d["runs"])
    assert d["plausible"][0] == d["workload"] == d["calibration"]["workload"]
    # stored, and shown with the runs it used
    show = _json(capsys, ["history", "show", "2", "--json"])
    assert [c["id"] for c in show["calibrations"]] == [1]
    doc = _json(capsys, ["history", "export", "--format", "json"])
    assert [c["run_ids"] for c in doc["calibrations"]] == [[1, 2]]
    assert all([c["id"] for c in r["calibrations"]] == [1] for r in doc["runs"])


def test_calibrate_says_when_the_workload_drifted(db, capsys):
    main(["history", "add", str(LAB / "below-link-1.jsonl"), "--vm", "db1"])
    main(["history", "add", str(LAB / "above-link-1.jsonl"), "--vm", "db1"])
    capsys.readouterr()
    assert main(["history", "calibrate", "--vm", "db1"]) == 0
    text = capsys.readouterr().out
    assert "DRIFT" in text and "working set grew" in text
    d = _json(capsys, ["history", "calibrate", "--vm", "db1", "--json"])
    assert d["drifted"] is True and d["reproduces_all"] is False
    ws = next(x for x in d["drift"] if x["quantity"] == "working_set_bytes")
    assert ws["earlier"]["run"] == 1 and ws["later"]["run"] == 2
    assert ws["later"]["range"][0] > 1.1 * ws["earlier"]["range"][1]
    # the merged set holds a fit of each run: the latest run's best first
    assert d["plausible"][0] == d["runs"][1]["workload"]
    assert d["runs"][0]["workload"] in d["plausible"]
    assert main(["history", "calibrate", "--vm", "db1", "--last", "1", "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["run_ids"] == [2] and one["drifted"] is False


def test_calibrate_errors_are_one_line(db, capsys):
    assert main(["history", "calibrate", "--vm", "nobody"]) == 2
    assert "no run of VM 'nobody'" in capsys.readouterr().err
    main(["history", "add", str(LAB / "idle-1.jsonl"), "--vm", "a"])
    capsys.readouterr()
    assert main(["history", "calibrate", "--vm", "nobody"]) == 2
    assert main(["history", "calibrate", "--vm", "a", "--last", "0"]) == 2


def test_calibration_for_vm_feeds_what_if(db, capsys):
    for name in ("below-link-1.jsonl", "below-link-2.jsonl"):
        main(["history", "add", str(LAB / name), "--vm", "app"])
    cal = calibration_for_vm("app", db=db)
    assert isinstance(cal, Calibration) and cal.ram_bytes == 537403392
    assert not cal.low_confidence and len(cal.plausible) >= 1
    pred = what_if(cal, cal.settings)
    assert pred.result.outcome.converged  # 8 MiB/s on a 32 MiB/s link converges
    faster = dataclasses.replace(cal.settings, max_bandwidth=64 * 2**20)
    assert what_if(cal, faster).result.outcome.total_time_s < pred.result.outcome.total_time_s


def test_simulate_record_is_added_unless_told_not_to(db, tmp_path, capsys, monkeypatch):
    argv = ["simulate", "--ram", "256MiB", "--workload", "ws=64MiB,rate=4MiB/s",
            "--max-bandwidth", "32MiB/s", "--record", str(tmp_path / "s.jsonl")]  # fmt: skip
    assert main([*argv, "--vm", "sim1"]) == 0
    assert "history: run #1" in capsys.readouterr().out
    (row,) = list_runs()
    assert row["origin"] == "simulate" and row["vm"] == "sim1" and row["converged"] is True
    assert row["workload"].startswith("ws=64MiB,rate=1024pages/s,pattern=random")
    assert main([*argv, "--no-history"]) == 0
    monkeypatch.setenv("MIGTUNE_HISTORY", "0")
    assert main(argv) == 0
    assert len(list_runs()) == 1
    monkeypatch.delenv("MIGTUNE_HISTORY")
    assert main(["simulate", "--ram", "256MiB", "--workload", "idle"]) == 0  # no --record
    assert len(list_runs()) == 1


def test_a_history_that_cannot_be_written_is_one_warning(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MIGTUNE_DB", str(tmp_path / "no" / "such" / "dir" / "h.db"))
    argv = ["simulate", "--ram", "256MiB", "--workload", "idle", "--record",
            str(tmp_path / "s.jsonl"), "--json"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["converged"] is True
    (line,) = captured.err.splitlines()
    assert line.startswith("migtune: warning: not added to the history:")


def test_a_migration_without_a_recording_file_keeps_its_text(db):
    # migrate/lab without --record: the history stores the recording kept in memory
    from migtune.cli.history import record_quietly
    from migtune.sources import load_run

    path = LAB / "below-link-2.jsonl"
    run = load_run(path)
    run.lines = path.read_text().splitlines()  # as the migration driver leaves it
    run_id = record_quietly(run, origin="migrate", vm="m", target_host="10.0.0.2")
    from migtune.history import raw_text, show_run

    assert raw_text(run_id).decode().splitlines() == path.read_text().splitlines()
    assert show_run(run_id)["target_host"] == "10.0.0.2"


def test_readme_documents_every_list_key_and_the_calibrate_keys(db, capsys):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## JSON output of `history`", 1)[1].split("\n## ", 1)[0]
    example = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    assert set(example) == set(LIST_KEYS)
    main(["history", "add", str(LAB / "idle-1.jsonl"), "--vm", "v"])
    capsys.readouterr()
    d = _json(capsys, ["history", "calibrate", "--vm", "v", "--json"])
    documented = section.split("`calibrate --json`:", 1)[1]
    for key in d:
        assert f"`{key}`" in documented, key


def test_each_run_of_lab_matrix_is_added_as_its_scenario(db, monkeypatch, capsys):
    """The matrix's hook, fed the matrix's own recorded runs (no QEMU here: what is
    tested is that every row reaches the history, under VM lab-SCENARIO)."""
    from migtune.lab import matrix
    from migtune.lab.run import LabResult
    from migtune.outcome import outcome_from_run
    from migtune.qemu.migrate import MigrationResult
    from migtune.sources import load_run
    from migtune.workload import parse_workload

    def replay(scenarios, *, on_row, **_kw):
        rows = []
        for sc in scenarios:
            path = LAB / f"{sc.name}-1.jsonl"
            run = load_run(path)
            out = outcome_from_run(run, str(path))
            mig = MigrationResult(out.status, out, run, str(path))
            lab = LabResult(out, mig, parse_workload(run.meta["workload"]), run.ram_bytes,
                            "tcg", "10.0.2", str(path))  # fmt: skip
            rows.append(matrix.MatrixRow(sc, 1, lab, recording=str(path)))
            on_row(rows[-1])
        return rows

    monkeypatch.setattr(matrix, "run_matrix", replay)
    assert main(["lab", "matrix", "--only", "idle,below-link", "--json"]) == 0
    capsys.readouterr()
    rows = list_runs()
    assert sorted((r["vm"], r["origin"], r["status"]) for r in rows) == [
        ("lab-below-link", "lab", "completed"),
        ("lab-idle", "lab", "completed"),
    ]
    assert main(["lab", "matrix", "--only", "above-link", "--no-history"]) == 0
    assert len(list_runs()) == 2  # a new scenario, not added
    assert main(["lab", "matrix", "--only", "above-link"]) == 0
    assert len(list_runs()) == 3


def test_a_run_alone_scores_its_own_best_fit_as_calibrate_did(db):
    """The replay conditions rebuilt from a Calibration are calibrate's own: the best
    fit scores on them exactly as calibrate scored it (else joint fits are judged on
    other conditions than single ones)."""
    from migtune.history.multical import _fit, _outcome_at_scale
    from migtune.sources import load_run

    logs = [LAB / "below-link-1.jsonl", LAB / "xbzrle-cache-small-1.jsonl",
            EXAMPLES / "proxmox-4GiB-pre64-xbzrle-completed.log"]  # fmt: skip
    for path in logs:  # the last: sampled every second, fitted on a guest 2 times smaller
        fit = _fit(1, "t", load_run(path))
        cal = fit.calibration
        replay = _outcome_at_scale(fit.best, fit.setup.scale)
        assert fit.best.class_ok == cal.replay_class_ok
        assert replay.total_time_s == cal.replay.outcome.total_time_s
        assert replay.transferred_bytes == cal.replay.outcome.transferred_bytes


def test_a_recording_cut_by_a_full_disk_is_kept_whole_from_memory(db, tmp_path):
    from migtune.cli.history import record_quietly
    from migtune.history import raw_text
    from migtune.sources import load_run

    path = LAB / "below-link-2.jsonl"
    full = path.read_text()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(full.splitlines(keepends=True)[:5]))  # the disk filled here
    run = load_run(path)
    run.lines = full.splitlines()  # what the migration driver kept in memory
    run_id = record_quietly(run, origin="migrate", recording=str(cut))
    assert raw_text(run_id).decode().splitlines() == full.splitlines()
