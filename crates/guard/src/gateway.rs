//! `portcullis gateway`: the guard in front of any API, from one TOML file, in two modes at once.
//! - **Reverse proxy**: a request matching a route (host, path prefix, methods) is authorized with the route's
//!   audience, scopes and roles, then streamed to the route's upstream over a pooled HTTP client, with the
//!   identity in `X-Auth-Subject`, `X-Auth-Client`, `X-Auth-Scopes` and `X-Auth-Roles`. Incoming `X-Auth-*`
//!   headers are always stripped, so clients cannot spoof an identity.
//! - **Forward auth** at `GET /check` for the proxies people already run (nginx `auth_request`, Traefik
//!   `forwardAuth`, Caddy `forward_auth`): the original method and URI come from
//!   `X-Forwarded-Method`/`X-Forwarded-Uri` (or nginx's `X-Original-Method`/`X-Original-URI`). Envoy's HTTP
//!   `ext_authz` calls `/check/<original path>` with the original method. The answer is 200 with the `X-Auth-*`
//!   headers, or 401/403 with the RFC 6750 challenge.
//!
//! Routes are matched on the normal form of the path, and a path that readers could resolve differently
//! (`/public/../admin`, `//admin`, `%2F`) is refused: see [`crate::target`].
//!
//! `/healthz` and `/metrics` (Prometheus) are served by the gateway itself.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use portcullis_http::tls::Tls;
use serde::Deserialize;
use smallvec::SmallVec;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::layer::{authorize_http, rejection_response_for, request_origin, scheme_of};
use crate::upstream::{Failed, Origin, UpstreamError, Upstreams};
use crate::{Guard, GuardConfig, GuardError, Identity, Requirement};

/// `gateway.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The authorization server; keys via its discovery, revocations via its `/events`.
    pub issuer: String,
    /// The client the gateway reads `/events` as (scope `portcullis:events`).
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    /// Refuse every token when the revocation feed has been unreachable this long (seconds); unset: keep serving.
    pub fail_closed_after: Option<i64>,
    /// Seconds an upstream may take to answer.
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout: u64,
    /// Seconds a client may take to send a request head, from when the gateway starts waiting for it (a new
    /// connection, or a kept-alive one after a response: this also closes idle connections).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: u64,
    /// The most client connections served at once, shared evenly by the workers; more wait in the listen backlog
    /// until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Worker threads, each accepting and serving its own connections; 0 (the default) is one per core.
    #[serde(default)]
    pub workers: usize,
    /// The origin clients address (`https://api.example`), which DPoP proofs name in `htu`. Unset: forward auth
    /// uses `X-Forwarded-Proto` and `X-Forwarded-Host` when the proxy sends both, else `http://` and `Host`.
    pub public_origin: Option<String>,
    /// A file holding the secret (at least 32 bytes, e.g. `openssl rand -base64 32`) of the DPoP nonces the
    /// gateway then demands (RFC 9449 §9); every gateway behind one origin needs the same file.
    pub dpop_nonce_secret_file: Option<PathBuf>,
    /// Report every token use let through to the issuer's risk engine (the client also needs the scope
    /// `portcullis:risk`). In forward-auth mode the client's address is the last entry of `X-Forwarded-For` (the
    /// one the proxy in front added), else `X-Real-IP`.
    #[serde(default)]
    pub report_token_uses: bool,
    /// Log every request let through (method, path, status, subject, client, `jti`, upstream time, client
    /// address); refusals are always logged.
    #[serde(default)]
    pub access_log: bool,
    /// The largest request body passed to an upstream, in bytes (0: no limit). A larger declared
    /// `Content-Length` is answered 413 before the upstream is contacted; a chunked body is cut off where it passes
    /// the limit, and answered 413 unless the upstream has answered already.
    #[serde(default = "default_max_body_size")]
    pub max_body_size: u64,
    /// The load balancers and proxies in front of the gateway, comma-separated addresses or CIDR ranges. A
    /// request from one of them comes from the last `X-Forwarded-For` entry that is not one of them (for the
    /// refusal and access logs and the token uses reported to the risk engine); empty: from the connection's
    /// address. The `X-Forwarded-For` passed upstream still ends with the connection's address. At `/check` the
    /// last entry is the client's unless it is one of them, in which case the walk goes on to the left.
    #[serde(default)]
    pub trusted_proxies: String,
    /// Serve HTTPS with this certificate chain (PEM, leaf first) and private key (PEM); set both, or neither.
    /// The files are read again every minute, so a renewed certificate is served without a restart.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve `/metrics` (and `/healthz`) on this address, in plain HTTP, instead of on `listen`, where the path is
    /// then routed like any other: a port for the monitoring network only.
    pub metrics_listen: Option<String>,
    /// For `https://` upstreams: trust the CA certificates in this file (PEM) and no others. Unset: the system's
    /// trust store.
    pub upstream_ca: Option<PathBuf>,
    #[serde(rename = "route", default)]
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    pub host: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    /// Where matching requests go (`http://` or `https://`); without it the route serves forward auth only.
    pub upstream: Option<String>,
    /// Instead of `upstream`: several servers of one API (same path), taken in turn. One that cannot be connected
    /// to is passed over for [`UPSTREAM_DOWN_FOR`], and the request goes to the next.
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// The audience tokens must name (required unless `public`).
    #[serde(default)]
    pub audience: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// No token needed (health checks, public assets); identity headers are still stripped.
    #[serde(default)]
    pub public: bool,
}

fn default_listen() -> String {
    "127.0.0.1:8081".into()
}
fn default_upstream_timeout() -> u64 {
    30
}
fn default_header_timeout() -> u64 {
    30
}
fn default_max_body_size() -> u64 {
    10 * 1024 * 1024
}
fn default_max_connections() -> usize {
    10_000
}
fn default_realm() -> String {
    "api".into()
}
fn default_prefix() -> String {
    "/".into()
}

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<GatewayConfig, GuardError> {
        let text = std::fs::read_to_string(path).map_err(|e| GuardError::Config(format!("{}: {e}", path.display())))?;
        let config: GatewayConfig =
            toml::from_str(&text).map_err(|e| GuardError::Config(format!("{}: {e}", path.display())))?;
        Ok(config)
    }

    /// Checks everything the gateway would check at start short of the network (routes, addresses, the files it
    /// reads: secrets, certificate and key), as `nginx -t` does; returns a one-line summary.
    pub fn check(&self) -> Result<String, GuardError> {
        // What a start or a reload builds from the file: the routes and the other reloadable keys.
        let live = Live::new(self)?;
        let routes = &live.routes;
        for (key, listen) in [("listen", Some(&self.listen)), ("metrics_listen", self.metrics_listen.as_ref())] {
            if let Some(listen) = listen {
                if std::net::ToSocketAddrs::to_socket_addrs(listen.as_str()).map_or(true, |mut a| a.next().is_none()) {
                    return Err(GuardError::Config(format!(
                        "{key}: {listen:?} is not an address such as 127.0.0.1:8081"
                    )));
                }
            }
        }
        let issuer: Uri =
            self.issuer.parse().map_err(|_| GuardError::Config(format!("issuer {:?} is not a URL", self.issuer)))?;
        if issuer.scheme().is_none() || issuer.authority().is_none() {
            return Err(GuardError::Config(format!("issuer {:?} is not an absolute URL", self.issuer)));
        }
        self.nonce_secret()?;
        let feed = self.events_client()?.is_some();
        let tls = self.tls()?.is_some();
        let https = routes.iter().filter(|r| r.upstreams.iter().any(|u| u.origin.is_https())).count();
        let https_upstreams = if https > 0 { format!(" ({https} to HTTPS upstreams)") } else { String::new() };
        Ok(format!(
            "{} routes{https_upstreams}; {}; revocation feed {}; metrics on {}",
            routes.len(),
            if tls { "HTTPS" } else { "plain HTTP" },
            if feed { "on" } else { "off (revoked tokens pass until they expire)" },
            self.metrics_listen.as_deref().unwrap_or("listen")
        ))
    }

    fn nonce_secret(&self) -> Result<Option<Arc<portcullis_jose::dpop::Nonces>>, GuardError> {
        let Some(file) = &self.dpop_nonce_secret_file else { return Ok(None) };
        let secret = std::fs::read(file)
            .map_err(|e| GuardError::Config(format!("dpop_nonce_secret_file {}: {e}", file.display())))?;
        let secret = zeroize::Zeroizing::new(secret);
        let secret = secret.trim_ascii();
        if secret.len() < 32 {
            return Err(GuardError::Config(format!(
                "dpop_nonce_secret_file {}: the secret must be at least 32 bytes",
                file.display()
            )));
        }
        Ok(Some(Arc::new(portcullis_jose::dpop::Nonces::new(secret))))
    }

    fn events_client(&self) -> Result<Option<(String, String)>, GuardError> {
        match (&self.client_id, &self.client_secret_file) {
            (Some(id), Some(file)) => {
                let secret = std::fs::read_to_string(file)
                    .map_err(|e| GuardError::Config(format!("client_secret_file {}: {e}", file.display())))?;
                Ok(Some((id.clone(), secret.trim().to_owned())))
            }
            (None, None) => Ok(None),
            _ => Err(GuardError::Config("client_id and client_secret_file: set both, or neither".into())),
        }
    }

    fn tls(&self) -> Result<Option<Tls>, GuardError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Tls::load(cert, key, &["h2", "http/1.1"]).map(Some).map_err(|e| GuardError::Config(format!("TLS: {e}")))
            }
            (None, None) => Ok(None),
            _ => Err(GuardError::Config("tls_cert and tls_key: set both, or neither".into())),
        }
    }
}

