"""Decode benchmarks: in-loop budget forcing vs s1-style re-prompting, and decode speed on a GPU.

Part 1 (CPU, always): a tiny random Llama (tests/unit/tiny_lm.py) whose end-of-thinking delimiter is
made frequent, 16 prompts with different thinking lengths, greedy, "Wait" forced 1..6 times. In-loop
(this engine: the forced tokens are fed back, each prompt prefilled once) vs the re-prompting baseline
of bench/reprompt.py (each round waits for the whole batch, then re-sends every prefix). Same model,
same engine, same run; the outputs are checked token-identical. Key: ``inloop_speedup_vs_reprompt``
at 6 extensions. ``--cpu-budget-path`` sets the engine's ``budget_path`` for this part (default
"auto", which is "host" on CPU; "tensor" runs the run-ahead windows with the tensor mirror).

Part 2 (CUDA only, skipped cleanly without it): random bf16 models shaped like Qwen2.5-0.5B and -1.5B.
Decode tokens/s at batch 1 and 64 for s1kit (CUDA graphs), transformers ``generate`` (default dynamic
cache) and transformers with a static cache and ``torch.compile``; each as a percentage of the
memory-bandwidth floor (weight bytes / copy bandwidth measured in the same call). s1kit runs:

- ``s1kit``: budget forcing off, the default CUDA loop (run-ahead: ``sync_every`` = K graph replays per
  host synchronisation, K printed and in the JSON) -- the baseline "off";
- ``s1kit_host_loop``: budget forcing off, the per-step host loop (``budget_path="host"``);
- ``s1kit_budget_host``: budget forcing on, the Rust core per step on the host (``budget_path="host"``);
- ``s1kit_budget_graph``: budget forcing on, the tensor automaton inside the CUDA graph, run-ahead
  (``budget_path="tensor"``); with ``--compile-budget`` also ``s1kit_budget_graph_compiled``
  (``compile_budget=True``, 1.5B shape, batch 1 only).

Same call, same card: JSON keys ``graph_budget_overhead_pct`` and ``host_budget_overhead_pct`` (step
time over "off", minus one, in percent, 1.5B shape, batch 1), ``host_loop_overhead_pct`` (the per-step
loop over run-ahead, budget off) and ``sync_every``; and part 1 again on the 1.5B shape. Nothing is
built or downloaded.

    PYTHONPATH=python:. python bench/decode.py [--skip-compile] [--compile-budget] [--gpu-only] [--cpu-only]
        [--cpu-budget-path auto|host|tensor]

Prints tables and one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from bench.reprompt import reprompt_generate
from s1kit.budget import BudgetSpec
from s1kit.generate import Engine, Request, SamplingParams
from s1kit.generate.model import weight_bytes

QUESTIONS = [
    "What is two and three?",
    "Hmm, so the total",
    "x",
    "Check each case, if x is even",
    "seven times six",
    "The answer is",
    "Think again, carefully.",
    "Final Answer: the sum",
    "We check each case: if x is even then x squared is even.",
    "assistant user system",
    "Wait, let me think about this step by step.",
    "so the total number of ways",
    "two and three is five",
    "if x is even",
    "Hmm",
    "the sum of two",
]


class IdsText:
    """Text for random-id models: the engine only decodes finished rows (ids as numbers)."""

    eos_token_id = None

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return " ".join(map(str, ids))


def budget_rows(
    engine: Engine, prompts: list[list[int]], make_spec: Any, max_new: int, repeat: int = 3
) -> list[dict[str, Any]]:
    """In-loop vs re-prompting for 1..6 extensions, after one warm-up call; each time is the best of
    ``repeat`` runs (the machine may be shared)."""
    rows = []
    reqs = lambda spec: [Request(p, SamplingParams(max_new_tokens=max_new), budget=spec) for p in prompts]  # noqa: E731
    engine.generate(reqs(make_spec(1)))  # warm-up (and graph capture on CUDA)
    for k in range(1, 7):
        spec = make_spec(k)
        t_in = t_re = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = engine.generate(reqs(spec))
            t_in = min(t_in, time.perf_counter() - t0)
            t0 = time.perf_counter()
            base, stats = reprompt_generate(engine, prompts, spec, max_new)
            t_re = min(t_re, time.perf_counter() - t0)
        rows.append(
            {
                "extensions": k,
                "inloop_s": t_in,
                "reprompt_s": t_re,
                "speedup": t_re / t_in,
                "inloop_prefilled": sum(len(p) for p in prompts),
                "reprompt_prefilled": stats.prefilled_tokens,
                "reprompt_rounds": stats.rounds,
                "tokens": sum(len(r.token_ids) for r in res),
                "extensions_used": sum(r.extensions_used for r in res),
                "identical": all(r.token_ids == b.token_ids for r, b in zip(res, base, strict=True)),
            }
        )
    return rows


def print_budget_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(
        "| Wait x | in-loop s | re-prompt s | speedup | prefilled in-loop | prefilled re-prompt | rounds | tokens | extensions used | identical |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['extensions']} | {r['inloop_s']:.2f} | {r['reprompt_s']:.2f} | {r['speedup']:.2f}x | "
            f"{r['inloop_prefilled']} | {r['reprompt_prefilled']} | {r['reprompt_rounds']} | {r['tokens']} | "
            f"{r['extensions_used']} | {r['identical']} |"
        )


def cpu_part(budget_path: str = "auto") -> dict[str, Any]:
    from tests.unit.tiny_lm import favour_token, tiny_hf_model, tiny_tokenizer

    torch.set_num_threads(1)
    tok = tiny_tokenizer()
    hf = tiny_hf_model("llama", tok, seed=7)
    prompts = [
        tok.encode(f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n<|im_start|>think\n")
        for q in QUESTIONS
    ]
    max_new = 160
    engine = Engine(hf, tok, max_batch=16, max_len=512, budget_path=budget_path)
    plain = engine.generate([Request(p, SamplingParams(max_new_tokens=max_new)) for p in prompts])
    counts = Counter(t for r in plain for t in r.token_ids if t >= len(tok.all_special_ids))
    # The end-of-thinking token takes over the output row of a token the model emits now and then.
    favour_token(hf, tok.convert_tokens_to_ids("<|im_start|>"), like=counts.most_common(3)[2][0])
    engine = Engine(hf, tok, max_batch=16, max_len=512, budget_path=budget_path)

    def make_spec(k: int) -> BudgetSpec:
        return BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=k)

    rows = budget_rows(engine, prompts, make_spec, max_new)
    print_budget_table(
        f"In-loop budget forcing vs re-prompting (CPU, tiny Llama, batch 16, greedy, budget_path={budget_path})",
        rows,
    )
    return {"rows": rows, "inloop_speedup_vs_reprompt": rows[-1]["speedup"]}


# ---- GPU ------------------------------------------------------------------------------------------

SHAPES = {
    "qwen2.5-0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "qwen2.5-1.5b": dict(
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
}


def copy_bandwidth(dev: torch.device) -> float:
    """Bytes/s of a device-to-device copy (read + write) of a 1 GiB buffer."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        dst.copy_(src)
    torch.cuda.synchronize()
    return 2 * src.numel() * n / (time.perf_counter() - t0)


