//! What a worker advertises: the catalogue models its backend really has,
//! narrowed by `worker_models`, asked again now and then and after a
//! failed model lookup.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{JobSource, Worker};

/// How often a worker asks its backend which models it has.
pub const MODEL_RECHECK: Duration = Duration::from_secs(60);

/// What a worker advertises: what the backend has (`None`: every model),
/// narrowed by what it is configured to serve.
fn narrow(found: Option<Vec<String>>, configured: &Option<Vec<String>>) -> Option<Vec<String>> {
    match (found, configured) {
        (None, c) => c.clone(),
        (Some(f), None) => Some(f),
        (Some(f), Some(c)) => Some(f.into_iter().filter(|m| c.contains(m)).collect()),
    }
}

impl<S: JobSource> Worker<S> {
    /// Asks the backend which catalogue models it has and advertises those
    /// (a backend that cannot be asked keeps what was advertised).
    pub async fn refresh_models(&self) {
        match self.backend.discover(&self.catalogue).await {
            Ok(found) => {
                let models = narrow(found, &self.configured);
                let mut info = self.info.write().expect("worker info");
                if info.models != models {
                    tracing::info!(worker = %info.id, ?models, "models the backend has");
                }
                info.models = models;
            }
            Err(e) => tracing::warn!(error = %e, "asking the backend for its models failed"),
        }
        *self.models_checked.lock().expect("models checked") = Some(Instant::now());
        self.recheck_models.store(false, Ordering::Relaxed);
    }

    /// Refreshes the models when they are old or a lookup failed.
    pub(super) async fn refresh_models_if_due(&self) {
        let due = self.recheck_models.load(Ordering::Relaxed)
            || self
                .models_checked
                .lock()
                .expect("models checked")
                .is_none_or(|t| t.elapsed() > MODEL_RECHECK);
        if due {
            self.refresh_models().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::narrow;

    #[test]
    fn advertised_models_are_what_the_backend_has_within_the_configuration() {
        let v = |m: &[&str]| Some(m.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(narrow(None, &None), None);
        assert_eq!(narrow(None, &v(&["a"])), v(&["a"]));
        assert_eq!(narrow(v(&["a", "b"]), &None), v(&["a", "b"]));
        assert_eq!(narrow(v(&["a", "b"]), &v(&["b", "c"])), v(&["b"]));
        assert_eq!(narrow(v(&[]), &None), v(&[]));
    }
}
