"""Budget forcing inside one ``transformers`` ``model.generate(...)`` call, no re-prompting.

transformers hands a logits processor only the logits, so this adapter uses the core's mask mode
(see :mod:`s1kit.budget.adapters.masking`): forced tokens get all the probability; the tokens that
would end thinking are banned and their probability moves onto the replacement ("Wait", or the answer
prefix in place of an EOS once ending is allowed), and the processor records whether an emission of
it stands for an end attempt. Greedy decoding emits exactly what s1kit's own engine (override mode)
emits. A stopping criterion ends rows the core marks done (e.g. the answer
cap). Once a row has finished (done in the core, or it emitted one of ``eos_token_id``), the pad
tokens transformers appends to it are not fed to the core. Use it with batch generation (one row per
prompt; no beam search); ``do_sample`` must match the ``generate`` call.

Shapes: ``B`` batch rows, ``L`` tokens so far, ``V`` vocabulary, ``K`` ban width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor, StoppingCriteria

from s1kit.budget.adapters.masking import apply_mask
from s1kit.budget.batch import Accounting, BudgetBatch, Phase
from s1kit.budget.spec import BudgetSpec


class HFBudgetForcing:
    """Shared state of one ``generate`` call: pass ``processor`` and ``stopping`` to it.

    ``specs``: one spec for all rows, or one per row. ``pad_token_id``: left padding stripped from
    prompts before the core reads them. ``eos_token_id``: the ids that end a row in ``generate``
    (default: the specs' EOS ids). ``do_sample``: as passed to ``generate`` (an emitted replacement
    is attributed to the end attempt with a draw from ``generator``). Create a new object for
    each ``generate`` call.

    >>> bf = HFBudgetForcing(spec, pad_token_id=tok.pad_token_id)  # doctest: +SKIP
    >>> model.generate(**enc, logits_processor=[bf.processor], stopping_criteria=[bf.stopping])  # doctest: +SKIP
    """

    def __init__(
        self,
        specs: BudgetSpec | Sequence[BudgetSpec],
        *,
        pad_token_id: int | None = None,
        eos_token_id: int | Sequence[int] | None = None,
        do_sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self._specs = specs
        self._pad = pad_token_id
        self._eos = None if eos_token_id is None else np.asarray(eos_token_id, np.int64).reshape(-1)
        self._do_sample = do_sample
        self._generator = generator
        self._taken: torch.Tensor | None = None
        self._batch: BudgetBatch | None = None
        self._seen = 0
        self.processor = _Processor(self)
        self.stopping = _Stopping(self)

    def _start(self, input_ids_BL: torch.Tensor) -> BudgetBatch:
        b = int(input_ids_BL.shape[0])
        specs = [self._specs] * b if isinstance(self._specs, BudgetSpec) else list(self._specs)
        if len(specs) != b:
            raise ValueError(
                f"got {len(specs)} budget specs for a batch of {b} rows: give one spec, or one per row "
                "(beam search and num_return_sequences > 1 multiply rows)"
            )
        batch = BudgetBatch(b, max_rollback=0)
        for i, (spec, row) in enumerate(zip(specs, input_ids_BL.tolist(), strict=True)):
            if self._pad is not None:
                while row and row[0] == self._pad:
                    row = row[1:]
            batch.insert(i, spec)
            batch.process_prompt(i, row)
        self._batch = batch
        self._seen = int(input_ids_BL.shape[1])
        self._force = np.empty(b, np.int64)
        self._redirect = np.empty(b, np.int64)
        self._ban = np.empty((b, max(batch.ban_width, 1)), np.int32)
        self._rows = np.arange(b, dtype=np.int64)
        self._live = np.ones(b, np.bool_)
        self._sample = np.full(b, self._do_sample, np.bool_)
        if self._eos is None:
            self._eos = np.asarray(sorted({t for s in specs for t in s.eos}), np.int64)
        return batch

    def _sync(self, input_ids_BL: torch.Tensor) -> BudgetBatch:
        """Advance the core over the tokens generated since the last call, for the live rows only."""
        batch = self._batch if self._batch is not None else self._start(input_ids_BL)
        n = int(input_ids_BL.shape[1])
        if n > self._seen:
            new = input_ids_BL[:, self._seen :].to("cpu", torch.int64).numpy()
            taken = np.zeros(len(self._live), np.uint8)
            if self._taken is not None:
                taken[:] = self._taken.cpu().numpy()
                self._taken = None
            assert self._eos is not None
            for j in range(new.shape[1]):
                rows = np.nonzero(self._live)[0].astype(np.int64)
                if len(rows):
                    col = np.ascontiguousarray(new[rows, j])
                    batch.advance(col, rows, taken[rows])
                    taken[:] = 0
                    phase = batch.accounting().phase[rows]
                    ended = np.isin(col, self._eos) | (phase == Phase.DONE) | (phase == Phase.ERROR)
                    self._live[rows[ended]] = False
            self._seen = n
        return batch

    def _apply(self, input_ids_BL: torch.Tensor, scores_BV: torch.Tensor) -> torch.Tensor:
        batch = self._sync(input_ids_BL)
        batch.mask(self._force, self._redirect, self._ban)
        if not ((self._force >= 0).any() or (self._redirect >= 0).any()):
            return scores_BV  # nothing to edit this step (most steps): no copy of the (B, V) scores
        # transformers keeps the unprocessed logits for ``output_logits``, so edit a copy, not them.
        # Vectorized over rows (the same edit as the vLLM and SGLang adapters; see masking.py).
        scores = scores_BV.clone()
        self._taken = apply_mask(
            scores,
            self._rows,
            self._force,
            self._redirect,
            self._ban,
            sample_N=self._sample,
            generator=self._generator,
        )
        return scores

    def _done(self, input_ids_BL: torch.Tensor) -> torch.Tensor:
        batch = self._sync(input_ids_BL)
        phase = torch.from_numpy(batch.accounting().phase.astype(np.int64))
        return ((phase == Phase.DONE) | (phase == Phase.ERROR)).to(input_ids_BL.device)

    def accounting(self) -> Accounting:
        """Per-row counters after (or during) ``generate``."""
        if self._batch is None:
            raise RuntimeError("generate has not called the processor yet: pass bf.processor to it")
        return self._batch.accounting()


class _Processor(LogitsProcessor):
    def __init__(self, owner: HFBudgetForcing) -> None:
        self._owner = owner

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> Any:
        return self._owner._apply(input_ids, scores)


class _Stopping(StoppingCriteria):
    def __init__(self, owner: HFBudgetForcing) -> None:
        self._owner = owner

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> Any:
        return self._owner._done(input_ids)