#[derive(Debug, Clone)]
struct Route {
    prefix: String,
    host: Option<String>,
    methods: Vec<Method>,
    /// Where matching requests go, parsed once: none (forward auth only), one, or several taken in turn.
    upstreams: Vec<Upstream>,
    /// The base path every upstream shares, without a trailing slash.
    base: String,
    /// Which upstream is next, when there are several.
    turn: Turn,
    /// `None` for a public route.
    requirement: Option<Requirement>,
}

/// How long an upstream that could not be connected to is passed over (while another of its route is up), as
/// nginx's `fail_timeout`.
pub const UPSTREAM_DOWN_FOR: Duration = Duration::from_secs(10);

/// The most upstreams a route may have.
const MAX_UPSTREAMS: usize = 64;

/// A route's round-robin counter. Each worker's copy of the routes counts on its own (a count shared by the
/// cores would cost a cache-line transfer per request).
#[derive(Debug, Default)]
struct Turn(AtomicUsize);

impl Clone for Turn {
    fn clone(&self) -> Self {
        Turn::default()
    }
}

#[derive(Debug)]
struct Upstream {
    origin: Origin,
    /// The `Host` header sent there.
    host: HeaderValue,
    /// Passed over until then (this worker's view), after a connection to it failed.
    down_until: Mutex<Option<Instant>>,
}

impl Clone for Upstream {
    /// A copy that shares no reference count with the original: each worker sets `Host` from its own copy on
    /// every request, and a count shared by two cores costs more than the copy. Each worker learns on its own
    /// which upstreams are down.
    fn clone(&self) -> Self {
        let host = HeaderValue::from_bytes(self.host.as_bytes()).unwrap_or_else(|_| self.host.clone());
        Upstream { origin: self.origin.clone(), host, down_until: Mutex::new(None) }
    }
}

impl Upstream {
    fn is_up(&self, now: Instant) -> bool {
        self.down_until.lock().unwrap_or_else(PoisonError::into_inner).is_none_or(|until| now >= until)
    }

    fn pass_over(&self, now: Instant) {
        *self.down_until.lock().unwrap_or_else(PoisonError::into_inner) = Some(now + UPSTREAM_DOWN_FOR);
    }
}

impl Route {
    fn matches(&self, host: Option<&str>, method: &Method, path: &str) -> bool {
        let host_ok = match (&self.host, host) {
            (None, _) => true,
            (Some(want), Some(got)) => host_of(got).eq_ignore_ascii_case(want.strip_suffix('.').unwrap_or(want)),
            (Some(_), None) => false,
        };
        host_ok && path.starts_with(&self.prefix) && (self.methods.is_empty() || self.methods.contains(method))
    }

    /// Where the next request starts looking for an upstream.
    fn first_turn(&self) -> usize {
        match self.upstreams.len() {
            0 | 1 => 0,
            n => self.turn.0.fetch_add(1, Ordering::Relaxed) % n,
        }
    }

    /// The upstream to try next, from `start` on and not in `tried` (a bit per upstream): the first that is up,
    /// else the first that is not (an upstream passed over may be back). `None` once every one was tried.
    /// `now` is read here when not given: with one upstream, no clock is read.
    fn next_upstream(&self, start: usize, tried: u64, now: Option<Instant>) -> Option<usize> {
        let n = self.upstreams.len();
        if n == 1 {
            return (tried == 0).then_some(0);
        }
        let now = now.unwrap_or_else(Instant::now);
        let untried = || (0..n).map(|i| (start + i) % n).filter(|i| tried & (1 << i) == 0);
        untried().find(|&i| self.upstreams[i].is_up(now)).or_else(|| untried().next())
    }
}

