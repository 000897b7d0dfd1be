"""``s1kit train``: SFT on s1K-style reasoning traces, one process or under torchrun.

Every :class:`~s1kit.train.config.TrainConfig` field is an option (``--block-size``, ``--lr``, ...);
``--preset s1`` sets the paper's values first and explicit options override them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any

HELP = "Fine-tune a causal LM on reasoning traces (FSDP2, packing, chunked loss, resumable)."


def _arg_type(tp: Any) -> tuple[Any, list[str] | None]:
    """(argparse type, choices) for a dataclass field type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and type(None) in args):
        inner = [a for a in args if a is not type(None)]
        return _arg_type(inner[0])
    if origin is typing.Literal:
        return type(args[0]), list(args)
    return tp, None


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls`` (a string literal right after it), one line."""
    import ast
    import inspect
    import itertools
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    out: dict[str, str] = {}
    for stmt, nxt in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            out[stmt.target.id] = " ".join(nxt.value.value.split())
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from s1kit.train.config import PRESETS, TrainConfig

    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="start from these values (s1: the paper's)"
    )
    hints = typing.get_type_hints(TrainConfig)
    docs = field_docs(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        tp, choices = _arg_type(hints[f.name])
        # argparse expands %-formats in help strings.
        default = repr(f.default) if isinstance(f.default, str) else f.default
        help_text = f"{docs.get(f.name, '')} (default {default})".strip().replace("%", "%%")
        if tp is bool:
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(flag, dest=f.name, type=tp, choices=choices, default=None, help=help_text)


def config_from_args(args: argparse.Namespace) -> Any:
    from s1kit.train.config import TrainConfig, preset

    cfg = preset(args.preset) if args.preset else TrainConfig()
    changes = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    return cfg.replace(**changes)


def run(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from s1kit.train.trainer import train

    cfg = config_from_args(args)
    try:
        result = train(cfg)  # errors are reported by s1kit.cli's one error policy
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if result.export_dir is not None:
        print(f"[s1kit train] exported to {result.export_dir}", file=sys.stderr)
    return 0
