"""The Proxmox source's streaming reader: units, timestamps, laziness, never raising."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES, FIXTURES, real_log_files
from migtune.errors import InputError
from migtune.model import EVENT_KINDS, Event, Run, Sample
from migtune.sources import load_run, proxmox, split_header_comments
from migtune.sources.proxmox_handlers import pve_bytes, render_duration
from migtune.sources.proxmox_lines import Update, iter_records
from migtune.units import GiB, MiB, parse_pve_bytes

PROXMOX_FIXTURES = FIXTURES / "proxmox"
EXAMPLE_FILES = sorted(EXAMPLES.glob("proxmox-*.log"))


# --- units, timestamps, streaming -------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["34.5 MiB", "40.6 GiB", "0.0 B", "1014.6 MiB", "1.1 GiB", "512.0 B", "2.0 TiB"]
)
def test_pve_bytes_matches_units(text):
    assert pve_bytes(text) == parse_pve_bytes(text)


def test_page_rate_units():
    recs = list(
        iter_records(
            [
                "2025-01-01 00:00:00 migration active, transferred 1.0 GiB of 2.0 GiB VM-state, 34.5 MiB/s"
            ]
        )
    )
    (sample,) = [r for r in recs if isinstance(r, Sample)]
    assert sample.page_rate == 36175872
    assert sample.throughput is None and sample.transferred == GiB and sample.total == 2 * GiB


@pytest.mark.parametrize(
    "text,seconds", [("5s", 5), ("1m 5s", 65), ("1h 2m 3s", 3723), ("1d 1s", 86401), ("x", None)]
)
def test_render_duration(text, seconds):
    assert render_duration(text) == seconds


def test_short_stamps_roll_over_the_year():
    lines = [
        "Dec 31 23:59:58 starting migration of VM 1 to node 'b' (10.0.0.2)",
        "Jan 01 00:00:03 migration status: active (transferred 10, remaining 5), total 20)",
    ]
    run = proxmox.parse(lines)
    assert run.samples[0].t == 5.0


def test_bad_stamp_is_not_a_stamp():
    run = proxmox.parse(["2025-13-45 99:99:99 starting VM 7 on remote node 'x'"])
    assert run.t0 is None and run.vm is None
    assert run.meta["unrecognised_lines"] == 1


def test_xbzrle_without_progress_line_is_its_own_sample():
    lines = [
        "2025-01-01 00:00:00 start migrate command to unix:/run/qemu-server/1.migrate",
        "2025-01-01 00:00:01 xbzrle: send updates to 5 pages in 1.0 KiB encoded memory, overflow 2",
    ]
    run = proxmox.parse(lines)
    assert len(run.samples) == 1
    assert run.samples[0].transferred is None and run.samples[0].xbzrle.overflow == 2
    assert run.status == "active"


def test_iter_records_streams_from_a_file():
    text = (EXAMPLES / "proxmox-16GiB-insecure-10GbE-completed.log").read_text()
    records = list(iter_records(io.StringIO(text)))
    assert records[0] == Update("run.t0", 1756937645.0, 11)
    samples = [r for r in records if isinstance(r, Sample)]
    assert len(samples) == 11 and samples[0].source.line == 22
    assert all(isinstance(r, (Sample, Event, Update)) for r in records)


def test_parse_accepts_crlf_and_a_generator():
    text = (EXAMPLES / "proxmox-8GiB-broken-pipe-failed.log").read_text()
    body, _ = split_header_comments(text.splitlines())
    run = proxmox.parse(line + "\r\n" for line in body)
    assert run.status == "failed" and len(run.samples) == 22


def test_sniff_rejects_other_formats():
    for path in real_log_files():
        body, _ = split_header_comments(path.read_text().splitlines())
        score = proxmox.sniff([line for line in body if line.strip()])
        if path.name.startswith("proxmox-"):
            assert score >= 0.9, path.name
        else:
            assert score < 0.2, path.name


def test_garbage_lines_are_warnings():
    run = proxmox.parse(["\x00\x01garbage\ufffd", "TASK OK"])
    assert run.partial and any("unreadable" in w for w in run.warnings)


# --- robustness (hypothesis) ------------------------------------------------------------------

_ALL_TEXT = [p.read_text() for p in EXAMPLE_FILES] + [
    p.read_text() for p in sorted(PROXMOX_FIXTURES.glob("*.log"))
]
_ALL_LINES = [line for text in _ALL_TEXT for line in text.splitlines()]
_ALL_LINES += [line for p in real_log_files() for line in p.read_text().splitlines()]


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_random_text_never_raises(text):
    run = proxmox.parse(text.splitlines())
    assert run.format == "proxmox"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_byte_soup_never_raises(data):
    run = proxmox.parse(data.decode("utf-8", errors="replace").splitlines())
    assert run.status in ("completed", "failed", "cancelled", "active", "unknown")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_ALL_LINES), max_size=80), st.randoms())
def test_mixed_and_shuffled_lines_never_raise(lines, rnd):
    rnd.shuffle(lines)
    run = proxmox.parse(lines)
    assert isinstance(run, Run)
    assert {e.kind for e in run.events} <= set(EVENT_KINDS)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(EXAMPLE_FILES), st.floats(0.0, 1.0), st.integers(0, 200))
def test_truncation_keeps_earlier_samples(path, where, cut_chars):
    body, _ = split_header_comments(path.read_text().splitlines())
    full = proxmox.parse(body)
    # The task's final "migration finished/aborted" line is where the log becomes complete.
    end = max(i for i, line in enumerate(body) if "migration finished" in line) + 1
    cut = max(1, int(where * end))  # keep lines[:cut-1] whole, cut line `cut`
    if cut == end:
        cut_chars = min(cut_chars, len(body[cut - 1]) - 2)
    lines = body[: cut - 1] + [body[cut - 1][:cut_chars]]
    run = proxmox.parse(lines)
    assert run.partial or run.status == "active"
    before = [s for s in full.samples if s.source.line < cut]
    got = [s for s in run.samples if s.source.line < cut]
    key = lambda s: (s.source.line, s.t, s.status, s.transferred, s.remaining, s.total, s.page_rate)  # noqa: E731
    assert [key(s) for s in got] == [key(s) for s in before]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(min_size=1))
def test_load_run_only_input_errors(tmp_path, text):
    path = tmp_path / "log.txt"
    path.write_text(text, encoding="utf-8")
    try:
        run = load_run(path)
    except InputError:
        return
    assert isinstance(run, Run)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_load_run_detects_examples(path):
    assert load_run(path).format == "proxmox"


def test_iter_records_is_lazy():
    # Records come out as lines go in (at most one record is held back), so memory does
    # not depend on the length of the log.
    consumed = 0

    def lines():
        nonlocal consumed
        for i in range(5000):
            consumed += 1
            yield (
                f"2025-01-01 0{i // 3600}:{i // 60 % 60:02d}:{i % 60:02d} migration active, "
                f"transferred {i}.0 MiB of 8.0 GiB VM-state, 1.0 MiB/s"
            )

    seen = 0
    for rec in iter_records(lines()):
        if isinstance(rec, Sample):
            assert rec.transferred == round(seen * MiB)
            assert consumed <= seen + 2
            seen += 1
    assert seen == 5000


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_ALL_LINES), min_size=1, max_size=30),
    st.lists(st.sampled_from(["", ".", "1..2", "9" * 30, "1e999", "nan", "٣", "-1", "00"])),
)
def test_template_lines_with_odd_numbers_never_raise(lines, numbers):
    # Known templates whose numbers are replaced by odd ones must not crash the handlers.
    odd = iter(numbers * 50)
    mutated = [re.sub(r"\d+(?:\.\d+)?", lambda m: next(odd, m.group(0)), line) for line in lines]
    run = proxmox.parse(mutated)
    assert isinstance(run, Run)
