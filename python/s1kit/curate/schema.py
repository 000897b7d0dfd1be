"""The one schema every pool is mapped to, and the record of which input field fed each column.

Columns: ``id``, ``question``, ``trace`` (the reasoning trace or solution used for training), ``answer``,
``source``, ``domain``, ``trace_tokens`` (optional trace length in tokens) and ``correct`` (optional
per-model correctness, ``{model: bool}``). Input files name these differently (``problem`` vs
``question``; s1K's ``thinking_trajectories``); :func:`infer_field_map` picks the first alias present
and :class:`FieldMap` remembers the choice so the run report can say which field fed which column.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from s1kit.errors import ConfigFieldError

# Column -> input field names tried in order (first present wins). Users override with --field.
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "unique_id", "uid", "problem_id", "idx", "index"),
    "question": ("question", "problem", "prompt", "query", "instruction"),
    "trace": (
        "trace",
        "thinking_trajectories",
        "thinking_trajectory",
        "reasoning",
        "cot",
        "solution",
        "response",
        "output",
    ),
    "answer": ("answer", "final_answer", "gold", "target", "expected_answer"),
    "source": ("source", "source_type", "dataset", "data_source"),
    "domain": ("domain", "msc", "subject", "topic", "category"),
    "trace_tokens": ("trace_tokens", "thinking_tokens", "num_tokens", "token_length", "trace_length"),
}
COLUMNS: tuple[str, ...] = tuple(ALIASES)
# Input fields whose name marks a per-model correctness column: correct_<model>, <model>_correct(ness).
CORRECT_PREFIX = "correct_"
CORRECT_SUFFIXES = ("_correctness", "_correct")


@dataclass
class FieldMap:
    """Which input fields may feed each column (aliases present in the file, in priority order, or the
    one ``--field`` override), which fields give correctness, and how often each field was used.

    A record takes each column from the first candidate field it has a value for, so a file that mixes
    ``problem`` and ``question`` keys loses nothing; ``used`` counts the choices for the report.
    """

    candidates: dict[str, list[str]]
    correct: dict[str, str]  # model name -> input field
    used: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def columns(self) -> dict[str, str | None]:
        """The field that fed each column most often (the first candidate if none was used yet)."""
        out: dict[str, str | None] = {}
        for col, cands in self.candidates.items():
            counts = self.used.get(col)
            out[col] = counts.most_common(1)[0][0] if counts else (cands[0] if cands else None)
        return out

    def describe(self) -> str:
        parts = []
        for col, cands in self.candidates.items():
            counts = self.used.get(col)
            if counts and len(counts) > 1:
                parts.append(f"{col}<-" + "|".join(f"{f}({n})" for f, n in counts.most_common()))
            elif counts or cands:
                parts.append(f"{col}<-{self.columns[col]}")
        parts += [f"correct[{m}]<-{f}" for m, f in self.correct.items()]
        missing = [c for c, f in self.candidates.items() if not f]
        text = ", ".join(parts)
        return text + (f" (absent: {', '.join(missing)})" if missing else "")


def correctness_model(name: str) -> str | None:
    """The model a correctness field names, or ``None`` if ``name`` is not one."""
    low = name.lower()
    if low.startswith(CORRECT_PREFIX) and len(low) > len(CORRECT_PREFIX):
        return name[len(CORRECT_PREFIX) :]
    for suffix in CORRECT_SUFFIXES:
        if low.endswith(suffix) and len(low) > len(suffix):
            return name[: -len(suffix)]
    return None


def infer_field_map(fields: list[str], overrides: Mapping[str, str] | None = None) -> FieldMap:
    """Map ``fields`` (an input file's field names, in first-seen order) to the schema."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(COLUMNS)
    if unknown:
        raise ConfigFieldError(
            f"`overrides` names unknown column(s) {sorted(unknown)}; columns are {', '.join(COLUMNS)}",
            "overrides",
        )
    present = set(fields)
    candidates: dict[str, list[str]] = {}
    for col, aliases in ALIASES.items():
        if col in overrides:
            candidates[col] = [overrides[col]] if overrides[col] in present else []
        else:
            candidates[col] = [a for a in aliases if a in present]
    taken = {f for c in candidates.values() for f in c}
    correct = {m: f for f in fields if f not in taken and (m := correctness_model(f)) is not None}
    return FieldMap(candidates, correct)


@dataclass
class Row:
    """One input row in schema form. ``row`` is its position in the whole input (manifest key)."""

    row: int
    file: str
    line: int
    id: str | None = None
    question: str | None = None
    trace: str | None = None
    answer: str | None = None
    source: str | None = None
    domain: str | None = None
    trace_tokens: int | None = None
    correct: dict[str, bool] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "trace": self.trace,
            "answer": self.answer,
            "source": self.source,
            "domain": self.domain,
            "trace_tokens": self.trace_tokens,
            "correct": json.dumps(self.correct, sort_keys=True) if self.correct else None,
            "input_file": self.file,
            "input_line": self.line,
            "input_row": self.row,
        }


def as_text(value: Any) -> str | None:
    """A field value as text: lists of strings (s1K's trajectories) joined, integral floats as ints
    (AMC's ``27.0`` -> ``"27"``), empty strings and NaN as ``None``."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (list, tuple)):
        parts = [t for v in value if (t := as_text(v))]
        return "\n\n".join(parts) if parts else None
    text = str(value)
    return text if text.strip() else None


def as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0", "yes", "no"}:
        return value.strip().lower() in {"true", "1", "yes"}
    return None


def as_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) else None


def to_row(record: Mapping[str, Any], fmap: FieldMap, *, row: int, file: str, line: int) -> Row:
    """Build a :class:`Row` from one input record using ``fmap``."""

    def get(col: str) -> Any:
        for name in fmap.candidates[col]:
            value = record.get(name)
            if value is not None and value != "":
                fmap.used.setdefault(col, Counter())[name] += 1
                return value
        return None

    correct: dict[str, bool] = {}
    for model, name in fmap.correct.items():
        b = as_bool(record.get(name))
        if b is not None:
            correct[model] = b
    return Row(
        row=row,
        file=file,
        line=line,
        id=as_text(get("id")),
        question=as_text(get("question")),
        trace=as_text(get("trace")),
        answer=as_text(get("answer")),
        source=as_text(get("source")),
        domain=as_text(get("domain")),
        trace_tokens=as_int(get("trace_tokens")),
        correct=correct,
    )
