"""The SFT loop: one process or ``torchrun`` (any number of nodes), FSDP2 when distributed.

Each optimizer step takes ``global_batch_size`` samples of a seeded per-epoch permutation. With packing
they are packed into blocks balanced by tokens, the same number of blocks per rank; without packing each
rank gets ``global_batch_size / ranks`` samples in micro-batches. Every rank plans the whole step from the
same permutation, so the loss normaliser (target tokens of the global batch) needs no communication.
Each micro-batch's loss is already a slice of the global mean, so gradients are summed over micro-steps
and ranks (FSDP averages over ranks, hence the ``x world_size``).

Rank 0 logs one JSON line per step (loss, lr, grad norm, tokens/s, MFU, peak memory) to
``<output_dir>/log.jsonl``, shows a tqdm bar, and writes TensorBoard events when it is installed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from s1kit import _io
from s1kit.errors import ConfigError
from s1kit.train.checkpoint import (
    check_resume_config,
    latest_checkpoint,
    load_checkpoint,
    read_trainer_state,
    remove_partial,
    save_checkpoint,
)
from s1kit.train.config import TrainConfig, validate_config
from s1kit.train.context import context_groups, shard_block
from s1kit.train.data import DataStats, Example, build_examples, load_rows
from s1kit.train.export import export_hf
from s1kit.train.fsdp import apply_activation_checkpointing, apply_fsdp
from s1kit.train.loss import token_weights
from s1kit.train.model import CausalLMWithLoss, step_flops
from s1kit.train.packing import (
    MicroBatch,
    collate_packed,
    collate_padded,
    plan_packed_step,
    plan_padded_step,
    resolve_attention,
)

# Dense bf16 peak FLOP/s by device name substring (no sparsity).
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "A100": 312e12, "L40S": 362e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    if "H100" in name and "PCIe" in name:
        return 756e12
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


@dataclass
class StepPlan:
    """What one rank runs in one optimizer step."""

    micro_batches: list[MicroBatch]
    sample_lengths: list[int]
    """Lengths of every sample in the global step (for FLOPs)."""
    global_targets: int
    sample_targets: torch.Tensor
    num_samples: int


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    model: CausalLMWithLoss | None = None
    export_dir: Path | None = None
    stats: DataStats | None = None


@dataclass
class Hooks:
    """Test hooks: called on rank 0 after each step / before a checkpoint is committed."""

    on_step_end: Callable[[int], None] | None = None
    before_commit: Callable[[Path], None] | None = None


class DataSchedule:
    """Maps a global step to its samples: a seeded permutation per epoch, ``global_batch_size`` a step."""

    def __init__(self, examples: list[Example], cfg: TrainConfig, world_size: int, pad_id: int) -> None:
        self.examples = examples
        self.cfg = cfg
        self.world_size = world_size
        self.pad_id = pad_id
        self.steps_per_epoch = math.ceil(len(examples) / cfg.global_batch_size)
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self._perm_epoch = -1
        self._perm: list[int] = []

    def position(self, step: int) -> dict[str, int]:
        epoch, batch = divmod(step, self.steps_per_epoch)
        return {"epoch": epoch, "batch_in_epoch": batch, "samples_seen": step * self.cfg.global_batch_size}

    def step_indices(self, step: int) -> list[int]:
        epoch, batch = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(len(self.examples), generator=g).tolist()
            self._perm_epoch = epoch
        G = self.cfg.global_batch_size
        return self._perm[batch * G : (batch + 1) * G]

    def plan(self, step: int, rank: int) -> StepPlan:
        idx = self.step_indices(step)
        exs = [self.examples[i] for i in idx]
        lengths = [len(e) for e in exs]
        sample_targets = torch.tensor([e.num_targets for e in exs], dtype=torch.long)
        mbs: list[MicroBatch] = []
        if self.cfg.packing:
            blocks = plan_packed_step(lengths, self.cfg.block_size, self.world_size)[rank]
            for blk in blocks:
                mbs.append(collate_packed([exs[j] for j in blk], blk))
        else:
            micro = plan_padded_step(
                lengths, self.cfg.micro_batch_size, self.world_size, self.cfg.global_batch_size
            )[rank]
            for rows in micro:
                sel = [exs[j] if j is not None else None for j in rows]
                mbs.append(collate_padded(sel, [j if j is not None else -1 for j in rows], self.pad_id))
        return StepPlan(mbs, lengths, int(sample_targets.sum()), sample_targets, len(exs))


def lr_lambda(total_steps: int, warmup_ratio: float, min_ratio: float) -> Callable[[int], float]:
    """Linear warmup over ``ceil(warmup_ratio * total)`` steps, then cosine to ``min_ratio``."""
    warmup = math.ceil(warmup_ratio * total_steps)

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return f


def _init_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if want_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if want_cuda else "gloo")
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        device = torch.device("cuda", local) if want_cuda else torch.device("cpu")
    else:
        rank, world = 0, 1
        device = torch.device("cuda" if want_cuda else (cfg.device if cfg.device != "auto" else "cpu"))
    return rank, world, device


def _peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    # ru_maxrss is KiB on Linux: the process's peak resident memory.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; biases and norm weights (1-D) get no weight decay, as in the HF Trainer s1 used."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=cfg.lr,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_eps,
        # multi-tensor kernels on GPU; on CPU the per-tensor loop is as fast and, for FSDP's DTensors,
        # avoids a costly first-call sharding propagation of every foreach op
        foreach=device.type == "cuda",
    )


def _grad_norm(model: torch.nn.Module, max_norm: float, device: torch.device) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    clip = max_norm if max_norm > 0 else float("inf")
    norm = torch.nn.utils.clip_grad_norm_(params, clip, foreach=device.type == "cuda")
    full = getattr(norm, "full_tensor", None)
    return float(full() if full is not None else norm)


def build_model(
    cfg: TrainConfig, attn: str, rank: int, world: int, device: torch.device, compute_dtype: torch.dtype
) -> CausalLMWithLoss:
    """The LM with its loss, activation checkpointing and (when distributed) FSDP2 applied.

    Under torch.distributed only rank 0 reads the weights (into CPU memory); the other ranks build the
    model on the meta device, and after sharding rank 0 broadcasts the full state dict so that every rank
    keeps only its shards. Host memory per node is then one fp32 copy, not one per rank.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if not dist.is_initialized() or world == 1 or rank == 0:
        lm = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32, attn_implementation=attn)
    else:
        config = AutoConfig.from_pretrained(cfg.model)
        with torch.device("meta"):
            lm = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation=attn)
    lm.config.use_cache = False
    model = CausalLMWithLoss(lm, cfg.loss_chunk_size)
    if not dist.is_initialized():
        apply_activation_checkpointing(model, cfg.activation_checkpointing)
        return model.to(device)
    full_sd = model.state_dict() if rank == 0 else {}
    buffers_on_meta = world > 1 and rank != 0
    apply_activation_checkpointing(model, cfg.activation_checkpointing)
    # fully_shard moves each rank's shards to the mesh's device; the full model never goes to the GPU.
    apply_fsdp(model, compute_dtype, cpu_offload=cfg.cpu_offload)
    if world > 1:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        home = torch.device("cpu") if cfg.cpu_offload else device
        if buffers_on_meta:
            model.to_empty(device=home)
        opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_model_state_dict(model, full_sd, options=opts)
        del full_sd
        # Buffers (e.g. rotary inverse frequencies, not in the state dict) come from rank 0 as well.
        for buf in model.buffers():
            moved = buf.to(device)
            dist.broadcast(moved, src=0)
            buf.copy_(moved)
    return model


