"""Evaluation under bad inputs (issue 16, items 10 and 11) and its atomic report.

- a malformed task file names the real line and column;
- one prompt longer than the engine's ``max_len`` is that sample's outcome; the run goes on;
- the report files are replaced atomically (no temporary file left, a rerun rewrites them whole).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from s1kit.errors import DataError
from s1kit.eval.tasks import load_file_task
from tests.unit.test_eval_e2e import _save_tiny_model


def test_malformed_task_file_names_the_real_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "mine.jsonl"
    p.write_text('{"question": "1+1?", "answer": "2"}\n\n{"question": "2+2?", "answer": 4,}\n')
    with pytest.raises(DataError, match=r"mine\.jsonl: line 3 column 34: malformed JSON"):
        load_file_task(str(p))
    p.write_text('{"question": "1+1?", "answer": "2"}\n["not", "an", "object"]\n')
    with pytest.raises(DataError, match=r"mine\.jsonl: line 2: a JSON list, not an object"):
        load_file_task(str(p))
    p.write_bytes(b'{"question": "1+1?", "answer": "2"}\n{"question": "\xff"}\n')
    with pytest.raises(DataError, match=r"mine\.jsonl: line 2 column 15: not UTF-8"):
        load_file_task(str(p))
    j = tmp_path / "mine.json"
    j.write_text('[\n{"question": "1+1?", "answer": "2"},\n{"question": }\n]\n')
    with pytest.raises(DataError, match=r"mine\.json: line 3 column 14: malformed JSON"):
        load_file_task(str(j))


@pytest.mark.slow
def test_a_prompt_too_long_for_the_engine_is_one_samples_outcome(tmp_path: Path) -> None:
    import torch

    from s1kit.eval import cli

    torch.set_num_threads(1)
    model_dir = tmp_path / "model"
    _save_tiny_model(model_dir)
    tasks = tmp_path / "mine.jsonl"
    long_question = "Compute the area of the triangle. " * 60
    tasks.write_text(
        json.dumps({"id": "short", "question": "Find x if 2x + 3 = 11.", "answer": "4"})
        + "\n"
        + json.dumps({"id": "long", "question": long_question, "answer": "4"})
        + "\n"
    )
    out = tmp_path / "out"
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = [
        "--model", str(model_dir), "--out", str(out), "--tasks", f"mine={tasks}", "--task-grading",
        "exact", "--methods", "budget_forcing", "--budgets", "8", "--extensions", "0",
        "--max-new-tokens", "12", "--max-answer-tokens", "4", "--device", "cpu", "--max-batch", "2",
        "--max-len", "128", "--no-progress", "--grading-workers", "1",
    ]  # fmt: skip
    assert cli.run(parser.parse_args(argv)) == 0
    recs = {
        r["problem_id"]: r
        for r in map(json.loads, (out / "samples" / "mine" / "budget_forcing.jsonl").read_text().splitlines())
    }
    assert set(recs) == {"short", "long"}
    assert recs["short"]["finish_reason"] != "prompt_too_long" and recs["short"]["generated_tokens"] > 0
    long = recs["long"]
    assert long["finish_reason"] == "prompt_too_long" and long["correct"] is False
    assert long["generation"] == "" and "max_len=128" in long["error"]
    # The report covers both; no temporary file is left beside it.
    assert "| mine | budget_forcing |" in (out / "report.md").read_text()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
