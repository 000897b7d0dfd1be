"""A character-level tokenizer for the demo's tasks, with Qwen-style specials and chat template.

Every character of the task alphabet is one token, so the thinking budget counts characters of the
trace and a forced "Wait" or "Final Answer:" spells itself out. It is Qwen2's own tokenizer layout
(byte-level BPE) with no merges: a model folder whose ``config.json`` says ``qwen2`` makes transformers
load its tokenizer as ``Qwen2Tokenizer``, which imposes Qwen's byte-level pre-tokenizer, so a tokenizer of
another kind would silently lose its spaces and newlines there. The specials and the template match
Qwen2.5's, which is what ``s1kit train`` and the budget core expect for the ``s1`` style
(``<|im_start|>think`` / ``<|im_start|>answer``, ``<|im_end|>`` ends a turn).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Words the budget forcing, the chat template and the evaluation's prompting baseline
# (token-conditional: "Think for up to N tokens.") write, whatever the tasks hold.
TEMPLATE_WORDS = "system user assistant think answer Final Answer: Wait, Think for up to 0123456789 tokens.\n"


def build_char_tokenizer(texts: Iterable[str]) -> Any:
    """A ``PreTrainedTokenizerFast`` with one token per character seen in ``texts`` (plus the template's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    alphabet = sorted(set("".join(texts)) | set(TEMPLATE_WORDS))
    symbols = sorted({sym for ch in alphabet for sym in byte_level.pre_tokenize_str(ch)[0][0]})
    vocab = {t: i for i, t in enumerate([*SPECIALS, *symbols])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIALS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
