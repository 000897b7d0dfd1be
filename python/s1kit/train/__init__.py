"""FSDP2 supervised fine-tuning on s1K-style reasoning traces.

Files, one idea each: ``config`` (hyperparameters, the ``s1`` preset, validation), ``data`` (rows ->
chat-template tokens with assistant-only targets), ``packing`` (blocks, rank balance, varlen attention),
``loss`` (chunked cross-entropy), ``model`` (LM + loss module), ``fsdp`` (FSDP2 and activation
checkpointing), ``context`` (context parallelism: a packed block split over ranks), ``plan`` (per-GPU
memory plan and the settings that fit), ``checkpoint`` (atomic DCP checkpoints), ``export`` (HF format),
``trainer`` (the loop), ``cli`` (``s1kit train``, ``--plan``, ``--auto-fit``).
"""

from __future__ import annotations

from s1kit.train.config import TrainConfig, preset, validate_config

__all__ = ["TrainConfig", "preset", "train", "validate_config"]


def __getattr__(name: str) -> object:
    if name == "train":
        from s1kit.train.trainer import train

        return train
    raise AttributeError(name)
