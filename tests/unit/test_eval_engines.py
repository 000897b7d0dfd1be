"""``--engine``, the engine options and ``--forcing`` in ``s1kit eval`` / ``s1kit generate``."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from s1kit.backends import EngineOptions
from s1kit.backends.arguments import options_record
from s1kit.errors import ConfigError
from s1kit.eval import cli as eval_cli
from s1kit.generate import cli as generate_cli

OLD_RUN = Path(__file__).resolve().parents[1] / "assets" / "eval_samples_v1"


def _parse(module: Any, argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    module.add_arguments(p)
    return p.parse_args(argv)


def _tasks(tmp: Path) -> Path:
    path = tmp / "mine.jsonl"
    rows = [
        {"id": "a", "question": "What is two and three?", "answer": "5"},
        {"id": "b", "question": "Find x if 2x + 3 = 11.", "answer": "4"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_engine_flags_map_onto_engine_options_the_same_in_both_commands() -> None:
    from s1kit.backends.arguments import engine_options

    flags = [
        "--engine", "vllm", "--device", "cuda:1", "--dtype", "bfloat16", "--max-batch", "64",
        "--max-len", "9000", "--tensor-parallel-size", "8", "--max-model-len", "32768",
        "--gpu-memory-utilization", "0.9", "--engine-args", '{"enforce_eager": true, "seed": 1}',
        "--base-url", "http://h:8000/v1", "--api-key", "k", "--forcing", "reprompt",
    ]  # fmt: skip
    want = EngineOptions(
        device="cuda:1",
        dtype="bfloat16",
        max_batch=64,
        max_len=9000,
        tensor_parallel_size=8,
        gpu_memory_utilization=0.9,
        max_model_len=32768,
        engine_args={"enforce_eager": True, "seed": 1},
        base_url="http://h:8000/v1",
        api_key="k",
    )
    ev = _parse(eval_cli, ["--model", "m", "--out", "o", *flags])
    gen = _parse(generate_cli, ["--model", "m", "--prompt", "p", *flags])
    for args in (ev, gen):
        assert (args.engine, args.forcing) == ("vllm", "reprompt")
        assert engine_options(args, max_len=args.max_len) == want
    # Defaults: s1kit's engine, in-loop forcing; each command keeps its device and length defaults.
    ev = _parse(eval_cli, ["--model", "m", "--out", "o"])
    gen = _parse(generate_cli, ["--model", "m", "--prompt", "p"])
    assert (ev.engine, ev.forcing, ev.device, ev.max_len, ev.dtype) == ("s1kit", "inloop", None, None, "auto")
    assert (gen.engine, gen.forcing, gen.device, gen.max_len) == ("s1kit", "inloop", "cpu", 4096)
    # The key never lands in run.json.
    assert options_record(want)["api_key"] == "set" and options_record(EngineOptions())["api_key"] is None


@pytest.mark.parametrize(
    ("value", "message"),
    [("{bad", "--engine-args is not valid JSON"), ("[1, 2]", "--engine-args must be a JSON object")],
)
def test_engine_args_must_be_a_json_object(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _parse(eval_cli, ["--model", "m", "--out", "o", "--engine-args", value])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--engine", "vllm"], "engine='s1kit', this one has engine='vllm'"),
        (["--forcing", "reprompt"], "forcing='inloop', this one has forcing='reprompt'"),
    ],
)
def test_resuming_with_another_engine_or_forcing_is_refused_before_loading_one(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    # A run folder from before engines were recorded: it was s1kit's engine, in-loop forcing.
    out = tmp_path / "out"
    shutil.copytree(OLD_RUN, out)
    argv = ["--model", str(tmp_path / "absent"), "--out", str(out), "--tasks", f"mine={_tasks(tmp_path)}"]
    with pytest.raises(ConfigError, match=message):
        eval_cli.run(_parse(eval_cli, argv + flags))


@pytest.mark.skipif(
    importlib.util.find_spec("s1kit.backends.vllm") is None or importlib.util.find_spec("vllm") is not None,
    reason="needs the vllm backend module (branch vllm14) and no vllm package installed",
)
@pytest.mark.parametrize("command", ["eval", "generate"])
def test_an_engine_that_is_not_installed_is_one_message_naming_the_extra(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from s1kit.cli import main

    monkeypatch.delenv("S1KIT_DEBUG", raising=False)
    rest = (
        ["--out", str(tmp_path / "o"), "--tasks", f"mine={_tasks(tmp_path)}"]
        if command == "eval"
        else ["--prompt", "hi"]
    )
    assert main([command, "--model", str(tmp_path), "--engine", "vllm", *rest]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"s1kit {command}: error: engine 'vllm' needs the 'vllm' package"), err
    assert "pip install 's1kit[vllm]'" in err and "Traceback" not in err


@pytest.mark.slow
def test_eval_reprompt_stores_the_same_generations_as_inloop_and_what_they_prefilled(tmp_path: Path) -> None:
    import torch

    from tests.unit.test_eval_e2e import _save_tiny_model

    torch.set_num_threads(1)
    model = tmp_path / "model"
    _save_tiny_model(model)
    tasks = _tasks(tmp_path)
    base = [
        "--model", str(model), "--tasks", f"mine={tasks}", "--task-grading", "exact",
        "--methods", "budget_forcing,truncation", "--budgets", "6,12", "--extensions", "0,1,2",
        "--max-new-tokens", "40", "--max-answer-tokens", "8", "--device", "cpu", "--max-batch", "8",
        "--max-len", "256", "--no-progress",
    ]  # fmt: skip
    samples = {}
    for forcing in ("inloop", "reprompt"):
        out = tmp_path / forcing
        assert eval_cli.run(_parse(eval_cli, [*base, "--out", str(out), "--forcing", forcing])) == 0
        run = json.loads((out / "run.json").read_text(encoding="utf-8"))
        assert (run["engine"], run["forcing"]) == ("s1kit", forcing)
        assert run["engine_options"]["max_len"] == 256 and run["engine_options"]["device"] == "cpu"
        assert f"engine s1kit, {forcing} forcing" in (out / "report.md").read_text(encoding="utf-8")
        samples[forcing] = {
            (r["method"], r["key"], r["problem_id"]): r
            for path in sorted((out / "samples" / "mine").glob("*.jsonl"))
            for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())
        }
    inloop, reprompt = samples["inloop"], samples["reprompt"]
    assert set(inloop) == set(reprompt) and len(inloop) == 2 * (2 + 2 + 2)
    same = ("token_ids", "generation", "thinking_tokens", "answer_tokens", "forced_tokens", "extensions_used")
    for k, a in inloop.items():
        b = reprompt[k]
        assert [b[f] for f in (*same, "capped", "finish_reason", "correct")] == [
            a[f] for f in (*same, "capped", "finish_reason", "correct")
        ], k
        assert (a["engine"], a["forcing"], b["forcing"]) == ("s1kit", "inloop", "reprompt")
        assert (a["prefill_tokens"], a["engine_calls"]) == (a["prompt_tokens"], 1)
        if b["extensions_used"] and b["finish_reason"] != "length":
            # the prompt again for every call after the first, plus all text generated before it
            assert b["engine_calls"] >= 2 and b["prefill_tokens"] > 2 * b["prompt_tokens"]
    assert any(r["extensions_used"] for r in reprompt.values())
    assert any(r["capped"] for r in reprompt.values())


@pytest.mark.slow
def test_generate_reprompt_writes_the_same_rows_plus_their_cost(tmp_path: Path) -> None:
    from tests.unit.test_eval_e2e import _save_tiny_model

    model = tmp_path / "model"
    _save_tiny_model(model)
    rows = {}
    for forcing in ("inloop", "reprompt"):
        out = tmp_path / f"{forcing}.jsonl"
        argv = [
            "--model",
            str(model),
            "--prompt",
            "What is two and three?",
            "--prompt",
            "Hmm",
            "--style",
            "s1",
        ]
        argv += ["--num-extensions", "2", "--max-thinking-tokens", "12", "--max-new-tokens", "30"]
        argv += ["--max-len", "128", "--output", str(out), "--forcing", forcing]
        assert generate_cli.run(_parse(generate_cli, argv)) == 0
        rows[forcing] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for a, b in zip(rows["inloop"], rows["reprompt"], strict=True):
        for f in ("token_ids", "text", "thinking_tokens", "forced_tokens", "extensions_used", "capped"):
            assert a[f] == b[f], f
        assert (a["engine"], a["forcing"], a["engine_calls"]) == ("s1kit", "inloop", 1)
        assert a["prefill_tokens"] == len(a["prompt_ids"])
        assert b["forcing"] == "reprompt" and b["engine_calls"] >= 1
