"""The ``s1kit`` command line: one subcommand per capability.

This module only dispatches. Each capability owns its subcommand in ``s1kit/<capability>/cli.py``,
which defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported lazily so that ``s1kit --help`` does not import torch.

Error policy (every subcommand): s1kit's own errors (:class:`~s1kit.errors.S1kitError`: bad data, bad
configuration, a corrupt checkpoint), bad values (``ValueError``/``TypeError`` raised for an argument)
and file-system errors (``OSError``) print one message on stderr, ``s1kit <command>: error: <message>``,
naming the file, line or field and the fix, and exit with status 2 (argparse's usage errors exit 2
too). ``--debug`` (before or after the subcommand) or ``S1KIT_DEBUG=1`` re-raises instead, showing the
traceback. Ctrl-C exits with 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from s1kit.errors import S1kitError

# name -> module defining HELP, add_arguments and run.
COMMANDS: dict[str, str] = {
    "demo": "s1kit.demo.cli",
    "budget": "s1kit.budget.cli",
    "train": "s1kit.train.cli",
    "generate": "s1kit.generate.cli",
    "eval": "s1kit.eval.cli",
    "curate": "s1kit.curate.cli",
    "distill": "s1kit.distill.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s1kit",
        description="Simple test-time scaling: curation, SFT, budget-forced generation, evaluation.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        p.set_defaults(_module=module)
    return parser


DEBUG_HELP = "show the full traceback of an error instead of the one-line message (also: S1KIT_DEBUG=1)"
# Errors that are the user's to fix: reported in one line, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (S1kitError, ValueError, TypeError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("S1KIT_DEBUG", "") not in ("", "0")
    try:
        code: int = args._module.run(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"s1kit {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"s1kit {args.command}: error: {_message(exc)}", file=sys.stderr)
        print("  (run again with --debug for the traceback)", file=sys.stderr)
        return 2
    return code


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    return text


if __name__ == "__main__":
    sys.exit(main())
