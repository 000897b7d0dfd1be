"""The s1-style re-prompting baseline for budget forcing (what the s1 reference code does).

Each round generates for the whole batch and waits for every row; a row that tried to end its
thinking too early gets "Wait" appended to its text and is sent again *with its whole prefix*, which
the engine prefills from scratch. A row that reaches the thinking cap gets the answer prefix appended
and is sent again for its answer. The semantics follow :mod:`s1kit.budget` (cap, min thinking tokens,
number of extensions, EOS in the thinking span replaced by the answer prefix), so under greedy
decoding the tokens equal the in-loop engine's; only the cost differs.

Limitation: ``think_end`` spellings must be single tokens (they are used as stop ids), which holds for
the s1 and think_tags delimiters of Qwen tokenizers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from s1kit.budget import BudgetSpec
from s1kit.generate import Engine, Request, SamplingParams


@dataclass
class RepromptResult:
    """Per prompt: emitted tokens and the same accounting the budget core reports."""

    token_ids: list[int] = field(default_factory=list)
    thinking_tokens: int = 0
    answer_tokens: int = 0
    forced_tokens: int = 0
    extensions_used: int = 0
    capped: bool = False
    rounds: int = 0


@dataclass
class RepromptStats:
    rounds: int = 0
    prefilled_tokens: int = 0


def reprompt_generate(
    engine: Engine,
    prompts: list[list[int]],
    spec: BudgetSpec,
    max_new_tokens: int,
) -> tuple[list[RepromptResult], RepromptStats]:
    """Greedy budget forcing by re-prompting; returns per-prompt results and the total cost."""
    if any(len(s) != 1 for s in spec.think_end):
        raise ValueError("reprompt_generate needs single-token think_end spellings (they are stop ids)")
    if not spec.extensions and spec.num_extensions:
        raise ValueError("num_extensions > 0 needs at least one extension")
    ends = {s[0] for s in spec.think_end}
    eos = set(spec.eos) | set(engine.eos_token_ids)
    out = [RepromptResult() for _ in prompts]
    thinking = [True] * len(prompts)
    done = [False] * len(prompts)
    stats = RepromptStats()

    def force(i: int, seq: tuple[int, ...] | list[int]) -> None:
        room = max_new_tokens - len(out[i].token_ids)
        part = list(seq)[:room]
        out[i].token_ids += part
        out[i].forced_tokens += len(part)
        if thinking[i]:
            out[i].thinking_tokens += len(part)
        else:
            out[i].answer_tokens += len(part)
        if len(out[i].token_ids) >= max_new_tokens:
            done[i] = True

    def start_answer(i: int, capped: bool) -> None:
        thinking[i] = False
        out[i].capped = capped
        force(i, spec.answer_prefix)

    cap = spec.max_thinking_tokens
    while not all(done):
        # Rows at the cap get the answer prefix before anything is generated (as the core forces it).
        for i in range(len(prompts)):
            if not done[i] and thinking[i] and cap is not None and out[i].thinking_tokens >= cap:
                start_answer(i, capped=True)
        live = [i for i in range(len(prompts)) if not done[i]]
        if not live:
            break
        requests = []
        for i in live:
            room = max_new_tokens - len(out[i].token_ids)
            if thinking[i] and cap is not None:
                room = min(room, cap - out[i].thinking_tokens)
            stop_ids = tuple(ends) if thinking[i] else ()
            requests.append(
                Request(
                    prompt_ids=prompts[i] + out[i].token_ids,
                    sampling=SamplingParams(temperature=0.0, max_new_tokens=room, stop_token_ids=stop_ids),
                )
            )
        results = engine.generate(requests)
        stats.rounds += 1
        stats.prefilled_tokens += sum(len(r.prompt_ids) for r in requests)
        for i, res in zip(live, results, strict=True):
            out[i].rounds += 1
            toks = res.token_ids
            last = toks[-1]
            ended = last in eos or (thinking[i] and last in ends)
            body = toks[:-1] if ended else toks
            out[i].token_ids += body
            if thinking[i]:
                out[i].thinking_tokens += len(body)
            else:
                out[i].answer_tokens += len(body)
            if not ended:
                if len(out[i].token_ids) >= max_new_tokens:
                    done[i] = True
                continue  # the cap (handled at the top of the round) or nothing
            if not thinking[i]:
                out[i].token_ids.append(last)
                out[i].answer_tokens += 1
                done[i] = True
                continue
            may_end = (
                out[i].thinking_tokens >= spec.min_thinking_tokens
                and out[i].extensions_used >= spec.num_extensions
            )
            if not may_end:
                ext = spec.extensions[out[i].extensions_used % len(spec.extensions)]
                out[i].extensions_used += 1
                force(i, ext)
            elif last in eos and spec.answer_prefix:
                start_answer(i, capped=False)
            else:
                out[i].token_ids.append(last)
                out[i].thinking_tokens += 1
                thinking[i] = last not in ends and thinking[i]
                if last in eos:
                    done[i] = True
            if len(out[i].token_ids) >= max_new_tokens:
                done[i] = True
    return out, stats
