"""``s1kit train``: SFT on s1K-style reasoning traces, one process or under torchrun.

Every :class:`~s1kit.train.config.TrainConfig` field is an option (``--block-size``, ``--lr``, ...);
``--preset s1`` (or ``s1.1``, ``limo``) sets the recipe's values first and explicit options override them.

Memory: ``--plan`` prints the per-GPU memory plan and exits without loading weights; a real run computes
the same plan first and refuses to start when it does not fit (``--auto-fit`` applies the recommended
settings instead). The check applies when training on CUDA or when ``--gpu-memory`` is given; a CPU run
without ``--gpu-memory`` is not checked. See :mod:`s1kit.train.plan`.
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
    from s1kit.train.config import PRESET_SOURCES, PRESETS, TrainConfig

    sources = "; ".join(f"{k}: {v}" for k, v in PRESET_SOURCES.items())
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help=f"start from a recipe's values, explicit options override them ({sources})".replace("%", "%%"),
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print the per-GPU peak memory plan (parameter, gradient and optimizer shards, gathered layers, "
        "activations, logits chunk, communication buffers) and the settings that fit, then exit; reads only "
        "the model's config, no weights, no GPU needed",
    )
    parser.add_argument(
        "--auto-fit",
        action="store_true",
        help="apply the plan's recommendation (the fastest activation checkpointing / CPU offload / context "
        "parallel setting that fits) instead of refusing to start when the requested setting does not fit",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="GPUs (ranks) to plan for (default: WORLD_SIZE, else the visible CUDA devices, else 1)",
    )
    parser.add_argument(
        "--gpu-memory",
        type=float,
        default=None,
        help="memory per GPU in GiB to plan for (default: the first visible card's; a CPU run is only "
        "memory-checked when this is given)",
    )
    parser.add_argument(
        "--plan-margin",
        type=float,
        default=0.10,
        help="fraction of each GPU's memory (after 1.5 GiB reserved for the CUDA context and NCCL on CUDA; "
        "nothing on CPU) kept free by the plan (default 0.10)",
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
    if args.plan:
        return _print_plan(cfg, args)
    cfg = _check_memory(cfg, args)  # bad plan inputs are reported by s1kit.cli's one error policy
    if cfg is None:
        return 2
    try:
        result = train(cfg)  # errors are reported by s1kit.cli's one error policy
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if result.export_dir is not None:
        print(f"[s1kit train] exported to {result.export_dir}", file=sys.stderr)
    return 0


def _print_plan(cfg: Any, args: argparse.Namespace) -> int:
    from s1kit.train.plan import format_plan, plan_run

    plan = plan_run(cfg, args.gpus, args.gpu_memory, args.plan_margin)
    print(format_plan(plan))
    return 0


def _check_memory(cfg: Any, args: argparse.Namespace) -> Any:
    """The config to run: as given when its plan fits (or cannot be checked), the recommendation with
    --auto-fit, None (after printing why and the plan) when it does not fit."""
    import os

    from s1kit.train.plan import GIB, apply_setting, format_plan, hardware_for, plan_run

    rank0 = int(os.environ.get("RANK", "0")) == 0
    hw, _ = hardware_for(cfg, args.gpus, args.gpu_memory, args.plan_margin)
    if hw.budget is None:  # CPU run without --gpu-memory: not checked
        return cfg
    plan = plan_run(cfg, args.gpus, args.gpu_memory, args.plan_margin)
    budget = plan.hardware.budget
    if budget is None or plan.fits(plan.requested):
        return cfg
    req = plan.requested
    if args.auto_fit:
        rec = next((e for e in plan.fitting if e.setting.distributed == req.setting.distributed), None)
        if rec is not None:
            if rank0:
                print(
                    f"[s1kit train] --auto-fit: {rec.setting.describe()} (planned peak {rec.peak / GIB:.1f} "
                    f"GiB of {budget / GIB:.1f} GiB per GPU)",
                    file=sys.stderr,
                )
            return apply_setting(cfg, rec.setting)
    if rank0:
        print(
            f"s1kit train: error: this run does not fit: planned peak {req.peak / GIB:.1f} GiB per GPU > budget "
            f"{budget / GIB:.1f} GiB; rerun with --auto-fit or one of the options that fit below"
            + (" (under torchrun)" if not req.setting.distributed else ""),
            file=sys.stderr,
        )
        print(format_plan(plan), file=sys.stderr)
    return None
