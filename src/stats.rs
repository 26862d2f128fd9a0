//! Visitor statistics without personal data (promise F2): a topic page view is counted, only
//! when the request's consent decision allows analytics, as a browser family, a language, a
//! referring domain, a day and a topic — never an IP address, a cookie, an account or the raw
//! user agent. Views are added up in memory and written as daily totals every few seconds, so
//! counting costs a page one uncontended lock. Published figures below the policy's smallest
//! published count are suppressed.

use crate::store::{Store, VisitKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Distinct cells kept between two writes; views beyond are not counted rather than let memory
/// grow without bound.
const MAX_PENDING_CELLS: usize = 100_000;

/// The in-memory tally of page views, written to the store by [`VisitCounter::flush`].
#[derive(Clone)]
pub struct VisitCounter {
    store: Store,
    pending: Arc<Mutex<HashMap<VisitKey, i64>>>,
}

/// What a page view contributes, reduced to what identifies nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    pub topic_id: i64,
    pub browser: &'static str,
    pub language: String,
    pub referrer: String,
}

impl Visit {
    /// Reduces the request's headers: the user agent to a family, `Accept-Language` to its
    /// first primary tag, `Referer` to its host (empty when the visit came from this site).
    pub fn new(
        topic_id: i64,
        user_agent: &str,
        accept_language: &str,
        referer: &str,
        own_host: &str,
    ) -> Self {
        Self {
            topic_id,
            browser: browser_family(user_agent),
            language: language(accept_language),
            referrer: referring_domain(referer, own_host),
        }
    }
}

pub fn browser_family(user_agent: &str) -> &'static str {
    let ua = user_agent;
    if ua.is_empty() {
        "unknown"
    } else if ua.contains("bot") || ua.contains("Bot") || ua.contains("spider") {
        "robot"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("OPR/") || ua.contains("Opera") {
        "Opera"
    } else if ua.contains("Chrome/") || ua.contains("Chromium/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else {
        "other"
    }
}

/// The first language's primary tag (`fr` for `fr-CH, fr;q=0.9`), or `unknown`.
pub fn language(accept_language: &str) -> String {
    let first = accept_language
        .split(',')
        .next()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let primary = first.split('-').next().unwrap_or_default();
    if (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic()) {
        primary.to_ascii_lowercase()
    } else {
        "unknown".into()
    }
}

/// The referring page's host, lower-cased, without port or path; empty for none or this site.
pub fn referring_domain(referer: &str, own_host: &str) -> String {
    let Some((_, rest)) = referer.split_once("://") else {
        return String::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = host
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let own = own_host.split(':').next().unwrap_or_default();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !valid || host.eq_ignore_ascii_case(own) {
        String::new()
    } else {
        host
    }
}

impl VisitCounter {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            pending: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Counts one view. The caller has already asked `consent::analytics_allowed`.
    pub fn count(&self, visit: Visit) {
        let key = VisitKey {
            day: crate::policy::today(),
            topic_id: visit.topic_id,
            browser: visit.browser.to_string(),
            language: visit.language,
            referrer: visit.referrer,
        };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING_CELLS && !pending.contains_key(&key) {
            return;
        }
        *pending.entry(key).or_insert(0) += 1;
    }

    /// Writes the counted views; on failure they are put back for the next try.
    pub async fn flush(&self) -> anyhow::Result<()> {
        let taken: Vec<(VisitKey, i64)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().collect()
        };
        if let Err(error) = self.store.add_visit_counts(&taken).await {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (key, n) in taken {
                *pending.entry(key).or_insert(0) += n;
            }
            return Err(error);
        }
        Ok(())
    }

    /// Flushes every `every`, and once more at shutdown.
    pub async fn run(
        self,
        every: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(every) => false,
                _ = shutdown.changed() => true,
            };
            if let Err(error) = self.flush().await {
                tracing::error!(error = %format!("{error:#}"), "writing visit counts failed");
            }
            if stopping {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visit_keeps_only_families_tags_and_domains() {
        let visit = Visit::new(
            7,
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "fr-CH, fr;q=0.9, en;q=0.8",
            "https://user:secret@news.example.com:8443/item?id=42#top",
            "forum.example:8080",
        );
        assert_eq!(
            visit,
            Visit {
                topic_id: 7,
                browser: "Firefox",
                language: "fr".into(),
                referrer: "news.example.com".into(),
            }
        );
        assert_eq!(
            browser_family("Mozilla/5.0 Chrome/120.0 Safari/537.36 Edg/120.0"),
            "Edge"
        );
        assert_eq!(
            browser_family("Mozilla/5.0 Version/17.0 Safari/605.1.15"),
            "Safari"
        );
        assert_eq!(language("*"), "unknown");
        assert_eq!(
            referring_domain("http://forum.example/t/x/1", "forum.example:8080"),
            ""
        );
        assert_eq!(referring_domain("not a url", "forum.example"), "");
    }
}
