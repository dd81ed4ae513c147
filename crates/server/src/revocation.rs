//! The server's in-memory view of access-token revocations (the shared [`portcullis_revocation`] set), kept in
//! step with the store by sequence number, so that introspection answers without a database read. The store is
//! the truth; this is never behind it by more than one sync interval (and not at all for revocations made by
//! this instance). A watch channel wakes `/events` long-polls when a newer revocation arrives.

use portcullis_revocation::RevocationSet as Set;
pub use portcullis_revocation::TokenFacts;

use crate::store::{Revocation, Store, StoreResult};

#[derive(Debug)]
pub struct RevocationSet {
    set: Set,
    newest: tokio::sync::watch::Sender<i64>,
}

impl Default for RevocationSet {
    fn default() -> Self {
        RevocationSet { set: Set::default(), newest: tokio::sync::watch::Sender::new(0) }
    }
}

impl RevocationSet {
    /// A receiver that changes whenever a newer revocation is applied.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<i64> {
        self.newest.subscribe()
    }

    pub fn apply(&self, r: &Revocation) {
        if self.set.apply(r.seq, r.kind, &r.value, r.issued_before, r.expires_at) {
            self.newest.send_replace(r.seq);
        }
    }

    /// Applies a revocation this instance has just stored. It takes effect here at once, but the sequence
    /// advances only through [`RevocationSet::sync`], in store order: another writer (an instance, the CLI) may
    /// have committed an earlier `seq` that this one has not read yet, and jumping past it would skip it.
    pub async fn apply_own(&self, r: &Revocation, store: &dyn Store, now: i64) {
        self.set.apply(0, r.kind, &r.value, r.issued_before, r.expires_at);
        if let Err(e) = self.sync(store, now).await {
            tracing::warn!(error = %e, "revocation sync failed; the next sync catches up");
        }
    }

    pub fn is_revoked(&self, token: &TokenFacts<'_>) -> bool {
        self.set.is_revoked(token)
    }

    pub fn last_seq(&self) -> i64 {
        self.set.last_seq()
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Reads revocations newer than the last one seen, and forgets those whose tokens have all expired.
    pub async fn sync(&self, store: &dyn Store, now: i64) -> StoreResult<usize> {
        let mut applied = 0;
        loop {
            let batch = store.revocations_since(self.last_seq(), now, 1000).await?;
            if batch.is_empty() {
                break;
            }
            applied += batch.len();
            for r in &batch {
                self.apply(r);
            }
        }
        self.set.prune(now);
        Ok(applied)
    }
}
