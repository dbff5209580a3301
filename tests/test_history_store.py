"""The history database: where it lives, schema versions and migrations, concurrent
writers, and files that are not ours (never written)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migtune.errors import InputError
from migtune.history import list_runs, open_store, record_run
from migtune.history.entries import parse_since
from migtune.history.schema import APPLICATION_ID, SCHEMA_VERSION
from migtune.history.store import default_path
from migtune.sources import load_run

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "tests" / "fixtures" / "lab"


def _add(db: Path, name: str = "below-link-1.jsonl", vm: str = "vm1") -> int:
    path = LAB / name
    return record_run(load_run(path), path.read_bytes(), origin="add", db=db, vm=vm)


def test_new_database_is_stamped_and_in_wal_mode(tmp_path):
    db = tmp_path / "h.db"
    run_id = _add(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    (row,) = conn.execute("SELECT id, vm, status, passes FROM runs").fetchall()
    assert row == (run_id, "vm1", "completed", 6)


def test_default_path_follows_xdg_and_migtune_db(monkeypatch, tmp_path):
    monkeypatch.delenv("MIGTUNE_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_path() == tmp_path / "data" / "migtune" / "history.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".local" / "share" / "migtune" / "history.db"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/is/ignored")  # the spec says so
    assert default_path() == tmp_path / "home" / ".local" / "share" / "migtune" / "history.db"
    monkeypatch.setenv("MIGTUNE_DB", str(tmp_path / "x.db"))
    assert default_path() == tmp_path / "x.db"


def test_the_suite_never_uses_the_users_history():
    # conftest points MIGTUNE_DB at a temporary file for every test
    assert not str(default_path()).startswith(str(Path.home() / ".local" / "share"))


def test_reading_commands_do_not_create_a_file(tmp_path):
    db = tmp_path / "none.db"
    assert list_runs(db=db) == []
    assert not db.exists()


# The schema as version 1 shipped it, written by hand as an old migtune left it.
V1_SQL = """
CREATE TABLE [runs] (
   [id] INTEGER PRIMARY KEY, [at] TEXT NOT NULL, [added_at] TEXT NOT NULL,
   [started_at] TEXT, [origin] TEXT NOT NULL, [vm] TEXT, [source_host] TEXT,
   [target_host] TEXT, [qemu_version] TEXT, [format] TEXT, [source] TEXT, [status] TEXT,
   [converged] INTEGER, [total_time_s] FLOAT, [downtime_ms] FLOAT,
   [transferred_bytes] INTEGER, [passes] INTEGER, [max_throttle_pct] FLOAT,
   [ram_bytes] INTEGER, [workload] TEXT, [summary] TEXT, [settings] TEXT, [meta] TEXT,
   [raw] BLOB, [raw_encoding] TEXT, [raw_bytes] INTEGER, [raw_sha256] TEXT,
   [migtune_version] TEXT
);
CREATE INDEX [runs_sha256] ON [runs] ([raw_sha256]);
INSERT INTO runs (at, added_at, origin, vm, status, converged, summary, settings, meta)
VALUES ('2026-01-02T03:04:05+00:00', '2026-01-02T03:04:05+00:00', 'add', 'old-vm',
        'completed', 1, '{"status": "completed"}', '{}', '{}');
