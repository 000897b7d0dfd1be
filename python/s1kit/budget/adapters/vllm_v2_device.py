"""Budget rows on the device for vLLM's Model Runner V2, fed from its on-device token history.

:class:`RunnerV2Budget` implements Model Runner V2's logits-processor interface over
:class:`DeviceBudget`; :mod:`s1kit.budget.adapters.vllm_v2` gives it vLLM's V2 base class. This
module imports no vLLM, so it is tested with plain tensors too (and inside vLLM with its own
``LogitsProcRequestState`` and ``LogitsContext``: ``make test-engines``).

Model Runner V2 keeps every request's tokens on the device (``all_token_ids``, ``total_len``) and
tells a processor only ``add_request(slot, params)``; slots are recycled without a removal call.
So the per-row state lives on the device, in the tensor mirror of the core
(:class:`~s1kit.budget.tensor.TensorBudget`, override mode), and a decode step reads nothing back:

- **feed** (start of ``apply``): each governed row of the step whose ``total_len`` grew by one
  since it was last fed is stepped in override mode with its newly committed token, with one
  substitution: if that token is the redirect token the last mask recorded for the row and the
  mask decided that it stands for an end attempt, the row is fed a banned end token instead, so
  override mode makes the same decision and emits the same token. A committed token that differs
  from what override mode emits (a forced token not honoured, a banned token emitted) or more than
  one new token at once puts the row in its error phase (``RowError.MASK_NOT_HONOURED``).
- **mask** (then): from the row's state, with tensor ops only: a row that forces (an extension or
  the answer prefix in progress, or the thinking cap reached) gets its token's logit set to
  ``FORCED_LOGIT`` (vLLM's own thinking budget forces the same way); a row that is DONE or in its
  error phase is stopped the same way with the spec's first EOS id; a free thinking row whose end
  attempts override mode would replace (before the extensions and min thinking are used up: every
  token that completes an end delimiter, and EOS; after them, with ``eos_to_answer``: EOS) gets
  them banned (``-inf``) and their probability pooled onto the replacing token, exactly as
  :func:`~s1kit.budget.adapters.masking.apply_mask` does (max for greedy rows, logsumexp at the
  request's temperature for sampled ones; the attribution flag by the same rule).

Admission (``apply_staged_writes``, only on steps that admit requests) is the one place that reads
the device: the rows' state and the admitted rows' tokens are copied to the host once, each
admitted budget-forced row is rebuilt in the Rust core (prompt, then any output a resumed request
already has), and the device state is reloaded. A resumed request (preempted, re-added with its output so far) is replayed with every
emission of a redirect token where an end attempt would have been replaced counted as that end
attempt: the per-token attribution of the first run is not kept across preemption (vLLM's V2
interface gives no request identity to key it by). Greedy requests whose model never samples the
redirect token itself replay exactly.

Shapes: ``B`` slots (vLLM's ``max_num_reqs``), ``N`` logits rows this step, ``L`` vLLM's token
history width, ``C`` end candidates per row (the spec alphabet, then the EOS ids), ``F``/``P`` as
in :mod:`s1kit.budget.tensor`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from s1kit.budget.adapters.masking import GREEDY_BELOW
from s1kit.budget.adapters.vllm_batch import FORCED_LOGIT, check_request
from s1kit.budget.batch import BudgetBatch, Phase, RowError
from s1kit.budget.spec import BudgetSpec
from s1kit.budget.tensor import (
    KIND_THINK_END,
    PARAM_FIELDS,
    STATE_FIELDS,
    Tables,
    TableSizes,
    TensorBudget,
    budget_step_,
)

_S = {n: i for i, n in enumerate(STATE_FIELDS)}
_P = {n: i for i, n in enumerate(PARAM_FIELDS)}
PRE_THINK, THINKING, ANSWER, DONE, ERROR = (int(p) for p in Phase if p <= Phase.ERROR)


@dataclass
class Admission:
    """One ``add_request``: the slot, its spec (None: not budget-forced), its temperature."""

    slot: int
    spec: BudgetSpec | None
    temperature: float


def _advance(
    matcher_N: torch.Tensor, tok_NC: torch.Tensor, alpha_NK: torch.Tensor, t: Tables
) -> torch.Tensor:
    """Automaton state after each candidate token of each row (``-1`` candidates: any)."""
    k = t.alpha_BK.shape[1]
    col = k + ((alpha_NK[:, None, :] == tok_NC[:, :, None]) * t.cols_K).sum(-1)
    return t.next_flat[matcher_N[:, None] * (k + 1) + col]


class DeviceBudget:
    """Per-slot budget rows on ``device`` (see the module docstring)."""

    def __init__(self, capacity: int, device: torch.device | str) -> None:
        self.capacity = capacity
        self.device = torch.device(device)
        self.batch = BudgetBatch(capacity, max_rollback=0)
        self.tb: TensorBudget | None = None
        self.governed = np.zeros(capacity, np.bool_)  # host copy: lets apply skip without a sync
        self._staged: dict[int, Admission] = {}
        dev, i64 = self.device, torch.int64
        self.governed_B = torch.zeros(capacity, dtype=torch.bool, device=dev)
        self.fed_B = torch.zeros(capacity, dtype=i64, device=dev)  # history length fed to the row
        self.temp_B = torch.zeros(capacity, dtype=torch.float32, device=dev)
        self.redirect_B = torch.full((capacity,), -1, dtype=i64, device=dev)  # last mask's redirect
        self.end_token_B = torch.full((capacity,), -1, dtype=i64, device=dev)  # feed it if flagged
        self.stop_B = torch.zeros(capacity, dtype=i64, device=dev)  # the spec's first EOS id
        self._tokens_B = torch.zeros(capacity, dtype=i64, device=dev)
        self._committed_B = torch.zeros(capacity, dtype=i64, device=dev)
        self._new_B = torch.zeros(capacity, dtype=torch.bool, device=dev)
        self._bad_B = torch.zeros(capacity, dtype=torch.bool, device=dev)
        self._override_B = torch.full((capacity,), -1, dtype=i64, device=dev)
        self._done_B = torch.zeros(capacity, dtype=torch.bool, device=dev)
        self._ring_RB = torch.full((1, capacity), -1, dtype=i64, device=dev)
        self._count_1 = torch.zeros(1, dtype=i64, device=dev)
        self._generator = torch.Generator(device=dev)
        self._generator.manual_seed(0)

    # --- admission (host) ---------------------------------------------------------------------
    def stage(self, slot: int, spec: BudgetSpec | None, temperature: float) -> None:
        """Record an ``add_request`` (applied by :meth:`admit`); the slot's previous row is dropped."""
        self._staged[slot] = Admission(slot, spec, temperature)
        self.governed[slot] = spec is not None

    def admit(self, history: Callable[[list[int]], tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Apply the staged admissions. ``history(slots)`` returns, for those slots, the token
        history ``(n, L)`` and the prompt and prefill lengths ``(n,)`` on the host."""
        if not self._staged:
            return
        staged, self._staged = list(self._staged.values()), {}
        if self.tb is not None:
            self.tb.sync_to(self.batch)  # rows stepped on the device since the last load
        forced = [a.slot for a in staged if a.spec is not None]
        tokens, prompt_len, prefill_len = history(forced) if forced else (None, None, None)
        row = {slot: i for i, slot in enumerate(forced)}
        for a in staged:
            if self.batch.row_state(a.slot) is not None:
                self.batch.remove(a.slot)
            if a.spec is None:
                continue
            assert tokens is not None and prompt_len is not None and prefill_len is not None
            i = row[a.slot]
            self.batch.insert(a.slot, a.spec)
            self.batch.process_prompt(a.slot, tokens[i, : prompt_len[i]])
            self._replay(a.slot, tokens[i, prompt_len[i] : prefill_len[i]])
        self._reload()
        fed = [0 if a.spec is None else int(prefill_len[row[a.slot]]) for a in staged]  # type: ignore[index]
        dev = self.device
        slots_d = torch.tensor([a.slot for a in staged], dtype=torch.int64).to(dev)
        self.governed_B[slots_d] = torch.tensor([a.spec is not None for a in staged]).to(dev)
        self.fed_B[slots_d] = torch.tensor(fed, dtype=torch.int64).to(dev)
        self.temp_B[slots_d] = torch.tensor([a.temperature for a in staged], dtype=torch.float32).to(dev)
        self.stop_B[slots_d] = torch.tensor([a.spec.eos[0] if a.spec else 0 for a in staged]).to(dev)
        self.redirect_B[slots_d] = -1
        self.end_token_B[slots_d] = -1

    def _replay(self, slot: int, outputs: Sequence[int] | np.ndarray) -> None:
        """Feed a resumed request's output so far (attribution: see the module docstring)."""
        rows = np.asarray([slot], np.int64)
        force, redirect = np.empty(1, np.int64), np.empty(1, np.int64)
        ban = np.empty((1, max(self.batch.ban_width, 1)), np.int32)
        for t in outputs:
            self.batch.mask(force, redirect, ban, rows)
            flag = np.asarray([int(redirect[0] >= 0 and int(t) == redirect[0])], np.int64)
            self.batch.advance(np.asarray([int(t)], np.int64), rows, flag)

    def _reload(self) -> None:
        need = TableSizes.of(self.batch.tables())
        if self.tb is None or not self.tb.sizes.fits(need):
            reserve = need if self.tb is None else self.tb.sizes.union(need)
            self.tb = TensorBudget.from_batch(self.batch, self.device, reserve=reserve)
        else:
            self.tb.load(self.batch)

    def governs(self, slots: np.ndarray) -> bool:
        """Whether any of ``slots`` is budget-forced (host only, no sync)."""
        return self.tb is not None and bool(self.governed[slots].any())

    # --- per step (device only) ---------------------------------------------------------------
    def feed(self, slots_N: torch.Tensor, total_len_B: torch.Tensor, tokens_BL: torch.Tensor) -> None:
        """Step each governed slot of ``slots_N`` over its newly committed token (module docstring)."""
        tb = self.tb
        assert tb is not None
        s = slots_N.long()
        g = self.governed_B[s]
        fed = self.fed_B[s]
        n_new = total_len_B[s].long() - fed
        new = g & (n_new > 0)
        tok = tokens_BL[s, fed.clamp(0, tokens_BL.shape[1] - 1)].long()
        end_tok = self.end_token_B[s]
        fed_tok = torch.where((end_tok >= 0) & (tok == self.redirect_B[s]), end_tok, tok)
        self._tokens_B.zero_().index_copy_(0, s, fed_tok)
        self._committed_B.index_copy_(0, s, tok)
        self._new_B.zero_().index_copy_(0, s, new)
        self._bad_B.zero_().index_copy_(0, s, g & (n_new > 1))
        state = tb.state_FB
        stepped = state.clone()
        budget_step_(
            stepped, tb.tables, self._tokens_B, self._override_B, self._done_B, self._ring_RB, self._count_1
        )
        # _tokens_B now holds what override mode emits: it must be what vLLM committed.
        bad = self._bad_B | (self._new_B & (self._tokens_B != self._committed_B))
        state.copy_(torch.where(self._new_B[None], stepped, state))
        state[_S["phase"]] = torch.where(bad, ERROR, state[_S["phase"]])
        state[_S["error"]] = torch.where(bad, int(RowError.MASK_NOT_HONOURED), state[_S["error"]])
        self.fed_B.index_copy_(0, s, fed + new.long())

    def mask(self, logits_NV: torch.Tensor, slots_N: torch.Tensor) -> None:
        """Edit ``logits_NV`` in place (row ``i`` belongs to slot ``slots_N[i]``); record per slot the
        redirect token and, where an emission of it stands for an end attempt, the token to feed."""
        tb = self.tb
        assert tb is not None
        t = tb.tables
        s = slots_N.long()
        n = s.shape[0]
        st, p = tb.state_FB[:, s], t.params_PB[:, s]
        phase, matcher, th, ex = (
            st[_S[f]] for f in ("phase", "matcher_state", "thinking_tokens", "extensions_used")
        )
        gu, lc, fseq, fpos = (st[_S[f]] for f in ("grace_used", "line_closed", "forcing_seq", "forcing_pos"))
        max_th, min_th, num_ext, grace = (
            p[_P[f]] for f in ("max_thinking_tokens", "min_thinking_tokens", "num_extensions", "grace_tokens")
        )
        eos_to_answer, ext_base, num_ext_seqs, answer_seq = (
            p[_P[f]] for f in ("eos_to_answer", "ext_seq_base", "num_ext_seqs", "answer_seq")
        )
        seq_w = t.seqs_flat.shape[0] // t.seq_len_Q.shape[0]
        g = self.governed_B[s]

        # What override mode forces this step (RowState::plan), or the stop of a finished row.
        active = phase <= ANSWER
        forcing = fseq >= 0
        thinking = phase == THINKING
        over = (max_th >= 0) & (th >= max_th)
        cap = thinking & over & ((grace == 0) | (lc != 0) | (gu >= grace))
        force_plan = active & (forcing | cap)
        begin_cap = force_plan & ~forcing
        answer_pos = t.overlap_T[matcher]
        seq = torch.where(begin_cap, answer_seq, fseq).clamp(min=0)
        ftok = t.seqs_flat[seq * seq_w + torch.where(begin_cap, answer_pos, fpos)]
        eos_NE = t.eos_BE[s]
        stop = (phase == DONE) | (phase == ERROR)
        force = torch.where(g & stop, self.stop_B[s], torch.where(g & force_plan, ftok, -1))

        # The end attempts override mode replaces, and the token it emits instead.
        alpha_NK = t.alpha_BK[s]
        cand = torch.cat([alpha_NK, eos_NE], 1)
        valid = cand >= 0
        is_eos = (eos_NE[:, None, :] == cand[:, :, None]).any(-1) & valid
        ends = is_eos | ((t.kinds_T[_advance(matcher, cand, alpha_NK, t)] & KIND_THINK_END) != 0)
        free = g & active & ~force_plan & thinking
        may_end = (th >= min_th) & (ex >= num_ext)
        by_eos = may_end & (eos_to_answer != 0)
        ban = valid & free[:, None] & ((~may_end[:, None] & ends) | (by_eos[:, None] & is_eos))
        redirected = ban.any(1)
        ext_tok = t.seqs_flat[(ext_base + ex % num_ext_seqs) * seq_w]
        ans_tok = t.seqs_flat[answer_seq.clamp(min=0) * seq_w + answer_pos]
        redirect = torch.where(redirected, torch.where(may_end, ans_tok, ext_tok), -1)
        end_tok = cand.gather(1, ban.int().argmax(1, keepdim=True))[:, 0]

        # Pool the banned cells onto the redirect token (masking.apply_mask's rule, fixed shapes:
        # rows without a redirect write their own cells back unchanged).
        rows = torch.arange(n, device=logits_NV.device)
        red = redirect.clamp(min=0)
        cols = torch.cat([red[:, None], torch.where(ban, cand, red[:, None])], 1)
        cells = logits_NV[rows[:, None], cols].float()
        neg = float("-inf")
        x_t, x_b = cells[:, 0], cells[:, 1:].masked_fill(~ban, neg)
        b_max = x_b.amax(1)
        b_first = torch.where(ban & (x_b == b_max[:, None]), cand, torch.iinfo(torch.int64).max).amin(1)
        flag = (b_max > x_t) | ((b_max == x_t) & (b_first < red))
        value = torch.maximum(x_t, b_max)
        temp = self.temp_B[s]
        sampled = temp >= GREEDY_BELOW
        tau = temp.clamp(min=1e-6)
        z_t, lse_b = x_t / tau, torch.logsumexp(x_b / tau[:, None], 1)
        lse = torch.logaddexp(z_t, lse_b)
        u = torch.rand(n, generator=self._generator, device=logits_NV.device)
        flag = torch.where(sampled, u < torch.exp(lse_b - lse), flag)
        value = torch.where(redirected, torch.where(sampled, tau * lse, value), x_t)
        out = torch.cat([value[:, None], torch.where(ban, neg, value[:, None])], 1)
        logits_NV[rows[:, None].expand_as(cols), cols] = out.to(logits_NV.dtype)
        fcol = force.clamp(min=0)
        forced = torch.where(force >= 0, FORCED_LOGIT, logits_NV[rows, fcol].float())
        logits_NV[rows, fcol] = forced.to(logits_NV.dtype)
        self.redirect_B.index_copy_(0, s, redirect)
        self.end_token_B.index_copy_(0, s, torch.where(redirected & flag, end_tok, -1))

    # --- introspection (tests, metrics; synchronises) -----------------------------------------
    def row_state(self, slot: int) -> dict[str, int] | None:
        """The row's counters now (None when the slot is not budget-forced)."""
        if self.tb is None or not self.governed[slot]:
            return None
        st = self.tb.state_FB[:, slot].cpu().tolist()
        names = ("phase", "error", "thinking_tokens", "answer_tokens", "forced_tokens", "extensions_used")
        return {**{f: int(st[_S[f]]) for f in names}, "capped": int(st[_S["capped"]])}


SPECULATIVE_REFUSED = (
    "s1kit's vLLM Model Runner V2 adapter does not support speculative decoding (each draft token "
    "gets its own logits row, and the budget would have to be stepped per draft and rolled back on "
    "rejection): start vLLM without a speculative config"
)

WATERMARK_REFUSED = (
    "s1kit's vLLM Model Runner V2 adapter does not support watermarking (the watermark sampler "
    "redraws tokens after the processor, so forced and redirected tokens would not be honoured): "
    "start vLLM without a watermark config"
)


class RunnerV2Budget:
    """Model Runner V2's logits-processor interface (``__init__(vllm_config, req_states)``,
    ``add_request``, ``apply_staged_writes``, ``apply(logits, ctx)``) over a :class:`DeviceBudget`.

    ``req_states`` is vLLM's ``LogitsProcRequestState``: ``max_num_reqs``, ``device``, the token
    history ``all_token_ids.gpu`` ``(B, L)``, ``total_len.gpu`` ``(B,)`` and the host arrays
    ``prompt_len.np`` and ``prefill_len.np``. ``ctx`` is vLLM's ``LogitsContext``.
    """

    def __init__(self, vllm_config: Any, req_states: Any) -> None:
        if getattr(vllm_config, "speculative_config", None) is not None:
            raise ValueError(SPECULATIVE_REFUSED)
        if getattr(vllm_config, "watermark_config", None) is not None:
            raise ValueError(WATERMARK_REFUSED)
        self.req_states = req_states
        self.budget = DeviceBudget(int(req_states.max_num_reqs), req_states.device)

    def add_request(self, req_idx: int, sampling_params: Any) -> bool:
        """Stage the request in slot ``req_idx`` (replacing the slot's previous occupant); true when
        it is budget-forced. Raises ``ValueError`` for a request the adapter cannot run exactly."""
        spec = check_request(sampling_params)
        temperature = float(getattr(sampling_params, "temperature", 0.0) or 0.0)
        self.budget.stage(req_idx, spec, temperature if temperature >= GREEDY_BELOW else 0.0)
        return spec is not None

    def apply_staged_writes(self) -> None:
        """Admit the staged requests: their tokens are on the device now (one copy to the host)."""
        self.budget.admit(self._history)

    def _history(self, slots: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rs = self.req_states
        prompt_len = np.asarray(rs.prompt_len.np[slots], np.int64)
        prefill_len = np.asarray(rs.prefill_len.np[slots], np.int64)
        width = int(prefill_len.max(initial=0))
        index = torch.tensor(slots, dtype=torch.int64, device=rs.all_token_ids.gpu.device)
        tokens = rs.all_token_ids.gpu[index, :width].cpu().numpy().astype(np.int64)
        return tokens, prompt_len, prefill_len

    def apply(self, logits: torch.Tensor, ctx: Any) -> torch.Tensor:
        """Feed the rows of this step their committed tokens, then edit their logits in place."""
        if not self.budget.governs(ctx.idx_mapping_np):
            return logits
        rs = self.req_states
        self.budget.feed(ctx.idx_mapping, rs.total_len.gpu, rs.all_token_ids.gpu)
        self.budget.mask(logits, ctx.expanded_idx_mapping)
        return logits

    def row_state(self, req_idx: int) -> dict[str, int] | None:
        """The counters of the request in slot ``req_idx`` as last fed (None when not forced;
        synchronises: tests and metrics)."""
        return self.budget.row_state(req_idx)
