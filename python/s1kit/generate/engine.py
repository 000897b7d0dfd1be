"""The generation engine: batched prefill, a fixed-shape decode loop, budget forcing inside it.

Shape legend: B batch rows, T prompt tokens (padded), V vocabulary, N = max_batch slots.

Rows live in cache slots ``[0, n)``. New requests are prefilled into the slots after the active
ones (continuous batching: a slot freed by a finished row is refilled while the others decode). A
finished row leaves the batch before the next step (host path) or window (tensor path): the last
active row moves into its slot (its K/V, its budget state and its sampling parameters), and the step
runs on the smallest batch bucket holding ``n`` rows, so finished rows stop costing compute.

Two decode loops give identical outputs; ``budget_path`` picks one ("auto", the default: "tensor" on
CUDA, "host" elsewhere).

"host", one host synchronisation per step: the device samples one token per row
(:meth:`DecodeStep.run <s1kit.generate.step.DecodeStep.run>`); the host reads them, the budget core
(``BudgetBatch.step``, override mode) returns per row a forced token or -1, the emitted token is the
forced one or the sampled one, and the host checks every row for its end. A forced token reaches the
model as the next step's input through ``override``: forcing "Wait" or the answer prefix costs exactly
the forced tokens' decode steps, never a re-prefill.

"tensor", run-ahead, one host synchronisation per ``sync_every`` (K) steps, for every row of the batch,
with or without a budget: budget forcing runs in the decode step on the device (the tensor mirror
:class:`~s1kit.budget.tensor.TensorBudget` of the Rust core, captured in the step's CUDA graph), and
so does the per-row bookkeeping (:meth:`DecodeStep.run_ahead <s1kit.generate.step.DecodeStep.run_ahead>`):
positions and token counts advance, emitted tokens go to a ring, and a row that emits an EOS id,
reaches its token limit (``min(max_new_tokens, max_len - prompt length)``) or whose budget reaches
DONE or ERROR is frozen. The host queues K steps, copies the ring, the counts and the per-step budget
state out once (pinned memory, an event), and replays the K tokens per row in step order as the host
loop would: it appends them, calls ``on_token``, applies the checks that stay on the host (stop
strings, ``stop_token_ids``, budget EOS ids that are not model EOS ids, the budget's answer stop and
answer cap, read from the per-step budget state) and cuts a row at its first end; tokens a row
generated after its end are discarded. Rows are independent (per-row attention, counter-based
sampling), so a row's tokens never depend on how far the window ran past another row's end. Windows are
shortened to what is left: never longer than the longest remaining row, and, while requests wait for a
slot, no longer than the shortest one (a row at its token limit frees its slot when the host loop would
free it; a row ending on EOS or a stop string frees it at the window's end, at most K - 1 steps later).
Admissions and compaction happen between windows only. The attention-length bucket of a window covers
every position fed in it. Row changes (admission, finished rows leaving) hand the device budget state
back to the Rust core, and the next window loads it again: one object,
:class:`~s1kit.generate.budget_state.BudgetState` (``Engine.budget``), holds the budget truth, says
where it is (``"host"``: the Rust batch, ``"device"``: the tensor mirror) and moves it only through
its explicit ``to_host()`` / ``to_device()``.

Where each part of a ``generate`` call lives (:func:`run_loop` wires them):

- ``slots.py``: a request checked into a :class:`~s1kit.generate.slots.Row`; the slots and their
  per-slot arrays (``Slots``);
- ``scheduler.py``: the waiting queue, admission into free slots, compaction (``Scheduler``);
- ``stepping.py``: prefill, one host-path step, one run-ahead window (``Stepper``);
- ``booking.py``: the budget override on the host and the booking of emitted tokens (``Booking``);
- ``finishing.py``: why a row ends and its ``Result`` (``finish_reason``, ``result_for``, ``Results``);
- ``budget_state.py``: the budget truth and its transfers (``BudgetState``);
- ``step.py``: the fixed-shape device step, its run-ahead variant and their CUDA graphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from s1kit.generate.booking import Booking, OnToken
from s1kit.generate.budget_state import TENSOR_BUDGET_RESERVE, BudgetState
from s1kit.generate.finishing import Results
from s1kit.generate.model import Transformer, load_safetensors_dir
from s1kit.generate.scheduler import PREFILL_TOKENS, Scheduler
from s1kit.generate.slots import Row, Slots, row_for
from s1kit.generate.step import DecodeStep
from s1kit.generate.stepping import Stepper
from s1kit.generate.types import Request, Result

BUDGET_PATHS = ("auto", "tensor", "host")
# Run-ahead window of the tensor path: decode steps between two host synchronisations. 16 makes the
# synchronisation and the host's per-window work a small share of 16 steps of a 0.5B-1.5B model while a
# finished row costs at most 15 extra (discarded) row-steps and a waiting request at most 15 steps.
SYNC_EVERY = 16


class Engine:
    """Generates for many requests with a static cache of ``(max_batch, max_len)``.

    ``model`` is a :class:`~s1kit.generate.model.Transformer` or a loaded ``transformers`` Qwen2/Qwen3/Llama
    causal LM (see :meth:`Transformer.from_hf_model`); ``tokenizer`` a ``transformers`` tokenizer
    (used to decode text and stop strings, and for its EOS id). ``max_batch`` rows decode at once
    (``generate`` queues the rest); a request's prompt plus output never exceeds ``max_len`` tokens.
    ``cuda_graphs`` (default: on for CUDA) captures the decode step per batch bucket.
    ``budget_path`` ("auto", "tensor" or "host"; an attribute that may be changed between calls) says
    where budget forcing and the per-step bookkeeping run: see the module documentation.
    ``sync_every`` (K, default :data:`SYNC_EVERY`; an attribute too) is the tensor path's run-ahead
    window: decode steps between two host synchronisations. ``compile_budget`` wraps the device budget
    step in ``torch.compile`` (fewer kernels on CUDA); off by default: it is verified on CPU only, not
    yet inside a CUDA graph on a GPU. ``budget`` (a :class:`~s1kit.generate.budget_state.BudgetState`)
    holds the budget truth of the rows being generated and says where it is.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        max_batch: int = 16,
        max_len: int = 4096,
        cuda_graphs: bool | None = None,
        eos_token_ids: Sequence[int] | None = None,
        budget_path: str = "auto",
        sync_every: int = SYNC_EVERY,
        compile_budget: bool = False,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2, got {max_len}")
        model, hf_config = _as_transformer(model)
        if device is not None:
            model = model.to(device)
        if dtype is not None:
            model = model.to(dtype)
        self.model: Transformer = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.device = self.model.tok_embeddings.weight.device
        self.max_batch = max_batch
        self.max_len = max_len
        # The cache is rounded up to a multiple of 64 positions so every attention-length bucket keeps
        # SDPA's mask rows aligned; requests are still limited to max_len.
        cache_len = -(-max_len // 64) * 64
        self.model.setup_rope(cache_len)
        self.cache = self.model.new_cache(max_batch, cache_len)
        use_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        if use_graphs and self.device.type != "cuda":
            raise ValueError("cuda_graphs=True needs a CUDA device; pass device='cuda' or cuda_graphs=None")
        self.eos_token_ids = frozenset(
            config_eos_ids(hf_config, tokenizer) if eos_token_ids is None else (int(t) for t in eos_token_ids)
        )
        self.budget_path = budget_path
        self.sync_every = sync_every
        self._check_loop_args()
        self.step = DecodeStep(
            self.model,
            self.cache,
            cuda_graphs=use_graphs,
            ring=sync_every,
            eos_ids=sorted(self.eos_token_ids),
        )
        self.compile_budget = compile_budget
        # The budget truth of the rows being generated, on the host or on the device.
        self.budget = BudgetState(self.step, self.model.args.vocab_size)

    def _check_loop_args(self) -> None:
        if self.budget_path not in BUDGET_PATHS:
            raise ValueError(f"budget_path must be one of {BUDGET_PATHS}, got {self.budget_path!r}")
        if not isinstance(self.sync_every, int) or self.sync_every < 1:
            raise ValueError(
                f"sync_every must be an int >= 1 (decode steps per host sync), got {self.sync_every!r}"
            )

    @property
    def tensor_budget(self) -> bool:
        """Whether budget forcing runs in the decode step on the device (see ``budget_path``)."""
        return self.budget_path == "tensor" or (self.budget_path == "auto" and self.device.type == "cuda")

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        max_batch: int = 16,
        max_len: int = 4096,
        cuda_graphs: bool | None = None,
        budget_path: str = "auto",
        sync_every: int = SYNC_EVERY,
    ) -> Engine:
        """Load a Hugging Face model directory (config.json, *.safetensors, tokenizer files).

        ``dtype`` defaults to bfloat16 on CUDA and float32 on CPU.
        """
        from transformers import AutoConfig, AutoTokenizer

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} has no config.json: pass a Hugging Face model directory")
        config = AutoConfig.from_pretrained(path)
        dev = torch.device(device)
        if dtype is None:
            dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
        model = Transformer.from_hf_state_dict(
            config, load_safetensors_dir(path, dev), device=dev, dtype=dtype
        )
        tokenizer = AutoTokenizer.from_pretrained(path)
        eos = checkpoint_eos_ids(path, config, tokenizer)
        return cls(
            model,
            tokenizer,
            max_batch=max_batch,
            max_len=max_len,
            cuda_graphs=cuda_graphs,
            eos_token_ids=eos,
            budget_path=budget_path,
            sync_every=sync_every,
        )

    # ---- public API --------------------------------------------------------------------------------

    def generate(
        self,
        requests: Sequence[Request],
        *,
        progress: bool = False,
        on_token: OnToken | None = None,
    ) -> list[Result]:
        """Run every request to completion; results come back in request order.

        ``on_token(request_id, token_id)`` is called for each emitted token as soon as it is known
        (forced tokens included). A request without ``request_id`` gets its index as a string.
        """
        self._check_loop_args()
        if self.sync_every > self.step.ring:
            self.step.set_ring(self.sync_every)
        vocab, eos = self.model.args.vocab_size, self.eos_token_ids
        rows = [
            row_for(i, r, max_len=self.max_len, vocab=vocab, eos_token_ids=eos)
            for i, r in enumerate(requests)
        ]
        with torch.inference_mode():
            return run_loop(self, rows, progress, on_token)


