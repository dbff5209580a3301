"""`migtune report`: the HTML page, its charts, escaping, --compare, --png and the CLI."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import EXAMPLES, real_log_files
from migtune.analysis.findings import Finding, Recommendation
from migtune.cli.main import main
from migtune.model import Event, Run, Sample, Settings, SourceRef, to_dict
from migtune.outputs.recording import RecordingWriter
from migtune.report import build_report, write_report
from migtune.report.analysis import analyse
from migtune.report.html import RunView, format_evidence, page
from migtune.report.logview import MAX_LINE_CHARS
from migtune.report.series import MAX_POINTS, markers, pass_rows, run_series, thin
from migtune.settings import describe
from migtune.sources import load_run
from migtune.units import format_bytes

MiB = 1024**2
PAGE = 4096
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"


# --- a synthetic lab recording ------------------------------------------------------------


def write_recording(
    path: Path,
    *,
    ram: int = 1024 * MiB,
    wss: int | None = 512 * MiB,
    bandwidth: float = 100 * MiB,
    dirty: float = 150 * MiB,
    seconds: float = 300.0,
    step: float = 0.5,
    settings: Settings | None = None,
    auto_converge: bool = False,
    downtime_changes: tuple[tuple[float, float], ...] = (),
    origin: str = "lab",
    message: str = "",
) -> Path:
    """A plausible pre-copy run: pass 1 sends RAM, later passes what the guest dirtied.

    The guest rewrites at most ``wss`` bytes, ``dirty`` bytes/s, less the CPU throttle
    (auto-converge: 20 % from pass 3, +10 % per pass).  It switches over once the dirty
    set fits in the downtime limit at ``bandwidth``.
    """
    settings = settings or Settings(downtime_limit=0.3, max_bandwidth=bandwidth)
    limit = settings.downtime_limit or 0.3
    changes = list(downtime_changes)
    with RecordingWriter(path) as rec:
        rec.header(origin, to_dict(settings), 1_700_000_000.0, qemu_version="10.0.2")
        if message:
            rec.event(0.0, "info", message)
        t, sent, passes, throttle = 0.0, 0, 1, 0
        remaining, dirtied, status = ram, 0, "active"
        while t < seconds:
            t = round(t + step, 3)
            while changes and changes[0][0] <= t:
                at, limit = changes.pop(0)
                rec.event(at, "downtime-change", f"downtime limit {limit * 1000:.0f} ms",
                          {"downtime_limit": limit})  # fmt: skip
            rate = dirty * (1 - throttle / 100)
            chunk = min(remaining, int(bandwidth * step))
            remaining -= chunk
            sent += chunk
            dirtied = min(wss or ram, dirtied + int(rate * step))
            if remaining <= 0:  # dirty-bitmap sync: the next pass sends what was dirtied
                passes += 1
                remaining, dirtied = dirtied, 0
                if auto_converge and passes > 2:
                    throttle = min(99, throttle + (20 if throttle == 0 else 10))
            # QEMU syncs the bitmap before deciding: what was dirtied meanwhile counts too.
            if passes > 1 and remaining + dirtied <= bandwidth * limit:
                status, remaining = "completed", remaining + dirtied
            ram_info = {
                "transferred": sent,
                "remaining": 0 if status == "completed" else remaining,
                "total": ram,
                "mbps": bandwidth * 8 / 1e6,
                "dirty-sync-count": passes,
                "page-size": PAGE,
                "dirty-pages-rate": int(rate / PAGE) if passes > 1 else 0,
                "pages-per-second": int(bandwidth / PAGE * 1.5),
                "duplicate": 1000,
                "normal": sent // PAGE,
            }
            reply = {"status": status, "total-time": int(t * 1000), "ram": ram_info}
            if throttle:
                reply["cpu-throttle-percentage"] = throttle
            if status == "completed":
                reply["downtime"] = int(remaining / bandwidth * 1000) + 20
                rec.sample(t, reply)
                break
            reply["expected-downtime"] = int(remaining / bandwidth * 1000)
            rec.sample(t, reply)
    return path


def lab_run(tmp_path: Path, name: str = "lab.jsonl", **kw) -> Run:
    return load_run(write_recording(tmp_path / name, **kw))


# --- reading the page back ----------------------------------------------------------------


class Page(HTMLParser):
    """Collects what the tests look at: tags, ids, header facts, charts, findings, text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: set[str] = set()
        self.facts: dict[str, str] = {}
        self.findings: list[str] = []
        self.charts: dict[str, int] = {}  # figure id -> number of svg inside
        self.text: list[str] = []
        self._fact: str | None = None
        self._in_dd = False
        self._figure: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if a.get("id"):
            self.ids.add(a["id"])
        cls = (a.get("class") or "").split()
        if "fact" in cls:
            self._fact = a.get("data-key")
        if tag == "dd" and self._fact:
            self._in_dd = True
            self.facts[self._fact] = ""
        if "finding" in cls:
            self.findings.append(a.get("data-id") or "")
        if tag == "figure" and "chart" in cls:
            self._figure = a.get("id")
            self.charts[self._figure] = 0
        if tag == "svg" and self._figure:
            self.charts[self._figure] += 1

    def handle_endtag(self, tag):
        if tag == "dd":
            self._in_dd = False
            self._fact = None
        if tag == "figure":
            self._figure = None

    def handle_data(self, data):
        self.text.append(data)
        if self._in_dd and self._fact:
            self.facts[self._fact] += data


