"""BudgetSpec: what one row is asked to do, in token ids; and its builder from a tokenizer.

A spec is immutable and validated by the Rust core on construction (``self._inner``), so an
inconsistent spec fails where it is written, not in the middle of a decode loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from s1kit import _core
from s1kit.budget.spelling import TokenizerLike, newline_token_ids, spell, spell_delimiter

Style = Literal["s1", "think_tags"]

# Per style: (think_start, think_end, answer_prefix). s1 ends thinking at the first token of its answer
# delimiter, as the s1 reference does with its stop token; think_tags models end with one "</think>".
STYLES: dict[str, tuple[str, str, str]] = {
    "s1": ("<|im_start|>think", "<|im_start|>", "\n<|im_start|>answer\nFinal Answer:"),
    "think_tags": ("<think>", "</think>", "\n</think>\n\nFinal Answer:"),
}

Ids = tuple[int, ...]


def _ids(x: Iterable[int]) -> Ids:
    return tuple(int(t) for t in x)


def _seqs(x: Iterable[Iterable[int]]) -> tuple[Ids, ...]:
    return tuple(_ids(s) for s in x)


@dataclass(frozen=True)
class BudgetSpec:
    """Budget forcing for one row. Token sequences are ids of the model's tokenizer.

    See :mod:`s1kit.budget` for the semantics. Build one from strings with :meth:`from_tokenizer`.
    """

    vocab_size: int
    think_end: tuple[Ids, ...]
    think_start: tuple[Ids, ...] = ()
    eos: Ids = ()
    answer_prefix: Ids = ()
    extensions: tuple[Ids, ...] = ()
    max_thinking_tokens: int | None = None
    min_thinking_tokens: int = 0
    num_extensions: int = 0
    grace_tokens: int = 0
    newline_tokens: Ids = ()
    max_answer_tokens: int | None = None
    answer_stop: tuple[Ids, ...] = ()
    _inner: _core.BudgetSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("think_end", "think_start", "extensions", "answer_stop"):
            object.__setattr__(self, name, _seqs(getattr(self, name)))
        for name in ("eos", "answer_prefix", "newline_tokens"):
            object.__setattr__(self, name, _ids(getattr(self, name)))
        for name in ("vocab_size", "min_thinking_tokens", "num_extensions", "grace_tokens"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_thinking_tokens", "max_answer_tokens"):
            value = getattr(self, name)
            if value is not None and int(value) < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value}")
        try:
            inner = _core.BudgetSpec(
                self.vocab_size,
                [list(s) for s in self.think_end],
                think_start=[list(s) for s in self.think_start],
                eos=list(self.eos),
                answer_prefix=list(self.answer_prefix),
                extensions=[list(s) for s in self.extensions],
                max_thinking_tokens=self.max_thinking_tokens,
                min_thinking_tokens=self.min_thinking_tokens,
                num_extensions=self.num_extensions,
                grace_tokens=self.grace_tokens,
                newline_tokens=list(self.newline_tokens),
                max_answer_tokens=self.max_answer_tokens,
                answer_stop=[list(s) for s in self.answer_stop],
            )
        except OverflowError as e:
            raise ValueError(f"a token id or budget is negative or too large: {e}") from None
        object.__setattr__(self, "_inner", inner)

    def replace(self, **changes: Any) -> BudgetSpec:
        """A copy with some fields changed (e.g. another ``max_thinking_tokens``), validated again."""
        return dataclasses.replace(self, **changes)

    @property
    def ban_width(self) -> int:
        """The most token ids a mask step bans for a row of this spec."""
        return int(self._inner.ban_width)

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: TokenizerLike,
        *,
        style: Style = "s1",
        max_thinking_tokens: int | None = None,
        min_thinking_tokens: int = 0,
        num_extensions: int = 0,
        extension: str | Sequence[str] = "Wait",
        extension_context: str = "",
        answer_prefix: str | None = None,
        think_start: str | Sequence[str] | None = None,
        think_end: str | Sequence[str] | None = None,
        eos: Sequence[int] | None = None,
        vocab_size: int | None = None,
        grace_tokens: int = 0,
        max_answer_tokens: int | None = None,
        answer_stop: Sequence[str] = (),
    ) -> BudgetSpec:
        """Build a spec from strings, tokenized and checked against ``tokenizer``.

        ``style`` picks the delimiters ("s1": ``<|im_start|>think`` / ``<|im_start|>``, forced answer
        ``\\n<|im_start|>answer\\nFinal Answer:``; "think_tags": ``<think>`` / ``</think>``); any of them
        can be overridden. Extension texts are tokenized as they would be after ``extension_context``
        (e.g. ``"\\n"``), so "Wait" gets the ids it has in running text. Every string must round-trip
        through the tokenizer, and every special-token-like delimiter must be one token: otherwise
        :class:`s1kit.errors.TokenizationError` says which string and why. ``eos`` defaults to the
        tokenizer's EOS id; ``vocab_size`` to ``len(tokenizer)`` (pass the model's
        ``config.vocab_size`` when it is larger).
        """
        if style not in STYLES:
            raise ValueError(f"style must be one of {sorted(STYLES)}, got {style!r}")
        d_start, d_end, d_answer = STYLES[style]
        starts = [d_start] if think_start is None else _as_list(think_start)
        ends = [d_end] if think_end is None else _as_list(think_end)
        if not ends:
            raise ValueError("think_end is empty: give at least one end-of-thinking delimiter")
        exts = _as_list(extension)
        if eos is None:
            eos_id = getattr(tokenizer, "eos_token_id", None)
            eos = [] if eos_id is None else [int(eos_id)]
        v = len(tokenizer) if vocab_size is None else int(vocab_size)  # type: ignore[arg-type]
        return cls(
            vocab_size=v,
            think_start=tuple(spell_delimiter(tokenizer, s, "think_start") for s in starts),
            think_end=tuple(spell_delimiter(tokenizer, s, "think_end") for s in ends),
            eos=_ids(eos),
            answer_prefix=spell(
                tokenizer, d_answer if answer_prefix is None else answer_prefix, "answer_prefix"
            ),
            extensions=tuple(spell(tokenizer, e, "extension", context=extension_context) for e in exts),
            max_thinking_tokens=max_thinking_tokens,
            min_thinking_tokens=min_thinking_tokens,
            num_extensions=num_extensions,
            grace_tokens=grace_tokens,
            newline_tokens=newline_token_ids(tokenizer) if grace_tokens > 0 else (),
            max_answer_tokens=max_answer_tokens,
            answer_stop=tuple(spell(tokenizer, s, "answer_stop") for s in answer_stop),
        )


def _as_list(x: str | Sequence[str]) -> list[str]:
    return [x] if isinstance(x, str) else list(x)
