"""Real QEMU: drive migrations between two BIOS-only guests on loopback (TCG).

A BIOS-only guest needs no kernel: its RAM is mostly zero pages, so it migrates in
well under a second.  For migrations that must still be running when something goes
wrong, 16 MiB of random data is loaded into guest RAM and the link is capped at
2 MiB/s, which keeps the first pass busy for several seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from migtune.cli.main import main
from migtune.errors import UnavailableError
from migtune.model import Settings
from migtune.qemu import process as qproc
from migtune.qemu.migrate import migrate
from migtune.qemu.process import QemuProcess, free_port
from migtune.qemu.progress import eta
from migtune.qemu.tinyguest import dirtying_bios
from migtune.sources import load_run
from migtune.units import MiB

pytestmark = pytest.mark.qemu

if not qproc.shutil.which(qproc.QEMU_BINARY):
    pytest.skip("qemu-system-x86_64 is not installed", allow_module_level=True)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"  # a zombie has exited
    except FileNotFoundError:
        return True


@pytest.fixture
def qemus():
    """Factory for QEMU processes; asserts afterwards that none of them is still alive."""
    started: list[QemuProcess] = []

    def start(*extra: str, name: str = "qemu", incoming: bool = False) -> QemuProcess:
        args = ["-machine", "pc", "-m", "256", *extra]
        p = QemuProcess(args, accel="tcg", name=name)
        started.append(p)
        return p.start()

    yield start
    # The test was supposed to leave nothing running except what it still holds.
    for p in started:
        p.stop()
    leaked = [p.pid for p in started if p.pid is not None and not _gone(p.pid)]
    assert not leaked, f"QEMU processes outlived the test: {leaked}"
    assert not qproc.live_pids()


@pytest.fixture(scope="module")
def blob(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ram") / "random.bin"
    path.write_bytes(os.urandom(16 * MiB))
    return str(path)


def _busy(blob: str) -> list[str]:
    """Arguments that fill 16 MiB of guest RAM with random (non-zero) data."""
    return ["-device", f"loader,file={blob},addr=0x1000000,force-raw=on"]


def _pair(qemus, *extra: str, defer: bool = False):
    port = free_port()
    src = qemus(*extra, name="src")
    incoming = "defer" if defer else f"tcp:127.0.0.1:{port}"
    dst = qemus(*extra, "-incoming", incoming, name="dst")
    return src, dst, f"tcp:127.0.0.1:{port}"


def test_idle_guest_completes_through_cli(qemus, tmp_path, capsys):
    src, dst, uri = _pair(qemus)
    rec = tmp_path / "idle.jsonl"
    argv = ["migrate", "--qmp", src.qmp_path, "--to", uri, "--dest-qmp", dst.qmp_path]
    rc = main([*argv, "--downtime-limit", "300ms", "--record", str(rec), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["converged"] is True and out["status"] == "completed"
    assert out["transferred_bytes"] > 0 and out["passes"] >= 2
    run = load_run(rec)
    assert run.status == "completed"
    assert run.meta["origin"] == "migrate"
    assert run.settings.qemu_version == qproc.qemu_version()
    assert run.settings.downtime_limit == pytest.approx(0.3)
    assert run.samples and run.samples[-1].status == "completed"
    assert dst.qmp().status() == "running"
    assert src.qmp().status() == "postmigrate"


def test_destination_killed_leaves_source_running(qemus, blob):
    """With --dest-qmp migtune sees the destination vanish, cancels, and reports failed."""
    src, dst, uri = _pair(qemus, *_busy(blob))
    threading.Timer(1.5, dst.kill).start()
    result = migrate(
        src.qmp_path, uri, Settings(max_bandwidth=2 * MiB), dest_qmp=dst.qmp_path,
        progress=False, poll_interval=0.2, time_limit=15,
    )  # fmt: skip
    assert result.status == "failed" and result.exit_code == 4
    assert result.outcome.converged is False
    assert result.source_status == "running"
    assert src.qmp().status() == "running"
    assert src.qmp().cmd("query-migrate")["status"] in ("failed", "cancelled")


def test_destination_killed_without_dest_qmp_fails(qemus, blob, tmp_path, capsys):
    """Without --dest-qmp QEMU itself notices the broken stream: status failed, exit 4."""
    src, dst, uri = _pair(qemus, *_busy(blob))
    threading.Timer(1.5, dst.kill).start()
    rec = tmp_path / "killed.jsonl"
    argv = ["migrate", "--qmp", src.qmp_path, "--to", uri, "--max-bandwidth", "2MiB/s"]
    rc = main([*argv, "--time-limit", "15s", "--record", str(rec), "--no-diagnosis"])
    assert rc == 4
    assert "migration failed" in capsys.readouterr().out
    assert load_run(rec).status == "failed"
    assert src.qmp().status() == "running"


def test_time_limit_cancels_with_source_running(qemus, blob, tmp_path):
    src, dst, uri = _pair(qemus, *_busy(blob))
    rec = tmp_path / "limit.jsonl"
    t = time.monotonic()
    result = migrate(
        src.qmp_path, uri, Settings(max_bandwidth=2 * MiB), time_limit=1.5, record=rec,
        progress=False, poll_interval=0.2,
    )  # fmt: skip
    assert time.monotonic() - t < 10
    assert result.status == "cancelled" and result.exit_code == 3
    assert "time limit" in (result.reason or "")
    assert result.source_status == "running"
    assert src.qmp().cmd("query-migrate")["status"] == "cancelled"
    run = load_run(rec)
    assert run.status == "cancelled"
    assert 1.5 <= run.samples[-1].t < 8


def test_sigint_cancels_and_exits_3(qemus, blob, tmp_path):
    src, dst, uri = _pair(qemus, *_busy(blob))
    cmd = [sys.executable, "-m", "migtune", "migrate", "--qmp", src.qmp_path, "--to", uri]
    cmd += ["--max-bandwidth", "2MiB/s", "--time-limit", "15s", "--no-diagnosis"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15  # interrupt once the migration is under way
    while src.qmp().cmd("query-migrate").get("status") != "active":
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    assert "cancelled: interrupted" in out
    assert src.qmp().status() == "running"
    assert src.qmp().cmd("query-migrate")["status"] == "cancelled"


def test_missing_socket_is_one_line_exit_5(tmp_path, capsys):
    rc = main(["migrate", "--qmp", str(tmp_path / "none.qmp"), "--to", "tcp:127.0.0.1:1"])
    err = capsys.readouterr().err
    assert rc == 5
    assert err.count("\n") == 1 and "does not exist" in err
    with pytest.raises(UnavailableError):
        migrate(str(tmp_path / "none.qmp"), "tcp:127.0.0.1:1", Settings(), progress=False)


def test_refused_migration_keeps_an_existing_recording(tmp_path, capsys):
    old = tmp_path / "run.jsonl"
    old.write_text("an earlier recording\n")
    args = ["migrate", "--qmp", str(tmp_path / "none.qmp"), "--to", "tcp:127.0.0.1:1"]
    assert main([*args, "--record", str(old)]) == 5
    assert old.read_text() == "an earlier recording\n"
    assert main([*args, "--record", str(tmp_path / "no" / "dir.jsonl")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_multifd_with_deferred_destination(qemus, tmp_path):
    src, dst, uri = _pair(qemus, defer=True)
    result = migrate(
        src.qmp_path, uri, Settings(capabilities={"multifd": True}, multifd_channels=2),
        dest_qmp=dst.qmp_path, progress=False, poll_interval=0.2, time_limit=15,
    )  # fmt: skip
    assert result.status == "completed", result.reason
    assert result.run.settings.capabilities["multifd"] is True
    assert dst.qmp().status() == "running"


def test_postcopy_switch_completes(qemus, blob):
    src, dst, uri = _pair(qemus, *_busy(blob))
    result = migrate(
        src.qmp_path, uri, Settings(max_bandwidth=2 * MiB), dest_qmp=dst.qmp_path,
        allow_postcopy=True, postcopy_after=1.0, progress=False, poll_interval=0.2,
        time_limit=30,
    )  # fmt: skip
    assert result.status == "completed", result.reason
    assert result.postcopy is True
    assert [a.kind for a in result.actions] == ["start-postcopy"]
    assert any(e.kind == "postcopy-start" for e in result.run.events)
    assert dst.qmp().status() == "running"


def test_qemu_dies_with_its_owner(tmp_path):
    """Even a SIGKILLed owner leaves no QEMU behind (PR_SET_PDEATHSIG)."""
    code = (
        "import sys, time\n"
        "from migtune.qemu.process import QemuProcess\n"
        "p = QemuProcess(['-machine', 'pc', '-m', '64'], accel='tcg').start()\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(owner.stdout.readline())
    assert not _gone(pid)
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(pid)


def test_stop_only_kills_its_own_pid(qemus):
    a = qemus(name="a")
    b = qemus(name="b")
    a.stop()
    assert _gone(a.pid) and b.alive
    assert b.qmp().status() == "running"
    assert Path(a.workdir).exists() is False


# -- a guest that dirties memory (firmware-only, see migtune.qemu.tinyguest) ---------------
@pytest.fixture(scope="module")
def dirty_bios(tmp_path_factory) -> str:
    return str(dirtying_bios(tmp_path_factory.mktemp("fw") / "dirty.bin", kib=576))


def _dirty_pair(qemus, bios: str):
    return _pair(qemus, "-bios", bios)


def test_dirtying_guest_does_not_converge_and_is_cancelled(qemus, dirty_bios):
    src, dst, uri = _dirty_pair(qemus, dirty_bios)
    seen = []
    result = migrate(
        src.qmp_path, uri, Settings(max_bandwidth=1 * MiB, downtime_limit=0.05),
        dest_qmp=dst.qmp_path, time_limit=4, poll_interval=0.25,
        progress=lambda sample, extra: seen.append(sample),
    )  # fmt: skip
    assert result.status == "cancelled" and result.source_status == "running"
    assert result.outcome.passes >= 4
    active = [x for x in seen if x.status == "active" and x.passes and x.passes > 2]
    assert active and all(x.dirty_rate and x.dirty_rate > 0 for x in active[-3:])
    assert any(eta(x) is None for x in active)  # dirty rate keeps up with the link
    assert src.qmp().status() == "running"


def test_proxmox_policy_doubles_downtime_on_real_qemu(qemus, dirty_bios, tmp_path):
    src, dst, uri = _dirty_pair(qemus, dirty_bios)
    rec = tmp_path / "pve.jsonl"
    result = migrate(
        src.qmp_path, uri, Settings(max_bandwidth=1 * MiB), policy="proxmox", record=rec,
        dest_qmp=dst.qmp_path, time_limit=12, poll_interval=0.25, progress=False,
    )  # fmt: skip
    limits = [a.params["downtime-limit"] for a in result.actions]
    assert limits[0] == 100  # Proxmox's default migrate_downtime, set before migrating
    assert len(limits) >= 2 and all(b == 2 * a for a, b in zip(limits, limits[1:], strict=False))
    run = load_run(rec)
    assert run.settings.downtime_limit == pytest.approx(0.1)
    changes = run.events_of("downtime-change")
    assert [e.data["params"]["downtime-limit"] for e in changes] == limits[1:]
    assert changes[-1].data["params"]["downtime-limit"] == limits[-1]
    # afterwards the source has QEMU's own 300 ms again: migtune restores what it changed
    assert src.qmp().cmd("query-migrate-parameters")["downtime-limit"] == 300
    # Each doubling came after six polls in which remaining rose (or was zero).
    first = changes[0].t
    polls = [x for x in run.samples if x.t is not None and x.t <= first]
    rises = sum(1 for a, b in zip(polls, polls[1:], strict=False) if b.remaining > a.remaining)
    assert rises >= 5
    assert result.status in ("completed", "cancelled")
    if result.status == "cancelled":
        assert result.source_status == "running"


def test_auto_converge_raises_the_throttle(qemus, dirty_bios):
    src, dst, uri = _dirty_pair(qemus, dirty_bios)
    settings = Settings(max_bandwidth=1 * MiB, downtime_limit=0.05)
    settings.capabilities["auto-converge"] = True
    result = migrate(
        src.qmp_path, uri, settings, dest_qmp=dst.qmp_path, time_limit=6, poll_interval=0.25,
        progress=False,
    )  # fmt: skip
    throttles = [x.throttle_pct for x in result.run.samples if x.throttle_pct]
    assert throttles and throttles[0] == 20 and max(throttles) >= 30
    assert result.outcome.max_throttle_pct == max(throttles)
    assert src.qmp().status() == "running"


def test_xbzrle_statistics_appear_and_move(qemus, dirty_bios):
    src, dst, uri = _dirty_pair(qemus, dirty_bios)
    settings = Settings(max_bandwidth=1 * MiB, downtime_limit=0.05, xbzrle_cache_size=1 * MiB)
    settings.capabilities["xbzrle"] = True
    result = migrate(
        src.qmp_path, uri, settings, dest_qmp=dst.qmp_path, time_limit=4, poll_interval=0.25,
        progress=False,
    )  # fmt: skip
    stats = [x.xbzrle for x in result.run.samples if x.xbzrle is not None]
    assert stats and stats[0].cache_size == 1 * MiB
    assert stats[-1].pages > stats[0].pages  # hits grow as the same pages are re-sent
    # every word of a page changes each round, so deltas do not fit: overflows
    assert result.outcome.xbzrle.overflow > 0


def test_nova_force_complete_pauses_then_resumes_on_destination(qemus, dirty_bios):
    src, dst, uri = _dirty_pair(qemus, dirty_bios)
    result = migrate(
        src.qmp_path, uri, Settings(max_bandwidth=1 * MiB),
        policy="nova:timeout=1s,action=force_complete", dest_qmp=dst.qmp_path,
        time_limit=15, poll_interval=0.25, progress=False,
    )  # fmt: skip
    assert [a.kind for a in result.actions] == ["set-parameters", "pause"]
    assert result.actions[0].params == {"downtime-limit": 50}  # 500 ms / 10 steps
    assert result.actions[1].t > 2.0  # completion timeout: 1 s x 2 GiB (the minimum size)
    assert result.status == "completed", result.reason
    assert dst.qmp().status() == "running"  # paused to finish, resumed where it arrived


def test_accel_probe_and_missing_binary(monkeypatch):
    monkeypatch.delenv("MIGTUNE_ACCEL", raising=False)
    assert qproc.probe_accel() == "tcg"  # no way to check a guest: do not trust KVM
    assert qproc.probe_accel(verify=lambda p: False) == "tcg"
    monkeypatch.setenv("MIGTUNE_ACCEL", "kvm")
    assert qproc.probe_accel() == "kvm"
    with pytest.raises(UnavailableError, match="not found: install QEMU"):
        QemuProcess(binary="qemu-system-nonexistent").start()


def test_qemu_that_exits_at_start_is_a_clear_error():
    with pytest.raises(UnavailableError, match="QEMU exited at start"):
        QemuProcess(["-machine", "no-such-machine"], accel="tcg").start()
    assert not qproc.live_pids()
