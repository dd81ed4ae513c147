//! `/oauth2/token` (RFC 6749 §3.2), `/oauth2/revoke` (RFC 7009) and `/oauth2/introspect` (RFC 7662).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Extension;

use super::form::Form;
use super::{no_store_json, too_many_attempts, ApiError, AppResult, AppState, PeerIp};
use crate::authority::{Authenticated, TokenRequest};
use crate::oauth::client_auth;
use crate::oauth::error::{ErrorCode, OAuthError};

/// Authenticates the client of an OAuth request from its `Authorization` header or form fields.
async fn client_of(state: &AppState, headers: &HeaderMap, form: &Form) -> Result<Authenticated, ApiError> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}"));
    let basic = authorization.is_some();
    let challenge = |error: OAuthError| ApiError { error, basic_challenge: basic, status: None };
    let presented = client_auth::presented(
        authorization,
        form.get("client_id"),
        form.get("client_secret"),
        form.get("client_assertion_type"),
        form.get("client_assertion"),
    )
    .map_err(challenge)?;
    state.authority.authenticate_client(presented).await.map_err(challenge)
}

pub async fn token(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerIp>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult {
    let mut form = Form::parse(&headers, &body)?;
    let client = client_of(&state, &headers, &form).await?;
    if form.get("grant_type") == Some("password") && !state.login_allowed(peer.0) {
        return Err(too_many_attempts());
    }
    let request = TokenRequest {
        grant_type: form.owned("grant_type"),
        scope: form.owned("scope"),
        resource: form.owned("resource"),
        username: form.owned("username"),
        refresh_token: form.secret("refresh_token"),
        password: form.secret("password"),
    };
    let issued = state.authority.token(&client, request).await?;
    let body = serde_json::to_string(&issued)
        .map_err(|_| OAuthError::new(ErrorCode::ServerError, "the response could not be encoded"))?;
    Ok(no_store_json(body))
}

pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> AppResult {
    let mut form = Form::parse(&headers, &body)?;
    let client = client_of(&state, &headers, &form).await?;
    let hint = form.owned("token_type_hint");
    let Some(token) = form.secret("token") else {
        return Err(OAuthError::new(ErrorCode::InvalidRequest, "token is missing").into());
    };
    state.authority.revoke(&client, &token, hint.as_deref()).await?;
    Ok(no_store_json(String::new()))
}

pub async fn introspect(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> AppResult {
    let mut form = Form::parse(&headers, &body)?;
    let client = client_of(&state, &headers, &form).await?;
    let Some(token) = form.secret("token") else {
        return Err(OAuthError::new(ErrorCode::InvalidRequest, "token is missing").into());
    };
    let answer = state.authority.introspect(&client, &token).await?;
    let body = serde_json::to_string(&answer)
        .map_err(|_| OAuthError::new(ErrorCode::ServerError, "the response could not be encoded"))?;
    Ok(no_store_json(body))
}
