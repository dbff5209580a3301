"""The fault table, against real QEMU: whatever goes wrong, the source VM keeps running,
no QEMU is left behind, and the migration settings are what they were before.

Guests are BIOS-only (256 MiB, 16 MiB of random data, see test_migrate_qemu) on a link
capped at 2 MiB/s, so a migration stays busy for about 8 s; malformed replies come
from a tiny fake QMP server (that tests the client, not a migration).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from migtune.cli.main import main
from migtune.errors import MigtuneError
from migtune.model import Settings
from migtune.qemu import process as qproc
from migtune.qemu.migrate import migrate
from migtune.qemu.process import QemuProcess, clean_stale_workdirs, free_port
from migtune.sources import load_run
from migtune.units import MiB

pytestmark = pytest.mark.qemu

if not qproc.shutil.which(qproc.QEMU_BINARY):
    pytest.skip("qemu-system-x86_64 is not installed", allow_module_level=True)

CAP = ["--max-bandwidth", "2MiB/s"]
CHANGED = [*CAP, "--downtime-limit", "5s", "--xbzrle", "--xbzrle-cache-size", "8MiB"]
NOISE = ("Traceback", "Task was destroyed", "no running event loop", "internal error")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture(scope="module")
def blob(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ram") / "random.bin"
    path.write_bytes(os.urandom(16 * MiB))
    return str(path)


@pytest.fixture
def pair(blob):
    """A busy source and a destination listening on a free port; none may outlive the test."""
    started: list[QemuProcess] = []
    port = free_port()
    busy = ["-machine", "pc", "-m", "256", "-device", f"loader,file={blob},addr=0x1000000"]
    for name, extra in (("src", []), ("dst", ["-incoming", f"tcp:127.0.0.1:{port}"])):
        started.append(QemuProcess([*busy, *extra], accel="tcg", name=name).start())
    yield started[0], started[1], f"tcp:127.0.0.1:{port}"
    for p in started:
        if p.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)  # a stopped destination cannot quit
        p.stop()
    leaked = [p.pid for p in started if p.pid is not None and not _gone(p.pid)]
    assert not leaked, f"QEMU processes outlived the test: {leaked}"
    assert not qproc.live_pids()


def _settings_of(p: QemuProcess) -> tuple[dict, list]:
    q = p.qmp()
    return q.cmd("query-migrate-parameters"), q.cmd("query-migrate-capabilities")


def _source_ok(src: QemuProcess) -> None:
    assert src.qmp().status() == "running"
    assert src.qmp().cmd("query-migrate").get("status") in (None, "none", "cancelled", "failed")


def _cli(*args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "migtune", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_active(src: QemuProcess, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + 20
    while src.qmp().cmd("query-migrate").get("status") != "active":
        assert time.monotonic() < deadline and (proc is None or proc.poll() is None)
        time.sleep(0.1)


def _one_error_line(err: str, *words: str) -> None:
    lines = [x for x in err.splitlines() if x.startswith("migtune: error:")]
    assert len(lines) == 1, err
    assert all(w in lines[0] for w in words), err
    assert not any(n in err for n in NOISE), err


# -- killed destination, signals, time limit: cancelled, source running, settings back ------


def test_destination_killed_is_gone_not_silent(pair):
    src, dst, uri = pair
    before = _settings_of(src)
    threading.Timer(1.5, dst.kill).start()
    s = Settings(max_bandwidth=2 * MiB, downtime_limit=5.0)
    result = migrate(src.qmp_path, uri, s, dest_qmp=dst.qmp_path, progress=False,
                     poll_interval=0.2, time_limit=20)  # fmt: skip
    assert result.status == "failed" and result.exit_code == 4
    assert "process is gone" in (result.reason or "")
    assert result.source_status == "running" and result.settings_restored is True
    _source_ok(src)
    assert _settings_of(src) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_cancels_exit_3_and_restores(pair, sig):
    src, dst, uri = pair
    before = _settings_of(src)
    proc = _cli("migrate", "--qmp", src.qmp_path, "--to", uri, *CHANGED, "--no-diagnosis")
    _wait_active(src, proc)
    time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 3, err
    assert "migration cancelled" in out and "settings in force before were restored" in out
    assert not any(n in err for n in NOISE), err
    _source_ok(src)
    assert _settings_of(src) == before


def test_time_limit_restores_settings(pair, tmp_path):
    src, dst, uri = pair
    before = _settings_of(src)
    s = Settings(max_bandwidth=1 * MiB, downtime_limit=5.0, xbzrle_cache_size=8 * MiB)
    s.capabilities["xbzrle"] = True
    result = migrate(src.qmp_path, uri, s, time_limit=1.5, progress=False, poll_interval=0.2,
                     policy="proxmox")  # fmt: skip
    assert result.status == "cancelled" and "time limit" in (result.reason or "")
    assert result.run.settings.max_bandwidth == 1 * MiB  # what was in force during the run
    _source_ok(src)
    assert _settings_of(src) == before


def test_migrate_refused_by_qemu_restores_at_once(pair, capsys):
    src, dst, uri = pair
    before = _settings_of(src)
    t = time.monotonic()
    rc = main(["migrate", "--qmp", src.qmp_path, "--to", "nonsense:1", *CHANGED])
    assert rc == 2 and time.monotonic() - t < 5
    _one_error_line(capsys.readouterr().err, "QEMU rejected migrate")
    assert _settings_of(src) == before
    _source_ok(src)


def test_a_bug_mid_migration_cancels_first(pair, monkeypatch):
    """Any exception inside migtune (here: the progress display) ends in migrate_cancel."""
    src, dst, uri = pair
    before = _settings_of(src)
    monkeypatch.delenv("MIGTUNE_DEBUG", raising=False)

    def broken_display(sample: Any, extra: Any) -> None:
        if sample.status == "active":
            raise ZeroDivisionError("division by zero")

    with pytest.raises(MigtuneError) as info:
        migrate(src.qmp_path, uri, Settings(max_bandwidth=1 * MiB), progress=broken_display,
                poll_interval=0.2, time_limit=20)  # fmt: skip
    assert info.value.exit_code == 1
    assert str(info.value) == (
        "internal error: ZeroDivisionError: division by zero; the migration was cancelled, "
        "source VM running (set MIGTUNE_DEBUG=1 for details)"
    )
    assert src.qmp().cmd("query-migrate")["status"] == "cancelled"
    _source_ok(src)
    assert _settings_of(src) == before


def test_destination_settings_restored_after_a_failure(tmp_path, capsys):
    """A destination started with -incoming defer gets capabilities before it listens; if
    the migration then fails to start, it has them taken back."""
    dst = QemuProcess(["-machine", "pc", "-m", "256", "-incoming", "defer"], accel="tcg",
                      name="dst").start()  # fmt: skip
    src = QemuProcess(["-machine", "pc", "-m", "256"], accel="tcg", name="src").start()
    try:
        before = _settings_of(dst)
        rc = main(["migrate", "--qmp", src.qmp_path, "--to", "nonsense:1", "--dest-qmp",
                   dst.qmp_path, "--xbzrle", "--multifd-channels", "3", "--no-multifd"])  # fmt: skip
        assert rc == 2
        _one_error_line(capsys.readouterr().err, "QEMU rejected migrate-incoming")
        assert _settings_of(dst) == before
        assert dst.qmp().status() == "inmigrate"
        rc = main(["migrate", "--qmp", src.qmp_path, "--to", "nonsense:1", "--dest-qmp",
                   dst.qmp_path, "--xbzrle", "--keep-settings"])  # fmt: skip
        assert rc == 2 and _settings_of(dst) != before  # what the restore undid
    finally:
        src.stop()
        dst.stop()
    assert _gone(src.pid) and _gone(dst.pid)


def test_keep_settings_leaves_them(pair):
    src, dst, uri = pair
    rc = main(["migrate", "--qmp", src.qmp_path, "--to", uri, "--max-bandwidth", "1MiB/s",
               "--time-limit", "1s", "--keep-settings", "--no-diagnosis"])  # fmt: skip
    assert rc == 3
    assert src.qmp().cmd("query-migrate-parameters")["max-bandwidth"] == 1 * MiB
    _source_ok(src)


# -- migtune killed outright: --attach and --cancel take it back ---------------------------


def _kill_midway(src: QemuProcess, uri: str, *extra: str) -> None:
    proc = _cli("migrate", "--qmp", src.qmp_path, "--to", uri, *CHANGED, *extra)
    _wait_active(src, proc)
    proc.kill()
    proc.wait()
    time.sleep(0.3)
    assert src.qmp().cmd("query-migrate")["status"] == "active"  # nobody watches it now


def test_sigkill_then_attach_supervises_to_the_end(pair, tmp_path, capsys):
    src, dst, uri = pair
    before = _settings_of(src)
    _kill_midway(src, uri)
    rc = main(["migrate", "--qmp", src.qmp_path, "--to", uri, "--no-diagnosis"])
    assert rc == 2 and "--attach" in capsys.readouterr().err  # refused, and says how
    rec = tmp_path / "attached.jsonl"
    argv = ["migrate", "--attach", "--qmp", src.qmp_path, "--record", str(rec)]
    rc = main([*argv, "--policy", "proxmox", "--time-limit", "60s", "--no-diagnosis"])
    assert rc == 0, capsys.readouterr()
    assert dst.qmp().status() == "running"
    run = load_run(rec)
    assert run.status == "completed" and run.meta["attached"] is True
    assert run.samples[0].t > 0.5  # its clock is QEMU's: the migration began before the attach
    assert _settings_of(src) == before  # the killed migtune's snapshot was put back


def test_attach_and_cancel_refuse_a_migration_migtune_still_supervises(pair, capsys):
    src, dst, uri = pair
    proc = _cli("migrate", "--qmp", src.qmp_path, "--to", uri, *CAP, "--no-diagnosis")
    _wait_active(src, proc)
    for how in ("--attach", "--cancel"):
        assert main(["migrate", how, "--qmp", src.qmp_path]) == 2
        _one_error_line(capsys.readouterr().err, f"(PID {proc.pid}) is supervising", "kill -TERM")
    proc.terminate()
    assert proc.wait(timeout=40) == 3
    _source_ok(src)


def test_sigkill_then_cancel(pair, capsys):
    src, dst, uri = pair
    before = _settings_of(src)
    _kill_midway(src, uri)
    rc = main(["migrate", "--cancel", "--qmp", src.qmp_path])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "migration cancelled (was active); source VM running, settings restored" in out
    _source_ok(src)
    assert _settings_of(src) == before
    rc = main(["migrate", "--cancel", "--qmp", src.qmp_path])
    _one_error_line(capsys.readouterr().err, "no migration in progress")
    assert rc == 2


# -- a destination that stops answering (SIGSTOP, as in a network stall) ---------------------


def test_stalled_destination_within_grace_completes(pair):
    src, dst, uri = pair
    threading.Timer(1.0, os.kill, (dst.pid, signal.SIGSTOP)).start()
    threading.Timer(5.0, os.kill, (dst.pid, signal.SIGCONT)).start()
    result = migrate(src.qmp_path, uri, Settings(max_bandwidth=2 * MiB), dest_qmp=dst.qmp_path,
                     dest_grace=12, progress=False, poll_interval=0.2, time_limit=40)  # fmt: skip
    assert result.status == "completed", result.reason
    assert "the destination stopped answering; waiting for it" in result.warnings
    assert dst.qmp().status() == "running"


def test_stalled_destination_beyond_grace_is_failed_cleanly(pair):
    src, dst, uri = pair
    before = _settings_of(src)
    threading.Timer(1.0, os.kill, (dst.pid, signal.SIGSTOP)).start()
    t = time.monotonic()
    result = migrate(src.qmp_path, uri, Settings(max_bandwidth=2 * MiB), dest_qmp=dst.qmp_path,
                     dest_grace=3, progress=False, poll_interval=0.2, time_limit=40)  # fmt: skip
    assert time.monotonic() - t < 20
    assert result.status == "failed"
    assert "not answering" in (result.reason or "") and "grace 3 s" in result.reason
    assert result.source_status == "running"
    _source_ok(src)
    assert _settings_of(src) == before


# -- recording onto a full or read-only filesystem ----------------------------------------


@pytest.fixture
def tiny_fs(tmp_path):
    """A 64 KiB tmpfs (the real thing: writes fail with ENOSPC)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave: int = 0) -> None:
    """Fill the filesystem, then free ``leave`` bytes again."""
    with contextlib.suppress(OSError), open(mnt / "filler", "wb") as fh:
        while True:
            fh.write(b"x" * 4096)
            fh.flush()
    if leave:
        filler = mnt / "filler"
        os.truncate(filler, max(0, filler.stat().st_size - leave))