/// The host of a `Host` header (or `X-Forwarded-Host`) value: without the port, an IPv6 literal with its
/// brackets, and without a trailing dot (`api.example.` names the same host as `api.example`).
fn host_of(authority: &str) -> &str {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.find(']').map_or(authority, |end| &authority[..end + 2]),
        None => authority.split(':').next().unwrap_or(authority),
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// A running gateway's shared state.
#[derive(Debug)]
pub struct Gateway {
    guard: Guard,
    /// What a reload replaces: this worker's copy of the routes and of how requests are passed on.
    live: Arc<LiveCell>,
    /// Every worker's `live`, so that a reload reaches them all.
    lives: Arc<Mutex<Vec<Weak<LiveCell>>>>,
    /// The configuration the gateway started with: a reload that changes any key but the reloadable ones is
    /// refused.
    started: Arc<GatewayConfig>,
    upstreams: Arc<Upstreams>,
    metrics: Option<PrometheusHandle>,
    header_timeout: Duration,
    max_connections: usize,
    /// Open upgraded connections (WebSocket), at most `max_connections`, shared by every worker.
    tunnels: Arc<Semaphore>,
    /// HTTPS, when `tls_cert` and `tls_key` are set.
    tls: Option<Tls>,
    /// `/metrics` is served on a listener of its own (`metrics_listen`), not by [`Gateway::router`].
    metrics_elsewhere: bool,
    /// Handles for the series every request touches, registered once (a lookup by name and labels costs more
    /// than the increment).
    allowed: metrics::Counter,
    allowed_public: metrics::Counter,
    upstream_seconds: metrics::Histogram,
    /// This worker's tally of those, added to them in batches (see [`Tally`]).
    tally: Arc<Mutex<Tally>>,
    /// Every worker's tally, so that a scrape served by any worker adds them all.
    tallies: Arc<Mutex<Vec<Weak<Mutex<Tally>>>>>,
}

/// What a reload may change: the routes, and how requests are passed on.
#[derive(Debug, Clone)]
struct Live {
    routes: Vec<Route>,
    /// `trusted_proxies`.
    trusted_proxies: Vec<portcullis_http::forwarded::IpNet>,
    /// `upstream_timeout`.
    timeout: Duration,
    access_log: bool,
    /// `max_body_size`, `None` for no limit.
    max_body: Option<u64>,
}

/// A worker's current [`Live`], replaced whole by a reload; a request keeps the one it started with.
type LiveCell = RwLock<Arc<Live>>;

impl Live {
    fn new(config: &GatewayConfig) -> Result<Live, GuardError> {
        let trusted_proxies = portcullis_http::forwarded::parse_networks(&config.trusted_proxies)
            .map_err(|bad| GuardError::Config(format!("trusted_proxies: {bad:?} is not an address or a CIDR range")))?;
        Ok(Live {
            routes: parse_routes(config)?,
            trusted_proxies,
            // At most a year, so that a deadline (now + timeout) cannot overflow the clock.
            timeout: Duration::from_secs(config.upstream_timeout.clamp(1, 365 * 86_400)),
            access_log: config.access_log,
            max_body: (config.max_body_size > 0).then_some(config.max_body_size),
        })
    }

    /// The route for a request, judged on the normal form of its path; `Err` when the path is ambiguous
    /// (dot segments, `//`, encoded separators: see [`crate::target`]) and must be refused.
    fn route(&self, host: Option<&str>, method: &Method, path: &str) -> Result<Option<&Route>, ()> {
        let path = crate::target::normalize(path).ok_or(())?;
        Ok(self.routes.iter().find(|r| r.matches(host, method, &path)))
    }
}

/// The keys of `gateway.toml` that a reload cannot change, with whether they differ between `a` and `b`. The
/// pattern names every key, so that a new one must be placed here as reloadable or not.
fn restart_keys(a: &GatewayConfig, b: &GatewayConfig) -> [(&'static str, bool); 15] {
    let GatewayConfig {
        listen,
        issuer,
        client_id,
        client_secret_file,
        fail_closed_after,
        header_timeout,
        max_connections,
        realm,
        workers,
        public_origin,
        dpop_nonce_secret_file,
        report_token_uses,
        tls_cert,
        tls_key,
        metrics_listen,
        // Reloadable (see `Live`).
        upstream_timeout: _,
        access_log: _,
        max_body_size: _,
        trusted_proxies: _,
        upstream_ca: _,
        routes: _,
    } = a;
    [
        ("listen", *listen != b.listen),
        ("issuer", *issuer != b.issuer),
        ("client_id", *client_id != b.client_id),
        ("client_secret_file", *client_secret_file != b.client_secret_file),
        ("fail_closed_after", *fail_closed_after != b.fail_closed_after),
        ("header_timeout", *header_timeout != b.header_timeout),
        ("max_connections", *max_connections != b.max_connections),
        ("realm", *realm != b.realm),
        ("workers", *workers != b.workers),
        ("public_origin", *public_origin != b.public_origin),
        ("dpop_nonce_secret_file", *dpop_nonce_secret_file != b.dpop_nonce_secret_file),
        ("report_token_uses", *report_token_uses != b.report_token_uses),
        ("tls_cert", *tls_cert != b.tls_cert),
        ("tls_key", *tls_key != b.tls_key),
        ("metrics_listen", *metrics_listen != b.metrics_listen),
    ]
}

/// What a worker's requests add to the series every request touches, kept by the worker and added to the
/// shared metrics every [`TALLY_BATCH`] requests, at least once a second while requests flow, and whenever any
/// worker renders `/metrics`: two workers writing one counter on every request cost more than the count.
#[derive(Debug, Default)]
struct Tally {
    allowed: u64,
    allowed_public: u64,
    upstream_seconds: Vec<f64>,
    pending: usize,
    flushed_at: Option<Instant>,
}

const TALLY_BATCH: usize = 64;

impl Gateway {
    /// Adds one request's counts to this worker's tally, and the tally to the shared metrics when due.
    fn count(&self, now: Instant, add: impl FnOnce(&mut Tally)) {
        let mut t = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        add(&mut t);
        t.pending += 1;
        if t.pending >= TALLY_BATCH || t.flushed_at.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
            self.flush(&mut t, now);
        }
    }

    fn flush(&self, t: &mut Tally, now: Instant) {
        self.allowed.increment(std::mem::take(&mut t.allowed));
        self.allowed_public.increment(std::mem::take(&mut t.allowed_public));
        for seconds in t.upstream_seconds.drain(..) {
            self.upstream_seconds.record(seconds);
        }
        t.pending = 0;
        t.flushed_at = Some(now);
    }

    /// Adds every worker's tally (and every worker's count of verified-token cache hits) to the shared
    /// metrics, for a scrape: a worker with no traffic since would otherwise hold its last counts back.
    fn flush_all(&self, now: Instant) {
        let tallies: Vec<Arc<Mutex<Tally>>> = {
            let mut list = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        for tally in tallies {
            self.flush(&mut tally.lock().unwrap_or_else(PoisonError::into_inner), now);
        }
        self.guard.flush_counts();
    }
}

fn parse_routes(config: &GatewayConfig) -> Result<Vec<Route>, GuardError> {
    // One TLS client for every HTTPS upstream, made only if there is one (or a CA file to check).
    let https = |r: &RouteConfig| r.upstream.iter().chain(&r.upstreams).any(|u| u.starts_with("https://"));
    let upstream_tls = if config.routes.iter().any(https) || config.upstream_ca.is_some() {
        let tls = portcullis_http::tls::client(config.upstream_ca.as_deref())
            .map_err(|e| GuardError::Config(format!("upstream_ca: {e}")))?;
        Some(tls)
    } else {
        None
    };
    let mut routes = Vec::new();
    for (i, r) in config.routes.iter().enumerate() {
        let bad = |why: String| GuardError::Config(format!("route {} ({}): {why}", i + 1, r.path_prefix));
        if !r.path_prefix.starts_with('/') {
            return Err(bad("path_prefix must start with /".into()));
        }
        let methods = r
            .methods
            .iter()
            .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| bad(format!("method {m:?}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if r.upstream.is_some() && !r.upstreams.is_empty() {
            return Err(bad("set upstream or upstreams, not both".into()));
        }
        if r.upstreams.len() > MAX_UPSTREAMS {
            return Err(bad(format!("at most {MAX_UPSTREAMS} upstreams")));
        }
        let mut base = None;
        let mut upstreams = Vec::new();
        for u in r.upstream.iter().chain(&r.upstreams) {
            let upstream = {
                let uri: Uri = u.parse().map_err(|_| bad(format!("upstream {u:?} is not a URL")))?;
                let authority = uri.authority().ok_or_else(|| bad("upstream has no host".into()))?.clone();
                if authority.as_str().contains('@') {
                    return Err(bad("upstream must not carry credentials (user@host)".into()));
                }
                let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad(format!("upstream {u:?}")))?;
                let origin = match (uri.scheme_str(), &upstream_tls) {
                    (Some("http"), _) => Origin::http(authority),
                    (Some("https"), Some(tls)) => Origin::https(authority, tls.clone())
                        .ok_or_else(|| bad(format!("upstream {u:?}: the host is not a DNS name or an IP address")))?,
                    _ => return Err(bad("upstream must be http:// or https://".into())),
                };
                let path = uri.path().trim_end_matches('/');
                match &base {
                    None => base = Some(path.to_owned()),
                    Some(base) if base != path => {
                        return Err(bad(format!("upstreams must share one path ({base:?} and {path:?})")))
                    }
                    Some(_) => {}
                }
                Upstream { origin, host, down_until: Mutex::new(None) }
            };
            upstreams.push(upstream);
        }
        if !r.public && r.audience.is_empty() {
            return Err(bad("audience is required (or public = true)".into()));
        }
        let requirement = (!r.public).then(|| Requirement {
            scopes: r.scopes.clone(),
            roles: r.roles.clone(),
            audience: Some(r.audience.clone()),
        });
        routes.push(Route {
            prefix: r.path_prefix.clone(),
            host: r.host.clone(),
            methods,
            upstreams,
            base: base.unwrap_or_default(),
            turn: Turn::default(),
            requirement,
        });
    }
    if routes.is_empty() {
        return Err(GuardError::Config("no [[route]] is configured".into()));
    }
    // The most specific prefix wins.
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    Ok(routes)
}

impl Gateway {
    /// Builds the gateway: the routes, a guard accepting every route's audience, and the upstream client.
    pub async fn start(config: &GatewayConfig, metrics: Option<PrometheusHandle>) -> Result<Arc<Gateway>, GuardError> {
        let live = Arc::new(RwLock::new(Arc::new(Live::new(config)?)));
        let mut audiences = config.routes.iter().filter(|r| !r.public).map(|r| r.audience.clone());
        let first = audiences.next().unwrap_or_else(|| "-".into());
        let mut guard_config = GuardConfig::new(&config.issuer, first);
        for aud in audiences {
            if !guard_config.audiences.contains(&aud) {
                guard_config.audiences.push(aud);
            }
        }
        guard_config.realm = config.realm.clone();
        guard_config.public_origin = config.public_origin.clone();
        guard_config.fail_closed_after = config.fail_closed_after;
        guard_config.report_token_uses = config.report_token_uses;
        guard_config.dpop_nonces = config.nonce_secret()?;
        guard_config.events = config.events_client()?;
        let tls = config.tls()?;
        if let Some(tls) = &tls {
            // Ends when the gateway is gone.
            tls.watch(TLS_RELOAD_INTERVAL);
        }
        let guard = Guard::start(guard_config).await?;
        let header_timeout = Duration::from_secs(config.header_timeout.max(1));
        let tally = Arc::default();
        Ok(Arc::new(Gateway {
            guard,
            lives: Arc::new(Mutex::new(vec![Arc::downgrade(&live)])),
            live,
            started: Arc::new(config.clone()),
            upstreams: Upstreams::new(),
            metrics,
            header_timeout,
            max_connections: config.max_connections.max(1),
            tunnels: Arc::new(Semaphore::new(config.max_connections.clamp(1, Semaphore::MAX_PERMITS))),
            tls,
            metrics_elsewhere: config.metrics_listen.is_some(),
            allowed: metrics::counter!(DECISIONS, "result" => "allow", "reason" => "ok"),
            allowed_public: metrics::counter!(DECISIONS, "result" => "allow", "reason" => "public"),
            upstream_seconds: metrics::histogram!("portcullis_gateway_upstream_seconds"),
            tally: Arc::clone(&tally),
            tallies: Arc::new(Mutex::new(vec![Arc::downgrade(&tally)])),
        }))
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// How long a client may take to send a request head (`header_timeout`).
    pub fn header_timeout(&self) -> Duration {
        self.header_timeout
    }

    /// The most client connections served at once, over all workers (`max_connections`).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The TLS configuration, when the gateway serves HTTPS.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// `https` when the gateway serves HTTPS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The same gateway (guard, routes, metrics) with an upstream connection pool of its own, for a worker
    /// thread: a connection then lives and is used on one thread only.
    pub fn for_worker(&self) -> Arc<Gateway> {
        let tally = Arc::default();
        self.tallies.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::downgrade(&tally));
        // The copy is made under the list's lock, so that a reload cannot pass between the copy and its entry.
        let mut lives = self.lives.lock().unwrap_or_else(PoisonError::into_inner);
        let live = Arc::new(RwLock::new(Arc::new(self.live().as_ref().clone())));
        lives.push(Arc::downgrade(&live));
        drop(lives);
        Arc::new(Gateway {
            guard: self.guard.for_worker(),
            live,
            lives: Arc::clone(&self.lives),
            started: Arc::clone(&self.started),
            upstreams: Upstreams::new(),
            metrics: self.metrics.clone(),
            header_timeout: self.header_timeout,
            max_connections: self.max_connections,
            tunnels: Arc::clone(&self.tunnels),
            tls: self.tls.clone(),
            metrics_elsewhere: self.metrics_elsewhere,
            allowed: self.allowed.clone(),
            allowed_public: self.allowed_public.clone(),
            upstream_seconds: self.upstream_seconds.clone(),
            tally,
            tallies: Arc::clone(&self.tallies),
        })
    }

    /// The gateway's router: `/healthz`, `/metrics` (unless `metrics_listen` is set), `/check`, and everything
    /// else proxied.
    pub fn router(self: &Arc<Self>) -> Router {
        let mut router = Router::new().route("/healthz", get(healthz));
        if !self.metrics_elsewhere {
            router = router.route("/metrics", get(metrics));
        }
        router
            .route("/check", get(check))
            .route("/check/{*path}", axum::routing::any(check_prefixed))
            .fallback(proxy)
            .with_state(Arc::clone(self))
    }

    /// The gateway's service of requests, which [`crate::workers`] serves: [`Gateway::router`] for the gateway's
    /// own endpoints, and the proxy, directly, for everything else.
    pub fn service(self: &Arc<Self>) -> GatewayService {
        GatewayService { gateway: Arc::clone(self), router: self.router() }
    }

    /// This worker's routes and settings now.
    fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads `path` again and applies it ([`Gateway::reload`]) if it passes every check `--check` makes. Logs the
    /// outcome, and counts it in `portcullis_gateway_reloads_total{result="loaded"|"refused"}`; on refusal the
    /// configuration in use stays.
    pub fn reload_file(&self, path: &Path) -> Result<String, GuardError> {
        let applied = GatewayConfig::load(path).and_then(|config| {
            config.check()?;
            self.reload(&config)
        });
        match &applied {
            Ok(summary) => {
                tracing::info!(file = %path.display(), "configuration reloaded: {summary}");
                metrics::counter!("portcullis_gateway_reloads_total", "result" => "loaded").increment(1);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "configuration not reloaded; the one in use stays");
                metrics::counter!("portcullis_gateway_reloads_total", "result" => "refused").increment(1);
            }
        }
        applied
    }

    /// Applies a changed `gateway.toml` to every worker, without a restart (`kill -HUP`): the routes (their
    /// upstreams, scopes, roles, hosts, methods, and audiences among those accepted at start), `upstream_ca`,
    /// `upstream_timeout`, `access_log` and `max_body_size`. Requests under way finish under the configuration
    /// they started with. A change to any other key, or an audience the gateway did not accept at start, refuses
    /// the whole reload, naming it, and the configuration in use stays. Returns a summary of what is served now.
    pub fn reload(&self, config: &GatewayConfig) -> Result<String, GuardError> {
        let changed: Vec<&str> =
            restart_keys(&self.started, config).into_iter().filter(|(_, changed)| *changed).map(|(k, _)| k).collect();
        if !changed.is_empty() {
            return Err(GuardError::Config(format!("{} changed, which takes a restart", changed.join(", "))));
        }
        let accepted = &self.guard.config().audiences;
        if let Some(new) = config.routes.iter().filter(|r| !r.public).find(|r| !accepted.contains(&r.audience)) {
            return Err(GuardError::Config(format!(
                "audience {:?} is new: the gateway accepts a new audience only after a restart",
                new.audience
            )));
        }
        let live = Live::new(config)?;
        let summary = format!("{} routes", live.routes.len());
        let mut lives = self.lives.lock().unwrap_or_else(PoisonError::into_inner);
        lives.retain(|cell| match cell.upgrade() {
            Some(cell) => {
                // Each worker gets a copy of its own (counters and upstream states are per worker).
                *cell.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(live.clone());
                true
            }
            None => false,
        });
        Ok(summary)
    }
}

/// Installs the process-wide Prometheus recorder for `/metrics` (once; `None` if another is installed), with
/// its upkeep: the recorder keeps every histogram sample until it is next drained, which a `/metrics` scrape
/// does, so without a scraper a busy gateway's memory would grow by every request's upstream time.
pub fn install_metrics() -> Option<PrometheusHandle> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
        std::thread::sleep(METRICS_UPKEEP);
        upkeep.run_upkeep();
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep; histogram samples wait for /metrics");
    }
    Some(handle)
}

