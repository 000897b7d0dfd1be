"""Which thinking delimiters drive a model, and how its prompt opens thinking.

Shared by ``s1kit generate`` and ``s1kit eval`` (their delimiter flags are defined here, once):

- ``--style s1|think_tags`` names a delimiter set (:data:`s1kit.budget.STYLES`).
- ``--think-start``, ``--think-end``, ``--extension`` (each repeatable) and ``--answer-prefix`` give
  strings of the model's own, tokenized with its tokenizer; each replaces that part of the style.
  Given without ``--style``, ``--think-end`` makes a *custom* set: think_start is what
  ``--think-start`` gives (none: the row starts in its thinking span, which a think end inside the
  prompt already closes: pick one the prompt does not hold) and the answer prefix defaults
  to ``"\\n" + <first think end> + "\\n\\nFinal Answer:"``.
- Neither: the style is detected from the tokenizer. ``think_tags`` when ``<think>`` and ``</think>``
  are single tokens of its vocabulary (Qwen3, DeepSeek-R1 and its distills, QwQ), else ``s1`` when
  ``<|im_start|>`` is (Qwen2.5, s1/s1.1, ChatML models). Otherwise detection fails and asks for the
  flags. A model fine-tuned with s1 delimiters on a tokenizer that has think tags needs ``--style s1``.

Thinking is opened in the prompt: after the chat template, the first think_start and a newline
(``<|im_start|>think\\n``, ``<think>\\n``) are appended, unless the prompt already ends with them or
the chat template opens the thinking span itself (its generation prompt holds a think_start with no
think_end after it, as DeepSeek-R1's does). The row's phase then comes from the prompt: the budget
core reads the prompt and starts the row in its thinking span.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from s1kit.budget.spec import STYLES, BudgetSpec
from s1kit.budget.spelling import TokenizerLike
from s1kit.errors import TokenizationError

STYLE_NAMES = tuple(sorted(STYLES))  # ("s1", "think_tags")
CUSTOM = "custom"
# The probe conversation rendered to see what the chat template's generation prompt holds.
_PROBE = [{"role": "user", "content": "1+1?"}]


@dataclass(frozen=True)
class Delimiters:
    """The strings that mark a model's thinking, and why they were chosen.

    ``style`` is ``"s1"``, ``"think_tags"`` or ``"custom"``; ``chosen_by`` says how (a flag, or what
    detection found). ``template_opens_thinking``: the chat template's generation prompt already opens
    the thinking span, so nothing is appended to the prompt.
    """

    style: str
    think_start: tuple[str, ...]
    think_end: tuple[str, ...]
    answer_prefix: str
    extensions: tuple[str, ...]
    chosen_by: str
    template_opens_thinking: bool = False

    def opener(self, *, chat: bool = True) -> str:
        """Text appended to a prompt to open thinking ("" when nothing is appended). ``chat``: the
        prompt went through the chat template (which may open thinking itself)."""
        if not self.think_start or (chat and self.template_opens_thinking):
            return ""
        return self.think_start[0] + "\n"

    def open_thinking(self, prompt: str, *, chat: bool = True) -> str:
        """``prompt`` (chat template applied, or raw text when ``chat`` is false) with thinking opened."""
        opener = self.opener(chat=chat)
        if opener and not prompt.endswith(opener):
            return prompt + opener
        return prompt

    def describe(self) -> str:
        """One line for the user: which delimiters, chosen how, and how thinking is opened."""
        opened = (
            "the chat template opens thinking (the phase comes from the prompt)"
            if self.template_opens_thinking
            else f"prompts end with {self.opener()!r}"
            if self.opener()
            else "rows start in their thinking span"
        )
        return (
            f"thinking delimiters: {self.style} ({self.chosen_by}): think_start "
            f"{list(self.think_start)}, think_end {list(self.think_end)}, answer prefix "
            f"{self.answer_prefix!r}, extensions {list(self.extensions)}; {opened}"
        )

    def to_record(self) -> dict[str, Any]:
        """The settings that change what a generation means (stored with eval runs)."""
        return {
            "style": self.style,
            "think_start": list(self.think_start),
            "think_end": list(self.think_end),
            "answer_prefix": self.answer_prefix,
            "extensions": list(self.extensions),
            "template_opens_thinking": self.template_opens_thinking,
        }

    def spec(self, tokenizer: TokenizerLike, **budget: Any) -> BudgetSpec:
        """A :class:`BudgetSpec` of these delimiters; ``budget`` holds the other
        :meth:`BudgetSpec.from_tokenizer` arguments (caps, extensions count, vocab_size, ...)."""
        return BudgetSpec.from_tokenizer(
            tokenizer,
            think_start=list(self.think_start),
            think_end=list(self.think_end),
            answer_prefix=self.answer_prefix,
            extension=list(self.extensions),
            **budget,
        )


def _is_one_token(tok: TokenizerLike, text: str) -> bool:
    try:
        ids = tok.encode(text, add_special_tokens=False)
    except Exception:  # a tokenizer that cannot encode the string at all does not have it
        return False
    return len(ids) == 1 and tok.decode(ids, skip_special_tokens=False) == text


def detect_style(tok: TokenizerLike) -> tuple[str, str]:
    """``(style, reason)`` from the tokenizer's vocabulary (see the module docstring)."""
    if _is_one_token(tok, "<think>") and _is_one_token(tok, "</think>"):
        return "think_tags", "detected: the tokenizer has <think> and </think> tokens"
    if _is_one_token(tok, "<|im_start|>"):
        return "s1", "detected: the tokenizer has <|im_start|> and no <think>/</think> tokens"
    raise TokenizationError(
        "cannot choose thinking delimiters: the tokenizer has neither <think>/</think> nor "
        "<|im_start|> tokens; pass this model's own with --think-start/--think-end/--answer-prefix"
    )


