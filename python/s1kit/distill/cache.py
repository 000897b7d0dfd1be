"""The on-disk cache of generations, keyed by (model, prompt, settings).

One JSON Lines file; each line is one finished generation: its ``key`` (SHA-256 of the canonical JSON
of model name, prompt token ids, sampling and budget settings, and the attempt index), the text,
token counts and finish reason. Lines are appended and fsync'ed after every engine batch, so a killed
run loses at most the batch in flight, and a rerun (with another threshold, or after a kill) finds
every finished generation here and generates nothing twice. A torn last line (a kill while writing)
is dropped on reading; a broken line before the end is a :class:`~s1kit.errors.DataError` naming the
file. Entries are never rewritten; deleting the file starts over.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from s1kit import _io


def generation_key(model: str, prompt_ids: Iterable[int], settings: Mapping[str, Any], index: int) -> str:
    """The cache key of attempt ``index`` of ``prompt_ids`` on ``model`` with ``settings`` (sampling and
    budget values, JSON-serialisable)."""
    blob = json.dumps(
        {"model": model, "prompt_ids": [int(t) for t in prompt_ids], "settings": settings, "index": index},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class GenerationCache:
    """Generations by key, backed by one append-only JSON Lines file (created on first append)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        def take(rec: Any) -> None:
            self.records[rec["key"]] = rec

        _io.read_append_log(
            self.path, take, "fix or delete the cache file (deleting it regenerates everything)"
        )

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def append(self, records: Iterable[dict[str, Any]], kill_point: str = "") -> None:
        """Append finished generations (each with a ``key``) and fsync. ``kill_point`` names the
        :func:`s1kit._io.kill_point` hit once the first line is written (fault tests: a batch half on
        disk)."""
        records = list(records)
        _io.append_log(self.path, records, kill_point)
        self.records.update((rec["key"], rec) for rec in records)
