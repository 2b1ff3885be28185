//! Small text helpers with one rule each, shared by the engine and the operator: clipping
//! text to a length (for reports, status fields and termination messages) and hex digests.

/// `s` cut to at most `max` characters; a cut ends with `…` (which counts towards `max`).
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The first `max` characters of `s`, unmarked: for evidence that must stay a prefix of what
/// the server sent (a registry's error message), where [`clip`] would add a character.
pub fn prefix(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// [`clip`] of `s` on one line: control characters (newlines, escapes) become spaces, so the
/// text is safe in a status message, a log field or a table cell.
pub fn clip_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    clip(&flat, max)
}

/// [`clip`] in place.
pub fn clip_in_place(s: &mut String, max: usize) {
    if s.chars().count() > max {
        *s = clip(s, max);
    }
}

/// [`clip`] in place, when there is a value.
pub fn clip_opt(s: &mut Option<String>, max: usize) {
    if let Some(v) = s {
        clip_in_place(v, max);
    }
}

/// Lowercase hex of the first `bytes` bytes (at most 32) of the SHA-256 of `data`.
pub fn sha256_hex(data: &[u8], bytes: usize) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref()[..bytes.min(32)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_counts_characters_and_marks_the_cut() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "ab…");
        assert_eq!(clip("äöüß", 2), "ä…");
        assert_eq!(clip("abc", 0), "…");
        assert_eq!(clip_line("a\nb\u{1b}c", 10), "a b c");
        assert_eq!(prefix("äöüß", 2), "äö");
        assert_eq!(prefix("ab", 5), "ab");
        let mut s = "x".repeat(10);
        clip_in_place(&mut s, 4);
        assert_eq!(s, "xxx…");
        let mut o = Some("hello".to_string());
        clip_opt(&mut o, 3);
        assert_eq!(o.as_deref(), Some("he…"));
    }

    #[test]
    fn sha256_hex_of_a_known_value() {
        // sha256("abc")
        assert_eq!(
            sha256_hex(b"abc", 32),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_hex(b"abc", 4), "ba7816bf");
    }
}
