"""Property tests for the QMP, HMP, libvirt and nova parsers, and format detection.

* any text or bytes: ``parse`` raises nothing but ``InputError``;
* every fixture cut at any point: same, and the samples completed before the cut
  are still there with the same values;
* lines of other formats mixed in: still nothing but ``InputError``;
* ``detect_format`` picks the right format for every fixture, example and real log.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES, FIXTURES, real_log_files
from migtune.errors import InputError
from migtune.sources import (
    FORMATS,
    detect_format,
    hmp,
    libvirt,
    load_run,
    nova,
    parse_text,
    qmp,
    split_header_comments,
)

PARSERS = {"qmp": qmp, "hmp": hmp, "libvirt": libvirt, "nova": nova}
FIXTURE_FILES = sorted(p for fmt in PARSERS for p in (FIXTURES / fmt).iterdir() if p.is_file())
EXAMPLE_PREFIXES = {
    "qmp-": "qmp",
    "hmp-": "hmp",
    "virsh-domjobinfo-": "libvirt",
    "nova-": "nova",
}
EXAMPLE_FILES = sorted(
    p
    for p in (EXAMPLES.iterdir() if EXAMPLES.is_dir() else [])
    if any(p.name.startswith(prefix) for prefix in EXAMPLE_PREFIXES)
)
SHARED_FORMATS = {
    "fcqemu-": "qmp",
    "qemu-hmp-": "hmp",
    "nova-": "nova",
    "proxmox-": "proxmox",
}
HAVE_PROXMOX = importlib.util.find_spec("migtune.sources.proxmox") is not None
PROPS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def _format_of(path: Path) -> str:
    for prefix, fmt in SHARED_FORMATS.items():
        if path.parent.name == "logs" and path.name.startswith(prefix):
            return fmt
    return path.parent.name


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _parse_or_input_error(text: str, fmt: str):
    try:
        return parse_text(text, fmt)
    except InputError:
        return None


def _key(s):
    return (s.t, s.status, s.transferred, s.remaining, s.total, s.passes, s.throughput)


@pytest.mark.parametrize("fmt", sorted(PARSERS))
@PROPS
@given(text=st.text(max_size=400))
def test_random_text_never_crashes(fmt, text):
    _parse_or_input_error(text, fmt)


@pytest.mark.parametrize("fmt", sorted(PARSERS))
@PROPS
@given(data=st.binary(max_size=400))
def test_random_bytes_never_crash(fmt, data):
    _parse_or_input_error(data.decode("utf-8", errors="replace"), fmt)


_FIELD_LINES = st.sampled_from(
    [
        "Migration status: active",
        "Status: \t\tfailed (boom)",
        "transferred ram: 12 kbytes",
        "Time (ms): \t\ttotal=abc, setup=",
        "  Transfers: \t\ttransferred=1.5 XiB, remain=",
        "Job type:         Unbounded",
        "Memory total:     8.000 GiB",
        "Dirty rate: pages/s",
        "Job type: 99",
        '{"return": {"status": "active", "ram": {"total": "x"}}}',
        '{"return": {"status": 5, "ram": []}}',
        '{"event": "MIGRATION", "data": null}',
        "{'ram': {'mbps': 'fast',",
        "'total-time': }",
        "Increasing downtime to 0 ms after 0 sec elapsed time",
        "Migration running for 5 secs, memory 0% remaining (bytes processed=1, remaining=0, total=0)",
        "2026-01-05 10:00:00.000 1 INFO nova.virt.libvirt.driver [instance: abc] Migration operation has completed",
        "(qemu) migrate_set_parameter max-bandwidth lots",
        "(qemu) migrate_set_speed 10Q",
        "$ virsh migrate-setmaxdowntime vm 1e9",
        "max-bandwidth: bytes/second",
        "capabilities: xbzrle: maybe",
        "transferred ram: 1e999 kbytes",
        "throughput: 1e400 mbps",
        "Memory total:     1e999 GiB",
        "Memory bandwidth: 1e999 MiB/s",
        "  Sizes: \t\tpagesize=1e999 KiB, total=9e9999 B",
        "Time elapsed:     1e999        ms",
        '{"return": {"status": "active", "total-time": 1e999, "ram": {"total": Infinity}}}',
        '{"return": {"status": "active", "ram": {"total": NaN, "page-size": -1}}}',
        "{'ram': {'total': 1e999, 'page-size': 0},",
        "(qemu) migrate_set_parameter downtime-limit 1e999",
        "$ virsh migrate-setspeed vm 99999999999999999999999999",
        "",
    ]
)


@pytest.mark.parametrize("fmt", sorted(PARSERS))
@PROPS
@given(lines=st.lists(_FIELD_LINES, max_size=25))
def test_near_miss_lines_never_crash(fmt, lines):
    _parse_or_input_error("\n".join(lines), fmt)


def _my_real_logs() -> list[Path]:
    return [p for p in real_log_files() if _format_of(p) in PARSERS]


@pytest.mark.parametrize(
    "path", FIXTURE_FILES + _my_real_logs(), ids=lambda p: f"{p.parent.name}/{p.name}"
)
@PROPS
@given(cut=st.floats(min_value=0.0, max_value=1.0))
def test_truncation_keeps_samples_before_the_cut(path, cut):
    fmt = _format_of(path)
    text = _text(path)
    full = parse_text(text, fmt)
    pos = int(len(text) * cut)
    truncated = text[:pos]
    cut_line = truncated.count("\n") + 1  # the line the cut falls in
    run = _parse_or_input_error(truncated, fmt)
    # A sample is certainly complete when the next one starts before the cut line.
    complete = [
        s
        for s, nxt in zip(full.samples, full.samples[1:], strict=False)
        if nxt.source is not None and nxt.source.line < cut_line
    ]
    if not complete:
        return
    assert run is not None, f"{path.name} cut at line {cut_line} lost every sample"
    kept = [_key(s) for s in run.samples]
    for s in complete:
        assert _key(s) in kept, f"{path.name} cut at line {cut_line} lost the sample at {s.t}"


def _other_lines() -> list[str]:
    lines: list[str] = []
    for path in FIXTURE_FILES:
        body, _ = split_header_comments(_text(path).splitlines())
        lines.extend(line for line in body if line.strip())
    for path in real_log_files():
        if path.name.startswith("proxmox-"):
            body, _ = split_header_comments(_text(path).splitlines())
            lines.extend(line for line in body if line.strip())
    return lines


OTHER_LINES = _other_lines()


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
@settings(max_examples=15, deadline=None, derandomize=True)
@given(data=st.data())
def test_foreign_lines_mixed_in(path, data):
    fmt = _format_of(path)
    lines = _text(path).splitlines()
    foreign = data.draw(st.lists(st.sampled_from(OTHER_LINES), max_size=8))
    for line in foreign:
        at = data.draw(st.integers(min_value=0, max_value=len(lines)))
        lines.insert(at, line)
    _parse_or_input_error("\n".join(lines), fmt)


# --- format detection ---------------------------------------------------------------


def _detect(path: Path) -> str:
    body, _ = split_header_comments(_text(path).splitlines())
    return detect_format([line for line in body if line.strip()])


needs_proxmox = pytest.mark.skipif(
    not HAVE_PROXMOX, reason="sources/proxmox.py not written yet: cross-format detection"
)


@needs_proxmox
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_detect_format_fixtures(path):
    assert _detect(path) == _format_of(path)
    assert load_run(path).format == _format_of(path)


@needs_proxmox
@settings(max_examples=40, deadline=None, derandomize=True)
@given(lines=st.lists(st.sampled_from(OTHER_LINES), max_size=12), noise=st.text(max_size=80))
def test_detect_format_on_mixtures(lines, noise):
    try:
        fmt = detect_format([*lines, noise])
    except InputError:
        return
    assert fmt in FORMATS


@needs_proxmox
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_detect_format_examples(path):
    expected = next(fmt for prefix, fmt in EXAMPLE_PREFIXES.items() if path.name.startswith(prefix))
    assert _detect(path) == expected


@needs_proxmox
@pytest.mark.parametrize("path", real_log_files(), ids=lambda p: p.name)
def test_detect_format_real_logs(path):
    expected = next(fmt for prefix, fmt in SHARED_FORMATS.items() if path.name.startswith(prefix))
    assert _detect(path) == expected


@pytest.mark.parametrize(
    "path", [p for p in real_log_files() if p.name.startswith("proxmox-")], ids=lambda p: p.name
)
def test_my_sniffers_stay_quiet_on_proxmox(path):
    body, _ = split_header_comments(_text(path).splitlines())
    lines = [line for line in body if line.strip()]
    for fmt, module in PARSERS.items():
        assert module.sniff(lines) < 0.2, fmt


def test_examples_exist_for_every_format():
    found = {
        fmt
        for prefix, fmt in EXAMPLE_PREFIXES.items()
        for p in EXAMPLE_FILES
        if p.name.startswith(prefix)
    }
    assert found == set(PARSERS.keys())


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_examples_start_with_a_comment_block_and_parse(path):
    text = _text(path)
    assert text.startswith("# ")
    expected = next(fmt for prefix, fmt in EXAMPLE_PREFIXES.items() if path.name.startswith(prefix))
    run = parse_text(text, expected)
    assert run.samples or run.events
    assert run.meta["comments"]
