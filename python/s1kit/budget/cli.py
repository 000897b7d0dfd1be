"""``s1kit budget``: show how a tokenizer spells a budget spec (delimiters, extension, answer prefix)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Show the token ids a budget spec gets from a tokenizer (checks that every string round-trips)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tokenizer", required=True, help="tokenizer directory or hub id (loaded with AutoTokenizer)"
    )
    p.add_argument(
        "--style", choices=["s1", "think_tags"], default="s1", help="delimiter style (default: s1)"
    )
    p.add_argument("--max-thinking-tokens", type=int, default=None, help="thinking cap (default: none)")
    p.add_argument("--min-thinking-tokens", type=int, default=0, help="suppress ends before this many tokens")
    p.add_argument(
        "--num-extensions", type=int, default=0, help="suppress the first N ends with the extension"
    )
    p.add_argument(
        "--extension", action="append", default=None, help="extension text, repeatable (default: Wait)"
    )
    p.add_argument("--answer-prefix", default=None, help="forced at the cap (default: the style's)")


def run(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from s1kit.budget import BudgetSpec

    if args.tokenizer.startswith((".", "/", "~")) and not Path(args.tokenizer).expanduser().is_dir():
        raise ValueError(
            f"--tokenizer {args.tokenizer}: no such folder; pass a tokenizer directory or hub id"
        )
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    spec = BudgetSpec.from_tokenizer(
        tok,
        style=args.style,
        max_thinking_tokens=args.max_thinking_tokens,
        min_thinking_tokens=args.min_thinking_tokens,
        num_extensions=args.num_extensions,
        extension=args.extension or "Wait",
        answer_prefix=args.answer_prefix,
    )
    rows = [
        ("think_start", spec.think_start),
        ("think_end", spec.think_end),
        ("extensions", spec.extensions),
        ("answer_prefix", (spec.answer_prefix,)),
        ("eos", tuple((t,) for t in spec.eos)),
    ]
    print(
        f"vocab_size {spec.vocab_size}; max_thinking_tokens {spec.max_thinking_tokens}; "
        f"min_thinking_tokens {spec.min_thinking_tokens}; num_extensions {spec.num_extensions}"
    )
    for name, seqs in rows:
        for ids in seqs:
            print(f"{name:14} {list(ids)!s:40} {tok.decode(list(ids), skip_special_tokens=False)!r}")
    return 0
