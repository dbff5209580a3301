"""Bounded number parsing, linear-time regexes and the input errors of issue 8 / 13.

Time bounds here are generous (a loaded 2-core machine): they tell linear from
quadratic (seconds to minutes at these sizes), they do not measure speed.
"""

from __future__ import annotations

import contextlib
import json
import math
import time

import pytest

from migtune.analysis.explain_qemu import size_of, split_field
from migtune.cli.main import main
from migtune.errors import InputError
from migtune.model import Run, Sample, SourceRef, Xbzrle
from migtune.sources import load_run, parse_text
from migtune.sources._bounds import check_run
from migtune.sources._common import bounded_int, first_number, json_loads
from migtune.units import format_bytes, format_duration, parse_duration, parse_rate, parse_size

HOSTILE = 200_000  # characters
LINEAR_BOUND = 1.0  # seconds; the quadratic versions took 13 s and more at 20,000


def _timed(fn, *args):
    start = time.perf_counter()
    try:
        result = fn(*args)
    except InputError as exc:
        result = exc
    return result, time.perf_counter() - start


# --------------------------------------------------------------------------- numbers


def test_first_number_is_bounded():
    assert first_number("1.2.3 ms") == 1.2
    assert first_number(f"{2**64} bytes") == 2**64  # QEMU's uint64 stays exact
    assert first_number("-5 kbytes") == -5
    assert first_number("1" * 5001) is None  # was ValueError: > 4300 digits
    assert first_number("1e999") is None  # was inf
    assert first_number("nan inf") is None


def test_bounded_int_takes_ascii_digits_only():
    assert bounded_int("123") == 123
    assert bounded_int("²") is None  # str.isdigit() is true, int() refuses it
    assert bounded_int("9" * 25) is None
    assert bounded_int("-5") == -5 and bounded_int("--5") is None and bounded_int("+") is None


def test_json_numbers_are_bounded():
    obj = json_loads('{"a": %s, "b": NaN, "c": 1e400, "d": -Infinity, "e": 7}' % ("1" * 5000))
    assert obj == {"a": None, "b": None, "c": None, "d": None, "e": 7}
    with pytest.raises(ValueError):
        json_loads("[" * 100_000)
    with pytest.raises(ValueError):
        json_loads('{"a": 1} trailing')


def test_check_run_drops_impossible_values_with_a_warning():
    ref = SourceRef(7, "line seven")
    s = Sample(
        t=math.nan,
        transferred=-5,
        remaining=2**70,
        throughput=math.inf,
        dirty_rate=-1.0,
        throttle_pct=150.0,
        downtime=-0.5,
        total_time=12.0,
        page_size=0,
        xbzrle=Xbzrle(cache_size=True, cache_miss_rate=3.0, bytes=100),
        source=ref,
    )
    run = Run(format="qmp", samples=[s], ram_bytes=-1, downtime=math.nan)
    run.settings.capabilities = "xbzrle"  # type: ignore[assignment] - a hand-edited recording
    run.settings.max_cpu_throttle = 400
    check_run(run)
    for name in ("t", "transferred", "remaining", "throughput", "dirty_rate", "throttle_pct"):
        assert getattr(s, name) is None, name
    assert s.downtime is None and s.page_size is None
    assert s.total_time == 12.0  # good values stay
    assert s.xbzrle.cache_size is None and s.xbzrle.cache_miss_rate is None
    assert s.xbzrle.bytes == 100
    assert run.ram_bytes is None and run.downtime is None
    assert run.settings.capabilities == {} and run.settings.max_cpu_throttle is None
    assert run.partial
    assert any(w.startswith("line 7: transferred = -5") for w in run.warnings)


def test_formatters_never_raise():
    for value in (math.inf, -math.inf, math.nan, 10**400):
        assert format_bytes(value) == "?"
        assert format_duration(value) == "?"


@pytest.mark.parametrize("parse", [parse_size, parse_rate, parse_duration])
@pytest.mark.parametrize("bad", ["nan", "inf", "1e400GiB", "1.2.3", "-5GiB", "9" * 400])
def test_unit_parsers_refuse_absurd_values(parse, bad):
    with pytest.raises(InputError):
        parse(bad)


@pytest.mark.parametrize("parse", [parse_size, parse_rate, parse_duration])
def test_unit_parsers_refuse_non_finite_numbers(parse):
    with pytest.raises(InputError):
        parse(math.nan)


def test_unit_parsers_still_read_what_operators_type():
    assert parse_size("4GiB") == 4 * 1024**3
    assert parse_size(" 64 MiB ") == 64 * 1024**2
    assert parse_size(".5G") == 512 * 1024**2
    assert parse_rate("1Gbit/s") == 125_000_000
    assert parse_duration("300ms") == pytest.approx(0.3)


# --------------------------------------------------------------------------- linear regexes


@pytest.mark.parametrize(
    "hostile",
    [
        "1" * HOSTILE + "!",
        "1" + " " * HOSTILE + "!",
        "." + "1" * HOSTILE + "!",
        "1e" + "1" * HOSTILE + "!",
        "1" + " " * HOSTILE + "G" * 1000 + "!",
    ],
    ids=["digits", "blanks", "fraction", "exponent", "unit"],
)
def test_parse_size_is_linear(hostile):
    result, secs = _timed(parse_size, hostile)
    assert isinstance(result, InputError)
    assert len(str(result)) < 200  # the message does not echo 200 KB back
    assert secs < LINEAR_BOUND


@pytest.mark.parametrize(
    "line",
    [
        "total time: " + " " * HOSTILE + "x",
        "a" + " " * HOSTILE + "x",
        "transferred ram:" + "," * HOSTILE + "!",
    ],
)
def test_explain_split_field_is_linear(line):
    _, secs = _timed(split_field, line)
    assert secs < LINEAR_BOUND


