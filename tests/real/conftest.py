"""The ``real`` tests: skipped, with the reason, unless the real-weights extra is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.real.smollm2 import hf_folder, missing_reason


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = missing_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("real") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder (converted from the GGUF once, then cached)."""
    return hf_folder()
