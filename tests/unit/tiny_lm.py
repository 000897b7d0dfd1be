"""Tiny random Qwen2 / Llama models and a tokenizer trained on the spot, for generation tests.

Nothing is downloaded: the tokenizer is a small BPE trained with ``tokenizers`` on a fixed text, with
the chat and thinking delimiters as single special tokens.
"""

from __future__ import annotations

from typing import Any

import torch

# Tiny matmuls gain nothing from threads, and on a shared 2-core machine OpenMP spinning makes them
# 100x slower: every test that builds a tiny model runs single-threaded.
torch.set_num_threads(1)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_TEXT = (
    "Wait, let me think about this step by step. The answer is 42. Final Answer: the sum of two and "
    "three is five. We check each case: if x is even then x squared is even. Think again, carefully. "
    "answer think assistant user system Hmm, so the total number of ways equals seven times six. "
)


def tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_TEXT] * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIALS[1:2] + SPECIALS[3:],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(arch: str, vocab_size: int, eos_token_id: int, **overrides: Any) -> Any:
    from transformers import LlamaConfig, Qwen2Config

    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=eos_token_id,
        pad_token_id=0,
        bos_token_id=None,
    )
    common.update(overrides)
    if arch == "qwen2":
        return Qwen2Config(tie_word_embeddings=True, **common)
    if arch == "llama":
        return LlamaConfig(tie_word_embeddings=False, **common)
    raise ValueError(arch)


def tiny_hf_model(arch: str, tokenizer: Any, seed: int = 0, **overrides: Any) -> Any:
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = tiny_config(arch, len(tokenizer), tokenizer.eos_token_id, **overrides)
    cls = Qwen2ForCausalLM if arch == "qwen2" else LlamaForCausalLM
    model = cls(cfg).eval()
    # Random init with std 0.02 gives flat logits and a greedy loop on one token; widening the
    # weights gives varied text and clear argmax margins.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10.0)
    return model


def favour_token(hf_model: Any, token: int, like: int, scale: float = 1.5) -> None:
    """Make ``token`` the argmax wherever ``like`` would have been (with positive logit): the output
    row of ``token`` becomes ``scale`` times that of ``like``. Used to make a random model end its
    thinking now and then. Unties the embeddings if needed (the input row is left as it was)."""
    with torch.no_grad():
        head = hf_model.get_output_embeddings()
        if hf_model.config.tie_word_embeddings:
            raise ValueError("use an untied model (llama config in tiny_config)")
        head.weight[token] = head.weight[like] * scale
