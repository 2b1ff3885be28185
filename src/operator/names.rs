//! Kubernetes' naming rules, one home each: DNS-1123 labels (namespaces), DNS-1123
//! subdomains (node names) and label values.

/// A DNS-1123 label: 1-63 lowercase letters, digits and '-', not starting or ending with '-'.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain such as a node name: 1-253 lowercase letters, digits, '-' and '.',
/// starting and ending with a letter or digit.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// A label value: empty, or at most 63 letters, digits, '-', '_' and '.', starting and ending
/// with a letter or digit.
pub fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && (s.is_empty()
            || (s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && s.as_bytes()[0].is_ascii_alphanumeric()
                && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules() {
        assert!(is_dns_label("team-a") && !is_dns_label("-a") && !is_dns_label("A"));
        assert!(!is_dns_label("") && !is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("aks-sys-1.internal") && !is_dns_subdomain(".x"));
        assert!(!is_dns_subdomain(&"a".repeat(254)) && !is_dns_subdomain("a_b"));
        assert!(is_label_value("") && is_label_value("A.b_c-1") && !is_label_value("-x"));
        assert!(!is_label_value(&"a".repeat(64)));
    }
}
