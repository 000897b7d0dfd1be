"""The Model Runner V2 adapter inside vLLM 0.33/0.34, with vLLM's own V2 classes.

- The version gate: importing ``s1kit.budget.adapters.vllm_v2`` works on vLLM 0.33/0.34 and the class
  is a V2 ``LogitsProcessor``; on any other vLLM (the CPU build 0.32) it raises naming the range.
- vLLM's own loader (``build_custom_logits_processors``, what ``LLM(logits_processors=[...])`` and
  ``--logits-processors`` use) accepts the class and its FQCN; the frontend's params validator
  refuses a bad budget on admission; speculative decoding and watermarking are refused at load.
- Model Runner V2's bookkeeping (:mod:`tests.unit.mrv2_sim`) drives the real class with vLLM's own
  ``LogitsProcRequestState``, ``LogitsContext`` and ``SamplingParams`` through admissions, slot
  recycling, reordering and preemption, and the tokens and counters must equal override mode's on
  random specs. vLLM's ``RequestState`` itself needs CUDA (pinned UVA buffers, a Triton kernel), so
  its buffers are plain CPU tensors here; the end-to-end run is in bench/gpu_check.sh.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from s1kit.budget import BudgetSpec
from s1kit.budget.adapters.params import KEY, spec_to_json, spec_to_params
from tests.unit.budget_reference import RefSpec
from tests.unit.mrv2_sim import Request, check, request_states, serve
from tests.unit.test_budget_equivalence import V, specs
from tests.unit.test_budget_vllm_v2 import CAPACITY, MAX_NEW, build, requests

pytestmark = pytest.mark.filterwarnings("ignore")  # vLLM's own deprecation warnings

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (make test-engines installs it)")


def release() -> tuple[int, int]:
    major, minor = vllm.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


SUPPORTED = (0, 33) <= release() < (0, 35)
needs_v2 = pytest.mark.skipif(
    not SUPPORTED, reason=f"vLLM {vllm.__version__} has no Model Runner V2 processor interface"
)
FQCN = "s1kit.budget.adapters.vllm_v2:BudgetForcingLogitsProcessor"
SPEC = BudgetSpec(vocab_size=V, think_end=((5,),), eos=(9,), answer_prefix=(8,), max_thinking_tokens=3)


def test_engine_vllm_loads_the_processor_for_the_installed_release() -> None:
    """``--engine vllm`` picks Model Runner V2's processor on 0.34 (and on 0.33 when the user asks for
    V2), the V1 runner's otherwise."""
    import os

    from s1kit.backends.vllm import processor_class

    v2 = release() >= (0, 34) or (release() >= (0, 33) and os.environ.get("VLLM_USE_V2_MODEL_RUNNER") == "1")
    cls = processor_class()
    assert cls.__module__ == ("s1kit.budget.adapters.vllm_v2" if v2 else "s1kit.budget.adapters.vllm")
    assert cls.__name__ == "BudgetForcingLogitsProcessor"


def test_import_is_refused_outside_the_supported_range() -> None:
    if SUPPORTED:
        from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor

        from s1kit.budget.adapters import vllm_v2 as adapter

        assert issubclass(adapter.BudgetForcingLogitsProcessor, LogitsProcessor)
        assert vllm.__version__ == adapter.VLLM_VERSION
    else:
        with pytest.raises(ImportError, match=rf"vLLM {vllm.__version__} is not supported.*>=0\.33,<0\.35"):
            import s1kit.budget.adapters.vllm_v2  # noqa: F401


def real_request_states() -> Any:
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcRequestState

    return request_states(CAPACITY, 64, V, LogitsProcRequestState)


@needs_v2
def test_vllms_loader_accepts_the_class_and_its_fqcn() -> None:
    from vllm.v1.worker.gpu.sample.logits_processor import build_custom_logits_processors

    from s1kit.budget.adapters.vllm_v2 import BudgetForcingLogitsProcessor

    rs = real_request_states()  # from_request_state reads exactly these fields
    config = SimpleNamespace(speculative_config=None, watermark_config=None)
    for entry in (BudgetForcingLogitsProcessor, FQCN):
        (proc,) = build_custom_logits_processors(config, rs, False, [entry])
        assert isinstance(proc, BudgetForcingLogitsProcessor)
        assert proc.budget.capacity == CAPACITY


