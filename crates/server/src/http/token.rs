//! `/oauth2/token` (RFC 6749 §3.2), `/oauth2/revoke` (RFC 7009) and `/oauth2/introspect` (RFC 7662).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
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

static DPOP: HeaderName = HeaderName::from_static("dpop");
static DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The request's DPoP proof: the value of its one `DPoP` header. Two headers are refused (RFC 9449 §4.3).
fn dpop_proof(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(&DPOP).iter();
    let (Some(first), None) = (values.next(), values.next()) else {
        return match headers.contains_key(&DPOP) {
            false => Ok(None),
            true => Err(OAuthError::new(ErrorCode::InvalidDpopProof, "more than one DPoP header").into()),
        };
    };
    let proof =
        first.to_str().map_err(|_| OAuthError::new(ErrorCode::InvalidDpopProof, "the DPoP proof is malformed"))?;
    Ok(Some(proof.to_owned()))
}

/// The token endpoint. When the server demands DPoP nonces, every answer carries a fresh one (RFC 9449 §8), so
/// that a client always holds a nonce for its next request.
pub async fn token(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = match issue(&state, peer, &headers, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    with_dpop_nonce(&state, answer)
}

fn with_dpop_nonce(state: &AppState, mut response: Response) -> Response {
    let authority = &state.authority;
    if authority.rules.dpop.require_nonce {
        let nonce = authority.nonces.issue(authority.now());
        if let Ok(value) = HeaderValue::from_str(&nonce) {
            response.headers_mut().insert(DPOP_NONCE.clone(), value);
        }
    }
    response
}

async fn issue(state: &AppState, peer: PeerIp, headers: &HeaderMap, body: &Bytes) -> AppResult {
    let mut form = Form::parse(headers, body)?;
    let dpop = dpop_proof(headers)?;
    let client = client_of(state, headers, &form).await?;
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
        dpop,
        code: form.secret("code"),
        code_verifier: form.secret("code_verifier"),
        redirect_uri: form.owned("redirect_uri"),
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