def hf_model(shape: str, dev: torch.device) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=151936, max_position_embeddings=4096, **SHAPES[shape])
    torch.manual_seed(0)
    with torch.device(dev):
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def time_steps(fn: Any, n1: int, n2: int) -> float:
    """Seconds per decode step: (time for n2 tokens - time for n1 tokens) / (n2 - n1)."""
    ts = []
    for n in (n1, n2):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(n)
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return (ts[1] - ts[0]) / (n2 - n1)


def gpu_batch(
    hf: Any, engine: Engine, batch: int, skip_compile: bool, compile_budget: bool = False
) -> dict[str, float]:
    """Seconds per decode step of each implementation at one batch size (same model, same card)."""
    dev = engine.device
    prompt_len, n1, n2 = 32, 64, 192
    ids = torch.randint(0, 151936, (batch, prompt_len), generator=torch.Generator().manual_seed(batch))
    prompts = ids.tolist()
    # Budget forcing on: every row has a spec whose end token is common enough to be redirected.
    spec = BudgetSpec(
        vocab_size=151936,
        think_end=((151644,),),
        extensions=((14190, 11),),
        answer_prefix=(151644, 9217),
        num_extensions=10**6,
    )

    def s1kit(n: int, budget: BudgetSpec | None = None) -> None:
        engine.generate([Request(p, SamplingParams(max_new_tokens=n), budget=budget) for p in prompts])

    def hf_gen(n: int, **kw: Any) -> None:
        hf.generate(
            ids.to(dev),
            attention_mask=torch.ones_like(ids, device=dev),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            **kw,
        )

    engine.budget_path = "auto"  # on CUDA: the run-ahead loop
    s1kit(n2)  # captures the graphs
    results: dict[str, float] = {"s1kit": time_steps(s1kit, n1, n2)}
    engine.budget_path = "host"
    s1kit(n2)
    results["s1kit_host_loop"] = time_steps(s1kit, n1, n2)
    for path in ("host", "graph"):
        engine.budget_path = "host" if path == "host" else "tensor"
        s1kit(n2, spec)  # captures the graphs with the budget step in them
        results[f"s1kit_budget_{path}"] = time_steps(lambda n: s1kit(n, spec), n1, n2)
    if compile_budget:
        engine.compile_budget = True
        try:
            s1kit(n2, spec)  # compiles the budget step, captures it in the graphs
            results["s1kit_budget_graph_compiled"] = time_steps(lambda n: s1kit(n, spec), n1, n2)
        except Exception as e:  # unverified on a GPU so far: report, do not abort the benchmark
            print(f"compile_budget=True failed: {e!r}"[:300])
        finally:
            engine.compile_budget = False
    engine.budget_path = "auto"
    hf_gen(8)
    results["hf_default"] = time_steps(hf_gen, n1, n2)
    if not skip_compile:
        orig = hf.forward
        try:
            hf.forward = torch.compile(orig, mode="reduce-overhead", fullgraph=True)
            hf_gen(n2, cache_implementation="static")
            hf_gen(n2, cache_implementation="static")
            results["hf_static_compile"] = time_steps(
                lambda n: hf_gen(n, cache_implementation="static"), n1, n2
            )
        except Exception as e:  # a failure to compile is reported, not fatal
            print(f"transformers static cache + torch.compile failed: {e!r}"[:300])
        finally:
            hf.forward = orig
    return results


