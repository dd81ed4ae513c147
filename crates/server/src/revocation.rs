//! The server's in-memory view of access-token revocations, kept in step with the store by sequence number,
//! so that introspection answers without a database read. The store is the truth; this is a cache of it that
//! is never behind by more than one sync interval (and not at all for revocations made by this instance).

use std::collections::HashMap;
use std::sync::RwLock;

use crate::store::{Revocation, RevocationKind, Store, StoreResult};

#[derive(Debug, Default)]
struct Entries {
    last_seq: i64,
    /// `jti` → when the token expires.
    tokens: HashMap<String, i64>,
    /// `sid` (refresh family) → until when its access tokens may live.
    sessions: HashMap<String, i64>,
    /// `sub` → tokens issued at or before this time are revoked; and until when the entry matters.
    subjects: HashMap<String, (i64, i64)>,
}

/// The facts of an access token that revocation is judged on.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts<'a> {
    pub jti: &'a str,
    pub sid: Option<&'a str>,
    pub sub: &'a str,
    pub iat: i64,
}

#[derive(Debug)]
pub struct RevocationSet {
    entries: RwLock<Entries>,
    /// The newest sequence number applied, for long-polls on `/events` to wait on.
    newest: tokio::sync::watch::Sender<i64>,
}

impl Default for RevocationSet {
    fn default() -> Self {
        RevocationSet { entries: RwLock::default(), newest: tokio::sync::watch::Sender::new(0) }
    }
}

impl RevocationSet {
    /// A receiver that changes whenever a newer revocation is applied.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<i64> {
        self.newest.subscribe()
    }

    pub fn apply(&self, r: &Revocation) {
        let mut e = match self.entries.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if r.seq > e.last_seq {
            e.last_seq = r.seq;
            self.newest.send_replace(r.seq);
        }
        match r.kind {
            RevocationKind::Token => {
                e.tokens.insert(r.value.clone(), r.expires_at);
            }
            RevocationKind::Session => {
                e.sessions.insert(r.value.clone(), r.expires_at);
            }
            RevocationKind::Subject => {
                let entry = e.subjects.entry(r.value.clone()).or_insert((r.issued_before, r.expires_at));
                entry.0 = entry.0.max(r.issued_before);
                entry.1 = entry.1.max(r.expires_at);
            }
        }
    }

    pub fn is_revoked(&self, token: &TokenFacts<'_>) -> bool {
        let e = match self.entries.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        e.tokens.contains_key(token.jti)
            || token.sid.is_some_and(|sid| e.sessions.contains_key(sid))
            || e.subjects.get(token.sub).is_some_and(|(before, _)| token.iat <= *before)
    }

    pub fn last_seq(&self) -> i64 {
        match self.entries.read() {
            Ok(g) => g.last_seq,
            Err(p) => p.into_inner().last_seq,
        }
    }

    pub fn len(&self) -> usize {
        let e = match self.entries.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        e.tokens.len() + e.sessions.len() + e.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        let mut e = match self.entries.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        e.tokens.retain(|_, exp| *exp > now);
        e.sessions.retain(|_, exp| *exp > now);
        e.subjects.retain(|_, (_, exp)| *exp > now);
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(seq: i64, kind: RevocationKind, value: &str, issued_before: i64) -> Revocation {
        Revocation {
            seq,
            kind,
            value: value.into(),
            issued_before,
            expires_at: 2000,
            created_at: 1000,
            reason: "test".into(),
        }
    }

    #[test]
    fn tokens_sessions_and_subjects_are_revoked_by_their_own_rule() {
        let set = RevocationSet::default();
        let t = TokenFacts { jti: "j1", sid: Some("s1"), sub: "u1", iat: 900 };
        assert!(!set.is_revoked(&t));
        set.apply(&rev(1, RevocationKind::Token, "j1", 0));
        assert!(set.is_revoked(&t));
        assert!(!set.is_revoked(&TokenFacts { jti: "j2", ..t }));
        set.apply(&rev(2, RevocationKind::Session, "s1", 0));
        assert!(set.is_revoked(&TokenFacts { jti: "j2", ..t }));
        assert!(!set.is_revoked(&TokenFacts { jti: "j2", sid: None, ..t }));
        set.apply(&rev(3, RevocationKind::Subject, "u1", 950));
        assert!(set.is_revoked(&TokenFacts { jti: "j3", sid: None, ..t }), "issued before the cut-off");
        assert!(!set.is_revoked(&TokenFacts { jti: "j3", sid: None, iat: 951, ..t }), "issued after it");
        assert_eq!(set.last_seq(), 3);
        assert_eq!(set.len(), 3);
    }
}