def test_full_disk_before_start_is_one_line_and_nothing_changes(pair, tiny_fs, capsys):
    src, dst, uri = pair
    before = _settings_of(src)
    _fill(tiny_fs)
    rc = main(["migrate", "--qmp", src.qmp_path, "--to", uri, *CHANGED,
               "--record", str(tiny_fs / "run.jsonl")])  # fmt: skip
    assert rc == 2
    _one_error_line(capsys.readouterr().err, "run.jsonl", "No space left on device")
    assert src.qmp().cmd("query-migrate").get("status") in (None, "none")  # never started
    assert _settings_of(src) == before


def test_disk_fills_during_record_migration_goes_on(pair, tiny_fs):
    src, dst, uri = pair
    before = _settings_of(src)
    _fill(tiny_fs, leave=24 * 1024)  # room for the start (header, first samples), not the end
    rec = tiny_fs / "run.jsonl"
    proc = _cli("migrate", "--qmp", src.qmp_path, "--to", uri, "--dest-qmp", dst.qmp_path,
                *CHANGED, "--poll-interval", "0.1s", "--time-limit", "60s", "--record", str(rec),
                "--no-diagnosis")  # fmt: skip
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err  # completed, supervised to the end
    assert "migration completed" in out
    warned = [x for x in err.splitlines() if "No space left on device" in x]
    assert len(warned) == 1 and "recording stopped, the migration goes on" in warned[0], err
    assert not any(n in err for n in NOISE), err
    assert 0 < rec.stat().st_size <= 24 * 1024
    assert load_run(rec).samples  # what was written reads back as a partial run
    assert dst.qmp().status() == "running"
    assert _settings_of(src) == before


