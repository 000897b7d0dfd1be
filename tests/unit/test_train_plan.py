"""``s1kit train --plan``, the refusal of runs that do not fit, ``--auto-fit``, and the recipe presets.
The plan's numbers are checked against measured runs in tests/dist/test_train_plan_memory.py; here its
arithmetic, its ordering and the CLI behaviour the docs promise."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from s1kit.cli import main as cli_main
from s1kit.train.cli import add_arguments, config_from_args, run
from s1kit.train.config import PRESET_SOURCES, preset
from s1kit.train.plan import (
    GIB,
    Hardware,
    Setting,
    apply_setting,
    estimate,
    load_model_config,
    make_plan,
    model_shape,
)
from tests.train_tiny import make_rows, write_jsonl, write_model_dir

CONFIGS = Path(__file__).resolve().parents[2] / "bench" / "configs"


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="s1kit train")
    add_arguments(p)
    return p.parse_args(argv)


def test_qwen_32b_shape_from_config_alone() -> None:
    shape = model_shape(load_model_config(str(CONFIGS / "qwen2.5-32b.json")))
    # 64 layers of q/k/v (with bias), o, gate/up/down and two norms; untied 152064 x 5120 embeddings
    H, I_, kv = 5120, 27648, 1024
    layer = H * H + H + 2 * (H * kv + kv) + H * H + 3 * H * I_ + 2 * H
    assert shape.layer_params == layer
    assert shape.params == 64 * layer + 2 * 152064 * H + H
    assert shape.root_params == 2 * 152064 * H + H


def test_sharded_state_is_16_bytes_per_parameter_over_ranks() -> None:
    shape = model_shape(load_model_config(str(CONFIGS / "qwen2.5-7b.json")))
    cfg = preset("s1").replace(model="m", data="d")
    est = estimate(shape, cfg, Hardware("cuda", 8, 80 * GIB), Setting("full", False, True))
    P = shape.params
    assert est.rows["parameter shards"] == 4 * P // 8
    assert est.rows["optimizer state"] in (8 * P // 8, 8 * P // 8 + 4 * P // 8)
    off = estimate(shape, cfg, Hardware("cuda", 8, 80 * GIB), Setting("full", True, True))
    assert off.rows["parameter shards"] == 0 and off.rows["optimizer state"] == 0
    assert off.host_per_rank >= 16 * P // 8
    # activation checkpointing orders the activations: none > selective > full
    acts = [
        estimate(shape, cfg, Hardware("cuda", 8), Setting(m, False, True))
        for m in ("none", "selective", "full")
    ]
    assert acts[0].peak > acts[1].peak > acts[2].peak
    assert acts[0].tokens_per_s > acts[1].tokens_per_s > acts[2].tokens_per_s


def test_recommendation_is_the_fastest_that_fits() -> None:
    shape = model_shape(load_model_config(str(CONFIGS / "qwen2.5-1.5b.json")))
    cfg = preset("s1").replace(model="m", data="d")
    roomy = make_plan(shape, cfg, Hardware("cuda", 8, 10_000 * GIB), distributed=True)
    assert roomy.recommended is roomy.fastest
    assert roomy.fastest.setting == Setting("none", False, True)
    tight = make_plan(shape, cfg, Hardware("cuda", 8, 80 * GIB, reserved=int(1.5 * GIB)), distributed=True)
    rec = tight.recommended
    assert rec is not None and tight.fits(rec) and not tight.fits(tight.fastest)
    faster = [e for e in tight.candidates if e.tokens_per_s > rec.tokens_per_s]
    assert faster and not any(tight.fits(e) for e in faster)


def test_plan_cli_prints_breakdown_and_recommendation(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(
        [
            "--plan",
            "--preset",
            "s1",
            "--model",
            str(CONFIGS / "qwen2.5-32b.json"),
            "--gpus",
            "16",
            "--gpu-memory",
            "80",
        ]
    )
    assert run(args) == 0
    out = capsys.readouterr().out
    for row in (
        "parameter shards",
        "gradient shards",
        "optimizer state",
        "gathered layers",
        "activations",
        "logits / cross-entropy",
        "communication buffers",
    ):
        assert row in out
    assert "16 x cuda of 80.0 GiB, 32768 tokens per block" in out
    assert "DOES NOT FIT" in out  # s1 asks for no checkpointing: 32K tokens of activations per GPU
    assert "recommendation: torchrun (FSDP2)" in out and "tokens/s" in out


def test_plan_needs_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Bad plan inputs go through s1kit.cli's one error policy (one line, exit 2).
    assert cli_main(["train", "--plan", "--model", str(tmp_path), "--gpus", "1", "--gpu-memory", "80"]) == 2
    assert "has no config.json" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plancli")
    return {
        "root": root,
        "model": write_model_dir(root / "model"),
        "data": write_jsonl(root / "d.jsonl", make_rows(6, seed=1)),
    }


def _run_args(tiny: dict[str, Path], out: str, *extra: str) -> argparse.Namespace:
    return _parse(
        ["--model", str(tiny["model"]), "--data", str(tiny["data"]), "--device", "cpu", "--block-size", "256",
         "--global-batch-size", "2", "--max-steps", "1", "--no-progress", "--no-tensorboard", "--no-export",
         "--output-dir", str(tiny["root"] / out), *extra]
    )  # fmt: skip


def test_run_that_does_not_fit_refuses_before_loading(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_run_args(tiny, "refused", "--gpu-memory", "0.0001")) == 2
    err = capsys.readouterr().err
    assert "s1kit train: error: this run does not fit: planned peak" in err
    assert "options (fastest first" in err and "recommendation: nothing fits" in err
    assert not (tiny["root"] / "refused").exists()  # refused before the trainer created anything


def test_auto_fit_applies_the_recommendation(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = _run_args(tiny, "autofit")
    cfg = config_from_args(args)
    shape = model_shape(load_model_config(cfg.model))
    hw = Hardware("cpu", 1)
    peaks = {
        m: estimate(shape, cfg, hw, Setting(m, False, False)).peak for m in ("none", "selective", "full")
    }
    # room for full checkpointing only (budget = memory x 0.9 on CPU)
    gib = (peaks["full"] + peaks["selective"]) / 2 / 0.9 / GIB
    assert run(_run_args(tiny, "nofit", "--gpu-memory", f"{gib:.9f}")) == 2
    assert run(_run_args(tiny, "autofit", "--gpu-memory", f"{gib:.9f}", "--auto-fit")) == 0
    assert "--auto-fit: one process, --activation-checkpointing full" in capsys.readouterr().err
    saved = json.loads((tiny["root"] / "autofit" / "config.json").read_text())
    assert saved["activation_checkpointing"] == "full"


def test_presets_and_their_sources() -> None:
    s11 = preset("s1.1")
    assert (s11.block_size, s11.data, s11.lr, s11.epochs) == (20000, "simplescaling/s1K-1.1", 1e-5, 5)
    limo = preset("limo")
    assert (limo.lr, limo.epochs, limo.block_size, limo.warmup_ratio, limo.data) == (
        5e-6, 15, 16384, 0.0, "GAIR/LIMO",
    )  # fmt: skip
    p = argparse.ArgumentParser(prog="s1kit train")
    add_arguments(p)
    text = " ".join(p.format_help().split())
    for name in ("s1", "s1.1", "limo"):
        assert " ".join(PRESET_SOURCES[name].split()) in text
    for flag in ("--plan", "--auto-fit", "--gpus", "--gpu-memory", "--plan-margin"):
        assert flag in text


def test_context_parallel_splits_the_block_in_the_plan() -> None:
    shape = model_shape(load_model_config(str(CONFIGS / "qwen2.5-32b.json")))
    cfg = preset("s1").replace(model="m", data="d")
    hw = Hardware("cuda", 16, 80 * GIB)
    one, two = (estimate(shape, cfg, hw, Setting("full", False, True, cp)) for cp in (1, 2))
    # the layer inputs kept by full checkpointing halve; the gathered keys/values and mask are added
    assert two.rows["activations"] < one.rows["activations"] * 0.75
    assert two.rows["parameter shards"] == one.rows["parameter shards"]
    assert two.tokens_per_s < one.tokens_per_s
    plan = make_plan(shape, cfg, hw, distributed=True)
    assert {e.setting.context_parallel for e in plan.candidates} == {1, 2, 4, 8}
    rec = plan.recommended
    # the committed s1 table's choice: full checkpointing alone fits (69.8 of 70.65 GiB), the cheapest
    assert rec is not None and rec.setting == Setting("full", False, True, 1)
    cp2 = next(e for e in plan.fitting if e.setting.context_parallel == 2)
    assert cp2.peak < rec.peak
    assert apply_setting(cfg, cp2.setting).context_parallel == 2
