"""The exported Hugging Face folder is for inference: its config keeps the KV cache on."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from s1kit.train.export import export_hf
from tests.train_tiny import make_model, make_tokenizer


def test_export_reloads_with_use_cache_true(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    tok = make_tokenizer()
    model = make_model(len(tok))
    assert model.config.use_cache is False  # as training sets it
    out = export_hf(model, tok, tmp_path / "hf", dtype=torch.float32)
    assert out is not None
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert saved.get("use_cache", True) is True
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert reloaded.config.use_cache is True
    assert model.config.use_cache is False  # the live training model is left as it was
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)
