"""vLLM end to end with budget forcing on a real model: tokens/s against vLLM's own settings.

Cases, each in its own engine (same model, prompts and seed), all with vLLM's default settings
(asynchronous scheduling on) except where named:

1. ``off``: no forcing, no cap (baseline);
2. ``builtin-cap``: vLLM's ``thinking_token_budget`` (needs ``--reasoning-parser``);
3. ``s1kit-cap``: the s1kit adapter, cap only;
4. ``s1kit-cap+2ext``: the s1kit adapter, cap and two "Wait" extensions.

Prints per case tokens/s, ratio to ``off``, mean generated tokens, and for the s1kit cases the
count of requests that show the forced texts (so a run where forcing silently stopped, as with
placeholder ids under async scheduling, is visible). GPU only; the model must be local (no hub):

    python bench/vllm_forcing.py --model /models/Qwen3-0.6B --reasoning-parser qwen3

``--runner`` picks vLLM's model runner for every case (baseline included, so the comparison stays
on one runner) and the matching adapter: ``v1`` (default below vLLM 0.34; sets
VLLM_USE_V2_MODEL_RUNNER=0) loads ``s1kit.budget.adapters.vllm``, ``v2`` (default from vLLM 0.34,
which has only Model Runner V2; on 0.33 sets VLLM_USE_V2_MODEL_RUNNER=1) loads
``s1kit.budget.adapters.vllm_v2``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from typing import Any


def run_case(args: argparse.Namespace, case: str, prompts: list[str]) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    from s1kit.budget import BudgetSpec
    from s1kit.budget.adapters.params import KEY, spec_to_params

    if args.runner == "v2":
        from s1kit.budget.adapters.vllm_v2 import BudgetForcingLogitsProcessor
    else:
        from s1kit.budget.adapters.vllm import BudgetForcingLogitsProcessor  # type: ignore[assignment]

    tok = AutoTokenizer.from_pretrained(args.model)
    kwargs: dict[str, Any] = dict(
        model=args.model, seed=0, max_model_len=args.max_len, gpu_memory_utilization=0.85
    )
    if case.startswith("s1kit"):
        kwargs["logits_processors"] = [BudgetForcingLogitsProcessor]
    if case == "builtin-cap":
        kwargs["reasoning_parser"] = args.reasoning_parser
    llm = LLM(**kwargs)
    params: dict[str, Any] = dict(temperature=0.6, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    if case == "builtin-cap":
        params["thinking_token_budget"] = args.cap
    elif case.startswith("s1kit"):
        spec = BudgetSpec.from_tokenizer(
            tok,
            style="think_tags",
            max_thinking_tokens=args.cap,
            num_extensions=2 if case.endswith("2ext") else 0,
            max_answer_tokens=args.max_tokens,
        )
        params["extra_args"] = {KEY: spec_to_params(spec)}
    sp = SamplingParams(**params)
    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    llm.generate(texts[:2], sp)  # warm-up
    t0 = time.perf_counter()
    outs = llm.generate(texts, sp)
    dt = time.perf_counter() - t0
    n_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    waits = sum(o.outputs[0].text.count("Wait") >= 2 for o in outs)
    answers = sum("Final Answer:" in o.outputs[0].text for o in outs)
    del llm
    gc.collect()
    torch.cuda.empty_cache()
    return dict(
        case=case,
        tok_s=n_tokens / dt,
        mean_tokens=n_tokens / len(outs),
        two_waits=waits,
        answer_prefix=answers,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="local path of a small reasoning model (think tags)")
    p.add_argument("--reasoning-parser", default="qwen3", help="vLLM reasoning parser for the built-in cap")
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--cap", type=int, default=256, help="thinking tokens before the answer is forced")
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--max-len", type=int, default=2048)
    p.add_argument("--cases", default="off,builtin-cap,s1kit-cap,s1kit-cap+2ext")
    p.add_argument("--runner", choices=["v1", "v2"], help="vLLM model runner (default: by vLLM version)")
    args = p.parse_args()
    import vllm

    if args.runner is None:
        major, minor = (int(x) for x in vllm.__version__.split("+")[0].split(".")[:2])
        args.runner = "v2" if (major, minor) >= (0, 34) else "v1"
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "1" if args.runner == "v2" else "0"
    import torch

    prompts = [f"What is {i} times {i + 7}? Think step by step." for i in range(args.requests)]
    print(
        f"card: {torch.cuda.get_device_name(0)}  vllm {vllm.__version__} ({args.runner} runner)  "
        f"torch {torch.__version__}"
    )
    rows = [run_case(args, case, prompts) for case in args.cases.split(",")]
    base = next((r["tok_s"] for r in rows if r["case"] == "off"), None)
    print(f"{'case':<16}{'tok/s':>10}{'vs off':>8}{'mean tok':>10}{'2 Waits':>9}{'prefix':>8}")
    for r in rows:
        ratio = f"{r['tok_s'] / base:.2f}" if base else "-"
        print(
            f"{r['case']:<16}{r['tok_s']:>10.0f}{ratio:>8}{r['mean_tokens']:>10.1f}"
            f"{r['two_waits']:>9}{r['answer_prefix']:>8}"
        )
    print(json.dumps({"bench": "vllm_forcing", "rows": rows}))


if __name__ == "__main__":
    main()
