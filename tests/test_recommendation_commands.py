"""Every recommendation has commands for proxmox, libvirt and qmp (a README contract).

An empty list means the platform cannot do it; ``notes`` then says why, for that
platform or for all of them.
"""

from __future__ import annotations

import pytest

from conftest import EXAMPLES, FIXTURES
from migtune.analysis.diagnose import diagnose
from migtune.outputs.jsonout import diagnosis_dict
from migtune.sources import load_run

PLATFORMS = ("proxmox", "libvirt", "qmp")
NOT_LOGS = {".md", ".sh", ".py"}
NOT_LOG_DIRS = {
    FIXTURES / "fuzz",
    FIXTURES / "preflight",
}  # the fixture folders' READMEs and the scripts that made them
LOGS = sorted(
    p
    for p in [*EXAMPLES.iterdir(), *FIXTURES.rglob("*")]
    # the fuzz corpus holds mangled inputs that may rightly be refused, and preflight's
    # folder holds dirty-rate measurements: not logs
    if p.is_file() and p.suffix not in NOT_LOGS and p.parent not in NOT_LOG_DIRS
)


def test_there_are_logs_to_check():
    assert len(LOGS) >= 50


@pytest.mark.parametrize("path", LOGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recommendation_has_the_platform_keys(path):
    d = diagnose(load_run(path))
    for finding in d.findings:
        for rec in finding.recommendations:
            where = f"{finding.id} -> {rec.setting}"
            assert set(PLATFORMS) <= set(rec.commands), f"{where}: keys {sorted(rec.commands)}"
            for platform in PLATFORMS:
                if not rec.commands[platform]:
                    assert rec.notes.get(platform), (
                        f"{where}: no command and no note for {platform}"
                    )
    for finding in diagnosis_dict(d)["findings"]:  # the JSON carries the same keys
        for rec in finding["recommendations"]:
            assert set(PLATFORMS) <= set(rec["commands"])
