"""Shared test helpers: where the repository, its examples and ../shared live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
FIXTURES = REPO / "tests" / "fixtures"


def shared_dir() -> Path:
    """The team's read-only reference folder (``../shared`` from the repository root)."""
    env = os.environ.get("MIGTUNE_SHARED")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_logs() -> Path:
    logs = shared_dir() / "logs"
    if not logs.is_dir():
        pytest.fail(f"shared logs not found at {logs} (set MIGTUNE_SHARED)")
    return logs
