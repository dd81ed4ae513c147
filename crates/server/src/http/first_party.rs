//! The first-party JSON API (DESIGN.md §3): `POST /auth/login`, `/auth/refresh`, `/auth/logout`. Answers
//! like the token endpoint, or, for a client configured with `--token-delivery cookie`, sets `HttpOnly`,
//! `SameSite=Strict` cookies and leaves the tokens out of the body. Bodies must be JSON, which a
//! cross-site form cannot send without a CORS preflight.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::authorize::cookie;
use super::{no_store_json, too_many_attempts, ApiError, AppResult, AppState, PeerIp};
use crate::authority::{Authenticated, Issued};
use crate::model::TokenDelivery;
use crate::oauth::client_auth::{self, Presented};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::session_csrf;

/// The cookies of cookie-mode clients. Under TLS they carry the prefixes that make browsers enforce their
/// attributes: `__Host-` (Secure, Path=/, no Domain) for the access token and the CSRF token, `__Secure-` for the
/// refresh token, whose path is narrower than `/` (RFC 6265bis §4.1.3). On plain http (loopback development)
/// browsers refuse those prefixes, so the names are bare.
struct CookieNames {
    access: &'static str,
    refresh: &'static str,
    csrf: &'static str,
    secure: &'static str,
}

fn cookie_names(state: &AppState) -> CookieNames {
    if state.authority.rules.issuer.starts_with("https://") {
        CookieNames {
            access: "__Host-portcullis_at",
            refresh: "__Secure-portcullis_rt",
            csrf: "__Host-portcullis_csrf",
            secure: "; Secure",
        }
    } else {
        CookieNames { access: "portcullis_at", refresh: "portcullis_rt", csrf: "portcullis_csrf", secure: "" }
    }
}

/// The refresh cookie's path: the two endpoints that read it (`/auth/refresh`, `/auth/logout`), nothing else.
const REFRESH_PATH: &str = "/auth";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: Zeroizing<String>,
    client_id: String,
    scope: Option<String>,
    resource: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: Option<Zeroizing<String>>,
    client_id: String,
    scope: Option<String>,
}

fn json<T: for<'de> Deserialize<'de>>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(OAuthError::new(ErrorCode::InvalidRequest, "the body must be application/json").into());
    }
    serde_json::from_slice(body)
        .map_err(|_| OAuthError::new(ErrorCode::InvalidRequest, "the body is not the expected JSON object").into())
}

/// A first-party client: public, or confidential with `Authorization: Basic`.
async fn first_party_client(state: &AppState, headers: &HeaderMap, client_id: &str) -> Result<Authenticated, ApiError> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}"));
    let basic = authorization.is_some();
    let challenge = |error: OAuthError| ApiError { error, basic_challenge: basic, status: None };
    let presented = match authorization {
        Some(_) => client_auth::presented(authorization, Some(client_id), None, None, None).map_err(challenge)?,
        None => Presented::Public { client_id: client_id.to_owned() },
    };
    let client = state.authority.authenticate_client(presented).await.map_err(challenge)?;
    if !client.client.first_party {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "only first-party clients may use this API").into());
    }
    Ok(client)
}