def test_read_only_record_path_is_one_line(pair, tmp_path, capsys):
    src, dst, uri = pair
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)]).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        rc = main(["migrate", "--qmp", src.qmp_path, "--to", uri, "--record", str(ro / "r.jsonl")])
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)
    assert rc == 2
    _one_error_line(capsys.readouterr().err, "cannot write recording")
    assert src.qmp().cmd("query-migrate").get("status") in (None, "none")


# -- sockets that are missing, not QMP, or answer nonsense --------------------------------


class FakeQMP(threading.Thread):
    """A unix-socket peer: a QMP greeting then ``answers[command]`` (value or callable),
    or ``banner`` bytes and a hang-up.  ``received`` lists the commands it was sent."""

    def __init__(self, path: Path, answers: dict[str, Any] | None = None, banner: bytes = b""):
        super().__init__(daemon=True)
        self.path, self.answers, self.banner = str(path), answers or {}, banner
        self.received: list[str] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(4)
        self.start()

    def run(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.server.accept()
                threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            if self.banner:
                conn.sendall(self.banner)
                return
            greeting = {"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 2},
                                            "package": ""}, "capabilities": []}}  # fmt: skip
            conn.sendall(json.dumps(greeting).encode() + b"\r\n")
            buf, dec = "", json.JSONDecoder()
            while chunk := conn.recv(65536):
                buf += chunk.decode()
                while buf.strip():
                    try:
                        msg, end = dec.raw_decode(buf.lstrip())
                    except ValueError:
                        break
                    buf = buf.lstrip()[end:]
                    name = msg.get("execute")
                    self.received.append(name)
                    value = self.answers.get(name, {})
                    value = value(self) if callable(value) else value
                    reply = {"return": value, **({"id": msg["id"]} if "id" in msg else {})}
                    conn.sendall(json.dumps(reply).encode() + b"\r\n")

    def close(self) -> None:
        self.server.close()


