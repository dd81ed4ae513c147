//! When the guard's JWKS cache refreshes, refetches and gives up (the decisions only; the fetching task lives
//! with the I/O). Time is passed in as Unix seconds.
//!
//! - The refresh interval honours the server's `Cache-Control: max-age`, clamped to `[min_ttl, max_ttl]`
//!   (`no-store`/`no-cache` mean the minimum; no header means the default).
//! - A token naming an unknown `kid` may trigger an immediate refetch, at most once per `refetch_interval`,
//!   so a flood of random `kid`s costs one fetch per interval, not one per request.
//! - When the server is unreachable, the last keys keep serving until `max_stale` past their expiry.

/// The cache's timing rules, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksTiming {
    pub min_ttl: i64,
    pub max_ttl: i64,
    pub default_ttl: i64,
    pub refetch_interval: i64,
    pub max_stale: i64,
}

impl Default for JwksTiming {
    fn default() -> Self {
        JwksTiming { min_ttl: 30, max_ttl: 3600, default_ttl: 300, refetch_interval: 10, max_stale: 24 * 3600 }
    }
}

impl JwksTiming {
    /// How long a fetched JWKS is fresh, from its `Cache-Control` header.
    pub fn ttl(&self, cache_control: Option<&str>) -> i64 {
        let Some(value) = cache_control else { return self.default_ttl.clamp(self.min_ttl, self.max_ttl) };
        let mut max_age = None;
        for directive in value.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return self.min_ttl;
            }
            if let Some(v) = lower.strip_prefix("max-age=") {
                // A malformed max-age is ignored (RFC 9111 §4.2.1: treat as stale) and falls to the minimum.
                max_age = Some(v.trim_matches('"').parse::<i64>().unwrap_or(0));
            }
        }
        max_age.unwrap_or(self.default_ttl).clamp(self.min_ttl, self.max_ttl)
    }

    /// Whether an unknown `kid` may trigger a fetch now, given when the last fetch started.
    pub fn may_refetch(&self, last_fetch_at: Option<i64>, now: i64) -> bool {
        last_fetch_at.is_none_or(|t| now >= t.saturating_add(self.refetch_interval))
    }

    /// Whether keys fetched at `fetched_at` with freshness `ttl` may still verify at `now` (fresh, or stale
    /// within the bound while refreshes fail).
    pub fn usable(&self, fetched_at: i64, ttl: i64, now: i64) -> bool {
        now < fetched_at.saturating_add(ttl).saturating_add(self.max_stale)
    }

    /// Whether the keys are past their freshness (a refresh is due).
    pub fn is_stale(&self, fetched_at: i64, ttl: i64, now: i64) -> bool {
        now >= fetched_at.saturating_add(ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_is_honoured_within_bounds() {
        let t = JwksTiming::default();
        assert_eq!(t.ttl(Some("public, max-age=600")), 600);
        assert_eq!(t.ttl(Some("max-age=5")), 30, "clamped up");
        assert_eq!(t.ttl(Some("max-age=999999")), 3600, "clamped down");
        assert_eq!(t.ttl(Some("no-store")), 30);
        assert_eq!(t.ttl(Some("Max-Age=120, must-revalidate")), 120);
        assert_eq!(t.ttl(Some("max-age=abc")), 30, "malformed counts as stale");
        assert_eq!(t.ttl(Some("public")), 300);
        assert_eq!(t.ttl(None), 300);
    }

    #[test]
    fn unknown_kid_floods_cost_one_fetch_per_interval() {
        let t = JwksTiming::default();
        let mut last = None;
        let mut fetches = 0;
        // A thousand requests with random kids over 100 seconds.
        for i in 0..1000 {
            let now = 1_000 + i / 10;
            if t.may_refetch(last, now) {
                last = Some(now);
                fetches += 1;
            }
        }
        assert_eq!(fetches, 10);
    }

    #[test]
    fn stale_keys_serve_until_the_bound() {
        let t = JwksTiming { max_stale: 600, ..JwksTiming::default() };
        assert!(!t.is_stale(0, 300, 299) && t.is_stale(0, 300, 300));
        assert!(t.usable(0, 300, 899));
        assert!(!t.usable(0, 300, 900));
    }
}
