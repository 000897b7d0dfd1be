"""The vLLM adapter's bookkeeping yields the core's token sequences under vLLM's batch updates.

A local stand-in replays vLLM V1's documented ``BatchUpdate`` sequences (removed, then added, then
moved; condensing moves the last rows into holes one way; reordering swaps) and, optionally, its
asynchronous scheduling (placeholder ids until just before ``apply``) into
:class:`~s1kit.budget.adapters.vllm_batch.PersistentBatchBudget`, which needs no vLLM. The same
scenarios against vLLM's own ``InputBatch``, and vLLM end to end, are in ``tests/engines`` (run by
``make test-engines`` in virtualenvs with the real vLLM releases).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from s1kit.budget import Phase
from s1kit.budget.adapters.params import KEY, spec_from_params, spec_to_json, spec_to_params
from s1kit.budget.adapters.vllm_batch import PersistentBatchBudget, check_request
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

MAX_SEQS = 6
PLACEHOLDER = -1  # what vLLM appends for a token still on the device (async scheduling)


class Proc(PersistentBatchBudget):
    """The adapter's bookkeeping behind vLLM's processor method names."""

    def update_state(self, update: Any) -> None:
        self.update(update)


def new_proc(capacity: int = MAX_SEQS) -> Proc:
    return Proc(capacity)


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

    proc: Any
    slots: list[int | None] = field(default_factory=list)  # index -> request
    removed: set[int] = field(default_factory=set)
    added: list[tuple[int, Any, list[int] | None, list[int]]] = field(default_factory=list)
    moved: list[tuple[int, int, MoveDirectionality]] = field(default_factory=list)
    changed: bool = False
    pending: dict[int, int] = field(default_factory=dict)  # request -> token behind its placeholder
    placeholders_seen: bool = False
    lists: dict[int, list[int]] = field(default_factory=dict)  # request -> its output list

    def add(self, r: int, params: Any, prompt_ids: list[int], out: list[int]) -> None:
        index = min(self.removed) if self.removed else len(self.slots)
        self.removed.discard(index)
        if index == len(self.slots):
            self.slots.append(r)
        else:
            self.slots[index] = r
        self.added.append((index, params, prompt_ids, out))
        self.lists[r] = out
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

    def sampled(self, tokens_by_index: list[int]) -> None:
        """The step's tokens, still "on the device" (async scheduling)."""
        self.pending = {r: tokens_by_index[i] for i, r in enumerate(self.slots) if r is not None}

    def settled(self, r: int, out: list[int]) -> list[int]:
        """Request ``r``'s output as the scheduler knows it (its placeholder resolved)."""
        if out and out[-1] == PLACEHOLDER and r in self.pending:
            return [*out[:-1], self.pending[r]]
        return out

    def resolve(self) -> None:
        """vLLM's ``update_async_output_token_ids``: placeholders become the sampled tokens."""
        for r, token in self.pending.items():
            out = self.lists[r]
            if out and out[-1] == PLACEHOLDER:
                out[-1] = token
                self.placeholders_seen = True
        self.pending.clear()


def params_for(kind: int, as_json: bool) -> Any:
    spec = specs()[kind]
    if spec is None:
        return SimpleNamespace(extra_args=None)
    return SimpleNamespace(extra_args={KEY: spec_to_json(spec) if as_json else spec_to_params(spec)})


def serve(
    batch: Any, proc: Any, kinds: list[int], seed: int, make_params: Any, async_scheduling: bool = False
) -> tuple[dict[int, list[int]], dict[int, Any]]:
    """Run requests through a persistent batch with arrivals, finishes, condensing and swaps.

    ``async_scheduling``: as in vLLM's asynchronous scheduling, a sampled token reaches the output
    list as a placeholder (-1); the batch changes of the next step (and its ``update_state``) see the
    placeholder, and ``batch.resolve()`` fills in the token just before ``apply``.
    """
    rng = random.Random(seed)
    outputs: dict[int, list[int]] = {}
    states: dict[int, Any] = {}
    waiting = list(range(len(kinds)))
    while waiting or any(r is not None for r in batch.requests()):
        batch.refresh()  # vLLM updates processors every step
        # vLLM's model-runner order within a step: finished requests leave (their final core state is
        # read first), new ones fill the holes or append, condensing moves the last rows into the
        # remaining holes, and reordering swaps rows.
        for index, r in enumerate(batch.requests()):
            if r is not None and finished(batch.settled(r, outputs[r])):
                outputs[r][:] = batch.settled(r, outputs[r])  # the scheduler's view of the request
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
        batch.resolve()  # placeholders become tokens just before the sampler runs
        logits = torch.stack(
            [model_logits(r, len(outputs[r])) if r is not None else torch.zeros(V) for r in rows]
        )
        logits = proc.apply(logits)
        sampled = [-1] * len(rows)
        for index, r in enumerate(rows):
            if r is not None:
                sampled[index] = draw(logits[index], r, len(outputs[r]))
                outputs[r].append(PLACEHOLDER if async_scheduling else sampled[index])
        if async_scheduling:
            batch.sampled(sampled)
    return outputs, states


