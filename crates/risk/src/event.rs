//! The engine's input: one event per JSON line (the public contract in DESIGN.md).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A successful login (password or authorization code): a new session.
    Login,
    /// A failed login. `sub` is the name that was tried, which may not exist.
    LoginFailure,
    /// A refresh token was exchanged: the session (`sid`, the refresh family) goes on.
    Refresh,
    /// An access token was presented to an API (reported by a guard, or introspected).
    TokenUse,
    /// A rotated-out refresh token came back: the server revoked its family.
    RefreshReuse,
}

impl Kind {
    /// The contract's name for the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Login => "login",
            Kind::LoginFailure => "login_failure",
            Kind::Refresh => "refresh",
            Kind::TokenUse => "token_use",
            Kind::RefreshReuse => "refresh_reuse",
        }
    }
}

/// One event. Unknown members are ignored, so producers may add context (a route, say).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unix time in seconds, fractions allowed.
    pub ts: f64,
    pub kind: Kind,
    /// The subject (user id), or for `login_failure` the name that was tried.
    pub sub: String,
    pub client_id: String,
    /// The source address as the server or guard saw it.
    pub ip: IpAddr,
    /// The `User-Agent` header, empty when there was none.
    #[serde(default)]
    pub ua: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The session: the refresh-token family the token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Ground truth for evaluation only; the model never reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Evaluation only: which attack campaign the event belongs to (`label` says its class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<String>,
}

/// Why a line is not an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    #[error("not an event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("`ts` must be a finite, non-negative number of seconds")]
    Time,
    #[error("`{0}` is longer than {MAX_FIELD} bytes")]
    TooLong(&'static str),
}

/// Longest `sub`, `client_id`, `jti`, `sid` or `ua` accepted; longer ones are an error, not truncated.
pub const MAX_FIELD: usize = 1024;

/// How much of a `User-Agent` producers keep (the rest tells nothing more).
pub const MAX_USER_AGENT: usize = 512;

/// `ua` cut to [`MAX_USER_AGENT`] bytes on a character boundary, as producers (the server, guards) report it.
pub fn clip_user_agent(ua: &str) -> &str {
    let mut cut = ua.len().min(MAX_USER_AGENT);
    while !ua.is_char_boundary(cut) {
        cut -= 1;
    }
    &ua[..cut]
}

impl Event {
    /// Parses and checks one JSON line.
    pub fn from_json(line: &str) -> Result<Event, EventError> {
        let event: Event = serde_json::from_str(line)?;
        event.check()?;
        Ok(event)
    }

    /// Checks the bounds the engine relies on.
    pub fn check(&self) -> Result<(), EventError> {
        if !self.ts.is_finite() || self.ts < 0.0 {
            return Err(EventError::Time);
        }
        let fields = [
            ("sub", Some(&self.sub)),
            ("client_id", Some(&self.client_id)),
            ("ua", Some(&self.ua)),
            ("jti", self.jti.as_ref()),
            ("sid", self.sid.as_ref()),
        ];
        for (name, value) in fields {
            if value.is_some_and(|v| v.len() > MAX_FIELD) {
                return Err(EventError::TooLong(name));
            }
        }
        Ok(())
    }
}

/// A stable 32-bit fingerprint (FNV-1a, folded), never 0 (0 marks an empty sketch slot).
///
/// Stable across builds and machines, since profiles holding these are stored and shared.
pub fn fingerprint(tag: u8, bytes: &[u8]) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in std::iter::once(&tag).chain(bytes) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let folded = (hash ^ (hash >> 32)) as u32;
    folded.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_line() {
        let line = r#"{"ts": 1764000000.25, "kind": "token_use", "sub": "alice", "client_id": "web",
            "ip": "203.0.113.7", "ua": "curl/8", "jti": "j1", "sid": "s1", "label": "benign", "route": "/x"}"#;
        let event = Event::from_json(line).unwrap();
        assert_eq!(event.kind, Kind::TokenUse);
        assert_eq!(event.ip.to_string(), "203.0.113.7");
        assert_eq!(event.sid.as_deref(), Some("s1"));
    }

    #[test]
    fn rejects_bad_lines() {
        let base = r#""kind":"login","sub":"a","client_id":"c","ip":"192.0.2.1""#;
        for bad in [
            format!(r#"{{"ts":-1,{base}}}"#),
            format!(r#"{{"ts":1e400,{base}}}"#),
            r#"{"ts":1,"kind":"logon","sub":"a","client_id":"c","ip":"192.0.2.1"}"#.to_owned(),
            r#"{"ts":1,"kind":"login","sub":"a","client_id":"c","ip":"192.0.2.300"}"#.to_owned(),
            format!(r#"{{"ts":1,{base},"sid":"{}"}}"#, "x".repeat(MAX_FIELD + 1)),
            "[]".to_owned(),
        ] {
            assert!(Event::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_agents_are_clipped_on_a_character_boundary() {
        assert_eq!(clip_user_agent("curl/8"), "curl/8");
        let long = "é".repeat(400); // 800 bytes
        let clipped = clip_user_agent(&long);
        assert!(clipped.len() <= MAX_USER_AGENT && clipped.len() >= MAX_USER_AGENT - 1);
        assert!(clipped.chars().all(|c| c == 'é'));
    }

    #[test]
    fn fingerprints_are_stable_and_tagged() {
        assert_eq!(fingerprint(1, b"abc"), fingerprint(1, b"abc"));
        assert_ne!(fingerprint(1, b"abc"), fingerprint(2, b"abc"));
        assert_ne!(fingerprint(0, b""), 0);
        // Pinned: profiles written by one build are read by the next.
        assert_eq!(fingerprint(0, b"portcullis"), 0x7082_5e78);
    }
}