"""


def test_an_older_schema_is_migrated_on_open_and_keeps_its_rows(tmp_path):
    db = tmp_path / "v1.db"
    conn = sqlite3.connect(db)
    conn.executescript(V1_SQL)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    rows = list_runs(db=db)
    assert [(r["id"], r["vm"], r["status"]) for r in rows] == [(1, "old-vm", "completed")]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "calibrations"} <= tables
    conn.close()
    new_id = _add(db, vm="old-vm")
    assert [r["id"] for r in list_runs(db=db, vm="old-vm")] == [1, new_id]


def _stamp_newer(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()


def _cli(*args: str, db: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "migtune", *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "MIGTUNE_DB": str(db)},
        timeout=120,
    )


def _check_untouched(db: Path, expect: str) -> None:
    """Every way in (reading, adding, the automatic recording) refuses with one line and
    leaves every byte of the file as it was."""
    before = db.read_bytes()
    for args in (
        ["history", "list"],
        ["history", "add", str(LAB / "idle-1.jsonl")],
        ["history", "calibrate", "--vm", "vm1"],
    ):
        proc = _cli(*args, db=db)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("migtune: error: ")
        assert expect in proc.stderr and str(db) in proc.stderr
    rec = db.parent / "sim.jsonl"
    proc = _cli(
        "simulate", "--ram", "128MiB", "--workload", "idle", "--record", str(rec), "--json", db=db
    )
    assert proc.returncode == 0  # the run itself is not disturbed
    assert json.loads(proc.stdout)["converged"] is True
    (warning,) = proc.stderr.splitlines()
    assert warning.startswith("migtune: warning: not added to the history:") and expect in warning
    assert db.read_bytes() == before
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()


def test_a_newer_schema_is_refused_and_left_alone(tmp_path):
    db = tmp_path / "new.db"
    _add(db)
    _stamp_newer(db)
    with pytest.raises(InputError, match="newer than this migtune knows"):
        open_store(db)
    _check_untouched(db, "newer than this migtune knows")


def test_a_file_that_is_not_sqlite_is_left_alone(tmp_path):
    db = tmp_path / "notes.db"
    db.write_text("my notes, not a database\n" * 50)
    _check_untouched(db, "not an SQLite file")


def test_another_programs_sqlite_file_is_left_alone(tmp_path):
    db = tmp_path / "foreign.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    conn.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    conn.commit()
    conn.close()
    _check_untouched(db, "another program: invoices")


def test_a_corrupted_history_is_left_alone(tmp_path):
    db = tmp_path / "broken.db"
    for name in ("below-link-1.jsonl", "below-link-2.jsonl", "idle-1.jsonl", "postcopy-1.jsonl"):
        _add(db, name)
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 3 * page
    data[page + 8 : 2 * page] = b"\xa5" * (page - 8)  # the second page: garbage
    db.write_bytes(bytes(data))
    _check_untouched(db, "corrupted SQLite file")


def test_an_empty_file_becomes_a_history(tmp_path):
    db = tmp_path / "empty.db"
    db.touch()
    _add(db)
    assert len(list_runs(db=db)) == 1


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from migtune.history import record_run
    from migtune.sources import load_run
    db, name, start, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    run = load_run(sys.argv[5])
    while not Path(start).exists():
        time.sleep(0.005)
    for i in range(n):
        raw = f"{name} {i}\\n".encode() * 200  # distinct text: not a duplicate
        record_run(run, raw, origin="lab", db=db, vm=name)
    """
)


def test_two_writers_at_once_lose_nothing(tmp_path):
    db = tmp_path / "shared.db"  # does not exist yet: both processes race to create it
    start = tmp_path / "go"
    n = 40
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(db),
                name,
                str(start),
                str(n),
                str(LAB / "below-link-1.jsonl"),
            ],
            env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name in ("writer-a", "writer-b")
    ]
    start.touch()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    rows = list_runs(db=db)
    assert len(rows) == 2 * n
    assert len({r["id"] for r in rows}) == 2 * n
    assert sum(r["vm"] == "writer-a" for r in rows) == n


def test_the_same_text_added_twice_is_one_run(tmp_path):
    db = tmp_path / "h.db"
    first = _add(db)
    assert _add(db) == first
    assert _add(db, vm="another") != first  # another VM's run, even with the same text
    assert len(list_runs(db=db)) == 2


def test_since_accepts_durations_and_iso_times():
    now = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    assert parse_since("2d", now) == "2026-11-28T06:00:00+00:00"
    assert parse_since("90min", now) == "2026-11-30T04:30:00+00:00"
    assert parse_since("2026-11-29T10:00+02:00", now) == "2026-11-29T08:00:00+00:00"
    with pytest.raises(InputError, match="--since"):
        parse_since("last tuesday", now)


def test_text_above_the_limit_keeps_only_size_and_hash(tmp_path, monkeypatch, capsys):
    import hashlib

    from migtune.cli.main import main
    from migtune.history import entries, raw_text

    src = LAB / "below-link-1.jsonl"
    data = src.read_bytes()
    kept = entries.compress_file(str(src), chunk=7)  # chunk boundaries do not matter
    assert kept.size == len(data) and kept.sha256 == hashlib.sha256(data).hexdigest()
    assert zlib.decompress(kept.blob) == data
    monkeypatch.setattr(entries, "MAX_RAW_BYTES", len(data) - 1)
    db = tmp_path / "h.db"
    assert main(["history", "add", str(src), "--vm", "big", "--db", str(db)]) == 0
    (row,) = list_runs(db=db)
    assert row["raw_stored"] is False and row["raw_bytes"] == len(data)
    assert row["raw_sha256"] == kept.sha256 and row["status"] == "completed"
    with pytest.raises(InputError, match="too big to keep"):
        raw_text(row["id"], db=db)
    capsys.readouterr()
    assert main(["history", "calibrate", "--vm", "big", "--db", str(db)]) == 2
    assert "too big to keep" in capsys.readouterr().err
