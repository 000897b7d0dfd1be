"""s1kit: simple test-time scaling for reasoning language models.

Capabilities, one subpackage each:

- :mod:`s1kit.budget`: exact, token-level budget forcing (Rust core), with adapters.
- :mod:`s1kit.curate`: s1K-style data curation (dedup, decontamination, selection).
- :mod:`s1kit.distill`: curation's generating stages (model attempts, teacher traces) on the engine
  backends.
- :mod:`s1kit.train`: FSDP2 supervised fine-tuning on reasoning traces.
- :mod:`s1kit.generate`: a static-cache decode loop with budget forcing inside it.
- :mod:`s1kit.eval`: benchmarks, test-time-scaling methods, metrics and plots.
"""

from __future__ import annotations

from s1kit._core import __version__

__all__ = ["__version__"]
