//! `POST /images/upload` through the whole router.

#[allow(unused_imports)]
use super::*;

/// The form's boundary: the input's first line when it is a `--<boundary>`
/// line of characters that need no quoting in the header, else `X`.
pub(crate) fn boundary_of(body: &[u8]) -> String {
    body.strip_prefix(b"--")
        .and_then(|rest| rest.split(|b| *b == b'\r' || *b == b'\n').next())
        .filter(|b| {
            (1..=70).contains(&b.len())
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"'+_-.".contains(c))
        })
        .map_or_else(
            || "X".to_owned(),
            |b| String::from_utf8_lossy(b).into_owned(),
        )
}

/// Fuzz target `multipart_upload`: the input as the body of `POST
/// /api/v1/images/upload` (`multipart/form-data`), through the server's
/// router: bearer auth, the `Multipart` extractor, the handler's
/// `file_field`, `Gallery::upload` (format sniffing, the decode gate's
/// header check, decode and re-encode, storage). An image it stores is
/// deleted again. Any 5xx answer is a finding.
pub fn multipart_upload(data: &[u8]) {
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use tower::ServiceExt;

    let app = app();
    let token = app.state.auth.access.issue(&app.user_id);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/images/upload")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={}", boundary_of(data)),
        )
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(data.to_vec()))
        .expect("a request");
    let router = app.router.clone();
    runtime().block_on(async {
        let response = router.oneshot(request).await.expect("the router answers");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("the answer's body");
        assert!(
            !status.is_server_error(),
            "an upload answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        if status == StatusCode::CREATED {
            let v: Value = serde_json::from_slice(&body).expect("a JSON answer");
            let image = &v["data"];
            let max = i64::from(app.state.config.upload_max_side);
            for side in ["width", "height"] {
                let n = image[side].as_i64().unwrap_or(-1);
                assert!(
                    (1..=max).contains(&n),
                    "an upload stored with {side} {n}: {v}"
                );
            }
            let id = image["id"].as_str().expect("the stored image's id");
            app.state
                .gallery
                .delete(&app.user_id, id)
                .await
                .unwrap_or_else(|e| panic!("deleting upload {id}: {e}"));
        }
    });
}
