"""The pieces that keep a real migration safe, without QEMU: QMP reply shapes, the
recording that gives up instead of failing, stale work directories, post-copy opt-in,
interrupts deferred out of the QMP event loop.  (With QEMU: test_faults_qemu.py.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from migtune.cli.options import postcopy_rule_from_options, settings_from_options
from migtune.errors import InputError
from migtune.outputs.recording import RecordingTee, RecordingWriter
from migtune.qemu import qmp as qmp_mod
from migtune.qemu.process import clean_stale_workdirs
from migtune.qemu.qmp import QMPReplyError, check_reply, interrupt_safely
from migtune.qemu.restore import SettingsSnapshot


@pytest.mark.parametrize(
    ("command", "value", "words"),
    [
        ("query-migrate", 5, "expected an object, got 5"),
        ("query-migrate", [], "expected an object"),
        ("query-status", {"status": None}, "'status' is None"),
        ("query-version", {"qemu": {"major": "10"}}, "bad version"),
        ("query-migrate-capabilities", [{"capability": "xbzrle", "state": "on"}], "bad capab"),
        ("query-migrate-parameters", "x" * 200, "..."),
    ],
)
def test_malformed_replies_name_the_command(command, value, words):
    with pytest.raises(QMPReplyError) as info:
        check_reply(command, value)
    assert str(info.value).startswith(f"malformed QMP reply to {command}: ")
    assert words in str(info.value) and len(str(info.value)) < 140
    assert info.value.exit_code == 5


def test_well_formed_replies_pass_unchanged():
    caps = [{"capability": "xbzrle", "state": False}]
    assert check_reply("query-migrate-capabilities", caps) is caps
    assert check_reply("query-migrate", {}) == {}
    assert check_reply("migrate-set-parameters", 5) == 5  # commands without a shape


def test_recording_stops_with_one_warning_when_the_disk_fails(tmp_path):
    stopped: list[str] = []
    tee = RecordingTee(tmp_path / "r.jsonl", on_stop=stopped.append)
    rec = RecordingWriter(None, stream=tee)
    rec.header("migrate", {}, 0.0)
    tee.strict = False
    tee.file.close()
    tee.file = open("/dev/full", "w", encoding="utf-8")  # noqa: SIM115 - every write: ENOSPC
    for i in range(3):
        rec.sample(float(i), {"status": "active"})
    assert len(stopped) == 1 and "No space left on device" in stopped[0]
    assert tee.getvalue().count('"kind":"sample"') == 3  # the copy in memory goes on
    assert (tmp_path / "r.jsonl").read_text().count("\n") == 1  # the header made it


def test_recording_write_error_before_start_is_an_input_error(tmp_path):
    tee = RecordingTee(tmp_path / "r.jsonl")
    tee.file = open("/dev/full", "w", encoding="utf-8")  # noqa: SIM115
    with pytest.raises(InputError, match="cannot write recording .*No space left"):
        tee.write("header\n")


def test_unwritable_recording_paths(tmp_path):
    with pytest.raises(InputError, match="no such directory"):
        RecordingTee(tmp_path / "missing" / "r.jsonl")
    with pytest.raises(InputError, match="not a file"):
        RecordingTee(tmp_path)
    assert not list(tmp_path.iterdir())  # the write probe leaves nothing behind
    RecordingTee(tmp_path / "ok.jsonl")
    assert not list(tmp_path.iterdir())


def test_stale_workdirs_only_of_dead_owners(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live, foreign = (tmp_path / f"migtune-lab-{n}" for n in ("stale", "live", "nopid"))
    for d in (stale, live, foreign):
        d.mkdir()
    (stale / "owner.pid").write_text(f"{dead.pid}\n")
    (live / "owner.pid").write_text(f"{os.getppid()}\n")
    assert clean_stale_workdirs(tmp_path, force=True) == [stale]
    assert sorted(tmp_path.iterdir()) == [live, foreign]


def test_postcopy_needs_the_flag_where_a_real_migration_runs():
    opts = {"set_": ("postcopy-ram=on",)}
    settings = settings_from_options(opts)
    with pytest.raises(InputError, match="postcopy-ram=on needs --postcopy"):
        postcopy_rule_from_options(opts, settings, explicit=True)
    assert postcopy_rule_from_options(opts, settings).allow  # the simulator risks nothing
    opts = {"set_": ("postcopy-ram=on",), "postcopy": True}
    assert postcopy_rule_from_options(opts, settings_from_options(opts), explicit=True).allow


def test_interrupt_is_deferred_until_the_qmp_loop_returns():
    ran_after: list[bool] = []

    async def work() -> None:
        interrupt_safely(KeyboardInterrupt())  # as a signal handler would, mid-loop
        await asyncio.sleep(0)
        ran_after.append(True)

    with pytest.raises(KeyboardInterrupt):
        qmp_mod._run(work())
    assert ran_after == [True]  # the coroutine finished; the interrupt came after
    with pytest.raises(KeyboardInterrupt):
        interrupt_safely(KeyboardInterrupt())  # no loop running: at once


def test_snapshot_round_trip():
    snap = SettingsSnapshot({"downtime-limit": 300}, {"xbzrle": False})
    assert SettingsSnapshot.from_dict(snap.to_dict()) == snap
    with pytest.raises(ValueError):
        SettingsSnapshot.from_dict({"parameters": 5})


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--qmp", "/nonexistent.qmp"], "--to URI is needed (or --attach / --cancel"),
        (["--qmp", "/x.qmp", "--attach", "--to", "tcp:h:1"], "--attach takes over"),
        (["--qmp", "/x.qmp", "--attach", "--downtime-limit", "1s"], "no --to or settings"),
        (["--qmp", "/x.qmp", "--cancel", "--to", "tcp:h:1"], "--cancel stops the running"),
        (["--qmp", "/x.qmp", "--to", "tcp:h:1", "--set", "postcopy-ram=on"], "needs --postcopy"),
    ],
)
def test_migrate_mode_errors_are_one_line_exit_2(argv, words, capsys):
    from migtune.cli.main import main

    assert main(["migrate", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("migtune: error: ") and words in err
