"""The vLLM adapter inside vLLM's own persistent batch (``InputBatch``), on every installed release.

vLLM's ``InputBatch`` with its ``BatchUpdateBuilder`` and ``LogitsProcessors`` drives the real
``BudgetForcingLogitsProcessor`` through add / remove / condense / swap sequences, synchronously and
with asynchronous scheduling (placeholders filled in by vLLM's own
``update_async_output_token_ids`` just before ``apply``), and preemption (remove, re-add with the
output so far). Token sequences must equal the core driven directly. Also: the version gate, and
the refusal when Model Runner V2 loads the processor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from s1kit.budget.adapters.params import KEY, spec_to_json, spec_to_params
from tests.unit.serving_sim import V, request_kinds, specs
from tests.unit.test_budget_vllm import MAX_SEQS, PLACEHOLDER, check_against_core, serve

pytestmark = pytest.mark.filterwarnings("ignore")  # vLLM's own deprecation warnings

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (make test-engines installs it)")


def release() -> tuple[int, int]:
    major, minor = vllm.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


SUPPORTED = (0, 32) <= release() < (0, 34)


def test_import_is_refused_outside_the_supported_range() -> None:
    if SUPPORTED:
        from s1kit.budget.adapters import vllm as adapter

        assert issubclass(
            adapter.BudgetForcingLogitsProcessor, vllm.v1.sample.logits_processor.LogitsProcessor
        )
        assert vllm.__version__ == adapter.VLLM_VERSION
    else:
        with pytest.raises(ImportError, match=rf"vLLM {vllm.__version__} is not supported.*>=0\.32,<0\.34"):
            import s1kit.budget.adapters.vllm  # noqa: F401


needs_v1 = pytest.mark.skipif(
    not SUPPORTED, reason=f"vLLM {vllm.__version__} has no V1 model runner (the adapter refuses it)"
)


class Ready:
    """The copy-ready event vLLM waits on before reading sampled tokens (host copy: always ready)."""

    def synchronize(self) -> None:
        pass


@dataclass
class RealBatch:
    """vLLM's ``InputBatch`` (CPU) behind the interface ``serve`` uses."""

    ib: Any
    gib: Any
    lists: dict[int, list[int]] = field(default_factory=dict)
    sampled_now: dict[int, int] = field(default_factory=dict)
    placeholders_seen: bool = False

    def add(self, r: int, params: Any, prompt_ids: list[int], out: list[int]) -> None:
        state = self.gib.CachedRequestState(
            req_id=str(r),
            prompt_token_ids=prompt_ids,
            mm_features=[],
            sampling_params=params,
            generator=None,
            block_ids=([0],),
            num_computed_tokens=0,
            output_token_ids=out,
        )
        self.lists[r] = out
        self.ib.add_request(state)

    def remove(self, r: int) -> None:
        self.ib.remove_request(str(r))

    def condense(self) -> None:
        self.ib.condense()

    def swap(self, i: int, j: int) -> None:
        self.ib.swap_states(i, j)

    def refresh(self) -> None:
        self.ib.refresh_metadata()

    def requests(self) -> list[int | None]:
        return [None if r is None else int(r) for r in self.ib._req_ids]

    def sampled(self, tokens_by_index: list[int]) -> None:
        # What the model runner records after an async step: the tokens stay "on the device"
        # (sampled_token_ids_cpu) and each request's index then (prev_req_id_to_index).
        self.ib.prev_req_id_to_index = {rid: i for i, rid in enumerate(self.ib.req_ids)}
        self.ib.set_async_sampled_token_ids(torch.tensor(tokens_by_index).view(-1, 1), Ready())
        self.sampled_now = {int(rid): tokens_by_index[i] for i, rid in enumerate(self.ib.req_ids)}

    def settled(self, r: int, out: list[int]) -> list[int]:
        if out and out[-1] == PLACEHOLDER and r in self.sampled_now:
            return [*out[:-1], self.sampled_now[r]]
        return out

    def resolve(self) -> None:
        seen = any(out and out[-1] == PLACEHOLDER for out in self.lists.values())
        self.ib.update_async_output_token_ids()  # vLLM's own repair, right before sampling
        self.placeholders_seen |= seen


