"""The tensor mirror of the budget automaton equals the Rust core, token for token and counter for counter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from s1kit.budget import BudgetBatch, BudgetSpec, Phase
from s1kit.budget.tensor import TableSizes, TensorBudget
from tests.unit.budget_reference import RefSpec
from tests.unit.test_budget_equivalence import V, specs

# Large enough for any three specs of the strategy, so that load() refills the same buffers.
RESERVE = TableSizes(specs=3, states=40, alphabet=V, seqs=12, seq_width=3, eos=2, vocab=V)
# Mostly valid ids; -1 and V (out of the vocabulary) now and then.
token = st.integers(0, 40).map(lambda x: -1 if x == 40 else V if x == 39 else x % V)
op = st.one_of(
    st.tuples(st.just("step"), st.lists(token, min_size=3, max_size=3), st.booleans()),
    st.tuples(st.just("step"), st.lists(token, min_size=3, max_size=3), st.booleans()),
    st.tuples(st.just("step"), st.lists(token, min_size=3, max_size=3), st.booleans()),
    st.tuples(st.just("step"), st.lists(token, min_size=3, max_size=3), st.booleans()),
    st.tuples(
        st.just("insert"), st.integers(0, 2), st.integers(0, 2), st.lists(st.integers(0, V - 1), max_size=4)
    ),
    st.tuples(st.just("remove"), st.integers(0, 2)),
    st.tuples(st.just("swap"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("move"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("reset"), st.integers(0, 2)),
    st.tuples(st.just("rebuild")),
)


def native(r: RefSpec) -> BudgetSpec:
    return BudgetSpec(**vars(r))


def assert_same_state(tb: TensorBudget, ref: BudgetBatch, where: str) -> None:
    got, want = tb.export_state(), ref.export_state()
    for name, w in want.items():
        assert got[name].tolist() == w.tolist(), f"{name} {where}"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(specs(), min_size=3, max_size=3),
    st.lists(st.lists(st.integers(0, V - 1), max_size=4), min_size=3, max_size=3),
    st.lists(op, min_size=20, max_size=60),  # long enough to reach caps, extensions and answers
)
def test_tensor_step_matches_rust_core(
    ref_specs: list[RefSpec], prompts: list[list[int]], ops: list[tuple]
) -> None:
    # `ref` is stepped by the Rust core; `mirror` is the batch the tensor state loads from and
    # syncs back to. Row operations go to both, between a sync_to and a load.
    ref, mirror = BudgetBatch(3), BudgetBatch(3)
    native_specs = [native(r) for r in ref_specs]
    for slot, (s, p) in enumerate(zip(native_specs, prompts, strict=True)):
        for b in (ref, mirror):
            b.insert(slot, s)
            b.process_prompt(slot, p)
    tb = TensorBudget.from_batch(mirror, "cpu", reserve=RESERVE, ring=4)
    out = np.zeros(3, np.int32)
    for i, o in enumerate(ops):
        if o[0] == "step":
            ref.step(np.asarray(o[1], np.int64), out)
            tokens = torch.tensor(o[1], dtype=torch.int32 if o[2] else torch.int64)
            tb.step(tokens)
            assert tb.override_B.tolist() == out.tolist(), f"override at op {i}"
            emitted = np.where(out >= 0, out, o[1])
            assert tokens.tolist() == emitted.tolist(), f"tokens at op {i}"
            phase = ref.accounting().phase
            assert tb.done_B.tolist() == [p in (Phase.DONE, Phase.ERROR) for p in phase]
            assert_same_state(tb, ref, f"after op {i} {o}")
            continue
        tb.sync_to(mirror)
        assert_same_state(tb, mirror, f"synced before op {i}")
        if o[0] == "rebuild":
            tb = TensorBudget.from_batch(mirror, "cpu", ring=4)  # fresh, tightly sized tables
            continue
        for b in (ref, mirror):
            if o[0] == "insert":
                if b.row_state(o[1]) is not None:  # insert needs an empty slot
                    b.remove(o[1])
                b.insert(o[1], native_specs[o[2]])
                b.process_prompt(o[1], o[3])
            elif o[0] == "remove" and b.row_state(o[1]) is not None:
                b.remove(o[1])
            elif o[0] == "swap":
                b.swap(o[1], o[2])
            elif o[0] == "move":
                b.move_row(o[1], o[2])
            elif o[0] == "reset" and b.row_state(o[1]) is not None:
                b.reset(o[1])
        if tb.sizes.fits(TableSizes.of(mirror.tables())):
            tb.load(mirror)
        else:
            tb = TensorBudget.from_batch(mirror, "cpu", reserve=RESERVE, ring=4)
        assert_same_state(tb, ref, f"loaded after op {i} {o}")
    tb.sync_to(mirror)
    for name, w in ref.export_state().items():
        assert mirror.export_state()[name].tolist() == w.tolist()


S1_SPEC = {
    "vocab_size": 151_936,
    "think_start": [[151_644, 26865]],
    "think_end": [[151_644, 9217], [151_644]],
    "eos": [151_645, 151_643],
    "answer_prefix": [198, 151_644, 9217, 198, 19357, 21806, 25],
    "extensions": [[14190, 11], [88]],
    "max_thinking_tokens": 40,
    "min_thinking_tokens": 3,
    "num_extensions": 3,
    "grace_tokens": 4,
    "newline_tokens": [198, 271, 624],
    "max_answer_tokens": 30,
    "answer_stop": [[151_644, 882]],
}


def test_real_vocabulary_streams_with_copy_out() -> None:
    """s1-shaped specs over a 152K vocabulary, 8 rows, 120 steps; the ring reassembles the stream."""
    rng = np.random.default_rng(0)
    spec = BudgetSpec(**S1_SPEC)
    other = spec.replace(max_thinking_tokens=None, num_extensions=1, grace_tokens=0, answer_stop=())
    ref, mirror = BudgetBatch(8), BudgetBatch(8)
    for b in (ref, mirror):
        for slot in range(7):  # slot 7 stays empty
            b.insert(slot, spec if slot % 2 else other)
            b.process_prompt(slot, [151_644, 26865] if slot != 3 else [5])
    tb = TensorBudget.from_batch(mirror, "cpu", ring=16)
    out = np.zeros(8, np.int32)
    emitted, count = [], 0
    for step in range(120):
        s = rng.integers(0, 1_000, 8)
        plant = rng.random(8)
        s[plant < 0.06] = 151_644
        s[(plant > 0.06) & (plant < 0.09)] = 9217
        s[(plant > 0.09) & (plant < 0.11)] = 151_645
        s[(plant > 0.11) & (plant < 0.15)] = 198
        ref.step(s, out)
        tokens = torch.from_numpy(s.copy())
        tb.step(tokens)
        assert tb.override_B.tolist() == out.tolist()
        emitted.append(np.where(ref.accounting().phase != Phase.EMPTY, np.where(out >= 0, out, s), -1))
        if step % 16 == 15:
            snap = tb.copy_out().result()
            got = snap.tokens_since(count)
            count = snap.count
            want = np.stack(emitted[-len(got) :])
            active = got >= 0
            assert (got[active] == want[active]).all()
            assert snap.accounting.thinking_tokens.tolist() == ref.accounting().thinking_tokens.tolist()
    assert_same_state(tb, ref, "at the end")
    acc = ref.accounting()
    assert acc.capped.any() and acc.extensions_used.sum() > 0 and (acc.phase == Phase.DONE).any()


def test_stale_batch_and_oversized_tables_are_refused() -> None:
    spec = BudgetSpec(**S1_SPEC)
    batch = BudgetBatch(2)
    batch.insert(0, spec)
    tb = TensorBudget.from_batch(batch, "cpu")
    batch.insert(1, spec.replace(extensions=[[1, 2, 3, 4, 5, 6, 7, 8, 9]], answer_stop=()))
    with pytest.raises(ValueError, match="changed since"):
        tb.sync_to(batch)
    with pytest.raises(ValueError, match="reserve"):
        tb.load(batch)
    with pytest.raises(ValueError, match="shape"):
        tb.step(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="int32/int64"):
        tb.step(torch.zeros(2))


def test_ring_overrun_is_reported() -> None:
    batch = BudgetBatch(1)
    batch.insert(0, BudgetSpec(vocab_size=8, think_end=[[1]]))
    tb = TensorBudget.from_batch(batch, "cpu", ring=2)
    for _ in range(3):
        tb.step(torch.tensor([4]))
    snap = tb.copy_out().result()
    assert snap.tokens_since(1).tolist() == [[4], [4]]
    with pytest.raises(ValueError, match="ring holds 2"):
        snap.tokens_since(0)


def test_empty_batch_steps_nothing() -> None:
    tb = TensorBudget.from_batch(BudgetBatch(2), "cpu")
    tokens = torch.tensor([3, 4])
    tb.step(tokens)
    assert tokens.tolist() == [3, 4] and tb.override_B.tolist() == [-1, -1]
    assert tb.accounting().phase.tolist() == [Phase.EMPTY, Phase.EMPTY]


@pytest.mark.slow
def test_compiled_step_matches_rust_core() -> None:
    """``compile=True`` (torch.compile, fused kernels; inductor's C++ backend on CPU) gives the same
    overrides and states as the Rust core. Slow: compiling takes tens of seconds on 2 cores."""
    rng = np.random.default_rng(3)
    spec = BudgetSpec(**S1_SPEC)
    ref, mirror = BudgetBatch(4), BudgetBatch(4)
    for b in (ref, mirror):
        for slot in range(4):
            b.insert(slot, spec if slot % 2 else spec.replace(grace_tokens=0, max_thinking_tokens=12))
            b.process_prompt(slot, [151_644, 26865])
    tb = TensorBudget.from_batch(mirror, "cpu", compile=True)
    out = np.zeros(4, np.int32)
    for _ in range(60):
        s = rng.integers(0, 1_000, 4)
        s[rng.random(4) < 0.1] = 151_644
        ref.step(s, out)
        tb.step(torch.from_numpy(s.copy()))
        assert tb.override_B.tolist() == out.tolist()
    assert_same_state(tb, ref, "after 60 compiled steps")
