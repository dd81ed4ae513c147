//! Operations endpoints: `/healthz` (the process answers), `/readyz` (the store answers and a signing key is
//! loaded) and `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::keys::KeyState;

pub async fn healthz() -> Response {
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], "ok\n").into_response()
}

/// How long `/readyz` waits for the store.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn readyz(State(state): State<AppState>) -> Response {
    // A probe must answer fast: a database that takes longer than this to answer `SELECT 1` is not ready.
    let store = match tokio::time::timeout(READY_TIMEOUT, state.authority.store.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: store unreachable");
            "unreachable".to_owned()
        }
        Err(_) => {
            tracing::warn!("readiness: the store did not answer within {READY_TIMEOUT:?}");
            "unreachable".to_owned()
        }
    };
    let keys = if state.authority.keys.ring().current().signer.is_some() { "ok" } else { "no active key" };
    let ready = store == "ok" && keys == "ok";
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({ "ready": ready, "store": store, "keys": keys }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body).into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let authority = &state.authority;
    let now = authority.now().as_secs();
    for record in &authority.keys.ring().current().records {
        if record.state == KeyState::Revoked {
            continue;
        }
        let age = (now - record.created_at).max(0) as f64;
        metrics::gauge!("portcullis_signing_key_age_seconds", "kid" => record.kid.clone(), "state" => record.state.as_str())
            .set(age);
    }
    metrics::gauge!("portcullis_revocations_cached").set(authority.revocations.len() as f64);
    let body = state.metrics.render();
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4"), (header::CACHE_CONTROL, "no-store")], body)
        .into_response()
}
