"""Memory plan of one training run: per-rank peak memory from the model config alone, and the cheapest
settings that fit.

Nothing is loaded: parameter counts come from the model built on the ``meta`` device, everything else
from closed-form byte counts of what :mod:`s1kit.train.trainer` really allocates. The model has two paths,
as the trainer has:

- **FSDP2** (any run under ``torchrun``, ``WORLD_SIZE`` set, even one process): fp32 parameter shards
  (the master weights), fp32 gradient shards, AdamW's two fp32 states, all ``4+4+8 = 16`` bytes per
  parameter divided by the ranks; each decoder layer gathered in the compute dtype while it runs (the
  current and the prefetched one; the root group (embeddings, final norm, head) stays gathered for the
  whole forward and backward, as FSDP2 does for the root); in backward the running layer's unsharded
  gradients, the previous layer's fp32 reduce-scatter input and output (held by FSDP2 until the next
  reduce-scatter) and the head's fp32 gradient from the chunked loss. ``--cpu-offload`` moves shards,
  gradients and the optimizer step to host memory.
- **one process** (no ``WORLD_SIZE``): an fp32 model on the device, fp32 gradients and AdamW state
  (16 bytes per parameter); with ``--dtype bf16`` autocast keeps a bf16 copy of every matmul weight for
  the forward and backward. ``--cpu-offload`` has no effect on this path.

Activations are counted per token and per decoder layer for a Llama/Qwen2 layer (RMSNorm, q/k/v/o
projections, rotary embedding, attention, gated MLP) at the longest block (``block_size`` tokens with
packing, ``micro_batch_size x block_size`` without). ``none`` keeps every tensor autograd saves;
``selective`` keeps the layer input and the outputs of matmuls and attention; ``full`` keeps only the
layer input and recomputes one layer at a time in backward. The chunked loss holds ``C x V`` fp32
logits at a time plus the ``V x H`` fp32 output-weight gradient it computes in the forward pass.

With ``--context-parallel C`` (:mod:`s1kit.train.context`) every per-token term is for ``T / C``
tokens, plus the block's gathered keys and values (kept per layer without checkpointing, one layer's
otherwise) and the boolean mask of a document crossing the slice boundary.

The peak is the largest of three moments: the end of the forward pass (inside the loss), the start of
the backward pass (every activation alive, the first layer's gradients in flight), and the optimizer
step. ``device`` decides the rest: on CUDA the optimizer runs multi-tensor (one extra fp32 state-sized
temporary) and a fixed ``reserved`` amount (CUDA context, NCCL) is taken off the card; on CPU (gloo) the
per-tensor AdamW's temporaries are two copies of the largest shard and nothing is reserved.

Legend: ``P`` parameters, ``L`` layers, ``T`` tokens of the longest block, ``H`` hidden, ``I``
intermediate, ``V`` vocabulary, ``N`` ranks sharding the model, ``c`` bytes of the compute dtype.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s1kit.train.config import TrainConfig

GIB = 2**30

# Llama-style layers whose activations this model counts; others are planned with a warning.
KNOWN_MODEL_TYPES = ("qwen2", "llama", "mistral")

# Relative step-time cost of each memory saving, used to order the options (estimates; see COST_NOTE).
SELECTIVE_COST = 0.03
"""``selective``: norms, activations and rotary run twice; a few percent of the step (estimate)."""
FULL_COST = 1.0 / 3.0
"""``full``: one more forward per step = 1/3 of the forward+backward FLOPs."""
OFFLOAD_BW_BYTES_S = 20e9
"""Host<->device bandwidth per GPU assumed for ``--cpu-offload`` (PCIe 4 x16 in practice)."""
HOST_ADAM_BYTES_S = 10e9
"""Host memory traffic of the CPU AdamW step per rank (reads+writes 28 bytes per parameter)."""
ASSUMED_MFU = 0.40
"""MFU assumed for the fastest setting when estimating tokens/s (bench/train_mfu.py has no GPU figure)."""
PEAK_FLOPS = 989e12
"""Dense bf16 peak of an H100/H200 SXM, for the tokens/s estimate."""
CONTEXT_PARALLEL_COST = 0.05
"""Step-time cost per doubling of ``--context-parallel``: the key/value gathers per layer (forward,
recomputation) and their gradient all-reduce, and causal attention's imbalance over the slices
(estimate)."""

COST_NOTE = (
    "tokens/s are estimates: bench/train_mfu.py has no measured GPU figure committed yet, so the fastest "
    f"setting is assumed to run at {ASSUMED_MFU:.0%} MFU of a {PEAK_FLOPS / 1e12:.0f} TFLOP/s card; "
    f"selective checkpointing costs +{SELECTIVE_COST:.0%} step time, full +{FULL_COST:.0%} (one more "
    f"forward), context parallelism +{CONTEXT_PARALLEL_COST:.0%} per doubling, CPU offload adds "
    f"{OFFLOAD_BW_BYTES_S / 1e9:.0f} GB/s transfers of the fp32 shards (twice) and gradients per block plus a "
    f"host AdamW step at {HOST_ADAM_BYTES_S / 1e9:.0f} GB/s per optimizer step"
)


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs to know about the model, read from its config (nothing is loaded)."""

    model_type: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    params: int
    layer_params: int
    """Parameters of one decoder layer."""
    matmul_params: int
    """Parameters that are matmul weights (Linear layers, the output head included)."""
    largest_param: int
    """Elements of the largest parameter tensor."""

    @property
    def root_params(self) -> int:
        """Embeddings, final norm and (untied) output head: the FSDP2 root group."""
        return self.params - self.layers * self.layer_params


