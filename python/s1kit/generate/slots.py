"""The rows of one ``generate`` call and the slots they occupy.

A request is checked and turned into a :class:`Row` (:func:`row_for`) before anything runs. While
it decodes it occupies one slot of the static cache; :class:`Slots` holds the rows in slots
``[0, n)`` and, per slot, the facts the vectorised per-step checks read as arrays (prompt length,
token limit, spec vocabulary, whether Python must look at every token) next to the host views of the
decode step's input buffers (:class:`~s1kit.generate.step.HostViews`). A row's facts move with it
when compaction moves it to another slot (:meth:`Slots.move`).

Shape legend: N = max_batch slots.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from s1kit.generate.sampling import SamplingMode, fold_seed, sampling_mode
from s1kit.generate.step import DecodeStep, HostViews
from s1kit.generate.types import Request, SamplingParams


@dataclass
class Row:
    """Host bookkeeping of one request while it occupies a slot."""

    index: int
    request: Request
    request_id: str
    prompt: list[int]
    stops: tuple[str, ...]
    stop_window: int
    stop_ids: frozenset[int]
    has_budget: bool
    # Budget EOS ids the engine does not already stop on (emitting one finishes the budget row).
    extra_eos: frozenset[int] = frozenset()
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None
    prefill_tps: float = 0.0
    t_decode0: float = 0.0


def row_for(i: int, r: Request, *, max_len: int, vocab: int, eos_token_ids: frozenset[int]) -> Row:
    """``requests[i]`` checked against the engine (``max_len``, the model's ``vocab``) as a :class:`Row`."""
    if not isinstance(r, Request):
        raise TypeError(f"requests[{i}] must be an s1kit.generate.Request, got {type(r).__name__}")
    prompt = [int(t) for t in r.prompt_ids]
    if not prompt:
        raise ValueError(f"requests[{i}] has an empty prompt: give at least one token")
    if len(prompt) >= max_len:
        raise ValueError(
            f"requests[{i}]'s prompt has {len(prompt)} tokens, which does not fit the cache of "
            f"max_len={max_len} with room to generate: raise max_len or shorten the prompt"
        )
    bad = next((t for t in prompt if not 0 <= t < vocab), None)
    if bad is not None:
        raise ValueError(
            f"requests[{i}]'s prompt holds token {bad}, outside the model's vocabulary of {vocab}"
        )
    sp = r.sampling
    if not isinstance(sp, SamplingParams):
        raise TypeError(f"requests[{i}].sampling must be a SamplingParams, got {type(sp).__name__}")
    extra_eos: frozenset[int] = frozenset()
    if r.budget is not None:
        extra_eos = frozenset(r.budget.eos) - eos_token_ids
    window = 0
    if sp.stop:
        # Tokens are >= 1 character except byte pieces; a margin covers split characters.
        window = max(len(s) for s in sp.stop) + 8
    return Row(
        index=i,
        request=r,
        request_id=r.request_id or str(i),
        prompt=prompt,
        stops=tuple(sp.stop),
        stop_window=window,
        stop_ids=frozenset(sp.stop_token_ids),
        has_budget=r.budget is not None,
        extra_eos=extra_eos,
    )


class Slots:
    """Rows in slots ``[0, n)`` (``rows[i]`` in slot ``i``) and the per-slot arrays that move with them."""

    def __init__(self, max_batch: int, host: HostViews) -> None:
        self.rows: list[Row] = []
        self.host = host
        N = max_batch
        self.prompt_len_N = np.zeros(N, dtype=np.int64)
        self.limit_N = np.zeros(N, dtype=np.int64)  # generated-token count at which the row stops
        self.vocab_N = np.zeros(N, dtype=np.int64)  # budget rows: spec vocab (larger tokens: error)
        self.slow_N: npt.NDArray[np.bool_] = np.zeros(N, dtype=bool)  # rows needing per-token Python checks
        self.params_dirty = True  # sampling parameters changed since the last upload
        self.mode = SamplingMode.GREEDY  # the sampling mode covering every row's parameters

    def __len__(self) -> int:
        return len(self.rows)

    def place(self, row: Row, max_len: int) -> int:
        """Put ``row`` in the next free slot (returned): its facts and its sampling parameters."""
        slot = len(self.rows)
        self.rows.append(row)
        sp = row.request.sampling
        spec = row.request.budget
        self.prompt_len_N[slot] = len(row.prompt)
        self.limit_N[slot] = min(sp.max_new_tokens, max_len - len(row.prompt))
        self.vocab_N[slot] = spec.vocab_size if spec is not None else np.iinfo(np.int64).max
        # Answer stops and answer caps end a budget row without an EOS: watch its phase.
        watch = spec is not None and (bool(spec.answer_stop) or spec.max_answer_tokens is not None)
        self.slow_N[slot] = bool(row.stops or row.stop_ids or row.extra_eos or watch)
        h = self.host
        seed = sp.seed if sp.seed is not None else random.getrandbits(64)
        h.seed[slot] = fold_seed(seed)
        h.temperature[slot] = sp.temperature
        h.top_p[slot] = sp.top_p
        h.top_k[slot] = sp.top_k
        self.params_dirty = True
        return slot

    def move(self, src: int, dst: int) -> None:
        """Move slot ``src``'s row facts, sampling parameters and step inputs to slot ``dst``."""
        h = self.host
        for view in (h.seed, h.temperature, h.top_p, h.top_k, h.pos, h.counter):
            view[dst] = view[src]
        for arr in (self.prompt_len_N, self.limit_N, self.vocab_N, self.slow_N):
            arr[dst] = arr[src]
        self.params_dirty = True

    def prepare(self, step: DecodeStep, B: int) -> None:
        """Before a step or window on bucket ``B``: padding rows and, if they changed, the sampling
        parameters on the device and the sampling mode."""
        n, h = len(self.rows), self.host
        # Padding rows [n, B) decode token 0 at position 0 of free slots: finite, unused, overwritten.
        h.override[n:B] = 0
        h.pos[n:B] = 0
        h.counter[n:B] = 0
        if self.params_dirty:
            h.temperature[n:] = 0.0
            step.upload_params()
            self.params_dirty = False
            self.mode = sampling_mode(
                [r.request.sampling.temperature for r in self.rows],
                [r.request.sampling.top_p for r in self.rows],
                [r.request.sampling.top_k for r in self.rows],
            )
