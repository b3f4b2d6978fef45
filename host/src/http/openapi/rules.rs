//! What the validators hold requests to, stated in the document from the
//! same constants: lengths, ranges, patterns and the names a field may
//! take (models, samplers, plans, list filters).

use serde_json::{Map, Value, json};

use crate::billing::plans::Catalogue as Plans;
use crate::gallery::boards::{MAX_DESCRIPTION, MAX_IMAGES_PER_CALL, MAX_NAME};
use crate::gallery::images::MAX_SHARE_HOURS;
use crate::generation::validate::{
    BATCH_SIZE, CFG_SCALE, CONTROL_WEIGHT, LORA_WEIGHT, MAX_NODES, SEEDS, SIDE, SIDE_STEP, STEPS,
    STRENGTH, UPSCALE_FACTORS,
};
use crate::models::{MODEL_BASES, MODEL_TYPES, ModelCatalogue};
use crate::queue::job::{MAX_LORAS, MAX_PROMPT_CHARS, SAMPLERS};

/// Characters Rust's `char::is_whitespace` holds (what `trim` removes).
const SPACE: &str = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Characters `char::is_control` holds.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// Text that is not blank once trimmed.
fn not_blank() -> String {
    format!("[^{SPACE}]")
}

/// Text without control characters that is not blank once trimmed.
fn plain_not_blank() -> String {
    format!("^[^{CONTROL}]*[^{CONTROL}{SPACE}][^{CONTROL}]*$")
}

fn range_u32(r: &std::ops::RangeInclusive<u32>) -> Value {
    json!({ "minimum": r.start(), "maximum": r.end() })
}

fn range_f64(r: &std::ops::RangeInclusive<f64>) -> Value {
    json!({ "minimum": r.start(), "maximum": r.end() })
}

/// Merges `patch` into the property `field` of schema `schema`.
fn set(schemas: &mut Map<String, Value>, schema: &str, field: &str, patch: Value) {
    let Some(property) = schemas
        .get_mut(schema)
        .and_then(|s| s.pointer_mut(&format!("/properties/{field}")))
        .and_then(Value::as_object_mut)
    else {
        panic!("the document has no {schema}.{field}");
    };
    // A `$ref` takes no siblings in every reader: wrap it.
    if let Some(r) = property.remove("$ref") {
        property.insert("allOf".into(), json!([{ "$ref": r }]));
    }
    let Value::Object(mut patch) = patch else {
        return;
    };
    if let Some(Value::Array(values)) = patch.get_mut("enum") {
        if values.is_empty() {
            // An operator's catalogue without models of that kind: no
            // name is refused by the document (the server refuses all).
            patch.remove("enum");
        } else if property["type"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("null")))
        {
            // An optional field: `null` asks for the default.
            values.push(Value::Null);
        }
    }
    property.extend(patch);
}

