"""Generation: a static-cache, CUDA-graph decode loop with budget forcing inside it.

::

    from s1kit.generate import Engine, Request, SamplingParams
    engine = Engine.from_pretrained("path/to/Qwen2.5-0.5B-Instruct", device="cuda", max_batch=16)
    results = engine.generate([Request(prompt_ids=ids, sampling=SamplingParams(max_new_tokens=512),
                                       budget=spec)])

Files: ``model.py`` (Qwen2/Qwen3/Llama in the gpt-fast style), ``cache.py`` (static K/V cache),
``sampling.py`` (counter-based seeded sampling), ``step.py`` (the fixed-shape step, its run-ahead
variant, their CUDA graphs and the typed host views of its buffers), ``engine.py`` (``Engine``: setup,
``generate`` and the loop that wires the parts below; the two decode paths -- per-step on the host,
or run-ahead with budget forcing on the device and one host sync per ``sync_every`` steps -- are
described there), ``slots.py`` (rows and their slots), ``scheduler.py`` (admission, compaction),
``stepping.py`` (prefill, host step, run-ahead window), ``booking.py`` (booking emitted tokens),
``finishing.py`` (finish reasons, results), ``budget_state.py`` (the one owner of the budget truth:
host Rust batch or device mirror, explicit transfers), ``types.py`` (requests and results),
``cli.py``.
"""

from __future__ import annotations

from s1kit.generate.engine import Engine
from s1kit.generate.types import Request, Result, SamplingParams

__all__ = ["Engine", "Request", "Result", "SamplingParams"]
