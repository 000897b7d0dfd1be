"""The demo end to end at its small size: real curate, two-process FSDP training, eval, report."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from s1kit.demo.tasks import FAMILIES, make_problems
from s1kit.demo.tokenizer import build_char_tokenizer


def test_tasks_are_seeded_and_traces_grow_with_difficulty() -> None:
    a, b = make_problems(400, seed=3), make_problems(400, seed=3)
    assert a == b and {p.domain for p in a} == set(FAMILIES)
    assert a != make_problems(400, seed=4)
    for fam in FAMILIES:
        # The first pass (before any recheck) grows with difficulty.
        by_level = {
            d: [len(p.trace.split("\nWait")[0]) for p in a if p.domain == fam and p.difficulty == d]
            for d in (1, 5)
        }
        assert max(by_level[1]) < min(by_level[5]), fam
    rechecked = [p for p in a if "\nWait, " in p.trace]
    assert 0.1 < len(rechecked) / len(a) < 0.4
    for p in a:
        # Every pass ends with its answer line; the trace's last one is the teacher's attempt.
        assert p.trace.endswith((f"\nSo {p.attempt}.", f"\nWait, So {p.attempt}.")), p
        assert all(re.search(r"(^|\n)So \d+\.$", part) for part in p.trace.split("\nWait, ")), p
    for bad in (0, 8):
        with pytest.raises(ValueError, match="max_difficulty must be 1 to 7"):
            make_problems(4, seed=0, max_difficulty=bad)


def _items(question: str) -> list[str]:
    return [c[1:] for c in question.split(": ")[1].rstrip(".").split()]


def _right(domain: str, items: list[str]) -> list[int]:
    """The running results, recomputed from the question's items."""
    out, r = [], 0
    for x in items:
        if domain == "addition":
            r += int(x)
        elif domain == "counting":
            r += x == "x"
        elif domain == "maximum":
            r = max(r, int(x))
        else:
            r = (r + int(x)) % 10
        out.append(r)
    return out


def _blind(domain: str, items: list[str]) -> list[int]:
    """The first pass as the module docstring describes its blind spots, recomputed independently."""
    out, r = [], 0
    for i, x in enumerate(items):
        prev = items[i - 1] if i else None
        if domain == "addition":
            r = r // 10 * 10 + (r + int(x)) % 10  # the carry is dropped, the tens stay
        elif domain == "counting":
            r += x == "x" and prev != "x"
        elif domain == "maximum":
            r = r if i > 0 and int(x) == r + 1 else max(r, int(x))
        else:
            r = r if x == prev != "0" else (r + int(x)) % 10
        out.append(r)
    return out


def _steps(part: str) -> list[tuple[str, int]]:
    """The ``<key><item> <result>.`` lines of one pass, as (item, result)."""
    return [(m.group(2), int(m.group(3))) for m in re.finditer(r"(?m)^(?:Wait, )?([a-j])(\w) (\d+)\.$", part)]


def test_traces_slip_at_the_blind_spot_and_rechecks_correct_it() -> None:
    from s1kit.demo.tasks import TRACE_KINDS

    probs = make_problems(2000, seed=11)
    seen = {(p.domain, p.kind) for p in probs}
    assert seen == {(f, k) for f in FAMILIES for k in TRACE_KINDS}  # every family shows every kind
    for p in probs:
        items = _items(p.question)
        right, first = _right(p.domain, items), _blind(p.domain, items)
        assert p.answer == str(right[-1]), p
        passes = p.trace.split("\nWait, ")
        # The first pass: every item in order, every result the blind spot's.
        assert _steps(passes[0]) == list(zip(items, first, strict=True)), p
        slipped = first[-1] != right[-1]  # a slip the maximum hides later is no wrong answer
        assert (
            p.kind
            == {
                (True, False): "uncorrected",
                (True, True): "corrected",
                (False, False): "clean",
                (False, True): "confirm",
            }[(slipped, len(passes) > 1)]
        ), p
        assert p.attempt == (str(first[-1]) if p.kind == "uncorrected" else p.answer), p
        if len(passes) > 1:
            # A recheck redoes every step without the blind spot; a second one restates its answer.
            assert _steps(passes[1]) == list(zip(items, right, strict=True)), p
            assert passes[1].endswith(f"\nSo {p.answer}."), p
        if len(passes) > 2:
            assert passes[2:] == [f"So {p.answer}."], p


def test_char_tokenizer_round_trips_and_renders_the_s1_template() -> None:
    probs = make_problems(40, seed=0)
    tok = build_char_tokenizer(p.question + p.trace for p in probs)
    text = probs[0].question + " Wait, Final Answer: " + probs[0].answer
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) == len(text) and tok.decode(ids) == text
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.convert_tokens_to_ids("<|im_start|>") != tok.unk_token_id


def test_wilson_interval_matches_known_values() -> None:
    from s1kit.demo.scaling import Point, cell, wilson

    # Wilson 95% for 8/10 (Newcombe 1998, table I: 0.4902, 0.9433) and at the edges.
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 20)[0] == 0.0 and wilson(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)
    assert wilson(20, 20)[1] == 1.0 and wilson(20, 20)[0] == pytest.approx(0.8389, abs=1e-4)
    # 60/120 is symmetric about one half: 0.5 -/+ z sqrt(1/480 + z^2/57600) / (1 + z^2/120) = 0.0881.
    lo, hi = wilson(60, 120)
    assert lo == pytest.approx(0.4119, abs=1e-4) and hi == pytest.approx(0.5881, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="k <= n"):
        wilson(5, 4)
    assert cell(Point("budget_forcing", "cap=64", 10, 8, 40.0)) == "8/10 = 80.0% [49.0%, 94.3%]"


