//! # portcullis-revocation
//!
//! The revocation set that the authorization server (for introspection) and the guard (for every request) both
//! keep: which access tokens are revoked, by `jti`, by session (`sid`) or by subject up to a time. It is pure and
//! synchronous: revocations come in from whoever reads them (the store, the `/events` feed), and entries leave
//! when the tokens they cover would have expired, so memory stays bounded by the live revocations.
//!
//! Non-goals: fetching revocations, persistence, verifying tokens.
//!
//! ```
//! use portcullis_revocation::{Kind, RevocationSet, TokenFacts};
//! let set = RevocationSet::default();
//! set.apply(1, Kind::Token, "jti-1", 0, 2_000);
//! let facts = TokenFacts { jti: "jti-1", sid: None, sub: "alice", iat: 1_000 };
//! assert!(set.is_revoked(&facts));
//! set.prune(2_000);
//! assert!(!set.is_revoked(&facts), "gone once the token would have expired");
//! ```

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The `typ` of the Security Event Tokens that carry revocations on the server's `/events` feed (RFC 8417 §2.3).
pub const SET_TYP: &str = "secevent+jwt";
/// The event type of a revocation inside such a SET (`events` member).
pub const REVOCATION_EVENT: &str = "urn:portcullis:secevent:revocation";

/// What a revocation applies to; access tokens carry all three (`jti`, `sid`, `sub`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One access token, by `jti`.
    Token,
    /// Every access token of a session (refresh family), by `sid`.
    Session,
    /// Every token of a subject issued at or before a time.
    Subject,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Token => "jti",
            Kind::Session => "sid",
            Kind::Subject => "sub",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Kind::Token, Kind::Session, Kind::Subject].into_iter().find(|k| k.as_str() == s)
    }
}

/// The facts of an access token that revocation is judged on.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts<'a> {
    pub jti: &'a str,
    pub sid: Option<&'a str>,
    pub sub: &'a str,
    pub iat: i64,
}

#[derive(Debug, Default)]
struct Entries {
    last_seq: i64,
    /// `jti` → until when the entry matters.
    tokens: HashMap<String, i64>,
    /// `sid` → until when.
    sessions: HashMap<String, i64>,
    /// `sub` → (tokens issued at or before this time are revoked, until when).
    subjects: HashMap<String, (i64, i64)>,
}

/// The live revocations. Cheap to query from many threads at once.
#[derive(Debug, Default)]
pub struct RevocationSet {
    entries: RwLock<Entries>,
    /// Moves on every change, before the change is visible: see [`RevocationSet::version`].
    version: AtomicU64,
}

impl RevocationSet {
    /// A number that changes whenever the set does. An answer of [`Self::is_revoked`] given while the version
    /// was `v` (read before asking) still holds while the version is `v`: a caller may keep a "not revoked"
    /// for a token and ask again only when the version moves, without taking the set's lock on every request.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn read(&self) -> RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The entries, to change: the version moves once the lock is held, so a reader that saw the old version
    /// asks again after the change.
    fn write(&self) -> RwLockWriteGuard<'_, Entries> {
        let entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.version.fetch_add(1, Ordering::AcqRel);
        entries
    }

    /// Adds a revocation. `seq` orders revocations from one source; the largest seen is [`Self::last_seq`].
    /// Returns whether `seq` was newer than every one before. A `seq` of 0 adds the entry without moving
    /// [`Self::last_seq`] (a revocation known before its place in the sequence is).
    pub fn apply(&self, seq: i64, kind: Kind, value: &str, issued_before: i64, expires_at: i64) -> bool {
        let mut e = self.write();
        match kind {
            Kind::Token => {
                let until = e.tokens.entry(value.to_owned()).or_insert(expires_at);
                *until = (*until).max(expires_at);
            }
            Kind::Session => {
                let until = e.sessions.entry(value.to_owned()).or_insert(expires_at);
                *until = (*until).max(expires_at);
            }
            Kind::Subject => {
                let entry = e.subjects.entry(value.to_owned()).or_insert((issued_before, expires_at));
                entry.0 = entry.0.max(issued_before);
                entry.1 = entry.1.max(expires_at);
            }
        }
        let newer = seq > e.last_seq;
        e.last_seq = e.last_seq.max(seq);
        newer
    }

    pub fn is_revoked(&self, token: &TokenFacts<'_>) -> bool {
        let e = self.read();
        e.tokens.contains_key(token.jti)
            || token.sid.is_some_and(|sid| e.sessions.contains_key(sid))
            || e.subjects.get(token.sub).is_some_and(|(before, _)| token.iat <= *before)
    }

    pub fn last_seq(&self) -> i64 {
        self.read().last_seq
    }

    pub fn len(&self) -> usize {
        let e = self.read();
        e.tokens.len() + e.sessions.len() + e.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets revocations whose tokens have all expired by `now`.
    pub fn prune(&self, now: i64) {
        let mut e = self.write();
        e.tokens.retain(|_, until| *until > now);
        e.sessions.retain(|_, until| *until > now);
        e.subjects.retain(|_, (_, until)| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_sessions_and_subjects_are_revoked_by_their_own_rule() {
        let set = RevocationSet::default();
        let t = TokenFacts { jti: "j1", sid: Some("s1"), sub: "u1", iat: 900 };
        assert!(!set.is_revoked(&t));
        assert!(set.apply(1, Kind::Token, "j1", 0, 2000));
        assert!(set.is_revoked(&t));
        assert!(!set.is_revoked(&TokenFacts { jti: "j2", ..t }));
        set.apply(2, Kind::Session, "s1", 0, 2000);
        assert!(set.is_revoked(&TokenFacts { jti: "j2", ..t }));
        assert!(!set.is_revoked(&TokenFacts { jti: "j2", sid: None, ..t }));
        set.apply(3, Kind::Subject, "u1", 950, 2000);
        assert!(set.is_revoked(&TokenFacts { jti: "j3", sid: None, ..t }), "issued before the cut-off");
        assert!(!set.is_revoked(&TokenFacts { jti: "j3", sid: None, iat: 951, ..t }), "issued after it");
        assert!(!set.apply(2, Kind::Token, "j9", 0, 10), "an older sequence number is applied but not newer");
        assert_eq!(set.last_seq(), 3);
        assert_eq!(set.len(), 4);
    }

    #[test]
    fn entries_leave_when_their_tokens_would_have_expired() {
        let set = RevocationSet::default();
        set.apply(1, Kind::Token, "a", 0, 100);
        set.apply(2, Kind::Subject, "u", 50, 200);
        set.apply(3, Kind::Subject, "u", 80, 150);
        set.prune(100);
        assert_eq!(set.len(), 1, "the token entry is gone, the subject stays");
        assert!(set.is_revoked(&TokenFacts { jti: "x", sid: None, sub: "u", iat: 80 }), "the later cut-off wins");
        set.prune(200);
        assert!(set.is_empty());
    }

    #[test]
    fn the_version_moves_with_every_change_and_only_then() {
        let set = RevocationSet::default();
        let t = TokenFacts { jti: "j1", sid: None, sub: "u1", iat: 900 };
        let v0 = set.version();
        assert!(!set.is_revoked(&t));
        assert_eq!(set.len(), 0);
        assert_eq!(set.version(), v0, "reading changes nothing");
        set.apply(1, Kind::Token, "j1", 0, 2000);
        let v1 = set.version();
        assert_ne!(v1, v0, "a revocation moves it");
        set.prune(10);
        assert_ne!(set.version(), v1, "so does pruning");
    }
}
