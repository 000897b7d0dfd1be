"""Quality rules of s1K's first stage, each named and individually switchable.

s1 dropped questions whose fields were missing, whose model output was an API error, that referenced
images, that carried Asymptote (``[asy]``) diagrams (kept for sources where the diagram is text the
model can read), and with numbered sub-problem formatting (several questions in one). Every rule takes
a :class:`~s1kit.curate.schema.Row` and returns a reason string when the row fails, else ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from s1kit.curate.schema import Row

API_ERROR_RE = re.compile(
    r"(?i)\b(?:rate[ _-]?limit(?:ed| exceeded)?|internal server error|service unavailable|bad gateway"
    r"|api[ _-]?error|max(?:imum)? retries exceeded|request timed out|error code: ?[45]\d\d"
    r"|openai\.error|anthropic\.|overloaded_error|context_length_exceeded|insufficient_quota)\b"
)
IMAGE_RE = re.compile(
    r"(?i)(?:!\[[^\]]*\]\([^)]*\)|<img\b|\\includegraphics|\.(?:png|jpe?g|gif|svg|bmp|webp)\b"
    r"|\b(?:see|in|shown in|refer to) the (?:figure|diagram|image|picture)\b|\bfigure below\b|\bimage below\b)"
)
ASY_RE = re.compile(r"\[asy\]", re.IGNORECASE)
# Two or more enumerated parts opened at a line start or after punctuation/space: (1) (2), (a) (b),
# (I) (II), (i) (ii), full-width （1）（2）.
_PART = r"(?:^|(?<=[\s:：。．.;；]))[(（]\s*({})\s*[)）]"
SUBPROBLEM_RES = tuple(
    (re.compile(_PART.format(a), re.MULTILINE), re.compile(_PART.format(b), re.MULTILINE))
    for a, b in (("1", "2"), ("a", "b"), ("I", "II"), ("i", "ii"))
)
DEFAULT_ASY_SOURCES: tuple[str, ...] = ()


def rule_missing_question(row: Row) -> str | None:
    return "missing question" if not row.question else None


def rule_missing_answer(row: Row) -> str | None:
    return "missing answer" if not row.answer else None


def rule_missing_trace(row: Row) -> str | None:
    return "missing trace" if not row.trace else None


def rule_api_error(row: Row) -> str | None:
    for name, text in (("trace", row.trace), ("answer", row.answer)):
        if text and API_ERROR_RE.search(text[:2000]):
            return f"API-error text in {name}"
    return None


def rule_image_reference(row: Row) -> str | None:
    return "references an image" if row.question and IMAGE_RE.search(row.question) else None


def make_asy_rule(allowed_sources: Iterable[str]) -> Callable[[Row], str | None]:
    allowed = tuple(s.lower() for s in allowed_sources)

    def rule_asy(row: Row) -> str | None:
        if not row.question or not ASY_RE.search(row.question):
            return None
        src = (row.source or "").lower()
        if any(a in src for a in allowed):
            return None
        return "[asy] diagram (source not in --asy-sources)"

    return rule_asy


def rule_numbered_subproblems(row: Row) -> str | None:
    q = row.question or ""
    for first, second in SUBPROBLEM_RES:
        if first.search(q) and second.search(q):
            return "numbered sub-problems"
    return None


@dataclass
class QualityConfig:
    """Which rules run: all of :data:`RULE_NAMES` but ``disabled``. ``require`` lists the columns that
    must be present; ``asy_sources`` the sources (substring match) whose ``[asy]`` diagrams are kept."""

    require: tuple[str, ...] = ("question", "answer")
    asy_sources: tuple[str, ...] = DEFAULT_ASY_SOURCES
    disabled: set[str] = field(default_factory=set)


RULE_NAMES = ("missing", "api_error", "image_reference", "asy", "numbered_subproblems")


def build_rules(cfg: QualityConfig) -> list[tuple[str, Callable[[Row], str | None]]]:
    """The enabled rules in the order they are checked (the first failing rule names the reason)."""
    missing = {"question": rule_missing_question, "answer": rule_missing_answer, "trace": rule_missing_trace}
    bad = set(cfg.require) - set(missing)
    if bad:
        raise ValueError(f"require={sorted(bad)}: only question, answer and trace can be required")
    unknown = cfg.disabled - set(RULE_NAMES)
    if unknown:
        raise ValueError(f"unknown quality rule(s) {sorted(unknown)}; rules are {', '.join(RULE_NAMES)}")
    rules: list[tuple[str, Callable[[Row], str | None]]] = []
    if "missing" not in cfg.disabled:
        # A row without a question can never be used, so it is always checked first.
        rules.append(("missing_question", rule_missing_question))
        rules += [(f"missing_{c}", missing[c]) for c in cfg.require if c != "question"]
    if "api_error" not in cfg.disabled:
        rules.append(("api_error", rule_api_error))
    if "image_reference" not in cfg.disabled:
        rules.append(("image_reference", rule_image_reference))
    if "asy" not in cfg.disabled:
        rules.append(("asy", make_asy_rule(cfg.asy_sources)))
    if "numbered_subproblems" not in cfg.disabled:
        rules.append(("numbered_subproblems", rule_numbered_subproblems))
    return rules


def quality_reasons(rows: list[Row], cfg: QualityConfig) -> dict[int, tuple[str, dict[str, str]]]:
    """``{row: (reason, detail)}`` for every row that fails a rule (the first failing rule)."""
    rules = build_rules(cfg)
    out: dict[int, tuple[str, dict[str, str]]] = {}
    for r in rows:
        for name, rule in rules:
            reason = rule(r)
            if reason is not None:
                out[r.row] = (reason, {"rule": name})
                break
    return out
