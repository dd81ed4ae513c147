//! The guard: verifies an access token with the cached JWKS, checks it against the revocation set, and judges a
//! route's scope and role requirements. Verification results are cached by the token's SHA-256 (tied to the key
//! set, never past the token's `exp`), so a token used many times is verified once; revocation and the route
//! policy are still judged on every request. A worker's handle ([`Guard::for_worker`]) keeps a front of its own
//! before that shared cache, so that a hit touches nothing another core writes.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use aws_lc_rs::digest;
use portcullis_jose::dpop::{verify_proof, JtiCache, Nonces, ProofKeys, ProofPolicy, ProofRequest};
use portcullis_jose::{jwt, Algorithm, Error as JoseError, KeySet, Policy, AT_JWT};
use portcullis_revocation::{RevocationSet, TokenFacts};

use crate::feed::Feed;
use crate::jwks::{JwksCache, KeysView};
use crate::jwks_timing::JwksTiming;
use crate::{Clock, GuardError};

/// The largest token the guard looks at.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
const MAX_CACHED: usize = 100_000;
/// A worker's front cache (see [`Guard::for_worker`]) holds at most this many tokens, and this many bytes of them.
const FRONT_MAX_TOKENS: usize = 10_000;
const FRONT_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Cache hits a worker counts before adding them to the shared counter (it also adds them once a second).
const FRONT_HITS_BATCH: u64 = 64;
const VERIFY_CACHE: &str = "portcullis_guard_verify_cache_total";
/// The proof algorithms the guard accepts, as its `DPoP` challenges name them (RFC 9449 §7.1).
pub const DPOP_ALGS: &str = "ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256 RS384 RS512 ML-DSA-44 ML-DSA-65 ML-DSA-87";
/// Live proof `jti`s remembered for replay refusal: the peak proof rate times the window (65 s) it allows.
const MAX_PROOF_JTIS: usize = 1_000_000;
/// Parsed DPoP proof keys kept for reuse (one per active client).
const MAX_PROOF_KEYS: usize = 10_000;

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub audiences: Vec<String>,
    pub jti: String,
    pub session: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    /// The RFC 7638 thumbprint of the key the token is bound to (`cnf.jkt`, RFC 9449 §6), for a DPoP-bound token.
    pub bound_jkt: Option<String>,
}

impl Identity {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// What a route requires beyond a valid token: all of these scopes and all of these roles, and (when set) one
/// audience among those the guard accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub audience: Option<String>,
}

impl Requirement {
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Requirement { scopes: scopes.into_iter().map(Into::into).collect(), ..Requirement::default() }
    }

    pub fn and_roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    pub fn for_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    pub fn check(&self, identity: &Identity) -> Result<(), Rejection> {
        if self.audience.as_ref().is_some_and(|a| !identity.audiences.contains(a)) {
            return Err(Rejection::Invalid("wrong audience"));
        }
        if self.scopes.iter().any(|s| !identity.has_scope(s)) {
            return Err(Rejection::InsufficientScope(self.scopes.join(" ")));
        }
        if self.roles.iter().any(|r| !identity.has_role(r)) {
            return Err(Rejection::InsufficientRole);
        }
        Ok(())
    }
}

