//! Helpers the billing adapters share, free of any WIT bindings so each
//! adapter keeps its own world: HMAC checks in constant time, header and
//! JSON lookups, plan ↔ provider-id mapping through the operator's
//! settings, RFC 3339 times, and what a provider's invoice pays.

use chrono::{DateTime, Months, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// True when `signature_hex` is the HMAC-SHA256 of `message` under
/// `secret` (compared in constant time).
pub fn hmac_sha256_matches(secret: &[u8], message: &[&[u8]], signature_hex: &str) -> bool {
    let Ok(expected) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    for part in message {
        mac.update(part);
    }
    mac.verify_slice(&expected).is_ok()
}

/// HMAC-SHA256 of `message` under `secret`, lowercase hex (for tests and
/// benchmarks that sign like a provider).
pub fn hmac_sha256_hex(secret: &[u8], message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The first header named `name` (any case).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A JSON value as a string: strings as they are, numbers written out.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The host's `(plan, cycle)` whose setting `<prefix>.<plan>.<cycle>` is
/// `id` (`variant.pro.monthly = "149091"`); `get` reads a setting.
pub fn plan_of(
    get: impl Fn(&str) -> Option<String>,
    prefix: &str,
    id: &str,
) -> Option<(String, String)> {
    let plans = get("plans")?;
    for plan in plans.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        for cycle in ["monthly", "yearly"] {
            if get(&format!("{prefix}.{plan}.{cycle}")).as_deref() == Some(id) {
                return Some((plan.to_owned(), cycle.to_owned()));
            }
        }
    }
    None
}

/// Parses any RFC 3339 time (LS writes microseconds and `Z`).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Unix seconds as RFC 3339.
pub fn unix_rfc3339(secs: i64) -> Option<String> {
    Utc.timestamp_opt(secs, 0).single().map(rfc3339)
}

/// The start of a period that ends at `end`, one `cycle` long.
pub fn period_start(end: DateTime<Utc>, cycle: &str) -> Option<DateTime<Utc>> {
    let months = if cycle == "yearly" { 12 } else { 1 };
    end.checked_sub_months(Months::new(months))
}

/// What a paid invoice pays for, read from the provider's billing reason
/// (each adapter maps it to its world's `invoice-reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoicePays {
    /// A period from its start: a first invoice or a renewal.
    PeriodStart,
    /// A plan change within the period, prorated.
    PlanChange,
    /// Anything else: a manual invoice, a usage threshold, a reason not
    /// known (never taken for a period: that would grant a month).
    Other,
}

impl InvoicePays {
    /// Stripe's `invoice.billing_reason` (API versions from 2018-10-31:
    /// older ones call a first invoice `subscription_update`).
    pub fn stripe(billing_reason: Option<&str>) -> Self {
        match billing_reason {
            Some("subscription_create" | "subscription_cycle") => InvoicePays::PeriodStart,
            Some("subscription_update") => InvoicePays::PlanChange,
            _ => InvoicePays::Other,
        }
    }

    /// Lemon Squeezy's `subscription-invoices` `billing_reason`.
    pub fn lemon_squeezy(billing_reason: Option<&str>) -> Self {
        match billing_reason {
            Some("initial" | "renewal") => InvoicePays::PeriodStart,
            Some("updated") => InvoicePays::PlanChange,
            _ => InvoicePays::Other,
        }
    }
}

/// Seconds since the Unix epoch, from the WASI clock.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_only_its_own_signature() {
        let sig = hmac_sha256_hex(b"secret", b"body");
        assert!(hmac_sha256_matches(b"secret", &[b"bo", b"dy"], &sig));
        assert!(!hmac_sha256_matches(b"secret!", &[b"body"], &sig));
        assert!(!hmac_sha256_matches(b"secret", &[b"body "], &sig));
        assert!(!hmac_sha256_matches(b"secret", &[b"body"], "zz"));
        assert!(!hmac_sha256_matches(b"secret", &[b"body"], &sig[..62]));
    }

    #[test]
    fn plans_map_back_from_provider_ids() {
        let get = |k: &str| match k {
            "plans" => Some("free,pro,studio".into()),
            "variant.pro.yearly" => Some("22".into()),
            "variant.studio.monthly" => Some("33".into()),
            _ => None,
        };
        assert_eq!(
            plan_of(get, "variant", "22"),
            Some(("pro".into(), "yearly".into()))
        );
        assert_eq!(
            plan_of(get, "variant", "33"),
            Some(("studio".into(), "monthly".into()))
        );
        assert_eq!(plan_of(get, "variant", "44"), None);
    }

    #[test]
    fn invoices_pay_a_period_a_plan_change_or_nothing() {
        use InvoicePays::*;
        for (reason, pays) in [
            ("subscription_create", PeriodStart),
            ("subscription_cycle", PeriodStart),
            ("subscription_update", PlanChange),
            ("manual", Other),
            ("subscription_threshold", Other),
            ("subscription", Other),
            ("upcoming", Other),
        ] {
            assert_eq!(InvoicePays::stripe(Some(reason)), pays, "{reason}");
        }
        for (reason, pays) in [
            ("initial", PeriodStart),
            ("renewal", PeriodStart),
            ("updated", PlanChange),
            ("refund", Other),
        ] {
            assert_eq!(InvoicePays::lemon_squeezy(Some(reason)), pays, "{reason}");
        }
        assert_eq!(InvoicePays::stripe(None), Other);
        assert_eq!(InvoicePays::lemon_squeezy(None), Other);
        // One provider's words mean nothing to the other.
        assert_eq!(InvoicePays::stripe(Some("renewal")), Other);
        assert_eq!(
            InvoicePays::lemon_squeezy(Some("subscription_cycle")),
            Other
        );
    }

    #[test]
    fn times() {
        let t = parse_time("2023-01-24T12:43:48.000000Z").unwrap();
        assert_eq!(rfc3339(t), "2023-01-24T12:43:48Z");
        assert_eq!(
            rfc3339(period_start(t, "yearly").unwrap()),
            "2022-01-24T12:43:48Z"
        );
        assert_eq!(unix_rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
    }
}
