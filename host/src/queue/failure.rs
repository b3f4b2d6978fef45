//! Why a job failed: one code per cause, each with its fixed user-facing
//! message. Workers report a code and a detail; the host stores both.

use serde::{Deserialize, Serialize};

use crate::i18n::Lang;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::EnumIter)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureCode {
    /// A pre- or post-node trapped, timed out, ran out of memory or refused
    /// its input.
    PluginFailed,
    /// A step's real input would cost more than the job reserved for it
    /// (an image a node enlarged, a workflow call past its price): refused
    /// before it ran.
    InsufficientCredits,
    /// The backend failed.
    InferenceFailed,
    /// The worker could not run the job (a node could not be loaded, the
    /// images could not be encoded).
    HostFailed,
    /// An input image could not be used.
    InvalidInput,
    /// The worker returned no or unreadable images.
    InvalidOutput,
    /// The lease expired more times than the retry limit.
    WorkerLost,
    /// No worker served the job's model for `worker_offline_secs`.
    NoWorker,
    /// The job was stopped on the worker (the user cancelled or the lease
    /// was lost); the host has already ended it, so it is never reported.
    Cancelled,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Failures of the code the user chose to run (their nodes, their
    /// graph asking for more than it paid for): the work done until then
    /// is charged. Every other failure — the backend, the host, a lost
    /// worker — is refunded in full.
    pub fn is_users_doing(self) -> bool {
        matches!(
            self,
            FailureCode::PluginFailed | FailureCode::InsufficientCredits
        )
    }

    /// The fixed message users are shown for this failure.
    pub fn message(self, lang: Lang) -> &'static str {
        use FailureCode::*;
        match self {
            PluginFailed => lang.pick(
                "플러그인 노드 실행에 실패했습니다.",
                "A plugin node failed.",
            ),
            InsufficientCredits => lang.pick(
                "작업 단계가 예약된 크레딧보다 많은 작업을 요청했습니다.",
                "A step of the job needed more credits than were reserved for it.",
            ),
            InferenceFailed => lang.pick(
                "이미지 생성 중 오류가 발생했습니다.",
                "Image generation failed.",
            ),
            HostFailed => lang.pick(
                "작업을 실행하는 중 서버 오류가 발생했습니다.",
                "The server could not run the job.",
            ),
            InvalidInput => lang.pick(
                "입력 이미지를 사용할 수 없습니다.",
                "An input image could not be used.",
            ),
            InvalidOutput => lang.pick(
                "생성 결과를 읽을 수 없습니다.",
                "The generated images could not be read.",
            ),
            WorkerLost => lang.pick(
                "작업을 처리하던 워커와 연결이 끊어졌습니다.",
                "The worker running the job stopped responding.",
            ),
            NoWorker => lang.pick(
                "이 모델을 처리할 수 있는 워커가 없습니다.",
                "No worker serves this model.",
            ),
            Cancelled => lang.pick("작업이 중단되었습니다.", "The job was stopped."),
        }
    }
}

/// Longest reason a user is shown with a failure.
pub const MAX_REASON_CHARS: usize = 256;

/// A job's failure as a worker reports it: the code, a short reason the
/// user may see (what a node said on purpose, never trap text or backend
/// internals), and the seconds the user's chosen work occupied the
/// worker until then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub code: FailureCode,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub worker_seconds: f64,
}

impl Failure {
    pub fn new(code: FailureCode) -> Self {
        Self {
            code,
            reason: None,
            worker_seconds: 0.0,
        }
    }

    /// With a reason for the user, made safe to show.
    pub fn because(mut self, reason: &str) -> Self {
        let clean = sanitise_reason(reason);
        self.reason = (!clean.is_empty()).then_some(clean);
        self
    }

    /// With the seconds of user-chosen work done until the failure.
    pub fn after(mut self, worker_seconds: f64) -> Self {
        self.worker_seconds = worker_seconds.max(0.0);
        self
    }
}

/// One line of at most `MAX_REASON_CHARS` characters, without control
/// characters.
pub fn sanitise_reason(text: &str) -> String {
    let mut out = String::new();
    let (mut n, mut space) = (0, false);
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() {
            space = n > 0;
            continue;
        }
        if n + usize::from(space) >= MAX_REASON_CHARS {
            break;
        }
        if space {
            out.push(' ');
            n += 1;
            space = false;
        }
        out.push(c);
        n += 1;
    }
    out
}

/// A failed job's error: its code, the code's fixed message, and a short
/// reason when a node refused the job on purpose.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobError {
    #[schema(value_type = String)]
    pub code: FailureCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl JobError {
    pub fn new(code: FailureCode, reason: Option<String>, lang: Lang) -> Self {
        Self {
            code,
            message: code.message(lang).to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn codes_read_back_and_have_both_messages() {
        for code in FailureCode::iter() {
            assert_eq!(code.as_str().parse::<FailureCode>().unwrap(), code);
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
            assert_ne!(code.message(Lang::Ko), code.message(Lang::En));
        }
        assert_eq!(FailureCode::WorkerLost.as_str(), "WORKER_LOST");
    }

    #[test]
    fn reasons_are_one_short_clean_line() {
        assert_eq!(
            sanitise_reason("  bad\n\tstyle\u{1b}[31m  "),
            "bad style [31m"
        );
        let long = "x".repeat(10_000);
        assert_eq!(sanitise_reason(&long).chars().count(), MAX_REASON_CHARS);
        assert_eq!(
            Failure::new(FailureCode::PluginFailed)
                .because("\n\n")
                .reason,
            None
        );
        assert!(FailureCode::PluginFailed.is_users_doing());
        assert!(!FailureCode::InferenceFailed.is_users_doing());
        assert!(!FailureCode::WorkerLost.is_users_doing());
    }
}
