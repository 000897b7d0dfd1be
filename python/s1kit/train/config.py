"""Training configuration: one dataclass, the ``s1``, ``s1.1`` and ``limo`` presets, and validation that fails
at start.

Every field is a hyperparameter that the CLI exposes as ``--field-name``; a preset only changes defaults.
Validation that needs the world size or the data (divisibility, prompt lengths) lives in
:func:`validate_config` and :mod:`s1kit.train.data`; both raise :class:`~s1kit.errors.ConfigError`
naming the conflicting values and the fix.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

from s1kit.errors import ConfigError

ThinkStyle = Literal["s1", "think_tags"]
Overlong = Literal["truncate", "drop"]
LossReduction = Literal["token", "sample"]
ActivationCheckpointing = Literal["none", "selective", "full"]
Attention = Literal["auto", "varlen", "sdpa", "eager"]


@dataclass
class TrainConfig:
    """All knobs of one SFT run. Defaults are a small, safe run; ``preset("s1")`` gives the paper's."""

    # --- model and data
    model: str = ""
    """Path of a Hugging Face model directory (config, tokenizer, weights)."""
    data: str = ""
    """JSONL / Parquet file, a folder of them, a ``save_to_disk`` folder, or a hub dataset name."""
    data_split: str = "train"
    """Split to train on when ``data`` is a hub dataset or a ``save_to_disk`` folder."""
    question_field: str = "question"
    """Column holding the question (the user turn)."""
    thinking_field: str = "thinking_trajectories"
    """Column holding the reasoning trace (a string, or a list of strings joined with newlines)."""
    answer_field: str = "attempt"
    """Column holding the answer written after the thinking."""
    system_prompt: str | None = None
    """System turn to render before the question (none by default, as s1)."""
    think_style: ThinkStyle = "s1"
    """``s1``: ``<|im_start|>think`` ... ``<|im_start|>answer``; ``think_tags``: ``<think>...</think>``."""
    answer_prefix: str = "Answer: "
    """Prepended to the answer unless it already contains it (s1 writes ``Answer: <attempt>``)."""
    block_size: int = 4096
    """Tokens per packed block, and the longest sample (s1: 32768)."""
    overlong: Overlong = "truncate"
    """What to do with a sample longer than ``block_size``: cut its end, or drop it (reported)."""
    packing: bool = True
    """Pack samples into blocks with per-sample attention (no padding); off: pad each micro-batch."""
    # --- optimisation
    epochs: int = 1
    """Passes over the data (s1: 5)."""
    max_steps: int | None = None
    """If set, overrides ``epochs``: the run stops after this many optimizer steps."""
    global_batch_size: int = 16
    """Samples per optimizer step, over all ranks and accumulation micro-steps."""
    micro_batch_size: int = 1
    """Samples per forward when ``packing`` is off (packing puts one block per forward)."""
    lr: float = 1e-5
    """Peak learning rate after warm-up (s1: 1e-5)."""
    min_lr_ratio: float = 0.0
    """Cosine decay ends at ``lr * min_lr_ratio``."""
    warmup_ratio: float = 0.05
    """Fraction of the steps spent warming up linearly from 0 (s1: 0.05)."""
    weight_decay: float = 1e-4
    """AdamW weight decay on matrices (biases and norms get none; s1: 1e-4)."""
    adam_beta1: float = 0.9
    """AdamW beta1."""
    adam_beta2: float = 0.95
    """AdamW beta2."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""
    loss_reduction: LossReduction = "token"
    """``token``: mean over all target tokens of the global batch; ``sample``: s1's per-sample mean."""
    loss_chunk_size: int = 2048
    """Tokens per chunk of the output projection + cross-entropy (the full logits never exist at once)."""
    seed: int = 42
    """Seed of the data order and of any random initialisation."""
    # --- systems
    dtype: Literal["bf16", "fp32"] = "bf16"
    """Parameter / compute dtype. Master weights, optimizer state and gradient reduction stay fp32."""
    activation_checkpointing: ActivationCheckpointing = "none"
    """Recompute in the backward pass: ``full`` (each decoder layer) or ``selective`` (each layer, but
    matmul and attention outputs are kept, so only cheap elementwise ops run twice)."""
    cpu_offload: bool = False
    """Keep parameters, gradients and optimizer state in host memory between uses (FSDP2 offload)."""
    attention: Attention = "auto"
    """``auto``/``varlen``: s1kit's varlen attention over packed samples (cu_seqlens); ``sdpa``/``eager``:
    transformers' own, with a block-diagonal mask from the restarting position ids."""
    context_parallel: int = 1
    """Split each packed block over this many consecutive ranks (sequence parallelism on top of FSDP2,
    under torchrun; must divide the ranks; needs packing and auto/varlen attention). 1: off."""
    device: str = "auto"
    """``cuda``, ``cpu`` or ``auto`` (CUDA when available; gloo on CPU, NCCL on CUDA)."""
    # --- output
    output_dir: str = "runs/train"
    """Where checkpoints, the log, the config and the exported model go."""
    save_every: int = 0
    """Checkpoint every N optimizer steps (0: only at the end)."""
    keep_checkpoints: int = 2
    """How many of the latest checkpoints to keep on disk."""
    resume: bool = False
    """Resume from the latest complete checkpoint in ``output_dir``."""
    export: bool = True
    """Write a Hugging Face model folder (``output_dir/hf``) at the end."""
    log_every: int = 1
    """Write a line to ``output_dir/log.jsonl`` every N steps."""
    progress: bool = True
    """Show a progress bar (rank 0)."""
    tensorboard: bool = True
    """Also log to TensorBoard (``output_dir/tb``) when ``tensorboard`` is installed."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, dict[str, Any]] = {
    # s1 (Muennighoff et al. 2025), Qwen2.5-32B-Instruct on s1K: 5 epochs, lr 1e-5, 5% warmup then cosine
    # to 0, AdamW (0.9, 0.95), wd 1e-4, global batch 16, block 32768, bf16, loss on the assistant turn.
    "s1": {
        "epochs": 5,
        "lr": 1e-5,
        "min_lr_ratio": 0.0,
        "warmup_ratio": 0.05,
        "weight_decay": 1e-4,
        "adam_beta1": 0.9,
        "adam_beta2": 0.95,
        "global_batch_size": 16,
        "micro_batch_size": 1,
        "block_size": 32768,
        "dtype": "bf16",
        "think_style": "s1",
        "question_field": "question",
        "thinking_field": "thinking_trajectories",
        "answer_field": "attempt",
        "grad_clip": 1.0,
    },
    # s1.1: s1's hyperparameters on s1K-1.1 (DeepSeek-R1 traces; the s1 repository's s1.1 scripts, e.g.
    # train/ds_s1-1_7b.sh: lr 1e-5, 5 epochs, warmup 0.05, wd 1e-4, betas (0.9, 0.95)), block 20000.
    "s1.1": {
        "epochs": 5,
        "lr": 1e-5,
        "min_lr_ratio": 0.0,
        "warmup_ratio": 0.05,
        "weight_decay": 1e-4,
        "adam_beta1": 0.9,
        "adam_beta2": 0.95,
        "global_batch_size": 16,
        "micro_batch_size": 1,
        "block_size": 20000,
        "dtype": "bf16",
        "think_style": "s1",
        "data": "simplescaling/s1K-1.1",
        "question_field": "question",
        "thinking_field": "deepseek_thinking_trajectory",
        "answer_field": "deepseek_attempt",
        "grad_clip": 1.0,
    },
    # LIMO (Ye et al. 2025), GAIR-NLP/LIMO train/examples/train_limo.yaml (LLaMA-Factory): 817 samples of
    # GAIR/LIMO, full fine-tuning with DeepSpeed ZeRO-3 (= FSDP full sharding, what s1kit always does),
    # lr 5e-6, cosine, warmup 0, 15 epochs, cutoff_len 16384, bf16, per-device batch 1 without
    # accumulation; weight decay 0, betas (0.9, 0.999) and clipping 1.0 are the HF Trainer defaults the
    # yaml leaves in place. The global batch is the GPU count there; 16 here (set --global-batch-size).
    "limo": {
        "epochs": 15,
        "lr": 5e-6,
        "min_lr_ratio": 0.0,
        "warmup_ratio": 0.0,
        "weight_decay": 0.0,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "global_batch_size": 16,
        "micro_batch_size": 1,
        "block_size": 16384,
        "dtype": "bf16",
        "think_style": "think_tags",
        "data": "GAIR/LIMO",
        "question_field": "question",
        "thinking_field": "solution",
        "answer_field": "answer",
        "grad_clip": 1.0,
    },
}

PRESET_SOURCES: dict[str, str] = {
    "s1": "s1 paper (Muennighoff et al. 2025) and simplescaling/s1 train/sft_multinode.sh: Qwen2.5-32B-Instruct, "
    "s1K, 5 epochs, lr 1e-5, block 32768, FSDP full shard",
    "s1.1": "simplescaling/s1 s1.1 scripts: s1's hyperparameters on simplescaling/s1K-1.1 (DeepSeek-R1 traces), "
    "block 20000",
    "limo": "GAIR-NLP/LIMO train/examples/train_limo.yaml: GAIR/LIMO (817 samples), lr 5e-6, 15 epochs, "
    "cutoff 16384, warmup 0, DeepSpeed ZeRO-3 (full sharding)",
}


def preset(name: str) -> TrainConfig:
    """The defaults of preset ``name`` (``s1``, ``s1.1``, ``limo``; sources in :data:`PRESET_SOURCES`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return TrainConfig(**PRESETS[name])


def validate_config(cfg: TrainConfig, world_size: int = 1) -> None:
    """Reject inconsistent values before any model or data is loaded."""
    problems: list[str] = []
    if not cfg.model:
        problems.append("model is empty: pass --model <hf model dir>")
    if not cfg.data:
        problems.append("data is empty: pass --data <jsonl|parquet|dir|hub name>")
    for name in ("block_size", "global_batch_size", "micro_batch_size", "loss_chunk_size", "log_every"):
        if getattr(cfg, name) <= 0:
            problems.append(f"{name}={getattr(cfg, name)} must be positive")
    if cfg.max_steps is None and cfg.epochs <= 0:
        problems.append(f"epochs={cfg.epochs} must be positive (or set --max-steps)")
    if cfg.max_steps is not None and cfg.max_steps <= 0:
        problems.append(f"max_steps={cfg.max_steps} must be positive")
    if not 0.0 <= cfg.warmup_ratio < 1.0:
        problems.append(f"warmup_ratio={cfg.warmup_ratio} must be in [0, 1)")
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        problems.append(f"min_lr_ratio={cfg.min_lr_ratio} must be in [0, 1]")
    if cfg.lr <= 0:
        problems.append(f"lr={cfg.lr} must be positive")
    if cfg.save_every < 0:
        problems.append(f"save_every={cfg.save_every} must be >= 0")
    if cfg.keep_checkpoints < 1:
        problems.append(f"keep_checkpoints={cfg.keep_checkpoints} must be >= 1")
    if cfg.context_parallel < 1:
        problems.append(f"context_parallel={cfg.context_parallel} must be >= 1")
    elif cfg.context_parallel > 1:
        if world_size % cfg.context_parallel != 0:
            problems.append(
                f"context_parallel={cfg.context_parallel} does not divide the number of ranks ({world_size}); "
                "launch a multiple of it with torchrun"
            )
        if not cfg.packing:
            problems.append("context_parallel > 1 needs --packing (it splits packed blocks)")
        if cfg.attention not in ("auto", "varlen"):
            problems.append(f"context_parallel > 1 needs --attention auto or varlen, not {cfg.attention}")
        world_size = max(1, world_size // cfg.context_parallel)  # data-parallel ranks below
    if not cfg.packing:
        per_step = cfg.micro_batch_size * world_size
        if cfg.global_batch_size % per_step != 0:
            problems.append(
                f"global_batch_size={cfg.global_batch_size} is not divisible by micro_batch_size x ranks = "
                f"{cfg.micro_batch_size} x {world_size} = {per_step}; pick a global batch that is a multiple "
                f"of {per_step} or change --micro-batch-size"
            )
    elif cfg.global_batch_size < world_size:
        problems.append(
            f"global_batch_size={cfg.global_batch_size} is smaller than the number of ranks ({world_size}); "
            "every rank needs at least one sample per step"
        )
    if problems:
        raise ConfigError("invalid training config:\n  - " + "\n  - ".join(problems))
