"""Crash and resume: a run killed with SIGKILL (mid-training, and in the middle of writing a checkpoint)
resumes with ``resume=True`` and its following losses equal an uninterrupted run's. The exported HF
folder loads with ``AutoModelForCausalLM`` and reproduces the trained model's logits."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from s1kit.train.checkpoint import latest_checkpoint
from s1kit.train.config import TrainConfig
from s1kit.train.trainer import Hooks, train
from tests.train_tiny import make_rows, write_jsonl, write_model_dir

STEPS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("resume")
    cfg = TrainConfig(
        model=str(write_model_dir(root / "model", seed=4)),
        data=str(write_jsonl(root / "data.jsonl", make_rows(12, seed=9))),
        block_size=256,
        global_batch_size=4,
        epochs=2,
        lr=3e-3,
        dtype="fp32",
        save_every=2,
        progress=False,
        tensorboard=False,
    )
    torch.set_num_threads(1)
    full = train(cfg.replace(output_dir=str(root / "full")))
    assert len(full.losses) == STEPS
    return {"root": root, "cfg": cfg, "full": full}


def _train_then_die(cfg: TrainConfig, kill_at_step: int | None, kill_in_save_at: int | None) -> None:
    def die(*_: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    torch.set_num_threads(1)
    hooks = Hooks(
        on_step_end=(lambda s: die() if s == kill_at_step else None),
        before_commit=(lambda p: die() if p.name == f"step_{kill_in_save_at or 0:08d}.tmp" else None),
    )
    train(cfg, hooks)


def _killed_run(cfg: TrainConfig, kill_at_step: int | None, kill_in_save_at: int | None) -> int | None:
    # spawn, not fork: forking a process whose autograd threads already ran is undefined in torch.
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_train_then_die, args=(cfg, kill_at_step, kill_in_save_at))
    proc.start()
    proc.join(timeout=180)
    return proc.exitcode


@pytest.mark.parametrize(("kill_at_step", "kill_in_save_at", "resume_from"), [(3, None, 2), (None, 4, 2)])
def test_sigkill_then_resume_matches_uninterrupted(
    setup: dict[str, Any], kill_at_step: int | None, kill_in_save_at: int | None, resume_from: int
) -> None:
    root, cfg, full = setup["root"], setup["cfg"], setup["full"]
    out = root / f"killed_{kill_at_step}_{kill_in_save_at}"
    run_cfg = cfg.replace(output_dir=str(out))
    assert _killed_run(run_cfg, kill_at_step, kill_in_save_at) == -signal.SIGKILL
    logged = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    before = [r["loss"] for r in logged if "step" in r]
    assert before == pytest.approx(full.losses[: len(before)], rel=1e-6)
    last = latest_checkpoint(out)
    assert last is not None and last.name == f"step_{resume_from:08d}"
    if kill_in_save_at:
        assert (out / "checkpoints" / f"step_{kill_in_save_at:08d}.tmp").is_dir()

    resumed = train(run_cfg.replace(resume=True))
    assert not list((out / "checkpoints").glob("*.tmp")), "the interrupted save was cleaned up"
    assert len(resumed.losses) == STEPS - resume_from
    torch.testing.assert_close(
        torch.tensor(resumed.losses), torch.tensor(full.losses[resume_from:]), rtol=1e-6, atol=0
    )
    # The log holds every step once: the steps logged after the checkpoint and before the kill were
    # trained again, and only their second run is in the log.
    steps = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "step" in r]
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in steps] == pytest.approx(full.losses, rel=1e-6)


def test_export_loads_and_reproduces_logits(setup: dict[str, Any]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    full = setup["full"]
    assert full.export_dir is not None
    files = {p.name for p in Path(full.export_dir).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    loaded = AutoModelForCausalLM.from_pretrained(full.export_dir)
    tok = AutoTokenizer.from_pretrained(full.export_dir)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "the sum of two"}], tokenize=False, add_generation_prompt=True
    )
    ids_BS = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        want = full.model.logits(ids_BS)
        got = loaded(input_ids=ids_BS).logits
        base = AutoModelForCausalLM.from_pretrained(setup["cfg"].model)(input_ids=ids_BS).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got - base).abs().max() > 1e-3, "training changed the model, and the export carries it"
