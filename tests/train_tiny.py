"""Tiny, fully local training assets: a BPE tokenizer trained here with a Qwen-style chat template, a
random-init Qwen2 of a few thousand parameters, and s1K-style rows. Nothing is downloaded."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

QWEN_STYLE_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
WORDS = [
    "the",
    "sum",
    "of",
    "two",
    "numbers",
    "is",
    "seven",
    "so",
    "each",
    "term",
    "must",
    "be",
    "odd",
    "wait",
    "let",
    "me",
    "check",
    "again",
    "we",
    "have",
    "x",
    "plus",
    "y",
    "equals",
    "ten",
    "and",
    "x",
    "minus",
    "y",
    "equals",
    "four",
    "hence",
    "x",
    "is",
    "seven",
    "answer",
    "final",
    "prime",
    "square",
    "root",
    "triangle",
    "angle",
    "area",
    "circle",
    "radius",
    "compute",
    "integer",
    "divide",
    "remainder",
]


def make_tokenizer(with_template: bool = True) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(30)) for _ in range(200)]
    corpus += ["system user assistant think answer Answer: You are a helpful assistant."] * 5
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    if with_template:
        fast.chat_template = QWEN_STYLE_TEMPLATE
    return fast


def make_model(vocab_size: int, seed: int = 0, tie: bool = True) -> Any:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=tie,
        use_cache=False,
    )
    model = Qwen2ForCausalLM(cfg)
    # Larger-than-default init so that tiny-model losses and gradients are far from zero.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.2)
    return model


def make_rows(n: int, seed: int = 0, max_words: int = 40) -> list[dict[str, Any]]:
    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    return [
        {
            "question": words(rng.randint(3, 12)),
            "thinking_trajectories": [words(rng.randint(4, max_words)), words(rng.randint(2, 10))],
            "attempt": words(rng.randint(1, 6)),
        }
        for _ in range(n)
    ]


def write_model_dir(path: Path, seed: int = 0, tie: bool = True) -> Path:
    tok = make_tokenizer()
    model = make_model(len(tok), seed=seed, tie=tie)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
