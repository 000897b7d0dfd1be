"""CUDA-graph decode: replay equals eager, and the fixed shapes are enforced (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch
from tests.unit.tiny_lm import tiny_hf_model, tiny_tokenizer

from s1kit.budget import BudgetSpec
from s1kit.generate import Engine, Request, SamplingParams
from s1kit.generate.sampling import SamplingMode

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

QUESTIONS = ["What is two and three?", "Hmm", "x", "Check each case, if x is even", "seven times six"] * 3


@pytest.fixture(scope="module")
def setup():
    tok = tiny_tokenizer()
    hf = tiny_hf_model("qwen2", tok, seed=3).to("cuda")
    prompts = [
        tok.encode(f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n<|im_start|>think\n")
        for q in QUESTIONS
    ]
    return tok, hf, prompts


def requests(tok, prompts):
    spec = BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=2, max_thinking_tokens=60)
    out = []
    for i, p in enumerate(prompts):
        sp = (
            SamplingParams(max_new_tokens=150 + 10 * i)
            if i % 3 == 0
            else SamplingParams(
                temperature=0.8, top_p=0.95 if i % 3 == 1 else 1.0, seed=i, max_new_tokens=200
            )
        )
        out.append(Request(p, sp, budget=spec if i % 2 else None, request_id=f"r{i}"))
    return out


def test_graph_replay_equals_eager(setup):
    tok, hf, prompts = setup
    reqs = requests(tok, prompts)
    graphs = Engine(hf, tok, device="cuda", max_batch=8, max_len=512, cuda_graphs=True)
    eager = Engine(hf, tok, device="cuda", max_batch=8, max_len=512, cuda_graphs=False)
    got = graphs.generate(reqs)
    want = eager.generate(reqs)
    assert graphs.step.n_graphs >= 3  # several batch buckets and sampling modes were captured
    assert eager.step.n_graphs == 0
    assert sum(len(r.token_ids) for r in got) > 1000
    for g, w in zip(got, want, strict=True):
        assert g.token_ids == w.token_ids
        assert (g.thinking_tokens, g.forced_tokens, g.extensions_used) == (
            w.thinking_tokens,
            w.forced_tokens,
            w.extensions_used,
        )
    # Replaying the captured graphs again gives the same tokens (no state leaks between calls).
    assert [r.token_ids for r in graphs.generate(reqs)] == [r.token_ids for r in got]


def test_greedy_on_cuda_matches_transformers(setup):
    tok, hf, prompts = setup
    eng = Engine(hf, tok, device="cuda", max_batch=4, max_len=256)
    for p in prompts[:3]:
        ref = hf.generate(
            torch.tensor([p], device="cuda"), max_new_tokens=40, do_sample=False, pad_token_id=0
        )
        want = ref[0, len(p) :].tolist()
        if tok.eos_token_id in want:
            want = want[: want.index(tok.eos_token_id) + 1]
        assert eng.generate([Request(p, SamplingParams(max_new_tokens=40))])[0].token_ids == want


def test_a_changed_shape_is_a_clear_error(setup):
    tok, hf, prompts = setup
    eng = Engine(hf, tok, device="cuda", max_batch=8, max_len=256)
    eng.generate([Request(prompts[0], SamplingParams(max_new_tokens=4))])
    with pytest.raises(ValueError, match="batch size 3 is not one of the captured buckets"):
        eng.step.run(3, 64, SamplingMode.GREEDY)
    with pytest.raises(ValueError, match="batch size 16 exceeds max_batch=8"):
        eng.step.run(16, 64, SamplingMode.GREEDY)
    with pytest.raises(ValueError, match="attention length 100"):
        eng.step.run(8, 100, SamplingMode.GREEDY)
