"""The SGLang adapter yields the core's token sequences while SGLang filters, merges and reorders batches.

SGLang calls the processor with the rows of the requests that use it, in batch order, and one params
dict per row holding ``"__req__"``, a weak proxy to the request. The stand-in scheduler below does the
same with real weak proxies, shuffling rows every step (as ``filter_batch`` / ``merge_batch`` do),
and builds a fresh processor instance per step (as SGLang does per batch). With SGLang importable
(a throwaway venv here; not CI), the processor also goes through SGLang's own ``to_str`` / ``from_str``.
"""

from __future__ import annotations

import gc
import random
import weakref
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from s1kit.budget.adapters.masking import FORCED_LOGIT
from s1kit.budget.adapters.params import KEY, spec_to_params
from s1kit.budget.adapters.sglang import BudgetForcingLogitProcessor, BudgetRegistry
from tests.unit.serving_sim import (
    EOS,
    V,
    direct_sequences,
    draw,
    finished,
    model_logits,
    prompt,
    request_kinds,
    specs,
)


@dataclass
class Req:  # the fields of sglang.srt.managers.schedule_batch.Req the adapter reads
    rid: str
    origin_input_ids: list[int]
    output_ids: list[int] = field(default_factory=list)


def serve(kinds: list[int], seed: int, make_processor: Any) -> tuple[dict[int, list[int]], dict[int, Any]]:
    rng = random.Random(seed)
    registry = BudgetRegistry(capacity=2)  # small, so the registry must grow and recycle slots
    live: dict[int, Req] = {}
    states: dict[int, Any] = {}
    outputs: dict[int, list[int]] = {}
    waiting = list(range(len(kinds)))
    kind_params = [None if s is None else spec_to_params(s) for s in specs()]
    while waiting or live:
        for r in [r for r, req in live.items() if finished(req.output_ids)]:
            if kind_params[kinds[r]] is not None:  # one more call feeds the last token, then read
                row = {KEY: kind_params[kinds[r]], "__req__": weakref.proxy(live[r])}
                make_processor(registry)(torch.zeros(1, V), [row])
                states[r] = registry.row_state(live[r].rid)
            outputs[r] = live.pop(r).output_ids  # the request dies here: its weak proxies go dead
        while waiting and len(live) < 5 and rng.random() < 0.6:
            r = waiting.pop(0)
            live[r] = Req(rid=f"req-{r}", origin_input_ids=prompt(r))
        order = list(live)
        rng.shuffle(order)  # SGLang's filter/merge changes row positions freely
        if not order:
            continue
        params = []
        for r in order:
            p = kind_params[kinds[r]]
            params.append(None if p is None else {KEY: p, "__req__": weakref.proxy(live[r])})
        # Rows whose request uses the processor, as SGLang's apply_custom_logit_processor selects them.
        used = [i for i, p in enumerate(params) if p is not None]
        logits = torch.stack([model_logits(r, len(live[r].output_ids)) for r in order])
        if used:
            proc = make_processor(registry)
            sub = proc(logits[used].clone(), [params[i] for i in used])
            logits[used] = sub
        for i, r in enumerate(order):
            live[r].output_ids.append(draw(logits[i], r, len(live[r].output_ids)))
    return outputs, states


def plain_processor(registry: BudgetRegistry) -> Any:
    proc = BudgetForcingLogitProcessor()
    proc.registry = registry
    return proc


@pytest.mark.parametrize("seed", [0, 1])
def test_reordered_batches_keep_each_request_on_the_core_sequence(seed: int) -> None:
    kinds = request_kinds(12, seed + 10)
    outputs, states = serve(kinds, seed, plain_processor)
    want, want_states = direct_sequences(kinds, stop_done=True)
    for r in range(len(kinds)):
        assert outputs[r] == want[r], f"request {r} (kind {kinds[r]})"
        assert states.get(r) == want_states[r], f"request {r} (kind {kinds[r]})"
    assert any(s is not None and s["extensions_used"] for s in want_states)


def test_dead_requests_free_their_slots() -> None:
    registry = BudgetRegistry(capacity=2)
    proc = plain_processor(registry)
    spec = specs()[0]
    assert spec is not None
    reqs = [Req(rid=f"r{i}", origin_input_ids=prompt(i)) for i in range(2)]
    params = [{KEY: spec_to_params(spec), "__req__": weakref.proxy(r)} for r in reqs]
    proc(torch.zeros(2, 32), params)
    assert len(registry) == 2
    del reqs, params
    gc.collect()
    newcomer = Req(rid="r9", origin_input_ids=prompt(9))
    proc(torch.zeros(1, 32), [{KEY: spec_to_params(spec), "__req__": weakref.proxy(newcomer)}])
    assert len(registry) == 1, "the dead requests' slots were reclaimed instead of growing the batch"


