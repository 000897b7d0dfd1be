"""s1kit.backends.replay: the accounting recomputed from emitted ids equals the processor's.

The reference is the vLLM adapter's own bookkeeping (``PersistentBatchBudget``) driven through the
persistent-batch stand-in of ``test_budget_vllm.py`` (arrivals, finishes, swaps, async placeholders)
on the deterministic sampler of ``serving_sim.py``: its final per-request state is what the processor
knows; the replay sees only the prompt, the spec and the ids.
"""

from __future__ import annotations

import socket

import pytest

from s1kit.backends import EngineOptions
from s1kit.backends.replay import build_results, replay, replay_batch
from s1kit.backends.vllm import finish_reason
from s1kit.budget import BudgetSpec, Phase
from s1kit.errors import S1kitError
from s1kit.generate.types import Request, SamplingParams
from tests.unit.serving_sim import EOS, MAX_NEW, V, direct_sequences, prompt, request_kinds, specs
from tests.unit.test_budget_vllm import StandInBatch, new_proc, params_for, serve

COUNTERS = ("thinking_tokens", "answer_tokens", "forced_tokens", "extensions_used", "capped")


@pytest.mark.parametrize("async_scheduling", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_replay_equals_the_processors_accounting(seed: int, async_scheduling: bool) -> None:
    kinds = request_kinds(14, seed)
    proc = new_proc()
    outputs, states = serve(StandInBatch(proc), proc, kinds, seed, params_for, async_scheduling)
    all_specs = specs()
    checked = 0
    for r, kind in enumerate(kinds):
        spec = all_specs[kind]
        if spec is None:
            continue
        rp = replay(spec, prompt(r), outputs[r])
        assert rp.honoured, rp.violation
        if cut_at_a_forced_text(spec, outputs[r]):  # the documented undecidable case
            continue
        for f in COUNTERS:
            assert getattr(rp, f) == states[r][f], f"request {r} (kind {kind}): {f}"
        # The processor stops a finished budget with EOS; the replay says so (not for the model's own).
        before = replay(spec, prompt(r), outputs[r][:-1]).final_phase
        assert rp.stopped_by_budget == (before == Phase.DONE and outputs[r][-1] == EOS)
        checked += 1
    assert checked >= 8
    # The whole batch at once (rows of different lengths and specs) reads the same as row by row.
    rows = [r for r, kind in enumerate(kinds) if all_specs[kind] is not None]
    together = replay_batch(
        [all_specs[kinds[r]] for r in rows], [prompt(r) for r in rows], [outputs[r] for r in rows]
    )  # type: ignore[misc]
    assert together == [replay(all_specs[kinds[r]], prompt(r), outputs[r]) for r in rows]  # type: ignore[arg-type]


def cut_at_a_forced_text(spec: BudgetSpec, ids: list[int]) -> bool:
    """The ids stop at the length limit and end with the start of a forced text (an extension or the
    answer prefix): the one case the ids cannot decide here (docstring of s1kit.backends.replay)."""
    starts = [e[: j + 1] for e in (*spec.extensions, spec.answer_prefix) for j in range(len(e))]
    return len(ids) >= MAX_NEW and any(tuple(ids[-len(p) :]) == tuple(p) for p in starts)


def test_replay_over_many_direct_runs_is_exact() -> None:
    """Wider coverage: 60 seeds of the core driven directly (the adapters' reference). Every row is
    exact except rows cut by the length limit right at a forced text; there the replay counts the
    forced reading, and such rows are rare."""
    all_specs = specs()
    n = undecidable = 0
    for seed in range(60):
        kinds = request_kinds(6, seed)
        seqs, states = direct_sequences(kinds, stop_done=True)
        for r, kind in enumerate(kinds):
            spec = all_specs[kind]
            if spec is None:
                continue
            rp = replay(spec, prompt(r), seqs[r])
            n += 1
            got, want = {f: getattr(rp, f) for f in COUNTERS}, {f: states[r][f] for f in COUNTERS}
            assert rp.honoured, (seed, r, rp.violation)
            if got != want:
                assert cut_at_a_forced_text(spec, seqs[r]), (seed, r, seqs[r], got, want)
                undecidable += 1
    assert n > 200 and undecidable <= n // 20  # 9 of 278 here: 40-token rows, forcing every few tokens


BASE = BudgetSpec(
    vocab_size=V,
    think_end=((20,),),
    eos=(EOS,),
    answer_prefix=(22, 5, 6),
    extensions=((3, 4),),
    max_thinking_tokens=6,
    num_extensions=1,
    max_answer_tokens=4,
)


def test_ids_that_ignore_the_budget_are_not_honoured() -> None:
    over_cap = replay(BASE, [9], [10, 11, 12, 13, 14, 15, 16, 17])
    assert not over_cap.honoured and "forces 22" in over_cap.violation  # the answer prefix was due
    early_end = replay(BASE, [9], [10, 20])  # an extension is due: ending is banned
    assert not early_end.honoured and "forbids" in early_end.violation
    wrong_rest = replay(BASE, [9], [10, 3, 11])  # "3" as the model's own token is fine ...
    assert wrong_rest.honoured and wrong_rest.extensions_used == 0
    after_done = replay(BASE.replace(max_thinking_tokens=0), [9], [22, 5, 6, 1, 2, 7])
    assert not after_done.honoured and "finished budget" in after_done.violation


def test_extension_and_cap_read_back() -> None:
    # end attempt -> "3 4" forced; the second end is allowed; answer of 4 tokens; EOS forced.
    ids = [10, 3, 4, 20, 11, 12, 13, 14, EOS]
    rp = replay(BASE.replace(max_thinking_tokens=None), [9], ids)
    assert rp.honoured and rp.stopped_by_budget and rp.final_phase == Phase.DONE
    assert (rp.thinking_tokens, rp.answer_tokens, rp.forced_tokens, rp.extensions_used) == (4, 4, 2, 1)
    capped = replay(BASE, [9], [3, 4, 10, 11, 12, 13, 22, 5, 6, 1, EOS])
    assert capped.capped and capped.forced_tokens == 3 + 2 and capped.extensions_used == 1


def test_the_documented_ambiguity_counts_the_extension() -> None:
    """A one-token extension the model writes itself where one was due reads as forced (docs)."""
    one = BASE.replace(extensions=((3,),), max_thinking_tokens=4)
    rp = replay(one, [9], [3, 10, 11, 12, 22, 5, 6, 1, EOS])
    assert rp.honoured and rp.extensions_used == 1 and rp.forced_tokens == 1 + 3


def test_build_result_reads_like_s1kits_engine() -> None:
    from tests.engines.test_vllm_e2e import reference
    from tests.unit.tiny_lm import s1_prompt, tiny_tokenizer

    tok = tiny_tokenizer()
    spec = BudgetSpec.from_tokenizer(tok, max_thinking_tokens=2, max_answer_tokens=3)
    p = s1_prompt(tok, "x")
    a = tok.encode("a")[0]
    ids = reference(spec, p, a, 50)  # a model that always writes "a", under the processor's rules
    prefix = list(spec.answer_prefix)
    assert ids == [a, a, *prefix, tok.eos_token_id]
    req = Request(p, SamplingParams(max_new_tokens=50), spec, "a")
    # The answer prefix fills the answer cap; the processor then forces EOS, which is dropped.
    (res,) = build_results([req], [ids], ["eos"], tok)
    assert res.token_ids == ids[:-1] and res.finish_reason == "length" and res.capped
    assert res.text == tok.decode(ids[:-1], skip_special_tokens=False)
    assert (res.thinking_tokens, res.answer_tokens, res.forced_tokens) == (2, len(prefix), len(prefix))
    with pytest.raises(S1kitError, match="--logits-processors"):
        build_results([req], [[5, 6, 7]], ["length"], tok, refuse="start it with --logits-processors X")
    (bad,) = build_results([req], [[5, 6, 7]], ["length"], tok)  # trusted engine: logged, "error"
    assert bad.finish_reason == "error"
    (plain,) = build_results([Request(p, SamplingParams(stop=("b",)))], [tok.encode("abc")], ["stop"], tok)
    assert plain.text == "a" and plain.thinking_tokens == 0


def test_vllm_stops_on_the_budgets_eos_too() -> None:
    from s1kit.backends.vllm import stop_ids

    assert stop_ids(Request([1], SamplingParams(stop_token_ids=(5, EOS)), BASE)) == [5, EOS]
    assert stop_ids(Request([1], SamplingParams(stop_token_ids=(5,)), BASE)) == [5, EOS]
    assert stop_ids(Request([1], SamplingParams())) == []


def test_finish_reasons_map_to_s1kits() -> None:
    assert finish_reason("length", None, {2}) == "length"
    assert finish_reason("stop", None, {2}) == "eos"
    assert finish_reason("stop", 2, {2}) == "eos"
    assert finish_reason("stop", 7, {2}) == "stop"
    assert finish_reason("stop", "</answer>", {2}) == "stop"
    assert finish_reason("abort", None, {2}) == "error"


def test_openai_backend_arguments_and_an_unreachable_server() -> None:
    from s1kit.backends import load_backend

    with pytest.raises(ValueError, match="--base-url"):
        load_backend("openai", "m", EngineOptions())
    with pytest.raises(ValueError, match="tokenizer"):
        load_backend("openai", "m", EngineOptions(base_url="http://127.0.0.1:1", engine_args={"dtype": 1}))
    from s1kit.backends.openai import OpenAIBackend

    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(S1kitError, match="check --base-url"):
        OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", None)


def test_vllm_backend_without_vllm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from s1kit.backends import EngineNotInstalled, load_backend

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here (tests/engines covers the backend)")
    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "0")  # load() sets it when unset; keep the env clean
    with pytest.raises(EngineNotInstalled, match=r"s1kit\[vllm\]"):
        load_backend("vllm", "m", EngineOptions())
