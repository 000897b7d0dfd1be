//! Incremental multi-pattern matching over token ids (Aho-Corasick).
//!
//! Delimiters span several tokens and are emitted one decode step at a time, so a row keeps one
//! automaton state between steps. Feeding token `t` moves the state with [`Matcher::next`]; the
//! state's [`Matcher::kinds`] says which pattern kinds end at the current token. Because failure
//! links are followed, the result equals "does the token stream end with one of the patterns" for
//! every prefix of the stream, overlapping and self-overlapping patterns included.

/// Pattern kind bit: the thinking span opens (`think_start`).
pub const KIND_THINK_START: u8 = 1;
/// Pattern kind bit: the thinking span closes (`think_end`).
pub const KIND_THINK_END: u8 = 2;
/// Pattern kind bit: the answer is complete (`answer_stop`).
pub const KIND_ANSWER_STOP: u8 = 4;

/// An Aho-Corasick automaton over `u32` token ids. State 0 is the root (nothing matched).
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Per state, its trie children as `(token, state)`, sorted by token.
    children: Vec<Vec<(u32, u32)>>,
    /// Per state, the state of its longest proper suffix that is also a trie node.
    fail: Vec<u32>,
    /// Per state, the union of kinds of all patterns that are suffixes of its string.
    kinds: Vec<u8>,
    /// Per state `s`, every token `t` with `kinds(next(s, t)) & KIND_THINK_END != 0`, sorted.
    end_tokens: Vec<Vec<u32>>,
}

impl Matcher {
    /// Build the automaton for `(pattern, kind)` pairs. Patterns must be non-empty.
    pub fn new(patterns: &[(&[u32], u8)]) -> Self {
        let mut children: Vec<Vec<(u32, u32)>> = vec![Vec::new()];
        let mut kinds = vec![0u8];
        for (pattern, kind) in patterns {
            debug_assert!(!pattern.is_empty(), "patterns are validated non-empty");
            let mut s = 0usize;
            for &t in pattern.iter() {
                s = match children[s].binary_search_by_key(&t, |&(tok, _)| tok) {
                    Ok(i) => children[s][i].1 as usize,
                    Err(i) => {
                        let new = children.len() as u32;
                        children[s].insert(i, (t, new));
                        children.push(Vec::new());
                        kinds.push(0);
                        new as usize
                    }
                };
            }
            kinds[s] |= kind;
        }
        // Breadth-first order guarantees a state's failure target is finished before the state.
        let mut fail = vec![0u32; children.len()];
        let mut order = Vec::with_capacity(children.len());
        let mut queue = std::collections::VecDeque::new();
        for &(_, c) in &children[0] {
            queue.push_back(c);
        }
        while let Some(s) = queue.pop_front() {
            order.push(s);
            for &(t, c) in &children[s as usize] {
                let mut f = fail[s as usize];
                let target = loop {
                    if let Some(n) = Self::child(&children, f, t) {
                        break n;
                    }
                    if f == 0 {
                        break 0;
                    }
                    f = fail[f as usize];
                };
                fail[c as usize] = target;
                kinds[c as usize] |= kinds[target as usize];
                queue.push_back(c);
            }
        }
        let mut m = Matcher {
            children,
            fail,
            kinds,
            end_tokens: Vec::new(),
        };
        m.end_tokens = (0..m.children.len() as u32)
            .map(|s| m.compute_end_tokens(s))
            .collect();
        m
    }

    fn child(children: &[Vec<(u32, u32)>], s: u32, t: u32) -> Option<u32> {
        let c = &children[s as usize];
        c.binary_search_by_key(&t, |&(tok, _)| tok)
            .ok()
            .map(|i| c[i].1)
    }

