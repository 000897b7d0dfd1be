"""Random calls into the Python budget API raise only Python exceptions of the documented kinds.

Hypothesis drives :class:`s1kit.budget.BudgetBatch` (and the raw ``s1kit._core.BudgetBatch`` under it)
with random sequences of calls: slots and counts of any size and sign, token arrays of random dtype,
length and layout, and output arrays that are read-only, of the wrong dtype, non-contiguous, the wrong
length or aliasing an input. Every call must either succeed or raise ``ValueError``, ``TypeError``,
``IndexError`` or an :class:`~s1kit.errors.S1kitError`; a Rust panic (``PanicException``, a
``BaseException``) or an abort fails the test. The number of cases is fixed (``max_examples``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s1kit import _core
from s1kit.budget import BudgetBatch, BudgetSpec
from s1kit.errors import S1kitError

ALLOWED = (ValueError, TypeError, IndexError, S1kitError)
V = 12
SPECS = [
    BudgetSpec(V, think_end=[[1]], think_start=[[2]], eos=[9], answer_prefix=[1], max_thinking_tokens=3),
    BudgetSpec(V, think_end=[[1, 4]], extensions=[[3]], num_extensions=2, answer_prefix=[1, 4]),
    BudgetSpec(V, think_end=[[1]], eos=[9], max_answer_tokens=2, answer_prefix=[1]),
]

ints = st.one_of(
    st.integers(-3, 8), st.integers(-(2**70), 2**70), st.sampled_from([2**31, 2**32, 2**63, 2**64, -(2**63)])
)
dtypes = st.sampled_from([np.int64, np.int32, np.int16, np.uint32, np.float32, np.float64, np.bool_])


@st.composite
def arrays(draw: Any, capacity: int) -> Any:
    """A 1-D array (or something that is not one) of random dtype, length and layout."""
    kind = draw(st.sampled_from(["array", "array", "array", "list", "none", "2d"]))
    n = draw(st.sampled_from([capacity, capacity, 0, 1, capacity + 1]))
    if kind == "list":
        return draw(st.lists(st.integers(-2, V + 2), min_size=n, max_size=n))
    if kind == "none":
        return None
    dtype = draw(dtypes)
    values = draw(st.lists(st.integers(-2, V + 2), min_size=2 * n + 2, max_size=2 * n + 2))
    base = np.asarray(values, dtype=np.int64).astype(dtype)
    if kind == "2d":
        return base[: 2 * (n // 2 + 1)].reshape(2, -1)
    layout = draw(st.sampled_from(["contiguous", "contiguous", "strided", "readonly", "reversed"]))
    if layout == "strided":
        return base[::2][:n]
    if layout == "reversed":
        return base[::-1][:n]
    arr = np.ascontiguousarray(base[:n])
    if layout == "readonly":
        arr.flags.writeable = False
    return arr


@st.composite
def ban_arrays(draw: Any, capacity: int) -> Any:
    rows = draw(st.sampled_from([capacity, capacity, 0, capacity + 1]))
    width = draw(st.integers(0, 4))
    dtype = draw(st.sampled_from([np.int32, np.int32, np.int64]))
    arr = np.zeros((rows, width * 2 if draw(st.booleans()) else width), dtype)
    if arr.shape[1] >= 2 and draw(st.booleans()):
        arr = arr[:, ::2]  # non-contiguous
    if draw(st.booleans()):
        arr.flags.writeable = False
    return arr


@st.composite
def calls(draw: Any, capacity: int) -> tuple[Any, ...]:
    name = draw(
        st.sampled_from(
            [
                "insert",
                "insert",
                "remove",
                "swap",
                "move_row",
                "reset",
                "rollback",
                "process_prompt",
                "step",
                "step",
                "mask",
                "advance",
                "row_state",
                "accounting",
                "tables",
                "export_import",
            ]
        )
    )
    if name in ("step", "advance"):
        return (
            name,
            draw(arrays(capacity)),
            draw(arrays(capacity)),
            draw(st.one_of(st.none(), arrays(capacity))),
        )
    if name == "mask":
        return (
            name,
            draw(arrays(capacity)),
            draw(arrays(capacity)),
            draw(ban_arrays(capacity)),
            draw(st.one_of(st.none(), arrays(capacity))),
        )
    if name == "process_prompt":
        prompt = draw(
            st.one_of(st.lists(ints, max_size=4), st.lists(st.integers(0, V - 1), max_size=4), arrays(3))
        )
        return (name, draw(ints), prompt)
    if name == "insert":
        return (name, draw(ints), draw(st.sampled_from([0, 1, 2, "not a spec"])))
    return (name, draw(ints), draw(ints))


def apply(batch: Any, raw: bool, call: tuple[Any, ...]) -> None:
    name, *args = call
    if name == "insert":
        spec = SPECS[args[1]] if isinstance(args[1], int) else args[1]
        batch.insert(args[0], spec._inner if raw and isinstance(spec, BudgetSpec) else spec)
    elif name in ("remove", "reset", "row_state"):
        getattr(batch, name)(args[0])
    elif name in ("swap", "move_row", "rollback"):
        getattr(batch, name)(args[0], args[1])
    elif name == "process_prompt":
        batch.process_prompt(args[0], args[1])
    elif name == "step":
        batch.step(args[0], args[1], args[2])
    elif name == "advance":
        batch.advance(args[0], args[2])
    elif name == "mask":
        batch.mask(args[0], args[1], args[2], args[3])
    elif name == "accounting":
        batch.accounting()
    elif name == "tables":
        _core.budget_tables(batch if raw else batch._inner)
    elif name == "export_import":
        inner = batch if raw else batch._inner
        _core.import_budget_state(inner, _core.export_budget_state(inner))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    capacity=st.integers(1, 4),
    raw=st.booleans(),
    data=st.data(),
)
def test_random_calls_raise_only_documented_exceptions(capacity: int, raw: bool, data: Any) -> None:
    batch: Any = _core.BudgetBatch(capacity, max_rollback=2) if raw else BudgetBatch(capacity, max_rollback=2)
    for call in data.draw(st.lists(calls(capacity), min_size=1, max_size=25)):
        with contextlib.suppress(*ALLOWED):
            apply(batch, raw, call)
        # Anything else (PanicException is a BaseException) propagates and fails the test.


@settings(max_examples=100, deadline=None)
@given(capacity=ints, max_rollback=st.one_of(st.none(), ints))
def test_any_capacity_is_a_batch_or_a_value_error(capacity: int, max_rollback: int | None) -> None:
    kwargs = {} if max_rollback is None else {"max_rollback": max_rollback}
    try:
        b = BudgetBatch(capacity, **kwargs)
    except ValueError as e:
        assert "capacity" in str(e) or "max_rollback" in str(e)
    else:
        assert 1 <= b.capacity <= 2**24


def test_capacity_2_pow_40_is_a_value_error_not_an_abort() -> None:
    with pytest.raises(ValueError, match="capacity=1099511627776 must be between 1 and 16777216"):
        BudgetBatch(2**40)
    with pytest.raises(ValueError, match="max_rollback"):
        BudgetBatch(4, max_rollback=2**40)


def test_read_only_and_wrong_outputs_name_the_argument() -> None:
    batch = BudgetBatch(2)
    batch.insert(0, SPECS[0])
    sampled = np.zeros(2, np.int64)
    ro = np.zeros(2, np.int32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"^out cannot be borrowed"):
        batch.step(sampled, ro)
    with pytest.raises(ValueError, match=r"^out must be C-contiguous"):
        batch.step(sampled, np.zeros(4, np.int32)[::2])
    with pytest.raises(TypeError, match=r"^out must be"):
        batch.step(sampled, np.zeros(2, np.float32))
    force, redirect = np.zeros(2, np.int32), np.zeros(2, np.int32)
    ban = np.zeros((2, 4), np.int32)
    for name, args in {
        "force": (ro, redirect, ban),
        "redirect": (force, ro, ban),
    }.items():
        with pytest.raises(ValueError, match=f"^{name} cannot be borrowed"):
            batch.mask(*args)
    ban.flags.writeable = False
    with pytest.raises(ValueError, match=r"^ban cannot be borrowed"):
        batch.mask(force, redirect, ban)
    with pytest.raises(TypeError, match="ban"):
        batch.mask(force, redirect, np.zeros((2, 4), np.int64))


def test_negative_slot_is_a_value_error_naming_the_argument() -> None:
    batch = BudgetBatch(2)
    with pytest.raises(ValueError, match=r"^slot=-1 is out of range"):
        batch.insert(-1, SPECS[0])
    with pytest.raises(ValueError, match=r"^k=-2 is out of range"):
        batch.rollback(0, -2)
    with pytest.raises(ValueError, match=r"^dst=-3 is out of range"):
        batch.move_row(0, -3)
    with pytest.raises(TypeError, match=r"^slot must be an int, got str"):
        batch.remove("0")  # type: ignore[arg-type]


def test_insert_into_an_occupied_slot_and_remove_of_an_empty_slot_raise() -> None:
    batch = BudgetBatch(2)
    with pytest.raises(IndexError, match="slot 1 is empty"):
        batch.remove(1)
    batch.insert(1, SPECS[0])
    with pytest.raises(ValueError, match="slot 1 already holds a row: remove it first"):
        batch.insert(1, SPECS[1])
    assert batch.row_state(1) is not None
    batch.remove(1)
    batch.insert(1, SPECS[1])