def load_model_config(path: str) -> Any:
    """A transformers config from a model folder or a ``config.json`` file (no weights, no network)."""
    from transformers import AutoConfig

    p = Path(path)
    if p.is_file():
        raw = json.loads(p.read_text(encoding="utf-8"))
        if "model_type" not in raw:
            raise ValueError(f"{path} has no model_type; pass a Hugging Face config.json")
        kind = raw.pop("model_type")
        return AutoConfig.for_model(kind, **raw)
    if p.is_dir() and not (p / "config.json").is_file():
        raise ValueError(f"model folder {path} has no config.json; --plan needs the model's config")
    return AutoConfig.from_pretrained(path)


def model_shape(config: Any) -> ModelShape:
    """Count parameters of the model built on the meta device (no memory, no weights)."""
    import torch
    from torch import nn
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    layers = lm.model.layers
    params = sum(p.numel() for p in lm.parameters())
    layer_params = sum(p.numel() for p in layers[0].parameters())
    matmul = sum(m.weight.numel() for m in lm.modules() if isinstance(m, nn.Linear))
    largest = max(p.numel() for p in lm.parameters())
    cfg = config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return ModelShape(
        model_type=str(getattr(cfg, "model_type", "?")),
        layers=int(cfg.num_hidden_layers),
        hidden=int(cfg.hidden_size),
        intermediate=int(cfg.intermediate_size),
        heads=int(cfg.num_attention_heads),
        kv_heads=int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads),
        head_dim=int(head_dim),
        vocab=int(cfg.vocab_size),
        tied=bool(getattr(cfg, "tie_word_embeddings", False)),
        params=params,
        layer_params=layer_params,
        matmul_params=matmul,
        largest_param=largest,
    )


@dataclass(frozen=True)
class Hardware:
    """Where the run goes. ``memory`` is bytes per device; ``reserved`` is what the framework takes
    before any tensor (CUDA context, NCCL); ``margin`` the fraction of the rest kept free."""

    device: str
    """``cuda`` or ``cpu``: decides the optimizer kernels and the reserved amount."""
    ranks: int
    memory: int | None = None
    margin: float = 0.10
    reserved: int = 0

    @property
    def budget(self) -> int | None:
        if self.memory is None:
            return None
        return int((self.memory - self.reserved) * (1.0 - self.margin))


CUDA_RESERVED = int(1.5 * GIB)
"""CUDA context + NCCL buffers + allocator slack taken off each card before tensors (estimate)."""


@dataclass(frozen=True)
class Setting:
    """The memory-relevant knobs of a run."""

    activation_checkpointing: str
    cpu_offload: bool
    distributed: bool
    """FSDP2 path (torchrun); False: the one-process path."""
    context_parallel: int = 1
    """Ranks sharing each block (s1kit.train.context)."""

    def describe(self) -> str:
        launch = "torchrun (FSDP2)" if self.distributed else "one process"
        off = ", --cpu-offload" if self.cpu_offload else ""
        cp = f", --context-parallel {self.context_parallel}" if self.context_parallel > 1 else ""
        return f"{launch}, --activation-checkpointing {self.activation_checkpointing}{off}{cp}"


