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
    /// The backend failed.
    InferenceFailed,
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

    /// The fixed message users are shown for this failure.
    pub fn message(self, lang: Lang) -> &'static str {
        use FailureCode::*;
        match self {
            PluginFailed => lang.pick(
                "플러그인 노드 실행에 실패했습니다.",
                "A plugin node failed.",
            ),
            InferenceFailed => lang.pick(
                "이미지 생성 중 오류가 발생했습니다.",
                "Image generation failed.",
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
}
