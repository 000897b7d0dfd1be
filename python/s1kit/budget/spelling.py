"""Turning delimiter and extension strings into token ids, with checks that they mean what they say."""

from __future__ import annotations

import re
from typing import Any

from s1kit.errors import TokenizationError

# A Hugging Face tokenizer (fast or slow): ``encode(text, add_special_tokens=False)``, ``decode(ids)``,
# ``len()``. Typed loosely because the transformers backends differ in their signatures.
TokenizerLike = Any


# Strings shaped like special tokens: <|...|>, <think>, </think>, <s>, ...
_SPECIAL_LIKE = re.compile(r"<\|[^<>|]+\|>|</?[A-Za-z_]+>")


def _encode(tok: TokenizerLike, text: str) -> list[int]:
    return [int(t) for t in tok.encode(text, add_special_tokens=False)]


def spell(tok: TokenizerLike, text: str, what: str, context: str = "") -> tuple[int, ...]:
    """Ids of ``text`` as the tokenizer spells it after ``context``; checked to round-trip."""
    if text == "":
        raise ValueError(f"{what} is an empty string: give the text to force, or leave it unset")
    for piece in _SPECIAL_LIKE.findall(text):
        _single_token(tok, piece, what)
    if context:
        ctx = _encode(tok, context)
        full = _encode(tok, context + text)
        if full[: len(ctx)] != ctx:
            raise TokenizationError(
                f"{what} {text!r} merges with its context {context!r} into other tokens; "
                "choose another extension_context or an extension that starts a new token"
            )
        ids = full[len(ctx) :]
    else:
        ids = _encode(tok, text)
    back = tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if back != text:
        raise TokenizationError(
            f"{what} {text!r} does not round-trip through the tokenizer (decodes to {back!r}); "
            "use a string the tokenizer can represent exactly"
        )
    return tuple(ids)


def spell_delimiter(tok: TokenizerLike, text: str, what: str) -> tuple[int, ...]:
    """Like :func:`spell`; delimiters may not be empty and special-looking parts must be one token."""
    return spell(tok, text, what)


def _single_token(tok: TokenizerLike, piece: str, what: str) -> None:
    ids = _encode(tok, piece)
    if len(ids) != 1:
        raise TokenizationError(
            f"{what} contains {piece!r}, which this tokenizer splits into {len(ids)} tokens {ids}: it is "
            "not a special token of this vocabulary. Add it as a special token, or pass the delimiters this "
            "model was trained with (the other style, or think_start/think_end of its own)"
        )


def newline_token_ids(tok: TokenizerLike) -> tuple[int, ...]:
    """Ids of every token whose text contains a newline (ends a line), for grace tokens."""
    out = []
    for i in range(len(tok)):
        if "\n" in tok.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False):
            out.append(i)
    if not out:
        raise TokenizationError("no token of this vocabulary contains a newline; grace_tokens needs one")
    return tuple(out)
