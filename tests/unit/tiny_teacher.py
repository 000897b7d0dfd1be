"""A tiny saved teacher for the distill and attempts tests: a random Llama on the tiny tokenizer (think
tags detected) that says "7" where it would have said its two most common tokens, so that its answers
hold numbers; and the answers it gives, read through the engine directly (not through s1kit.distill)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.unit.tiny_lm import favour_token, tiny_hf_model, tiny_tokenizer

# Distinct enough to survive exact and near dedup.
QUESTIONS = [
    "What is two and three?",
    "seven times six",
    "Check each case",
    "x",
    "The answer is",
    "Final Answer: the sum",
    "Hmm, so the total number of ways",
    "if x is even then what",
]
# A reference answer math-verify cannot finish comparing within a second (grading times out).
TOWER = "9^{9^{9^{9^{9^{9}}}}}"
SETTINGS: dict[str, Any] = {"max_thinking_tokens": 24, "max_answer_tokens": 16, "max_new_tokens": 48}


def save_teacher(folder: Path) -> Path:
    tok = tiny_tokenizer()
    model = tiny_hf_model("llama", tok, seed=0)
    seven = tok.convert_tokens_to_ids("7")
    for like in (203, 271):  # the untouched model's two most common tokens on QUESTIONS
        favour_token(model, seven, like=like, scale=2.0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def answers(folder: Path, questions: list[str]) -> list[str | None]:
    """What the teacher answers (eval's extraction of its greedy budget-forced generation), generated
    through the own engine with the prompt and budget s1kit eval would use."""
    from s1kit.backends import EngineOptions, load_backend
    from s1kit.budget.delimiters import choose_delimiters
    from s1kit.eval.grading import extract_answer
    from s1kit.eval.runner import build_prompt
    from s1kit.eval.tasks import Problem
    from s1kit.generate.types import Request, SamplingParams

    backend = load_backend("s1kit", str(folder), EngineOptions(device="cpu", max_batch=8, max_len=512))
    tok = backend.tokenizer
    delims = choose_delimiters(tok)
    spec = delims.spec(tok, vocab_size=backend.vocab_size).replace(
        max_thinking_tokens=SETTINGS["max_thinking_tokens"], max_answer_tokens=SETTINGS["max_answer_tokens"]
    )
    reqs = []
    for q in questions:
        text = build_prompt(tok, Problem("math", "", q, ""), "", delims)
        ids = tok.encode(text, add_special_tokens=False)
        reqs.append(Request(ids, SamplingParams(max_new_tokens=SETTINGS["max_new_tokens"]), spec))
    return [extract_answer(r.text, "math") for r in backend.generate(reqs)]