/// The request bodies' fields.
pub(super) fn bodies(schemas: &mut Map<String, Value>, models: &ModelCatalogue, plans: &Plans) {
    let names = |kind: &str| -> Value {
        models
            .filter(Some(kind), None)
            .map(|m| Value::from(m.name.clone()))
            .collect::<Vec<_>>()
            .into()
    };
    let prompt = json!({ "minLength": 1, "maxLength": MAX_PROMPT_CHARS, "pattern": not_blank() });
    let side = json!({ "minimum": SIDE.start(), "maximum": SIDE.end(), "multipleOf": SIDE_STEP });
    let nodes = json!({ "maxItems": MAX_NODES });
    for request in [
        "TextToImageRequest",
        "ImageToImageRequest",
        "InpaintRequest",
    ] {
        set(schemas, request, "prompt", prompt.clone());
        set(schemas, request, "model", json!({ "enum": names("main") }));
        set(
            schemas,
            request,
            "negative_prompt",
            json!({ "maxLength": MAX_PROMPT_CHARS }),
        );
        set(schemas, request, "steps", range_u32(&STEPS));
        set(schemas, request, "cfg_scale", range_f64(&CFG_SCALE));
        set(schemas, request, "sampler", json!({ "enum": SAMPLERS }));
        set(
            schemas,
            request,
            "seed",
            json!({ "minimum": SEEDS.start(), "maximum": SEEDS.end() }),
        );
        set(schemas, request, "batch_size", range_u32(&BATCH_SIZE));
        set(schemas, request, "loras", json!({ "maxItems": MAX_LORAS }));
        set(schemas, request, "pre_nodes", nodes.clone());
        set(schemas, request, "post_nodes", nodes.clone());
    }
    for request in ["TextToImageRequest", "ImageToImageRequest"] {
        set(schemas, request, "width", side.clone());
        set(schemas, request, "height", side.clone());
    }
    set(
        schemas,
        "ImageToImageRequest",
        "strength",
        range_f64(&STRENGTH),
    );
    set(
        schemas,
        "LoraRequest",
        "name",
        json!({ "enum": names("lora") }),
    );
    set(schemas, "LoraRequest", "weight", range_f64(&LORA_WEIGHT));
    set(
        schemas,
        "ControlNetRequest",
        "model",
        json!({ "enum": names("controlnet") }),
    );
    set(
        schemas,
        "ControlNetRequest",
        "weight",
        range_f64(&CONTROL_WEIGHT),
    );
    set(
        schemas,
        "UpscaleRequest",
        "model",
        json!({ "enum": names("upscaler") }),
    );
    set(
        schemas,
        "UpscaleRequest",
        "scale",
        json!({ "enum": UPSCALE_FACTORS }),
    );
    set(schemas, "UpscaleRequest", "post_nodes", nodes);

    let board_name = json!({ "minLength": 1, "maxLength": MAX_NAME, "pattern": plain_not_blank() });
    for body in ["CreateBody", "UpdateBody"] {
        set(schemas, body, "name", board_name.clone());
        set(
            schemas,
            body,
            "description",
            json!({ "maxLength": MAX_DESCRIPTION }),
        );
    }
    set(
        schemas,
        "AddBody",
        "image_ids",
        json!({ "minItems": 1, "maxItems": MAX_IMAGES_PER_CALL }),
    );
    set(
        schemas,
        "ShareBody",
        "expires_in_hours",
        json!({ "minimum": 1, "maximum": MAX_SHARE_HOURS }),
    );

    let password = json!({
        "minLength": crate::auth::passwords::MIN_CHARS,
        "maxLength": crate::auth::passwords::MAX_CHARS,
    });
    set(schemas, "RegisterRequest", "password", password.clone());
    set(schemas, "PasswordResetConfirm", "new_password", password);
    set(
        schemas,
        "PatchMeRequest",
        "name",
        json!({ "minLength": 1, "maxLength": crate::auth::MAX_NAME_CHARS, "pattern": plain_not_blank() }),
    );
    set(
        schemas,
        "PatchMeRequest",
        "avatar_url",
        json!({
            "pattern": crate::users::AVATAR_URL_PATTERN,
            "maxLength": crate::users::MAX_AVATAR_URL_LEN,
        }),
    );
    let workflow_name = json!({ "minLength": 1, "maxLength": crate::workflows::MAX_NAME_CHARS, "pattern": not_blank() });
    for body in ["CreateWorkflow", "UpdateWorkflow"] {
        set(schemas, body, "name", workflow_name.clone());
        set(
            schemas,
            body,
            "description",
            json!({ "maxLength": crate::workflows::MAX_DESCRIPTION_CHARS }),
        );
        set(
            schemas,
            body,
            "tags",
            json!({ "maxItems": crate::workflows::MAX_TAGS }),
        );
    }
    // An image is base64 or the id of one of yours: never empty.
    for (schema, field) in [
        ("ImageToImageRequest", "source_image"),
        ("InpaintRequest", "source_image"),
        ("InpaintRequest", "mask_image"),
        ("ControlNetRequest", "image"),
        ("UpscaleRequest", "image"),
    ] {
        set(schemas, schema, field, json!({ "minLength": 1 }));
    }

    // Plans sold on both cycles (the free plan is not sold).
    let sold: Vec<Value> = plans
        .all()
        .into_iter()
        .filter(|p| {
            p.monthly_price.is_some_and(|x| x > 0.0) && p.yearly_price.is_some_and(|x| x > 0.0)
        })
        .map(|p| Value::from(p.name.clone()))
        .collect();
    set(schemas, "CheckoutBody", "plan", json!({ "enum": sold }));
    set(
        schemas,
        "CheckoutBody",
        "billing_cycle",
        json!({ "enum": ["monthly", "yearly"] }),
    );
    set(
        schemas,
        "ChangeBody",
        "target_plan",
        json!({ "enum": sold }),
    );
}

