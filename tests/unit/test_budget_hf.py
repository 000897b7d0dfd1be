"""One ``model.generate`` call does s1 budget forcing, on a real tiny Qwen2 and a trained tokenizer."""

from __future__ import annotations

from collections import Counter

import torch

from s1kit.budget import BudgetSpec, Phase
from s1kit.budget.adapters.hf import HFBudgetForcing
from tests.tiny import tiny_qwen2, tiny_tokenizer

PROMPTS = ["Count the letters in strawberry.", "Sort 5 2 9 1."]


def encode(tok, prompts):  # type: ignore[no-untyped-def]
    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        + "<|im_start|>think\n"
        for p in prompts
    ]
    tok.padding_side = "left"
    return tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def generate(model, tok, enc, bf, n):  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return model.generate(
            **enc,
            max_new_tokens=n,
            do_sample=False,
            logits_processor=[bf.processor],
            stopping_criteria=[bf.stopping],
            pad_token_id=tok.pad_token_id,
        )[:, enc["input_ids"].shape[1] :]


def test_thinking_is_cut_exactly_at_the_cap_and_the_answer_follows_final_answer() -> None:
    tok = tiny_tokenizer()
    model = tiny_qwen2(len(tok), seed=1)
    cap = 12
    spec = BudgetSpec.from_tokenizer(tok, style="s1", max_thinking_tokens=cap, max_answer_tokens=20)
    enc = encode(tok, PROMPTS)
    bf = HFBudgetForcing(spec, pad_token_id=tok.pad_token_id)
    out = generate(model, tok, enc, bf, 60)
    acc = bf.accounting()
    prefix = list(spec.answer_prefix)
    for i in range(len(PROMPTS)):
        ids = out[i].tolist()
        if bool(acc.capped[i]):
            assert acc.thinking_tokens[i] == cap
            assert ids[cap : cap + len(prefix)] == prefix
            assert tok.decode(ids[cap : cap + len(prefix)]).endswith("Final Answer:")
        else:  # the model closed thinking itself before the cap
            assert acc.thinking_tokens[i] < cap
    assert acc.capped.any(), "the tiny model should run into the cap for at least one prompt"
    assert acc.phase.tolist() == [Phase.DONE] * len(PROMPTS)


def test_wait_is_forced_exactly_n_times_then_the_end_is_accepted() -> None:
    tok = tiny_tokenizer()
    model = tiny_qwen2(len(tok), seed=1)
    enc = encode(tok, PROMPTS[:1])
    # Make the model "try to stop": the delimiter is the token it emits most under greedy decoding.
    free = HFBudgetForcing(BudgetSpec.from_tokenizer(tok, style="s1"), pad_token_id=tok.pad_token_id)
    first = generate(model, tok, enc, free, 40)[0].tolist()
    end_id = Counter(first).most_common(1)[0][0]
    wait = BudgetSpec.from_tokenizer(tok, num_extensions=1).extensions[0]
    n = 3
    spec = BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=n, max_answer_tokens=5).replace(
        think_end=((end_id,),)
    )
    bf = HFBudgetForcing(spec, pad_token_id=tok.pad_token_id)
    ids = generate(model, tok, enc, bf, 200)[0].tolist()
    acc = bf.accounting()
    assert acc.extensions_used[0] == n
    assert acc.forced_tokens[0] == n * len(wait)
    # Each suppressed end became the whole "Wait"; the (n+1)-th end was accepted.
    end_pos = ids.index(end_id)
    thinking = ids[: end_pos + 1]
    assert sum(thinking[i : i + len(wait)] == list(wait) for i in range(len(thinking))) >= n
    assert acc.thinking_tokens[0] == end_pos + 1
    assert acc.phase[0] == Phase.DONE and acc.answer_tokens[0] == 5


def test_raw_logits_are_left_alone_and_only_forced_steps_change_the_scores() -> None:
    """transformers keeps the unprocessed logits for ``output_logits``: the processor must edit a copy
    where it edits (forced steps; the EOS ban in thinking) and may return the scores untouched (no
    copy) on the others."""
    tok = tiny_tokenizer()
    model = tiny_qwen2(len(tok), seed=1)
    cap = 12
    spec = BudgetSpec.from_tokenizer(tok, style="s1", max_thinking_tokens=cap, max_answer_tokens=20)
    enc = encode(tok, PROMPTS[:1])
    bf = HFBudgetForcing(spec, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        out = model.generate(
            **enc,
            max_new_tokens=40,
            do_sample=False,
            logits_processor=[bf.processor],
            stopping_criteria=[bf.stopping],
            pad_token_id=tok.pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,
            output_scores=True,
        )
    acc = bf.accounting()
    assert bool(acc.capped[0])
    n_forced = int(acc.forced_tokens[0])  # the answer prefix, less what the model already wrote
    for step, (raw, processed) in enumerate(zip(out.logits, out.scores, strict=True)):
        assert torch.isfinite(raw).all(), f"step {step}: the raw logits were edited in place"
        if step < cap:
            # Thinking: an EOS would be replaced by the answer prefix, so it is banned and its logit
            # moves onto the prefix's next token (if higher); nothing else changes.
            changed = (raw != processed).nonzero()[:, 1].tolist()
            assert processed[0, tok.eos_token_id] == float("-inf"), step
            assert tok.eos_token_id in changed and len(changed) <= 2, step
        else:
            forced = step < cap + n_forced
            assert torch.equal(raw, processed) != forced, step
