"""The README's examples work as the README shows them.

* every ```python block runs (in a temporary directory, with the files it opens);
* every ``$ migtune ...`` example that needs no QEMU and no network runs from the
  repository root, exits 0, and prints the lines the README shows, in that order
  (``...`` stands for lines left out);
* the JSON examples of ``diagnose --json`` and ``explain --json`` and the metric table
  name only keys the real output has.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pytest

from conftest import EXAMPLES, REPO
from migtune.cli.main import main

README = (REPO / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
BLOCKS = [(m.group(1), m.group(2)) for m in FENCE.finditer(README)]
PYTHON_BLOCKS = [code for lang, code in BLOCKS if lang == "python"]
JSON_BLOCKS = [json.loads(code) for lang, code in BLOCKS if lang == "json"]

# Files the Python examples open, and the bundled log each one stands for.
EXAMPLE_INPUTS = {"task.log": EXAMPLES / "proxmox-32GiB-not-converging.log"}
# Sub-commands that run offline from the repository (no QEMU, no sockets).
OFFLINE = {"diagnose", "explain"}


def _shell_examples() -> list[tuple[list[str], list[str]]]:
    """(argv after ``migtune``, the output lines shown) for each ``$ migtune`` example."""
    found = []
    for lang, code in BLOCKS:
        if lang:
            continue
        lines = code.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ migtune "):  # a command and the output it prints
                argv = shlex.split(line.removeprefix("$ migtune "), comments=True)
                shown = []
                for out in lines[i + 1 :]:
                    if out.startswith("$ "):
                        break
                    shown.append(out)
            elif line.startswith("migtune "):  # a command to type, output not shown
                argv, shown = shlex.split(line.removeprefix("migtune "), comments=True), []
            else:
                continue
            if argv[0] in OFFLINE:
                found.append((argv, shown))
    return found


SHELL_EXAMPLES = _shell_examples()


def test_the_readme_has_examples_to_test():
    assert PYTHON_BLOCKS, "no ```python block in README.md"
    assert SHELL_EXAMPLES, "no runnable `$ migtune ...` example in README.md"
    assert len(JSON_BLOCKS) >= 3


@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=lambda c: c.splitlines()[0][:40])
def test_python_example_runs(code, tmp_path, monkeypatch, capsys):
    for name, source in EXAMPLE_INPUTS.items():
        if name in code:
            shutil.copy(source, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})  # noqa: S102
    out = capsys.readouterr().out
    assert out.strip(), "the example printed nothing"
    if "diagnose(" in code:
        assert "not-converging error" in out  # the example log's main finding


def _in_order(shown: list[str], actual: list[str]) -> list[str]:
    """The shown lines that ``actual`` lacks: in order, adjacent unless ``...`` separates them."""
    missing, at, gap = [], 0, True
    for line in shown:
        if line.strip() in ("", "..."):
            gap = True
            continue
        want = line.rstrip()
        if gap:
            found = actual.index(want, at) if want in actual[at:] else -1
        else:
            found = at if at < len(actual) and actual[at] == want else -1
        if found < 0:
            missing.append(line)
            continue
        at, gap = found + 1, False
    return missing


@pytest.mark.parametrize(
    "argv,shown",
    [
        pytest.param(a, s, id=f"{' '.join(a)}{' (with output)' if s else ''}")
        for a, s in SHELL_EXAMPLES
    ],
)
def test_shell_example_output(argv, shown, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(argv) == 0
    actual = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    missing = _in_order(shown, actual)
    assert not missing, (
        f"README shows lines that `migtune {' '.join(argv)}` does not print: {missing}"
    )


def _json_of(argv: list[str], capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _documented_keys(example: dict) -> set[str]:
    return {k for k in example if k != "..."}


def test_diagnose_json_has_the_documented_keys(capsys):
    doc_top, doc_finding = JSON_BLOCKS[0], JSON_BLOCKS[1]
    out = _json_of(
        ["diagnose", "--json", str(EXAMPLES / "proxmox-32GiB-not-converging.log")], capsys
    )
    assert _documented_keys(doc_top) <= set(out)
    finding = next(f for f in out["findings"] if f["id"] == doc_finding["id"])
    assert _documented_keys(doc_finding) <= set(finding)
    doc_rec = doc_finding["recommendations"][0]
    for rec in finding["recommendations"]:
        assert _documented_keys(doc_rec) <= set(rec)
        assert set(doc_rec["commands"]) <= set(rec["commands"])


def test_explain_json_has_the_documented_keys(capsys):
    doc = JSON_BLOCKS[2]
    out = _json_of(
        ["explain", "--json", str(EXAMPLES / "proxmox-4GiB-pre64-xbzrle-completed.log")], capsys
    )
    assert _documented_keys(doc) <= set(out)
    assert _documented_keys(doc["lines"][0]) <= set(out["lines"][0])
    assert _documented_keys(doc["timeline"][0]) <= set(out["timeline"][0])
    assert set(out["diagnosis"]) >= _documented_keys(JSON_BLOCKS[0])


def _metric_table_keys() -> set[str]:
    section = README.split("#### `metrics`", 1)[1].split("#### `findings`", 1)[0]
    keys: set[str] = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            keys.update(re.findall(r"`([a-z_]+)`", row.split("|")[1]))
    return keys


def test_every_documented_metric_is_in_the_output(capsys):
    documented = _metric_table_keys()
    assert len(documented) >= 20
    out = _json_of(
        ["diagnose", "--json", str(EXAMPLES / "proxmox-32GiB-not-converging.log")], capsys
    )
    assert documented <= set(out["metrics"]), documented - set(out["metrics"])
