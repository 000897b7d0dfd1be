"""The s1 preset, config validation and the ``s1kit train`` options."""

from __future__ import annotations

import argparse
import math

import pytest

from s1kit.cli import COMMANDS
from s1kit.errors import ConfigError
from s1kit.train.cli import add_arguments, config_from_args
from s1kit.train.config import TrainConfig, preset, validate_config
from s1kit.train.trainer import lr_lambda


def test_s1_preset_is_the_paper() -> None:
    c = preset("s1")
    assert (c.epochs, c.lr, c.warmup_ratio, c.weight_decay) == (5, 1e-5, 0.05, 1e-4)
    assert (c.adam_beta1, c.adam_beta2, c.global_batch_size, c.block_size, c.dtype) == (
        0.9,
        0.95,
        16,
        32768,
        "bf16",
    )
    with pytest.raises(ValueError, match="unknown preset"):
        preset("s2")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s1kit train")
    add_arguments(p)
    return p


def test_cli_preset_then_overrides() -> None:
    assert COMMANDS["train"] == "s1kit.train.cli"
    args = _parser().parse_args(
        [
            "--preset",
            "s1",
            "--model",
            "m",
            "--data",
            "d",
            "--lr",
            "3e-5",
            "--no-packing",
            "--block-size",
            "1024",
            "--max-steps",
            "7",
            "--activation-checkpointing",
            "selective",
        ]
    )
    cfg = config_from_args(args)
    assert cfg.lr == 3e-5 and cfg.packing is False and cfg.block_size == 1024 and cfg.max_steps == 7
    assert cfg.epochs == 5 and cfg.adam_beta2 == 0.95 and cfg.activation_checkpointing == "selective"
    with pytest.raises(SystemExit):
        _parser().parse_args(["--loss-reduction", "mean"])


def test_divisibility_error_names_values_and_fix() -> None:
    cfg = TrainConfig(model="m", data="d", packing=False, global_batch_size=16, micro_batch_size=3)
    with pytest.raises(ConfigError, match=r"not divisible by micro_batch_size x ranks = 3 x 2 = 6"):
        validate_config(cfg, world_size=2)
    validate_config(cfg.replace(micro_batch_size=4), world_size=2)
    with pytest.raises(ConfigError, match="model is empty"):
        validate_config(TrainConfig(data="d"))
    with pytest.raises(ConfigError, match="warmup_ratio"):
        validate_config(TrainConfig(model="m", data="d", warmup_ratio=1.5))


def test_warmup_then_cosine() -> None:
    f = lr_lambda(100, 0.05, 0.0)
    assert [f(i) for i in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert f(5) == pytest.approx(1.0)
    assert f(5 + 95 // 2) == pytest.approx(0.5 * (1 + math.cos(math.pi * (47 / 95))))
    assert f(99) < 0.001


def test_every_train_option_says_what_it_does() -> None:
    import argparse
    import dataclasses

    from s1kit.train.cli import add_arguments, field_docs
    from s1kit.train.config import TrainConfig

    docs = field_docs(TrainConfig)
    missing = [f.name for f in dataclasses.fields(TrainConfig) if not docs.get(f.name)]
    assert not missing, f"TrainConfig fields without a docstring (the --help text): {missing}"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = parser.format_help()
    assert "Peak learning rate after warm-up (s1: 1e-5). (default 1e-05)" in " ".join(text.split())
