"""Answer extraction: the answer segment of a generation, the final answer in it, and answer forms.

``extract_answer(text, task)`` pulls the final answer out of a generation (the last ``\\boxed{}``, else
"Final Answer: ...", else the last number; a letter for GPQA), searching only the text after the
end-of-thinking delimiter (``<|im_start|>answer`` or ``</think>``) when it is present.
``as_integer``, ``choice_letter`` and ``plain_text`` read the answer forms the verdicts compare.
Pure string work: no math-verify, no processes.
"""

from __future__ import annotations

import re

TASKS: tuple[str, ...] = ("aime24", "aime25", "amc23", "math500", "gpqa", "math", "exact")
# Grading modes that are not benchmarks: ``math`` (math-verify) and ``exact`` (the same text, up to
# whitespace and a trailing period; for answers such as "1 2 5 9" that math-verify would read as a product).
GRADING_MODES: tuple[str, ...] = ("math", "exact")
INTEGER_TASKS = frozenset({"aime24", "aime25"})
CHOICE_TASKS = frozenset({"gpqa"})

# End-of-thinking delimiters (s1 style, then think-tags style). The answer segment starts after the last one.
ANSWER_DELIMITERS: tuple[str, ...] = ("<|im_start|>answer", "</think>")
_CHOICE_LETTERS = "ABCD"


def check_task(task: str) -> str:
    """Return ``task`` if it is a known task name, else raise ``ValueError`` naming the valid ones."""
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not a known task; use one of {', '.join(TASKS)}")
    return task


# --------------------------------------------------------------------------------------------- extraction


def answer_segment(text: str) -> str:
    """The part of a generation after the last end-of-thinking delimiter, or all of it when none is present."""
    best = -1
    best_len = 0
    for delim in ANSWER_DELIMITERS:
        i = text.rfind(delim)
        if i > best:
            best, best_len = i, len(delim)
    return text if best < 0 else text[best + best_len :]


_BOX_RE = re.compile(r"\\(?:boxed|fbox|framebox)\b")


def last_boxed(text: str) -> str | None:
    r"""Content of the last complete ``\boxed{...}`` (nested braces; also ``\fbox``, ``\framebox`` and
    the brace-less ``\boxed 5``). An unterminated last box (a truncated generation) is skipped in favour
    of the one before it."""
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    for start in reversed(starts):
        i = start
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                c = text[j]
                if c == "{" and text[j - 1] != "\\":
                    depth += 1
                elif c == "}" and text[j - 1] != "\\":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
            continue  # unterminated: try the previous box
        if i > start:  # "\boxed 5": one token up to a space, "$" or end
            m = re.match(r"[^\s$]+", text[i:])
            if m:
                return m.group(0).rstrip(".")
    return None


_FINAL_ANSWER_RE = re.compile(r"final answer\s*(?:is)?\s*[:：]?", re.IGNORECASE)
# Integers (with optional thousands separators), decimals and simple fractions.
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?")


def _clean_inline(ans: str) -> str:
    ans = ans.strip()
    ans = re.sub(r"^\*+|\*+$", "", ans).strip().rstrip(".").strip()  # markdown bold, full stop
    if ans.startswith("$") and ans.endswith("$") and len(ans) > 1:
        ans = ans.strip("$").strip()
    if ans.startswith("\\(") and ans.endswith("\\)"):
        ans = ans[2:-2].strip()
    if ans.startswith("\\[") and ans.endswith("\\]"):
        ans = ans[2:-2].strip()
    return ans.rstrip(".").strip()


def _after_final_answer(segment: str) -> str | None:
    matches = list(_FINAL_ANSWER_RE.finditer(segment))
    if not matches:
        return None
    rest = segment[matches[-1].end() :]
    for line in rest.splitlines():
        ans = _clean_inline(line)
        if ans:
            return ans
    return None


def _last_number(segment: str) -> str | None:
    matches = _NUMBER_RE.findall(segment)
    if not matches:
        return None
    return re.sub(r"\s+", "", matches[-1]).replace(",", "")


