//! Rendered `GET /images` pages, kept so a user paging through a large
//! gallery costs one lookup instead of a count, an index walk, a hundred
//! signed links and a serialisation.
//!
//! A page is filed under the user's gallery revision (`crate::revisions`)
//! and the expiry its links carry (`FileLinks::expiry_now`); either moving
//! on makes it a miss, so a page is never served after a write the process
//! committed, nor with links older than a window. Memory is bounded by the
//! bytes kept (least recently and least often used go first).

use axum::body::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::revisions::Revision;

/// Whose page, and which (the query, in one canonical form).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub user_id: String,
    pub query: String,
}

#[derive(Clone)]
struct Rendered {
    revision: Revision,
    expires: i64,
    body: Bytes,
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<PageKey, Rendered> for ByBytes {
    fn weight(&self, key: &PageKey, page: &Rendered) -> u64 {
        (key.user_id.len() + key.query.len() + page.body.len()) as u64
    }
}

pub struct PageCache {
    pages: Option<Cache<PageKey, Rendered, ByBytes>>,
}

impl PageCache {
    /// Keeps up to `capacity_bytes` of pages; 0 keeps none.
    pub fn new(capacity_bytes: u64) -> Self {
        // ~30 KB a page of 50 images.
        let estimated = (capacity_bytes / 30_000).max(16) as usize;
        Self {
            pages: (capacity_bytes > 0)
                .then(|| Cache::with_weighter(estimated, capacity_bytes, ByBytes)),
        }
    }

    /// The page, if it was rendered under this revision and link expiry.
    pub fn get(&self, key: &PageKey, revision: Revision, expires: i64) -> Option<Bytes> {
        let page = self.pages.as_ref()?.get(key)?;
        (page.revision == revision && page.expires == expires).then_some(page.body)
    }

    pub fn put(&self, key: PageKey, revision: Revision, expires: i64, body: Bytes) {
        if let Some(pages) = &self.pages {
            pages.insert(
                key,
                Rendered {
                    revision,
                    expires,
                    body,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str) -> PageKey {
        PageKey {
            user_id: user.into(),
            query: "page=1".into(),
        }
    }

    fn revision() -> Revision {
        crate::revisions::Revisions::default().of("a").unwrap()
    }

    #[test]
    fn a_page_is_served_only_under_its_revision_and_expiry() {
        let cache = PageCache::new(1 << 20);
        let revisions = crate::revisions::Revisions::default();
        let before = revisions.of("a").unwrap();
        cache.put(key("a"), before, 100, Bytes::from_static(b"{}"));
        assert_eq!(
            cache.get(&key("a"), before, 100).as_deref(),
            Some(&b"{}"[..])
        );
        revisions.bump("a");
        let after = revisions.of("a").unwrap();
        assert!(
            cache.get(&key("a"), after, 100).is_none(),
            "gallery changed"
        );
        assert!(
            cache.get(&key("a"), before, 160).is_none(),
            "link window turned"
        );
        assert!(cache.get(&key("b"), before, 100).is_none(), "another user");
    }

    #[test]
    fn a_zero_capacity_keeps_nothing() {
        let cache = PageCache::new(0);
        cache.put(key("a"), revision(), 1, Bytes::from_static(b"{}"));
        assert!(cache.get(&key("a"), revision(), 1).is_none());
    }

    #[test]
    fn memory_stays_within_the_capacity() {
        let cache = PageCache::new(100_000);
        for i in 0..100 {
            cache.put(
                key(&format!("u{i}")),
                revision(),
                1,
                Bytes::from(vec![b'x'; 10_000]),
            );
        }
        let pages = cache.pages.as_ref().unwrap();
        assert!(pages.weight() <= 100_000, "{}", pages.weight());
        assert!(pages.len() < 100);
    }
}