/// Why a request is refused. Each maps to one RFC 6750 answer (see [`Rejection::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No token at all: 401 with a bare challenge (RFC 6750 §3.1).
    Missing,
    /// An `Authorization` header that is not one bearer token: 400 `invalid_request`.
    Malformed,
    /// The token fails verification (signature, key, type, issuer, audience, lifetime): 401 `invalid_token`.
    Invalid(&'static str),
    /// The token was revoked: 401 `invalid_token`.
    Revoked,
    /// A required scope is missing: 403 `insufficient_scope`, naming the scopes needed.
    InsufficientScope(String),
    /// A required role is missing: 403 `insufficient_scope`.
    InsufficientRole,
    /// The guard cannot judge (no usable keys, or the revocation feed is too stale): 503.
    Unavailable(&'static str),
    /// The DPoP proof is missing, malformed, for another request or key, or replayed (RFC 9449 §7.1): 401
    /// `invalid_dpop_proof`, with a `DPoP` challenge naming the accepted algorithms.
    InvalidDpopProof(&'static str),
    /// The guard demands a nonce and the proof has none, or a stale one (RFC 9449 §9): 401 `use_dpop_nonce`, with
    /// this fresh nonce in `DPoP-Nonce` for the client's retry.
    UseDpopNonce(String),
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Missing
            | Rejection::Invalid(_)
            | Rejection::Revoked
            | Rejection::InvalidDpopProof(_)
            | Rejection::UseDpopNonce(_) => 401,
            Rejection::Malformed => 400,
            Rejection::InsufficientScope(_) | Rejection::InsufficientRole => 403,
            Rejection::Unavailable(_) => 503,
        }
    }

    /// A short reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Malformed => "malformed",
            Rejection::Invalid(why) => why,
            Rejection::Revoked => "revoked",
            Rejection::InsufficientScope(_) => "insufficient_scope",
            Rejection::InsufficientRole => "insufficient_role",
            Rejection::Unavailable(why) => why,
            Rejection::InvalidDpopProof(why) => why,
            Rejection::UseDpopNonce(_) => "nonce required",
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3), if the answer carries one.
    pub fn challenge(&self, realm: &str) -> Option<String> {
        let realm = realm.replace(['"', '\\'], "");
        match self {
            Rejection::Missing => Some(format!("Bearer realm=\"{realm}\"")),
            Rejection::Malformed => Some(format!("Bearer realm=\"{realm}\", error=\"invalid_request\"")),
            Rejection::Invalid(why) => {
                Some(format!("Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{why}\""))
            }
            Rejection::Revoked => {
                Some(format!("Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"revoked\""))
            }
            Rejection::InsufficientScope(scope) => {
                Some(format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{scope}\""))
            }
            Rejection::InsufficientRole => Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"role required\""
            )),
            Rejection::Unavailable(_) => None,
            Rejection::InvalidDpopProof(why) => Some(format!(
                "DPoP realm=\"{realm}\", error=\"invalid_dpop_proof\", error_description=\"{why}\", algs=\"{DPOP_ALGS}\""
            )),
            Rejection::UseDpopNonce(_) => Some(format!(
                "DPoP realm=\"{realm}\", error=\"use_dpop_nonce\", error_description=\"Resource server requires nonce in DPoP proof\", algs=\"{DPOP_ALGS}\""
            )),
        }
    }
}

impl Rejection {
    /// The `WWW-Authenticate` value for a request that used the `DPoP` scheme (RFC 9449 §7.1): the same error
    /// under the `DPoP` scheme, naming the proof algorithms the guard accepts.
    pub fn dpop_challenge(&self, realm: &str) -> Option<String> {
        let challenge = self.challenge(realm)?;
        match challenge.strip_prefix("Bearer") {
            Some(rest) => Some(format!("DPoP{rest}, algs=\"{DPOP_ALGS}\"")),
            None => Some(challenge),
        }
    }
}

/// What a request presents to [`Guard::authorize_request`].
#[derive(Debug, Clone, Copy)]
pub struct PresentedRequest<'a> {
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// Every `DPoP` header value (there must be exactly one with the `DPoP` scheme).
    pub dpop: &'a [&'a str],
    /// The request method.
    pub method: &'a str,
    /// The absolute URL the client addressed: what the proof's `htu` must name.
    pub url: &'a str,
}

fn dpop_reason(e: &JoseError) -> &'static str {
    use portcullis_jose::dpop::DpopError;
    match e {
        JoseError::Dpop(DpopError::WrongMethod) => "htm does not match",
        JoseError::Dpop(DpopError::WrongUrl) => "htu does not match",
        JoseError::Dpop(DpopError::Stale | DpopError::Future) => "iat out of range",
        JoseError::Dpop(DpopError::MissingAccessTokenHash | DpopError::WrongAccessTokenHash) => {
            "ath does not match the token"
        }
        JoseError::Dpop(DpopError::PrivateKey | DpopError::MissingKey) => "bad jwk",
        JoseError::WrongType => "typ is not dpop+jwt",
        JoseError::AlgNone | JoseError::AlgorithmNotAllowed(_) | JoseError::AlgorithmKeyMismatch { .. } => {
            "algorithm not allowed"
        }
        JoseError::BadSignature | JoseError::MalformedSignature(_) => "bad signature",
        JoseError::MissingClaim(_) | JoseError::ClaimType(_) => "missing or malformed claims",
        _ => "malformed proof",
    }
}

