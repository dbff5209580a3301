"""A real `lab run` adds its migration to the history, with the recording it made in
memory when no --record file was asked for (one small idle image, a few seconds)."""

from __future__ import annotations

import json
import shutil

import pytest

from migtune.cli.main import main
from migtune.history import list_runs, raw_text
from migtune.sources import parse_text

pytestmark = pytest.mark.qemu


def test_lab_run_is_in_the_history(image, tmp_path, monkeypatch, capsys):
    db = tmp_path / "history.db"
    monkeypatch.setenv("MIGTUNE_DB", str(db))
    argv = ["lab", "run", "--ram", "256MiB", "--workload", "idle", "--max-bandwidth",
            "64MiB/s", "--time-limit", "60s", "--vm", "lab-idle", "--json"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    (row,) = list_runs(db=db)
    assert row["origin"] == "lab" and row["vm"] == "lab-idle" and row["workload"] == "idle"
    assert row["status"] == out["status"] == "completed"
    assert row["transferred_bytes"] == out["transferred_bytes"]
    assert row["qemu_version"] == out["qemu_version"]
    assert row["source"] is None  # no --record: the text is the recording kept in memory
    run = parse_text(raw_text(row["id"], db=db).decode())
    assert run.status == "completed" and len(run.samples) >= 2


def test_migrate_is_in_the_history(tmp_path, monkeypatch, capsys):
    """`migtune migrate` between two BIOS-only QEMUs (a second or two), no --record."""
    import socket

    from migtune.qemu.process import QemuProcess, free_port

    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    db = tmp_path / "history.db"
    monkeypatch.setenv("MIGTUNE_DB", str(db))
    port = free_port()
    args = ["-machine", "pc", "-m", "256"]
    src = QemuProcess(args, accel="tcg", name="src").start()
    dst = QemuProcess([*args, "-incoming", f"tcp:127.0.0.1:{port}"], accel="tcg", name="dst")
    try:
        dst.start()
        argv = ["migrate", "--qmp", src.qmp_path, "--to", f"tcp:127.0.0.1:{port}",
                "--dest-qmp", dst.qmp_path, "--vm", "bios", "--no-diagnosis"]  # fmt: skip
        assert main(argv) == 0
    finally:
        dst.stop()
        src.stop()
    out = capsys.readouterr().out
    (row,) = list_runs(db=db)
    assert f"history: run #{row['id']}" in out
    assert (row["origin"], row["vm"], row["status"]) == ("migrate", "bios", "completed")
    assert row["source_host"] == socket.gethostname() and row["target_host"] == "127.0.0.1"
    run = parse_text(raw_text(row["id"], db=db).decode())
    assert run.meta["origin"] == "migrate" and run.status == "completed"
