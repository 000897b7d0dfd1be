"""On CUDA: the memory plan against ``torch.cuda.max_memory_allocated`` of real one-process training
runs of random-init Qwen2.5-0.5B / 1.5B shapes at 4K-16K tokens (bf16 autocast, fp32 master weights).
Prints one line per run (planned, measured, error); tolerance 10%. Skipped without CUDA; not run in the
session that wrote it (no GPU was lent), so its numbers are not in bench/results yet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from s1kit.train.config import TrainConfig
from s1kit.train.plan import Hardware, Setting, estimate, load_model_config, model_shape

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)

from tests.train_mem import measure_peak, write_long_rows, write_mem_model  # noqa: E402

SHAPES = {
    # Qwen2.5-0.5B / 1.5B (as in bench/train_mfu.py): hidden, intermediate, layers, heads, kv heads, vocab
    "0.5b": (896, 4864, 24, 14, 2, 151936),
    "1.5b": (1536, 8960, 28, 12, 2, 151936),
}
CASES = [("0.5b", 4096, "none"), ("0.5b", 8192, "selective"), ("1.5b", 16384, "full")]


@pytest.mark.parametrize(("shape", "block", "ac"), CASES)
def test_plan_matches_cuda_peak(tmp_path: Path, shape: str, block: int, ac: str) -> None:
    model = write_mem_model(tmp_path / "model", *SHAPES[shape], tie=True)
    data = write_long_rows(tmp_path / "rows.jsonl", 4, words=block)
    cfg = TrainConfig(
        model=str(model),
        data=str(data),
        block_size=block,
        global_batch_size=2,
        max_steps=2,
        dtype="bf16",
        activation_checkpointing=ac,  # type: ignore[arg-type]
        device="cuda",
        progress=False,
        tensorboard=False,
        export=False,
        output_dir=str(tmp_path / "run"),
    )
    measured = measure_peak(cfg, 1, tmp_path / "meas", start_method="spawn")[0]
    plan = estimate(
        model_shape(load_model_config(cfg.model)), cfg, Hardware("cuda", 1), Setting(ac, False, False)
    )
    error = plan.peak / measured - 1.0
    print(f"{shape} {block} {ac}: planned {plan.peak / 2**30:.2f} GiB, measured {measured / 2**30:.2f} GiB, "
          f"error {error:+.1%}")  # fmt: skip
    assert abs(error) <= 0.10, plan.rows
