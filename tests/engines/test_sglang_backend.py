"""``--engine sglang`` against SGLang's own classes: the engine arguments build a real ``ServerArgs``,
the per-request params a real ``SamplingParams``, the generate call binds to ``Engine.generate``, the
processor string loads through SGLang's ``CustomLogitProcessor.from_str``, and the redirect flags land
in a real ``Req.customized_info`` as SGLang's sampler drives the processor. The end-to-end case (a real
``sglang.Engine`` on a tiny saved model, compared with s1kit's engine by the cross-engine harness)
needs CUDA: it skips here with the reason and runs in bench/gpu_check.sh.

Runs where SGLang imports (``make test-engines``: the sglang venv); skips elsewhere with the reason.
"""

from __future__ import annotations

import inspect
import pickle
import weakref
from array import array
from pathlib import Path
from typing import Any

import pytest
import torch

from s1kit.backends import EngineOptions
from s1kit.backends.sglang import REDIRECT_INFO, SGLangBackend, engine_kwargs, generate_kwargs, replay
from s1kit.budget import BudgetSpec
from s1kit.budget.adapters.params import KEY, spec_from_params
from s1kit.generate.types import Request, SamplingParams
from tests.unit.serving_sim import V, draw, model_logits, prompt, specs

pytestmark = pytest.mark.filterwarnings("ignore")  # SGLang's own deprecation warnings

sglang = pytest.importorskip("sglang", reason="SGLang is not installed (make test-engines installs it)")


def test_engine_kwargs_build_sglangs_server_args() -> None:
    from sglang.srt.server_args import ServerArgs

    opts = EngineOptions(
        dtype="float32", max_len=256, gpu_memory_utilization=0.5, engine_args={"random_seed": 7}
    )
    kw = engine_kwargs("/some/model", opts)
    args = ServerArgs(**kw)  # SGLang's own validation of every name and value
    got = {k: getattr(args, k) for k in kw}
    assert got == kw
    with pytest.raises(TypeError, match="bogus"):  # an unknown --engine-args key fails in SGLang
        ServerArgs(**engine_kwargs("/m", EngineOptions(engine_args={"bogus": 1})))


def test_requests_build_sglangs_sampling_params_and_bind_to_generate() -> None:
    from sglang.srt.sampling.sampling_params import SamplingParams as SglParams

    spec = specs()[0]
    assert spec is not None
    reqs = [
        Request([1, 2, 3], SamplingParams(max_new_tokens=40, stop=("x",), stop_token_ids=(7,)), spec),
        Request([4], SamplingParams(temperature=0.5, top_k=3, seed=9, max_new_tokens=5)),
    ]
    kw = generate_kwargs(reqs, "WIRE", max_len=32, model_eos=frozenset({2}))
    inspect.signature(sglang.Engine.generate).bind(None, **kw)  # every argument is Engine.generate's
    greedy, sampled = (SglParams(**p) for p in kw["sampling_params"])
    assert (greedy.temperature, greedy.top_k) == (1.0, 1)  # SGLang stores greedy as top_k=1
    assert greedy.max_new_tokens == 29 and greedy.stop_strs == ["x"] and greedy.stop_token_ids == {7, 31}
    assert spec_from_params(greedy.custom_params[KEY]) == spec
    assert (sampled.temperature, sampled.top_k, sampled.sampling_seed) == (0.5, 3, 9)


def test_the_default_processor_string_loads_in_sglang() -> None:
    from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor

    from s1kit.budget.adapters.sglang import BudgetForcingLogitProcessor

    backend = SGLangBackend(None, None, eos_token_ids=[31], max_batch=4, max_len=64)
    assert isinstance(CustomLogitProcessor.from_str(backend._wire), BudgetForcingLogitProcessor)


