"""Rows -> chat-template tokens: targets cover exactly the assistant turn; long rows are truncated or
dropped and counted; bad inputs fail with messages that name the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s1kit.errors import ConfigError, DataError
from s1kit.train.config import TrainConfig
from s1kit.train.data import IGNORE_INDEX, build_examples, load_rows, render, tokenize_row
from tests.train_tiny import make_rows, make_tokenizer, write_jsonl


@pytest.fixture(scope="module")
def tok():  # type: ignore[no-untyped-def]
    return make_tokenizer()


def _cfg(**kw: object) -> TrainConfig:
    return TrainConfig(model="m", data="d", block_size=4096).replace(**kw)


@pytest.mark.parametrize("style", ["s1", "think_tags"])
def test_targets_are_exactly_the_assistant_span(tok, style: str) -> None:  # type: ignore[no-untyped-def]
    cfg = _cfg(think_style=style)
    for row in make_rows(6, seed=5):
        text, start = render(tok, row, cfg)
        reply = text[start:]
        # the span is the assistant turn as written by the template, with its end-of-turn marker
        if style == "s1":
            assert reply.startswith("<|im_start|>think\n") and "\n<|im_start|>answer\nAnswer: " in reply
        else:
            assert reply.startswith("<think>\n") and "\n</think>\n\n" in reply
        assert reply.endswith("<|im_end|>\n")
        assert text[:start].endswith("<|im_start|>assistant\n")
        ex = tokenize_row(tok, row, cfg)
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        assert ex.input_ids_T == enc["input_ids"]
        # token t+1 is a target exactly when its characters lie in the assistant span
        for t, (s, e) in enumerate(enc["offset_mapping"]):
            is_target = t > 0 and ex.targets_T[t - 1] != IGNORE_INDEX
            assert is_target == (s >= start), (t, s, e, start)
            if is_target:
                assert ex.targets_T[t - 1] == ex.input_ids_T[t]
        # decoding the target tokens gives back the assistant text, and nothing else
        targets = [x for x in ex.targets_T if x != IGNORE_INDEX]
        assert tok.decode(targets, skip_special_tokens=False) == reply
        assert ex.targets_T[-1] == IGNORE_INDEX


def test_answer_prefix_not_doubled(tok) -> None:  # type: ignore[no-untyped-def]
    row = {"question": "q", "thinking_trajectories": "t", "attempt": "Answer: 7"}
    text, start = render(tok, row, _cfg())
    assert text[start:].count("Answer:") == 1


def test_truncate_and_drop_are_counted(tok) -> None:  # type: ignore[no-untyped-def]
    rows = make_rows(12, seed=2, max_words=60)
    full, _ = build_examples(tok, rows, _cfg())
    lengths = sorted(len(e) for e in full)
    block = lengths[len(lengths) // 2]
    n_long = sum(n > block for n in lengths)
    assert n_long > 0
    kept, st = build_examples(tok, rows, _cfg(block_size=block, overlong="truncate"))
    assert st.truncated == n_long and st.dropped == 0 and len(kept) == 12
    assert max(len(e) for e in kept) == block
    kept, st = build_examples(tok, rows, _cfg(block_size=block, overlong="drop"))
    assert st.dropped == n_long and st.truncated == 0 and len(kept) == 12 - n_long


def test_block_shorter_than_prompt_fails_at_start(tok) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="shorter than the prompt"):
        build_examples(tok, make_rows(3), _cfg(block_size=20))


def test_missing_columns_named(tok) -> None:  # type: ignore[no-untyped-def]
    rows = [{"problem": "x", "solution": "y", "answer": "z"}]
    with pytest.raises(DataError, match=r"lacks column.*--question-field"):
        build_examples(tok, rows, _cfg())


def test_tokenizer_without_chat_template_rejected() -> None:
    with pytest.raises(ConfigError, match="no chat template"):
        build_examples(make_tokenizer(with_template=False), make_rows(2), _cfg())


def test_loads_jsonl_parquet_and_folders(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = make_rows(5)
    write_jsonl(tmp_path / "a.jsonl", rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "b.parquet")
    assert load_rows(str(tmp_path / "a.jsonl")) == rows
    assert load_rows(str(tmp_path / "b.parquet")) == rows
    (tmp_path / "ds" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[:2]), tmp_path / "ds" / "data" / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[2:]), tmp_path / "ds" / "data" / "test-00000-of-00001.parquet")
    assert load_rows(str(tmp_path / "ds"), split="train") == rows[:2]
    (tmp_path / "c.json").write_text(json.dumps({"not": "a list"}))
    with pytest.raises(DataError, match="list of row objects"):
        load_rows(str(tmp_path / "c.json"))


def test_real_math500_rows_render(tok, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    rows = load_rows(str(shared_data / "eval" / "math500.jsonl"))[:20]
    cfg = _cfg(question_field="problem", thinking_field="solution", answer_field="answer", block_size=100_000)
    exs, st = build_examples(tok, rows, cfg)
    assert st.kept == 20 and st.target_tokens > 0
    for row, ex in zip(rows, exs, strict=True):
        targets = [x for x in ex.targets_T if x != IGNORE_INDEX]
        text = tok.decode(targets, skip_special_tokens=False)
        assert row["solution"].strip() in text and text.endswith("<|im_end|>\n")
