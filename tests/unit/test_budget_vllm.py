"""The vLLM adapter yields the core's token sequences under vLLM's batch updates (add, remove, swap, move).

Two persistent batches drive it: a local stand-in that replays vLLM V1's documented ``BatchUpdate``
sequences (removed, then added, then moved; condensing moves the last rows into holes one way;
reordering swaps), always run; and vLLM's own ``InputBatch`` with its ``BatchUpdateBuilder`` and
``LogitsProcessors``, run when vLLM imports (it does in a throwaway venv on a CPU machine; CI lacks it).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from s1kit.budget import Phase
from s1kit.budget.adapters.params import KEY, spec_from_params, spec_to_json, spec_to_params
from s1kit.budget.adapters.vllm import BudgetForcingLogitsProcessor
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

MAX_SEQS = 6


class MoveDirectionality(enum.Enum):  # the shape of vllm.v1.sample.logits_processor.MoveDirectionality
    UNIDIRECTIONAL = enum.auto()
    SWAP = enum.auto()


@dataclass(frozen=True)
class BatchUpdate:  # the shape of vllm.v1.sample.logits_processor.BatchUpdate
    batch_size: int
    removed: list[int]
    added: list[tuple[int, Any, list[int] | None, list[int]]]
    moved: list[tuple[int, int, MoveDirectionality]]


@dataclass
class StandInBatch:
    """vLLM V1's persistent batch bookkeeping (``InputBatch``), reduced to what processors see."""

    proc: BudgetForcingLogitsProcessor
    slots: list[int | None] = field(default_factory=list)  # index -> request
    removed: set[int] = field(default_factory=set)
    added: list[tuple[int, Any, list[int] | None, list[int]]] = field(default_factory=list)
    moved: list[tuple[int, int, MoveDirectionality]] = field(default_factory=list)
    changed: bool = False

    def add(self, r: int, params: Any, prompt_ids: list[int], out: list[int]) -> None:
        index = min(self.removed) if self.removed else len(self.slots)
        self.removed.discard(index)
        if index == len(self.slots):
            self.slots.append(r)
        else:
            self.slots[index] = r
        self.added.append((index, params, prompt_ids, out))
        self.changed = True

    def remove(self, r: int) -> None:
        index = self.slots.index(r)
        self.slots[index] = None
        self.removed.add(index)
        self.changed = True

    def condense(self) -> None:
        for empty in sorted(self.removed):
            last = max((i for i, s in enumerate(self.slots) if s is not None), default=-1)
            if last <= empty:
                break
            self.slots[empty], self.slots[last] = self.slots[last], None
            self.moved.append((last, empty, MoveDirectionality.UNIDIRECTIONAL))
            self.removed.discard(empty)  # a filled hole is reported as the move only, as in vLLM
        while self.slots and self.slots[-1] is None:
            self.slots.pop()

    def swap(self, i: int, j: int) -> None:
        self.slots[i], self.slots[j] = self.slots[j], self.slots[i]
        self.moved.append((i, j, MoveDirectionality.SWAP))
        self.changed = True

    def refresh(self) -> None:
        update = None
        if self.changed or self.moved:
            update = BatchUpdate(
                batch_size=sum(s is not None for s in self.slots),
                removed=sorted(self.removed, reverse=True),
                added=self.added,
                moved=self.moved,
            )
        self.proc.update_state(update)
        self.removed, self.added, self.moved, self.changed = set(), [], [], False

    def requests(self) -> list[int | None]:
        return list(self.slots)


def params_for(kind: int, as_json: bool) -> Any:
    spec = specs()[kind]
    if spec is None:
        return SimpleNamespace(extra_args=None)
    return SimpleNamespace(extra_args={KEY: spec_to_json(spec) if as_json else spec_to_params(spec)})


def serve(
    batch: Any, proc: Any, kinds: list[int], seed: int, make_params: Any
) -> tuple[dict[int, list[int]], dict[int, Any]]:
    """Run requests through a persistent batch with arrivals, finishes, condensing and swaps."""
    rng = random.Random(seed)
    outputs: dict[int, list[int]] = {}
    states: dict[int, Any] = {}
    waiting = list(range(len(kinds)))
    while waiting or any(r is not None for r in batch.requests()):
        batch.refresh()  # vLLM updates processors every step: the last sampled tokens are fed here
        # vLLM's model-runner order within a step: finished requests leave (their final core state is
        # read first), new ones fill the holes or append, condensing moves the last rows into the
        # remaining holes, and reordering swaps rows.
        for index, r in enumerate(batch.requests()):
            if r is not None and finished(outputs[r]):
                states[r] = proc.row_state(index)
                batch.remove(r)
        # Arrivals (the batch holds at most MAX_SEQS; holes from removals are reused first).
        while waiting and sum(r is not None for r in batch.requests()) < MAX_SEQS and rng.random() < 0.6:
            r = waiting.pop(0)
            outputs[r] = []
            batch.add(r, make_params(kinds[r], r % 2 == 0), prompt(r), outputs[r])
        batch.condense()
        live = [i for i, r in enumerate(batch.requests()) if r is not None]
        if len(live) >= 2 and rng.random() < 0.5:
            i, j = rng.sample(live, 2)
            batch.swap(i, j)
        batch.refresh()
        rows = batch.requests()
        if not any(r is not None for r in rows):
            continue
        logits = torch.stack(
            [model_logits(r, len(outputs[r])) if r is not None else torch.zeros(V) for r in rows]
        )
        logits = proc.apply(logits)
        for index, r in enumerate(rows):
            if r is not None:
                outputs[r].append(draw(logits[index], r, len(outputs[r])))
    return outputs, states


