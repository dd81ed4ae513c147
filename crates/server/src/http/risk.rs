//! `POST /risk/events`: guards report token uses (risk events, JSON lines, `kind: token_use`) for scoring.
//! The caller authenticates with one of our access tokens carrying the scope `portcullis:risk` (a DPoP-bound
//! one with its proof). Verdicts act through the revocation path, which guards follow on `/events`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_risk::Event;

use super::{no_store_json, resource_token, ApiError, AppState};
use crate::authority::MAX_EVENTS_PER_REPORT;

/// The scope a reporting guard's token must carry.
pub const RISK_SCOPE: &str = "portcullis:risk";

pub async fn report(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let url = format!("{}/risk/events", state.authority.rules.issuer);
    let reporter = match resource_token(&state, &headers, "POST", &url, RISK_SCOPE).await {
        Ok(facts) => facts.client_id.clone(),
        Err(refused) => return refused,
    };
    let events = match parse(&body) {
        Ok(events) => events,
        Err(why) => {
            let body = serde_json::json!({ "error": "invalid_request", "error_description": why });
            let headers = [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")];
            return (StatusCode::BAD_REQUEST, headers, body.to_string()).into_response();
        }
    };
    match state.authority.report_token_uses(events).await {
        Ok((scored, revoked)) => {
            tracing::debug!(reporter, scored, revoked, "risk events reported");
            no_store_json(serde_json::json!({ "scored": scored, "revoked": revoked }).to_string())
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// One event per line; the first bad line is named (never echoed: it may hold anything).
fn parse(body: &[u8]) -> Result<Vec<Event>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    let mut events = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        if events.len() == MAX_EVENTS_PER_REPORT {
            return Err(format!("at most {MAX_EVENTS_PER_REPORT} events per report"));
        }
        let event = Event::from_json(line).map_err(|e| format!("line {}: {}", number + 1, short(&e.to_string())))?;
        events.push(event);
    }
    if events.is_empty() {
        return Err("no events".into());
    }
    Ok(events)
}

/// serde's message without the part that may quote the input.
fn short(message: &str) -> String {
    message.split(" at line").next().unwrap_or(message).chars().take(120).collect()
}
