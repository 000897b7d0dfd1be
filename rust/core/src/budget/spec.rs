//! What one row is asked to do: [`BudgetSpec`], validated and compiled into [`CompiledSpec`].

use super::matcher::{Matcher, KIND_ANSWER_STOP, KIND_THINK_END, KIND_THINK_START};
use crate::error::{Error, Result};

/// The budget-forcing request for one row, in token ids.
///
/// All token sequences are ids of the model's tokenizer, so matching is exact and independent of
/// how text would be re-tokenized. See the module documentation for the full semantics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSpec {
    /// Size of the model's vocabulary: every id must be below it, and so must every sampled token.
    pub vocab_size: u32,
    /// Spellings that open the thinking span. Empty: the row starts in [`super::Phase::Thinking`].
    pub think_start: Vec<Vec<u32>>,
    /// Spellings that close the thinking span (at least one). Completing one is an attempt to end.
    pub think_end: Vec<Vec<u32>>,
    /// End-of-sequence ids. In the thinking span an EOS is an attempt to end thinking as well.
    pub eos: Vec<u32>,
    /// Forced when thinking reaches its cap (s1: `\n<|im_start|>answer\nFinal Answer:`): the end
    /// delimiter followed by the answer prefix. Also forced when the model emits EOS while thinking
    /// and is allowed to stop, so that every row gets an answer span.
    pub answer_prefix: Vec<u32>,
    /// Texts forced in place of an early end of thinking, cycled (s1: `["Wait"]`).
    pub extensions: Vec<Vec<u32>>,
    /// Thinking-token cap. `None`: no cap.
    pub max_thinking_tokens: Option<u32>,
    /// An end of thinking before this many thinking tokens is suppressed.
    pub min_thinking_tokens: u32,
    /// The first `num_extensions` attempts to end thinking are suppressed ("ignore the end N times").
    pub num_extensions: u32,
    /// After the cap, let the current line finish for at most this many tokens (0: force at once).
    pub grace_tokens: u32,
    /// Token ids that end a line (contain a newline); used only with `grace_tokens > 0`.
    pub newline_tokens: Vec<u32>,
    /// Answer-token cap; the row is done when it is reached. `None`: no cap.
    pub max_answer_tokens: Option<u32>,
    /// Spellings that end the answer (the row is then done), besides EOS.
    pub answer_stop: Vec<Vec<u32>>,
}

impl BudgetSpec {
    /// A spec with nothing set but the vocabulary size; fill the rest with struct update syntax.
    pub fn new(vocab_size: u32) -> Self {
        BudgetSpec {
            vocab_size,
            think_start: Vec::new(),
            think_end: Vec::new(),
            eos: Vec::new(),
            answer_prefix: Vec::new(),
            extensions: Vec::new(),
            max_thinking_tokens: None,
            min_thinking_tokens: 0,
            num_extensions: 0,
            grace_tokens: 0,
            newline_tokens: Vec::new(),
            max_answer_tokens: None,
            answer_stop: Vec::new(),
        }
    }

    /// Check every field and build the matching automaton.
    pub fn compile(self) -> Result<CompiledSpec> {
        self.validate()?;
        let mut patterns: Vec<(&[u32], u8)> = Vec::new();
        patterns.extend(
            self.think_start
                .iter()
                .map(|p| (p.as_slice(), KIND_THINK_START)),
        );
        patterns.extend(
            self.think_end
                .iter()
                .map(|p| (p.as_slice(), KIND_THINK_END)),
        );
        patterns.extend(
            self.answer_stop
                .iter()
                .map(|p| (p.as_slice(), KIND_ANSWER_STOP)),
        );
        // The answer prefix is matched too (with no kind), so that a row knows how much of it the
        // stream already ends with when it starts forcing it (see `CompiledSpec::answer_overlap`).
        if !self.answer_prefix.is_empty() {
            patterns.push((self.answer_prefix.as_slice(), 0));
        }
        let matcher = Matcher::new(&patterns);
        let answer_overlap = matcher.prefix_overlap(&self.answer_prefix);
        let words = (self.vocab_size as usize).div_ceil(64);
        let mut newline_bits = vec![0u64; if self.grace_tokens > 0 { words } else { 0 }];
        if self.grace_tokens > 0 {
            for &t in &self.newline_tokens {
                newline_bits[t as usize / 64] |= 1 << (t % 64);
            }
        }
        let mut eos = self.eos.clone();
        eos.sort_unstable();
        eos.dedup();
        Ok(CompiledSpec {
            ban_width: matcher.max_end_tokens() + eos.len(),
            answer_overlap,
            spec: self,
            matcher,
            newline_bits,
            eos,
        })
    }

    fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidSpec(msg));
        if self.vocab_size == 0 {
            return bad("vocab_size must be positive".into());
        }
        let check_ids = |field: &str, ids: &[u32]| -> Result<()> {
            match ids.iter().find(|&&t| t >= self.vocab_size) {
                Some(t) => Err(Error::InvalidSpec(format!(
                    "{field} holds token id {t}, outside the vocabulary of size {}: use ids of the model's tokenizer",
                    self.vocab_size
                ))),
                None => Ok(()),
            }
        };
        let check_seqs = |field: &str, seqs: &[Vec<u32>]| -> Result<()> {
            for (i, s) in seqs.iter().enumerate() {
                if s.is_empty() {
                    return Err(Error::InvalidSpec(format!(
                        "{field}[{i}] is empty: every spelling needs at least one token"
                    )));
                }
                check_ids(field, s)?;
            }
            Ok(())
        };
        if self.think_end.is_empty() {
            return bad(
                "think_end is empty: give at least one spelling of the end-of-thinking delimiter"
                    .into(),
            );
        }
        check_seqs("think_start", &self.think_start)?;
        check_seqs("think_end", &self.think_end)?;
        check_seqs("extensions", &self.extensions)?;
        check_seqs("answer_stop", &self.answer_stop)?;
        check_ids("eos", &self.eos)?;
        check_ids("answer_prefix", &self.answer_prefix)?;
        check_ids("newline_tokens", &self.newline_tokens)?;
        if let Some(max) = self.max_thinking_tokens {
            if self.min_thinking_tokens > max {
                return bad(format!(
                    "min_thinking_tokens ({}) exceeds max_thinking_tokens ({max}): lower the minimum or raise the cap",
                    self.min_thinking_tokens
                ));
            }
            if self.answer_prefix.is_empty() {
                return bad("max_thinking_tokens is set but answer_prefix is empty: give the end delimiter (and answer prefix) to force at the cap".into());
            }
        }
        if (self.num_extensions > 0 || self.min_thinking_tokens > 0) && self.extensions.is_empty() {
            return bad("num_extensions or min_thinking_tokens is set but extensions is empty: give the text to force (e.g. \"Wait\")".into());
        }
        if self.grace_tokens > 0 && self.newline_tokens.is_empty() {
            return bad("grace_tokens is set but newline_tokens is empty: give the ids of tokens that end a line".into());
        }
        // Specs that mask mode (every engine adapter) cannot run exactly as override mode are
        // refused: there the redirect token would be both banned (it ends thinking itself) and forced.
        for (i, e) in self.extensions.iter().enumerate() {
            if self.eos.contains(&e[0]) {
                return bad(format!("extensions[{i}] starts with an EOS id: an extension must continue the thinking"));
            }
            if let Some(d) = self.think_end.iter().find(|d| e.starts_with(d)) {
                return bad(format!(
                    "extensions[{i}] {e:?} starts with the think_end spelling {d:?}: forcing it would write the end delimiter, so thinking could never be extended; use a text such as \"Wait\""
                ));
            }
            if let Some(d) = self.think_end.iter().find(|d| d.last() == Some(&e[0])) {
                return bad(format!(
                    "extensions[{i}] starts with token {}, which completes the think_end spelling {d:?}: in mask mode (the engine adapters) that token would be both banned and forced; start the extension with another token",
                    e[0]
                ));
            }
        }
        if let Some(t) = self.answer_prefix.iter().find(|t| self.eos.contains(t)) {
            return bad(format!(
                "answer_prefix holds the EOS id {t}: an EOS in thinking is replaced by the answer prefix, so it cannot contain one; remove it"
            ));
        }
        Ok(())
    }
}

/// A validated [`BudgetSpec`] with its automaton; shared by rows through `Arc`.
#[derive(Debug, Clone)]
pub struct CompiledSpec {
    spec: BudgetSpec,
    matcher: Matcher,
    /// Bitset over the vocabulary of `newline_tokens` (empty when there is no grace).
    newline_bits: Vec<u64>,
    /// Sorted, deduplicated EOS ids.
    eos: Vec<u32>,
    ban_width: usize,
    /// Per automaton state: the longest proper prefix of `answer_prefix` its string ends with.
    answer_overlap: Vec<u32>,
}

impl CompiledSpec {
    /// The spec this was compiled from.
    pub fn spec(&self) -> &BudgetSpec {
        &self.spec
    }

    /// The delimiter automaton.
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Whether `t` is an end-of-sequence id.
    #[inline]
    pub fn is_eos(&self, t: u32) -> bool {
        self.eos.binary_search(&t).is_ok()
    }

    /// Sorted EOS ids.
    pub fn eos(&self) -> &[u32] {
        &self.eos
    }

    /// Whether `t` ends a line (only meaningful with grace tokens).
    #[inline]
    pub fn is_newline(&self, t: u32) -> bool {
        self.newline_bits
            .get(t as usize / 64)
            .is_some_and(|w| w >> (t % 64) & 1 == 1)
    }

    /// How many leading tokens of `answer_prefix` (fewer than all) the stream already ends with in
    /// automaton state `state`; forcing the answer prefix starts after them. 0 without a prefix.
    #[inline]
    pub fn answer_overlap(&self, state: u32) -> usize {
        self.answer_overlap[state as usize] as usize
    }

    /// Per automaton state, [`Self::answer_overlap`].
    pub fn answer_overlaps(&self) -> &[u32] {
        &self.answer_overlap
    }

    /// The most token ids a mask step can ban for one row of this spec.
    pub fn ban_width(&self) -> usize {
        self.ban_width
    }
}
