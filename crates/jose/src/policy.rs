//! What a verifier demands of a token. Issuer and audience are mandatory choices: `build` fails until each
//! is set or explicitly waived with a `danger_` method. Everything else has a safe default.

use crate::alg::Algorithm;
use crate::error::Error;
use crate::json::DEFAULT_MAX_DEPTH;
use crate::jws::JwsOptions;

/// A set of algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgSet(u32);

impl AlgSet {
    pub fn all() -> Self {
        Self::of(&Algorithm::ALL)
    }

    pub fn of(algs: &[Algorithm]) -> Self {
        AlgSet(algs.iter().fold(0, |bits, a| bits | Self::bit(*a)))
    }

    fn bit(alg: Algorithm) -> u32 {
        let index = Algorithm::ALL.iter().position(|a| *a == alg).unwrap_or(0);
        1 << index
    }

    pub fn contains(&self, alg: Algorithm) -> bool {
        self.0 & Self::bit(alg) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Algorithm> + '_ {
        Algorithm::ALL.into_iter().filter(|a| self.contains(*a))
    }
}

#[derive(Debug, Clone)]
pub(crate) enum TypRule {
    /// `typ` absent or `JWT` (RFC 7519 §5.1).
    JwtOrAbsent,
    /// Exactly this media type (compared case-insensitively, `application/` prefix optional; RFC 7515 §4.1.9).
    Exactly(String),
    Any,
}

/// The verification policy for JWTs.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) jws: JwsOptions,
    pub(crate) issuer: Option<String>,
    pub(crate) audiences: Option<Vec<String>>,
    pub(crate) typ: TypRule,
    pub(crate) required: Vec<String>,
    pub(crate) leeway: i64,
    pub(crate) max_age: Option<i64>,
}

/// The longest clock-skew allowance a policy accepts, in seconds.
pub const MAX_LEEWAY: i64 = 300;

/// Builds a [`Policy`].
#[derive(Debug, Clone)]
pub struct PolicyBuilder {
    policy: Policy,
    issuer_chosen: bool,
    audience_chosen: bool,
}

impl Policy {
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            policy: Policy {
                jws: JwsOptions::default(),
                issuer: None,
                audiences: None,
                typ: TypRule::JwtOrAbsent,
                required: vec!["exp".into()],
                leeway: 30,
                max_age: None,
            },
            issuer_chosen: false,
            audience_chosen: false,
        }
    }

    /// The RFC 9068 access-token profile: `typ` `at+jwt`, and `iss`, `exp`, `aud`, `sub`, `client_id`, `iat`
    /// and `jti` required, with the given issuer and audience.
    pub fn access_token(issuer: &str, audience: &str) -> Result<Policy, Error> {
        Policy::builder()
            .issuer(issuer)
            .audience(audience)
            .typ(crate::AT_JWT)
            .require(["iss", "exp", "aud", "sub", "client_id", "iat", "jti"])
            .build()
    }

    pub fn jws_options(&self) -> &JwsOptions {
        &self.jws
    }

    pub fn leeway(&self) -> i64 {
        self.leeway
    }
}

