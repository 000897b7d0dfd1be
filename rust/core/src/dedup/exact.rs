//! Exact duplicates after normalisation: texts equal once lowercased and whitespace-collapsed.

use std::collections::HashMap;

use rayon::prelude::*;

use super::normalize::normalize;

/// For each text, the index of the first text with the same normalised form (itself when it is the
/// first). Empty and whitespace-only texts are duplicates of each other. Normalisation runs in
/// parallel; grouping compares whole strings, so the result is exact (no hash collisions).
pub fn exact_duplicates(texts: &[&str]) -> Vec<u32> {
    let normalized: Vec<String> = texts.par_iter().map(|t| normalize(t)).collect();
    let mut first: HashMap<&str, u32> = HashMap::with_capacity(normalized.len());
    normalized
        .iter()
        .enumerate()
        .map(|(i, s)| *first.entry(s.as_str()).or_insert(i as u32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_normalized_text() {
        let texts = ["A  b", "c", "a b", "", " \t", "C\u{3000}"];
        assert_eq!(exact_duplicates(&texts), vec![0, 1, 0, 3, 3, 1]);
    }
}
