"""Tiny random Qwen2 / Qwen3 / Llama models and a tokenizer trained on the spot, for generation tests.

Nothing is downloaded: the tokenizer is a small BPE trained with ``tokenizers`` on a fixed text, with
the chat and thinking delimiters as single special tokens.
"""

from __future__ import annotations

from collections import Counter
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
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

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
        common.setdefault("tie_word_embeddings", True)
        return Qwen2Config(**common)
    if arch == "llama":
        common.setdefault("tie_word_embeddings", False)
        return LlamaConfig(**common)
    if arch == "qwen3":
        # head_dim apart from hidden_size // num_attention_heads (64 // 4 = 16), as in real Qwen3.
        common.setdefault("head_dim", 24)
        common.setdefault("tie_word_embeddings", True)
        return Qwen3Config(**common)
    raise ValueError(arch)


def tiny_hf_model(arch: str, tokenizer: Any, seed: int = 0, **overrides: Any) -> Any:
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = tiny_config(arch, len(tokenizer), tokenizer.eos_token_id, **overrides)
    cls = {"qwen2": Qwen2ForCausalLM, "qwen3": Qwen3ForCausalLM, "llama": LlamaForCausalLM}[arch]
    model = cls(cfg).eval()
    # Random init with std 0.02 gives flat logits and a greedy loop on one token; widening the
    # weights gives varied text and clear argmax margins.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10.0)
        # Qwen3's per-head q/k norms start at ones; random weights make a missing or misplaced norm
        # show in the logits.
        for name, p in model.named_parameters():
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                p.copy_(torch.rand(p.shape) + 0.5)
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


# Questions for tests that need varied thinking: the first five, nine or all of them.
THINKING_QUESTIONS = [
    "What is two and three?",
    "Hmm, so the total",
    "x",
    "Check each case, if x is even",
    "seven times six",
    "The answer is",
    "Wait, let me think",
    "if x is even",
    "two and three is five",
    "assistant user system",
    "Final Answer: the sum",
]


def s1_prompt(tok: Any, question: str) -> list[int]:
    """The chat prompt of ``question`` up to the s1 thinking delimiter, as token ids."""
    ids: list[int] = tok.encode(
        f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n<|im_start|>think\n"
    )
    return ids


def thinking_model(
    arch: str, tok: Any, seed: int, questions: list[str], max_new: int
) -> tuple[Any, list[list[int]], list[int]]:
    """A tiny random model that ends its thinking now and then, the s1 prompts of ``questions`` and
    the tokens the untouched model emits most on them (most common first, specials left out).

    The end delimiters take over the output rows of the two most common tokens (``<|im_start|>`` the
    first, ``</think>`` the second), so greedy decoding hits them at prompt-dependent points. The
    output embeddings are untied first, so that only output rows change.
    """
    from s1kit.generate import Engine, Request, SamplingParams

    hf = tiny_hf_model(arch, tok, seed=seed)
    if hf.config.tie_word_embeddings:
        hf.lm_head.weight = torch.nn.Parameter(hf.lm_head.weight.detach().clone())
        hf.config.tie_word_embeddings = False
    prompts = [s1_prompt(tok, q) for q in questions]
    plain = Engine(hf, tok, max_batch=8, max_len=256).generate(
        [Request(p, SamplingParams(max_new_tokens=max_new)) for p in prompts]
    )
    counts = Counter(t for r in plain for t in r.token_ids if t >= len(tok.all_special_ids))
    common = [t for t, _ in counts.most_common(12)]
    favour_token(hf, tok.convert_tokens_to_ids("<|im_start|>"), like=common[0], scale=1.5)
    favour_token(hf, tok.convert_tokens_to_ids("</think>"), like=common[1], scale=1.5)
    return hf, prompts, common
