"""Mask mode (every engine adapter) equals override mode (s1kit's own engine) for greedy decoding.

The engine is a stand-in, not an interface mock: a pure function from the token stream to logits
(seeded by the stream itself) and greedy decoding (``torch.argmax``). Override mode samples the
argmax and lets the core replace it; mask mode edits the logits with the shared
:func:`~s1kit.budget.adapters.masking.apply_mask` and then takes the argmax of the edited logits.
Both must emit the same tokens with the same accounting, step for step, on random specs, prompts
and models, including an EOS or an end delimiter at every phase and every point of the extension
count (the vocabulary is tiny, and the model's bias towards EOS and delimiters is drawn too). Both
edit paths run: the core's host edit (``BudgetBatch.mask_logits``, what the adapters use for CPU
logits) with forced rows filled with -inf, and the torch ops (what runs on a GPU) with one forced
cell set to ``FORCED_LOGIT`` (vLLM, SGLang).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from s1kit.budget import BudgetBatch, BudgetSpec, Phase
from s1kit.budget.adapters.masking import FORCED_LOGIT, apply_mask
from tests.unit.budget_reference import RefSpec
from tests.unit.test_budget_equivalence import V, specs

STEPS = 40


def stand_in_logits(seed: int, stream: list[int], bias: list[float]) -> torch.Tensor:
    """The "model": logits that depend only on the seed and the last tokens of the stream."""
    key = zlib.crc32(np.asarray([seed, len(stream), *stream[-3:]], np.int64).tobytes())
    x = np.random.default_rng(key).normal(size=V) * 1.5 + np.asarray(bias)
    return torch.from_numpy(x)


# (the core's host edit, forced_logit): the two ways the adapters edit.
EDITS = [(True, None), (False, FORCED_LOGIT)]


def run(
    spec: BudgetSpec, prompt: list[int], seed: int, bias: list[float], mask: bool, edit: Any = EDITS[0]
) -> list[tuple]:
    """Greedy decoding until the row is done (or STEPS); per step the emitted token and counters."""
    batch = BudgetBatch(1, max_rollback=0)
    batch.insert(0, spec)
    batch.process_prompt(0, prompt)
    stream = list(prompt)
    rows = np.zeros(1, np.int64)
    force, redirect = np.zeros(1, np.int64), np.zeros(1, np.int64)
    ban = np.zeros((1, max(batch.ban_width, 1)), np.int32)
    out = np.zeros(1, np.int64)
    log = []
    for _ in range(STEPS):
        if batch.accounting().phase[0] in (Phase.DONE, Phase.ERROR):
            break  # a request ends when its row is done
        logits = stand_in_logits(seed, stream, bias)
        if mask:
            edited = logits[None].clone()
            if edit[0]:
                flags = np.zeros(1, np.uint8)
                batch.mask_logits(edited.numpy(), rows, flags, forced_logit=edit[1], stop_finished=False)
            else:
                batch.mask(force, redirect, ban)
                flags = apply_mask(edited, rows, force, redirect, ban, forced_logit=edit[1]).numpy()
            t = int(torch.argmax(edited[0]))
            batch.advance(np.asarray([t], np.int64), None, flags)
        else:
            t = int(torch.argmax(logits))
            batch.step(np.asarray([t], np.int64), out)
            t = int(out[0]) if out[0] >= 0 else t
        stream.append(t)
        a = batch.accounting()
        log.append((t, *(int(getattr(a, f)[0]) for f in a.__dataclass_fields__)))
    return log


@settings(max_examples=300, deadline=None)
@given(
    specs(),
    st.lists(st.integers(0, V - 1), max_size=4),
    st.integers(0, 2**31 - 1),
    st.lists(st.sampled_from([0.0, 0.0, 1.0, 2.5]), min_size=V, max_size=V),
)
def test_mask_mode_equals_override_mode_for_greedy_decoding(
    r: RefSpec, prompt: list[int], seed: int, bias: list[float]
) -> None:
    spec = BudgetSpec(**vars(r))
    override = run(spec, prompt, seed, bias, mask=False)
    for edit in EDITS:
        masked = run(spec, prompt, seed, bias, mask=True, edit=edit)
        assert masked == override, edit
        assert all(step[2] == 0 for step in masked), "mask mode never puts a row in its error state"


def test_the_four_classes_of_issue_13_agree() -> None:
    """The reported repros, each a greedy "model" that emits the given tokens while it can."""

    cases = [
        # (a) extensions used up, EOS in thinking: the answer prefix follows, as in override mode.
        (dict(think_end=((5, 6),), eos=(9,), answer_prefix=(8,)), [], [9, 0]),
        # (b) the model's own first extension token is not counted as an extension.
        (dict(think_end=((6,),), extensions=((7, 5),), num_extensions=1), [], [7, 0]),
    ]
    for fields, prompt, tokens in cases:
        spec = BudgetSpec(vocab_size=V, **fields)  # type: ignore[arg-type]
        logs = []
        for mask in (False, True):
            batch = BudgetBatch(1, max_rollback=0)
            batch.insert(0, spec)
            batch.process_prompt(0, prompt)
            emitted = []
            force, redirect = np.zeros(1, np.int64), np.zeros(1, np.int64)
            ban = np.zeros((1, max(batch.ban_width, 1)), np.int32)
            out = np.zeros(1, np.int64)
            for want in tokens:
                logits = torch.full((1, V), -5.0, dtype=torch.float64)
                logits[0, want] = 5.0
                if mask:
                    batch.mask(force, redirect, ban)
                    taken = apply_mask(logits, np.zeros(1, np.int64), force, redirect, ban)
                    t = int(torch.argmax(logits[0]))
                    batch.advance(np.asarray([t], np.int64), None, taken.numpy())
                else:
                    batch.step(np.asarray([want], np.int64), out)
                    t = int(out[0]) if out[0] >= 0 else want
                emitted.append(t)
            logs.append((emitted, batch.row_state(0)))
        assert logs[0] == logs[1], fields
