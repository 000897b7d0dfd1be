"""The engine against transformers' generate, and its own guarantees (seeds, finished rows, errors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s1kit.generate import Engine, Request, SamplingParams
from s1kit.generate.sampling import SamplingMode, counter_uniform, sample
from tests.unit.tiny_lm import tiny_hf_model, tiny_tokenizer

TEXTS = [
    "The answer is",
    "We check each case: if x is even then",
    "Hmm",
    "Final Answer: the sum of two and three is five. Think again, carefully, about",
    "so the total",
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def prompts(tok):
    return [tok.encode(t) for t in TEXTS]


def hf_greedy(hf, tok, prompts, max_new_tokens):
    """transformers' batched greedy generate (left padding), cut after the first EOS."""
    tok.padding_side = "left"
    enc = tok.pad({"input_ids": prompts}, return_tensors="pt")
    out = hf.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    res = []
    for row in out[:, enc["input_ids"].shape[1] :].tolist():
        if tok.eos_token_id in row:
            row = row[: row.index(tok.eos_token_id) + 1]
        res.append(row)
    return res


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "llama"])
def test_greedy_equals_transformers_generate(tok, prompts, arch):
    hf = tiny_hf_model(arch, tok, seed=3)
    ref = hf_greedy(hf, tok, prompts, 40)
    got = Engine(hf, tok, max_batch=8, max_len=128).generate(
        [Request(p, SamplingParams(max_new_tokens=40)) for p in prompts]
    )
    assert [r.token_ids for r in got] == ref
    for r, want in zip(got, ref, strict=True):
        assert r.finish_reason == ("eos" if want[-1] == tok.eos_token_id else "length")
        assert r.prefill_tokens_per_s > 0 and r.decode_tokens_per_s > 0


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_continuous_batching_equals_one_batch(tok, prompts, arch):
    """Two slots for five requests: rows leave, others are prefilled into the freed slots; and one
    request at a time gives the same tokens."""
    hf = tiny_hf_model(arch, tok, seed=3)
    reqs = [Request(p, SamplingParams(max_new_tokens=10 + 7 * i)) for i, p in enumerate(prompts)]
    wide = Engine(hf, tok, max_batch=8, max_len=128).generate(reqs)
    narrow = Engine(hf, tok, max_batch=2, max_len=128).generate(reqs)
    assert [r.token_ids for r in narrow] == [r.token_ids for r in wide]
    single = Engine(hf, tok, max_batch=1, max_len=128)
    assert [single.generate([r])[0].token_ids for r in reqs] == [r.token_ids for r in wide]
    for i, r in enumerate(wide):
        assert len(r.token_ids) == 10 + 7 * i or r.token_ids[-1] == tok.eos_token_id
    if arch == "qwen2":  # this seed never emits EOS: every row runs to its own length
        assert [len(r.token_ids) for r in wide] == [10 + 7 * i for i in range(5)]


def test_eos_ends_a_row_and_is_kept_out_of_text(tok, prompts):
    hf = tiny_hf_model("qwen2", tok, seed=3)
    eng = Engine(hf, tok, max_batch=4, max_len=128)
    free = eng.generate([Request(prompts[1], SamplingParams(max_new_tokens=30))])[0]
    # Declare the 5th generated token an EOS: generation ends right there.
    eng5 = Engine(hf, tok, max_batch=4, max_len=128, eos_token_ids=[free.token_ids[4]])
    r = eng5.generate([Request(prompts[1], SamplingParams(max_new_tokens=30))])[0]
    assert r.finish_reason == "eos"
    k = free.token_ids.index(free.token_ids[4])
    assert r.token_ids == free.token_ids[: k + 1]
    assert r.text == tok.decode(free.token_ids[:k], skip_special_tokens=False)


def test_stop_strings_and_stop_ids(tok, prompts):
    hf = tiny_hf_model("qwen2", tok, seed=3)
    eng = Engine(hf, tok, max_batch=4, max_len=128)
    free = eng.generate([Request(prompts[0], SamplingParams(max_new_tokens=30))])[0]
    text = free.text
    stop = text[10:14]
    assert stop.strip(), "the test needs a visible stop string"
    r = eng.generate([Request(prompts[0], SamplingParams(max_new_tokens=30, stop=(stop,)))])[0]
    assert r.finish_reason == "stop"
    assert r.text == text[: text.find(stop)]
    assert free.token_ids[: len(r.token_ids)] == r.token_ids
    assert stop in tok.decode(r.token_ids) and stop not in tok.decode(r.token_ids[:-1])
    s = eng.generate(
        [Request(prompts[0], SamplingParams(max_new_tokens=30, stop_token_ids=[free.token_ids[6]]))]
    )[0]
    assert s.finish_reason == "stop" and s.token_ids[-1] == free.token_ids[6]


