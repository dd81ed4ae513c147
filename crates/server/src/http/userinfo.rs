//! `GET`/`POST /userinfo` (OpenID Connect Core §5.3): who the access token's user is. The token must carry the
//! `openid` scope; a DPoP-bound one comes with its proof (RFC 9449 §7).

use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{no_store_json, resource_token, ApiError, AppState};
use crate::authority::{unavailable, ResourceError};

pub async fn userinfo(State(state): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    let url = format!("{}/userinfo", state.authority.rules.issuer);
    let facts = match resource_token(&state, &headers, method.as_str(), &url, "openid").await {
        Ok(facts) => facts,
        Err(refused) => return refused,
    };
    match state.authority.store.find_user(&facts.sub).await {
        Ok(Some(user)) if !user.disabled => {
            let body = serde_json::json!({ "sub": user.id, "preferred_username": user.name });
            no_store_json(body.to_string())
        }
        // A token whose subject is no longer an enabled user: refused as an invalid token.
        Ok(_) => {
            let mut response = (StatusCode::UNAUTHORIZED, [(header::CACHE_CONTROL, "no-store")]).into_response();
            let refused = ResourceError::Invalid("the token's user is gone");
            if let Some(c) = refused.challenge(false, "openid").and_then(|c| c.parse().ok()) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, c);
            }
            response
        }
        Err(e) => ApiError::from(unavailable(e)).into_response(),
    }
}
