"""Fault suite: real ``s1kit`` runs killed with SIGKILL at chosen points; run it alone with
``pytest -m faults`` (about a minute of CPU time: 52 s user measured).

Each run is the console command in a child process; ``S1KIT_KILL_AT=<point>`` (see
:mod:`s1kit._io`) makes it SIGKILL itself at that exact point. What is killed, and where:

- ``s1kit curate`` (a second run over a complete output folder):
  ``curate.commit`` - every new file written to temporary files, nothing replaced yet;
  ``manifest.jsonl`` / ``selected.parquet`` - between the renames of the new files;
  ``summary.json`` - every data file in place, the completion record not yet written.
  The folder must hold the old complete set, or no ``summary.json`` (which ``check_outputs`` and
  ``s1kit train``'s data loader refuse); never new files beside an old summary. A rerun completes it.
- ``s1kit eval``: ``eval.samples`` - in the middle of storing a chunk of generations (one record of
  two on disk); the rerun keeps it and generates only the missing one. ``metrics.csv`` - while the
  report is rewritten: ``report.md`` and every file stay whole.
- ``s1kit train``: ``hf`` - the export of a new run, staged and about to replace the previous
  ``hf/`` folder: the previous export stays whole and loadable; ``--resume`` then completes the export.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from s1kit.curate.pipeline import check_outputs
from s1kit.errors import DataError
from s1kit.train.data import load_rows

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
KILLED = -signal.SIGKILL


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
        timeout=300,
        check=False,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")
    }


def files_are_whole(out: Path) -> None:
    """Every data file present parses in full (atomic renames never expose a partial file)."""
    if (out / "selected.jsonl").exists():
        n = len([json.loads(x) for x in (out / "selected.jsonl").read_text().splitlines()])
        if (out / "selected.parquet").exists():
            assert pq.read_table(out / "selected.parquet").num_rows >= 0
        assert n >= 0
    if (out / "manifest.jsonl").exists():
        rows = [json.loads(x)["row"] for x in (out / "manifest.jsonl").read_text().splitlines()]
        assert rows == list(range(len(rows)))


def test_curate_killed_at_each_commit_point(tmp_path: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(
            json.dumps(
                {"question": f"problem {i}: " + "compute the value of x " * (1 + i % 5), "answer": str(i)}
            )
            + "\n"
            for i in range(40)
        )
    )
    out = tmp_path / "out"

    def curate(k: int, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
        args = [str(pool), "--out", str(out), "--k", str(k), "--quiet", "--skip-stage", "correctness"]
        return s1kit("curate", *args, kill_at=kill_at)

    assert curate(5).returncode == 0, curate(5).stderr
    check_outputs(out)
    old = snapshot(out)

    # Killed before anything was replaced: the old complete set, byte for byte.
    assert curate(9, "curate.commit").returncode == KILLED
    check_outputs(out)
    assert snapshot(out) == old

    for point in ("manifest.jsonl", "selected.parquet", "summary.json"):
        r = curate(9, point)
        assert r.returncode == KILLED, (point, r.stderr[-2000:])
        assert not (out / "summary.json").exists(), point  # no old record beside new files
        files_are_whole(out)
        with pytest.raises(DataError, match="did not finish"):
            check_outputs(out)
        with pytest.raises(DataError, match="did not finish"):
            load_rows(str(out / "selected.jsonl"))  # the training loader refuses it too
        # A rerun makes the folder complete again (the new set).
        assert curate(9).returncode == 0
        check_outputs(out)
        assert len((out / "selected.jsonl").read_text().splitlines()) == 9
        assert len(load_rows(str(out / "selected.jsonl"))) == 9
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert all(p.endswith(".tmp") for p in leftovers), leftovers  # at most stray temporaries


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.unit.test_eval_e2e import _save_tiny_model

    folder = tmp_path_factory.mktemp("model")
    _save_tiny_model(folder)
    return folder


def test_eval_killed_while_storing_samples_and_writing_the_report(tmp_path: Path, tiny_model: Path) -> None:
    tasks = tmp_path / "mine.jsonl"
    tasks.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "question": f"Find x if {i}x + 3 = 11.", "answer": "4"}) + "\n"
            for i in range(2)
        )
    )
    out = tmp_path / "out"
    args = [
        "eval", "--model", str(tiny_model), "--out", str(out), "--tasks", f"mine={tasks}", "--task-grading",
        "exact", "--methods", "budget_forcing", "--budgets", "8", "--extensions", "0", "--max-new-tokens",
        "10", "--max-answer-tokens", "4", "--device", "cpu", "--max-batch", "2", "--max-len", "256",
        "--no-progress", "--grading-workers", "1",
    ]  # fmt: skip
    samples = out / "samples" / "mine" / "budget_forcing.jsonl"
    r = s1kit(*args, kill_at="eval.samples")
    assert r.returncode == KILLED, r.stderr[-2000:]
    first = samples.read_text().splitlines()
    assert len(first) == 1  # one record of the chunk of two reached the disk
    r = s1kit(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1 new generations" in r.stdout
    recs = [json.loads(x) for x in samples.read_text().splitlines()]
    assert sorted(x["problem_id"] for x in recs) == ["p0", "p1"] and recs[0] == json.loads(first[0])
    report = {n: (out / n).read_bytes() for n in ("report.md", "summary.csv", "metrics.csv", "run.json")}

    r = s1kit(*args, "--report-only", kill_at="metrics.csv")
    assert r.returncode == KILLED, r.stderr[-2000:]
    assert {n: (out / n).read_bytes() for n in report} == report  # whole, and the same content


def test_train_export_killed_before_replacing_the_previous_one(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from tests.train_tiny import make_rows, write_jsonl, write_model_dir

    model = write_model_dir(tmp_path / "model", seed=3)
    data = write_jsonl(tmp_path / "data.jsonl", make_rows(8, seed=4))
    out = tmp_path / "run"
    base = [
        "train", "--model", str(model), "--data", str(data), "--output-dir", str(out), "--block-size", "256",
        "--global-batch-size", "4", "--lr", "1e-2", "--dtype", "fp32", "--no-progress", "--no-tensorboard",
    ]  # fmt: skip
    r = s1kit(*base, "--max-steps", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    first = load_file(str(out / "hf" / "model.safetensors"))

    r = s1kit(*base, "--max-steps", "2", kill_at="hf")
    assert r.returncode == KILLED, r.stderr[-2000:]
    kept = load_file(str(out / "hf" / "model.safetensors"))
    assert kept.keys() == first.keys() and all(torch.equal(kept[k], first[k]) for k in first)
    AutoModelForCausalLM.from_pretrained(out / "hf")  # the previous export is whole

    r = s1kit(*base, "--max-steps", "2", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    new = load_file(str(out / "hf" / "model.safetensors"))
    assert any(not torch.equal(new[k], first[k]) for k in first)  # the second run's export replaced it
    steps = [json.loads(x).get("step") for x in (out / "log.jsonl").read_text().splitlines()]
    steps = [s for s in steps if s is not None]
    assert steps == sorted(set(steps))
    assert not list(out.glob(".hf.*"))
