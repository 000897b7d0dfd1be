"""Packing samples into blocks, balancing blocks over ranks, and the varlen attention that keeps packed
samples apart.

A packed block is one row of concatenated samples (batch 1, no padding). Positions restart at 0 for each
sample and ``cu_seqlens`` marks the boundaries, so attention never crosses a sample: on CUDA through
``torch.nn.attention.varlen.varlen_attn`` (flash / cuDNN varlen kernels), elsewhere through one causal SDPA
call per sample, which is exact and is what the CPU tests compare against unpacked batches.

Unpacked micro-batches are right-padded rows; causal attention alone keeps real tokens from seeing the
padding after them, so they need no mask.

Legend: ``B`` rows, ``S`` tokens per row, ``H`` heads, ``D`` head dim, ``T`` total packed tokens,
``N`` samples in a block.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from s1kit.train.data import IGNORE_INDEX, Example

ATTENTION_NAME = "s1kit_varlen"


@dataclass
class MicroBatch:
    """One forward's worth of tokens. ``sample_ids_BS`` holds the sample's index within the optimizer step
    (-1 for padding), which the loss uses for per-sample weights."""

    input_ids_BS: torch.Tensor
    targets_BS: torch.Tensor
    position_ids_BS: torch.Tensor
    sample_ids_BS: torch.Tensor
    cu_seqlens_N1: torch.Tensor | None
    max_seqlen: int
    num_tokens: int

    def to(self, device: torch.device) -> MicroBatch:
        cu = None if self.cu_seqlens_N1 is None else self.cu_seqlens_N1.to(device, non_blocking=True)
        return MicroBatch(
            self.input_ids_BS.to(device, non_blocking=True),
            self.targets_BS.to(device, non_blocking=True),
            self.position_ids_BS.to(device, non_blocking=True),
            self.sample_ids_BS.to(device, non_blocking=True),
            cu,
            self.max_seqlen,
            self.num_tokens,
        )

    def model_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"input_ids": self.input_ids_BS, "position_ids": self.position_ids_BS}
        if self.cu_seqlens_N1 is not None:
            kw.update(
                cu_seq_lens_q=self.cu_seqlens_N1,
                cu_seq_lens_k=self.cu_seqlens_N1,
                max_length_q=self.max_seqlen,
                max_length_k=self.max_seqlen,
            )
        return kw


def collate_packed(examples: Sequence[Example], sample_ids: Sequence[int]) -> MicroBatch:
    """Concatenate samples into one row (batch 1) with restarting positions and cu_seqlens. An empty
    block (a rank with nothing left in a short last step) becomes one ignored token, so that every rank
    still runs the forward and backward that FSDP's collectives expect."""
    if not examples:
        one = torch.zeros((1, 1), dtype=torch.long)
        return MicroBatch(
            one,
            torch.full((1, 1), IGNORE_INDEX),
            one,
            torch.full((1, 1), -1),
            torch.tensor([0, 1]).int(),
            1,
            0,
        )
    ids: list[int] = []
    tgt: list[int] = []
    pos: list[int] = []
    sid: list[int] = []
    cu = [0]
    for ex, s in zip(examples, sample_ids, strict=True):
        n = len(ex)
        ids.extend(ex.input_ids_T)
        tgt.extend(ex.targets_T)
        pos.extend(range(n))
        sid.extend([s] * n)
        cu.append(cu[-1] + n)
    return MicroBatch(
        input_ids_BS=torch.tensor([ids], dtype=torch.long),
        targets_BS=torch.tensor([tgt], dtype=torch.long),
        position_ids_BS=torch.tensor([pos], dtype=torch.long),
        sample_ids_BS=torch.tensor([sid], dtype=torch.long),
        cu_seqlens_N1=torch.tensor(cu, dtype=torch.int32),
        max_seqlen=max((len(e) for e in examples), default=0),
        num_tokens=len(ids),
    )


