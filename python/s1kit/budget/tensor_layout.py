"""The host side of the tensor mirror: a Rust batch's tables and row states in the device layout, and back.

:class:`~s1kit.budget.BudgetBatch` exports its specs as stacked int32 tables (``batch.tables()``,
layout: ``s1kit_core::budget::tables``) and its rows as one int32 array per ``RowState`` field
(``batch.export_state()``). :func:`device_arrays` turns both into the numpy arrays that
:class:`~s1kit.budget.tensor.TensorBudget` copies into its fixed-size device buffers (padded to
:class:`TableSizes`, one row of spec values per slot); :func:`export_from_state` is the way back, and
:func:`accounting_from_state` reads the counters of a host copy of the state. The two encodings that
differ (``matcher_state`` global, ``forcing`` as a sequence row) are described in
:mod:`s1kit.budget.tensor_step`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from s1kit.budget.batch import Accounting
from s1kit.budget.tensor_step import PARAM_FIELDS, STATE_FIELDS

# forcing_kind values of the Rust state export.
FORCING_NONE, FORCING_EXTENSION, FORCING_ANSWER_PREFIX = 0, 1, 2

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]

# What a slot without a row holds for each spec value (keys in PARAM_FIELDS order): -1 is "no cap"
# for the caps and "no sequence" for answer_seq; num_ext_seqs is a modulus, at least 1 for every slot.
PARAM_EMPTY: dict[str, int] = {
    "vocab_size": 0,
    "max_thinking_tokens": -1,
    "min_thinking_tokens": 0,
    "num_extensions": 0,
    "grace_tokens": 0,
    "max_answer_tokens": -1,
    "eos_to_answer": 0,
    "state_base": 0,
    "ext_seq_base": 0,
    "num_ext_seqs": 1,
    "answer_seq": -1,
    "newline_offset": 0,
}
assert tuple(PARAM_EMPTY) == PARAM_FIELDS, "PARAM_EMPTY must name every SpecParams field, in order"
# State fields exported by the Rust core under the same name and meaning.
SHARED_STATE_FIELDS = tuple(n for n in STATE_FIELDS if n not in ("matcher_state", "forcing_seq"))


@dataclass(frozen=True)
class TableSizes:
    """Capacities of the device tables; :meth:`TensorBudget.load` fits any batch within them."""

    specs: int = 1
    states: int = 1
    alphabet: int = 1
    seqs: int = 1
    seq_width: int = 1
    eos: int = 1
    vocab: int = 1

    @staticmethod
    def of(tables: dict[str, I32]) -> TableSizes:
        return TableSizes(
            specs=len(tables["vocab_size"]),
            states=tables["next"].shape[0],
            alphabet=tables["alphabet"].shape[1],
            seqs=tables["seqs"].shape[0],
            seq_width=tables["seqs"].shape[1],
            eos=tables["eos"].shape[1],
            vocab=int(tables["vocab_size"].max(initial=0)),
        )

    def union(self, other: TableSizes) -> TableSizes:
        return TableSizes(
            **{f.name: max(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self)}
        )

    def fits(self, other: TableSizes) -> bool:
        return all(getattr(other, f.name) <= getattr(self, f.name) for f in dataclasses.fields(self))


class RowOffsets(NamedTuple):
    """Per slot, where its spec's tables start in the stacked ones (to translate the state back)."""

    occupied: npt.NDArray[np.bool_]
    state_base: I64
    ext_seq_base: I64
    answer_seq: I64


class DeviceArrays(NamedTuple):
    """Host arrays of the device buffers, padded to a :class:`TableSizes` (names as in ``Tables``)."""

    params_PB: I64
    alpha_BK: I64
    eos_BE: I64
    next_TK1: I64  # (T, K + 1): column K is "any other id"
    kinds_T: I64
    overlap_T: I64
    seqs_QL: I64
    seq_len_Q: I64
    newline_SV: npt.NDArray[np.bool_]
    state_FB: I64
    rows: RowOffsets


def _padded(src: npt.NDArray[np.int32], shape: tuple[int, ...], fill: int) -> I64:
    out = np.full(shape, fill, np.int64)
    out[tuple(slice(0, n) for n in src.shape)] = src
    return out


def params_of(tab: dict[str, I32], sizes: TableSizes, capacity: int) -> dict[str, I64]:
    """Each slot's spec values, gathered once: the rows of ``params_PB`` by name.

    Every value but ``newline_offset`` (the slot's row of the newline bitmap) comes from the table of
    the same name; empty slots hold :data:`PARAM_EMPTY`."""
    spec = tab["row_spec"].astype(np.int64)
    occupied = spec >= 0
    spec = np.where(occupied, spec, 0)
    params = {name: np.full(capacity, empty, np.int64) for name, empty in PARAM_EMPTY.items()}
    if len(tab["vocab_size"]):
        for name in PARAM_FIELDS:
            if name != "newline_offset":
                params[name] = np.where(occupied, tab[name].astype(np.int64)[spec], params[name])
    params["num_ext_seqs"] = np.maximum(params["num_ext_seqs"], 1)
    params["newline_offset"] = spec * sizes.vocab
    return params


