"""Shared fixtures: where the real benchmark data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$S1KIT_SHARED_DATA`` or ``<repo root>/../shared/data``; skips the test when it is absent."""
    path = Path(os.environ.get("S1KIT_SHARED_DATA", REPO_ROOT / ".." / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}; set S1KIT_SHARED_DATA to the shared/data folder")
    return path
