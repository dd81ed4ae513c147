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

pub const ACCESS_COOKIE: &str = "portcullis_at";
pub const REFRESH_COOKIE: &str = "portcullis_rt";

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
    let encode = |v: &serde_json::Value| v.to_string();
    match delivery {
        TokenDelivery::Body => Ok(no_store_json(
            serde_json::to_string(&issued)
                .map_err(|_| OAuthError::new(ErrorCode::ServerError, "the response could not be encoded"))?,
        )),
        TokenDelivery::Cookie => {
            let secure = if state.authority.rules.issuer.starts_with("https://") { "; Secure" } else { "" };
            let body = serde_json::json!({
                "token_type": issued.token_type, "expires_in": issued.expires_in, "scope": issued.scope,
            });
            let mut response = no_store_json(encode(&body));
            let mut cookies = vec![format!(
                "{ACCESS_COOKIE}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
                issued.access_token, issued.expires_in
            )];
            if let Some(refresh) = &issued.refresh_token {
                cookies.push(format!(
                    "{REFRESH_COOKIE}={refresh}; Path=/auth; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
                    state.authority.rules.refresh.absolute_ttl
                ));
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
    let token = match &req.refresh_token {
        Some(t) => t.as_str().to_owned(),
        None => cookie(&headers, REFRESH_COOKIE)
            .ok_or(OAuthError::new(ErrorCode::InvalidRequest, "refresh_token is missing"))?
            .to_owned(),
    };
    let token = Zeroizing::new(token);
    let issued = state.authority.refresh(&client.client, &token, req.scope.as_deref(), None).await?;
    respond(&state, client.client.token_delivery, issued)
}

pub async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let req: RefreshBody = json(&headers, &body)?;
    let client = first_party_client(&state, &headers, &req.client_id).await?;
    let token = req
        .refresh_token
        .as_ref()
        .map(|t| t.as_str().to_owned())
        .or_else(|| cookie(&headers, REFRESH_COOKIE).map(str::to_owned))
        .ok_or(OAuthError::new(ErrorCode::InvalidRequest, "refresh_token is missing"))?;
    state.authority.logout(&client.client.id, &Zeroizing::new(token)).await?;
    let mut response = no_store_json("{}".into());
    for name in [ACCESS_COOKIE, REFRESH_COOKIE] {
        let path = if name == ACCESS_COOKIE { "/" } else { "/auth" };
        if let Ok(v) = HeaderValue::from_str(&format!("{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict")) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(response)
}
