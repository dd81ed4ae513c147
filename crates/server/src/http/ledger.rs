//! The audit ledger's public face, for witnesses: the latest signed tree head and consistency proofs between
//! tree sizes. Hashes only: nothing about the events themselves (those are behind the admin API).

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::admin::views::ConsistencyQuery;
use super::admin::{ledger_consistency, ledger_head, Params};
use super::AppState;

/// `GET /audit/head`.
pub async fn head(State(state): State<AppState>) -> Response {
    ledger_head(&state).await.into_response()
}

/// `GET /audit/consistency?first=N[&second=M]`.
pub async fn consistency(State(state): State<AppState>, Params(q): Params<ConsistencyQuery>) -> Response {
    ledger_consistency(&state, q).await.into_response()
}
