//! Extractors whose rejections are `ApiError`s in the spec's envelope, and
//! the authenticated-user extractor.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::header::{ACCEPT_LANGUAGE, AUTHORIZATION};
use axum::http::request::Parts;
use serde_json::json;

use crate::app::SharedState;
use crate::auth::tokens::TokenError;
use crate::error::{ApiError, ErrorCode};
use crate::i18n::Lang;
use crate::users::{self, Caller};

/// `axum::Json` with enveloped rejections.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query` with enveloped rejections.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` with enveloped rejections.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let reason = r.body_text();
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::with_details(
                ErrorCode::ValidationError,
                json!({ "reason": "content_type", "expected": "application/json" }),
            ),
            JsonRejection::JsonSyntaxError(_) => ApiError::with_details(
                ErrorCode::ValidationError,
                json!({ "reason": "malformed_json", "message": reason }),
            ),
            JsonRejection::JsonDataError(_) => ApiError::with_details(
                ErrorCode::ValidationError,
                json!({ "reason": "invalid_body", "message": reason }),
            ),
            r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(ErrorCode::PayloadTooLarge)
            }
            _ => ApiError::with_details(
                ErrorCode::ValidationError,
                json!({ "reason": "unreadable_body", "message": reason }),
            ),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::with_details(
            ErrorCode::InvalidParameters,
            json!({ "message": r.body_text() }),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::with_details(
            ErrorCode::InvalidParameters,
            json!({ "message": r.body_text() }),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(lang_of(&parts.headers))
    }
}

pub fn lang_of(headers: &axum::http::HeaderMap) -> Lang {
    headers
        .get(ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(Lang::from_accept_language)
        .unwrap_or_default()
}

/// Checks `Authorization: Bearer <secret>` against a configured shared
/// secret (worker token, metrics token); digests are compared, so the time
/// taken says nothing about the secret.
pub fn require_bearer(
    headers: &axum::http::HeaderMap,
    expected: &secrecy::SecretString,
) -> Result<(), ErrorCode> {
    use secrecy::ExposeSecret;
    use sha2::{Digest, Sha256};
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ErrorCode::Unauthorized)?;
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.expose_secret().as_bytes());
    if a != b {
        return Err(ErrorCode::InvalidToken);
    }
    Ok(())
}

/// The caller with their tier and role (read once per request), for
/// handlers whose answer depends on them.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Caller);

impl std::ops::Deref for CurrentUser {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl FromRequestParts<SharedState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let AuthUser { id } = AuthUser::from_request_parts(parts, state).await?;
        let caller = users::caller(&state.db, &id)
            .await
            .map_err(ApiError::internal)?
            // A valid token of a deleted account.
            .ok_or(ErrorCode::InvalidToken)?;
        Ok(CurrentUser(caller))
    }
}

/// The caller, from a valid `Authorization: Bearer <access token>`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: String,
}

impl FromRequestParts<SharedState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        // Validated already by the rate limiter.
        if let Some(claims) = parts.extensions.get::<crate::auth::tokens::Claims>() {
            return Ok(AuthUser {
                id: claims.sub.clone(),
            });
        }
        let token = bearer_token(&parts.headers)?;
        // A token issued before its user's sessions were ended (password
        // reset, claim) is invalid.
        let claims = state.auth.authenticate(token).await.map_err(|e| match e {
            TokenError::Expired => ErrorCode::TokenExpired,
            TokenError::Invalid => ErrorCode::InvalidToken,
        })?;
        Ok(AuthUser { id: claims.sub })
    }
}

/// The access token of an `Authorization: Bearer …` header, or why there
/// is none.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, ErrorCode> {
    let header = headers.get(AUTHORIZATION).ok_or(ErrorCode::Unauthorized)?;
    let value = header.to_str().map_err(|_| ErrorCode::InvalidToken)?;
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(ErrorCode::InvalidToken),
    };
    if token.is_empty() {
        return Err(ErrorCode::Unauthorized);
    }
    Ok(token)
}

/// An administrator (`users.role = admin`, read for every request so a
/// demotion takes effect at once); others get `FORBIDDEN`.
#[derive(Debug, Clone)]
pub struct AdminUser(pub Caller);

impl FromRequestParts<SharedState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let CurrentUser(caller) = CurrentUser::from_request_parts(parts, state).await?;
        if caller.role != "admin" {
            return Err(ErrorCode::Forbidden.into());
        }
        Ok(AdminUser(caller))
    }
}

/// A JSON body that may be left out (empty or whitespace: the default).
pub fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::with_details(
            ErrorCode::ValidationError,
            json!({ "reason": "invalid_body", "message": e.to_string() }),
        )
    })
}