def collate_padded(
    examples: Sequence[Example | None], sample_ids: Sequence[int], pad_id: int, pad_to: int | None = None
) -> MicroBatch:
    """Right-padded rows, one sample each; ``None`` stands for an empty row that only keeps the ranks in
    step (all targets ignored)."""
    width = max([len(e) for e in examples if e is not None] + [1])
    if pad_to is not None:
        width = max(width, pad_to)
    B = len(examples)
    ids = torch.full((B, width), pad_id, dtype=torch.long)
    tgt = torch.full((B, width), IGNORE_INDEX, dtype=torch.long)
    sid = torch.full((B, width), -1, dtype=torch.long)
    n_real = 0
    for b, (ex, s) in enumerate(zip(examples, sample_ids, strict=True)):
        if ex is None:
            continue
        n = len(ex)
        ids[b, :n] = torch.tensor(ex.input_ids_T)
        tgt[b, :n] = torch.tensor(ex.targets_T)
        sid[b, :n] = s
        n_real += n
    pos = torch.arange(width, dtype=torch.long).expand(B, width).contiguous()
    return MicroBatch(ids, tgt, pos, sid, None, width, n_real)


# --------------------------------------------------------------------------------------------- planning


def pack_bins(lengths: Sequence[int], block_size: int, multiple: int) -> list[list[int]]:
    """Indices grouped into bins of at most ``block_size`` tokens; the bin count is a multiple of
    ``multiple`` (the world size) and samples go longest first to the emptiest bin that fits them, so bins
    come out balanced by tokens."""
    if any(n > block_size for n in lengths):
        raise ValueError("a sample is longer than block_size; truncate or drop it first")
    total = sum(lengths)
    n_bins = max(1, math.ceil(total / block_size))
    n_bins = math.ceil(n_bins / multiple) * multiple
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    while True:
        bins: list[list[int]] = [[] for _ in range(n_bins)]
        fill = [0] * n_bins
        ok = True
        for i in order:
            # emptiest bin that still fits (worst fit): balances tokens; ties go to the lowest index
            best = min(
                (b for b in range(n_bins) if fill[b] + lengths[i] <= block_size),
                default=None,
                key=lambda b: (fill[b], b),
            )
            if best is None:
                ok = False
                break
            bins[best].append(i)
            fill[best] += lengths[i]
        if ok:
            return bins
        n_bins += multiple


def assign_to_ranks(bin_tokens: Sequence[int], world_size: int) -> list[list[int]]:
    """Bin indices per rank, each rank the same number of bins, heaviest bins first to the lightest rank."""
    per_rank = len(bin_tokens) // world_size
    assert per_rank * world_size == len(bin_tokens)
    heap = [(0, r) for r in range(world_size)]
    out: list[list[int]] = [[] for _ in range(world_size)]
    for b in sorted(range(len(bin_tokens)), key=lambda b: (-bin_tokens[b], b)):
        popped = []
        while True:
            load, r = heapq.heappop(heap)
            if len(out[r]) < per_rank:
                break
            popped.append((load, r))
        out[r].append(b)
        heapq.heappush(heap, (load + bin_tokens[b], r))
        for item in popped:
            heapq.heappush(heap, item)
    return out


def plan_packed_step(lengths: Sequence[int], block_size: int, world_size: int) -> list[list[list[int]]]:
    """For one optimizer step: per rank, a list of blocks, each a list of indices into ``lengths``."""
    bins = pack_bins(lengths, block_size, world_size)
    ranks = assign_to_ranks([sum(lengths[i] for i in b) for b in bins], world_size)
    return [[bins[b] for b in rank_bins] for rank_bins in ranks]


def plan_padded_step(
    lengths: Sequence[int], micro_batch_size: int, world_size: int, global_batch_size: int
) -> list[list[list[int | None]]]:
    """For one optimizer step without packing: per rank, micro-batches of ``micro_batch_size`` sample
    indices. Samples are dealt longest first in snake order so ranks get similar token counts; a short
    last step is filled with ``None`` rows so every rank runs the same number of micro-steps."""
    per_rank = global_batch_size // world_size
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    slots: list[list[int | None]] = [[] for _ in range(world_size)]
    for k, i in enumerate(order):
        rnd, r = divmod(k, world_size)
        slots[r if rnd % 2 == 0 else world_size - 1 - r].append(i)
    out: list[list[list[int | None]]] = []
    for s in slots:
        s = s + [None] * (per_rank - len(s))
        out.append([s[j : j + micro_batch_size] for j in range(0, per_rank, micro_batch_size)])
    return out