def gpu_budget(hf: Any, engine: Engine) -> list[dict[str, Any]]:
    """Part 1 on the GPU: 16 prompts of 32..152 random tokens; the end-of-thinking token is one the
    random model emits now and then (found by a plain run), so rows end their thinking at different
    points."""
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 151936, (32 + 8 * i,), generator=gen).tolist() for i in range(16)]
    max_new = 256
    plain = engine.generate([Request(p, SamplingParams(max_new_tokens=max_new)) for p in prompts])
    per_row = Counter(t for r in plain for t in set(r.token_ids))
    end = per_row.most_common(1)[0][0]

    def make_spec(k: int) -> BudgetSpec:
        return BudgetSpec(
            vocab_size=151936,
            think_end=((end,),),
            extensions=((14190, 11),),
            answer_prefix=(9217,),
            num_extensions=k,
        )

    return budget_rows(engine, prompts, make_spec, max_new, repeat=1)


def gpu_part(skip_compile: bool, compile_budget: bool = False) -> dict[str, Any]:
    dev = torch.device("cuda")
    bw = copy_bandwidth(dev)
    card = torch.cuda.get_device_name(dev)
    print(f"\nGPU: {card}; copy bandwidth {bw / 1e9:.0f} GB/s")
    out: dict[str, Any] = {"card": card, "copy_bandwidth_gbs": bw / 1e9, "decode": []}
    sync_every = 0
    for shape in SHAPES:
        hf = hf_model(shape, dev)
        engine = Engine(hf, IdsText(), max_batch=64, max_len=512, eos_token_ids=[])
        sync_every = engine.sync_every
        floor_s = weight_bytes(engine.model) / bw
        for batch in (1, 64):
            key = f"{shape}_b{batch}"
            results = gpu_batch(hf, engine, batch, skip_compile, compile_budget and key == "qwen2.5-1.5b_b1")
            for name, step_s in results.items():
                out["decode"].append(
                    {
                        "shape": shape,
                        "batch": batch,
                        "impl": name,
                        "step_ms": step_s * 1e3,
                        "tokens_per_s": batch / step_s,
                        "pct_of_floor": 100 * floor_s / step_s,
                    }
                )
            base = results["s1kit"]
            for path in ("host", "graph", "graph_compiled"):
                if f"s1kit_budget_{path}" not in results:
                    continue
                pct = 100 * (results[f"s1kit_budget_{path}"] / base - 1)
                out.setdefault(f"{path}_budget_overhead_pct_by_shape", {})[key] = pct
                if key == "qwen2.5-1.5b_b1":
                    out[f"{path}_budget_overhead_pct"] = pct
            loop_pct = 100 * (results["s1kit_host_loop"] / base - 1)
            out.setdefault("host_loop_overhead_pct_by_shape", {})[key] = loop_pct
            if key == "qwen2.5-1.5b_b1":
                out["host_loop_overhead_pct"] = loop_pct
            out.setdefault("speedup_vs_hf_default", {})[key] = results["hf_default"] / base
        if shape == "qwen2.5-1.5b":
            rows = gpu_budget(hf, Engine(hf, IdsText(), max_batch=16, max_len=512, eos_token_ids=[]))
            print_budget_table(f"In-loop vs re-prompting ({card}, {shape} random bf16, batch 16)", rows)
            out["budget_rows"] = rows
            out["inloop_speedup_vs_reprompt"] = rows[-1]["speedup"]
        del engine, hf
        torch.cuda.empty_cache()
    out["sync_every"] = sync_every
    print(f"\ns1kit and s1kit_budget_graph: run-ahead, {sync_every} decode steps per host synchronisation")
    print("\n| shape | batch | impl | step ms | tokens/s | % of bandwidth floor |")
    print("|---|---|---|---|---|---|")
    for r in out["decode"]:
        print(
            f"| {r['shape']} | {r['batch']} | {r['impl']} | {r['step_ms']:.2f} | "
            f"{r['tokens_per_s']:.0f} | {r['pct_of_floor']:.0f}% |"
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-compile", action="store_true", help="leave out transformers + torch.compile")
    ap.add_argument(
        "--compile-budget",
        action="store_true",
        help="also time the in-graph budget step under torch.compile (1.5B shape, batch 1)",
    )
    ap.add_argument("--cpu-only", action="store_true")
    ap.add_argument(
        "--cpu-budget-path",
        choices=("auto", "host", "tensor"),
        default="auto",
        help="the engine's budget_path in the CPU part (auto: host on CPU; tensor: run-ahead windows with "
        "the tensor mirror, eager torch ops)",
    )
    ap.add_argument("--gpu-only", action="store_true")
    args = ap.parse_args()
    summary: dict[str, Any] = {"machine": platform.machine(), "torch": torch.__version__}
    if not args.gpu_only:
        cpu = cpu_part(args.cpu_budget_path)
        summary["cpu_budget_path"] = args.cpu_budget_path
        summary["cpu_budget"] = cpu["rows"]
        summary["inloop_speedup_vs_reprompt"] = cpu["inloop_speedup_vs_reprompt"]
    if args.cpu_only:
        pass
    elif torch.cuda.is_available():
        summary["gpu"] = gpu_part(args.skip_compile, args.compile_budget)
        for key in ("graph_budget_overhead_pct", "host_budget_overhead_pct", "host_loop_overhead_pct"):
            summary[key] = summary["gpu"][key]
        summary["sync_every"] = summary["gpu"]["sync_every"]
        if "graph_compiled_budget_overhead_pct" in summary["gpu"]:
            summary["graph_compiled_budget_overhead_pct"] = summary["gpu"][
                "graph_compiled_budget_overhead_pct"
            ]
    else:
        print("\nGPU part skipped: no CUDA device")
        summary["gpu"] = "skipped: no CUDA device"
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
