//! Each node's cache of pages rendered for visitors without a session (issue 10): the topic
//! page, the topic list and the category pages, kept as finished response bodies.
//!
//! Correctness before speed, because what a page shows is personal data (an erased member's
//! name, a deleted post):
//! - Only visitors without a session are served from it or stored into it; a member's page is
//!   always rendered (it carries their name, their forms' token and their own posts' actions).
//! - The key holds everything that changes the HTML for a visitor: the path and query (which is
//!   also the `return_to` of the banner and theme forms), and the request's consent as rendered
//!   (banner or not, the categories asked again, GPC, each category's decision and so each
//!   optional tag) and theme. The visitors' form token is the same for every visitor in a
//!   second (`auth::visitor_form_token` signs only its date) and stays valid for hours, far
//!   longer than an entry lives ([`MAX_SECONDS`]).
//! - A node-wide generation, read before a page is rendered and stored with it, is raised after
//!   every request other than GET or HEAD this node handles (even one that failed or whose
//!   client went away: [`note_writes`]), after every batch of the retention sweep and every
//!   round of the request job; an entry of an older generation is never served. So a write
//!   made through this node shows on its next page at once.
//! - Writes this node does not see (another node on the same PostgreSQL, the command line)
//!   show once the entry expires: `page_cache.seconds` (1 s by default) at most.
//! - Only 200 answers that set no cookie are stored; memory is bounded by an entry count and a
//!   byte total (`page_cache.max_entries`, `page_cache.max_bytes`).

use crate::web::AppState;
use crate::web::auth::Viewer;
use crate::web::error::PageResult;
use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use covenant_core::policy::CookieCategory;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest an entry may live, whatever the configuration says: far below the lifetime of
/// the visitors' form token a cached page carries (4 hours).
pub const MAX_SECONDS: u64 = 60;

/// What makes two visitors' pages differ; two requests with equal keys get the same HTML.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    /// The path and query as requested.
    uri: String,
    /// Where the banner's and theme's forms return to (the same text, taken where they are
    /// rendered from).
    return_to: String,
    banner: bool,
    /// The names of the categories the banner asks about again.
    asked_again: String,
    gpc: bool,
    /// Each cookie category's decision for this request (the optional tags follow from them).
    allowed: [bool; 4],
    analytics_tag: bool,
    advertising_tag: bool,
    theme: Option<&'static str>,
}

impl PageKey {
    fn weight(&self) -> usize {
        self.uri.len() + self.return_to.len() + self.asked_again.len() + 64
    }
}

struct Entry {
    headers: HeaderMap,
    body: Bytes,
    generation: u64,
    stored_at: Instant,
}

#[derive(Default)]
struct Entries {
    map: HashMap<PageKey, Entry>,
    bytes: usize,
}

impl Entries {
    fn remove(&mut self, key: &PageKey) {
        if let Some(entry) = self.map.remove(key) {
            self.bytes -= key.weight() + entry.body.len();
        }
    }
}

struct Inner {
    generation: AtomicU64,
    entries: Mutex<Entries>,
    time_to_live: Duration,
    max_entries: usize,
    max_bytes: usize,
    hits: AtomicU64,
}

/// The cache, shared by every request of the node (one pointer).
#[derive(Clone)]
pub struct PageCache(Arc<Inner>);

impl PageCache {
    pub fn new(config: &crate::config::PageCacheConfig) -> Self {
        Self(Arc::new(Inner {
            generation: AtomicU64::new(0),
            entries: Mutex::new(Entries::default()),
            time_to_live: Duration::from_secs(config.seconds.min(MAX_SECONDS)),
            max_entries: config.max_entries,
            max_bytes: config.max_bytes,
            hits: AtomicU64::new(0),
        }))
    }

    fn enabled(&self) -> bool {
        !self.0.time_to_live.is_zero() && self.0.max_entries > 0 && self.0.max_bytes > 0
    }

    /// Something this node wrote may change what a page shows: no entry stored before now is
    /// served again.
    pub fn changed(&self) {
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The hook the retention sweep and the request job call after each batch or round.
    pub fn after_batch(&self) -> impl Fn(u64) + Send + Sync + 'static {
        let cache = self.clone();
        move |_| cache.changed()
    }

    /// How many pages this node served from the cache since it started.
    pub fn hits(&self) -> u64 {
        self.0.hits.load(Ordering::Relaxed)
    }

