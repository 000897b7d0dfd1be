"""The ``s1kit`` command line: one subcommand per capability.

This module only dispatches. Each capability owns its subcommand in ``s1kit/<capability>/cli.py``,
which defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported lazily so that ``s1kit --help`` does not import torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> module defining HELP, add_arguments and run.
COMMANDS: dict[str, str] = {
    "demo": "s1kit.demo.cli",
    "budget": "s1kit.budget.cli",
    "train": "s1kit.train.cli",
    "generate": "s1kit.generate.cli",
    "eval": "s1kit.eval.cli",
    "curate": "s1kit.curate.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s1kit",
        description="Simple test-time scaling: curation, SFT, budget-forced generation, evaluation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args._module.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
