"""Run the engine adapter tests inside each engine virtualenv; print versions and tests that ran.

Usage: ``python engines/run_tests.py [NAME ...]`` after ``engines/venvs.py`` (``make test-engines``
does both). Per venv in engines/versions.txt: the engine's and torch's installed versions, then
pytest over ``tests/engines/test_<engine>_*.py``; the summary prints per engine how many tests ran
(passed + failed: not skipped) and why the others skipped. Exit status 1 if any test failed or
a venv is missing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from venvs import ROOT, lines

VERSION = (
    "import importlib.metadata as m, sys; d = sys.argv[1]; "
    "print(d, m.version(d), 'torch', m.version('torch'))"
)


def main(argv: list[str]) -> int:
    root = Path(os.environ.get("S1KIT_ENGINE_VENVS", ROOT / ".venv-engines"))
    bad = 0
    summary = []
    for name, package, _ in lines():
        if argv and name not in argv:
            continue
        py = root / name / "bin" / "python"
        if not py.exists():
            summary.append(f"{name}: NO VENV ({py} missing: run engines/venvs.py {name})")
            bad += 1
            continue
        dist = re.split(r"[=<>]", package)[0]
        version = subprocess.run([str(py), "-c", VERSION, dist], capture_output=True, text=True)
        engine = "sglang" if dist.startswith("sglang") else "vllm"
        tests = sorted(
            str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "engines").glob(f"test_{engine}_*.py")
        )
        print(f"=== {name}: {version.stdout.strip() or version.stderr.strip()}", flush=True)
        run = subprocess.run(
            [str(py), "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *tests],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        out = run.stdout + run.stderr
        print(out[-6000:], flush=True)
        counts = {
            k: int(n)
            for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", _summary_line(run.stdout))
        }
        ran = counts.get("passed", 0) + counts.get("failed", 0)
        summary.append(
            f"{name}: {version.stdout.strip()}: {ran} ran ({counts.get('passed', 0)} passed, "
            f"{counts.get('failed', 0)} failed, {counts.get('error', 0)} errors), {counts.get('skipped', 0)} skipped"
        )
        bad += run.returncode not in (0, 5)
    print("=== engine tests that ran (not skipped), per engine:")
    print("\n".join(summary))
    return 1 if bad else 0


def _summary_line(stdout: str) -> str:
    """pytest's closing line (engines print their own logs after it, e.g. at shutdown)."""
    found = [
        ln for ln in stdout.splitlines() if re.search(r"\d+ (passed|failed|skipped|error).* in [\d.]+s", ln)
    ]
    return found[-1] if found else ""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
