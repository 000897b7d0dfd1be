"""The ``s1kit`` console script: every subcommand is registered and documents itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

from s1kit.cli import COMMANDS, build_parser, main


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: s1kit {name}"), out[:200]


def test_top_level_help_lists_every_subcommand() -> None:
    text = build_parser().format_help()
    for name in COMMANDS:
        assert name in text


def test_missing_subcommand_is_a_usage_error() -> None:
    r = subprocess.run([sys.executable, "-m", "s1kit.cli"], capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert "required: COMMAND" in r.stderr
