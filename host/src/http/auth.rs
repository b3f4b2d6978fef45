//! 인증 API: register, login, refresh, logout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiJson;
use super::response::{Envelope, ErrorEnvelope, ok};
use crate::app::SharedState;
use crate::auth::{AuthError, TokenPair};
use crate::billing::ledger::Ledger;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::i18n::Lang;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidEmail => ApiError::new(ErrorCode::InvalidEmail),
            AuthError::WeakPassword(rule) => ApiError::with_details(ErrorCode::WeakPassword, rule),
            AuthError::InvalidName => ApiError::validation(Some("name"), "length_1_to_100"),
            AuthError::EmailExists => ApiError::new(ErrorCode::EmailExists),
            AuthError::BadCredentials => ApiError::new(ErrorCode::Unauthorized),
            AuthError::InvalidToken => ApiError::new(ErrorCode::InvalidToken),
            AuthError::TokenExpired => ApiError::new(ErrorCode::TokenExpired),
            AuthError::Busy => ApiError::with_details(
                ErrorCode::ServiceUnavailable,
                json!({ "reason": "too many sign-ins at once; try again shortly" }),
            )
            .retry_after(1),
            AuthError::Internal(e) => ApiError::internal(e),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "user@example.com")]
    pub email: String,
    #[schema(example = "SecurePass123!")]
    pub password: String,
    /// Display name; the email's local part when left out.
    #[schema(example = "홍길동")]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegisteredUser {
    pub id: String,
    pub email: String,
    pub name: String,
    pub email_verified: bool,
}

/// 회원가입
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, body = Envelope<RegisteredUser>),
        (status = 400, description = "INVALID_EMAIL, WEAK_PASSWORD, VALIDATION_ERROR", body = ErrorEnvelope),
        (status = 409, description = "EMAIL_EXISTS", body = ErrorEnvelope),
    ))]
async fn register(
    State(state): State<SharedState>,
    lang: Lang,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<impl IntoResponse> {
    let user = state
        .auth
        .register(&req.email, &req.password, req.name.as_deref())
        .await?;
    let body = RegisteredUser {
        id: user.id,
        email: user.email,
        name: user.name,
        email_verified: user.email_verified,
    };
    Ok(ok(body).status(StatusCode::CREATED).message(lang.pick(
        "회원가입이 완료되었습니다.",
        "Your account has been created.",
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginUser {
    pub id: String,
    pub email: String,
    pub name: String,
    pub tier: String,
    pub credits: i64,
}

/// A fresh access token and the refresh token that rotates with it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Opaque; rotates on every refresh (the one sent is then spent).
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

impl From<TokenPair> for TokenResponse {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: "Bearer",
            expires_in: pair.expires_in,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    #[serde(flatten)]
    pub tokens: TokenResponse,
    pub user: LoginUser,
}

/// 로그인
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = Envelope<LoginResponse>),
        (status = 401, description = "UNAUTHORIZED: wrong email or password", body = ErrorEnvelope),
    ))]
async fn login(
    State(state): State<SharedState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<impl IntoResponse> {
    let (user, pair) = state.auth.login(&req.email, &req.password).await?;
    let credits = balance_of(&state.ledger, &user.id).await?;
    Ok(ok(LoginResponse {
        tokens: pair.into(),
        user: LoginUser {
            id: user.id,
            email: user.email,
            name: user.name,
            tier: user.tier,
            credits,
        },
    }))
}

async fn balance_of(ledger: &Ledger, user_id: &str) -> ApiResult<i64> {
    Ok(ledger
        .balance(user_id)
        .await
        .map_err(ApiError::internal)?
        .balance)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// 토큰 갱신 — rotates the refresh token; reusing a spent one revokes the session.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = Envelope<TokenResponse>),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorEnvelope),
    ))]
async fn refresh(
    State(state): State<SharedState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<impl IntoResponse> {
    let pair = state.auth.refresh(&req.refresh_token).await?;
    Ok(ok(TokenResponse::from(pair)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogoutResponse {
    pub logged_out: bool,
}

/// 로그아웃 — revokes the refresh-token family (the whole session).
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = Envelope<LogoutResponse>),
        (status = 401, description = "INVALID_TOKEN", body = ErrorEnvelope),
    ))]
async fn logout(
    State(state): State<SharedState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<impl IntoResponse> {
    state.auth.logout(&req.refresh_token).await?;
    Ok(ok(LogoutResponse { logged_out: true }))
}
