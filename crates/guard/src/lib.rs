//! # portcullis-guard
//!
//! The resource-server side of Portcullis: verify an access token on every API request, offline, from a
//! cached JWKS, with revocations followed from the issuer's event feed. A [`Guard`] is built from an issuer URL
//! (discovery) and an audience; [`layer::GuardLayer`] puts it in front of any tower service (axum routers
//! included), and the [`layer::Auth`] extractor hands the verified [`Identity`] to a handler.
//!
//! Non-goals: issuing tokens, talking to the server's database.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use portcullis_guard::{layer::{Auth, GuardLayer}, Guard, GuardConfig, Requirement};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let guard = Guard::start(GuardConfig::new("https://auth.example", "api")).await?;
//! let app: Router = Router::new()
//!     .route("/orders", get(|Auth(who): Auth| async move { format!("hello {}", who.subject) }))
//!     .layer(GuardLayer::new(guard, Requirement::scopes(["read"])));
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod feed;
pub mod gateway;
mod guard;
pub mod jwks;
pub mod jwks_timing;
pub mod layer;
mod report;
mod target;
pub mod upstream;
pub mod workers;

use std::sync::Arc;

pub use feed::{discover, Metadata, REVOCATION_EVENT};
pub use guard::{Guard, GuardConfig, Identity, PresentedRequest, Rejection, Requirement, DPOP_ALGS, MAX_TOKEN_BYTES};
use portcullis_jose::UnixTime;

/// Where the guard reads the time: the wall clock by default; tests shift it.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> UnixTime + Send + Sync>);

impl Clock {
    pub fn new(now: impl Fn() -> UnixTime + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    pub fn now(&self) -> UnixTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(UnixTime::now)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now().as_secs())
    }
}

/// Why the guard could not be set up or refreshed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("discovery: {0}")]
    Discovery(String),
    #[error("fetch: {0}")]
    Fetch(String),
    #[error("JWKS: {0}")]
    Jwks(String),
    #[error("event: {0}")]
    Event(String),
}

/// How a request presented its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer` (RFC 6750 §2.1).
    Bearer,
    /// `Authorization: DPoP` (RFC 9449 §7.1).
    Dpop,
}

/// Whether `c` may appear in a `token68` (RFC 9110 §11.2): a letter, a digit, or one of `-._~+/=`. Written as
/// comparisons, not a table lookup, so that [`is_token68`] runs on whole vectors of bytes: this check reads every
/// byte of every token on the request path.
#[inline(always)]
fn token68_byte(c: u8) -> bool {
    let letter = (c | 0x20).wrapping_sub(b'a') < 26;
    let digit = c.wrapping_sub(b'0') < 10;
    let dash_dot_slash = c.wrapping_sub(b'-') < 3;
    letter | digit | dash_dot_slash | (c == b'_') | (c == b'~') | (c == b'+') | (c == b'=')
}

/// Whether every byte of `bytes` may appear in a `token68`; a chunk at a time, with no branch per byte.
pub(crate) fn is_token68(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(32);
    let whole = chunks.by_ref().all(|chunk| chunk.iter().fold(true, |ok, &c| ok & token68_byte(c)));
    whole && chunks.remainder().iter().all(|&c| token68_byte(c))
}

/// Splits an `Authorization` header value into its scheme and token. The scheme is case-insensitive
/// (RFC 9110 §11.1); the token must be one non-empty `token68` (RFC 9110 §11.2) with nothing after it.
pub fn parse_authorization(value: &str) -> Option<(Scheme, &str)> {
    split_authorization(value).filter(|(_, token)| is_token68(token.as_bytes()))
}

/// [`parse_authorization`] without the `token68` check of the token, for a caller that checks it only when the
/// token fails to verify: every token that verifies is base64url segments joined by dots, so a `token68`.
pub(crate) fn split_authorization(value: &str) -> Option<(Scheme, &str)> {
    let (scheme, token) = value.split_once(' ')?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return None;
    };
    let token = token.trim_start_matches(' ');
    (!token.is_empty()).then_some((scheme, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token68_is_exactly_its_grammar() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
            assert_eq!(token68_byte(b), expected, "{b:#04x}");
            // Every position of a chunk, and the remainder after whole chunks, is read.
            for len in [1, 31, 32, 33, 64, 70] {
                for at in [0, len / 2, len - 1] {
                    let mut token = vec![b'a'; len];
                    token[at] = b;
                    assert_eq!(is_token68(&token), expected, "{b:#04x} at {at} of {len}");
                }
            }
        }
        for c in (0u8..128).map(char::from) {
            let expected = c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
            assert_eq!(parse_authorization(&format!("Bearer a{c}b")).is_some(), expected, "{c:?}");
        }
        assert_eq!(parse_authorization("Bearer aéb"), None);
    }

    #[test]
    fn authorization_header_parsing() {
        assert_eq!(parse_authorization("Bearer abc.def.ghi"), Some((Scheme::Bearer, "abc.def.ghi")));
        assert_eq!(parse_authorization("bearer  abc"), Some((Scheme::Bearer, "abc")));
        assert_eq!(parse_authorization("DPoP abc"), Some((Scheme::Dpop, "abc")));
        assert_eq!(parse_authorization("Basic abc"), None);
        assert_eq!(parse_authorization("Bearer"), None);
        assert_eq!(parse_authorization("Bearer "), None);
        assert_eq!(parse_authorization("Bearer a b"), None);
        assert_eq!(parse_authorization("Bearer a\"b"), None);
    }
}
