"""``s1kit generate`` end to end on a tiny saved model."""

from __future__ import annotations

import argparse
import json

import pytest

from s1kit.generate import cli
from tests.unit.tiny_lm import tiny_hf_model, tiny_tokenizer


def parse(argv):
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return p.parse_args(argv)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tok = tiny_tokenizer()
    tiny_hf_model("qwen2", tok, seed=3).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_cli_writes_one_jsonl_line_per_prompt(model_dir, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "What is two and three?"}\n\n{"prompt": "Hmm"}\n')
    out = tmp_path / "out.jsonl"
    argv = ["--model", str(model_dir), "--prompts-file", str(prompts), "--output", str(out)]
    argv += ["--style", "s1", "--max-thinking-tokens", "4", "--max-new-tokens", "20", "--max-len", "128"]
    assert cli.run(parse(argv)) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["request_id"] for r in rows] == ["a", "1"]
    for r in rows:
        assert r["prompt_ids"][-5:] == [1, 88, 76, 278, 203]  # "<|im_start|>think\n" opened thinking
        assert 1 <= len(r["token_ids"]) <= 20
        assert r["thinking_tokens"] <= 4 or not r["capped"]
        assert r["finish_reason"] in ("eos", "stop", "length")


def test_cli_raw_prompt_without_budget(model_dir, capsys):
    argv = ["--model", str(model_dir), "--prompt", "The answer is", "--no-chat-template"]
    argv += ["--max-new-tokens", "5", "--temperature", "0.8", "--seed", "1", "--max-len", "64"]
    assert cli.run(parse(argv)) == 0
    (line,) = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert row["prompt"] == "The answer is" and len(row["token_ids"]) == 5
    assert row["thinking_tokens"] == 0 and row["forced_tokens"] == 0


def test_cli_bad_prompts_file(model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no prompt field"}\n')
    from s1kit.errors import DataError

    with pytest.raises(DataError, match="'prompt' field"):
        cli.run(parse(["--model", str(model_dir), "--prompts-file", str(bad)]))


def test_cli_detects_the_style_and_says_so(model_dir, capsys):
    argv = ["--model", str(model_dir), "--prompt", "What is two and three?", "--max-thinking-tokens", "3"]
    argv += ["--max-new-tokens", "12", "--max-len", "128"]
    assert cli.run(parse(argv)) == 0
    captured = capsys.readouterr()
    assert "thinking delimiters: think_tags (detected: the tokenizer has <think> and </think>" in captured.err
    row = json.loads(captured.out)
    tok = tiny_tokenizer()
    assert row["prompt_ids"][-2:] == tok.encode("<think>\n")
    assert row["capped"] and row["thinking_tokens"] == 3  # no grace tokens: the cap is exact
    assert row["token_ids"][3:7] == tok.encode("\n</think>\n\nFinal Answer:")[:4]


def test_cli_custom_delimiters_and_extensions(model_dir, capsys):
    argv = [
        "--model",
        str(model_dir),
        "--prompt",
        "Hmm",
        "--think-start",
        "<think>",
        "--think-end",
        "</think>",
    ]
    argv += ["--answer-prefix", " Final Answer:", "--extension", "Hmm", "--extension", " Wait"]
    argv += ["--max-thinking-tokens", "6", "--max-new-tokens", "12", "--max-len", "128"]
    assert cli.run(parse(argv)) == 0
    captured = capsys.readouterr()
    assert "thinking delimiters: custom (--think-end; --think-start, --answer-prefix, --extension given)" in (
        captured.err
    )
    assert "answer prefix ' Final Answer:', extensions ['Hmm', ' Wait']" in captured.err
    row = json.loads(captured.out)
    tok = tiny_tokenizer()
    assert row["prompt_ids"][-2:] == tok.encode("<think>\n") and row["capped"]
    assert row["token_ids"][6 : 6 + len(tok.encode(" Final Answer:"))] == tok.encode(" Final Answer:")


def test_cli_style_the_tokenizer_lacks_is_a_clear_error(tmp_path):
    from s1kit.errors import TokenizationError
    from tests.unit.test_budget_delimiters import _tokenizer

    tok = _tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|im_end|>")
    tiny_hf_model("qwen2", tok, seed=3).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    argv = ["--model", str(tmp_path), "--prompt", "Hmm", "--style", "think_tags", "--max-len", "64"]
    with pytest.raises(TokenizationError, match=r"^--style think_tags needs the token '<think>'.*--style s1"):
        cli.run(parse(argv))
