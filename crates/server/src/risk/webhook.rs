//! Flagged events POSTed as JSON to an operator's URL: best effort, off the request path, bounded.

use std::sync::Arc;
use std::time::Duration;

use portcullis_risk::{Action, Assessment, Event};
use tokio::sync::Semaphore;

/// Deliveries in flight at once; beyond this, events are dropped (and counted) rather than queued.
const IN_FLIGHT: usize = 32;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Webhook {
    url: String,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
}

impl Webhook {
    pub fn new(url: &str) -> Webhook {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Webhook { url: url.to_owned(), client, slots: Arc::new(Semaphore::new(IN_FLIGHT)) }
    }

    /// Sends one flagged event: what happened (the `jti`, never a token), the score, the reasons, the action.
    pub fn send(&self, event: &Event, assessment: &Assessment, action: Action, reasons: &[String]) {
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            metrics::counter!("portcullis_risk_webhook_total", "result" => "dropped").increment(1);
            return;
        };
        let body = serde_json::json!({
            "ts": event.ts, "kind": event.kind.as_str(), "sub": event.sub, "client_id": event.client_id,
            "ip": event.ip.to_string(), "jti": event.jti, "sid": event.sid,
            "score": assessment.score, "action": action.as_str(), "reasons": reasons,
        });
        let request = self.client.post(&self.url).json(&body);
        tokio::spawn(async move {
            let result = match request.send().await {
                Ok(response) if response.status().is_success() => "delivered",
                Ok(response) => {
                    tracing::warn!(status = response.status().as_u16(), "risk webhook refused an event");
                    "refused"
                }
                Err(e) => {
                    tracing::warn!(error = %e, "risk webhook unreachable");
                    "failed"
                }
            };
            metrics::counter!("portcullis_risk_webhook_total", "result" => result).increment(1);
            drop(permit);
        });
    }
}
