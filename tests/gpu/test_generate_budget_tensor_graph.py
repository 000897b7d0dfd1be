"""On CUDA (graphs on), the in-graph budget path and the host path give identical outputs (needs CUDA)."""

from __future__ import annotations

import pytest
import torch

from s1kit.generate import Engine
from tests.unit.test_generate_budget_tensor import requests, setup  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_graph_budget_equals_host_budget(setup):  # noqa: F811 (fixture)
    tok, hf, prompts = setup
    reqs = requests(tok, prompts)
    engine = Engine(hf, tok, device="cuda", max_batch=8, max_len=256)
    assert engine.tensor_budget and engine.step.cuda_graphs  # auto on CUDA: in the graph
    graph = engine.generate(reqs)
    engine.budget_path = "host"
    host = engine.generate(reqs)
    assert engine.step.n_graphs > 1
    for g, h in zip(graph, host, strict=True):
        for f in ("token_ids", "finish_reason", "thinking_tokens", "answer_tokens", "forced_tokens"):
            assert getattr(g, f) == getattr(h, f), f"request {h.request_id}: {f}"
        assert (g.extensions_used, g.capped) == (h.extensions_used, h.capped)
    assert sum(r.extensions_used for r in host) >= 5 and any(r.capped for r in host)
