"""The SGLang adapter with SGLang's own objects: ``Req``, the processor wire format, and the sampler's
``apply_custom_logit_processor`` (which selects rows, repeats params per draft token, writes back).

Runs where SGLang imports (``make test-engines``: the sglang venv); skips elsewhere with the reason.
"""

from __future__ import annotations

import random
from array import array
from typing import Any

import pytest
import torch

from s1kit.budget.adapters.params import KEY, spec_to_params
from tests.unit.serving_sim import (
    V,
    direct_sequences,
    draw,
    finished,
    model_logits,
    prompt,
    request_kinds,
    specs,
)

pytestmark = pytest.mark.filterwarnings("ignore")  # SGLang's own deprecation warnings

sglang = pytest.importorskip("sglang", reason="SGLang is not installed (make test-engines installs it)")


def sglang_parts() -> Any:
    try:
        from sglang.srt.layers.sampler import apply_custom_logit_processor
        from sglang.srt.managers.schedule_batch import Req
        from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor
        from sglang.srt.sampling.sampling_batch_info import ProcessorEntry
        from sglang.srt.sampling.sampling_params import SamplingParams
    except Exception as e:  # SGLang's scheduler modules need its GPU kernels on some releases
        pytest.skip(f"SGLang {sglang.__version__}'s scheduler classes do not import here: {e!r}")
    return Req, SamplingParams, CustomLogitProcessor, ProcessorEntry, apply_custom_logit_processor


class BatchInfo:
    """The fields of ``SamplingBatchInfo`` that ``apply_custom_logit_processor`` reads."""

    def __init__(self, reqs: list[Any], processor: Any, entry_cls: Any) -> None:
        self.custom_params = [r.sampling_params.custom_params for r in reqs]
        rows = [i for i, r in enumerate(reqs) if r.custom_logit_processor is not None]
        self.custom_logit_processor = {0: entry_cls(processor, rows, torch.tensor(rows, dtype=torch.long))}
        self.device = "cpu"

    def __len__(self) -> int:
        return len(self.custom_params)


def new_req(parts: Any, r: int, kind: int, wire: str) -> Any:
    Req, SamplingParams, *_ = parts
    spec = specs()[kind]
    custom = None if spec is None else {KEY: spec_to_params(spec)}
    # temperature 0: redirects attributed by argmax, as serving_sim's reference does.
    sp = SamplingParams(max_new_tokens=64, temperature=0.0, custom_params=custom)
    return Req(
        f"req-{r}", "", array("q", prompt(r)), sp, custom_logit_processor=None if spec is None else wire
    )


def processor_from_wire(parts: Any, wire: str) -> Any:
    from s1kit.budget.adapters.sglang import BudgetForcingLogitProcessor, BudgetRegistry

    proc = parts[2].from_str(wire)  # what SGLang does per batch
    assert isinstance(proc, BudgetForcingLogitProcessor)
    proc.registry = registry = BudgetRegistry(capacity=2)  # small: grows and recycles slots
    return proc, registry


def test_real_requests_and_sampler_give_the_core_sequences() -> None:
    from s1kit.budget.adapters.sglang import BudgetForcingLogitProcessor

    parts = sglang_parts()
    assert issubclass(BudgetForcingLogitProcessor, parts[2])
    wire = BudgetForcingLogitProcessor.to_str()  # what a client sends as "custom_logit_processor"
    proc, registry = processor_from_wire(parts, wire)
    kinds = request_kinds(10, 5)
    rng = random.Random(5)
    live: dict[int, Any] = {}
    outputs: dict[int, list[int]] = {}
    states: dict[int, Any] = {}
    waiting = list(range(len(kinds)))
    while waiting or live:
        for r in [r for r, req in live.items() if finished(list(req.output_ids))]:
            if specs()[kinds[r]] is not None:  # one more call feeds the last token, then read
                req = live[r]
                proc(torch.zeros(1, V), [req.sampling_params.custom_params])
                states[r] = registry.row_state(req.rid)
            outputs[r] = list(live.pop(r).output_ids)
        while waiting and len(live) < 4 and rng.random() < 0.6:
            r = waiting.pop(0)
            live[r] = new_req(parts, r, kinds[r], wire)
        order = list(live)
        rng.shuffle(order)
        if not order:
            continue
        reqs = [live[r] for r in order]
        logits = torch.stack([model_logits(r, len(live[r].output_ids)) for r in order])
        if any(r.custom_logit_processor for r in reqs):
            parts[4](logits, BatchInfo(reqs, proc, parts[3]))  # SGLang's own row selection
        for i, r in enumerate(order):
            live[r].output_ids.append(draw(logits[i], r, len(live[r].output_ids)))
    want, want_states = direct_sequences(kinds, stop_done=True)
    for r in range(len(kinds)):
        assert outputs[r] == want[r], f"request {r} (kind {kinds[r]})"
        assert states.get(r) == want_states[r], f"request {r} (kind {kinds[r]})"


def test_speculative_decoding_rows_are_refused() -> None:
    """SGLang's sampler repeats each request's params once per draft token: refused loudly."""
    from s1kit.budget.adapters.sglang import BudgetForcingLogitProcessor

    parts = sglang_parts()
    wire = BudgetForcingLogitProcessor.to_str()
    proc, _ = processor_from_wire(parts, wire)
    reqs = [new_req(parts, 0, 0, wire), new_req(parts, 1, 0, wire)]
    with pytest.raises(ValueError, match="speculative decoding"):
        parts[4](torch.zeros(2 * 3, V), BatchInfo(reqs, proc, parts[3]), num_tokens_in_batch=3)


def test_retraction_with_input_embeds_replays_the_request() -> None:
    from s1kit.budget.adapters.sglang import BudgetForcingLogitProcessor

    parts = sglang_parts()
    wire = BudgetForcingLogitProcessor.to_str()
    proc, registry = processor_from_wire(parts, wire)
    req = new_req(parts, 0, 0, wire)
    params = [req.sampling_params.custom_params]
    proc(torch.zeros(1, V), params)
    fresh = registry.row_state(req.rid)
    for k in range(5):
        logits = proc(model_logits(0, k)[None].clone(), params)
        req.output_ids.append(draw(logits[0], 0, k))
    proc(torch.zeros(1, V), params)
    assert registry.row_state(req.rid) != fresh
    req.input_embeds = [[0.0]]  # a request sent with input_embeds
    try:
        req.reset_for_retract()  # SGLang's own retraction: discards output_ids
    except Exception as e:
        pytest.fail(f"SGLang's reset_for_retract did not run on a fresh request: {e!r}")
    assert len(req.output_ids) == 0
    proc(torch.zeros(1, V), params)
    assert registry.row_state(req.rid) == fresh
