"""``--engine vllm`` (s1kit.backends.vllm) end to end on CPU against s1kit's own engine.

Runs where vLLM's engine starts on CPU (``make test-engines``: the vllm-cpu venv); skips elsewhere.
Both engines load the same saved tiny Qwen2 model and run the same greedy requests (cap, two "Wait"
extensions, an answer cap, truncation by ``max_new_tokens``, a request without a budget); the
results must agree field for field: token ids, text, finish reason and the accounting.

Greedy decoding is only comparable across engines if float differences cannot flip an argmax, so the
model is a *chain*: its residual stream is dominated by the current token's embedding (one large
coordinate per token) and its output head maps that coordinate to one next token with a margin of
~1000 logits. So its greedy continuation is a fixed function of the last token, the same in both
engines; the function sends some tokens to the s1 end-of-thinking token and some to EOS, so rows
try to end early, get extended, hit the cap and finish. It never writes an extension's or the answer
prefix's tokens itself (those only appear when forced), which keeps the accounting the ids imply
unambiguous (s1kit.backends.replay).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from s1kit.backends import EngineOptions, load_backend
from s1kit.budget import BudgetSpec
from s1kit.generate.types import Request, SamplingParams
from tests.engines.test_vllm_e2e import vllm_engine_here
from tests.unit.tiny_lm import s1_prompt, tiny_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore")  # vLLM's own deprecation warnings

FIELDS = ("token_ids", "text", "finish_reason", "thinking_tokens", "answer_tokens", "forced_tokens")
FIELDS += ("extensions_used", "capped")
QUESTIONS = ("What is two and three?", "x", "Think again, carefully.")


def save_chain_model(path: Path, seed: int = 3) -> Any:
    """Save the chain model described in the module docstring with its tokenizer; returns it."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tok = tiny_tokenizer()
    vocab, hidden = len(tok), 128
    end = tok.convert_tokens_to_ids("<|im_start|>")
    spec = BudgetSpec.from_tokenizer(tok, num_extensions=1)
    never = set(spec.answer_prefix) | {t for e in spec.extensions for t in e}
    rng = random.Random(seed)
    writable = [t for t in range(vocab) if t not in never and t != tok.pad_token_id]
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,  # head_dim 64: vLLM's CPU attention refuses 16
        max_position_embeddings=8192,  # the documented request asks for 4096 tokens
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        emb.zero_()
        head.zero_()
        for t in range(vocab):
            emb[t, t % hidden] = 1000.0
        for d in range(hidden):  # coordinate d -> the next token of every token t with t % hidden == d
            r = rng.random()
            nxt = end if r < 0.15 else tok.eos_token_id if r < 0.2 else rng.choice(writable)
            if d == end % hidden:
                nxt = rng.choice(writable)  # after its own end token the model writes on
            head[nxt, d] = 100.0
    model.save_pretrained(path)
    tok.save_pretrained(path)
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(path)
    return tok


def requests(tok: Any) -> list[Request]:
    """Per question: cap + 2 extensions + answer cap, a tight cap, truncation, and no budget. (The
    chain's continuation depends on the last prompt token only, so the caps vary per question.)"""
    out = []
    for q, question in enumerate(QUESTIONS):
        two_ext = BudgetSpec.from_tokenizer(
            tok, max_thinking_tokens=14 + 6 * q, num_extensions=2, max_answer_tokens=6 + q
        )
        capped = BudgetSpec.from_tokenizer(
            tok, max_thinking_tokens=5 + q, num_extensions=50, max_answer_tokens=3
        )
        prompt = s1_prompt(tok, question)
        out += [
            Request(prompt, SamplingParams(temperature=0.0, max_new_tokens=60), two_ext, f"{q}-two-ext"),
            Request(prompt, SamplingParams(temperature=0.0, max_new_tokens=60), capped, f"{q}-capped"),
            Request(prompt, SamplingParams(temperature=0.0, max_new_tokens=4), two_ext, f"{q}-truncated"),
            Request(prompt, SamplingParams(temperature=0.0, max_new_tokens=10), None, f"{q}-plain"),
        ]
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    vllm_engine_here()
    path = tmp_path_factory.mktemp("chain_qwen2")
    return path, save_chain_model(path)


