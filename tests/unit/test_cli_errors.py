"""One error policy for every subcommand: a user error is one message on stderr and exit status 2;
``--debug`` (before or after the subcommand) or ``S1KIT_DEBUG=1`` shows the traceback instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from s1kit.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]


def user_errors(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Per subcommand: arguments that are the user's mistake, and what the message must say."""
    return {
        "demo": (["demo", "--out", str(tmp / "d"), "--nproc", "0"], "--nproc 0: use 1 or more"),
        "budget": (["budget", "--tokenizer", str(tmp / "no_tok")], "no_tok: no such folder"),
        "train": (
            ["train", "--model", str(tmp / "no_model"), "--data", str(tmp / "d.jsonl")],
            "no_model: no such folder; pass --model",
        ),
        "generate": (["generate", "--model", str(tmp), "--prompt", "hi"], "has no config.json"),
        "eval": (
            ["eval", "--model", "m", "--out", str(tmp / "e"), "--report-only"],
            "run.json is missing: this is not an `s1kit eval` output folder",
        ),
        "curate": (["curate", str(tmp / "nope.jsonl"), "--out", str(tmp / "o")], "nope.jsonl: no such file"),
        "distill": (
            [
                "distill",
                "--teacher",
                str(tmp),
                "--in",
                str(tmp / "nope.jsonl"),
                "--out",
                str(tmp / "t.jsonl"),
            ],
            "--in " + str(tmp / "nope.jsonl") + ": no such file",
        ),
    }


def test_every_subcommand_is_covered(tmp_path: Path) -> None:
    assert set(user_errors(tmp_path)) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_user_error_is_one_message_and_exit_2(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("S1KIT_DEBUG", raising=False)
    argv, expected = user_errors(tmp_path)[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0].startswith(f"s1kit {command}: error: "), err
    assert expected in lines[0], err
    assert "Traceback" not in err
    assert lines[-1] == "  (run again with --debug for the traceback)"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_flag_shows_the_traceback(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S1KIT_DEBUG", raising=False)
    argv, _ = user_errors(tmp_path)["curate"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(Exception, match="no such file or folder"):
        main(argv)


def test_environment_variable_shows_the_traceback_from_the_console_script(tmp_path: Path) -> None:
    argv, _ = user_errors(tmp_path)["curate"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    plain = subprocess.run(
        [sys.executable, "-m", "s1kit.cli", *argv], capture_output=True, text=True, env=env, check=False
    )
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert len(plain.stderr.splitlines()) == 2
    debug = subprocess.run(
        [sys.executable, "-m", "s1kit.cli", *argv],
        capture_output=True,
        text=True,
        env={**env, "S1KIT_DEBUG": "1"},
        check=False,
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "DataError" in debug.stderr
