//! Password policy and hashing (argon2id, OWASP parameters: m = 19456 KiB,
//! t = 2, p = 1). Hashing runs on the blocking pool so it never stalls the
//! async runtime, behind a `HashGate` that bounds how many hashes run and
//! wait, so a flood of logins cannot take every core and thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};
use serde_json::{Value, json};

fn hasher() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Too many hashes are running and waiting: come back later.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing is saturated")]
    Busy,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// At most `concurrency` argon2 runs at once (each takes a core and
/// 19 MiB) and at most `queue` callers waiting for one; past that a caller
/// is refused at once instead of joining an endless line.
pub struct HashGate {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
}

/// Counts a caller in the waiting line for as long as it waits (also when
/// its request is dropped while waiting).
struct InLine<'a>(&'a AtomicUsize);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HashGate {
    pub fn new(concurrency: usize, queue: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            queue,
        }
    }

    async fn enter(&self) -> Result<OwnedSemaphorePermit, HashError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(HashError::Busy);
        }
        let _line = InLine(&self.waiting);
        Ok(self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the hash semaphore is never closed"))
    }

    /// Runs `work` on the blocking pool under a permit.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = self.enter().await?;
        let out = tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(anyhow::Error::from)??;
        Ok(out)
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            hasher()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        })
        .await
    }

    /// Checks a password against a stored hash. With no stored hash
    /// (unknown account, or one without a password) it verifies against a
    /// fixed dummy hash, so the answer takes as long as for a wrong
    /// password.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let known = stored.is_some();
        let stored: Arc<str> = match stored {
            Some(s) => s.into(),
            None => dummy_hash(),
        };
        let ok = self
            .run(move || {
                let parsed =
                    PasswordHash::new(&stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
                Ok(hasher()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok())
            })
            .await?;
        Ok(ok && known)
    }
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

/// A password's length in characters.
pub const MIN_CHARS: usize = 8;
pub const MAX_CHARS: usize = 128;

/// The password rules; the first one broken is returned as error `details`.
pub fn check_policy(password: &str, email: &str) -> Result<(), Value> {
    let len = password.chars().count();
    if len < MIN_CHARS {
        return Err(json!({ "rule": "min_length", "min": MIN_CHARS }));
    }
    if len > MAX_CHARS {
        return Err(json!({ "rule": "max_length", "max": MAX_CHARS }));
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
        let gate = HashGate::new(2, 4);
        let h = gate.hash("SecurePass123!".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let verify = |p: &str, stored: Option<String>| gate.verify(p.into(), stored);
        assert!(verify("SecurePass123!", Some(h.clone())).await.unwrap());
        assert!(!verify("wrong", Some(h)).await.unwrap());
        assert!(!verify("pingvas-timing-equaliser", None).await.unwrap());
    }
}

#[cfg(test)]
mod gate_tests {
    use super::*;

    #[tokio::test]
    async fn callers_past_the_line_are_turned_away() {
        let gate = HashGate::new(1, 1);
        let running = gate.enter().await.unwrap();
        // One may wait for the running hash ...
        let waiting = gate.enter();
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        // ... the next is refused at once.
        assert!(matches!(gate.enter().await, Err(HashError::Busy)));
        drop(running);
        let second = waiting.await.unwrap();
        drop(second);
        // A waiter that gave up leaves the line.
        let running = gate.enter().await.unwrap();
        {
            let gave_up = gate.enter();
            tokio::pin!(gave_up);
            assert!(futures::poll!(gave_up.as_mut()).is_pending());
        }
        let waiting = gate.enter();
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        drop(running);
        assert!(waiting.await.is_ok());
    }
}
