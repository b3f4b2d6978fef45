//! 인증 API: register, login, refresh, logout, email verification and
//! password reset (the OAuth routes are in `http::oauth`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiJson;
use super::extract::AuthUser;
use super::response::{Envelope, ErrorEnvelope, ok};
use crate::app::SharedState;
use crate::auth::{AuthError, Resent, TokenPair};
use crate::billing::ledger::Ledger;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::i18n::Lang;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(verify_email))
        .routes(routes!(resend_verification))
        .routes(routes!(password_reset))
        .routes(routes!(password_reset_confirm))
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
            AuthError::TooSoon(wait) => ApiError::with_details(
                ErrorCode::RateLimited,
                json!({ "reason": "a mail of this kind was sent moments ago", "retry_after": wait }),
            )
            .retry_after(wait),
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
        (status = 201, description = "created; a verification link is mailed", body = Envelope<RegisteredUser>),
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
        .register(&req.email, &req.password, req.name.as_deref(), lang)
        .await?;
    let body = RegisteredUser {
        id: user.id,
        email: user.email,
        name: user.name,
        email_verified: user.email_verified,
    };
    Ok(ok(body).status(StatusCode::CREATED).message(lang.pick(
        "인증 이메일이 발송되었습니다.",
        "A verification email has been sent.",
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token of the mailed link.
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmailVerified {
    pub email: String,
    pub email_verified: bool,
}

/// 이메일 인증 — spends the token of the mailed link (once, within 24 h).
#[utoipa::path(post, path = "/auth/verify-email", tag = "auth", request_body = TokenRequest,
    responses(
        (status = 200, body = Envelope<EmailVerified>),
        (status = 401, description = "INVALID_TOKEN (unknown or used), TOKEN_EXPIRED", body = ErrorEnvelope),
    ))]
async fn verify_email(
    State(state): State<SharedState>,
    lang: Lang,
    ApiJson(req): ApiJson<TokenRequest>,
) -> ApiResult<impl IntoResponse> {
    let user = state.auth.verify_email(&req.token).await?;
    Ok(ok(EmailVerified {
        email: user.email,
        email_verified: user.email_verified,
    })
    .message(lang.pick(
        "이메일이 인증되었습니다.",
        "Your email address is verified.",
    )))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResendResponse {
    /// False when the address was verified already (nothing is sent).
    pub sent: bool,
    pub email_verified: bool,
}

/// 인증 이메일 재발송 — for the signed-in user, at most once a minute.
#[utoipa::path(post, path = "/auth/resend-verification", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = Envelope<ResendResponse>),
        (status = 401, description = "UNAUTHORIZED", body = ErrorEnvelope),
        (status = 429, description = "RATE_LIMITED: one was sent less than a minute ago (Retry-After)", body = ErrorEnvelope),
    ))]
async fn resend_verification(
    State(state): State<SharedState>,
    user: AuthUser,
    lang: Lang,
) -> ApiResult<impl IntoResponse> {
    let resent = state.auth.resend_verification(&user.id, lang).await?;
    let sent = resent == Resent::Sent;
    let message = if sent {
        lang.pick(
            "인증 이메일이 발송되었습니다.",
            "A verification email has been sent.",
        )
    } else {
        lang.pick(
            "이미 인증된 이메일입니다.",
            "Your email address is verified already.",
        )
    };
    Ok(ok(ResendResponse {
        sent,
        email_verified: !sent,
    })
    .message(message))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    #[schema(example = "user@example.com")]
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordResetAccepted {
    pub accepted: bool,
}

/// 비밀번호 재설정 요청 — always the same answer, whether or not an account
/// has this address; if one does, a link (1 h, single use) is mailed.
#[utoipa::path(post, path = "/auth/password-reset", tag = "auth", request_body = PasswordResetRequest,
    responses((status = 200, body = Envelope<PasswordResetAccepted>)))]
async fn password_reset(
    State(state): State<SharedState>,
    lang: Lang,
    ApiJson(req): ApiJson<PasswordResetRequest>,
) -> ApiResult<impl IntoResponse> {
    state.auth.request_password_reset(&req.email, lang);
    Ok(
        ok(PasswordResetAccepted { accepted: true }).message(lang.pick(
            "가입된 이메일이라면 비밀번호 재설정 링크가 발송됩니다.",
            "If an account uses this address, a password reset link is on its way.",
        )),
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirm {
    pub token: String,
    #[schema(example = "NewSecurePass456!")]
    pub new_password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordResetDone {
    pub password_reset: bool,
    /// Every session of the account was ended.
    pub sessions_revoked: bool,
}

/// 비밀번호 재설정 — sets the new password and ends every session; also how
/// an account made through Google or Discord gets a password.
#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "auth", request_body = PasswordResetConfirm,
    responses(
        (status = 200, body = Envelope<PasswordResetDone>),
        (status = 400, description = "WEAK_PASSWORD (the link stays usable)", body = ErrorEnvelope),
        (status = 401, description = "INVALID_TOKEN (unknown or used), TOKEN_EXPIRED", body = ErrorEnvelope),
    ))]
async fn password_reset_confirm(
    State(state): State<SharedState>,
    lang: Lang,
    ApiJson(req): ApiJson<PasswordResetConfirm>,
) -> ApiResult<impl IntoResponse> {
    state
        .auth
        .reset_password(&req.token, &req.new_password)
        .await?;
    Ok(ok(PasswordResetDone {
        password_reset: true,
        sessions_revoked: true,
    })
    .message(lang.pick(
        "비밀번호가 변경되었습니다. 다시 로그인해 주세요.",
        "Your password has been changed. Please sign in again.",
    )))
}
