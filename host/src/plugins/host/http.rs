//! `http`: outbound requests of billing adapters, only to hosts on the
//! operator's allow-list, with the call's remaining deadline as timeout.

use std::time::Instant;

use crate::plugins::bindings::v0_2_0::billing::pingvas::plugin::http::{
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

/// The body of `resp`, refused as soon as it is known to pass `max` bytes
/// (by its `Content-Length`, or while it streams in) — never read whole.
async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, HttpError> {
    let too_large = || HttpError::Failed(format!("response larger than {max} bytes"));
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => return Err(HttpError::Timeout),
            Err(e) => return Err(HttpError::Failed(e.to_string())),
        }
    }
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
        let body = match read_capped(resp, MAX_RESPONSE_BYTES).await {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
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
    use super::*;

    /// A server whose body never ends.
    async fn endless() -> String {
        use axum::body::Body;
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(|| async {
                let chunk = bytes::Bytes::from(vec![b'x'; 64 << 10]);
                let stream = futures::stream::repeat_with(move || {
                    Ok::<_, std::convert::Infallible>(chunk.clone())
                });
                Body::from_stream(stream)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_at_the_cap() {
        let url = endless().await;
        let resp = reqwest::get(&url).await.unwrap();
        // Reading it whole would never end; the cap ends it.
        let got = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            read_capped(resp, 1 << 20),
        )
        .await
        .expect("stopped at the cap");
        assert!(matches!(got, Err(HttpError::Failed(m)) if m.contains("larger than")));
    }

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
