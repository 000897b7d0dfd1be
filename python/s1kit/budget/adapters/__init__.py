"""Adapters that embed the budget core in inference stacks (each imports its stack lazily).

Where each concern lives: ``masking.py`` applies the core's mask-mode decisions to a ``(B, V)`` logits
tensor (every adapter but Model Runner V2's uses it); ``params.py`` a :class:`~s1kit.budget.BudgetSpec`
as per-request JSON-safe arguments; ``hf.py`` transformers' ``generate``; ``sglang.py`` SGLang's
custom logit processor; ``vllm.py`` vLLM's V1 model runner (0.32, 0.33) with ``vllm_batch.py``, the
budget rows that follow V1's persistent batch (placeholders, preemption, stopping finished rows);
``vllm_v2.py`` vLLM's Model Runner V2 (0.34; 0.33 on request) with ``vllm_v2_device.py``, its rows kept
on the device; ``vllm_release.py`` the release gate both vLLM adapters pass at import.
"""