@dataclass
class MemoryEstimate:
    """Per-rank bytes at the peak moment, by category, plus what else the plan reports."""

    setting: Setting
    rows: dict[str, int]
    phase: str
    host_per_rank: int
    tokens_per_s: float
    step_cost: float
    """Step time relative to the same run with no recomputation and no offload."""
    notes: list[str] = field(default_factory=list)

    @property
    def peak(self) -> int:
        return sum(self.rows.values())


def block_tokens(cfg: TrainConfig) -> int:
    """Tokens of the largest forward: one packed block, or a padded micro-batch."""
    return cfg.block_size if cfg.packing else cfg.micro_batch_size * cfg.block_size


def activation_bytes_per_token(shape: ModelShape, mode: str, c: int) -> tuple[int, int]:
    """(bytes saved per token per layer, bytes recomputed per token when the layer runs again in
    backward) for ``mode``, with activations of ``c`` bytes. RMSNorm saves an fp32 copy of its input
    and its ``c``-byte output; q/k/v, rotary (q, k and their rotated halves), attention output and
    log-sum-exp, the attention output made contiguous, and the MLP's gate, up, SiLU and product."""
    H, I_ = shape.hidden, shape.intermediate
    qd, kvd = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    everything = 2 * (4 * H + c * H) + c * (5 * qd + 4 * kvd + 4 * I_) + 4 * shape.heads
    layer_input = c * H
    if mode == "none":
        return everything, 0
    if mode == "full":
        return layer_input, everything
    if mode == "selective":
        # matmul outputs (q, k, v, o, gate, up, down) and attention (output, log-sum-exp) are kept
        kept = layer_input + c * (qd + 2 * kvd + 2 * H + 2 * I_) + c * qd + 4 * shape.heads
        return kept, max(everything - kept + layer_input, 0)
    raise ValueError(f"activation_checkpointing={mode!r}; choose none, selective or full")