def test_explain_size_of_is_linear():
    value, secs = _timed(size_of, "1" * HOSTILE + "!", "libvirt")
    assert value is None  # 200,000 digits are no size
    assert secs < LINEAR_BOUND


def test_split_field_reads_the_usual_lines():
    assert split_field("Migration status: active") == ("status", "active")
    assert split_field("  'total-time': 5000,") == ("total_time", "5000")
    assert split_field('    "remaining": 1048576},') == ("remaining", "1048576")
    assert split_field("not a field") is None


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("hmp", "capabilities: " + "a" * HOSTILE + "\nMigration status: active\n"),
        ("hmp", "Migration status: active\nXBZRLE: " + "a_b" * (HOSTILE // 3) + "\n"),
        (
            "libvirt",
            '{"component": "virt-launcher", "msg": "Migration info for x: '
            + "A" * HOSTILE
            + ' TimeElapsed:5ms"}\n',
        ),
        ("libvirt", "Job type: Unbounded\nTime elapsed: 63874" + " " * HOSTILE + "ms\n"),
        ("qmp", '{"return": {"status": "active"}}\na' + " " * HOSTILE + "x\n"),
        ("qmp", "'ram': {'mbps': 1,\n" + "\t" * HOSTILE + "x\n"),
    ],
    ids=[
        "hmp-capabilities",
        "hmp-pairs",
        "kubevirt-pairs",
        "virsh-padded",
        "qmp-blanks",
        "pydump-tabs",
    ],
)
def test_parser_regexes_are_linear(fmt, text):
    start = time.perf_counter()
    with contextlib.suppress(InputError):  # refusing it is fine; taking minutes is not
        parse_text(text, fmt)
    assert time.perf_counter() - start < LINEAR_BOUND


# --------------------------------------------------------------------------- input errors


def test_empty_qmp_reply_is_reported_as_such(tmp_path):
    path = tmp_path / "reply.json"
    path.write_text('{"return": {}}\n')
    with pytest.raises(InputError) as err:
        load_run(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert "QMP reply with no migration info" in message
    assert "dict dumps" not in message


def test_unrecognised_format_names_the_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\neggs\nmilk\n")
    with pytest.raises(InputError, match=f"^{path}: unrecognised log format"):
        load_run(path)


def test_forced_format_that_fits_nothing_is_an_input_error(tmp_path, capsys):
    path = tmp_path / "hmp.txt"
    path.write_text("Migration status: active\ntotal time: 1000 ms\n")
    with pytest.raises(InputError, match="nothing in it reads as a proxmox migration log"):
        load_run(path, "proxmox")
    assert main(["diagnose", "--format", "proxmox", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("migtune: error: ")


def test_recording_header_of_the_wrong_types_is_a_warning(tmp_path):
    header = {
        "kind": "header",
        "migtune-recording": 1,
        "origin": ["lab"],
        "t0": "yesterday",
        "settings": "fast",
        "meta": [1, 2, 3],
    }
    sample = {"kind": "sample", "t": 1.0, "query-migrate": {"status": "active"}}
    event = {"kind": "qmp-event", "t": 1.5, "event": "MIGRATION", "data": "completed"}
    path = tmp_path / "rec.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in (header, sample, event)) + "\n")
    run = load_run(path)
    assert run.partial and len(run.samples) == 1
    assert any("'settings' is not a JSON object" in w for w in run.warnings)
    assert any("'meta' is not a JSON object" in w for w in run.warnings)
    assert run.t0 is None and run.meta["origin"] is None


def test_objects_sharing_a_line_keep_its_time_stamp(tmp_path):
    """The decoder no longer re-reads the line before each object, but an object later on a
    line still gets the date-time printed at the line's start."""
    reply = '{"return": {"status": "active", "total-time": %d, "ram": {"transferred": %d}}}'
    path = tmp_path / "wire.log"
    path.write_text(
        "2026-01-05T10:00:00Z QMP <<< " + " ".join(reply % (i, i) for i in (1000, 2000)) + "\n"
        "2026-01-05T10:00:05Z QMP <<< " + reply % (6000, 3) + "\n"
    )
    run = load_run(path)
    assert [(s.t, s.transferred) for s in run.samples] == [(0.0, 1000), (0.0, 2000), (5.0, 3)]


def test_qmp_one_line_stream_is_linear(tmp_path):
    reply = '{"return": {"status": "active", "total-time": 5, "ram": {"transferred": 7}}} '
    path = tmp_path / "stream.json"
    # 12,000 objects: 0.9 MB, under the 1 MiB at which the line reader cuts a line.
    path.write_text("2026-01-05T10:00:00Z " + reply * 12_000 + "\n")
    run, secs = _timed(load_run, path)
    count = len(run.samples)  # (not the run itself in the assert: its repr is huge)
    assert count == 12_000
    assert secs < 5 * LINEAR_BOUND  # was minutes: 58 s at 456 KB


def test_setting_changes_out_of_range_are_dropped(tmp_path):
    path = tmp_path / "hmp.txt"
    path.write_text(
        "(qemu) migrate_set_parameter downtime-limit 300\nMigration status: active\n"
        "total time: 1000 ms\n(qemu) migrate_set_parameter downtime-limit -5\n"
        "Migration status: completed\ndowntime: 1688 ms\n"
    )
    run = load_run(path)
    changes = [e for e in run.events if e.kind == "downtime-change"]
    assert changes and all("downtime_limit" not in e.data for e in changes)
    assert "line 4: event downtime-limit = -0.005 is out of range; ignored" in run.warnings
