"""BudgetSpec validation and the tokenizer builder, with a real tokenizer trained in the test."""

from __future__ import annotations

import numpy as np
import pytest

from s1kit.budget import BudgetBatch, BudgetSpec, Phase
from s1kit.errors import TokenizationError
from tests.tiny import tiny_tokenizer


def test_min_above_max_is_rejected_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"min_thinking_tokens \(9\) exceeds max_thinking_tokens \(4\)"):
        BudgetSpec(
            10,
            think_end=[[1]],
            answer_prefix=[1],
            extensions=[[2]],
            max_thinking_tokens=4,
            min_thinking_tokens=9,
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"think_end": [[]]}, r"think_end\[0\] is empty"),
        ({"think_end": []}, "think_end is empty"),
        ({"think_end": [[10]]}, "token id 10, outside the vocabulary of size 10"),
        ({"think_end": [[1]], "extensions": [[2, 99]]}, "extensions holds token id 99"),
        ({"think_end": [[1]], "num_extensions": 2}, "extensions is empty"),
        ({"think_end": [[1]], "max_thinking_tokens": 5}, "answer_prefix is empty"),
        ({"think_end": [[1]], "grace_tokens": 2}, "newline_tokens is empty"),
        ({"think_end": [[1]], "min_thinking_tokens": -1}, "min_thinking_tokens must be >= 0"),
        ({"think_end": [[-3]]}, "negative or too large"),
        # Specs mask mode (the engine adapters) could not run as override mode does (issues 13, 16).
        ({"think_end": [[4, 5]], "extensions": [[4, 5]]}, r"starts with the think_end spelling \[4, 5\]"),
        ({"think_end": [[5]], "extensions": [[5]], "min_thinking_tokens": 1}, "think_end"),
        ({"think_end": [[4, 5]], "extensions": [[5, 2]]}, "completes the think_end spelling"),
        ({"think_end": [[1]], "eos": [9], "extensions": [[9]]}, "starts with an EOS id"),
        ({"think_end": [[1]], "eos": [9], "answer_prefix": [1, 9]}, "answer_prefix holds the EOS id 9"),
    ],
)
def test_bad_specs_name_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BudgetSpec(10, **kwargs)


def test_builder_s1_style_spells_delimiters_as_single_special_tokens() -> None:
    tok = tiny_tokenizer()
    spec = BudgetSpec.from_tokenizer(tok, style="s1", max_thinking_tokens=8, num_extensions=2)
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    assert spec.think_end == ((im_start,),)
    assert spec.think_start[0][0] == im_start and len(spec.think_start[0]) > 1
    assert tok.decode(list(spec.answer_prefix)) == "\n<|im_start|>answer\nFinal Answer:"
    assert tok.decode(list(spec.extensions[0])) == "Wait"
    assert spec.eos == (tok.eos_token_id,)
    assert spec.vocab_size == len(tok)


def test_builder_tokenizes_the_extension_in_context() -> None:
    tok = tiny_tokenizer()
    bare = BudgetSpec.from_tokenizer(tok, extension="Wait", num_extensions=1).extensions[0]
    spaced = BudgetSpec.from_tokenizer(tok, extension=" Wait", num_extensions=1).extensions[0]
    assert tok.decode(list(spaced)) == " Wait"
    assert spaced != bare


def test_builder_rejects_a_delimiter_the_vocabulary_lacks() -> None:
    tok = tiny_tokenizer()
    with pytest.raises(TokenizationError, match=r"'<\|begin_of_thought\|>'.*not a special token"):
        BudgetSpec.from_tokenizer(tok, think_end="<|begin_of_thought|>")


def test_prompt_decides_the_initial_phase() -> None:
    tok = tiny_tokenizer()
    spec = BudgetSpec.from_tokenizer(tok, style="s1")
    batch = BudgetBatch(2)
    opened = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    batch.add(spec, tok.encode(opened + "<|im_start|>think\n"))
    batch.add(spec, tok.encode(opened))
    assert batch.accounting().phase.tolist() == [Phase.THINKING, Phase.PRE_THINK]


def test_step_rejects_wrong_dtype_and_shape_with_clear_messages() -> None:
    batch = BudgetBatch(2)
    batch.insert(0, BudgetSpec(10, think_end=[[1]]))
    out = np.zeros(2, np.int32)
    with pytest.raises(TypeError, match="int32 or int64"):
        batch.step(np.zeros(2, np.float32), out)
    with pytest.raises(ValueError, match=r"expected one token per slot \(2\), got 3"):
        batch.step(np.zeros(3, np.int64), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="out has 3 entries"):
        batch.step(np.zeros(2, np.int64), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="C-contiguous"):
        batch.step(np.zeros(4, np.int64)[::2], out)
    with pytest.raises(IndexError, match="slot 1 is empty"):
        batch.rollback(1, 1)
    with pytest.raises(ValueError, match="outside the batch of capacity 2"):
        batch.insert(5, BudgetSpec(10, think_end=[[1]]))


def test_invalid_sampled_token_moves_the_row_to_error_not_an_exception() -> None:
    batch = BudgetBatch(2)
    for slot in range(2):
        batch.insert(slot, BudgetSpec(10, think_end=[[1]]))
    out = np.zeros(2, np.int32)
    batch.step(np.array([10, 3]), out)
    acc = batch.accounting()
    assert acc.phase.tolist() == [Phase.ERROR, Phase.THINKING]
    assert acc.error.tolist() == [1, 0]


def test_rows_argument_steps_a_subset_of_slots() -> None:
    batch = BudgetBatch(4)
    spec = BudgetSpec(10, think_end=[[1]], extensions=[[2, 3]], num_extensions=1)
    batch.insert(3, spec)
    out = np.zeros(1, np.int64)
    batch.step(np.array([1]), out, rows=np.array([3], np.int32))
    assert out.tolist() == [2]
    assert batch.accounting().extensions_used.tolist() == [0, 0, 0, 1]
