"""The tensor path's run-ahead loop (K decode steps per host synchronisation) equals the host loop.

The tensor path is forced on CPU: the same step function runs eagerly, so everything but the CUDA
graphs and the asynchrony of the copies is checked here (tests/gpu/ does the rest on a GPU).
"""

from __future__ import annotations

from collections import Counter

import pytest

from s1kit.budget import BudgetSpec
from s1kit.generate import Engine, Request, SamplingParams
from s1kit.generate.step import COUNTER, DONE, POS
from tests.unit.tiny_lm import THINKING_QUESTIONS, thinking_model, tiny_tokenizer

MAX_NEW = 60
RESULT_FIELDS = (
    "token_ids",
    "text",
    "finish_reason",
    "thinking_tokens",
    "answer_tokens",
    "forced_tokens",
    "extensions_used",
    "capped",
)


@pytest.fixture(scope="module")
def setup():
    """A tiny random Qwen2 (untied head) whose end-of-thinking delimiters take over the output rows of
    tokens it emits often, so budget rows extend, cap and answer at different points; the engine's EOS
    ids are the tokenizer's and a token the model emits now and then, so rows also end on EOS."""
    tok = tiny_tokenizer()
    hf, prompts, common = thinking_model("qwen2", tok, 5, THINKING_QUESTIONS, MAX_NEW)
    eos = [tok.eos_token_id, common[10]]
    return tok, hf, prompts, eos, common


def mixed_requests(tok, prompts, common):
    """Budget rows (Wait extensions, thinking caps with grace, min thinking, answer caps and stops,
    think tags) and rows without a budget; greedy, seeded, top-p and top-k sampling; stop strings and
    stop ids; limits from 1 to MAX_NEW tokens. More requests than slots: rows are admitted mid-run."""
    s1 = BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=2, max_thinking_tokens=40)
    specs = [
        s1,
        None,
        s1.replace(num_extensions=0, max_thinking_tokens=8),
        BudgetSpec.from_tokenizer(tok, style="s1", min_thinking_tokens=15, num_extensions=1, grace_tokens=3),
        None,
        BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=3, max_answer_tokens=6),
        BudgetSpec.from_tokenizer(tok, style="think_tags", num_extensions=2, max_thinking_tokens=30),
        BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=1, answer_stop=["Final"]),
    ]
    stop_text = tok.decode([common[4]]).strip() or "a"
    out = []
    for i, p in enumerate(prompts * 2):
        kw: dict = {"max_new_tokens": MAX_NEW - 2 * (i % 9)}
        if i % 4 == 1:
            kw.update(temperature=0.9, seed=i)
        elif i % 4 == 2:
            kw.update(temperature=0.8, top_p=0.9, seed=100 + i)
        elif i % 8 == 3:
            kw.update(temperature=1.0, top_k=20, seed=7 * i)
        if i % 5 == 0:
            kw["stop"] = (stop_text, "Hm")
        if i % 6 == 2:
            kw["stop_token_ids"] = (common[6],)
        if i == 7:
            kw["max_new_tokens"] = 1  # ends with its prefill token
        out.append(Request(p, SamplingParams(**kw), budget=specs[i % len(specs)], request_id=f"r{i}"))
    return out


def generate(engine, reqs):
    """Results, the per-request streams and the global order of ``on_token`` calls."""
    events: list[tuple[str, int]] = []
    res = engine.generate(reqs, on_token=lambda rid, t: events.append((rid, t)))
    streams: dict[str, list[int]] = {}
    for rid, t in events:
        streams.setdefault(rid, []).append(t)
    return res, streams, events


@pytest.fixture(scope="module")
def host_run(setup):
    tok, hf, prompts, eos, common = setup
    reqs = mixed_requests(tok, prompts, common)
    engine = Engine(hf, tok, max_batch=8, max_len=256, eos_token_ids=eos, budget_path="host")
    assert not engine.tensor_budget
    res, streams, events = generate(engine, reqs)
    # The run must exercise every way a row can end, budget forcing in both directions and admissions.
    reasons = Counter(r.finish_reason for r in res)
    assert reasons["eos"] >= 2 and reasons["stop"] >= 3 and reasons["length"] >= 3, reasons
    by_text = [r for r, q in zip(res, reqs, strict=True) if q.sampling.stop and r.finish_reason == "stop"]
    assert any(r.text != tok.decode(r.token_ids, skip_special_tokens=False) for r in by_text)
    assert any(r.token_ids[-1] in q.sampling.stop_token_ids for r, q in zip(res, reqs, strict=True))
    assert sum(r.extensions_used for r in res) >= 5
    assert any(r.capped for r in res)
    assert sum(r.forced_tokens for r in res) >= 20
    assert len(reqs) > engine.max_batch
    return reqs, res, streams, events


