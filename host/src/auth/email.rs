//! Email addresses: normalised to one canonical form before they are
//! stored or looked up, so `Alice@Example.COM ` and `alice@example.com`
//! are one account.

use std::str::FromStr;

use email_address::EmailAddress;

/// The canonical form of an address, or `None` when it is not a valid
/// address with a dotted domain.
pub fn normalise(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    // Checked before lowercasing, so a huge string is not copied first.
    if trimmed.len() > 254 {
        return None;
    }
    let email = trimmed.to_lowercase();
    if email.len() > 254 {
        return None;
    }
    let parsed = EmailAddress::from_str(&email).ok()?;
    let domain = parsed.domain();
    if domain.starts_with('[') || !domain.contains('.') || domain.ends_with('.') {
        return None;
    }
    Some(email)
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn normalises_and_validates() {
        assert_eq!(
            normalise("  Alice@Example.COM ").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            normalise("a.b+tag@sub.example.co.kr").as_deref(),
            Some("a.b+tag@sub.example.co.kr")
        );
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@example.com",
            "a@@example.com",
            "a@[127.0.0.1]",
        ] {
            assert_eq!(normalise(bad), None, "{bad}");
        }
        assert_eq!(normalise(&format!("{}@example.com", "a".repeat(250))), None);
    }
}
