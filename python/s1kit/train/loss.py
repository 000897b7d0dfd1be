"""Chunked linear + cross-entropy: the loss of ``hidden @ W.T`` without materialising the logits.

For each chunk of ``C`` tokens the forward pass computes fp32 logits, the per-token loss, and right away
the gradients with respect to the hidden states and the output weight, then drops the logits. Only the
``(T, H)`` hidden gradient and the ``(V, H)`` weight gradient are kept for backward, which scales them by
the incoming gradient. A 32K block over a 152K vocabulary never holds more than ``C x V`` fp32 logits.

The loss is ``sum_t w_t * CE_t`` with per-token weights ``w_t``: ``1 / (target tokens in the global
batch)`` for the token mean, ``1 / (samples x target tokens of the sample)`` for s1's per-sample mean
(:func:`token_weights`). Ignored tokens have weight 0.

Legend: ``T`` tokens, ``H`` hidden size, ``V`` vocabulary, ``C`` chunk.
"""

from __future__ import annotations

from typing import Any

import torch

from s1kit.train.data import IGNORE_INDEX


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        hidden_TH: torch.Tensor,
        weight_VH: torch.Tensor,
        targets_T: torch.Tensor,
        weights_T: torch.Tensor,
        chunk_size: int,
    ) -> torch.Tensor:
        T = hidden_TH.shape[0]
        needs_h, needs_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h_TH = torch.zeros_like(hidden_TH) if needs_h else None
        grad_w_VH = (
            torch.zeros(weight_VH.shape, dtype=torch.float32, device=weight_VH.device) if needs_w else None
        )
        loss = torch.zeros((), dtype=torch.float32, device=hidden_TH.device)
        for s in range(0, T, chunk_size):
            e = min(s + chunk_size, T)
            tgt_C = targets_T[s:e]
            w_C = weights_T[s:e].float()
            if not bool((w_C != 0).any()):
                continue
            h_CH = hidden_TH[s:e]
            logits_CV = (h_CH @ weight_VH.t()).float()
            lse_C = torch.logsumexp(logits_CV, dim=-1)
            safe_tgt_C = tgt_C.clamp(min=0)
            tgt_logit_C = logits_CV.gather(1, safe_tgt_C.unsqueeze(1)).squeeze(1)
            loss = loss + ((lse_C - tgt_logit_C) * w_C).sum()
            if needs_h or needs_w:
                # d(w * CE)/d logits = w * (softmax - onehot)
                g_CV = torch.exp_(logits_CV.sub_(lse_C.unsqueeze(1)))
                g_CV.scatter_add_(1, safe_tgt_C.unsqueeze(1), -torch.ones_like(w_C).unsqueeze(1))
                g_CV.mul_(w_C.unsqueeze(1))
                g_CV = g_CV.to(hidden_TH.dtype)
                if grad_h_TH is not None:
                    grad_h_TH[s:e] = g_CV @ weight_VH
                if grad_w_VH is not None:
                    grad_w_VH.add_((g_CV.t() @ h_CH).float())
        ctx.save_for_backward(
            grad_h_TH if grad_h_TH is not None else torch.empty(0),
            grad_w_VH if grad_w_VH is not None else torch.empty(0),
        )
        ctx.weight_dtype = weight_VH.dtype
        return loss

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_h_TH, grad_w_VH = ctx.saved_tensors
        gh = grad_h_TH * grad_out.to(grad_h_TH.dtype) if ctx.needs_input_grad[0] else None
        gw = (grad_w_VH * grad_out).to(ctx.weight_dtype) if ctx.needs_input_grad[1] else None
        return gh, gw, None, None, None


def chunked_cross_entropy(
    hidden_TH: torch.Tensor,
    weight_VH: torch.Tensor,
    targets_T: torch.Tensor,
    weights_T: torch.Tensor,
    chunk_size: int = 2048,
) -> torch.Tensor:
    """``sum_t weights_T[t] * CE(hidden_TH[t] @ weight_VH.T, targets_T[t])`` in fp32, chunk by chunk.
    Tokens with target -100 must have weight 0."""
    if hidden_TH.dim() != 2 or weight_VH.dim() != 2 or hidden_TH.shape[1] != weight_VH.shape[1]:
        raise ValueError(f"hidden {tuple(hidden_TH.shape)} and weight {tuple(weight_VH.shape)} do not match")
    if targets_T.shape != weights_T.shape or targets_T.shape[0] != hidden_TH.shape[0]:
        raise ValueError("targets and weights must both have one entry per hidden row")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size={chunk_size} must be positive")
    out: torch.Tensor = _ChunkedLinearCrossEntropy.apply(
        hidden_TH, weight_VH, targets_T, weights_T, chunk_size
    )
    return out


def token_weights(
    targets_T: torch.Tensor,
    sample_ids_T: torch.Tensor,
    reduction: str,
    global_targets: int,
    sample_targets: torch.Tensor | None = None,
    num_samples: int = 1,
) -> torch.Tensor:
    """Per-token loss weights for one micro-batch of a global batch.

    ``token``: every target token weighs ``1 / global_targets`` (mean over the global batch).
    ``sample``: a target token of sample ``s`` weighs ``1 / (num_samples * sample_targets[s])``.
    """
    mask_T = targets_T != IGNORE_INDEX
    if reduction == "token":
        return mask_T.float() / max(global_targets, 1)
    if reduction == "sample":
        if sample_targets is None:
            raise ValueError("reduction='sample' needs sample_targets")
        per_T = sample_targets.float().to(targets_T.device)[sample_ids_T.clamp(min=0)]
        return torch.where(mask_T, 1.0 / (per_T.clamp(min=1) * num_samples), torch.zeros_like(per_T))
    raise ValueError(f"loss reduction {reduction!r}; choose 'token' or 'sample'")
