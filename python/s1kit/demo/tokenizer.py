"""A character-level tokenizer for the demo's tasks, with Qwen-style specials and chat template.

Every character of the task alphabet is one token (``WordLevel`` over single characters), so the
thinking budget counts characters of the trace and a forced "Wait" or "Final Answer:" spells itself out.
The specials and the template match Qwen2.5's, which is what ``s1kit train`` and the budget core expect
for the ``s1`` style (``<|im_start|>think`` / ``<|im_start|>answer``, ``<|im_end|>`` ends a turn).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Words the budget forcing and the chat template write, whatever the tasks hold.
TEMPLATE_WORDS = "system user assistant think answer Final Answer: Wait, \n"


def build_char_tokenizer(texts: Iterable[str]) -> Any:
    """A ``PreTrainedTokenizerFast`` with one token per character seen in ``texts`` (plus the template's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    alphabet = sorted(set("".join(texts)) | set(TEMPLATE_WORDS))
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(alphabet, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIALS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
