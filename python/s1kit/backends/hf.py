"""``--engine hf``: ``transformers``' ``model.generate`` with s1kit's budget forcing in its logits processors.

A batch of requests runs as few ``generate`` calls as possible: requests with a budget and requests
without one go to separate calls (the budget processor governs every row of its call), each call
holds at most ``max_batch`` rows, prompts are left-padded with the tokenizer's pad id (its EOS id
when it has none) and ``generate`` runs greedy (``do_sample=False``) over the scores the processors
leave. Everything that differs per row is applied per row by s1kit's processors and stopping
criterion, not by ``generate``'s own (one per call) settings:

- **Sampling.** transformers samples every row of a call with one generator, so a row's tokens
  would depend on what else is in the batch. This backend does not use transformers' sampler: for
  rows with ``temperature > 0`` a logits processor draws the token with s1kit's own counter-based
  sampler (:func:`s1kit.generate.sampling.sample`: temperature, top-k, top-p; the uniform of token
  ``k`` is a hash of ``(seed, k)``) and leaves that row one finite score, which ``generate``'s greedy
  pick emits. So a request's ``seed`` maps to the stream s1kit's own engine draws for it (the same
  seed folding and counter), whatever else is in the batch: each row is drawn in its own way
  (through the sorted top-k/top-p path only if it filters); s1kit's engine draws all sampled rows of
  a step through that path once one of them filters, so there the streams agree when the sampled
  rows all filter or all do not. ``seed=None`` draws a fresh random seed per request. Greedy rows
  take the argmax (first on ties, as ``torch.argmax``).
- **Budget forcing** (:class:`s1kit.budget.adapters.hf.HFBudgetForcing`, mask mode, greedy rule)
  runs after the sampler: on a sampled row it sees one finite score, so it forces, or replaces an
  end attempt, exactly as override mode does after sampling. Greedy and seeded streams and their
  accounting are therefore those of s1kit's own engine on the same logits.
- **Ends** (checked after every token, in this order, as s1kit's engine does): the budget row in its
  error phase ("error"); an EOS id of the model (``generation_config.json``, else the config's and
  the tokenizer's) or of the request's spec ("eos"); a ``stop_token_ids`` id ("stop"); the budget row
  done ("length" when its answer cap is reached, else "stop": its answer stop); a ``stop`` string in
  the decoded tail ("stop", cut from the text); ``max_new_tokens`` or ``max_len`` ("length"). A
  row's accounting is read from the processor's row when the row ends, before ``generate`` appends
  pad tokens to it; pads after a row's end are never fed to its budget row.

Loading (``load``): ``AutoModelForCausalLM.from_pretrained`` on ``--device`` (default CUDA when
available) in ``--dtype`` ("auto": bfloat16 on CUDA, float32 on CPU, as s1kit's engine);
``--engine-args`` pass to ``from_pretrained`` (``dtype``, ``torch_dtype`` and ``device_map`` are
refused: use ``--dtype`` / ``--device``); ``--tensor-parallel-size`` must be 1.

Throughput fields: ``prefill_tokens_per_s`` is the call's prompt tokens over the time to its first
scores; ``decode_tokens_per_s`` a row's tokens after the first over the time from then to its end.
Beam search, ``num_return_sequences`` and transformers' own penalties are not used.

Shapes: ``B`` rows of one ``generate`` call, ``L`` tokens so far (prompt padded to ``T`` plus the
generated ones), ``V`` vocabulary.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria

from s1kit.backends.base import EngineOptions
from s1kit.budget import BudgetSpec, Phase
from s1kit.budget.adapters.hf import HFBudgetForcing
from s1kit.generate.engine import checkpoint_eos_ids, config_eos_ids
from s1kit.generate.sampling import SamplingMode, fold_seed, sample
from s1kit.generate.types import Request, Result, SamplingParams

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class _Row:
    """One request inside one ``generate`` call."""

    index: int
    request: Request
    prompt: list[int]
    limit: int  # generated tokens at which the row ends ("length")
    extra_eos: frozenset[int]
    finish: str | None = None
    n_tokens: int = 0
    accounting: dict[str, Any] | None = None
    t_end: float = 0.0


class HFBackend:
    """A loaded ``transformers`` causal LM and its tokenizer behind the backend interface.

    ``eos_token_ids``: the ids that end a request (default: the model config's and the tokenizer's).
    The model's ``generation_config`` is replaced by a neutral one (no sampling flags, no penalties)
    so that only what a request asks for applies.
    """

    name = "hf"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch: int = 16,
        max_len: int = 4096,
        eos_token_ids: Sequence[int] | None = None,
    ) -> None:
        from transformers import GenerationConfig

        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2, got {max_len}")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer: Any = tokenizer
        self.max_batch = max_batch
        self.max_len: int | None = max_len
        eos = list(eos_token_ids) if eos_token_ids is not None else config_eos_ids(model.config, tokenizer)
        if not eos:
            raise ValueError(
                "the model has no EOS id (config, generation_config.json and tokenizer lack one): "
                "pass eos_token_ids"
            )
        self.eos_token_ids = frozenset(int(t) for t in eos)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = int(pad) if pad is not None else min(self.eos_token_ids)
        self.model.generation_config = GenerationConfig(
            eos_token_id=sorted(self.eos_token_ids), pad_token_id=self.pad_token_id
        )
        self.device = next(self.model.parameters()).device
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        rows = [self._validate(i, r) for i, r in enumerate(requests)]
        results: list[Result | None] = [None] * len(rows)
        for with_budget in (True, False):
            group = [r for r in rows if (r.request.budget is not None) == with_budget]
            for k in range(0, len(group), self.max_batch):
                for row, res in self._call(group[k : k + self.max_batch]):
                    results[row.index] = res
        return [r for r in results if r is not None]

    def close(self) -> None:
        pass

    def _validate(self, i: int, r: Request) -> _Row:
        if not isinstance(r, Request):
            raise TypeError(f"requests[{i}] must be an s1kit.generate.Request, got {type(r).__name__}")
        if not isinstance(r.sampling, SamplingParams):
            raise TypeError(
                f"requests[{i}].sampling must be a SamplingParams, got {type(r.sampling).__name__}"
            )
        prompt = [int(t) for t in r.prompt_ids]
        if not prompt:
            raise ValueError(f"requests[{i}] has an empty prompt: give at least one token")
        assert self.max_len is not None
        if len(prompt) >= self.max_len:
            raise ValueError(
                f"requests[{i}]'s prompt has {len(prompt)} tokens, which does not fit max_len={self.max_len} "
                "with room to generate: raise max_len or shorten the prompt"
            )
        bad = next((t for t in prompt if not 0 <= t < self.vocab_size), None)
        if bad is not None:
            raise ValueError(
                f"requests[{i}]'s prompt holds token {bad}, outside the model's vocabulary of {self.vocab_size}"
            )
        extra = frozenset(r.budget.eos) - self.eos_token_ids if r.budget is not None else frozenset()
        limit = min(r.sampling.max_new_tokens, self.max_len - len(prompt))
        return _Row(index=i, request=r, prompt=prompt, limit=limit, extra_eos=extra)

    def _call(self, rows: list[_Row]) -> list[tuple[_Row, Result]]:
        """One ``generate`` call over ``rows`` (all with a budget, or all without)."""
        from transformers import LogitsProcessorList, StoppingCriteriaList

        B, T = len(rows), max(len(r.prompt) for r in rows)
        ids_BT = torch.full((B, T), self.pad_token_id, dtype=torch.int64)
        mask_BT = torch.zeros((B, T), dtype=torch.int64)
        for b, row in enumerate(rows):
            ids_BT[b, T - len(row.prompt) :] = torch.tensor(row.prompt)
            mask_BT[b, T - len(row.prompt) :] = 1
        clock = _Clock()
        processors: list[Any] = [clock]
        if any(r.request.sampling.temperature > 0 for r in rows):
            processors.append(_RowSampler(rows, T, self.device))
        forcing = None
        if rows[0].request.budget is not None:
            specs: list[BudgetSpec] = [r.request.budget for r in rows if r.request.budget is not None]
            forcing = HFBudgetForcing(
                specs, pad_token_id=self.pad_token_id, eos_token_id=sorted(self.eos_token_ids)
            )
            processors.append(forcing.processor)
        stop = _RowEnds(self, rows, T, forcing)
        with torch.inference_mode():
            out_BL = self.model.generate(
                input_ids=ids_BT.to(self.device),
                attention_mask=mask_BT.to(self.device),
                max_new_tokens=max(r.limit for r in rows),
                do_sample=False,
                num_beams=1,
                logits_processor=LogitsProcessorList(processors),
                stopping_criteria=StoppingCriteriaList([stop]),
            )
        new_BL = out_BL[:, T:].cpu().tolist()
        t_first = clock.t_first or time.perf_counter()
        prefill_tps = sum(len(r.prompt) for r in rows) / max(t_first - clock.t0, 1e-9)
        done = []
        for b, row in enumerate(rows):
            if row.finish is None:  # generate ended before the row's own end: cannot happen
                raise RuntimeError(f"internal error: row {b} ended without a reason; please report it")
            tokens = new_BL[b][: row.n_tokens]
            done.append((row, self._result(row, tokens, prefill_tps, t_first)))
        return done

    def _result(self, row: _Row, tokens: list[int], prefill_tps: float, t_first: float) -> Result:
        ids = tokens[:-1] if row.finish == "eos" else tokens
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        stops = row.request.sampling.stop
        if row.finish == "stop" and stops:
            cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
            if cuts:
                text = text[: min(cuts)]
        res = Result(
            request_id=row.request.request_id or str(row.index),
            prompt_ids=list(row.prompt),
            token_ids=tokens,
            text=text,
            finish_reason=row.finish or "length",
            prefill_tokens_per_s=prefill_tps,
            decode_tokens_per_s=(len(tokens) - 1) / max(row.t_end - t_first, 1e-9)
            if len(tokens) > 1
            else 0.0,
        )
        if row.accounting is not None:
            for key, value in row.accounting.items():
                setattr(res, key, value)
        return res


class _Clock(LogitsProcessor):
    """A logits processor that changes nothing: it notes when the first scores (end of prefill) came."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.t_first: float | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.t_first is None:
            self.t_first = time.perf_counter()
        return scores