/// What revocation is judged on.
fn facts(identity: &Identity) -> TokenFacts<'_> {
    TokenFacts { jti: &identity.jti, sid: identity.session.as_deref(), sub: &identity.subject, iat: identity.issued_at }
}

fn reason_of(e: &JoseError) -> &'static str {
    match e {
        JoseError::Expired => "expired",
        JoseError::NotYetValid | JoseError::IssuedInFuture => "not yet valid",
        JoseError::WrongAudience => "wrong audience",
        JoseError::WrongIssuer => "wrong issuer",
        JoseError::WrongType => "wrong token type",
        JoseError::UnknownKey => "unknown key",
        JoseError::BadSignature | JoseError::MalformedSignature(_) => "bad signature",
        JoseError::AlgNone | JoseError::AlgorithmNotAllowed(_) | JoseError::AlgorithmKeyMismatch { .. } => {
            "algorithm not allowed"
        }
        JoseError::MissingClaim(_) | JoseError::ClaimType(_) | JoseError::ClaimOutOfRange(_) => "malformed claims",
        _ => "malformed token",
    }
}

/// The settings of a guard.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    pub issuer: String,
    /// Accepted audiences (at least one).
    pub audiences: Vec<String>,
    /// Allowed algorithms; default: every asymmetric one.
    pub algorithms: Vec<Algorithm>,
    /// Clock-skew allowance in seconds.
    pub leeway: i64,
    /// The JWKS URL; default: from the issuer's discovery document.
    pub jwks_uri: Option<String>,
    pub timing: JwksTiming,
    /// Client credentials for the issuer's `/events` revocation feed (scope `portcullis:events`).
    pub events: Option<(String, String)>,
    /// Refuse every token (503) when the feed has not been reached for this long; `None` keeps serving.
    pub fail_closed_after: Option<i64>,
    /// The realm of `WWW-Authenticate` challenges.
    pub realm: String,
    /// The origin clients address (`https://api.example`), which DPoP proofs name in `htu`. Set it when TLS is
    /// terminated in front of the service; unset, the request's own scheme (`http` unless absolute) and `Host`.
    pub public_origin: Option<String>,
    /// Demand server nonces in DPoP proofs (RFC 9449 §9), issued and checked with this secret; every instance
    /// behind one origin must share it. `None`: proofs need no nonce.
    pub dpop_nonces: Option<Arc<Nonces>>,
    /// Report every token use this guard lets through to the issuer's risk engine (`POST /risk/events`), with
    /// the `events` client credentials, which must also be allowed the scope `portcullis:risk`.
    pub report_token_uses: bool,
}

impl GuardConfig {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        GuardConfig {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            audiences: vec![audience.into()],
            algorithms: Algorithm::asymmetric().collect(),
            leeway: 30,
            jwks_uri: None,
            timing: JwksTiming::default(),
            events: None,
            fail_closed_after: None,
            realm: "api".into(),
            public_origin: None,
            dpop_nonces: None,
            report_token_uses: false,
        }
    }
}

#[derive(Debug, Default)]
struct Verified {
    keys: Option<Arc<KeySet>>,
    tokens: HashMap<[u8; 32], Arc<Identity>>,
}

/// A guard; cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Guard {
    inner: Arc<Inner>,
    /// A worker's own front to the verified-token cache, if this handle was made by [`Guard::for_worker`].
    front: Option<Arc<Mutex<Front>>>,
}

/// What one worker keeps of the verified tokens, so that a token it has seen costs it no shared lock, no
/// shared reference count and no SHA-256: every worker touching the same locks and counters on every request
/// costs more than the check itself once two cores do it. Everything here is tied to one key snapshot (a
/// new one empties it) and remembers the revocation set's version each token was last checked at (a new one
/// makes the next request check again), so it answers exactly what the shared path would.
#[derive(Debug, Default)]
struct Front {
    /// The keys the tokens below were verified with; none before the first request.
    keys: Option<KeysView>,
    tokens: hashbrown::HashTable<FrontEntry>,
    hasher: hashbrown::DefaultHashBuilder,
    bytes: usize,
    /// Hits not yet added to the shared counter, and the second they were last added at.
    pending_hits: u64,
    flushed_at: i64,
}