def check_against_core(kinds: list[int], outputs: dict[int, list[int]], states: dict[int, Any]) -> None:
    want, want_states = direct_sequences(kinds)
    for r in range(len(kinds)):
        assert outputs[r] == want[r], f"request {r} (kind {kinds[r]})"
        assert states[r] == want_states[r], f"request {r} (kind {kinds[r]})"
    # The scenario must exercise what it claims: caps, extensions, and untouched requests.
    live = [s for s in want_states if s is not None]
    assert any(s["capped"] for s in live) and any(s["extensions_used"] for s in live)
    assert all(s["phase"] != Phase.ERROR for s in live)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contract_batch_updates_keep_each_request_on_the_core_sequence(seed: int) -> None:
    kinds = request_kinds(14, seed)
    proc = BudgetForcingLogitsProcessor(
        SimpleNamespace(scheduler_config=SimpleNamespace(max_num_seqs=MAX_SEQS)), torch.device("cpu"), False
    )
    outputs, states = serve(StandInBatch(proc), proc, kinds, seed, params_for)
    check_against_core(kinds, outputs, states)


def test_contract_readded_request_is_replayed_from_its_output() -> None:
    """A preempted request comes back with its output so far: the adapter replays it exactly."""
    proc = BudgetForcingLogitsProcessor(
        SimpleNamespace(scheduler_config=SimpleNamespace(max_num_seqs=4)), torch.device("cpu"), False
    )
    batch = StandInBatch(proc)
    out: list[int] = []
    batch.add(0, params_for(0, False), prompt(0), out)
    for _ in range(9):
        batch.refresh()
        logits = proc.apply(model_logits(0, len(out))[None].clone())
        out.append(draw(logits[0], 0, len(out)))
    batch.refresh()  # feeds the last token
    before = proc.row_state(0)
    assert before is not None and before["thinking_tokens"] == 9
    batch.remove(0)
    batch.refresh()
    assert proc.governed == []
    batch.add(0, params_for(0, False), prompt(0), out)
    batch.refresh()
    assert proc.row_state(proc.governed[0]) == before


def test_invalid_budget_argument_is_rejected_on_admission() -> None:
    with pytest.raises(ValueError, match="s1kit_budget"):
        BudgetForcingLogitsProcessor.validate_params(SimpleNamespace(extra_args={KEY: "{not json"}))
    with pytest.raises(ValueError, match="unknown fields"):
        BudgetForcingLogitsProcessor.validate_params(SimpleNamespace(extra_args={KEY: {"vocab": 3}}))
    with pytest.raises(ValueError, match="answer_prefix"):
        bad = spec_to_params(specs()[0]) | {"answer_prefix": []}  # type: ignore[operator]
        BudgetForcingLogitsProcessor.validate_params(SimpleNamespace(extra_args={KEY: bad}))
    BudgetForcingLogitsProcessor.validate_params(SimpleNamespace(extra_args=None))
    spec = specs()[0]
    assert spec_from_params(spec_to_json(spec)) == spec  # type: ignore[arg-type]


# --- vLLM's own classes ---------------------------------------------------------------------------


def real_vllm() -> Any:
    vllm = pytest.importorskip("vllm", reason="vLLM is not installed (CI does not install it)")
    try:
        import vllm.v1.worker.gpu_input_batch as gib
        from vllm.v1.sample.logits_processor import LogitsProcessor, LogitsProcessors
    except Exception as e:  # vLLM present but not importable here
        pytest.skip(f"vLLM's V1 input batch does not import here: {e}")
    return vllm, gib, LogitsProcessor, LogitsProcessors


@dataclass
class RealBatch:
    """vLLM's ``InputBatch`` (CPU) behind the interface ``serve`` uses."""

    ib: Any
    gib: Any
    vllm: Any

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


def test_real_vllm_input_batch_drives_the_adapter_like_the_core() -> None:
    vllm, gib, base, processors = real_vllm()
    assert issubclass(BudgetForcingLogitsProcessor, base), "inside vLLM the adapter is a real LogitsProcessor"
    gib.PIN_MEMORY = False  # CPU-only machine: vLLM's CUDA build would pin host memory
    for seed in (0, 1):
        kinds = request_kinds(14, seed)
        config = SimpleNamespace(scheduler_config=SimpleNamespace(max_num_seqs=MAX_SEQS))
        proc = BudgetForcingLogitsProcessor(config, torch.device("cpu"), False)
        ib = gib.InputBatch(
            max_num_reqs=MAX_SEQS,
            max_model_len=128,
            max_num_batched_tokens=128,
            device=torch.device("cpu"),
            vocab_size=V,
            block_sizes=[16],
            max_num_blocks_per_req=[8],
            logitsprocs=processors([proc]),
        )

        def make_params(kind: int, as_json: bool) -> Any:
            spec = specs()[kind]
            extra = None if spec is None else {KEY: spec_to_json(spec) if as_json else spec_to_params(spec)}
            params = vllm.SamplingParams(max_tokens=64, extra_args=extra)
            BudgetForcingLogitsProcessor.validate_params(params)
            return params

        outputs, states = serve(RealBatch(ib, gib, vllm), proc, kinds, seed, make_params)
        check_against_core(kinds, outputs, states)
        assert np.all(np.asarray(proc.governed) < MAX_SEQS)