class _RowSampler(LogitsProcessor):
    """Draws sampled rows' tokens with s1kit's counter-based sampler and leaves them one finite score.

    Row ``b``'s ``k``-th generated token uses the uniform of ``(fold_seed(seed), k)``, as s1kit's
    engine does; greedy rows pass through unchanged.
    """

    def __init__(self, rows: list[_Row], prompt_width: int, device: torch.device) -> None:
        sp = [r.request.sampling for r in rows]
        seeds = [s.seed if s.seed is not None else random.getrandbits(64) for s in sp]
        self._T = prompt_width
        self._temperature_B = torch.tensor([s.temperature for s in sp], dtype=torch.float32, device=device)
        self._top_p_B = torch.tensor([s.top_p for s in sp], dtype=torch.float32, device=device)
        self._top_k_B = torch.tensor([s.top_k for s in sp], dtype=torch.int64, device=device)
        self._seed_B = torch.tensor([fold_seed(s) for s in seeds], dtype=torch.int64, device=device)
        self._sampled_B = self._temperature_B > 0
        # Each row is drawn in its own mode (filtered or not), never the batch's: the inverse CDF of
        # a filtered draw runs over sorted probabilities, so a row's mode must not depend on others.
        filtered = [s.temperature > 0 and (s.top_k > 0 or s.top_p < 1.0) for s in sp]
        self._groups = [
            (torch.tensor(rows, dtype=torch.int64, device=device), mode)
            for rows, mode in (
                ([b for b, f in enumerate(filtered) if f], SamplingMode.FILTERED),
                ([b for b, s in enumerate(sp) if s.temperature > 0 and not filtered[b]], SamplingMode.SAMPLE),
            )
            if rows
        ]

    def __call__(self, input_ids_BL: torch.Tensor, scores_BV: torch.Tensor) -> torch.Tensor:
        counter_B = torch.full_like(self._seed_B, int(input_ids_BL.shape[1]) - self._T)
        drawn_B = torch.zeros_like(self._seed_B)
        for rows, mode in self._groups:
            drawn_B[rows] = sample(
                scores_BV[rows].float(),
                self._temperature_B[rows],
                self._top_p_B[rows],
                self._top_k_B[rows],
                self._seed_B[rows],
                counter_B[rows],
                mode,
            )
        one_hot_BV = torch.full_like(scores_BV, float("-inf"))
        one_hot_BV.scatter_(1, drawn_B[:, None], 0.0)
        return torch.where(self._sampled_B[:, None], one_hot_BV, scores_BV)


