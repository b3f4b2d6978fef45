//! The web studio: the static front end in `web/` (ES modules, CSS and a
//! vendored preact + htm; no build step), embedded in the binary.
//!
//! Assets are served under `/assets/<version>/…`, where the version is a
//! hash of every embedded file, with a year of immutable caching: a new
//! build changes every URL at once, so a browser never mixes modules of two
//! builds. The page itself (`index.html`, for `/` and each client-side
//! route) is never cached and names the current version; it also carries
//! the sign-in providers this host has configured, as JSON the page reads.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, OnceLock};

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, body::Body};
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use rust_embed::Embed;
use sha2::{Digest, Sha256};

use crate::app::SharedState;
use crate::auth::oauth::Provider;
use crate::error::{ApiError, ErrorCode};
use crate::http::files::{if_none_match, mime_of};

#[derive(Embed)]
#[folder = "../web"]
#[exclude = "*.md"]
struct Files;

/// The client-side routes: each answers the page, so a reload or a mailed
/// link (`/verify-email?token=…`) lands in the studio.
pub const PAGES: &[&str] = &[
    "/",
    "/sign-in",
    "/sign-up",
    "/forgot-password",
    "/reset-password",
    "/verify-email",
    "/generate",
    "/queue",
    "/gallery",
    "/workflows",
    "/credits",
    "/plan",
    "/plugins",
];

/// The page's module; with everything it imports statically, preloaded.
const ENTRY: &str = "js/main.js";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

struct Asset {
    mime: HeaderValue,
    body: Bytes,
    gzip: Option<Bytes>,
}

struct Assets {
    version: String,
    files: HashMap<String, Asset>,
    /// `index.html` with the version and the module preloads filled in.
    index: String,
}

fn assets() -> &'static Assets {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let mut names: Vec<String> = Files::iter().map(|n| n.into_owned()).collect();
        names.sort();
        let mut version = Sha256::new();
        let mut files = HashMap::new();
        let mut index = String::new();
        for name in names {
            let Some(file) = Files::get(&name) else {
                continue;
            };
            version.update(name.as_bytes());
            version.update(file.metadata.sha256_hash());
            if name == "index.html" {
                index = String::from_utf8_lossy(&file.data).into_owned();
                continue;
            }
            let body = Bytes::from(file.data.into_owned());
            let mime = HeaderValue::from_static(mime_of(&name));
            files.insert(
                name,
                Asset {
                    gzip: gzip(&body),
                    mime,
                    body,
                },
            );
        }
        let version = hex::encode(&version.finalize()[..8]);
        // The modules of the first paint preloaded from the page: the
        // browser fetches them at once instead of discovering imports one
        // level at a time (pages behind `import()` load when opened).
        let preload: String = static_graph(&files, ENTRY)
            .iter()
            .map(|m| format!("<link rel=\"modulepreload\" href=\"/assets/{version}/{m}\">\n"))
            .collect();
        let index = index
            .replace("%PRELOAD%\n", &preload)
            .replace("%ASSETS%", &format!("/assets/{version}"));
        Assets {
            version,
            files,
            index,
        }
    })
}

/// `entry` and the modules it imports statically, transitively, sorted.
fn static_graph(files: &HashMap<String, Asset>, entry: &str) -> Vec<String> {
    let mut seen = vec![entry.to_owned()];
    let mut next = 0;
    while let Some(module) = seen.get(next).cloned() {
        next += 1;
        let Some(file) = files.get(&module) else {
            continue;
        };
        for spec in static_imports(&String::from_utf8_lossy(&file.body)) {
            if let Some(path) = resolve(&module, &spec)
                && files.contains_key(&path)
                && !seen.contains(&path)
            {
                seen.push(path);
            }
        }
    }
    seen.sort();
    seen
}

/// The relative specifiers of `import … from "…"` and `import "…"` in a
/// module (minified or not); `import(…)`, dynamic, is not one.
fn static_imports(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for keyword in ["from", "import"] {
        for (at, _) in source.match_indices(keyword) {
            let rest = source[at + keyword.len()..].trim_start();
            let Some(quote) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') else {
                continue;
            };
            if let Some(end) = rest[1..].find(quote) {
                let spec = &rest[1..=end];
                if spec.starts_with("./") || spec.starts_with("../") {
                    out.push(spec.to_owned());
                }
            }
        }
    }
    out
}

