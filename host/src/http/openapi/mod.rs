//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use serde_json::{Map, Value, json};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::billing::plans::Catalogue as Plans;
use crate::models::ModelCatalogue;

mod rules;

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

/// The document as served: the handlers' annotations, completed with the
/// answers every route shares (the extractors' and middleware's), one
/// operation id per operation, the links a client follows from what it
/// created to where it reads it, and the catalogue's model names where a
/// request names a model.
pub fn served(doc: utoipa::openapi::OpenApi, models: &ModelCatalogue, plans: &Plans) -> Value {
    let mut v = serde_json::to_value(&doc).expect("the document serializes");
    complete(&mut v, models, plans);
    v
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn complete(doc: &mut Value, models: &ModelCatalogue, plans: &Plans) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            if let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) {
                op.insert("operationId".into(), operation_id(method, path).into());
                add_shared_answers(op);
            }
        }
    }
    for link in LINKS {
        link.add_to(paths);
    }
    rules::queries(paths);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        close_flattened(schemas);
        // The forms' readers refuse any other part.
        for form in ["UploadForm", "PublishForm"] {
            if let Some(schema) = schemas.get_mut(form) {
                schema["additionalProperties"] = false.into();
            }
        }
        rules::bodies(schemas, models, plans);
    }
}

/// The diffusion requests are their own fields and the common ones
/// (`#[serde(flatten)]`, an `allOf` in the annotations' document) and
/// refuse any other field: one object of both parts' properties, closed
/// with `additionalProperties: false`, says so.
fn close_flattened(schemas: &mut Map<String, Value>) {
    for name in [
        "TextToImageRequest",
        "ImageToImageRequest",
        "InpaintRequest",
    ] {
        let Some(parts) = schemas
            .get(name)
            .and_then(|s| s.get("allOf"))
            .and_then(Value::as_array)
            .cloned()
        else {
            continue;
        };
        let (mut properties, mut required) = (Map::new(), Vec::new());
        for part in &parts {
            let part = match part.get("$ref").and_then(Value::as_str) {
                Some(r) => r
                    .strip_prefix("#/components/schemas/")
                    .and_then(|n| schemas.get(n))
                    .cloned()
                    .unwrap_or_default(),
                None => part.clone(),
            };
            if let Some(p) = part.get("properties").and_then(Value::as_object) {
                properties.extend(p.clone());
            }
            if let Some(r) = part.get("required").and_then(Value::as_array) {
                required.extend(r.iter().cloned());
            }
        }
        let description = schemas[name].get("description").cloned();
        let mut closed = json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        });
        if let Some(d) = description {
            closed["description"] = d;
        }
        schemas.insert(name.into(), closed);
    }
}

/// `get` `/workflows/{workflow_id}/copy` → `getWorkflowsWorkflowIdCopy`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for word in path
        .split(['/', '{', '}', '-', '_'])
        .filter(|w| !w.is_empty())
    {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            id.extend(first.to_uppercase());
            id.push_str(chars.as_str());
        }
    }
    id
}

/// What any operation may answer besides its own outcomes.
fn add_shared_answers(op: &mut Map<String, Value>) {
    let secured = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter()
                .any(|r| r.as_object().is_some_and(|o| !o.is_empty()))
        });
    let has_body = op.contains_key("requestBody");
    let has_params = op
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let mut shared: Vec<(&str, &str)> = vec![(
        "429",
        "RATE_LIMITED: too many requests for the caller's tier \
         (`Retry-After`, `X-RateLimit-*`)",
    )];
    if secured {
        shared.push((
            "401",
            "UNAUTHORIZED, INVALID_TOKEN or TOKEN_EXPIRED: no valid bearer token",
        ));
    }
    if has_body || has_params {
        shared.push((
            "400",
            "VALIDATION_ERROR (a body that is not the schema's: `details.reason`) \
             or INVALID_PARAMETERS (a parameter out of range)",
        ));
    }
    if has_body {
        shared.push(("413", "PAYLOAD_TOO_LARGE: over the body limit"));
    }
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses are an object");
    for (status, description) in shared {
        responses.entry(status).or_insert_with(|| {
            json!({
                "description": description,
                "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/ErrorEnvelope" } } },
            })
        });
    }
}

