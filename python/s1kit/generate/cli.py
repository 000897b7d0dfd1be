"""``s1kit generate``: budget-forced generation on any engine (``--engine``), JSONL out.

The command layer over :mod:`s1kit.backends` (it loads the chosen backend by name, as ``s1kit eval``
does); the decode engine itself is :class:`s1kit.generate.Engine`, behind ``--engine s1kit``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from s1kit import _io
from s1kit.backends.arguments import add_engine_arguments, engine_options
from s1kit.budget.delimiters import (
    Delimiters,
    add_delimiter_arguments,
    delimiter_flags_given,
    delimiters_from_args,
)

HELP = "Generate with optional budget forcing on s1kit's engine or vLLM/SGLang/transformers/a server (JSONL out)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        type=Path,
        help="Hugging Face model directory (safetensors); with --engine openai, the served model's name",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    src.add_argument(
        "--prompts-file",
        type=Path,
        help="one prompt per line, or JSONL objects with a 'prompt' field (and optional 'id')",
    )
    p.add_argument("--output", type=Path, help="JSONL output file (default: stdout)")
    p.add_argument("--no-chat-template", action="store_true", help="send the prompts as raw text")
    add_engine_arguments(
        p,
        device_default="cpu",
        max_len_default=4096,
        max_len_help="prompt plus generated tokens per request (default: 4096)",
    )
    g = p.add_argument_group(
        "budget forcing (on when any flag of this group is given; the delimiters chosen are printed to "
        "stderr)"
    )
    add_delimiter_arguments(g)
    g.add_argument("--max-thinking-tokens", type=int, help="cap the thinking span, then force the answer")
    g.add_argument("--min-thinking-tokens", type=int, default=0, help="suppress earlier ends of thinking")
    g.add_argument("--num-extensions", type=int, default=0, help="suppress this many ends of thinking")
    s = p.add_argument_group("sampling")
    s.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    s.add_argument("--top-p", type=float, default=1.0)
    s.add_argument("--top-k", type=int, default=0)
    s.add_argument("--seed", type=int)
    s.add_argument("--max-new-tokens", type=int, default=1024)
    s.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")


def _read_prompts(args: argparse.Namespace) -> list[tuple[str, str]]:
    if args.prompt:
        return [(str(i), t) for i, t in enumerate(args.prompt)]
    path: Path = args.prompts_file
    if not path.is_file():
        raise FileNotFoundError(f"--prompts-file {path} does not exist")
    out: list[tuple[str, str]] = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            obj = json.loads(line)
            if "prompt" not in obj:
                from s1kit.errors import DataError

                raise DataError(f"{path}:{i + 1}: a JSON line needs a 'prompt' field")
            out.append((str(obj.get("id", len(out))), str(obj["prompt"])))
        else:
            out.append((str(len(out)), line))
    return out


def render_prompt(tokenizer: Any, text: str, *, chat: bool, delimiters: Delimiters | None) -> str:
    """The text the model continues: chat template (user turn, generation prompt) and thinking opener."""
    if chat:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template: pass --no-chat-template to send raw text")
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text if delimiters is None else delimiters.open_thinking(text, chat=chat)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from s1kit.backends import load_backend
    from s1kit.backends.forcing import generate_forced
    from s1kit.budget import BudgetSpec
    from s1kit.generate.types import Request, SamplingParams

    budget_on = delimiter_flags_given(args) or args.max_thinking_tokens is not None
    budget_on = budget_on or args.num_extensions > 0 or args.min_thinking_tokens > 0
    backend = load_backend(args.engine, str(args.model), engine_options(args, max_len=args.max_len))
    try:
        tok = backend.tokenizer
        spec: BudgetSpec | None = None
        delimiters = None
        if budget_on:
            delimiters = delimiters_from_args(tok, args)
            print(f"s1kit generate: {delimiters.describe()}", file=sys.stderr)
            vocab: int | None = getattr(backend, "vocab_size", None)
            spec = delimiters.spec(
                tok,
                max_thinking_tokens=args.max_thinking_tokens,
                min_thinking_tokens=args.min_thinking_tokens,
                num_extensions=args.num_extensions,
                vocab_size=max(len(tok), vocab or 0),
            )
        sampling = SamplingParams(
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            seed=args.seed,
            max_new_tokens=args.max_new_tokens,
            stop=tuple(args.stop),
        )
        prompts = _read_prompts(args)
        requests = []
        for rid, text in prompts:
            rendered = render_prompt(tok, text, chat=not args.no_chat_template, delimiters=delimiters)
            ids = tok.encode(rendered, add_special_tokens=False)
            requests.append(Request(prompt_ids=ids, sampling=sampling, budget=spec, request_id=rid))
        # --progress: the bar advances per batch of --max-batch requests (any engine); without it the
        # whole list goes to the engine at once.
        step = backend.max_batch if args.progress else max(len(requests), 1)
        outputs = []
        with tqdm(total=len(requests), unit="req", disable=not args.progress) as bar:
            for start in range(0, len(requests), step):
                chunk = requests[start : start + step]
                outputs += generate_forced(backend, chunk, args.forcing)
                bar.update(len(chunk))
    finally:
        backend.close()
    lines = []
    for (_, text), (res, cost) in zip(prompts, outputs, strict=True):
        row = {
            "prompt": text,
            **dataclasses.asdict(res),
            "engine": backend.name,
            "forcing": args.forcing,
            "prefill_tokens": cost.prefill_tokens,
            "engine_calls": cost.engine_calls,
        }
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    if args.output:  # written whole or not at all (a kill leaves the old file or none)
        _io.write_text(args.output, "".join(lines))
    else:
        sys.stdout.writelines(lines)
    return 0