    fn compute_end_tokens(&self, s: u32) -> Vec<u32> {
        // Only a token that is some trie edge on the failure chain can lead anywhere but the root.
        let mut candidates = Vec::new();
        let mut f = s;
        loop {
            candidates.extend(self.children[f as usize].iter().map(|&(t, _)| t));
            if f == 0 {
                break;
            }
            f = self.fail[f as usize];
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates.retain(|&t| self.kinds(self.next(s, t)) & KIND_THINK_END != 0);
        candidates
    }

    /// The state after feeding token `t` in state `s`.
    #[inline]
    pub fn next(&self, mut s: u32, t: u32) -> u32 {
        loop {
            if let Some(n) = Self::child(&self.children, s, t) {
                return n;
            }
            if s == 0 {
                return 0;
            }
            s = self.fail[s as usize];
        }
    }

    /// Kinds of the patterns that end exactly at the last token fed to reach `s`.
    #[inline]
    pub fn kinds(&self, s: u32) -> u8 {
        self.kinds[s as usize]
    }

    /// Tokens that would complete a `think_end` pattern from state `s`, sorted.
    #[inline]
    pub fn end_tokens(&self, s: u32) -> &[u32] {
        &self.end_tokens[s as usize]
    }

    /// Largest `end_tokens` set over all states.
    pub fn max_end_tokens(&self) -> usize {
        self.end_tokens.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Every token id that labels a trie edge (the ids of all patterns), sorted and unique. Feeding
    /// any other id moves every state to the root (see `tables::BatchTables`).
    pub fn alphabet(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.children.iter().flatten().map(|&(t, _)| t).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Per state: the largest `k < pattern.len()` such that the state's string ends with
    /// `pattern[..k]`. `pattern` must be one of the patterns (or empty: all zeros).
    pub fn prefix_overlap(&self, pattern: &[u32]) -> Vec<u32> {
        let n = self.children.len();
        // Trie node of each proper prefix pattern[..k], k = 1..len-1 (the root is k = 0).
        let mut depth_of = vec![u32::MAX; n];
        let mut s = 0u32;
        for (k, &t) in pattern
            .iter()
            .enumerate()
            .take(pattern.len().saturating_sub(1))
        {
            s = Self::child(&self.children, s, t).expect("pattern is in the trie");
            depth_of[s as usize] = k as u32 + 1;
        }
        (0..n as u32)
            .map(|state| {
                // Failure links list the trie-node suffixes of the state's string, longest first.
                let mut f = state;
                loop {
                    if depth_of[f as usize] != u32::MAX {
                        return depth_of[f as usize];
                    }
                    if f == 0 {
                        return 0;
                    }
                    f = self.fail[f as usize];
                }
            })
            .collect()
    }

    /// Number of automaton states (trie nodes, root included).
    pub fn num_states(&self) -> usize {
        self.children.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends_with_any(stream: &[u32], pats: &[&[u32]]) -> bool {
        pats.iter().any(|p| stream.ends_with(p))
    }

    #[test]
    fn self_overlapping_pattern_matches_every_occurrence() {
        let pat: &[u32] = &[1, 1, 2, 1, 1];
        let m = Matcher::new(&[(pat, KIND_THINK_END)]);
        let stream = [1, 1, 2, 1, 1, 2, 1, 1, 1, 2, 1, 1];
        let mut s = 0;
        for i in 0..stream.len() {
            s = m.next(s, stream[i]);
            let hit = m.kinds(s) & KIND_THINK_END != 0;
            assert_eq!(hit, ends_with_any(&stream[..=i], &[pat]), "at {i}");
        }
    }

    #[test]
    fn end_tokens_are_exactly_the_completing_tokens() {
        let a: &[u32] = &[5, 6];
        let b: &[u32] = &[6, 7];
        let m = Matcher::new(&[
            (a, KIND_THINK_END),
            (b, KIND_THINK_END),
            (&[9], KIND_THINK_START),
        ]);
        let s5 = m.next(0, 5);
        assert_eq!(m.end_tokens(s5), &[6]);
        let s56 = m.next(s5, 6);
        assert_eq!(m.end_tokens(s56), &[7]);
        assert!(m.end_tokens(0).is_empty());
    }
}