def device_arrays(
    tab: dict[str, I32], export: dict[str, I32], sizes: TableSizes, capacity: int
) -> DeviceArrays:
    """The device layout of a batch's ``tables()`` and ``export_state()`` (must fit ``sizes``)."""
    z, b = sizes, capacity
    row_spec = tab["row_spec"].astype(np.int64)
    occupied = row_spec >= 0
    spec = row_spec[occupied]
    params = params_of(tab, z, b)
    alpha = np.full((b, z.alphabet), -1, np.int64)
    eos = np.full((b, z.eos), -1, np.int64)
    if len(tab["vocab_size"]):
        alpha[occupied, : tab["alphabet"].shape[1]] = tab["alphabet"][spec]
        eos[occupied, : tab["eos"].shape[1]] = tab["eos"][spec]
    nxt = np.zeros((z.states, z.alphabet + 1), np.int64)
    t_n, k1 = tab["next"].shape
    nxt[:t_n, : k1 - 1] = tab["next"][:, : k1 - 1]
    nxt[:t_n, k1 - 1 :] = tab["next"][:, k1 - 1 :]  # the "any other id" column fills the padding
    newline = np.zeros((z.specs, z.vocab), np.bool_)
    for s, ids in enumerate(tab["newline"]):
        newline[s, ids[ids >= 0]] = True
    rows = RowOffsets(occupied, params["state_base"], params["ext_seq_base"], params["answer_seq"])
    return DeviceArrays(
        params_PB=np.stack([params[name] for name in PARAM_FIELDS]),
        alpha_BK=alpha,
        eos_BE=eos,
        next_TK1=nxt,
        kinds_T=_padded(tab["kinds"], (z.states,), 0),
        overlap_T=_padded(tab["answer_overlap"], (z.states,), 0),
        seqs_QL=_padded(tab["seqs"], (z.seqs, z.seq_width), -1),
        seq_len_Q=_padded(tab["seq_len"], (z.seqs,), 0),
        newline_SV=newline,
        state_FB=state_from_export(export, rows),
        rows=rows,
    )


def state_from_export(export: dict[str, I32], rows: RowOffsets) -> I64:
    """``(F, B)``: the Rust export in the device encoding (rows in STATE_FIELDS order)."""
    state = {name: export[name].astype(np.int64) for name in SHARED_STATE_FIELDS}
    state["matcher_state"] = np.where(rows.occupied, rows.state_base + export["matcher_state"], 0)
    kind = export["forcing_kind"]
    state["forcing_seq"] = np.where(
        kind == FORCING_EXTENSION,
        rows.ext_seq_base + export["forcing_index"],
        np.where(kind == FORCING_ANSWER_PREFIX, rows.answer_seq, -1),
    )
    return np.stack([state[name] for name in STATE_FIELDS])


def export_from_state(state_FB: I64, rows: RowOffsets) -> dict[str, I32]:
    """A host copy of the device state in the Rust core's export format (``BudgetBatch.import_state``)."""
    st = dict(zip(STATE_FIELDS, state_FB, strict=True))
    forcing_seq = st["forcing_seq"]
    kind = np.where(
        forcing_seq < 0,
        FORCING_NONE,
        np.where(forcing_seq == rows.answer_seq, FORCING_ANSWER_PREFIX, FORCING_EXTENSION),
    )
    out = {
        "matcher_state": np.where(rows.occupied, st["matcher_state"] - rows.state_base, 0),
        "forcing_kind": kind,
        "forcing_index": np.where(kind == FORCING_EXTENSION, forcing_seq - rows.ext_seq_base, 0),
    }
    out.update((name, st[name]) for name in SHARED_STATE_FIELDS)
    return {k: np.ascontiguousarray(v, dtype=np.int32) for k, v in out.items()}


def accounting_from_state(state_FB: I64) -> Accounting:
    """Per-slot counters of a host copy of :attr:`TensorBudget.state_FB` (rows in STATE_FIELDS order)."""
    st = dict(zip(STATE_FIELDS, state_FB, strict=True))
    return Accounting(
        phase=st["phase"].astype(np.uint8),
        error=st["error"].astype(np.uint8),
        thinking_tokens=st["thinking_tokens"].astype(np.uint32),
        answer_tokens=st["answer_tokens"].astype(np.uint32),
        forced_tokens=st["forced_tokens"].astype(np.uint32),
        extensions_used=st["extensions_used"].astype(np.uint32),
        capped=st["capped"].astype(np.bool_),
    )