# Phrasings that name a multiple-choice letter, most explicit first. Each pattern captures the letter.
_CHOICE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\\boxed\s*\{\s*(?:\\text(?:bf)?\s*\{)?\s*\(?([A-D])\)?\s*\}?\s*\}"),
    re.compile(
        r"(?i:answer|option|choice)(?:\s+(?i:is|would be|should be))?\s*(?i:option|choice)?\s*[:：]?\s*"
        r"\**\s*(?:\$\s*)?\(?\s*([A-D])\s*\)?(?![A-Za-z])"
    ),
    re.compile(r"\(([A-D])\)"),
    re.compile(r"(?m)^\s*\**\s*\(?([A-D])[).:]?\s*\**\s*$"),
)


def _extract_choice(segment: str) -> str | None:
    fa = _after_final_answer(segment)
    if fa is not None:
        m = re.match(r"\**\s*(?:\\boxed\{)?\s*(?:\\text\{)?\(?([A-D])\)?(?![A-Za-z])", fa)
        if m:
            return m.group(1)
    for pattern in _CHOICE_PATTERNS:
        found = pattern.findall(segment)
        if found:
            return str(found[-1])
    return None


def extract_answer(text: str, task: str) -> str | None:
    r"""The final answer in ``text`` as a string, or ``None`` when there is none.

    Searched in the answer segment (:func:`answer_segment`): the last ``\boxed{...}``, else the text after
    "Final Answer:", else the last number. For ``gpqa`` the chosen letter ("A".."D") under its common
    phrasings ("The answer is (B)", "Answer: C", ``\boxed{D}``, a lone "(A)").
    """
    check_task(task)
    segment = answer_segment(text)
    if task in CHOICE_TASKS:
        return _extract_choice(segment)
    boxed = last_boxed(segment)
    if boxed is not None:
        return boxed
    fa = _after_final_answer(segment)
    if fa is not None:
        inner = last_boxed(fa)
        return inner if inner is not None else fa
    return _last_number(segment)


# ---------------------------------------------------------------------------------------------- grading

_WRAPPER_RE = re.compile(r"\\(?:text|textbf|mathbf|mathrm|boxed|mbox)\s*\{([^{}]*)\}")


def as_integer(answer: str) -> int | None:
    r"""``answer`` as an integer if it spells one: ``"033"``, ``"33.0"``, ``"\textbf{(033) }"``, ``"$1{,}000$"``."""
    s = answer.strip().strip("$").strip()
    prev = None
    while prev != s:
        prev = s
        s = _WRAPPER_RE.sub(r"\1", s)
    s = s.replace("{,}", "").replace("\\!", "").replace("\\,", "").replace(" ", "")
    s = s.strip("()").rstrip(".")
    if re.fullmatch(r"[+-]?\d{1,3}(?:,\d{3})+", s):
        s = s.replace(",", "")
    # A trailing word is a unit ("204 minutes", "5\text{ ways}"); anything else is not an integer.
    m = re.fullmatch(r"([+-]?\d+)(?:\.0*)?(?:[A-Za-z]+)?", s)
    return int(m.group(1)) if m else None


def choice_letter(answer: str) -> str | None:
    """The choice letter A-D an answer names (``"(b)"``, ``"\\text{C}"``), or ``None``."""
    s = answer.strip().strip("$").strip()
    m = re.fullmatch(r"(?:\\text\{)?\(?\s*([A-Da-d])\s*\)?\}?[.:]?", s)
    if m:
        return m.group(1).upper()
    return _extract_choice(s)


def plain_text(answer: str) -> str:
    """An answer without ``$``, ``\\text{}``-style wrappers, extra spaces and a final period."""
    s = answer.strip().strip("$")
    prev = None
    while prev != s:
        prev = s
        s = _WRAPPER_RE.sub(r"\1", s)
    return re.sub(r"\s+", " ", s).strip().rstrip(".")
