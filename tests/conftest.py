"""Shared test helpers: where the repository, its examples and its fixtures live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
FIXTURES = REPO / "tests" / "fixtures"
# Real migration logs that people published, verbatim (tests/fixtures/real/README.md).
REAL_LOGS = FIXTURES / "real"


def real_log_files() -> list[Path]:
    """Every public real log in the repository, sorted by name."""
    return sorted(REAL_LOGS.glob("*.txt"))


@pytest.fixture(scope="session")
def real_logs() -> Path:
    """The folder of real logs (inside the repository, so it is always there)."""
    return REAL_LOGS


@pytest.fixture(autouse=True, scope="session")
def _history_in_a_temporary_file(tmp_path_factory):
    """Every run a test makes (migrate, lab, simulate --record) goes into a throw-away
    history, never the user's own (~/.local/share/migtune/history.db)."""
    path = tmp_path_factory.mktemp("history") / "history.db"
    before = os.environ.get("MIGTUNE_DB")
    os.environ["MIGTUNE_DB"] = str(path)
    yield path
    if before is None:
        os.environ.pop("MIGTUNE_DB", None)
    else:
        os.environ["MIGTUNE_DB"] = before


@pytest.fixture(scope="session")
def image():
    """The lab's guest image (kernel + initramfs), built once per test session; the
    real-QEMU tests skip when QEMU or the guest's build tools are missing."""
    import shutil

    from migtune.errors import UnavailableError
    from migtune.lab.guest import build_guest

    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    try:
        return build_guest()
    except UnavailableError as exc:
        pytest.skip(str(exc))