def test_rows_without_the_request_reference_are_refused() -> None:
    spec = specs()[0]
    assert spec is not None
    with pytest.raises(ValueError, match="__req__"):
        plain_processor(BudgetRegistry())(torch.zeros(1, 32), [{KEY: spec_to_params(spec)}])


def test_speculative_decoding_rows_are_refused() -> None:
    """SGLang repeats a request's params once per draft token: refused, never counted twice."""
    spec = specs()[0]
    assert spec is not None
    req = Req(rid="r0", origin_input_ids=prompt(0))
    row = {KEY: spec_to_params(spec), "__req__": weakref.proxy(req)}
    with pytest.raises(ValueError, match="speculative decoding"):
        plain_processor(BudgetRegistry())(torch.zeros(3, V), [row, row, row])


def test_retraction_that_discards_the_output_replays_the_request() -> None:
    """With input_embeds, SGLang's retraction resets output_ids: the row starts again from its prompt."""
    spec = specs()[0]
    assert spec is not None
    registry = BudgetRegistry()
    proc = plain_processor(registry)
    req = Req(rid="r0", origin_input_ids=prompt(0))
    row = {KEY: spec_to_params(spec), "__req__": weakref.proxy(req)}
    proc(torch.zeros(1, V), [row])
    fresh = registry.row_state("r0")
    for k in range(5):
        logits = proc(model_logits(0, k)[None].clone(), [row])
        req.output_ids.append(draw(logits[0], 0, k))
    proc(torch.zeros(1, V), [row])
    assert registry.row_state("r0") != fresh
    req.output_ids = []  # reset_for_retract with input_embeds
    proc(torch.zeros(1, V), [row])
    assert registry.row_state("r0") == fresh


def test_finished_budget_is_stopped_with_eos_and_specs_without_eos_are_refused() -> None:
    spec = specs()[0]
    assert spec is not None
    spec = spec.replace(max_thinking_tokens=2, max_answer_tokens=1)
    proc = plain_processor(BudgetRegistry())
    req = Req(rid="r0", origin_input_ids=[7, 8])
    row = {KEY: spec_to_params(spec), "__req__": weakref.proxy(req)}
    while not req.output_ids or req.output_ids[-1] != EOS:
        logits = torch.zeros(1, V)
        logits[0, 0] = 5.0  # the model wants token 0 forever: only the budget ends this request
        edited = proc(logits.clone(), [row])
        req.output_ids.append(int(torch.argmax(edited[0])))
        if req.output_ids[-1] != 0:  # forced (answer prefix, then EOS): one cell set, the rest as is
            assert (edited != logits).nonzero().tolist() == [[0, req.output_ids[-1]]]
            assert edited[0, req.output_ids[-1]] == FORCED_LOGIT
        assert len(req.output_ids) < 12
    assert req.output_ids == [0, 0, 22, 5, 6, EOS]
    other = Req("r1", [7])
    bad = {KEY: spec_to_params(spec) | {"eos": []}, "__req__": weakref.proxy(other)}
    with pytest.raises(ValueError, match="no eos"):
        proc(torch.zeros(1, V), [bad])


def test_real_sglang_serializes_the_processor_and_runs_it() -> None:
    pytest.importorskip("sglang", reason="SGLang is not installed (CI does not install it)")
    try:
        from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor
    except Exception as e:
        pytest.skip(f"SGLang's custom_logit_processor does not import here: {e}")
    assert issubclass(BudgetForcingLogitProcessor, CustomLogitProcessor)
    text = BudgetForcingLogitProcessor.to_str()  # what a client sends as "custom_logit_processor"

    def from_wire(registry: BudgetRegistry) -> Any:
        proc = CustomLogitProcessor.from_str(text)  # what SGLang does per batch
        assert isinstance(proc, BudgetForcingLogitProcessor)
        proc.registry = registry
        return proc

    kinds = request_kinds(8, 3)
    outputs, _ = serve(kinds, 3, from_wire)
    want, _ = direct_sequences(kinds, stop_done=True)
    assert [outputs[r] for r in range(len(kinds))] == want
