"""Resumable checkpoints with torch.distributed.checkpoint (DCP), committed atomically.

Layout under ``<output_dir>/checkpoints``::

    step_00000010/            a complete checkpoint: DCP shards of model + optimizer, trainer_state.json
    step_00000020.tmp/        a save in progress (or one a crash interrupted): never read, removed on start

Every rank writes its shards into the ``.tmp`` folder; after a barrier rank 0 writes ``trainer_state.json``
(step, data position, scheduler) and renames the folder, which is atomic on POSIX file systems. A crash
at any point leaves the previous complete checkpoint untouched. Multi-node runs need a shared file system.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from s1kit.errors import CheckpointError

_STEP_DIR = re.compile(r"^step_(\d{8})$")
STATE_FILE = "trainer_state.json"


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return None
    done = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / STATE_FILE).is_file()]
    return max(done, key=lambda p: int(p.name[5:]), default=None)


def remove_partial(output_dir: str | Path) -> list[Path]:
    """Delete ``.tmp`` folders left by interrupted saves (rank 0 only); returns what was removed."""
    root = checkpoint_root(output_dir)
    removed: list[Path] = []
    if _rank() == 0 and root.is_dir():
        for p in root.iterdir():
            if p.name.endswith(".tmp"):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    _barrier()
    return removed


class _Stateful:
    """Model + optimizer as a DCP stateful object (sharded state dicts, no full gather)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.optimizer = optimizer

    def state_dict(self) -> dict[str, Any]:
        msd, osd = get_state_dict(self.model, self.optimizer)
        return {"model": msd, "optim": osd}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        set_state_dict(self.model, self.optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optim"])


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    keep: int = 2,
    before_commit: Callable[[Path], None] | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically and prune to the newest ``keep``. ``before_commit`` (tests)
    runs after the shards are written and before the rename."""
    root = checkpoint_root(output_dir)
    final = root / f"step_{step:08d}"
    tmp = root / f"step_{step:08d}.tmp"
    if _rank() == 0:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    _barrier()
    with _single_process_quiet():
        dcp.save(
            {"app": _Stateful(model, optimizer)}, checkpoint_id=str(tmp), no_dist=not dist.is_initialized()
        )
    _barrier()
    if _rank() == 0:
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=1, sort_keys=True), encoding="utf-8")
        _fsync_dir(tmp)
        if before_commit is not None:
            before_commit(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        done = sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model and optimizer in place; returns the trainer state saved with them."""
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint (no {STATE_FILE})")
    app = _Stateful(model, optimizer)
    try:
        with _single_process_quiet():
            dcp.load({"app": app}, checkpoint_id=str(path), no_dist=not dist.is_initialized())
    except Exception as exc:  # DCP raises several types for missing or mismatched shards
        raise CheckpointError(f"cannot load {path}: {exc}; was it written by a run of this model?") from exc
    state: dict[str, Any] = json.loads(state_file.read_text(encoding="utf-8"))
    return state


@contextlib.contextmanager
def _single_process_quiet() -> Iterator[None]:
    """DCP warns on every single-process save/load that it assumes a single process: that is our intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="torch.distributed is disabled, unavailable or uninitialized"
        )
        yield


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
