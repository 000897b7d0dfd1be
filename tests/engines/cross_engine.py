"""The cross-engine check: one small budget-forced evaluation, run on any backend and on s1kit's own.

Every engine backend (``s1kit.backends``) must give, for the same greedy requests on the same saved
model, the token ids, text, finish reason and budget accounting that s1kit's own engine gives.
Use it from a backend's test (inside its engine venv where the engine needs one)::

    from tests.engines.cross_engine import check_backend_against_own, save_cross_engine_model
    tok = save_cross_engine_model(tmp_path)                 # once per module
    backend = load_backend("vllm", str(tmp_path), EngineOptions(dtype="float32", max_len=256))
    check_backend_against_own(backend, tmp_path)            # raises AssertionError naming each difference

The model (:func:`save_cross_engine_model`) is a random Qwen2 with head_dim 64 (vLLM's CPU attention
refuses smaller heads), float32, untied output embeddings. Its weights are widened tenfold
(``tiny_lm.tiny_hf_model``), which makes its greedy choice clear: top-1 logit margins are large next
to the float differences between engines' kernels (:func:`greedy_margins` measures them). The s1
end-of-thinking token ``<|im_start|>`` and ``</think>`` take over the output rows of the two tokens
the plain model emits most, so greedy thinking tries to end at prompt-dependent points: caps,
extensions and early ends all happen. :func:`cross_engine_requests` asks for five problems under
each setting of :data:`SETTINGS` (a thinking cap alone: truncation; cap + 1 and + 2 extensions;
minimum thinking; an answer cap; a stop string; a 5-token limit; no budget at all); :func:`assert_exercised` checks
that the reference run really reached a cap, used two extensions and ended in every way asked for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from s1kit.budget import BudgetSpec
from s1kit.generate.types import Request, Result, SamplingParams

QUESTIONS = [
    "What is two and three?",
    "Hmm, so the total",
    "Check each case, if x is even",
    "seven times six",
    "Wait, let me think",
]
MAX_NEW_TOKENS = 72
MAX_LEN = 256
OUTPUTS = 24  # tokens with a nonzero output row (besides the three favoured specials)

# name -> (BudgetSpec.from_tokenizer keywords or None for no budget, SamplingParams keywords)
SETTINGS: dict[str, tuple[dict[str, Any] | None, dict[str, Any]]] = {
    "truncate": (dict(max_thinking_tokens=6, min_thinking_tokens=6), {}),
    "cap+1ext": (dict(max_thinking_tokens=12, num_extensions=1), {}),
    "cap+2ext": (dict(max_thinking_tokens=12, num_extensions=2), {}),
    "min_think": (dict(max_thinking_tokens=30, min_thinking_tokens=24, num_extensions=1), {}),
    "answer_cap": (dict(max_thinking_tokens=20, num_extensions=2, max_answer_tokens=5), {}),
    "stop_string": (dict(max_thinking_tokens=30, num_extensions=2), dict(stop=("Final",))),
    "token_limit": (dict(max_thinking_tokens=30, num_extensions=2), dict(max_new_tokens=5)),
    "no_budget": (None, dict(max_new_tokens=24)),
}
COMPARED = (
    "token_ids",
    "text",
    "finish_reason",
    "thinking_tokens",
    "answer_tokens",
    "forced_tokens",
    "extensions_used",
    "capped",
)


def save_cross_engine_model(path: Path, seed: int = 3) -> Any:
    """Save the tiny thinking model, its tokenizer and a generation config to ``path``; returns the
    tokenizer."""
    import torch
    from transformers import GenerationConfig

    from s1kit.generate import Engine
    from tests.unit.tiny_lm import favour_token, s1_prompt, tiny_hf_model, tiny_tokenizer

    tok = tiny_tokenizer()
    hf = tiny_hf_model(
        "qwen2",
        tok,
        seed=seed,
        hidden_size=128,
        intermediate_size=256,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    with torch.no_grad():  # only OUTPUTS tokens can win: fewer competitors, wider top-1 margins
        head = hf.get_output_embeddings().weight
        keep = torch.zeros(head.shape[0], dtype=torch.bool)
        keep[len(tok.all_special_ids) : len(tok.all_special_ids) + OUTPUTS] = True
        head[~keep] = 0.0
    plain = Engine(hf, tok, max_batch=8, max_len=MAX_LEN).generate(
        [Request(s1_prompt(tok, q), SamplingParams(max_new_tokens=48)) for q in QUESTIONS]
    )
    counts = Counter(t for r in plain for t in r.token_ids if t >= len(tok.all_special_ids))
    common = [t for t, _ in counts.most_common(6)]
    favour_token(hf, tok.convert_tokens_to_ids("<|im_start|>"), like=common[5], scale=1.5)
    favour_token(hf, tok.convert_tokens_to_ids("</think>"), like=common[4], scale=1.5)
    favour_token(hf, tok.eos_token_id, like=common[3], scale=1.5)
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(path)
    return tok


def cross_engine_requests(tok: Any) -> list[Request]:
    """Every question under every setting, greedy; request ids ``"<setting>/<question index>"``."""
    from tests.unit.tiny_lm import s1_prompt

    out = []
    for name, (spec_kw, sampling_kw) in SETTINGS.items():
        spec = None if spec_kw is None else BudgetSpec.from_tokenizer(tok, style="s1", **spec_kw)
        sampling = SamplingParams(**{"max_new_tokens": MAX_NEW_TOKENS, **sampling_kw})
        for i, q in enumerate(QUESTIONS):
            out.append(Request(s1_prompt(tok, q), sampling, spec, request_id=f"{name}/{i}"))
    return out


def own_reference(model_dir: Path | str, requests: Sequence[Request], max_batch: int = 8) -> list[Result]:
    """The requests on s1kit's own engine (``--engine s1kit``, float32 on CPU)."""
    from s1kit.backends import EngineOptions, load_backend

    own = load_backend(
        "s1kit",
        str(model_dir),
        EngineOptions(device="cpu", dtype="float32", max_batch=max_batch, max_len=MAX_LEN),
    )
    try:
        return own.generate(requests)
    finally:
        own.close()


