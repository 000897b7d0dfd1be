"""The generating stages end to end on CPU with a tiny saved teacher on s1kit's own engine
(issue 18): model attempts inside ``curate`` (verdicts in the manifest, correctness columns read by
the difficulty stage, a grading time-out recorded as such, the cache making a rerun generate nothing)
and ``distill`` (LIMO's keep-if-correct rule, a reason per row, output ``s1kit train`` reads)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from s1kit.backends import EngineOptions
from s1kit.cli import main
from s1kit.curate import CurateConfig, load_pool, run_pipeline
from s1kit.curate.attempts import AttemptsRunner
from s1kit.distill import AttemptsConfig, BackendAttempts, DistillConfig, GenerationSettings, distill
from s1kit.distill.traces import split_generation, write_outputs
from tests.unit.tiny_teacher import QUESTIONS, SETTINGS, TOWER, answers, save_teacher

OPTIONS = EngineOptions(device="cpu", max_batch=3, max_len=512)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str | None]]:
    import torch

    torch.set_num_threads(1)
    folder = save_teacher(tmp_path_factory.mktemp("teacher"))
    said = answers(folder, QUESTIONS)
    assert all(a is not None for a in said), said  # the test needs an answer on every question
    return folder, said


def _pool(tmp: Path, said: list[str | None]) -> tuple[Path, set[int], int]:
    """Questions whose reference is the teacher's own answer on rows 0, 2, 3 (solved), TOWER on row
    4 (the teacher says "4": grading times out), a wrong number elsewhere; returns (file, solved
    rows, timeout row)."""
    solved = {0, 2, 3}
    rows = []
    for i, q in enumerate(QUESTIONS):
        ref = said[i] if i in solved else TOWER if i == 4 else "123456"
        rows.append({"id": f"q{i}", "question": q, "answer": ref})
    path = tmp / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, solved, 4


def _settings() -> GenerationSettings:
    return GenerationSettings(**SETTINGS)


def test_attempts_write_columns_verdicts_and_change_the_selection_by_the_solved_rows(
    teacher: tuple[Path, list[str | None]], tmp_path: Path
) -> None:
    folder, said = teacher
    pool_file, solved, timeout_row = _pool(tmp_path, said)
    model = str(folder)
    runner = BackendAttempts(
        AttemptsConfig(
            models=(model,),
            cache_path=tmp_path / "gen.jsonl",
            settings=_settings(),
            options=OPTIONS,
            grading_timeout_s=1.0,
        )
    )
    assert isinstance(runner, AttemptsRunner)
    cfg = CurateConfig(k=100, skip={"correctness"})
    with_attempts = run_pipeline(load_pool([pool_file]), cfg, attempts=runner)
    without = run_pipeline(load_pool([pool_file]), cfg)
    m = with_attempts.manifest
    m.check_complete()
    assert runner.stats[model].generated == len(QUESTIONS) and runner.stats[model].cached == 0
    for row in range(len(QUESTIONS)):
        expected = "correct" if row in solved else "timeout" if row == timeout_row else "wrong"
        assert m.annotations[row] == {"attempts": {model: [expected]}}, row
    for row in solved:
        d = m.decisions[row]
        assert (d.stage, d.reason, d.detail) == (
            "difficulty",
            "solved by reference model(s)",
            {"solved_by": [model]},
        )
    # The selection without attempts, less exactly the rows the attempts solved.
    assert {r.row for r in without.selected} - {r.row for r in with_attempts.selected} == solved
    assert {r.row for r in with_attempts.selected} <= {r.row for r in without.selected}
    assert all(r.correct == {model: False} for r in with_attempts.selected)
    stages = [s.stage for s in m.stages]
    assert stages.index("near_dedup") < stages.index("attempts") < stages.index("difficulty")
    note = next(s.note for s in m.stages if s.stage == "attempts")
    assert f"solved 3/{len(QUESTIONS)}" in note and "timeout 1" in note and "correct 3" in note
    # The manifest lines carry the verdicts and the model name.
    out = tmp_path / "out"
    from s1kit.curate.pipeline import write_outputs as write_curate

    write_curate(with_attempts, load_pool([pool_file]), out)
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [ln["attempts"][model][0] for ln in lines][timeout_row] == "timeout"
    assert all(set(ln["attempts"]) == {model} for ln in lines)

    # A rerun with another selection (k) generates nothing: every attempt comes from the cache.
    again = BackendAttempts(runner.cfg)
    rerun = run_pipeline(load_pool([pool_file]), CurateConfig(k=2, skip={"correctness"}), attempts=again)
    assert again.stats[model].generated == 0 and again.stats[model].cached == len(QUESTIONS)
    assert len(rerun.selected) == 2
    assert rerun.manifest.annotations == m.annotations
    cache_lines = (tmp_path / "gen.jsonl").read_text().splitlines()
    assert len(cache_lines) == len({json.loads(x)["key"] for x in cache_lines}) == len(QUESTIONS)


def test_several_attempts_per_question_are_sampled_apart(
    teacher: tuple[Path, list[str | None]], tmp_path: Path
) -> None:
    folder, said = teacher
    pool_file, _, _ = _pool(tmp_path, said)
    runner = BackendAttempts(
        AttemptsConfig(
            models=(str(folder),),
            cache_path=tmp_path / "gen.jsonl",
            attempts_per_question=3,
            settings=GenerationSettings(**{**SETTINGS, "temperature": 1.0}),
            options=OPTIONS,
            grading_timeout_s=1.0,
        )
    )
    rows = [r for r in load_pool([pool_file]).rows if r.row != 4]  # no time-out: keep it quick
    verdicts = runner.attempt(rows)
    assert all(len(v[str(folder)]) == 3 for v in verdicts.values())
    texts = [json.loads(x)["text"] for x in (tmp_path / "gen.jsonl").read_text().splitlines()]
    assert len(texts) == 3 * len(rows)
    assert len(set(texts)) > len(rows)  # three seeds per question, not one generation repeated


def test_distill_keeps_only_correct_traces_with_a_reason_per_row(
    teacher: tuple[Path, list[str | None]], tmp_path: Path
) -> None:
    folder, said = teacher
    pool_file, solved, timeout_row = _pool(tmp_path, said)
    with pool_file.open("a") as fh:
        fh.write("{broken\n")
        fh.write(json.dumps({"question": "no reference here"}) + "\n")
    cfg = DistillConfig(
        teacher=str(folder),
        cache_path=tmp_path / "gen.jsonl",
        settings=_settings(),
        options=OPTIONS,
        grading_timeout_s=1.0,
    )
    result = distill(pool_file, cfg)
    paths = write_outputs(result, tmp_path / "traced.jsonl")
    manifest = [json.loads(x) for x in paths["manifest"].read_text().splitlines()]
    assert [d["row"] for d in manifest] == list(range(len(QUESTIONS) + 2))
    kept = {d["row"] for d in manifest if d["status"] == "kept"}
    assert kept == solved
    by_row = {d["row"]: d for d in manifest}
    assert by_row[timeout_row]["reason"] == "grading timed out after 1s (answer not verified)"
    assert by_row[timeout_row]["detail"]["verdict"] == "timeout"
    assert by_row[len(QUESTIONS)]["stage"] == "load"
    assert by_row[len(QUESTIONS) + 1]["reason"] == "no question or no reference answer"
    for row in set(range(len(QUESTIONS))) - solved - {timeout_row}:
        assert by_row[row]["reason"] == "answer disagrees with the reference", by_row[row]
    traced = [json.loads(x) for x in paths["traced"].read_text().splitlines()]
    assert [t["input_row"] for t in traced] == sorted(solved)
    for t in traced:
        assert t["teacher"] == str(folder) and t["thinking_trajectories"] and t["attempt"]
        assert "</think>" not in t["thinking_trajectories"] and "</think>" not in t["attempt"]
    # The training loader reads it as it is (default columns question / thinking_trajectories / attempt).
    from transformers import AutoTokenizer

    from s1kit.train.config import TrainConfig
    from s1kit.train.data import build_examples, load_rows

    rows = load_rows(str(paths["traced"]))
    examples, _ = build_examples(AutoTokenizer.from_pretrained(folder), rows, TrainConfig(block_size=512))
    assert len(examples) == len(solved)
    # A rerun (another output, same settings) generates nothing.
    again = distill(pool_file, cfg)
    assert (again.stats.generated, again.stats.cached) == (0, len(QUESTIONS))


def test_split_generation_at_the_first_end_of_thinking() -> None:
    from s1kit.budget.delimiters import Delimiters

    tags = Delimiters(
        "think_tags", ("<think>",), ("</think>",), "\n</think>\n\nFinal Answer:", ("Wait",), "x"
    )
    assert split_generation("a b\n</think>\n\nFinal Answer: 7", tags) == ("a b", "Final Answer: 7")
    assert split_generation("still thinking", tags) is None
    s1 = Delimiters("s1", ("<|im_start|>think",), ("<|im_start|>",), "", ("Wait",), "x")
    assert split_generation("t\n<|im_start|>answer\nFinal Answer: 3", s1) == ("t", "Final Answer: 3")


def test_curate_cli_wires_the_attempts(
    teacher: tuple[Path, list[str | None]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, said = teacher
    pool_file, solved, _ = _pool(tmp_path, said)
    out = tmp_path / "out"
    args = ["curate", str(pool_file), "--out", str(out), "--quiet", "--skip-stage", "correctness"]
    args += ["--attempts", str(folder), "--device", "cpu", "--max-batch", "4", "--max-len", "512"]
    args += ["--attempts-max-thinking-tokens", "24", "--attempts-max-answer-tokens", "16"]
    args += ["--grading-timeout", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"solved 3/{len(QUESTIONS)}" in text and f"generated {len(QUESTIONS)}, from cache 0" in text
    lines: list[dict[str, Any]] = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert {ln["row"] for ln in lines if ln["stage"] == "difficulty"} == solved
    assert (out / "generations.jsonl").is_file()
    # Rerun into the same folder with another k: the cache carried over, nothing generated.
    assert main([*args, "--k", "3"]) == 0
    assert f"generated 0, from cache {len(QUESTIONS)}" in capsys.readouterr().out
