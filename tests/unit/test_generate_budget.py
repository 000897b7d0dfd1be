"""Budget forcing inside the decode loop equals the per-token reference and the re-prompting baseline."""

from __future__ import annotations

import pytest
import torch

from bench.reprompt import reprompt_generate
from s1kit.budget import BudgetSpec
from s1kit.generate import Engine, Request, SamplingParams
from tests.unit.budget_reference import DONE, ERROR, RefRow, RefSpec
from tests.unit.tiny_lm import THINKING_QUESTIONS, s1_prompt, thinking_model, tiny_tokenizer

QUESTIONS = THINKING_QUESTIONS[:5]
MAX_NEW = 60


def tags_prompt(tok, q):
    return tok.encode(f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n<think>\n")


@pytest.fixture(scope="module")
def setup():
    """A tiny Llama that ends its thinking now and then: the end delimiter takes over the output row of
    the token it emits most, so greedy decoding hits it at prompt-dependent points."""
    tok = tiny_tokenizer()
    hf, _, _ = thinking_model("llama", tok, 7, QUESTIONS, MAX_NEW)
    return tok, hf


SPECS = {
    "extensions": dict(style="s1", num_extensions=3),
    "cap": dict(style="s1", max_thinking_tokens=5),
    "min_and_cap": dict(style="s1", min_thinking_tokens=20, num_extensions=1, max_thinking_tokens=40),
    "tags": dict(style="think_tags", num_extensions=2, max_thinking_tokens=45),
}


def make(tok, name):
    kw = dict(SPECS[name])
    spec = BudgetSpec.from_tokenizer(tok, **kw)
    mk = tags_prompt if kw["style"] == "think_tags" else s1_prompt
    return spec, [mk(tok, q) for q in QUESTIONS]


def reference(hf, prompt, spec):
    """The pure-Python budget reference driving the transformers model one token at a time."""
    ref = RefRow(
        RefSpec(
            vocab_size=spec.vocab_size,
            think_end=[list(s) for s in spec.think_end],
            think_start=[list(s) for s in spec.think_start],
            eos=list(spec.eos),
            answer_prefix=list(spec.answer_prefix),
            extensions=[list(s) for s in spec.extensions],
            max_thinking_tokens=spec.max_thinking_tokens,
            min_thinking_tokens=spec.min_thinking_tokens,
            num_extensions=spec.num_extensions,
        )
    )
    ref.process_prompt(list(prompt))
    ids = list(prompt)
    out: list[int] = []
    with torch.no_grad():
        while len(out) < MAX_NEW:
            sampled = int(hf(torch.tensor([ids])).logits[0, -1].argmax())
            forced = ref.step(sampled)
            t = forced if forced >= 0 else sampled
            out.append(t)
            ids.append(t)
            if ref.s.phase in (DONE, ERROR) or t in spec.eos:
                break
    return out, ref.counters()


@pytest.mark.parametrize("name", list(SPECS))
def test_inloop_equals_reference_and_reprompting(setup, name):
    tok, hf = setup
    spec, prompts = make(tok, name)
    eng = Engine(hf, tok, max_batch=8, max_len=256)
    got = eng.generate([Request(p, SamplingParams(max_new_tokens=MAX_NEW), budget=spec) for p in prompts])
    base, stats = reprompt_generate(eng, prompts, spec, MAX_NEW)
    for p, r, b in zip(prompts, got, base, strict=True):
        want, (_, thinking, answer, forced, ext, capped, _) = reference(hf, p, spec)
        assert r.token_ids == want
        assert (r.thinking_tokens, r.answer_tokens, r.forced_tokens, r.extensions_used, r.capped) == (
            thinking,
            answer,
            forced,
            ext,
            capped,
        )
        assert b.token_ids == r.token_ids
        assert (b.thinking_tokens, b.answer_tokens, b.forced_tokens, b.extensions_used, b.capped) == (
            thinking,
            answer,
            forced,
            ext,
            capped,
        )
    # The cases must exercise what they are named after.
    if SPECS[name].get("num_extensions"):
        assert sum(r.extensions_used for r in got) >= len(prompts)
        assert stats.rounds > 1
        # Every round re-sends the whole prefix; in the loop each prompt is prefilled once.
        assert stats.prefilled_tokens > sum(len(p) for p in prompts)
    if SPECS[name].get("max_thinking_tokens"):
        assert any(r.capped for r in got)
    assert sum(r.forced_tokens > 0 for r in got) >= 3


def test_forced_tokens_are_fed_back_without_prefill(setup):
    """A forced "Wait" is the next input token: the row's tokens after it are what the model says
    after the forced text, and the prompt is prefilled once (one prefill per request)."""
    tok, hf = setup
    spec, prompts = make(tok, "extensions")
    eng = Engine(hf, tok, max_batch=8, max_len=256)
    prefills = []
    real = eng.model.forward

    def counting_forward(tokens_BT, *a, **k):
        if tokens_BT.shape[1] > 1:
            prefills.append(tokens_BT.shape[0])
        return real(tokens_BT, *a, **k)

    eng.model.forward = counting_forward  # type: ignore[method-assign]
    res = eng.generate([Request(p, SamplingParams(max_new_tokens=MAX_NEW), budget=spec) for p in prompts])
    assert sum(prefills) == len(prompts)
    assert all(r.extensions_used == 3 for r in res)
    wait = list(spec.extensions[0])
    for r in res:
        text_ids = r.token_ids
        assert any(text_ids[i : i + len(wait)] == wait for i in range(len(text_ids)))
