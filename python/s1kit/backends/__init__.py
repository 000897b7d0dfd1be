"""One interface to every engine that runs budget-forced generation: s1kit's own, transformers, vLLM, SGLang.

A backend takes a batch of :class:`~s1kit.generate.Request` (prompt token ids with the chat template
applied, per-row :class:`~s1kit.generate.SamplingParams` and :class:`~s1kit.budget.BudgetSpec`) and
returns one :class:`~s1kit.generate.Result` per request, in order: text, token ids and the budget
accounting (thinking, answer and forced tokens, extensions used, capped, finish reason). ``s1kit eval``,
``s1kit generate`` and the curation attempts stage talk to engines only through this interface and name
no engine themselves.

``load_backend(name, model, options)`` imports the backend's module only when it is chosen, so an
engine that is not installed costs nothing until asked for, and then fails with
:class:`EngineNotInstalled`, naming the extra to install.

Where each concern lives: ``base.py`` the interface and options; ``own.py`` s1kit's engine
(``--engine s1kit``, the default); ``forcing.py`` how budget forcing runs on any backend (``inloop``,
or ``reprompt``: s1's way, one engine call per extension) and what each request cost (prefilled
tokens, engine calls); ``arguments.py`` the engine flags of ``s1kit eval`` / ``s1kit generate`` and
their mapping onto :class:`EngineOptions`. One module per engine: ``hf.py`` (``--engine hf``,
transformers' ``generate`` with the budget processor), ``vllm.py`` (``--engine vllm``, ``vllm.LLM``),
``sglang.py`` (``--engine sglang``, ``sglang.Engine``), ``openai.py`` (``--engine openai``, a client of a
served vLLM with the processor loaded, docs/serving.md); ``replay.py`` recomputes a request's
accounting from the token ids an engine in another process returned.
"""

from __future__ import annotations

from s1kit.backends.base import ENGINES, Backend, EngineNotInstalled, EngineOptions, load_backend

__all__ = ["ENGINES", "Backend", "EngineNotInstalled", "EngineOptions", "load_backend"]