/// How often the TLS certificate and key files are read again.
const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// How often the metrics recorder drains histogram samples into its summaries.
pub const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Serves the gateway on `listen`, on the current runtime, until `shutdown` resolves, then drains. The binary
/// uses [`crate::workers::serve_workers`] instead (one thread per core).
pub async fn serve(
    gateway: Arc<Gateway>,
    listen: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), GuardError> {
    let (listener, addr) = bind(listen, "").await?;
    let task = tokio::spawn(async move { crate::workers::serve_listener(listener, &gateway, 1, shutdown).await });
    Ok((addr, task))
}

/// A listener on `listen`, and its address; an error names the address and `what` it was for.
async fn bind(listen: &str, what: &str) -> Result<(tokio::net::TcpListener, SocketAddr), GuardError> {
    let cannot = |e: std::io::Error| GuardError::Config(format!("cannot listen on {listen}{what}: {e}"));
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(cannot)?;
    let addr = listener.local_addr().map_err(cannot)?;
    Ok((listener, addr))
}

/// Serves `/metrics` and `/healthz` on `listen` (`metrics_listen`), in plain HTTP, on the current runtime,
/// until `shutdown` resolves.
pub async fn serve_metrics(
    gateway: &Arc<Gateway>,
    listen: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), GuardError> {
    let (listener, addr) = bind(listen, " (metrics_listen)").await?;
    let router =
        Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).with_state(Arc::clone(gateway));
    let limits = portcullis_http::Limits { max_connections: 64, ..crate::workers::limits(gateway, 1) };
    let task = tokio::spawn(portcullis_http::serve(listener, router, limits, shutdown, |s| async move { Some(s) }));
    Ok((addr, task))
}

async fn healthz() -> &'static str {
    "ok\n"
}

const DECISIONS: &str = "portcullis_gateway_decisions_total";

fn decision(result: &'static str, reason: &'static str) {
    metrics::counter!(DECISIONS, "result" => result, "reason" => reason).increment(1);
}

