"""Difficulty: drop questions that reference models already solve, with keep-all rules by source.

s1 dropped every question that Qwen2.5-7B-Instruct or Qwen2.5-32B-Instruct answered correctly (from
per-model correctness columns), and used trace length as a second difficulty signal. Rules here:

- ``solved_by``: models whose correctness columns count (default: every correctness column found);
  ``rule="any"`` drops a question solved by any of them (s1), ``"all"`` only one solved by all;
- ``keep_sources``: sources (substring match, case-insensitive) kept whatever the models did, e.g.
  s1's "all AIME and GPQA";
- ``min_trace_tokens``: ``{source: n}``, rows from that source need a trace longer than ``n`` tokens
  (s1: "MATH only with traces over 5,600 tokens"). Rows kept by ``keep_sources`` are exempt.

Rows kept by a keep-all source are marked so that diversity sampling selects them first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from s1kit.curate.dedup import trace_length
from s1kit.curate.schema import Row
from s1kit.errors import ConfigFieldError


@dataclass
class DifficultyConfig:
    solved_by: tuple[str, ...] | None = None
    rule: str = "any"
    keep_sources: tuple[str, ...] = ()
    min_trace_tokens: dict[str, int] = field(default_factory=dict)


@dataclass
class DifficultyResult:
    drops: dict[int, tuple[str, dict[str, Any]]]
    must_keep: set[int]
    note: str


def _matches(source: str | None, patterns: tuple[str, ...] | list[str]) -> str | None:
    s = (source or "").lower()
    return next((p for p in patterns if p.lower() in s), None)


def parse_min_trace_tokens(specs: list[str]) -> dict[str, int]:
    """Parse ``["math=5600", ...]`` into ``{"math": 5600}``."""
    out: dict[str, int] = {}
    for spec in specs:
        src, sep, n = spec.partition("=")
        if not sep or not src or not n.strip().isdigit():
            raise ConfigFieldError(
                f"`min_trace_tokens` {spec!r}: use SOURCE=TOKENS, e.g. math=5600", "min_trace_tokens"
            )
        out[src] = int(n)
    return out


def select_difficult(rows: list[Row], cfg: DifficultyConfig) -> DifficultyResult:
    if cfg.rule not in ("any", "all"):
        raise ConfigFieldError(f"`rule` {cfg.rule!r}: use 'any' (s1) or 'all'", "rule")
    found = sorted({m for r in rows for m in r.correct})
    models = list(cfg.solved_by) if cfg.solved_by is not None else found
    missing = [m for m in models if m not in found]
    if cfg.solved_by is not None and missing:
        raise ConfigFieldError(
            f"`solved_by` names model(s) {missing} without a correctness column; columns found: "
            f"{found or 'none'}",
            "solved_by",
        )
    drops: dict[int, tuple[str, dict[str, Any]]] = {}
    must_keep: set[int] = set()
    for r in rows:
        if _matches(r.source, cfg.keep_sources):
            must_keep.add(r.row)
            continue
        rule_src = _matches(r.source, list(cfg.min_trace_tokens))
        if rule_src is not None:
            need = cfg.min_trace_tokens[rule_src]
            have = trace_length(r)
            if have <= need:
                drops[r.row] = (
                    f"trace not longer than {need} tokens for source {rule_src}",
                    {"trace_length": have},
                )
                continue
        verdicts = [r.correct[m] for m in models if m in r.correct]
        if not verdicts:
            continue
        solved = any(verdicts) if cfg.rule == "any" else all(verdicts) and len(verdicts) == len(models)
        if solved:
            who = [m for m in models if r.correct.get(m)]
            drops[r.row] = ("solved by reference model(s)", {"solved_by": who})
    note = f"models: {', '.join(models)}" if models else "no correctness columns: only source/length rules"
    return DifficultyResult(drops, must_keep, note)
