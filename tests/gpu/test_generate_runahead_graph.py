"""On CUDA, the run-ahead windows (K graph replays per host synchronisation) equal the host loop, and
a window queues its steps without synchronising (needs CUDA)."""

from __future__ import annotations

import pytest
import torch

from s1kit.generate import Engine, Request, SamplingParams
from s1kit.generate.step import DecodeStep
from tests.unit.test_generate_runahead import RESULT_FIELDS, generate, mixed_requests, setup  # noqa: F401

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def engine(setup, **kw):  # noqa: F811 (fixture)
    tok, hf, _, eos, _ = setup
    return Engine(hf, tok, device="cuda", max_batch=8, max_len=256, eos_token_ids=eos, **kw)


@pytest.fixture(scope="module")
def host_run(setup):  # noqa: F811 (fixture)
    tok, _, prompts, _, common = setup
    reqs = mixed_requests(tok, prompts, common)
    eng = engine(setup, budget_path="host")
    assert eng.step.cuda_graphs and not eng.tensor_budget
    return reqs, *generate(eng, reqs)


@pytest.mark.parametrize(("k", "compile_budget"), [(1, False), (8, False), (16, False), (8, True)])
def test_graph_runahead_equals_host_loop(setup, host_run, k, compile_budget):  # noqa: F811 (fixture)
    reqs, want, want_streams, _ = host_run
    eng = engine(setup, sync_every=k, compile_budget=compile_budget)
    assert eng.tensor_budget and eng.step.cuda_graphs  # auto on CUDA: run-ahead in graphs
    got, streams, _ = generate(eng, reqs)
    for g, w in zip(got, want, strict=True):
        for f in RESULT_FIELDS:
            assert getattr(g, f) == getattr(w, f), f"K={k}, request {w.request_id}: {f}"
        assert streams.get(w.request_id, []) == want_streams[w.request_id]
    step = eng.step
    assert any(key[4] for key in step._graphs), "no run-ahead graph was captured"
    assert step.steps_run <= k * step.windows
    # Replaying the captured graphs again gives the same results (no state leaks between calls).
    assert [r.token_ids for r in eng.generate(reqs)] == [r.token_ids for r in want]


def test_a_window_never_synchronises(setup, host_run, monkeypatch):  # noqa: F811 (fixture)
    """With the graphs captured, queueing a window (uploads, K replays, the copy-out) raises under
    torch's sync debug mode "error" if anything in it waits for the device."""
    reqs, want, _, _ = host_run
    eng = engine(setup, sync_every=8)
    eng.generate(reqs)  # captures every graph this workload needs
    original = DecodeStep.run_ahead

    def strict(self, *args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original(self, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(DecodeStep, "run_ahead", strict)
    n_graphs = eng.step.n_graphs
    got = eng.generate(reqs)
    assert eng.step.n_graphs == n_graphs
    assert [r.token_ids for r in got] == [r.token_ids for r in want]


def test_one_host_wait_per_window_on_cuda(setup):  # noqa: F811 (fixture)
    tok, hf, prompts, _, _ = setup
    reqs = [Request(p, SamplingParams(max_new_tokens=65)) for p in prompts[:4]]
    eng = Engine(hf, tok, device="cuda", max_batch=4, max_len=256, eos_token_ids=[], sync_every=16)
    eng.generate(reqs)
    waits, steps = eng.step.host_waits, eng.step.steps_run
    eng.generate(reqs)
    assert (eng.step.host_waits - waits, eng.step.steps_run - steps) == (1 + 4, 64)
