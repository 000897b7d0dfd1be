"""Loaders map every format to one schema, say which field fed each column, and turn unreadable
rows into manifest entries."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s1kit.curate import CurateConfig, load_pool, run_pipeline
from s1kit.curate.schema import infer_field_map
from s1kit.errors import DataError


def test_jsonl_with_malformed_lines(tmp_path: Path) -> None:
    p = tmp_path / "pool.jsonl"
    p.write_text(
        '{"problem": "What is 1+1?", "answer": 2.0, "correct_qwen7b": true}\n'
        "{not json\n"
        "\n"
        "[1, 2]\n"
        '{"problem": "", "answer": "3"}\n'
        '{"question": "Q with list trace", "thinking_trajectories": ["step", "more"], "answer": "4"}\n',
        encoding="utf-8",
    )
    pool = load_pool([p])
    assert pool.num_input_rows == 5, "blank lines are not rows; bad lines are"
    assert [(i.row, i.line) for i in pool.issues] == [(1, 2), (2, 4)]
    assert "malformed JSON" in pool.issues[0].reason and "not an object" in pool.issues[1].reason
    r0, r1, r2 = pool.rows
    assert (r0.question, r0.answer, r0.correct, r0.source) == ("What is 1+1?", "2", {"qwen7b": True}, "pool")
    assert r1.question is None, "empty strings count as missing"
    assert r2.trace == "step\n\nmore"
    fmap = pool.field_maps[str(p)]
    assert fmap.columns["question"] == "problem" and fmap.columns["trace"] == "thinking_trajectories"
    assert (
        "question<-problem(1)|question(1)" in fmap.describe()
        and "correct[qwen7b]<-correct_qwen7b" in fmap.describe()
    )
    result = run_pipeline(pool, CurateConfig(k=10, skip={"correctness"}))
    result.manifest.check_complete()
    by_row = result.manifest.decisions
    assert by_row[1].stage == "load" and by_row[1].status == "dropped"
    assert by_row[3].stage == "quality" and by_row[3].reason == "missing question"


def test_parquet_arrow_and_folders(tmp_path: Path) -> None:
    table = pa.table(
        {"prompt": ["a b c", "d e f"], "gold": ["1", "2"], "uid": [7, 8], "subject": ["x", None]}
    )
    pq.write_table(table, tmp_path / "a.parquet")
    with pa.OSFile(str(tmp_path / "b.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    pool = load_pool([tmp_path], overrides={"question": "prompt"})
    assert [r.question for r in pool.rows] == ["a b c", "d e f"] * 2
    assert [r.row for r in pool.rows] == [0, 1, 2, 3]
    assert pool.rows[0].id == "7" and pool.rows[0].answer == "1" and pool.rows[0].domain == "x"


def test_bad_inputs_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_pool([tmp_path / "missing.jsonl"])
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type"):
        load_pool([tmp_path / "x.csv"])
    with pytest.raises(ValueError, match="unknown column"):
        infer_field_map(["q"], {"questoin": "q"})
    bad = tmp_path / "arr.json"
    bad.write_text('[{"question": "ok", "answer": "1"}, 5]')
    pool = load_pool([bad])
    assert len(pool.rows) == 1 and len(pool.issues) == 1


def test_hub_without_datasets_is_a_clear_error() -> None:
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="needs the `datasets` package"):
            load_pool(["hf:simplescaling/s1K"])
    else:
        pytest.skip("datasets is installed; the hub path would need network")


def test_field_map_record(tmp_path: Path) -> None:
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"question": "q", "solution": "s", "answer": "a", "Qwen_correct": 0}) + "\n")
    fmap = load_pool([p]).field_maps[str(p)]
    assert fmap.columns["trace"] == "solution"
    assert fmap.correct == {"Qwen": "Qwen_correct"}
    assert fmap.columns["domain"] is None
    assert "absent: id, source, domain, trace_tokens" in fmap.describe()
