//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pingvas Studio API",
        description = "Hosted AI image studio. Every answer is an envelope: \
            `{\"success\":true,\"data\":…}` or `{\"success\":false,\"error\":{code,message,details}}`; \
            error messages are Korean unless `Accept-Language: en`.",
    ),
    servers((url = "/api/v1")),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "인증 API"),
        (name = "users", description = "사용자 API"),
        (name = "models", description = "모델 API"),
        (name = "plugins", description = "플러그인 API: WASM nodes, workflows and billing adapters"),
        (name = "gallery", description = "갤러리 API: your images, stars, shares, uploads"),
        (name = "boards", description = "보드 API"),
        (name = "storage", description = "스토리지 API"),
        (name = "workflows", description = "워크플로우 API: graphs of inference steps and node plugins, run with POST /generate/workflow"),
        (name = "subscriptions", description = "구독 API: plans, checkout and plan changes through the billing adapter"),
        (name = "webhooks", description = "웹훅 API: signed events of the payment provider"),
        (name = "admin", description = "Operator endpoints (role admin)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every `$ref` in `v`.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    out.push(r);
                }
                o.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_schema_the_document_references_is_defined() {
        let (_, doc) = crate::http::api().split_for_parts();
        let v = serde_json::to_value(&doc).unwrap();
        let schemas = v["components"]["schemas"].as_object().unwrap();
        let mut all = Vec::new();
        refs(&v, &mut all);
        let missing: std::collections::BTreeSet<&str> = all
            .into_iter()
            .filter(|r| {
                r.strip_prefix("#/components/schemas/")
                    .is_none_or(|name| !schemas.contains_key(name))
            })
            .collect();
        assert!(missing.is_empty(), "undefined: {missing:?}");

        // Each diffusion request has its own schema, with its own fields.
        for (path, own) in [
            ("/generate/text-to-image", "TextToImage"),
            ("/generate/image-to-image", "ImageToImage"),
            ("/generate/inpaint", "Inpaint"),
        ] {
            let body = &v["paths"][path]["post"]["requestBody"]["content"]["application/json"];
            let name = body["schema"]["$ref"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap();
            assert_eq!(name, format!("{own}Request"));
            let mut inner = Vec::new();
            refs(&schemas[name], &mut inner);
            assert!(
                inner.contains(&format!("#/components/schemas/{own}").as_str()),
                "{path}: {inner:?}"
            );
        }
    }
}
