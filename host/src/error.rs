//! `ApiError` and the spec's error envelope:
//! `{"success":false,"error":{"code","message","details"}}`.
//!
//! Handlers and extractors return `ApiError`; its `IntoResponse` renders the
//! Korean message and stores the error in the response's extensions so the
//! language middleware (`http::envelope`) can re-render it in English when
//! the client asked for that.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::i18n::Lang;

/// The spec's error codes (에러 코드 목록) plus the few the spec leaves out
/// but HTTP needs (payload too large, method not allowed, conflict, service
/// unavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthorized,
    InvalidToken,
    TokenExpired,
    Forbidden,
    FeatureLocked,
    NotFound,
    EmailExists,
    InsufficientCredits,
    StorageExceeded,
    RateLimited,
    QueueFull,
    QuotaExceeded,
    ModelNotAvailable,
    InvalidParameters,
    ValidationError,
    InvalidEmail,
    WeakPassword,
    Conflict,
    MethodNotAllowed,
    PayloadTooLarge,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "UNAUTHORIZED",
            Self::InvalidToken => "INVALID_TOKEN",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::Forbidden => "FORBIDDEN",
            Self::FeatureLocked => "FEATURE_LOCKED",
            Self::NotFound => "NOT_FOUND",
            Self::EmailExists => "EMAIL_EXISTS",
            Self::InsufficientCredits => "INSUFFICIENT_CREDITS",
            Self::StorageExceeded => "STORAGE_EXCEEDED",
            Self::RateLimited => "RATE_LIMITED",
            Self::QueueFull => "QUEUE_FULL",
            Self::QuotaExceeded => "QUOTA_EXCEEDED",
            Self::ModelNotAvailable => "MODEL_NOT_AVAILABLE",
            Self::InvalidParameters => "INVALID_PARAMETERS",
            Self::ValidationError => "VALIDATION_ERROR",
            Self::InvalidEmail => "INVALID_EMAIL",
            Self::WeakPassword => "WEAK_PASSWORD",
            Self::Conflict => "CONFLICT",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::InternalError => "INTERNAL_ERROR",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::InvalidToken | Self::TokenExpired => {
                StatusCode::UNAUTHORIZED
            }
            Self::Forbidden | Self::FeatureLocked | Self::ModelNotAvailable => {
                StatusCode::FORBIDDEN
            }
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::EmailExists | Self::Conflict => StatusCode::CONFLICT,
            Self::InsufficientCredits | Self::StorageExceeded => StatusCode::PAYMENT_REQUIRED,
            Self::RateLimited | Self::QueueFull | Self::QuotaExceeded => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::InvalidParameters
            | Self::ValidationError
            | Self::InvalidEmail
            | Self::WeakPassword => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code that stands for a bare HTTP status produced outside our
    /// handlers (a tower layer, the router itself).
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::FORBIDDEN => Self::Forbidden,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::TOO_MANY_REQUESTS => Self::RateLimited,
            StatusCode::CONFLICT => Self::Conflict,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => {
                Self::ServiceUnavailable
            }
            s if s.is_client_error() => Self::ValidationError,
            _ => Self::InternalError,
        }
    }

    pub fn message(self, lang: Lang) -> &'static str {
        let (ko, en) = match self {
            Self::Unauthorized => ("인증이 필요합니다.", "Authentication required."),
            Self::InvalidToken => ("유효하지 않은 토큰입니다.", "The token is invalid."),
            Self::TokenExpired => ("토큰이 만료되었습니다.", "The token has expired."),
            Self::Forbidden => ("권한이 없습니다.", "You do not have permission."),
            Self::FeatureLocked => (
                "현재 티어에서 사용할 수 없는 기능입니다.",
                "This feature is locked for your tier.",
            ),
            Self::NotFound => ("리소스를 찾을 수 없습니다.", "Resource not found."),
            Self::EmailExists => (
                "이미 사용 중인 이메일입니다.",
                "The email is already in use.",
            ),
            Self::InsufficientCredits => ("크레딧이 부족합니다.", "Not enough credits."),
            Self::StorageExceeded => ("스토리지 용량을 초과했습니다.", "Storage quota exceeded."),
            Self::RateLimited => ("요청 제한을 초과했습니다.", "Too many requests."),
            Self::QueueFull => ("큐가 가득 찼습니다.", "The queue is full."),
            Self::QuotaExceeded => ("큐 제한을 초과했습니다.", "Queue quota exceeded."),
            Self::ModelNotAvailable => (
                "현재 티어에서 사용할 수 없는 모델입니다.",
                "This model is not available for your tier.",
            ),
            Self::InvalidParameters => ("잘못된 파라미터입니다.", "Invalid parameters."),
            Self::ValidationError => ("유효성 검사에 실패했습니다.", "Validation failed."),
            Self::InvalidEmail => (
                "유효하지 않은 이메일 형식입니다.",
                "The email address is invalid.",
            ),
            Self::WeakPassword => (
                "비밀번호가 요구사항을 충족하지 않습니다.",
                "The password does not meet the requirements.",
            ),
            Self::Conflict => (
                "요청이 현재 상태와 충돌합니다.",
                "The request conflicts with the current state.",
            ),
            Self::MethodNotAllowed => ("허용되지 않는 메서드입니다.", "Method not allowed."),
            Self::PayloadTooLarge => ("요청 본문이 너무 큽니다.", "The request body is too large."),
            Self::ServiceUnavailable => (
                "서비스를 일시적으로 사용할 수 없습니다.",
                "The service is temporarily unavailable.",
            ),
            Self::InternalError => ("서버 오류가 발생했습니다.", "Internal server error."),
        };
        match lang {
            Lang::Ko => ko,
            Lang::En => en,
        }
    }
}

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub details: Option<Value>,
    /// Seconds after which a retry may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(code: ErrorCode, details: Value) -> Self {
        Self {
            details: Some(details),
            ..Self::new(code)
        }
    }

    /// The same error, telling the client when to try again.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// A parameter that failed validation: `details.field` names it.
    pub fn invalid_param(field: &str, reason: impl Into<String>) -> Self {
        Self::with_details(
            ErrorCode::InvalidParameters,
            json!({ "field": field, "reason": reason.into() }),
        )
    }

    pub fn validation(field: Option<&str>, reason: impl Into<String>) -> Self {
        Self::with_details(
            ErrorCode::ValidationError,
            json!({ "field": field, "reason": reason.into() }),
        )
    }

    /// Logs the cause in full and answers a generic `INTERNAL_ERROR`.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::InternalError)
    }

    pub fn body(&self, lang: Lang) -> Value {
        json!({
            "success": false,
            "error": {
                "code": self.code.as_str(),
                "message": self.code.message(lang),
                "details": self.details.clone().unwrap_or(Value::Null),
            }
        })
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code.as_str())
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.code.status(), axum::Json(self.body(Lang::default()))).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response.extensions_mut().insert(self);
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