def _qemu_like(**overrides: Any) -> dict[str, Any]:
    answers: dict[str, Any] = {
        "query-version": {"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": ""},
        "query-migrate-capabilities": [{"capability": "xbzrle", "state": False}],
        "query-migrate-parameters": {"downtime-limit": 300, "max-bandwidth": 134217728},
        "query-status": {"status": "running", "running": True},
        "query-memory-size-summary": {"base-memory": 256 * MiB},
        "query-migrate": {},
    }
    return {**answers, **overrides}


def test_missing_non_qmp_and_garbage_sockets(tmp_path, capsys):
    argv = ["migrate", "--to", "tcp:127.0.0.1:1", "--qmp"]
    assert main([*argv, str(tmp_path / "none.qmp")]) == 5
    _one_error_line(capsys.readouterr().err, "does not exist")
    for name, banner in (("ssh", b"SSH-2.0-OpenSSH_9.2\r\n"), ("junk", os.urandom(256) + b"\n")):
        fake = FakeQMP(tmp_path / f"{name}.sock", banner=banner)
        try:
            assert main([*argv, fake.path]) == 5
        finally:
            fake.close()
        _one_error_line(capsys.readouterr().err, "cannot connect to QMP socket", fake.path)


@pytest.mark.parametrize(
    ("command", "bad"),
    [("query-migrate", 5), ("query-status", {"status": 7}), ("query-version", "ten"),
     ("query-migrate-capabilities", {"xbzrle": True})],
)  # fmt: skip
def test_malformed_reply_before_start_names_the_command(tmp_path, capsys, command, bad):
    fake = FakeQMP(tmp_path / "q.sock", _qemu_like(**{command: bad}))
    try:
        rc = main(["migrate", "--qmp", fake.path, "--to", "tcp:127.0.0.1:1"])
    finally:
        fake.close()
    assert rc == 5
    _one_error_line(capsys.readouterr().err, f"malformed QMP reply to {command}")
    assert "migrate" not in fake.received


