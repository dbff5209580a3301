"""Property: whatever value an option gets, the command either does its job or prints one
line ``migtune: error: ...`` with a documented exit code - never a traceback or an
internal error.  Values are the ones that broke number parsing elsewhere (huge, NaN,
infinite, tiny, negative) plus arbitrary text.

Options that write files (``-o``, ``--png``, ``--record``, ``--out``) or size the
simulated guest (``--ram``: a valid 1 TiB would really be simulated) are left out; the
lab and migrate never get far enough to start a QEMU.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migtune.cli.main import _register, cli, main
from migtune.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
LOG = str(ROOT / "examples" / "hmp-10.1-compact-active.txt")

NASTY = [
    "", " ", "-", "--", "0", "-0", "-1", "1", "0.5", "1e-300", "1e308", "1e400", "nan", "NaN",
    "inf", "-inf", "9" * 5000, "1.2.3", "0x10", "1_000", "\x00", "\udcff", "ünï", "=", "a=b",
    "5GiB", "-5GiB", "1e400GiB", "300ms", "-300ms", "1Gbit/s", "0B/s", "0.1B/s", "100%",
    "101", "255", "256", "3.0", "10.0", "10.3", "99999999999999999999", "1/0", "%s", "{}",
]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.tuples(st.sampled_from(["", "-"]), st.integers(0, 10**6), st.sampled_from(
        ["B", "KiB", "MiB", "GiB", "TiB", "ms", "s", "min", "h", "MiB/s", "Gbit/s", "%", "x"]
    )).map(lambda t: f"{t[0]}{t[1]}{t[2]}"),
)  # fmt: skip
SKIP = {"--help", "-h", "--ram", "-o", "--output", "--png", "--record", "--out", "--trace"}


def value_options(*path: str) -> list[str]:
    """The options of ``migtune PATH`` that take a value (flags have nothing to fuzz)."""
    _register()
    cmd: click.Command = cli
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return sorted(
        next(o for o in p.opts if o.startswith("--"))
        for p in cmd.params
        if isinstance(p, click.Option) and not p.is_flag and not SKIP & set(p.opts)
    )


def run(argv: list[str]) -> tuple[int, list[str]]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, [line for line in err.getvalue().splitlines() if line.strip()]


def check(rc: int, lines: list[str], allowed: set[int]) -> None:
    text = "\n".join(lines)
    assert rc in allowed, text
    assert "Traceback" not in text and "internal error" not in text, text
    errors = [line for line in lines if not line.startswith("migtune: warning: ")]
    if rc in (2, 5):
        assert len(errors) == 1 and errors[0].startswith("migtune: error: "), text
    else:
        assert errors == [], text


# A fast slice by default; MIGTUNE_CLI_FUZZ_EXAMPLES=5000 for a long search.
EXAMPLES = int(os.environ.get("MIGTUNE_CLI_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(option=st.sampled_from(value_options("simulate")), value=VALUES)
def test_simulate_option_values(option, value):
    rc, lines = run(["simulate", "--ram", "64MiB", "--time-limit", "1s", option, value])
    check(rc, lines, {0, 2, 6})


@FUZZ
@given(value=VALUES)
def test_simulate_set_values(value):
    name = value.split("=")[0] if "=" in value else "downtime-limit"
    rc, lines = run(["simulate", "--ram", "64MiB", "--time-limit", "1s", "--set", value])
    check(rc, lines, {0, 2, 6})
    rc, lines = run(
        ["simulate", "--ram", "64MiB", "--time-limit", "1s", "--set", f"{name}={value}"]
    )
    check(rc, lines, {0, 2, 6})


@FUZZ
@given(option=st.sampled_from(value_options("migrate")), value=VALUES)
def test_migrate_option_values(option, value):
    # No socket at this path: whatever passes validation ends at exit 5, untouched.
    argv = ["migrate", "--qmp", "/nonexistent/migtune-fuzz.qmp", "--to", "tcp:127.0.0.1:1"]
    rc, lines = run([*argv, option, value])
    check(rc, lines, {2, 5})


@pytest.fixture
def lab_stops_before_qemu(monkeypatch):
    """Whatever the CLI accepts reaches lab_run, which here refuses instead of booting."""

    def refuse(*_a, **_k):
        raise InputError("fuzz: reached lab_run")

    monkeypatch.setattr("migtune.lab.run.lab_run", refuse)


@settings(FUZZ, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(value_options("lab", "run")), value=VALUES)
def test_lab_run_option_values(option, value, lab_stops_before_qemu):
    rc, lines = run(["lab", "run", option, value])
    check(rc, lines, {2})


@FUZZ
@given(option=st.sampled_from(value_options("lab", "matrix")), value=VALUES)
def test_lab_matrix_option_values(option, value):
    rc, lines = run(["lab", "matrix", "--list", option, value])  # --list: never runs one
    check(rc, lines, {0, 2})


@FUZZ
@given(command=st.sampled_from(["explain", "diagnose", "report"]), value=VALUES)
def test_log_command_format_and_compare_values(command, value):
    # A report that would be written goes nowhere: exit 2 naming the output file.
    out = ["-o", "/nonexistent/dir/x.html"] if command == "report" else ["--json"]
    rc, lines = run([command, LOG, "--format", value, *out])
    check(rc, lines, {2} if command == "report" else {0, 2})
    if command == "report":
        rc, lines = run(["report", LOG, "--compare", value, *out])
        check(rc, lines, {2})
