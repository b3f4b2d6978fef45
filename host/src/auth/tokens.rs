//! Access tokens (JWT, HS256) and opaque refresh tokens.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    /// When it was issued, in microseconds: told apart from a "sign out
    /// everywhere" in the same second (`cutoffs`). Tokens without it count
    /// as issued at the start of their `iat` second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_us: Option<i64>,
}

impl Claims {
    /// When the token was issued (µs since the epoch).
    pub fn issued_us(&self) -> i64 {
        self.iat_us
            .unwrap_or_else(|| self.iat.saturating_mul(1_000_000))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
}

/// Issues and validates access tokens with one HS256 key.
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    pub ttl_secs: i64,
}

impl AccessTokens {
    pub fn new(secret: &[u8], issuer: &str, audience: &str, ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl_secs: ttl_secs as i64,
        }
    }

    pub fn issue(&self, user_id: &str) -> String {
        let now = chrono::Utc::now();
        self.issue_at_us(user_id, now.timestamp(), now.timestamp_micros())
    }

    /// Issues a token as if the clock read `iat` (tests of expiry).
    pub fn issue_at(&self, user_id: &str, iat: i64) -> String {
        self.issue_at_us(user_id, iat, iat.saturating_mul(1_000_000))
    }

    fn issue_at_us(&self, user_id: &str, iat: i64, iat_us: i64) -> String {
        let claims = Claims {
            sub: user_id.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat,
            exp: iat + self.ttl_secs,
            jti: uuid::Uuid::now_v7().to_string(),
            iat_us: Some(iat_us),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    pub fn validate(&self, token: &str) -> Result<Claims, TokenError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

/// A new opaque token (refresh tokens, mailed links, OAuth state): 256
/// random bits, URL-safe.
pub fn new_opaque_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of an opaque token: its SHA-256, hex.
pub fn hash_opaque_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random signing secret, hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> AccessTokens {
        AccessTokens::new(
            b"0123456789abcdef0123456789abcdef",
            "pingvas",
            "pingvas-api",
            3600,
        )
    }

    #[test]
    fn round_trip() {
        let t = tokens();
        let claims = t.validate(&t.issue("u1")).unwrap();
        assert_eq!(claims.sub, "u1");
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(claims.issued_us() / 1_000_000, claims.iat);
    }

    #[test]
    fn expired_is_told_apart_from_invalid() {
        let t = tokens();
        let old = t.issue_at("u1", chrono::Utc::now().timestamp() - 7200);
        assert_eq!(t.validate(&old).unwrap_err(), TokenError::Expired);
        assert_eq!(t.validate("garbage").unwrap_err(), TokenError::Invalid);
        let other = AccessTokens::new(
            b"another-key-another-key-another!!",
            "pingvas",
            "pingvas-api",
            3600,
        );
        assert_eq!(
            t.validate(&other.issue("u1")).unwrap_err(),
            TokenError::Invalid
        );
        let wrong_aud = AccessTokens::new(
            b"0123456789abcdef0123456789abcdef",
            "pingvas",
            "elsewhere",
            3600,
        );
        assert_eq!(
            t.validate(&wrong_aud.issue("u1")).unwrap_err(),
            TokenError::Invalid
        );
    }

    #[test]
    fn missing_jti_is_invalid() {
        #[derive(Serialize)]
        struct NoJti<'a> {
            sub: &'a str,
            iss: &'a str,
            aud: &'a str,
            exp: i64,
            iat: i64,
        }
        let t = tokens();
        let now = chrono::Utc::now().timestamp();
        let c = NoJti {
            sub: "u",
            iss: "pingvas",
            aud: "pingvas-api",
            exp: now + 60,
            iat: now,
        };
        let tok = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        assert_eq!(t.validate(&tok).unwrap_err(), TokenError::Invalid);
    }

    #[test]
    fn refresh_token_hash_is_stable_and_not_the_token() {
        let tok = new_opaque_token();
        assert_eq!(hash_opaque_token(&tok), hash_opaque_token(&tok));
        assert_ne!(hash_opaque_token(&tok), tok);
        assert_ne!(new_opaque_token(), tok);
    }
}
