"""Shared test helpers: where the repository, its examples and its fixtures live."""

from __future__ import annotations

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
