"""Fault suite: real ``s1kit`` runs killed with SIGKILL at chosen points; run it alone with
``pytest -m faults`` (about a minute of CPU time: 52 s user measured).

Each run is the console command in a child process; ``S1KIT_KILL_AT=<point>`` (see
:mod:`s1kit._io`) makes it SIGKILL itself at that exact point. What is killed, and where:

- ``s1kit curate`` (a run over the complete output folder of an earlier one, which also holds a
  user's files: ``notes.txt`` and ``cache/emb.npz``): ``curate.commit`` - the whole new folder
  built and fsync'ed beside the old one (``.out.partial``), nothing swapped; ``out`` - right before
  the swap; ``out.exchanged`` - after the atomic exchange, the old folder not yet deleted (where the
  file system offers ``renameat2(RENAME_EXCHANGE)``); and with the two-rename fallback forced
  (``S1KIT_RENAME_EXCHANGE=0``): ``curate.commit``, ``out``, ``out.moved`` (old folder moved to
  ``.out.old``, new one not yet in place) and ``out.replaced`` (new folder in place, ``.out.old``
  not yet deleted). At every point the folder is exactly the old complete state or exactly the new
  one (every file's SHA-256, the user's files included), except ``out.moved``: there ``out`` is
  missing, ``.out.old`` is exactly the old state and ``check_outputs`` says so; the next run moves it
  back first (checked by killing that run at ``curate.commit``).
- ``s1kit eval``: ``eval.samples`` - in the middle of storing a chunk of generations (one record of
  two on disk); the rerun keeps it and generates only the missing one. ``metrics.csv`` - while the
  report is rewritten: ``report.md`` and every file stay whole.
- ``s1kit train``: ``hf`` - the export of a new run, staged and about to replace the previous
  ``hf/`` folder: the previous export stays whole and loadable; ``--resume`` then completes the export.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from s1kit import _io
from s1kit.curate.pipeline import check_outputs
from s1kit.errors import DataError
from s1kit.train.data import load_rows

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
KILLED = -signal.SIGKILL


def s1kit(
    *argv: str, kill_at: str | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "python") + os.pathsep + str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("S1KIT_KILL_AT", None)
    env.pop(_io.EXCHANGE_ENV, None)
    env.update(extra_env or {})
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


def state(folder: Path) -> dict[str, object]:
    """SHA-256 of every file under ``folder`` by relative path; ``summary.json`` by the run's own
    content (its stage notes carry timings, so two runs of one configuration differ there)."""
    files: dict[str, object] = {
        str(p.relative_to(folder)): _io.file_digest(p)["sha256"]
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "summary.json"
    }
    if (folder / "summary.json").is_file():
        summary = json.loads((folder / "summary.json").read_text())
        files["summary.json"] = (summary["files"], summary["selected"], summary["input_rows"])
    return files


def exchange_works(folder: Path) -> bool:
    a, b = folder / "probe_a", folder / "probe_b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_text("a")
    ok = _io._exchange(a, b)
    assert (b / "f").exists() == ok
    shutil.rmtree(a)
    shutil.rmtree(b)
    return ok


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
    out, ref = tmp_path / "out", tmp_path / "ref"

    def curate(
        folder: Path, k: int, kill_at: str | None = None, fallback: bool = False
    ) -> subprocess.CompletedProcess[str]:
        args = [str(pool), "--out", str(folder), "--k", str(k), "--quiet", "--skip-stage", "correctness"]
        return s1kit(
            "curate", *args, kill_at=kill_at, extra_env={_io.EXCHANGE_ENV: "0"} if fallback else None
        )

    for folder in (out, ref):  # a user's files, which every run must keep
        (folder / "cache").mkdir(parents=True)
        (folder / "notes.txt").write_text("my notes\n")
        (folder / "cache" / "emb.npz").write_bytes(bytes(range(256)) * 4)
    r = curate(ref, 9)
    assert r.returncode == 0, r.stderr[-2000:]
    new = state(ref)
    r = curate(out, 5)
    assert r.returncode == 0, r.stderr[-2000:]
    old = state(out)
    assert old != new and old.keys() == new.keys()
    assert {"notes.txt", "cache/emb.npz", "selected.jsonl", "summary.json"} <= set(old)

    def siblings() -> list[str]:
        return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out."))

    points = [(False, "curate.commit", old), (False, "out", old)]
    if exchange_works(tmp_path):
        points.append((False, "out.exchanged", new))
    points += [(True, "curate.commit", old), (True, "out", old), (True, "out.moved", None)]
    points.append((True, "out.replaced", new))
    for fallback, point, want in points:
        if state(out) != old:  # back to the old run's output
            assert curate(out, 5).returncode == 0
            assert state(out) == old
        r = curate(out, 9, point, fallback)
        assert r.returncode == KILLED, (point, fallback, r.stderr[-2000:])
        if want is None:  # killed between the two renames of the fallback
            assert not out.exists() and state(tmp_path / ".out.old") == old
            assert state(tmp_path / ".out.partial") == new
            with pytest.raises(DataError, match=r"previous content is in .*\.out\.old"):
                check_outputs(out)
            r = curate(out, 9, "curate.commit", fallback)  # the rerun moves the old folder back first
            assert r.returncode == KILLED, r.stderr[-2000:]
            want = old
        assert state(out) == want, (point, fallback)
        check_outputs(out)
        assert len(load_rows(str(out / "selected.jsonl"))) == (5 if want is old else 9)
    assert curate(out, 9).returncode == 0
    check_outputs(out)
    assert state(out) == new
    assert siblings() == []  # a complete run leaves no staging or old folder behind
    assert not [p.name for p in out.rglob(".*")]


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
