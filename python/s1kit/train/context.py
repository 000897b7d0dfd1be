"""Context parallelism: one packed block split along the sequence over a group of ranks, on top of FSDP2.

``--context-parallel C`` groups every ``C`` consecutive ranks; the ranks of a group run the same packed
blocks, each the ``1/C`` slice of tokens at its position in the group (the block is padded with ignored
tokens to a multiple of ``C``). Everything but attention is per token, so each rank runs the layers,
the rotary embedding (positions travel with the tokens) and the chunked loss on its slice alone. In
attention every rank all-gathers the group's keys and values and attends its queries to them with the
packed documents' causal mask: a query at block position ``i`` of a document starting at ``a`` sees keys
``a..i``. A document wholly inside the slice runs the same causal SDPA call as the one-process path; a
document crossing a slice boundary runs SDPA with the bottom-right causal mask of its visible keys.
The backward of the gather sums the key/value gradients over the group (``all_reduce``, which gloo and
NCCL both have) and keeps the local slice.

The loss needs nothing extra: each rank's loss is its slice's share of the global token-weighted sum, so
the sum over all ranks is the global loss and FSDP's gradient average times the world size (what the
trainer already does) is the full gradient.

Why not ``torch.distributed.tensor.experimental.context_parallel``: it shards SDPA's CUDA kernels
(flash, memory-efficient, cuDNN) with a plain causal mask over one sequence; packed blocks need
per-document masks and the CPU (gloo) tests need a CPU path, so this exact gather is used everywhere.
Memory per rank: activations of ``T / C`` tokens plus the gathered keys and values of one layer
(``2 x T x kv_heads x head_dim``); compute: causal attention is heavier at the end of a block, so later
slices do more of it (no load balancing yet).

Legend: ``B`` rows (1), ``S`` local tokens, ``T`` block tokens, ``H`` heads, ``D`` head dim.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from s1kit.train.data import IGNORE_INDEX
from s1kit.train.packing import MicroBatch


def context_groups(world: int, size: int) -> Any:
    """This rank's group of ``size`` consecutive ranks (every rank must call this, in the same order)."""
    if size < 1 or world % size != 0:
        raise ValueError(f"context_parallel={size} must divide the number of ranks ({world})")
    mine = None
    rank = dist.get_rank()
    for start in range(0, world, size):
        group = dist.new_group(list(range(start, start + size)))
        if start <= rank < start + size:
            mine = group
    return mine


class _GatherSequence(torch.autograd.Function):
    """All-gather along the sequence dim (2); backward sums the gradient over the group and keeps the
    local slice."""

    @staticmethod
    def forward(ctx: Any, x_BHSD: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        ctx.rank = dist.get_rank(group)
        ctx.size = x_BHSD.shape[2]
        parts = [torch.empty_like(x_BHSD) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x_BHSD.contiguous(), group=group)
        return torch.cat(parts, dim=2)

    @staticmethod
    def backward(ctx: Any, grad_BHTD: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad_BHTD.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        s = ctx.rank * ctx.size
        return grad[:, :, s : s + ctx.size], None


@dataclass
class ContextAttention:
    """Passed to the attention function as the ``s1kit_context`` keyword: where this rank's queries sit
    in the block, the block's document boundaries, and the group to gather keys and values from."""

    cu_seqlens: list[int]
    start: int
    group: Any

    def attention(
        self,
        query_BHSD: torch.Tensor,
        key_BHSD: torch.Tensor,
        value_BHSD: torch.Tensor,
        scaling: float | None,
    ) -> torch.Tensor:
        """Output ``(B, S, H, D)`` of the local queries against the gathered keys and values."""
        H, S = query_BHSD.shape[1], query_BHSD.shape[2]
        Hkv = key_BHSD.shape[1]
        gqa = Hkv != H
        # keys and values in one gather, so that backward has one all-reduce per layer and every rank
        # issues its collectives in the same order whatever its documents look like
        kv_BHTD = _GatherSequence.apply(torch.cat([key_BHSD, value_BHSD], dim=1), self.group)
        key_BHTD, value_BHTD = kv_BHTD[:, :Hkv], kv_BHTD[:, Hkv:]
        s0, s1 = self.start, self.start + S
        outs = []
        for a, b in itertools.pairwise(self.cu_seqlens):
            qa, qb = max(a, s0), min(b, s1)
            if qa >= qb:
                continue
            q = query_BHSD[:, :, qa - s0 : qb - s0]
            k = key_BHTD[:, :, a:qb]
            v = value_BHTD[:, :, a:qb]
            n_q, n_k = qb - qa, qb - a
            if n_q == n_k:  # the document starts in this slice: plain causal, as in one process
                out = F.scaled_dot_product_attention(
                    q, k, v, is_causal=n_q > 1, scale=scaling, enable_gqa=gqa
                )
            else:  # bottom-right causal: local query i sees the document's keys up to n_k - n_q + i
                mask = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril(n_k - n_q)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling, enable_gqa=gqa)
            outs.append(out)
        out_BHSD = torch.cat(outs, dim=2)
        return out_BHSD.transpose(1, 2).contiguous()


@dataclass
class ContextShard:
    """This rank's slice of one packed block; used by the trainer and the model like a MicroBatch."""

    input_ids_BS: torch.Tensor
    targets_BS: torch.Tensor
    position_ids_BS: torch.Tensor
    sample_ids_BS: torch.Tensor
    cu_seqlens: list[int]
    start: int
    group: Any
    num_tokens: int

    def to(self, device: torch.device) -> ContextShard:
        return ContextShard(
            self.input_ids_BS.to(device, non_blocking=True),
            self.targets_BS.to(device, non_blocking=True),
            self.position_ids_BS.to(device, non_blocking=True),
            self.sample_ids_BS.to(device, non_blocking=True),
            self.cu_seqlens,
            self.start,
            self.group,
            self.num_tokens,
        )

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "input_ids": self.input_ids_BS,
            "position_ids": self.position_ids_BS,
            "s1kit_context": ContextAttention(self.cu_seqlens, self.start, self.group),
        }


def shard_block(mb: MicroBatch, rank: int, size: int, group: Any) -> ContextShard:
    """Slice ``rank`` of ``size`` of a packed block (batch 1 with cu_seqlens). The block is first padded
    to a multiple of ``size`` with ignored tokens that form a document of their own."""
    if mb.cu_seqlens_N1 is None or mb.input_ids_BS.shape[0] != 1:
        raise ValueError("context parallelism needs packed blocks (--packing)")
    T = mb.input_ids_BS.shape[1]
    pad = (-T) % size
    ids, tgt, pos, sid = mb.input_ids_BS, mb.targets_BS, mb.position_ids_BS, mb.sample_ids_BS
    cu = [int(x) for x in mb.cu_seqlens_N1.tolist()]
    if pad:
        ids = torch.cat([ids, torch.zeros((1, pad), dtype=ids.dtype)], dim=1)
        tgt = torch.cat([tgt, torch.full((1, pad), IGNORE_INDEX, dtype=tgt.dtype)], dim=1)
        pos = torch.cat([pos, torch.arange(pad, dtype=pos.dtype).unsqueeze(0)], dim=1)
        sid = torch.cat([sid, torch.full((1, pad), -1, dtype=sid.dtype)], dim=1)
        cu.append(T + pad)
    n = (T + pad) // size
    s = rank * n
    return ContextShard(
        ids[:, s : s + n],
        tgt[:, s : s + n],
        pos[:, s : s + n],
        sid[:, s : s + n],
        cu,
        s,
        group,
        mb.num_tokens,
    )
