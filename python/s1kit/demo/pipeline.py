"""The demo's stages: data -> curate -> model -> train -> eval -> report, each through s1kit's own CLI.

Every stage writes its outputs under ``<out>/<stage>/`` and then a marker ``<out>/.done/<stage>``
holding the settings it ran with; a rerun skips a stage whose marker matches and redoes it (and every
later stage) otherwise. The only demo-specific code is the task generator (:mod:`s1kit.demo.tasks`),
the character tokenizer (:mod:`s1kit.demo.tokenizer`), the deterministic torch set-up
(:mod:`s1kit.demo.deterministic`: training runs as ``python -m s1kit.demo.deterministic train ...``, the
evaluation in process after :func:`~s1kit.demo.deterministic.make_deterministic`) and the report page
that puts the stages together (:mod:`s1kit.demo.report`, :mod:`s1kit.demo.scaling`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from s1kit import _io
from s1kit.demo.report import read_jsonl
from s1kit.demo.tasks import Problem, make_problems


@dataclass(frozen=True)
class DemoSize:
    """How big each stage is. ``full`` is the README's ten-minute run; ``small`` is the CI test's."""

    pool: int
    test: int
    k: int
    max_difficulty: int
    hidden: int
    layers: int
    heads: int
    epochs: int
    global_batch: int
    block: int
    lr: float
    budgets: tuple[int, ...]
    extensions: tuple[int, ...]


FULL = DemoSize(
    pool=1300,
    test=120,
    k=1200,
    max_difficulty=4,
    hidden=128,
    layers=3,
    heads=8,
    epochs=20,
    global_batch=32,
    block=1024,
    lr=2e-3,
    budgets=(8, 16, 24, 32, 48, 64),
    extensions=(0, 1, 2),
)
# Budget forcing's caps let a row finish its line (one step of a trace, or `Wait, ` and one step)
# before forcing the answer, so the answer follows a whole step.
GRACE_TOKENS = 12
# The test suite's setting: the same model and recipe, a smaller pool and test set, fewer epochs and
# sweep points.
SIZES: dict[str, DemoSize] = {
    "full": FULL,
    "small": dataclasses.replace(
        FULL, pool=870, test=64, k=800, epochs=20, budgets=(8, 64), extensions=(0, 1)
    ),
}


@dataclass
class Demo:
    out: Path
    size_name: str = "full"
    seed: int = 0
    nproc: int = 2
    progress: bool = True

    @property
    def size(self) -> DemoSize:
        return SIZES[self.size_name]

    def settings(self) -> dict[str, Any]:
        return {
            "size": self.size_name,
            "seed": self.seed,
            "nproc": self.nproc,
            **asdict(self.size),
            "grace_tokens": GRACE_TOKENS,
        }

    # ------------------------------------------------------------------ stage bookkeeping

    def _marker(self, stage: str) -> Path:
        return self.out / ".done" / stage

    def run(self) -> dict[str, Any]:
        """Run (or reuse) every stage; return the timing of each and the report path."""
        self.out.mkdir(parents=True, exist_ok=True)
        stages: list[tuple[str, Callable[[], None]]] = [
            ("data", self.stage_data),
            ("curate", self.stage_curate),
            ("model", self.stage_model),
            ("train", self.stage_train),
            ("eval", self.stage_eval),
            ("report", self.stage_report),
        ]
        settings = json.dumps(self.settings(), sort_keys=True)
        stale = False
        timings: dict[str, float] = {}
        for i, (name, fn) in enumerate(stages):
            marker = self._marker(name)
            if not stale and marker.is_file() and marker.read_text() == settings:
                print(f"[demo {i + 1}/{len(stages)}] {name}: done earlier, reused ({marker})", flush=True)
                timings[name] = json.loads((self.out / ".done" / f"{name}.time").read_text())
                continue
            stale = True
            marker.unlink(missing_ok=True)
            print(f"[demo {i + 1}/{len(stages)}] {name} ...", flush=True)
            t0 = time.perf_counter()
            fn()
            timings[name] = time.perf_counter() - t0
            marker.parent.mkdir(parents=True, exist_ok=True)
            _io.write_text(self.out / ".done" / f"{name}.time", json.dumps(timings[name]))
            _io.write_text(marker, settings)  # last: the stage's outputs are all in place
            print(f"[demo {i + 1}/{len(stages)}] {name}: {timings[name]:.1f}s", flush=True)
        return {"timings": timings, "report": str(self.out / "report.md")}

    def _s1kit(self, *argv: str) -> None:
        """Run one ``s1kit`` subcommand in this process (as a user would from the shell)."""
        from s1kit.cli import main

        code = main(list(argv))
        if code != 0:
            raise RuntimeError(f"s1kit {argv[0]} failed with exit code {code}")

    # ------------------------------------------------------------------ 1. data

    def stage_data(self) -> None:
        d = self.out / "data"
        d.mkdir(parents=True, exist_ok=True)
        s = self.size
        pool = make_problems(s.pool, self.seed, s.max_difficulty)
        test = make_problems(s.test, self.seed + 1_000_003, s.max_difficulty)

        def pool_row(i: int, p: Problem) -> dict[str, Any]:
            return {
                "id": f"pool-{i}",
                "question": p.question,
                "trace": p.trace,
                # What the teacher answered (its trace's last "So <x>."), as s1K's "attempt": wrong
                # exactly when its slip went uncorrected. The right answer is kept apart.
                "answer": p.attempt,
                "reference": p.answer,
                "kind": p.kind,
                "domain": p.domain,
                "source": p.domain,
                "trace_tokens": len(p.trace),  # one token per character
                "difficulty": p.difficulty,
            }

        _write_jsonl(d / "pool.jsonl", [pool_row(i, p) for i, p in enumerate(pool)])
        _write_jsonl(
            d / "test.jsonl",
            [
                {"id": f"test-{i}", "question": p.question, "answer": p.answer, "domain": p.domain}
                | {"difficulty": p.difficulty}
                for i, p in enumerate(test)
            ],
        )

    # ------------------------------------------------------------------ 2. curate

    def stage_curate(self) -> None:
        d = self.out / "data"
        args = ["curate", str(d / "pool.jsonl"), "--out", str(self.out / "curate")]
        args += ["--eval", str(d / "test.jsonl"), "--k", str(self.size.k), "--seed", str(self.seed)]
        # No length rule (--min-trace-tokens): a trace with a recheck is longer than one without, so
        # keeping long traces keeps the easy problems only where they were rechecked, and a model
        # trained on that rechecks easy problems on its own. For the same reason the pool is barely
        # larger than k: the diversity stage prefers long traces among what it may drop.
        args += ["--domains", "column"]
        if not self.progress:
            args.append("--quiet")
        self._s1kit(*args)

    # ------------------------------------------------------------------ 3. tokenizer and initial model

    def stage_model(self) -> None:
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        from s1kit.demo.tokenizer import build_char_tokenizer

        texts = [
            r["question"] + r.get("trace", "") + r["answer"]
            for name in ("pool.jsonl", "test.jsonl")
            for r in read_jsonl(self.out / "data" / name)
        ]
        tok = build_char_tokenizer(texts)
        s = self.size
        torch.manual_seed(self.seed)
        cfg = Qwen2Config(
            vocab_size=len(tok),
            hidden_size=s.hidden,
            intermediate_size=3 * s.hidden,
            num_hidden_layers=s.layers,
            num_attention_heads=s.heads,
            num_key_value_heads=s.heads // 2,
            max_position_embeddings=s.block,
            tie_word_embeddings=True,
            bos_token_id=None,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        model = Qwen2ForCausalLM(cfg)
        n = sum(p.numel() for p in model.parameters())
        print(f"  Qwen2 from scratch: {s.layers} layers, hidden {s.hidden}, {n / 1e6:.2f}M parameters")
        print(f"  character tokenizer: {len(tok)} tokens")
        model.save_pretrained(self.out / "model-init")
        tok.save_pretrained(self.out / "model-init")

    # ------------------------------------------------------------------ 4. train

    def train_args(self) -> list[str]:
        s = self.size
        return [
            "train",
            "--model",
            str(self.out / "model-init"),
            "--data",
            str(self.out / "curate" / "selected.jsonl"),
            "--thinking-field",
            "trace",
            "--answer-field",
            "answer",
            "--answer-prefix",
            "Final Answer: ",
            "--think-style",
            "s1",
            "--output-dir",
            str(self.out / "train"),
            "--epochs",
            str(s.epochs),
            "--global-batch-size",
            str(s.global_batch),
            "--block-size",
            str(s.block),
            "--lr",
            str(s.lr),
            "--warmup-ratio",
            "0.05",
            "--adam-beta2",
            "0.98",
            "--min-lr-ratio",
            "0.1",
            "--weight-decay",
            "0.01",
            "--dtype",
            "fp32",
            "--device",
            "cpu",
            "--seed",
            str(self.seed),
            "--no-tensorboard",
            *([] if self.progress else ["--no-progress"]),
        ]

    def stage_train(self) -> None:
        import shutil

        shutil.rmtree(self.out / "train", ignore_errors=True)
        from s1kit.demo.deterministic import TRAIN_THREADS

        threads = str(TRAIN_THREADS)
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
        src = str(Path(__file__).resolve().parents[2])  # the folder holding the s1kit package
        env["PYTHONPATH"] = os.pathsep.join(x for x in (src, env.get("PYTHONPATH", "")) if x)
        # s1kit train under s1kit.demo.deterministic: pinned threads, deterministic kernels.
        cmd = [sys.executable, "-m", "s1kit.demo.deterministic", *self.train_args()]
        if self.nproc > 1:
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={self.nproc}",
                "-m",
                "s1kit.demo.deterministic",
                *self.train_args(),
            ]
        print("  $ " + " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, env=env)

    # ------------------------------------------------------------------ 5. eval

    def stage_eval(self) -> None:
        import shutil

        import torch

        from s1kit.demo.deterministic import EVAL_THREADS, make_deterministic

        shutil.rmtree(self.out / "eval", ignore_errors=True)
        s = self.size
        longest = max(len(r["trace"]) for r in read_jsonl(self.out / "curate" / "selected.jsonl"))
        max_new = max(max(s.budgets), longest) + 64  # room for the answer after the longest trace
        threads = torch.get_num_threads()
        was_deterministic = torch.are_deterministic_algorithms_enabled()
        make_deterministic(EVAL_THREADS)
        try:
            self._s1kit(
                "eval",
                "--model",
                str(self.out / "train" / "hf"),
                "--out",
                str(self.out / "eval"),
                "--tasks",
                f"demo={self.out / 'data' / 'test.jsonl'}",
                "--task-grading",
                "exact",
                "--methods",
                "budget_forcing,truncation,token_conditional",
                "--budgets",
                ",".join(map(str, s.budgets)),
                "--extensions",
                ",".join(map(str, s.extensions)),
                "--max-new-tokens",
                str(max_new),
                "--max-answer-tokens",
                "48",
                "--grace-tokens",
                str(GRACE_TOKENS),
                "--max-len",
                str(max_new + 128),
                "--max-batch",
                "64",
                "--device",
                "cpu",
                "--seed",
                str(self.seed),
                *([] if self.progress else ["--no-progress"]),
            )
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(was_deterministic)

    # ------------------------------------------------------------------ 6. report

    def stage_report(self) -> None:
        import torch

        from s1kit.demo.deterministic import EVAL_THREADS, TRAIN_THREADS
        from s1kit.demo.report import write_demo_report

        determinism = {
            "train_threads": TRAIN_THREADS,
            "eval_threads": EVAL_THREADS,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        }
        write_demo_report(self.out, self.settings(), determinism)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with _io.atomic_open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