def test_seeded_sampling_is_reproducible_whatever_the_batch(tok, prompts):
    hf = tiny_hf_model("llama", tok, seed=4)
    eng = Engine(hf, tok, max_batch=8, max_len=128)
    sp = SamplingParams(temperature=1.0, top_p=0.9, top_k=50, seed=1234, max_new_tokens=25)
    alone = eng.generate([Request(prompts[2], sp)])[0].token_ids
    others = [
        Request(p, SamplingParams(temperature=0.7, seed=i, max_new_tokens=5 + i))
        for i, p in enumerate(prompts)
    ]
    mixed = eng.generate([*others[:3], Request(prompts[2], sp), *others[3:]])
    assert mixed[3].token_ids == alone
    assert eng.generate([Request(prompts[2], sp)])[0].token_ids == alone
    other_seed = eng.generate(
        [Request(prompts[2], SamplingParams(temperature=1.0, seed=99, max_new_tokens=25))]
    )
    assert other_seed[0].token_ids != alone
    greedy = eng.generate([Request(prompts[2], SamplingParams(max_new_tokens=25))])[0].token_ids
    assert alone != greedy, "sampling at temperature 1 should leave the greedy path"
    top1 = eng.generate(
        [Request(prompts[2], SamplingParams(temperature=1.0, top_k=1, seed=5, max_new_tokens=25))]
    )
    assert top1[0].token_ids == greedy


def test_an_unfiltered_seeded_row_ignores_a_filtering_batch_mate(tok, prompts):
    """A batch-mate with top-k/top-p switches the step to the sorted draw; rows without filters must
    still draw as they do alone (they did not, before: every sampled row drew in sorted order)."""
    hf = tiny_hf_model("llama", tok, seed=4)
    eng = Engine(hf, tok, max_batch=8, max_len=128)
    plain = SamplingParams(temperature=1.0, seed=77, max_new_tokens=25)
    alone = eng.generate([Request(prompts[1], plain)])[0].token_ids
    filtering = Request(prompts[0], SamplingParams(temperature=1.0, top_k=5, seed=3, max_new_tokens=25))
    mixed = eng.generate([filtering, Request(prompts[1], plain)])
    assert mixed[1].token_ids == alone


def test_sampling_follows_the_distribution():
    """Inverse-CDF draws from the counter hash match the probabilities (chi-square, 4 tokens)."""
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]])).expand(20000, 4)
    counter = torch.arange(20000)
    for mode in (SamplingMode.SAMPLE, SamplingMode.FILTERED):
        toks = sample(
            logits,
            torch.ones(20000),
            torch.ones(20000),
            torch.zeros(20000, dtype=torch.int64),
            torch.full((20000,), 7),
            counter,
            mode,
        )
        freq = np.bincount(toks.numpy(), minlength=4) / 20000
        np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)
    # top_p = 0.5 keeps the two most likely tokens (0.4 then 0.3), renormalised.
    toks = sample(
        logits,
        torch.ones(20000),
        torch.full((20000,), 0.5),
        torch.zeros(20000, dtype=torch.int64),
        torch.full((20000,), 7),
        counter,
        SamplingMode.FILTERED,
    )
    freq = np.bincount(toks.numpy(), minlength=4) / 20000
    np.testing.assert_allclose(freq, [0, 0, 3 / 7, 4 / 7], atol=0.015)
    u = counter_uniform(torch.full((20000,), 7), counter)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0


