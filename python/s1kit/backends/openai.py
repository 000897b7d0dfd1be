"""``--engine openai --base-url URL [--api-key KEY]``: a model served by vLLM's OpenAI-compatible server.

The server must run s1kit's budget processor (docs/serving.md)::

    vllm serve MODEL --logits-processors s1kit.budget.adapters.vllm:BudgetForcingLogitsProcessor

Each request is one ``POST {base}/v1/completions`` (``base``: ``--base-url`` without a trailing
``/v1``, which is accepted too) with the body::

    {"model": MODEL, "prompt": [prompt token ids], "max_tokens": max_new_tokens,
     "temperature": ..., "top_p": ..., "top_k": ..., "seed": ..., "stop": [...], "stop_token_ids": [...],
     "skip_special_tokens": false, "return_token_ids": true,
     "vllm_xargs": {"s1kit_budget": spec_to_json(spec)}}

(``seed``, ``stop``, ``stop_token_ids`` and ``vllm_xargs`` only when set; ``stop_token_ids`` adds the
spec's EOS ids, as ``--engine vllm`` does; ``vllm_xargs`` takes flat values only, hence the spec's
JSON text.) A batch is sent as concurrent requests, ``max_batch`` at a
time (``--max-batch``, default 16), so the server batches them itself. The prompt goes in as token ids
(no re-tokenization on the server); the reply's ``token_ids`` (vLLM's ``return_token_ids``) are the
emitted ids, and the accounting is recomputed from them by replaying them through the budget core
(:mod:`s1kit.backends.replay`), exactly as ``--engine vllm`` does, with the same finish reasons
(vLLM's ``finish_reason``/``stop_reason`` mapped as in :mod:`s1kit.backends.vllm`).

**Refusal.** A server without the processor ignores ``vllm_xargs``. The replay notices as soon as
the ids break the budget (a cap not honoured, an end of thinking before the extensions allow it, no
answer prefix where one was due, tokens after a finished budget) and the request raises
:class:`~s1kit.errors.S1kitError` saying to start the server with ``--logits-processors
s1kit.budget.adapters.vllm:BudgetForcingLogitsProcessor``. A request whose ids never reach a point
where the budget acts cannot show it, and passes (its accounting is right either way).

The tokenizer (chat template, decoding) is loaded on the client with
``AutoTokenizer.from_pretrained(MODEL)``: the served model's name must be a local directory or hub
name, or pass ``--engine-args '{"tokenizer": "PATH"}'`` (the client's only engine argument; also
``"timeout"``, seconds per request, default 3600). ``max_len`` is the server's ``max_model_len`` from
``GET /v1/models``. Standard library HTTP (``urllib``) only: the ``openai`` package's client does not
return vLLM's extra reply fields in typed form and adds nothing else needed here, so the ``openai``
extra installs nothing s1kit needs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from s1kit.backends.base import EngineOptions
from s1kit.backends.replay import build_results
from s1kit.backends.vllm import finish_reason, stop_ids
from s1kit.errors import S1kitError

if TYPE_CHECKING:
    from s1kit.generate.types import Request, Result

PROCESSOR = "s1kit.budget.adapters.vllm:BudgetForcingLogitsProcessor"
REFUSE = (
    f"the server does not run s1kit's budget processor: start it with --logits-processors {PROCESSOR} "
    "(docs/serving.md)"
)


class OpenAIBackend:
    """A client of one served model; see the module docstring."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        tokenizer: Any,
        *,
        api_key: str | None = None,
        max_batch: int = 16,
        timeout: float = 3600.0,
    ) -> None:
        base = base_url.rstrip("/")
        self.base = base[: -len("/v1")] if base.endswith("/v1") else base
        self.model = model
        self.tokenizer: Any = tokenizer
        self.max_batch = max_batch
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.max_len: int | None = self._max_model_len()

    def _call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data, self._headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:2000]
            raise S1kitError(f"{self.base}{path} answered HTTP {e.code}: {detail}") from e
        except (urllib.error.URLError, OSError) as e:
            raise S1kitError(
                f"cannot reach the server at {self.base}{path} ({e}): check --base-url and that the "
                "server is running"
            ) from e

    def _max_model_len(self) -> int | None:
        for m in self._call("/v1/models").get("data", []):
            if m.get("id") == self.model and m.get("max_model_len"):
                return int(m["max_model_len"])
        return None

    def body(self, request: Request) -> dict[str, Any]:
        """The ``/v1/completions`` body for one request (see the module docstring)."""
        from s1kit.budget.adapters.params import KEY, spec_to_json

        s = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": [int(t) for t in request.prompt_ids],
            "max_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "skip_special_tokens": False,
            "return_token_ids": True,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = list(s.stop)
        stops = stop_ids(request)
        if stops:
            body["stop_token_ids"] = stops
        if request.budget is not None:
            body["vllm_xargs"] = {KEY: spec_to_json(request.budget)}
        return body

    def _one(self, request: Request) -> tuple[list[int], str]:
        reply = self._call("/v1/completions", self.body(request))
        choice = reply["choices"][0]
        ids = choice.get("token_ids")
        if ids is None:
            raise S1kitError(
                f"{self.base} returned no token_ids: --engine openai needs a vLLM server that honours "
                "return_token_ids (vLLM >= 0.32 with s1kit's processor, docs/serving.md)"
            )
        eos = {int(self.tokenizer.eos_token_id)} if self.tokenizer.eos_token_id is not None else set()
        if request.budget is not None:
            eos |= set(request.budget.eos)
        return [int(t) for t in ids], finish_reason(
            choice.get("finish_reason"), choice.get("stop_reason"), eos
        )

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_batch, len(requests))) as pool:
            replies = list(pool.map(self._one, requests))
        ids = [r[0] for r in replies]
        finishes = [r[1] for r in replies]
        return build_results(requests, ids, finishes, self.tokenizer, refuse=REFUSE)

    def close(self) -> None:
        pass


def load(model: str, options: EngineOptions) -> OpenAIBackend:
    if not options.base_url:
        raise ValueError(
            "--engine openai needs --base-url URL (the server's address, e.g. http://127.0.0.1:8000)"
        )
    unknown = sorted(set(options.engine_args) - {"tokenizer", "timeout"})
    if unknown:
        raise ValueError(
            f"--engine-args {unknown}: --engine openai takes only 'tokenizer' (a path for the client's "
            "tokenizer) and 'timeout' (seconds per request); engine settings belong to the server's command"
        )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(options.engine_args.get("tokenizer", model)))
    return OpenAIBackend(
        options.base_url,
        model,
        tokenizer,
        api_key=options.api_key,
        max_batch=options.max_batch,
        timeout=float(options.engine_args.get("timeout", 3600.0)),
    )
