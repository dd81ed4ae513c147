//! Audit events, group-committed: callers hand an event to one writer task and wait until the batch that holds
//! it is committed. Each request is as durable as a transaction of its own, yet a burst of requests costs one
//! commit. One writer also gives the log one order, which the tamper-evident ledger will chain.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{AuditEvent, Store, StoreError};

/// The most events one commit takes.
const MAX_BATCH: usize = 512;

type Ack = oneshot::Sender<Result<(), String>>;

/// A handle to the audit writer. Cloning shares the writer.
#[derive(Debug, Clone)]
pub struct Audit {
    tx: mpsc::Sender<(AuditEvent, Ack)>,
}

impl Audit {
    /// Starts the writer task on the current runtime. It ends when every handle is dropped. With `ledger`, it
    /// also adds each committed batch to the audit ledger's tree (after answering the batch's requests).
    pub fn start(store: Arc<dyn Store>, ledger: bool) -> Audit {
        let (tx, rx) = mpsc::channel(16 * MAX_BATCH);
        tokio::spawn(write_batches(store, rx, ledger));
        Audit { tx }
    }

    /// Records one event, returning once it is committed.
    pub async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.tx.send((event, ack)).await.map_err(|_| StoreError::Unavailable("the audit writer stopped".into()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(StoreError::Unavailable(why)),
            Err(_) => Err(StoreError::Unavailable("the audit writer stopped".into())),
        }
    }
}

async fn write_batches(store: Arc<dyn Store>, mut rx: mpsc::Receiver<(AuditEvent, Ack)>, ledger: bool) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut follower = crate::ledger::Follower::default();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, acks): (Vec<AuditEvent>, Vec<Ack>) = batch.drain(..).unzip();
        let result = store.append_audit_numbered(&events).await.map_err(|e| e.to_string());
        if let Err(why) = &result {
            tracing::error!(events = events.len(), error = %why, "audit events not stored; the requests fail");
        }
        for ack in acks {
            let _ = ack.send(result.as_ref().map(|_| ()).map_err(Clone::clone));
        }
        if let (true, Ok(Some(seqs))) = (ledger, &result) {
            // The background growth catches up with whatever this misses.
            if let Err(e) = follower.follow(store.as_ref(), &events, seqs).await {
                tracing::debug!(error = %e, "audit ledger: batch left to the background growth");
            }
        }
    }
}

/// Builds an event; `detail` is a JSON object of small facts (never a token or a secret).
pub fn event(at: i64, kind: &'static str) -> AuditEvent {
    AuditEvent { at, kind, subject: None, client_id: None, jti: None, detail: "{}".into() }
}
