"""``--forcing reprompt`` (one plain vLLM call per "Wait") agrees with in-loop forcing on vLLM itself.

Runs in the vllm-cpu venv (``make test-engines``) where vLLM's engine starts on CPU and the vLLM backend
module (``s1kit.backends.vllm``) is present; skips elsewhere with the reason. The model's argmax is
always the s1 end-of-thinking token (tests/engines/test_vllm_e2e.py), so every thinking call of the
re-prompting loop stops after one token on vLLM's stop-token path: the boundary cases where the two
ways could part (the stop token kept in the ids, "Wait" appended by id, the minimum, the answer cap).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

from s1kit.budget import BudgetSpec
from s1kit.generate.types import Request, SamplingParams
from tests.engines.test_vllm_e2e import save_tiny_model, vllm_engine_here
from tests.unit.tiny_lm import THINKING_QUESTIONS, s1_prompt

pytestmark = pytest.mark.filterwarnings("ignore")  # vLLM's own deprecation warnings


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Any:
    vllm_engine_here()
    if importlib.util.find_spec("s1kit.backends.vllm") is None:
        pytest.skip("the vLLM backend module s1kit.backends.vllm is not in this checkout")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from s1kit.backends import EngineOptions, load_backend

    path: Path = tmp_path_factory.mktemp("tiny_qwen2")
    tok = save_tiny_model(path)
    options = EngineOptions(max_len=256, max_batch=8, dtype="float32", engine_args={"enforce_eager": True})
    be = load_backend("vllm", str(path), options)
    yield be, tok
    be.close()


@pytest.mark.parametrize(
    "kw",
    [
        dict(num_extensions=2, max_answer_tokens=6),
        dict(num_extensions=2, max_thinking_tokens=5, max_answer_tokens=6),
        dict(max_thinking_tokens=3, max_answer_tokens=4),
        dict(min_thinking_tokens=4, max_answer_tokens=3),
    ],
)
def test_reprompt_equals_inloop_on_vllm(backend: Any, kw: dict[str, Any]) -> None:
    from s1kit.backends.forcing import generate_forced

    be, tok = backend
    spec = BudgetSpec.from_tokenizer(tok, style="s1", **kw)
    prompts = [s1_prompt(tok, q) for q in THINKING_QUESTIONS[:4]]
    reqs = [
        Request(p, SamplingParams(max_new_tokens=40, seed=1), budget=spec, request_id=str(i))
        for i, p in enumerate(prompts)
    ]
    inloop = generate_forced(be, reqs, "inloop")
    reprompt = generate_forced(be, reqs, "reprompt")
    for (a, ca), (b, cb) in zip(inloop, reprompt, strict=True):
        assert b.token_ids == a.token_ids and b.text == a.text
        fields = (
            "thinking_tokens",
            "answer_tokens",
            "forced_tokens",
            "extensions_used",
            "capped",
            "finish_reason",
        )
        assert [getattr(b, f) for f in fields] == [getattr(a, f) for f in fields]
        assert ca.engine_calls == 1 and cb.engine_calls == 1 + b.extensions_used + 1
        assert cb.prefill_tokens > ca.prefill_tokens == len(a.prompt_ids)
