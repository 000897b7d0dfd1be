"""s1kit on a real pretrained checkpoint (SmolLM2-135M-Instruct, Llama architecture; see smollm2.py).

Greedy parity of the engine with ``transformers`` on four chat prompts (logits at the prompt within
5e-5, tokens equal, batched == one by one), budget forcing exactly where asked (the cap at token 32,
"Wait" exactly where the unforced run emitted EOS), and a tiny ``s1kit train`` + export + reload.
Run with ``make test-real``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from s1kit.budget.delimiters import Delimiters, choose_delimiters
from s1kit.generate import Engine, Request, SamplingParams

pytestmark = pytest.mark.real

QUESTIONS = [
    "What is 2+2?",
    "Name the capital of France.",
    "Write a haiku about the sea.",
    "Explain why the sky is blue in one sentence.",
]
MAX_NEW = 40


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def hf(smollm2_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def engine(smollm2_dir: Path) -> Engine:
    return Engine.from_pretrained(smollm2_dir, max_batch=4, max_len=512)


@pytest.fixture(scope="module")
def delimiters(engine: Engine) -> Delimiters:
    """SmolLM2 was not trained to think: its whole reply is the thinking span (no think start), which
    a think end it never emits (and its prompts never hold) leaves open until its EOS (<|im_end|>)."""
    return choose_delimiters(engine.tokenizer, think_end=["<|endoftext|>"], answer_prefix="\nFinal Answer:")


def _prompt(tok: Any, question: str) -> list[int]:
    text = tok.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    return list(tok.encode(text, add_special_tokens=False))


def test_detection_on_a_real_chatml_tokenizer(engine: Engine, delimiters: Delimiters) -> None:
    assert choose_delimiters(engine.tokenizer).style == "s1"  # <|im_start|>, no <think> tokens
    assert delimiters.style == "custom" and delimiters.opener() == ""


def test_greedy_parity_with_transformers(hf: Any, engine: Engine) -> None:
    tok = engine.tokenizer
    prompts = [_prompt(tok, q) for q in QUESTIONS]
    model = engine.model
    for ids in prompts:
        x = torch.tensor([ids])
        cache = model.new_cache(1, len(ids))
        with torch.no_grad():
            ref = hf(x).logits[0]
            got = model(x, torch.arange(len(ids))[None], cache, 0, len(ids))[0]
        torch.testing.assert_close(got, ref, rtol=0, atol=5e-5)
    want = []
    for ids in prompts:  # transformers one prompt at a time: no padding in the reference
        with torch.no_grad():
            out = hf.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW, do_sample=False)
        row = out[0, len(ids) :].tolist()
        want.append(row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row)
    reqs = [Request(p, SamplingParams(max_new_tokens=MAX_NEW)) for p in prompts]
    batched = engine.generate(reqs)
    assert [r.token_ids for r in batched] == want
    assert [engine.generate([r])[0].token_ids for r in reqs] == want
    assert sum(r.finish_reason == "eos" for r in batched) >= 2  # short answers end on their own


def test_cap_lands_at_token_32(engine: Engine, delimiters: Delimiters) -> None:
    tok = engine.tokenizer
    prompt = _prompt(tok, QUESTIONS[3])
    (free,) = engine.generate([Request(prompt, SamplingParams(max_new_tokens=48))])
    assert len(free.token_ids) > 32 and tok.eos_token_id not in free.token_ids[:33]
    spec = delimiters.spec(tok, max_thinking_tokens=32, max_answer_tokens=8)
    (capped,) = engine.generate([Request(prompt, SamplingParams(max_new_tokens=64), spec)])
    prefix = list(spec.answer_prefix)
    assert capped.capped and capped.thinking_tokens == 32
    assert capped.token_ids[:32] == free.token_ids[:32]
    assert capped.token_ids[32 : 32 + len(prefix)] == prefix
    assert "\nFinal Answer:" in capped.text


def test_wait_lands_where_the_unforced_run_emitted_eos(engine: Engine, delimiters: Delimiters) -> None:
    tok = engine.tokenizer
    prompt = _prompt(tok, QUESTIONS[0])
    (free,) = engine.generate([Request(prompt, SamplingParams(max_new_tokens=48))])
    assert free.finish_reason == "eos"
    k = len(free.token_ids) - 1  # where the EOS was
    spec = delimiters.spec(tok, num_extensions=1, max_answer_tokens=8)
    (r,) = engine.generate([Request(prompt, SamplingParams(max_new_tokens=k + 24), spec)])
    wait = list(spec.extensions[0])
    assert r.extensions_used == 1
    assert r.token_ids[:k] == free.token_ids[:k]
    assert r.token_ids[k : k + len(wait)] == wait
    assert tok.eos_token_id not in r.token_ids[:k]


def test_tiny_train_export_reload(smollm2_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from s1kit.train.config import TrainConfig
    from s1kit.train.trainer import train
    from tests.train_tiny import make_rows, write_jsonl

    cfg = TrainConfig(
        model=str(smollm2_dir),
        data=str(write_jsonl(tmp_path / "data.jsonl", make_rows(2, seed=1, max_words=12))),
        output_dir=str(tmp_path / "run"),
        block_size=192,
        global_batch_size=2,
        epochs=1,
        lr=1e-5,
        dtype="fp32",
        progress=False,
        tensorboard=False,
    )
    result = train(cfg)
    assert result.steps == 1 and all(0.0 < loss < 20.0 for loss in result.losses)
    assert result.export_dir is not None and result.model is not None
    reloaded = AutoModelForCausalLM.from_pretrained(result.export_dir, dtype=torch.float32).eval()
    assert reloaded.config.use_cache is True
    ids = torch.tensor([_prompt(reloaded_tok(result.export_dir), QUESTIONS[0])])
    with torch.no_grad():
        trained = result.model.lm(input_ids=ids).logits
        torch.testing.assert_close(reloaded(input_ids=ids).logits, trained, rtol=1e-4, atol=1e-4)
    eng = Engine.from_pretrained(result.export_dir, max_batch=1, max_len=128)
    (r,) = eng.generate([Request(ids[0].tolist(), SamplingParams(max_new_tokens=4))])
    assert len(r.token_ids) >= 1


def reloaded_tok(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)
