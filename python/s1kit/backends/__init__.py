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
(``--engine s1kit``, the default). Every other backend has a module of its own next to them.
"""

from __future__ import annotations

from s1kit.backends.base import ENGINES, Backend, EngineNotInstalled, EngineOptions, load_backend

__all__ = ["ENGINES", "Backend", "EngineNotInstalled", "EngineOptions", "load_backend"]