def test_t_interval_and_drops_beyond_noise() -> None:
    from s1kit.demo.scaling import Point, drops_beyond_noise, t_interval

    # Three seeds 0.8, 0.9, 1.0: mean 0.9, sd 0.1, half-width t(0.975, 2) * 0.1 / sqrt(3) = 0.2484.
    m, lo, hi = t_interval([0.8, 0.9, 1.0])
    assert m == pytest.approx(0.9) and lo == pytest.approx(0.9 - 0.24841, abs=1e-5) and hi > 1.0
    with pytest.raises(ValueError, match="2 to 11"):
        t_interval([0.5])
    a, b = Point("bf", "cap=8", 100, 60, 10.0), Point("bf", "cap=16", 100, 58, 20.0)
    c = Point("bf", "wait=1", 100, 30, 40.0)
    assert drops_beyond_noise([a, b]) == []  # 58% after 60%: within noise
    assert drops_beyond_noise([a, b, c]) == [(a, c), (b, c)]  # 30% is below both, intervals apart


def test_make_deterministic_pins_threads_and_kernels() -> None:
    import torch

    from s1kit.demo.deterministic import EVAL_THREADS, TRAIN_THREADS, make_deterministic

    assert TRAIN_THREADS >= 1 and EVAL_THREADS >= 1
    threads, flag = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        got = make_deterministic(1)
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        assert got == {
            "threads": 1,
            "deterministic_algorithms": True,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        }
        with pytest.raises(ValueError, match="threads"):
            make_deterministic(0)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(flag)


def test_demo_trains_under_the_deterministic_entry_point(tmp_path: Path) -> None:
    from s1kit.demo.pipeline import Demo

    # The training command the demo launches: s1kit train's own arguments, after the set-up.
    demo = Demo(tmp_path, "small", seed=0, nproc=2, progress=False)
    args = demo.train_args()
    assert args[0] == "train" and "--seed" in args
    # The entry point runs s1kit's CLI after make_deterministic: a bad train argument is s1kit's error.
    import subprocess
    import sys

    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "python"), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        [sys.executable, "-m", "s1kit.demo.deterministic", "train", "--model", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_small_demo_thinking_helps_and_rerun_reuses_stages(tmp_path: Path) -> None:
    import hashlib

    from s1kit.demo.pipeline import Demo

    demo = Demo(tmp_path / "demo", "small", seed=0, nproc=2, progress=False)
    result = demo.run()
    out = tmp_path / "demo"
    with (out / "eval" / "summary.csv").open() as f:
        points = {(r["method"], r["label"]): float(r["accuracy"]) for r in csv.DictReader(f)}
    caps = sorted(int(label[4:]) for m, label in points if m == "budget_forcing" and label.startswith("cap="))
    lo, hi = points[("budget_forcing", f"cap={caps[0]}")], points[("budget_forcing", f"cap={caps[-1]}")]
    # Measured at seed 0 on the small size (deterministic since the demo pins threads and kernels;
    # torch 2.15, AVX512): 16/64 = 25.0% at cap=8, 40/64 = 62.5% at cap=64, 47/64 = 73.4% with one
    # forced Wait (which mended problems whose first pass slipped at the taught blind spot).
    # The caps' 95% Wilson intervals over the 64 problems, [16.0%, 36.9%] and [50.3%, 73.4%], are apart.
    assert hi >= lo + 0.30, points
    assert points[("budget_forcing", "wait=1")] > hi, points  # the forced recheck raises accuracy
    # The truncation baseline at the smallest budget (a guess from a cut trace) is below the largest cap too.
    assert points[("truncation", f"cut={caps[0]}")] < hi, points
    results = json.loads((out / "results.json").read_text())
    weights = (out / "train" / "hf" / "model.safetensors").read_bytes()
    assert results["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    n = results["points"][0]["problems"]
    assert {(p["method"], p["label"]): p["correct"] / n for p in results["points"]} == pytest.approx(points)
    report = (out / "report.md").read_text()
    assert results["weights_sha256"] in report
    assert hashlib.sha256((out / "results.json").read_bytes()).hexdigest() in report
    assert "## 1-2. Pool and curation" in report and (out / "loss.png").is_file()
    assert "## Reproducibility" in report and "95% Wilson" in report
    assert "Forced `Wait`s against the largest cap" in report and "mended" in report
    assert "first pass's blind spot" in report and "corrected (pool / selected)" in report
    assert (out / "scaling.png").is_file()
    snippet = (out / "readme_snippet.md").read_text()
    assert "budget forcing by thinking cap" in snippet and results["weights_sha256"][:16] in snippet
    assert "problems solved per task family" in report
    assert json.loads((out / "curate" / "summary.json").read_text())["selected"] == demo.size.k
    again = demo.run()
    assert again["timings"] == result["timings"]  # every stage reused, none rerun
