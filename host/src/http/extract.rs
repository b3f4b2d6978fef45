//! Extractors whose rejections are `ApiError`s in the spec's envelope, and
//! the authenticated-user extractor.

use axum::extract::rejection::{PathRejection, QueryRejection};
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

/// `axum::Json` with enveloped rejections, and a bound on how many values
/// a body may hold: a JSON value costs the parser tens of bytes, so 20 MiB
/// of `[0,0,…]` would take ~800 MiB and seconds of a runtime thread.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// The most values (arrays, objects and their elements) a JSON body may
/// hold: the largest InvokeAI export we import (512 nodes, 2048 edges)
/// holds ~30 000.
pub const MAX_JSON_VALUES: usize = 100_000;

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::with_details(
                ErrorCode::ValidationError,
                json!({ "reason": "content_type", "expected": "application/json" }),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(ErrorCode::PayloadTooLarge)
                } else {
                    ApiError::with_details(
                        ErrorCode::ValidationError,
                        json!({ "reason": "unreadable_body", "message": r.body_text() }),
                    )
                }
            })?;
        json_body(&bytes).map(ApiJson)
    }
}

/// Reads a JSON body: an object, of at most `MAX_JSON_VALUES` values,
/// whole numbers read as integers (`1.0` is an integer to JSON Schema).
pub fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if json_values_over(bytes, MAX_JSON_VALUES) {
        return Err(ApiError::with_details(
            ErrorCode::PayloadTooLarge,
            json!({ "reason": format!("a body holds at most {MAX_JSON_VALUES} JSON values") }),
        ));
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| malformed_json(e.to_string()))?;
    // Every body of the API is an object; serde would read a struct from
    // an array of its fields too.
    if !value.is_object() {
        return Err(invalid_body("the body must be a JSON object"));
    }
    integral_numbers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| invalid_body(e.to_string()))
}

/// Writes each number that is a whole one (`1.0`, `2e3`) as an integer:
/// JSON Schema counts it an `integer`, serde's integer fields would not.
fn integral_numbers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *n = (f as i64).into();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral_numbers),
        Value::Object(o) => o.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// `application/json` or `application/…+json`, as `axum::Json` accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or_default().trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// Whether `body` holds more than `limit` JSON values, counted without
/// parsing: every `[`, `{` and `,` outside strings starts one.
fn json_values_over(body: &[u8], limit: usize) -> bool {
    let (mut count, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' | b',' => {
                    count += 1;
                    if count > limit {
                        return true;
                    }
                }
                _ => {}
            }
        }
    }
    false
}

/// `axum::extract::Query` with enveloped rejections.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` with enveloped rejections.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A body that is not JSON: the same answer on every route.
pub fn malformed_json(message: impl Into<String>) -> ApiError {
    ApiError::with_details(
        ErrorCode::ValidationError,
        json!({ "reason": "malformed_json", "message": message.into() }),
    )
}

/// A JSON body that is not the route's: the same answer on every route.
fn invalid_body(message: impl Into<String>) -> ApiError {
    ApiError::with_details(
        ErrorCode::ValidationError,
        json!({ "reason": "invalid_body", "message": message.into() }),
    )
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
        let AuthUser { id } = AuthUser::from_request_parts(parts, state).await?;
        // Not from the profile cache: a demotion made anywhere (another
        // host, `pingvas admin` in a shell) counts from the next request.
        let caller = users::caller_now(&state.db, &id)
            .await
            .map_err(ApiError::internal)?
            .ok_or(ErrorCode::InvalidToken)?;
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
    json_body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_are_counted_outside_strings() {
        assert!(!json_values_over(br#"{"a":[1,2,3]}"#, 5));
        assert!(json_values_over(br#"{"a":[1,2,3],"b":{}}"#, 5));
        // Brackets, commas and escaped quotes inside strings are text.
        let text = br#"{"prompt":"[a, {b}, \"c, [d]\"]"}"#;
        assert!(!json_values_over(text, 1));
        assert!(json_values_over(&[b'['; 11], 10));
    }

    #[test]
    fn json_content_types_are_axums() {
        let ok = |ct: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(axum::http::header::CONTENT_TYPE, ct.parse().unwrap());
            json_content_type(&h)
        };
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("Application/JSON"));
        assert!(ok("application/vnd.api+json"));
        assert!(!ok("text/json"));
        assert!(!ok("application/jsonx"));
        assert!(!ok("+json"));
        assert!(!json_content_type(&axum::http::HeaderMap::new()));
    }
}
