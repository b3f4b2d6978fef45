//! Password policy and hashing (argon2id, OWASP parameters: m = 19456 KiB,
//! t = 2, p = 1). Hashing runs on the blocking pool so it never stalls the
//! async runtime.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};
use serde_json::{Value, json};

fn hasher() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string.
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await?
}

/// Checks a password against a stored hash. With no stored hash (unknown
/// account, or one without a password) it verifies against a fixed dummy
/// hash, so the answer takes as long as for a wrong password.
pub async fn verify(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    let known = stored.is_some();
    let stored: Arc<str> = match stored {
        Some(s) => s.into(),
        None => dummy_hash(),
    };
    let ok = tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        Ok::<_, anyhow::Error>(
            hasher()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
        )
    })
    .await??;
    Ok(ok && known)
}

fn dummy_hash() -> Arc<str> {
    static DUMMY: OnceLock<Arc<str>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let salt = SaltString::generate(&mut OsRng);
            hasher()
                .hash_password(b"pingvas-timing-equaliser", &salt)
                .expect("argon2 hashes a constant")
                .to_string()
                .into()
        })
        .clone()
}

/// Computes the dummy hash ahead of the first unknown-email login, so that
/// one is not slower than the rest.
pub fn warm_up() {
    let _ = dummy_hash();
}

/// The password rules; the first one broken is returned as error `details`.
pub fn check_policy(password: &str, email: &str) -> Result<(), Value> {
    let len = password.chars().count();
    if len < 8 {
        return Err(json!({ "rule": "min_length", "min": 8 }));
    }
    if len > 128 {
        return Err(json!({ "rule": "max_length", "max": 128 }));
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password
            .chars()
            .any(|c| !c.is_alphanumeric() && !c.is_whitespace()),
    ];
    if classes.iter().filter(|&&b| b).count() < 3 {
        return Err(json!({
            "rule": "character_classes",
            "min_classes": 3,
            "classes": ["lowercase", "uppercase", "digit", "symbol"],
        }));
    }
    let local = email.split('@').next().unwrap_or("");
    if !local.is_empty() && password.to_lowercase() == local.to_lowercase() {
        return Err(json!({ "rule": "matches_email" }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(p: &str) -> Option<String> {
        check_policy(p, "alice.smith@example.com")
            .err()
            .map(|v| v["rule"].as_str().unwrap().to_owned())
    }

    #[test]
    fn policy_rules() {
        assert_eq!(rule("Ab1!"), Some("min_length".into()));
        assert_eq!(rule(&"Ab1!".repeat(33)), Some("max_length".into()));
        assert_eq!(rule("abcdefgh1"), Some("character_classes".into()));
        assert_eq!(rule("Alice.Smith"), Some("matches_email".into()));
        assert_eq!(rule("SecurePass123!"), None);
        assert_eq!(rule("correct horse 9"), Some("character_classes".into()));
        assert_eq!(rule("비밀번호Abc123"), None);
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("SecurePass123!".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            verify("SecurePass123!".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong".into(), Some(h)).await.unwrap());
        assert!(
            !verify("pingvas-timing-equaliser".into(), None)
                .await
                .unwrap()
        );
    }
}
