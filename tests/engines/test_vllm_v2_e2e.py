"""vLLM Model Runner V2 end to end (vLLM 0.34, or 0.33 on its default V2 runner): needs CUDA.

The tiny saved Qwen2 model of :mod:`tests.engines.test_vllm_e2e` (its argmax is always the s1
end-of-thinking token, so every greedy step tries to end thinking) runs in ``LLM`` with the V2
processor and vLLM's default settings (asynchronous scheduling on), through the documented snippet
of docs/embedding.md. The stream must equal override mode's token for token: two "Wait"s at the
start of thinking, the answer prefix right at the cap, EOS when the answer cap is reached. Model
Runner V2 has no CPU build (its kernels are Triton/CUDA), so on a CPU machine every case skips with
that reason; bench/gpu_check.sh runs this file on a lent GPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from s1kit.budget import BudgetSpec
from s1kit.budget.adapters.params import KEY, spec_to_params
from tests.engines.test_vllm_e2e import doc_snippet, reference, save_tiny_model
from tests.unit.tiny_lm import s1_prompt

pytestmark = pytest.mark.filterwarnings("ignore")  # vLLM's own deprecation warnings


def v2_engine_here() -> Any:
    vllm = pytest.importorskip("vllm", reason="vLLM is not installed (make test-engines installs it)")
    major, minor = (int(x) for x in vllm.__version__.split("+")[0].split(".")[:2])
    if not (0, 33) <= (major, minor) < (0, 35):
        pytest.skip(f"vLLM {vllm.__version__} has no Model Runner V2 processor interface (>=0.33,<0.35)")
    if not torch.cuda.is_available():
        pytest.skip(
            "vLLM's Model Runner V2 needs CUDA (Triton kernels, pinned UVA buffers) and this machine has "
            "none: bench/gpu_check.sh runs this end-to-end case on a GPU"
        )
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "1"  # vLLM 0.33's default on CUDA; 0.34 has only V2
    return vllm


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Any]:
    vllm = v2_engine_here()
    path = tmp_path_factory.mktemp("tiny_qwen2_v2")
    tok = save_tiny_model(path)
    return vllm, path, tok


def test_documented_v2_snippet_forces_two_waits_a_cap_and_stops(model: tuple[Any, Path, Any]) -> None:
    vllm, path, tok = model
    end = tok.convert_tokens_to_ids("<|im_start|>")
    wait = tuple(tok.encode("Wait"))
    two_waits = BudgetSpec.from_tokenizer(tok, num_extensions=2, max_answer_tokens=2)
    capped = BudgetSpec.from_tokenizer(tok, max_thinking_tokens=6, num_extensions=100, max_answer_tokens=1)
    prompt = s1_prompt(tok, "x")
    scope: dict[str, Any] = {
        "MODEL": str(path),
        "prompts": [{"prompt_token_ids": prompt}] * 3,
        "spec": two_waits,
        "KEY": KEY,
        "spec_to_params": spec_to_params,
    }
    exec(doc_snippet("# Model Runner V2"), scope)  # default settings: asynchronous scheduling on
    want = reference(two_waits, prompt, end, 4096)
    n = len(wait)
    assert tuple(want[:n]) == wait and tuple(want[n : 2 * n]) == wait and want[2 * n] == end
    for out in scope["outs"]:
        assert list(out.outputs[0].token_ids) == want

    llm = scope["llm"]  # the same engine: a cap, and a request without a budget next to it
    params = [
        vllm.SamplingParams(temperature=0.0, max_tokens=40, extra_args={KEY: spec_to_params(capped)}),
        vllm.SamplingParams(temperature=0.0, max_tokens=12),
    ]
    outs = [list(o.outputs[0].token_ids) for o in llm.generate([{"prompt_token_ids": prompt}] * 2, params)]
    assert outs[1] == [end] * 12, "a request without a budget is left alone"
    assert outs[0] == reference(capped, prompt, end, 40)
    prefix = list(capped.answer_prefix)
    start = next(i for i in range(len(outs[0])) if outs[0][i : i + len(prefix)] == prefix)
    assert start >= 6 and all(t in wait for t in outs[0][:start])
    assert outs[0][start + len(prefix) :] == [tok.eos_token_id]
