//! Webhook bodies through both billing adapters.

#[allow(unused_imports)]
use super::*;

/// A payment provider with a bundled adapter component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    LemonSqueezy,
    Stripe,
}

impl Provider {
    /// `billing_provider`, and the path of `/webhooks/<provider>`.
    pub fn name(self) -> &'static str {
        match self {
            Provider::LemonSqueezy => "lemon-squeezy",
            Provider::Stripe => "stripe",
        }
    }

    /// The component's file, as `scripts/test` builds it.
    pub fn wasm_file(self) -> &'static str {
        match self {
            Provider::LemonSqueezy => "lemon_squeezy.wasm",
            Provider::Stripe => "stripe.wasm",
        }
    }

    /// The webhook signing secret the adapter is configured with.
    fn secret(self) -> &'static str {
        match self {
            Provider::LemonSqueezy => "fuzz-ls-signing-secret",
            Provider::Stripe => "whsec_fuzz_signing_secret",
        }
    }

    /// `[billing_settings]`, as the black-box tests configure them
    /// (`tests/src/billing.rs`): plans map to these variants and prices.
    fn settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Provider::LemonSqueezy => &[
                ("store_id", "12345"),
                ("api_base", "http://127.0.0.1:9"),
                ("redirect_url", "https://studio.example/billing/done"),
                ("variant.starter.monthly", "149090"),
                ("variant.pro.monthly", "149091"),
                ("variant.pro.yearly", "149092"),
                ("variant.studio.monthly", "149093"),
            ],
            Provider::Stripe => &[
                ("api_base", "http://127.0.0.1:9"),
                ("success_url", "https://studio.example/billing/done"),
                ("price.pro.monthly", "price_pro_monthly"),
                ("price.studio.monthly", "price_studio_monthly"),
            ],
        }
    }
}

/// Where the adapter component of `provider` is: `$PINGVAS_PLUGIN_DIR`,
/// else `$CARGO_TARGET_DIR/wasm32-wasip2/release`, else the workspace's
/// `target/wasm32-wasip2/release` (where `scripts/test` builds it), else
/// `plugins/target/wasm32-wasip2/release` (a plain `cargo build` of the
/// plugins workspace). `None` when none has the file.
pub fn adapter_wasm(provider: Provider) -> Option<PathBuf> {
    let root = workspace_root();
    std::env::var_os("PINGVAS_PLUGIN_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            std::env::var_os("CARGO_TARGET_DIR")
                .map(|t| PathBuf::from(t).join("wasm32-wasip2/release")),
        )
        .chain([
            root.join("target/wasm32-wasip2/release"),
            root.join("plugins/target/wasm32-wasip2/release"),
        ])
        .map(|dir| dir.join(provider.wasm_file()))
        .find(|p| p.is_file())
}

/// The provider's adapter, loaded once as the host loads it
/// (`Adapters::start` from a configuration naming it).
pub(crate) fn adapters(provider: Provider) -> &'static Adapters {
    static LEMON_SQUEEZY: OnceLock<Adapters> = OnceLock::new();
    static STRIPE: OnceLock<Adapters> = OnceLock::new();
    let cell = match provider {
        Provider::LemonSqueezy => &LEMON_SQUEEZY,
        Provider::Stripe => &STRIPE,
    };
    cell.get_or_init(|| {
        let wasm = adapter_wasm(provider).unwrap_or_else(|| {
            panic!(
                "{} not found: build the plugins (`cargo build --manifest-path plugins/Cargo.toml \
                 --target wasm32-wasip2 --release`, or scripts/test) or set PINGVAS_PLUGIN_DIR",
                provider.wasm_file()
            )
        });
        let mut config = Config {
            data_dir: scratch(provider.name()),
            billing_adapter: Some(wasm),
            billing_provider: provider.name().into(),
            billing_api_key: Some("fuzz-api-key".to_owned().into()),
            billing_webhook_secret: Some(provider.secret().to_owned().into()),
            ..Config::default()
        };
        for (key, value) in provider.settings() {
            config
                .billing_settings
                .insert((*key).to_owned(), (*value).to_owned());
        }
        let plans: Vec<String> = Catalogue::builtin()
            .all()
            .iter()
            .map(|p| p.name.clone())
            .collect();
        runtime().block_on(async {
            let plugins = PluginRuntime::new(
                &EngineOptions {
                    pool_instances: 4,
                    ..EngineOptions::default()
                },
                None,
            )
            .expect("the plugin runtime");
            Adapters::start(Arc::new(plugins), plans, &config)
                .await
                .expect("the billing adapter loads")
        })
    })
}

/// How a delivery is signed; the first input byte chooses (see
/// `split_selector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signing {
    /// As the provider signs.
    Valid,
    /// Lemon Squeezy: `sha256=<hex>`, as its spec writes it.
    Prefixed,
    /// Upper-case hex, and an `X-Event-Name` header (Lemon Squeezy).
    Upper,
    /// Stripe: a `v0` and a stale `v1` before the right `v1` (a secret roll).
    Rolled,
    /// Stripe: a timestamp an hour ahead (only old ones are refused).
    Future,
    /// Signed with another secret.
    WrongKey,
    /// No signature header.
    Missing,
    /// A header of printable bytes taken from the body.
    Garbage,
    /// Stripe: signed right, an hour ago (a replay).
    Stale,
}

impl Signing {
    /// Whether the adapter must take the delivery's signature.
    fn verifies(self) -> bool {
        matches!(
            self,
            Signing::Valid | Signing::Prefixed | Signing::Upper | Signing::Rolled | Signing::Future
        )
    }
}

