"""The test-time-scaling methods of the s1 paper, as sweeps of generation settings.

Every method is a list of :class:`Setting` (one *sweep point*: a thinking cap, a number of "Wait"s, a
step budget, a length class, a number of votes). A setting says how to build each
:class:`s1kit.generate.Request` (prompt instruction, budget spec, sampling) and how many generations a
problem gets; :func:`select_outcome` turns a problem's generations into its outcome at that point.

- ``budget_forcing``: a thinking cap per budget (at the cap the answer prefix "Final Answer:" is forced;
  with ``--grace-tokens G`` the row may first finish its line, at most G tokens past the cap), plus,
  per ``--extensions`` value N > 0, N forced "Wait"s when the model tries to end its thinking.
- ``truncation``: a hard cut after ``budget`` new tokens; nothing is forced, the answer is whatever the
  cut text holds.
- ``token_conditional``: "Think for up to B tokens." in the prompt, nothing enforced.
- ``step_conditional``: "Think in at most S steps", steps marked "Step k:"; steps are counted.
- ``class_conditional``: a "short" and a "long" instruction.
- ``rejection_sampling``: sample until the thinking fits the budget, at most ``max_tries`` tries (the
  generation is capped one token past the budget, so a try that will not fit stops early).
- ``majority_voting``: k samples per problem; the most common extracted answer wins.

Methods other than budget forcing still carry an uncapped budget spec: it forces nothing before the
model ends its thinking and only counts thinking / answer tokens, so every method is measured alike.
A generation that ends with EOS inside its thinking span (the counting spec lets it through) has
thinking tokens up to that EOS: the EOS ends the thinking and is not counted as one of its tokens
(:func:`thinking_tokens`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from s1kit.eval.samples import SampleRecord

METHODS: tuple[str, ...] = (
    "budget_forcing",
    "truncation",
    "token_conditional",
    "step_conditional",
    "class_conditional",
    "rejection_sampling",
    "majority_voting",
)

CLASS_INSTRUCTIONS: dict[str, str] = {
    "short": "Think briefly: use as few reasoning steps as you can before answering.",
    "long": "Think carefully and at length: check every step and verify your answer before answering.",
}
STEP_MARKER_RE = re.compile(r"(?m)^\s*\**Step\s+\d+\s*[:.]")
# Thinking ends at the s1 answer delimiter or "</think>" unless the run's think ends are given; the
# thinking text is what precedes the first one.
DEFAULT_THINK_ENDS = ("<|im_start|>", "</think>")


@dataclass(frozen=True)
class SweepConfig:
    """The sweep values and sampling choices shared by all methods of one run."""

    budgets: tuple[int, ...] = (512, 1024, 2048)
    extensions: tuple[int, ...] = (0, 2, 4, 6)
    steps: tuple[int, ...] = (4, 8, 16)
    votes: tuple[int, ...] = (1, 2, 4, 8)
    max_tries: int = 8
    max_new_tokens: int = 4096
    temperature: float = 0.0  # deterministic methods
    sample_temperature: float = 1.0  # rejection sampling and majority voting need diversity
    max_answer_tokens: int | None = 512
    grace_tokens: int = 0  # budget forcing's caps: up to this many tokens more to finish the line

    def __post_init__(self) -> None:
        for name in ("budgets", "steps", "votes"):
            values = getattr(self, name)
            if any(int(v) < 1 for v in values):
                raise ValueError(f"{name}={list(values)}: every value must be >= 1")
        if any(int(v) < 0 for v in self.extensions):
            raise ValueError(f"extensions={list(self.extensions)}: every value must be >= 0")
        if self.grace_tokens < 0:
            raise ValueError(f"grace_tokens={self.grace_tokens} must be >= 0")
        if self.max_tries < 1:
            raise ValueError(f"max_tries={self.max_tries} must be >= 1")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must be >= 1")
        if self.budgets and max(self.budgets) >= self.max_new_tokens:
            raise ValueError(
                f"max_new_tokens={self.max_new_tokens} leaves no room to answer after the largest budget "
                f"{max(self.budgets)}: raise max_new_tokens above the budgets (budget + answer tokens)"
            )


@dataclass(frozen=True)
class Setting:
    """One sweep point of one method.

    ``label`` names it in files and plots ("cap=512", "wait=2", "steps=8", "class=short", "k=4").
    ``max_thinking_tokens`` / ``num_extensions`` / ``grace_tokens`` go into the budget spec (the grace
    with the tokenizer's newline ids); ``instruction`` is appended
    to the question; ``samples`` is the most generations a problem gets (tries or votes).
    ``control_bounds`` is the ``[min, max]`` for the Control metric in ``control_unit`` ("tokens" or
    "steps"), ``token_budget`` the budget the Budget-error metric compares thinking tokens with.
    """

    method: str
    label: str
    value: int | str
    max_new_tokens: int
    max_thinking_tokens: int | None = None
    num_extensions: int = 0
    grace_tokens: int = 0
    instruction: str = ""
    samples: int = 1
    temperature: float = 0.0
    control_bounds: tuple[int | None, int | None] | None = None
    control_unit: str = "tokens"
    token_budget: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


class Outcome(TypedDict):
    """A problem's outcome at one sweep point (:func:`select_outcome`)."""

    correct: bool
    extracted: str | None
    thinking_tokens: int
    answer_tokens: int
    forced_tokens: int
    steps: int
    generations: int  # how many generations were used (tries, votes)
    record: SampleRecord  # a representative generation


def check_methods(methods: Sequence[str]) -> list[str]:
    """The method names, validated (``ValueError`` naming the valid ones otherwise)."""
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {', '.join(bad)}; use any of {', '.join(METHODS)}")
    if not methods:
        raise ValueError(f"no method given; use any of {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


def sweep(method: str, cfg: SweepConfig) -> list[Setting]:
    """The sweep points of ``method`` under ``cfg``, in increasing order of intended compute."""
    check_methods([method])
    n = cfg.max_new_tokens
    t, ts = cfg.temperature, cfg.sample_temperature
    if method == "budget_forcing":
        caps = [
            Setting(
                method,
                f"cap={b}",
                b,
                n,
                max_thinking_tokens=b,
                grace_tokens=cfg.grace_tokens,
                temperature=t,
                control_bounds=(0, b),
                token_budget=b,
            )
            for b in sorted(set(cfg.budgets))
        ]
        waits = [
            Setting(method, f"wait={k}", k, n, num_extensions=k, temperature=t)
            for k in sorted(set(cfg.extensions))
            if k > 0
        ]
        return caps + waits
    if method == "truncation":
        return [
            Setting(method, f"cut={b}", b, b, temperature=t, control_bounds=(0, b), token_budget=b)
            for b in sorted(set(cfg.budgets))
        ]
    if method == "token_conditional":
        return [
            Setting(
                method,
                f"tokens={b}",
                b,
                n,
                instruction=f"Think for up to {b} tokens.",
                temperature=t,
                control_bounds=(0, b),
                token_budget=b,
            )
            for b in sorted(set(cfg.budgets))
        ]
    if method == "step_conditional":
        return [
            Setting(
                method,
                f"steps={s}",
                s,
                n,
                instruction=f"Think in at most {s} steps. Begin each step on a new line with 'Step k:'.",
                temperature=t,
                control_bounds=(0, s),
                control_unit="steps",
            )
            for s in sorted(set(cfg.steps))
        ]
    if method == "class_conditional":
        return [
            Setting(method, f"class={c}", c, n, instruction=CLASS_INSTRUCTIONS[c], temperature=t)
            for c in ("short", "long")
        ]
    if method == "rejection_sampling":
        return [
            Setting(
                method,
                f"fit={b}",
                b,
                n,
                max_thinking_tokens=b + 1,  # one past the budget: a try that cannot fit stops early
                samples=cfg.max_tries,
                temperature=ts,
                control_bounds=(0, b),
                token_budget=b,
            )
            for b in sorted(set(cfg.budgets))
        ]
    # majority_voting: one shared pool of max(votes) samples; point k uses the first k.
    kmax = max(cfg.votes)
    return [Setting(method, f"k={k}", k, n, samples=kmax, temperature=ts) for k in sorted(set(cfg.votes))]


def sample_seed(seed: int, task: str, problem_id: str, method: str, label: str, index: int) -> int:
    """A stable 63-bit seed per generation: reruns and resumed runs sample the same tokens."""
    # Majority voting's points share their samples, so the label does not enter its seeds.
    key = f"{seed}|{task}|{problem_id}|{method}|{'' if method == 'majority_voting' else label}|{index}"
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 1


def generation_key(setting: Setting, index: int) -> tuple[str, int]:
    """Which stored generation a (setting, index) is: majority voting's points share one pool."""
    return ("votes" if setting.method == "majority_voting" else setting.label, index)


def thinking_text(generation: str, think_end: Sequence[str] = DEFAULT_THINK_ENDS) -> str:
    """The thinking part of a generation: everything before the first end-of-thinking delimiter."""
    cut = min((i for i in (generation.find(e) for e in think_end if e) if i >= 0), default=len(generation))
    return generation[:cut]


def thinking_tokens(booked: int, answer_tokens: int, finish_reason: str) -> int:
    """Thinking tokens of a generation from the budget core's count ``booked``.

    The core books every emitted token in the phase it is emitted in, a final EOS included. When the
    model ends with EOS while still thinking (``answer_tokens == 0``, ``finish_reason == "eos"``;
    only under the counting spec, which forces no answer), that EOS is no thinking token.
    """
    if finish_reason == "eos" and answer_tokens == 0 and booked > 0:
        return booked - 1
    return booked


def count_steps(generation: str, think_end: Sequence[str] = DEFAULT_THINK_ENDS) -> int:
    """Number of "Step k:" markers in the thinking part."""
    return len(STEP_MARKER_RE.findall(thinking_text(generation, think_end)))


def _answer_key(answer: str | None) -> str | None:
    return None if answer is None else re.sub(r"\s+", "", answer)


def needs_more(setting: Setting, records: Sequence[SampleRecord]) -> bool:
    """Whether a problem needs another generation at this setting, given its stored ones (in order)."""
    if len(records) >= setting.samples:
        return False
    if setting.method == "rejection_sampling":
        return not any(_fits(setting, r) for r in records)
    return True


def _fits(setting: Setting, record: SampleRecord) -> bool:
    return setting.token_budget is not None and int(record["thinking_tokens"]) <= setting.token_budget


def select_outcome(setting: Setting, records: Sequence[SampleRecord]) -> Outcome | None:
    """A problem's outcome at ``setting`` from its generations (in index order), or ``None`` if it has
    none yet (an :class:`Outcome`: majority voting sums the token counts of the votes it used)."""
    if not records:
        return None
    if setting.method == "majority_voting":
        used = list(records[: int(setting.value)])
        keys = [_answer_key(r["extracted"]) for r in used]
        counts = Counter(k for k in keys if k is not None)
        if counts:
            # Most votes; ties go to the answer seen first.
            best = max(counts, key=lambda k: (counts[k], -keys.index(k)))
            rep = used[keys.index(best)]
        else:
            rep = used[0]
        return {
            "correct": bool(rep["correct"]),
            "extracted": rep["extracted"],
            "thinking_tokens": sum(int(r["thinking_tokens"]) for r in used),
            "answer_tokens": sum(int(r["answer_tokens"]) for r in used),
            "forced_tokens": sum(int(r["forced_tokens"]) for r in used),
            "steps": sum(int(r["steps"]) for r in used),
            "generations": len(used),
            "record": rep,
        }
    if setting.method == "rejection_sampling":
        rep = next((r for r in records if _fits(setting, r)), records[-1])
        n_used = records.index(rep) + 1
    else:
        rep, n_used = records[0], 1
    return {
        "correct": bool(rep["correct"]),
        "extracted": rep["extracted"],
        "thinking_tokens": int(rep["thinking_tokens"]),
        "answer_tokens": int(rep["answer_tokens"]),
        "forced_tokens": int(rep["forced_tokens"]),
        "steps": int(rep["steps"]),
        "generations": n_used,
        "record": rep,
    }
