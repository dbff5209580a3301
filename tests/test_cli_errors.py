"""Every command, fed bad values: one stderr line ``migtune: error: ...``, no traceback,
the exit code the README documents (2 bad input or option value, 5 something missing).

Commands that would start QEMU (``lab run``, ``lab matrix``, ``migrate``) must refuse
before starting anything: starting a guest or building the lab image fails the test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from migtune.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
LOG = str(ROOT / "examples" / "proxmox-32GiB-not-converging.log")
README = str(ROOT / "README.md")
QMP_LOG = str(ROOT / "examples" / "qmp-4GiB-xbzrle-autoconverge.jsonl")
BAD_INPUT, MISSING = 2, 5


@pytest.fixture
def files(tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_text("")
    binary = tmp_path / "core.bin"
    binary.write_bytes(b"\x00\x01\x02\x00" * 4096)
    not_socket = tmp_path / "qmp.sock"
    not_socket.write_text("")
    return {
        "DIR": str(tmp_path),
        "EMPTY": str(empty),
        "BINARY": str(binary),
        "MISSING": str(tmp_path / "missing.log"),
        "NOTSOCK": str(not_socket),
        "NOWHERE": str(tmp_path / "no" / "such" / "dir" / "out.html"),
    }


@pytest.fixture(autouse=True)
def no_qemu_started(monkeypatch):
    """Validation must come first: booting a guest or building the image is a failure."""

    def refuse(*_a, **_k):
        raise AssertionError("a QEMU or the lab guest was started before validation")

    monkeypatch.setattr("migtune.qemu.process.QemuProcess.start", refuse)
    monkeypatch.setattr("migtune.lab.guest.build_guest", refuse)
    monkeypatch.setattr("migtune.lab.run.build_guest", refuse)


SIM = ["simulate", "--ram", "256MiB"]
MIG = ["migrate", "--qmp", "{MISSING}", "--to", "tcp:127.0.0.1:1"]

# (argv, exit code, text the error line must contain)
CASES = [
    # the top level
    (["no-such-command"], BAD_INPUT, "no-such-command: no such command"),
    (["--bogus"], BAD_INPUT, "--bogus: no such option"),
    # explain / diagnose
    *[
        case
        for cmd in ("explain", "diagnose")
        for case in [
            ([cmd], BAD_INPUT, "LOG: missing"),
            ([cmd, "{MISSING}"], BAD_INPUT, "missing.log"),
            ([cmd, "{DIR}"], BAD_INPUT, "is a directory"),
            ([cmd, "{EMPTY}"], BAD_INPUT, "empty.log"),
            ([cmd, "{BINARY}"], BAD_INPUT, "core.bin"),
            ([cmd, README], BAD_INPUT, "README.md: unrecognised log format"),
            ([cmd, "--format", "proxmox", README], BAD_INPUT, "README.md: nothing in it reads"),
            ([cmd, "--format", "zzz", LOG], BAD_INPUT, "--format: 'zzz' is not one of"),
            ([cmd, LOG, "--bogus"], BAD_INPUT, "--bogus: no such option"),
            ([cmd, LOG, LOG], BAD_INPUT, "unexpected extra argument"),
        ]
    ],
    # simulate
    ([*SIM, "--downtime-limit", "banana"], BAD_INPUT, "--downtime-limit: cannot read duration"),
    (["simulate", "--ram", "-5GiB"], BAD_INPUT, "--ram: cannot read size"),
    (["simulate", "--ram"], BAD_INPUT, "--ram: needs a value"),
    (["simulate"], BAD_INPUT, "--ram: missing"),
    ([*SIM, "--max-bandwidth", "-1MiB/s"], BAD_INPUT, "--max-bandwidth:"),
    ([*SIM, "--xbzrle-cache-size", "3MiB"], BAD_INPUT, "xbzrle-cache-size: must be a power of two"),
    ([*SIM, "--xbzrle-cache-size", "256MiB"], BAD_INPUT, "not smaller than the guest's"),
    ([*SIM, "--qemu-version", "3.0"], BAD_INPUT, "--qemu-version: QEMU 3.0 is outside"),
    ([*SIM, "--qemu-version", "banana"], BAD_INPUT, "--qemu-version: cannot read"),
    ([*SIM, "--multifd-channels", "0"], BAD_INPUT, "--multifd-channels:"),
    ([*SIM, "--set", "multifd-channels=300"], BAD_INPUT, "multifd-channels: 300 is outside"),
    ([*SIM, "--max-cpu-throttle", "100"], BAD_INPUT, "max-cpu-throttle: 100% is outside"),
    ([*SIM, "--cpu-throttle-initial", "0"], BAD_INPUT, "--cpu-throttle-initial:"),
    ([*SIM, "--set", "downtime-limit=0"], BAD_INPUT, "downtime-limit: 0 lets QEMU"),
    ([*SIM, "--downtime-limit", "3000s"], BAD_INPUT, "downtime-limit: must be between 0 and 2000"),
    ([*SIM, "--set", "max-bandwidth=-1"], BAD_INPUT, "max-bandwidth: cannot read rate"),
    ([*SIM, "--set", "bogus=1"], BAD_INPUT, "unknown setting 'bogus'"),
    ([*SIM, "--set", "xbzrle=maybe"], BAD_INPUT, "xbzrle: expected on/off"),
    ([*SIM, "--postcopy-after", "5s"], BAD_INPUT, "need --postcopy"),
    ([*SIM, "--workload", "bogus"], BAD_INPUT, "workload"),
    ([*SIM, "--seed", "x"], BAD_INPUT, "--seed: 'x' is not a valid integer"),
    ([*SIM, "--time-limit", "soon"], BAD_INPUT, "--time-limit: cannot read duration"),
    ([*SIM, "--time-limit", "0s"], BAD_INPUT, "time limit: must be more than 0 s"),
    ([*SIM, "--trace", "{MISSING}"], BAD_INPUT, "missing.log"),
    (["simulate", "--from", "{DIR}"], BAD_INPUT, "--from: file"),
    (["simulate", "--from", "{MISSING}"], BAD_INPUT, "missing.log"),
    (["simulate", "--from", README], BAD_INPUT, "README.md: unrecognised log format"),
    (["simulate", "--from", QMP_LOG, "--xbzrle-cache-size", "8GiB"], BAD_INPUT, "not smaller"),
    # migrate: refused before any QMP socket is touched, or 5 when the socket is missing
    (["migrate", "--to", "tcp:127.0.0.1:1"], BAD_INPUT, "--qmp: missing"),
    (["migrate", "--qmp", "{MISSING}"], BAD_INPUT, "--to URI is needed"),
    (MIG, MISSING, "missing.log"),
    (["migrate", "--qmp", "{NOTSOCK}", "--to", "tcp:127.0.0.1:1"], MISSING, "not a socket"),
    ([*MIG, "--downtime-limit", "banana"], BAD_INPUT, "--downtime-limit: cannot read duration"),
    ([*MIG, "--xbzrle-cache-size", "3MiB"], BAD_INPUT, "xbzrle-cache-size: must be a power"),
    ([*MIG, "--policy", "bogus"], BAD_INPUT, "unknown policy 'bogus'"),
    ([*MIG, "--poll-interval", "often"], BAD_INPUT, "--poll-interval: cannot read duration"),
    ([*MIG, "--multifd-channels", "256"], BAD_INPUT, "--multifd-channels:"),
    ([*MIG, "--downtime-limit", "0"], BAD_INPUT, "downtime-limit: 0 lets QEMU"),
    ([*MIG, "--time-limit", "0s"], BAD_INPUT, "time limit: must be more than 0 s"),
    # lab
    (["lab", "nosuch"], BAD_INPUT, "nosuch: no such command"),
    (["lab", "build", "--bogus"], BAD_INPUT, "--bogus: no such option"),
    (["lab", "run", "--ram", "banana"], BAD_INPUT, "--ram: cannot read size"),
    (["lab", "run", "--ram", "16MiB"], BAD_INPUT, "at least"),
    (["lab", "run", "--accel", "foo"], BAD_INPUT, "--accel: 'foo' is not one of"),
    (["lab", "run", "--workload", "bogus=1"], BAD_INPUT, "unknown key 'bogus'"),
    (["lab", "run", "--workload", "ws=2GiB"], BAD_INPUT, "does not fit"),
    (["lab", "run", "--policy", "bogus"], BAD_INPUT, "unknown policy 'bogus'"),
    (["lab", "run", "--xbzrle-cache-size", "1GiB"], BAD_INPUT, "not smaller than the guest's"),
    (["lab", "run", "--downtime-limit", "0"], BAD_INPUT, "downtime-limit: 0 lets QEMU"),
    (["lab", "run", "--time-limit", "later"], BAD_INPUT, "--time-limit: cannot read duration"),
    (["lab", "run", "--time-limit", "0s"], BAD_INPUT, "time limit: must be more than 0 s"),
    (["lab", "run", "--verify", "--postcopy"], BAD_INPUT, "post-copy"),
    (["lab", "matrix", "--repeat", "0"], BAD_INPUT, "--repeat: 0 is not in the range"),
    (["lab", "matrix", "--only", "nope"], BAD_INPUT, "unknown scenario nope"),
    (["lab", "matrix", "--accel", "foo"], BAD_INPUT, "--accel: 'foo' is not one of"),
    (["lab", "matrix", "--out", "{EMPTY}"], BAD_INPUT, "--out: directory"),
    # preflight
    (["preflight"], BAD_INPUT, "--qmp: missing"),
    (["preflight", "--qmp", "{MISSING}"], MISSING, "does not exist"),
    (["preflight", "--qmp", "{NOTSOCK}"], MISSING, "not a socket"),
    (["preflight", "--qmp", "{MISSING}", "--allow", "magic"], BAD_INPUT, "--allow: 'magic'"),
    (["preflight", "--qmp", "{MISSING}", "--measure", "soon"], BAD_INPUT, "--measure"),
    (["preflight", "--qmp", "{MISSING}", "--platform", "vmware"], BAD_INPUT, "--platform"),
    (["preflight", "--qmp", "{MISSING}", "--link", "fast"], BAD_INPUT, "--link"),
    (["preflight", "--qmp", "{MISSING}", "--max-downtime", "0s"], BAD_INPUT, "--max-downtime"),
    # history
    (["history", "add"], BAD_INPUT, "LOG...: missing"),
    (["history", "add", "{MISSING}"], BAD_INPUT, "missing.log"),
    (["history", "add", README], BAD_INPUT, "README.md: unrecognised log format"),
    (["history", "add", "{BINARY}", "--db", "{BINARY}"], BAD_INPUT, "not an SQLite file"),
    (["history", "list", "--since", "soon"], BAD_INPUT, "--since: 'soon' is neither"),
    (["history", "list", "--db", "{BINARY}"], BAD_INPUT, "core.bin: not a migtune history"),
    (["history", "show", "x"], BAD_INPUT, "ID: 'x' is not a valid integer"),
    (["history", "show", "5", "--db", "{MISSING}"], BAD_INPUT, "no run #5"),
    (["history", "export"], BAD_INPUT, "--format: missing"),
    (["history", "export", "--format", "xml"], BAD_INPUT, "--format: 'xml' is not one of"),
    (["history", "export", "--format", "csv", "-o", "{NOWHERE}"], BAD_INPUT, "out.html"),
    (["history", "calibrate"], BAD_INPUT, "--vm: missing"),
    (["history", "calibrate", "--vm", "x", "--last", "0"], BAD_INPUT, "--last: 0 is not"),
    (["history", "calibrate", "--vm", "x", "--db", "{EMPTY}"], BAD_INPUT, "no run of VM 'x'"),
    # tune
    (["tune"], BAD_INPUT, "--from: missing"),
    (["tune", "--from", README], BAD_INPUT, "README.md: unrecognised log format"),
    (["tune", "--from", LOG, "--max-downtime", "banana"], BAD_INPUT, "cannot read duration"),
    (["tune", "--ram", "4GiB", "--workload", "ws=1GiB", "--platform", "zzz"], BAD_INPUT, "'zzz'"),
    # report
    (["report"], BAD_INPUT, "RUN: missing"),
    (["report", "{DIR}"], BAD_INPUT, "RUN: file"),
    (["report", README], BAD_INPUT, "README.md: unrecognised log format"),
    (["report", LOG, "--compare", README, "-o", "{NOWHERE}"], BAD_INPUT, "README.md"),
    (["report", LOG, "--compare", "{MISSING}", "-o", "{NOWHERE}"], BAD_INPUT, "missing.log"),
    (["report", LOG, "--format", "zzz"], BAD_INPUT, "--format: 'zzz' is not one of"),
    (["report", LOG, "-o", "{NOWHERE}"], BAD_INPUT, "out.html"),
    (["report", LOG, "--png", "{EMPTY}"], BAD_INPUT, "--png: directory"),
    (["plan", "evacuate"], BAD_INPUT, "VMS.csv|VMS.toml: missing"),
    (["plan", "evacuate", "{MISSING}", "--serial"], BAD_INPUT, "missing.log: no such file"),
    (["plan", "evacuate", "{BINARY}", "--serial"], BAD_INPUT, "core.bin: not a text file"),
    (["plan", "evacuate", "{EMPTY}", "--serial"], BAD_INPUT, "empty.log: no header line"),
    (["plan", "evacuate", "{EMPTY}", "--link", "0"], BAD_INPUT, "--link"),
    (["plan", "evacuate", "{EMPTY}", "--max-parallel", "0"], BAD_INPUT, "--max-parallel"),
    (["plan", "evacuate", "{EMPTY}", "--platform", "vmware"], BAD_INPUT, "--platform"),
]


def _ids(case):
    return " ".join(a.rsplit("/", 1)[-1] for a in case[0])[:60]


@pytest.mark.parametrize("argv, code, text", CASES, ids=[_ids(c) for c in CASES])
def test_bad_values_give_one_error_line(argv, code, text, files, capsys):
    argv = [a.format(**files) for a in argv]
    text = text.format(**files)
    assert main(argv) == code
    err = capsys.readouterr().err
    # Warnings said before the refusal (post-copy allowed) are their own lines.
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("migtune: warning: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("migtune: error: "), err
    assert text in lines[0]
    assert "Traceback" not in err


def test_every_command_is_covered():
    """A new command without a row in the table fails here."""
    import click

    from migtune.cli.main import _register, cli

    _register()
    commands = {
        f"{name} {sub}" if sub else name
        for name, cmd in cli.commands.items()
        for sub in (sorted(cmd.commands) if isinstance(cmd, click.Group) else [None])
    }
    groups = {name for name, cmd in cli.commands.items() if isinstance(cmd, click.Group)}
    covered = {" ".join(argv[:2]) if argv[0] in groups else argv[0] for argv, _, _ in CASES}
    assert commands <= covered, f"no bad-value case for {sorted(commands - covered)}"


def test_help_is_unchanged(capsys):
    assert main(["simulate", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: migtune simulate") and "--qemu-version" in out
    assert "7.2 … 10.2" in out


@pytest.mark.parametrize(
    "argv, code",
    [(["simulate", "--ram", "64MiB", "--downtime-limit", "banana"], 2), (["report", "nowhere"], 2)],
)
def test_real_entry_point_prints_one_line(argv, code):
    proc = subprocess.run(
        [sys.executable, "-m", "migtune", *argv],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == code
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("migtune: error: ")
    assert proc.stdout == ""


def test_settings_odd_for_the_guest_are_a_warning_line_and_the_command_goes_on(capsys):
    argv = ["simulate", "--ram", "384MiB", "--xbzrle-cache-size", "256MiB", "--time-limit", "5s"]
    assert main(argv) in (0, 6)  # simulated, converged or not
    captured = capsys.readouterr()
    (line,) = [x for x in captured.err.splitlines() if x.strip()]
    assert line.startswith("migtune: warning: xbzrle-cache-size 256.0 MiB is more than half")
    assert "simulated QEMU" in captured.out
