"""Training under bad inputs and changed configurations (issue 16, items 6-8).

- a row whose question / thinking / attempt is JSON null is dropped with a reason, never trained on
  the text "None";
- a later row without a needed column is a :class:`DataError` naming that row, not a ``KeyError``;
- ``--resume`` refuses a configuration that changes what the checkpoint means (naming the fields and
  both values) and accepts the harmless ones (logging frequency, progress, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from s1kit.errors import ConfigError, DataError
from s1kit.train.checkpoint import RESUME_FIXED, latest_checkpoint
from s1kit.train.config import TrainConfig
from s1kit.train.data import build_examples
from s1kit.train.trainer import train
from tests.train_tiny import make_rows, make_tokenizer, write_jsonl, write_model_dir


@pytest.fixture(scope="module")
def tok() -> Any:
    return make_tokenizer()


def test_null_fields_are_dropped_with_a_reason_not_trained_as_none(tok: Any) -> None:
    rows = make_rows(4, seed=3)
    rows[1]["attempt"] = None
    rows[2]["question"] = None
    rows[2]["thinking_trajectories"] = None
    cfg = TrainConfig(model="m", data="d.jsonl", block_size=4096)
    examples, stats = build_examples(tok, rows, cfg)
    assert len(examples) == 2 and stats.dropped == 2 and stats.kept == 2
    assert stats.notes == ["row 1: attempt is null", "row 2: question, thinking_trajectories is null"]
    none_ids = tok.encode("None", add_special_tokens=False)
    for ex in examples:
        text = tok.decode(ex.input_ids_T)
        assert "None" not in text, text
        assert none_ids  # the tokenizer can spell it: the check above is meaningful
    all_null = [{**r, "attempt": None} for r in rows]
    with pytest.raises(DataError, match=r"no usable rows.*row 0: attempt is null"):
        build_examples(tok, all_null, cfg)


def test_a_later_row_without_a_column_names_the_row(tok: Any) -> None:
    rows = make_rows(5, seed=3)
    del rows[3]["attempt"]
    cfg = TrainConfig(model="m", data="d.jsonl", block_size=4096)
    with pytest.raises(
        DataError, match=r"row 3 \(counting from 0\) of data 'd.jsonl' lacks column\(s\) \['attempt'\]"
    ):
        build_examples(tok, rows, cfg)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> TrainConfig:
    root = tmp_path_factory.mktemp("resume_cfg")
    cfg = TrainConfig(
        model=str(write_model_dir(root / "model", seed=1)),
        data=str(write_jsonl(root / "data.jsonl", make_rows(8, seed=2))),
        output_dir=str(root / "out"),
        block_size=256,
        global_batch_size=4,
        max_steps=2,
        lr=1e-3,
        dtype="fp32",
        save_every=1,
        export=False,
        progress=False,
        tensorboard=False,
    )
    torch.set_num_threads(1)
    train(cfg)
    assert latest_checkpoint(cfg.output_dir) is not None
    return cfg


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"block_size": 128}, ["block_size: 256 -> 128"]),
        ({"global_batch_size": 2, "lr": 2e-3}, ["global_batch_size: 4 -> 2", "lr: 0.001 -> 0.002"]),
        ({"max_steps": 1}, ["max_steps: 2 -> 1"]),  # below the checkpoint's step
    ],
)
def test_resume_refuses_a_changed_meaning(
    finished_run: TrainConfig, changes: dict[str, Any], named: list[str]
) -> None:
    with pytest.raises(ConfigError, match="configuration changed what the checkpoint means") as err:
        train(finished_run.replace(resume=True, **changes))
    for text in named:
        assert text in str(err.value)
    assert "new --output-dir" in str(err.value)


def test_resume_accepts_harmless_changes(finished_run: TrainConfig) -> None:
    harmless = {"log_every": 5, "save_every": 7, "keep_checkpoints": 3, "loss_chunk_size": 64}
    assert not set(harmless) & set(RESUME_FIXED)
    result = train(finished_run.replace(resume=True, **harmless))
    assert result.losses == []  # resumed at its last step: nothing left to train
    assert Path(finished_run.output_dir, "config.json").read_text().count('"log_every": 5') == 1
