"""``s1kit demo``: budget forcing end to end on a CPU, with nothing downloaded.

Trains a small byte-level BPE tokenizer, builds a randomly initialised Qwen2-architecture model, and
runs budget-forced generation in one ``model.generate`` call per setting: thinking caps, and
suppressed ends with "Wait" extensions. It shows the mechanics, not accuracy (the model is untrained).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HELP = "Run budget forcing end to end on a CPU with a tiny model and a tokenizer trained on the fly."

CORPUS = [
    "Let me think step by step. 12 + 39 = 51. Wait, carry the one: 12 + 39 = 51.",
    "Count the r in strawberry: s t r a w b e r r y. There are three. Final Answer: 3",
    "Sort 5 2 9 1: first 1, then 2, then 5, then 9. Wait, check again. Final Answer: 1 2 5 9",
    "user assistant system think answer",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default: runs/demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random model (default: 0)")


def build_tokenizer():  # type: ignore[no-untyped-def]
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
    tok.train_from_iterator(CORPUS * 10, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIALS[1:],
    )
    fast.chat_template = TEMPLATE
    fast.padding_side = "left"
    return fast


def run(args: argparse.Namespace) -> int:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from s1kit.budget import BudgetSpec
    from s1kit.budget.adapters.hf import HFBudgetForcing

    args.out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    torch.manual_seed(args.seed)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    model = Qwen2ForCausalLM(cfg).eval()
    questions = ["Count the r in strawberry.", "Sort 5 2 9 1.", "What is 12 + 39?"]
    texts = [
        tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
        + "<|im_start|>think\n"
        for q in questions
    ]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    settings: list[tuple[str, dict[str, Any]]] = [("cap", {"max_thinking_tokens": n}) for n in (8, 32, 128)]
    settings += [("extend", {"num_extensions": n, "max_thinking_tokens": 256}) for n in (1, 2)]
    records = []
    print(f"{'setting':16} {'q':>2} {'thinking':>8} {'answer':>6} {'forced':>6} {'waits':>5} {'capped':>6}")
    for name, kw in settings:
        spec = BudgetSpec.from_tokenizer(tok, style="s1", max_answer_tokens=16, **kw)
        bf = HFBudgetForcing(spec, pad_token_id=tok.pad_token_id)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=320,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                logits_processor=[bf.processor],
                stopping_criteria=[bf.stopping],
            )
        acc = bf.accounting()
        for i, q in enumerate(questions):
            gen = out[i, enc["input_ids"].shape[1] :].tolist()
            rec = {
                "setting": name,
                **kw,
                "question": q,
                "thinking_tokens": int(acc.thinking_tokens[i]),
                "answer_tokens": int(acc.answer_tokens[i]),
                "forced_tokens": int(acc.forced_tokens[i]),
                "extensions_used": int(acc.extensions_used[i]),
                "capped": bool(acc.capped[i]),
                "text": tok.decode(gen, skip_special_tokens=False),
            }
            records.append(rec)
            print(
                f"{name + str(list(kw.values())):16} {i:>2} {rec['thinking_tokens']:>8} {rec['answer_tokens']:>6} "
                f"{rec['forced_tokens']:>6} {rec['extensions_used']:>5} {rec['capped']!s:>6}"
            )
    path = args.out / "generations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"\nwrote {len(records)} generations to {path}")
    return 0