/// The query parameters: pages and list filters.
pub(super) fn queries(paths: &mut Map<String, Value>) {
    let statuses: Vec<&'static str> =
        <crate::store::jobs::JobStatus as strum::IntoEnumIterator>::iter()
            .map(<&'static str>::from)
            .collect();
    let filters: [(&str, &str, Value); 11] = [
        (
            "/images",
            "per_page",
            json!({ "minimum": 1, "maximum": crate::http::images::MAX_PER_PAGE }),
        ),
        (
            "/images",
            "sort",
            json!({ "enum": ["created_at", "file_size"] }),
        ),
        ("/images", "order", json!({ "enum": ["asc", "desc"] })),
        ("/models", "type", json!({ "enum": MODEL_TYPES })),
        ("/models", "base", json!({ "enum": MODEL_BASES })),
        (
            "/plugins",
            "kind",
            json!({ "enum": ["", "node", "workflow", "billing"] }),
        ),
        (
            "/queue/items",
            "status",
            json!({ "enum": std::iter::once("").chain(statuses).collect::<Vec<_>>() }),
        ),
        (
            "/users/me/usage",
            "period",
            json!({ "enum": ["", "day", "week", "month", "30d"] }),
        ),
        (
            "/users/me/credits",
            "type",
            json!({ "enum": std::iter::once("").chain(crate::billing::ledger::TxKind::ALL.map(|k| k.as_str())).collect::<Vec<_>>() }),
        ),
        ("/workflows", "scope", json!({ "enum": ["all", "mine"] })),
        (
            "/admin/billing/events",
            "status",
            json!({ "enum": ["received", "applied", "failed"] }),
        ),
    ];
    for (path, item) in paths.iter_mut() {
        let Some(get) = item.get_mut("get") else {
            continue;
        };
        for param in get
            .get_mut("parameters")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let name = param["name"].as_str().unwrap_or_default().to_owned();
            let patch = match name.as_str() {
                "page" => Some(json!({ "minimum": 1, "maximum": crate::http::response::MAX_PAGE })),
                "per_page" => {
                    Some(json!({ "minimum": 1, "maximum": crate::http::response::MAX_PER_PAGE }))
                }
                _ => None,
            };
            let own = filters
                .iter()
                .find(|(p, n, _)| p == path && *n == name)
                .map(|(_, _, v)| v.clone());
            for patch in [patch, own].into_iter().flatten() {
                if let (Some(schema), Value::Object(p)) = (
                    param.get_mut("schema").and_then(Value::as_object_mut),
                    patch,
                ) {
                    // Optional parameters are documented as `[type, null]`;
                    // a query string has no null.
                    if let Some(Value::Array(types)) = schema.get_mut("type") {
                        types.retain(|t| t != "null");
                    }
                    // `int32` would bound them below what the server reads.
                    schema.remove("format");
                    schema.extend(p);
                }
            }
        }
    }
}