/// An OpenAPI link: from an operation's answer to an operation that takes
/// the id it returned.
struct Link {
    from: (&'static str, &'static str, &'static str),
    name: &'static str,
    to: (&'static str, &'static str),
    parameter: &'static str,
    value: &'static str,
}

impl Link {
    fn add_to(&self, paths: &mut Map<String, Value>) {
        let (method, path, status) = self.from;
        let Some(response) = paths
            .get_mut(path)
            .and_then(|p| p.get_mut(method))
            .and_then(|op| op.pointer_mut(&format!("/responses/{status}")))
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        let links = response
            .entry("links")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("links are an object");
        links.insert(
            self.name.into(),
            json!({
                "operationId": operation_id(self.to.0, self.to.1),
                "parameters": { self.parameter: self.value },
            }),
        );
    }
}

/// Where each created thing can be read, changed and removed.
const LINKS: &[Link] = &{
    const fn link(
        from: (&'static str, &'static str, &'static str),
        name: &'static str,
        to: (&'static str, &'static str),
        parameter: &'static str,
        value: &'static str,
    ) -> Link {
        Link {
            from,
            name,
            to,
            parameter,
            value,
        }
    }
    const WORKFLOW: (&str, &str, &str) = ("post", "/workflows", "201");
    const BOARD: (&str, &str, &str) = ("post", "/boards", "201");
    const UPLOAD: (&str, &str, &str) = ("post", "/images/upload", "201");
    const PLUGIN: (&str, &str, &str) = ("post", "/plugins", "201");
    const JOB: (&str, &str, &str) = ("post", "/generate/text-to-image", "202");
    const ID: &str = "$response.body#/data/id";
    [
        link(
            WORKFLOW,
            "GetWorkflow",
            ("get", "/workflows/{workflow_id}"),
            "workflow_id",
            ID,
        ),
        link(
            WORKFLOW,
            "UpdateWorkflow",
            ("patch", "/workflows/{workflow_id}"),
            "workflow_id",
            ID,
        ),
        link(
            WORKFLOW,
            "CopyWorkflow",
            ("post", "/workflows/{workflow_id}/copy"),
            "workflow_id",
            ID,
        ),
        link(
            WORKFLOW,
            "DeleteWorkflow",
            ("delete", "/workflows/{workflow_id}"),
            "workflow_id",
            ID,
        ),
        link(
            BOARD,
            "UpdateBoard",
            ("patch", "/boards/{board_id}"),
            "board_id",
            ID,
        ),
        link(
            BOARD,
            "AddImagesToBoard",
            ("post", "/boards/{board_id}/images"),
            "board_id",
            ID,
        ),
        link(
            BOARD,
            "DeleteBoard",
            ("delete", "/boards/{board_id}"),
            "board_id",
            ID,
        ),
        link(
            UPLOAD,
            "GetImage",
            ("get", "/images/{image_id}"),
            "image_id",
            ID,
        ),
        link(
            UPLOAD,
            "GetImageCredentials",
            ("get", "/images/{image_id}/credentials"),
            "image_id",
            ID,
        ),
        link(
            UPLOAD,
            "StarImage",
            ("post", "/images/{image_id}/star"),
            "image_id",
            ID,
        ),
        link(
            UPLOAD,
            "ShareImage",
            ("post", "/images/{image_id}/share"),
            "image_id",
            ID,
        ),
        link(
            UPLOAD,
            "DeleteImage",
            ("delete", "/images/{image_id}"),
            "image_id",
            ID,
        ),
        link(
            PLUGIN,
            "GetPlugin",
            ("get", "/plugins/{name}"),
            "name",
            "$response.body#/data/name",
        ),
        link(
            PLUGIN,
            "GetPluginVersions",
            ("get", "/plugins/{name}/versions"),
            "name",
            "$response.body#/data/name",
        ),
        link(
            JOB,
            "GetJob",
            ("get", "/queue/items/{job_id}"),
            "job_id",
            "$response.body#/data/job_id",
        ),
        link(
            JOB,
            "CancelJob",
            ("delete", "/queue/items/{job_id}"),
            "job_id",
            "$response.body#/data/job_id",
        ),
    ]
};

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

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

    /// The document as `router` serves it, on the default catalogue.
    fn served() -> Value {
        let plans = crate::billing::plans::Catalogue::load(None).unwrap();
        let models = crate::models::ModelCatalogue::load(None, &plans).unwrap();
        let (_, doc) = crate::http::api().split_for_parts();
        super::served(doc, &models, &plans)
    }

    #[test]
    fn operations_have_unique_ids_shared_answers_and_working_links() {
        let v = served();
        let mut ids = std::collections::BTreeMap::new();
        for (path, item) in v["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(
                    ids.insert(id.clone(), (method.clone(), path.clone()))
                        .is_none(),
                    "{id} twice"
                );
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("429"), "{method} {path}");
                if op["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|r| r != &json!({})))
                {
                    assert!(responses.contains_key("401"), "{method} {path}");
                }
                if op.get("requestBody").is_some() {
                    assert!(
                        responses.contains_key("400") && responses.contains_key("413"),
                        "{method} {path}"
                    );
                }
                for response in responses.values() {
                    for link in response["links"]
                        .as_object()
                        .into_iter()
                        .flat_map(|l| l.values())
                    {
                        let target = link["operationId"].as_str().unwrap();
                        assert!(
                            v["paths"].as_object().unwrap().values().any(|item| item
                                .as_object()
                                .unwrap()
                                .values()
                                .any(|op| op["operationId"] == target)),
                            "{method} {path}: link to {target}"
                        );
                    }
                }
            }
        }
        assert_eq!(
            ids["getWorkflowsWorkflowId"],
            ("get".into(), "/workflows/{workflow_id}".into())
        );
        let links = &v["paths"]["/workflows"]["post"]["responses"]["201"]["links"];
        assert_eq!(
            links["GetWorkflow"]["operationId"],
            "getWorkflowsWorkflowId"
        );
        // A request that names a model lists the catalogue's.
        let request = &v["components"]["schemas"]["TextToImageRequest"]["properties"];
        let models = &request["model"]["enum"];
        assert!(
            models
                .as_array()
                .unwrap()
                .contains(&json!("stable-diffusion-1.5")),
            "{models}"
        );
        // The validators' ranges, from their constants.
        assert_eq!(request["steps"]["maximum"], json!(150));
        assert_eq!(request["width"]["multipleOf"], json!(8));
        let page = &v["paths"]["/images"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "per_page")
            .unwrap()["schema"];
        assert_eq!(page["maximum"], json!(50), "{page}");
    }

    #[test]
    fn every_schema_the_document_references_is_defined() {
        let v = served();
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
            // Closed, with its own fields and the common ones.
            let request = &schemas[name];
            assert_eq!(request["additionalProperties"], json!(false), "{path}");
            for field in schemas[own]["properties"].as_object().unwrap().keys() {
                assert!(
                    request["properties"].get(field).is_some(),
                    "{path}: {field}"
                );
            }
            assert!(request["properties"].get("steps").is_some(), "{path}");
            assert!(
                request["required"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("prompt")),
                "{path}"
            );
        }
    }
}