def run_loop(engine: Engine, rows: list[Row], progress: bool, on_token: OnToken | None) -> list[Result]:
    """One ``generate`` call's loop: admit and prefill while slots are free, else a step (host path) or a window
    (tensor path); compact after each."""
    engine.budget.start_run()
    slots = Slots(engine.max_batch, engine.step.host_views())
    results = Results(len(rows), progress)
    booking = Booking(
        slots,
        engine.budget,
        results,
        eos_token_ids=engine.eos_token_ids,
        tokenizer=engine.tokenizer,
        max_len=engine.max_len,
        vocab_size=engine.model.args.vocab_size,
        on_token=on_token,
    )
    tensor = engine.tensor_budget
    stepper = Stepper(
        engine.model,
        engine.step,
        slots,
        engine.budget,
        booking,
        tensor=tensor,
        sync_every=engine.sync_every,
        compile_budget=engine.compile_budget,
    )
    scheduler = Scheduler(rows, slots, engine.budget, engine.cache, engine.max_len)
    while scheduler.busy():
        if scheduler.can_admit():
            stepper.prefill(*scheduler.admit())
        elif tensor:
            stepper.decode_window(waiting=bool(scheduler.pending))
        else:
            stepper.decode_step()
        scheduler.compact()
    return results.close()