def train(cfg: TrainConfig, hooks: Hooks | None = None) -> TrainResult:
    """Run SFT as described by ``cfg``. Returns per-step losses (all ranks) and, in a single process,
    the trained model."""
    hooks = hooks or Hooks()
    rank, world, device = _init_distributed(cfg)
    validate_config(cfg, world)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    from transformers import AutoTokenizer

    if cfg.model.startswith((".", "/", "~")) and not Path(cfg.model).expanduser().is_dir():
        raise ConfigError(f"model {cfg.model}: no such folder; pass --model <Hugging Face model directory>")
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    rows = load_rows(cfg.data, cfg.data_split)
    examples, stats = build_examples(tokenizer, rows, cfg)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    cp = cfg.context_parallel  # ranks sharing each block (s1kit.train.context); data parallel over the rest
    schedule = DataSchedule(examples, cfg, world // cp, pad_id)
    cp_group = context_groups(world, cp) if cp > 1 else None

    attn = resolve_attention(cfg.attention)
    compute_dtype = torch.bfloat16 if cfg.dtype == "bf16" else torch.float32
    distributed = dist.is_initialized()
    model = build_model(cfg, attn, rank, world, device, compute_dtype)
    optimizer = build_optimizer(model, cfg, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(schedule.total_steps, cfg.warmup_ratio, cfg.min_lr_ratio)
    )

    out_dir = Path(cfg.output_dir)
    start_step = 0
    ckpt = None
    if cfg.resume:
        remove_partial(out_dir)
        ckpt = latest_checkpoint(out_dir)
        if ckpt is not None:
            check_resume_config(read_trainer_state(ckpt), dataclasses.asdict(cfg), ckpt)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        _io.write_text(out_dir / "config.json", cfg.to_json())
    if cfg.resume:
        if ckpt is not None:
            state = load_checkpoint(ckpt, model, optimizer)
            scheduler.load_state_dict(state["scheduler"])
            start_step = int(state["step"])
            if rank == 0:
                print(f"[s1kit train] resumed from {ckpt} at step {start_step}", file=sys.stderr)
        elif rank == 0:
            print(f"[s1kit train] --resume: no checkpoint in {out_dir}, starting fresh", file=sys.stderr)

    log = _Logger(out_dir, cfg, rank, schedule.total_steps, start_step)
    if rank == 0:
        log.info(stats, world, schedule)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if (not distributed and compute_dtype == torch.bfloat16)
        else None
    )
    peak = peak_flops(device)
    result = TrainResult(stats=stats)
    model.train()
    try:
        for step in range(start_step, schedule.total_steps):
            t0 = time.perf_counter()
            plan = schedule.plan(step, rank // cp)
            loss_sum = torch.zeros((), dtype=torch.float32, device=device)
            for block in plan.micro_batches:
                mb = (block if cp_group is None else shard_block(block, rank % cp, cp, cp_group)).to(device)
                w = token_weights(
                    mb.targets_BS,
                    mb.sample_ids_BS,
                    cfg.loss_reduction,
                    plan.global_targets,
                    plan.sample_targets,
                    plan.num_samples,
                )
                if autocast is not None:
                    with autocast:
                        loss = model(mb, w)
                else:
                    loss = model(mb, w)
                (loss * world).backward()
                loss_sum += loss.detach()
            grad_norm = _grad_norm(model, cfg.grad_clip, device)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if distributed:
                dist.all_reduce(loss_sum)
            step_loss = float(loss_sum)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            result.losses.append(step_loss)
            if rank == 0:
                tokens = sum(plan.sample_lengths)
                flops = step_flops(model.lm, plan.sample_lengths)
                log.step(
                    step + 1,
                    {
                        "loss": step_loss,
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "tokens": tokens,
                        "tokens_per_s": tokens / dt,
                        "mfu": (flops / dt / (peak * world)) if peak else None,
                        "peak_mem_gib": _peak_memory_gib(device),
                        "step_time_s": dt,
                        **schedule.position(step + 1),
                    },
                )
                if hooks.on_step_end is not None:
                    hooks.on_step_end(step + 1)
            done = step + 1
            if (cfg.save_every and done % cfg.save_every == 0) or done == schedule.total_steps:
                state = {
                    "step": done,
                    "scheduler": scheduler.state_dict(),
                    "config": dataclasses.asdict(cfg),
                    "total_steps": schedule.total_steps,
                    **schedule.position(done),
                }
                save_checkpoint(
                    out_dir, done, model, optimizer, state, cfg.keep_checkpoints, hooks.before_commit
                )
    finally:
        log.close()
    result.steps = schedule.total_steps
    if cfg.export:
        result.export_dir = export_hf(model, tokenizer, out_dir / "hf", dtype=compute_dtype)
    if not distributed:
        result.model = model
    return result


def _drop_steps_after(path: Path, step: int) -> None:
    """Keep the log lines of steps up to ``step`` (the checkpoint resumed from) and every event line;
    the steps after it, logged before a crash, are trained again and logged anew. A torn last line
    goes too. The log is rewritten atomically."""
    kept: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or int(rec.get("step", 0)) <= step:
            kept.append(line)
    _io.write_text(path, "".join(x + "\n" for x in kept))


class _Logger:
    def __init__(self, out_dir: Path, cfg: TrainConfig, rank: int, total: int, start: int) -> None:
        self.rank = rank
        self.fh = None
        self.bar: Any = None
        self.tb: Any = None
        if rank != 0:
            return
        path = out_dir / "log.jsonl"
        if path.is_file():  # a fresh run (start 0) or a resume: the log holds each step once
            _drop_steps_after(path, start)
        self.fh = path.open("a", encoding="utf-8")
        if cfg.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb"))
            except ImportError:
                self.tb = None
        self.every = cfg.log_every

    def info(self, stats: DataStats, world: int, schedule: DataSchedule) -> None:
        rec = {
            "event": "start",
            "ranks": world,
            "rows": stats.rows,
            "kept": stats.kept,
            "truncated": stats.truncated,
            "dropped": stats.dropped,
            "tokens": stats.tokens,
            "target_tokens": stats.target_tokens,
            "longest": stats.longest,
            "steps_per_epoch": schedule.steps_per_epoch,
            "total_steps": schedule.total_steps,
            "drop_reasons": stats.notes[:100],
        }
        self._write(rec)
        print(
            f"[s1kit train] {stats.kept}/{stats.rows} rows ({stats.truncated} truncated, {stats.dropped} "
            f"dropped), {stats.tokens} tokens, {schedule.total_steps} steps on {world} rank(s)",
            file=sys.stderr,
        )
        if stats.notes:
            more = f" (and {len(stats.notes) - 5} more)" if len(stats.notes) > 5 else ""
            print(f"[s1kit train] warning: dropped {'; '.join(stats.notes[:5])}{more}", file=sys.stderr)

    def step(self, step: int, rec: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        if step % self.every == 0:
            self._write({"step": step, **rec})
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}")
        if self.tb is not None:
            for k in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "peak_mem_gib"):
                if rec.get(k) is not None:
                    self.tb.add_scalar(f"train/{k}", rec[k], step)

    def _write(self, rec: dict[str, Any]) -> None:
        assert self.fh is not None
        self.fh.write(json.dumps(rec) + "\n")
        self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