def estimate(shape: ModelShape, cfg: TrainConfig, hw: Hardware, setting: Setting) -> MemoryEstimate:
    """Per-rank peak of ``cfg`` run with ``setting`` on ``hw``."""
    c = 2 if cfg.dtype == "bf16" else 4
    N = hw.ranks if setting.distributed else 1
    P, Pl, Pr = shape.params, shape.layer_params, shape.root_params
    H, V, L = shape.hidden, shape.vocab, shape.layers
    cp = setting.context_parallel
    T_block = block_tokens(cfg)
    T = math.ceil(T_block / cp)  # tokens this rank runs
    C = min(cfg.loss_chunk_size, T)
    cuda = hw.device == "cuda"
    offload = setting.cpu_offload and setting.distributed
    notes: list[str] = []
    if shape.model_type not in KNOWN_MODEL_TYPES:
        notes.append(
            f"model_type {shape.model_type!r}: activations are counted for a Llama/Qwen2 layer; treat the "
            "activation rows as an estimate"
        )
    if setting.cpu_offload and not setting.distributed:
        notes.append("--cpu-offload only acts under torchrun (FSDP2); this one-process plan ignores it")

    # --- sharded state (on the host with offload)
    shard_params, shard_grads, opt_state = 4 * P // N, 4 * P // N, 8 * P // N
    # multi-tensor AdamW (CUDA): one fp32 temporary the size of the state it updates; per-tensor (CPU):
    # sqrt and division of the largest tensor
    opt_temp = 4 * P // N if cuda else 2 * 4 * math.ceil(shape.largest_param / N)
    host = 0
    if offload:
        host = shard_params + shard_grads + opt_state + opt_temp
        shard_params = shard_grads = opt_state = opt_temp = 0

    # --- gathered parameters and communication buffers
    if setting.distributed:
        root_gathered = c * Pr  # the root stays gathered for forward and backward
        # the running layer and the prefetched one (its all-gather output, the input being a slice of it)
        layers_gathered = 2 * c * Pl
        # the running layer's unsharded gradients, and the previous layer's fp32 reduce-scatter input and
        # output, which FSDP2 holds until the next reduce-scatter
        bwd_buffers = c * Pl + 4 * Pl + math.ceil(4 * Pl / N)
        # the head's gradient: the loss's fp32 V x H weight gradient (the embedding's gradient only
        # appears at the end of backward, when the layers' activations are gone)
        root_grad = 4 * V * H
    else:
        # autocast's bf16 copies of every matmul weight live from their first use to their backward
        root_gathered = 2 * shape.matmul_params if c == 2 else 0
        layers_gathered = bwd_buffers = 0
        root_grad = 4 * Pr  # the fp32 gradient of embeddings / head exists from the loss backward on

    # --- activations
    saved_tok, recompute_tok = activation_bytes_per_token(shape, setting.activation_checkpointing, c)
    acts = L * saved_tok * T
    if cp > 1:
        # the block's gathered keys and values: kept by attention for backward in every layer without
        # checkpointing, else one layer's worth; plus the boolean mask of a document crossing the slice
        kv_full = 2 * c * T_block * shape.kv_heads * shape.head_dim
        acts += L * kv_full if setting.activation_checkpointing == "none" else kv_full
        acts += T * T_block
    final_norm = (4 * H + c * H) * T
    loss_saved_h = c * H * T  # the loss's hidden gradient, computed in the forward pass
    recompute = recompute_tok * T
    # backward of one layer: gradients of the MLP's wide tensors and of the residual stream
    bwd_temp = (3 * c * shape.intermediate + 2 * c * H) * T
    # loss chunk: C x V logits in the compute dtype and fp32, the V x H weight gradient kept in fp32,
    # and one C-chunk's contribution to it in the compute dtype and fp32
    logits = (c + (4 if c != 4 else 0)) * C * V + (c + (4 if c != 4 else 0)) * V * H
    grad_w = 4 * V * H

    # blocks each rank runs per optimizer step (at most one sample per block: the worst case)
    micro_steps = math.ceil(cfg.global_batch_size / max(1, N // cp))
    micro_steps_with_grads = micro_steps > 1  # accumulation: grads of earlier micro-steps
    grads_in_bwd = shard_grads if micro_steps_with_grads else 0

    fwd_end = {
        "parameter shards": shard_params,
        "gradient shards": grads_in_bwd,
        "optimizer state": opt_state,
        "gathered layers": root_gathered + c * Pl * (1 if setting.distributed else 0),
        "activations": acts + final_norm + loss_saved_h,
        "logits / cross-entropy": logits + grad_w,
        "communication buffers": 0,
    }
    bwd_start = {
        "parameter shards": shard_params,
        "gradient shards": grads_in_bwd,
        "optimizer state": opt_state,
        "gathered layers": root_gathered + layers_gathered + root_grad,
        "activations": acts + loss_saved_h + recompute + bwd_temp,
        "logits / cross-entropy": 0,
        "communication buffers": bwd_buffers,
    }
    opt_step = {
        "parameter shards": shard_params,
        "gradient shards": shard_grads,
        "optimizer state": opt_state + opt_temp,
        "gathered layers": 0,
        "activations": 0,
        "logits / cross-entropy": 0,
        "communication buffers": 0,
    }
    phases = {"end of forward (loss)": fwd_end, "start of backward": bwd_start, "optimizer step": opt_step}
    phase = max(phases, key=lambda k: sum(phases[k].values()))

    cost = 1.0 + CONTEXT_PARALLEL_COST * math.log2(cp)
    if setting.activation_checkpointing == "selective":
        cost += SELECTIVE_COST
    elif setting.activation_checkpointing == "full":
        cost += FULL_COST
    # one block's time on one rank, divided by the ranks sharing it
    base_step = _base_step_seconds(shape, cfg) / cp
    step_s = base_step * cost
    if offload:
        # per block: fp32 shards up for forward and backward, fp32 gradients down; per optimizer step
        # (shared by the rank's blocks): the host AdamW step
        step_s += 3 * 4 * P / N / OFFLOAD_BW_BYTES_S + 28 * P / N / HOST_ADAM_BYTES_S / micro_steps
    return MemoryEstimate(
        setting=setting,
        rows=phases[phase],
        phase=phase,
        host_per_rank=host,
        tokens_per_s=T * N / step_s,
        step_cost=step_s / base_step,
        notes=notes,
    )


def _base_step_seconds(shape: ModelShape, cfg: TrainConfig) -> float:
    """Seconds per block per rank at ASSUMED_MFU with no recomputation (6·N·T + causal attention)."""
    T = block_tokens(cfg)
    qd = shape.heads * shape.head_dim
    flops = 6.0 * shape.matmul_params * T + 6.0 * shape.layers * qd * T * T
    return flops / (ASSUMED_MFU * PEAK_FLOPS)


AC_ORDER = ("none", "selective", "full")


@dataclass
class Plan:
    """Every candidate setting, the one asked for, and the recommendation."""

    shape: ModelShape
    cfg: TrainConfig
    hardware: Hardware
    requested: MemoryEstimate
    candidates: list[MemoryEstimate]
    """All settings, fastest first."""

    def fits(self, est: MemoryEstimate) -> bool:
        budget = self.hardware.budget
        return budget is None or est.peak <= budget

    @property
    def fitting(self) -> list[MemoryEstimate]:
        return [e for e in self.candidates if self.fits(e)]

    @property
    def recommended(self) -> MemoryEstimate | None:
        fit = self.fitting
        return fit[0] if fit else None

    @property
    def fastest(self) -> MemoryEstimate:
        return self.candidates[0]


def make_plan(shape: ModelShape, cfg: TrainConfig, hw: Hardware, distributed: bool) -> Plan:
    """Estimate ``cfg`` as given and every combination of checkpointing and offload (offload only where
    it acts: the FSDP2 path), ordered by estimated tokens/s. With one rank both launches are candidates:
    the plain process and ``torchrun --nproc-per-node 1`` (FSDP2 on one rank, which allows offload)."""
    requested = estimate(
        shape,
        cfg,
        hw,
        Setting(cfg.activation_checkpointing, cfg.cpu_offload, distributed, cfg.context_parallel),
    )
    launches = [distributed] if hw.ranks > 1 else [False, True]
    cps = [n for n in (1, 2, 4, 8) if hw.ranks % n == 0 and (n == 1 or cfg.packing)]
    cands = []
    for dist_path in launches:
        for off in (False, True) if dist_path else (False,):
            for cp in cps if dist_path else [1]:
                for ac in AC_ORDER:
                    cands.append(estimate(shape, cfg, hw, Setting(ac, off, dist_path, cp)))
    cands.sort(key=lambda e: (-e.tokens_per_s, e.peak))
    return Plan(shape, cfg, hw, requested, cands)


def format_plan(plan: Plan) -> str:
    """The breakdown of the requested setting and the options, as printed by ``s1kit train --plan``."""
    hw, shape, cfg = plan.hardware, plan.shape, plan.cfg
    req = plan.requested
    lines = [
        f"model: {shape.model_type}, {shape.params / 1e9:.2f}B parameters, {shape.layers} layers, hidden "
        f"{shape.hidden}, vocab {shape.vocab}{' (tied)' if shape.tied else ''}",
        f"run: {hw.ranks} x {hw.device}"
        + (f" of {hw.memory / GIB:.1f} GiB" if hw.memory else "")
        + f", {block_tokens(cfg)} tokens per block, dtype {cfg.dtype}, loss chunk {cfg.loss_chunk_size}",
        f"requested: {req.setting.describe()}",
        f"per-rank peak at {req.phase}:",
    ]
    for k, v in req.rows.items():
        lines.append(f"  {k:<24} {v / GIB:9.2f} GiB")
    lines.append(f"  {'total':<24} {req.peak / GIB:9.2f} GiB")
    if req.host_per_rank:
        lines.append(f"  host memory per rank (offloaded state) {req.host_per_rank / GIB:.2f} GiB")
    budget = hw.budget
    if budget is not None:
        lines.append(
            f"budget: {budget / GIB:.2f} GiB = ({hw.memory / GIB:.1f} GiB - {hw.reserved / GIB:.1f} GiB "  # type: ignore[operator]
            f"reserved) x (1 - {hw.margin:.0%} margin): " + ("FITS" if plan.fits(req) else "DOES NOT FIT")
        )
    else:
        lines.append("budget: no device memory given (--gpu-memory) and no CUDA device: not checked")
    lines.append("options (fastest first; tokens/s and cost are estimates, see below):")
    fastest = plan.fastest
    for e in plan.candidates:
        mark = "fits" if plan.fits(e) else "no"
        if budget is None:
            mark = "?"
        lines.append(
            f"  [{mark:>4}] {e.setting.describe():<66} peak {e.peak / GIB:7.2f} GiB  "
            f"~{e.tokens_per_s:9.0f} tok/s  ({e.tokens_per_s / fastest.tokens_per_s:.2f}x of fastest)"
        )
    rec = plan.recommended
    if budget is not None:
        if rec is None:
            lines.append("recommendation: nothing fits; use more GPUs or a shorter --block-size")
        else:
            lines.append(
                f"recommendation: {rec.setting.describe()} (peak {rec.peak / GIB:.2f} GiB, "
                f"~{rec.tokens_per_s / fastest.tokens_per_s:.2f}x the fastest setting's tokens/s)"
            )
    lines.append("cost model: " + COST_NOTE)
    for note in req.notes:
        lines.append("note: " + note)
    return "\n".join(lines)


def hardware_for(
    cfg: TrainConfig, gpus: int | None = None, gpu_memory_gib: float | None = None, margin: float = 0.10
) -> tuple[Hardware, bool]:
    """The hardware a run will use and whether it takes the FSDP2 path.

    Ranks: ``gpus``, else ``WORLD_SIZE``, else the visible CUDA devices (when training on CUDA), else 1.
    Device: CUDA when ``--device cuda``, or ``auto`` with CUDA visible, or when ``gpu_memory_gib`` is
    given (a plan for GPUs made on any machine) unless ``--device cpu``. Memory per device:
    ``gpu_memory_gib``, else the first visible card's total on CUDA, else unknown (no check: CPU runs
    are not memory-checked unless ``--gpu-memory`` is given). FSDP2 path: ``WORLD_SIZE`` set or
    more than one rank.
    """
    import os

    import torch

    if gpu_memory_gib is not None and gpu_memory_gib <= 0:
        raise ValueError(f"--gpu-memory={gpu_memory_gib} must be positive (GiB per GPU)")
    if gpus is not None and gpus <= 0:
        raise ValueError(f"--gpus={gpus} must be positive")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"--plan-margin={margin} must be in [0, 1)")
    cuda_visible = torch.cuda.is_available()
    if cfg.device == "cpu":
        device = "cpu"
    elif cfg.device == "cuda" or cuda_visible or gpu_memory_gib is not None:
        device = "cuda"
    else:
        device = "cpu"
    env_world = os.environ.get("WORLD_SIZE")
    if gpus is not None:
        ranks = gpus
    elif env_world is not None:
        ranks = int(env_world)
    elif device == "cuda" and cuda_visible:
        ranks = torch.cuda.device_count()
    else:
        ranks = 1
    memory: int | None = None
    if gpu_memory_gib is not None:
        memory = int(gpu_memory_gib * GIB)
    elif device == "cuda" and cuda_visible:
        memory = int(torch.cuda.get_device_properties(0).total_memory)
    distributed = env_world is not None or ranks > 1
    reserved = CUDA_RESERVED if device == "cuda" else 0
    return Hardware(device, ranks, memory, margin, reserved), distributed


def plan_run(
    cfg: TrainConfig, gpus: int | None = None, gpu_memory_gib: float | None = None, margin: float = 0.10
) -> Plan:
    """The plan of ``cfg`` on the hardware :func:`hardware_for` finds (reads only the model config)."""
    if not cfg.model:
        raise ValueError("--plan needs --model (a model folder or a config.json)")
    hw, distributed = hardware_for(cfg, gpus, gpu_memory_gib, margin)
    shape = model_shape(load_model_config(cfg.model))
    return make_plan(shape, cfg, hw, distributed)


def apply_setting(cfg: TrainConfig, setting: Setting) -> TrainConfig:
    """``cfg`` with the plan's memory settings."""
    return cfg.replace(
        activation_checkpointing=setting.activation_checkpointing,
        cpu_offload=setting.cpu_offload,
        context_parallel=setting.context_parallel,
    )
