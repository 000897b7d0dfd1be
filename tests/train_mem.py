"""Measured peak memory of real training runs on CPU, for checking the memory plan.

What is measured: the torch CPU allocator's live bytes, through the profiler's memory events
(``profile_memory=True`` reports every allocation and free with the running total). The profile starts
when the trainer builds its optimizer, i.e. after the model is loaded, sharded and on its device, and
stops before the final checkpoint is written; the bytes already live at that moment (the model's
parameters and buffers, counted from the tensors themselves) are added to the profile's running total.
On CUDA the same window is measured with ``torch.cuda.max_memory_allocated`` (reset when the optimizer
is built). On CPU this is its counterpart: tensor bytes, not process RSS
(which also holds the interpreter, libraries, the tokenizer and allocator slack). The count follows
every thread (gloo's workers included; see ``_count_every_thread``), so it is the same on every run.
Communication buffers that gloo allocates outside torch's allocator are not seen.

Each run is a real ``s1kit.train.trainer.train`` call (one process, or ranks forked over gloo), on rows
long enough that every sample is truncated to exactly ``block_size`` tokens, so every forward is the
longest block the plan assumes.
"""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path
from typing import Any

import torch

from tests.train_tiny import WORDS, make_tokenizer


def write_mem_model(path: Path, hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int,
                    vocab: int, tie: bool = False) -> Path:  # fmt: skip
    """A random Qwen2 of the given shape with the tiny tokenizer (ids stay below the tokenizer's size)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = make_tokenizer()
    cfg = Qwen2Config(
        vocab_size=max(vocab, len(tok)),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=8192,
        tie_word_embeddings=tie,
        use_cache=False,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_long_rows(path: Path, n: int, words: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = [
        {
            "question": " ".join(rng.choice(WORDS) for _ in range(8)),
            "thinking_trajectories": " ".join(rng.choice(WORDS) for _ in range(words)),
            "attempt": "seven",
        }
        for _ in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _live_bytes(model: torch.nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        local = getattr(t, "_local_tensor", t)
        st = local.untyped_storage()
        if st.data_ptr() in seen or local.device.type != "cpu":
            continue
        seen.add(st.data_ptr())
        total += st.nbytes()
    return total


def _count_every_thread() -> None:
    """Make the CPU allocator's byte count follow every thread's allocations and frees (c10's
    ``caffe2_report_cpu_memory_usage`` flag). Without it the count only follows threads the profiler
    runs on; a tensor whose last reference a gloo worker thread drops (its finished work) is then never
    subtracted, so the count drifts up by a timing-dependent amount."""
    import ctypes

    path = Path(torch.__file__).parent / "lib" / "libc10.so"
    try:
        flag = ctypes.c_bool.in_dll(ctypes.CDLL(str(path)), "FLAGS_caffe2_report_cpu_memory_usage")
    except (OSError, ValueError) as e:
        raise RuntimeError(
            f"cannot set c10's caffe2_report_cpu_memory_usage flag in {path} ({e}); without it two-rank "
            "peaks are not reproducible: measure with a torch build that exports the flag"
        ) from e
    flag.value = True


def _measured_train(cfg: Any, out_json: str) -> None:
    """Run ``train(cfg)`` with the allocator profiled over the training steps; write the peak."""
    from torch.profiler import ProfilerActivity, profile

    import s1kit.train.trainer as trainer

    _count_every_thread()
    state: dict[str, Any] = {}
    real_build_optimizer = trainer.build_optimizer
    real_save = trainer.save_checkpoint

    def build_optimizer(model: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        device = next(model.parameters()).device
        if device.type == "cuda":  # the caching allocator's own peak, from here on
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            state["cuda"] = device
            state["baseline"] = 0
            return real_build_optimizer(model, *args, **kwargs)
        state["baseline"] = _live_bytes(model)
        prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        prof.__enter__()
        state["prof"] = prof
        return real_build_optimizer(model, *args, **kwargs)

    def save_checkpoint(*args: Any, **kwargs: Any) -> Any:
        cuda = state.pop("cuda", None)
        if cuda is not None:
            torch.cuda.synchronize(cuda)
            state["peak"] = torch.cuda.max_memory_allocated(cuda)
        prof = state.pop("prof", None)
        if prof is not None:
            prof.__exit__(None, None, None)
            trace = out_json + ".trace.json"
            prof.export_chrome_trace(trace)
            events = json.loads(Path(trace).read_text())["traceEvents"]
            os.remove(trace)
            mem = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
            # the count includes what was live when the profile started: measure from there
            start = mem[0]["args"]["Total Allocated"] - mem[0]["args"]["Bytes"] if mem else 0
            peak = max((e["args"]["Total Allocated"] for e in mem), default=start)
            state["peak"] = state["baseline"] + peak - start
        return real_save(*args, **kwargs)

    trainer.build_optimizer = build_optimizer
    trainer.save_checkpoint = save_checkpoint
    try:
        trainer.train(cfg)
    finally:
        trainer.build_optimizer = real_build_optimizer
        trainer.save_checkpoint = real_save
    Path(out_json).write_text(json.dumps({"peak": state["peak"], "baseline": state["baseline"]}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _rank_worker(rank: int, cfg: Any, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
        LOCAL_RANK=str(rank),
    )  # fmt: skip
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _measured_train(cfg, str(Path(out, f"peak_{rank}.json")))
    finally:
        dist.destroy_process_group()


def _single_worker(index: int, cfg: Any, out: str) -> None:
    torch.set_num_threads(1)
    _measured_train(cfg, str(Path(out, "peak_0.json")))


def measure_peak(cfg: Any, world: int, out: Path, start_method: str = "fork") -> list[int]:
    """Peak tensor bytes per rank of a real run (``world`` 1: the one-process path, in a fresh process;
    more: FSDP2 over gloo). Use ``spawn`` on CUDA: a fork after CUDA was initialised cannot use it."""
    import torch.multiprocessing as tmp

    out.mkdir(parents=True, exist_ok=True)
    if world == 1:
        tmp.start_processes(_single_worker, args=(cfg, str(out)), nprocs=1, start_method=start_method)
    else:
        tmp.start_processes(
            _rank_worker, args=(cfg, world, _free_port(), str(out)), nprocs=world, start_method=start_method
        )
    return [int(json.loads((out / f"peak_{r}.json").read_text())["peak"]) for r in range(world)]
