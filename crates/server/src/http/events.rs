//! `POST /events`: the revocation feed that guards follow. Each revocation is a Security Event Token
//! (RFC 8417) signed with the active key, delivered by long-poll in the shape of RFC 8936: the receiver
//! acknowledges the SETs it has applied (`ack`, by `jti`), and gets those after them, waiting up to
//! [`MAX_WAIT`] for new ones unless it asks to `returnImmediately`. The `jti` of each SET is the revocation's
//! sequence number, so a receiver's cursor is simply the largest `jti` it has acknowledged.
//!
//! The caller authenticates with one of our access tokens carrying the scope `portcullis:events` (a DPoP-bound
//! one with its proof).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{no_store_json, resource_token, AppState};
use crate::store::Revocation;
pub use portcullis_revocation::REVOCATION_EVENT;

pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// The scope a feed reader's token must carry.
pub const EVENTS_SCOPE: &str = "portcullis:events";
const MAX_EVENTS: u32 = 500;

#[derive(Deserialize)]
struct PollBody {
    #[serde(default)]
    ack: Vec<String>,
    #[serde(rename = "maxEvents")]
    max_events: Option<u32>,
    #[serde(rename = "returnImmediately", default)]
    return_immediately: bool,
    /// Receivers may report SETs they could not process (RFC 8936 §2.4); they are logged.
    #[serde(rename = "setErrs", default)]
    set_errs: serde_json::Map<String, serde_json::Value>,
}

fn set_for(state: &AppState, reader: &str, r: &Revocation) -> Option<String> {
    let authority = &state.authority;
    let material = authority.keys.ring().current();
    let signer = material.event_signer.as_ref()?;
    let claims = serde_json::json!({
        "iss": authority.rules.issuer,
        "iat": authority.now().as_secs(),
        "jti": r.seq.to_string(),
        "aud": reader,
        "events": { REVOCATION_EVENT: {
            "kind": r.kind.as_str(), "value": r.value, "issued_before": r.issued_before,
            "expires_at": r.expires_at, "reason": r.reason,
        }},
    });
    signer.sign(&claims).ok()
}

pub async fn poll(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let url = format!("{}/events", state.authority.rules.issuer);
    let reader = match resource_token(&state, &headers, "POST", &url, EVENTS_SCOPE).await {
        Ok(facts) => facts.client_id.clone(),
        Err(refused) => return refused,
    };
    let poll: PollBody = if body.is_empty() {
        PollBody { ack: vec![], max_events: None, return_immediately: false, set_errs: Default::default() }
    } else {
        match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(_) => {
                return (StatusCode::BAD_REQUEST, [(header::CACHE_CONTROL, "no-store")], "malformed poll request\n")
                    .into_response()
            }
        }
    };
    for (jti, why) in &poll.set_errs {
        tracing::warn!(reader, jti, error = %why, "a guard could not apply an event");
    }
    let after = poll.ack.iter().filter_map(|a| a.parse::<i64>().ok()).max().unwrap_or(0);
    let limit = poll.max_events.unwrap_or(100).min(MAX_EVENTS);
    let mut changes = state.authority.revocations.watch();
    let mut stopping = state.stopping.clone();
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    loop {
        let now = state.authority.now().as_secs();
        let batch = match state.authority.store.revocations_since(after, now, limit + 1).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "event feed: store unreachable");
                return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")]).into_response();
            }
        };
        if !batch.is_empty() || poll.return_immediately || limit == 0 {
            let more = batch.len() > limit as usize;
            let sets: serde_json::Map<String, serde_json::Value> = batch
                .iter()
                .take(limit as usize)
                .filter_map(|r| Some((r.seq.to_string(), serde_json::Value::String(set_for(&state, &reader, r)?))))
                .collect();
            let body = serde_json::json!({ "sets": sets, "moreAvailable": more });
            return no_store_json(body.to_string());
        }
        if *stopping.borrow() {
            return no_store_json(r#"{"sets":{},"moreAvailable":false}"#.into());
        }
        tokio::select! {
            changed = tokio::time::timeout_at(deadline, changes.changed()) => match changed {
                Ok(Ok(())) => continue,
                _ => return no_store_json(r#"{"sets":{},"moreAvailable":false}"#.into()),
            },
            _ = stopping.changed() => return no_store_json(r#"{"sets":{},"moreAvailable":false}"#.into()),
        }
    }
}