def check_against_core(kinds: list[int], outputs: dict[int, list[int]], states: dict[int, Any]) -> None:
    want, want_states = direct_sequences(kinds, stop_done=True)
    for r in range(len(kinds)):
        assert outputs[r] == want[r], f"request {r} (kind {kinds[r]})"
        assert states[r] == want_states[r], f"request {r} (kind {kinds[r]})"
    # The scenario must exercise what it claims: caps, extensions, finished budgets stopped by EOS,
    # and untouched requests.
    live = [s for s in want_states if s is not None]
    assert any(s["capped"] for s in live) and any(s["extensions_used"] for s in live)
    assert any(s["phase"] == Phase.DONE for s in live)
    assert all(s["phase"] != Phase.ERROR for s in live)


@pytest.mark.parametrize("async_scheduling", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contract_batch_updates_keep_each_request_on_the_core_sequence(
    seed: int, async_scheduling: bool
) -> None:
    kinds = request_kinds(14, seed)
    proc = new_proc()
    batch = StandInBatch(proc)
    outputs, states = serve(batch, proc, kinds, seed, params_for, async_scheduling)
    check_against_core(kinds, outputs, states)
    assert batch.placeholders_seen == async_scheduling


def test_contract_readded_request_is_replayed_from_its_output() -> None:
    """A preempted request comes back with its output so far: the adapter replays it exactly."""
    proc = new_proc(4)
    batch = StandInBatch(proc)
    out: list[int] = []
    batch.add(0, params_for(0, False), prompt(0), out)
    for _ in range(9):
        batch.refresh()
        logits = proc.apply(model_logits(0, len(out))[None].clone())
        out.append(draw(logits[0], 0, len(out)))
    batch.refresh()
    before = proc.row_state(0)  # reading the state feeds the last token
    assert before is not None and before["thinking_tokens"] == 9
    batch.remove(0)
    batch.refresh()
    assert proc.governed == []
    batch.add(0, params_for(0, False), prompt(0), out)
    batch.refresh()
    assert proc.row_state(proc.governed[0]) == before


def test_withdrawn_tokens_rebuild_the_row() -> None:
    """Output tokens withdrawn after they were fed (a KV-load failure) are replayed, not kept."""
    proc = new_proc(2)
    batch = StandInBatch(proc)
    out: list[int] = []
    batch.add(0, params_for(0, False), prompt(0), out)
    batch.refresh()
    states = []
    for _ in range(6):
        logits = proc.apply(model_logits(0, len(out))[None].clone())
        out.append(draw(logits[0], 0, len(out)))
        states.append(proc.row_state(0))
    del out[3:]
    assert proc.row_state(0) == states[2]


def test_done_request_is_stopped_with_eos() -> None:
    """Once the answer cap is reached, the only allowed token is EOS (vLLM then ends the request)."""
    spec = specs()[0].replace(max_thinking_tokens=2, max_answer_tokens=1)  # type: ignore[union-attr]
    proc = new_proc(1)
    params = SimpleNamespace(extra_args={KEY: spec_to_params(spec)})
    out: list[int] = []
    proc.update_state(BatchUpdate(1, [], [(0, params, [7, 8], out)], []))
    phases = []
    while not out or out[-1] != EOS:
        logits = torch.zeros(1, V)
        logits[0, 0] = 5.0  # the model wants token 0 forever: only the budget ends this request
        logits = proc.apply(logits)
        assert len(out) < 12, out
        out.append(int(torch.argmax(logits[0])))
        state = proc.row_state(0)
        assert state is not None
        phases.append(state["phase"])
    # thinking (2 tokens, then capped), the answer prefix 22 5 6 (its tokens count as answer
    # tokens, so the answer cap of 1 is reached with it), then EOS forced at once
    assert out == [0, 0, 22, 5, 6, EOS]
    assert phases[-2:] == [Phase.DONE, Phase.DONE]


def test_requests_the_adapter_cannot_run_exactly_are_refused() -> None:
    spec = spec_to_params(specs()[0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="thinking_token_budget"):
        check_request(SimpleNamespace(extra_args={KEY: spec}, thinking_token_budget=8))
    with pytest.raises(ValueError, match="structured_outputs"):
        check_request(SimpleNamespace(extra_args={KEY: spec}, structured_outputs=object()))
    with pytest.raises(ValueError, match="no eos"):
        check_request(SimpleNamespace(extra_args={KEY: spec | {"eos": []}}))
    assert check_request(SimpleNamespace(extra_args=None, thinking_token_budget=8)) is None


def test_invalid_budget_argument_is_rejected_on_admission() -> None:
    with pytest.raises(ValueError, match="s1kit_budget"):
        check_request(SimpleNamespace(extra_args={KEY: "{not json"}))
    with pytest.raises(ValueError, match="unknown fields"):
        check_request(SimpleNamespace(extra_args={KEY: {"vocab": 3}}))
    with pytest.raises(ValueError, match="answer_prefix"):
        bad = spec_to_params(specs()[0]) | {"answer_prefix": []}  # type: ignore[arg-type]
        check_request(SimpleNamespace(extra_args={KEY: bad}))
    assert check_request(SimpleNamespace(extra_args=None)) is None
    spec = specs()[0]
    assert spec_from_params(spec_to_json(spec)) == spec  # type: ignore[arg-type]


def test_importing_the_adapter_without_a_supported_vllm_names_the_range() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed here: tests/engines checks the version gate against it")
    with pytest.raises(ImportError, match=r">=0\.32,<0\.34"):
        import s1kit.budget.adapters.vllm  # noqa: F401
