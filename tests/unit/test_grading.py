"""Answer extraction and equivalence: tricky pairs in both directions, AIME integers, GPQA letters."""

from __future__ import annotations

import threading
import time

import pytest

from s1kit.eval.grading import (
    GradingPool,
    answer_segment,
    as_integer,
    extract_answer,
    grade_batch,
    is_equivalent,
    last_boxed,
)

# --------------------------------------------------------------------------------------------- extraction


def test_answer_segment_splits_after_last_delimiter() -> None:
    s1 = "<|im_start|>think\nmaybe \\boxed{1}<|im_start|>answer\nFinal Answer: \\boxed{2}"
    assert answer_segment(s1) == "\nFinal Answer: \\boxed{2}"
    tags = "<think>so \\boxed{7}</think>The answer is \\boxed{8}."
    assert answer_segment(tags) == "The answer is \\boxed{8}."
    assert answer_segment("no delimiter \\boxed{3}") == "no delimiter \\boxed{3}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        (
            "\\boxed{1} then \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
            "\\left( 3, \\frac{\\pi}{2} \\right)",
        ),
        ("nested \\boxed{\\sqrt{\\frac{a}{b^{2}}}} end", "\\sqrt{\\frac{a}{b^{2}}}"),
        ("escaped braces \\boxed{\\{1,2\\}}", "\\{1,2\\}"),
        ("brace-less \\boxed 5$ here", "5"),
        ("framed $\\framebox{204}$ minutes", "204"),
        ("truncated: \\boxed{12} and later \\boxed{\\frac{3", "12"),
        ("no box at all", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "task", "expected"),
    [
        # the thinking's box is ignored once the answer delimiter appears
        ("<|im_start|>think\n\\boxed{5}<|im_start|>answer\nFinal Answer: 7", "math500", "7"),
        ("<think>\\boxed{5}</think>\n**Final Answer:** $\\frac{3}{4}$.", "math500", "\\frac{3}{4}"),
        ("Final Answer: The final answer is $\\boxed{42}$. I hope it is correct.", "math500", "42"),
        ("... so x = 3 and then y = 1,024 apples", "math500", "1024"),
        ("the ratio is 3/4", "math500", "3/4"),
        ("the value is -2.5.", "amc23", "-2.5"),
        ("nothing numeric here", "aime24", None),
        ("<|im_start|>answer\nFinal Answer: \\textbf{(073)}", "aime24", "\\textbf{(073)}"),
    ],
)
def test_extract_answer_math(text: str, task: str, expected: str | None) -> None:
    assert extract_answer(text, task) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is (B).", "B"),
        ("After all that, the correct answer is C", "C"),
        ("Answer: D", "D"),
        ("**Answer:** A", "A"),
        ("Final Answer: (C) 4.2 eV", "C"),
        ("so we pick $\\boxed{B}$", "B"),
        ("\\boxed{\\text{(A)}}", "A"),
        ("Options (A) and (B) fail, so (D).", "D"),
        ("<think>answer is A</think>\nThe correct option is B.", "B"),
        ("Between the choices...\nC\n", "C"),
        ("A Boltzmann argument gives nothing conclusive", None),
    ],
)
def test_extract_answer_gpqa(text: str, expected: str | None) -> None:
    assert extract_answer(text, "gpqa") == expected


def test_unknown_task_is_rejected_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match="math500"):
        extract_answer("\\boxed{1}", "math5000")
    with pytest.raises(ValueError, match="aime24"):
        is_equivalent("1", "1", "aime")


# ---------------------------------------------------------------------------------------------- grading

# (prediction, gold) pairs that must grade equivalent, in both directions.
EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"),
    ("\\frac12", "1/2"),
    ("\\dfrac{3}{4}", "\\frac{3}{4}"),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
    ("2\\sqrt{3}", "\\sqrt{12}"),
    ("[1, 2)", "[1,2)"),
    ("(-\\infty, 3]", "(-\\infty,3]"),
    ("10\\text{ inches}", "10"),
    ("90^\\circ", "90"),
    ("25\\%", "25"),
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\text{Evelyn}", "\\text{Evelyn}"),
    ("x^2+2x+1", "(x+1)^2"),
    ("3.0", "3"),
    ("\\{1, 2\\}", "\\{2, 1\\}"),
    ("1,000", "1000"),
    ("\\$18.90", "18.90"),
]

