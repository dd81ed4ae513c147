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
    /// Starts the writer task on the current runtime. It ends when every handle is dropped. With `ledger`, each
    /// committed batch is also handed to a task that adds it to the audit ledger's tree.
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
    // Committed batches go to the ledger's own task, so that adding them to the tree never delays the next
    // commit. If it falls behind, batches are dropped here and the background growth adds them instead.
    let follower = ledger.then(|| {
        let (tx, rx) = mpsc::channel::<(Vec<AuditEvent>, Vec<i64>)>(64);
        tokio::spawn(follow(Arc::clone(&store), rx));
        tx
    });
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, acks): (Vec<AuditEvent>, Vec<Ack>) = batch.drain(..).unzip();
        let result = store.append_audit_numbered(&events).await.map_err(|e| e.to_string());
        if let Err(why) = &result {
            tracing::error!(events = events.len(), error = %why, "audit events not stored; the requests fail");
        }
        for ack in acks {
            let _ = ack.send(result.as_ref().map(|_| ()).map_err(Clone::clone));
        }
        if let (Some(follower), Ok(Some(seqs))) = (&follower, result) {
            let _ = follower.try_send((events, seqs));
        }
    }
}

async fn follow(store: Arc<dyn Store>, mut rx: mpsc::Receiver<(Vec<AuditEvent>, Vec<i64>)>) {
    let mut follower = crate::ledger::Follower::default();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let result = tokio::select! {
            batch = rx.recv() => match batch {
                Some((events, seqs)) => follower.add(store.as_ref(), &events, &seqs).await,
                None => return,
            },
            _ = tick.tick() => follower.flush(store.as_ref()).await,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "audit ledger: events left to the background growth");
        }
    }
}

/// Builds an event; `detail` is a JSON object of small facts (never a token or a secret).
pub fn event(at: i64, kind: &'static str) -> AuditEvent {
    AuditEvent { at, kind, subject: None, client_id: None, jti: None, detail: "{}".into() }
}