def template_opens_thinking(tok: TokenizerLike, think_start: Sequence[str], think_end: Sequence[str]) -> bool:
    """Whether the chat template's generation prompt opens a thinking span and leaves it open."""
    if not think_start or not getattr(tok, "chat_template", None):
        return False
    try:
        without = tok.apply_chat_template(_PROBE, tokenize=False, add_generation_prompt=False)
        with_gen = tok.apply_chat_template(_PROBE, tokenize=False, add_generation_prompt=True)
    except Exception:  # a template that cannot render the probe: treat it as not opening thinking
        return False
    gen = with_gen[len(without) :] if with_gen.startswith(without) else with_gen
    last_start = max(gen.rfind(s) for s in think_start)
    if last_start < 0:
        return False
    return all(gen.rfind(e) < last_start for e in think_end)


def _check_tokens(tok: TokenizerLike, strings: Sequence[str], style: str) -> None:
    """A named style's delimiter pieces must be single tokens; say which one is missing and the fix."""
    for s in strings:
        for piece in ("<think>", "</think>", "<|im_start|>"):
            if piece in s and not _is_one_token(tok, piece):
                other = "s1" if style == "think_tags" else "think_tags"
                raise TokenizationError(
                    f"--style {style} needs the token {piece!r}, which this tokenizer does not have: pass --style {other} or this model's own delimiters with "
                    "--think-start/--think-end/--answer-prefix"
                )


