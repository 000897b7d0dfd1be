"""Context parallelism (s1kit.train.context) over real gloo ranks against one process.

1. Attention alone: a packed block whose documents cross the slice boundary, split over 2 and 3 ranks;
   outputs and the gradients of queries, keys and values equal one process's per-document causal SDPA
   (fp32, atol 1e-5).
2. Training: two ranks with --context-parallel 2 (each block split in halves, FSDP2 over both ranks)
   give the one-process per-step losses (rtol 1e-5) and the same trained weights (logits atol 1e-4)."""

from __future__ import annotations

import itertools
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as tmp
import torch.nn.functional as F

from s1kit.train.config import TrainConfig
from s1kit.train.trainer import train
from tests.train_tiny import make_rows, write_jsonl, write_model_dir

CU = [0, 5, 16, 19, 30, 36]  # documents of 5, 11, 3, 11 and 6 tokens: some cross the slice boundaries


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    T = CU[-1]
    q = torch.randn(1, 4, T, 8, generator=g)
    k = torch.randn(1, 2, T, 8, generator=g)  # grouped-query: 4 query heads over 2 kv heads
    v = torch.randn(1, 2, T, 8, generator=g)
    w = torch.randn(1, T, 4, 8, generator=g)
    return q, k, v, w


def _reference() -> dict[str, torch.Tensor]:
    q, k, v, w = (t.clone().requires_grad_(i < 3) for i, t in enumerate(_inputs()))
    outs = [
        F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=b - a > 1, enable_gqa=True)
        for a, b in itertools.pairwise(CU)
    ]
    out = torch.cat(outs, dim=2).transpose(1, 2)
    (out * w).sum().backward()
    return {"out": out.detach(), "dq": q.grad, "dk": k.grad, "dv": v.grad}  # type: ignore[dict-item]


def _attention_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from s1kit.train.context import ContextAttention

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        q, k, v, w = _inputs()
        T = CU[-1]
        n = -(-T // world)
        s, e = rank * n, min((rank + 1) * n, T)
        assert e - s == n, "the test block must split evenly"
        ql, kl, vl = (t[:, :, s:e].clone().requires_grad_(True) for t in (q, k, v))
        ctx = ContextAttention(CU, s, dist.group.WORLD)
        o = ctx.attention(ql, kl, vl, None)
        (o * w[:, s:e]).sum().backward()
        torch.save({"out": o.detach(), "dq": ql.grad, "dk": kl.grad, "dv": vl.grad, "s": s, "e": e},
                   Path(out, f"r{rank}.pt"))  # fmt: skip
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_context_attention_matches_one_process(tmp_path: Path, world: int) -> None:
    # workers first: forking after the parent ran multi-threaded kernels can deadlock the children
    torch.set_num_threads(1)
    tmp.start_processes(_attention_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, start_method="fork")
    ref = _reference()
    parts = [torch.load(tmp_path / f"r{r}.pt") for r in range(world)]
    out = torch.cat([p["out"] for p in parts], dim=1)
    torch.testing.assert_close(out, ref["out"], atol=1e-5, rtol=1e-5)
    for name in ("dq", "dk", "dv"):
        got = torch.cat([p[name] for p in parts], dim=2)
        torch.testing.assert_close(got, ref[name], atol=1e-5, rtol=1e-5)


def _train_worker(rank: int, cfg: TrainConfig, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        res = train(cfg)
        Path(out, f"losses_{rank}.json").write_text(json.dumps(res.losses))
    finally:
        dist.destroy_process_group()


def test_two_rank_context_parallel_training_matches_one_process(tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path / "model")
    data = write_jsonl(tmp_path / "data.jsonl", make_rows(12, seed=5))
    base = TrainConfig(
        model=str(model_dir),
        data=str(data),
        block_size=128,
        global_batch_size=4,
        max_steps=3,
        lr=2e-3,
        warmup_ratio=0.0,
        dtype="fp32",
        progress=False,
        tensorboard=False,
        seed=11,
    )
    torch.set_num_threads(1)
    single = train(base.replace(output_dir=str(tmp_path / "single"), export=False))
    cfg = base.replace(context_parallel=2, output_dir=str(tmp_path / "cp"))
    tmp.start_processes(_train_worker, args=(cfg, _free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    losses = [json.loads((tmp_path / f"losses_{r}.json").read_text()) for r in range(2)]
    assert losses[0] == losses[1]
    assert single.losses[-1] < single.losses[0] - 0.05  # a changing trajectory, not a constant
    torch.testing.assert_close(torch.tensor(losses[0]), torch.tensor(single.losses), rtol=1e-5, atol=0)
    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "cp" / "hf", dtype=torch.float32)
    ids = torch.tensor([[5, 17, 40, 2, 99, 123, 7]])
    assert single.model is not None
    torch.testing.assert_close(exported(input_ids=ids).logits, single.model.logits(ids), rtol=1e-4, atol=1e-4)


def test_context_parallel_needs_a_divisor_of_the_ranks() -> None:
    from s1kit.errors import ConfigError
    from s1kit.train.config import validate_config

    with pytest.raises(ConfigError, match=r"context_parallel=3 does not divide the number of ranks \(4\)"):
        validate_config(TrainConfig(model="m", data="d", context_parallel=3), world_size=4)
    with pytest.raises(ConfigError, match="needs --packing"):
        validate_config(TrainConfig(model="m", data="d", context_parallel=2, packing=False), world_size=2)
    validate_config(TrainConfig(model="m", data="d", context_parallel=2), world_size=4)


