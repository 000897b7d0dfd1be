"""The trained module: a Hugging Face causal LM plus the chunked loss, as one ``nn.Module``.

Wrapping the LM lets FSDP2 shard the root (embeddings, final norm, output head) and see the loss
computation as part of the root's forward, so the output weight is gathered only while it is used. No
parallelism code lives here.

Legend: ``B`` rows, ``S`` tokens per row, ``H`` hidden size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from s1kit.train.loss import chunked_cross_entropy
from s1kit.train.packing import MicroBatch


class CausalLMWithLoss(nn.Module):
    """``forward(batch, weights_BS) -> sum_t w_t CE_t`` over a micro-batch, logits never materialised."""

    def __init__(self, lm: nn.Module, chunk_size: int = 2048) -> None:
        super().__init__()
        self.lm = lm
        self.chunk_size = chunk_size

    @property
    def decoder_layers(self) -> nn.ModuleList:
        layers = getattr(getattr(self.lm, "model", None), "layers", None)
        if not isinstance(layers, nn.ModuleList):
            raise TypeError(
                f"{type(self.lm).__name__} has no `.model.layers` ModuleList; only decoder-only LMs laid out "
                "like Llama/Qwen2 are supported"
            )
        return layers

    def forward(self, batch: MicroBatch, weights_BS: torch.Tensor) -> torch.Tensor:
        kwargs: dict[str, Any] = batch.model_kwargs()
        out = self.lm.model(use_cache=False, **kwargs)  # type: ignore[operator]
        hidden_BSH = out.last_hidden_state
        H = hidden_BSH.shape[-1]
        weight = self.lm.get_output_embeddings().weight  # type: ignore[operator]
        loss: torch.Tensor = chunked_cross_entropy(
            hidden_BSH.reshape(-1, H),
            weight,
            batch.targets_BS.reshape(-1),
            weights_BS.reshape(-1),
            self.chunk_size,
        )
        return loss

    def logits(self, input_ids_BS: torch.Tensor) -> torch.Tensor:
        """Full logits (for tests and export checks only)."""
        out = self.lm(input_ids=input_ids_BS, use_cache=False)
        logits: torch.Tensor = out.logits
        return logits


def matmul_params(lm: nn.Module) -> int:
    """Parameters that take part in a matmul per token (every Linear, the output head included; the
    embedding lookup excluded): the N of 6·N·T."""
    return sum(m.weight.numel() for m in lm.modules() if isinstance(m, nn.Linear))


def attention_flops_per_token_sq(lm: nn.Module) -> int:
    """FLOPs of causal attention for one sample of length L are ``this * L**2`` (forward + backward:
    QK^T and PV, 2 FLOPs per MAC, halved by the causal mask, times 3 for backward)."""
    cfg: Any = lm.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    d_attn = cfg.num_attention_heads * head_dim
    return 6 * cfg.num_hidden_layers * d_attn


def step_flops(lm: nn.Module, sample_lengths: list[int]) -> float:
    t = sum(sample_lengths)
    return 6.0 * matmul_params(lm) * t + attention_flops_per_token_sq(lm) * float(
        sum(n * n for n in sample_lengths)
    )
