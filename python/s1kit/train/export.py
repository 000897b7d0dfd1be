"""Export the trained model in Hugging Face format: config, tokenizer and safetensors shards that
``AutoModelForCausalLM.from_pretrained`` loads.

Under FSDP every rank takes part in gathering the full state dict (offloaded to CPU); rank 0 writes.
The folder is replaced as a whole (:func:`s1kit._io.atomic_dir`): a reader sees the previous export or
the new one, never a mix (where the file system lacks an atomic exchange, a kill between its two
renames leaves ``hf/`` missing and the previous export whole in ``.hf.old``; see there).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from s1kit import _io
from s1kit.train.model import CausalLMWithLoss

_PREFIX = "lm."


def export_hf(
    model: CausalLMWithLoss | nn.Module,
    tokenizer: Any,
    out_dir: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    max_shard_size: str = "5GB",
) -> Path | None:
    """Write ``out_dir`` (rank 0) and return it; other ranks return None after helping gather."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full: dict[str, Any] = get_model_state_dict(model, options=opts)
    rank = dist.get_rank() if dist.is_initialized() else 0
    out = Path(out_dir)
    if rank == 0:
        lm: Any = model.lm if isinstance(model, CausalLMWithLoss) else model
        sd = {
            k[len(_PREFIX) :] if k.startswith(_PREFIX) else k: v.detach().to(dtype).contiguous()
            for k, v in full.items()
        }
        if getattr(lm.config, "tie_word_embeddings", False):
            sd.pop("lm_head.weight", None)
        # Written into a staging folder that replaces ``out`` whole: a kill never leaves a folder
        # whose weights and config come from different runs.
        with _io.atomic_dir(out) as staging:
            _save_shards(sd, staging, max_shard_size)
            config = copy.deepcopy(lm.config)  # the live model keeps its training settings
            config.dtype = dtype
            config.use_cache = True  # training turned the KV cache off; the export is for inference
            config.save_pretrained(staging)
            gen = getattr(lm, "generation_config", None)
            if gen is not None:
                gen.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
    if dist.is_initialized():
        dist.barrier()
    return out if rank == 0 else None


def _parse_size(size: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9}
    for u, m in units.items():
        if size.upper().endswith(u):
            return int(float(size[: -len(u)]) * m)
    return int(size)


def _save_shards(sd: dict[str, torch.Tensor], out: Path, max_shard_size: str) -> None:
    import json

    from safetensors.torch import save_file

    limit = _parse_size(max_shard_size)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in sd.items():
        n = v.numel() * v.element_size()
        if shards[-1] and size + n > limit:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += n
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata=meta)
        return
    weight_map: dict[str, str] = {}
    total = 0
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / name), metadata=meta)
        for k, v in shard.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
