"""The demo end to end at its small size: real curate, two-process FSDP training, eval, report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from s1kit.demo.tasks import FAMILIES, make_problems
from s1kit.demo.tokenizer import build_char_tokenizer


def test_tasks_are_seeded_and_traces_grow_with_difficulty() -> None:
    a, b = make_problems(400, seed=3), make_problems(400, seed=3)
    assert a == b and {p.domain for p in a} == set(FAMILIES)
    assert a != make_problems(400, seed=4)
    for fam in FAMILIES:
        # The reasoning before any recheck grows with difficulty.
        by_level = {
            d: [len(p.trace.split("\nWait")[0]) for p in a if p.domain == fam and p.difficulty == d]
            for d in (1, 5)
        }
        assert max(by_level[1]) < min(by_level[5]), fam
    rechecked = [p for p in a if "\nWait, " in p.trace]
    assert 0.15 < len(rechecked) / len(a) < 0.45
    for p in a:
        # Every step's running result leads to the stated answer, rechecks included.
        assert p.trace.endswith(f" So {p.answer}."), p
        assert all(part.endswith(f" So {p.answer}.") for part in p.trace.split("\nWait, ")), p
    with pytest.raises(ValueError, match="max_difficulty"):
        make_problems(4, seed=0, max_difficulty=8)


def test_task_answers_are_right() -> None:
    import random

    from s1kit.demo.tasks import make_problem

    rng = random.Random(0)
    for _ in range(200):
        p = make_problem("addition", rng, rng.randint(1, 5))
        cols = p.question.split(": ")[1].rstrip(".").split()
        a = int("".join(c[1] for c in reversed(cols)))
        b = int("".join(c[2] for c in reversed(cols)))
        assert int(p.answer) == a + b, p
        p = make_problem("modular", rng, rng.randint(1, 5))
        assert int(p.answer) == sum(int(c[1]) for c in p.question.split(": ")[1].rstrip(".").split()) % 10
        p = make_problem("counting", rng, rng.randint(1, 5))
        assert int(p.answer) == [c[1] for c in p.question.split(": ")[1].rstrip(".").split()].count("x")
        p = make_problem("maximum", rng, rng.randint(1, 5))
        assert int(p.answer) == max(int(c[1]) for c in p.question.split(": ")[1].rstrip(".").split())


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
    # torch 2.15, AVX512): 4/64 = 6.2% at cap=8, 31/64 = 48.4% at cap=64.
    # Their 95% Wilson intervals over the 64 problems, [2.5%, 15.0%] and [36.6%, 60.4%], are far apart.
    assert hi >= lo + 0.30, points
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
    assert "## Reproducibility" in report and "95% Wilson" in report and "forced Waits do not" in report
    assert (out / "scaling.png").is_file()
    snippet = (out / "readme_snippet.md").read_text()
    assert "budget forcing by thinking cap" in snippet and results["weights_sha256"][:16] in snippet
    assert "problems solved per task family" in report
    assert json.loads((out / "curate" / "summary.json").read_text())["selected"] == demo.size.k
    again = demo.run()
    assert again["timings"] == result["timings"]  # every stage reused, none rerun
