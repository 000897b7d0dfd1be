"""Decontamination: drop pool questions that share a word n-gram (8 by default, as s1) with any
evaluation question.

The evaluation sets are read with the same loaders as the pool (``problem``/``question`` fields alike).
Matching is the Rust :class:`s1kit._core.NgramIndex`: s1-compatible normalisation (lowercase, Python's
``str.split()``), 64-bit n-gram hashes, parallel and GIL-free. A pool question shorter than ``n`` words
matches only an evaluation question that is identical after normalisation (s1 would never flag it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s1kit import _core
from s1kit.curate.loaders import load_texts
from s1kit.curate.schema import Row
from s1kit.errors import DataError


@dataclass
class EvalSet:
    """Evaluation questions with where each came from."""

    files: list[str]
    ids: list[str]
    texts: list[str]

    @classmethod
    def load(cls, specs: Sequence[str | Path]) -> EvalSet:
        """Every question of the evaluation files. A row that cannot be read, or has no question, is
        an error naming its file and line: skipping it would quietly check fewer items."""
        items, issues = load_texts(specs, "question")
        if issues:
            shown = "; ".join(f"{i.file}:{i.line}: {i.reason}" for i in issues[:5])
            more = f" (and {len(issues) - 5} more)" if len(issues) > 5 else ""
            raise DataError(
                f"{len(issues)} evaluation row(s) cannot be used for decontamination: {shown}{more}. "
                "Fix or remove these lines; skipping them would check fewer evaluation items"
            )
        if not items:
            raise DataError(
                f"no evaluation questions found in {[str(s) for s in specs]}: the files need a "
                "question/problem field"
            )
        return cls([f for f, _, _ in items], [i for _, i, _ in items], [t for _, _, t in items])


@dataclass
class DecontamResult:
    drops: dict[int, tuple[str, dict[str, Any]]]
    num_eval_items: int
    num_eval_ngrams: int


def decontaminate(rows: list[Row], evals: EvalSet, *, n: int = 8, min_shared: int = 1) -> DecontamResult:
    """Rows whose question shares at least ``min_shared`` distinct n-grams with an evaluation item.

    The detail names the evaluation item with the most shared n-grams (ties: the first indexed) and
    how many items matched.
    """
    index = _core.NgramIndex(evals.texts, n)
    questions = [r.question or "" for r in rows]
    doc, item, shared = index.decontaminate(questions, min_shared)
    best: dict[int, tuple[int, int, int]] = {}  # doc -> (shared, item, count)
    for d, it, sh in zip(doc.tolist(), item.tolist(), shared.tolist(), strict=True):
        prev = best.get(d)
        if prev is None:
            best[d] = (sh, it, 1)
        else:
            top_sh, top_it, count = prev
            best[d] = (sh, it, count + 1) if sh > top_sh else (top_sh, top_it, count + 1)
    drops: dict[int, tuple[str, dict[str, Any]]] = {}
    for d, (sh, it, count) in best.items():
        drops[rows[d].row] = (
            f"shares {n}-grams with an evaluation question",
            {
                "eval_file": evals.files[it],
                "eval_id": evals.ids[it],
                "shared_ngrams": sh,
                "eval_items_matched": count,
            },
        )
    return DecontamResult(drops, index.num_items, index.num_ngrams)
