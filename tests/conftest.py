"""Shared fixtures: the real benchmark files in ../shared/data, located once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$S1KIT_SHARED_DATA``, else ``<repo>/../shared/data``."""
    return Path(os.environ.get("S1KIT_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "eval").is_dir():
        pytest.skip(f"shared benchmark data not found at {path}: set S1KIT_SHARED_DATA to its folder")
    return path
