"""A compact decoder-only transformer (Qwen2 / Qwen2.5, Qwen3 dense, Llama) that reads Hugging Face weights.

Shape legend: B batch rows, T tokens per row in this call, S attended cache positions, E hidden size,
H query heads, K key/value heads, G = H // K query heads per key/value head, D head dim, F MLP width,
V vocabulary.

The arithmetic follows ``transformers``' own Qwen2/Qwen3/Llama code (RMSNorm in fp32, RoPE tables in fp32
cast to the activation dtype, ``head_dim ** -0.5`` attention scale) so logits agree within rounding.
Qwen3 adds an RMSNorm over each query and key head (before RoPE) and sets ``head_dim`` on its own,
independent of ``hidden_size // num_attention_heads``; DeepSeek-R1-Distill checkpoints are plain
Qwen2 or Llama models and load as such.
Two layout changes make the decode step cheaper: q/k/v and gate/up projections are fused into one
matmul each, and grouped-query attention folds the G query heads of a group into SDPA's query axis
(``(B, K, G * T, D)`` against ``(B, K, S, D)``), so the cache is never repeated per query head.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from s1kit.generate.cache import StaticKVCache

SUPPORTED_MODEL_TYPES = ("qwen2", "qwen3", "llama")
# Said when a checkpoint's family is not one of SUPPORTED_MODEL_TYPES.
OTHER_ENGINES_HINT = (
    "s1kit's own engine runs the dense decoders Qwen2/Qwen2.5 (incl. DeepSeek-R1-Distill-Qwen), "
    "Qwen3 and Llama (incl. DeepSeek-R1-Distill-Llama) only: run other families with `--engine hf` "
    "(transformers) or `--engine vllm` / `--engine sglang`, which apply the same budget forcing"
)


@dataclass(frozen=True)
class ModelArgs:
    """Architecture hyper-parameters, read from a ``transformers`` config by :meth:`from_hf_config`."""

    model_type: str
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    norm_eps: float
    qkv_bias: bool
    o_bias: bool
    qk_norm: bool
    mlp_bias: bool
    tie_embeddings: bool
    rope_theta: float
    rope_parameters: Mapping[str, Any]

    @classmethod
    def from_hf_config(cls, config: Any) -> ModelArgs:
        model_type = getattr(config, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"model_type {model_type!r} is not supported by s1kit.generate; supported: "
                f"{', '.join(SUPPORTED_MODEL_TYPES)}. {OTHER_ENGINES_HINT}"
            )
        layer_types = getattr(config, "layer_types", None) or ()
        if getattr(config, "use_sliding_window", False) or "sliding_attention" in layer_types:
            raise ValueError(
                "config.use_sliding_window is true: sliding-window attention is not implemented; "
                "use a checkpoint with full attention"
            )
        rope = dict(_rope_parameters(config))
        n_heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
        attn_bias = bool(getattr(config, "attention_bias", False))
        return cls(
            model_type=model_type,
            vocab_size=config.vocab_size,
            dim=config.hidden_size,
            n_layers=config.num_hidden_layers,
            n_heads=n_heads,
            n_kv_heads=getattr(config, "num_key_value_heads", None) or n_heads,
            head_dim=head_dim,
            ffn_dim=config.intermediate_size,
            norm_eps=config.rms_norm_eps,
            # Qwen2 always has q/k/v biases and no o bias; Llama's and Qwen3's `attention_bias` covers
            # all four.
            qkv_bias=model_type == "qwen2" or attn_bias,
            o_bias=model_type != "qwen2" and attn_bias,
            qk_norm=model_type == "qwen3",
            mlp_bias=bool(getattr(config, "mlp_bias", False)),
            tie_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            rope_theta=float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))),
            rope_parameters=rope,
        )


def _rope_parameters(config: Any) -> Mapping[str, Any]:
    """transformers 5 keeps RoPE settings in ``rope_parameters``; older configs in ``rope_scaling``."""
    params = getattr(config, "rope_parameters", None)
    if params is None:
        params = dict(getattr(config, "rope_scaling", None) or {})
        params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    if "rope_type" not in params and "type" in params:
        params = {**params, "rope_type": params["type"]}
    return params


def rope_inv_freq(args: ModelArgs, hf_config: Any | None) -> tuple[torch.Tensor, float]:
    """Inverse frequencies ``(D // 2,)`` in fp32 and the cos/sin scale, as ``transformers`` computes them."""
    rope_type = args.rope_parameters.get("rope_type", "default")
    if rope_type == "default":
        d = args.head_dim
        with torch.device("cpu"):
            return 1.0 / (args.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d)), 1.0
    if rope_type in ("dynamic", "longrope"):
        raise ValueError(
            f"rope_type {rope_type!r} depends on the sequence length and is not supported; "
            "supported: default, linear, llama3, yarn"
        )
    if hf_config is None:
        raise ValueError(f"rope_type {rope_type!r} needs the transformers config to build its frequencies")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    if rope_type not in ROPE_INIT_FUNCTIONS:
        raise ValueError(f"unknown rope_type {rope_type!r} in the model config")
    with torch.device("cpu"):  # also when the model is being built on the meta device
        inv_freq, scale = ROPE_INIT_FUNCTIONS[rope_type](hf_config, torch.device("cpu"))
    return inv_freq.float(), float(scale)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        qkv_out = (args.n_heads + 2 * args.n_kv_heads) * args.head_dim
        self.wqkv = nn.Linear(args.dim, qkv_out, bias=args.qkv_bias)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=args.o_bias)
        self.scale = args.head_dim**-0.5
        # Qwen3: RMSNorm over each head's D features of q and k, before RoPE.
        self.q_norm = RMSNorm(args.head_dim, args.norm_eps) if args.qk_norm else None
        self.k_norm = RMSNorm(args.head_dim, args.norm_eps) if args.qk_norm else None

    def forward(
        self,
        x_BTE: torch.Tensor,
        cos_BT1D: torch.Tensor,
        sin_BT1D: torch.Tensor,
        pos_BT: torch.Tensor,
        mask_B1TS: torch.Tensor,
        cache: StaticKVCache,
        layer: int,
        start: int,
    ) -> torch.Tensor:
        B, T, _ = x_BTE.shape
        H, K, D = self.n_heads, self.n_kv_heads, self.head_dim
        q, k, v = self.wqkv(x_BTE).split([H * D, K * D, K * D], dim=-1)
        q_BTHD = q.view(B, T, H, D)
        k_BTKD = k.view(B, T, K, D)
        if self.q_norm is not None and self.k_norm is not None:
            q_BTHD = self.q_norm(q_BTHD)
            k_BTKD = self.k_norm(k_BTKD)
        q_BTHD = q_BTHD * cos_BT1D + _rotate_half(q_BTHD) * sin_BT1D
        k_BTKD = k_BTKD * cos_BT1D + _rotate_half(k_BTKD) * sin_BT1D
        cache.write(layer, start, pos_BT, k_BTKD, v.view(B, T, K, D))
        S = mask_B1TS.shape[-1]
        k_BKSD, v_BKSD = cache.view(layer, start, B, S)
        G = H // K
        # Fold the G query heads of each group into the query axis: (B, K, G * T, D).
        q_BKQD = q_BTHD.permute(0, 2, 1, 3).reshape(B, K, G * T, D)
        mask_B1QS = mask_B1TS if G == 1 else mask_B1TS.repeat(1, 1, G, 1)
        o_BKQD = F.scaled_dot_product_attention(q_BKQD, k_BKSD, v_BKSD, attn_mask=mask_B1QS, scale=self.scale)
        o_BTE = o_BKQD.reshape(B, H, T, D).transpose(1, 2).reshape(B, T, H * D)
        out: torch.Tensor = self.wo(o_BTE)
        return out