def assert_safe(html: str) -> Page:
    """No script, no event handler, nothing fetched: every reference stays in the page."""
    p = Page(html)
    assert not [t for t, _ in p.tags if t in ("script", "iframe", "object", "embed", "img", "link")]
    for tag, attrs in p.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("src", "href", "xlink:href", "action", "srcset"):
                assert (value or "").startswith("#"), (tag, name, value)
    assert "url(http" not in html and "@import" not in html and "@font-face" not in html
    return p


def has_timed_progress(run: Run) -> bool:
    return any(
        s.t is not None and (s.transferred is not None or s.remaining is not None)
        for s in run.samples
    )


def check_report(run: Run) -> Page:
    html = build_report(run)
    p = assert_safe(html)
    for key in ("ram", "outcome", "total-time", "downtime"):
        assert key in p.facts, key
    assert p.facts["outcome"].startswith(run.status)
    ram = run.ram_bytes or run_series(run).ram_bytes
    if ram:
        assert p.facts["ram"] == format_bytes(ram)
    assert "findings" in p.ids and "passes" in p.ids
    if has_timed_progress(run):
        assert p.charts.get("chart-progress") == 1
    if not run.samples and not markers(run):
        assert not p.charts
    diagnosis = analyse(run).diagnosis
    if diagnosis is not None:
        assert p.findings == [f.id for f in diagnosis.findings]
    if run.lines:
        assert "log" in p.ids
        text = "".join(p.text)
        if "left out" not in text:
            for line in run.lines:
                if line.strip():
                    assert line[:MAX_LINE_CHARS] in text  # longer lines are cut
    return p


# --- every real log and every bundled example ---------------------------------------------

REAL_LOG_FILES = real_log_files()
# (the fleet inventories for `migtune plan` are examples too, but not logs)
EXAMPLE_FILES = sorted(
    p for p in EXAMPLES.glob("*") if p.is_file() and p.suffix not in (".md", ".csv", ".toml")
)


@pytest.mark.parametrize("path", REAL_LOG_FILES, ids=lambda p: p.name)
def test_report_for_each_real_log(path):
    check_report(load_run(path))


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_report_for_each_example(path):
    check_report(load_run(path))


def test_real_logs_are_found():
    assert len(REAL_LOG_FILES) >= 9, "tests/fixtures/real lost some logs"


# --- a lab recording: charts, pass table, markers ---------------------------------------


def test_lab_recording_report(tmp_path):
    run = lab_run(
        tmp_path,
        auto_converge=True,
        downtime_changes=((25.0, 0.6), (40.0, 1.2)),
        settings=Settings(
            downtime_limit=0.3, max_bandwidth=100 * MiB, capabilities={"auto-converge": True}
        ),  # fmt: skip
    )
    assert run.status == "completed"
    html = build_report(run)
    p = check_report(run)
    assert set(p.charts) == {"chart-progress", "chart-rates"}
    assert p.facts["ram"] == "1.0 GiB"
    assert p.facts["outcome"] == "completed"
    assert p.facts["downtime"].endswith("(limit 1.2 s)")
    # Axis labels carry units; the RAM line and the setting changes are labelled.
    for label in (
        "time since the start of the log (s)",
        "bytes (",
        "rate (MiB/s)",
        "CPU throttle (%)",
    ):
        assert label in html
    assert "RAM 1.0 GiB" in html
    assert "limit 600 ms" in html and "limit 1.2 s" in html
    # One table row per pass, numbered by QEMU's dirty-sync-count.
    rows = pass_rows(run)
    assert [r.number for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) >= 5
    assert rows[0].sent == rows[0].transferred_end  # pass 1 starts from nothing sent
    assert rows[1].throttle_pct is None and rows[-1].throttle_pct >= 40
    assert html.count("<tr><td>") >= len(rows)