def differences(got: Sequence[Result], want: Sequence[Result]) -> list[str]:
    """One line per request and field in :data:`COMPARED` where ``got`` differs from ``want``."""
    if len(got) != len(want):
        return [f"{len(got)} results for {len(want)} requests"]
    out = []
    for g, w in zip(got, want, strict=True):
        if g.request_id != w.request_id:
            out.append(f"result order: {g.request_id!r} where {w.request_id!r} was expected")
            continue
        for name in COMPARED:
            a, b = getattr(g, name), getattr(w, name)
            if a != b:
                out.append(f"{w.request_id}: {name} = {a!r}, s1kit's engine: {b!r}")
    return out


def assert_exercised(results: Sequence[Result]) -> None:
    """The reference run reached what the request set is for (so an equality check means something)."""
    by = {r.request_id: r for r in results}

    def of(setting: str) -> list[Result]:
        return [by[f"{setting}/{i}"] for i in range(len(QUESTIONS))]

    assert all(r.capped for r in of("truncate")), "the thinking cap of 6 was not reached"
    assert any(r.capped and r.extensions_used == 2 for r in of("cap+2ext")), "no cap after two extensions"
    assert any(r.extensions_used == 2 for r in of("cap+2ext")), "no request used two extensions"
    assert any(r.extensions_used == 1 for r in of("cap+1ext")), "no request used its extension"
    assert all(r.thinking_tokens >= 24 for r in of("min_think")), "min thinking not honoured"
    assert any(r.finish_reason == "eos" for r in results), "no request ended with EOS"
    assert any(r.finish_reason == "length" and r.answer_tokens == 5 for r in of("answer_cap")), (
        "no answer cap"
    )
    assert any(r.finish_reason == "stop" for r in of("stop_string")), "the stop string never matched"
    # Rows cut by their own token limit while others run on: nothing after the cut may count.
    assert any(r.finish_reason == "length" and len(r.token_ids) == 5 for r in of("token_limit")), "no cut"
    assert all(r.forced_tokens == 0 for r in of("no_budget")), "a request without budget was forced"


def check_backend_against_own(
    backend: Any, model_dir: Path | str, requests: Sequence[Request] | None = None
) -> list[Result]:
    """Run the request set on ``backend`` and on s1kit's engine; raise ``AssertionError`` listing every
    difference (token ids, text, finish reason, accounting). Returns the backend's results."""
    reqs = list(requests) if requests is not None else cross_engine_requests(backend.tokenizer)
    want = own_reference(model_dir, reqs)
    if requests is None:
        assert_exercised(want)
    got = backend.generate(reqs)
    diff = differences(got, want)
    assert not diff, f"{backend.name} differs from s1kit's engine in {len(diff)} places:\n" + "\n".join(diff)
    return got


def greedy_margins(model_dir: Path | str, results: Sequence[Result]) -> list[float]:
    """Per result, the smallest top-1 minus top-2 logit gap (float32, transformers) over the positions
    whose emitted token is the model's own argmax (forced and redirected tokens are not): how far
    the greedy choices are from a tie that kernel differences could flip."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for r in results:
            ids = torch.tensor([r.prompt_ids + r.token_ids])
            logits = model(ids).logits[0, len(r.prompt_ids) - 1 : -1]
            top2 = logits.topk(2, dim=-1)
            chosen = top2.indices[:, 0] == torch.tensor(r.token_ids)
            gaps = (top2.values[:, 0] - top2.values[:, 1])[chosen]
            out.append(float(gaps.min()) if len(gaps) else float("inf"))
    return out
