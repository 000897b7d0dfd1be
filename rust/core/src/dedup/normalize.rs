//! Text normalisation compatible with the s1 decontamination scripts.
//!
//! s1 normalises with `" ".join(text.lower().split())` and cuts word n-grams from the result. This
//! module reproduces that exactly: [`lowercase`] follows Python's `str.lower()` (full Unicode case
//! mapping, final sigma included, as Rust's `str::to_lowercase` does), and [`words`] splits on exactly
//! the characters Python's `str.split()` treats as whitespace. That set is *not* Rust's
//! `char::is_whitespace`: Python also splits on the ASCII information separators U+001C..U+001F.

/// Whether Python's `str.split()` (no argument) splits on `c`.
///
/// The set: `\t \n \x0b \x0c \r`, `\x1c..\x1f`, space, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028,
/// U+2029, U+202F, U+205F, U+3000. (U+200B ZERO WIDTH SPACE and U+FEFF are not whitespace in Python.)
#[inline]
pub fn is_py_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\u{1c}'..='\u{1f}'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Python's `text.lower()`; ASCII text takes a fast path that allocates once and maps bytes.
pub fn lowercase(text: &str) -> String {
    if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        text.to_lowercase()
    }
}

/// The words of `text` as Python's `text.split()` yields them (no empty words).
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_py_whitespace).filter(|w| !w.is_empty())
}

/// Python whitespace among the ASCII bytes (`\t..\r`, `\x1c..\x1f`, space) as a bit mask.
const ASCII_WS: u64 = 0b1_1111_0000_0000_0000_0011_1110_0000_0000;

/// Whether the ASCII byte `b` is Python whitespace (`\t..\r`, `\x1c..\x1f`, space): one compare
/// and a bit test (the splitter asks this at every word boundary).
#[inline]
pub(crate) fn is_ascii_py_whitespace(b: u8) -> bool {
    b <= b' ' && (ASCII_WS >> b) & 1 == 1
}

/// Call `f` with the UTF-8 bytes of every word of `text.lower().split()`, in order, without
/// building the lowercased text: ASCII bytes are lowercased and split byte by byte, other characters
/// go through `char::to_lowercase` (context-free for everything but capital sigma, whose final form
/// depends on its neighbours: texts containing 'Σ' take the exact whole-string path instead).
pub fn for_each_word(text: &str, mut f: impl FnMut(&[u8])) {
    if text.contains('Σ') {
        let lower = lowercase(text);
        words(&lower).for_each(|w| f(w.as_bytes()));
        return;
    }
    let bytes = text.as_bytes();
    let mut word: Vec<u8> = Vec::with_capacity(64);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            if is_ascii_py_whitespace(b) {
                if !word.is_empty() {
                    f(&word);
                    word.clear();
                }
            } else {
                word.push(b.to_ascii_lowercase());
            }
            i += 1;
            continue;
        }
        let c = text[i..].chars().next().expect("i is on a char boundary");
        i += c.len_utf8();
        if is_py_whitespace(c) {
            if !word.is_empty() {
                f(&word);
                word.clear();
            }
        } else {
            let mut buf = [0u8; 4];
            for l in c.to_lowercase() {
                word.extend_from_slice(l.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if !word.is_empty() {
        f(&word);
    }
}

/// `" ".join(text.lower().split())`: lowercase, whitespace runs collapsed to one space, trimmed.
pub fn normalize(text: &str) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    for_each_word(text, |w| {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(w);
    });
    // Words are whole UTF-8 sequences (lowercased chars re-encoded), so the join is valid UTF-8.
    String::from_utf8(out).expect("words are valid UTF-8")
}

/// Number of words of `text` after normalisation (lowercasing never creates or removes whitespace).
pub fn word_count(text: &str) -> usize {
    words(text).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace_set_is_exact() {
        let py: Vec<u32> = vec![
            0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000,
            0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028,
            0x2029, 0x202f, 0x205f, 0x3000,
        ];
        for cp in 0u32..0x11000 {
            if let Some(c) = char::from_u32(cp) {
                assert_eq!(is_py_whitespace(c), py.contains(&cp), "U+{cp:04X}");
            }
        }
    }

    #[test]
    fn normalize_collapses_and_lowercases() {
        assert_eq!(
            normalize("  Hello\u{3000}WORLD\x1c x\u{200b}y \n"),
            "hello world x\u{200b}y"
        );
        assert_eq!(normalize(""), "");
        assert_eq!(normalize(" \t "), "");
        // Final sigma, as Python's str.lower(): "ΟΔΟΣ" -> "οδος" with a final ς.
        assert_eq!(normalize("ΟΔΟΣ ΣΑ"), "οδος σα");
    }
}