# Pairs that must grade NOT equivalent, in both directions.
NOT_EQUIVALENT = [
    ("\\frac{1}{3}", "0.3"),
    ("\\sqrt{2}", "\\sqrt{3}"),
    ("(1, 2]", "[1, 2)"),
    ("[1, 2]", "(1, 2)"),
    ("(1, 2)", "(2, 1)"),
    ("91^\\circ", "90"),
    ("\\text{Evelyn}", "\\text{Bob}"),
    ("x^2+1", "(x+1)^2"),
    ("\\frac{\\pi}{3}", "\\frac{\\pi}{2}"),
    ("12", "-12"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent_pairs_both_directions(a: str, b: str) -> None:
    assert is_equivalent(a, b, "math500")
    assert is_equivalent(b, a, "math500")


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_not_equivalent_pairs_both_directions(a: str, b: str) -> None:
    assert not is_equivalent(a, b, "math500")
    assert not is_equivalent(b, a, "math500")


@pytest.mark.parametrize(
    ("pred", "gold", "ok"),
    [
        ("033", "33", True),
        ("33.0", "33", True),
        ("\\textbf{(073)}", "73", True),
        ("\\mathbf{127} ", "127", True),
        ("33.5", "33", False),
        ("34", "33", False),
        ("\\frac{66}{2}", "33", False),  # AIME answers are written as integers
        (None, "33", False),
    ],
)
def test_aime_integer_grading(pred: str | None, gold: str, ok: bool) -> None:
    assert is_equivalent(pred, gold, "aime24") is ok


def test_amc_accepts_float_golds_and_falls_back_to_math() -> None:
    assert is_equivalent("27", "27.0", "amc23")
    assert not is_equivalent("28", "27.0", "amc23")
    assert is_equivalent("\\frac{1}{2}", "0.5", "amc23")


def test_gpqa_letter_grading() -> None:
    assert is_equivalent("B", "B", "gpqa")
    assert is_equivalent("(b)", "B", "gpqa")
    assert not is_equivalent("A", "B", "gpqa")
    with pytest.raises(ValueError, match="letters"):
        is_equivalent("A", "4.2 eV", "gpqa")


def test_as_integer() -> None:
    assert as_integer("$1{,}000$") == 1000
    assert as_integer("-007") == -7
    assert as_integer("1.5") is None
    assert as_integer("x") is None


# ---------------------------------------------------------------------------------- pool and threading


def test_is_equivalent_off_the_main_thread_uses_the_pool() -> None:
    out: list[bool] = []
    t = threading.Thread(target=lambda: out.extend([is_equivalent("\\frac{2}{4}", "0.5", "math500")]))
    t.start()
    t.join(timeout=120)
    assert out == [True]


def test_pool_kills_a_pathological_item_and_keeps_going() -> None:
    # 10^(10^10) vs 1 keeps sympy busy for many seconds; the hard limit must end it and the worker that
    # ran it must be replaced, with the items after it still graded.
    items = [
        ("\\frac{1}{2}", "0.5", "math500"),
        ("10^{10^{10}}", "1", "math500"),
        ("\\sqrt{4}", "2", "math500"),
        ("3", "4", "math500"),
    ]
    t0 = time.monotonic()
    with GradingPool(workers=1, timeout_s=1.0, chunk_size=4) as pool:
        results = pool.grade(items)
        restarts = pool.restarts
    elapsed = time.monotonic() - t0
    assert [r.correct for r in results] == [True, False, True, False]
    assert results[1].timed_out
    assert not any(r.timed_out for i, r in enumerate(results) if i != 1)
    assert restarts == 1
    assert elapsed < 60  # two worker start-ups plus one second of limit, never sympy's full run


def test_grade_batch_serial_and_parallel_agree() -> None:
    preds = ["\\frac{1}{2}", "0.3", None, "2\\sqrt{3}", "5"]
    golds = ["0.5", "\\frac{1}{3}", "1", "\\sqrt{12}", "5"]
    serial = [r.correct for r in grade_batch(preds, golds, "math500", workers=0)]
    parallel = [r.correct for r in grade_batch(preds, golds, "math500", workers=2)]
    assert serial == parallel == [True, False, False, True, True]
    with pytest.raises(ValueError, match="equal length"):
        grade_batch(preds, golds[:2], "math500")
