"""The demo's synthetic reasoning tasks: question, step-by-step trace with self-correction, answer.

Four task families act as domains. A question lists keyed items (``a3 b7 c2``: item ``a`` is 3, item
``b`` is 7, ...); the trace visits them in key order, one line per step: the item copied and the
running result (a total, a count of x, a maximum, a sum mod 10), then ``So <answer>.``: the answer is
the last running result. Every step reads one item of the question and the previous step, which a
small transformer learns within minutes on a CPU; the answer depends on every item, so a trace cut
short leaves the model guessing. Difficulty is the number of items, so traces grow with it.

The traces are those of a teacher whose first pass has a blind spot, one per family (:data:`SLIPS`):
it drops the carry when the ones digit passes 9, misses an x right after an x, misses a new maximum
one above the old one (after the first item), adds a nonzero digit written twice in a row only once.
Its rechecks have none. Where the blind spot fires it changes the running result (a *slip*) and the
later steps carry the wrong result on, so the pass ends ``So <wrong>.`` (for the maximum a later,
larger item can hide the slip; such a pass's answer is right). Each problem draws one kind
(:data:`TRACE_KINDS`), seeded:

- ``clean``: the first pass's answer is right; the thinking ends there;
- ``confirm``: the first pass's answer is right, then ``\\nWait, `` and a recheck that finds it again;
- ``corrected``: the first pass's answer is wrong, then ``\\nWait, `` and a recheck that ends with the
  right one;
- ``uncorrected``: the first pass's answer is wrong and the thinking ends there: the teacher stopped
  early and its answer is the wrong one (s1K's traces are not all right either).

A recheck redoes every step from the first item, without the blind spot, so it recomputes from the
state before the slip and corrects it, or confirms a right answer. A rechecked trace may confirm once
more (:data:`SECOND_RECHECK`): ``\\nWait, So <answer>.``, the answer it just found, restated. A first
pass is rechecked less often than not, after a wrong answer and after a right one
(:data:`RECHECK_RATES`), so a model that learned these traces ends its thinking after its first pass,
blind spot and all, and a "Wait" forced by budget forcing starts the recheck it learned: that is what
s1's extensions do. Everything is seeded; the same seed gives the same pool and test set.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KEYS = "abcdefghij"
TRACE_KINDS = ("clean", "confirm", "corrected", "uncorrected")
# How often a first pass is rechecked: after a wrong answer ("slip") and after a right one ("none").
# Both well below one half (curation keeps long traces, so more of the rechecked ones), so greedy
# decoding ends the thinking after the first pass whatever it holds.
RECHECK_RATES = {"slip": 0.3, "none": 0.15}
# How often a rechecked trace confirms once more (``Wait, So <answer>.``), so a second forced "Wait"
# is familiar too.
SECOND_RECHECK = 0.35


@dataclass(frozen=True)
class Problem:
    """One synthetic problem. ``difficulty`` sets its number of items and so the trace length.

    ``answer`` is the right answer; ``attempt`` is the teacher's (the trace's last ``So <x>.``), which
    differs from ``answer`` exactly when ``kind == "uncorrected"``.
    """

    domain: str
    question: str
    trace: str
    answer: str
    attempt: str
    difficulty: int
    kind: str


@dataclass(frozen=True)
class Family:
    """A task family as a state machine: items, a step rule, the first pass's blind spot."""

    lead: str
    """The question's lead-in, e.g. ``Sum mod 10``."""
    items: Callable[[random.Random, int], list[Any]]
    """The items of a problem of this difficulty."""
    start: int
    step: Callable[[int, Any, int], int]
    """The next running result from the previous one, the item and its position."""
    blind: Callable[[int, Any, int, Any], int | None]
    """The first pass's blind spot: its (wrong) result where the spot fires, else ``None``; from the
    previous result, the item, its position and the previous item. It fires only where it changes the
    result, so every firing is a slip."""
    show_item: Callable[[Any], str]


