"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (``../shared/data`` next to the repo root, or ``$S1KIT_SHARED_DATA``)."""
    path = Path(os.environ.get("S1KIT_SHARED_DATA", REPO_ROOT / ".." / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent; set S1KIT_SHARED_DATA to it")
    return path