# -------------------------------------------------------------------------------------------- attention


def _varlen_kwargs() -> dict[str, Any]:
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    kw: dict[str, Any] = {}
    if "window_size" in params:
        kw["window_size"] = (-1, 0)
    elif "is_causal" in params:
        kw["is_causal"] = True
    kw["_gqa"] = "enable_gqa" in params
    return kw


_VARLEN_KW: dict[str, Any] | None = None
try:  # the varlen kernels' public entry point (torch >= 2.10); without it the exact per-sample path runs
    from torch.nn.attention.varlen import varlen_attn as _varlen_probe  # noqa: F401

    _HAS_VARLEN = True
except ImportError:
    _HAS_VARLEN = False


def varlen_attention_forward(
    module: torch.nn.Module,
    query_BHSD: torch.Tensor,
    key_BHSD: torch.Tensor,
    value_BHSD: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """A transformers attention function: packed rows (batch 1 with ``cu_seq_lens_q``) attend within each
    sample; anything else (right-padded rows) runs plain causal SDPA. Returns ``(B, S, H, D)``."""
    global _VARLEN_KW
    context = kwargs.get("s1kit_context")
    if context is not None:  # a slice of a block under context parallelism (s1kit.train.context)
        return context.attention(query_BHSD, key_BHSD, value_BHSD, scaling), None
    cu = kwargs.get("cu_seq_lens_q")
    B, H, S, _ = query_BHSD.shape
    Hkv = key_BHSD.shape[1]
    if cu is None or B != 1:
        out = F.scaled_dot_product_attention(
            query_BHSD, key_BHSD, value_BHSD, is_causal=S > 1, scale=scaling, enable_gqa=Hkv != H
        )
        return out.transpose(1, 2).contiguous(), None
    use_kernel = query_BHSD.is_cuda and query_BHSD.dtype in (torch.bfloat16, torch.float16) and _HAS_VARLEN
    if use_kernel:
        from torch.nn.attention.varlen import varlen_attn

        if _VARLEN_KW is None:
            _VARLEN_KW = _varlen_kwargs()
        kw = dict(_VARLEN_KW)
        gqa = kw.pop("_gqa")
        q_THD = query_BHSD[0].transpose(0, 1)
        k_THD = key_BHSD[0].transpose(0, 1)
        v_THD = value_BHSD[0].transpose(0, 1)
        if Hkv != H:
            if gqa:
                kw["enable_gqa"] = True
            else:
                k_THD = k_THD.repeat_interleave(H // Hkv, dim=1)
                v_THD = v_THD.repeat_interleave(H // Hkv, dim=1)
        mx = int(kwargs.get("max_length_q") or int((cu[1:] - cu[:-1]).max()))
        out_THD: Any = varlen_attn(q_THD, k_THD, v_THD, cu, cu, mx, mx, scale=scaling, **kw)
        return out_THD.unsqueeze(0), None
    # Exact reference path: one causal SDPA per sample.
    bounds = cu.tolist()
    outs = []
    for s, e in itertools.pairwise(bounds):
        outs.append(
            F.scaled_dot_product_attention(
                query_BHSD[:, :, s:e],
                key_BHSD[:, :, s:e],
                value_BHSD[:, :, s:e],
                is_causal=e - s > 1,
                scale=scaling,
                enable_gqa=Hkv != H,
            )
        )
    out = torch.cat(outs, dim=2) if outs else query_BHSD[:, :, :0]
    return out.transpose(1, 2).contiguous(), None


def register_attention() -> str:
    """Register :func:`varlen_attention_forward` with transformers under ``s1kit_varlen``; returns the
    name. It has no mask function on purpose: packed rows use cu_seqlens, padded rows causal SDPA."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, varlen_attention_forward)
    return ATTENTION_NAME


def resolve_attention(choice: str) -> str:
    """``auto``/``varlen`` -> our varlen function; ``sdpa``/``eager`` -> transformers' own (packed rows then
    rely on transformers building a block-diagonal mask from the restarting position ids)."""
    if choice in ("auto", "varlen"):
        return register_attention()
    if choice in ("sdpa", "eager"):
        return choice
    raise ValueError(f"attention={choice!r}; choose auto, varlen, sdpa or eager")