FAMILIES: dict[str, Family] = {
    # The running total of the digits. Blind spot: the carry is dropped (when the ones digit passes
    # 9, the tens digit stays).
    "addition": Family(
        "Add",
        lambda rng, d: [rng.randrange(10) for _ in range(d + 2)],
        0,
        lambda s, x, i: s + x,
        lambda s, x, i, prev: s - s % 10 + (s + x) % 10 if s % 10 + x >= 10 else None,
        str,
    ),
    # Blind spot: an x right after an x is not counted.
    "counting": Family(
        "How many x",
        lambda rng, d: [rng.choice("xyz") for _ in range(d + 3)],
        0,
        lambda c, w, i: c + (w == "x"),
        lambda c, w, i, prev: c if w == prev == "x" else None,
        str,
    ),
    # Blind spot: a new maximum one above the old one (after the first item) is missed.
    "maximum": Family(
        "Max",
        lambda rng, d: [rng.randrange(10) for _ in range(d + 2)],
        0,
        lambda m, x, i: max(m, x),
        lambda m, x, i, prev: m if i > 0 and x == m + 1 else None,
        str,
    ),
    # Blind spot: a digit written twice in a row is added once.
    "modular": Family(
        "Sum mod 10",
        lambda rng, d: [rng.randrange(10) for _ in range(d + 2)],
        0,
        lambda r, x, i: (r + x) % 10,
        lambda r, x, i, prev: r if x == prev != 0 else None,
        str,
    ),
}
# One line per family for the report: what its first pass misses.
SLIPS = {
    "addition": "drops the carry when the ones digit passes 9",
    "counting": "misses an x right after an x",
    "maximum": "misses a new maximum one above the old one",
    "modular": "adds a digit written twice in a row once",
}


def passes(family: str, items: list[Any]) -> tuple[list[int], list[int]]:
    """The running results of the right pass and of the teacher's first pass (blind spot in)."""
    fam = FAMILIES[family]
    right, first = [], []
    r = f = fam.start
    prev: Any = None
    for i, x in enumerate(items):
        r = fam.step(r, x, i)
        missed = fam.blind(f, x, i, prev)
        f = fam.step(f, x, i) if missed is None else missed
        right.append(r)
        first.append(f)
        prev = x
    return right, first


def make_problem(domain: str, rng: random.Random, difficulty: int) -> Problem:
    fam = FAMILIES[domain]
    items = fam.items(rng, difficulty)
    right, first = passes(domain, items)

    def steps(states: list[int]) -> str:
        return "\n".join(f"{k}{fam.show_item(x)} {s}." for k, x, s in zip(KEYS, items, states, strict=False))

    question = f"{fam.lead}: {' '.join(k + fam.show_item(x) for k, x in zip(KEYS, items, strict=False))}."
    answer, attempt = str(right[-1]), str(first[-1])
    slipped = attempt != answer
    trace = f"{steps(first)}\nSo {attempt}."
    if rng.random() < RECHECK_RATES["slip" if slipped else "none"]:
        kind = "corrected" if slipped else "confirm"
        trace += f"\nWait, {steps(right)}\nSo {answer}."
        if rng.random() < SECOND_RECHECK:
            trace += f"\nWait, So {answer}."
        attempt = answer
    else:
        kind = "uncorrected" if slipped else "clean"
    return Problem(domain, question, trace, answer, attempt, difficulty, kind)


def make_problems(n: int, seed: int, max_difficulty: int = 5) -> list[Problem]:
    """``n`` problems, families in turn, difficulties uniform in 1..max_difficulty."""
    if not 1 <= max_difficulty <= len(KEYS) - 3:
        raise ValueError(
            f"max_difficulty must be 1 to {len(KEYS) - 3} (one key per item), got {max_difficulty}"
        )
    rng = random.Random(seed)
    names = list(FAMILIES)
    return [make_problem(names[i % len(names)], rng, rng.randint(1, max_difficulty)) for i in range(n)]