def choose_delimiters(
    tok: TokenizerLike,
    *,
    style: str | None = None,
    think_start: Sequence[str] | None = None,
    think_end: Sequence[str] | None = None,
    answer_prefix: str | None = None,
    extensions: Sequence[str] | None = None,
) -> Delimiters:
    """The delimiters for ``tok`` from the flags given (``None``: not given); see the module docstring."""
    if style is not None and style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLE_NAMES)}, got {style!r}")
    for name, seqs in (("--think-start", think_start), ("--think-end", think_end)):
        if seqs is not None and any(s == "" for s in seqs):
            raise ValueError(f"{name} got an empty string: give the delimiter's text")
    if style is not None:
        base, chosen_by = style, f"--style {style}"
    elif think_end:
        base, chosen_by = CUSTOM, "--think-end"
    else:
        base, chosen_by = detect_style(tok)
    if base == CUSTOM:
        starts: tuple[str, ...] = tuple(think_start or ())
        ends = tuple(think_end or ())
        prefix = f"\n{ends[0]}\n\nFinal Answer:"
    else:
        d_start, d_end, prefix = STYLES[base]
        starts = (d_start,) if think_start is None else tuple(think_start)
        ends = (d_end,) if not think_end else tuple(think_end)
        _check_tokens(tok, [*starts, *ends, *([prefix] if answer_prefix is None else [])], base)
    overridden = [
        f
        for f, v in (
            ("--think-start", think_start),
            ("--think-end", think_end if base != CUSTOM else None),
            ("--answer-prefix", answer_prefix),
            ("--extension", extensions),
        )
        if v
    ]
    if overridden:
        chosen_by += "; " + ", ".join(overridden) + " given"
    return Delimiters(
        style=base,
        think_start=starts,
        think_end=ends,
        answer_prefix=prefix if answer_prefix is None else answer_prefix,
        extensions=tuple(extensions) if extensions else ("Wait",),
        chosen_by=chosen_by,
        template_opens_thinking=template_opens_thinking(tok, starts, ends),
    )


# ---------------------------------------------------------------------------------------------- the CLI


def add_delimiter_arguments(g: argparse._ActionsContainer) -> None:
    """The delimiter flags of ``s1kit generate`` and ``s1kit eval`` (one definition for both)."""
    g.add_argument(
        "--style",
        choices=STYLE_NAMES,
        default=None,
        help="named thinking delimiters: s1 (<|im_start|>think / <|im_start|>) or think_tags "
        "(<think> / </think>); default: detected from the tokenizer (think_tags if it has <think> and "
        "</think> tokens, else s1 if it has <|im_start|>)",
    )
    g.add_argument(
        "--think-start",
        action="append",
        default=None,
        metavar="TEXT",
        help="text that opens thinking, repeatable (replaces the style's)",
    )
    g.add_argument(
        "--think-end",
        action="append",
        default=None,
        metavar="TEXT",
        help="text that ends thinking, repeatable (replaces the style's; without --style: custom "
        "delimiters, no think start unless --think-start is given)",
    )
    g.add_argument(
        "--answer-prefix",
        default=None,
        metavar="TEXT",
        help="text forced to end thinking at the cap (default: the style's; custom: "
        "'\\n' + first think end + '\\n\\nFinal Answer:')",
    )
    g.add_argument(
        "--extension",
        action="append",
        default=None,
        metavar="TEXT",
        help="text forced when an end of thinking is suppressed, repeatable, used in turn and cycled "
        "(default: Wait)",
    )


def delimiter_flags_given(args: argparse.Namespace) -> bool:
    """Whether any delimiter flag was given on the command line."""
    return any(
        getattr(args, n) is not None
        for n in ("style", "think_start", "think_end", "answer_prefix", "extension")
    )


def delimiters_from_args(tok: TokenizerLike, args: argparse.Namespace) -> Delimiters:
    """:func:`choose_delimiters` from the flags of :func:`add_delimiter_arguments`."""
    return choose_delimiters(
        tok,
        style=args.style,
        think_start=args.think_start,
        think_end=args.think_end,
        answer_prefix=args.answer_prefix,
        extensions=args.extension,
    )


__all__ = [
    "CUSTOM",
    "STYLE_NAMES",
    "Delimiters",
    "add_delimiter_arguments",
    "choose_delimiters",
    "delimiter_flags_given",
    "delimiters_from_args",
    "detect_style",
    "template_opens_thinking",
]