def test_malformed_reply_mid_migration_cancels_then_errors(tmp_path, capsys):
    def status(server: FakeQMP) -> Any:
        return 5 if "migrate" in server.received else {"status": "none"}

    fake = FakeQMP(tmp_path / "q.sock", _qemu_like(**{"query-migrate": status}))
    try:
        rc = main(["migrate", "--qmp", fake.path, "--to", "tcp:127.0.0.1:1", "--json"])
    finally:
        fake.close()
    assert rc == 5
    _one_error_line(capsys.readouterr().err, "malformed QMP reply to query-migrate", "cancelled")
    assert "migrate_cancel" in fake.received  # never left unsupervised


# -- post-copy needs its opt-in, however it is asked for -----------------------------------


@pytest.mark.parametrize("command", [["migrate", "--qmp", "/nonexistent", "--to", "tcp:x:1"],
                                     ["lab", "run", "--ram", "256MiB"]])  # fmt: skip
def test_postcopy_without_opt_in_is_refused(command, capsys):
    assert main([*command, "--set", "postcopy-ram=on"]) == 2
    _one_error_line(capsys.readouterr().err, "postcopy-ram=on needs --postcopy")


# -- the lab: signals while booting, stale work directories --------------------------------


def _lab(tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "migtune", "lab", "run", "--ram", "256MiB", "--accel", "tcg"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _workdirs(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("migtune-lab-*"))


def _qemus_under(tmp_path: Path) -> list[int]:
    """QEMU processes whose command line points into ``tmp_path`` (the lab's work dirs)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            ours = str(tmp_path).encode() in b" ".join(argv)
            if argv[0].endswith(b"qemu-system-x86_64") and ours and not _gone(int(entry.name)):
                found.append(int(entry.name))
    return found


def _no_qemu_left(tmp_path: Path) -> None:
    deadline = time.monotonic() + 10
    while _qemus_under(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _qemus_under(tmp_path) == []


def _wait_for_dirs(tmp_path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while len(_workdirs(tmp_path)) < 2 or not list(tmp_path.glob("migtune-lab-dst-*/*.qmp")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_while_lab_boots_exits_3_and_cleans_up(tmp_path, sig):
    proc = _lab(tmp_path)
    _wait_for_dirs(tmp_path, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    _one_error_line(err, "the lab run was stopped")
    assert _workdirs(tmp_path) == []
    _no_qemu_left(tmp_path)


def test_stale_lab_dirs_of_a_killed_run_are_cleaned_next_time(tmp_path):
    proc = _lab(tmp_path)
    _wait_for_dirs(tmp_path, proc)
    proc.kill()  # SIGKILL: no clean-up possible; QEMU dies with its owner
    proc.communicate(timeout=30)
    _no_qemu_left(tmp_path)
    left = _workdirs(tmp_path)
    assert len(left) == 2
    alive = tmp_path / "migtune-lab-src-alive"  # a run still going: its directory stays
    alive.mkdir()
    (alive / "owner.pid").write_text(f"{os.getppid()}\n")
    assert sorted(clean_stale_workdirs(tmp_path, force=True)) == left
    assert _workdirs(tmp_path) == [alive]


def test_sigterm_during_a_matrix_migration_stops_the_matrix(tmp_path):
    """The signal cancels the migration, and the matrix does not go on to the next run."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = tmp_path / "matrix"
    cmd = [sys.executable, "-m", "migtune", "lab", "matrix", "--only", "above-link",
           "--repeat", "2", "--accel", "tcg", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 90
    while not list(out.glob("*.jsonl")):  # the header is written as the migration starts
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    time.sleep(1.0)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    _one_error_line(err, "terminated: the matrix was stopped during above-link")
    assert [p.name for p in out.glob("*.jsonl")] == ["above-link-1.jsonl"]
    assert load_run(out / "above-link-1.jsonl").status == "cancelled"
    assert _workdirs(tmp_path) == []
    _no_qemu_left(tmp_path)
