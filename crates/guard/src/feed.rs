//! Discovery, and the revocation feed: the guard follows the issuer's `/events` long-poll (RFC 8936 shape) as a
//! client with scope `portcullis:events`, verifies each Security Event Token (RFC 8417) with the cached JWKS, and
//! applies it to the revocation set, so a revocation is enforced within about a second. When the feed cannot be
//! reached the guard keeps serving and reports the lag; [`crate::GuardConfig::fail_closed_after`] bounds that.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use portcullis_jose::{jwt, Policy};
pub use portcullis_revocation::REVOCATION_EVENT;
use portcullis_revocation::{Kind, RevocationSet, SET_TYP};
use serde::Deserialize;

use crate::jwks::{get_limited, JwksCache};
use crate::{Clock, GuardError};

const MAX_DOC_BYTES: usize = 1024 * 1024;

/// What the guard needs from the issuer's metadata.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub jwks_uri: String,
    pub token_endpoint: String,
}

/// Reads RFC 8414 metadata, checking that it names the expected issuer (RFC 8414 §3.3).
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Metadata, GuardError> {
    let url = format!("{issuer}/.well-known/oauth-authorization-server");
    let (body, _) = get_limited(http, &url, MAX_DOC_BYTES).await?;
    let doc: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| GuardError::Discovery(format!("{url}: {e}")))?;
    if doc["issuer"].as_str() != Some(issuer) {
        return Err(GuardError::Discovery(format!("{url} names another issuer")));
    }
    let field = |name: &str| {
        doc[name].as_str().map(str::to_owned).ok_or_else(|| GuardError::Discovery(format!("{url} lacks {name}")))
    };
    Ok(Metadata { jwks_uri: field("jwks_uri")?, token_endpoint: field("token_endpoint")? })
}

#[derive(Deserialize)]
struct Poll {
    sets: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RevocationEvent {
    kind: String,
    value: String,
    #[serde(default)]
    issued_before: i64,
    expires_at: i64,
}

/// A client-credentials access token for one scope, fetched when needed and kept until 30 s before it expires.
#[derive(Debug, Clone)]
pub struct ClientToken {
    token_endpoint: String,
    client_id: String,
    client_secret: String,
    scope: &'static str,
    clock: Clock,
    cached: Option<(String, i64)>,
}

impl ClientToken {
    pub fn new(
        token_endpoint: String,
        client_id: String,
        client_secret: String,
        scope: &'static str,
        clock: Clock,
    ) -> Self {
        ClientToken { token_endpoint, client_id, client_secret, scope, clock, cached: None }
    }

    /// The token, fetched anew when there is none or it is about to expire.
    pub async fn get(&mut self, http: &reqwest::Client) -> Result<String, GuardError> {
        let now = self.clock.now().as_secs();
        if let Some((token, exp)) = &self.cached {
            if now + 30 < *exp {
                return Ok(token.clone());
            }
        }
        let form = format!("grant_type=client_credentials&scope={}", self.scope.replace(':', "%3A"));
        let resp = http
            .post(&self.token_endpoint)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| GuardError::Fetch(format!("token endpoint: {e}")))?;
        if !resp.status().is_success() {
            return Err(GuardError::Fetch(format!("token endpoint: HTTP {}", resp.status())));
        }
        let body: serde_json::Value =
            resp.json().await.map_err(|e| GuardError::Fetch(format!("token endpoint: {e}")))?;
        let token = body["access_token"].as_str().ok_or(GuardError::Fetch("no access_token".into()))?.to_owned();
        let exp = now + body["expires_in"].as_i64().unwrap_or(60);
        self.cached = Some((token.clone(), exp));
        Ok(token)
    }

    /// Drops the cached token (after the server refused it).
    pub fn forget(&mut self) {
        self.cached = None;
    }
}

/// The feed follower's state.
#[derive(Debug)]
pub struct Feed {
    http: reqwest::Client,
    issuer: String,
    events_url: String,
    client_id: String,
    token: tokio::sync::Mutex<ClientToken>,
    jwks: Arc<JwksCache>,
    revocations: Arc<RevocationSet>,
    clock: Clock,
    /// The guard's leeway: a revocation is kept until a token it covers could no longer pass even with it.
    leeway: i64,
    last_ok: AtomicI64,
}