/// A refusal, counted and logged with what answers "why was this client refused": the method, the path (never
/// the query, which may carry secrets, nor the token), the client's address, the status and the reason.
fn refused(method: &Method, path: &str, peer: Option<IpAddr>, status: StatusCode, reason: &'static str) {
    decision("deny", reason);
    tracing::info!(%method, path, peer = peer.map(tracing::field::display), status = status.as_u16(), reason, "refused");
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    if let Some(age) = gw.guard.jwks().age() {
        metrics::gauge!("portcullis_guard_jwks_age_seconds").set(age as f64);
    }
    if let Some(lag) = gw.guard.feed_lag() {
        metrics::gauge!("portcullis_guard_feed_lag_seconds").set(lag as f64);
    }
    metrics::gauge!("portcullis_guard_revocations").set(gw.guard.revocations().len() as f64);
    gw.flush_all(Instant::now());
    let body = gw.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Sets the identity headers; `None` when a value cannot be a header value (a control character in the token's
/// subject, client, a scope or a role). Such a request is refused, never passed on with part of its identity
/// missing, which an upstream could read as fewer roles or as no user at all. Each value is copied once: this
/// runs on every authorized request.
fn identity_headers(headers: &mut HeaderMap, identity: &Identity) -> Option<()> {
    headers.insert(X_AUTH_SUBJECT, HeaderValue::from_str(&identity.subject).ok()?);
    headers.insert(X_AUTH_CLIENT, HeaderValue::from_str(&identity.client_id).ok()?);
    headers.insert(X_AUTH_SCOPES, HeaderValue::try_from(identity.scopes.join(" ")).ok()?);
    headers.insert(X_AUTH_ROLES, HeaderValue::try_from(identity.roles.join(" ")).ok()?);
    Some(())
}

/// The refusal of a request whose token's identity cannot be written as headers (see [`identity_headers`]).
fn unforwardable(method: &Method, path: &str, peer: Option<IpAddr>) -> Response {
    refused(method, path, peer, StatusCode::FORBIDDEN, "identity not forwardable");
    (StatusCode::FORBIDDEN, "the token's identity cannot be passed on in headers\n").into_response()
}

// Names used on every request, parsed once (a lookup by a string parses and hashes the name each time).
const X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
const X_AUTH_CLIENT: HeaderName = HeaderName::from_static("x-auth-client");
const X_AUTH_SCOPES: HeaderName = HeaderName::from_static("x-auth-scopes");
const X_AUTH_ROLES: HeaderName = HeaderName::from_static("x-auth-roles");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// `X-Forwarded-Proto` and `X-Forwarded-Host` (Traefik, Caddy, or nginx when told to send them) as an origin.
fn forwarded_origin(headers: &HeaderMap) -> Option<String> {
    let proto = header_str(headers, "x-forwarded-proto")?;
    let host = header_str(headers, "x-forwarded-host")?;
    matches!(proto, "http" | "https").then(|| format!("{proto}://{host}"))
}

/// The client's address as the proxy in front reports it (forward auth): the last `X-Forwarded-For` entry (past
/// any `trusted_proxies`, see [`portcullis_http::forwarded::forwarded_address`]), else `X-Real-IP`. The last entry
/// is the one the nearest proxy added (nginx's `$proxy_add_x_forwarded_for`, Envoy) or wrote alone (Traefik,
/// Caddy); entries before it are whatever the client sent, so the first one, read as the client's address, would
/// let a token thief hand the risk engine its victim's address.
fn forwarded_client(headers: &HeaderMap, trusted: &[portcullis_http::forwarded::IpNet]) -> Option<std::net::IpAddr> {
    if headers.contains_key(X_FORWARDED_FOR) {
        portcullis_http::forwarded::forwarded_address(headers, trusted)
    } else {
        header_str(headers, "x-real-ip")?.trim().parse().ok()
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header's one value: `Ok(None)` when absent, `Err` when it is there twice or is not visible ASCII.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ()> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value.to_str().map(Some).map_err(|_| ()),
        (Some(_), Some(_)) => Err(()),
    }
}

/// What a forward-auth request asks about: the method and the URI of the client's request. nginx's
/// `auth_request` names them in `X-Original-Method` and `X-Original-URI` (as the README's configuration sets
/// them); Traefik, Caddy and others in `X-Forwarded-Method` and `X-Forwarded-Uri`. nginx passes every header the
/// client sent on to the subrequest, beside the ones it sets, so a request that mixes the two sets, names one
/// header twice or names a method that is not one is ambiguous (`None`): its client may be naming a public path
/// or method in the headers the proxy in front does not set.
fn asked(headers: &HeaderMap) -> Option<(Method, &str)> {
    let original = (single(headers, "x-original-method").ok()?, single(headers, "x-original-uri").ok()?);
    let forwarded = (single(headers, "x-forwarded-method").ok()?, single(headers, "x-forwarded-uri").ok()?);
    let (method, uri) = match (original, forwarded) {
        ((None, None), (method, uri)) | ((method, uri), (None, None)) => (method, uri),
        _ => return None,
    };
    let method = match method {
        None => Method::GET,
        Some(method) => Method::from_bytes(method.as_bytes()).ok()?,
    };
    Some((method, uri.unwrap_or("/")))
}

/// A forward-auth request that does not say unambiguously what it asks about: refused (403, which nginx's
/// `auth_request` passes on; it turns a 400 into a 500).
fn ambiguous(gw: &Gateway, headers: &HeaderMap) -> Response {
    let peer = forwarded_client(headers, &gw.live().trusted_proxies);
    refused(&Method::GET, "/check", peer, StatusCode::FORBIDDEN, "ambiguous request");
    (StatusCode::FORBIDDEN, "ambiguous forward-auth request\n").into_response()
}

async fn check(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let Some((method, uri)) = asked(&headers) else { return ambiguous(&gw, &headers) };
    let path = uri.split('?').next().unwrap_or("/");
    judge(&gw, &headers, &method, path).await
}

/// Envoy's HTTP `ext_authz` asks with the original method and the original path under the check prefix
/// (`path_prefix: /check`), so `/check/api/orders` judges `GET /api/orders`.
async fn check_prefixed(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let path = request.uri().path().strip_prefix("/check").unwrap_or("/").to_owned();
    judge(&gw, request.headers(), request.method(), &path).await
}

async fn judge(gw: &Gateway, headers: &HeaderMap, method: &Method, path: &str) -> Response {
    let host = match single(headers, "x-forwarded-host") {
        Ok(Some(host)) => Some(host),
        Ok(None) => header_str(headers, "host"),
        Err(()) => return ambiguous(gw, headers),
    };
    // A refusal is 403, not 400: nginx's auth_request turns anything but 2xx, 401 and 403 into a 500.
    let live = gw.live();
    let peer = forwarded_client(headers, &live.trusted_proxies);
    let Ok(found) = live.route(host, method, path) else {
        refused(method, path, peer, StatusCode::FORBIDDEN, "ambiguous path");
        return (StatusCode::FORBIDDEN, "ambiguous path\n").into_response();
    };
    let Some(route) = found else {
        refused(method, path, peer, StatusCode::FORBIDDEN, "no route");
        return (StatusCode::FORBIDDEN, "no route\n").into_response();
    };
    let Some(requirement) = &route.requirement else {
        gw.count(Instant::now(), |t| t.allowed_public += 1);
        return StatusCode::OK.into_response();
    };
    let origin = || match (&gw.guard.config().public_origin, forwarded_origin(headers)) {
        (Some(origin), _) => origin.trim_end_matches('/').to_owned(),
        (None, Some(origin)) => origin,
        (None, None) => format!("http://{}", host.unwrap_or_default()),
    };
    match authorize_http(&gw.guard, headers, method.as_str(), origin, path, requirement).await {
        Ok(identity) => {
            gw.count(Instant::now(), |t| t.allowed += 1);
            if live.access_log {
                let (subject, client, jti) = (&identity.subject, &identity.client_id, &identity.jti);
                tracing::info!(%method, path, peer = peer.map(tracing::field::display), subject, client, jti, "allowed");
            }
            let mut response = StatusCode::OK.into_response();
            if identity_headers(response.headers_mut(), &identity).is_none() {
                return unforwardable(method, path, peer);
            }
            gw.guard.report_use(&identity, peer, headers);
            response
        }
        Err(rejection) => {
            let response = rejection_response_for(&rejection, &gw.guard.config().realm, scheme_of(headers));
            refused(method, path, peer, response.status(), rejection.reason());
            response
        }
    }
}

/// Whether `name` is a hop-by-hop header (RFC 9110 §7.6.1), which never crosses the gateway. A `match`, which
/// compiles to a test of the length and one comparison: it runs on every header of every request and response.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authorization"
    )
}

