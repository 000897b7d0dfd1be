"""The engine's one owner of the budget truth: where it is, explicit transfers, row changes on the host only."""

from __future__ import annotations

import numpy as np
import pytest

from s1kit.budget import BudgetSpec
from s1kit.generate import Engine, Request, SamplingParams
from tests.unit.tiny_lm import tiny_hf_model, tiny_tokenizer


@pytest.fixture(scope="module")
def engine() -> Engine:
    tok = tiny_tokenizer()
    return Engine(tiny_hf_model("llama", tok, seed=3), tok, max_batch=4, max_len=128, budget_path="tensor")


def test_the_truth_moves_only_by_explicit_transfers(engine: Engine) -> None:
    tok = engine.tokenizer
    spec = BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=2, max_thinking_tokens=5)
    budget = engine.budget
    budget.start_run()
    assert budget.where == "host" and budget.rows == 0
    opened = [5, 1, 88, 76, 278]  # "<|im_start|>think": the rows are in their thinking span
    assert spec.think_start == (tuple(opened[1:]),)
    budget.insert(0, spec, opened)
    budget.insert(2, spec, [8, *opened])
    host = budget.accounting()
    budget.to_device(compile=False)
    assert budget.where == "device" and budget.device_budget is not None
    mirror = budget.device_budget
    # Reading the counters moves nothing and agrees with the batch it was loaded from.
    on_device = budget.accounting()
    assert budget.where == "device"
    assert on_device.phase.tolist() == host.phase.tolist()
    # Row changes and the host step refuse to run while the truth is on the device.
    for change in (
        lambda: budget.insert(1, spec, [5]),
        lambda: budget.remove(0),
        lambda: budget.move_row(2, 1),
        lambda: budget.step_host(np.zeros(4, np.int64), np.zeros(4, np.int64), np.arange(4)),
    ):
        with pytest.raises(RuntimeError, match="call to_host first"):
            change()
    # Four tokens on the device, handed back: the batch now holds what the mirror counted.
    for t in (10, 11, 12, 13):
        mirror.step(mirror.state_FB.new_full((4,), t))
    counted = budget.accounting().thinking_tokens.tolist()
    budget.to_host()
    assert budget.where == "host"
    assert budget.batch.accounting().thinking_tokens.tolist() == counted
    assert counted[0] == counted[2] == 4
    budget.remove(0)
    assert budget.rows == 1
    # A batch that fits reuses the mirror's buffers (and so the step's captured graphs).
    budget.to_device(compile=False)
    assert budget.device_budget is mirror
    budget.to_device(compile=False)  # already there: nothing happens
    assert budget.where == "device"


def test_generate_hands_the_truth_back_when_rows_leave(engine: Engine) -> None:
    """A tensor-path call ends with every row gone and the truth on the host (removing a row hands it
    back), and gives the host path's results."""
    tok = engine.tokenizer
    spec = BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=1, max_thinking_tokens=6)
    reqs = [
        Request([5, 1, 88, 76, 278, i + 8], SamplingParams(max_new_tokens=12), budget=spec) for i in range(6)
    ]
    engine.budget_path = "tensor"
    tensor = engine.generate(reqs)
    assert (engine.budget.where, engine.budget.rows) == ("host", 0)
    engine.budget_path = "host"
    host = engine.generate(reqs)
    engine.budget_path = "tensor"
    assert [r.token_ids for r in tensor] == [r.token_ids for r in host]
    assert [r.thinking_tokens for r in tensor] == [r.thinking_tokens for r in host]
    assert any(r.forced_tokens for r in host)
