"""vLLM Model Runner V2's request-state bookkeeping around a logits processor, and the override-mode reference.

:func:`serve` does to the processor what Model Runner V2 does (vllm/v1/worker/gpu: ``states.py``
``RequestState.add_request``, ``model_runner.py`` ``add_requests``, ``input_batch.py``
``post_update``): slots from a free list (``pop()``, freed slots appended, no removal call), the
token history written into ``all_token_ids`` with ``prompt_len``/``prefill_len``/``total_len``, then
``add_request`` per admitted request and one ``apply_staged_writes``; every step the running
requests in a fresh order, one logits row each, ``apply(logits, ctx)``, greedy sampling, and the
sampled token committed on the device (``all_token_ids[slot, total_len] = t; total_len += 1``).
Preemption frees a slot and later re-adds the request with its output so far as prefill.

The "model" is :func:`tests.unit.test_budget_mask_greedy.stand_in_logits` (a function of the stream).
The reference (:func:`override_run`) is the core in override mode (s1kit's own engine) with the
serving stack's stop rule: a request ends at an EOS id, at ``max_new`` tokens, or, once its row is
DONE or in error, with the spec's first EOS id forced.

vLLM's ``RequestState`` needs CUDA to construct (pinned UVA buffers, a Triton write kernel), so the
buffers here are plain tensors with the attribute names the processor reads (``.gpu``, ``.np``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from s1kit.budget import BudgetBatch, BudgetSpec, Phase
from tests.unit.test_budget_mask_greedy import stand_in_logits

FIELDS = ("phase", "error", "thinking_tokens", "answer_tokens", "forced_tokens", "extensions_used", "capped")
PLAIN_EOS = 0  # the stop token of requests without a budget


@dataclass
class Request:
    spec: BudgetSpec | None
    prompt: list[int]
    seed: int
    bias: list[float]
    outputs: list[int] = field(default_factory=list)
    slot: int = -1
    resumed: bool = False
    states: dict[int, tuple[int, ...]] = field(default_factory=dict)  # outputs fed -> counters


@dataclass
class Reference:
    tokens: list[int]
    counters: list[tuple[int, ...]]  # after each token
    own_redirect: list[bool]  # the model itself chose the token that replaces end attempts


class Buffer:
    """A request-state buffer: ``.gpu`` (the device tensor) and ``.np`` (its host array, if any)."""

    def __init__(self, gpu: torch.Tensor) -> None:
        self.gpu = gpu
        self.np = gpu.numpy() if gpu.device.type == "cpu" else None


def request_states(
    capacity: int, width: int, vocab: int, make: Callable[..., Any] = SimpleNamespace, device: str = "cpu"
) -> Any:
    """The fields of vLLM's ``LogitsProcRequestState`` (``make``: that class, or a namespace): the
    token history and ``total_len`` on ``device``, the prompt and prefill lengths on the host."""
    dev = torch.device(device)
    return make(
        device=dev,
        max_num_reqs=capacity,
        vocab_size=vocab,
        all_token_ids=Buffer(torch.zeros(capacity, width, dtype=torch.int32, device=dev)),
        prompt_len=Buffer(torch.zeros(capacity, dtype=torch.int32)),
        prefill_len=Buffer(torch.zeros(capacity, dtype=torch.int32)),
        total_len=Buffer(torch.zeros(capacity, dtype=torch.int32, device=dev)),
    )


def finished(req: Request, max_new: int) -> bool:
    eos = req.spec.eos if req.spec is not None else (PLAIN_EOS,)
    return (bool(req.outputs) and req.outputs[-1] in eos) or len(req.outputs) >= max_new


def serve(
    proc: Any,
    rs: Any,
    reqs: list[Request],
    params: Callable[[Request], Any],
    context: Callable[..., Any],
    rng: np.random.Generator,
    max_new: int,
    preempt: float = 0.0,
) -> None:
    """Run every request to its end through ``proc`` (see the module docstring); ``params(req)``
    builds its SamplingParams, ``context(**fields)`` a ``LogitsContext``."""
    free = list(range(rs.max_num_reqs))
    waiting = list(reqs)
    running: list[Request] = []
    while waiting or running:
        admitted = False
        for _ in range(int(rng.integers(0, 3)) if running else 1):
            if not (waiting and free):
                break
            req = waiting.pop(0)
            req.slot = slot = free.pop()
            history = req.prompt + req.outputs
            rs.all_token_ids.gpu[slot, : len(history)] = torch.tensor(history, dtype=torch.int32)
            rs.prompt_len.np[slot] = len(req.prompt)
            rs.prefill_len.np[slot] = len(history)
            rs.total_len.gpu[slot] = len(history)
            req.resumed = bool(req.outputs)
            proc.add_request(slot, params(req))
            running.append(req)
            admitted = True
        if admitted:
            proc.apply_staged_writes()
        order = [running[i] for i in rng.permutation(len(running))]
        idx_np = np.asarray([r.slot for r in order], np.int64)
        idx = torch.from_numpy(idx_np).to(rs.device)
        logits = torch.stack([stand_in_logits(r.seed, r.prompt + r.outputs, r.bias).float() for r in order])
        logits = logits.to(rs.device)
        n = len(order)
        out = proc.apply(
            logits,
            context(
                expanded_idx_mapping=idx,
                idx_mapping=idx,
                idx_mapping_np=idx_np,
                expanded_local_pos=torch.zeros(n, dtype=torch.int32),
                input_ids=torch.tensor([[0, *r.prompt, *r.outputs][-1] for r in order], dtype=torch.int32),
                pos=torch.tensor([len(r.prompt) + len(r.outputs) for r in order], dtype=torch.int64),
                seq_lens_upper_bound_np=np.asarray([len(r.prompt) + len(r.outputs) + 1 for r in order]),
            ),
        )
        for r in order:
            if r.spec is not None:
                state = proc.row_state(r.slot)
                r.states[len(r.outputs)] = tuple(int(state[f]) for f in FIELDS)
        for i, r in enumerate(order):
            t = int(torch.argmax(out[i]))
            rs.all_token_ids.gpu[r.slot, int(rs.total_len.gpu[r.slot])] = t
            rs.total_len.gpu[r.slot] += 1
            r.outputs.append(t)
        for r in list(running):
            if finished(r, max_new):
                running.remove(r)
                free.append(r.slot)
        if running and rng.random() < preempt:
            victim = running.pop(int(rng.integers(len(running))))
            free.append(victim.slot)
            waiting.insert(0, victim)


def override_run(req: Request, max_new: int) -> Reference:
    """The request decoded by the core in override mode, with the stop rule of :func:`serve`."""
    assert req.spec is not None
    spec = req.spec
    batch = BudgetBatch(1, max_rollback=0)
    batch.insert(0, spec)
    batch.process_prompt(0, req.prompt)
    stream, tokens, counters, own = list(req.prompt), [], [], []
    out = np.zeros(1, np.int64)
    force, redirect = np.zeros(1, np.int64), np.zeros(1, np.int64)
    ban = np.zeros((1, max(batch.ban_width, 1)), np.int32)
    while len(tokens) < max_new:
        if batch.accounting().phase[0] in (Phase.DONE, Phase.ERROR):
            t = spec.eos[0]  # the request is stopped
            redirect[0] = -1
        else:
            batch.mask(force, redirect, ban)
            sampled = int(torch.argmax(stand_in_logits(req.seed, stream, req.bias)))
            batch.step(np.asarray([sampled], np.int64), out)
            t = int(out[0]) if out[0] >= 0 else sampled
            redirect[0] = redirect[0] if sampled == redirect[0] else -1
        own.append(bool(redirect[0] >= 0))
        stream.append(t)
        tokens.append(t)
        a = batch.accounting()
        counters.append(tuple(int(getattr(a, f)[0]) for f in FIELDS))
        if t in spec.eos:
            break
    return Reference(tokens, counters, own)


def check(reqs: list[Request], max_new: int) -> int:
    """Assert each budget-forced request's tokens and per-step counters equal the reference; returns
    how many resumed requests were skipped because their replay is ambiguous (documented)."""
    ambiguous = 0
    for r in reqs:
        if r.spec is None:
            continue
        ref = override_run(r, max_new)
        if r.resumed and any(ref.own_redirect):
            ambiguous += 1
            continue
        assert r.outputs == ref.tokens, (r.spec, r.prompt)
        for k, counters in r.states.items():
            if k > 0:
                assert counters == ref.counters[k - 1], (k, r.spec, r.prompt)
    return ambiguous
