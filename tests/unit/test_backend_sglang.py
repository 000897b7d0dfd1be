"""``--engine sglang`` (``s1kit.backends.sglang``) on CPU: its engine and request arguments, the
accounting replay with the processor's redirect flags, and the whole backend over a stand-in for
SGLang's engine (``sglang_standin.py``; SGLang's own engine needs CUDA, and its classes are checked in
tests/engines/test_sglang_backend.py) against s1kit's own engine on the cross-engine request set.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from s1kit.backends import EngineNotInstalled, EngineOptions, load_backend
from s1kit.backends.sglang import (
    REDIRECT_INFO,
    SGLangBackend,
    engine_kwargs,
    generate_kwargs,
    replay,
    sampling_params,
)
from s1kit.budget import BudgetSpec
from s1kit.budget.adapters import sglang as adapter
from s1kit.budget.adapters.params import KEY, spec_from_params
from s1kit.errors import S1kitError
from s1kit.generate.types import Request, SamplingParams
from tests.engines.cross_engine import (
    MAX_LEN,
    check_backend_against_own,
    cross_engine_requests,
    save_cross_engine_model,
)
from tests.unit.sglang_standin import StandinEngine


def test_engine_kwargs_name_sglangs_arguments() -> None:
    opts = EngineOptions(
        dtype="bfloat16",
        tensor_parallel_size=4,
        max_len=8192,
        max_model_len=32768,
        gpu_memory_utilization=0.85,
        engine_args={"random_seed": 0, "chunked_prefill_size": 4096},
    )
    assert engine_kwargs("/m", opts) == {
        "model_path": "/m",
        "tp_size": 4,
        "dtype": "bfloat16",
        "context_length": 32768,
        "mem_fraction_static": 0.85,
        "enable_custom_logit_processor": True,
        "random_seed": 0,
        "chunked_prefill_size": 4096,
    }
    # Unset named options stay SGLang's defaults; max_model_len defaults to max_len.
    kw = engine_kwargs("/m", EngineOptions(max_len=1024))
    assert "mem_fraction_static" not in kw and kw["context_length"] == 1024 and kw["dtype"] == "auto"
    with pytest.raises(ValueError, match=r"\['tp_size'\].*--tensor-parallel-size"):
        engine_kwargs("/m", EngineOptions(engine_args={"tp_size": 2}))
    with pytest.raises(ValueError, match="speculative decoding"):
        engine_kwargs("/m", EngineOptions(engine_args={"speculative_algorithm": "EAGLE"}))


def test_sampling_params_per_request() -> None:
    spec = BudgetSpec(
        vocab_size=32, think_end=((5,),), eos=(9, 30), answer_prefix=(5, 6), max_thinking_tokens=4
    )
    sp = SamplingParams(
        temperature=0.7, top_k=0, top_p=0.9, seed=-3, max_new_tokens=500, stop=("END",), stop_token_ids=(7,)
    )
    got = sampling_params(sp, spec, room=100, model_eos=frozenset({9}))
    assert got["max_new_tokens"] == 100 and got["top_k"] == -1 and got["top_p"] == 0.9
    assert got["stop_token_ids"] == [7, 30]  # the spec's EOS the model does not stop on ends it too
    assert got["stop"] == ["END"] and got["sampling_seed"] == (-3) % (1 << 63)
    assert spec_from_params(got["custom_params"][KEY]) == spec
    plain = sampling_params(SamplingParams(), None, room=10_000, model_eos=frozenset({9}))
    assert plain["temperature"] == 0.0 and "custom_params" not in plain and "stop_token_ids" not in plain
    reqs = [Request([1, 2], budget=spec), Request([3])]
    kw = generate_kwargs(reqs, "WIRE", max_len=64, model_eos=frozenset({9}))
    assert kw["input_ids"] == [[1, 2], [3]] and kw["custom_logit_processor"] == ["WIRE", None]
    assert [p["max_new_tokens"] for p in kw["sampling_params"]] == [62, 63]


@pytest.mark.skipif(importlib.util.find_spec("sglang") is not None, reason="SGLang is installed here")
def test_not_installed_names_the_extra(tmp_path: Path) -> None:
    with pytest.raises(EngineNotInstalled, match=r"pip install 's1kit\[sglang\]'"):
        load_backend("sglang", str(tmp_path))


def test_replay_needs_the_flags_and_is_exact_with_them() -> None:
    """think_end [6], extension [7, 5]: the model writes 7 itself (flag 0), then tries to end and gets
    "Wait" (flag 1, 5 forced), then ends with the answer prefix forced at the cap."""
    spec = BudgetSpec(
        vocab_size=32, think_end=((6,),), eos=(9,), answer_prefix=(6, 8), extensions=((7, 5),),
        num_extensions=1, max_thinking_tokens=6,
    )  # fmt: skip
    tokens = [7, 3, 7, 5, 4, 4, 6, 8, 2, 9]
    n, acc, _ = replay(spec, [1], tokens, [0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    # forced: the replacement 7, then 5, then the answer prefix 6 8 at the cap of 6 thinking tokens
    assert (n, acc["thinking_tokens"], acc["extensions_used"], acc["forced_tokens"], acc["capped"]) == (
        10,
        6,
        1,
        4,
        True,
    )
    _, blind, _ = replay(spec, [1], tokens, None)
    assert (blind["extensions_used"], blind["forced_tokens"]) == (
        0,
        2,
    )  # the forced "Wait" read as the model's


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    path = tmp_path_factory.mktemp("cross_engine_model")
    return path, save_cross_engine_model(path)


def standin_backend(path: Path, tok: Any, seed: int = 0) -> SGLangBackend:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    engine = StandinEngine(model, tok, [tok.eos_token_id], seed=seed)
    return SGLangBackend(
        engine, tok, eos_token_ids=[tok.eos_token_id], max_batch=64, max_len=MAX_LEN, processor_wire="s1kit"
    )


def test_backend_over_the_standin_equals_own_engine(saved: tuple[Path, Any]) -> None:
    backend = standin_backend(*saved)
    check_backend_against_own(backend, saved[0])
    assert backend.engine.calls == 1  # one generate call for the whole batch
    backend.close()
    assert backend.engine is None


def test_without_flags_generate_refuses(saved: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """An SGLang that does not return customized_info: no exact accounting, so a clear error."""
    monkeypatch.setattr(adapter, "_flag_list", lambda req: None)  # requests without customized_info
    reqs = cross_engine_requests(saved[1])[:3]
    with pytest.raises(S1kitError, match=r"no budget redirect flags .*SGLang 0.5.23"):
        standin_backend(*saved).generate(reqs)
    assert REDIRECT_INFO == adapter.REDIRECT_INFO


def test_processor_flags_follow_output_positions_after_a_replay(saved: tuple[Path, Any]) -> None:
    """A request retracted with input_embeds restarts its output: its flags restart with it."""
    spec = BudgetSpec.from_tokenizer(saved[1], max_thinking_tokens=6, num_extensions=1)
    sp = sampling_params(SamplingParams(max_new_tokens=12), spec, 100, frozenset({saved[1].eos_token_id}))
    from tests.unit.sglang_standin import StandinReq

    req = StandinReq("a", [1, 2, 3], sp)
    proc = adapter.BudgetForcingLogitProcessor()
    proc.registry = adapter.BudgetRegistry(capacity=2)
    import weakref

    import torch

    params = [{**sp["custom_params"], "__req__": weakref.proxy(req)}]
    for _ in range(5):
        logits = proc(torch.randn(1, len(saved[1])), params)
        req.output_ids.append(int(logits[0].argmax()))
    assert req.customized_info is not None and len(req.customized_info[REDIRECT_INFO]) == 5
    req.output_ids = []  # SGLang's reset_for_retract with input_embeds
    proc(torch.randn(1, len(saved[1])), params)
    assert len(req.customized_info[REDIRECT_INFO]) == 1


def test_bad_requests_are_refused(saved: tuple[Path, Any]) -> None:
    backend = standin_backend(*saved)
    with pytest.raises(ValueError, match="empty prompt"):
        backend.generate([Request([])])
    with pytest.raises(ValueError, match="does not fit max_len"):
        backend.generate([Request([1] * MAX_LEN)])
    assert backend.generate([]) == []
