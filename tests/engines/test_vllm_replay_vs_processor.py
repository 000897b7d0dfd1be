"""The accounting ``--engine vllm`` recomputes from the ids equals the processor's own, inside real vLLM.

vLLM runs in process here (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, one CPU worker), so a subclass of
the processor can record each request's core state when vLLM removes it from its batch or puts
another request at its index (a finished request leaves at the next step: a last small call flushes
them). The model is a tiny random
Llama whose end-of-thinking token is made frequent, decoded greedily and sampled (temperature 1,
per-request seeds), so rows are extended, capped and stopped at different points; the replay sees
only the prompt, the spec and the ids. Skips where vLLM's engine cannot start.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from s1kit.backends.replay import replay_batch
from s1kit.budget import BudgetSpec
from tests.engines.test_vllm_e2e import vllm_engine_here
from tests.unit.tiny_lm import THINKING_QUESTIONS, favour_token, s1_prompt, tiny_hf_model, tiny_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore")
COUNTERS = ("thinking_tokens", "answer_tokens", "forced_tokens", "extensions_used", "capped")


def save_thinking_model(path: Path) -> Any:
    from transformers import GenerationConfig

    tok = tiny_tokenizer()
    hf = tiny_hf_model(
        "llama", tok, seed=7, hidden_size=128, intermediate_size=256, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=512,
    )  # fmt: skip
    # The end-of-thinking token takes the output row of a common token (scaled), so rows try to end.
    common = Counter(t for q in THINKING_QUESTIONS for t in tok.encode(q)).most_common(3)[2][0]
    favour_token(hf, tok.convert_tokens_to_ids("<|im_start|>"), like=common, scale=1.5)
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(path)
    return tok


def test_replayed_accounting_equals_the_processors_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vllm = vllm_engine_here()
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "0")
    from s1kit.backends.vllm import VllmBackend
    from s1kit.budget.adapters.vllm import BudgetForcingLogitsProcessor
    from s1kit.generate.types import Request, SamplingParams

    finished: list[tuple[list[int], list[int], dict[str, Any]]] = []

    class Recording(BudgetForcingLogitsProcessor):  # type: ignore[misc]
        def update_state(self, batch_update: Any | None) -> None:
            # A finished request leaves as a removed index, or is overwritten at its index by an added
            # request or a one-way move (vLLM then does not list it as removed). Read every such
            # index's occupant before the update applies.
            gone = set(getattr(batch_update, "removed", ()) or ())
            gone |= {added[0] for added in getattr(batch_update, "added", ()) or ()}
            gone |= {c for _, c, d in getattr(batch_update, "moved", ()) or () if "UNI" in str(d).upper()}
            for index in sorted(gone):
                req = self.budget._req.get(index)
                state = self.budget.row_state(index)  # feeds the row's last tokens first
                if req is not None and state is not None:
                    finished.append((list(req.prompt), list(req.outputs), state))
            super().update_state(batch_update)

    tok = save_thinking_model(tmp_path)
    torch.set_num_threads(1)
    llm = vllm.LLM(
        model=str(tmp_path), dtype="float32", max_model_len=512, max_num_seqs=8, enforce_eager=True,
        seed=0, logits_processors=[Recording],
    )  # fmt: skip
    backend = VllmBackend(llm, tok, 512, 8)
    specs = [
        BudgetSpec.from_tokenizer(tok, num_extensions=2, max_answer_tokens=12),
        BudgetSpec.from_tokenizer(tok, max_thinking_tokens=24, num_extensions=4, max_answer_tokens=6),
        BudgetSpec.from_tokenizer(tok, max_thinking_tokens=10, num_extensions=1),
    ]
    requests = [
        Request(
            s1_prompt(tok, q),
            SamplingParams(temperature=0.0 if i % 2 else 1.0, seed=i, max_new_tokens=80),
            specs[i % len(specs)],
            str(i),
        )
        for i, q in enumerate(THINKING_QUESTIONS[:12])
    ]
    results = backend.generate(requests)
    backend.generate([Request(s1_prompt(tok, "x"), SamplingParams(max_new_tokens=2))])  # flush removals
    backend.close()

    def recorded(res: Any) -> tuple[list[int], dict[str, Any]]:
        """The processor's record of ``res``'s request: same prompt, and the same ids up to the EOS
        that stops a finished budget (which the backend drops)."""
        hits = [
            (outputs, state)
            for prompt, outputs, state in finished
            if prompt == res.prompt_ids
            and outputs[: len(res.token_ids)] == res.token_ids
            and len(outputs) - len(res.token_ids) in (0, 1)
        ]
        assert hits, f"no processor record for request {res.request_id}"
        return hits[-1]

    records = [recorded(res) for res in results]
    replays = replay_batch(
        [r.budget for r in requests],  # type: ignore[misc]
        [r.prompt_ids for r in requests],
        [outputs for outputs, _ in records],
    )
    for req, res, rp, (_, state) in zip(requests, results, replays, records, strict=True):
        for f in COUNTERS:
            assert getattr(rp, f) == state[f], f"request {req.request_id}: {f}"
            assert getattr(res, f) == state[f], f"request {req.request_id}: {f} (Result)"
    # The run exercises what it claims.
    assert any(r.extensions_used for r in results) and any(r.capped for r in results)
    assert any(r.finish_reason == "length" and r.answer_tokens for r in results)
