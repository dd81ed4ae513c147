//! Token-use reports to the issuer's risk engine (`POST /risk/events`, scope `portcullis:risk`): each request
//! a guard lets through becomes one risk event (subject, client, `jti`, session, source address, user agent,
//! time), queued without blocking and sent in batches every second. The server scores them and revokes
//! through the normal path, which this guard follows on `/events`. When the queue is full or the server
//! unreachable, reports are dropped and counted: the request path never waits for them.

use std::net::IpAddr;
use std::time::Duration;

use portcullis_risk::{Event, Kind};
use tokio::sync::mpsc;

use crate::feed::ClientToken;
use crate::{Clock, Identity};

/// Reports held while the server is slow; beyond this they are dropped.
const QUEUE: usize = 20_000;
/// Events per `POST` (the server takes up to 1,000 and 64 KiB).
const BATCH: usize = 150;
const INTERVAL: Duration = Duration::from_secs(1);

/// The sending half, held by the guard.
#[derive(Debug, Clone)]
pub struct Reporter {
    queue: mpsc::Sender<Event>,
    clock: Clock,
}

impl Reporter {
    /// Starts the sender task on the current runtime.
    pub fn start(http: reqwest::Client, issuer: &str, token: ClientToken, clock: Clock) -> Reporter {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(send_batches(http, format!("{issuer}/risk/events"), token, receiver));
        Reporter { queue, clock }
    }

    /// Queues a report that `identity` was used from `ip` with this user agent; never waits.
    pub fn report(&self, identity: &Identity, ip: IpAddr, user_agent: &str) {
        let event = Event {
            ts: self.clock.now().as_secs() as f64,
            kind: Kind::TokenUse,
            sub: identity.subject.clone(),
            client_id: identity.client_id.clone(),
            ip,
            ua: portcullis_risk::clip_user_agent(user_agent).to_owned(),
            jti: Some(identity.jti.clone()),
            sid: identity.session.clone(),
            label: None,
            attack: None,
        };
        if event.check().is_err() || self.queue.try_send(event).is_err() {
            metrics::counter!("portcullis_guard_risk_reports_total", "result" => "dropped").increment(1);
        }
    }
}

async fn send_batches(http: reqwest::Client, url: String, mut token: ClientToken, mut queue: mpsc::Receiver<Event>) {
    let mut batch: Vec<Event> = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::time::timeout(INTERVAL, queue.recv()).await;
        match first {
            Ok(Some(event)) => batch.push(event),
            Ok(None) => return, // the guard is gone
            Err(_) => {}
        }
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let count = batch.len() as u64;
        let result = match send(&http, &url, &mut token, &batch).await {
            Ok(()) => "sent",
            Err(e) => {
                tracing::warn!(error = %e, events = count, "risk reports could not be delivered; dropped");
                "failed"
            }
        };
        metrics::counter!("portcullis_guard_risk_reports_total", "result" => result).increment(count);
        batch.clear();
    }
}

async fn send(http: &reqwest::Client, url: &str, token: &mut ClientToken, batch: &[Event]) -> Result<(), String> {
    let mut body = String::with_capacity(batch.len() * 300);
    for event in batch {
        body.push_str(&serde_json::to_string(event).map_err(|e| e.to_string())?);
        body.push('\n');
    }
    let bearer = token.get(http).await.map_err(|e| e.to_string())?;
    let response = http
        .post(url)
        .bearer_auth(bearer)
        .header(http::header::CONTENT_TYPE, "application/x-ndjson")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        token.forget();
        return Err(format!("HTTP {}", response.status()));
    }
    Ok(())
}