#[derive(Debug)]
struct FrontEntry {
    /// The token itself, compared in constant time and wiped when the entry goes (see [`Drop`] below).
    token: Box<str>,
    /// This worker's own copy, so that handing it out touches no other core's cache line.
    identity: Arc<Identity>,
    /// The revocation set's version when the token was last found not revoked.
    revocations: u64,
}

impl Drop for FrontEntry {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut *self.token);
    }
}

impl Front {
    fn count_hit(&mut self, now: i64, counter: &metrics::Counter) {
        self.pending_hits += 1;
        if self.pending_hits >= FRONT_HITS_BATCH || now != self.flushed_at {
            counter.increment(self.pending_hits);
            self.pending_hits = 0;
            self.flushed_at = now;
        }
    }

    fn insert(&mut self, token: &str, identity: &Identity, revocations: u64) {
        if self.tokens.len() >= FRONT_MAX_TOKENS || self.bytes + token.len() > FRONT_MAX_BYTES {
            self.tokens.clear();
            self.bytes = 0;
        }
        let hash = self.hasher.hash_one(token.as_bytes());
        let entry = FrontEntry { token: token.into(), identity: Arc::new(identity.clone()), revocations };
        self.bytes += token.len();
        self.tokens.insert_unique(hash, entry, |e| self.hasher.hash_one(e.token.as_bytes()));
    }
}

