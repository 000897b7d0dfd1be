"""The demo's synthetic reasoning tasks: question, step-by-step trace, answer.

Four task families act as domains. In each, the trace works the answer out one small step at a time
and grows with difficulty, so a model trained on them needs its thinking tokens: cut the trace short
and it has to guess. Everything is seeded; the same seed gives the same pool and test set.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Problem:
    """One synthetic problem. ``difficulty`` drives the trace length."""

    domain: str
    question: str
    trace: str
    answer: str
    difficulty: int


def addition(rng: random.Random, difficulty: int) -> Problem:
    """Add two numbers of ``difficulty + 1`` digits, column by column with carries."""
    digits = difficulty + 1
    a = rng.randrange(10 ** (digits - 1), 10**digits)
    b = rng.randrange(10 ** (digits - 1), 10**digits)
    steps, carry, out = [], 0, []
    for x, y in zip(reversed(str(a)), reversed(str(b)), strict=True):
        s = int(x) + int(y) + carry
        steps.append(f"{x}+{y}+{carry}={s}, write {s % 10} carry {s // 10}.")
        out.append(str(s % 10))
        carry = s // 10
    if carry:
        steps.append(f"write {carry}.")
        out.append(str(carry))
    total = "".join(reversed(out))
    assert int(total) == a + b
    return Problem("addition", f"What is {a} + {b}?", " ".join(steps) + f" So {total}.", total, difficulty)


def counting(rng: random.Random, difficulty: int) -> Problem:
    """Count one letter in a random word of ``3 * difficulty + 3`` letters, letter by letter."""
    n = 3 * difficulty + 3
    target = rng.choice(LETTERS[:6])
    word = "".join(rng.choice(LETTERS[:6]) for _ in range(n))
    count, steps = 0, []
    for ch in word:
        count += ch == target
        steps.append(f"{ch} {count}")
    return Problem(
        "counting",
        f"How many {target} in {word}?",
        ", ".join(steps) + f". So {count}.",
        str(count),
        difficulty,
    )


def sorting(rng: random.Random, difficulty: int) -> Problem:
    """Sort ``difficulty + 2`` digits by repeatedly taking the smallest."""
    xs = [rng.randrange(10) for _ in range(difficulty + 2)]
    left, done, steps = list(xs), [], []
    while left:
        m = min(left)
        left.remove(m)
        done.append(m)
        steps.append(f"take {m}, have {' '.join(map(str, done))}.")
    ans = " ".join(map(str, done))
    return Problem(
        "sorting", f"Sort {' '.join(map(str, xs))}.", " ".join(steps) + f" So {ans}.", ans, difficulty
    )


def modular(rng: random.Random, difficulty: int) -> Problem:
    """Sum ``difficulty + 2`` digits modulo 10, keeping a running remainder."""
    xs = [rng.randrange(10) for _ in range(difficulty + 2)]
    r, steps = 0, []
    for x in xs:
        r2 = (r + x) % 10
        steps.append(f"{r}+{x} is {r2}.")
        r = r2
    q = f"What is {' + '.join(map(str, xs))} mod 10?"
    return Problem("modular", q, " ".join(steps) + f" So {r}.", str(r), difficulty)


FAMILIES: dict[str, Callable[[random.Random, int], Problem]] = {
    "addition": addition,
    "counting": counting,
    "sorting": sorting,
    "modular": modular,
}


def make_problems(n: int, seed: int, max_difficulty: int = 5) -> list[Problem]:
    """``n`` problems, families in turn, difficulties uniform in 1..max_difficulty."""
    rng = random.Random(seed)
    names = list(FAMILIES)
    return [FAMILIES[names[i % len(names)]](rng, rng.randint(1, max_difficulty)) for i in range(n)]
