"""Training throughput and MFU of s1kit.train on one GPU, against the naive s1 recipe in the same call.

Ours: random-init Qwen2.5-0.5B / 1.5B-shaped models (no download), fp32 master weights sharded by FSDP2
on a 1-rank group with bf16 parameters for compute, samples packed into 16K-token blocks with varlen
attention, chunked cross-entropy, fused AdamW.
Naive (what s1's script does): fp32 weights with bf16 autocast, one sample per micro-batch padded to the
block, transformers' SDPA attention with a padding mask and its full-logits loss (falling back to HF
gradient checkpointing if that runs out of memory).

Both run the same samples (lengths drawn uniformly from [--min-len, --max-len], seeded) for the same number
of optimizer steps. Throughput counts real tokens only. MFU = (6·N·T + causal attention FLOPs) / time,
against the card's dense bf16 peak and against a large bf16 matmul measured in this call. The last line of
output is one JSON object.

    python bench/train_mfu.py                 # GPU: 0.5B and 1.5B at 16K, a few minutes
    python bench/train_mfu.py --tiny          # CPU smoke run of the same code paths (numbers mean nothing)

Without CUDA (and without --tiny) it prints why and exits 0 without numbers.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import socket
import sys
import time
from typing import Any

import torch
import torch.distributed as dist

SHAPES: dict[str, dict[str, Any]] = {
    # Qwen2.5-0.5B / 1.5B (config.json of the released models), random init.
    "0.5b": dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
    ),
    "1.5b": dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
    ),
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=512, tie_word_embeddings=True,
    ),
}  # fmt: skip


def make_lm(shape: str, attn: str, device: torch.device) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        **SHAPES[shape], max_position_embeddings=32768, rope_theta=1e6, use_cache=False, rms_norm_eps=1e-6
    )
    cfg._attn_implementation = attn
    with torch.device(device):
        torch.manual_seed(0)
        lm = Qwen2ForCausalLM(cfg)
    return lm.float()


def sample_lengths(n: int, lo: int, hi: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(lo, hi) for _ in range(n)]


def make_examples(lengths: list[int], vocab: int, seed: int) -> list[Any]:
    from s1kit.train.data import IGNORE_INDEX, Example

    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(0, vocab, (n,), generator=g).tolist()
        prompt = max(1, n // 20)
        tgt = [IGNORE_INDEX] * (prompt - 1) + ids[prompt:] + [IGNORE_INDEX]
        out.append(Example(ids, tgt, prompt))
    return out


def matmul_tflops(device: torch.device) -> float:
    n = 8192 if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    reps = 20 if device.type == "cuda" else 3
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mem_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_mem(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def run_ours(
    shape: str, steps_samples: list[list[Any]], block: int, device: torch.device, ac: str
) -> dict[str, Any]:
    from s1kit.train.config import TrainConfig
    from s1kit.train.fsdp import apply_activation_checkpointing, apply_fsdp
    from s1kit.train.loss import token_weights
    from s1kit.train.model import CausalLMWithLoss, step_flops
    from s1kit.train.packing import collate_packed, plan_packed_step, resolve_attention
    from s1kit.train.trainer import build_optimizer

    lm = make_lm(shape, resolve_attention("auto"), device)
    model = CausalLMWithLoss(lm, chunk_size=4096)
    apply_activation_checkpointing(model, ac)
    apply_fsdp(model, torch.bfloat16)
    opt = build_optimizer(model, TrainConfig(model="-", data="-"), device)
    times, flops, tokens = [], 0.0, 0
    for i, exs in enumerate(steps_samples):
        sync(device)
        t = time.perf_counter()
        lengths = [len(e) for e in exs]
        n_tgt = sum(e.num_targets for e in exs)
        for blk in plan_packed_step(lengths, block, 1)[0]:
            mb = collate_packed([exs[j] for j in blk], blk).to(device)
            w = token_weights(mb.targets_BS, mb.sample_ids_BS, "token", n_tgt)
            model(mb, w).backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if i > 0:  # step 0 is warmup
            times.append(time.perf_counter() - t)
            flops += step_flops(lm, lengths)
            tokens += sum(lengths)
    res = {"time_s": sum(times), "flops": flops, "tokens": tokens, "ac": ac}
    del model, lm, opt
    return res


def _ours_with_fallback(
    shape: str, steps_samples: list[list[Any]], block: int, device: torch.device, ac: str
) -> dict[str, Any]:
    """Our run at the requested activation checkpointing; on out-of-memory, again with full AC."""
    failed = False
    try:
        return run_ours(shape, steps_samples, block, device, ac)
    except torch.OutOfMemoryError:
        if ac == "full":
            raise
        failed = True
    assert failed
    reset_mem(device)
    res = run_ours(shape, steps_samples, block, device, "full")
    res["note"] = f"activation_checkpointing={ac} ran out of memory; measured with full"
    return res


def run_naive(shape: str, steps_samples: list[list[Any]], block: int, device: torch.device) -> dict[str, Any]:
    from s1kit.train.model import step_flops

    lm = make_lm(shape, "sdpa", device)
    grad_ckpt = False
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=1e-4)
    times, flops, tokens = [], 0.0, 0
    i = 0

    def micro_step(ex: Any, n_micro: int) -> None:
        n = len(ex)
        ids = torch.zeros(1, block, dtype=torch.long)
        ids[0, :n] = torch.tensor(ex.input_ids_T)
        labels = torch.full((1, block), -100, dtype=torch.long)
        # HF shifts labels itself: label t is the token at t, scored from position t-1
        labels[0, 1:n] = torch.tensor(ex.targets_T[: n - 1])
        mask = torch.zeros(1, block, dtype=torch.long)
        mask[0, :n] = 1
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = lm(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
        (out.loss / n_micro).backward()

    while i < len(steps_samples):
        exs = steps_samples[i]
        sync(device)
        t = time.perf_counter()
        oom = False
        try:
            for ex in exs:
                micro_step(ex, len(exs))
            torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        except torch.OutOfMemoryError:
            if grad_ckpt:
                raise
            oom = True
        if oom:  # outside the except block, so the failed step's graph is already released
            opt.zero_grad(set_to_none=True)
            reset_mem(device)
            lm.gradient_checkpointing_enable()
            grad_ckpt = True
            times, flops, tokens, i = [], 0.0, 0, 0
            continue
        sync(device)
        if i > 0:
            times.append(time.perf_counter() - t)
            flops += step_flops(lm, [len(e) for e in exs])
            tokens += sum(len(e) for e in exs)
        i += 1
    return {"time_s": sum(times), "flops": flops, "tokens": tokens, "grad_checkpointing": grad_ckpt}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _describe(r: dict[str, Any]) -> str:
    if "tokens_per_s" not in r:
        return str(r.get("error", "no timed steps"))
    mem = "n/a" if r["peak_mem_gib"] is None else f"{r['peak_mem_gib']:.1f} GiB"
    return (
        f"{r['tokens_per_s']:>10.0f} tok/s {r['tflops']:7.1f} TFLOP/s  MFU {_pct(r['mfu_vs_peak'])} "
        f"(vs matmul {_pct(r['mfu_vs_matmul'])})  peak mem {mem}"
    )


def init_single_rank(device: torch.device) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(port))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="0.5b,1.5b")
    p.add_argument("--block", type=int, default=16384)
    p.add_argument("--samples-per-step", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed steps (one more is run as warmup)")
    p.add_argument("--min-len", type=int, default=1024)
    p.add_argument("--max-len", type=int, default=12288)
    p.add_argument("--ac", default="none", choices=["none", "selective", "full"])
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny model, short blocks")
    args = p.parse_args()

    if args.tiny:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        args.models, args.block, args.min_len, args.max_len, args.steps = "tiny", 256, 16, 200, 2
    elif not torch.cuda.is_available():
        msg = "no CUDA device: this benchmark measures one H100/H200 and was not run (use --tiny for a CPU smoke)"
        print(msg, file=sys.stderr)
        print(json.dumps({"bench": "train_mfu", "skipped": msg}))
        return 0
    else:
        device = torch.device("cuda", 0)
        torch.cuda.set_device(device)
    torch.backends.cuda.matmul.allow_tf32 = True
    init_single_rank(device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    from s1kit.train.trainer import peak_flops

    peak = peak_flops(device)
    mm = matmul_tflops(device)
    print(f"device {name}: dense bf16 peak {peak and peak / 1e12} TFLOP/s, measured matmul {mm:.1f} TFLOP/s")
    results: list[dict[str, Any]] = []
    for shape in args.models.split(","):
        vocab = SHAPES[shape]["vocab_size"]
        steps = []
        for s in range(args.steps + 1):
            lengths = sample_lengths(args.samples_per_step, args.min_len, min(args.max_len, args.block), s)
            steps.append(make_examples(lengths, vocab, s))
        methods = ["s1kit packed+fsdp2 bf16"] + ([] if args.skip_naive else ["naive padded fp32+autocast"])
        for label in methods:
            reset_mem(device)
            try:
                if label.startswith("s1kit"):
                    r = _ours_with_fallback(shape, steps, args.block, device, args.ac)
                else:
                    r = run_naive(shape, steps, args.block, device)
            except torch.OutOfMemoryError as exc:
                r = {"error": f"out of memory: {str(exc).splitlines()[0]}"}
            r.update(model=shape, method=label, block=args.block, peak_mem_gib=peak_mem_gib(device))
            if "time_s" in r and r["time_s"] > 0:
                achieved = r["flops"] / r["time_s"]
                r["tokens_per_s"] = r["tokens"] / r["time_s"]
                r["tflops"] = achieved / 1e12
                r["mfu_vs_peak"] = achieved / peak if peak else None
                r["mfu_vs_matmul"] = achieved / (mm * 1e12)
            results.append(r)
            print(f"{shape:>5} {label:<28} {_describe(r)}", flush=True)
    ratios = {}
    for shape in args.models.split(","):
        ours = next((r for r in results if r["model"] == shape and r["method"].startswith("s1kit")), None)
        naive = next((r for r in results if r["model"] == shape and r["method"].startswith("naive")), None)
        if ours and naive and "tokens_per_s" in ours and "tokens_per_s" in naive:
            ratios[shape] = ours["tokens_per_s"] / naive["tokens_per_s"]
            print(f"{shape}: s1kit / naive tokens/s = {ratios[shape]:.2f}x")
    dist.destroy_process_group()
    print(
        json.dumps(
            {
                "bench": "train_mfu",
                "device": name,
                "torch": torch.__version__,
                "peak_bf16_tflops": peak and peak / 1e12,
                "matmul_tflops": mm,
                "tiny": args.tiny,
                "results": results,
                "speedup_vs_naive": ratios,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
