"""``--engine openai`` (s1kit.backends.openai) against a real vLLM server on loopback, and the recipe
of docs/serving.md run as written.

Two servers on the chain model of ``test_vllm_backend.py`` (greedy is robust there, so s1kit's own
engine is the reference, field for field): one started with the budget processor, one without it
(the client must refuse it). Skips where vLLM's engine cannot start.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s1kit.backends import EngineOptions, load_backend
from s1kit.budget import BudgetSpec
from s1kit.errors import S1kitError
from s1kit.generate.types import Request, SamplingParams
from tests.engines.test_vllm_backend import FIELDS, requests, save_chain_model
from tests.engines.test_vllm_e2e import vllm_engine_here
from tests.engines.test_vllm_served import run_server
from tests.unit.tiny_lm import s1_prompt

pytestmark = pytest.mark.filterwarnings("ignore")
MAX_LEN = 4352  # the documented request: 4096 new tokens after a short prompt
DOC = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def doc_blocks(lang: str) -> list[str]:
    text = DOC.read_text()
    return [b.split("```", 1)[0] for b in text.split(f"```{lang}\n")[1:]]


def documented_server_args() -> tuple[dict[str, str], list[str]]:
    """The environment and the flags after ``vllm serve MODEL`` of docs/serving.md's server line."""
    block = next(b for b in doc_blocks("bash") if "vllm serve" in b)
    words = shlex.split(block.replace("\\\n", " "))
    env = dict(w.split("=", 1) for w in words[: words.index("vllm")])
    flags = words[words.index("serve") + 2 :]
    return env, flags


def start_server(path: Path, processor: bool) -> Iterator[str]:
    env, flags = documented_server_args()
    if not processor:
        flags = flags[: flags.index("--logits-processors")] + flags[flags.index("--logits-processors") + 2 :]
    args = [*flags, "--max-model-len", str(MAX_LEN), "--max-num-seqs", "8"]
    yield from run_server(path, args, env, path / f"server-{processor}.log")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    vllm_engine_here()
    path = tmp_path_factory.mktemp("chain_qwen2_served")
    return path, save_chain_model(path)


@pytest.fixture(scope="module")
def served(model: tuple[Path, Any]) -> Iterator[str]:
    yield from start_server(model[0], processor=True)


def test_documented_server_line_loads_the_processor() -> None:
    env, flags = documented_server_args()
    assert flags == ["--logits-processors", "s1kit.budget.adapters.vllm:BudgetForcingLogitsProcessor"]
    assert env == {"VLLM_USE_V2_MODEL_RUNNER": "0"}


def test_openai_backend_equals_s1kit_engine_field_for_field(model: tuple[Path, Any], served: str) -> None:
    path, tok = model
    reqs = requests(tok)
    backend = load_backend("openai", str(path), EngineOptions(base_url=served + "/v1", max_batch=8))
    assert backend.max_len == MAX_LEN  # read from the server's /v1/models
    got = backend.generate(reqs)
    own = load_backend("s1kit", str(path), EngineOptions(device="cpu", dtype="float32", max_len=MAX_LEN))
    want = own.generate(reqs)
    for r, g, w in zip(reqs, got, want, strict=True):
        for f in FIELDS:
            assert getattr(g, f) == getattr(w, f), f"{r.request_id}: {f}"
    assert any(w.extensions_used == 2 for w in want) and any(w.capped for w in want)


def test_documented_request_body_and_client_snippets_run_as_written(
    model: tuple[Path, Any], served: str
) -> None:
    path, tok = model
    body_code, client_code = (b for b in doc_blocks("python") if "vllm_xargs" in b or "load_backend" in b)
    prompt = s1_prompt(tok, "x")
    scope: dict[str, Any] = {"tok": tok, "MODEL": str(path), "URL": served, "prompt_ids": prompt}
    exec(body_code, scope)
    choice = scope["choice"]
    spec = scope["spec"]
    own = load_backend("s1kit", str(path), EngineOptions(device="cpu", dtype="float32", max_len=MAX_LEN))
    (want,) = own.generate([Request(prompt, SamplingParams(max_new_tokens=4096), spec)])
    # The raw reply ends with the EOS that stops a finished budget (the backend drops it) or EOS.
    assert choice["token_ids"][: len(want.token_ids)] == want.token_ids
    assert choice["text"].count("Wait") == 2 and want.extensions_used == 2
    exec(client_code, scope)
    (res,) = scope["results"]
    assert res.token_ids == want.token_ids
    assert (res.thinking_tokens, res.extensions_used, res.capped) == (
        want.thinking_tokens,
        want.extensions_used,
        want.capped,
    )


def test_server_without_the_processor_is_refused(model: tuple[Path, Any]) -> None:
    path, tok = model
    for base in start_server(path, processor=False):
        backend = load_backend("openai", str(path), EngineOptions(base_url=base))
        spec = BudgetSpec.from_tokenizer(tok, max_thinking_tokens=3, num_extensions=2, max_answer_tokens=3)
        req = Request(s1_prompt(tok, "x"), SamplingParams(max_new_tokens=30), spec, "r0")
        with pytest.raises(S1kitError, match=re.escape("--logits-processors s1kit.budget.adapters.vllm:")):
            backend.generate([req])
        # Without a budget the same server is fine to use.
        (plain,) = backend.generate([Request(s1_prompt(tok, "x"), SamplingParams(max_new_tokens=5))])
        assert len(plain.token_ids) <= 5
