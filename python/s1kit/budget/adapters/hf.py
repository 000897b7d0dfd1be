"""Budget forcing inside one ``transformers`` ``model.generate(...)`` call, no re-prompting.

transformers hands a logits processor only the logits, so this adapter uses the core's mask mode:
forced tokens get all the probability; while ending is not allowed, the probability of every token
that would end thinking moves onto the first extension token, whose emission then forces the rest
of "Wait" (see :mod:`s1kit.budget`). A stopping criterion ends rows the core marks done (e.g. the
answer cap). Use it with batch generation (one row per prompt; no beam search).

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
    prompts before the core reads them. Create a new object for each ``generate`` call.

    >>> bf = HFBudgetForcing(spec, pad_token_id=tok.pad_token_id)  # doctest: +SKIP
    >>> model.generate(**enc, logits_processor=[bf.processor], stopping_criteria=[bf.stopping])  # doctest: +SKIP
    """

    def __init__(self, specs: BudgetSpec | Sequence[BudgetSpec], *, pad_token_id: int | None = None) -> None:
        self._specs = specs
        self._pad = pad_token_id
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
        return batch

    def _sync(self, input_ids_BL: torch.Tensor) -> BudgetBatch:
        """Advance the core over the tokens generated since the last call."""
        batch = self._batch if self._batch is not None else self._start(input_ids_BL)
        n = int(input_ids_BL.shape[1])
        if n > self._seen:
            new = input_ids_BL[:, self._seen :].to("cpu", torch.int64).numpy()
            for j in range(new.shape[1]):
                batch.advance(np.ascontiguousarray(new[:, j]))
            self._seen = n
        return batch

    def _apply(self, input_ids_BL: torch.Tensor, scores_BV: torch.Tensor) -> torch.Tensor:
        batch = self._sync(input_ids_BL)
        batch.mask(self._force, self._redirect, self._ban)
        if not ((self._force >= 0).any() or (self._redirect >= 0).any()):
            return scores_BV  # nothing to edit this step (most steps): no copy of the (B, V) scores
        # transformers keeps the unprocessed logits for ``output_logits``, so edit a copy, not them.
        # Vectorized over rows (the same edit as the vLLM and SGLang adapters; see masking.py).
        return apply_mask(scores_BV.clone(), self._rows, self._force, self._redirect, self._ban)

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
