"""The compact model against transformers: logits, weight loading, bad configs."""

from __future__ import annotations

import pytest
import torch

from s1kit.generate import Engine, Request, SamplingParams
from s1kit.generate.model import ModelArgs, Transformer
from tests.unit.tiny_lm import tiny_config, tiny_hf_model, tiny_tokenizer

LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
    "rope_theta": 500000.0,
}


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.mark.parametrize(
    ("arch", "overrides"),
    [
        ("qwen2", {}),
        ("llama", {}),
        ("llama", {"rope_parameters": LLAMA3_ROPE, "num_key_value_heads": 1}),
        ("llama", {"attention_bias": True, "mlp_bias": True, "num_key_value_heads": 4}),
        ("qwen3", {}),
        ("qwen3", {"tie_word_embeddings": False, "attention_bias": True, "num_key_value_heads": 1}),
        # DeepSeek-R1-Distill-Qwen's config: qwen2, untied, a sliding window set but switched off.
        ("qwen2", {"tie_word_embeddings": False, "sliding_window": 16, "max_window_layers": 1}),
    ],
)
def test_logits_match_transformers(tok, arch, overrides):
    hf = tiny_hf_model(arch, tok, seed=1, **overrides)
    model = Transformer.from_hf_model(hf)
    model.setup_rope(256)
    cache = model.new_cache(3, 256)
    x_BT = torch.randint(0, len(tok), (3, 150), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(x_BT).logits
        got = model(x_BT, torch.arange(150).expand(3, 150), cache, 0, 150)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    # Token by token through the cache gives the same logits as the full prefill.
    with torch.no_grad():
        for t in range(140, 150):
            step = model(x_BT[:, t : t + 1], torch.full((3, 1), t), cache, 0, 256)
            torch.testing.assert_close(step[:, 0], ref[:, t], rtol=1e-4, atol=1e-4)


def test_rope_scaling_is_applied(tok):
    plain = Transformer.from_hf_model(tiny_hf_model("llama", tok))
    scaled = Transformer.from_hf_model(tiny_hf_model("llama", tok, rope_parameters=LLAMA3_ROPE))
    assert not torch.allclose(plain.inv_freq, scaled.inv_freq)


def test_unknown_model_type_is_a_clear_error(tok):
    from transformers import GPT2Config

    with pytest.raises(ValueError, match=r"model_type 'gpt2' is not supported.*qwen2, qwen3, llama") as e:
        ModelArgs.from_hf_config(GPT2Config())
    assert "`--engine hf`" in str(e.value) and "`--engine vllm`" in str(e.value)


def test_qwen3_moe_is_refused_with_the_supported_families():
    from transformers import Qwen3MoeConfig

    with pytest.raises(ValueError, match=r"'qwen3_moe' is not supported.*qwen2, qwen3, llama"):
        ModelArgs.from_hf_config(Qwen3MoeConfig())


def test_qwen3_reads_its_own_head_dim_and_qk_norms(tok):
    hf = tiny_hf_model("qwen3", tok)
    model = Transformer.from_hf_model(hf)
    assert model.args.head_dim == 24 != model.args.dim // model.args.n_heads
    assert model.args.qk_norm and not model.args.qkv_bias and model.args.tie_embeddings
    attn = model.layers[0].attention
    torch.testing.assert_close(attn.q_norm.weight, hf.model.layers[0].self_attn.q_norm.weight)


def test_sliding_window_is_refused(tok):
    cfg = tiny_config("qwen2", len(tok), tok.eos_token_id, use_sliding_window=True, sliding_window=16)
    with pytest.raises(ValueError, match="sliding-window"):
        ModelArgs.from_hf_config(cfg)
    cfg3 = tiny_config("qwen3", len(tok), tok.eos_token_id, use_sliding_window=True, sliding_window=16)
    with pytest.raises(ValueError, match="sliding-window"):
        ModelArgs.from_hf_config(cfg3)


def test_from_pretrained_directory(tok, tmp_path):
    hf = tiny_hf_model("qwen2", tok, seed=2)
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    prompt = tok.encode("We check each case")
    from_dir = Engine.from_pretrained(tmp_path, max_batch=2, max_len=64)
    from_obj = Engine(hf, tok, max_batch=2, max_len=64)
    req = [Request(prompt, SamplingParams(max_new_tokens=12))]
    assert from_dir.generate(req)[0].token_ids == from_obj.generate(req)[0].token_ids


def test_from_pretrained_without_weights_is_a_clear_error(tok, tmp_path):
    tiny_config("qwen2", len(tok), tok.eos_token_id).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    from s1kit.errors import CheckpointError

    with pytest.raises(CheckpointError, match=r"no \*\.safetensors"):
        Engine.from_pretrained(tmp_path)