def new_batch(proc: Any) -> RealBatch:
    import vllm.v1.worker.gpu_input_batch as gib
    from vllm.v1.sample.logits_processor import LogitsProcessors

    gib.PIN_MEMORY = False  # CPU-only machine: vLLM's CUDA build would pin host memory
    ib = gib.InputBatch(
        max_num_reqs=MAX_SEQS,
        max_model_len=128,
        max_num_batched_tokens=128,
        device=torch.device("cpu"),
        vocab_size=V,
        block_sizes=[16],
        max_num_blocks_per_req=[8],
        logitsprocs=LogitsProcessors([proc]),
        logitsprocs_need_output_token_ids=True,  # what the model runner sets with custom processors
    )
    return RealBatch(ib, gib)


def new_proc() -> Any:
    from s1kit.budget.adapters.vllm import BudgetForcingLogitsProcessor

    config = SimpleNamespace(scheduler_config=SimpleNamespace(max_num_seqs=MAX_SEQS), speculative_config=None)
    return BudgetForcingLogitsProcessor(config, torch.device("cpu"), False)


def make_params(kind: int, as_json: bool) -> Any:
    from s1kit.budget.adapters.vllm import BudgetForcingLogitsProcessor

    spec = specs()[kind]
    extra = None if spec is None else {KEY: spec_to_json(spec) if as_json else spec_to_params(spec)}
    # temperature 0: the adapter attributes redirects by argmax, as serving_sim's reference does
    # (the simulated sampler's draw then only exercises the bookkeeping, not the attribution).
    params = vllm.SamplingParams(temperature=0.0, max_tokens=64, extra_args=extra)
    BudgetForcingLogitsProcessor.validate_params(params)
    return params


@needs_v1
@pytest.mark.parametrize("async_scheduling", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_real_input_batch_drives_the_adapter_like_the_core(seed: int, async_scheduling: bool) -> None:
    kinds = request_kinds(14, seed)
    proc = new_proc()
    batch = new_batch(proc)
    outputs, states = serve(batch, proc, kinds, seed, make_params, async_scheduling)
    check_against_core(kinds, outputs, states)
    assert batch.placeholders_seen == async_scheduling
    assert np.all(np.asarray(proc.governed) < MAX_SEQS)


@needs_v1
def test_preempted_request_is_replayed_exactly() -> None:
    """vLLM preempts by removing a request and re-adding it later with its output so far."""
    from tests.unit.serving_sim import draw, model_logits, prompt

    proc = new_proc()
    batch = new_batch(proc)
    out: list[int] = []
    batch.add(0, make_params(0, False), prompt(0), out)
    batch.add(1, make_params(1, True), prompt(1), [])
    for _ in range(7):
        batch.refresh()
        logits = proc.apply(torch.stack([model_logits(0, len(out)), model_logits(1, 0)]))
        out.append(draw(logits[0], 0, len(out)))
    batch.refresh()
    before = proc.row_state(0)
    assert before is not None and before["thinking_tokens"] == 7
    batch.remove(0)
    batch.condense()
    batch.refresh()
    batch.add(0, make_params(0, False), prompt(0), out)
    batch.refresh()
    index = batch.requests().index(0)
    assert index == 1 and proc.row_state(index) == before


@needs_v1
def test_model_runner_v2_and_speculative_decoding_are_refused_at_load() -> None:
    from s1kit.budget.adapters.vllm import BudgetForcingLogitsProcessor

    config = SimpleNamespace(scheduler_config=SimpleNamespace(max_num_seqs=4), speculative_config=None)
    try:
        from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor as V2
    except ImportError:
        pass
    else:  # vLLM's V2 loader accepts the class, then constructs it with its request states
        assert issubclass(BudgetForcingLogitsProcessor, V2)
        with pytest.raises(RuntimeError, match="VLLM_USE_V2_MODEL_RUNNER=0"):
            BudgetForcingLogitsProcessor(config, SimpleNamespace(device="cpu"))
    spec_config = SimpleNamespace(scheduler_config=config.scheduler_config, speculative_config=object())
    with pytest.raises(ValueError, match="speculative decoding"):
        BudgetForcingLogitsProcessor(spec_config, torch.device("cpu"), False)
