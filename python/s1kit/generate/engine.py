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
back to the Rust core, which stays the source of truth, and reload it before the next window.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from s1kit.budget import Accounting, BudgetBatch, Phase
from s1kit.budget.tensor import TableSizes, TensorBudget, accounting_from_state
from s1kit.generate.model import Transformer, load_safetensors_dir
from s1kit.generate.sampling import SamplingMode, fold_seed, sample, sampling_mode
from s1kit.generate.step import COUNTER, POS, DecodeStep, bucket_for
from s1kit.generate.types import Request, Result, SamplingParams

OnToken = Callable[[str, int], None]

# Upper bound on padded tokens per prefill forward; larger admissions are split.
PREFILL_TOKENS = 8192
BUDGET_PATHS = ("auto", "tensor", "host")
# Run-ahead window of the tensor path: decode steps between two host synchronisations. 16 makes the
# synchronisation and the host's per-window work a small share of 16 steps of a 0.5B-1.5B model while a
# finished row costs at most 15 extra (discarded) row-steps and a waiting request at most 15 steps.
SYNC_EVERY = 16
# Device budget tables are sized for at least this much, so new specs rarely force a re-capture.
TENSOR_BUDGET_RESERVE = TableSizes(specs=4, states=64, alphabet=32, seqs=16, seq_width=32, eos=4)