@pytest.fixture(scope="module")
def vllm_backend(saved: tuple[Path, Any]) -> Any:
    import os

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    path, _ = saved
    options = EngineOptions(
        dtype="float32", max_len=256, engine_args={"enforce_eager": True, "max_num_seqs": 8}
    )
    backend = load_backend("vllm", str(path), options)
    yield backend
    import multiprocessing

    backend.close()
    backend.close()  # idempotent
    # close() stops vLLM's engine-core process (V1 runs it as a child of this one).
    assert not [p.name for p in multiprocessing.active_children() if p.is_alive()]


def test_vllm_backend_equals_s1kit_engine_field_for_field(saved: tuple[Path, Any], vllm_backend: Any) -> None:
    path, tok = saved
    reqs = requests(tok)
    got = vllm_backend.generate(reqs)
    own = load_backend("s1kit", str(path), EngineOptions(device="cpu", dtype="float32", max_len=256))
    want = own.generate(reqs)
    for r, g, w in zip(reqs, got, want, strict=True):
        assert g.request_id == w.request_id == r.request_id
        for f in FIELDS:
            assert getattr(g, f) == getattr(w, f), f"{r.request_id}: {f}"
    # The scenario exercises what it claims (else equality would be cheap).
    by = {r.request_id: r for r in want}
    assert any(by[f"{q}-two-ext"].extensions_used == 2 for q in range(3))
    assert all(by[f"{q}-capped"].capped and by[f"{q}-capped"].finish_reason == "length" for q in range(3))
    assert all(by[f"{q}-truncated"].finish_reason == "length" for q in range(3))
    assert all(len(by[f"{q}-truncated"].token_ids) == 4 for q in range(3))
    assert any(w.forced_tokens > 0 and w.answer_tokens > 0 for w in want)
    assert all(by[f"{q}-plain"].finish_reason == "eos" for q in range(3)), "the raw model ends early"


def test_one_generate_call_per_batch_and_no_reprompt(saved: tuple[Path, Any], vllm_backend: Any) -> None:
    """Every request reaches vLLM once, with its prompt ids unchanged (forcing runs in the loop)."""
    _, tok = saved
    reqs = requests(tok)[:4]
    calls: list[Any] = []
    llm = vllm_backend.llm
    original = llm.generate

    def spy(prompts: Any, params: Any, **kw: Any) -> Any:
        calls.append([p["prompt_token_ids"] for p in prompts])
        return original(prompts, params, **kw)

    llm.generate = spy
    try:
        vllm_backend.generate(reqs)
    finally:
        llm.generate = original
    assert calls == [[list(r.prompt_ids) for r in reqs]]


def test_engine_args_clash_with_named_options_is_refused(saved: tuple[Path, Any]) -> None:
    path, _ = saved
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        load_backend("vllm", str(path), EngineOptions(engine_args={"tensor_parallel_size": 2}))


def test_cross_engine_check(tmp_path: Path) -> None:
    """The shared cross-engine evaluation (tests/engines/cross_engine.py, where the checkout has it):
    five problems under every budget setting, field for field against s1kit's engine."""
    vllm_engine_here()
    cross = pytest.importorskip(
        "tests.engines.cross_engine", reason="tests/engines/cross_engine.py is not here"
    )
    import os

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    cross.save_cross_engine_model(tmp_path)
    options = EngineOptions(
        dtype="float32", max_len=cross.MAX_LEN, engine_args={"enforce_eager": True, "max_num_seqs": 8}
    )
    backend = load_backend("vllm", str(tmp_path), options)
    try:
        cross.check_backend_against_own(backend, tmp_path)
    finally:
        backend.close()
