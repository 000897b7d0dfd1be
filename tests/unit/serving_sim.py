"""A deterministic "model" and sampler for adapter tests, and the core driven directly as the reference.

Request ``r``'s logits at its own step ``k`` and its sampling noise depend only on ``(r, k)``, never
on where the request sits in a batch. So a serving adapter that keeps per-request state right under
any batch reordering yields exactly the token sequences of :func:`direct_sequences`, which drives
the core per request in mask mode and applies its decisions with a plain per-row loop.

Vocabulary (V = 32): 20 21 and 22 close thinking, 3 4 = "Wait ,", 31 = EOS, 22 5 6 = answer prefix.
The logits favour the end tokens so that rows try to end early, get extended, hit the cap and stop.
"""

from __future__ import annotations

import numpy as np
import torch

from s1kit.budget import BudgetBatch, BudgetSpec, Phase

V = 32
EOS = 31
MAX_NEW = 40


def specs() -> list[BudgetSpec | None]:
    """Per request kind: several budgets, and None (a request that does not use budget forcing)."""
    base = BudgetSpec(
        vocab_size=V,
        think_end=((20, 21), (22,)),
        eos=(EOS,),
        answer_prefix=(22, 5, 6),
        extensions=((3, 4),),
        max_thinking_tokens=12,
        num_extensions=2,
        max_answer_tokens=6,
    )
    return [
        base,
        base.replace(max_thinking_tokens=5, num_extensions=0),
        base.replace(max_thinking_tokens=None, num_extensions=3, min_thinking_tokens=4),
        base.replace(think_start=((1,),), max_thinking_tokens=8),
        None,
    ]


def prompt(r: int) -> list[int]:
    return [7 + r % 5, 8, 1]  # ends with 1, which opens thinking for specs with think_start (1,)


def model_logits(r: int, k: int) -> torch.Tensor:
    """Request ``r``'s raw logits at its step ``k`` (float32, V)."""
    g = torch.Generator().manual_seed(1_000_003 * r + k)
    x = torch.randn(V, generator=g) * 1.5
    x[[20, 21, 22]] += 1.5
    x[21] += 2.0 * float(k % 3 == 1)  # makes the two-token end 20 21 likely now and then
    x[EOS] += 1.0
    return x


def draw(logits_V: torch.Tensor, r: int, k: int) -> int:
    """Gumbel-max sample with noise fixed by ``(r, k)``: a fixed generator per request and step."""
    g = torch.Generator().manual_seed(7_919 * r + k + 17)
    u = torch.rand(V, generator=g, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
    return int(torch.argmax(logits_V.double() - torch.log(-torch.log(u))))


def finished(tokens: list[int]) -> bool:
    """The serving stack's own stop rule: EOS or the length limit (the budget does not stop rows)."""
    return (bool(tokens) and tokens[-1] == EOS) or len(tokens) >= MAX_NEW


def reference_apply(
    logits_V: torch.Tensor, force: int, redirect: int, banned: list[int]
) -> tuple[torch.Tensor, bool]:
    """The core's mask decisions on one row, written plainly (independent of the adapters' code), for
    a greedy-attributing stack: the edited logits (the banned ids' best logit moved onto the redirect
    token), and whether an emission of the redirect token stands for the end attempt."""
    out = logits_V.clone()
    if force >= 0:
        out[:] = float("-inf")
        out[force] = 0.0
        return out, False
    if redirect < 0 or not banned:
        return out, False
    best = max(banned, key=lambda b: (float(logits_V[b]), -b))  # highest logit, then lowest id
    own = float(logits_V[redirect])
    flag = float(logits_V[best]) > own or (float(logits_V[best]) == own and best < redirect)
    out[redirect] = max(own, float(logits_V[best]))
    for b in banned:
        out[b] = float("-inf")
    return out, flag


def direct_sequences(
    kinds: list[int], stop_done: bool = False
) -> tuple[list[list[int]], list[dict[str, int | bool] | None]]:
    """Tokens and final core state per request, the core driven directly (one slot per request).

    ``stop_done``: a row in phase DONE or ERROR is stopped by forcing its spec's first EOS id (what
    the vLLM and SGLang adapters do), instead of generating on unforced.
    """
    all_specs = specs()
    batch = BudgetBatch(len(kinds), max_rollback=0)
    seqs: list[list[int]] = []
    for r, kind in enumerate(kinds):
        spec = all_specs[kind]
        if spec is not None:
            batch.insert(r, spec)
            batch.process_prompt(r, prompt(r))
        seqs.append([])
    force = np.empty(1, np.int64)
    redirect = np.empty(1, np.int64)
    ban = np.empty((1, max(batch.ban_width, 1)), np.int32)
    for r, kind in enumerate(kinds):
        rows = np.asarray([r], np.int64)
        while not finished(seqs[r]):
            k = len(seqs[r])
            logits = model_logits(r, k)
            taken = False
            if all_specs[kind] is not None:
                batch.mask(force, redirect, ban, rows)
                state = batch.row_state(r)
                if stop_done and state is not None and state["phase"] in (Phase.DONE, Phase.ERROR):
                    force[0], redirect[0] = all_specs[kind].eos[0], -1  # type: ignore[union-attr]
                logits, taken = reference_apply(
                    logits, int(force[0]), int(redirect[0]), [int(b) for b in ban[0] if b >= 0]
                )
            t = draw(logits, r, k)
            seqs[r].append(t)
            if all_specs[kind] is not None:
                batch.advance(np.asarray([t], np.int64), rows, np.asarray([int(taken)], np.int64))
    states = [batch.row_state(r) if all_specs[kind] is not None else None for r, kind in enumerate(kinds)]
    for s in states:
        assert s is None or s["phase"] != Phase.ERROR, "the reference itself must honour the core"
    return seqs, states


def request_kinds(n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.integers(0, len(specs()), size=n)]
