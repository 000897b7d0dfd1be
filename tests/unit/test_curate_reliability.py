"""Curate under bad inputs (issue 16, items 3-5) and its completion record.

- a ``.json`` pool with a non-UTF-8 byte is a :class:`DataError` naming the file, line and fix;
- unreadable or question-less rows of an ``--eval`` file are an error, not a silent skip;
- a trace whose grading times out is dropped with the time-out in its reason;
- ``summary.json`` lists the files it completes, and :func:`check_outputs` notices a mixed folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s1kit.curate import CurateConfig, correctness, load_pool, run_pipeline
from s1kit.curate.decontam import EvalSet
from s1kit.curate.pipeline import check_outputs, write_outputs
from s1kit.curate.schema import Row
from s1kit.errors import DataError


def test_json_array_with_a_non_utf8_byte_names_file_line_and_fix(tmp_path: Path) -> None:
    p = tmp_path / "pool.json"
    p.write_bytes(b'[\n{"question": "a", "answer": "1"},\n{"question": "b\xff", "answer": "2"}\n]\n')
    with pytest.raises(DataError, match=r"pool\.json: line 3 column 16: byte 0xff is not UTF-8.*re-save"):
        load_pool([p])


def test_json_lines_in_a_json_file_report_the_bad_byte_per_row(tmp_path: Path) -> None:
    p = tmp_path / "pool.json"
    p.write_bytes(b'{"question": "a", "answer": "1"}\n{"question": "b\xff", "answer": "2"}\n')
    pool = load_pool([p])
    assert len(pool.rows) == 1 and [(i.line, i.reason[:14]) for i in pool.issues] == [(2, "not UTF-8 text")]


def test_json_array_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "pool.json"
    p.write_text('[\n{"question": "a"},\n{"question": }\n]\n')
    with pytest.raises(DataError, match=r"pool\.json: line 3 column 14: malformed JSON array"):
        load_pool([p])


def test_unreadable_eval_lines_are_an_error_not_a_silent_skip(tmp_path: Path) -> None:
    ev = tmp_path / "aime.jsonl"
    ev.write_bytes(
        b'{"problem": "Find x such that x + 1 = 2 and so on"}\n{broken\n'
        b'{"problem": "caf\xe9"}\n{"answer": "no question here"}\n'
    )
    with pytest.raises(DataError) as err:
        EvalSet.load([ev])
    msg = str(err.value)
    assert msg.startswith("3 evaluation row(s) cannot be used for decontamination")
    assert f"{ev}:2: malformed JSON" in msg and f"{ev}:3: not UTF-8" in msg and f"{ev}:4: no question" in msg
    good = tmp_path / "ok.jsonl"
    good.write_text('{"problem": "Find x such that x + 1 = 2"}\n')
    assert EvalSet.load([good]).texts == ["Find x such that x + 1 = 2"]


def test_grading_timeout_is_named_in_the_drop_reason() -> None:
    tower = "\\boxed{" + "9^{" * 5 + "9" + "}" * 5 + "}"
    rows = [
        Row(row=0, file="f", line=1, question="q", trace=f"so the answer is {tower}", answer="3"),
        Row(row=1, file="f", line=2, question="q", trace="so the answer is \\boxed{4}", answer="3"),
        Row(row=2, file="f", line=3, question="q", trace="so the answer is \\boxed{3}", answer="3"),
    ]
    res = correctness.check_traces(rows, timeout_s=1.0)
    assert res.drops[0][0] == "grading timed out after 1s (answer not verified)"
    assert res.drops[0][1]["timed_out"] is True
    assert res.drops[1][0] == "trace answer disagrees with reference"
    assert 2 not in res.drops


def _run(tmp_path: Path, k: int) -> tuple[object, object]:
    pool_file = tmp_path / "pool.jsonl"
    pool_file.write_text(
        "".join(
            json.dumps({"question": f"question number {i} " * 3, "answer": str(i)}) + "\n" for i in range(12)
        )
    )
    pool = load_pool([pool_file])
    return run_pipeline(pool, CurateConfig(k=k, skip={"correctness", "decontam"})), pool


def test_summary_lists_its_files_and_a_mixed_folder_is_detected(tmp_path: Path) -> None:
    result, pool = _run(tmp_path, 5)
    out = tmp_path / "out"
    write_outputs(result, pool, out)  # type: ignore[arg-type]
    check_outputs(out)
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["files"]) == ["manifest.jsonl", "selected.jsonl", "selected.parquet"]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], "no temporary file is left"
    # A second run replaces the folder whole and keeps what else a user put there.
    (out / "emb.npz").write_bytes(b"cache")
    result, pool = _run(tmp_path, 3)
    write_outputs(result, pool, out)  # type: ignore[arg-type]
    check_outputs(out)
    assert (out / "emb.npz").read_bytes() == b"cache"
    assert len((out / "selected.jsonl").read_text().splitlines()) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "pool.jsonl"]
    # A selected.jsonl from another run next to this summary: not this run's output.
    (out / "selected.jsonl").write_text('{"question": "other"}\n')
    with pytest.raises(DataError, match=r"selected\.jsonl is not the file summary\.json records"):
        check_outputs(out)
    (out / "summary.json").unlink()
    with pytest.raises(DataError, match="did not finish"):
        check_outputs(out)