async fn proxy(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    // HTTP/2 names the host in the target's authority (`:authority`), HTTP/1.1 in `Host`.
    let host = match request.headers().get(header::HOST) {
        Some(host) => Some(host.clone()),
        None => request.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    let live = gw.live();
    // The connection's address, which X-Forwarded-For gets, and the client's, for the logs and the risk engine.
    let connection = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let peer =
        connection.map(|ip| portcullis_http::forwarded::client_address(ip, request.headers(), &live.trusted_proxies));
    let (method, path) = (request.method(), request.uri().path());
    let Ok(found) = live.route(host.as_ref().and_then(|h| h.to_str().ok()), method, path) else {
        refused(method, path, peer, StatusCode::BAD_REQUEST, "ambiguous path");
        return (StatusCode::BAD_REQUEST, "ambiguous path\n").into_response();
    };
    let Some(route) = found else {
        refused(method, path, peer, StatusCode::NOT_FOUND, "no route");
        return (StatusCode::NOT_FOUND, "no route\n").into_response();
    };
    if route.upstreams.is_empty() {
        return (StatusCode::NOT_FOUND, "this route serves forward auth only\n").into_response();
    }
    let identity = match &route.requirement {
        None => None,
        Some(requirement) => {
            let (headers, uri) = (request.headers(), request.uri());
            let origin = || request_origin(&gw.guard, headers, uri, gw.scheme());
            match authorize_http(&gw.guard, headers, request.method().as_str(), origin, uri.path(), requirement).await {
                Ok(identity) => Some(identity),
                Err(rejection) => {
                    let response = rejection_response_for(&rejection, &gw.guard.config().realm, scheme_of(headers));
                    refused(method, path, peer, response.status(), rejection.reason());
                    return response;
                }
            }
        }
    };
    let authorized = identity.is_some();
    // Only when asked for: the access log's copy of the method and path.
    let logged = live.access_log.then(|| (request.method().clone(), request.uri().path().to_owned()));
    let (mut parts, mut body) = request.into_parts();
    // A request with a body: what a refusal names if the body turns out too large, broken or slow.
    let mut sending = None;
    if !http_body::Body::is_end_stream(&body) {
        if let Some(limit) = live.max_body {
            match http_body::Body::size_hint(&body).exact() {
                // A declared length is held to by hyper: only its size needs a look.
                Some(declared) if declared > limit => {
                    refused(&parts.method, parts.uri.path(), peer, StatusCode::PAYLOAD_TOO_LARGE, "body too large");
                    return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
                }
                Some(_) => {}
                None => {
                    body = Body::new(http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)));
                }
            }
        }
        let client = ClientBody { inner: body, waiting: Arc::new(AtomicBool::new(false)) };
        sending = Some(Sending {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            waiting: Arc::clone(&client.waiting),
        });
        body = Body::new(client);
    }
    // An upgrade (WebSocket): the client's side of the tunnel, once the gateway has answered 101.
    let upgrade = upgrade_protocol(&parts.version, &parts.headers)
        .map(|protocol| (protocol, parts.extensions.remove::<hyper::upgrade::OnUpgrade>()));
    // Hop-by-hop headers go; so does the DPoP proof (it was for this hop, and RFC 9449 leaves it to the resource
    // server), and so does every `X-Auth-*` a client sent, which only the gateway may set.
    strip_headers(&mut parts.headers, |name| name == "dpop" || name.starts_with("x-auth-"));
    if let Some(identity) = &identity {
        if identity_headers(&mut parts.headers, identity).is_none() {
            return unforwardable(&parts.method, parts.uri.path(), peer);
        }
        gw.guard.report_use(identity, peer, &parts.headers);
    }
    let Some(uri) = upstream_target(&route.base, &parts.uri) else {
        return (StatusCode::BAD_REQUEST, "bad request target\n").into_response();
    };
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let headers = &mut parts.headers;
    if let Some(ip) = connection {
        let forwarded = match header_str(headers, X_FORWARDED_FOR.as_str()) {
            Some(prior) => HeaderValue::try_from(format!("{prior}, {ip}")),
            None => ip_header_value(ip),
        };
        if let Ok(v) = forwarded {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    if let Some(v) = host {
        headers.insert(X_FORWARDED_HOST, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(gw.scheme()));
    let mut request = Request::from_parts(parts, body);
    let tunnel = match upgrade {
        None => None,
        Some((protocol, client)) => {
            // Each open tunnel counts against max_connections, as the connection it came from no longer does.
            let Ok(slot) = Arc::clone(&gw.tunnels).try_acquire_owned() else {
                refused(
                    request.method(),
                    request.uri().path(),
                    peer,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many tunnels",
                );
                return (StatusCode::SERVICE_UNAVAILABLE, "too many open upgraded connections\n").into_response();
            };
            let headers = request.headers_mut();
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, protocol);
            Some((client, slot))
        }
    };
    let started = Instant::now();
    // From the clock read just now: a timeout would read it again.
    let deadline = tokio::time::Instant::from_std(started + live.timeout);
    let upstream = tokio::time::timeout_at(deadline, forward(&gw, route, request, tunnel.is_some())).await;
    let done = Instant::now();
    gw.count(done, |t| {
        if authorized {
            t.allowed += 1
        } else {
            t.allowed_public += 1
        }
        t.upstream_seconds.push(done.duration_since(started).as_secs_f64());
    });
    let failure = match &upstream {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(Failure::of(e)),
        // Waiting for the client's next bytes when the time is up: the client's delay, not the upstream's.
        Err(_) if sending.as_ref().is_some_and(|s| s.waiting.load(Ordering::Relaxed)) => Some(Failure::BodyTooSlow),
        Err(_) => Some(Failure::Timeout),
    };
    if let Some((method, path)) = logged {
        let (status, served) = match (&upstream, &failure) {
            (Ok(Ok((response, served))), _) => (response.status(), Some(&served.origin)),
            (_, failure) => (failure.as_ref().map_or(StatusCode::BAD_GATEWAY, Failure::status), None),
        };
        let (subject, client, jti) = match &identity {
            Some(id) => (id.subject.as_str(), id.client_id.as_str(), id.jti.as_str()),
            None => ("", "", ""),
        };
        let upstream_ms = done.duration_since(started).as_secs_f64() * 1000.0;
        tracing::info!(
            %method, path, peer = peer.map(tracing::field::display), status = status.as_u16(), subject, client, jti,
            upstream = served.map(tracing::field::display), upstream_ms, "proxied"
        );
    }
    match upstream {
        Ok(Ok((response, _))) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let (mut parts, _) = response.into_parts();
            let protocol = parts.headers.get(header::UPGRADE).cloned();
            let upstream_io = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
            let (Some((Some(client_io), slot)), Some(upstream_io), Some(protocol)) = (tunnel, upstream_io, protocol)
            else {
                tracing::warn!("upstream switched protocols without an upgrade asked for");
                return (StatusCode::BAD_GATEWAY, "upstream unavailable\n").into_response();
            };
            strip_headers(&mut parts.headers, |_| false);
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol);
            let holder = identity.clone().map(|identity| (gw.guard.clone(), identity));
            tokio::spawn(relay(client_io, upstream_io, holder, slot));
            Response::from_parts(parts, Body::empty())
        }
        Ok(Ok((response, _))) => {
            let (mut parts, body) = response.into_parts();
            strip_headers(&mut parts.headers, |_| false);
            Response::from_parts(parts, body)
        }
        Ok(Err(_)) | Err(_) => failure.unwrap_or(Failure::Upstream).answer(sending.as_ref(), peer),
    }
}

/// A request body on its way upstream: its method and path, for a refusal, and whether the upstream connection
/// is waiting for the client's next bytes.
struct Sending {
    method: Method,
    path: String,
    waiting: Arc<AtomicBool>,
}

/// The client's request body as the upstream connection reads it. Its errors are marked as the client's
/// ([`ClientBodyError`]), and it records whether its last read found nothing yet from the client, so that a body
/// that breaks off, breaks its chunked coding or is still awaited from the client when the upstream timeout
/// strikes is answered as the client's doing, not reported as an upstream failure. A body not read at all (no
/// connection to the upstream yet) or not read further (the upstream not taking it) leaves the delay with the
/// upstream.
struct ClientBody {
    inner: Body,
    waiting: Arc<AtomicBool>,
}

