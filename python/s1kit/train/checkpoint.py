"""Resumable checkpoints with torch.distributed.checkpoint (DCP), committed atomically.

Layout under ``<output_dir>/checkpoints``::

    step_00000010/            a complete checkpoint: DCP shards of model + optimizer, trainer_state.json
    step_00000020.tmp/        a save in progress (or one a crash interrupted): never read, removed on start

Every rank writes its shards into the ``.tmp`` folder; after a barrier rank 0 writes ``trainer_state.json``
(step, data position, scheduler, the run's configuration) and renames the folder, which is atomic on
POSIX file systems. A crash at any point leaves the previous complete checkpoint untouched. Multi-node
runs need a shared file system.

Resuming checks the configuration against the checkpoint's (:func:`check_resume_config`): the fields in
:data:`RESUME_FIXED` must be unchanged, the others may differ.
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

from s1kit import _io
from s1kit.errors import CheckpointError, ConfigError

# TrainConfig fields that decide what a checkpoint means: the model, the data and its rendering, the
# data order, the optimizer and the learning-rate schedule. Resuming with any of them changed would
# silently continue a different run, so it is refused, naming the fields.
RESUME_FIXED: tuple[str, ...] = (
    "model",
    "data",
    "data_split",
    "question_field",
    "thinking_field",
    "answer_field",
    "system_prompt",
    "think_style",
    "answer_prefix",
    "block_size",
    "overlong",
    "packing",
    "epochs",
    "max_steps",
    "global_batch_size",
    "lr",
    "min_lr_ratio",
    "warmup_ratio",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_eps",
    "grad_clip",
    "loss_reduction",
    "seed",
    "dtype",
)
# Every other field may change on resume: how the same computation is carried out or observed
# (micro_batch_size, loss_chunk_size, activation_checkpointing, cpu_offload, attention, device) and
# bookkeeping (output_dir, save_every, keep_checkpoints, resume, export, log_every, progress,
# tensorboard).

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
        _io.write_text(tmp / STATE_FILE, json.dumps(trainer_state, indent=1, sort_keys=True))
        _io.fsync_dir(tmp)
        if before_commit is not None:
            before_commit(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _io.fsync_dir(root)
        done = sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def read_trainer_state(path: Path) -> dict[str, Any]:
    """The trainer state saved with checkpoint ``path`` (without loading any tensor)."""
    state_file = path / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a complete checkpoint ({state_file}: {exc})") from exc
    return state


def check_resume_config(state: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """Refuse to resume checkpoint ``path`` under a configuration that changes what it means.

    ``config`` is the new run's ``dataclasses.asdict(TrainConfig)``; ``state["config"]`` the saved one.
    Raises :class:`~s1kit.errors.ConfigError` naming every differing field of :data:`RESUME_FIXED`
    with both values. A checkpoint saved before configurations were recorded is not checked.
    """
    saved = state.get("config")
    if not isinstance(saved, dict):
        return
    diffs = [
        f"{k}: {saved[k]!r} -> {config.get(k)!r}"
        for k in RESUME_FIXED
        if k in saved and saved[k] != config.get(k)
    ]
    if diffs:
        raise ConfigError(
            f"cannot resume {path}: the configuration changed what the checkpoint means ("
            + "; ".join(diffs)
            + "). Use the checkpoint's values to resume, or train into a new --output-dir"
        )
    step = int(state.get("step", 0))
    total = state.get("total_steps")
    if isinstance(total, int) and step > total:  # pragma: no cover - only a hand-edited state
        raise ConfigError(f"cannot resume {path}: its step {step} is beyond the run's {total} steps")


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