def _as_transformer(model: Any) -> tuple[Transformer, Any]:
    """``model`` as an s1kit Transformer, and its ``transformers`` config (``None`` if it was one)."""
    if isinstance(model, Transformer):
        return model, None
    hf_config = getattr(model, "config", None)
    if hf_config is None:
        raise TypeError(
            f"model must be an s1kit Transformer or a transformers causal LM, got {type(model).__name__}"
        )
    return Transformer.from_hf_model(model), hf_config


def _as_ids(x: Any) -> list[int]:
    if x is None:
        return []
    if isinstance(x, int):
        return [x]
    return [int(t) for t in x]


def checkpoint_eos_ids(model_dir: str | Path, config: Any, tokenizer: Any) -> list[int]:
    """A checkpoint's EOS ids: its generation_config.json's when it has them, else the config's (and
    its generation config's) and the tokenizer's. Every backend that loads weights itself uses this."""
    path = Path(model_dir)
    if (path / "generation_config.json").is_file():
        from transformers import GenerationConfig

        eos = _as_ids(GenerationConfig.from_pretrained(path).eos_token_id)
        if eos:
            return eos
    return config_eos_ids(config, tokenizer)


def config_eos_ids(config: Any, tokenizer: Any) -> list[int]:
    """EOS ids from a transformers config (and its generation config) and the tokenizer."""
    ids = _as_ids(getattr(config, "eos_token_id", None)) if config is not None else []
    gen = getattr(config, "generation_config", None) if config is not None else None
    ids += _as_ids(getattr(gen, "eos_token_id", None))
    ids += _as_ids(getattr(tokenizer, "eos_token_id", None))
    return sorted(set(ids))


__all__ = [
    "BUDGET_PATHS",
    "PREFILL_TOKENS",
    "SYNC_EVERY",
    "TENSOR_BUDGET_RESERVE",
    "Engine",
    "OnToken",
    "checkpoint_eos_ids",
    "config_eos_ids",
]
