"""End to end: `s1kit eval` with a tiny random Qwen2 model on a few MATH500 problems.

The model and its tokenizer are built here (nothing is downloaded) and saved to a temporary folder with a
chat template, as a real checkpoint would be. The run must write every output file and the figure,
resume without regenerating anything, recover from a torn last line, and store token counts that agree
with the generated token ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from s1kit.eval.methods import METHODS

pytestmark = pytest.mark.slow  # three CLI runs: ~20 s on an idle 2-core machine

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = (
    "Let me think step by step. Wait, the answer is 42. Final Answer: the sum of two and three is five. "
    "If x is even then x squared is even; \\frac{1}{2} and \\sqrt{3} and \\boxed{7}. think answer assistant "
    "user system Find the value of $x$ such that $2x + 3 = 11$. Compute the area of the triangle. "
)


def _save_tiny_model(folder: Path) -> Any:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS] * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # wider weights: varied text instead of one repeated token
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10.0)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return fast


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def one_torch_thread() -> Any:
    # A tiny model gains nothing from intra-op threads, and they spin against other work on 2 cores.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_torch_thread")
def test_eval_end_to_end_writes_everything_and_resumes(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from s1kit.eval import cli

    def main(argv: list[str]) -> int:
        # The eval subcommand itself: `s1kit.cli` imports every subcommand, some on other branches.
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser)
        return cli.run(parser.parse_args(argv[1:]))

    model_dir = tmp_path / "model"
    tok = _save_tiny_model(model_dir)
    out = tmp_path / "out"
    argv = [
        "eval", "--model", str(model_dir), "--out", str(out), "--tasks", "math500",
        "--methods", ",".join(METHODS), "--budgets", "8,16", "--extensions", "0,1", "--steps", "2",
        "--votes", "1,3", "--max-tries", "2", "--limit", "3", "--seed", "42", "--max-new-tokens", "40",
        "--max-answer-tokens", "16", "--device", "cpu", "--max-batch", "16", "--max-len", "1024",
        "--data-dir", str(shared_data), "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    samples = {m: _lines(out / "samples" / "math500" / f"{m}.jsonl") for m in METHODS}
    # 3 problems x points: budget forcing cap=8, cap=16, wait=1; truncation cut=8, cut=16; token 8, 16;
    # steps 2; classes short, long; votes: one pool of 3 samples; rejection: 1 or 2 tries per budget.
    expected = {
        "budget_forcing": 9,
        "truncation": 6,
        "token_conditional": 6,
        "step_conditional": 3,
        "class_conditional": 6,
        "majority_voting": 9,
    }
    assert {m: len(samples[m]) for m in expected} == expected
    assert 6 <= len(samples["rejection_sampling"]) <= 12
    total = sum(len(v) for v in samples.values())
    assert f"{total} new generations" in printed
    # No <think> tokens in this tokenizer: the s1 style is detected, said and stored.
    assert "thinking delimiters: s1 (detected: the tokenizer has <|im_start|>" in printed
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["style"] == "s1" and run["delimiters"]["think_end"] == ["<|im_start|>"]

    for name in ("run.json", "summary.csv", "metrics.csv", "report.md", "scaling.png", "scaling.svg"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (out / "scaling.svg").read_text(encoding="utf-8")
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| math500 | budget_forcing |" in report and "## Sample generations" in report
    summary = (out / "summary.csv").read_text(encoding="utf-8").splitlines()
    assert len(summary) == 1 + 3 + 2 + 2 + 1 + 2 + 2 + 2  # header + every sweep point of every method

    bf_path = out / "samples" / "math500" / "budget_forcing.jsonl"
    bf = samples["budget_forcing"]
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    prefix = tok.encode("\n<|im_start|>answer\nFinal Answer:", add_special_tokens=False)
    for r in [r for rs in samples.values() for r in rs]:
        assert set(r) >= {
            "prompt",
            "generation",
            "extracted",
            "gold",
            "correct",
            "thinking_tokens",
            "answer_tokens",
        }
        ids = r["token_ids"]
        assert len(ids) == r["generated_tokens"]
        # The accounting books every emitted token (forced ones and a final EOS included) in one phase,
        # except an EOS that ends the thinking span: it is no thinking token.
        eos_in_thinking = r["finish_reason"] == "eos" and r["answer_tokens"] == 0
        assert r["thinking_tokens"] + r["answer_tokens"] == len(ids) - eos_in_thinking, r
        # Thinking ends where a forced answer prefix starts (the prefix is answer), or just after an
        # end-of-thinking token the model emits (the delimiter is thinking).
        if r["extensions_used"] == 0:
            n = r["forced_tokens"]
            if n > 0:
                end = next(i for i in range(len(ids)) if ids[i : i + n] == prefix[:n])
            else:
                end = ids.index(im_start) + 1 if im_start in ids else len(ids) - eos_in_thinking
            assert r["thinking_tokens"] == end, r
        else:
            assert r["generation"].count("Wait") >= r["extensions_used"]
        if r["key"].startswith("cap="):
            assert r["thinking_tokens"] <= int(r["key"][4:])
        if r["method"] == "truncation":
            assert r["generated_tokens"] <= int(r["key"][4:])
        if r["method"] not in ("budget_forcing", "rejection_sampling"):
            assert r["forced_tokens"] == 0  # the other methods only count, they never force
    assert any(r["capped"] and r["forced_tokens"] > 0 for r in bf)  # the cap forced an answer somewhere
    assert all("<|im_start|>answer" in r["generation"] for r in bf if r["capped"])

    # A rerun generates nothing.
    before = bf_path.read_bytes()
    assert main(argv) == 0
    assert "0 new generations" in capsys.readouterr().out
    assert bf_path.read_bytes() == before

    # A crash mid-write: the last record is torn. The rerun drops it and regenerates exactly that one.
    lines = before.decode("utf-8").splitlines(keepends=True)
    bf_path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2], encoding="utf-8")
    assert main(argv) == 0
    assert "1 new generations" in capsys.readouterr().out
    again = _lines(bf_path)
    assert len(again) == 9
    assert again[-1]["generation"] == json.loads(lines[-1])["generation"]  # greedy: the same text
