"""In-loop budget forcing vs s1-style re-prompting on the same serving engine (``--engine vllm``).

Same engine instance, same prompts, greedy, "Wait" forced 0, 2, 4 and 6 times:

- **in-loop** (baseline name ``inloop``): one ``Backend.generate`` call per batch; s1kit's processor
  forces every extension inside the engine's decode loop, each prompt is prefilled once;
- **re-prompt** (``reprompt``, the baseline s1's reference code uses): ``bench/reprompt.py``'s loop on
  the same backend, one engine call per round; a row that tried to end its thinking gets "Wait"
  appended and is sent again with its whole prefix (re-prefilled unless the engine's prefix cache
  holds it), a row at the cap gets the answer prefix appended.

(``s1kit eval --forcing reprompt`` was not on main when this was written, so the re-prompt loop is
``bench/reprompt.py``'s, driven through the Backend interface.) Per extension count: wall time of
each (best of ``--repeat``), the ratio reprompt/inloop, prompt tokens submitted (what the engine was
asked to prefill; "re-prefilled" is the excess over the prompts; "prefix-cached": of those, the ones
vLLM's prefix cache served, in the last run, so not computed again), generated tokens, rounds, and
whether both produced the same ids for every prompt. Key: ``speedup_at_6`` (target >= 1.5 on 16
prompts) and ``reprefilled_inloop`` (0 by construction: each prompt is submitted once).

Without ``--model``, a tiny random Llama (head_dim 64, as vLLM's CPU attention needs) is built and
saved to a temporary folder, its end-of-thinking token made frequent as in ``bench/decode.py``. On a
GPU, pass a real local model and ``--style think_tags`` for a model with ``<think>`` tags (prompts then
go through its chat template; with ``--style s1`` they are s1-style text).

    PYTHONPATH=python:. python bench/forcing_inloop_vs_reprompt.py --engine vllm [--model DIR]

Prints a markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from bench.decode import QUESTIONS
from bench.reprompt import reprompt_generate
from s1kit.backends import EngineOptions, load_backend
from s1kit.budget import BudgetSpec
from s1kit.generate.types import Request, SamplingParams


class CachedTokens:
    """Counts the prompt tokens vLLM served from its prefix cache (``RequestOutput.num_cached_tokens``)
    by wrapping the backend's ``LLM.generate``; engines without it count 0."""

    def __init__(self, backend: Any) -> None:
        self.total = 0
        llm = getattr(backend, "llm", None)
        if llm is None or not hasattr(llm, "generate"):
            return
        original = llm.generate

        def generate(*args: Any, **kwargs: Any) -> Any:
            outs = original(*args, **kwargs)
            self.total += sum(int(getattr(o, "num_cached_tokens", 0) or 0) for o in outs)
            return outs

        llm.generate = generate


