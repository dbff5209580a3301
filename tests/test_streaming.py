"""Huge logs stream: lines re-read on demand, bounded samples/events, streamed explain JSON.

Unit tests for the pieces (LineSource, SampleList/EventList, the report's linear series)
and invariants on every example and fixture; one subprocess test checks that memory
does not grow with the log.  The 1 GB figures come from benchmarks/bench_stream.py.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from migtune import bounded
from migtune.analysis.diagnose import diagnose
from migtune.analysis.explain import explain
from migtune.analysis.metrics import compute
from migtune.errors import MigtuneError
from migtune.model import Event, Run, Sample, SourceRef, Xbzrle
from migtune.outputs import jsonout
from migtune.report import ProxmoxExcerpt, logview
from migtune.report import series as report_series
from migtune.sources import detect_format, linesource, load_run, parse_text
from migtune.sources.linesource import LineSource

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    [p for p in (REPO / "examples").iterdir() if p.is_file()]
    + [p for p in (REPO / "tests" / "fixtures").rglob("*") if p.is_file()]
)
BENCH = REPO / "benchmarks"


# --- LineSource ---------------------------------------------------------------------------

_AWKWARD = (
    b"first\r\nsecond\rthird\n\nform\x0cfeed\n"
    b"bad \xff\xfe utf-8\nsep\xe2\x80\xa8arated\n\n  \nlast line without newline"
)


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_line_source_splits_like_splitlines(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(linesource, "_CHUNK", chunk)
    path = tmp_path / "log"
    path.write_bytes(_AWKWARD)
    want = _AWKWARD.decode("utf-8", errors="replace").splitlines()
    src = LineSource(path)
    assert list(src) == want
    assert list(src) == want  # read again: nothing was consumed for good


def test_overlong_line_is_cut_and_numbers_stay(tmp_path, monkeypatch):
    monkeypatch.setattr(linesource, "MAX_LINE_CHARS", 100)
    monkeypatch.setattr(linesource, "_CHUNK", 64)
    path = tmp_path / "log"
    path.write_text("short\n" + "x" * 5000 + "\nafter\n")
    got = list(LineSource(path))
    assert got[0] == "short" and got[1] == "x" * 100 and got[2] == "after"
    assert len(got) == 3


def test_overlong_line_warns_in_run(tmp_path, monkeypatch):
    import migtune.sources as sources

    monkeypatch.setattr(linesource, "MAX_LINE_CHARS", 200)
    monkeypatch.setattr(sources, "MAX_LINE_CHARS", 200)
    log = (REPO / "examples" / "proxmox-32GiB-not-converging.log").read_text()
    lines = log.splitlines()
    lines[20] = lines[20] + " " + "y" * 1000
    path = tmp_path / "long.log"
    path.write_text("\n".join(lines) + "\n")
    run = load_run(path)
    assert run.partial
    assert any("line 21 is" in w and "characters long" in w for w in run.warnings)
    x = explain(run)
    assert [ln.line for ln in x.lines] == list(range(1, len(lines) + 1))


def test_stdin_is_spooled_and_read_again():
    data = (REPO / "examples" / "proxmox-32GiB-not-converging.log").read_bytes()
    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("migtune-stdin-*"))
    src = LineSource.from_stdin(io.BytesIO(data))
    spool = src.path
    assert list(src) == data.decode().splitlines()
    it = iter(src)  # two walks at once (explain's lines and its re-parse) each read it all
    assert next(it) == data.decode().splitlines()[0]
    assert list(src) == data.decode().splitlines()
    if spool.startswith("/proc/"):
        # No name left in the temp directory: a killed migtune leaves nothing behind.
        assert set(tmp.glob("migtune-stdin-*")) == before
    del src, it
    assert spool.startswith("/proc/") or not os.path.exists(spool)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "file is empty"), (b"  \n\n \t\n", "file is empty"), (b"\x00" * 4000, "binary")],
)
def test_bad_files_are_input_errors(tmp_path, content, message):
    path = tmp_path / "f.log"
    path.write_bytes(content)
    with pytest.raises(MigtuneError, match=message):
        load_run(path)


# --- every example and fixture: what held before still holds ----------------------------


def _runs():
    for path in SOURCES:
        try:
            yield path, load_run(path)
        except MigtuneError:
            continue


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_explain_json_invariants(path):
    try:
        run = load_run(path)
    except MigtuneError:
        pytest.skip("not a log load_run accepts")
    x = explain(run)
    text = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    whole = jsonout.explanation_dict(x)
    # Every line of the file, numbered from 1, with its text, in order.
    assert [ln["line"] for ln in whole["lines"]] == list(range(1, len(text) + 1))
    assert [ln["text"] for ln in whole["lines"]] == text
    assert list(whole) == [
        "migtune_version",
        "format",
        "status",
        "partial",
        "warnings",
        "summary",
        "lines",
        "timeline",
        "predictions",
        "diagnosis",
    ]
    # The streamed writer gives byte for byte what the whole object dumps to.
    buf = io.StringIO()
    jsonout.write_explanation(x, buf)
    assert buf.getvalue() == jsonout.dumps(whole) + "\n"
    assert json.loads(buf.getvalue()) == whole
    # Same answer when the log is given as text (lists) rather than streamed from disk.
    again = parse_text(path.read_bytes().decode("utf-8", errors="replace"))
    assert jsonout.diagnosis_dict(diagnose(again)) == whole["diagnosis"]


# --- thinning -----------------------------------------------------------------------------


def _synthetic(n: int, seed: int = 3) -> list[Sample]:
    rng = random.Random(seed)
    out, x, rem, passes = [], 0, 8 * 1024**3, 1
    for i in range(n):
        x += rng.randint(10, 60) * 1024**2
        if rng.random() < 0.01:
            rem += rng.randint(5, 900) * 1024**2  # a dirty sync
            passes += 1
        else:
            rem = max(0, rem - rng.randint(0, 40) * 1024**2)
        status = "completed" if i == n - 1 else "active"
        out.append(
            Sample(
                t=float(i),
                status=status,
                transferred=x,
                remaining=rem,
                total=16 * 1024**3,
                page_rate=rng.uniform(1e6, 9e8),
                dirty_rate=0.0 if i < 20 else rng.choice([None, rng.uniform(1e6, 2e8)]),
                passes=passes,
                throttle_pct=float(min(99, 20 + 10 * (i // 4000))),
                xbzrle=Xbzrle(cache_miss_rate=rng.random(), overflow=i // 10) if i > 50 else None,
                source=SourceRef(i + 1, f"line {i + 1}"),
            )
        )
    return out


def test_sample_list_is_bounded_and_keeps_change_points():
    samples = _synthetic(40_000)
    kept = bounded.SampleList(limit=2_000)
    for s in samples:
        kept.append(s)
    assert kept.thinned and kept.seen == len(samples)
    assert len(kept) <= 2_000 + bounded.TAIL + 64
    ids = {id(s) for s in kept}
    assert id(samples[0]) in ids and id(samples[-1]) in ids
    changes = [
        b
        for a, b in zip(samples, samples[1:], strict=False)
        if (a.passes, a.throttle_pct, a.status) != (b.passes, b.throttle_pct, b.status)
    ]
    assert changes and all(id(s) in ids for s in changes)
    assert [s.source.line for s in kept] == sorted(s.source.line for s in kept)


def test_thinned_run_has_exact_whole_run_figures():
    samples = _synthetic(30_000)
    full = Run(format="qmp", samples=list(samples), status="active")
    thin = Run(format="qmp", status="active")
    thin.samples = bounded.SampleList(limit=1_000)
    for s in samples:
        thin.samples.append(s)
    a, b = compute(full), compute(thin)
    for name in (
        "transferred_bytes",
        "ram_bytes",
        "remaining_bytes",
        "throughput",
        "throughput_min",
        "throughput_max",
        "page_rate_min",
        "page_rate_max",
        "dirty_reports",
        "dirty_rate_max",
        "passes",
        "throttle_max_pct",
        "xbzrle_cache_miss_rate",
        "xbzrle_cache_miss_rate_max",
        "xbzrle_overflow",
        "xbzrle_overflow_first",
    ):
        assert getattr(a, name) == pytest.approx(getattr(b, name)), name
    # The median dirty rate comes from the kept (evenly spread) samples: close, not exact.
    assert b.dirty_rate == pytest.approx(a.dirty_rate, rel=0.15)


def test_event_list_caps_each_kind_alone():
    events = bounded.EventList(per_kind=100)
    for i in range(10_000):
        events.append(Event(float(i), "info", "noise"))
        if i % 1000 == 0:
            events.append(Event(float(i), "downtime-change", "limit"))
    assert sum(e.kind == "downtime-change" for e in events) == 10
    infos = [e for e in events if e.kind == "info"]
    assert 50 <= len(infos) <= 100 and infos[0].t == 0.0
    assert events.thinned_kinds() == {"info": (10_000, len(infos))}


def _proxmox_log(path: Path, lines: int) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import bench_parse
    finally:
        sys.path.remove(str(BENCH))
    bench_parse.write_log(str(path), lines)


def test_thinned_proxmox_explains_every_line_as_before(tmp_path, monkeypatch):
    path = tmp_path / "long.log"
    _proxmox_log(path, 6_000)
    before = explain(load_run(path))
    monkeypatch.setattr(bounded, "SAMPLE_LIMIT", 300)
    run = load_run(path)
    assert run.samples.thinned and len(run.samples) < 600
    assert "samples thinned" in " ".join(run.warnings)
    after = explain(run)
    assert [(ln.line, ln.text, ln.notes) for ln in after.lines] == [
        (ln.line, ln.text, ln.notes) for ln in before.lines
    ]
    m0, m1 = before.metrics, after.metrics
    for name in ("passes", "transferred_bytes", "throughput", "throughput_max", "page_rate_max"):
        assert getattr(m1, name) == pytest.approx(getattr(m0, name)), name


# --- report -------------------------------------------------------------------------------


def _walk_back(pts, rounded, whole_seconds):
    """The old backward walk of series._throughput, kept here as the reference."""
    out = [0] * len(pts)
    for i in range(1, len(pts)):
        t1, x1 = pts[i]
        u1 = 0.05 * report_series._print_unit(x1) if rounded and x1 >= 1024 else 0.0
        j = i - 1
        while j > 0:
            t0, x0 = pts[j]
            u0 = 0.05 * report_series._print_unit(x0) if rounded and x0 >= 1024 else 0.0
            if (t1 - t0) >= (10.0 if whole_seconds else 0.0) and (x1 - x0) >= 10 * (u0 + u1):
                break
            j -= 1
        out[i] = j
    return out


@pytest.mark.parametrize("seed", range(6))
def test_window_starts_match_the_backward_walk(seed):
    rng = random.Random(seed)
    t, x, pts = 0.0, 0, []
    for _ in range(600):
        t += rng.choice([0.0, 1.0, 1.0, 2.0])
        x += rng.choice([0, 1, 10**6, 3 * 10**8, 2**40 // 50])
        pts.append((t, x))
    for rounded in (False, True):
        for whole in (False, True):
            assert report_series._window_starts(pts, rounded, whole) == _walk_back(
                pts, rounded, whole
            )


def test_pass_table_means_match_the_plain_way():
    from migtune.analysis.metrics import interval_rates

    run = Run(format="qmp", samples=_synthetic(3_000), status="active")
    for s in run.samples:
        s.throughput = None
    rows = report_series.pass_rows(run)
    want = []
    prev_end = None
    ivs = interval_rates(run.samples)
    for r in rows:
        inside = [
            iv.rate for iv in ivs if (prev_end is None or iv.end > prev_end) and iv.end <= r.end
        ]
        want.append(sum(inside) / len(inside) if inside else None)
        prev_end = r.end
    assert [r.throughput for r in rows] == pytest.approx(want)


def test_report_log_excerpt_is_bounded(tmp_path):
    path = tmp_path / "long.log"
    _proxmox_log(path, 40_000)
    run = load_run(path)
    html = logview.render(run, explain(run))
    assert len(html) < 3 * logview.LOG_BUDGET
    assert "routine progress lines left out" in html and "migtune explain" in html
    assert ">1</td>" in html  # the head
    assert "migrate_cancel" in html  # the tail


def test_excerpt_notes_are_those_of_the_full_explanation(tmp_path, monkeypatch):
    path = tmp_path / "long.log"
    _proxmox_log(path, 30_000)
    monkeypatch.setattr(bounded, "SAMPLE_LIMIT", 2_000)  # thinned: notes from the re-parse
    run = load_run(path)
    x = explain(run)
    full = {ln.line: ln.notes for ln in x.lines}
    plan = logview._Excerpt(run, logview._count_lines(run, x))
    for item in x.lines.walk(plan.wanted):
        plan.add(None if item is None else (item.line, item.text, list(item.notes)))
    rows = plan.rows()
    assert 200 < len(rows) < len(full) / 5
    assert all(notes == full[no] for _, no, _, notes in rows)
    assert sum(1 for *_, notes in rows if notes) > 100


def _old_proxmox_log(path: Path, polls: int) -> None:
    """An old-format (PVE <= 6.3) log: raw byte counters, passes seen as remaining jumps."""
    ram = 1082789888
    rows = [
        "Nov 24 12:26:41 starting migration of VM 123 to node 'proxmox1' (10.0.1.1)",
        "Nov 24 12:26:43 starting online/live migration on localhost:60000",
        "Nov 24 12:26:43 migrate_set_downtime: 0.1",
    ]
    sent, remaining = 0, ram
    for i in range(polls):
        sent += 64 * 2**20
        remaining = remaining - 60 * 2**20 if remaining > 200 * 2**20 else ram // 3
        stamp = f"Nov 24 {12 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
        rows.append(
            f"{stamp} migration status: active (transferred {sent}, remaining {remaining}), "
            f"total {ram})"
        )
        if i % 997 == 0:
            rows.append("")
    rows.append("Nov 24 23:59:59 migration status: completed")
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("old", [False, True])
def test_excerpt_made_while_parsing_has_the_full_explanations_notes(tmp_path, monkeypatch, old):
    # The report of a huge log: the excerpt rides along the one parse (no second read),
    # and every line it shows has the notes `explain` gives that line.
    path = tmp_path / "long.log"
    _old_proxmox_log(path, 12_000) if old else _proxmox_log(path, 30_000)
    monkeypatch.setattr(bounded, "SAMPLE_LIMIT", 2_000)
    excerpt = ProxmoxExcerpt()
    run = load_run(path, observe=excerpt)
    assert run.samples.thinned
    x = explain(run)
    full = {ln.line: (ln.text, ln.notes) for ln in x.lines}
    rows = excerpt.rows(run, x.metrics)
    assert excerpt.total == len(full)
    assert [r[1] for r in rows] == sorted({r[1] for r in rows})  # in log order, no repeat
    assert rows[0][1] == 1 and rows[-1][1] == len(full)  # the head and the tail
    assert 150 < len(rows) < len(full) / 5
    assert all((text, notes) == full[no] for _, no, text, notes in rows)
    assert sum(1 for *_, notes in rows if notes) > 100
    html = logview.render(run, x, excerpt)
    assert len(html) < 3 * logview.LOG_BUDGET and "migtune explain" in html


def _is_proxmox(path: Path) -> bool:
    head = path.read_text(errors="replace").splitlines()[:200]
    try:
        return detect_format([line for line in head if line.strip()]) == "proxmox"
    except MigtuneError:
        return False


_LOG_FILES = sorted(
    p
    for d in ("examples", "tests/fixtures")
    for p in (REPO / d).rglob("*")
    if p.is_file() and p.suffix in (".log", ".txt") and _is_proxmox(p)
)


@pytest.mark.parametrize("path", _LOG_FILES, ids=lambda p: p.name)
def test_excerpt_notes_match_explain_on_every_proxmox_log(path, monkeypatch):
    # Real and fuzzed logs, thinned hard so that the excerpt is what a huge log gets.
    monkeypatch.setattr(bounded, "SAMPLE_LIMIT", 8)
    excerpt = ProxmoxExcerpt()
    try:
        run = load_run(path, observe=excerpt)
    except MigtuneError:
        pytest.skip("not a log load_run accepts")
    x = explain(run)
    full = {ln.line: (ln.text, ln.notes) for ln in x.lines}
    rows = excerpt.rows(run, x.metrics)
    assert excerpt.total == len(full)
    for _, no, text, notes in rows:
        assert (text, notes) == full[no], no


def test_only_the_first_rules_change_the_explain_context():
    # advance() tries only these on a line it does not show: they must come first.
    from migtune.analysis import explain_proxmox as ep

    stateful = {"_auto_increased", "_limit", "_old_limit"}
    assert {fn.__name__ for _, fn in ep._STATEFUL_RULES} == stateful
    assert not stateful & {fn.__name__ for _, fn in ep._RULES[len(ep._STATEFUL_RULES) :]}


def test_report_cli_uses_the_excerpt_of_the_parse(tmp_path, monkeypatch):
    path = tmp_path / "long.log"
    _proxmox_log(path, 30_000)
    monkeypatch.setattr(bounded, "SAMPLE_LIMIT", 2_000)
    read = []
    real = LineSource.batches

    def counted(self, *args, **kwargs):
        read.append(self.path)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LineSource, "batches", counted)
    out = tmp_path / "r.html"
    from migtune.cli.main import main

    assert main(["report", str(path), "-o", str(out)]) == 0
    assert len(read) == 1  # the log was read once
    html = out.read_text()
    assert "left out to keep the page small" in html and "migrate_cancel" in html


def test_collector_thresholds_come_back_whatever_order_streams_end_in():
    import gc

    before = gc.get_threshold()
    run = load_run(REPO / "examples" / "proxmox-32GiB-not-converging.log")
    assert gc.get_threshold() == before
    x = explain(run)
    first, second = iter(x.lines), iter(x.lines)
    next(first), next(second)
    assert gc.get_threshold()[0] > before[0]  # relaxed while a walk goes on
    del first  # the first one started ends first: the other is still walking
    assert gc.get_threshold()[0] > before[0]
    del second
    assert gc.get_threshold() == before


# --- memory -------------------------------------------------------------------------------

_RSS = """
import os, subprocess, sys
cmd = [sys.executable, "-m", "migtune", *sys.argv[1:]]
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(p.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def _peak_rss(*argv: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _RSS, *argv], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "0", argv
    return int(out[1])


def test_memory_does_not_grow_with_the_log(tmp_path):
    small, big = tmp_path / "small.log", tmp_path / "big.log"
    _proxmox_log(small, 2_000)
    _proxmox_log(big, 170_000)  # ~20 MB
    assert big.stat().st_size > 19 * 10**6
    base = _peak_rss("diagnose", "--json", str(small))
    grown = _peak_rss("diagnose", "--json", str(big)) - base
    # Held in memory, the 20 MB log took ~200 MB more; streamed, the samples kept
    # (bounded, ~20 MB) are most of the difference.
    assert grown < 50 * 1024**2, grown
