"""Choosing a model's thinking delimiters: named styles, custom strings, detection, templates that open
thinking, and the one-line error for a style whose tokens the tokenizer lacks."""

from __future__ import annotations

from typing import Any

import pytest

from s1kit.budget import BudgetSpec
from s1kit.budget.delimiters import choose_delimiters, detect_style
from s1kit.errors import TokenizationError
from s1kit.generate import Engine, Request, SamplingParams
from tests.unit.tiny_lm import CHAT_TEMPLATE, tiny_hf_model, tiny_tokenizer

TEXT = "Wait, let me think about this step by step. The answer is 42. Final Answer: think answer user "


def _tokenizer(specials: list[str], eos: str, template: str | None = CHAT_TEMPLATE) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TEXT] * 10, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, additional_special_tokens=specials)
    fast.chat_template = template
    return fast


@pytest.fixture(scope="module")
def chatml() -> Any:
    """A ChatML tokenizer without <think> tokens (like Qwen2.5's)."""
    return _tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|im_end|>")


def test_detection_prefers_think_tags_then_chatml(chatml):
    assert detect_style(tiny_tokenizer())[0] == "think_tags"
    assert detect_style(chatml)[0] == "s1"
    plain = _tokenizer(["<s>", "</s>"], "</s>", template=None)
    with pytest.raises(TokenizationError, match=r"neither <think>/</think> nor <\|im_start\|>.*--think-end"):
        detect_style(plain)
    d = choose_delimiters(chatml)
    assert (d.style, d.think_start, d.think_end) == ("s1", ("<|im_start|>think",), ("<|im_start|>",))
    assert "detected" in d.chosen_by and "s1 (detected" in d.describe()


def test_think_tags_without_the_token_is_one_clear_line(chatml):
    with pytest.raises(TokenizationError) as e:
        choose_delimiters(chatml, style="think_tags")
    msg = str(e.value)
    assert "\n" not in msg and "'<think>'" in msg
    assert "--style s1" in msg and "--think-start/--think-end" in msg
    # The spec builder no longer suggests the style that was just passed.
    with pytest.raises(TokenizationError) as e2:
        BudgetSpec.from_tokenizer(chatml, style="think_tags")
    assert "style='think_tags'" not in str(e2.value)


def test_flags_override_parts_and_custom_sets_need_no_style(chatml):
    tok = tiny_tokenizer()
    d = choose_delimiters(tok, style="s1", extensions=["Hmm", "Wait"], answer_prefix="\n<|im_start|>answer\n")
    assert d.extensions == ("Hmm", "Wait") and d.answer_prefix == "\n<|im_start|>answer\n"
    assert d.think_end == ("<|im_start|>",) and "--extension" in d.chosen_by
    custom = choose_delimiters(tok, think_end=["</think>"])
    assert (custom.style, custom.think_start, custom.answer_prefix) == (
        "custom",
        (),
        "\n</think>\n\nFinal Answer:",
    )
    assert custom.opener() == "" and "rows start in their thinking span" in custom.describe()
    spec = custom.spec(tok, max_thinking_tokens=3)
    assert spec.think_start == () and spec.think_end == ((tok.convert_tokens_to_ids("</think>"),),)
    both = choose_delimiters(tok, think_start=["<think>"], think_end=["</think>"])
    assert both.open_thinking("<|im_start|>assistant\n") == "<|im_start|>assistant\n<think>\n"
    with pytest.raises(ValueError, match="--think-end got an empty string"):
        choose_delimiters(tok, think_end=[""])


def test_a_template_that_opens_thinking_sets_the_phase_from_the_prompt():
    """DeepSeek-R1-like: the generation prompt ends with "<think>\\n"; nothing is appended and the
    budget core starts the row in its thinking span (the cap applies from the first token)."""
    opens = CHAT_TEMPLATE.replace("<|im_start|>assistant\n", "<|im_start|>assistant\n<think>\n")
    tok = tiny_tokenizer()
    tok.chat_template = opens
    d = choose_delimiters(tok)
    assert d.style == "think_tags" and d.template_opens_thinking
    assert "the chat template opens thinking" in d.describe()
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Hmm"}], tokenize=False, add_generation_prompt=True
    )
    assert d.open_thinking(prompt) == prompt and prompt.endswith("<think>\n")
    assert d.open_thinking("Hmm", chat=False) == "Hmm<think>\n"  # raw text: opened by us
    hf = tiny_hf_model("llama", tok, seed=3)
    spec = d.spec(tok, max_thinking_tokens=5)
    ids = tok.encode(prompt, add_special_tokens=False)
    (r,) = Engine(hf, tok, max_batch=1, max_len=128).generate(
        [Request(ids, SamplingParams(max_new_tokens=30), spec)]
    )
    assert r.capped and r.thinking_tokens >= 5
    assert r.token_ids[5 : 5 + len(spec.answer_prefix)] == list(spec.answer_prefix)
    # A template that does not open thinking: the style's opener is appended.
    plain = choose_delimiters(tiny_tokenizer())
    assert not plain.template_opens_thinking and plain.opener() == "<think>\n"
