"""The Rust batch equals the pure-Python reference, step for step, on random streams and specs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from s1kit.budget import BudgetBatch, BudgetSpec
from tests.unit.budget_reference import RefRow, RefSpec

V = 10  # a tiny vocabulary makes overlapping and self-overlapping delimiters common

seq = st.lists(st.integers(0, V - 1), min_size=1, max_size=3)


def mask_safe_extension(e: list[int], eos: list[int], think_end: list[list[int]]) -> bool:
    """The spec validation's rule: the first token neither is an EOS nor completes a delimiter, and
    the extension does not start with a delimiter."""
    return e[0] not in eos and all(d[-1] != e[0] and e[: len(d)] != d for d in think_end)


@st.composite
def specs(draw: st.DrawFn) -> RefSpec:
    eos = draw(st.lists(st.integers(0, V - 1), max_size=2, unique=True))
    think_end = draw(st.lists(seq, min_size=1, max_size=3))
    exts = draw(
        st.lists(seq.filter(lambda e: mask_safe_extension(e, eos, think_end)), min_size=1, max_size=3)
    )
    max_think = draw(st.none() | st.integers(0, 12))
    min_think = draw(st.integers(0, 6 if max_think is None else max_think))
    grace = draw(st.integers(0, 3))
    return RefSpec(
        vocab_size=V,
        think_end=think_end,
        think_start=draw(st.lists(seq, max_size=2)),
        eos=eos,
        answer_prefix=draw(
            st.lists(st.integers(0, V - 1).filter(lambda t: t not in eos), min_size=1, max_size=3)
        ),
        extensions=exts,
        max_thinking_tokens=max_think,
        min_thinking_tokens=min_think,
        num_extensions=draw(st.integers(0, 3)),
        grace_tokens=grace,
        newline_tokens=draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=2)) if grace else [],
        max_answer_tokens=draw(st.none() | st.integers(0, 6)),
        answer_stop=draw(st.lists(seq, max_size=2)),
    )


def native(r: RefSpec) -> BudgetSpec:
    return BudgetSpec(**vars(r))


def counters(batch: BudgetBatch, slot: int) -> tuple[int, int, int, int, int, bool, int]:
    a = batch.accounting()
    return (
        int(a.phase[slot]),
        int(a.thinking_tokens[slot]),
        int(a.answer_tokens[slot]),
        int(a.forced_tokens[slot]),
        int(a.extensions_used[slot]),
        bool(a.capped[slot]),
        int(a.error[slot]),
    )


token = st.integers(-1, V)  # includes the invalid ids -1 and V
op = st.one_of(
    st.tuples(st.just("step"), st.lists(token, min_size=3, max_size=3)),
    st.tuples(st.just("step"), st.lists(token, min_size=3, max_size=3)),
    st.tuples(st.just("step"), st.lists(token, min_size=3, max_size=3)),
    st.tuples(st.just("rollback"), st.integers(0, 2), st.integers(0, 4)),
    st.tuples(st.just("swap"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("reset"), st.integers(0, 2)),
    st.tuples(st.just("insert"), st.integers(0, 2), st.integers(0, 2)),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(specs(), min_size=3, max_size=3),
    st.lists(st.lists(st.integers(0, V - 1), max_size=4), min_size=3, max_size=3),
    st.lists(op, max_size=40),
)
def test_override_mode_matches_reference(
    ref_specs: list[RefSpec], prompts: list[list[int]], ops: list[tuple]
) -> None:
    batch = BudgetBatch(3, max_rollback=3)
    refs: list[RefRow | None] = []
    for slot, (r, p) in enumerate(zip(ref_specs, prompts, strict=False)):
        batch.insert(slot, native(r))
        batch.process_prompt(slot, p)
        row = RefRow(r, max_rollback=3)
        row.process_prompt(p)
        refs.append(row)
    out = np.zeros(3, dtype=np.int32)
    for o in ops:
        if o[0] == "step":
            batch.step(np.asarray(o[1], dtype=np.int64), out)
            expect = [row.step(t) if row is not None else -1 for row, t in zip(refs, o[1], strict=False)]
            assert out.tolist() == expect
        elif o[0] == "rollback":
            row = refs[o[1]]
            if row is None:
                continue
            if o[2] > len(row.history):
                try:
                    batch.rollback(o[1], o[2])
                except ValueError:
                    continue
                raise AssertionError("rollback beyond the history must raise")
            batch.rollback(o[1], o[2])
            row.rollback(o[2])
        elif o[0] == "swap":
            batch.swap(o[1], o[2])
            refs[o[1]], refs[o[2]] = refs[o[2]], refs[o[1]]
        elif o[0] == "reset":
            if refs[o[1]] is None:
                continue
            batch.reset(o[1])
            refs[o[1]] = RefRow(refs[o[1]].spec, max_rollback=3)  # type: ignore[union-attr]
        elif o[0] == "insert":
            if refs[o[1]] is not None:  # insert needs an empty slot
                batch.remove(o[1])
            batch.insert(o[1], native(ref_specs[o[2]]))
            refs[o[1]] = RefRow(ref_specs[o[2]], max_rollback=3)
        for slot, row in enumerate(refs):
            if row is not None:
                assert counters(batch, slot) == row.counters(), f"slot {slot} after {o}"


@settings(max_examples=200, deadline=None)
@given(
    specs(),
    st.lists(st.integers(0, V - 1), max_size=4),
    st.lists(
        st.tuples(st.sampled_from(["force", "redirect", "any"]), st.integers(0, V - 1), st.booleans()),
        max_size=40,
    ),
)
def test_mask_mode_matches_reference(
    r: RefSpec, prompt: list[int], choices: list[tuple[str, int, bool]]
) -> None:
    batch = BudgetBatch(1)
    batch.insert(0, native(r))
    batch.process_prompt(0, prompt)
    row = RefRow(r)
    row.process_prompt(prompt)
    width = max(batch.ban_width, 1)
    force = np.zeros(1, np.int64)
    redirect = np.zeros(1, np.int64)
    ban = np.zeros((1, width), np.int32)
    for how, t, flag in choices:
        batch.mask(force, redirect, ban)
        f, red, banned = row.mask()
        assert (int(force[0]), int(redirect[0])) == (f, red)
        assert {int(b) for b in ban[0] if b >= 0} == banned
        emitted = f if how == "force" and f >= 0 else red if how == "redirect" and red >= 0 else t
        # "redirect": the stack took the redirect; otherwise a random claim (also wrong ones).
        taken = how == "redirect" or flag
        batch.advance(np.asarray([emitted], np.int64), None, np.asarray([int(taken)], np.int64))
        row.advance(emitted, taken)
        assert counters(batch, 0) == row.counters()
