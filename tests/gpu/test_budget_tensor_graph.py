"""The tensor budget step captured in a CUDA graph: replay equals eager equals the Rust core (needs CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s1kit.budget import BudgetBatch, BudgetSpec
from s1kit.budget.tensor import TensorBudget
from tests.unit.test_budget_tensor import S1_SPEC

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

B = 16


def batch() -> BudgetBatch:
    spec = BudgetSpec(**S1_SPEC)
    other = spec.replace(max_thinking_tokens=None, num_extensions=1, grace_tokens=0, answer_stop=())
    b = BudgetBatch(B)
    for slot in range(B - 1):  # the last slot stays empty
        b.insert(slot, spec if slot % 2 else other)
        b.process_prompt(slot, [151_644, 26865])
    return b


def samples(steps: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    s = rng.integers(0, 1_000, (steps, B))
    plant = rng.random((steps, B))
    s[plant < 0.06] = 151_644
    s[(plant > 0.06) & (plant < 0.09)] = 9217
    s[(plant > 0.09) & (plant < 0.11)] = 151_645
    s[(plant > 0.11) & (plant < 0.15)] = 198
    return s


def capture(tb: TensorBudget, tokens_B: torch.Tensor) -> torch.cuda.CUDAGraph:
    """Warm up on a side stream (restoring every buffer the step writes), then capture one step."""
    saved = [x.clone() for x in (tb.state_FB, tb.override_B, tb.done_B, tb.ring_RB, tb.count_1, tokens_B)]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            tb.step(tokens_B)
            for dst, src in zip(
                (tb.state_FB, tb.override_B, tb.done_B, tb.ring_RB, tb.count_1, tokens_B), saved, strict=True
            ):
                dst.copy_(src)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        tb.step(tokens_B)
    return graph


@pytest.mark.parametrize("compile", [False, True])
def test_graph_replay_equals_eager_and_rust(compile: bool) -> None:
    ref, mirror = batch(), batch()
    graphed = TensorBudget.from_batch(mirror, "cuda", ring=8, compile=compile)
    eager = TensorBudget.from_batch(mirror, "cuda", ring=8)
    static_B = torch.zeros(B, dtype=torch.int64, device="cuda")
    graph = capture(graphed, static_B)
    out = np.zeros(B, np.int32)
    count = 0
    for step, s in enumerate(samples(160)):
        ref.step(s, out)
        static_B.copy_(torch.from_numpy(s))
        graph.replay()
        tokens = torch.from_numpy(s).cuda()
        eager.step(tokens)
        assert torch.equal(static_B, tokens)
        assert torch.equal(graphed.state_FB, eager.state_FB)
        assert graphed.override_B.cpu().tolist() == out.tolist()
        if step % 8 == 7:
            snap = graphed.copy_out().result()
            assert snap.count == step + 1
            assert snap.tokens_since(count).shape == (8, B)
            count = snap.count
    graphed.sync_to(mirror)
    for name, want in ref.export_state().items():
        assert mirror.export_state()[name].tolist() == want.tolist(), name
    assert ref.accounting().capped.any()
