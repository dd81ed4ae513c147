//! The HTTP layer: thin axum handlers around the [`Authority`]. Each endpoint parses its input strictly,
//! calls one authority method and maps the answer; [`ApiError`] is the one place errors become responses.

pub mod admin;
mod authorize;
mod discovery;
mod events;
mod first_party;
mod form;
mod ledger;
mod logout;
mod ops;
mod pages;
mod risk;
mod token;
mod userinfo;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::authority::{parse_authorization, Authority, ResourceError, ResourceRequest};
use crate::oauth::error::{ErrorCode, OAuthError};

/// The largest request body any endpoint reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a request may take before it is answered 408 (the `/events` long-poll has its own bound).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Per-IP limits on password attempts (the password grant and `/auth/login`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub authority: Arc<Authority>,
    pub metrics: PrometheusHandle,
    login_limiter: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    /// The proxies in front whose `X-Forwarded-For` is believed (`trusted_proxies`).
    trusted_proxies: Arc<[portcullis_http::forwarded::IpNet]>,
    /// Becomes true when the server starts shutting down: long-polls answer at once.
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    pub fn new(
        authority: Arc<Authority>,
        metrics: PrometheusHandle,
        login_limit: Option<LoginRateLimit>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let login_limiter = login_limit.and_then(|l| {
            let quota = Quota::per_second(NonZeroU32::new(l.per_second)?).allow_burst(NonZeroU32::new(l.burst)?);
            Some(Arc::new(RateLimiter::keyed(quota)))
        });
        AppState { authority, metrics, login_limiter, trusted_proxies: Arc::new([]), stopping }
    }

    /// Believes `X-Forwarded-For` from these proxies (see [`portcullis_http::forwarded::client_address`]).
    pub fn with_trusted_proxies(mut self, proxies: Vec<portcullis_http::forwarded::IpNet>) -> Self {
        self.trusted_proxies = proxies.into();
        self
    }

    /// Whether `ip` may try a password now.
    pub(crate) fn login_allowed(&self, ip: Option<IpAddr>) -> bool {
        match (&self.login_limiter, ip) {
            (Some(limiter), Some(ip)) => limiter.check_key(&ip).is_ok(),
            _ => true,
        }
    }

    /// Forgets idle per-IP entries (called periodically).
    pub fn shrink_limiters(&self) {
        if let Some(limiter) = &self.login_limiter {
            limiter.retain_recent();
        }
    }
}