/// `spec` relative to the module `from` (`js/pages/a.js` + `../ui.js`).
fn resolve(from: &str, spec: &str) -> Option<String> {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for seg in spec.split('/') {
        match seg {
            "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

/// The gzip twin of a compressible file, when it is smaller.
fn gzip(body: &[u8]) -> Option<Bytes> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(body).ok()?;
    let out = enc.finish().ok()?;
    (out.len() + 64 < body.len()).then(|| Bytes::from(out))
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// The page and asset routes. The page is rendered here, once: what it
/// carries (version, preloads, providers) is fixed for the process.
pub fn router(state: &SharedState) -> Router<SharedState> {
    let page = Arc::new(rendered_page(state));
    let mut r = Router::new().route("/assets/{version}/{*path}", get(asset));
    for route in PAGES {
        let page = Arc::clone(&page);
        r = r.route(route, get(move |headers: HeaderMap| index(page, headers)));
    }
    r
}

/// `index.html` with the boot JSON filled in, and its gzip twin.
fn rendered_page(state: &SharedState) -> Asset {
    let body = Bytes::from(assets().index.replace("%BOOT%", &boot_json(state)));
    Asset {
        mime: HeaderValue::from_static("text/html; charset=utf-8"),
        gzip: gzip(&body),
        body,
    }
}

/// What the page learns from the host before its first request.
fn boot_json(state: &SharedState) -> String {
    let providers: Vec<&str> = Provider::ALL
        .into_iter()
        .filter(|p| state.oauth.is_configured(*p))
        .map(Provider::as_str)
        .collect();
    let boot = serde_json::json!({
        "api": crate::http::API_PREFIX,
        "providers": providers,
        "samplers": crate::queue::job::SAMPLERS,
    });
    // Inside a <script type="application/json">: no `<` may close it.
    boot.to_string().replace('<', "\\u003c")
}

/// `file` as the client takes it: its gzip twin when there is one and
/// gzip is accepted, else the bytes as they are.
fn encoded(file: &Asset, headers: &HeaderMap) -> Response {
    let mut res = match &file.gzip {
        Some(z) if accepts_gzip(headers) => {
            let mut res = Body::from(z.clone()).into_response();
            res.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            res
        }
        _ => Body::from(file.body.clone()).into_response(),
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, file.mime.clone());
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

async fn index(page: Arc<Asset>, headers: HeaderMap) -> Response {
    let mut res = encoded(&page, &headers);
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

async fn asset(Path((version, path)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let a = assets();
    let Some(file) = a.files.get(&path).filter(|_| version == a.version) else {
        return ApiError::new(ErrorCode::NotFound).into_response();
    };
    let tag = format!("\"{}\"", a.version);
    let etag = HeaderValue::from_str(&tag).expect("hex is a header value");
    if if_none_match(&headers, &tag) {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        res.headers_mut().insert(header::ETAG, etag);
        return res;
    }
    let mut res = encoded(file, &headers);
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(header::ETAG, etag);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_imports_are_found_and_resolved() {
        let src = "import { h } from '../vendor/preact.js';\nimport './events.js';\n\
                   import{options as n}from\"./preact.js\";const p = () => import('./pages/x.js');\n\
                   const s = 'taken from a list'; import x from 'bare';";
        assert_eq!(
            static_imports(src),
            vec!["../vendor/preact.js", "./preact.js", "./events.js"]
        );
        assert_eq!(
            resolve("js/pages/a.js", "../ui.js").as_deref(),
            Some("js/ui.js")
        );
        assert_eq!(
            resolve("js/main.js", "./pages/a.js").as_deref(),
            Some("js/pages/a.js")
        );
        assert_eq!(resolve("main.js", "../../x.js"), None);
    }

    #[test]
    fn gzip_is_taken_unless_refused() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&m)
        };
        assert!(h("gzip, deflate, br"));
        assert!(h("br;q=1.0, GZIP;q=0.5"));
        assert!(h("*"));
        assert!(!h("br"));
        assert!(!h("gzip;q=0"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn every_module_the_page_names_is_embedded() {
        let a = assets();
        let main = format!("/assets/{}/js/main.js", a.version);
        assert!(
            a.index
                .contains(&format!("<script type=\"module\" src=\"{main}\">"))
        );
        let preloads = |m: &str| {
            a.index.contains(&format!(
                "<link rel=\"modulepreload\" href=\"/assets/{}/{m}\">",
                a.version
            ))
        };
        assert!(
            preloads("js/pages/auth.js")
                && preloads("vendor/preact.js")
                && preloads("vendor/hooks.js")
        );
        assert!(!preloads("js/pages/gallery.js"), "pages load when opened");
        assert!(!a.index.contains("%PRELOAD%") && !a.index.contains("%ASSETS%"));
        assert!(a.files.contains_key("js/main.js"));
        assert!(a.files.contains_key("vendor/preact.js"));
        assert_eq!(a.files["js/main.js"].mime, "text/javascript; charset=utf-8");
        assert_eq!(a.version.len(), 16);
    }
}