@dataclass
class _Row:
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
    yet inside a CUDA graph on a GPU.
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
        hf_config = None
        if not isinstance(model, Transformer):
            hf_config = getattr(model, "config", None)
            if hf_config is None:
                raise TypeError(
                    f"model must be an s1kit Transformer or a transformers causal LM, got {type(model).__name__}"
                )
            model = Transformer.from_hf_model(model)
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
            _eos_ids(hf_config, tokenizer) if eos_token_ids is None else (int(t) for t in eos_token_ids)
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
        self._tensor_budget: TensorBudget | None = None
        self._tensor_budget_compiled = False

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

    def _load_tensor_budget(self, batch: BudgetBatch) -> None:
        """Load ``batch``'s rows into the device budget, reusing its buffers (and graphs) if they fit."""
        tb, tables = self._tensor_budget, batch.tables()
        need = TableSizes.of(tables)
        if tb is not None and tb.sizes.fits(need) and self._tensor_budget_compiled == self.compile_budget:
            tb.load(batch, tables)
            return
        reserve = TENSOR_BUDGET_RESERVE.union(TableSizes(vocab=self.model.args.vocab_size))
        if tb is not None:
            reserve = reserve.union(tb.sizes)
        tb = TensorBudget.from_batch(batch, self.device, reserve=reserve, compile=self.compile_budget)
        self._tensor_budget = tb
        self._tensor_budget_compiled = self.compile_budget
        self.step.set_budget(tb)

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
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig

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
        eos: list[int] = []
        if (path / "generation_config.json").is_file():
            eos = _as_ids(GenerationConfig.from_pretrained(path).eos_token_id)
        eos = eos or _eos_ids(config, tokenizer)
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
        rows = [self._validate(i, r) for i, r in enumerate(requests)]
        return _Run(self, rows, progress, on_token).run()

    def _validate(self, i: int, r: Request) -> _Row:
        if not isinstance(r, Request):
            raise TypeError(f"requests[{i}] must be an s1kit.generate.Request, got {type(r).__name__}")
        prompt = [int(t) for t in r.prompt_ids]
        if not prompt:
            raise ValueError(f"requests[{i}] has an empty prompt: give at least one token")
        if len(prompt) >= self.max_len:
            raise ValueError(
                f"requests[{i}]'s prompt has {len(prompt)} tokens, which does not fit the cache of "
                f"max_len={self.max_len} with room to generate: raise max_len or shorten the prompt"
            )
        vocab = self.model.args.vocab_size
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
            extra_eos = frozenset(r.budget.eos) - self.eos_token_ids
        window = 0
        if sp.stop:
            # Tokens are >= 1 character except byte pieces; a margin covers split characters.
            window = max(len(s) for s in sp.stop) + 8
        return _Row(
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


class _Run:
    """One ``generate`` call: the admission queue, the slots and the step loop."""

    def __init__(self, engine: Engine, rows: list[_Row], progress: bool, on_token: OnToken | None) -> None:
        self.e = engine
        self.pending = deque(rows)
        self.slots: list[_Row] = []  # slot i holds slots[i]; len(slots) == n active rows
        self.results: list[Result | None] = [None] * len(rows)
        self.on_token = on_token
        self._budget = BudgetBatch(engine.max_batch)
        self.n_budget = 0
        # Tensor path (run-ahead windows); tb_live: whether the device budget holds rows newer than
        # self._budget.
        self.tensor = engine.tensor_budget
        self.tb_live = False
        self.host = engine.step.host_views()
        self.params_dirty = True
        self.bar = tqdm(total=len(rows), disable=not progress, desc="generate", unit="req")
        self.out_N = np.full(engine.max_batch, -1, dtype=np.int64)
        self.slots_N = np.arange(engine.max_batch, dtype=np.int64)
        self.mode = SamplingMode.GREEDY
        N = engine.max_batch
        # Per-slot facts the per-step checks read as arrays (moved with their row on compaction).
        self.prompt_len_N = np.zeros(N, dtype=np.int64)
        self.limit_N = np.zeros(N, dtype=np.int64)  # generated-token count at which the row stops
        self.vocab_N = np.zeros(N, dtype=np.int64)  # budget rows: spec vocab (larger tokens: error)
        self.slow_N = np.zeros(N, dtype=bool)  # rows needing per-token Python checks
        # EOS lookup table over the vocabulary (+1 entry, False, for larger forced ids).
        V = engine.model.args.vocab_size
        self.is_eos_V = np.zeros(V + 1, dtype=bool)
        self.is_eos_V[[t for t in engine.eos_token_ids if 0 <= t < V]] = True

    @property
    def budget(self) -> BudgetBatch:
        """The Rust budget batch, up to date: a live device budget hands its rows back first."""
        if self.tb_live:
            assert self.e._tensor_budget is not None
            self.e._tensor_budget.sync_to(self._budget)
            self.tb_live = False
        return self._budget

    def _accounting(self) -> Accounting:
        tb = self.e._tensor_budget
        if self.tb_live and tb is not None:
            return tb.accounting()
        return self._budget.accounting()

    def run(self) -> list[Result]:
        e = self.e
        with torch.inference_mode():
            while self.pending or self.slots:
                if self.pending and len(self.slots) < e.max_batch:
                    self._admit()
                    self._compact()
                    continue
                if self.tensor:
                    self._decode_window()
                else:
                    self._decode_step()
                self._compact()
        self.bar.close()
        return [r for r in self.results if r is not None]

    # ---- admission and prefill ---------------------------------------------------------------------

    def _admit(self) -> None:
        e = self.e
        free = e.max_batch - len(self.slots)
        batch: list[_Row] = []
        longest = 0
        while self.pending and len(batch) < free:
            nxt = self.pending[0]
            width = max(longest, len(nxt.prompt))
            if batch and width * (len(batch) + 1) > PREFILL_TOKENS:
                break
            batch.append(self.pending.popleft())
            longest = width
        start = len(self.slots)
        for j, row in enumerate(batch):
            slot = start + j
            self.slots.append(row)
            self._set_params(slot, row)
            spec = row.request.budget
            self.prompt_len_N[slot] = len(row.prompt)
            self.limit_N[slot] = min(row.request.sampling.max_new_tokens, e.max_len - len(row.prompt))
            self.vocab_N[slot] = spec.vocab_size if spec is not None else np.iinfo(np.int64).max
            # Answer stops and answer caps end a budget row without an EOS: watch its phase.
            watch = spec is not None and (bool(spec.answer_stop) or spec.max_answer_tokens is not None)
            self.slow_N[slot] = bool(row.stops or row.stop_ids or row.extra_eos or watch)
            if spec is not None:
                self.budget.insert(slot, spec)
                self.budget.process_prompt(slot, row.prompt)
                self.n_budget += 1
        t0 = time.perf_counter()
        sampled = self._prefill(start, batch, longest)
        t1 = time.perf_counter()
        tps = sum(len(r.prompt) for r in batch) / max(t1 - t0, 1e-9)
        for row in batch:
            row.prefill_tps = tps
            row.t_decode0 = t1
        self._absorb(start, sampled, prefill=True)

    def _prefill(self, start: int, batch: list[_Row], T: int) -> np.ndarray:
        e = self.e
        dev = e.device
        B = len(batch)
        # Pad to a multiple of 64 (the cache length is one) so SDPA's mask rows stay aligned.
        T = min(-(-T // 64) * 64, e.cache.max_len)
        tokens_BT = torch.zeros((B, T), dtype=torch.int64)
        for b, row in enumerate(batch):
            tokens_BT[b, : len(row.prompt)] = torch.tensor(row.prompt)
        last_B = torch.tensor([len(r.prompt) - 1 for r in batch], device=dev)
        pos_BT = torch.arange(T, device=dev).expand(B, T)
        # Right padding: a row's padded positions lie after its prompt, are never attended by its real
        # tokens (causal mask) and are overwritten by its decode steps.
        logits_BV = e.model(tokens_BT.to(dev), pos_BT, e.cache, start, T, last_B=last_B).float()
        h = self.host
        sl = slice(start, start + B)
        first_B = sample(
            logits_BV,
            torch.from_numpy(h["temperature"][sl]).to(dev),
            torch.from_numpy(h["top_p"][sl]).to(dev),
            torch.from_numpy(h["top_k"][sl]).to(dev),
            torch.from_numpy(h["seed"][sl]).to(dev),
            torch.zeros(B, dtype=torch.int64, device=dev),
            sampling_mode(
                [r.request.sampling.temperature for r in batch],
                [r.request.sampling.top_p for r in batch],
                [r.request.sampling.top_k for r in batch],
            ),
        )
        # HOST SYNC (once per admission): the first tokens go through the budget core and stop checks.
        out: np.ndarray = first_B.cpu().numpy()
        e.step.host_waits += 1
        return out

    def _set_params(self, slot: int, row: _Row) -> None:
        sp = row.request.sampling
        h = self.host
        seed = sp.seed if sp.seed is not None else random.getrandbits(64)
        h["seed"][slot] = fold_seed(seed)
        h["temperature"][slot] = sp.temperature
        h["top_p"][slot] = sp.top_p
        h["top_k"][slot] = sp.top_k
        self.params_dirty = True

    # ---- decode ------------------------------------------------------------------------------------

    def _prepare(self, n: int, B: int) -> bool:
        """Padding rows, sampling parameters and the device budget before a step or window; returns
        whether the budget runs on the device."""
        e = self.e
        h = self.host
        # Padding rows [n, B) decode token 0 at position 0 of free slots: finite, unused, overwritten.
        h["override"][n:B] = 0
        h["pos"][n:B] = 0
        h["counter"][n:B] = 0
        if self.params_dirty:
            h["temperature"][n:] = 0.0
            e.step.upload_params()
            self.params_dirty = False
            self.mode = sampling_mode(
                [r.request.sampling.temperature for r in self.slots],
                [r.request.sampling.top_p for r in self.slots],
                [r.request.sampling.top_k for r in self.slots],
            )
        on_device = self.tensor and self.n_budget > 0
        if on_device and not self.tb_live:
            e._load_tensor_budget(self._budget)
            self.tb_live = True
        return on_device

    def _decode_step(self) -> None:
        """The host path: one step, one synchronisation, the budget core and every check on the host."""
        e = self.e
        n = len(self.slots)
        B = bucket_for(n, e.step.batch_buckets)
        on_device = self._prepare(n, B)
        S = bucket_for(int(self.host["pos"][:n].max()) + 1, e.step.length_buckets)
        sampled = e.step.run(B, S, self.mode, budget=on_device)
        self._absorb(0, sampled[:n], prefill=False)

    def _decode_window(self) -> None:
        """The tensor path: up to ``sync_every`` steps on the device, one synchronisation, then the
        window's tokens booked row by row in step order (see the module documentation)."""
        e = self.e
        n = len(self.slots)
        B = bucket_for(n, e.step.batch_buckets)
        h = self.host
        remaining = self.limit_N[:n] - h["counter"][:n]  # >= 1: rows at their limit have left
        k = min(e.sync_every, int(remaining.max()))
        if self.pending:
            # Every slot is taken: end the window when the first row reaches its limit, so that its
            # slot is refilled when the host loop would refill it.
            k = min(k, int(remaining.min()))
        # A row feeds positions pos .. pos + min(k, remaining) - 1 in this window.
        S = bucket_for(int((h["pos"][:n] + np.minimum(k, remaining)).max()), e.step.length_buckets)
        on_device = self._prepare(n, B)
        h["limit"][:n] = self.limit_N[:n]
        h["done"][:n] = 0
        h["limit"][n:B] = 0
        h["done"][n:B] = 1  # padding rows stay frozen at position 0
        copy = e.step.run_ahead(B, S, self.mode, k, budget=on_device)
        ring_RN, io_5N, states_RFN = copy.result()  # the window's one host synchronisation
        self._absorb_window(ring_RN[:k, :n], states_RFN)
        # The device advanced the rows that are still running; it has consumed the overrides.
        h["pos"][:n] = io_5N[POS, :n]
        h["counter"][:n] = io_5N[COUNTER, :n]
        h["override"][:n] = -1

    def _absorb_window(self, tokens_KN: np.ndarray, states_RFN: np.ndarray | None) -> None:
        """Book a window's tokens (``tokens_KN[s, slot]``: step ``s``'s emitted token, -1 once the
        device froze the row) exactly as :meth:`_absorb` books one step's: rows in slot order within a
        step, steps in order; a row stops at its first end and its later tokens are discarded."""
        n = tokens_KN.shape[1]
        alive = np.ones(n, dtype=bool)
        before = self.host["counter"][:n].copy()  # tokens each row had before the window
        for s, ids_N in enumerate(tokens_KN):
            live = np.flatnonzero(alive)
            if not len(live):
                return
            ids = ids_N[live]
            if (ids < 0).any():
                raise RuntimeError(
                    "internal error: the device froze a row the host has not finished (slots "
                    f"{live[ids < 0].tolist()}, window step {s}); please report it"
                )

            def acc(s: int = s) -> Accounting | None:  # the budget counters as of step s
                return accounting_from_state(states_RFN[s]) if states_RFN is not None else None

            alive[self._book(live, ids, ids, before[live] + s + 1, acc)] = False

    def _absorb(self, start: int, sampled: np.ndarray, *, prefill: bool) -> None:
        """Apply the budget override to slots ``[start, start + len(sampled))`` and book the tokens.

        Vectorised over rows; only rows that may finish (or need stop-string checks) reach Python.
        """
        k = len(sampled)
        sl = slice(start, start + k)
        out = self.budget_override(start, sampled)
        forced = out >= 0
        emitted = np.where(forced, out, sampled)
        h = self.host
        # The device holds the sampled token; feed it unless the host must override it.
        h["override"][sl] = emitted if prefill else np.where(forced, out, -1)
        n_tok = h["counter"][sl] + 1 if not prefill else np.ones(k, dtype=np.int64)
        h["counter"][sl] = n_tok
        h["pos"][sl] = self.prompt_len_N[sl] + n_tok - 1
        self._book(np.arange(start, start + k), emitted, sampled, n_tok, self._accounting)

    def _book(
        self,
        slots: np.ndarray,
        emitted: np.ndarray,
        sampled: np.ndarray,
        n_tok: np.ndarray,
        accounting: Callable[[], Accounting | None],
    ) -> np.ndarray:
        """One step's booking for rows ``slots``: append and stream each row's emitted token, then finish
        the rows it ends. ``n_tok``: each row's token count with it; ``sampled``: what the device
        sampled (checked against the spec's vocabulary); ``accounting``: the budget counters as of this
        step, asked for only if a budget row may finish. Vectorised over rows; only rows that may
        finish (or need stop-string checks) reach Python. Returns the slots that finished."""
        ids = emitted.tolist()
        rows = [self.slots[j] for j in slots.tolist()]
        for row, t in zip(rows, ids, strict=True):
            row.tokens.append(t)
        if self.on_token is not None:
            for row, t in zip(rows, ids, strict=True):
                self.on_token(row.request_id, t)
        maybe = (
            (n_tok >= self.limit_N[slots])
            | self.is_eos_V[np.minimum(emitted, len(self.is_eos_V) - 1)]
            | (sampled >= self.vocab_N[slots])
            | (sampled < 0)
            | self.slow_N[slots]
        )
        candidates = np.flatnonzero(maybe)
        finished: list[int] = []
        if not len(candidates):
            return np.array(finished, dtype=np.int64)
        acc = accounting() if self.n_budget else None
        now = time.perf_counter()
        for j in candidates.tolist():
            slot, row = int(slots[j]), rows[j]
            row.finish = self._finish_reason(row, ids[j], slot, acc)
            if row.finish is not None:
                self._finish(row, slot, acc, now)
                finished.append(slot)
        return np.array(finished, dtype=np.int64)

    def budget_override(self, start: int, sampled: np.ndarray) -> np.ndarray:
        """(sampled tokens of slots ``start..``) -> per row the forced token, or -1.

        The budget's hook into the host loop and into prefills (both paths): it runs on the host (the
        Rust core); the device applies its result with
        :func:`~s1kit.generate.step.apply_budget_override`. In run-ahead windows the device budget
        steps in the graph instead and this function is not called.
        """
        k = len(sampled)
        out = self.out_N[:k]
        out.fill(-1)
        if self.tb_live:
            # Only reached by a prefill of rows without a budget (inserting one syncs the device
            # budget back first): nothing to force.
            return out
        if self.n_budget:
            # The budget core sees every sampled token; slots without a budget answer -1.
            self.budget.step(sampled, out, rows=self.slots_N[start : start + k])
        return out

    def _finish_reason(self, row: _Row, t: int, slot: int, acc: Any) -> str | None:
        e = self.e
        phase = int(acc.phase[slot]) if row.has_budget and acc is not None else None
        if phase == Phase.ERROR:
            return "error"
        if t in e.eos_token_ids or t in row.extra_eos:
            return "eos"
        if t in row.stop_ids:
            return "stop"
        if phase == Phase.DONE:
            spec = row.request.budget
            assert spec is not None
            cap = spec.max_answer_tokens
            return "length" if cap is not None and int(acc.answer_tokens[slot]) >= cap else "stop"
        if row.stops:
            tail = e.tokenizer.decode(row.tokens[-row.stop_window :], skip_special_tokens=False)
            if any(s in tail for s in row.stops):
                return "stop"
        if len(row.tokens) >= row.request.sampling.max_new_tokens:
            return "length"
        if len(row.prompt) + len(row.tokens) >= e.max_len:
            return "length"
        return None

    def _finish(self, row: _Row, slot: int, acc: Any, now: float) -> None:
        e = self.e
        ids = row.tokens[:-1] if row.finish == "eos" else row.tokens
        text = e.tokenizer.decode(ids, skip_special_tokens=False)
        if row.finish == "stop" and row.stops:
            cuts = [i for i in (text.find(s) for s in row.stops) if i >= 0]
            if cuts:
                text = text[: min(cuts)]
        res = Result(
            request_id=row.request_id,
            prompt_ids=list(row.prompt),
            token_ids=list(row.tokens),
            text=text,
            finish_reason=row.finish or "length",
            prefill_tokens_per_s=row.prefill_tps,
            decode_tokens_per_s=(len(row.tokens) - 1) / max(now - row.t_decode0, 1e-9)
            if len(row.tokens) > 1
            else 0.0,
        )
        if row.has_budget and acc is not None:
            res.thinking_tokens = int(acc.thinking_tokens[slot])
            res.answer_tokens = int(acc.answer_tokens[slot])
            res.forced_tokens = int(acc.forced_tokens[slot])
            res.extensions_used = int(acc.extensions_used[slot])
            res.capped = bool(acc.capped[slot])
        self.results[row.index] = res
        self.bar.update(1)

    def _compact(self) -> None:
        """Drop finished rows; fill each hole with the last active row (K/V, budget, parameters)."""
        e = self.e
        h = self.host
        i = 0
        while i < len(self.slots):
            if self.slots[i].finish is None:
                i += 1
                continue
            if self.slots[i].has_budget:
                self.budget.remove(i)
                self.n_budget -= 1
            last = len(self.slots) - 1
            while last > i and self.slots[last].finish is not None:
                if self.slots[last].has_budget:
                    self.budget.remove(last)
                    self.n_budget -= 1
                self.slots.pop()
                last -= 1
            if last == i:
                self.slots.pop()
                break
            row = self.slots.pop()
            self.slots[i] = row
            length = len(row.prompt) + len(row.tokens) - 1  # positions holding K/V
            e.cache.move_row(last, i, length)
            if row.has_budget:
                self.budget.move_row(last, i)
            for key in ("seed", "temperature", "top_p", "top_k", "pos", "counter"):
                h[key][i] = h[key][last]
            for arr in (self.prompt_len_N, self.limit_N, self.vocab_N, self.slow_N):
                arr[i] = arr[last]
            # The device's sampled token in slot i belonged to the finished row.
            h["override"][i] = row.tokens[-1]
            self.params_dirty = True
            i += 1


def _as_ids(x: Any) -> list[int]:
    if x is None:
        return []
    if isinstance(x, int):
        return [x]
    return [int(t) for t in x]


def _eos_ids(config: Any, tokenizer: Any) -> list[int]:
    ids = _as_ids(getattr(config, "eos_token_id", None)) if config is not None else []
    gen = getattr(config, "generation_config", None) if config is not None else None
    ids += _as_ids(getattr(gen, "eos_token_id", None))
    ids += _as_ids(getattr(tokenizer, "eos_token_id", None))
    return sorted(set(ids))


__all__ = ["Engine"]
