"""Token sampling with per-request seeds that do not depend on the batch.

Shape legend: B batch rows, V vocabulary.

Randomness is counter-based: row ``b`` draws one uniform number from a 32-bit integer hash of
``(seed_B[b], counter_B[b])``, where the counter is the number of tokens the request has generated
so far. No generator state is carried between steps, so a seeded request samples the same tokens
whatever else is in the batch, whichever slot it occupies and whether it ran in a CUDA graph or
eagerly. The token is drawn by inverse-CDF search over the (filtered) probabilities, which needs a
single uniform per row. Everything here is pure tensor code with static shapes: CUDA-graph safe.
"""

from __future__ import annotations

from enum import IntEnum

import torch

_MASK32 = 0xFFFFFFFF


class SamplingMode(IntEnum):
    """What a decode step must compute; one CUDA graph per mode (and batch bucket)."""

    GREEDY = 0  # every row has temperature 0: argmax only
    SAMPLE = 1  # some rows sample, none filters: inverse CDF over the full distribution
    FILTERED = 2  # some row uses top-k or top-p: sort first


def fold_seed(seed: int) -> int:
    """A Python int (any size, any sign) reduced to the 32-bit seed the hash consumes."""
    s = seed % (1 << 64)
    return (s ^ (s >> 32)) & _MASK32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """An avalanche mix of int64 tensors holding values in ``[0, 2**32)``.

    Multipliers are below 2**31 so no product overflows int64; every step re-masks to 32 bits.
    """
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x46CA68B5) & _MASK32
    return x ^ (x >> 16)


def counter_uniform(seed_B: torch.Tensor, counter_B: torch.Tensor) -> torch.Tensor:
    """A uniform float32 in ``[0, 1)`` per row, a pure function of (seed, counter)."""
    x = _hash32((_hash32(seed_B) + counter_B) & _MASK32)
    return (x >> 8).to(torch.float32) * (1.0 / (1 << 24))


def _inverse_cdf(probs_BV: torch.Tensor, u_B: torch.Tensor) -> torch.Tensor:
    """Index ``i`` with ``cdf[i - 1] < u * total <= cdf[i]``, clamped into the vocabulary."""
    cdf_BV = probs_BV.cumsum(-1)
    target_B1 = (u_B * cdf_BV[:, -1]).unsqueeze(-1)
    idx_B = torch.searchsorted(cdf_BV, target_B1).squeeze(-1)
    return idx_B.clamp_(max=probs_BV.shape[-1] - 1)


def filter_sorted(
    logits_BV: torch.Tensor, top_p_B: torch.Tensor, top_k_B: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Descending probabilities with tokens outside top-k / top-p zeroed, and the sort order.

    ``top_k_B[b] == 0`` keeps every token; top-p keeps the smallest prefix whose mass reaches
    ``top_p_B[b]`` (the first token is always kept), as transformers' warpers do.
    """
    sorted_BV, order_BV = logits_BV.sort(dim=-1, descending=True)
    probs_BV = sorted_BV.softmax(-1)
    rank_V = torch.arange(logits_BV.shape[-1], device=logits_BV.device)
    k_B1 = torch.where(top_k_B > 0, top_k_B, logits_BV.shape[-1]).unsqueeze(-1)
    keep_BV = rank_V[None, :] < k_B1
    # Mass strictly before each token; a token is kept while that mass is below top_p.
    before_BV = probs_BV.cumsum(-1) - probs_BV
    keep_BV &= before_BV < top_p_B.unsqueeze(-1)
    keep_BV[:, 0] = True
    return probs_BV * keep_BV, order_BV


def sample(
    logits_BV: torch.Tensor,
    temperature_B: torch.Tensor,
    top_p_B: torch.Tensor,
    top_k_B: torch.Tensor,
    seed_B: torch.Tensor,
    counter_B: torch.Tensor,
    mode: SamplingMode,
) -> torch.Tensor:
    """Next token per row (int64). Rows with temperature 0 take the argmax (first on ties)."""
    greedy_B = logits_BV.argmax(-1)
    if mode == SamplingMode.GREEDY:
        return greedy_B
    t_B1 = torch.where(temperature_B > 0, temperature_B, 1.0).unsqueeze(-1)
    scaled_BV = logits_BV.float() / t_B1
    u_B = counter_uniform(seed_B, counter_B)
    drawn_B = _inverse_cdf(scaled_BV.softmax(-1), u_B)
    if mode == SamplingMode.FILTERED:
        # Only rows that filter draw in sorted order: an unfiltered row draws exactly as in SAMPLE
        # mode, so its tokens do not depend on whether a batch-mate uses top-k or top-p.
        probs_BV, order_BV = filter_sorted(scaled_BV, top_p_B, top_k_B)
        filtered_B = order_BV.gather(-1, _inverse_cdf(probs_BV, u_B).unsqueeze(-1)).squeeze(-1)
        drawn_B = torch.where((top_k_B > 0) | (top_p_B < 1.0), filtered_B, drawn_B)
    return torch.where(temperature_B > 0, drawn_B, greedy_B)


def sampling_mode(temperatures: list[float], top_ps: list[float], top_ks: list[int]) -> SamplingMode:
    """The cheapest mode that serves every row of a batch."""
    sampled = [i for i, t in enumerate(temperatures) if t > 0]
    if not sampled:
        return SamplingMode.GREEDY
    if any(top_ps[i] < 1.0 or top_ks[i] > 0 for i in sampled):
        return SamplingMode.FILTERED
    return SamplingMode.SAMPLE