    /// The key of this request's page, or `None` when it must be rendered: a signed-in viewer,
    /// no consent context (outside the page middleware), or the cache turned off.
    fn key(&self, viewer: &Viewer, uri: &Uri) -> Option<PageKey> {
        if viewer.0.is_some() || !self.enabled() {
            return None;
        }
        let consent = crate::web::consent::current();
        if consent.return_to.as_str().is_empty() {
            return None;
        }
        let context = &consent.context;
        let allowed = [
            CookieCategory::Necessary,
            CookieCategory::Preferences,
            CookieCategory::Analytics,
            CookieCategory::Advertising,
        ]
        .map(|category| context.allows(category));
        Some(PageKey {
            uri: uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| uri.path().to_string()),
            return_to: consent.return_to.as_str().to_string(),
            banner: context.show_banner(),
            asked_again: context.asked_again_names(),
            gpc: context.gpc(),
            allowed,
            analytics_tag: context.analytics_tag(),
            advertising_tag: context.advertising_tag(),
            theme: consent.theme.map(|t| t.as_str()),
        })
    }

    fn get(&self, key: &PageKey) -> Option<Response> {
        let generation = self.0.generation.load(Ordering::Acquire);
        let mut entries = self.0.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.map.get(key)?;
        if entry.generation != generation || entry.stored_at.elapsed() >= self.0.time_to_live {
            entries.remove(key);
            return None;
        }
        let mut response = Response::new(Body::from(entry.body.clone()));
        *response.headers_mut() = entry.headers.clone();
        drop(entries);
        self.0.hits.fetch_add(1, Ordering::Relaxed);
        Some(response)
    }

    fn put(&self, key: PageKey, generation: u64, headers: HeaderMap, body: Bytes) {
        let weight = key.weight() + body.len();
        // One page may take at most an eighth of the room.
        if weight > self.0.max_bytes / 8 {
            return;
        }
        let mut entries = self.0.entries.lock().unwrap_or_else(|e| e.into_inner());
        // A write since the page was read makes it stale already.
        let current = self.0.generation.load(Ordering::Acquire);
        if generation != current {
            return;
        }
        entries.remove(&key);
        if entries.map.len() >= self.0.max_entries || entries.bytes + weight > self.0.max_bytes {
            // Stale and expired entries go first, then any, until the new one fits.
            let ttl = self.0.time_to_live;
            let Entries { map, bytes } = &mut *entries;
            map.retain(|k, e| {
                let keep = e.generation == current && e.stored_at.elapsed() < ttl;
                if !keep {
                    *bytes -= k.weight() + e.body.len();
                }
                keep
            });
            while entries.map.len() >= self.0.max_entries
                || entries.bytes + weight > self.0.max_bytes
            {
                let Some(victim) = entries.map.keys().next().cloned() else {
                    break;
                };
                entries.remove(&victim);
            }
        }
        entries.bytes += weight;
        entries.map.insert(
            key,
            Entry {
                headers,
                body,
                generation,
                stored_at: Instant::now(),
            },
        );
    }

    /// Answers a visitor's page from the cache, or renders it with `render` (and keeps it when
    /// it is a 200 that sets no cookie). A signed-in viewer's page is always rendered.
    pub async fn serve(
        &self,
        viewer: &Viewer,
        uri: &OriginalUri,
        render: impl Future<Output = PageResult>,
    ) -> PageResult {
        let Some(key) = self.key(viewer, &uri.0) else {
            return render.await;
        };
        if let Some(response) = self.get(&key) {
            return Ok(response);
        }
        // Read before the page reads anything: a write that lands while it renders makes it
        // stale.
        let generation = self.0.generation.load(Ordering::Acquire);
        let response = render.await?;
        if response.status() != StatusCode::OK || response.headers().contains_key(SET_COOKIE) {
            return Ok(response);
        }
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.map_err(|e| {
            crate::error::Error::Internal(anyhow::Error::new(e).context("reading a rendered page"))
        })?;
        self.put(key, generation, parts.headers.clone(), body.clone());
        Ok(Response::from_parts(parts, Body::from(body)))
    }
}

/// Raises the generation when dropped: after the request completes, and also when its future
/// is dropped half-way (the client went away), since its write may have committed.
struct ChangedOnDrop(PageCache);

impl Drop for ChangedOnDrop {
    fn drop(&mut self) {
        self.0.changed();
    }
}

/// Middleware: every request other than GET or HEAD may write, so once it is done (answered,
/// failed or abandoned), no page cached before it is served again.
pub async fn note_writes(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let _changed = ChangedOnDrop(state.page_cache.clone());
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PageCacheConfig;

    fn key(uri: &str) -> PageKey {
        PageKey {
            uri: uri.into(),
            return_to: uri.into(),
            banner: true,
            asked_again: String::new(),
            gpc: false,
            allowed: [true, false, false, false],
            analytics_tag: false,
            advertising_tag: false,
            theme: None,
        }
    }

    fn cache(max_entries: usize, max_bytes: usize) -> PageCache {
        PageCache::new(&PageCacheConfig {
            seconds: 60,
            max_entries,
            max_bytes,
        })
    }

    #[test]
    fn a_write_makes_every_stored_page_stale() {
        let cache = cache(10, 1 << 20);
        let generation = cache.0.generation.load(Ordering::Acquire);
        cache.put(key("/a"), generation, HeaderMap::new(), Bytes::from("old"));
        assert!(cache.get(&key("/a")).is_some());
        cache.changed();
        assert!(cache.get(&key("/a")).is_none());
        // A page read before a write is not stored after it.
        cache.put(key("/a"), generation, HeaderMap::new(), Bytes::from("old"));
        assert!(cache.get(&key("/a")).is_none());
    }

    #[test]
    fn entries_and_bytes_stay_bounded() {
        let cache = cache(3, 8 * 1024);
        for n in 0..20 {
            cache.put(
                key(&format!("/t/{n}")),
                0,
                HeaderMap::new(),
                Bytes::from(vec![b'x'; 500]),
            );
            let entries = cache.0.entries.lock().unwrap();
            assert!(entries.map.len() <= 3 && entries.bytes <= 8 * 1024);
            let counted: usize = entries
                .map
                .iter()
                .map(|(k, e)| k.weight() + e.body.len())
                .sum();
            assert_eq!(counted, entries.bytes);
        }
        // Larger than an eighth of the room: never stored.
        cache.put(
            key("/big"),
            0,
            HeaderMap::new(),
            Bytes::from(vec![b'x'; 2000]),
        );
        assert!(cache.get(&key("/big")).is_none());
    }

    #[test]
    fn turned_off_with_zero_seconds() {
        let cache = PageCache::new(&PageCacheConfig {
            seconds: 0,
            max_entries: 10,
            max_bytes: 1 << 20,
        });
        assert!(!cache.enabled());
    }
}
