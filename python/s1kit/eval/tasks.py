"""Benchmark loaders: AIME 2024, AIME 2025, AMC 2023, MATH500 and GPQA Diamond, mapped to one schema.

Local copies live in ``<data dir>/eval/<task>.jsonl`` (the project's ``../shared/data``; see its
SOURCES.md). The field names differ between files (``problem`` vs ``question``; ``answer`` a string, a
float or LaTeX): :func:`load_task` maps each to :class:`Problem` and records which fields it used in
``Problem.source``. Without a local file the loader tries the Hugging Face hub (``huggingface_hub``,
already a dependency of transformers), which needs network access and, for GPQA, an accepted gate.

GPQA Diamond is not redistributed (its authors ask that its questions stay out of plain-text corpora).
Give its CSV (the official ``gpqa_diamond.csv``) or a JSONL with the same columns by path. The four
options are shuffled with a per-question seed into a lettered multiple choice.
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s1kit.errors import DataError
from s1kit.eval.grading import CHOICE_TASKS, GRADING_MODES, TASKS

# Tasks with a loader (``math`` and ``exact`` are grading modes only; any other task comes from a file,
# see :func:`load_file_task`).
LOADABLE_TASKS: tuple[str, ...] = tuple(t for t in TASKS if t not in GRADING_MODES)
FILE_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".parquet")

# Hub sources, tried only when no local file exists: (repo id, file in the repo). Not exercised by the
# tests (no network there); a different mirror can always be given as a local file.
HUB_SOURCES: dict[str, tuple[str, str]] = {
    "math500": ("HuggingFaceH4/MATH-500", "test.jsonl"),
    "aime24": ("HuggingFaceH4/aime_2024", "data/train-00000-of-00001.parquet"),
    "aime25": ("yentinglin/aime_2025", "data/train-00000-of-00001.parquet"),
    "amc23": ("math-ai/amc23", "test-00000-of-00001.parquet"),
    "gpqa": ("Idavidrein/gpqa", "gpqa_diamond.csv"),
}

# Candidate field names, in order of preference.
_QUESTION_FIELDS = ("problem", "question", "Problem", "Question")
_ANSWER_FIELDS = ("answer", "Answer", "final_answer")
_ID_FIELDS = ("id", "unique_id", "ID", "Record ID", "idx")

GPQA_LETTERS = "ABCD"


@dataclass(frozen=True)
class Problem:
    """One benchmark question in the common schema.

    ``answer`` is the gold answer as a string (an integer spelled plainly for AIME/AMC, a letter for
    GPQA). ``choices`` holds GPQA's four options in their shuffled order. ``source`` says which file and
    fields the row came from.
    """

    task: str
    id: str
    question: str
    answer: str
    choices: tuple[str, ...] = ()
    solution: str = ""
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    grading: str = ""
    """How answers are extracted and graded (a benchmark name, ``math`` or ``exact``); empty: ``task``."""

    @property
    def grade_mode(self) -> str:
        return self.grading or self.task

    @property
    def prompt(self) -> str:
        """The user message: the question, plus the lettered options for multiple choice."""
        if not self.choices:
            return self.question
        options = "\n".join(f"({GPQA_LETTERS[i]}) {c}" for i, c in enumerate(self.choices))
        return f"{self.question}\n\nChoices:\n{options}\n\nAnswer with the letter of the correct choice."


def default_data_dir() -> Path | None:
    """``$S1KIT_SHARED_DATA`` when set, else ``None`` (callers then pass a directory or use the hub)."""
    env = os.environ.get("S1KIT_SHARED_DATA")
    return Path(env) if env else None


def _pick(row: dict[str, Any], names: Sequence[str], what: str, where: str) -> tuple[str, Any]:
    for name in names:
        if name in row and row[name] is not None and str(row[name]) != "":
            return name, row[name]
    raise DataError(
        f"{where}: a row has no {what} field (looked for {', '.join(names)}); keys: {sorted(row)}"
    )


def _canonical_answer(task: str, value: Any) -> str:
    # AMC23's answers are floats (27.0): spell integers plainly so graders and reports see "27".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return _read_jsonl(path)
        if suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}: line {e.lineno} column {e.colno}: malformed JSON ({e.msg}); fix the file"
                ) from None
            return list(data if isinstance(data, list) else data.get("data", []))
        if suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as f:
                return list(csv.DictReader(f))
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
            return rows
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json, .csv or .parquet")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON Lines file; a bad line is a :class:`DataError` naming its line and column."""
    rows: list[dict[str, Any]] = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}: line {lineno} column {e.start + 1}: not UTF-8 ({e.reason}); re-save the file as UTF-8"
                ) from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}: line {lineno} column {e.colno}: malformed JSON ({e.msg}); fix or remove the line"
                ) from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}: line {lineno}: a JSON {type(row).__name__}, not an object; each line must be "
                    'one row such as {"question": ..., "answer": ...}'
                )
            rows.append(row)
    return rows


def _from_hub(task: str) -> Path:
    repo, filename = HUB_SOURCES[task]
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=repo, filename=filename, repo_type="dataset"))
    except Exception as e:
        gated = (
            " (gated: accept its terms on the hub and log in with `hf auth login`)" if task == "gpqa" else ""
        )
        raise DataError(
            f"no local file for {task} and the hub download of {repo}/{filename} failed{gated}: {e}. "
            f"Pass --data-dir with eval/{task}.jsonl, or a file path for the task"
        ) from e


