"""The core's host edit (``BudgetBatch.mask_logits``) equals ``mask`` + the torch edit (``apply_mask``).

The engine adapters edit CPU logits with one core call and device logits with the torch ops; both
must give the same logits and the same redirect flags for greedy rows, and stop the same finished
rows. Checked on random specs and random row states (random tokens fed, so rows are in every phase,
done and in their error phase too), logits of small integers (ties between end attempts and the
redirect token are common), logits rows in another order than the slots, both forced-row edits.
Sampled rows are checked against a float64 reference of the pooling rule.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from s1kit.budget import BudgetBatch, BudgetSpec
from s1kit.budget.adapters import masking
from s1kit.budget.adapters.masking import FORCED_LOGIT, MaskStep, apply_mask, force_tokens
from tests.unit.budget_reference import RefSpec
from tests.unit.test_budget_equivalence import V, specs

ROWS = 3


def batch_in_some_state(rs: list[RefSpec], streams: list[list[int]]) -> BudgetBatch:
    """One row per spec, advanced over its stream in mask mode with flags 0 (emitting a banned or
    a wrong forced token puts a row in its error phase: that state is wanted too)."""
    batch = BudgetBatch(len(rs), max_rollback=0)
    for slot, (r, stream) in enumerate(zip(rs, streams, strict=True)):
        batch.insert(slot, BudgetSpec(**vars(r)))
        batch.process_prompt(slot, stream[:2])
        for t in stream[2:]:
            batch.advance(np.asarray([t], np.int64), np.asarray([slot], np.int64))
    return batch


def torch_edit(
    batch: BudgetBatch, x: torch.Tensor, slots: np.ndarray, rows: np.ndarray, forced_logit: float | None
) -> np.ndarray:
    """What runs for device logits: mask (stopping finished rows), then the torch edit."""
    n = len(slots)
    force, redirect = np.empty(n, np.int64), np.empty(n, np.int64)
    ban = np.empty((n, max(batch.ban_width, 1)), np.int32)
    batch.mask(force, redirect, ban, slots, stop_finished=True)
    if not np.count_nonzero(redirect >= 0):
        forced = force >= 0
        if forced.any():
            force_tokens(x, rows[forced], force[forced], forced_logit=forced_logit)
        return np.zeros(n, np.uint8)
    return apply_mask(x, rows, force, redirect, ban, forced_logit=forced_logit).numpy().astype(np.uint8)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(specs(), min_size=ROWS, max_size=ROWS),
    st.lists(st.lists(st.integers(0, V - 1), min_size=2, max_size=14), min_size=ROWS, max_size=ROWS),
    st.integers(0, 2**31 - 1),
    st.permutations(range(ROWS)),
    st.sampled_from([None, FORCED_LOGIT]),
    st.sampled_from([torch.float32, torch.float64]),
)
def test_host_edit_equals_mask_plus_torch_edit_for_greedy_rows(
    rs: list[RefSpec],
    streams: list[list[int]],
    seed: int,
    order: list[int],
    forced_logit: float | None,
    dtype: torch.dtype,
) -> None:
    batch = batch_in_some_state(rs, streams)
    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(-2, 3, (ROWS + 1, V), generator=g).to(dtype)  # one logits row unused
    slots = np.arange(ROWS, dtype=np.int64)
    rows = np.asarray(order, np.int64)
    host, dev = raw.clone(), raw.clone()
    flags = np.full(ROWS, 7, np.uint8)
    edit = batch.mask_logits(host.numpy(), rows, flags, slots, forced_logit=forced_logit)
    want = torch_edit(batch, dev, slots, rows, forced_logit)
    assert torch.equal(host, dev)
    assert flags.tolist() == want.tolist()
    assert edit.flagged == int(flags.sum())
    phase = batch.accounting().phase
    assert edit.stopped_done == sum(int(phase[s]) == 3 and bool(rs[s].eos) for s in range(ROWS))
    assert edit.stopped_error == sum(int(phase[s]) == 4 and bool(rs[s].eos) for s in range(ROWS))


def reference_pool(x: np.ndarray, target: int, banned: list[int], t: float, u: float) -> tuple[bool, float]:
    z_t, z_b = x[target] / t, x[banned] / t
    b = np.logaddexp.reduce(z_b)
    a = np.logaddexp(z_t, b)
    return bool(u < np.exp(b - a)), float(t * a)


@pytest.mark.parametrize("u", [0.0, 0.3, 0.7, 0.999])
def test_sampled_rows_pool_the_end_attempts_onto_the_redirect_token(u: float) -> None:
    spec = BudgetSpec(vocab_size=V, think_end=((5,),), eos=(7,), extensions=((3, 4),), num_extensions=1)
    batch = BudgetBatch(2, max_rollback=0)
    for slot in (0, 1):
        batch.insert(slot, spec)
    x = np.linspace(-1.0, 1.5, 2 * V).reshape(2, V)
    raw = x.copy()
    flags = np.zeros(2, np.uint8)
    temp = np.asarray([0.7, 0.0])  # row 0 sampled, row 1 greedy
    edit = batch.mask_logits(
        x, np.asarray([0, 1]), flags, forced_logit=FORCED_LOGIT, temperature_N=temp, uniform_N=np.full(2, u)
    )
    flag, value = reference_pool(raw[0], 3, [7, 5], 0.7, u)
    assert edit.redirected == 2
    assert bool(flags[0]) is flag and x[0, 3] == pytest.approx(value, rel=1e-12)
    assert np.isneginf(x[:, [5, 7]]).all()
    assert x[1, 3] == raw[1, 7] and flags[1] == 1, "greedy row: the best end attempt outranks 3"
    keep = [i for i in range(V) if i not in (3, 5, 7)]
    assert np.array_equal(x[:, keep], raw[:, keep]), "only the banned and redirect cells change"


def test_mask_step_gives_the_same_result_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapters' step: host edit (CPU float32) and the torch path (HOST_EDIT off, as on a GPU)."""
    spec = BudgetSpec(
        vocab_size=V, think_end=((5,),), eos=(7,), answer_prefix=(8,), extensions=((3, 4),),
        num_extensions=1, max_thinking_tokens=4, max_answer_tokens=1,
    )  # fmt: skip
    results = []
    for host in (True, False):
        monkeypatch.setattr(masking, "HOST_EDIT", host)
        batch = BudgetBatch(4, max_rollback=0)
        for slot, stream in enumerate([[1], [1, 2, 2, 2], [1, 2, 2, 2, 8, 0], [1, 7]]):
            batch.insert(slot, spec)
            for t in stream:
                batch.advance(np.asarray([t], np.int64), np.asarray([slot], np.int64))
        # slot 0 thinking (redirect), 1 capped (forced 8), 2 done (stopped with 7), 3 error (7 was banned)
        x = torch.arange(4 * V, dtype=torch.float32).reshape(4, V).flip(0).contiguous()
        step = MaskStep(4).run(batch, x, np.arange(4), np.asarray([3, 2, 1, 0]), None)
        flags = step.flags_N if step.flags_N is None else np.asarray(step.flags_N, np.uint8).tolist()
        results.append((x, flags, step.errors))
    (xa, fa, ea), (xb, fb, eb) = results
    assert torch.equal(xa, xb) and ea == eb == 1
    assert fa == fb == [1, 0, 0, 0], "slot 0: its best end attempt (7) outranks the redirect token"
    assert xa[1, 7] == FORCED_LOGIT and xa[0, 7] == FORCED_LOGIT and xa[2, 8] == FORCED_LOGIT


