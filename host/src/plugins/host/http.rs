//! `http`: outbound requests of billing adapters, only to hosts on the
//! operator's allow-list, with the call's remaining deadline as timeout.

use std::time::Instant;

use crate::plugins::bindings::v0_1_0::billing::pingvas::plugin::http::{
    Host, HttpError, Request, Response,
};
use crate::plugins::state::PluginState;

/// Largest response body handed back to a guest.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// True when `url`'s host (with its port, if the entry names one) is on
/// `allow`. Only http and https.
pub fn allowed(url: &url::Url, allow: &[String]) -> bool {
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    let Some(host) = url.host_str() else {
        return false;
    };
    let with_port = url.port().map(|p| format!("{host}:{p}"));
    allow.iter().any(|a| {
        a.eq_ignore_ascii_case(host)
            || with_port
                .as_deref()
                .is_some_and(|hp| a.eq_ignore_ascii_case(hp))
    })
}

impl Host for PluginState {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let url = match url::Url::parse(&req.url) {
            Ok(u) => u,
            Err(e) => return Ok(Err(HttpError::Failed(format!("bad url: {e}")))),
        };
        if !allowed(&url, &self.grants.http_allow) {
            tracing::warn!(plugin = %self.plugin, url = %req.url, "outbound http denied: host not on the allow-list");
            return Ok(Err(HttpError::Denied(format!(
                "{} is not on this plugin's allow-list",
                url.host_str().unwrap_or("?")
            ))));
        }
        let Ok(method) = reqwest::Method::from_bytes(req.method.as_bytes()) else {
            return Ok(Err(HttpError::Failed(format!("bad method {}", req.method))));
        };
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let mut builder = self
            .http
            .request(method, url)
            .timeout(remaining)
            .body(req.body);
        for (k, v) in req.headers {
            builder = builder.header(k, v);
        }
        let resp = match builder.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Ok(Err(HttpError::Timeout)),
            Err(e) => return Ok(Err(HttpError::Failed(e.to_string()))),
        };
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = match resp.bytes().await {
            Ok(b) if b.len() <= MAX_RESPONSE_BYTES => b.to_vec(),
            Ok(_) => return Ok(Err(HttpError::Failed("response too large".into()))),
            Err(e) => return Ok(Err(HttpError::Failed(e.to_string()))),
        };
        Ok(Ok(Response {
            status,
            headers,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn allow_list_matches_host_and_port() {
        let allow = vec![
            "api.lemonsqueezy.com".to_owned(),
            "127.0.0.1:8089".to_owned(),
        ];
        let ok = |u: &str| allowed(&url::Url::parse(u).unwrap(), &allow);
        assert!(ok("https://api.lemonsqueezy.com/v1/checkouts"));
        assert!(ok("http://127.0.0.1:8089/x"));
        assert!(!ok("http://127.0.0.1:8090/x"));
        assert!(!ok("https://api.lemonsqueezy.com.evil.net/"));
        assert!(!ok("https://evil.example.net/"));
        assert!(!ok("file:///etc/passwd"));
    }
}
