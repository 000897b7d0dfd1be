"""Chunked linear cross-entropy equals the full-logits reference in value and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from s1kit.train.data import IGNORE_INDEX
from s1kit.train.loss import chunked_cross_entropy, token_weights


def _reference(h: torch.Tensor, w: torch.Tensor, tgt: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy((h @ w.t()).float(), tgt, ignore_index=IGNORE_INDEX, reduction="none")
    return (ce * wt).sum()


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
@pytest.mark.parametrize("reduction", ["token", "sample"])
def test_chunked_matches_full_logits(chunk: int, reduction: str) -> None:
    g = torch.Generator().manual_seed(chunk)
    T, H, V = 50, 16, 97
    h = torch.randn(T, H, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V, H, generator=g, dtype=torch.float64, requires_grad=True)
    tgt = torch.randint(0, V, (T,), generator=g)
    tgt[torch.rand(T, generator=g) < 0.3] = IGNORE_INDEX
    sample_ids = torch.arange(T) // 10
    sample_targets = torch.bincount(sample_ids[tgt != IGNORE_INDEX], minlength=5)
    wt = token_weights(tgt, sample_ids, reduction, int((tgt != IGNORE_INDEX).sum()), sample_targets, 5)
    wt = wt.double()
    assert float(wt.sum()) == pytest.approx(1.0)

    loss = chunked_cross_entropy(h, w, tgt, wt, chunk)
    gh, gw = torch.autograd.grad(2.5 * loss, (h, w))
    ref = _reference(h, w, tgt, wt)
    rh, rw = torch.autograd.grad(2.5 * ref, (h, w))
    # the chunks compute logits in fp32 (the dtype the loss is specified in), hence fp32 tolerances
    torch.testing.assert_close(loss.double(), ref.double(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gh, rh, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, rw, rtol=1e-5, atol=1e-6)


def test_per_sample_mean_weights_each_sample_equally() -> None:
    tgt = torch.tensor([IGNORE_INDEX, 3, 4, IGNORE_INDEX, 5, 6, 7, 8])
    sid = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    w = token_weights(tgt, sid, "sample", 6, torch.tensor([2, 4]), 2)
    assert w.tolist() == pytest.approx([0, 0.25, 0.25, 0, 0.125, 0.125, 0.125, 0.125])
    w_tok = token_weights(tgt, sid, "token", 6)
    assert w_tok.tolist() == pytest.approx([0] + [1 / 6] * 2 + [0] + [1 / 6] * 4)


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="do not match"):
        chunked_cross_entropy(torch.zeros(4, 3), torch.zeros(5, 2), torch.zeros(4).long(), torch.zeros(4))
    with pytest.raises(ValueError, match="reduction"):
        token_weights(torch.zeros(2).long(), torch.zeros(2).long(), "mean", 1)