/// The client's request body failed (the client went away mid-body, or sent a broken chunked coding).
#[derive(Debug, thiserror::Error)]
#[error("the client's request body failed: {0}")]
struct ClientBodyError(#[source] axum::Error);

impl http_body::Body for ClientBody {
    type Data = bytes::Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, ClientBodyError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        self.waiting.store(polled.is_pending(), Ordering::Relaxed);
        polled.map(|frame| frame.map(|frame| frame.map_err(ClientBodyError)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Why a proxied request got no answer from an upstream, and whose doing it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The client's body passed `max_body_size` (a chunked one, cut off on the way).
    BodyTooLarge,
    /// The client's body broke off or broke its chunked coding.
    BadBody,
    /// The upstream connection was waiting for the client's next body bytes when the upstream timeout struck.
    BodyTooSlow,
    /// The upstream failed (or none could be reached).
    Upstream,
    /// The upstream did not answer within the upstream timeout.
    Timeout,
}

impl Failure {
    fn of(error: &UpstreamError) -> Failure {
        if caused_by::<http_body_util::LengthLimitError>(error) {
            Failure::BodyTooLarge
        } else if caused_by::<ClientBodyError>(error) {
            Failure::BadBody
        } else {
            Failure::Upstream
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Failure::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::BadBody => StatusCode::BAD_REQUEST,
            Failure::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            Failure::Upstream => StatusCode::BAD_GATEWAY,
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The answer to the client. The client's own failures are refusals, logged and counted as such (reasons
    /// `body too large`, `bad request body`, `body too slow`); an upstream's failure is logged and counted by
    /// `forward`, and a timeout here.
    fn answer(self, sending: Option<&Sending>, peer: Option<IpAddr>) -> Response {
        let (text, reason) = match self {
            Failure::BodyTooLarge => ("request body too large\n", "body too large"),
            Failure::BadBody => ("bad request body\n", "bad request body"),
            Failure::BodyTooSlow => ("request body not received in time\n", "body too slow"),
            Failure::Upstream => return (StatusCode::BAD_GATEWAY, "upstream unavailable\n").into_response(),
            Failure::Timeout => {
                metrics::counter!("portcullis_gateway_upstream_errors_total", "kind" => "timeout").increment(1);
                return (StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n").into_response();
            }
        };
        if let Some(sending) = sending {
            refused(&sending.method, &sending.path, peer, self.status(), reason);
        }
        (self.status(), text).into_response()
    }
}

/// The gateway's service of requests ([`Gateway::service`]). A request for one of the gateway's own endpoints
/// (`/healthz`, `/metrics`, `/check`, `/check/...`) goes to [`Gateway::router`], which also proxies any such path
/// it does not serve; every other request goes straight to the proxy. So the proxied requests, nearly all of the
/// traffic, skip the router's layers: a lookup that ends in its fallback, and two boxed futures per request.
#[derive(Clone, Debug)]
pub struct GatewayService {
    gateway: Arc<Gateway>,
    router: Router,
}

/// Whether the router may serve `path` itself; any other path is proxied.
fn own_endpoint(path: &str) -> bool {
    matches!(path, "/healthz" | "/metrics" | "/check") || path.starts_with("/check/")
}

impl tower::Service<http::Request<hyper::body::Incoming>> for GatewayService {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        // Always ready, as the router is.
        tower::Service::<http::Request<hyper::body::Incoming>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        if own_endpoint(request.uri().path()) {
            return Box::pin(self.router.call(request));
        }
        let gateway = Arc::clone(&self.gateway);
        Box::pin(async move { Ok(proxy(State(gateway), request.map(Body::new)).await) })
    }
}

/// Sends `request` to the route's upstreams, starting with the next in turn. A request that never left the gateway
/// (no connection could be made) goes on to the next upstream, and the one that failed is passed over for
/// [`UPSTREAM_DOWN_FOR`]; one that reached an upstream is not sent again. Failures are logged and counted
/// (`portcullis_gateway_upstream_errors_total{kind="connect"|"request"}`), except those of the client's body
/// (cut off at `max_body_size`, broken off or badly chunked), which are the client's. Names the upstream that answered.
async fn forward<'r>(
    gw: &Gateway,
    route: &'r Route,
    mut request: Request<Body>,
    upgrade: bool,
) -> Result<(Response<Body>, &'r Upstream), UpstreamError> {
    let start = route.first_turn();
    let mut tried = 0u64;
    let mut next = route.next_upstream(start, tried, None);
    while let Some(i) = next {
        tried |= 1 << i;
        let upstream = &route.upstreams[i];
        request.headers_mut().insert(header::HOST, upstream.host.clone());
        let sent = if upgrade {
            // Boxed, as the rare case: see `Upstreams::send`.
            Box::pin(Upstreams::send_upgrade(&upstream.origin, request)).await.map(|r| r.map(Body::new))
        } else {
            gw.upstreams.send(&upstream.origin, request).await.map(|r| r.map(Body::new))
        };
        let (error, unsent) = match sent {
            Ok(response) => return Ok((response, upstream)),
            Err(Failed { error, unsent }) => (error, unsent),
        };
        let Some(unsent) = unsent else {
            if Failure::of(&error) == Failure::Upstream {
                tracing::warn!(upstream = %upstream.origin, error = %error, "upstream request failed");
                metrics::counter!("portcullis_gateway_upstream_errors_total", "kind" => "request").increment(1);
            }
            return Err(error);
        };
        let now = Instant::now();
        upstream.pass_over(now);
        metrics::counter!("portcullis_gateway_upstream_errors_total", "kind" => "connect").increment(1);
        next = route.next_upstream(start, tried, Some(now));
        let then = if next.is_some() { "trying the next" } else { "no upstream left to try" };
        tracing::warn!(upstream = %upstream.origin, error = %error, passed_over_s = UPSTREAM_DOWN_FOR.as_secs(),
            "cannot connect to upstream; {then}");
        if next.is_none() {
            return Err(error);
        }
        request = unsent;
    }
    Err(UpstreamError::NoUpstream)
}

/// Whether an error of type `E` is in the chain of causes of an upstream request's failure.
fn caused_by<E: std::error::Error + 'static>(e: &UpstreamError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(e) = cause {
        if e.is::<E>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The protocol an HTTP/1.1 request asks to switch to (RFC 9110 §7.8: `Upgrade`, named in `Connection`), such as
/// `websocket`.
fn upgrade_protocol(version: &http::Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if *version != http::Version::HTTP_11 {
        return None;
    }
    let asked = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asked.then(|| headers.get(header::UPGRADE).cloned()).flatten()
}

/// How often an open upgraded connection asks whether its token still holds.
const TUNNEL_RECHECK: Duration = Duration::from_secs(1);

/// Relays bytes both ways between a client and an upstream that switched protocols, until either side closes,
/// or, for one opened with a token, until that token expires or is revoked: a connection lives no longer than
/// the token that opened it.
async fn relay(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    holder: Option<(Guard, Arc<Identity>)>,
    _slot: OwnedSemaphorePermit,
) {
    let (client, upstream) = match tokio::join!(client, upstream) {
        (Ok(client), Ok(upstream)) => (client, upstream),
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(error = %e, "an upgraded connection did not open");
            return;
        }
    };
    let open = metrics::gauge!("portcullis_gateway_tunnels_open");
    open.increment(1.0);
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    let relaying = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(relaying);
    let mut recheck = tokio::time::interval(TUNNEL_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ended = &mut relaying => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "an upgraded connection ended");
                }
                break;
            }
            _ = recheck.tick(), if holder.is_some() => {
                if let Some((guard, identity)) = &holder {
                    if let Err(rejection) = guard.still_holds(identity) {
                        tracing::info!(jti = %identity.jti, reason = rejection.reason(), "upgraded connection closed: its token no longer holds");
                        metrics::counter!("portcullis_gateway_tunnels_closed_total", "reason" => rejection.reason()).increment(1);
                        break;
                    }
                }
            }
        }
    }
    open.decrement(1.0);
}

/// The request target sent upstream (origin-form, RFC 9112 §3.2.1): the route's base path, then the request's
/// path and query.
fn upstream_target(base: &str, request: &Uri) -> Option<Uri> {
    let path_and_query = match (base.is_empty(), request.path_and_query()) {
        (true, Some(pq)) => pq.clone(),
        (_, pq) => format!("{base}{}", pq.map_or("/", |p| p.as_str())).parse().ok()?,
    };
    Some(Uri::from(path_and_query))
}

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1: the fixed ones, and any the `Connection` header names) and
/// those `also` picks, in one pass over the names: a request that has none of them (the usual case) costs no
/// lookup by name.
fn strip_headers(headers: &mut HeaderMap, also: impl Fn(&str) -> bool) {
    // On the stack: an upstream's response carries `Connection: keep-alive`, so this runs on most requests.
    let doomed: SmallVec<[HeaderName; 4]> =
        headers.keys().filter(|name| hop_by_hop(name.as_str()) || also(name.as_str())).cloned().collect();
    if doomed.is_empty() {
        return;
    }
    // The values are copied out (a reference count each) before anything is removed; the names they list are
    // looked up as text, which builds no header name.
    let listed: SmallVec<[HeaderValue; 2]> = headers.get_all(header::CONNECTION).iter().cloned().collect();
    for name in doomed {
        headers.remove(name);
    }
    for value in &listed {
        for name in value.to_str().into_iter().flat_map(|v| v.split(',')) {
            headers.remove(name.trim());
        }
    }
}

