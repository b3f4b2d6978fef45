//! The Prometheus registry of the host: HTTP request counts and latency
//! histograms by route template, method and status. The HTTP layer
//! records into it (`http::metrics`); `/metrics` renders it.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

pub struct HttpMetrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    /// Rate-limit checks Redis could not answer (this host's limits stood in).
    pub ratelimit_redis_errors: Counter,
    /// Mails handed to the server (or the outbox), and mails that failed.
    pub mail_sent: Counter,
    pub mail_failed: Counter,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pingvas");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            // 0.25 ms … ~8 s
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        let ratelimit_redis_errors = Counter::default();
        registry.register(
            "ratelimit_redis_errors",
            "Rate-limit checks Redis could not answer",
            ratelimit_redis_errors.clone(),
        );
        let mail_sent = Counter::default();
        registry.register(
            "mail_sent",
            "Mails handed to the SMTP server or the outbox",
            mail_sent.clone(),
        );
        let mail_failed = Counter::default();
        registry.register(
            "mail_failed",
            "Mails that could not be sent",
            mail_failed.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            ratelimit_redis_errors,
            mail_sent,
            mail_failed,
        }
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry lock");
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}