class _RowEnds(StoppingCriteria):
    """The per-row stopping criterion (see the module documentation for the order of the checks)."""

    def __init__(
        self, backend: HFBackend, rows: list[_Row], prompt_width: int, forcing: HFBudgetForcing | None
    ):
        self._b = backend
        self._rows = rows
        self._T = prompt_width
        self._forcing = forcing
        self._windows = [max((len(s) for s in r.request.sampling.stop), default=0) + 8 for r in rows]

    def __call__(self, input_ids_BL: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        n = int(input_ids_BL.shape[1]) - self._T
        acc = None
        if self._forcing is not None:
            self._forcing.stopping(input_ids_BL, scores)  # type: ignore[arg-type]  # feeds the new tokens
            acc = self._forcing.accounting()
        last_B = input_ids_BL[:, -1].tolist()
        now = time.perf_counter()
        for b, row in enumerate(self._rows):
            if row.finish is not None:
                continue
            row.finish = self._reason(row, b, last_B[b], n, input_ids_BL, acc)
            if row.finish is None:
                continue
            row.n_tokens, row.t_end = n, now
            if acc is not None:
                row.accounting = {
                    "thinking_tokens": int(acc.thinking_tokens[b]),
                    "answer_tokens": int(acc.answer_tokens[b]),
                    "forced_tokens": int(acc.forced_tokens[b]),
                    "extensions_used": int(acc.extensions_used[b]),
                    "capped": bool(acc.capped[b]),
                }
        return torch.tensor([r.finish is not None for r in self._rows], device=input_ids_BL.device)

    def _reason(self, row: _Row, b: int, t: int, n: int, ids_BL: torch.Tensor, acc: Any) -> str | None:
        phase = int(acc.phase[b]) if acc is not None else None
        if phase == Phase.ERROR:
            return "error"
        if t in self._b.eos_token_ids or t in row.extra_eos:
            return "eos"
        sp = row.request.sampling
        if t in sp.stop_token_ids:
            return "stop"
        if phase == Phase.DONE:
            cap = row.request.budget.max_answer_tokens if row.request.budget is not None else None
            return "length" if cap is not None and int(acc.answer_tokens[b]) >= cap else "stop"
        if sp.stop:
            tail_ids = ids_BL[b, self._T + max(n - self._windows[b], 0) :].tolist()
            tail = self._b.tokenizer.decode(tail_ids, skip_special_tokens=False)
            if any(s in tail for s in sp.stop):
                return "stop"
        if n >= row.limit:
            return "length"
        return None


def load(model: str, options: EngineOptions) -> HFBackend:
    """Load a model directory or hub name with ``AutoModelForCausalLM`` on ``options.device``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if options.tensor_parallel_size != 1:
        raise ValueError(
            f"tensor_parallel_size={options.tensor_parallel_size}: the hf engine runs one device; use "
            "--engine vllm or --engine sglang for tensor parallelism"
        )
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if options.dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    else:
        dtype = _DTYPES[options.dtype]
    kwargs = dict(options.engine_args)
    clash = sorted({"dtype", "torch_dtype", "device_map"} & set(kwargs))
    if clash:
        raise ValueError(f"--engine-args {clash} clash with --dtype/--device: set them there")
    hf_model: Any = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, **kwargs)
    hf_model = hf_model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(model)
    eos = checkpoint_eos_ids(model, hf_model.config, tokenizer)  # as s1kit's engine reads them
    return HFBackend(
        hf_model, tokenizer, max_batch=options.max_batch, max_len=options.max_len, eos_token_ids=eos
    )