/// Whether a presented token is a remembered one, in time that does not depend on where they first differ (a
/// bearer token is a secret).
fn same_token(remembered: &str, presented: &str) -> bool {
    let (a, b) = (remembered.as_bytes(), presented.as_bytes());
    a.len() == b.len() && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

#[derive(Debug)]
struct Inner {
    config: GuardConfig,
    policy: Policy,
    jwks: Arc<JwksCache>,
    revocations: Arc<RevocationSet>,
    feed: Option<Arc<Feed>>,
    reporter: Option<crate::report::Reporter>,
    verified: RwLock<Verified>,
    clock: Clock,
    /// `portcullis_guard_verify_cache_total{result="hit"|"miss"}`, registered once at start.
    cache_hits: metrics::Counter,
    cache_misses: metrics::Counter,
    proof_policy: ProofPolicy,
    proof_jtis: std::sync::Mutex<JtiCache>,
    /// Every worker handle's front, so that [`Guard::flush_counts`] reaches them all.
    fronts: Mutex<Vec<Weak<Mutex<Front>>>>,
}

impl Guard {
    /// Builds a guard: discovery (unless `jwks_uri` is given), a first JWKS fetch, and the background refresh
    /// and revocation feed on the current Tokio runtime. Its metrics are registered here, so install the
    /// process's metrics recorder (if any) before starting the guard. A JWKS that cannot be fetched yet is not fatal: requests
    /// are refused with 503 until keys arrive.
    pub async fn start(config: GuardConfig) -> Result<Guard, GuardError> {
        Self::start_with_clock(config, Clock::default()).await
    }

    pub async fn start_with_clock(config: GuardConfig, clock: Clock) -> Result<Guard, GuardError> {
        if config.audiences.is_empty() {
            return Err(GuardError::Config("at least one audience is required".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| GuardError::Config(e.to_string()))?;
        let metadata = match &config.jwks_uri {
            Some(uri) => crate::feed::Metadata {
                jwks_uri: uri.clone(),
                token_endpoint: format!("{}/oauth2/token", config.issuer),
            },
            None => crate::feed::discover(&http, &config.issuer).await?,
        };
        let mut policy = Policy::builder().issuer(&config.issuer).typ(AT_JWT).algorithms(&config.algorithms);
        for aud in &config.audiences {
            policy = policy.audience(aud);
        }
        let policy = policy
            .require(["sub", "jti", "iat"])
            .leeway(config.leeway)
            .max_token_bytes(MAX_TOKEN_BYTES)
            .build()
            .map_err(|e| GuardError::Config(e.to_string()))?;
        let jwks = Arc::new(JwksCache::new(
            metadata.jwks_uri.clone(),
            http.clone(),
            config.timing,
            config.algorithms.clone(),
            clock.clone(),
        ));
        if let Err(e) = jwks.fetch().await {
            tracing::warn!(error = %e, "the first JWKS fetch failed; refusing tokens until keys arrive");
        }
        jwks.spawn_refresh();
        let revocations = Arc::new(RevocationSet::default());
        let reporter = match (&config.events, config.report_token_uses) {
            (Some((id, secret)), true) => {
                let token = crate::feed::ClientToken::new(
                    metadata.token_endpoint.clone(),
                    id.clone(),
                    secret.clone(),
                    "portcullis:risk",
                    clock.clone(),
                );
                Some(crate::report::Reporter::start(http.clone(), &config.issuer, token, clock.clone()))
            }
            (None, true) => return Err(GuardError::Config("reporting token uses needs client credentials".into())),
            _ => None,
        };
        let feed = match &config.events {
            Some((id, secret)) => {
                let feed = Arc::new(Feed::new(
                    http,
                    &config.issuer,
                    metadata.token_endpoint,
                    id.clone(),
                    secret.clone(),
                    Arc::clone(&jwks),
                    Arc::clone(&revocations),
                    clock.clone(),
                    config.leeway,
                ));
                feed.spawn();
                Some(feed)
            }
            None => None,
        };
        let inner = Inner {
            config,
            policy,
            jwks,
            revocations,
            feed,
            reporter,
            verified: RwLock::default(),
            clock,
            cache_hits: metrics::counter!(VERIFY_CACHE, "result" => "hit"),
            cache_misses: metrics::counter!(VERIFY_CACHE, "result" => "miss"),
            // Clients sign every proof with one key: parse each client's key once.
            proof_policy: ProofPolicy {
                keys: Some(Arc::new(ProofKeys::new(MAX_PROOF_KEYS))),
                ..ProofPolicy::default()
            },
            proof_jtis: std::sync::Mutex::new(JtiCache::new(MAX_PROOF_JTIS)),
            fronts: Mutex::default(),
        };
        Ok(Guard { inner: Arc::new(inner), front: None })
    }

    /// The same guard, with a front cache of its own for one worker thread (the gateway makes one per worker):
    /// a token this handle has seen is then judged without touching state other threads write, which on a
    /// busy multi-core host costs more than the check. Answers are the same as the shared guard's: the front
    /// follows key replacements and revocations as they happen. Clones of the handle share its front.
    pub fn for_worker(&self) -> Guard {
        let front = Arc::default();
        let mut fronts = self.inner.fronts.lock().unwrap_or_else(PoisonError::into_inner);
        fronts.retain(|f| f.strong_count() > 0);
        fronts.push(Arc::downgrade(&front));
        Guard { inner: Arc::clone(&self.inner), front: Some(front) }
    }

    /// Adds the cache hits every worker handle has counted but not yet added (each adds them every 64 hits or
    /// second while it serves) to `portcullis_guard_verify_cache_total`: call it before rendering metrics.
    pub fn flush_counts(&self) {
        let fronts: Vec<Arc<Mutex<Front>>> =
            self.inner.fronts.lock().unwrap_or_else(PoisonError::into_inner).iter().filter_map(Weak::upgrade).collect();
        for front in fronts {
            let mut f = front.lock().unwrap_or_else(PoisonError::into_inner);
            self.inner.cache_hits.increment(std::mem::take(&mut f.pending_hits));
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.inner.config
    }

    pub fn jwks(&self) -> &JwksCache {
        &self.inner.jwks
    }

    pub fn revocations(&self) -> &RevocationSet {
        &self.inner.revocations
    }

    /// Reports a token use this guard let through to the issuer's risk engine, when configured to; never waits.
    /// `ip` is the client's address (the peer, or what a trusted proxy in front says).
    pub fn report_use(&self, identity: &Identity, ip: Option<std::net::IpAddr>, headers: &http::HeaderMap) {
        if let (Some(reporter), Some(ip)) = (&self.inner.reporter, ip) {
            let user_agent = headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
            reporter.report(identity, ip, user_agent);
        }
    }

    /// Seconds since the revocation feed last answered, if a feed is configured.
    pub fn feed_lag(&self) -> Option<i64> {
        self.inner.feed.as_ref().map(|f| f.lag())
    }

    /// Whether an identity let through earlier still holds now: its token has not expired (with the leeway) and
    /// has not been revoked since. For what outlives one request, such as an upgraded (WebSocket) connection.
    pub fn still_holds(&self, identity: &Identity) -> Result<(), Rejection> {
        if self.now() >= identity.expires_at.saturating_add(self.inner.config.leeway) {
            return Err(Rejection::Invalid("expired"));
        }
        if self.inner.revocations.is_revoked(&facts(identity)) {
            return Err(Rejection::Revoked);
        }
        Ok(())
    }

    fn now(&self) -> i64 {
        self.inner.clock.now().as_secs()
    }

    /// Judges the value of an `Authorization` header (or its absence) for a route with `requirement`.
    pub async fn authorize(
        &self,
        authorization: Option<&str>,
        requirement: &Requirement,
    ) -> Result<Arc<Identity>, Rejection> {
        let token = match authorization.map(crate::split_authorization) {
            None => return Err(Rejection::Missing),
            Some(Some((crate::Scheme::Bearer, token))) => token,
            Some(_) => return Err(Rejection::Malformed),
        };
        let identity = match self.verify(token) {
            Ok(identity) => identity,
            // The header's grammar (RFC 6750 §2.1) is checked only for a token that did not verify, since every
            // token that does is a token68: a cache hit then reads the token once, in the lookup, not twice.
            Err(_) if !crate::is_token68(token.as_bytes()) => return Err(Rejection::Malformed),
            Err(Rejection::Invalid("unknown key")) if self.inner.jwks.refetch_for_unknown_kid().await => {
                self.verify(token)?
            }
            Err(rejection) => return Err(rejection),
        };
        // RFC 9449 §7.1: a token bound to a key is useless without a proof of that key, so it is refused as a
        // bearer token (a thief holding only the token would otherwise pass).
        if identity.bound_jkt.is_some() {
            return Err(Rejection::Invalid("DPoP-bound token sent as Bearer"));
        }
        requirement.check(&identity)?;
        Ok(identity)
    }

    /// Judges a request that may present a DPoP-bound token (RFC 9449 §7): `Authorization: Bearer` as
    /// [`Guard::authorize`] does, or `Authorization: DPoP` with exactly one `DPoP` proof, which must be valid for
    /// this `method` and `url` (the absolute URL the client addressed), carry the hash of the token, be signed by
    /// the key the token is bound to (`cnf.jkt`) and not have been used before. The proof is checked on every
    /// request, cached token or not.
    pub async fn authorize_request(
        &self,
        request: &PresentedRequest<'_>,
        requirement: &Requirement,
    ) -> Result<Arc<Identity>, Rejection> {
        // Only the scheme is read here: a bearer token's grammar is `authorize`'s to check, and only if it fails.
        let Some((crate::Scheme::Dpop, token)) = request.authorization.and_then(crate::split_authorization) else {
            return self.authorize(request.authorization, requirement).await;
        };
        if !crate::is_token68(token.as_bytes()) {
            return Err(Rejection::Malformed);
        }
        let [proof] = request.dpop else {
            return Err(Rejection::InvalidDpopProof("exactly one DPoP header is required"));
        };
        let identity = match self.verify(token) {
            Err(Rejection::Invalid("unknown key")) if self.inner.jwks.refetch_for_unknown_kid().await => {
                self.verify(token)?
            }
            other => other?,
        };
        let Some(bound) = identity.bound_jkt.as_deref() else {
            return Err(Rejection::Invalid("token is not bound to a DPoP key"));
        };
        let now = self.inner.clock.now();
        let checked = ProofRequest { method: request.method, url: request.url, access_token: Some(token), nonce: None };
        let proof = verify_proof(proof, &checked, &self.inner.proof_policy, now)
            .map_err(|e| Rejection::InvalidDpopProof(dpop_reason(&e)))?;
        if proof.jkt != bound {
            return Err(Rejection::InvalidDpopProof("the proof's key is not the token's key"));
        }
        // Checked before the jti is recorded: the retry with a nonce is a new proof, and this one burns nothing.
        if let Some(nonces) = &self.inner.config.dpop_nonces {
            if !proof.nonce.as_deref().is_some_and(|n| nonces.accepts(n, now)) {
                return Err(Rejection::UseDpopNonce(nonces.issue(now)));
            }
        }
        let mut jtis = self.inner.proof_jtis.lock().unwrap_or_else(|p| p.into_inner());
        jtis.record(&proof, &self.inner.proof_policy, now)
            .map_err(|_| Rejection::InvalidDpopProof("replayed proof"))?;
        drop(jtis);
        requirement.check(&identity)?;
        Ok(identity)
    }

    /// Verifies a token and checks revocation (no route policy). Synchronous; never fetches.
    pub fn verify(&self, token: &str) -> Result<Arc<Identity>, Rejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::Invalid("token too large"));
        }
        let now = self.now();
        if let (Some(bound), Some(feed)) = (self.inner.config.fail_closed_after, &self.inner.feed) {
            if feed.lag() > bound {
                return Err(Rejection::Unavailable("revocation feed unreachable"));
            }
        }
        match &self.front {
            Some(front) => self.verify_in_front(front, token, now),
            None => {
                let keys = self.inner.jwks.keys().ok_or(Rejection::Unavailable("no usable keys"))?;
                self.verify_shared(token, &keys, now)
            }
        }
    }

    /// [`Guard::verify`] through a worker's front: a token it holds is judged there (lifetime, and revocation
    /// again only if the set changed since); any other goes the shared way and is then remembered.
    fn verify_in_front(&self, front: &Mutex<Front>, token: &str, now: i64) -> Result<Arc<Identity>, Rejection> {
        let mut f = front.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = self.inner.jwks.generation();
        if f.keys.as_ref().is_none_or(|k| k.generation != generation) {
            // New keys: what was verified with the old ones is forgotten (a removed key stops verifying).
            f.tokens.clear();
            f.bytes = 0;
            f.keys = self.inner.jwks.view();
        }
        let keys = match &f.keys {
            Some(view) if self.inner.jwks.usable(view, now) => Arc::clone(&view.keys),
            _ => return Err(Rejection::Unavailable("no usable keys")),
        };
        let generation = f.keys.as_ref().map_or(0, |k| k.generation);
        let hash = f.hasher.hash_one(token.as_bytes());
        if let Some(entry) = f.tokens.find_mut(hash, |e| same_token(&e.token, token)) {
            if now >= entry.identity.expires_at.saturating_add(self.inner.config.leeway) {
                return Err(Rejection::Invalid("expired"));
            }
            let version = self.inner.revocations.version();
            if entry.revocations != version {
                if self.inner.revocations.is_revoked(&facts(&entry.identity)) {
                    return Err(Rejection::Revoked);
                }
                entry.revocations = version;
            }
            let identity = Arc::clone(&entry.identity);
            f.count_hit(now, &self.inner.cache_hits);
            return Ok(identity);
        }
        drop(f);
        // Read before the shared path checks revocation, so a revocation landing in between is checked again.
        let revocations = self.inner.revocations.version();
        let identity = self.verify_shared(token, &keys, now)?;
        let mut f = front.lock().unwrap_or_else(PoisonError::into_inner);
        if f.keys.as_ref().is_some_and(|k| k.generation == generation) {
            f.insert(token, &identity, revocations);
        }
        Ok(identity)
    }

    /// The verified-token cache shared by every handle of this guard, then revocation.
    fn verify_shared(&self, token: &str, keys: &Arc<KeySet>, now: i64) -> Result<Arc<Identity>, Rejection> {
        let digest: [u8; 32] = {
            let mut out = [0u8; 32];
            out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
            out
        };
        let cached = self.cached(keys, &digest);
        if cached.is_some() { &self.inner.cache_hits } else { &self.inner.cache_misses }.increment(1);
        let identity = match cached {
            Some(identity) if now < identity.expires_at.saturating_add(self.inner.config.leeway) => identity,
            Some(_) => return Err(Rejection::Invalid("expired")),
            None => {
                let identity = self.verify_fully(token, keys)?;
                self.remember(keys, digest, Arc::clone(&identity));
                identity
            }
        };
        if self.inner.revocations.is_revoked(&facts(&identity)) {
            return Err(Rejection::Revoked);
        }
        Ok(identity)
    }

    fn verify_fully(&self, token: &str, keys: &KeySet) -> Result<Arc<Identity>, Rejection> {
        let now = self.inner.clock.now();
        let verified =
            jwt::verify(token, keys, &self.inner.policy, now).map_err(|e| Rejection::Invalid(reason_of(&e)))?;
        let c = &verified.claims;
        let strings = |name: &str| -> Vec<String> {
            c.get(name).and_then(|v| serde_json::from_str::<Vec<String>>(v.text()).ok()).unwrap_or_default()
        };
        let malformed = Rejection::Invalid("malformed claims");
        Ok(Arc::new(Identity {
            subject: c.sub().ok_or(malformed.clone())?.into_owned(),
            client_id: c.client_id().map(|s| s.into_owned()).unwrap_or_default(),
            scopes: c
                .scope()
                .map(|s| s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default(),
            roles: strings("roles"),
            audiences: c.aud().into_iter().map(|a| a.into_owned()).collect(),
            jti: c.jti().ok_or(malformed.clone())?.into_owned(),
            session: c.string("sid").map(|s| s.into_owned()),
            issued_at: c.iat().ok_or(malformed.clone())?,
            expires_at: c.exp().ok_or(malformed.clone())?,
            // A `cnf` without a usable `jkt` makes the token malformed (see `confirmation_jkt`).
            bound_jkt: c.confirmation_jkt().map_err(|_| malformed)?,
        }))
    }

    fn cached(&self, keys: &Arc<KeySet>, digest: &[u8; 32]) -> Option<Arc<Identity>> {
        let v = self.inner.verified.read().ok()?;
        match &v.keys {
            Some(k) if Arc::ptr_eq(k, keys) => v.tokens.get(digest).cloned(),
            _ => None,
        }
    }

    fn remember(&self, keys: &Arc<KeySet>, digest: [u8; 32], identity: Arc<Identity>) {
        let Ok(mut v) = self.inner.verified.write() else { return };
        let same = v.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys));
        if !same || v.tokens.len() >= MAX_CACHED {
            v.tokens.clear();
            v.keys = Some(Arc::clone(keys));
        }
        v.tokens.insert(digest, identity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_the_same_only_byte_for_byte() {
        assert!(same_token("abc.def.ghi", "abc.def.ghi"));
        assert!(!same_token("abc.def.ghi", "abc.def.ghj"), "last byte");
        assert!(!same_token("abc.def.ghi", "Abc.def.ghi"), "first byte");
        assert!(!same_token("abc.def.ghi", "abc.def.gh"), "a prefix");
        assert!(!same_token("abc", "abc.def"), "an extension");
        assert!(same_token("", ""));
    }

    #[test]
    fn a_full_front_starts_over() {
        let identity = Identity {
            subject: "s".into(),
            client_id: "c".into(),
            scopes: vec![],
            roles: vec![],
            audiences: vec!["api".into()],
            jti: "j".into(),
            session: None,
            issued_at: 0,
            expires_at: 10,
            bound_jkt: None,
        };
        let mut front = Front::default();
        for i in 0..FRONT_MAX_TOKENS {
            front.insert(&format!("t{i}"), &identity, 0);
        }
        assert_eq!(front.tokens.len(), FRONT_MAX_TOKENS);
        front.insert("one more", &identity, 0);
        assert_eq!((front.tokens.len(), front.bytes), (1, "one more".len()), "emptied, then the new one");
        let big = "x".repeat(FRONT_MAX_BYTES / 2);
        front.insert(&big, &identity, 0);
        front.insert(&big.replace('x', "y"), &identity, 0);
        assert_eq!(front.tokens.len(), 1, "bounded by bytes too");
        let hash = front.hasher.hash_one(b"one more");
        assert!(front.tokens.find(hash, |e| same_token(&e.token, "one more")).is_none());
    }
}
