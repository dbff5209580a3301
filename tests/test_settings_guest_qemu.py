"""Real QEMU: `migrate` refuses settings absurd for the guest before touching it.

QEMU accepts an XBZRLE cache as large as the guest (the issue measured such a migration
crawling at 1.3 MiB/s); migtune reads the guest's RAM over QMP and refuses first.
"""

from __future__ import annotations

import pytest

from migtune.cli.main import main
from migtune.qemu import process as qproc
from migtune.qemu.process import QemuProcess, free_port

pytestmark = pytest.mark.qemu

if not qproc.shutil.which(qproc.QEMU_BINARY):
    pytest.skip("qemu-system-x86_64 is not installed", allow_module_level=True)


@pytest.fixture
def source():
    """One BIOS-only guest with 256 MiB of RAM (TCG); stopped and checked afterwards."""
    p = QemuProcess(["-machine", "pc", "-m", "256"], accel="tcg", name="src")
    p.start()
    yield p
    p.stop()
    assert not qproc.live_pids()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--xbzrle-cache-size", "256MiB"], "xbzrle-cache-size: a 256.0 MiB cache is not smaller"),
        (["--xbzrle", "--xbzrle-cache-size", "1GiB"], "not smaller than the guest's 256.0 MiB"),
    ],
)
def test_cache_as_large_as_the_guest_is_refused_before_anything_is_set(
    source, flags, message, capsys
):
    qmp = source.qmp()
    before = qmp.cmd("query-migrate-parameters")["xbzrle-cache-size"]
    qmp.close()
    uri = f"tcp:127.0.0.1:{free_port()}"
    assert main(["migrate", "--qmp", source.qmp_path, "--to", uri, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("migtune: error: ") and message in err
    qmp = source.qmp()
    try:
        assert qmp.status() == "running"
        assert qmp.cmd("query-migrate").get("status") in (None, "none")
        caps = {c["capability"]: c["state"] for c in qmp.cmd("query-migrate-capabilities")}
        assert caps["xbzrle"] is False
        assert qmp.cmd("query-migrate-parameters")["xbzrle-cache-size"] == before
    finally:
        qmp.close()


def test_cache_above_half_the_guest_is_a_warning_and_the_migration_runs(tmp_path, capsys):
    port = free_port()
    src = QemuProcess(["-machine", "pc", "-m", "384"], accel="tcg", name="src").start()
    dst = QemuProcess(
        ["-machine", "pc", "-m", "384", "-incoming", f"tcp:127.0.0.1:{port}"],
        accel="tcg",
        name="dst",
    ).start()
    try:
        argv = ["migrate", "--qmp", src.qmp_path, "--to", f"tcp:127.0.0.1:{port}"]
        rc = main([*argv, "--xbzrle-cache-size", "256MiB", "--time-limit", "60s", "--json"])
        assert rc == 0
        out = capsys.readouterr().out
        assert "more than half the guest's 384.0 MiB" in out  # in the result's warnings
    finally:
        src.stop()
        dst.stop()
    assert not qproc.live_pids()
