"""The generating stages of curation: model attempts for difficulty, and teacher traces (distillation).

Curation never imports decoding (STYLE.md), so whatever generates for it lives here. The direction:

```text
s1kit.backends (-> generate -> budget)   s1kit.eval.grading   s1kit.curate (schema, loaders, manifest)
              ^                                ^                     ^
              +---------------  s1kit.distill  ---------------------+
                                     ^
                          cli (curate --attempts, distill)
```

``s1kit.curate`` defines the :class:`~s1kit.curate.attempts.AttemptsRunner` protocol and never imports
this package; ``s1kit curate --attempts`` passes :class:`BackendAttempts` to
:func:`s1kit.curate.run_pipeline`. Where each concern lives: ``cache.py`` the on-disk generation cache
keyed by (model, prompt, settings); ``generations.py`` prompts, budget specs and batched cached
generation through one engine; ``attempts.py`` reference-model attempts and their verdicts;
``traces.py`` teacher traces kept when correct (``s1kit distill``); ``cli.py`` ``s1kit distill``. Both
commands take the engine flags of ``s1kit eval`` from :mod:`s1kit.backends.arguments` (without
``--forcing``).
"""

from __future__ import annotations

from s1kit.distill.attempts import AttemptsConfig, BackendAttempts
from s1kit.distill.cache import GenerationCache, generation_key
from s1kit.distill.generations import GenerationSettings
from s1kit.distill.traces import DistillConfig, DistillResult, distill, write_outputs

__all__ = [
    "AttemptsConfig",
    "BackendAttempts",
    "DistillConfig",
    "DistillResult",
    "GenerationCache",
    "GenerationSettings",
    "distill",
    "generation_key",
    "write_outputs",
]
