//! Signed, expiring links to stored files (`/api/v1/files/<key>?expires=…
//! &sig=…`), so an `<img>` tag can show a private image without a bearer
//! token, the way S3 presigned URLs work. HMAC-SHA256 over key and expiry.
//!
//! Expiry times are rounded up to a window (a twelfth of the lifetime, at
//! least a minute), so a file's link stays the same for that long: browsers
//! keep cached thumbnails across list reloads, and a rendered list page can
//! be reused until the window turns.

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How long a link stays valid unless configured (`file_link_ttl_secs`).
pub const LINK_TTL_SECS: i64 = 6 * 3600;

#[derive(Clone)]
pub struct FileLinks {
    /// Keyed once: each link clones it rather than re-deriving the pads.
    mac: HmacSha256,
    ttl_secs: i64,
    window_secs: i64,
    /// Prepended to the path (`https://studio.example`), or empty for links
    /// relative to the API host.
    base: String,
}

impl std::fmt::Debug for FileLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLinks")
            .field("base", &self.base)
            .finish()
    }
}

impl FileLinks {
    /// `secret` is the server's signing secret; a distinct key is derived
    /// from it so file links and tokens never share one.
    pub fn new(secret: &[u8], base: Option<&str>) -> Self {
        Self::with_ttl(secret, base, LINK_TTL_SECS)
    }

    /// Links valid for `ttl_secs` (at least a minute).
    pub fn with_ttl(secret: &[u8], base: Option<&str>, ttl_secs: i64) -> Self {
        let mut derive = HmacSha256::new_from_slice(secret).expect("any key length");
        derive.update(b"pingvas file links v1");
        let key = derive.finalize().into_bytes();
        let ttl_secs = ttl_secs.max(60);
        Self {
            mac: HmacSha256::new_from_slice(&key).expect("any key length"),
            ttl_secs,
            window_secs: (ttl_secs / 12).max(60),
            base: base.unwrap_or("").trim_end_matches('/').to_owned(),
        }
    }

    fn mac(&self, blob_key: &str, expires: i64) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(blob_key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The expiry links made now carry: at least the lifetime away, rounded
    /// up to the window. Equal for every link made in one window.
    pub fn expiry_now(&self) -> i64 {
        let at_least = Utc::now().timestamp() + self.ttl_secs;
        (at_least + self.window_secs - 1).div_euclid(self.window_secs) * self.window_secs
    }

    /// A link to `blob_key`, valid for the configured lifetime.
    pub fn url(&self, blob_key: &str) -> String {
        self.url_until(blob_key, self.expiry_now())
    }

    /// A link to `blob_key` that expires at `expires` (unix seconds).
    pub fn url_until(&self, blob_key: &str, expires: i64) -> String {
        let sig = hex::encode(self.mac(blob_key, expires).finalize().into_bytes());
        format!(
            "{}/api/v1/files/{blob_key}?expires={expires}&sig={sig}",
            self.base
        )
    }

    /// The public link of a shared image (no signature: the token is the
    /// secret, and revoking it ends the link).
    pub fn shared_url(&self, token: &str) -> String {
        format!("{}/api/v1/shared/{token}", self.base)
    }

    /// True when `sig` signs `blob_key` until `expires` and that is not past.
    pub fn verify(&self, blob_key: &str, expires: i64, sig: &str) -> bool {
        if expires < Utc::now().timestamp() {
            return false;
        }
        let Ok(sig) = hex::decode(sig) else {
            return false;
        };
        self.mac(blob_key, expires).verify_slice(&sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, i64, String) {
        let (path, query) = url.split_once('?').unwrap();
        let key = path.strip_prefix("/api/v1/files/").unwrap().to_owned();
        let mut exp = 0;
        let mut sig = String::new();
        for kv in query.split('&') {
            match kv.split_once('=').unwrap() {
                ("expires", v) => exp = v.parse().unwrap(),
                ("sig", v) => sig = v.to_owned(),
                _ => {}
            }
        }
        (key, exp, sig)
    }

    #[test]
    fn signed_links_verify_and_tampering_fails() {
        let links = FileLinks::new(b"0123456789abcdef0123456789abcdef", None);
        let (key, exp, sig) = parts(&links.url("images/u/a.png"));
        assert!(links.verify(&key, exp, &sig));
        assert!(!links.verify("images/u/b.png", exp, &sig));
        assert!(!links.verify(&key, exp + 1, &sig));
        assert!(!links.verify(&key, exp, "00"));
        assert!(!links.verify(&key, Utc::now().timestamp() - 1, &sig));
        let other = FileLinks::new(b"another secret another secret 123", None);
        assert!(!other.verify(&key, exp, &sig));
    }

    #[test]
    fn links_of_one_window_are_equal_and_live_at_least_the_lifetime() {
        let links = FileLinks::with_ttl(b"0123456789abcdef0123456789abcdef", None, 3600);
        let now = Utc::now().timestamp();
        let a = links.url("images/u/a.png");
        let (_, exp, _) = parts(&a);
        assert_eq!(exp % 300, 0, "rounded to the 5-minute window");
        assert!(exp >= now + 3600 && exp < now + 3600 + 300 + 2);
        // Within a window the link is the same (unless the window turned
        // between the two calls, which the expiries show).
        let b = links.url("images/u/a.png");
        assert!(a == b || parts(&b).1 > exp);
    }
}
