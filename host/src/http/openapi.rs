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