def test_a_finished_row_never_changes_while_others_continue(tok, prompts):
    hf = tiny_hf_model("qwen2", tok, seed=3)
    eng = Engine(hf, tok, max_batch=8, max_len=128)
    streamed: dict[str, list[int]] = {}
    finished_at: dict[str, int] = {}
    events: list[str] = []

    def on_token(rid, t):
        assert rid not in finished_at, f"request {rid} got a token after it finished"
        streamed.setdefault(rid, []).append(t)
        events.append(rid)

    reqs = [
        Request(p, SamplingParams(max_new_tokens=5 if i == 1 else 40), request_id=f"r{i}")
        for i, p in enumerate(prompts)
    ]
    orig_finish = type(eng).generate  # noqa: F841 (documenting that generate is the only entry point)
    res = eng.generate(reqs, on_token=on_token)
    for r in res:
        finished_at[r.request_id] = len(events)
        assert streamed[r.request_id] == r.token_ids
    # r1 stopped after 5 tokens while the others ran on; alone it yields the same 5 tokens.
    assert len(res[1].token_ids) == 5
    assert max(len(r.token_ids) for r in res) > 5
    last_r1 = max(i for i, rid in enumerate(events) if rid == "r1")
    assert any(rid != "r1" for rid in events[last_r1 + 1 :])
    alone = eng.generate([reqs[1]])[0]
    assert alone.token_ids == res[1].token_ids


def test_bad_input_is_a_clear_error(tok, prompts):
    hf = tiny_hf_model("qwen2", tok, seed=3)
    eng = Engine(hf, tok, max_batch=2, max_len=32)
    with pytest.raises(ValueError, match=r"prompt has 40 tokens.*max_len=32"):
        eng.generate([Request([5] * 40)])
    with pytest.raises(ValueError, match="empty prompt"):
        eng.generate([Request([])])
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        eng.generate([Request([5, 10_000])])
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(TypeError, match="not a string"):
        SamplingParams(stop="x")
    with pytest.raises(TypeError, match="Request"):
        eng.generate([prompts[0]])
    # The fixed-shape step refuses a batch over the maximum or outside its buckets.
    with pytest.raises(ValueError, match="batch size 3 is not one of the captured buckets"):
        Engine(hf, tok, max_batch=4, max_len=32).step.run(3, 64, SamplingMode.GREEDY)
    with pytest.raises(ValueError, match="batch size 4 exceeds max_batch=2"):
        eng.step.run(4, 64, SamplingMode.GREEDY)
    with pytest.raises(ValueError, match="do not fit the cache"):
        eng.model(
            torch.zeros((3, 1), dtype=torch.int64), torch.zeros((3, 1), dtype=torch.int64), eng.cache, 0, 64
        )
    with pytest.raises(ValueError, match="attention length 48"):
        eng.step.run(2, 48, SamplingMode.GREEDY)
    with pytest.raises(ValueError, match="max_batch"):
        Engine(hf, tok, max_batch=0)
    with pytest.raises(ValueError, match="cuda_graphs=True needs a CUDA device"):
        Engine(hf, tok, cuda_graphs=True)


def test_generation_stops_at_the_cache_length(tok, prompts):
    hf = tiny_hf_model("qwen2", tok, seed=3)
    eng = Engine(hf, tok, max_batch=2, max_len=32)
    r = eng.generate([Request(prompts[0], SamplingParams(max_new_tokens=100))])[0]
    if r.finish_reason != "eos":
        assert r.finish_reason == "length"
        assert len(prompts[0]) + len(r.token_ids) == 32
    ref = Engine(hf, tok, max_batch=2, max_len=128).generate(
        [Request(prompts[0], SamplingParams(max_new_tokens=100))]
    )
    assert ref[0].token_ids[: len(r.token_ids)] == r.token_ids


def test_rows_finishing_at_prefill_leave_at_once(tok, prompts):
    """max_new_tokens=1 rows end with their prefill token; the others are unaffected."""
    hf = tiny_hf_model("qwen2", tok, seed=3)
    eng = Engine(hf, tok, max_batch=4, max_len=128)
    reqs = [Request(p, SamplingParams(max_new_tokens=1 if i % 2 else 12)) for i, p in enumerate(prompts)]
    res = eng.generate(reqs)
    full = eng.generate([Request(p, SamplingParams(max_new_tokens=12)) for p in prompts])
    for i, (r, f) in enumerate(zip(res, full, strict=True)):
        assert r.token_ids == f.token_ids[: 1 if i % 2 else 12]
        if i % 2:
            assert r.decode_tokens_per_s == 0.0
        else:
            assert r.decode_tokens_per_s > 0
