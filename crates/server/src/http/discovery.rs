//! Discovery (OpenID Connect Discovery 1.0 §4, RFC 8414) and the JWKS. The JWKS carries
//! `Cache-Control: max-age` equal to the key pre-publication window, so no cache outlives a rotation.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use portcullis_jose::Algorithm;

use super::AppState;

fn metadata(state: &AppState) -> serde_json::Value {
    let issuer = &state.authority.rules.issuer;
    let auth_methods = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"];
    let asymmetric: Vec<&str> = Algorithm::asymmetric().map(|a| a.name()).collect();
    let dpop_algs: Vec<&str> = crate::oauth::dpop::algorithms().iter().map(|a| a.name()).collect();
    serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "end_session_endpoint": format!("{issuer}/oauth2/logout"),
        "jwks_uri": format!("{issuer}/jwks.json"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token", "password"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [state.authority.keys.algorithm().name()],
        "claims_supported": ["iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "at_hash", "preferred_username"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": asymmetric,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": &auth_methods[..3],
        "introspection_endpoint_auth_signing_alg_values_supported": asymmetric,
        "access_token_signing_alg_values_supported":
            [state.authority.keys.algorithm().name()],
        "scopes_supported": ["openid"],
        "dpop_signing_alg_values_supported": dpop_algs,
    })
}

fn cached_json(body: String, max_age: i64) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    response
}

pub async fn openid_configuration(State(state): State<AppState>) -> Response {
    cached_json(metadata(&state).to_string(), 3600)
}

pub async fn authorization_server_metadata(State(state): State<AppState>) -> Response {
    cached_json(metadata(&state).to_string(), 3600)
}

pub async fn jwks(State(state): State<AppState>) -> Response {
    let material = state.authority.keys.ring().current();
    cached_json(material.jwks.clone(), state.authority.keys.rules().jwks_max_age)
}
