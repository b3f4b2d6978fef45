//! Generation request bodies through the validator.

#[allow(unused_imports)]
use super::*;

pub(crate) struct App {
    pub(crate) state: SharedState,
    /// `http::router(state)`: the public listener's routes and layers.
    pub(crate) router: axum::Router,
    /// A registered user (tier `free`).
    pub(crate) user_id: String,
}

/// The app state, built once as the server builds it (no worker, no rate
/// limits, no web UI), with one registered user.
pub(crate) fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let config = Config {
            data_dir: scratch("app"),
            worker_enabled: false,
            rate_limits_enabled: false,
            web_ui: false,
            plugin_pool_instances: 4,
            ..Config::default()
        };
        runtime().block_on(async {
            let state = AppState::build(config).await.expect("the app state");
            let user = state
                .auth
                .register(
                    "fuzz@example.com",
                    "SecurePass123!",
                    None,
                    Default::default(),
                )
                .await
                .expect("a user registers");
            let router = pingvas_host::http::router(state.clone());
            App {
                state,
                router,
                user_id: user.id,
            }
        })
    })
}

/// A validation that fails inside (database, blocking pool) is a 500 for
/// the user's input: a finding.
pub(crate) fn not_internal(e: &GenerationError) {
    if let GenerationError::Internal(inner) = e {
        panic!("validation failed inside: {inner:#}");
    }
}

/// The spec with its floating-point fields set to 0 (they are compared
/// apart, within rounding: `f32` through JSON text and back).
pub(crate) fn without_floats(mut s: JobSpec) -> (JobSpec, Vec<f32>) {
    let mut floats = vec![std::mem::take(&mut s.generation.cfg_scale)];
    floats.extend(s.strength.as_mut().map(std::mem::take));
    for l in &mut s.generation.loras {
        floats.push(std::mem::take(&mut l.weight));
    }
    if let Some(c) = &mut s.controlnet {
        floats.push(std::mem::take(&mut c.weight));
    }
    (s, floats)
}

/// What happens to a validated request before it is queued
/// (`Generator::submit_prepared`, less the queue and the stores): its spec
/// is priced and stored as JSON, and its uploads are decoded for real.
async fn after_validation(g: &Generator, p: Prepared) {
    let spec = &p.spec;
    let model = g.models.get(spec.model()).unwrap_or_else(|| {
        panic!(
            "a validated job names {}, which the catalogue lacks",
            spec.model()
        )
    });
    let credits = estimate_credits(spec, model, &g.models);
    assert!(credits >= 0, "a job is estimated at {credits} credits");
    let _ = (spec.public_params(), spec.input_keys());
    let stored = serde_json::to_string(spec).expect("a job spec serialises");
    let back: JobSpec = serde_json::from_str(&stored)
        .unwrap_or_else(|e| panic!("a stored job spec does not read back: {e}: {stored}"));
    let (back, back_floats) = without_floats(back);
    let (spec_now, floats) = without_floats(spec.clone());
    assert_eq!(back, spec_now, "a stored job spec reads back changed");
    assert_eq!(back_floats.len(), floats.len());
    for (a, b) in back_floats.iter().zip(&floats) {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            "a stored job spec reads back a weight changed: {b} → {a}"
        );
    }
    if let Err(e) = inputs::decode_all(&p.inputs, &g.decoding).await {
        not_internal(&e);
    }
}

/// Fuzz target `generation_request`: one JSON body through the validation
/// of every `POST /generate/*` kind (`Generator::text_to_image`,
/// `image_to_image`, `upscale`, `inpaint`: `request::check_fields`,
/// `parse_with_common`, the field checks, image probing), then what comes
/// after validation (pricing, the stored spec, decoding the uploads). The
/// caller's tier is `free` or `enterprise` (by the input's length).
pub fn generation_request(data: &[u8]) {
    // `http::generate::submit`: a body that is not JSON is refused first.
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let app = app();
    let caller = Caller {
        id: app.user_id.clone(),
        tier: (if data.len().is_multiple_of(2) {
            "free"
        } else {
            "enterprise"
        })
        .into(),
        role: "user".into(),
        email_verified: true,
    };
    let g: &Generator = &app.state.generator;
    runtime().block_on(async {
        let results = [
            g.text_to_image(&caller, body.clone()).await,
            g.image_to_image(&caller, body.clone()).await,
            g.upscale(&caller, body.clone()).await,
            g.inpaint(&caller, body).await,
        ];
        for r in results {
            match r {
                Ok(prepared) => after_validation(g, prepared).await,
                Err(e) => not_internal(&e),
            }
        }
    });
}

// ---------------------------------------------------------------------------
// 5. PNG chunks and content credentials.