def test_bad_arguments_are_refused_and_edit_nothing() -> None:
    spec = BudgetSpec(vocab_size=V, think_end=((5,),), eos=(7,), extensions=((3,),), num_extensions=1)
    batch = BudgetBatch(1, max_rollback=0)
    batch.insert(0, spec)
    x = np.ones((2, V), np.float32)
    flags = np.zeros(1, np.uint8)
    with pytest.raises(ValueError, match="logit_rows holds row 2, but the logits have 2 rows"):
        batch.mask_logits(x, np.asarray([2]), flags)
    with pytest.raises(ValueError, match="vocab_size 10 but the logits have 4 columns"):
        batch.mask_logits(np.ones((2, 4), np.float32), np.asarray([0]), flags)
    with pytest.raises(ValueError, match="uniform has 2 entries"):
        batch.mask_logits(x, np.asarray([0]), flags, temperature_N=np.ones(1), uniform_N=np.ones(2))
    with pytest.raises(TypeError, match="float32 or float64"):
        batch.mask_logits(x.astype(np.float16), np.asarray([0]), flags)
    with pytest.raises(ValueError, match="C-contiguous"):
        batch.mask_logits(np.ones((V, 2), np.float32).T, np.asarray([0]), flags)
    two = BudgetBatch(2, max_rollback=0)
    with pytest.raises(ValueError, match="ban must be C-contiguous"):  # Fortran order is refused too
        two.mask(np.empty(2, np.int64), np.empty(2, np.int64), np.empty((3, 2), np.int32).T)
    assert (x == 1).all()
