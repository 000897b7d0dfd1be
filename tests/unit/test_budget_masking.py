"""The shared mask edit (s1kit.budget.adapters.masking): forced rows, and redirects taken or declined.

A greedy row's edited argmax is override mode's token, and its flag says whether that token stands
for an end attempt. Sampled rows: the redirect token pools the end attempts' probability and the
flag attributes an emission of it with their share, so that sampling the edited logits has override
mode's joint distribution over (emitted token, counted as a redirect); checked on many copies of one
row with a fixed generator (deterministic).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s1kit.budget.adapters.masking import FORCED_LOGIT, RedirectFlags, apply_mask

V = 8
TARGET, BANNED = 3, [5, 7]


def one_row(n: int, logits: list[float]) -> tuple[torch.Tensor, np.ndarray, ...]:
    logits_BV = torch.tensor([logits] * n, dtype=torch.float32)
    rows = np.arange(n, dtype=np.int64)
    force = np.full(n, -1, np.int64)
    redirect = np.full(n, TARGET, np.int64)
    ban = np.tile(np.asarray([[*BANNED, -1]], np.int32), (n, 1))
    return logits_BV, rows, force, redirect, ban


def test_greedy_rows_pick_what_override_mode_picks_with_the_same_attribution() -> None:
    for logits, counted in (
        ([0, 0, 0, 1, 0, 2, 0, 0], True),  # argmax 5 is banned: "Wait" stands for the end attempt
        ([0, 0, 0, 1, 3, 2, 0, 2.5], False),  # argmax 4: the ends are banned, 4 goes through
        ([0, 0, 0, 4, 0, 2, 0, 2.5], False),  # argmax is the redirect token itself: the model's own
        ([0, 0, 0, 2, 0, 2, 0, 0], False),  # tie 3 / 5: torch.argmax picks 3, the model's own
    ):
        x, rows, force, redirect, ban = one_row(1, logits)
        raw = x.clone()
        flag = apply_mask(x, rows, force, redirect, ban)
        assert torch.isinf(x[0, BANNED]).all()
        a = int(torch.argmax(raw[0]))
        want = TARGET if a in BANNED else a  # override mode: replace an end attempt
        emitted = int(torch.argmax(x[0]))
        assert emitted == want
        # The core counts an end attempt when the flag is set and the redirect token is emitted.
        assert (bool(flag[0]) and emitted == TARGET) is counted
        others = [i for i in range(V) if i not in [*BANNED, TARGET]]
        assert torch.equal(x[0, others], raw[0, others]), "only the banned and redirect cells change"
    x, rows, force, redirect, ban = one_row(1, [0, 0, 0, 2, 0, 2, 0, 0])
    redirect[:] = 6  # redirect token after the banned id: a tie goes to the end attempt
    assert bool(apply_mask(x, rows, force, redirect, ban)[0])


def test_forced_rows_get_all_the_probability_and_untouched_rows_stay() -> None:
    """Default (the transformers adapter): the rest of a forced row is -inf, exact after anything."""
    x = torch.randn(3, V)
    raw = x.clone()
    rows = np.asarray([0, 2], np.int64)
    flag = apply_mask(x, rows, np.asarray([6, -1]), np.asarray([-1, -1]), np.full((2, 1), -1, np.int32))
    assert not flag.any()
    assert int(torch.argmax(x[0])) == 6 and torch.isinf(x[0]).sum() == V - 1
    assert torch.equal(x[1:], raw[1:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forced_logit_sets_one_cell_and_still_gets_all_the_probability(dtype: torch.dtype) -> None:
    """With forced_logit (vLLM, SGLang): only the forced cell changes, and after the temperature
    scaling and normalization those engines apply later, the forced token has probability exactly 1."""
    x = (torch.randn(3, 4096) * 30).to(dtype)
    x[0, 17] = 1e8  # the largest logit the exactness claim covers
    raw = x.clone()
    rows = np.asarray([0, 2], np.int64)
    apply_mask(
        x,
        rows,
        np.asarray([6, 9]),
        np.asarray([-1, -1]),
        np.full((2, 1), -1, np.int32),
        forced_logit=FORCED_LOGIT,
    )
    changed = (x != raw).nonzero().tolist()
    assert changed == [[0, 6], [2, 9]] and float(x[0, 6]) == float(torch.tensor(FORCED_LOGIT, dtype=dtype))
    assert torch.equal(x[1], raw[1])
    for temperature in (1e-5, 0.6, 1.0, 7.0, 1e6):
        probs = torch.softmax(x.float() / temperature, -1)
        assert probs[0, 6] == 1.0 and probs[2, 9] == 1.0, temperature
        assert (probs[0] > 0).sum() == 1 and (probs[2] > 0).sum() == 1, temperature
    assert torch.argmax(x, -1)[[0, 2]].tolist() == [6, 9]


def test_forced_logit_falls_back_to_the_inf_fill_where_the_dtype_cannot_hold_it() -> None:
    x = torch.randn(2, V).half()  # float16: 1e9 would be inf, and inf - inf is nan in a softmax
    apply_mask(
        x,
        np.asarray([1]),
        np.asarray([4]),
        np.asarray([-1]),
        np.full((1, 1), -1, np.int32),
        forced_logit=FORCED_LOGIT,
    )
    assert int(torch.argmax(x[1])) == 4 and x[1, 4] == 0 and torch.isinf(x[1]).sum() == V - 1
    assert not torch.softmax(x[1].float(), -1).isnan().any()


def test_the_torch_edit_agrees_on_any_layout() -> None:
    """Greedy rows edited through a flat index (contiguous logits) or 2-D indexing (a
    non-contiguous view) give the same logits and flags; some rows have no redirect."""
    g = torch.Generator().manual_seed(3)
    raw = torch.randint(-3, 4, (6, V), generator=g).float()  # small integers: ties happen
    rows = np.asarray([5, 0, 2, 3], np.int64)
    force = np.asarray([-1, -1, 1, -1], np.int64)
    redirect = np.asarray([TARGET, -1, -1, 6], np.int64)
    ban = np.asarray([[*BANNED, -1], [-1, -1, -1], [-1, -1, -1], [2, 4, 7]], np.int32)
    results = []
    for layout in ("contiguous", "transposed"):
        x = raw.clone() if layout == "contiguous" else raw.t().contiguous().t()
        flags = apply_mask(x, rows, force, redirect, ban, forced_logit=FORCED_LOGIT)
        results.append((x.contiguous(), flags))
    for x, flags in results[1:]:
        assert torch.equal(x, results[0][0]) and torch.equal(flags, results[0][1])
    assert not results[0][1][[1, 2]].any()


def test_sampling_has_override_modes_joint_distribution() -> None:
    n = 40_000
    logits = [0.3, -0.2, 0.1, 0.5, 0.0, 0.9, -1.0, 0.4]
    temperature = 0.7
    x, rows, force, redirect, ban = one_row(n, logits)
    g = torch.Generator().manual_seed(0)
    flag = apply_mask(
        x,
        rows,
        force,
        redirect,
        ban,
        sample_N=np.ones(n, np.bool_),
        temperature_N=np.full(n, temperature),
        generator=g,
    )
    tokens = torch.multinomial(torch.softmax(x / temperature, -1), 1, generator=g)[:, 0]
    counted = flag & (tokens == TARGET)  # what the core counts as an end attempt
    # Override mode exactly: token x ~ p; an end attempt becomes (TARGET, counted), the rest (x, not).
    p = torch.softmax(torch.tensor(logits) / temperature, -1).double()
    want = {(t, False): float(p[t]) for t in range(V) if t not in BANNED}
    want[(TARGET, True)] = float(p[BANNED].sum())
    got: dict[tuple[int, bool], float] = {}
    for t, f in zip(tokens.tolist(), counted.tolist(), strict=True):
        got[(t, f)] = got.get((t, f), 0.0) + 1 / n
    assert set(got) <= set(want)
    for key, q in want.items():
        sigma = (q * (1 - q) / n) ** 0.5
        assert abs(got.get(key, 0.0) - q) < 5 * sigma + 1e-9, (key, got.get(key), q)


def test_redirect_flags_follow_rows_until_their_token_is_fed() -> None:
    flags = RedirectFlags()
    flags.record(np.asarray([2, 5]), torch.tensor([True, False]))
    flags.swap(2, 5)
    flags.move(5, 7)
    assert flags.take([7, 2, 5]).tolist() == [1, 0, 0]
    assert flags.take([7]) is None, "a flag is used once (None: no flag is set)"
    flags.record(np.asarray([40]), torch.tensor([True]))  # slots beyond the array grow it
    assert flags.take(np.asarray([100, 40])).tolist() == [0, 1]
    assert flags.take(np.asarray([40])) is None
