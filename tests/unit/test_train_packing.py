"""Packing: bins respect the block and balance ranks; a packed block gives the same loss and gradients as
the same samples unpacked (padded rows), with our varlen attention and with transformers' SDPA path."""

from __future__ import annotations

import random

import pytest
import torch

from s1kit.train.config import TrainConfig
from s1kit.train.data import build_examples
from s1kit.train.loss import token_weights
from s1kit.train.model import CausalLMWithLoss
from s1kit.train.packing import (
    assign_to_ranks,
    collate_packed,
    collate_padded,
    pack_bins,
    plan_packed_step,
    plan_padded_step,
    resolve_attention,
)
from tests.train_tiny import make_model, make_rows, make_tokenizer


@pytest.mark.parametrize("seed", range(5))
def test_bins_fit_cover_and_balance(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(1, 100) for _ in range(rng.randint(1, 40))]
    for world in (1, 2, 3):
        plan = plan_packed_step(lengths, 128, world)
        assert len(plan) == world
        assert len({len(r) for r in plan}) == 1, "every rank runs the same number of blocks"
        flat = sorted(i for r in plan for blk in r for i in blk)
        assert flat == list(range(len(lengths)))
        for r in plan:
            for blk in r:
                assert sum(lengths[i] for i in blk) <= 128
        loads = [sum(lengths[i] for blk in r for i in blk) for r in plan]
        assert max(loads) - min(loads) <= max(lengths)


def test_pack_bins_rejects_oversize_and_assign_is_even() -> None:
    with pytest.raises(ValueError, match="longer than block_size"):
        pack_bins([10, 200], 128, 1)
    ranks = assign_to_ranks([50, 40, 30, 20, 10, 5], 2)
    assert sorted(sum(([50, 40, 30, 20, 10, 5][b] for b in r), 0) for r in ranks) == [75, 80]
    assert all(len(r) == 3 for r in ranks)


def test_empty_block_is_one_ignored_token() -> None:
    plan = plan_packed_step([30], 128, 2)
    assert sorted(len(r[0]) for r in plan) == [0, 1]
    mb = collate_packed([], [])
    assert mb.input_ids_BS.shape == (1, 1) and int(mb.targets_BS[0, 0]) == -100 and mb.num_tokens == 0


def test_padded_plan_fills_short_steps_with_empty_rows() -> None:
    plan = plan_padded_step([5, 9, 1], micro_batch_size=2, world_size=2, global_batch_size=4)
    assert [len(r) for r in plan] == [1, 1]
    rows = [x for r in plan for mb in r for x in mb]
    assert sorted(x for x in rows if x is not None) == [0, 1, 2] and rows.count(None) == 1


@pytest.mark.parametrize("attention", ["varlen", "sdpa"])
def test_packed_equals_unpacked_loss_and_grads(attention: str) -> None:
    tok = make_tokenizer()
    cfg = TrainConfig(model="m", data="d", block_size=512)
    examples, _ = build_examples(tok, make_rows(5, seed=11), cfg)
    ids = list(range(len(examples)))
    lm = make_model(len(tok), seed=1)
    lm.config._attn_implementation = resolve_attention(attention)
    model = CausalLMWithLoss(lm, chunk_size=33).double()
    n_targets = sum(e.num_targets for e in examples)
    sample_targets = torch.tensor([e.num_targets for e in examples])

    def loss_and_grads(mbs: list, reduction: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        total = torch.zeros((), dtype=torch.float64)
        for mb in mbs:
            w = token_weights(mb.targets_BS, mb.sample_ids_BS, reduction, n_targets, sample_targets, 5)
            loss = model(mb, w.double())
            loss.backward()
            total = total + loss.detach()
        return total, [p.grad.clone() for p in model.parameters()]

    for reduction in ("token", "sample"):
        packed = [collate_packed([examples[i] for i in ids], ids)]
        assert packed[0].position_ids_BS[0, len(examples[0])] == 0, "positions restart per sample"
        unpacked = [
            collate_padded([examples[0], examples[1]], [0, 1], pad_id=0),
            collate_padded([examples[2], examples[3], examples[4]], [2, 3, 4], pad_id=0),
        ]
        lp, gp = loss_and_grads(packed, reduction)
        lu, gu = loss_and_grads(unpacked, reduction)
        # fp64 model; the loss itself accumulates in fp32, which sets the tolerance
        torch.testing.assert_close(lp, lu, rtol=1e-6, atol=0)
        for a, b in zip(gp, gu, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)
        # and a sample alone gives the same contribution: attention does not cross the boundary
        solo, _ = loss_and_grads([collate_packed([examples[0]], [0])], reduction)
        first, _ = loss_and_grads([collate_padded([examples[0]], [0], pad_id=0)], reduction)
        torch.testing.assert_close(solo, first, rtol=1e-6, atol=0)
        assert float(lp) > float(solo)


def test_packing_without_boundaries_would_differ() -> None:
    """Guard that the equality above is not vacuous: plain causal attention over the same packed row
    (no restart, no cu_seqlens) gives a different loss."""
    tok = make_tokenizer()
    cfg = TrainConfig(model="m", data="d", block_size=512)
    examples, _ = build_examples(tok, make_rows(3, seed=11), cfg)
    lm = make_model(len(tok), seed=1)
    lm.config._attn_implementation = resolve_attention("varlen")
    model = CausalLMWithLoss(lm).double()
    mb = collate_packed(examples, [0, 1, 2])
    w = token_weights(mb.targets_BS, mb.sample_ids_BS, "token", sum(e.num_targets for e in examples))
    with torch.no_grad():
        good = model(mb, w.double())
        mb.cu_seqlens_N1 = None
        mb.position_ids_BS = torch.arange(mb.num_tokens).unsqueeze(0)
        leaky = model(mb, w.double())
    assert abs(float(good) - float(leaky)) > 1e-4
