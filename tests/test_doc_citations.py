"""Section citations in code and docs point at sections that exist.

Code cites ``docs/qemu-migration.md`` and ``docs/platforms.md`` by section number
(``§1.4``); the simulator's modules and ``docs/simulator.md`` cite the QEMU notes with
bare numbers. A renumbered or missing section would leave a citation pointing nowhere.
And nothing in the repository refers to notes or folders outside it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO

DOCS = {name: REPO / "docs" / name for name in ("qemu-migration.md", "platforms.md")}
SECTION = r"§(\d+(?:\.\d+)?)"


def _sections(doc: Path) -> set[str]:
    """Section numbers of the doc's headings: ``## 1. ...`` -> "1", ``### 1.4 ...`` -> "1.4"."""
    found = set()
    for m in re.finditer(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", doc.read_text(encoding="utf-8"), re.M):
        found.add(m.group(1))
    return found


def _cited_after(text: str, doc_name: str) -> list[str]:
    """Numbers in ``docs/<doc_name> §a, §b-§c and §d`` style citations."""
    cited = []
    for m in re.finditer(re.escape(doc_name) + r"`*[^§\n]{0,20}((?:§[\d.]+[^§\n;]{0,25})+)", text):
        cited += re.findall(SECTION, m.group(1))
    return cited


SOURCES = sorted(
    p
    for p in [
        *(REPO / "src").rglob("*.py"),
        *(REPO / "docs").glob("*.md"),
        *(REPO / "tests").glob("*.py"),
    ]
    if p.name != "test_doc_citations.py"
)


def test_the_docs_have_numbered_sections():
    assert {"1.3", "1.4", "1.6", "4.2", "5.3", "14.1", "14.10"} <= _sections(
        DOCS["qemu-migration.md"]
    )
    assert {"1.2", "1.4", "1.10", "2.2", "3.2", "3.4", "4.3", "4.4", "8"} <= _sections(
        DOCS["platforms.md"]
    )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_explicit_citations_exist(path):
    text = path.read_text(encoding="utf-8")
    for name, doc in DOCS.items():
        missing = set(_cited_after(text, name)) - _sections(doc)
        assert not missing, (
            f"{path.name} cites {name} §{sorted(missing)}, which has no such section"
        )


@pytest.mark.parametrize(
    "path",
    [*sorted((REPO / "src" / "migtune" / "sim").rglob("*.py")), REPO / "docs" / "simulator.md"],
    ids=lambda p: p.name,
)
def test_simulator_citations_exist_in_the_qemu_notes(path):
    cited = set(re.findall(SECTION, path.read_text(encoding="utf-8")))
    missing = cited - _sections(DOCS["qemu-migration.md"])
    assert not missing, f"{path.name} cites §{sorted(missing)}, not in docs/qemu-migration.md"


# Written in pieces so that this file does not match itself.
OUTSIDE = ["../" + "shared", "MIGTUNE_" + "SHARED", "management-" + "layers.md", "lab-" + "notes"]


def test_nothing_refers_to_a_path_outside_the_repository():
    roots = [REPO / d for d in ("src", "tests", "docs", "benchmarks", "scripts", "examples", ".ci")]
    files = [p for root in roots for p in root.rglob("*") if p.is_file()]
    files += [REPO / n for n in ("README.md", "CONTRIBUTING.md", "Makefile", "pyproject.toml")]
    offenders = []
    for path in files:
        if path.suffix in (".pyc", ".npz", ".png", ".gz") or "__pycache__" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{path.relative_to(REPO)}: {word}" for word in OUTSIDE if word in text]
    assert len(files) > 100
    assert not offenders, offenders
