"""The Model Runner V2 processor's logic (no vLLM needed): same tokens and accounting as override mode.

:class:`~s1kit.budget.adapters.vllm_v2_device.RunnerV2Budget` is driven through Model Runner V2's
bookkeeping (:mod:`tests.unit.mrv2_sim`: slot recycling without removal calls, reordered rows,
tokens committed on the device, preemption and resumption) on random specs, prompts and greedy
"models", and must emit exactly what the core's override mode emits, with the same counters after
every step. The same file runs inside vLLM 0.33/0.34 with vLLM's own classes:
tests/engines/test_vllm_v2_runner.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from s1kit.budget import BudgetSpec, Phase, RowError
from s1kit.budget.adapters.masking import apply_mask
from s1kit.budget.adapters.params import KEY, spec_to_params
from s1kit.budget.adapters.vllm_v2_device import FORCED_LOGIT, SPECULATIVE_REFUSED, RunnerV2Budget
from tests.unit.budget_reference import RefSpec
from tests.unit.mrv2_sim import Request, check, request_states, serve
from tests.unit.test_budget_equivalence import V, specs

MAX_NEW = 24
CAPACITY = 4


def params(req: Request, temperature: float = 0.0) -> Any:
    extra = {} if req.spec is None else {KEY: spec_to_params(req.spec)}
    return SimpleNamespace(
        extra_args=extra, temperature=temperature, thinking_token_budget=None, structured_outputs=None
    )


requests = st.lists(
    st.tuples(
        st.integers(0, 3),  # which spec (3: none)
        st.lists(st.integers(0, V - 1), max_size=4),
        st.integers(0, 2**31 - 1),
        st.lists(st.sampled_from([0.0, 0.0, 1.0, 2.5]), min_size=V, max_size=V),
    ),
    min_size=1,
    max_size=7,
)


def build(spec_list: list[RefSpec], drawn: list[tuple]) -> list[Request]:
    """Requests over the drawn specs; a spec without EOS (which the adapter refuses) means none."""
    native = [BudgetSpec(**vars(r)) if r.eos else None for r in spec_list]
    return [
        Request(native[k] if k < len(native) else None, prompt, seed, bias) for k, prompt, seed, bias in drawn
    ]


def run(reqs: list[Request], seed: int, preempt: float = 0.0, device: str = "cpu") -> int:
    rs = request_states(CAPACITY, 64, V, device=device)
    proc = RunnerV2Budget(SimpleNamespace(speculative_config=None), rs)
    serve(proc, rs, reqs, params, SimpleNamespace, np.random.default_rng(seed), MAX_NEW, preempt)
    return check(reqs, MAX_NEW)


@settings(max_examples=150, deadline=None)
@given(st.lists(specs(), min_size=3, max_size=3), requests, st.integers(0, 2**32 - 1))
def test_equals_override_mode_under_slot_recycling(spec_list: list[RefSpec], drawn: list, seed: int) -> None:
    reqs = build(spec_list, drawn)
    assert run(reqs, seed) == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(specs(), min_size=3, max_size=3), requests, st.integers(0, 2**32 - 1))
def test_equals_override_mode_with_preemption(spec_list: list[RefSpec], drawn: list, seed: int) -> None:
    reqs = build(spec_list, drawn)
    run(reqs, seed, preempt=0.3)  # resumed requests with an ambiguous replay are skipped by check


def spec(**kw: Any) -> BudgetSpec:
    return BudgetSpec(vocab_size=V, **{"think_end": ((5,),), "eos": (9,), "answer_prefix": (8,), **kw})


def single(sp: BudgetSpec, temperature: float = 0.0) -> tuple[RunnerV2Budget, Any, Any]:
    rs = request_states(2, 16, V)
    proc = RunnerV2Budget(SimpleNamespace(speculative_config=None), rs)
    rs.all_token_ids.gpu[0, 0] = 1  # the prompt [1] opens thinking for think_start ((1,),)
    rs.prompt_len.np[0] = rs.prefill_len.np[0] = 1
    rs.total_len.gpu[0] = 1
    proc.add_request(0, params(Request(sp, [1], 0, []), temperature))
    proc.apply_staged_writes()
    idx = torch.zeros(1, dtype=torch.int64)
    ctx = SimpleNamespace(expanded_idx_mapping=idx, idx_mapping=idx, idx_mapping_np=idx.numpy())
    return proc, rs, ctx


def commit(rs: Any, t: int) -> None:
    n = int(rs.total_len.gpu[0])
    rs.all_token_ids.gpu[0, n] = t
    rs.total_len.gpu[0] = n + 1


def test_a_forced_token_not_honoured_puts_the_row_in_its_error_phase_and_stops_it() -> None:
    proc, rs, ctx = single(spec(think_start=((1,),), max_thinking_tokens=0))
    logits = torch.zeros(1, V)
    proc.apply(logits, ctx)
    assert int(torch.argmax(logits[0])) == 8 and logits[0, 8] == FORCED_LOGIT  # the answer prefix
    commit(rs, 3)  # the engine emitted something else
    logits = torch.zeros(1, V)
    proc.apply(logits, ctx)
    state = proc.row_state(0)
    assert state is not None
    assert (state["phase"], state["error"]) == (Phase.ERROR, RowError.MASK_NOT_HONOURED)
    assert int(torch.argmax(logits[0])) == 9  # stopped with EOS


def test_sampled_rows_get_apply_masks_pooled_logits() -> None:
    sp = spec(think_start=((1,),), extensions=((3, 4),), num_extensions=1)
    proc, _, ctx = single(sp, temperature=0.7)
    logits = torch.randn(1, V)
    mine = logits.clone()
    proc.apply(mine, ctx)
    ref = logits.clone()
    apply_mask(
        ref, np.zeros(1, np.int64), np.asarray([-1]), np.asarray([3]), np.asarray([[5, 9]], np.int32),
        sample_N=np.asarray([True]), temperature_N=np.asarray([0.7]),
    )  # fmt: skip
    torch.testing.assert_close(mine, ref)


def test_two_new_tokens_at_once_are_an_error_not_a_silent_skip() -> None:
    proc, rs, ctx = single(spec(think_start=((1,),), max_thinking_tokens=9))
    proc.apply(torch.zeros(1, V), ctx)
    commit(rs, 2)
    commit(rs, 2)
    proc.apply(torch.zeros(1, V), ctx)
    state = proc.row_state(0)
    assert state is not None and state["phase"] == Phase.ERROR


def test_speculative_decoding_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="speculative decoding"):
        RunnerV2Budget(SimpleNamespace(speculative_config=object()), request_states(2, 8, V))
    assert "without a speculative config" in SPECULATIVE_REFUSED


def test_a_request_without_budget_is_left_untouched() -> None:
    rs = request_states(2, 8, V)
    proc = RunnerV2Budget(SimpleNamespace(speculative_config=None), rs)
    assert proc.add_request(1, params(Request(None, [1], 0, []))) is False
    proc.apply_staged_writes()
    logits = torch.randn(1, V)
    idx = torch.ones(1, dtype=torch.int64)
    out = proc.apply(
        logits.clone(), SimpleNamespace(expanded_idx_mapping=idx, idx_mapping=idx, idx_mapping_np=idx.numpy())
    )
    torch.testing.assert_close(out, logits)
    assert proc.row_state(1) is None


needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (bench/gpu_check.sh runs it on a lent GPU)"
)


@needs_cuda
def test_on_cuda_equals_override_mode() -> None:
    rng = np.random.default_rng(5)
    sp = spec(think_start=((1,),), extensions=((3, 4),), num_extensions=2, max_thinking_tokens=9)
    reqs = [Request(sp if i % 3 else None, [1], i, list(rng.choice([0.0, 2.5], V))) for i in range(9)]
    assert run(reqs, 0, preempt=0.0, device="cuda") == 0


@needs_cuda
def test_a_decode_step_does_not_synchronise_with_the_host() -> None:
    """vLLM's V2 sampler calls apply every step: it must queue device work only (no .item(), no
    copy to the host, no data-dependent shape), which torch's sync debug mode turns into errors."""
    rs = request_states(8, 64, V, device="cuda")
    proc = RunnerV2Budget(SimpleNamespace(speculative_config=None), rs)
    sp = spec(think_start=((1,),), extensions=((3, 4),), num_extensions=2, max_thinking_tokens=4)
    for slot in range(8):
        rs.all_token_ids.gpu[slot, 0] = 1
        rs.prompt_len.np[slot] = rs.prefill_len.np[slot] = 1
        rs.total_len.gpu[slot] = 1
        proc.add_request(slot, params(Request(sp if slot % 2 else None, [1], 0, [])))
    proc.apply_staged_writes()  # admission reads the new rows' tokens once (allowed)
    idx_np = np.arange(8)[::-1].copy()
    idx = torch.from_numpy(idx_np).cuda()
    ctx = SimpleNamespace(expanded_idx_mapping=idx, idx_mapping=idx, idx_mapping_np=idx_np)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(12):
            logits = torch.randn(8, V, device="cuda")
            proc.apply(logits, ctx)
            tokens = logits.argmax(1).to(torch.int32)
            pos = rs.total_len.gpu[idx].long()
            rs.all_token_ids.gpu[idx, pos] = tokens  # what vLLM's post_update kernel does
            rs.total_len.gpu[idx] += 1
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert proc.row_state(1) is not None and proc.row_state(1)["error"] == 0