/// The body and the signing mode: an input that starts like JSON (`{`,
/// `[`, whitespace) or is empty is the body, validly signed, so the
/// providers' raw example bodies are seeds as they are; otherwise the
/// first byte picks the mode and the rest is the body.
pub(crate) fn split_selector(data: &[u8]) -> (Option<u8>, &[u8]) {
    match data.first() {
        None => (None, data),
        Some(b) if b"{[ \t\r\n".contains(b) => (None, data),
        Some(&b) => (Some(b), &data[1..]),
    }
}

pub(crate) fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Printable ASCII from the body: what a forged header could carry (the
/// host hands over only header values that are visible ASCII).
pub(crate) fn garbage(body: &[u8]) -> String {
    body.iter()
        .take(96)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The delivery's headers as `http::webhooks::header_list` hands them over
/// (names lower-case).
fn signed_headers(
    provider: Provider,
    selector: Option<u8>,
    body: &[u8],
) -> (Signing, Vec<(String, String)>) {
    let secret = provider.secret().as_bytes();
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let signing = match provider {
        Provider::LemonSqueezy => match selector.map(|b| b % 8) {
            Some(0) => Signing::WrongKey,
            Some(1) => Signing::Missing,
            Some(2) => Signing::Garbage,
            Some(3) => Signing::Prefixed,
            Some(4) => Signing::Upper,
            _ => Signing::Valid,
        },
        Provider::Stripe => match selector.map(|b| b % 8) {
            Some(0) => Signing::WrongKey,
            Some(1) => Signing::Missing,
            Some(2) => Signing::Garbage,
            Some(3) => Signing::Stale,
            Some(4) => Signing::Rolled,
            Some(5) => Signing::Future,
            _ => Signing::Valid,
        },
    };
    let value = match (provider, signing) {
        (_, Signing::Missing) => None,
        (_, Signing::Garbage) => Some(garbage(body)),
        (Provider::LemonSqueezy, s) => {
            let key: &[u8] = if s == Signing::WrongKey {
                b"not-the-signing-secret"
            } else {
                secret
            };
            let sig = hmac_hex(key, &[body]);
            Some(match s {
                Signing::Prefixed => format!("sha256={sig}"),
                Signing::Upper => {
                    headers.push(("x-event-name".into(), "subscription_updated".into()));
                    sig.to_uppercase()
                }
                _ => sig,
            })
        }
        (Provider::Stripe, s) => {
            let now = unix_now();
            let t = match s {
                Signing::Stale => now - 3600,
                Signing::Future => now + 3600,
                _ => now,
            }
            .to_string();
            let key: &[u8] = if s == Signing::WrongKey {
                b"whsec_not_the_signing_secret"
            } else {
                secret
            };
            let v1 = hmac_hex(key, &[t.as_bytes(), b".", body]);
            Some(if s == Signing::Rolled {
                let old = hmac_hex(b"whsec_the_rolled_secret", &[t.as_bytes(), b".", body]);
                format!("t={t},v0={old},v1={old},v1={v1}")
            } else {
                format!("t={t},v1={v1}")
            })
        }
    };
    if let Some(v) = value {
        let name = match provider {
            Provider::LemonSqueezy => "x-signature",
            Provider::Stripe => "stripe-signature",
        };
        headers.push((name.to_owned(), v));
    }
    (signing, headers)
}

/// One delivery to `/webhooks/<provider>`, as `Billing::receive` takes it
/// up to storing: the size cap, the adapters that may verify it, the
/// verify-and-normalise call, the event read from the adapter's answer,
/// and its JSON as stored.
pub(crate) fn webhook(provider: Provider, data: &[u8]) {
    let (selector, body) = split_selector(data);
    if body.len() > MAX_WEBHOOK_BYTES {
        return;
    }
    let (signing, headers) = signed_headers(provider, selector, body);
    let adapters = adapters(provider);
    runtime().block_on(async {
        let candidates = adapters.for_webhook(provider.name());
        assert!(
            !candidates.is_empty(),
            "the configured adapter takes {}",
            provider.name()
        );
        for adapter in &candidates {
            let hook = Webhook {
                headers: headers.clone(),
                body: body.to_vec(),
            };
            match adapters.call(adapter, BillingCall::Webhook(hook)).await {
                Ok(BillingAnswer::Event(raw)) => {
                    assert!(
                        signing.verifies(),
                        "a delivery signed {signing:?} was taken as verified: {raw:?}"
                    );
                    if let Ok(event) = Event::try_from(raw) {
                        // `Billing::record` stores it as JSON (`expect`s
                        // that it serialises); `drain` reads it back.
                        let stored = serde_json::to_string(&event).expect("an event serialises");
                        let back: Event = serde_json::from_str(&stored).unwrap_or_else(|e| {
                            panic!("a stored event does not read back: {e}: {stored}")
                        });
                        assert_eq!(back, event, "a stored event reads back changed");
                    }
                    return;
                }
                Ok(other) => panic!("a webhook call answered {other:?}"),
                Err(WebhookError::Signature(e)) => {
                    assert!(
                        !signing.verifies(),
                        "a delivery signed {signing:?} was refused as badly signed: {e}"
                    );
                }
                // `receive` answers 503 (the provider retries).
                Err(WebhookError::Adapter(_)) => return,
            }
        }
    });
}

/// Fuzz target `webhook_lemonsqueezy`.
pub fn webhook_lemonsqueezy(data: &[u8]) {
    webhook(Provider::LemonSqueezy, data);
}

/// Fuzz target `webhook_stripe`.
pub fn webhook_stripe(data: &[u8]) {
    webhook(Provider::Stripe, data);
}

// ---------------------------------------------------------------------------
// 2. Workflow definitions.
