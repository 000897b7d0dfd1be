"""Kill and resume for the generating stages (issue 18): a real ``s1kit distill`` and a real
``s1kit curate --attempts`` killed with SIGKILL in the middle of their generation (``distill.batch``,
``attempts.batch``: the first generation of the first batch on disk, the rest of it not), then rerun.
The rerun generates exactly what is missing (nothing twice: every cache key once) and writes the same
outputs as a run that was never killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.tiny_teacher import QUESTIONS, save_teacher

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
KILLED = -signal.SIGKILL
N = len(QUESTIONS)
ENGINE = ["--device", "cpu", "--max-batch", "3", "--max-len", "512", "--quiet"]


def s1kit(*argv: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "python") + os.pathsep + str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("S1KIT_KILL_AT", None)
    if kill_at is not None:
        env["S1KIT_KILL_AT"] = kill_at
    return subprocess.run(
        [sys.executable, "-m", "s1kit.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def _keys(cache: Path) -> list[str]:
    return [json.loads(x)["key"] for x in cache.read_text().splitlines()]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("distill_faults")
    teacher = save_teacher(tmp / "teacher")
    path = tmp / "pool.jsonl"
    path.write_text(
        "".join(json.dumps({"question": q, "answer": str(i)}) + "\n" for i, q in enumerate(QUESTIONS))
    )
    return teacher, path


def test_distill_killed_mid_batch_resumes_without_generating_twice(
    pool: tuple[Path, Path], tmp_path: Path
) -> None:
    teacher, path = pool
    budget = ["--max-thinking-tokens", "24", "--max-answer-tokens", "16"]

    def distill(out: Path, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
        return s1kit(
            "distill",
            "--teacher",
            str(teacher),
            "--in",
            str(path),
            "--out",
            str(out),
            *budget,
            *ENGINE,
            kill_at=kill_at,
        )

    ref = distill(tmp_path / "ref" / "traced.jsonl")
    assert ref.returncode == 0, ref.stderr
    assert f"generated {N}, from cache 0" in ref.stdout
    out = tmp_path / "run" / "traced.jsonl"
    killed = distill(out, kill_at="distill.batch")
    assert killed.returncode == KILLED, killed.stderr
    cache = out.with_name("traced.generations.jsonl")
    assert len(_keys(cache)) == 1 and not out.exists()
    resumed = distill(out)
    assert resumed.returncode == 0, resumed.stderr
    assert f"generated {N - 1}, from cache 1" in resumed.stdout
    keys = _keys(cache)
    assert len(keys) == len(set(keys)) == N
    assert sorted(keys) == sorted(_keys(tmp_path / "ref" / "traced.generations.jsonl"))
    assert out.read_text() == (tmp_path / "ref" / "traced.jsonl").read_text()
    man = out.with_name("traced.manifest.jsonl").read_text()
    assert man == (tmp_path / "ref" / "traced.manifest.jsonl").read_text()
    assert len(man.splitlines()) == N


def test_curate_attempts_killed_mid_batch_resumes_without_generating_twice(
    pool: tuple[Path, Path], tmp_path: Path
) -> None:
    teacher, path = pool
    flags = [
        "--attempts",
        str(teacher),
        "--attempts-max-thinking-tokens",
        "24",
        "--attempts-max-answer-tokens",
        "16",
    ]

    def curate(out: Path, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
        return s1kit(
            "curate",
            str(path),
            "--out",
            str(out),
            "--skip-stage",
            "correctness",
            *flags,
            *ENGINE,
            kill_at=kill_at,
        )

    ref = curate(tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr
    killed = curate(tmp_path / "run", kill_at="attempts.batch")
    assert killed.returncode == KILLED, killed.stderr
    assert len(_keys(tmp_path / "run" / "generations.jsonl")) == 1
    resumed = curate(tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr
    assert f"generated {N - 1}, from cache 1" in resumed.stdout
    keys = _keys(tmp_path / "run" / "generations.jsonl")
    assert len(keys) == len(set(keys)) == N
    for name in ("manifest.jsonl", "selected.jsonl"):
        assert (tmp_path / "run" / name).read_text() == (tmp_path / "ref" / name).read_text()
    lines = [json.loads(x) for x in (tmp_path / "run" / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == N and all(len(ln["attempts"][str(teacher)]) == 1 for ln in lines)