@needs_v2
@pytest.mark.parametrize("field", ["speculative_config", "watermark_config"])
def test_speculative_decoding_and_watermarking_are_refused_at_load(field: str) -> None:
    from vllm.v1.worker.gpu.sample.logits_processor import build_custom_logits_processors

    config = SimpleNamespace(speculative_config=None, watermark_config=None)
    setattr(config, field, object())
    word = "speculative decoding" if field == "speculative_config" else "watermarking"
    with pytest.raises(ValueError, match=rf"does not support {word}.*start vLLM without"):
        build_custom_logits_processors(config, real_request_states(), False, [FQCN])


@needs_v2
def test_the_frontend_validator_refuses_bad_budgets_on_admission() -> None:
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError
    from vllm.v1.worker.gpu.sample.logits_processor import (
        build_custom_logits_processors_params_validator,
    )

    validate = build_custom_logits_processors_params_validator([FQCN])
    validate(SamplingParams(extra_args={KEY: spec_to_json(SPEC)}))  # served form: JSON text
    validate(SamplingParams())  # no budget: untouched
    with pytest.raises(VLLMValidationError, match=KEY):
        validate(SamplingParams(extra_args={KEY: 17}))
    with pytest.raises(VLLMValidationError, match="thinking_token_budget"):
        validate(SamplingParams(extra_args={KEY: spec_to_params(SPEC)}, thinking_token_budget=4))


def vllm_params(req: Request) -> Any:
    from vllm import SamplingParams

    extra = {} if req.spec is None else {KEY: spec_to_params(req.spec)}
    return SamplingParams(temperature=0.0, max_tokens=MAX_NEW, extra_args=extra)


def run(reqs: list[Request], seed: int, preempt: float) -> int:
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext

    from s1kit.budget.adapters.vllm_v2 import BudgetForcingLogitsProcessor

    rs = real_request_states()
    proc = BudgetForcingLogitsProcessor(SimpleNamespace(speculative_config=None, watermark_config=None), rs)
    context = functools.partial(LogitsContext)
    serve(proc, rs, reqs, vllm_params, context, np.random.default_rng(seed), MAX_NEW, preempt)
    return check(reqs, MAX_NEW)


@needs_v2
@settings(max_examples=60, deadline=None)
@given(st.lists(specs(), min_size=3, max_size=3), requests, st.integers(0, 2**32 - 1))
def test_equals_override_mode_in_vllms_own_objects(spec_list: list[RefSpec], drawn: list, seed: int) -> None:
    assert run(build(spec_list, drawn), seed, preempt=0.0) == 0


@needs_v2
@settings(max_examples=30, deadline=None)
@given(st.lists(specs(), min_size=3, max_size=3), requests, st.integers(0, 2**32 - 1))
def test_equals_override_mode_with_preemption(spec_list: list[RefSpec], drawn: list, seed: int) -> None:
    run(build(spec_list, drawn), seed, preempt=0.3)


@needs_v2
def test_logits_edit_keeps_vllms_dtype_and_shape() -> None:
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext

    from s1kit.budget.adapters.vllm_v2 import BudgetForcingLogitsProcessor

    rs = real_request_states()
    proc = BudgetForcingLogitsProcessor(SimpleNamespace(speculative_config=None, watermark_config=None), rs)
    rs.all_token_ids.gpu[2, :2] = torch.tensor([1, 2])
    rs.prompt_len.np[2] = rs.prefill_len.np[2] = 2
    rs.total_len.gpu[2] = 2
    assert proc.add_request(2, vllm_params(Request(SPEC.replace(max_thinking_tokens=0), [1, 2], 0, [])))
    proc.apply_staged_writes()
    idx = torch.tensor([2])
    ctx = LogitsContext(idx, idx, idx.numpy(), torch.zeros(1), torch.zeros(1), torch.zeros(1), np.ones(1))
    logits = torch.zeros(1, V)
    out = proc.apply(logits, ctx)
    assert out is logits and out.dtype == torch.float32
    assert int(torch.argmax(out[0])) == 8  # the cap is reached at once: the answer prefix