/// Builds the router with every endpoint and the request limits; `/metrics` only when `with_metrics` (else it
/// is served by [`ops_router`] on a listener of its own).
pub fn router(state: AppState, with_metrics: bool) -> Router {
    let mut api = Router::new()
        .route("/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/.well-known/oauth-authorization-server", get(discovery::authorization_server_metadata))
        .route("/jwks.json", get(discovery::jwks))
        .route("/oauth2/authorize", get(authorize::authorize_get).post(authorize::authorize_post))
        .route("/oauth2/token", post(token::token))
        .route("/userinfo", get(userinfo::userinfo).post(userinfo::userinfo))
        .route("/oauth2/logout", get(logout::logout_get).post(logout::logout_post))
        .route("/oauth2/revoke", post(token::revoke))
        .route("/oauth2/introspect", post(token::introspect))
        .route("/auth/login", post(first_party::login))
        .route("/auth/refresh", post(first_party::refresh))
        .route("/auth/logout", post(first_party::logout))
        .route("/audit/head", get(ledger::head))
        .route("/audit/consistency", get(ledger::consistency))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz));
    if with_metrics {
        api = api.route("/metrics", get(ops::metrics));
    }
    let api = api.layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT));
    let feed = Router::new()
        .route("/events", post(events::poll))
        .route("/risk/events", post(risk::report))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, events::MAX_WAIT + REQUEST_TIMEOUT));
    api.merge(feed)
        .merge(admin::router(state.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .with_state(state)
}

/// The monitoring listener's router (`metrics_listen`): `/metrics`, `/healthz` and `/readyz`.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .with_state(state)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-store")], "not found\n").into_response()
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids, the access log and the request metrics. The log line carries the method, the route, the
/// status and the time, never a header value or a body (tokens and secrets travel there).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map_or_else(new_request_id, str::to_owned);
    let endpoint =
        request.extensions().get::<MatchedPath>().map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let peer =
        peer.map(|peer| portcullis_http::forwarded::client_address(peer, request.headers(), &state.trusted_proxies));
    let mut request = request;
    request.extensions_mut().insert(PeerIp(peer));
    let user_agent =
        request.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let requester = crate::risk::Requester { ip: peer, user_agent };
    let span = tracing::info_span!("request", request_id = %id);
    let handled = crate::risk::REQUESTER.scope(requester, next.run(request));
    let mut response = tracing::Instrument::instrument(handled, span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics::counter!("portcullis_http_requests_total", "endpoint" => endpoint.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("portcullis_http_request_duration_seconds", "endpoint" => endpoint.clone())
        .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(%method, endpoint, status, micros = elapsed.as_micros() as u64, peer = ?peer, "request");
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    response
}

fn new_request_id() -> String {
    crate::secrets::random_id()
}

/// An OAuth error as an HTTP response: RFC 6749 §5.2 JSON, `Cache-Control: no-store`, and for a failed
/// `Authorization: Basic` a `WWW-Authenticate` challenge (§5.2, `invalid_client`).
#[derive(Debug)]
pub struct ApiError {
    pub error: OAuthError,
    pub basic_challenge: bool,
    /// A status other than the code's own (429 for rate limits).
    pub status: Option<StatusCode>,
}

impl From<OAuthError> for ApiError {
    fn from(error: OAuthError) -> Self {
        ApiError { error, basic_challenge: false, status: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            self.status.unwrap_or(StatusCode::from_u16(self.error.status()).unwrap_or(StatusCode::BAD_REQUEST));
        let mut response = (
            status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            self.error.to_json(),
        )
            .into_response();
        if self.error.code == ErrorCode::InvalidClient && self.basic_challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"portcullis\""));
        }
        if self.error.code == ErrorCode::TemporarilyUnavailable || status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Why a request to one of our resources was refused, and under which scheme it came.
#[derive(Debug)]
pub(crate) struct Refused {
    pub error: ResourceError,
    pub dpop: bool,
}

impl Refused {
    pub(crate) fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.error.status()).unwrap_or(StatusCode::UNAUTHORIZED)
    }

    /// The RFC 6750 / RFC 9449 error code.
    pub(crate) fn code(&self) -> &'static str {
        match &self.error {
            ResourceError::Missing | ResourceError::Invalid(_) => "invalid_token",
            ResourceError::Malformed => "invalid_request",
            ResourceError::InvalidProof(_) => "invalid_dpop_proof",
            ResourceError::InsufficientScope => "insufficient_scope",
            ResourceError::Unavailable => "temporarily_unavailable",
        }
    }

    /// Adds the `WWW-Authenticate` challenge (and `Retry-After` when the store is down) to a response.
    pub(crate) fn add_headers(&self, response: &mut Response, scope: &str) {
        if let Some(challenge) = self.error.challenge(self.dpop, scope).and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        if self.error == ResourceError::Unavailable {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
    }
}

/// Checks the access token of a request to one of our resources (`/events`, `/userinfo`, `/admin/v1`).
pub(crate) async fn check_resource_token(
    state: &AppState,
    headers: &HeaderMap,
    method: &str,
    url: &str,
    scope: &str,
) -> Result<std::sync::Arc<crate::authority::AccessFacts>, Refused> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}"));
    let proofs: Vec<&str> = headers.get_all("dpop").iter().map(|v| v.to_str().unwrap_or("\u{0}")).collect();
    let request = ResourceRequest { authorization, dpop: &proofs, method, url };
    state.authority.resource_token(&request, scope).await.map_err(|error| {
        let dpop = authorization.and_then(parse_authorization).is_some_and(|(dpop, _)| dpop);
        Refused { error, dpop }
    })
}

/// The access token of a request to one of our resources, or the RFC 6750 / RFC 9449 refusal: 401/403 with
/// `WWW-Authenticate` under the scheme the request used, a JSON body, `no-store`.
pub(crate) async fn resource_token(
    state: &AppState,
    headers: &HeaderMap,
    method: &str,
    url: &str,
    scope: &str,
) -> Result<std::sync::Arc<crate::authority::AccessFacts>, Response> {
    check_resource_token(state, headers, method, url, scope).await.map_err(|refused| {
        let body = serde_json::json!({ "error": refused.code() }).to_string();
        let mut response =
            (refused.status(), [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body)
                .into_response();
        refused.add_headers(&mut response, scope);
        response
    })
}

/// A JSON body that must not be cached (token responses, RFC 6749 §5.1).
pub(crate) fn no_store_json(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
        body,
    )
        .into_response()
}

/// The address of the peer, put into request extensions by the access-log middleware.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerIp(pub Option<IpAddr>);

pub(crate) fn too_many_attempts() -> ApiError {
    metrics::counter!("portcullis_login_rate_limited_total").increment(1);
    ApiError {
        error: OAuthError::new(ErrorCode::TemporarilyUnavailable, "too many login attempts from this address"),
        basic_challenge: false,
        status: Some(StatusCode::TOO_MANY_REQUESTS),
    }
}

pub(crate) type AppResult = Result<Response, ApiError>;
