"""preflight against real QEMU: measure a lab guest, predict, then migrate it for real.

Two small scenarios (256 MiB guests, a 32 MiB/s cap, 5 s of measurement): one that
converges (go) and one that cannot (no-go, nothing allowed); then the refusals on a
VM that is migrating or paused.  About two minutes under TCG on 2 cores.
"""

from __future__ import annotations

import json
import time

import pytest

from migtune.analysis.preflight import preflight
from migtune.cli.main import main
from migtune.errors import EXIT_NOT_CONVERGED, EXIT_OK
from migtune.lab.run import _guest_args, lab_run
from migtune.lab.scenario import kernel_cmdline
from migtune.model import Settings
from migtune.qemu.process import QemuProcess, free_port
from migtune.qemu.qmp import QMP
from migtune.units import MiB
from migtune.workload import Workload, parse_workload

pytestmark = pytest.mark.qemu
RAM = 256 * MiB
CAP = 32 * MiB


def _migration_settings(path: str) -> tuple:
    with QMP(path).connect() as q:
        return q.cmd("query-migrate-parameters"), q.cmd("query-migrate-capabilities")


def test_go_predicted_and_completed(image, capsys):
    seen: dict = {}

    def before(path: str) -> None:
        seen["settings"] = _migration_settings(path)
        seen["rc"] = main(
            ["preflight", "--qmp", path, "--max-bandwidth", "32MiB/s", "--max-time", "30s",
             "--measure", "5s", "--json"]
        )  # fmt: skip
        seen["out"] = capsys.readouterr().out
        seen["after"] = _migration_settings(path)

    workload = parse_workload("ws=64MiB,rate=8MiB/s,pattern=random")
    lab = lab_run(
        RAM, workload, Settings(max_bandwidth=CAP), time_limit=30, progress=False,
        image=image, accel="tcg", before_migrate=before,
    )  # fmt: skip
    assert seen["rc"] == EXIT_OK
    assert seen["after"] == seen["settings"]  # preflight changed nothing
    result = json.loads(seen["out"])
    assert result["verdict"] == "go"
    assert result["current"]["converges"] is True
    assert result["measurement"]["mode"] == "page-sampling"  # TCG: the only mode that works
    assert result["measurement"]["modes_not_used"]["dirty-bitmap"]
    assert result["ram_bytes"] == RAM
    # the writer changes 8 bytes a page per write: seen in pages read twice
    q1, median, q3 = result["measurement"]["bytes_changed_per_page"]
    assert 4 <= median <= 16
    lo, hi = result["workload"]["inferred"]["write_rate_bytes_per_s"]
    assert 0.6 * 8 * MiB <= lo <= hi <= 1.4 * 8 * MiB
    assert lab.outcome.status == "completed"
    predicted = result["current"]["total_time_s"]["median"]
    assert abs(predicted - lab.outcome.total_time_s) / lab.outcome.total_time_s < 0.5


def test_no_go_predicted_and_not_converged(image):
    workload = parse_workload("ws=96MiB,rate=40MiB/s,pattern=random")

    def before(path: str):
        # nothing to switch on, and no pause above QEMU's default allowed: no-go
        return preflight(
            path, settings=Settings(max_bandwidth=CAP), max_time=20, max_downtime=0.3,
            measure_s=5, allow=(),
        )  # fmt: skip

    lab = lab_run(
        RAM, workload, Settings(max_bandwidth=CAP), time_limit=20, progress=False,
        image=image, accel="tcg", before_migrate=before,
    )  # fmt: skip
    pf = lab.before
    assert pf.verdict == "no-go" and pf.exit_code == EXIT_NOT_CONVERGED
    assert pf.current_check["converges"] is False
    assert pf.recommended is None
    assert lab.outcome.status == "cancelled"  # the time limit: it did not converge


def test_refuses_a_migrating_or_paused_vm(image, capsys):
    args = _guest_args(image, 128 * MiB, kernel_cmdline(Workload(ws=0, rate=0.0)), "pc")
    port = free_port()
    src = QemuProcess(args, accel="tcg", name="pf-src").start()
    dst = QemuProcess([*args, "-incoming", f"tcp:127.0.0.1:{port}"], accel="tcg", name="pf-dst")
    try:
        dst.start()
        ctl = src.qmp()  # the process's own control socket; --qmp gets the other one
        ctl.cmd("migrate-set-parameters", **{"max-bandwidth": 1 * MiB})
        ctl.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        time.sleep(0.5)
        assert main(["preflight", "--qmp", src.qmp_path, "--measure", "1s"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "a migration is already in progress" in err[0]
        ctl.cmd("migrate_cancel")
        deadline = time.monotonic() + 10
        while ctl.migration_status() != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.1)
        ctl.cmd("stop")
        assert main(["preflight", "--qmp", src.qmp_path, "--measure", "1s"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "the VM is not running" in err[0]
    finally:
        dst.stop()
        src.stop()