def test_flags_land_in_real_requests_and_replay_to_the_processors_row() -> None:
    from sglang.srt.managers.schedule_batch import Req
    from sglang.srt.sampling.sampling_params import SamplingParams as SglParams

    from s1kit.budget.adapters.sglang import BudgetForcingLogitProcessor, BudgetRegistry

    proc = BudgetForcingLogitProcessor()
    proc.registry = registry = BudgetRegistry(capacity=2)
    checked = 0
    for r, spec in enumerate(specs()[:4]):
        assert spec is not None
        sp = SglParams(max_new_tokens=40, temperature=0.0, custom_params={KEY: spec_to_dict(spec)})
        req = Req(f"q{r}", "", array("q", prompt(r)), sp, custom_logit_processor="wire")
        assert req.customized_info is None
        params = [{**sp.custom_params, "__req__": weakref.proxy(req)}]
        for k in range(30):
            logits = proc(model_logits(r, k)[None].clone(), params)
            req.output_ids.append(draw(logits[0], r, k))
            if req.output_ids[-1] == spec.eos[0]:
                break
        flags = pickle.loads(pickle.dumps(req.customized_info[REDIRECT_INFO]))  # as SGLang ships it
        assert len(flags) == len(req.output_ids) and set(flags) <= {0, 1}
        proc(torch.zeros(1, V), params)  # feeds the last token: the registry's row is complete
        state = registry.row_state(req.rid)
        assert state is not None
        _, acc, _ = replay(spec, prompt(r), list(req.output_ids), flags)
        assert acc == {k: state[k] for k in acc}, f"request {r}"
        checked += sum(flags)
    assert checked > 0, "no redirect was taken: the flags were not exercised"


def spec_to_dict(spec: BudgetSpec) -> dict[str, Any]:
    from s1kit.budget.adapters.params import spec_to_params

    return spec_to_params(spec)


def test_end_to_end_equals_s1kits_engine(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip(
            f"SGLang {sglang.__version__} is a GPU build (its attention and sampling kernels need CUDA) and "
            "this machine has no CUDA device: sglang.Engine cannot start here; bench/gpu_check.sh runs this case"
        )
    from s1kit.backends import load_backend
    from tests.engines.cross_engine import MAX_LEN, check_backend_against_own, save_cross_engine_model

    save_cross_engine_model(tmp_path)
    # float32 like the CPU reference: SGLang's torch-native attention and PyTorch sampling take it.
    engine_args = {
        "random_seed": 0,
        "attention_backend": "torch_native",
        "sampling_backend": "pytorch",
        "disable_cuda_graph": True,
    }
    opts = EngineOptions(
        dtype="float32", max_len=MAX_LEN, gpu_memory_utilization=0.3, engine_args=engine_args
    )
    backend = load_backend("sglang", str(tmp_path), opts)
    try:
        check_backend_against_own(backend, tmp_path)
    finally:
        backend.close()


def test_the_processor_refuses_sglangs_overlap_scheduler_without_delayed_sampling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under the overlap scheduler SGLang samples before the previous token reaches output_ids."""
    from types import SimpleNamespace

    import sglang.srt.runtime_context as rc

    from s1kit.budget.adapters import sglang as adapter

    proc = adapter.BudgetForcingLogitProcessor()
    proc.registry = adapter.BudgetRegistry(capacity=2)
    params = [{}]  # a row without a budget: nothing else is needed to reach the check
    for env, disabled, refused in (("0", False, True), ("1", False, False), ("0", True, False)):
        monkeypatch.setattr(adapter, "_LAGS", None)
        monkeypatch.setenv("SGLANG_ENABLE_DELAY_SAMPLE", env)
        monkeypatch.setattr(
            rc, "get_schedule", lambda d=disabled: SimpleNamespace(disable_overlap_schedule=d)
        )
        if refused:
            with pytest.raises(RuntimeError, match="SGLANG_ENABLE_DELAY_SAMPLE=1"):
                proc(torch.zeros(1, V), params)
        else:
            proc(torch.zeros(1, V), params)
