"""A stand-in for ``sglang.Engine`` that runs here (SGLang's engine needs CUDA): a transformers model
decoded greedily, SGLang's custom-processor contract and its documented stop rules.

It exists to test :mod:`s1kit.backends.sglang` end to end on CPU: the payload the backend builds
(per-request sampling params dicts and processor strings), the real budget processor
(:class:`~s1kit.budget.adapters.sglang.BudgetForcingLogitProcessor`) called as SGLang's sampler
calls it, the redirect flags it leaves in the request's ``customized_info`` coming back pickled in
``meta_info`` as SGLang 0.5.23 returns them, and the backend's replay and finish mapping. What it
copies from SGLang (checked against the real package by tests/engines/test_sglang_backend.py):

- per step, the processor gets the logits rows of the live requests that use it, in a shuffled
  order, and one params dict per row with ``"__req__"``, a weak proxy to the request (``rid``,
  ``origin_input_ids``, ``output_ids``, ``sampling_params.top_k`` (1: greedy), ``customized_info``);
- greedy picks the argmax of the processed logits;
- a request ends after the token that is a model EOS id or a ``stop_token_ids`` id
  (``{"type": "stop", "matched": id}``), completes a ``stop`` string (``{"type": "stop", "matched":
  str}``), or reaches ``max_new_tokens`` (``{"type": "length", "length": n}``).
"""

from __future__ import annotations

import pickle
import random
import weakref
from types import SimpleNamespace
from typing import Any

import torch

from s1kit.budget.adapters.sglang import REDIRECT_INFO, BudgetForcingLogitProcessor, BudgetRegistry


class StandinReq:
    """The fields of ``sglang.srt.managers.schedule_batch.Req`` the processor reads."""

    def __init__(self, rid: str, prompt: list[int], params: dict[str, Any]) -> None:
        self.rid = rid
        self.origin_input_ids = prompt
        self.output_ids: list[int] = []
        self.sampling_params = SimpleNamespace(top_k=1 if params["temperature"] == 0 else params["top_k"])
        self.customized_info: dict[str, list[Any]] | None = None
        self.params = params


class StandinEngine:
    """``generate(input_ids=..., sampling_params=..., custom_logit_processor=...)`` as SGLang's offline
    engine takes it, returning ``{"output_ids", "meta_info"}`` per request (greedy requests only)."""

    def __init__(self, model: Any, tokenizer: Any, eos_token_ids: list[int], seed: int = 0) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.eos = set(eos_token_ids)
        self.rng = random.Random(seed)
        self.calls = 0
        self.closed = False

    def generate(
        self,
        input_ids: list[list[int]],
        sampling_params: list[dict[str, Any]],
        custom_logit_processor: list[str | None],
    ) -> list[dict[str, Any]]:
        self.calls += 1
        processors = {w: BudgetForcingLogitProcessor() for w in set(custom_logit_processor) if w}
        for p in processors.values():
            p.registry = BudgetRegistry(capacity=2)  # small: grows and recycles slots
        reqs = [
            StandinReq(f"r{i}", list(p), sp)
            for i, (p, sp) in enumerate(zip(input_ids, sampling_params, strict=True))
        ]
        for sp in sampling_params:
            if sp["temperature"] != 0:
                raise NotImplementedError("the stand-in decodes greedy requests only")
        live = list(range(len(reqs)))
        outputs: dict[int, dict[str, Any]] = {}
        while live:
            self.rng.shuffle(live)
            logits = torch.stack([self._logits(reqs[i]) for i in live])
            for wire, proc in processors.items():
                rows = [j for j, i in enumerate(live) if custom_logit_processor[i] == wire]
                if rows:
                    params = [
                        {**reqs[live[j]].params["custom_params"], "__req__": weakref.proxy(reqs[live[j]])}
                        for j in rows
                    ]
                    sel = torch.tensor(rows)
                    logits[sel] = proc(logits[sel], params)
            for j, i in enumerate(list(live)):
                req = reqs[i]
                req.output_ids.append(int(logits[j].argmax()))
                reason = self._finish(req)
                if reason is not None:
                    outputs[i] = self._output(req, reason)
                    live.remove(i)
        return [outputs[i] for i in range(len(reqs))]

    def _logits(self, req: StandinReq) -> torch.Tensor:
        with torch.inference_mode():
            ids = torch.tensor([req.origin_input_ids + req.output_ids])
            return self.model(ids).logits[0, -1].float()

    def _finish(self, req: StandinReq) -> dict[str, Any] | None:
        sp, t = req.params, req.output_ids[-1]
        if t in self.eos or t in sp.get("stop_token_ids", ()):
            return {"type": "stop", "matched": t}
        text = self.tokenizer.decode(req.output_ids, skip_special_tokens=False)
        for s in sp.get("stop", ()):
            if s in text:
                return {"type": "stop", "matched": s}
        if len(req.output_ids) >= sp["max_new_tokens"]:
            return {"type": "length", "length": len(req.output_ids)}
        return None

    def _output(self, req: StandinReq, reason: dict[str, Any]) -> dict[str, Any]:
        meta: dict[str, Any] = {"finish_reason": reason, "completion_tokens": len(req.output_ids)}
        if req.customized_info is not None:
            # SGLang pickles the request's customized_info to the tokenizer process, token-aligned.
            flags = pickle.loads(pickle.dumps(req.customized_info[REDIRECT_INFO]))
            meta[REDIRECT_INFO] = flags[: len(req.output_ids)]
        return {"output_ids": list(req.output_ids), "meta_info": meta}

    def shutdown(self) -> None:
        self.closed = True
