"""Benchmark loaders: the real local files, and GPQA from a self-written file in its format."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from s1kit.errors import DataError
from s1kit.eval.grading import extract_answer, is_equivalent
from s1kit.eval.tasks import load_task

# Self-written questions in GPQA Diamond's CSV layout (GPQA itself is not redistributed).
GPQA_ROWS = [
    {
        "Record ID": "q1",
        "Question": "Which particle mediates the electromagnetic force?",
        "Correct Answer": "photon",
        "Incorrect Answer 1": "gluon",
        "Incorrect Answer 2": "W boson",
        "Incorrect Answer 3": "graviton",
        "High-level domain": "Physics",
    },
    {
        "Record ID": "q2",
        "Question": "What is the oxidation state of Mn in KMnO4?",
        "Correct Answer": "+7",
        "Incorrect Answer 1": "+2",
        "Incorrect Answer 2": "+4",
        "Incorrect Answer 3": "+6",
        "High-level domain": "Chemistry",
    },
    {
        "Record ID": "q3",
        "Question": "Which organelle holds the enzymes of the citric acid cycle?",
        "Correct Answer": "mitochondrial matrix",
        "Incorrect Answer 1": "cytosol",
        "Incorrect Answer 2": "rough endoplasmic reticulum",
        "Incorrect Answer 3": "Golgi apparatus",
        "High-level domain": "Biology",
    },
]


def _write_gpqa(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(GPQA_ROWS[0]))
        writer.writeheader()
        writer.writerows(GPQA_ROWS)
    return path


@pytest.mark.parametrize(("task", "rows"), [("math500", 500), ("aime24", 30), ("aime25", 30), ("amc23", 40)])
def test_local_files_load_into_one_schema(shared_data: Path, task: str, rows: int) -> None:
    problems = load_task(task, data_dir=shared_data)
    assert len(problems) == rows
    assert len({p.id for p in problems}) == rows
    assert all(p.question and p.answer and p.task == task for p in problems)
    assert "question:" in problems[0].source


def test_amc_float_answers_become_integers(shared_data: Path) -> None:
    problems = load_task("amc23", data_dir=shared_data, limit=3)
    assert [p.answer for p in problems] == ["27", "36", "45"]
    assert "answer: answer" in problems[0].source and "question: problem" in problems[0].source


def test_limit_and_bad_limit(shared_data: Path) -> None:
    assert len(load_task("math500", data_dir=shared_data, limit=7)) == 7
    with pytest.raises(ValueError, match="limit"):
        load_task("math500", data_dir=shared_data, limit=0)


def test_gpqa_options_are_shuffled_by_seed_and_graded_by_letter(tmp_path: Path) -> None:
    path = _write_gpqa(tmp_path / "gpqa_diamond.csv")
    a = load_task("gpqa", path=path, seed=1)
    b = load_task("gpqa", path=path, seed=1)
    assert a == b  # deterministic
    orders = {tuple(p.choices) for seed in range(8) for p in load_task("gpqa", path=path, seed=seed)[:1]}
    assert len(orders) > 1  # the seed moves the options
    for p, row in zip(a, GPQA_ROWS, strict=True):
        assert sorted(p.choices) == sorted(
            [
                row["Correct Answer"],
                row["Incorrect Answer 1"],
                row["Incorrect Answer 2"],
                row["Incorrect Answer 3"],
            ]
        )
        assert p.choices["ABCD".index(p.answer)] == row["Correct Answer"]
        assert f"({p.answer}) {row['Correct Answer']}" in p.prompt
        reply = f"<|im_start|>think\nhmm<|im_start|>answer\nThe answer is ({p.answer})."
        assert is_equivalent(extract_answer(reply, "gpqa"), p.answer, "gpqa")


def test_gpqa_from_data_dir(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    _write_gpqa(tmp_path / "eval" / "gpqa_diamond.csv")
    assert len(load_task("gpqa", data_dir=tmp_path)) == 3


def test_missing_fields_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"prompt": "1+1?", "answer": "2"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="no question field"):
        load_task("math500", path=bad)
    gp = tmp_path / "g.csv"
    gp.write_text("Question,Correct Answer\nq,a\n", encoding="utf-8")
    with pytest.raises(DataError, match="Incorrect Answer"):
        load_task("gpqa", path=gp)
    with pytest.raises(ValueError, match="no loader"):
        load_task("math", path=bad)


# ------------------------------------------------------------------------------------ tasks from a file


def test_file_task_loads_rows_and_grades_exactly(tmp_path: Path) -> None:
    from s1kit.eval.tasks import is_task_file, load_file_task

    path = tmp_path / "sorting.jsonl"
    path.write_text(
        '{"question": "Sort 3 1 2.", "answer": "1 2 3"}\n{"problem": "Sort 2 1.", "answer": "1 2"}\n'
    )
    assert is_task_file(str(path)) and is_task_file(f"mine={path}") and not is_task_file("aime24")
    rows = load_file_task(str(path), grading="exact")
    assert [(p.task, p.id, p.question, p.answer, p.grade_mode) for p in rows] == [
        ("sorting", "0", "Sort 3 1 2.", "1 2 3", "exact"),
        ("sorting", "1", "Sort 2 1.", "1 2", "exact"),
    ]
    assert load_file_task(f"mine={path}", limit=1)[0].task == "mine"
    pred = extract_answer("<|im_start|>answer\nFinal Answer: 1  2 3.", "exact")
    assert is_equivalent(pred, "1 2 3", "exact")
    # math-verify would read both as the product 6; exact grading does not.
    assert not is_equivalent("1 3 2", "1 2 3", "exact")


def test_file_task_errors_name_the_problem(tmp_path: Path) -> None:
    from s1kit.eval.tasks import load_file_task

    with pytest.raises(DataError, match="does not exist"):
        load_file_task(str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(DataError, match="no answer field"):
        load_file_task(str(bad))
    with pytest.raises(ValueError, match="built-in task"):
        load_file_task(f"aime24={bad}")
    with pytest.raises(ValueError, match="grading"):
        load_file_task(str(bad), grading="fuzzy")