class MLP(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.ffn_dim = args.ffn_dim
        self.w13 = nn.Linear(args.dim, 2 * args.ffn_dim, bias=args.mlp_bias)  # gate and up, fused
        self.w2 = nn.Linear(args.ffn_dim, args.dim, bias=args.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).split(self.ffn_dim, dim=-1)
        out: torch.Tensor = self.w2(F.silu(gate) * up)
        return out


class Block(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.mlp = MLP(args)


class Transformer(nn.Module):
    """The language model. :meth:`forward` reads and writes a :class:`StaticKVCache`."""

    inv_freq: torch.Tensor

    def __init__(self, args: ModelArgs, hf_config: Any | None = None) -> None:
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = None if args.tie_embeddings else nn.Linear(args.dim, args.vocab_size, bias=False)
        inv_freq, self.rope_scale = rope_inv_freq(args, hf_config)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.rope_cos_SD: torch.Tensor | None = None
        self.rope_sin_SD: torch.Tensor | None = None

    def setup_rope(self, max_len: int) -> None:
        """Precompute cos/sin tables for positions ``[0, max_len)`` (fp32 maths, as transformers)."""
        inv = self.inv_freq.to(device=self.tok_embeddings.weight.device, dtype=torch.float32)
        pos = torch.arange(max_len, device=inv.device, dtype=torch.int64).float()
        freqs = pos[:, None] * inv[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        dtype = self.tok_embeddings.weight.dtype
        self.rope_cos_SD = (emb.cos() * self.rope_scale).to(dtype)
        self.rope_sin_SD = (emb.sin() * self.rope_scale).to(dtype)

    def forward(
        self,
        tokens_BT: torch.Tensor,
        pos_BT: torch.Tensor,
        cache: StaticKVCache,
        start: int,
        S: int,
        last_B: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``(B, T, V)``, or ``(B, V)`` at per-row index ``last_B`` when given.

        Rows are cache slots ``start .. start + B``; row ``b``'s token ``t`` sits at cache position
        ``pos_BT[b, t]`` and attends to positions ``<= pos_BT[b, t]`` among the first ``S``.
        """
        if self.rope_cos_SD is None or self.rope_sin_SD is None:
            raise RuntimeError("call setup_rope(max_len) before forward")
        if start + tokens_BT.shape[0] > cache.max_batch or cache.max_len < S:
            raise ValueError(
                f"rows {start}..{start + tokens_BT.shape[0]} x {S} positions do not fit the cache of "
                f"({cache.max_batch} rows, {cache.max_len} positions): allocate a larger cache"
            )
        x_BTE = self.tok_embeddings(tokens_BT)
        cos_BT1D = self.rope_cos_SD[pos_BT].unsqueeze(2)
        sin_BT1D = self.rope_sin_SD[pos_BT].unsqueeze(2)
        keys_S = torch.arange(S, device=pos_BT.device)
        mask_B1TS = (keys_S[None, None, :] <= pos_BT[:, :, None]).unsqueeze(1)
        for i, block in enumerate(cast(Sequence[Block], self.layers)):
            h = block.attention_norm(x_BTE)
            x_BTE = x_BTE + block.attention(h, cos_BT1D, sin_BT1D, pos_BT, mask_B1TS, cache, i, start)
            x_BTE = x_BTE + block.mlp(block.ffn_norm(x_BTE))
        if last_B is not None:
            x_BTE = x_BTE[torch.arange(x_BTE.shape[0], device=x_BTE.device), last_B][:, None]
        h_BTE = self.norm(x_BTE)
        w = self.tok_embeddings.weight if self.output is None else self.output.weight
        logits = F.linear(h_BTE, w)
        return logits[:, 0] if last_B is not None else logits

    def new_cache(self, max_batch: int, max_len: int) -> StaticKVCache:
        w = self.tok_embeddings.weight
        a = self.args
        return StaticKVCache(
            a.n_layers, max_batch, a.n_kv_heads, max_len, a.head_dim, dtype=w.dtype, device=w.device
        )

    # ---- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_hf_state_dict(
        cls,
        hf_config: Any,
        tensors: Mapping[str, torch.Tensor],
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> Transformer:
        """Build from a ``transformers`` config and a Hugging Face state dict (names ``model.*``)."""
        args = ModelArgs.from_hf_config(hf_config)
        with torch.device("meta"):
            model = cls(args, hf_config)
        sd = convert_hf_state_dict(args, tensors)
        missing = set(model.state_dict()) - set(sd)
        if missing:
            raise ValueError(
                f"the checkpoint lacks {len(missing)} tensors the model needs, e.g. {sorted(missing)[:3]}"
            )
        if dtype is not None:
            sd = {k: v.to(dtype) for k, v in sd.items()}
        sd = {k: v.to(device) for k, v in sd.items()}
        model.load_state_dict(sd, assign=True, strict=True)
        inv_freq, model.rope_scale = rope_inv_freq(args, hf_config)
        model.inv_freq = inv_freq.to(device)
        return model.eval().requires_grad_(False)

    @classmethod
    def from_hf_model(cls, hf_model: nn.Module) -> Transformer:
        """Build from a loaded ``transformers`` model, on its device and in its dtype.

        Unfused tensors (embeddings, norms, o/down projections) share storage with ``hf_model``; the
        fused q/k/v and gate/up weights are new tensors.
        """
        p = next(hf_model.parameters())
        return cls.from_hf_state_dict(hf_model.config, hf_model.state_dict(), device=p.device, dtype=p.dtype)


def convert_hf_state_dict(args: ModelArgs, hf: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and fuse) Hugging Face tensors into this module's state dict."""
    out: dict[str, torch.Tensor] = {}

    def get(name: str) -> torch.Tensor:
        if name not in hf:
            raise ValueError(f"the checkpoint has no tensor {name!r}; is it a {args.model_type} model?")
        return hf[name]

    out["tok_embeddings.weight"] = get("model.embed_tokens.weight")
    out["norm.weight"] = get("model.norm.weight")
    if not args.tie_embeddings:
        out["output.weight"] = get("lm_head.weight")
    for i in range(args.n_layers):
        p = f"model.layers.{i}."
        a = f"layers.{i}."
        out[a + "attention_norm.weight"] = get(p + "input_layernorm.weight")
        out[a + "ffn_norm.weight"] = get(p + "post_attention_layernorm.weight")
        qkv = [p + f"self_attn.{n}_proj." for n in "qkv"]
        out[a + "attention.wqkv.weight"] = torch.cat([get(n + "weight") for n in qkv])
        if args.qkv_bias:
            out[a + "attention.wqkv.bias"] = torch.cat([get(n + "bias") for n in qkv])
        if args.qk_norm:
            out[a + "attention.q_norm.weight"] = get(p + "self_attn.q_norm.weight")
            out[a + "attention.k_norm.weight"] = get(p + "self_attn.k_norm.weight")
        out[a + "attention.wo.weight"] = get(p + "self_attn.o_proj.weight")
        if args.o_bias:
            out[a + "attention.wo.bias"] = get(p + "self_attn.o_proj.bias")
        gu = [p + "mlp.gate_proj.", p + "mlp.up_proj."]
        out[a + "mlp.w13.weight"] = torch.cat([get(n + "weight") for n in gu])
        out[a + "mlp.w2.weight"] = get(p + "mlp.down_proj.weight")
        if args.mlp_bias:
            out[a + "mlp.w13.bias"] = torch.cat([get(n + "bias") for n in gu])
            out[a + "mlp.w2.bias"] = get(p + "mlp.down_proj.bias")
    return out


def weight_bytes(model: nn.Module, exclude_embedding: bool = True) -> int:
    """Bytes of the parameters a decode step reads (the input embedding is a gather, not a read)."""
    params: Iterable[tuple[str, torch.Tensor]] = model.named_parameters()
    tied = getattr(getattr(model, "args", None), "tie_embeddings", False)
    total = 0
    for name, p in params:
        if exclude_embedding and name == "tok_embeddings.weight" and not tied:
            continue
        total += p.numel() * p.element_size()
    return total


def load_safetensors_dir(path: Any, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of the ``*.safetensors`` files in a model directory."""
    from pathlib import Path

    from safetensors.torch import load_file

    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        from s1kit.errors import CheckpointError

        raise CheckpointError(f"{path} holds no *.safetensors files; save the model with safe_serialization")
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        tensors.update(load_file(str(f), device=str(device)))
    return tensors


__all__ = [
    "OTHER_ENGINES_HINT",
    "SUPPORTED_MODEL_TYPES",
    "ModelArgs",
    "Transformer",
    "convert_hf_state_dict",
    "load_safetensors_dir",
    "weight_bytes",
]