@pytest.mark.parametrize("k", [1, 3, 8])
def test_runahead_equals_host_loop(setup, host_run, k):
    tok, hf, _, eos, _ = setup
    reqs, want, want_streams, want_events = host_run
    engine = Engine(hf, tok, max_batch=8, max_len=256, eos_token_ids=eos, budget_path="tensor", sync_every=k)
    got, streams, events = generate(engine, reqs)
    for g, w in zip(got, want, strict=True):
        for f in RESULT_FIELDS:
            assert getattr(g, f) == getattr(w, f), f"K={k}, request {w.request_id}: {f}"
        # Each request streams exactly its tokens, in order, and nothing after its end.
        assert streams.get(w.request_id, []) == want_streams[w.request_id] == w.token_ids
    if k == 1:
        # Windows of one step schedule exactly as the host loop: even the interleaving is the same.
        assert events == want_events
    # Each window is at most K steps and costs one host wait; every other wait is a prefill.
    step = engine.step
    assert step.steps_run <= k * step.windows
    assert step.host_waits - step.windows <= len(reqs)
    if k > 1:
        assert step.windows < step.steps_run


def test_one_synchronisation_per_window(setup):
    """Two rows that cannot end early (no EOS ids, a budget that extends forever): 40 decode steps
    take 40 host waits on the host loop and ceil(40 / K) on the tensor path."""
    tok, hf, prompts, _, _ = setup
    spec = BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=10**6)
    reqs = [
        Request(prompts[0], SamplingParams(max_new_tokens=41), budget=spec),
        Request(prompts[1], SamplingParams(temperature=0.9, seed=3, max_new_tokens=41)),
    ]
    host = Engine(hf, tok, max_batch=2, max_len=256, eos_token_ids=[], budget_path="host")
    want = host.generate(reqs)
    assert (host.step.host_waits, host.step.steps_run) == (1 + 40, 40)
    for k, windows in ((8, 5), (16, 3), (40, 1)):
        eng = Engine(hf, tok, max_batch=2, max_len=256, eos_token_ids=[], budget_path="tensor", sync_every=k)
        got = eng.generate(reqs)
        assert (eng.step.host_waits, eng.step.steps_run) == (1 + windows, 40), f"K={k}"
        assert [r.token_ids for r in got] == [r.token_ids for r in want]
        assert got[0].forced_tokens == want[0].forced_tokens > 0


def test_runahead_stops_at_the_cache_length(setup):
    """Rows whose limit is the cache (not max_new_tokens) end there with any window length; the
    window is cut to what is left, so no step writes past the cache."""
    tok, hf, prompts, _, _ = setup
    long = [p + p[-10:] for p in prompts[:3]]  # 40-odd tokens, max_len 64: ~20 tokens of room
    reqs = [Request(p, SamplingParams(max_new_tokens=200)) for p in long]
    want = Engine(hf, tok, max_batch=4, max_len=64, eos_token_ids=[], budget_path="host").generate(reqs)
    eng = Engine(hf, tok, max_batch=4, max_len=64, eos_token_ids=[], budget_path="tensor", sync_every=16)
    got = eng.generate(reqs)
    for g, w, p in zip(got, want, long, strict=True):
        assert g.token_ids == w.token_ids and g.finish_reason == w.finish_reason == "length"
        assert len(p) + len(g.token_ids) == 64


def test_sync_every_is_checked(setup):
    tok, hf, _, _, _ = setup
    with pytest.raises(ValueError, match="sync_every"):
        Engine(hf, tok, max_batch=2, max_len=64, sync_every=0)
    eng = Engine(hf, tok, max_batch=2, max_len=64, budget_path="tensor", sync_every=4)
    eng.sync_every = 32  # a longer window than the ring: the ring grows at the next call
    eng.generate([Request([5, 6, 7], SamplingParams(max_new_tokens=40))])
    assert eng.step.ring == 32


def test_a_row_that_ends_is_frozen_on_the_device(setup):
    """A row that emits an EOS id early in a window stops advancing on the device: its count, position
    and done flag stay where it ended and its later ring entries are -1 (it writes no K/V beyond its
    last position), while the window runs to its end for the row that continues."""
    tok, hf, prompts, _, _ = setup
    frees = Engine(hf, tok, max_batch=8, max_len=256, eos_token_ids=[]).generate(
        [Request(p, SamplingParams(max_new_tokens=30)) for p in prompts]
    )
    free = frees[1]
    eos = free.token_ids[4]
    end = free.token_ids.index(eos)  # the first generated token equal to it
    other = next(p for p, r in zip(prompts, frees, strict=True) if eos not in r.token_ids[:17])
    eng = Engine(hf, tok, max_batch=2, max_len=256, eos_token_ids=[eos], budget_path="tensor", sync_every=16)
    ended, longer = eng.generate(
        [
            Request(prompts[1], SamplingParams(max_new_tokens=30)),
            Request(other, SamplingParams(max_new_tokens=17)),
        ]
    )
    assert ended.finish_reason == "eos" and ended.token_ids == free.token_ids[: end + 1]
    assert 0 < end < 16 and len(longer.token_ids) == 17
    # One window of 16 steps after the prefill; slot 0 holds the row that ended (tokens 2..end+1 came
    # from window steps 0..end-1).
    step = eng.step
    assert (step.windows, step.steps_run) == (1, 16)
    io = step.in_5N
    assert int(io[COUNTER, 0]) == end + 1 and int(io[DONE, 0]) == 1
    assert int(io[POS, 0]) == len(prompts[1]) + end - 1  # where its last input token was fed
    assert step.ring_RN[:end, 0].tolist() == free.token_ids[1 : end + 1]
    assert (step.ring_RN[end:16, 0] == -1).all()
    assert int(io[COUNTER, 1]) == 17 and int(io[DONE, 1]) == 1