class BackendAsEngine:
    """What ``reprompt_generate`` uses of an engine (``generate`` and ``eos_token_ids``), from a Backend."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.eos_token_ids = [int(backend.tokenizer.eos_token_id)]
        self.calls = 0

    def generate(self, requests: list[Request]) -> list[Any]:
        self.calls += 1
        return self.backend.generate(requests)


def save_tiny_thinking_model(path: Path, max_new: int) -> None:
    """bench/decode.py's tiny Llama, shaped for vLLM's CPU attention (head_dim 64), saved to ``path``."""
    import torch
    from transformers import GenerationConfig

    from s1kit.generate import Engine
    from tests.unit.tiny_lm import favour_token, tiny_hf_model, tiny_tokenizer

    torch.set_num_threads(1)
    tok = tiny_tokenizer()
    hf = tiny_hf_model(
        "llama", tok, seed=7, hidden_size=128, intermediate_size=256, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=1024,
    )  # fmt: skip
    prompts = [s1_text_ids(tok, q) for q in QUESTIONS]
    plain = Engine(hf, tok, max_batch=16, max_len=512).generate(
        [Request(p, SamplingParams(max_new_tokens=max_new)) for p in prompts]
    )
    counts = Counter(t for r in plain for t in r.token_ids if t >= len(tok.all_special_ids))
    favour_token(hf, tok.convert_tokens_to_ids("<|im_start|>"), like=counts.most_common(3)[2][0])
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(path)


def s1_text_ids(tok: Any, question: str) -> list[int]:
    ids: list[int] = tok.encode(
        f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n<|im_start|>think\n"
    )
    return ids


def rows_for(
    backend: Any, prompts: list[list[int]], counts: list[int], max_new: int, repeat: int, style: str
) -> list[dict[str, Any]]:
    tok = backend.tokenizer
    engine = BackendAsEngine(backend)
    cached = CachedTokens(backend)

    def reqs(spec: BudgetSpec) -> list[Request]:
        return [
            Request(p, SamplingParams(max_new_tokens=max_new), spec, str(i)) for i, p in enumerate(prompts)
        ]

    backend.generate(reqs(BudgetSpec.from_tokenizer(tok, style=style, num_extensions=1)))  # warm-up
    rows = []
    for k in counts:
        spec = BudgetSpec.from_tokenizer(tok, style=style, num_extensions=k)
        t_in = t_re = float("inf")
        for _ in range(repeat):
            c0 = cached.total
            t0 = time.perf_counter()
            res = backend.generate(reqs(spec))
            t_in = min(t_in, time.perf_counter() - t0)
            c1 = cached.total
            t0 = time.perf_counter()
            base, stats = reprompt_generate(engine, prompts, spec, max_new)  # type: ignore[arg-type]
            t_re = min(t_re, time.perf_counter() - t0)
            cached_in, cached_re = c1 - c0, cached.total - c1  # the last run's
        submitted = sum(len(p) for p in prompts)
        rows.append(
            {
                "extensions": k,
                "inloop_s": t_in,
                "reprompt_s": t_re,
                "speedup": t_re / t_in,
                "prefill_inloop": submitted,
                "prefill_reprompt": stats.prefilled_tokens,
                "reprefilled_inloop": 0,
                "reprefilled_reprompt": stats.prefilled_tokens - submitted,
                "prefix_cached_inloop": cached_in,
                "prefix_cached_reprompt": cached_re,
                "generated_inloop": sum(len(r.token_ids) for r in res),
                "generated_reprompt": sum(len(b.token_ids) for b in base),
                "rounds": stats.rounds,
                "extensions_used": sum(r.extensions_used for r in res),
                "identical": sum(r.token_ids == b.token_ids for r, b in zip(res, base, strict=True)),
            }
        )
    return rows


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", default="vllm", help="backend name (vllm; s1kit for comparison)")
    p.add_argument("--model", help="local model directory (default: a tiny random Llama built here)")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--extensions", default="0,2,4,6")
    p.add_argument("--max-new", type=int, default=160)
    p.add_argument("--repeat", type=int, default=3, help="runs per case; the best time is kept")
    p.add_argument("--style", default="s1", choices=["s1", "think_tags"], help="thinking delimiters")
    p.add_argument("--engine-args", default="{}", help="JSON passed to the engine (vLLM's LLM kwargs)")
    args = p.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    tmp = None
    model = args.model
    if model is None:
        tmp = tempfile.TemporaryDirectory()
        model = tmp.name
        save_tiny_thinking_model(Path(model), args.max_new)
    engine_args = json.loads(args.engine_args)
    if args.engine == "vllm" and args.model is None:
        engine_args.setdefault("enforce_eager", True)
    options = EngineOptions(dtype="float32" if args.model is None else "auto", max_len=1024, max_batch=args.prompts,
                            engine_args=engine_args)  # fmt: skip
    backend = load_backend(args.engine, model, options)
    tok = backend.tokenizer
    questions = [QUESTIONS[i % len(QUESTIONS)] + " " * (i // len(QUESTIONS)) for i in range(args.prompts)]
    if args.style == "s1":
        prompts = [s1_text_ids(tok, q) for q in questions]
    else:  # the model's own chat template, which opens thinking (e.g. Qwen3)
        prompts = [
            list(
                tok.apply_chat_template(
                    [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True
                )
            )
            for q in questions
        ]
    counts = [int(x) for x in args.extensions.split(",")]
    rows = rows_for(backend, prompts, counts, args.max_new, args.repeat, args.style)
    backend.close()
    machine = f"{cpu_name()}, {os.cpu_count()} cpus"
    try:
        import torch

        if torch.cuda.is_available():
            machine = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    version = ""
    if args.engine == "vllm":
        import vllm

        version = f"vllm {vllm.__version__}"
    print(f"\nIn-loop forcing vs re-prompting, --engine {args.engine} ({version}), {machine}, "
          f"{args.prompts} prompts, greedy, max_new {args.max_new}, model {args.model or 'tiny random Llama'}")  # fmt: skip
    print("| Wait x | in-loop s | re-prompt s | re-prompt / in-loop | prefill in-loop | prefill re-prompt "
          "| re-prefilled in-loop | re-prefilled re-prompt | generated in-loop | generated re-prompt "
          "| prefix-cached in-loop | prefix-cached re-prompt | rounds | extensions used | identical |")  # fmt: skip
    print("|" + "---|" * 15)
    for r in rows:
        print(
            f"| {r['extensions']} | {r['inloop_s']:.2f} | {r['reprompt_s']:.2f} | {r['speedup']:.2f}x "
            f"| {r['prefill_inloop']} | {r['prefill_reprompt']} | {r['reprefilled_inloop']} "
            f"| {r['reprefilled_reprompt']} | {r['generated_inloop']} | {r['generated_reprompt']} "
            f"| {r['prefix_cached_inloop']} | {r['prefix_cached_reprompt']} "
            f"| {r['rounds']} | {r['extensions_used']} | {r['identical']}/{args.prompts} |"
        )
    last = rows[-1]
    print(json.dumps({"bench": "forcing_inloop_vs_reprompt", "engine": args.engine, "version": version,
                      "machine": machine, "rows": rows, "speedup_at_max": last["speedup"],
                      "reprefilled_inloop": sum(r["reprefilled_inloop"] for r in rows)}))  # fmt: skip
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
