//! The guard as a tower layer, and an axum extractor for the verified identity. Bearer tokens, and DPoP-bound
//! tokens with their proof (RFC 9449). The layer answers every refused request itself, per RFC 6750 §3 (`WWW-Authenticate: Bearer ... error="invalid_token"`, 401, or
//! `insufficient_scope`, 403); the inner service sees only requests with a verified [`Identity`] in their
//! extensions. The extractor fails closed: a handler reached without the layer answers 401, never runs unguarded.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::{Guard, Identity, Rejection, Requirement, Scheme};

/// The response for a refused request that presented a bearer token (or none).
pub fn rejection_response(rejection: &Rejection, realm: &str) -> Response<Body> {
    rejection_response_for(rejection, realm, Scheme::Bearer)
}

/// The response for a refused request, its challenge in the scheme the request used.
pub fn rejection_response_for(rejection: &Rejection, realm: &str, scheme: Scheme) -> Response<Body> {
    let status = StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let error = match rejection {
        Rejection::Missing | Rejection::Invalid(_) | Rejection::Revoked => "invalid_token",
        Rejection::InvalidDpopProof(_) => "invalid_dpop_proof",
        Rejection::UseDpopNonce(_) => "use_dpop_nonce",
        Rejection::Malformed => "invalid_request",
        Rejection::InsufficientScope(_) | Rejection::InsufficientRole => "insufficient_scope",
        Rejection::Unavailable(_) => "temporarily_unavailable",
    };
    let body = serde_json::json!({ "error": error, "error_description": rejection.reason() }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let challenge = match scheme {
        Scheme::Bearer => rejection.challenge(realm),
        Scheme::Dpop => rejection.dpop_challenge(realm),
    };
    if let Some(challenge) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    if matches!(rejection, Rejection::Unavailable(_)) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let Rejection::UseDpopNonce(nonce) = rejection {
        if let Ok(value) = HeaderValue::from_str(nonce) {
            headers.insert(HeaderName::from_static("dpop-nonce"), value);
        }
    }
    response
}

/// Judges an HTTP request: `Authorization: Bearer` as [`Guard::authorize`] does, and `Authorization: DPoP`
/// with its `DPoP` proof(s) for `method` and the URL `origin` + `path` ([`Guard::authorize_request`]). The bearer
/// path builds no URL.
pub async fn authorize_http(
    guard: &Guard,
    headers: &http::HeaderMap,
    method: &str,
    origin: impl FnOnce() -> String,
    path: &str,
    requirement: &Requirement,
) -> Result<Arc<Identity>, Rejection> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}"));
    if scheme_of(headers) != Scheme::Dpop {
        return guard.authorize(authorization, requirement).await;
    }
    let dpop: Vec<&str> = headers.get_all("dpop").iter().map(|v| v.to_str().unwrap_or("\u{0}")).collect();
    let url = format!("{}{path}", origin());
    let request = crate::PresentedRequest { authorization, dpop: &dpop, method, url: &url };
    guard.authorize_request(&request, requirement).await
}

/// The scheme of a request's `Authorization` header, for the scheme of its challenge: `DPoP` when it says so,
/// `Bearer` otherwise (no header, or any other scheme).
pub fn scheme_of(headers: &http::HeaderMap) -> Scheme {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    match authorization.and_then(|a| a.get(..5)) {
        Some(prefix) if prefix.eq_ignore_ascii_case(b"dpop ") => Scheme::Dpop,
        _ => Scheme::Bearer,
    }
}

/// The origin a request was addressed to, for DPoP's `htu`: the configured public origin, else the request's
/// scheme (`scheme`, the connection's, unless its URI is absolute) and `Host`.
pub fn request_origin(guard: &Guard, headers: &http::HeaderMap, uri: &http::Uri, scheme: &str) -> String {
    if let Some(origin) = &guard.config().public_origin {
        return origin.trim_end_matches('/').to_owned();
    }
    let scheme = uri.scheme_str().unwrap_or(scheme);
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or_default();
    format!("{scheme}://{host}")
}

/// Puts a [`Guard`] with one [`Requirement`] in front of a service.
#[derive(Debug, Clone)]
pub struct GuardLayer {
    guard: Guard,
    requirement: Arc<Requirement>,
}

impl GuardLayer {
    pub fn new(guard: Guard, requirement: Requirement) -> Self {
        GuardLayer { guard, requirement: Arc::new(requirement) }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService { inner, guard: self.guard.clone(), requirement: Arc::clone(&self.requirement) }
    }
}

#[derive(Debug, Clone)]
pub struct GuardService<S> {
    inner: S,
    guard: Guard,
    requirement: Arc<Requirement>,
}

impl<S, B> Service<Request<B>> for GuardService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was polled ready goes into the future; a fresh clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        let requirement = Arc::clone(&self.requirement);
        Box::pin(async move {
            let (headers, uri) = (request.headers(), request.uri());
            let origin = || request_origin(&guard, headers, uri, "http");
            let judged =
                authorize_http(&guard, headers, request.method().as_str(), origin, uri.path(), &requirement).await;
            match judged {
                Ok(identity) => {
                    let peer = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
                    guard.report_use(&identity, peer.map(|c| c.0.ip()), request.headers());
                    request.extensions_mut().insert(identity);
                    inner.call(request).await
                }
                Err(rejection) => {
                    tracing::debug!(reason = rejection.reason(), "request refused");
                    Ok(rejection_response_for(&rejection, &guard.config().realm, scheme_of(request.headers())))
                }
            }
        })
    }
}

/// The verified identity, for handlers behind a [`GuardLayer`].
#[derive(Debug, Clone)]
pub struct Auth(pub Arc<Identity>);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = Response<Body>;

    async fn from_request_parts(parts: &mut http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Arc<Identity>>() {
            Some(identity) => Ok(Auth(Arc::clone(identity))),
            None => {
                tracing::error!("a handler that needs an identity is not behind a GuardLayer; refusing");
                Err(rejection_response(&Rejection::Missing, "api"))
            }
        }
    }
}
