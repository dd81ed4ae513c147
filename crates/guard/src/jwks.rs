//! The JWKS cache. It never sits on the request path: a background task refreshes it when its `Cache-Control`
//! lifetime (clamped, see [`JwksTiming`]) runs out, a token naming an unknown `kid` may trigger one immediate
//! refetch per interval (so a flood of random `kid`s costs one fetch per interval), and when the server cannot be
//! reached the last keys keep serving up to a bound, after which the guard fails closed.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use portcullis_jose::{Algorithm, KeySet};

use crate::jwks_timing::JwksTiming;
use crate::{Clock, GuardError};

/// The largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

#[derive(Debug)]
struct Snapshot {
    keys: Arc<KeySet>,
    fetched_at: i64,
    ttl: i64,
    generation: u64,
}

/// One fetched key set, as a worker keeps it to verify with (see [`JwksCache::generation`]).
#[derive(Debug, Clone)]
pub(crate) struct KeysView {
    pub(crate) keys: Arc<KeySet>,
    pub(crate) generation: u64,
    fetched_at: i64,
    ttl: i64,
}

/// A JWKS fetched from one URL, kept fresh.
#[derive(Debug)]
pub struct JwksCache {
    url: String,
    http: reqwest::Client,
    timing: JwksTiming,
    algorithms: Vec<Algorithm>,
    clock: Clock,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// The generation of the snapshot, moved (under the snapshot's write lock) each time the keys are replaced.
    generation: AtomicU64,
    last_attempt: AtomicI64,
    fetches: AtomicU64,
    fetching: tokio::sync::Mutex<()>,
}

impl JwksCache {
    pub fn new(
        url: String,
        http: reqwest::Client,
        timing: JwksTiming,
        algorithms: Vec<Algorithm>,
        clock: Clock,
    ) -> Self {
        JwksCache {
            url,
            http,
            timing,
            algorithms,
            clock,
            snapshot: RwLock::new(None),
            generation: AtomicU64::new(0),
            last_attempt: AtomicI64::new(i64::MIN),
            fetches: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now().as_secs()
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The keys to verify with, if any are usable (fresh, or stale within the bound).
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        let s = self.current()?;
        self.timing.usable(s.fetched_at, s.ttl, self.now()).then(|| Arc::clone(&s.keys))
    }

    /// The generation of the current keys: it moves each time they are replaced, so a worker holding a
    /// [`KeysView`] of this generation may keep using it (within [`Self::usable`]) without taking the lock.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current keys with their generation (whether or not they are still usable), if any were fetched.
    pub(crate) fn view(&self) -> Option<KeysView> {
        self.current().map(|s| KeysView {
            keys: Arc::clone(&s.keys),
            generation: s.generation,
            fetched_at: s.fetched_at,
            ttl: s.ttl,
        })
    }

    /// Whether a view's keys may still verify at `now` (fresh, or stale within the bound).
    pub(crate) fn usable(&self, view: &KeysView, now: i64) -> bool {
        self.timing.usable(view.fetched_at, view.ttl, now)
    }

    /// How many fetches were attempted (for metrics, and to show that floods are bounded).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Seconds since the keys were fetched (for metrics), if ever.
    pub fn age(&self) -> Option<i64> {
        self.current().map(|s| self.now() - s.fetched_at)
    }

    /// Fetches the JWKS now and replaces the keys. Keys removed from the document stop verifying at once.
    pub async fn fetch(&self) -> Result<(), GuardError> {
        let _one_at_a_time = self.fetching.lock().await;
        self.last_attempt.store(self.now(), Ordering::SeqCst);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (body, cache_control) = get_limited(&self.http, &self.url, MAX_JWKS_BYTES).await?;
        let text = std::str::from_utf8(&body).map_err(|_| GuardError::Jwks("the JWKS is not UTF-8".into()))?;
        let keys = KeySet::from_jwks(text, &self.algorithms).map_err(|e| GuardError::Jwks(e.to_string()))?;
        if keys.keys().iter().any(|k| k.is_symmetric()) {
            return Err(GuardError::Jwks("a published JWKS holds a symmetric key".into()));
        }
        let ttl = self.timing.ttl(cache_control.as_deref());
        let mut slot = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        *slot = Some(Arc::new(Snapshot { keys: Arc::new(keys), fetched_at: self.now(), ttl, generation }));
        self.generation.store(generation, Ordering::Release);
        drop(slot);
        tracing::debug!(url = %self.url, ttl, "JWKS fetched");
        Ok(())
    }

    /// A token named a `kid` the keys lack: refetch at once, unless a fetch happened within the interval.
    /// Returns whether a fetch was made (and succeeded).
    pub async fn refetch_for_unknown_kid(&self) -> bool {
        let last = self.last_attempt.load(Ordering::SeqCst);
        let last = (last != i64::MIN).then_some(last);
        if !self.timing.may_refetch(last, self.now()) {
            return false;
        }
        match self.fetch().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS refetch for an unknown kid failed");
                false
            }
        }
    }

    /// How long until the keys should be refreshed (at least one second).
    fn refresh_in(&self) -> Duration {
        let secs = match self.current() {
            Some(s) => (s.fetched_at + s.ttl - self.now()).max(1),
            None => 1,
        };
        Duration::from_secs(secs as u64)
    }

    /// Runs the background refresh until the cache is dropped by everyone else.
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut failures: u32 = 0;
            loop {
                let wait = match weak.upgrade() {
                    Some(cache) => {
                        if failures > 0 {
                            Duration::from_secs(u64::from(failures.min(5)) * 2)
                        } else {
                            cache.refresh_in()
                        }
                    }
                    None => return,
                };
                tokio::time::sleep(wait).await;
                let Some(cache) = weak.upgrade() else { return };
                match cache.fetch().await {
                    Ok(()) => failures = 0,
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(url = %cache.url, error = %e, failures, "JWKS refresh failed; serving the last keys");
                    }
                }
            }
        })
    }
}

/// GETs a URL, refusing bodies over `limit`; returns the body and the `Cache-Control` header.
pub(crate) async fn get_limited(
    http: &reqwest::Client,
    url: &str,
    limit: usize,
) -> Result<(Vec<u8>, Option<String>), GuardError> {
    let mut resp = http.get(url).send().await.map_err(|e| GuardError::Fetch(format!("{url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(GuardError::Fetch(format!("{url}: HTTP {}", resp.status())));
    }
    let cache_control =
        resp.headers().get(http::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| GuardError::Fetch(format!("{url}: {e}")))? {
        if body.len() + chunk.len() > limit {
            return Err(GuardError::Fetch(format!("{url}: the document is larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, cache_control))
}
