"""The transformers adapter yields the core's token sequences (same sampled stream; see serving_sim)."""

from __future__ import annotations

import torch

from s1kit.budget.adapters.hf import HFBudgetForcing
from tests.unit.serving_sim import direct_sequences, draw, finished, model_logits, prompt, specs


def test_hf_processor_matches_the_core_driven_directly() -> None:
    kinds = [0, 1, 2, 3, 0, 2]  # every budgeted kind; transformers rows all use the processor
    spec_list = [specs()[k] for k in kinds]
    bf = HFBudgetForcing(spec_list)  # type: ignore[arg-type]
    b = len(kinds)
    ids = torch.tensor([prompt(r) for r in range(b)])
    outputs: list[list[int]] = [[] for _ in range(b)]
    while not all(finished(o) for o in outputs):
        k = ids.shape[1] - 3
        scores = torch.stack([model_logits(r, k) for r in range(b)])
        scores = bf.processor(ids, scores)
        nxt = [draw(scores[r], r, k) for r in range(b)]
        for r in range(b):
            if not finished(outputs[r]):
                outputs[r].append(nxt[r])
        ids = torch.cat([ids, torch.tensor(nxt)[:, None]], 1)
    want, _ = direct_sequences(kinds)
    assert outputs == want
