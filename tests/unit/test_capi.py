"""The C ABI from C: tests/c/budget_demo.c, compiled with the system compiler against the static library."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEADER_DIR = ROOT / "rust" / "capi" / "include"


def static_library() -> Path:
    """``libs1kit.a`` of a release build, built with cargo when missing."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    lib = target / "release" / "libs1kit.a"
    if not lib.exists():
        if shutil.which("cargo") is None:
            pytest.skip("cargo is not installed: cannot build the s1kit-capi static library")
        subprocess.run(
            ["cargo", "build", "-p", "s1kit-capi", "--release"], cwd=ROOT, check=True, capture_output=True
        )
    return lib


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no system C compiler (cc) on PATH")
    exe = tmp_path_factory.mktemp("capi") / "budget_demo"
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{HEADER_DIR}"]
    cmd += [str(ROOT / "tests" / "c" / "budget_demo.c"), str(static_library())]
    cmd += ["-lpthread", "-ldl", "-lm", "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


def test_c_program_drives_a_batch_through_cap_and_extension(demo: Path) -> None:
    run = subprocess.run([str(demo)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "FAIL" not in run.stdout
    # The exact token streams (see the program's header comment).
    assert "row 0: 10 10 10 10 10 10 2 5 6 11 9" in lines
    assert "row 1: 3 4 3 4 2 12 9" in lines
    assert lines[-1] == "budget_demo: OK"
    assert sum(line.startswith("ok ") for line in lines) == 10


def test_header_compiles_as_cpp() -> None:
    cxx = shutil.which("c++")
    if cxx is None:
        pytest.skip("no system C++ compiler (c++) on PATH")
    src = (
        '#include "s1kit.h"\nint main() { S1kitBatch *b = nullptr; return (int)s1kit_batch_new(1, 0, &b); }\n'
    )
    run = subprocess.run(
        [cxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Werror", f"-I{HEADER_DIR}", "-x", "c++", "-"],
        input=src,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
