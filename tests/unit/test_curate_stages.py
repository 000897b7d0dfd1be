"""Each stage's rule on small, hand-made rows."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from s1kit.curate import correctness, difficulty, diversity, domains, quality
from s1kit.curate.dedup import NearDupConfig, exact_dedup, near_dedup, trace_length
from s1kit.curate.schema import Row


def row(i: int, **kw: object) -> Row:
    base: dict[str, object] = {"question": f"question {i}", "answer": "1"}
    base.update(kw)
    return Row(row=i, file="f", line=i + 1, **base)  # type: ignore[arg-type]


def test_quality_rules() -> None:
    rows = [
        row(0),
        row(1, question=None),
        row(2, answer=None),
        row(3, trace="Error code: 429 - rate limit exceeded"),
        row(4, question="As shown in the figure below, find x."),
        row(5, question="Find the area. [asy] draw((0,0)--(1,1)); [/asy]"),
        row(6, question="Find the area. [asy] draw((0,0)--(1,1)); [/asy]", source="MATH"),
        row(7, question="Let f(x)=x^2. (1) Find f(2). (2) Find f(3)."),
        row(8, question="Compute f(a) + f(b) for a=1."),
        row(9, question="已知函数。（1）求值；（2）求最小值"),
    ]
    cfg = quality.QualityConfig(asy_sources=("math",))
    got = {r: reason for r, (reason, _) in quality.quality_reasons(rows, cfg).items()}
    assert got == {
        1: "missing question",
        2: "missing answer",
        3: "API-error text in trace",
        4: "references an image",
        5: "[asy] diagram (source not in --asy-sources)",
        7: "numbered sub-problems",
        9: "numbered sub-problems",
    }
    off = quality.QualityConfig(disabled={"numbered_subproblems", "asy"})
    assert set(quality.quality_reasons(rows, off)) == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="unknown quality rule"):
        quality.quality_reasons(rows, quality.QualityConfig(disabled={"nope"}))


def test_trace_correctness_uses_eval_grading() -> None:
    rows = [
        row(0, trace="... so the answer is \\boxed{\\frac{1}{2}}", answer="0.5"),
        row(1, trace="thinking <|im_start|>answer\nFinal Answer: 7", answer="8"),
        row(2, trace="a reference solution ending in prose with the number 3", answer="4"),
        row(3, trace="The answer is \\boxed{B}", answer="B"),
        row(4, trace=None),
    ]
    res = correctness.check_traces(rows)
    assert set(res.drops) == {1}
    assert res.drops[1][1]["trace_answer"] == "7"
    assert res.graded == 3 and res.ungraded == {"no stated final answer": 1, "no trace/answer": 1}
    strict = correctness.check_traces(rows, strict=True)
    assert set(strict.drops) == {1, 2}


def test_difficulty_rules() -> None:
    rows = [
        row(0, correct={"q7": True, "q32": False}),
        row(1, correct={"q7": False, "q32": False}),
        row(2, correct={"q7": True, "q32": True}, source="AIME 2020"),
        row(3, source="MATH", trace_tokens=5000),
        row(4, source="MATH", trace_tokens=6000, correct={"q7": False}),
    ]
    cfg = difficulty.DifficultyConfig(keep_sources=("aime",), min_trace_tokens={"math": 5600})
    res = difficulty.select_difficult(rows, cfg)
    assert set(res.drops) == {0, 3} and res.must_keep == {2}
    res_all = difficulty.select_difficult(rows, difficulty.DifficultyConfig(rule="all"))
    assert set(res_all.drops) == {2}
    with pytest.raises(ValueError, match="without a correctness column"):
        difficulty.select_difficult(rows, difficulty.DifficultyConfig(solved_by=("gpt",)))
    assert difficulty.parse_min_trace_tokens(["math=5600"]) == {"math": 5600}
    with pytest.raises(ValueError, match="SOURCE=TOKENS"):
        difficulty.parse_min_trace_tokens(["math"])


def test_diversity_sampling_is_seeded_uniform_over_domains_and_favours_long_traces() -> None:
    rows = [row(i, domain=f"d{i % 4}", trace_tokens=i) for i in range(400)]

    def pick(seed: int) -> list[int]:
        return [r.row for r in diversity.diversity_sample(rows, 40, seed=seed, length=trace_length)[0]]

    assert pick(3) == pick(3) and pick(3) != pick(4)
    # Uniform domains: with 4 domains of 100 rows, each gets about a quarter over many draws.
    counts = Counter(rows[i].domain for s in range(30) for i in pick(s))
    assert all(abs(c / 1200 - 0.25) < 0.05 for c in counts.values())
    # 2^-rank: the longest row of a domain is picked first about half the times its domain is drawn.
    firsts = Counter()
    for s in range(400):
        sel, _ = diversity.diversity_sample(rows, 1, seed=s, length=trace_length)
        firsts[sel[0].row in {396, 397, 398, 399}] += 1
    assert 0.4 < firsts[True] / 400 < 0.6
    sel, why = diversity.diversity_sample(rows, 5, seed=0, length=trace_length, must_keep={7, 9})
    assert [r.row for r in sel[:2]] == [7, 9] and why[7] == "kept by keep-all source"
    with pytest.raises(ValueError, match="raise `k` or narrow `keep_sources`") as e:
        diversity.diversity_sample(rows, 1, seed=0, length=trace_length, must_keep={1, 2})
    from s1kit.curate.cli import FLAGS
    from s1kit.errors import ConfigFieldError

    assert isinstance(e.value, ConfigFieldError)  # the library names config fields, the CLI its flags:
    assert "raise --k or narrow --keep-source" in e.value.for_flags(FLAGS)
    assert len(diversity.diversity_sample(rows[:3], 10, seed=0, length=trace_length)[0]) == 3


def test_rank_weights_are_exact() -> None:
    rng = random.Random(0)
    draws = Counter(diversity._pick_rank(rng, 3) for _ in range(70_000))
    for r, p in enumerate([4 / 7, 2 / 7, 1 / 7]):
        assert abs(draws[r] / 70_000 - p) < 0.01


def test_domains_by_keywords() -> None:
    assert (
        domains.classify_keywords("Find the probability that two dice show a sum of 7.")
        == "60 Probability theory"
    )
    assert domains.classify_keywords("In triangle ABC, the angle bisector meets the circle") == "51 Geometry"
    assert (
        domains.classify_keywords("Find all primes p such that p^2+2 is prime; integer") == "11 Number theory"
    )
    assert domains.classify_keywords("xyzzy") == domains.GENERAL
    assert domains.classify_keywords("已知矩阵A的特征值") == "15 Linear algebra; matrix theory"


def test_dedup_stages_keep_rule() -> None:
    words = " ".join(f"w{i}" for i in range(40))
    rows = [
        row(0, question=words, trace="short"),
        row(1, question=words.upper(), trace="a much longer trace " * 5),
        row(2, question=words + " extra", trace="mid trace here"),
        row(3, question="unrelated question"),
    ]
    assert {r: d["kept_row"] for r, (_, d) in exact_dedup(rows).items()} == {1: 0}
    assert set(exact_dedup(rows, keep="longest_trace")) == {0}
    near = near_dedup(rows, NearDupConfig())
    assert set(near) == {1, 2} and near[2][1]["kept_row"] == 0
    with pytest.raises(ValueError, match="keep="):
        exact_dedup(rows, keep="random")