impl PolicyBuilder {
    /// The only issuer (`iss`) accepted.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.policy.issuer = Some(issuer.into());
        self.issuer_chosen = true;
        self
    }

    /// Accepts a token from any issuer. Only for tools and tests: a verifier must know whom it trusts.
    pub fn danger_accept_any_issuer(mut self) -> Self {
        self.policy.issuer = None;
        self.issuer_chosen = true;
        self
    }

    /// An accepted audience; call again to accept several. A token passes when its `aud` names any of them.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.policy.audiences.get_or_insert_with(Vec::new).push(audience.into());
        self.audience_chosen = true;
        self
    }

    /// Accepts a token for any audience. Only for tools and tests.
    pub fn danger_accept_any_audience(mut self) -> Self {
        self.policy.audiences = None;
        self.audience_chosen = true;
        self
    }

    /// Requires this `typ` (e.g. `at+jwt`). Without it, `typ` must be absent or `JWT`.
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.policy.typ = TypRule::Exactly(typ.into());
        self
    }

    /// Accepts any `typ`. Explicit typing (RFC 8725 §3.11) is what keeps one kind of token from being
    /// accepted as another; waive it only where no other kind of token is signed with the same keys.
    pub fn danger_accept_any_typ(mut self) -> Self {
        self.policy.typ = TypRule::Any;
        self
    }

    /// The algorithms accepted (each key is still bound to its own).
    pub fn algorithms(mut self, algs: &[Algorithm]) -> Self {
        self.policy.jws.algorithms = AlgSet::of(algs);
        self
    }

    /// Claims that must be present, beyond `exp` (always required unless [`Self::danger_allow_no_exp`]).
    pub fn require<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for name in names {
            let name = name.into();
            if !self.policy.required.contains(&name) {
                self.policy.required.push(name);
            }
        }
        self
    }

    /// Accepts tokens without `exp`, which never expire. Only for tokens whose lifetime is bounded otherwise.
    pub fn danger_allow_no_exp(mut self) -> Self {
        self.policy.required.retain(|n| n != "exp");
        self
    }

    /// Clock-skew allowance in seconds for `exp`, `nbf` and `iat` (default 30, at most 300).
    pub fn leeway(mut self, seconds: i64) -> Self {
        self.policy.leeway = seconds;
        self
    }

    /// Refuses tokens whose `iat` is older than this many seconds (and then requires `iat`).
    pub fn max_age(mut self, seconds: i64) -> Self {
        self.policy.max_age = Some(seconds);
        self
    }

    /// The largest token accepted, in bytes (default 16 KiB).
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.policy.jws.max_token_bytes = bytes;
        self
    }

    /// The deepest JSON nesting accepted in header and claims (default 16).
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.policy.jws.max_depth = depth;
        self
    }

    pub fn build(self) -> Result<Policy, Error> {
        if !self.issuer_chosen {
            return Err(Error::InvalidPolicy("set an issuer, or call danger_accept_any_issuer"));
        }
        if !self.audience_chosen {
            return Err(Error::InvalidPolicy("set an audience, or call danger_accept_any_audience"));
        }
        let p = &self.policy;
        if !(0..=MAX_LEEWAY).contains(&p.leeway) {
            return Err(Error::InvalidPolicy("leeway must be between 0 and 300 seconds"));
        }
        if p.jws.algorithms.is_empty() {
            return Err(Error::InvalidPolicy("no algorithm is allowed"));
        }
        if p.max_age.is_some_and(|a| a <= 0) {
            return Err(Error::InvalidPolicy("max_age must be positive"));
        }
        if p.jws.max_token_bytes == 0 || p.jws.max_depth == 0 || p.jws.max_depth > DEFAULT_MAX_DEPTH * 4 {
            return Err(Error::InvalidPolicy("size and depth limits must be positive and sane"));
        }
        Ok(self.policy)
    }
}

/// Compares a `typ` value with the expected media type: ASCII case-insensitive, and `application/` may be
/// left off either (RFC 7515 §4.1.9).
pub fn typ_matches(actual: &str, expected: &str) -> bool {
    fn strip(s: &str) -> &str {
        match s.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &s[12..],
            _ => s,
        }
    }
    actual == expected || strip(actual).eq_ignore_ascii_case(strip(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_and_audience_are_mandatory_choices() {
        assert!(Policy::builder().build().is_err());
        assert!(Policy::builder().issuer("i").build().is_err());
        assert!(Policy::builder().issuer("i").audience("a").build().is_ok());
        assert!(Policy::builder().danger_accept_any_issuer().danger_accept_any_audience().build().is_ok());
        assert!(Policy::builder().issuer("i").audience("a").leeway(301).build().is_err());
        assert!(Policy::builder().issuer("i").audience("a").algorithms(&[]).build().is_err());
    }

    #[test]
    fn typ_comparison_follows_rfc_7515() {
        assert!(typ_matches("at+jwt", "at+jwt"));
        assert!(typ_matches("application/AT+JWT", "at+jwt"));
        assert!(typ_matches("at+jwt", "application/at+jwt"));
        assert!(!typ_matches("jwt", "at+jwt"));
        assert!(!typ_matches("dpop+jwt", "at+jwt"));
    }
}