def resolve_task_file(task: str, data_dir: Path | None = None, path: Path | None = None) -> Path:
    """Where ``task`` is read from: ``path``, else ``<data_dir>/eval/<task>.jsonl``, else the hub."""
    if task not in LOADABLE_TASKS:
        raise ValueError(f"task={task!r} has no loader; use one of {', '.join(LOADABLE_TASKS)}")
    if path is not None:
        if not path.is_file():
            raise DataError(f"{task}: file {path} does not exist")
        return path
    data_dir = data_dir if data_dir is not None else default_data_dir()
    if data_dir is not None:
        for name in (f"{task}.jsonl", f"{task}.csv", f"{task}.parquet", "gpqa_diamond.csv"):
            candidate = data_dir / "eval" / name
            if candidate.is_file() and (name.startswith(task) or task == "gpqa"):
                return candidate
    return _from_hub(task)


def _gpqa_problem(row: dict[str, Any], index: int, seed: int, where: str) -> Problem:
    try:
        question = str(row["Question"]).strip()
        correct = str(row["Correct Answer"]).strip()
        wrong = [str(row[f"Incorrect Answer {i}"]).strip() for i in (1, 2, 3)]
    except KeyError as e:
        raise DataError(
            f"{where}: GPQA rows need 'Question', 'Correct Answer' and 'Incorrect Answer 1..3'; missing {e}"
        ) from None
    pid = str(row.get("Record ID") or row.get("id") or index)
    options = [correct, *wrong]
    # A per-question stream: the order does not depend on which other questions are loaded.
    random.Random(f"{seed}:{pid}").shuffle(options)
    letter = GPQA_LETTERS[options.index(correct)]
    return Problem(
        task="gpqa",
        id=pid,
        question=question,
        answer=letter,
        choices=tuple(options),
        source=f"{where} (Question, Correct Answer, Incorrect Answer 1-3; options shuffled, seed {seed})",
        meta={k: row[k] for k in ("Subdomain", "High-level domain") if k in row},
    )


def load_task(
    task: str,
    *,
    data_dir: Path | None = None,
    path: Path | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[Problem]:
    """Load ``task`` as :class:`Problem` rows, in file order, at most ``limit`` of them.

    ``seed`` only affects GPQA (the option order). Raises :class:`DataError` when the file lacks a
    needed field, naming the fields it looked for.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit} must be >= 1 or None")
    file = resolve_task_file(task, data_dir, path)
    rows = _read_rows(file)
    if not rows:
        raise DataError(f"{file} holds no rows for {task}")
    problems: list[Problem] = []
    for i, row in enumerate(rows[:limit] if limit else rows):
        where = f"{file}:{i + 1}"
        if task in CHOICE_TASKS:
            problems.append(_gpqa_problem(row, i, seed, where))
            continue
        qf, question = _pick(row, _QUESTION_FIELDS, "question", where)
        af, answer = _pick(row, _ANSWER_FIELDS, "answer", where)
        pid = next((str(row[k]) for k in _ID_FIELDS if k in row and row[k] not in (None, "")), str(i))
        problems.append(
            Problem(
                task=task,
                id=pid,
                question=str(question).strip(),
                answer=_canonical_answer(task, answer),
                solution=str(row.get("solution") or ""),
                source=f"{file} (question: {qf}, answer: {af})",
                meta={k: row[k] for k in ("subject", "level", "url") if k in row},
            )
        )
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise DataError(f"{file}: problem ids are not unique; results could not be resumed reliably")
    return problems


def is_task_file(spec: str) -> bool:
    """Whether a ``--tasks`` entry names a local file (``NAME=PATH`` or a path with a known suffix)."""
    return "=" in spec or Path(spec).suffix.lower() in FILE_SUFFIXES


def load_file_task(spec: str, *, grading: str = "math", limit: int | None = None) -> list[Problem]:
    """A task of your own from a local file: ``PATH`` (the task is named by the file stem) or ``NAME=PATH``.

    Each row needs a question (``problem``/``question``) and an answer (``answer``/``final_answer``); an
    ``id`` column is used when present, else the row number. Answers are graded with ``grading``:
    ``math`` (math-verify equivalence) or ``exact`` (the same text up to whitespace).
    """
    if grading not in GRADING_MODES:
        raise ValueError(f"grading={grading!r}: use one of {', '.join(GRADING_MODES)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit} must be >= 1 or None")
    name, sep, file_text = spec.partition("=")
    path = Path(file_text if sep else spec)
    name = name if sep else path.stem
    if not name or "/" in name or name in TASKS:
        raise ValueError(
            f"task file {spec!r}: the task name {name!r} must be a plain word and not a built-in task; "
            "use NAME=PATH"
        )
    if not path.is_file():
        raise DataError(f"task {name}: file {path} does not exist")
    rows = _read_rows(path)
    if not rows:
        raise DataError(f"{path} holds no rows for task {name}")
    problems: list[Problem] = []
    for i, row in enumerate(rows[:limit] if limit else rows):
        where = f"{path}:{i + 1}"
        qf, question = _pick(row, _QUESTION_FIELDS, "question", where)
        af, answer = _pick(row, _ANSWER_FIELDS, "answer", where)
        pid = next((str(row[k]) for k in _ID_FIELDS if k in row and row[k] not in (None, "")), str(i))
        problems.append(
            Problem(
                task=name,
                id=pid,
                question=str(question).strip(),
                answer=_canonical_answer(name, answer),
                source=f"{path} (question: {qf}, answer: {af})",
                meta={k: row[k] for k in ("domain", "difficulty") if k in row},
                grading=grading,
            )
        )
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: problem ids are not unique; results could not be resumed reliably")
    return problems
