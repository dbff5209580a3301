"""``migtune explain --brief`` and ``make demo``: the answer first, on one screen."""

from __future__ import annotations

import re
import shlex

import pytest

from conftest import EXAMPLES, REAL_LOGS, REPO
from migtune.analysis.brief import brief, platform_for
from migtune.cli.main import main
from migtune.outputs.brief_text import MAX_ROWS
from migtune.sources import load_run

NOT_CONVERGING = EXAMPLES / "proxmox-32GiB-not-converging.log"


def _demo_argv() -> list[str]:
    """The arguments ``make demo`` gives to migtune, read from the Makefile itself."""
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    line = next(ln for ln in recipe.splitlines() if "/migtune " in ln)
    return shlex.split(line.split("/migtune ", 1)[1])


def _run(argv: list[str], capsys) -> tuple[int, list[str], str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err


def test_make_demo_shows_the_diagnosis_first_within_80_lines(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    argv = _demo_argv()
    assert argv[:2] == ["explain", "--brief"]
    code, lines, _ = _run(argv, capsys)
    assert code == 0
    assert len(lines) <= 80
    assert lines[0].startswith("Diagnosis (proxmox, cancelled, VM 201")
    first_finding = next(
        i for i, ln in enumerate(lines) if re.match(r"  \[(error|warning|info)\]", ln)
    )
    assert first_finding <= 2
    assert lines.index("Timeline") > first_finding
    key = next(i for i, ln in enumerate(lines) if ln.startswith("Key lines ("))
    assert key > lines.index("Timeline")
    # the commands for the log's platform, the proof, and where to read everything
    assert "         migration: type=insecure,network=CIDR" in lines
    assert any("ERROR: online migrate failure - interrupted by signal" in ln for ln in lines[key:])
    assert lines[-2] == f"Full line-by-line: migtune explain {argv[-1]}"


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for p in [*EXAMPLES.iterdir(), *REAL_LOGS.glob("*.txt")]
        if p.is_file() and p.suffix != ".md"
    ),
    ids=lambda p: p.name,
)
def test_brief_fits_one_screen_for_every_example(path, capsys):
    code, lines, err = _run(["explain", "--brief", str(path)], capsys)
    assert code == 0, err
    assert lines[0].startswith("Diagnosis (")
    assert len(lines) <= MAX_ROWS
    assert lines[-1].startswith("Evidence and commands for every platform: migtune diagnose")


def test_excerpt_keeps_the_turning_points_in_log_order():
    run = load_run(NOT_CONVERGING)
    b = brief(run, max_lines=8)
    numbers = [ln.line for ln in b.excerpt]
    assert numbers == sorted(numbers) and len(numbers) == 8
    texts = [ln.text for ln in b.excerpt]
    assert any("interrupted by signal" in t for t in texts)  # the outcome
    sample_lines = [s.source.line for s in run.samples if s.source is not None]
    assert sample_lines[-1] in numbers  # where the progress ended
    # the downtime was doubled four times: first and last shown, not every step
    doubled = [t for t in texts if "auto-increased downtime" in t]
    assert 1 <= len(doubled) <= 2 and doubled[-1].endswith("1600 ms")
    assert all(ln.notes for ln in b.excerpt)
    assert b.lines_explained > 400 and b.lines_total >= b.lines_explained


def test_excerpt_size_follows_lines(capsys):
    assert brief(load_run(NOT_CONVERGING), max_lines=0).excerpt == []
    code, lines, _ = _run(["explain", "--brief", "--lines", "3", str(NOT_CONVERGING)], capsys)
    assert code == 0 and any(ln.startswith("Key lines (3 of ") for ln in lines)


def test_platform_of_the_log_picks_the_commands():
    assert [platform_for(f) for f in ("proxmox", "libvirt", "nova", "qmp", "hmp")] == [
        "proxmox", "libvirt", "libvirt", "qmp", "qmp",
    ]  # fmt: skip


def test_brief_with_json_is_a_one_line_error(capsys):
    code, lines, err = _run(["explain", "--brief", "--json", str(NOT_CONVERGING)], capsys)
    assert code == 2 and lines == []
    assert err.count("\n") == 1 and err.startswith("migtune: error: --brief")


def test_snapshots_show_the_final_verdicts_not_the_repeated_fields():
    b = brief(load_run(EXAMPLES / "virsh-domjobinfo-8GiB-not-converging.txt"), max_lines=8)
    texts = [ln.text.split(":")[0] for ln in b.excerpt]
    # the fields that say why it does not converge, from the last snapshot
    assert {"Dirty rate", "Expected downtime", "Iteration"} <= set(texts)
    assert b.excerpt[-1].line > 77  # the last snapshot starts at line 77
    # one explanation is not repeated under several lines
    notes = [tuple(ln.notes) for ln in b.excerpt]
    assert len(notes) == len(set(notes))


def test_line_templates_ignore_figures_units_and_ids():
    from migtune.analysis.brief import _template

    a = "2025-06-12 14:02:20 migration active, transferred 181.0 MiB of 32.0 GiB VM-state, 35.6 MiB/s"
    b = "2025-06-12 14:29:17 migration active, transferred 57.2 GiB of 32.0 GiB VM-state, 39.9 MiB/s"
    assert _template(a) == _template(b)
    assert _template("Time elapsed:     33874        ms") == _template(
        "Time elapsed:     130874       ms"
    )
    assert _template("Dirty rate:       39044        pages/s") != _template("Iteration:        6")


def test_one_walk_over_the_lines_is_enough():
    # a huge log's explanation is walked once, as a stream: a one-shot iterator will do
    from migtune.analysis.brief import informative_lines
    from migtune.analysis.explain import explain

    run = load_run(NOT_CONVERGING)
    lines = list(explain(run).lines)
    once = informative_lines(run, iter(lines), 8)
    assert [ln.line for ln in once] == [ln.line for ln in brief(run).excerpt]


def test_skipped_lines_are_counted():
    b = brief(load_run(NOT_CONVERGING), max_lines=8)
    assert b.skipped_before[0] == 0 and len(b.skipped_before) == len(b.excerpt)
    # between excerpt lines: the non-empty lines of the log that were left out
    assert sum(b.skipped_before) + len(b.excerpt) <= b.lines_total
    assert b.skipped_before[1] == 5  # lines 20-24 between line 19 and line 25
