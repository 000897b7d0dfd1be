"""Parallelism and memory policies applied from outside the model: activation checkpointing and FSDP2.

``apply_fsdp`` calls ``fully_shard`` on every decoder layer, then on the root, with bf16 parameters and
fp32 gradient reduction (``MixedPrecisionPolicy``), optionally offloading parameters, gradients and the
optimizer step to CPU (``CPUOffloadPolicy``). The root group holds the embeddings, the final norm and the
output head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from s1kit.train.model import CausalLMWithLoss

# Ops whose outputs selective checkpointing keeps: matmuls and attention kernels. Everything else
# (norms, activations, rotary embeddings, casts) is recomputed in backward.
_SAVE_OPS_NAMES = (
    "mm",
    "addmm",
    "bmm",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_flash_attention_forward",
)


def _save_ops() -> set[Any]:
    ops: set[Any] = set()
    for name in _SAVE_OPS_NAMES:
        packet = getattr(torch.ops.aten, name, None)
        if packet is not None:
            ops.add(packet.default)
    varlen = getattr(getattr(torch.ops, "torch_attn", None), "_varlen_attn", None)
    if varlen is not None:
        ops.add(varlen.default)
    return ops


def apply_activation_checkpointing(model: CausalLMWithLoss, mode: str) -> None:
    """``none``; ``full`` (recompute each decoder layer in backward); ``selective`` (recompute each layer
    but keep matmul and attention outputs, so only cheap elementwise ops run twice)."""
    if mode == "none":
        return
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    layers = model.decoder_layers
    if mode == "full":
        for i, layer in enumerate(layers):
            layers[i] = checkpoint_wrapper(layer, preserve_rng_state=False)
        return
    if mode == "selective":
        from functools import partial

        from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

        save = _save_ops()

        def policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
            return CheckpointPolicy.MUST_SAVE if op in save else CheckpointPolicy.PREFER_RECOMPUTE

        for i, layer in enumerate(layers):
            layers[i] = checkpoint_wrapper(
                layer,
                preserve_rng_state=False,
                context_fn=partial(create_selective_checkpoint_contexts, policy),
            )
        return
    raise ValueError(f"activation_checkpointing={mode!r}; choose none, selective or full")


def apply_fsdp(
    model: CausalLMWithLoss,
    param_dtype: torch.dtype,
    cpu_offload: bool = False,
    mesh: Any = None,
    reshard_after_forward: bool = True,
) -> nn.Module:
    """Shard every decoder layer, then the root. Parameters stay fp32 shards (the optimizer's master
    copy); they are gathered in ``param_dtype`` for compute and gradients are reduced in fp32."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    kwargs: dict[str, Any] = {"mp_policy": mp}
    if mesh is not None:
        kwargs["mesh"] = mesh
    if cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    layers = model.decoder_layers
    for i, layer in enumerate(layers):
        # The last layer's parameters are needed again first in backward: keep them gathered.
        fully_shard(layer, reshard_after_forward=reshard_after_forward and i < len(layers) - 1, **kwargs)
    fully_shard(model, reshard_after_forward=reshard_after_forward, **kwargs)
    return model