def test_svg_is_lean_text_and_limited(tmp_path):
    # 20 minutes at 10 samples/s: thinning keeps the inline SVG small.
    run = lab_run(tmp_path, dirty=200 * MiB, seconds=1200, step=0.1, wss=None, ram=4096 * MiB)
    assert len(run.samples) > 10000
    html = build_report(run)
    assert len(html) < 600_000, len(html)
    assert "routine progress lines left out" in html
    series = run_series(run)
    assert len(series.transferred.x) <= MAX_POINTS + 2
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html
    assert "<text" in html  # svg.fonttype none: text, not glyph outlines
    assert "DejaVuSans-" not in html  # no embedded glyph definitions
    # Ids must not collide between the two inline SVGs.
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def test_thin_keeps_extremes():
    x = list(range(5000))
    y = [float(i % 97) for i in x]
    y[2500] = 1e9
    tx, ty = thin(x, y, limit=100)
    assert len(tx) <= 102 and tx == sorted(tx)
    assert 1e9 in ty and tx[0] == 0 and tx[-1] == 4999


def test_compare_overlays_runs_labelled_by_settings(tmp_path):
    a = lab_run(tmp_path, name="observed.jsonl")
    b = lab_run(
        tmp_path,
        name="whatif.jsonl",
        bandwidth=400 * MiB,
        origin="simulate",
        settings=Settings(
            downtime_limit=2.0,
            max_bandwidth=400 * MiB,
            capabilities={"xbzrle": True},
            xbzrle_cache_size=256 * MiB,
        ),  # fmt: skip
    )
    html = build_report(a, compare=[b])
    p = assert_safe(html)
    assert "compare" in p.ids
    assert set(p.charts) == {"chart-progress", "chart-rates"}
    for run, name in ((a, "observed.jsonl"), (b, "whatif.jsonl (simulated)")):
        label = f"{name}: {describe(run.settings)}"
        # In the legend of both charts and in the comparison table.
        assert html.count(label) >= 2, label
    assert "xbzrle 256.0 MiB" in html and "downtime 2.0 s" in html