impl Feed {
    #[allow(clippy::too_many_arguments)] // wiring of one follower; a struct would only rename these
    pub fn new(
        http: reqwest::Client,
        issuer: &str,
        token_endpoint: String,
        client_id: String,
        client_secret: String,
        jwks: Arc<JwksCache>,
        revocations: Arc<RevocationSet>,
        clock: Clock,
        leeway: i64,
    ) -> Self {
        let now = clock.now().as_secs();
        Feed {
            http,
            issuer: issuer.to_owned(),
            events_url: format!("{issuer}/events"),
            token: tokio::sync::Mutex::new(ClientToken::new(
                token_endpoint,
                client_id.clone(),
                client_secret,
                "portcullis:events",
                clock.clone(),
            )),
            client_id,
            jwks,
            revocations,
            clock,
            leeway,
            last_ok: AtomicI64::new(now),
        }
    }

    /// Seconds since the feed last answered.
    pub fn lag(&self) -> i64 {
        self.clock.now().as_secs() - self.last_ok.load(Ordering::SeqCst)
    }

    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut failures: u64 = 0;
            loop {
                let Some(feed) = weak.upgrade() else { return };
                match feed.poll_once().await {
                    Ok(()) => {
                        failures = 0;
                        feed.last_ok.store(feed.clock.now().as_secs(), Ordering::SeqCst);
                    }
                    Err(e) => {
                        failures += 1;
                        feed.token.lock().await.forget();
                        tracing::warn!(error = %e, failures, "revocation feed unreachable; serving without it");
                        drop(feed);
                        tokio::time::sleep(Duration::from_millis(500 * failures.min(10))).await;
                    }
                }
            }
        })
    }

    /// One long-poll: waits for new revocations (or the server's timeout) and applies them. When the server has
    /// more, the next poll (made at once) fetches them.
    async fn poll_once(&self) -> Result<(), GuardError> {
        let bearer = self.token.lock().await.get(&self.http).await?;
        let ack = self.revocations.last_seq().to_string();
        let body = serde_json::json!({ "ack": [ack], "maxEvents": 500, "returnImmediately": false });
        let resp = self
            .http
            .post(&self.events_url)
            .bearer_auth(bearer)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| GuardError::Fetch(format!("events: {e}")))?;
        if !resp.status().is_success() {
            return Err(GuardError::Fetch(format!("events: HTTP {}", resp.status())));
        }
        let poll: Poll = resp.json().await.map_err(|e| GuardError::Fetch(format!("events: {e}")))?;
        for (jti, set) in &poll.sets {
            let Some(set) = set.as_str() else { continue };
            if let Err(e) = self.apply(jti, set) {
                tracing::warn!(jti, error = %e, "an event could not be applied");
            }
        }
        Ok(())
    }

    fn apply(&self, jti: &str, set: &str) -> Result<(), GuardError> {
        let keys = self.jwks.keys().ok_or(GuardError::Jwks("no usable keys to verify events".into()))?;
        let policy = Policy::builder()
            .issuer(&self.issuer)
            .audience(&self.client_id)
            .typ(SET_TYP)
            .danger_allow_no_exp()
            .build()
            .map_err(|e| GuardError::Config(e.to_string()))?;
        let claims =
            jwt::verify(set, &keys, &policy, self.clock.now()).map_err(|e| GuardError::Event(e.to_string()))?.claims;
        if claims.jti().as_deref() != Some(jti) {
            return Err(GuardError::Event("the SET's jti differs from its key in the poll".into()));
        }
        let seq: i64 = jti.parse().map_err(|_| GuardError::Event("jti is not a sequence number".into()))?;
        let events = claims.get("events").ok_or(GuardError::Event("no events".into()))?;
        let events: serde_json::Value =
            serde_json::from_str(events.text()).map_err(|e| GuardError::Event(e.to_string()))?;
        let event: RevocationEvent = serde_json::from_value(events[REVOCATION_EVENT].clone())
            .map_err(|e| GuardError::Event(format!("not a revocation event: {e}")))?;
        let kind = Kind::parse(&event.kind).ok_or(GuardError::Event(format!("unknown kind {:?}", event.kind)))?;
        self.revocations.apply(seq, kind, &event.value, event.issued_before, event.expires_at);
        // An entry lives until its `expires_at`, the latest `exp` of a token it covers; the guard accepts such a
        // token until `exp` + leeway, so the entry must outlive its `expires_at` by the leeway.
        self.revocations.prune(self.clock.now().as_secs().saturating_sub(self.leeway.max(0)));
        Ok(())
    }
}
