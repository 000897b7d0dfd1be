"""Budget forcing, exact and per token (the s1 paper's method), on a Rust core.

One row, in its thinking span:

1. A forced sequence in progress (an extension or the answer prefix) is emitted whole, in order.
2. **Cap**: when ``thinking_tokens`` reaches ``max_thinking_tokens`` (after at most ``grace_tokens``
   more to finish the line), the row forces ``answer_prefix`` (end delimiter + "Final Answer:").
3. **Attempt to end**: the sampled token completes a ``think_end`` spelling (matched across steps) or
   is EOS. While ``thinking_tokens < min_thinking_tokens`` or fewer than ``num_extensions`` extensions
   were used, it is replaced by the next extension ("Wait"), forced whole. Otherwise a delimiter moves
   the row to its answer, and an EOS is replaced by ``answer_prefix``.

A forced answer prefix continues the stream: the longest proper prefix of it that the emitted tokens
already end with (e.g. the newline the model just wrote) is not repeated. Delimiters are matched over the whole
stream, prompt included, and the matcher is never reset between phases. In the answer, EOS, an
``answer_stop`` spelling or ``max_answer_tokens`` finishes the row (the forced prefix counts; no
sampled answer token passes the cap, so 0 lets none through). Forced tokens count in the phase they
are emitted in and in ``forced_tokens``. ``rollback(slot, k)`` undoes any ``k`` steps exactly, also
steps fed after the row ended.

Override mode (s1kit's engine) and mask mode (logits-only stacks, :mod:`s1kit.budget.adapters`) have
one semantics: greedy decoding gives the same tokens and accounting in both; see
:mod:`s1kit.budget.adapters.masking` for sampling. Specs mask mode cannot run exactly are refused.

Files: ``spec.py`` (``BudgetSpec`` and its builder from a tokenizer), ``spelling.py`` (delimiter and
extension strings as token ids), ``delimiters.py`` (which thinking delimiters drive a model), ``batch.py`` (``BudgetBatch``, the binding to the Rust core), ``tensor.py``
(``TensorBudget``, the device mirror for a CUDA-graph decode step), ``tensor_step.py`` (its
transition, written to be read beside ``row.rs``), ``tensor_layout.py`` (the batch's tables and
states in the mirror's layout, and back), ``copyout.py`` (pinned, asynchronous device-to-host copies),
``adapters/`` (the budget core embedded in other inference stacks), ``cli.py``.
"""

from __future__ import annotations

from s1kit.budget.batch import Accounting, BudgetBatch, Phase, RowError
from s1kit.budget.spec import STYLES, BudgetSpec

__all__ = ["STYLES", "Accounting", "BudgetBatch", "BudgetSpec", "Phase", "RowError"]