def test_png_export(tmp_path):
    run = lab_run(tmp_path)
    out = tmp_path / "r.html"
    html, written = write_report(run, out, png_dir=tmp_path / "png")
    assert out.read_text(encoding="utf-8") == html
    pngs = sorted(p.name for p in written if p.suffix == ".png")
    assert pngs == ["progress.png", "rates.png"]
    data = (tmp_path / "png" / "progress.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 480)


# --- escaping: a log is text, never markup ------------------------------------------------


def test_markup_in_a_log_stays_text(tmp_path):
    run = lab_run(tmp_path, message=f"{SCRIPT} {IMG}")
    run.vm, run.target = SCRIPT, IMG
    run.warnings.append(f"line 3: odd {SCRIPT}")
    html = build_report(run)
    assert SCRIPT not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    p = assert_safe(html)
    assert SCRIPT in "".join(p.text)  # shown as those characters


def test_markup_in_findings_stays_text(tmp_path):
    run = Run(format="proxmox", status="failed", lines=[f"ERROR: {SCRIPT}"])
    analysis = analyse(run)
    finding = Finding(
        id=f"x{IMG}",
        severity="error",
        summary=f"summary {SCRIPT}",
        evidence={"line": IMG, "rate_bytes_per_s": 1048576.0},
        recommendations=[
            Recommendation(
                setting="downtime-limit",
                action=f"act {IMG}",
                commands={"proxmox": [f"qm set 1 --description '{SCRIPT}'"], "libvirt": []},
                notes={"libvirt": f"note {SCRIPT}"},
            )
        ],
        detail=IMG,
    )

    class Diag:
        findings = [finding]

    analysis.diagnosis = Diag()
    html = page([RunView(run, f"log{SCRIPT}.txt", "x", analysis)], [], "no samples")
    p = assert_safe(html)
    assert SCRIPT not in html and "<img" not in html
    text = "".join(p.text)
    assert f"qm set 1 --description '{SCRIPT}'" in text
    assert "1.0 MiB/s" in text  # evidence in operator units
    assert 'class="platform">libvirt</span><pre>' not in html  # no commands: no empty block
    assert 'class="platform">proxmox</span><pre>' in html


def test_format_evidence_units():
    assert format_evidence("throughput_bytes_per_s", 2 * MiB) == "2.0 MiB/s"
    assert format_evidence("ram_bytes", 4 * 1024 * MiB) == "4.0 GiB"
    assert format_evidence("duration_s", 12.34) == "12.3 s"
    assert format_evidence("downtime_ms", 73) == "73 ms"
    assert format_evidence("xbzrle_cache_miss_rate", 0.5) == "50.0 %"
    assert format_evidence("passes", 6) == "6"
    assert format_evidence("zero_page_share", 0.25) == "25.0 %"
    assert format_evidence("dirty_to_throughput_ratio", 1.2812) == "1.28"
    assert format_evidence("machine_type", "pc-i440fx-9.0+pve0") == "pc-i440fx-9.0+pve0"


# --- runs without pictures ----------------------------------------------------------------


def test_run_without_samples_explains_why_no_chart():
    run = Run(format="proxmox", status="failed", lines=["ERROR: online migrate failure"])
    html = build_report(run)
    p = assert_safe(html)
    assert not p.charts
    assert "no progress samples" in html


def test_samples_without_time_are_tabled_not_charted():
    samples = [
        Sample(transferred=x * MiB, remaining=(900 - x) * MiB, total=1024 * MiB, passes=1)
        for x in (100, 200, 300)
    ]
    run = Run(format="proxmox", samples=samples, status="cancelled", ram_bytes=1024 * MiB)
    html = build_report(run)
    p = assert_safe(html)
    assert not p.charts and "no usable timestamps" in html
    assert p.facts["downtime"] == "none (no switch-over)"  # no limit known either
    assert len(pass_rows(run)) == 1 and pass_rows(run)[0].samples == 3


def test_markers_only_rates_chart():
    # nova's downtime steps: no samples, but the limit changes are worth a picture.
    events = [
        Event(
            float(t),
            "downtime-change",
            f"Increasing downtime to {ms} ms",
            {"downtime_limit": ms / 1000},
            SourceRef(i + 1, f"Increasing downtime to {ms} ms"),
        )  # fmt: skip
        for i, (t, ms) in enumerate(((0, 714), (300, 1326), (600, 1938)))
    ]
    run = Run(format="nova", events=events)
    assert [m.label for m in markers(run)] == ["limit 714 ms", "limit 1.3 s", "limit 1.9 s"]
    html = build_report(run)
    p = assert_safe(html)
    assert set(p.charts) == {"chart-rates"}


def test_passes_from_remaining_jumps():
    rem = [900, 600, 300, 50, 400, 200, 20, 150]
    samples = [
        Sample(t=float(i), remaining=r * MiB, transferred=i * 300 * MiB) for i, r in enumerate(rem)
    ]
    rows = pass_rows(Run(format="proxmox", samples=samples))
    assert [r.number for r in rows] == [1, 2, 3]
    assert [r.remaining_start for r in rows] == [900 * MiB, 400 * MiB, 150 * MiB]


# --- the command --------------------------------------------------------------------------


def test_cli_report_writes_html_and_pngs(tmp_path, capsys):
    rec = write_recording(tmp_path / "a.jsonl")
    other = write_recording(tmp_path / "b.jsonl", bandwidth=300 * MiB)
    out = tmp_path / "report.html"
    code = main(
        [
            "report",
            str(rec),
            "--compare",
            str(other),
            "-o",
            str(out),
            "--png",
            str(tmp_path / "png"),
        ]
    )
    assert code == 0
    assert out.stat().st_size > 10_000
    assert (tmp_path / "png" / "rates.png").is_file()
    assert f"wrote {out}" in capsys.readouterr().out


def test_cli_report_to_stdout(tmp_path, capsys):
    rec = write_recording(tmp_path / "a.jsonl")
    assert main(["report", str(rec), "-o", "-"]) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")


def test_cli_report_bad_input(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.log")]) == 2
    assert "no such file" in capsys.readouterr().err
    rec = write_recording(tmp_path / "a.jsonl")
    assert main(["report", str(rec), "-o", str(tmp_path / "nodir" / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("migtune: error: cannot write") and "Traceback" not in err


def test_rounded_proxmox_progress_is_smoothed_not_jagged():
    # 40 MiB/s printed like Proxmox does ("12.3 GiB", whole seconds): one-second deltas
    # would swing between 0 and 100+ MiB/s; the drawn rate stays within ~10 %.
    def pve(x: float) -> int:
        unit = 1024 ** int(math.log(x, 1024))
        return int(round(round(x / unit, 1) * unit))

    samples = [Sample(t=float(t), transferred=pve(40 * MiB * t)) for t in range(1, 600)]
    series = run_series(Run(format="proxmox", samples=samples))
    assert series.throughput_source == "averaged"
    late = [y for x, y in zip(series.throughput.x, series.throughput.y, strict=True) if x > 120]
    assert late and all(abs(y / (40 * MiB) - 1) < 0.12 for y in late)


def test_storage_mirror_is_drawn_with_the_ram_progress():
    events = [
        Event(
            float(t),
            "storage-progress",
            "mirror",
            {"job": "drive-scsi0", "transferred": t * 100 * MiB},
        )
        for t in range(1, 11)
    ]
    samples = [
        Sample(t=11.0 + t, transferred=t * 200 * MiB, remaining=(8 - t) * 200 * MiB)
        for t in range(8)
    ]
    run = Run(format="proxmox", samples=samples, events=events, ram_bytes=2048 * MiB)
    series = run_series(run)
    assert series.disk.y[-1] == 1000 * MiB
    html = build_report(run)
    assert "local disks mirrored" in html