/// A peer address as a header value, without the formatting machinery for the common IPv4 case.
fn ip_header_value(ip: std::net::IpAddr) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let std::net::IpAddr::V4(v4) = ip else {
        return HeaderValue::try_from(ip.to_string());
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if octet >= 100 {
            0
        } else if octet >= 10 {
            1
        } else {
            2
        };
        for d in &digits[skip..] {
            text[len] = b'0' + d;
            len += 1;
        }
    }
    HeaderValue::from_bytes(&text[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses_are_written_as_rust_writes_them() {
        let mut samples: Vec<std::net::IpAddr> =
            ["0.0.0.0", "255.255.255.255", "10.0.0.1", "100.10.1.0", "9.99.199.200"]
                .iter()
                .map(|s| s.parse().unwrap_or_else(|_| unreachable!()))
                .collect();
        samples.push("2001:db8::1".parse().unwrap_or_else(|_| unreachable!()));
        for octet in 0..=255u8 {
            samples.push(std::net::IpAddr::from([octet, 255 - octet, octet / 2, 7]));
        }
        for ip in samples {
            assert_eq!(ip_header_value(ip).ok().as_ref().and_then(|v| v.to_str().ok()), Some(ip.to_string().as_str()));
        }
    }

    #[test]
    fn upstreams_are_taken_in_turn_and_one_that_failed_is_passed_over() {
        let upstream = |port: u16| Upstream {
            origin: Origin::http(format!("127.0.0.1:{port}").parse().unwrap_or_else(|_| unreachable!())),
            host: HeaderValue::from_static("h"),
            down_until: Mutex::new(None),
        };
        let route = Route {
            prefix: "/".into(),
            host: None,
            methods: Vec::new(),
            upstreams: vec![upstream(1), upstream(2), upstream(3)],
            base: String::new(),
            turn: Turn::default(),
            requirement: None,
        };
        let now = Instant::now();
        // The order of tries from `start`: every upstream once.
        let order = |start: usize, now: Instant| {
            let (mut tried, mut order) = (0u64, Vec::new());
            while let Some(i) = route.next_upstream(start, tried, Some(now)) {
                tried |= 1 << i;
                order.push(i);
            }
            order
        };
        assert_eq!((0..4).map(|_| route.first_turn()).collect::<Vec<_>>(), [0, 1, 2, 0]);
        assert_eq!(order(1, now), [1, 2, 0]);
        route.upstreams[1].pass_over(now);
        assert_eq!(order(1, now), [2, 0, 1], "a failed upstream is tried last");
        assert_eq!(order(0, now), [0, 2, 1]);
        assert_eq!(order(1, now + UPSTREAM_DOWN_FOR), [1, 2, 0], "and is back after UPSTREAM_DOWN_FOR");
        // A copy for another worker has its own turn and its own view of which are down.
        let copy = route.clone();
        assert_eq!(copy.first_turn(), 0);
        assert!(copy.upstreams[1].is_up(now));
        let single = Route { upstreams: vec![upstream(1)], ..copy };
        single.upstreams[0].pass_over(now);
        assert_eq!((single.next_upstream(0, 0, Some(now)), single.next_upstream(0, 1, None)), (Some(0), None));
    }

    #[test]
    fn only_the_gateways_own_paths_go_through_its_router() {
        for path in ["/healthz", "/metrics", "/check", "/check/", "/check/api/orders"] {
            assert!(own_endpoint(path), "{path}");
        }
        for path in ["/", "/healthz/", "/healthzz", "/checks", "/api/check", "/metrics.json", "/Healthz"] {
            assert!(!own_endpoint(path), "{path}");
        }
    }

    #[test]
    fn routes_match_the_host_without_port_or_trailing_dot() {
        let route = |host: &str| Route {
            prefix: "/".into(),
            host: Some(host.into()),
            methods: Vec::new(),
            upstreams: Vec::new(),
            base: String::new(),
            turn: Turn::default(),
            requirement: None,
        };
        let api = route("api.example");
        for got in ["api.example", "API.example", "api.example:8443", "api.example.", "api.example.:80"] {
            assert!(api.matches(Some(got), &Method::GET, "/x"), "{got}");
        }
        for got in ["api.example.org", "xapi.example", "api.exampl", "", "[api.example]"] {
            assert!(!api.matches(Some(got), &Method::GET, "/x"), "{got}");
        }
        assert!(!api.matches(None, &Method::GET, "/x"));
        let v6 = route("[2001:db8::1]");
        assert!(v6.matches(Some("[2001:db8::1]:8080"), &Method::GET, "/x"));
        assert!(v6.matches(Some("[2001:DB8::1]"), &Method::GET, "/x"));
        assert!(!v6.matches(Some("[2001:db8::2]"), &Method::GET, "/x"));
        assert!(route("api.example.").matches(Some("api.example"), &Method::GET, "/x"));
    }

    /// A header map with `pairs`, in order, a name given twice kept twice.
    fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_forward_auth_request_is_read_in_one_proxys_headers_or_refused_as_ambiguous() {
        let asked_by = |pairs: &[(&str, &str)]| {
            asked(&header_map(pairs)).map(|(method, uri)| (method.to_string(), uri.to_owned()))
        };
        let ok = |method: &str, uri: &str| Some((method.to_owned(), uri.to_owned()));
        // Each proxy's own headers, alone.
        assert_eq!(asked_by(&[("x-original-method", "POST"), ("x-original-uri", "/api/a?q")]), ok("POST", "/api/a?q"));
        assert_eq!(asked_by(&[("x-forwarded-method", "PUT"), ("x-forwarded-uri", "/api/b")]), ok("PUT", "/api/b"));
        assert_eq!(asked_by(&[("x-original-uri", "/api/c")]), ok("GET", "/api/c"));
        assert_eq!(asked_by(&[]), ok("GET", "/"));
        // The two sets mixed, in any way: what nginx passes on from a client that adds the other set's headers.
        for mixed in [
            [("x-original-uri", "/api/a"), ("x-forwarded-uri", "/public/a")],
            [("x-original-uri", "/api/a"), ("x-forwarded-method", "GET")],
            [("x-original-method", "POST"), ("x-forwarded-uri", "/public/a")],
            [("x-original-method", "POST"), ("x-forwarded-method", "GET")],
        ] {
            assert_eq!(asked_by(&mixed), None, "{mixed:?}");
        }
        // One header twice, or a method that is not one.
        assert_eq!(asked_by(&[("x-original-uri", "/api/a"), ("x-original-uri", "/public/a")]), None);
        assert_eq!(asked_by(&[("x-forwarded-method", "GET"), ("x-forwarded-method", "POST")]), None);
        assert_eq!(asked_by(&[("x-forwarded-method", "G(T"), ("x-forwarded-uri", "/api/a")]), None);
        assert_eq!(asked_by(&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/public/\u{e9}")]), None);
    }

    #[test]
    fn an_identity_that_cannot_be_written_as_headers_is_not_passed_on_in_part() {
        let identity = Identity {
            subject: "alice".into(),
            client_id: "web".into(),
            scopes: vec!["read".into(), "write".into()],
            roles: vec!["admin".into()],
            audiences: vec!["api".into()],
            jti: "j1".into(),
            session: None,
            issued_at: 0,
            expires_at: 1,
            bound_jkt: None,
        };
        let written = |identity: &Identity| {
            let mut headers = HeaderMap::new();
            identity_headers(&mut headers, identity)?;
            Some(headers.iter().map(|(n, v)| format!("{n}: {}", v.to_str().unwrap())).collect::<Vec<_>>())
        };
        assert_eq!(
            written(&identity).unwrap(),
            ["x-auth-subject: alice", "x-auth-client: web", "x-auth-scopes: read write", "x-auth-roles: admin"]
        );
        // A control character in any value: no headers at all, so the request is refused, not forwarded with
        // its subject or its roles missing.
        for spoiled in [
            Identity { subject: "alice\r\nx-auth-roles: admin".into(), ..identity.clone() },
            Identity { client_id: "web\0".into(), ..identity.clone() },
            Identity { scopes: vec!["read\n".into()], ..identity.clone() },
            Identity { roles: vec!["admin".into(), "\u{7f}".into()], ..identity.clone() },
        ] {
            assert!(written(&spoiled).is_none(), "{spoiled:?}");
        }
    }

    #[test]
    fn the_forward_auth_client_is_the_last_x_forwarded_for_entry() {
        let client = |pairs: &[(&str, &str)]| forwarded_client(&header_map(pairs), &[]).map(|ip| ip.to_string());
        let ip = |s: &str| Some(s.to_owned());
        // What the client sent comes first; the nearest proxy's entry last.
        assert_eq!(client(&[("x-forwarded-for", "198.51.100.7, 203.0.113.9")]), ip("203.0.113.9"));
        assert_eq!(
            client(&[("x-forwarded-for", "198.51.100.7"), ("x-forwarded-for", "203.0.113.9")]),
            ip("203.0.113.9")
        );
        assert_eq!(client(&[("x-forwarded-for", " 2001:db8::1 ")]), ip("2001:db8::1"));
        // X-Real-IP only without X-Forwarded-For; a last entry that is not an address is no address.
        assert_eq!(client(&[("x-real-ip", "203.0.113.9")]), ip("203.0.113.9"));
        assert_eq!(client(&[("x-forwarded-for", "203.0.113.9, unknown"), ("x-real-ip", "198.51.100.7")]), None);
        assert_eq!(client(&[]), None);
    }

    #[test]
    fn hop_by_hop_and_picked_headers_go_and_the_rest_stay() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-secret", "1"),
            ("x-auth-subject", "mallory"),
            ("dpop", "proof"),
            ("accept", "*/*"),
            ("authorization", "Bearer t"),
        ] {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let mut response = headers.clone();
        strip_headers(&mut headers, |name| name == "dpop" || name.starts_with("x-auth-"));
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "authorization"]);
        strip_headers(&mut response, |_| false);
        let mut left: Vec<&str> = response.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "authorization", "dpop", "x-auth-subject"]);
        let mut plain = HeaderMap::new();
        plain.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_headers(&mut plain, |_| false);
        assert_eq!(plain.len(), 1);
    }

    #[test]
    fn an_upgrade_is_asked_by_connection_and_upgrade_together_on_http_1_1() {
        let headers = |connection: &'static str, upgrade: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert(header::CONNECTION, HeaderValue::from_static(connection));
            if let Some(u) = upgrade {
                h.insert(header::UPGRADE, HeaderValue::from_static(u));
            }
            h
        };
        let v11 = http::Version::HTTP_11;
        let asked = upgrade_protocol(&v11, &headers("keep-alive, Upgrade", Some("websocket")));
        assert_eq!(asked.as_ref().map(|v| v.as_bytes()), Some(&b"websocket"[..]));
        assert_eq!(upgrade_protocol(&v11, &headers("keep-alive", Some("websocket"))), None, "not named in Connection");
        assert_eq!(upgrade_protocol(&v11, &headers("upgrade", None)), None, "no protocol");
        assert_eq!(upgrade_protocol(&http::Version::HTTP_10, &headers("upgrade", Some("websocket"))), None);
        assert_eq!(upgrade_protocol(&http::Version::HTTP_2, &headers("upgrade", Some("websocket"))), None);
    }
}
