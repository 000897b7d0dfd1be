"""The demo's synthetic reasoning tasks: question, step-by-step trace, answer.

Four task families act as domains. A question lists keyed items (``a3 b7 c2``: item ``a`` is 3, item
``b`` is 7, ...); the trace visits them in key order, copies each item and writes the running result
(a sum mod 10, a count, a maximum, a column sum with its carry), then ``So <answer>.``. Every step
reads one item of the question and the previous step, which a small transformer learns within minutes
on a CPU; the answer depends on every item, so a trace cut short leaves the model guessing. Difficulty
is the number of items, so traces grow with it.

Some traces (seeded) end with one or two rechecks, ``\nWait, <the last step again> So <answer>.``: the
text a forced "Wait" starts, so budget forcing's extensions are in the model's own language.
Everything is seeded; the same seed gives the same pool and test set.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

KEYS = "abcdefghij"
# Probabilities that a trace ends with one recheck, and with two: most traces end without one, so a
# model decoding greedily ends its thinking without rechecking unless budget forcing says "Wait".
RECHECK_RATES = (0.2, 0.1)


@dataclass(frozen=True)
class Problem:
    """One synthetic problem. ``difficulty`` sets its number of items and so the trace length."""

    domain: str
    question: str
    trace: str
    answer: str
    difficulty: int


def _keyed(items: list[str]) -> str:
    return " ".join(k + x for k, x in zip(KEYS, items, strict=False))


def modular(rng: random.Random, difficulty: int) -> tuple[str, list[str], str]:
    """Sum ``difficulty + 2`` digits modulo 10 with a running remainder."""
    xs = [str(rng.randrange(10)) for _ in range(difficulty + 2)]
    r, steps = 0, []
    for k, x in zip(KEYS, xs, strict=False):
        r = (r + int(x)) % 10
        steps.append(f"{k}{x} {r}.")
    return f"Sum mod 10: {_keyed(xs)}.", steps, str(r)


def counting(rng: random.Random, difficulty: int) -> tuple[str, list[str], str]:
    """Count the x among ``difficulty + 3`` letters x, y and z, one letter at a time."""
    ws = [rng.choice("xyz") for _ in range(difficulty + 3)]
    c, steps = 0, []
    for k, w in zip(KEYS, ws, strict=False):
        c += w == "x"
        steps.append(f"{k}{w} {c}.")
    return f"How many x: {_keyed(ws)}.", steps, str(c)


def maximum(rng: random.Random, difficulty: int) -> tuple[str, list[str], str]:
    """The largest of ``difficulty + 2`` digits, with the running maximum."""
    xs = [str(rng.randrange(10)) for _ in range(difficulty + 2)]
    m, steps = 0, []
    for k, x in zip(KEYS, xs, strict=False):
        m = max(m, int(x))
        steps.append(f"{k}{x} {m}.")
    return f"Max: {_keyed(xs)}.", steps, str(m)


def addition(rng: random.Random, difficulty: int) -> tuple[str, list[str], str]:
    """Add two ``difficulty + 1``-digit numbers given column by column (ones first), with carries."""
    cols = [(rng.randrange(10), rng.randrange(10)) for _ in range(difficulty + 1)]
    carry, steps, digits = 0, [], []
    for k, (x, y) in zip(KEYS, cols, strict=False):
        s = x + y + carry
        steps.append(f"{k}{x}{y} {s % 10}c{s // 10}.")
        digits.append(s % 10)
        carry = s // 10
    total = int("".join(str(d) for d in reversed(digits))) + carry * 10 ** len(digits)
    a = int("".join(str(x) for x, _ in reversed(cols)))
    b = int("".join(str(y) for _, y in reversed(cols)))
    assert total == a + b
    return f"Add by columns: {_keyed([f'{x}{y}' for x, y in cols])}.", steps, str(total)


FAMILIES: dict[str, Callable[[random.Random, int], tuple[str, list[str], str]]] = {
    "addition": addition,
    "counting": counting,
    "maximum": maximum,
    "modular": modular,
}


def make_problem(domain: str, rng: random.Random, difficulty: int) -> Problem:
    question, steps, answer = FAMILIES[domain](rng, difficulty)
    trace = " ".join(steps) + f" So {answer}."
    u = rng.random()
    rechecks = 2 if u < RECHECK_RATES[1] else 1 if u < sum(RECHECK_RATES) else 0
    # "\nWait": a model ending its thinking writes "\n" then the end delimiter, which budget forcing
    # replaces by "Wait"; the forced text then reads exactly like these rechecks.
    trace += f"\nWait, {steps[-1]} So {answer}." * rechecks
    return Problem(domain, question, trace, answer, difficulty)


def make_problems(n: int, seed: int, max_difficulty: int = 5) -> list[Problem]:
    """``n`` problems, families in turn, difficulties uniform in 1..max_difficulty."""
    if max_difficulty > len(KEYS) - 3:
        raise ValueError(
            f"max_difficulty must be at most {len(KEYS) - 3} (one key per item), got {max_difficulty}"
        )
    rng = random.Random(seed)
    names = list(FAMILIES)
    return [make_problem(names[i % len(names)], rng, rng.randint(1, max_difficulty)) for i in range(n)]
