//! A small API protected by the guard: run `portcullis serve`, register a client with scopes `read write` and
//! audience `api`, then
//!
//! ```sh
//! cargo run -p portcullis-guard --example protected_api
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/orders
//! ```
//!
//! `PORTCULLIS_ISSUER` (default `http://127.0.0.1:8080`) names the authorization server. `GET /orders` needs
//! scope `read`, `POST /orders` scope `write`; `/health` is open. Every refusal is an RFC 6750 answer.

use axum::routing::get;
use axum::Router;
use portcullis_guard::layer::{Auth, GuardLayer};
use portcullis_guard::{Guard, GuardConfig, Requirement};

async fn list_orders(Auth(who): Auth) -> String {
    format!("orders of {} (client {})\n", who.subject, who.client_id)
}

async fn create_order(Auth(who): Auth) -> String {
    format!("order created for {}\n", who.subject)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = std::env::var("PORTCULLIS_ISSUER").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let guard = Guard::start(GuardConfig::new(issuer, "api")).await?;
    let reads = Router::new()
        .route("/orders", get(list_orders))
        .layer(GuardLayer::new(guard.clone(), Requirement::scopes(["read"])));
    let writes = Router::new()
        .route("/orders", axum::routing::post(create_order))
        .layer(GuardLayer::new(guard, Requirement::scopes(["write"])));
    let app = Router::new().route("/health", get(|| async { "ok\n" })).merge(reads).merge(writes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("protected API on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
