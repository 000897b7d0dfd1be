"""On CUDA: the varlen kernel path of the packed attention equals one causal SDPA per sample (bf16, with
and without grouped-query heads). Skipped without CUDA; not run in the session that wrote it (no GPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from s1kit.train.packing import varlen_attention_forward

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)


@pytest.mark.parametrize(("heads", "kv_heads"), [(8, 8), (12, 2)])
def test_varlen_kernel_matches_per_sample_sdpa(heads: int, kv_heads: int) -> None:
    torch.manual_seed(0)
    lengths = [1, 17, 300, 64, 1024]
    S, D = sum(lengths), 128
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    q = torch.randn(1, heads, S, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, kv_heads, S, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, kv_heads, S, D, device="cuda", dtype=torch.bfloat16)
    mod = torch.nn.Module()
    out, _ = varlen_attention_forward(
        mod, q, k, v, None, scaling=D**-0.5, cu_seq_lens_q=cu, max_length_q=1024
    )
    ref = []
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
        ref.append(
            F.scaled_dot_product_attention(
                q[:, :, s:e].float(),
                k[:, :, s:e].float(),
                v[:, :, s:e].float(),
                is_causal=True,
                scale=D**-0.5,
                enable_gqa=heads != kv_heads,
            )
        )
    want = torch.cat(ref, dim=2).transpose(1, 2)
    torch.testing.assert_close(out.float(), want, rtol=2e-2, atol=2e-2)
