"""Lab guest without QEMU: workload -> kernel command line, build errors, serial lines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from migtune.errors import InputError, UnavailableError
from migtune.lab import guest as guest_mod
from migtune.lab.guest import (
    SerialTail,
    check_tools,
    find_kernel,
    is_static_elf,
    parse_serial_line,
)
from migtune.lab.scenario import (
    MATRIX,
    check_fits,
    kernel_cmdline,
    select,
    workload_params,
)
from migtune.units import MiB
from migtune.workload import parse_workload

# -- workload -> kernel command line -------------------------------------------------


def test_idle_workload_has_no_dirtier_parameters():
    assert workload_params(parse_workload("idle")) == []
    assert kernel_cmdline(parse_workload("idle")) == "console=ttyS0 quiet panic=-1"


def test_random_workload_parameters_are_bytes_and_bytes_per_second():
    w = parse_workload("ws=256MiB,rate=64MiB/s,pattern=random,bytes=8")
    assert workload_params(w) == [
        "dirt_ws=268435456",
        "dirt_rate=67108864",
        "dirt_pat=random",
        "dirt_bpp=8",
        "dirt_catchup=0",
    ]


def test_pages_per_second_rate_becomes_bytes_per_second():
    w = parse_workload("ws=64MiB,rate=1000pages/s,pattern=seq,bytes=4096,catchup=yes")
    params = workload_params(w)
    assert "dirt_rate=4096000" in params
    assert "dirt_pat=seq" in params
    assert "dirt_bpp=4096" in params
    assert "dirt_catchup=1" in params


def test_unlimited_rate_and_hotcold_fractions():
    w = parse_workload("ws=128MiB,rate=unlimited,pattern=hotcold,hot=0.25,hotw=0.75")
    params = workload_params(w)
    assert "dirt_rate=max" in params
    assert "dirt_hot=0.25" in params and "dirt_hotw=0.75" in params


def test_hot_parameters_only_for_hotcold():
    w = parse_workload("ws=128MiB,rate=8MiB/s,pattern=seq")
    assert not any(p.startswith("dirt_hot") for p in workload_params(w))


def test_working_set_must_fit_in_guest():
    check_fits(512 * MiB, parse_workload("ws=256MiB,rate=8MiB/s"))
    with pytest.raises(InputError, match="does not fit"):
        check_fits(256 * MiB, parse_workload("ws=256MiB,rate=8MiB/s"))
    with pytest.raises(InputError, match="at least"):
        check_fits(64 * MiB, parse_workload("idle"))


def test_matrix_scenarios_are_valid_and_unique():
    names = [s.name for s in MATRIX]
    assert len(names) == len(set(names)) >= 10
    for s in MATRIX:
        check_fits(s.ram, s.parsed_workload())
        settings = s.build_settings()
        assert settings.max_bandwidth and settings.max_bandwidth <= 64 * MiB
        assert 20 <= s.time_limit <= 60
    assert any(s.allow_postcopy and s.postcopy_after_passes for s in MATRIX)


def test_select_keeps_matrix_order_and_rejects_unknown_names():
    assert [s.name for s in select(["multifd", "idle"])] == ["idle", "multifd"]
    with pytest.raises(InputError, match="unknown scenario nope"):
        select(["nope"])


# -- guest build: missing packages ----------------------------------------------------


def _which(present: set[str]):
    return lambda name: f"/usr/bin/{name}" if name in present else None


def test_missing_gcc_names_gcc_and_libc():
    with pytest.raises(UnavailableError) as exc:
        check_tools(
            which=_which({"cpio", "gzip"}),
            static_libc=lambda gcc: True,
            busybox=lambda which: Path("/bin/busybox"),
        )
    msg = str(exc.value)
    assert "gcc, libc6-dev" in msg
    assert "apt-get install -y gcc libc6-dev" in msg
    assert "\n" not in msg


def test_missing_static_libc_and_busybox_and_cpio_in_one_message():
    with pytest.raises(UnavailableError) as exc:
        check_tools(
            which=_which({"gcc", "gzip"}),
            static_libc=lambda gcc: False,
            busybox=lambda which: None,
        )
    assert "apt-get install -y libc6-dev cpio busybox-static" in str(exc.value)


def test_all_tools_present():
    tools = check_tools(
        which=_which({"gcc", "cpio", "gzip"}),
        static_libc=lambda gcc: True,
        busybox=lambda which: Path("/bin/busybox"),
    )
    assert tools.gcc == "/usr/bin/gcc" and tools.busybox == Path("/bin/busybox")


def test_missing_kernel_names_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv("MIGTUNE_LAB_KERNEL", raising=False)
    with pytest.raises(UnavailableError, match="apt-get install -y linux-image-cloud-amd64"):
        find_kernel(tmp_path)


def test_newest_kernel_is_chosen_by_version(tmp_path, monkeypatch):
    monkeypatch.delenv("MIGTUNE_LAB_KERNEL", raising=False)
    for v in ("6.1.0-9", "6.1.0-10", "5.10.0-30"):
        (tmp_path / f"vmlinuz-{v}-cloud-amd64").write_bytes(b"k")
    (tmp_path / "vmlinuz-6.2.0-1-amd64").write_bytes(b"not a cloud kernel")
    assert find_kernel(tmp_path).name == "vmlinuz-6.1.0-10-cloud-amd64"


def test_static_elf_detection(tmp_path):
    assert not is_static_elf(tmp_path / "missing")
    (tmp_path / "text").write_text("#!/bin/sh\n")
    assert not is_static_elf(tmp_path / "text")
    sh = shutil.which("sh")
    if sh:  # the host shell is dynamically linked on Debian
        assert not is_static_elf(Path(sh).resolve())
    if Path("/bin/busybox").is_file():
        assert is_static_elf(Path("/bin/busybox"))


def test_build_failure_is_an_unavailable_error(tmp_path, monkeypatch):
    # A dirtier that does not compile must give a one-line error, not a traceback.
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    src = tmp_path / "src"
    src.mkdir()
    (src / "dirtier.c").write_text("this is not C\n")
    (src / "init").write_text("#!/bin/sh\n")
    with pytest.raises(UnavailableError, match="compiling the guest dirtier"):
        guest_mod.build_guest(tmp_path / "cache", guest_dir=src)


# -- serial lines -----------------------------------------------------------------------


def test_parse_rate_line():
    line = parse_serial_line(
        "dirtier: t=12.001 pages=16384 rate_pps=16380 rate_Bps=67092480 behind=0\r\n"
    )
    assert line is not None and line.kind == "rate"
    assert line.get("t") == pytest.approx(12.001)
    assert line.get("rate_pps") == 16380
    assert line.get("rate_Bps") == 67092480
    assert line.get("behind") == 0


def test_parse_other_guest_lines():
    ready = parse_serial_line("dirtier: ready ws=268435456 pages=65536 touch_s=0.512")
    assert ready is not None and ready.kind == "ready" and ready.get("pages") == 65536
    hb = parse_serial_line("heartbeat: n=7 up=8.98")
    assert hb is not None and hb.kind == "heartbeat" and hb.get("n") == 7
    idle = parse_serial_line("migtune-guest: idle")
    assert idle is not None and idle.kind == "idle"
    init = parse_serial_line("migtune-guest: init cmdline=console=ttyS0 quiet")
    assert init is not None and init.kind == "init"
    err = parse_serial_line("dirtier: error cannot allocate the working set")
    assert err is not None and err.kind == "error" and "allocate" in err.text


def test_parse_ignores_noise_and_cut_lines():
    assert parse_serial_line("[    0.000000] Linux version 6.1.0") is None
    assert parse_serial_line("") is None
    assert parse_serial_line("dirtier: t=3.0 pages=12") is None  # cut short
    assert parse_serial_line("heartbeat: n=") is None
    # kernel noise glued in front of a guest line is tolerated
    glued = parse_serial_line("[ 1.2] randomheartbeat: n=3 up=1.0")
    assert glued is not None and glued.get("n") == 3


def test_serial_tail_yields_complete_lines_only(tmp_path):
    log = tmp_path / "serial.log"
    tail = SerialTail(log)
    assert list(tail.read()) == []  # no file yet
    log.write_bytes(b"heartbeat: n=1 up=1.0\r\ndirtier: t=1.000 pages=4096 rate_pps=40")
    assert [x.kind for x in tail.read()] == ["heartbeat"]
    with log.open("ab") as fh:
        fh.write(b"96 rate_Bps=16777216 behind=0\r\nheartbeat: n=2 up=2.0\r\n")
    got = list(tail.read())
    assert [x.kind for x in got] == ["rate", "heartbeat"]
    assert got[0].get("rate_pps") == 4096
    assert list(tail.read()) == []


# -- recording merge and CLI (no QEMU) -------------------------------------------------


class _FakeLab:
    def __init__(self, rates):
        self.guest_rates = rates
        self.meta = {"machine_after": {"loadavg": [0.5, 0.4, 0.3]}}

    def to_dict(self):
        return {"status": "completed", "workload": "idle"}


def test_guest_rates_are_merged_in_time_order(tmp_path):
    import json

    from migtune.lab.run import _finish_recording

    path = tmp_path / "r.jsonl"
    lines = [
        {"kind": "header", "origin": "migrate", "meta": {"x": 1}},
        {"kind": "event", "t": 0.0, "event": "ram-start", "message": "", "data": {}},
        {"kind": "sample", "t": 0.5, "query-migrate": {"status": "active"}},
        {"kind": "qmp-event", "t": 0.45, "event": "MIGRATION_PASS", "data": {}},
        {"kind": "sample", "t": 1.5, "query-migrate": {"status": "completed"}},
        {"kind": "result", "status": "completed"},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    rate = {"side": "source", "guest_t": 3.0, "pages": 10, "rate_pps": 10.0}
    rates = [
        {**rate, "t": -0.3, "rate_Bps": 40960.0, "behind": 0},  # before the migration: left out
        {**rate, "t": 0.7, "rate_Bps": 40960.0, "behind": 0},
        {**rate, "t": 2.0, "side": "destination", "rate_Bps": 40960.0, "behind": 0},
    ]
    _finish_recording(path, _FakeLab(rates))
    out = [json.loads(x) for x in path.read_text().splitlines()]
    kinds = [(r["kind"], r.get("event")) for r in out]
    assert kinds == [
        ("header", None),
        ("event", "ram-start"),
        ("sample", None),
        ("qmp-event", "MIGRATION_PASS"),  # existing order kept even where t is not sorted
        ("event", "guest-rate"),
        ("sample", None),
        ("event", "guest-rate"),
        ("result", None),
    ]
    assert out[0]["origin"] == "lab" and out[0]["meta"]["x"] == 1
    assert out[0]["meta"]["machine_after"]["loadavg"] == [0.5, 0.4, 0.3]
    assert out[4]["data"]["side"] == "source" and out[6]["data"]["side"] == "destination"
    assert out[-1] == {"kind": "result", "status": "completed", "workload": "idle"}


def test_cli_lab_matrix_list_and_bad_input(capsys):
    from migtune.cli.main import main

    assert main(["lab", "matrix", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(s.name in listed for s in MATRIX)
    assert main(["lab", "matrix", "--only", "nope"]) == 2
    assert "unknown scenario nope" in capsys.readouterr().err
    assert main(["lab", "run", "--ram", "64MiB"]) == 2
    assert main(["lab", "run", "--workload", "ws=1GiB,rate=1MiB/s"]) == 2
    assert "does not fit" in capsys.readouterr().err
    assert main(["lab", "run", "--workload", "pattern=zigzag"]) == 2


# -- recorded fixtures -------------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "lab"


def _fixture_files():
    """The matrix recordings (the calib-* runs were recorded with `lab run`, see their README)."""
    return sorted(p for p in FIXTURES.glob("*.jsonl") if not p.name.startswith("calib-"))


def test_fixtures_cover_every_matrix_scenario():
    import json

    files = _fixture_files()
    assert len(files) >= 10
    seen = {json.loads(f.read_text().splitlines()[0])["meta"]["scenario"] for f in files}
    assert seen == {s.name for s in MATRIX}


@pytest.mark.parametrize("path", _fixture_files(), ids=lambda p: p.stem)
def test_fixture_is_a_complete_lab_recording(path):
    import json

    from migtune.sources.recording import parse_recording

    lines = path.read_text().splitlines()
    header, result = json.loads(lines[0]), json.loads(lines[-1])
    assert header["origin"] == "lab" and header["qemu_version"]
    scenario = {s.name: s for s in MATRIX}[header["meta"]["scenario"]]
    # the recording matches the scenario as defined now (else: re-record it)
    assert parse_workload(header["workload"]) == scenario.parsed_workload()
    assert header["meta"]["lab"]["ram"] == scenario.ram
    assert header["settings"]["max_bandwidth"] == scenario.build_settings().max_bandwidth
    assert len(header["meta"]["machine"]["loadavg"]) == 3
    assert result["kind"] == "result" and result["workload"] == header["workload"]
    run = parse_recording(lines)
    assert not run.warnings
    assert run.status == result["status"]
    sent = [s.transferred for s in run.samples if s.transferred is not None]
    assert sent and sent[-1] == result["transferred_bytes"]
    if not scenario.parsed_workload().idle:
        assert run.events_of("guest-rate")
    if result["status"] == "completed":
        assert result["destination_alive"] is True
    else:
        assert result["source_alive"] is True


def test_results_table_shows_outcomes_and_errors():
    from types import SimpleNamespace

    from migtune.lab.matrix import MatrixRow, results_table
    from migtune.outcome import Outcome, XbzrleOutcome

    sc = {s.name: s for s in MATRIX}
    outcome = Outcome(
        converged=False,
        status="cancelled",
        total_time_s=30.0,
        downtime_ms=None,
        transferred_bytes=956 * MiB,
        passes=10,
        max_throttle_pct=0.0,
        xbzrle=XbzrleOutcome(cache_miss_rate=0.95, overflow=0, pages=12, bytes=480),
    )
    fake = SimpleNamespace(
        outcome=outcome,
        guest_rate_during=lambda: 64 * MiB,
        differing_pages=None,
        destination_alive=None,
    )
    rows = [
        MatrixRow(sc["xbzrle-cache-small"], 1, fake),  # type: ignore[arg-type]
        MatrixRow(sc["idle"], 1, None, error="QEMU exited at start"),
    ]
    assert rows[0].as_expected is True and rows[1].as_expected is None
    table = results_table(rows).splitlines()
    assert table[0].split()[:3] == ["scenario", "#", "status"]
    small = next(line for line in table if line.startswith("xbzrle-cache-small"))
    assert (
        "cancelled" in small and "95%" in small and "956.0 MiB" in small and "64.0 MiB/s" in small
    )
    assert table[-1] == "idle #1: QEMU exited at start"
    assert rows[1].to_dict()["error"] == "QEMU exited at start"


def test_compare_ram_counts_differing_pages(tmp_path):
    from types import SimpleNamespace

    from migtune.lab.run import compare_ram

    def fake(name, content):
        workdir = tmp_path / name
        workdir.mkdir()

        def cmd(command, **args):
            assert command == "pmemsave" and args["val"] == 0 and args["size"] == len(content)
            Path(args["filename"]).write_bytes(content)

        return SimpleNamespace(workdir=workdir, qmp=lambda: SimpleNamespace(cmd=cmd))

    pages = bytearray(4096 * 8)
    other = bytearray(pages)
    other[4096 * 3 + 17] = 1  # one byte in page 3
    other[4096 * 6 : 4096 * 7] = b"\xff" * 4096  # all of page 6
    assert compare_ram(fake("a", bytes(pages)), fake("b", bytes(other)), len(pages)) == 2
    assert not list(tmp_path.rglob("ram.dump"))  # dumps removed
    same = compare_ram(fake("c", bytes(pages)), fake("d", bytes(pages)), len(pages))
    assert same == 0