fn respond(state: &AppState, delivery: TokenDelivery, issued: Issued) -> AppResult {
    match delivery {
        TokenDelivery::Body => Ok(no_store_json(
            serde_json::to_string(&issued)
                .map_err(|_| OAuthError::new(ErrorCode::ServerError, "the response could not be encoded"))?,
        )),
        TokenDelivery::Cookie => {
            let names = cookie_names(state);
            let secure = names.secure;
            // The CSRF token of the session: in the body, and in a cookie the page's script may read.
            let csrf = issued.session_id.as_deref().map(|sid| state.authority.session_csrf.token(sid));
            let body = serde_json::json!({
                "token_type": issued.token_type, "expires_in": issued.expires_in, "scope": issued.scope,
                "csrf_token": csrf,
            });
            let mut response = no_store_json(body.to_string());
            let mut cookies = vec![format!(
                "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
                names.access, issued.access_token, issued.expires_in
            )];
            let lifetime = state.authority.rules.refresh.absolute_ttl;
            if let Some(refresh) = &issued.refresh_token {
                cookies.push(format!(
                    "{}={refresh}; Path={REFRESH_PATH}; Max-Age={lifetime}; HttpOnly; SameSite=Strict{secure}",
                    names.refresh
                ));
            }
            if let Some(csrf) = &csrf {
                cookies.push(format!("{}={csrf}; Path=/; Max-Age={lifetime}; SameSite=Strict{secure}", names.csrf));
            }
            for cookie in cookies {
                let value = HeaderValue::from_str(&cookie)
                    .map_err(|_| OAuthError::new(ErrorCode::ServerError, "the cookie could not be set"))?;
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            Ok(response)
        }
    }
}

/// The refresh token of a refresh or logout request: from the body, or from the cookie, in which case the
/// request must echo the session's CSRF token in `X-CSRF-Token` (the cookie travels on cross-site requests too).
async fn presented_refresh(
    state: &AppState,
    headers: &HeaderMap,
    client_id: &str,
    in_body: Option<&Zeroizing<String>>,
) -> Result<Zeroizing<String>, ApiError> {
    if let Some(token) = in_body {
        return Ok(Zeroizing::new(token.as_str().to_owned()));
    }
    let names = cookie_names(state);
    let token =
        cookie(headers, names.refresh).ok_or(OAuthError::new(ErrorCode::InvalidRequest, "refresh_token is missing"))?;
    let token = Zeroizing::new(token.to_owned());
    let presented = headers.get(session_csrf::HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let sid = state.authority.session_of_refresh(client_id, &token).await?;
    match sid {
        Some(sid) if state.authority.session_csrf.matches(&sid, presented) => Ok(token),
        Some(_) => {
            metrics::counter!("portcullis_csrf_refusals_total").increment(1);
            Err(ApiError {
                error: OAuthError::new(ErrorCode::InvalidRequest, "the X-CSRF-Token header is missing or wrong"),
                basic_challenge: false,
                status: Some(axum::http::StatusCode::FORBIDDEN),
            })
        }
        // An unknown token fails later, the same way as one from the body.
        None => Ok(token),
    }
}

pub async fn login(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerIp>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult {
    let req: LoginBody = json(&headers, &body)?;
    let client = first_party_client(&state, &headers, &req.client_id).await?;
    if !state.login_allowed(peer.0) {
        return Err(too_many_attempts());
    }
    let issued = state
        .authority
        .password_login(
            &client.client,
            &req.username,
            req.password,
            req.scope.as_deref(),
            req.resource.as_deref(),
            None,
        )
        .await?;
    respond(&state, client.client.token_delivery, issued)
}

pub async fn refresh(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> AppResult {
    let req: RefreshBody = json(&headers, &body)?;
    let client = first_party_client(&state, &headers, &req.client_id).await?;
    let token = presented_refresh(&state, &headers, &client.client.id, req.refresh_token.as_ref()).await?;
    let issued = state.authority.refresh(&client.client, &token, req.scope.as_deref(), None).await?;
    respond(&state, client.client.token_delivery, issued)
}

pub async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let req: RefreshBody = json(&headers, &body)?;
    let client = first_party_client(&state, &headers, &req.client_id).await?;
    let token = presented_refresh(&state, &headers, &client.client.id, req.refresh_token.as_ref()).await?;
    state.authority.logout(&client.client.id, &token).await?;
    let mut response = no_store_json("{}".into());
    let names = cookie_names(&state);
    let secure = names.secure;
    for (name, path, http_only) in
        [(names.access, "/", "; HttpOnly"), (names.refresh, REFRESH_PATH, "; HttpOnly"), (names.csrf, "/", "")]
    {
        let cleared = format!("{name}=; Path={path}; Max-Age=0{http_only}; SameSite=Strict{secure}");
        if let Ok(v) = HeaderValue::from_str(&cleared) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(response)
}
