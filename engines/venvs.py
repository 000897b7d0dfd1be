"""Create or reuse one virtualenv per engine release in engines/versions.txt, with s1kit in it.

Usage: ``python engines/venvs.py [NAME ...]`` (default: all). Virtualenvs live in
``$S1KIT_ENGINE_VENVS`` (default ``.venv-engines/``, git-ignored), one folder per name, and are
reused while their ``versions.txt`` line is unchanged (``.spec`` in each records it). Each gets:
the line's torch from the registry, the engine wheel with ``--no-deps``, the engine's own
requirements except torch and, without CUDA, the GPU-only kernel packages below, and s1kit from
this checkout (a ``.pth`` entry for ``python/``, rewritten on every run so that a cached venv
serves the checkout that runs it: build the extension first with ``make ext``).
Prints ``NAME PATH`` per ready venv; a venv that cannot be built prints ``NAME FAILED: why`` and
the script goes on (exit status 1 at the end).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ROOT / "engines" / "versions.txt"
# Kernel and media packages the GPU wheels require that neither install nor matter without CUDA.
GPU_ONLY = {
    "flashinfer-python", "flashinfer_python", "tilelang", "apache-tvm-ffi", "nvidia-cudnn-frontend",
    "nvtx", "fastsafetensors", "instanttensor", "nvidia-cutlass-dsl", "quack-kernels",
    "tokenspeed-mla", "humming-kernels", "pynvvideocodec", "torchaudio", "torchcodec",
    "intel-openmp", "sgl-deep-ep", "sgl-deep-gemm", "sgl-flash-mla", "sglang-kernel",
    "flash-attn-4", "nvshmem4py-cu13", "nvidia-mathdx", "cuda-python", "torch-memory-saver",
    "torch_memory_saver", "deepseek-recipe", "tml-renderers", "decord2", "av", "py-spy", "kernels",
    "smg-grpc-servicer", "timm", "datasets", "modelscope", "soundfile", "nvidia-ml-py", "setuptools",
}  # fmt: skip


def lines() -> list[tuple[str, str, str]]:
    out = []
    for raw in VERSIONS.read_text().splitlines():
        raw = raw.split("#", 1)[0].strip()
        if raw:
            name, package, torch = raw.split()
            out.append((name, package, torch))
    return out


def requirements(wheel: Path) -> list[str]:
    """The wheel's unconditional requirements minus torch and (without CUDA) GPU-only packages."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    reqs = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = line.split(":", 1)[1].strip()
        if "extra ==" in req:
            continue
        name = re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0].lower()
        if name == "torch" or name in GPU_ONLY:
            continue
        reqs.append(req)
    return reqs


def build(name: str, package: str, torch: str, venv: Path) -> None:
    spec_line = f"{package} {torch}\n"
    if (venv / ".spec").exists() and (venv / ".spec").read_text() == spec_line:
        _link_checkout(venv)  # a cached venv may have been made from another checkout
        return
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([*pip[:-2], "download", "-q", "--no-deps", "-d", tmp, package], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text("\n".join(requirements(wheel)) + "\n")
        subprocess.run([*pip, torch, "-r", str(reqs)], check=True)
        subprocess.run([*pip, "--no-deps", str(wheel)], check=True)
    # SGLang 0.5.23 imports dill (custom processors' wire format) without requiring it.
    extra = ["dill"] if package.startswith("sglang") else []
    subprocess.run([*pip, "pytest", "hypothesis", *extra], check=True)
    _link_checkout(venv)
    (venv / ".spec").write_text(spec_line)


def _link_checkout(venv: Path) -> None:
    """Point the venv's s1kit at this checkout (a ``.pth`` entry for ``python/`` and the root)."""
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "s1kit-checkout.pth").write_text(f"{ROOT / 'python'}\n{ROOT}\n")


def main(argv: list[str]) -> int:
    root = Path(os.environ.get("S1KIT_ENGINE_VENVS", ROOT / ".venv-engines"))
    root.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name, package, torch in lines():
        if argv and name not in argv:
            continue
        try:
            with open(root / f"{name}.lock", "w") as lock:  # one builder per venv at a time
                fcntl.flock(lock, fcntl.LOCK_EX)
                build(name, package, torch, root / name)
        except (subprocess.CalledProcessError, StopIteration, OSError) as e:
            print(f"{name} FAILED: {e}", flush=True)
            failed += 1
            continue
        print(f"{name} {root / name}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
