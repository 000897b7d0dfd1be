"""A slow, obviously correct budget-forcing reference, written from the documented semantics.

Matching is a naive suffix check over the full emitted stream (prompt included), so it shares no code
and no algorithm with the Rust automaton. ``history`` holds whole-state copies for rollback, one per
step fed (also after the row ended, so that rollback undoes those steps first).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

PRE_THINK, THINKING, ANSWER, DONE, ERROR = 0, 1, 2, 3, 4
ERR_NONE, ERR_VOCAB, ERR_MASK = 0, 1, 2


@dataclass
class RefSpec:
    vocab_size: int
    think_end: list[list[int]]
    think_start: list[list[int]] = field(default_factory=list)
    eos: list[int] = field(default_factory=list)
    answer_prefix: list[int] = field(default_factory=list)
    extensions: list[list[int]] = field(default_factory=list)
    max_thinking_tokens: int | None = None
    min_thinking_tokens: int = 0
    num_extensions: int = 0
    grace_tokens: int = 0
    newline_tokens: list[int] = field(default_factory=list)
    max_answer_tokens: int | None = None
    answer_stop: list[list[int]] = field(default_factory=list)


def ends_with(stream: list[int], spellings: list[list[int]]) -> bool:
    return any(len(s) <= len(stream) and stream[len(stream) - len(s) :] == s for s in spellings)


@dataclass
class RefState:
    phase: int
    stream: list[int] = field(default_factory=list)
    thinking: int = 0
    answer: int = 0
    forced: int = 0
    extensions: int = 0
    capped: bool = False
    grace_used: int = 0
    line_closed: bool = False
    queue: list[int] = field(default_factory=list)
    error: int = ERR_NONE


class RefRow:
    def __init__(self, spec: RefSpec, max_rollback: int = 32) -> None:
        self.spec = spec
        self.max_rollback = max_rollback
        self.s = RefState(phase=PRE_THINK if spec.think_start else THINKING)
        self.history: list[RefState] = []

    # --- prompt ---------------------------------------------------------------------------------
    def process_prompt(self, prompt: list[int]) -> None:
        for t in prompt:
            self.s.stream.append(t)
            if self.s.phase == PRE_THINK and ends_with(self.s.stream, self.spec.think_start):
                self.s.phase = THINKING
            elif self.s.phase == THINKING and ends_with(self.s.stream, self.spec.think_end):
                self.s.phase = ANSWER
        if self.s.phase == ANSWER and self.spec.max_answer_tokens == 0:
            self.s.phase = DONE
        self.history.clear()

    # --- decisions ------------------------------------------------------------------------------
    def idle(self) -> bool:
        return self.s.phase in (DONE, ERROR)

    def cap_reached(self) -> bool:
        sp, s = self.spec, self.s
        if s.phase != THINKING or sp.max_thinking_tokens is None or s.thinking < sp.max_thinking_tokens:
            return False
        return sp.grace_tokens == 0 or s.line_closed or s.grace_used >= sp.grace_tokens

    def may_end(self) -> bool:
        return (
            self.s.thinking >= self.spec.min_thinking_tokens and self.s.extensions >= self.spec.num_extensions
        )

    def is_end_attempt(self, t: int) -> bool:
        return t in self.spec.eos or ends_with([*self.s.stream, t], self.spec.think_end)

    def redirect_kind(self) -> str | None:
        """In THINKING with nothing forced: which replacement an end attempt gets."""
        if self.s.phase != THINKING or self.s.queue or self.cap_reached():
            return None
        if not self.may_end():
            return "extension"
        if self.spec.answer_prefix and self.spec.eos:
            return "answer"
        return None

    def answer_start(self) -> int:
        """The longest proper prefix of the answer prefix that the stream already ends with."""
        p = self.spec.answer_prefix
        for k in range(len(p) - 1, 0, -1):
            if self.s.stream[len(self.s.stream) - k :] == p[:k] and len(self.s.stream) >= k:
                return k
        return 0

    def triggers(self, kind: str | None, t: int) -> bool:
        if kind == "extension":
            return self.is_end_attempt(t)
        if kind == "answer":
            return t in self.spec.eos
        return False

    def redirect_target(self, kind: str | None) -> int | None:
        if kind == "extension":
            return self.spec.extensions[self.s.extensions % len(self.spec.extensions)][0]
        if kind == "answer":
            return self.spec.answer_prefix[self.answer_start()]
        return None

    # --- transitions ----------------------------------------------------------------------------
    def _save(self) -> None:
        if self.max_rollback:
            self.history.append(copy.deepcopy(self.s))
            del self.history[: -self.max_rollback]

    def _start_answer(self, capped: bool) -> None:
        self.s.phase = ANSWER
        self.s.capped = capped
        self.s.queue = list(self.spec.answer_prefix[self.answer_start() :])

    def _start_redirect(self, kind: str) -> None:
        if kind == "extension":
            self.s.queue = list(self.spec.extensions[self.s.extensions % len(self.spec.extensions)])
            self.s.extensions += 1
        else:
            self._start_answer(False)

    def _emit(self, t: int, forced: bool) -> None:
        sp, s = self.spec, self.s
        s.stream.append(t)
        if forced:
            s.forced += 1
            s.queue.pop(0)
        if s.phase == PRE_THINK:
            if t in sp.eos:
                s.phase = DONE
            elif ends_with(s.stream, sp.think_start):
                s.phase = THINKING
        elif s.phase == THINKING:
            if sp.max_thinking_tokens is not None and s.thinking >= sp.max_thinking_tokens:
                s.grace_used += 1
                s.line_closed = s.line_closed or t in sp.newline_tokens
            s.thinking += 1
            if not forced and t in sp.eos:
                s.phase = DONE
            elif not forced and ends_with(s.stream, sp.think_end):
                s.phase = DONE if sp.max_answer_tokens == 0 else ANSWER
        elif s.phase == ANSWER:
            s.answer += 1
            stop = not forced and (t in sp.eos or ends_with(s.stream, sp.answer_stop))
            full = not s.queue and sp.max_answer_tokens is not None and s.answer >= sp.max_answer_tokens
            if stop or full:
                s.phase = DONE

    def _forced_now(self) -> int | None:
        if self.s.queue:
            return self.s.queue[0]
        if self.cap_reached():
            self._start_answer(True)
            return self.s.queue[0]
        return None

    def step(self, sampled: int) -> int:
        """Override mode; returns the replacing token or -1."""
        self._save()
        if self.idle():
            return -1
        kind = self.redirect_kind()
        forced = self._forced_now()
        if forced is not None:
            self._emit(forced, True)
            return forced
        if not 0 <= sampled < self.spec.vocab_size:
            self.s.phase, self.s.error = ERROR, ERR_VOCAB
            return -1
        if kind is not None and self.triggers(kind, sampled):
            self._start_redirect(kind)
            t = self.s.queue[0]
            self._emit(t, True)
            return t
        self._emit(sampled, False)
        return -1

    def mask(self) -> tuple[int, int, set[int]]:
        """Mask mode: (force or -1, redirect target or -1, banned ids), from the state alone."""
        if self.idle():
            return -1, -1, set()
        if self.s.queue:
            return self.s.queue[0], -1, set()
        if self.cap_reached():
            return self.spec.answer_prefix[self.answer_start()], -1, set()
        kind = self.redirect_kind()
        target = self.redirect_target(kind)
        if target is None:
            return -1, -1, set()
        banned = {t for t in range(self.spec.vocab_size) if self.triggers(kind, t)}
        return -1, target, banned

    def advance(self, emitted: int, redirected: bool = False) -> None:
        """Mask mode: ``redirected``: an emission of the redirect target stands for the end attempt."""
        self._save()
        if self.idle():
            return
        force, target, banned = self.mask()
        kind = self.redirect_kind()
        if force >= 0:
            if emitted != force:
                self.s.phase, self.s.error = ERROR, ERR_MASK
                return
            self._forced_now()
            self._emit(force, True)
            return
        if not 0 <= emitted < self.spec.vocab_size:
            self.s.phase, self.s.error = ERROR, ERR_VOCAB
            return
        if kind is not None and redirected and emitted == target:
            self._start_redirect(kind)
            self._emit(self.s.queue[0], True)
        elif emitted in banned:
            self.s.phase, self.s.error = ERROR, ERR_MASK
        else:
            self._emit(emitted, False)

    def rollback(self, k: int) -> None:
        if k > len(self.history):
            raise ValueError("too deep")
        if k:
            self.s = self.history[-k]
            del self.history[-k:]

    def counters(self) -> tuple[int, int, int, int, int, bool, int]:
        s = self.s
        return (s.phase, s.thinking, s.answer, s.forced, s.extensions, s.capped, s.error)
