"""The transformers adapter yields the core's token sequences (same sampled stream; see serving_sim)."""

from __future__ import annotations

import torch

from s1kit.budget import BudgetSpec, Phase
from s1kit.budget.adapters.hf import HFBudgetForcing
from tests.unit.serving_sim import EOS, V, direct_sequences, draw, finished, model_logits, prompt, specs


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


def test_pad_tokens_after_a_row_finished_are_not_fed_to_the_core() -> None:
    """transformers appends pad tokens to a row it finished (here: the generation's EOS, which the
    spec does not list) while other rows run on; they must not count as that row's answer tokens."""
    spec = BudgetSpec(vocab_size=V, think_end=((22,),), max_answer_tokens=3)
    pad = 0
    bf = HFBudgetForcing(spec, pad_token_id=pad, eos_token_id=EOS)
    ids = torch.tensor([prompt(0), prompt(1)])
    columns = [(22, 10), (EOS, 11), (pad, 12), (pad, 13), (pad, 14)]
    for a, b in columns:
        scores = torch.zeros(2, V)
        bf.processor(ids, scores)
        ids = torch.cat([ids, torch.tensor([[a], [b]])], 1)
        bf.stopping(ids, scores)
    acc = bf.accounting()
    assert (int(acc.phase[0]), int(acc.answer_tokens[0])) == (Phase.ANSWER, 1)
    assert int(acc.thinking_tokens[1]) == 5
