"""TensorBudget: override-mode budget forcing as fixed-shape torch ops, capturable in a CUDA graph.

A mirror of the Rust core's per-row transition (``RowState::step``, override mode) written with
tensor ops only: no ``.item()``, no host synchronisation, no data-dependent Python control flow, and
fixed shapes, so one decode step (model, sampling, budget) can be one CUDA graph replay. The Rust
core stays the single source of truth: :meth:`TensorBudget.from_batch` starts from a
:class:`~s1kit.budget.BudgetBatch`'s tables and row states, :meth:`TensorBudget.sync_to` hands the
states back, and the tests check token for token and counter for counter that both agree.

Row operations (insert, remove, swap, prompts) stay on the batch: ``sync_to(batch)``, change the
batch, then ``load(batch)``, which refills the same device buffers (a captured graph stays valid)
as long as the new tables fit the sizes reserved at construction.

Shapes: ``B`` slots, ``F`` state fields, ``P`` per-row parameters, ``S`` specs, ``T`` automaton
states, ``K`` alphabet width, ``Q`` forced sequences, ``L`` their width, ``E`` EOS width, ``V``
vocabulary (newline bitmap), ``R`` ring of emitted tokens between two copy-outs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from s1kit.budget.batch import Accounting, BudgetBatch, Phase

# Pattern kind bits of the Rust matcher.
KIND_THINK_START, KIND_THINK_END, KIND_ANSWER_STOP = 1, 2, 4
# forcing_kind values of the Rust state export.
FORCING_NONE, FORCING_EXTENSION, FORCING_ANSWER_PREFIX = 0, 1, 2
ERROR_TOKEN_OUT_OF_VOCAB = 1

# Rows of state_FB. matcher is a global automaton state; forcing_seq a row of the sequence table
# (-1: nothing forced).
STATE_FIELDS = (
    "phase",
    "error",
    "matcher",
    "thinking_tokens",
    "answer_tokens",
    "forced_tokens",
    "extensions_used",
    "capped",
    "grace_used",
    "line_closed",
    "forcing_seq",
    "forcing_pos",
)
# Rows of params_PB: each row's spec parameters, gathered once per load.
PARAM_FIELDS = (
    "vocab_size",
    "max_thinking_tokens",
    "min_thinking_tokens",
    "num_extensions",
    "grace_tokens",
    "max_answer_tokens",
    "eos_to_answer",
    "state_base",
    "ext_seq_base",
    "num_ext_seqs",
    "answer_seq",
    "newline_offset",
)
_S = {n: i for i, n in enumerate(STATE_FIELDS)}
_P = {n: i for i, n in enumerate(PARAM_FIELDS)}
PRE_THINK, THINKING, ANSWER, DONE, ERROR, EMPTY = (int(p) for p in Phase)


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
    def of(tables: dict[str, npt.NDArray[np.int32]]) -> TableSizes:
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


class Tables(NamedTuple):
    """The device tables one step reads (all int64 except the newline bitmap)."""

    params_PB: torch.Tensor
    alpha_BK: torch.Tensor
    eos_BE: torch.Tensor
    cols_K: torch.Tensor  # arange(K) - K: turns a one-hot alphabet match into a column offset
    next_flat: torch.Tensor  # (T * (K + 1),)
    kinds_T: torch.Tensor
    overlap_T: torch.Tensor  # where forcing the answer prefix starts in each automaton state
    seqs_flat: torch.Tensor  # (Q * L,)
    seq_len_Q: torch.Tensor
    newline_SV: torch.Tensor  # bool; row s, column t: token t ends a line for spec s


def _advance(matcher_B: torch.Tensor, tok_B: torch.Tensor, t: Tables) -> torch.Tensor:
    """The global automaton state after feeding ``tok_B`` (a valid id) in ``matcher_B``."""
    k = t.alpha_BK.shape[1]
    col_B = k + ((t.alpha_BK == tok_B[:, None]) * t.cols_K).sum(1)  # K: not in the alphabet
    return t.next_flat[matcher_B * (k + 1) + col_B]


def _is_eos(tok_B: torch.Tensor, t: Tables) -> torch.Tensor:
    return (t.eos_BE == tok_B[:, None]).any(1)


def budget_step_(
    state_FB: torch.Tensor,
    t: Tables,
    tokens_B: torch.Tensor,
    override_B: torch.Tensor,
    done_B: torch.Tensor,
    ring_RB: torch.Tensor,
    count_1: torch.Tensor,
) -> None:
    """One override-mode step for every slot, in place.

    ``tokens_B`` holds the sampled tokens and receives the emitted ones (the forced token where a
    row forces; unchanged for idle and error rows). ``override_B`` receives the Rust ``step``'s
    output: the forced token or -1. ``done_B`` marks rows that are done or in error. The emitted
    tokens (-1 where a row emitted nothing) go to ``ring_RB[count % R]``; ``count_1`` is incremented.
    Mirrors ``RowState::plan``, ``step`` and ``emit`` of the Rust core, branch for branch.
    """
    p = t.params_PB
    phase, error, matcher, th, an, fc, ex, capped, gu, lc, fseq, fpos = state_FB.unbind(0)
    vocab, max_th, min_th, num_ext, grace, max_ans = p[0], p[1], p[2], p[3], p[4], p[5]
    eos_to_answer, ext_base, num_ext_seqs, answer_seq, nl_off = p[6], p[8], p[9], p[10], p[11]
    seq_w = t.seqs_flat.shape[0] // t.seq_len_Q.shape[0]
    vocab_nl = t.newline_SV.shape[1]
    tok = tokens_B.long()

    # plan
    active = phase <= ANSWER  # PRE_THINK, THINKING, ANSWER; DONE, ERROR, EMPTY are idle
    forcing = fseq >= 0
    thinking = phase == THINKING
    over = (max_th >= 0) & (th >= max_th)
    cap = thinking & over & ((grace == 0) | (lc != 0) | (gu >= grace))
    force_plan = active & (forcing | cap)
    begin_cap = force_plan & ~forcing
    free = active & ~force_plan
    may_end = (th >= min_th) & (ex >= num_ext)
    valid = (tok >= 0) & (tok < vocab)
    bad = free & ~valid
    # the sampled token, for free rows
    ts = torch.where(valid, tok, 0)
    eos_s = _is_eos(ts, t)
    ends = eos_s | ((t.kinds_T[_advance(matcher, ts, t)] & KIND_THINK_END) != 0)
    free_ok = free & valid & thinking
    trig_ext = free_ok & ~may_end & ends
    trig_eos = free_ok & may_end & (eos_to_answer != 0) & eos_s
    to_answer = begin_cap | trig_eos
    fseq = torch.where(trig_ext, ext_base + ex % num_ext_seqs, torch.where(to_answer, answer_seq, fseq))
    # The answer prefix continues the part of it the stream already ends with.
    fpos = torch.where(trig_ext, 0, torch.where(to_answer, t.overlap_T[matcher], fpos))
    ex = ex + trig_ext
    phase = torch.where(to_answer, ANSWER, phase)
    capped = torch.where(to_answer, begin_cap.long(), capped)
    forced = force_plan | trig_ext | trig_eos
    emit = active & ~bad

    # emit
    ftok = t.seqs_flat[fseq.clamp(min=0) * seq_w + fpos]
    et = torch.where(forced, ftok, ts)
    matcher = torch.where(emit, _advance(matcher, et, t), matcher)
    kinds = t.kinds_T[matcher]
    eos_e = _is_eos(et, t)
    fc = fc + forced
    fpos = fpos + forced
    finished = forced & (fpos == t.seq_len_Q[fseq.clamp(min=0)])
    fseq = torch.where(finished, -1, fseq)
    fpos = torch.where(finished, 0, fpos)
    pre = emit & (phase == PRE_THINK)
    thk = emit & (phase == THINKING)
    ans = emit & (phase == ANSWER)
    grace_tok = thk & over
    gu = gu + grace_tok
    newline = t.newline_SV.view(-1)[nl_off + et.clamp(max=vocab_nl - 1)]
    lc = lc | (grace_tok & newline).long()
    th = th + thk
    end_t = thk & ~forced & (((kinds & KIND_THINK_END) != 0) | eos_e)
    an = an + ans
    stop = ans & ~forced & (eos_e | ((kinds & KIND_ANSWER_STOP) != 0))
    full = ans & (fseq < 0) & (max_ans >= 0) & (an >= max_ans)
    # A natural end of thinking with an answer cap of 0 lets no answer token through.
    to_done = (pre & eos_e) | (end_t & (eos_e | (max_ans == 0))) | stop | full
    to_think = pre & ~eos_e & ((kinds & KIND_THINK_START) != 0)
    phase = torch.where(to_done, DONE, phase)
    phase = torch.where(to_think, THINKING, phase)
    phase = torch.where(end_t & ~eos_e & (max_ans != 0), ANSWER, phase)
    phase = torch.where(bad, ERROR, phase)
    error = torch.where(bad, ERROR_TOKEN_OUT_OF_VOCAB, error)

    state_FB.copy_(torch.stack((phase, error, matcher, th, an, fc, ex, capped, gu, lc, fseq, fpos)))
    override_B.copy_(torch.where(forced, et, -1))
    tokens_B.copy_(torch.where(forced, et, tok))
    done_B.copy_((phase == DONE) | (phase == ERROR))
    ring_RB.index_copy_(0, count_1 % ring_RB.shape[0], torch.where(emit, et, -1)[None])
    count_1.add_(1)


@dataclass(frozen=True)
class Snapshot:
    """Tokens and accounting copied to the host by :meth:`TensorBudget.copy_out`."""

    count: int  # steps taken when the copy was made
    ring_RB: npt.NDArray[np.int64]  # ring_RB[c % R] holds step c's emitted tokens (-1: none)
    accounting: Accounting

    def tokens_since(self, count: int) -> npt.NDArray[np.int64]:
        """``(self.count - count, B)``: the tokens emitted after step ``count``, in order."""
        n, r = self.count - count, self.ring_RB.shape[0]
        if not 0 <= n <= r:
            raise ValueError(
                f"{n} steps were taken since step {count} but the ring holds {r}: copy out at least "
                f"every {r} steps (or raise ring=)"
            )
        return self.ring_RB[np.arange(count, self.count) % r]


class PinnedCopy:
    """A device-to-host copy in flight into one buffer set of a :class:`PinnedBuffers` (CUDA: pinned
    memory and an event; CPU: already complete). A source left out (``None``) reads back as ``None``."""

    def __init__(
        self,
        owner: PinnedBuffers,
        buffers: tuple[torch.Tensor, ...],
        present: tuple[bool, ...],
        event: torch.cuda.Event | None,
    ) -> None:
        self._owner, self._buffers, self._present, self._event = owner, buffers, present, event
        self._generation = owner.started

    def ready(self) -> bool:
        """Whether the copy has landed (never blocks)."""
        return self._event is None or bool(self._event.query())

    def arrays(self) -> list[npt.NDArray[Any] | None]:
        """Wait for the copy (if needed) and return numpy copies of the buffers. Valid until two more
        copies are started on the same buffers."""
        if self._owner.started - self._generation >= len(self._owner.sets):
            raise RuntimeError("this copy's pinned buffer was reused: read a copy before starting two more")
        if self._event is not None:
            self._event.synchronize()
        return [b.numpy().copy() if p else None for b, p in zip(self._buffers, self._present, strict=True)]


class PinnedBuffers:
    """Two host buffer sets shaped like ``like`` (pinned when ``pin``), used in turn, so one copy can be
    read while the next is in flight."""

    def __init__(self, like: tuple[torch.Tensor, ...], pin: bool) -> None:
        self.sets = [
            tuple(torch.empty(x.shape, dtype=x.dtype, pin_memory=pin) for x in like) for _ in range(2)
        ]
        self.started = 0

    def start(self, sources: tuple[torch.Tensor | None, ...], cls: type[_C]) -> _C:
        """Copy ``sources`` into the next buffer set, ordered after the work queued on the current
        stream (asynchronous on CUDA, an event marks completion); return the copy as a ``cls``."""
        bufs = self.sets[self.started % len(self.sets)]
        self.started += 1
        cuda = any(x is not None and x.is_cuda for x in sources)
        for dst, src in zip(bufs, sources, strict=True):
            if src is not None:
                dst.copy_(src, non_blocking=cuda)
        event = None
        if cuda:
            event = torch.cuda.Event()
            event.record()
        return cls(self, bufs, tuple(x is not None for x in sources), event)


_C = TypeVar("_C", bound=PinnedCopy)


class HostCopy(PinnedCopy):
    """A :meth:`TensorBudget.copy_out` in flight."""

    def result(self) -> Snapshot:
        """Wait for the copy (if needed) and read it. Valid until two more copy-outs are started."""
        state_FB, ring_RB, count_1 = self.arrays()
        assert state_FB is not None and ring_RB is not None and count_1 is not None
        return Snapshot(int(count_1[0]), ring_RB, accounting_from_state(state_FB))


def accounting_from_state(state_FB: npt.NDArray[np.int64]) -> Accounting:
    """Per-slot counters of a host copy of :attr:`TensorBudget.state_FB` (rows in STATE_FIELDS order)."""
    s = {n: state_FB[i] for i, n in enumerate(STATE_FIELDS)}
    return Accounting(
        phase=s["phase"].astype(np.uint8),
        error=s["error"].astype(np.uint8),
        thinking_tokens=s["thinking_tokens"].astype(np.uint32),
        answer_tokens=s["answer_tokens"].astype(np.uint32),
        forced_tokens=s["forced_tokens"].astype(np.uint32),
        extensions_used=s["extensions_used"].astype(np.uint32),
        capped=s["capped"].astype(np.bool_),
    )


class TensorBudget:
    """Device-resident budget-forcing state for the slots of one :class:`BudgetBatch`.

    ``step(tokens_B)`` advances every row in place with tensor ops only (see :func:`budget_step_`),
    so it can be captured in a CUDA graph together with the model's decode step. Buffers are
    allocated once; :meth:`load` refills them for a changed batch. ``compile=True`` wraps the step
    in ``torch.compile`` (fusing its ~70 small ops into a few kernels on CUDA).
    """

    def __init__(
        self,
        capacity: int,
        device: torch.device | str,
        *,
        sizes: TableSizes = TableSizes(),
        ring: int = 64,
        compile: bool = False,
    ) -> None:
        if capacity <= 0 or ring <= 0:
            raise ValueError(f"capacity and ring must be positive, got {capacity} and {ring}")
        self.device = torch.device(device)
        self.capacity, self.sizes = capacity, sizes
        z = sizes
        dev, i64 = self.device, torch.int64
        self.state_FB = torch.zeros(len(STATE_FIELDS), capacity, dtype=i64, device=dev)
        self.state_FB[_S["phase"]] = EMPTY
        self.state_FB[_S["forcing_seq"]] = -1
        self.tables = Tables(
            params_PB=torch.zeros(len(PARAM_FIELDS), capacity, dtype=i64, device=dev),
            alpha_BK=torch.full((capacity, z.alphabet), -1, dtype=i64, device=dev),
            eos_BE=torch.full((capacity, z.eos), -1, dtype=i64, device=dev),
            cols_K=torch.arange(z.alphabet, dtype=i64, device=dev) - z.alphabet,
            next_flat=torch.zeros(z.states * (z.alphabet + 1), dtype=i64, device=dev),
            kinds_T=torch.zeros(z.states, dtype=i64, device=dev),
            overlap_T=torch.zeros(z.states, dtype=i64, device=dev),
            seqs_flat=torch.full((z.seqs * z.seq_width,), -1, dtype=i64, device=dev),
            seq_len_Q=torch.zeros(z.seqs, dtype=i64, device=dev),
            newline_SV=torch.zeros(z.specs, z.vocab, dtype=torch.bool, device=self.device),
        )
        self.override_B = torch.full((capacity,), -1, dtype=i64, device=dev)
        self.done_B = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self.ring_RB = torch.full((ring, capacity), -1, dtype=i64, device=dev)
        self.count_1 = torch.zeros(1, dtype=i64, device=dev)
        self._pinned = PinnedBuffers((self.state_FB, self.ring_RB, self.count_1), self.device.type == "cuda")
        self._version = -1
        self._rows: dict[str, npt.NDArray[np.int64]] = {}
        self._occupied = np.zeros(capacity, np.bool_)
        self._step = torch.compile(budget_step_, fullgraph=True, dynamic=False) if compile else budget_step_

    @classmethod
    def from_batch(
        cls,
        batch: BudgetBatch,
        device: torch.device | str,
        *,
        reserve: TableSizes = TableSizes(),
        ring: int = 64,
        compile: bool = False,
    ) -> TensorBudget:
        """Device state for ``batch``'s rows, with tables at least as large as ``reserve``."""
        tables = batch.tables()
        tb = cls(
            batch.capacity, device, sizes=TableSizes.of(tables).union(reserve), ring=ring, compile=compile
        )
        tb.load(batch, tables)
        return tb

    def load(self, batch: BudgetBatch, tables: dict[str, npt.NDArray[np.int32]] | None = None) -> None:
        """Refill the device buffers (same tensors: a captured graph stays valid) from ``batch``."""
        if batch.capacity != self.capacity:
            raise ValueError(f"the batch has {batch.capacity} slots, this TensorBudget {self.capacity}")
        tab = batch.tables() if tables is None else tables
        need = TableSizes.of(tab)
        if not self.sizes.fits(need):
            raise ValueError(
                f"the batch's tables ({need}) exceed this TensorBudget's ({self.sizes}): build it with "
                "from_batch(..., reserve=TableSizes(...)) large enough for every batch it will hold"
            )
        z, b = self.sizes, self.capacity
        row_spec = tab["row_spec"].astype(np.int64)
        occupied = row_spec >= 0
        spec = np.where(occupied, row_spec, 0)
        n_specs = len(tab["vocab_size"])

        def per_row(name: str, empty: int) -> npt.NDArray[np.int64]:
            if n_specs == 0:
                return np.full(b, empty, np.int64)
            return np.where(occupied, tab[name].astype(np.int64)[spec], empty)

        params = np.zeros((len(PARAM_FIELDS), b), np.int64)
        for name in PARAM_FIELDS[:-1]:
            params[_P[name]] = per_row(name, -1 if name.startswith("max_") or name == "answer_seq" else 0)
        params[_P["num_ext_seqs"]] = np.maximum(params[_P["num_ext_seqs"]], 1)  # a modulus
        params[_P["newline_offset"]] = spec * z.vocab
        alpha = np.full((b, z.alphabet), -1, np.int64)
        eos = np.full((b, z.eos), -1, np.int64)
        if n_specs:
            k, e = tab["alphabet"].shape[1], tab["eos"].shape[1]
            alpha[occupied, :k] = tab["alphabet"][spec[occupied]]
            eos[occupied, :e] = tab["eos"][spec[occupied]]
        nxt = np.zeros((z.states, z.alphabet + 1), np.int64)
        t_n, k1 = tab["next"].shape
        nxt[:t_n, : k1 - 1] = tab["next"][:, : k1 - 1]
        nxt[:t_n, k1 - 1 :] = tab["next"][:, k1 - 1 :]  # the "any other id" column fills the padding
        kinds = np.zeros(z.states, np.int64)
        kinds[:t_n] = tab["kinds"]
        overlap = np.zeros(z.states, np.int64)
        overlap[:t_n] = tab["answer_overlap"]
        seqs = np.full((z.seqs, z.seq_width), -1, np.int64)
        q, w = tab["seqs"].shape
        seqs[:q, :w] = tab["seqs"]
        seq_len = np.zeros(z.seqs, np.int64)
        seq_len[:q] = tab["seq_len"]
        newline = np.zeros((z.specs, z.vocab), np.bool_)
        for s, ids in enumerate(tab["newline"]):
            newline[s, ids[ids >= 0]] = True

        st = batch.export_state()
        state = np.zeros((len(STATE_FIELDS), b), np.int64)
        for name in ("phase", "error", "thinking_tokens", "answer_tokens", "forced_tokens"):
            state[_S[name]] = st[name]
        for name in ("extensions_used", "capped", "grace_used", "line_closed", "forcing_pos"):
            state[_S[name]] = st[name]
        base, ext_base, answer_seq = (params[_P[n]] for n in ("state_base", "ext_seq_base", "answer_seq"))
        state[_S["matcher"]] = np.where(occupied, base + st["matcher_state"], 0)
        kind = st["forcing_kind"]
        state[_S["forcing_seq"]] = np.where(
            kind == FORCING_EXTENSION,
            ext_base + st["forcing_index"],
            np.where(kind == FORCING_ANSWER_PREFIX, answer_seq, -1),
        )
        self._rows = {"base": base, "ext_base": ext_base, "answer_seq": answer_seq}
        self._occupied = occupied

        t = self.tables
        for dst, src in (
            (t.params_PB, params),
            (t.alpha_BK, alpha),
            (t.eos_BE, eos),
            (t.next_flat, nxt.reshape(-1)),
            (t.kinds_T, kinds),
            (t.overlap_T, overlap),
            (t.seqs_flat, seqs.reshape(-1)),
            (t.seq_len_Q, seq_len),
            (t.newline_SV, newline),
            (self.state_FB, state),
        ):
            dst.copy_(torch.from_numpy(src))
        self.override_B.fill_(-1)
        self.done_B.copy_((self.state_FB[_S["phase"]] == DONE) | (self.state_FB[_S["phase"]] == ERROR))
        self._version = batch.version

    def step(self, tokens_B: torch.Tensor) -> torch.Tensor:
        """Advance every row by the sampled ``tokens_B`` (int32/int64, on this device), replacing
        them in place with the emitted tokens; returns ``tokens_B``. No host synchronisation."""
        if tokens_B.shape != (self.capacity,) or tokens_B.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"tokens_B must be an int32/int64 tensor of shape ({self.capacity},), "
                f"got {tuple(tokens_B.shape)} {tokens_B.dtype}"
            )
        if tokens_B.device != self.state_FB.device:
            raise ValueError(f"tokens_B is on {tokens_B.device}, the budget state on {self.state_FB.device}")
        self._step(
            self.state_FB, self.tables, tokens_B, self.override_B, self.done_B, self.ring_RB, self.count_1
        )
        return tokens_B

    def mutable_buffers(self) -> list[torch.Tensor]:
        """The buffers :meth:`step` writes (besides its input), e.g. to undo a CUDA-graph warm-up."""
        return [self.state_FB, self.override_B, self.done_B, self.ring_RB, self.count_1]

    def export_state(self) -> dict[str, npt.NDArray[np.int32]]:
        """Every slot's state in the Rust core's export format (synchronises with the device)."""
        st = self.state_FB.cpu().numpy()
        r = self._rows
        occ = self._occupied
        fseq = st[_S["forcing_seq"]]
        kind = np.where(
            fseq < 0,
            FORCING_NONE,
            np.where(fseq == r["answer_seq"], FORCING_ANSWER_PREFIX, FORCING_EXTENSION),
        )
        out = {
            "matcher_state": np.where(occ, st[_S["matcher"]] - r["base"], 0),
            "forcing_kind": kind,
            "forcing_index": np.where(kind == FORCING_EXTENSION, fseq - r["ext_base"], 0),
        }
        for name in STATE_FIELDS:
            if name not in ("matcher", "forcing_seq"):
                out[name] = st[_S[name]]
        return {k: np.ascontiguousarray(v, dtype=np.int32) for k, v in out.items()}

    def sync_to(self, batch: BudgetBatch) -> None:
        """Hand every row's state back to ``batch`` (the one loaded last; synchronises)."""
        if batch.version != self._version:
            raise ValueError(
                "the batch changed since this TensorBudget loaded it: call sync_to before changing "
                "rows, then load(batch) again"
            )
        batch.import_state(self.export_state())
        self._version = batch.version

    def accounting(self) -> Accounting:
        """Per-slot counters now (synchronises; use :meth:`copy_out` in a decode loop)."""
        return accounting_from_state(self.state_FB.cpu().numpy())

    def copy_out(self) -> HostCopy:
        """Start copying the state, the emitted-token ring and the step count to the host.

        On CUDA the copy is asynchronous (pinned memory, ordered after the work already queued on
        the current stream, an event marks completion); on CPU it is a plain copy. Call it at least
        every ``R`` steps so that no emitted token is overwritten before it is copied.
        """
        return self._pinned.start((self.state_FB, self.ring_RB, self.count_1), HostCopy)
